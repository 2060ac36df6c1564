"""COCO keypoint AP/AR: ``evaluate_coco`` and ``ldnet evaluate`` equal pycocotools run directly.

Real annotation files (the COCO val samples and COCO-MINI val), predictions made from their
ground truth with deterministic noise, several scores, ties and false positives.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_evaluation_cases import COCO_MINI_VAL, COCO_SAMPLE, load, perturbed_predictions

from ldnet.cli import main
from ldnet.data.keypoints import COCO as COCO_KEYPOINTS
from ldnet.evaluation import (
    COCO_METRIC_NAMES,
    EvaluationInputError,
    evaluate_coco,
    write_coco_results,
)

# (annotations, seed, AP recorded from pycocotools: the predictions are deterministic)
CASES = [
    (COCO_SAMPLE, 1, 0.14929169840060927),
    (COCO_SAMPLE, 2, 0.18580858085808583),
    (COCO_MINI_VAL, 3, 0.2507817529334987),
    (COCO_MINI_VAL, 4, 0.22914840259968675),
]


def pycocotools_stats(ann_file, results) -> list[float]:
    """The reference: pycocotools' own loading, loadRes and summarize."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ann_file))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


@pytest.mark.parametrize(
    ("ann_file", "seed", "recorded_ap"), CASES, ids=[f"{c[0].stem}-{c[1]}" for c in CASES]
)
def test_equals_pycocotools_on_real_annotations(ann_file, seed, recorded_ap):
    results = perturbed_predictions(load(ann_file), seed)
    untouched = copy.deepcopy(results)
    expected = pycocotools_stats(ann_file, results)
    metrics = evaluate_coco(results, ann_file)
    assert tuple(metrics) == COCO_METRIC_NAMES
    assert list(metrics.values()) == pytest.approx(expected, abs=1e-6, rel=0)
    assert results == untouched  # loadRes adds keys to what it is given: we pass copies
    # The noise makes this a real test: neither perfect nor zero, and the same every run.
    assert metrics["AP"] == pytest.approx(recorded_ap, abs=1e-9)


def test_cli_equals_pycocotools(tmp_path, capsys):
    results = perturbed_predictions(load(COCO_MINI_VAL), 3)
    path = tmp_path / "results.json"
    write_coco_results(path, results)
    argv = ["evaluate", "--dataset", "coco", "--ann", str(COCO_MINI_VAL), "--results", str(path)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == list(COCO_METRIC_NAMES)
    assert list(printed.values()) == pytest.approx(
        pycocotools_stats(COCO_MINI_VAL, results), abs=1e-6, rel=0
    )
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| AP " in table and "AR(L)" in table and f"{printed['AP']:.3f}" in table


def test_ground_truth_as_predictions_scores_1():
    dataset = load(COCO_SAMPLE)
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in dataset["annotations"]
        if a["num_keypoints"] > 0
    ]
    assert all(value == 1.0 for value in evaluate_coco(results, COCO_SAMPLE).values())


def test_numpy_values_are_accepted():
    results = perturbed_predictions(load(COCO_SAMPLE), 1)
    results[0]["keypoints"] = [round(v) for v in results[0]["keypoints"]]  # ints, too
    as_numpy = [
        {
            "image_id": np.int64(r["image_id"]),
            "category_id": np.int32(1),
            "keypoints": [
                np.int32(v) if isinstance(v, int) else np.float64(v) for v in r["keypoints"]
            ],
            "score": np.float64(r["score"]),
        }
        for r in results
    ]
    as_numpy[1]["keypoints"] = np.asarray(results[1]["keypoints"]).reshape(-1, 3)
    assert evaluate_coco(as_numpy, COCO_SAMPLE) == evaluate_coco(results, COCO_SAMPLE)


def test_sigmas_are_the_official_ones():
    evaluator = COCOeval(iouType="keypoints")
    np.testing.assert_allclose(evaluator.params.kpt_oks_sigmas, COCO_KEYPOINTS.sigmas, atol=1e-12)


def test_empty_results_are_valid_with_a_warning(tmp_path, capsys):
    with pytest.warns(UserWarning, match="empty"):
        metrics = evaluate_coco([], COCO_SAMPLE)
    assert all(value == 0.0 for value in metrics.values())
    path = tmp_path / "empty.json"
    path.write_text("[]")
    argv = ["evaluate", "--dataset", "coco", "--ann", str(COCO_SAMPLE), "--results", str(path)]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert all(value == 0.0 for value in json.loads(captured.out).values())
    assert "warning" in captured.err and "empty.json is empty" in captured.err


def _cli_error(capsys, ann, results, dataset="coco") -> str:
    argv = ["evaluate", "--dataset", dataset, "--ann", str(ann), "--results", str(results)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    return captured.err


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    good = perturbed_predictions(load(COCO_SAMPLE), 1)
    files = {
        "unknown_image.json": [{**good[0], "image_id": 123456789}] + good[1:],
        "not_a_list.json": {"annotations": good},
        "no_score.json": [{k: v for k, v in good[0].items() if k != "score"}],
        "short.json": [{**good[0], "keypoints": good[0]["keypoints"][:42]}],
        "bad_category.json": [{**good[0], "category_id": 2}],
        "nan.json": [{**good[0], "score": float("nan")}],
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    (tmp_path / "broken.json").write_text('[{"image_id": 1,')
    expectations = {
        "unknown_image.json": "1 image id(s) not in annotation file",
        "not_a_list.json": "expected a JSON list",
        "no_score.json": "entry 0 has no 'score'",
        "short.json": "'keypoints' must be 51 numbers",
        "bad_category.json": "category_id 2 is not in annotation file",
        "nan.json": "'score' must be a finite number",
        "broken.json": "is not valid JSON",
        "absent.json": "absent.json does not exist",
    }
    for name, message in expectations.items():
        err = _cli_error(capsys, COCO_SAMPLE, tmp_path / name)
        assert name in err and message in err, err
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(good))
    assert "annotation file" in _cli_error(capsys, tmp_path / "nope.json", ok)
    (tmp_path / "not_coco.json").write_text("[1, 2]")
    err = _cli_error(capsys, tmp_path / "not_coco.json", ok)
    assert "is not a COCO annotation file" in err
    # The library raises a ValueError subclass naming the problem.
    with pytest.raises(EvaluationInputError, match="not in annotation file") as info:
        evaluate_coco(files["unknown_image.json"], COCO_SAMPLE)
    assert isinstance(info.value, ValueError)


def test_writer_is_atomic(tmp_path):
    results = perturbed_predictions(load(COCO_SAMPLE), 1)
    path = tmp_path / "results.json"
    write_coco_results(path, results)
    assert json.loads(path.read_text()) == results
    bad = results + [{"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51}]  # no score
    with pytest.raises(EvaluationInputError, match="entry .* has no 'score'"):
        write_coco_results(path, bad)
    assert json.loads(path.read_text()) == results  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with pytest.raises(EvaluationInputError, match="does not exist"):
        write_coco_results(tmp_path / "missing_dir" / "r.json", results)
