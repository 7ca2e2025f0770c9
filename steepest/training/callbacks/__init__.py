"""Callbacks: built-in ones a run wires from the recipe, and the registry for `callbacks:`."""

from steepest.training.callbacks._registry import CALLBACKS
from steepest.training.callbacks.averaging import (
           ExponentialMovingAverage,
           StochasticWeightAveraging,
)
from steepest.training.callbacks.checkpoint import Checkpoint
from steepest.training.callbacks.early_stopping import EarlyStopping
from steepest.training.callbacks.evaluate import Evaluate
from steepest.training.callbacks.logger import ConsoleLogger, StoreLogger, TrainScalars
from steepest.training.callbacks.plateau import ReduceLROnPlateau
from steepest.training.callbacks.progress import ProgressBar

__all__ = ["CALLBACKS", "Checkpoint", "ConsoleLogger", "EarlyStopping", "Evaluate", "ExponentialMovingAverage", "ProgressBar",
           "ReduceLROnPlateau", "StochasticWeightAveraging", "StoreLogger", "TrainScalars"]
