"""The "hrnet" coordinate convention of imported HRNet / MMPose weights, end to end.

Each piece against hand-computed values (crop centre, heatmap -> image, the flip shift, the
border rule of the quarter offset), the "ldnet" convention unchanged, and ``ldnet predict``
against HRNet's own test pipeline on real COCO val2017 people: the fixture was written by
``tools/check_hrnet_pipeline.py --hrnet-repo <export of the reference>`` with the seeded
weights regenerated here.
"""

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from helpers import CLEAR_MARGIN, match_people
from lineage_weights import seeded_weights

from ldnet.checkpoint import atomic_save
from ldnet.cli import main
from ldnet.config import ConfigError, config_from_dict
from ldnet.data.codecs import build_codec, flip_back
from ldnet.data.dataset import TopDownDataset, prepare_crops
from ldnet.data.keypoints import KEYPOINT_SETS
from ldnet.data.readers.records import PersonRecord
from ldnet.data.transforms import (
    AugmentConfig,
    affine_matrix,
    box_to_center_scale,
    input_to_image,
    transform_points,
)
from ldnet.engine.data import record_of
from ldnet.inference import (
    ModelRecord,
    TopDownPredictor,
    TorchBackend,
    predict_dataset,
    record_from_checkpoint,
)
from ldnet.models import build_model
from ldnet.predict import PoseEstimator

FIXTURE = Path(__file__).parent / "fixtures" / "hrnet_pipeline_keypoints.json"
VAL2017 = Path(__file__).resolve().parents[2] / "shared/data/coco-mini/images/val2017"
SIZE = (256, 192)  # (height, width)
# Centre (100, 50) and scale 0.96 x 1.28: 192 px of image across 192 px of input, zoom 1.
CENTER, SCALE = np.array([100.0, 50.0]), np.array([0.96, 1.28])


# -- the crop ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("convention", "centre_px", "point_px", "mirrored_px"),
    [
        # HRNet's get_affine_transform: the centre lands on (W / 2, H / 2); its training flip
        # (image mirrored, centre -> width - 1 - x) is x -> W - x in the crop.
        ("hrnet", (96.0, 128.0), (106.0, 138.0), (86.0, 138.0)),
        # ours: the middle of the pixel grid, ((W - 1) / 2, (H - 1) / 2); flip x -> W - 1 - x.
        ("ldnet", (95.5, 127.5), (105.5, 137.5), (85.5, 137.5)),
    ],
)
def test_crop_centre_and_mirror(convention, centre_px, point_px, mirrored_px):
    points = np.array([[100.0, 50.0], [110.0, 60.0]])
    crop = transform_points(points, affine_matrix(CENTER, SCALE, 0.0, SIZE, convention=convention))
    np.testing.assert_allclose(crop, [centre_px, point_px], atol=1e-9)
    mirror = affine_matrix(CENTER, SCALE, 0.0, SIZE, flip=True, convention=convention)
    np.testing.assert_allclose(transform_points(points[1:], mirror), [mirrored_px], atol=1e-9)


def test_hrnet_training_flip_is_hrnet_image_flip():
    """HRNet flips the image (x -> width - 1 - x) and the centre with it, then crops."""
    width, point = 640, np.array([[110.0, 60.0]])
    flipped_image_point = np.array([[width - 1 - 110.0, 60.0]])
    flipped_centre = np.array([width - 1 - CENTER[0], CENTER[1]])
    hrnet = transform_points(
        flipped_image_point, affine_matrix(flipped_centre, SCALE, 0.0, SIZE, convention="hrnet")
    )
    ours = transform_points(
        point, affine_matrix(CENTER, SCALE, 0.0, SIZE, flip=True, convention="hrnet")
    )
    np.testing.assert_allclose(ours, hrnet, atol=1e-9)


