"""Faults a new user of steepest.fit found (each was a wrong result, a silent no-op or a raw traceback);
each test is the user's input and what should have happened."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import steepest

X = np.random.RandomState(0).randn(200, 8).astype(np.float32)
Y = ((X[:, 0] > 0).astype(int) + (X[:, 1] > 0)).astype(np.int64)


def mlp(outputs=3, inputs=8):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(inputs, 16), torch.nn.ReLU(), torch.nn.Linear(16, outputs))


@pytest.mark.parametrize("max_steps", [6, 2])  # 4 steps an epoch: the budget ends mid-epoch (after one or no evaluation)
def test_val_metrics_are_those_of_the_weights_returned(max_steps):
    result = steepest.fit(mlp(), (X, Y), val_data=(X, Y), max_steps=max_steps, console=False)
    with torch.no_grad():
        loss = F.cross_entropy(result.model(torch.from_numpy(X)), torch.from_numpy(Y)).item()
    assert result.trainer.state.step == max_steps
    assert result.metrics["val_loss"] == pytest.approx(loss, rel=1e-5)


def fit(model, train, **kw):
    return steepest.fit(model, train, console=False, **kw)


class Rows(torch.utils.data.Dataset):
    """A numpy-backed Dataset, as users write them: float64 rows, int labels."""

    def __init__(self, x, y, dtype=np.float64):
        self.x, self.y, self.dtype = x, y, dtype

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].astype(self.dtype), int(self.y[i])


def test_empty_datasets_are_refused_not_scored_zero():
    with pytest.raises(steepest.errors.DataError, match="val_data has no samples"):
        fit(mlp(), (X, Y), val_data=Rows(X[:0], Y[:0]), max_epochs=1)
    with pytest.raises(steepest.errors.DataError, match="train_data has no samples"):
        fit(mlp(), Rows(X[:0], Y[:0]), max_epochs=1)


def test_a_float64_dataset_trains_as_the_same_float32_data():
    a = fit(mlp(), Rows(X, Y), max_epochs=2)
    b = fit(mlp(), Rows(X, Y, np.float32), max_epochs=2)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_a_model_that_cannot_take_the_batch_is_one_error_naming_it():
    with pytest.raises(steepest.errors.DataError, match=r"inputs \(64, 8\) uint8.*integer inputs are passed as they are"):
        fit(mlp(), ((X * 10).astype(np.uint8), Y), max_epochs=1)
    with pytest.raises(steepest.errors.DataError, match=r"first batch \(inputs \(64, 8\) float32, target \(64,\) int64\)"):
        fit(mlp(inputs=5), (X, Y), max_epochs=1)


def test_held_out_arrays_of_another_shape_are_refused_before_training():
    steps = []

    class Count(steepest.training.events.Callback):
        def on_step_end(self, trainer, output):
            steps.append(1)

    with pytest.raises(steepest.errors.DataError, match=r"val_data: samples have shape \(5,\), but train_data's have \(8,\)"):
        fit(mlp(), (X, Y), val_data=(X[:, :5], Y), max_epochs=1, callbacks=[Count()])
    assert not steps


def test_an_optimizer_over_other_parameters_is_refused_or_warned():
    with pytest.raises(steepest.errors.ConfigError, match="holds none of the model's 4 trainable parameter tensors"):
        fit(mlp(), (X, Y), optimizer=torch.optim.SGD(mlp().parameters(), lr=0.1), max_epochs=1)
    model = mlp()
    with pytest.warns(UserWarning, match="2 of the model's 4 trainable parameter tensors are not in the SGD"):
        fit(model, (X, Y), optimizer=torch.optim.SGD(model[0].parameters(), lr=0.1), max_epochs=1)


def test_class_ids_as_a_column():
    flat = fit(mlp(), (X, Y), val_data=(X, Y), max_epochs=2)
    column = fit(mlp(), (X, Y[:, None]), val_data=(X, Y[:, None]), max_epochs=2)
    assert column.metrics == flat.metrics
    with pytest.raises(steepest.errors.ConfigError, match=r"class ids come as a column \(64, 1\)"):
        fit(mlp(), torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y[:, None])), max_epochs=1)


def test_callbacks_must_be_callbacks():
    class Duck:
        def on_epoch_end(self, trainer):
            pass

    with pytest.raises(steepest.errors.ConfigError, match="a Duck is not a steepest Callback; subclass"):
        fit(mlp(), (X, Y), max_epochs=1, callbacks=[Duck()])
    with pytest.raises(steepest.errors.ConfigError, match="callbacks is a list of steepest Callback objects, got a object"):
        fit(mlp(), (X, Y), max_epochs=1, callbacks=object())


def test_broken_loss_and_forward_contracts_are_named():
    with pytest.raises(steepest.errors.ConfigError, match=r"the loss must give one number .* shape \(64,\); use reduction='mean'"):
        fit(mlp(), (X, Y), max_epochs=1, loss=torch.nn.CrossEntropyLoss(reduction="none"))
    with pytest.raises(steepest.errors.ConfigError, match="the loss must give a tensor .* got a float"):
        fit(mlp(), (X, Y), max_epochs=1, loss=lambda outputs, target: 1.0)
    with pytest.raises(steepest.errors.ConfigError, match=r"must return \(outputs, loss\); it returned a Tensor"):
        fit(mlp(), (X, Y), max_epochs=1, loss="cross_entropy", forward=lambda model, batch, loss_fn: model(batch[0]))
    with pytest.raises(steepest.errors.ConfigError, match="with a custom forward there is no default loss"):
        fit(mlp(), (X, Y), max_epochs=1, forward=lambda m, b, loss_fn: (m(b[0]), loss_fn(m(b[0]), b[1])))


def test_a_dict_output_with_its_own_loss_is_used():
    class DictOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, x):
            logits = self.net(x)
            return {"logits": logits, "loss": logits.square().mean()}  # not the task's loss: shows which one trains

    result = fit(DictOut(), (X, Y), max_epochs=3, lr=0.05, task="classification")
    with torch.no_grad():
        logits = result.model.net(torch.from_numpy(X))
    assert result.metrics["train_loss"] < 0.1  # its own loss, the logits' square, minimised (cross entropy is >= 0.5 here)
    assert F.cross_entropy(logits, torch.from_numpy(Y)) > 1.0  # and not the task's loss


def test_drop_last_keeps_a_batch_of_one_away_from_batch_norm():
    torch.manual_seed(0)
    bn = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    result = fit(bn, (X[:129], Y[:129]), batch_size=64, max_epochs=1, drop_last=True)
    assert result.trainer.state.step == 2
    with pytest.raises(steepest.errors.ConfigError, match="set it on your DataLoader"):
        fit(mlp(), torch.utils.data.DataLoader(Rows(X, Y)), max_epochs=1, drop_last=True)


def test_non_finite_lr_is_refused():
    with pytest.raises(steepest.errors.ConfigError, match=r"lr must be a positive number \(.*; finite\) or None, got inf"):
        fit(mlp(), (X, Y), lr=float("inf"))


class TinyLM(torch.nn.Module):
    def __init__(self, vocab=20):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = torch.nn.Embedding(vocab, 16), torch.nn.Linear(16, vocab)

    def forward(self, ids):
        return self.head(self.embed(ids))


def test_ids_per_position_are_guessed_as_language_modeling():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (96, 13), generator=g)
    result = fit(TinyLM(), (ids[:64, :-1], ids[:64, 1:]), val_data=(ids[64:, :-1], ids[64:, 1:]), max_epochs=1)
    assert result.trainer.info.task == "language_modeling"
    with torch.no_grad():
        logits = result.model(ids[64:, :-1])
    want = F.cross_entropy(logits.reshape(-1, 20), ids[64:, 1:].reshape(-1)).item()
    assert result.metrics["val_loss"] == pytest.approx(want, rel=1e-5)


def test_train_overrides_as_a_dict_and_resume_without_a_recipe(tmp_path):
    with pytest.raises(steepest.errors.ConfigError, match=r"overrides is a list of KEY=VALUE strings: \['optimizer.lr=1e-3'\]"):
        steepest.train("digits_mlp", "optimizer.lr=1e-3")
    with pytest.raises(steepest.errors.ConfigError, match="resume=True continues the run in run_dir: give run_dir"):
        steepest.train("digits_mlp", resume=True)
    run = tmp_path / "run"
    first = steepest.train("digits_mlp", {"trainer.max_epochs": None, "trainer.max_steps": 3, "checkpoint.every_n_steps": 3},
                           run, console=False)
    assert first["steps"] == 3
    again = steepest.train(None, {"trainer.max_steps": 5}, run, resume=True, console=False)
    assert again["steps"] == 5


def test_a_fit_run_directory_holds_the_final_weights_and_summary(tmp_path):
    import json

    from safetensors.torch import load_file

    run = tmp_path / "run"
    result = fit(mlp(), (X, Y), val_data=(X, Y), max_epochs=1, run_dir=run)
    weights = load_file(run / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in result.model.state_dict().items())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_accuracy"] == result.metrics["val_accuracy"] and summary["steps"] == 4
    with pytest.raises(steepest.errors.ConfigError, match="already holds a run; replace it with overwrite=True, or choose another run_dir"):
        fit(mlp(), (X, Y), max_epochs=1, run_dir=run)
