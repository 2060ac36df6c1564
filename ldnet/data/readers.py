"""Dataset readers: annotation files -> one ``PersonRecord`` per top-down sample.

Fatal problems (the annotation file cannot be read, is not JSON, or is not the expected
schema) raise ``DataError`` naming the file and the reason. Per-sample problems (missing
image, box of zero area, joint outside the image, detection for an unknown image, malformed
entry) are recorded as ``Problem``s and the sample is skipped (or the joint ignored), unless
``strict=True``, which makes the first one raise ``DataError``.

Conventions, all HRNet's (see ``transforms`` for the crop geometry):

- COCO / CrowdPose ground truth: person category only, crowd and keypoint-less people
  skipped; the box is first "cleaned" like HRNet's (clipped to the image, ``x2 = x1 + w - 1``)
  then turned into centre/scale. Detection boxes are used as they are, as HRNet does.
- MPII (HRNet json): ``center`` and ``joints`` are MATLAB 1-based and are made 0-based
  (``- 1``); before that the centre moves down by ``15 * scale`` px and the scale grows by
  1.25 ("to avoid cropping limbs"). ``scale`` is the box height / 200 and is used for both
  axes (MPII is trained square, 256x256).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldnet.errors import LDNetError

from .keypoints import COCO, CROWDPOSE, KEYPOINT_SETS, MPII, KeypointSet
from .transforms import PADDING, PIXEL_STD, box_to_center_scale


class DataError(LDNetError):
    """A fatal data problem; the message names the file and the reason."""


@dataclass
class Problem:
    """One skipped item (or ignored joint) and why."""

    item: str
    reason: str
    action: str = "skipped"

    def as_dict(self) -> dict:
        return {"item": self.item, "reason": self.reason, "action": self.action}


@dataclass
class PersonRecord:
    """One person to crop: where the image is, the box as centre/scale, the ground truth."""

    image_path: Path
    image_id: int
    person_id: int  # annotation id (COCO, CrowdPose), entry index (MPII), detection index
    center: np.ndarray  # (2,) float32, image px
    scale: np.ndarray  # (2,) float32, box size / 200, padding included
    box_xywh: np.ndarray  # (4,) float32, the box the centre/scale came from
    joints: np.ndarray  # (K, 2) float32, image px, 0-based
    visible: np.ndarray  # (K,) float32, 1 labelled, 0 not
    score: float = 1.0  # detection score (1 for ground-truth boxes)
    area: float = 0.0  # COCO area (for OKS), or box area when the file has none

    @property
    def has_keypoints(self) -> bool:
        return bool(self.visible.any())


@dataclass
class PoseAnnotations:
    """What a reader returns: the records plus what was skipped and a few counts."""

    dataset: str
    keypoint_set: KeypointSet
    annotation_file: Path
    image_dir: Path
    records: list[PersonRecord]
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    image_files: dict[int, Path] = field(default_factory=dict)  # every image of the file
    crowd_index: dict[int, float] = field(default_factory=dict)  # CrowdPose only

    def __len__(self) -> int:
        return len(self.records)


class _ProblemLog:
    def __init__(self, source: Path, strict: bool):
        self.source, self.strict, self.problems = source, strict, []

    def add(self, item: str, reason: str, action: str = "skipped") -> None:
        if self.strict:
            raise DataError(f"{self.source}: {item}: {reason}")
        self.problems.append(Problem(item, reason, action))


def load_json(path: str | Path):
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a JSON file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None


def _schema_error(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: not the expected schema: {reason}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_list(value, length: int | None = None) -> np.ndarray | None:
    if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
        return None
    if length is not None and len(value) != length:
        return None
    array = np.asarray(value, dtype=np.float64)
    return array if np.isfinite(array).all() else None


def _check_images(images: dict[int, Path], log: _ProblemLog) -> set[int]:
    missing = set()
    for image_id, path in images.items():
        if not path.is_file():
            missing.add(image_id)
            log.add(f"image {image_id} ({path.name})", "missing image")
    return missing


def _drop_joints_outside(
    joints: np.ndarray, visible: np.ndarray, size: tuple[int, int] | None, item: str, log
) -> None:
    """Labelled joints outside the image are annotation errors: ignore them (weight 0)."""
    if size is None:
        return
    width, height = size
    outside = (visible > 0) & (
        (joints[:, 0] < 0) | (joints[:, 1] < 0) | (joints[:, 0] > width) | (joints[:, 1] > height)
    )
    for j in np.flatnonzero(outside):
        log.add(
            item,
            f"joint {j} at ({joints[j, 0]:.1f}, {joints[j, 1]:.1f}) outside the "
            f"{width}x{height} image",
            action="joint ignored",
        )
    visible[outside] = 0.0


# ---------------------------------------------------------------------------------------
# COCO and CrowdPose
# ---------------------------------------------------------------------------------------
def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    keypoint_set: KeypointSet = COCO,
    input_size: tuple[int, int] = (256, 192),
    detections: str | Path | None = None,
    score_threshold: float = 0.0,
    check_images: bool = True,
    strict: bool = False,
) -> PoseAnnotations:
    """COCO-style person keypoints (COCO 2017, CrowdPose) -> records.

    With ``detections`` (a COCO detection-results file) the people are the detected boxes
    with ``score >= score_threshold`` and no ground truth; otherwise the ground-truth boxes.
    ``input_size`` (height, width) sets the aspect ratio of the boxes.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    data = load_json(annotation_file)
    log = _ProblemLog(annotation_file, strict)
    k = keypoint_set.num_joints
    if not isinstance(data, dict):
        raise _schema_error(annotation_file, "top level is not an object")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise _schema_error(annotation_file, f"no '{key}' list")
    for category in data.get("categories") or []:
        names = category.get("keypoints") if isinstance(category, dict) else None
        if category.get("id") == 1 and isinstance(names, list) and len(names) != k:
            raise _schema_error(
                annotation_file,
                f"the person category has {len(names)} keypoints, {keypoint_set.name} has {k}",
            )

    images: dict[int, Path] = {}
    sizes: dict[int, tuple[int, int]] = {}
    crowd_index: dict[int, float] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise _schema_error(annotation_file, f"images[{i}] has no 'id' or 'file_name'")
        image_id = image["id"]
        images[image_id] = image_dir / str(image["file_name"])
        if _is_number(image.get("width")) and _is_number(image.get("height")):
            sizes[image_id] = (int(image["width"]), int(image["height"]))
        if _is_number(image.get("crowdIndex")):
            crowd_index[image_id] = float(image["crowdIndex"])
    missing = _check_images(images, log) if check_images else set()

    stats = {"images": len(images), "people": 0, "people_with_keypoints": 0, "crowd": 0}
    records: list[PersonRecord] = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise _schema_error(annotation_file, f"annotations[{i}] is not an object")
        if ann.get("category_id", 1) != 1:
            continue
        stats["people"] += 1
        ann_id = ann.get("id", i)
        image_id = ann.get("image_id")
        item = f"annotation {ann_id} (image {image_id})"
        keypoints = _number_list(ann.get("keypoints"), 3 * k)
        if ann.get("keypoints") is not None and keypoints is None:
            log.add(item, f"'keypoints' is not a list of {3 * k} numbers")
            continue
        if keypoints is None:
            keypoints = np.zeros(3 * k)
        keypoints = keypoints.reshape(k, 3)
        has_keypoints = bool((keypoints[:, 2] > 0).any())
        stats["people_with_keypoints"] += has_keypoints
        if ann.get("iscrowd", 0):
            stats["crowd"] += 1
        if detections is not None:
            continue  # ground truth only counted; the people come from the detections
        if ann.get("iscrowd", 0) or not has_keypoints:
            continue  # by design (HRNet): nothing to learn from, not a problem
        if image_id not in images:
            log.add(item, "annotation names an unknown image id")
            continue
        if image_id in missing:
            continue
        box = _number_list(ann.get("bbox"), 4)
        if box is None:
            log.add(item, "'bbox' is not 4 finite numbers")
            continue
        clean = _clean_box(box, sizes.get(image_id))
        if clean is None:
            log.add(item, f"invalid box {box.round(2).tolist()} (zero area)")
            continue
        joints = keypoints[:, :2].astype(np.float32)
        visible = (keypoints[:, 2] > 0).astype(np.float32)
        _drop_joints_outside(joints, visible, sizes.get(image_id), item, log)
        center, scale = box_to_center_scale(clean, input_size)
        area = float(ann["area"]) if _is_number(ann.get("area")) else float(box[2] * box[3])
        records.append(
            PersonRecord(
                image_path=images[image_id],
                image_id=image_id,
                person_id=int(ann_id) if _is_number(ann_id) else i,
                center=center,
                scale=scale,
                box_xywh=clean.astype(np.float32),
                joints=joints,
                visible=visible,
                area=area,
            )
        )

    if detections is not None:
        records = _read_detections(
            Path(detections), images, missing, keypoint_set, input_size, score_threshold, log
        )
    return PoseAnnotations(
        dataset=keypoint_set.name,
        keypoint_set=keypoint_set,
        annotation_file=annotation_file,
        image_dir=image_dir,
        records=records,
        problems=log.problems,
        stats=stats,
        image_files=images,
        crowd_index=crowd_index,
    )


