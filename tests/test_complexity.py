"""`ldnet complexity`: true counts and the paper's counting (HRNet's get_model_summary).

The expected figures were checked against the official code: HRNet's / LDNet's own
``get_model_summary`` run on the official LDNet model (``NBU-CVMI/LDNet``,
``dysmallnet_spattention``) and on HRNet's ``pose_hrnet``, and torch's flop counter on the same
official models, gave exactly these integers (DESIGN.md section 2).
"""

import json

import pytest
import torch
from torch import nn

from ldnet.cli import main
from ldnet.cli.complexity import settings
from ldnet.models import PRESETS
from ldnet.models.complexity import count, count_preset
from ldnet.models.ldconv import DynamicConv2d

# (preset, input, joints) -> (true params, of which kernel banks, true MACs,
#                             paper-convention params, paper-convention MACs)
W32, W48, HRNET = "ldnet_w32", "ldnet_w48", "hrnet_w32"
EXACT = {
    (W32, (256, 192), 17): (30_330_210, 25_162_312, 2_775_924_122, 5_167_898, 1_771_991_890),
    (W32, (384, 288), 17): (30_330_210, 25_162_312, 6_214_148_762, 5_167_898, 3_986_754_130),
    (W32, (256, 256), 16): (30_319_040, 25_151_488, 3_680_341_832, 5_167_552, 2_361_247_560),
    (W48, (256, 192), 17): (68_089_394, 56_496_712, 6_145_588_890, 11_592_682, 3_977_860_178),
    (W48, (384, 288), 17): (68_089_394, 56_496_712, 13_756_449_690, 11_592_682, 8_949_680_978),
    (HRNET, (256, 192), 17): (28_536_113, 0, 7_645_003_776, 28_536_113, 7_645_003_776),
}
# The paper's columns, as our counting prints them (2 decimals): params in M, "GFLOPs".
PAPER_COLUMNS = {
    ("ldnet_w32", (256, 192), 17): ("5.17", "1.65"),
    ("ldnet_w32", (384, 288), 17): ("5.17", "3.71"),
    ("ldnet_w32", (256, 256), 16): ("5.17", "2.20"),
    ("ldnet_w48", (256, 192), 17): ("11.59", "3.70"),
    ("ldnet_w48", (384, 288), 17): ("11.59", "8.34"),
    ("hrnet_w32", (256, 192), 17): ("28.54", "7.12"),
}
TRUE_GMACS = {
    ("ldnet_w32", (256, 192), 17): "2.78",
    ("ldnet_w32", (384, 288), 17): "6.21",
    ("ldnet_w48", (256, 192), 17): "6.15",
    ("ldnet_w48", (384, 288), 17): "13.76",
    ("hrnet_w32", (256, 192), 17): "7.65",
}


@pytest.mark.parametrize("setting", list(EXACT), ids=lambda s: f"{s[0]}-{s[1][0]}x{s[1][1]}")
def test_exact_counts_in_both_conventions(setting):
    true, paper = count_preset(*setting)
    params, banks, macs, paper_params, paper_macs = EXACT[setting]
    assert true.params == params
    assert true.bank_params == banks
    assert true.macs == macs
    assert paper.params == paper_params
    assert paper.macs == paper_macs
    assert paper.gflops == paper.macs / 1024**3
    printed_params, printed_gflops = PAPER_COLUMNS[setting]
    assert f"{paper.params / 1e6:.2f}" == printed_params
    assert f"{paper.gflops:.2f}" == printed_gflops
    if setting in TRUE_GMACS:
        assert f"{true.macs / 1e9:.2f}" == TRUE_GMACS[setting]
    assert sum(part.params for part in true.parts) == true.params
    assert sum(part.macs for part in true.parts) == true.macs
    assert sum(part.params for part in paper.parts) == paper.params
    assert sum(part.macs for part in paper.parts) == paper.macs


def test_ldnet_is_ldnet_w32():
    assert count_preset("ldnet", (256, 192)) == count_preset("ldnet_w32", (256, 192))


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dynamic = DynamicConv2d(8, 8, 3)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.dynamic(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def test_summary_rules_on_a_tiny_model():
    model = _Tiny()
    true, paper = count(model, (4, 6))
    attention = model.dynamic.attention
    # fc1: 8 -> int(8/4)+1 = 3, no bias; fc2: 3 -> 4 with bias.
    attention_params = sum(p.numel() for p in attention.parameters())
    assert attention_params == 8 * 3 + 3 * 4 + 4
    # Counted: the conv (weight + bias), the BN (weight + bias), the attention's two 1x1
    # convs on their own, the Linear; not the dynamic convolution's kernel bank.
    assert paper.params == (3 * 8 * 9 + 8) + 2 * 8 + attention_params + (8 * 5 + 5)
    # MACs: weight x output H x W for convs (no bias), output x in_features for Linear.
    assert paper.macs == 3 * 8 * 9 * 24 + 8 * 3 + 3 * 4 + 5 * 8
    assert true.params == sum(p.numel() for p in model.parameters())
    assert true.bank_params == 4 * 8 * 8 * 9
    # torch's flop counter: the static conv, the 1x1s, the bank mixing, the mixed conv, fc.
    mixing = 4 * (8 * 8 * 9)
    assert true.macs == 3 * 8 * 9 * 24 + 8 * 3 + 3 * 4 + mixing + 8 * 8 * 9 * 24 + 5 * 8


class ConvBN(nn.Module):  # a class named like a convolution that holds one
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x)


