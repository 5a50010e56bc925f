"""The JetStream consumer against a private server: the durable's config is created,
read back and compared (a different one is refused naming the fields, or applied when
asked; a field the server did not apply is refused), and each delivery ends as it
should: ack, nak with the policy's delay then one dead letter and term at the delivery
cap, term at once for what must not retry or does not decode, in_progress for a long
handler, nak on shutdown, and the delivery-cap advisory written as a dead letter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats_servers import NatsServer
from nats_worker import (
    AckWatch,
    Job,
    StreamStore,
    connect,
    make_stream,
    publish,
    publish_raw,
    until,
)

from core import EventBus, HandlerContext
from core.policies import HandlerPolicy, RetryPolicy
from core.store import DeadLetterReason
from plugins.nats.consumer import (
    JetStreamConsumerError,
    JetStreamConsumerSettings,
    derived_ack_wait,
    ensure_consumer,
    wanted_config,
)
from plugins.nats.naming import event_headers, group_token


@dataclass
class Server:
    nc: Client
    js: JetStreamContext
    namespace: str
    stream: str
    version: tuple[int, int, int]


@pytest.fixture
async def server(nats_server: NatsServer, namespace: str) -> AsyncIterator[Server]:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    stream = await make_stream(js, namespace)
    try:
        yield Server(nc, js, namespace, stream, nats_server.version)
    finally:
        await js.delete_stream(stream)
        await nc.close()


def bus_on(server: Server, group: str = "g", **settings: Any) -> tuple[EventBus, StreamStore]:
    store = StreamStore(
        server.nc,
        server.js,
        server.namespace,
        JetStreamConsumerSettings(**settings),
        server.version,
    )
    return EventBus(store, group=group, holder=f"w{id(store)}"), store


async def watch(server: Server, group: str = "g") -> AckWatch:
    return await AckWatch().start(server.nc, server.stream, group_token(group))


async def info(server: Server, group: str = "g") -> Any:
    return await server.js.consumer_info(server.stream, group_token(group))


class TestConfig:
    """Create or bind: the config is read back and compared."""

    async def test_created_with_the_derived_ack_wait_and_a_finite_cap(self, server: Server) -> None:
        """ack_wait exceeds timeout x attempts plus backoff; max_deliver is finite."""
        bus, _ = bus_on(server)

        @bus.subscribe(Job, name="work", timeout=2.0, retry=RetryPolicy(max_attempts=3, base=0.1))
        async def work(event: Job) -> None:
            pass

        async with bus:
            config = (await info(server)).config
        budget = 2.0 * 3 + 0.1 + 0.2
        assert config.ack_wait == pytest.approx(budget * 1.25 + 1.0)
        assert config.max_deliver == 5
        assert config.max_ack_pending == 1000
        assert config.filter_subject == f"pubsub.{server.namespace}.events.>"
        assert config.ack_policy == "explicit"
        assert config.durable_name == "g"

    async def test_a_worker_with_other_settings_is_refused(self, server: Server) -> None:
        """A second worker wanting max_deliver 7 on a durable made with 5 is refused,
        naming the field and both values; the durable keeps its config."""
        first, _ = bus_on(server, max_deliver=5, ack_wait=3.0)
        first.subscribe(Job, name="work")(_noop)
        async with first:
            second, _ = bus_on(server, max_deliver=7, ack_wait=3.0)
            second.subscribe(Job, name="work")(_noop)
            with pytest.raises(JetStreamConsumerError) as caught:
                await second.start()
        message = str(caught.value)
        assert "max_deliver 5 (wanted 7)" in message
        assert "update_consumer=1" in message
        assert "\n" not in message
        assert (await info(server)).config.max_deliver == 5

    async def test_update_consumer_applies_the_new_settings(self, server: Server) -> None:
        """With update_consumer the durable takes this worker's config (read back)."""
        first, _ = bus_on(server, max_deliver=5, ack_wait=3.0)
        first.subscribe(Job, name="work")(_noop)
        async with first:
            pass
        second, _ = bus_on(server, max_deliver=7, ack_wait=3.0, update_consumer=True)
        second.subscribe(Job, name="work")(_noop)
        async with second:
            assert (await info(server)).config.max_deliver == 7

    async def test_an_ack_wait_shorter_than_a_handler_can_take_is_refused(
        self, server: Server
    ) -> None:
        """ack_wait=1 with a handler of timeout 2 is refused before anything is created."""
        bus, _ = bus_on(server, ack_wait=1.0)

        @bus.subscribe(Job, name="slow", timeout=2.0)
        async def slow(event: Job) -> None:
            pass

        with pytest.raises(JetStreamConsumerError, match=r"ack_wait=1s .* handler 'slow'"):
            await bus.start()
        assert await server.js.consumers_info(server.stream) == []

    async def test_a_field_the_server_does_not_apply_is_refused(self, server: Server) -> None:
        """Consumer metadata (2.10+) asked of the server: a 2.9 server drops it
        silently, and the read-back refuses it; a newer one applies it."""
        settings = JetStreamConsumerSettings(ack_wait=3.0)
        wanted = wanted_config("g", server.namespace, settings, {}, (2, 10, 0))
        assert wanted.metadata
        if server.version >= (2, 10, 0):
            got = await ensure_consumer(
                server.js, server.stream, "g", wanted, server_version=server.version
            )
            assert got.config.metadata is not None
            assert got.config.metadata["pubsub-group"] == "g"
            return
        with pytest.raises(JetStreamConsumerError, match=r"did not apply metadata"):
            await ensure_consumer(
                server.js, server.stream, "g", wanted, server_version=server.version
            )

    def test_the_ack_wait_default_without_timeouts(self) -> None:
        """A handler without a timeout has no budget: the default (in_progress keeps
        long handlers); with timeouts the slowest one counts."""
        assert derived_ack_wait({"a": HandlerPolicy()}) == (30.0, None)
        policies = {"a": HandlerPolicy(timeout=1.0), "b": HandlerPolicy(timeout=4.0)}
        assert derived_ack_wait(policies) == (6.0, "b")


