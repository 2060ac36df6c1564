"""Recipe parity with the HRNet reference: files under data.root checked at start-up,
rank-dependent augmentation streams, submission files for test sets without ground truth."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHARED, random_checkpoint
from scipy.io import loadmat

from ldnet.cli import main
from ldnet.config import ConfigError, config_from_dict, load_config, save_config
from ldnet.data.dataset import TopDownDataset, worker_init_fn
from ldnet.engine.data import check_test_files, detection_path, record_of

SAMPLES = SHARED / "samples"
COCO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "coco_ldnet_w32_256x192.yaml"
DETECTIONS = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def coco_root(tmp_path: Path, with_detections: bool = True) -> Path:
    """The seed's COCO layout, filled with the real sample images and annotations."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copytree(SAMPLES / "coco", root / "images" / "val2017", ignore=_json_files)
    shutil.copy(SAMPLES / "coco" / "test_coco.json", root / "annotations" /
                "person_keypoints_val2017.json")  # fmt: skip
    if with_detections:
        (root / DETECTIONS).parent.mkdir()
        shutil.copy(SAMPLES / "coco" / "test_coco_det_AP_H_56.json", root / DETECTIONS)
    return root


def _json_files(folder, names):
    return [name for name in names if name.endswith(".json")]


def test_detection_file_follows_the_data_root_override(tmp_path):
    root = coco_root(tmp_path)
    # The config tests with ground-truth boxes (the release's setting); detector boxes are one
    # override away and their file moves with data.root.
    config = load_config(COCO_CONFIG, [f"data.root={root}", "test.use_gt_boxes=false"])
    assert detection_path(config) == root / DETECTIONS
    check_test_files(config)  # everything validation needs is there
    absolute = load_config(COCO_CONFIG, [f"test.detection_file={root / DETECTIONS}"])
    assert detection_path(absolute) == root / DETECTIONS


