"""Weight decay against the validation loss: item 12 of the practitioner's debugging checklist
(Deep Learning Systems §4.5.3): try several weight-decay penalties and see that training responds
as it should, a larger penalty raising the training loss and, when the model overfits, lowering
the validation (test) loss.

`weight_decay_val` trains the recipe as written (its optimizer, parameter groups, clipping and lr,
constant) for `STEPS` steps on the training split with no decay, the recipe's own and each of
`DECAYS`, from the same initial weights and on the same batches, so the runs differ by the decay
alone. The decay is the optimizer's `weight_decay` on the groups the recipe decays (never biases
or normalization gains): decoupled for AdamW-style optimizers, an L2 gradient for SGD and Adam.
The grid reaches past the method's 10^{-6..-3} because a decay acts per step (lr x lambda of the
weights): in a few hundred steps, 1e-4 and below cannot be told from none. Cost: one short run for
none and each decay (and the recipe's, when not in the grid): 5 on digits_mlp, 1,000 optimizer steps.
"""

from __future__ import annotations

import dataclasses
import math

from steepest.diagnose.report import ok, skip, warn

STEPS = 200
DECAYS = (1e-3, 1e-2, 1e-1, 1.0)
MARGIN = 0.10  # a relative change of the validation loss smaller than this is no effect (short runs vary by a few %)


def _decayed_groups(optimizer) -> list[dict]:
    """The groups the recipe decays: all but steepest's no-decay group (`adapt=False`)."""
    return [g for g in optimizer.param_groups if g.get("adapt", True) is not False and "weight_decay" in g]


def _with_decay(optimizer, value: float):
    for group in _decayed_groups(optimizer):
        group["weight_decay"] = value
    return optimizer


def _run(ctx, value: float) -> dict[str, float]:
    """STEPS steps of the recipe at decay `value`; the training and validation losses after them."""
    decayed = dataclasses.replace(ctx, make_optimizer=lambda model: _with_decay(ctx.make_optimizer(model), value))
    model = ctx.model()
    decayed.fit(model, ctx.data.train.x, ctx.data.train.y, STEPS, optimizer="recipe", batch=ctx.batch_size)
    return {"train_loss": ctx.evaluate(model, "train"), "val_loss": ctx.evaluate(model, "val")}


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def weight_decay_val(ctx):
    """Whether weight decay lowers (or raises) the validation loss against none, with a value to use."""
    if len(ctx.data.val) == 0:
        return skip("weight_decay_val", "no validation split to judge weight decay on")
    groups = _decayed_groups(ctx.make_optimizer(ctx.model()))
    if not groups:
        return skip("weight_decay_val", "the optimizer has no weight_decay to vary")
    own = float(groups[0]["weight_decay"])
    values = [0.0, *sorted({own, *DECAYS} - {0.0})]
    runs = {v: _run(ctx, v) for v in values}
    val = {v: _finite(r["val_loss"]) for v, r in runs.items()}
    none = val[0.0]
    ev = {"steps": STEPS, "recipe_weight_decay": own, "runs": {f"{v:g}": r for v, r in runs.items()}}
    if not math.isfinite(none):
        return skip("weight_decay_val", f"the run without decay does not stay finite in {STEPS} steps (see learning_rate)")
    best = min(values[1:], key=lambda v: val[v])
    largest = values[-1]
    train = f"training loss {runs[0.0]['train_loss']:.3f} -> {runs[largest]['train_loss']:.3f} at {largest:g}"
    if val[best] <= (1 - MARGIN) * none:  # decay clearly lowers the validation loss: the model overfits
        own_is_fine = own > 0 and val[own] <= (1 + MARGIN) * val[best]
        ev["suggested_weight_decay"] = own if own_is_fine else best
        if own_is_fine:
            return ok("weight_decay_val", f"weight decay lowers val loss: {none:.3f} with none, {val[own]:.3f} at the recipe's {own:g} "
                      f"(best {best:g}: {val[best]:.3f}); {train}", **ev)
        at_own = f"; the recipe's {own:g} gives {val[own]:.3f}" if own else ""
        edge = " (the largest tried)" if best == largest else ""
        return warn("weight_decay_val", f"the model overfits in {STEPS} steps: weight decay {best:g}{edge} lowers val loss from {none:.3f} "
                    f"(none) to {val[best]:.3f}{at_own}; {train}",
                    f"set optimizer.weight_decay: {best:g} (the best of {STEPS}-step runs; steepest search --procedure new "
                    "compares values on longer runs)", **ev)
    raises = own > 0 and val[own] >= (1 + MARGIN) * none
    ev["suggested_weight_decay"] = 0.0 if raises else own
    if raises:
        return warn("weight_decay_val", f"the recipe's weight decay {own:g} raises val loss from {none:.3f} (none) to {val[own]:.3f}, "
                    f"and no decay tried lowers it by {MARGIN:.0%}; {train}",
                    "lower optimizer.weight_decay (none does as well as any value tried: 0)", **ev)
    kept = f"; the recipe's {own:g} is harmless" if own else "; none needed"
    return ok("weight_decay_val", f"weight decay does not lower val loss in {STEPS} steps (none {none:.3f}, best {best:g} {val[best]:.3f}): "
              f"the model does not overfit{kept}; {train}", **ev)
