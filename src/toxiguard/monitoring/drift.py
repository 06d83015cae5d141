"""Drift between a model's monitoring reference and a window of live traffic, with Evidently.

One Evidently report per run: `DataDriftPreset` (a `ValueDrift` per column and
`DriftedColumnsCount`) over the text statistics and the six scores, plus
`DatasetMissingValueCount`. When the window holds comment texts, a second, small report
compares their content with the reference's (Evidently's text content drift: a domain
classifier), on at most as many current texts as the reference has, so that its cost does not
grow with traffic. Results come from `snapshot.dict()`; per-column decisions from its tests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from toxiguard.errors import require_extra
from toxiguard.features.statistics import STATISTICS_COLUMNS
from toxiguard.labels import FLAG_COLUMNS, SCORE_COLUMNS
from toxiguard.models.reference import OOV_COLUMN, TEXT_COLUMN

logger = logging.getLogger(__name__)

OK: Final = "ok"
INSUFFICIENT_DATA: Final = "insufficient_data"
NUMERIC_COLUMNS: Final = (*STATISTICS_COLUMNS, OOV_COLUMN, *SCORE_COLUMNS)
_FEATURE: Final = "drift detection (`toxiguard monitor run`)"


@dataclass(frozen=True)
class ColumnDrift:
    """The drift decision for one column: Evidently's score, method and threshold."""

    column: str
    kind: str  # "statistic", "score" or "text"
    method: str
    threshold: float | None
    score: float | None
    drifted: bool
    reference_mean: float | None = None
    current_mean: float | None = None


@dataclass
class DriftResult:
    """One comparison of a window with the reference ("insufficient_data" carries no numbers)."""

    status: str
    rows: int
    reference_rows: int
    min_rows: int
    drift_score: float | None = None
    missing_share: float | None = None
    drifted_features: int | None = None
    columns: list[ColumnDrift] = field(default_factory=list)
    flagged_rate: dict[str, dict[str, float]] = field(default_factory=dict)
    report_path: Path | None = None
    seconds: float = 0.0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        data = asdict(self)
        data["report_path"] = str(self.report_path) if self.report_path else None
        return data


def _finite(value: Any) -> float | None:
    """Return a float, or None for a missing or non-finite value (JSON and SQL safe)."""
    if value is None:
        return None
    number = float(value)
    return number if np.isfinite(number) else None


def _kind(column: str) -> str:
    """Return the kind of a monitored column."""
    if column == TEXT_COLUMN:
        return "text"
    return "score" if column in SCORE_COLUMNS else "statistic"


def compared_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """Return the numeric columns both frames hold (OOV share needs texts on both sides)."""
    return [c for c in NUMERIC_COLUMNS if c in reference.columns and c in current.columns]


def has_texts(frame: pd.DataFrame) -> bool:
    """Return True when the frame holds at least one comment text."""
    return TEXT_COLUMN in frame.columns and bool(frame[TEXT_COLUMN].notna().any())