def _clean_box(box: np.ndarray, size: tuple[int, int] | None) -> np.ndarray | None:
    """HRNet's box sanitising: clip to the image, ``x2 = x1 + max(0, w - 1)``."""
    x, y, w, h = box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = x1 + max(0.0, w - 1), y1 + max(0.0, h - 1)
    if size is not None:
        x2, y2 = min(size[0] - 1.0, x2), min(size[1] - 1.0, y2)
    if w <= 0 or h <= 0 or x2 <= x1 or y2 <= y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1])


def _read_detections(
    path: Path,
    images: dict[int, Path],
    missing: set[int],
    keypoint_set: KeypointSet,
    input_size: tuple[int, int],
    score_threshold: float,
    log: _ProblemLog,
) -> list[PersonRecord]:
    data = load_json(path)
    if not isinstance(data, list):
        raise _schema_error(path, "a detection-results file is a list of detections")
    k = keypoint_set.num_joints
    records = []
    for i, det in enumerate(data):
        if not isinstance(det, dict) or "image_id" not in det or "bbox" not in det:
            raise _schema_error(path, f"detection [{i}] has no 'image_id' or 'bbox'")
        if det.get("category_id", 1) != 1:
            continue
        item = f"detection {i} (image {det['image_id']})"
        score = det.get("score", 1.0)
        if not _is_number(score):
            log.add(item, "'score' is not a number")
            continue
        if score < score_threshold:
            continue
        if det["image_id"] not in images:
            log.add(item, "detection names an unknown image id")
            continue
        if det["image_id"] in missing:
            continue
        box = _number_list(det["bbox"], 4)
        if box is None or box[2] <= 0 or box[3] <= 0:
            log.add(item, f"invalid box {det['bbox']!r} (zero area or not 4 numbers)")
            continue
        center, scale = box_to_center_scale(box, input_size)
        records.append(
            PersonRecord(
                image_path=images[det["image_id"]],
                image_id=det["image_id"],
                person_id=i,
                center=center,
                scale=scale,
                box_xywh=box.astype(np.float32),
                joints=np.zeros((k, 2), np.float32),
                visible=np.zeros(k, np.float32),
                score=float(score),
                area=float(box[2] * box[3]),
            )
        )
    return records


