"""Records: stored events, dead letters, snapshots and groups as JSON-ready dicts and as
table rows — the shapes ``--json`` documents and tables share.

The keys here are the documented ``--json`` keys (docs/cli.md).
"""

from __future__ import annotations

from typing import Any

import orjson

from core.store import DeadLetter, GroupInfo, Snapshot, StoredEvent

__all__ = ["dead_letter_dict", "event_dict", "event_row", "group_dict", "snapshot_dict"]

EVENT_COLUMNS = ("seq", "type", "appended", "id", "data")
DEAD_LETTER_COLUMNS = (
    "id",
    "seq",
    "event type",
    "handler",
    "error",
    "attempts",
    "last failure",
    "status",
)


def _payload(record: StoredEvent) -> Any:
    try:
        return orjson.loads(record.payload)
    except orjson.JSONDecodeError:
        return record.payload.decode("utf-8", "replace")


def event_dict(record: StoredEvent) -> dict[str, Any]:
    """``seq, id, type, version, created_at, appended_at, correlation_id, causation_id,
    data`` (the payload, without the base fields)."""
    data = _payload(record)
    if isinstance(data, dict):
        data = {
            k: v
            for k, v in data.items()
            if k not in ("id", "created_at", "causation_id", "correlation_id")
        }
    return {
        "seq": record.seq,
        "id": str(record.event_id),
        "type": record.type_name,
        "version": record.version,
        "created_at": record.created_at.isoformat(),
        "appended_at": record.appended_at.isoformat(),
        "correlation_id": str(record.correlation_id) if record.correlation_id else None,
        "causation_id": str(record.causation_id) if record.causation_id else None,
        "data": data,
    }


def event_row(record: StoredEvent, width: int = 60) -> tuple[object, ...]:
    data = event_dict(record)["data"]
    text = orjson.dumps(data).decode()
    if len(text) > width:
        text = text[: width - 1] + "…"
    # Ids are time-ordered (UUIDv7): their first digits are the same for events appended
    # close together, the last 12 (random) tell them apart.
    return (record.seq, record.type_name, record.appended_at, record.event_id.hex[-12:], text)


def dead_letter_dict(entry: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    """``id, seq, event_id, event_type, handler, group, source, reason, error_type,
    message, attempts, first_failure_at, last_failure_at, status, resolved_at,
    resolution``; with ``full`` also ``payload`` and ``traceback``."""
    doc: dict[str, Any] = {
        "id": entry.id,
        "seq": entry.seq,
        "event_id": str(entry.event_id),
        "event_type": entry.event_type,
        "handler": entry.handler,
        "group": entry.group,
        "source": entry.source,
        "reason": entry.reason.value,
        "error_type": entry.error_type,
        "message": entry.message,
        "attempts": entry.attempts,
        "first_failure_at": entry.first_failure_at.isoformat(),
        "last_failure_at": entry.last_failure_at.isoformat(),
        "status": entry.status.value,
        "resolved_at": entry.resolved_at.isoformat() if entry.resolved_at else None,
        "resolution": entry.resolution,
    }
    if full:
        doc["payload"] = dict(entry.payload)
        doc["traceback"] = entry.traceback
    return doc


def dead_letter_row(entry: DeadLetter) -> tuple[object, ...]:
    error = f"{entry.error_type.rpartition('.')[2]}: {entry.message}"
    if len(error) > 50:
        error = error[:49] + "…"
    return (
        entry.id,
        entry.seq,
        entry.event_type,
        entry.handler,
        error,
        entry.attempts,
        entry.last_failure_at,
        entry.status.value + ("" if entry.source == "live" else f" ({entry.source})"),
    )


def snapshot_dict(snap: Snapshot, *, with_state: bool = False) -> dict[str, Any]:
    """``id, name, seq, created_at, keys`` (and ``state`` when asked)."""
    doc: dict[str, Any] = {
        "id": snap.id,
        "name": snap.name,
        "seq": snap.seq,
        "created_at": snap.created_at.isoformat(),
        "keys": sorted(snap.state),
    }
    if with_state:
        doc["state"] = dict(snap.state)
    return doc


def group_dict(info: GroupInfo) -> dict[str, Any]:
    """``group, checkpoint, lag, holder, lease_expires_at``."""
    return {
        "group": info.group,
        "checkpoint": info.checkpoint,
        "lag": info.lag,
        "holder": info.holder,
        "lease_expires_at": info.lease_expires_at,
    }
