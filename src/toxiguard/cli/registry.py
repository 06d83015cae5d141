"""Commands that show and change the model registry: `toxiguard models ...`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from toxiguard.cli.common import console
from toxiguard.settings import get_settings

models_app = typer.Typer(help="Show and change the model registry.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """List every registered version with its aliases and test score."""
    from toxiguard.registry.versions import list_versions

    versions = list_versions(get_settings())
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
    from toxiguard.registry.promotion import promote

    promote(get_settings(), version, reason=reason)
    console.print(f"version {version} is now champion")


@models_app.command("rollback")
def models_rollback() -> None:
    """Give the champion alias back to the previous champion; the event is recorded."""
    from toxiguard.registry.promotion import rollback

    version = rollback(get_settings())
    console.print(f"rolled back: version {version} is champion again")


@models_app.command("history")
def models_history() -> None:
    """Show every promotion and rollback of the champion, oldest first."""
    from toxiguard.registry.promotion import champion_history

    events = champion_history(get_settings())
    table = Table(show_edge=False)
    for column in ("at", "event", "version", "previous", "reason"):
        table.add_column(column)
    for event in events:
        table.add_row(
            *(str(event.get(key, "")) for key in ("at", "event", "version", "previous", "reason"))
        )
    console.print(table if events else "no champion yet")
