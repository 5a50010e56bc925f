"""Bench: measuring the bus against its service levels — throughput of durable publish
and dispatch, and the overhead local dispatch adds to each publish.

``run_benchmark`` is what ``pubsub bench`` runs. Two phases:

* **throughput**: ``publishers`` concurrent tasks publish ``events`` events through a
  bus on the chosen store (``memory`` or a fresh SQLite file in a temporary folder) with
  ``handlers`` no-op handlers; events per second over the whole run, drain included.
* **dispatch overhead**: one publisher publishes on a bus without a store, one event at
  a time, and each ``publish_async`` is timed: with no-op handlers that time is the
  bus's own cost (routing, policies, metrics, outcomes). p50, p99 and max. Measured two
  ways, sample by sample: the event built before the clock starts, and the event built
  inside the timed call (``publish_async(BenchEvent(i))``, what users pay).

The results are compared with the seed's service levels (> 10,000 events/s, < 1 ms
overhead). Wall-clock numbers come from ``time.perf_counter``; they are measurements,
never assertions of a unit test. This module is library code the bench command calls:
it imports neither typer nor rich.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core import Event, EventBus, EventStore, Router, open_store

__all__ = [
    "SEED_MAX_OVERHEAD",
    "SEED_MIN_THROUGHPUT",
    "BenchConfig",
    "BenchEvent",
    "BenchReport",
    "ServiceLevelCheck",
    "run_benchmark",
]

SEED_MIN_THROUGHPUT = 10_000.0  # events per second
SEED_MAX_OVERHEAD = 0.001  # seconds of dispatch overhead per event (p99)

StoreKind = Literal["memory", "sqlite"]


@dataclass(frozen=True, slots=True)
class BenchEvent(Event, type_name="pubsub.bench"):
    """The event the benchmark publishes."""

    n: int


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to measure. ``overhead_samples`` defaults to ``min(events, 20_000)``."""

    events: int = 20_000
    handlers: int = 1
    store: StoreKind = "memory"
    publishers: int = 16
    overhead_samples: int | None = None
    directory: Path | None = None  # where the SQLite file goes (default: a temp folder)

    def __post_init__(self) -> None:
        if self.events < 1 or self.handlers < 0 or self.publishers < 1:
            raise ValueError("events and publishers must be >= 1, handlers >= 0")
        if self.store not in ("memory", "sqlite"):
            raise ValueError(f"store must be 'memory' or 'sqlite', got {self.store!r}")

    @property
    def samples(self) -> int:
        return (
            self.overhead_samples if self.overhead_samples is not None else min(self.events, 20_000)
        )


@dataclass(frozen=True, slots=True)
class ServiceLevelCheck:
    """One measured value against its service level."""

    name: str
    value: float
    unit: str
    target: str
    passed: bool | None  # None: informational, no service level


@dataclass(frozen=True, slots=True)
class BenchReport:
    """The measurements of one run."""

    config: BenchConfig
    store_url: str
    durability: str
    events: int
    duration: float
    throughput: float
    overhead_p50: float
    overhead_p99: float
    overhead_max: float
    publish_p50: float
    publish_p99: float
    handled: int
    failed: int
    checks: list[ServiceLevelCheck] = field(default_factory=list)
    built_p50: float = 0.0  # dispatch overhead with the event built inside the timed call
    built_p99: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)


