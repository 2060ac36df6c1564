"""What a network needs around it, read from its weights file rather than guessed.

A training checkpoint names its architecture, joint count, dataset (hence joint set) and
input size (``engine.train.checkpoint_payload``); an exported ONNX file carries the same in
its metadata. Both are described by one ``ModelInfo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ldnet.data.keypoints import KEYPOINT_SETS, KeypointSet
from ldnet.engine.checkpoint import CheckpointError, load_checkpoint, load_weights_strict
from ldnet.models import PRESETS, build_model


@dataclass(frozen=True)
class ModelInfo:
    name: str  # preset, e.g. "ldnet"
    num_joints: int
    dataset: str  # "coco" | "mpii" | "crowdpose": the joint set
    input_size: tuple[int, int]  # (height, width) of the crop
    decoder: str = "dark"

    @property
    def keypoint_set(self) -> KeypointSet:
        return KEYPOINT_SETS[self.dataset]

    def to_metadata(self) -> dict[str, str]:
        height, width = self.input_size
        return {
            "model": self.name,
            "num_joints": str(self.num_joints),
            "dataset": self.dataset,
            "input_size": f"{height}x{width}",
            "decoder": self.decoder,
        }

    def check(self, source: str, expect_dataset: str | None = None) -> ModelInfo:
        """Stop when the description is inconsistent or not the joint set asked for."""
        if self.dataset not in KEYPOINT_SETS:
            raise CheckpointError(
                f"{source}: unknown dataset {self.dataset!r}; expected one of "
                f"{', '.join(KEYPOINT_SETS)}"
            )
        expected_joints = KEYPOINT_SETS[self.dataset].num_joints
        if self.num_joints != expected_joints:
            raise CheckpointError(
                f"{source}: {self.num_joints} joints, but the {self.dataset} joint set has "
                f"{expected_joints}"
            )
        if expect_dataset is not None and expect_dataset != self.dataset:
            wanted = KEYPOINT_SETS[expect_dataset].num_joints
            raise CheckpointError(
                f"{source}: weights are for the {self.dataset} joint set ({self.num_joints} "
                f"joints), not {expect_dataset} ({wanted})"
            )
        return self


def info_from_checkpoint(data: dict, source: str) -> ModelInfo:
    model = data.get("model")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    if not isinstance(model, dict) or "name" not in model or "num_joints" not in model:
        raise CheckpointError(
            f"{source}: no model description (name, num_joints); "
            "expected a checkpoint written by `ldnet train`"
        )
    config_data = config.get("data", {}) if isinstance(config.get("data"), dict) else {}
    config_test = config.get("test", {}) if isinstance(config.get("test"), dict) else {}
    dataset = model.get("dataset", config_data.get("dataset", "coco"))
    input_size = model.get("input_size", config_data.get("input_size"))
    if not (isinstance(input_size, (list, tuple)) and len(input_size) == 2):
        raise CheckpointError(f"{source}: no input size in the checkpoint")
    if model["name"] not in PRESETS:
        raise CheckpointError(f"{source}: unknown model {model['name']!r}")
    return ModelInfo(
        name=str(model["name"]),
        num_joints=int(model["num_joints"]),
        dataset=str(dataset),
        input_size=(int(input_size[0]), int(input_size[1])),
        decoder=str(config_test.get("decoder", "dark")),
    )


def load_model(
    path: str | Path, expect_dataset: str | None = None
) -> tuple[torch.nn.Module, ModelInfo]:
    """Eval-mode network and its description from a training checkpoint (weights_only)."""
    source = str(path)
    data = load_checkpoint(path)
    info = info_from_checkpoint(data, source).check(source, expect_dataset)
    model = load_weights_strict(build_model(info.name, info.num_joints), data, source, info.name)
    return model.eval(), info


def info_from_onnx(path: str | Path, expect_dataset: str | None = None) -> ModelInfo:
    """The description an ``ldnet export onnx`` file carries in its metadata."""
    from ldnet.export import read_metadata

    source = str(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{source}: no such ONNX file")
    try:
        meta = read_metadata(path)
    except Exception as error:  # onnx raises protobuf's DecodeError and others
        raise CheckpointError(f"{source}: not a readable ONNX file ({error})") from None
    try:
        height, width = (int(v) for v in meta["input_size"].lower().split("x"))
        info = ModelInfo(
            name=meta["model"],
            num_joints=int(meta["num_joints"]),
            dataset=meta["dataset"],
            input_size=(height, width),
            decoder=meta.get("decoder", "dark"),
        )
    except (KeyError, ValueError):
        raise CheckpointError(
            f"{source}: no ldnet metadata (model, num_joints, dataset, input_size); "
            "export it with `ldnet export onnx`"
        ) from None
    return info.check(source, expect_dataset)
