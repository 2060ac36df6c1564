"""What many test files share: the real data beside the checkout, checkpoints written the way
`ldnet train` writes them, and LDConv networks made sensitive for parity checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ldnet.checkpoint import atomic_save
from ldnet.cli import main
from ldnet.config import config_from_dict
from ldnet.data.keypoints import KEYPOINT_SETS
from ldnet.engine.train import checkpoint_payload
from ldnet.models import build_model
from ldnet.models.ldconv import DynamicConv2d

# ../shared/data: real benchmark samples and COCO-MINI (its README); CI has it beside the
# clone too, so tests on it run and never skip.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_MINI = SHARED / "coco-mini"
VAL2017 = COCO_MINI / "images" / "val2017"
VAL_ANN = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
VIDEO = SHARED / "samples" / "video" / "posetrack18_000001.mp4"


def training_checkpoint(
    path: Path, config_values: dict, prepare: Callable[[nn.Module], None] | None = None
) -> Path:
    """A seeded checkpoint of the config's model, written the way `ldnet train` writes it
    (record, optimiser and scaler state); ``prepare`` may change the weights first."""
    torch.manual_seed(0)
    config = config_from_dict(config_values)
    model = build_model(config.model.name, KEYPOINT_SETS[config.data.dataset].num_joints)
    if prepare is not None:
        prepare(model)
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return atomic_save(checkpoint_payload(config, model, optimizer, scaler, 1, 1, 0.0), path)


def random_checkpoint(path: Path, model: str = "ldnet_s", dataset: str = "coco", size=(64, 64)):
    """A random-init checkpoint of ``model`` for ``dataset`` at input ``size`` (H, W)."""
    return training_checkpoint(
        path, {"model": {"name": model}, "data": {"dataset": dataset, "input_size": list(size)}}
    )


def spread(net: nn.Module) -> nn.Module:
    """At initialisation (and at T = 34) the kernel attention is near-uniform (every sample
    mixes the same kernel) and BatchNorm is the identity: a parity check would pass on almost
    anything. Large attention weights give logits far apart even after division by 34."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, DynamicConv2d):
                module.attention.fc1.weight.normal_(0, 1)
                module.attention.fc2.weight.normal_(0, 40)
                module.attention.fc2.bias.normal_(0, 20)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


# -- the command line in this process ---------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`ldnet ARGS` through ``ldnet.cli.main``: exit code, stdout, stderr."""
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def only_line(text: str) -> str:
    """The one non-empty line of ``text`` (fails on none or several)."""
    lines = [line for line in text.strip().splitlines() if line]
    assert len(lines) == 1, text
    return lines[0]


# -- HRNet's own test pipeline (tests/fixtures/*pipeline*.json) -------------------------------
# A get_final_preds decision (argmax, sign of the maximum, quarter-offset signs) at least this
# far from a tie cannot flip between two float32 runs (their heatmaps differ by ~6e-5).
CLEAR_MARGIN = 1e-3


def match_people(fixture_people, rows) -> list[tuple[dict, np.ndarray]]:
    """Pair each reference person with the result row of its image nearest to it."""
    pairs = []
    for person in fixture_people:
        candidates = [
            np.array(row["keypoints"]).reshape(17, 3)
            for row in rows
            if row["image_id"] == person["image_id"]
        ]
        reference = np.array(person["keypoints"])
        distance = [np.abs(c[:, :2] - reference).max() for c in candidates]
        pairs.append((person, candidates[int(np.argmin(distance))]))
    return pairs


def import_then_predict_differences(
    capsys, tmp_path: Path, people: list[dict], source: Path, model: str
) -> tuple[np.ndarray, np.ndarray]:
    """``ldnet weights import SOURCE --model MODEL`` then ``ldnet predict`` (MSRA decoding, as
    HRNet's get_final_preds) on the fixture's people with their boxes (written to
    ``tmp_path / "boxes.json"``). Returns, per person and joint, the largest |x or y|
    difference from the pipeline's keypoints, the mask of decisions clear of ties (only those
    can be compared) and our (x, y, score) rows matched to the fixture's people."""
    images = tmp_path / "images"
    images.mkdir()
    for name in {p["file_name"] for p in people}:
        (images / name).symlink_to(VAL2017 / name)
    detections = tmp_path / "boxes.json"
    boxes = [
        {"image_id": p["image_id"], "category_id": 1, "bbox": p["bbox"], "score": 1.0}
        for p in people
    ]
    detections.write_text(json.dumps(boxes))
    imported = tmp_path / f"{model}_coco_256x192.pt"
    code, _, err = run_cli(
        capsys, "weights", "import", source, "--model", model, "--input", "256x192",
        "--output", imported,
    )  # fmt: skip
    assert code == 0, err
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "predict", images, "--weights", imported, "--detections", detections,
        "--decoder", "msra", "--output", out, "--no-overlay", "--quiet", "--threads", "2",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == len(people)
    ours = np.stack([row for _, row in match_people(people, rows)])
    reference = np.array([p["keypoints"] for p in people])
    clear = np.array([p["margins"] for p in people]) >= CLEAR_MARGIN
    return np.abs(ours[..., :2] - reference).max(axis=-1), clear, ours
