"""Regression losses: MSE, MAE, Huber and smooth L1. Targets are reshaped to the prediction's shape,
so an (N, 1) output and an (N,) target line up (never broadcast to (N, N))."""

from __future__ import annotations

import torch
from torch import Tensor

from steepest.losses._reduce import reduce


def _error(pred: Tensor, target: Tensor) -> Tensor:
    return pred - target.reshape(pred.shape).to(pred.dtype)


def mse(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error, mean((y_hat - y)^2): the Gaussian negative log-likelihood up to constants.

    >>> float(mse(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])))
    5.0
    """
    return reduce(_error(pred, target).square(), reduction)


def mae(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error, mean(|y_hat - y|): robust to outliers (the Laplace likelihood).

    >>> float(mae(torch.tensor([1.0, -3.0]), torch.tensor([0.0, 0.0])))
    2.0
    """
    return reduce(_error(pred, target).abs(), reduction)


def huber(pred: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """Huber loss (Huber 1964): quadratic near zero, linear beyond delta (torch's HuberLoss).

        l(e) = e^2 / 2                  |e| <= delta
        l(e) = delta (|e| - delta / 2)  otherwise

    >>> float(huber(torch.tensor([0.5, 3.0]), torch.zeros(2)))
    1.3125
    """
    e = _error(pred, target).abs()
    return reduce(torch.where(e <= delta, 0.5 * e.square(), delta * (e - 0.5 * delta)), reduction)


def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean") -> Tensor:
    """Smooth L1 (Girshick 2015, Fast R-CNN), Huber divided by beta (torch's SmoothL1Loss):

        l(e) = e^2 / (2 beta)   |e| < beta,     |e| - beta / 2   otherwise

    >>> float(smooth_l1(torch.tensor([0.5, 3.0]), torch.zeros(2)))
    1.3125
    """
    e = _error(pred, target).abs()
    return reduce(torch.where(e < beta, 0.5 * e.square() / beta, e - 0.5 * beta), reduction)
