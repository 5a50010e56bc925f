"""Tests of ``--log-level`` and ``--log-format``: the library's and the worker's records
go to stderr, as JSON lines with their facts or as one text line each; stdout stays the
command's own; a failing middleware or hook is one warning line (its traceback only with
``-v`` or at debug level); bad values are usage errors."""

from __future__ import annotations

import logging
import re
import signal
import sqlite3
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pubsub_cli.logs import JsonFormatter, TextFormatter, redact_url

from .conftest import CLI, EXAMPLES, Result, Watched, pubsub_process, spawn

ORDERS = str(EXAMPLES / "orders.py")
LOG_JSON = ("--log-format", "json", "--log-level", "info")

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) pubsub[\w.]*: \S"
)

# A bus whose middleware (or hook) raises on every event, and the type it handles.
OBSERVED = """
from dataclasses import dataclass

from core import Event, EventBus, Router


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="LogsTick"):
    n: int


router = Router(name="ticks")


@router.subscribe(Tick, name="ticks.count")
async def count(event: Tick) -> None:
    pass


async def exploding(event, call_next):
    raise RuntimeError("middleware broke")


def hook(details):
    raise KeyError("hook broke")


with_middleware = EventBus()
with_middleware.include(router)
with_middleware.add_middleware(exploding)

with_hook = EventBus()
with_hook.include(router)
with_hook.on_publish(hook)
"""

# A handler whose error message spans two lines.
MULTILINE = """
from dataclasses import dataclass

from core import Event, Router

router = Router(name="multiline")


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="LogsMultilineJob"):
    n: int


@router.subscribe(Job, name="multiline.work")
async def work(event: Job) -> None:
    raise RuntimeError("first line\\nsecond line")
"""

# Every event fails with a long message: the dead letters need room in the file.
FILLING = """
from dataclasses import dataclass

from core import Event, Router

router = Router(name="filling")


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="LogsFillingJob"):
    n: int


@router.subscribe(Job)
async def work(event: Job) -> None:
    raise RuntimeError("x" * 2000)
"""

TICKS = 6


