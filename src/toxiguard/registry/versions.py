"""Registered versions: the version an alias points at, one version, every version with its tags."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from toxiguard.errors import ModelNotFoundError
from toxiguard.registry.client import (
    connect,
    embedded_database,
    is_not_found,
    missing_database_error,
    registry_error,
)
from toxiguard.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)


def alias_version(client: MlflowClient, settings: Settings, alias: str) -> int | None:
    """Return the version holding an alias, or None when no version (or no model) holds it."""
    try:
        aliases = client.get_registered_model(settings.registered_model_name).aliases
    except MlflowException as error:
        if is_not_found(error):
            return None
        raise registry_error(settings, error) from error
    return int(aliases[alias]) if alias in aliases else None


def champion_version(settings: Settings) -> int | None:
    """Return the version the champion alias points at, or None when there is no champion."""
    return alias_version(connect(settings), settings, settings.champion_alias)


def get_version(client: MlflowClient, settings: Settings, version: int) -> ModelVersion:
    """Return one registered version or raise ModelNotFoundError."""
    name = settings.registered_model_name
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        if is_not_found(error):
            raise ModelNotFoundError(f"model '{name}' has no version {version}") from error
        raise registry_error(settings, error) from error


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Return every registered version, oldest first, with aliases, run, family, test score and
    data source (file, rows, fingerprint, demo corpus or not).

    An embedded database that does not exist holds no version: the list is empty, with a
    warning naming the missing file, and no empty database is created in its place (`toxiguard
    run` asks this before its first training).
    """
    database = embedded_database(settings)
    if database is not None and not database.is_file():
        logger.warning("%s", missing_database_error(database))
        return []
    client = connect(settings)
    name = settings.registered_model_name
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as error:
        if is_not_found(error):
            return []
        raise registry_error(settings, error) from error
    by_version: dict[int, list[str]] = {}
    for alias, number in aliases.items():
        by_version.setdefault(int(number), []).append(alias)
    rows: list[dict[str, Any]] = []
    page_token: str | None = None
    try:
        while True:
            page = client.search_model_versions(f"name = '{name}'", page_token=page_token)
            for mv in page:
                score = mv.tags.get("test_roc_auc_mean")
                rows.append(
                    {
                        "version": int(mv.version),
                        "aliases": sorted(by_version.get(int(mv.version), [])),
                        "created": datetime.fromtimestamp(
                            mv.creation_timestamp / 1000, UTC
                        ).isoformat(timespec="seconds"),
                        "run_id": mv.run_id,
                        "family": mv.tags.get("family"),
                        "test_roc_auc_mean": float(score) if score else None,
                        "decision": mv.tags.get("toxiguard.decision"),
                        "dataset_file": mv.tags.get("dataset_file"),
                        "dataset_rows": int(mv.tags["dataset_rows"])
                        if mv.tags.get("dataset_rows", "").isdigit()
                        else None,
                        "dataset_fingerprint": mv.tags.get("dataset_fingerprint"),
                        "demo_data": mv.tags.get("toxiguard.demo_data") == "true",
                        "base_version": mv.tags.get("toxiguard.base_version"),
                    }
                )
            page_token = page.token
            if not page_token:
                break
    except MlflowException as error:
        raise registry_error(settings, error) from error
    return sorted(rows, key=lambda row: row["version"])
