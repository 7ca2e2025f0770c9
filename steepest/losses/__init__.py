"""Losses: functional first, with thin nn.Module wrappers registered for recipes."""

from steepest.losses._registry import LOSSES

__all__ = ["LOSSES"]
