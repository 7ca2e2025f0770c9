"""optimizer.lr_scale, documented in the README, passes validation and reaches the parameter groups
(validation refused it as an unknown argument of the optimizer class)."""

import pytest

from steepest.cli import main
from steepest.config import load_recipe
from steepest.run import build_run


def test_lr_scale_validates_and_scales_the_matching_parameters(capsys):
    assert main(["validate", "digits_mlp", "--set", "optimizer.lr_scale={'0.*': 0.1}"]) == 0
    recipe = load_recipe("digits_mlp", ["data.subset=200", "optimizer.lr_scale={'0.*': 0.1}"])
    run = build_run(recipe, None, console=False)
    names = {id(p): n for n, p in run.trainer.unwrapped_model.named_parameters()}
    lr = {names[id(p)]: g["lr"] for g in run.trainer.optimizer.param_groups for p in g["params"]}
    base = recipe.optimizer.lr
    assert lr["0.weight"] == pytest.approx(0.1 * base) and lr["0.bias"] == pytest.approx(0.1 * base)
    assert all(v == pytest.approx(base) for n, v in lr.items() if not n.startswith("0."))


@pytest.mark.parametrize("bad", ["{'0.*': -1}", "[0.1]", "{'0.*': true}"])
def test_a_bad_lr_scale_is_one_line(bad, capsys):
    assert main(["validate", "digits_mlp", "--set", f"optimizer.lr_scale={bad}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr_scale" in err
