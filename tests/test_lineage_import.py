"""Importing the HRNet lineage's weights into `hrnet_w32` (ldnet.lineage, `ldnet weights import`).

The reference heatmaps in ``tests/fixtures/hrnet_w32_reference_heatmaps.npz`` were computed by
the HRNet reference's own ``pose_hrnet.py`` with the seeded weights of
``tests/lineage_weights.py`` (``tools/check_hrnet_reference.py`` made them, and measured
difference 0 there in float32 and float64); here the same weights are regenerated, written in
each layout and imported, with no reference code. Comparisons run in float64: float32 sums
differ in the last bits from one CPU to another, float64 ones do not reach 1e-5.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import import_then_predict_differences, match_people, only_line, run_cli
from lineage_weights import seeded_weights

from ldnet.checkpoint import CheckpointError, atomic_save, load_checkpoint
from ldnet.inference import load_model
from ldnet.lineage.hrnet_names import name_map
from ldnet.lineage.importer import import_checkpoint, write_imported
from ldnet.lineage.initial import describe_initial_weights, load_initial_weights
from ldnet.lineage.layouts import as_layout, read_file, recognise
from ldnet.models import build_model

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = FIXTURES / "hrnet_w32_official_names.txt"
REFERENCE = FIXTURES / "hrnet_w32_reference_heatmaps.npz"
INPUT_SIZE = (256, 192)
LAYOUTS = {  # file name: (layout, DDP-wrapped)
    "official.pth": ("hrnet", False),
    "mmpose0.pth": ("mmpose-0.x", False),
    "mmpose1.pth": ("mmpose-1.x", False),
    "ddp.pth": ("hrnet", True),
}


def official_names() -> list[tuple[str, tuple[int, ...]]]:
    """The reference's tensor names and shapes, in its order (from the fixture)."""
    rows = []
    for line in NAMES.read_text().splitlines():
        name, shape = line.split()
        rows.append((name, () if shape == "-" else tuple(int(s) for s in shape.split("x"))))
    return rows


def mmpose1_meta() -> dict:
    """What an mmengine ``meta`` holds: numpy arrays, a numpy scalar, a dtype."""
    return {
        "dataset_meta": {
            "sigmas": np.linspace(0.025, 0.107, 17, dtype=np.float32),
            "keypoint_colors": np.full((17, 3), 51, dtype=np.uint8),
            "flip_indices": [0, 2, 1, 4, 3],
        },
        "seed": np.int64(0),
        "dtype": np.dtype("float32"),
        "epoch": 210,
    }


def fixed_input() -> torch.Tensor:
    reference = np.load(REFERENCE)
    rng = np.random.Generator(np.random.PCG64(int(reference["input_seed"])))
    return torch.from_numpy(rng.standard_normal((1, 3, *INPUT_SIZE)))


def reference_samples() -> tuple[np.ndarray, int]:
    reference = np.load(REFERENCE)
    return reference["heatmaps"], int(reference["stride"])


def heatmap_difference(model: torch.nn.Module) -> float:
    """Max |ours - reference| over the fixture's samples, in float64."""
    expected, stride = reference_samples()
    with torch.no_grad():
        ours = model.double().eval()(fixed_input())[:, :, ::stride, ::stride]
    assert ours.shape == expected.shape
    return float(np.abs(ours.numpy() - expected).max())


@pytest.fixture(scope="module")
def official():
    """The seeded weights in the reference's names (generated in our order, as the fixture)."""
    torch.set_num_threads(1)
    template = build_model("hrnet_w32", 17).state_dict()
    mapping = name_map(template)
    seed = int(np.load(REFERENCE)["weight_seed"])
    return {mapping[ours]: tensor for ours, tensor in seeded_weights(template, seed).items()}


