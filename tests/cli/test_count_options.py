"""Counts and learning rates on the command line: zero, negative, non-integer or non-finite values are
usage errors (exit 2, the option named), before any recipe is read or anything trained."""

import pytest

from steepest.cli import main
from steepest.config.arguments import positive_number, whole_number

BAD = [
    (["batch-size", "--iterations", "0"], "--iterations"),  # was a ZeroDivisionError
    (["batch-size", "--iterations", "-3"], "--iterations"),  # was "B_simple = inf ... perfect scaling", exit 0
    (["batch-size", "--warmup-steps", "-5"], "--warmup-steps"),
    (["batch-size", "--small", "0"], "--small"),
    (["batch-size", "--big", "1.5"], "--big"),
    (["sharpness", "--probes", "0"], "--probes"),  # was a ZeroDivisionError
    (["sharpness", "--iterations", "0"], "--iterations"),  # was "top Hessian eigenvalue 0"
    (["sharpness", "--samples-batch", "-1"], "--samples-batch"),
    (["find-lr", "--steps", "0"], "--steps"),  # was a ValueError traceback
    (["find-lr", "--steps", "5"], "--steps"),
    (["find-lr", "--grid-steps", "0"], "--grid-steps"),
    (["find-lr", "--start", "0"], "--start"),
    (["find-lr", "--end", "inf"], "--end"),
    (["find-lr", "--start", "nan"], "--start"),
    (["search", "digits_search", "--trials", "0"], "--trials"),  # was the recipe's 12 trials
    (["search", "digits_search", "--trials", "-2"], "--trials"),
    (["search", "digits_search", "--trials", "two"], "--trials"),
]


@pytest.mark.parametrize("args, option", BAD)
def test_bad_counts_are_usage_errors(args, option, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: give a" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_zero_warmup_steps_is_allowed():
    assert whole_number(0)("0") == 0 and whole_number(1)("7") == 7
    assert positive_number("1e-3") == 1e-3


@pytest.mark.parametrize("args, message", [
    (["find-lr", "--start", "1", "--end", "0.1"], "--start (1) must be below --end (0.1)"),
    (["compare", "--lr", "adam=-1"], "finite LR > 0"),
    (["compare", "--lr", "adam=nan"], "finite LR > 0"),
    (["compare", "--optimizers", "sgd", "--lr", "adam=1e-3"], "'adam' is not among --optimizers"),
])
def test_bad_rates_are_one_line(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
