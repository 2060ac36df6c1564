"""Prediction: PoseEstimator, person boxes, detectors, sources, smoothing, `ldnet predict`,
and every item of the bad-input list (one line naming the input, exit 2, nothing half
written, one bad file of a folder skipped and the rest processed)."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import VAL2017, VAL_ANN, VIDEO, only_line, random_checkpoint, run_cli

from ldnet.checkpoint import atomic_save
from ldnet.cli import main
from ldnet.models import build_model
from ldnet.predict import (
    BoxError,
    DetectionFile,
    DetectorError,
    OneEuroFilter,
    OnnxPersonDetector,
    PoseEstimator,
    PoseSmoother,
    SourceError,
    check_boxes,
    open_source,
)
from ldnet.predict.writers import VideoWriter


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("weights") / "random.pt")


@pytest.fixture(scope="module")
def estimator(checkpoint):
    return PoseEstimator.from_weights(checkpoint)


# -- PoseEstimator --------------------------------------------------------------------------


def test_estimator_reads_architecture_joints_and_size_from_the_checkpoint(estimator):
    assert estimator.record.model == "ldnet_s"
    assert estimator.keypoint_set.name == "coco" and estimator.keypoint_set.num_joints == 17
    assert estimator.input_size == (64, 64)
    assert (estimator.record.codec, estimator.record.sigma) == ("dark", 2.0)
    assert estimator.codec.heatmap_size == (16, 16) and estimator.codec.sigma == 2.0


def test_estimator_batches_people_and_accepts_paths_bgr_and_rgb(estimator, tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    boxes = np.array([[10, 10, 50, 80], [60, 20, 70, 90], [0, 0, 160, 120]], float)
    together = estimator(image, boxes, [0.9, 0.8, 0.7])
    assert together.keypoints.shape == (3, 17, 3)
    # score = box score x mean confidence of the joints above 0.2 (rescoring, by hand)
    confidences = together.keypoints[..., 2]
    expected = [c[c > 0.2].mean() if (c > 0.2).any() else 0.0 for c in confidences]
    np.testing.assert_allclose(together.scores, np.array(expected) * [0.9, 0.8, 0.7], rtol=1e-12)
    for n in range(3):  # people in one batch do not affect each other
        alone = estimator(image, boxes[n : n + 1])
        np.testing.assert_allclose(alone.keypoints, together.keypoints[n : n + 1], atol=1e-4)
    from_path = estimator(path, boxes)
    from_rgb = estimator(image[:, :, ::-1].copy(), boxes, rgb=True)
    np.testing.assert_allclose(from_path.keypoints, together.keypoints, atol=1e-6)
    np.testing.assert_allclose(from_rgb.keypoints, together.keypoints, atol=1e-6)
    whole = estimator(image)
    np.testing.assert_allclose(whole.boxes, [[0, 0, 160, 120]])
    # Keypoints land in image pixels around the box (the crop is padded by 1.25).
    x, y = together.keypoints[0, :, 0], together.keypoints[0, :, 1]
    assert x.min() >= 10 - 25 and x.max() <= 60 + 25 and y.min() >= 10 - 25 and y.max() <= 90 + 25


def test_bad_boxes_are_refused_with_their_index(estimator):
    image = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(BoxError, match=r"box 1 \(10, 10, 0, 5\) has zero or negative size"):
        estimator(image, [[0, 0, 10, 10], [10, 10, 0, 5]])
    with pytest.raises(BoxError, match=r"box 0 \(200, 10, 20, 20\) lies outside the 100x100"):
        estimator(image, [[200, 10, 20, 20]])
    with pytest.raises(BoxError, match="has zero or negative size -5x5"):
        check_boxes([[0, 0, -5, 5]], (100, 100))
    # Partly outside is fine: the crop is padded, as in training.
    assert len(estimator(image, [[-20, -20, 60, 60]])) == 1


# -- sources, detection files, detectors ----------------------------------------------------


def test_coco_file_names_give_coco_image_ids(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("000000000139.jpg", "holiday.png"):
        cv2.imwrite(str(tmp_path / name), image)
    frames = list(open_source(tmp_path))
    assert [(f.name, f.image_id) for f in frames] == [("000000000139.jpg", 139), ("holiday.png", 1)]


def test_detection_file(tmp_path):
    path = tmp_path / "det.json"
    path.write_text(
        json.dumps(
            [
                {"image_id": 5, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
                {"image_id": 5, "category_id": 1, "bbox": [1, 2, 0, 40], "score": 0.9},
                {"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.1},
                {"image_id": 5, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.9},
            ]
        )
    )
    detections = DetectionFile(path, score_threshold=0.5)
    boxes, scores = detections(5)
    np.testing.assert_allclose(boxes, [[1, 2, 30, 40]])
    np.testing.assert_allclose(scores, [0.9])
    assert detections.dropped == 1
    assert detections(6)[0].shape == (0, 4)
    path.write_text('{"not": "a list"}')
    with pytest.raises(BoxError, match="det.json: expected a JSON list"):
        DetectionFile(path)


def tiny_detector(path: Path, output: np.ndarray, size: int = 64) -> Path:
    """An ONNX 'detector' that returns ``output`` whatever the image (plus 0 x the input, so
    the input is used)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    constant = numpy_helper.from_array(output.astype(np.float32), "constant")
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["constant", "nothing"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(output.shape))],
        [constant, numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_detector_after_nms_and_raw_yolov8_outputs(tmp_path):
    # A 128x64 image letterboxed into 64x64: ratio 0.5, 16 px of padding left and right.
    image = np.zeros((128, 64, 3), np.uint8)
    after_nms = np.array([[[16, 0, 48, 32, 0.9, 0], [16, 0, 48, 32, 0.8, 2]]])
    detector = OnnxPersonDetector(tiny_detector(tmp_path / "a.onnx", after_nms))
    boxes, scores = detector(image)
    np.testing.assert_allclose(boxes, [[0, 0, 64, 64]])  # the cat (class 2) is left out
    np.testing.assert_allclose(scores, [0.9], rtol=1e-6)
    # Raw YOLOv8 head: (1, 4 + C, anchors) with C = 2 classes; two overlapping people.
    raw = np.zeros((1, 6, 8))
    raw[0, :, 0] = [32, 16, 32, 32, 0.9, 0.0]
    raw[0, :, 1] = [33, 16, 32, 32, 0.7, 0.0]  # duplicate: removed by NMS
    raw[0, :, 2] = [32, 48, 16, 16, 0.1, 0.9]  # not a person
    detector = OnnxPersonDetector(tiny_detector(tmp_path / "b.onnx", raw))
    boxes, scores = detector(image)
    np.testing.assert_allclose(boxes, [[0, 0, 64, 64]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9], rtol=1e-6)


def test_onnx_detector_with_unexpected_outputs_is_refused(tmp_path):
    path = tiny_detector(tmp_path / "odd.onnx", np.zeros((1, 7)))
    with pytest.raises(
        DetectorError, match=r"odd.onnx: unexpected detector output of shape \[1, 7\]"
    ):
        OnnxPersonDetector(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="junk.onnx: not a loadable ONNX model"):
        OnnxPersonDetector(tmp_path / "junk.onnx")


# -- smoothing ------------------------------------------------------------------------------


def test_one_euro_filter_reduces_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    times = np.arange(200) / 30.0
    still = 100 + rng.normal(0, 2.0, 200)
    smooth = OneEuroFilter(min_cutoff_hz=1.0, beta=0.0)
    filtered = np.array([smooth(np.array([v]), t)[0] for v, t in zip(still, times, strict=True)])
    assert filtered[20:].std() < 0.5 * still[20:].std()
    # A fast ramp (300 px/s): beta raises the cutoff with speed, so the lag is smaller.
    ramp = 300 * times
    lags = {}
    for beta in (0.0, 0.05):
        f = OneEuroFilter(min_cutoff_hz=1.0, beta=beta)
        out = np.array([f(np.array([v]), t)[0] for v, t in zip(ramp, times, strict=True)])
        lags[beta] = float(np.abs(ramp - out)[100:].mean())
    assert lags[0.05] < 0.5 * lags[0.0]
    constant = OneEuroFilter()
    assert all(constant(np.array([5.0]), t)[0] == 5.0 for t in times[:10])


def test_smoother_keeps_each_person_on_their_own_track():
    smoother = PoseSmoother(min_cutoff_hz=0.5, beta=0.0)
    left = np.zeros((1, 17, 3)) + [10, 10, 1]
    right = np.zeros((1, 17, 3)) + [200, 10, 1]
    boxes = np.array([[0, 0, 30, 30], [190, 0, 30, 30]], float)
    smoother(np.concatenate([left, right]), boxes, 0.0)
    # Next frame: the people come in the other order, each moved by 10 px.
    out = smoother(np.concatenate([right + [10, 0, 0], left + [10, 0, 0]]), boxes[::-1], 1 / 30)
    assert 200 < out[0, 0, 0] < 210 and 10 < out[1, 0, 0] < 20


# -- ldnet predict on real data -------------------------------------------------------------


@pytest.mark.slow
def test_predict_folder_with_detections_json_loads_with_coco_api(checkpoint, tmp_path, capsys):
    """COCO-MINI val2017 with its ground-truth boxes as a detection file: every image gets
    its COCO id, and the official API loads the results."""
    from pycocotools.coco import COCO

    coco = COCO(str(VAL_ANN))
    detections = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
        for a in coco.loadAnns(coco.getAnnIds())
        if a["num_keypoints"] > 0
    ]
    det_file = tmp_path / "det.json"
    det_file.write_text(json.dumps(detections))
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        capsys, "predict", VAL2017, "--weights", checkpoint, "--output", out,
        "--detections", det_file, "--quiet",
    )  # fmt: skip
    assert code == 0
    assert "79 frame(s)" in stdout and "0 skipped" in stdout
    results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in results} == {d["image_id"] for d in detections}
    assert all(len(r["keypoints"]) == 51 for r in results)
    loaded = coco.loadRes(str(out / "results.json"))
    assert len(loaded.getAnnIds()) == len(results) > 0
    assert len(list(out.glob("*.jpg"))) == 79
    assert not list(out.glob(".*"))  # no temporary files left


