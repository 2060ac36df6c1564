"""Parity of the LDNet presets with the official LDNet code, through the importer.

    git --git-dir=<mirror of NBU-CVMI/LDNet> archive HEAD LDNet_Code | tar -x -C /tmp/ldnet-ref
    .venv/bin/python tools/check_ldnet_reference.py --ldnet-repo /tmp/ldnet-ref/LDNet_Code \\
        [--onnx] [--models ldnet_w32 ...]

The official model (``lib/models/dysmallnet_spattention.py`` with ``dynamic_conv.py``,
``blocks.py`` and ``channel_shuffle.py``) is loaded from ``--ldnet-repo`` as it runs, never
copied here. The release's ``lib/models/__init__.py`` imports modules it does not ship, so
``lib`` and ``lib.models`` are given to Python as empty packages over the checkout's folders
and only those four files run. Each preset is built from the release's own config, widths
overridden where the release has no config of that width:

    ldnet_w32      experiments/coco/.../w36_256x192 (the figure's order), widths 32/64/128/256
    ldnet_w48      experiments/coco/.../w36_256x192 as it is (widths 48/96/192/384)
    ldnet_w32_ld3  experiments/coco/.../w18_256x192 as it is (LD blocks in stage 3, width 32)
    ldnet_w48_ld3  experiments/coco/.../w18_256x192, widths 48/96/192/384

Both networks get the same seeded weights (``tests/lineage_weights.py::seeded_ldnet_weights``,
generated in our tensor order and named as the official code names them): random BatchNorm
statistics, and kernel attentions whose logits are of order 100, so that the softmax at the
official T = 34 is far from uniform (the tool prints how far). The official weights are saved
as the official training code saves them, ``final_state.pth`` (a bare state dict) and
``checkpoint.pth`` (``state_dict`` with DataParallel's ``module.`` prefix), in PyTorch 1.4's
legacy serialisation, and imported by ``ldnet.lineage.importer``. Heatmaps are compared at
batch 1 and batch 3 (samples of different contrast and mean, so that each sample mixes its
own kernels), eval mode, in float32 (the must-hold: max |difference| <= 1e-5 of the heatmap
scale, max |official heatmap|) and in float64. The control swaps two same-shape tensors (the
two kernel banks of the first LD block) and must fail the same check.

``--onnx`` adds the deployment path for the files of ``--onnx-model`` (ldnet_w32): ``ldnet
weights import`` -> ``ldnet export onnx`` -> ONNX Runtime, against the official float32
heatmaps (must hold: within 1e-4 of the scale).

It writes the fixture the CI test (``tests/test_lineage_ldnet.py``) checks with no official
code: ``tests/fixtures/ldnet_official_names_{figure,ld3}.txt`` (the official tensor names in
its order, with their w32 and w48 shapes; ``none`` where w32 has no such tensor) and
``tests/fixtures/ldnet_reference_heatmaps.npz`` (per preset, the official float64 heatmaps
of a 3-sample batch at 128x96, every 4th row and column, their scale, and the seeds).
Exit 1 if any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CONFIGS = Path("experiments/coco/dysmallnet_spattention")
# preset: (the release's config, width C, the official stage holding the LD blocks)
CASES = {
    "ldnet_w32": ("w36_256x192_adam_lr1e-3.yaml", 32, "stage4"),
    "ldnet_w48": ("w36_256x192_adam_lr1e-3.yaml", 48, "stage4"),
    "ldnet_w32_ld3": ("w18_256x192_adam_lr1e-3.yaml", 32, "stage3"),
    "ldnet_w48_ld3": ("w18_256x192_adam_lr1e-3.yaml", 48, "stage3"),
}
ORDER_NAMES = {"stage4": "figure", "stage3": "ld3"}
INPUT_SIZE = (256, 192)
FIXTURE_SIZE, FIXTURE_BATCH, FIXTURE_STRIDE = (128, 96), 3, 4
WEIGHT_SEED, INPUT_SEED, FIXTURE_INPUT_SEED = 0, 1, 2
TOLERANCE = 1e-5  # of the heatmap scale, float32, against the official code
ONNX_TOLERANCE = 1e-4
# What the official training code writes (HRNet's tools/train.py + save_checkpoint).
FILES = (("final_state.pth", False), ("checkpoint.pth", True))  # (name, DataParallel-wrapped)


# -- the official code, loaded from the user's checkout -------------------------------------
def load_official(ldnet_repo: Path) -> types.ModuleType:
    """``lib.models.dysmallnet_spattention`` of the checkout (``LDNet_Code`` or its parent)."""
    code = ldnet_repo / "LDNet_Code" if (ldnet_repo / "LDNet_Code").is_dir() else ldnet_repo
    models = code / "lib" / "models"
    if not (models / "dysmallnet_spattention.py").is_file():
        raise SystemExit(
            f"{ldnet_repo}: no lib/models/dysmallnet_spattention.py (not an export of "
            "NBU-CVMI/LDNet's LDNet_Code)"
        )
    for package, folder in (("lib", code / "lib"), ("lib.models", models)):
        module = types.ModuleType(package)
        module.__path__ = [str(folder)]  # a package without running its __init__.py
        sys.modules[package] = module
    with warnings.catch_warnings():  # its `is '*'` comparison warns when compiled
        warnings.simplefilter("ignore", SyntaxWarning)
        return importlib.import_module("lib.models.dysmallnet_spattention")


def official_config(ldnet_repo: Path, preset: str) -> dict:
    """The release's config for ``preset``, its widths set to the preset's C/2C/4C/8C."""
    code = ldnet_repo / "LDNet_Code" if (ldnet_repo / "LDNet_Code").is_dir() else ldnet_repo
    name, width, ld_stage = CASES[preset]
    config = yaml.safe_load((code / CONFIGS / name).read_text())
    extra = config["MODEL"]["EXTRA"]
    for stage in ("STAGE2", "STAGE3", "STAGE4"):
        branches = extra[stage]["NUM_BRANCHES"]
        extra[stage]["NUM_CHANNELS"] = [width * 2**b for b in range(branches)]
    blocks = {stage: extra[stage.upper()]["BLOCK"] for stage in ("stage3", "stage4")}
    if blocks[ld_stage] != "DYBASIC":
        raise SystemExit(f"{name}: expected DYBASIC blocks in {ld_stage}, found {blocks}")
    return config


def load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- weights and inputs ----------------------------------------------------------------------
def seeded_official_weights(preset: str, seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """The seeded weights of ``preset``, in our order, named as the official code names them."""
    from ldnet.lineage.ldnet_names import name_map
    from ldnet.models import build_model

    lineage = load_module("lineage_weights", ROOT / "tests" / "lineage_weights.py")
    template = build_model(preset, 17).state_dict()
    mapping = name_map(template)
    return {mapping[ours]: t for ours, t in lineage.seeded_ldnet_weights(template, seed).items()}


def fixed_input(batch: int, seed: int, size=INPUT_SIZE) -> torch.Tensor:
    """``tests/lineage_weights.py::ldnet_input``: noise crops, each sample its own contrast
    and channel means (so the kernel attention sees each sample differently)."""
    lineage = load_module("lineage_weights", ROOT / "tests" / "lineage_weights.py")
    return lineage.ldnet_input(batch, seed, size)


def heatmaps(model: torch.nn.Module, crops: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    model = model.to(dtype).eval()
    with torch.no_grad():
        return model(crops.to(dtype))


def save_official(official: dict, folder: Path) -> dict[str, Path]:
    """The official weights as the official code writes them, in PyTorch 1.4's format."""
    from ldnet.lineage.layouts import as_layout

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, wrapped in FILES:
        path = folder / name
        contents = as_layout(official, "ldnet-official", wrapped)
        torch.save(contents, path, _use_new_zipfile_serialization=False)
        paths[name] = path
    return paths


