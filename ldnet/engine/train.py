"""`ldnet train`: the training loop, top to bottom.

build data -> build model -> (resume) -> loop over epochs: train, validate, checkpoint.
Checkpoints are written atomically (``last.pt`` every epoch, ``best.pt`` on a new best), so a
killed run resumes from ``last.pt`` with no corrupt file; a non-finite loss stops the run
before anything is saved from the bad step.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ldnet.config import ExperimentConfig, config_to_dict, save_config
from ldnet.data.dataset import before_forking_workers, worker_init_fn
from ldnet.errors import LDNetError
from ldnet.models import build_model, set_attention_temperature

from . import distributed
from .checkpoint import (
    CheckpointError,
    atomic_save,
    check_compatible,
    load_checkpoint,
    load_initial_weights,
)
from .data import test_dataset, train_dataset
from .logs import RunLog
from .loss import supervised_loss
from .runs import write_json_atomic
from .sync_bn import convert_to_cpu_sync_batchnorm
from .test import score_dataset

# The metric that decides the `best` checkpoint.
MAIN_METRIC = {"coco": "AP", "crowdpose": "AP", "mpii": "Mean"}


class TrainingDiverged(LDNetError, RuntimeError):
    """The loss became NaN or infinite."""


def checkpoint_payload(config, model, optimizer, scaler, epoch, iteration, best):
    module = model.module if isinstance(model, DistributedDataParallel) else model
    return {
        "format": "ldnet-checkpoint-1",
        "model": {
            "name": config.model.name,
            "num_joints": module.spec.num_joints,
            "dataset": config.data.dataset,
            "input_size": list(config.data.input_size),
        },
        "state_dict": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,  # epochs completed
        "iteration": iteration,
        "best": best,
        "config": config_to_dict(config),
    }


def build_optimizer(config: ExperimentConfig, parameters) -> torch.optim.Optimizer:
    train = config.train
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay
        )
    optimizer_class = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(parameters, lr=train.lr, weight_decay=train.weight_decay)


def learning_rate(config: ExperimentConfig, epoch: int, iteration: int) -> float:
    """Step schedule (x ``lr_factor`` at each epoch of ``lr_steps``) with an optional linear
    warm-up over the first ``warmup_iters`` iterations. A pure function of the position, so
    a resumed run continues on the same curve."""
    train = config.train
    lr = train.lr * train.lr_factor ** sum(epoch >= step for step in train.lr_steps)
    if train.warmup_iters and iteration < train.warmup_iters:
        lr *= (iteration + 1) / train.warmup_iters
    return lr


def _temperature(config: ExperimentConfig, epoch: int) -> float:
    epochs = config.train.temperature_epochs
    if epochs <= 0 or epoch >= epochs:
        return 1.0
    return config.train.temperature_start + (1.0 - config.train.temperature_start) * epoch / epochs


def validate(config, model, device, progress=True) -> tuple[dict[str, float], object]:
    module = model.module if isinstance(model, DistributedDataParallel) else model
    return score_dataset(config, module, test_dataset(config), device, progress)


def train(
    config: ExperimentConfig,
    run_dir: Path,
    resume: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Train; returns the last validation metrics (empty if validation never ran)."""
    info = distributed.init_distributed(device)
    torch.manual_seed(config.train.seed)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")

    # Data
    dataset = train_dataset(config, seed=config.train.seed + 1000 * info.rank)
    # One sampler for one or many processes: the same seed gives the same permutation, so a
    # run on N processes sees the same global batches as a run on one.
    sampler = DistributedSampler(
        dataset, info.world_size, info.rank, shuffle=True, seed=config.train.seed
    )
    if config.data.workers > 0:
        before_forking_workers()
    loader = DataLoader(
        dataset,
        batch_size=config.train.batch_size,
        sampler=sampler,
        num_workers=config.data.workers,
        worker_init_fn=worker_init_fn,
        pin_memory=info.device.type == "cuda",
        drop_last=len(dataset) >= config.train.batch_size * info.world_size,
        persistent_workers=config.data.workers > 0,
    )

    # Model, optimiser, schedule
    model = build_model(config.model.name, dataset.keypoint_set.num_joints)
    if config.model.init_weights and not resume:
        report = load_initial_weights(model, config.model.init_weights)
        if info.is_main:
            print(
                f"initial weights {config.model.init_weights}: {len(report['matched'])} matched, "
                f"{len(report['missing'])} missing, {len(report['unexpected'])} unexpected, "
                f"{len(report['mismatched'])} shape-mismatched"
            )
    model.to(info.device)
    if info.device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    if config.train.sync_bn and info.distributed:
        if info.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = convert_to_cpu_sync_batchnorm(model)
    if info.distributed:
        device_ids = [info.local_rank] if info.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = build_optimizer(config, model.parameters())
    use_amp = config.train.amp and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    # Resume
    start_epoch, iteration, best = 0, 0, -math.inf
    if resume:
        state = load_checkpoint(resume)
        check_compatible(state, config.model.name, dataset.keypoint_set.num_joints, str(resume))
        module = model.module if info.distributed else model
        module.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, iteration, best = state["epoch"], state["iteration"], state["best"]
        if info.is_main:
            print(f"resumed from {resume} after epoch {start_epoch}")

    log = RunLog(run_dir) if info.is_main else None
    main_metric = MAIN_METRIC[config.data.dataset]
    metrics: dict[str, float] = {}
    per_epoch = len(loader)
    if config.train.max_iters_per_epoch:
        per_epoch = min(per_epoch, config.train.max_iters_per_epoch)
    try:
        for epoch in range(start_epoch, config.train.epochs):
            sampler.set_epoch(epoch)
            set_attention_temperature(model, _temperature(config, epoch))
            model.train()
            bar = tqdm(
                total=per_epoch,
                desc=f"epoch {epoch + 1}/{config.train.epochs}",
                disable=not (progress and info.is_main),
                leave=False,
            )
            started, seen = time.perf_counter(), 0
            for step, (images, target, weight, _) in enumerate(loader):
                if step >= per_epoch:
                    break
                lr = learning_rate(config, epoch, iteration)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = images.to(info.device, non_blocking=True)
                if info.device.type == "cpu":
                    images = images.contiguous(memory_format=torch.channels_last)
                target = target.to(info.device, non_blocking=True)
                weight = weight.to(info.device, non_blocking=True)
                with torch.autocast(info.device.type, enabled=use_amp):
                    outputs = model(images, all_outputs=True)
                loss = supervised_loss(
                    outputs, target, weight, config.train.intermediate_loss_weight
                )
                mean_loss = distributed.all_reduce_mean(loss.detach(), info)
                if not torch.isfinite(mean_loss):
                    raise TrainingDiverged(
                        f"loss is {mean_loss.item()} at epoch {epoch + 1}, iteration "
                        f"{iteration}; stopped, the last good checkpoint is "
                        f"{run_dir / 'last.pt'}"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                iteration += 1
                seen += len(images) * info.world_size
                rate = seen / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{mean_loss.item():.3g}", lr=f"{lr:.2g}", sps=f"{rate:.1f}")
                bar.update(1)
                if log and (iteration % config.train.log_every == 0 or step == 0):
                    log.train_step(epoch + 1, iteration, mean_loss.item(), lr, rate)
            bar.close()

            completed = epoch + 1
            due = completed % config.train.val_every == 0 or completed == config.train.epochs
            if due and info.is_main:
                metrics, _ = validate(config, model, info.device, progress)
                if log and main_metric in metrics:
                    log.validation(completed, iteration, metrics, main_metric)
                if metrics:
                    summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                    print(f"epoch {completed}: {summary}")
            if info.is_main:
                payload_best = best
                improved = metrics.get(main_metric, -math.inf) > best
                if improved:
                    payload_best = metrics[main_metric]
                payload = checkpoint_payload(
                    config, model, optimizer, scaler, completed, iteration, payload_best
                )
                atomic_save(payload, run_dir / "last.pt")
                if improved:
                    atomic_save(payload, run_dir / "best.pt")
                    best = payload_best
                if metrics:
                    write_json_atomic(run_dir / "metrics.json", metrics)
                metrics = {}
            distributed.barrier(info)
    finally:
        if log:
            log.close()
        distributed.cleanup(info)
    return _read_metrics(run_dir)


def _read_metrics(run_dir: Path) -> dict:
    import json

    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


__all__ = ["CheckpointError", "TrainingDiverged", "train", "validate"]
