"""What the transformer's training loop needs around it: the device and torchrun context,
seeds, weight and checkpoint files, and progress reporting.

A checkpoint directory holds `latest/` (weights and `trainer.pt`, the loop's state, replaced
atomically) and `best/` (the best epoch's weights); see docs/transformer.md.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from safetensors.torch import load_model, save_model
from torch import nn

from toxiguard.errors import ToxiguardError

logger = logging.getLogger(__name__)

LATEST = "latest"
BEST = "best"
WEIGHTS_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"


class CheckpointError(ToxiguardError):
    """A checkpoint directory cannot be resumed with this data or these settings."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun/DDP job."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Return whether this is the process that logs, checkpoints and exports."""
        return self.rank == 0


def select_device(name: str = "auto") -> torch.device:
    """Return the torch device for `name` (auto: cuda, then mps, then cpu)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ToxiguardError("device 'cuda' was asked for but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ToxiguardError("device 'mps' was asked for but MPS is not available")
    return torch.device(name)


def distributed_context() -> Distributed | None:
    """Return the DDP context when started by torchrun (initialising it if needed), else None."""
    dist = torch.distributed
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if not dist.is_torchelastic_launched():
            return None
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.get_world_size() < 2:
        return None
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size())


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_weights(model: nn.Module, directory: Path) -> None:
    """Write a model's weights as safetensors into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / WEIGHTS_FILE))


def load_weights(model: nn.Module, directory: Path) -> None:
    """Load weights written by `save_weights` into `model`."""
    load_model(model, str(directory / WEIGHTS_FILE), device=str(next(model.parameters()).device))


def save_checkpoint(directory: Path, model: nn.Module, trainer: dict[str, Any]) -> None:
    target = directory / LATEST
    staging = directory / f"{LATEST}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    save_weights(model, staging)
    torch.save(trainer, staging / TRAINER_FILE)
    retired = directory / f"{LATEST}.old"
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def has_checkpoint(directory: Path | None) -> bool:
    """Return whether `directory` holds a resumable checkpoint."""
    return directory is not None and (directory / LATEST / TRAINER_FILE).is_file()


def log_progress(
    position: tuple[int, int, int, int], loss: float, rate: float, eta_s: float
) -> None:
    """Log where training is, for logs without a progress bar (a file, CI, a Prefect worker)."""
    logger.info(
        "epoch %d/%d: batch %d/%d, loss %.4f, %.1f samples/s, ETA %s",
        *position,
        loss,
        rate,
        time.strftime("%H:%M:%S", time.gmtime(eta_s)),
    )


def progress_bar(show: bool | None) -> Any:
    """Return a rich progress bar on stderr (disabled unless shown or stderr is a terminal)."""
    console = Console(stderr=True)
    visible = show if show is not None else console.is_terminal
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.1f} samples/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not visible,
        redirect_stdout=False,
        redirect_stderr=False,
    )


__all__ = [
    "BEST",
    "LATEST",
    "TRAINER_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "Distributed",
    "distributed_context",
    "has_checkpoint",
    "load_weights",
    "log_progress",
    "progress_bar",
    "save_checkpoint",
    "save_weights",
    "seed_everything",
    "select_device",
]
