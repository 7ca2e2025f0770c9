"""Training scalars, collected on the device and sent to the loggers (the `on_log` event) at log
steps only; a logger that writes them to the run's metric store; one that prints evaluations."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch

from steepest.training.batch import batch_size
from steepest.training.callbacks.progress import evaluation_line
from steepest.training.events import Callback


class TrainScalars(Callback):
    """Every `every_n_steps` steps, the scalars of training since the last log step:

        train_loss            mean over the interval's steps (skipped steps excluded)
        lr, lr/<g>            every param group's lr (group 0 unsuffixed); momentum or beta1, weight_decay
        grad_norm             the step's global gradient norm before clipping; grad_norm_clipped after
        update_ratio/<g>      |w_after - w_before| / |w_before| of each param group at the log step
        samples_per_s         training samples (all ranks) per second over the interval; tokens_per_s
                              for token-id inputs (samples x sequence length; the attention mask's
                              ones for dict batches that carry one)
        memory_mb             peak CUDA memory allocated, or the process's peak resident memory
        nonfinite_steps       skipped steps so far (when any)
    and `epoch_seconds` at each epoch's end. The losses and the count of taken steps are summed on
    the device (a skipped step adds nothing: its flag is a device tensor too); the host reads them
    once per interval (the only sync), and the weights are copied only at log steps."""

    name = "metric_logger"  # the key its state has in checkpoints

    def __init__(self, every_n_steps: int = 10):
        self.every_n_steps = every_n_steps
        self.loss_sum: torch.Tensor | None = None
        self.count: torch.Tensor | int = 0  # steps taken (not skipped) since the last log
        self.samples = 0
        self.tokens: torch.Tensor | int | None = None  # tokens since the last log (summed on the device)
        self.clock = self.epoch_clock = time.perf_counter()
        self.before: list[list[torch.Tensor]] | None = None

    def _log_step(self, trainer) -> bool:
        return (trainer.state.step + 1) % self.every_n_steps == 0  # the step about to run ends on a log step

    def on_fit_start(self, trainer) -> None:
        self.clock = self.epoch_clock = time.perf_counter()

    def on_epoch_start(self, trainer) -> None:
        self.epoch_clock = time.perf_counter()

    def on_step_start(self, trainer, batches) -> None:
        self.samples += sum(batch_size(b) for b in batches) * trainer.world_size
        text = bool(getattr(trainer.info, "text", None))
        for b in batches:
            count = _tokens(b, text)
            if count is not None:
                self.tokens = count * trainer.world_size + (self.tokens if self.tokens is not None else 0)

    def on_before_optimizer_step(self, trainer) -> None:
        if self._log_step(trainer):
            with torch.no_grad():
                self.before = [[p.detach().clone() for p in g["params"]] for g in trainer.optimizer.param_groups]

    def on_step_end(self, trainer, output) -> None:
        skipped = output.skipped
        if isinstance(skipped, torch.Tensor):  # on the device: add 0 for a skipped step, no host sync
            loss = output.loss.masked_fill(skipped, 0.0)
            self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
            self.count = self.count + ~skipped
        elif not skipped:
            self.loss_sum = output.loss if self.loss_sum is None else self.loss_sum + output.loss
            self.count += 1
        if trainer.state.step % self.every_n_steps:
            return
        count = int(self.count)  # the log step's host reads
        if not count:
            return
        skipped = bool(skipped)
        values = {"train_loss": float(self.loss_sum) / count}
        values.update(self._hyperparameters(trainer.optimizer))
        if output.grad_norm is not None and not skipped:
            values["grad_norm"] = float(output.grad_norm)
            clip = trainer.options.clip_norm
            if clip is not None:
                values["grad_norm_clipped"] = min(values["grad_norm"], clip)
        if self.before is not None and not skipped:
            values.update(self._update_ratios(trainer.optimizer))
        self.before = None
        now = time.perf_counter()
        rate = self.samples / max(now - self.clock, 1e-9)
        values["samples_per_s"] = rate
        if self.tokens is not None:
            values["tokens_per_s"] = float(self.tokens) / max(now - self.clock, 1e-9)
        values["memory_mb"] = _peak_memory_mb(trainer.device)
        trainer.state.read_nonfinite()
        if trainer.state.nonfinite_total:
            values["nonfinite_steps"] = trainer.state.nonfinite_total
        trainer.state.metrics["train_loss"] = values["train_loss"]
        self.loss_sum, self.count, self.samples, self.tokens, self.clock = None, 0, 0, None, now
        trainer.log(values)

    def on_epoch_end(self, trainer) -> None:
        trainer.log({"epoch_seconds": time.perf_counter() - self.epoch_clock})

    @staticmethod
    def _hyperparameters(optimizer) -> dict[str, float]:
        values = {}
        for i, group in enumerate(optimizer.param_groups):
            values["lr" if i == 0 else f"lr/{i}"] = _number(group["lr"])
        first = optimizer.param_groups[0]
        if "momentum" in first:
            values["momentum"] = _number(first["momentum"])
        elif "betas" in first:
            values["beta1"] = _number(first["betas"][0])
        decays = [g["weight_decay"] for g in optimizer.param_groups if "weight_decay" in g]
        if decays:
            values["weight_decay"] = max(_number(d) for d in decays)  # the decayed groups' value
        return values

    @torch.no_grad()
    def _update_ratios(self, optimizer) -> dict[str, float]:
        out = {}
        for i, (group, before) in enumerate(zip(optimizer.param_groups, self.before)):
            if not before:
                continue
            delta = torch._foreach_sub([p.detach() for p in group["params"]], before)
            step = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(delta)))
            weight = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(before)))
            out[f"update_ratio/{i}"] = float(step / weight.clamp_min(1e-12))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "count": int(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum, self.count = state["loss_sum"], state["count"]


def _number(value) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _tokens(batch: Any, text: bool) -> torch.Tensor | int | None:
    """Tokens in a batch: the attention mask's ones (a dict batch), or the token-id tensor's size
    (text data); None for other data."""
    if isinstance(batch, dict) and isinstance(batch.get("attention_mask"), torch.Tensor):
        return batch["attention_mask"].sum()
    if text and isinstance(batch, (tuple, list)) and isinstance(batch[0], torch.Tensor):
        return batch[0].numel()
    return None


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


class StoreLogger(Callback):
    """Every logged scalar into the run's `MetricStore` (SQLite), on the main process; written to
    disk after each evaluation and at the end."""

    name = "store_logger"

    def __init__(self, store):
        self.store = store

    def on_log(self, trainer, step: int, values: dict[str, float]) -> None:
        if trainer.is_main_process:
            self.store.log(step, values)

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        self.store.flush()

    def on_fit_end(self, trainer) -> None:
        self.store.flush()

    on_exception = lambda self, trainer, exc: self.store.flush()  # noqa: E731


class ConsoleLogger(Callback):
    """One line per evaluation on stderr (main process): epoch, step, the latest train loss and the
    split's metrics, and how training ended. Used when no progress bar shows them."""

    name = "console_logger"

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        if trainer.is_main_process:
            print(evaluation_line(trainer, metrics), file=sys.stderr)

    def on_fit_end(self, trainer) -> None:
        if trainer.is_main_process and trainer.state.stop_reason:
            print(f"stopped: {trainer.state.stop_reason}", file=sys.stderr)