def attention_spread(model: torch.nn.Module, crops: torch.Tensor) -> tuple[float, float, float]:
    """Over every kernel attention of ``model`` on ``crops``: the mean largest weight (1/4 is
    uniform), the smallest weight seen, and the mean spread across the samples."""
    from ldnet.models.ldconv import KernelAttention

    rows, hooks = [], []
    for module in model.modules():
        if isinstance(module, KernelAttention):
            hooks.append(
                module.register_forward_hook(
                    lambda _m, _i, out: rows.append(
                        (out.max(1).values.mean(), out.min(), out.std(0).mean())
                    )
                )
            )
    heatmaps(model, crops, torch.float32)
    for hook in hooks:
        hook.remove()
    values = torch.tensor(rows, dtype=torch.float64)
    return float(values[:, 0].mean()), float(values[:, 1].min()), float(values[:, 2].mean())


def swapped(official: dict, ld_stage: str) -> tuple[dict, tuple[str, str]]:
    """The control: the two kernel banks of the first LD block swapped (same shape)."""
    a, b = (f"{ld_stage}.0.branches.0.0.conv{i}.weight" for i in (1, 2))
    assert official[a].shape == official[b].shape
    state = dict(official)
    state[a], state[b] = official[b], official[a]
    return state, (a, b)


