"""The fine-tuning loop for the transformer family: plain PyTorch, one readable function.

Multi-label BCE (optional per-label `pos_weight`), AdamW with linear warm-up and decay,
dynamic padding over length-bucketed batches, gradient accumulation, bf16/fp16 autocast on
CUDA only, early stopping on validation mean ROC-AUC with the best weights kept, resumable
checkpoints, a progress bar on stderr, and MLflow metrics when a run is active.

Several GPUs: start the same program with `torchrun --nproc_per_node N ...`. `train_loop`
then wraps the model in DistributedDataParallel (NCCL on CUDA, gloo on CPU), gives each
process every N-th batch and keeps the processes in step; see docs/transformer.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from toxiguard.models.base import LabelArray
from toxiguard.models.transformer.setup import (
    BEST,
    LATEST,
    TRAINER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    Distributed,
    has_checkpoint,
    load_weights,
    log_progress,
    progress_bar,
    save_checkpoint,
    save_weights,
)
from toxiguard.models.transformer.windows import length_bucketed_batches, pad_batch

logger = logging.getLogger(__name__)

# Validation metrics for a model: must hold "mean_roc_auc"; other keys are logged as they are.
Evaluator = Callable[[nn.Module], dict[str, float]]


@dataclass(frozen=True)
class LoopConfig:
    """How to train: the optimisation settings of one fine-tuning run."""

    epochs: int = 1
    batch_size: int = 32
    grad_accum_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    early_stopping_patience: int = 1
    seed: int = 42
    log_every_steps: int = 50
    checkpoint_every_steps: int = 0
    progress: bool | None = None


@dataclass
class LoopState:
    """Where training stands; saved in every checkpoint so that a run can resume exactly."""

    epoch: int = 0
    batches_done: int = 0
    optimizer_steps: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def positive_weights(labels: LabelArray, mode: str) -> torch.Tensor | None:
    """Return BCE pos_weight per label: None, negatives/positives, or its square root."""
    if mode == "none":
        return None
    positives = labels.sum(axis=0).astype(np.float64)
    negatives = len(labels) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1.0), 1.0)
    if mode == "sqrt-balanced":
        ratio = np.sqrt(ratio)
    elif mode != "balanced":
        raise ValueError(f"unknown pos_weight mode '{mode}'")
    return torch.tensor(np.maximum(ratio, 1e-3), dtype=torch.float32)


def epoch_batches(
    lengths: Sequence[int], config: LoopConfig, epoch: int, dist: Distributed | None
) -> list[npt.NDArray[np.int64]]:
    """Return this process's batches for `epoch` (same on every resume: seeded by seed + epoch)."""
    batches = length_bucketed_batches(lengths, config.batch_size, seed=config.seed + epoch)
    if dist is None:
        return batches
    # Every process must take the same number of steps; drop the last few batches.
    usable = len(batches) - len(batches) % dist.world_size
    return batches[dist.rank : usable : dist.world_size]


def _autocast(device: torch.device) -> tuple[Any, torch.dtype | None]:
    if device.type != "cuda":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast(device_type="cuda", dtype=dtype), dtype


