"""`toxiguard tune` for nbsvm on real comments, as processes: its best params feed a later
`toxiguard train --params best` (issue 17's "Done when")."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.integration.flow_services import run_cli, stack_env, write_sample
from toxiguard.settings import Settings
from toxiguard.training.tuned_params import latest_tuned_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_nbsvm_tuned_on_real_comments_then_trained_with_its_best_params(
    shared_sample: pd.DataFrame, tmp_path: Path
) -> None:
    data = write_sample(shared_sample, tmp_path / "sample.csv")  # 4,000 real comments
    env = stack_env(tmp_path / "home")
    tuned = run_cli(
        ["tune", "--data", str(data), "--family", "nbsvm", "--trials", "4", "--train-rows", "1500"],
        env,
        timeout=600,
    )
    assert tuned.returncode == 0, tuned.stderr
    assert "Tuning nbsvm: 4 trials on 1,500 training rows" in tuned.stdout
    assert "trial 3:" in tuned.stdout and "best params:" in tuned.stdout
    assert "4/4" in tuned.stderr  # the progress bar's count

    settings = Settings(home=tmp_path / "home")
    best = latest_tuned_params(settings, "nbsvm")
    assert best is not None and best.best_value is not None
    assert best.default_value is not None and best.best_value >= best.default_value
    assert set(best.params) >= {"C", "class_weight", "alpha", "char_ngrams"}

    trained = run_cli(
        ["train", "--data", str(data), "--model", "nbsvm", "--params", "best"], env, timeout=600
    )
    assert trained.returncode == 0, trained.stderr
    assert f"nbsvm: params of tuning run {best.run_id}" in trained.stdout
    client = MlflowClient(settings.tracking_uri)
    [run] = client.search_runs(
        [client.get_experiment_by_name(settings.experiment_name).experiment_id],  # type: ignore[union-attr]
        filter_string="tags.family = 'nbsvm'",
    )
    logged = run.data.params
    assert float(logged["C"]) == pytest.approx(best.params["C"])
    assert float(logged["alpha"]) == pytest.approx(best.params["alpha"])
    assert json.loads(logged["word_ngrams"]) == best.params["word_ngrams"]
    assert json.loads(logged["char_ngrams"]) == best.params["char_ngrams"]


def test_params_file_with_a_bad_family_fails_before_any_work(
    shared_sample: pd.DataFrame, tmp_path: Path
) -> None:
    data = write_sample(shared_sample.head(500), tmp_path / "sample.csv")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"nb_svm": {"C": 1.0}}))
    result = run_cli(
        ["train", "--data", str(data), "--model", "nbsvm", "--params", str(params)],
        stack_env(tmp_path / "home"),
        timeout=120,
    )
    assert result.returncode == 2
    assert f"error: {params}: unknown model family 'nb_svm'" in " ".join(result.stderr.split())
    assert not Settings(home=tmp_path / "home").splits_dir.exists()  # failed before the split