# -- the checks ------------------------------------------------------------------------------
def check_preset(module, ldnet_repo: Path, preset: str, folder: Path) -> dict:
    """Names, shapes and heatmaps of ``preset`` against the official model; what the fixture
    keeps; and whether every check held."""
    from ldnet.lineage.importer import import_checkpoint
    from ldnet.lineage.ldnet_names import to_ours
    from ldnet.models import attention_temperature, build_model

    ld_stage = CASES[preset][2]
    reference = module.get_pose_net(official_config(ldnet_repo, preset), is_train=False)
    official = seeded_official_weights(preset)
    theirs = reference.state_dict()
    same_names = list(theirs) == list(official)
    same_shapes = same_names and all(theirs[n].shape == official[n].shape for n in theirs)
    reference.load_state_dict(official, strict=True)
    ok = same_names and same_shapes
    print(
        f"{preset}: {len(theirs)} official tensors; our names map onto them in their order: "
        f"{same_names}, same shapes: {same_shapes}"
    )

    crops = {1: fixed_input(1, INPUT_SEED), 3: fixed_input(3, INPUT_SEED + 1)}
    expected = {
        (batch, dtype): heatmaps(reference, x, dtype)
        for batch, x in crops.items()
        for dtype in (torch.float32, torch.float64)
    }
    ours = build_model(preset, 17)
    states = {}
    for name, path in save_official(official, folder / preset).items():
        state, record, provenance = import_checkpoint(path, model=preset, input_size=INPUT_SIZE)
        states[name] = state
        ours.load_state_dict(state, strict=True)
        print(
            f"  {name:16s} {provenance['layout']:19s} -> {record.model}, "
            f"{record.convention} convention, T = {record.temperature:g}"
        )
        for (batch, dtype), theirs_maps in expected.items():
            mine = heatmaps(ours, crops[batch], dtype)
            scale = theirs_maps.abs().max().item()
            difference = (mine - theirs_maps).abs().max().item()
            relative = difference / scale
            if dtype == torch.float32:
                ok &= relative <= TOLERANCE
            print(
                f"    batch {batch} {str(dtype):13s} max |ours - official| {difference:.3g} "
                f"= {relative:.3g} of the scale {scale:.4g}"
            )
    first = states[FILES[0][0]]
    identical = all(
        all(torch.equal(state[k], first[k]) for k in first) for state in states.values()
    )
    ok &= identical
    best, smallest, across = attention_spread(ours, crops[3].float())
    print(
        f"  both files give the same tensors: {identical}; T = {attention_temperature(ours):g}; "
        f"attention: mean largest weight {best:.3f} (uniform 0.25), smallest {smallest:.2g}, "
        f"mean spread across the 3 samples {across:.3g}"
    )

    # The control: a same-shape swap must fail the check by far.
    control, (a, b) = swapped(official, ld_stage)
    ours.load_state_dict(to_ours(control, ours.state_dict(), "control", preset), strict=True)
    theirs_maps = expected[(3, torch.float32)]
    relative = (heatmaps(ours, crops[3], torch.float32) - theirs_maps).abs().max().item() / (
        theirs_maps.abs().max().item()
    )
    ok &= relative > 100 * TOLERANCE
    print(f"  control, {a} <-> {b}: {relative:.3g} of the scale (must exceed {TOLERANCE:g})")

    # The fixture: official float64 heatmaps of a small batch, subsampled.
    small = fixed_input(FIXTURE_BATCH, FIXTURE_INPUT_SEED, FIXTURE_SIZE)
    maps = heatmaps(reference, small, torch.float64)
    return {
        "ok": ok,
        "names": [(n, tuple(t.shape)) for n, t in theirs.items()],
        "heatmaps": maps[:, :, ::FIXTURE_STRIDE, ::FIXTURE_STRIDE].numpy(),
        "scale": maps.abs().max().item(),
        "official": official,
        "reference": reference,
    }