def test_hrnet_crop_pixels():
    """A bright image pixel at the person centre is the crop pixel (96, 128), undiluted."""
    image = np.zeros((300, 400, 3), np.uint8)
    image[50, 100] = 255
    # box -> centre (100, 50), scale 0.96 (x1.25 padding of a 153.6 x 204.8 box)
    box = np.array([[100 - 76.8, 50 - 102.4, 153.6, 204.8]])
    center, scale = box_to_center_scale(box, SIZE)
    np.testing.assert_allclose(center[0], CENTER, atol=1e-4)
    np.testing.assert_allclose(scale[0], SCALE, atol=1e-6)
    crops, _, _ = prepare_crops(image, box, SIZE, "hrnet")
    bright = np.argwhere(crops[0, 0] == crops[0, 0].max())
    assert bright.tolist() == [[128, 96]]
    crops, _, _ = prepare_crops(image, box, SIZE, "ldnet")  # at (95.5, 127.5): four pixels
    assert len(np.argwhere(crops[0, 0] > crops[0, 0].min())) == 4


# -- heatmap -> input -> image ---------------------------------------------------------------
def test_heatmap_to_image_mapping():
    hrnet = build_codec("msra", SIZE, convention="hrnet")
    ldnet = build_codec("msra", SIZE)
    np.testing.assert_allclose(hrnet.to_input([[10.0, 20.0]]), [[40.0, 80.0]])  # 4u
    np.testing.assert_allclose(ldnet.to_input([[10.0, 20.0]]), [[41.5, 81.5]])  # 4u + 1.5
    np.testing.assert_allclose(hrnet.to_heatmap([[40.0, 80.0]]), [[10.0, 20.0]])
    # zoom 0.5 (384 image px across 192 input px) around the centre (300, 200)
    center, scale = np.array([[300.0, 200.0]]), np.array([[1.92, 2.56]])
    image = input_to_image(np.array([[[40.0, 80.0]]]), center, scale, 0.0, SIZE, "hrnet")
    np.testing.assert_allclose(image, [[[300 + (40 - 96) * 2, 200 + (80 - 128) * 2]]])
    image = input_to_image(np.array([[[41.5, 81.5]]]), center, scale, 0.0, SIZE, "ldnet")
    np.testing.assert_allclose(image, [[[300 + (41.5 - 95.5) * 2, 200 + (81.5 - 127.5) * 2]]])


def test_hrnet_transform_preds_equals_input_then_image():
    """HRNet maps heatmap coordinates through the box's affine at heatmap size; ours goes
    heatmap -> input (4u) -> image. Same numbers (stride 4 both ways)."""
    hrnet = build_codec("msra", SIZE, convention="hrnet")
    heatmap_points = np.array([[[3.0, 7.25], [47.0, 0.0], [23.75, 63.0]]])
    center, scale = np.array([[321.5, 144.0]]), np.array([[1.3, 1.7333]])
    via_input = input_to_image(hrnet.to_input(heatmap_points), center, scale, 0.0, SIZE, "hrnet")
    at_heatmap = affine_matrix(center, scale, 0.0, (64, 48), inverse=True, convention="hrnet")
    np.testing.assert_allclose(via_input, transform_points(heatmap_points, at_heatmap), atol=1e-9)


def quarter_offset_map(x: int, y: int) -> np.ndarray:
    heatmap = np.zeros((1, 17, 64, 48), np.float32)
    heatmap[0, :, y, x] = 1.0
    heatmap[0, :, y, x + 1] = 0.5  # right and below higher than left and above
    heatmap[0, :, y + 1, x] = 0.5
    return heatmap


