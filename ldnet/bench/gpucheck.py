"""`make gpu-check` (`python -m ldnet.bench.gpucheck --out DIR`): what only CUDA can check.

With a CUDA device: runs the tests marked ``gpu`` (tests/test_gpu.py) in a pytest subprocess
with a time limit, then measures ``ldnet`` against ``hrnet_w32`` (``ldnet.bench.gpu``), and
writes everything into ``DIR/gpu-check.json``. Exit status 1 when a test failed.

Without one it runs its CPU self-checks instead: the same measuring code at a tiny size on
the CPU, the ``gpu`` tests (which then skip, each with its reason), the report with every
GPU figure marked unmeasured, written and read back; it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ldnet.bench.gpu import (
    METHOD,
    REFERENCE,
    ROW_KEYS,
    UNMEASURED,
    Plan,
    empty_row,
    fastest,
    measure,
)
from ldnet.bench.ldconv_layers import LayerPlan, measure_layers, print_summary
from ldnet.engine.runs import write_json_atomic

FORMAT = "ldnet-gpu-check-1"
REPORT_NAME = "gpu-check.json"
JUNIT_NAME = "gpu-tests.xml"
GPU_TESTS = Path(__file__).resolve().parents[2] / "tests" / "test_gpu.py"
# The CPU self-check: every kind of case once, small enough for CI (about 15 s on 2 cores).
# `ldnet_s` stands in for `ldnet`: the same LDConv code, a third of the ONNX export time.
SELF_CHECK_PLAN = Plan(
    models=("ldnet_s", REFERENCE),
    input_size=(64, 64),
    train_batches=(2,),
    inference_batches=(1, 2),
    dtypes=("float32",),
    repeats=1,
    min_repeat_s=0.0,
    warmup=1,
)
SELF_CHECK_LAYERS = LayerPlan(
    model="ldnet_s",
    input_size=(64, 64),
    inference_batches=(2,),
    dtypes=("float32",),
    train_batches=(2,),
    bursts=1,
    min_burst_s=0.0,
)
# What the benchmark keeps back for its timed rounds when it sets the compile budget: this
# much more than the rounds' own estimate (synchronisation, slow cases).
ROUNDS_MARGIN = 1.5
REPORT_KEYS = {
    "format": str,
    "cuda_available": bool,
    "environment": dict,
    "tests": dict,
    "benchmark": dict,
    "self_check": (dict, type(None)),
    "ldconv_layers": (dict, type(None)),
    "seconds": float,
}
ENVIRONMENT_KEYS = ("device_name", "device_count", "driver_version", "torch", "cuda", "cudnn")
TEST_KEYS = ("status", "passed", "failed", "skipped", "errors", "cases")
BENCHMARK_KEYS = ("status", "device", "plan", "method", "onnxruntime", "rows", "fastest")


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ldnet.bench.gpucheck",
        description=(
            "Run the `gpu` tests and measure ldnet vs hrnet_w32 on the CUDA device, into "
            f"OUT/{REPORT_NAME}. Without CUDA: CPU self-checks, one line, exit 0."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("gpu-check-out"), help="output folder")
    parser.add_argument("--repeats", type=positive_int, default=Plan.repeats, help="timed rounds")
    parser.add_argument(
        "--test-timeout-s", type=positive_int, default=300, help="limit for the gpu tests"
    )
    parser.add_argument(
        "--time-limit-s",
        type=positive_int,
        default=450,
        help="aim to finish within this (no compiled case starts once it would overrun)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="measure only the cases whose 'backend/model/batch' matches one of these "
        "shell patterns (e.g. 'pytorch-float16-*-cudagraphs/*/64')",
    )
    parser.add_argument(
        "--only-tests",
        default=None,
        metavar="EXPR",
        help="run only the gpu tests pytest -k selects",
    )
    parser.add_argument("--skip-layers", action="store_true", help="no LDConv layer timings")
    parser.add_argument("--skip-tests", action="store_true", help="measure only")
    parser.add_argument("--skip-bench", action="store_true", help="run the gpu tests only")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {args.out} exists and is not a folder")
    return args


def driver_version() -> str | None:
    """The NVIDIA driver's version from ``nvidia-smi``, or None without it."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        result = subprocess.run(
            [executable, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def environment() -> dict:
    cuda = torch.cuda.is_available()
    try:
        import onnxruntime

        onnx = {"onnxruntime": onnxruntime.__version__}
        onnx["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        onnx = {"onnxruntime": None, "onnxruntime_providers": []}
    properties = torch.cuda.get_device_properties(0) if cuda else None
    return {
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
        "device_count": torch.cuda.device_count() if cuda else 0,
        "device_memory_gib": properties.total_memory / 2**30 if properties else None,
        "driver_version": driver_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        **onnx,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }


# -- the gpu-marked tests, in a subprocess ------------------------------------------------------
def read_junit(path: Path) -> dict:
    """Counts and one entry per test case from pytest's ``--junitxml`` file."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for tag, name in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            element = case.find(tag)
            if element is not None:
                outcome, message = name, element.get("message")
                break
        counts[outcome] += 1
        cases.append(
            {
                "name": f"{case.get('classname')}::{case.get('name')}",
                "outcome": {"errors": "error"}.get(outcome, outcome),
                "seconds": float(case.get("time", 0.0)),
                "message": message,
            }
        )
    return {**counts, "cases": cases}


def run_gpu_tests(
    out: Path, timeout_s: float, tests: Path = GPU_TESTS, select: str | None = None
) -> dict:
    """``pytest -m gpu`` on ``tests`` with a time limit (``-k select`` if given); outcomes
    from its JUnit XML."""
    if not tests.is_file():
        return _tests_not_run(f"not run: {tests} not found (run from a checkout)", errors=1)
    junit = out / JUNIT_NAME
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    command += [f"--junitxml={junit}", str(tests)]
    if select:
        command += ["-k", select]
    started = time.perf_counter()
    # Its own session, so that a time-out ends the test's child processes (DDP ranks,
    # `ldnet train`) with it.
    process = subprocess.Popen(
        command,
        cwd=tests.parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
        status = f"ran, exit status {process.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        status = f"timed out after {timeout_s} s"
    (out / "gpu-tests.log").write_text(output)
    if not junit.is_file():
        return _tests_not_run(f"{status}; no JUnit file (see gpu-tests.log)", errors=1)
    result = read_junit(junit)
    if process.returncode != 0 and not result["failed"] + result["errors"]:
        result["errors"] += 1  # a crash or time-out outside any test case
    return {
        "status": status,
        **result,
        "seconds": time.perf_counter() - started,
        "command": command,
    }


def _tests_not_run(status: str, errors: int = 0) -> dict:
    return {"status": status, "passed": 0, "failed": 0, "skipped": 0, "errors": errors, "cases": []}


def tests_ok(tests: dict) -> bool:
    return tests["failed"] == 0 and tests["errors"] == 0


# -- the report -------------------------------------------------------------------------------
def benchmark_section(plan: Plan, device: str, status: str, rows=None, onnx_status=None) -> dict:
    """The ``benchmark`` (or ``self_check``) part of the report; without ``rows`` every
    figure of ``plan`` is listed with ``status`` and no value."""
    if rows is None:
        rows = [empty_row(*key, status) for key in plan.cases(device)]
    return {
        "status": status,
        "device": device,
        "plan": asdict(plan),
        "method": {**METHOD, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32},
        "onnxruntime": onnx_status or status,
        "rows": rows,
        "fastest": fastest(rows),
    }


def check_rows(rows: list[dict], where: str) -> None:
    for index, row in enumerate(rows):
        if tuple(row) != ROW_KEYS:
            raise ValueError(f"{where}[{index}]: keys {tuple(row)}, expected {ROW_KEYS}")
        value = row["images_per_s"]
        if row["status"] == "measured":
            if not (isinstance(value, float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{where}[{index}]: measured, but images_per_s is {value}")
        elif value is not None:
            raise ValueError(f"{where}[{index}]: {row['status']!r}, but images_per_s is {value}")


def check_report(report: dict) -> None:
    """Raise ValueError naming the first key that is missing or malformed."""
    for key, kind in REPORT_KEYS.items():
        value = report.get(key)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ValueError(f"report key {key!r}: expected {kind}, got {value!r}")
    sections = [("environment", ENVIRONMENT_KEYS), ("tests", TEST_KEYS)]
    sections += [("benchmark", BENCHMARK_KEYS)]
    if report["self_check"] is not None:
        sections.append(("self_check", BENCHMARK_KEYS))
    for section, keys in sections:
        missing = [k for k in keys if k not in report[section]]
        if missing:
            raise ValueError(f"report key {section}.{missing[0]} is missing")
    check_rows(report["benchmark"]["rows"], "benchmark.rows")
    if report["self_check"] is not None:
        check_rows(report["self_check"]["rows"], "self_check.rows")


def cpu_self_check(args) -> tuple[dict, str | None]:
    """(report, problem or None) of a machine without CUDA."""
    rows, onnx_status = measure(SELF_CHECK_PLAN, "cpu")
    self_check = benchmark_section(SELF_CHECK_PLAN, "cpu", "measured", rows, onnx_status)
    self_check["ldconv_layers"] = measure_layers(SELF_CHECK_LAYERS, "cpu")
    if args.skip_tests:
        tests = _tests_not_run("skipped (--skip-tests)")
    else:
        tests = run_gpu_tests(args.out, args.test_timeout_s)
    problem = None
    if tests["passed"] or not tests_ok(tests):
        problem = f"without CUDA every gpu test should skip; got {_counts(tests)}"
    try:
        check_rows(rows, "self_check.rows")
    except ValueError as error:
        problem = str(error)
    unmeasured = [row for row in rows if row["status"] != "measured"]
    if unmeasured:
        row = unmeasured[0]
        problem = f"self-check case {row['backend']} {row['model']}: {row['status']}"
    report = {
        "format": FORMAT,
        "cuda_available": False,
        "environment": environment(),
        "tests": tests,
        "benchmark": benchmark_section(Plan(repeats=args.repeats), "cuda", UNMEASURED),
        "self_check": self_check,
        "ldconv_layers": None,
    }
    return report, problem


def gpu_check(args, started: float) -> tuple[dict, str | None]:
    """(report, problem or None) of a machine with CUDA; ``started``: perf_counter at start."""
    from tqdm import tqdm

    plan = replace(Plan(), repeats=args.repeats, only=tuple(args.only))
    report = {
        "format": FORMAT,
        "cuda_available": True,
        "environment": environment(),
        "self_check": None,
        "ldconv_layers": None,
    }
    env = report["environment"]
    print(
        f"{env['device_name']}, driver {env['driver_version']}, torch {env['torch']}, "
        f"CUDA {env['cuda']}"
    )
    if args.skip_tests:
        tests = _tests_not_run("skipped (--skip-tests)")
    else:
        print(f"gpu tests: pytest -m gpu (limit {args.test_timeout_s} s) ...", flush=True)
        tests = run_gpu_tests(args.out, args.test_timeout_s, select=args.only_tests)
    print(f"gpu tests: {tests['status']}: {_counts(tests)}")
    problem = None if tests_ok(tests) else f"gpu tests: {_counts(tests)} (see gpu-tests.log)"
    report["tests"] = tests
    if args.skip_bench:
        report["benchmark"] = benchmark_section(plan, "cuda", "skipped (--skip-bench)")
        return report, problem
    if not args.skip_layers:
        print("LDConv layers alone ...", flush=True)
        try:
            report["ldconv_layers"] = measure_layers(LayerPlan(), "cuda")
            print_summary(report["ldconv_layers"])
        except Exception as error:  # the whole-network figures matter more: go on without
            status = f"failed: {type(error).__name__}: {error}".splitlines()[0]
            report["ldconv_layers"] = {"status": status}
            problem = problem or f"LDConv layers {status}"
    elapsed = time.perf_counter() - started
    reserve = ROUNDS_MARGIN * plan.rounds_seconds("cuda")
    plan = replace(plan, budget_s=max(0.0, args.time_limit_s - elapsed - reserve))
    print(f"gpu bench: compiled cases start within {plan.budget_s:.0f} s", flush=True)
    total = len(plan.cases("cuda")) + plan.repeats
    try:
        with tqdm(total=total, desc="gpu bench: warm-up, then rounds", leave=False) as bar:
            rows, onnx_status = measure(
                plan, "cuda", on_case=lambda _: bar.update(1), on_round=lambda _: bar.update(1)
            )
    except Exception as error:  # keep the test outcomes: write the report anyway
        status = f"failed: {type(error).__name__}: {error}".splitlines()[0]
        report["benchmark"] = benchmark_section(plan, "cuda", status)
        return report, problem or f"benchmark {status}"
    report["benchmark"] = benchmark_section(plan, "cuda", "measured", rows, onnx_status)
    print_rows(rows)
    print(f"ONNX Runtime: {onnx_status}")
    failed = [row for row in rows if row["status"].startswith("failed")]
    if failed:
        problem = problem or f"{len(failed)} benchmark cases failed (first: {failed[0]['status']})"
    return report, problem


def _counts(tests: dict) -> str:
    return ", ".join(f"{tests[k]} {k}" for k in ("passed", "failed", "skipped", "errors"))


def print_rows(rows: list[dict]) -> None:
    print(
        f"{'backend':<38} {'model':<10} {'batch':>5} {'images/s':>9} {'ms/batch':>9} "
        f"{'peak MiB':>9} {'vs ' + REFERENCE:>13}"
    )
    for row in rows:
        if row["status"] != "measured":
            print(f"{row['backend']:<38} {row['model']:<10} {row['batch']:>5}  {row['status']}")
            continue
        peak = row["peak_memory_mib"]
        ratio = row[f"speedup_vs_{REFERENCE}"]
        print(
            f"{row['backend']:<38} {row['model']:<10} {row['batch']:>5} "
            f"{row['images_per_s']:>9.1f} {row['ms_per_batch']:>9.2f} "
            f"{'-' if peak is None else f'{peak:.0f}':>9} "
            f"{'-' if ratio is None else f'{ratio:.2f}x':>13}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    report, problem = gpu_check(args, started) if cuda else cpu_self_check(args)
    report["seconds"] = time.perf_counter() - started
    path = write_json_atomic(args.out / REPORT_NAME, report)
    try:
        check_report(json.loads(path.read_text()))  # what a reader of the file will get
    except ValueError as error:
        problem = problem or f"{path}: {error}"
    if problem:
        print(f"gpu-check: {problem}; report in {path}", file=sys.stderr)
        return 1
    if cuda:
        print(f"report: {path}")
    else:
        tests = report["tests"]
        print(
            f"no CUDA device: GPU figures unmeasured in {path}; CPU self-checks passed "
            f"({len(report['self_check']['rows'])} benchmark cases on the CPU, "
            f"{tests['skipped']} gpu tests skipped)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
