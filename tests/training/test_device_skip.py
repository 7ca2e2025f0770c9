"""A non-finite step is skipped on the device (steepest.training.skip), with the behaviour of the
host-side check it replaced: a NaN batch skips exactly that step (no parameter, optimizer-state,
step-count or loss-scale change; the schedules and the step counter move on), the count is right,
`max_nonfinite_steps` in a row stops the run, and nothing between two log steps reads a device value
on the host (issue 15, "The trainer without host syncs on the hot path"). On the CPU the default
reads the flag on the host (it is there already); `skip_on_device=True` runs the device path, which
these tests check on the CPU as it runs on a GPU."""

import math

import pytest
import torch
from torch import nn

from steepest.cli import main
from steepest.config import load_recipe
from steepest.data import DeviceLoader, Split
from steepest.errors import ConfigError, TrainingError
from steepest.optim import OPTIMIZERS, create
from steepest.schedules import apply as apply_schedule
from steepest.training.callbacks import Checkpoint, TrainScalars
from steepest.training.checkpoint import load_state
from steepest.training.engine import Engine
from steepest.training.events import Callback
from steepest.training.trainer import Trainer, TrainerOptions


def schedule(step: int) -> float:
    return 1.0 / (1 + step)


class Poison(Callback):
    """A NaN in the last micro-batch of the steps given (the batch is a view of the data: restored after)."""

    name = "poison"

    def __init__(self, steps):
        self.steps, self.saved = set(steps), None

    def on_step_start(self, trainer, batches):
        if trainer.state.step in self.steps:
            x = batches[-1][0]
            self.saved = (x, x[0, 0].clone())
            x[0, 0] = float("nan")

    def on_step_end(self, trainer, output):
        if self.saved is not None:
            x, value = self.saved
            x[0, 0] = value
            self.saved = None


def problem(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)


def optimizer(name, model, kwargs):
    return create(name, model, lr=1e-2, **kwargs)


def create_graph(name):
    return bool(OPTIMIZERS.get(name).flags.get("needs_create_graph"))


def trained(name, kwargs, poison, steps=10, skip_on_device=True, **options):
    model, x, y = problem()
    opt = optimizer(name, model, kwargs)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), DeviceLoader(x, y, 8, seed=3),
                      options=TrainerOptions(max_steps=steps, log_every_n_steps=4, create_graph=create_graph(name),
                                             skip_on_device=skip_on_device, **options),
                      callbacks=[Poison(poison)], schedules={"lr": schedule})
    trainer.fit()
    return trainer


def reference(name, kwargs, poison, steps=10, **options):
    """The behaviour of the host-side check: a poisoned step never reaches the optimizer (nor the
    GradScaler), but its schedule value is written and it counts as a step."""
    model, x, y = problem()
    opt = optimizer(name, model, kwargs)
    acc = options.pop("accumulate", 1)
    engine = Engine(model, opt, nn.CrossEntropyLoss(), device=torch.device("cpu"), check_finite=False,
                    create_graph=create_graph(name), **options)
    loader, step, epoch = DeviceLoader(x, y, 8, seed=3), 0, 0
    while step < steps:
        for batches in loader.steps(epoch, acc, 0):
            apply_schedule(schedule, opt, step, "lr")
            if step not in poison:
                engine.train_step(batches)
            step += 1
            if step == steps:
                break
        epoch += 1
    return model, opt, engine


