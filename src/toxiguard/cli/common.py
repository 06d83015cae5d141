"""What the command modules share: the consoles, the settings helpers, the extras check."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from rich.console import Console

from toxiguard.errors import MissingExtraError
from toxiguard.settings import Settings, get_settings

console = Console()
error_console = Console(stderr=True)


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
