"""OpenTelemetry across processes, through the real CLI and a real SQLite file:
``pubsub publish --tracing`` in one process, ``pubsub run --once`` with tracing in
another; the worker's consumer spans are in the producer's trace, children of its
publish span. And a missing otel extra is one line and exit 1, with nothing written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

APP = Path(__file__).with_name("traced_app.py")
TYPE = "traced.OrderPlaced"


def pubsub(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m pubsub_cli ARGS`` as a child process (bounded by a timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "pubsub_cli", *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def spans_of(path: Path) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = orjson.loads(path.read_bytes())
    return spans


def named(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


class TestTwoProcesses:
    def test_worker_continues_the_publishers_trace(self, tmp_path: Path) -> None:
        """The consumer spans of the worker process have the trace id of the publish
        span of the publisher process and it as their parent; each handler's own span
        is under its consumer span."""
        db = tmp_path / "events.db"
        published = pubsub(
            "publish",
            TYPE,
            "--data",
            '{"order_id": "o-42"}',
            "--app",
            str(APP),
            "--tracing",
            "--db",
            str(db),
            cwd=tmp_path,
            env={"TRACED_SPANS": str(tmp_path / "producer.json")},
        )
        assert published.returncode == 0, published.stderr
        worked = pubsub(
            "run",
            str(APP),
            "--once",
            "--db",
            str(db),
            cwd=tmp_path,
            env={"TRACED_SPANS": str(tmp_path / "worker.json"), "PUBSUB_TRACING": "1"},
        )
        assert worked.returncode == 0, worked.stderr

        (publish,) = spans_of(tmp_path / "producer.json")
        assert (publish["name"], publish["kind"]) == (f"publish {TYPE}", "PRODUCER")
        assert publish["attributes"]["pubsub.seq"] == 1
        worker = spans_of(tmp_path / "worker.json")
        consumers = named(worker, f"process {TYPE}")
        assert sorted(s["attributes"]["pubsub.handler"] for s in consumers) == ["invoice", "ship"]
        for process in consumers:
            assert process["kind"] == "CONSUMER"
            assert process["trace_id"] == publish["trace_id"]
            assert process["parent_id"] == publish["span_id"]
            assert (
                process["attributes"]["messaging.message.id"]
                == (publish["attributes"]["messaging.message.id"])
            )
            assert process["attributes"]["messaging.consumer.group.name"] == "default"
            assert process["attributes"]["pubsub.outcome"] == "ok"
        by_handler = {s["attributes"]["pubsub.handler"]: s for s in consumers}
        (ship,) = named(worker, "ship order")
        (invoice,) = named(worker, "write invoice")
        assert ship["parent_id"] == by_handler["ship"]["span_id"]
        assert invoice["parent_id"] == by_handler["invoice"]["span_id"]
        assert {s["trace_id"] for s in worker} == {publish["trace_id"]}

    def test_replay_with_tracing_links_to_the_publishers_span(self, tmp_path: Path) -> None:
        """``pubsub replay --tracing`` in a third process: each handler's span starts a
        new trace (it is not the original delivery) and links to the publish span."""
        db = tmp_path / "events.db"
        published = pubsub(
            "publish",
            TYPE,
            "--data",
            '{"order_id": "o-7"}',
            "--app",
            str(APP),
            "--tracing",
            "--db",
            str(db),
            cwd=tmp_path,
            env={"TRACED_SPANS": str(tmp_path / "producer.json")},
        )
        assert published.returncode == 0, published.stderr
        replayed = pubsub(
            "replay",
            str(APP),
            "--from-seq",
            "1",
            "--tracing",
            "--db",
            str(db),
            cwd=tmp_path,
            env={"TRACED_SPANS": str(tmp_path / "replay.json")},
        )
        assert replayed.returncode == 0, replayed.stderr
        (publish,) = spans_of(tmp_path / "producer.json")
        consumers = named(spans_of(tmp_path / "replay.json"), f"process {TYPE}")
        assert sorted(s["attributes"]["pubsub.handler"] for s in consumers) == ["invoice", "ship"]
        for process in consumers:
            assert process["trace_id"] != publish["trace_id"]
            assert publish["span_id"] in process["links"]

    def test_a_file_of_events_gets_a_producer_span_each(self, tmp_path: Path) -> None:
        """``publish --file --tracing``: one publish span per event, siblings, each
        event's stored traceparent naming its own span; the worker follows each."""
        db = tmp_path / "events.db"
        lines = tmp_path / "events.jsonl"
        lines.write_text(
            "".join(
                orjson.dumps({"type": TYPE, "data": {"order_id": f"o-{n}"}}).decode() + "\n"
                for n in range(3)
            )
        )
        published = pubsub(
            "publish",
            "--file",
            str(lines),
            "--app",
            str(APP),
            "--tracing",
            "--db",
            str(db),
            cwd=tmp_path,
            env={"TRACED_SPANS": str(tmp_path / "producer.json")},
        )
        assert published.returncode == 0, published.stderr
        producers = spans_of(tmp_path / "producer.json")
        assert [s["attributes"]["pubsub.seq"] for s in producers] == [1, 2, 3]
        assert all(s["parent_id"] is None for s in producers)
        with closing(sqlite3.connect(db)) as conn:
            stored = [
                orjson.loads(raw)["traceparent"].split("-")[1:3]
                for (raw,) in conn.execute("SELECT headers FROM events ORDER BY seq")
            ]
        assert stored == [[s["trace_id"], s["span_id"]] for s in producers]

        worked = pubsub(
            "run",
            str(APP),
            "--once",
            "--tracing",
            "--db",
            str(db),
            cwd=tmp_path,
            env={"TRACED_SPANS": str(tmp_path / "worker.json")},
        )
        assert worked.returncode == 0, worked.stderr
        parents = {s["span_id"]: s["trace_id"] for s in producers}
        consumers = named(spans_of(tmp_path / "worker.json"), f"process {TYPE}")
        assert len(consumers) == 6
        for process in consumers:
            assert parents[process["parent_id"]] == process["trace_id"]

    def test_a_worker_without_tracing_makes_no_spans(self, tmp_path: Path) -> None:
        """Without --tracing the worker's handlers run outside any pubsub span: only
        the handlers' own spans exist, as roots."""
        db = tmp_path / "events.db"
        env = {"TRACED_SPANS": str(tmp_path / "spans.json")}
        data = '{"order_id": "o-1"}'
        published = pubsub(
            "publish",
            TYPE,
            "--data",
            data,
            "--app",
            str(APP),
            "--db",
            str(db),
            cwd=tmp_path,
            env=env,
        )
        assert published.returncode == 0, published.stderr
        assert spans_of(tmp_path / "spans.json") == []
        worked = pubsub("run", str(APP), "--once", "--db", str(db), cwd=tmp_path, env=env)
        assert worked.returncode == 0, worked.stderr
        worker = spans_of(tmp_path / "spans.json")
        assert sorted(s["name"] for s in worker) == ["ship order", "write invoice"]
        assert all(s["parent_id"] is None for s in worker)


