"""The `toxiguard` command line: a thin Typer layer over the library functions."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table

from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.settings import OFFLINE_ENVIRONMENT, Settings, get_settings

app = typer.Typer(
    help="toxiguard: multi-label toxic comment classification, from Kaggle files to a model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Check data files.", no_args_is_help=True)
models_app = typer.Typer(help="Show and change the model registry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")

console = Console()
error_console = Console(stderr=True)

RAW_DATA_CANDIDATES = ("train.csv", "train.csv.zip", "train.csv.gz", "train.parquet")
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registered model: a version number, an alias, or a models:/ or runs:/ URI. "
        "Default: the champion.",
    ),
]


@app.callback()
def configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    """Set up logging and the offline environment for every command."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=error_console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "httpx", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------- data
@data_app.command("validate")
def data_validate(
    path: Annotated[
        Path,
        typer.Argument(
            help="A Kaggle file: train.csv(.zip/.gz), parquet, "
            "or test.csv with test_labels.csv beside it."
        ),
    ],
) -> None:
    """Validate a labelled file and summarise it; exit 2 with every problem found."""
    from toxiguard import data

    dataset = data.load_dataset(path)
    table = Table(title=f"{dataset.source}: valid", show_edge=False)
    table.add_column("label")
    table.add_column("positives", justify="right")
    table.add_column("share", justify="right")
    labels = data.label_matrix(dataset.frame)
    for index, label in enumerate(LABELS):
        positives = int(labels[:, index].sum())
        table.add_row(label, f"{positives:,}", f"{positives / max(len(labels), 1):.2%}")
    console.print(table)
    console.print(f"rows read: {dataset.rows_read:,}; rows kept: {len(dataset.frame):,}")
    for rule, count in dataset.dropped.items():
        console.print(f"dropped {count:,} rows: {rule}")
    console.print(f"fingerprint (sha256): {dataset.fingerprint}")


