"""steepest.fit on the inputs users bring: tensors, a TensorDataset, a Dataset of dicts for a
model that returns its own loss (the Hugging Face convention), a ready DataLoader; bad input is a
one-line error naming the problem."""

from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import steepest
from steepest.errors import DataError


def blobs(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    return centres[y] + 0.5 * torch.randn(n, 2, generator=g), y


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))


@pytest.mark.parametrize("form", ["tensors", "dataset", "dataloader"])
def test_fit_learns_from_each_input_form(form):
    x, y = blobs()
    train = {"tensors": (x[:500], y[:500]), "dataset": TensorDataset(x[:500], y[:500]),
             "dataloader": DataLoader(TensorDataset(x[:500], y[:500]), batch_size=32, shuffle=True)}[form]
    result = steepest.fit(net(), train, val_data=(x[500:], y[500:]), max_epochs=8, lr=1e-2, console=False)
    assert result.metrics["val_accuracy"] > 0.9  # three well-separated blobs


@dataclass
class Output:
    loss: torch.Tensor
    logits: torch.Tensor


class OwnLoss(torch.nn.Module):
    """A model called as model(**batch) that computes its own loss when given labels."""

    def __init__(self):
        super().__init__()
        self.body = net()

    def forward(self, features, labels=None):
        logits = self.body(features)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return Output(loss, logits)


class Dicts(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "labels": self.y[i]}


def test_dict_batches_and_the_models_own_loss():
    x, y = blobs()
    result = steepest.fit(OwnLoss(), Dicts(x[:500], y[:500]), val_data=Dicts(x[500:], y[500:]), max_epochs=8, lr=1e-2,
                          task="classification", console=False)
    assert result.metrics["val_accuracy"] > 0.9


def test_bad_inputs_are_one_line_errors():
    x, y = blobs(20)
    with pytest.raises(DataError, match="must match"):
        steepest.fit(net(), (x, y[:10]), max_steps=1, console=False)
    with pytest.raises(DataError, match="Dataset or a DataLoader"):
        steepest.fit(net(), "data.csv", max_steps=1, console=False)
    with pytest.raises(DataError, match="target under 'labels'"):
        steepest.fit(OwnLoss(), _NoLabels(x), max_steps=1, console=False)


class _NoLabels(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i]}


def test_train_runs_a_recipe_with_overrides(tmp_path):
    summary = steepest.train("digits_mlp", ["trainer.max_steps=5", "trainer.max_epochs=null"], tmp_path / "run", console=False)
    assert summary["steps"] == 5 and (tmp_path / "run" / "model.safetensors").exists()
    assert steepest.load_recipe("digits_mlp").name == "digits_mlp" and steepest.__version__


def test_compile_in_place_and_cuda_graphs_refused_off_cuda():
    """fit(compile=True) compiles the model in place (parameter names kept); fit(cuda_graphs=True) needs
    a CUDA device and says so in one line, naming the argument to change."""
    from torch import nn

    from steepest.errors import ConfigError

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"fit\(cuda_graphs=True\): .*needs a CUDA device.*set cuda_graphs=False"):
            steepest.fit(nn.Linear(4, 2), (x, y), cuda_graphs=True, max_steps=2, console=False)
    result = steepest.fit(nn.Linear(4, 2), (x, y), (x, y), compile=True, max_steps=4, console=False)
    assert [k for k, _ in result.trainer.unwrapped_model.named_parameters()] == ["weight", "bias"]
    assert result.trainer.state.step == 4 and "val_loss" in result.metrics


def test_early_stopping_reports_the_metrics_of_the_restored_weights():
    x, y = blobs()
    result = steepest.fit(net(), (x[:500], y[:500]), val_data=(x[500:], y[500:]), max_epochs=40, lr=1e-2, console=False,
                          early_stopping={"monitor": "val_loss", "patience": 2, "min_delta": 0.05})
    assert "restored the weights" in result.trainer.state.stop_reason
    again = result.trainer.evaluate("val", log=False)  # the returned model, evaluated now
    assert result.metrics["val_loss"] == pytest.approx(again["val_loss"], rel=1e-6)
