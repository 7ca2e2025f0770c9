"""Faults found in the recipe -> run seam (issue "Assemble a run once"): each test failed before the fix."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")

NAN_ON_RANK0 = textwrap.dedent(
    """
    import torch
    import torch.distributed as dist
    from safetensors.torch import save_file
    from steepest.training.events import Callback

    class NanOnRankZero(torch.nn.Module):
        '''Cross entropy, except on rank 0 at its 3rd training call, where one sample's loss is NaN.'''
        def __init__(self):
            super().__init__()
            self.calls = 0
        def forward(self, logits, y):
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="none")
            if torch.is_grad_enabled():
                self.calls += 1
                if self.calls == 3 and dist.is_initialized() and dist.get_rank() == 0:
                    loss = torch.cat([loss[:1] * float("nan"), loss[1:]])
            return loss.mean()

    class SaveEveryRank(Callback):
        name = "save_every_rank"
        def __init__(self, folder):
            self.folder = folder
        def on_fit_end(self, trainer):
            rank = dist.get_rank() if dist.is_initialized() else 0
            state = {k: v.detach().clone().contiguous() for k, v in trainer.unwrapped_model.state_dict().items()}
            save_file(state, f"{self.folder}/rank{rank}.safetensors")
    """
)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun missing")
def test_a_nan_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    """DDP: rank 0 sees a NaN loss at step 3; both ranks must skip that step and stay identical. The
    ranks read digits from an .npz of the arrays `data.name=digits` loads (float32 pixels, int64
    labels; the same run to the bit), so that neither imports scikit-learn (~3-7 s each, both at once)."""
    import numpy as np
    from safetensors.torch import load_file
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "digits.npz", x=digits.data.astype(np.float32), y=digits.target.astype(np.int64))
    (tmp_path / "nanmod.py").write_text(NAN_ON_RANK0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    sets = ["data.name=null", "data.format=npz", f"data.path={tmp_path / 'digits.npz'}", "trainer.max_steps=8", "trainer.max_epochs=null",
            "model.dropout=0.0", "trainer.early_stopping=null", "checkpoint.enabled=false", "loss={component: 'nanmod:NanOnRankZero'}",
            f"callbacks=[{{component: 'nanmod:SaveEveryRank', folder: '{tmp_path}'}}]"]
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "steepest", "train", "digits_mlp", "-q",
                           *[x for s in sets for x in ("--set", s)], "--run-dir", str(tmp_path / "run")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for key in a:
        assert torch.isfinite(a[key]).all() and torch.equal(a[key], b[key]), key
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["nonfinite_steps"] == 1


def _build(overrides):
    from steepest.config import load_recipe
    from steepest.run import build_run

    return build_run(load_recipe("digits_mlp", overrides), None, console=False)


def test_class_weights_keep_the_recipes_focal_loss():
    """data.balance: class_weights weights the recipe's loss; it must not swap focal for cross entropy."""
    from steepest.data.imbalance import class_weights
    from steepest.losses.functional import cross_entropy, focal

    run = _build(["loss={name: focal, gamma: 2.0}", "data.balance=class_weights", "data.subset=300"])
    loss_fn = run.trainer.loss_fn
    weights = class_weights(run.data.train.y, run.data.info.num_classes)
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 10
    got = loss_fn(logits, y)
    assert float(got) == pytest.approx(float(focal(logits, y, gamma=2.0, alpha=weights)), rel=1e-5)
    assert float(got) != pytest.approx(float(cross_entropy(logits, y, weight=weights)), rel=1e-3)


def test_reduce_on_plateau_without_a_step_schedule_reduces_once_per_plateau():
    """No step schedule: the plateau factor must apply once per reduction, not again every step."""
    from steepest.data import DataInfo, DeviceLoader, Split
    from steepest.training.callbacks import Evaluate, ReduceLROnPlateau
    from steepest.training.trainer import Trainer, TrainerOptions

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    plateau = ReduceLROnPlateau(factor=0.5, patience=0)
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy, DeviceLoader(x, y, 8), options=TrainerOptions(max_steps=39),
                      eval_data={"val": Split(x[:16], y[:16])}, info=DataInfo("toy", "classification", (4,), 2, 2),
                      callbacks=[Evaluate(None, 5), plateau])
    trainer.fit()
    # evaluations at steps 5, 10, ..., 35: the first sets the best, each later one (no improvement at
    # lr 1e-7) halves the lr: 6 reductions
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-7 * 0.5**6, rel=1e-9)


def test_validate_knows_every_callback_name_without_importing_its_package(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("callbacks: [{name: gradual_unfreezing, every_n_epochs: 2}, {name: noise_scale_steps}]\n")
    done = subprocess.run([sys.executable, "-m", "steepest", "validate", str(recipe)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "gradual_unfreezing" in done.stdout