@pytest.mark.parametrize(
    ("x", "y", "hrnet_px", "ldnet_px"),
    [
        (10, 20, (41.0, 81.0), (42.5, 82.5)),  # (u + 0.25) * 4, ((u + 0.25) + 0.5) * 4 - 0.5
        # Column 1: HRNet refines only 1 < x < w - 1 and 1 < y < h - 1, both axes at once;
        # ours refines each axis on its own inside 0 < u < w - 1.
        (1, 20, (4.0, 80.0), (6.5, 82.5)),
    ],
)
def test_msra_decode_and_border_rule(x, y, hrnet_px, ldnet_px):
    heatmap = quarter_offset_map(x, y)
    hrnet_points, scores = build_codec("msra", SIZE, convention="hrnet").decode(heatmap)
    ldnet_points, _ = build_codec("msra", SIZE).decode(heatmap)
    np.testing.assert_allclose(hrnet_points[0, 0], hrnet_px)
    np.testing.assert_allclose(ldnet_points[0, 0], ldnet_px)
    assert scores[0, 0] == 1.0


def test_dark_refinement_is_the_same_in_both_conventions():
    """The convention moves pixels, not the Taylor step: decodes differ by exactly 1.5 px."""
    codec = build_codec("dark", SIZE, convention="hrnet")
    ys, xs = np.mgrid[0:64, 0:48]
    heatmap = np.exp(-((xs - 10.3) ** 2 + (ys - 20.6) ** 2) / (2 * 2.0**2)).astype(np.float32)
    heatmaps = np.broadcast_to(heatmap, (1, 17, 64, 48))
    hrnet_points, _ = codec.decode(heatmaps)
    ldnet_points, _ = build_codec("dark", SIZE).decode(heatmaps)
    np.testing.assert_allclose(hrnet_points[0, 0], [41.2, 82.4], atol=0.05)
    np.testing.assert_allclose(ldnet_points - hrnet_points, 1.5, atol=1e-9)


