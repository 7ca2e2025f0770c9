"""steepest.fit refuses what it cannot honour, in one line: bad arguments, arguments that would have
no effect, bad rows in every input form (arrays, Datasets, ready DataLoaders, held-out data), and a
task the model's output cannot match. It leaves the caller's random generators as they were, and
returns its model in eval mode with the final train loss."""

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import steepest
from steepest.errors import ConfigError, DataError
from steepest.training.events import Callback


def data(n=64, classes=3, features=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def linear(outputs=3, features=4):
    torch.manual_seed(0)
    return nn.Linear(features, outputs)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


X, Y = data()
LOADER = DataLoader(TensorDataset(X, Y), batch_size=16)


@pytest.mark.parametrize("kwargs, match", [
    ({"clip_norm": -1.0}, r"clip_norm must be a positive number.*-1\.0"),
    ({"clip_norm": 0}, r"clip_norm must be a positive number"),
    ({"max_epochs": 0}, r"max_epochs must be a whole number >= 1"),
    ({"max_epochs": 2.5}, r"max_epochs must be a whole number >= 1.*2\.5"),
    ({"max_steps": -3}, r"max_steps must be a whole number >= 1"),
    ({"batch_size": 0}, r"batch_size must be a whole number >= 1"),
    ({"accumulate": 0}, r"accumulate must be a whole number >= 1"),
    ({"accumulate": None}, r"accumulate must be a whole number >= 1 \(micro-batches per optimizer step\), got None"),
    ({"eval_batch_size": 0, "val_data": (X, Y)}, r"eval_batch_size must be a whole number >= 1"),
    ({"num_workers": -1}, r"num_workers must be a whole number >= 0"),
    ({"lr": -0.1}, r"lr must be a positive number"),
    ({"weight_decay": -1e-4}, r"weight_decay must be a number >= 0"),
    ({"precision": "bf16-mixed"}, r"precision: 'bf16-mixed' is not one of fp32, bf16, fp16.*Lightning's 'bf16-mixed' is 'bf16' here"),
    ({"task": "classify"}, r"task: unknown task 'classify'; did you mean 'classification'"),
    ({"early_stopping": {"metric": "val_loss"}, "val_data": (X, Y)},
     r"early_stopping: unknown key 'metric'.*did you mean 'monitor'.*monitor, mode, patience"),
    ({"early_stopping": "val_loss", "val_data": (X, Y)}, r"early_stopping is a dict"),
    ({"early_stopping": {"monitor": "val_loss"}}, r"early_stopping monitors a validation metric: pass val_data"),
    ({"loggers": ["csv"]}, r"loggers write into the run directory: pass run_dir"),
    ({"loggers": "csv", "run_dir": "unused"}, r"loggers is a list of names"),
    ({"transform": lambda x, g: x}, r"transform runs on the samples of a Dataset; train_data is in-memory arrays"),
    ({"num_workers": 2}, r"num_workers has no effect here.*train_data is in-memory arrays"),
    ({"eval_batch_size": 32}, r"eval_batch_size has no effect here"),
    ({"schedule": 3}, r"schedule must be a registry name"),
    ({"callbacks": Callback()}, r"callbacks is a list: callbacks=\[Callback\(...\)\]"),
])
def test_bad_arguments_are_one_line_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        steepest.fit(linear(), kwargs.pop("train_data", (X, Y)), max_steps=kwargs.pop("max_steps", 2), console=False, **kwargs)
    one_line(err)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 32}, r"batch_size: train_data is a ready DataLoader, which makes its own batches \(16 samples\)"),
    ({"num_workers": 2}, r"num_workers has no effect here.*a ready DataLoader.*set it on your DataLoader"),
    ({"collate_fn": lambda rows: rows}, r"collate_fn has no effect here"),
    ({"transform": lambda x, g: x}, r"transform runs on the samples of a Dataset; train_data is a ready DataLoader"),
])
def test_arguments_a_ready_dataloader_ignores_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        steepest.fit(linear(), LOADER, max_steps=2, console=False, **kwargs)
    one_line(err)


def test_an_optimizer_object_keeps_its_own_lr_and_a_torch_scheduler_is_refused():
    model = linear()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"lr, weight_decay.*set them on the optimizer you pass, or pass its name") as err:
        steepest.fit(model, (X, Y), optimizer=sgd, lr=1e-3, weight_decay=0.1, max_steps=2, console=False)
    one_line(err)
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(sgd, max_lr=0.1, total_steps=10)
    for schedule in (one_cycle, torch.optim.lr_scheduler.StepLR):
        with pytest.raises(ConfigError, match=r"schedule: a torch LR scheduler \((OneCycleLR|StepLR)\).*schedule=lambda step.*from_torch") as err:
            steepest.fit(model, (X, Y), optimizer=sgd, schedule=schedule, max_steps=2, console=False)
        one_line(err)


