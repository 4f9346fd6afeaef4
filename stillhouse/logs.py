"""Structured log lines that carry `action` and the job's `public_id` across processes.

`log_context(public_id=...)` binds fields for everything logged inside it (threads and
asyncio tasks each see their own binding). Every configured secret is scrubbed from the
final line, whatever put it there.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from stillhouse.config import Settings

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "stillhouse_log_context", default=MappingProxyType({})
)
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
REDACTED = "***"


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields (public_id, shard, worker ...) to every record logged inside."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: bound context, then `extra=`."""
    fields = dict(_context.get())
    fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **record_fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable: time level logger message key=value ..."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        text = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        text = f"{text} {extras}" if extras else text
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that removes secret values from every formatted line."""

    def __init__(self, secrets: Iterable[str], stream: Any = None) -> None:
        super().__init__(stream or sys.stderr)
        # Longest first, so a secret containing another is removed whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Send every logger's records to stderr in the configured format."""
    handler = RedactingHandler(settings.secret_values(), stream)
    handler.setFormatter(JsonFormatter() if settings.log.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log.level)
