"""The shipped configs hold the reference recipe's values (HRNet experiments/*.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ldnet.config import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
# Configs that document their own sigma (CPU-sized inputs, README "Demo" / "Real data checks").
OWN_RECIPE = {"synthetic_ldnet_s_128x96.yaml", "coco_mini_ldnet_memorise.yaml"}


def test_every_config_is_checked():
    assert len(CONFIGS) == 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_follows_the_reference_recipe(path):
    config = load_config(path)
    height, width = config.data.input_size
    if path.name.startswith("mpii_"):
        assert config.data.augment.half_body_prob == 0.0  # PROB_HALF_BODY -1.0 in HRNet's MPII
        assert config.data.sigma == 2.0
    if (height, width) == (384, 288):
        assert config.data.sigma == 3.0  # SIGMA 3 in HRNet's w32_384x288
    elif height == 256 and path.name not in OWN_RECIPE:
        assert config.data.sigma == 2.0
    if path.name.startswith("coco_") and path.name not in OWN_RECIPE:
        assert config.data.augment.half_body_prob == 0.3
        assert config.test.detection_file == (
            "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
        )
    if config.test.detection_file is not None:
        assert not Path(config.test.detection_file).is_absolute()
        assert not config.test.detection_file.startswith(config.data.root)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_batch_size_says_what_it_reproduces(path):
    """`train.batch_size` is per process: the comment above it names the global batch, lr and
    the figure they give (or that the figure is unstated)."""
    text = path.read_text()
    train = text[text.index("\ntrain:") : text.index("\ntest:")]
    comment = re.search(r"((?:\n  #[^\n]*)+)\n  batch_size: (\d+)", train)
    assert comment is not None, "no comment right above train.batch_size"
    words = " ".join(line.strip(" #") for line in comment.group(1).splitlines())
    assert "Per process" in words
    assert f"{load_config(path).train.batch_size} on one process" in words or "4 GPUs x 32" in words
    if path.name not in OWN_RECIPE:
        assert "4 GPUs x 32 = 128" in words
        assert "torchrun --nproc_per_node 4 -m ldnet.cli train configs/" + path.name in words
    if "_ldnet_" in path.name and path.name not in OWN_RECIPE:
        assert "unstated" in words
