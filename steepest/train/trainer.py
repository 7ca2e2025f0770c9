"""The Trainer: a loop that fits on a screen; everything else hangs off events (see events.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from steepest.data.bundle import DataBundle
from steepest.data.loader import DeviceLoader, eval_batches
from steepest.errors import TrainingError
from steepest.schedules import apply as apply_schedule
from steepest.train import distributed
from steepest.train.engine import Engine, StepOutput
from steepest.train.events import EVENTS, Callback
from steepest.train.metrics import ClassificationMeter, MultilabelMeter, RegressionMeter
from steepest.train.precision import autocast
from steepest.train.state import TrainState, rng_state, set_rng_state

BUDGET_DONE = "completed the step budget"


class Trainer:
    """Train `model` on `data` with `optimizer` and `loss_fn`.

    `schedules` maps a hyperparameter key ("lr", "momentum", "weight_decay") to a schedule,
    a pure function of the step. Callbacks run in the order given.

        >>> trainer = Trainer(model, optimizer, loss_fn, data, max_epochs=5)   # doctest: +SKIP
        >>> trainer.fit(); trainer.evaluate("test")                             # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        data: DataBundle,
        *,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        accumulate: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        clip_norm: float | None = None,
        clip_value: float | None = None,
        max_nonfinite_steps: int = 5,
        log_every_n_steps: int = 10,
        schedules: dict[str, Callable[[int], float]] | None = None,
        callbacks: Sequence[Callback] = (),
        create_graph: bool = False,
        skip_nonfinite: bool = True,
        recipe: dict[str, Any] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.device = torch.device(device)
        self.model, self.optimizer, self.data, self.info = model, optimizer, data, data.info
        self.unwrapped_model = getattr(model, "module", model)
        self.sharded = distributed.is_sharded(self.unwrapped_model) if world_size > 1 else False
        self.engine = Engine(model, optimizer, loss_fn, device=self.device, precision=precision,
                             clip_norm=clip_norm, clip_value=clip_value, create_graph=create_graph,
                             check_finite=skip_nonfinite)
        self.engine.before_optimizer_step = lambda: self._fire("on_before_optimizer_step")
        self.loader = DeviceLoader(data.train.x, data.train.y, batch_size, shuffle=shuffle, seed=seed,
                                   drop_last=drop_last, rank=rank, world_size=world_size)
        self.accumulate = accumulate
        self.steps_per_epoch = self.loader.steps_per_epoch(accumulate)
        epochs_budget = max_epochs * self.steps_per_epoch if max_epochs else math.inf
        self.max_steps = int(min(max_steps or math.inf, epochs_budget))
        self.max_epochs = max_epochs or math.ceil(self.max_steps / self.steps_per_epoch)
        self.total_steps = self.max_steps
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.max_nonfinite_steps, self.log_every_n_steps = max_nonfinite_steps, log_every_n_steps
        self.schedules = dict(schedules or {})
        self.callbacks = list(callbacks)
        self.recipe = recipe or {}
        self.rank, self.world_size = rank, world_size
        self.is_main_process = rank == 0
        self.state = TrainState()
        self.progress_active = False
        self.generators: dict[str, torch.Generator | None] = {}  # e.g. mixup's; saved in checkpoints

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        s = self.state
        self.model.train()
        self._fire("on_fit_start")
        try:
            while not s.stop_reason and s.step < self.max_steps:
                self._fire("on_epoch_start")
                for batches in self.loader.steps(s.epoch, self.accumulate, s.step_in_epoch):
                    self._apply_schedules(s.step)
                    self._fire("on_step_start", batches)
                    output = self.engine.train_step(batches, measure_grad_norm=(s.step + 1) % self.log_every_n_steps == 0)
                    s.step, s.step_in_epoch = s.step + 1, s.step_in_epoch + 1
                    self._count_nonfinite(output)
                    self._fire("on_step_end", output)
                    if s.stop_reason or s.step >= self.max_steps:
                        break
                if s.step_in_epoch >= self.steps_per_epoch:  # the epoch is complete
                    s.epoch, s.step_in_epoch = s.epoch + 1, 0
                    self._fire("on_epoch_end")
            s.request_stop(BUDGET_DONE if s.step >= self.max_steps else "stopped")
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

    def _count_nonfinite(self, output: StepOutput) -> None:
        s = self.state
        if not output.skipped:
            s.nonfinite_in_row = 0
            return
        s.nonfinite_in_row += 1
        s.nonfinite_total += 1
        if s.nonfinite_in_row >= self.max_nonfinite_steps:
            raise TrainingError(
                f"the loss was NaN/inf for {s.nonfinite_in_row} steps in a row (step {s.step}); lower optimizer.lr, "
                "set trainer.clip_norm, check the data for NaN, or run 'steepest doctor' on the recipe"
            )

    def add_callback(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def meter(self):
        task = self.info.task
        if task in ("classification", "binary"):
            return ClassificationMeter(self.info.num_classes or 2, self.device)
        if task == "multilabel":
            return MultilabelMeter(self.device)
        y_norm = self.info.y_norm
        mean = torch.tensor(y_norm["mean"], dtype=torch.float64, device=self.device) if y_norm else None
        std = torch.tensor(y_norm["std"], dtype=torch.float64, device=self.device) if y_norm else None
        return RegressionMeter(self.device, mean, std)

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Loss and task metrics on a split, prefixed with its name (`val_loss`, `test_accuracy`)."""
        part = getattr(self.data, split)
        was_training = self.model.training
        self.model.eval()
        meter = self.meter()
        loss_fn = self.engine.loss_fn
        for x, y in eval_batches(part.x, part.y, self.eval_batch_size):
            with autocast(self.device, self.engine.precision):
                outputs = self.model(x)
                loss = loss_fn(outputs, y)
            meter.update(loss.float() * len(x), outputs.float(), y)
        self.model.train(was_training)
        metrics = {f"{split}_{k}": v for k, v in meter.compute().items()}
        self.state.metrics.update(metrics)
        self._fire("on_eval_end", split, metrics)
        return metrics

    # -- checkpoint state ---------------------------------------------------------------------
    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The full model state; with FSDP gathered from the shards (a collective: every rank calls it)."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
            )

            return get_model_state_dict(self.unwrapped_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.unwrapped_model.state_dict()

    def load_model_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a full model state (from `model_state_dict`); with FSDP a collective, rank 0's copy is
        broadcast and sharded (the other ranks may pass an empty dict)."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
            )

            set_model_state_dict(self.unwrapped_model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        else:
            self.unwrapped_model.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs. With FSDP a collective (every rank calls it); parameters
        and optimizer state are full, keyed by parameter name, so any number of ranks can load them."""
        scaler = self.engine.scaler
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            model_state, optim_state = get_state_dict(self.unwrapped_model, self.optimizer,
                                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            model_state, optim_state = self.unwrapped_model.state_dict(), self.optimizer.state_dict()
        return {
            "model": model_state,
            "optimizer": optim_state,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "train_state": self.state.to_dict(),
            "rng": rng_state(),
            "generators": {k: g.get_state() for k, g in self.generators.items() if g is not None},
            "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks},
            "config": self.recipe,
            "data_info": self.info.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            for group, saved in zip(self.optimizer.param_groups, state["optimizer"].get("param_groups", [])):
                for key, value in saved.items():  # keys the schedules added (initial_lr, ...) must exist to be loaded
                    group.setdefault(key, value)
            set_state_dict(self.unwrapped_model, self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True))
        else:
            self.unwrapped_model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        if self.engine.scaler is not None and state.get("scaler"):
            self.engine.scaler.load_state_dict(state["scaler"])
        self.state = TrainState.from_dict(state["train_state"])
        if self.state.stop_reason == BUDGET_DONE:  # a resumed run may have been given a larger budget
            self.state.stop_reason = ""
        saved = state.get("callbacks", {})
        for cb in self.callbacks:
            if cb.name in saved:
                cb.load_state_dict(saved[cb.name])
        set_rng_state(state["rng"])
        for key, gen_state in state.get("generators", {}).items():
            if self.generators.get(key) is not None:
                self.generators[key].set_state(gen_state)


assert set(EVENTS) == {n for n in dir(Callback) if n.startswith("on_")}
