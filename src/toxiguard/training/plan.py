"""Which families a training job trains by default, by the hardware it runs on.

With a GPU (or when asked for the full set), a job trains the TF-IDF families, the transformer,
the blend and the cascade. On CPUs alone it trains the TF-IDF families and says how long the
transformer would take here (`transformer_estimate`), from a measured training throughput.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Final

from toxiguard.settings import Settings

#: What a GPU (or --full) adds to the TF-IDF families: the cascade's slow stage and itself.
FULL_EXTRA: Final = ("transformer", "blend", "cascade")
#: Fine-tuning throughput of the default backbone (MiniLM-L6, batch 32, max length 128) on 2
#: CPU cores, end to end: 2 epochs of 33,290 comments took 3,341 s with validation and the ONNX
#: export (benchmarks/README.md, transformer.py; 25.1 comments/s in the second epoch alone).
CPU_TRAIN_COMMENTS_PER_S_2_CORES: Final = 19.9


def accelerator_available() -> bool:
    """Return True when PyTorch is installed and sees a CUDA GPU."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch  # noqa: PLC0415 (the transformer extra; heavy: imported only to look)

    return bool(torch.cuda.is_available())


def default_families(settings: Settings, full: bool | None = None) -> list[str]:
    """Return the families a job trains given none: `training_models`, plus transformer, blend
    and cascade when `full` (None: when a GPU is available and `training_models` was not set)."""
    families = list(settings.training_models)
    if full is None:
        full = "training_models" not in settings.model_fields_set and accelerator_available()
    if full:
        families += [family for family in FULL_EXTRA if family not in families]
    return families


@dataclass(frozen=True)
class TransformerEstimate:
    """How long fine-tuning the default transformer would take on this machine's CPUs."""

    train_rows: int
    epochs: int
    cores: int
    seconds: float

    def describe(self) -> str:
        """Return one sentence for the user."""
        minutes = self.seconds / 60
        return (
            f"fine-tuning the transformer on {self.train_rows:,} comments for {self.epochs} "
            f"epochs would take about {minutes:.0f} min on this machine's {self.cores} CPU cores "
            f"(measured end to end: {CPU_TRAIN_COMMENTS_PER_S_2_CORES} comments/s on 2 cores, "
            "taken as linear in cores)"
        )


def transformer_estimate(train_rows: int, epochs: int = 2) -> TransformerEstimate:
    """Return the estimated CPU time of fine-tuning the default transformer."""
    cores = len(os.sched_getaffinity(0))
    per_second = CPU_TRAIN_COMMENTS_PER_S_2_CORES * cores / 2
    return TransformerEstimate(train_rows, epochs, cores, train_rows * epochs / per_second)
