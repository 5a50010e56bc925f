"""DLQ: dead letters in the namespace's key-value bucket ``PUBSUB_<ns>_DLQ``.

Keys of the bucket:

- ``next-id``: the last id given out; ids are 1, 2, 3... (people type them: ``pubsub
  dlq show 3``), taken by compare-and-set on this key's revision, so concurrent writers
  in many processes never share one;
- ``e.<id>``: the entry, as JSON;
- ``k.<event id>.<handler>.<group>``: the id of the entry of that (event, handler,
  group), tokens as ``naming.token`` makes them (``=`` for no group). It makes
  ``add_dead_letters`` idempotent: a worker that wrote an entry, crashed before
  acknowledging, and sees the event again finds the entry and adds none.

``resolve_dead_letter`` and ``record_dead_letter_failure`` update an entry with the
revision they read (``update(..., last=revision)``): of two processes resolving one
entry at the same time, exactly one wins, and the other sees it resolved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import orjson

from core.errors import DeadLetterNotFoundError, StoreUnavailableError
from core.store import DeadLetter, DeadLetterReason, DeadLetterStatus, at_least, int64

from .naming import token
from .reading import scan

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ["JetStreamDeadLetterQueue", "entry_from_json", "entry_to_json", "open_bucket"]

T = TypeVar("T")

_NEXT_ID = "next-id"
_CAS_ROUNDS = 10_000  # far beyond any real contention; a bound, never a silent loop


def _idem_key(entry: DeadLetter) -> str:
    group = "=" if entry.group is None else token(entry.group)
    return f"k.{entry.event_id}.{token(entry.handler)}.{group}"


def entry_to_json(entry: DeadLetter, entry_id: int, key: str) -> bytes:
    return orjson.dumps(
        {
            "id": entry_id,
            "key": key,
            "event_id": str(entry.event_id),
            "event_type": entry.event_type,
            "handler": entry.handler,
            "reason": entry.reason.value,
            "error_type": entry.error_type,
            "message": entry.message,
            "traceback": entry.traceback,
            "attempts": entry.attempts,
            "first_failure_at": entry.first_failure_at.isoformat(),
            "last_failure_at": entry.last_failure_at.isoformat(),
            "payload": dict(entry.payload),
            "seq": entry.seq,
            "group": entry.group,
            "source": entry.source,
            "status": entry.status.value,
            "resolved_at": entry.resolved_at.isoformat() if entry.resolved_at else None,
            "resolution": entry.resolution,
        }
    )


def entry_from_json(data: bytes) -> tuple[DeadLetter, str]:
    """The entry and its idempotency key."""
    doc: dict[str, Any] = orjson.loads(data)
    resolved = doc.get("resolved_at")
    entry = DeadLetter(
        event_id=UUID(doc["event_id"]),
        event_type=doc["event_type"],
        handler=doc["handler"],
        reason=DeadLetterReason(doc["reason"]),
        error_type=doc["error_type"],
        message=doc["message"],
        traceback=doc["traceback"],
        attempts=int(doc["attempts"]),
        first_failure_at=datetime.fromisoformat(doc["first_failure_at"]),
        last_failure_at=datetime.fromisoformat(doc["last_failure_at"]),
        payload=doc.get("payload") or {},
        seq=doc.get("seq"),
        group=doc.get("group"),
        source=doc.get("source", "live"),
        id=int(doc["id"]),
        status=DeadLetterStatus(doc["status"]),
        resolved_at=datetime.fromisoformat(resolved) if resolved else None,
        resolution=doc.get("resolution"),
    )
    return entry, str(doc.get("key", ""))


class JetStreamDeadLetterQueue:
    """The ``DeadLetterQueue`` half of the JetStream store (see the module docstring)."""

    def __init__(
        self,
        js: JetStreamContext,
        kv: KeyValue,
        bucket: str,
        *,
        location: str,
        timeout: float,
    ) -> None:
        self._js = js
        self._kv = kv
        self._bucket = bucket
        self._location = location
        self._timeout = timeout

    async def _call(self, aw: Awaitable[T], what: str) -> T:
        from .connection import bounded

        return await bounded(aw, location=self._location, what=what, timeout=self._timeout)

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        """The key's value and revision, None when it is missing or deleted."""
        import nats.js.errors

        async def get() -> tuple[bytes, int] | None:
            try:
                entry = await self._kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return bytes(entry.value or b""), int(entry.revision or 0)

        return await self._call(get(), "reading the dead-letter queue")

    async def _create(self, key: str, value: bytes) -> bool:
        """Create ``key``; False when it exists already."""
        import nats.js.errors

        async def create() -> bool:
            try:
                await self._kv.create(key, value)
            except nats.js.errors.KeyWrongLastSequenceError:
                return False
            return True

        return await self._call(create(), "writing the dead-letter queue")

    async def _compare_and_set(self, key: str, value: bytes, revision: int) -> bool:
        """Write ``key`` if its revision is still ``revision``."""
        import nats.js.errors

        async def update() -> bool:
            try:
                await self._kv.update(key, value, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                return False
            return True

        return await self._call(update(), "writing the dead-letter queue")

    async def _next_id(self) -> int:
        for _ in range(_CAS_ROUNDS):
            found = await self._get(_NEXT_ID)
            if found is None:
                if await self._create(_NEXT_ID, b"1"):
                    return 1
                continue
            value, revision = found
            candidate = int(value) + 1
            if await self._compare_and_set(_NEXT_ID, str(candidate).encode(), revision):
                return candidate
        raise StoreUnavailableError(  # pragma: no cover - needs 10k lost races in a row
            self._location, "could not take a dead-letter id: too much contention"
        )

    # -- DeadLetterQueue --------------------------------------------------------------

    async def add_dead_letters(self, entries: Sequence[DeadLetter]) -> list[int]:
        """Store entries; an entry of an (event, handler, group) already stored returns
        the stored entry's id and adds nothing."""
        ids: list[int] = []
        for entry in entries:
            key = _idem_key(entry)
            found = await self._get(key)
            if found is None:
                entry_id = await self._next_id()
                if not await self._create(key, str(entry_id).encode()):
                    found = await self._get(key)  # another writer stored it meanwhile
            if found is not None:
                entry_id = int(found[0])
            # Written once per id: the first writer's entry stands (create, not put);
            # a writer that died after the key and before the entry is completed here.
            await self._create(f"e.{entry_id}", entry_to_json(entry, entry_id, key))
            ids.append(entry_id)
        return ids

    async def _entries(self) -> list[tuple[DeadLetter, str]]:
        out: list[tuple[DeadLetter, str]] = []
        async for record in scan(
            self._js,
            f"KV_{self._bucket}",
            f"$KV.{self._bucket}.e.>",
            location=self._location,
            timeout=self._timeout,
            last_per_subject=True,
        ):
            if record.headers.get("KV-Operation") in ("DEL", "PURGE") or not record.data:
                continue
            out.append(entry_from_json(record.data))
        out.sort(key=lambda pair: pair[0].id or 0)
        return out

    async def list_dead_letters(
        self,
        *,
        handler: str | None = None,
        event_type: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.OPEN,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        if limit is not None:
            at_least("limit", limit, 0)
        out = [
            e
            for e, _ in await self._entries()
            if (handler is None or e.handler == handler)
            and (event_type is None or e.event_type == event_type)
            and (status is None or e.status == status)
        ]
        return out if limit is None else out[:limit]

    async def _entry(self, entry_id: int) -> tuple[DeadLetter, str, int]:
        int64("entry_id", entry_id)
        found = await self._get(f"e.{entry_id}") if entry_id > 0 else None
        if found is None:
            raise DeadLetterNotFoundError(entry_id)
        entry, key = entry_from_json(found[0])
        return entry, key, found[1]

    async def get_dead_letter(self, entry_id: int) -> DeadLetter:
        return (await self._entry(entry_id))[0]

    async def _change(
        self, entry_id: int, change: Callable[[DeadLetter], DeadLetter | None]
    ) -> bool:
        """Apply ``change`` to the entry by compare-and-set, again on a lost race; False
        when ``change`` answers None (nothing to do)."""
        for _ in range(_CAS_ROUNDS):
            entry, key, revision = await self._entry(entry_id)
            changed = change(entry)
            if changed is None:
                return False
            if await self._compare_and_set(
                f"e.{entry_id}", entry_to_json(changed, entry_id, key), revision
            ):
                return True
        raise StoreUnavailableError(  # pragma: no cover - needs 10k lost races in a row
            self._location, f"could not update dead letter {entry_id}: too much contention"
        )

    async def resolve_dead_letter(self, entry_id: int, resolution: str, at: datetime) -> bool:
        def resolve(entry: DeadLetter) -> DeadLetter | None:
            if entry.status is DeadLetterStatus.RESOLVED:
                return None
            return dataclasses.replace(
                entry, status=DeadLetterStatus.RESOLVED, resolved_at=at, resolution=resolution
            )

        return await self._change(entry_id, resolve)

    async def record_dead_letter_failure(
        self, entry_id: int, *, error_type: str, message: str, traceback: str, at: datetime
    ) -> None:
        def failed(entry: DeadLetter) -> DeadLetter:
            return dataclasses.replace(
                entry,
                attempts=entry.attempts + 1,
                error_type=error_type,
                message=message,
                traceback=traceback,
                last_failure_at=at,
            )

        await self._change(entry_id, failed)

    async def purge_dead_letters(self, *, resolved_only: bool = False) -> int:
        doomed = [
            (e, key)
            for e, key in await self._entries()
            if not resolved_only or e.status is DeadLetterStatus.RESOLVED
        ]
        for entry, key in doomed:
            await self._call(self._kv.purge(f"e.{entry.id}"), "purging dead letters")
            if key:
                await self._call(self._kv.purge(key), "purging dead letters")
        return len(doomed)

    async def count_dead_letters(
        self, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
    ) -> int:
        return len(await self.list_dead_letters(status=status))


async def open_bucket(
    js: JetStreamContext, bucket: str, *, replicas: int, location: str, timeout: float
) -> KeyValue:
    """The bucket, created when missing (one revision kept per key), with the replicas
    the URL asks for (read back from the server)."""
    wanted_replicas = replicas
    import nats.js.errors
    from nats.js.api import KeyValueConfig, StorageType

    from .connection import bounded

    async def get_or_create() -> KeyValue:
        try:
            return await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            pass
        config = KeyValueConfig(
            bucket=bucket,
            description="pubsub dead letters",
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
        )
        return await js.create_key_value(config)

    kv = await bounded(
        get_or_create(), location=location, what=f"opening bucket {bucket}", timeout=timeout
    )
    # Read back what the server keeps (as for the streams, never trust silence).
    info = await bounded(
        js.stream_info(f"KV_{bucket}"),
        location=location,
        what=f"reading bucket {bucket}",
        timeout=timeout,
    )
    replicas = int(info.config.num_replicas or 1)
    if replicas != wanted_replicas:
        raise StoreUnavailableError(
            location,
            f"bucket {bucket} has {replicas} replica(s), the URL asks {wanted_replicas}: "
            "make the URL match (the store does not move a bucket's replicas)",
        )
    return kv