def check_onnx(preset: str, result: dict, folder: Path) -> bool:
    """``ldnet weights import`` -> ``ldnet export onnx`` -> ONNX Runtime, for both files."""
    from ldnet.cli import main as ldnet
    from ldnet.inference.backends import onnx_session

    reference, ok = result["reference"].float(), True
    crops = {1: fixed_input(1, INPUT_SEED).float(), 3: fixed_input(3, INPUT_SEED + 1).float()}
    expected = {batch: heatmaps(reference, x, torch.float32) for batch, x in crops.items()}
    for name, path in save_official(result["official"], folder / f"{preset}-onnx").items():
        imported = path.with_suffix(".pt")
        exported = path.with_suffix(".onnx")
        commands = (
            ["weights", "import", str(path), "--model", preset, "--input", "256x192"]
            + ["--output", str(imported)],
            ["export", "onnx", "--weights", str(imported), "--output", str(exported)]
            + ["--no-check"],
        )
        for command in commands:
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                code = ldnet(command)
            print(f"  $ ldnet {' '.join(command)}\n    {output.getvalue().strip()}")
            if code != 0:
                return False
        session = onnx_session(exported)
        for batch, x in crops.items():
            (maps,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            scale = expected[batch].abs().max().item()
            relative = np.abs(maps - expected[batch].numpy()).max() / scale
            ok &= relative <= ONNX_TOLERANCE
            print(
                f"    ONNX Runtime, {name}, batch {batch}: max |onnx - official| = "
                f"{relative:.3g} of the scale {scale:.4g} (<= {ONNX_TOLERANCE:g})"
            )
    return ok


def write_fixture(results: dict[str, dict], fixtures: Path) -> list[Path]:
    from ldnet.files import atomic_path

    fixtures.mkdir(parents=True, exist_ok=True)
    written = []
    for stage, order in ORDER_NAMES.items():
        presets = [p for p, case in CASES.items() if case[2] == stage and p in results]
        if len(presets) != 2:
            continue
        w32, w48 = (dict(results[p]["names"]) for p in sorted(presets, key=lambda p: CASES[p][1]))
        # w48 has every tensor of w32, in the same order, and the 1/4 branch's transition out
        # of the 32-channel stem (transition1.0), which w32 lacks (32 -> 32: no transition).
        assert [n for n in w48 if n in w32] == list(w32), "w32's names are not w48's"
        path = fixtures / f"ldnet_official_names_{order}.txt"
        with atomic_path(path) as temporary:
            lines = (
                f"{name} {_shape(w32[name]) if name in w32 else 'none'} {_shape(shape)}\n"
                for name, shape in w48.items()
            )
            temporary.write_text("".join(lines))
        written.append(path)
    path = fixtures / "ldnet_reference_heatmaps.npz"
    arrays = {}
    for preset, result in results.items():
        arrays[preset] = result["heatmaps"]
        arrays[f"{preset}_scale"] = np.float64(result["scale"])
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        np.savez_compressed(
            file,
            **arrays,
            size=np.array(FIXTURE_SIZE),
            stride=FIXTURE_STRIDE,
            weight_seed=WEIGHT_SEED,
            input_seed=FIXTURE_INPUT_SEED,
            temperature=34.0,
        )
    written.append(path)
    return written


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ldnet-repo", required=True, type=Path, metavar="DIR")
    parser.add_argument("--models", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--onnx", action="store_true", help="also import -> export -> ORT")
    parser.add_argument("--onnx-model", choices=list(CASES), default="ldnet_w32")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, metavar="DIR")
    parser.add_argument("--no-fixture", action="store_true", help="check only, write nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

    module = load_official(args.ldnet_repo)
    results, ok = {}, True
    with tempfile.TemporaryDirectory() as folder:
        for preset in args.models:
            results[preset] = check_preset(module, args.ldnet_repo, preset, Path(folder))
            ok &= results[preset]["ok"]
        if args.onnx:
            if args.onnx_model not in results:
                parser.error(f"--onnx-model {args.onnx_model} is not among --models")
            print(f"{args.onnx_model}: import -> export onnx -> ONNX Runtime")
            ok &= check_onnx(args.onnx_model, results[args.onnx_model], Path(folder))
    if not args.no_fixture:
        if set(results) != set(CASES):
            print("fixture not written: it needs every preset (no --models)")
        else:
            for path in write_fixture(results, args.fixtures):
                print(f"wrote {path}")
    print("all checks hold" if ok else "A CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
