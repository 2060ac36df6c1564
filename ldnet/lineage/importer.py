"""Official HRNet and MMPose checkpoints -> ldnet weights and their record.

The weights keep the coordinate convention they were trained with ("hrnet": crop centre at
W / 2, heatmap pixel u at 4u, the flipped heatmap shifted one pixel), and they are decoded the
way HRNet tested them unless the caller says otherwise: the quarter-pixel offset (``msra``)
and HRNet's Gaussian (sigma 2; 3 at 384x288, as its configs). The record written with them
says so, and names the file they came from and its sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ldnet.checkpoint import FORMAT, CheckpointError, atomic_save
from ldnet.data.keypoints import KEYPOINT_SETS
from ldnet.inference.record import ModelRecord

from .hrnet_names import joints_of, name_map, to_ours, width_of
from .layouts import CLASSIFICATION_MODULES, WeightsFile, read_file, recognise

HRNET_MODEL = "hrnet_w32"
HRNET_WIDTH = 32
POSE_LAYOUTS = ("hrnet", "mmpose-0.x", "mmpose-1.x")


def import_checkpoint(
    source: Path,
    *,
    model: str,
    input_size: tuple[int, int],
    dataset: str | None = None,
    decoder: str | None = None,
) -> tuple[dict, ModelRecord, dict]:
    """Our state dict, its record and its provenance (file name, sha256, layout) for the
    official HRNet / MMPose / DDP-wrapped checkpoint ``source``."""
    source = Path(source)
    weights = recognise(read_file(source), str(source))
    return import_weights(
        weights, source, model=model, input_size=input_size, dataset=dataset, decoder=decoder
    )


def import_weights(
    weights: WeightsFile,
    source: Path,
    *,
    model: str,
    input_size: tuple[int, int],
    dataset: str | None = None,
    decoder: str | None = None,
) -> tuple[dict, ModelRecord, dict]:
    """``import_checkpoint`` for a file already read (``ldnet.inference.load_model``)."""
    from ldnet.models import build_model

    name = str(source)
    if weights.layout not in POSE_LAYOUTS:
        hint = {
            "imagenet": "; it initialises training: model.init_weights=FILE",
            "ldnet": "; use it as it is",
        }.get(weights.layout, "")
        raise CheckpointError(
            f"{name}: expected a pose checkpoint (official HRNet, MMPose 0.x or 1.x), found "
            f"{weights.description}{hint}"
        )
    if model != HRNET_MODEL:
        raise CheckpointError(
            f"{name}: {weights.description} holds HRNet weights, which only model "
            f"{HRNET_MODEL!r} can take, not {model!r}"
        )
    _check_width(weights, name)
    joints = joints_of(weights.state)
    if joints is None:
        raise CheckpointError(f"{name}: no final_layer.weight (a 1x1 heatmap layer) to import")
    dataset = _joint_set(name, joints, dataset)
    network = build_model(model, joints)
    state = to_ours(weights.state, network.state_dict(), name)
    network.load_state_dict(state, strict=True)  # every tensor, every shape: checked above
    record = ModelRecord(
        model=model,
        num_joints=joints,
        dataset=dataset,
        input_size=tuple(input_size),
        codec=decoder or "msra",
        sigma=3.0 if tuple(input_size) == (384, 288) else 2.0,
        convention="hrnet",
    )
    provenance = {"file": source.name, "sha256": sha256_of(source), "layout": weights.layout_tag}
    return state, record, provenance


def backbone_in_our_names(
    weights: WeightsFile, model: torch.nn.Module, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """For ``model.init_weights``: the file's tensors under our names where HRNet-W32 has them
    (the rest keep theirs, so the caller reports them as unexpected), and the names of the
    ImageNet network's classification-only modules, skipped."""
    from ldnet.models import PRESETS

    spec = getattr(model, "spec", None)
    if spec is None or spec.with_joints(17) != PRESETS[HRNET_MODEL]:
        raise CheckpointError(
            f"{source}: {weights.description} holds HRNet weights, which initialise only "
            f"model {HRNET_MODEL!r}"
        )
    _check_width(weights, source)
    theirs_to_ours = {theirs: ours for ours, theirs in name_map(model.state_dict()).items()}
    state, skipped = {}, []
    for name, tensor in weights.state.items():
        if weights.layout == "imagenet" and name.startswith(CLASSIFICATION_MODULES):
            skipped.append(name)
        else:
            state[theirs_to_ours.get(name, name)] = tensor
    return state, skipped


def write_imported(
    source: Path,
    output: Path,
    *,
    model: str,
    input_size: tuple[int, int],
    dataset: str | None = None,
    decoder: str | None = None,
) -> Path:
    """Import ``source`` and write it as an ldnet checkpoint to ``output`` (atomically: on
    any error nothing is written)."""
    state, record, provenance = import_checkpoint(
        source, model=model, input_size=input_size, dataset=dataset, decoder=decoder
    )
    return atomic_save(imported_checkpoint(state, record, provenance), output)


def imported_checkpoint(state: dict, record: ModelRecord, provenance: dict) -> dict:
    """The checkpoint of imported weights: the record ``ldnet train`` writes, the weights and
    where they came from (no optimiser: nothing to resume)."""
    return {
        "format": FORMAT,
        **record.to_checkpoint(),
        "state_dict": state,
        "source": dict(provenance),
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_width(weights: WeightsFile, source: str) -> None:
    width = width_of(weights.state)
    if width is None:
        raise CheckpointError(f"{source}: no transition1.0.0.weight, so no HRNet width to check")
    if width != HRNET_WIDTH:
        raise CheckpointError(
            f"{source}: HRNet-W{width} weights (width {width}), not W{HRNET_WIDTH}: "
            f"{HRNET_MODEL} cannot hold them"
        )


def _joint_set(source: str, joints: int, dataset: str | None) -> str:
    """The joint set: ``dataset`` if its joint count agrees, else the one with ``joints``."""
    if dataset is not None:
        wanted = KEYPOINT_SETS[dataset].num_joints
        if joints != wanted:
            raise CheckpointError(
                f"{source}: the final layer has {joints} joints, but {dataset} has {wanted}"
            )
        return dataset
    matches = [name for name, keypoints in KEYPOINT_SETS.items() if keypoints.num_joints == joints]
    if len(matches) != 1:
        known = ", ".join(f"{n} {k.num_joints}" for n, k in KEYPOINT_SETS.items())
        raise CheckpointError(
            f"{source}: the final layer has {joints} joints, which is no joint set we know "
            f"({known})"
        )
    return matches[0]
