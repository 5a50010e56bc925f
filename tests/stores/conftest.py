"""Fixtures of the store contract suite: one store of each kind behind the same name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_events import WallClock

from core.memory import MemoryEventStore
from core.store import EventStore
from plugins.sqlite import SQLiteEventStore


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture(params=[pytest.param("memory", id="memory"), pytest.param("sqlite", id="sqlite")])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: WallClock
) -> AsyncIterator[EventStore]:
    opened: EventStore
    if request.param == "memory":
        opened = MemoryEventStore(wall_clock=clock)
    else:
        opened = await SQLiteEventStore.open(f"sqlite:///{tmp_path}/store.db", wall_clock=clock)
    try:
        yield opened
    finally:
        await opened.aclose()