@pytest.mark.slow
def test_predict_video_writes_an_overlay_video(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        capsys, "predict", VIDEO, "--weights", checkpoint, "--output", out, "--whole-image",
        "--smooth", "--quiet",
    )  # fmt: skip
    assert code == 0 and "5 frame(s), 5 people" in stdout
    video = cv2.VideoCapture(str(out / "posetrack18_000001.mp4"))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == 5
    results = json.loads((out / "results.json").read_text())
    assert [r["image_id"] for r in results] == [0, 1, 2, 3, 4]


def test_onnx_backend_and_exported_file_match_pytorch(checkpoint, tmp_path, capsys):
    image = np.random.default_rng(1).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    boxes = [[5, 5, 40, 70], [20, 10, 45, 75]]
    reference = PoseEstimator.from_weights(checkpoint)(image, boxes)
    via_ort = PoseEstimator.from_weights(checkpoint, backend="onnxruntime")(image, boxes)
    onnx_path = tmp_path / "model.onnx"
    code, stdout, _ = run_cli(
        capsys, "export", "onnx", "--weights", checkpoint, "--output", onnx_path
    )
    assert code == 0 and "coco (17 joints), input 64x64" in stdout
    assert "parity with PyTorch, batch 5" in stdout
    from_file = PoseEstimator.from_weights(onnx_path)
    assert from_file.record == reference_record(checkpoint)
    for other in (via_ort, from_file(image, boxes)):
        np.testing.assert_allclose(
            other.keypoints[..., :2], reference.keypoints[..., :2], atol=1e-2
        )
        np.testing.assert_allclose(other.keypoints[..., 2], reference.keypoints[..., 2], atol=1e-4)


