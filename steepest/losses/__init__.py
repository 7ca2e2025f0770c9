"""Losses: functional first (`steepest.losses.functional`), thin nn.Module wrappers registered in
LOSSES for recipes (`LOSSES.get(name).target(**kwargs)` is a callable `loss(outputs, targets)`)."""

from steepest.losses import functional
from steepest.losses._registry import LOSSES
from steepest.losses.penalties import elastic_net, l1_penalty, l2_penalty

__all__ = ["LOSSES", "elastic_net", "functional", "l1_penalty", "l2_penalty"]
