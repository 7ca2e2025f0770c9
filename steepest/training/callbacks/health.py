"""Gradient and activation health while training: the checklist's "watch the gradients and the
activations of every layer" (Glorot & Bengio 2010 on saturation and vanishing gradients; Pascanu et
al. 2013 on exploding ones), as warnings at the step where it happens rather than after the run.

Every `every_n_steps` steps (and at the first step), for each module that owns parameters:

    vanishing      |g| / |w| below `vanish` (1e-7): the layer no longer learns at any sane lr
    exploding      |g| / |w| above `explode` (10): one step would move the weights by 10 x lr x their norm
    non-finite     a NaN or inf gradient
and, on that step's forward pass, for each activation module:
    saturated      tanh |a| > 0.99, sigmoid a < 0.01 or a > 0.99, on more than `saturated` (0.9) of its outputs
    dead           ReLU units that are 0 on every sample of the batch, more than `dead` (0.9) of them

Each finding is printed once per layer and kind as `warning: step S: ...` and logged as scalars
`health/<kind>` (the number of layers in that state) at the step, so loggers and the report see it.
`findings` keeps them for the caller. Cost: one norm per parameter tensor and one forward hook per
activation module, on the measured steps only.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from steepest.training.events import Callback

SATURATING = (nn.Tanh, nn.Sigmoid)
RELUS = (nn.ReLU, nn.ReLU6)


class GradientHealth(Callback):
    """Warn at the step a layer's gradient vanishes, explodes or turns non-finite, or its
    activations saturate or die (thresholds in the module docstring)."""

    name = "gradient_health"

    def __init__(self, every_n_steps: int = 50, vanish: float = 1e-7, explode: float = 10.0, saturated: float = 0.9, dead: float = 0.9):
        self.every_n_steps, self.vanish, self.explode = max(1, int(every_n_steps)), vanish, explode
        self.saturated, self.dead = saturated, dead
        self.findings: list[dict[str, Any]] = []
        self._reported: set[tuple[str, str]] = set()
        self._hooks: list = []
        self._activations: dict[str, tuple[str, float]] = {}

    def _due(self, trainer) -> bool:
        return trainer.state.step % self.every_n_steps == 0

    def on_step_start(self, trainer, batches) -> None:
        if not self._due(trainer):
            return
        self._activations = {}
        for name, module in trainer.unwrapped_model.named_modules():
            if isinstance(module, SATURATING + RELUS):
                self._hooks.append(module.register_forward_hook(self._watch(name or type(module).__name__)))

    def _watch(self, name: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.numel() == 0:
                return
            a = output.detach().float()
            if isinstance(module, nn.Tanh):
                self._activations[name] = ("saturated", float((a.abs() > 0.99).float().mean()))
            elif isinstance(module, nn.Sigmoid):
                self._activations[name] = ("saturated", float(((a < 0.01) | (a > 0.99)).float().mean()))
            elif a.dim() >= 2:
                self._activations[name] = ("dead", float((a.reshape(len(a), -1) <= 0).all(dim=0).float().mean()))
        return hook

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if not self._due(trainer):
            return
        step = trainer.state.step
        counts = {"vanishing": 0, "exploding": 0, "nonfinite": 0, "saturated": 0, "dead": 0}
        for name, module in trainer.unwrapped_model.named_modules():
            params = [p for p in module.parameters(recurse=False) if p.grad is not None]
            if not params:
                continue
            g = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach().float()) for p in params]))
            w = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach().float()) for p in params]))
            g, w = float(g), float(w)
            ratio = g / w if w > 0 else g
            if not torch.isfinite(torch.tensor(g)):
                self._report(counts, step, name, "nonfinite", g, "a non-finite gradient: lower the lr, clip (trainer.clip_norm) or check the data")
            elif ratio < self.vanish:
                self._report(counts, step, name, "vanishing", ratio, "the layer has stopped learning: check the initialization, "
                             "saturating activations or a normalization layer")
            elif ratio > self.explode:
                self._report(counts, step, name, "exploding", ratio, "clip the gradient norm (trainer.clip_norm) or lower the lr")
        for name, (kind, fraction) in self._activations.items():
            limit = self.saturated if kind == "saturated" else self.dead
            if fraction > limit:
                fix = ("rescale the inputs or the initialization (xavier for tanh/sigmoid), or use ReLU" if kind == "saturated"
                       else "lower the lr, use a positive ReLU bias (model.init.relu_bias) or LeakyReLU")
                self._report(counts, step, name, kind, fraction, fix)
        trainer.log({f"health/{k}": float(v) for k, v in counts.items()})

    def _report(self, counts: dict, step: int, layer: str, kind: str, value: float, fix: str) -> None:
        counts[kind] += 1
        self.findings.append({"step": step, "layer": layer, "kind": kind, "value": value})
        if (layer, kind) in self._reported:
            return
        self._reported.add((layer, kind))
        what = {"vanishing": f"gradient/weight norm ratio {value:.1e}", "exploding": f"gradient/weight norm ratio {value:.3g}",
                "nonfinite": "gradient is not finite", "saturated": f"{value:.0%} of its outputs saturated",
                "dead": f"{value:.0%} of its units dead on the whole batch"}[kind]
        warnings.warn(f"step {step}: layer {layer}: {kind} ({what}); {fix}", stacklevel=2)

    def on_fit_end(self, trainer) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def state_dict(self) -> dict[str, Any]:
        return {"reported": sorted(map(list, self._reported))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reported = {tuple(x) for x in state.get("reported", [])}
