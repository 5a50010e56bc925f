"""Test support for the JetStream consumer: events published the way the store writes
them, a minimal store around a stream that owns delivery (its dead letters in memory,
idempotent per event, handler and group as the JetStream store's are), and the ack
subjects a test watches to see what a worker told the server."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from core import Event
from core.codec import encode
from core.consumer import ConsumerOptions, Dispatcher
from core.memory import MemoryEventStore
from core.store import DeadLetter
from plugins.nats.consumer import JetStreamConsumer, JetStreamConsumerSettings
from plugins.nats.naming import event_headers, events_stream, events_subject, events_subjects


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.nats.Job"):
    n: int = 0


async def connect(url: str) -> Client:
    return await nats.connect(
        url, connect_timeout=5, max_reconnect_attempts=0, allow_reconnect=False
    )


async def make_stream(js: JetStreamContext, namespace: str) -> str:
    stream = events_stream(namespace)
    await js.add_stream(name=stream, subjects=[events_subjects(namespace)])
    return stream


async def publish(js: JetStreamContext, namespace: str, events: Sequence[Event]) -> list[int]:
    """Publish as the store does (payload, headers, Nats-Msg-Id); the stream seqs."""
    seqs = []
    for event in events:
        payload = encode(event)
        headers = event_headers(
            event.id, event.event_type, event.event_version, event.created_at, payload
        )
        ack = await js.publish(
            events_subject(namespace, event.event_type), payload, headers=headers, timeout=5
        )
        seqs.append(ack.seq)
    return seqs


async def publish_raw(
    js: JetStreamContext, namespace: str, type_name: str, payload: bytes, headers: dict[str, str]
) -> int:
    ack = await js.publish(
        events_subject(namespace, type_name), payload, headers=headers, timeout=5
    )
    return int(ack.seq)


class StreamStore(MemoryEventStore):
    """A memory store whose delivery is a JetStream stream's durable consumer (the
    consumer half alone, before the JetStream store exists): the bus opens a
    JetStreamConsumer through ``open_consumer``; dead letters are kept here."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        namespace: str,
        settings: JetStreamConsumerSettings,
        server_version: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.nc = nc
        self.js = js
        self.namespace = namespace
        self.settings = settings
        self.server_version = server_version
        self.consumers: list[JetStreamConsumer] = []

    def open_consumer(self, dispatcher: Dispatcher, options: ConsumerOptions) -> JetStreamConsumer:
        consumer = JetStreamConsumer(
            connection=self.nc,
            jetstream=self.js,
            stream=events_stream(self.namespace),
            namespace=self.namespace,
            dead_letters=self,
            dispatcher=dispatcher,
            options=options,
            settings=self.settings,
            server_version=self.server_version,
        )
        self.consumers.append(consumer)
        return consumer

    async def add_dead_letters(self, entries: Sequence[DeadLetter]) -> list[int]:
        ids = []
        for entry in entries:
            known = [
                e
                for e in self._entries.values()
                if (e.event_id, e.handler, e.group) == (entry.event_id, entry.handler, entry.group)
            ]
            if known:
                assert known[0].id is not None
                ids.append(known[0].id)
            else:
                ids.extend(self._add([dataclasses.replace(entry)]))
        return ids


class AckWatch:
    """Every ack a worker sends for a durable (``+ACK``, ``-NAK {...}``, ``+WPI``,
    ``+TERM``), by stream sequence, as seen on the ack subjects."""

    def __init__(self) -> None:
        self.by_seq: dict[int, list[bytes]] = {}
        self.changed = asyncio.Event()
        self._sub: Any = None

    async def start(self, nc: Client, stream: str, durable: str) -> AckWatch:
        self._sub = await nc.subscribe(f"$JS.ACK.{stream}.{durable}.>", cb=self._seen)
        await nc.flush()
        return self

    async def _seen(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or the
        # v2 form with <domain>.<account hash> before the stream and a token at the end.
        seq = int(tokens[5] if len(tokens) == 9 else tokens[7])
        self.by_seq.setdefault(seq, []).append(msg.data)
        self.changed.set()

    def kinds(self, seq: int) -> list[str]:
        # An empty ack body is +ACK (nats-py sends it so).
        return [data.split(b" ", 1)[0].decode() or "+ACK" for data in self.by_seq.get(seq, [])]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 20.0) -> None:
        async def loop() -> None:
            while not check():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def aclose(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll ``check`` (observable state) every 20 ms until it is true, at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.02)
