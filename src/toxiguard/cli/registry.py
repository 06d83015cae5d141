"""Commands that show and change the model registry: `toxiguard models ...`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from toxiguard.cli.common import console
from toxiguard.settings import get_settings

models_app = typer.Typer(help="Show and change the model registry.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """List every registered version with its aliases, test score and the data it came from."""
    from toxiguard.registry.versions import list_versions

    versions = list_versions(get_settings())
    table = Table(show_edge=False)
    for column in ("v", "aliases", "family", "ROC-AUC", "created", "data"):
        table.add_column(column, overflow="fold")
    for item in versions:
        score_value = item.get("test_roc_auc_mean")
        table.add_row(
            str(item["version"]),
            ", ".join(item.get("aliases", [])),
            str(item.get("family", "")),
            f"{score_value:.4f}" if isinstance(score_value, float) else "",
            str(item.get("created", ""))[:10],
            data_source(item),
        )
    table.caption = "v: version; ROC-AUC: test split, mean over labels; data: file, rows, sha256"
    if any(item.get("demo_data") for item in versions):
        table.caption += "; DEMO: trained on the synthetic demo corpus, not on real comments"
    console.print(table if versions else "no registered versions yet")


def data_source(item: dict[str, Any]) -> str:
    """Return the data a version came from for people: file, rows, fingerprint, DEMO mark."""
    fingerprint = str(item.get("dataset_fingerprint") or "").removeprefix("sha256:")[:8]
    rows = item.get("dataset_rows")
    lines = [
        " ".join(
            part
            for part in (str(item.get("dataset_file") or "?"), "DEMO" if item["demo_data"] else "")
            if part
        ),
        " ".join(part for part in (f"{rows:,} rows" if rows else "", fingerprint) if part),
    ]
    if item.get("base_version"):
        lines.append(f"v{item['base_version']}'s model, new thresholds")
    return "\n".join(line for line in lines if line)


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