async def _noop(event: Job) -> None:
    pass


class TestDelivery:
    """What each outcome tells the server."""

    async def test_every_event_is_handled_and_acked(self, server: Server) -> None:
        """Catch-up handles the backlog once each; every message is acked (ack floor)."""
        seqs = await publish(server.js, server.namespace, [Job(n) for n in range(20)])
        bus, _ = bus_on(server, ack_wait=3.0)
        seen: list[int] = []

        @bus.subscribe(Job, name="work")
        async def work(event: Job) -> None:
            seen.append(event.n)

        acks = await watch(server)
        async with bus:
            assert await bus.drain(10)
            await acks.wait_for(lambda: all(acks.kinds(s) == ["+ACK"] for s in seqs))
        assert sorted(seen) == list(range(20))
        await until(lambda: _ack_floor(server, 20))

    async def test_retries_then_redelivery_then_one_dead_letter(self, server: Server) -> None:
        """Two in-process attempts per delivery, three deliveries: nak with a delay
        twice, then one dead letter (six attempts) and term."""
        (seq,) = await publish(server.js, server.namespace, [Job(1)])
        bus, store = bus_on(server, ack_wait=3.0, max_deliver=3)
        calls: list[tuple[int, bool]] = []

        @bus.subscribe(Job, name="flaky", retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.05))
        async def flaky(event: Job, ctx: HandlerContext[Job]) -> None:
            calls.append((ctx.attempt, ctx.redelivery))
            raise RuntimeError("down")

        acks = await watch(server)
        stop = asyncio.Event()
        async with bus:
            following = asyncio.create_task(bus.follow(stop))
            await acks.wait_for(lambda: "+TERM" in acks.kinds(seq))
            stop.set()
            await following
        assert acks.kinds(seq) == ["-NAK", "-NAK", "+TERM"]
        assert all(b'"delay"' in data or data == b"-NAK" for data in acks.by_seq[seq][:2])
        assert calls == [(1, False), (2, False), (1, True), (2, True), (1, True), (2, True)]
        (letter,) = await store.list_dead_letters()
        assert (letter.handler, letter.attempts, letter.seq) == ("flaky", 6, seq)
        assert letter.reason is DeadLetterReason.EXHAUSTED
        assert letter.group == "g"

    async def test_a_handler_without_retries_is_dead_lettered_at_once(self, server: Server) -> None:
        """No retry policy: the first failure writes the dead letter and terms."""
        (seq,) = await publish(server.js, server.namespace, [Job(1)])
        bus, store = bus_on(server, ack_wait=3.0, max_deliver=3)
        calls: list[int] = []

        @bus.subscribe(Job, name="once")
        async def once(event: Job) -> None:
            calls.append(event.n)
            raise ValueError("bad")

        acks = await watch(server)
        async with bus:
            await acks.wait_for(lambda: "+TERM" in acks.kinds(seq))
        assert acks.kinds(seq) == ["+TERM"]
        assert calls == [1]
        (letter,) = await store.list_dead_letters()
        assert (letter.handler, letter.attempts) == ("once", 1)

    async def test_an_undecodable_message_is_dead_lettered_and_terminated(
        self, server: Server
    ) -> None:
        """A type no module defines: a ``<decode>`` dead letter, then term."""
        job = Job(1)
        payload = b'{"n": 1}'
        headers = event_headers(job.id, "tests.nats.Nobody", 1, job.created_at, payload)
        seq = await publish_raw(server.js, server.namespace, "tests.nats.Nobody", payload, headers)
        bus, store = bus_on(server, ack_wait=3.0)
        bus.subscribe(Job, name="work")(_noop)
        acks = await watch(server)
        async with bus:
            await acks.wait_for(lambda: "+TERM" in acks.kinds(seq))
        (letter,) = await store.list_dead_letters()
        assert (letter.handler, letter.event_type, letter.seq) == (
            "<decode>",
            "tests.nats.Nobody",
            seq,
        )
        assert bus.statistics().undecodable == 1

    async def test_a_long_handler_keeps_its_event(self, server: Server) -> None:
        """A handler running past three ack waits sends in_progress; another worker
        following the group meanwhile never gets the event; it is acked once."""
        (seq,) = await publish(server.js, server.namespace, [Job(1)])
        release = asyncio.Event()
        calls: list[str] = []
        first, _ = bus_on(server, ack_wait=1.0)
        second, _ = bus_on(server, ack_wait=1.0)

        @first.subscribe(Job, name="work")
        async def long(event: Job) -> None:
            calls.append("first")
            await release.wait()

        @second.subscribe(Job, name="work")
        async def other(event: Job) -> None:
            calls.append("second")

        acks = await watch(server)
        stop = asyncio.Event()
        async with first, second:
            following = asyncio.create_task(second.follow(stop))
            await acks.wait_for(lambda: acks.kinds(seq).count("+WPI") >= 3)
            release.set()
            await acks.wait_for(lambda: "+ACK" in acks.kinds(seq))
            stop.set()
            await following
        assert calls == ["first"]
        assert (await info(server)).num_redelivered == 0

    async def test_shutdown_mid_delivery_naks_for_another_worker(self, server: Server) -> None:
        """A worker closed while its handler runs naks the event at once (never acks);
        the next worker gets it as a redelivery."""
        (seq,) = await publish(server.js, server.namespace, [Job(1)])
        started = asyncio.Event()
        first, _ = bus_on(server, ack_wait=10.0)

        @first.subscribe(Job, name="work")
        async def stuck(event: Job) -> None:
            started.set()
            await asyncio.Event().wait()

        acks = await watch(server)
        await first.start()
        await asyncio.wait_for(started.wait(), 10)
        await first.aclose(timeout=0)
        await acks.wait_for(lambda: bool(acks.kinds(seq)))
        assert acks.kinds(seq) == ["-NAK"]
        second, _ = bus_on(server, ack_wait=10.0)
        seen: list[bool] = []

        @second.subscribe(Job, name="work")
        async def work(event: Job, ctx: HandlerContext[Job]) -> None:
            seen.append(ctx.redelivery)

        async with second:
            await acks.wait_for(lambda: "+ACK" in acks.kinds(seq))
        assert seen == [True]

    async def test_the_delivery_cap_advisory_becomes_a_dead_letter(self, server: Server) -> None:
        """A message whose last delivery was never settled (its worker died) hits the
        cap when its ack wait runs out: the advisory is written as a dead letter for
        each handler of the event."""
        (seq,) = await publish(server.js, server.namespace, [Job(7)])
        settings = JetStreamConsumerSettings(ack_wait=1.0, max_deliver=2)
        # Create the durable as a worker would, then play a worker that fetches both
        # deliveries and dies without settling either.
        wanted = wanted_config("g", server.namespace, settings, {}, server.version)
        await ensure_consumer(server.js, server.stream, "g", wanted, server_version=server.version)
        dead = await server.js.pull_subscribe_bind(durable=group_token("g"), stream=server.stream)
        for _ in range(2):
            (msg,) = await dead.fetch(1, timeout=10)
            assert msg.metadata.sequence.stream == seq
        await dead.unsubscribe()
        live, store = bus_on(server, ack_wait=1.0, max_deliver=2)
        live.subscribe(Job, name="a")(_noop)
        live.subscribe(Job, name="b")(_noop)
        stop = asyncio.Event()
        async with live:
            following = asyncio.create_task(live.follow(stop))
            await until(lambda: _count(store, 2))
            stop.set()
            await following
        letters = await store.list_dead_letters()
        assert sorted(letter.handler for letter in letters) == ["a", "b"]
        assert {letter.seq for letter in letters} == {seq}
        assert {letter.error_type for letter in letters} == {
            "plugins.nats.consumer.MaxDeliveriesError"
        }
        assert {letter.attempts for letter in letters} == {2}

    async def test_two_workers_share_the_group(self, server: Server) -> None:
        """Two workers following one group handle 200 events between them, each once."""
        seen: dict[str, list[int]] = {"a": [], "b": []}
        buses = []
        for name in seen:
            bus, _ = bus_on(server, ack_wait=5.0, max_in_flight=4)

            async def work(event: Job, name: str = name) -> None:
                seen[name].append(event.n)
                await asyncio.sleep(0.002)

            bus.subscribe(Job, name="work")(work)
            buses.append(bus)
        stop = asyncio.Event()
        for bus in buses:
            await bus.start()
        following = [asyncio.create_task(bus.follow(stop)) for bus in buses]
        await publish(server.js, server.namespace, [Job(n) for n in range(200)])
        await until(lambda: _handled(seen, 200))
        stop.set()
        await asyncio.gather(*following)
        for bus in buses:
            await bus.aclose()
        both = seen["a"] + seen["b"]
        assert sorted(both) == list(range(200))
        assert seen["a"]
        assert seen["b"]


