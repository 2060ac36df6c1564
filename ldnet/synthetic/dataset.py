"""Writing a synthetic dataset in the seed's COCO layout.

```
root/annotations/person_keypoints_{train,val}2017.json
root/images/{train2017,val2017}/000000000001.jpg ...
root/person_detection_results/COCO_val2017_detections_AP_H_56_person.json
root/synthetic.json            (the parameters it was made with)
```

Every image has its own random generator seeded by ``(seed, split, index)``, so an image
does not depend on how many others were asked for: 100 val images are the first 100 of 500.
Everything is written into a hidden folder beside ``root`` and renamed at the end, so an
interrupted run leaves no half-written dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ldnet.data.keypoints import COCO

from .scene import PersonAnnotation, SceneConfig, render_scene

GENERATOR_VERSION = 2  # bump when the pictures change, so cached datasets are remade
MANIFEST = "synthetic.json"
DETECTIONS = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
# Val ids start here, so they never collide with train ids (COCO's splits do not share ids)
# and do not depend on the number of train images.
VAL_ID_OFFSET = 1_000_000
SPLIT_CODES = {"train2017": 0, "val2017": 1, "detections": 2}
JPEG_QUALITY = 92


@dataclass(frozen=True)
class SyntheticPaths:
    """Where a generated dataset's files are."""

    root: Path
    train_annotations: Path
    val_annotations: Path
    train_images: Path
    val_images: Path
    val_detections: Path

    @staticmethod
    def under(root: str | Path) -> SyntheticPaths:
        root = Path(root)
        return SyntheticPaths(
            root=root,
            train_annotations=root / "annotations" / "person_keypoints_train2017.json",
            val_annotations=root / "annotations" / "person_keypoints_val2017.json",
            train_images=root / "images" / "train2017",
            val_images=root / "images" / "val2017",
            val_detections=root / DETECTIONS,
        )


def coco_file_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def categories() -> list[dict]:
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(COCO.joint_names),
            # COCO's json skeleton is 1-based.
            "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton],
        }
    ]


def annotation_entry(person: PersonAnnotation, image_id: int, number: int) -> dict:
    keypoints = person.keypoints.copy()
    keypoints[:, :2] = np.round(keypoints[:, :2], 2)
    flat = []
    for x, y, v in keypoints:
        flat += [float(x), float(y), int(v)]
    return {
        # Unique across both splits, and stable: it depends only on the image and the person.
        "id": image_id * 100 + number,
        "image_id": image_id,
        "category_id": 1,
        "bbox": [float(v) for v in person.bbox_xywh],
        "area": person.area,
        "iscrowd": 0,
        "num_keypoints": person.num_keypoints,
        "keypoints": flat,
        "segmentation": person.segmentation,
    }


def detection_entries(
    people: list[PersonAnnotation], image_id: int, size: tuple[int, int], seed: int, index: int
) -> list[dict]:
    """A stand-in person detector: every true box, jittered, scored lower the more the person
    is hidden; and now and then a low-scored false positive. Its own generator, so the
    pictures do not change with it."""
    rng = np.random.default_rng([seed, SPLIT_CODES["detections"], index])
    width, height = size
    entries = []
    for person in people:
        x, y, w, h = person.bbox_xywh
        cx, cy = x + w / 2 + rng.normal(0, 0.04) * w, y + h / 2 + rng.normal(0, 0.04) * h
        w, h = w * np.exp(rng.normal(0, 0.07)), h * np.exp(rng.normal(0, 0.07))
        x0, y0 = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
        x1, y1 = min(float(width), cx + w / 2), min(float(height), cy + h / 2)
        score = 0.98 - 0.5 * person.hidden_fraction - rng.uniform(0, 0.15)
        entries.append(_detection(image_id, (x0, y0, x1 - x0, y1 - y0), score))
    if rng.random() < 0.25:
        w, h = rng.uniform(20, width / 3), rng.uniform(30, height / 2)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        entries.append(_detection(image_id, (x, y, w, h), rng.uniform(0.05, 0.4)))
    return entries


