"""The synthetic dataset: valid COCO, consistent annotations, deterministic, occlusion flags,
left/right told apart by the pictures, atomic writing, and the `ldnet synth` command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO as CocoApi

from ldnet.cli import main
from ldnet.data.keypoints import COCO
from ldnet.synthetic import SceneConfig, draw_preview, generate_dataset
from ldnet.synthetic import dataset as dataset_module
from ldnet.synthetic.body import LimbAngles, P, PoseAngles, Proportions, pose_body
from ldnet.synthetic.render import Appearance, Placement, body_parts, place
from ldnet.synthetic.scene import render_scene

NUM_TRAIN, NUM_VAL, SEED = 10, 8, 5


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(root, NUM_TRAIN, NUM_VAL, seed=SEED)
    return root


def load(root: Path, split: str) -> CocoApi:
    return CocoApi(str(root / "annotations" / f"person_keypoints_{split}.json"))


def test_layout_and_coco_format(data_root):
    for split, count, first_id in (("train2017", NUM_TRAIN, 1), ("val2017", NUM_VAL, 1_000_001)):
        api = load(data_root, split)
        ids = sorted(api.getImgIds())
        assert ids == list(range(first_id, first_id + count))
        for image in api.loadImgs(ids):
            assert image["file_name"] == f"{image['id']:012d}.jpg"
            picture = cv2.imread(str(data_root / "images" / split / image["file_name"]))
            assert picture.shape == (image["height"], image["width"], 3) == (240, 320, 3)
        assert len(list((data_root / "images" / split).iterdir())) == count
        category = api.loadCats(1)[0]
        assert category["name"] == "person"
        assert category["keypoints"] == list(COCO.joint_names)
        assert category["skeleton"][0] == [16, 14]  # COCO's 1-based left ankle -> left knee
        anns = api.loadAnns(api.getAnnIds())
        # At least one person per image; the counts are seed 5's.
        assert len(anns) == {"train2017": 21, "val2017": 16}[split]
        assert len({a["id"] for a in anns}) == len(anns)
        for ann in anns:
            assert ann["category_id"] == 1 and ann["iscrowd"] == 0
            assert len(ann["keypoints"]) == 51


def test_keypoints_inside_image_and_box(data_root):
    for split in ("train2017", "val2017"):
        api = load(data_root, split)
        for ann in api.loadAnns(api.getAnnIds()):
            image = api.loadImgs(ann["image_id"])[0]
            k = np.array(ann["keypoints"], dtype=float).reshape(17, 3)
            labelled = k[:, 2] > 0
            assert set(np.unique(k[:, 2])) <= {0, 1, 2}
            assert ann["num_keypoints"] == labelled.sum() >= 1
            assert (k[~labelled, :2] == 0).all()  # COCO writes unlabelled joints as 0, 0, 0
            x, y = k[labelled, 0], k[labelled, 1]
            assert (x >= 0).all() and (x <= image["width"] - 1).all()
            assert (y >= 0).all() and (y <= image["height"] - 1).all()
            bx, by, bw, bh = ann["bbox"]
            assert bw > 0 and bh > 0
            assert (x >= bx).all() and (x <= bx + bw).all()
            assert (y >= by).all() and (y <= by + bh).all()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_area_is_the_silhouette(data_root):
    """OKS scales by ``area``: it must be the person's painted pixels, which the polygons
    also outline; a stick figure fills a fraction of its box."""
    api = load(data_root, "val2017")
    ratios = []
    for ann in api.loadAnns(api.getAnnIds()):
        polygon_area = api.annToMask(ann).sum()
        assert abs(polygon_area - ann["area"]) <= 0.1 * ann["area"] + 20
        ratios.append(ann["area"] / (ann["bbox"][2] * ann["bbox"][3]))
    assert 0.2 < np.median(ratios) < 0.7
    assert max(ratios) <= 1.0


def test_detections_cover_every_person(data_root):
    detections = json.loads(
        (data_root / dataset_module.DETECTIONS).read_text()
    )  # the seed's file name, read by `ldnet test`
    api = load(data_root, "val2017")
    assert {d["image_id"] for d in detections} <= set(api.getImgIds())
    assert all(0 < d["score"] <= 1 and d["category_id"] == 1 for d in detections)
    for ann in api.loadAnns(api.getAnnIds()):
        boxes = [d["bbox"] for d in detections if d["image_id"] == ann["image_id"]]
        assert max(box_iou(ann["bbox"], b) for b in boxes) > 0.6
    assert (len(api.getAnnIds()), len(detections)) == (16, 18)  # seed 5's


def box_iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    h = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def test_deterministic_and_independent_of_counts(data_root, tmp_path):
    again = generate_dataset(tmp_path / "again", NUM_TRAIN, NUM_VAL, seed=SEED)
    for name in ("person_keypoints_train2017.json", "person_keypoints_val2017.json"):
        assert (again.root / "annotations" / name).read_bytes() == (
            data_root / "annotations" / name
        ).read_bytes()
    for path in sorted((data_root / "images" / "val2017").iterdir()):
        assert (again.val_images / path.name).read_bytes() == path.read_bytes()
    # Fewer images: the same first ones (each image has its own generator).
    fewer = generate_dataset(tmp_path / "fewer", 2, 3, seed=SEED)
    for path in sorted(fewer.val_images.iterdir()):
        assert path.read_bytes() == (data_root / "images" / "val2017" / path.name).read_bytes()
    other = generate_dataset(tmp_path / "other", 0, 3, seed=SEED + 1)
    first = "001000001.jpg".zfill(16)
    assert (other.val_images / first).read_bytes() != (fewer.val_images / first).read_bytes()


def test_occlusion_flags_in_crowded_scenes():
    config = SceneConfig(people=(4, 4), height_px=(150.0, 220.0), max_overlap_iou=0.45)
    occluded = 0
    for i in range(6):
        scene = render_scene(np.random.default_rng([11, i]), config)
        boxes = [p.bbox_xywh for p in scene.people]
        for n, person in enumerate(scene.people):
            hidden = person.keypoints[person.keypoints[:, 2] == 1, :2]
            occluded += len(hidden)
            # A hidden joint lies under someone drawn later, hence inside that one's box.
            for x, y in hidden:
                assert any(
                    b[0] - 1 <= x <= b[0] + b[2] + 1 and b[1] - 1 <= y <= b[1] + b[3] + 1
                    for b in boxes[n + 1 :]
                )
            assert 0.0 <= person.hidden_fraction < 1.0
    assert occluded == 32  # recorded (seeded scenes)


def standing(yaw_deg: float) -> PoseAngles:
    arm, leg = LimbAngles(35.0, 0.0, 0.0), LimbAngles(15.0, 0.0, 0.0)
    return PoseAngles(
        yaw_deg=yaw_deg,
        torso_pitch_deg=0.0,
        torso_side_deg=0.0,
        torso_twist_deg=0.0,
        head_yaw_deg=0.0,
        head_pitch_deg=0.0,
        head_roll_deg=0.0,
        arms={"left": arm, "right": arm},
        legs={"left": leg, "right": leg},
        elbow_hints={"left": np.array([0, 0, -1.0]), "right": np.array([0, 0, -1.0])},
    )


@pytest.mark.parametrize("yaw_deg", [0.0, 180.0, 25.0, 205.0])
def test_left_and_right_limbs_look_alike(yaw_deg):
    """A mirror image of a person must be a valid person with left and right swapped (flip
    augmentation and the flip test rely on it), so no person-frame cue such as lighter left
    limbs: a symmetric pose in a symmetric outfit is drawn as its own mirror image."""
    body = pose_body(standing(yaw_deg), Proportions())
    placed = place(body, Placement(200.0, 0.0, (100.0, 120.0)))
    left_on_image_right = placed.xy[P["left_shoulder"], 0] > placed.xy[P["right_shoulder"], 0]
    assert left_on_image_right == (yaw_deg < 90)  # a person facing us shows their left on our right
    for i in range(12):
        look = Appearance.sample(np.random.default_rng([3, i]))
        colours = {}
        for part in body_parts(placed, look):
            if part.kind == "capsule":
                colours.setdefault(part.width, set()).add(part.colour)
        # Each limb segment (one width per segment type) has one colour for both sides.
        assert all(len(c) == 1 for c in colours.values()), colours


def test_face_points_hidden_from_behind():
    front = pose_body(standing(0.0), Proportions())
    back = pose_body(standing(180.0), Proportions())
    for name in ("nose", "left_eye", "right_eye"):
        assert not front.face_hidden(name) and back.face_hidden(name)
    for name in ("left_ear", "right_ear"):
        assert not front.face_hidden(name) and not back.face_hidden(name)
    profile = pose_body(standing(90.0), Proportions())  # turned to show the left side
    assert profile.face_hidden("right_eye") and not profile.face_hidden("left_eye")
    assert profile.face_hidden("right_ear") and not profile.face_hidden("left_ear")
    assert not profile.face_hidden("nose")


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = dataset_module.render_scene

    def failing(rng, config):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(rng, config)

    monkeypatch.setattr(dataset_module, "render_scene", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "data", 5, 2, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_reuse_replace_and_refuse(tmp_path):
    root = tmp_path / "data"
    generate_dataset(root, 1, 1, seed=0)
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    generate_dataset(root, 1, 1, seed=0)  # same parameters: reused as is
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp
    generate_dataset(root, 2, 1, seed=0)  # other parameters: replaced
    assert len(list((root / "images" / "train2017").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_dataset(foreign, 1, 1)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_preview_sheet(data_root, tmp_path):
    out = draw_preview(data_root, tmp_path / "sheet.png", count=6, columns=3)
    sheet = cv2.imread(str(out))
    assert sheet.shape == (2 * 240, 3 * 320, 3)


def test_synth_command(tmp_path, capsys):
    assert main(["synth", "--output", str(tmp_path / "d"), "--train", "2", "--val", "1"]) == 0
    assert len(list((tmp_path / "d" / "images" / "val2017").iterdir())) == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("")
    capsys.readouterr()
    assert main(["synth", "--output", str(tmp_path / "junk"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a synthetic dataset" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--output", str(tmp_path / "e"), "--size", "320by240"])
    assert exit_info.value.code == 2
