"""Hyperparameter search for one model family (`toxiguard tune`), with Optuna.

Each trial fits the family on the training split and scores mean ROC-AUC on the validation
split (the test split stays for the gate). The first trial is the family's defaults, so the best
is never worse than them on validation. Trials are pruned by successive halving on data: a
trial first fits on a quarter of the training rows, and Optuna's median pruner stops it there
when it scores below the median of earlier trials at that rung; survivors fit on every row.
Every trial is a nested MLflow run under the tuning run, which records the best params
(`tuned_params.BEST_PARAMS_TAG`) for `toxiguard train --params best`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import mlflow
import numpy as np
import optuna
from matplotlib.figure import Figure

from toxiguard.data.splits import Splits
from toxiguard.data.validation import label_matrix
from toxiguard.errors import ToxiguardError
from toxiguard.features.tfidf import FEATURE_DEFAULTS
from toxiguard.models import model_class
from toxiguard.models.metrics import mean_roc_auc
from toxiguard.registry.client import configure_mlflow
from toxiguard.settings import Settings
from toxiguard.training.evaluation import new_figure
from toxiguard.training.steps import PreparedData, fit_model, model_defaults, texts_of
from toxiguard.training.tuned_params import (
    BEST_METRIC,
    BEST_PARAMS_TAG,
    DEFAULT_METRIC,
    FAMILY_TAG,
    RUN_TYPE_TAG,
    TUNING_RUN_TYPE,
)

logger = logging.getLogger(__name__)

#: The share of training rows a trial fits on first (the pruning rung), then every row.
RUNGS: Final = (0.25, 1.0)
OBJECTIVE: Final = "val_mean_roc_auc"
Space = Callable[[optuna.trial.BaseTrial], dict[str, Any]]


def _feature_space(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Return the TF-IDF featurizer's params of a trial (ranges around the measured defaults)."""
    return {
        "word_ngrams": [1, trial.suggest_int("word_ngram_max", 1, 3)],
        "word_max_features": trial.suggest_categorical(
            "word_max_features", [50_000, 100_000, 200_000, 400_000]
        ),
        "char_ngrams": [
            trial.suggest_int("char_ngram_min", 1, 3),
            trial.suggest_int("char_ngram_max", 4, 6),
        ],
        "char_max_features": trial.suggest_categorical(
            "char_max_features", [100_000, 200_000, 400_000]
        ),
    }


#: The featurizer's defaults as a trial's values (the first trial of every TF-IDF search).
_FEATURE_DEFAULT_TRIAL: Final = {
    "word_ngram_max": FEATURE_DEFAULTS["word_ngrams"][1],
    "word_max_features": FEATURE_DEFAULTS["word_max_features"],
    "char_ngram_min": FEATURE_DEFAULTS["char_ngrams"][0],
    "char_ngram_max": FEATURE_DEFAULTS["char_ngrams"][1],
    "char_max_features": FEATURE_DEFAULTS["char_max_features"],
}


