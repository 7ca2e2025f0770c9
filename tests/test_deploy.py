"""A finished run exported as one artifact: raw inputs in, the predictor's outputs out, any batch size."""

import importlib.util

import numpy as np
import pytest
import torch

from steepest.cli import main
from steepest.deploy import example_inputs, export_run
from steepest.predict import Predictor


def expected_outputs(run_dir, x):
    predictor = Predictor.load(run_dir)
    out = predictor.outputs(x.numpy())
    return predictor.y_norm.inverse(out) if predictor.info.task == "regression" and predictor.y_norm else out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("deploy")
    made = {}
    for name, sets in (("digits_mlp", ["trainer.max_epochs=2"]), ("diabetes_regression", ["trainer.max_epochs=3"]),
                       ("mnist_cnn", ["data.subset=256", "trainer.max_epochs=1", "model.channels=[8]"])):
        args = ["train", name, "-q", "--run-dir", str(root / name)]
        for s in sets:
            args += ["--set", s]
        assert main(args) == 0
        made[name] = root / name
    return made


@pytest.mark.parametrize("name", ["digits_mlp", "diabetes_regression", "mnist_cnn"])
def test_torch_export_matches_the_predictor_at_any_batch_size(runs, name):
    path, diff = export_run(runs[name], "export")
    program = torch.export.load(str(path)).module()
    info = Predictor.load(runs[name]).info
    for n in (1, 9):
        x = example_inputs(info, n, seed=n)
        with torch.no_grad():
            got = program(x).numpy()
        assert np.allclose(got, expected_outputs(runs[name], x), rtol=1e-4, atol=1e-5)
    assert diff < 1e-4


def test_torchscript_export(runs):
    path, _ = export_run(runs["diabetes_regression"], "torchscript")
    loaded = torch.jit.load(str(path))
    x = example_inputs(Predictor.load(runs["diabetes_regression"]).info, 5)
    assert np.allclose(loaded(x).detach().numpy(), expected_outputs(runs["diabetes_regression"], x), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="onnx export extras not installed")
def test_onnx_export_runs_in_onnxruntime(runs):
    import onnxruntime

    path, diff = export_run(runs["digits_mlp"], "onnx")
    assert not path.with_name(path.name + ".data").exists()  # one self-contained file: copying model.onnx alone works
    session = onnxruntime.InferenceSession(str(path))
    x = example_inputs(Predictor.load(runs["digits_mlp"]).info, 3)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.allclose(got, expected_outputs(runs["digits_mlp"], x), rtol=1e-4, atol=1e-4) and diff < 1e-4


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and ("model.safetensors" in err or "config.yaml" in err)
