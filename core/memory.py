"""Memory: the in-memory event store and dead-letter queue.

The reference implementation of the ``EventStore`` protocol: the store contract suite
runs against it and against every durable store, so it keeps the same promises (gap-free
sequence, duplicate ids, checkpoint never backwards, compare-and-set resolution) except
surviving the process. ``pubsub bench --store memory`` and tests use it.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from .codec import encode
from .errors import DeadLetterNotFoundError, GroupLockedError
from .events import Event
from .store import (
    NO_HEADERS,
    NO_HOLDER,
    AppendResult,
    DeadLetter,
    DeadLetterStatus,
    GroupInfo,
    Lease,
    Snapshot,
    StoredEvent,
    at_least,
    check_headers,
    check_read_args,
    int64,
)

__all__ = ["MemoryDeadLetterQueue", "MemoryEventStore", "open_memory_store"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryDeadLetterQueue:
    """Dead letters kept in a dict; what a bus without a store uses."""

    def __init__(self) -> None:
        self._entries: dict[int, DeadLetter] = {}
        self._next_id = 1

    def _add(self, entries: Sequence[DeadLetter]) -> list[int]:
        ids = []
        for entry in entries:
            entry_id = self._next_id
            self._next_id += 1
            self._entries[entry_id] = dataclasses.replace(entry, id=entry_id)
            ids.append(entry_id)
        return ids

    async def add_dead_letters(self, entries: Sequence[DeadLetter]) -> list[int]:
        return self._add(entries)

    async def list_dead_letters(
        self,
        *,
        handler: str | None = None,
        event_type: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.OPEN,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        out = [
            e
            for e in self._entries.values()
            if (handler is None or e.handler == handler)
            and (event_type is None or e.event_type == event_type)
            and (status is None or e.status == status)
        ]
        return out if limit is None else out[: at_least("limit", limit, 0)]

    async def get_dead_letter(self, entry_id: int) -> DeadLetter:
        try:
            return self._entries[entry_id]
        except KeyError:
            raise DeadLetterNotFoundError(entry_id) from None

    async def resolve_dead_letter(self, entry_id: int, resolution: str, at: datetime) -> bool:
        entry = await self.get_dead_letter(entry_id)
        if entry.status is DeadLetterStatus.RESOLVED:
            return False
        self._entries[entry_id] = dataclasses.replace(
            entry, status=DeadLetterStatus.RESOLVED, resolved_at=at, resolution=resolution
        )
        return True

    async def record_dead_letter_failure(
        self, entry_id: int, *, error_type: str, message: str, traceback: str, at: datetime
    ) -> None:
        entry = await self.get_dead_letter(entry_id)
        self._entries[entry_id] = dataclasses.replace(
            entry,
            attempts=entry.attempts + 1,
            error_type=error_type,
            message=message,
            traceback=traceback,
            last_failure_at=at,
        )

    async def purge_dead_letters(self, *, resolved_only: bool = False) -> int:
        doomed = [
            i
            for i, e in self._entries.items()
            if not resolved_only or e.status is DeadLetterStatus.RESOLVED
        ]
        for i in doomed:
            del self._entries[i]
        return len(doomed)

    async def count_dead_letters(
        self, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
    ) -> int:
        return sum(1 for e in self._entries.values() if status is None or e.status == status)


class MemoryEventStore(MemoryDeadLetterQueue):
    """An event log in lists and dicts: every promise of a store but durability."""

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._records: list[StoredEvent] = []
        self._by_id: dict[UUID, int] = {}
        self._appended: list[datetime] = []
        self._checkpoints: dict[str, int] = {}
        self._leases: dict[str, Lease] = {}
        self._snapshots: list[Snapshot] = []
        self._wall = wall_clock

    @property
    def url(self) -> str:
        return "memory://"

    @property
    def durability(self) -> str:
        return "memory only: nothing survives the process"

    async def append(
        self,
        events: Sequence[Event],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[AppendResult]:
        payloads = [encode(e) for e in events]  # refuse the whole batch before any write
        extra = check_headers(headers, len(events))
        now = _utcnow()
        if self._appended and now < self._appended[-1]:
            now = self._appended[-1]
        results: list[AppendResult] = []
        pending: dict[UUID, int] = {}
        for i, (event, payload) in enumerate(zip(events, payloads, strict=True)):
            known = self._by_id.get(event.id, pending.get(event.id))
            if known is not None:
                results.append(AppendResult(known, event.id, duplicate=True))
                continue
            seq = len(self._records) + 1
            self._records.append(
                StoredEvent(
                    seq=seq,
                    event_id=event.id,
                    type_name=event.event_type,
                    version=event.event_version,
                    created_at=event.created_at,
                    appended_at=now,
                    payload=payload,
                    correlation_id=event.correlation_id,
                    causation_id=event.causation_id,
                    headers=NO_HEADERS if extra is None else extra[i] or NO_HEADERS,
                )
            )
            self._appended.append(now)
            pending[event.id] = seq
            self._by_id[event.id] = seq
            results.append(AppendResult(seq, event.id))
        return results

    async def read(
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
        check_read_args(from_seq, to_seq, limit, batch_size)
        start = max(from_seq, 1) - 1
        if since is not None:
            start = max(start, bisect.bisect_left(self._appended, since))
        wanted = None if types is None else frozenset(types)
        emitted = 0
        i = start
        while i < len(self._records):
            record = self._records[i]
            i += 1
            if to_seq is not None and record.seq > to_seq:
                return
            if until is not None and record.appended_at > until:
                return
            if wanted is not None and record.type_name not in wanted:
                continue
            if limit is not None and emitted >= limit:
                return  # checked before yielding: limit=0 yields nothing
            yield record
            emitted += 1

    async def get(self, seq: int) -> StoredEvent | None:
        int64("seq", seq)
        return self._records[seq - 1] if 1 <= seq <= len(self._records) else None

    async def get_by_id(self, event_id: UUID) -> StoredEvent | None:
        seq = self._by_id.get(event_id)
        return None if seq is None else self._records[seq - 1]

    async def last_seq(self) -> int:
        return len(self._records)

    async def count(self, *, types: Sequence[str] | None = None) -> int:
        if types is None:
            return len(self._records)
        wanted = frozenset(types)
        return sum(1 for r in self._records if r.type_name in wanted)

    async def count_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._records:
            counts[r.type_name] = counts.get(r.type_name, 0) + 1
        return counts

    async def children(self, event_id: UUID) -> list[StoredEvent]:
        return [r for r in self._records if r.causation_id == event_id]

    async def load_checkpoint(self, group: str) -> int:
        return self._checkpoints.get(group, 0)

    async def commit_progress(
        self,
        group: str,
        seq: int,
        dead_letters: Sequence[DeadLetter] = (),
        *,
        lease: Lease | None = None,
    ) -> None:
        int64("seq", seq)
        if lease is not None:
            now = self._wall()
            current = self._leases.get(group)
            if current is None:
                raise GroupLockedError(group, NO_HOLDER, 0.0)
            if current.holder != lease.holder or current.expires_at <= now:
                raise GroupLockedError(group, current.holder, current.expires_at - now)
        self._add(dead_letters)
        if seq > self._checkpoints.get(group, 0):
            self._checkpoints[group] = seq

    async def groups(self) -> list[GroupInfo]:
        last = len(self._records)
        names = sorted(set(self._checkpoints) | set(self._leases))
        out = []
        for name in names:
            cp = self._checkpoints.get(name, 0)
            lease = self._leases.get(name)
            alive = lease is not None and lease.expires_at > self._wall()
            out.append(
                GroupInfo(
                    name,
                    cp,
                    last - cp,
                    lease.holder if lease and alive else None,
                    lease.expires_at if lease and alive else None,
                )
            )
        return out

    async def acquire_lease(self, group: str, holder: str, ttl: float) -> Lease:
        now = self._wall()
        current = self._leases.get(group)
        if current is not None and current.holder != holder and current.expires_at > now:
            raise GroupLockedError(group, current.holder, current.expires_at - now)
        previous = current.holder if current is not None and current.holder != holder else None
        lease = Lease(group, holder, now + ttl, previous_holder=previous)
        self._leases[group] = lease
        return lease

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        now = self._wall()
        current = self._leases.get(lease.group)
        if current is not None and current.holder != lease.holder and current.expires_at > now:
            raise GroupLockedError(lease.group, current.holder, current.expires_at - now)
        if current is None or current.holder != lease.holder:
            # Ours expired and someone took it (or it was released): never renew a
            # lease that another consumer may have held in between.
            holder = current.holder if current is not None else "nobody"
            raise GroupLockedError(lease.group, holder, 0.0)
        renewed = Lease(lease.group, lease.holder, now + ttl, lease.previous_holder)
        self._leases[lease.group] = renewed
        return renewed

    async def release_lease(self, lease: Lease) -> None:
        current = self._leases.get(lease.group)
        if current is not None and current.holder == lease.holder:
            del self._leases[lease.group]

    async def save_snapshot(self, name: str, seq: int, state: Mapping[str, Any]) -> Snapshot:
        copied = orjson.loads(orjson.dumps(state))  # a snapshot must not alias live state
        snap = Snapshot(len(self._snapshots) + 1, name, seq, copied, _utcnow())
        self._snapshots.append(snap)
        return snap

    async def latest_snapshot(self, name: str) -> Snapshot | None:
        mine = [s for s in self._snapshots if s.name == name]
        return max(mine, key=lambda s: (s.seq, s.id)) if mine else None

    async def list_snapshots(self, name: str | None = None) -> list[Snapshot]:
        return [s for s in self._snapshots if name is None or s.name == name]

    async def load_snapshot(self, snapshot_id: int) -> Snapshot | None:
        if 1 <= snapshot_id <= len(self._snapshots):
            return self._snapshots[snapshot_id - 1]
        return None

    async def aclose(self) -> None:
        return None


async def open_memory_store(url: str) -> MemoryEventStore:
    """The ``pubsub.stores`` factory for ``memory://``."""
    return MemoryEventStore()
