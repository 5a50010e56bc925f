"""Store: the protocols of the durable event log and the dead-letter queue, and the
records they hand back.

The protocols speak of sequence numbers, consumer groups, leases and snapshots, never of
tables or pragmas, so that a distributed engine can implement them later. ``memory``
holds the reference implementation; ``plugins.sqlite`` the embedded default.

Promises every implementation keeps (the store contract suite checks them):

* ``append`` assigns global, gap-free, contiguous sequence numbers inside the write and
  returns only after the write is durable (as durable as the store is configured).
* An event id is unique: appending it again returns the original sequence number with
  ``duplicate=True`` and appends nothing.
* ``appended_at`` never decreases along the sequence; ``since``/``until`` select by it.
* Headers given to ``append`` (string to string, such as a trace context) come back on
  the event's record exactly; an event appended without them reads back ``NO_HEADERS``.
* Reads stream in batches in sequence order and verify each payload's checksum; a
  mismatch raises ``ChecksumMismatchError`` for that sequence number only.
* ``commit_progress`` moves a group's checkpoint and records dead letters atomically;
  given the committer's lease it first checks, in the same write, that the lease is
  still that holder's and alive (a fenced commit: a stalled worker cannot commit).
* ``resolve_dead_letter`` is a compare-and-set: it returns True exactly once per entry.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from .codec import decode
from .errors import EventDecodeError, EventDefinitionError, UnknownEventTypeError
from .events import Event, EventRegistry, default_registry

__all__ = [
    "NO_HEADERS",
    "AppendResult",
    "Appender",
    "AtomicAppend",
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetterReason",
    "DeadLetterStatus",
    "EventStore",
    "GroupInfo",
    "Lease",
    "SelfCheckingStore",
    "Snapshot",
    "StoreCapability",
    "StoreCheck",
    "StoredEvent",
    "at_least",
    "check_headers",
    "check_read_args",
    "int64",
    "store_capabilities",
]


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# The holder a fenced commit's GroupLockedError names when the group has no lease at
# all (it was released, or never taken).
NO_HOLDER = "nobody"


def int64(name: str, value: int) -> int:
    """``value`` if a store can keep it (a signed 64-bit integer, as SQLite does), else
    a one-line ValueError naming the argument."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"{name} must be a 64-bit integer, from {INT64_MIN} to {INT64_MAX} "
            f"(got a {value.bit_length()}-bit {'negative ' if value < 0 else ''}integer)"
        )
    return value


def at_least(name: str, value: int, minimum: int) -> int:
    """``value`` if it is a 64-bit integer of at least ``minimum``, else a one-line
    ValueError naming the argument."""
    int64(name, value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum} (got {value})")
    return value


NO_HEADERS: Mapping[str, str] = MappingProxyType({})
"""The headers of an event stored without any (one shared, immutable, empty mapping)."""


def check_headers(
    headers: Sequence[Mapping[str, str] | None] | None, count: int
) -> list[Mapping[str, str] | None] | None:
    """The ``headers`` argument of ``EventStore.append`` for ``count`` events, checked the
    same way by every store: one entry per event (None, or an empty mapping, for none),
    string keys and values only. None when no event has any, which is what a store writes
    without cost; else a list in which each event without headers is None. A one-line
    ValueError names what is wrong."""
    if headers is None:
        return None
    if len(headers) != count:
        raise ValueError(f"headers has {len(headers)} entries for {count} event(s): give one each")
    out: list[Mapping[str, str] | None] = []
    seen = False
    for i, entry in enumerate(headers):
        if not entry:
            out.append(None)
            continue
        for key, value in entry.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(
                    f"headers[{i}] must map strings to strings (got {key!r}: {value!r})"
                )
        out.append(MappingProxyType(dict(entry)))
        seen = True
    return out if seen else None


