"""Recorder: what a bus published and what its handlers received, with assertions that
say what was seen when they fail.

A ``Recorder`` attaches to a bus through its public seams only: an ``on_publish`` hook
(every event on its way to the handlers, with its sequence number and source) and a
middleware (every handler's outcome for every event, after retries). Attached first, its
middleware is the outermost, so it sees what the handlers returned after every other
middleware. Replays (``bus.replay``) go around middleware and hooks and are not recorded.

    recorder = Recorder().attach(bus)
    await bus.publish_async(OrderPlaced("A-1"))
    recorder.received(charge, OrderPlaced, count=1)
    recorder.published(OrderShipped, where=lambda e: e.order_id == "A-1")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from core.bus import EventBus
from core.events import Event
from core.hooks import PublishDetails
from core.results import HandlerOutcome, OutcomeStatus
from core.routing import handler_name

__all__ = ["Delivery", "Recorder"]

E = TypeVar("E", bound=Event)

_SHOWN = 20  # lines of a failure message's listing before "... and N more"
_WIDTH = 160  # characters of one event's rendering, at most
_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(Event))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One handler's outcome for one event (after all its attempts)."""

    event: Event
    outcome: HandlerOutcome[Any]

    @property
    def handler(self) -> str:
        return self.outcome.handler

    @property
    def status(self) -> OutcomeStatus:
        return self.outcome.status

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def attempts(self) -> int:
        return self.outcome.attempts

    @property
    def value(self) -> Any:
        return self.outcome.value

    @property
    def error(self) -> Exception | None:
        return self.outcome.error


