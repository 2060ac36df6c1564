"""The main job (`make demo`): synthetic data -> train -> official COCO evaluation -> pictures.

Needs no dataset and no GPU. The synthetic people are stick figures with the 17 COCO
keypoints (ldnet.synthetic); the numbers say the whole pipeline works and learns, not how
well LDNet does on real photographs.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from ldnet.config import config_from_dict
from ldnet.engine.runs import write_json_atomic
from ldnet.errors import MissingExtra, require_extra

DEMO_DETECTIONS = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


# 24 epochs of 1200 images: 8.0 minutes for the whole demo on a 2-core AMD EPYC that trains
# `ldnet_s` at about 145-170 samples/s (docs/measurements.md); AP grows about 0.01 per epoch
# there (13: 0.41, 18: 0.46, 24: 0.51 on the held-out split with the detector's boxes).
DEMO_EPOCHS = 24


def demo_config(data_root: Path, epochs: int, model: str) -> dict:
    """The demo's recipe: what learns most in a few CPU minutes (docs/measurements.md)."""
    return {
        "name": "demo",
        "model": {"name": model},
        "data": {
            "dataset": "coco",
            "root": str(data_root),
            "input_size": [128, 96],
            # Heatmaps are 32x24 here, half of HRNet's 64x48, so its sigma 2 would be twice
            # as blurred relative to the person: the loss then barely notices a one-pixel
            # miss. Sharp targets learn faster (`ldnet_s`, AP with ground-truth boxes after 9
            # epochs: sigma 0.75 0.36, 1.5 0.30; after 3: sigma 3 0.06, 2 0.12). Input 96x64
            # for more epochs in the same time is worse (20 epochs: 0.37 against 13 at
            # 128x96: 0.43).
            "sigma": 0.75,
            "workers": 2,
            "augment": {"scale_factor": 0.25, "rotation_factor_deg": 30.0, "half_body_prob": 0.0},
        },
        "train": {
            "epochs": epochs,
            "batch_size": 16,
            # Not the official 2e-3: the refinement module ends in ReLU(BN(.)), and at 2e-3
            # the first few hundred steps push it below zero everywhere, where no gradient
            # reaches it again (the run then predicts empty heatmaps: AP 0 after 9 epochs).
            # 1e-3 with a 300-step warm-up keeps it alive (AP 0.11-0.14 after 3 epochs; 2e-3
            # with the same warm-up: 0; 1.5e-3: 0.14 after 9 epochs against 0.36).
            "lr": 0.001,
            "lr_steps": [int(epochs * 0.7), int(epochs * 0.9)],
            "val_every": epochs,
            "log_every": 10,
            "warmup_iters": 300,
        },
        "test": {"batch_size": 64, "flip": True, "decoder": "dark", "use_gt_boxes": True},
    }


