"""Setup choices the debugging checklists warn about, read from the recipe and the built model and
optimizer (no training): a constant learning rate with nothing that lowers it or stops the run,
a recurrent or attention network trained without gradient clipping (exploding gradients: Pascanu
et al. 2013), and plain SGD without momentum (slow along low-curvature directions: Sutskever et
al. 2013)."""

from __future__ import annotations

import torch
from torch import nn

from steepest.diagnose.context import DoctorContext
from steepest.diagnose.report import CheckResult, ok, warn

SEQUENCE_MODULES = (nn.RNNBase, nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def setup_findings(ctx: DoctorContext) -> list[tuple[str, str]]:
    """(finding, fix) pairs for the context's model, optimizer and recipe."""
    found = []
    recipe = ctx.recipe
    if recipe is not None:
        schedule = recipe.schedule.name if recipe.schedule is not None else None
        constant = (schedule in (None, "constant")) and getattr(recipe.schedule, "component", None) is None
        stops = recipe.trainer.early_stopping is not None or any(c.name == "reduce_on_plateau" for c in recipe.callbacks)
        if constant and not stops:
            found.append(("the learning rate is constant and nothing lowers it or stops the run",
                          "use a schedule that decays it (schedule: warmup_cosine), reduce_on_plateau, or early stopping"))
    model = ctx.model()
    sequence = sorted({type(m).__name__ for m in model.modules() if isinstance(m, SEQUENCE_MODULES)})
    if sequence and ctx.clip_norm is None and ctx.clip_value is None:
        found.append((f"a {'/'.join(sequence)} network trains without gradient clipping",
                      "set trainer.clip_norm (1.0 is common for RNNs and Transformers): one exploding step can undo the run"))
    optimizer = ctx.make_optimizer(model)
    if type(optimizer) is torch.optim.SGD and all(g.get("momentum", 0) == 0 for g in optimizer.param_groups):
        found.append(("plain SGD without momentum", "use momentum 0.9 (optimizer: momentum or nesterov) or an adaptive optimizer"))
    return found


def training_setup(ctx: DoctorContext) -> CheckResult:
    found = setup_findings(ctx)
    if not found:
        return ok("training_setup", "a decaying or stopped lr, clipping where the network needs it, an optimizer with momentum")
    return warn("training_setup", "; ".join(f for f, _ in found), "; ".join(fix for _, fix in found), findings=[f for f, _ in found])
