"""Commands that build models: check a data file, train, and the main `run` job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from toxiguard.cli.common import console, counting_progress, settings_with
from toxiguard.cli.orchestration import stack_up
from toxiguard.labels import LABELS
from toxiguard.settings import Settings, get_settings

if TYPE_CHECKING:
    from toxiguard.training.pipeline import TrainingResult

commands = typer.Typer()
data_app = typer.Typer(help="Check data files.", no_args_is_help=True)


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
    """Validate a labelled file and summarise it; exit 2 with every problem found.

    Besides the file's own rules, it must be able to train a model: enough rows to split, and
    every label with both classes.
    """
    from toxiguard.data.trainability import dataset_problems
    from toxiguard.data.validation import label_matrix, load_dataset
    from toxiguard.errors import DataValidationError

    dataset = load_dataset(path)
    settings = get_settings()
    problems = dataset_problems(
        dataset.frame,
        dataset.source,
        validation_size=settings.validation_size,
        test_size=settings.test_size,
    )
    if problems:
        raise DataValidationError(problems)
    table = Table(title=f"{dataset.source}: valid", show_edge=False)
    table.add_column("label")
    table.add_column("positives", justify="right")
    table.add_column("share", justify="right")
    labels = label_matrix(dataset.frame)
    for index, label in enumerate(LABELS):
        positives = int(labels[:, index].sum())
        table.add_row(label, f"{positives:,}", f"{positives / max(len(labels), 1):.2%}")
    console.print(table)
    console.print(f"rows read: {dataset.rows_read:,}; rows kept: {len(dataset.frame):,}")
    for rule, count in dataset.dropped.items():
        console.print(f"dropped {count:,} rows: {rule}")
    console.print(f"fingerprint (sha256): {dataset.fingerprint}")


@data_app.command("demo")
def data_demo(
    path: Annotated[Path, typer.Argument(help="Where to write it: a .csv or .csv.gz file.")] = Path(
        "data/demo/train.csv.gz"
    ),
    rows: Annotated[int, typer.Option(help="Number of comments.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 0,
) -> None:
    """Write the small synthetic demo corpus (Kaggle's columns): training without Kaggle's file."""
    from toxiguard.data.demo import write_demo_corpus

    written = write_demo_corpus(path, n_rows=rows, seed=seed)
    console.print(
        f"wrote {rows:,} synthetic comments to {written} (DEMO data: its scores say nothing "
        "about real comments)"
    )


# ---------------------------------------------------------------- training
@commands.command()
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
    pos_weight: Annotated[
        str | None,
        typer.Option(help="transformer: BCE positive weights: none, balanced or sqrt-balanced."),
    ] = None,
    params_spec: Annotated[
        str | None,
        typer.Option(
            "--params",
            help="Hyperparameters: 'default', 'best' (each family's latest `toxiguard tune` "
            "run) or a JSON file {family: {param: value}}. Options above override them.",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="One parameter of a family, FAMILY.NAME=VALUE (VALUE as JSON, else text), e.g. "
            "transformer.warmup_ratio=0.1; repeat for several. Overrides the above.",
        ),
    ] = None,
    full: Annotated[
        bool | None,
        typer.Option(
            "--full/--no-full",
            help="With no --model: also train the transformer, the blend and the cascade "
            "(default: when a GPU is available).",
        ),
    ] = None,
) -> None:
    """Validate, split, fit, evaluate, register and gate each model; print the results."""
    from toxiguard.training.plan import default_families

    settings = settings_with(seed=seed)
    families = model or default_families(settings, full)
    transformer_params = {
        key: value
        for key, value in {
            "backbone": backbone,
            "epochs": epochs,
            "max_length": max_length,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "pos_weight": pos_weight,
        }.items()
        if value is not None
    }
    params = job_params(settings, families, params_spec, transformer_params, param or [])
    train_and_report(data_path, families, settings, params)


def job_params(
    settings: Settings,
    families: list[str],
    spec: str | None,
    transformer_params: dict[str, Any],
    items: list[str],
) -> dict[str, dict[str, Any]]:
    """Return a job's params per family: `spec` resolved (default, best or a file, whence each
    printed), then the transformer options (for composites' transformer too), then --param."""
    from toxiguard.training.tuned_params import resolve_params, with_transformer_params

    params, notes = resolve_params(spec, families, settings)
    for note in notes:
        console.print(note)
    params = with_transformer_params(params, transformer_params, families)
    for family, name, value in (parse_param(item) for item in items):
        params.setdefault(family, {})[name] = value
    return params


def train_and_report(
    data_path: Path, families: list[str], settings: Settings, params: dict[str, dict[str, Any]]
) -> TrainingResult:
    """Run the training job and print its results; return them."""
    from toxiguard.registry.client import connect
    from toxiguard.registry.versions import alias_version
    from toxiguard.training.pipeline import run_training

    result = run_training(data_path, families, settings, params)
    console.print(_results_table(result))
    for item in result.models:  # reasons are sentences: on their own lines, not in a cell
        console.print(f"v{item.version} {item.family}: {item.decision.reason}")
    console.print(
        f"data fingerprint {result.dataset_fingerprint[:12]}, "
        f"split {result.splits_fingerprint[:12]} saved in {result.splits_dir}"
    )
    champion = result.champion_version
    console.print(f"champion: version {champion}" if champion else "no champion")
    challenger = alias_version(connect(settings), settings, settings.challenger_alias)
    if challenger is not None:
        console.print(f"challenger: version {challenger} (the best version that is not champion)")
    return result


def parse_param(item: str) -> tuple[str, str, Any]:
    """Return (family, name, value) of a FAMILY.NAME=VALUE option; VALUE is JSON, else text."""
    from toxiguard.errors import ToxiguardError
    from toxiguard.models import model_families

    key, sep, text = item.partition("=")
    family, dot, name = key.partition(".")
    if not (sep and dot and family and name):
        raise ToxiguardError(f"--param {item!r}: expected FAMILY.NAME=VALUE, e.g. nbsvm.C=0.5")
    if family not in model_families():
        known = ", ".join(model_families())
        raise ToxiguardError(f"--param {item!r}: unknown model family '{family}' (known: {known})")
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return family, name, value


def _results_table(result: TrainingResult) -> Table:
    """Return the per-model results as a table that fits 80 columns."""
    table = Table(title=f"Training on {Path(result.source).name}", show_edge=False)
    for column in ("model", "version", "ROC-AUC", "PR-AUC", "F1 tuned", "fit s", "decision"):
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
            "promoted" if item.decision.promoted else "not promoted",
        )
    table.caption = "test split scores (mean over labels)"
    return table


