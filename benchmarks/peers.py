"""Peers benchmark: pubsub against other Python event buses, side by side in one run.

Scenarios (each system does what it can express; the rest is marked n/a):

* one async handler;
* ten async handlers on one event;
* one sync handler (pubsub: in the executor, its default, and inline, the opt-in mode);
* a handler subscribed to a base class receiving a subclass.

Every scenario runs two ways: with the events built before the clock starts
("prebuilt") and with each event built inside the timed loop, as users publish ("built
per publish"). pubsub and the floor build a pubsub ``Event`` subclass; blinker, pyee and
PyPubSub get a plain ``@dataclass(frozen=True, slots=True)`` (the same class for all
three), bubus its own ``BaseEvent``.

An event counts as done when every handler has run: awaiting systems are awaited per
event; fire-and-forget emitters (pyee) emit the whole batch and then wait until the last
handler ran. Each figure is the median of ``--repeat`` runs, taken round-robin (every
case once per round, so drift in machine load weighs on all systems alike); the floor
(a plain ``await handler(event)`` loop, or a plain call for sync) is measured in the
same run.
Peers that are not installed are skipped with a note (``pip install -e '.[bench]'``).

    python benchmarks/peers.py [--events 50000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from core import EventBus
from pubsub_cli.benchmarking.scenarios import (
    SCENARIOS as PUBSUB_SCENARIOS,
)
from pubsub_cli.benchmarking.scenarios import (
    WAYS,
    Case,
    Counter,
    Runner,
    both_ways,
    floor_cases,
    label,
    measure_interleaved,
    pubsub_cases,
    quiet_gc,
    timed_loop,
    timed_sync_loop,
)

KINDS = ("1 async handler", "10 async handlers", "1 sync handler", "base-class subscriber")
SCENARIOS = tuple(label(kind, way) for kind in KINDS for way in WAYS)
EXECUTOR = tuple(
    label(kind, way)
    for kind in ("1 sync handler (executor)", "1 sync handler (run_in_executor)")
    for way in WAYS
)
assert set(SCENARIOS) | set(EXECUTOR[: len(WAYS)]) == set(PUBSUB_SCENARIOS)


_KEEP: list[Any] = []
# Coroutine functions that stop a peer's background machinery at the end of the run
# (bubus buses keep tasks that asyncio.run would otherwise wait for at exit).
_CLEANUP: list[Callable[[], Awaitable[Any]]] = []


@dataclass(frozen=True, slots=True)
class PlainBase:
    """What the peers carry: a plain frozen slots dataclass with pubsub's field."""

    n: int


@dataclass(frozen=True, slots=True)
class PlainDerived(PlainBase):
    pass


# -- peers --------------------------------------------------------------------------


def blinker_cases(counter: Counter) -> dict[str, Case]:
    import blinker

    async def handler(sender: Any) -> None:
        counter.hit()

    def sync_handler(sender: Any) -> None:
        counter.hit()

    one = blinker.Signal()
    one.connect(handler, weak=False)
    ten = blinker.Signal()
    for _ in range(10):

        async def h(sender: Any) -> None:
            counter.hit()

        ten.connect(h, weak=False)  # distinct receivers: blinker dedups by identity
    sync = blinker.Signal()
    sync.connect(sync_handler, weak=False)
    return {
        **both_ways("1 async handler", timed_loop, one.send_async, PlainBase),
        **both_ways("10 async handlers", timed_loop, ten.send_async, PlainBase),
        **both_ways("1 sync handler", timed_sync_loop, sync.send, PlainBase),
    }


def pyee_cases(counter: Counter) -> dict[str, Case]:
    from pyee import EventEmitter
    from pyee.asyncio import AsyncIOEventEmitter

    def fire_and_forget(emitter: Any, handlers: int, built: bool) -> Runner:
        async def run(n: int) -> float:
            events = None if built else [PlainBase(i) for i in range(n)]
            counter.n = 0
            counter.target = n * handlers
            counter.done = asyncio.Event()
            with quiet_gc():
                t0 = time.perf_counter()
                if events is None:
                    for i in range(n):
                        emitter.emit("tick", PlainBase(i))
                else:
                    for e in events:
                        emitter.emit("tick", e)
                await counter.done.wait()
                elapsed = time.perf_counter() - t0
            counter.done = None
            return elapsed

        return run

    async def handler(e: Any) -> None:
        counter.hit()

    def sync_handler(e: Any) -> None:
        counter.hit()

    one = AsyncIOEventEmitter()
    one.on("tick", handler)
    ten = AsyncIOEventEmitter()
    for _ in range(10):

        async def h(e: Any) -> None:
            counter.hit()

        ten.add_listener("tick", h)  # distinct listeners: pyee keeps one per function
    sync = EventEmitter()
    sync.on("tick", sync_handler)
    return {
        **{
            label("1 async handler", way): (fire_and_forget(one, 1, way != "prebuilt"), 1)
            for way in WAYS
        },
        **{
            label("10 async handlers", way): (fire_and_forget(ten, 10, way != "prebuilt"), 1)
            for way in WAYS
        },
        **both_ways("1 sync handler", timed_sync_loop, lambda e: sync.emit("tick", e), PlainBase),
    }