@pytest.fixture(scope="module")
def files(official, tmp_path_factory):
    """The seeded weights saved in the four layouts (MMPose 1.x as MMPose publishes: the
    legacy serialisation, numpy in ``meta``)."""
    folder = tmp_path_factory.mktemp("layouts")
    for name, (layout, wrapped) in LAYOUTS.items():
        contents = as_layout(official, layout, wrapped)
        if layout == "mmpose-1.x":
            contents["meta"] = mmpose1_meta()
            torch.save(contents, folder / name, _use_new_zipfile_serialization=False)
        else:
            atomic_save(contents, folder / name)
    return folder


# -- names --------------------------------------------------------------------------------------
def test_name_rules_give_the_reference_names_in_its_order():
    template = build_model("hrnet_w32", 17).state_dict()
    mapping = name_map(template)
    rows = official_names()
    assert list(mapping.values()) == [name for name, _ in rows]
    assert [tuple(t.shape) for t in template.values()] == [shape for _, shape in rows]
    assert len(rows) == 1754
    parameters = sum(
        int(np.prod(shape))
        for name, shape in rows
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert parameters == 28_536_113  # HRNet-W32's count, as the issue states


# -- the four layouts ---------------------------------------------------------------------------
def test_each_layout_imports_to_the_reference_heatmaps(files, official):
    imported = {}
    for name, (layout, wrapped) in LAYOUTS.items():
        state, record, provenance = import_checkpoint(
            files / name, model="hrnet_w32", input_size=INPUT_SIZE
        )
        imported[name] = state
        assert provenance == {
            "file": name,
            "sha256": hashlib.sha256((files / name).read_bytes()).hexdigest(),
            "layout": layout + ("+ddp" if wrapped else ""),
        }
        assert (record.model, record.num_joints, record.dataset) == ("hrnet_w32", 17, "coco")
        assert (record.codec, record.sigma, record.convention) == ("msra", 2.0, "hrnet")
        assert record.input_size == INPUT_SIZE and record.heatmap_size == (64, 48)
    # The same tensors whatever the layout, so the same heatmaps; one forward shows them.
    first = imported["official.pth"]
    for state in imported.values():
        assert state.keys() == first.keys()
        assert all(torch.equal(state[key], first[key]) for key in first)
    model = build_model("hrnet_w32", 17)
    model.load_state_dict(first, strict=True)
    assert heatmap_difference(model) <= 1e-5
    # A mix-up of two same-shape tensors shows: two BatchNorm scales of one branch swapped.
    swapped = dict(first)
    a, b = (f"stages.0.hr_modules.0.branches.0.{i}.conv1.1.weight" for i in (0, 1))
    assert swapped[a].shape == swapped[b].shape
    swapped[a], swapped[b] = swapped[b], swapped[a]
    model.load_state_dict(swapped, strict=True)
    assert heatmap_difference(model) > 100 * 1e-5  # 7e-3 measured


def test_cli_import_writes_a_checkpoint_that_runs_as_the_reference(files, tmp_path, capsys):
    output = tmp_path / "imported" / "hrnet_w32_coco.pt"
    code, out, err = run_cli(
        capsys,
        "weights",
        "import",
        files / "mmpose1.pth",
        "--model",
        "hrnet_w32",
        "--input",
        "256x192",
        "--output",
        output,
    )
    assert code == 0, err
    assert f"wrote {output}: hrnet_w32, 17 joints (coco), 256x192, msra decoding" in out
    data = load_checkpoint(output)
    assert data["format"] == "ldnet-checkpoint-1" and data["convention"] == "hrnet"
    assert data["codec"] == {
        "name": "msra",
        "sigma": 2.0,
        "input_size": [256, 192],
        "heatmap_size": [64, 48],
    }
    assert data["source"]["file"] == "mmpose1.pth" and data["source"]["layout"] == "mmpose-1.x"
    assert (
        data["source"]["sha256"] == hashlib.sha256((files / "mmpose1.pth").read_bytes()).hexdigest()
    )
    model, record = load_model(output, "coco", model="hrnet_w32")
    assert record.convention == "hrnet" and record.codec == "msra"
    assert heatmap_difference(model) <= 1e-5
    # Another layout through --weights FILE.pth with --model/--input: imported in memory.
    direct, direct_record = load_model(
        files / "ddp.pth", "coco", model="hrnet_w32", input_size=INPUT_SIZE
    )
    assert direct_record == record
    imported = model.state_dict()
    assert all(torch.equal(t.double(), imported[k]) for k, t in direct.state_dict().items())


def test_record_follows_input_size_and_decoder(files):
    _, record, _ = import_checkpoint(
        files / "official.pth", model="hrnet_w32", input_size=(384, 288), decoder="dark"
    )
    assert (record.sigma, record.codec, record.heatmap_size) == (3.0, "dark", (96, 72))


def test_foreign_file_without_model_and_input_says_what_to_add(files, tmp_path, capsys):
    with pytest.raises(CheckpointError) as error:
        load_model(files / "mmpose0.pth")
    message = str(error.value)
    assert "mmpose0.pth: an MMPose 0.x checkpoint, not an ldnet checkpoint" in message
    assert "--model hrnet_w32 and --input HxW" in message and "ldnet weights import" in message
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 48, 3), 128, np.uint8))
    code, _, err = run_cli(
        capsys, "predict", photo, "--weights", files / "official.pth", "--output", tmp_path / "out"
    )
    assert code == 2 and not (tmp_path / "out").exists()
    assert "official.pth: an official HRNet state dict, not an ldnet checkpoint" in only_line(err)


