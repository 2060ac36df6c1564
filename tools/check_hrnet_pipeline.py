"""Run HRNet's own test pipeline on real COCO val2017 people and write what it predicts.

    git --git-dir=<mirror of leoxiaobin/deep-high-resolution-net.pytorch> archive HEAD \\
        | tar -x -C /tmp/hrnet-ref
    .venv/bin/python tools/check_hrnet_pipeline.py --hrnet-repo /tmp/hrnet-ref

The reference's code is loaded at run time from ``--hrnet-repo`` (never copied here):
``lib/utils/transforms.py`` (``get_affine_transform``, ``flip_back``, ``transform_preds``),
``lib/core/inference.py`` (``get_final_preds``) and, out of ``lib/dataset/coco.py``, the
method ``_xywh2cs`` (box -> centre/scale: aspect fix, x1.25, pixel_std 200) and the COCO
``flip_pairs``. The steps of ``tools/test.py`` / ``lib/core/function.py::validate`` that live
inside those scripts (read the image as RGB, ``cv2.warpAffine`` of the crop, ToTensor +
Normalize, the flip test with ``TEST.SHIFT_HEATMAP``) are restated below, step for step.
The network is ours, ``hrnet_w32`` (the same function as HRNet's W32, proven by the lineage
tests), with the seeded weights of ``tests/lineage_weights.py``.

It writes ``tests/fixtures/hrnet_pipeline_keypoints.json`` (the people, their boxes, the
reference keypoints and scores), which ``tests/test_hrnet_convention.py`` compares with
``ldnet predict`` on a checkpoint recorded in the ``"hrnet"`` convention, and prints how far
ldnet's own path (``PoseEstimator``, in process) is from the reference, and how far each
heatmap's maximum is from a tie (random weights give flat-ish heatmaps).

Official LDNet weights (the LDNet release is a fork of HRNet's code: its test pipeline is
HRNet's, the same files):

    .venv/bin/python tools/check_hrnet_pipeline.py --hrnet-repo /tmp/hrnet-ref \
        --model ldnet_w32 --ldnet-repo /tmp/ldnet-ref/LDNet_Code

The network of HRNet's pipeline is then the official LDNet model itself (loaded from
``--ldnet-repo`` as ``tools/check_ldnet_reference.py`` does, with the seeded weights of
``tests/lineage_weights.py::seeded_ldnet_weights``); the weights are saved as the official
training code saves them (``final_state.pth``, a bare state dict; ``checkpoint.pth``,
DataParallel's ``module.`` prefix), and each goes through ``ldnet weights import`` into
``ldnet predict`` (with the ground-truth boxes as detections), and once in memory
(``--weights final_state.pth --model ldnet_w32 --input 256x192``). It writes
``tests/fixtures/ldnet_pipeline_keypoints.json`` (``tests/test_lineage_ldnet.py`` runs the
same import and prediction against it). Must hold: within 0.05 px of HRNet's pipeline on
every joint clear of a tie.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ("000000000139.jpg", "000000151938.jpg", "000000311002.jpg")
INPUT_SIZE = (256, 192)  # (height, width), the COCO w32_256x192 experiment
# tools/test.py: transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# A decision this far from a tie cannot flip between two float32 runs of the network (their
# heatmaps differ by ~1e-4 at most; measured and printed below).
CLEAR_MARGIN = 1e-3
LDNET_PRESETS = ("ldnet_w32", "ldnet_w48", "ldnet_w32_ld3", "ldnet_w48_ld3")


# -- the reference's code, loaded from the user's checkout --------------------------------
def _load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_reference(hrnet_repo: Path) -> SimpleNamespace:
    """HRNet's transforms and inference modules, and two pieces of its COCO dataset class."""
    lib = hrnet_repo / "lib"
    files = {
        "transforms": lib / "utils" / "transforms.py",
        "inference": lib / "core" / "inference.py",
        "coco": lib / "dataset" / "coco.py",
    }
    for path in files.values():
        if not path.is_file():
            raise SystemExit(f"{hrnet_repo}: no {path.relative_to(hrnet_repo)} (not an export "
                             "of leoxiaobin/deep-high-resolution-net.pytorch)")  # fmt: skip
    # inference.py does `from utils.transforms import transform_preds`: give it that module
    # under that name without putting the checkout on sys.path.
    sys.modules.setdefault("utils", types.ModuleType("utils"))
    transforms = _load_module("utils.transforms", files["transforms"])
    inference = _load_module("hrnet_reference_inference", files["inference"])
    coco_class = _class_def(files["coco"], "COCODataset")
    namespace = {"np": np}
    method = next(node for node in coco_class.body if getattr(node, "name", None) == "_xywh2cs")
    exec(compile(ast.Module([method], []), str(files["coco"]), "exec"), namespace)
    flip_pairs = _self_assignment(coco_class, "flip_pairs")
    pixel_std = _self_assignment(coco_class, "pixel_std")
    height, width = INPUT_SIZE
    # COCODataset.__init__: self.aspect_ratio = self.image_width * 1.0 / self.image_height
    dataset = SimpleNamespace(aspect_ratio=width * 1.0 / height, pixel_std=pixel_std)
    return SimpleNamespace(
        get_affine_transform=transforms.get_affine_transform,
        flip_back=transforms.flip_back,
        get_final_preds=inference.get_final_preds,
        box_to_center_scale=lambda box: namespace["_xywh2cs"](dataset, *box),
        flip_pairs=flip_pairs,
        sha256={key: hashlib.sha256(path.read_bytes()).hexdigest() for key, path in files.items()},
    )


