"""Deterministic predictions for the evaluator tests, made from real annotations.

Predictions are ground truth moved by a pure-integer LCG (no numpy RNG, so the numbers are
the same under any numpy: the official CrowdPose evaluator ran on them under numpy 1.23),
with noise levels from 2 % to 30 % of the box size, several scores (ties included), false
positives beside every third person, and predictions for unlabelled people.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_SAMPLE = DATA / "samples" / "coco" / "test_coco.json"
COCO_MINI_VAL = DATA / "coco-mini" / "annotations" / "person_keypoints_val2017.json"
CROWDPOSE_SAMPLE = DATA / "samples" / "crowdpose" / "test_crowdpose.json"
MPII_SAMPLE = DATA / "samples" / "mpii" / "test_mpii.json"

NOISE_LEVELS = (0.02, 0.05, 0.1, 0.2, 0.3)  # fraction of sqrt(box area)


class Lcg:
    """Numerical Recipes' 32-bit LCG: exact integer arithmetic, identical everywhere."""

    def __init__(self, seed: int):
        self.state = seed % 2**32

    def uniform(self) -> float:
        self.state = (1664525 * self.state + 1013904223) % 2**32
        return self.state / 2**32


def perturbed_predictions(dataset: dict, seed: int) -> list[dict]:
    """COCO-format results near the ground truth of ``dataset`` (see the module docstring)."""
    rng = Lcg(seed)
    results = []
    annotations = sorted(dataset["annotations"], key=lambda a: a["id"])
    for n, ann in enumerate(annotations):
        x, y, w, h = ann["bbox"]
        size = max((w * h) ** 0.5, 1.0)
        level = NOISE_LEVELS[n % len(NOISE_LEVELS)]
        if ann.get("num_keypoints", 0) == 0 and n % 2:
            continue  # predictions for half of the unlabelled people only
        keypoints = []
        gt = ann["keypoints"]
        for j in range(len(gt) // 3):
            gx, gy, v = gt[3 * j : 3 * j + 3]
            if v == 0:  # unlabelled joint: guess the box centre
                gx, gy = x + w / 2, y + h / 2
            px = gx + (rng.uniform() - 0.5) * 2 * level * size
            py = gy + (rng.uniform() - 0.5) * 2 * level * size
            keypoints += [round(px, 2), round(py, 2), round(rng.uniform(), 3)]
        score = 0.5 if n % 5 == 0 else round(0.3 + 0.7 * rng.uniform(), 4)  # ties at 0.5
        results.append(
            {"image_id": ann["image_id"], "category_id": 1, "keypoints": keypoints, "score": score}
        )
        if n % 3 == 0:  # a false positive beside the person, scored lower
            shifted = list(keypoints)
            shifted[0::3] = [round(v + 0.3 * w, 2) for v in keypoints[0::3]]
            results.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": 1,
                    "keypoints": shifted,
                    "score": round(score * 0.6, 4),
                }
            )
    return results


def load(path: Path) -> dict:
    with path.open() as f:
        return json.load(f)


def crowdpose_with_crowd_index(dataset: dict, crowd_index: dict) -> dict:
    """The CrowdPose sample with other crowd indices, so that every split has images."""
    dataset = copy.deepcopy(dataset)
    for image in dataset["images"]:
        image["crowdIndex"] = crowd_index[image["id"]]
    return dataset


def coco_as_crowdpose(coco: dict, seed: int) -> dict:
    """A CrowdPose-format file (14 joints, crowdIndex) from real COCO annotations.

    Joints 0-11 are COCO's shoulders to ankles (same order); ``head`` is the nose and
    ``neck`` the shoulders' midpoint (labelled when both are). Crowd indices come from the LCG,
    with some at 0.15 (easy for the official 0.2 split, medium for the paper's 0.1).
    """
    rng = Lcg(seed)
    images = []
    for k, image in enumerate(sorted(coco["images"], key=lambda i: i["id"])):
        crowd_index = 0.15 if k % 7 == 0 else round(rng.uniform(), 2)
        images.append({**{key: image[key] for key in ("id", "file_name", "height", "width")},
                       "crowdIndex": crowd_index})  # fmt: skip
    annotations = []
    for ann in coco["annotations"]:
        kp = ann["keypoints"]
        body = kp[15:51]
        head = kp[0:3]
        ls, rs = kp[15:18], kp[18:21]
        if ls[2] > 0 and rs[2] > 0:
            neck = [(ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2, min(ls[2], rs[2])]
        else:
            neck = [0, 0, 0]
        keypoints = body + head + neck
        annotations.append(
            {
                "id": ann["id"],
                "image_id": ann["image_id"],
                "category_id": 1,
                "bbox": ann["bbox"],
                "iscrowd": ann["iscrowd"],
                "keypoints": keypoints,
                "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
            }
        )
    categories = [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": load(CROWDPOSE_SAMPLE)["categories"][0]["keypoints"],
        }
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def crowdpose_cases() -> dict[str, tuple[dict, list[dict]]]:
    """name -> (annotation dataset, predictions) of every CrowdPose comparison case."""
    sample = load(CROWDPOSE_SAMPLE)
    resplit = crowdpose_with_crowd_index(sample, {106848: 0.15, 103319: 0.85})
    mini = coco_as_crowdpose(load(COCO_MINI_VAL), seed=7)
    return {
        "sample": (sample, perturbed_predictions(sample, seed=1)),
        "sample_resplit": (resplit, perturbed_predictions(resplit, seed=2)),
        "coco_mini_as_crowdpose": (mini, perturbed_predictions(mini, seed=3)),
    }


def test_predictions_are_deterministic_and_varied():
    dataset = load(COCO_SAMPLE)
    first, second = perturbed_predictions(dataset, 5), perturbed_predictions(dataset, 5)
    assert first == second
    assert first != perturbed_predictions(dataset, 6)
    # 14 people: 12 predicted (the unlabelled n = 7 and 11 are odd: skipped) + 5 false
    # positives (n = 0, 3, 6, 9, 12); the 0.5 tie at n = 0, 5, 10; 15 distinct scores.
    scores = [r["score"] for r in first]
    assert (len(dataset["annotations"]), len(first)) == (14, 17)
    assert len(set(scores)) == 15 and scores.count(0.5) == 3
    assert Lcg(0).uniform() == 1013904223 / 2**32


def test_crowdpose_cases_have_every_split():
    mini, _ = crowdpose_cases()["coco_mini_as_crowdpose"]
    indices = [image["crowdIndex"] for image in mini["images"]]
    # 79 images; 0.15 at every 7th (k = 0, 7, ..., 77): 12. Easy / medium / hard by the
    # official < 0.2 and >= 0.8, and < 0.1 (the paper's easy) recorded from the LCG.
    assert len(indices) == 79 and indices.count(0.15) == 12
    easy = sum(c < 0.2 for c in indices)
    hard = sum(c >= 0.8 for c in indices)
    assert (easy, 79 - easy - hard, hard, sum(c < 0.1 for c in indices)) == (27, 39, 13, 6)
