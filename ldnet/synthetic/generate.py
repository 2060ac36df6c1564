"""Rendering and writing the synthetic dataset (see the package docstring)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ldnet.data.keypoints import COCO

# COCO joint indices.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK = 11, 12, 13, 14, 15, 16

# Limbs drawn as thick segments: (joint a, joint b, thickness as a fraction of height).
LIMBS = (
    (L_SHO, L_ELB, 0.05), (L_ELB, L_WRI, 0.04), (R_SHO, R_ELB, 0.05), (R_ELB, R_WRI, 0.04),
    (L_HIP, L_KNE, 0.065), (L_KNE, L_ANK, 0.05), (R_HIP, R_KNE, 0.065), (R_KNE, R_ANK, 0.05),
)  # fmt: skip
LEFT_JOINTS = {L_EYE, L_EAR, L_SHO, L_ELB, L_WRI, L_HIP, L_KNE, L_ANK}


@dataclass
class Person:
    joints: np.ndarray  # (17, 2) image px
    height_px: float
    colour: np.ndarray  # BGR base colour


def _rotate(angle_rad: float) -> np.ndarray:
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[cos, -sin], [sin, cos]])


def sample_pose(rng: np.random.Generator, center: np.ndarray, height: float) -> np.ndarray:
    """17 COCO joints of a standing/moving figure; +x is the image's right, +y down.

    The figure faces the camera, so its left side is on the image's right (COCO's convention).
    """
    joints = np.zeros((17, 2))
    up = np.array([0.0, -1.0]) @ _rotate(rng.normal(0, 0.15)).T  # torso lean
    side = np.array([-up[1], up[0]])  # towards the image's right
    pelvis = center + up * 0.02 * height
    neck = pelvis + up * 0.32 * height
    joints[L_HIP], joints[R_HIP] = pelvis + side * 0.09 * height, pelvis - side * 0.09 * height
    joints[L_SHO], joints[R_SHO] = neck + side * 0.13 * height, neck - side * 0.13 * height
    head = neck + (up @ _rotate(rng.normal(0, 0.15)).T) * 0.13 * height
    turn = rng.uniform(-0.4, 0.4)  # head turned left/right: moves the nose sideways
    joints[NOSE] = head + side * turn * 0.04 * height + up * -0.01 * height
    for eye, ear, sign in ((L_EYE, L_EAR, 1), (R_EYE, R_EAR, -1)):
        joints[eye] = head + side * (sign * 0.03 + turn * 0.03) * height + up * 0.02 * height
        joints[ear] = head + side * (sign * 0.065 + turn * 0.01) * height
    down = -up
    for shoulder, elbow, wrist, sign in ((L_SHO, L_ELB, L_WRI, 1), (R_SHO, R_ELB, R_WRI, -1)):
        # Arm angle from hanging down, swung outwards (sign) or across, elbow bend.
        upper = down @ _rotate(sign * rng.uniform(-0.6, 2.4)).T
        lower = upper @ _rotate(sign * rng.uniform(-0.3, 2.0)).T
        joints[elbow] = joints[shoulder] + upper * 0.17 * height
        joints[wrist] = joints[elbow] + lower * 0.15 * height
    for hip, knee, ankle, sign in ((L_HIP, L_KNE, L_ANK, 1), (R_HIP, R_KNE, R_ANK, -1)):
        thigh = down @ _rotate(sign * rng.uniform(-0.35, 0.9)).T
        shin = thigh @ _rotate(-sign * rng.uniform(0.0, 1.2)).T
        joints[knee] = joints[hip] + thigh * 0.24 * height
        joints[ankle] = joints[knee] + shin * 0.23 * height
    return joints


def _shade(colour: np.ndarray, factor: float) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(colour * factor, 0, 255))


def draw_person(canvas: np.ndarray, mask: np.ndarray, person: Person, label: int) -> None:
    """Draw the figure on ``canvas`` and its silhouette (value ``label``) on ``mask``."""
    p = {j: tuple(np.round(person.joints[j] * 4).astype(int)) for j in range(17)}  # 2 bits
    h = person.height_px
    light, dark = _shade(person.colour, 1.35), _shade(person.colour, 0.6)
    torso = np.array([p[L_SHO], p[R_SHO], p[R_HIP], p[L_HIP]], np.int32)
    for target, colour in ((canvas, _shade(person.colour, 1.0)), (mask, label)):
        cv2.fillConvexPoly(target, torso, colour, cv2.LINE_AA, shift=2)
    for a, b, thickness in LIMBS:
        colour = light if a in LEFT_JOINTS else dark
        width = max(2, int(thickness * h))
        for target, value in ((canvas, colour), (mask, label)):
            cv2.line(target, p[a], p[b], value, width, cv2.LINE_AA, shift=2)
    for j in (L_ELB, R_ELB, L_KNE, R_KNE, L_WRI, R_WRI, L_ANK, R_ANK):  # joint caps
        radius = max(2, int(0.03 * h)) * 4
        for target, value in ((canvas, (230, 230, 230)), (mask, label)):
            cv2.circle(target, p[j], radius, value, -1, cv2.LINE_AA, shift=2)
    neck = tuple((np.array(p[L_SHO]) + np.array(p[R_SHO])) // 2)
    head_centre = tuple(((np.array(p[L_EAR]) + np.array(p[R_EAR])) // 2).astype(int))
    head_radius = int(0.075 * h * 4)
    skin = (150, 180, 220)
    for target, value in ((canvas, skin), (mask, label)):
        cv2.line(target, neck, head_centre, value, max(2, int(0.04 * h)), cv2.LINE_AA, shift=2)
        cv2.circle(target, head_centre, head_radius, value, -1, cv2.LINE_AA, shift=2)
    small = max(1, int(0.012 * h)) * 4
    cv2.circle(canvas, p[L_EYE], small, (255, 255, 255), -1, cv2.LINE_AA, shift=2)
    cv2.circle(canvas, p[R_EYE], small, (40, 40, 40), -1, cv2.LINE_AA, shift=2)
    cv2.circle(canvas, p[NOSE], small, (30, 30, 200), -1, cv2.LINE_AA, shift=2)
    cv2.circle(canvas, p[L_EAR], small, light, -1, cv2.LINE_AA, shift=2)
    cv2.circle(canvas, p[R_EAR], small, dark, -1, cv2.LINE_AA, shift=2)


def background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
    image += rng.normal(0, 12, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):  # clutter
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        if rng.random() < 0.5:
            w, h = int(rng.uniform(10, width / 3)), int(rng.uniform(10, height / 3))
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
        else:
            cv2.circle(image, (x, y), int(rng.uniform(5, height / 5)), colour, -1)
    return cv2.GaussianBlur(image, (5, 5), 0)


def render_image(rng: np.random.Generator, size: tuple[int, int]):
    """One image and its people's annotations (joints, visibility, box, area)."""
    width, height = size
    image = background(rng, size)
    count = int(rng.integers(1, 4))
    heights = np.sort(rng.uniform(70, 0.95 * height, count))  # far (small) people first
    people = []
    for person_height in heights:
        center = np.array(
            [rng.uniform(0.1 * width, 0.9 * width), rng.uniform(0.35 * height, 0.75 * height)]
        )
        colour = rng.uniform(40, 190, 3)
        people.append(Person(sample_pose(rng, center, person_height), person_height, colour))
    label_map = np.zeros((height, width), np.int32)
    annotations = []
    for index, person in enumerate(people, start=1):
        own = np.zeros((height, width), np.uint8)
        draw_person(image, own, person, 1)
        label_map[own > 0] = index
        annotations.append({"mask": own > 0})
    for index, (person, annotation) in enumerate(zip(people, annotations, strict=True), start=1):
        joints = person.joints
        inside = (
            (joints[:, 0] >= 0) & (joints[:, 0] <= width - 1)
            & (joints[:, 1] >= 0) & (joints[:, 1] <= height - 1)
        )  # fmt: skip
        xi = np.clip(np.round(joints[:, 0]).astype(int), 0, width - 1)
        yi = np.clip(np.round(joints[:, 1]).astype(int), 0, height - 1)
        # A joint is hidden when a nearer (later-drawn) person covers it.
        hidden = label_map[yi, xi] > index
        visibility = np.where(inside, np.where(hidden, 1, 2), 0)
        mask = annotation["mask"]
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            annotation["visibility"] = np.zeros(17, int)
            continue
        annotation.update(
            joints=joints,
            visibility=visibility,
            box=[float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
            # COCO's area is the person's segmentation area: here the drawn silhouette.
            area=float(mask.sum()),
        )
    return image, [a for a in annotations if (a["visibility"] > 0).sum() > 0]


def _coco_json(images: list[dict], annotations: list[dict]) -> dict:
    return {
        "info": {"description": "ldnet synthetic people (ldnet.synthetic)"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(COCO.joint_names),
                "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton],
            }
        ],
    }


