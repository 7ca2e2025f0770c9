"""The model registry. Builders receive `input_shape` and `num_outputs` from the data, so a
recipe never has to state sizes the data already knows."""

from __future__ import annotations

from steepest.registry import Registry

MODELS = Registry("model")