def test_max_epochs_is_honoured_and_budgets_default_to_ten_epochs():
    assert steepest.fit(linear(), (X, Y), batch_size=16, max_epochs=1, console=False).trainer.state.step == 4
    assert steepest.fit(linear(), (X, Y), batch_size=16, console=False).trainer.state.step == 40


# -- bad rows: every input form names the row or sample ------------------------------------------

def with_bad(row, label=None, nan=False, n=64, classes=3):
    x, y = data(n, classes)
    x, y = x.clone(), y.clone()
    if nan:
        x[row, 1] = float("nan")
    if label is not None:
        y[row] = label
    return x, y


def test_in_memory_arrays_are_checked_up_front():
    with pytest.raises(DataError, match=r"^train_data: sample 5 contains NaN; drop or impute") as err:
        steepest.fit(linear(), with_bad(5, nan=True), max_steps=2, console=False)
    one_line(err)
    with pytest.raises(DataError, match=r"^train_data: sample 7 has label 3, outside \[0, 3\)") as err:
        steepest.fit(linear(), with_bad(7, label=3), max_steps=2, console=False)
    one_line(err)
    x, y = with_bad(9, label=-1)
    with pytest.raises(DataError, match=r"^train_data: sample 9 has label -1, outside \[0, 3\)"):
        steepest.fit(linear(), (x.numpy().astype(np.float64), y.numpy()), max_steps=2, console=False)
    with pytest.raises(DataError, match=r"^val_data: sample 3 has label 3, outside \[0, 3\)"):
        steepest.fit(linear(), (X, Y), val_data=with_bad(3, label=3, n=20), max_steps=2, console=False)
    with pytest.raises(DataError, match=r"^test_data: sample 4 contains NaN"):
        steepest.fit(linear(), (X, Y), test_data=with_bad(4, nan=True, n=20), max_steps=2, console=False)
    big = X.double().clone()
    big[6, 0] = 1e39  # finite in float64, inf in the model's float32
    with pytest.raises(DataError, match=r"^train_data: sample 6 has a value beyond the range of torch.float32"):
        steepest.fit(linear(), (big, Y), max_steps=2, console=False)


def test_a_ready_dataloader_checks_its_batches_as_they_come():
    x, y = with_bad(40, label=3)
    with pytest.raises(DataError, match=r"^train_data: sample 40 has label 3, outside \[0, 3\)") as err:
        steepest.fit(linear(), DataLoader(TensorDataset(x, y), batch_size=16), max_epochs=1, console=False)
    one_line(err)
    shuffled = DataLoader(TensorDataset(*with_bad(40, nan=True)), batch_size=16, shuffle=True)
    with pytest.raises(DataError, match=r"^train_data: sample \d+ of batch \d+ contains NaN") as err:
        steepest.fit(linear(), shuffled, max_epochs=1, console=False)
    one_line(err)


class Stream(IterableDataset):
    """A stream of unknown length, with label 7 at index 33."""

    def __iter__(self):
        for i in range(50):
            yield torch.randn(4), torch.tensor(7 if i == 33 else i % 3)


def test_a_ready_dataloader_over_a_stream_of_unknown_length_runs_for_max_steps():
    with pytest.raises(DataError, match=r"^train_data: sample 1 of batch 4 has label 7, outside \[0, 3\)"):
        steepest.fit(linear(), DataLoader(Stream(), batch_size=8), max_steps=10, console=False)


def test_held_out_datasets_and_dataloaders_are_checked():
    bad = TensorDataset(*with_bad(3, label=3, n=20))
    for val in (bad, DataLoader(bad, batch_size=8)):
        with pytest.raises(DataError, match=r"^val_data: sample 3 has label 3, outside \[0, 3\)") as err:
            steepest.fit(linear(), (X, Y), val_data=val, max_steps=2, console=False)
        one_line(err)


# -- the caller's random generators ---------------------------------------------------------------

class Boom(Callback):
    def on_step_end(self, trainer, output):
        raise RuntimeError("boom")


