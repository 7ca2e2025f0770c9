"""Ctrl-C during `steepest train`: the first SIGINT stops the run after the step in progress with a checkpoint of
that step (a user stopping before the first scheduled checkpoint used to lose the run), and --resume continues from
it to the same weights as a run never interrupted."""

import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from steepest.cli import main
from steepest.config import load_recipe
from steepest.run import train
from steepest.training.checkpoint import CheckpointManager
from steepest.training.events import Callback

SETS = ["trainer.max_epochs=null", "trainer.max_steps=30", "checkpoint.every_n_epochs=null", "trainer.early_stopping=null"]


class CtrlC(Callback):
    """Sends this process SIGINT while step `at` runs, as a terminal's Ctrl-C would."""

    def __init__(self, at: int, times: int = 1):
        self.at, self.times = at, times

    def on_step_start(self, trainer, batches):
        if trainer.state.step + 1 == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_the_step_and_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    args = [x for s in SETS for x in ("--set", s)]
    assert main(["train", "--run-dir", str(tmp_path / "straight"), "-q", "--no-report", *args]) == 0
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(load_recipe("digits_mlp", SETS), tmp_path / "stopped", console=False, extra_callbacks=[CtrlC(at=7)])
    assert signal.getsignal(signal.SIGINT) is previous  # put back
    assert CheckpointManager(tmp_path / "stopped" / "checkpoints").step_files()[-1][0] == 7
    assert "stopping after this step with a checkpoint" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "stopped"), "--resume", "-q", "--no-report"]) == 0
    straight, resumed = (load_file(tmp_path / name / "model.safetensors") for name in ("straight", "stopped"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(load_recipe("digits_mlp", SETS), tmp_path / "run", console=False, extra_callbacks=[CtrlC(at=5, times=2)])
    assert not CheckpointManager(tmp_path / "run" / "checkpoints").step_files()