def _write_split(root: Path, split: str, count: int, first_id: int, rng, size) -> list[dict]:
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True)
    images, annotations, boxes = [], [], []
    for image_id in range(first_id, first_id + count):
        image, people = render_image(rng, size)
        file_name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(image_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]})
        for person in people:
            keypoints = np.concatenate(
                [np.round(person["joints"], 2), person["visibility"][:, None]], axis=1
            )
            keypoints[person["visibility"] == 0] = 0
            annotations.append(
                {
                    "id": len(annotations) + first_id * 10,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [round(v, 2) for v in person["box"]],
                    "area": person["area"],
                    "num_keypoints": int((person["visibility"] > 0).sum()),
                    "keypoints": [float(v) for v in keypoints.reshape(-1)],
                }
            )
            boxes.append((image_id, person["box"]))
    annotation_dir = root / "annotations"
    annotation_dir.mkdir(exist_ok=True)
    (annotation_dir / f"person_keypoints_{split}.json").write_text(
        json.dumps(_coco_json(images, annotations))
    )
    return [{"image_id": i, "bbox": b} for i, b in boxes]


def _detections(rng: np.random.Generator, boxes: list[dict], size) -> list[dict]:
    """A stand-in person detector: jittered ground-truth boxes plus low-score false alarms."""
    detections = []
    for item in boxes:
        x, y, w, h = item["bbox"]
        jitter = rng.normal(0, 0.04, 4) * [w, h, w, h]
        detections.append(
            {
                "image_id": item["image_id"],
                "category_id": 1,
                "bbox": [round(float(v), 2) for v in (x + jitter[0], y + jitter[1],
                                                      w + jitter[2], h + jitter[3])],
                "score": round(float(rng.uniform(0.7, 1.0)), 4),
            }
        )  # fmt: skip
        if rng.random() < 0.3:
            fw, fh = rng.uniform(20, size[0] / 3), rng.uniform(40, size[1] / 2)
            detections.append(
                {
                    "image_id": item["image_id"],
                    "category_id": 1,
                    "bbox": [round(float(rng.uniform(0, size[0] - fw)), 2),
                             round(float(rng.uniform(0, size[1] - fh)), 2),
                             round(float(fw), 2), round(float(fh), 2)],
                    "score": round(float(rng.uniform(0.05, 0.4)), 4),
                }
            )  # fmt: skip
    return detections


def generate_dataset(
    root: str | Path,
    num_train_images: int = 800,
    num_val_images: int = 100,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 240),
) -> Path:
    """Write the dataset in the seed's COCO layout under ``root`` (which must not exist):
    ``annotations/person_keypoints_{train,val}2017.json``, ``images/{train,val}2017/``, and
    ``person_detection_results/COCO_val2017_detections_AP_H_56_person.json`` for val.

    Written into a temporary folder renamed at the end: an interrupted run leaves nothing.
    ``image_size`` is (width, height).
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root} exists already")
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        _write_split(partial, "train2017", num_train_images, 1, rng, image_size)
        val_boxes = _write_split(partial, "val2017", num_val_images, 1_000_000, rng, image_size)
        detection_dir = partial / "person_detection_results"
        detection_dir.mkdir()
        (detection_dir / "COCO_val2017_detections_AP_H_56_person.json").write_text(
            json.dumps(_detections(rng, val_boxes, image_size))
        )
        os.replace(partial, root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return root
