"""The transformer family end to end on real comments: fine-tune, export, quantise, reload.

One short epoch of the packaged MiniLM on 400 seeded rows of the shared data (half of them
with a positive label), max_length 64, so that the module runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import torch

from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import create_model, load_model
from toxiguard.models.transformer.model import ONNX_FILES, TransformerModel
from toxiguard.models.transformer.onnx import roc_auc_metrics
from toxiguard.models.transformer.windows import Windows, head_windows
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Written for this test, not taken from the data.
INSULT = " ".join(["You are a stupid idiot and a pathetic moron."] * 4)


def _subset(frame: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    labels = frame[list(LABELS)].to_numpy()
    positive = np.flatnonzero(labels.sum(axis=1) > 0)
    negative = np.flatnonzero(labels.sum(axis=1) == 0)
    chosen = np.concatenate(
        [
            rng.choice(positive, rows // 2, replace=False),
            rng.choice(negative, rows // 2, replace=False),
        ]
    )
    return frame.iloc[rng.permutation(chosen)]


@pytest.fixture(scope="module")
def splits(shared_train: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return disjoint seeded train (400), validation (100) and held-out (200) rows."""
    rng = np.random.default_rng(2024)
    rows = _subset(shared_train, 700, rng)
    return {"train": rows[:400], "validation": rows[400:500], "held_out": rows[500:]}


def _texts(frame: pd.DataFrame) -> list[str]:
    return [str(text) for text in frame[TEXT_COLUMN]]


def _labels(frame: pd.DataFrame) -> npt.NDArray[np.int_]:
    return frame[list(LABELS)].to_numpy(dtype=np.int64)


@pytest.fixture(scope="module")
def fitted(splits: dict[str, pd.DataFrame]) -> Iterator[TransformerModel]:
    """Return the packaged MiniLM fine-tuned for one short epoch (ONNX int8 runtime)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared runners: one thread avoids oversubscription stalls
    model = create_model(
        "transformer",
        epochs=1,
        max_length=64,
        batch_size=8,
        learning_rate=4e-4,  # high for MiniLM, but 50 steps must teach it something
        window_stride=16,
        seed=0,
        # The parity split here is 100 rows: one swapped pair of a rare label moves the mean
        # ROC-AUC by ~0.001, so the production limit (0.002) is loosened for this small check.
        max_auc_loss=0.01,
    )
    assert isinstance(model, TransformerModel)
    train, validation = splits["train"], splits["validation"]
    model.fit(_texts(train), _labels(train), validation=(_texts(validation), _labels(validation)))
    yield model
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def saved(fitted: TransformerModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the directory the fitted model was saved into."""
    return fitted.save(tmp_path_factory.mktemp("transformer") / "model")


def test_beats_a_constant_predictor_on_held_out_rows(
    fitted: TransformerModel, splits: dict[str, pd.DataFrame]
) -> None:
    held_out = splits["held_out"]
    probs = fitted.predict_proba(_texts(held_out))

    assert probs.shape == (len(held_out), len(LABELS)) and probs.dtype == np.float64
    assert ((probs >= 0) & (probs <= 1)).all()
    metrics = roc_auc_metrics(_labels(held_out), probs)
    # A constant predictor scores 0.5 on every label.
    assert metrics["mean_roc_auc"] > 0.75, metrics
    assert metrics["roc_auc_toxic"] > 0.8, metrics
    assert fitted.history_[0]["train_samples"] == 400


def test_int8_onnx_matches_pytorch(
    fitted: TransformerModel, splits: dict[str, pd.DataFrame]
) -> None:
    report = fitted.export_report_
    assert report["runtime"] == "onnx-int8" and report["int8_rejected"] is False
    assert report["onnx_fp32_max_abs_diff"] < 1e-4
    assert report["onnx_int8_max_abs_diff"] < 0.1  # a broken quantisation is off by ~0.5
    assert report["parity_rows"] == 100

    texts, labels = _texts(splits["held_out"]), _labels(splits["held_out"])
    int8 = fitted.predict_proba(texts)
    fitted.use_runtime("torch")
    try:
        reference = fitted.predict_proba(texts)
    finally:
        fitted.use_runtime("onnx-int8")
    assert np.abs(int8 - reference).max() < 0.1
    loss = (
        roc_auc_metrics(labels, reference)["mean_roc_auc"]
        - roc_auc_metrics(labels, int8)["mean_roc_auc"]
    )
    assert abs(loss) < 0.01


