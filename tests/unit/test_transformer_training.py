"""The transformer training loop and model family, on a tiny randomly initialised BERT.

The tiny backbone (2 layers, hidden size 32, the packaged MiniLM's tokenizer) makes every test
here run in seconds on a CPU while going through the real code: real tokenizer, real PyTorch
training, real checkpoints, real ONNX export and ONNX Runtime sessions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch import nn

from toxiguard.errors import ModelNotFoundError, ToxiguardError
from toxiguard.labels import LABELS
from toxiguard.models import create_model, load_model
from toxiguard.models.transformer.model import ONNX_FILES, TransformerModel, TransformerParamError
from toxiguard.models.transformer.onnx import roc_auc_metrics
from toxiguard.models.transformer.setup import (
    CheckpointError,
    Distributed,
    seed_everything,
    select_device,
)
from toxiguard.models.transformer.training import (
    LoopConfig,
    LoopState,
    epoch_batches,
    positive_weights,
    train_loop,
)

BENIGN = [
    "thanks for fixing the citation in the history section",
    "the article needs a better source for the population figure",
    "i moved the paragraph about the river to the geography part",
    "please discuss the infobox changes on the talk page first",
    "good catch on the date, i have updated the timeline",
    "could someone check the spelling of the town names",
]
TOXIC = [
    "you are a stupid worthless idiot",
    "shut up you pathetic moron",
    "what an idiot, you clearly know nothing",
    "go away you ignorant fool",
]


def _corpus(n: int, seed: int = 0) -> tuple[list[str], npt.NDArray[np.int_]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], np.zeros((n, len(LABELS)), dtype=np.int64)
    for i in range(n):
        if rng.random() < 0.4:
            texts.append(TOXIC[rng.integers(len(TOXIC))])
            labels[i, [0, 4]] = 1  # toxic, insult
            labels[i, 2] = int(rng.random() < 0.5)  # obscene, noisy
        else:
            texts.append(BENIGN[rng.integers(len(BENIGN))])
    return texts, labels


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Any:
    """Tiny models train faster on one thread, and the test machines' cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a directory holding a tiny random BERT classifier and the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from toxiguard.models.transformer.model import default_backbone

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        problem_type="multi_label_classification",
    )
    config.num_labels = len(LABELS)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _tiny_model(backbone: Path) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    model: nn.Module = AutoModelForSequenceClassification.from_pretrained(backbone)
    return model