def read_crowdpose(annotation_file: str | Path, image_dir: str | Path, **kwargs) -> PoseAnnotations:
    """CrowdPose (14 joints, COCO-style json with ``crowdIndex`` per image)."""
    return read_coco(annotation_file, image_dir, keypoint_set=CROWDPOSE, **kwargs)


# ---------------------------------------------------------------------------------------
# MPII
# ---------------------------------------------------------------------------------------
def read_mpii(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    input_size: tuple[int, int] = (256, 256),
    check_images: bool = True,
    strict: bool = False,
    **unused,
) -> PoseAnnotations:
    """MPII in the HRNet json layout (``image``, ``center``, ``scale``, ``joints``,
    ``joints_vis``) -> records, with HRNet's centre/scale adjustment and 1-based -> 0-based.

    ``input_size`` is accepted for symmetry; HRNet's MPII scale ignores the aspect ratio.
    """
    if unused.get("detections") is not None:
        raise DataError(f"{annotation_file}: MPII is tested with its own boxes, not detections")
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    data = load_json(annotation_file)
    log = _ProblemLog(annotation_file, strict)
    k = MPII.num_joints
    if not isinstance(data, list):
        raise _schema_error(annotation_file, "the HRNet MPII json is a list of people")
    records: list[PersonRecord] = []
    images: dict[int, Path] = {}
    image_ids: dict[str, int] = {}
    sizes: dict[int, tuple[int, int] | None] = {}
    missing: set[int] = set()
    stats = {"images": 0, "people": len(data), "people_with_keypoints": 0, "crowd": 0}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not {"image", "center", "scale"} <= entry.keys():
            raise _schema_error(annotation_file, f"[{i}] lacks 'image', 'center' or 'scale'")
        name = str(entry["image"])
        if name not in image_ids:
            image_id = image_ids[name] = _mpii_image_id(name, len(image_ids))
            images[image_id] = image_dir / name
            if check_images:
                if not images[image_id].is_file():
                    missing.add(image_id)
                    log.add(f"image {name}", "missing image")
                    sizes[image_id] = None
                else:
                    from .images import image_size

                    sizes[image_id] = image_size(images[image_id])
        image_id = image_ids[name]
        item = f"person {i} (image {name})"
        center = _number_list(entry["center"], 2)
        scale = entry["scale"]
        if center is None or not _is_number(scale):
            log.add(item, "'center' is not 2 numbers or 'scale' not a number")
            continue
        if "joints" in entry:
            joints = _number_list(
                sum(entry["joints"], []) if _is_list_of_lists(entry["joints"]) else None, 2 * k
            )
            vis = _number_list(entry.get("joints_vis"), k)
            if joints is None or vis is None:
                log.add(item, f"'joints' is not {k} x 2 numbers or 'joints_vis' not {k} numbers")
                continue
            joints = joints.reshape(k, 2) - 1.0  # MATLAB 1-based -> 0-based
            visible = (vis > 0).astype(np.float32)
        else:  # the test split has no joints
            joints, visible = np.zeros((k, 2)), np.zeros(k, np.float32)
        stats["people_with_keypoints"] += bool(visible.any())
        if image_id in missing:
            continue
        if scale <= 0 or center[0] == -1:
            log.add(item, f"invalid box (scale {scale}, centre {center.tolist()})")
            continue
        # HRNet: move the centre down 15 px per scale unit, pad by 1.25, then 1-based -> 0-based.
        center = np.array([center[0], center[1] + 15.0 * scale]) - 1.0
        box_size = scale * PIXEL_STD
        joints = joints.astype(np.float32)
        _drop_joints_outside(joints, visible, sizes.get(image_id), item, log)
        records.append(
            PersonRecord(
                image_path=images[image_id],
                image_id=image_id,
                person_id=i,
                center=center.astype(np.float32),
                scale=np.full(2, scale * PADDING, np.float32),
                box_xywh=np.array(
                    [center[0] - box_size / 2, center[1] - box_size / 2, box_size, box_size],
                    np.float32,
                ),
                joints=joints,
                visible=visible,
                area=float(box_size**2),
            )
        )
    stats["images"] = len(images)
    return PoseAnnotations(
        dataset="mpii",
        keypoint_set=MPII,
        annotation_file=annotation_file,
        image_dir=image_dir,
        records=records,
        problems=log.problems,
        stats=stats,
        image_files=images,
    )


