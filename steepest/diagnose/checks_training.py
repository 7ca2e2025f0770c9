"""Checks that train briefly: overfitting a tiny subset, real data vs noise, non-finite values and
where they start, gradient flow, the learning rate, reduced precision and weight decay."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from steepest.diagnose.report import fail, ok, skip, warn


def _memorized(ctx, model: nn.Module, x: torch.Tensor, y: torch.Tensor, first_loss: float | None, last_loss: float) -> bool:
    """Every label right (classification; label smoothing floors the loss) or the loss near zero."""
    if ctx.task in ("classification", "binary"):
        with torch.no_grad():
            out = model.eval()(x)
        model.train()
        pred = out.argmax(-1) if ctx.task == "classification" else (out.reshape(-1) > 0).long()
        right = bool((pred == y.reshape(pred.shape).long()).all())
        return right and (first_loss is None or last_loss < 0.5 * first_loss)
    return math.isfinite(last_loss) and first_loss is not None and last_loss <= 0.1 * first_loss + 0.02


def overfit_tiny(ctx):
    """A model that cannot memorize 2 samples, then one batch, has a bug (or ignores its input).
    Adam at 3e-3 (at most 10x the recipe's lr: a pretrained network fine-tuned at 1e-4 collapses at
    3e-3), dropout off; stops as soon as the subset is memorized (checked every 25 steps)."""
    lr = min(3e-3, 10 * ctx.lr)
    results = {}
    for n, steps in ((2, 150), (min(ctx.batch_size, 64), 300)):
        x, y = ctx.batch(n)
        model = ctx.model()
        for m in model.modules():  # memorization is the point: no dropout here
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.p = 0.0
        with torch.no_grad():
            first = float(ctx.loss_fn(model(x), y))
        losses = ctx.fit(model, x, y, steps, lr=lr, stop=lambda m=model, x=x, y=y: _memorized(ctx, m, x, y, None, 0.0))
        results[n] = (first, losses[-1], len(losses))
        if not _memorized(ctx, model, x, y, first, losses[-1]):
            return fail("overfit_tiny", f"cannot overfit {n} samples: loss {first:.3f} -> {losses[-1]:.3f} in {len(losses)} steps",
                        "check that the model uses its input and the labels match the inputs (no shift, no shuffling)",
                        **{f"n{k}": v for k, v in results.items()})
    return ok("overfit_tiny", "; ".join(f"{n} samples: {a:.3f} -> {b:.4f} in {s} steps" for n, (a, b, s) in results.items()),
              **{f"n{k}": v for k, v in results.items()})


def real_vs_noise(ctx):
    """Real data must train better than random inputs, zero inputs and shuffled labels (Adam at 2e-3,
    at most 10x the recipe's lr; for text, random inputs are random token ids)."""
    x, y = ctx.data.train.x, ctx.data.train.y
    g = torch.Generator().manual_seed(ctx.seed)
    if ctx.data.info.kind == "text":  # random token ids from the data's id range, not Gaussian numbers
        top = int(x.max()) + 1
        noise = lambda shape: torch.randint(0, top, shape, generator=g).to(x)  # noqa: E731
    else:
        noise = lambda shape: torch.randn(shape, generator=g).to(x)  # noqa: E731
    variants = {
        "real": (x, y),
        "random_inputs": (noise(x.shape), y),
        "zero_inputs": (torch.zeros_like(x), y),
        "shuffled_labels": (x, y[torch.randperm(len(y), generator=g).to(y.device)]),
    }
    scores = {}
    for name, (xv, yv) in variants.items():
        model = ctx.model()
        ctx.fit(model, xv, yv, 100, lr=min(2e-3, 10 * ctx.lr), batch=ctx.batch_size)
        val_x = ctx.data.val.x if name != "zero_inputs" else torch.zeros_like(ctx.data.val.x)
        if name == "random_inputs":
            val_x = noise(ctx.data.val.x.shape)
        scores[name] = ctx.evaluate(model, "val", val_x)
    best_other = min(v for k, v in scores.items() if k != "real")
    if not scores["real"] < 0.95 * best_other:
        return fail("real_vs_noise", f"validation loss on real data {scores['real']:.3f} is no better than on noise/shuffled labels ({best_other:.3f})",
                    "the model or the pipeline ignores or corrupts the inputs: check the forward pass and the feature/label alignment", **scores)
    return ok("real_vs_noise", f"val loss real {scores['real']:.3f} vs best control {best_other:.3f}", **scores)


def nonfinite(ctx):
    """NaN/Inf in inputs, outputs, loss or gradients, with the first module that produces them."""
    x, y = ctx.batch()
    if not torch.isfinite(x).all():
        return fail("nonfinite", "the inputs contain NaN/Inf", "clean or impute the data before training")
    model = ctx.model()
    first: list[str] = []
    grads: list[str] = []

    def forward_hook(mod, inp, out, name):
        if not first and isinstance(out, torch.Tensor) and not torch.isfinite(out).all():
            first.append(f"{name} ({type(mod).__name__})")

    def backward_hook(mod, gin, gout, name):
        if not grads and any(g is not None and not torch.isfinite(g).all() for g in gin):
            grads.append(f"{name} ({type(mod).__name__})")

    leaves = [(n, m) for n, m in model.named_modules() if n and len(list(m.children())) == 0]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: forward_hook(mod, i, o, n)) for n, m in leaves]
    handles += [m.register_full_backward_hook(lambda mod, gi, go, n=n: backward_hook(mod, gi, go, n)) for n, m in leaves]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # full backward hooks on the first layer see no input gradient
            loss = ctx.loss_fn(model(x), y)
            if loss.requires_grad:
                loss.backward()
    finally:
        for h in handles:
            h.remove()
    if first:
        return fail("nonfinite", f"the forward pass first produces NaN/Inf in {first[0]}",
                    "look at that layer: log of <= 0, division by ~0, sqrt of negatives, overflow (see also the precision check)", module=first[0])
    if not torch.isfinite(loss):
        return fail("nonfinite", f"the loss is {float(loss)} with finite outputs", "check the loss inputs (targets range, log of 0)")
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if grads or bad:
        return fail("nonfinite", f"gradients become NaN/Inf at {grads[0] if grads else bad[0]}",
                    "clip gradients (trainer.clip_norm) and look for non-differentiable points", module=grads[0] if grads else bad[0])
    return ok("nonfinite", "inputs, outputs, loss and gradients are finite")