def check_read_args(from_seq: int, to_seq: int | None, limit: int | None, batch_size: int) -> None:
    """The argument checks of ``EventStore.read`` that every store applies, so that a
    negative limit (SQLite's "no limit") or a zero batch means the same everywhere:
    an error."""
    int64("from_seq", from_seq)
    if to_seq is not None:
        int64("to_seq", to_seq)
    if limit is not None:
        at_least("limit", limit, 0)
    at_least("batch_size", batch_size, 1)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an appended event landed; ``duplicate`` when its id was already stored."""

    seq: int
    event_id: UUID
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One record of the log: the event's payload plus what the store knows of it."""

    seq: int
    event_id: UUID
    type_name: str
    version: int
    created_at: datetime
    appended_at: datetime
    payload: bytes
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS, hash=False)
    """What was appended with the event (``append(..., headers=...)``), such as a W3C
    trace context: ``NO_HEADERS`` when nothing was. Not part of the record's hash."""

    def decode(self, registry: EventRegistry = default_registry) -> Event:
        """The event object. An error decoding it (EventDecodeError, UnknownEventTypeError,
        EventDefinitionError for a class the codec cannot read) carries this record's
        ``seq`` and names it in its message."""
        try:
            return decode(self.type_name, self.payload, version=self.version, registry=registry)
        except EventDecodeError as exc:
            raise EventDecodeError(exc.type_name, exc.field, exc.problem, seq=self.seq) from None
        except UnknownEventTypeError as exc:
            raise UnknownEventTypeError(exc.type_name, exc.known, seq=self.seq) from None
        except EventDefinitionError as exc:
            raise EventDefinitionError(exc.cls_name, exc.problem, seq=self.seq) from None


class DeadLetterReason(enum.StrEnum):
    """Why a handler gave up on an event."""

    EXHAUSTED = "exhausted"  # the last allowed attempt raised
    TIMEOUT = "timeout"  # the last allowed attempt timed out
    BREAKER_OPEN = "breaker_open"  # the handler's circuit breaker refused the call
    DECODE_ERROR = "decode_error"  # the stored event could not be decoded
    NOT_RETRYABLE = "not_retryable"  # the exception is marked as never retried


class DeadLetterStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A handler's final failure on one event. ``id`` is assigned by the queue; ``seq`` is
    None when the bus has no store. ``source`` says where it happened (``live``,
    ``replay``, ``redrive``)."""

    event_id: UUID
    event_type: str
    handler: str
    reason: DeadLetterReason
    error_type: str
    message: str
    traceback: str
    attempts: int
    first_failure_at: datetime
    last_failure_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None
    group: str | None = None
    source: str = "live"
    id: int | None = None
    status: DeadLetterStatus = DeadLetterStatus.OPEN
    resolved_at: datetime | None = None
    resolution: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A projection's state saved at a log position."""

    id: int
    name: str
    seq: int
    state: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """The right of one live consumer to process a group. ``previous_holder`` names
    the consumer whose lease this one took over without it being released (that
    consumer crashed or stalled past its TTL): events past the checkpoint may already
    have reached its handlers, so they are delivered as redeliveries."""

    group: str
    holder: str
    expires_at: float  # wall-clock seconds since the epoch
    previous_holder: str | None = None


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group's position and who holds it."""

    group: str
    checkpoint: int
    lag: int
    holder: str | None = None
    lease_expires_at: float | None = None


@runtime_checkable
class DeadLetterQueue(Protocol):
    """Where handlers' final failures are kept until someone re-drives or purges them."""

    async def add_dead_letters(self, entries: Sequence[DeadLetter]) -> list[int]:
        """Store entries (their ``id`` is ignored) and return the assigned ids."""
        ...

    async def list_dead_letters(
        self,
        *,
        handler: str | None = None,
        event_type: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.OPEN,
        limit: int | None = None,
    ) -> list[DeadLetter]: ...

    async def get_dead_letter(self, entry_id: int) -> DeadLetter:
        """The entry; DeadLetterNotFoundError if there is none."""
        ...

    async def resolve_dead_letter(self, entry_id: int, resolution: str, at: datetime) -> bool:
        """Mark an open entry resolved; False if it was already resolved (compare-and-set)."""
        ...

    async def record_dead_letter_failure(
        self, entry_id: int, *, error_type: str, message: str, traceback: str, at: datetime
    ) -> None:
        """A re-drive failed again: bump attempts, update the error and last failure."""
        ...

    async def purge_dead_letters(self, *, resolved_only: bool = False) -> int:
        """Delete entries (all, or only resolved ones); returns how many."""
        ...

    async def count_dead_letters(
        self, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
    ) -> int: ...