def pypubsub_cases(counter: Counter) -> dict[str, Case]:
    from pubsub import pub  # PyPubSub: synchronous only, hierarchical topics

    def listener(event: Any) -> None:
        counter.hit()

    _KEEP.append(listener)  # PyPubSub holds listeners weakly
    pub.subscribe(listener, "bench_one")
    pub.subscribe(listener, "bench_base")
    # A message on the subtopic reaches the parent topic's listeners: the base-class case.
    return {
        **both_ways(
            "1 sync handler",
            timed_sync_loop,
            lambda e: pub.sendMessage("bench_one", event=e),
            PlainBase,
        ),
        **both_ways(
            "base-class subscriber",
            timed_sync_loop,
            lambda e: pub.sendMessage("bench_base.derived", event=e),
            PlainDerived,
        ),
    }


def bubus_cases(counter: Counter) -> dict[str, Case]:
    import bubus

    class Tick(bubus.BaseEvent[None]):
        n: int = 0

    async def handler(event: Any) -> None:
        counter.hit()

    def sync_handler(event: Any) -> None:
        counter.hit()

    def make_bus(name: str, handlers: list[Any]) -> Any:
        bus = bubus.EventBus(name=name)
        for fn in handlers:
            bus.on(Tick, fn)
        _CLEANUP.append(lambda: bus.stop(timeout=1.0, clear=True))
        return bus

    def distinct(i: int) -> Any:
        async def h(event: Any) -> None:
            counter.hit()

        h.__name__ = h.__qualname__ = f"handler{i}"  # bubus warns on repeated names
        return h

    one = make_bus("bench_one", [handler])
    ten = make_bus("bench_ten", [distinct(i) for i in range(10)])
    sync = make_bus("bench_sync", [sync_handler])
    # bubus keys handlers by class name: a Tick handler does not see SubTick.
    return {
        **both_ways("1 async handler", timed_loop, one.dispatch, lambda i: Tick(n=i), 100),
        **both_ways("10 async handlers", timed_loop, ten.dispatch, lambda i: Tick(n=i), 500),
        **both_ways("1 sync handler", timed_loop, sync.dispatch, lambda i: Tick(n=i), 100),
    }


PEERS: dict[str, tuple[str, Callable[[Counter], dict[str, Case]]]] = {
    "blinker": ("blinker", blinker_cases),
    "pyee": ("pyee", pyee_cases),
    "pypubsub": ("pubsub", pypubsub_cases),
    "bubus": ("bubus", bubus_cases),
}


async def run_all(events: int, repeat: int, only: list[str] | None) -> dict[str, Any]:
    counter = Counter()
    buses: list[EventBus] = []
    systems: dict[str, dict[str, Case]] = {
        "floor": floor_cases(counter),
        "pubsub": pubsub_cases(counter, buses),
    }
    skipped: dict[str, str] = {}
    for name, (module, factory) in PEERS.items():
        if only and name not in only:
            continue
        if importlib.util.find_spec(module) is None:
            skipped[name] = "not installed (pip install -e '.[bench]')"
            continue
        try:
            systems[name] = factory(counter)
        except Exception as exc:  # a peer that fails to set up is reported, not fatal
            skipped[name] = f"setup failed: {type(exc).__name__}: {exc}"
    flat = {
        (system, label): case for system, cases in systems.items() for label, case in cases.items()
    }
    medians = await measure_interleaved(flat, events, repeat)
    table: dict[str, dict[str, float | None]] = {system: {} for system in systems}
    for (system, scenario), seconds in medians.items():
        table[system][scenario] = seconds
    for bus in buses:
        await bus.aclose()
    for stop in _CLEANUP:
        await stop()
    return {
        "python": sys.version.split()[0],
        "events": events,
        "repeat": repeat,
        "seconds_per_event": table,
        "skipped": skipped,
    }


def render(report: dict[str, Any]) -> str:
    """One row per scenario (each way), one column per system: events/s (us/event) and
    the ratio of pubsub's events/s to that system's (above 1: pubsub is faster)."""
    table = report["seconds_per_event"]
    ours = table["pubsub"]
    systems = list(table)
    lines = [
        f"events/s (us/event) - median of {report['repeat']}, Python {report['python']}; "
        "ratio = pubsub's events/s / that system's"
    ]
    header = f"{'scenario':45}" + "".join(f" | {name:>28}" for name in systems)
    lines += [header, "-" * len(header)]
    for scenario in (*SCENARIOS, *EXECUTOR):
        cells = []
        for system in systems:
            value = table[system].get(scenario)
            if value is None:
                cells.append(f" | {'n/a':>28}")
                continue
            ref = ours.get(scenario)
            if ref is None and "run_in_executor" in scenario:
                ref = ours.get(scenario.replace("run_in_executor", "executor"))
            ratio = f"{value / ref:5.2f}x" if ref else "  -   "
            cells.append(f" | {1 / value:10,.0f} ({value * 1e6:7.3f}) {ratio}")
        lines.append(f"{scenario:45}" + "".join(cells))
    for name, why in report["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="pubsub against its Python peers")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="peers to include (default: all installed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run_all(args.events, args.repeat, args.only))
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(report))


if __name__ == "__main__":
    main()
