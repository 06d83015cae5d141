"""MLflow runs, registry and gated promotion, on embedded sqlite and on a real `mlflow server`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.processes import free_port
from toxiguard.data.splits import Splits, save_splits
from toxiguard.data.validation import fingerprint, label_matrix
from toxiguard.errors import ModelNotFoundError, RegistryError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import create_model
from toxiguard.models.package import ModelPackage
from toxiguard.registry.client import (
    LEGACY_WRAPPER_MODULE,
    configure_mlflow,
    load_toxicity_model,
    resolve_model_uri,
)
from toxiguard.registry.promotion import (
    Comparison,
    Guard,
    champion_history,
    gate_promotion,
    promote,
    rollback,
)
from toxiguard.registry.runs import log_model_run
from toxiguard.registry.versions import list_versions
from toxiguard.settings import Settings, get_settings
from toxiguard.training.evaluation import (
    evaluate,
    flat_metrics,
    plot_f1_bars,
    plot_pr_curves,
    tune_thresholds,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAMILY = "complement-nb"
PROBE_TEXTS = ["you are a stupid idiot", "thanks for fixing the citation", "I will find you", ""]
FRESH_PROCESS_SCRIPT = """
import json, sys
import mlflow
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
texts = json.loads(sys.argv[2])
from_list = model.predict(texts)
from_frame = model.predict(pd.DataFrame({"text": texts}))
assert list(from_list.columns) == json.loads(sys.argv[3]), list(from_list.columns)
assert (from_list.dtypes == "float64").all(), from_list.dtypes
print(json.dumps([from_list.to_numpy().tolist(), from_frame.to_numpy().tolist()]))
"""


@dataclass(frozen=True)
class Fitted:
    """Two real models and the held-out rows both are scored on."""

    weak: ModelPackage
    strong: ModelPackage
    texts: list[str]
    labels: npt.NDArray[np.int8]

    def score(self, model: ModelPackage) -> float:
        """Return the mean ROC-AUC of a model on the held-out rows."""
        report = evaluate(self.labels, model.predict_proba(self.texts), model.thresholds)
        return float(report["mean_roc_auc"])

    def report(self, model: ModelPackage) -> dict[str, Any]:
        """Return the evaluation report of a model on the held-out rows."""
        return evaluate(self.labels, model.predict_proba(self.texts), model.thresholds)


@pytest.fixture(scope="module")
def fitted(shared_sample: pd.DataFrame) -> Fitted:
    """Fit one model on 300 real rows (weak) and one on 3,000 (strong); hold out 1,000."""
    train, held_out = shared_sample.iloc[:3000], shared_sample.iloc[3000:]
    texts = held_out[TEXT_COLUMN].astype(str).tolist()
    labels = label_matrix(held_out)
    models = []
    for rows in (300, 3000):
        part = train.iloc[:rows]
        model = create_model(FAMILY)
        model.fit(part[TEXT_COLUMN].astype(str).tolist(), label_matrix(part).astype(np.int_))
        models.append(ModelPackage(model, tune_thresholds(labels, model.predict_proba(texts))))
    result = Fitted(models[0], models[1], texts, labels)
    # The scenario below needs a clear gap between the two; check it rather than assume it.
    assert result.score(result.strong) > result.score(result.weak) + 0.01
    return result


@pytest.fixture(params=["sqlite", "server"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Return settings for embedded sqlite MLflow, then for the session's `mlflow server`."""
    if request.param == "server":
        url: str = request.getfixturevalue("mlflow_server")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        # The server is shared by the session: a fresh model and experiment name per test.
        monkeypatch.setenv("TOXIGUARD_REGISTERED_MODEL_NAME", f"tg-{os.urandom(4).hex()}")
        monkeypatch.setenv("TOXIGUARD_EXPERIMENT_NAME", f"exp-{os.urandom(4).hex()}")
    get_settings.cache_clear()
    settings = get_settings()
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("mlflow_db_template")
        settings.resolved_home.mkdir(parents=True)
        shutil.copy(template, settings.resolved_home / "mlflow.db")
    yield settings
    get_settings.cache_clear()


@pytest.fixture
def splits_dir(shared_sample: pd.DataFrame, tmp_path: Path) -> Path:
    """Return a saved split of real rows, as the training pipeline writes it."""
    shuffled = shared_sample.sample(frac=1.0, random_state=3).reset_index(drop=True)
    splits = Splits(
        shuffled.iloc[:300],
        shuffled.iloc[300:400],
        shuffled.iloc[400:500],
        seed=3,
        source_fingerprint=fingerprint(shuffled),
    )
    return save_splits(splits, tmp_path / "splits")


