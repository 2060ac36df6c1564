"""What many test files share: the real data beside the checkout, checkpoints written the way
`ldnet train` writes them, and LDConv networks made sensitive for parity checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ldnet.checkpoint import atomic_save
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
