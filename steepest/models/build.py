"""Build a model from its recipe section and the data's shapes."""

from __future__ import annotations

from typing import Any

from torch import nn

from steepest.errors import ConfigError
from steepest.models._registry import MODELS
from steepest.nn.bias import relu_bias
from steepest.nn.checkpointing import enable_activation_checkpointing
from steepest.nn.init import initialize
from steepest.registry import accepted_arguments, import_object
from steepest.regularize import apply_dropconnect

RESERVED = ("init", "dropconnect", "output_bias", "activation_checkpointing", "embedding_dim")  # handled here, not passed to the model class
INJECTED = ("input_shape", "num_outputs", "tabular")  # filled from the data when the model class takes them


def build_model(name: str | None, kwargs: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int, *,
                component: str | None = None, tabular: dict[str, Any] | None = None) -> nn.Module:
    """A registered model `name` (or the class at the import path `component`) built with `kwargs`.

    A user's class receives `input_shape` / `num_outputs` only if its signature asks for them (or
    takes **kwargs), and `tabular` (the run's TabularEncoder as a dict, `DataInfo.tabular`: which
    feature columns are categorical indices, their cardinalities; None for other data) only if it
    names it, as `tabular` (TabularModel) does.
    Reserved keys: `init` (a scheme name, or {scheme: ..., gain/mode/..., relu_bias: 0.01}) re-initializes
    Linear/Conv weights (relu_bias: the layers feeding a ReLU start with that positive bias); `dropconnect: p` swaps hidden Linear layers for DropConnectLinear; `output_bias: auto`
    is applied by the run from the training targets (steepest.nn.init_output_bias);
    `activation_checkpointing: true | segments | [module patterns]` recomputes blocks in the backward
    pass instead of storing their activations (steepest.nn.checkpointing).
    """
    kwargs = dict(kwargs)
    init = kwargs.pop("init", None)
    dropconnect = kwargs.pop("dropconnect", None)
    kwargs.pop("output_bias", None)
    kwargs.pop("embedding_dim", None)  # the output width of a metric-learning run (steepest.run.build)
    checkpointing = kwargs.pop("activation_checkpointing", None)
    if component is not None:
        target = import_object(component, "model.component")
        where = f"model ({component})"
    else:
        record = MODELS.get(name, "model.name")
        target, kwargs = record.target, {**record.defaults, **kwargs}
        where = f"model ({name})"
    params, var_kw = accepted_arguments(target)
    sizes = dict(zip(INJECTED, (tuple(input_shape), int(num_outputs))))
    for key, value in sizes.items():
        if key in params or var_kw:
            kwargs.setdefault(key, value)
    if "tabular" in params:  # named only: a **kwargs class forwarding its keys is not handed a dict it never asked for
        kwargs.setdefault("tabular", tabular)
    try:
        model = target(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}: built a {type(model).__name__}, not a torch.nn.Module")
    if init is not None:
        spec = {"scheme": init} if isinstance(init, str) else dict(init)
        positive_relu_bias = spec.pop("relu_bias", None)
        try:
            initialize(model, spec.pop("scheme", "default"), **spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"model.init: {exc}") from None
        if positive_relu_bias is not None:
            if not isinstance(positive_relu_bias, (int, float)) or not 0 <= positive_relu_bias < 1:
                raise ConfigError(f"model.init.relu_bias: a small positive bias such as 0.01 (got {positive_relu_bias!r})")
            if relu_bias(model, float(positive_relu_bias)) == 0:
                raise ConfigError("model.init.relu_bias: no Linear/Conv layer of this model feeds an nn.ReLU module")
    if dropconnect:
        try:
            apply_dropconnect(model, float(dropconnect))
        except ValueError as exc:
            raise ConfigError(f"model.dropconnect: {exc}") from None
    if checkpointing:
        try:
            enable_activation_checkpointing(model, checkpointing)
        except ValueError as exc:
            raise ConfigError(f"model.activation_checkpointing: {exc}") from None
    return model
