import random
import warnings

import numpy as np
import pytest
import torch

from steepest.errors import CheckpointError
from steepest.training.checkpoint import CheckpointManager, load_state, save_state


def sample_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "plain": {"a": [1, 2.5, None, "x"], "t": (1, 2)}}


def test_roundtrip_restores_every_kind_of_value(tmp_path):
    state = sample_state()
    save_state(tmp_path / "c.safetensors", state)
    back = load_state(tmp_path / "c.safetensors")
    assert back["plain"] == state["plain"]
    assert torch.equal(back["model"]["weight"], state["model"]["weight"])
    assert back["optimizer"]["state"].keys() == state["optimizer"]["state"].keys()
    assert back["rng"]["python"] == state["rng"]["python"]
    assert np.array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])


def test_no_pickle_in_the_file(tmp_path):
    save_state(tmp_path / "c.safetensors", sample_state())
    data = (tmp_path / "c.safetensors").read_bytes()
    assert b"\x80\x04" not in data[:16] and data[8:9] == b"{"  # a safetensors JSON header, not a pickle


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_corruption_is_detected(tmp_path, damage):
    path = tmp_path / "c.safetensors"
    save_state(path, sample_state())
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-3] ^= 0xFF
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_state(path)


def test_manager_keeps_last_k_and_falls_back_past_corrupt(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        manager.save(step, {"step": step, "w": torch.full((3,), float(step))})
    assert [s for s, _ in manager.step_files()] == [20, 30]
    newest = manager.step_files()[-1][1]
    newest.write_bytes(newest.read_bytes()[:-7])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, path = manager.load_latest()
    assert state["step"] == 20 and path.name == "step-00000020.safetensors"
    assert any("falling back" in str(w.message) for w in caught)