def _log(
    model: ModelPackage,
    settings: Settings,
    fitted: Fitted,
    splits_dir: Path | None = None,
    name: str = "run",
) -> tuple[str, int]:
    report = fitted.report(model)
    return log_model_run(
        model,
        settings=settings,
        run_name=name,
        params={"family": model.family, "alpha": 0.5, "ngrams": [1, 2]},
        metrics={**flat_metrics(report, "test"), "fit_seconds": 1.5},
        reports={"test": report},
        figures={
            "pr_curves_test.png": plot_pr_curves(
                fitted.labels, model.predict_proba(fitted.texts), model.thresholds, "test"
            ),
            "f1_per_label_test": plot_f1_bars(report, "test"),
        },
        dataset_source="/data/jigsaw/train.csv.gz",
        dataset_fingerprint="f" * 64,
        splits_dir=splits_dir,
        tags={"purpose": "test"},
    )


def _aliases(settings: Settings) -> dict[str, int]:
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    aliases = client.get_registered_model(settings.registered_model_name).aliases
    return {alias: int(version) for alias, version in aliases.items()}


def test_a_run_records_params_metrics_data_reports_plots_and_the_model(
    backend: Settings, fitted: Fitted, splits_dir: Path, tmp_path: Path
) -> None:
    settings = backend
    run_id, version = _log(fitted.strong, settings, fitted, splits_dir, name="strong")
    assert version == 1

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "strong"
    assert run.data.params["alpha"] == "0.5"
    assert json.loads(run.data.params["ngrams"]) == [1, 2]
    assert run.data.metrics["test_roc_auc_mean"] == pytest.approx(fitted.score(fitted.strong))
    assert run.data.metrics["fit_seconds"] == 1.5
    assert run.data.tags["purpose"] == "test"
    assert run.data.tags["dataset_fingerprint"] == "f" * 64
    assert run.data.tags["registered_version"] == "1"

    assert run.inputs is not None
    inputs = {
        tag.value: item
        for item in run.inputs.dataset_inputs
        for tag in item.tags
        if tag.key == "mlflow.data.context"
    }
    assert set(inputs) == {"source", "train", "validation", "test"}
    assert inputs["source"].dataset.digest == "f" * 36
    assert inputs["source"].dataset.name == "train.csv.gz"
    manifest = json.loads((splits_dir / "splits.json").read_text())
    test_fingerprint = manifest["parts"]["test"]["fingerprint"]
    assert inputs["test"].dataset.digest == test_fingerprint[:36]
    assert json.loads(str(inputs["test"].dataset.profile))["num_rows"] == 100

    artifacts = {
        item.path
        for folder in ("reports", "plots", "data")
        for item in client.list_artifacts(run_id, folder)
    }
    assert artifacts == {
        "reports/test.json",
        "plots/pr_curves_test.png",
        "plots/f1_per_label_test.png",
        "data/splits.json",
    }
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="reports/test.json", dst_path=str(tmp_path)
    )
    assert json.loads(Path(downloaded).read_text()) == json.loads(
        json.dumps(fitted.report(fitted.strong))
    )
    plot = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="plots/pr_curves_test.png", dst_path=str(tmp_path)
    )
    assert Path(plot).read_bytes().startswith(b"\x89PNG")

    mv = client.get_model_version(settings.registered_model_name, "1")
    assert mv.run_id == run_id
    assert mv.tags["family"] == FAMILY
    assert json.loads(mv.tags["thresholds"]) == pytest.approx(fitted.strong.thresholds, abs=1e-6)
    assert float(mv.tags["test_roc_auc_mean"]) == pytest.approx(fitted.score(fitted.strong))
    assert mv.tags["dataset_fingerprint"] == "f" * 64

    loaded, info = load_toxicity_model("models:/" + mv.name + "/1", settings)
    assert info["name"] == settings.registered_model_name
    assert info["version"] == 1
    assert info["run_id"] == run_id
    assert info["family"] == FAMILY
    assert info["metrics"]["test_roc_auc_mean"] == pytest.approx(fitted.score(fitted.strong))
    np.testing.assert_allclose(loaded.thresholds, fitted.strong.thresholds)
    np.testing.assert_allclose(
        loaded.predict_proba(PROBE_TEXTS), fitted.strong.predict_proba(PROBE_TEXTS), atol=1e-12
    )


