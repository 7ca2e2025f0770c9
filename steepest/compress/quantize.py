"""Post-training int8 quantization of an exported run, with ONNX Runtime's quantizer, measured
against the fp32 model: size on disk, CPU latency, and the test-split metric and agreement.

Integer quantization (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference") stores a tensor as int8 q with a scale s and zero
point z, r = s (q - z). Two modes:

- `dynamic`: the weights of MatMul/Gemm (Linear), LSTM, attention and embedding (Gather) nodes are
  int8 ahead of time (per tensor); each activation gets its scale from its own min/max at run time
  (DynamicQuantizeLinear -> MatMulInteger). No data needed; best for Linear and LSTM models (Conv
  stays fp32: use static for CNNs).
- `static`: weights (per output channel) and activations are int8 in QDQ form (QuantizeLinear /
  DequantizeLinear pairs ONNX Runtime fuses into integer kernels); activation ranges come from
  calibration (min/max) on training batches. Conv layers quantize too.

Both store the weights in 7 of the 8 bits (`reduce_range`): on x86 CPUs without VNNI the int8
kernels' 16-bit intermediate sums saturate otherwise. Measured on an AVX2 machine: static on an
undertrained mnist_cnn, argmax agreement 0.90 with 8 bits vs 0.96 with 7 (0.97 simulated in
float); dynamic on diabetes_regression, R^2 against fp32 0.9966 vs 0.9999.

Why ONNX Runtime and not torch: `torch.ao.quantization` (eager `quantize_dynamic`, FX
`prepare_fx`/`convert_fx`) warns on import in torch 2.13 that it is deprecated (slated for removal
"in 2.10", still present) and the quantized tensor constructors behind it are deprecated too; its
PT2E flow (`prepare_pt2e`/`convert_pt2e`) moved to the separate torchao package. ONNX Runtime's
`quantize_dynamic` / `quantize_static` are maintained, run on the ONNX file `steepest export
--format onnx` already writes (torch 2.11 and 2.13 alike), and give one self-contained artifact
(the normalization folded in) that runs wherever onnxruntime does.

    steepest export runs/exp1 --quantize dynamic   # runs/exp1/model.onnx (fp32) and model.int8-dynamic.onnx

Checks (on the test split, raw inputs): the int8 predictions agree with the run's predictor (fp32
torch) on at least AGREEMENT_MIN of the rows (classification, binary, multilabel: the predicted
labels; regression: the int8 outputs explain fp32's with R^2 >= AGREEMENT_MIN), and the test metric
(accuracy, or R^2 for regression) drops by at most MAX_DROP. Failing either is a SteepestError; the file stays
written for inspection.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from steepest.config.arguments import RUN_CONFIG
from steepest.config.load import load_run_recipe
from steepest.data import load_data
from steepest.data.bundle import in_memory_sample
from steepest.data.normalize import Standardizer
from steepest.errors import ConfigError, SteepestError
from steepest.predict import Predictor

MODES = ("dynamic", "static")
DYNAMIC_OPS = ["MatMul", "Gemm", "Attention", "LSTM", "Gather"]  # Gemm becomes MatMul + Add in the quantizer
AGREEMENT_MIN = 0.98
MAX_DROP = 0.01


@dataclass
class QuantizeReport:
    """What `quantize_run` measured. Sizes in bytes (fp32: the .onnx and its external data file);
    latencies in milliseconds per batch of `batch` rows (median of `repeats` runs after warm-up, on
    `threads` CPU threads); metrics on the test split: `fp32_metric` of the run's predictor (torch),
    `int8_metric` of the quantized file; `agreement`: fraction of test rows whose int8 prediction
    equals fp32's (regression: R^2 of the int8 outputs against fp32's)."""

    path: str
    mode: str
    metric: str
    fp32_bytes: int
    int8_bytes: int
    fp32_ms: float
    int8_ms: float
    batch: int
    threads: int
    repeats: int
    fp32_metric: float
    int8_metric: float
    agreement: float
    test_rows: int

    @property
    def drop(self) -> float:
        return self.fp32_metric - self.int8_metric

    def to_dict(self) -> dict:
        return {**asdict(self), "drop": self.drop, "size_ratio": self.fp32_bytes / self.int8_bytes}


def onnx_size(path: str | Path) -> int:
    """Bytes on disk of an ONNX model with its external data file(s) (torch's exporter writes the
    weights to PATH.data)."""
    path = Path(path)
    extra = [p for p in path.parent.glob(path.name + ".data") if p.is_file()]
    return path.stat().st_size + sum(p.stat().st_size for p in extra)


def require_onnxruntime() -> None:
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise SteepestError(f"--quantize needs {' and '.join(missing)}: pip install {' '.join(missing)} (or steepest[deploy])")


def quantize_onnx(fp32: str | Path, out: str | Path, mode: str, calibration: list[np.ndarray] | None = None) -> Path:
    """Write the int8 version of the ONNX model `fp32` to `out`. `calibration`: batches of inputs
    (raw scale, as the model takes them) for `static`. The model is pre-processed first (shape
    inference, graph optimization: ONNX Runtime's `quant_pre_process`). ConfigError for an unknown
    mode or static without calibration batches."""
    if mode not in MODES:
        raise ConfigError(f"--quantize must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "static" and not calibration:
        raise ConfigError("static quantization needs calibration batches (training inputs)")
    require_onnxruntime()
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=DYNAMIC_OPS,
                             reduce_range=True)
            return out
        name = onnxruntime.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()[0].name

        class Batches(CalibrationDataReader):
            def __init__(self):
                self.batches = iter(calibration)

            def get_next(self):
                batch = next(self.batches, None)
                return None if batch is None else {name: batch}

        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def _session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    name = session.get_inputs()[0].name
    dtype = np.int64 if "int64" in session.get_inputs()[0].type else np.float32
    return np.concatenate([session.run(None, {name: x[i : i + batch_size].astype(dtype)})[0] for i in range(0, len(x), batch_size)])


def latency_ms(session, x: np.ndarray, warmup: int = 5, repeats: int = 30) -> float:
    """Median wall time (ms) of one `session.run` on the batch `x`, after `warmup` runs."""
    name = session.get_inputs()[0].name
    dtype = np.int64 if "int64" in session.get_inputs()[0].type else np.float32
    feed = {name: x.astype(dtype)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def predictions(outputs: np.ndarray, task: str) -> np.ndarray:
    """Model outputs (N, K) -> what is compared: class ids, 0/1 labels, or the outputs (regression)."""
    if task == "classification":
        return outputs.argmax(axis=1)
    if task in ("binary", "multilabel"):
        return (outputs > 0).astype(np.int64).reshape(len(outputs), -1)
    return outputs


def task_metric(outputs: np.ndarray, y: np.ndarray, task: str) -> float:
    """Accuracy (classification, binary; multilabel: per label) or R^2 (regression, targets in
    their original units) of raw-unit outputs against targets."""
    if task == "regression":
        y = y.reshape(outputs.shape).astype(np.float64)
        return float(1 - ((outputs - y) ** 2).sum() / max(((y - y.mean(axis=0)) ** 2).sum(), 1e-12))
    pred = predictions(outputs, task)
    return float((pred == y.reshape(pred.shape)).mean())


def agreement(a: np.ndarray, b: np.ndarray, task: str) -> float:
    """How closely outputs `a` follow the reference `b` (0..1): the fraction of rows with the same
    predicted labels (all of a row's, for multilabel); for regression, R^2 of `a` against `b`.

    >>> agreement(np.array([[2., 1.], [0., 3.]]), np.array([[5., 0.], [5., 0.]]), "classification")
    0.5
    """
    if task == "regression":
        return task_metric(a, b, task)
    pa, pb = predictions(a, task), predictions(b, task)
    return float((pa.reshape(len(pa), -1) == pb.reshape(len(pb), -1)).all(axis=1).mean())


def run_splits(recipe, predictor: Predictor, limit: int = 4096):
    """The run's training and test splits (its recipe's data) in raw units, as the exported model
    takes them: (x_train, x_test, y_test), numpy; targets in original units. Dataset splits are read
    in memory, at most `limit` rows each."""
    data = in_memory_sample(load_data(recipe.data, recipe.trainer.seed), limit=limit, seed=recipe.trainer.seed)
    info = predictor.info
    raw = Standardizer.from_dict(info.x_norm).inverse if info.x_norm else (lambda a: a)
    x_train, x_test = (raw(part.x.cpu().numpy()) for part in (data.train, data.test))
    y_test = data.test.y.cpu().numpy()
    if info.task == "regression" and info.y_norm:
        y_test = Standardizer.from_dict(info.y_norm).inverse(y_test.reshape(len(y_test), -1))
    if len(x_test) == 0:
        raise SteepestError("the run has no test split to measure the quantized model on")
    return x_train, x_test, y_test


def quantize_run(run_dir: str | Path, fp32: str | Path, mode: str, out: str | Path | None = None, *,
                 trust_code: bool = False, calibration_batches: int = 8, batch: int = 256, threads: int = 1,
                 repeats: int = 30, seed: int = 0) -> QuantizeReport:
    """Quantize the run's fp32 ONNX export `fp32` (`steepest.deploy.export_run(..., "onnx")`) to
    `out` (default: beside it, model.int8-<mode>.onnx) and measure it: size, latency (a batch of
    `batch` test rows, `threads` threads), test metric and agreement with the run's predictor.
    Static mode calibrates on `calibration_batches` random training batches of the recipe's batch
    size. SteepestError when the agreement is below AGREEMENT_MIN or the metric drops by more than
    MAX_DROP (the file stays written); ConfigError for an unknown mode."""
    if mode not in MODES:
        raise ConfigError(f"--quantize must be one of {', '.join(MODES)}, got {mode!r}")
    require_onnxruntime()
    run_dir, fp32 = Path(run_dir), Path(fp32)
    predictor = Predictor.load(run_dir, trust_code=trust_code)
    task = predictor.info.task
    if task not in ("classification", "binary", "multilabel", "regression"):
        raise SteepestError(f"--quantize checks classification and regression runs; this run's task is {task}")
    recipe = load_run_recipe(run_dir / RUN_CONFIG, trust_code=trust_code)
    x_train, x_test, y_test = run_splits(recipe, predictor)
    calibration = None
    if mode == "static":
        size = recipe.data.batch_size if isinstance(recipe.data.batch_size, int) else 64  # "full": batches of 64
        order = np.random.default_rng(seed).permutation(len(x_train))[: calibration_batches * size]
        calibration = [x_train[order[i : i + size]] for i in range(0, len(order), size)]
    path = quantize_onnx(fp32, Path(out) if out else fp32.with_name(f"model.int8-{mode}.onnx"), mode, calibration)
    expected = predictor.outputs(x_test)
    if task == "regression" and predictor.y_norm is not None:
        expected = predictor.y_norm.inverse(expected)
    fp32_session, int8_session = _session(fp32, threads), _session(path, threads)
    got = _run(int8_session, x_test)
    timing = np.resize(x_test, (batch, *x_test.shape[1:]))  # the test rows, repeated up to `batch`
    report = QuantizeReport(
        path=str(path), mode=mode, metric="r2" if task == "regression" else "accuracy",
        fp32_bytes=onnx_size(fp32), int8_bytes=onnx_size(path),
        fp32_ms=latency_ms(fp32_session, timing, repeats=repeats), int8_ms=latency_ms(int8_session, timing, repeats=repeats),
        batch=batch, threads=threads, repeats=repeats,
        fp32_metric=task_metric(expected, y_test, task), int8_metric=task_metric(got, y_test, task),
        agreement=agreement(got, expected, task), test_rows=len(x_test))
    if report.agreement < AGREEMENT_MIN or report.drop > MAX_DROP:
        raise SteepestError(f"the int8 model ({mode}) fails its check: agreement with fp32 {report.agreement:.4f} "
                            f"(needs >= {AGREEMENT_MIN}), test {report.metric} {report.int8_metric:.4f} vs fp32 "
                            f"{report.fp32_metric:.4f} (drop {report.drop:.4f}, allowed {MAX_DROP}); {path} is written, "
                            f"for inspection; try the other --quantize mode or keep the fp32 model")
    return report
