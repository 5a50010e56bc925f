"""Development mode: events checked at publish (an Event, a frozen dataclass) and
handler signatures checked at subscribe, with clear messages; off by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from core import Event, EventBus, EventError, Router, SubscriptionError


@dataclass(frozen=True, slots=True)
class Parcel(Event, type_name="tests.core.devmode.Parcel"):
    ref: str = ""


@dataclass(frozen=True, slots=True)
class Letter(Event, type_name="tests.core.devmode.Letter"):
    ref: str = ""


@dataclass(frozen=True, slots=True)
class Measured(Event, type_name="tests.core.devmode.Measured"):
    value: float = 0.0
    count: int = 0


@dataclass(frozen=True, slots=True)
class NotAnEvent:
    ref: str = ""


class Undecorated(Event, type_name="tests.core.devmode.Undecorated"):
    """An Event subclass that forgot @dataclass(frozen=True, slots=True)."""


async def takes_parcel(event: Parcel) -> None:
    pass


async def takes_event(event: Event) -> None:
    pass


async def takes_letter(event: Letter) -> None:
    pass


async def takes_nothing() -> None:
    pass


async def takes_three(event: Parcel, context: object, extra: int) -> None:
    pass


async def takes_keyword(event: Parcel, *, extra: int) -> None:
    pass


async def takes_optional(event: Parcel, extra: int = 0, *, flag: bool = False) -> None:
    pass


class ParcelHandler:
    async def __call__(self, event: Parcel) -> None:
        pass


class TestEventChecks:
    @pytest.mark.parametrize(
        ("event", "message"),
        [
            pytest.param(NotAnEvent(), "is not an Event", id="not-an-event"),
            pytest.param({"ref": "x"}, "is not an Event", id="a-dict"),
            pytest.param(Undecorated(), "frozen", id="undecorated-subclass"),
            pytest.param(Measured(value=float("nan")), "value", id="nan-without-a-store"),
            pytest.param(Measured(count=2**64), "count", id="int-beyond-64-bits"),
        ],
    )
    async def test_bad_events_are_refused_at_publish(self, event: Any, message: str) -> None:
        """Publishing something that is not a frozen Event dataclass raises EventError."""
        async with EventBus(dev_mode=True) as bus:
            bus.subscribe(Event, name="all")(takes_event)
            with pytest.raises(EventError, match=message):
                await bus.publish_async(event)

    async def test_good_events_pass(self) -> None:
        """A proper frozen Event dataclass is published normally in dev mode."""
        async with EventBus(dev_mode=True) as bus:
            bus.subscribe(Parcel, name="p")(takes_parcel)
            assert (await bus.publish_async(Parcel("x"))).ok

    async def test_off_by_default(self) -> None:
        """Without dev_mode, signatures are not checked at subscribe."""
        async with EventBus() as bus:
            bus.subscribe(Parcel, name="wrong")(takes_letter)
            assert [s.name for s in bus.subscriptions] == ["wrong"]


class TestSignatureChecks:
    @pytest.mark.parametrize(
        ("handler", "message"),
        [
            pytest.param(
                takes_nothing, "the event as its one positional parameter", id="no-parameter"
            ),
            pytest.param(
                takes_three, "the event as its one positional parameter", id="three-parameters"
            ),
            pytest.param(
                takes_keyword, "the event as its one positional parameter", id="required-kw"
            ),
            pytest.param(takes_letter, "takes Letter but is subscribed to Parcel", id="wrong-type"),
        ],
    )
    async def test_bad_handlers_are_refused_at_subscribe(self, handler: Any, message: str) -> None:
        """A handler whose signature does not fit is refused with a clear message."""
        async with EventBus(dev_mode=True) as bus:
            with pytest.raises(SubscriptionError, match=message):
                bus.subscribe(Parcel, name="bad")(handler)
            router = Router()
            router.add(Parcel, handler, name="bad")
            with pytest.raises(SubscriptionError, match="'bad'"):
                bus.include(router)
            assert bus.subscriptions == []

    @pytest.mark.parametrize(
        "handler",
        [
            pytest.param(takes_parcel, id="exact"),
            pytest.param(takes_event, id="base-annotation"),
            pytest.param(takes_optional, id="optional-extras"),
            pytest.param(ParcelHandler(), id="callable-object"),
            pytest.param(lambda e: None, id="unannotated-lambda"),
        ],
    )
    async def test_fitting_handlers_are_accepted(self, handler: Any) -> None:
        """Handlers taking the event type, a base of it, or no annotation are accepted."""
        async with EventBus(dev_mode=True) as bus:
            bus.subscribe(Parcel, name="ok")(handler)
            assert (await bus.publish_async(Parcel())).ok
