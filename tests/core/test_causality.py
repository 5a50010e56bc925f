"""Causality: events published inside a handler record what caused them and share the
chain's correlation id; handlers read their invocation through current_dispatch()."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import UUID

from core import DispatchContext, Event, EventBus, RetryPolicy, current_dispatch
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Placed(Event, type_name="tests.core.causality.Placed"):
    pass


@dataclass(frozen=True, slots=True)
class Charged(Event, type_name="tests.core.causality.Charged"):
    pass


@dataclass(frozen=True, slots=True)
class Shipped(Event, type_name="tests.core.causality.Shipped"):
    pass


class TestCausalLinks:
    async def test_chain_of_three(self) -> None:
        """Each child's causation is its parent's id; all share the root's id as correlation."""
        seen: dict[str, Event] = {}
        async with EventBus() as bus:

            @bus.subscribe(Placed, name="charge")
            async def charge(event: Placed) -> None:
                await asyncio.sleep(0)
                await bus.publish_async(Charged())

            @bus.subscribe(Charged, name="ship")
            async def ship(event: Charged) -> None:
                seen["charged"] = event
                await bus.publish_async(Shipped())

            @bus.subscribe(Shipped, name="done")
            async def done(event: Shipped) -> None:
                seen["shipped"] = event

            root = Placed()
            await bus.publish_async(root)
        charged, shipped = seen["charged"], seen["shipped"]
        assert (root.causation_id, root.correlation_id) == (None, None)
        assert (charged.causation_id, charged.correlation_id) == (root.id, root.id)
        assert (shipped.causation_id, shipped.correlation_id) == (charged.id, root.id)
        assert shipped.correlation == root.correlation

    async def test_sync_handler_in_a_thread_links_too(self) -> None:
        """An event made in a sync handler (worker thread) records its cause."""
        made: list[Event] = []
        async with EventBus() as bus:
            bus.subscribe(Placed, name="sync")(lambda e: made.append(Charged()))
            root = Placed()
            await bus.publish_async(root)
        assert made[0].causation_id == root.id

    async def test_concurrent_handlers_do_not_mix_contexts(self) -> None:
        """Two handlers of two concurrent publishes each link to their own event."""
        made: list[tuple[UUID, UUID | None]] = []
        barrier = asyncio.Barrier(2)

        async def handler(event: Placed) -> None:
            await barrier.wait()
            made.append((event.id, Charged().causation_id))

        async with EventBus() as bus:
            bus.subscribe(Placed, name="h")(handler)
            await asyncio.gather(bus.publish_async(Placed()), bus.publish_async(Placed()))
        assert len(made) == 2
        assert all(parent == cause for parent, cause in made)

    async def test_nothing_leaks_after_publish(self) -> None:
        """After publish returns, events made by the caller have no cause."""
        async with EventBus() as bus:
            bus.subscribe(Placed, name="h")(lambda e: None)
            await bus.publish_async(Placed())
        assert current_dispatch() is None
        assert Charged().causation_id is None

    async def test_explicit_ids_win(self) -> None:
        """Ids given explicitly are kept even inside a handler."""
        given = UUID(int=5)
        made: list[Event] = []

        async def handler(event: Placed) -> None:
            made.append(Charged(causation_id=given, correlation_id=given))

        async with EventBus() as bus:
            bus.subscribe(Placed, name="h")(handler)
            await bus.publish_async(Placed())
        assert (made[0].causation_id, made[0].correlation_id) == (given, given)


class TestCurrentDispatch:
    async def test_handler_reads_event_and_attempt(self) -> None:
        """current_dispatch() gives the event and the 1-based attempt number."""
        seen: list[tuple[UUID, int, bool]] = []

        async def flaky(event: Placed) -> None:
            ctx = current_dispatch()
            assert isinstance(ctx, DispatchContext)
            seen.append((ctx.event.id, ctx.attempt, ctx.redelivery))
            if ctx.attempt < 3:
                raise ValueError("again")

        async with EventBus(clock=FakeClock()) as bus:
            bus.subscribe(Placed, name="flaky", retry=RetryPolicy(max_attempts=3))(flaky)
            event = Placed()
            result = await bus.publish_async(event)
        assert result.ok
        assert seen == [(event.id, 1, False), (event.id, 2, False), (event.id, 3, False)]

    async def test_sync_handler_reads_its_attempt(self) -> None:
        """A sync handler in the executor sees its attempt number too."""
        attempts: list[int] = []

        def flaky(event: Placed) -> None:
            ctx = current_dispatch()
            assert ctx is not None
            attempts.append(ctx.attempt)
            if ctx.attempt == 1:
                raise ValueError("again")

        async with EventBus(clock=FakeClock()) as bus:
            bus.subscribe(Placed, name="flaky", retry=2)(flaky)
            await bus.publish_async(Placed())
        assert attempts == [1, 2]

    def test_none_outside_handlers(self) -> None:
        """Outside any handler there is no dispatch context."""
        assert current_dispatch() is None
