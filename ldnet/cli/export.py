"""`ldnet export onnx (--weights CKPT | --model NAME) --output FILE`."""

from __future__ import annotations

from pathlib import Path

from ldnet.datasets import DATASETS

from .common import CLIError, input_size, model_choice, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a network to ONNX (dynamic batch, heatmaps out)",
        description=(
            "Write the network as ONNX: input `images` (B, 3, H, W) float32, RGB crops "
            "normalised with ImageNet mean/std; output `heatmaps` (B, J, H/4, W/4). The batch "
            "dimension is dynamic. Decoding (argmax, sub-pixel refinement, map back to the "
            "image) and the flip test stay outside the graph; `ldnet predict --weights "
            "FILE.onnx` does them. The weights' record (model, joint set, input size, codec "
            "name, sigma, heatmap size, coordinate convention) is stored in the file's "
            "metadata (ldnet.*)."
        ),
    )
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser("onnx", help="ONNX for ONNX Runtime and other runtimes")
    source = onnx.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="checkpoint (.pt) from `ldnet train`")
    model_choice(source, help="a preset with random weights (for speed tests)")
    onnx.add_argument("--output", required=True, type=Path, metavar="FILE")
    onnx.add_argument("--dataset", choices=list(DATASETS), help="with --model")
    onnx.add_argument(
        "--input", type=input_size, metavar="HxW", help="with --model (default 256x192)"
    )
    onnx.add_argument("--opset", type=positive_int, default=17)
    onnx.add_argument(
        "--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch parity check"
    )
    onnx.set_defaults(run=run)


def parity(model, path: Path, input_size: tuple[int, int], batches=(1, 5)) -> dict[int, float]:
    """Max abs difference of ONNX Runtime's heatmaps from PyTorch's (eval mode, same random
    input), per batch size."""
    import numpy as np
    import torch

    from ldnet.inference.backends import onnx_session

    session = onnx_session(path)
    generator = torch.Generator().manual_seed(0)
    differences = {}
    for batch in batches:
        images = torch.randn(batch, 3, *input_size, generator=generator)
        with torch.inference_mode():
            expected = model.eval()(images).numpy()
        (heatmaps,) = session.run(None, {"images": images.numpy()})
        differences[batch] = float(np.abs(heatmaps - expected).max())
    return differences


def run(args) -> int:
    from ldnet.datasets import dataset_kind
    from ldnet.export import export_onnx
    from ldnet.inference import ModelRecord, load_model
    from ldnet.lineage.download import resolve_weights
    from ldnet.models import build_model

    if args.weights is not None:
        args.weights = resolve_weights(args.weights)  # a path, or a catalogue name fetched once
        if args.input is not None:
            raise CLIError("--input goes with --model; a checkpoint names its input size")
        model, info = load_model(args.weights, args.dataset)
    else:
        # Untrained weights (for speed and deployment trials): the reference recipe's codec.
        kind = dataset_kind(args.dataset or "coco")
        info = ModelRecord(args.model, kind.num_joints, kind.name, args.input or kind.input_size)
        model = build_model(args.model, kind.num_joints).eval()
    if not args.output.parent.is_dir():
        raise CLIError(f"{args.output}: folder {args.output.parent} does not exist")
    path = export_onnx(model, args.output, info.input_size, args.opset, info.to_metadata())
    height, width = info.input_size
    print(
        f"wrote {path}: {info.model}, {info.dataset} ({info.num_joints} joints), "
        f"input {height}x{width}, {info.codec} codec (sigma {info.sigma:g}), dynamic batch, "
        f"opset {args.opset}"
    )
    if not args.no_check:
        for batch, difference in parity(model, path, info.input_size).items():
            print(f"parity with PyTorch, batch {batch}: max abs difference {difference:.2e}")
    return 0
