"""Inputs: events typed by people — ``--data`` JSON and JSON-lines files
(``{"type": ..., "data": {...}}`` per line, or the lines ``pubsub events list --json``
prints) — checked against the registered classes.

A JSON-lines input is read as bytes and split at ``\\n`` only, so a raw U+2028, U+2029
or U+0085 inside a JSON string stays inside its line, and line numbers count every
``\\n``. Each problem names its source and line number.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson

from core.codec import decode
from core.errors import EventError, PubSubError
from core.events import Event

__all__ = [
    "InputError",
    "event_from",
    "event_from_json",
    "event_of_line",
    "numbered_lines",
    "open_jsonl",
    "parse_line",
]

# The base fields an export carries next to "data"; they are the event's own (an id kept
# makes a re-import idempotent).
_BASE = ("id", "created_at", "correlation_id", "causation_id")
# What the store assigns again on append: read and dropped.
_ASSIGNED = ("seq", "appended_at")
_KEYS = frozenset(("type", "data", "version", *_BASE, *_ASSIGNED))


class InputError(PubSubError):
    """Raised for input that is not a valid event: malformed JSON, a line without
    ``type``, an unknown type or a payload that does not fit its class. Nothing is
    appended when it is raised."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def event_from(type_name: str, data: Any, where: str, *, version: int | None = None) -> Event:
    """The event of registered type ``type_name`` built from ``data`` (an object) at
    schema ``version`` (upcast when older; default: the class's own)."""
    if not isinstance(data, dict):
        raise InputError(where, f"data must be a JSON object, got {type(data).__name__}")
    try:
        return decode(type_name, data, version=version)
    except EventError as exc:
        raise InputError(where, str(exc)) from None


def event_from_json(type_name: str, text: str | bytes, where: str) -> Event:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(where, f"malformed JSON: {exc}") from None
    return event_from(type_name, data, where)


def _event_of_doc(doc: Any, where: str) -> Event:
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise InputError(where, 'expected an object like {"type": "OrderPlaced", "data": {...}}')
    unexpected = sorted(set(doc) - _KEYS)
    if unexpected:
        raise InputError(where, f"unexpected key(s) {', '.join(map(repr, unexpected))}")
    data = doc.get("data", {})
    version = doc.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise InputError(where, f"version must be an integer, got {version!r}")
    base = {k: doc[k] for k in _BASE if doc.get(k) is not None}
    if base and isinstance(data, dict):
        twice = sorted(k for k in base if k in data and data[k] != base[k])
        if twice:
            raise InputError(where, f"{twice[0]!r} differs between the line and its data")
        data = {**data, **base}
    return event_from(doc["type"], data, where, version=version)


def parse_line(text: str | bytes, where: str) -> Event:
    """The event of one JSON line."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(where, f"malformed JSON: {exc}") from None
    return _event_of_doc(doc, where)


def event_of_line(raw: bytes, where: str) -> Event | None:
    """The event of one line of bytes; None for a blank line. Bytes that are not UTF-8
    are an ``InputError`` naming the first bad byte."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():
            return None
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InputError(where, f"not UTF-8 text (byte 0x{raw[bad.start]:02x})") from None
        raise InputError(where, f"malformed JSON: {exc}") from None
    return _event_of_doc(doc, where)


def numbered_lines(stream: IO[bytes], *, size: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """The lines of ``stream`` (without their ``\\n``) numbered from 1, read ``size``
    bytes at a time; a last line without ``\\n`` counts too."""
    number = 0
    pending: list[bytes] = []
    while chunk := stream.read(size):
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            pending.append(chunk)
            continue
        pending.append(parts[0])
        number += 1
        yield number, b"".join(pending)
        for raw in parts[1:-1]:
            number += 1
            yield number, raw
        pending = [parts[-1]] if parts[-1] else []
    if pending:
        yield number + 1, b"".join(pending)


def open_jsonl(path: Path) -> BinaryIO:
    """A JSON-lines file opened for reading bytes; a missing file or a folder is an
    ``InputError``."""
    if path.is_dir():
        raise InputError(str(path), "is a directory, not a JSON-lines file")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
