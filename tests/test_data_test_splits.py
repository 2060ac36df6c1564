"""Test splits (the submission path): files with boxes but no keypoints to score against.

COCO test-dev comes as an image-info file (``images`` and ``categories``, no
``annotations``) read with a detection-results file; the MPII test json has ``center`` and
``scale`` but no ``joints``. Both are built here from the real samples in ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ldnet.cli import main
from ldnet.data.readers import DataError, read_coco, read_mpii

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
COCO_DIR = SAMPLES / "coco"
DETECTIONS = COCO_DIR / "test_coco_det_AP_H_56.json"
THRESHOLD = 0.3  # no sample detection scores exactly this


@pytest.fixture
def image_info(tmp_path) -> Path:
    """test_coco.json without its annotations: the layout of image_info_test-dev2017.json."""
    data = json.loads((COCO_DIR / "test_coco.json").read_text())
    del data["annotations"]
    path = tmp_path / "image_info_test-dev2017.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_image_info_file_with_detections(image_info):
    ann = read_coco(image_info, COCO_DIR, detections=DETECTIONS, score_threshold=THRESHOLD)
    raw = json.loads(DETECTIONS.read_text())
    kept = [d for d in raw if d["category_id"] == 1 and d["score"] > THRESHOLD]
    assert len(ann) == len(kept) == 33
    assert ann.has_ground_truth is False and not ann.problems
    assert ann.stats == {"images": 4, "people": 0, "people_with_keypoints": 0, "crowd": 0}
    assert [r.score for r in ann.records] == [d["score"] for d in kept]
    np.testing.assert_allclose(ann.records[0].box_xywh, kept[0]["bbox"], rtol=1e-6)
    assert not any(r.has_keypoints for r in ann.records)
    # The same detections on the ground-truth file give the same crops, with ground truth.
    with_gt = read_coco(
        COCO_DIR / "test_coco.json", COCO_DIR, detections=DETECTIONS, score_threshold=THRESHOLD
    )
    assert with_gt.has_ground_truth is True
    np.testing.assert_array_equal(
        np.stack([r.center for r in ann.records]), np.stack([r.center for r in with_gt.records])
    )
    np.testing.assert_array_equal(
        np.stack([r.scale for r in ann.records]), np.stack([r.scale for r in with_gt.records])
    )


def test_coco_image_info_file_needs_detections(image_info):
    with pytest.raises(DataError) as error:
        read_coco(image_info, COCO_DIR)
    assert str(error.value) == (
        f"{image_info}: not the expected schema: no 'annotations' list; "
        "an image-info file needs a detection file"
    )


def test_annotations_that_are_not_a_list_are_fatal_even_with_detections(image_info):
    data = json.loads(image_info.read_text())
    data["annotations"] = {}
    image_info.write_text(json.dumps(data))
    with pytest.raises(DataError, match="'annotations' is not a list"):
        read_coco(image_info, COCO_DIR, detections=DETECTIONS)


def test_mpii_test_json_without_joints(tmp_path):
    entries = json.loads((SAMPLES / "mpii/test_mpii.json").read_text())
    for entry in entries:
        del entry["joints"], entry["joints_vis"]
    path = tmp_path / "test.json"
    path.write_text(json.dumps(entries))
    test = read_mpii(path, SAMPLES / "mpii")
    valid = read_mpii(SAMPLES / "mpii/test_mpii.json", SAMPLES / "mpii")
    assert valid.has_ground_truth is True and test.has_ground_truth is False
    assert len(test) == len(valid) == 5 and not test.problems
    assert test.stats["people_with_keypoints"] == 0
    assert not any(r.visible.any() for r in test.records)
    # HRNet's centre/scale, exactly as for the file with joints
    for r, v, entry in zip(test.records, valid.records, entries, strict=True):
        np.testing.assert_array_equal(r.center, v.center)
        np.testing.assert_array_equal(r.scale, v.scale)
        np.testing.assert_allclose(
            r.center, [entry["center"][0] - 1, entry["center"][1] + 15 * entry["scale"] - 1]
        )
        np.testing.assert_allclose(r.scale, [entry["scale"] * 1.25] * 2, rtol=1e-6)


def test_data_check_reads_an_image_info_file(image_info, capsys):
    args = ["data", "check", "--dataset", "coco", "--ann", str(image_info)]
    args += ["--images", str(COCO_DIR), "--detections", str(DETECTIONS)]
    assert main(args + ["--score-threshold", str(THRESHOLD), "--no-decode", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["has_ground_truth"] is False
    assert (report["images"], report["people"], report["samples"]) == (4, 0, 33)
    assert report["roundtrip"]["msra"]["ap"] is None  # nothing labelled to round-trip
