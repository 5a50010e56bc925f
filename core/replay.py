"""Replay and re-drive: dispatching stored events again, apart from the live consumer.

``replay`` sends a range of the log to the chosen handlers of a bus, in sequence order;
it never moves a checkpoint and never appends (failures are dead-lettered with
``source="replay"``). ``redrive`` sends one dead letter's event to that letter's handler
only and, on success, resolves the entry with a compare-and-set, so that two processes
re-driving it at once resolve it exactly once. Both deliver with ``redelivery=True``.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import AsyncIterable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .codec import decode
from .dlq import DECODE_HANDLER, MIDDLEWARE_HANDLER, for_failure, for_undecodable, qualified_name
from .errors import EventError, SubscriptionError
from .events import DispatchContext, Event
from .instrument import Delivery
from .results import Failure, HandlerOutcome, OutcomeStatus
from .store import NO_HEADERS, DeadLetter, DeadLetterStatus, StoredEvent

if TYPE_CHECKING:
    from .bus import EventBus
    from .dispatch import Route

__all__ = ["HandlerTally", "RedriveResult", "ReplayReport", "redrive", "replay"]

_OK = OutcomeStatus.OK


@dataclass(frozen=True, slots=True)
class HandlerTally:
    ok: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did: events dispatched, per-handler results, speed."""

    events: int
    decode_errors: int
    per_handler: dict[str, HandlerTally]
    duration: float
    rate: float
    dead_letters: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass(frozen=True, slots=True)
class RedriveResult:
    """What re-driving one dead letter did. ``outcome`` is set when the handler ran
    (also when another process resolved the entry first: ``already_resolved``)."""

    entry_id: int
    resolved: bool
    already_resolved: bool = False
    outcome: HandlerOutcome[Any] | None = None
    error: str | None = None