def assert_same(a, b, path=""):
    """Equal to the last bit, through nested state dicts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


CASES = [(name, {}, [3], {}) for name in OPTIMIZERS.names()] + [
    ("adam", {"fused": False, "foreach": True}, [3], {}),  # torch's foreach Adam: selected on the device
    ("adam", {"fused": False, "foreach": False}, [0], {}),  # a first step that creates the state
    ("adamw", {"fused": True}, [0, 5], {}),  # fused: found_inf, GradScaler's mechanism
    ("nesterov", {"fused": True}, [0], {}),  # fused SGD must not keep the buffer of a skipped first step
    ("lamb", {}, [0, 1], {}),
    ("lookahead", {"k": 5}, [4], {}),  # the step that would have synced the slow weights
    ("adamw", {}, [2, 5], {"accumulate": 2, "clip_norm": 0.5}),
    ("momentum", {}, [2], {"clip_value": 0.01}),
    ("adam", {"fused": False}, [3], {"precision": "fp16"}),  # the GradScaler's scale is left as it was
    ("radam", {}, [3], {"precision": "bf16"}),
]


@pytest.mark.parametrize("on_device", [True, None], ids=["device", "default"])
@pytest.mark.parametrize("name,kwargs,poison,options", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_a_nan_batch_skips_exactly_that_step(name, kwargs, poison, options, on_device):
    trainer = trained(name, kwargs, poison, skip_on_device=on_device, **options)
    model, opt, engine = reference(name, kwargs, poison, **options)
    assert trainer.state.step == 10 and trainer.state.nonfinite_total == len(poison)
    assert isinstance(trainer.state.nonfinite_total, int) and trainer.state.nonfinite_in_row == 0
    assert_same(trainer.unwrapped_model.state_dict(), model.state_dict())
    assert_same(trainer.optimizer.state_dict(), opt.state_dict())
    if engine.scaler is not None:  # the NaN step's inf gradients did not lower the scale
        assert trainer.engine.scaler.get_scale() == engine.scaler.get_scale() == 2.0**16
        assert_same(trainer.engine.scaler.state_dict(), engine.scaler.state_dict())


def test_skip_nonfinite_false_checks_nothing():
    trainer = trained("sgd", {}, [3], skip_nonfinite=False)
    assert trainer.engine.skip is None and trainer.state.nonfinite_total == 0
    assert all(torch.isnan(p).any() for p in trainer.unwrapped_model.parameters())


class Trap(Callback):
    """Makes every host read of a tensor value raise, from the start of each step that does not end
    on a log step to its end (placed last, so every other callback's on_step_end runs inside)."""

    name = "trap"

    def __init__(self, every, first=1):
        self.every, self.first, self.armed, self.armed_steps = every, first, False, 0

    def on_step_start(self, trainer, batches):
        step = trainer.state.step
        self.armed = step >= self.first and (step + 1) % self.every != 0
        self.armed_steps += self.armed

    def on_step_end(self, trainer, output):
        self.armed = False


@pytest.fixture
def trap(monkeypatch):
    trap = Trap(every=5)

    def guard(original):
        def call(self, *args, **kwargs):
            if trap.armed:
                raise AssertionError("a device value was read on the host between two log steps")
            return original(self, *args, **kwargs)
        return call

    for method in ("__bool__", "item", "tolist", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, method, guard(getattr(torch.Tensor, method)))
    return trap


@pytest.mark.parametrize("name,kwargs", [("adamw", {"fused": True}), ("rmsprop", {"foreach": True}), ("momentum", {"fused": False})])
def test_no_host_read_between_log_steps(trap, name, kwargs):
    """The step (the forward and backward, the device-side skip, the counters, the logged losses)
    reads nothing on the host between log steps, a skipped step included. The first step adds the
    optimizer state and reads its flag once. These optimizers read no value of theirs on the host
    (steepest's own read their step count, a CPU tensor even on CUDA, where it is no sync)."""
    model, x, y = problem()
    trainer = Trainer(model, optimizer(name, model, kwargs), nn.CrossEntropyLoss(), DeviceLoader(x, y, 8, seed=3),
                      options=TrainerOptions(max_steps=12, log_every_n_steps=5, skip_on_device=True),
                      callbacks=[Poison([2, 7]), TrainScalars(5), trap])
    trainer.fit()
    assert trap.armed_steps == 9 and trainer.state.nonfinite_total == 2


def test_max_nonfinite_steps_stops_the_run_at_the_next_read():
    """Three skipped steps in a row (the 2nd to the 4th), then good ones: the run still stops, at
    the next read of the counters (the log step 8), with the message it always had."""
    model, x, y = problem()
    trainer = Trainer(model, optimizer("adamw", model, {}), nn.CrossEntropyLoss(), DeviceLoader(x, y, 8, seed=3),
                      options=TrainerOptions(max_steps=12, log_every_n_steps=8, max_nonfinite_steps=3, skip_on_device=True),
                      callbacks=[Poison([1, 2, 3])])
    with pytest.raises(TrainingError, match=r"NaN/inf for 3 steps in a row \(by step 8\)"):
        trainer.fit()
    assert trainer.state.step == 8 and trainer.state.nonfinite_total == 3 and trainer.state.nonfinite_in_row == 0


def test_two_skipped_steps_in_a_row_of_three_allowed_do_not_stop():
    trainer = trained("adamw", {}, [1, 2, 6, 7], max_nonfinite_steps=3)
    assert trainer.state.nonfinite_total == 4 and trainer.state.step == 10


def test_a_checkpoint_reads_the_counters_and_resume_is_bit_identical(tmp_path):
    whole = trained("lamb", {}, [3], steps=10)

    def run(steps, resume=None):
        model, x, y = problem()
        trainer = Trainer(model, optimizer("lamb", model, {}), nn.CrossEntropyLoss(), DeviceLoader(x, y, 8, seed=3),
                          options=TrainerOptions(max_steps=steps, log_every_n_steps=4, skip_on_device=True),
                          callbacks=[Poison([3]), Checkpoint(tmp_path, every_n_steps=5, every_n_epochs=None, keep_best=False)],
                          schedules={"lr": schedule})
        if resume is not None:
            trainer.load_state_dict(load_state(resume))
        trainer.fit()
        return trainer

    run(5)
    path = tmp_path / "step-00000005.safetensors"
    saved = load_state(path)
    assert saved["train_state"]["nonfinite_total"] == 1 and saved["train_state"]["step"] == 5
    resumed = run(10, resume=path)
    assert resumed.state.nonfinite_total == 1
    assert_same(resumed.unwrapped_model.state_dict(), whole.unwrapped_model.state_dict())
    assert_same(resumed.optimizer.state_dict(), whole.optimizer.state_dict())


def test_the_logged_loss_leaves_out_skipped_steps():
    logged, losses = [], []

    class Capture(Callback):
        name = "capture"

        def on_step_end(self, trainer, output):
            losses.append(output.loss.clone())

        def on_log(self, trainer, step, values):
            if "train_loss" in values:
                logged.append((step, values["train_loss"], values.get("nonfinite_steps", 0), "grad_norm" in values))

    model, x, y = problem()
    trainer = Trainer(model, optimizer("adamw", model, {}), nn.CrossEntropyLoss(), DeviceLoader(x, y, 8, seed=3),
                      options=TrainerOptions(max_steps=8, log_every_n_steps=4, skip_on_device=True),
                      callbacks=[Poison([1, 7]), Capture(), TrainScalars(4)])
    trainer.fit()
    first = [v for v in losses[:4] if math.isfinite(float(v))]
    second = [v for v in losses[4:] if math.isfinite(float(v))]
    assert len(first) == 3 and len(second) == 3
    assert logged[0][:3] == (4, float(sum(first[1:], first[0])) / 3, 1)
    assert logged[1][:3] == (8, float(sum(second[1:], second[0])) / 3, 2)
    assert logged[0][3] and not logged[1][3]  # no gradient norm logged for the skipped log step


def test_cuda_graphs_is_refused_without_a_cuda_device(capsys, tmp_path):
    """Refused when training starts, in one line (exit 2), like trainer.device=cuda: the recipe itself
    still validates (a run trained on a GPU predicts and exports on a CPU machine)."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert load_recipe("digits_mlp", ["trainer.cuda_graphs=true"]).trainer.cuda_graphs
    assert main(["train", "digits_mlp", "--set", "trainer.cuda_graphs=true", "-q"]) == 2
    err = capsys.readouterr().err
    assert "trainer.cuda_graphs: CUDA graph capture needs a CUDA device" in err and err.count("\n") == 1
    assert main(["train", "digits_mlp", "--set", "trainer.cuda_graphs=true", "--set", "trainer.device=cpu", "-q",
                 "--run-dir", str(tmp_path / "run")]) == 2
    assert "device is cpu" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # a refused command writes nothing (not even config.yaml)
    assert main(["train", "digits_mlp", "--set", "trainer.device=cuda", "-q", "--run-dir", str(tmp_path / "cuda")]) == 2
    assert not (tmp_path / "cuda").exists()
    with pytest.raises(ConfigError, match="trainer.cuda_graphs: .*trainer.accumulate=2"):  # can run nowhere
        load_recipe("digits_mlp", ["trainer.cuda_graphs=true", "trainer.accumulate=2"])
    assert main(["validate", "digits_mlp", "--set", "trainer.cuda_graphs=true"]) == 0


def test_cuda_graphs_option_begins_a_graph_step_at_every_forward(monkeypatch):
    """The wiring the CUDA run relies on (tests/gpu checks the graphs themselves): with
    TrainerOptions(cuda_graphs=True) every training and evaluation forward first calls
    torch.compiler.cudagraph_mark_step_begin, and without it none does."""
    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    for graphs in (False, True):
        calls.clear()
        model = nn.Linear(5, 3)
        trainer = Trainer(model, create("adamw", model, lr=1e-2), nn.CrossEntropyLoss(), DeviceLoader(x, y, 16, seed=0),
                          options=TrainerOptions(max_steps=6, log_every_n_steps=3, cuda_graphs=graphs, eval_batch_size=32),
                          eval_data={"val": Split(x, y)})
        trainer.fit()
        trainer.evaluate("val")  # 64 samples in batches of 32
        assert len(calls) == (6 + 2 if graphs else 0)