# -- the flip test -----------------------------------------------------------------------------
class MirroredOnly:
    """A backend whose heatmap is one bright pixel (column 10, row 5, joint 1: left eye) on
    a mirrored crop and nothing on the plain one, so the flip test's result shows where the
    mirrored heatmap went."""

    def __call__(self, crops):
        out = np.zeros((len(crops), 17, 64, 48), np.float32)
        out[len(crops) // 2 :, 1, 5, 10] = 1.0
        return out


@pytest.mark.parametrize(("convention", "column"), [("hrnet", 38), ("ldnet", 37)])
def test_flip_test_shift(convention, column):
    """Mirrored back: column 47 - 10 = 37, on the right eye (joint 2); HRNet's flip test then
    moves it one column right (TEST.SHIFT_HEATMAP); ours does not."""
    record = ModelRecord("hrnet_w32", 17, "coco", SIZE, "msra", convention=convention)
    predictor = TopDownPredictor(MirroredOnly(), record)
    averaged = predictor.heatmaps(np.zeros((1, 3) + SIZE, np.float32))
    assert np.argwhere(averaged[0] > 0).tolist() == [[2, 5, column]]
    assert averaged[0, 2, 5, column] == 0.5


def test_flip_shift_keeps_the_first_column_as_hrnet():
    """`output_flipped[:, :, :, 1:] = output_flipped[:, :, :, 0:-1]`: column 0 stays."""
    heatmaps = np.zeros((1, 17, 64, 48), np.float32)
    heatmaps[0, 0, 3, 47] = 1.0  # mirrored to column 0
    out = flip_back(heatmaps, KEYPOINT_SETS["coco"].flip_permutation(), shift_px=1)
    assert np.argwhere(out[0, 0]).tolist() == [[3, 0], [3, 1]]
    restored = flip_back(torch.from_numpy(heatmaps), KEYPOINT_SETS["coco"].flip_permutation(), 1)
    np.testing.assert_array_equal(restored.numpy(), out)


# -- the record selects it; a training config chooses it ----------------------------------------
def test_record_carries_the_convention_to_the_codec():
    record = ModelRecord("hrnet_w32", 17, "coco", SIZE, "msra", convention="hrnet")
    again = record_from_checkpoint(record.to_checkpoint(), "w.pt")
    assert again.convention == "hrnet"
    assert (again.build_codec().convention, again.build_codec().flip_shift_px) == ("hrnet", 1)
    ldnet = ModelRecord("hrnet_w32", 17, "coco", SIZE).build_codec()
    assert (ldnet.convention, ldnet.flip_shift_px) == ("ldnet", 0)
    with pytest.raises(ValueError, match="unknown coordinate convention 'udp'"):
        build_codec("msra", SIZE, convention="udp")


def test_training_config_selects_the_convention():
    """`data.convention` decides the convention a run trains and tests in, and the record
    its checkpoint carries: "ldnet" unless the config says otherwise (the official-recipe
    configs say "hrnet", as the release's pipeline); anything else is refused."""
    config = config_from_dict({"model": {"name": "hrnet_w32"}})
    assert record_of(config).convention == "ldnet"
    hrnet = config_from_dict({"data": {"convention": "hrnet"}})
    assert (record_of(hrnet).convention, record_of(hrnet).build_codec().flip_shift_px) == (
        "hrnet",
        1,
    )
    with pytest.raises(ConfigError, match="data.convention: 'udp' is not one of ldnet, hrnet"):
        config_from_dict({"data": {"convention": "udp"}})


def test_dataset_crops_in_the_codec_convention(tmp_path):
    """A test set for hrnet weights is cropped as HRNet crops: the person centre at (96, 128);
    the crop and the joints agree under the hrnet flip too."""
    image = np.zeros((300, 400, 3), np.uint8)
    image[50, 100] = 255
    image[61, 111] = 255
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    joints = np.zeros((17, 2), np.float32)
    joints[0] = (111, 61)
    visible = np.zeros(17, np.float32)
    visible[0] = 1
    person = PersonRecord(path, 1, 1, CENTER.astype(np.float32), SCALE.astype(np.float32),
                          np.zeros(4, np.float32), joints, visible)  # fmt: skip
    annotations = SimpleNamespace(records=[person], keypoint_set=KEYPOINT_SETS["coco"])
    codec = build_codec("msra", SIZE, convention="hrnet")
    crop, target, weight, meta = TopDownDataset(annotations, codec).sample(image, 0)
    assert np.argwhere(crop[0].numpy() == crop[0].numpy().max()).tolist() == [[128, 96], [139, 107]]
    # HRNet's target: int(x / 4 + 0.5), int(y / 4 + 0.5) of the crop position (107, 139)
    assert np.unravel_index(target[0].numpy().argmax(), (64, 48)) == (35, 27)
    flip_only = AugmentConfig(
        scale_factor=0.0, rotation_prob=0.0, flip_prob=1.0, half_body_prob=0.0
    )
    crop, target, _, meta = TopDownDataset(annotations, codec, augment=flip_only).sample(image, 0)
    assert bool(meta["flipped"])
    assert np.argwhere(crop[0].numpy() == crop[0].numpy().max()).tolist() == [[128, 96], [139, 85]]
    # joint 0 (nose) keeps its label; mirrored to x = 192 - 107 = 85: heatmap column 21
    assert np.unravel_index(target[0].numpy().argmax(), (64, 48)) == (35, 21)


def test_ldnet_test_path_equals_predict_path_in_hrnet(tmp_path):
    """`ldnet test` (dataset crops -> predict_dataset) and `ldnet predict` (prepare_crops ->
    PoseEstimator) give the same keypoints for an hrnet record, and both differ from the
    ldnet convention's."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    box = np.array([30.0, 20.0, 70.0, 90.0])
    torch.manual_seed(0)
    backend = TorchBackend(build_model("ldnet_s", 17).eval())
    results = {}
    for convention in ("hrnet", "ldnet"):
        record = ModelRecord("ldnet_s", 17, "coco", (64, 64), "msra", convention=convention)
        center, scale = box_to_center_scale(box, record.input_size)
        person = PersonRecord(path, 7, 1, center, scale, box.astype(np.float32),
                              np.zeros((17, 2), np.float32), np.ones(17, np.float32))  # fmt: skip
        annotations = SimpleNamespace(records=[person], keypoint_set=KEYPOINT_SETS["coco"])
        dataset = TopDownDataset(annotations, record.build_codec())
        predictor = TopDownPredictor(backend, record)
        tested = predict_dataset(predictor, dataset, progress=False)[0].keypoints
        predicted = PoseEstimator(backend, record)(image, box[None]).keypoints[0]
        np.testing.assert_allclose(tested, predicted, atol=1e-4)
        results[convention] = predicted
    assert np.abs(results["hrnet"][:, :2] - results["ldnet"][:, :2]).max() > 0.1


# -- parity with HRNet's own test pipeline -----------------------------------------------------
def write_checkpoint(path: Path, convention: str, seed: int) -> Path:
    """hrnet_w32 with the fixture's seeded weights, its record saying DARK (so that only
    `--decoder msra` makes it decode as HRNet's get_final_preds)."""
    model = build_model("hrnet_w32")
    record = ModelRecord("hrnet_w32", 17, "coco", SIZE, "dark", convention=convention)
    payload = {
        "format": "ldnet-checkpoint-1",
        **record.to_checkpoint(),
        "state_dict": seeded_weights(model.state_dict(), seed),
    }
    return atomic_save(payload, path)


def test_predict_matches_hrnet_pipeline(tmp_path, capsys):
    fixture = json.loads(FIXTURE.read_text())
    people = fixture["people"]
    margins = np.array([p["margins"] for p in people])
    refined = np.array([p["refined"] for p in people])
    clear = margins >= CLEAR_MARGIN
    # Random weights give flat-ish heatmaps: the comparison means something only where the
    # argmax and quarter-offset decisions are clear of ties; there must be enough of those,
    # and some that go through the whole path (positive maximum, quarter offset applied).
    assert clear.sum() >= 80 and (clear & refined).sum() >= 10

    images = tmp_path / "images"
    images.mkdir()
    for name in {p["file_name"] for p in people}:
        (images / name).symlink_to(VAL2017 / name)
    detections = tmp_path / "boxes.json"
    detections.write_text(json.dumps([
        {"image_id": p["image_id"], "category_id": 1, "bbox": p["bbox"], "score": 1.0}
        for p in people
    ]))  # fmt: skip
    checkpoint = write_checkpoint(tmp_path / "hrnet.pt", "hrnet", fixture["seed"])
    out = tmp_path / "out"
    code = main(["predict", str(images), "--weights", str(checkpoint), "--detections",
                 str(detections), "--decoder", "msra", "--output", str(out), "--no-overlay",
                 "--quiet", "--threads", "2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == len(people)  # nobody suppressed: every box is compared
    pairs = match_people(people, rows)
    ours = np.stack([row for _, row in pairs])
    reference = np.array([p["keypoints"] for p in people])
    difference = np.abs(ours[..., :2] - reference).max(axis=-1)
    assert difference[clear].max() <= 0.05
    np.testing.assert_allclose(ours[..., 2], [p["scores"] for p in people], atol=1e-3)

    # The control: the same weights decoded in the ldnet convention miss HRNet's keypoints
    # (one person is enough to show it).
    first = people[0]
    wrong = write_checkpoint(tmp_path / "ldnet.pt", "ldnet", fixture["seed"])
    code = main(["predict", str(images / first["file_name"]), "--weights", str(wrong), "--box",
                 ",".join(map(str, first["bbox"])), "--decoder", "msra", "--output",
                 str(tmp_path / "wrong"), "--no-overlay", "--quiet", "--threads", "2"])  # fmt: skip
    assert code == 0
    (row,) = json.loads((tmp_path / "wrong" / "results.json").read_text())
    wrong_points = np.array(row["keypoints"]).reshape(17, 3)[:, :2]
    miss = np.abs(wrong_points - reference[0]).max(axis=-1)[clear[0]]
    assert np.median(miss) > 0.5
