"""Checks on the model at initialization: shapes, loss/API match, architecture smells, activations."""

from __future__ import annotations

import math

import torch
from torch import nn

from steepest.diagnose.report import fail, ok, skip, warn
from steepest.nn.stats import activation_stats

NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def forward_shape(ctx):
    model = ctx.model()
    x, _ = ctx.batch(8)
    try:
        out = model(x)
    except Exception as exc:  # the check reports whatever the user's model raises
        return fail("forward_shape", f"the model cannot consume a batch of shape {tuple(x.shape)}: {exc}",
                    "make the model's input layer match the data's input_shape")
    expected = (len(x), ctx.data.info.num_outputs)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected or not out.is_floating_point():
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return fail("forward_shape", f"outputs {got}, expected {expected} floating point",
                    "the last layer must produce one value per class (or target) for every sample", expected=list(expected))
    return ok("forward_shape", f"batch {tuple(x.shape)} -> outputs {tuple(out.shape)} {str(out.dtype).replace('torch.', '')}")


def _last_module(model: nn.Module) -> nn.Module:
    leaves = [m for m in model.modules() if len(list(m.children())) == 0]
    return leaves[-1] if leaves else model


def loss_api(ctx):
    """Probabilities fed to a logits loss, NLL on raw logits, sigmoid before BCE-with-logits."""
    model = ctx.model()
    last = _last_module(model)
    name = ctx.loss_name
    x, _ = ctx.batch(16)
    with torch.no_grad():
        out = model(x).double()
    rows_are_probs = out.dim() == 2 and out.shape[1] > 1 and bool((out >= 0).all() and (out.sum(1) - 1).abs().max() < 1e-4)
    rows_are_logprobs = out.dim() == 2 and out.shape[1] > 1 and bool((out.logsumexp(1)).abs().max() < 1e-4)
    if name in ("cross_entropy", "focal", "kl_distillation") and (isinstance(last, nn.Softmax) or rows_are_probs):
        return fail("loss_api", f"the model outputs probabilities (ends in {type(last).__name__}) but {name} expects logits",
                    "remove the final Softmax: the loss applies log-softmax itself")
    if name == "cross_entropy" and isinstance(last, nn.LogSoftmax):
        return warn("loss_api", "the model ends in LogSoftmax before cross_entropy (log-softmax applied twice)",
                    "remove the LogSoftmax or use loss.name: nll")
    if name == "nll" and not rows_are_logprobs:
        return fail("loss_api", "nll expects log-probabilities but the outputs are not normalized",
                    "end the model with LogSoftmax or use loss.name: cross_entropy on raw logits")
    if name in ("bce_with_logits", "bce_dice", "focal") and isinstance(last, nn.Sigmoid):
        return fail("loss_api", f"the model ends in Sigmoid but {name} applies the sigmoid itself",
                    "remove the final Sigmoid (keep logits)")
    return ok("loss_api", f"{name or 'the loss'} receives {type(last).__name__} outputs")


def initial_loss(ctx):
    """At initialization the loss should be what a know-nothing predictor scores."""
    model = ctx.model().eval()
    x, y = ctx.batch(512)
    with torch.no_grad():
        measured = float(ctx.loss_fn(model(x), y))
    if ctx.task == "classification":
        p = torch.bincount(ctx.data.train.y.long(), minlength=ctx.data.info.num_classes).double()
        p = p[p > 0] / p.sum()
        expected = float(-(p * p.log()).sum())
        what = f"label entropy {expected:.3f} (ln K = {math.log(ctx.data.info.num_classes):.3f})"
    elif ctx.task == "regression":
        expected = float(ctx.data.train.y.double().var())
        what = f"target variance {expected:.3f}"
    else:
        pos = float(ctx.data.train.y.double().mean())
        expected = -(pos * math.log(max(pos, 1e-9)) + (1 - pos) * math.log(max(1 - pos, 1e-9))) if 0 < pos < 1 else math.log(2)
        what = f"label entropy {expected:.3f}"
    ev = {"measured": measured, "expected": expected}
    if not math.isfinite(measured):
        return fail("initial_loss", f"initial loss is {measured}", "look for NaN in the data or the model (see the nonfinite check)", **ev)
    if ctx.task == "classification" and expected < 0.9 * math.log(ctx.data.info.num_classes) \
            and measured > 1.5 * expected + 0.2 and abs(measured - math.log(ctx.data.info.num_classes)) < 0.15 * math.log(ctx.data.info.num_classes):
        return warn("initial_loss", f"initial loss {measured:.3f} is the uniform guess ln K, but the labels are imbalanced ({what})",
                    "start from the class priors: output bias = log(prior) (model.output_bias: auto)", **ev)
    if measured > 3 * expected + 0.5:
        return fail("initial_loss", f"initial loss {measured:.3f} vs {what}",
                    ctx.input_cause("the outputs are too large at initialization: use default init or scale down the last layer"), **ev)
    if measured > 1.5 * expected + 0.2:
        return warn("initial_loss", f"initial loss {measured:.3f} vs {what}",
                    ctx.input_cause("the model starts confidently wrong; check the last layer's initialization and bias"), **ev)
    return ok("initial_loss", f"initial loss {measured:.3f} vs {what}", **ev)


