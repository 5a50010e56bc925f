"""``pubsub run --metrics-addr``: a real worker serves Prometheus metrics over HTTP for as
long as it runs, and what a scrape shows (parsed with prometheus-client's own parser)
equals what the worker handled and what the dead-letter queue holds. A bad address is a
usage error, a port in use or a missing extra one error line, and nothing is consumed."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import CLI, Watched, pubsub_process, spawn

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="POSIX signals")

HANDLERS = """
from dataclasses import dataclass

from core import Event, Router

router = Router(name="shop")


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="MetricsOrderPlaced"):
    n: int
    fail: bool = False


@router.subscribe(OrderPlaced, name="shop.charge")
async def charge(event: OrderPlaced) -> None:
    if event.fail:
        raise RuntimeError(f"card declined for order {event.n}")


@router.subscribe(OrderPlaced, name="shop.audit")
async def audit(event: OrderPlaced) -> None:
    return None
"""

TYPE = "MetricsOrderPlaced"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape_until(url: str, done: Callable[[Samples], bool], timeout: float = 60.0) -> Samples:
    """Scrape again and again until ``done`` holds, up to ``timeout`` seconds (the
    worker handles and commits on its own schedule); the last scrape otherwise fails."""
    deadline = time.monotonic() + timeout
    last: Samples = {}
    while True:
        with contextlib.suppress(OSError):  # not listening yet, or a reset: try again
            last = scrape(url)
        if done(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"the scrapes never got there; the last one: {last}")
        time.sleep(0.05)


def orders(numbers: range, failing: Callable[[int], bool]) -> str:
    return "".join(
        orjson.dumps({"type": TYPE, "data": {"n": n, "fail": failing(n)}}).decode() + "\n"
        for n in numbers
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path


def publish(folder: Path, db: Path, lines: str, name: str) -> None:
    (folder / name).write_text(lines)
    r = pubsub_process(
        "publish", "--app", "handlers.py", "--db", str(db), "--file", name, cwd=folder
    )
    assert r.exit_code == 0, r.stderr


def fails(n: int) -> bool:
    return n % 4 == 0


class TestServing:
    def test_scraped_counts_equal_what_the_worker_handled(self, shop: Path) -> None:
        """A worker started on a backlog, then fed more events while it follows, serves
        counts equal to the events it handled, the dead letters it wrote and its
        checkpoint; SIGINT stops it with exit 0 and the endpoint with it."""
        db = shop / "store.db"
        backlog, live = range(12), range(12, 20)
        total = len(backlog) + len(live)
        failed = sum(map(fails, [*backlog, *live]))  # 5
        publish(shop, db, orders(backlog, fails), "backlog.jsonl")
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        w = Watched(
            spawn(
                "run",
                "handlers.py",
                "--db",
                str(db),
                "--metrics-addr",
                f"127.0.0.1:{port}",
                "--poll",
                "0.05",
                cwd=shop,
            )
        )
        try:
            w.expect(f"metrics: serving {url}")
            w.expect("following")
            publish(shop, db, orders(live, fails), "live.jsonl")

            def settled(s: Samples) -> bool:
                return (
                    value(s, "pubsub_events_published_total", type=TYPE) == total
                    and value(s, "pubsub_consumer_checkpoint", group="default") == total
                    and value(s, "pubsub_dead_letters_open") == failed
                )

            s = scrape_until(url, settled)
            w.proc.send_signal(signal.SIGINT)
            r = w.finish()
        finally:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(10)
        assert r.exit_code == 0, r.stderr
        assert "saved for group 'default'" in r.stderr
        calls = "pubsub_handler_calls_total"
        assert value(s, calls, handler="shop.audit", type=TYPE, outcome="ok") == total
        assert value(s, calls, handler="shop.charge", type=TYPE, outcome="ok") == total - failed
        assert value(s, calls, handler="shop.charge", type=TYPE, outcome="failed") == failed
        assert value(s, "pubsub_dead_letters_total", handler="shop.charge", type=TYPE) == failed
        assert value(s, "pubsub_dead_letters_total", handler="shop.audit", type=TYPE) == 0
        count = "pubsub_handler_duration_seconds_count"
        assert value(s, count, handler="shop.charge", type=TYPE) == total
        assert value(s, count, handler="shop.audit", type=TYPE) == total
        assert value(s, "pubsub_log_last_seq") == total
        assert value(s, "pubsub_consumer_lag", group="default") == 0
        assert value(s, "pubsub_in_flight", group="default") == 0
        letters = pubsub_process("dlq", "list", "--db", str(db), "--json", cwd=shop)
        assert letters.exit_code == 0, letters.stderr
        assert len(letters.json()["entries"]) == failed  # type: ignore[index]
        with pytest.raises(ConnectionRefusedError):  # the endpoint went with the worker
            socket.create_connection(("127.0.0.1", port), timeout=10).close()


class TestRefusals:
    def test_a_port_in_use_is_one_error_and_nothing_is_consumed(self, shop: Path) -> None:
        """With the port taken, the worker exits 1 with one error line naming the
        address before it takes the group: the next run still finds the whole backlog."""
        db = shop / "store.db"
        publish(shop, db, orders(range(3), fails), "backlog.jsonl")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            r = pubsub_process(
                "run", "handlers.py", "--db", str(db), "--once",
                "--metrics-addr", f"127.0.0.1:{port}",
                cwd=shop,
            )  # fmt: skip
        assert r.exit_code == 1, r.stderr
        assert r.error_line == (
            f"error: cannot serve metrics on 127.0.0.1:{port}: the port is in use (another "
            "process listens there); choose another address (--metrics-addr HOST:PORT)"
        )
        again = pubsub_process("run", "handlers.py", "--db", str(db), "--once", cwd=shop)
        assert again.exit_code == 0, again.stderr
        assert "caught up 3 event(s) in group 'default' (checkpoint 0)" in again.stderr

    def test_the_project_file_sets_the_address(self, shop: Path) -> None:
        """[tool.pubsub] metrics-addr is used when no flag or variable gives one (here:
        the port it names is taken, and the error says so)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            (shop / "pyproject.toml").write_text(
                f'[tool.pubsub]\nmetrics-addr = "127.0.0.1:{port}"\n'
            )
            r = pubsub_process("run", "handlers.py", "--once", cwd=shop)
        assert r.exit_code == 1, r.stderr
        assert f"cannot serve metrics on 127.0.0.1:{port}" in r.error_line

    def test_without_the_extra_one_error_names_it(self, shop: Path) -> None:
        """Without prometheus-client, --metrics-addr is one error saying what to install,
        exit 1; without --metrics-addr the worker runs as before (it never imports it)."""
        shim = shop / "shim" / "prometheus_client"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text("raise ImportError('not installed here')\n")
        env = {"PYTHONPATH": str(shop / "shim")}
        r = pubsub_process(
            "run", "handlers.py", "--once", "--metrics-addr", ":0", cwd=shop, env=env
        )
        assert r.exit_code == 1, r.stderr
        assert "needs prometheus-client" in r.error_line
        assert "pip install 'pubsub-workbench[prometheus]'" in r.error_line
        plain = pubsub_process("run", "handlers.py", "--once", cwd=shop, env=env)
        assert plain.exit_code == 0, plain.stderr

    @pytest.mark.parametrize(
        ("args", "env", "problem"),
        [
            pytest.param(["--metrics-addr", "host:http"], {}, "expected a port number", id="flag"),
            pytest.param(
                [], {"PUBSUB_METRICS_ADDR": "::1:9464"}, "IPv6 address in brackets", id="env"
            ),
            pytest.param(["--metrics-addr", "70000"], {}, "out of range", id="port"),
        ],
    )
    def test_a_bad_address_is_a_usage_error(
        self, cli: CLI, shop: Path, args: list[str], env: dict[str, str], problem: str
    ) -> None:
        """A malformed address from the flag or the environment: exit 2, one line."""
        r = cli("run", "handlers.py", *args, env=env)
        line = r.usage_error("pubsub run")
        assert "--metrics-addr" in line
        assert problem in line
        assert not cli.db.exists()

    def test_a_bad_project_address_names_the_key(self, cli: CLI, shop: Path) -> None:
        """A malformed [tool.pubsub] metrics-addr is a usage error naming the key; the
        environment variable beats it."""
        (shop / "pyproject.toml").write_text('[tool.pubsub]\nmetrics-addr = "a b:1"\n')
        r = cli("run", "handlers.py")
        assert "[tool.pubsub] metrics-addr" in r.usage_error("pubsub run")
        r = cli("run", "handlers.py", env={"PUBSUB_METRICS_ADDR": "host:"})
        assert "'host:'" in r.usage_error("pubsub run")