@commands.command()
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
    demo_traffic: Annotated[
        bool,
        typer.Option(
            help="After training on the demo corpus, send demo comments through the API and run "
            "monitoring once, so that the Monitoring tab has data at first sight."
        ),
    ] = True,
    full: Annotated[
        bool | None,
        typer.Option(
            "--full/--no-full",
            help="Also train the transformer, the blend and the cascade (default: when a GPU "
            "is available; on CPUs alone the TF-IDF families, and how long the rest would take).",
        ),
    ] = None,
) -> None:
    """The main job: train the baselines if there is no champion yet, then start the stack.

    Trains on data/raw/train.csv (or .zip/.gz/.parquet), or on the demo corpus if it is absent.
    """
    from toxiguard.data.demo import write_demo_corpus
    from toxiguard.data.validation import TRAIN_NAMES, find_train_file
    from toxiguard.orchestration.stack import has_champion, require_stack_extras

    settings = get_settings()
    demo_path: Path | None = None
    if with_stack:
        # Before training: without honcho and Prefect the stack cannot start afterwards.
        require_stack_extras("`toxiguard run` (with --stack; --no-stack only trains)")
    if retrain or not has_champion(settings):
        found = find_train_file(data_dir)
        if found is not None:
            data_path = found
            console.print(f"Training on {data_path}.")
        else:
            data_path = demo_path = settings.resolved_home / "demo" / "train.csv.gz"
            write_demo_corpus(data_path)
            console.print(
                f"[bold yellow]No Kaggle file in {data_dir}/[/] (looked for "
                f"{', '.join(TRAIN_NAMES)}). Put the competition's train.csv there to "
                "train on real data.\n[bold yellow]DEMO:[/] training on a small synthetic corpus "
                f"generated by toxiguard ({data_path}); its scores say nothing about real comments."
            )
        from toxiguard.training.plan import default_families

        families = default_families(settings, full)
        params = job_params(settings, families, settings.training_params, {}, [])
        result = train_and_report(data_path, families, settings, params)
        if "transformer" not in {item.family for item in result.models}:
            _say_how_to_train_the_transformer(data_path, result.train_rows)
    else:
        console.print("A champion is registered already: not retraining (use --retrain).")
    if with_stack:
        stack_up(timeout=None)
        if demo_path is not None and demo_traffic:
            _send_demo_traffic(settings, demo_path)


def _say_how_to_train_the_transformer(data_path: Path, train_rows: int) -> None:
    """Print how long the transformer, blend and cascade would take here, and how to start them."""
    from toxiguard.training.plan import transformer_estimate

    estimate = transformer_estimate(train_rows).describe()
    console.print(
        f"Trained the TF-IDF families only (no GPU here): {estimate}. To train the transformer, "
        f"the blend and the cascade:\n  toxiguard train --data {data_path} --model cascade\n"
        "  (or: toxiguard run --full --retrain)"
    )


def _send_demo_traffic(settings: Settings, data: Path) -> None:
    """Send demo comments through the stack's API and run monitoring once; say what it made."""
    from toxiguard.orchestration.demo_traffic import DEMO_COMMENTS, send_demo_traffic
    from toxiguard.orchestration.stack import api_url, attach_to_running_stack

    with counting_progress("demo comments to the API", DEMO_COMMENTS) as on_progress:
        traffic = send_demo_traffic(
            attach_to_running_stack(settings), api_url(settings), data, on_progress=on_progress
        )
    monitoring = traffic.monitoring
    console.print(
        f"Sent {traffic.sent.comments:,} demo comments through the API and ran monitoring once "
        f"(run {monitoring.run_id}: {monitoring.result.message}): the UI's Monitoring tab shows "
        "them."
    )
