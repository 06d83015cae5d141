"""Metrics for the six labels: ROC-AUC, PR-AUC, F1 at 0.5 and at tuned thresholds, and plots."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)

from toxiguard.labels import LABELS
from toxiguard.models.metrics import label_roc_aucs, mean_defined

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
DEFAULT_THRESHOLD = 0.5


def _check(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> tuple[npt.NDArray[np.int_], FloatArray]:
    """Return both arrays as (n, 6) int and float arrays; raise ValueError on a shape mismatch."""
    truth = np.asarray(y_true).astype(np.int_)
    prob = np.asarray(y_prob, dtype=np.float64)
    expected = (truth.shape[0], len(LABELS)) if truth.ndim == 2 else None
    if truth.ndim != 2 or truth.shape != prob.shape or truth.shape != expected:
        raise ValueError(
            f"expected y_true and y_prob of shape (n, {len(LABELS)}), "
            f"got {truth.shape} and {prob.shape}"
        )
    return truth, prob


def _best_f1_threshold(truth: npt.NDArray[np.int_], prob: FloatArray) -> float:
    """Return the threshold with the highest F1 for one label (predicting prob >= threshold)."""
    if truth.sum() == 0:
        return DEFAULT_THRESHOLD
    precision, recall, thresholds = precision_recall_curve(truth, prob)
    # The last (precision, recall) pair has no threshold: it is the "predict nothing" end.
    precision, recall = precision[:-1], recall[:-1]
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    return float(thresholds[int(np.argmax(f1))])


def tune_thresholds(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> FloatArray:
    """Return the per-label thresholds with the best F1 on these rows (0.5 with no positives)."""
    truth, prob = _check(y_true, y_prob)
    return np.array(
        [_best_f1_threshold(truth[:, j], prob[:, j]) for j in range(len(LABELS))],
        dtype=np.float64,
    )


def evaluate(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, thresholds: npt.ArrayLike
) -> dict[str, Any]:
    """Return the JSON-ready evaluation report: mean and per-label ROC-AUC, PR-AUC and F1 scores."""
    truth, prob = _check(y_true, y_prob)
    cut = np.asarray(thresholds, dtype=np.float64)
    if cut.shape != (len(LABELS),):
        raise ValueError(f"expected {len(LABELS)} thresholds, got shape {cut.shape}")
    flags_default = (prob >= DEFAULT_THRESHOLD).astype(np.int_)
    flags_tuned = (prob >= cut).astype(np.int_)
    notes: list[str] = [
        "pr_auc is average precision; f1 uses threshold 0.5, f1_tuned the per-label thresholds",
    ]
    per_label: dict[str, dict[str, Any]] = {}
    roc_aucs = label_roc_aucs(truth, prob)
    for j, label in enumerate(LABELS):
        y, p = truth[:, j], prob[:, j]
        positives = int(y.sum())
        roc_auc = roc_aucs[label]
        pr_auc: float | None = None
        if roc_auc is None:
            kind = "no positive" if positives == 0 else "only positive"
            notes.append(f"{label}: {kind} rows, ROC-AUC undefined and left out of the mean")
        if positives > 0:
            pr_auc = float(average_precision_score(y, p))
        else:
            notes.append(f"{label}: no positive rows, PR-AUC undefined and left out of the mean")
        per_label[label] = {
            "roc_auc": roc_auc,
            "pr_auc": pr_auc,
            "f1": float(f1_score(y, flags_default[:, j], zero_division=0)),
            "f1_tuned": float(f1_score(y, flags_tuned[:, j], zero_division=0)),
            "precision_tuned": float(precision_score(y, flags_tuned[:, j], zero_division=0)),
            "recall_tuned": float(recall_score(y, flags_tuned[:, j], zero_division=0)),
            "threshold": float(cut[j]),
            "positives": positives,
        }
    return {
        "n_rows": int(truth.shape[0]),
        "mean_roc_auc": mean_defined(roc_aucs),
        "mean_pr_auc": mean_defined({label: m["pr_auc"] for label, m in per_label.items()}),
        "f1_micro": float(f1_score(truth, flags_default, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(truth, flags_default, average="macro", zero_division=0)),
        "f1_micro_tuned": float(f1_score(truth, flags_tuned, average="micro", zero_division=0)),
        "f1_macro_tuned": float(f1_score(truth, flags_tuned, average="macro", zero_division=0)),
        "per_label": per_label,
        "notes": notes,
    }


def flat_metrics(report: dict[str, Any], prefix: str) -> dict[str, float]:
    """Return the report as flat MLflow metrics ("<prefix>_roc_auc_mean", ...), without Nones."""
    summary = {
        "roc_auc_mean": report["mean_roc_auc"],
        "pr_auc_mean": report["mean_pr_auc"],
        "f1_micro": report["f1_micro"],
        "f1_macro": report["f1_macro"],
        "f1_micro_tuned": report["f1_micro_tuned"],
        "f1_macro_tuned": report["f1_macro_tuned"],
        # a cascade's share of comments sent to its slow stage
        "escalated_share": report.get("escalated_share"),
    }
    for label, metrics in report["per_label"].items():
        for name in ("roc_auc", "pr_auc", "f1", "f1_tuned", "threshold"):
            summary[f"{name}_{label}"] = metrics[name]
    return {f"{prefix}_{key}": float(value) for key, value in summary.items() if value is not None}


def new_figure(width: float, height: float) -> Figure:
    """Return a figure drawn by the Agg canvas, independent of pyplot's global state."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_pr_curves(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, thresholds: npt.ArrayLike, title: str
) -> Figure:
    """Return a 2x3 figure of per-label precision-recall curves with the tuned threshold marked."""
    truth, prob = _check(y_true, y_prob)
    cut = np.asarray(thresholds, dtype=np.float64)
    figure = new_figure(13, 8)
    axes = figure.subplots(2, 3)
    for j, (label, ax) in enumerate(zip(LABELS, axes.flat, strict=True)):
        y, p = truth[:, j], prob[:, j]
        ax.set_title(label)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if y.sum() == 0:
            ax.text(0.5, 0.5, "no positive rows", ha="center", va="center")
            continue
        precision, recall, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.step(recall, precision, where="post", label=f"AP = {ap:.3f}")
        flags = p >= cut[j]
        ax.plot(
            [recall_score(y, flags, zero_division=0)],
            [precision_score(y, flags, zero_division=0)],
            "o",
            color="tab:red",
            label=f"threshold {cut[j]:.3f}",
        )
        ax.legend(loc="lower left")
    figure.suptitle(title)
    return figure