def test_pyfunc_accepts_lists_series_and_frames(backend: Settings, fitted: Fitted) -> None:
    settings = backend
    _, version = _log(fitted.weak, settings, fitted)
    model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model_name}/{version}")
    expected = fitted.weak.predict_proba(PROBE_TEXTS)
    inputs: list[Any] = [
        PROBE_TEXTS,
        pd.Series(PROBE_TEXTS),
        pd.DataFrame({"text": PROBE_TEXTS}),
        pd.DataFrame({"comment": PROBE_TEXTS}),
        {"text": PROBE_TEXTS},
    ]
    for model_input in inputs:
        out = model.predict(model_input)
        assert list(out.columns) == list(LABELS)
        assert (out.dtypes == np.float64).all()
        np.testing.assert_allclose(out.to_numpy(), expected, atol=1e-12)


def test_gate_promotes_only_a_model_that_beats_the_champion_by_the_margin(
    backend: Settings, fitted: Fitted
) -> None:
    settings = backend
    weak_score, strong_score = fitted.score(fitted.weak), fitted.score(fitted.strong)
    scored: list[ModelPackage] = []

    def compare_with(new_score: float) -> Callable[[ModelPackage], Comparison]:
        def compare(champion: ModelPackage) -> Comparison:
            scored.append(champion)
            return Comparison(new_score, fitted.score(champion), rows=100, excluded=0)

        return compare

    _, v1 = _log(fitted.weak, settings, fitted)
    first = gate_promotion(settings, v1, weak_score, compare_with(weak_score))
    assert first.promoted and first.champion_before is None and first.reason == "no champion yet"
    assert scored == []
    assert _aliases(settings) == {"champion": v1}

    # The same quality again: not better, so not promoted; it becomes the challenger.
    run2, v2 = _log(fitted.weak, settings, fitted)
    second = gate_promotion(settings, v2, weak_score, compare_with(weak_score))
    assert not second.promoted
    assert second.champion_before == v1
    assert second.champion_score == pytest.approx(weak_score)  # champion re-scored by the caller
    assert len(scored) == 1
    assert _aliases(settings) == {"champion": v1, "challenger": v2}

    # No fair comparison (too few test comments the champion has not seen): not promoted, and
    # not challenger either: v2 was measured against the champion, this one was not.
    run_unfair, v_unfair = _log(fitted.strong, settings, fitted)
    unfair = gate_promotion(
        settings, v_unfair, strong_score, lambda _: Comparison(None, None, 12, 388)
    )
    assert not unfair.promoted and unfair.champion_score is None
    assert "no fair comparison with champion v1: 12 test comments" in unfair.reason
    assert _aliases(settings) == {"champion": v1, "challenger": v2}

    # Worse than the challenger against the same champion: the challenger stays.
    _, v_worse = _log(fitted.weak, settings, fitted)
    worse = gate_promotion(settings, v_worse, weak_score, compare_with(weak_score - 0.01))
    assert not worse.promoted
    assert _aliases(settings) == {"champion": v1, "challenger": v2}

    # Better, but not by the margin asked for: the best version that is not champion.
    run3, v3 = _log(fitted.strong, settings, fitted)
    strict = settings.model_copy(update={"promotion_margin": strong_score - weak_score + 0.001})
    third = gate_promotion(strict, v3, strong_score, compare_with(strong_score))
    assert not third.promoted
    assert third.margin == strict.promotion_margin
    assert _aliases(settings) == {"champion": v1, "challenger": v3}

    # Better by more than the margin: promoted; it no longer holds the challenger alias.
    loose = settings.model_copy(update={"promotion_margin": strong_score - weak_score - 0.001})
    fourth = gate_promotion(loose, v3, strong_score, compare_with(strong_score))
    assert fourth.promoted
    assert fourth.champion_before == v1
    assert fourth.champion_score == pytest.approx(weak_score)
    assert _aliases(settings) == {"champion": v3}

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    challenger_tags = client.get_model_version(settings.registered_model_name, str(v2)).tags
    assert challenger_tags["toxiguard.decision"] == "challenger"
    assert challenger_tags["toxiguard.champion_before"] == str(v1)
    assert float(challenger_tags["toxiguard.champion_score"]) == pytest.approx(weak_score)
    assert client.get_run(run2).data.tags["toxiguard.decision"] == "challenger"
    assert client.get_run(run_unfair).data.tags["toxiguard.decision"] == "not promoted"
    assert client.get_run(run3).data.tags["toxiguard.decision"] == "promoted"

    history = champion_history(settings)
    assert [(e["event"], e["version"], e["previous"]) for e in history] == [
        ("promote", v1, None),
        ("promote", v3, v1),
    ]
    assert history[1]["new_score"] == pytest.approx(strong_score)
    assert history[1]["champion_score"] == pytest.approx(weak_score)

    listed = list_versions(settings)
    assert [row["version"] for row in listed] == [v1, v2, v_unfair, v_worse, v3]
    assert [row["aliases"] for row in listed] == [[], [], [], [], ["champion"]]
    assert listed[4]["family"] == FAMILY
    assert listed[4]["run_id"] == run3
    assert listed[4]["test_roc_auc_mean"] == pytest.approx(strong_score)

    champion, info = load_toxicity_model(resolve_model_uri(None, settings), settings)
    assert info["version"] == v3
    assert info["aliases"] == ["champion"]
    assert fitted.score(champion) == pytest.approx(strong_score)


