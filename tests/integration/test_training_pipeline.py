"""The whole training job on real Jigsaw rows: register, gate, reload, evaluate, score."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from toxiguard.data.perturbations import PERTURBATIONS
from toxiguard.data.validation import load_dataset
from toxiguard.errors import DataValidationError
from toxiguard.labels import LABELS
from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
from toxiguard.registry.promotion import champion_history
from toxiguard.registry.versions import list_versions
from toxiguard.settings import Settings, get_settings
from toxiguard.training.pipeline import run_training

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRESH_PROCESS_SCRIPT = """
import json, sys
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
texts = json.loads(sys.argv[2])
print(json.dumps(model.predict(texts).to_numpy().tolist()))
"""


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory: pytest.TempPathFactory, shared_sample: pd.DataFrame) -> Path:
    """Write 4,000 real rows in Kaggle's gzip CSV format, as a user would supply them."""
    path = tmp_path_factory.mktemp("data") / "train.csv.gz"
    shared_sample.to_csv(path, index=False)
    return path


@pytest.fixture(params=["sqlite", "server"])
def tracking_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Run the test once on embedded sqlite MLflow and once on a real `mlflow server`."""
    if request.param == "server":
        server_url: str = request.getfixturevalue("mlflow_server")
        # A fresh registered model name keeps runs on the shared server apart.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
        monkeypatch.setenv("TOXIGUARD_REGISTERED_MODEL_NAME", f"toxiguard-{os.urandom(4).hex()}")
        monkeypatch.setenv("TOXIGUARD_EXPERIMENT_NAME", f"training-{os.urandom(4).hex()}")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _env() -> dict[str, str]:
    """Return this process's environment (test home, URIs) for a child process."""
    return dict(os.environ)


