"""Restored best weights are evaluated again for summary.json, but that evaluation is not logged a
second time at the stopping step (it was logged at the step the weights come from)."""

import json

from steepest.cli import main
from steepest.track import read_series


def test_the_restored_weights_are_summarized_without_a_second_val_row(tmp_path):
    run = tmp_path / "r"
    code = main(["train", "--run-dir", str(run), "-q", "--set", "data.subset=300", "--set", "trainer.max_epochs=60",
                 "--set", "trainer.early_stopping={monitor: val_loss, patience: 2, min_delta: 0.5}"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert "restored the weights of step" in summary["stop_reason"]
    best_step = int(summary["stop_reason"].rsplit("step ", 1)[1])
    rows = read_series(run / "metrics.db", "val_loss")
    steps = [s for s, _ in rows]
    assert len(steps) == len(set(steps)), steps  # one val_loss per evaluated step
    assert steps[-1] == summary["steps"] and best_step < summary["steps"]
    logged_at_best = dict(rows)[best_step]
    assert abs(summary["val_loss"] - logged_at_best) <= 1e-6 * max(1.0, abs(logged_at_best))  # the restored weights' loss


def test_a_run_that_used_its_budget_ships_its_best_weights_and_resumes_from_its_last(tmp_path):
    """Early stopping that never ran out of patience: the budget ends the run, and with restore_best
    the shipped model (model.safetensors, summary.json) is the best evaluation's, while the last
    checkpoint keeps the last weights, so that a resumed run with a larger budget continues them.
    mode: max on val_loss makes the first evaluation the best, whatever the machine's rounding."""
    import torch
    from safetensors.torch import load_file

    from steepest.training.checkpoint import load_state

    run = tmp_path / "r"
    common = ["--run-dir", str(run), "-q", "--set", "data.subset=300", "--set", "trainer.early_stopping={monitor: val_loss, mode: max, patience: 100}"]
    assert main(["train", *common, "--set", "trainer.max_epochs=3"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    rows = read_series(run / "metrics.db", "val_loss")
    first_step = rows[0][0]
    assert summary["stop_reason"] == f"completed the step budget; restored the weights of step {first_step}"
    assert abs(summary["val_loss"] - rows[0][1]) <= 1e-6 * rows[0][1] and len(rows) == 3
    last = load_state(sorted((run / "checkpoints").glob("step-*.safetensors"))[-1])
    assert last["train_state"]["stop_reason"] == "completed the step budget" and last["train_state"]["step"] == summary["steps"]
    shipped = load_file(run / "model.safetensors")
    assert any(not torch.equal(shipped[k], v.cpu()) for k, v in last["model"].items() if k in shipped)  # not the last weights
    assert main(["train", *common, "--resume", "--set", "trainer.max_epochs=4"]) == 0  # continues from the last weights
    assert json.loads((run / "summary.json").read_text())["steps"] > summary["steps"]
