"""What the command modules share: the consoles and the settings helpers."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

from toxiguard.settings import Settings, get_settings

console = Console()
error_console = Console(stderr=True)


def settings_with(**overrides: Any) -> Settings:
    """Return the settings with the command-line overrides that were given."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return get_settings().model_copy(update=given) if given else get_settings()


def prefect_environment(settings: Settings) -> None:
    """Give Prefect its home under ours (and our API URL) before it is first imported."""
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    for key, value in settings.prefect_environment.items():
        os.environ.setdefault(key, value)
