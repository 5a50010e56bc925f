"""Every example, end to end through the real ``pubsub`` process: the orders worker
stopped with SIGTERM and resumed without losing or re-handling an event, the DLQ
re-drive, the projection's snapshots, the sync handler and the middleware."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORDERS = str(EXAMPLES / "orders.py")


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


class Workbench:
    """``python -m pubsub_cli`` in one folder, with one database and one delivery log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "deliveries.jsonl"
        self.env = {
            **os.environ,
            "PUBSUB_DB": str(folder / "pubsub.db"),
            "ORDERS_LOG": str(self.log),
            "ORDERS_CSV": str(folder / "orders.csv"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Done:
        proc = subprocess.run(
            [sys.executable, "-m", "pubsub_cli", *args],
            cwd=self.folder,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Done(proc.returncode, proc.stdout, proc.stderr)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "pubsub_cli", *args],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def deliveries(self, handler: str) -> list[str]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [r["id"] for r in rows if r["handler"] == handler]


def wait_for(proc: subprocess.Popen[str], marker: str) -> None:
    """Read the child's stderr up to the line that contains ``marker``."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return
    proc.wait(timeout=30)
    raise AssertionError(f"{marker!r} never appeared (exit {proc.returncode}):\n{''.join(seen)}")


def finish(proc: subprocess.Popen[str]) -> Done:
    out, err = proc.communicate(timeout=60)
    return Done(proc.returncode, out, err)


@pytest.fixture
def bench(tmp_path: Path) -> Workbench:
    return Workbench(tmp_path)


def publish_orders(bench: Workbench, *order_ids: str) -> None:
    lines = "".join(
        json.dumps({"type": "OrderPlaced", "data": {"order_id": o, "sku": "PEN", "total": "1.00"}})
        + "\n"
        for o in order_ids
    )
    path = bench.folder / "more.jsonl"
    path.write_text(lines)
    done = bench("publish", "--app", ORDERS, "--file", str(path))
    assert done.code == 0, done.stderr


class TestOrdersWorker:
    """pubsub run as a long-lived worker."""

    def test_sigterm_then_resume_handles_each_event_once(self, bench: Workbench) -> None:
        """Events handled before SIGTERM are checkpointed and not handled again; events
        published while the worker stops are handled by the next run."""
        assert bench("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")).code == 0
        worker = bench.spawn("run", ORDERS)
        wait_for(worker, "following")
        publish_orders(bench, "B-1", "B-2")  # while it runs: handled now or next time
        worker.send_signal(signal.SIGTERM)
        first = finish(worker)
        assert first.code == 0, first.stderr
        assert "checkpoint" in first.stderr
        publish_orders(bench, "C-1")  # while no worker runs
        worker = bench.spawn("run", ORDERS)
        wait_for(worker, "following")
        worker.send_signal(signal.SIGINT)
        second = finish(worker)
        assert second.code == 0, second.stderr
        audit = bench.deliveries("audit")
        ids = [r["id"] for r in bench("events", "list", "--json").json_lines()]
        assert sorted(audit) == sorted(ids)  # every event once: none lost, none repeated
        stats = bench("stats", "--json").json()
        assert isinstance(stats, dict)
        assert stats["groups"][0]["checkpoint"] == len(ids) == 7
        assert stats["groups"][0]["holder"] is None  # the lease was released

    @pytest.mark.parametrize(
        ("sig", "code"),
        [
            pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
            pytest.param(signal.SIGINT, 130, id="SIGINT"),
        ],
    )
    def test_second_signal_forces_exit(
        self, bench: Workbench, sig: signal.Signals, code: int
    ) -> None:
        """While draining a stuck handler, a second signal exits at once with 128+n."""
        stuck = bench.folder / "stuck.py"
        stuck.write_text(
            "import asyncio, sys\n"
            "from orders import OrderPlaced\n"
            "from core import Router\n"
            "router = Router()\n"
            "@router.subscribe(OrderPlaced, name='stuck')\n"
            "async def stuck(event):\n"
            "    print('handler started', file=sys.stderr, flush=True)\n"
            "    await asyncio.sleep(3600)\n"
        )
        publish_orders(bench, "S-1")
        worker = bench.spawn("run", str(stuck), "--app-dir", str(EXAMPLES))
        wait_for(worker, "handler started")
        worker.send_signal(sig)
        wait_for(worker, "draining")
        worker.send_signal(sig)
        done = finish(worker)
        assert done.code == code
        assert "exiting now" in done.stderr
        stats = bench("stats", "--json").json()
        assert isinstance(stats, dict)
        assert all(g["checkpoint"] == 0 for g in stats["groups"])  # redelivered next time

    def test_second_worker_fails_fast(self, bench: Workbench) -> None:
        """A second worker of the same group exits 1 naming the holder."""
        assert bench("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")).code == 0
        worker = bench.spawn("run", ORDERS)
        wait_for(worker, "following")
        try:
            other = bench("run", ORDERS, "--once")
            assert other.code == 1
            (line,) = other.stderr.strip().splitlines()[-1:]
            assert line.startswith("error: consumer group 'default' is held by")
            assert bench("run", ORDERS, "--once", "--group", "other").code == 0
        finally:
            worker.send_signal(signal.SIGTERM)
            assert finish(worker).code == 0


class TestOrdersDeadLetters:
    """The failing handler's dead letter, inspected and re-driven."""

    def test_dlq_flow(self, bench: Workbench) -> None:
        """run --once leaves one dead letter; retry resolves it once the cause is fixed."""
        assert bench("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")).code == 0
        assert bench("run", ORDERS, "--once").code == 0
        listed = bench("dlq", "list", "--json").json()
        assert isinstance(listed, dict)
        assert {e["handler"] for e in listed["entries"]} == {"orders.reserve_stock"}
        still = bench("dlq", "retry", "--all", "--app", ORDERS, "--strict")
        assert still.code == 1
        fixed = bench("dlq", "retry", "--all", "--app", ORDERS, env={"ORDERS_WAREHOUSE_OPEN": "1"})
        assert fixed.code == 0, fixed.stderr
        assert "resolved" in fixed.stdout
        assert bench("dlq", "list", "--json").json() == {"entries": []}


class TestOtherExamples:
    """The projection, sync-handler and middleware examples through the CLI."""

    def test_projection_snapshots(self, bench: Workbench) -> None:
        """create, publish more, restore: only the later events are replayed."""
        assert bench("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")).code == 0
        projection = str(EXAMPLES / "projection.py")
        created = bench("snapshot", "create", projection)
        assert created.code == 0, created.stderr
        publish_orders(bench, "P-1", "P-2")
        restored = bench("snapshot", "restore", projection, "--json")
        assert restored.code == 0, restored.stderr
        doc = restored.json()
        assert isinstance(doc, dict)
        assert doc["replayed"] == 2
        assert doc["state"]["projections.revenue_by_sku"]["revenue"]["PEN"] == "4.20"

    def test_sync_handler(self, bench: Workbench) -> None:
        """The sync handler ran off the event loop's thread for every order."""
        assert bench("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")).code == 0
        done = bench("run", str(EXAMPLES / "sync_handler.py"), "--once")
        assert done.code == 0, done.stderr
        rows = (bench.folder / "orders.csv").read_text().splitlines()
        assert sorted(r.split(",")[0] for r in rows) == ["A-1", "A-2", "A-3"]
        assert all(not r.endswith(",MainThread") for r in rows)

    def test_middleware(self, bench: Workbench) -> None:
        """module:bus brings its middleware onto the worker's bus."""
        assert bench("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")).code == 0
        done = bench("run", f"{EXAMPLES / 'middleware.py'}:bus", "--once")
        assert done.code == 0, done.stderr
        assert done.stderr.count("middleware: ") == 4
        assert "middleware: OrderShipped" in done.stderr