class Recorder:
    """Captures the events a bus publishes (``publishes``) and each handler's outcome
    for each of them (``deliveries``), in the order they happened: a delivery is
    recorded when its event's dispatch finished, so a follow-up published inside a
    handler is delivered (and recorded) before the event that caused it."""

    def __init__(self) -> None:
        self.publishes: list[PublishDetails] = []
        self.deliveries: list[Delivery] = []
        self._buses: list[EventBus] = []
        self._hooks: dict[int, Callable[[PublishDetails], None]] = {}

    # -- attaching -------------------------------------------------------------------

    def attach(self, bus: EventBus) -> Recorder:
        """Record what ``bus`` publishes and delivers from now on; returns self."""
        if any(b is bus for b in self._buses):
            return self
        hook = self._hooks.get(id(bus))
        if hook is None or not any(h is hook for h in bus.hooks):
            hook = self._hooks[id(bus)] = self._hook_for(bus)
            bus.on_publish(hook)
        bus.add_middleware(self._middleware)
        self._buses.append(bus)
        return self

    def detach(self, bus: EventBus) -> None:
        """Stop recording ``bus`` (what was recorded stays)."""
        if not any(b is bus for b in self._buses):
            raise ValueError(f"this recorder is not attached to {bus!r}")
        self._buses = [b for b in self._buses if b is not bus]
        bus.remove_middleware(self._middleware)
        # A bus has no way to remove a hook: this bus's stays installed, ignoring it
        # until the recorder is attached again.

    def clear(self) -> None:
        """Forget what was recorded (the recorder stays attached)."""
        self.publishes.clear()
        self.deliveries.clear()

    def _hook_for(self, bus: EventBus) -> Callable[[PublishDetails], None]:
        def hook(details: PublishDetails) -> None:
            if any(b is bus for b in self._buses):
                self.publishes.append(details)

        return hook

    async def _middleware(
        self,
        event: Event,
        call_next: Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]],
    ) -> list[HandlerOutcome[Any]]:
        outcomes = await call_next(event)
        self.deliveries.extend(Delivery(event, outcome) for outcome in outcomes)
        return outcomes

    # -- queries ---------------------------------------------------------------------

    def events(self, event_type: type[E]) -> list[E]:
        """The published events that are instances of ``event_type``, in order."""
        return [d.event for d in self.publishes if isinstance(d.event, event_type)]

    def deliveries_to(self, handler: str | Callable[..., object]) -> list[Delivery]:
        """Every delivery to ``handler`` (a name or the subscribed callable)."""
        names = self._names(handler)
        return [d for d in self.deliveries if d.handler in names]

    # -- assertions ------------------------------------------------------------------

    def received(
        self,
        handler: str | Callable[..., object],
        event_type: type[E],
        *,
        count: int | None = None,
        where: Callable[[E], object] | None = None,
        status: OutcomeStatus | str | None = None,
    ) -> list[E]:
        """Assert that ``handler`` (its name, or the callable that was subscribed)
        received events of ``event_type`` (subclasses included): at least one, or exactly
        ``count``; only those for which ``where(event)`` is true and, with ``status``
        (``"ok"``, ``"failed"``, ``"timed_out"``...), that ended so. Returns those
        events. Fails with the list of every delivery seen."""
        __tracebackhide__ = True
        wanted = OutcomeStatus(status) if status is not None else None
        names = self._names(handler)
        of_type = [
            d for d in self.deliveries if d.handler in names and isinstance(d.event, event_type)
        ]
        matched = [
            d
            for d in of_type
            if (where is None or where(d.event))  # type: ignore[arg-type]
            and (wanted is None or d.status is wanted)
        ]
        if _count_ok(len(matched), count):
            return [d.event for d in matched]  # type: ignore[misc]
        label = " or ".join(repr(n) for n in sorted(names))
        what = event_type.__qualname__
        if where is not None:
            what += " matching where="
        if wanted is not None:
            what += f" ending {wanted.value}"
        lines = [
            f"expected handler {label} to receive {what} {_times(count)}, "
            f"but it received {_found(len(matched))}"
        ]
        if len(of_type) != len(matched):
            lines.append(
                f"({len(of_type) - len(matched)} other {event_type.__qualname__} "
                f"deliveries to it did not match)"
            )
        subscribed = sorted({s.name for bus in self._buses for s in bus.subscriptions})
        if self._buses and names.isdisjoint(subscribed):
            lines.append(
                f"(no handler {label} is subscribed on the recorded bus"
                f"{'es' if len(self._buses) > 1 else ''}; subscribed: "
                f"{', '.join(subscribed) or 'none'})"
            )
        lines.append(f"deliveries recorded ({len(self.deliveries)}):")
        lines += _listing(
            f"{'*' if d.handler in names else ' '} {d.handler} <- {_show(d.event)}: "
            + _outcome(d.outcome)
            for d in self.deliveries
        )
        raise AssertionError("\n".join(lines))

    def published(
        self,
        event_type: type[E],
        *,
        count: int | None = None,
        where: Callable[[E], object] | None = None,
    ) -> list[E]:
        """Assert that events of ``event_type`` (subclasses included) were published on
        an attached bus: at least one, or exactly ``count``, of those for which
        ``where(event)`` is true. Returns those events. Fails with the list of every
        published event seen."""
        __tracebackhide__ = True
        of_type = self.events(event_type)
        matched = [e for e in of_type if where is None or where(e)]
        if _count_ok(len(matched), count):
            return matched
        what = event_type.__qualname__ + (" matching where=" if where is not None else "")
        lines = [
            f"expected {what} to be published {_times(count)}, "
            f"but {_found(len(matched))} {'was' if len(matched) == 1 else 'were'}"
        ]
        if len(of_type) != len(matched):
            lines.append(
                f"({len(of_type) - len(matched)} other {event_type.__qualname__} "
                "events did not match)"
            )
        lines.append(f"published events recorded ({len(self.publishes)}):")
        lines += _listing(
            f"{'*' if isinstance(d.event, event_type) else ' '} {_show(d.event)}"
            + (f" seq={d.seq}" if d.seq is not None else "")
            + (f" [{d.source}]" if d.source != "live" else "")
            for d in self.publishes
        )
        raise AssertionError("\n".join(lines))

    def _names(self, handler: str | Callable[..., object]) -> set[str]:
        """The names ``handler`` is subscribed under on the attached buses (a wrapper
        made with functools.wraps counts as what it wraps), else its default name."""
        if isinstance(handler, str):
            return {handler}
        names = {
            s.name for bus in self._buses for s in bus.subscriptions if _wraps(s.handler, handler)
        }
        return names or {handler_name(handler)}

    def __repr__(self) -> str:
        return (
            f"Recorder(buses={len(self._buses)}, publishes={len(self.publishes)}, "
            f"deliveries={len(self.deliveries)})"
        )


def _wraps(candidate: object, target: object) -> bool:
    for _ in range(10):  # a chain of functools.wraps wrappers, not a cycle
        if candidate is target:
            return True
        candidate = getattr(candidate, "__wrapped__", None)
        if candidate is None:
            return False
    return False


def _count_ok(found: int, count: int | None) -> bool:
    return found > 0 if count is None else found == count


def _times(count: int | None) -> str:
    if count is None:
        return "at least once"
    return f"exactly {count} time{'s' if count != 1 else ''}"


def _found(n: int) -> str:
    return "none" if n == 0 else f"{n}"


def _outcome(outcome: HandlerOutcome[Any]) -> str:
    text = outcome.status.value
    if outcome.attempts != 1:
        text += f" after {outcome.attempts} attempts"
    if outcome.error is not None:
        text += f" ({type(outcome.error).__name__}: {outcome.error})"
    return text


def _show(event: Event) -> str:
    """The event's class and its own fields (not the id, time and causal ids every
    event has)."""
    own = ", ".join(
        f"{f.name}={getattr(event, f.name)!r}"
        for f in dataclasses.fields(event)
        if f.name not in _BASE_FIELDS
    )
    text = f"{type(event).__qualname__}({own})"
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _listing(lines: Iterable[str]) -> list[str]:
    shown = [f"  {line}" for line in lines]
    if not shown:
        return ["  (nothing)"]
    if len(shown) > _SHOWN:
        return [*shown[:_SHOWN], f"  ... and {len(shown) - _SHOWN} more"]
    return shown
