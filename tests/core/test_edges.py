"""Edges of the new core: dead letters of odd records, lazy results read in every
way, router refusals, and re-drives that cannot find their handler."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from core import (
    ChecksumMismatchError,
    DeadLetterReason,
    DispatchError,
    Event,
    EventBus,
    OutcomeStatus,
    Router,
    SubscriptionError,
    UnknownEventTypeError,
)
from core.dlq import DECODE_HANDLER, for_corrupt, for_failure, for_undecodable
from core.results import Failure
from core.store import StoredEvent


@dataclass(frozen=True, slots=True)
class Reading(Event, type_name="tests.core.edges.Reading"):
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class Other(Event, type_name="tests.core.edges.Other"):
    n: int = 0


def record(payload: bytes) -> StoredEvent:
    now = datetime.now(UTC)
    return StoredEvent(7, uuid4(), "gone.Type", 1, now, now, payload)


class TestDeadLetters:
    def test_an_undecodable_record_keeps_what_can_be_read(self) -> None:
        """JSON that is not an object is kept as raw; bytes that are not JSON as text."""
        exc = UnknownEventTypeError("gone.Type", [])
        listed = for_undecodable(record(b"[1, 2]"), exc, group="g", source="live")
        assert listed.payload == {"raw": [1, 2]}
        assert listed.handler == DECODE_HANDLER
        assert listed.reason is DeadLetterReason.DECODE_ERROR
        broken = for_undecodable(record(b"\xffnot json"), exc, group=None, source="replay")
        assert broken.payload["raw"].endswith("not json")
        assert (broken.seq, broken.group, broken.source) == (7, None, "replay")

    def test_a_corrupt_record_names_its_seq_only(self) -> None:
        """A checksum failure's entry has the nil id and no payload."""
        letter = for_corrupt(ChecksumMismatchError(9, "t"), group="g", source="live")
        assert (letter.seq, letter.event_id.int, letter.payload) == (9, 0, {})

    def test_an_unencodable_event_still_gets_its_letter(self) -> None:
        """A failure on an event JSON cannot carry keeps the event's repr."""
        now = datetime.now(UTC)
        failure = Failure(
            "h", OutcomeStatus.FAILED, 1, 0.0, ValueError("x"), DeadLetterReason.EXHAUSTED, now, now
        )
        letter = for_failure(failure, Reading(math.nan), seq=None, group=None, source="live")
        assert "repr" in letter.payload
        assert letter.error_type == "builtins.ValueError"


class TestLazyResults:
    async def test_one_and_many_results_read_like_any_result(self) -> None:
        """The lazy results of the lean paths answer ok, len, repr, failures, values."""
        bus = EventBus()
        bus.subscribe(Reading, name="one")(_returns(1))
        bus.subscribe(Other, name="a")(_returns("a"))
        bus.subscribe(Other, name="b")(_returns("b"))
        async with bus:
            one = await bus.publish_async(Reading(1.0))
            many = await bus.publish_async(Other(2))
        for result, n in ((one, 1), (many, 2)):
            assert result.ok
            assert len(result) == n
            assert result.failures == []
            assert result.seq is None
            assert not result.duplicate
            assert "ok=True" in repr(result)
            result.raise_for_errors()  # nothing to raise
        assert one.values == {"one": 1}
        assert many.values == {"a": "a", "b": "b"}
        assert many.outcomes is many.outcomes

    async def test_a_failure_among_several_is_raised_when_asked(self) -> None:
        """raise_on_error on a multi-handler route raises a DispatchError naming it."""
        bus = EventBus()

        async def boom(event: Other) -> None:
            raise KeyError("k")

        bus.subscribe(Other, name="ok")(_returns(None))
        bus.subscribe(Other, name="boom")(boom)
        async with bus:
            with pytest.raises(DispatchError) as caught:
                await bus.publish_async(Other(), raise_on_error=True)
        assert [o.handler for o in caught.value.outcomes] == ["ok", "boom"]
        assert bus.statistics().handled_failed == 1


class TestRefusals:
    def test_a_router_refuses_what_it_cannot_subscribe(self) -> None:
        """Not an Event class, not callable, an empty name, two callables one name."""
        router = Router()
        with pytest.raises(SubscriptionError, match="subscribe to an Event subclass"):
            router.add(int, print)  # type: ignore[arg-type]
        with pytest.raises(SubscriptionError, match="must be callable"):
            router.add(Reading, 3)  # type: ignore[call-overload]
        with pytest.raises(SubscriptionError, match="non-empty string"):
            router.add(Reading, print, name=" ")
        router.add(Reading, _returns(1), name="same")
        with pytest.raises(SubscriptionError, match="both named 'same'"):
            router.add(Reading, _returns(2), name="same")
        handler = _returns(3)
        router.add(Reading, handler)
        with pytest.raises(SubscriptionError, match="already subscribed to Reading"):
            router.add(Reading, handler)

    async def test_a_redrive_needs_its_handler_subscribed_to_the_type(self) -> None:
        """A dead letter whose handler no longer takes that type is a clear error."""
        bus = EventBus()

        async def fails(event: Event) -> None:
            raise RuntimeError("no")

        bus.subscribe(Reading, name="h")(fails)
        async with bus:
            await bus.publish_async(Reading())
            (letter,) = await bus.dead_letters.list_dead_letters()
            bus.unsubscribe("h")
            bus.subscribe(Other, name="h")(fails)
            assert letter.id is not None
            with pytest.raises(SubscriptionError, match="not subscribed to"):
                await bus.redrive(letter.id)
            bus.unsubscribe("h")
            with pytest.raises(SubscriptionError, match="not loaded"):
                await bus.redrive(letter.id)


def _returns(value: object):
    async def handler(event: Event) -> object:
        return value

    return handler


class TestReplayCutShort:
    async def test_a_cancelled_replay_keeps_the_dead_letters_it_saw(self) -> None:
        """Cancel a replay mid-way: the failures before the cancel are dead letters."""
        from core import MemoryEventStore

        store = MemoryEventStore()
        await store.append([Other(n) for n in range(3)])
        bus = EventBus(store, consume=False)
        stuck = asyncio.Event()

        async def fails(event: Other) -> None:
            raise RuntimeError("replayed and failed")

        bus.subscribe(Other, name="fails")(fails)

        async def records():
            async for record in store.read():
                yield record
            stuck.set()
            await asyncio.Event().wait()

        replaying = asyncio.create_task(bus.replay(records()))
        await stuck.wait()
        replaying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await replaying
        letters = await store.list_dead_letters()
        assert [(d.handler, d.source) for d in letters] == [("fails", "replay")] * 3