def test_insult_at_the_end_of_a_long_comment_is_not_truncated_away(
    fitted: TransformerModel, splits: dict[str, pd.DataFrame]
) -> None:
    """A toxic comment the model recognises stays recognised after hundreds of benign tokens."""
    toxic = LABELS.index("toxic")
    held_out = splits["held_out"]
    texts, labels = _texts(held_out), _labels(held_out)
    scores = fitted.predict_proba(texts)[:, toxic]
    lengths = np.array([len(ids) for ids in fitted._encode_texts(texts)])
    # The model's clearest short toxic comment, and its calmest clean ones.
    short_toxic = np.flatnonzero((labels[:, toxic] == 1) & (lengths <= 40))
    insult = texts[short_toxic[np.argmax(scores[short_toxic])]]
    calm = np.flatnonzero(labels.sum(axis=1) == 0)
    calm = calm[np.argsort(scores[calm])]
    benign, used = "", 0
    while len(fitted._encode_texts([benign])[0]) < 6 * 64:  # several windows of 64 tokens
        benign, used = f"{benign} {texts[calm[used]]}".strip(), used + 1
    long_insulting = f"{benign} {insult}"

    alone, long_benign, windowed = fitted.predict_proba([insult, benign, long_insulting])[:, toxic]
    tokens = fitted._encode_texts([long_insulting])
    head = head_windows(tokens, fitted.max_length, fitted.specials_)
    truncated = fitted._score(Windows(head, np.zeros(1, dtype=np.int64), 1), fitted._scorer())

    assert alone - long_benign > 0.25, (alone, long_benign)
    # The windows see most of the insult's signal at the end of the long comment ...
    assert windowed - long_benign > 0.5 * (alone - long_benign), (alone, long_benign, windowed)
    # ... which plain truncation to the first max_length tokens would have cut away.
    assert truncated[0, toxic] <= long_benign + 1e-9 < windowed


def _fresh_process(
    script: str, *args: str, env: dict[str, str], cwd: Path | None = None
) -> dict[str, Any]:
    """Run a Python script in a new offline process; return the JSON of its last output line."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        cwd=cwd,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_saved_model_loads_in_a_fresh_process_with_the_same_probabilities(
    fitted: TransformerModel, saved: Path, splits: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    texts = [*_texts(splits["held_out"][:40]), INSULT, ""]
    expected = fitted.predict_proba(texts)
    assert (saved / ONNX_FILES["onnx-int8"]).is_file()
    assert (saved / "tokenizer" / "tokenizer.json").is_file()
    assert (saved / "pytorch" / "model.safetensors").is_file()
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from toxiguard.models import load_model\n"
        f"model = load_model({str(saved)!r})\n"
        f"texts = json.loads(open({str(tmp_path / 'texts.json')!r}).read())\n"
        f"np.save({str(tmp_path / 'probs.npy')!r}, model.predict_proba(texts))\n"
        "print(json.dumps({'runtime': model.runtime_,\n"
        "                  'torch_imported': 'torch' in sys.modules}))\n"
    )
    info = _fresh_process(script, env={"TRANSFORMERS_OFFLINE": "1"})
    assert info == {"runtime": "onnx-int8", "torch_imported": False}
    probs = np.load(tmp_path / "probs.npy")
    assert probs.shape == (len(texts), len(LABELS))
    np.testing.assert_allclose(probs, expected, atol=1e-6)


REGISTRY_SCRIPT = """
import json, sys
import mlflow
model = mlflow.pyfunc.load_model("models:/toxiguard@champion")
texts = json.loads(open(sys.argv[1]).read())
out = model.predict(texts)
inner = model.unwrap_python_model().package.model
print(json.dumps({
    "columns": list(out.columns),
    "probabilities": out.to_numpy().tolist(),
    "runtime": inner.runtime_,
    "torch_imported": "torch" in sys.modules,
}))
"""


def test_trains_registers_and_serves_from_the_registry_as_int8(
    shared_train: pd.DataFrame, settings: Settings, tmp_path: Path
) -> None:
    from toxiguard.training.pipeline import run_training

    data = tmp_path / "train.csv"
    _subset(shared_train, 600, np.random.default_rng(7)).to_csv(data, index=False)
    params = {
        "transformer": {
            "epochs": 1,
            "max_length": 64,
            "batch_size": 8,
            "learning_rate": 4e-4,
            "window_stride": 16,
            "seed": 0,
            "progress": False,
            # 60 validation rows: a single swapped pair moves the mean ROC-AUC by ~0.002.
            "max_auc_loss": 0.05,
        }
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_training(data, ["transformer"], settings, params)
    finally:
        torch.set_num_threads(threads)
    (item,) = result.models
    assert item.decision.promoted and result.champion_version == item.version
    assert 0.5 < item.evaluation.test_mean_roc_auc <= 1.0

    texts = [*_texts(shared_train.iloc[:5]), INSULT]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    served = _fresh_process(
        REGISTRY_SCRIPT,
        str(tmp_path / "texts.json"),
        env={"MLFLOW_TRACKING_URI": settings.tracking_uri},
        cwd=tmp_path,
    )
    assert served["columns"] == list(LABELS)
    assert served["runtime"] == "onnx-int8" and served["torch_imported"] is False
    probabilities = np.asarray(served["probabilities"])
    assert probabilities.shape == (len(texts), len(LABELS))
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


DDP_SCRIPT = """
import json, sys
import numpy as np
import torch
import torch.distributed as dist
from toxiguard.models.transformer.model import TransformerModel

