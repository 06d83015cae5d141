"""Fast CPU inference for the transformer family: ONNX export, int8 quantisation, parity checks.

Export uses PyTorch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`):
the newer dynamo exporter needs the `onnxscript` package, which we do not depend on. The
traced graph has dynamic batch and sequence axes and takes `input_ids` and `attention_mask`
(single-sequence classification never needs `token_type_ids`), so any encoder backbone works.
Quantisation is ONNX Runtime's dynamic int8 (weights int8, activations quantised on the fly).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from toxiguard.models.base import LabelArray
from toxiguard.models.metrics import label_roc_aucs, mean_defined
from toxiguard.models.transformer.windows import BatchScorer, IntArray

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
OPSET = 17


def export_onnx(model: nn.Module, path: Path, *, opset: int = OPSET) -> None:
    """Write a sequence-classification model (logits output) to `path` as ONNX, on CPU."""
    # Optional (the 'transformer' extra): only exporting a freshly trained model needs PyTorch.
    import torch  # noqa: PLC0415

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.inner(
                input_ids=input_ids, attention_mask=attention_mask
            ).logits
            return logits

    wrapper = LogitsOnly(copy.deepcopy(model).to("cpu")).eval()
    # A padded example, so that the traced graph keeps the attention-mask path.
    input_ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 0, 0, 0]], dtype=torch.long)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and the legacy-exporter notice
        torch.onnx.export(
            wrapper,
            (input_ids, attention_mask),
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """Write a dynamically int8-quantised copy of the ONNX model `source` to `target`."""
    # The quantizer imports the `onnx` package, which only export after training needs.
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    # quantize_dynamic logs one line per tensor (and a hint) on the root logger; keep it quiet.
    quiet = _QuietQuantizer()
    logging.getLogger().addFilter(quiet)
    try:
        # Per-channel weight scales: same speed as per-tensor here, far smaller probability error.
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().removeFilter(quiet)


class _QuietQuantizer(logging.Filter):
    """Drop ONNX Runtime quantizer chatter below ERROR that it sends to the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_quantizer = "onnxruntime" in record.pathname and "quantization" in record.pathname
        return not from_quantizer or record.levelno >= logging.ERROR


def create_session(model: bytes | Path, threads: int) -> Any:
    """Return an ONNX Runtime CPU session for a model file or its bytes, with `threads` intra-op."""
    # ONNX Runtime takes about 0.5 s to import (measured here); only transformer models use it,
    # so importing the model families (and serving a TF-IDF model) never pays for it.
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def session_scorer(session: Any) -> BatchScorer:
    """Return a batch scorer that runs an ONNX Runtime session built by `export_onnx`."""

    def score(input_ids: IntArray, attention_mask: IntArray) -> npt.NDArray[np.float32]:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        logits: npt.NDArray[np.float32] = session.run([OUTPUT_NAME], feeds)[0]
        return logits

    return score


def roc_auc_metrics(labels: LabelArray, probabilities: npt.NDArray[np.float64]) -> dict[str, float]:
    """Return per-label ROC-AUC ("roc_auc_<label>") and their mean ("mean_roc_auc").

    Labels with a single class in `labels` have no ROC-AUC and are left out of the mean (NaN
    when no label has both classes).
    """
    aucs = label_roc_aucs(labels, probabilities)
    metrics = {f"roc_auc_{label}": auc for label, auc in aucs.items() if auc is not None}
    mean = mean_defined(aucs)
    if mean is None:
        logger.warning("no label has both classes in the validation rows; ROC-AUC undefined")
    metrics["mean_roc_auc"] = float("nan") if mean is None else mean
    return metrics


def parity(
    labels: LabelArray,
    reference: npt.NDArray[np.float64],
    candidate: npt.NDArray[np.float64],
    prefix: str,
) -> dict[str, float]:
    """Return how far `candidate` probabilities are from `reference` ones, keys prefixed.

    `<prefix>_max_abs_diff`: the largest probability difference; `<prefix>_mean_roc_auc`;
    `<prefix>_roc_auc_loss`: the reference's mean ROC-AUC minus the candidate's.
    """
    ref_auc = roc_auc_metrics(labels, reference)["mean_roc_auc"]
    cand_auc = roc_auc_metrics(labels, candidate)["mean_roc_auc"]
    return {
        f"{prefix}_max_abs_diff": float(np.max(np.abs(reference - candidate), initial=0.0)),
        f"{prefix}_mean_roc_auc": cand_auc,
        f"{prefix}_roc_auc_loss": ref_auc - cand_auc,
    }
