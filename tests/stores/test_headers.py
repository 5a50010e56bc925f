"""Store contract, headers: what ``append(..., headers=...)`` stores with an event comes
back on its record, from every read, on every store; none stored reads ``NO_HEADERS``."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from store_events import OrderPlaced

from core.store import NO_HEADERS, EventStore, StoredEvent

TRACE = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE",
}


def placed(n: int) -> OrderPlaced:
    return OrderPlaced(f"o-{n}", n)


async def every_read(store: EventStore, seq: int, event_id: object) -> list[StoredEvent]:
    """The record at ``seq`` as each read gives it: read, get, get_by_id."""
    read = [r async for r in store.read(from_seq=seq, to_seq=seq)]
    got = await store.get(seq)
    by_id = await store.get_by_id(event_id)  # type: ignore[arg-type]
    assert got is not None
    assert by_id is not None
    return [*read, got, by_id]


class TestHeaders:
    async def test_round_trip_on_every_read(self, store: EventStore) -> None:
        """Headers given per event come back exactly, on each read of the record;
        an event given None (or nothing) reads back empty."""
        events = [placed(1), placed(2), placed(3)]
        await store.append(events, headers=[TRACE, None, {"only": "one"}])
        expected = [TRACE, {}, {"only": "one"}]
        for seq, (event, want) in enumerate(zip(events, expected, strict=True), 1):
            for record in await every_read(store, seq, event.id):
                assert dict(record.headers) == want

    async def test_none_stored_reads_the_shared_empty_mapping(self, store: EventStore) -> None:
        """Without headers the record holds NO_HEADERS, which cannot be changed."""
        await store.append([placed(1)])
        await store.append([placed(2)], headers=[{}])
        for record in [r async for r in store.read()]:
            assert record.headers == {}
            assert isinstance(record.headers, MappingProxyType)
        with pytest.raises(TypeError):
            NO_HEADERS["x"] = "y"  # type: ignore[index]

    async def test_stored_headers_cannot_be_changed_through_the_record(
        self, store: EventStore
    ) -> None:
        """A record's headers are read-only, and not the caller's dict."""
        given = dict(TRACE)
        await store.append([placed(1)], headers=[given])
        given["traceparent"] = "changed"
        (record,) = [r async for r in store.read()]
        assert record.headers["traceparent"] == TRACE["traceparent"]
        with pytest.raises(TypeError):
            record.headers["x"] = "y"  # type: ignore[index]

    async def test_a_duplicate_keeps_its_first_headers(self, store: EventStore) -> None:
        """Appending a stored id again with other headers changes nothing."""
        event = placed(1)
        await store.append([event], headers=[{"first": "1"}])
        (again,) = await store.append([event], headers=[{"second": "2"}])
        assert again.duplicate
        got = await store.get(1)
        assert got is not None
        assert dict(got.headers) == {"first": "1"}

    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            pytest.param([TRACE], "headers has 1 entries for 2 event", id="too-few"),
            pytest.param([TRACE, None, None], "headers has 3 entries", id="too-many"),
            pytest.param([{"n": 1}, None], r"headers\[0\] must map strings", id="int-value"),
            pytest.param([None, {2: "x"}], r"headers\[1\] must map strings", id="int-key"),
        ],
    )
    async def test_bad_headers_refuse_the_whole_append(
        self, store: EventStore, headers: list[object], message: str
    ) -> None:
        """Headers that do not fit the events are a one-line ValueError; nothing is
        appended."""
        with pytest.raises(ValueError, match=message) as info:
            await store.append([placed(1), placed(2)], headers=headers)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
        assert await store.last_seq() == 0

    async def test_records_with_headers_compare_and_hash(self, store: EventStore) -> None:
        """Headers take part in a record's equality, not in its hash."""
        await store.append([placed(1)], headers=[TRACE])
        first = await store.get(1)
        second = await store.get(1)
        assert first is not None
        assert second is not None
        assert first == second
        assert hash(first) == hash(second)
        assert {first: 1}[second] == 1
