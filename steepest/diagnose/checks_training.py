"""Checks that train briefly: overfitting a tiny subset, real data vs noise, non-finite values and
where they start, gradient flow, the learning rate, reduced precision and weight decay."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import nn

from steepest.diagnose.report import fail, ok, skip, warn


def _memorized(ctx, model: nn.Module, x: torch.Tensor, y: torch.Tensor, first_loss: float) -> tuple[bool, float]:
    """Every label right and the loss halved (classification; label smoothing floors the loss) or the
    loss near zero, on the model's eval-mode outputs; also returns that loss. One rule for the early
    stop and the verdict (a stop on the labels alone could end a run the verdict then fails)."""
    with torch.no_grad():
        out = model.eval()(x)
        loss = float(ctx.loss_fn(out, y))
    model.train()
    if ctx.task in ("classification", "binary"):
        pred = out.argmax(-1) if ctx.task == "classification" else (out.reshape(-1) > 0).long()
        right = bool((pred == y.reshape(pred.shape).long()).all())
        return right and loss < 0.5 * first_loss, loss
    return math.isfinite(loss) and loss <= 0.1 * first_loss + 0.02, loss


def _relu_model(ctx) -> nn.Module:
    """A fresh model of the recipe with its hidden sigmoid/tanh layers replaced by ReLU (a what-if probe)."""
    model = ctx.model()
    leaves = [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]
    for name, m in leaves[:-1]:
        if isinstance(m, (nn.Sigmoid, nn.Tanh)):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.ReLU())
    return model


def _suspects(ctx) -> list[tuple[str, dict]]:
    """The usual causes a failing training check re-runs without, as (cause with its fix, variant):
    inputs far from unit scale (variant: standardized with the training statistics) and hidden
    sigmoid/tanh layers (variant: ReLU instead). Only the suspects present on this recipe."""
    out = []
    scale = ctx.input_scale()
    if scale["verdict"] != "ok":
        out.append((f"{scale['text']}: {scale['fix']}", {"inputs": ctx.standardize}))
    sat = ctx.saturating()
    if sat:
        kinds = sorted({type(m).__name__.lower() for n, m in ctx.model().named_modules() if n in sat})
        worst = max(sat.values())
        tails = f", up to {worst:.0%} of their outputs in the flat tails" if worst > 0.05 else ""
        out.append((f"{'saturating ' if tails else ''}{'/'.join(kinds)} hidden layers ({', '.join(list(sat)[:4])}{tails}): "
                    f"use ReLU/GELU hidden layers (model.activation: relu)", {"make_model": lambda: _relu_model(ctx)}))
    return out


def _likely_causes(ctx, works: Callable[..., bool], lr_variants: list[tuple[str, dict]] = ()) -> tuple[list[str], list[str]]:
    """Counterfactual probes for a failing check: re-run it (`works(**variant)`) without each
    suspect in turn (input scale, saturating activations), without all of them together when no
    single one is enough, then with the given lr variants. Returns the causes whose removal makes
    it pass (the likely ones; none means the model, the data or the labels) and the suspects
    present that were not enough on their own."""
    suspects = _suspects(ctx)
    causes = [cause for cause, variant in suspects if works(**variant)]
    if not causes and len(suspects) > 1 and works(**{k: v for _, variant in suspects for k, v in variant.items()}):
        causes = [" together with ".join(cause for cause, _ in suspects)]
    if not causes:
        causes = [cause for cause, variant in lr_variants if works(**variant)][:1]
    return causes, [cause for cause, _ in suspects if not any(cause in c for c in causes)]


def _cause_fix(found: tuple[list[str], list[str]], otherwise: str) -> str:
    causes, others = found
    if causes:
        also = f"; also present: {'; '.join(others)}" if others else ""
        return "likely cause (the check passes without it): " + "; ".join(causes) + also
    if others:
        return f"{otherwise} (suspects present that did not explain it alone: {'; '.join(others)})"
    return otherwise


def _memorize(ctx, lr: float, make_model: Callable[[], nn.Module] | None = None, inputs: Callable | None = None,
              results: dict | None = None) -> int | None:
    """Memorize 2 samples (150 steps) then one batch (300 steps); the size that fails, or None."""
    results = {} if results is None else results
    for n, steps in ((2, 150), (min(ctx.batch_size, 64), 300)):
        x, y = ctx.batch(n)
        x = inputs(x) if inputs is not None else x
        model = (make_model or ctx.model)()
        for m in model.modules():  # memorization is the point: no dropout here
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.p = 0.0
        with torch.no_grad():
            first = float(ctx.loss_fn(model(x), y))
        losses = ctx.fit(model, x, y, steps, lr=lr, stop=lambda m=model, x=x, y=y, f=first: _memorized(ctx, m, x, y, f)[0])
        done, last = _memorized(ctx, model, x, y, first)
        results[n] = (first, last, len(losses))
        if not done:
            return n
    return None


def _check_lr_variants(ctx, lr: float, default: float, what: str) -> list[tuple[str, dict]]:
    """The lr probes of a check that trains with Adam at min(default, 10x the recipe's lr)."""
    out = []
    if lr < default:
        out.append((f"the recipe's lr {ctx.lr:g} is too low: the check trains at 10x it ({lr:g}) and {what} at {default:g}; "
                    f"raise optimizer.lr (steepest find-lr)", {"lr": default}))
    out.append((f"too high an lr for this model: the check's Adam at {lr:g} fails but {what} at {lr / 10:g}; "
                f"lower optimizer.lr if it is near {lr:g} (see learning_rate)", {"lr": lr / 10}))
    return out


def overfit_tiny(ctx):
    """A model that cannot memorize 2 samples, then one batch, has a bug (or ignores its input).
    Adam at 3e-3 (at most 10x the recipe's lr: a pretrained network fine-tuned at 1e-4 collapses at
    3e-3), dropout off; stops as soon as the subset is memorized (checked every 25 steps). On a
    failure, the likely cause is probed before the labels are blamed (`_likely_causes`)."""
    lr = min(3e-3, 10 * ctx.lr)
    results: dict = {}
    n = _memorize(ctx, lr, results=results)
    ev = {f"n{k}": v for k, v in results.items()}
    if n is not None:
        first, last, steps = results[n]
        found = _likely_causes(ctx, lambda lr=lr, make_model=None, inputs=None: _memorize(ctx, lr, make_model, inputs) is None,
                                _check_lr_variants(ctx, lr, 3e-3, "memorizes"))
        return fail("overfit_tiny", f"cannot overfit {n} samples: loss {first:.3f} -> {last:.3f} in {steps} steps",
                    _cause_fix(found, "check that the model uses its input and the labels match the inputs (no shift, no shuffling)"),
                    likely_causes=found[0], **ev)
    return ok("overfit_tiny", "; ".join(f"{n} samples: {a:.3f} -> {b:.4f} in {s} steps" for n, (a, b, s) in results.items()), **ev)


def _val_score(ctx, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor, lr: float,
               make_model: Callable[[], nn.Module] | None = None, inputs: Callable | None = None) -> float:
    """Validation loss after 100 Adam steps on (x, y)."""
    model = (make_model or ctx.model)()
    ctx.fit(model, inputs(x) if inputs is not None else x, y, 100, lr=lr, batch=ctx.batch_size)
    return ctx.evaluate(model, "val", inputs(val_x) if inputs is not None else val_x)


def real_vs_noise(ctx):
    """Real data must train better than random inputs, zero inputs and shuffled labels (Adam at 2e-3,
    at most 10x the recipe's lr; for text, random inputs are random token ids). On a failure, the
    likely cause is probed before the inputs or labels are blamed (`_likely_causes`)."""
    x, y = ctx.data.train.x, ctx.data.train.y
    g = torch.Generator().manual_seed(ctx.seed)
    if ctx.data.info.kind == "text":  # random token ids from the data's id range, not Gaussian numbers
        top = int(x.max()) + 1
        noise = lambda shape: torch.randint(0, top, shape, generator=g).to(x)  # noqa: E731
    else:
        noise = lambda shape: torch.randn(shape, generator=g).to(x)  # noqa: E731
    variants = {
        "real": (x, y, ctx.data.val.x),
        "random_inputs": (noise(x.shape), y, None),
        "zero_inputs": (torch.zeros_like(x), y, torch.zeros_like(ctx.data.val.x)),
        "shuffled_labels": (x, y[torch.randperm(len(y), generator=g).to(y.device)], ctx.data.val.x),
    }
    lr = min(2e-3, 10 * ctx.lr)
    scores = {}
    for name, (xv, yv, val_x) in variants.items():
        scores[name] = _val_score(ctx, xv, yv, noise(ctx.data.val.x.shape) if val_x is None else val_x, lr)
    best_other = min(v for k, v in scores.items() if k != "real")
    if not scores["real"] < 0.95 * best_other:
        found = _likely_causes(ctx, lambda lr=lr, make_model=None, inputs=None:
                                _val_score(ctx, x, y, ctx.data.val.x, lr, make_model, inputs) < 0.95 * best_other,
                                _check_lr_variants(ctx, lr, 2e-3, "real data beats the controls"))
        return fail("real_vs_noise", f"validation loss on real data {scores['real']:.3f} is no better than on noise/shuffled labels ({best_other:.3f})",
                    _cause_fix(found, "the model or the pipeline ignores or corrupts the inputs: check the forward pass and the "
                                       "feature/label alignment (labels shifted or shuffled against the inputs)"),
                    likely_causes=found[0], **scores)
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
        return warn("gradient_flow", f"exploding gradients: norm {largest:.2g}",
                    ctx.input_cause("clip gradients (trainer.clip_norm) and check initialization"), **ev)
    worst = max(ratios.values())
    if worst > 0.1:
        return warn("gradient_flow", f"one step changes a layer by {worst:.1%} of its norm (healthy ~0.1%)",
                    ctx.input_cause(f"lower the learning rate (optimizer.lr {ctx.lr:g}; see learning_rate)"), **ev)
    if worst < 1e-6:
        return warn("gradient_flow", f"one step changes the weights by at most {worst:.1e} of their norm (healthy ~1e-3)",
                    "raise the learning rate", **ev)
    return ok("gradient_flow", f"grad norms {smallest:.2g}..{largest:.2g}; update/weight up to {worst:.1e}", **ev)


def _trial(ctx, lr: float, steps: int = 60, make_model: Callable[[], nn.Module] | None = None,
           inputs: Callable | None = None) -> dict:
    """A short run of the recipe as written (its optimizer, parameter groups and clipping) at `lr`:
    the loss at the first step (before any update), the mean of the last 5 (inf once non-finite)
    and the peak."""
    x = ctx.data.train.x
    losses = ctx.fit((make_model or ctx.model)(), inputs(x) if inputs is not None else x, ctx.data.train.y, steps,
                     lr=lr, optimizer="recipe", batch=ctx.batch_size)
    finite = [v for v in losses if math.isfinite(v)]
    end = sum(losses[-5:]) / len(losses[-5:]) if len(finite) == len(losses) == steps else math.inf
    return {"lr": lr, "initial": losses[0], "end": end, "peak": max(finite, default=math.inf)}


def _judge(t: dict, chance: float | None) -> dict[str, bool]:
    """diverged: non-finite or ends 1.5x above its start; unstable: a spike to 3x the start (or the
    chance loss); at_chance: ends no better than the know-nothing predictor; stalled: ends within
    2% of its start. `good` is none of these."""
    start = t["initial"]
    j = {"diverged": not math.isfinite(t["end"]) or t["end"] > 1.5 * start,
         "unstable": t["peak"] > 3 * max(start, chance or 0.0) + 1e-6,
         "at_chance": chance is not None and t["end"] >= 0.98 * chance,
         "stalled": t["end"] > 0.98 * start}
    j["rose"] = j["diverged"] or t["end"] > start or j["unstable"]
    j["good"] = not (j["diverged"] or j["unstable"] or j["at_chance"] or j["stalled"])
    return j


def _grid(ctx, chance: float | None, factor: float, n: int = 8) -> tuple[dict | None, list[dict]]:
    """Steps of `factor` from the recipe's lr (down for factor < 1, up for > 1): past the first good
    lr, keep going while the final loss improves; the best good trial (or None) and all tried."""
    tried, best = [], None
    for k in range(1, n + 1):
        t = _trial(ctx, ctx.lr * factor**k)
        tried.append(t)
        if _judge(t, chance)["good"]:
            if best is not None and t["end"] >= best["end"]:
                break
            best = t
        elif best is not None:
            break
    return best, tried


def _fmt(t: dict) -> str:
    return f"{t['initial']:.3f} -> {t['end']:.3g}" + (f" (peak {t['peak']:.3g})" if t["peak"] > 3 * t["initial"] else "")


def learning_rate(ctx):
    """A short run (60 steps) of the recipe as written: its optimizer, parameter groups, clipping and
    lr (constant: the lr the schedule peaks at). It fails when the loss diverges, spikes, rises, or
    ends no better than the chance loss (a constant predictor at the label prior / target mean)
    while not stalled; the fix is the best lr of a half-decade grid below the recipe's. A run that
    makes no progress warns, with a larger lr from a decade grid above. When no lr helps, the
    input scale and saturating activations are probed (`_likely_causes`) and named."""
    chance = ctx.chance_loss()
    t = _trial(ctx, ctx.lr)
    j = _judge(t, chance)
    vs = f" (chance {chance:.3f})" if chance is not None else ""
    ev = {"lr": ctx.lr, "first_loss": t["initial"], "last_losses": t["end"], "peak_loss": t["peak"], "chance_loss": chance,
          "judged": {k: v for k, v in j.items() if v}}
    if j["good"]:
        return ok("learning_rate", f"lr {ctx.lr:g}: loss {t['initial']:.3f} -> {t['end']:.3f} in 60 steps{vs}", **ev)
    too_high = j["rose"] or (j["at_chance"] and not j["stalled"])
    best, tried = _grid(ctx, chance, 10**-0.5) if too_high else (None, [])
    if best is None and not j["rose"]:
        best, more = _grid(ctx, chance, 10.0)  # decades: a too-low lr is often orders of magnitude off
        tried += more
    ev.update(tried={f"{x['lr']:.3g}": x["end"] for x in tried})
    what = ("diverges" if j["diverged"] else "is unstable" if j["unstable"] else "makes no progress in 60 steps" if j["stalled"]
            else "ends no better than chance")
    summary = f"lr {ctx.lr:g} {what}: loss {_fmt(t)}{vs}"
    if best is not None:
        ev.update(suggested_lr=best["lr"], suggested_last_losses=best["end"])
        summary += f"; at lr {best['lr']:.3g}: {_fmt(best)}"
        if best["lr"] < ctx.lr:
            return fail("learning_rate", summary, f"lr {ctx.lr:g} is too high for this recipe: set optimizer.lr: {best['lr']:.3g} "
                        "(the best of a short grid below it; steepest find-lr refines it)", **ev)
        return warn("learning_rate", summary, f"lr {ctx.lr:g} is too low to make progress: set optimizer.lr: {best['lr']:.3g} "
                    "(the best of a short grid above it; steepest find-lr refines it)", **ev)
    found = _likely_causes(ctx, lambda make_model=None, inputs=None: _judge(_trial(ctx, ctx.lr, make_model=make_model, inputs=inputs), chance)["good"])
    ev.update(likely_causes=found[0])
    span = f"lr {min(x['lr'] for x in tried):.2g}..{max(x['lr'] for x in tried):.2g}" if tried else "the recipe's lr"
    if found[0]:
        return fail("learning_rate", f"{summary}; no lr tried helps ({span})", _cause_fix(found, ""), **ev)
    if j["at_chance"] or j["rose"]:
        return fail("learning_rate", f"{summary}; no lr tried helps ({span})", _cause_fix(
            found, "the cause is not the lr: the model does not learn this data (see overfit_tiny and real_vs_noise)"), **ev)
    return warn("learning_rate", f"{summary}; no lr tried helps ({span})", _cause_fix(
        found, "the loss falls too slowly at every lr tried: check the model and the data (see overfit_tiny), or train longer"), **ev)


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
