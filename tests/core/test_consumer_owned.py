"""The consumer seam for a store that owns delivery (``OwnsDelivery``): the bus asks the
store for its consumer with the bus's options, a publish appends and returns without
dispatching, ``follow`` and ``aclose`` go to that consumer, and a plain log store still
gets a ``LogConsumer``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from core import ConsumerOptions, Event, EventBus, MemoryEventStore, OwnsDelivery
from core.consumer import Dispatcher, LogConsumer
from core.policies import RetryPolicy
from core.results import HandlerOutcome


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.core.owned.Job"):
    n: int = 0


class ScriptedConsumer:
    """A consumer that records what the bus asked of it and dispatches on ``follow``
    what the store appended (as a broker's worker would)."""

    def __init__(self, store: OwningStore, dispatcher: Dispatcher) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.calls: list[str] = []
        self.delivered = 0

    @property
    def checkpoint(self) -> int:
        return self.delivered

    @property
    def last_seq(self) -> int:
        return self.delivered

    @property
    def lost(self) -> None:
        return None

    async def start(self) -> None:
        self.calls.append("start")

    async def catch_up(self) -> int:
        self.calls.append("catch_up")
        return 0

    async def follow(self, stop: asyncio.Event, *, poll_interval: float = 0.2) -> None:
        self.calls.append("follow")
        async for record in self.store.read(from_seq=self.delivered + 1):
            event = record.decode()
            await self.dispatcher.deliver(record.seq, event, redelivery=False, source="live")
            self.delivered = record.seq

    async def dispatch_appended(self, seq: int, event: Event) -> list[HandlerOutcome[Any]]:
        self.calls.append("dispatch_appended")
        return []

    async def aclose(self) -> None:
        self.calls.append("aclose")


class OwningStore(MemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[ConsumerOptions] = []
        self.consumer: ScriptedConsumer | None = None

    def open_consumer(self, dispatcher: Dispatcher, options: ConsumerOptions) -> ScriptedConsumer:
        self.opened.append(options)
        self.consumer = ScriptedConsumer(self, dispatcher)
        return self.consumer


class TestOwnedDelivery:
    async def test_the_store_opens_the_consumer_with_the_bus_options(self) -> None:
        """The bus passes its group, holder, in-flight bound, tasks and handler policies."""
        store = OwningStore()
        assert isinstance(store, OwnsDelivery)
        bus = EventBus(store, group="g1", holder="me", max_in_flight=7)

        @bus.subscribe(Job, name="work", timeout=2.0, retry=RetryPolicy(max_attempts=3))
        async def work(event: Job) -> None:
            pass

        async with bus:
            (options,) = store.opened
            assert (options.group, options.holder, options.max_in_flight) == ("g1", "me", 7)
            assert options.policies["work"].timeout == 2.0
            assert options.policies["work"].retry.max_attempts == 3
            assert list(options.handlers_for(Job)) == ["work"]
            assert options.tasks is bus._tasks
            assert bus.consumer is store.consumer
        assert store.consumer is not None
        assert store.consumer.calls == ["start", "catch_up", "aclose"]

    async def test_publish_appends_and_returns_without_dispatching(self) -> None:
        """A publish is appended; its handler runs only when a worker delivers it."""
        store = OwningStore()
        bus = EventBus(store)
        seen: list[int] = []

        @bus.subscribe(Job, name="work")
        async def work(event: Job) -> None:
            seen.append(event.n)

        async with bus:
            result = await bus.publish_async(Job(1))
            assert result.seq == 1
            assert list(result.outcomes) == []
            assert seen == []
            assert await store.last_seq() == 1
            stop = asyncio.Event()
            await asyncio.wait_for(bus.follow(stop), 10)
            assert seen == [1]
        assert store.consumer is not None
        assert "dispatch_appended" not in store.consumer.calls
        assert "follow" in store.consumer.calls

    async def test_a_log_store_still_gets_a_log_consumer(self) -> None:
        """Without ``open_consumer`` the bus runs its LogConsumer and dispatches inline."""
        store = MemoryEventStore()
        assert not isinstance(store, OwnsDelivery)
        bus = EventBus(store)
        seen: list[int] = []

        @bus.subscribe(Job, name="work")
        async def work(event: Job) -> None:
            seen.append(event.n)

        async with bus:
            await bus.publish_async(Job(2))
            assert isinstance(bus.consumer, LogConsumer)
            assert seen == [2]
