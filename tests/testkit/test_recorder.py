"""The recorder: what a bus published and what each handler received, read through
the bus's hook and middleware, with assertions that list what was seen when they fail."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from core import Event, EventBus, HandlerContext, HandlerOutcome, RetryPolicy
from core.store import EventStore
from plugins.testkit import Recorder, fail_times

from .conftest import UserProject


@dataclass(frozen=True, slots=True)
class Order(Event, type_name="tests.testkit.recorder.Order"):
    order_id: str


@dataclass(frozen=True, slots=True)
class BigOrder(Order, type_name="tests.testkit.recorder.BigOrder"):
    total: int = 1000


@dataclass(frozen=True, slots=True)
class Shipped(Event, type_name="tests.testkit.recorder.Shipped"):
    order_id: str


async def audit(event: Order) -> None:
    pass


async def ship(event: Order, ctx: HandlerContext[Order]) -> None:
    await ctx.publish(Shipped(event.order_id))


async def refuse(event: Order) -> None:
    raise ValueError(f"refused {event.order_id}")


class TestReceived:
    """recorder.received(handler, EventType, ...)."""

    async def test_counts_deliveries_by_callable_or_name(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """A handler given as the subscribed callable or by its name; subclasses of the
        event type count; the matching events are returned in order."""
        pubsub_bus.subscribe(Order, name="audit")(audit)
        a, b = Order("A-1"), BigOrder("B-2")
        await pubsub_bus.publish_async(a)
        await pubsub_bus.publish_async(b)
        assert pubsub_recorder.received(audit, Order, count=2) == [a, b]
        assert pubsub_recorder.received("audit", BigOrder) == [b]
        assert pubsub_recorder.received(audit, Order, where=lambda e: e.order_id == "A-1") == [a]
        assert pubsub_recorder.received(audit, Shipped, count=0) == []

    async def test_status_filter(self, pubsub_bus: EventBus, pubsub_recorder: Recorder) -> None:
        """status= keeps the deliveries that ended so (failed after its retries here)."""
        pubsub_bus.subscribe(Order, name="refuse", retry=RetryPolicy(2, base=0.5))(refuse)
        await pubsub_bus.publish_async(Order("A-1"))
        assert pubsub_recorder.received(refuse, Order, status="failed", count=1)
        assert pubsub_recorder.received(refuse, Order, status="ok", count=0) == []
        (delivery,) = pubsub_recorder.deliveries_to(refuse)
        assert (delivery.attempts, delivery.ok, type(delivery.error)) == (2, False, ValueError)

    async def test_wrapped_handler_counts_as_the_original(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """A handler subscribed through fail_times is found by the original function."""
        pubsub_bus.subscribe(Order, retry=3)(fail_times(1)(audit))
        await pubsub_bus.publish_async(Order("A-1"))
        (event,) = pubsub_recorder.received(audit, Order, status="ok")
        assert event.order_id == "A-1"
        assert pubsub_recorder.deliveries[0].handler.endswith("recorder.audit")

    async def test_failure_lists_every_delivery(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """The message says what was expected and found, then lists each delivery with
        its outcome, the asked-about handler's marked with '*'."""
        pubsub_bus.subscribe(Order, name="audit")(audit)
        pubsub_bus.subscribe(Order, name="refuse")(refuse)
        await pubsub_bus.publish_async(Order("A-1"))
        with pytest.raises(AssertionError) as failed:
            pubsub_recorder.received("refuse", Order, count=2)
        assert str(failed.value).splitlines() == [
            "expected handler 'refuse' to receive Order exactly 2 times, but it received 1",
            "deliveries recorded (2):",
            "    audit <- Order(order_id='A-1'): ok",
            "  * refuse <- Order(order_id='A-1'): failed (ValueError: refused A-1)",
        ]

    async def test_failure_says_how_many_did_not_match(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """Deliveries of the right type that where= or status= turned down are counted."""
        pubsub_bus.subscribe(Order, name="audit")(audit)
        await pubsub_bus.publish_async(Order("A-1"))
        await pubsub_bus.publish_async(BigOrder("B-2", total=5))
        with pytest.raises(AssertionError) as failed:
            pubsub_recorder.received(audit, Order, where=lambda e: e.order_id == "C-3")
        lines = str(failed.value).splitlines()
        assert lines[:3] == [
            "expected handler 'audit' to receive Order matching where= at least once, "
            "but it received none",
            "(2 other Order deliveries to it did not match)",
            "deliveries recorded (2):",
        ]
        assert lines[4] == "  * audit <- BigOrder(order_id='B-2', total=5): ok"

    async def test_failure_names_the_subscribed_handlers_when_none_matches(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """A handler name that is subscribed nowhere (a typo) is said so, with the
        names that are."""
        pubsub_bus.subscribe(Order, name="audit")(audit)
        pubsub_bus.subscribe(Order, name="refuse")(refuse)
        await pubsub_bus.publish_async(Order("A-1"))
        with pytest.raises(AssertionError) as failed:
            pubsub_recorder.received("adit", Order)
        assert str(failed.value).splitlines()[1] == (
            "(no handler 'adit' is subscribed on the recorded bus; subscribed: audit, refuse)"
        )

    async def test_status_and_nothing_recorded_in_the_message(
        self, pubsub_recorder: Recorder
    ) -> None:
        """The status asked for is in the message; an empty record says so."""
        with pytest.raises(AssertionError) as failed:
            pubsub_recorder.received("audit", Order, status="timed_out")
        assert str(failed.value).splitlines()[0] == (
            "expected handler 'audit' to receive Order ending timed_out at least once, "
            "but it received none"
        )
        assert str(failed.value).splitlines()[-2:] == ["deliveries recorded (0):", "  (nothing)"]

    async def test_long_listing_is_cut(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """Past 20 lines the listing says how many more there were."""
        pubsub_bus.subscribe(Order, name="audit")(audit)
        for n in range(25):
            await pubsub_bus.publish_async(Order(f"A-{n}"))
        with pytest.raises(AssertionError) as failed:
            pubsub_recorder.received(audit, Order, count=3)
        lines = str(failed.value).splitlines()
        assert lines[-1] == "  ... and 5 more"
        assert len(lines) == 2 + 20 + 1


class TestPublished:
    """recorder.published(EventType, ...) and what the hook records."""

    async def test_follow_ups_are_published_too(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """A handler's follow-up is a published event; the follow-up's delivery is
        recorded before the delivery of the event that caused it."""
        pubsub_bus.subscribe(Order, name="ship")(ship)
        pubsub_bus.subscribe(Shipped, name="audit_shipped")(lambda e: None)
        order = Order("A-1")
        await pubsub_bus.publish_async(order)
        (shipped,) = pubsub_recorder.published(Shipped, where=lambda e: e.order_id == "A-1")
        assert shipped.causation_id == order.id
        assert pubsub_recorder.events(Event) == [order, shipped]
        assert [d.handler for d in pubsub_recorder.deliveries] == ["audit_shipped", "ship"]

    async def test_failure_lists_every_published_event(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """The message lists the published events, those of the asked type marked."""
        pubsub_bus.subscribe(Order, name="ship")(ship)
        await pubsub_bus.publish_async(Order("A-1"))
        with pytest.raises(AssertionError) as failed:
            pubsub_recorder.published(Shipped, count=2)
        assert str(failed.value).splitlines() == [
            "expected Shipped to be published exactly 2 times, but 1 was",
            "published events recorded (2):",
            "    Order(order_id='A-1')",
            "  * Shipped(order_id='A-1')",
        ]

    async def test_failure_counts_the_events_where_turned_down(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """Published events of the type that where= turned down are counted, and long
        events are cut to one line."""
        await pubsub_bus.publish_async(Order("A-1"))
        await pubsub_bus.publish_async(Order("x" * 300))
        with pytest.raises(AssertionError) as failed:
            pubsub_recorder.published(Order, where=lambda e: e.order_id == "B-1", count=1)
        lines = str(failed.value).splitlines()
        assert lines[:2] == [
            "expected Order matching where= to be published exactly 1 time, but none were",
            "(2 other Order events did not match)",
        ]
        assert lines[-1].endswith("…")
        assert len(lines[-1]) == 4 + 160

    async def test_count_zero_fails_when_one_was_published(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """count=0 asserts that none was published."""
        await pubsub_bus.publish_async(Order("A-1"))
        assert pubsub_recorder.published(Shipped, count=0) == []
        with pytest.raises(AssertionError, match=r"^expected Order to be published exactly 0"):
            pubsub_recorder.published(Order, count=0)

    async def test_durable_bus_records_sequence_numbers(
        self, pubsub_sqlite_bus: EventBus, pubsub_store: EventStore
    ) -> None:
        """On a bus with a store, each publish is recorded with its log position."""
        recorder = Recorder().attach(pubsub_sqlite_bus)
        pubsub_sqlite_bus.subscribe(Order, name="ship")(ship)
        await pubsub_sqlite_bus.publish_async(Order("A-1"))
        assert [(d.seq, d.source, type(d.event)) for d in recorder.publishes] == [
            (1, "live", Order),
            (2, "live", Shipped),
        ]
        with pytest.raises(AssertionError, match=re.escape("Order(order_id='A-1') seq=1")):
            recorder.published(BigOrder)


class TestAttaching:
    """attach, detach, clear; the recorder is one middleware among others."""

    async def test_attach_twice_records_once_and_detach_stops(self, pubsub_make_bus: Any) -> None:
        """Attaching again is a no-op; after detach nothing more is recorded, and
        attaching again records again, once."""
        bus = await pubsub_make_bus()
        bus.subscribe(Order, name="audit")(audit)
        recorder = Recorder().attach(bus).attach(bus)
        await bus.publish_async(Order("A-1"))
        recorder.detach(bus)
        await bus.publish_async(Order("A-2"))
        recorder.attach(bus)
        await bus.publish_async(Order("A-3"))
        assert [e.order_id for e in recorder.events(Order)] == ["A-1", "A-3"]
        assert [d.event.order_id for d in recorder.deliveries] == ["A-1", "A-3"]  # type: ignore[attr-defined]
        recorder.clear()
        assert (recorder.publishes, recorder.deliveries) == ([], [])
        with pytest.raises(ValueError, match="not attached"):
            Recorder().detach(bus)

    async def test_one_recorder_on_two_buses(self, pubsub_make_bus: Any) -> None:
        """One recorder attached to two buses records both; detaching one leaves the
        other recorded."""
        first, second = await pubsub_make_bus(), await pubsub_make_bus()
        recorder = Recorder().attach(first).attach(second)
        await first.publish_async(Order("A-1"))
        await second.publish_async(Order("B-1"))
        recorder.detach(first)
        await first.publish_async(Order("A-2"))
        await second.publish_async(Order("B-2"))
        assert [e.order_id for e in recorder.events(Order)] == ["A-1", "B-1", "B-2"]

    async def test_short_circuiting_middleware_means_not_received(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """A middleware added after the recorder's that drops an event: published, but
        no handler received it."""

        async def drop(event: Event, call_next: Any) -> list[HandlerOutcome[Any]]:
            return [] if isinstance(event, BigOrder) else await call_next(event)

        pubsub_bus.add_middleware(drop)
        pubsub_bus.subscribe(Order, name="audit")(audit)
        await pubsub_bus.publish_async(BigOrder("B-1"))
        await pubsub_bus.publish_async(Order("A-1"))
        assert len(pubsub_recorder.published(Order)) == 2
        assert [e.order_id for e in pubsub_recorder.received(audit, Order)] == ["A-1"]


class TestInAUsersTest:
    """The failure as a user sees it in pytest's report."""

    def test_report_shows_the_message_at_the_users_line(self, project: UserProject) -> None:
        """The failing assertion points at the user's line, and the message lists what
        was delivered; the recorder's own frame is hidden."""
        project.tests(
            """
            import pytest
            from handlers import OrderPlaced, router

            @pytest.mark.asyncio
            async def test_notified(pubsub_run, pubsub_recorder):
                await pubsub_run(router, [OrderPlaced("A-1")])
                pubsub_recorder.received("shop.notify", OrderPlaced)
            """
        )
        result = project.run()
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                '>       pubsub_recorder.received("shop.notify", OrderPlaced)',
                "E       AssertionError: expected handler 'shop.notify' to receive "
                "OrderPlaced at least once, but it received none",
                "E       deliveries recorded (2):",
                "E         * shop.notify <- OrderShipped(order_id='A-1'): ok",
                "E           shop.ship <- OrderPlaced(order_id='A-1', total=0): ok",
            ]
        )
        assert "def received(" not in result.stdout.str()
