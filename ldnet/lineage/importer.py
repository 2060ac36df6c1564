"""Official HRNet, MMPose and LDNet checkpoints -> ldnet weights and their record.

HRNet's and MMPose's files go into ``hrnet_w32``; the official LDNet code's (``NBU-CVMI/LDNet``,
a fork of HRNet's: the same training and test pipeline) into the preset of its width and block
order (``ldnet_w32``, ``ldnet_w48``, ``ldnet_w32_ld3``, ``ldnet_w48_ld3``). Every tensor is
checked for name and shape, and loaded strictly.

The weights keep the coordinate convention they were trained with ("hrnet": crop centre at
W / 2, heatmap pixel u at 4u, the flipped heatmap shifted one pixel), and they are decoded the
way HRNet tested them unless the caller says otherwise: the quarter-pixel offset (``msra``)
and HRNet's Gaussian (sigma 2; 3 at 384x288, as its configs). The record written with them
says so, names the file they came from and its sha256, and gives the kernel attention's
temperature: an official file does not hold it; the official model starts at T = 34 and its
test path builds the model afresh, so 34 unless ``temperature`` says otherwise (a model
trained with the temperature annealed to 1 is run at 1).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ldnet.checkpoint import FORMAT, CheckpointError, atomic_save
from ldnet.data.keypoints import KEYPOINT_SETS
from ldnet.models.record import ModelRecord

from . import ldnet_names
from .hrnet_names import joints_of, name_map, to_ours, width_of
from .layouts import CLASSIFICATION_MODULES, WeightsFile, read_file, recognise

HRNET_MODEL = "hrnet_w32"
HRNET_WIDTH = 32
POSE_LAYOUTS = ("hrnet", "mmpose-0.x", "mmpose-1.x")
OFFICIAL_LDNET = "ldnet-official"
LDNET_MODELS = tuple(ldnet_names.PRESETS.values())


def import_checkpoint(
    source: Path,
    *,
    model: str,
    input_size: tuple[int, int],
    dataset: str | None = None,
    decoder: str | None = None,
    temperature: float | None = None,
) -> tuple[dict, ModelRecord, dict]:
    """Our state dict, its record and its provenance (file name, sha256, layout) for the
    official HRNet / MMPose / LDNet (bare or DDP-wrapped) checkpoint ``source``."""
    source = Path(source)
    weights = recognise(read_file(source), str(source))
    return import_weights(
        weights,
        source,
        model=model,
        input_size=input_size,
        dataset=dataset,
        decoder=decoder,
        temperature=temperature,
    )


def import_weights(
    weights: WeightsFile,
    source: Path,
    *,
    model: str,
    input_size: tuple[int, int],
    dataset: str | None = None,
    decoder: str | None = None,
    temperature: float | None = None,
) -> tuple[dict, ModelRecord, dict]:
    """``import_checkpoint`` for a file already read (``ldnet.inference.load_model``)."""
    from ldnet.models import attention_temperature, build_model, set_attention_temperature

    name = str(source)
    ldnet = weights.layout == OFFICIAL_LDNET
    if ldnet:
        _check_ldnet_model(weights, name, model)
    elif weights.layout in POSE_LAYOUTS:
        _check_hrnet_model(weights, name, model)
    else:
        hint = {
            "imagenet": "; it initialises training: model.init_weights=FILE",
            "ldnet": "; use it as it is",
        }.get(weights.layout, "")
        raise CheckpointError(
            f"{name}: expected a pose checkpoint (official HRNet or LDNet, MMPose 0.x or 1.x), "
            f"found {weights.description}{hint}"
        )
    joints = (ldnet_names.joints_of if ldnet else joints_of)(weights.state)
    if joints is None:
        raise CheckpointError(f"{name}: no final_layer.weight (a 1x1 heatmap layer) to import")
    dataset = _joint_set(name, joints, dataset)
    network = build_model(model, joints)
    if temperature is not None:
        if attention_temperature(network) is None:
            raise CheckpointError(
                f"{name}: model {model!r} has no kernel attention, so no temperature to set"
            )
        set_attention_temperature(network, _positive_temperature(temperature, name))
    if ldnet:
        state = ldnet_names.to_ours(
            weights.state, network.state_dict(), name, model, weights.description
        )
    else:
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
        temperature=attention_temperature(network),
    )
    provenance = {"file": source.name, "sha256": sha256_of(source), "layout": weights.layout_tag}
    return state, record, provenance


def what_to_add(weights: WeightsFile, source: str) -> str:
    """The message for a foreign file given without ``--model`` / ``--input``: what to add
    to import it as it loads, or how to convert it once (the preset named where the file's
    tensors say which: an official LDNet file's width and block order)."""
    model = HRNET_MODEL
    if weights.layout == OFFICIAL_LDNET:
        model = ldnet_names.preset_of(weights.state) or "ldnet_w32"
    return (
        f"{source}: {weights.description}, not an ldnet checkpoint: give --model "
        f"{model} and --input HxW to import it as it loads, or convert it once with "
        f"`ldnet weights import {source} --model {model} --input HxW --output OUT.pt`"
    )


def _check_hrnet_model(weights: WeightsFile, name: str, model: str) -> None:
    if model != HRNET_MODEL:
        raise CheckpointError(
            f"{name}: {weights.description} holds HRNet weights, which only model "
            f"{HRNET_MODEL!r} can take, not {model!r}"
        )
    _check_width(weights, name)


def _check_ldnet_model(weights: WeightsFile, name: str, model: str) -> None:
    """``model`` must be one of the presets that are the official network (or an alias)."""
    from ldnet.models import PRESETS

    official = {PRESETS[preset] for preset in LDNET_MODELS}
    if PRESETS.get(model) not in official:
        fits = ldnet_names.preset_of(weights.state)
        hint = f" (this one: {ldnet_names.describe(weights.state)}, --model {fits})" if fits else ""
        raise CheckpointError(
            f"{name}: {weights.description} holds LDNet weights, which only models "
            f"{', '.join(LDNET_MODELS)} can take, not {model!r}{hint}"
        )


def _positive_temperature(value, name: str) -> float:
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not 0 < temperature < float("inf"):
        raise CheckpointError(f"{name}: the temperature must be a positive number, got {value!r}")
    return temperature


def backbone_in_our_names(
    weights: WeightsFile, model: torch.nn.Module, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """For ``model.init_weights``: the file's tensors under our names where HRNet-W32 (or,
    for an official LDNet file, the LDNet preset) has them (the rest keep theirs, so the
    caller reports them as unexpected), and the names of the ImageNet network's
    classification-only modules, skipped."""
    from ldnet.models import PRESETS

    if weights.layout == OFFICIAL_LDNET:
        template = model.state_dict()
        if not ldnet_names.takes_official_names(template):
            raise CheckpointError(
                f"{source}: {weights.description} holds LDNet weights, which initialise only "
                f"the models {', '.join(LDNET_MODELS)}"
            )
        theirs_to_ours = {theirs: ours for ours, theirs in ldnet_names.name_map(template).items()}
        return {theirs_to_ours.get(n, n): t for n, t in weights.state.items()}, []
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
    temperature: float | None = None,
) -> Path:
    """Import ``source`` and write it as an ldnet checkpoint to ``output`` (atomically: on
    any error nothing is written)."""
    state, record, provenance = import_checkpoint(
        source,
        model=model,
        input_size=input_size,
        dataset=dataset,
        decoder=decoder,
        temperature=temperature,
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