def test_gate_promotes_only_a_better_model(
    sample_csv: Path, tracking_backend: Settings, tmp_path: Path
) -> None:
    settings = tracking_backend
    weak = run_training(sample_csv, ["complement-nb"], settings)
    assert weak.models[0].decision.promoted, "the first model becomes champion"
    weak_version = weak.models[0].version

    strong = run_training(sample_csv, ["tfidf-lr", "complement-nb"], settings)
    lr, nb_again = strong.models
    assert lr.evaluation.test_mean_roc_auc > weak.models[0].evaluation.test_mean_roc_auc
    assert lr.decision.promoted, lr.decision.reason
    assert lr.decision.champion_before == weak_version
    # the champion was re-scored on this job's test split: same split, same score as before
    assert lr.decision.champion_score == pytest.approx(
        weak.models[0].evaluation.test_mean_roc_auc, abs=1e-9
    )
    assert not nb_again.decision.promoted, "a worse model must not be promoted"
    versions = {v["version"]: v for v in list_versions(settings)}
    assert "champion" in versions[lr.version]["aliases"]
    assert "challenger" in versions[nb_again.version]["aliases"]
    events = champion_history(settings)
    assert [e["version"] for e in events if e["event"] == "promote"] == [weak_version, lr.version]
    # The run holds the audit: its metrics, its tables (MLflow's table view) and its plots.
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(lr.run_id)
    audit = lr.evaluation.audit
    assert audit is not None
    assert run.data.metrics["audit_robustness_worst"] == pytest.approx(audit.robustness.worst_auc)
    tables = {Path(a.path).name for a in client.list_artifacts(lr.run_id, "tables")}
    assert {"audit_bias_test.json", "audit_robustness.json", "audit_neutral.json"} <= tables
    plots = {Path(a.path).name for a in client.list_artifacts(lr.run_id, "plots")}
    assert {"subgroup_aucs_test.png", "subgroup_aucs_templates.png"} <= plots

    # the champion loads in a fresh process, from an empty directory, with the data gone
    texts = ["you are a complete idiot", "thanks for fixing the citation", "I will find you"]
    model, _ = load_toxicity_model(resolve_model_uri(None, settings), settings)
    expected = model.predict_proba(texts)
    shutil.rmtree(strong.splits_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _env()
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS_SCRIPT,
            f"models:/{settings.registered_model_name}@champion",
            json.dumps(texts),
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    got = np.array(json.loads(completed.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_invalid_data_fails_and_keeps_the_champion(
    sample_csv: Path, settings: Settings, tmp_path: Path
) -> None:
    first = run_training(sample_csv, ["complement-nb"], settings)
    broken = pd.read_csv(sample_csv, dtype={"id": str}, keep_default_na=False).head(50)
    broken.loc[7, "threat"] = 2
    bad_path = tmp_path / "bad.csv"
    broken.to_csv(bad_path, index=False)
    with pytest.raises(DataValidationError, match=r"bad\.csv.*row.*8.*threat"):
        run_training(bad_path, ["tfidf-lr"], settings)
    versions = list_versions(settings)
    assert [v["version"] for v in versions] == [first.models[0].version]
    assert "champion" in versions[0]["aliases"]


def _cli(
    *args: str, cwd: Path | None = None, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    toxiguard = Path(sys.executable).with_name("toxiguard")
    env = _env() if columns is None else {**_env(), "COLUMNS": str(columns)}
    return subprocess.run(
        [str(toxiguard), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_cli_train_evaluate_predict_score(sample_csv: Path, tmp_path: Path) -> None:
    trained = _cli("train", "--data", str(sample_csv), "--model", "tfidf-lr", columns=80)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "champion: version 1" in trained.stdout
    # Readable in an 80-column terminal: one line per model, the reason on a line of its own,
    # and none of MLflow's own log lines or download bars (they come with --verbose).
    lines = trained.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, trained.stdout
    assert any(line.split()[:2] == ["tfidf-lr", "│"] for line in lines), trained.stdout
    assert "v1 tfidf-lr: no champion yet" in trained.stdout
    assert "Downloading artifacts" not in trained.stderr
    assert "mlflow.store" not in trained.stderr
    assert "Successfully registered model" not in trained.stderr + trained.stdout

    report_path = tmp_path / "out.json"
    evaluated = _cli("evaluate", "--data", str(sample_csv), "--json", str(report_path))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert set(report["per_label"]) == set(LABELS)
    assert 0.5 < report["mean_roc_auc"] <= 1.0
    assert report["model"]["version"] in (1, "1")

    predicted = _cli(
        "predict",
        "--json",
        "you are a stupid idiot",
        "Thank you for your helpful edit to the article.",
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    payload = json.loads(predicted.stdout)
    insult, nice = payload["predictions"]
    assert insult["scores"]["insult"] > nice["scores"]["insult"]
    assert "insult" in insult["flagged"]
    assert nice["flagged"] == []

    explained = _cli("explain", "--json", "--label", "insult", "thanks, you stupid idiot")
    assert explained.returncode == 0, explained.stderr[-3000:]
    why = json.loads(explained.stdout)
    assert why["method"] == "linear-exact" and list(why["explanations"]) == ["insult"]
    spans = why["explanations"]["insult"]["spans"]
    top = max(spans, key=lambda span: span["contribution"])
    assert top["text"] in {"stupid", "idiot"}
    assert "thanks, you stupid idiot"[top["begin"] : top["end"]] == top["text"]
    table = _cli("explain", "you are an idiot")
    assert table.returncode == 0 and "idiot" in table.stdout

    source = pd.DataFrame(
        {"author": ["a", "b", "c"], "comment_text": ["idiot!", "good edit", "thanks"]}
    )
    source_path = tmp_path / "comments.csv"
    source.to_csv(source_path, index=False)
    scored_path = tmp_path / "scored.parquet"
    scored = _cli("score", str(source_path), str(scored_path))
    assert scored.returncode == 0, scored.stderr[-3000:]
    result = pd.read_parquet(scored_path)
    assert list(result.columns[:2]) == ["author", "comment_text"]
    assert all(f"score_{label}" in result.columns for label in LABELS)
    assert len(result) == 3

    # The audit made at training comes with the model; --data audits on another labelled file.
    audit_path = tmp_path / "audit.json"
    audited = _cli("audit", "--json", str(audit_path), columns=120)
    assert audited.returncode == 0, audited.stderr[-3000:]
    assert "final bias score: test split" in audited.stdout
    assert "Obfuscations" in audited.stdout
    saved = json.loads(audit_path.read_text())
    assert set(saved["robustness"]["perturbed"]) == set(PERTURBATIONS)
    assert saved["bias_templates"]["final_score"] is not None
    neutral = saved["neutral"]["mean_by_term"]
    assert "a gay man" in neutral and "Maria" not in neutral  # the templates' own phrases
    assert saved["model"]["version"] in (1, "1")
    again = _cli("audit", "--data", str(sample_csv), "--json", str(audit_path))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(audit_path.read_text())["bias_test"]["rows"] == len(
        load_dataset(sample_csv).frame
    )
    missing = _cli("audit", "--data", str(tmp_path / "nothing.csv"))
    assert missing.returncode == 2 and "nothing.csv" in missing.stderr
    assert "Traceback" not in missing.stderr

    listed = _cli("models", "list")
    assert listed.returncode == 0 and "champion" in listed.stdout
    history = _cli("models", "history")
    assert history.returncode == 0 and "promote" in history.stdout


def test_cli_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "train.csv"
    bad.write_text('id,comment_text,toxic\n"a1","hello",0\n')
    for args in (
        ("data", "validate", str(bad)),
        ("data", "validate", str(tmp_path / "missing.csv")),
        ("train", "--data", str(bad)),
        ("predict", "hello"),  # no champion yet
        ("explain", "hello", "--label", "rude"),  # no such label
        ("models", "rollback"),  # nothing to roll back to
    ):
        completed = _cli(*args)
        assert completed.returncode == 2, (args, completed.stdout, completed.stderr)
        assert "Traceback" not in completed.stderr
        assert "error:" in completed.stderr
    missing_columns = _cli("data", "validate", str(bad))
    assert "severe_toxic" in missing_columns.stderr
    assert "train.csv" in missing_columns.stderr


def test_data_that_cannot_train_is_refused_before_anything_is_registered(
    tmp_path: Path,
) -> None:
    from toxiguard.data.demo import make_demo_corpus
    from toxiguard.registry.versions import list_versions
    from toxiguard.settings import get_settings

    all_threats = make_demo_corpus(n_rows=400)
    all_threats["threat"] = 1  # a broken column: a model of it would flag every comment
    broken = tmp_path / "broken.csv"
    all_threats.to_csv(broken, index=False)
    header_and_one_row = tmp_path / "one.csv"
    make_demo_corpus(n_rows=100).head(1).to_csv(header_and_one_row, index=False)
    for args, expected in (
        (("data", "validate", str(broken)), "every row has threat=1 (400 of 400)"),
        (("train", "--data", str(broken), "-m", "complement-nb"), "every row has threat=1"),
        (("data", "validate", str(header_and_one_row)), "at least 50 are needed"),
        (("train", "--data", str(header_and_one_row)), "1 rows are too few"),
    ):
        completed = _cli(*args)
        assert completed.returncode == 2, (args, completed.stdout, completed.stderr)
        assert expected in " ".join(completed.stderr.split()), (args, completed.stderr)
        assert "Traceback" not in completed.stderr
    assert list_versions(get_settings()) == []  # nothing was registered


def test_run_trains_on_the_demo_corpus_when_no_kaggle_file(tmp_path: Path) -> None:
    completed = _cli("run", "--no-stack", "--data-dir", str(tmp_path / "raw"), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "DEMO" in completed.stdout
    assert "champion: version" in completed.stdout
    again = _cli("run", "--no-stack", "--data-dir", str(tmp_path / "raw"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "not retraining" in again.stdout


def test_gate_compares_on_test_comments_the_champion_never_saw(
    shared_sample: pd.DataFrame, settings: Settings, tmp_path: Path
) -> None:
    from toxiguard.data.splits import load_splits
    from toxiguard.data.validation import label_matrix, text_hashes
    from toxiguard.training.evaluation import evaluate

    first_csv, all_csv = tmp_path / "first.csv", tmp_path / "all.csv"
    shared_sample.iloc[:2000].to_csv(first_csv, index=False)
    shared_sample.to_csv(all_csv, index=False)
    first = run_training(first_csv, ["complement-nb"], settings).models[0]
    second = run_training(all_csv, ["complement-nb"], settings)
    decision = second.models[0].decision

    # The new job's test split holds comments the champion was trained or tuned on: left out.
    champion, _ = load_toxicity_model(
        f"models:/{settings.registered_model_name}/{first.version}", settings
    )
    assert champion.seen_texts is not None and len(champion.seen_texts) > 1500
    test = load_splits(second.splits_dir).test
    texts = test["comment_text"].astype(str).tolist()
    unseen = ~np.isin(text_hashes(texts), champion.seen_texts)
    assert 0 < unseen.sum() < len(texts)
    expected = evaluate(
        label_matrix(test)[unseen],
        champion.predict_proba([t for t, keep in zip(texts, unseen, strict=True) if keep]),
        champion.thresholds,
    )["mean_roc_auc"]
    assert decision.champion_score == pytest.approx(expected, abs=1e-9)
    assert f"on {unseen.sum()} test comments ({(~unseen).sum()} the champion" in decision.reason


def test_gate_without_enough_unseen_test_comments_keeps_the_champion(
    shared_sample: pd.DataFrame, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "data.csv"
    shared_sample.iloc[:2000].to_csv(path, index=False)
    run_training(path, ["complement-nb"], settings)
    # The same data again: every test comment of the new job was in the champion's test split,
    # so unseen; ask for more than there are.
    strict = settings.model_copy(update={"promotion_min_test_rows": 10_000})
    again = run_training(path, ["tfidf-lr"], strict).models[0]
    assert not again.decision.promoted
    assert "no fair comparison with champion v1" in again.decision.reason
    versions = {v["version"]: v for v in list_versions(settings)}
    assert "challenger" in versions[again.version]["aliases"]
