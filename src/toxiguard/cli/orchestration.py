"""Commands for the Prefect flows and the local stack: `toxiguard flows ...`, `stack ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from toxiguard.cli.common import console, prefect_environment, require_installed
from toxiguard.settings import get_settings

flows_app = typer.Typer(help="Prefect flows: serve the training and monitoring deployments.")
stack_app = typer.Typer(
    help="The local stack without Docker: MLflow, Prefect, the flows runner and the API.",
    no_args_is_help=True,
)


@flows_app.command("serve")
def flows_serve(
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the Prefect server to answer first.")
    ] = 180.0,
) -> None:
    """Serve the training and monitoring deployments, scheduled from the settings, until stopped."""
    require_installed("`toxiguard flows serve`", "orchestration", "prefect")
    settings = get_settings()
    prefect_environment(settings)
    from toxiguard.orchestration.flows import serve_flows
    from toxiguard.orchestration.stack import wait_until_healthy

    if settings.prefect_api_url:
        wait_until_healthy(f"{settings.prefect_api_url.rstrip('/')}/health", wait)
        console.print(f"Serving the deployments on {settings.prefect_api_url}.")
    else:
        console.print(
            "[bold yellow]No PREFECT_API_URL:[/] serving on Prefect's temporary local server; "
            "schedules and runs last only while this process runs (`toxiguard stack up` starts "
            "a real server)."
        )
    serve_flows(settings)


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
    require_installed("`toxiguard flows train`", "orchestration", "prefect")
    settings = get_settings()
    prefect_environment(settings)
    from toxiguard.orchestration.flows import training_flow

    summary = training_flow(data=str(data_path) if data_path else None, models=model)
    console.print_json(json.dumps(summary, default=str))


@flows_app.command("monitor")
def flows_monitor(
    window_hours: Annotated[
        float | None, typer.Option(help="How far back to look (default: settings).")
    ] = None,
) -> None:
    """Run the monitoring flow once, here (on PREFECT_API_URL, or Prefect's temporary server)."""
    require_installed("`toxiguard flows monitor`", "orchestration", "prefect")
    require_installed("`toxiguard flows monitor`", "monitoring", "evidently")
    settings = get_settings()
    prefect_environment(settings)
    from toxiguard.orchestration.flows import monitoring_flow

    console.print_json(json.dumps(monitoring_flow(window_hours=window_hours), default=str))


def _print_stack(status: Any) -> None:
    """Print each service of the stack with its URL and health."""
    table = Table(show_edge=False)
    for column in ("service", "URL", "state"):
        table.add_column(column)
    for service in status.services:
        state = (
            f"[yellow]healthy, {service.note}[/]"
            if service.healthy and service.note
            else "[green]healthy[/]"
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
    from toxiguard.orchestration.stack import WAITING_FOR_CHAMPION, stack_up

    settings = get_settings()
    status = stack_up(settings, timeout)
    _print_stack(status)
    if any(s.name == "api" and s.note == WAITING_FOR_CHAMPION for s in status.services):
        console.print(
            "[bold yellow]The API is waiting for its first champion.[/] Train one (`toxiguard "
            "run`, or the training deployment in the Prefect UI): it is served as soon as it is "
            "promoted, without a restart."
        )


@stack_app.command("down")
def stack_down() -> None:
    """Stop every process the stack started (honcho, its services, any running flow)."""
    from toxiguard.orchestration.stack import stack_down

    stopped = stack_down(get_settings())
    console.print(f"stopped (pids {', '.join(map(str, stopped))})" if stopped else "not running")


@stack_app.command("wait")
def stack_wait(
    url: Annotated[str, typer.Argument(help="URL that must answer 200, e.g. MLflow's /health.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait before failing.")] = 240.0,
) -> None:
    """Wait until a URL answers 200 (the Procfile orders start-up with it); exit 2 on time-out."""
    from toxiguard.orchestration.stack import wait_until_healthy

    wait_until_healthy(url, timeout)


@stack_app.command("status")
def stack_status() -> None:
    """Show each service's URL and health; exit 1 unless the stack runs and all are healthy."""
    from toxiguard.orchestration.stack import stack_status

    status = stack_status(get_settings())
    _print_stack(status)
    if not status.healthy:
        raise typer.Exit(1)
