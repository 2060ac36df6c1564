"""What the name translations of the HRNet lineage share: HRNet's parallel body (transitions,
branches, fusion, the 1x1 head), which HRNet and the official LDNet code name alike, and the
machinery that applies a list of rules.

A rule is (our name, the reference's name): a regular expression and its replacement, tried
in order. Stage index s of ours is the reference's transition{s+1} and stage{s+2}; the
templates carry {transition} and {stage} and ``NameRules.official_name`` does the arithmetic.
"""

from __future__ import annotations

import re

import torch

PARALLEL_BODY_RULES: tuple[tuple[str, str], ...] = (
    # Transitions: the same Sequential nesting in both.
    (r"stages\.(\d)\.transition\.layers\.(.+)", r"{transition}.\2"),
    # Branch blocks: conv{1,2} -> .0 the convolution, .1 its BatchNorm.
    (
        r"stages\.(\d)\.hr_modules\.(\d+)\.branches\.(\d+)\.(\d+)\.conv([12])\.0\.(.+)",
        r"{stage}.\2.branches.\3.\4.conv\5.\6",
    ),
    (
        r"stages\.(\d)\.hr_modules\.(\d+)\.branches\.(\d+)\.(\d+)\.conv([12])\.1\.(.+)",
        r"{stage}.\2.branches.\3.\4.bn\5.\6",
    ),
    # Fusion, j > i: 1x1 projection (ours in Upsample.project) then nearest upsampling.
    (
        r"stages\.(\d)\.hr_modules\.(\d+)\.fuse\.(\d+)\.(\d+)\.project\.([01])\.(.+)",
        r"{stage}.\2.fuse_layers.\3.\4.\5.\6",
    ),
    # Fusion, j < i: stride-2 3x3 steps, the same nesting in both.
    (
        r"stages\.(\d)\.hr_modules\.(\d+)\.fuse\.(\d+)\.(\d+)\.(\d+)\.([01])\.(.+)",
        r"{stage}.\2.fuse_layers.\3.\4.\5.\6.\7",
    ),
    # Head: the 1x1 convolution to heatmaps.
    (r"head\.final\.(.+)", r"final_layer.\1"),
)


class NameRules:
    """A reference's names for ours, by rules; ``reference`` names it in errors."""

    def __init__(self, rules: tuple[tuple[str, str], ...], reference: str):
        self.compiled = tuple((re.compile(pattern), template) for pattern, template in rules)
        self.reference = reference

    def official_name(self, ours: str) -> str:
        """The reference's name of our tensor ``ours`` (KeyError if no rule covers it)."""
        for pattern, template in self.compiled:
            match = pattern.fullmatch(ours)
            if match:
                if ours.startswith("stages."):
                    index = int(match.group(1))
                    template = template.format(
                        transition=f"transition{index + 1}", stage=f"stage{index + 2}"
                    )
                return match.expand(template)
        raise KeyError(f"no {self.reference} name for {ours!r}")

    def name_map(self, our_names) -> dict[str, str]:
        """Our name -> the reference's, for every tensor of ours; one-to-one by construction."""
        mapping = {ours: self.official_name(ours) for ours in our_names}
        if len(set(mapping.values())) != len(mapping):  # a rule that folds two names into one
            raise AssertionError(f"{self.reference} name rules are not one-to-one")
        return mapping


def output_channels(state: dict[str, torch.Tensor], name: str) -> int | None:
    """The output channels of convolution weight ``name`` in ``state`` (None if absent)."""
    tensor = state.get(name)
    return None if tensor is None or tensor.ndim != 4 else int(tensor.shape[0])
