"""tools/profile_pytorch.py, behind the README's eager profile: it runs, tells an LDConv's
parts apart, and its shares are shares of one total."""

import re
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "profile_pytorch.py"


def profile(model: str) -> str:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--models", model, "--batch", "2", "--input", "128x96",
         "--runs", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def shares(output: str) -> dict[str, float]:
    return {
        match[1].strip(): float(match[2])
        for match in re.finditer(r"^  (.+?)\s+([\d.]+) %$", output, re.MULTILINE)
    }


def test_ldnet_profile_names_the_dynamic_layers_parts():
    output = profile("ldnet_s")
    header = re.search(r"ldnet_s, batch 2 \(([\d.]+) ms a run unprofiled\): ([\d.]+) ms", output)
    assert header and float(header[1]) > 0 and float(header[2]) > 0
    found = shares(output)
    for part in ("Conv dense 3x3", "LDConv kernel mixing", "LDConv attention"):
        assert found.get(part, 0) > 0.5, (part, found)
    # At batch 2 the 1/32 and 1/16 maps run `patches`, the larger ones the grouped conv.
    assert found.get("LDConv per-sample matmul (patches)", 0) > 0.5, found
    assert found.get("LDConv per-sample conv", 0) > 0.5, found
    # Shares of one total; kinds under 0.5 % each are left out (10-20 % together here).
    assert 60 < sum(found.values()) <= 100.05


def test_a_network_without_dynamic_layers_has_no_ldconv_share():
    found = shares(profile("ldnet_w32_static"))
    assert found.get("Conv dense 3x3", 0) > 50
    assert not [kind for kind in found if kind.startswith("LDConv")]
