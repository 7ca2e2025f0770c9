"""`early_stopping: {target: ...}` stops at the first evaluation that reaches the target value."""

from steepest.api import train


def test_training_stops_when_validation_accuracy_reaches_the_target(tmp_path):
    summary = train("digits_mlp", ["trainer.max_epochs=40", "trainer.early_stopping={monitor: val_accuracy, target: 0.9, patience: 100}"],
                    tmp_path / "run", console=False)
    assert "reached the target 0.9" in summary["stop_reason"], summary["stop_reason"]
    assert summary["val_accuracy"] >= 0.9
    full = train("digits_mlp", ["trainer.max_epochs=40", "trainer.early_stopping=null"], tmp_path / "full", console=False)
    assert summary["steps"] < full["steps"] / 2  # 0.9 comes within a few epochs of 40