def _inputs(backbone: Path, texts: list[str]) -> tuple[list[list[int]], int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    return tokenizer(texts, truncation=True, max_length=32)["input_ids"], tokenizer.pad_token_id


def _evaluator(backbone: Path, texts: list[str], labels: npt.NDArray[np.int_]) -> Any:
    from scipy.special import expit

    from toxiguard.models.transformer.model import torch_scorer
    from toxiguard.models.transformer.windows import pad_batch

    ids, pad_id = _inputs(backbone, texts)

    def evaluate(model: nn.Module) -> dict[str, float]:
        logits = torch_scorer(model, "cpu")(*pad_batch(ids, pad_id))
        return roc_auc_metrics(labels, expit(logits))

    return evaluate


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_positive_weights() -> None:
    labels = np.zeros((10, 6), dtype=np.int64)
    labels[:2, 0] = 1  # 2 positives, 8 negatives
    labels[:5, 1] = 1
    assert positive_weights(labels, "none") is None
    balanced = positive_weights(labels, "balanced")
    assert balanced is not None
    np.testing.assert_allclose(balanced.numpy(), [4, 1, 1, 1, 1, 1], rtol=1e-6)
    root = positive_weights(labels, "sqrt-balanced")
    assert root is not None
    np.testing.assert_allclose(root.numpy(), [2, 1, 1, 1, 1, 1], rtol=1e-6)


def test_epoch_batches_shard_evenly_across_processes() -> None:
    lengths = list(np.random.default_rng(0).integers(1, 50, 101))
    config = LoopConfig(batch_size=4, seed=3)
    whole = epoch_batches(lengths, config, epoch=1, dist=None)
    shards = [epoch_batches(lengths, config, 1, Distributed(rank, 3)) for rank in range(3)]

    assert len({len(s) for s in shards}) == 1  # every process takes the same number of steps
    seen = np.concatenate([b for shard in shards for b in shard])
    assert len(seen) == len(set(seen.tolist()))  # no item on two processes
    assert len(whole) - sum(len(s) for s in shards) < 3
    assert [b.tolist() for b in epoch_batches(lengths, config, 2, None)] != [
        b.tolist() for b in whole
    ]  # a new order every epoch


def test_select_device() -> None:
    assert select_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None:
        assert select_device("auto").type in ("cpu", "mps")
        with pytest.raises(ToxiguardError, match="cuda"):
            select_device("cuda")
    else:
        assert select_device("auto").type == "cuda"


def test_resumed_training_continues_exactly_where_the_checkpoint_left_off(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    texts, labels = _corpus(48)
    inputs, pad_id = _inputs(tiny_backbone, texts)
    evaluate = _evaluator(tiny_backbone, texts[:24], labels[:24])
    config = LoopConfig(
        epochs=2,
        batch_size=8,
        grad_accum_steps=2,
        learning_rate=1e-3,
        warmup_ratio=0.2,
        checkpoint_every_steps=2,
        early_stopping_patience=0,
        seed=5,
        progress=False,
    )

    def run(checkpoint_dir: Path, on_step: Any = None) -> tuple[nn.Module, LoopState]:
        seed_everything(5)
        model = _tiny_model(tiny_backbone)
        state = train_loop(
            model,
            inputs,
            labels,
            evaluate=evaluate,
            config=config,
            pad_id=pad_id,
            device=torch.device("cpu"),
            checkpoint_dir=checkpoint_dir,
            on_step=on_step,
        )
        return model, state

    straight, straight_state = run(tmp_path / "straight")

    class SimulatedCrashError(Exception):
        pass

    def crash(state: LoopState) -> None:
        # 6 batches per epoch, 3 optimizer steps: crash in epoch 2, after step 4's checkpoint.
        if state.epoch == 1 and state.batches_done == 3:
            raise SimulatedCrashError

    with pytest.raises(SimulatedCrashError):
        run(tmp_path / "resumed", on_step=crash)
    saved = torch.load(tmp_path / "resumed" / "latest" / "trainer.pt")
    assert saved["state"]["epoch"] == 1
    assert saved["state"]["batches_done"] == 2
    assert saved["state"]["optimizer_steps"] == 4
    assert saved["optimizer"]["state"]  # AdamW moments are in the checkpoint

    seen: list[tuple[int, int, int]] = []
    resumed, resumed_state = run(
        tmp_path / "resumed",
        on_step=lambda s: seen.append((s.epoch, s.batches_done, s.optimizer_steps)),
    )

    assert seen[0] == (1, 3, 4)  # continued with the third batch of epoch 2, after step 4
    assert resumed_state.optimizer_steps == straight_state.optimizer_steps == 6
    assert [h["epoch"] for h in resumed_state.history] == [1.0, 2.0]
    for name, tensor in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_checkpoint_from_other_settings_is_refused(tiny_backbone: Path, tmp_path: Path) -> None:
    texts, labels = _corpus(16)
    inputs, pad_id = _inputs(tiny_backbone, texts)

    def train(batch_size: int) -> LoopState:
        return train_loop(
            _tiny_model(tiny_backbone),
            inputs,
            labels,
            evaluate=_evaluator(tiny_backbone, texts, labels),
            config=LoopConfig(epochs=1, batch_size=batch_size, seed=1, progress=False),
            pad_id=pad_id,
            device=torch.device("cpu"),
            checkpoint_dir=tmp_path,
        )

    train(8)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(4)


def test_early_stopping_keeps_the_best_epoch(tiny_backbone: Path) -> None:
    texts, labels = _corpus(16)
    inputs, pad_id = _inputs(tiny_backbone, texts)
    scores = iter([0.60, 0.70, 0.65, 0.64, 0.99])
    snapshots: list[dict[str, torch.Tensor]] = []

    def scripted(model: nn.Module) -> dict[str, float]:
        snapshots.append(_weights(model))
        return {"mean_roc_auc": next(scores)}

    model = _tiny_model(tiny_backbone)
    state = train_loop(
        model,
        inputs,
        labels,
        evaluate=scripted,
        config=LoopConfig(
            epochs=5, batch_size=8, learning_rate=1e-3, early_stopping_patience=2, progress=False
        ),
        pad_id=pad_id,
        device=torch.device("cpu"),
    )

    assert len(state.history) == 4 and state.stopped_early
    assert state.best_epoch == 2 and state.best_score == pytest.approx(0.70)
    for name, tensor in snapshots[1].items():
        torch.testing.assert_close(_weights(model)[name], tensor, msg=name)
    assert not torch.equal(snapshots[3]["classifier.weight"], snapshots[1]["classifier.weight"])


def test_losses_and_validation_metrics_go_to_an_active_mlflow_run(
    tiny_backbone: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    texts, labels = _corpus(32)
    inputs, pad_id = _inputs(tiny_backbone, texts)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    caplog.set_level("INFO", logger="toxiguard.models")
    with mlflow.start_run() as run:
        train_loop(
            _tiny_model(tiny_backbone),
            inputs,
            labels,
            evaluate=_evaluator(tiny_backbone, texts, labels),
            config=LoopConfig(epochs=2, batch_size=4, log_every_steps=2, progress=False),
            pad_id=pad_id,
            device=torch.device("cpu"),
        )
    client = mlflow.MlflowClient()
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert all(np.isfinite(m.value) for m in losses)
    epochs = client.get_metric_history(run.info.run_id, "val_mean_roc_auc")
    assert [m.step for m in epochs] == [1, 2]
    assert client.get_metric_history(run.info.run_id, "val_roc_auc_toxic")
    # Without a progress bar, the same steps are logged as lines with counts and ETA.
    progress = [r.getMessage() for r in caplog.records if ": batch " in r.getMessage()]
    assert len(progress) == 8
    assert re.fullmatch(
        r"epoch 1/2: batch 2/8, loss \d+\.\d{4}, \d+\.\d samples/s, ETA \d\d:\d\d:\d\d", progress[0]
    ), progress[0]
    assert progress[-1].startswith("epoch 2/2: batch 8/8") and progress[-1].endswith("ETA 00:00:00")


# ----------------------------------------------------------- the model family
def _fitted(backbone: Path, **params: Any) -> TransformerModel:
    texts, labels = _corpus(64)
    val_texts, val_labels = _corpus(32, seed=1)
    settings = {
        "backbone": str(backbone),
        "epochs": 2,
        "max_length": 32,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "window_stride": 8,
        "seed": 0,
        "max_auc_loss": 1.0,
        **params,
    }
    return TransformerModel(**settings).fit(texts, labels, validation=(val_texts, val_labels))


@pytest.fixture(scope="module")
def fitted_tiny(tiny_backbone: Path) -> TransformerModel:
    """Return the tiny model fine-tuned on the synthetic corpus (ONNX int8 runtime)."""
    return _fitted(tiny_backbone)


def test_fitted_model_trains_predicts_and_reports_parity(fitted_tiny: TransformerModel) -> None:
    texts, _ = _corpus(40, seed=2)
    probs = fitted_tiny.predict_proba(texts)

    assert probs.shape == (40, 6) and probs.dtype == np.float64
    assert ((probs >= 0) & (probs <= 1)).all()
    # A random tiny BERT learns little in 16 steps (the integration test checks learning with
    # the real backbone); its loss must still fall.
    assert fitted_tiny.history_[1]["train_loss"] < fitted_tiny.history_[0]["train_loss"]
    report = fitted_tiny.export_report_
    assert report["runtime"] == "onnx-int8" and report["int8_rejected"] is False
    assert report["onnx_fp32_max_abs_diff"] < 1e-4
    assert report["onnx_int8_max_abs_diff"] < 0.05
    assert len(fitted_tiny.history_) == 2
    assert fitted_tiny.predict_proba([]).shape == (0, 6)


def test_runtimes_agree_and_save_load_round_trips(
    fitted_tiny: TransformerModel, tmp_path: Path
) -> None:
    texts = [*_corpus(20, seed=3)[0], "word " * 300 + "you stupid idiot", ""]
    int8 = fitted_tiny.predict_proba(texts)
    fitted_tiny.use_runtime("torch")
    reference = fitted_tiny.predict_proba(texts)
    fitted_tiny.use_runtime("onnx-fp32")
    fp32 = fitted_tiny.predict_proba(texts)
    fitted_tiny.use_runtime("onnx-int8")

    np.testing.assert_allclose(fp32, reference, atol=1e-5)
    np.testing.assert_allclose(int8, reference, atol=0.05)

    directory = fitted_tiny.save(tmp_path / "model")
    assert {p.name for p in directory.iterdir()} >= {
        "tokenizer",
        "pytorch",
        ONNX_FILES["onnx-fp32"],
        ONNX_FILES["onnx-int8"],
        "transformer_state.json",
    }
    loaded = load_model(directory)
    assert isinstance(loaded, TransformerModel)
    assert loaded.torch_model_ is None  # ONNX Runtime by default: no PyTorch weights loaded
    np.testing.assert_allclose(loaded.predict_proba(texts), int8, atol=1e-9)
    assert loaded.export_report_ == json.loads(json.dumps(fitted_tiny.export_report_))

    # A loaded model can be saved again (e.g. into a registry) without its PyTorch weights
    # in memory, and the copy serves PyTorch when asked.
    again = load_model(loaded.save(tmp_path / "copy"))
    again.use_runtime("torch")
    np.testing.assert_allclose(again.predict_proba(texts), reference, atol=1e-5)


def test_int8_that_loses_too_much_is_not_kept(tiny_backbone: Path, tmp_path: Path) -> None:
    model = _fitted(tiny_backbone, epochs=1, max_auc_loss=-1.0)  # any int8 loses "too much"

    assert model.export_report_["int8_rejected"] is True
    assert model.runtime_ == "onnx-fp32"
    saved = model.save(tmp_path / "model")
    assert not (saved / ONNX_FILES["onnx-int8"]).exists()
    loaded = load_model(saved)
    assert loaded.runtime_ == "onnx-fp32"
    with pytest.raises(ModelNotFoundError, match="onnx-int8"):
        loaded.use_runtime("onnx-int8")


def test_fit_without_validation_holds_out_a_slice_and_resumes(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    texts, labels = _corpus(40)
    params: dict[str, Any] = {
        "backbone": str(tiny_backbone),
        "epochs": 1,
        "max_length": 32,
        "batch_size": 8,
        "window_stride": 8,
        "seed": 0,
        "runtime": "torch",
        "quantize": False,
        "checkpoint_dir": str(tmp_path / "ckpt"),
    }
    first = TransformerModel(**params).fit(texts, labels)
    assert (tmp_path / "ckpt" / "latest" / "trainer.pt").is_file()
    assert first.export_report_["parity_rows"] == 4  # 10% of 40 rows held out
    # Same checkpoint, one more epoch: only the second epoch is trained.
    second = TransformerModel(**{**params, "epochs": 2}).fit(texts, labels)
    assert [h["epoch"] for h in second.history_] == [1.0, 2.0]
    assert second.history_[0] == first.history_[0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"runtime": "tensorrt"}, "runtime"),
        ({"aggregation": "median"}, "aggregation"),
        ({"pos_weight": "huge"}, "pos_weight"),
        ({"epochs": 0}, "epochs"),
        ({"runtime": "onnx-int8", "quantize": False}, "quantize"),
    ],
)
def test_bad_params_are_refused_with_a_clear_message(params: dict[str, Any], message: str) -> None:
    with pytest.raises(TransformerParamError, match=message):
        create_model("transformer", **params)


def test_window_stride_and_max_length_are_checked_against_the_backbone(
    tiny_backbone: Path,
) -> None:
    texts, labels = _corpus(8)
    with pytest.raises(TransformerParamError, match="max_length"):
        TransformerModel(backbone=str(tiny_backbone), max_length=256).fit(texts, labels)
    with pytest.raises(TransformerParamError, match="window_stride"):
        TransformerModel(backbone=str(tiny_backbone), max_length=16, window_stride=14).fit(
            texts, labels
        )


def test_unknown_backbone_is_a_clear_error(tmp_path: Path) -> None:
    texts, labels = _corpus(8)
    with pytest.raises(ModelNotFoundError, match="backbone"):
        TransformerModel(backbone=str(tmp_path / "nowhere")).fit(texts, labels)


def test_unfitted_model_cannot_predict_or_save(tmp_path: Path) -> None:
    model = TransformerModel()
    with pytest.raises(ModelNotFoundError):
        model.predict_proba(["hello"])
    with pytest.raises(ModelNotFoundError):
        model.save(tmp_path)


def test_window_overlap_defaults_to_a_quarter_of_the_window() -> None:
    assert TransformerModel(max_length=64)._stride() == 16
    assert TransformerModel(max_length=64, window_stride=5)._stride() == 5
