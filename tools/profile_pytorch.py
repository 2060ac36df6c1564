"""Where PyTorch eager spends a preset's time: operator time by kind, from its own profiler.

    python tools/profile_pytorch.py --models ldnet_w32 hrnet_w32 [--batch 1 8]
        [--input 256x192] [--threads 2] [--runs 10]

Each model runs as `ldnet bench` times it (eval mode, BatchNorm folded, channels-last, LDConv
"auto"). Time inside an LDConv is split into its kernel attention, the kernel mixing and the
per-sample convolution; static convolutions by kind (dense k x k, depthwise, 1x1), the rest
by operator. The companion of tools/profile_onnx.py. The profiler adds a little per operator,
so compare shares, not milliseconds, with `ldnet bench`; the memory-bound kernel mixing's
share moves most between runs on a shared machine (27-44 % at batch 8 in three runs).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from contextlib import contextmanager

import torch
from profile_onnx import conv_kind, parse_arguments, print_shares  # this folder's companion
from torch.profiler import ProfilerActivity, profile, record_function

# The one profiler range the tool wraps around each LDConv call (not in the package: no cost
# there); what runs inside is told apart by operator and shape.
LDCONV = "LDConv"


@contextmanager
def labelled_ldconv():
    """Each LDConv forward inside a profiler range named LDCONV."""
    from ldnet.models.ldconv import DynamicConv2d

    original = DynamicConv2d.forward

    def forward(self, x):
        with record_function(LDCONV):
            return original(self, x)

    DynamicConv2d.forward = forward
    try:
        yield
    finally:
        DynamicConv2d.forward = original


CONVOLUTIONS = ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::conv2d")


def ldconv_part(event) -> str:
    """Which part of an LDConv an operator inside one is: the kernel attention (pooling, two
    1x1 layers as matrix products, softmax), the mixing of the K kernels (a (B, K) x (K, n)
    product), the per-sample convolution or matrix product, or the rest (layout copies)."""
    name = event.name.removeprefix("aten::")
    shapes = event.input_shapes
    if name == "mm" and len(shapes) > 1 and len(shapes[1]) == 2 and shapes[1][0] <= 8:
        return "LDConv kernel mixing"
    if name in ("mm", "addmm", "mean", "_softmax", "softmax", "relu_", "relu", "div", "div_"):
        return "LDConv attention"
    if name in ("bmm", "baddbmm"):
        return "LDConv per-sample matmul (patches)"
    if event.name in CONVOLUTIONS:
        return "LDConv per-sample conv"
    return f"LDConv {name}"


def category(event) -> str:
    """An operator's kind: inside an LDConv by part, else convolutions by kind, else its name."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == LDCONV:
            return ldconv_part(event)
        parent = parent.cpu_parent
    if event.name in CONVOLUTIONS and len(event.input_shapes) > 1 and event.input_shapes[1]:
        return conv_kind(event.input_shapes[1])
    return event.name.removeprefix("aten::")


def profile_model(name: str, batch: int, input_size, threads: int, runs: int) -> None:
    from ldnet.bench.models import prepare_pytorch_model
    from ldnet.bench.timing import seconds_per_call

    torch.set_num_threads(threads)
    model = prepare_pytorch_model(name, 17, True, True)
    images = torch.randn(batch, 3, *input_size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), labelled_ldconv():
        for _ in range(3):
            model(images)
        # The same runs without the profiler, for scale: operator time leaves out Python
        # between operators and adds the profiler's own cost, most on small operators.
        unprofiled_s = [seconds_per_call(lambda: model(images), 1) for _ in range(runs)]
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as recorded:
            for _ in range(runs):
                model(images)
    times: dict[str, float] = defaultdict(float)
    for event in recorded.events():
        if event.self_cpu_time_total > 0 and not event.name.startswith(LDCONV):
            times[category(event)] += event.self_cpu_time_total
    unprofiled_ms = statistics.median(unprofiled_s) * 1e3
    title = f"{name}, batch {batch} ({unprofiled_ms:.1f} ms a run unprofiled)"
    print_shares(title, times, runs)


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0])
    for name in args.models:
        for batch in args.batch:
            profile_model(name, batch, args.input_size, args.threads, args.runs)


if __name__ == "__main__":
    main()