torch.set_num_threads(1)
backbone, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
texts, labels = [], np.zeros((40, 6), dtype=np.int64)
for i in range(40):
    toxic = i % 3 == 0
    texts.append(("you are a stupid idiot " if toxic else "thanks for the edit ") + f"{i}")
    labels[i, 0] = int(toxic)
model = TransformerModel(
    backbone=backbone, epochs=2, max_length=32, batch_size=4, learning_rate=1e-3,
    window_stride=8, seed=0, runtime="onnx-fp32", quantize=False, progress=False,
    early_stopping_patience=0,
).fit(texts[:32], labels[:32], validation=(texts[32:], labels[32:]))
weights = model._load_torch().state_dict()
rank = dist.get_rank()
result = {
    "rank": rank,
    "world_size": dist.get_world_size(),
    "checksum": float(sum(float(v.double().sum()) for v in weights.values())),
    "train_samples": [h["train_samples"] for h in model.history_],
    "runtime": model.runtime_,
    "exported": bool(model.export_report_),
}
with open(f"{out}/rank{rank}.json", "w") as handle:
    json.dump(result, handle)
if rank == 0:
    model.save(f"{out}/model")
dist.destroy_process_group()
"""


def _tiny_backbone(directory: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from toxiguard.models.transformer.model import default_backbone

    tokenizer = AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    config.num_labels = len(LABELS)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_two_process_ddp_training_on_cpu_with_gloo(tmp_path: Path) -> None:
    backbone = _tiny_backbone(tmp_path / "tiny")
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    env: dict[str, Any] = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(tmp_path / "ddp.py"),
        str(backbone),
        str(out),
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-4000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # DDP keeps the replicas identical: both processes end with the same weights ...
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-9)
    # ... each having trained on its own half of the 8 batches of 4 rows per epoch.
    assert ranks[0]["train_samples"] == ranks[1]["train_samples"] == [16.0, 16.0]
    # Only the main process exports ONNX; the others keep PyTorch.
    assert (ranks[0]["runtime"], ranks[0]["exported"]) == ("onnx-fp32", True)
    assert (ranks[1]["runtime"], ranks[1]["exported"]) == ("torch", False)
    from transformers import AutoModelForSequenceClassification

    initial = AutoModelForSequenceClassification.from_pretrained(backbone)
    initial_checksum = float(sum(float(v.double().sum()) for v in initial.state_dict().values()))
    assert ranks[0]["checksum"] != pytest.approx(initial_checksum, rel=1e-9)  # it did train

    model = load_model(out / "model")
    assert model.predict_proba(["thanks for the edit", "you are a stupid idiot"]).shape == (2, 6)
