"""`export -o` and `report -o` never replace a run's own files, refuse a folder, make a missing
folder (as `predict -o` does), and turn a failed write into one line with nothing left behind."""

import hashlib
import os
import shutil

import pytest
import torch

from steepest.cli import main
from steepest.deploy import export_run
from steepest.errors import SteepestError
from steepest.report import write_report

OWN_FILES = ["model.safetensors", "config.yaml", "summary.json", "metrics.db", "data_info.json", "checkpoints/best.safetensors",
             "metrics.db-wal"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("outputs") / "ref"
    assert main(["train", "digits_mlp", "-q", "--set", "trainer.max_epochs=1", "--run-dir", str(run)]) == 0
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def digests(run):
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", OWN_FILES)
@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_export_refuses_the_runs_own_files(run, name, fmt):
    before = digests(run)
    with pytest.raises(SteepestError, match=f"would overwrite {name} of the run"):
        export_run(run, fmt, run / name)
    assert digests(run) == before


def test_export_refuses_a_run_file_through_a_relative_path_and_a_symlink(run, tmp_path, monkeypatch):
    before = digests(run)
    monkeypatch.chdir(run.parent)
    with pytest.raises(SteepestError, match="would overwrite model.safetensors"):
        export_run("run", "export", "run/../run/model.safetensors")
    (tmp_path / "link.pt2").symlink_to(run / "config.yaml")
    with pytest.raises(SteepestError, match="would overwrite config.yaml"):
        export_run(run, "export", tmp_path / "link.pt2")
    assert digests(run) == before


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_export_makes_a_missing_folder_and_refuses_a_folder_or_a_file_as_folder(run, tmp_path, capsys, fmt):
    path, _ = export_run(run, fmt, tmp_path / "new" / "deeper" / "model.bin")
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    assert main(["export", str(run), "--format", fmt, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1
    (tmp_path / "afile").write_text("x")
    assert main(["export", str(run), "--format", fmt, "-o", str(tmp_path / "afile" / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert "afile is a file, not a folder" in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_a_failed_export_write_is_one_line_and_keeps_the_old_file(run, tmp_path, capsys, monkeypatch, fmt):
    out = tmp_path / "model.out"
    out.write_bytes(b"old")

    def full_disk(fd):  # the temp file is written, then the disk fills before it reaches it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("steepest.training.checkpoint.os.fsync", full_disk)
    assert main(["export", str(run), "--format", fmt, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "No space left on device" in err and err.count("\n") == 1
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.out", "run"]


def test_export_into_a_read_only_folder_is_one_line(run, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr("steepest.deploy.os.access", lambda p, mode: False if str(p) == str(folder) else real_access(p, mode))
    assert main(["export", str(run), "-o", str(folder / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and err.count("\n") == 1 and not any(folder.iterdir())


def test_export_writes_a_loadable_program_in_place_of_an_old_file(run, tmp_path):
    out = tmp_path / "m.pt2"
    out.write_bytes(b"stale")
    path, diff = export_run(run, "export", out)
    assert path == out and diff < 1e-4
    torch.export.load(str(out))  # a whole program, not the stale bytes


@pytest.mark.parametrize("name", ["config.yaml", "model.safetensors", "checkpoints/best.safetensors", "metrics.db"])
def test_report_refuses_the_runs_own_files(run, capsys, name):
    before = digests(run)
    with pytest.raises(SteepestError, match=f"would overwrite {name} of the run"):
        write_report([run], run / name)
    assert main(["report", str(run), "-o", str(run / name)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert digests(run) == before


def test_report_may_rewrite_a_runs_report_and_refuses_a_folder(run, tmp_path):
    assert write_report([run], run / "report.html") == run / "report.html"
    with pytest.raises(SteepestError, match="is a folder"):
        write_report([run], tmp_path)
    assert write_report([run], tmp_path / "new" / "r.html").is_file()  # a missing folder is made, as before


@pytest.mark.parametrize("command", ["sharpness", "batch-size", "doctor", "baseline"])
@pytest.mark.parametrize("name", ["model.safetensors", "config.yaml", "checkpoints/best.safetensors"])
def test_diagnostics_json_never_replaces_the_runs_own_files(run, capsys, command, name):
    before = digests(run)
    assert main([command, "--run-dir", str(run), "--json", str(run / name)]) == 2
    err = capsys.readouterr().err
    assert f"--json {run / name} would overwrite {name} of the run" in err and err.count("\n") == 1
    assert digests(run) == before


def test_diagnostics_json_refuses_a_folder(run, tmp_path, capsys):
    assert main(["sharpness", "--run-dir", str(run), "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1
