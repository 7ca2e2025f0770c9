"""A path argument given as "" or blanks (an unset shell variable: --run-dir "$RUN") is a one-line
error, never the current folder."""

import pytest

from steepest.cli import main

QUICK = ["--set", "trainer.max_steps=2", "--set", "trainer.max_epochs=null", "-q"]


@pytest.mark.parametrize("blank", ["", "  "])
@pytest.mark.parametrize("args, option", [
    (["train", "--run-dir", "{}", *QUICK], "--run-dir"),
    (["train", "--run-dir", "{}", "--resume", *QUICK], "--run-dir"),
    (["predict", "{}", "rows.csv"], "RUN_DIR"),
    (["predict", "run", "{}"], "INPUT"),
    (["predict", "run", "rows.csv", "-o", "{}"], "-o"),
    (["export", "{}"], "RUN_DIR"),
    (["export", "run", "-o", "{}"], "-o"),
    (["report", "run", "{}"], "RUN_DIR"),
    (["report", "run", "-o", "{}"], "-o"),
    (["runs", "--root", "{}"], "--root"),
    (["runs", "diff", "run", "{}"], "RUN"),
    (["data", "install", "mnist", "--from", "{}"], "--from"),
])
def test_an_empty_path_is_refused_in_one_line(tmp_path, monkeypatch, capsys, args, option, blank):
    monkeypatch.chdir(tmp_path)
    argv = [blank if a == "{}" else a for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {option} is empty"), err
    assert not any(tmp_path.iterdir())  # nothing written in the current folder


def test_train_api_refuses_an_empty_run_dir(tmp_path, monkeypatch):
    from steepest.config import load_recipe
    from steepest.errors import ConfigError
    from steepest.run import train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="run_dir is empty"):
        train(load_recipe("digits_mlp"), " ")
    assert not any(tmp_path.iterdir())
