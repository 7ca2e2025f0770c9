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
    """Identical samples in two splits leak the answer: validation and test scores become optimistic.
    Within the training split, identical inputs with different labels are label noise the network
    can only memorize (classification tasks)."""
    train_hashes = _hashes(ctx.data.train.x)
    h = {"train": set(train_hashes), **{s: set(_hashes(getattr(ctx.data, s).x)) for s in ("val", "test")}}
    overlap = {"train_val": len(h["train"] & h["val"]), "train_test": len(h["train"] & h["test"]), "val_test": len(h["val"] & h["test"])}
    total = sum(overlap.values())
    labels: dict[str, set] = {}
    if ctx.task in ("classification", "binary"):
        for key, y in zip(train_hashes, ctx.data.train.y.reshape(len(train_hashes), -1).tolist()):
            labels.setdefault(key, set()).add(tuple(y))
    conflicting = sum(len(v) > 1 for v in labels.values())
    repeated = len(train_hashes) - len(h["train"])
    evidence = {**overlap, "train_repeats": repeated, "train_conflicting_groups": conflicting}
    if total:
        return fail("duplicates", f"{total} samples appear in two splits ({overlap})",
                    "deduplicate the data before splitting (and oversample only after the split)", **evidence)
    if conflicting:
        return warn("duplicates", f"{conflicting} groups of identical training samples carry different labels",
                    "fix or drop the conflicting labels (the `label_noise` check lists likely label errors)", **evidence)
    return ok("duplicates", f"no sample appears in two splits; {repeated} repeated training samples, none with conflicting labels",
              **evidence)


def label_noise(ctx, folds: int = 5, limit: int = 5000):
    """Likely label errors within the training split, by confident learning (Northcutt, Jiang &
    Chuang 2021, "Confident Learning: Estimating Uncertainty in Dataset Labels"): out-of-fold class
    probabilities p from a logistic regression (scikit-learn, `folds`-fold, at most `limit` samples);
    per class j the threshold t_j = mean p_j over the samples labelled j; a sample labelled i whose
    most probable class among those with p_k >= t_k is some j != i is counted as a likely error
    (the off-diagonal of the confident joint). Warns above 2%, fails above 10%. The evidence lists
    the 20 suspects whose given label is least probable (positions in the training split, or in the
    sample of `limit` when it is larger)."""
    if ctx.task != "classification":
        return skip("label_noise", f"confident learning needs class labels; this is a {ctx.task} task")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    x, y = ctx.data.train.x, ctx.data.train.y.reshape(-1).long()
    if len(x) > limit:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.seed))[:limit]
        x, y = x[keep.to(x.device)], y[keep.to(y.device)]
    xs, ys = x.detach().cpu().double().reshape(len(x), -1).numpy(), y.cpu().numpy()
    counts = torch.bincount(torch.from_numpy(ys))
    k = int(counts.numel())
    if int(counts[counts > 0].min()) < folds:
        return skip("label_noise", f"a class has fewer than {folds} training samples")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one BLAS/OpenMP thread: no spin-waiting beside torch's pool
        probs = torch.from_numpy(cross_val_predict(LogisticRegression(max_iter=1000), xs, ys, cv=folds, method="predict_proba"))
    labels = torch.from_numpy(ys)
    thresholds = torch.stack([probs[labels == j, j].mean() if (labels == j).any() else torch.tensor(1.0, dtype=torch.float64)
                              for j in range(k)])
    above = probs >= thresholds[None, :]
    confident = torch.where(above, probs, torch.full_like(probs, -1.0)).argmax(dim=1)
    suspect = above.any(dim=1) & (confident != labels)
    fraction = float(suspect.double().mean())
    positions = torch.nonzero(suspect).reshape(-1)
    self_confidence = probs[positions, labels[positions]]  # the given label's probability: lowest first (most likely wrong)
    evidence = {"fraction": fraction, "samples": len(ys), "suspects": int(suspect.sum()),
                "first_suspects": positions[self_confidence.argsort()][:20].tolist()}
    summary = f"{fraction:.1%} of {len(ys)} training samples look mislabelled (confident learning, {folds}-fold logistic regression)"
    if fraction > 0.10:
        return fail("label_noise", summary, "audit the labels (evidence lists sample positions) before tuning the model", **evidence)
    if fraction > 0.02:
        return warn("label_noise", summary, "review the listed samples' labels; noisy labels cap accuracy and favour memorization", **evidence)
    return ok("label_noise", summary, **evidence)
