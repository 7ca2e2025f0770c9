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
    with pytest.warns(RuntimeWarning, match="STEEPEST_CPU_CHUNK_NUMEL.*ignored"):
        n, tune = base._chunk_at_import()
    assert n == base.cpu_chunk_numel(env="") and tune  # as if unset: measured at first use
    monkeypatch.setenv(base.CHUNK_ENV, "32K")
    assert base._chunk_at_import() == (32 << 10, False)  # a valid override is used as given


def test_bad_override_warns_on_the_first_torchrun_process_only(monkeypatch):
    import warnings

    monkeypatch.setenv(base.CHUNK_ENV, "lots")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # RANK alone is a stray one: a single process, which does warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would raise
        n, tune = base._chunk_at_import()
    assert n == base.cpu_chunk_numel(env="") and tune  # still ignored on every rank


def test_tuner_tries_each_size_in_turn_and_keeps_the_fastest():
    t = base.ChunkTuner(1 << 16, from_step=2, rounds=2)
    assert t.candidates == [1 << 16, 1 << 18, 1 << 20]
    times = {1 << 16: [5.0, 1.0], 1 << 18: [2.0, 2.0], 1 << 20: [3.0, 9.0]}  # 2^16's best round is the fastest
    sizes = []
    for _ in range(2):  # untimed first steps run at the base size
        sizes.append(t.size())
        t.record(t.size(), 100.0)
    for r in range(2):
        for _ in range(3):
            size = t.size()
            sizes.append(size)
            assert t.chosen is None
            t.record(size, times[size][r])
    assert sizes == [1 << 16, 1 << 16, 1 << 16, 1 << 18, 1 << 20, 1 << 16, 1 << 18, 1 << 20]
    assert t.chosen == 1 << 16 and t.size() == 1 << 16
    t.record(t.size(), 0.0)
    assert t.chosen == 1 << 16  # decided once


def test_tuner_caps_large_sizes():
    assert base.ChunkTuner(1 << 23).candidates == [1 << 23, 1 << 24]


def test_optimizer_tunes_its_chunk_on_real_steps_without_changing_a_bit(monkeypatch):
    """A LAMB step on the CPU: the first steps are timed at three chunk sizes, one is kept, and the
    parameters equal those of a run at a fixed size, bit for bit."""
    import torch

    import steepest.optim as so

    monkeypatch.setattr(base, "CPU_CHUNK_NUMEL", 64)  # so the small problem below spans several chunks
    g = torch.Generator().manual_seed(0)
    shapes = [(40, 8), (8,), (16, 16), (300,), (3, 5, 7)]
    start = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(12)]

    def run(tune):
        monkeypatch.setattr(base, "CPU_CHUNK_TUNE", tune)
        params = [p.clone().requires_grad_(True) for p in start]
        opt = so.create("lamb", params, group_params=False, lr=1e-2, impl="foreach")
        used = []
        for gs in grads:
            for p, gr in zip(params, gs):
                p.grad = gr.clone()
            opt.step()
            used.append(opt._chunk_numel)
        return params, used, opt

    tuned, used, opt = run(True)
    fixed, used_fixed, _ = run(False)
    assert set(used_fixed) == {64}
    assert used[2:8] == [64, 256, 1024] * 2 and opt._chunk_tuner.chosen in (64, 256, 1024)
    assert set(used[8:]) == {opt._chunk_tuner.chosen}
    assert all(torch.equal(a, b) for a, b in zip(tuned, fixed))
