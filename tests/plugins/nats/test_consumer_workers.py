"""``pubsub run --store nats://...`` as real worker processes sharing one group: N
workers handle N distinct events between them with none lost; a worker killed with
SIGKILL mid-handler loses nothing (its unacknowledged events go to the others after the
ack wait, and no more of them than its window come back twice); a failing handler is
retried in process, redelivered with a delay, and dead-lettered once at the delivery
cap; a worker that dies at the last delivery still leaves its dead letter (advisory).

Every wait is bounded and on observable state (lines the workers print, the store's
dead letters); every process is killed in a ``finally``."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nats_servers import NatsServer

from plugins.nats import JetStreamEventStore, open_nats_store

HERE = Path(__file__).resolve().parent
APP = str(HERE / "nats_worker_app.py")
sys.path.insert(0, str(HERE))

from nats_worker_app import Task  # noqa: E402


class Worker:
    """One ``pubsub run`` process; its stdout lines are collected by a thread."""

    def __init__(self, url: str, group: str, env: dict[str, str] | None = None) -> None:
        full = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pubsub_cli", "run", APP, "--store", url, "--group", group],
            cwd=HERE,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._ready: queue.Queue[bool] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._out, daemon=True),
            threading.Thread(target=self._err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line.rstrip())
            if "following" in line:
                self._ready.put(True)
        self._ready.put(False)

    def ready(self, timeout: float = 60.0) -> None:
        """Wait for its "following ..." line (it has bound to the group)."""
        if not self._ready.get(timeout=timeout):
            raise AssertionError(f"the worker ended before following: {self.errors}")

    def handled(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith("HANDLED")]

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL if still running, then close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for thread in self._threads:
            thread.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``check`` (what the workers printed) every 20 ms, at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.02)


async def append(url: str, count: int, start: int = 0) -> None:
    store = await open_nats_store(url)
    try:
        await store.append([Task(n) for n in range(start, start + count)])
    finally:
        await store.aclose()


async def dead_letters_in(store: JetStreamEventStore, timeout: float = 30.0) -> None:
    """Poll the store's dead-letter count (what the workers wrote) until it is above 0."""

    async def poll() -> None:
        while not await store.count_dead_letters():  # noqa: ASYNC110 (another process writes it)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


def url_of(server: NatsServer, namespace: str) -> str:
    return f"{server.url}?ns={namespace}"


class TestSharedGroup:
    async def test_three_workers_share_the_events_with_none_lost(
        self, nats_server: NatsServer, namespace: str, workers: list[Worker]
    ) -> None:
        """Three workers of one group: 300 events, each handled exactly once in all
        (no crash, so no redelivery), every worker got some; each stops with exit 0."""
        url = url_of(nats_server, namespace)
        await append(url, 0)  # the streams exist before the workers bind
        workers.extend(Worker(url, "shared", {"NW_SLEEP": "0.005"}) for _ in range(3))
        for worker in workers:
            worker.ready()
        await append(url, 300)
        wait_until(lambda: sum(len(w.handled()) for w in workers) >= 300)
        codes = [worker.stop() for worker in workers]
        assert codes == [0, 0, 0], [w.errors for w in workers]
        every = [n for w in workers for n in w.handled()]
        assert sorted(every) == list(range(300))
        assert all(w.handled() for w in workers), [len(w.handled()) for w in workers]


class TestKilledWorker:
    async def test_a_worker_killed_mid_handler_loses_nothing(
        self, nats_server: NatsServer, namespace: str, workers: list[Worker]
    ) -> None:
        """Worker A dies (SIGKILL) inside the handler of event 40; worker B handles
        every event at least once, A's unacknowledged ones as redeliveries after the
        ack wait; no more than A's window (64) is handled twice."""
        url = url_of(nats_server, namespace)
        await append(url, 0)
        a = Worker(url, "crash", {"NW_DIE_AT": "40", "NW_SLEEP": "0.002"})
        workers.append(a)
        a.ready()
        await append(url, 100)
        a.proc.wait(timeout=60)
        assert a.proc.returncode == -signal.SIGKILL
        assert any(line.startswith("DYING 40") for line in a.lines)
        b = Worker(url, "crash")
        workers.append(b)
        b.ready()
        wait_until(lambda: set(a.handled()) | set(b.handled()) >= set(range(100)))
        assert b.stop() == 0, b.errors
        assert 40 in b.handled()
        redelivered = [line for line in b.lines if line.startswith("HANDLED") and line[-1] == "1"]
        assert any(line.split()[1] == "40" for line in redelivered)
        twice = set(a.handled()) & set(b.handled())
        assert len(twice) <= 64


class TestRetriesAcrossWorkers:
    async def test_redelivered_then_one_dead_letter(
        self, nats_server: NatsServer, namespace: str, workers: list[Worker]
    ) -> None:
        """A handler that always fails, two workers: 2 attempts x 5 deliveries, then one
        dead letter (10 attempts) in the store, however the deliveries were shared."""
        url = url_of(nats_server, namespace)
        await append(url, 0)
        workers.extend(Worker(url, "retry", {"NW_FAIL": "1"}) for _ in range(2))
        for worker in workers:
            worker.ready()
        await append(url, 1)

        def calls() -> int:
            return sum(1 for w in workers for line in w.lines if line.startswith("FAILING"))

        wait_until(lambda: calls() >= 10)
        store = await open_nats_store(url)
        try:
            await dead_letters_in(store)
            assert [w.stop() for w in workers] == [0, 0]
            letters = await store.list_dead_letters()
        finally:
            await store.aclose()
        assert calls() == 10
        (letter,) = letters
        assert (letter.handler, letter.attempts, letter.group) == ("work", 10, "retry")


class TestDeathAtTheCap:
    async def test_a_worker_dying_at_the_last_delivery_leaves_a_dead_letter(
        self, nats_server: NatsServer, namespace: str, workers: list[Worker]
    ) -> None:
        """Event 0 kills every worker that handles it, five deliveries in a row; the
        next worker is told by the max-deliveries advisory and writes its dead letter."""
        url = url_of(nats_server, namespace)
        await append(url, 1)
        for _ in range(5):
            worker = Worker(url, "cap", {"NW_DIE_AT": "0"})
            workers.append(worker)
            worker.proc.wait(timeout=60)
            assert worker.proc.returncode == -signal.SIGKILL, worker.errors
        live = Worker(url, "cap")
        workers.append(live)
        live.ready()
        store = await open_nats_store(url)
        try:
            await dead_letters_in(store)
            letters = await store.list_dead_letters()
        finally:
            await store.aclose()
        assert live.stop() == 0, live.errors
        (letter,) = letters
        assert letter.handler == "work"
        assert letter.error_type == "plugins.nats.consumer.MaxDeliveriesError"
        assert letter.attempts == 5
        assert live.handled() == []