def gradient_flow(ctx):
    """Per-layer gradient norms (vanishing/exploding) and the update-to-weight ratio of one step."""
    model = ctx.model()
    x, y = ctx.batch()
    model.train()
    ctx.loss_fn(model(x), y).backward()
    weights = [(n, p) for n, p in model.named_parameters() if p.grad is not None and p.dim() > 1]
    if not weights:
        return skip("gradient_flow", "no weight matrices with gradients")
    norms = {n: float(p.grad.norm()) for n, p in weights}
    before = {n: p.detach().clone() for n, p in weights}
    opt = ctx.make_optimizer(model)
    opt.step()
    ratios = {n: float((p.detach() - before[n]).norm() / before[n].norm().clamp_min(1e-12)) for n, p in weights}
    ev = {"grad_norms": norms, "update_ratios": ratios}
    largest, smallest = max(norms.values()), min(norms.values())
    if largest > 0 and smallest / largest < 1e-4:
        name = min(norms, key=norms.get)
        return fail("gradient_flow", f"vanishing gradients: {name} gets {smallest:.2g} vs {largest:.2g} elsewhere",
                    "use ReLU-family activations, Kaiming/Xavier init, normalization layers or skip connections", **ev)
    if largest > 1e3:
        return warn("gradient_flow", f"exploding gradients: norm {largest:.2g}", "clip gradients (trainer.clip_norm) and check initialization", **ev)
    worst = max(ratios.values())
    if worst > 0.1:
        return warn("gradient_flow", f"one step changes a layer by {worst:.1%} of its norm (healthy ~0.1%)",
                    "lower the learning rate", **ev)
    if worst < 1e-6:
        return warn("gradient_flow", f"one step changes the weights by at most {worst:.1e} of their norm (healthy ~1e-3)",
                    "raise the learning rate", **ev)
    return ok("gradient_flow", f"grad norms {smallest:.2g}..{largest:.2g}; update/weight up to {worst:.1e}", **ev)


def _progress(ctx, lr: float, steps: int = 60) -> tuple[float, float]:
    """Mean loss of the first and last 5 steps of a short run with the recipe's optimizer at `lr`."""
    losses = ctx.fit(ctx.model(), ctx.data.train.x, ctx.data.train.y, steps, lr=lr, optimizer="recipe", batch=ctx.batch_size)
    start = sum(losses[:5]) / min(5, len(losses))
    end = losses[-1] if not math.isfinite(losses[-1]) or len(losses) < steps else sum(losses[-5:]) / 5
    return start, end


