"""Faults a new user of the command line found: a resume with nothing to resume kept the old run's metrics and
took any recipe, --overwrite took another program's checkpoints/ for a run, and the diagnostics wrote results of
other data (or into folders that are no run) with exit code 0."""

import sqlite3

import pytest

from steepest.cli import main

ONE_EPOCH = ["--set", "trainer.max_epochs=1", "-q", "--no-report"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--run-dir", str(run), *ONE_EPOCH]) == 0
    return run


def val_rows(run):
    with sqlite3.connect(run / "metrics.db") as db:
        return [step for (step,) in db.execute("SELECT step FROM metrics WHERE name = 'val_loss' ORDER BY step")]


def test_a_resume_with_no_checkpoint_starts_over_clean_and_only_with_the_runs_recipe(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *ONE_EPOCH, "--set", "checkpoint.enabled=false"]) == 0
    (run / "summary.json").unlink()  # as a run killed before its first checkpoint leaves it
    (run / "model.safetensors").unlink()
    assert val_rows(run) == [20]
    assert main(["train", "diabetes_regression", "--run-dir", str(run), "--resume", *ONE_EPOCH]) == 2
    assert "holds a run of a different recipe (its config.yaml) and no checkpoint" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run), "--resume", *ONE_EPOCH, "--set", "checkpoint.enabled=false"]) == 0
    assert "nothing to resume" in capsys.readouterr().err
    assert val_rows(run) == [20]  # the earlier attempt's rows are gone, not doubled


def test_overwrite_names_what_it_deletes_in_a_folder_steepest_did_not_make(tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "epoch10.pt").write_text("w")
    (folder / "notes.txt").write_text("n")
    assert main(["train", "--run-dir", str(folder), *ONE_EPOCH]) == 2
    err = capsys.readouterr().err
    assert "is not empty and not a steepest run" in err and "(deleting its checkpoints)" in err
    assert (folder / "checkpoints" / "epoch10.pt").exists()


def test_diagnostics_refuse_folders_that_are_no_run_and_recipes_of_other_data(digits_run, tmp_path, capsys):
    assert main(["baseline", "--run-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist; give the folder of a finished steepest train run" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
    assert main(["baseline", "diabetes_regression", "--run-dir", str(digits_run)]) == 2
    assert "reads other data than the run" in capsys.readouterr().err
    assert not (digits_run / "baselines.json").exists()
    assert main(["doctor", "diabetes_regression", "--run-dir", str(digits_run), "--checks", "forward_shape"]) == 2
    assert main(["sharpness", "--set", "model.hidden=[32]", "--run-dir", str(digits_run), "--iterations", "2", "--probes", "1"]) == 2
    assert "does not fit the model of the recipe given" in capsys.readouterr().err


def test_search_refuses_another_programs_database_and_a_study_of_another_recipe(digits_run, tmp_path, capsys):
    before = (digits_run / "metrics.db").read_bytes()
    assert main(["search", "digits_search", "--trials", "1", "--storage", f"sqlite:///{digits_run / 'metrics.db'}",
                 "--out", str(tmp_path / "s0")]) == 2
    assert "is a SQLite database of something else (tables metrics)" in capsys.readouterr().err
    assert (digits_run / "metrics.db").read_bytes() == before
    out = str(tmp_path / "s1")
    assert main(["search", "digits_search", "--trials", "1", "--set", "trainer.max_epochs=1", "--out", out]) == 0
    assert main(["search", "digits_search", "--trials", "1", "--set", "trainer.max_epochs=2", "--out", out]) == 2
    assert "holds trials of another recipe (differs in trainer.max_epochs)" in capsys.readouterr().err


def test_runs_where_orders_text_and_refuses_text_against_numbers(digits_run, capsys):
    root = str(digits_run.parent)
    assert main(["runs", "--root", root, "--where", "lr > abc"]) == 2
    assert "lr is a number; compare it with a number, not 'abc'" in capsys.readouterr().err
    assert main(["runs", "--root", root, "--where", "date > 2000-01-01", "--json"]) == 0
    assert '"run"' in capsys.readouterr().out  # an ISO date compares as text, in order
    assert main(["runs", "--root", root, "--where", "date > 9999"]) == 0
    assert "no runs found" in capsys.readouterr().out


def test_compare_says_what_it_does_not_use_and_refuses_an_earlier_out(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    assert main(["compare", "--optimizers", "adam", "--set", "optimizer.lr=0.05", "--set", "trainer.max_epochs=1", "--out", out]) == 0
    assert "the recipe's optimizer settings (lr 0.05" in capsys.readouterr().err
    assert main(["compare", "--optimizers", "adam", "--set", "trainer.max_epochs=1", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "already holds a run (an earlier compare?); give another --out" in err and "--resume" not in err


def test_procedure_metric_checked_before_any_stage(tmp_path, capsys):
    out = tmp_path / "proc"
    assert main(["search", "digits_mlp", "--procedure", "new", "--metric", "val_foo", "--out", str(out)]) == 2
    assert "classification runs report val_loss, val_accuracy, val_macro_f1" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
