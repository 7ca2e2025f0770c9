import pytest

from steepest.cli import main
from steepest.config import apply_overrides, bundled_recipes, load_recipe, recipe_from_dict
from steepest.config.validate import validate_recipe
from steepest.errors import ConfigError


def test_every_bundled_recipe_validates():
    names = bundled_recipes()
    assert "digits_mlp" in names
    for name in names:
        validate_recipe(load_recipe(name))


def test_overrides_parse_yaml_scalars_and_lists():
    data = apply_overrides({"optimizer": {"lr": 0.1}}, ["optimizer.lr=1e-3", "model.hidden=[8, 4]", "trainer.max_steps=7"])
    assert data["optimizer"]["lr"] == pytest.approx(1e-3)
    assert data["model"]["hidden"] == [8, 4]
    recipe = recipe_from_dict(data)
    assert recipe.trainer.max_steps == 7


def test_default_recipe_keys_the_checks_rely_on():
    r = load_recipe(None)
    for value in (r.trainer.max_epochs, r.trainer.seed, r.optimizer.name, r.optimizer.lr, r.data.name):
        assert value is not None
    assert hasattr(r.trainer, "max_steps") and hasattr(r.checkpoint, "every_n_steps")


BAD = [
    (["--set", "optimizer.lr=0"], "optimizer.lr"),
    (["--set", "optimizer.lr=-1e-3"], "optimizer.lr"),
    (["--set", "trainer.max_epochs=0"], "trainer.max_epochs"),
    (["--set", "trainer.max_epochs=abc"], "trainer.max_epochs"),
    (["--set", "optimizer.name=adamww"], "did you mean 'adamw'"),
    (["--set", "optimizer.momentun=0.9", "--set", "optimizer.name=momentum"], "did you mean 'momentum'"),
    (["--set", "model.name=mlpp"], "did you mean 'mlp'"),
    (["--set", "model.hiden=[3]"], "did you mean 'hidden'"),
    (["--set", "trainer.max_epoch=3"], "did you mean 'max_epochs'"),
    (["--set", "schedule.name=cosin"], "did you mean 'cosine'"),
    (["--set", "loss.name=cross_entropyy"], "did you mean 'cross_entropy'"),
    (["--set", "data.name=digit"], "did you mean 'digits'"),
    (["--set", "trainer.precision=fp8"], "trainer.precision"),
    (["--set", "data.split=[0.5, 0.2, 0.2]"], "add up to 1"),
    (["--set", "optimizer.momentum=-1", "--set", "optimizer.name=momentum"], "momentum"),
    (["--set", "trainer.early_stopping.patience=0"], "trainer.early_stopping.patience"),
    (["--set", "checkpoint.every_n_steps=0"], "checkpoint.every_n_steps"),
    (["--set", "lr=3"], "unknown key"),
    (["--set", "optimizer.lr"], "KEY=VALUE"),
    (["no_such_recipe"], "bundled"),
]


@pytest.mark.parametrize("argv,expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_malformed_recipe_exits_2_with_one_line(argv, expected, capsys):
    code = main(["validate", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err


def test_unsafe_yaml_tag_refused(tmp_path, capsys):
    bad = tmp_path / "evil.yaml"
    bad.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "refused YAML" in err and err.count("\n") == 1


def test_yaml_syntax_error_reports_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("optimizer:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match="line"):
        load_recipe(str(bad))


def test_unknown_key_lists_valid_choices():
    with pytest.raises(ConfigError) as info:
        recipe_from_dict({"checkpoint": {"every_n_step": 5}})
    message = str(info.value)
    assert message.startswith("checkpoint.every_n_step: unknown key; did you mean 'every_n_steps'?")
    assert "keep_last" in message


@pytest.mark.parametrize(("name", "lr", "weight_decay"), [("lion", 1e-4, 0.0), ("adamw", 1e-3, 0.01), ("lamb", 1e-3, 0.01),
                                                           ("lars", 1.0, 0.0), ("momentum", 0.1, 0.0), ("adam", 1e-3, 0.0)])
def test_an_optimizer_named_without_values_gets_its_own_defaults(name, lr, weight_decay):
    """`optimizer: {name: lion}` trained at lr 1e-3 and decay 0 (the recipe's generic defaults);
    each optimizer's own documented defaults apply unless the recipe sets a value."""
    recipe = load_recipe("digits_mlp", [f"optimizer={{name: {name}}}"])
    assert (recipe.optimizer.lr, recipe.optimizer.weight_decay) == (lr, weight_decay)
    given = load_recipe("digits_mlp", [f"optimizer={{name: {name}, lr: 0.5, weight_decay: 0.2}}"])
    assert (given.optimizer.lr, given.optimizer.weight_decay) == (0.5, 0.2)


def test_scale_lr_under_torchrun_scales_with_the_world_size():
    from steepest.config.build import optimizer_kwargs

    for rule, factor in (("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)):
        recipe = load_recipe("digits_mlp", [f"optimizer.scale_lr={rule}"])
        assert optimizer_kwargs(recipe, world_size=4)["lr"] == pytest.approx(recipe.optimizer.lr * factor)
        assert optimizer_kwargs(recipe, world_size=1)["lr"] == recipe.optimizer.lr
