"""Reading: a stream's messages in sequence order through an ephemeral consumer of the
reader's own, never a durable one (replay and listings move no group).

``scan`` creates a pull consumer with no acknowledgements (``AckNone``), in memory, with
an inactivity threshold so that the server removes it even if the reader dies, and
deletes it when the reading ends. It asks for exactly the messages the server says are
pending (``num_pending``), so a fetch never lingers waiting for messages that do not
exist, and it stops at ``end_seq`` (the last sequence seen when the reading started):
events appended meanwhile are not part of the reading.

A message's time is the server's, kept to the microsecond by truncating its nanoseconds
(the same as a direct get reports it), so a record's ``appended_at`` given back as
``since`` selects that record again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import StoreUnavailableError

from .connection import bounded

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

__all__ = ["RawRecord", "from_nanos", "scan"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_nanos(nanos: int) -> datetime:
    """A server timestamp (nanoseconds since the epoch) truncated to the microsecond."""
    return _EPOCH + timedelta(microseconds=nanos // 1000)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One message of a stream as the store reads it."""

    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]
    appended_at: datetime


def _nanos(msg: Msg) -> int:
    tokens = (msg.reply or "").split(".")
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (9 tokens) or
    # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
    return int(tokens[7] if len(tokens) == 9 else tokens[9])


async def _fetch(sub: Any, n: int, stream: str, location: str, timeout: float) -> list[Msg]:
    """Up to ``n`` of the messages the consumer counts as pending; an empty list when a
    pull brought nothing and the consumer, asked again, counts none (a count carried by
    a message can run ahead of what is left). A pull that brings nothing while some are
    still pending is asked again (short pulls); ``timeout`` seconds without a message is
    an error."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreUnavailableError(
                location,
                f"reading stream {stream}: no message from the NATS server within "
                f"{timeout:g} s although it counts some as pending",
            )
        try:
            msgs: list[Msg] = await bounded(
                sub.fetch(n, timeout=min(1.0, left)),
                location=location,
                what=f"reading stream {stream}",
                timeout=min(1.0, left) + 1,
            )
        except StoreUnavailableError as exc:
            if "no answer" not in exc.problem:
                raise
            msgs = []
        if msgs:
            return msgs
        info = await bounded(
            sub.consumer_info(),
            location=location,
            what=f"reading stream {stream}",
            timeout=max(0.5, deadline - time.monotonic()),
        )
        if not int(info.num_pending or 0):
            return []


async def scan(
    js: JetStreamContext,
    stream: str,
    subject: str,
    *,
    location: str,
    timeout: float,
    start_seq: int = 1,
    start_time: datetime | None = None,
    last_per_subject: bool = False,
    end_seq: int | None = None,
    batch_size: int = 1000,
    subjects: Sequence[str] | None = None,
) -> AsyncGenerator[RawRecord, None]:
    """The messages of ``stream`` on ``subject`` (wildcards allowed) from ``start_seq``
    (or the first at or after ``start_time``; or the last of each subject), in sequence
    order, up to ``end_seq``. ``subjects`` (several filters, ``filter_subjects``) is for
    2.10+ servers only, where it replaces ``subject``: a 2.9 server would ignore it and
    deliver everything, so callers pass it only to a newer server and filter what they
    get themselves all the same."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    if last_per_subject:
        policy = DeliverPolicy.LAST_PER_SUBJECT
    elif start_time is not None:
        policy = DeliverPolicy.BY_START_TIME
    else:
        policy = DeliverPolicy.BY_START_SEQUENCE
    name = f"pubsub-read-{uuid.uuid4().hex}"
    config = ConsumerConfig(
        name=name,
        deliver_policy=policy,
        opt_start_seq=start_seq if policy is DeliverPolicy.BY_START_SEQUENCE else None,
        opt_start_time=start_time,
        ack_policy=AckPolicy.NONE,
        filter_subject=None if subjects else subject,
        filter_subjects=list(subjects) if subjects else None,
        inactive_threshold=max(30.0, 6 * timeout),
        mem_storage=True,
        num_replicas=1,
    )

    info = await bounded(
        js.add_consumer(stream, config),
        location=location,
        what=f"reading stream {stream}",
        timeout=timeout,
    )
    sub = await bounded(
        js.pull_subscribe_bind(consumer=name, stream=stream),
        location=location,
        what=f"reading stream {stream}",
        timeout=timeout,
    )
    try:
        pending = int(info.num_pending or 0)
        while pending > 0:
            msgs = await _fetch(sub, min(batch_size, pending), stream, location, timeout)
            if not msgs:
                return
            for msg in msgs:
                meta = msg.metadata
                seq = int(meta.sequence.stream)
                if end_seq is not None and seq > end_seq:
                    return
                pending = int(meta.num_pending)
                yield RawRecord(
                    seq=seq,
                    subject=msg.subject,
                    data=msg.data,
                    headers=dict(msg.headers or {}),
                    appended_at=from_nanos(_nanos(msg)),
                )
                if end_seq is not None and seq >= end_seq:
                    return  # the end the reader asked for: no pull for what lies past it
    finally:
        # The server also drops the consumer after its inactivity threshold: a reader
        # that cannot delete it (server gone, task cancelled) leaves nothing for long.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sub.unsubscribe(), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(js.delete_consumer(stream, name), 2)
