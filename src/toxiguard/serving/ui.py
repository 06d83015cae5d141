"""The Gradio UI, mounted in the API's app at /ui: one comment at a time, or a CSV file.

It uses the server's own model, inference thread and prediction log (source "ui"), and needs
nothing from the internet: Gradio's analytics are off and the default theme's fonts are local.
Gradio is the optional 'ui' extra: the API imports this module only when it is installed.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
import pandas as pd

from toxiguard.data.readers import read_comments
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models.explain import Explanation, explain
from toxiguard.monitoring.dashboard import PANEL_TITLES, monitoring_panels
from toxiguard.serving.batch_scoring import with_scores
from toxiguard.serving.middleware import new_request_id
from toxiguard.serving.predictor import PredictionResult
from toxiguard.serving.state import ServingState
from toxiguard.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

# Written for this UI; not taken from any data set.
EXAMPLES = [
    "Thanks for fixing the references, the article reads much better now.",
    "I disagree with this edit; please discuss it on the talk page first.",
    "You are a complete idiot and nobody wants you here.",
    "Shut up, you stupid moron, or I will find you.",
]

CSS = """
.tg-scores { display: grid; gap: 6px; font-size: 15px; }
.tg-row { display: grid; grid-template-columns: 9em 1fr 4.5em 6em; align-items: center; gap: 8px;
          padding: 3px 6px; border-radius: 6px; }
