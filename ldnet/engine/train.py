"""`ldnet train`: the training loop, top to bottom.

check files -> build data -> build model -> (resume) -> for each epoch: train one epoch,
validate, save. Checkpoints are written atomically (``last.pt`` every epoch, ``best.pt`` on a
new best), so a killed run resumes from ``last.pt`` with no corrupt file; a non-finite loss
stops the run before anything is saved from the bad step.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ldnet.checkpoint import atomic_save, load_checkpoint, load_weights_strict
from ldnet.config import ExperimentConfig, config_to_dict, save_config
from ldnet.data.dataset import before_forking_workers, worker_init_fn
from ldnet.errors import LDNetError
from ldnet.files import remove_stale_temporaries
from ldnet.inference import ModelRecord, record_from_checkpoint
from ldnet.lineage.initial import describe_initial_weights, load_initial_weights
from ldnet.models import attention_temperature, build_model, set_attention_temperature
from ldnet.models.fuse import to_channels_last
from ldnet.models.ldconv import INITIAL_TEMPERATURE

from . import distributed
from .data import check_test_files, record_of, test_dataset, train_dataset
from .logs import RunLog
from .runs import write_json_atomic
from .step import adam, apply_gradients, forward_loss
from .sync_bn import convert_to_cpu_sync_batchnorm
from .test import predictor_for, score_dataset


class TrainingDiverged(LDNetError, RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Progress:
    """Where a run is: what a checkpoint restores."""

    epoch: int = 0  # epochs completed
    iteration: int = 0
    best: float = -math.inf  # best value of the main metric so far
    metrics: dict[str, float] = field(default_factory=dict)  # the last validation's


def unwrap(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


def checkpoint_payload(config, model, optimizer, scaler, epoch, iteration, best):
    """A checkpoint: the weights' record (network, joint set, codec, convention, the
    attention temperature the weights were last trained at), the weights, the optimiser
    state and where the run is."""
    record = replace(record_of(config), temperature=attention_temperature(unwrap(model)))
    return {
        "format": "ldnet-checkpoint-1",
        **record.to_checkpoint(),
        "state_dict": unwrap(model).state_dict(),
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
    return adam(parameters, train.lr, train.weight_decay, decoupled=train.optimizer == "adamw")


def learning_rate(config: ExperimentConfig, epoch: int, iteration: int) -> float:
    """Step schedule (x ``lr_factor`` at each epoch of ``lr_steps``) with an optional linear
    warm-up over the first ``warmup_iters`` iterations. A pure function of the position, so
    a resumed run continues on the same curve."""
    train = config.train
    lr = train.lr * train.lr_factor ** sum(epoch >= step for step in train.lr_steps)
    if train.warmup_iters and iteration < train.warmup_iters:
        lr *= (iteration + 1) / train.warmup_iters
    return lr


# The official LDConv's temperature schedule: its attention starts at INITIAL_TEMPERATURE (34)
# and each call of its update method takes 3 off, down to 1. The release never calls it (its
# training script is missing); `train.temperature_anneal` calls it once per epoch.
TEMPERATURE_STEP = 3.0
FINAL_TEMPERATURE = 1.0


def attention_temperature_at(config: ExperimentConfig, epoch: int) -> float | None:
    """The LDConv attention temperature for ``epoch`` (0-based), or None to leave the model's
    own (34 from construction, as the release trains and tests) untouched.

    With ``train.temperature_anneal``: max(34 - 3 * epoch, 1), i.e. 34, 31, ..., 4 over the
    first 11 epochs and 1 from then on. A pure function of the epoch, so a resumed run (whose
    model is built afresh at 34) continues on the same curve."""
    if not config.train.temperature_anneal:
        return None
    return max(INITIAL_TEMPERATURE - TEMPERATURE_STEP * epoch, FINAL_TEMPERATURE)


# -- the named steps ------------------------------------------------------------------------
def build_loader(config: ExperimentConfig, info) -> DataLoader:
    # Each process draws its own augmentation stream: the dataset's seed depends on the rank
    # and each DataLoader worker mixes it into its own (data.dataset.worker_init_fn).
    dataset = train_dataset(config, seed=config.train.seed + 1000 * info.rank)
    # One sampler for one or many processes: the same seed gives the same permutation, so a
    # run on N processes sees the same global batches as a run on one.
    sampler = DistributedSampler(
        dataset, info.world_size, info.rank, shuffle=True, seed=config.train.seed
    )
    if config.data.workers > 0:
        before_forking_workers()
    return DataLoader(
        dataset,
        batch_size=config.train.batch_size,
        sampler=sampler,
        num_workers=config.data.workers,
        worker_init_fn=worker_init_fn,
        pin_memory=info.device.type == "cuda",
        drop_last=len(dataset) >= config.train.batch_size * info.world_size,
        persistent_workers=config.data.workers > 0,
    )


def build_network(config: ExperimentConfig, record: ModelRecord, info, initialise: bool):
    model = build_model(record.model, record.num_joints)
    if config.model.init_weights and initialise:
        from ldnet.lineage.download import resolve_weights

        # A path, or a catalogue name (`hrnet_w32_imagenet`) fetched and verified once.
        path = resolve_weights(config.model.init_weights, kind="backbone")
        report = load_initial_weights(model, path)
        if info.is_main:
            print(describe_initial_weights(path, report))
    model.to(info.device)
    if info.device.type == "cpu":
        to_channels_last(model)
    if config.train.sync_bn and info.distributed:
        if info.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = convert_to_cpu_sync_batchnorm(model)
    if info.distributed:
        device_ids = [info.local_rank] if info.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    return model


def resume_from(path, record: ModelRecord, model, optimizer, scaler, info) -> Progress:
    state = load_checkpoint(path)
    record_from_checkpoint(state, str(path)).check(
        str(path), model=record.model, num_joints=record.num_joints
    )
    # One line, not PyTorch's list of every mismatched tensor, when the preset's layers have
    # changed since the checkpoint was written (docs/model.md).
    load_weights_strict(unwrap(model), state, str(path), record.model)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    if info.is_main:
        print(f"resumed from {path} after epoch {state['epoch']}")
    return Progress(state["epoch"], state["iteration"], state["best"])


@dataclass
class Session:
    """What one training run works with, built once by ``train``."""

    config: ExperimentConfig
    run_dir: Path
    info: distributed.DistInfo
    loader: DataLoader
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    log: RunLog | None
    steps_per_epoch: int


def train_one_epoch(session: Session, progress: Progress, bar) -> None:
    """One pass over the (possibly capped) epoch; advances ``progress.iteration``."""
    config, model, optimizer, scaler = (
        session.config,
        session.model,
        session.optimizer,
        session.scaler,
    )
    info, log, epoch = session.info, session.log, progress.epoch
    session.loader.sampler.set_epoch(epoch)
    temperature = attention_temperature_at(config, epoch)
    if temperature is not None:
        set_attention_temperature(model, temperature)
    model.train()
    use_amp = scaler.is_enabled()
    started, seen = time.perf_counter(), 0
    for step, (images, target, weight, _) in enumerate(session.loader):
        if step >= session.steps_per_epoch:
            break
        lr = learning_rate(config, epoch, progress.iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = images.to(info.device, non_blocking=True)
        if info.device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        target = target.to(info.device, non_blocking=True)
        weight = weight.to(info.device, non_blocking=True)
        loss = forward_loss(model, images, target, weight, use_amp)
        mean_loss = distributed.all_reduce_mean(loss.detach(), info)
        if not torch.isfinite(mean_loss):
            raise TrainingDiverged(
                f"loss is {mean_loss.item()} at epoch {epoch + 1}, iteration "
                f"{progress.iteration}; stopped, the last good checkpoint is "
                f"{session.run_dir / 'last.pt'}"
            )
        apply_gradients(loss, optimizer, scaler)
        progress.iteration += 1
        seen += len(images) * info.world_size
        rate = seen / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{mean_loss.item():.3g}", lr=f"{lr:.2g}", sps=f"{rate:.1f}")
        bar.update(1)
        if log and (progress.iteration % config.train.log_every == 0 or step == 0):
            log.train_step(epoch + 1, progress.iteration, mean_loss.item(), lr, rate)


def validate(config, model, record, val_set, device, progress=True) -> dict[str, float]:
    """Metrics of the current weights on the validation set, by the path `ldnet test` runs."""
    predictor = predictor_for(config, unwrap(model), record, device)
    metrics, _ = score_dataset(config, predictor, val_set, progress)
    return metrics


# What a run writes into its folder, each atomically (``remove_stale_temporaries``).
RUN_FILES = ("last.pt", "best.pt", "metrics.json", "config.yaml")


def save(session: Session, progress: Progress, main_metric: str) -> None:
    """``last.pt`` always, ``best.pt`` when the main metric improved, ``metrics.json``."""
    run_dir = session.run_dir
    improved = progress.metrics.get(main_metric, -math.inf) > progress.best
    if improved:
        progress.best = progress.metrics[main_metric]
    payload = checkpoint_payload(
        session.config,
        session.model,
        session.optimizer,
        session.scaler,
        progress.epoch,
        progress.iteration,
        progress.best,
    )
    atomic_save(payload, run_dir / "last.pt")
    if improved:
        atomic_save(payload, run_dir / "best.pt")
    if progress.metrics:
        write_json_atomic(run_dir / "metrics.json", progress.metrics)


def train(
    config: ExperimentConfig,
    run_dir: Path,
    resume: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Train; returns the last validation metrics of this call ({} if none ran)."""
    check_test_files(config)  # every rank, before any process group waits on another
    info = distributed.init_distributed(device)
    torch.manual_seed(config.train.seed)
    record = record_of(config)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # A run killed while writing a checkpoint leaves its temporary file beside it.
        remove_stale_temporaries(run_dir, RUN_FILES)
        save_config(config, run_dir / "config.yaml")
    loader = build_loader(config, info)
    model = build_network(config, record, info, initialise=not resume)
    optimizer = build_optimizer(config, model.parameters())
    scaler = torch.amp.GradScaler("cuda", enabled=config.train.amp and info.device.type == "cuda")
    state = resume_from(resume, record, model, optimizer, scaler, info) if resume else Progress()
    val_set = test_dataset(config, record) if info.is_main else None
    main_metric = config.data.kind.main_metric
    steps = min(len(loader), config.train.max_iters_per_epoch or len(loader))
    log = RunLog(run_dir) if info.is_main else None
    session = Session(config, run_dir, info, loader, model, optimizer, scaler, log, steps)
    last_metrics: dict[str, float] = {}
    try:
        while state.epoch < config.train.epochs:
            description = f"epoch {state.epoch + 1}/{config.train.epochs}"
            show = progress and info.is_main
            with tqdm(total=steps, desc=description, disable=not show, leave=False) as bar:
                train_one_epoch(session, state, bar)
            state.epoch += 1
            due = state.epoch % config.train.val_every == 0 or state.epoch == config.train.epochs
            state.metrics = {}
            if due and info.is_main:
                state.metrics = last_metrics = validate(
                    config, model, record, val_set, info.device, progress
                )
                _report(state, log, main_metric)
            if info.is_main:
                save(session, state, main_metric)
            distributed.barrier(info)
    finally:
        if log:
            log.close()
        # The DDP model goes first, while its process group lives: freed after the group's
        # teardown, PyTorch 2.13's gloo group can deadlock (its destructor, holding the GIL,
        # waits for a worker thread that needs the GIL; seen once in the DDP test).
        del session, model
        gc.collect()
        distributed.cleanup(info)
    return last_metrics


def _report(state: Progress, log, main_metric: str) -> None:
    if log and main_metric in state.metrics:
        log.validation(state.epoch, state.iteration, state.metrics, main_metric)
    if state.metrics:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in state.metrics.items())
        print(f"epoch {state.epoch}: {summary}")


__all__ = ["TrainingDiverged", "attention_temperature_at", "train", "validate"]
