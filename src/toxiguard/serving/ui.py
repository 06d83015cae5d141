"""The Gradio UI, mounted in the API's app at /ui: one comment at a time, or a CSV file.

It uses the server's own model, inference thread and prediction log (source "ui"), and needs
nothing from the internet: Gradio's analytics are off and the default theme's fonts are local.
Gradio is the optional 'ui' extra: the API imports this module only when it is installed.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
import pandas as pd

from toxiguard.data.readers import read_comments
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, SCORE_COLUMNS, TEXT_COLUMN
from toxiguard.models.explain import explain
from toxiguard.monitoring.dashboard import PANEL_TITLES, monitoring_panels
from toxiguard.serving.batch_scoring import FLAGGED_COLUMN, with_scores
from toxiguard.serving.local_copy import LOCAL_COPY, PredictionResult
from toxiguard.serving.middleware import new_request_id
from toxiguard.serving.model_ui import model_tab
from toxiguard.serving.predictor import BUNDLE, NoChampionError
from toxiguard.serving.rendering import CSS, highlighted_html, scores_html
from toxiguard.serving.review_ui import REVIEW_CSS, review_tab, ui_reviewers
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
# The Monitoring tab redraws this often while it is open: the monitoring job stores a run every
# few minutes to hours, so a minute keeps it current without querying the store more often.
MONITORING_REFRESH_S = 60
# Rows of a scored file shown under the batch tab: enough to check a file by eye; the
# download holds them all.
PREVIEW_ROWS = 50
PREVIEW_TEXT_CHARS = 160


def preview_html(scored: pd.DataFrame, text_column: str, limit: int = PREVIEW_ROWS) -> str:
    """Return an HTML table of the first `limit` scored rows (text, scores, flagged), each
    flagged label's score cell marked (class tg-hit, data-flagged="true")."""
    header = "".join(f"<th>{label}</th>" for label in LABELS)
    rows = []
    for index, row in scored.head(limit).iterrows():
        hits = set(str(row[FLAGGED_COLUMN]).split())
        text = str(row[text_column])
        if len(text) > PREVIEW_TEXT_CHARS:
            text = text[: PREVIEW_TEXT_CHARS - 1] + "…"
        cells = "".join(
            f'<td class="tg-score{" tg-hit" if label in hits else ""}" data-label="{label}" '
            f'data-flagged="{str(label in hits).lower()}">{float(row[score]):.3f}</td>'
            for label, score in zip(LABELS, SCORE_COLUMNS, strict=True)
        )
        rows.append(
            f'<tr data-row="{index}"><td class="tg-text">{html.escape(text)}</td>{cells}'
            f'<td class="tg-flagged-labels">{html.escape(" ".join(sorted(hits, key=LABELS.index)))}'
            "</td></tr>"
        )
    shown = min(limit, len(scored))
    caption = f"First {shown:,} of {len(scored):,} rows" if len(scored) > shown else "All rows"
    return (
        f'<div class="tg-preview"><table><caption>{caption}; flagged scores marked</caption>'
        f"<thead><tr><th>{html.escape(text_column)}</th>{header}<th>flagged</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def model_markdown(state: ServingState) -> str:
    """Return one line naming the served model and its version, or saying there is none yet."""
    if not state.predictor.loaded:
        return (
            f"No champion yet (alias `{state.predictor.alias}`): train and promote a model "
            "(`toxiguard run` / `toxiguard train`); it is served here as soon as it is promoted."
        )
    loaded = state.predictor.current
    note = {
        LOCAL_COPY: " — **local copy, registry unreachable**",
        BUNDLE: f" — bundle `{loaded.info.get('uri', '')}`",
    }.get(loaded.source, "")
    return (
        f"Model **{loaded.name}** version **{loaded.version}** ({loaded.family}, "
        f"alias `{state.predictor.alias}`){note}"
    )


def build_ui(state: ServingState) -> gr.Blocks:
    """Return the Gradio Blocks of the UI, wired to the server's state."""
    with gr.Blocks(title="toxiguard", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# toxiguard\nScores a comment for the six Jigsaw labels. "
            "The REST API is documented at [/docs](/docs)."
        )
        model_line = gr.Markdown(elem_id="model-version")
        tabs = (
            _comment_tab(state, model_line),
            _batch_tab(state, model_line),
            review_tab(state),
            model_tab(state, blocks),
        )
        _monitoring_tab(state.settings, blocks, other_tabs=tabs)
        blocks.load(lambda: model_markdown(state), outputs=model_line)
    built: gr.Blocks = blocks
    return built


def _predict(state: ServingState, texts: list[str]) -> PredictionResult:
    """Return the served model's result for the texts; a gr.Error while no champion is served."""
    try:
        return state.inference.predict_sync(texts)
    except NoChampionError as error:
        raise gr.Error(str(error)) from error


def _comment_tab(state: ServingState, model_line: gr.Markdown) -> gr.Tab:
    """Add the Comment tab (one comment: bars, flags, thresholds, the words behind them);
    return it."""
    settings = state.settings

    def score_comment(text: str) -> tuple[str, str]:
        if not text or not text.strip():
            raise gr.Error("Type a comment first.")
        if len(text) > settings.max_text_chars:
            raise gr.Error(f"The comment is longer than {settings.max_text_chars} characters.")
        result = _predict(state, [text])
        state.record(new_request_id(), "ui", [text], result)
        thresholds = result.model.model.thresholds
        body = scores_html(result.probabilities[0], result.flags[0], thresholds)
        explanation = explain(result.model.model.model, text)
        return body + highlighted_html(explanation, result.flags[0]), model_markdown(state)

    with gr.Tab("Comment", id="comment") as tab:
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
    added: gr.Tab = tab
    return added


def _batch_tab(state: ServingState, model_line: gr.Markdown) -> gr.Tab:
    """Add the Batch tab (a CSV file scored: download, summary, preview); return it."""
    settings = state.settings
    downloads = settings.resolved_home / "serving" / "ui-downloads"

    def score_csv(path: str | None, column: str) -> tuple[str, str, str, str]:
        if not path:
            raise gr.Error("Upload a CSV file first.")
        text_column = (column or TEXT_COLUMN).strip()
        try:
            frame = read_comments(path, text_column=text_column)
        except ToxiguardError as error:
            raise gr.Error(without_server_path(str(error), path)) from error
        if len(frame) > settings.ui_max_rows:
            raise gr.Error(
                f"The file has {len(frame):,} rows; the UI scores at most "
                f"{settings.ui_max_rows:,}. Use `toxiguard score` for bigger files."
            )
        scored, flagged_share = _score_frame(state, frame, text_column)
        downloads.mkdir(parents=True, exist_ok=True)
        out_dir = Path(tempfile.mkdtemp(prefix="scored-", dir=downloads))
        output = out_dir / f"{Path(path).name.split('.')[0] or 'comments'}-scored.csv"
        scored.to_csv(output, index=False)
        summary = f"Scored **{len(scored):,}** comments; flagged: " + ", ".join(
            f"{label} {share:.1%}" for label, share in flagged_share.items()
        )
        return str(output), summary, preview_html(scored, text_column), model_markdown(state)

    with gr.Tab("Batch (CSV)", id="batch") as tab:
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
        shown = gr.HTML(elem_id="batch-preview")
        run.click(
            score_csv, inputs=[upload, column], outputs=[download, summary, shown, model_line]
        )
    added: gr.Tab = tab
    return added


def without_server_path(message: str, path: str) -> str:
    """Return the message with the uploaded file's server path shown as its name only."""
    return message.replace(str(Path(path)), Path(path).name).replace(path, Path(path).name)


def _megabytes(size: int) -> str:
    """Return a byte count as megabytes for people, e.g. '10 MB'."""
    return f"{size / 1024 / 1024:g} MB"


def _monitoring_tab(settings: Settings, blocks: gr.Blocks, other_tabs: Sequence[gr.Tab]) -> None:
    """Add a Monitoring tab (drift, traffic, quality and alert panels, the latest report), filled
    when the page loads and the tab opens, then every MONITORING_REFRESH_S while it is shown
    (selecting one of `other_tabs` pauses it), and on Refresh."""
    with gr.Tab("Monitoring", id="monitoring") as tab:
        summary = gr.Markdown(elem_id="monitoring-summary")
        plots = [
            gr.Plot(label=title, elem_id=f"monitoring-panel-{i}")
            for i, title in enumerate(PANEL_TITLES)
        ]
        alerts = gr.Dataframe(label="Recent alerts", interactive=False)
        report = gr.File(label="Latest Evidently report", interactive=False)
        refresh = gr.Button("Refresh", elem_id="monitoring-refresh")
        timer = gr.Timer(MONITORING_REFRESH_S, active=False)
    outputs = [summary, *plots, alerts, report]

    def fill() -> tuple[Any, ...]:
        return monitoring_panels(settings).as_tuple()

    gr.on([blocks.load, refresh.click], fill, outputs=outputs)
    # A tick redraws in place, without the panels' loading overlay every minute.
    timer.tick(fill, outputs=outputs, show_progress="hidden")
    tab.select(lambda: gr.Timer(active=True), outputs=timer).then(fill, outputs=outputs)
    # The timer ticks only while this tab is the one shown: each tick queries the store.
    for other in other_tabs:
        other.select(lambda: gr.Timer(active=False), outputs=timer)


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
        part = _predict(state, chunk)
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

    reviewers = ui_reviewers(state)

    def check(user: str, password: str) -> bool:
        accepted = state.settings.accepts_api_key(password)
        if accepted:  # the Review tab records which key a moderator's decisions came from
            reviewers.remember(user, password)
        return accepted

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
        css=CSS + REVIEW_CSS,
    )
