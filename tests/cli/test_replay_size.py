"""The size of a replay's selection, known without reading it (for the progress bar)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from core import Event, MemoryEventStore
from pubsub_cli.commands.replay import _Range, _size


@dataclass(frozen=True, slots=True)
class Red(Event, type_name="tests.cli.replay_size.Red"):
    pass


@dataclass(frozen=True, slots=True)
class Blue(Event, type_name="tests.cli.replay_size.Blue"):
    pass


@pytest.mark.parametrize(
    ("from_seq", "to_seq", "types", "since", "expected"),
    [
        pytest.param(1, None, None, None, 10, id="whole-log"),
        pytest.param(4, None, None, None, 7, id="from-seq"),
        pytest.param(4, 6, None, None, 3, id="seq-range"),
        pytest.param(4, 99, None, None, 7, id="to-seq-past-the-end"),
        pytest.param(12, None, None, None, 0, id="past-the-end"),
        pytest.param(1, None, ["tests.cli.replay_size.Red"], None, 3, id="one-type"),
        pytest.param(2, None, ["tests.cli.replay_size.Red"], None, None, id="type-and-seq"),
        pytest.param(1, None, None, datetime(2020, 1, 1, tzinfo=UTC), None, id="by-time"),
    ],
)
async def test_size_of_a_selection(
    from_seq: int,
    to_seq: int | None,
    types: list[str] | None,
    since: datetime | None,
    expected: int | None,
) -> None:
    """Sequence ranges are sized from the gap-free sequence, a whole-log type filter by
    the store's count; a time selection or a type filter on a sub-range is unknown."""
    store = MemoryEventStore()
    await store.append(
        [Red(), Blue(), Blue(), Red(), Blue(), Blue(), Red(), Blue(), Blue(), Blue()]
    )
    rng = _Range(from_seq, to_seq, since, None, types)
    assert await _size(store, rng, await store.last_seq()) == expected
