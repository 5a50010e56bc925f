"""Store benchmark: the SQLite event store against hand-written sqlite3 with the same pragmas.

Three figures, each the median of ``--repeat`` runs on a fresh file in a temporary
directory (on the same file system as ``--dir``, default the system temp dir):

(a) sequential durable publish: one publisher, one ``append`` per event, against raw
    sqlite3 committing each insert (target: per-event cost <= 2x raw);
(b) group commit: 100 concurrent publishers at synchronous=FULL, against raw sqlite3
    ``executemany`` of 1,000 rows per transaction (targets: >= 50,000 events/s and >= 25%
    of raw);
    (a) and (b) run two ways: the events built before the clock starts, and each event
    built by its publisher just before its ``append``, as users publish (the targets
    apply to the second way too);
(c) reading the whole log and decoding every record into an Event (``store.read`` +
    ``record.decode()``), against a sqlite3 SELECT + ``orjson.loads`` + dataclass
    construction loop (targets: >= 100,000 events/s and >= 70% of raw);
(d) the raw part of (c): ``store.read`` alone (rows to StoredEvent, checksums verified,
    no decoding) against iterating a sqlite3 SELECT of the same columns.

Run ``python benchmarks/store.py`` (``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.events import Event
from plugins.sqlite import SQLiteEventStore, open_sqlite_store, records
from plugins.sqlite.schema import MIGRATIONS


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="bench.order_placed"):
    order_id: str
    sku: str
    qty: int
    amount_cents: int


def make_event(i: int) -> OrderPlaced:
    return OrderPlaced(f"order-{i:08d}", f"SKU-{i % 977:05d}", 1 + i % 5, 1999 + i)


def make_events(n: int) -> list[OrderPlaced]:
    return [make_event(i) for i in range(n)]


_INSERT = (
    "INSERT INTO events (seq, appended_at, event_id, type_name, version, created_at, "
    "payload, checksum, correlation_id, causation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def raw_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    """A plain sqlite3 connection on the same schema and pragmas as the store."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("PRAGMA busy_timeout = 5000")
    for step in MIGRATIONS:
        conn.executescript(step)
    return conn


def raw_row(seq: int, event: OrderPlaced) -> tuple[Any, ...]:
    payload = orjson.dumps(event)
    return (
        seq,
        time.time_ns() // 1000,
        event.id.bytes,
        event.event_type,
        event.event_version,
        event.created_at.isoformat(),
        payload,
        zlib.crc32(payload),
        None,
        None,
    )


# -- raw sqlite3 baselines ------------------------------------------------------------


def raw_sequential(path: Path, events: list[OrderPlaced]) -> float:
    conn = raw_connection(path, "FULL")
    start = time.perf_counter()
    for seq, event in enumerate(events, 1):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_INSERT, raw_row(seq, event))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def raw_executemany(path: Path, events: list[OrderPlaced], per_txn: int = 1000) -> float:
    conn = raw_connection(path, "FULL")
    start = time.perf_counter()
    for lo in range(0, len(events), per_txn):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            _INSERT, [raw_row(lo + i + 1, e) for i, e in enumerate(events[lo : lo + per_txn])]
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def raw_read(path: Path) -> tuple[float, int]:
    conn = sqlite3.connect(path)
    start = time.perf_counter()
    n = 0
    for (payload,) in conn.execute("SELECT payload FROM events ORDER BY seq"):
        d = orjson.loads(payload)
        OrderPlaced(
            d["order_id"],
            d["sku"],
            d["qty"],
            d["amount_cents"],
            id=UUID(d["id"]),
            created_at=datetime.fromisoformat(d["created_at"]),
            causation_id=None if d["causation_id"] is None else UUID(d["causation_id"]),
            correlation_id=None if d["correlation_id"] is None else UUID(d["correlation_id"]),
        )
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, n


def raw_select(path: Path) -> tuple[float, int]:
    conn = sqlite3.connect(path)
    start = time.perf_counter()
    n = 0
    for _ in conn.execute(f"SELECT {records.EVENT_COLUMNS} FROM events ORDER BY seq"):
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, n


# -- the store ------------------------------------------------------------------------


async def store_sequential(path: Path, events: list[OrderPlaced]) -> float:
    async with await open_sqlite_store(f"sqlite:///{path}") as store:
        start = time.perf_counter()
        for event in events:
            await store.append([event])
        return time.perf_counter() - start


