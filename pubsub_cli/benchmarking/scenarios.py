"""Scenarios: the per-event cost of the hot path in the shapes users compare buses by,
each next to its floor measured in the same run, each measured two ways.

``run_scenarios`` is what ``pubsub bench --scenarios`` prints and what
``benchmarks/peers.py`` puts pubsub's row and the floor's row of its table from:

* one async handler (floor: a plain ``await handler(event)`` loop);
* ten async handlers on one event (floor: ten direct awaits);
* one sync handler, inline (floor: a plain call) and in the executor (floor: a bare
  ``loop.run_in_executor`` round trip);
* a handler subscribed to a base class receiving a subclass.

Each scenario runs with the events built before the clock starts ("prebuilt") and with
each event built inside the timed loop, as users publish ("built per publish"); the
floor of the second way builds its events the same way. Default policies, metrics on.
Each figure is the median of ``repeat`` timed runs after a warm-up; they are
measurements, never assertions of a unit test. This module is library code the bench
command calls: it imports neither typer nor rich.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core import Event, EventBus

__all__ = [
    "FLOOR_OF",
    "SCENARIOS",
    "SCENARIO_KINDS",
    "WAYS",
    "Case",
    "Counter",
    "Runner",
    "ScenarioBase",
    "ScenarioDerived",
    "both_ways",
    "floor_cases",
    "label",
    "measure",
    "measure_interleaved",
    "pubsub_cases",
    "quiet_gc",
    "run_scenarios",
    "timed_loop",
    "timed_sync_loop",
]

SCENARIO_KINDS = (
    "1 async handler",
    "10 async handlers",
    "1 sync handler",
    "1 sync handler (executor)",
    "base-class subscriber",
)
WAYS = ("prebuilt", "built per publish")


def label(kind: str, way: str) -> str:
    """The name of a scenario measured one way: ``"1 async handler, prebuilt"``."""
    return f"{kind}, {way}"


SCENARIOS = tuple(label(kind, way) for kind in SCENARIO_KINDS for way in WAYS)
# Which floor each pubsub scenario is compared with (same name unless listed).
FLOOR_OF = {
    label("1 sync handler (executor)", way): label("1 sync handler (run_in_executor)", way)
    for way in WAYS
}


@dataclass(frozen=True, slots=True)
class ScenarioBase(Event, type_name="pubsub.bench.Base"):
    n: int


@dataclass(frozen=True, slots=True)
class ScenarioDerived(ScenarioBase, type_name="pubsub.bench.Derived"):
    pass


class Counter:
    """What every handler does: count, so that the work is the same everywhere."""

    __slots__ = ("done", "n", "target")

    def __init__(self) -> None:
        self.n = 0
        self.target = 0
        self.done: asyncio.Event | None = None

    def hit(self) -> None:
        self.n += 1
        if self.n == self.target and self.done is not None:
            self.done.set()


Runner = Callable[[int], Awaitable[float]]  # runs n events, returns seconds
Case = tuple[Runner, int]  # runner and how many events it runs


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect, then keep the cyclic collector off while timing (as ``timeit`` does):
    otherwise a full collection triggered by one system's long-lived garbage (a peer's
    event history, say) lands on whichever system happens to be running."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def timed_loop(
    call: Callable[[Any], Awaitable[Any]], make: Callable[[int], Any], *, built: bool = False
) -> Runner:
    """A runner awaiting ``call(event)`` per event; the events are made by ``make``
    before the clock starts, or inside the timed loop when ``built``."""

    async def prebuilt(n: int) -> float:
        events = [make(i) for i in range(n)]
        with quiet_gc():
            t0 = time.perf_counter()
            for e in events:
                await call(e)
            return time.perf_counter() - t0

    async def per_publish(n: int) -> float:
        with quiet_gc():
            t0 = time.perf_counter()
            for i in range(n):
                await call(make(i))
            return time.perf_counter() - t0

    return per_publish if built else prebuilt


def timed_sync_loop(
    call: Callable[[Any], Any], make: Callable[[int], Any], *, built: bool = False
) -> Runner:
    """``timed_loop`` for a plain call."""

    async def prebuilt(n: int) -> float:
        events = [make(i) for i in range(n)]
        with quiet_gc():
            t0 = time.perf_counter()
            for e in events:
                call(e)
            return time.perf_counter() - t0

    async def per_publish(n: int) -> float:
        with quiet_gc():
            t0 = time.perf_counter()
            for i in range(n):
                call(make(i))
            return time.perf_counter() - t0

    return per_publish if built else prebuilt


def both_ways(
    kind: str,
    loop: Callable[..., Runner],
    call: Callable[[Any], Any],
    make: Callable[[int], Any],
    divisor: int = 1,
) -> dict[str, Case]:
    """The cases of scenario ``kind``: events prebuilt, and built per publish."""
    return {label(kind, way): (loop(call, make, built=way != "prebuilt"), divisor) for way in WAYS}


# -- floor and pubsub ---------------------------------------------------------------


def floor_cases(counter: Counter) -> dict[str, Case]:
    async def handler(e: Any) -> None:
        counter.hit()

    def sync_handler(e: Any) -> None:
        counter.hit()

    async def ten(e: Any) -> None:
        for _ in range(10):
            await handler(e)

    loop_holder: dict[str, Any] = {}

    async def executor(e: Any) -> None:
        loop = loop_holder.get("loop") or asyncio.get_running_loop()
        loop_holder["loop"] = loop
        await loop.run_in_executor(None, sync_handler, e)

    return {
        **both_ways("1 async handler", timed_loop, handler, ScenarioBase),
        **both_ways("10 async handlers", timed_loop, ten, ScenarioBase),
        **both_ways("1 sync handler", timed_sync_loop, sync_handler, ScenarioBase),
        **both_ways("1 sync handler (run_in_executor)", timed_loop, executor, ScenarioBase, 10),
        **both_ways("base-class subscriber", timed_loop, handler, ScenarioDerived),
    }


def pubsub_cases(counter: Counter, buses: list[EventBus]) -> dict[str, Case]:
    async def handler(e: ScenarioBase) -> None:
        counter.hit()

    def sync_handler(e: ScenarioBase) -> None:
        counter.hit()

    def bus_with(n: int, fn: Any, **opts: Any) -> EventBus:
        bus = EventBus()
        for i in range(n):
            bus.subscribe(ScenarioBase, name=f"h{i}", **opts)(fn)
        buses.append(bus)
        return bus

    one = bus_with(1, handler)
    inline = bus_with(1, sync_handler, inline=True)
    executor = bus_with(1, sync_handler)
    return {
        **both_ways("1 async handler", timed_loop, one.publish_async, ScenarioBase),
        **both_ways(
            "10 async handlers", timed_loop, bus_with(10, handler).publish_async, ScenarioBase
        ),
        **both_ways("1 sync handler", timed_loop, inline.publish_async, ScenarioBase),
        **both_ways(
            "1 sync handler (executor)", timed_loop, executor.publish_async, ScenarioBase, 10
        ),
        **both_ways("base-class subscriber", timed_loop, one.publish_async, ScenarioDerived),
    }


async def measure(case: Case, events: int, repeat: int) -> float:
    """Median seconds per event."""
    run, divisor = case
    n = max(200, events // divisor)
    await run(min(n, 1000))  # warm-up
    times = [await run(n) for _ in range(repeat)]
    return statistics.median(times) / n


async def measure_interleaved(
    cases: dict[tuple[str, str], Case],
    events: int,
    repeat: int,
    progress: Callable[[int], None] | None = None,
) -> dict[tuple[str, str], float]:
    """Median seconds per event of every case, measured round-robin: each repetition
    runs every case once, so a machine that gets busier or quieter during the run
    weighs on every system alike instead of on whichever was measured last.
    ``progress(1)`` after each case's warm-up and after each round."""
    sizes = {key: max(200, events // divisor) for key, (_, divisor) in cases.items()}
    for key, (run, _) in cases.items():
        await run(min(sizes[key], 1000))  # warm-up: caches, routes, code paths
        if progress is not None:
            progress(1)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    for _ in range(repeat):
        for key, (run, _) in cases.items():
            times[key].append(await run(sizes[key]) / sizes[key])
        if progress is not None:
            progress(1)
    return {key: statistics.median(values) for key, values in times.items()}


async def run_scenarios(
    events: int = 50_000, repeat: int = 5, *, progress: Callable[[int], None] | None = None
) -> dict[str, dict[str, float]]:
    """Seconds per event, ``{"pubsub": {scenario: s}, "floor": {scenario: s}}``, with
    the floor's keys as in ``floor_cases``, measured round-robin (see
    ``measure_interleaved``)."""
    counter = Counter()
    buses: list[EventBus] = []
    cases = {
        (system, label): case
        for system, row in (
            ("floor", floor_cases(counter)),
            ("pubsub", pubsub_cases(counter, buses)),
        )
        for label, case in row.items()
    }
    try:
        medians = await measure_interleaved(cases, events, repeat, progress)
    finally:
        for bus in buses:
            await bus.aclose()
    table: dict[str, dict[str, float]] = {"floor": {}, "pubsub": {}}
    for (system, label), seconds in medians.items():
        table[system][label] = seconds
    return table
