"""`early_stopping: {target: ...}` stops at the first evaluation that reaches the target value."""

from steepest.api import train
from steepest.track import read_series


def test_training_stops_when_validation_accuracy_reaches_the_target(tmp_path):
    summary = train("digits_mlp", ["trainer.max_epochs=40", "trainer.early_stopping={monitor: val_accuracy, target: 0.9, patience: 100}"],
                    tmp_path / "run", console=False)
    assert "reached the target 0.9" in summary["stop_reason"], summary["stop_reason"]
    assert summary["val_accuracy"] >= 0.9
    history = [v for _, v in read_series(tmp_path / "run" / "metrics.db", "val_accuracy")]
    assert history[-1] >= 0.9 and all(v < 0.9 for v in history[:-1]), history  # the first evaluation at the target
    assert summary["epochs"] == len(history) < 20  # 0.9 comes within a few of the 40 epochs (patience 100 would not stop it)
