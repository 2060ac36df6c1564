"""The shipped configs hold their reference recipe's values: the official LDNet release's
experiment files for the ldnet configs, HRNet's experiments/*.yaml for the hrnet ones.

The official values are transcribed below, file by file, with the release's own key names.
Set LDNET_OFFICIAL_CODE to a checkout's LDNet_Code folder (NBU-CVMI/LDNet) and the
transcription itself is checked against the files and the release's optimiser code.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import yaml

from ldnet.config import load_config
from ldnet.engine.data import detection_path, record_of

CONFIGS_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))
# Configs that document their own sigma (CPU-sized inputs, docs/measurements.md "Demo" and
# "Real data checks").
OWN_RECIPE = {"synthetic_ldnet_s_128x96.yaml", "coco_mini_ldnet_memorise.yaml"}
VAL2017_BOXES = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"

# -- the official release's experiment files (LDNet_Code/experiments/...) ---------------------
_W18 = "coco/dysmallnet_spattention/w18_{}_adam_lr1e-3.yaml"
_W36 = "coco/dysmallnet_spattention/w36_{}_adam_lr1e-3.yaml"
_COMMON = {
    "TRAIN.BATCH_SIZE_PER_GPU": 32,
    "TRAIN.END_EPOCH": 210,
    "TRAIN.OPTIMIZER": "adam",
    "TRAIN.LR": 0.002,
    "TRAIN.LR_FACTOR": 0.1,
    "TRAIN.LR_STEP": [170, 200],
    "TRAIN.WD": 0.0001,
    "DATASET.FLIP": True,
    "DATASET.NUM_JOINTS_HALF_BODY": 8,
    "TEST.FLIP_TEST": True,
    "TEST.POST_PROCESS": True,
    "TEST.SHIFT_HEATMAP": True,
}
_COCO_TEST = {"TEST.IMAGE_THRE": 0.0, "TEST.IN_VIS_THRE": 0.2, "TEST.OKS_THRE": 0.9}
_W32_AUGMENT = {"DATASET.ROT_FACTOR": 30, "DATASET.SCALE_FACTOR": 0.25}
_W48_AUGMENT = {"DATASET.ROT_FACTOR": 45, "DATASET.SCALE_FACTOR": 0.35}
_W32 = {"MODEL.EXTRA.STAGE2.NUM_CHANNELS": [32, 64]}
_W48 = {"MODEL.EXTRA.STAGE2.NUM_CHANNELS": [48, 96]}
_LD3 = {"MODEL.EXTRA.STAGE3.BLOCK": "DYBASIC", "MODEL.EXTRA.STAGE4.BLOCK": "BASIC"}
_FIGURE = {"MODEL.EXTRA.STAGE3.BLOCK": "BASIC", "MODEL.EXTRA.STAGE4.BLOCK": "DYBASIC"}
_GT_BOXES = {"TEST.USE_GT_BBOX": True}
_TEST_DEV_BOXES = {
    "TEST.USE_GT_BBOX": False,
    "TEST.COCO_BBOX_FILE": "COCO_test-dev2017_detections_AP_H_609_person.json",  # basename
}
OFFICIAL = {
    _W18.format("256x192"): {
        **_COMMON, **_COCO_TEST, **_W32_AUGMENT, **_W32, **_LD3, **_GT_BOXES,
        "GPUS": "(1,)", "DATASET.PROB_HALF_BODY": 0.3, "MODEL.IMAGE_SIZE": [192, 256],
        "MODEL.SIGMA": 2, "MODEL.PRETRAINED": "",
    },
    _W18.format("384x288"): {
        **_COMMON, **_COCO_TEST, **_W32_AUGMENT, **_W32, **_LD3, **_GT_BOXES,
        "GPUS": "(0,1)", "DATASET.PROB_HALF_BODY": 0.3, "MODEL.IMAGE_SIZE": [288, 384],
        "MODEL.SIGMA": 3,
        # The run's own output, as TEST.MODEL_FILE: the file was last used to test it.
        "MODEL.PRETRAINED": "model_best.pth",  # basename
    },
    _W36.format("256x192"): {
        **_COMMON, **_COCO_TEST, **_W48_AUGMENT, **_W48, **_FIGURE, **_TEST_DEV_BOXES,
        "GPUS": "(0,1)", "DATASET.PROB_HALF_BODY": 0.3, "MODEL.IMAGE_SIZE": [192, 256],
        "MODEL.SIGMA": 2, "MODEL.PRETRAINED": "",
    },
    _W36.format("384x288"): {
        **_COMMON, **_COCO_TEST, **_W48_AUGMENT, **_W48, **_FIGURE, **_TEST_DEV_BOXES,
        "GPUS": "(0,1)", "DATASET.PROB_HALF_BODY": 0.3, "MODEL.IMAGE_SIZE": [288, 384],
        "MODEL.SIGMA": 3, "MODEL.PRETRAINED": "",
    },
    "mpii/dysmallnet_spattention/w36_256x256_adam_lr1e-3.yaml": {
        **_COMMON, **_W32_AUGMENT, **_W32, **_FIGURE,
        "GPUS": "(0,1)", "DATASET.PROB_HALF_BODY": -1.0, "MODEL.IMAGE_SIZE": [256, 256],
        "MODEL.SIGMA": 2, "MODEL.PRETRAINED": "", "MODEL.NUM_JOINTS": 16,
    },
}  # fmt: skip

# Our config -> (the official file it follows, the published figure it targets). The release
# has no CrowdPose file: those configs mirror the COCO w32 file of the same input size.
LDNET_CONFIGS = {
    "coco_ldnet_w32_256x192": (_W18.format("256x192"), "71.3 AP on COCO val2017"),
    "coco_ldnet_w32_384x288": (_W18.format("384x288"), "73.5 AP on COCO val2017"),
    "coco_ldnet_w48_256x192": (_W36.format("256x192"), "72.9 AP on COCO val2017"),
    "coco_ldnet_w48_384x288": (_W36.format("384x288"), "75.0 AP on COCO val2017"),
    "mpii_ldnet_w32_256x256": (
        "mpii/dysmallnet_spattention/w36_256x256_adam_lr1e-3.yaml",
        "88.7 PCKh@0.5 on MPII val",
    ),
    "crowdpose_ldnet_w32_256x192": (_W18.format("256x192"), "62.7 AP on CrowdPose test"),
    "crowdpose_ldnet_w32_384x288": (_W18.format("384x288"), "64.8 AP on CrowdPose test"),
}


def test_every_config_is_checked():
    assert len(CONFIGS) == 13
    ldnet = {p.stem for p in CONFIGS if "_ldnet_w" in p.stem}
    assert ldnet == set(LDNET_CONFIGS)


@pytest.mark.parametrize("name", sorted(LDNET_CONFIGS))
def test_ldnet_config_follows_the_official_file(name):
    source, _ = LDNET_CONFIGS[name]
    official = OFFICIAL[source]
    config = load_config(CONFIGS_DIR / f"{name}.yaml")
    train, data, augment, test = config.train, config.data, config.data.augment, config.test
    # Network: the width of the file; the figure's block order (the w18 files' own order,
    # LD blocks in stage 3, is the ldnet_w32_ld3 preset, named in the config's header).
    width = official["MODEL.EXTRA.STAGE2.NUM_CHANNELS"][0]
    assert config.model.name == f"ldnet_w{width}"
    assert config.model.init_weights is None  # no pretraining
    # Optimiser and schedule.
    assert train.optimizer == official["TRAIN.OPTIMIZER"] == "adam"
    assert train.lr == official["TRAIN.LR"] == 2e-3
    assert train.lr_steps == official["TRAIN.LR_STEP"] == [170, 200]
    assert train.lr_factor == official["TRAIN.LR_FACTOR"]
    assert train.epochs == official["TRAIN.END_EPOCH"] == 210
    assert train.batch_size == official["TRAIN.BATCH_SIZE_PER_GPU"] == 32
    assert train.warmup_iters == 0
    # The file's WD never reaches Adam (test_release_adam_takes_no_weight_decay).
    assert official["TRAIN.WD"] == 1e-4 and train.weight_decay == 0.0
    assert train.temperature_anneal is False  # T stays 34: nothing in the release lowers it
    # Augmentation: 30 / 0.25 for w32, 45 / 0.35 for w48; half-body 0.3, off for MPII.
    assert augment.rotation_factor_deg == official["DATASET.ROT_FACTOR"]
    assert augment.scale_factor == official["DATASET.SCALE_FACTOR"]
    assert (augment.rotation_factor_deg, augment.scale_factor) == (
        (30.0, 0.25) if width == 32 else (45.0, 0.35)
    )
    assert augment.half_body_prob == max(official["DATASET.PROB_HALF_BODY"], 0.0)
    assert augment.half_body_prob == (0.0 if name.startswith("mpii_") else 0.3)
    assert augment.half_body_min_joints == official["DATASET.NUM_JOINTS_HALF_BODY"]
    assert augment.flip_prob == (0.5 if official["DATASET.FLIP"] else 0.0)
    assert augment.rotation_prob == 0.6  # HRNet's JointsDataset, which the release keeps
    # Input and targets: sigma 2 at 256x192 / 256x256, 3 at 384x288.
    assert data.input_size == official["MODEL.IMAGE_SIZE"][::-1]
    assert data.sigma == official["MODEL.SIGMA"] == (3.0 if data.input_size[0] == 384 else 2.0)
    # Test: flip test with HRNet's shifted flip and quarter-offset decoding, i.e. HRNet's
    # coordinate convention and the msra codec.
    assert test.flip is official["TEST.FLIP_TEST"] is True
    assert official["TEST.SHIFT_HEATMAP"] and data.convention == "hrnet"
    assert official["TEST.POST_PROCESS"] and test.decoder == "msra"
    record = record_of(config)
    assert (record.convention, record.codec, record.sigma) == ("hrnet", "msra", data.sigma)
    if name.startswith("mpii_"):
        assert official["MODEL.NUM_JOINTS"] == record.num_joints == 16
        assert test.use_gt_boxes is True  # MPII: the annotated centre and scale
        return
    assert test.box_score_threshold == official["TEST.IMAGE_THRE"]
    assert test.in_vis_threshold == official["TEST.IN_VIS_THRE"]
    assert test.oks_nms_threshold == official["TEST.OKS_THRE"]
    # Boxes: the files' setting (ground truth for w32, a detector for w48); the w48 files'
    # test-dev detections cannot serve val2017, so val2017's AP-56 boxes stand in.
    assert test.use_gt_boxes is official["TEST.USE_GT_BBOX"]
    if name.startswith("coco_"):
        assert test.detection_file == VAL2017_BOXES


@pytest.mark.parametrize("name", sorted(LDNET_CONFIGS))
def test_ldnet_config_header_names_its_source_and_target(name):
    source, target = LDNET_CONFIGS[name]
    text = (CONFIGS_DIR / f"{name}.yaml").read_text()
    header = " ".join(line.strip("# ") for line in text.split("\nname:")[0].splitlines())
    assert f"Target: {target.split(' on ')[0]}" in header
    assert target.split(" on ")[1] in header
    assert source in header.replace(" ", "")
    if name.startswith("crowdpose_"):
        assert "The release has no CrowdPose config" in header
    # The named options: one override each.
    assert "data.convention=ldnet" in header and "test.decoder=dark" in header
    assert "never reaches the optimiser" in text
    overridden = load_config(
        CONFIGS_DIR / f"{name}.yaml", ["data.convention=ldnet", "test.decoder=dark"]
    )
    assert (record_of(overridden).convention, record_of(overridden).codec) == ("ldnet", "dark")


@pytest.mark.parametrize("name", ["coco_ldnet_w32_256x192", "coco_ldnet_w32_384x288"])
def test_detector_boxes_are_one_override_away(name):
    """The w32 files test with ground-truth boxes; the config says that this is not HRNet's
    measurement and how to get that one: one command-line override."""
    path = CONFIGS_DIR / f"{name}.yaml"
    text = path.read_text()
    assert "not the same" in text and "measurement" in text
    assert f"ldnet test configs/{name}.yaml --weights best.pt test.use_gt_boxes=false" in text
    config = load_config(path, ["test.use_gt_boxes=false"])
    assert config.test.use_gt_boxes is False
    assert detection_path(config) == Path("data/coco") / VAL2017_BOXES


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_follows_the_reference_recipe(path):
    config = load_config(path)
    height, width = config.data.input_size
    if path.name.startswith("mpii_"):
        assert config.data.augment.half_body_prob == 0.0  # PROB_HALF_BODY -1.0 (HRNet, LDNet)
        assert config.data.sigma == 2.0
    if (height, width) == (384, 288):
        assert config.data.sigma == 3.0  # SIGMA 3 in HRNet's and LDNet's 384x288 files
    elif height == 256 and path.name not in OWN_RECIPE:
        assert config.data.sigma == 2.0
    if path.name.startswith("coco_") and path.name not in OWN_RECIPE:
        assert config.data.augment.half_body_prob == 0.3
        assert config.test.detection_file == VAL2017_BOXES
    if config.test.detection_file is not None:
        assert not Path(config.test.detection_file).is_absolute()
        assert not config.test.detection_file.startswith(config.data.root)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_batch_size_says_what_it_reproduces(path):
    """`train.batch_size` is per process: the comment above it names the global batch the
    reference used and how to run that (or that the figure is unstated)."""
    text = path.read_text()
    train = text[text.index("\ntrain:") : text.index("\ntest:")]
    comment = re.search(r"((?:\n  #[^\n]*)+)\n  batch_size: (\d+)", train)
    assert comment is not None, "no comment right above train.batch_size"
    words = " ".join(line.strip(" #") for line in comment.group(1).splitlines())
    assert "Per process" in words
    assert f"{load_config(path).train.batch_size} on one process" in words or "4 GPUs x 32" in words
    if path.stem in LDNET_CONFIGS:
        gpus = OFFICIAL[LDNET_CONFIGS[path.stem][0]]["GPUS"]
        assert f"GPUS {gpus}" in words
        if gpus == "(0,1)":  # the README's one 2080Ti, the file's two GPUs: both runnable
            assert "2 x 32 = 64" in words
            assert "torchrun --nproc_per_node 2 -m ldnet.cli train configs/" + path.name in words
    elif path.name not in OWN_RECIPE:
        assert "4 GPUs x 32 = 128" in words
        assert "torchrun --nproc_per_node 4 -m ldnet.cli train configs/" + path.name in words


# -- the transcription, against the release itself (when a checkout is at hand) -------------
OFFICIAL_CODE = os.environ.get("LDNET_OFFICIAL_CODE")
needs_release = pytest.mark.skipif(
    not OFFICIAL_CODE, reason="set LDNET_OFFICIAL_CODE to NBU-CVMI/LDNet's LDNet_Code folder"
)


def _lookup(values: dict, dotted: str):
    for part in dotted.split("."):
        values = values[part]
    return values


@needs_release
@pytest.mark.parametrize("source", sorted(OFFICIAL))
def test_transcription_matches_the_release(source):
    values = yaml.safe_load((Path(OFFICIAL_CODE) / "experiments" / source).read_text())
    for key, expected in OFFICIAL[source].items():
        found = _lookup(values, key)
        if key in ("TEST.COCO_BBOX_FILE", "MODEL.PRETRAINED"):
            found = Path(found).name if found else found
        assert found == expected, key


@needs_release
def test_release_adam_takes_no_weight_decay():
    """The release's get_optimizer passes TRAIN.WD to SGD only: its (uncommented) Adam call
    has no weight_decay argument, so the files' WD 0.0001 is never applied."""
    tree = ast.parse((Path(OFFICIAL_CODE) / "lib" / "utils" / "utils.py").read_text())
    function = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "get_optimizer"
    )
    calls = {
        node.func.attr: {keyword.arg for keyword in node.keywords}
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "weight_decay" in calls["SGD"]
    assert "weight_decay" not in calls["Adam"]
