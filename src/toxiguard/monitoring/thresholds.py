"""Thresholds suggested from the feedback store for one registered version (the champion), and
applied as a new version of the same model through the thresholds' gate.

Each labelled prediction is scored by the version whose thresholds are being set: rows that
version served keep their logged scores, rows another version served are scored again from
their logged text, and rows with neither (text not logged) are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, SCORE_COLUMNS
from toxiguard.models.package import ModelPackage
from toxiguard.monitoring.feedback import labelled_predictions
from toxiguard.monitoring.store import database_url, make_engine, upgrade_schema
from toxiguard.monitoring.tables import LABEL_COLUMNS
from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
from toxiguard.registry.promotion import PromotionDecision, gate_thresholds
from toxiguard.registry.runs import register_with_thresholds
from toxiguard.settings import Settings
from toxiguard.training.thresholds import MIN_DECISIONS, LabelThreshold, suggest_thresholds


@dataclass(frozen=True)
class FeedbackThresholds:
    """Suggested thresholds for a version, and which feedback they rest on."""

    version: int | None
    current: tuple[float, ...]
    suggestions: list[LabelThreshold]
    rows: int
    rescored: int
    without_text: int
    target: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the suggestion as a JSON-ready dict."""
        return {
            "version": self.version,
            "target": self.target,
            "rows": self.rows,
            "rescored": self.rescored,
            "without_text": self.without_text,
            "labels": {
                s.label: {**s.as_dict(), "current": current}
                for s, current in zip(self.suggestions, self.current, strict=True)
            },
        }

    def thresholds(self) -> list[float]:
        """Return the suggested thresholds, the current one where a label got none."""
        return [
            s.threshold if s.threshold is not None else current
            for s, current in zip(self.suggestions, self.current, strict=True)
        ]


def _scored_by(
    model: ModelPackage, version: int | None, rows: pd.DataFrame
) -> tuple[pd.DataFrame, int, int]:
    """Return (the rows with this version's scores, how many were rescored, how many dropped)."""
    rows = rows.reset_index(drop=True)
    served = (rows["model_version"] == version).to_numpy()
    rescore = ~served & rows["text"].notna().to_numpy()
    if rescore.any():
        texts = rows.loc[rescore, "text"].astype(str).tolist()
        rows.loc[rescore, list(SCORE_COLUMNS)] = model.predict_proba(texts)
    kept = served | rescore
    return rows[kept], int(rescore.sum()), int((~kept).sum())


def feedback_thresholds(
    settings: Settings,
    model_ref: str | None = None,
    *,
    target_precision: float | None = None,
    target_recall: float | None = None,
    min_decisions: int = MIN_DECISIONS,
) -> FeedbackThresholds:
    """Return per-label thresholds for a version (default: the champion) from the feedback."""
    model, info = load_toxicity_model(resolve_model_uri(model_ref, settings), settings)
    version = int(info["version"]) if info.get("version") is not None else None
    engine = make_engine(database_url(settings))
    try:
        upgrade_schema(engine)
        rows = labelled_predictions(engine)
    finally:
        engine.dispose()
    kept, rescored, without_text = _scored_by(model, version, rows)
    truth = kept[list(LABEL_COLUMNS)].astype(float).to_numpy().reshape(-1, len(LABELS))
    scores = kept[list(SCORE_COLUMNS)].astype(float).to_numpy().reshape(-1, len(LABELS))
    target = {
        name: value
        for name, value in (("precision", target_precision), ("recall", target_recall))
        if value is not None
    }
    return FeedbackThresholds(
        version=version,
        current=tuple(float(t) for t in model.thresholds),
        suggestions=suggest_thresholds(
            truth,
            scores,
            target_precision=target_precision,
            target_recall=target_recall,
            min_decisions=min_decisions,
        ),
        rows=len(kept),
        rescored=rescored,
        without_text=without_text,
        target=target,
    )


@dataclass(frozen=True)
class AppliedThresholds:
    """The version `thresholds apply` registered, the gate's decision on it, and why."""

    version: int
    base_version: int
    thresholds: list[float]
    changed: list[str]
    decision: PromotionDecision


def apply_feedback_thresholds(
    settings: Settings, result: FeedbackThresholds, reason: str | None = None
) -> AppliedThresholds:
    """Return the version registered with `result`'s thresholds after the gate decided on it.

    Only labels whose suggestion met its target take the new threshold; the others keep the
    current one. Refuses (ToxiguardError) when no label would change or the suggestion is not
    for a registered version.
    """
    if result.version is None:
        raise ToxiguardError("the suggestion is not for a registered version: nothing to apply")
    new = list(result.current)
    changed: list[str] = []
    for column, suggestion in enumerate(result.suggestions):
        after = suggestion.threshold
        # 1e-9: a suggestion a rounding error from the current threshold is no change.
        if after is not None and suggestion.met_target and abs(after - new[column]) > 1e-9:
            new[column] = after
            changed.append(suggestion.label)
    if not changed:
        raise ToxiguardError(
            f"nothing to apply to version {result.version}: no label has a new threshold that "
            "meets its target on the feedback"
        )
    target = ", ".join(f"{k} {v:g}" for k, v in result.target.items()) or "best F1"
    summary = f"thresholds from {result.rows:,} moderators' decisions ({target}): " + ", ".join(
        f"{label} {before:.3f}->{after:.3f}"
        for label, before, after in zip(LABELS, result.current, new, strict=True)
        if label in changed
    )
    full_reason = f"{reason}; {summary}" if reason else summary
    metrics = {
        f"feedback_{name}_{s.label}": interval.value
        for s in result.suggestions
        for name, interval in (("precision", s.precision), ("recall", s.recall))
        if interval is not None and s.label in changed
    }
    _, version = register_with_thresholds(
        settings,
        result.version,
        new,
        reason=full_reason,
        metrics=metrics,
        report=result.as_dict(),
    )
    decision = gate_thresholds(settings, version, result.version, full_reason)
    return AppliedThresholds(version, result.version, new, changed, decision)