# ---------------------------------------------------------------- training
@app.command()
def train(
    data_path: Annotated[Path, typer.Option("--data", "-d", help="Labelled training file.")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model family to train; repeat for several. Default: every TF-IDF baseline.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the split and models.")] = None,
    backbone: Annotated[
        str | None,
        typer.Option(help="transformer: Hugging Face id or local directory of the backbone."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="transformer: training epochs.")] = None,
    max_length: Annotated[int | None, typer.Option(help="transformer: tokens per window.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="transformer: batch size.")] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="transformer: peak AdamW learning rate.")
    ] = None,
) -> None:
    """Validate, split, fit, evaluate, register and gate each model; print the results."""
    from toxiguard.training import DEFAULT_FAMILIES, run_training

    settings = _settings(seed=seed)
    transformer_params = {
        key: value
        for key, value in {
            "backbone": backbone,
            "epochs": epochs,
            "max_length": max_length,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
        }.items()
        if value is not None
    }
    params: dict[str, dict[str, Any]] = {}
    if transformer_params:
        params["transformer"] = transformer_params
        params["blend"] = {"member_params": {"transformer": transformer_params}}
    result = run_training(data_path, model or DEFAULT_FAMILIES, settings, params)
    table = Table(title=f"Training on {result.source}", show_edge=False)
    for column in (
        "model",
        "version",
        "test ROC-AUC",
        "test PR-AUC",
        "F1 macro (tuned)",
        "fit s",
        "decision",
    ):
        table.add_column(column, justify="left" if column in ("model", "decision") else "right")
    for item in result.models:
        test = item.evaluation.test
        table.add_row(
            item.family,
            str(item.version),
            f"{test['mean_roc_auc']:.4f}",
            f"{test['mean_pr_auc']:.4f}",
            f"{test['f1_macro_tuned']:.4f}",
            f"{item.fit_seconds:.1f}",
            item.decision.reason,
        )
    console.print(table)
    console.print(
        f"data fingerprint {result.dataset_fingerprint[:12]}, "
        f"split {result.splits_fingerprint[:12]} saved in {result.splits_dir}"
    )
    champion = result.champion_version
    console.print(f"champion: version {champion}" if champion else "no champion")


@app.command()
def run(
    data_dir: Annotated[Path, typer.Option(help="Where to look for the Kaggle train file.")] = Path(
        "data/raw"
    ),
    retrain: Annotated[
        bool, typer.Option(help="Train even when a champion is already registered.")
    ] = False,
    with_stack: Annotated[
        bool,
        typer.Option("--stack/--no-stack", help="Start MLflow, Prefect and the API afterwards."),
    ] = True,
) -> None:
    """The main job: train the baselines if there is no champion yet, then start the stack.

    Trains on data/raw/train.csv (or .zip/.gz/.parquet), or on the demo corpus if it is absent.
    """
    from toxiguard import stack
    from toxiguard.demo import write_demo_corpus

    settings = get_settings()
    if retrain or not stack.has_champion(settings):
        found = [data_dir / name for name in RAW_DATA_CANDIDATES if (data_dir / name).is_file()]
        if found:
            data_path = found[0]
            console.print(f"Training on {data_path}.")
        else:
            data_path = settings.resolved_home / "demo" / "train.csv.gz"
            write_demo_corpus(data_path)
            console.print(
                f"[bold yellow]No Kaggle file in {data_dir}/[/] (looked for "
                f"{', '.join(RAW_DATA_CANDIDATES)}). Put the competition's train.csv there to "
                "train on real data.\n[bold yellow]DEMO:[/] training on a small synthetic corpus "
                f"generated by toxiguard ({data_path}); its scores say nothing about real comments."
            )
        train(data_path=data_path, model=None, seed=None)
    else:
        console.print("A champion is registered already: not retraining (use --retrain).")
    if with_stack:
        stack_up(timeout=None)


# ---------------------------------------------------------------- evaluation and prediction
@app.command()
def evaluate(
    data_path: Annotated[Path, typer.Option("--data", "-d", help="Labelled file to score.")],
    model: ModelOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Score a labelled file with a registered model; print per-label metrics."""
    from toxiguard import data, evaluation, tracking

    settings = get_settings()
    dataset = data.load_dataset(data_path)
    uri = tracking.resolve_model_uri(model, settings)
    loaded, info = tracking.load_toxicity_model(uri, settings)
    texts = dataset.frame[TEXT_COLUMN].astype(str).tolist()
    report = evaluation.evaluate(
        data.label_matrix(dataset.frame), loaded.predict_proba(texts), loaded.thresholds
    )
    report["model"] = {"uri": uri, **{k: v for k, v in info.items() if k != "metrics"}}
    report["data"] = {
        "source": dataset.source,
        "fingerprint": dataset.fingerprint,
        "rows": len(dataset.frame),
        "dropped": dataset.dropped,
    }
    _print_report(report, f"{uri} on {dataset.source}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=str))
        console.print(f"report written to {json_out}")


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="One or more comments.")],
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the six probabilities and the flagged labels for each comment."""
    from toxiguard import tracking

    settings = get_settings()
    uri = tracking.resolve_model_uri(model, settings)
    loaded, info = tracking.load_toxicity_model(uri, settings)
    probabilities = loaded.predict_proba(texts)
    flags = probabilities >= loaded.thresholds
    if as_json:
        predictions = [
            {
                "text": text,
                "scores": dict(zip(LABELS, map(float, scores), strict=True)),
                "flagged": [label for label, hit in zip(LABELS, hits, strict=True) if hit],
            }
            for text, scores, hits in zip(texts, probabilities, flags, strict=True)
        ]
        console.print_json(json.dumps({"model": info, "predictions": predictions}, default=str))
        return
    for text, scores, hits in zip(texts, probabilities, flags, strict=True):
        table = Table(title=_shorten(text), show_edge=False, title_justify="left")
        table.add_column("label")
        table.add_column("probability", justify="right")
        table.add_column("threshold", justify="right")
        table.add_column("flagged")
        for label, probability, threshold, hit in zip(
            LABELS, scores, loaded.thresholds, hits, strict=True
        ):
            table.add_row(
                label, f"{probability:.3f}", f"{threshold:.3f}", "[bold red]yes[/]" if hit else ""
            )
        console.print(table)
    console.print(f"model {info.get('name')} version {info.get('version')} ({uri})")


@app.command()
def score(
    input_path: Annotated[Path, typer.Argument(help="CSV (.zip/.gz) or parquet of comments.")],
    output_path: Annotated[
        Path, typer.Argument(help="Where to write it scored (.csv or .parquet).")
    ],
    model: ModelOption = None,
    text_column: Annotated[str, typer.Option(help="Column holding the comments.")] = TEXT_COLUMN,
) -> None:
    """Score a file in chunks, keeping every input column and adding one column per label."""
    from toxiguard import scoring, tracking
    from toxiguard.monitoring.prediction_log import chunk_logger

    settings = get_settings()
    uri = tracking.resolve_model_uri(model, settings)
    loaded, info = tracking.load_toxicity_model(uri, settings)
    with (
        Progress(
            *Progress.get_default_columns(), MofNCompleteColumn(), console=error_console
        ) as progress,
        chunk_logger(settings, info, source="score") as log_chunk,
    ):
        task = progress.add_task("scoring", total=None)
        rows = scoring.score_file(
            loaded,
            input_path,
            output_path,
            text_column=text_column,
            chunk_size=settings.score_chunk_size,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            on_scored=log_chunk,
        )
    console.print(f"scored {rows:,} comments with version {info.get('version')} -> {output_path}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [8000].")] = None,
) -> None:
    """Serve the champion: REST API (/v1/predict, /docs), UI (/ui), /health, /ready, /metrics."""
    from toxiguard.serving.api import serve as serve_api

    settings = _settings(host=host, port=port)
    base = f"http://{settings.host}:{settings.port}"
    console.print(
        f"Loading the champion, then serving the API at {base}/v1/predict "
        f"(docs {base}/docs), the UI at {base}/ui, metrics at {base}/metrics."
    )
    serve_api(settings)


# ---------------------------------------------------------------- registry
@models_app.command("list")
def models_list() -> None:
    """List every registered version with its aliases and test score."""
    from toxiguard import tracking

    versions = tracking.list_versions(get_settings())
    table = Table(show_edge=False)
    for column in ("version", "aliases", "family", "test ROC-AUC", "created", "run"):
        table.add_column(column)
    for item in versions:
        score_value = item.get("test_roc_auc_mean")
        table.add_row(
            str(item["version"]),
            ", ".join(item.get("aliases", [])),
            str(item.get("family", "")),
            f"{score_value:.4f}" if isinstance(score_value, float) else "",
            str(item.get("created", "")),
            str(item.get("run_id", ""))[:12],
        )
    console.print(table if versions else "no registered versions yet")


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="Version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why, recorded in the history.")] = "manual",
) -> None:
    """Make a version the champion, by hand; the event is recorded."""
    from toxiguard import tracking

    tracking.promote(get_settings(), version, reason=reason)
    console.print(f"version {version} is now champion")