class _Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = ConvBN()

    def forward(self, x):
        return self.block(x)


def test_a_counted_module_inside_a_counted_module_is_refused():
    with pytest.raises(ValueError, match="both be counted"):
        count(_Wrapper(), (4, 4))


def test_default_rows_are_every_preset_once_and_the_papers_settings():
    rows = settings(None, None, None)
    models = [name for name, size, joints in rows if (size, joints) == ((256, 192), 17)]
    assert "ldnet" not in models and "ldnet_w32" in models
    assert sorted(models) == sorted(set(PRESETS) - {"ldnet"})
    extra = [row for row in rows if (row[1], row[2]) != ((256, 192), 17)]
    assert extra == [
        ("ldnet_w32", (384, 288), 17),
        ("ldnet_w32", (256, 256), 16),
        ("ldnet_w48", (384, 288), 17),
    ]
    assert settings(["ldnet", "hrnet_w32"], (384, 288), None) == [
        ("ldnet_w32", (384, 288), 17),
        ("hrnet_w32", (384, 288), 17),
    ]


PAPER_MODELS = ["complexity", "--model", "ldnet_w32", "ldnet_w48", "hrnet_w32"]


def _row(out: str, model: str, size: str, joints: int) -> str:
    lines = [
        line
        for line in out.splitlines()
        if line.startswith(model) and f" {size} " in line and f" {joints} " in line
    ]
    assert len(lines) == 1, (model, size, joints, out)
    return lines[0]


def test_cli_prints_every_figure(capsys):
    assert main(PAPER_MODELS) == 0
    out = capsys.readouterr().out
    for (model, (height, width), joints), (params, gflops) in PAPER_COLUMNS.items():
        row = _row(out, model, f"{height}x{width}", joints)
        true_params = f"{EXACT[model, (height, width), joints][0]:,}"
        assert f" {params} M " in row and f" {gflops} " in row and true_params in row
        gmacs = TRUE_GMACS.get((model, (height, width), joints))
        assert gmacs is None or row.endswith(f" {gmacs}")
    assert "25,162,312" in _row(out, "ldnet_w32", "256x192", 17)
    assert "56,496,712" in _row(out, "ldnet_w48", "384x288", 17)
    assert "5.1 M / 1.6" in out and "11.6 M / 8.3" in out and "28.5 M / 7.1" in out
    assert "-81.9% / -47.9%" in out  # the abstract's comparison, in the paper's convention


def test_cli_markdown_and_json(capsys):
    assert main([*PAPER_MODELS, "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| model | input | paper's convention")
    assert "| `ldnet_w32` (= `ldnet`) | 256x192 | 5.17 M / 1.65 | 5.1 M / 1.6 | " in table[2]
    assert table[2].endswith("| 30,330,210 (25,162,312) | 2.78 |")
    assert "| 256x256, 16 joints | 5.17 M / 2.20 | 5.1 M / 2.1 |" in table[4]
    assert (
        table[-1] == "| `hrnet_w32` | 256x192 | 28.54 M / 7.12 | 28.5 M / 7.1 | 28,536,113 | 7.65 |"
    )
    assert len(table) == 2 + 6

    assert main([*PAPER_MODELS, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    first = rows[0]
    assert (first["model"], first["input"], first["joints"]) == ("ldnet_w32", [256, 192], 17)
    assert (first["params"], first["bank_params"], first["macs"]) == EXACT[
        "ldnet_w32", (256, 192), 17
    ][:3]
    assert first["paper_convention"]["params"] == 5_167_898
    assert first["published"] == {"params": "5.1 M", "gflops": "1.6"}


def test_cli_parts(capsys):
    assert main(["complexity", "--model", "hrnet_w32", "--parts"]) == 0
    out = capsys.readouterr().out
    assert "hrnet_w32, 256x192, 17 joints, per part" in out
    parts = [line.split()[0] for line in out.split("per part")[1].splitlines()[2:]]
    assert parts == ["stem", "stage2", "stage3", "stage4", "head", "total"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet50"], "invalid choice: 'resnet50' (choose from 'ldnet', 'ldnet_w32'"),
        (["--input", "256x"], "malformed input size '256x'"),
        (["--input", "250x192"], "not a multiple of 32"),
        (["--joints", "0"], "expected a positive integer, got '0'"),
        (["--json", "--markdown"], "not allowed with argument"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["complexity", *args])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err
    assert len(err.strip().splitlines()) == 1


def test_meta_device_counts_equal_cpu_counts():
    from ldnet.models import build_model

    model = build_model("ldnet_s")
    with torch.device("meta"):
        meta_model = build_model("ldnet_s")
    assert count(model, (32, 32)) == count(meta_model, (32, 32))
