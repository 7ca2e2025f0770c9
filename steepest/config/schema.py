"""The recipe schema: typed, strict sections. Unknown keys, wrong types and out-of-range values
are rejected with the dotted key that is wrong (see `steepest.config.load`).

Component sections (`model`, `optimizer`, `schedule`, `loss`, `callbacks[]`) name a registered
component (`name: adamw`) or user code (`component: mypkg.nets:Net`); their other keys are the
component's own keyword arguments, checked against its signature when the recipe is validated.

A `component:` path is code: validating or building the recipe imports it and runs it. Recipes
read back from a run directory therefore have their paths refused unless the user trusts them
(`component_paths`, `steepest.config.load.load_run_recipe`).

Every number in a recipe is finite: typed fields refuse inf and nan (`allow_inf_nan=False`), and
`check_finite` refuses them in the free-form parts (component keywords, `data.options`, ...).
A number field refuses true/false (pydantic would read `batch_size: true` as a batch of 1), and
seeds are whole numbers in [0, 2**32) (the loaders derive int64 seeds from them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from steepest.errors import ConfigError, did_you_mean
from steepest.hub import PRETRAINED, VisionWeights, vision_weights

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
SEED_LIMIT = 2**32  # what every generator a run seeds takes: the loaders derive seed * 1_000_003 + epoch (int64 in torch)
SEARCH_SEED_LIMIT = 2**31  # Optuna's samplers seed numpy's legacy RandomState (< 2**32) with search.seed + the trial number


def _seed_below(limit: int, shown: str):
    def check(value: int) -> int:
        if not 0 <= value < limit:
            raise ValueError(f"a seed must be a whole number in [0, {shown})")
        return value

    return check


Seed = Annotated[int, AfterValidator(_seed_below(SEED_LIMIT, "2**32"))]
SearchSeed = Annotated[int, AfterValidator(_seed_below(SEARCH_SEED_LIMIT, "2**31"))]


def annotation_kinds(annotation: Any) -> set[type]:
    """The plain types a field's annotation admits: bool, int, float, str, ... (Any as object);
    a Literal contributes the types of its values, Annotated its base type."""
    if annotation is Any:
        return {object}
    origin = get_origin(annotation)
    if origin is Literal:
        return {type(a) for a in get_args(annotation)}
    if origin is Annotated:
        return annotation_kinds(get_args(annotation)[0])
    if origin in (list, tuple, dict, set, frozenset):
        return {origin}
    if isinstance(annotation, type) and not get_args(annotation):
        return {annotation}
    return set().union(*(annotation_kinds(a) for a in get_args(annotation))) if get_args(annotation) else {object}


def _refuse_bool(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Pydantic's lax mode reads `true` as 1 for an int (`data.batch_size: true` would be a batch of
    1), as 1.0 for a float and as 1 for Literal[1, 3]: a number field that does not also take
    true/false refuses one."""
    if isinstance(value, bool):
        field = cls.model_fields.get(info.field_name or "")
        kinds = annotation_kinds(field.annotation) if field is not None else {object}
        if not kinds & {bool, object} and kinds & {int, float}:
            raise ValueError(f"expected {'a whole number' if int in kinds and float not in kinds else 'a number'}, not true/false")
    return value


def check_finite(data: Any, key: str = "") -> None:
    """Refuse inf and nan anywhere in plain recipe data (dicts, lists, numbers): ConfigError naming
    the dotted key, e.g. `model.hidden.1`."""
    if isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(f"{key or 'recipe'}: {data} is not a finite number; give a finite value")
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list | tuple) else ()
    for k, value in items:
        check_finite(value, f"{key}.{k}" if key else str(k))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool(cls, value: Any, info: ValidationInfo) -> Any:
        return _refuse_bool(cls, value, info)


