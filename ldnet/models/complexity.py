"""Parameters and multiply-accumulates (MACs) of a model, in two conventions.

**True** counts: every parameter, and the MACs that PyTorch's own flop counter
(``torch.utils.flop_counter``: convolutions and matrix products, FLOPs = 2 x MACs) sees in one
forward pass of one image. For an LDConv that is its mixed kernel's convolution plus the
mixing of the bank (attention x bank, one matrix product), as the official ``Dynamic_conv2d``
executes it. Normalisation, activations, additions and resampling are not counted.

**The paper's** counting: what HRNet's ``get_model_summary`` (``lib/utils/utils.py`` of the
HRNet reference code, unchanged in the LDNet release) reports for one image, and what the
LDNet paper's Params / GFLOPs columns are. Its rules, as they apply:

* a forward hook on every module except the model itself, ``nn.Sequential`` and
  ``nn.ModuleList``, so a module counts once per call;
* a module counts only if its class name contains "Conv" (case-sensitive), "BatchNorm" or
  "Linear": then all its parameters (recursively) count;
* a counted "Conv" module with a ``weight`` adds ``weight.numel() x output H x W`` MACs (no
  bias, no batch); an ``nn.Linear`` adds ``output.numel() x in_features``;
* "GFLOPs" = total MACs / 1024**3.

The official LDConv class is ``Dynamic_conv2d`` (lower-case "conv") and its attention is
``attention2d``: neither counts, so **the kernel banks and the dynamic convolutions' MACs are
missing from the paper's figures**, while the attention's two ``nn.Conv2d`` (hooked on their
own) do count. Our classes have other names (``DynamicConv2d`` contains "Conv"), so the name
test is applied to the name of the official class each of ours stands for
(``OFFICIAL_CLASS_NAMES``); everything else keeps its own (PyTorch's) class name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ldnet.models.ldconv import DynamicConv2d, KernelAttention

# Our module classes -> the class of the official LDNet code that each one is.
OFFICIAL_CLASS_NAMES: dict[type[nn.Module], str] = {
    DynamicConv2d: "Dynamic_conv2d",
    KernelAttention: "attention2d",
}
# HRNet's summary divides its multiply-adds by 1024**3 and calls them "GFLOPs".
SUMMARY_GFLOPS_DIVISOR = 1024**3


@dataclass(frozen=True)
class PartCost:
    name: str
    params: int
    macs: int


@dataclass(frozen=True)
class Complexity:
    """True counts: all parameters (``bank_params`` of them in LDConv kernel banks), torch's
    flop counter's MACs, and both per part of the network."""

    params: int
    macs: int
    parts: tuple[PartCost, ...]
    bank_params: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SummaryCount:
    """The paper's counting (HRNet's ``get_model_summary``): parameters and multiply-adds of
    the modules it counts, in total and per part of the network."""

    params: int
    macs: int
    parts: tuple[PartCost, ...]

    @property
    def gflops(self) -> float:
        """What the summary prints as "GFLOPs": its multiply-adds / 1024**3."""
        return self.macs / SUMMARY_GFLOPS_DIVISOR

    def to_dict(self) -> dict:
        return asdict(self) | {"gflops": self.gflops}


def part_names(model: nn.Module) -> dict[str, str]:
    """Top-level children of a PoseNet -> readable part names (stages are numbered as in
    HRNet: the first parallel stage is "stage2")."""
    names = {}
    for child_name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            for index, _ in enumerate(child):
                names[f"{child_name}.{index}"] = f"stage{index + 2}"
        else:
            names[child_name] = child_name
    if "head" in names:
        head = model.get_submodule("head")
        names["head"] = "krm" if type(head).__name__ == "RefinedHead" else "head"
    return names


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_bank_params(module: nn.Module) -> int:
    """Parameters in the kernel banks of ``module``'s dynamic convolutions."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, DynamicConv2d))


def summary_class_name(module: nn.Module) -> str:
    """The class name HRNet's summary would see for ``module`` on the official model."""
    return OFFICIAL_CLASS_NAMES.get(type(module), type(module).__name__)


def summary_counts(name: str) -> bool:
    """HRNet's summary counts a module iff its class name contains one of these."""
    return "Conv" in name or "BatchNorm" in name or "Linear" in name


def _summary_hooked(module: nn.Module, model: nn.Module) -> bool:
    return module is not model and not isinstance(module, nn.Sequential | nn.ModuleList)


