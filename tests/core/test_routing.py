"""Routing: matching by inheritance through ``__mro__``, the per-type cache and its
invalidation, routers and subscriptions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core import (
    Event,
    EventBus,
    HandlerPolicy,
    RetryPolicy,
    Router,
    Subscription,
    SubscriptionError,
)


@dataclass(frozen=True, slots=True)
class Base(Event, type_name="tests.core.routing.Base"):
    n: int = 0


@dataclass(frozen=True, slots=True)
class Derived(Base, type_name="tests.core.routing.Derived"):
    extra: str = ""


@dataclass(frozen=True, slots=True)
class Unrelated(Event, type_name="tests.core.routing.Unrelated"):
    pass


class Recorder:
    """Collects (handler, event type) pairs from several named handlers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def make(self, label: str):  # type: ignore[no-untyped-def]
        async def handler(event: Event) -> None:
            self.seen.append((label, type(event).__name__))

        return handler


class TestInheritance:
    async def test_base_handler_receives_subclass(self) -> None:
        """A handler on Base receives Derived events."""
        rec = Recorder()
        async with EventBus() as bus:
            bus.subscribe(Base, name="base")(rec.make("base"))
            await bus.publish_async(Derived())
        assert rec.seen == [("base", "Derived")]

    async def test_event_handler_receives_everything(self) -> None:
        """A handler on Event receives every event type."""
        rec = Recorder()
        async with EventBus() as bus:
            bus.subscribe(Event, name="all")(rec.make("all"))
            await bus.publish_async(Base())
            await bus.publish_async(Derived())
            await bus.publish_async(Unrelated())
        assert [t for _, t in rec.seen] == ["Base", "Derived", "Unrelated"]

    async def test_subclass_handler_does_not_receive_base(self) -> None:
        """A handler on Derived receives neither Base nor unrelated events."""
        rec = Recorder()
        async with EventBus() as bus:
            bus.subscribe(Derived, name="derived")(rec.make("derived"))
            result = await bus.publish_async(Base())
            await bus.publish_async(Unrelated())
        assert rec.seen == []
        assert len(result) == 0

    async def test_all_matching_handlers_in_subscription_order(self) -> None:
        """Every matching handler runs, and outcomes follow subscription order."""
        rec = Recorder()
        async with EventBus() as bus:
            bus.subscribe(Derived, name="d")(rec.make("d"))
            bus.subscribe(Event, name="e")(rec.make("e"))
            bus.subscribe(Base, name="b")(rec.make("b"))
            bus.subscribe(Unrelated, name="u")(rec.make("u"))
            result = await bus.publish_async(Derived())
        assert [o.handler for o in result] == ["d", "e", "b"]
        assert bus.handlers_for(Derived) == ["d", "e", "b"]
        assert bus.handlers_for(Base) == ["e", "b"]


class TestRouteCache:
    async def test_later_subscription_is_seen(self) -> None:
        """A subscription added after a type was routed (and cached) receives it."""
        rec = Recorder()
        async with EventBus() as bus:
            bus.subscribe(Base, name="first")(rec.make("first"))
            await bus.publish_async(Derived())
            bus.subscribe(Base, name="second")(rec.make("second"))
            await bus.publish_async(Derived())
        assert rec.seen == [("first", "Derived"), ("first", "Derived"), ("second", "Derived")]

    async def test_subscription_to_a_new_base_is_seen(self) -> None:
        """A later subscription on a base class reaches an already-routed subclass."""
        rec = Recorder()
        async with EventBus() as bus:
            await bus.publish_async(Derived())
            bus.subscribe(Event, name="all")(rec.make("all"))
            await bus.publish_async(Derived())
        assert rec.seen == [("all", "Derived")]

    @pytest.mark.parametrize(
        "by", [pytest.param("name", id="by-name"), pytest.param("handler", id="by-handler")]
    )
    async def test_unsubscribe_is_seen(self, by: str) -> None:
        """After unsubscribe, an already-routed type no longer reaches the handler."""
        rec = Recorder()
        gone = rec.make("gone")
        async with EventBus() as bus:
            bus.subscribe(Base, name="gone")(gone)
            bus.subscribe(Base, name="kept")(rec.make("kept"))
            await bus.publish_async(Base())
            bus.unsubscribe("gone" if by == "name" else gone)
            result = await bus.publish_async(Base())
        assert [o.handler for o in result] == ["kept"]
        assert rec.seen == [("gone", "Base"), ("kept", "Base"), ("kept", "Base")]

    async def test_unsubscribe_unknown_is_an_error(self) -> None:
        """Unsubscribing a handler that is not subscribed raises SubscriptionError."""
        async with EventBus() as bus:
            with pytest.raises(SubscriptionError, match="nope"):
                bus.unsubscribe("nope")


class TestRouter:
    async def test_router_decorator_and_include(self) -> None:
        """Handlers declared on a Router run once the router is included in a bus."""
        router = Router(name="orders")
        seen: list[int] = []

        @router.subscribe(Base)
        async def on_base(event: Base) -> None:
            seen.append(event.n)

        assert on_base is not None  # the decorator returns the handler
        async with EventBus() as bus:
            bus.include(router)
            await bus.publish_async(Base(7))
        assert seen == [7]

    def test_add_returns_a_typed_subscription(self) -> None:
        """Router.add returns a Subscription with the type, default name and policy."""

        def on_base(event: Base) -> None:
            pass

        sub = Router().add(Base, on_base, retry=3, timeout=2.0)
        assert isinstance(sub, Subscription)
        assert sub.event_type is Base
        assert sub.name.endswith("test_add_returns_a_typed_subscription.<locals>.on_base")
        assert sub.policy == HandlerPolicy(timeout=2.0, retry=RetryPolicy(max_attempts=3))
        assert sub.is_async is False

    def test_duplicate_names_are_refused_by_a_router(self) -> None:
        """Two handlers with one name on one router raise SubscriptionError."""
        router = Router()
        router.add(Base, lambda e: None, name="same")
        with pytest.raises(SubscriptionError, match="'same'"):
            router.add(Base, lambda e: None, name="same")

    async def test_duplicate_names_are_refused_by_a_bus(self) -> None:
        """Including a router whose handler name the bus already holds raises."""
        async with EventBus() as bus:
            bus.subscribe(Base, name="same")(lambda e: None)
            router = Router()
            router.add(Base, lambda e: None, name="same")
            with pytest.raises(SubscriptionError, match="'same'"):
                bus.include(router)
            assert [s.name for s in bus.subscriptions] == ["same"]

    @pytest.mark.parametrize(
        ("event_type", "handler", "message"),
        [
            pytest.param(int, lambda e: None, "Event subclass", id="not-an-event-type"),
            pytest.param(Base, "not callable", "callable", id="not-callable"),
        ],
    )
    def test_bad_subscriptions_are_refused(
        self, event_type: object, handler: object, message: str
    ) -> None:
        """Subscribing to a non-Event type or a non-callable handler raises at once."""
        with pytest.raises(SubscriptionError, match=message):
            Router().add(event_type, handler)  # type: ignore[arg-type]
