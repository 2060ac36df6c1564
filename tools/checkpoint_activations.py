"""What a trained checkpoint's activations do on real crops, the two facts int8 and deployment
depend on.

    python tools/checkpoint_activations.py CHECKPOINT --images DIR [--detections DETS.json]

The crops are cut as `ldnet export onnx --int8 --calibration DIR` cuts them (mirrored ones
included). Printed:

1. Per crop, its largest activation at the stem's and each stage's output against the median
   crop's (the ratio `drop_runaway_crops` compares with RUNAWAY_FACTOR): the largest ratios
   and how many crops int8 calibration leaves out.
2. The kernel attentions: how far they are from uniform (1/K), over every LDConv and crop, and
   how much the heatmaps change when every attention is fixed at 1/K (each LDConv then a
   static convolution with the mean of its bank). Trained at the release's constant
   temperature 34 the attentions barely move.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ldnet.deploy.int8 import (
    RUNAWAY_FACTOR,
    activation_peaks,
    calibration_set,
    runaway_ratios,
)
from ldnet.inference import load_model
from ldnet.models.ldconv import DynamicConv2d, KernelAttention


def runaway_report(model: torch.nn.Module, crops: np.ndarray) -> None:
    ratio = runaway_ratios(activation_peaks(model, crops))
    largest = np.sort(ratio)[::-1][:20]
    print(f"{len(crops)} crops; largest activation against the median crop's (max over stages):")
    print("  largest 20: " + " ".join(f"{value:.1f}" for value in largest))
    left_out = int((ratio > RUNAWAY_FACTOR).sum())
    print(f"  past {RUNAWAY_FACTOR:g}x (left out of int8 calibration): {left_out}")


def attention_report(model: torch.nn.Module, crops: torch.Tensor) -> None:
    layers = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    if not layers:
        print("no LDConv in this network")
        return
    spreads: list[float] = []

    def record(module: KernelAttention, args, attention: torch.Tensor) -> None:
        spreads.append((attention - 1.0 / attention.shape[1]).abs().max().item())

    hooks = [layer.attention.register_forward_hook(record) for layer in layers]
    with torch.inference_mode():
        learned = model(crops)
    for hook in hooks:
        hook.remove()
    print(
        f"kernel attentions ({len(layers)} LDConvs): largest |a - 1/K| {max(spreads):.2e}, "
        f"median layer {float(np.median(spreads)):.2e}"
    )

    def uniform(module: KernelAttention, args, attention: torch.Tensor) -> torch.Tensor:
        return torch.full_like(attention, 1.0 / attention.shape[1])

    hooks = [layer.attention.register_forward_hook(uniform) for layer in layers]
    with torch.inference_mode():
        fixed = model(crops)
    for hook in hooks:
        hook.remove()
    peak = learned.abs().max().item()
    kept = (fixed.flatten(2).argmax(-1) == learned.flatten(2).argmax(-1)).float().mean().item()
    print(
        f"every attention fixed at 1/K: heatmaps change by at most "
        f"{(fixed - learned).abs().max().item():.2e} (float peak {peak:.3g}), "
        f"{100 * kept:.1f} % of the peaks at the same pixel"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", required=True, help="folder of images, as --calibration")
    parser.add_argument("--detections", help="COCO detection results: person boxes")
    args = parser.parse_args()
    model, record = load_model(args.checkpoint)
    crops = calibration_set(args.images, record, args.detections).crops
    runaway_report(model, crops)
    attention_report(model, torch.from_numpy(crops))


if __name__ == "__main__":
    main()