@runtime_checkable
class EventStore(DeadLetterQueue, Protocol):
    """A durable, totally ordered event log with consumer groups and snapshots."""

    @property
    def url(self) -> str:
        """Where the store lives, without credentials."""
        ...

    @property
    def durability(self) -> str:
        """A short sentence: what an event whose append returned survives."""
        ...

    async def append(
        self,
        events: Sequence[Event],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[AppendResult]:
        """Append events durably, in order, with contiguous sequence numbers.
        ``headers[i]`` (string to string; None for none) is stored with ``events[i]`` and
        read back as that record's ``headers`` (``check_headers`` checks the argument).
        A duplicate keeps the headers it was first stored with."""
        ...

    def read(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[StoredEvent]:
        """Stream records in sequence order, batch by batch; bounds are inclusive."""
        ...

    async def get(self, seq: int) -> StoredEvent | None: ...

    async def get_by_id(self, event_id: UUID) -> StoredEvent | None: ...

    async def last_seq(self) -> int:
        """The highest sequence number, 0 for an empty log."""
        ...

    async def count(self, *, types: Sequence[str] | None = None) -> int: ...

    async def count_by_type(self) -> dict[str, int]: ...

    async def children(self, event_id: UUID) -> list[StoredEvent]:
        """Records whose causation id is ``event_id`` (the events it caused)."""
        ...

    async def load_checkpoint(self, group: str) -> int:
        """The last sequence number the group has finished (0 if none)."""
        ...

    async def commit_progress(
        self,
        group: str,
        seq: int,
        dead_letters: Sequence[DeadLetter] = (),
        *,
        lease: Lease | None = None,
    ) -> None:
        """Atomically move the group's checkpoint to ``seq`` (never backwards) and add
        the dead letters of the events it passes.

        With ``lease`` the commit is fenced: inside the same write, the store checks
        that the group's lease is still held by ``lease.holder`` and has not expired by
        the store's own clock; otherwise it raises ``GroupLockedError`` (naming the
        current holder, ``"nobody"`` when the lease was released; ``expires_in <= 0``
        when it lapsed) and changes nothing."""
        ...

    async def groups(self) -> list[GroupInfo]: ...

    async def acquire_lease(self, group: str, holder: str, ttl: float) -> Lease:
        """Take the group's lease; GroupLockedError while another holder's is alive."""
        ...

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease: ...

    async def release_lease(self, lease: Lease) -> None: ...

    async def save_snapshot(self, name: str, seq: int, state: Mapping[str, Any]) -> Snapshot: ...

    async def latest_snapshot(self, name: str) -> Snapshot | None: ...

    async def list_snapshots(self, name: str | None = None) -> list[Snapshot]: ...

    async def load_snapshot(self, snapshot_id: int) -> Snapshot | None: ...

    async def aclose(self) -> None: ...


# -- what a store declares about itself (optional; additive to the protocol) ----------


class StoreCapability(enum.StrEnum):
    """A promise of the protocol that not every store can keep. A store lists the ones it
    keeps in a ``capabilities`` attribute (a frozenset); one that declares nothing keeps
    them all (memory, SQLite). Tests and commands gate on these, never on a backend's
    name."""

    DEDUP_FOREVER = "dedup_forever"  # an id is a duplicate forever (else: within a window)
    ATOMIC_PROGRESS = "atomic_progress"  # checkpoint + dead letters in one write
    LEASES = "leases"  # groups on store checkpoints and leases (one worker per group)
    ID_INDEX = "id_index"  # get_by_id is an index lookup (else: a scan of the log)
    SERVER_TTL = "server_ttl"  # the server expires records by a TTL


# What a store that declares nothing is taken to keep: the whole protocol of this module.
FULL_CONTRACT = frozenset(
    {
        StoreCapability.DEDUP_FOREVER,
        StoreCapability.ATOMIC_PROGRESS,
        StoreCapability.LEASES,
        StoreCapability.ID_INDEX,
    }
)


def store_capabilities(store: object) -> frozenset[StoreCapability]:
    """The capabilities ``store`` declares (``FULL_CONTRACT`` when it declares none)."""
    declared = getattr(store, "capabilities", None)
    if declared is None:
        return FULL_CONTRACT
    return frozenset(StoreCapability(c) for c in declared)


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """One result of a store's own checks (``pubsub check`` shows each as a row).
    ``warning`` marks a finding that does not make the store unhealthy."""

    name: str
    ok: bool
    detail: str
    warning: bool = False


class Appender(Protocol):
    """What appends events: an ``EventStore``, or the appender of an atomic batch."""

    async def append(
        self,
        events: Sequence[Event],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[AppendResult]: ...


@runtime_checkable
class AtomicAppend(Protocol):
    """A store that can append in parts that commit together:
    ``async with store.appending() as batch: await batch.append(part)`` stores every
    part when the block ends, or none if it raises (``pubsub publish --file`` of a file
    larger than it reads at once). A store without it appends each part on its own."""

    def appending(self) -> AbstractAsyncContextManager[Appender]: ...


@runtime_checkable
class SelfCheckingStore(Protocol):
    """A store that can check itself beyond what the protocol reads (its engine's
    version, the configuration its server really applied, its durability)."""

    async def self_checks(self) -> list[StoreCheck]: ...
