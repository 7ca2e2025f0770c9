"""The CPU foreach chunk size comes from the machine's L2 cache (or STEEPEST_CPU_CHUNK_NUMEL)."""

from __future__ import annotations

import pytest

from steepest.optim import base


def fake_cache(root, entries):
    """A sysfs-like cache directory: entries of (level, type, size)."""
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return str(root)


def test_l2_size_is_read_from_sysfs(tmp_path):
    root = fake_cache(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "105M")])
    assert base.l2_cache_bytes(root) == 2 << 20


def test_l2_size_in_megabytes_and_data_caches(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert base.l2_cache_bytes(fake_cache(tmp_path / "a", [(2, "Unified", "1M")])) == 1 << 20
    assert base.l2_cache_bytes(fake_cache(tmp_path / "b", [(2, "Instruction", "64K"), (2, "Data", "256K")])) == 256 << 10


def test_no_level_two_in_sysfs_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(base.os, "sysconf", lambda name: 0)
    assert base.l2_cache_bytes(fake_cache(tmp_path, [(1, "Data", "32K")])) is None
    assert base.l2_cache_bytes(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("l2, expected", [
    (512 << 10, 1 << 16),    # AMD EPYC Zen 2-4: the size that measured fastest there
    (1 << 20, 1 << 17),      # Intel Skylake-SP / Cascade Lake
    (1280 << 10, 1 << 17),   # Intel Ice Lake-SP: rounded down to a power of two
    (2 << 20, 1 << 18),      # Intel Sapphire Rapids
    (32 << 10, 1 << 13),     # tiny caches: clamped up
    (64 << 20, 1 << 20),     # huge ones: clamped down
])
def test_chunk_is_half_the_l2_in_float32_elements(l2, expected):
    n = base.cpu_chunk_numel(l2_bytes=l2, env="")
    assert n == expected
    assert n & (n - 1) == 0


def test_unknown_cache_falls_back_and_env_overrides():
    assert base.cpu_chunk_numel(l2_bytes=0, env="") == 1 << 16
    assert base.cpu_chunk_numel(l2_bytes=512 << 10, env="12345") == 12345
    assert base.cpu_chunk_numel(l2_bytes=512 << 10, env="128K") == 128 << 10


@pytest.mark.parametrize("bad", ["-5", "0", "lots", "1.5"])
def test_bad_override_is_named(bad):
    with pytest.raises(ValueError, match="STEEPEST_CPU_CHUNK_NUMEL"):
        base.cpu_chunk_numel(env=bad)


def test_bad_override_at_import_warns_and_uses_the_cache(monkeypatch):
    monkeypatch.setenv(base.CHUNK_ENV, "lots")
    with pytest.warns(RuntimeWarning, match="STEEPEST_CPU_CHUNK_NUMEL"):
        n = base._chunk_at_import()
    assert n == base.cpu_chunk_numel(env="")
