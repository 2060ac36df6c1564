"""`make gpu-check` without a GPU: its one-line no-CUDA path, the report it writes, its
arguments, the measuring code on the CPU, and how it reads the gpu tests' outcomes."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ldnet.bench import gpu as gpubench
from ldnet.bench import gpucheck
from ldnet.bench.gpu import REFERENCE, ROW_KEYS, UNMEASURED, Plan, measure, seconds_per_call
from ldnet.bench.ldconv_layers import FORMS, LayerPlan, distinct_layers, measure_layers, summarise
from ldnet.models import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = Plan(
    models=("ldnet_s", REFERENCE),
    input_size=(64, 64),
    train_batches=(2,),
    inference_batches=(1,),
    dtypes=("float32",),
    executions=("auto",),
    onnxruntime=False,
    repeats=2,
    min_repeat_s=0.0,
    warmup=1,
)
TINY_LAYERS = LayerPlan(
    model="ldnet_s", input_size=(64, 64), inference_batches=(1,), dtypes=("float32",),
    train_batches=(2,), bursts=1, min_burst_s=0.0,
)  # fmt: skip


@pytest.mark.slow
def test_without_cuda_one_line_exit_0_and_a_well_formed_report(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "ldnet.bench.gpucheck", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # runs from anywhere: finds the gpu tests beside the package
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = result.stdout.splitlines()
    assert line.startswith("no CUDA device: GPU figures unmeasured in ")
    # Every gpu test is collected and skipped: as many as pytest collects from the file.
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            str(ROOT / "tests" / "test_gpu.py"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    gpu_tests = sum("test_gpu.py::" in row for row in collected.splitlines())
    assert gpu_tests >= 10
    self_cases = gpucheck.SELF_CHECK_PLAN.cases("cpu")
    expected = (
        f"CPU self-checks passed ({len(self_cases)} benchmark cases on the CPU, "
        f"{gpu_tests} gpu tests skipped)"
    )
    assert expected in line
    assert "Traceback" not in result.stderr

    report = json.loads((out / "gpu-check.json").read_text())
    gpucheck.check_report(report)
    assert report["format"] == "ldnet-gpu-check-1" and report["cuda_available"] is False
    environment = report["environment"]
    assert environment["device_name"] is None and environment["device_count"] == 0
    assert environment["torch"] == __import__("torch").__version__
    # Every GPU figure is listed, none has a value: for ldnet_w32 training 32 in 4
    # executions, 2 dtypes x 4 executions x (eager, compiled, CUDA graphs) x batch 1/64,
    # ORT x 1/64; for HRNet 1 execution.
    rows = report["benchmark"]["rows"]
    assert len(rows) == (4 + 2 * 12 * 2 + 2) + (1 + 2 * 3 * 2 + 2)
    assert {r["status"] for r in rows} == {UNMEASURED}
    assert all(r[k] is None for r in rows for k in ("images_per_s", "peak_memory_mib"))
    assert {r["backend"] for r in rows} == set(Plan().backends("cuda"))
    assert report["benchmark"]["fastest"] == []  # nothing measured
    # The measuring code ran on the CPU, ONNX Runtime included: every execution of ldnet_s.
    self_check = report["self_check"]
    assert self_check["device"] == "cpu" and self_check["onnxruntime"].startswith("measured")
    assert [(r["backend"], r["model"], r["batch"]) for r in self_check["rows"]] == self_cases
    assert {r["execution"] for r in self_check["rows"] if r["model"] == "ldnet_s"} == {
        "aggregate", "patches", "mixture", "auto"
    }  # fmt: skip
    assert len(self_check["fastest"]) == 6  # 2 models x (training, inference batch 1/2)
    # Each LDConv layer of ldnet_s alone, in every form, inference and training.
    layers = self_check["ldconv_layers"]
    assert {(r["mode"], r["execution"]) for r in layers["rows"]} == {
        (mode, form) for mode in ("inference", "train") for form in FORMS
    }  # fmt: skip
    assert all(r["ms"] > 0 for r in layers["rows"])
    assert report["ldconv_layers"] is None  # the CUDA figures: unmeasured
    for row in self_check["rows"]:
        assert row["images_per_s"] * row["ms_per_batch"] / 1e3 == pytest.approx(row["batch"])
    # The gpu tests ran, and each one skipped with its reason.
    tests = report["tests"]
    assert (tests["passed"], tests["failed"], tests["errors"], tests["skipped"]) == (
        0,
        0,
        0,
        gpu_tests,
    )
    assert {c["outcome"] for c in tests["cases"]} == {"skipped"}
    assert all("no CUDA device" in c["message"] for c in tests["cases"])
    assert (out / "gpu-tests.xml").is_file()


def test_arguments():
    args = gpucheck.parse_args([])
    assert args.out == Path("gpu-check-out") and args.repeats == 5 and args.test_timeout_s == 300
    assert gpucheck.parse_args(["--out", "x", "--repeats", "3"]).repeats == 3


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--repeats", "two"], ["--bogus"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        gpucheck.parse_args(argv)
    assert stop.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as stop:
        gpucheck.main(["--out", str(tmp_path / "file")])
    assert stop.value.code == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_driver_version_from_nvidia_smi_or_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpucheck.driver_version() is None
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '550.54.15'\necho '550.54.15'\n")
    smi.chmod(0o755)
    assert gpucheck.driver_version() == "550.54.15"


def test_measure_on_the_cpu():
    rows, onnx_status = measure(TINY, "cpu")
    assert onnx_status == ""
    assert [(r["backend"], r["model"], r["batch"]) for r in rows] == TINY.cases("cpu")
    assert [tuple(r) for r in rows] == [ROW_KEYS] * 4
    by_case = {(r["backend"], r["model"]): r for r in rows}
    for backend in ("pytorch-train-auto", "pytorch-float32-auto"):
        ours, reference = by_case[(backend, "ldnet_s")], by_case[(backend, REFERENCE)]
        assert reference[f"speedup_vs_{REFERENCE}"] == 1.0
        assert ours[f"speedup_vs_{REFERENCE}"] == pytest.approx(
            ours["images_per_s"] / reference["images_per_s"]
        )
    for row in rows:
        assert row["status"] == "measured" and row["peak_memory_mib"] is None  # CPU: no stats
        assert row["repeats"] == 2 and row["iterations_per_repeat"] >= 1
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["ms_per_batch"] * 1e3)


def test_the_gpu_plan_covers_every_execution_dtype_and_compile():
    cases = Plan().cases("cuda")
    ours = {backend for backend, model, _ in cases if model == "ldnet_w32"}
    for dtype in ("float32", "float16"):
        for execution in ("aggregate", "patches", "mixture", "auto"):
            assert f"pytorch-{dtype}-{execution}" in ours
            assert f"pytorch-{dtype}-{execution}-compile" in ours
            assert f"pytorch-train-amp-{execution}" in ours
            assert f"pytorch-{dtype}-{execution}-cudagraphs" in ours
    assert "onnxruntime-cuda-float32" in ours
    # HRNet has no LDConv: one eager, one compiled, one CUDA-graph case per dtype.
    theirs = [(b, n) for b, m, n in cases if m == REFERENCE and b.startswith("pytorch-float16")]
    labels = (
        "pytorch-float16-auto",
        "pytorch-float16-auto-compile",
        "pytorch-float16-auto-cudagraphs",
    )
    assert theirs == [(b, n) for b in labels for n in (1, 64)]  # fmt: skip
    assert {n for b, m, n in cases if b.startswith("pytorch-train")} == {32}
    assert [m for b, m, n in cases if b.startswith("pytorch-train") and m == REFERENCE] == [
        REFERENCE
    ]
    assert not [b for b, _, _ in Plan().cases("cpu") if b.endswith("-compile")]  # CUDA only


def test_measure_names_the_execution_and_the_fastest_case():
    plan = replace(TINY, models=("ldnet_s", REFERENCE), train_batches=(), inference_batches=(2,),
                   executions=("aggregate", "mixture", "auto"))  # fmt: skip
    rows, _ = measure(plan, "cpu")
    assert [(r["model"], r["execution"]) for r in rows] == [
        ("ldnet_s", "aggregate"), ("ldnet_s", "mixture"), ("ldnet_s", "auto"), (REFERENCE, "-")
    ]  # fmt: skip
    best = {(b["model"], b["batch"], b["dtype"]): b for b in gpubench.fastest(rows)}
    ours = max((r for r in rows if r["model"] == "ldnet_s"), key=lambda r: r["images_per_s"])
    assert best[("ldnet_s", 2, "float32")]["backend"] == ours["backend"]
    assert best[(REFERENCE, 2, "float32")]["execution"] == "-"


def test_onnxruntime_without_the_provider_is_recorded_unavailable(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    provider, status = gpubench.onnxruntime_provider("cuda")
    assert provider is None
    assert status.startswith("unavailable: CUDAExecutionProvider not in ['CPUExecutionProvider']")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [])
    plan = replace(TINY, models=("ldnet_s",), train_batches=(), dtypes=(), onnxruntime=True)
    rows, status = measure(plan, "cpu")
    assert status == "unavailable: CPUExecutionProvider not in [] (onnxruntime " + (
        onnxruntime.__version__ + ")"
    )
    (row,) = rows
    assert row["backend"] == "onnxruntime-cpu-float32" and row["status"] == status
    assert row["images_per_s"] is None


def test_timing_drains_the_device_queue_around_the_calls():
    events = []
    seconds = seconds_per_call(lambda: events.append("run"), 3, lambda: events.append("sync"))
    assert events == ["sync", "run", "run", "run", "sync"]
    assert seconds >= 0


def test_report_check_names_the_bad_key():
    plan = Plan()
    good = {
        "format": gpucheck.FORMAT,
        "cuda_available": False,
        "environment": dict.fromkeys(gpucheck.ENVIRONMENT_KEYS),
        "tests": gpucheck._tests_not_run("skipped (--skip-tests)"),
        "benchmark": gpucheck.benchmark_section(plan, "cuda", UNMEASURED),
        "self_check": None,
        "ldconv_layers": None,
        "seconds": 1.0,
    }
    gpucheck.check_report(json.loads(json.dumps(good)))
    with pytest.raises(ValueError, match="report key 'cuda_available'"):
        gpucheck.check_report({**good, "cuda_available": 1})
    with pytest.raises(ValueError, match="report key 'seconds'"):
        gpucheck.check_report({k: v for k, v in good.items() if k != "seconds"})
    with pytest.raises(ValueError, match="tests.skipped is missing"):
        tests = {k: v for k, v in good["tests"].items() if k != "skipped"}
        gpucheck.check_report({**good, "tests": tests})
    figure = {**good["benchmark"]["rows"][0], "images_per_s": 12.5}
    bad = {**good["benchmark"], "rows": [figure]}
    with pytest.raises(ValueError, match=r"benchmark.rows\[0\]: 'unmeasured.*images_per_s is 12.5"):
        gpucheck.check_report({**good, "benchmark": bad})
    bad["rows"] = [{**figure, "status": "measured", "images_per_s": float("nan")}]
    with pytest.raises(ValueError, match="measured, but images_per_s is nan"):
        gpucheck.check_report({**good, "benchmark": bad})


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_gpu" name="test_a" time="1.5"/>
<testcase classname="tests.test_gpu" name="test_b" time="0.1">
  <failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.test_gpu" name="test_c" time="0">
  <skipped type="pytest.skip" message="no CUDA device">skip</skipped></testcase>
<testcase classname="tests.test_gpu" name="test_d" time="0">
  <error message="fixture failed">trace</error></testcase>
</testsuite></testsuites>
"""


