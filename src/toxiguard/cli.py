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
) -> None:
    """Validate, split, fit, evaluate, register and gate each model; print the results."""
    from toxiguard.training import DEFAULT_FAMILIES, run_training

    settings = _settings(seed=seed)
    result = run_training(data_path, model or DEFAULT_FAMILIES, settings)
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
) -> None:
    """The main job: train every baseline on data/raw/train.csv, or on the demo corpus if absent."""
    from toxiguard.demo import write_demo_corpus

    settings = get_settings()
    found = [data_dir / name for name in RAW_DATA_CANDIDATES if (data_dir / name).is_file()]
    if found:
        data_path = found[0]
        console.print(f"Training on {data_path}.")
    else:
        data_path = settings.resolved_home / "demo" / "train.csv.gz"
        write_demo_corpus(data_path)
        console.print(
            f"[bold yellow]No Kaggle file in {data_dir}/[/] (looked for "
            f"{', '.join(RAW_DATA_CANDIDATES)}). Put the competition's train.csv there to train on "
            "real data.\n[bold yellow]DEMO:[/] training on a small synthetic corpus generated by "
            f"toxiguard ({data_path}); its scores say nothing about real comments."
        )
    train(data_path=data_path, model=None, seed=None)


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
    rows = [
        {
            "text": text,
            "scores": dict(zip(LABELS, map(float, scores), strict=True)),
            "flagged": [
                label
                for label, p, t in zip(LABELS, scores, loaded.thresholds, strict=True)
                if p >= t
            ],
        }
        for text, scores in zip(texts, probabilities, strict=True)
    ]
    if as_json:
        console.print_json(json.dumps({"model": info, "predictions": rows}, default=str))
        return
    for row in rows:
        table = Table(title=_shorten(row["text"]), show_edge=False, title_justify="left")
        table.add_column("label")
        table.add_column("probability", justify="right")
        table.add_column("threshold", justify="right")
        table.add_column("flagged")
        for label, threshold in zip(LABELS, loaded.thresholds, strict=True):
            flagged = label in row["flagged"]
            table.add_row(
                label,
                f"{row['scores'][label]:.3f}",
                f"{threshold:.3f}",
                "[bold red]yes[/]" if flagged else "",
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

    settings = get_settings()
    uri = tracking.resolve_model_uri(model, settings)
    loaded, info = tracking.load_toxicity_model(uri, settings)
    with Progress(
        *Progress.get_default_columns(), MofNCompleteColumn(), console=error_console
    ) as progress:
        task = progress.add_task("scoring", total=None)
        rows = scoring.score_file(
            loaded,
            input_path,
            output_path,
            text_column=text_column,
            chunk_size=settings.score_chunk_size,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(f"scored {rows:,} comments with version {info.get('version')} -> {output_path}")


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
