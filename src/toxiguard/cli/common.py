"""What the command modules share: the consoles, the settings helpers, the extras check."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from toxiguard.errors import MissingExtraError
from toxiguard.settings import Settings, get_settings

console = Console()
error_console = Console(stderr=True)


@contextmanager
def counting_progress(
    description: str, total: int | None
) -> Iterator[Callable[[int, int | None], None]]:
    """Yield a callback (done, total) drawing a progress bar with counts and ETA on stderr
    (`total` None while unknown)."""
    with Progress(
        *Progress.get_default_columns(), MofNCompleteColumn(), console=error_console
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def settings_with(**overrides: Any) -> Settings:
    """Return the settings with the command-line overrides that were given."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return get_settings().model_copy(update=given) if given else get_settings()


def installed(module: str) -> bool:
    """Return True when `module` can be imported (looked up, not imported: no start-up cost)."""
    return importlib.util.find_spec(module) is not None


def require_installed(feature: str, extra: str, *modules: str) -> None:
    """Return when every module is installed; raise MissingExtraError naming the extra if not.

    Checked before a command starts its work, so that it fails in a second with the install
    command rather than minutes later (or with an ImportError) at the first import.
    """
    for module in modules:
        if not installed(module):
            raise MissingExtraError(feature, extra, module)


def prefect_environment(settings: Settings) -> None:
    """Give Prefect its home under ours (and our API URL) before it is first imported."""
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    for key, value in settings.prefect_environment.items():
        os.environ.setdefault(key, value)