def _check_no_nested_counting(model: nn.Module) -> None:
    """On the official model no counted module contains another; were one of ours to, the
    summary's rules would count the inner parameters twice, which is not what the paper's
    figures are. Refuse rather than print a wrong figure."""
    for path, module in model.named_modules():
        if not (_summary_hooked(module, model) and summary_counts(summary_class_name(module))):
            continue
        for inner_path, inner in module.named_modules():
            if inner is not module and summary_counts(summary_class_name(inner)):
                raise ValueError(
                    f"{path} ({type(module).__name__}) and its child {inner_path} would both "
                    "be counted by HRNet's summary rules; map the outer class in "
                    "OFFICIAL_CLASS_NAMES"
                )


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def count(model: nn.Module, input_size: tuple[int, int]) -> tuple[Complexity, SummaryCount]:
    """Both conventions for one image of ``input_size`` (H, W), from one forward pass.

    The model may live on the meta device (shapes only: the counts are the same and the pass
    costs no arithmetic)."""
    _check_no_nested_counting(model)
    names = part_names(model)
    paths = {module: path for path, module in model.named_modules()}
    summary_params: dict[str, int] = {}
    summary_macs: dict[str, int] = {}

    def part_of(module: nn.Module) -> str:
        path = paths[module]
        for prefix, part in names.items():
            if path == prefix or path.startswith(prefix + "."):
                return part
        return "other"

    def hook(module: nn.Module, inputs, output) -> None:
        name = summary_class_name(module)
        if not summary_counts(name):
            return
        part = part_of(module)
        summary_params[part] = summary_params.get(part, 0) + count_params(module)
        macs = 0
        if "Conv" in name and hasattr(module, "weight"):
            macs = module.weight.numel() * output.shape[2:].numel()
        elif isinstance(module, nn.Linear):
            macs = output.numel() * inputs[0].shape[1]
        summary_macs[part] = summary_macs.get(part, 0) + macs

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if _summary_hooked(module, model)
    ]
    # The official attention calls its two 1x1 convolutions, which the summary hooks count;
    # ours runs the same arithmetic as matrix products in eager, so call the modules here.
    attentions = {
        module: module.as_matrix_products
        for module in model.modules()
        if isinstance(module, KernelAttention)
    }
    for attention in attentions:
        attention.as_matrix_products = False
    was_training = model.training
    model.eval()
    image = torch.zeros(1, 3, *input_size, device=_device(model))
    counter = FlopCounterMode(display=False, depth=None)
    try:
        with counter:
            model(image)
    finally:
        model.train(was_training)
        for attention, as_matrix_products in attentions.items():
            attention.as_matrix_products = as_matrix_products
        for handle in handles:
            handle.remove()

    flops_by_module = counter.get_flop_counts()
    root = type(model).__name__
    true_parts = []
    for path, part in names.items():
        flops = sum(flops_by_module.get(f"{root}.{path}", {}).values())
        true_parts.append(PartCost(part, count_params(model.get_submodule(path)), flops // 2))
    total_flops = sum(flops_by_module.get("Global", {}).values())
    true = Complexity(
        count_params(model), total_flops // 2, tuple(true_parts), count_bank_params(model)
    )
    part_order = [*names.values(), "other"]
    summary = SummaryCount(
        sum(summary_params.values()),
        sum(summary_macs.values()),
        tuple(
            PartCost(part, summary_params.get(part, 0), summary_macs.get(part, 0))
            for part in part_order
            if part != "other" or part in summary_params
        ),
    )
    return true, summary


def measure(model: nn.Module, input_size: tuple[int, int]) -> Complexity:
    """True parameters and MACs of ``model`` for one image of ``input_size`` (H, W)."""
    return count(model, input_size)[0]


def summary(model: nn.Module, input_size: tuple[int, int]) -> SummaryCount:
    """The paper's counting (HRNet's ``get_model_summary``) of ``model`` for one image."""
    return count(model, input_size)[1]


@lru_cache(maxsize=64)
def _count_spec(spec, input_size: tuple[int, int]) -> tuple[Complexity, SummaryCount]:
    from ldnet.models import PoseNet

    with torch.device("meta"):
        model = PoseNet(spec)
    return count(model, input_size)


def count_preset(
    name: str, input_size: tuple[int, int], num_joints: int = 17
) -> tuple[Complexity, SummaryCount]:
    """Both conventions for preset ``name``, counted on the meta device (no arithmetic, no
    memory for the weights) and remembered per architecture and input."""
    from ldnet.models import PRESETS, build_model

    if name not in PRESETS:
        build_model(name, num_joints)  # raises the usual unknown-model error
    if num_joints < 1:
        raise ValueError(f"joint count must be positive, got {num_joints}")
    return _count_spec(PRESETS[name].with_joints(num_joints), tuple(input_size))


# The paper's published Params / GFLOPs (COCO val table; MPII val table at 256x256, 16
# joints, whose row says "LDNet-w48" but whose 5.1 M parameters are LDNet-w32's).
PUBLISHED: dict[tuple[str, tuple[int, int], int], tuple[str, str]] = {
    ("ldnet_w32", (256, 192), 17): ("5.1 M", "1.6"),
    ("ldnet_w32", (384, 288), 17): ("5.1 M", "3.7"),
    ("ldnet_w32", (256, 256), 16): ("5.1 M", "2.1"),
    ("ldnet_w48", (256, 192), 17): ("11.6 M", "3.7"),
    ("ldnet_w48", (384, 288), 17): ("11.6 M", "8.3"),
    ("hrnet_w32", (256, 192), 17): ("28.5 M", "7.1"),
}
# Settings beyond every preset at 256x192 that the paper's tables have.
PAPER_EXTRA_SETTINGS: tuple[tuple[str, tuple[int, int], int], ...] = (
    ("ldnet_w32", (384, 288), 17),
    ("ldnet_w48", (384, 288), 17),
    ("ldnet_w32", (256, 256), 16),
)


@dataclass(frozen=True)
class Row:
    """One model at one input, in both conventions, beside the paper's figure."""

    model: str
    input: tuple[int, int]
    joints: int
    true: Complexity
    paper_convention: SummaryCount
    published: tuple[str, str] | None

    def to_dict(self) -> dict:
        params, gflops = self.published or (None, None)
        return {
            "model": self.model,
            "input": list(self.input),
            "joints": self.joints,
            "params": self.true.params,
            "bank_params": self.true.bank_params,
            "macs": self.true.macs,
            "parts": [asdict(part) for part in self.true.parts],
            "paper_convention": self.paper_convention.to_dict(),
            "published": None if self.published is None else {"params": params, "gflops": gflops},
        }


def rows(settings) -> list[Row]:
    """``settings``: (preset, (H, W), joints) triples -> one ``Row`` each."""
    out = []
    for name, size, joints in settings:
        true, paper = count_preset(name, size, joints)
        out.append(Row(name, tuple(size), joints, true, paper, PUBLISHED.get((name, size, joints))))
    return out
