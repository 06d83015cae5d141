"""What a job trains by default on this hardware, the transformer's CPU estimate, --param."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from toxiguard.cli import app
from toxiguard.cli.training import parse_param
from toxiguard.data.demo import write_demo_corpus
from toxiguard.errors import ToxiguardError
from toxiguard.registry.client import configure_mlflow
from toxiguard.settings import Settings, get_settings
from toxiguard.training import plan
from toxiguard.training.tuned_params import with_transformer_params

TFIDF = ["tfidf-lr", "nbsvm", "tfidf-svm", "complement-nb"]


def test_a_gpu_or_full_adds_the_transformer_blend_and_cascade(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "accelerator_available", lambda: False)
    assert plan.default_families(settings) == TFIDF
    assert plan.default_families(settings, full=True) == [*TFIDF, *plan.FULL_EXTRA]
    monkeypatch.setattr(plan, "accelerator_available", lambda: True)
    assert plan.default_families(settings) == [*TFIDF, *plan.FULL_EXTRA]
    assert plan.default_families(settings, full=False) == TFIDF
    # families set by the user are what they asked for, GPU or not
    chosen = Settings(training_models=["nbsvm"])
    assert plan.default_families(chosen) == ["nbsvm"]


def test_the_accelerator_check_is_what_torch_sees() -> None:
    import torch

    assert plan.accelerator_available() is torch.cuda.is_available()


def test_the_transformer_estimate_scales_with_rows_epochs_and_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})
    estimate = plan.transformer_estimate(33_290, epochs=2)
    assert estimate.seconds == pytest.approx(33_290 * 2 / plan.CPU_TRAIN_COMMENTS_PER_S_2_CORES)
    assert "about 56 min on this machine's 2 CPU cores" in estimate.describe()
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)))
    assert plan.transformer_estimate(33_290).seconds == pytest.approx(estimate.seconds / 4)


def test_param_options_parse_json_values_and_name_their_mistakes() -> None:
    assert parse_param("nbsvm.C=0.25") == ("nbsvm", "C", 0.25)
    assert parse_param("tfidf-lr.class_weight=null") == ("tfidf-lr", "class_weight", None)
    assert parse_param("transformer.pos_weight=balanced") == (
        "transformer",
        "pos_weight",
        "balanced",
    )
    assert parse_param("nbsvm.char_ngrams=[2,4]") == ("nbsvm", "char_ngrams", [2, 4])
    with pytest.raises(ToxiguardError, match=r"expected FAMILY\.NAME=VALUE"):
        parse_param("C=0.25")
    with pytest.raises(ToxiguardError, match="unknown model family 'nb'"):
        parse_param("nb.C=0.25")


def test_transformer_params_reach_every_transformer_a_job_builds() -> None:
    params = with_transformer_params({}, {"epochs": 3}, ["nbsvm", "blend", "cascade"])
    assert params == {
        "blend": {"member_params": {"transformer": {"epochs": 3}}},
        "cascade": {"stage_params": {"slow": {"member_params": {"transformer": {"epochs": 3}}}}},
    }
    assert with_transformer_params({}, {"epochs": 3}, ["transformer"]) == {
        "transformer": {"epochs": 3}
    }


def test_train_param_sets_one_parameter_and_run_on_cpus_says_how_to_train_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "accelerator_available", lambda: False)
    data = write_demo_corpus(tmp_path / "demo.csv.gz", n_rows=1000)
    get_settings.cache_clear()
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "-m",
            "complement-nb",
            "--param",
            "complement-nb.alpha=0.2",
            "--param",
            "complement-nb.char_ngrams=[2,4]",
        ],
    )
    assert result.exit_code == 0, result.output
    configure_mlflow(get_settings())
    [run] = mlflow.search_runs(filter_string="tags.family = 'complement-nb'", output_format="list")
    assert run.data.params["alpha"] == "0.2"
    assert json.loads(run.data.params["char_ngrams"]) == [2, 4]

    monkeypatch.setenv("TOXIGUARD_TRAINING_MODELS", "complement-nb")
    get_settings.cache_clear()
    ran = runner.invoke(app, ["run", "--no-stack", "--retrain", "--data-dir", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    said = " ".join(ran.output.split())
    assert "Trained the TF-IDF families only (no GPU here)" in said
    assert "toxiguard train --data" in said and "--model cascade" in said