def run_demo(
    run_dir: Path,
    epochs: int = DEMO_EPOCHS,
    num_train: int = 1200,
    num_val: int = 200,
    model: str = "ldnet_s",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    from ldnet import evaluation
    from ldnet.engine.test import test
    from ldnet.engine.train import train
    from ldnet.synthetic import generate_dataset

    started = time.perf_counter()
    data_root = run_dir / "data"
    print(f"1/5 generating {num_train} + {num_val} synthetic images in {data_root}")
    generate_dataset(data_root, num_train, num_val, seed=seed)
    config = config_from_dict(demo_config(data_root, epochs, model))
    print(f"2/5 training {model} for {epochs} epochs on the CPU (input 128x96)")
    train(config, run_dir / "train", progress=progress)
    print("3/5 testing on the held-out images with the synthetic detector's boxes")
    metrics = test(
        config,
        run_dir / "train" / "last.pt",
        run_dir / "test",
        detections=str(data_root / DEMO_DETECTIONS),
        progress=progress,
    )
    print(evaluation.format_metrics_table(metrics, title="COCO keypoint metrics (synthetic val)"))
    print("4/5 drawing predictions")
    written = draw_predictions(data_root, run_dir / "test" / "results.json", run_dir / "pictures")
    print("5/5 checking that `ldnet predict` (one image at a time) gives what `ldnet test` gave")
    parity = predict_matches_test(data_root, run_dir, progress)
    write_json_atomic(run_dir / "predict_vs_test.json", parity)
    onnx = (
        f"ONNX Runtime vs PyTorch: {parity['onnxruntime_vs_pytorch_max_difference_px']:.2e} px "
        f"over the {parity['onnxruntime_vs_pytorch_keypoints']} located keypoints"
        if "onnxruntime_vs_pytorch_max_difference_px" in parity
        else parity["onnxruntime_skipped"]
    )
    print(
        f"    max keypoint difference {parity['max_keypoint_difference_px']:.2e} px, "
        f"AP difference {parity['ap_difference']:.1e} ({parity['people']} people); {onnx}"
    )
    minutes = (time.perf_counter() - started) / 60
    summary = {"metrics": evaluation.metrics_to_json(metrics), "minutes": minutes}
    write_json_atomic(run_dir / "metrics.json", evaluation.metrics_to_json(metrics))
    print(f"demo finished in {minutes:.1f} min: {run_dir} ({written} pictures)")
    return summary["metrics"]


# Two backends are compared on the keypoints whose heatmap peak reaches this: an empty heatmap
# (the KRM ends in a ReLU, so an undertrained network gives exact zeros) has no location, and
# its argmax is whichever pixel float rounding makes largest in each backend.
LOCATED_CONFIDENCE = 0.01


def predict_matches_test(data_root: Path, run_dir: Path, progress: bool = True) -> dict:
    """Run the trained weights through ``PoseEstimator`` (what `ldnet predict` runs), in
    PyTorch and in ONNX Runtime, on the held-out images with the same detection boxes, and
    compare with `ldnet test`'s results: the largest keypoint difference in pixels and the
    difference in AP."""
    import json

    from ldnet import evaluation
    from ldnet.predict import (
        DetectionFile,
        PoseEstimator,
        PredictOptions,
        open_source,
        predict_source,
    )

    detections = DetectionFile(data_root / DEMO_DETECTIONS)
    try:
        require_extra("deploy", "the ONNX Runtime check")
        backends, skipped = ("pytorch", "onnxruntime"), None
    except MissingExtra as missing:  # a core install: the PyTorch half still runs
        backends, skipped = ("pytorch",), f"{missing}: skipped"
    for backend in backends:
        estimator = PoseEstimator.from_weights(run_dir / "train" / "last.pt", backend=backend)
        source = open_source(str(data_root / "images" / "val2017"))
        options = PredictOptions(run_dir / f"predict-{backend}", overlay=False, progress=progress)
        predict_source(estimator, source, lambda frame: detections(frame.image_id), options)

    def people(folder: str) -> list[dict]:
        results = json.loads((run_dir / folder / "results.json").read_text())
        return sorted(results, key=lambda r: (r["image_id"], -r["score"]))

    tested, predicted = people("test"), people("predict-pytorch")
    annotations = data_root / "annotations" / "person_keypoints_val2017.json"
    ap = [evaluation.evaluate_coco(r, annotations)["AP"] for r in (tested, predicted)]
    parity = {
        "people": len(tested),
        "max_keypoint_difference_px": _max_difference(tested, predicted),
        "ap_test": ap[0],
        "ap_predict": ap[1],
        "ap_difference": abs(ap[0] - ap[1]),
    }
    if skipped:
        return {**parity, "onnxruntime_skipped": skipped}
    onnx = people("predict-onnxruntime")
    return {
        **parity,
        "onnxruntime_vs_pytorch_max_difference_px": _max_difference(
            predicted, onnx, LOCATED_CONFIDENCE
        ),
        "onnxruntime_vs_pytorch_keypoints": _located(predicted, LOCATED_CONFIDENCE),
    }


def _max_difference(first: list[dict], second: list[dict], min_confidence: float = -1.0) -> float:
    """Largest x or y difference between two results lists of the same people, in pixels,
    over the keypoints whose confidence in ``first`` is at least ``min_confidence``."""
    if [r["image_id"] for r in first] != [r["image_id"] for r in second]:
        raise RuntimeError("the two results files hold different people")
    return max(
        (
            max(abs(one[j] - other[j]), abs(one[j + 1] - other[j + 1]))
            for one, other in _keypoint_pairs(first, second)
            for j in range(0, len(one), 3)
            if one[j + 2] >= min_confidence
        ),
        default=0.0,
    )


def _keypoint_pairs(first: list[dict], second: list[dict]):
    for one, other in zip(first, second, strict=True):
        yield one["keypoints"], other["keypoints"]


def _located(results: list[dict], min_confidence: float) -> int:
    """How many keypoints of ``results`` have at least ``min_confidence``."""
    return sum(score >= min_confidence for r in results for score in r["keypoints"][2::3])


def draw_predictions(data_root: Path, results_file: Path, out_dir: Path, limit: int = 12) -> int:
    import json

    from ldnet.data.keypoints import COCO
    from ldnet.data.visualize import draw_poses

    annotations = json.loads(
        (data_root / "annotations" / "person_keypoints_val2017.json").read_text()
    )
    files = {image["id"]: image["file_name"] for image in annotations["images"]}
    results = json.loads(results_file.read_text())
    by_image: dict[int, list] = {}
    for result in results:
        if result["score"] >= 0.2:
            by_image.setdefault(result["image_id"], []).append(result["keypoints"])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for image_id in sorted(files)[:limit]:
        image = cv2.imread(str(data_root / "images" / "val2017" / files[image_id]))
        poses = np.array(by_image.get(image_id, []), dtype=np.float64).reshape(-1, 17, 3)
        cv2.imwrite(str(out_dir / files[image_id]), draw_poses(image, poses, COCO))
        written += 1
    return written