def json_records(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines of stderr (the worker's notes for people are plain text)."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = orjson.loads(line)
            assert isinstance(record, dict), line
            found.append(record)
    return found


@pytest.fixture
def orders(cli: CLI) -> CLI:
    """A store holding examples/orders.jsonl: 4 events, one of which (seq 3, SKU GHOST)
    ends in a dead letter of ``orders.reserve_stock``."""
    r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
    assert r.exit_code == 0, r.stderr
    return cli


@pytest.fixture
def ticks(cli: CLI, tmp_path: Path) -> CLI:
    """A store holding TICKS events of the OBSERVED module's type."""
    (tmp_path / "observed.py").write_text(OBSERVED)
    lines = "".join(f'{{"type": "LogsTick", "data": {{"n": {n}}}}}\n' for n in range(TICKS))
    r = cli("publish", "--app", "observed.py", "--file", "-", input=lines)
    assert r.exit_code == 0, r.stderr
    return cli


def dead_letter_ids(cli: CLI) -> dict[int, str]:
    """seq -> event id of the open dead letters."""
    entries = cli("dlq", "list", "--json").json()["entries"]  # type: ignore[index]
    return {e["seq"]: e["event_id"] for e in entries}


class TestJsonFormat:
    """--log-format json: one JSON object per line on stderr, with the record's facts."""

    def test_worker_records_parse_and_carry_their_facts(self, orders: CLI) -> None:
        """Every record has time (ISO 8601, UTC), level, logger and message; the dead
        letter is a warning with the event's id and type, the handler and the group; the
        lifecycle is logged at info."""
        r = orders(*LOG_JSON, "run", ORDERS, "--once")
        assert r.exit_code == 0, r.stderr
        records = json_records(r.stderr)
        assert records, r.stderr
        for record in records:
            assert {"time", "level", "logger", "message"} <= record.keys(), record
            stamp = datetime.fromisoformat(record["time"])
            assert stamp.utcoffset() == timedelta(0), record
            assert record["level"] in ("info", "warning"), record
            assert record["logger"].startswith("pubsub"), record
        (letter,) = [rec for rec in records if rec["logger"] == "pubsub.dlq"]
        assert letter["level"] == "warning"
        assert letter["event_id"] == dead_letter_ids(orders)[3]
        assert letter["event_type"] == "OrderPlaced"
        assert letter["handler"] == "orders.reserve_stock"
        assert letter["group"] == "default"
        assert letter["seq"] == 3
        lifecycle = [rec["message"] for rec in records if rec["logger"] == "pubsub.worker"]
        assert [m.split(":")[0].split(" ")[0] for m in lifecycle] == [
            "worker",
            "caught",
            "stopping",
            "stopped",
        ], lifecycle
        started = next(rec for rec in records if rec["message"].startswith("worker starting"))
        assert (started["group"], started["checkpoint"], started["last_seq"]) == ("default", 0, 4)
        assert started["store"] == f"sqlite:///{orders.db}"
        caught = next(rec for rec in records if rec["message"].startswith("caught up"))
        assert caught["count"] == 4
        stopped = next(rec for rec in records if rec["message"].startswith("stopped"))
        assert (stopped["checkpoint"], stopped["dead_lettered"]) == (4, 1)
        assert stopped["drained"] is True

    def test_only_json_on_stderr_with_quiet(self, orders: CLI) -> None:
        """With -q (no notes) and an explicit level, stderr is JSON lines only."""
        r = orders("-q", *LOG_JSON, "run", ORDERS, "--once")
        assert r.exit_code == 0, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == len(json_records(r.stderr)) >= 5, r.stderr

    def test_environment_variables(self, orders: CLI) -> None:
        """PUBSUB_LOG_LEVEL and PUBSUB_LOG_FORMAT do what the flags do."""
        r = orders(
            "run", ORDERS, "--once", env={"PUBSUB_LOG_LEVEL": "INFO", "PUBSUB_LOG_FORMAT": "json"}
        )
        assert r.exit_code == 0, r.stderr
        levels = {rec["level"] for rec in json_records(r.stderr)}
        assert levels == {"info", "warning"}

    def test_stdout_of_a_json_command_stays_pure(self, orders: CLI) -> None:
        """A --json command that logs (replay dead-letters GHOST again) keeps stdout one
        JSON document: its records are on stderr."""
        debug = ("--log-format", "json", "--log-level", "debug")
        r = orders(*debug, "replay", ORDERS, "--from-seq", "1", "--json")
        assert r.exit_code == 0, r.stderr
        report = orjson.loads(r.stdout)
        assert isinstance(report, dict)
        (letter,) = [rec for rec in json_records(r.stderr) if rec["logger"] == "pubsub.dlq"]
        assert (letter["level"], letter["source"], letter["seq"]) == ("info", "replay", 3)

    def test_debug_logs_each_delivery(self, orders: CLI) -> None:
        """At debug level the worker logs every delivery; at info level none."""
        r = orders("--log-format", "json", "--log-level", "debug", "run", ORDERS, "--once")
        assert r.exit_code == 0, r.stderr
        deliveries = [
            rec for rec in json_records(r.stderr) if rec["message"].startswith("delivering")
        ]
        assert [rec["seq"] for rec in deliveries] == [1, 2, 3, 4]
        assert deliveries[2]["event_id"] == dead_letter_ids(orders)[3]
        r = orders(*LOG_JSON, "run", ORDERS, "--once")
        assert not [rec for rec in json_records(r.stderr) if rec["level"] == "debug"]


class TestTextFormat:
    """--log-format text (the default): one readable line per record."""

    def test_one_line_per_record(self, orders: CLI) -> None:
        """At info level each record is one line: time, level, logger, message, fields."""
        r = orders("--log-level", "info", "run", ORDERS, "--once")
        assert r.exit_code == 0, r.stderr
        logged = [line for line in r.stderr.splitlines() if TEXT_LINE.match(line)]
        assert len(logged) == 5, r.stderr  # starting, dead letter, caught up, stopping, stopped
        (letter,) = [line for line in logged if " WARNING pubsub.dlq: " in line]
        assert f"event_id={dead_letter_ids(orders)[3]}" in letter
        assert "handler=orders.reserve_stock" in letter
        assert "event_type=OrderPlaced" in letter
        assert "Traceback" not in r.stderr

    def test_default_level_is_warning(self, orders: CLI) -> None:
        """Without --log-level only warnings show (the dead letter), no lifecycle."""
        r = orders("run", ORDERS, "--once")
        logged = [line for line in r.stderr.splitlines() if TEXT_LINE.match(line)]
        assert len(logged) == 1, r.stderr
        assert " WARNING pubsub.dlq: dead letter: orders.reserve_stock" in logged[0]

    def test_quiet_means_errors_only_unless_a_level_is_given(self, orders: CLI) -> None:
        """-q raises the default level to error; an explicit --log-level still wins."""
        assert orders("-q", "run", ORDERS, "--once").stderr == ""
        r = orders("-q", "--log-level", "warning", "run", ORDERS, "--once", "--group", "other")
        (line,) = r.stderr.splitlines()
        assert TEXT_LINE.match(line)
        assert "pubsub.dlq: dead letter: orders.reserve_stock" in line

    def test_a_message_with_a_line_break_stays_one_line(self, cli: CLI, tmp_path: Path) -> None:
        """An error message over two lines is escaped into the record's one line."""
        (tmp_path / "multiline.py").write_text(MULTILINE)
        r = cli("publish", "--app", "multiline.py", "LogsMultilineJob", "--data", '{"n": 1}')
        assert r.exit_code == 0, r.stderr
        r = cli("run", "multiline.py", "--once")
        (line,) = [line for line in r.stderr.splitlines() if "pubsub.dlq" in line]
        assert TEXT_LINE.match(line)
        assert "first line\\nsecond line" in line
        assert "second line" not in r.stderr.replace(line, "")


class TestFailingObservers:
    """A failing middleware or hook is one warning line over many events."""

    @pytest.mark.parametrize(
        ("target", "says"),
        [
            pytest.param(
                "observed.py:with_middleware",
                "middleware observed.exploding raised RuntimeError: middleware broke",
                id="middleware",
            ),
            pytest.param(
                "observed.py:with_hook",
                "on_publish hook observed.hook (now removed) raised KeyError: 'hook broke'",
                id="hook",
            ),
        ],
    )
    def test_one_warning_without_traceback(self, ticks: CLI, target: str, says: str) -> None:
        """Over TICKS events: exactly one warning line, naming the observer, no traceback."""
        r = ticks("run", target, "--once")
        assert r.exit_code == 0, r.stderr
        warnings = [line for line in r.stderr.splitlines() if " WARNING " in line]
        assert len(warnings) == 1, r.stderr
        assert says in warnings[0]
        assert "Traceback" not in r.stderr

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(("-v", "run", "observed.py:with_middleware", "--once"), id="before"),
            pytest.param(("run", "observed.py:with_middleware", "--once", "-v"), id="after"),
        ],
    )
    def test_traceback_with_verbose(self, ticks: CLI, args: tuple[str, ...]) -> None:
        """-v (before or after the command) adds the traceback once, under the line."""
        r = ticks(*args)
        assert r.exit_code == 0, r.stderr
        assert len([line for line in r.stderr.splitlines() if " WARNING " in line]) == 1
        assert r.stderr.count("Traceback (most recent call last)") == 1, r.stderr
        assert 'raise RuntimeError("middleware broke")' in r.stderr

    def test_traceback_in_json_at_debug_level(self, ticks: CLI) -> None:
        """At debug level the warning record carries the traceback; the library's
        separate traceback record is not repeated."""
        debug = ("--log-format", "json", "--log-level", "debug")
        r = ticks(*debug, "run", "observed.py:with_middleware", "--once")
        assert r.exit_code == 0, r.stderr
        records = json_records(r.stderr)
        (warning,) = [rec for rec in records if rec["level"] == "warning"]
        assert "RuntimeError: middleware broke" in warning["traceback"]
        assert warning["where"] == "middleware observed.exploding"
        assert (warning["group"], warning["event_type"]) == ("default", "LogsTick")
        assert [rec for rec in records if "traceback" in rec] == [warning]
        letters = [rec for rec in records if rec["logger"] == "pubsub.dlq"]
        assert len(letters) == TICKS
        assert {(rec["level"], rec["handler"]) for rec in letters} == {("info", "<middleware>")}


