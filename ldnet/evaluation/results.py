"""Reading, checking and writing prediction files.

Two formats, both the ones the HRNet lineage writes:

- COCO results (COCO and CrowdPose): a JSON list of
  ``{"image_id", "category_id": 1, "keypoints": [x, y, v] * J, "score"}`` in image pixels
  (0-based, as the annotation files are).
- MPII ``pred.mat``: one field ``preds`` of shape (N, 16, 2) in MATLAB's 1-based pixel
  coordinates, in the order of the people in ``gt_valid.mat``. Our decoder's coordinates are
  0-based (pixel centres at integers), so writing adds 1, exactly as HRNet's
  ``MPIIDataset.evaluate`` does (``preds[:, :, 0:2] + 1.0``).

Writers are atomic: a temporary file in the target folder, then ``os.replace``, so a crash or a
bad entry never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ldnet.errors import LDNetError
from ldnet.files import atomic_path
from ldnet.numbers import is_finite_number


class EvaluationInputError(LDNetError, ValueError):
    """A predictions or annotation file (or in-memory list) that cannot be evaluated."""


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike, suffix: str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds."""
    target = Path(path)
    if not target.parent.is_dir():
        raise EvaluationInputError(f"{target}: folder {target.parent} does not exist")
    with atomic_path(target, suffix) as tmp:
        yield tmp


def check_coco_results(results: object, num_joints: int, source: str = "results") -> list[dict]:
    """Check a COCO-format results list and return it as plain dicts (copies, JSON types).

    ``source`` names the list in error messages (a file name, or "results" for in-memory).
    Raises ``EvaluationInputError`` naming the first bad entry.
    """
    if not isinstance(results, list):
        raise EvaluationInputError(
            f"{source}: expected a JSON list of COCO keypoint results, got {type(results).__name__}"
        )
    checked = []
    for index, entry in enumerate(results):
        where = f"{source}: entry {index}"
        if not isinstance(entry, dict):
            raise EvaluationInputError(f"{where} is a {type(entry).__name__}, expected an object")
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in entry:
                raise EvaluationInputError(f"{where} has no {key!r}")
        keypoints = entry["keypoints"]
        if isinstance(keypoints, np.ndarray):
            keypoints = keypoints.reshape(-1).tolist()
        if not isinstance(keypoints, (list, tuple)) or len(keypoints) != 3 * num_joints:
            got = len(keypoints) if isinstance(keypoints, (list, tuple)) else keypoints
            raise EvaluationInputError(
                f"{where}: 'keypoints' must be {3 * num_joints} numbers "
                f"([x, y, v] for {num_joints} joints), got {got!r}"
            )
        keypoints = [v.item() if isinstance(v, np.generic) else v for v in keypoints]
        if not all(is_finite_number(v) for v in keypoints):
            raise EvaluationInputError(
                f"{where}: 'keypoints' holds a non-number or non-finite value"
            )
        score = entry["score"]
        score = score.item() if isinstance(score, np.generic) else score
        if not is_finite_number(score):
            raise EvaluationInputError(f"{where}: 'score' must be a finite number, got {score!r}")
        image_id, category_id = entry["image_id"], entry["category_id"]
        image_id = image_id.item() if isinstance(image_id, np.generic) else image_id
        category_id = category_id.item() if isinstance(category_id, np.generic) else category_id
        checked.append(
            {
                "image_id": image_id,
                "category_id": category_id,
                "keypoints": list(keypoints),
                "score": score,
            }
        )
    return checked


def read_coco_results(path: str | os.PathLike, num_joints: int) -> list[dict]:
    """Load and check a COCO keypoint results file."""
    path = Path(path)
    data = _read_json(path, "results file")
    return check_coco_results(data, num_joints, source=f"results file {path}")


def write_coco_results(path: str | os.PathLike, results: Sequence[dict]) -> None:
    """Write COCO keypoint results as JSON, atomically.

    Each entry needs ``image_id``, ``category_id``, ``keypoints`` ([x, y, v] * J, 0-based
    pixels) and ``score``; numpy values are converted. Nothing is written if an entry is bad.
    """
    results = list(results)
    num_joints = _infer_num_joints(results)
    checked = check_coco_results(results, num_joints, source=f"results for {path}")
    with _atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(checked))


def _infer_num_joints(results: list) -> int:
    for entry in results:
        if isinstance(entry, dict) and "keypoints" in entry:
            return len(np.asarray(entry["keypoints"]).reshape(-1)) // 3
    return 0


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise EvaluationInputError(f"{what} {path} does not exist")
    try:
        with path.open() as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EvaluationInputError(f"{what} {path} is not valid JSON: {error}") from None


def write_mpii_pred_mat(path: str | os.PathLike, preds_px: np.ndarray) -> None:
    """Write MPII predictions as HRNet's ``pred.mat``, atomically.

    ``preds_px``: (N, 16, 2) or (N, 16, 3) (x, y[, score]) in our 0-based pixel coordinates.
    The file holds ``preds`` (N, 16, 2) float64 in MATLAB's 1-based coordinates (+1).
    """
    from scipy.io import savemat

    preds = _check_mpii_array(preds_px, f"predictions for {path}")
    with _atomic_path(path, ".mat") as tmp, tmp.open("wb") as f:
        savemat(f, {"preds": preds + 1.0})


def read_mat(path: Path, what: str, expected: str = "") -> dict:
    """A MATLAB file's variables; raise ``EvaluationInputError`` naming ``what`` (e.g.
    "results file") and the problem when it is missing or not a .mat file."""
    from scipy.io import loadmat

    if not path.is_file():
        raise EvaluationInputError(f"{what} {path} does not exist")
    try:
        return loadmat(str(path))
    except Exception as error:  # scipy raises several types for non-MAT input
        raise EvaluationInputError(
            f"{what} {path} is not a MATLAB .mat file{expected}: {error}"
        ) from None


def read_mpii_preds(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Load MPII predictions: ``(preds (N, 16, 2), one_based)``.

    ``pred.mat`` (field ``preds``) is 1-based, as HRNet writes it. A ``.json`` file is read as
    a list of N people, each 16 ``[x, y]`` (or ``[x, y, score]``) pairs in 0-based pixels, the
    convention of the MPII json annotations.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = _read_json(path, "results file")
        if isinstance(data, dict) and "preds" in data:
            data = data["preds"]
        return _check_mpii_array(data, f"results file {path}"), False
    mat = read_mat(path, "results file")
    if "preds" not in mat:
        raise EvaluationInputError(f"results file {path} has no 'preds' field (HRNet pred.mat)")
    return _check_mpii_array(mat["preds"], f"results file {path}"), True


def _check_mpii_array(preds, source: str) -> np.ndarray:
    try:
        array = np.asarray(preds, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvaluationInputError(
            f"{source}: MPII predictions must be an (N, 16, 2) array of numbers"
        ) from None
    if array.ndim != 3 or array.shape[1] != 16 or array.shape[2] not in (2, 3):
        raise EvaluationInputError(
            f"{source}: MPII predictions must have shape (N, 16, 2), got {array.shape}"
        )
    array = array[:, :, :2]
    if not np.isfinite(array).all():
        raise EvaluationInputError(f"{source}: MPII predictions hold non-finite coordinates")
    return np.ascontiguousarray(array)