async def _ack_floor(server: Server, seq: int) -> bool:
    return bool((await info(server)).ack_floor.stream_seq == seq)


async def _count(store: StreamStore, n: int) -> bool:
    return await store.count_dead_letters() >= n


async def _handled(seen: dict[str, list[int]], n: int) -> bool:
    return sum(len(v) for v in seen.values()) >= n


class TestOrdered:
    async def test_ordered_mode_runs_one_event_at_a_time_in_stream_order(
        self, server: Server
    ) -> None:
        """ordered: max_ack_pending=1 on the durable, so two workers following the group
        never run two events at once and see them in stream order."""
        order: list[int] = []
        running = 0
        most = 0
        buses = []
        for _ in range(2):
            bus, _ = bus_on(server, ack_wait=5.0, ordered=True)

            async def work(event: Job) -> None:
                nonlocal running, most
                running += 1
                most = max(most, running)
                await asyncio.sleep(0.001)
                order.append(event.n)
                running -= 1

            bus.subscribe(Job, name="work")(work)
            buses.append(bus)
        for bus in buses:
            await bus.start()
        assert (await info(server)).config.max_ack_pending == 1
        stop = asyncio.Event()
        following = [asyncio.create_task(bus.follow(stop)) for bus in buses]
        await publish(server.js, server.namespace, [Job(n) for n in range(30)])
        await until(lambda: _done(order, 30))
        stop.set()
        await asyncio.gather(*following)
        for bus in buses:
            await bus.aclose()
        assert order == list(range(30))
        assert most == 1


async def _done(order: list[int], n: int) -> bool:
    return len(order) >= n