class TestWorkerStops:
    """Why the worker stopped is in its lifecycle log (at info level)."""

    def test_sigterm(self, orders: CLI, tmp_path: Path) -> None:
        """SIGTERM is logged, then the drain and the stop with the saved checkpoint."""
        proc = Watched(
            spawn(*LOG_JSON, "run", ORDERS, cwd=tmp_path, env={"PUBSUB_DB": str(orders.db)})
        )
        proc.expect('"following ')
        proc.proc.send_signal(signal.SIGTERM)
        r = proc.finish()
        assert r.exit_code == 0, r.stderr
        messages = [rec["message"] for rec in json_records(r.stderr)]
        at = messages.index("SIGTERM: stopping")
        assert messages[at + 1].startswith("stopping: draining")
        assert messages[at + 2].startswith("stopped: ")

    def test_lease_lost(self, orders: CLI, tmp_path: Path) -> None:
        """A lease taken over is an info record naming the new holder (and the one
        error line); the library's own warning about it is not shown."""
        proc = Watched(
            spawn(
                *LOG_JSON,
                "run",
                ORDERS,
                "--lease-ttl",
                "0.3",
                cwd=tmp_path,
                env={"PUBSUB_DB": str(orders.db)},
            )
        )
        proc.expect('"following ')
        with closing(sqlite3.connect(orders.db)) as conn, conn:
            conn.execute(
                "UPDATE leases SET holder = 'intruder', expires_at = ?", (time.time() + 3600,)
            )
        r = proc.finish()
        assert r.exit_code == 1, r.stderr
        assert "was lost to 'intruder'" in r.error_line
        records = json_records(r.stderr)
        print([rec["message"] for rec in records])
        (lost,) = [rec for rec in records if rec["message"].startswith("lease of group")]
        assert (lost["level"], lost["holder"], lost["group"]) == ("info", "intruder", "default")
        assert not [rec for rec in records if rec["logger"] == "pubsub"]

    def test_store_full(self, cli: CLI, tmp_path: Path) -> None:
        """A store that refuses to save progress is an info record, then the error line."""
        (tmp_path / "filling.py").write_text(FILLING)
        lines = "".join(f'{{"type": "LogsFillingJob", "data": {{"n": {n}}}}}\n' for n in range(3))
        assert cli("publish", "--app", "filling.py", "--file", "-", input=lines).exit_code == 0
        with closing(sqlite3.connect(cli.db)) as conn, conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        store = f"sqlite:///{cli.db}?max_page_count={pages}"
        r = pubsub_process(*LOG_JSON, "--store", store, "run", "filling.py", "--once", cwd=tmp_path)
        assert r.exit_code == 1, r.stderr
        assert "the database or disk is full" in r.error_line
        messages = [rec["message"] for rec in json_records(r.stderr)]
        assert any(m.startswith("store refused to save progress") for m in messages), messages