def _router(handlers: int) -> Router:
    router = Router(name="bench")
    for i in range(handlers):

        async def noop(event: BenchEvent) -> None:
            return None

        router.add(BenchEvent, noop, name=f"bench.noop{i}")
    return router


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _throughput(
    config: BenchConfig, store: EventStore, progress: Callable[[int], None] | None
) -> tuple[float, list[float], int, int]:
    bus = EventBus(store, group="bench")
    bus.include(_router(config.handlers))
    latencies: list[float] = []
    done = 0
    per = [config.events // config.publishers] * config.publishers
    for i in range(config.events % config.publishers):
        per[i] += 1

    async def publisher(count: int, offset: int) -> None:
        nonlocal done
        clock = time.perf_counter
        for k in range(count):
            t0 = clock()
            await bus.publish_async(BenchEvent(offset + k))
            latencies.append(clock() - t0)
            done += 1
            if progress is not None and done % 500 == 0:
                progress(500)

    async with bus:
        start = time.perf_counter()
        offsets = [sum(per[:i]) for i in range(len(per))]
        await asyncio.gather(*(publisher(c, o) for c, o in zip(per, offsets, strict=True)))
        await bus.drain()
        duration = time.perf_counter() - start
    if progress is not None:
        progress(done % 500)
    stats = bus.statistics()
    return duration, latencies, stats.handled_ok, stats.handled_failed


async def _overhead(
    config: BenchConfig, progress: Callable[[int], None] | None
) -> tuple[list[float], list[float]]:
    """Per-publish seconds with the event prebuilt and with it built in the timed call,
    one of each per sample (so both ways see the same machine load)."""
    bus = EventBus()
    bus.include(_router(config.handlers))
    clock = time.perf_counter
    for i in range(min(1000, config.samples)):  # warm-up: caches, routes, code paths
        await bus.publish_async(BenchEvent(i))
    prebuilt: list[float] = []
    built: list[float] = []
    for i in range(config.samples):
        event = BenchEvent(i)
        t0 = clock()
        await bus.publish_async(event)
        t1 = clock()
        await bus.publish_async(BenchEvent(i))
        t2 = clock()
        prebuilt.append(t1 - t0)
        built.append(t2 - t1)
        if progress is not None and (i + 1) % 500 == 0:
            progress(500)
    if progress is not None:
        progress(config.samples % 500)
    await bus.aclose()
    return prebuilt, built


async def run_benchmark(
    config: BenchConfig, *, progress: Callable[[int], None] | None = None
) -> BenchReport:
    """Run both phases; ``progress(n)`` is called with the number of events just done
    (``config.events + config.samples`` in all)."""
    with tempfile.TemporaryDirectory(prefix="pubsub-bench-", dir=config.directory) as tmp:
        url = "memory://" if config.store == "memory" else f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = await open_store(url)
        try:
            duration, latencies, handled, failed = await _throughput(config, store, progress)
            durability = store.durability
        finally:
            await store.aclose()
    prebuilt, built = await _overhead(config, progress)
    overhead = sorted(prebuilt)
    built.sort()
    latencies.sort()
    throughput = config.events / duration if duration > 0 else float("inf")
    p50, p99, worst = (
        _percentile(overhead, 0.50),
        _percentile(overhead, 0.99),
        overhead[-1] if overhead else 0.0,
    )
    checks = [
        ServiceLevelCheck(
            f"throughput ({config.store}, {config.publishers} publisher(s))",
            throughput,
            "events/s",
            f"> {SEED_MIN_THROUGHPUT:,.0f}",
            throughput > SEED_MIN_THROUGHPUT,
        ),
        ServiceLevelCheck(
            "dispatch overhead p50",
            p50,
            "ms",
            f"< {SEED_MAX_OVERHEAD * 1e3:g}",
            p50 < SEED_MAX_OVERHEAD,
        ),
        ServiceLevelCheck(
            "dispatch overhead p99",
            p99,
            "ms",
            f"< {SEED_MAX_OVERHEAD * 1e3:g}",
            p99 < SEED_MAX_OVERHEAD,
        ),
        ServiceLevelCheck("dispatch overhead max", worst, "ms", "-", None),
        ServiceLevelCheck(
            "build + dispatch p50",
            _percentile(built, 0.50),
            "ms",
            f"< {SEED_MAX_OVERHEAD * 1e3:g}",
            _percentile(built, 0.50) < SEED_MAX_OVERHEAD,
        ),
        ServiceLevelCheck(
            "build + dispatch p99",
            _percentile(built, 0.99),
            "ms",
            f"< {SEED_MAX_OVERHEAD * 1e3:g}",
            _percentile(built, 0.99) < SEED_MAX_OVERHEAD,
        ),
        ServiceLevelCheck(
            f"publish latency p50 ({config.store})", _percentile(latencies, 0.5), "ms", "-", None
        ),
        ServiceLevelCheck(
            f"publish latency p99 ({config.store})", _percentile(latencies, 0.99), "ms", "-", None
        ),
    ]
    return BenchReport(
        config=config,
        store_url=url,
        durability=durability,
        events=config.events,
        duration=duration,
        throughput=throughput,
        overhead_p50=p50,
        overhead_p99=p99,
        overhead_max=worst,
        publish_p50=_percentile(latencies, 0.5),
        publish_p99=_percentile(latencies, 0.99),
        handled=handled,
        failed=failed,
        checks=checks,
        built_p50=_percentile(built, 0.50),
        built_p99=_percentile(built, 0.99),
    )