def reference_record(checkpoint):
    from ldnet.inference import load_model

    return load_model(checkpoint)[1]


# -- bad input: one line naming the input, exit 2 -------------------------------------------


def test_unsupported_unreadable_and_missing_sources(checkpoint, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    bad_video = tmp_path / "clip.mp4"
    bad_video.write_bytes(b"\x00" * 100)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (notes, "notes.txt: unsupported file type '.txt'"),
        (broken, "broken.jpg: "),
        (bad_video, "clip.mp4: video cannot be opened"),
        (empty, "empty: no images in the folder"),
        ("7", "camera 7 cannot be opened"),
        (tmp_path / "nothing.jpg", "nothing.jpg: no such file"),
    ]
    for source, message in cases:
        out = tmp_path / "out"
        code, _, err = run_cli(
            capsys, "predict", source, "--weights", checkpoint, "--output", out, "--quiet"
        )
        assert code == 2, source
        assert message in only_line(err)
        assert not out.exists()


def test_bad_file_in_a_folder_is_skipped_and_the_rest_processed(checkpoint, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = np.random.default_rng(2).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "000000000001.jpg"), image)
    cv2.imwrite(str(folder / "000000000003.png"), image)
    (folder / "000000000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "predict", folder, "--weights", checkpoint, "--output", out, "--whole-image",
        "--quiet",
    )  # fmt: skip
    assert code == 0
    assert "2 frame(s)" in stdout and "2 skipped" in stdout
    assert "skipped 000000000002.jpg: truncated JPEG" in err
    assert "skipped readme.txt: unsupported file type '.txt'" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "000000000001.jpg",
        "000000000003.png",
        "results.json",
    ]
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["image_id"] for r in results) == [1, 3]


