"""Tuning: the LR range test, optimizer comparison, batch-size advice, hyperparameter search.
Names load on first use (`steepest.lazy`)."""

from steepest.lazy import lazy_exports

__all__ = ["NoiseScale", "NoiseScaleCallback", "NoiseScaleMonitor", "estimate_noise_scale", "regime"]
__getattr__ = lazy_exports(__name__, {"NoiseScale": "steepest.tune.batch_size", "estimate_noise_scale": "steepest.tune.batch_size",
                                      "regime": "steepest.tune.batch_size", "NoiseScaleCallback": "steepest.tune.noise_scale",
                                      "NoiseScaleMonitor": "steepest.tune.noise_scale"})
