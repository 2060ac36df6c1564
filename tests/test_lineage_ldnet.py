"""Official LDNet checkpoints (``NBU-CVMI/LDNet``, model ``dysmallnet_spattention``) into the
LDNet presets: names, heatmaps, the files its training code writes, the record, bad input.

The fixture was made by ``tools/check_ldnet_reference.py`` with the official code: its tensor
names and shapes in its order (``tests/fixtures/ldnet_official_names_{figure,ld3}.txt``, w32
and w48 shapes side by side, ``none`` where w32 has no such tensor) and its float64 heatmaps
for the seeded weights of ``tests/lineage_weights.py::seeded_ldnet_weights`` on a 3-sample
batch at 128x96
(``tests/fixtures/ldnet_reference_heatmaps.npz``, every 4th row and column). Here the same
weights are regenerated, written as the official code writes them, imported and run, with no
official code. Comparisons run in float64 (float64 sums agree across CPUs; float32 ones differ
in the last bits); the tool measured float32 at 256x192 against the official code itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import import_then_predict_differences, only_line, run_cli
from lineage_weights import ldnet_input, seeded_ldnet_weights

from ldnet.checkpoint import CheckpointError, atomic_save, load_checkpoint
from ldnet.inference import ModelRecord, load_model, record_from_checkpoint, record_from_metadata
from ldnet.lineage.importer import import_checkpoint
from ldnet.lineage.initial import load_initial_weights
from ldnet.lineage.layouts import as_layout, read_file, recognise
from ldnet.lineage.ldnet_names import name_map, preset_of
from ldnet.models import attention_temperature, build_model

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "ldnet_reference_heatmaps.npz"
# preset: (names file, shape column: 0 for width 32, 1 for 48)
PRESETS = {
    "ldnet_w32": ("figure", 0),
    "ldnet_w48": ("figure", 1),
    "ldnet_w32_ld3": ("ld3", 0),
    "ldnet_w48_ld3": ("ld3", 1),
}
TOLERANCE = 1e-5  # of the heatmap scale
INPUT_SIZE = (256, 192)
# What the official training code writes: (file name, layout written, legacy serialisation
# as PyTorch 1.4 saved, the layout tag the import records).
FILES = (
    ("final_state.pth", False, True, "ldnet-official"),
    ("checkpoint.pth", True, True, "ldnet-official+ddp"),
    ("model_best.pth", False, False, "ldnet-official"),
)


def official_names(preset: str) -> list[tuple[str, tuple[int, ...]]]:
    """The official tensor names and shapes of ``preset``, in its order (the fixture)."""
    order, column = PRESETS[preset]
    rows = []
    for line in (FIXTURES / f"ldnet_official_names_{order}.txt").read_text().splitlines():
        name, *shapes = line.split()
        shape = shapes[column]
        if shape != "none":  # w32 has no transition1.0 (its stem is as wide as its branch)
            rows.append((name, () if shape == "-" else tuple(int(s) for s in shape.split("x"))))
    return rows


def official_weights(preset: str) -> dict[str, torch.Tensor]:
    """The fixture's seeded weights, in the official names (generated in our order)."""
    template = build_model(preset, 17).state_dict()
    mapping = name_map(template)
    seed = int(np.load(REFERENCE)["weight_seed"])
    return {mapping[ours]: t for ours, t in seeded_ldnet_weights(template, seed).items()}


def shaped_stand_ins(preset: str) -> dict[str, torch.Tensor]:
    """The official names and shapes with one stored number each (a zero expanded to the
    shape: a file of kilobytes that reads back with every shape), for the checks that look
    at names and shapes only."""
    return {name: torch.zeros(()).expand(shape) for name, shape in official_names(preset)}


def write_official(official: dict, path: Path, wrapped: bool, legacy: bool) -> Path:
    contents = as_layout(official, "ldnet-official", wrapped)
    if legacy:
        torch.save(contents, path, _use_new_zipfile_serialization=False)
    else:
        atomic_save(contents, path)
    return path


