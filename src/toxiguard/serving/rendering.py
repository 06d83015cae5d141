"""The HTML of one scored comment: six labelled bars with their thresholds, and the words behind
the flagged labels. Shared by the server's UI and the exported Hugging Face Space; it needs
neither Gradio nor the server, only the model's outputs.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from toxiguard.labels import LABELS
from toxiguard.models.explain import Explanation

CSS = """
.tg-scores { display: grid; gap: 6px; font-size: 15px; }
.tg-row { display: grid; grid-template-columns: 9em 1fr 5em 7.5em 6em; align-items: center;
          gap: 8px; padding: 3px 6px; border-radius: 6px; }
.tg-bar { position: relative; background: #e5e7eb; border-radius: 4px; height: 14px;
          overflow: hidden; }
.tg-tick { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px;
           background: #111827; }
.tg-threshold { color: #6b7280; font-size: 12px; font-variant-numeric: tabular-nums; }
.tg-fill { background: #60a5fa; height: 100%; }
.tg-row.tg-flagged { background: #fee2e2; font-weight: 600; }
.tg-row.tg-flagged .tg-fill { background: #dc2626; }
.tg-flag { color: #b91c1c; font-size: 12px; letter-spacing: 0.05em; }
.tg-value { font-variant-numeric: tabular-nums; text-align: right; }
.tg-verdict { margin-top: 6px; }
.tg-why { margin-top: 12px; font-size: 15px; line-height: 1.7; }
.tg-why-label { font-weight: 600; margin-top: 6px; }
.tg-why mark { background: rgba(220, 38, 38, var(--tg-weight)); border-radius: 3px; }
.tg-preview { max-height: 32em; overflow: auto; }
.tg-preview table { border-collapse: collapse; font-size: 13px; width: 100%; }
.tg-preview th, .tg-preview td { border-bottom: 1px solid #e5e7eb; padding: 2px 6px; }
.tg-preview td.tg-score { text-align: right; font-variant-numeric: tabular-nums; }
.tg-preview td.tg-hit { background: #fee2e2; color: #b91c1c; font-weight: 600; }
"""


def scores_html(probabilities: Any, flags: Any, thresholds: Any) -> str:
    """Return the HTML of six labelled bars, each with its threshold marked on it and written
    beside its score, flagged labels highlighted."""
    rows = []
    for label, p, hit, t in zip(LABELS, probabilities, flags, thresholds, strict=True):
        digits = _digits(float(p), float(t))
        rows.append(
            f'<div class="tg-row{" tg-flagged" if hit else ""}" data-label="{label}" '
            f'data-score="{float(p):.6f}" data-threshold="{float(t):.6f}" '
            f'data-flagged="{str(bool(hit)).lower()}" title="threshold {float(t):.3f}">'
            f'<span class="tg-name">{label}</span>'
            f'<div class="tg-bar"><div class="tg-fill" style="width:{100 * float(p):.1f}%">'
            f'</div><div class="tg-tick" style="left:{100 * float(t):.1f}%"></div></div>'
            f'<span class="tg-value">{float(p):.{digits}f}</span>'
            f'<span class="tg-threshold">/ thr {float(t):.{digits}f}</span>'
            f'<span class="tg-flag">{"FLAGGED" if hit else ""}</span></div>'
        )
    flagged = [label for label, hit in zip(LABELS, flags, strict=True) if hit]
    verdict = (
        f"<strong>Flagged:</strong> {html.escape(', '.join(flagged))}"
        if flagged
        else "Not flagged for any label."
    )
    return f'<div class="tg-scores">{"".join(rows)}<div class="tg-verdict">{verdict}</div></div>'


def _digits(score: float, threshold: float) -> int:
    """Return the decimals (3 to 6) that show a score and its threshold apart, where they differ.

    Thresholds tuned on a confident model sit near 1, so 0.9996 / 0.9999 would both read 1.000.
    """
    for digits in range(3, 6):
        if f"{score:.{digits}f}" != f"{threshold:.{digits}f}":
            return digits
    return 6


def highlighted_html(explanation: Explanation, flags: Any) -> str:
    """Return the comment once per flagged label (the top label if none is), with the words that
    raised that label's score marked, darker for more."""
    columns = [i for i, hit in enumerate(flags) if hit] or [
        int(np.argmax(explanation.probabilities))
    ]
    sections = []
    for column in columns:
        values = explanation.contributions[:, column]
        strongest = float(values.max()) if len(values) else 0.0
        parts, position = [], 0
        for token, value in zip(explanation.tokens, values, strict=True):
            parts.append(html.escape(explanation.text[position : token.begin]))
            word = html.escape(token.text)
            if value > 0 and strongest > 0:
                weight = 0.15 + 0.7 * float(value) / strongest
                word = (
                    f'<mark data-contribution="{float(value):.6f}" '
                    f'style="--tg-weight:{weight:.2f}">{word}</mark>'
                )
            parts.append(word)
            position = token.end
        parts.append(html.escape(explanation.text[position:]))
        label = LABELS[column]
        sections.append(
            f'<div class="tg-why-label">{label}</div>'
            f'<div class="tg-why-text" data-label="{label}">{"".join(parts)}</div>'
        )
    note = "flagged" if any(flags) else "highest-scoring, not flagged"
    return (
        f'<div class="tg-why"><strong>Words behind the {note} label(s)</strong> '
        f"({html.escape(explanation.method)}){''.join(sections)}</div>"
    )