class Component(BaseModel):
    """A registry name or an import path, plus the component's own keyword arguments."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)
    name: str | None = None
    component: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool(cls, value: Any, info: ValidationInfo) -> Any:
        return _refuse_bool(cls, value, info)

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("component") is not None:
            if data.get("name") is not None:
                raise ValueError("give either 'name' (a registered component) or 'component' (an import path), not both")
            data = {**data, "name": None}
        return data

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class NormalizeStats(Section):
    """Given per-channel statistics (e.g. a pretrained model's): x -> (x - mean) / std."""

    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _same_length(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError("normalize: give as many means as stds, one per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError("normalize: every std must be > 0")
        return self


class DataConfig(Section):
    """Where the data comes from and how it is split, normalized and batched. Image files
    (`format: image_folder | image_csv`) are read sample by sample through torch's DataLoader
    (`num_workers`, `pin_memory`, `persistent_workers`, `prefetch_factor`), resized to
    `image_size`, with the per-sample `transforms` (steepest.data.transforms keys) on training."""

    name: str | None = "digits"
    format: Literal["csv", "npz", "text_folder", "image_folder", "image_csv", "memmap", "hf_dataset"] | None = None
    path: str | None = None
    target: str | None = None
    component: str | None = None
    stream: bool = False  # component: read the Dataset sample by sample through DataLoader (never materialized)
    options: dict[str, Any] = Field(default_factory=dict)
    task: Literal["auto", "classification", "regression", "binary", "multilabel", "language_modeling"] = "auto"  # language_modeling: next-token targets (N, T) (steepest.data.tokens)
    num_classes: PositiveInt | None = None
    split: tuple[Fraction, Fraction, Fraction] | None = None
    stratify: bool = True
    split_order: Literal["random", "ordered"] = "random"  # ordered: train, then val, then test (time series)
    augment: dict[str, Any] | None = None  # steepest.data.augment: image, text or spectrogram keys, plus copies
    balance: Literal["none", "class_weights", "sampler", "oversample", "smote", "adasyn", "undersample"] = "none"  # steepest.data.imbalance
    split_seed: Seed = 0
    batch_size: PositiveInt | Literal["full"] = 64
    eval_batch_size: PositiveInt | None = None
    normalize: Literal["standard", "none"] | NormalizeStats = "standard"
    normalize_targets: bool = True
    image_size: PositiveInt | None = None  # image files: the side of the (square) inputs
    channels: Literal[1, 3] = 3  # image files: gray or RGB
    transforms: dict[str, Any] | None = None  # image files: per-sample training transforms (steepest.data.transforms)
    num_workers: Annotated[int, Field(ge=0)] = 0  # DataLoader worker processes (Dataset-backed data)
    pin_memory: bool = True  # page-locked host memory for asynchronous copies to a GPU
    persistent_workers: bool = False
    prefetch_factor: PositiveInt | None = None
    multiprocessing_context: Literal["fork", "forkserver", "spawn"] | None = None  # how workers start (None: the platform's default)
    subset: PositiveInt | None = None
    classes: list[int] | None = None  # keep these class ids only, relabelled 0..k-1 (e.g. a transfer-learning task)
    shuffle: bool | Literal["once"] = True  # once: one permutation kept for every epoch
    drop_last: bool = False
    data_dir: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("format") or data.get("component")):
            if data.get("name"):
                raise ValueError("give one data source: 'name' (a bundled set), 'format'+'path' or 'component'")
            data = {**data, "name": None}
        return data

    @field_validator("augment")
    @classmethod
    def _augment_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            from steepest.data.augment import from_config

            from_config(value)  # unknown or mixed keys stop the recipe before any data is read
        return value

    @field_validator("transforms")
    @classmethod
    def _transform_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            if "normalize" in value:  # image inputs are normalized by data.normalize (its channel count checked against the images)
                raise ValueError("normalize is not a transform here; give it as data.normalize: "
                                 "{mean: [...], std: [...]} (one value per channel), or data.normalize: standard")
            from steepest.data.transforms import from_config

            from_config({"image_size": 8, **value}, train=True)  # unknown keys or bad values stop the recipe now
        return value

    @model_validator(mode="after")
    def _source(self):
        if self.format is not None and self.path is None:
            raise ValueError(f"format '{self.format}' needs 'path' (the file to read)")
        if self.format in ("image_folder", "image_csv") and self.image_size is None:
            raise ValueError(f"format '{self.format}' needs 'image_size' (the side the images are resized and cropped to)")
        if self.format == "image_csv" and self.target is None:
            raise ValueError("format 'image_csv' needs 'target' (the label column's name)")
        if self.format == "csv" and self.target is None:
            raise ValueError("format 'csv' needs 'target' (the label column's name)")
        if self.format == "hf_dataset" and self.target is None:
            raise ValueError("format 'hf_dataset' needs 'target' (the label column's name)")
        if self.task == "binary" and self.num_classes is not None and self.num_classes != 2:
            raise ValueError(f"task binary has 2 classes but num_classes is {self.num_classes}; set task: classification for "
                             f"{self.num_classes} classes, or drop num_classes")
        if isinstance(self.normalize, NormalizeStats) and self.format in ("image_folder", "image_csv") \
                and len(self.normalize.mean) != self.channels:
            n = len(self.normalize.mean)
            raise ValueError(f"normalize: {n} mean{'s' if n != 1 else ''} and std{'s' if n != 1 else ''} for images of {self.channels} channel"
                             f"{'s' if self.channels != 1 else ''} (data.channels); give one per channel")
        if self.split is not None and abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must add up to 1, got {sum(self.split):g}")
        return self


class ModelConfig(Component):
    name: str | None = "mlp"


class OptimizerConfig(Component):
    """The optimizer; `lr` and `weight_decay` left out take the named optimizer's own documented
    defaults (Lion 1e-4, AdamW's decay 0.01, LARS 1.0, ...), filled in here so config.yaml records
    what ran. `scale_lr` scales the lr with the number of torchrun processes (the global batch
    grows with it): linear (Goyal et al. 2017) or sqrt (Krizhevsky 2014, for adaptive optimizers).
    `decay_1d: true` also decays parameters with fewer than two dimensions (biases, norm gains)."""

    name: str | None = "adamw"
    lr: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None
    scale_lr: Literal["none", "linear", "sqrt"] = "none"
    decay_1d: bool = False

    @model_validator(mode="before")
    @classmethod
    def _own_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("component") is not None or data.get("lr") is not None and data.get("weight_decay") is not None:
            return data
        from steepest.optim import OPTIMIZERS, defaults_of  # the classes' signatures: imports torch

        name = data.get("name", "adamw")
        if name not in OPTIMIZERS:
            return data  # validation names the unknown optimizer
        base = data.get("base")
        own = defaults_of(name, base if base in OPTIMIZERS else None)
        filled = {k: own.get(k) for k in ("lr", "weight_decay") if data.get(k) is None}
        return {**data, **{k: v for k, v in filled.items() if v is not None}}


class ScheduleConfig(Component):
    name: str | None = "constant"


class LossConfig(Component):
    name: str | None = None  # None: chosen from the task (cross_entropy, mse, bce_with_logits)


class EarlyStoppingConfig(Section):
    monitor: str = "val_loss"
    mode: Literal["min", "max", "auto"] = "auto"
    patience: PositiveInt = 5
    min_delta: NonNegativeFloat = 0.0
    restore_best: bool = True
    target: float | None = None  # stop as soon as the monitored value reaches it (>= for max metrics, <= for min)


class TrainerConfig(Section):
    max_epochs: PositiveInt | None = 20
    max_steps: PositiveInt | None = None
    seed: Seed = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    accumulate: PositiveInt = 1
    clip_norm: PositiveFloat | None = None
    clip_value: PositiveFloat | None = None
    eval_every_n_epochs: PositiveInt | None = 1
    eval_every_n_steps: PositiveInt | None = None
    log_every_n_steps: PositiveInt = 10
    early_stopping: EarlyStoppingConfig | None = None
    max_nonfinite_steps: PositiveInt = 5
    skip_nonfinite: bool = True  # skipped on the device, no host sync; false: no check (fp16's GradScaler still skips inf grads)
    cuda_graphs: bool = False  # CUDA graphs of the compiled forward and backward (small models, torch.compile "reduce-overhead"); CUDA only
    progress: Literal["auto", "on", "off"] = "auto"
    loggers: list[str] = Field(default_factory=list)  # tensorboard, csv, mlflow, wandb: files in the run directory
    histograms_every_n_steps: PositiveInt | None = None  # weight and gradient histograms (tensorboard, wandb)
    compile: bool = False  # torch.compile the model the loop calls (in place: its weights keep their names)
    channels_last: bool = False  # image models: 4-D weights in NHWC memory format (faster convolutions on tensor cores)
    tta: Literal["none", "hflip"] = "none"  # evaluation of image classifiers: average the softmax of each image and its mirror
    deterministic: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: replicate (DDP) or shard (FSDP2) parameters, grads, optimizer state

    @model_validator(mode="after")
    def _budget(self):
        if self.max_epochs is None and self.max_steps is None:
            raise ValueError("set max_epochs or max_steps (the training budget)")
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("set clip_norm or clip_value, not both")
        return self

    @field_validator("cuda_graphs")
    @classmethod
    def _cuda_graphs(cls, value: bool, info) -> bool:
        # a recipe that can run nowhere is refused here; the device is checked when training starts
        refusal = cuda_graphs_refusal("cuda", True, int(info.data.get("accumulate") or 1)) if value else None
        if refusal:
            raise ValueError(refusal)
        return value


def cuda_graphs_refusal(device: str, has_cuda: bool, accumulate: int = 1, world_size: int = 1) -> str | None:
    """Why `trainer.cuda_graphs: true` cannot train on `device` (the resolved trainer.device) with
    `accumulate` micro-batches a step in `world_size` processes, or None. The device is checked when
    training starts, like trainer.device itself: a run trained with CUDA graphs still validates,
    predicts and exports on a machine without a GPU."""
    fix = "set trainer.cuda_graphs=false"
    if not device.startswith("cuda"):
        where = f"trainer.device is {device}" if has_cuda else f"this machine has none (the device is {device})"
        return f"CUDA graph capture needs a CUDA device, and {where}; {fix}"
    if accumulate > 1:
        return (f"CUDA graph capture replays one graph per micro-batch, which would overwrite the gradients being "
                f"accumulated (trainer.accumulate={accumulate}); set trainer.accumulate=1 or trainer.cuda_graphs=false")
    if world_size > 1:
        return f"CUDA graph capture is not supported under torchrun yet (DDP/FSDP communicate between graph replays); {fix}"
    return None


class LoRAConfig(Section):
    r: PositiveInt = 8
    alpha: PositiveFloat = 16.0
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    targets: list[str] = ["Linear"]  # class names or module-name patterns (fnmatch)
    exclude: list[str] = []
    train: list[str] = []  # module-name prefixes trained in full
    train_head: bool = True  # the last layer group (a new classifier) trains in full


class FinetuneConfig(Section):
    """Transfer learning (steepest.finetune): start from pretrained weights, then choose what trains.

    From a registered vision model (`pretrained: efficientnet-lite0`, steepest.hub) on image files,
    `preprocessing: source` (the default) gives the data section the model's own input size and
    normalization wherever the recipe leaves `data.image_size` / `data.normalize` out: the weights
    see inputs like those they were trained on. An explicit `data.normalize` (`standard` refits on the
    target images) or `data.image_size` wins; `preprocessing: data` keeps the data section's defaults."""

    pretrained: str | None = None  # a finished run directory, a .safetensors file, or a registered vision model (efficientnet-lite0)
    skip: list[str] = []  # parameter-name prefixes not to load
    freeze: Literal["all_but_head"] | list[str] | None = None  # feature extraction, or module-name prefixes/patterns
    lora: LoRAConfig | None = None
    unfreeze_every_n_epochs: PositiveInt | None = None  # gradual unfreezing from the head down (ULMFiT)
    lr_decay: Annotated[float, Field(gt=0, le=1)] | None = None  # discriminative lr: x decay per layer group below the head
    backbone_lr: Annotated[float, Field(gt=0, le=1)] | None = None  # every layer but the head at this fraction of the lr (0.1-0.01)
    plan: Literal["auto"] | None = None  # choose freezing and backbone_lr from the data size and `similarity` (printed)
    similarity: Literal["similar", "different"] = "similar"  # the target task against the pretraining one (for plan: auto)
    preprocessing: Literal["source", "data"] = "source"  # a vision model's input size and normalization for image files, or the data's
    _inputs: str | None = PrivateAttr(default=None)  # what the image inputs ended up as (set by Recipe; the run prints it)

    @property
    def inputs_note(self) -> str | None:
        """One line on the image preprocessing against the pretrained vision model's (None when no such model)."""
        return self._inputs


class CheckpointConfig(Section):
    every_n_steps: PositiveInt | None = None
    every_n_epochs: PositiveInt | None = 1
    keep_last: PositiveInt = 2
    keep_best: bool = True
    monitor: str = "val_loss"
    enabled: bool = True


class SearchParam(Section):
    """One dimension of a hyperparameter search space (Optuna distributions)."""

    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs 'choices'")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs low < high")
        elif self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        return self


class SearchConfig(Section):
    """`steepest search`: Optuna over dotted recipe keys, trials stored in an RDB (SQLite by default)."""

    space: dict[str, SearchParam] = Field(default_factory=dict)
    n_trials: PositiveInt = 20
    metric: str = "val_loss"
    direction: Literal["minimize", "maximize", "auto"] = "auto"
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "none"] = "median"
    seed: SearchSeed = 0
    timeout_seconds: PositiveFloat | None = None