def test_bad_boxes_on_the_command_line(checkpoint, tmp_path, capsys):
    image_path = tmp_path / "000000000005.jpg"
    cv2.imwrite(str(image_path), np.zeros((100, 120, 3), np.uint8))
    out = tmp_path / "out"
    base = ["predict", image_path, "--weights", checkpoint, "--output", out, "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in base + ["--box", "10,10,0,20"]])
    assert exit_info.value.code == 2
    assert "box '10,10,0,20' has zero or negative size 0x20" in only_line(capsys.readouterr().err)
    code, _, err = run_cli(capsys, *base, "--box", "500,10,20,20")
    assert code == 2
    assert "--box: box 0 (500, 10, 20, 20) lies outside the 120x100 image" in only_line(err)
    assert not out.exists() or not any(out.iterdir())


def test_image_smaller_than_the_crop_is_processed_with_a_note(checkpoint, tmp_path, capsys):
    image_path = tmp_path / "tiny.png"
    cv2.imwrite(str(image_path), np.full((20, 30, 3), 128, np.uint8))
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys,
        "predict",
        image_path,
        "--weights",
        checkpoint,
        "--output",
        out,
        "--whole-image",
        "--quiet",
    )
    assert code == 0 and "1 frame(s), 1 people" in stdout
    assert "tiny.png: 30x20 image is smaller than the 64x64 network input" in err
    assert (out / "tiny.png").is_file()


def test_checkpoint_for_another_joint_set_or_unsafe_is_refused(checkpoint, tmp_path, capsys):
    image_path = tmp_path / "a.png"
    cv2.imwrite(str(image_path), np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "out"

    def predict(weights, *extra):
        return run_cli(capsys, "predict", image_path, "--weights", weights, "--output", out, *extra)

    code, _, err = predict(checkpoint, "--dataset", "mpii")
    assert code == 2
    assert "random.pt: weights are for the coco joint set (17 joints), not mpii (16)" in err
    # A checkpoint whose weights disagree with its own description.
    mixed = torch.load(checkpoint, weights_only=True)
    mixed["model"]["dataset"] = "mpii"
    mixed["model"]["num_joints"] = 16
    atomic_save(mixed, tmp_path / "mixed.pt")
    code, _, err = predict(tmp_path / "mixed.pt")
    assert code == 2 and "mixed.pt: weights do not fit model 'ldnet_s'" in only_line(err)
    # A bare state dict: the architecture would have to be guessed.
    atomic_save(build_model("ldnet_s", 17).state_dict(), tmp_path / "bare.pt")
    code, _, err = predict(tmp_path / "bare.pt")
    assert code == 2 and "bare.pt: no model description" in only_line(err)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"model": {"name": "ldnet", "num_joints": 17}, "x": Exploit()}, tmp_path / "evil.pt")
    code, _, err = predict(tmp_path / "evil.pt")
    assert code == 2 and "evil.pt: not a readable checkpoint" in only_line(err)
    assert not (tmp_path / "pwned").exists()
    assert not out.exists()


def test_onnx_detector_with_unexpected_outputs_on_the_command_line(checkpoint, tmp_path, capsys):
    image_path = tmp_path / "a.png"
    cv2.imwrite(str(image_path), np.zeros((64, 64, 3), np.uint8))
    detector = tiny_detector(tmp_path / "odd.onnx", np.zeros((1, 3, 4, 4)))
    code, _, err = run_cli(
        capsys, "predict", image_path, "--weights", checkpoint, "--output", tmp_path / "out",
        "--detector-onnx", detector,
    )  # fmt: skip
    assert code == 2
    assert "odd.onnx: unexpected detector output of shape [1, 3, 4, 4]" in only_line(err)


