"""`toxiguard export space` of a transformer champion: the Space carries the int8 ONNX model and
its tokenizer, installs without torch or transformers, and answers through `gradio_client`
with the probabilities `toxiguard predict` gives (within 1e-6).

The champion is a tiny BERT (2 layers, 32 wide; the packaged MiniLM's tokenizer) fine-tuned
for one epoch on the demo corpus: what is checked is the serving path, not the model's quality.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.services import server_environment
from tests.integration.test_export import COMMENTS, _cli, install_space, running_space
from tests.integration.test_transformer import _tiny_backbone
from toxiguard.labels import LABELS
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(1500)
def test_transformer_space_runs_on_onnx_without_torch(tmp_path: Path) -> None:
    from gradio_client import Client

    from toxiguard.data.demo import write_demo_corpus
    from toxiguard.training.pipeline import run_training

    home = tmp_path / "home"
    settings = Settings.model_validate(
        {"home": home, "mlflow_tracking_uri": f"sqlite:///{home.resolve() / 'mlflow.db'}"}
    )
    params = {
        "backbone": str(_tiny_backbone(tmp_path / "tiny")),
        "epochs": 1,
        "max_length": 32,
        "batch_size": 16,
        "max_auc_loss": 0.05,  # a tiny model on 60 validation rows: int8 parity is loose
    }
    data = write_demo_corpus(tmp_path / "demo.csv.gz", n_rows=600)
    trained = run_training(data, ["transformer"], settings, {"transformer": params})
    assert trained.champion_version == 1

    env = server_environment(home, {"MLFLOW_TRACKING_URI": settings.tracking_uri})
    space = tmp_path / "space"
    done = _cli(env, "export", "space", str(space), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (space / "model" / "model.int8.onnx").is_file()
    assert (space / "model" / "tokenizer" / "tokenizer.json").is_file()
    names = {line.split("==")[0] for line in (space / "requirements.txt").read_text().split()}
    assert {"onnxruntime", "tokenizers"} <= names
    assert not names & {"torch", "transformers", "mlflow"}

    python = install_space(space, tmp_path / "venv")
    for missing in ("torch", "transformers"):
        shown = subprocess.run(
            [str(python), "-m", "pip", "show", missing], check=False, capture_output=True
        )
        assert shown.returncode != 0, f"{missing} is installed in the Space's venv"
    # One comment per call, as the Space scores them: int8 dynamic quantisation takes each
    # batch's activation range, so a comment scored beside another moves by ~1e-5 (measured
    # 4.5e-5 here for two comments in one call).
    expected = []
    for text in COMMENTS:
        printed = _cli(env, "predict", "--json", text, cwd=tmp_path)
        assert printed.returncode == 0, printed.stderr
        expected += json.loads(printed.stdout)["predictions"]
    with running_space(space, python) as url:
        client = Client(url, verbose=False)
        for text, cli in zip(COMMENTS, expected, strict=True):
            answer = client.predict(text, api_name="/predict")
            got = [answer["scores"][label] for label in LABELS]
            assert got == pytest.approx([cli["scores"][label] for label in LABELS], abs=1e-6)
            assert answer["flagged"] == cli["flagged"]
