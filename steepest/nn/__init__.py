"""Layers and initialization: RMSNorm and normalization by name, activations by name, init schemes,
bias-initialization rules, and activation statistics.

    >>> sorted(NORMS)
    ['batchnorm', 'groupnorm', 'instancenorm', 'layernorm', 'none', 'rmsnorm']
"""

from steepest.nn.activations import ACTIVATIONS, make_activation
from steepest.nn.bias import init_lstm_biases, init_output_bias, output_layer, relu_bias
from steepest.nn.init import INITS, expected_std, fans, initialize
from steepest.nn.norms import NORMS, RMSNorm, RMSNorm2d, make_norm
from steepest.nn.stats import ActivationRow, activation_stats, deep_mlp, init_experiment

__all__ = [
    "ACTIVATIONS", "INITS", "NORMS", "ActivationRow", "RMSNorm", "RMSNorm2d", "activation_stats", "deep_mlp",
    "expected_std", "fans", "init_experiment", "init_lstm_biases", "init_output_bias", "initialize", "make_activation",
    "make_norm", "output_layer", "relu_bias",
]
