"""Layers and initialization: RMSNorm and normalization by name, activations by name, init schemes,
bias rules and activation statistics."""

from steepest.nn.init import (
    INITS,
    activation_stats,
    expected_std,
    init_lstm_biases,
    init_output_bias,
    initialize,
    relu_bias,
)
from steepest.nn.norms import ACTIVATIONS, NORMS, RMSNorm, make_norm

__all__ = ["ACTIVATIONS", "INITS", "NORMS", "RMSNorm", "activation_stats", "expected_std", "init_lstm_biases", "init_output_bias",
           "initialize", "make_norm", "relu_bias"]
