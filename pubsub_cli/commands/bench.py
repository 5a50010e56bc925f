"""Bench: ``pubsub bench`` — throughput and dispatch overhead on the in-memory or the
SQLite store, compared with the seed's service levels (the logic is ``core.bench``)."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Any

import typer

from pubsub_cli.benchmarking.runner import BenchConfig, run_benchmark
from pubsub_cli.benchmarking.scenarios import FLOOR_OF, SCENARIOS, run_scenarios
from pubsub_cli.context import Invocation, shared_options
from pubsub_cli.interrupts import Interrupted, SignalCheckpoints
from pubsub_cli.output import number


class StoreChoice(enum.StrEnum):
    MEMORY = "memory"
    SQLITE = "sqlite"


@shared_options(store=False)
def bench(
    inv: Invocation,
    events: Annotated[
        int, typer.Option("--events", "-n", min=1, help="Events to publish")
    ] = 20_000,
    handlers: Annotated[
        int, typer.Option("--handlers", "-k", min=0, help="No-op handlers per event")
    ] = 1,
    store: Annotated[
        StoreChoice, typer.Option("--store", help="Store for the throughput phase")
    ] = StoreChoice.MEMORY,
    publishers: Annotated[
        int, typer.Option("--publishers", "-c", min=1, help="Concurrent publishers")
    ] = 16,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a service level is missed")
    ] = False,
    scenarios: Annotated[
        bool,
        typer.Option(
            "--scenarios",
            help="Also measure the hot-path scenarios of benchmarks/peers.py, each "
            "against its floor (uses --events; adds a minute or so)",
        ),
    ] = False,
) -> None:
    """Measure throughput and dispatch overhead (p50/p99/max) against the service levels."""
    out = inv.out
    config = BenchConfig(events=events, handlers=handlers, store=store.value, publishers=publishers)
    measured = 0
    planned = config.events + config.samples

    # An in-memory bench may never give the event loop control: the signal is checked
    # at each progress report instead of waiting for a loop signal handler.
    signals = SignalCheckpoints()

    def step(n: int) -> None:
        nonlocal measured
        signals.check()
        measured += n
        advance(n)

    try:
        with signals:
            # Announced once the signals are caught: a Ctrl-C after this line is reported.
            out.note(
                f"bench: {number(events)} events, {handlers} handler(s), {store.value} store, "
                f"{publishers} publisher(s)"
            )
            with out.progress(planned, "benchmarking") as advance:
                report = asyncio.run(signals.guard(run_benchmark(config, progress=step)))
    except Interrupted as stop:
        out.outcome(
            f"interrupted after {number(measured)} of {number(planned)} publishes: "
            "nothing measured (the bench reports only complete runs)"
        )
        raise typer.Exit(stop.exit_code) from None
    doc: dict[str, Any] = {
        "config": {
            "events": events,
            "handlers": handlers,
            "store": store.value,
            "publishers": publishers,
            "overhead_samples": config.samples,
        },
        "store_url": report.store_url,
        "durability": report.durability,
        "duration": report.duration,
        "throughput": report.throughput,
        "overhead": {
            "p50_ms": report.overhead_p50 * 1e3,
            "p99_ms": report.overhead_p99 * 1e3,
            "max_ms": report.overhead_max * 1e3,
        },
        "publish_latency": {
            "p50_ms": report.publish_p50 * 1e3,
            "p99_ms": report.publish_p99 * 1e3,
        },
        "checks": [
            {
                "name": c.name,
                "value": c.value * 1e3 if c.unit == "ms" else c.value,
                "unit": c.unit,
                "target": c.target,
                "passed": c.passed,
            }
            for c in report.checks
        ],
        "passed": report.passed,
    }
    if scenarios:
        try:
            with SignalCheckpoints() as signals:
                doc["scenarios"] = _scenarios(inv, events, signals)
        except Interrupted as stop:
            out.outcome(
                "interrupted during the scenarios: throughput and overhead were measured "
                "but nothing is reported (the bench reports only complete runs)"
            )
            raise typer.Exit(stop.exit_code) from None
    if inv.json:
        out.json(doc)
    else:
        out.table(
            ("measure", "value", "seed SLO", "result"),
            [
                (
                    c["name"],
                    f"{c['value']:,.0f} {c['unit']}"
                    if c["unit"] == "events/s"
                    else f"{c['value']:.4f} {c['unit']}",
                    c["target"],
                    "-" if c["passed"] is None else ("pass" if c["passed"] else "FAIL"),
                )
                for c in doc["checks"]
            ],
            title=f"pubsub bench ({store.value} store: {report.durability})",
            caption=f"{events:,} events in {report.duration:.3f}s; "
            f"overhead measured on {config.samples:,} sequential publishes without a store",
        )
    if strict and not report.passed:
        out.error("a service level was missed (--strict)")
        raise typer.Exit(1)


def _scenarios(
    inv: Invocation, events: int, signals: SignalCheckpoints
) -> dict[str, dict[str, float]]:
    """Run core.scenarios and, on a terminal, print its table; the JSON document gets
    one entry per scenario."""
    repeat = 5
    with inv.out.progress(2 * len(SCENARIOS) + repeat, "scenarios") as advance:

        def step(n: int) -> None:
            signals.check()
            advance(n)

        table = asyncio.run(signals.guard(run_scenarios(events, repeat, progress=step)))
    rows: dict[str, dict[str, float]] = {}
    for name in SCENARIOS:
        ours = table["pubsub"][name]
        floor_name = FLOOR_OF.get(name, name)
        floor = table["floor"][floor_name]
        rows[name] = {
            "events_per_s": 1 / ours,
            "us_per_event": ours * 1e6,
            "floor_us_per_event": floor * 1e6,
            "x_floor": ours / floor,
        }
    if not inv.json:
        inv.out.table(
            ("scenario", "events/s", "us/event", "floor us/event", "x floor"),
            [
                (
                    name,
                    f"{r['events_per_s']:,.0f}",
                    f"{r['us_per_event']:.3f}",
                    f"{r['floor_us_per_event']:.3f}",
                    f"{r['x_floor']:.1f}x",
                )
                for name, r in rows.items()
            ],
            title=f"hot-path scenarios (in memory, no store; median of {repeat})",
            caption="floor: a plain await/call of the same handler (ten for ten handlers; "
            "a bare run_in_executor round trip for the executor)",
        )
    return rows
