"""Parity of `hrnet_w32` with the HRNet reference's own model file, through the importer.

    git --git-dir=<mirror of leoxiaobin/deep-high-resolution-net.pytorch> archive HEAD \\
        | tar -x -C /tmp/hrnet-ref
    python tools/check_hrnet_reference.py --hrnet-repo /tmp/hrnet-ref

The reference's ``lib/models/pose_hrnet.py`` is loaded from ``--hrnet-repo`` as it runs (it
is never copied here) and built as W32 from its
``experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml``. It gets seeded random weights and
random BatchNorm statistics (``tests/lineage_weights.py``, generated in our tensor order and
named as the reference names them), runs a fixed input, and its weights are saved in the
official, MMPose 0.x, MMPose 1.x and DDP layouts. Each file is imported by
``ldnet.lineage.importer`` and our heatmaps are compared with the reference's, in float32 (as
it runs) and float64 (what the committed fixture and the CI test use: float64 sums agree
across CPUs where float32 ones differ in the last bits).

It writes the fixture the CI test compares against, with no reference code:
``tests/fixtures/hrnet_w32_official_names.txt`` (the reference's tensor names and shapes, in
its order) and ``tests/fixtures/hrnet_w32_reference_heatmaps.npz`` (a strided subsample of the
reference's float64 heatmaps, and the seeds). Exit 1 if any difference is over the tolerance.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from ldnet.checkpoint import atomic_save
from ldnet.files import atomic_path
from ldnet.lineage.hrnet_names import name_map
from ldnet.lineage.importer import import_checkpoint
from ldnet.lineage.layouts import as_layout
from ldnet.models import build_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CONFIG = Path("experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml")
INPUT_SIZE = (256, 192)
WEIGHT_SEED, INPUT_SEED = 0, 1
STRIDE = 2  # heatmap subsample kept in the fixture: every other row and column
TOLERANCE = 1e-5
# The four files of the must-hold check: (file name, layout, DDP-wrapped).
LAYOUTS = (
    ("official.pth", "hrnet", False),
    ("mmpose0.pth", "mmpose-0.x", False),
    ("mmpose1.pth", "mmpose-1.x", False),
    ("ddp.pth", "hrnet", True),
)


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # the reference's `is '*'` comparison warns on import
        warnings.simplefilter("ignore", SyntaxWarning)
        spec.loader.exec_module(module)
    return module


def seeded_official_weights(seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """The seeded weights, in our order, named as the reference names them."""
    lineage = load_module("lineage_weights", ROOT / "tests" / "lineage_weights.py")
    template = build_model("hrnet_w32", 17).state_dict()
    mapping = name_map(template)
    weights = lineage.seeded_weights(template, seed)
    return {mapping[ours]: tensor for ours, tensor in weights.items()}


def fixed_input(seed: int = INPUT_SEED) -> torch.Tensor:
    """A deterministic crop batch (normal noise, as a normalised image would be)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return torch.from_numpy(rng.standard_normal((1, 3, *INPUT_SIZE)))


def mmpose1_meta() -> dict:
    """An mmengine-like ``meta``: numpy arrays, scalars and dtypes, as MMPose 1.x files hold."""
    return {
        "dataset_meta": {
            "dataset_name": "coco",
            "num_keypoints": 17,
            "sigmas": np.linspace(0.025, 0.107, 17, dtype=np.float32),
            "flip_indices": [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15],
            "keypoint_colors": np.full((17, 3), 51, dtype=np.uint8),
        },
        "seed": np.int64(WEIGHT_SEED),
        "epoch": 210,
        "mmengine_version": "0.10.3",
    }


def heatmaps(model: torch.nn.Module, crops: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    model = model.to(dtype).eval()
    with torch.no_grad():
        return model(crops.to(dtype))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hrnet-repo", required=True, type=Path, metavar="DIR")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, metavar="DIR")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

    source = args.hrnet_repo / "lib" / "models" / "pose_hrnet.py"
    if not source.is_file():
        parser.error(f"{source}: not found (--hrnet-repo is a checkout of the HRNet reference)")
    config = yaml.safe_load((args.hrnet_repo / CONFIG).read_text())
    reference = load_module("pose_hrnet", source).PoseHighResolutionNet(config)
    official = seeded_official_weights()
    reference.load_state_dict(official, strict=True)
    crops = fixed_input()
    expected = {dtype: heatmaps(reference, crops, dtype) for dtype in (torch.float32, torch.double)}

    worst = 0.0
    ours = build_model("hrnet_w32", 17)
    with tempfile.TemporaryDirectory() as folder:
        for name, layout, wrapped in LAYOUTS:
            contents = as_layout(official, layout, wrapped)
            if layout == "mmpose-1.x":
                contents["meta"] = mmpose1_meta()
            path = Path(folder) / name
            # MMPose publishes in the legacy (non-zip) format; the others in the zip one.
            if layout == "mmpose-1.x":
                torch.save(contents, path, _use_new_zipfile_serialization=False)
            else:
                atomic_save(contents, path)
            state, record, provenance = import_checkpoint(
                path, model="hrnet_w32", input_size=INPUT_SIZE
            )
            ours.load_state_dict(state, strict=True)
            for dtype, theirs in expected.items():
                difference = (heatmaps(ours, crops, dtype) - theirs).abs().max().item()
                worst = max(worst, difference)
                print(
                    f"{name:13s} {provenance['layout']:12s} {str(dtype):14s} "
                    f"max |ours - reference| = {difference:.3g}"
                )
    print(f"heatmaps {tuple(expected[torch.float32].shape)}, worst {worst:.3g} (<= {TOLERANCE})")

    args.fixtures.mkdir(parents=True, exist_ok=True)
    names = args.fixtures / "hrnet_w32_official_names.txt"
    with atomic_path(names) as temporary:
        temporary.write_text(
            "".join(
                f"{name} {'x'.join(map(str, tensor.shape)) or '-'}\n"
                for name, tensor in reference.state_dict().items()
            )
        )
    samples = args.fixtures / "hrnet_w32_reference_heatmaps.npz"
    with atomic_path(samples) as temporary, temporary.open("wb") as file:
        np.savez_compressed(
            file,
            heatmaps=expected[torch.float64][:, :, ::STRIDE, ::STRIDE].numpy(),
            stride=STRIDE,
            weight_seed=WEIGHT_SEED,
            input_seed=INPUT_SEED,
        )
    print(f"wrote {names} and {samples}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
