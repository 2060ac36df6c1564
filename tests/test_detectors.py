"""Person detectors: the letterbox and its inverse, the YOLOX (MMDeploy end2end) layout on
ONNX files with the real file's input and outputs, thresholds and NMS as documented, the
choice of detector and its one line, and bad detector files."""

import cv2
import numpy as np
import pytest
from detector_nets import BLUE_BGR, blue_box_yolox, constant_yolox

from ldnet.predict import DetectorError, OnnxPersonDetector, choose_detector
from ldnet.predict.detector_boxes import iou_xyxy, letterbox, nms_xyxy

# -- letterbox ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_wh", "input_hw", "new_wh"),
    [
        ((832, 624), (416, 416), (416, 312)),  # exactly x0.5
        ((333, 500), (640, 640), (426, 640)),  # 333 x 1.28 = 426.24 -> 426 (mmcv rounds)
        ((1000, 750), (640, 640), (640, 480)),
        ((640, 640), (640, 640), (640, 640)),  # already the input size
        ((50, 20), (416, 416), (416, 166)),  # upscaled: 20 x 8.32 = 166.4 -> 166
    ],
)
def test_top_left_letterbox_as_mmdetection(image_wh, input_hw, new_wh):
    width, height = image_wh
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    canvas, placed = letterbox(image, input_hw, "top-left")
    new_w, new_h = new_wh
    assert canvas.shape == (*input_hw, 3)
    # The image in the top-left corner, grey 114 on the right and at the bottom.
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if (new_w, new_h) == (width, height):
        resized = image
    np.testing.assert_array_equal(canvas[:new_h, :new_w], resized)
    assert (canvas[new_h:] == 114).all() and (canvas[:, new_w:] == 114).all()
    assert placed.scale_xy == (new_w / width, new_h / height)  # mmdet's scale_factor
    assert placed.offset_xy == (0.0, 0.0)
    # Round trip, image -> input -> image, and the image's corners land on the resized ones.
    boxes = np.array([[0, 0, width, height], [3.25, 7.5, 20.125, 18.0]])
    np.testing.assert_allclose(placed.to_image(placed.to_input(boxes)), boxes, atol=1e-9)
    np.testing.assert_allclose(placed.to_input(boxes[:1]), [[0, 0, new_w, new_h]], atol=1e-9)


def test_centred_letterbox_as_ultralytics():
    image = np.full((128, 64, 3), 200, np.uint8)
    canvas, placed = letterbox(image, (64, 64), "centre")
    assert placed.scale_xy == (0.5, 0.5) and placed.offset_xy == (16.0, 0.0)
    assert (canvas[:, 16:48] == 200).all()
    assert (canvas[:, :16] == 114).all() and (canvas[:, 48:] == 114).all()
    boxes = np.array([[1.5, 2.5, 60.0, 100.25]])
    np.testing.assert_allclose(placed.to_image(placed.to_input(boxes)), boxes, atol=1e-9)


# -- the YOLOX layout on a network that finds a known box -----------------------------------


@pytest.fixture(scope="module")
def blue_finder(tmp_path_factory):
    return blue_box_yolox(tmp_path_factory.mktemp("det") / "end2end.onnx", (416, 416))


@pytest.mark.parametrize(
    ("image_wh", "box_xywh"),
    [
        ((832, 624), (100, 80, 200, 160)),  # shrunk x0.5: the box's edges stay sharp
        ((208, 156), (50, 40, 100, 80)),  # grown x2: the edges' half-grey rows split at 127
        ((624, 832), (200, 300, 60, 420)),  # portrait: padded on the right
    ],
)
def test_yolox_layout_finds_the_box_in_image_pixels(blue_finder, image_wh, box_xywh):
    width, height = image_wh
    image = np.zeros((height, width, 3), np.uint8)
    x, y, w, h = box_xywh
    image[y : y + h, x : x + w] = BLUE_BGR
    detector = OnnxPersonDetector(blue_finder)
    assert detector.layout == "yolox" and detector.input_hw == (416, 416)
    boxes, scores = detector(image)
    np.testing.assert_allclose(boxes, [box_xywh], atol=1e-3)
    np.testing.assert_allclose(scores, [0.9], atol=1e-6)
    # The input it was given: BGR, 0-255, the image top-left, grey 114 elsewhere.
    tensor, placed = detector.prepare(image)
    assert tensor.dtype == np.float32 and tensor.shape == (1, 3, 416, 416)
    new_w, new_h = round(width * placed.scale_xy[0]), round(height * placed.scale_xy[1])
    assert tensor.max() == 255 and (tensor[0, 1:, :new_h, :new_w] == 0).all()
    assert (tensor[0, :, new_h:] == 114).all() and (tensor[0, :, :, new_w:] == 114).all()


