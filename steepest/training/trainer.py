"""The Trainer: a loop that fits on a screen; everything else hangs off events (see events.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steepest.data.containers import DataInfo, Split
from steepest.data.loader import DeviceLoader, eval_batches
from steepest.errors import ConfigError, DataError, TrainingError
from steepest.schedules import apply as apply_schedule
from steepest.schedules.basic import Constant
from steepest.training import distributed
from steepest.training.batch import Forward, batch_size, logits_of, target_of
from steepest.training.distributed import DistContext
from steepest.training.engine import Engine, StepOutput
from steepest.training.events import EVENTS, Callback
from steepest.training.metrics import meter_for
from steepest.training.state import RandomState, TrainState

BUDGET_DONE = "completed the step budget"


@dataclass(frozen=True)
class TrainerOptions:
    """How the Trainer runs. The budget is `max_epochs` and/or `max_steps` (whichever ends first);
    `accumulate` micro-batches make one optimizer step; `precision` is fp32, bf16 or fp16 (autocast,
    with a GradScaler for fp16); at most one of `clip_norm` (global L2 norm) and `clip_value`;
    `skip_nonfinite` skips a step whose loss is NaN/inf on the device, with no host sync
    (`steepest.training.skip`; the step still counts for the schedules and the data order;
    `skip_on_device`: None selects on the device except on the CPU, where the host reads the flag
    for free and does not run the step; True selects on the device there too), and
    `max_nonfinite_steps` such steps in a row stop the run with a TrainingError, raised when the
    counters are next read (log steps, epoch ends, checkpoints, the end: possibly some steps after
    the limit was reached); `create_graph` keeps the backward graph (second-order optimizers);
    train scalars are logged every `log_every_n_steps` steps; evaluation runs in batches of
    `eval_batch_size`; `cuda_graphs`: the model the loop calls was compiled with CUDA graphs
    (torch.compile mode "reduce-overhead"), so every forward starts a new graph step
    (torch.compiler.cudagraph_mark_step_begin)."""

    max_epochs: int | None = None
    max_steps: int | None = None
    accumulate: int = 1
    precision: str = "fp32"
    clip_norm: float | None = None
    clip_value: float | None = None
    skip_nonfinite: bool = True
    skip_on_device: bool | None = None
    max_nonfinite_steps: int = 5
    create_graph: bool = False
    log_every_n_steps: int = 10
    eval_batch_size: int = 256
    cuda_graphs: bool = False

    def __post_init__(self):
        if self.max_epochs is None and self.max_steps is None:
            raise ValueError("give max_epochs or max_steps (the training budget)")
        for key in ("max_epochs", "max_steps", "accumulate", "max_nonfinite_steps", "log_every_n_steps", "eval_batch_size"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be a positive whole number, got {value!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("set clip_norm or clip_value, not both")


def step_budget(steps_per_epoch: int | None, options: TrainerOptions) -> int:
    """Optimizer steps the run takes: max_steps or max_epochs x steps per epoch, whichever is fewer.
    A stream of unknown length (`steps_per_epoch` None) needs `max_steps`."""
    if steps_per_epoch is None:
        if not options.max_steps:
            raise ConfigError("the training data is a stream of unknown length: give a step budget (trainer.max_steps / fit(max_steps=...))")
        return int(options.max_steps)
    epochs_budget = options.max_epochs * steps_per_epoch if options.max_epochs else math.inf
    return int(min(options.max_steps or math.inf, epochs_budget))


class Trainer:
    """Train `model` with `optimizer` and `loss_fn` on the micro-batches of `loader`.

    `loader` is a `DeviceLoader` (tensors on the device: the fast path) or a `SampleLoader` (a
    Dataset through torch's DataLoader); batches are (x, y), (x1, ..., y) or dicts, turned into a
    loss by `steepest.training.batch` (or by `forward(model, batch, loss_fn) -> (outputs, loss)`,
    a custom step). `eval_data` maps split names ("val", "test") to `Split`s or loaders with
    `eval_batches(batch_size)` that `evaluate(split)` reads; `info` (the data's task and classes)
    picks the metrics (the loss alone when None). `schedules` maps a
    hyperparameter key ("lr", "momentum", "weight_decay", "beta1") to a pure function of the step:
    value = initial value x schedule(step), written before every step (lr is constant when not
    given). `batch_transform(x, y)` runs on training micro-batches with the generators of `rng`.
    Callbacks run in the order given. Nothing here is edited after construction.

        >>> trainer = Trainer(model, optimizer, loss_fn, DeviceLoader(x, y, 64),
        ...                   options=TrainerOptions(max_epochs=5), eval_data={"val": val})  # doctest: +SKIP
        >>> trainer.fit(); trainer.evaluate("val")                                            # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        loader: DeviceLoader,
        *,
        options: TrainerOptions,
        eval_data: Mapping[str, Split] | None = None,
        info: DataInfo | None = None,
        schedules: Mapping[str, Callable[[int], float]] | None = None,
        callbacks: Sequence[Callback] = (),
        batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        rng: RandomState | None = None,
        dist: DistContext | None = None,
        recipe: dict[str, Any] | None = None,
        forward: Forward | None = None,
        target_key: str = "labels",
    ):
        self.model, self.optimizer, self.loss_fn, self.loader = model, optimizer, loss_fn, loader
        self.unwrapped_model = getattr(model, "module", model)
        self.device = next(iter(self.unwrapped_model.parameters()), torch.empty(0)).device
        self.options, self.info, self.eval_data = options, info, dict(eval_data or {})
        self.schedules = {"lr": Constant(), **(schedules or {})}
        self.callbacks = list(callbacks)
        self.rng, self.dist, self.recipe = rng or RandomState(), dist or DistContext(), recipe or {}
        self.rank, self.world_size, self.is_main_process = self.dist.rank, self.dist.world_size, self.dist.rank == 0
        self.sharded = distributed.is_sharded(self.unwrapped_model) if self.dist.enabled else False
        self.engine = Engine(model, optimizer, loss_fn, device=self.device, precision=options.precision,
                             clip_norm=options.clip_norm, clip_value=options.clip_value, create_graph=options.create_graph,
                             check_finite=options.skip_nonfinite, skip_on_device=options.skip_on_device, batch_transform=batch_transform,
                             before_optimizer_step=lambda: self._fire("on_before_optimizer_step"), dist=self.dist,
                             forward=forward, target_key=target_key, cuda_graphs=options.cuda_graphs)
        self.steps_per_epoch = loader.steps_per_epoch(options.accumulate)
        self.total_steps = step_budget(self.steps_per_epoch, options)
        self.max_epochs = options.max_epochs or (math.ceil(self.total_steps / self.steps_per_epoch) if self.steps_per_epoch else None)
        self.state = TrainState()
        self.evaluated_at: dict[str, int] = {}  # split -> the step whose weights it was last evaluated on (this process)
        self._longest_row: torch.Tensor | None = None  # the longest row of skipped steps so far (on the device)
        self._agree_now = False  # set by agree_on_stop_now: decide on stopping across ranks after this step

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        s = self.state
        self.model.train()
        self._fire("on_fit_start")
        try:
            while not s.stop_reason and s.step < self.total_steps:
                self._fire("on_epoch_start")
                first_step, exhausted = s.step, False
                for batches in self.loader.steps(s.epoch, self.options.accumulate, s.step_in_epoch):
                    self._apply_schedules(s.step)
                    self._fire("on_step_start", batches)
                    output = self.engine.train_step(batches, measure_grad_norm=(s.step + 1) % self.options.log_every_n_steps == 0)
                    s.step, s.step_in_epoch = s.step + 1, s.step_in_epoch + 1
                    self._count_nonfinite(output)
                    if s.step % self.options.log_every_n_steps == 0:
                        self._read_nonfinite()
                    self._fire("on_step_end", output)
                    if self._stop_agreed(s.step % self.options.log_every_n_steps == 0) or s.step >= self.total_steps:
                        break
                else:  # the loader ran out: the epoch is complete (a stream's length may be unknown)
                    if s.step == first_step and s.step_in_epoch == 0:
                        raise DataError(f"epoch {s.epoch} of the training data gave no batch; check that the Dataset or stream is not empty")
                    exhausted = True
                if exhausted or (self.steps_per_epoch is not None and s.step_in_epoch >= self.steps_per_epoch):  # the epoch is complete
                    s.epoch, s.step_in_epoch = s.epoch + 1, 0
                    self._read_nonfinite()
                    self._fire("on_epoch_end")
                    self._stop_agreed(True)
            self.engine.settle()
            self._read_nonfinite()
            self._stop_agreed(True)  # a request still pending on one rank: every rank ends with the same reason
            s.request_stop(BUDGET_DONE if s.step >= self.total_steps else "stopped")
            self._fire("on_fit_end")
        except BaseException as exc:
            self._fire("on_exception", exc)
            raise
        return s

    # -- helpers the loop and callbacks use --------------------------------------------------
    def _fire(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    def _apply_schedules(self, step: int) -> None:
        for key, schedule in self.schedules.items():
            apply_schedule(schedule, self.optimizer, step, key)

    def agree_on_stop_now(self) -> None:
        """Mark the current step as one where every rank decides on stopping together (the built-in
        Evaluate callback calls it after the evaluations that every rank runs at the same step)."""
        self._agree_now = True

    def _stop_agreed(self, sync_point: bool) -> bool:
        """Whether to stop after this step. Under torch.distributed a stop asked for on any rank stops
        every rank (the reason of the lowest such rank), decided with one all-reduce only where the
        ranks meet anyway: log steps (the loss is read there), epoch ends, steps marked by
        `agree_on_stop_now` (evaluations), and the end of training. Other steps pay no host sync for
        it, and a request made on them is honoured at the next such point."""
        if self.dist.enabled:
            if not (sync_point or self._agree_now):
                return False
            self._agree_now = False
            self.state.stop_reason = distributed.agree_on_stop(self.state.stop_reason, self.dist, self.device)
        return bool(self.state.stop_reason)

    def _count_nonfinite(self, output: StepOutput) -> None:
        """Count a skipped step, and the longest row of them, on the device (no host sync)."""
        if not isinstance(output.skipped, torch.Tensor):  # skip_nonfinite off: nothing is skipped
            return
        in_row = self.state.count_nonfinite(output.skipped)
        if self._longest_row is None:
            self._longest_row = in_row.clone()
        else:
            torch.maximum(self._longest_row, in_row, out=self._longest_row)

    def _read_nonfinite(self) -> None:
        """Read the skipped-step counters on the host (log steps, epoch ends, checkpoints and the end,
        never every step); a TrainingError when `max_nonfinite_steps` steps in a row were skipped
        since the last read."""
        s = self.state
        s.read_nonfinite()
        if self._longest_row is not None and int(self._longest_row) >= self.options.max_nonfinite_steps:
            raise TrainingError(
                f"the loss was NaN/inf for {self.options.max_nonfinite_steps} steps in a row (by step {s.step}); lower optimizer.lr, "
                "set trainer.clip_norm, check the data for NaN, or run 'steepest doctor' on the recipe"
            )

    def log(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Send scalars to every logger (the `on_log` event) at `step` (default: the current step)."""
        self._fire("on_log", self.state.step if step is None else step, dict(values))

    @torch.no_grad()
    def evaluate(self, split: str = "val", log: bool = True) -> dict[str, float]:
        """Loss and task metrics on a split, prefixed with its name (`val_loss`, `test_accuracy`).
        `log=False`: a quiet re-read (no `on_log`, no `on_eval_end`; `state.metrics` is updated),
        e.g. of restored best weights whose evaluation was logged at their own step."""
        part = self.eval_data.get(split)
        if part is None:
            raise KeyError(f"no '{split}' data to evaluate on; the trainer has {sorted(self.eval_data) or 'none'}")
        was_training = self.model.training
        self.model.eval()
        meter = meter_for(self.info, self.device)
        batches = part.eval_batches(self.options.eval_batch_size) if hasattr(part, "eval_batches") else \
            eval_batches(part.x, part.y, self.options.eval_batch_size)
        for batch in batches:
            outputs, loss = self.engine.forward_batch(batch)
            meter.update(loss.float() * batch_size(batch), logits_of(outputs).float(), target_of(batch, self.engine.target_key))
        self.model.train(was_training)
        metrics = {f"{split}_{k}": v for k, v in meter.compute().items()}
        self.state.metrics.update(metrics)
        self.evaluated_at[split] = self.state.step
        if log:
            self.log(metrics)
            self._fire("on_eval_end", split, metrics)
        return metrics

    # -- checkpoint state ---------------------------------------------------------------------
    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The full model state; with FSDP gathered from the shards (a collective: every rank calls it)."""
        return distributed.full_model_state(self.unwrapped_model)

    def load_model_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a full model state (from `model_state_dict`); with FSDP a collective, rank 0's copy is
        broadcast and sharded (the other ranks may pass an empty dict)."""
        distributed.load_full_model_state(self.unwrapped_model, state)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs. With FSDP a collective (every rank calls it); parameters
        and optimizer state are full, keyed by parameter name, so any number of ranks can load them.
        Reads the skipped-step counters (a TrainingError past `max_nonfinite_steps` in a row)."""
        self.engine.settle()
        self._read_nonfinite()
        scaler = self.engine.scaler
        model_state, optim_state = distributed.full_training_state(self.unwrapped_model, self.optimizer)
        return {
            "model": model_state,
            "optimizer": optim_state,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "train_state": self.state.to_dict(),
            **self.rng.state_dict(),
            "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks},
            "config": self.recipe,
            "data_info": self.info.to_dict() if self.info is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        distributed.load_full_training_state(self.unwrapped_model, self.optimizer, state["model"], state["optimizer"])
        if self.engine.scaler is not None and state.get("scaler"):
            self.engine.scaler.load_state_dict(state["scaler"])
        self.state = TrainState.from_dict(state["train_state"])
        self._longest_row = None
        if self.state.stop_reason == BUDGET_DONE:  # a resumed run may have been given a larger budget
            self.state.stop_reason = ""
        saved = state.get("callbacks", {})
        for cb in self.callbacks:
            if cb.name in saved:
                cb.load_state_dict(saved[cb.name])
        self.rng.load_state_dict(state)


assert set(EVENTS) == {n for n in dir(Callback) if n.startswith("on_")}
