"""`steepest events | head -1`: a reader that stops reading is no user error. The command exits
quietly with 141 (128 + SIGPIPE, as a shell's tools do) and prints nothing on stderr; it said
"error: Broken pipe; free space, fix the permissions or choose another folder" with exit 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_into_closed_pipe(*args):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes its first byte
    try:
        done = subprocess.run([sys.executable, "-m", "steepest", *args], cwd=REPO, stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)
    return done


@pytest.mark.parametrize("args", [["events"], ["recipes"]])
def test_a_closed_stdout_ends_the_command_quietly(args):
    done = run_into_closed_pipe(*args)
    assert done.returncode == 141 and done.stderr == ""


def test_a_broken_pipe_elsewhere_is_still_reported(monkeypatch, capsys):
    from steepest import cli

    def worker_died(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli.COMMANDS.get("events"), "_target", worker_died)
    monkeypatch.setattr(cli, "_stdout_closed", lambda: False)
    assert cli.main(["events"]) == 2
    err = capsys.readouterr().err
    assert "broken pipe" in err and "free space" not in err and err.count("\n") == 1