# -- bad input: one line naming the file, exit 2, nothing written --------------------------------
def small_hrnet_state(width: int = 32, joints: int = 17) -> dict[str, torch.Tensor]:
    """Enough of an official state dict to be recognised and checked before the names."""
    return {
        "conv1.weight": torch.zeros(64, 3, 3, 3),
        "transition1.0.0.weight": torch.zeros(width, 256, 3, 3),
        "stage2.0.branches.0.0.conv1.weight": torch.zeros(width, width, 3, 3),
        "final_layer.weight": torch.zeros(joints, width, 1, 1),
        "final_layer.bias": torch.zeros(joints),
    }


class Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_bad_input_is_one_line_exit_2_and_nothing_written(files, official, tmp_path, capsys):
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("these are not weights\n")
    w48 = tmp_path / "w48.pth"
    atomic_save(small_hrnet_state(width=48), w48)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "meta": Exploit(tmp_path / "pwned")}, unsafe)
    imagenet = tmp_path / "imagenet.pth"
    atomic_save({**small_hrnet_state(), "classifier.weight": torch.zeros(10, 4)}, imagenet)
    assert "stage3.2.fuse_layers.2.0.1.1.weight" in official
    incomplete = tmp_path / "incomplete.pth"
    atomic_save(
        {k: v for k, v in official.items() if k != "stage3.2.fuse_layers.2.0.1.1.weight"},
        incomplete,
    )
    kernel3 = tmp_path / "kernel3.pth"
    atomic_save({**official, "final_layer.weight": torch.zeros(17, 32, 3, 3)}, kernel3)
    cases = [
        (not_a_checkpoint, (), "notes.pth: not a readable checkpoint ("),
        (w48, (), "w48.pth: HRNet-W48 weights (width 48), not W32"),
        (
            files / "official.pth",
            ("--model", "ldnet"),
            "official.pth: an official HRNet state dict holds HRNet weights, which only "
            "model 'hrnet_w32' can take, not 'ldnet'",
        ),
        (
            files / "mmpose1.pth",
            ("--dataset", "mpii"),
            "mmpose1.pth: the final layer has 17 joints, but mpii has 16",
        ),
        (
            unsafe,
            (),
            "unsafe.pth: not a readable checkpoint: an unsafe pickle holding posix.system",
        ),
        (
            imagenet,
            (),
            "imagenet.pth: expected a pose checkpoint (official HRNet or LDNet, MMPose 0.x "
            "or 1.x), found the ImageNet classification HRNet backbone",
        ),
        (
            incomplete,
            (),
            "incomplete.pth: 1 tensor(s) of HRNet-W32 missing, first: "
            "stage3.2.fuse_layers.2.0.1.1.weight",
        ),
        (
            kernel3,
            (),
            "kernel3.pth: 1 tensor(s) of another shape, first: final_layer.weight "
            "is 17x32x3x3, hrnet_w32's head.final.weight is 17x32x1x1",
        ),
    ]
    for source, options, message in cases:
        output = tmp_path / "out" / f"{source.stem}.pt"
        code, out, err = run_cli(
            capsys,
            "weights",
            "import",
            source,
            "--model",
            "hrnet_w32",
            "--input",
            "256x192",
            "--output",
            output,
            *options,
        )
        assert code == 2, (source, out, err)
        assert message in only_line(err), err
        assert not output.exists() and not list((tmp_path / "out").glob("*"))
    assert not (tmp_path / "pwned").exists()


