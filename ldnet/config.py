"""Experiment configuration: typed dataclasses loaded from YAML, with ``key=value`` overrides.

Every key is checked on load: an unknown key or a value of the wrong type stops with a
message naming the key (``train.lr: expected a number, got 'fast'``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ldnet.data.codecs import CONVENTIONS
from ldnet.data.transforms import AugmentConfig
from ldnet.datasets import DATASETS, DatasetKind
from ldnet.errors import LDNetError


class ConfigError(LDNetError, ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class ModelConfig:
    name: str = "ldnet"
    # Initial weights (a checkpoint or a state-dict file); matched/missing keys are reported.
    init_weights: str | None = None


@dataclass
class DataConfig:
    dataset: str = "coco"  # coco | mpii | crowdpose
    root: str = "data/coco"
    # Unset: the dataset's own (ldnet.datasets): train2017/val2017, train/valid, trainval/test
    # and 256x192 or 256x256.
    train_split: str | None = None
    val_split: str | None = None
    input_size: list[int] | None = None  # [height, width]
    sigma: float = 2.0
    # How crops, heatmaps and the flip test line up (ldnet.data.codecs.CONVENTIONS): "ldnet",
    # ours (half-pixel centred, flip-exact), or "hrnet", the HRNet reference code's (crop centre
    # at (W/2, H/2), heatmap pixel u at input 4u, flipped heatmap shifted one pixel), which the
    # official LDNet code inherits. Training targets and every test-time path follow it; the
    # checkpoint records it.
    convention: str = "ldnet"
    workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def kind(self) -> DatasetKind:
        """The dataset's entry in ``ldnet.datasets``: resolved here, once per config (the name
        is checked when the config is read), and handed to everything the run does."""
        return DATASETS[self.dataset]


@dataclass
class TrainConfig:
    epochs: int = 210
    batch_size: int = 32  # per process (per GPU)
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9)
    lr: float = 1e-3
    lr_steps: list[int] = field(default_factory=lambda: [170, 200])
    lr_factor: float = 0.1
    weight_decay: float = 0.0
    warmup_iters: int = 0
    amp: bool = True  # mixed precision, CUDA only
    sync_bn: bool = False
    val_every: int = 10  # epochs
    log_every: int = 20  # iterations (CSV and TensorBoard)
    seed: int = 0
    # LDConv's attention temperature. false: left at the model's construction value (34, the
    # official code's; nothing in the release lowers it). true: the official module's
    # schedule, 3 lower per epoch down to 1 (epoch e, from 0, uses max(34 - 3e, 1): 34, 31,
    # ..., 4, 1 from the 12th epoch on); see ldnet.engine.train.attention_temperature_at.
    temperature_anneal: bool = False
    max_iters_per_epoch: int | None = None  # cut epochs short (smoke runs, demos)


@dataclass
class TestConfig:
    batch_size: int = 32
    flip: bool = True
    # The heatmap codec, for training targets and test-time decoding alike (ldnet.data.codecs):
    # dark (unbiased targets, distribution-aware decoding) | msra (HRNet's: rounded targets,
    # quarter offset toward the higher neighbour).
    decoder: str = "dark"
    use_gt_boxes: bool = True
    detection_file: str | None = None
    box_score_threshold: float = 0.0
    in_vis_threshold: float = 0.2  # rescoring: joints above this count in the mean
    oks_nms_threshold: float = 0.9


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    output_dir: str = "runs"
    name: str = "experiment"


CHOICES = {
    "data.dataset": tuple(DATASETS),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "test.decoder": ("dark", "msra"),
    "data.convention": CONVENTIONS,
}


def _type_name(kind) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        kind, str(kind)
    )


def _convert(value, kind, key: str):
    """Check ``value`` against the annotation ``kind``; return it converted."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        return _convert(value, inner[0], key)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(kind, value, key)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept what float() accepts.
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {kind}")


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"unknown key {where!r}; valid keys here: {', '.join(sorted(known))}")
    kwargs = {}
    for name in known & set(values):
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(values[name], hints[name], key)
        if key in CHOICES and kwargs[name] not in CHOICES[key]:
            raise ConfigError(f"{key}: {kwargs[name]!r} is not one of {', '.join(CHOICES[key])}")
    return cls(**kwargs)


def _validate(config: ExperimentConfig) -> ExperimentConfig:
    from ldnet.models import PRESETS

    kind = config.data.kind
    config.data.train_split = config.data.train_split or kind.train_split
    config.data.val_split = config.data.val_split or kind.val_split
    config.data.input_size = config.data.input_size or list(kind.input_size)
    if config.model.name not in PRESETS:
        raise ConfigError(
            f"model.name: unknown model {config.model.name!r}; choose from {', '.join(PRESETS)}"
        )
    size = config.data.input_size
    if len(size) != 2 or any(s <= 0 or s % 32 for s in size):
        raise ConfigError(
            f"data.input_size: expected [height, width], positive multiples of 32, got {size}"
        )
    for key, value in (
        ("train.epochs", config.train.epochs),
        ("train.batch_size", config.train.batch_size),
        ("test.batch_size", config.test.batch_size),
        ("train.val_every", config.train.val_every),
    ):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if config.train.lr <= 0:
        raise ConfigError(f"train.lr: must be positive, got {config.train.lr}")
    return config


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.lr=0.0005")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return values


def config_from_dict(values: dict, overrides: list[str] = ()) -> ExperimentConfig:
    values = apply_overrides(dict(values or {}), list(overrides))
    return _validate(_build(ExperimentConfig, values))


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file, apply ``key=value`` overrides, validate."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return config_from_dict(values, overrides)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