def _is_list_of_lists(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, list) for v in value)


def _mpii_image_id(name: str, fallback: int) -> int:
    """MPII images are named by a 9-digit number; use it as the id when it is one."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else fallback


@dataclass
class MPIIGroundTruth:
    """The evaluation file ``gt_valid.mat`` (MATLAB 1-based pixel coordinates)."""

    dataset_joints: tuple[str, ...]  # joint names in the file's order ("rank", "rkne", ...)
    jnt_missing: np.ndarray  # (16, N) 1 where the joint is not annotated
    pos_gt_src: np.ndarray  # (16, 2, N) joint positions
    headboxes_src: np.ndarray  # (2, 2, N) head box corners: [[x1, y1], [x2, y2]] per person

    @property
    def num_people(self) -> int:
        return self.pos_gt_src.shape[2]


def read_mpii_gt(path: str | Path) -> MPIIGroundTruth:
    """Read ``gt_valid.mat`` for PCKh evaluation; ``DataError`` if it is not that file."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as error:  # scipy raises several types for a non-MAT file
        raise DataError(f"{path}: not a MATLAB .mat file ({error})") from None
    fields = ("dataset_joints", "jnt_missing", "pos_gt_src", "headboxes_src")
    absent = [name for name in fields if name not in mat]
    if absent:
        raise _schema_error(path, f"missing field(s) {', '.join(absent)}")
    names = tuple(str(np.asarray(n).ravel()[0]) for n in np.asarray(mat["dataset_joints"]).ravel())
    gt = MPIIGroundTruth(
        dataset_joints=names,
        jnt_missing=np.asarray(mat["jnt_missing"]),
        pos_gt_src=np.asarray(mat["pos_gt_src"], dtype=np.float64),
        headboxes_src=np.asarray(mat["headboxes_src"], dtype=np.float64),
    )
    n = gt.pos_gt_src.shape[-1] if gt.pos_gt_src.ndim == 3 else -1
    if (
        len(names) != 16
        or gt.pos_gt_src.shape != (16, 2, n)
        or gt.jnt_missing.shape != (16, n)
        or gt.headboxes_src.shape != (2, 2, n)
    ):
        raise _schema_error(
            path,
            f"expected 16 joint names, pos_gt_src (16, 2, N), jnt_missing (16, N), "
            f"headboxes_src (2, 2, N); got {len(names)} names, {gt.pos_gt_src.shape}, "
            f"{gt.jnt_missing.shape}, {gt.headboxes_src.shape}",
        )
    return gt