def _class_def(path: Path, name: str) -> ast.ClassDef:
    tree = ast.parse(path.read_text())
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)


def _self_assignment(cls: ast.ClassDef, attribute: str):
    """The literal value of ``self.<attribute> = <literal>`` in the class's ``__init__``."""
    init = next(node for node in cls.body if getattr(node, "name", None) == "__init__")
    for node in ast.walk(init):
        if isinstance(node, ast.Assign):
            target = node.targets[0]
            if isinstance(target, ast.Attribute) and target.attr == attribute:
                return ast.literal_eval(node.value)
    raise SystemExit(f"COCODataset.__init__ sets no literal self.{attribute}")


# -- the people ----------------------------------------------------------------------------
def coco_people(coco_root: Path, file_names, limit: int) -> list[dict]:
    """Labelled, non-crowd people of the named val2017 images, with their ground-truth box."""
    annotations = json.loads((coco_root / "annotations/person_keypoints_val2017.json").read_text())
    images = {image["file_name"]: image for image in annotations["images"]}
    people = []
    for file_name in file_names:
        image = images[file_name]
        for entry in annotations["annotations"]:
            labelled = entry["num_keypoints"] > 0 and entry["area"] > 0
            if entry["image_id"] == image["id"] and not entry["iscrowd"] and labelled:
                people.append(
                    {"file_name": file_name, "image_id": image["id"], "bbox": entry["bbox"]}
                )
    return people[:limit]