async def store_sequential_built(path: Path, n: int) -> float:
    """(a) with each event built just before its append."""
    async with await open_sqlite_store(f"sqlite:///{path}") as store:
        start = time.perf_counter()
        for i in range(n):
            await store.append([make_event(i)])
        return time.perf_counter() - start


async def store_concurrent(
    path: Path, events: list[OrderPlaced] | int, publishers: int
) -> tuple[float, float]:
    """Elapsed seconds and mean events per transaction. Given a number of events instead
    of a list, each publisher builds its events one at a time as it appends them."""
    async with await open_sqlite_store(f"sqlite:///{path}") as store:

        async def publisher(mine: list[OrderPlaced]) -> None:
            for event in mine:
                await store.append([event])

        async def building(mine: range) -> None:
            for i in mine:
                await store.append([make_event(i)])

        start = time.perf_counter()
        if isinstance(events, int):
            await asyncio.gather(
                *(building(range(i, events, publishers)) for i in range(publishers))
            )
        else:
            await asyncio.gather(*(publisher(events[i::publishers]) for i in range(publishers)))
        elapsed = time.perf_counter() - start
        stats = store.statistics()
        return elapsed, stats.events / max(stats.transactions, 1)


async def store_read(path: Path) -> tuple[float, int]:
    async with await open_sqlite_store(f"sqlite:///{path}") as store:
        start = time.perf_counter()
        n = 0
        async for record in store.read():
            record.decode()
            n += 1
        return time.perf_counter() - start, n


async def store_read_records(path: Path) -> tuple[float, int]:
    async with await open_sqlite_store(f"sqlite:///{path}") as store:
        start = time.perf_counter()
        n = 0
        async for _ in store.read():
            n += 1
        return time.perf_counter() - start, n


async def fill_store(path: Path, events: list[OrderPlaced]) -> None:
    async with await open_sqlite_store(f"sqlite:///{path}") as store:
        for lo in range(0, len(events), 1000):
            await store.append(events[lo : lo + 1000])


async def pragmas_of(path: Path) -> dict[str, Any]:
    store: SQLiteEventStore = await open_sqlite_store(f"sqlite:///{path}")
    try:
        return await store.pragmas()
    finally:
        await store.aclose()


# -- running --------------------------------------------------------------------------


