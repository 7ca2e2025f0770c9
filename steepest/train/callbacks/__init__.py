"""Callbacks: built-in ones the Trainer wires from the recipe, and the registry for `callbacks:`."""

from steepest.train.callbacks._registry import CALLBACKS
from steepest.train.callbacks.averaging import ExponentialMovingAverage, StochasticWeightAveraging
from steepest.train.callbacks.checkpoint import Checkpoint
from steepest.train.callbacks.early_stopping import EarlyStopping
from steepest.train.callbacks.evaluate import Evaluate
from steepest.train.callbacks.logger import MetricLogger
from steepest.train.callbacks.noise_scale import NoiseScaleCallback, NoiseScaleMonitor
from steepest.train.callbacks.plateau import ReduceLROnPlateau
from steepest.train.callbacks.progress import ProgressBar

__all__ = ["CALLBACKS", "Checkpoint", "EarlyStopping", "Evaluate", "ExponentialMovingAverage", "MetricLogger", "NoiseScaleCallback", "NoiseScaleMonitor", "ProgressBar", "ReduceLROnPlateau",
           "StochasticWeightAveraging"]
