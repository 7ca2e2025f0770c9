"""Checks on the data: preprocessing statistics, class imbalance, leakage between splits."""

from __future__ import annotations

import hashlib

import torch

from steepest.diagnose._registry import CHECKS
from steepest.diagnose.report import fail, ok, skip, warn


@CHECKS.register("preprocessing")
def preprocessing(ctx):
    """Train and validation inputs should have comparable statistics after preprocessing."""
    tr, va = ctx.data.train.x.double(), ctx.data.val.x.double()
    if len(va) < 2:
        return skip("preprocessing", "validation split too small to compare")
    m_tr, m_va = tr.mean(), va.mean()
    s_tr, s_va = tr.std(), va.std()
    ratio = float(s_va / s_tr.clamp_min(1e-12))
    shift = float((m_va - m_tr).abs() / s_tr.clamp_min(1e-12))
    ev = {"train_mean": float(m_tr), "val_mean": float(m_va), "train_std": float(s_tr), "val_std": float(s_va)}
    if not 0.33 < ratio < 3 or shift > 1.0:
        return fail("preprocessing", f"validation std/mean differ from train (std ratio {ratio:.2f}, mean shift {shift:.2f} std)",
                    "apply the same preprocessing, fitted on the training split only, exactly once to every split", **ev)
    return ok("preprocessing", f"train/val statistics agree (std ratio {ratio:.2f}, mean shift {shift:.2f} std)", **ev)


@CHECKS.register("class_imbalance")
def class_imbalance(ctx):
    if ctx.task not in ("classification", "binary"):
        return skip("class_imbalance", f"not a classification task ({ctx.task})")
    y = ctx.data.train.y.reshape(-1).long()
    counts = torch.bincount(y, minlength=ctx.data.info.num_classes or 2).double()
    present = counts[counts > 0]
    ratio = float(present.max() / present.min())
    ev = {"counts": counts.tolist(), "ratio": ratio}
    if ratio > 10:
        return warn("class_imbalance", f"largest/smallest class = {ratio:.1f}",
                    "use a weighted sampler or class weights, focal loss, report F1/PR-AUC, and set model.output_bias: auto", **ev)
    return ok("class_imbalance", f"largest/smallest class = {ratio:.1f}", **ev)


def _hashes(x: torch.Tensor) -> list[str]:
    rows = x.detach().to("cpu", torch.float32).reshape(len(x), -1).numpy()
    return [hashlib.sha1(r.tobytes()).hexdigest() for r in rows]


@CHECKS.register("duplicates")
def duplicates(ctx):
    """Identical samples in two splits leak the answer: validation and test scores become optimistic."""
    h = {s: set(_hashes(getattr(ctx.data, s).x)) for s in ("train", "val", "test")}
    overlap = {"train_val": len(h["train"] & h["val"]), "train_test": len(h["train"] & h["test"]), "val_test": len(h["val"] & h["test"])}
    total = sum(overlap.values())
    if total:
        return fail("duplicates", f"{total} samples appear in two splits ({overlap})",
                    "deduplicate the data before splitting (and oversample only after the split)", **overlap)
    return ok("duplicates", "no sample appears in two splits", **overlap)