def plot_f1_bars(report: dict[str, Any], title: str) -> Figure:
    """Return a bar chart of per-label F1 at 0.5 next to F1 at the tuned thresholds."""
    labels = list(report["per_label"])
    at_default = [report["per_label"][label]["f1"] for label in labels]
    at_tuned = [report["per_label"][label]["f1_tuned"] for label in labels]
    positions = np.arange(len(labels))
    width = 0.38
    figure = new_figure(9, 4.5)
    ax = figure.subplots()
    ax.bar(positions - width / 2, at_default, width, label="F1 at 0.5")
    ax.bar(positions + width / 2, at_tuned, width, label="F1 at tuned threshold")
    ax.set_xticks(positions, labels, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.legend()
    ax.set_title(title)
    return figure


def plot_escalation_curve(
    curve: list[dict[str, float]], chosen_share: float, slow_auc: float, title: str
) -> Figure:
    """Return a cascade's validation mean ROC-AUC against the share of comments escalated to
    its slow stage, one point per tail share swept, the chosen band marked."""
    points = sorted(curve, key=lambda point: point["escalated"])
    figure = new_figure(8, 4.5)
    ax = figure.subplots()
    ax.plot(
        [100 * point["escalated"] for point in points],
        [point["auc"] for point in points],
        "o-",
        label="cascade",
    )
    ax.axhline(slow_auc, color="tab:gray", linestyle="--", label="slow stage alone")
    chosen = next(point for point in curve if point["tail_share"] == chosen_share)
    ax.plot(
        [100 * chosen["escalated"]],
        [chosen["auc"]],
        "o",
        color="tab:red",
        markersize=10,
        label=f"chosen: {100 * chosen['escalated']:.1f}% escalated",
    )
    ax.set_xlabel("comments escalated to the slow stage (%)")
    ax.set_ylabel("validation mean ROC-AUC")
    ax.legend(loc="lower right")
    ax.set_title(title)
    return figure
