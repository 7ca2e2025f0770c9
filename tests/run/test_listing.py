"""`steepest runs`: rows worth reading, nested runs, sorting and filtering, and `runs diff`."""

import json

from steepest.cli import main

QUICK = ["--set", "trainer.max_steps=10", "--set", "trainer.max_epochs=null", "--set", "trainer.log_every_n_steps=5", "-q"]


def test_runs_table_nested_runs_status_sort_and_where(tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["train", "--run-dir", str(root / "a"), *QUICK]) == 0
    assert main(["train", "--run-dir", str(root / "compare" / "lion"), "--set", "optimizer={name: lion}", *QUICK]) == 0
    assert main(["train", "--run-dir", str(root / "killed"), *QUICK]) == 0
    (root / "killed" / "summary.json").unlink()  # as if killed after its last logged step
    capsys.readouterr()
    assert main(["runs", "--root", str(root), "--json"]) == 0
    rows = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"a", "compare/lion", "killed"}  # the nested run is found
    assert rows["compare/lion"]["optimizer"] == "lion" and rows["compare/lion"]["lr"] == 1e-4
    assert rows["a"]["status"] == "completed" and rows["killed"]["status"] == "interrupted at step 10"
    assert rows["a"]["recipe"] == "digits_mlp" and rows["a"]["data"] == "digits" and rows["a"]["model"] == "mlp"
    assert main(["runs", "--root", str(root), "--json", "--where", "optimizer = lion"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["compare/lion"]
    assert main(["runs", "--root", str(root), "--json", "--sort=-lr", "--where", "status ~ complete"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["a", "compare/lion"]
    assert main(["runs", "--root", str(root), "--where", "lr"]) == 2
    assert "KEY OP VALUE" in capsys.readouterr().err


def test_runs_diff_names_exactly_the_keys_that_differ(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--run-dir", str(a), *QUICK]) == 0
    assert main(["train", "--run-dir", str(b), *QUICK, "--set", "model.hidden=[32]", "--set", "trainer.seed=3"]) == 0
    capsys.readouterr()
    assert main(["runs", "diff", str(a), str(b), "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert {d["key"] for d in diff} == {"model.hidden", "trainer.seed"}
    assert {d["key"]: (d["a"], d["b"]) for d in diff}["trainer.seed"] == (0, 3)
    assert main(["runs", "diff", str(a), str(a)]) == 0
    assert "the same" in capsys.readouterr().out
    assert main(["runs", "diff", str(a)]) == 2