def test_read_junit(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    result = gpucheck.read_junit(tmp_path / "junit.xml")
    assert (result["passed"], result["failed"], result["skipped"], result["errors"]) == (1, 1, 1, 1)
    assert [(c["name"], c["outcome"], c["message"]) for c in result["cases"]] == [
        ("tests.test_gpu::test_a", "passed", None),
        ("tests.test_gpu::test_b", "failed", "assert 1 == 2"),
        ("tests.test_gpu::test_c", "skipped", "no CUDA device"),
        ("tests.test_gpu::test_d", "error", "fixture failed"),
    ]
    assert result["cases"][0]["seconds"] == 1.5


def _test_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tests" / "test_fake_gpu.py"
    path.parent.mkdir(parents=True)
    path.write_text(f"import pytest\n\n\n@pytest.mark.gpu\ndef test_one():\n    {body}\n")
    return path


def test_gpu_test_outcomes_and_time_limit(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    failing = gpucheck.run_gpu_tests(out, 60, _test_file(tmp_path / "a", "assert 1 == 2"))
    assert failing["status"] == "ran, exit status 1" and failing["failed"] == 1
    assert not gpucheck.tests_ok(failing)
    assert "assert 1 == 2" in (out / "gpu-tests.log").read_text()
    stuck = gpucheck.run_gpu_tests(
        out, 3, _test_file(tmp_path / "b", "__import__('time').sleep(60)")
    )
    assert stuck["status"].startswith("timed out after 3 s") and stuck["errors"] == 1
    assert not gpucheck.tests_ok(stuck)
    missing = gpucheck.run_gpu_tests(out, 3, tmp_path / "nowhere.py")
    assert missing["status"].startswith("not run:") and not gpucheck.tests_ok(missing)


def test_gpu_path_with_the_device_faked(tmp_path, monkeypatch, capsys):
    """The CUDA branch end to end, with the device, the tests and the plan stood in for:
    the table, the report, and exit status 1 when a gpu test failed."""
    fake_tests = {
        "status": "ran, exit status 1",
        "passed": 17,
        "failed": 1,
        "skipped": 0,
        "errors": 0,
        "cases": [],
    }
    plans = []

    def fake_measure(plan, device, on_case=None, on_round=None):
        plans.append((plan, device))
        return measure(TINY, "cpu", on_case, on_round)

    monkeypatch.setattr(gpucheck.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpucheck, "environment", lambda: dict.fromkeys(gpucheck.ENVIRONMENT_KEYS))
    monkeypatch.setattr(gpucheck, "run_gpu_tests", lambda out, timeout_s, select=None: fake_tests)
    monkeypatch.setattr(gpucheck, "measure", fake_measure)
    monkeypatch.setattr(
        gpucheck, "measure_layers", lambda plan, device: measure_layers(TINY_LAYERS, "cpu")
    )
    assert gpucheck.main(["--out", str(tmp_path), "--repeats", "2"]) == 1
    ((plan, device),) = plans
    assert device == "cuda" and plan.repeats == 2 and plan.input_size == (256, 192)
    # What is left of the time limit after the tests and the layers, less the rounds' share.
    reserve = gpucheck.ROUNDS_MARGIN * plan.rounds_seconds("cuda")
    assert 0 < plan.budget_s <= 450 - reserve
    captured = capsys.readouterr()
    assert "gpu tests: ran, exit status 1: 17 passed, 1 failed, 0 skipped, 0 errors" in captured.out
    table = [line.split() for line in captured.out.splitlines() if line.startswith("pytorch-")]
    assert [row[:3] for row in table] == [
        ["pytorch-train-auto", "ldnet_s", "2"],
        ["pytorch-train-auto", REFERENCE, "2"],
        ["pytorch-float32-auto", "ldnet_s", "1"],
        ["pytorch-float32-auto", REFERENCE, "1"],
    ]
    assert table[1][-1] == "1.00x"
    assert "gpu-check: gpu tests: 17 passed, 1 failed" in captured.err
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    gpucheck.check_report(report)
    assert report["cuda_available"] is True and report["self_check"] is None
    assert report["tests"] == fake_tests and report["benchmark"]["status"] == "measured"
    assert len(report["benchmark"]["rows"]) == 4
    assert "LDConv layers of ldnet_s alone" in captured.out
    assert report["ldconv_layers"]["model"] == "ldnet_s"


def test_case_labels():
    assert gpubench.label_execution("pytorch-train-amp-mixture") == "mixture"
    assert gpubench.label_execution("pytorch-float16-patches-cudagraphs") == "patches"
    assert gpubench.label_execution("onnxruntime-cuda-float32") is None
    assert gpubench.compile_mode("pytorch-float16-auto-cudagraphs") == "reduce-overhead"
    assert gpubench.compile_mode("pytorch-float16-mixture-compile") == "default"
    assert gpubench.compile_mode("pytorch-float16-mixture") is None
    assert gpubench.reference_backend("pytorch-float16-mixture-compile") == (
        "pytorch-float16-auto-compile"
    )
    assert gpubench.reference_backend("pytorch-train-amp-patches") == "pytorch-train-amp-auto"
    # Eager first, then compiled "auto" (all models), then the other compiled executions.
    order = [b for b, m, n in gpubench.preparation_order(Plan().cases("cuda"))]
    first_compiled = next(i for i, b in enumerate(order) if gpubench.compile_mode(b))
    assert not any(gpubench.compile_mode(b) for b in order[:first_compiled])
    compiled = order[first_compiled:]
    autos = [b for b in compiled if gpubench.inference_execution(b) == "auto"]
    assert compiled[: len(autos)] == autos
    assert len(autos) == 2 * 2 * 2 * 2  # dtypes x compile modes x models x batches
    # CUDA graphs (1.6-6x the default mode on one H200) before the default mode.
    assert {b.rsplit("-", 1)[1] for b in autos[:8]} == {"cudagraphs"}


def test_a_case_that_fails_is_recorded_and_the_rest_measured(monkeypatch):
    real = gpubench.inference_call

    def failing(name, batch, dtype, plan, device, execution="auto", mode=None):
        if execution == "mixture":
            raise RuntimeError("no kernel for this\nsecond line")
        return real(name, batch, dtype, plan, device, execution, mode)

    monkeypatch.setattr(gpubench, "inference_call", failing)
    plan = replace(TINY, train_batches=(), executions=("mixture", "auto"))
    rows, _ = measure(plan, "cpu")
    status = {(r["backend"], r["model"]): r["status"] for r in rows}
    assert (
        status[("pytorch-float32-mixture", "ldnet_s")] == "failed: RuntimeError: no kernel for this"
    )
    assert status[("pytorch-float32-auto", "ldnet_s")] == "measured"
    assert status[("pytorch-float32-auto", REFERENCE)] == "measured"


def test_ldconv_layers_of_the_published_network():
    layers = distinct_layers(build_model("ldnet_w32", 17).eval(), (256, 192))
    # Stage 4: 2 modules x 4 branches x 2 LD blocks x 2 LDConvs; the KRM's 1x1 and 9x9.
    assert sum(layer.count for layer in layers) == 2 * 4 * 2 * 2 + 2
    names = {layer.name: layer.count for layer in layers}
    assert names["32->32 3x3/1 @64x48"] == 8 and names["256->256 3x3/1 @8x6"] == 8
    assert names["17->17 9x9/1 @64x48"] == 1 and names["17->17 1x1/1 @64x48"] == 1


def test_layer_summary_totals_and_the_per_layer_best():
    rows = [
        {"mode": "inference", "dtype": "float32", "batch": 8, "layer": layer, "count": count,
         "execution": form, "ms": ms}
        for layer, count, times in (("a", 2, (1.0, 3.0, 2.0)), ("b", 1, (5.0, 4.0, 6.0)))
        for form, ms in zip(("aggregate", "patches", "mixture"), times, strict=True)
    ]  # fmt: skip
    (entry,) = summarise(rows)
    assert entry["total_ms"] == {"aggregate": 7.0, "patches": 10.0, "mixture": 10.0}
    assert entry["per_layer_best_ms"] == 6.0
    assert entry["best_by_layer"] == {"a": "aggregate", "b": "patches"}


def test_only_selects_cases_by_pattern():
    plan = replace(Plan(), only=("pytorch-float16-*-cudagraphs/ldnet_w32/64", "pytorch-*-auto/*/1"))
    assert plan.cases("cuda") == [
        ("pytorch-float32-auto", "ldnet_w32", 1),
        ("pytorch-float32-auto", REFERENCE, 1),
        ("pytorch-float16-auto", "ldnet_w32", 1),
        ("pytorch-float16-auto", REFERENCE, 1),
    ] + [(f"pytorch-float16-{e}-cudagraphs", "ldnet_w32", 64)
         for e in ("aggregate", "patches", "mixture", "auto")]  # fmt: skip
    assert plan.rounds_seconds("cuda") == 5 * 8 * 0.2
    args = gpucheck.parse_args(
        ["--only", "a/*", "b/*/64", "--only-tests", "channels", "--skip-layers"]
    )
    assert args.only == ["a/*", "b/*/64"] and args.only_tests == "channels" and args.skip_layers
