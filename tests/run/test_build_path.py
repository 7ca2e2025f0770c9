"""`steepest train` to the first optimizer step, traced: build_run visits each file once, in a
pipeline, and every call between steepest files goes down the layers of ARCHITECTURE.md, except
the designed ways up: events (a Callback's on_* methods), registry targets built by name, and the
hooks the Trainer gives its Engine."""

import sys
from pathlib import Path

import pytest

from steepest.cli import main
from steepest.training.events import Callback
from tests.test_layers import layers, module_name, package_of

PACKAGE = Path(__file__).resolve().parents[2] / "steepest"


class _FirstStep(Exception):
    pass


class StopAtFirstStep(Callback):
    name = "stop_at_first_step"

    def on_before_optimizer_step(self, trainer):
        raise _FirstStep()


def trace_train(tmp_path, monkeypatch):
    """(caller file, caller function, callee file, callee function) for every call between
    steepest files from `steepest train` up to the first optimizer step."""
    import steepest.run.pipeline as pipeline

    original = pipeline.build_run
    monkeypatch.setattr(pipeline, "build_run", lambda *a, **k: original(*a, **{**k, "extra_callbacks": [StopAtFirstStep()]}))
    calls = []

    def profile(frame, event, arg):
        if event != "call":
            return
        callee, caller = frame.f_code, frame.f_back.f_code if frame.f_back else None
        if caller is None:
            return
        a, b = Path(caller.co_filename), Path(callee.co_filename)
        if a.is_relative_to(PACKAGE) and b.is_relative_to(PACKAGE) and a != b:
            calls.append((a, caller.co_name, b, callee.co_name))

    sys.setprofile(profile)
    try:
        with pytest.raises(_FirstStep):
            main(["train", "digits_mlp", "--run-dir", str(tmp_path / "run"), "-q", "--set", "trainer.max_steps=3"])
    finally:
        sys.setprofile(None)
    return calls


def test_build_run_visits_each_file_once_and_calls_go_down(tmp_path, monkeypatch):
    calls = trace_train(tmp_path, monkeypatch)
    assert calls
    build_file = PACKAGE / "run" / "build.py"
    visited = [b for a, fn, b, _ in calls if a == build_file and fn == "build_run"]
    order = [f for i, f in enumerate(visited) if i == 0 or visited[i - 1] != f]
    assert len(order) == len(set(order)), f"build_run comes back to a file: {[str(f.relative_to(PACKAGE)) for f in order]}"
    layer = layers()
    upward = set()
    for a, fn, b, callee in calls:
        pa, pb = package_of(module_name(a)), package_of(module_name(b))
        if pa == pb or layer[pb] < layer[pa]:
            continue
        if callee.startswith("on_") or callee == "<lambda>" or callee == "__init__":  # events, hooks, registry targets
            continue
        upward.add(f"{a.relative_to(PACKAGE)}:{fn} -> {b.relative_to(PACKAGE)}:{callee}")
    assert not upward, "calls that go up a layer:\n" + "\n".join(sorted(upward))
