"""The worker's side of the Prometheus plugin: gauges read from the bus and its store on
the event loop (a scrape, on the HTTP thread, only reads the last reading), the HTTP
server that serves them, and the ``HOST:PORT`` addresses it listens on."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import urllib.request
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import BreakerPolicy, Event, EventBus, StoreUnavailableError
from core.memory import MemoryEventStore
from core.store import GroupInfo
from plugins.prometheus import (
    ListenAddress,
    MetricsServer,
    MetricsServerError,
    PrometheusMetrics,
    parse_address,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.prometheus.Job"):
    n: int = 0
    fail: bool = False


async def work(event: Job) -> None:
    if event.fail:
        raise RuntimeError("job failed")


class CountingStore(MemoryEventStore):
    """A memory store that notes which thread asked it for what the gauges read."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, int]] = []
        self.fail_groups = 0  # how many of the next groups() calls raise
        self.asked_groups = asyncio.Event()

    async def last_seq(self) -> int:
        self.asked.append(("last_seq", threading.get_ident()))
        return await super().last_seq()

    async def groups(self) -> list[GroupInfo]:
        self.asked.append(("groups", threading.get_ident()))
        self.asked_groups.set()
        if self.fail_groups:
            self.fail_groups -= 1
            raise StoreUnavailableError("memory://", "is busy")
        return await super().groups()


