"""The gate refuses a version that is better on ROC-AUC but worse on bias: a model made biased on
purpose (its training comments that name an identity relabelled toxic), on real Jigsaw rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest

from toxiguard.data.identity import subgroup_masks
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import ToxicityModel
from toxiguard.settings import Settings
from toxiguard.training.pipeline import TrainingSteps, train_families
from toxiguard.training.steps import PreparedData, fit_step, prepare_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOXIC = LABELS.index("toxic")


@pytest.fixture(scope="module")
def prepared(
    shared_train: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[PreparedData, Settings]:
    """Return 12,000 real rows, split (1,200 test comments: enough mentions of several
    subgroups for the final bias score), and settings on an embedded registry."""
    home = tmp_path_factory.mktemp("bias-gate")
    path = home / "train.csv.gz"
    shared_train.sample(n=12_000, random_state=11).to_csv(path, index=False)
    settings = Settings.model_validate(
        {"home": home, "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}"}
    )
    return prepare_data(path, settings), settings


def biased_fit(
    family: str,
    prepared: PreparedData,
    params: Mapping[str, Any] | None,
    fitted: Mapping[str, ToxicityModel],
    settings: Settings,
) -> tuple[ToxicityModel, float]:
    """Fit as training does, on a training split whose comments that name an identity are all
    labelled toxic."""
    train = prepared.splits.train.copy()
    named = np.zeros(len(train), dtype=bool)
    for mask in subgroup_masks(train[TEXT_COLUMN].astype(str).tolist()).values():
        named |= mask
    train.loc[named, LABELS[TOXIC]] = 1
    splits = dataclasses.replace(prepared.splits, train=train.reset_index(drop=True))
    relabelled = dataclasses.replace(prepared, splits=splits)
    return fit_step(family, relabelled, params, fitted, settings)


def test_a_model_biased_on_purpose_is_not_promoted(
    prepared: tuple[PreparedData, Settings],
) -> None:
    data, settings = prepared
    champion = train_families(data, settings, ["complement-nb"]).models[0]
    assert champion.decision.promoted

    biased = train_families(
        data, settings, ["tfidf-lr"], steps=TrainingSteps(fit=biased_fit)
    ).models[0]
    audit, fair = biased.evaluation.audit, champion.evaluation.audit
    assert audit is not None and fair is not None
    assert audit.bias_test.final_score is not None and fair.bias_test.final_score is not None
    # Better on ROC-AUC, much worse on bias: the gate names the bias score as the reason.
    assert biased.decision.new_score > (biased.decision.champion_score or 1.0)
    assert audit.bias_test.final_score < fair.bias_test.final_score - settings.promotion_bias_margin
    assert not biased.decision.promoted
    assert "blocked by bias_final_test" in biased.decision.reason
    assert "robustness_worst" not in biased.decision.reason.split("blocked by", 1)[1]

    # The same family trained as usual beats the champion and passes the guards.
    fair_lr = train_families(data, settings, ["tfidf-lr"]).models[0]
    assert fair_lr.decision.promoted, fair_lr.decision.reason
    assert fair_lr.decision.champion_before == champion.version


def test_unknown_augmentation_is_refused_before_anything_is_registered(
    prepared: tuple[PreparedData, Settings],
) -> None:
    from toxiguard.errors import ToxiguardError
    from toxiguard.registry.versions import list_versions

    data, settings = prepared
    before = len(list_versions(settings))
    wrong = settings.model_copy(update={"training_augmentations": ["identity_neutral", "mixup"]})
    with pytest.raises(ToxiguardError, match="unknown augmentation"):
        train_families(data, wrong, ["complement-nb"])
    assert len(list_versions(wrong)) == before