@models_app.command("rollback")
def models_rollback() -> None:
    """Give the champion alias back to the previous champion; the event is recorded."""
    from toxiguard import tracking

    version = tracking.rollback(get_settings())
    console.print(f"rolled back: version {version} is champion again")


@models_app.command("history")
def models_history() -> None:
    """Show every promotion and rollback of the champion, oldest first."""
    from toxiguard import tracking

    events = tracking.champion_history(get_settings())
    table = Table(show_edge=False)
    for column in ("at", "event", "version", "previous", "reason"):
        table.add_column(column)
    for event in events:
        table.add_row(
            *(str(event.get(key, "")) for key in ("at", "event", "version", "previous", "reason"))
        )
    console.print(table if events else "no champion yet")


# ---------------------------------------------------------------- orchestration and the local stack
flows_app = typer.Typer(help="Prefect flows: serve the training and monitoring deployments.")
stack_app = typer.Typer(
    help="The local stack without Docker: MLflow, Prefect, the flows runner and the API.",
    no_args_is_help=True,
)
app.add_typer(flows_app, name="flows", no_args_is_help=True)
app.add_typer(stack_app, name="stack")


def _prefect_environment(settings: Settings) -> None:
    """Give Prefect its home under ours (and our API URL) before it is first imported."""
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    for key, value in settings.prefect_environment.items():
        os.environ.setdefault(key, value)


