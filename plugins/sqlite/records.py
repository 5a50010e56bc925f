"""Records: how the store's records (StoredEvent, DeadLetter, Snapshot) become SQLite rows
and back, and the read functions that run whole on the read connection's thread.

Ids are 16-byte blobs, the publisher's ``created_at`` and the DLQ's times ISO text (they
keep their time zone exactly), ``appended_at`` integer microseconds since the epoch (UTC,
indexed for ``since``/``until``). Every payload is stored with its CRC-32, checked on each
read: a mismatch is a ``ChecksumMismatchError`` for that record only.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

from core.codec import encode
from core.errors import ChecksumMismatchError
from core.events import Event
from core.store import DeadLetter, DeadLetterReason, DeadLetterStatus, Snapshot, StoredEvent

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
    "correlation_id, causation_id"
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


def event_row(event: Event) -> Row:
    payload = encode(event)
    corr = event.correlation_id
    caus = event.causation_id
    return (
        event.id.bytes,
        event.event_type,
        event.event_version,
        event.created_at.isoformat(),
        payload,
        zlib.crc32(payload),
        None if corr is None else corr.bytes,
        None if caus is None else caus.bytes,
    )


def to_records(
    rows: list[tuple[Any, ...]],
) -> tuple[list[StoredEvent], ChecksumMismatchError | None]:
    """Rows to records, stopping at the first payload whose checksum does not match."""
    out: list[StoredEvent] = []
    crc32 = zlib.crc32
    fromiso = datetime.fromisoformat
    last_micros, last_at = -1, _EPOCH  # one transaction's records share appended_at
    for seq, eid, type_name, version, created, appended, payload, checksum, corr, caus in rows:
        if crc32(payload) != checksum:
            return out, ChecksumMismatchError(seq, type_name)
        if appended != last_micros:
            last_micros, last_at = appended, _EPOCH + timedelta(microseconds=appended)
        out.append(
            StoredEvent(
                seq,
                UUID(bytes=eid),
                type_name,
                version,
                fromiso(created),
                last_at,
                payload,
                None if corr is None else UUID(bytes=corr),
                None if caus is None else UUID(bytes=caus),
            )
        )
    return out, None


def fetch_records(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any]
) -> tuple[list[StoredEvent], ChecksumMismatchError | None]:
    return to_records(conn.execute(sql, params).fetchall())


def fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def dead_letter_row(entry: DeadLetter) -> tuple[Any, ...]:
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
