"""Initial weights for training (``model.init_weights``): the policy of what may start a run.

Any file of the lineage is accepted: an ldnet checkpoint or bare state dict, for
``hrnet_w32`` the HRNet ImageNet backbone or an official HRNet / MMPose pose checkpoint, for
the LDNet presets a file of the official LDNet code; whatever matches by name and shape is
loaded and the rest reported. ``ldnet.checkpoint`` only reads and writes files.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ldnet.checkpoint import CheckpointError, model_state

from .importer import backbone_in_our_names
from .layouts import read_file, recognise


def load_initial_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load whatever matches (name and shape) from ``path`` into ``model``.

    ``path`` is an ldnet checkpoint (or a bare state dict of ours), or, for ``hrnet_w32``, a
    file of the HRNet lineage: the ImageNet classification backbone
    (``hrnet_w32-36af842e.pth``, as HRNet's recipe starts from), an official HRNet or an
    MMPose pose checkpoint, translated to our names first; for the LDNet presets, a file
    of the official LDNet code (``final_state.pth``, ``checkpoint.pth``), likewise.

    Returns the report: ``matched``, ``missing`` (in the model, not in the file),
    ``unexpected`` (in the file, not in the model), ``mismatched`` (shape differs) and
    ``skipped`` (the classification network's own modules, which a pose network has no place
    for: ``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``).
    """
    weights = recognise(read_file(path), str(path))
    if weights.layout == "ldnet":
        state, skipped = model_state(weights.data), []
    else:
        state, skipped = backbone_in_our_names(weights, model, str(path))
    own = model.state_dict()
    matched = [k for k in state if k in own and own[k].shape == state[k].shape]
    report = {
        "matched": matched,
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
        "mismatched": [k for k in state if k in own and own[k].shape != state[k].shape],
        "skipped": skipped,
    }
    if not matched:
        raise CheckpointError(f"{path}: no weight matches this model (another architecture?)")
    model.load_state_dict({k: state[k] for k in matched}, strict=False)
    return report


def describe_initial_weights(path: str | Path, report: dict[str, list[str]]) -> str:
    """The report as one line: counts, then what was skipped and what was not found."""
    counts = ", ".join(
        f"{len(report[key])} {key}" for key in ("matched", "missing", "unexpected", "mismatched")
    )
    line = f"initial weights {path}: {counts}"
    skipped = sorted({name.split(".")[0] for name in report.get("skipped", [])})
    if skipped:
        line += f"; skipped the classification modules {', '.join(skipped)}"
    if report["missing"]:
        line += f"; not in the file: {_modules(report['missing'])}"
    if report["unexpected"]:
        line += f"; not in the model: {_modules(report['unexpected'])}"
    return line


def _modules(names: list[str]) -> str:
    """Tensor names folded to their modules (``head.final.weight`` -> ``head.final``)."""
    modules = list(dict.fromkeys(name.rsplit(".", 1)[0] for name in names))
    shown = ", ".join(modules[:6])
    return shown + (f" and {len(modules) - 6} more" if len(modules) > 6 else "")
