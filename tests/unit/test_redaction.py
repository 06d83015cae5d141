"""`redact`: no password of a URI or a key=value setting reaches a response or a log line."""

from __future__ import annotations

import logging

import pytest

from toxiguard.errors import RedactSecrets, RegistryError, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot reach http://admin:PW@mlflow:5000/api",
            "cannot reach http://admin:***@mlflow:5000/api",
        ),
        ("postgresql+psycopg://u:p%40ss@db:5432/x", "postgresql+psycopg://u:***@db:5432/x"),
        ("https://u:p@ss@host/ and http://v:w@other", "https://u:***@host/ and http://v:***@other"),
        ("host=db user=me password=PW dbname=x", "host=db user=me password=*** dbname=x"),
        ("PGPASSWORD=PW psql", "PGPASSWORD=*** psql"),
        ("TOXIGUARD_API_KEYS=k1,k2 serve", "TOXIGUARD_API_KEYS=*** serve"),
        ("password='two words' next", "password=*** next"),
        ("http://host:5000/a@b and user@example.org", "http://host:5000/a@b and user@example.org"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_passwords_are_replaced(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_errors_and_log_records_are_redacted() -> None:
    error = RegistryError("cannot reach the MLflow server at http://admin:PW@host")
    assert str(error) == "cannot reach the MLflow server at http://admin:***@host"
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "failed at %s", ("postgresql://u:PW@db/x",), None
    )
    try:
        raise ValueError("connect to postgresql://u:PW@db/x failed")
    except ValueError as caught:
        record.exc_info = (type(caught), caught, caught.__traceback__)
    assert RedactSecrets().filter(record)
    assert "PW" not in record.getMessage() and record.exc_info is None
    assert "postgresql://u:***@db/x" in record.getMessage()
    assert "ValueError" in record.getMessage()  # the traceback is kept, as text
