"""Dispatch benchmark: the bus's in-memory publish path against the floor, in one run.

Measures, in one process and one run (median of ``--repeat`` repetitions each, taken
round-robin with the cyclic collector off while timing):

* the floor: ``await handler(event)`` in a plain loop;
* ``publish_async`` with 1 async handler, 10 async handlers, 1 sync handler (executor)
  and 1 sync handler in inline mode — default policy, metrics on;
* p50/p99 publish latency from a separate pass that times every call.

Every case runs two ways: with the events built before the clock starts ("prebuilt")
and with each event built inside the timed loop, ``publish_async(Tick(i))``, as users
publish ("built per publish"; its floor is ``await handler(Tick(i))``).

Prints events/s, the cost per event as a multiple of the floor, and the latencies;
``--json`` prints the same as one JSON document. Usage:

    python benchmarks/dispatch.py [--events 100000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from core import Event, EventBus
from pubsub_cli.benchmarking.scenarios import WAYS, label, quiet_gc


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="bench.dispatch.Tick"):
    n: int


async def _noop(event: Tick) -> None:
    return None


def _sync_noop(event: Tick) -> None:
    return None


def _make_bus(handlers: int, *, sync: bool = False, inline: bool = False) -> EventBus:
    bus = EventBus()
    for i in range(handlers):
        if sync:
            bus.subscribe(Tick, name=f"sync{i}", inline=inline)(_sync_noop)
        else:
            bus.subscribe(Tick, name=f"async{i}")(_noop)
    return bus


async def _loop(call: Callable[[Tick], Awaitable[Any]], n: int, built: bool) -> float:
    if built:
        with quiet_gc():
            t0 = time.perf_counter()
            for i in range(n):
                await call(Tick(i))
            return time.perf_counter() - t0
    events = [Tick(i) for i in range(n)]
    with quiet_gc():
        t0 = time.perf_counter()
        for event in events:
            await call(event)
        return time.perf_counter() - t0


async def _latencies(call: Callable[[Tick], Awaitable[Any]], n: int, built: bool) -> list[float]:
    out = []
    clock = time.perf_counter
    events = None if built else [Tick(i) for i in range(n)]
    for i in range(n):
        if events is None:
            t0 = clock()
            await call(Tick(i))
        else:
            event = events[i]
            t0 = clock()
            await call(event)
        out.append(clock() - t0)
    out.sort()
    return out


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


async def _floor_ten(event: Tick) -> None:
    for _ in range(10):
        await _noop(event)


async def run(events: int, repeat: int) -> dict[str, Any]:
    sync_events = max(1, events // 10)  # executor round trips are slow: fewer
    loop = asyncio.get_running_loop()

    async def executor_floor(event: Tick) -> None:
        await loop.run_in_executor(None, _sync_noop, event)

    kinds: list[tuple[str, Callable[[Tick], Awaitable[Any]], int, EventBus | None]] = [
        ("floor: await handler(event)", _noop, events, None),
        ("floor: 10 direct awaits", _floor_ten, events, None),
        ("floor: run_in_executor round trip", executor_floor, sync_events, None),
    ]
    for name, bus, n in (
        ("publish_async, 1 async handler", _make_bus(1), events),
        ("publish_async, 10 async handlers", _make_bus(10), events),
        ("publish_async, 1 sync handler (executor)", _make_bus(1, sync=True), sync_events),
        ("publish_async, 1 sync handler (inline)", _make_bus(1, sync=True, inline=True), events),
    ):
        kinds.append((name, bus.publish_async, n, bus))
    # (call, events, built) per case: every kind both ways.
    cases: dict[str, tuple[Callable[[Tick], Awaitable[Any]], int, bool]] = {
        label(name, way): (call, n, way != "prebuilt") for name, call, n, _ in kinds for way in WAYS
    }

    results: dict[str, dict[str, float]] = {}
    for call, n, built in cases.values():
        await _loop(call, min(n, 2000), built)  # warm up caches
    # Round-robin: every case once per round, so load drift on a shared machine
    # weighs on the floor and on pubsub alike.
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (call, n, built) in cases.items():
            times[name].append(await _loop(call, n, built))
    for name, (call, n, built) in cases.items():
        per_event = statistics.median(times[name]) / n
        with quiet_gc():
            lat = await _latencies(call, min(n, 20000), built)
        results[name] = {
            "events": n,
            "events_per_s": 1.0 / per_event,
            "us_per_event": per_event * 1e6,
            "p50_us": _pct(lat, 0.50) * 1e6,
            "p99_us": _pct(lat, 0.99) * 1e6,
        }
    for _, _, _, bus in kinds:
        if bus is not None:
            await bus.aclose()
    for name, row in results.items():
        way = next(w for w in WAYS if name.endswith(f", {w}"))
        floor = results[label("floor: await handler(event)", way)]["us_per_event"]
        base = floor
        if "10 async" in name:
            base = results[label("floor: 10 direct awaits", way)]["us_per_event"]
        elif "executor)" in name:
            base = results[label("floor: run_in_executor round trip", way)]["us_per_event"]
        row["x_floor"] = row["us_per_event"] / floor
        row["x_own_baseline"] = row["us_per_event"] / base
    return {
        "python": sys.version.split()[0],
        "events": events,
        "repeat": repeat,
        "results": results,
    }


def _print(report: dict[str, Any]) -> None:
    print(f"pubsub dispatch benchmark (Python {report['python']}, median of {report['repeat']})")
    header = f"{'case':63} {'events/s':>12} {'us/event':>9} {'x floor':>8} {'x base':>7} {'p50 us':>7} {'p99 us':>7}"
    print(header)
    print("-" * len(header))
    for name, row in report["results"].items():
        print(
            f"{name:63} {row['events_per_s']:12,.0f} {row['us_per_event']:9.3f} "
            f"{row['x_floor']:8.1f} {row['x_own_baseline']:7.2f} {row['p50_us']:7.2f} {row['p99_us']:7.2f}"
        )
    print(
        "x base: against the matching floor (10 direct awaits for 10 handlers, "
        "a bare run_in_executor round trip for the executor case), built the same way; "
        "x floor: against await handler(event) built the same way."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(args.events, args.repeat))
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print(report)


if __name__ == "__main__":
    main()
