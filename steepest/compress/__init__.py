"""Smaller and faster models for deployment: pruning (magnitude or structured, iterative with
fine-tuning: `prune_run`) and post-training int8 quantization of the ONNX export (`quantize_run`).
Names load on first use (`steepest.lazy`)."""

from steepest.lazy import lazy_exports

_PRUNE = "steepest.compress.prune"
_EXPORTS = {
    **{n: _PRUNE for n in ("apply_masks", "make_permanent", "masks", "prune_to", "prunable_layers", "round_targets", "sparsity")},
    "prune_run": "steepest.compress.iterative",
    **{n: "steepest.compress.quantize" for n in ("QuantizeReport", "quantize_onnx", "quantize_run")},
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
