"""The callback registry: recipe `callbacks: [{name: ..., ...}]` entries by name.

Rows name their class by import path (resolved when a recipe uses the name), so every name is
known without importing its package: callbacks of higher layers (gradual unfreezing in
`steepest.finetune`, the noise-scale monitors in `steepest.tune`) are listed here too."""

from __future__ import annotations

from steepest.registry import Registry

CALLBACKS = Registry("callback")

R = CALLBACKS.register
R("early_stopping", "steepest.training.callbacks.early_stopping:EarlyStopping")
R("reduce_on_plateau", "steepest.training.callbacks.plateau:ReduceLROnPlateau")
R("swa", "steepest.training.callbacks.averaging:StochasticWeightAveraging")
R("ema", "steepest.training.callbacks.averaging:ExponentialMovingAverage")
R("weight_penalty", "steepest.training.callbacks.penalty:WeightPenalty")
R("gradient_health", "steepest.training.callbacks.health:GradientHealth")
R("noise_scale", "steepest.tune.noise_scale:NoiseScaleMonitor")
R("noise_scale_steps", "steepest.tune.noise_scale:NoiseScaleCallback")
R("gradual_unfreezing", "steepest.finetune.freeze:GradualUnfreezing")

# `trainer.loggers: [tensorboard, csv]`: each class has `for_run(run_dir, hparams)`; `needs` is the
# optional package (an extra of the same name) checked when a recipe is validated.
LOGGERS = Registry("logger")
L = LOGGERS.register
L("tensorboard", "steepest.training.callbacks.loggers:TensorBoardLogger", needs="tensorboard", summary="TensorBoard event file (RUN_DIR/tensorboard).")
L("csv", "steepest.training.callbacks.loggers:CSVLogger", summary="metrics.csv: step, name, value (the rows of metrics.db).")
L("mlflow", "steepest.training.callbacks.loggers:MLflowLogger", needs="mlflow", summary="MLflow run in a local SQLite store (RUN_DIR/mlflow.db).")
L("wandb", "steepest.training.callbacks.loggers:WandbLogger", needs="wandb", summary="Weights & Biases run in offline mode (RUN_DIR/wandb).")
