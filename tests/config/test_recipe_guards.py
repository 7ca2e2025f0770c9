"""Recipe values that passed validation and then crashed or silently changed a run: seeds that
overflow the generators they seed, true/false given for a count, an empty --set value, non-string YAML keys, and component
arguments (model widths, schedule and loss ranges) that only training used to check. Each is one
line on stderr and exit code 2 from `steepest validate`, which stays fast (nothing is trained)."""

import pytest

from steepest.cli import main
from steepest.config import apply_overrides, load_recipe, recipe_from_dict
from steepest.config.validate import validate_recipe
from steepest.errors import ConfigError
from steepest.models.mlp import MLP


# -- seeds -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["trainer.seed", "data.split_seed"])
@pytest.mark.parametrize("value", ["99999999999999999999", "-1", str(2**32)])
def test_seeds_out_of_range_refused_at_validation(key, value, one_error_line):
    err = one_error_line(["validate", "--set", f"{key}={value}"])
    assert f"error: {key}: a seed must be a whole number in [0, 2**32)" in err


def test_search_seed_bounded_for_optuna(one_error_line):
    err = one_error_line(["validate", "--set", f"search.seed={2**32}"])
    assert "search.seed: a seed must be a whole number in [0, 2**31)" in err


def test_largest_seed_is_accepted_and_seeds_the_loaders():
    from steepest.data.stream import epoch_order

    recipe = load_recipe("digits_mlp", [f"trainer.seed={2**32 - 1}", f"data.split_seed={2**32 - 1}"])
    assert recipe.trainer.seed == 2**32 - 1
    validate_recipe(recipe)
    assert sorted(epoch_order(10, 7, recipe.trainer.seed).tolist()) == list(range(10))  # seed * 1_000_003 + epoch fits int64


# -- counts are numbers, not booleans ----------------------------------------------------------------
@pytest.mark.parametrize("key", ["data.batch_size", "data.eval_batch_size", "data.num_workers", "data.num_classes",
                                 "data.channels", "trainer.max_epochs", "trainer.max_steps", "trainer.accumulate",
                                 "trainer.early_stopping.patience", "checkpoint.keep_last", "checkpoint.every_n_epochs"])
def test_true_is_not_a_count(key, one_error_line):
    err = one_error_line(["validate", "--set", f"{key}=true"])
    assert f"error: {key}: expected a whole number, not true/false" in err


def test_true_is_not_a_learning_rate(one_error_line):
    err = one_error_line(["validate", "--set", "optimizer.lr=true"])
    assert "optimizer.lr: expected a number, not true/false" in err


@pytest.mark.parametrize(("setting", "message"), [
    ("loss={name: focal, gamma: true}", "loss.gamma: expected a number"),
    ("model.dropout=true", "model.dropout: expected a number"),
    ("callbacks=[{name: early_stopping, patience: true}]", "callbacks.0.patience: expected a whole number"),
    ("optimizer.weight_decay=false", "optimizer.weight_decay: expected a number"),
])
def test_true_is_not_a_number_in_component_arguments(setting, message, one_error_line):
    """Component arguments (checked against the component's type hints) took true as 1 in pydantic's lax mode."""
    err = one_error_line(["validate", "mnist_cnn", "--set", setting])
    assert f"error: {message}, not true/false" in err


def test_component_booleans_still_take_booleans():
    assert main(["validate", "mnist_cnn", "--set", "optimizer={name: sgd, nesterov: true, momentum: 0.9}"]) == 0


def test_boolean_fields_still_take_booleans():
    recipe = load_recipe("digits_mlp", ["data.shuffle=false", "data.pin_memory=false", "data.batch_size=full",
                                        "data.shuffle=once", "trainer.seed=3"])
    assert recipe.data.shuffle == "once" and recipe.data.batch_size == "full" and recipe.data.pin_memory is False


def test_out_of_range_count_names_the_key_only(one_error_line):
    err = one_error_line(["validate", "--set", "data.batch_size=0"])
    assert err.startswith("error: data.batch_size: Input should be greater than or equal to 1") and "constrained" not in err
    with pytest.raises(ConfigError, match=r"^data\.normalize: normalize: every std must be > 0"):
        recipe_from_dict({"data": {"normalize": {"mean": [0.5], "std": [0.0]}}})


# -- overrides and YAML keys -------------------------------------------------------------------------
def test_empty_override_value_is_refused(one_error_line):
    err = one_error_line(["validate", "--set", "optimizer.lr="])
    assert "optimizer.lr=" in err and "give a value, or null to unset it" in err
    assert apply_overrides({"optimizer": {"lr": 0.1}}, ["optimizer.lr=null"]) == {"optimizer": {"lr": None}}


@pytest.mark.parametrize("text, where", [("data:\n  name: digits\n~: 3\n", "the key None at the top level"),
                                         ("model:\n  name: mlp\n  1: 3\n", "the key 1 under 'model'"),
                                         ("data:\n  name: digits\n  options: {1: 2}\n", "the key 1 under 'data.options'")])
