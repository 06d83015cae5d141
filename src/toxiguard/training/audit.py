"""The audit of a fitted model: identity-term bias and obfuscation robustness in one report.

Every training run audits its model on the test split and on the project's templated identity
sentences (`training.bias`, `training.robustness`); the run logs the report
(`reports/audit.json`, metrics `audit_*`, `plots/subgroup_aucs.png`), the package carries it
(`audit.json`, shown by the UI's Model tab and `toxiguard audit`), and the promotion gate
compares the guarded figures (`GUARDED`) of a new version with the champion's, both measured
on the same comments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from toxiguard.labels import LABELS
from toxiguard.training.bias import (
    BiasReport,
    NeutralGap,
    labelled_bias,
    neutral_gap,
    templated_bias,
)
from toxiguard.training.evaluation import new_figure
from toxiguard.training.robustness import RobustnessReport, robustness_report

FloatArray = npt.NDArray[np.float64]
Predict = Callable[[list[str]], FloatArray]
TOXIC = LABELS.index("toxic")

#: The audit figures the gate guards (higher is better), each with the settings' margin that
#: names how much a new version may lose against the champion: bias or robustness. The final
#: bias score guarded is the competition's, on real comments; the templated sentences' score is
#: reported, not guarded: it measures how well 24 templates separate, and a complement-nb on
#: 4,000 rows (test ROC-AUC 0.891) scored 0.963 there against 0.921 for a tfidf-lr (0.952).
GUARDED: dict[str, str] = {
    "bias_final_test": "bias",
    "robustness_worst": "robustness",
}


@dataclass(frozen=True)
class AuditReport:
    """A model's bias on the test split and on templated sentences, its neutral-sentence gap
    between identity terms, and its ROC-AUC under each obfuscation."""

    bias_test: BiasReport
    bias_templates: BiasReport
    neutral: NeutralGap
    robustness: RobustnessReport

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "bias_test": self.bias_test.to_dict(),
            "bias_templates": self.bias_templates.to_dict(),
            "neutral": self.neutral.to_dict(),
            "robustness": self.robustness.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditReport:
        """Return the report `to_dict` wrote."""
        return cls(
            bias_test=BiasReport.from_dict(data["bias_test"]),
            bias_templates=BiasReport.from_dict(data["bias_templates"]),
            neutral=NeutralGap.from_dict(data["neutral"]),
            robustness=RobustnessReport.from_dict(data["robustness"]),
        )

    def guarded(self) -> dict[str, float | None]:
        """Return the figures the gate guards, None where this report could not measure one."""
        return {
            "bias_final_test": self.bias_test.final_score,
            "robustness_worst": self.robustness.worst_auc,
        }

    def metrics(self) -> dict[str, float]:
        """Return the report's numbers as flat MLflow metrics (`audit_*`), defined ones only."""
        values: dict[str, float | None] = {
            **self.guarded(),
            "bias_final_templates": self.bias_templates.final_score,
            "neutral_gap": self.neutral.gap,
            "neutral_above_threshold": float(len(self.neutral.above_threshold)),
            "robustness_clean": self.robustness.clean_auc,
            **{f"robustness_{name}": auc for name, auc in self.robustness.perturbed.items()},
        }
        return {f"audit_{key}": float(value) for key, value in values.items() if value is not None}


def _memoized(predict: Predict, known: dict[str, FloatArray]) -> Predict:
    """Return `predict` scoring each distinct text once, starting from the `known` scores: the
    templated bias set and the neutral gap share their sentences, the robustness report rescores
    its clean comments, and a transformer costs ~50 ms a comment on 2 cores."""
    cache = dict(known)

    def scores(texts: list[str]) -> FloatArray:
        missing = list(dict.fromkeys(text for text in texts if text not in cache))
        if missing:
            for text, row in zip(missing, np.asarray(predict(missing)), strict=True):
                cache[text] = row
        return np.stack([cache[text] for text in texts]) if texts else np.zeros((0, len(LABELS)))

    return scores


def audit_model(
    predict: Predict,
    texts: Sequence[str],
    truth: npt.ArrayLike,
    thresholds: npt.ArrayLike,
    *,
    seed: int,
    robustness_rows: int | None,
    probabilities: npt.ArrayLike | None = None,
) -> AuditReport:
    """Return the audit of a model on these labelled comments (its test split) and on the
    templated identity sentences.

    `probabilities`, the model's scores on `texts` where the caller has them, saves scoring the
    comments again; `robustness_rows` caps the comments perturbed (a seeded sample).
    """
    comments = list(texts)
    labels = np.asarray(truth)
    known = {}
    if probabilities is not None:
        known = dict(zip(comments, np.asarray(probabilities, dtype=np.float64), strict=True))
    scores = _memoized(predict, known)
    clean = scores(comments)

    def toxic(batch: list[str]) -> FloatArray:
        return np.asarray(scores(batch)[:, TOXIC], dtype=np.float64)

    threshold = float(np.asarray(thresholds, dtype=np.float64)[TOXIC])
    return AuditReport(
        bias_test=labelled_bias(comments, labels[:, TOXIC], clean[:, TOXIC]),
        bias_templates=templated_bias(toxic),
        neutral=neutral_gap(toxic, threshold),
        robustness=robustness_report(scores, comments, labels, seed=seed, max_rows=robustness_rows),
    )


