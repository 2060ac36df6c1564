"""CrowdPose AP/AR and AP by crowd index, reproducing the official crowdpose-api evaluator.

The official evaluator (Jeff-sjtu/CrowdPose, ``crowdpose-api/PythonAPI/crowdposetools``) is a
copy of pycocotools' ``COCOeval`` with these changes, and only these, reach its keypoint numbers:

- the OKS scale of a person is ``bbox_w * bbox_h * 0.53`` (CrowdPose annotations have no
  segmentation area), used both in the OKS and for the area-range ignore flag;
- its own sigmas: COCO's body sigmas, 0.079 for head and neck (``CROWDPOSE.sigmas``);
- at most 20 detections per image (``maxDets = [20]``, as pycocotools' keypoint default);
- the table is AP, AP50, AP75, AR, AR50, AR75 over all images, then AP(E), AP(M), AP(H): the
  evaluation rerun on the images whose ``crowdIndex`` is < 0.2 (easy), in [0.2, 0.8) (medium)
  and >= 0.8 (hard). The CrowdPose paper defines easy as crowd index < 0.1, but the official
  code (``summarize`` -> ``get_type_result(first=0.2, second=0.8)``) uses 0.2, and so do
  xtcocotools (MMPose) and faster-coco-eval; we follow the code, which produced every
  published CrowdPose number. Each split's AP is ``round(mean(precision[..., all, :]), 4)``:
  the official rounds to 4 decimals, and a split with no images (or no annotated people) is
  -1 (the mean of an all -1 precision array).

So the evaluation here is pycocotools' ``COCOeval`` itself on a copy of the annotations whose
``area`` is set to ``w * h * 0.53``, with the CrowdPose sigmas. ``tests/
test_evaluation_crowdpose.py`` holds numbers produced by the official crowdposetools code and
checks that this module agrees to 1e-6.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ldnet.data.keypoints import CROWDPOSE

from .coco import _quiet, build_coco_api, load_keypoint_annotations, load_results
from .results import EvaluationInputError, check_coco_results

CROWDPOSE_METRIC_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP(E)", "AP(M)", "AP(H)")

# Crowd-index split of the official code (see the module docstring for the paper's 0.1).
EASY_BELOW = 0.2
HARD_FROM = 0.8
# The official evaluator's OKS scale: 0.53 x the box area (no segmentation area in CrowdPose).
BOX_AREA_FACTOR = 0.53


def crowd_index_split(dataset: dict) -> tuple[list, list, list]:
    """Image ids of the easy, medium and hard images, by the official thresholds."""
    easy, medium, hard = [], [], []
    for image in dataset["images"]:
        crowd_index = image["crowdIndex"]
        if crowd_index < EASY_BELOW:
            easy.append(image["id"])
        elif crowd_index < HARD_FROM:
            medium.append(image["id"])
        else:
            hard.append(image["id"])
    return easy, medium, hard


def evaluate_crowdpose(
    results: Sequence[dict], ann_file: str | os.PathLike, *, source: str = "results"
) -> OrderedDict[str, float]:
    """CrowdPose metrics of in-memory results against a CrowdPose annotation file.

    ``results``: COCO results format with 14 ``[x, y, v]`` triples (0-based pixels).
    Returns ``CROWDPOSE_METRIC_NAMES`` -> value in [0, 1]; AP(E/M/H) are rounded to 4
    decimals and -1 for an empty split, as the official evaluator reports them.
    """
    from pycocotools.cocoeval import COCOeval

    checked = check_coco_results(list(results), CROWDPOSE.num_joints, source=source)
    dataset = load_keypoint_annotations(ann_file, CROWDPOSE.num_joints)
    for image in dataset["images"]:
        if not isinstance(image, dict) or not isinstance(image.get("crowdIndex"), (int, float)):
            raise EvaluationInputError(
                f"annotation file {ann_file}: image {image.get('id')!r} has no numeric "
                "'crowdIndex' (is this a CrowdPose annotation file?)"
            )
    dataset = copy.deepcopy(dataset)
    for ann in dataset["annotations"]:
        width, height = ann["bbox"][2], ann["bbox"][3]
        # Same operand order as the official `gt['bbox'][3] * gt['bbox'][2] * 0.53`.
        ann["area"] = height * width * BOX_AREA_FACTOR
        ann.setdefault("iscrowd", 0)
    coco_gt = build_coco_api(dataset)
    coco_dt = load_results(coco_gt, checked, source, ann_file)

    evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
    evaluator.params.kpt_oks_sigmas = np.asarray(CROWDPOSE.sigmas, dtype=np.float64)
    evaluator.params.maxDets = [20]
    with _quiet():
        evaluator.evaluate()
        evaluator.accumulate()
    metrics = OrderedDict()
    for name, is_ap, oks in (
        ("AP", True, None),
        ("AP50", True, 0.5),
        ("AP75", True, 0.75),
        ("AR", False, None),
        ("AR50", False, 0.5),
        ("AR75", False, 0.75),
    ):
        metrics[name] = _summary(evaluator, is_ap, oks)

    for name, image_ids in zip(
        ("AP(E)", "AP(M)", "AP(H)"), crowd_index_split(dataset), strict=True
    ):
        evaluator.params.imgIds = image_ids
        with _quiet():
            evaluator.evaluate()
            evaluator.accumulate()
        # The official mean keeps the -1 entries (absent settings) and rounds to 4 decimals.
        precision = evaluator.eval["precision"][:, :, :, 0, :]
        metrics[name] = float(round(np.mean(precision), 4))
    return metrics


def _summary(evaluator, is_ap: bool, oks_threshold: float | None) -> float:
    """COCOeval's ``_summarize`` for area 'all', maxDets 20: mean over the defined entries."""
    params = evaluator.params
    values = evaluator.eval["precision" if is_ap else "recall"]
    if oks_threshold is not None:
        values = values[np.where(np.isclose(params.iouThrs, oks_threshold, rtol=0, atol=1e-9))[0]]
    area = params.areaRngLbl.index("all")
    values = values[..., area, :]
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0
