"""Records: how the store's records (StoredEvent, DeadLetter, Snapshot) become SQLite rows
and back, and the read functions that run whole on the read connection's thread.

Ids are 16-byte blobs, the publisher's ``created_at`` and the DLQ's times ISO text (they
keep their time zone exactly), ``appended_at`` integer microseconds since the epoch (UTC,
indexed for ``since``/``until``), an event's headers an orjson object (NULL when it has
none, read back as ``NO_HEADERS``). Every payload is stored with its CRC-32, checked on each
read: a mismatch is a ``ChecksumMismatchError`` for that record only.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from uuid import UUID, SafeUUID

import orjson

from core.codec import encode
from core.errors import ChecksumMismatchError
from core.events import Event, base_fields
from core.store import (
    NO_HEADERS,
    DeadLetter,
    DeadLetterReason,
    DeadLetterStatus,
    Snapshot,
    StoredEvent,
    int64,
)

from .writer import Row

__all__ = [
    "DLQ_COLUMNS",
    "EVENT_COLUMNS",
    "dead_letter",
    "dead_letter_row",
    "event_row",
    "fetch_all",
    "fetch_records",
    "micros",
    "snapshot",
    "to_records",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
EVENT_COLUMNS = (
    "seq, event_id, type_name, version, created_at, appended_at, payload, checksum, "
    "correlation_id, causation_id, headers"
)
DLQ_COLUMNS = (
    "id, event_id, event_type, handler, reason, error_type, message, traceback, attempts, "
    "first_failure_at, last_failure_at, payload, seq, group_name, source, status, "
    "resolved_at, resolution"
)


def micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICRO


def _uuid(raw: bytes | None) -> UUID | None:
    return None if raw is None else UUID(bytes=raw)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def event_row(event: Event, headers: Mapping[str, str] | None = None) -> Row:
    """The row of ``event``; ``headers`` (checked by ``core.store.check_headers``) are
    stored as one orjson object, none as NULL."""
    payload = encode(event)
    event_id, created, corr, caus = base_fields(event)
    return (
        event_id.bytes,
        event.event_type,
        event.event_version,
        created.isoformat(),
        payload,
        zlib.crc32(payload),
        None if corr is None else corr.bytes,
        None if caus is None else caus.bytes,
        None if not headers else orjson.dumps(dict(headers)),
    )


def _headers(raw: bytes) -> Mapping[str, str]:
    """Stored headers (an orjson object) as the record's read-only mapping."""
    return MappingProxyType(orjson.loads(raw))


def _slot_setters(cls: type, names: Sequence[str]) -> tuple[Callable[[Any, Any], None], ...]:
    """The slot descriptors' setters of ``names`` on a slotted class (frozen or not)."""
    return tuple(vars(cls)[name].__set__ for name in names)


