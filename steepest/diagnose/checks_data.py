"""Checks on the data: preprocessing statistics, class imbalance, leakage between splits."""

from __future__ import annotations

import hashlib

import torch

from steepest.diagnose.report import fail, ok, skip, warn


def preprocessing(ctx):
    """The inputs the model actually receives (after the recipe's normalization) should be near
    unit scale and centered (see `DoctorContext.input_scale`): features at scale ~1000, or a mean
    far above the spread, saturate activations and make the first layer's steps ill-conditioned.
    Train and validation should also have comparable statistics: per feature, the validation mean
    within a fraction of the training std and the std ratio near 1. Medians over features (robust
    to a few rare features); normalization applied twice or to one split only moves every feature.
    Features constant on train are left out."""
    tr, va = ctx.data.train.x.double().flatten(1), ctx.data.val.x.double().flatten(1)
    if len(va) < 2 or len(tr) < 2:
        return skip("preprocessing", "a split is too small to compare")
    s_tr = tr.std(0)
    keep = s_tr > 1e-8 * s_tr.max().clamp_min(1e-30)
    if not keep.any():
        return skip("preprocessing", "every feature is constant on the training split")
    shift = float(((va.mean(0) - tr.mean(0)).abs() / s_tr)[keep].median())
    ratio = float((va.std(0) / s_tr)[keep].median())
    scale = ctx.input_scale()
    ev = {"median_mean_shift_in_train_std": shift, "median_std_ratio": ratio, "train_mean": float(tr.mean()),
          "val_mean": float(va.mean()), "train_std": float(tr.std()), "val_std": float(va.std()),
          **{f"input_{k}": scale[k] for k in ("rms", "offset", "spread") if k in scale}}
    text = f"per feature: validation mean shift {shift:.2f} train std, std ratio {ratio:.2f} (medians)"
    split_verdict, summary, fix = "ok", f"train/val agree: {text}", ""
    if not 0.5 < ratio < 2 or shift > 0.5:
        split_verdict, summary = "fail", f"train and validation differ: {text}"
        fix = "apply the same preprocessing, fitted on the training split only, exactly once to every split"
    elif not 0.75 < ratio < 1.33 or shift > 0.25:
        split_verdict, summary = "warn", f"train and validation differ somewhat: {text}"
        fix = "check that every split goes through the same preprocessing (or that the split is not shifted)"
    rank = {"ok": 0, "warn": 1, "fail": 2}
    if scale["verdict"] != "ok":
        summary = f"{scale['text']}; {summary}"
        fix = f"{scale['fix']}; {fix}" if fix else scale["fix"]
    worst = max(split_verdict, scale["verdict"], key=rank.get)
    if worst == "ok":
        return ok("preprocessing", f"{summary}; {scale['text']}", **ev)
    return (fail if worst == "fail" else warn)("preprocessing", summary, fix, **ev)


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


def duplicates(ctx):
    """Identical samples in two splits leak the answer: validation and test scores become optimistic."""
    h = {s: set(_hashes(getattr(ctx.data, s).x)) for s in ("train", "val", "test")}
    overlap = {"train_val": len(h["train"] & h["val"]), "train_test": len(h["train"] & h["test"]), "val_test": len(h["val"] & h["test"])}
    total = sum(overlap.values())
    if total:
        return fail("duplicates", f"{total} samples appear in two splits ({overlap})",
                    "deduplicate the data before splitting (and oversample only after the split)", **overlap)
    return ok("duplicates", "no sample appears in two splits", **overlap)
