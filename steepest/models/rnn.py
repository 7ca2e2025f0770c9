"""Recurrent models for sequences (N, T, F): an LSTM/GRU whose last hidden state feeds a linear head.

The LSTM's gate biases follow the usual rule at initialization (Jozefowicz et al. 2015): forget gate 1, input and
output gates -1 (steepest.nn.init_lstm_biases), so memories are kept early in training.
"""

from __future__ import annotations

from torch import nn

from steepest.nn.bias import init_lstm_biases


class _Recurrent(nn.Module):
    cell = nn.LSTM

    def __init__(self, input_shape, num_outputs: int, hidden: int = 64, layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, forget_bias: float = 1.0):
        super().__init__()
        features = input_shape[-1] if len(input_shape) == 2 else 1
        self.rnn = self.cell(features, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                             dropout=dropout if layers > 1 else 0.0)
        if isinstance(self.rnn, nn.LSTM):
            init_lstm_biases(self.rnn, forget=forget_bias)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_outputs)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class LSTMModel(_Recurrent):
    cell = nn.LSTM


class GRUModel(_Recurrent):
    cell = nn.GRU
