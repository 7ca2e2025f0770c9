import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


if os.environ.get("PYTEST_XDIST_WORKER"):  # tests run in 2 worker processes on 2 cores: one thread each, here and
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # in the processes they start (torch's pool beside another is slower)
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _no_report_after_every_train():
    """`steepest train` writes report.html at the end (a few seconds of plotting); the tests that
    look at reports ask for them (tests/report), the rest of the suite skips them."""
    os.environ.setdefault("STEEPEST_NO_REPORT", "1")
    yield


@pytest.fixture(autouse=True, scope="session")
def _offline_data_dir():
    """Tests read MNIST / Fashion-MNIST from ../shared/data when it is there."""
    if SHARED_DATA.exists() and "STEEPEST_DATA_DIR" not in os.environ:
        os.environ["STEEPEST_DATA_DIR"] = str(SHARED_DATA)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a whole module, as each xdist worker already has (above); a module
    of small models opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")` so that a
    plain `-n0` run of it is as fast as the suite's: its trials' small ops lose more to thread hand-offs
    than they gain, badly so on a busy machine. Module-scoped, so the module's own module-scoped
    fixtures (a shared training run) are set up under it too. Not autouse: a `-n0` run of the rest of
    the suite keeps torch's default pool."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").exists():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA


class _Crash(Exception):
    pass


def crash_and_resume(overrides: list[str], crash_at_step: int, tmp_path: Path):
    """Train a recipe straight through, and again with a crash at `crash_at_step` followed by
    --resume; returns both runs' final weights (dicts of tensors)."""
    from safetensors.torch import load_file

    from steepest.cli import main
    from steepest.config import load_recipe
    from steepest.run import train
    from steepest.training.events import Callback

    class Crash(Callback):
        name = "crash"

        def on_step_end(self, trainer, output):
            if trainer.state.step == crash_at_step:
                raise _Crash()

    sets = [*overrides, "checkpoint.every_n_steps=1"]
    args = [x for s in sets for x in ("--set", s)]
    assert main(["train", "--run-dir", str(tmp_path / "straight"), "-q", *args]) == 0
    with pytest.raises(_Crash):
        train(load_recipe("digits_mlp", sets), tmp_path / "crashed", console=False, extra_callbacks=[Crash()])
    assert main(["train", "--run-dir", str(tmp_path / "crashed"), "--resume", "-q", *args]) == 0
    return load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "crashed" / "model.safetensors")


@pytest.fixture
def crash_resume(tmp_path):
    """crash_resume(overrides, step) -> (straight weights, crashed-and-resumed weights)."""
    return lambda overrides, step: crash_and_resume(overrides, step, tmp_path)
