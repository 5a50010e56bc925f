"""JetStream benchmark: pubsub on NATS against raw nats-py, in one run against a private
server it starts itself (never the shared one on port 4222).

1. Durable publish, pipelined: ``JetStreamEventStore.append`` of batches of ``--window``
   events, and ``EventBus.publish_async`` from ``--window`` concurrent tasks, against raw
   ``js.publish_async`` with the same number in flight (target: >= 80% of raw).
2. One worker's consume-and-ack rate: an ``EventBus`` catching up a backlog with a
   no-op handler, against raw ``fetch(100)`` + ``ack()`` (target: >= 70% of raw).
3. 1, 2 and 4 worker processes sharing one group, the handler awaiting 5 ms of I/O,
   each worker's window ``--worker-window`` events (target: 4 workers >= 3.5x one).

Each figure is the median of ``--repeat`` runs; ratios compare figures of this run only
(the machine may be shared and noisy).

Run ``python benchmarks/nats.py`` (needs the ``nats`` extra and a ``nats-server``:
``--server PATH``, else the one beside this Python, else the system's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# This file is named like the nats-py package: its own folder must not shadow it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from core import EventBus  # noqa: E402
from core.codec import encode  # noqa: E402
from core.consumer import ConsumerOptions, Dispatcher  # noqa: E402
from core.events import Event  # noqa: E402
from plugins.nats import JetStreamEventStore, open_nats_store  # noqa: E402
from plugins.nats.consumer import JetStreamConsumer  # noqa: E402
from plugins.nats.consumer import open_consumer as open_consumer_of  # noqa: E402
from plugins.nats.naming import event_headers, events_stream, events_subject  # noqa: E402


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="bench.nats.Tick"):
    n: int
    note: str = "x" * 40


def find_server(explicit: str | None) -> str:
    for candidate in (explicit, str(Path(sys.executable).parent / "nats-server")):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(found).exists():
        raise SystemExit("no nats-server found: pass --server PATH")
    return found


@contextlib.contextmanager
def private_server(binary: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store_dir = Path(tempfile.mkdtemp(prefix="pubsub-bench-nats-"))
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("nats-server did not start") from None
                time.sleep(0.05)
        time.sleep(0.3)  # JetStream comes up just after the listener
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(store_dir, ignore_errors=True)


def median_rate(runs: list[float]) -> float:
    return statistics.median(runs)


async def timed(count: int, work: Callable[[], Awaitable[None]]) -> float:
    t0 = time.perf_counter()
    await work()
    return count / (time.perf_counter() - t0)


# -- 1. publish ---------------------------------------------------------------------


async def raw_publish(url: str, ns: str, count: int, window: int) -> float:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    stream = events_stream(ns)
    subject = events_subject(ns, Tick.event_type)
    events = [Tick(n) for n in range(count)]

    async def work() -> None:
        for start in range(0, count, window):
            futures = []
            for event in events[start : start + window]:
                payload = encode(event)
                headers = event_headers(event.id, event.event_type, 1, event.created_at, payload)
                futures.append(
                    await js.publish_async(subject, payload, headers=headers, stream=stream)
                )
            await asyncio.gather(*futures)

    try:
        return await timed(count, work)
    finally:
        await nc.close()


async def store_append(url: str, count: int, window: int) -> float:
    store = await open_nats_store(url)
    events = [Tick(n) for n in range(count)]

    async def work() -> None:
        for start in range(0, count, window):
            await store.append(events[start : start + window])

    try:
        return await timed(count, work)
    finally:
        await store.aclose()


async def bus_publish(url: str, count: int, window: int) -> float:
    store = await open_nats_store(url)
    bus = EventBus(store, consume=False)
    per_task = count // window

    async def publisher() -> None:
        for n in range(per_task):
            await bus.publish_async(Tick(n))

    async def work() -> None:
        await asyncio.gather(*(publisher() for _ in range(window)))

    try:
        return await timed(per_task * window, work)
    finally:
        await bus.aclose()
        await store.aclose()


# -- 2. one worker's consume-and-ack ------------------------------------------------


async def backlog(url: str, count: int) -> None:
    store = await open_nats_store(url)
    try:
        for start in range(0, count, 500):
            await store.append([Tick(n) for n in range(start, min(count, start + 500))])
    finally:
        await store.aclose()


async def raw_consume(url: str, ns: str, count: int) -> float:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        f"pubsub.{ns}.events.>",
        durable="raw",
        stream=events_stream(ns),
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
    )

    async def work() -> None:
        done = 0
        while done < count:
            for msg in await sub.fetch(100, timeout=5):
                await msg.ack()
                done += 1

    try:
        return await timed(count, work)
    finally:
        await nc.close()


def with_window(store: JetStreamEventStore, window: int) -> JetStreamEventStore:
    """``store`` whose workers fetch ``window`` messages at a time (the URL's
    ``max_in_flight``, set here directly)."""

    def open_consumer(dispatcher: Dispatcher, options: ConsumerOptions) -> JetStreamConsumer:
        consumer = open_consumer_of(store, dispatcher, options)
        consumer.window = window
        return consumer

    store.open_consumer = open_consumer  # type: ignore[method-assign]
    return store


async def bus_consume(url: str, count: int, group: str, window: int) -> float:
    store = with_window(await open_nats_store(url), window)
    bus = EventBus(store, group=group, max_in_flight=window)
    handled = 0

    @bus.subscribe(Tick, name="noop")
    async def noop(event: Tick) -> None:
        nonlocal handled
        handled += 1

    async def work() -> None:
        await bus.start()  # create the durable and catch up the backlog
        stop = asyncio.Event()
        following = asyncio.create_task(bus.follow(stop))
        while handled < count:  # noqa: ASYNC110 (a benchmark's own cheap poll)
            await asyncio.sleep(0.005)
        stop.set()
        await following
        await bus.drain()

    try:
        return await timed(count, work)
    finally:
        await bus.aclose()
        await store.aclose()


# -- 3. worker processes sharing a group --------------------------------------------


async def worker_main(url: str, group: str, window: int, sleep: float) -> None:
    """A worker process: bind, say READY, wait for GO on stdin, consume until stdin
    closes; prints its count every 20 ms while it changes."""
    store = with_window(await open_nats_store(url), window)
    bus = EventBus(store, group=group, max_in_flight=window)
    handled = 0

    @bus.subscribe(Tick, name="io")
    async def io(event: Tick) -> None:
        nonlocal handled
        await asyncio.sleep(sleep)
        handled += 1

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await reader.readline()  # GO
    stop = asyncio.Event()

    async def until_eof() -> None:
        await reader.read()
        stop.set()

    async def report() -> None:
        shown = 0
        while True:
            await asyncio.sleep(0.02)
            if handled != shown:
                shown = handled
                sys.stdout.write(f"{handled}\n")
                sys.stdout.flush()

    watcher = asyncio.create_task(until_eof())
    reporter = asyncio.create_task(report())
    await bus.start()
    await bus.follow(stop)
    await bus.aclose()
    watcher.cancel()
    reporter.cancel()
    sys.stdout.write(f"END {handled}\n")
    sys.stdout.flush()
    await store.aclose()


def run_workers(url: str, group: str, workers: int, count: int, window: int) -> float:
    """Start ``workers`` processes on a backlog of ``count`` events; the rate from GO
    until they reported ``count`` handled in all."""
    import selectors

    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", url, group, str(window)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        for _ in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "READY":
                raise SystemExit("a worker did not start")
        counts = [0] * workers
        sel = selectors.DefaultSelector()
        for i, proc in enumerate(procs):
            assert proc.stdout is not None
            sel.register(proc.stdout, selectors.EVENT_READ, i)
        t0 = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        deadline = time.monotonic() + 300
        while sum(counts) < count and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line.strip().isdigit():
                    counts[key.data] = int(line)
        elapsed = time.perf_counter() - t0
        sel.close()
        return sum(counts) / elapsed
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# -- the run ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="the nats-server binary")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--publish", type=int, default=20_000, help="events per publish run")
    parser.add_argument("--consume", type=int, default=20_000, help="events per consume run")
    parser.add_argument("--window", type=int, default=256, help="publishes in flight")
    parser.add_argument("--consume-window", type=int, default=100, help="one worker's window")
    parser.add_argument("--scale", type=int, default=4_000, help="events per scaling run")
    parser.add_argument("--worker-window", type=int, default=8)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, group, window = args.worker
        asyncio.run(worker_main(url, group, int(window), 0.005))
        return
    binary = find_server(args.server)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    print(f"server: {version.strip()} ({binary}); repeats: {args.repeat}")
    with private_server(binary) as base:
        figures: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            figures.setdefault(name, []).append(value)
            print(f"  {name}: {value:,.0f} msg/s", file=sys.stderr, flush=True)

        for r in range(args.repeat):
            ns = f"pub{r}"
            url = f"{base}?ns={ns}"
            asyncio.run(backlog(url, 0))  # the namespace's streams
            add("raw publish_async", asyncio.run(raw_publish(base, ns, args.publish, args.window)))
            add("store.append", asyncio.run(store_append(url, args.publish, args.window)))
            add("bus.publish_async", asyncio.run(bus_publish(url, args.publish, args.window)))

            ns = f"con{r}"
            url = f"{base}?ns={ns}"
            asyncio.run(backlog(url, args.consume))
            add("raw fetch(100)+ack", asyncio.run(raw_consume(base, ns, args.consume)))
            add(
                "bus worker",
                asyncio.run(bus_consume(url, args.consume, "bench", args.consume_window)),
            )

            for workers in (1, 2, 4):
                ns = f"scale{r}w{workers}"
                url = f"{base}?ns={ns}"
                asyncio.run(backlog(url, args.scale))
                add(
                    f"{workers} worker(s)",
                    run_workers(url, "scale", workers, args.scale, args.worker_window),
                )
        med = {name: median_rate(runs) for name, runs in figures.items()}
        print(f"\n{'figure':<22} {'median msg/s':>14}   runs")
        for name, value in med.items():
            runs = ", ".join(f"{v:,.0f}" for v in figures[name])
            print(f"{name:<22} {value:>14,.0f}   {runs}")
        raw_pub, raw_con = med["raw publish_async"], med["raw fetch(100)+ack"]
        print("\nratios (medians of this run):")
        print(
            f"  store.append / raw publish_async      {med['store.append'] / raw_pub:6.2f}"
            "  (target >= 0.80)"
        )
        print(f"  bus.publish_async / raw publish_async {med['bus.publish_async'] / raw_pub:6.2f}")
        print(
            f"  bus worker / raw fetch(100)+ack       {med['bus worker'] / raw_con:6.2f}"
            "  (target >= 0.70)"
        )
        one = med["1 worker(s)"]
        print(f"  2 workers / 1 worker                  {med['2 worker(s)'] / one:6.2f}")
        print(
            f"  4 workers / 1 worker                  {med['4 worker(s)'] / one:6.2f}"
            "  (target >= 3.5)"
        )


if __name__ == "__main__":
    main()
