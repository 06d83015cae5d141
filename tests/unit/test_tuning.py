"""`toxiguard tune`: search spaces, the defaults as the first trial, pruning, the tuning run,
and `--params` resolving to its best params (embedded MLflow, the demo corpus)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import optuna
import pytest
from typer.testing import CliRunner

from toxiguard.cli import app
from toxiguard.data.demo import write_demo_corpus
from toxiguard.errors import ToxiguardError
from toxiguard.models import create_model, model_class
from toxiguard.registry.client import configure_mlflow
from toxiguard.settings import Settings, get_settings
from toxiguard.training.steps import PreparedData, prepare_data
from toxiguard.training.tuned_params import (
    BEST_PARAMS_TAG,
    FAMILY_TAG,
    RUN_TYPE_TAG,
    TUNING_RUN_TYPE,
    latest_tuned_params,
    resolve_params,
)
from toxiguard.training.tuning import (
    RUNGS,
    default_trial,
    search_space,
    tunable_families,
    tune_family,
)

TFIDF_FAMILIES = ["complement-nb", "nbsvm", "tfidf-lr", "tfidf-svm"]


@pytest.fixture
def prepared(tmp_path: Path, settings: Settings) -> PreparedData:
    return prepare_data(write_demo_corpus(tmp_path / "demo.csv.gz", n_rows=1200), settings)


def _plain(value: object) -> object:
    """Return a tuple as a list (defaults are tuples, a trial's ranges lists)."""
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("family", tunable_families())
def test_first_trial_is_the_familys_defaults(family: str) -> None:
    params = search_space(family)(optuna.trial.FixedTrial(default_trial(family)))
    defaults = model_class(family)().get_params()
    assert params, family
    assert {key: _plain(value) for key, value in params.items()} == {
        key: _plain(defaults[key]) for key in params
    }


@pytest.mark.parametrize("family", TFIDF_FAMILIES)
def test_every_sampled_trial_is_a_valid_model(family: str) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(25):
        params = search_space(family)(study.ask())
        create_model(family, **params)  # raises ToxiguardError for a bad value


def test_an_unknown_family_names_the_tunable_ones() -> None:
    with pytest.raises(ToxiguardError, match=r"cannot tune 'blend'.*nbsvm"):
        search_space("blend")


def test_tuning_records_trials_as_nested_runs_and_the_best_params(
    prepared: PreparedData, settings: Settings
) -> None:
    seen: list[int] = []
    result = tune_family(
        "complement-nb",
        prepared,
        settings,
        trials=6,
        startup_trials=1,
        on_trial=lambda trial, finished: seen.append(finished),
    )
    assert seen == [1, 2, 3, 4, 5, 6]
    assert [trial.number for trial in result.trials] == list(range(6))
    assert result.default_value == result.trials[0].value
    assert result.default_value is not None and result.best_value >= result.default_value
    full_rows = len(prepared.splits.train)
    for trial in result.trials:
        rung = full_rows if trial.state == "COMPLETE" else math.ceil(full_rows * RUNGS[0])
        assert trial.train_rows == rung

    client = configure_mlflow(settings)
    parent = client.get_run(result.run_id)
    assert parent.data.tags[RUN_TYPE_TAG] == TUNING_RUN_TYPE
    assert json.loads(parent.data.tags[BEST_PARAMS_TAG]) == result.best_params
    artifacts = {item.path for item in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {"plots/tuning_history.png"}
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{result.run_id}'",
    )
    assert len(children) == 6
    assert {run.info.status for run in children} == {"FINISHED"}  # pruned ones too
    states = {run.data.tags["trial"]: run.data.tags["state"] for run in children}
    assert states == {str(trial.number): trial.state for trial in result.trials}
    rung_steps = {
        run.data.tags["trial"]: [
            metric.step for metric in client.get_metric_history(run.info.run_id, "train_rows")
        ]
        for run in children
    }
    assert rung_steps["0"] == list(range(len(RUNGS)))

    tuned = latest_tuned_params(settings, "complement-nb")
    assert tuned is not None and tuned.run_id == result.run_id
    assert tuned.params == result.best_params
    assert latest_tuned_params(settings, "nbsvm") is None


def test_a_search_whose_every_trial_is_pruned_records_no_best_params(
    prepared: PreparedData, settings: Settings
) -> None:
    with pytest.raises(ToxiguardError, match=r"every one of 2 complement-nb trials was pruned"):
        tune_family(
            "complement-nb",
            prepared,
            settings,
            trials=2,
            pruner=optuna.pruners.ThresholdPruner(lower=1.01),  # prunes every score
        )
    configure_mlflow(settings)
    [run] = mlflow.search_runs(
        filter_string=f"tags.`{FAMILY_TAG}` = 'complement-nb' and tags.`{RUN_TYPE_TAG}` = "
        f"'{TUNING_RUN_TYPE}'",
        output_format="list",
    )
    assert run.info.status == "FAILED" and BEST_PARAMS_TAG not in run.data.tags
    assert latest_tuned_params(settings, "complement-nb") is None


def test_params_resolve_from_defaults_a_file_or_the_best(
    tmp_path: Path, settings: Settings
) -> None:
    assert resolve_params(None, ["nbsvm"], settings) == ({}, [])
    assert resolve_params("default", ["nbsvm"], settings) == ({}, [])
    assert resolve_params("best", ["nbsvm"], settings) == ({}, ["nbsvm: never tuned, its defaults"])

    good = tmp_path / "params.json"
    good.write_text(json.dumps({"nbsvm": {"C": 2.0}}))
    assert resolve_params(str(good), ["nbsvm"], settings)[0] == {"nbsvm": {"C": 2.0}}
    for content, problem in (
        ('{"nbsvm": {"C": 2.0}', "not JSON \\(line 1"),
        ('{"nb-svm": {}}', "unknown model family 'nb-svm'"),
        ('{"nbsvm": 2}', "'nbsvm' must map to an object"),
        ("[1]", "expected an object"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(ToxiguardError, match=rf"bad\.json: {problem}"):
            resolve_params(str(bad), ["nbsvm"], settings)
    with pytest.raises(ToxiguardError, match=r"missing\.json: cannot read"):
        resolve_params(str(tmp_path / "missing.json"), ["nbsvm"], settings)


def test_a_blend_takes_the_tuned_transformer_as_its_member(settings: Settings) -> None:
    configure_mlflow(settings)
    tuned = {"learning_rate": 1e-4, "pos_weight": "sqrt-balanced"}
    tags = {
        RUN_TYPE_TAG: TUNING_RUN_TYPE,
        FAMILY_TAG: "transformer",
        BEST_PARAMS_TAG: json.dumps(tuned),
    }
    with mlflow.start_run(run_name="tune-transformer", tags=tags):
        pass
    params, notes = resolve_params("best", ["nbsvm", "blend"], settings)
    assert params == {"blend": {"member_params": {"transformer": tuned}}}
    assert notes[0] == "blend: never tuned, its defaults"
    params, _ = resolve_params("best", ["transformer", "blend"], settings)
    assert params["transformer"] == tuned


def test_train_with_params_best_fits_the_tuned_params(tmp_path: Path) -> None:
    data = write_demo_corpus(tmp_path / "demo.csv.gz", n_rows=1200)
    runner = CliRunner()
    get_settings.cache_clear()
    tuned = runner.invoke(
        app, ["tune", "--data", str(data), "--family", "complement-nb", "--trials", "3"]
    )
    assert tuned.exit_code == 0, tuned.output
    assert "best params:" in tuned.output and "--params best" in tuned.output
    settings = get_settings()
    best = latest_tuned_params(settings, "complement-nb")
    assert best is not None

    trained = runner.invoke(
        app,
        ["train", "--data", str(data), "--model", "complement-nb", "--params", "best"],
    )
    assert trained.exit_code == 0, trained.output
    assert f"params of tuning run {best.run_id}" in trained.output
    configure_mlflow(settings)
    [run] = mlflow.search_runs(filter_string="tags.family = 'complement-nb'", output_format="list")
    logged = run.data.params
    assert float(logged["alpha"]) == pytest.approx(best.params["alpha"])
    assert json.loads(logged["char_ngrams"]) == best.params["char_ngrams"]


def test_tune_refuses_bad_arguments_with_one_error_line(tmp_path: Path) -> None:
    data = write_demo_corpus(tmp_path / "demo.csv.gz", n_rows=400)
    runner = CliRunner()
    result = runner.invoke(app, ["tune", "--data", str(data), "--family", "blend", "--trials", "2"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ToxiguardError)
    assert "cannot tune 'blend'" in str(result.exception)