def test_missing_detection_file_stops_training_at_start_up(tmp_path, capsys):
    root = coco_root(tmp_path, with_detections=False)
    (root / "images" / "train2017").mkdir()
    code = main(["train", str(COCO_CONFIG), f"data.root={root}", f"output_dir={tmp_path / 'runs'}",
                 "test.use_gt_boxes=false", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"test.detection_file: '{root / DETECTIONS}' does not exist" in err[0]
    assert not list((tmp_path / "runs").glob("*/*.pt"))


def test_mpii_validation_without_gt_valid_mat_stops_at_start_up(tmp_path):
    root = tmp_path / "mpii"
    (root / "annot").mkdir(parents=True)
    shutil.copytree(SAMPLES / "mpii", root / "images", ignore=_json_files)
    shutil.copy(SAMPLES / "mpii" / "test_mpii.json", root / "annot" / "valid.json")
    config = config_from_dict({"data": {"dataset": "mpii", "root": str(root),
                                        "input_size": [256, 256]}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"mpii ground truth '.*annot/gt_valid.mat' does not"):
        check_test_files(config)


def test_each_rank_draws_its_own_augmentation_stream(monkeypatch):
    """torch gives worker k of every process the same seed (the global generator is seeded
    alike everywhere); the rank-dependent dataset seed must still part the streams."""
    from ldnet.data.readers import read_coco

    annotations = read_coco(SAMPLES / "coco" / "test_coco.json", SAMPLES / "coco")
    config = config_from_dict({})
    codec = record_of(config).build_codec()

    def first_draws(rank_seed: int) -> np.ndarray:
        dataset = TopDownDataset(annotations, codec, augment=config.data.augment, seed=rank_seed)
        info = torch.utils.data._utils.worker.WorkerInfo(
            id=0, num_workers=2, seed=1234, dataset=dataset
        )
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
        worker_init_fn(0)
        return dataset._rng.random(4)

    rank0, rank1 = first_draws(0), first_draws(1000)  # seeds of ranks 0 and 1 (train.seed 0)
    assert not np.allclose(rank0, rank1)
    np.testing.assert_array_equal(rank0, first_draws(0))  # and each is reproducible


@pytest.mark.slow
def test_coco_test_dev_style_image_info_writes_a_submission_and_skips_metrics(tmp_path, capsys):
    """COCO test-dev: image_info_test-dev2017.json has images but no annotations."""
    info = json.loads((SAMPLES / "coco" / "test_coco.json").read_text())
    info.pop("annotations")
    image_info = tmp_path / "image_info_test-dev2017.json"
    image_info.write_text(json.dumps(info))
    weights = random_checkpoint(tmp_path / "w.pt", dataset="coco")
    config = tmp_path / "c.yaml"
    save_config(
        config_from_dict({"model": {"name": "ldnet_s"}, "data": {"input_size": [64, 64]}}),
        config,
    )
    code = main(["test", str(config), "--weights", str(weights), "--ann", str(image_info),
                 "--images", str(SAMPLES / "coco"), "--detections",
                 str(SAMPLES / "coco" / "test_coco_det_AP_H_56.json"),
                 "--run-dir", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "metrics skipped" in captured.err and "no ground truth" in captured.out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    images = {image["id"] for image in info["images"]}
    assert results and {r["image_id"] for r in results} <= images
    assert all(len(r["keypoints"]) == 51 for r in results)
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_mpii_test_set_writes_pred_mat_and_skips_metrics(tmp_path, capsys):
    people = json.loads((SAMPLES / "mpii" / "test_mpii.json").read_text())
    for person in people:  # the MPII test json: boxes, no joints
        person.pop("joints", None)
        person.pop("joints_vis", None)
    test_json = tmp_path / "test.json"
    test_json.write_text(json.dumps(people))
    weights = random_checkpoint(tmp_path / "w.pt", dataset="mpii")
    config = tmp_path / "c.yaml"
    save_config(
        config_from_dict(
            {"model": {"name": "ldnet_s"}, "data": {"dataset": "mpii", "input_size": [64, 64]}}
        ),
        config,
    )
    code = main(["test", str(config), "--weights", str(weights), "--ann", str(test_json),
                 "--images", str(SAMPLES / "mpii"), "--run-dir", str(tmp_path / "run"),
                 "--quiet"])  # fmt: skip
    assert code == 0 and "metrics skipped" in capsys.readouterr().err
    preds = loadmat(tmp_path / "run" / "pred.mat")["preds"]
    assert preds.shape == (len(people), 16, 2)
    # 1-based MATLAB pixels around each person's (1-based) centre.
    for person, joints in zip(people, preds, strict=True):
        box_px = person["scale"] * 200 * 1.25
        assert np.all(np.abs(joints - np.array(person["center"])) <= box_px)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_init_weights_takes_a_catalogue_name_or_says_it_knows_none():
    """`model.init_weights` goes through the same resolver as `--weights`: a known name is
    fetched once (tests/test_lineage_download.py), an unknown one is one line."""
    from types import SimpleNamespace

    from ldnet.engine.train import build_network
    from ldnet.errors import LDNetError

    config = load_config(COCO_CONFIG, ["model.name=ldnet_s", "model.init_weights=no_such_weights"])
    info = SimpleNamespace(device=torch.device("cpu"), is_main=True, distributed=False)
    with pytest.raises(LDNetError, match="no such file or known weights name: no_such_weights"):
        build_network(config, record_of(config), info, initialise=True)


@pytest.mark.slow
def test_official_recipe_config_trains_and_validates_on_real_data(tmp_path):
    """The shipped official-recipe config, cut to two iterations on COCO-MINI train2017 and a
    CPU-sized input, trains the official network in HRNet's convention with the msra codec,
    validates on val2017 with ground-truth boxes, and records both in the checkpoint."""
    from ldnet.checkpoint import load_checkpoint
    from ldnet.inference import record_from_checkpoint

    run_dir = tmp_path / "run"
    code = main(["train", str(COCO_CONFIG), f"data.root={SHARED / 'coco-mini'}",
                 "data.input_size=[128,96]", "data.workers=0", "train.batch_size=2",
                 "train.epochs=1", "train.max_iters_per_epoch=2", "test.batch_size=16",
                 "--device", "cpu", "--run-dir", str(run_dir), "--quiet"])  # fmt: skip
    assert code == 0
    state = load_checkpoint(run_dir / "last.pt")
    record = record_from_checkpoint(state, "last.pt")
    assert (record.model, record.convention, record.codec) == ("ldnet_w32", "hrnet", "msra")
    assert state["iteration"] == 2 and state["config"]["data"]["train_split"] == "train2017"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0