def learning_rate(ctx):
    """A short run at the recipe's lr (60 steps): divergence means too high, no progress too low.
    On a bad verdict the lr 10x lower (or higher) is tried too, as evidence for the fix."""
    start, end = _progress(ctx, ctx.lr)
    ev = {"lr": ctx.lr, "first_losses": start, "last_losses": end}
    if not math.isfinite(end) or end > 1.5 * start:
        lo_start, lo_end = _progress(ctx, ctx.lr / 10)
        ev.update(lr_div_10_last_losses=lo_end)
        better = f"; at lr {ctx.lr / 10:g}: {lo_start:.3f} -> {lo_end:.3f}" if math.isfinite(lo_end) else ""
        return fail("learning_rate", f"lr {ctx.lr:g} diverges: loss {start:.3f} -> {end:.3g}{better}",
                    "lower optimizer.lr (run steepest find-lr)", **ev)
    if end > 0.98 * start:
        hi_start, hi_end = _progress(ctx, ctx.lr * 10)
        ev.update(lr_times_10_last_losses=hi_end)
        return warn("learning_rate", f"lr {ctx.lr:g} makes no progress in 60 steps: loss {start:.3f} -> {end:.3f}; "
                    f"at lr {ctx.lr * 10:g}: {hi_start:.3f} -> {hi_end:.3g}", "raise optimizer.lr (run steepest find-lr)", **ev)
    return ok("learning_rate", f"lr {ctx.lr:g}: loss {start:.3f} -> {end:.3f} in 60 steps", **ev)


def precision(ctx):
    """The loss and outputs under bf16 autocast should match fp32 (relative change under 5% / 10%);
    activations beyond fp16's largest value (65504) overflow in fp16."""
    model = ctx.model().eval()
    x, y = ctx.batch(256)
    peaks: list[torch.Tensor] = []  # per-layer maxima stay on the device; one read at the end
    hooks = [m.register_forward_hook(lambda mod, i, o: peaks.append(o.detach().abs().amax().float())
                                     if isinstance(o, torch.Tensor) and o.is_floating_point() else None)
             for m in model.modules() if len(list(m.children())) == 0]
    with torch.no_grad():
        out = model(x)
        full = float(ctx.loss_fn(out, y))
        for h in hooks:
            h.remove()
        with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16):
            out_bf16 = model(x)
            half = float(ctx.loss_fn(out_bf16, y))
    peak = float(torch.stack(peaks).max()) if peaks else 0.0
    rel = abs(half - full) / max(abs(full), 1e-8)
    rel_out = float((out_bf16.float() - out).norm() / out.norm().clamp_min(1e-12))
    ev = {"fp32_loss": full, "bf16_loss": half, "bf16_output_rel_change": rel_out, "max_activation": peak}
    if peak > 65504:
        return warn("precision", f"activations reach {peak:.3g}, beyond fp16's 65504", "use bf16 (trainer.precision: bf16), not fp16", **ev)
    if rel > 0.05 or rel_out > 0.1:
        return warn("precision", f"bf16 changes the loss by {rel:.1%} and the outputs by {rel_out:.1%}",
                    "train in fp32, or keep the sensitive layers in fp32 (cancellation or large offsets lose bf16's 8 bits)", **ev)
    return ok("precision", f"bf16 loss within {rel:.2%} of fp32 (outputs {rel_out:.1%}); max activation {peak:.3g}", **ev)


def weight_decay(ctx):
    """More weight decay should raise the training loss; if not, decay is not reaching the weights."""
    x, y = ctx.batch(256)
    finals = {}
    for wd in (0.0, 0.5):
        model = ctx.model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=wd)
        for _ in range(100):
            opt.zero_grad()
            loss = ctx.loss_fn(model(x), y)
            loss.backward()
            opt.step()
        finals[wd] = float(loss.detach())
    if finals[0.5] <= finals[0.0]:
        return warn("weight_decay", f"train loss with decay 0.5 ({finals[0.5]:.3f}) is not above without ({finals[0.0]:.3f})",
                    "check that weight decay reaches the weights (param groups)", **{str(k): v for k, v in finals.items()})
    return ok("weight_decay", f"train loss {finals[0.0]:.3f} (no decay) < {finals[0.5]:.3f} (decay 0.5)")