def _optimizer(model: nn.Module, config: LoopConfig) -> torch.optim.AdamW:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_norm_or_bias = name.endswith("bias") or "norm" in name.lower()
        (no_decay if is_norm_or_bias else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def _mlflow_log(metrics: dict[str, float], step: int) -> None:
    # Only log when the caller has already imported mlflow and started a run.
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.log_metrics(metrics, step=step)


def _fingerprint(n_items: int, config: LoopConfig, dist: Distributed | None) -> dict[str, int]:
    return {
        "n_train": n_items,
        "batch_size": config.batch_size,
        "grad_accum_steps": config.grad_accum_steps,
        "seed": config.seed,
        "world_size": dist.world_size if dist else 1,
    }


def _batch_tensors(
    inputs: Sequence[Sequence[int]],
    targets: LabelArray,
    batch: npt.NDArray[np.int64],
    pad_id: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, mask = pad_batch([inputs[i] for i in batch], pad_id)
    y = torch.as_tensor(targets[batch], dtype=torch.float32, device=device)
    return torch.as_tensor(ids, device=device), torch.as_tensor(mask, device=device), y


@contextlib.contextmanager
def _maybe_no_sync(model: nn.Module, skip_sync: bool) -> Iterator[None]:
    if skip_sync and isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        yield


class _Trainer:
    """The state of one `train_loop` call, split into steps small enough to read."""

    def __init__(
        self,
        model: nn.Module,
        lengths: list[int],
        pad_id: int,
        config: LoopConfig,
        device: torch.device,
        pos_weight: torch.Tensor | None,
        checkpoint_dir: Path | None,
        dist: Distributed | None,
    ) -> None:
        self.model, self.lengths, self.pad_id = model, lengths, pad_id
        self.config, self.device = config, device
        self.checkpoint_dir, self.dist = checkpoint_dir, dist
        self.main = dist is None or dist.is_main
        batches_per_epoch = len(epoch_batches(lengths, config, 0, dist))
        total = max(1, math.ceil(batches_per_epoch / config.grad_accum_steps) * config.epochs)
        self.optimizer = _optimizer(model, config)
        self.scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            self.optimizer, int(config.warmup_ratio * total), total
        )
        self.autocast, amp_dtype = _autocast(device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        weight = None if pos_weight is None else pos_weight.to(device)
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
        self.fingerprint = _fingerprint(len(lengths), config, dist)
        self.state = LoopState()
        self.best_in_memory: dict[str, torch.Tensor] | None = None
        self.trained: nn.Module = model

    def wrap_for_ddp(self) -> None:
        """Wrap the model in DistributedDataParallel when running under torchrun."""
        if self.dist is not None:
            device_ids = [self.device.index or 0] if self.device.type == "cuda" else None
            self.trained = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    def resume(self) -> None:
        """Restore weights, optimizer, scheduler, scaler, RNG and loop state from the checkpoint."""
        directory = self.checkpoint_dir
        if directory is None or not has_checkpoint(directory):
            return
        saved = torch.load(directory / LATEST / TRAINER_FILE, map_location="cpu", weights_only=True)
        if saved["fingerprint"] != self.fingerprint:
            raise CheckpointError(
                f"{directory}: checkpoint was made for {saved['fingerprint']}, "
                f"not {self.fingerprint}; use another checkpoint_dir or the same data and settings"
            )
        load_weights(self.model, directory / LATEST)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng"])
        if self.device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        self.state = LoopState(**saved["state"])
        logger.info(
            "resuming from %s: epoch %d, batch %d, optimizer step %d",
            directory,
            self.state.epoch,
            self.state.batches_done,
            self.state.optimizer_steps,
        )

    def checkpoint(self) -> None:
        """Write the resumable checkpoint (main process only)."""
        if self.checkpoint_dir is None or not self.main:
            return
        cuda = self.device.type == "cuda"
        trainer = {
            "fingerprint": self.fingerprint,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None,
            "state": asdict(self.state),
        }
        save_checkpoint(self.checkpoint_dir, self.model, trainer)

    def step(
        self,
        inputs: Sequence[Sequence[int]],
        targets: LabelArray,
        batch: npt.NDArray[np.int64],
        update: bool,
    ) -> float:
        """Run forward and backward on a batch (optimizer too on `update`); return its loss."""
        config = self.config
        ids, mask, y = _batch_tensors(inputs, targets, batch, self.pad_id, self.device)
        with _maybe_no_sync(self.trained, skip_sync=not update):
            with self.autocast():
                logits = self.trained(input_ids=ids, attention_mask=mask).logits
                loss = self.loss_fn(logits.float(), y) / config.grad_accum_steps
            self.scaler.scale(loss).backward()
        if update:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.state.optimizer_steps += 1
        return float(loss.detach()) * config.grad_accum_steps

    def train_epoch(
        self,
        epoch: int,
        inputs: Sequence[Sequence[int]],
        targets: LabelArray,
        on_step: Callable[[LoopState], None] | None,
    ) -> dict[str, float]:
        """Train one epoch from where the state says; return its mean loss and samples/s."""
        config, state = self.config, self.state
        batches = epoch_batches(self.lengths, config, epoch, self.dist)
        self.trained.train()
        started, samples, loss_sum, loss_count = time.perf_counter(), 0, 0.0, 0
        epoch_loss, epoch_batches_seen = 0.0, 0
        with progress_bar(self.main and config.progress) as progress:
            task = progress.add_task(
                f"epoch {epoch + 1}/{config.epochs}",
                total=len(batches),
                completed=state.batches_done,
                loss=float("nan"),
                rate=0.0,
            )
            first = state.batches_done
            for index in range(first, len(batches)):
                update = (index + 1) % config.grad_accum_steps == 0 or index + 1 == len(batches)
                loss = self.step(inputs, targets, batches[index], update)
                loss_sum, loss_count = loss_sum + loss, loss_count + 1
                epoch_loss, epoch_batches_seen = epoch_loss + loss, epoch_batches_seen + 1
                state.batches_done = index + 1
                samples += len(batches[index])
                rate = samples / max(time.perf_counter() - started, 1e-9)
                progress.update(task, advance=1, loss=loss_sum / loss_count, rate=rate)
                if update and self.main and state.optimizer_steps % config.log_every_steps == 0:
                    lr = self.scheduler.get_last_lr()[0]
                    metrics = {"train_loss": loss_sum / loss_count, "learning_rate": lr}
                    _mlflow_log(metrics, state.optimizer_steps)
                    if progress.disable:  # no bar (not a terminal): a log line instead
                        seconds_per_batch = (time.perf_counter() - started) / (index + 1 - first)
                        eta = seconds_per_batch * (len(batches) - index - 1)
                        position = (epoch + 1, config.epochs, index + 1, len(batches))
                        log_progress(position, metrics["train_loss"], rate, eta)
                    loss_sum, loss_count = 0.0, 0
                every = config.checkpoint_every_steps
                if update and every > 0 and state.optimizer_steps % every == 0:
                    self.checkpoint()
                if on_step is not None:
                    on_step(state)
        return {
            "train_loss": epoch_loss / max(epoch_batches_seen, 1),
            "train_samples": float(samples),
            "train_samples_per_s": samples / max(time.perf_counter() - started, 1e-9),
        }

    def end_epoch(self, epoch: int, metrics: dict[str, float], train: dict[str, float]) -> None:
        """Record the epoch's metrics, keep the best weights, decide on stopping, checkpoint."""
        config, state = self.config, self.state
        score = metrics["mean_roc_auc"]
        state.history.append({"epoch": float(epoch + 1), **metrics, **train})
        state.epoch, state.batches_done = epoch + 1, 0
        if self.main:
            logged = {f"val_{k}": v for k, v in metrics.items()}
            logged["epoch_train_loss"] = train["train_loss"]
            logged["train_samples_per_s"] = train["train_samples_per_s"]
            _mlflow_log(logged, epoch + 1)
        logger.info(
            "epoch %d/%d: validation mean ROC-AUC %.4f, %.1f samples/s",
            epoch + 1,
            config.epochs,
            score,
            train["train_samples_per_s"],
        )
        if state.best_epoch < 0 or score > state.best_score:
            state.best_score, state.best_epoch, state.bad_epochs = score, epoch + 1, 0
            if self.checkpoint_dir is None:
                weights = self.model.state_dict().items()
                self.best_in_memory = {k: v.detach().cpu().clone() for k, v in weights}
            elif self.main:
                save_weights(self.model, self.checkpoint_dir / BEST)
        else:
            state.bad_epochs += 1
        patience = config.early_stopping_patience
        state.stopped_early = 0 < patience <= state.bad_epochs and epoch + 1 < config.epochs
        self.checkpoint()
        if state.stopped_early:
            logger.info("early stopping: no improvement for %d epoch(s)", state.bad_epochs)

    def restore_best(self) -> None:
        """Load the best epoch's weights into the model."""
        if self.dist is not None:
            torch.distributed.barrier()
        best = None if self.checkpoint_dir is None else self.checkpoint_dir / BEST
        if best is not None and (best / WEIGHTS_FILE).is_file():
            load_weights(self.model, best)
        elif self.best_in_memory is not None:
            self.model.load_state_dict(self.best_in_memory)


def train_loop(
    model: nn.Module,
    inputs: Sequence[Sequence[int]],
    targets: LabelArray,
    *,
    evaluate: Evaluator,
    config: LoopConfig,
    pad_id: int,
    device: torch.device,
    pos_weight: torch.Tensor | None = None,
    checkpoint_dir: Path | None = None,
    dist: Distributed | None = None,
    on_step: Callable[[LoopState], None] | None = None,
) -> LoopState:
    """Fine-tune `model` in place on token-id `inputs`; return the final state.

    `model(input_ids=..., attention_mask=...)` must return an object with `.logits`. After each
    epoch `evaluate(model)` scores the validation split; the weights of the epoch with the best
    "mean_roc_auc" are loaded back at the end. With `checkpoint_dir`, training resumes from the
    checkpoint found there and writes one after every epoch (and every `checkpoint_every_steps`
    optimizer steps). `on_step(state)` is called after every batch.
    """
    model.to(device)
    lengths = [len(seq) for seq in inputs]
    trainer = _Trainer(model, lengths, pad_id, config, device, pos_weight, checkpoint_dir, dist)
    trainer.resume()
    trainer.wrap_for_ddp()
    for epoch in range(trainer.state.epoch, config.epochs):
        if trainer.state.stopped_early:
            break
        train = trainer.train_epoch(epoch, inputs, targets, on_step)
        model.eval()
        trainer.end_epoch(epoch, evaluate(model), train)
    trainer.restore_best()
    model.eval()
    return trainer.state
