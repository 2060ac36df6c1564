"""MPII PCKh: the HRNet protocol on a gt_valid.mat built from the real MPII samples.

The fixture is the five people of ``samples/mpii/test_mpii.json`` (two of them with both
ankles missing) written as HRNet's ``gt_valid.mat``: ``pos_gt_src`` = json joints + 1
(MATLAB's 1-based pixels), ``jnt_missing`` = 1 - ``joints_vis``. The json has no head boxes,
so each person gets a plausible one: the axis-aligned square centred between the upper neck
and the head top, with that distance as its side (head size = 0.6 x diagonal = 0.6 x sqrt(2)
x side). Expected values are counted by hand from the offsets each test applies.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import loadmat, savemat
from test_evaluation_cases import MPII_SAMPLE, load

from ldnet.cli import main
from ldnet.data.keypoints import MPII
from ldnet.evaluation import (
    MPII_METRIC_NAMES,
    EvaluationInputError,
    MPIIGroundTruth,
    evaluate_mpii,
    load_mpii_gt,
    read_mpii_preds,
    write_mpii_pred_mat,
)
from ldnet.evaluation.mpii import MPII_MAT_JOINTS, mpii_pckh_table, pckh_per_joint

NECK, HEAD_TOP, PELVIS, THORAX = 8, 9, 6, 7
ANKLES = (0, 5)


def head_boxes_1based(joints_1based: np.ndarray) -> np.ndarray:
    """(N, 2, 2) square head boxes between upper neck and head top (see module docstring)."""
    neck, top = joints_1based[:, NECK], joints_1based[:, HEAD_TOP]
    centre = (neck + top) / 2
    half_side = np.linalg.norm(top - neck, axis=1)[:, None] / 2
    return np.stack([centre - half_side, centre + half_side], axis=1)


def write_gt_valid_mat(path, joints_0based, visible, head_boxes, joint_order=MPII_MAT_JOINTS):
    """HRNet's gt_valid.mat layout: (16, N), (16, 2, N), (2, 2, N), names as a cell array."""
    order = [MPII_MAT_JOINTS.index(name) for name in joint_order]
    names = np.empty((1, 16), dtype=object)
    names[0, :] = list(joint_order)
    savemat(
        path,
        {
            "dataset_joints": names,
            "jnt_missing": (1 - visible[:, order]).T.astype(np.float64),
            "pos_gt_src": (joints_0based[:, order] + 1.0).transpose(1, 2, 0),
            "headboxes_src": head_boxes.transpose(1, 2, 0),
        },
    )


@pytest.fixture(scope="module")
def sample():
    people = load(MPII_SAMPLE)
    joints = np.array([p["joints"] for p in people], dtype=np.float64)  # 0-based
    visible = np.array([p["joints_vis"] for p in people], dtype=np.int64)
    return joints, visible, head_boxes_1based(joints + 1.0)


@pytest.fixture(scope="module")
def gt_mat(sample, tmp_path_factory):
    path = tmp_path_factory.mktemp("mpii") / "gt_valid.mat"
    write_gt_valid_mat(path, *sample)
    return path


def head_sizes(sample):
    _, _, boxes = sample
    return 0.6 * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)


def offset(sample, fractions):
    """Predictions moved from the ground truth by ``fractions[p, j]`` head sizes (at 30 deg)."""
    joints, _, _ = sample
    direction = np.array([np.cos(np.pi / 6), np.sin(np.pi / 6)])
    distance = np.asarray(fractions, dtype=np.float64) * head_sizes(sample)[:, None]
    return joints + distance[..., None] * direction


def test_fixture_is_the_hrnet_layout(gt_mat, sample):
    joints, visible, _ = sample
    mat = loadmat(str(gt_mat))
    assert mat["pos_gt_src"].shape == (16, 2, 5) and mat["headboxes_src"].shape == (2, 2, 5)
    gt = load_mpii_gt(gt_mat)
    assert gt.joint_names == MPII_MAT_JOINTS
    np.testing.assert_array_equal(gt.joints_px, joints + 1.0)
    assert gt.missing.sum() == 4 and gt.missing[:, ANKLES].sum() == 4
    # Our MPII joint order is the mat's canonical order.
    assert len(MPII.joint_names) == len(MPII_MAT_JOINTS) == 16
    assert MPII.joint_names[HEAD_TOP] == "head_top" and MPII_MAT_JOINTS[HEAD_TOP] == "head"


