"""`toxiguard tune`: search a family's hyperparameters; `train --params best` then uses them."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from toxiguard.cli.common import console, counting_progress, require_installed, settings_with

if TYPE_CHECKING:
    from toxiguard.training.tuning import TrialSummary, TuningResult

commands = typer.Typer()
#: Trials shown in the result table, best first.
SHOWN_TRIALS = 8
#: Loggers whose per-fit INFO lines would bury the trials' lines.
QUIET_DURING_TRIALS = ("toxiguard.models", "toxiguard.features")


@contextlib.contextmanager
def quiet_models() -> Iterator[None]:
    """Keep the models' and featurizer's INFO lines off the console while trials draw a bar."""
    loggers = [logging.getLogger(name) for name in QUIET_DURING_TRIALS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@commands.command()
def tune(
    data_path: Annotated[Path, typer.Option("--data", "-d", help="Labelled training file.")],
    family: Annotated[
        str, typer.Option("--family", "-f", help="Model family to tune (e.g. nbsvm).")
    ],
    trials: Annotated[int, typer.Option(help="Trials to run (the first: the defaults).")] = 20,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    train_rows: Annotated[
        int | None,
        typer.Option(help="Fit each trial on at most this many training rows (faster, rougher)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the split and the sampler.")] = None,
    backbone: Annotated[
        str | None, typer.Option(help="transformer: the backbone every trial fine-tunes.")
    ] = None,
) -> None:
    """Search a family's hyperparameters on the validation split (Optuna, pruned trials).

    Every trial is a nested MLflow run under one tuning run; the best params are recorded on
    it, and `toxiguard train --model FAMILY --params best` (or the training flow's
    params="best") trains with them.
    """
    require_installed("toxiguard tune", "tuning", "optuna")
    from toxiguard.training.steps import prepare_data
    from toxiguard.training.tuning import search_space, tune_family

    search_space(family)  # an unknown family fails before the data is read
    settings = settings_with(seed=seed)
    prepared = prepare_data(data_path, settings)
    fixed = {"backbone": backbone} if backbone else {}
    rows = min(train_rows or len(prepared.splits.train), len(prepared.splits.train))
    console.print(
        f"Tuning {family}: {trials} trials on {rows:,} training rows, scored on "
        f"{len(prepared.splits.validation):,} validation rows."
    )
    with quiet_models(), counting_progress(f"{family} trials", trials) as on_progress:

        def on_trial(trial: TrialSummary, finished: int) -> None:
            on_progress(finished, trials)
            state = "pruned at" if trial.state == "PRUNED" else "on"
            console.print(
                f"trial {trial.number}: {trial.value:.4f} ({state} {trial.train_rows:,} rows, "
                f"{trial.seconds:.0f} s)"
            )

        result = tune_family(
            family,
            prepared,
            settings,
            trials=trials,
            timeout_s=timeout,
            train_rows=train_rows,
            fixed=fixed,
            on_trial=on_trial,
        )
    console.print(_trials_table(result))
    default = f" (defaults: {result.default_value:.4f})" if result.default_value else ""
    console.print(
        f"best: trial {result.best_number}, validation ROC-AUC {result.best_value:.4f}{default}"
    )
    console.print(f"best params: {json.dumps(result.best_params)}")
    console.print(f"recorded on tuning run {result.run_id}; train with them:")
    console.print(f"  toxiguard train --data {data_path} --model {family} --params best")


def _trials_table(result: TuningResult) -> Table:
    """Return the best trials as a table: score, state, rows, seconds."""
    table = Table(title=f"{result.family}: best trials of {len(result.trials)}", show_edge=False)
    for column in ("trial", "val ROC-AUC", "state", "rows", "s"):
        table.add_column(column, justify="right")
    ranked = sorted(
        result.trials,
        key=lambda trial: (trial.state == "COMPLETE", trial.value or 0.0),
        reverse=True,
    )
    for trial in ranked[:SHOWN_TRIALS]:
        table.add_row(
            str(trial.number),
            f"{trial.value:.4f}" if trial.value is not None else "-",
            trial.state.lower(),
            f"{trial.train_rows:,}",
            f"{trial.seconds:.0f}",
        )
    table.caption = f"{result.pruned} pruned; trial 0 is the family's defaults"
    return table
