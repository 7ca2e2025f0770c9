"""`steepest doctor --run-dir RUN` writes its verdicts into the run's record: metrics.db and, for a run
that logs to TensorBoard, an event file that TensorBoard's reader sees."""

import pytest

from steepest.cli import main
from steepest.track import read_series


def test_doctor_verdicts_go_to_the_runs_metrics_and_tensorboard(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["train", "digits_mlp", "-q", "--run-dir", str(run), "--set", "trainer.max_epochs=2",
                 "--set", "trainer.loggers=[tensorboard]"]) == 0
    code = main(["doctor", "--run-dir", str(run), "--checks", "forward_shape,initial_loss,nonfinite"])
    out = capsys.readouterr().out
    assert code == 0 and "verdicts logged" in out
    for check in ("forward_shape", "initial_loss", "nonfinite"):
        series = read_series(run / "metrics.db", f"doctor/{check}")
        assert len(series) == 1 and series[0][1] == 0.0, (check, series)  # ok on the healthy recipe
    last_step = max(s for s, _ in read_series(run / "metrics.db", "train_loss"))
    assert read_series(run / "metrics.db", "doctor/forward_shape")[0][0] >= last_step
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert "doctor/initial_loss" in events.Tags()["scalars"]
    assert "doctor/text_summary" in events.Tags()["tensors"]


def test_doctor_verdicts_go_to_the_runs_mlflow_run(tmp_path, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    assert main(["train", "digits_mlp", "-q", "--run-dir", str(run), "--set", "trainer.max_epochs=1",
                 "--set", "trainer.loggers=[mlflow]"]) == 0
    assert main(["doctor", "--run-dir", str(run), "--checks", "forward_shape,nonfinite"]) == 0
    assert "mlflow.db" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=f"sqlite:///{(run / 'mlflow.db').resolve()}")
    (found,) = client.search_runs([client.get_experiment_by_name("steepest").experiment_id])
    assert found.data.metrics["doctor/forward_shape"] == 0.0 and found.data.metrics["doctor/nonfinite"] == 0.0
    assert "forward_shape" in found.data.tags["doctor"]
