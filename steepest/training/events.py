"""The closed list of training events, and the Callback base class that listens to them.

Events fire in this order (`steepest events` prints the loop with them):

    on_fit_start
      on_epoch_start
        on_step_start            before the forward pass of an optimizer step (its micro-batches)
        on_before_optimizer_step gradients are complete (accumulated, all-reduced, unscaled), not yet clipped
                                 (on a step that will be skipped too: its gradients may be NaN/inf)
        on_step_end              after the optimizer step; `output` has loss, grad_norm, skipped (device
                                 tensors: reading one on the host is a sync, so read them at log steps)
        on_log                   scalars to record at a step (train loss, lr, val metrics, ...)
        on_eval_end              after an evaluation (val or test); `metrics` are plain floats
      on_epoch_end
    on_fit_end                   always runs when training ends normally (stop flags included)
    on_exception                 training raised; the exception is re-raised afterwards

The callback contract. A callback may read these attributes of the trainer it is given:
    model              the module the loop calls (DDP-wrapped or compiled when so configured)
    unwrapped_model    the user's module (parameters, state_dict, requires_grad)
    optimizer, loss_fn, loader (the training micro-batches), eval_data, info (the data's task),
    options (TrainerOptions), schedules, rng (RandomState), state (TrainState; its skipped-step
    counters are device tensors between the reads at log steps and epoch ends), total_steps,
    steps_per_epoch, max_epochs, device, dist, rank, world_size, is_main_process, sharded, recipe
and call evaluate(split), log(values), model_state_dict(), load_model_state_dict(state), state_dict(),
agree_on_stop_now() (only at a step where every rank calls it: see below).
It may change only:
    trainer.state      request_stop(reason) to end training after the current step; metrics
    optimizer hyperparameters in param_groups (lr, momentum, ...) at on_step_start, after the
                       schedules were written for the step
    parameters         their values (weight averaging) and requires_grad (unfreezing)
    gradients          at on_before_optimizer_step, in place (a weight penalty's gradient)
    its own state      returned by state_dict() and saved in checkpoints under its `name`
Everything else (the engine, the loader, other callbacks) is read-only. Under torch.distributed a
stop asked for on any rank stops every rank, with that rank's reason, decided where the ranks meet
anyway (log steps, epoch ends, the built-in evaluations; no host sync on other steps): a request on
another step is honoured at the next of those. Metrics are the same on every rank, so decisions
taken from them agree.
"""

from __future__ import annotations

from typing import Any

EVENTS = (
    "on_fit_start",
    "on_epoch_start",
    "on_step_start",
    "on_before_optimizer_step",
    "on_step_end",
    "on_log",
    "on_eval_end",
    "on_epoch_end",
    "on_fit_end",
    "on_exception",
)


class Callback:
    """Override any of the event methods. State returned by `state_dict` is saved in checkpoints
    under the callback's `name`, so a resumed run continues exactly."""

    name: str = "callback"

    def on_fit_start(self, trainer) -> None: ...
    def on_epoch_start(self, trainer) -> None: ...
    def on_step_start(self, trainer, batches) -> None: ...
    def on_before_optimizer_step(self, trainer) -> None: ...
    def on_step_end(self, trainer, output) -> None: ...
    def on_log(self, trainer, step: int, values: dict[str, float]) -> None: ...
    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer) -> None: ...
    def on_fit_end(self, trainer) -> None: ...
    def on_exception(self, trainer, exc: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def show_training_loop() -> str:
    """The events in firing order, one per line (the text `steepest events` prints)."""
    blocks = (__doc__ or "").split("\n\n")
    return next(b for b in blocks if b.lstrip().startswith("on_fit_start"))