.tg-bar { background: #e5e7eb; border-radius: 4px; height: 14px; overflow: hidden; }
.tg-fill { background: #60a5fa; height: 100%; }
.tg-row.tg-flagged { background: #fee2e2; font-weight: 600; }
.tg-row.tg-flagged .tg-fill { background: #dc2626; }
.tg-flag { color: #b91c1c; font-size: 12px; letter-spacing: 0.05em; }
.tg-value { font-variant-numeric: tabular-nums; text-align: right; }
.tg-verdict { margin-top: 6px; }
.tg-why { margin-top: 12px; font-size: 15px; line-height: 1.7; }
.tg-why-label { font-weight: 600; margin-top: 6px; }
.tg-why mark { background: rgba(220, 38, 38, var(--tg-weight)); border-radius: 3px; }
"""


def scores_html(probabilities: Any, flags: Any, thresholds: Any) -> str:
    """Return the HTML of six labelled bars, flagged labels highlighted."""
    rows = []
    for label, p, hit, t in zip(LABELS, probabilities, flags, thresholds, strict=True):
        rows.append(
            f'<div class="tg-row{" tg-flagged" if hit else ""}" data-label="{label}" '
            f'data-score="{float(p):.6f}" data-flagged="{str(bool(hit)).lower()}" '
            f'title="threshold {float(t):.3f}">'
            f'<span class="tg-name">{label}</span>'
            f'<div class="tg-bar"><div class="tg-fill" style="width:{100 * float(p):.1f}%">'
            "</div></div>"
            f'<span class="tg-value">{float(p):.3f}</span>'
            f'<span class="tg-flag">{"FLAGGED" if hit else ""}</span></div>'
        )
    flagged = [label for label, hit in zip(LABELS, flags, strict=True) if hit]
    verdict = (
        f"<strong>Flagged:</strong> {html.escape(', '.join(flagged))}"
        if flagged
        else "Not flagged for any label."
    )
    return f'<div class="tg-scores">{"".join(rows)}<div class="tg-verdict">{verdict}</div></div>'


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


def model_markdown(state: ServingState) -> str:
    """Return one line naming the served model and its version."""
    loaded = state.predictor.current
    note = " — **local copy, registry unreachable**" if loaded.source != "registry" else ""
    return (
        f"Model **{loaded.name}** version **{loaded.version}** ({loaded.family}, "
        f"alias `{state.predictor.alias}`){note}"
    )


def build_ui(state: ServingState) -> gr.Blocks:
    """Return the Gradio Blocks of the UI, wired to the server's state."""
    settings = state.settings
    downloads = settings.resolved_home / "serving" / "ui-downloads"

    def score_comment(text: str) -> tuple[str, str]:
        if not text or not text.strip():
            raise gr.Error("Type a comment first.")
        if len(text) > settings.max_text_chars:
            raise gr.Error(f"The comment is longer than {settings.max_text_chars} characters.")
        result = state.inference.predict_sync([text])
        state.record(new_request_id(), "ui", [text], result)
        thresholds = result.model.model.thresholds
        body = scores_html(result.probabilities[0], result.flags[0], thresholds)
        explanation = explain(result.model.model.model, text)
        return body + highlighted_html(explanation, result.flags[0]), model_markdown(state)

    def score_csv(path: str | None, column: str) -> tuple[str, str, str]:
        if not path:
            raise gr.Error("Upload a CSV file first.")
        try:
            frame = read_comments(path, text_column=(column or TEXT_COLUMN).strip())
        except ToxiguardError as error:
            raise gr.Error(without_server_path(str(error), path)) from error
        if len(frame) > settings.ui_max_rows:
            raise gr.Error(
                f"The file has {len(frame):,} rows; the UI scores at most "
                f"{settings.ui_max_rows:,}. Use `toxiguard score` for bigger files."
            )
        scored, flagged_share = _score_frame(state, frame, (column or TEXT_COLUMN).strip())
        downloads.mkdir(parents=True, exist_ok=True)
        out_dir = Path(tempfile.mkdtemp(prefix="scored-", dir=downloads))
        output = out_dir / f"{Path(path).name.split('.')[0] or 'comments'}-scored.csv"
        scored.to_csv(output, index=False)
        summary = f"Scored **{len(scored):,}** comments; flagged: " + ", ".join(
            f"{label} {share:.1%}" for label, share in flagged_share.items()
        )
        return str(output), summary, model_markdown(state)

    with gr.Blocks(title="toxiguard", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# toxiguard\nScores a comment for the six Jigsaw labels. "
            "The REST API is documented at [/docs](/docs)."
        )
        model_line = gr.Markdown(elem_id="model-version")
        with gr.Tab("Comment", id="comment"):
            comment = gr.Textbox(
                label="Comment",
                lines=4,
                placeholder="Type or paste a comment",
                elem_id="comment-input",
            )
            button = gr.Button("Score", variant="primary", elem_id="score-button")
            result = gr.HTML(elem_id="scores", js_on_load=None)
            gr.Examples(examples=EXAMPLES, inputs=comment, label="Examples")
            button.click(score_comment, inputs=comment, outputs=[result, model_line])
            comment.submit(score_comment, inputs=comment, outputs=[result, model_line])
        with gr.Tab("Batch (CSV)", id="batch"):
            gr.Markdown(
                "Upload a CSV file with one comment per row (at most "
                f"{_megabytes(settings.ui_max_upload_bytes)}, {settings.ui_max_rows:,} rows); "
                "download it with a `score_<label>` column per label and a `flagged` column added."
            )
            upload = gr.File(
                label="CSV file", file_types=[".csv"], type="filepath", elem_id="batch-upload"
            )
            column = gr.Textbox(value=TEXT_COLUMN, label="Text column", elem_id="batch-column")
            run = gr.Button("Score file", variant="primary", elem_id="batch-button")
            summary = gr.Markdown(elem_id="batch-summary")
            download = gr.File(label="Scored CSV", interactive=False, elem_id="batch-download")
            run.click(score_csv, inputs=[upload, column], outputs=[download, summary, model_line])
        _monitoring_tab(settings)
        blocks.load(lambda: model_markdown(state), outputs=model_line)
    built: gr.Blocks = blocks
    return built


def without_server_path(message: str, path: str) -> str:
    """Return the message with the uploaded file's server path shown as its name only."""
    return message.replace(str(Path(path)), Path(path).name).replace(path, Path(path).name)


def _megabytes(size: int) -> str:
    """Return a byte count as megabytes for people, e.g. '10 MB'."""
    return f"{size / 1024 / 1024:g} MB"


def _monitoring_tab(settings: Settings) -> None:
    """Add a Monitoring tab: drift, traffic, quality and alert panels, the latest report."""
    with gr.Tab("Monitoring", id="monitoring"):
        summary = gr.Markdown(elem_id="monitoring-summary")
        plots = [gr.Plot(label=title) for title in PANEL_TITLES]
        alerts = gr.Dataframe(label="Recent alerts", interactive=False)
        report = gr.File(label="Latest Evidently report", interactive=False)
        refresh = gr.Button("Refresh", elem_id="monitoring-refresh")
        refresh.click(
            lambda: monitoring_panels(settings).as_tuple(),
            outputs=[summary, *plots, alerts, report],
        )


def _score_frame(
    state: ServingState, frame: pd.DataFrame, column: str
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Return the frame with score and flagged columns, logging each chunk; and flagged shares."""
    texts = frame[column].astype(str).tolist()
    request_id = new_request_id()
    step = state.settings.microbatch_max_texts
    parts: list[PredictionResult] = []
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        part = state.inference.predict_sync(chunk)
        state.record(request_id, "ui", chunk, part, first_index=start)
        parts.append(part)
    probabilities = (
        np.vstack([p.probabilities for p in parts]) if parts else np.zeros((0, len(LABELS)))
    )
    flags = np.vstack([p.flags for p in parts]) if parts else np.zeros((0, len(LABELS)), bool)
    scored = with_scores(frame, probabilities, flags)
    shares = {
        label: float(flags[:, i].mean()) if len(flags) else 0.0 for i, label in enumerate(LABELS)
    }
    return scored, shares


def mount_ui(app: FastAPI, state: ServingState, path: str) -> None:
    """Mount the UI on the app at `path`; with API keys set, it asks for one as the password."""
    keys = state.settings.api_key_list

    def check(_user: str, password: str) -> bool:
        return state.settings.accepts_api_key(password)

    downloads = state.settings.resolved_home / "serving" / "ui-downloads"
    gr.mount_gradio_app(
        app,
        build_ui(state),
        path=path,
        auth=check if keys else None,
        auth_message="Log in with any user name and one of the server's API keys as password."
        if keys
        else None,
        allowed_paths=[str(downloads)],
        # Refused while it streams in (413), and by the browser before it is sent.
        max_file_size=state.settings.ui_max_upload_bytes,
        footer_links=["api", "settings"],
        run_history=False,
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        css=CSS,
    )
