"""Crash loop: SIGKILL a publishing process hundreds of times, then check the SQLite log.

    python tests/stress/crash_loop.py --iterations 500 [--seed N] [--dir PATH]

Each iteration starts tests/plugins/sqlite_crash_worker.py, kills it with SIGKILL after
a random number of acknowledged appends (zero included), and keeps what it acknowledged.
Every --check-every iterations, and at the end, the log is verified: every acknowledged
(seq, event id) is stored exactly once, seqs are gap-free, integrity_check is ok. A
consumer is then killed and restarted a few times and must handle every event at least
once. Exit status 0 when everything held.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))

from sqlite_crash_worker import (
    finish_consumer,
    kill_consumer,
    kill_publisher,
    parse_promises,
    verify_log,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--check-every", type=int, default=50)
    parser.add_argument("--consumer-kills", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        db = Path(d) / "crash-loop.db"
        promised: dict[int, UUID] = {}
        kills = 0
        for i in range(1, args.iterations + 1):
            killed = kill_publisher(db, rng)
            if killed.returncode != -9 or "Traceback" in killed.stderr:
                print(f"iteration {i}: child ended by itself:\n{killed.stderr}", file=sys.stderr)
                return 1
            kills += 1
            parse_promises(killed, promised)
            if i % args.check_every == 0 or i == args.iterations:
                count = asyncio.run(verify_log(db, promised))
                print(f"{i} kills: {len(promised)} acknowledged, {count} stored, ok", flush=True)
        handled: set[str] = set()
        for _ in range(args.consumer_kills):
            handled.update(kill_consumer(db, rng, max_lines=len(promised)).lines)
        handled.update(finish_consumer(db))
        missing = {str(event_id) for event_id in promised.values()} - handled
        if missing:
            print(f"{len(missing)} events never handled (seed {seed})", file=sys.stderr)
            return 1
    print(
        f"seed {seed}: {kills} publisher kills, {args.consumer_kills} consumer kills, "
        f"{len(promised)} acknowledged appends all stored once, gap-free, every event "
        f"handled; {time.perf_counter() - start:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