def flagged_rates(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Return, per label, the share of rows flagged in the reference and in the window."""
    rates: dict[str, dict[str, float]] = {}
    for column in FLAG_COLUMNS:
        if column in reference.columns and column in current.columns:
            label = column.removeprefix("flag_")
            rates[label] = {
                "reference": float(reference[column].astype(float).mean()),
                "current": float(current[column].astype(float).mean()),
            }
    return rates


def _drift_tests(snapshot: dict[str, Any]) -> dict[str, bool]:
    """Return column -> drifted, from the ValueDrift tests of an Evidently snapshot."""
    decisions: dict[str, bool] = {}
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith(":ValueDrift"):
            decisions[str(params["column"])] = str(test["status"]).endswith("FAIL")
    return decisions


def _column_results(
    snapshot: dict[str, Any], reference: pd.DataFrame, current: pd.DataFrame
) -> list[ColumnDrift]:
    """Return one ColumnDrift per ValueDrift metric of an Evidently snapshot."""
    decisions = _drift_tests(snapshot)
    results = []
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        column = str(config["column"])
        numeric = column != TEXT_COLUMN
        value = metric.get("value")
        results.append(
            ColumnDrift(
                column=column,
                kind=_kind(column),
                method=str(config.get("method")),
                threshold=_finite(config.get("threshold")),
                score=_finite(value),
                drifted=decisions.get(column, False),
                reference_mean=_finite(reference[column].mean()) if numeric else None,
                current_mean=_finite(current[column].mean()) if numeric else None,
            )
        )
    return results


def _metric(snapshot: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Return the value of the first metric whose type ends with `suffix`."""
    for metric in snapshot["metrics"]:
        if str(metric["config"].get("type", "")).endswith(suffix):
            value: dict[str, Any] = metric["value"]
            return value
    raise KeyError(suffix)


def _text_drift(
    reference: pd.DataFrame, current: pd.DataFrame, seed: int, report_path: Path | None
) -> ColumnDrift | None:
    """Return Evidently's text content drift of the window's texts against the reference's.

    None when it cannot be computed (no words at all on either side: the classifier has no
    vocabulary).
    """
    # Evidently is the optional 'monitoring' extra: checked first, so a core install gets one
    # clear error; imported here, so the core imports this module without it.
    require_extra("evidently", "monitoring", _FEATURE)
    from evidently import DataDefinition, Dataset, Report  # noqa: PLC0415
    from evidently.metrics import ValueDrift  # noqa: PLC0415

    texts = current[TEXT_COLUMN].dropna().astype(str)
    reference_texts = reference[TEXT_COLUMN].astype(str)
    if len(texts) > len(reference_texts):
        texts = texts.sample(n=len(reference_texts), random_state=seed)
    definition = DataDefinition(text_columns=[TEXT_COLUMN])
    try:
        snapshot = Report([ValueDrift(column=TEXT_COLUMN)], include_tests=True).run(
            Dataset.from_pandas(
                pd.DataFrame({TEXT_COLUMN: texts.tolist()}), data_definition=definition
            ),
            Dataset.from_pandas(
                pd.DataFrame({TEXT_COLUMN: reference_texts.tolist()}), data_definition=definition
            ),
        )
    except ValueError as error:
        logger.warning("text content drift not computed: %s", error)
        return None
    if report_path is not None:
        snapshot.save_html(str(report_path.with_name(report_path.stem + "-text.html")))
    return _column_results(snapshot.dict(), reference, current)[0]


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    method: str = "ks",
    threshold: float = 0.01,
    min_rows: int = 200,
    text_drift: bool = True,
    report_path: Path | None = None,
    seed: int = 42,
) -> DriftResult:
    """Return the drift of `current` against `reference` (an "insufficient_data" result if small).

    Both frames hold monitoring columns (`toxiguard.monitoring.reference.monitoring_frame`).
    drift_score is the share of compared columns that drifted, drifted_features their count,
    missing_share the share of missing cells among the compared columns of the window.
    The HTML report is written to `report_path` when given.
    """
    started = time.perf_counter()
    result = DriftResult(
        status=INSUFFICIENT_DATA,
        rows=len(current),
        reference_rows=len(reference),
        min_rows=min_rows,
    )
    if len(current) < min_rows:
        result.message = f"{len(current)} rows in the window, fewer than the {min_rows} required"
        return result
    # Evidently is the optional 'monitoring' extra (see `_text_drift`).
    require_extra("evidently", "monitoring", _FEATURE)
    from evidently import DataDefinition, Dataset, Report  # noqa: PLC0415
    from evidently.metrics import DatasetMissingValueCount  # noqa: PLC0415
    from evidently.presets import DataDriftPreset  # noqa: PLC0415

    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
    columns = compared_columns(reference, current)
    definition = DataDefinition(numerical_columns=columns)
    report = Report(
        [
            DataDriftPreset(columns=columns, num_method=method, num_threshold=threshold),
            DatasetMissingValueCount(columns=columns),
        ],
        include_tests=True,
    )
    snapshot = report.run(
        Dataset.from_pandas(current.loc[:, columns].astype(np.float64), data_definition=definition),
        Dataset.from_pandas(
            reference.loc[:, columns].astype(np.float64), data_definition=definition
        ),
    )
    data = snapshot.dict()
    result.columns = _column_results(data, reference, current)
    missing = _metric(data, ":DatasetMissingValueCount")
    result.missing_share = float(missing["count"]) / max(len(current) * len(columns), 1)
    if text_drift and has_texts(current) and has_texts(reference):
        text_result = _text_drift(reference, current, seed, report_path)
        if text_result is not None:
            result.columns.append(text_result)
    result.drifted_features = sum(column.drifted for column in result.columns)
    result.drift_score = result.drifted_features / max(len(result.columns), 1)
    result.flagged_rate = flagged_rates(reference, current)
    if report_path is not None:
        snapshot.save_html(str(report_path))
        result.report_path = report_path
    result.status = OK
    result.seconds = time.perf_counter() - started
    result.message = (
        f"{result.drifted_features} of {len(result.columns)} columns drifted "
        f"({method}, threshold {threshold})"
    )
    logger.info("drift: %s on %d rows", result.message, len(current))
    return result


__all__ = [
    "INSUFFICIENT_DATA",
    "NUMERIC_COLUMNS",
    "OK",
    "ColumnDrift",
    "DriftResult",
    "compared_columns",
    "detect_drift",
    "flagged_rates",
    "has_texts",
]