def test_rgb_or_scaled_input_would_find_nothing(blue_finder):
    """The control: the stand-in network does depend on channel order and value range."""
    image = np.zeros((624, 832, 3), np.uint8)
    image[80:240, 100:300] = BLUE_BGR
    detector = OnnxPersonDetector(blue_finder)
    tensor, _ = detector.prepare(image)
    for wrong in (tensor[:, ::-1].copy(), tensor / 255.0):
        dets, _ = detector._run(np.ascontiguousarray(wrong, dtype=np.float32))
        assert dets[0, 0, 4] == 0  # score 0: no person


def test_boxes_back_in_image_pixels_at_a_fractional_scale(tmp_path):
    # 333x500 into 640x640: 426x640, per-axis factors 426/333 and 640/500 (mmdet's).
    dets = [[42.6, 64.0, 426.0, 640.0, 0.8], [0.0, 0.0, 10.0, 10.0, 0.7]]
    path = constant_yolox(tmp_path / "c.onnx", dets, [0, 0])
    boxes, scores = OnnxPersonDetector(path)(np.zeros((500, 333, 3), np.uint8))
    expected = [[33.3, 50.0, 333.0 - 33.3, 500.0 - 50.0], [0, 0, 10 * 333 / 426, 10 / 1.28]]
    np.testing.assert_allclose(boxes, expected, atol=1e-3)
    np.testing.assert_allclose(scores, [0.8, 0.7], atol=1e-6)


def test_thresholds_and_nms_as_documented(tmp_path):
    base = [100.0, 100.0, 200.0, 300.0]  # 100 x 200
    rows = [
        [*base, 0.9, 0],
        [100.0, 100.0, 200.0, 100.0 + 200 * 0.65, 0.85, 0],  # IoU 0.65 with the first: kept
        [100.0, 100.0, 200.0, 100.0 + 200 * 0.70, 0.80, 0],  # IoU 0.70: removed by NMS
        [400.0, 100.0, 500.0, 300.0, 0.29, 0],  # under the score threshold
        [400.0, 100.0, 500.0, 300.0, 0.95, 2],  # a car (COCO class 2), not a person
        [300.0, 300.0, 400.0, 400.0, 0.30, 0],  # at the threshold: kept
    ]
    rows = np.array(rows)
    first = rows[0, :4]
    np.testing.assert_allclose(iou_xyxy(first, rows[1:3, :4]), [0.65, 0.70], atol=1e-12)
    path = constant_yolox(tmp_path / "t.onnx", rows[:, :5], rows[:, 5])
    image = np.zeros((640, 640, 3), np.uint8)  # the input size: scale 1
    boxes, scores = OnnxPersonDetector(path)(image)  # defaults: score 0.3, NMS IoU 0.65
    np.testing.assert_allclose(scores, [0.9, 0.85, 0.30], atol=1e-6)
    np.testing.assert_allclose(boxes[:, 3], [200, 130, 100], atol=1e-4)
    boxes, scores = OnnxPersonDetector(path, score_threshold=0.5, nms_iou=0.6)(image)
    np.testing.assert_allclose(scores, [0.9], atol=1e-6)
    boxes, scores = OnnxPersonDetector(path, score_threshold=0.0, nms_iou=1.0)(image)
    assert len(scores) == 5 and list(scores) == sorted(scores, reverse=True)