def _fast_makers() -> tuple[Callable[[bytes], UUID], Callable[..., StoredEvent]] | None:
    """A UUID from 16 bytes and a StoredEvent from its fields, filling their slots
    directly: ``UUID(bytes=...)`` and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) are most of the cost of a read. Both objects are
    exactly what the constructors make; if this Python lays them out otherwise (checked
    here, once), the constructors are used."""
    fields = [f.name for f in dataclasses.fields(StoredEvent)]
    if getattr(StoredEvent, "__slots__", None) != tuple(fields):
        return None
    if not {"int", "is_safe"} <= set(getattr(UUID, "__slots__", ())):
        return None
    new = object.__new__
    set_int, set_safe = _slot_setters(UUID, ("int", "is_safe"))
    unknown = SafeUUID.unknown
    from_bytes = int.from_bytes

    def make_uuid(raw: bytes) -> UUID:
        if len(raw) != 16:
            return UUID(bytes=raw)  # raises the constructor's ValueError
        u = new(UUID)
        set_int(u, from_bytes(raw))
        set_safe(u, unknown)
        return u

    setters = _slot_setters(StoredEvent, fields)
    if len(setters) != 10:
        return None
    s_seq, s_eid, s_type, s_version, s_created, s_appended, s_payload, s_corr, s_caus = setters[:9]
    s_headers = setters[9]

    def make_record(
        seq: int,
        eid: UUID,
        type_name: str,
        version: int,
        created: datetime,
        appended: datetime,
        payload: bytes,
        corr: UUID | None,
        caus: UUID | None,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> StoredEvent:
        r = new(StoredEvent)
        s_seq(r, seq)
        s_eid(r, eid)
        s_type(r, type_name)
        s_version(r, version)
        s_created(r, created)
        s_appended(r, appended)
        s_payload(r, payload)
        s_corr(r, corr)
        s_caus(r, caus)
        s_headers(r, headers)
        return r

    raw = bytes(range(16))
    now = datetime.now(UTC)
    probe = (7, make_uuid(raw), "t", 1, now, now, b"{}", None, make_uuid(raw))
    expected = (7, UUID(bytes=raw), "t", 1, now, now, b"{}", None, UUID(bytes=raw))
    if make_record(*probe) != StoredEvent(*expected) or hash(probe[1]) != hash(expected[1]):
        return None
    tagged = make_record(*probe, _headers(b'{"k":"v"}'))
    if tagged != StoredEvent(*expected, headers={"k": "v"}) or hash(tagged) != hash(
        StoredEvent(*expected)
    ):
        return None
    return make_uuid, make_record


def _plain_uuid(raw: bytes) -> UUID:
    return UUID(bytes=raw)


_uuid_of, _record = _fast_makers() or (_plain_uuid, StoredEvent)


def to_records(
    rows: list[tuple[Any, ...]],
) -> tuple[list[StoredEvent], ChecksumMismatchError | None]:
    """Rows to records, stopping at the first payload whose checksum does not match."""
    out: list[StoredEvent] = []
    append = out.append
    crc32 = zlib.crc32
    fromiso = datetime.fromisoformat
    uuid_of, record = _uuid_of, _record
    last_micros, last_at = -1, _EPOCH  # one transaction's records share appended_at
    last_created, last_created_at = "", _EPOCH  # so do a batch's publish times, often
    no_headers = NO_HEADERS
    for seq, eid, type_name, version, created, appended, payload, checksum, corr, caus, raw in rows:
        if crc32(payload) != checksum:
            return out, ChecksumMismatchError(seq, type_name)
        if appended != last_micros:
            last_micros, last_at = appended, _EPOCH + timedelta(microseconds=appended)
        if created != last_created:
            last_created, last_created_at = created, fromiso(created)
        append(
            record(
                seq,
                uuid_of(eid),
                type_name,
                version,
                last_created_at,
                last_at,
                payload,
                None if corr is None else uuid_of(corr),
                None if caus is None else uuid_of(caus),
                no_headers if raw is None else _headers(raw),
            )
        )
    return out, None


def fetch_records(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any]
) -> tuple[list[StoredEvent], ChecksumMismatchError | None]:
    return to_records(conn.execute(sql, params).fetchall())


def fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def dead_letter_row(entry: DeadLetter, name: str = "dead letter") -> tuple[Any, ...]:
    """The row of ``entry``; its integers are checked, named ``{name}.seq`` and so on."""
    int64(f"{name}.attempts", entry.attempts)
    if entry.seq is not None:
        int64(f"{name}.seq", entry.seq)
    return (
        entry.event_id.bytes,
        entry.event_type,
        entry.handler,
        str(entry.reason),
        entry.error_type,
        entry.message,
        entry.traceback,
        entry.attempts,
        entry.first_failure_at.isoformat(),
        entry.last_failure_at.isoformat(),
        orjson.dumps(dict(entry.payload)),
        entry.seq,
        entry.group,
        entry.source,
        str(entry.status),
        _iso(entry.resolved_at),
        entry.resolution,
    )


def dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    (entry_id, eid, event_type, handler, reason, error_type, message, tb, attempts) = row[:9]
    (first, last, payload, seq, group, source, status, resolved_at, resolution) = row[9:]
    return DeadLetter(
        event_id=UUID(bytes=eid),
        event_type=event_type,
        handler=handler,
        reason=DeadLetterReason(reason),
        error_type=error_type,
        message=message,
        traceback=tb,
        attempts=attempts,
        first_failure_at=datetime.fromisoformat(first),
        last_failure_at=datetime.fromisoformat(last),
        payload=orjson.loads(payload),
        seq=seq,
        group=group,
        source=source,
        id=entry_id,
        status=DeadLetterStatus(status),
        resolved_at=_from_iso(resolved_at),
        resolution=resolution,
    )


def snapshot(row: tuple[Any, ...]) -> Snapshot:
    snap_id, name, seq, state, created = row
    return Snapshot(snap_id, name, seq, orjson.loads(state), datetime.fromisoformat(created))
