"""Tests of ``pubsub run`` as a worker: a target without handlers is refused, the stop
summary counts undecodable events and dead letters, ``--lease-ttl`` reaches the lease,
and a lost lease or a full store ends the worker with one error line."""

from __future__ import annotations

import os
import pty
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from .conftest import CLI, EXAMPLES, Watched, pubsub_process, spawn

ORDERS = str(EXAMPLES / "orders.py")

EMPTY = """
from core import Router

router = Router(name="empty")
"""

OTHER = """
from dataclasses import dataclass

from core import Event


@dataclass(frozen=True, slots=True)
class Other(Event, type_name="WorkerOther"):
    x: int
"""

# Every event fails with a long message: the dead letters need room in the file.
FAILING = """
from dataclasses import dataclass

from core import Event, Router

router = Router(name="failing")


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="FailingJob"):
    n: int


@router.subscribe(Job)
async def work(event: Job) -> None:
    raise RuntimeError("x" * 2000)
"""


@pytest.fixture
def orders(cli: CLI) -> CLI:
    r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
    assert r.exit_code == 0, r.stderr
    return cli


def lease(db: Path) -> tuple[str, float]:
    with closing(sqlite3.connect(db)) as conn, conn:
        holder, expires = conn.execute("SELECT holder, expires_at FROM leases").fetchone()
    return holder, expires


class TestNoHandlers:
    """A target whose routers have no subscriptions is refused before anything moves."""

    def test_refused_with_exit_2(self, orders: CLI, tmp_path: Path) -> None:
        """Exit 2 naming the target; the real handlers later still get every event."""
        (tmp_path / "empty.py").write_text(EMPTY)
        r = orders("run", "empty.py", "--once")
        line = r.usage_error("pubsub run")
        assert "no handlers found in empty.py" in line
        r = orders("run", ORDERS, "--once")
        assert r.exit_code == 0, r.stderr
        assert "caught up 4 event(s)" in r.stderr


class TestStopSummary:
    """The stop summary counts undecodable events and dead letters written."""

    def test_unknown_type_is_counted_and_explained(self, orders: CLI, tmp_path: Path) -> None:
        """An event of a type the worker does not load: counted, dead-lettered, explained
        (in a process of its own, where the type is not registered)."""
        (tmp_path / "other.py").write_text(OTHER)
        assert (
            orders("publish", "--app", "other.py", "WorkerOther", "--data", '{"x": 1}').exit_code
            == 0
        )
        r = pubsub_process("run", ORDERS, "--once", cwd=tmp_path, env={"PUBSUB_DB": str(orders.db)})
        assert r.exit_code == 0, r.stderr
        assert "1 undecodable; 2 dead letter(s) written" in r.stderr  # Other + GHOST
        assert "warning: 1 event(s) could not be decoded here" in r.stderr
        assert "dead letter of '<decode>'" in r.stderr
        entries = orders("dlq", "list", "--handler", "<decode>", "--json").json()
        assert [e["event_type"] for e in entries["entries"]] == ["WorkerOther"]  # type: ignore[index]

    def test_caught_up_line_has_a_rate(self, orders: CLI) -> None:
        """The caught-up line gives the catch-up's duration and rate."""
        r = orders("run", ORDERS, "--once")
        assert r.exit_code == 0, r.stderr
        assert re.search(
            r"caught up 4 event\(s\) in group 'default' \(checkpoint 0\) in \d+\.\ds, "
            r"([\d,]+ events/s|-)",
            r.stderr,
        ), r.stderr


class TestLeaseTtl:
    """--lease-ttl (or PUBSUB_LEASE_TTL) is the lease the worker takes."""

    @pytest.mark.parametrize(
        ("args", "env"),
        [
            pytest.param(("--lease-ttl", "600"), {}, id="flag"),
            pytest.param((), {"PUBSUB_LEASE_TTL": "600"}, id="env"),
        ],
    )
    def test_lease_lasts_that_long(
        self, orders: CLI, tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
    ) -> None:
        """The lease stored while the worker follows expires about 600 s out (not 15)."""
        proc = Watched(
            spawn("run", ORDERS, *args, cwd=tmp_path, env={"PUBSUB_DB": str(orders.db), **env})
        )
        try:
            proc.expect("following")
            _, expires = lease(orders.db)
            assert expires - time.time() > 300
        finally:
            proc.proc.terminate()
            r = proc.finish()
        assert r.exit_code == 0, r.stderr

    def test_bad_value_is_a_usage_error(self, orders: CLI) -> None:
        """A lease shorter than 0.1 s is refused."""
        r = orders("run", ORDERS, "--lease-ttl", "0")
        assert r.exit_code == 2


class TestFatalStops:
    """Problems a worker cannot go on with end it with one error line and exit 1."""

    def test_lease_lost(self, orders: CLI, tmp_path: Path) -> None:
        """Another holder takes the lease: one error line naming it, no traceback."""
        proc = Watched(
            spawn(
                "run",
                ORDERS,
                "--lease-ttl",
                "0.3",
                cwd=tmp_path,
                env={"PUBSUB_DB": str(orders.db)},
            )
        )
        proc.expect("following")
        with closing(sqlite3.connect(orders.db)) as conn, conn:
            conn.execute(
                "UPDATE leases SET holder = 'intruder', expires_at = ?", (time.time() + 3600,)
            )
        r = proc.finish()
        assert r.exit_code == 1, r.stderr
        assert "the lease of group 'default' was lost to 'intruder'" in r.error_line
        assert "Traceback" not in r.stderr
        assert "raised" not in r.stderr

    def test_store_full(self, cli: CLI, tmp_path: Path) -> None:
        """The file cannot grow (max_page_count at its size): one error line, exit 1."""
        (tmp_path / "failing.py").write_text(FAILING)
        lines = "".join(f'{{"type": "FailingJob", "data": {{"n": {n}}}}}\n' for n in range(3))
        assert cli("publish", "--app", "failing.py", "--file", "-", input=lines).exit_code == 0
        with closing(sqlite3.connect(cli.db)) as conn, conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        r = pubsub_process(
            "--store",
            f"sqlite:///{cli.db}?max_page_count={pages}",
            "run",
            "failing.py",
            "--once",
            cwd=tmp_path,
        )
        assert r.exit_code == 1, r.stderr
        assert "the database or disk is full" in r.error_line
        assert "delivered again on the next run" in r.error_line
        assert "Traceback" not in r.stderr
        assert "raised" not in r.stderr


class TestCatchUpProgress:
    """A catch-up shows a progress bar on a terminal, and nothing elsewhere."""

    def test_bar_on_a_terminal(self, orders: CLI, tmp_path: Path) -> None:
        """With stderr on a pseudo-terminal the bar's label is drawn."""
        leader, follower = pty.openpty()
        env = {**os.environ, "PUBSUB_DB": str(orders.db), "COLUMNS": "120"}
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pubsub_cli", "run", ORDERS, "--once"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        assert proc.wait(timeout=60) == 0, seen
        assert b"catching up" in seen

    def test_no_bar_when_piped(self, orders: CLI) -> None:
        """Piped stderr gets no bar (and -q no notes at all)."""
        r = orders("run", ORDERS, "--once")
        assert "catching up" not in r.stderr
        r = orders("-q", "run", ORDERS, "--once")
        assert r.stderr == ""
