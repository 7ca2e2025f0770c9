"""Models by recipe name; input and output sizes come from the data."""

from steepest.models._registry import MODELS
from steepest.models.build import build_model

__all__ = ["MODELS", "build_model"]
