"""COCO keypoint AP/AR with the official evaluator (pycocotools ``COCOeval``, iouType keypoints).

The numbers are pycocotools' own ``summarize()`` statistics: this module only loads the
annotation file, checks the predictions, and names the ten statistics.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ldnet.data.keypoints import COCO as COCO_KEYPOINTS

from .results import EvaluationInputError, _read_json, check_coco_results

# Names of COCOeval.stats for keypoints, in its order: AP over OKS 0.50:0.95, AP at 0.5 and
# 0.75, AP for medium (32^2..96^2 px^2) and large (> 96^2) people, then the same for recall.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "AP(M)", "AP(L)", "AR", "AR50", "AR75", "AR(M)", "AR(L)")


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout; the CLI's stdout is the table or the JSON."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_keypoint_annotations(ann_file: str | os.PathLike, num_joints: int) -> dict:
    """Load a COCO-style keypoint annotation file and check the parts the evaluator reads."""
    path = Path(ann_file)
    dataset = _read_json(path, "annotation file")
    if not isinstance(dataset, dict) or not all(
        isinstance(dataset.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise EvaluationInputError(
            f"annotation file {path} is not a COCO annotation file "
            "(needs 'images', 'annotations' and 'categories' lists)"
        )
    for category in dataset["categories"]:
        names = category.get("keypoints") if isinstance(category, dict) else None
        if names is not None and len(names) != num_joints:
            raise EvaluationInputError(
                f"annotation file {path}: category {category.get('name')!r} has "
                f"{len(names)} keypoints, expected {num_joints}"
            )
    for index, ann in enumerate(dataset["annotations"]):
        if not isinstance(ann, dict) or not all(
            key in ann for key in ("image_id", "category_id", "keypoints", "bbox", "id")
        ):
            raise EvaluationInputError(
                f"annotation file {path}: annotation {index} lacks "
                "'id', 'image_id', 'category_id', 'keypoints' or 'bbox'"
            )
    return dataset


def build_coco_api(dataset: dict):
    """A pycocotools ``COCO`` object from an in-memory dataset (no file re-read)."""
    from pycocotools.coco import COCO

    api = COCO()
    api.dataset = dataset
    with _quiet():
        api.createIndex()
    return api


def load_results(coco_gt, results: list[dict], source: str, ann_file: str | os.PathLike):
    """``coco_gt.loadRes`` on checked copies, with our errors for ids the annotations lack.

    An empty list is valid (every defined metric then comes out 0): pycocotools' ``loadRes``
    cannot take one, so an empty results API is built directly.
    """
    from pycocotools.coco import COCO

    image_ids = set(coco_gt.getImgIds())
    unknown = sorted({r["image_id"] for r in results if r["image_id"] not in image_ids}, key=str)
    if unknown:
        raise EvaluationInputError(
            f"{source}: {len(unknown)} image id(s) not in annotation file {ann_file} "
            f"(e.g. {unknown[0]!r})"
        )
    category_ids = set(coco_gt.getCatIds())
    bad_categories = sorted({r["category_id"] for r in results} - category_ids, key=str)
    if bad_categories:
        raise EvaluationInputError(
            f"{source}: category_id {bad_categories[0]!r} is not in annotation file {ann_file} "
            f"(categories {sorted(category_ids)})"
        )
    if not results:
        warnings.warn(
            f"{source} is empty: no predictions, every metric with ground truth is 0",
            stacklevel=3,
        )
        empty = COCO()
        empty.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset["categories"]),
            "annotations": [],
        }
        with _quiet():
            empty.createIndex()
        return empty
    with _quiet():
        # loadRes adds 'area', 'bbox' and 'id' to the dicts it is given: hand it copies.
        return coco_gt.loadRes(copy.deepcopy(results))


def evaluate_coco(
    results: Sequence[dict], ann_file: str | os.PathLike, *, source: str = "results"
) -> OrderedDict[str, float]:
    """COCO keypoint AP/AR of in-memory results against a COCO annotation file.

    ``results``: COCO results format, ``{"image_id", "category_id", "keypoints", "score"}``
    with 17 ``[x, y, v]`` triples in 0-based image pixels. Returns ``COCO_METRIC_NAMES`` ->
    value in [0, 1] (-1 where the annotations hold no person of that kind, as pycocotools).
    """
    from pycocotools.cocoeval import COCOeval

    checked = check_coco_results(list(results), COCO_KEYPOINTS.num_joints, source=source)
    dataset = load_keypoint_annotations(ann_file, COCO_KEYPOINTS.num_joints)
    coco_gt = build_coco_api(dataset)
    coco_dt = load_results(coco_gt, checked, source, ann_file)
    evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
    # pycocotools' default sigmas are the official ones; ours must be the same numbers.
    assert np.allclose(evaluator.params.kpt_oks_sigmas, COCO_KEYPOINTS.sigmas, rtol=0, atol=1e-12)
    with _quiet():
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return OrderedDict(
        (name, float(value)) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats, strict=True)
    )