@flows_app.command("serve")
def flows_serve(
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the Prefect server to answer first.")
    ] = 180.0,
) -> None:
    """Serve the training and monitoring deployments, scheduled from the settings, until stopped."""
    settings = get_settings()
    _prefect_environment(settings)
    from toxiguard import flows, stack

    if settings.prefect_api_url:
        stack.wait_until_healthy(f"{settings.prefect_api_url.rstrip('/')}/health", wait)
        console.print(f"Serving the deployments on {settings.prefect_api_url}.")
    else:
        console.print(
            "[bold yellow]No PREFECT_API_URL:[/] serving on Prefect's temporary local server; "
            "schedules and runs last only while this process runs (`toxiguard stack up` starts "
            "a real server)."
        )
    flows.serve_flows(settings)


@flows_app.command("train")
def flows_train(
    data_path: Annotated[
        Path | None, typer.Option("--data", "-d", help="Labelled file (default: settings).")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model family; repeat for several (default: settings)."),
    ] = None,
) -> None:
    """Run the training flow once, here (on PREFECT_API_URL, or Prefect's temporary server)."""
    settings = get_settings()
    _prefect_environment(settings)
    from toxiguard import flows

    summary = flows.training_flow(data=str(data_path) if data_path else None, models=model)
    console.print_json(json.dumps(summary, default=str))


@flows_app.command("monitor")
def flows_monitor(
    window_hours: Annotated[
        float | None, typer.Option(help="How far back to look (default: settings).")
    ] = None,
) -> None:
    """Run the monitoring flow once, here (on PREFECT_API_URL, or Prefect's temporary server)."""
    settings = get_settings()
    _prefect_environment(settings)
    from toxiguard import flows

    console.print_json(json.dumps(flows.monitoring_flow(window_hours=window_hours), default=str))


def _print_stack(status: Any) -> None:
    """Print each service of the stack with its URL and health."""
    table = Table(show_edge=False)
    for column in ("service", "URL", "state"):
        table.add_column(column)
    for service in status.services:
        state = (
            "[green]healthy[/]"
            if service.healthy
            else "[yellow]not started[/]"
            if not service.started
            else "[red]not answering[/]"
        )
        table.add_row(service.name, service.url, state)
    console.print(table)
    console.print(
        f"honcho pid {status.pid}; log {status.log}" if status.running else "the stack is down"
    )


@stack_app.command("up")
def stack_up(
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for every health check (default: settings)."),
    ] = None,
) -> None:
    """Start MLflow, Prefect, the flows runner and the API in the background; wait until healthy."""
    from toxiguard import stack

    settings = get_settings()
    status = stack.stack_up(settings, timeout)
    _print_stack(status)
    if not any(s.name == "api" and s.started for s in status.services):
        console.print(
            "[bold yellow]The API was not started: no champion yet.[/] Train one (`toxiguard run`"
            " or the training deployment), then `toxiguard stack down` and `toxiguard stack up`."
        )


