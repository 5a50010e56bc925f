"""Logs: where the records of the ``pubsub`` loggers go while a command runs.

The library and the worker log through ``logging`` under the ``pubsub`` logger and its
children (``pubsub`` for the bus, ``pubsub.dlq`` for dead letters, ``pubsub.worker`` for
``pubsub run``'s lifecycle). For the length of one command the command line puts one
handler on ``pubsub`` that writes to stderr (stdout stays the command's results), at
``--log-level`` and above, in one of two formats:

- ``text``: one readable line per record: UTC time, level, logger, message, and the
  record's facts as ``key=value`` (``event_id``, ``event_type``, ``handler``, ``group``
  ... where the record knows them; a value with spaces or quotes is JSON-quoted);
- ``json``: one JSON object per line with ``time`` (ISO 8601, UTC), ``level``,
  ``logger``, ``message`` and the same facts as keys.

Tracebacks are left out unless asked for: a record carries the exception of a failing
middleware, hook or collector as ``pubsub_error`` and the line shows its type and
message; ``-v`` (or ``--log-level debug``) adds the traceback (multi-line in text, a
``traceback`` key in JSON). The handler is removed and the loggers restored when the
command ends, so an in-process caller (tests) is left as it was.
"""

from __future__ import annotations

import enum
import logging
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

__all__ = [
    "LIBRARY_LOGGER",
    "LogFormat",
    "LogLevel",
    "StderrLogHandler",
    "configured",
    "record_fields",
    "redact_url",
]

LIBRARY_LOGGER = "pubsub"
"""The logger the library and the worker log under (and its children)."""


class LogLevel(enum.StrEnum):
    """The values ``--log-level`` takes."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The ``logging`` level number."""
        return _NUMBERS[self]


class LogFormat(enum.StrEnum):
    """The values ``--log-format`` takes."""

    TEXT = "text"
    JSON = "json"


_NUMBERS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}

# What every LogRecord has: anything else on a record came in through ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# The library's own extras, renamed for the line (the exception object itself is shown
# as its type; its message is in the record's message already).
_WHERE = "pubsub_where"
_ERROR = "pubsub_error"

# Said by the message of the library's warnings already: left out of text lines.
_IN_MESSAGE = frozenset({"where", "error_type"})

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def redact_url(url: str) -> str:
    """``url`` without the user and password a broker URL may carry
    (``nats://user:secret@host:4222`` becomes ``nats://***@host:4222``)."""
    return _USERINFO.sub(r"\1***@", url)


def _time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The facts a record carries beyond the standard ones (its ``extra=``), in the
    order given; ``pubsub_where`` becomes ``where`` and ``pubsub_error`` becomes
    ``error_type``."""
    fields: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD or value is None:
            continue
        if key == _WHERE:
            fields["where"] = value
        elif key == _ERROR:
            fields["error_type"] = type(value).__name__
        else:
            fields[key] = value
    return fields


def _traceback(record: logging.LogRecord, verbose: bool) -> str | None:
    """The traceback to show with ``record``: its ``exc_info`` (given only at debug
    level, or by code outside the library), or with ``verbose`` the exception it carries
    as ``pubsub_error``."""
    if record.exc_info and record.exc_info[1] is not None:
        return "".join(traceback.format_exception(record.exc_info[1])).rstrip("\n")
    error = getattr(record, _ERROR, None)
    if verbose and isinstance(error, BaseException):
        return "".join(traceback.format_exception(error)).rstrip("\n")
    return None


def _message(record: logging.LogRecord) -> str:
    # The library prefixes its warnings with "pubsub: " for a bare handler (Python's
    # last resort prints the message alone); here the logger's name says it.
    return record.getMessage().removeprefix("pubsub: ")


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: message key=value...`` on one line (line breaks inside the
    message are escaped); the traceback, when shown, on the lines after it."""

    def __init__(self, *, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        parts = [_time(record), record.levelname, f"{record.name}:", _message(record)]
        for key, value in record_fields(record).items():
            if key in _IN_MESSAGE:
                continue
            text = str(value)
            if not text or any(c.isspace() or c in '"=' for c in text):
                text = orjson.dumps(text).decode()
            parts.append(f"{key}={text}")
        line = " ".join(parts).replace("\r", "\\r").replace("\n", "\\n")
        tb = _traceback(record, self.verbose)
        return f"{line}\n{tb}" if tb else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, *, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
        }
        for key, value in record_fields(record).items():
            document.setdefault(key, value)
        tb = _traceback(record, self.verbose)
        if tb:
            document["traceback"] = tb
        return orjson.dumps(document, default=str).decode()


class StderrLogHandler(logging.Handler):
    """Writes records to the stderr of the moment (a test runner swaps it per call).

    The library logs a failing observer's traceback as a second, debug-level record
    after its warning; when the warning already showed that traceback (``-v``, or debug
    level), the second record is left out."""

    def __init__(
        self, level: int, fmt: LogFormat, *, verbose: bool, stream: TextIO | None = None
    ) -> None:
        super().__init__(level)
        self.verbose = verbose or level <= logging.DEBUG
        formatter = JsonFormatter if fmt is LogFormat.JSON else TextFormatter
        self.setFormatter(formatter(verbose=self.verbose))
        self._stream = stream
        self._shown: BaseException | None = None

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            error = getattr(record, _ERROR, None)
            if isinstance(error, BaseException):
                self._shown = error if self.verbose else None
            elif self._shown is not None and record.exc_info and record.exc_info[1] is self._shown:
                self._shown = None
                return  # its traceback went out with the warning
            stream = self.stream
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


@contextmanager
def configured(
    level: LogLevel | None,
    fmt: LogFormat = LogFormat.TEXT,
    *,
    verbose: bool = False,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> Iterator[StderrLogHandler]:
    """Send the ``pubsub`` loggers' records at ``level`` and above to stderr in
    ``fmt`` while the block runs (``level`` None: warning, or error with ``quiet``).

    The logger itself lets warnings through at any level (the worker watches them for a
    lost lease), the handler shows only what ``level`` asks for; records stay out of
    the root logger meanwhile, so a handler module's own logging setup does not print
    them twice."""
    chosen = level.number if level is not None else logging.ERROR if quiet else logging.WARNING
    handler = StderrLogHandler(chosen, fmt, verbose=verbose, stream=stream)
    logger = logging.getLogger(LIBRARY_LOGGER)
    saved = (logger.level, logger.propagate)
    logger.setLevel(min(chosen, logging.WARNING))
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
