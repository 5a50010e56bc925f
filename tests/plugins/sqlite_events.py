"""SQLite test events: the event classes the SQLite plugin tests and their subprocess
scripts append."""

from __future__ import annotations

from dataclasses import dataclass

from core.events import Event


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="sqlite_test.tick"):
    n: int
    note: str = ""