def test_video_writer_leaves_nothing_when_interrupted(tmp_path):
    frame = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "clip.mp4", 10) as writer:
        writer.write(frame)
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(tmp_path / "clip.mp4", 10) as writer:
        writer.write(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_source_errors_are_predict_input_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file, folder or camera"):
        open_source(tmp_path / "missing.mp4")


def test_builtin_detector_or_a_clear_fallback(checkpoint, tmp_path, capsys):
    """OpenCV 4 has the HOG people detector; OpenCV 5 dropped it, and then `ldnet predict`
    without boxes says so and takes each frame as one person."""
    from ldnet.predict import HogPersonDetector, hog_available

    image_path = tmp_path / "a.png"
    cv2.imwrite(str(image_path), np.zeros((200, 150, 3), np.uint8))
    code, stdout, err = run_cli(
        capsys, "predict", image_path, "--weights", checkpoint, "--output", tmp_path / "out",
        "--quiet",
    )  # fmt: skip
    assert code == 0
    if hog_available():
        boxes, scores = HogPersonDetector()(np.zeros((200, 150, 3), np.uint8))
        assert boxes.shape == (0, 4) and scores.shape == (0,)
        assert "1 frame(s), 0 people" in stdout
    else:
        with pytest.raises(DetectorError, match="has no HOG people detector"):
            HogPersonDetector()
        assert "each frame is taken as one person" in only_line(err)
        assert "1 frame(s), 1 people" in stdout


# -- detectors on the command line ----------------------------------------------------------


def test_offline_predict_on_coco_mini_uses_hog_and_says_so(checkpoint, tmp_path, capsys):
    """No network and nothing cached (the tests' session): a real COCO-MINI photo is still
    predicted, with HOG, and one line says so and what to fetch instead."""
    from ldnet.predict import HogPersonDetector

    image = VAL2017 / "000000000139.jpg"  # a living room: people sitting and standing
    code, stdout, err = run_cli(
        capsys, "predict", image, "--weights", checkpoint, "--output", tmp_path / "out",
        "--no-flip", "--quiet",
    )  # fmt: skip
    assert code == 0
    line = only_line(err)
    assert line.startswith("people: OpenCV HOG people detector (2005; upright people only)")
    assert "the offline fallback: yolox_m_humanart is not in" in line
    assert "`ldnet weights get yolox_m_humanart` (about 100 MB)" in line
    boxes, scores = HogPersonDetector()(cv2.imread(str(image)))
    found = int((scores >= 0.3).sum())
    assert "1 frame(s), " in stdout and (tmp_path / "out" / image.name).is_file()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results) <= found  # OKS-NMS may merge duplicates, never add people


def test_bad_detector_files_on_the_command_line(checkpoint, tmp_path, capsys):
    from detector_nets import constant_yolox

    image_path = tmp_path / "a.png"
    cv2.imwrite(str(image_path), np.zeros((64, 64, 3), np.uint8))
    base = ["predict", image_path, "--weights", checkpoint, "--output", tmp_path / "out"]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not an ONNX file")
    code, _, err = run_cli(capsys, *base, "--detector", junk)
    assert code == 2
    assert only_line(err).startswith(f"ldnet predict: error: {junk}: not a loadable ONNX model (")
    # The YOLOX layout with its labels output missing: named, with the shapes found.
    import onnx

    path = constant_yolox(tmp_path / "nolabels.onnx", [[0, 0, 9, 9, 0.9]], [0])
    model = onnx.load(str(path))
    del model.graph.output[1]
    onnx.save(model, str(path))
    code, _, err = run_cli(capsys, *base, "--detector", path)
    assert code == 2
    assert only_line(err) == (
        f"ldnet predict: error: {path}: output 0 of shape [1, 1, 5] looks like MMDeploy's "
        "dets (1, N, 5) but output 1 (labels, expected (1, 1)) is none"
    )
    code, _, err = run_cli(capsys, *base, "--detector", tmp_path / "missing.onnx")
    assert code == 2 and "missing.onnx: no such ONNX detector file" in only_line(err)
    assert not (tmp_path / "out").exists()


def test_serve_finds_people_with_the_same_detector(tmp_path, capsys):
    """`ldnet serve --detector FILE` chooses as `ldnet predict` does, with its one line."""
    import argparse

    from detector_nets import BLUE_BGR, blue_box_yolox

    from ldnet.cli.serve import person_finder

    path = blue_box_yolox(tmp_path / "end2end.onnx")
    args = argparse.Namespace(
        whole_image=False, detector=str(path), box_threshold=0.3, box_nms=None, threads=1
    )
    find = person_finder(args)
    assert only_line(capsys.readouterr().err) == (
        "people: end2end.onnx (yolox ONNX, 416x416), score >= 0.3, NMS IoU 0.65"
    )
    image = np.zeros((624, 832, 3), np.uint8)
    image[80:240, 100:300] = BLUE_BGR
    boxes, scores = find(image)
    np.testing.assert_allclose(boxes, [[100, 80, 200, 160]], atol=1e-3)
