"""Tuning: the LR range test, optimizer comparison, batch-size advice, hyperparameter search."""

from steepest.train.callbacks.noise_scale import NoiseScaleCallback
from steepest.tune.batch_size import NoiseScale, estimate_noise_scale, regime

__all__ = ["NoiseScale", "NoiseScaleCallback", "estimate_noise_scale", "regime"]
