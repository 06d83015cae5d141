"""The UI's Model tab: what the served model is, and its bias and robustness audit."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from toxiguard.serving.state import ServingState
from toxiguard.training.audit import (
    TABLE_CAPTIONS,
    AuditReport,
    audit_summary,
    audit_tables,
    plot_subgroup_aucs,
)


def rows_html(caption: str, rows: list[dict[str, Any]]) -> str:
    """Return rows (dicts with the same keys) as an HTML table, each row's first value in its
    `data-row` attribute and each cell's key in `data-column`."""
    if not rows:
        return f"<p>{html.escape(caption)}: nothing measured.</p>"
    header = "".join(f"<th>{html.escape(key.replace('_', ' '))}</th>" for key in rows[0])
    body = "".join(
        f'<tr data-row="{html.escape(str(next(iter(row.values()))))}">'
        + "".join(
            f'<td data-column="{html.escape(key)}">'
            f"{'n/a' if value is None else html.escape(str(value))}</td>"
            for key, value in row.items()
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="tg-preview"><table><caption>{html.escape(caption)}</caption>'
        f"<thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def model_page(state: ServingState) -> tuple[Any, ...]:
    """Return the Model tab's contents for the served model: headline markdown, the subgroup-AUC
    plot of the templated sentences, and the bias, neutral-sentence and robustness tables."""
    empty = (None, *("" for _ in TABLE_CAPTIONS))
    if not state.predictor.loaded:
        return ("No champion is served yet.", *empty)
    loaded = state.predictor.current
    lines = [f"### {loaded.name} version {loaded.version} ({loaded.family})"]
    metrics = loaded.info.get("metrics") or {}
    if "test_roc_auc_mean" in metrics:
        lines.append(f"Test mean ROC-AUC **{float(metrics['test_roc_auc_mean']):.4f}**.")
    if loaded.model.audit is None:
        lines.append(
            "This version was registered without an audit (trained before audits existed): "
            "`toxiguard audit --model VERSION --data FILE` audits it on a labelled file."
        )
        return ("\n\n".join(lines), *empty)
    report = AuditReport.from_dict(loaded.model.audit)
    lines += [f"- {line}" for line in audit_summary(report)]
    figure = plot_subgroup_aucs(report.bias_templates, "Identity subgroups, templated sentences")
    tables = audit_tables(report)
    shown = (rows_html(TABLE_CAPTIONS[name], tables[name]) for name in TABLE_CAPTIONS)
    return ("\n".join(lines), figure, *shown)


def model_tab(state: ServingState, blocks: gr.Blocks) -> gr.Tab:
    """Add the Model tab, filled when the page loads and when the tab opens; return it."""
    with gr.Tab("Model", id="model") as tab:
        headline = gr.Markdown(elem_id="model-audit-summary")
        plot = gr.Plot(label="Subgroup, BPSN and BNSP AUC (toxic)", elem_id="model-audit-plot")
        tables = [gr.HTML(elem_id=f"model-audit-{name}") for name in TABLE_CAPTIONS]
    outputs = [headline, plot, *tables]
    gr.on([blocks.load, tab.select], lambda: model_page(state), outputs=outputs)
    added: gr.Tab = tab
    return added