def _detection(image_id: int, box, score: float) -> dict:
    return {
        "image_id": image_id,
        "category_id": 1,
        "bbox": [round(float(v), 2) for v in box],
        "score": round(float(np.clip(score, 0.01, 1.0)), 4),
    }


@dataclass(frozen=True)
class SplitResult:
    annotations: dict
    detections: list[dict]


def generate_split(
    folder: Path,
    split: str,
    count: int,
    seed: int,
    config: SceneConfig,
    progress: bool = False,
) -> SplitResult:
    folder.mkdir(parents=True, exist_ok=True)
    first_id = 1 if split == "train2017" else VAL_ID_OFFSET + 1
    images, annotations, detections = [], [], []
    indices = range(count)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"synthetic {split}", unit="img")
    width, height = config.image_size
    for index in indices:
        image_id = first_id + index
        rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
        scene = render_scene(rng, config)
        name = coco_file_name(image_id)
        ok, encoded = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {name}")
        (folder / name).write_bytes(encoded.tobytes())
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        annotations += [annotation_entry(p, image_id, n) for n, p in enumerate(scene.people)]
        if split == "val2017":
            detections += detection_entries(scene.people, image_id, (width, height), seed, index)
    data = {
        "info": {"description": f"ldnet synthetic people, {split}, seed {seed}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories(),
    }
    return SplitResult(annotations=data, detections=detections)


def manifest(num_train: int, num_val: int, seed: int, config: SceneConfig) -> dict:
    return {
        "generator": "ldnet.synthetic",
        "version": GENERATOR_VERSION,
        "num_train_images": num_train,
        "num_val_images": num_val,
        "seed": seed,
        "config": json.loads(json.dumps(asdict(config))),  # tuples -> lists, as read back
    }


def read_manifest(root: Path) -> dict | None:
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("generator") == "ldnet.synthetic" else None


def generate_dataset(
    root: str | Path,
    num_train_images: int,
    num_val_images: int,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 240),
    *,
    config: SceneConfig | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> SyntheticPaths:
    """Generate (or reuse) a synthetic COCO-keypoints dataset under ``root``.

    ``image_size`` is (width, height); ``config`` overrides the scene composition (its own
    ``image_size`` is replaced by ``image_size``). A folder that already holds a dataset made
    with the same parameters is reused as is; one made with other parameters (or any with
    ``overwrite``) is replaced; a folder with anything else in it is refused.
    """
    root = Path(root)
    if num_train_images < 0 or num_val_images < 0:
        raise ValueError("image counts must be >= 0")
    if num_train_images >= VAL_ID_OFFSET:
        raise ValueError(f"at most {VAL_ID_OFFSET - 1} train images")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    config = SceneConfig(**{**asdict(config or SceneConfig()), "image_size": tuple(image_size)})
    wanted = manifest(num_train_images, num_val_images, seed, config)
    existing = read_manifest(root) if root.is_dir() else None
    if existing == wanted and not overwrite:
        return SyntheticPaths.under(root)
    if root.exists() and existing is None and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not a synthetic dataset; choose another")

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would otherwise stay on the finished folder
    try:
        paths = SyntheticPaths.under(staging)
        train = generate_split(
            paths.train_images, "train2017", num_train_images, seed, config, progress
        )
        val = generate_split(paths.val_images, "val2017", num_val_images, seed, config, progress)
        paths.train_annotations.parent.mkdir(parents=True)
        paths.val_detections.parent.mkdir(parents=True)
        _write_json(paths.train_annotations, train.annotations)
        _write_json(paths.val_annotations, val.annotations)
        _write_json(paths.val_detections, val.detections)
        _write_json(staging / MANIFEST, wanted)
        _swap_in(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SyntheticPaths.under(root)


def _write_json(path: Path, data) -> None:
    with open(path, "w") as file:
        json.dump(data, file, separators=(",", ":"))


def _swap_in(staging: Path, root: Path) -> None:
    """Move the finished dataset to ``root``; an old one there goes only after that."""
    if not root.exists():
        os.rename(staging, root)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
    os.rename(root, retired / "data")
    os.rename(staging, root)
    shutil.rmtree(retired, ignore_errors=True)
