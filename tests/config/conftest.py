import pytest

from steepest.cli import main


@pytest.fixture
def one_error_line(capsys):
    """Runs the CLI on argv and returns its stderr, asserting it is one `error: ...` line with exit code 2."""

    def run(argv) -> str:
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 2, (argv, captured.out[-300:], captured.err)
        err = captured.err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    return run
