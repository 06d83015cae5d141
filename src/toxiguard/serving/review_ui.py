"""The UI's Review tab: the review queue, newest first, and one-click decisions by a moderator.

Each comment shows its text, each label's score against the served model's threshold and why it
is in the queue. "Confirm" stores the model's flags as the true labels; a label's button stores
them with that one label corrected; "Save labels" stores any set. A decision is feedback (source
"review") naming the API key the moderator logged in with, and the list is read again after it.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from typing import Final

import gradio as gr
from starlette.exceptions import HTTPException

from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS
from toxiguard.serving.feedback import FeedbackStore
from toxiguard.serving.limits import key_id
from toxiguard.serving.review import ReviewEntry, record_decision, review_page
from toxiguard.serving.state import ServingState

#: Comments shown at once: each brings ten components, and Gradio renders them all again after
#: every decision.
PAGE_SIZE: Final = 10
ALL_LABELS: Final = ""
_REVIEWERS: Final = "ui_reviewers"  # the attribute of the ServingState that holds the logins

REVIEW_CSS = """
.tg-review-card { display: grid; gap: 6px; }
.tg-review-why { font-weight: 600; }
.tg-review-text { margin: 0; padding: 6px 10px; border-left: 3px solid #9ca3af;
                  white-space: pre-wrap; }
.tg-review-scores { display: flex; flex-wrap: wrap; gap: 6px; font-size: 13px; }
.tg-review-score { padding: 2px 6px; border-radius: 4px; background: #f3f4f6;
                   font-variant-numeric: tabular-nums; }
