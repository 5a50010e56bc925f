"""Inputs: events typed by people — ``--data`` JSON and JSON-lines files
(``{"type": ..., "data": {...}}`` per line) — checked against the registered classes.

Every line is validated before anything is appended, so a rejected batch writes nothing;
each problem names its source and line number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.errors import EventError, PubSubError
from core.events import Event, default_registry

__all__ = ["InputError", "ParsedLines", "event_from", "parse_lines", "read_text_file"]


class InputError(PubSubError):
    """Raised for input that is not a valid event: malformed JSON, a line without
    ``type``, an unknown type or a payload that does not fit its class. Nothing is
    appended when it is raised."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def event_from(type_name: str, data: Any, where: str) -> Event:
    """The event of registered type ``type_name`` built from ``data`` (an object)."""
    if not isinstance(data, dict):
        raise InputError(where, f"data must be a JSON object, got {type(data).__name__}")
    try:
        cls = default_registry.resolve(type_name)
        return cls.from_dict(data)
    except EventError as exc:
        raise InputError(where, str(exc)) from None


def event_from_json(type_name: str, text: str, where: str) -> Event:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(where, f"malformed JSON: {exc}") from None
    return event_from(type_name, data, where)


@dataclass(slots=True)
class ParsedLines:
    """The events of a JSON-lines input and the lines that were rejected."""

    events: list[Event] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)


def parse_line(text: str, where: str) -> Event:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(where, f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise InputError(where, 'expected an object like {"type": "OrderPlaced", "data": {...}}')
    unexpected = sorted(set(doc) - {"type", "data"})
    if unexpected:
        raise InputError(where, f"unexpected key(s) {', '.join(map(repr, unexpected))}")
    return event_from(doc["type"], doc.get("data", {}), where)


def parse_lines(lines: Iterable[str], source: str) -> ParsedLines:
    """Parse every non-blank line; problems are collected, not raised."""
    parsed = ParsedLines()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            parsed.events.append(parse_line(text, f"{source} line {number}"))
            parsed.lines.append(number)
        except InputError as exc:
            parsed.errors.append(exc)
    return parsed


def read_text_file(path: Path) -> str:
    """The text of a JSON-lines file; a missing file, a folder or bytes that are not
    UTF-8 are an ``InputError`` (JSON is UTF-8)."""
    if not path.is_file():
        problem = "is a directory, not a JSON-lines file" if path.is_dir() else "no such file"
        raise InputError(str(path), problem)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path} line {line}", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
        ) from None
