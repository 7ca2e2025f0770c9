"""Deployment: a finished run as one self-contained inference artifact.

The exported module takes raw inputs (the training normalization is folded in as buffers) and
returns the model's outputs in the units `Predictor.outputs` gives: logits for classification,
targets in their original units for regression. The batch dimension stays dynamic.

    steepest export runs/exp1                      # runs/exp1/model.pt2 (torch.export; load with torch.export.load)
    steepest export runs/exp1 --format torchscript # runs/exp1/model.torchscript.pt (torch.jit.load; deprecated by PyTorch)
    steepest export runs/exp1 --format onnx        # runs/exp1/model.onnx (needs the onnx and onnxscript packages)

The file is written atomically (a crash leaves the old file or the new one, never half of one; ONNX
excepted, written by its exporter), a missing folder is made as `steepest predict -o` and `steepest
report -o` make theirs, and an output that would replace one of the run's own files (config.yaml,
model.safetensors, a checkpoint, ...) is refused.

After writing, the artifact is loaded back and compared with the run's own predictor on random
inputs; the largest difference is reported, and a mismatch is an error.

The model is rebuilt from the run's config.yaml, and a recipe with `component:` paths is code:
such a run is refused unless you pass --trust-code (`trust_code=True`), for runs whose author you trust.

A run trained on categorical or imputed CSV columns (`DataInfo.tabular`) is refused: its inputs
are table rows with text cells, which a tensor graph cannot take, so its encoder (categories,
medians, indicator columns) runs in `steepest predict` / `Predictor` instead.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steepest.data.containers import DataInfo
from steepest.data.text import tokenize
from steepest.errors import SteepestError
from steepest.predict import Predictor
from steepest.run.directory import refuse_output
from steepest.training.checkpoint import atomic_write_bytes

FORMATS = {"export": "model.pt2", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
ONNX_ONE_FILE_BYTES = 1_800_000_000  # weights above this go to a side file (model.onnx.data): protobuf caps a file at 2 GB


def _norm_buffers(norm: dict | None, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    if not norm:
        return torch.zeros(()), torch.ones(())
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    std = torch.tensor(norm["std"], dtype=torch.float32)
    if norm.get("per_channel") and len(shape) >= 2:
        view = (1, len(mean)) + (1,) * (len(shape) - 1)
    elif len(mean) > 1:
        view = (1, *shape)
    else:
        view = (1,)
    return mean.reshape(view), std.reshape(view)


class InferenceModule(nn.Module):
    """Raw inputs -> normalized -> model -> outputs (regression targets de-normalized)."""

    def __init__(self, model: nn.Module, info: DataInfo):
        super().__init__()
        self.model, self.input_shape = model, tuple(info.input_shape)
        x_mean, x_std = _norm_buffers(info.x_norm, self.input_shape)
        self.register_buffer("x_mean", x_mean)
        self.register_buffer("x_std", x_std)
        y_mean, y_std = _norm_buffers(info.y_norm if info.task == "regression" else None, (info.num_outputs,))
        self.register_buffer("y_mean", y_mean)
        self.register_buffer("y_std", y_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.reshape(-1, *self.input_shape).float() - self.x_mean) / self.x_std
        return self.model(x) * self.y_std + self.y_mean


def example_inputs(info: DataInfo, n: int, seed: int = 0) -> torch.Tensor:
    """Random raw-scale inputs (around the training mean, at its spread) to check an export with; for a
    text run, token ids of short made-up documents of different lengths (padding included)."""
    g = torch.Generator().manual_seed(seed)
    if info.text:
        words = "the market film election match phone rose fell after a new season vote".split()
        docs = [" ".join(words[j] for j in torch.randint(0, len(words), (int(k),), generator=g).tolist())
                for k in torch.randint(1, 3 * info.text["max_length"], (n,), generator=g)]
        return torch.from_numpy(tokenize(docs, info.text["tokenizer"], info.text["max_length"]))
    x = torch.randn((n, *info.input_shape), generator=g)
    if info.x_norm:
        mean, std = _norm_buffers(info.x_norm, tuple(info.input_shape))
        x = x * std + mean
    return x


def _output_folder(path: Path) -> None:
    """Make the folder of `path` when missing (as `predict -o` does); SteepestError when it cannot be
    made or written."""
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise SteepestError(f"-o {path}: {parent} is a file, not a folder; choose another file name")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SteepestError(f"-o {path}: cannot create the folder {parent} ({exc.strerror or exc}); "
                            "create it first or choose another folder") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SteepestError(f"-o {path}: the folder {parent} is not writable; fix its permissions or choose another folder")


def _write(path: Path, data: bytes) -> None:
    """`data` into `path` atomically (through a symlink to its target); a failure is one line and
    leaves neither the old file damaged nor a temp file behind."""
    target = path.resolve() if path.is_symlink() else path
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise SteepestError(f"cannot write {path}: {exc.strerror or exc}; free space, fix the permissions or choose "
                            "another file with -o") from None


def export_run(run_dir: str | Path, fmt: str = "export", out: str | Path | None = None, *,
               trust_code: bool = False) -> tuple[Path, float]:
    """Write the run's inference artifact; returns (path, largest difference from the run's predictor).
    The model is rebuilt by `Predictor.load`: a run whose recipe names user code (`component:`
    paths) is refused unless `trust_code` (`steepest export --trust-code`). SteepestError for a run
    with categorical or imputed columns (`steepest predict` encodes its raw rows)."""
    if fmt not in FORMATS:
        raise SteepestError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(out) if out is not None else Path(run_dir) / FORMATS[fmt]
    if out is not None:
        refuse_output([run_dir], out, "-o", FORMATS[fmt])  # before the work: an export never replaces the run's own files
    predictor = Predictor.load(run_dir, trust_code=trust_code)
    if predictor.info.tabular:
        raise SteepestError(f"{run_dir}: this run encodes categorical or missing CSV cells (text in, data_info.json 'tabular'), which an "
                            f"exported tensor graph cannot take; use `steepest predict {run_dir} rows.csv` (or steepest.predict.Predictor)")
    module = InferenceModule(predictor.model, predictor.info).eval()
    _output_folder(path)
    example = example_inputs(predictor.info, 4)
    if fmt == "export":
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()  # saved to memory, then written atomically
        torch.export.save(program, buffer)
        _write(path, buffer.getvalue())
        loaded = torch.export.load(str(path)).module()
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(module, example)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
            _write(path, buffer.getvalue())
            loaded = torch.jit.load(str(path))
    else:
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise SteepestError(f"ONNX export needs {' and '.join(missing)}: pip install {' '.join(missing)}")
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        try:
            big = sum(t.numel() * t.element_size() for t in module.state_dict().values()) > ONNX_ONE_FILE_BYTES
            torch.onnx.export(module, (example,), str(path), dynamic_shapes=({0: batch},), dynamo=True, verbose=False,
                              external_data=big)  # one self-contained file (protobuf's 2 GB limit aside)
        except OSError as exc:
            raise SteepestError(f"cannot write {path}: {exc.strerror or exc}; free space, fix the permissions or choose "
                                "another file with -o") from None
        loaded = None
    check = example_inputs(predictor.info, 7, seed=1)
    expected = predictor.outputs(check.numpy())
    if predictor.info.task == "regression" and predictor.y_norm is not None:
        expected = predictor.y_norm.inverse(expected)
    if loaded is None:
        if importlib.util.find_spec("onnxruntime") is None:
            return path, math.nan  # written; onnxruntime is not installed to run it
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        got = session.run(None, {session.get_inputs()[0].name: check.numpy()})[0]
    else:
        with torch.no_grad():
            got = loaded(check).numpy()
    diff = float(np.max(np.abs(got - expected)))
    scale = float(np.max(np.abs(expected))) + 1e-6
    if not diff <= 1e-4 * scale + 1e-5:
        raise SteepestError(f"the exported {fmt} model disagrees with the run's predictor (max difference {diff:.3g})")
    return path, diff
