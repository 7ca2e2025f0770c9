"""User code by import path: a model, a Dataset, a loss and a callback from the user's own module."""

import json
import sys
import textwrap

import pytest

from steepest.cli import main

USER_MODULE = textwrap.dedent(
    """
    import numpy as np
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, input_shape, num_outputs, width: int = 16):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.ReLU(), nn.Linear(width, num_outputs))
        def forward(self, x):
            return self.body(x)

    class Blobs(torch.utils.data.Dataset):
        def __init__(self, n: int = 300, seed: int = 0):
            rng = np.random.default_rng(seed)
            self.y = rng.integers(0, 3, n)
            self.x = rng.normal(size=(n, 4)).astype("float32") + self.y[:, None] * 3.0
        def __len__(self):
            return len(self.y)
        def __getitem__(self, i):
            return self.x[i], self.y[i]

    class Ragged(Blobs):
        def __getitem__(self, i):
            return (self.x[i][:3] if i == 7 else self.x[i]), self.y[i]
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mynets"
    sys.modules.pop("mynets", None)


def test_user_model_and_dataset_train(user_module, tmp_path, capsys):
    args = ["train", "--set", "model={component: 'mynets:Net', width: 32}", "--set", "data={component: 'mynets:Blobs', options: {n: 400}}",
            "--set", "trainer.max_epochs=40", "--set", "optimizer.lr=1e-2", "--run-dir", str(tmp_path / "r"), "-q"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.9


def test_user_component_errors(user_module, tmp_path, capsys):
    cases = [
        (["--set", "model={component: 'mynets:Nett'}"], "did you mean 'mynets:Net'"),
        (["--set", "model={component: 'nosuchmodule:Net'}"], "cannot import module 'nosuchmodule'"),
        (["--set", "model={component: 'mynets:Net', widht: 3}"], "did you mean 'width'"),
        (["--set", "model={component: 'mynets:Net', width: abc}"], "model.width"),
        (["--set", "data={component: 'mynets:Ragged'}"], "row 7 has shape"),
    ]
    for extra, expected in cases:
        code = main(["train", *extra, "--run-dir", str(tmp_path / "x"), "-q"])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and err.count("\n") == 1, (extra, err)