def test_an_ldnet_checkpoint_is_not_imported_again(tmp_path):
    model = build_model("hrnet_w32", 17)
    atomic_save(
        {"model": {"name": "hrnet_w32", "num_joints": 17}, "state_dict": model.state_dict()},
        tmp_path / "ours.pt",
    )
    with pytest.raises(
        CheckpointError,
        match="ours.pt: expected a pose checkpoint .* found an ldnet checkpoint; use it as it is",
    ):
        write_imported(
            tmp_path / "ours.pt", tmp_path / "again.pt", model="hrnet_w32", input_size=INPUT_SIZE
        )
    assert not (tmp_path / "again.pt").exists()


# -- weights_only with numpy in meta ------------------------------------------------------------
@pytest.mark.parametrize("zip_format", [True, False])
def test_numpy_in_meta_loads_through_the_allow_list(tmp_path, zip_format):
    path = tmp_path / "mmpose1.pth"
    state = {k: torch.ones(1) for k in ("backbone.conv1.weight", "head.final_layer.weight")}
    torch.save(
        {"state_dict": state, "meta": mmpose1_meta()},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    data = read_file(path)
    meta = data["meta"]
    assert np.array_equal(meta["dataset_meta"]["sigmas"], mmpose1_meta()["dataset_meta"]["sigmas"])
    assert meta["dataset_meta"]["keypoint_colors"].dtype == np.uint8
    assert meta["seed"] == 0 and meta["dtype"] == np.dtype("float32")
    assert recognise(data, str(path)).layout == "mmpose-1.x"
    # Not through weights_only=False: any other class in the same place is still refused.
    torch.save(
        {"state_dict": state, "meta": Exploit(tmp_path / "pwned")},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    with pytest.raises(CheckpointError, match="mmpose1.pth: not a readable checkpoint: an unsafe"):
        read_file(path)
    assert not (tmp_path / "pwned").exists()


# -- ImageNet initialisation --------------------------------------------------------------------
def test_imagenet_backbone_initialises_hrnet_w32_and_reports(tmp_path):
    """A small classification-layout file from the fixture's names: the backbone's tensors
    (seeded), stage 4's multi-scale fusion that the pose network drops, and the
    classification modules (small stand-ins: only their names matter)."""
    rng = np.random.Generator(np.random.PCG64(3))
    state = {
        name: torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        if shape
        else torch.tensor(0)
        for name, shape in official_names()
        if not name.startswith("final_layer.")
    }
    state["stage4.2.fuse_layers.1.0.0.weight"] = torch.zeros(64, 32, 1, 1)
    for name in (
        "incre_modules.0.0.conv1.weight",
        "downsamp_modules.0.0.weight",
        "final_layer.0.weight",
        "classifier.weight",
    ):
        state[name] = torch.zeros(4, 4)
    path = tmp_path / "hrnet_w32-36af842e.pth"
    atomic_save(state, path)
    model = build_model("hrnet_w32", 17)
    head_before = model.head.final.weight.clone()
    report = load_initial_weights(model, path)
    assert len(report["matched"]) == 1752
    assert report["missing"] == ["head.final.weight", "head.final.bias"]
    assert report["unexpected"] == ["stage4.2.fuse_layers.1.0.0.weight"]
    assert report["mismatched"] == []
    assert sorted(report["skipped"]) == [
        "classifier.weight",
        "downsamp_modules.0.0.weight",
        "final_layer.0.weight",
        "incre_modules.0.0.conv1.weight",
    ]
    assert torch.equal(model.stem.conv1[0].weight, state["conv1.weight"])
    assert torch.equal(
        model.stages[2].hr_modules[2].fuse[0][3].project[1].running_var,
        state["stage4.2.fuse_layers.0.3.1.running_var"],
    )
    assert torch.equal(model.head.final.weight, head_before)  # not in the file: left as it was
    line = describe_initial_weights(path, report)
    assert line == (
        f"initial weights {path}: 1752 matched, 2 missing, 1 unexpected, 0 mismatched; skipped "
        "the classification modules classifier, downsamp_modules, final_layer, incre_modules; "
        "not in the file: head.final; not in the model: stage4.2.fuse_layers.1.0.0"
    )
    with pytest.raises(CheckpointError, match="initialise only model 'hrnet_w32'"):
        load_initial_weights(build_model("ldnet", 17), path)
    atomic_save(small_hrnet_state(width=48), tmp_path / "w48.pth")
    with pytest.raises(CheckpointError, match="w48.pth: HRNet-W48 weights"):
        load_initial_weights(build_model("hrnet_w32", 17), tmp_path / "w48.pth")


# -- end to end: an official file, imported, against HRNet's own test pipeline ------------------
PIPELINE = FIXTURES / "hrnet_pipeline_keypoints.json"
VAL2017 = Path(__file__).resolve().parents[2] / "shared/data/coco-mini/images/val2017"


@pytest.mark.slow
def test_official_file_gives_hrnet_pipeline_keypoints(official, tmp_path, capsys):
    """``tests/test_hrnet_convention.py`` checks ``ldnet predict`` against HRNet's own test
    pipeline (its fixture) with an ldnet checkpoint of the seeded weights; here the same
    weights arrive as the reference saves them: through ``ldnet weights import`` into
    ``ldnet predict``, and as they are into ``ldnet test``."""
    fixture = json.loads(PIPELINE.read_text())
    assert fixture["seed"] == int(np.load(REFERENCE)["weight_seed"])  # the same weights
    source = tmp_path / "pose_hrnet_w32_256x192.pth"
    atomic_save(as_layout(official, "hrnet"), source)
    people = fixture["people"]
    difference, clear, ours = import_then_predict_differences(
        capsys, tmp_path, people, source, "hrnet_w32"
    )
    assert clear.sum() >= 80 and difference[clear].max() <= 0.05
    np.testing.assert_allclose(ours[..., 2], [p["scores"] for p in people], atol=1e-3)

    # `ldnet test` takes the official file itself, imported as the config describes it.
    config = Path(__file__).resolve().parents[1] / "configs" / "coco_hrnet_w32_256x192.yaml"
    code, _, err = run_cli(
        capsys, "test", config, "test.decoder=msra", "data.workers=0", "--weights", source,
        "--detections", tmp_path / "boxes.json", "--ann", VAL2017.parents[1] / "annotations" /
        "person_keypoints_val2017.json", "--images", VAL2017, "--run-dir", tmp_path / "test",
        "--quiet", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads((tmp_path / "test" / "results.json").read_text())
    assert len(rows) == len(people)
    tested = np.stack([row for _, row in match_people(people, rows)])
    reference = np.array([p["keypoints"] for p in people])
    assert np.abs(tested[..., :2] - reference).max(axis=-1)[clear].max() <= 0.05
