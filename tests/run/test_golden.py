"""The first 20 logged train losses of bundled recipes equal values recorded before the build
seam was reworked (within 1e-4 relative: float rounding differs between the CPUs CI may run on)."""

import json

import pytest

from tests.run.golden import CASES, GOLDEN_FILE, train_losses


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_logged_train_losses_equal_the_golden_values(case, tmp_path):
    golden = json.loads(GOLDEN_FILE.read_text())[case]
    got = train_losses(case, tmp_path / case)
    assert len(got) == len(golden) == 20
    assert got == pytest.approx(golden, rel=1e-4), case
