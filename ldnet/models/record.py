"""What a weights file says about itself: the network, its joint set, and the codec and
coordinate convention it was trained with.

The record is written into every checkpoint (``ldnet train``) and every exported ONNX file
(``ldnet export onnx``), and read back by everything that runs the weights: ``ldnet test``,
validation inside ``ldnet train`` and ``PoseEstimator``. The codec is built from the record
alone, so a model trained with sigma 0.75 is decoded with sigma 0.75 wherever it runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ldnet.checkpoint import CheckpointError
from ldnet.data.codecs import CODECS, CONVENTIONS, MSRAHeatmap, build_codec
from ldnet.data.keypoints import KEYPOINT_SETS, KeypointSet

# CONVENTIONS (from the codecs): how pixels, crops and heatmaps line up. "ldnet": half-pixel
# centred (crop centre at ((W - 1) / 2, (H - 1) / 2), heatmap pixel u at 4u + 1.5, flip test
# without a shift). "hrnet": HRNet's and MMPose's (non-UDP) convention that imported
# HRNet-trained weights carry (crop centre at W / 2, heatmap pixel u at 4u, flipped heatmap
# shifted one pixel). A test-time property of the weights: training always writes "ldnet".
__all__ = ["CONVENTIONS", "ModelRecord", "record_from_checkpoint", "record_from_metadata"]
# A checkpoint written before the record existed was trained like this.
LEGACY_CODEC, LEGACY_SIGMA, LEGACY_CONVENTION = "dark", 2.0, "ldnet"


@dataclass(frozen=True)
class ModelRecord:
    """Everything needed around a network to turn its heatmaps into image keypoints."""

    model: str  # preset name, e.g. "ldnet"
    num_joints: int
    dataset: str  # the joint set: "coco" | "mpii" | "crowdpose"
    input_size: tuple[int, int]  # (height, width) of the crop
    codec: str = "dark"  # "msra" | "dark"
    sigma: float = 2.0  # Gaussian of the training targets (and of DARK's blur)
    heatmap_size: tuple[int, int] | None = None  # (height, width); None: input / 4
    convention: str = "ldnet"
    # The softmax temperature of the network's kernel attention (LDConv), the one the weights
    # are run at; None: the network has none, or the record predates it (the preset's own, 34).
    temperature: float | None = None

    def __post_init__(self):
        if self.heatmap_size is None:
            height, width = self.input_size
            object.__setattr__(self, "heatmap_size", (height // 4, width // 4))

    @property
    def keypoint_set(self) -> KeypointSet:
        return KEYPOINT_SETS[self.dataset]

    def build_codec(self) -> MSRAHeatmap:
        return build_codec(
            self.codec, self.input_size, self.heatmap_size, self.sigma, self.convention
        )

    def build_network(self):
        """The network the record describes (untrained), its kernel attention at the
        recorded temperature."""
        from ldnet.models import build_model, set_attention_temperature

        network = build_model(self.model, self.num_joints)
        if self.temperature is not None:
            set_attention_temperature(network, self.temperature)
        return network

    # -- checkpoint and ONNX forms ---------------------------------------------------------
    def to_checkpoint(self) -> dict:
        """The ``model``, ``codec`` and ``convention`` entries of a checkpoint (the
        temperature, where there is one, in ``model``)."""
        model = {
            "name": self.model,
            "num_joints": self.num_joints,
            "dataset": self.dataset,
            "input_size": list(self.input_size),
        }
        if self.temperature is not None:
            model["temperature"] = float(self.temperature)
        return {
            "model": model,
            "codec": {
                "name": self.codec,
                "sigma": self.sigma,
                "input_size": list(self.input_size),
                "heatmap_size": list(self.heatmap_size),
            },
            "convention": self.convention,
        }

    def to_metadata(self) -> dict[str, str]:
        """The same, as the strings of ONNX ``metadata_props`` (the temperature for the
        record only: the exported graph holds it as a constant)."""
        temperature = {} if self.temperature is None else {"temperature": repr(self.temperature)}
        return {
            "model": self.model,
            "num_joints": str(self.num_joints),
            "dataset": self.dataset,
            "input_size": _size_text(self.input_size),
            "codec": self.codec,
            "sigma": repr(float(self.sigma)),
            "heatmap_size": _size_text(self.heatmap_size),
            "convention": self.convention,
            **temperature,
        }

    def check(
        self,
        source: str,
        *,
        dataset: str | None = None,
        model: str | None = None,
        num_joints: int | None = None,
    ) -> ModelRecord:
        """Stop when the weights are not what the caller asks for."""
        if model is not None and model != self.model:
            raise CheckpointError(f"{source}: weights are for model {self.model!r}, not {model!r}")
        if num_joints is not None and num_joints != self.num_joints:
            raise CheckpointError(
                f"{source}: weights are for {self.num_joints} joints, not {num_joints}"
            )
        if dataset is not None and dataset != self.dataset:
            wanted = KEYPOINT_SETS[dataset].num_joints
            raise CheckpointError(
                f"{source}: weights are for the {self.dataset} joint set ({self.num_joints} "
                f"joints), not {dataset} ({wanted})"
            )
        return self


def _size_text(size) -> str:
    return f"{size[0]}x{size[1]}"


# -- reading, with one line naming the file and the field on any problem -------------------
class _Fields:
    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, problem: str):
        raise CheckpointError(f"{self.source}: codec record field {field!r} {problem}")

    def size(self, field: str, value) -> tuple[int, int]:
        if isinstance(value, str):
            value = value.lower().split("x")
            try:
                value = [int(v) for v in value]
            except ValueError:
                self.fail(field, f"is not HxW: {value!r}")
        ok = isinstance(value, (list, tuple)) and len(value) == 2
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            self.fail(field, f"is not two integers (height, width): {value!r}")
        if min(value) <= 0:
            self.fail(field, f"must be positive, got {list(value)}")
        return int(value[0]), int(value[1])

    def choice(self, field: str, value, options) -> str:
        if value not in options:
            self.fail(field, f"is {value!r}, expected one of {', '.join(options)}")
        return str(value)

    def positive(self, field: str, value) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(field, f"is not a number: {value!r}")
        if isinstance(value, bool) or not number > 0 or number == float("inf"):
            self.fail(field, f"must be a positive number, got {value!r}")
        return number

    def count(self, field: str, value) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(field, f"is not an integer: {value!r}")
        if isinstance(value, bool) or number != float(value) or number <= 0:
            self.fail(field, f"must be a positive integer, got {value!r}")
        return number


def _record(fields: _Fields, values: dict) -> ModelRecord:
    from ldnet.models import PRESETS

    record = ModelRecord(
        model=fields.choice("model", values["model"], tuple(PRESETS)),
        num_joints=fields.count("num_joints", values["num_joints"]),
        dataset=fields.choice("dataset", values["dataset"], tuple(KEYPOINT_SETS)),
        input_size=fields.size("input_size", values["input_size"]),
        codec=fields.choice("codec", values["codec"], tuple(CODECS)),
        sigma=fields.positive("sigma", values["sigma"]),
        heatmap_size=fields.size("heatmap_size", values["heatmap_size"]),
        convention=fields.choice("convention", values["convention"], CONVENTIONS),
        temperature=(
            None
            if values.get("temperature") is None
            else fields.positive("temperature", values["temperature"])
        ),
    )
    expected = KEYPOINT_SETS[record.dataset].num_joints
    if record.num_joints != expected:
        fields.fail(
            "num_joints",
            f"is {record.num_joints}, but the {record.dataset} joint set has {expected}",
        )
    return record


def record_from_checkpoint(data: dict, source: str, note=None) -> ModelRecord:
    """The record of a checkpoint written by ``ldnet train`` (or by this module).

    A checkpoint from before the codec record gets the codec it was trained with by then
    (its config's decoder and sigma, or DARK with sigma 2) and ``note`` (default: print to
    stderr) says so in one line.
    """
    fields = _Fields(source)
    model = data.get("model")
    if not isinstance(model, dict) or "name" not in model or "num_joints" not in model:
        raise CheckpointError(
            f"{source}: no model description (name, num_joints); "
            "expected a checkpoint written by `ldnet train`"
        )
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    config_data = config.get("data") if isinstance(config.get("data"), dict) else {}
    config_test = config.get("test") if isinstance(config.get("test"), dict) else {}
    codec = data.get("codec")
    if codec is None:
        codec = {
            "name": config_test.get("decoder", LEGACY_CODEC),
            "sigma": config_data.get("sigma", LEGACY_SIGMA),
        }
        (note or _print_note)(
            f"note: {source}: no codec record (an older checkpoint); decoding with "
            f"{codec['name']}, sigma {codec['sigma']}, the {LEGACY_CONVENTION} convention"
        )
    elif not isinstance(codec, dict):
        fields.fail("codec", f"is a {type(codec).__name__}, expected a mapping")
    input_size = model.get("input_size", config_data.get("input_size"))
    if input_size is None:
        fields.fail("input_size", "is missing")
    input_size = fields.size("input_size", input_size)
    values = {
        "model": model["name"],
        "num_joints": model["num_joints"],
        "dataset": model.get("dataset", config_data.get("dataset", "coco")),
        "input_size": input_size,
        "codec": codec.get("name"),
        "sigma": codec.get("sigma"),
        "heatmap_size": codec.get("heatmap_size", [input_size[0] // 4, input_size[1] // 4]),
        "convention": data.get("convention", LEGACY_CONVENTION),
        "temperature": model.get("temperature"),
    }
    record = _record(fields, values)
    if "input_size" in codec and fields.size("codec.input_size", codec["input_size"]) != (
        record.input_size
    ):
        fields.fail("codec.input_size", f"{codec['input_size']} differs from the model's")
    return record


def record_from_metadata(meta: dict[str, str], source: str) -> ModelRecord:
    """The record an ``ldnet export onnx`` file carries in its metadata."""
    fields = _Fields(source)
    required = ("model", "num_joints", "dataset", "input_size")
    if any(key not in meta for key in required):
        raise CheckpointError(
            f"{source}: no ldnet metadata (model, num_joints, dataset, input_size); "
            "export it with `ldnet export onnx`"
        )
    values = dict(meta)
    if "codec" not in meta:  # exported before the codec record: decoded as it was then
        values.setdefault("codec", meta.get("decoder", LEGACY_CODEC))
        values.setdefault("sigma", LEGACY_SIGMA)
        height, width = fields.size("input_size", meta["input_size"])
        values.setdefault("heatmap_size", [height // 4, width // 4])
        print(
            f"note: {source}: no codec record (an older export); decoding with "
            f"{values['codec']}, sigma {values['sigma']}",
            file=sys.stderr,
        )
    for key in ("sigma", "heatmap_size"):
        if key not in values:
            fields.fail(key, "is missing")
    values.setdefault("convention", LEGACY_CONVENTION)
    return _record(fields, values)


def _print_note(message: str) -> None:
    print(message, file=sys.stderr)