class TestTail:
    """events tail follows the log until Ctrl-C."""

    def test_tail_json_lines(self, bench: Workbench) -> None:
        """A new event appears as one JSON line; SIGINT ends the tail with exit 0."""
        assert bench("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")).code == 0
        tail = bench.spawn("events", "tail", "--last", "1", "--json")
        wait_for(tail, "following")
        assert tail.stdout is not None
        assert json.loads(tail.stdout.readline())["seq"] == 4
        publish_orders(bench, "T-1")
        row = json.loads(tail.stdout.readline())
        assert (row["seq"], row["data"]["order_id"]) == (5, "T-1")
        tail.send_signal(signal.SIGINT)
        assert finish(tail).code == 0


SHIPPING = str(EXAMPLES / "shipping.py")


class TestShippingFollowUps:
    """A handler's follow-up event, published through its HandlerContext under `pubsub run`."""

    def test_follow_up_is_stored_handled_and_chained(self, bench: Workbench) -> None:
        """The worker appends the follow-up durably, handles it, and `events show`
        draws the causal chain from the order to its shipment."""
        placed = bench(
            "publish", "--app", SHIPPING, "shipping.order_placed", "--data", '{"order_id": "A-1"}'
        )
        assert placed.code == 0, placed.stderr
        run = bench("run", SHIPPING, "--once")
        assert run.code == 0, run.stderr
        assert "handled 2 ok, 0 failed" in run.stderr
        assert "checkpoint 2 saved" in run.stderr
        rows = bench("events", "list", "--json").json_lines()
        assert [r["type"] for r in rows] == ["shipping.order_placed", "shipping.order_shipped"]
        assert rows[1]["causation_id"] == rows[0]["id"]
        assert rows[1]["correlation_id"] == rows[0]["id"]
        shown = bench("events", "show", "1")
        assert shown.code == 0
        chain = shown.stdout[shown.stdout.index("causal chain") :]
        assert "#1 shipping.order_placed" in chain
        assert "#2 shipping.order_shipped" in chain
        again = bench("run", SHIPPING, "--once")  # nothing left: the follow-up was handled
        assert "handled 0 ok" in again.stderr
