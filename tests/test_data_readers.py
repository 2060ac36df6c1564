"""Readers on every real sample in ../shared/data, and on each kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ldnet.data.codecs import build_codec
from ldnet.data.dataset import TopDownDataset, prepare_crops
from ldnet.data.images import ImageError, image_size, read_image
from ldnet.data.readers import DataError, read_coco, read_crowdpose, read_mpii
from ldnet.data.transforms import AugmentConfig
from ldnet.datasets import dataset_kind
from ldnet.evaluation import EvaluationInputError, load_mpii_gt
from ldnet.numbers import is_finite_number

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = DATA / "samples"


def test_coco_samples_ground_truth_and_detections():
    gt = read_coco(SAMPLES / "coco/test_coco.json", SAMPLES / "coco")
    assert gt.stats == {"images": 4, "people": 14, "people_with_keypoints": 12, "crowd": 0}
    assert len(gt) == 12 and not gt.problems
    r = next(r for r in gt.records if r.person_id == 442619)
    # HRNet: cleaned box (w - 1, h - 1), centre x + w/2, aspect 0.75, /200, *1.25
    np.testing.assert_allclose(r.box_xywh, [280.79, 44.73, 217.7, 345.68], atol=1e-3)
    np.testing.assert_allclose(r.center, [280.79 + 217.7 / 2, 44.73 + 345.68 / 2], atol=1e-3)
    np.testing.assert_allclose(r.scale, [345.68 * 0.75 / 160, 345.68 / 160], rtol=1e-5)
    np.testing.assert_array_equal(r.joints[0], [367, 81])
    det = read_coco(
        SAMPLES / "coco/test_coco.json",
        SAMPLES / "coco",
        detections=SAMPLES / "coco/test_coco_det_AP_H_56.json",
        score_threshold=0.5,
    )
    raw = json.loads((SAMPLES / "coco/test_coco_det_AP_H_56.json").read_text())
    assert len(det) == sum(d["score"] >= 0.5 for d in raw) > 0
    assert all(r.score >= 0.5 and not r.has_keypoints for r in det.records)


def test_crowdpose_and_mpii_samples():
    cp = read_crowdpose(SAMPLES / "crowdpose/test_crowdpose.json", SAMPLES / "crowdpose")
    assert len(cp) == 4 and cp.keypoint_set.num_joints == 14
    assert cp.crowd_index == {106848: 0.33, 103319: 0.39}
    cpd = read_crowdpose(
        SAMPLES / "crowdpose/test_crowdpose.json",
        SAMPLES / "crowdpose",
        detections=SAMPLES / "crowdpose/test_crowdpose_det_AP_40.json",
    )
    assert len(cpd) == 6 and not cpd.problems
    mpii = read_mpii(SAMPLES / "mpii/test_mpii.json", SAMPLES / "mpii")
    assert len(mpii) == 5 and not mpii.problems
    raw = json.loads((SAMPLES / "mpii/test_mpii.json").read_text())[0]
    r = mpii.records[0]
    # HRNet: centre y += 15 * scale, scale * 1.25, centre and joints 1-based -> 0-based
    np.testing.assert_allclose(
        r.center, [raw["center"][0] - 1, raw["center"][1] + 15 * raw["scale"] - 1], rtol=1e-6
    )
    np.testing.assert_allclose(r.scale, [raw["scale"] * 1.25] * 2, rtol=1e-6)
    np.testing.assert_allclose(r.joints, np.array(raw["joints"]) - 1, rtol=1e-6)


def test_every_real_image_reads_with_header_size():
    paths = sorted(SAMPLES.glob("*/*.jpg")) + sorted((DATA / "coco-mini/images").glob("*/*.jpg"))
    assert len(paths) == 11 + 80 + 79
    for path in paths:
        image = read_image(path)
        assert image_size(path) == (image.shape[1], image.shape[0])


def test_coco_mini_train_dataset_yields_training_samples():
    ann = read_coco(*dataset_kind("coco").layout(DATA / "coco-mini", "train2017"))
    assert ann.stats["images"] == 80 and len(ann) == 86
    data = TopDownDataset(ann, build_codec("msra"), augment=AugmentConfig(), seed=0)
    batch = torch.utils.data.default_collate([data[i] for i in range(4)])
    image, target, weight, meta = batch
    assert image.shape == (4, 3, 256, 192) and target.shape == (4, 17, 64, 48)
    assert weight.shape == (4, 17) and meta["center"].shape == (4, 2)
    assert abs(float(image.mean())) < 2.0 and target.max() == 1.0
    # targets sit where the joints went: decode and compare with the weight mask
    test = TopDownDataset(ann, build_codec("dark"))
    image, target, weight, meta = test[3]
    record = ann.records[3]
    assert meta["rotation_deg"] == 0 and not meta["flipped"]
    np.testing.assert_allclose(meta["center"], record.center)


def test_prepare_crops_matches_dataset_crop():
    ann = read_coco(SAMPLES / "coco/test_coco.json", SAMPLES / "coco", input_size=(256, 192))
    data = TopDownDataset(ann, build_codec("msra"))
    record = ann.records[0]
    crops, centers, scales = prepare_crops(
        read_image(record.image_path), np.array([[280.79, 44.73, 217.7, 345.68]]), (256, 192)
    )
    index = next(i for i, r in enumerate(ann.records) if r.person_id == 442619)
    np.testing.assert_allclose(crops[0], data[index][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(centers[0], ann.records[index].center, atol=1e-4)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
@pytest.fixture
def coco_copy(tmp_path):
    """The COCO samples copied to tmp_path, so files can be broken one at a time."""
    shutil.copytree(SAMPLES / "coco", tmp_path / "coco")
    return tmp_path / "coco"


def _edit(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_missing_image_is_skipped_and_reported(coco_copy):
    (coco_copy / "000000000785.jpg").unlink()
    ann = read_coco(coco_copy / "test_coco.json", coco_copy)
    assert len(ann) == 11
    assert [(p.item, p.reason) for p in ann.problems] == [
        ("image 785 (000000000785.jpg)", "missing image")
    ]
    with pytest.raises(DataError, match="missing image"):
        read_coco(coco_copy / "test_coco.json", coco_copy, strict=True)


def test_corrupt_and_truncated_jpeg(coco_copy, tmp_path):
    good = (coco_copy / "000000040083.jpg").read_bytes()
    (coco_copy / "000000040083.jpg").write_bytes(good[: len(good) // 2])  # truncated
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9")
    with pytest.raises(ImageError, match="truncated"):
        read_image(coco_copy / "000000040083.jpg")
    with pytest.raises(ImageError, match="corrupt"):
        read_image(garbage)
    ann = read_coco(coco_copy / "test_coco.json", coco_copy)
    data = TopDownDataset(ann, build_codec("msra"))
    bad = [i for i, r in enumerate(ann.records) if r.image_id == 40083]
    sample = data[bad[0]]  # falls through to the next readable image
    assert sample[3]["image_id"] != 40083
    assert data.problems[0].reason.startswith("truncated JPEG")
    with pytest.raises(DataError, match="truncated"):
        TopDownDataset(ann, build_codec("msra"), strict=True)[bad[0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "top level is not an object"),
        ('{"images": [], "annotation": []}', "no 'annotations' list"),
        ('{"images": [{"id": 1}], "annotations": []}', "no 'id' or 'file_name'"),
    ],
)
def test_bad_schema_is_fatal_with_file_name(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        read_coco(path, tmp_path)
    assert str(path) in str(error.value)


def test_wrong_dataset_and_unreadable_files_are_fatal(tmp_path):
    with pytest.raises(DataError, match="has 17 keypoints, crowdpose has 14"):
        read_crowdpose(SAMPLES / "coco/test_coco.json", SAMPLES / "coco")
    with pytest.raises(DataError, match="not found"):
        read_coco(tmp_path / "absent.json", tmp_path)
    with pytest.raises(DataError, match="list of people"):
        read_mpii(SAMPLES / "coco/test_coco.json", SAMPLES / "mpii")
    bad_mat = tmp_path / "gt_valid.mat"
    bad_mat.write_bytes(b"not a mat file")
    with pytest.raises(EvaluationInputError, match="not a MATLAB"):
        load_mpii_gt(bad_mat)


def test_zero_area_box_and_joint_outside_image(coco_copy):
    def edit(data):
        data["annotations"][0]["bbox"] = [10, 10, 0, 50]
        kp = data["annotations"][1]["keypoints"]
        kp[0], kp[1], kp[2] = 5000, 10, 2  # nose far right of a 640-px image

    _edit(coco_copy / "test_coco.json", edit)
    ann = read_coco(coco_copy / "test_coco.json", coco_copy)
    reasons = [(p.reason, p.action) for p in ann.problems]
    assert ("invalid box [10.0, 10.0, 0.0, 50.0] (zero area)", "skipped") in reasons
    assert any(
        r.startswith("joint 0 at (5000.0, 10.0) outside") and a == "joint ignored"
        for r, a in reasons
    )
    assert len(ann) == 11
    dropped = next(r for r in ann.records if r.joints[0, 0] == 5000)
    assert dropped.visible[0] == 0


def test_detection_naming_unknown_image(tmp_path):
    dets = json.loads((SAMPLES / "coco/test_coco_det_AP_H_56.json").read_text())
    dets[0]["image_id"] = 123456789
    dets[1]["bbox"] = [1, 1, 0, 0]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    ann = read_coco(SAMPLES / "coco/test_coco.json", SAMPLES / "coco", detections=path)
    assert len(ann) == len(dets) - 2
    assert ann.problems[0].reason == "detection names an unknown image id"
    assert "invalid box" in ann.problems[1].reason
    with pytest.raises(DataError, match="unknown image id"):
        read_coco(SAMPLES / "coco/test_coco.json", SAMPLES / "coco", detections=path, strict=True)


def test_mpii_gt_valid_mat_roundtrip(tmp_path):
    from scipy.io import savemat

    names = np.array(
        [
            [
                "rank",
                "rkne",
                "rhip",
                "lhip",
                "lkne",
                "lank",
                "pelv",
                "thor",
                "neck",
                "head",
                "rwri",
                "relb",
                "rsho",
                "lsho",
                "lelb",
                "lwri",
            ]
        ],
        dtype=object,
    )
    pos = np.arange(16 * 2 * 3, dtype=np.float64).reshape(16, 2, 3)
    savemat(
        tmp_path / "gt_valid.mat",
        {
            "dataset_joints": names,
            "jnt_missing": np.zeros((16, 3)),
            "pos_gt_src": pos,
            "headboxes_src": np.ones((2, 2, 3)),
        },
    )
    gt = load_mpii_gt(tmp_path / "gt_valid.mat")
    assert gt.joints_px.shape == (3, 16, 2) and gt.joint_names[9] == "head"
    np.testing.assert_array_equal(gt.joints_px, pos.transpose(2, 0, 1))
    savemat(tmp_path / "partial.mat", {"pos_gt_src": pos})
    with pytest.raises(EvaluationInputError, match="lacks dataset_joints"):
        load_mpii_gt(tmp_path / "partial.mat")


def test_non_finite_numbers_are_problems_not_values(tmp_path):
    dets = json.loads((SAMPLES / "coco/test_coco_det_AP_H_56.json").read_text())
    dets[0]["score"] = float("nan")  # json.dumps writes NaN, json.load reads it back
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    ann = read_coco(
        SAMPLES / "coco/test_coco.json", SAMPLES / "coco", detections=tmp_path / "dets.json"
    )
    assert len(ann) == len(dets) - 1
    assert [(p.item, p.reason) for p in ann.problems] == [
        (f"detection 0 (image {dets[0]['image_id']})", "'score' is not a finite number")
    ]
    people = json.loads((SAMPLES / "mpii/test_mpii.json").read_text())
    people[1]["scale"] = float("inf")
    (tmp_path / "mpii.json").write_text(json.dumps(people))
    mpii = read_mpii(tmp_path / "mpii.json", SAMPLES / "mpii")
    assert [r.person_id for r in mpii.records] == [0, 2, 3, 4]
    assert mpii.problems[0].reason == "'center' is not 2 numbers or 'scale' not a number"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, True), (-2.5, True), (np.float64(0.5), True), (True, False), (float("nan"), False)]
    + [(float("-inf"), False), ("1", False), (None, False), ([1], False)],
)
def test_is_finite_number(value, expected):
    assert is_finite_number(value) is expected


def test_the_dataset_table_reads_each_sample_with_its_reader():
    assert dataset_kind("coco").read is read_coco
    assert dataset_kind("crowdpose").read is read_crowdpose
    assert dataset_kind("mpii").read is read_mpii
    counts = {
        "coco": len(dataset_kind("coco").read(SAMPLES / "coco/test_coco.json", SAMPLES / "coco")),
        "crowdpose": len(
            dataset_kind("crowdpose").read(
                SAMPLES / "crowdpose/test_crowdpose.json", SAMPLES / "crowdpose"
            )
        ),
        "mpii": len(dataset_kind("mpii").read(SAMPLES / "mpii/test_mpii.json", SAMPLES / "mpii")),
    }
    assert counts == {"coco": 12, "crowdpose": 4, "mpii": 5}
    assert dataset_kind("mpii").layout(Path("/d"), "valid") == (
        Path("/d/annot/valid.json"),
        Path("/d/images"),
    )