class TestWorkerGauges:
    async def test_checkpoint_lag_dead_letters_and_log_end(self) -> None:
        """After a run, the gauges show the log's end, each group's committed checkpoint
        and lag (another group's too), and the open dead letters the store counts."""
        store = MemoryEventStore()
        metrics = PrometheusMetrics()
        async with EventBus(store, group="workers", metrics=metrics) as bus:
            bus.subscribe(Job, name="work")(work)
            for n in range(6):
                await bus.publish_async(Job(n, fail=n in (1, 4)))
        await store.commit_progress("reports", 2)
        reading = await metrics.refresh(bus)
        s = parse(http_free_exposition(metrics))
        assert value(s, "pubsub_log_last_seq") == 6
        assert value(s, "pubsub_consumer_checkpoint", group="workers") == 6
        assert value(s, "pubsub_consumer_lag", group="workers") == 0
        assert value(s, "pubsub_consumer_checkpoint", group="reports") == 2
        assert value(s, "pubsub_consumer_lag", group="reports") == 4
        assert value(s, "pubsub_dead_letters_open") == await store.count_dead_letters() == 2
        assert value(s, "pubsub_in_flight", group="workers") == 0
        assert value(s, "pubsub_undecodable_events_total", group="workers") == 0
        assert reading.group == "workers"
        assert metrics.snapshot()["worker"]["groups"]["reports"] == {"checkpoint": 2, "lag": 4}

    async def test_in_flight_counts_events_being_dispatched(self) -> None:
        """Stored events whose handlers are still running show in pubsub_in_flight."""
        gate = asyncio.Event()
        started = 0
        all_started = asyncio.Event()

        async def gated(event: Job) -> None:
            nonlocal started
            started += 1
            if started == 3:
                all_started.set()
            await gate.wait()

        store = MemoryEventStore()
        async with EventBus(store, consume=False) as producer:
            for n in range(3):
                await producer.publish_async(Job(n))
        metrics = PrometheusMetrics()
        bus = EventBus(store, metrics=metrics)
        bus.subscribe(Job, name="gated")(gated)
        async with bus:  # the catch-up starts a task per stored event
            await asyncio.wait_for(all_started.wait(), 10)
            busy = await metrics.refresh(bus)
            gate.set()
            assert await bus.drain(10)
            idle = await metrics.refresh(bus)
        assert (busy.in_flight, idle.in_flight) == (3, 0)

    async def test_breakers_show_before_their_first_transition(self) -> None:
        """A handler with a breaker shows state 0 (closed) once read; one without none."""
        metrics = PrometheusMetrics()
        async with EventBus(MemoryEventStore(), metrics=metrics) as bus:
            bus.subscribe(Job, name="guarded", breaker=BreakerPolicy())(work)
            bus.subscribe(Job, name="plain")(work)
            await metrics.refresh(bus)
        s = parse(http_free_exposition(metrics))
        assert value(s, "pubsub_breaker_state", handler="guarded") == 0
        assert value(s, "pubsub_breaker_state", handler="plain") is None

    async def test_scrapes_read_the_last_reading_and_never_the_store(self) -> None:
        """Scrapes over HTTP (on the server's thread) show the reading made on the loop
        and ask the store nothing; only refresh, on the loop's thread, asks it."""
        store = CountingStore()
        metrics = PrometheusMetrics()
        async with EventBus(store, metrics=metrics) as bus:
            bus.subscribe(Job, name="work")(work)
            for n in range(4):
                await bus.publish_async(Job(n, fail=n == 0))
        await metrics.refresh(bus)  # closed: its dead letter is committed
        asked = list(store.asked)
        with metrics.serve(ListenAddress("127.0.0.1", 0)) as server:
            texts = [await asyncio.to_thread(http_get, server.url) for _ in range(3)]
        assert store.asked == asked
        assert {thread for _, thread in asked} == {threading.get_ident()}
        for text in texts:
            s = parse(text)
            assert value(s, "pubsub_log_last_seq") == 4
            assert value(s, "pubsub_dead_letters_open") == 1
            assert (
                value(
                    s,
                    "pubsub_handler_calls_total",
                    handler="work",
                    type=Job.event_type,
                    outcome="ok",
                )
                == 3
            )

    async def test_watch_keeps_the_last_reading_when_a_refresh_fails(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A refresh that raises is one warning; the last reading stays and the next
        refresh replaces it."""
        store = CountingStore()
        metrics = PrometheusMetrics()
        async with EventBus(store, metrics=metrics) as bus:
            bus.subscribe(Job, name="work")(work)
            await bus.publish_async(Job())
            first = await metrics.refresh(bus)
            store.fail_groups = 1
            await bus.publish_async(Job())
            with caplog.at_level(logging.WARNING, logger="pubsub"):
                watcher = asyncio.create_task(metrics.watch(bus, every=0))
                try:
                    for _ in range(3):  # the failing refresh, then two good ones
                        store.asked_groups.clear()
                        await asyncio.wait_for(store.asked_groups.wait(), 10)
                    await asyncio.sleep(0)
                finally:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
        assert first.last_seq == 1
        assert metrics.reading is not None
        assert metrics.reading.last_seq == 2
        warnings = [r for r in caplog.records if "metrics refresh raised" in r.getMessage()]
        assert len(warnings) == 1
        assert "StoreUnavailableError" in warnings[0].getMessage()


def http_free_exposition(metrics: PrometheusMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


class TestServer:
    async def test_serves_metrics_until_closed(self) -> None:
        """Port 0 takes a free port; /metrics answers with the registry; after close
        nothing listens there."""
        metrics = PrometheusMetrics()
        metrics.for_event_type("T").published()
        server = metrics.serve(ListenAddress("127.0.0.1", 0))
        try:
            assert server.address.port != 0
            assert server.url == f"http://127.0.0.1:{server.address.port}/metrics"
            text = await asyncio.to_thread(http_get, server.url)
        finally:
            server.close()
        assert value(parse(text), "pubsub_events_published_total", type="T") == 1
        with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
            socket.create_connection(("127.0.0.1", server.address.port), timeout=10).close()

    def test_a_port_in_use_is_one_error_naming_it(self) -> None:
        """Listening where another socket listens is a MetricsServerError with the
        address and the reason."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(MetricsServerError) as info:
                MetricsServer(PrometheusMetrics().registry, ListenAddress("127.0.0.1", port))
        assert info.value.address == ListenAddress("127.0.0.1", port)
        assert "in use" in info.value.reason
        assert str(info.value).startswith(f"cannot serve metrics on 127.0.0.1:{port}: ")
        assert "\n" not in str(info.value)


class TestAddress:
    @pytest.mark.parametrize(
        ("text", "host", "port"),
        [
            pytest.param("127.0.0.1:9464", "127.0.0.1", 9464, id="ipv4"),
            pytest.param(":9464", "127.0.0.1", 9464, id="bare-port-is-loopback"),
            pytest.param("9464", "127.0.0.1", 9464, id="port-only-is-loopback"),
            pytest.param("0.0.0.0:80", "0.0.0.0", 80, id="all-interfaces-when-asked"),
            pytest.param("[::1]:9464", "::1", 9464, id="ipv6"),
            pytest.param("localhost:0", "localhost", 0, id="any-free-port"),
            pytest.param(" metrics.internal:9100 ", "metrics.internal", 9100, id="name"),
        ],
    )
    def test_parses(self, text: str, host: str, port: int) -> None:
        """HOST:PORT, :PORT, PORT and [IPv6]:PORT; no host means 127.0.0.1."""
        assert parse_address(text) == ListenAddress(host, port)

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            pytest.param("", "empty", id="empty"),
            pytest.param("host:", "port number", id="no-port"),
            pytest.param("host:http", "port number", id="named-port"),
            pytest.param("1:70000", "out of range", id="port-too-big"),
            pytest.param("::1:9464", "brackets", id="ipv6-without-brackets"),
            pytest.param("[::1]9464", r"\[IPv6\]:PORT", id="ipv6-without-colon"),
            pytest.param("[nothost]:1", "not an IPv6 address", id="bracketed-name"),
            pytest.param("a b:1", "host name", id="space-in-host"),
        ],
    )
    def test_refuses(self, text: str, problem: str) -> None:
        """Anything else is a ValueError saying what is expected."""
        with pytest.raises(ValueError, match=problem):
            parse_address(text)

    @pytest.mark.parametrize(
        ("address", "loopback"),
        [
            pytest.param(ListenAddress("127.0.0.1", 1), True, id="ipv4-loopback"),
            pytest.param(ListenAddress("::1", 1), True, id="ipv6-loopback"),
            pytest.param(ListenAddress("localhost", 1), True, id="localhost"),
            pytest.param(ListenAddress("0.0.0.0", 1), False, id="all-interfaces"),
            pytest.param(ListenAddress("metrics.internal", 1), False, id="a-name"),
        ],
    )
    def test_loopback(self, address: ListenAddress, loopback: bool) -> None:
        """Only loopback addresses (and localhost) count as private to this machine."""
        assert address.loopback is loopback

    def test_ipv6_prints_in_brackets(self) -> None:
        """An IPv6 address is written back in brackets, as a URL needs it."""
        assert str(ListenAddress("::1", 9464)) == "[::1]:9464"