def test_nms_keeps_the_best_and_ties_in_order():
    corners = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [1, 0, 11, 10]])
    scores = np.array([0.5, 0.5, 0.4, 0.9])
    # IoU([1,0,11,10], [0,0,10,10]) = 90 / 110 = 0.818: both 0.5 boxes go at 0.8.
    assert nms_xyxy(corners, scores, 0.8).tolist() == [3, 2]
    assert nms_xyxy(corners, scores, 0.85).tolist() == [3, 0, 2]
    assert nms_xyxy(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_dynamic_input_takes_the_catalogue_size(tmp_path):
    path = constant_yolox(tmp_path / "d.onnx", [[0, 0, 208, 208, 0.9]], [0], dynamic=True)
    assert OnnxPersonDetector(path).input_hw == (640, 640)
    detector = OnnxPersonDetector(path, input_hw=(416, 416))
    assert detector.input_hw == (416, 416)
    boxes, _ = detector(np.zeros((832, 832, 3), np.uint8))
    np.testing.assert_allclose(boxes, [[0, 0, 416, 416]], atol=1e-3)


# -- wrong files ----------------------------------------------------------------------------


def test_wrong_signature_and_unreadable_files_are_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    dets_only = onnx.helper.make_model(
        helper.make_graph(
            [helper.make_node("Constant", [], ["dets"], value=onnx.numpy_helper.from_array(
                np.zeros((1, 2, 5), np.float32)))],
            "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
            [helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, 2, 5])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    dets_only.ir_version = 8
    onnx.save(dets_only, str(tmp_path / "dets_only.onnx"))
    with pytest.raises(DetectorError) as error:
        OnnxPersonDetector(tmp_path / "dets_only.onnx")
    assert str(error.value) == (
        f"{tmp_path / 'dets_only.onnx'}: output 0 of shape [1, 2, 5] looks like MMDeploy's "
        "dets (1, N, 5) but output 1 (labels, expected (1, 2)) is none"
    )
    path = constant_yolox(tmp_path / "gray.onnx", [[0, 0, 1, 1, 1]], [0])
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 1  # one channel
    onnx.save(model, str(path))
    with pytest.raises(DetectorError, match=r"gray.onnx: input 'input' is .* \[1, 1, 640, 640\]"):
        OnnxPersonDetector(path)
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(DetectorError, match=r"junk.onnx: not a loadable ONNX model \("):
        OnnxPersonDetector(tmp_path / "junk.onnx")
    with pytest.raises(DetectorError, match=r"missing.onnx: no such ONNX detector file"):
        OnnxPersonDetector(tmp_path / "missing.onnx")


# -- which detector runs --------------------------------------------------------------------


def test_offline_default_is_hog_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LDNET_OFFLINE", "1")
    chosen = choose_detector(cache=tmp_path)
    assert type(chosen.detector).__name__ == "HogPersonDetector"
    assert chosen.line == (
        "people: OpenCV HOG people detector (2005; upright people only), NMS IoU 0.45, the "
        f"offline fallback: yolox_m_humanart is not in {tmp_path} and LDNET_OFFLINE is set; "
        "`ldnet weights get yolox_m_humanart` (about 100 MB) gives the modern detector"
    )
    assert "\n" not in chosen.line


def test_a_cached_catalogue_detector_beats_hog_and_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LDNET_OFFLINE", "1")  # a download would fail: the cache must win
    constant_yolox(tmp_path / "yolox_tiny_humanart.onnx", [[0, 0, 9, 9, 0.9]], [0], (416, 416))
    chosen = choose_detector(cache=tmp_path)
    assert chosen.line == (
        "people: yolox_tiny_humanart (yolox ONNX, 416x416), score >= 0.3, NMS IoU 0.65"
    )
    # The default, once cached too, is preferred over another cached detector.
    constant_yolox(tmp_path / "yolox_m_humanart.onnx", [[0, 0, 9, 9, 0.9]], [0])
    assert choose_detector(cache=tmp_path).line.startswith("people: yolox_m_humanart (")
    assert choose_detector("hog", cache=tmp_path).line.endswith("(asked for)")


def test_named_detectors_that_cannot_be_had_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("LDNET_OFFLINE", "1")
    from ldnet.lineage.download import DownloadError

    with pytest.raises(DownloadError, match="yolox_x_humanart: not in the cache .* LDNET_OFFLINE"):
        choose_detector("yolox_x_humanart", cache=tmp_path)
    with pytest.raises(DetectorError, match="--detector yolo: no such file or known detector"):
        choose_detector("yolo", cache=tmp_path)
    with pytest.raises(DetectorError, match="hrnet_w32_coco_256x192: .* not a person detector"):
        choose_detector("hrnet_w32_coco_256x192", cache=tmp_path)
