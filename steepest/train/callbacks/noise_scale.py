"""Track the gradient noise scale during training (steepest.tune.batch_size), at intervals."""

from __future__ import annotations

from steepest.train.callbacks._registry import CALLBACKS
from steepest.train.events import Callback


@CALLBACKS.register("noise_scale")
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
        from steepest.tune.batch_size import estimate_noise_scale, sampler_from

        model = trainer.unwrapped_model
        was = model.training
        model.eval()
        try:
            est = estimate_noise_scale(model, trainer.engine.loss_fn, sampler_from(trainer.data.train.x, trainer.data.train.y),
                                       min(self.b_small, len(trainer.data.train) // 2), min(self.b_big, len(trainer.data.train)),
                                       self.iterations, seed=step, batch_size=trainer.loader.batch_size)
        finally:
            model.train(was)
        self.history.append((step, est.b_simple))
        trainer.state.metrics["noise_scale"] = est.b_simple
        store = next((cb.store for cb in trainer.callbacks if getattr(cb, "store", None) is not None), None)
        if store is not None:
            store.log(step, {"noise_scale": est.b_simple})

    def state_dict(self):
        return {"history": [list(h) for h in self.history]}

    def load_state_dict(self, state):
        self.history = [tuple(h) for h in state.get("history", [])]