def test_non_string_yaml_key_names_the_file(tmp_path, text, where, one_error_line):
    recipe = tmp_path / "keys.yaml"
    recipe.write_text(text)
    err = one_error_line(["validate", str(recipe)])
    assert f"error: {recipe}: {where} is not a string" in err and "quote the key" in err


# -- what training checks, validation checks ---------------------------------------------------------
@pytest.mark.parametrize("override, expected", [
    ("schedule.warmup_fraction=2", "schedule (warmup_cosine): warmup_fraction must be in [0, 1)"),
    ("loss.label_smoothing=1.5", "loss (cross_entropy): label_smoothing must be in [0, 1), got 1.5"),
    ("model.dropout=-0.1", "model (mlp): dropout must be in [0, 1), got -0.1"),
    ("model.hidden=[-3]", "model (mlp): hidden widths must be whole numbers >= 1, got -3"),
    ("model.hidden=[64, 0]", "model (mlp): hidden widths must be whole numbers >= 1, got 0"),
    ("model.activation=relux", "model.activation: unknown activation 'relux'; did you mean 'relu'?"),
])
def test_validate_runs_the_checks_train_runs(override, expected, one_error_line):
    err = one_error_line(["validate", "--set", override])
    assert expected in err


def test_schedule_checked_against_max_steps_when_given(one_error_line):
    err = one_error_line(["validate", "--set", "trainer.max_steps=10", "--set", "schedule.warmup_steps=20"])
    assert "schedule (warmup_cosine): warmup_steps must be in [0, total_steps)" in err
    # without max_steps the budget depends on the data: nothing training could accept is refused
    validate_recipe(load_recipe("digits_mlp", ["schedule.warmup_steps=20"]))


def test_bundled_recipes_and_good_mlps_still_validate():
    for overrides in ([], ["model.hidden=[]"], ["model.hidden=[8]", "model.norm=layernorm", "model.dropout=0.5"]):
        validate_recipe(load_recipe("digits_mlp", overrides))


def test_mlp_refuses_dead_widths_when_built():
    with pytest.raises(ValueError, match="hidden widths must be whole numbers >= 1"):
        MLP((4,), 2, hidden=[0])
    assert MLP((4,), 2, hidden=[]).forward(__import__("torch").zeros(1, 4)).shape == (1, 2)


def test_hidden_zero_refused_by_train_before_data(tmp_path, one_error_line):
    err = one_error_line(["train", "--set", "model.hidden=[0]", "--set", "trainer.max_epochs=1",
                          "--run-dir", str(tmp_path / "run")])
    assert "model (mlp): hidden widths must be whole numbers >= 1" in err


# -- loss keys without loss.name ---------------------------------------------------------------------
def test_loss_keys_are_checked_against_the_tasks_default_loss(tmp_path, one_error_line):
    """A loss key left over after switching data (label_smoothing on a regression set) went to the task's
    default loss: validate passed it and training ended in "loss (None): MSE.__init__() got an unexpected
    keyword argument". Where the recipe tells the task (a bundled set, data.task) validate checks the
    default loss; where it does not, a key that no default loss takes is refused."""
    leftover = "no loss.name is given, so the regression data trains with mse, which does not take 'label_smoothing'"
    assert leftover in one_error_line(["validate", "diabetes_regression", "--set", "loss.label_smoothing=0.1"])
    assert leftover in one_error_line(["train", "diabetes_regression", "--set", "loss.label_smoothing=0.1", "--run-dir",
                                       str(tmp_path / "r")])
    assert "(it takes: ignore_index, label_smoothing, weight); did you mean 'label_smoothing'?" in one_error_line(
        ["validate", "mnist_cnn", "--set", "loss.smoothing=0.1"])  # MNIST's task is known before it loads
    assert "loss (cross_entropy): label_smoothing must be in [0, 1)" in one_error_line(
        ["validate", "mnist_cnn", "--set", "loss.label_smoothing=1.5"])
    assert main(["validate", "mnist_cnn", "--set", "loss.label_smoothing=0.1"]) == 0
    assert "trains with mse" in one_error_line(["validate", "mnist_cnn", "--set", "data.task=regression", "--set", "loss.gamma=2"])
    csv = tmp_path / "r.yaml"
    csv.write_text("data: {name: null, format: csv, path: x.csv, target: y}\nloss: {gamma: 2}\n")
    assert "loss.gamma: no loss takes it by default" in one_error_line(["validate", str(csv)])
    csv.write_text("data: {name: null, format: csv, path: x.csv, target: y}\nloss: {label_smoothing: 0.1}\n")
    assert main(["validate", str(csv)]) == 0  # classification data would take it; the labels decide
    assert "loss.label_smoothing" in one_error_line(["validate", "--set", "loss={name: mse, label_smoothing: 0.1}"])


def test_an_optimizer_key_typo_suggests_the_sections_own_keys(one_error_line):
    err = one_error_line(["validate", "--set", "optimizer.lrr=1e-3"])
    assert "optimizer.lrr: unknown argument; did you mean 'lr'?" in err and "weight_decay" in err