IMAGE_FORMATS = ("image_folder", "image_csv")


def _channel_stats(weights: VisionWeights, channels: Any) -> tuple[list[float], list[float]]:
    """The source's mean and std for `channels` inputs (gray: the average over RGB)."""
    if channels == 1:
        return [sum(weights.mean) / len(weights.mean)], [sum(weights.std) / len(weights.std)]
    return list(weights.mean), list(weights.std)


def source_preprocessing(data: Any) -> Any:
    """A raw recipe (dict) with `data.normalize` and `data.image_size` filled from the pretrained
    vision model's preprocessing where the recipe leaves them out (finetune.preprocessing: source,
    image files); anything else is returned as it is. A misspelt registered name is a ConfigError."""
    if not isinstance(data, dict) or not isinstance(data.get("finetune"), dict) or not isinstance(data.get("data"), dict):
        return data
    finetune, section = data["finetune"], dict(data["data"])
    pretrained = finetune.get("pretrained")
    weights = vision_weights(pretrained)
    if weights is None and isinstance(pretrained, str) and not Path(pretrained).expanduser().exists():
        hint = did_you_mean(pretrained, [n for n in PRETRAINED.names() if vision_weights(n) is not None])
        if hint:  # a misspelt registered name would otherwise surface later as a missing file
            raise ConfigError(f"finetune.pretrained: '{pretrained}' is neither a file, a run directory nor a registered model;{hint}")
    if weights is None or finetune.get("preprocessing") == "data" or section.get("format") not in IMAGE_FORMATS:
        return data
    if section.get("normalize") is None:
        mean, std = _channel_stats(weights, section.get("channels", 3))
        section["normalize"] = {"mean": mean, "std": std}
    if section.get("image_size") is None:
        section["image_size"] = weights.image_size
    return {**data, "data": section}


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def inputs_note(data: DataConfig, name: str, weights: VisionWeights) -> str:
    """What the image inputs of a run fine-tuned from `name` are, against what it was trained on."""
    mean, std = _channel_stats(weights, data.channels)
    stats = f"mean {_numbers(mean)}, std {_numbers(std)}"
    if data.format not in IMAGE_FORMATS:
        return f"inputs: not image files (data.format image_folder / image_csv): {name}'s preprocessing ({weights.image_size} px, {stats}) is not applied"
    norm = data.normalize
    same_size = data.image_size == weights.image_size
    if isinstance(norm, NormalizeStats) and norm.mean == mean and norm.std == std:
        if same_size:
            return f"inputs: {name}'s preprocessing, {data.image_size} px, {stats}"
        return f"inputs: {name}'s normalization ({stats}) at {data.image_size} px (data.image_size; {name} was trained on {weights.image_size} px)"
    if isinstance(norm, NormalizeStats):
        how = f"data.normalize from the recipe (mean {_numbers(norm.mean)}, std {_numbers(norm.std)})"
    else:
        how = {"standard": "statistics fitted on the training images (data.normalize: standard)",
               "none": "no normalization (data.normalize: none)"}[norm]
    return f"inputs: {how} at {data.image_size} px ({name} was trained on {weights.image_size} px, {stats})"