class TestBadValues:
    """A level or format that does not exist is a usage error, exit 2."""

    @pytest.mark.parametrize(
        ("args", "env", "says"),
        [
            pytest.param(("--log-level", "loud"), {}, "--log-level: 'loud'", id="level"),
            pytest.param(("--log-format", "xml"), {}, "--log-format: 'xml'", id="format"),
            pytest.param((), {"PUBSUB_LOG_LEVEL": "verbose"}, "PUBSUB_LOG_LEVEL", id="env"),
        ],
    )
    def test_usage_error(
        self, orders: CLI, args: tuple[str, ...], env: dict[str, str], says: str
    ) -> None:
        """One error line naming the option (or variable) and a help hint."""
        r: Result = orders(*args, "stats", env=env)
        line = r.usage_error("pubsub")
        assert says in line


class TestInProcess:
    """What the command line does to ``logging`` lasts only as long as the command."""

    def test_loggers_are_restored(self, orders: CLI) -> None:
        """The pubsub logger's handlers, level and propagation are as before."""
        logger = logging.getLogger("pubsub")
        before = (list(logger.handlers), logger.level, logger.propagate)
        r = orders(*LOG_JSON, "run", ORDERS, "--once")
        assert r.exit_code == 0, r.stderr
        assert (list(logger.handlers), logger.level, logger.propagate) == before


class TestFormatters:
    """The two formats on records built by hand."""

    def record(self, message: str, **extra: Any) -> logging.LogRecord:
        record = logging.LogRecord("pubsub.dlq", logging.WARNING, __file__, 1, message, (), None)
        record.__dict__.update(extra)
        return record

    def test_json_keys_and_values(self) -> None:
        """Fields keep their JSON types; UUIDs become strings; None fields are left out."""
        from uuid import UUID

        uid = UUID(int=7)
        line = JsonFormatter().format(self.record("m", event_id=uid, seq=3, group=None))
        document = orjson.loads(line)
        assert document["event_id"] == str(uid)
        assert document["seq"] == 3
        assert "group" not in document
        assert document["level"] == "warning"
        assert "\n" not in line

    def test_text_quotes_values_with_spaces(self) -> None:
        """A value with a space is JSON-quoted, so key=value pairs stay unambiguous."""
        line = TextFormatter().format(self.record("m", handler="a b", group="g"))
        assert line.endswith(' WARNING pubsub.dlq: m handler="a b" group=g')


class TestRedaction:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            pytest.param(
                "nats://user:secret@host:4222?ns=x", "nats://***@host:4222?ns=x", id="user-password"
            ),
            pytest.param("nats://token@host", "nats://***@host", id="token"),
            pytest.param("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db", id="path-with-at"),
            pytest.param("memory://", "memory://", id="plain"),
        ],
    )
    def test_credentials_never_shown(self, url: str, shown: str) -> None:
        """The user and password of a URL are replaced; a path is left alone."""
        assert redact_url(url) == shown