def median_of(repeat: int, run: Callable[[Path], float], base: Path) -> float:
    times = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(dir=base) as d:
            times.append(run(Path(d) / f"run{i}.db"))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--sequential", type=int, default=500, help="events for (a)")
    parser.add_argument("--concurrent", type=int, default=50_000, help="events for (b)")
    parser.add_argument("--publishers", type=int, default=100, help="publishers for (b)")
    parser.add_argument("--read", type=int, default=100_000, help="events for (c)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)

    seq_events = make_events(args.sequential)
    conc_events = make_events(args.concurrent)
    read_events = make_events(args.read)
    batch_sizes: list[float] = []

    def conc(path: Path) -> float:
        elapsed, per_txn = asyncio.run(store_concurrent(path, conc_events, args.publishers))
        batch_sizes.append(per_txn)
        return elapsed

    a_store = median_of(
        args.repeat, lambda p: asyncio.run(store_sequential(p, seq_events)), args.dir
    )
    a_built = median_of(
        args.repeat, lambda p: asyncio.run(store_sequential_built(p, args.sequential)), args.dir
    )
    a_raw = median_of(args.repeat, lambda p: raw_sequential(p, seq_events), args.dir)
    b_store = median_of(args.repeat, conc, args.dir)
    b_built = median_of(
        args.repeat,
        lambda p: asyncio.run(store_concurrent(p, args.concurrent, args.publishers))[0],
        args.dir,
    )
    b_raw = median_of(args.repeat, lambda p: raw_executemany(p, conc_events), args.dir)

    scaling = {}
    for publishers in (1, 10, 100, 200):
        events = make_events(min(args.concurrent, 500 * publishers))
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            elapsed, _ = asyncio.run(store_concurrent(Path(d) / "s.db", events, publishers))
        scaling[publishers] = len(events) / elapsed

    c_store_times, c_raw_times, d_store_times, d_raw_times = [], [], [], []
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "read.db"
        asyncio.run(fill_store(path, read_events))
        pragmas = asyncio.run(pragmas_of(path))
        for _ in range(args.repeat):
            elapsed, n = asyncio.run(store_read(path))
            assert n == args.read
            c_store_times.append(elapsed)
            elapsed, n = raw_read(path)
            assert n == args.read
            c_raw_times.append(elapsed)
            elapsed, n = asyncio.run(store_read_records(path))
            assert n == args.read
            d_store_times.append(elapsed)
            elapsed, n = raw_select(path)
            assert n == args.read
            d_raw_times.append(elapsed)
    c_store, c_raw = statistics.median(c_store_times), statistics.median(c_raw_times)
    d_store, d_raw = statistics.median(d_store_times), statistics.median(d_raw_times)

    n_a, n_b, n_c = args.sequential, args.concurrent, args.read
    result = {
        "sqlite_version": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "pragmas": pragmas,
        "a_sequential": {
            "events": n_a,
            "store_us_per_event": a_store / n_a * 1e6,
            "store_built_us_per_event": a_built / n_a * 1e6,
            "raw_us_per_event": a_raw / n_a * 1e6,
            "ratio": a_store / a_raw,
            "ratio_built": a_built / a_raw,
            "target": "ratio <= 2.0",
            "ok": a_store / a_raw <= 2.0 and a_built / a_raw <= 2.0,
        },
        "b_group_commit": {
            "events": n_b,
            "publishers": args.publishers,
            "store_events_per_s": n_b / b_store,
            "store_built_events_per_s": n_b / b_built,
            "raw_executemany_events_per_s": n_b / b_raw,
            "share_of_raw": b_raw / b_store,
            "share_of_raw_built": b_raw / b_built,
            "mean_events_per_transaction": statistics.median(batch_sizes),
            "target": ">= 50,000 events/s and >= 25% of raw",
            "ok": min(n_b / b_store, n_b / b_built) >= 50_000
            and b_raw / max(b_store, b_built) >= 0.25,
        },
        "scaling_events_per_s": scaling,
        "c_read_decode": {
            "events": n_c,
            "store_events_per_s": n_c / c_store,
            "raw_events_per_s": n_c / c_raw,
            "share_of_raw": c_raw / c_store,
            "target": ">= 100,000 events/s and >= 70% of raw",
            "ok": n_c / c_store >= 100_000 and c_raw / c_store >= 0.70,
        },
        "d_read_records": {
            "events": n_c,
            "store_events_per_s": n_c / d_store,
            "raw_select_events_per_s": n_c / d_raw,
            "share_of_raw": d_raw / d_store,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    a, b, c = result["a_sequential"], result["b_group_commit"], result["c_read_decode"]
    print(f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, median of {args.repeat} runs")
    print("pragmas: " + ", ".join(f"{k}={v}" for k, v in pragmas.items()))
    print(
        f"(a) sequential publish, {n_a} events: store {a['store_us_per_event']:.0f} us/event "
        f"prebuilt, {a['store_built_us_per_event']:.0f} us/event built per publish, "
        f"raw sqlite3 {a['raw_us_per_event']:.0f} us/event, ratios {a['ratio']:.2f}x and "
        f"{a['ratio_built']:.2f}x (target <= 2x) {'OK' if a['ok'] else 'MISSED'}"
    )
    print(
        f"(b) {args.publishers} publishers, {n_b} events: store "
        f"{b['store_events_per_s']:,.0f} ev/s prebuilt "
        f"({b['mean_events_per_transaction']:.0f} ev/txn), "
        f"{b['store_built_events_per_s']:,.0f} ev/s built per publish, "
        f"raw executemany x1000 {b['raw_executemany_events_per_s']:,.0f} ev/s, "
        f"{b['share_of_raw']:.0%} of raw (targets >= 50,000 ev/s, >= 25%) "
        f"{'OK' if b['ok'] else 'MISSED'}"
    )
    print(
        "    group commit scaling (one run each): "
        + ", ".join(f"{p} publishers {v:,.0f} ev/s" for p, v in scaling.items())
    )
    print(
        f"(c) read + decode, {n_c} events: store {c['store_events_per_s']:,.0f} ev/s, "
        f"raw {c['raw_events_per_s']:,.0f} ev/s, {c['share_of_raw']:.0%} of raw "
        f"(targets >= 100,000 ev/s, >= 70%) {'OK' if c['ok'] else 'MISSED'}"
    )
    d = result["d_read_records"]
    print(
        f"(d) read records only, {n_c} events: store {d['store_events_per_s']:,.0f} ev/s, "
        f"raw SELECT {d['raw_select_events_per_s']:,.0f} ev/s, {d['share_of_raw']:.0%} of raw"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
