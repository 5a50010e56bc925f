"""Replay benchmark: ``pubsub replay`` end to end on a SQLite log of N events.

Setup (not measured): a store file holding ``--events`` events (default 1,000,000) of
``benchmarks/replay_handlers.py``'s one type, appended 10,000 per ``append`` call. Then
``pubsub replay benchmarks/replay_handlers.py --db FILE --from-seq 1 --json`` runs as a
subprocess, ``--repeat`` times; each run gives its wall time, the events/s the command
reports and N / wall time, and the peak RSS of the subprocess (``os.wait4``). Targets:
>= 100,000 events/s end to end, and a peak RSS that does not grow with the log. The
baseline of the same run: a hand-written loop over the same file in a subprocess too
(sqlite3 ``SELECT payload`` in seq order, ``orjson.loads``, the dataclass built with its
id, time and causal fields, and an async handler awaited on it), timed from the start
of the process like the replay.

Run ``python benchmarks/replay.py --events 100000`` (``--json`` for machine-readable
output, ``--db FILE`` to keep the built log and reuse it next time, ``--profile FILE`` to
write a cProfile of one more replay run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

HANDLERS = HERE / "replay_handlers.py"
CHUNK = 10_000


async def build(path: Path, n: int) -> None:
    """Append ``n`` events in large batches (setup: its speed is not a figure)."""
    from replay_handlers import ReplayTick

    from plugins.sqlite import open_sqlite_store

    async with await open_sqlite_store(f"sqlite:///{path}") as store:
        have = await store.last_seq()
        for lo in range(have, n, CHUNK):
            hi = min(lo + CHUNK, n)
            await store.append(
                [ReplayTick(i, f"SKU-{i % 977:05d}", 1 + i % 5, 1999 + i) for i in range(lo, hi)]
            )


async def count(path: Path) -> int:
    from plugins.sqlite import open_sqlite_store

    async with await open_sqlite_store(f"sqlite:///{path}?mode=ro") as store:
        return await store.last_seq()


def replay_command(path: Path) -> list[str]:
    return [str(HANDLERS), "--db", str(path), "--from-seq", "1", "--json"]


def run_replay(path: Path, profile: Path | None = None) -> dict[str, Any]:
    """One ``pubsub replay`` subprocess (under cProfile with ``profile``): wall time and
    its JSON report."""
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "pubsub_cli", "replay", *replay_command(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"pubsub replay failed ({proc.returncode}):\n{err.decode()}")
    report = json.loads(out)
    return {"wall_s": wall, "report": report}


_RAW = """
import asyncio, sqlite3, sys, time
from datetime import datetime
from uuid import UUID
import orjson
sys.path.insert(0, sys.argv[2])
from replay_handlers import ReplayTick

seen = 0

async def handle(event):
    global seen
    seen += 1

async def main(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    for (payload,) in conn.execute("SELECT payload FROM events ORDER BY seq"):
        d = orjson.loads(payload)
        c, k = d["causation_id"], d["correlation_id"]
        await handle(ReplayTick(
            d["n"], d["sku"], d["qty"], d["amount_cents"],
            id=UUID(d["id"]), created_at=datetime.fromisoformat(d["created_at"]),
            causation_id=None if c is None else UUID(c),
            correlation_id=None if k is None else UUID(k),
        ))
    conn.close()
    print(seen)

asyncio.run(main(sys.argv[1]))
"""


def run_raw(path: Path) -> tuple[float, int]:
    """The hand-written baseline as a subprocess: its wall time and events handled."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _RAW, str(path), str(HERE)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return time.perf_counter() - start, int(done.stdout.strip())


def run_replay_rss(path: Path) -> tuple[dict[str, Any], int]:
    """``run_replay`` and the child's own peak RSS in KiB, from ``os.wait4`` (it would
    include this process's RSS at fork time: see ``--setup``)."""
    cmd = [sys.executable, "-m", "pubsub_cli", "replay", *replay_command(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"pubsub replay failed ({proc.returncode}):\n{err.read().decode()}")
        report = json.loads(out.read())
    return {"wall_s": wall, "report": report}, usage.ru_maxrss  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--repeat", type=int, default=3, help="replay runs (median)")
    parser.add_argument("--db", type=Path, help="log file to build (or reuse if it has N events)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--profile", type=Path, help="also write a cProfile of one replay")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setup is not None:
        # In a child process: this one imports nothing of pubsub and stays small, since
        # a child's peak RSS counts the parent's RSS at fork time.
        if not args.setup.exists() or asyncio.run(count(args.setup)) != args.events:
            if args.setup.exists():
                raise SystemExit(f"{args.setup} does not hold {args.events} events: remove it")
            asyncio.run(build(args.setup, args.events))
        return 0

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = args.db or Path(tmp) / "replay.db"
        t0 = time.perf_counter()
        setup = [sys.executable, __file__, "--setup", str(path), "--events", str(args.events)]
        subprocess.run(setup, check=True)
        build_s = time.perf_counter() - t0
        size = path.stat().st_size

        runs = []
        for _ in range(args.repeat):
            run, rss_kib = run_replay_rss(path)
            report = run["report"]
            dispatched = sum(h["ok"] for h in report["handlers"].values())
            if report["events"] != args.events or dispatched != args.events:
                raise SystemExit(f"replay did not dispatch every event: {report}")
            runs.append(
                {
                    "wall_s": run["wall_s"],
                    "reported_events_per_s": report["rate"],
                    "end_to_end_events_per_s": args.events / run["wall_s"],
                    "peak_rss_mib": rss_kib / 1024,
                }
            )
        raw_runs = []
        for _ in range(args.repeat):
            wall, handled = run_raw(path)
            if handled != args.events:
                raise SystemExit(f"the baseline handled {handled} of {args.events} events")
            raw_runs.append(args.events / wall)
        if args.profile is not None:
            run_replay(path, profile=args.profile)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    result = {
        "events": args.events,
        "file_mib": size / 2**20,
        "build_s": build_s,
        "repeat": args.repeat,
        "wall_s": med("wall_s"),
        "end_to_end_events_per_s": med("end_to_end_events_per_s"),
        "reported_events_per_s": med("reported_events_per_s"),
        "peak_rss_mib": med("peak_rss_mib"),
        "runs": runs,
        "raw_events_per_s": statistics.median(raw_runs),
        "raw_runs": raw_runs,
        "share_of_raw": med("end_to_end_events_per_s") / statistics.median(raw_runs),
        "target": ">= 100,000 events/s end to end; peak RSS flat in the log size",
        "ok": med("end_to_end_events_per_s") >= 100_000,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"replay of {args.events:,} events ({size / 2**20:.0f} MiB file, built in "
        f"{build_s:.1f}s), median of {args.repeat}: {result['wall_s']:.2f}s wall, "
        f"{result['end_to_end_events_per_s']:,.0f} ev/s end to end "
        f"({result['reported_events_per_s']:,.0f} ev/s reported by the command), "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB "
        f"(target >= 100,000 ev/s) {'OK' if result['ok'] else 'MISSED'}; hand-written "
        f"sqlite3 + orjson + dataclass loop {result['raw_events_per_s']:,.0f} ev/s, "
        f"replay at {result['share_of_raw']:.0%} of it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
