"""Dead letters: a handler's final failure (exhausted retries, last-attempt timeout, open
breaker) is kept with every fact; re-drive retries one entry against its handler only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from core import (
    BreakerPolicy,
    DeadLetterNotFoundError,
    DeadLetterReason,
    DeadLetterStatus,
    Event,
    EventBus,
    MemoryDeadLetterQueue,
    OutcomeStatus,
    RetryPolicy,
    current_dispatch,
)
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Shipment(Event, type_name="tests.core.dlq.Shipment"):
    ref: str
    weight: float = 1.0


class Carrier:
    """A handler that fails until told to work, recording every call."""

    def __init__(self) -> None:
        self.working = False
        self.calls: list[tuple[str, bool]] = []

    async def __call__(self, event: Shipment) -> None:
        ctx = current_dispatch()
        assert ctx is not None
        self.calls.append((event.ref, ctx.redelivery))
        if not self.working:
            raise ConnectionError(f"carrier down for {event.ref}")


class TestEntries:
    async def test_exhausted_retries_produce_a_complete_entry(self) -> None:
        """The entry holds event, handler, error type, message, traceback, attempts and times."""
        before = datetime.now(UTC)
        carrier = Carrier()
        async with EventBus(clock=FakeClock()) as bus:
            bus.subscribe(Shipment, name="carrier", retry=RetryPolicy(max_attempts=3))(carrier)
            event = Shipment("s-1", 2.5)
            await bus.publish_async(event)
            (entry,) = await bus.dead_letters.list_dead_letters()
        assert entry.id == 1
        assert (entry.event_id, entry.event_type) == (event.id, "tests.core.dlq.Shipment")
        assert entry.handler == "carrier"
        assert entry.reason is DeadLetterReason.EXHAUSTED
        assert entry.error_type == "builtins.ConnectionError"
        assert entry.message == "carrier down for s-1"
        assert "ConnectionError: carrier down for s-1" in entry.traceback
        assert "Traceback" in entry.traceback
        assert entry.attempts == 3
        assert before <= entry.first_failure_at <= entry.last_failure_at <= datetime.now(UTC)
        assert entry.payload == event.to_dict()
        assert (entry.seq, entry.group, entry.source) == (None, None, "live")
        assert entry.status is DeadLetterStatus.OPEN

    async def test_last_attempt_timeout_is_dead_lettered(self) -> None:
        """A handler timing out on its last attempt produces a 'timeout' entry."""
        never = asyncio.Event()

        async def stuck(event: Shipment) -> None:
            await never.wait()

        async with EventBus() as bus:
            bus.subscribe(Shipment, name="stuck", timeout=0.01)(stuck)
            await bus.publish_async(Shipment("s-1"))
            (entry,) = await bus.dead_letters.list_dead_letters()
        assert (entry.reason, entry.attempts) == (DeadLetterReason.TIMEOUT, 1)
        assert entry.error_type == "builtins.TimeoutError"

    async def test_open_breaker_is_dead_lettered(self) -> None:
        """A call refused by an open breaker produces a 'breaker_open' entry."""
        async with EventBus(clock=FakeClock()) as bus:
            bus.subscribe(Shipment, name="c", breaker=BreakerPolicy(failure_threshold=1))(Carrier())
            await bus.publish_async(Shipment("s-1"))
            await bus.publish_async(Shipment("s-2"))
            entries = await bus.dead_letters.list_dead_letters()
        assert [e.reason for e in entries] == [
            DeadLetterReason.EXHAUSTED,
            DeadLetterReason.BREAKER_OPEN,
        ]
        assert entries[1].error_type == "core.errors.BreakerOpenError"
        assert entries[1].attempts == 0

    async def test_success_makes_no_entry(self) -> None:
        """Successful handlers leave the queue empty."""
        async with EventBus() as bus:
            bus.subscribe(Shipment, name="ok")(lambda e: None)
            await bus.publish_async(Shipment("s"))
            assert await bus.dead_letters.count_dead_letters(status=None) == 0

    async def test_a_given_queue_is_used(self) -> None:
        """A dead-letter queue passed to the bus receives its entries."""
        queue = MemoryDeadLetterQueue()
        async with EventBus(dead_letters=queue) as bus:
            bus.subscribe(Shipment, name="c")(Carrier())
            await bus.publish_async(Shipment("s"))
        assert await queue.count_dead_letters() == 1


class TestRedrive:
    async def test_redrive_dispatches_to_that_handler_only_and_resolves(self) -> None:
        """Re-drive runs only the entry's handler and resolves the entry on success."""
        carrier = Carrier()
        others: list[str] = []
        async with EventBus() as bus:
            bus.subscribe(Shipment, name="carrier")(carrier)
            bus.subscribe(Shipment, name="other")(lambda e: others.append(e.ref))
            await bus.publish_async(Shipment("s-1"))
            (entry,) = await bus.dead_letters.list_dead_letters()
            carrier.working = True
            result = await bus.redrive(entry.id)  # type: ignore[arg-type]
            resolved = await bus.dead_letters.get_dead_letter(entry.id)  # type: ignore[arg-type]
            again = await bus.redrive(entry.id)  # type: ignore[arg-type]
        assert result.resolved
        assert not result.already_resolved
        assert result.outcome is not None
        assert result.outcome.status is OutcomeStatus.OK
        assert carrier.calls == [("s-1", False), ("s-1", True)]
        assert others == ["s-1"]
        assert resolved.status is DeadLetterStatus.RESOLVED
        assert resolved.resolved_at is not None
        assert (again.resolved, again.already_resolved) == (False, True)
        assert carrier.calls[-1] == ("s-1", True)  # not called a third time
        assert len(carrier.calls) == 2

    async def test_failed_redrive_bumps_attempts(self) -> None:
        """A re-drive that fails again keeps the entry open with one more attempt."""
        carrier = Carrier()
        async with EventBus() as bus:
            bus.subscribe(Shipment, name="carrier")(carrier)
            await bus.publish_async(Shipment("s-1"))
            (entry,) = await bus.dead_letters.list_dead_letters()
            result = await bus.redrive(entry.id)  # type: ignore[arg-type]
            after = await bus.dead_letters.get_dead_letter(entry.id)  # type: ignore[arg-type]
        assert not result.resolved
        assert result.error == "carrier down for s-1"
        assert after.status is DeadLetterStatus.OPEN
        assert after.attempts == entry.attempts + 1
        assert after.last_failure_at >= entry.last_failure_at

    async def test_redrive_unknown_entry(self) -> None:
        """Re-driving an id that does not exist raises DeadLetterNotFoundError."""
        async with EventBus() as bus:
            with pytest.raises(DeadLetterNotFoundError, match="42"):
                await bus.redrive(42)
