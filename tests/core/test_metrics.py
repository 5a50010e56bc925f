"""Metrics: per event type and per handler counts, durations with p50/p99 from a bounded
ring, breaker states, all readable as a plain snapshot dict."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson

from core import BreakerPolicy, Event, EventBus, InMemoryMetrics, OutcomeStatus, RetryPolicy
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Sale(Event, type_name="tests.core.metrics.Sale"):
    n: int = 0


@dataclass(frozen=True, slots=True)
class Refund(Event, type_name="tests.core.metrics.Refund"):
    n: int = 0


class TestCounts:
    async def test_snapshot_counts_per_type_and_handler(self) -> None:
        """Published, succeeded, failed, retried, timed out, dead-lettered and rejected
        are counted per event type and per handler."""
        never = asyncio.Event()
        clock = FakeClock()

        async def ok(event: Event) -> None:
            pass

        async def flaky(event: Sale) -> None:
            if event.n % 2:
                raise ValueError("odd")

        async def slow(event: Refund) -> None:
            await never.wait()

        async def broken(event: Refund) -> None:
            raise KeyError("x")

        async with EventBus(clock=clock) as bus:
            bus.subscribe(Event, name="ok")(ok)
            bus.subscribe(Sale, name="flaky", retry=RetryPolicy(max_attempts=2, base=0))(flaky)
            bus.subscribe(Refund, name="slow", timeout=0.01)(slow)
            bus.subscribe(Refund, name="broken", breaker=BreakerPolicy(failure_threshold=1))(broken)
            for n in range(4):
                await bus.publish_async(Sale(n))
            await bus.publish_async(Refund())
            await bus.publish_async(Refund())
            snap = bus.metrics.snapshot()
        types, handlers = snap["event_types"], snap["handlers"]
        assert types["tests.core.metrics.Sale"]["published"] == 4
        assert types["tests.core.metrics.Refund"]["published"] == 2
        assert types["tests.core.metrics.Sale"]["succeeded"] == 4 + 2
        assert handlers["ok"]["succeeded"] == 6
        assert handlers["ok"]["duration"]["count"] == 6
        flaky_row = handlers["flaky"]
        assert (flaky_row["succeeded"], flaky_row["failed"], flaky_row["retried"]) == (2, 2, 2)
        assert flaky_row["dead_lettered"] == 2
        assert handlers["slow"]["timed_out"] == 2
        assert (handlers["broken"]["failed"], handlers["broken"]["rejected"]) == (1, 1)
        assert handlers["broken"]["dead_lettered"] == 2
        assert handlers["broken"]["breaker"] == "open"
        assert handlers["ok"]["breaker"] is None
        assert orjson.loads(orjson.dumps(snap)) == snap  # a plain, JSON-compatible dict

    async def test_two_buses_count_separately(self) -> None:
        """Each bus has its own collector by default."""
        async with EventBus() as a, EventBus() as b:
            await a.publish_async(Sale())
        assert a.metrics.snapshot()["event_types"]["tests.core.metrics.Sale"]["published"] == 1
        assert b.metrics.snapshot()["event_types"] == {}


class TestDurations:
    def test_percentiles_and_summary(self) -> None:
        """count, sum, max, mean, p50 and p99 are exact for known durations."""
        metrics = InMemoryMetrics()
        rec = metrics.for_handler("h", "T")
        for ms in range(1, 102):  # 1..101 ms
            rec.succeeded(ms / 1000)
        d = metrics.snapshot()["handlers"]["h"]["duration"]
        assert d["count"] == 101
        assert d["max"] == 0.101
        assert d["p50"] == 0.051
        assert d["p99"] == 0.100
        assert abs(d["sum"] - 5.151) < 1e-9
        assert abs(d["mean"] - 0.051) < 1e-9

    def test_ring_is_bounded_and_keeps_recent_samples(self) -> None:
        """After more samples than the ring holds, percentiles reflect only recent ones,
        while count, sum and max cover all of them."""
        metrics = InMemoryMetrics()
        rec = metrics.for_handler("h", "T")
        for _ in range(5000):
            rec.succeeded(9.0)
        for _ in range(5000):
            rec.succeeded(1.0)
        d = metrics.snapshot()["handlers"]["h"]["duration"]
        assert (d["p50"], d["p99"]) == (1.0, 1.0)
        assert (d["count"], d["max"], d["sum"]) == (10000, 9.0, 50000.0)

    def test_failures_have_durations_too(self) -> None:
        """Failed outcomes count by status and contribute their duration."""
        metrics = InMemoryMetrics()
        rec = metrics.for_handler("h", "T")
        rec.failed(0.5, OutcomeStatus.FAILED)
        rec.failed(0.25, OutcomeStatus.TIMED_OUT)
        rec.failed(0.0, OutcomeStatus.REJECTED)
        row = metrics.snapshot()["handlers"]["h"]
        assert (row["failed"], row["timed_out"], row["rejected"], row["succeeded"]) == (1, 1, 1, 0)
        assert row["duration"]["count"] == 3
        assert row["duration"]["max"] == 0.5

    def test_empty_snapshot(self) -> None:
        """A fresh collector's snapshot is empty."""
        assert InMemoryMetrics().snapshot() == {"event_types": {}, "handlers": {}}
