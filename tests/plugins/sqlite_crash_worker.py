"""Crash worker: a process that publishes to (or consumes from) a SQLite store until it is
killed with SIGKILL, and the harness that kills it and checks what survived.

As a script (the child):

    python sqlite_crash_worker.py publish DB [--tasks N]
        N tasks publish Tick events one by one, forever, through the durable publish path
        (``EventBus(store, consume=False).publish_async``); after each publish returns
        the task prints "SEQ EVENT_ID" (flushed), so every printed line is a promise.
    python sqlite_crash_worker.py consume DB [--once]
        an EventBus consumer of group "crash" prints "EVENT_ID" for each event handled;
        with --once it catches up, closes cleanly and exits.

As a module (the harness): ``kill_publisher``, ``kill_consumer`` and ``verify_log``,
used by tests/plugins/test_sqlite_crash.py and tests/stress/crash_loop.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sqlite_events import Tick  # noqa: E402

from core import EventBus  # noqa: E402
from plugins.sqlite import open_sqlite_store  # noqa: E402

GROUP = "crash"
HOLDER = "crash-consumer"  # one holder name, so a restarted consumer takes its own lease


# -- the child ------------------------------------------------------------------------


async def publish(db: Path, tasks: int) -> None:
    store = await open_sqlite_store(f"sqlite:///{db}")
    bus = EventBus(store, consume=False)  # a publisher: it appends, the consumer dispatches

    async def one_task(task: int) -> None:
        n = 0
        while True:
            n += 1
            event = Tick(n, note=f"task-{task}")
            result = await bus.publish_async(event)
            if result.seq is None or result.duplicate:
                raise SystemExit(f"publish_async returned no new seq for {event.id}: {result}")
            sys.stdout.write(f"{result.seq} {event.id}\n")
            sys.stdout.flush()

    await asyncio.gather(*(one_task(t) for t in range(tasks)))


async def consume(db: Path, once: bool, window: int = 256) -> None:
    store = await open_sqlite_store(f"sqlite:///{db}")
    bus = EventBus(store=store, group=GROUP, holder=HOLDER, lease_ttl=60.0, max_in_flight=window)

    @bus.subscribe(Tick, name="crash.print")
    async def handle(event: Tick) -> None:
        sys.stdout.write(f"{event.id}\n")
        sys.stdout.flush()

    async with bus:
        if not once:
            await bus.follow(asyncio.Event())
    await store.aclose()


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "consume"])
    parser.add_argument("db", type=Path)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args(argv)
    if args.mode == "publish":
        asyncio.run(publish(args.db, args.tasks))
    else:
        asyncio.run(consume(args.db, args.once, args.window))


# -- the harness ----------------------------------------------------------------------


@dataclass
class Killed:
    """What one killed child printed (complete lines only) and its stderr."""

    lines: list[str]
    stderr: str
    returncode: int


def _spawn(args: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    with stderr_path.open("w") as err:
        return subprocess.Popen(
            [sys.executable, str(HERE / "sqlite_crash_worker.py"), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _kill_after(
    proc: subprocess.Popen[bytes], lines: int, stderr_path: Path, deadline: float = 60.0
) -> Killed:
    """Read until ``lines`` complete lines arrived (or the child ended, or ``deadline``
    seconds passed: a safety net, not a condition), SIGKILL the child, then collect every
    complete line it had printed."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    end = time.monotonic() + deadline
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while data.count(b"\n") < lines and time.monotonic() < end:
            if not sel.select(timeout=max(0.0, end - time.monotonic())):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    proc.send_signal(signal.SIGKILL)
    data += proc.stdout.read()
    proc.wait()
    proc.stdout.close()
    text = data.decode()
    return Killed(
        [s.strip() for s in text.splitlines(keepends=True) if s.endswith("\n")],
        stderr_path.read_text(),
        proc.returncode,
    )


def kill_publisher(db: Path, rng: random.Random, *, max_lines: int = 200) -> Killed:
    """Start a publisher and SIGKILL it after a random number of acknowledged appends
    (zero included: killed while starting or opening the store)."""
    proc = _spawn(["publish", str(db), "--tasks", str(rng.randint(1, 6))], db.with_suffix(".err"))
    return _kill_after(proc, rng.randint(0, max_lines), db.with_suffix(".err"))


def kill_consumer(
    db: Path, rng: random.Random, *, max_lines: int = 200, min_lines: int = 0, window: int = 256
) -> Killed:
    """Start a consumer that catches up and exits, and SIGKILL it after a random number of
    handled events (it may finish first: then it exited by itself)."""
    args = ["consume", str(db), "--once", "--window", str(window)]
    proc = _spawn(args, db.with_suffix(".err"))
    return _kill_after(proc, rng.randint(min_lines, max_lines), db.with_suffix(".err"))


def finish_consumer(db: Path) -> list[str]:
    """Run a consumer that catches up and exits cleanly; the ids it handled."""
    done = subprocess.run(
        [sys.executable, str(HERE / "sqlite_crash_worker.py"), "consume", str(db), "--once"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"final consumer failed: {done.stderr}")
    return done.stdout.split()


async def verify_log(db: Path, promised: dict[int, UUID]) -> int:
    """Check the store after crashes: every promised (seq, id) is stored exactly once,
    seqs are gap-free from 1, and the file passes integrity_check. Returns the count."""
    async with await open_sqlite_store(f"sqlite:///{db}?mode=ro") as store:
        assert await store.integrity_check() == ["ok"]
        seqs: list[int] = []
        ids: dict[UUID, int] = {}
        async for record in store.read(batch_size=500):
            seqs.append(record.seq)
            assert record.event_id not in ids, f"id {record.event_id} stored twice"
            ids[record.event_id] = record.seq
        assert seqs == list(range(1, len(seqs) + 1)), "sequence has gaps or is out of order"
        for seq, event_id in promised.items():
            assert ids.get(event_id) == seq, f"acknowledged seq {seq} ({event_id}) is missing"
        assert await store.last_seq() == len(seqs)
        return len(seqs)


def parse_promises(killed: Killed, promised: dict[int, UUID]) -> None:
    """Add the child's acknowledged "SEQ ID" lines to ``promised`` (a seq promised twice
    with different ids fails here)."""
    for line in killed.lines:
        seq_text, id_text = line.split()
        seq, event_id = int(seq_text), UUID(id_text)
        assert promised.setdefault(seq, event_id) == event_id, f"seq {seq} acknowledged twice"


if __name__ == "__main__":
    child(sys.argv[1:])