# ---------------------------------------------------------------------------------------
# The seed's data layout
# ---------------------------------------------------------------------------------------
DATASETS = ("coco", "mpii", "crowdpose")
COCO_DETECTIONS = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def seed_paths(dataset: str, root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of a split in the seed's layout (DESIGN.md, 5)."""
    root = Path(root)
    if dataset == "coco":
        return root / "annotations" / f"person_keypoints_{split}.json", root / "images" / split
    if dataset == "mpii":
        return root / "annot" / f"{split}.json", root / "images"
    if dataset == "crowdpose":
        return root / "json" / f"crowdpose_{split}.json", root / "images"
    raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")


READERS = {"coco": read_coco, "mpii": read_mpii, "crowdpose": read_crowdpose}


def read_dataset(
    dataset: str,
    annotation_file: str | Path,
    image_dir: str | Path,
    **kwargs,
) -> PoseAnnotations:
    """Dispatch to the reader of ``dataset`` ("coco", "mpii", "crowdpose")."""
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    return READERS[dataset](annotation_file, image_dir, **kwargs)


def keypoint_set_of(dataset: str) -> KeypointSet:
    return KEYPOINT_SETS[dataset]


def records_with_keypoints(records: Iterable[PersonRecord]) -> list[PersonRecord]:
    return [r for r in records if r.has_keypoints]