def test_predictions_at_the_ground_truth_score_100(gt_mat, sample):
    joints, _, _ = sample
    metrics = evaluate_mpii(joints, gt_mat)
    assert tuple(metrics) == MPII_METRIC_NAMES
    assert all(value == 100.0 for value in metrics.values())


def test_known_offsets_give_known_pckh(gt_mat, sample):
    # person 0: 0.3 head sizes (right at 0.5, wrong at 0.1); person 1: 0.05 (right at both);
    # person 2: 0.7 (wrong at both, but its ankles are missing); persons 3, 4: exact
    # (person 3's ankles are missing too).
    fractions = np.zeros((5, 16))
    fractions[0], fractions[1], fractions[2] = 0.3, 0.05, 0.7
    metrics = evaluate_mpii(offset(sample, fractions), gt_mat)
    # Every joint but the ankles: 4 of 5 people right. Ankles: 3 visible, all right.
    for row in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee"):
        assert metrics[row] == pytest.approx(80.0, abs=1e-9)
    assert metrics["Ankle"] == pytest.approx(100.0, abs=1e-9)
    # Mean over 14 joints (no pelvis, thorax): 12 x 4 + 2 x 3 right of 12 x 5 + 2 x 3 visible.
    assert metrics["Mean"] == pytest.approx(100 * 54 / 66, abs=1e-9)
    # At 0.1: 3 of 5 right (persons 1, 3, 4), ankles 2 of 3 (persons 1, 4).
    assert metrics["Mean@0.1"] == pytest.approx(100 * (12 * 3 + 2 * 2) / 66, abs=1e-9)


def test_pelvis_and_thorax_do_not_count_in_the_mean(gt_mat, sample):
    fractions = np.zeros((5, 16))
    fractions[:, [PELVIS, THORAX]] = 5.0
    metrics = evaluate_mpii(offset(sample, fractions), gt_mat)
    assert metrics["Mean"] == 100.0 and metrics["Mean@0.1"] == 100.0
    pckh, count = pckh_per_joint(offset(sample, fractions) + 1, load_mpii_gt(gt_mat), 0.5)
    assert pckh[PELVIS] == 0.0 and pckh[THORAX] == 0.0 and count[PELVIS] == 5


def test_missing_joints_count_nowhere(gt_mat, sample):
    fractions = np.zeros((5, 16))
    fractions[2:4, ANKLES] = 50.0  # the four missing ankles, predicted far off
    metrics = evaluate_mpii(offset(sample, fractions), gt_mat)
    assert metrics["Ankle"] == 100.0 and metrics["Mean"] == 100.0


def test_mean_at_0_1_uses_exactly_0_1(gt_mat, sample):
    # 0.105 head sizes: outside 0.1 (ours), inside 0.11 (HRNet's pckAll[11]).
    metrics = evaluate_mpii(offset(sample, np.full((5, 16), 0.105)), gt_mat)
    assert metrics["Mean"] == 100.0 and metrics["Mean@0.1"] == 0.0
    pckh_011, _ = pckh_per_joint(
        offset(sample, np.full((5, 16), 0.105)) + 1, load_mpii_gt(gt_mat), 0.11
    )
    assert (pckh_011 == 100.0).all()


def test_threshold_is_inclusive():
    # Head box diagonal 50 px -> head size exactly 30 px; 15 px error is exactly 0.5.
    gt = MPIIGroundTruth(
        joint_names=MPII_MAT_JOINTS,
        joints_px=np.full((1, 16, 2), 100.0),
        missing=np.zeros((1, 16), dtype=bool),
        head_boxes_px=np.array([[[0.0, 0.0], [30.0, 40.0]]]),
    )
    assert gt.head_sizes_px[0] == 30.0
    preds = gt.joints_px + np.array([15.0, 0.0])
    assert mpii_pckh_table(preds, gt)["Mean"] == 100.0
    assert mpii_pckh_table(preds + np.array([1e-9, 0.0]), gt)["Mean"] == 0.0


