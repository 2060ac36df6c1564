"""`ldnet data check|show` and `ldnet bench data` on the real COCO-MINI split."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from ldnet.bench import data as benchmark
from ldnet.cli import main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_check_coco_mini_val_roundtrip(capsys):
    rc = main(
        [
            "data",
            "check",
            "--dataset",
            "coco",
            "--root",
            str(DATA / "coco-mini"),
            "--json",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    # no --split: the dataset table's validation split
    assert report["annotation_file"].endswith("annotations/person_keypoints_val2017.json")
    assert report["has_ground_truth"] is True
    assert (report["images"], report["people"], report["people_with_keypoints"]) == (79, 118, 68)
    assert report["problems"] == [] and report["missing_images"] == 0
    dark, msra = report["roundtrip"]["dark"], report["roundtrip"]["msra"]
    assert dark["ap"] >= 0.99 and msra["ap"] >= 0.95
    assert dark["mean_error_px"] < msra["mean_error_px"]
    assert dark["mean_error_px"] < 0.1 and 1.0 < msra["mean_error_px"] < 2.5
    assert dark["joints_outside_crop"] == 4  # labelled joints beyond their box's crop


def test_check_lists_problems_and_strict(tmp_path, capsys):
    ann = json.loads((DATA / "samples/coco/test_coco.json").read_text())
    ann["annotations"][0]["bbox"] = [1, 1, 0, 0]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    args = [
        "data",
        "check",
        "--dataset",
        "coco",
        "--ann",
        str(tmp_path / "ann.json"),
        "--images",
        str(DATA / "samples/coco"),
    ]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["invalid_boxes"] == 1 and len(report["problems"]) == 1
    assert main(args + ["--strict"]) == 2
    assert "zero area" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert (
        main(
            [
                "data",
                "check",
                "--dataset",
                "coco",
                "--ann",
                str(tmp_path / "bad.json"),
                "--images",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "bad.json: not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_show_writes_png(tmp_path):
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "data",
                "show",
                "--dataset",
                "coco",
                "--root",
                str(DATA / "coco-mini"),
                "--split",
                "train2017",
                "--count",
                "6",
                "--columns",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    image = cv2.imread(str(out))
    assert image.shape == (2 * 256, 3 * 192, 3) and image.std() > 10


def test_bench_data_function():
    result = benchmark.run(
        "coco",
        DATA / "coco-mini/annotations/person_keypoints_train2017.json",
        DATA / "coco-mini/images/train2017",
        samples=40,
    )
    assert result["samples"] == 40 and result["samples_per_s"] > 20
