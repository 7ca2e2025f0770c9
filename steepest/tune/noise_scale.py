"""Track the gradient noise scale B_simple during training (steepest.tune.batch_size), two ways:

    noise_scale        fresh probe batches of two sizes every `every_n_steps` (2 x iterations extra
                       forward/backward passes per estimate; independent of the run's batch size)
    noise_scale_steps  the gradients the steps compute anyway (the step's full gradient as the big
                       batch, its first micro-batch or a small probe slice as the small one): nearly free
"""

from __future__ import annotations

import math

import torch

from steepest.training.batch import batch_size
from steepest.training.events import Callback
from steepest.training.precision import autocast
from steepest.tune.batch_size import estimate_noise_scale, noise_estimates, sampler_from


class NoiseScaleMonitor(Callback):
    """Every `every_n_steps`, estimate B_simple on probe batches of the training data (model in eval
    mode, so dropout draws no random numbers and the run stays reproducible) and log it as
    `noise_scale` with the regime of the current batch size. Costs 2 x `iterations` extra
    forward/backward passes per estimate; nothing runs on the other steps."""

    name = "noise_scale"

    def __init__(self, every_n_steps: int = 200, b_small: int = 16, b_big: int = 256, iterations: int = 5):
        self.every_n_steps, self.b_small, self.b_big, self.iterations = every_n_steps, b_small, b_big, iterations
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, trainer, output) -> None:
        step = trainer.state.step
        if step % self.every_n_steps:
            return
        model = trainer.unwrapped_model
        was = model.training
        model.eval()
        try:
            n = trainer.loader.num_samples
            est = estimate_noise_scale(model, trainer.loss_fn, sampler_from(trainer.loader.x, trainer.loader.y),
                                       min(self.b_small, n // 2), min(self.b_big, n), self.iterations, seed=step,
                                       batch_size=trainer.loader.batch_size)
        finally:
            model.train(was)
        self.history.append((step, est.b_simple))
        trainer.state.metrics["noise_scale"] = est.b_simple
        trainer.log({"noise_scale": est.b_simple})

    def state_dict(self):
        return {"history": [list(h) for h in self.history]}

    def load_state_dict(self, state):
        self.history = [tuple(h) for h in state.get("history", [])]


class NoiseScaleCallback(Callback):
    """B_simple during training from the gradients the steps compute anyway, every `every_n_steps`
    steps, logged as `noise_scale` every `log_every_n_steps` (the only host sync; the estimates stay
    on the device in between).

    Big batch: the step's complete gradient at `on_before_optimizer_step` (accumulated, all-reduced,
    unscaled): B_big = the step's samples x world size.
    Small batch: the events expose no per-micro-batch gradient (the engine accumulates into `.grad`
    in place), so
      - with accumulation (and no fp16 loss scaling), a post-accumulate-grad hook installed at
        `on_step_start` of a measured step reads `p.grad` right after the first micro-batch's
        backward, where it is (n_1 / n_step) g_1 (the engine weights each micro-batch's loss by its
        share): the micro-batch is the small batch, at no extra compute;
      - otherwise a probe: the gradient of the step's first `probe_size` samples by
        `torch.autograd.grad` (`.grad` untouched) in a forked RNG (dropout draws do not change the
        run), one extra forward/backward of a slice every `every_n_steps` steps.
    Batches are drawn without replacement from the training set, so the estimates carry the
    finite-population correction (`noise_estimates`). Estimates are averaged as EMAs of |G|^2 and tr(Sigma) (their bias corrections cancel in the
    ratio) and B_simple is their ratio. Batch transforms (mixup) are not applied to the probe.

        callbacks:
          - {name: noise_scale_steps, every_n_steps: 10, log_every_n_steps: 100}
    """

    name = "noise_scale_steps"

    def __init__(self, every_n_steps: int = 10, log_every_n_steps: int = 100, probe_size: int | None = None, beta: float = 0.9):
        self.every_n_steps, self.log_every_n_steps, self.probe_size, self.beta = every_n_steps, log_every_n_steps, probe_size, beta
        self.history: list[tuple[int, float]] = []
        self._ema: torch.Tensor | None = None  # [|G|^2, tr Sigma], float64 on the device
        self._hooks: list = []
        self._small: torch.Tensor | None = None
        self._measure = False

    def on_step_start(self, trainer, batches) -> None:
        self._measure = trainer.state.step % self.every_n_steps == 0
        if not self._measure:
            return
        first = batches[0]
        if not (isinstance(first, (tuple, list)) and len(first) == 2):  # measured on (x, y) batches only
            self._measure = False
            return
        self._n_step, self._n_first = sum(batch_size(b) for b in batches), batch_size(first)
        self._probe = None
        if len(batches) > 1 and trainer.options.precision != "fp16":  # no loss scaling to undo
            self._small = torch.zeros((), dtype=torch.float64, device=first[0].device)
            seen: set[int] = set()

            def hook(p: torch.Tensor) -> None:
                if id(p) not in seen:  # only the first micro-batch's backward
                    seen.add(id(p))
                    self._small += p.grad.detach().double().pow(2).sum()

            self._hooks = [p.register_post_accumulate_grad_hook(hook) for p in trainer.unwrapped_model.parameters() if p.requires_grad]
        else:
            n = self.probe_size or max(1, self._n_step // 8)
            self._probe = (first[0][:n], first[1][:n])

    def on_before_optimizer_step(self, trainer) -> None:
        if not self._measure:
            return
        self._remove_hooks()
        params = [p for p in trainer.unwrapped_model.parameters() if p.requires_grad]
        big = sum(p.grad.detach().double().pow(2).sum() for p in params if p.grad is not None)
        b_big = self._n_step * trainer.world_size
        if self._probe is None:
            b_small, small = self._n_first, self.first_grad_sq(trainer)
        else:
            b_small, small = len(self._probe[0]), self._probe_grad_sq(trainer, params)
        if b_small >= b_big:
            return
        grad_sq, trace = noise_estimates(small, big, b_small, b_big, trainer.loader.num_samples)
        estimate = torch.stack([grad_sq, trace])
        previous = torch.zeros_like(estimate) if self._ema is None else self._ema.to(estimate)
        updated = self.beta * previous + (1 - self.beta) * estimate
        # a step the trainer skips as non-finite (decided on the device, after this hook) leaves the average as it was
        self._ema = torch.where(torch.isfinite(estimate).all(), updated, previous)

    def first_grad_sq(self, trainer) -> torch.Tensor:
        """|g_small|^2: the squared norm of the first micro-batch's own mean-loss gradient (float64, on
        the device). The engine scaled that micro-batch's loss by its share w of the step (of the
        samples, or of the loss's own normalizer: class weights, counted tokens), so it is |w g|^2 / w^2."""
        weight = trainer.engine.micro_batch_weights[0]
        return self._small / (weight * weight)

    def _probe_grad_sq(self, trainer, params) -> torch.Tensor:
        x, y = self._probe
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), autocast(trainer.device, trainer.options.precision):
            loss = trainer.loss_fn(trainer.unwrapped_model(x), y)
        grads = torch.autograd.grad(loss.float(), params, allow_unused=True)
        return sum(g.double().pow(2).sum() for g in grads if g is not None)

    def on_step_end(self, trainer, output) -> None:
        self._remove_hooks()
        step = trainer.state.step
        if self._ema is None or step % self.log_every_n_steps:
            return
        grad_sq, trace = self._ema.tolist()  # the one host sync, every log_every_n_steps steps
        b = trace / grad_sq if grad_sq > 0 else math.inf
        self.history.append((step, b))
        trainer.state.metrics["noise_scale"] = b
        if math.isfinite(b):
            trainer.log({"noise_scale": b})

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def state_dict(self):
        return {"history": [list(h) for h in self.history], "ema": None if self._ema is None else self._ema.tolist()}

    def load_state_dict(self, state):
        self.history = [tuple(h) for h in state.get("history", [])]
        ema = state.get("ema")
        self._ema = None if ema is None else torch.tensor(ema, dtype=torch.float64)
