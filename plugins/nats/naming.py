"""Naming: how pubsub's records map onto JetStream names, subjects and headers.

Shared by the JetStream store (``plugins.nats.store``) and the JetStream consumer
(``plugins.nats.consumer``), so both write and read exactly one layout:

- one stream of events per namespace, ``PUBSUB_<ns>_EVENTS``, on the subjects
  ``pubsub.<ns>.events.<type token>``; the stream sequence is the event's ``seq``;
- an event is one message: the payload is the codec's JSON (``core.codec.encode``), the
  facts that SQLite keeps in columns are headers (``Pubsub-*``), the event id is
  ``Nats-Msg-Id`` (the server's publish dedup), and a caller's own headers travel as
  ``Pubsub-H-<name>``;
- a consumer group is one durable consumer named by ``group_token``;
- projection snapshots are messages of ``PUBSUB_<ns>_SNAPSHOTS`` on
  ``pubsub.<ns>.snapshots.<name token>`` (the sequence is the snapshot's id), and dead
  letters live in the key-value bucket ``PUBSUB_<ns>_DLQ`` (``plugins.nats.dlq``).

Type names may hold dots and any other character, while a subject token or a consumer
name may not: ``token`` encodes a name injectively and deterministically into
``[A-Za-z0-9-]`` plus ``_XX`` escapes (``_`` itself is escaped), and ``untoken`` reverses
it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from core.errors import ChecksumMismatchError
from core.store import StoredEvent

__all__ = [
    "HEADER_CAUSATION",
    "HEADER_CHECKSUM",
    "HEADER_CORRELATION",
    "HEADER_CREATED",
    "HEADER_MSG_ID",
    "HEADER_PREFIX",
    "HEADER_TYPE",
    "HEADER_VERSION",
    "NAMESPACE_PATTERN",
    "event_headers",
    "events_stream",
    "events_subject",
    "events_subjects",
    "group_token",
    "snapshots_stream",
    "snapshots_subject",
    "snapshots_subjects",
    "stored_event",
    "token",
    "untoken",
    "user_headers",
]

NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_TYPE = "Pubsub-Type"
HEADER_VERSION = "Pubsub-Version"
HEADER_CREATED = "Pubsub-Created"
HEADER_CORRELATION = "Pubsub-Correlation"
HEADER_CAUSATION = "Pubsub-Causation"
HEADER_CHECKSUM = "Pubsub-Checksum"
HEADER_PREFIX = "Pubsub-H-"

_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ESCAPE = re.compile(r"_([0-9A-F]{2})")


def token(name: str) -> str:
    """``name`` as a subject token / consumer name: letters, digits and ``-`` as they
    are, every other UTF-8 byte (``_`` included) as ``_XX``. Injective; never empty."""
    if not name:
        return "_"  # no other name encodes to a lone underscore
    out: list[str] = []
    for ch in name:
        if ch in _PLAIN:
            out.append(ch)
        else:
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def untoken(text: str) -> str:
    """The name ``token`` encoded into ``text``."""
    if text == "_":
        return ""
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        raw += text[pos : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += text[pos:].encode("ascii")
    return raw.decode("utf-8")


def events_stream(namespace: str) -> str:
    return f"PUBSUB_{namespace}_EVENTS"


def events_subjects(namespace: str) -> str:
    """The stream's subject filter (every event type of the namespace)."""
    return f"pubsub.{namespace}.events.>"


def events_subject(namespace: str, type_name: str) -> str:
    return f"pubsub.{namespace}.events.{token(type_name)}"


def snapshots_stream(namespace: str) -> str:
    """The stream of projection snapshots (a snapshot's id is its stream sequence)."""
    return f"PUBSUB_{namespace}_SNAPSHOTS"


def snapshots_subjects(namespace: str) -> str:
    return f"pubsub.{namespace}.snapshots.>"


def snapshots_subject(namespace: str, name: str) -> str:
    return f"pubsub.{namespace}.snapshots.{token(name)}"


def group_token(group: str) -> str:
    """The durable consumer's name for a consumer group."""
    return token(group)


def event_headers(
    event_id: UUID,
    type_name: str,
    version: int,
    created_at: datetime,
    payload: bytes,
    correlation_id: UUID | None = None,
    causation_id: UUID | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of one event's message."""
    headers = {
        HEADER_MSG_ID: str(event_id),
        HEADER_TYPE: type_name,
        HEADER_VERSION: str(version),
        HEADER_CREATED: created_at.isoformat(),
        HEADER_CHECKSUM: str(zlib.crc32(payload)),
    }
    if correlation_id is not None:
        headers[HEADER_CORRELATION] = str(correlation_id)
    if causation_id is not None:
        headers[HEADER_CAUSATION] = str(causation_id)
    if extra:
        for key, value in extra.items():
            headers[HEADER_PREFIX + key] = value
    return headers


def user_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's own headers among a message's headers."""
    n = len(HEADER_PREFIX)
    return {k[n:]: v for k, v in headers.items() if k.startswith(HEADER_PREFIX)}


def stored_event(
    seq: int, payload: bytes, headers: Mapping[str, str], appended_at: datetime
) -> StoredEvent:
    """The record a message holds; ``ChecksumMismatchError`` when its payload does not
    match the checksum it was published with. ``appended_at`` is the server's time."""
    type_name = headers.get(HEADER_TYPE, "?")
    if zlib.crc32(payload) != int(headers.get(HEADER_CHECKSUM, "-1")):
        raise ChecksumMismatchError(seq, type_name)
    correlation = headers.get(HEADER_CORRELATION)
    causation = headers.get(HEADER_CAUSATION)
    return StoredEvent(
        seq=seq,
        event_id=UUID(headers[HEADER_MSG_ID]),
        type_name=type_name,
        version=int(headers[HEADER_VERSION]),
        created_at=datetime.fromisoformat(headers[HEADER_CREATED]),
        appended_at=appended_at,
        payload=payload,
        correlation_id=UUID(correlation) if correlation else None,
        causation_id=UUID(causation) if causation else None,
    )
