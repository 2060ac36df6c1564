"""CrowdPose: ``evaluate_crowdpose`` equals the official crowdpose-api evaluator to 1e-6.

How the expected numbers were produced (once, by hand; nothing of it is in the repository):
the official evaluator, ``crowdpose-api/PythonAPI/crowdposetools`` of github.com/Jeff-sjtu/
CrowdPose at commit 86fe5e11e570 (unmodified), was built with Cython in a throwaway
virtual environment under /tmp with numpy 1.23.5 (it uses ``np.float``, gone from numpy 2).
The three cases of ``test_evaluation_cases.crowdpose_cases()`` were dumped to JSON, and for
each the official sequence ran: ``COCO(ann)``, ``loadRes(results_file)``,
``COCOeval(gt, dt, 'keypoints')``, ``evaluate()``, ``accumulate()``, ``summarize()``. Its
``stats`` are [AP, AP50, AP75, 0, 0, AR, AR50, AR75, AP(easy), AP(medium), AP(hard)]; the
values below are those, printed with ``repr``. Ours matched them exactly (difference 0.0).
"""

from __future__ import annotations

import copy
import json

import pytest
from test_evaluation_cases import CROWDPOSE_SAMPLE, crowdpose_cases, load

from ldnet.cli import main
from ldnet.evaluation import CROWDPOSE_METRIC_NAMES, EvaluationInputError, evaluate_crowdpose
from ldnet.evaluation.crowdpose import crowd_index_split

# name -> official crowdposetools stats, in CROWDPOSE_METRIC_NAMES order.
OFFICIAL = {
    # The real sample: both images have crowd index 0.33 / 0.39 -> all medium; the empty
    # easy and hard splits are -1 in the official output.
    "sample": (
        0.44818481848184816, 0.5643564356435643, 0.5643564356435643,
        0.625, 0.75, 0.75,
        -1.0, 0.4482, -1.0,
    ),
    # The sample with crowd index 0.15 (easy by the code's 0.2, medium by the paper's 0.1)
    # and 0.85 (hard).
    "sample_resplit": (
        0.5227722772277228, 0.6287128712871287, 0.6287128712871287,
        0.65, 0.75, 0.75,
        0.2525, -1.0, 0.801,
    ),
    # COCO-MINI val (79 images, 118 people, crowd annotations included) as 14 CrowdPose joints.
    "coco_mini_as_crowdpose": (
        0.2987574179371205, 0.41130501635761857, 0.30962568087794695,
        0.5119402985074627, 0.6268656716417911, 0.5373134328358209,
        0.2148, 0.4126, 0.1575,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """name -> (annotation path, predictions), the annotations written as files."""
    folder = tmp_path_factory.mktemp("crowdpose")
    written = {}
    for name, (dataset, results) in crowdpose_cases().items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(dataset))
        written[name] = (path, results)
    return written


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_equals_the_official_crowdpose_evaluator(cases, name):
    ann_file, results = cases[name]
    untouched = copy.deepcopy(results)
    metrics = evaluate_crowdpose(results, ann_file)
    assert tuple(metrics) == CROWDPOSE_METRIC_NAMES
    assert list(metrics.values()) == pytest.approx(OFFICIAL[name], abs=1e-6, rel=0)
    assert results == untouched


def test_cli_equals_the_official_evaluator(cases, tmp_path, capsys):
    ann_file, results = cases["coco_mini_as_crowdpose"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    argv = ["evaluate", "--dataset", "crowdpose", "--ann", str(ann_file), "--results", str(path)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == list(CROWDPOSE_METRIC_NAMES)
    assert list(printed.values()) == pytest.approx(OFFICIAL["coco_mini_as_crowdpose"], abs=1e-6)
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| AP(E) " in table and f"{printed['AP']:.3f}" in table


def test_crowd_index_split_follows_the_official_code():
    dataset = {
        "images": [
            {"id": i, "crowdIndex": c} for i, c in enumerate((0.0, 0.1, 0.19, 0.2, 0.79, 0.8, 1.0))
        ]
    }
    assert crowd_index_split(dataset) == ([0, 1, 2], [3, 4], [5, 6])


def test_ground_truth_as_predictions_scores_1():
    dataset = load(CROWDPOSE_SAMPLE)
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in dataset["annotations"]
        if a["num_keypoints"] > 0
    ]
    metrics = evaluate_crowdpose(results, CROWDPOSE_SAMPLE)
    assert [metrics[k] for k in ("AP", "AP50", "AR", "AP(M)")] == [1.0] * 4
    assert metrics["AP(E)"] == metrics["AP(H)"] == -1.0  # no easy or hard image in the sample


def test_empty_results_warn(cases):
    ann_file, _ = cases["coco_mini_as_crowdpose"]
    with pytest.warns(UserWarning, match="empty"):
        metrics = evaluate_crowdpose([], ann_file)
    assert all(value == 0.0 for value in metrics.values())


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    coco17 = [{"image_id": 106848, "category_id": 1, "keypoints": [0.0] * 51, "score": 1.0}]
    no_crowd_index = load(CROWDPOSE_SAMPLE)
    del no_crowd_index["images"][0]["crowdIndex"]
    (tmp_path / "ann.json").write_text(json.dumps(no_crowd_index))
    (tmp_path / "coco17.json").write_text(json.dumps(coco17))
    coco14 = [{**coco17[0], "keypoints": [0.0] * 42}]
    (tmp_path / "ok.json").write_text(json.dumps(coco14))
    for ann, results, message in (
        (CROWDPOSE_SAMPLE, "coco17.json", "'keypoints' must be 42 numbers"),
        (tmp_path / "ann.json", "ok.json", "has no numeric 'crowdIndex'"),
    ):
        argv = ["evaluate", "--dataset", "crowdpose", "--ann", str(ann)]
        assert main([*argv, "--results", str(tmp_path / results)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1
        assert message in captured.err and str(tmp_path) in captured.err, captured.err
    with pytest.raises(EvaluationInputError, match="image id"):
        evaluate_crowdpose([{**coco14[0], "image_id": 5}], CROWDPOSE_SAMPLE)
