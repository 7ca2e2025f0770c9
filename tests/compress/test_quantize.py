"""Post-training int8 quantization of the ONNX export (onnxruntime's quantizer): smaller on disk,
the test accuracy within MAX_DROP (0.01) of fp32, and predictions that agree with the run's
predictor on at least AGREEMENT_MIN (0.98) of the test rows. int8 does not match fp32 to 1e-4, so
the artifact is checked by its predictions, not its logits.

Measured on digits_mlp (15 epochs, 270 test rows; 2 shared CPU threads): dynamic 3.0x smaller,
agreement 0.996-1.0, accuracy drop <= 0.004; static 2.6x smaller, agreement 1.0."""

import contextlib
import importlib.util
import io
import json

import numpy as np
import pytest

from steepest.cli import main
from steepest.compress import quantize
from steepest.compress.quantize import quantize_onnx, quantize_run, run_splits
from steepest.config.load import load_run_recipe
from steepest.errors import ConfigError, SteepestError
from steepest.predict import Predictor

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
                                reason="the deploy extra (onnx, onnxscript, onnxruntime) is not installed")]




@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A digits_mlp run exported with `steepest export --quantize dynamic`: (run, printed output)."""
    run = tmp_path_factory.mktemp("quantize") / "digits"
    assert main(["train", "digits_mlp", "-q", "--run-dir", str(run), "--set", "trainer.max_epochs=15"]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", str(run), "--quantize", "dynamic"]) == 0
    return run, out.getvalue()


def independent_agreement(run, path):
    """Run the int8 file in onnxruntime on the test split and compare with the predictor's labels."""
    import onnxruntime

    predictor = Predictor.load(run)
    _, x_test, y_test = run_splits(load_run_recipe(run / "config.yaml"), predictor)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x_test.astype(np.float32)})[0].argmax(axis=1)
    expected = predictor.predict(x_test)
    return float((got == expected).mean()), float((expected == y_test).mean()) - float((got == y_test).mean())


def test_dynamic_int8_export_is_smaller_and_agrees_with_the_predictor(digits):
    run, printed = digits
    path = run / "model.int8-dynamic.onnx"
    report = json.loads(path.with_suffix(".json").read_text())
    assert (run / "model.onnx").exists() and path.exists()
    assert report["size_ratio"] > 2  # int8 Linear weights: ~4x less, minus the graph
    assert report["agreement"] >= 0.98 and report["drop"] <= 0.01
    assert report["fp32_ms"] > 0 and report["int8_ms"] > 0 and report["test_rows"] == 270
    agree, drop = independent_agreement(run, path)
    assert agree >= 0.98 and drop <= 0.01
    assert agree == pytest.approx(report["agreement"])
    assert "smaller" in printed and "latency" in printed and "agree" in printed

    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops


def test_static_int8_calibrated_on_training_batches(digits):
    run, _ = digits
    report = quantize_run(run, run / "model.onnx", "static", run / "static.onnx")
    assert report.fp32_bytes / report.int8_bytes > 2
    assert report.agreement >= 0.98 and report.drop <= 0.01
    agree, drop = independent_agreement(run, run / "static.onnx")
    assert agree >= 0.98 and drop <= 0.01

    import onnx

    ops = {n.op_type for n in onnx.load(str(run / "static.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_a_failed_check_is_an_error_naming_the_figures(digits, monkeypatch):
    run, _ = digits
    monkeypatch.setattr(quantize, "AGREEMENT_MIN", 1.01)
    with pytest.raises(SteepestError, match="agreement with fp32"):
        quantize_run(run, run / "model.onnx", "dynamic", run / "strict.onnx", repeats=3)


def test_quantize_usage_errors(digits, tmp_path, capsys):
    run, _ = digits
    with pytest.raises(ConfigError):
        quantize_onnx(run / "model.onnx", tmp_path / "x.onnx", "int4")
    with pytest.raises(ConfigError):
        quantize_onnx(run / "model.onnx", tmp_path / "x.onnx", "static", calibration=None)
    assert main(["export", str(run), "--format", "torchscript", "--quantize", "dynamic"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "--format onnx" in err


def test_regression_run_quantizes_within_the_r2_drop(tmp_path):
    run = tmp_path / "diabetes"
    assert main(["train", "diabetes_regression", "-q", "--run-dir", str(run), "--set", "trainer.max_epochs=5"]) == 0
    from steepest.deploy import export_run

    fp32, _ = export_run(run, "onnx")
    report = quantize_run(run, fp32, "dynamic", repeats=5)
    assert report.metric == "r2" and report.drop <= 0.01 and report.agreement >= 0.98