def dropout_with_norm(ctx):
    model = ctx.model()
    drop = [n for n, m in model.named_modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    bn = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if drop and bn:
        return warn("dropout_with_norm", f"Dropout ({', '.join(drop[:3])}) and BatchNorm ({', '.join(bn[:3])}) in one model",
                    "dropout before BatchNorm shifts its variance between train and eval: drop one, or put dropout only after the last BatchNorm")
    return ok("dropout_with_norm", "no Dropout/BatchNorm combination")


def batchnorm_batch_size(ctx):
    model = ctx.model()
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return ok("batchnorm_batch_size", "no BatchNorm layers")
    if ctx.batch_size < 32:
        return warn("batchnorm_batch_size", f"BatchNorm with batch size {ctx.batch_size} (< 32): noisy batch statistics",
                    "use GroupNorm or LayerNorm (model.norm: groupnorm) or a larger batch")
    return ok("batchnorm_batch_size", f"BatchNorm with batch size {ctx.batch_size}")


def sigmoid_hidden(ctx):
    model = ctx.model()
    leaves = [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]
    hidden = [n for n, m in leaves[:-1] if isinstance(m, nn.Sigmoid)]
    if hidden:
        sat = ctx.saturating()
        tails = max((sat.get(n, 0.0) for n in hidden), default=0.0)
        where = f"; on the recipe's inputs up to {tails:.0%} of them sit in the flat tails" if tails > 0.05 else ""
        return warn("sigmoid_hidden", f"sigmoid activations in hidden layers ({', '.join(hidden[:4])}): gradients shrink by <= 1/4 per layer{where}",
                    "use ReLU/GELU (or tanh) in hidden layers (model.activation: relu); keep sigmoid for gates and outputs", saturated=sat)
    return ok("sigmoid_hidden", "no hidden sigmoid activations")


ACTS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU)


def activations(ctx):
    """Per-layer activation mean/std at initialization. Xavier (tanh) and Kaiming (ReLU) init are
    built to keep the std roughly constant with depth; a std that collapses or grows by 10x across
    the layers (or leaves [1e-3, 1e2] anywhere) means the init does not match the activation."""
    model = ctx.model()
    x, _ = ctx.batch(256)
    kinds = {a.__name__ for a in ACTS}
    acts = [(name, mean, std) for name, kind, mean, std in activation_stats(model, x) if kind in kinds]
    if not acts:
        return skip("activations", "no activation layers found")
    stds = [s for _, _, s in acts]
    ev = {name: {"mean": mean, "std": std} for name, mean, std in acts}
    if min(stds) < 1e-3 or max(stds) > 1e2 or not all(math.isfinite(s) for s in stds):
        worst = min(acts, key=lambda a: a[2]) if min(stds) < 1e-3 else max(acts, key=lambda a: a[2])
        return fail("activations", f"activation std {worst[2]:.2g} at {worst[0]} (vanishing/exploding at init)",
                    ctx.input_cause("use Kaiming init for ReLU and Xavier for tanh (model.init), or add normalization layers"), **ev)
    gain = stds[-1] / stds[0]
    if len(stds) > 2 and not 0.1 < gain < 10:
        return warn("activations", f"activation std goes from {stds[0]:.2g} to {stds[-1]:.2g} across {len(stds)} layers",
                    ctx.input_cause("deep nets need Kaiming (ReLU) / Xavier (tanh) init or normalization to keep the std constant"), **ev)
    return ok("activations", f"activation std {min(stds):.2g}..{max(stds):.2g} across {len(stds)} layers", **ev)


def dead_relu(ctx):
    model = ctx.model()
    x, _ = ctx.batch(256)
    fractions = {}
    hooks = [m.register_forward_hook(lambda mod, i, out, n=n: fractions.__setitem__(n, float((out.reshape(len(out), -1) <= 0).all(0).double().mean())))
             for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model.eval()
        model(x)
    for h in hooks:
        h.remove()
    if not fractions:
        return skip("dead_relu", "no ReLU layers")
    worst = max(fractions, key=fractions.get)
    if fractions[worst] > 0.5:
        return warn("dead_relu", f"{fractions[worst]:.0%} of units in {worst} never activate on a batch",
                    "use LeakyReLU/GELU, Kaiming init, a lower lr, or a small positive bias (steepest.nn.relu_bias)", **fractions)
    return ok("dead_relu", f"at most {fractions[worst]:.0%} dead units per ReLU layer", **fractions)
