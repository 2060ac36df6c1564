"""tools/avx2_only.c, the library behind the AVX2-path figures: under it PyTorch and ONNX
Runtime take their AVX2 kernels on a CPU that has more (where Linux can make CPUID fault)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SOURCE = Path(__file__).resolve().parents[1] / "tools" / "avx2_only.c"
PROBE = (
    "import torch\n"
    "from ldnet.deploy.nchwc import block_size\n"
    "print(torch.backends.cpu.get_cpu_capability(), block_size())\n"
)


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc to build tools/avx2_only.c")
@pytest.mark.skipif(
    not Path("/proc/cpuinfo").exists() or "cpuid_fault" not in cpu_flags(),
    reason="this CPU or kernel cannot make CPUID fault",
)
@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "AVX2", reason="already on the AVX2 code paths"
)
def test_the_library_puts_pytorch_and_onnx_runtime_on_their_avx2_paths(tmp_path):
    pytest.importorskip("onnxruntime")
    library = tmp_path / "avx2_only.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True)
    native = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    masked = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LD_PRELOAD": str(library)},
    ).stdout.split()
    assert native[0] != "AVX2"  # the control: without the library, more than AVX2
    # ONNX Runtime's blocked layout is 8 channels wide without AVX-512 (16 with it).
    assert masked == ["AVX2", "8"]
