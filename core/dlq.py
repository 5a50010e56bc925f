"""DLQ: the one place dead letters are built.

A dead letter records a handler's final failure on one event (``for_failure``), or a
stored record no handler could be given because it does not decode (``for_undecodable``)
or fails its checksum (``for_corrupt``). The bus, the consumer, replay and re-drive all
build their entries here, so every entry carries the same facts: seq, event id, handler,
reason, error type, message, traceback, attempts, first and last failure time.

Each entry built is also one record on the ``pubsub.dlq`` logger (with the event's id
and type, the handler, the group and the seq as ``extra`` fields): a warning, except for
replay's entries (its report counts them) and a failing middleware's (the bus warned
once for the middleware itself), which are at info level.
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from .errors import ChecksumMismatchError
from .events import Event
from .results import Failure
from .store import DeadLetter, DeadLetterReason, StoredEvent

__all__ = [
    "DECODE_HANDLER",
    "MIDDLEWARE_HANDLER",
    "for_corrupt",
    "for_failure",
    "for_undecodable",
    "qualified_name",
]

DECODE_HANDLER = "<decode>"
"""The handler name of an entry for a record that could not be decoded."""
MIDDLEWARE_HANDLER = "<middleware>"
"""The handler name of an entry for an event whose middleware raised."""

log = logging.getLogger("pubsub.dlq")


def qualified_name(exc: BaseException) -> str:
    """``module.QualName`` of an exception's type, as entries record it."""
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


def for_failure(
    failure: Failure, event: Event, *, seq: int | None, group: str | None, source: str
) -> DeadLetter:
    """The entry of a handler's final failure on ``event``."""
    error = failure.error
    assert error is not None
    try:
        payload = event.to_dict()
    except Exception:  # an unencodable event still gets its dead letter
        payload = {"repr": repr(event)}
    letter = DeadLetter(
        event_id=event.id,
        event_type=event.event_type,
        handler=failure.handler,
        reason=failure.reason,
        error_type=qualified_name(error),
        message=str(error),
        traceback=failure.tb,
        attempts=failure.attempts,
        first_failure_at=failure.first_failure_at,
        last_failure_at=failure.last_failure_at,
        payload=payload,
        seq=seq,
        group=group,
        source=source,
    )
    _log(letter)
    return letter


def _log(letter: DeadLetter) -> None:
    """The entry's log record (see the module docstring)."""
    quiet = letter.source == "replay" or letter.handler == MIDDLEWARE_HANDLER
    level = logging.INFO if quiet else logging.WARNING
    if not log.isEnabledFor(level):
        return
    where = letter.event_type if letter.seq is None else f"{letter.event_type} seq {letter.seq}"
    log.log(
        level,
        "dead letter: %s gave up on %s (%s, %d attempt(s)): %s: %s",
        letter.handler,
        where,
        letter.reason.value,
        letter.attempts,
        letter.error_type.removeprefix("builtins."),
        letter.message,
        extra={
            "event_id": letter.event_id,
            "event_type": letter.event_type,
            "handler": letter.handler,
            "group": letter.group,
            "seq": letter.seq,
            "source": letter.source,
        },
    )


def for_undecodable(
    record: StoredEvent, exc: BaseException, *, group: str | None, source: str
) -> DeadLetter:
    """The entry of a stored record that could not be decoded (unknown type, a field
    that does not fit, a schema version newer than the code)."""
    try:
        payload = orjson.loads(record.payload)
        if not isinstance(payload, dict):
            payload = {"raw": payload}
    except orjson.JSONDecodeError:
        payload = {"raw": record.payload.decode("utf-8", "replace")}
    return _undeliverable(
        record.event_id, record.type_name, record.seq, exc, payload, group, source
    )


def for_corrupt(exc: ChecksumMismatchError, *, group: str | None, source: str) -> DeadLetter:
    """The entry of a record whose payload failed its checksum: its id and payload
    cannot be trusted, so the entry names the sequence number (nil id, no payload)."""
    return _undeliverable(UUID(int=0), exc.type_name, exc.seq, exc, {}, group, source)


def _undeliverable(
    event_id: UUID,
    event_type: str,
    seq: int,
    exc: BaseException,
    payload: dict[str, Any],
    group: str | None,
    source: str,
) -> DeadLetter:
    now = datetime.now(UTC)
    letter = DeadLetter(
        event_id=event_id,
        event_type=event_type,
        handler=DECODE_HANDLER,
        reason=DeadLetterReason.DECODE_ERROR,
        error_type=qualified_name(exc),
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        payload=payload,
        seq=seq,
        group=group,
        source=source,
    )
    _log(letter)
    return letter
