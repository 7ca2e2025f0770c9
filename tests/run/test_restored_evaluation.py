"""Restored best weights are evaluated again for summary.json, but that evaluation is not logged a
second time at the stopping step (it was logged at the step the weights come from)."""

import json

from steepest.cli import main
from steepest.track import read_series


def test_the_restored_weights_are_summarized_without_a_second_val_row(tmp_path):
    run = tmp_path / "r"
    code = main(["train", "--run-dir", str(run), "-q", "--set", "data.subset=300", "--set", "trainer.max_epochs=60",
                 "--set", "trainer.early_stopping={monitor: val_loss, patience: 2, min_delta: 0.5}"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert "restored the weights of step" in summary["stop_reason"]
    best_step = int(summary["stop_reason"].rsplit("step ", 1)[1])
    rows = read_series(run / "metrics.db", "val_loss")
    steps = [s for s, _ in rows]
    assert len(steps) == len(set(steps)), steps  # one val_loss per evaluated step
    assert steps[-1] == summary["steps"] and best_step < summary["steps"]
    logged_at_best = dict(rows)[best_step]
    assert abs(summary["val_loss"] - logged_at_best) <= 1e-6 * max(1.0, abs(logged_at_best))  # the restored weights' loss