def test_manual_promotion_rollback_and_history(backend: Settings, fitted: Fitted) -> None:
    settings = backend
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(settings)
    versions = [_log(fitted.weak, settings, fitted)[1] for _ in range(3)]
    v1, v2, v3 = versions
    promote(settings, v1, reason="first")
    promote(settings, v3, reason="hotfix")
    promote(settings, v2)
    promote(settings, v2)  # already champion: nothing happens, nothing recorded
    assert _aliases(settings)["champion"] == v2

    assert rollback(settings) == v3
    assert _aliases(settings)["champion"] == v3
    assert rollback(settings) == v1
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(settings)
    assert _aliases(settings)["champion"] == v1

    history = champion_history(settings)
    assert [(e["event"], e["version"], e["previous"]) for e in history] == [
        ("promote", v1, None),
        ("promote", v3, v1),
        ("promote", v2, v3),
        ("rollback", v3, v2),
        ("rollback", v1, v3),
    ]
    assert [e["reason"] for e in history[:3]] == ["first", "hotfix", "manual"]
    assert all(e["at"].endswith("+00:00") for e in history)

    # A promotion after a rollback starts a new line of champions to roll back through.
    promote(settings, v2)
    assert rollback(settings) == v1

    with pytest.raises(ModelNotFoundError, match="no version 99"):
        promote(settings, 99)


