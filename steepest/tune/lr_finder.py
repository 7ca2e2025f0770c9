"""The learning-rate range test (Smith 2017; fastai's LR finder) and a coarse log-scale grid over lr (Bengio 2012, "Practical recommendations for gradient-based training").

Range mode: train with an exponentially growing lr, lr_i = lr_0 (lr_N / lr_0)^(i/(N-1)), record the
loss smoothed with a bias-corrected EMA (avg_i = beta avg_{i-1} + (1 - beta) loss_i,
smooth_i = avg_i / (1 - beta^(i+1))), and stop once smooth_i > 4 * min(smooth). Grid mode: for
each lr in 10^{-5.0, -4.5, ..., 0.0}, a short run from the same start; the answer is the largest
lr whose loss does not diverge. Either way the model, optimizer, RNG and trainer state are
restored afterwards, so the finder can run before training without changing it.

Suggestions are pure functions of (lrs, losses):
    steepest  lr where the smoothed loss falls fastest against log10(lr)
    min10     the lr of the minimum smoothed loss, divided by 10
    valley    half-way down the longest decreasing subsequence (fastai's "valley")
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from steepest.errors import ConfigError


def exponential_lrs(start: float, end: float, num: int) -> list[float]:
    if not (0 < start < end):
        raise ConfigError(f"find-lr: need 0 < start ({start:g}) < end ({end:g})")
    return [start * (end / start) ** (i / max(num - 1, 1)) for i in range(num)]


def grid_lrs(low_exp: float = -5.0, high_exp: float = 0.0, step: float = 0.5) -> list[float]:
    n = int(round((high_exp - low_exp) / step)) + 1
    return [10 ** (low_exp + i * step) for i in range(n)]


def smooth_losses(losses: list[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average; a non-finite loss propagates as inf."""
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        if not math.isfinite(loss):
            out.append(math.inf)
            continue
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def _finite(lrs, losses):
    pairs = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if len(pairs) < 2:
        raise ConfigError(_too_few_losses(lrs, losses, len(pairs)))
    return np.log10([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _too_few_losses(lrs, losses, finite: int) -> str:
    """Why a suggestion cannot be made (fewer than two finite losses), and the fix for that cause."""
    bad = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
    if bad is None:  # every loss finite: the test was too short
        return (f"find-lr: the range test recorded {len(losses)} loss(es); a suggestion needs at least two: "
                "give more steps (--steps, default 100)")
    return (f"find-lr: the loss was not finite from step {bad + 1} of the range test on (lr {lrs[bad]:.3g}), leaving {finite} "
            f"finite loss(es), fewer than the two a suggestion needs; lower the start lr (--start, now {lrs[0]:.3g}), "
            "or run `steepest doctor` on the recipe if the loss is not finite even at a tiny lr")


def suggest_steepest(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest (most negative d loss / d log lr) on the way down
    to its minimum: the curve after the minimum is left out, where the average falls only as it
    forgets a spike of the divergence (measured: a spike to 115 at lr 3.6, then 'steepest' at 4.8)."""
    log_lr, loss = _finite(lrs, losses)
    low = int(np.argmin(loss))
    if low < 1:  # the loss never fell below its start: the smallest lr tried
        return float(10 ** log_lr[0])
    slope = np.gradient(loss[: low + 1], log_lr[: low + 1])
    return float(10 ** log_lr[int(np.argmin(slope))])


def suggest_min10(lrs: list[float], losses: list[float]) -> float:
    log_lr, loss = _finite(lrs, losses)
    return float(10 ** log_lr[int(np.argmin(loss))] / 10)


def suggest_valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's "valley" rule (Gugger, fastai v2.4 `valley`): the longest strictly decreasing
    subsequence of the smoothed loss (its points need not be consecutive, so one bump on the way
    down does not cut the descent short), and the lr about half-way through it (index first +
    span/3 + span/6, as fastai). The first 10% of the points (warm-up noise) and the last 5 (the
    blow-up that ends the test) are left out first, as fastai does, when at least 20 remain."""
    log_lr, loss = _finite(lrs, losses)
    n = len(loss)
    if n - n // 10 - 5 >= 20:
        log_lr, loss = log_lr[n // 10: n - 5], loss[n // 10: n - 5]
        n = len(loss)
    length = np.ones(n, dtype=int)  # longest decreasing subsequence ending at i ...
    first = np.arange(n)  # ... and where that subsequence starts
    for i in range(1, n):
        for j in range(i):
            if loss[j] > loss[i] and length[j] + 1 > length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    last = int(np.argmax(length))  # the first end of a longest one
    span = last - int(first[last])
    idx = int(first[last]) + int(span / 3) + int(span / 6)
    return float(10 ** log_lr[idx])


SUGGESTIONS = {"valley": suggest_valley, "steepest": suggest_steepest, "min10": suggest_min10}


@dataclass
class LRFinderResult:
    mode: str
    lrs: list[float]
    losses: list[float]
    smoothed: list[float] = field(default_factory=list)
    suggestions: dict[str, float] = field(default_factory=dict)
    chosen: str = "valley"
    stopped_early: bool = False

    @property
    def suggested_lr(self) -> float:
        return self.suggestions[self.chosen]

    def to_dict(self) -> dict:
        return {**self.__dict__, "suggested_lr": self.suggested_lr}


def _snapshot(trainer) -> dict:
    return {
        "model": copy.deepcopy(trainer.unwrapped_model.state_dict()),
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
        "rng": copy.deepcopy(trainer.rng.state_dict()),  # every generator of the run (global, mixup, augmentation)
        "state": copy.deepcopy(trainer.state),
        "scaler": copy.deepcopy(trainer.engine.scaler.state_dict()) if trainer.engine.scaler else None,
    }


def _restore(trainer, snap: dict) -> None:
    trainer.unwrapped_model.load_state_dict(snap["model"])
    trainer.optimizer.load_state_dict(snap["optimizer"])
    if snap["scaler"] is not None:
        trainer.engine.scaler.load_state_dict(snap["scaler"])
    trainer.state = copy.deepcopy(snap["state"])
    trainer.rng.load_state_dict(snap["rng"])


def _endless_steps(trainer) -> Iterator[list]:
    epoch = 0
    while True:
        yield from trainer.loader.steps(epoch, trainer.options.accumulate)
        epoch += 1


def _set_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    for group, ratio in zip(optimizer.param_groups, ratios):
        group["lr"] = lr * ratio


def _lr_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Keep discriminative per-group learning rates in proportion during the sweep."""
    base = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    return [g.get("initial_lr", g["lr"]) / base for g in optimizer.param_groups]


def range_test(trainer, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100, beta: float = 0.98,
               diverge_factor: float = 4.0, suggest: str = "valley") -> LRFinderResult:
    """Exponential lr sweep on the trainer's model and data; the trainer is left as it was."""
    if suggest not in SUGGESTIONS:
        raise ConfigError(f"find-lr --suggest: unknown method '{suggest}'; valid: {', '.join(SUGGESTIONS)}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 2:
        raise ConfigError(f"find-lr --steps: the range test needs at least 2 steps (100 by default), got {num_steps!r}")
    snap = _snapshot(trainer)
    ratios = _lr_ratios(trainer.optimizer)
    lrs = exponential_lrs(start_lr, end_lr, num_steps)
    used, losses, smoothed = [], [], []
    stopped = False
    try:
        trainer.model.train()
        batches = _endless_steps(trainer)
        avg = 0.0
        best = math.inf
        for i, lr in enumerate(lrs):
            _set_lr(trainer.optimizer, lr, ratios)
            out = trainer.engine.train_step(next(batches))
            loss = float(out.loss)  # a diagnostic: one sync per step is fine here
            used.append(lr)
            losses.append(loss)
            if not math.isfinite(loss):
                smoothed.append(math.inf)
                stopped = True
                break
            avg = beta * avg + (1 - beta) * loss
            s = avg / (1 - beta ** (i + 1))
            smoothed.append(s)
            best = min(best, s)
            if i > 0 and s > diverge_factor * best:
                stopped = True
                break
    finally:
        _restore(trainer, snap)
    result = LRFinderResult("range", used, losses, smoothed, chosen=suggest, stopped_early=stopped)
    result.suggestions = {name: fn(used, smoothed) for name, fn in SUGGESTIONS.items()}
    return result


def grid_search(trainer, lrs: list[float] | None = None, steps_per_lr: int = 30) -> LRFinderResult:
    """The log-scale grid: a short run per lr from the same start; pick the largest lr that
    does not diverge (final loss finite and below the starting loss)."""
    if isinstance(steps_per_lr, bool) or not isinstance(steps_per_lr, numbers.Integral) or steps_per_lr < 1:
        raise ConfigError(f"find-lr --grid-steps: give a whole number >= 1 (30 by default), got {steps_per_lr!r}")
    lrs = lrs or grid_lrs()
    snap = _snapshot(trainer)
    ratios = _lr_ratios(trainer.optimizer)
    finals: list[float] = []
    first_losses: list[float] = []
    try:
        for lr in lrs:
            _restore(trainer, snap)
            _set_lr(trainer.optimizer, lr, ratios)
            batches = _endless_steps(trainer)
            trainer.model.train()
            seen = []
            for _ in range(steps_per_lr):
                out = trainer.engine.train_step(next(batches))
                seen.append(float(out.loss))
                if not math.isfinite(seen[-1]):
                    break
            first_losses.append(seen[0])
            tail = seen[-max(1, len(seen) // 5) :]
            finals.append(float(np.mean(tail)) if all(math.isfinite(v) for v in tail) else math.inf)
    finally:
        _restore(trainer, snap)
    ok = [lr for lr, f, s in zip(lrs, finals, first_losses) if math.isfinite(f) and f < s]
    result = LRFinderResult("grid", list(lrs), finals, list(finals), chosen="largest_stable")
    result.suggestions = {"largest_stable": max(ok) if ok else min(lrs)}
    return result


def figure(result: LRFinderResult):
    """Loss vs lr (log x) with the suggestion marked, as a matplotlib Figure (None without
    matplotlib). Every finite point of the plotted curves lies within the axes: a log y axis when
    the losses span more than 50x (a loss that nears zero), else the finite range with a margin
    (the range test's divergent tail is cut at 4x its best smoothed loss, where the test stops)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = [(lr, s) for lr, s in zip(result.lrs, result.smoothed) if math.isfinite(s)]
    if result.mode == "range":
        ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="loss")
    if finite:
        ax.plot(*zip(*finite), marker="o" if result.mode == "grid" else None, label="smoothed loss" if result.mode == "range" else "final loss")
    lr = result.suggested_lr
    ax.axvline(lr, color="tab:red", ls="--", label=f"suggested ({result.chosen}) {lr:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    if finite:
        values = [v for _, v in finite]
        lo, hi = min(values), max(values)
        if result.mode == "range":
            hi = min(hi, 4 * abs(lo) + 1e-12)
        if lo > 0 and hi / lo > 50:
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.5, hi * 1.5)
        else:
            pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
            ax.set_ylim(lo - pad, hi + pad)
    ax.legend()
    ax.set_title(f"LR {'range test' if result.mode == 'range' else 'grid search'}")
    fig.tight_layout()
    return fig


def plot(result: LRFinderResult, path) -> bool:
    """Save `figure(result)` to `path`; returns False when matplotlib is missing."""
    fig = figure(result)
    if fig is None:
        return False
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