# Runs the CLI with opentelemetry unimportable, as when the otel extra is not installed.
_WITHOUT_OTEL = (
    "import sys; sys.modules['opentelemetry'] = None; "
    "from pubsub_cli.app import main; sys.argv = ['pubsub', *sys.argv[1:]]; main()"
)


class TestMissingExtra:
    def test_run_and_publish_say_what_to_install(self, tmp_path: Path) -> None:
        """--tracing without the otel extra: one error line naming the extra, exit 1,
        and no store file created."""
        handlers = tmp_path / "handlers.py"
        handlers.write_text(
            "from dataclasses import dataclass\n"
            "from core import Event, Router\n"
            "@dataclass(frozen=True)\n"
            "class Ping(Event, type_name='plain.Ping'):\n"
            "    n: int = 0\n"
            "router = Router()\n"
            "router.subscribe(Ping, name='h')(lambda e: None)\n"
        )
        db = tmp_path / "events.db"
        for args in (
            ["run", str(handlers), "--once", "--tracing"],
            ["publish", "plain.Ping", "--data", "{}", "--app", str(handlers), "--tracing"],
        ):
            done = subprocess.run(
                [sys.executable, "-c", _WITHOUT_OTEL, *args, "--db", str(db)],
                cwd=tmp_path,
                env={**os.environ, "NO_COLOR": "1"},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 1, done.stderr
            assert done.stderr.splitlines() == [
                "error: otel: OpenTelemetry tracing needs the otel extra (opentelemetry-api): "
                "pip install 'pubsub-workbench[otel]'"
            ]
            assert not db.exists()
