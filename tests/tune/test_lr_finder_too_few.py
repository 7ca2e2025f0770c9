"""The range test with fewer than two finite losses: a one-line ConfigError whose advice fits the
cause (a test too short: more steps; a loss not finite from the start: a lower start lr), never a
ValueError traceback."""

import math

import pytest

from steepest.cli import main
from steepest.config import load_recipe
from steepest.errors import ConfigError
from steepest.run import build_run
from steepest.tune.lr_finder import SUGGESTIONS, grid_search, range_test


@pytest.mark.parametrize("rule", sorted(SUGGESTIONS))
def test_one_loss_asks_for_more_steps(rule):
    with pytest.raises(ConfigError, match="give more steps") as error:
        SUGGESTIONS[rule]([1e-7], [2.3])
    assert "lower the start lr" not in str(error.value)


@pytest.mark.parametrize("rule", sorted(SUGGESTIONS))
def test_a_loss_not_finite_from_the_start_asks_for_a_lower_start_lr(rule):
    with pytest.raises(ConfigError, match=r"not finite from step 2 .*lower the start lr \(--start, now 0\.001\)"):
        SUGGESTIONS[rule]([1e-3, 1e-2], [2.3, math.inf])


def small_trainer():
    return build_run(load_recipe("digits_mlp", ["data.subset=200"]), None, console=False).trainer


def test_range_test_and_grid_refuse_too_few_steps():
    trainer = small_trainer()
    for steps in (0, 1, -3):
        with pytest.raises(ConfigError, match="--steps: the range test needs at least 2 steps"):
            range_test(trainer, num_steps=steps)
    with pytest.raises(ConfigError, match="--grid-steps"):
        grid_search(trainer, lrs=[1e-3], steps_per_lr=0)
    assert len(range_test(trainer, num_steps=2).lrs) == 2  # the least that gives a suggestion


def test_find_lr_whose_loss_is_not_finite_is_one_line(tmp_path, capsys):
    code = main(["find-lr", "--set", "data.subset=200", "--start", "1e30", "--end", "1e31", "--steps", "10",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "lower the start lr" in err and err.count("\n") == 1