class Recipe(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    schedules: dict[str, ScheduleConfig] = Field(default_factory=dict)  # other hyperparameters: momentum, beta1, weight_decay
    loss: LossConfig = Field(default_factory=LossConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    callbacks: list[Component] = Field(default_factory=list)
    finetune: FinetuneConfig | None = None
    batch_transform: Component | None = None  # mixup / cutmix / mixup_cutmix (training batches only)
    search: SearchConfig | None = None
    name: str | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _source_preprocessing(cls, data: Any) -> Any:
        return source_preprocessing(data)

    @model_validator(mode="after")
    def _inputs_note(self):
        weights = vision_weights(self.finetune.pretrained) if self.finetune is not None else None
        if weights is not None:
            self.finetune._inputs = inputs_note(self.data, self.finetune.pretrained, weights)
        return self

    def component_paths(self) -> list[tuple[str, str]]:
        """Every import path the recipe names, as (dotted key, path), e.g. ("model.component",
        "mypkg.nets:Net"), in recipe order: the user code that validating or building it imports."""
        sections = [("data", self.data), ("model", self.model), ("optimizer", self.optimizer), ("schedule", self.schedule),
                    *((f"schedules.{k}", s) for k, s in self.schedules.items()), ("loss", self.loss),
                    *((f"callbacks.{i}", s) for i, s in enumerate(self.callbacks)), ("batch_transform", self.batch_transform)]
        return [(f"{key}.component", s.component) for key, s in sections if s is not None and s.component is not None]