def test_fit_leaves_the_callers_random_generators_as_they_were():
    torch.manual_seed(1)
    first = nn.Linear(4, 3)
    before = [p.detach().clone() for p in first.parameters()]
    steepest.fit(first, (X, Y), max_steps=3, seed=5, console=False)
    second = nn.Linear(4, 3)  # the next ensemble member: drawn from the caller's generator, not fit's seed
    torch.manual_seed(1)
    nn.Linear(4, 3)
    expected = nn.Linear(4, 3)
    assert all(torch.equal(a, b) for a, b in zip(second.parameters(), expected.parameters()))
    assert not torch.equal(second.weight, before[0])

    model = linear()
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"):
        steepest.fit(model, (X, Y), max_steps=3, callbacks=[Boom()], console=False)
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_the_same_seed_gives_the_same_result():
    def run(seed):
        model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 3))
        torch.manual_seed(0)
        for p in model.parameters():
            nn.init.normal_(p, std=0.3)
        steepest.fit(model, (X, Y), max_steps=6, batch_size=16, seed=seed, console=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))


# -- custom forward, task guessing ------------------------------------------------------------------

def weighted_step(model, batch, loss_fn):
    x, w, y = batch
    outputs = model(x)
    return outputs, (torch.nn.functional.cross_entropy(outputs, y, reduction="none") * w).mean()


def test_a_custom_forward_is_used_for_the_output_probe_and_metrics_read_the_last_item():
    w = torch.ones(len(X))
    result = steepest.fit(linear(), TensorDataset(X, w, Y), val_data=TensorDataset(X, w, Y), forward=weighted_step,
                          task="classification", max_steps=4, console=False)
    assert 0 <= result.metrics["val_accuracy"] <= 1 and result.trainer.info.num_classes == 3

    def own_order(model, batch, loss_fn):
        x, y, w = batch
        return model(x), loss_fn(model(x), y)

    with pytest.raises(ConfigError, match=r"metrics compare the outputs with the batch's last item.*float32.*put the target last") as err:
        steepest.fit(linear(), TensorDataset(X, Y, w), forward=own_order, task="classification", max_steps=2, console=False)
    one_line(err)


def test_one_output_and_labels_zero_one_is_a_binary_task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = (x[:, 0] > 0).long()
    result = steepest.fit(linear(1), (x, y), val_data=(x, y), max_epochs=5, lr=0.05, console=False)
    assert result.trainer.info.task == "binary" and result.metrics["val_accuracy"] > 0.9
    with pytest.raises(ConfigError, match=r"guessed 'binary'.*1 output.*labels reach 2.*give the model 3 outputs") as err:
        steepest.fit(linear(1), (x, y + (y == 1).long()), max_steps=2, console=False)
    one_line(err)
    with pytest.raises(ConfigError, match=r"task='classification' needs one model output per class.*task='binary'") as err:
        steepest.fit(linear(1), (x, y), task="classification", max_steps=2, console=False)
    one_line(err)


def test_float_class_ids_say_which_task_was_guessed_and_why():
    with pytest.raises(ConfigError, match=r"guessed 'regression' because the targets are floating point \(torch.float32\).*"
                                          r"10 outputs per sample for 1 target.*y.long\(\)") as err:
        steepest.fit(linear(10), (X, Y.float()), max_steps=2, console=False)
    one_line(err)
    with pytest.raises(ConfigError, match=r"task='classification' needs integer class ids.*torch.float32") as err:
        steepest.fit(linear(10), (X, Y.float()), task="classification", max_steps=2, console=False)
    one_line(err)


# -- what fit returns ---------------------------------------------------------------------------------

class Losses(Callback):
    def __init__(self):
        self.values = []

    def on_step_end(self, trainer, output):
        self.values.append(float(output.loss))


def test_the_model_comes_back_in_eval_mode_with_its_final_train_loss():
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    losses = Losses()
    result = steepest.fit(model, (X, Y), max_steps=3, batch_size=16, callbacks=[losses], console=False)
    assert result.model is model and not model.training and not model[1].training
    assert result.metrics["train_loss"] == pytest.approx(sum(losses.values) / 3)  # fewer steps than one log window: all of them
    result = steepest.fit(linear(), (X, Y), max_steps=12, batch_size=16, callbacks=[losses := Losses()], console=False)
    assert result.metrics["train_loss"] == pytest.approx(sum(losses.values[:10]) / 10)  # the last logged window


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_rows_are_checked_on_the_device_and_the_cuda_generator_is_put_back():
    torch.cuda.init()
    state = torch.cuda.get_rng_state()
    with pytest.raises(DataError, match=r"^train_data: sample 7 has label 3, outside \[0, 3\)"):
        steepest.fit(linear(), with_bad(7, label=3), max_steps=2, device="cuda", console=False)
    result = steepest.fit(linear(), (X, Y), val_data=TensorDataset(X, Y), max_steps=2, device="cuda", console=False)
    assert "val_accuracy" in result.metrics and torch.equal(torch.cuda.get_rng_state(), state)