@stack_app.command("down")
def stack_down() -> None:
    """Stop every process the stack started (honcho, its services, any running flow)."""
    from toxiguard import stack

    stopped = stack.stack_down(get_settings())
    console.print(f"stopped (pids {', '.join(map(str, stopped))})" if stopped else "not running")


@stack_app.command("wait")
def stack_wait(
    url: Annotated[str, typer.Argument(help="URL that must answer 200, e.g. MLflow's /health.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait before failing.")] = 240.0,
) -> None:
    """Wait until a URL answers 200 (the Procfile orders start-up with it); exit 2 on time-out."""
    from toxiguard import stack

    stack.wait_until_healthy(url, timeout)


@stack_app.command("status")
def stack_status() -> None:
    """Show each service's URL and health; exit 1 unless the stack runs and all are healthy."""
    from toxiguard import stack

    status = stack.stack_status(get_settings())
    _print_stack(status)
    if not status.healthy:
        raise typer.Exit(1)


# ---------------------------------------------------------------- monitoring
monitor_app = typer.Typer(help="Drift, live quality and alerts on the served model's traffic.")
feedback_app = typer.Typer(help="True labels of logged predictions.")
app.add_typer(monitor_app, name="monitor", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback", no_args_is_help=True)


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
    from toxiguard import stack
    from toxiguard.monitoring.job import run_monitoring

    settings = stack.attach_to_running_stack(
        _settings(monitoring_window_hours=window_hours, retrain_on_drift=retrain)
    )
    _prefect_environment(settings)

    outcome = run_monitoring(settings, version=version)
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


@app.command()
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
    from toxiguard import stack
    from toxiguard.monitoring.simulate import simulate as run_simulation

    settings = get_settings()
    url = url or stack.api_url(settings)
    keys = settings.api_key_list
    with Progress(
        *Progress.get_default_columns(), MofNCompleteColumn(), console=error_console
    ) as progress:
        task = progress.add_task(f"simulating ({shift})", total=n)
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
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
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


# ---------------------------------------------------------------- helpers
def _settings(**overrides: Any) -> Settings:
    """Return the settings with the command-line overrides that were given."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return get_settings().model_copy(update=given) if given else get_settings()


def _shorten(text: str, width: int = 70) -> str:
    """Return the text on one line, cut to `width` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _print_report(report: dict[str, Any], title: str) -> None:
    """Print an evaluation report as a per-label table."""
    table = Table(title=title, show_edge=False)
    for column in ("label", "ROC-AUC", "PR-AUC", "F1 @0.5", "F1 tuned", "threshold", "positives"):
        table.add_column(column, justify="left" if column == "label" else "right")

    def fmt(value: Any) -> str:
        return (
            f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)
        )

    for label, row in report["per_label"].items():
        table.add_row(
            label,
            *(
                fmt(row.get(key))
                for key in ("roc_auc", "pr_auc", "f1", "f1_tuned", "threshold", "positives")
            ),
        )
    table.add_row(
        "[bold]mean / macro",
        fmt(report["mean_roc_auc"]),
        fmt(report["mean_pr_auc"]),
        fmt(report["f1_macro"]),
        fmt(report["f1_macro_tuned"]),
        "",
        "",
    )
    console.print(table)
    console.print(
        f"F1 micro @0.5 {fmt(report['f1_micro'])}, tuned {fmt(report['f1_micro_tuned'])}; "
        f"rows {report['n_rows']:,}"
    )
    for note in report.get("notes", []):
        console.print(f"note: {note}")


def main() -> None:
    """Run the CLI; a user's mistake becomes one clear message and exit status 2."""
    try:
        app()
    except ToxiguardError as error:
        problems = getattr(error, "problems", ())
        if len(problems) > 1:
            error_console.print(
                f"[bold red]error:[/] {len(problems)} problems found", highlight=False
            )
            for problem in problems:
                error_console.print(f"  - {problem}", highlight=False)
        else:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
