import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _offline_data_dir():
    """Tests read MNIST / Fashion-MNIST from ../shared/data when it is there."""
    if SHARED_DATA.exists() and "STEEPEST_DATA_DIR" not in os.environ:
        os.environ["STEEPEST_DATA_DIR"] = str(SHARED_DATA)
    yield


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").exists():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA
