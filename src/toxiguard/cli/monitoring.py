"""Commands that watch the served model: monitoring runs, feedback, simulated traffic."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from toxiguard.cli.common import (
    console,
    counting_progress,
    installed,
    prefect_environment,
    require_installed,
    settings_with,
)
from toxiguard.settings import get_settings

if TYPE_CHECKING:
    from toxiguard.monitoring.thresholds import FeedbackThresholds

logger = logging.getLogger(__name__)

commands = typer.Typer()
monitor_app = typer.Typer(help="Drift, live quality and alerts on the served model's traffic.")
feedback_app = typer.Typer(help="True labels of logged predictions.")
thresholds_app = typer.Typer(help="Per-label decision thresholds from moderators' feedback.")


@monitor_app.command("run")
def monitor_run(
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the run's result (JSON) here.")
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(help="Model version to check (default: the one serving the window)."),
    ] = None,
    window_hours: Annotated[
        float | None, typer.Option(help="Window length in hours (default: settings).")
    ] = None,
    retrain: Annotated[
        bool | None,
        typer.Option(
            "--retrain/--no-retrain", help="Start retraining on a drift alert (default: settings)."
        ),
    ] = None,
) -> None:
    """Compare the window's traffic with the model's reference; store, alert, maybe retrain."""
    require_installed("`toxiguard monitor run`", "monitoring", "evidently")
    from toxiguard.monitoring.job import Retrainer, run_monitoring
    from toxiguard.orchestration.stack import attach_to_running_stack

    settings = attach_to_running_stack(
        settings_with(monitoring_window_hours=window_hours, retrain_on_drift=retrain)
    )
    prefect_environment(settings)
    retrainer: Retrainer | None = None
    if installed("prefect"):
        from toxiguard.orchestration.flows import retrain as prefect_retrainer

        retrainer = prefect_retrainer
    elif settings.retrain_on_drift:
        # Monitoring works without Prefect; only the retraining it may ask for needs it.
        logger.warning(
            "retraining on drift is off: it needs the 'orchestration' extra (prefect is not "
            "installed): pip install 'toxiguard[orchestration]'"
        )

    outcome = run_monitoring(settings, version=version, retrainer=retrainer)
    data = outcome.to_dict()
    table = Table(title=f"Monitoring run {outcome.run_id}: {data['status']}", show_edge=False)
    table.add_column("column")
    table.add_column("method")
    table.add_column("score", justify="right")
    table.add_column("drifted")
    for column in outcome.result.columns:
        score = "n/a" if column.score is None else f"{column.score:.4g}"
        table.add_row(
            column.column, column.method, score, "[bold red]yes[/]" if column.drifted else ""
        )
    console.print(table)
    console.print(data["message"])
    if data["drift_score"] is not None:
        console.print(
            f"drift_score {data['drift_score']:.3f}, missing_share {data['missing_share']:.4f}, "
            f"drifted_features {data['drifted_features']} (version {data['model_version']}, "
            f"{data['rows']} rows); report {data['report_path']}"
        )
    for alert in outcome.alerts:
        console.print(f"[bold red]alert[/] [{alert.severity}] {alert.message}")
    for alert in outcome.suppressed:
        console.print(f"[dim]held by the cool-down: {alert.message}[/]")
    if outcome.retraining:
        console.print(f"retraining: {json.dumps(outcome.retraining, default=str)}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2, default=str))
        console.print(f"result written to {json_out}")


@feedback_app.command("import")
def feedback_import(
    path: Annotated[
        Path,
        typer.Argument(
            help="CSV (.gz/.zip) or parquet: request_id, item_index (optional, default 0) and "
            "the six label columns (0/1)."
        ),
    ],
) -> None:
    """Store true labels for logged predictions (a later label replaces an earlier one)."""
    from toxiguard.monitoring import store
    from toxiguard.monitoring.feedback import (
        logged_predictions,
        read_feedback_file,
        store_feedback,
    )

    items = read_feedback_file(path)
    engine = store.make_engine(store.database_url(get_settings()))
    try:
        store.upgrade_schema(engine)
        stored = store_feedback(engine, items, source="import")
        known = logged_predictions(engine, [(i.request_id, i.item_index) for i in items])
    finally:
        engine.dispose()
    console.print(
        f"stored feedback for {stored:,} predictions ({len(known):,} found in the prediction log)"
    )


@commands.command()
def simulate(
    url: Annotated[
        str | None,
        typer.Option(help="Base URL of a local API (loopback only; default: host and port)."),
    ] = None,
    data_path: Annotated[
        Path, typer.Option("--data", "-d", help="Comments to replay (CSV/zip/gz/parquet).")
    ] = Path("data/raw/train.csv"),
    shift: Annotated[
        str, typer.Option(help="none, longer, shorter, more-toxic (needs labels) or caps.")
    ] = "none",
    n: Annotated[int, typer.Option("--n", help="Comments to send.")] = 500,
    batch_size: Annotated[int, typer.Option(help="Comments per request.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
) -> None:
    """Replay real comments to the API (bounded in count and time) to show drift detection."""
    from toxiguard.orchestration.simulate import simulate as run_simulation
    from toxiguard.orchestration.stack import api_url

    settings = get_settings()
    url = url or api_url(settings)
    keys = settings.api_key_list
    with counting_progress(f"simulating ({shift})", n) as on_progress:
        result = run_simulation(
            url,
            data_path,
            shift=shift,
            n=n,
            batch_size=batch_size,
            seed=seed,
            max_requests=settings.simulate_max_requests,
            max_seconds=settings.simulate_max_seconds,
            max_chars=settings.max_text_chars,
            api_key=keys[0] if keys else None,
            on_progress=on_progress,
        )
    console.print(
        f"sent {result.comments:,} comments in {result.requests:,} requests "
        f"({result.seconds:.1f} s, shift {shift}); {result.errors} failed requests"
        + (" ; stopped by the time limit" if result.stopped_by_time else "")
    )
    for sample in result.error_samples:
        console.print(f"  {sample}")
    if result.errors:
        raise typer.Exit(1)


def _proportion(interval: Any) -> str:
    """Return a proportion with its 95% interval, compactly: .81 (.75-.86)."""
    if interval is None:
        return "-"
    value, low, high = (f"{x:.2f}".removeprefix("0") for x in interval.as_tuple())
    return f"{value} ({low}-{high})"


ModelOption = Annotated[
    str | None, typer.Option("--model", help="Version, alias or URI (default: the champion).")
]
PrecisionOption = Annotated[
    float | None,
    typer.Option(min=0.0, max=1.0, help="Flag with at least this precision (most recall)."),
]
RecallOption = Annotated[
    float | None,
    typer.Option(min=0.0, max=1.0, help="Flag with at least this recall (most precision)."),
]
MinDecisionsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Positive and negative decisions each label needs, at least (default: "
        "settings, threshold_min_decisions).",
    ),
]


def _suggestion(
    model_ref: str | None,
    target_precision: float | None,
    target_recall: float | None,
    min_decisions: int | None,
) -> FeedbackThresholds:
    """Return the thresholds the feedback suggests, after printing them as a table."""
    from toxiguard.errors import ToxiguardError
    from toxiguard.monitoring.thresholds import feedback_thresholds

    if target_precision is not None and target_recall is not None:
        raise ToxiguardError("give --target-precision or --target-recall, not both")
    settings = get_settings()
    result = feedback_thresholds(
        settings,
        model_ref,
        target_precision=target_precision,
        target_recall=target_recall,
        min_decisions=min_decisions or settings.threshold_min_decisions,
    )
    table = Table(title=f"Thresholds for version {result.version}", show_edge=False)
    for column in ("label", "n (pos)", "now", "new", "precision", "recall"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for suggestion, current in zip(result.suggestions, result.current, strict=True):
        table.add_row(
            suggestion.label,
            f"{suggestion.decisions:,} ({suggestion.positives:,})",
            f"{current:.3f}",
            "-" if suggestion.threshold is None else f"{suggestion.threshold:.3f}",
            _proportion(suggestion.precision),
            _proportion(suggestion.recall),
        )
    table.caption = "n (pos): decisions (positive); precision, recall: on them, 95% intervals"
    console.print(table)
    for suggestion in result.suggestions:
        if suggestion.threshold is None or not suggestion.met_target:
            console.print(f"{suggestion.label}: {suggestion.note}")
    console.print(
        f"{result.rows:,} labelled predictions ({result.rescored:,} rescored from their text; "
        f"{result.without_text:,} left out: served by another version, text not logged)"
    )
    return result


@thresholds_app.command("suggest")
def thresholds_suggest(
    model_ref: ModelOption = None,
    target_precision: PrecisionOption = None,
    target_recall: RecallOption = None,
    min_decisions: MinDecisionsOption = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the suggestion (JSON) here.")
    ] = None,
) -> None:
    """Suggest per-label thresholds from moderators' feedback (default target: best F1)."""
    result = _suggestion(model_ref, target_precision, target_recall, min_decisions)
    if json_out is not None:
        json_out.write_text(json.dumps(result.as_dict(), indent=2))
        console.print(f"suggestion written to {json_out}")


@thresholds_app.command("apply")
def thresholds_apply(
    reason: Annotated[str, typer.Option(help="Why, recorded with the version and promotion.")],
    model_ref: ModelOption = None,
    target_precision: PrecisionOption = None,
    target_recall: RecallOption = None,
    min_decisions: MinDecisionsOption = None,
) -> None:
    """Register the champion's model with the thresholds `suggest` shows (labels that meet the
    target), and make it champion through the thresholds' gate."""
    from toxiguard.monitoring.thresholds import apply_feedback_thresholds

    result = _suggestion(model_ref, target_precision, target_recall, min_decisions)
    applied = apply_feedback_thresholds(get_settings(), result, reason)
    decision = applied.decision
    outcome = "champion" if decision.promoted else "registered, not promoted"
    console.print(
        f"version {applied.version} (version {applied.base_version}'s model, new thresholds "
        f"for {', '.join(applied.changed)}): {outcome}"
    )
    console.print(f"  reason: {decision.reason}")
    if not decision.promoted:
        raise typer.Exit(1)