def test_pred_mat_is_one_based_and_round_trips(gt_mat, sample, tmp_path):
    joints, _, _ = sample
    path = tmp_path / "pred.mat"
    write_mpii_pred_mat(path, joints)
    written = loadmat(str(path))["preds"]
    assert written.shape == (5, 16, 2)
    np.testing.assert_array_equal(written, joints + 1.0)
    preds, one_based = read_mpii_preds(path)
    assert one_based
    # Threshold 0: only the exact pixel counts, so a missing or doubled +1 would score 0.
    gt = load_mpii_gt(gt_mat)
    pckh, _ = pckh_per_joint(preds, gt, 0.0)
    assert (pckh == 100.0).all()
    pckh, _ = pckh_per_joint(joints, gt, 0.0)  # 0-based values taken as 1-based: all wrong
    assert (pckh == 0.0).all()
    # (N, 16, 3) with scores is accepted; scores are dropped.
    with_scores = np.concatenate([joints, np.ones((5, 16, 1))], axis=2)
    write_mpii_pred_mat(path, with_scores)
    np.testing.assert_array_equal(loadmat(str(path))["preds"], joints + 1.0)


def test_reordered_dataset_joints_are_followed(sample, tmp_path):
    joints, visible, boxes = sample
    order = tuple(reversed(MPII_MAT_JOINTS))
    path = tmp_path / "gt_reordered.mat"
    write_gt_valid_mat(path, joints, visible, boxes, joint_order=order)
    fractions = np.zeros((5, 16))
    fractions[0], fractions[1], fractions[2] = 0.3, 0.05, 0.7
    fractions[:, 11] = 0.6  # right elbow wrong for everyone
    preds = offset(sample, fractions)
    reference = tmp_path / "gt.mat"
    write_gt_valid_mat(reference, joints, visible, boxes)
    metrics = evaluate_mpii(preds, path)
    assert metrics == evaluate_mpii(preds, reference)
    # Counted as in test_known_offsets_give_known_pckh, less the four right elbows it had
    # right: Elbow 4 of 10, Mean 50 of 66.
    assert metrics["Elbow"] == pytest.approx(40.0, abs=1e-9)
    assert metrics["Mean"] == pytest.approx(100 * 50 / 66, abs=1e-9)


def test_cli_reads_pred_mat_and_json(gt_mat, sample, tmp_path, capsys):
    fractions = np.zeros((5, 16))
    fractions[0], fractions[1], fractions[2] = 0.3, 0.05, 0.7
    preds = offset(sample, fractions)
    expected = evaluate_mpii(preds, gt_mat)
    write_mpii_pred_mat(tmp_path / "pred.mat", preds)
    (tmp_path / "preds.json").write_text(json.dumps(preds.tolist()))
    for results in ("pred.mat", "preds.json"):
        argv = ["evaluate", "--dataset", "mpii", "--ann", str(gt_mat)]
        assert main([*argv, "--results", str(tmp_path / results), "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert list(printed) == list(MPII_METRIC_NAMES)
        for name in MPII_METRIC_NAMES:
            assert printed[name] == pytest.approx(expected[name], abs=1e-9)
    assert main([*argv, "--results", str(tmp_path / "pred.mat")]) == 0
    table = capsys.readouterr().out
    assert "| Head " in table and "Mean@0.1" in table and f"{expected['Mean']:.3f}" in table


def test_bad_input_is_one_clear_error(gt_mat, sample, tmp_path, capsys):
    joints, _, _ = sample
    with pytest.raises(EvaluationInputError, match="4 predicted people for 5"):
        evaluate_mpii(joints[:4], gt_mat)
    with pytest.raises(EvaluationInputError, match=r"shape \(N, 16, 2\)"):
        evaluate_mpii(joints[:, :14], gt_mat)
    (tmp_path / "junk.mat").write_text("not a mat file")
    savemat(tmp_path / "other.mat", {"preds": joints})
    (tmp_path / "bad.json").write_text("{oops")
    cases = [
        (str(gt_mat), str(tmp_path / "absent.mat"), "absent.mat does not exist"),
        (str(gt_mat), str(tmp_path / "junk.mat"), "junk.mat is not a MATLAB .mat file"),
        (str(gt_mat), str(tmp_path / "bad.json"), "bad.json is not valid JSON"),
        (str(tmp_path / "other.mat"), str(tmp_path / "other.mat"), "lacks dataset_joints"),
        (str(MPII_SAMPLE), str(tmp_path / "other.mat"), "test_mpii.json is not a MATLAB"),
    ]
    for ann, results, message in cases:
        argv = ["evaluate", "--dataset", "mpii", "--ann", ann, "--results", results]
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert message in captured.err and captured.err.count("\n") == 1, captured.err


def test_writer_leaves_nothing_behind_on_bad_input(tmp_path):
    path = tmp_path / "pred.mat"
    path.write_bytes(b"previous")
    with pytest.raises(EvaluationInputError):
        write_mpii_pred_mat(path, np.zeros((3, 14, 2)))
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["pred.mat"]