.tg-review-score.tg-flagged { background: #fee2e2; color: #991b1b; font-weight: 600; }
.tg-review-score.tg-near { outline: 1px dashed #d97706; }
.tg-review-meta { font-size: 12px; color: #6b7280; }
"""


class Reviewers:
    """Who logged in to the UI: user name -> key id of the API key they gave as password.

    Gradio tells an event its user name only; the login remembers which key that name used
    (the latest login of a name wins). Thread-safe: logins run in worker threads.
    """

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def remember(self, username: str, key: str) -> None:
        """Note that `username` logged in with `key` (only its key id is kept)."""
        with self._lock:
            self._ids[username] = key_id(key)

    def key_id(self, username: str | None) -> str | None:
        """Return the key id `username` logged in with, None if unknown (or no login)."""
        if username is None:
            return None
        with self._lock:
            return self._ids.get(username)


def ui_reviewers(state: ServingState) -> Reviewers:
    """Return the UI's logins of this server, kept on its state (made on first use)."""
    found: Reviewers = vars(state).setdefault(_REVIEWERS, Reviewers())
    return found


def card_html(position: int, entry: ReviewEntry, thresholds: dict[str, float]) -> str:
    """Return the HTML of one queue entry: why it is there, its text, scores vs thresholds."""
    if entry.why == "flagged":
        why = "Flagged: " + ", ".join(entry.flagged)
    else:
        why = "Uncertain: " + ", ".join(entry.uncertain) + " near the threshold"
    scores = []
    for label in LABELS:
        classes = "tg-review-score"
        classes += " tg-flagged" if label in entry.flagged else ""
        classes += " tg-near" if label in entry.uncertain else ""
        score, threshold = entry.scores[label], thresholds[label]
        scores.append(
            f'<span class="{classes}" data-label="{label}" data-score="{score:.6f}" '
            f'data-threshold="{threshold:.6f}">{label} {score:.3f} / {threshold:.3f}</span>'
        )
    version = f" by version {entry.model_version}" if entry.model_version is not None else ""
    return (
        f'<div class="tg-review-card" data-position="{position}" '
        f'data-request-id="{html.escape(entry.request_id)}" '
        f'data-item-index="{entry.item_index}" data-why="{entry.why}">'
        f'<div class="tg-review-why">{html.escape(why)}</div>'
        f'<blockquote class="tg-review-text">{html.escape(entry.text)}</blockquote>'
        f'<div class="tg-review-scores">{"".join(scores)}</div>'
        f'<div class="tg-review-meta">scored {entry.created_at:%Y-%m-%d %H:%M:%S} UTC{version}'
        "; score / threshold per label</div></div>"
    )


Decide = Callable[[ReviewEntry, Sequence[str]], Callable[..., tuple[int, str]]]


def _review_item(
    position: int,
    entry: ReviewEntry,
    thresholds: dict[str, float],
    decide: Decide,
    decide_ticked: Callable[[ReviewEntry], Callable[..., tuple[int, str]]],
    generation: gr.State,
    status: gr.Markdown,
) -> None:
    """Add one queue entry: its card, Confirm, a toggle per label, and a several-labels form."""
    # Classes, not an id, on the group: Gradio puts a group's id on two elements.
    with gr.Group(elem_classes=["tg-review-item", f"tg-review-item-{position}"]):
        gr.HTML(card_html(position, entry, thresholds), elem_id=f"review-card-{position}")
        with gr.Row():
            confirm = gr.Button(
                "Confirm",
                variant="primary",
                elem_id=f"review-{position}-confirm",
                elem_classes=["tg-review-confirm"],
            )
            confirm.click(decide(entry, entry.flagged), generation, [generation, status])
            for label_name in LABELS:
                flagged = label_name in entry.flagged
                corrected = sorted(set(entry.flagged) ^ {label_name}, key=LABELS.index)
                toggle = gr.Button(
                    f"Not {label_name}" if flagged else f"Also {label_name}",
                    size="sm",
                    elem_id=f"review-{position}-toggle-{label_name}",
                    elem_classes=["tg-review-toggle"],
                )
                toggle.click(decide(entry, corrected), generation, [generation, status])
        with gr.Accordion("Set several labels", open=False):
            ticked = gr.CheckboxGroup(
                choices=list(LABELS),
                value=entry.flagged,
                label="Labels that apply (none ticked: clean)",
                elem_id=f"review-{position}-labels",
            )
            save = gr.Button("Save labels", elem_id=f"review-{position}-save")
            save.click(decide_ticked(entry), [ticked, generation], [generation, status])


def review_tab(state: ServingState) -> gr.Tab:
    """Add a Review tab (the review queue with one-click decisions stored as feedback); return
    it."""
    holder = FeedbackStore(state.settings, state.recent.size)
    reviewers = ui_reviewers(state)

    def store(entry: ReviewEntry, labels: Sequence[str], request: gr.Request) -> str:
        """Store a decision as the logged-in moderator; return the line saying what was stored."""
        reviewer = reviewers.key_id(request.username if request is not None else None)
        try:
            stored = record_decision(holder, entry.request_id, entry.item_index, labels, reviewer)
        except HTTPException as error:
            raise gr.Error(str(error.detail)) from error
        named = [label for label, value in stored.labels.items() if value] or ["clean"]
        return (
            f"Stored **{', '.join(named)}** for the comment "
            f"`{stored.request_id}` #{stored.item_index}."
        )

    def decide(entry: ReviewEntry, labels: Sequence[str]) -> Callable[..., tuple[int, str]]:
        """Return the click handler storing these labels for the entry."""

        def handler(generation: int, request: gr.Request) -> tuple[int, str]:
            return generation + 1, store(entry, labels, request)

        return handler

    def decide_ticked(entry: ReviewEntry) -> Callable[..., tuple[int, str]]:
        """Return the click handler storing the labels the moderator ticked for the entry."""

        def handler(ticked: list[str], generation: int, request: gr.Request) -> tuple[int, str]:
            return generation + 1, store(entry, ticked or [], request)

        return handler

    with gr.Tab("Review", id="review") as tab:
        gr.Markdown(
            "Comments the model flagged, and some whose score is close to a threshold (their "
            "labels teach the model most), newest first. **Confirm** if the flags are right, "
            "or click a label to correct it; the decision counts in live quality and retraining."
        )
        with gr.Row():
            choice = gr.Dropdown(
                choices=[("All labels", ALL_LABELS), *((label, label) for label in LABELS)],
                value=ALL_LABELS,
                label="Label",
                elem_id="review-label",
            )
            refresh = gr.Button("Refresh", elem_id="review-refresh", scale=0)
        status = gr.Markdown(elem_id="review-status")
        generation = gr.State(0)  # bumped to read the queue again
        refresh.click(lambda n: n + 1, generation, generation)
        tab.select(lambda n: n + 1, generation, generation)

        def show(label: str | None, _generation: int) -> None:
            try:
                page = review_page(state, holder, label or None, PAGE_SIZE)
            except HTTPException as error:  # the store is down
                gr.Markdown(f"**{error.detail}**", elem_id="review-error")
                return
            except ToxiguardError as error:  # no model served yet: no thresholds to compare with
                gr.Markdown(f"**{error}**", elem_id="review-error")
                return
            if not page.items:
                gr.Markdown("Nothing to review.", elem_id="review-empty")
                return
            for position, entry in enumerate(page.items):
                _review_item(
                    position, entry, page.thresholds, decide, decide_ticked, generation, status
                )

        # Read again on load, a new label, and every bump of `generation` (gradio is untyped).
        gr.render(inputs=[choice, generation])(show)
    added: gr.Tab = tab
    return added


__all__ = ["REVIEW_CSS", "Reviewers", "card_html", "review_tab", "ui_reviewers"]