# -- HRNet's test pipeline -------------------------------------------------------------------
def hrnet_pipeline(reference, model, image_rgb: np.ndarray, boxes) -> dict:
    """JointsDataset.__getitem__ (test mode) + validate() + get_final_preds, for one image."""
    height, width = INPUT_SIZE
    image_size = np.array([width, height])  # HRNet's IMAGE_SIZE is (width, height)
    centers, scales, crops = [], [], []
    for box in boxes:
        # _load_coco_person_detection_results: center, scale = self._box2cs(box)
        center, scale = reference.box_to_center_scale(box)
        trans = reference.get_affine_transform(center, scale, 0, image_size)
        crop = cv2.warpAffine(
            image_rgb, trans, (int(image_size[0]), int(image_size[1])), flags=cv2.INTER_LINEAR
        )
        # transforms.ToTensor() then transforms.Normalize(mean, std)
        tensor = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
        tensor = (tensor - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        centers.append(center)
        scales.append(scale)
        crops.append(tensor)
    inputs = torch.stack(crops)
    with torch.no_grad():
        output = model(inputs)
        # validate(): TEST.FLIP_TEST, flip_back, TEST.SHIFT_HEATMAP, average
        output_flipped = model(inputs.flip(3))
        output_flipped = reference.flip_back(output_flipped.numpy(), reference.flip_pairs)
        output_flipped = torch.from_numpy(output_flipped.copy())
        output_flipped[:, :, :, 1:] = output_flipped.clone()[:, :, :, 0:-1]
        output = (output + output_flipped) * 0.5
    config = SimpleNamespace(TEST=SimpleNamespace(POST_PROCESS=True))
    heatmaps = output.clone().numpy()
    preds, maxvals = reference.get_final_preds(
        config, heatmaps, np.stack(centers), np.stack(scales)
    )
    return {
        "keypoints": preds[:, :, :2],
        "scores": maxvals[:, :, 0],
        "heatmaps": heatmaps,
    }


def decision_margins(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per joint (N, K): how far each decision of ``get_final_preds`` is from flipping, and
    whether the joint exercises the whole path (positive maximum, inside the refined area).

    The decisions: which pixel is the maximum (its gap to the runner-up), whether it is
    positive (a non-positive maximum gives the crop corner; distance |max| from 0), and the
    signs of the quarter offset (the |difference| of the neighbours). Random weights give
    flat-ish heatmaps, so some decisions are near ties; where a margin is below the two
    pipelines' numeric noise (~1e-4 here) the comparison says nothing about that joint.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n * k, h * w).astype(np.float64)
    top2 = np.sort(flat, axis=1)[:, -2:]
    margin = np.minimum(top2[:, 1] - top2[:, 0], np.abs(top2[:, 1]))
    index = flat.argmax(axis=1)
    x, y, rows = index % w, index // w, np.arange(n * k)
    refined = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1) & (top2[:, 1] > 0)
    xc, yc = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
    maps = flat.reshape(n * k, h, w)
    dx = np.abs(maps[rows, yc, xc + 1] - maps[rows, yc, xc - 1])
    dy = np.abs(maps[rows, yc + 1, xc] - maps[rows, yc - 1, xc])
    margin = np.where(refined, np.minimum(margin, np.minimum(dx, dy)), margin)
    return margin.reshape(n, k), refined.reshape(n, k)


# -- ldnet's path on the same people ---------------------------------------------------------
def ldnet_path(
    state: dict,
    images: dict,
    people: list[dict],
    convention: str = "hrnet",
    model_name: str = "hrnet_w32",
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 3) and flip-tested heatmaps of ``PoseEstimator`` on a record in
    ``convention`` with the MSRA decoder."""
    from ldnet.data.dataset import prepare_crops
    from ldnet.inference import ModelRecord, TorchBackend
    from ldnet.models import build_model
    from ldnet.predict import PoseEstimator

    model = build_model(model_name)
    model.load_state_dict(state)
    model.eval()
    record = ModelRecord(model_name, 17, "coco", INPUT_SIZE, "msra", convention=convention)
    estimator = PoseEstimator(TorchBackend(model), record)
    keypoints, heatmaps = [], []
    for file_name, image in images.items():
        boxes = np.array([p["bbox"] for p in people if p["file_name"] == file_name])
        keypoints.append(estimator(image, boxes).keypoints)
        crops, _, _ = prepare_crops(image, boxes, INPUT_SIZE, record.convention)
        heatmaps.append(estimator.heatmaps(crops))
    return np.concatenate(keypoints), np.concatenate(heatmaps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hrnet-repo", required=True, type=Path, help="export of the reference")
    parser.add_argument("--coco", type=Path, default=REPO.parent / "shared/data/coco-mini")
    parser.add_argument("--images", nargs="+", default=list(DEFAULT_IMAGES))
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="seed of tests/lineage_weights.py")
    parser.add_argument(
        "--model",
        default="hrnet_w32",
        choices=["hrnet_w32", *LDNET_PRESETS],
        help="hrnet_w32 (ours, as HRNet's W32), or an LDNet preset: the official LDNet "
        "model of --ldnet-repo in HRNet's pipeline, its files through ldnet weights import",
    )
    parser.add_argument("--ldnet-repo", type=Path, help="export of NBU-CVMI/LDNet (LDNet_Code)")
    parser.add_argument(
        "--output", type=Path, help="default: tests/fixtures/{hrnet,ldnet}_pipeline_keypoints.json"
    )
    args = parser.parse_args(argv)
    ldnet = args.model != "hrnet_w32"
    if ldnet and args.ldnet_repo is None:
        parser.error(f"--model {args.model} needs --ldnet-repo (the official LDNet code)")
    if args.output is None:
        family = "ldnet" if ldnet else "hrnet"
        args.output = REPO / f"tests/fixtures/{family}_pipeline_keypoints.json"
    torch.set_num_threads(2)

    from ldnet.files import atomic_path
    from ldnet.models import build_model

    lineage = _load_module("lineage_weights", REPO / "tests/lineage_weights.py")
    reference = load_reference(args.hrnet_repo)
    if ldnet:
        official_tool = _load_module(
            "check_ldnet_reference", REPO / "tools/check_ldnet_reference.py"
        )
        official = official_tool.seeded_official_weights(args.model, args.seed)
        module = official_tool.load_official(args.ldnet_repo)
        config = official_tool.official_config(args.ldnet_repo, args.model)
        model = module.get_pose_net(config, is_train=False)  # the official network
        model.load_state_dict(official, strict=True)
        weights = "seeded_ldnet_weights"
    else:
        model = build_model("hrnet_w32")
        state = lineage.seeded_weights(model.state_dict(), args.seed)
        model.load_state_dict(state)
        weights = "seeded_weights"
    model.eval()

    people = coco_people(args.coco, args.images, args.people)
    images_bgr = {}
    for name in dict.fromkeys(p["file_name"] for p in people):
        path = args.coco / "images/val2017" / name
        # JointsDataset: cv2.imread(IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION), COLOR_RGB: true
        images_bgr[name] = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    results = []
    for name, image in images_bgr.items():
        boxes = [np.array(p["bbox"], dtype=np.float64) for p in people if p["file_name"] == name]
        results.append(
            hrnet_pipeline(reference, model, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), boxes)
        )
    reference_points = np.concatenate([r["keypoints"] for r in results])
    reference_scores = np.concatenate([r["scores"] for r in results])
    reference_maps = np.concatenate([r["heatmaps"] for r in results])
    margins, refined = decision_margins(reference_maps)
    network = "the official LDNet model (" + args.model + ")" if ldnet else "hrnet_w32"
    fixture = {
        "what": f"HRNet's own test pipeline (its _xywh2cs, get_affine_transform crop, flip test "
        f"with the one-pixel shift, get_final_preds) with {network} and "
        f"tests/lineage_weights.py::{weights}(seed={args.seed}), on COCO val2017 "
        "ground-truth boxes given as detections; made by tools/check_hrnet_pipeline.py",
        "model": args.model,
        "seed": args.seed,
        "input_size": list(INPUT_SIZE),
        "reference_sha256": reference.sha256,
        "margins": "per joint, the smallest distance of a get_final_preds decision from a tie "
        "(argmax gap, |maximum|, quarter-offset neighbour difference) in the reference heatmaps; "
        "refined: positive maximum inside the quarter-offset area",
        "people": [
            {
                **person,
                "keypoints": np.round(points, 6).tolist(),
                "scores": np.round(scores, 7).tolist(),
                "margins": [float(f"{m:.3g}") for m in margin],
                "refined": flags.tolist(),
            }
            for person, points, scores, margin, flags in zip(
                people, reference_points, reference_scores, margins, refined, strict=True
            )
        ],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output) as temporary:
        temporary.write_text(json.dumps(fixture, indent=1) + "\n")
    clear = margins >= CLEAR_MARGIN
    print(f"{len(people)} people on {len(images_bgr)} images; wrote {args.output}")
    print(
        f"joints: {margins.size}; decisions clear of a tie by >= {CLEAR_MARGIN:g}: "
        f"{int(clear.sum())}, of which {int((clear & refined).sum())} with a positive maximum "
        f"inside the quarter-offset area; smallest margin {margins.min():.2g}"
    )
    if ldnet:
        ok, state = ldnet_files(args, official, fixture, clear)
    else:
        ok = True
    ours, our_maps = ldnet_path(state, images_bgr, people, model_name=args.model)
    scale = np.abs(reference_maps).max()
    map_difference = np.abs(our_maps - reference_maps).max()
    difference = np.abs(ours[..., :2] - reference_points).max()
    score_difference = np.abs(ours[..., 2] - reference_scores).max()
    per_joint = np.abs(ours[..., :2] - reference_points).max(axis=-1)
    print(
        f"flip-tested heatmaps, ldnet vs HRNet: max |difference| {map_difference:.2g} "
        f"(scale {scale:.3g})"
    )
    print(
        "ldnet PoseEstimator (convention hrnet, msra) vs HRNet, max |dx|, |dy|: "
        f"{difference:.2g} px over all joints, {per_joint[clear].max():.2g} px over the clear "
        f"ones; max |score difference| {score_difference:.2g}"
    )
    # The control: the same weights decoded in the wrong (ldnet) convention must miss.
    wrong, _ = ldnet_path(state, images_bgr, people, convention="ldnet", model_name=args.model)
    wrong_difference = np.abs(wrong[..., :2] - reference_points).max(axis=-1)[clear]
    print(
        "control, the same weights in the ldnet convention vs HRNet: max "
        f"{wrong_difference.max():.2g} px, median {np.median(wrong_difference):.2g} px"
    )
    difference = per_joint[clear].max()
    ok &= difference <= 0.05
    print("all checks hold (<= 0.05 px)" if ok else "A CHECK FAILED")
    return 0 if ok else 1


def ldnet_files(args, official: dict, fixture: dict, clear: np.ndarray) -> tuple[bool, dict]:
    """The official weights as the official code saves them -> ``ldnet weights import`` ->
    ``ldnet predict`` (and in memory: ``--weights FILE.pth --model --input``), against the
    fixture's keypoints. Returns whether every path held, and the imported state."""
    import tempfile

    from ldnet.checkpoint import load_checkpoint
    from ldnet.cli import main as ldnet_cli
    from ldnet.lineage.layouts import as_layout

    people = fixture["people"]
    reference = np.array([p["keypoints"] for p in people])
    ok, state = True, None
    with tempfile.TemporaryDirectory(prefix="ldnet-pipeline-") as folder:
        folder = Path(folder)
        images = folder / "images"
        images.mkdir()
        for name in {p["file_name"] for p in people}:
            (images / name).symlink_to((args.coco / "images/val2017" / name).resolve())
        detections = folder / "boxes.json"
        detections.write_text(json.dumps([
            {"image_id": p["image_id"], "category_id": 1, "bbox": p["bbox"], "score": 1.0}
            for p in people
        ]))  # fmt: skip
        runs = []
        for name, wrapped in (("final_state.pth", False), ("checkpoint.pth", True)):
            path = folder / name
            torch.save(
                as_layout(official, "ldnet-official", wrapped),
                path,
                _use_new_zipfile_serialization=False,  # PyTorch 1.4's format
            )
            imported = path.with_suffix(".pt")
            runs.append(
                (
                    f"{name} imported",
                    ["weights", "import", str(path), "--model", args.model, "--input", "256x192"]
                    + ["--output", str(imported)],
                    ["--weights", str(imported)],
                )
            )
        memory = ["--weights", str(folder / "final_state.pth"), "--model", args.model]
        runs.append(("final_state.pth in memory", None, memory + ["--input", "256x192"]))
        for label, import_command, weights in runs:
            if import_command is not None:
                code, out = _cli(ldnet_cli, import_command)
                print(f"$ ldnet {' '.join(import_command)}\n  {out}")
                if code != 0:
                    return False, {}
                if state is None:
                    state = load_checkpoint(import_command[-1])["state_dict"]
            out_dir = folder / f"out-{len(label)}-{label.split('.')[0]}"
            command = ["predict", str(images), *weights, "--detections", str(detections)]
            command += ["--decoder", "msra", "--output", str(out_dir), "--no-overlay"]
            command += ["--quiet", "--threads", "2"]
            code, out = _cli(ldnet_cli, command)
            print(f"$ ldnet {' '.join(command)}")
            if code != 0:
                print(f"  failed: {out}")
                return False, {}
            rows = json.loads((out_dir / "results.json").read_text())
            ours = np.stack([row for _, row in _match_people(people, rows)])
            per_joint = np.abs(ours[..., :2] - reference).max(axis=-1)
            scores = np.abs(ours[..., 2] - np.array([p["scores"] for p in people])).max()
            ok &= len(rows) == len(people) and per_joint[clear].max() <= 0.05
            print(
                f"  {label}: {len(rows)} people; max |dx|, |dy| vs HRNet's pipeline "
                f"{per_joint[clear].max():.2g} px over the clear joints "
                f"({per_joint.max():.2g} over all); max |score difference| {scores:.2g}"
            )
    return ok, state


def _cli(main, command: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = main(command)
    return code, output.getvalue().strip()


def _match_people(fixture_people, rows) -> list[tuple[dict, np.ndarray]]:
    """Pair each reference person with the result row of its image nearest to it."""
    pairs = []
    for person in fixture_people:
        candidates = [
            np.array(row["keypoints"]).reshape(-1, 3)
            for row in rows
            if row["image_id"] == person["image_id"]
        ]
        reference = np.array(person["keypoints"])
        distance = [np.abs(c[:, :2] - reference).max() for c in candidates]
        pairs.append((person, candidates[int(np.argmin(distance))]))
    return pairs


if __name__ == "__main__":
    sys.exit(main())
