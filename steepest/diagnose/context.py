"""What the checks look at: the recipe's model (fresh copies on demand), data, loss and optimizer,
and the cheap probes several checks share to name a likely cause (input scale, saturating hidden
activations, the chance loss), each computed once per context."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steepest.data.containers import DataBundle
from steepest.training.engine import Engine


@dataclass
class DoctorContext:
    make_model: Callable[[], nn.Module]  # a fresh, freshly initialized model (seeded)
    data: DataBundle
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    batch_size: int
    lr: float
    device: torch.device
    loss_name: str = ""
    seed: int = 0
    clip_norm: float | None = None  # the recipe's trainer.clip_norm / clip_value, applied by fit(optimizer="recipe")
    clip_value: float | None = None
    create_graph: bool = False  # the recipe's optimizer needs backward(create_graph=True) (AdaHessian)
    recipe: Any = None  # the Recipe, when the doctor runs on one (the setup checks read its schedule and callbacks)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def task(self) -> str:
        return self.data.info.task

    def batch(self, n: int | None = None, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        part = getattr(self.data, split)
        n = min(n or self.batch_size, len(part))
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(part), generator=g)[:n].to(part.x.device)
        return part.x[idx], part.y[idx]

    def model(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return self.make_model().to(self.device)

    def fit(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float | None = None,
            optimizer: str = "adam", batch: int | None = None, stop: Callable[[], bool] | None = None,
            check_every: int = 25) -> list[float]:
        """Up to `steps` optimizer steps of the training engine (Adam unless `optimizer="recipe"`) on
        (x, y), on random batches of `batch` when given; returns the loss per step. Losses stay on
        the device and are read every `check_every` steps (one sync), when the run also ends early
        on a non-finite loss or once `stop()` is true. `optimizer="recipe"` is the recipe as written:
        its optimizer and parameter groups, its gradient clipping, at its lr unless `lr` is given
        (then `lr` stands for optimizer.lr, `self.lr`: every group's lr is scaled by lr / self.lr,
        keeping per-group scales such as finetune.lr_decay)."""
        recipe = optimizer != "adam"
        opt = self.make_optimizer(model) if recipe else torch.optim.Adam(model.parameters(), lr=lr or 1e-3)
        if lr is not None and recipe:
            base = self.lr or opt.param_groups[0]["lr"]
            for g in opt.param_groups:
                g["lr"] = lr * g["lr"] / base if base else lr
        model.train()
        engine = Engine(model, opt, self.loss_fn, device=self.device, check_finite=False,  # the Trainer's step, no skipping
                        clip_norm=self.clip_norm if recipe else None, clip_value=self.clip_value if recipe else None,
                        create_graph=self.create_graph and recipe)
        losses: list[torch.Tensor] = []
        gen = torch.Generator().manual_seed(self.seed + 1)
        for step in range(1, steps + 1):
            if batch is not None and batch < len(x):
                idx = torch.randint(len(x), (batch,), generator=gen).to(x.device)
                xb, yb = x[idx], y[idx]
            else:
                xb, yb = x, y
            losses.append(engine.train_step([(xb, yb)]).loss)
            if step % check_every == 0 or step == steps:
                if not bool(torch.isfinite(losses[-1])) or (stop is not None and stop()):
                    break
        values = torch.stack(losses).double().tolist() if losses else []
        bad = next((i for i, v in enumerate(values) if v != v or abs(v) == float("inf")), None)
        return values if bad is None else values[: bad + 1]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val", inputs: torch.Tensor | None = None) -> float:
        part = getattr(self.data, split)
        model.eval()
        x = part.x if inputs is None else inputs
        loss = float(self.loss_fn(model(x), part.y))
        model.train()
        return loss

    # -- shared probes (cached: several checks consult them) ------------------------------------
    def input_scale(self) -> dict[str, Any]:
        """How far the inputs the model receives (after the recipe's normalization) are from unit
        scale: `rms` over the training inputs (up to 20,000 rows; 1 after data.normalize: standard), `offset`
        the share of that magnitude that is per-feature mean (0 when centered), and `spread` the
        largest per-feature std over the median one (a few features dominating). `verdict` is
        ok / warn / fail, `text` one line for summaries and `fix` the remedy. Token ids are skipped."""
        if "input_scale" in self._cache:
            return self._cache["input_scale"]
        x = self.data.train.x
        if self.data.info.kind == "text" or len(x) < 2 or not x.is_floating_point():
            self._cache["input_scale"] = {"verdict": "ok", "text": "token ids (not scaled)", "fix": ""}
            return self._cache["input_scale"]
        mean, std = self._feature_stats()
        x = self._sample()
        rms = float(x.pow(2).mean().sqrt())
        if not math.isfinite(rms):
            self._cache["input_scale"] = {"verdict": "ok", "text": "non-finite inputs (see the nonfinite check)", "fix": ""}
            return self._cache["input_scale"]
        offset = float(mean.pow(2).mean().sqrt()) / max(rms, 1e-30)
        varying = std[std > 1e-8 * float(std.max()) + 1e-30]
        spread = float(varying.max() / varying.median()) if len(varying) else 1.0
        problems, verdict = [], "ok"
        if rms > 30 or rms < 0.01 or spread > 1000:
            verdict = "fail"
        elif rms > 3 or rms < 0.1 or spread > 30 or offset > 0.9:
            verdict = "warn"
        if rms > 3 or rms < 0.1:
            problems.append(f"far from unit scale (rms {rms:.3g})")
        if offset > 0.9:
            problems.append(f"uncentered (the feature means are {offset:.0%} of the magnitude)")
        if spread > 30:
            problems.append(f"of very different scales (largest feature std {spread:.3g}x the median)")
        raw = self.data.info.x_norm is None
        text = ("the inputs the model receives are " + " and ".join(problems) if problems
                else f"inputs rms {rms:.2f}, feature means {offset:.0%} of it")
        fix = ("standardize the inputs: set data.normalize: standard (mean 0, std 1 per feature, fitted on the training split)"
               if raw else "standardize the inputs the model receives (data.normalize: standard, or fix the custom preprocessing)")
        out = {"verdict": verdict, "text": text, "fix": fix if verdict != "ok" else "",
               "rms": rms, "offset": offset, "spread": spread, "normalized": not raw}
        self._cache["input_scale"] = out
        return out

    def input_cause(self, fix: str) -> str:
        """`fix`, led by the input scale when the inputs are off (the likelier cause of large
        outputs, activations and gradients than the initialization or the lr)."""
        scale = self.input_scale()
        return f"{scale['text']}, the likely cause: {scale['fix']}; otherwise {fix}" if scale["verdict"] != "ok" else fix

    def _sample(self, rows: int = 20_000) -> torch.Tensor:
        """Up to `rows` training inputs (seeded), flattened, in float64: enough for feature statistics."""
        if "sample" not in self._cache:
            x = self.data.train.x
            if len(x) > rows:
                x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[:rows].to(x.device)]
            self._cache["sample"] = x.double().flatten(1)
        return self._cache["sample"]

    def _feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if "stats" not in self._cache:
            x = self._sample()
            self._cache["stats"] = (x.mean(0), x.std(0))
        return self._cache["stats"]

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """`x` standardized per feature with the training split's statistics (a what-if probe)."""
        mean, std = self._feature_stats()
        return ((x.double().flatten(1) - mean) / std.clamp_min(1e-8)).to(x.dtype).reshape(x.shape)

    def saturating(self) -> dict[str, float]:
        """Hidden sigmoid/tanh layers (not the output) -> the fraction of their outputs on a training
        batch that sit in the flat tails (sigmoid < 0.02 or > 0.98; |tanh| > 0.96: slope < 8%)."""
        if "saturating" not in self._cache:
            model = self.model().eval()
            leaves = [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]
            fractions: dict[str, float] = {}

            def hook(mod, inp, out, name):
                tail = (out - 0.5).abs() > 0.48 if isinstance(mod, nn.Sigmoid) else out.abs() > 0.96
                fractions[name] = float(tail.double().mean())

            handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n))
                       for n, m in leaves[:-1] if isinstance(m, (nn.Sigmoid, nn.Tanh))]
            if handles:
                with torch.no_grad():
                    model(self.batch(256)[0])
            for h in handles:
                h.remove()
            self._cache["saturating"] = fractions
        return self._cache["saturating"]

    def chance_loss(self) -> float | None:
        """The loss of a know-nothing predictor on the training split, through the recipe's own loss
        (label smoothing and class weights included): the better of two constant outputs, the label
        prior (log-prior logits; log-odds for binary and multilabel) and the uniform guess (zero
        logits: the best constant under inverse-frequency class weights), or for regression the
        target mean and median. None when the loss does not take such outputs."""
        if "chance" not in self._cache:
            y = self.data.train.y
            n, task = len(y), self.task
            try:
                if task == "classification":
                    k = self.data.info.num_classes or self.data.info.num_outputs
                    prior = torch.bincount(y.reshape(-1).long().cpu(), minlength=k).double().clamp_min(0.5)
                    constants = [(prior / prior.sum()).log(), torch.zeros(k, dtype=torch.float64)]
                elif task in ("binary", "multilabel"):
                    p = y.double().reshape(n, -1).mean(0).clamp(1e-6, 1 - 1e-6).cpu()
                    constants = [(p / (1 - p)).log(), torch.zeros_like(p)]
                else:
                    t = y.double().reshape(n, -1).cpu()
                    constants = [t.mean(0), t.median(0).values]
                with torch.no_grad():
                    values = [float(self.loss_fn(c.expand(n, -1).float().contiguous().to(self.device), y)) for c in constants]
                value = min(values)
                self._cache["chance"] = value if math.isfinite(value) else None
            except Exception:  # a custom loss that wants other outputs: no chance level to compare with
                self._cache["chance"] = None
        return self._cache["chance"]

    @contextlib.contextmanager
    def threads(self) -> Iterator[None]:
        """One intra-op thread for small models on the CPU: the doctor's batches of a sub-million-
        parameter model make each op a few microseconds, where thread hand-offs cost more than they
        save (measured on 2 busy cores: the default doctor 3-5x faster)."""
        with torch.random.fork_rng(devices=[]):
            small = self.device.type == "cpu" and sum(p.numel() for p in self.make_model().parameters()) < 1_000_000
        before = torch.get_num_threads()
        if small:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