def plot_subgroup_aucs(report: BiasReport, title: str) -> Figure:
    """Return a bar chart of each subgroup's subgroup, BPSN and BNSP AUC (missing ones blank)."""
    groups = [group for group in report.subgroups if group.size > 0]
    figure = new_figure(max(8.0, 0.55 * len(groups) + 2), 4.5)
    ax = figure.subplots()
    x = np.arange(len(groups))
    width = 0.27
    for offset, (name, attribute) in enumerate(
        (("subgroup", "subgroup_auc"), ("BPSN", "bpsn_auc"), ("BNSP", "bnsp_auc"))
    ):
        values = [getattr(group, attribute) for group in groups]
        ax.bar(
            x + (offset - 1) * width,
            [np.nan if value is None else value for value in values],
            width,
            label=name,
        )
    ax.set_xticks(x, [group.subgroup for group in groups], rotation=45, ha="right")
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("ROC-AUC (toxic)")
    final = "n/a" if report.final_score is None else f"{report.final_score:.4f}"
    ax.set_title(f"{title} (final bias score {final})")
    ax.legend(loc="lower left")
    return figure


def _rounded(value: float | None, digits: int = 4) -> float | None:
    """Return the value rounded for a table, None kept."""
    return None if value is None else round(float(value), digits)


def bias_rows(report: BiasReport) -> list[dict[str, Any]]:
    """Return one table row per subgroup: comments, subgroup, BPSN and BNSP AUC."""
    return [
        {
            "subgroup": group.subgroup,
            "comments": group.size,
            "subgroup_auc": _rounded(group.subgroup_auc),
            "bpsn_auc": _rounded(group.bpsn_auc),
            "bnsp_auc": _rounded(group.bnsp_auc),
        }
        for group in report.subgroups
    ]


def neutral_rows(gap: NeutralGap) -> list[dict[str, Any]]:
    """Return one row per identity phrase, highest mean toxic score first, with its flag."""
    ordered = sorted(gap.mean_by_term.items(), key=lambda item: item[1], reverse=True)
    return [
        {
            "identity": term,
            "mean_toxic": _rounded(score),
            "above_threshold": term in gap.above_threshold,
        }
        for term, score in ordered
    ]


def robustness_rows(report: RobustnessReport) -> list[dict[str, Any]]:
    """Return one row per obfuscation (clean first): mean ROC-AUC and its change from clean."""
    rows: list[dict[str, Any]] = [
        {"perturbation": "clean", "mean_roc_auc": _rounded(report.clean_auc), "change": 0.0}
    ]
    for name, auc in report.perturbed.items():
        change = None if auc is None or report.clean_auc is None else auc - report.clean_auc
        rows.append(
            {"perturbation": name, "mean_roc_auc": _rounded(auc), "change": _rounded(change)}
        )
    return rows


#: The audit's tables by name, with the caption people see (CLI, UI); MLflow logs each as
#: `tables/audit_<name>.json`.
TABLE_CAPTIONS: dict[str, str] = {
    "bias_test": "Identity subgroups, test comments (toxic label)",
    "bias_templates": "Identity subgroups, templated sentences (toxic label)",
    "neutral": "Neutral sentences: mean toxic score by identity",
    "robustness": "Obfuscations: mean ROC-AUC under each",
}


def audit_tables(report: AuditReport) -> dict[str, list[dict[str, Any]]]:
    """Return the audit's four tables by name (the keys of `TABLE_CAPTIONS`), as rows."""
    return {
        "bias_test": bias_rows(report.bias_test),
        "bias_templates": bias_rows(report.bias_templates),
        "neutral": neutral_rows(report.neutral),
        "robustness": robustness_rows(report.robustness),
    }


def audit_summary(report: AuditReport) -> list[str]:
    """Return the audit's headline figures as short lines for people."""

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    neutral = report.neutral
    above = ", ".join(neutral.above_threshold) or "none"
    return [
        f"final bias score: test split {shown(report.bias_test.final_score)} "
        f"({report.bias_test.rows} comments), templated sentences "
        f"{shown(report.bias_templates.final_score)}",
        f"neutral sentences: mean toxic score from {neutral.mean_by_term[neutral.lowest]:.3f} "
        f"({neutral.lowest}) to {neutral.mean_by_term[neutral.highest]:.3f} ({neutral.highest}), "
        f"gap {neutral.gap:.3f}; above the toxic threshold {neutral.threshold:.3f}: {above}",
        f"robustness: clean mean ROC-AUC {shown(report.robustness.clean_auc)}, worst "
        f"{shown(report.robustness.worst_auc)} ({report.robustness.worst_name or 'n/a'}) "
        f"on {report.robustness.rows} comments",
    ]
