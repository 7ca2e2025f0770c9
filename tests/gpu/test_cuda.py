"""Checks that need a CUDA device (skipped elsewhere); `bash benchmarks/gpu_session.sh` runs them with
the GPU benchmarks when a GPU machine is lent."""

import pytest
import torch

import steepest.optim as so

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

OWN = {"lion": dict(lr=1e-3, weight_decay=0.1), "lamb": dict(lr=1e-2, weight_decay=0.01), "lars": dict(lr=1.0, weight_decay=1e-4),
       "novograd": dict(lr=1e-2), "momentum": dict(lr=0.1, ema=True), "rangerlars": dict(lr=1e-2)}


def problem(device, dtype=torch.float32, steps=20):
    g = torch.Generator().manual_seed(0)
    shapes = [(64, 32), (32,), (8, 3, 3, 3), (128,)]
    params = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]  # the same numbers in any dtype
    grads = [[torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(steps)]
    return [p.to(device, dtype) for p in params], [[x.to(device, dtype) for x in gs] for gs in grads]


def run(name, params, grads, **extra):
    ps = [p.clone().requires_grad_(True) for p in params]
    opt = so.create(name, ps, group_params=False, **OWN[name], **extra)
    for i, gs in enumerate(grads):
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        if i == 1:  # after compilation: the step itself must not synchronize with the host
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        for group in opt.param_groups:  # a schedule: the lr changes every step (no recompilation expected)
            group["lr"] *= 0.99
    return [p.detach() for p in ps]


@pytest.mark.parametrize("name", list(OWN))
def test_compiled_default_on_cuda_matches_the_cpu_reference_and_never_syncs(name):
    params, grads = problem("cuda")
    fast = run(name, params, grads)  # the CUDA default: impl="compiled"
    cpu_params, cpu_grads = problem("cpu", torch.float64)
    slow = run_cpu_reference(name, cpu_params, cpu_grads)
    for a, b in zip(fast, slow):
        assert torch.allclose(a.double().cpu(), b, rtol=1e-4, atol=1e-5)


def run_cpu_reference(name, params, grads):
    ps = [p.clone().requires_grad_(True) for p in params]
    opt = so.create(name, ps, group_params=False, impl="reference", **OWN[name])
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        opt.step()
        for group in opt.param_groups:
            group["lr"] *= 0.99
    return [p.detach() for p in ps]


def test_bf16_autocast_training_step_runs_and_matches_fp32_loosely():
    from steepest.config import load_recipe
    from steepest.run import build_run

    results = {}
    for precision in ("fp32", "bf16"):
        recipe = load_recipe("digits_mlp", ["trainer.device=cuda", f"trainer.precision={precision}", "trainer.max_epochs=5",
                                            "checkpoint.enabled=false"])
        run = build_run(recipe, None, console=False)
        run.trainer.fit()
        results[precision] = run.trainer.evaluate("test")["test_accuracy"]
    assert results["bf16"] > results["fp32"] - 0.03, results


@pytest.mark.parametrize("name,kwargs", [("adamw", {"fused": True}), ("lamb", {})])
def test_the_training_step_never_syncs_between_log_steps(name, kwargs):
    """The Trainer's step (forward, backward, the device-side non-finite skip, the skipped-step
    counters, the summed train loss) runs under torch.cuda.set_sync_debug_mode("error") on every step
    that does not end on a log step, a NaN step included: fused AdamW skips through `found_inf`;
    Lamb's update is selected on the device and its step count (a CPU tensor) restored a step late."""
    from torch import nn

    from steepest.data import DeviceLoader
    from steepest.training.callbacks import TrainScalars
    from steepest.training.events import Callback
    from steepest.training.trainer import Trainer, TrainerOptions

    class NoSync(Callback):
        name = "no_sync"

        def __init__(self):
            self.armed = 0

        def on_step_start(self, trainer, batches):
            step = trainer.state.step
            if step == 3:
                batches[-1][0][0, 0] = float("nan")
            if step >= 1 and (step + 1) % 5:  # after the first step (compilation, the optimizer state's creation)
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
                self.armed += 1

        def on_step_end(self, trainer, output):
            torch.cuda.set_sync_debug_mode("default")

        def on_exception(self, trainer, exc):
            torch.cuda.set_sync_debug_mode("default")

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)).cuda()
    x, y = torch.randn(4096, 784, device="cuda"), torch.randint(0, 10, (4096,), device="cuda")
    guard = NoSync()
    trainer = Trainer(model, so.create(name, model, lr=1e-3, **kwargs), nn.CrossEntropyLoss(), DeviceLoader(x, y, 256),
                      options=TrainerOptions(max_steps=12, log_every_n_steps=5), callbacks=[TrainScalars(5), guard])
    try:
        trainer.fit()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert guard.armed == 9 and trainer.state.nonfinite_total == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cuda_graphs_refuse_accumulation_and_train_like_eager():
    """trainer.cuda_graphs: forward and backward replayed from CUDA graphs (torch.compile
    "reduce-overhead"); the run, evaluations included, ends where the eager run ends (inductor's
    kernels round differently: a tolerance, not equality)."""
    from steepest.config import load_recipe
    from steepest.errors import ConfigError
    from steepest.run import build_run

    with pytest.raises(ConfigError, match="trainer.cuda_graphs: .*trainer.accumulate=2"):
        load_recipe("digits_mlp", ["trainer.cuda_graphs=true", "trainer.accumulate=2"])
    sets = ["trainer.device=cuda", "data.subset=600", "trainer.max_steps=40", "trainer.max_epochs=null", "model.dropout=0.0",
            "trainer.early_stopping=null", "trainer.log_every_n_steps=5"]
    runs = {}
    for graphs in (False, True):
        run = build_run(load_recipe("digits_mlp", [*sets, f"trainer.cuda_graphs={str(graphs).lower()}"]), None, console=False)
        state = run.trainer.fit()
        metrics = run.trainer.evaluate("val")
        runs[graphs] = (state.step, metrics["val_loss"], [p.detach().float().cpu() for p in run.trainer.unwrapped_model.parameters()])
    (steps_e, loss_e, w_e), (steps_g, loss_g, w_g) = runs[False], runs[True]
    assert steps_e == steps_g == 40
    assert loss_g == pytest.approx(loss_e, rel=1e-3)
    assert max((a - b).abs().max().item() for a, b in zip(w_e, w_g)) < 1e-3
