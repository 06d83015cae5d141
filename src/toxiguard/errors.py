"""The project's exceptions: one base class, so entry points can catch a user's mistake; and
`redact`, the one function that takes secrets out of every text a user or a log can see."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

# scheme://user:PASSWORD@host: greedy up to the last "@" before a "/" or whitespace, so that
# an unescaped "@" inside the password is hidden too.
_URI_PASSWORD: Final = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s/]*@")
# libpq's keyword form (host=db password=secret), PGPASSWORD=..., TOXIGUARD_API_KEYS=... .
_KEYWORD_PASSWORD: Final = re.compile(
    r"(?i)\b(?P<key>\w*(?:password|passwd|pwd|api_keys?|secret))(?P<eq>\s*=\s*)"
    r"(?:'[^']*'|\"[^\"]*\"|[^\s;&]+)"
)


def redact(text: str) -> str:
    """Return the text with every password in it (in URIs or key=value pairs) replaced by ***."""
    if "@" in text:
        text = _URI_PASSWORD.sub(r"\g<head>:***@", text)
    if "=" in text:
        text = _KEYWORD_PASSWORD.sub(r"\g<key>\g<eq>***", text)
    return text


def error_line(error: BaseException) -> str:
    """Return "Type: first line of the message", passwords redacted, cut to 300 characters."""
    lines = redact(str(error)).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


class RedactSecrets(logging.Filter):
    """A logging filter that redacts each record's message and traceback (install on handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's text without secrets; keep every record."""
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = redact(message), ()
        return True


class ToxiguardError(Exception):
    """A problem the user can fix (bad input, missing model, unreachable service).

    Its text is redacted: a URI with a password in the message shows `user:***@host`.
    """

    def __str__(self) -> str:
        return redact(super().__str__())


@dataclass(frozen=True)
class Problem:
    """One validation finding: which file, which rows (1-based data rows), which column."""

    file: str
    column: str | None
    rows: tuple[int, ...]
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            where.append(f"row{'s' if len(self.rows) > 1 else ''} {shown}{more}")
        if self.column:
            where.append(f"column '{self.column}'")
        return f"{': '.join(where)}: {self.message}"


class DataValidationError(ToxiguardError):
    """The data broke one or more rules; each finding names file, rows and column."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @classmethod
    def single(
        cls, file: str | Path, message: str, *, column: str | None = None, rows: Sequence[int] = ()
    ) -> DataValidationError:
        """Return an error holding one problem."""
        return cls([Problem(str(file), column, tuple(rows), message)])


class ModelNotFoundError(ToxiguardError):
    """No model where one was asked for (no champion yet, unknown version or family)."""


class ModelIntegrityError(ToxiguardError):
    """A saved model's files are not the ones it was saved with (changed, missing, foreign)."""


class RegistryError(ToxiguardError):
    """The model registry refused or could not carry out an operation."""


class MissingExtraError(ToxiguardError):
    """A feature needs an optional part of the install (an extra) that is not installed."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.feature, self.extra, self.missing = feature, extra, missing
        super().__init__(
            f"{feature} needs the '{extra}' extra ({missing} is not installed): "
            f"pip install 'toxiguard[{extra}]'"
        )


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Return the imported `module`, or raise MissingExtraError naming the install command.

    Only a missing `module` itself is turned into the error: an ImportError raised from inside
    an installed package is a real bug and propagates unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.partition(".")[0]
        if error.name is not None and error.name.partition(".")[0] == top:
            raise MissingExtraError(feature, extra, top) from error
        raise
