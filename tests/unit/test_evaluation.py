"""Metrics, threshold tuning and plots against values worked out by hand on tiny arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from toxiguard.labels import LABELS
from toxiguard.training.evaluation import (
    evaluate,
    flat_metrics,
    plot_f1_bars,
    plot_pr_curves,
    tune_thresholds,
)

# Columns: toxic, severe_toxic (no positives), obscene (perfectly separated),
# threat (all positive), insult, identity_hate (all scores tied).
Y_TRUE = np.array(
    [
        [0, 0, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [1, 0, 0, 1, 0, 0],
        [1, 0, 0, 1, 0, 1],
    ]
)
Y_PROB = np.array(
    [
        [0.10, 0.1, 0.9, 0.6, 0.6, 0.5],
        [0.40, 0.2, 0.2, 0.7, 0.3, 0.5],
        [0.35, 0.6, 0.3, 0.2, 0.2, 0.5],
        [0.80, 0.3, 0.1, 0.9, 0.1, 0.5],
    ]
)
# Worked out by hand: the threshold with the best F1 per label, predicting prob >= threshold.
EXPECTED_THRESHOLDS = [0.35, 0.5, 0.9, 0.2, 0.3, 0.5]


def test_tune_thresholds_matches_hand_computed_values() -> None:
    assert tune_thresholds(Y_TRUE, Y_PROB) == pytest.approx(EXPECTED_THRESHOLDS)


def test_tuned_threshold_is_at_least_as_good_as_any_other() -> None:
    rng = np.random.default_rng(0)
    y_true = (rng.random((300, 6)) < [0.3, 0.05, 0.2, 0.02, 0.15, 0.04]).astype(int)
    y_prob = np.clip(y_true * 0.3 + rng.random((300, 6)) * 0.7, 0, 1)
    tuned = tune_thresholds(y_true, y_prob)

    def f1(y: np.ndarray, flags: np.ndarray) -> float:
        tp = int((y & flags).sum())
        return 2 * tp / (2 * tp + int((~y.astype(bool) & flags).sum()) + int((y & ~flags).sum()))

    for j in range(6):
        y = y_true[:, j]
        best = f1(y, y_prob[:, j] >= tuned[j])
        for candidate in np.unique(y_prob[:, j]):
            assert best >= f1(y, y_prob[:, j] >= candidate) - 1e-12


def test_tune_thresholds_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        tune_thresholds(Y_TRUE[:, :5], Y_PROB[:, :5])
    with pytest.raises(ValueError, match="shape"):
        tune_thresholds(Y_TRUE, Y_PROB[:3])


def test_evaluate_report_matches_hand_computed_values() -> None:
    report = evaluate(Y_TRUE, Y_PROB, EXPECTED_THRESHOLDS)
    per = report["per_label"]

    assert report["n_rows"] == 4
    assert per["toxic"]["roc_auc"] == pytest.approx(0.75)
    assert per["toxic"]["pr_auc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert per["toxic"]["f1"] == pytest.approx(2 / 3)
    assert per["toxic"]["f1_tuned"] == pytest.approx(0.8)
    assert per["toxic"]["precision_tuned"] == pytest.approx(2 / 3)
    assert per["toxic"]["recall_tuned"] == pytest.approx(1.0)
    assert per["obscene"]["roc_auc"] == pytest.approx(1.0)
    assert per["insult"]["roc_auc"] == pytest.approx(2 / 3)
    assert per["insult"]["pr_auc"] == pytest.approx(0.5)
    assert per["insult"]["f1"] == 0.0
    assert per["identity_hate"]["roc_auc"] == pytest.approx(0.5)
    assert per["identity_hate"]["pr_auc"] == pytest.approx(0.25)
    assert per["threat"]["f1"] == pytest.approx(6 / 7)
    assert per["threat"]["pr_auc"] == pytest.approx(1.0)
    assert [per[label]["positives"] for label in LABELS] == [2, 0, 1, 4, 1, 1]
    assert [per[label]["threshold"] for label in LABELS] == pytest.approx(EXPECTED_THRESHOLDS)

    assert report["mean_roc_auc"] == pytest.approx((0.75 + 1 + 2 / 3 + 0.5) / 4)
    assert report["mean_pr_auc"] == pytest.approx((5 / 6 + 1 + 1 + 0.5 + 0.25) / 5)
    # Totals over labels at 0.5: TP 6, FP 5, FN 3; at the tuned thresholds: TP 9, FP 6, FN 0.
    assert report["f1_micro"] == pytest.approx(12 / 20)
    assert report["f1_micro_tuned"] == pytest.approx(18 / 24)
    assert report["f1_macro"] == pytest.approx((2 / 3 + 0 + 1 + 6 / 7 + 0 + 0.4) / 6)
    assert report["f1_macro_tuned"] == pytest.approx((0.8 + 0 + 1 + 1 + 2 / 3 + 0.4) / 6)


def test_labels_without_positives_or_negatives_have_no_roc_auc_and_a_note() -> None:
    report = evaluate(Y_TRUE, Y_PROB, EXPECTED_THRESHOLDS)
    assert report["per_label"]["severe_toxic"]["roc_auc"] is None
    assert report["per_label"]["severe_toxic"]["pr_auc"] is None
    assert report["per_label"]["threat"]["roc_auc"] is None
    notes = " ".join(report["notes"])
    assert "severe_toxic: no positive rows" in notes
    assert "threat: only positive rows" in notes


def test_no_defined_roc_auc_gives_none_mean() -> None:
    y_true = np.zeros((3, 6), dtype=int)
    report = evaluate(y_true, np.full((3, 6), 0.2), np.full(6, 0.5))
    assert report["mean_roc_auc"] is None
    assert report["mean_pr_auc"] is None
    assert tune_thresholds(y_true, np.full((3, 6), 0.2)) == pytest.approx([0.5] * 6)


def test_evaluate_rejects_wrong_threshold_count() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        evaluate(Y_TRUE, Y_PROB, [0.5] * 5)


def test_flat_metrics_names_and_values() -> None:
    report = evaluate(Y_TRUE, Y_PROB, EXPECTED_THRESHOLDS)
    flat = flat_metrics(report, "test")

    assert flat["test_roc_auc_mean"] == report["mean_roc_auc"]
    assert flat["test_pr_auc_mean"] == report["mean_pr_auc"]
    assert flat["test_f1_macro_tuned"] == report["f1_macro_tuned"]
    assert flat["test_roc_auc_toxic"] == pytest.approx(0.75)
    assert flat["test_threshold_obscene"] == pytest.approx(0.9)
    assert "test_roc_auc_severe_toxic" not in flat
    assert "test_roc_auc_threat" not in flat
    assert "test_f1_tuned_severe_toxic" in flat
    assert all(key.startswith("test_") for key in flat)
    assert all(isinstance(value, float) for value in flat.values())
    summary = {"roc_auc_mean", "pr_auc_mean", "f1_micro", "f1_macro"}
    summary |= {"f1_micro_tuned", "f1_macro_tuned"}
    per_label = {
        f"{name}_{label}"
        for name in ("roc_auc", "pr_auc", "f1", "f1_tuned", "threshold")
        for label in LABELS
    }
    missing = {"roc_auc_severe_toxic", "pr_auc_severe_toxic", "roc_auc_threat"}
    assert set(flat) == {f"test_{key}" for key in summary | per_label - missing}


def _render(figure: Figure) -> None:
    """Draw the figure as the pipeline logs it (PNG); raises if anything in it cannot be drawn."""
    figure.savefig(io.BytesIO(), format="png")


def _points(ax: Axes, label: str) -> list[list[float]]:
    """Return the (x, y) points of the one line drawn with this legend label."""
    (line,) = [line for line in ax.lines if line.get_label() == label]
    points: list[list[float]] = np.asarray(line.get_xydata()).tolist()
    return points


def test_pr_curve_plot_has_one_panel_per_label() -> None:
    figure = plot_pr_curves(Y_TRUE, Y_PROB, EXPECTED_THRESHOLDS, "validation")
    assert figure.get_suptitle() == "validation"
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == list(LABELS)
    legend = axes[0].get_legend()
    assert legend is not None
    toxic_legend = [t.get_text() for t in legend.get_texts()]
    assert toxic_legend == ["AP = 0.833", "threshold 0.350"]
    assert axes[1].get_legend() is None  # severe_toxic has no positives to draw
    assert [t.get_text() for t in axes[1].texts] == ["no positive rows"]
    # The red dot sits at the tuned threshold's (recall, precision), worked out by hand:
    # toxic at 0.35 flags rows 2-4 (2 of 3 right, both positives); insult at 0.3 flags rows 1-2.
    assert _points(axes[0], "threshold 0.350") == [[1.0, pytest.approx(2 / 3)]]
    assert _points(axes[4], "threshold 0.300") == [[1.0, 0.5]]
    _render(figure)


def test_f1_bar_plot_shows_both_f1_scores() -> None:
    report = evaluate(Y_TRUE, Y_PROB, EXPECTED_THRESHOLDS)
    figure = plot_f1_bars(report, "test")
    (ax,) = figure.get_axes()
    heights = [patch.get_height() for patch in ax.patches if isinstance(patch, Rectangle)]
    expected = [report["per_label"][label]["f1"] for label in LABELS]
    expected += [report["per_label"][label]["f1_tuned"] for label in LABELS]
    assert heights == pytest.approx(expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LABELS)
    assert ax.get_title() == "test"
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["F1 at 0.5", "F1 at tuned threshold"]
    _render(figure)