def _logistic_space(low: float, high: float) -> Space:
    """Return the space of a family with C (log scale) and class_weight, and the features."""

    def space(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        return {
            "C": trial.suggest_float("C", low, high, log=True),
            "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
            **_feature_space(trial),
        }

    return space


def _nbsvm_space(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Return NB-SVM's params of a trial: the logistic ones and the NB smoothing alpha."""
    return {
        **_logistic_space(0.05, 10.0)(trial),
        "alpha": trial.suggest_float("alpha", 0.1, 4.0, log=True),
    }


def _complement_nb_space(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Return ComplementNB's params of a trial: its smoothing alpha and the features."""
    return {"alpha": trial.suggest_float("alpha", 1e-3, 1.0, log=True), **_feature_space(trial)}


def _transformer_space(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Return the transformer's optimisation params of a trial (a GPU is advised)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-4, log=True),
        "epochs": trial.suggest_int("epochs", 1, 4),
        "pos_weight": trial.suggest_categorical(
            "pos_weight", ["none", "balanced", "sqrt-balanced"]
        ),
        "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
    }


#: Each tunable family's search space.
SEARCH_SPACES: Final[dict[str, Space]] = {
    "tfidf-lr": _logistic_space(0.05, 20.0),
    "nbsvm": _nbsvm_space,
    "tfidf-svm": _logistic_space(0.005, 1.0),
    "complement-nb": _complement_nb_space,
    "transformer": _transformer_space,
}


def tunable_families() -> list[str]:
    """Return the families `tune_family` can search."""
    return sorted(SEARCH_SPACES)


def search_space(family: str) -> Space:
    """Return a family's search space, or raise ToxiguardError naming the tunable ones."""
    if family not in SEARCH_SPACES:
        raise ToxiguardError(
            f"cannot tune '{family}' (tunable families: {', '.join(tunable_families())})"
        )
    return SEARCH_SPACES[family]


def default_trial(family: str) -> dict[str, Any]:
    """Return the trial values that give the family's own defaults (its first trial)."""
    probe = optuna.trial.FixedTrial(
        {**model_class(family)().get_params(), **_FEATURE_DEFAULT_TRIAL}
    )
    search_space(family)(probe)
    return dict(probe.params)


@dataclass(frozen=True)
class TrialSummary:
    """One trial: its number, state, score at its last rung, rows fitted, seconds, params."""

    number: int
    state: str
    value: float | None
    train_rows: int
    seconds: float
    params: dict[str, Any]


@dataclass(frozen=True)
class TuningResult:
    """A family's search: the MLflow run, the best params and score, the defaults' score."""

    family: str
    run_id: str
    best_number: int
    best_params: dict[str, Any]
    best_value: float
    default_value: float | None
    trials: list[TrialSummary]

    @property
    def pruned(self) -> int:
        """Return how many trials were pruned."""
        return sum(trial.state == "PRUNED" for trial in self.trials)


def _rung_splits(splits: Splits, fraction: float, train_rows: int | None, seed: int) -> Splits:
    """Return the splits with the training part cut to `fraction` of its rows (at most
    `train_rows`), sampled with `seed`; validation and test unchanged."""
    rows = len(splits.train) if train_rows is None else min(train_rows, len(splits.train))
    rows = max(1, math.ceil(rows * fraction))
    if rows >= len(splits.train):
        return splits
    return dataclasses.replace(splits, train=splits.train.sample(n=rows, random_state=seed))


def _json_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Return params as MLflow params: JSON for lists and None, the value's text otherwise."""
    return {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in params.items()
    }


def plot_history(trials: Sequence[TrialSummary], family: str) -> Figure:
    """Return each trial's validation ROC-AUC (pruned ones at their rung) and the best so far.

    Drawn here rather than by optuna.visualization, which leaves pruned trials out.
    """
    figure = new_figure(8, 4.5)
    ax = figure.subplots()
    for state, marker, label in (("COMPLETE", "o", "complete"), ("PRUNED", "x", "pruned")):
        shown = [(t.number, t.value) for t in trials if t.state == state and t.value is not None]
        ax.plot(
            [number for number, _ in shown],
            [value for _, value in shown],
            marker,
            linestyle="none",
            label=label,
        )
    complete = [trial for trial in trials if trial.state == "COMPLETE"]
    if complete:
        best = np.maximum.accumulate([trial.value or 0.0 for trial in complete])
        ax.step([trial.number for trial in complete], best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation mean ROC-AUC")
    ax.set_title(f"{family}: tuning history (trial 0: the defaults)")
    ax.legend(loc="lower right")
    return figure


class _Objective:
    """A trial: fit at each rung, report, prune or return the full fit's validation score."""

    def __init__(
        self,
        family: str,
        prepared: PreparedData,
        settings: Settings,
        train_rows: int | None,
        fixed: Mapping[str, Any],
    ) -> None:
        self.family = family
        self.prepared = prepared
        self.settings = settings
        self.train_rows = train_rows
        self.fixed = dict(fixed)
        self.space = search_space(family)
        validation = prepared.splits.validation
        self.texts, self.truth = texts_of(validation), label_matrix(validation)
        self.summaries: dict[int, TrialSummary] = {}

    def __call__(self, trial: optuna.trial.Trial) -> float:
        params = {**self.space(trial), **self.fixed}
        trial.set_user_attr("model_params", params)
        started = time.perf_counter()
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.set_tags({FAMILY_TAG: self.family, "trial": str(trial.number)})
            mlflow.log_params(_json_params(params))
            for step, fraction in enumerate(RUNGS):
                score, rows = self._fit_and_score(params, fraction)
                mlflow.log_metrics({OBJECTIVE: score, "train_rows": rows}, step=step)
                trial.report(score, step)
                pruned = step < len(RUNGS) - 1 and trial.should_prune()
                if pruned:
                    break
            state = "PRUNED" if pruned else "COMPLETE"
            seconds = time.perf_counter() - started
            mlflow.set_tag("state", state)
            mlflow.log_metric("seconds", seconds)
        self.summaries[trial.number] = TrialSummary(
            trial.number, state, score, rows, seconds, params
        )
        if pruned:
            raise optuna.TrialPruned(f"{score:.4f} at {fraction:.0%} of the training rows")
        return score

    def _fit_and_score(self, params: Mapping[str, Any], fraction: float) -> tuple[float, int]:
        """Return the validation mean ROC-AUC of a fit on `fraction` of the rows, and the rows."""
        splits = _rung_splits(self.prepared.splits, fraction, self.train_rows, self.settings.seed)
        model, _ = fit_model(
            self.family, splits, params, None, common=model_defaults(self.settings)
        )
        score = mean_roc_auc(self.truth, model.predict_proba(self.texts))
        if score is None:
            raise ToxiguardError("the validation split has no label with both classes: cannot tune")
        return score, len(splits.train)


def tune_family(
    family: str,
    prepared: PreparedData,
    settings: Settings,
    *,
    trials: int,
    timeout_s: float | None = None,
    train_rows: int | None = None,
    fixed: Mapping[str, Any] | None = None,
    startup_trials: int = 3,
    pruner: optuna.pruners.BasePruner | None = None,
    on_trial: Callable[[TrialSummary, int], None] | None = None,
) -> TuningResult:
    """Search `family`'s params for `trials` trials (or until `timeout_s`); return the best.

    `train_rows` caps the training rows a trial fits on (a faster, rougher search); `fixed`
    holds params that every trial keeps (e.g. a transformer's backbone). The median pruner
    compares trials from the `startup_trials`-th on (`pruner` replaces it). `on_trial(trial,
    finished)` is called after each trial. Raises ToxiguardError when no trial completed; the
    tuning run then records no best params.
    """
    if trials < 1:
        raise ToxiguardError(f"--trials must be at least 1, got {trials}")
    search_space(family)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=pruner
        or optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0),
        study_name=f"{family}-{prepared.splits.fingerprint[:12]}",
    )
    study.enqueue_trial(default_trial(family))
    objective = _Objective(family, prepared, settings, train_rows, fixed or {})

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        summary = objective.summaries.get(trial.number)
        if on_trial is not None and summary is not None:
            on_trial(summary, len(study.trials))

    configure_mlflow(settings)
    tags = {
        RUN_TYPE_TAG: TUNING_RUN_TYPE,
        FAMILY_TAG: family,
        "dataset_fingerprint": prepared.dataset.fingerprint,
        "splits_fingerprint": prepared.splits.fingerprint,
    }
    with mlflow.start_run(run_name=f"tune-{family}", tags=tags) as run:
        mlflow.log_params(
            {
                "family": family,
                "trials": trials,
                "timeout_s": timeout_s,
                "train_rows": train_rows or len(prepared.splits.train),
                "validation_rows": len(prepared.splits.validation),
                "rungs": json.dumps(RUNGS),
                "sampler": "TPE",
                "pruner": f"median after {startup_trials} trials",
                "seed": settings.seed,
                **{f"fixed.{key}": value for key, value in _json_params(fixed or {}).items()},
            }
        )
        study.optimize(objective, n_trials=trials, timeout=timeout_s, callbacks=[report])
        summaries = [objective.summaries[n] for n in sorted(objective.summaries)]
        mlflow.log_dict(
            {"trials": [dataclasses.asdict(trial) for trial in summaries]}, "trials.json"
        )
        mlflow.log_figure(plot_history(summaries, family), "plots/tuning_history.png")
        if not any(trial.state == "COMPLETE" for trial in summaries):
            raise ToxiguardError(
                f"every one of {len(summaries)} {family} trials was pruned: no best params "
                "recorded (run more trials, or with more training rows)"
            )
        best = study.best_trial
        best_params: dict[str, Any] = dict(best.user_attrs["model_params"])
        default = objective.summaries.get(0)
        default_value = default.value if default and default.state == "COMPLETE" else None
        metrics = {
            BEST_METRIC: float(study.best_value),
            "trials_complete": sum(t.state == "COMPLETE" for t in summaries),
            "trials_pruned": sum(t.state == "PRUNED" for t in summaries),
        }
        if default_value is not None:
            metrics[DEFAULT_METRIC] = default_value
        mlflow.log_metrics(metrics)
        mlflow.log_dict(best_params, "best_params.json")
        # Last: a run whose search failed part-way records no best params.
        mlflow.set_tag(BEST_PARAMS_TAG, json.dumps(best_params))
    return TuningResult(
        family=family,
        run_id=run.info.run_id,
        best_number=best.number,
        best_params=best_params,
        best_value=float(study.best_value),
        default_value=default_value,
        trials=summaries,
    )