async def replay(
    bus: EventBus,
    records: AsyncIterable[StoredEvent],
    *,
    handlers: Collection[str] | None = None,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """See ``EventBus.replay``."""
    runners = bus._runners
    if handlers is not None:
        unknown = sorted(set(handlers) - set(runners))
        if unknown:
            raise SubscriptionError(
                f"no handler named {', '.join(map(repr, unknown))}; loaded: "
                f"{', '.join(sorted(runners)) or 'none'}"
            )
    wanted = None if handlers is None else frozenset(handlers)
    routes: dict[type, Route] = {}
    ok: dict[str, int] = {}
    failed: dict[str, int] = {}
    letters: list[DeadLetter] = []
    events = decode_errors = dead = 0
    first_seq = last_seq = None
    t0 = perf_counter()
    seconds_per_event = None if not rate else 1.0 / rate
    try:
        async for record in records:
            if first_seq is None:
                first_seq = record.seq
            last_seq = record.seq
            try:
                event = record.decode(bus.registry)
            except EventError as exc:
                decode_errors += 1
                letters.append(for_undecodable(record, exc, group=None, source="replay"))
            else:
                cls = event.__class__
                route = routes.get(cls)
                if route is None:
                    full = bus._route(cls)
                    route = routes[cls] = full if wanted is None else full.only(wanted)
                if route.runners:
                    instrument = bus._instrument
                    scope = (
                        None
                        if instrument is None
                        else bus._open_delivery(
                            instrument,
                            Delivery(event, record.headers, record.seq, None, "replay", True),
                        )
                    )
                    try:
                        outcomes = await route.dispatch(event, DispatchContext(event, 1, True))
                    finally:
                        if scope is not None and instrument is not None:
                            bus._close_delivery(instrument, scope)
                    for o in outcomes:
                        if o.status is _OK:
                            ok[o.handler] = ok.get(o.handler, 0) + 1
                        else:
                            failed[o.handler] = failed.get(o.handler, 0) + 1
                            if isinstance(o, Failure):
                                letters.append(
                                    for_failure(
                                        o, event, seq=record.seq, group=None, source="replay"
                                    )
                                )
            events += 1
            if len(letters) >= 100:
                dead += len(await bus.dead_letters.add_dead_letters(letters))
                letters = []
            if progress is not None and not events & 255:  # every 256 events: cheap
                progress(events)
            if seconds_per_event is not None:
                lag = t0 + events * seconds_per_event - perf_counter()
                if lag > 0:
                    await bus._clock.sleep(lag)
    except BaseException:
        # Cut short (Ctrl-C, a cancelled task): the failures seen so far are still
        # written, none is lost.
        if letters:
            with contextlib.suppress(Exception):
                await bus.dead_letters.add_dead_letters(letters)
        raise
    if letters:
        dead += len(await bus.dead_letters.add_dead_letters(letters))
    if progress is not None and events & 255:
        progress(events)
    duration = perf_counter() - t0
    names = runners if wanted is None else wanted
    per_handler = {
        name: HandlerTally(ok.get(name, 0), failed.get(name, 0)) for name in sorted(names)
    }
    return ReplayReport(
        events=events,
        decode_errors=decode_errors,
        per_handler=per_handler,
        duration=duration,
        rate=events / duration if duration > 0 else 0.0,
        dead_letters=dead,
        first_seq=first_seq,
        last_seq=last_seq,
    )


async def redrive(bus: EventBus, entry_id: int) -> RedriveResult:
    """See ``EventBus.redrive``."""
    queue = bus.dead_letters
    entry = await queue.get_dead_letter(entry_id)
    if entry.resolved_at is not None or entry.status is DeadLetterStatus.RESOLVED:
        return RedriveResult(entry_id, resolved=False, already_resolved=True)
    try:
        event, headers = await _event_of(bus, entry)
    except EventError as exc:
        await _failed_again(bus, entry_id, exc)
        return RedriveResult(entry_id, resolved=False, error=str(exc))
    instrument = bus._instrument
    scope = (
        None
        if instrument is None
        else bus._open_delivery(
            instrument, Delivery(event, headers, entry.seq, entry.group, "redrive", True)
        )
    )
    try:
        outcomes = await _redrive_dispatch(bus, entry, entry_id, event)
    finally:
        if scope is not None and instrument is not None:
            bus._close_delivery(instrument, scope)
    failures = [o for o in outcomes if o.status is not _OK]
    outcome = outcomes[0] if len(outcomes) == 1 else None
    if failures:
        error = failures[0].error or RuntimeError(failures[0].status.value)
        await _failed_again(bus, entry_id, error)
        return RedriveResult(entry_id, resolved=False, outcome=outcome, error=str(error))
    won = await queue.resolve_dead_letter(entry_id, f"redriven by {bus.holder}", datetime.now(UTC))
    return RedriveResult(entry_id, resolved=won, already_resolved=not won, outcome=outcome)


async def _redrive_dispatch(
    bus: EventBus, entry: DeadLetter, entry_id: int, event: Event
) -> list[HandlerOutcome[Any]]:
    """Dispatch a dead letter's event as a re-drive: to its handler only (to every
    handler when the letter is a decode or middleware failure)."""
    context = DispatchContext(event, 1, True)
    if entry.handler in (DECODE_HANDLER, MIDDLEWARE_HANDLER):
        return await bus._dispatch(event, context)
    if entry.handler not in bus._runners:
        raise SubscriptionError(
            f"dead letter {entry_id} belongs to handler {entry.handler!r}, which is not "
            "loaded: pass the app that defines it"
        )
    route = bus._route(event.__class__).only(frozenset((entry.handler,)))
    if not route.runners:
        raise SubscriptionError(
            f"dead letter {entry_id}: handler {entry.handler!r} is not subscribed to "
            f"{event.event_type!r} any more"
        )
    return await route.dispatch(event, context)


async def _event_of(bus: EventBus, entry: DeadLetter) -> tuple[Event, Mapping[str, str]]:
    """The dead letter's event (from the log when the store has it) and the headers
    stored with it."""
    store = bus.store
    if entry.seq is not None and store is not None:
        record = await store.get(entry.seq)
        if record is not None:
            return record.decode(bus.registry), record.headers
    return decode(entry.event_type, entry.payload, registry=bus.registry), NO_HEADERS


async def _failed_again(bus: EventBus, entry_id: int, error: BaseException) -> None:
    await bus.dead_letters.record_dead_letter_failure(
        entry_id,
        error_type=qualified_name(error),
        message=str(error),
        traceback="".join(traceback.format_exception(error)),
        at=datetime.now(UTC),
    )