def reference(preset: str) -> tuple[np.ndarray, float, torch.Tensor, int]:
    data = np.load(REFERENCE)
    size = tuple(int(s) for s in data["size"])
    crops = ldnet_input(data[preset].shape[0], int(data["input_seed"]), size)
    return data[preset], float(data[f"{preset}_scale"]), crops, int(data["stride"])


def relative_difference(model: torch.nn.Module, preset: str, samples: int = 3) -> float:
    """Max |ours - official| over the fixture's first ``samples`` samples, as a fraction of
    the scale (float64)."""
    expected, scale, crops, stride = reference(preset)
    expected = expected[:samples]
    with torch.no_grad():
        ours = model.double().eval()(crops[:samples])[:, :, ::stride, ::stride].numpy()
    assert ours.shape == expected.shape
    return float(np.abs(ours - expected).max()) / scale


# -- names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
def test_name_rules_give_the_official_names_in_its_order(preset):
    template = build_model(preset, 17).state_dict()
    rows = official_names(preset)
    assert list(name_map(template).values()) == [name for name, _ in rows]
    assert [tuple(t.shape) for t in template.values()] == [shape for _, shape in rows]
    assert preset_of(dict(shaped_stand_ins(preset))) == preset


def test_parameter_counts_are_the_official_ones():
    """Counted on the official code (DESIGN §2): the figure's order, the kernel banks in."""
    counts = {}
    for preset in ("ldnet_w32", "ldnet_w48"):
        counts[preset] = sum(
            int(np.prod(shape))
            for name, shape in official_names(preset)
            if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
    assert counts == {"ldnet_w32": 30_330_210, "ldnet_w48": 68_089_394}


# -- heatmaps against the official code's -----------------------------------------------------
def check_heatmaps(preset: str, files, tmp_path: Path) -> None:
    """The seeded weights written as ``files`` (of FILES) -> imported -> the official
    heatmaps; and the same-shape swap control, which must fail."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    official = official_weights(preset)
    states = []
    for name, wrapped, legacy, tag in files:
        path = write_official(official, tmp_path / name, wrapped, legacy)
        state, record, provenance = import_checkpoint(path, model=preset, input_size=INPUT_SIZE)
        assert provenance["layout"] == tag and provenance["file"] == name
        assert (record.model, record.convention, record.codec) == (preset, "hrnet", "msra")
        assert record.temperature == 34.0
        states.append(state)
        path.unlink()
    assert all(all(torch.equal(s[k], states[0][k]) for k in states[0]) for s in states)
    model = build_model(preset, 17)
    model.load_state_dict(states[0], strict=True)
    assert relative_difference(model, preset) <= TOLERANCE  # ~2e-15 measured
    # The control: the two kernel banks of the first LD block swapped (same shape) must fail.
    stage = "stages.2" if preset in ("ldnet_w32", "ldnet_w48") else "stages.1"
    a, b = (f"{stage}.hr_modules.0.branches.0.0.conv{i}.0.weight" for i in (1, 2))
    swapped = dict(states[0])
    assert swapped[a].shape == swapped[b].shape and swapped[a].ndim == 5
    swapped[a], swapped[b] = swapped[b], swapped[a]
    model.load_state_dict(swapped, strict=True)
    assert relative_difference(model, preset, samples=1) > 100 * TOLERANCE


@pytest.mark.parametrize(("preset", "file"), [("ldnet_w32", 1), ("ldnet_w32_ld3", 0)])
def test_official_file_imports_to_the_official_heatmaps(preset, file, tmp_path):
    """One file of real weights each (the training checkpoint; the bare state dict);
    ``test_recognition_...`` reads every form, the slow tests import every form."""
    check_heatmaps(preset, [FILES[file]], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_official_file_imports_to_the_official_heatmaps(preset, tmp_path):
    check_heatmaps(preset, FILES, tmp_path)


# -- the CLI, the record, the temperature ------------------------------------------------------
def test_cli_import_records_convention_and_temperature(tmp_path, capsys):
    """Names and shapes only (stand-ins): the weights' values are the heatmap tests' part."""
    official = shaped_stand_ins("ldnet_w32")
    source = write_official(official, tmp_path / "checkpoint.pth", wrapped=True, legacy=True)
    output = tmp_path / "ldnet_w32_coco.pt"
    code, out, err = run_cli(
        capsys, "weights", "import", source, "--model", "ldnet_w32", "--input", "256x192",
        "--output", output,
    )  # fmt: skip
    assert code == 0, err
    assert (
        f"wrote {output}: ldnet_w32, 17 joints (coco), 256x192, msra decoding (sigma 2), "
        "hrnet convention, temperature 34; from checkpoint.pth (ldnet-official+ddp" in out
    )
    data = load_checkpoint(output)
    assert data["convention"] == "hrnet" and data["model"]["temperature"] == 34.0
    assert data["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    model, record = load_model(output, "coco")
    assert record.temperature == 34.0 and attention_temperature(model) == 34.0
    # In memory, as --weights FILE.pth --model ldnet_w32 --input 256x192: the same record.
    direct, direct_record = load_model(source, "coco", model="ldnet_w32", input_size=INPUT_SIZE)
    assert direct_record == record and attention_temperature(direct) == 34.0

    # --temperature overrides the official 34; the record and the loaded model carry it.
    cold = tmp_path / "cold.pt"
    code, out, err = run_cli(
        capsys, "weights", "import", source, "--model", "ldnet", "--input", "256x192",
        "--temperature", "1", "--output", cold,
    )  # fmt: skip
    assert code == 0, err
    assert "temperature 1;" in out
    cold_model, cold_record = load_model(cold, "coco")
    assert cold_record.temperature == 1.0 and attention_temperature(cold_model) == 1.0


def test_record_carries_the_temperature():
    record = ModelRecord("ldnet_w32", 17, "coco", (256, 192), "msra", convention="hrnet")
    assert "temperature" not in record.to_checkpoint()["model"]
    assert "temperature" not in record.to_metadata()
    warm = ModelRecord("ldnet_w32", 17, "coco", (256, 192), temperature=13.0)
    assert warm.to_checkpoint()["model"]["temperature"] == 13.0
    assert warm.to_metadata()["temperature"] == "13.0"
    assert record_from_checkpoint(warm.to_checkpoint(), "w.pt") == warm
    assert record_from_metadata(warm.to_metadata(), "w.onnx") == warm
    assert attention_temperature(warm.build_network()) == 13.0
    bad = warm.to_checkpoint()
    bad["model"]["temperature"] = -2
    with pytest.raises(CheckpointError, match="w.pt: codec record field 'temperature' must be"):
        record_from_checkpoint(bad, "w.pt")


def test_official_file_without_model_names_its_preset(tmp_path, capsys):
    path = atomic_save(shaped_stand_ins("ldnet_w48_ld3"), tmp_path / "final_state.pth")
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    assert (
        "final_state.pth: an official LDNet checkpoint, not an ldnet checkpoint: give --model "
        "ldnet_w48_ld3 and --input HxW" in str(error.value)
    )
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 48, 3), 128, np.uint8))
    code, _, err = run_cli(
        capsys, "predict", photo, "--weights", path, "--output", tmp_path / "out"
    )
    assert code == 2 and not (tmp_path / "out").exists()
    assert "final_state.pth: an official LDNet checkpoint, not an ldnet" in only_line(err)


def test_official_file_initialises_training(tmp_path):
    path = atomic_save(shaped_stand_ins("ldnet_w32"), tmp_path / "model_best.pth")
    model = build_model("ldnet_w32", 17)
    report = load_initial_weights(model, path)
    assert len(report["matched"]) == len(model.state_dict())
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []
    assert (
        float(model.stages[2].hr_modules[1].branches[3][1].conv2[0].weight.detach().abs().max())
        == 0
    )
    with pytest.raises(CheckpointError, match="holds LDNet weights, which initialise only"):
        load_initial_weights(build_model("hrnet_w32", 17), path)


# -- bad input: one line naming the file and the first tensor that does not fit ------------------
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    w32 = shaped_stand_ins("ldnet_w32")
    files = {
        "neither.pth": {"encoder.conv.weight": torch.zeros(4, 3, 3, 3)},
        "w48.pth": shaped_stand_ins("ldnet_w48"),
        "ld3.pth": shaped_stand_ins("ldnet_w32_ld3"),
        "incomplete.pth": {k: v for k, v in w32.items() if k != "prm.bn_2_2.running_var"},
        "extra.pth": {**w32, "prm.conv3.weight": torch.zeros(17, 17, 1, 1)},
        "w32.pth": w32,
    }
    for name, state in files.items():
        atomic_save(
            as_layout(state, "ldnet-official", wrapped=name == "w48.pth")
            if name != "neither.pth"
            else state,
            tmp_path / name,
        )
    cases = [
        (
            "neither.pth",
            "ldnet_w32",
            (),
            "neither.pth: not an HRNet-lineage checkpoint: expected official HRNet names",
        ),
        (
            "w48.pth",
            "ldnet_w32",
            (),
            "w48.pth: an official LDNet checkpoint (DDP-wrapped) that does not fit ldnet_w32: "
            "821 tensor(s), first: transition1.0.0.weight (48x32x3x3), which ldnet_w32 does "
            "not have; the file holds LDNet-w48, the figure's block order (--model ldnet_w48)",
        ),
        (
            "ld3.pth",
            "ldnet_w32",
            (),
            "ld3.pth: an official LDNet checkpoint that does not fit ldnet_w32: 320 tensor(s), "
            "first: stage3.0.branches.0.0.conv1.weight is 4x32x32x3x3, ldnet_w32's "
            "stages.1.hr_modules.0.branches.0.0.conv1.0.weight is 32x32x3x3; the file holds "
            "LDNet-w32, LD blocks in stage 3 (--model ldnet_w32_ld3)",
        ),
        (
            "w32.pth",
            "ldnet_w32_ld3",
            (),
            "w32.pth: an official LDNet checkpoint that does not fit ldnet_w32_ld3: 320 "
            "tensor(s), first: stage3.0.branches.0.0.conv1.weight is 32x32x3x3, "
            "ldnet_w32_ld3's stages.1.hr_modules.0.branches.0.0.conv1.0.weight is 4x32x32x3x3; "
            "the file holds LDNet-w32, the figure's block order (--model ldnet_w32)",
        ),
        (
            "incomplete.pth",
            "ldnet_w32",
            (),
            "incomplete.pth: an official LDNet checkpoint that does not fit ldnet_w32: 1 "
            "tensor(s), first: prm.bn_2_2.running_var (17 in ldnet_w32) is missing",
        ),
        (
            "extra.pth",
            "ldnet_w32",
            (),
            "extra.pth: an official LDNet checkpoint that does not fit ldnet_w32: 1 tensor(s), "
            "first: prm.conv3.weight (17x17x1x1), which ldnet_w32 does not have",
        ),
        (
            "w32.pth",
            "hrnet_w32",
            (),
            "w32.pth: an official LDNet checkpoint holds LDNet weights, which only models "
            "ldnet_w32, ldnet_w48, ldnet_w32_ld3, ldnet_w48_ld3 can take, not 'hrnet_w32' "
            "(this one: LDNet-w32, the figure's block order, --model ldnet_w32)",
        ),
        (
            "w32.pth",
            "ldnet_w32",
            ("--dataset", "mpii"),
            "w32.pth: the final layer has 17 joints, but mpii has 16",
        ),
    ]
    for name, model, options, message in cases:
        output = tmp_path / "out" / f"{Path(name).stem}.pt"
        code, out, err = run_cli(
            capsys, "weights", "import", tmp_path / name, "--model", model, "--input",
            "256x192", "--output", output, *options,
        )  # fmt: skip
        assert code == 2, (name, out, err)
        assert message in only_line(err), err
        assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_temperature_goes_with_a_kernel_attention(tmp_path, capsys):
    from test_lineage_import import small_hrnet_state

    hrnet = atomic_save(small_hrnet_state(), tmp_path / "hrnet.pth")
    code, _, err = run_cli(
        capsys, "weights", "import", hrnet, "--model", "ldnet_w32", "--input", "256x192",
        "--output", tmp_path / "x.pt",
    )  # fmt: skip
    assert code == 2
    assert "an official HRNet state dict holds HRNet weights, which only model 'hrnet_w32'" in (
        only_line(err)
    )
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit
        run_cli(
            capsys, "weights", "import", hrnet, "--model", "hrnet_w32", "--input", "256x192",
            "--temperature", "0", "--output", tmp_path / "x.pt",
        )  # fmt: skip
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "--temperature: must be a positive number, got '0'" in err
    code, _, err = run_cli(
        capsys, "weights", "import", hrnet, "--model", "hrnet_w32", "--input", "256x192",
        "--temperature", "1", "--output", tmp_path / "x.pt",
    )  # fmt: skip
    assert code == 2
    assert "hrnet.pth: model 'hrnet_w32' has no kernel attention, so no temperature" in (
        only_line(err)
    )
    assert not (tmp_path / "x.pt").exists()


def test_recognition_is_not_by_the_stem_prefix_alone(tmp_path):
    """Ours and the official code both name their stem ``stem.``: the official markers and
    our ``stages.`` decide, not the prefix."""
    official = shaped_stand_ins("ldnet_w32")
    ours = build_model("ldnet_s", 17).state_dict()
    for contents, layout in (
        (as_layout(official, "ldnet-official"), "ldnet-official"),
        (as_layout(official, "ldnet-official", wrapped=True), "ldnet-official"),
        (ours, "ldnet"),
        ({"state_dict": {"module." + k: v for k, v in official.items()}}, "ldnet-official"),
    ):
        path = atomic_save(contents, tmp_path / "w.pth")
        assert recognise(read_file(path), str(path)).layout == layout


# -- end to end: an official file, imported, against HRNet's own test pipeline ------------------
PIPELINE = FIXTURES / "ldnet_pipeline_keypoints.json"
VAL2017 = Path(__file__).resolve().parents[2] / "shared/data/coco-mini/images/val2017"


@pytest.mark.slow
def test_official_file_gives_hrnet_pipeline_keypoints(tmp_path, capsys):
    """``tools/check_hrnet_pipeline.py --model ldnet_w32`` ran HRNet's own test pipeline (the
    official LDNet's, a fork of it) with the official model and these seeded weights on
    COCO-MINI val2017 people; here the weights arrive as the official code saves them,
    through ``ldnet weights import`` into ``ldnet predict``."""
    fixture = json.loads(PIPELINE.read_text())
    assert fixture["model"] == "ldnet_w32"
    assert fixture["seed"] == int(np.load(REFERENCE)["weight_seed"])  # the same weights
    source = write_official(
        official_weights("ldnet_w32"), tmp_path / "checkpoint.pth", wrapped=True, legacy=True
    )
    people = fixture["people"]
    difference, clear, ours = import_then_predict_differences(
        capsys, tmp_path, people, source, "ldnet_w32"
    )
    assert clear.sum() >= 80 and difference[clear].max() <= 0.05  # 7.9e-5 px measured
    np.testing.assert_allclose(ours[..., 2], [p["scores"] for p in people], atol=2e-3)
