"""Training engine: configs, checkpoints, DDP equivalence, kill-and-resume, NaN stop."""

import csv
import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import COCO_MINI, SHARED

from ldnet.checkpoint import (
    CheckpointError,
    atomic_save,
    load_checkpoint,
)
from ldnet.config import ConfigError, config_from_dict, load_config
from ldnet.evaluation import COCO_METRIC_NAMES, evaluate_coco
from ldnet.inference import ModelRecord, record_from_checkpoint
from ldnet.lineage.initial import load_initial_weights
from ldnet.models import build_model


def tiny_config(tmp_path: Path, **train) -> Path:
    """A real training config on COCO-MINI train2017, small enough for CI."""
    values = {
        "name": "tiny",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "ldnet_s"},
        "data": {
            "dataset": "coco",
            "root": str(COCO_MINI),
            "train_split": "train2017",
            "val_split": "val2017",
            "input_size": [64, 64],
            "workers": 0,
            # No random augmentation: a sample is the same whichever process draws it.
            "augment": {
                "scale_factor": 0.0,
                "rotation_prob": 0.0,
                "flip_prob": 0.0,
                "half_body_prob": 0.0,
            },
        },
        "train": {"epochs": 1, "batch_size": 4, "log_every": 1, "val_every": 100, **train},
        "test": {"batch_size": 16},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run_ldnet(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "ldnet.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def logged_losses(run_dir: Path) -> list[float]:
    with (run_dir / "log.csv").open() as file:
        return [float(row["loss"]) for row in csv.DictReader(file) if row["loss"]]


# -- configs --------------------------------------------------------------------------------


def test_shipped_configs_load():
    configs = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))
    assert len(configs) == 13
    for path in configs:
        config = load_config(path)
        assert config.model.name in path.stem  # each config is named after its network


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"lr_rate": 1}}, "unknown key 'train.lr_rate'"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number, got 'fast'"),
        ({"train": {"epochs": 1.5}}, "train.epochs: expected an integer, got 1.5"),
        ({"data": {"dataset": "lsp"}}, "data.dataset: 'lsp' is not one of coco, mpii"),
        ({"data": {"input_size": [250, 192]}}, "data.input_size: expected [height, width]"),
        ({"model": {"name": "vgg"}}, "model.name: unknown model 'vgg'"),
        ({"test": {"flip": "yes"}}, "test.flip: expected true or false, got 'yes'"),
    ],
)
def test_bad_config_names_the_key(values, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(values)
    assert message in str(error.value)


def test_overrides_are_typed():
    config = config_from_dict({}, ["train.lr=5e-4", "data.input_size=[384,288]", "test.flip=false"])
    assert config.train.lr == 5e-4 and config.data.input_size == [384, 288]
    assert config.test.flip is False
    with pytest.raises(ConfigError, match="expected key=value"):
        config_from_dict({}, ["train.lr"])


def test_cli_reports_bad_config_and_missing_root(tmp_path):
    path = tiny_config(tmp_path)
    result = run_ldnet("train", str(path), "train.momentum=0.9")
    assert result.returncode == 2
    assert "unknown key 'train.momentum'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_ldnet("train", str(path), f"data.root={tmp_path / 'nowhere'}")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not list((tmp_path / "runs").glob("*/last.pt"))


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    model = build_model("ldnet_w32_no_krm", 17)
    record = ModelRecord(
        "ldnet_w32_no_krm", 17, "coco", (256, 192), codec="msra", sigma=1.5, convention="hrnet"
    )
    payload = {**record.to_checkpoint(), "state_dict": model.state_dict()}
    path = atomic_save(payload, tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["state_dict"]["head.final.weight"], model.head.final.weight)
    assert record_from_checkpoint(loaded, "last.pt") == record
    record.check("last.pt", model="ldnet_w32_no_krm", num_joints=17)
    with pytest.raises(CheckpointError, match="for model 'ldnet_w32_no_krm', not 'hrnet_w32'"):
        record.check("last.pt", model="hrnet_w32")
    with pytest.raises(CheckpointError, match="for 17 joints, not 16"):
        record.check("last.pt", num_joints=16)


def test_unsafe_or_corrupt_checkpoints_are_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": Exploit()}, evil)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(broken)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_initial_weights_report(tmp_path):
    source = build_model("ldnet", 16)
    atomic_save({"state_dict": source.state_dict()}, tmp_path / "mpii.pt")
    target = build_model("ldnet", 17)
    report = load_initial_weights(target, tmp_path / "mpii.pt")
    # Everything but the joint-count-dependent layers transfers: the 1x1 heatmap layer and
    # the keypoint refinement module, which works on the heatmaps (one channel per joint).
    theirs = source.state_dict()
    differing = {n for n, v in target.state_dict().items() if v.shape != theirs[n].shape}
    assert set(report["mismatched"]) == differing
    assert {"head.final.weight", "head.final.bias", "head.krm.conv1.0.weight"} <= differing
    assert all(name.startswith(("head.final.", "head.krm.")) for name in differing)
    assert report["missing"] == [] and report["unexpected"] == []
    assert torch.equal(target.stem.conv1[0].weight, source.stem.conv1[0].weight)
    atomic_save({"state_dict": build_model("hrnet_w32").state_dict()}, tmp_path / "hr.pt")
    with pytest.raises(CheckpointError, match="no weight matches"):
        load_initial_weights(torch.nn.Linear(2, 2), tmp_path / "hr.pt")


# -- training runs --------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    """Same global batch (2 x 2 vs 1 x 4), same permutation, BatchNorm statistics over the
    global batch (train.sync_bn, gloo): the same losses. The first loss agrees to 1e-5; later
    ones to 1e-3 relative (`ldnet_s`, measured on a Xeon: 1.1e-7, then 0; the official
    LDNet-w32 gave 4.5e-5 at the second step and 1.4e-3 at the third): float32 sums in another
    order, amplified by BatchNorm over 2x2 maps at 1/32 of a 64x64 input. One process on 1 and
    on 2 threads differs as much, and in float64 the gradients agree to 1e-7 of their scale
    (see test_ddp_gradients_equal_single_process_in_float64). Without sync_bn each process
    normalises its half batch on its own and the first loss already differs by ~2 %.
    SGD, not Adam: Adam's first step moves every weight by about lr x sign(gradient), so a
    gradient that is float noise around zero (a bias before a BatchNorm) moves one way in one
    run and the other way in the other.
    """
    config = tiny_config(tmp_path, max_iters_per_epoch=3, sync_bn=True, optimizer="sgd", lr=1e-3)
    single = run_ldnet(
        "train", str(config), "train.batch_size=4", "--run-dir", str(tmp_path / "one"), "--quiet"
    )
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "ldnet.cli",
            "train",
            str(config),
            "train.batch_size=2",
            "--run-dir",
            str(tmp_path / "two"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one, two = logged_losses(tmp_path / "one"), logged_losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    assert two[0] == pytest.approx(one[0], rel=1e-5)
    for a, b in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=1e-3)
    # ...and the check can fail: a different data order gives clearly different losses.
    other = run_ldnet(
        "train",
        str(config),
        "train.batch_size=4",
        "train.seed=7",
        "--run-dir",
        str(tmp_path / "seed7"),
        "--quiet",
    )
    assert other.returncode == 0
    assert logged_losses(tmp_path / "seed7")[0] != pytest.approx(one[0], rel=0.02)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    # Epochs of 40 steps (~1 s of `ldnet_s`): the kill lands well inside epoch 2, not in its
    # checkpoint write or after it.
    config = tiny_config(tmp_path, epochs=3, max_iters_per_epoch=40, batch_size=2)
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "ldnet.cli",
        "train",
        str(config),
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 300
    # Wait until epoch 1 is checkpointed and epoch 2 is under way, then kill without warning.
    while time.time() < deadline:
        if (run_dir / "last.pt").exists() and any(
            row.startswith("2,") for row in (run_dir / "log.csv").read_text().splitlines()
        ):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    # What a kill during a checkpoint write leaves (atomic_path's temporary): removed on resume.
    (run_dir / ".last.pt.x1y2z3.pt").write_bytes(b"half a checkpoint")
    resumed = run_ldnet("train", str(config), "--run-dir", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {run_dir / 'last.pt'} after epoch 1" in resumed.stdout
    final = load_checkpoint(run_dir / "last.pt")
    assert final["epoch"] == 3 and final["iteration"] == 120
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_resume_from_a_checkpoint_whose_layers_changed_is_one_line(tmp_path):
    # A run folder whose last.pt was written by an earlier version of the same preset (the
    # layer configuration is an interpretation and has changed): one line, exit 2, and the
    # old checkpoint left as it was.
    config = tiny_config(tmp_path, epochs=1, max_iters_per_epoch=1, batch_size=2)
    run_dir = tmp_path / "run"
    first = run_ldnet("train", str(config), "--run-dir", str(run_dir), "--quiet")
    assert first.returncode == 0, first.stderr[-2000:]
    state = load_checkpoint(run_dir / "last.pt")
    name = next(key for key in state["state_dict"] if key.endswith("attention.fc1.weight"))
    state["state_dict"][name] = torch.zeros(1, 1, 1, 1)
    torch.save(state, run_dir / "last.pt")
    before = (run_dir / "last.pt").read_bytes()
    result = run_ldnet("train", str(config), "train.epochs=2", "--run-dir", str(run_dir), "--quiet")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and "last.pt: weights do not fit model" in message[0]
    assert name in message[0]
    assert (run_dir / "last.pt").read_bytes() == before


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # Epoch 1 trains normally; from epoch 2 the step schedule multiplies the lr by 1e30,
    # which blows the weights up and the loss becomes NaN/inf.
    config = tiny_config(tmp_path, epochs=3, max_iters_per_epoch=3, lr_steps=[1], lr_factor=1e30)
    run_dir = tmp_path / "run"
    result = run_ldnet("train", str(config), "--run-dir", str(run_dir), "--quiet")
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "loss is" in message and "at epoch 2" in message and "last good checkpoint" in message
    assert "Traceback" not in result.stderr
    state = load_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 1
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )


def _ddp_gradients(rank: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ldnet.engine.sync_bn import convert_to_cpu_sync_batchnorm

    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    images, target = _gradient_batch()
    torch.manual_seed(1)
    model = DistributedDataParallel(convert_to_cpu_sync_batchnorm(build_model("ldnet_s")))
    half = [rank, rank + 2]  # rank r gets samples r and r + 2, as DistributedSampler would
    ((model(images[half]) - target[half]) ** 2).mean().backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.module.named_parameters()}, out_file)
    # Teardown in this order: PyTorch 2.13 can deadlock when the DDP reducer is freed while
    # the group is torn down (the main thread, holding the GIL, waits in the gloo group's
    # destructor for a worker thread that needs the GIL to free its last work item; seen
    # once here). The barrier lets the workers finish; the model goes while the group lives.
    dist.barrier()
    del model
    gc.collect()
    dist.destroy_process_group()


def _gradient_batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 32, 32, generator=generator, dtype=torch.float64)
    target = torch.rand(4, 17, 8, 8, generator=generator, dtype=torch.float64)
    return images, target


@pytest.mark.slow
def test_ddp_gradients_equal_single_process_in_float64(tmp_path):
    """DDP over 2 CPU processes with synchronised BatchNorm computes the gradient of the
    global batch exactly (float64 removes float32's rounding differences)."""
    import torch.multiprocessing as mp

    out_file = tmp_path / "ddp.pt"
    mp.spawn(_ddp_gradients, args=(str(tmp_path / "init"), str(out_file)), nprocs=2)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        images, target = _gradient_batch()
        torch.manual_seed(1)
        model = build_model("ldnet_s")
        ((model(images) - target) ** 2).mean().backward()
    finally:
        torch.set_default_dtype(default)
    ddp = torch.load(out_file, weights_only=True)
    scale = max(p.grad.abs().max() for p in model.parameters())
    for name, parameter in model.named_parameters():
        # 1e-7 of the largest gradient: float64 rounding, amplified by BatchNorm over 1x1
        # maps at 1/32 of a 32x32 input; float32 (or a wrong gradient) is off by > 1e-3.
        assert (ddp[name] - parameter.grad).abs().max() <= 1e-7 * scale, name


def test_temperature_is_the_release_s_unless_annealed():
    """Default: the model's own temperature (34, the official construction value) is never
    touched. `train.temperature_anneal`: the official module's update, 3 lower per epoch
    down to 1: 34, 31, ..., 4 over the first 11 epochs, then 1."""
    from ldnet.engine.train import attention_temperature_at
    from ldnet.models.ldconv import INITIAL_TEMPERATURE

    assert INITIAL_TEMPERATURE == 34.0
    default = config_from_dict({})
    assert default.train.temperature_anneal is False
    assert all(attention_temperature_at(default, epoch) is None for epoch in range(210))
    annealed = config_from_dict({"train": {"temperature_anneal": True}})
    schedule = [attention_temperature_at(annealed, epoch) for epoch in range(14)]
    assert schedule == [34, 31, 28, 25, 22, 19, 16, 13, 10, 7, 4, 1, 1, 1]
    assert attention_temperature_at(annealed, 209) == 1.0
    for old in ("temperature_start", "temperature_epochs", "intermediate_loss_weight"):
        with pytest.raises(ConfigError, match=f"unknown key 'train.{old}'"):
            config_from_dict({"train": {old: 1}})


@pytest.mark.parametrize(("anneal", "expected"), [(False, [34.0, 34.0]), (True, [34.0, 31.0])])
def test_training_sets_the_temperature_per_epoch(tmp_path, monkeypatch, anneal, expected):
    """The temperature the model trains each epoch with, read from the model itself."""
    from ldnet.engine import train as engine
    from ldnet.models import attention_temperature

    seen = []
    original = engine.train_one_epoch

    def recording(session, progress, bar):
        original(session, progress, bar)
        seen.append(attention_temperature(engine.unwrap(session.model)))

    monkeypatch.setattr(engine, "train_one_epoch", recording)
    config = load_config(
        tiny_config(tmp_path),
        ["model.name=ldnet_s", "train.epochs=2", "train.max_iters_per_epoch=1",
         "train.batch_size=2", f"train.temperature_anneal={str(anneal).lower()}"],
    )  # fmt: skip
    engine.train(config, tmp_path / "run", device="cpu", progress=False)
    assert seen == expected
    # The checkpoint records the temperature the weights were last trained at, and a model
    # loaded from it runs at that temperature.
    from ldnet.inference.weights import load_model

    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["model"]["temperature"] == expected[-1]
    assert attention_temperature(load_model(tmp_path / "run" / "last.pt")[0]) == expected[-1]


def test_learning_rate_schedule():
    from ldnet.engine.train import learning_rate

    config = config_from_dict({"train": {"lr": 1e-3, "lr_steps": [170, 200], "warmup_iters": 10}})
    assert learning_rate(config, 0, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 0, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 169, 5000) == pytest.approx(1e-3)
    assert learning_rate(config, 170, 5000) == pytest.approx(1e-4)
    assert learning_rate(config, 209, 9000) == pytest.approx(1e-5)


# -- ldnet test on real data ------------------------------------------------------------------

SAMPLES_COCO = SHARED / "samples" / "coco"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """(config, last.pt) of a two-iteration run: real weights in the real format."""
    tmp_path = tmp_path_factory.mktemp("tiny")
    config = tiny_config(tmp_path, max_iters_per_epoch=2)
    run_dir = tmp_path / "run"
    result = run_ldnet("train", str(config), "--run-dir", str(run_dir), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    return config, run_dir / "last.pt"


@pytest.mark.slow
def test_test_command_on_coco_mini_val2017_with_ground_truth_boxes(tiny_checkpoint, tmp_path):
    import json

    from pycocotools.coco import COCO

    config, weights = tiny_checkpoint
    run_dir = tmp_path / "test"
    args = ("test", str(config), "--weights", str(weights), "--run-dir", str(run_dir), "--json")
    result = run_ldnet(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout)
    assert tuple(metrics) == COCO_METRIC_NAMES
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    # The printed metrics are the official evaluator's on the results file written.
    ann = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
    official = evaluate_coco(json.loads((run_dir / "results.json").read_text()), ann)
    assert list(metrics.values()) == pytest.approx(list(official.values()), abs=1e-12)
    # One result per labelled person of val2017 (68 of its 118 boxes: as in HRNet, boxes
    # without keypoints are not tested), scoreable by the official API.
    gt = COCO(str(COCO_MINI / "annotations" / "person_keypoints_val2017.json"))
    results = gt.loadRes(str(run_dir / "results.json"))
    labelled = [a for a in gt.loadAnns(gt.getAnnIds(catIds=[1])) if a["num_keypoints"] > 0]
    assert len(results.getAnnIds()) == len(labelled) == 68


@pytest.mark.slow
def test_test_command_with_detection_boxes_and_own_annotation_file(tiny_checkpoint, tmp_path):
    import json

    config, weights = tiny_checkpoint
    detections = SAMPLES_COCO / "test_coco_det_AP_H_56.json"
    common = ("--weights", str(weights), "--ann", str(SAMPLES_COCO / "test_coco.json"))
    common += ("--images", str(SAMPLES_COCO), "--json")
    result = run_ldnet(
        "test", str(config), *common, "--detections", str(detections), "--run-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((tmp_path / "results.json").read_text())
    official = evaluate_coco(written, SAMPLES_COCO / "test_coco.json")
    assert json.loads(result.stdout)["AP"] == pytest.approx(official["AP"], abs=1e-12)
    # Every detected image gets people; OKS-NMS may merge duplicates, never invent images.
    detected = {d["image_id"] for d in json.loads(detections.read_text())}
    assert {r["image_id"] for r in written} == detected

    # An empty detection file: a valid empty result with a warning, not a crash.
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    out = tmp_path / "empty-run"
    result = run_ldnet(
        "test", str(config), *common, "--detections", str(empty), "--run-dir", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning" in result.stderr.lower() and "no detection" in result.stderr.lower()
    assert json.loads((out / "results.json").read_text()) == []


def test_test_command_needs_ann_and_images_together(tmp_path):
    config = tiny_config(tmp_path)
    result = run_ldnet("test", str(config), "--weights", "x.pt", "--ann", "a.json")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("--ann and --images go together")