def test_registered_model_loads_in_a_fresh_process_with_no_other_files(
    backend: Settings, fitted: Fitted, tmp_path: Path
) -> None:
    settings = backend
    _, version = _log(fitted.strong, settings, fitted)
    promote(settings, version)
    expected = fitted.strong.predict_proba(PROBE_TEXTS)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS_SCRIPT,
            f"models:/{settings.registered_model_name}@champion",
            json.dumps(PROBE_TEXTS),
            json.dumps(list(LABELS)),
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    from_list, from_frame = json.loads(completed.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(from_list, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(from_frame, expected, rtol=0, atol=1e-12)
    assert list(empty.iterdir()) == []


def test_a_version_logged_by_the_earlier_layout_still_loads(
    backend: Settings, fitted: Fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Versions logged before the package layout name `toxiguard.tracking` in their model code:
    # a registry full of them must keep serving after an upgrade.
    from toxiguard.registry import pyfunc, runs

    legacy_code = runs._MODEL_CODE.replace("toxiguard.registry.pyfunc", LEGACY_WRAPPER_MODULE)
    assert LEGACY_WRAPPER_MODULE in legacy_code
    with monkeypatch.context() as earlier_layout:
        # Logging runs the model code once: while logging, the old module name exists again.
        earlier_layout.setattr(runs, "_MODEL_CODE", legacy_code)
        earlier_layout.setitem(sys.modules, LEGACY_WRAPPER_MODULE, pyfunc)
        _, version = _log(fitted.strong, backend, fitted)
    uri = f"models:/{backend.registered_model_name}/{version}"
    with pytest.raises(MlflowException, match=r"No module named 'toxiguard\.tracking'"):
        mlflow.pyfunc.load_model(uri)  # what loading it as the code says would do
    package, info = load_toxicity_model(uri, backend)
    assert info["version"] == version and info["family"] == FAMILY
    np.testing.assert_allclose(
        package.predict_proba(PROBE_TEXTS), fitted.strong.predict_proba(PROBE_TEXTS), atol=1e-12
    )
    np.testing.assert_array_equal(package.thresholds, fitted.strong.thresholds)


def test_missing_models_and_registries_give_clear_errors(
    backend: Settings, fitted: Fitted, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = backend
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"no 'champion' version .*toxiguard train"):
        load_toxicity_model(resolve_model_uri(None, settings), settings)
    assert list_versions(settings) == []
    assert champion_history(settings) == []
    _log(fitted.weak, settings, fitted)
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        load_toxicity_model(resolve_model_uri("7", settings), settings)
    with pytest.raises(ModelNotFoundError, match="no alias 'staging'"):
        load_toxicity_model(resolve_model_uri("staging", settings), settings)
    with pytest.raises(ModelNotFoundError, match="no 'champion' version"):
        load_toxicity_model(resolve_model_uri(None, settings), settings)
    # Nothing was written into the working directory (no stray ./mlruns).
    assert {path.name for path in tmp_path.iterdir()} <= {"home"}


def test_an_unreachable_server_fails_fast_with_a_registry_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    get_settings.cache_clear()
    settings = get_settings()
    operations: list[Callable[[], object]] = [
        lambda: load_toxicity_model(resolve_model_uri(None, settings), settings),
        lambda: list_versions(settings),
        lambda: configure_mlflow(settings),
    ]
    for operation in operations:
        with pytest.raises(RegistryError, match="cannot reach the MLflow server"):
            operation()


def test_embedded_experiment_keeps_artifacts_under_home(settings: Settings) -> None:
    client = configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    assert experiment is not None
    assert experiment.artifact_location == settings.artifact_root.as_uri()
    assert settings.artifact_root.is_dir()
    # Configuring again finds the same experiment.
    again = configure_mlflow(settings).get_experiment_by_name(settings.experiment_name)
    assert again is not None and again.experiment_id == experiment.experiment_id


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (None, "models:/toxiguard@champion"),
        ("", "models:/toxiguard@champion"),
        ("7", "models:/toxiguard/7"),
        ("v12", "models:/toxiguard/12"),
        ("challenger", "models:/toxiguard@challenger"),
        ("models:/other/3", "models:/other/3"),
        ("models:/toxiguard@champion", "models:/toxiguard@champion"),
        ("runs:/abc123/model", "runs:/abc123/model"),
        ("./exported/model", "./exported/model"),
        ("/abs/path/model", "/abs/path/model"),
    ],
)
def test_resolve_model_uri(ref: str | None, expected: str, settings: Settings) -> None:
    assert resolve_model_uri(ref, settings) == expected


def test_gate_refuses_a_better_score_that_fails_a_guard_and_names_it(
    backend: Settings, fitted: Fitted
) -> None:
    settings = backend
    weak_score, strong_score = fitted.score(fitted.weak), fitted.score(fitted.strong)

    def compare_with(*guards: Guard) -> Callable[[ModelPackage], Comparison]:
        def compare(champion: ModelPackage) -> Comparison:
            return Comparison(strong_score, fitted.score(champion), 100, 0, guards)

        return compare

    _, v1 = _log(fitted.weak, settings, fitted)
    assert gate_promotion(settings, v1, weak_score, compare_with()).promoted

    # Better ROC-AUC, but its final bias score fell by more than the margin: not promoted.
    biased = Guard("bias_final_templates", new=0.80, champion=0.85, margin=0.01)
    robust = Guard("robustness_worst", new=0.95, champion=0.951, margin=0.01)
    run2, v2 = _log(fitted.strong, settings, fitted)
    blocked = gate_promotion(settings, v2, strong_score, compare_with(biased, robust))
    assert not blocked.promoted
    assert "blocked by bias_final_templates 0.8000 < champion 0.8500 - margin 0.01" in (
        blocked.reason
    )
    assert "robustness_worst" not in blocked.reason  # within its margin: not a reason
    assert _aliases(settings)["champion"] == v1
    tags = MlflowClient(settings.tracking_uri).get_run(run2).data.tags
    recorded = {guard["metric"]: guard["holds"] for guard in json.loads(tags["toxiguard.guards"])}
    assert recorded == {"bias_final_templates": False, "robustness_worst": True}

    # The same loss within a looser margin: promoted.
    loose = settings.model_copy(update={"promotion_bias_margin": 0.06})
    within = Guard("bias_final_templates", 0.80, 0.85, loose.promotion_bias_margin)
    _, v3 = _log(fitted.strong, settings, fitted)
    assert gate_promotion(loose, v3, strong_score, compare_with(within, robust)).promoted
    assert _aliases(settings)["champion"] == v3
