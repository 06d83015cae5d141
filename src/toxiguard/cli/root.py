"""The root `toxiguard` app: logging set-up, every command in help order, and `main`."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.markup import escape

from toxiguard.cli import (
    audit,
    export,
    inference,
    monitoring,
    orchestration,
    registry,
    training,
    tuning,
)
from toxiguard.cli.common import error_console
from toxiguard.errors import RedactSecrets, ToxiguardError
from toxiguard.settings import OFFLINE_ENVIRONMENT

#: What keeps MLflow's own handler (INFO lines, "Downloading artifacts" bars) off the console;
#: `--verbose` lets them through.
QUIET_ENVIRONMENT = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Its "View run ... at: URL" lines, written to stdout when a run on a tracking server ends.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # Prefect's own console handler, where its logging set-up installs one; its API handler
    # (the flow run's logs in the Prefect UI) keeps every level.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
}
#: Loggers whose INFO lines ("Starting temporary server", "Beginning flow run", "Finished in
#: state Completed()") stay off the console unless `--verbose`.
CHATTY_LOGGERS = ("prefect",)


class HideChatter(logging.Filter):
    """Drop other libraries' records below WARNING from a console handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a record below WARNING from one of `CHATTY_LOGGERS`."""
        return record.levelno >= logging.WARNING or not record.name.startswith(CHATTY_LOGGERS)


app = typer.Typer(
    help="toxiguard: multi-label toxic comment classification, from Kaggle files to a model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# `toxiguard --help` lists the commands in the order they are added here.
app.add_typer(training.commands)
app.add_typer(tuning.commands)
app.add_typer(inference.commands)
app.add_typer(audit.commands)
app.add_typer(monitoring.commands)
app.add_typer(training.data_app, name="data")
app.add_typer(registry.models_app, name="models")
app.add_typer(export.export_app, name="export", no_args_is_help=True)
app.add_typer(orchestration.flows_app, name="flows", no_args_is_help=True)
app.add_typer(orchestration.stack_app, name="stack")
app.add_typer(monitoring.monitor_app, name="monitor", no_args_is_help=True)
app.add_typer(monitoring.feedback_app, name="feedback", no_args_is_help=True)
app.add_typer(monitoring.thresholds_app, name="thresholds", no_args_is_help=True)


@app.callback()
def configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    """Set up logging and the offline environment for every command."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if not verbose:
        for key, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
    handler = RichHandler(console=error_console, show_path=False, rich_tracebacks=True)
    handler.addFilter(RedactSecrets())  # no password of a tracking or database URI in any log line
    if not verbose:
        handler.addFilter(HideChatter())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[handler],
        force=True,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "httpx", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    """Run the CLI; a user's mistake (a missing extra too) becomes one `error:` line, exit 2."""
    try:
        app()
    except ToxiguardError as error:
        # Messages are escaped: `pip install 'toxiguard[ui]'` is not rich markup. Soft wrap keeps
        # the error on one line whatever the terminal's width.
        problems = getattr(error, "problems", ())
        if len(problems) > 1:
            error_console.print(
                f"[bold red]error:[/] {len(problems)} problems found", highlight=False
            )
            for problem in problems:
                error_console.print(f"  - {escape(str(problem))}", highlight=False, soft_wrap=True)
        else:
            error_console.print(
                f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
            )
        sys.exit(2)
