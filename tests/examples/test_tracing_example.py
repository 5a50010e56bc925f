"""examples/tracing.py, as its docstring runs it: ``pubsub publish --tracing`` and
``pubsub run --once --tracing`` in two processes, each printing its spans as JSON lines
on stderr; the worker's spans continue the publisher's trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "tracing.py")


def pubsub(*args: str, cwd: Path) -> list[dict[str, Any]]:
    """Run the command; the spans it printed on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "pubsub_cli", *args, "--db", str(cwd / "pubsub.db")],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]


def test_worker_continues_the_publishers_trace(tmp_path: Path) -> None:
    """One publish span, then in the worker a consumer span under it and the
    handler's own span under that, all in one trace of service ``shop``."""
    data = '{"order_id": "A-1"}'
    (publish,) = pubsub(
        "publish", "tracing.OrderPaid", "--data", data, "--app", EXAMPLE, "--tracing", cwd=tmp_path
    )
    worker = {s["name"]: s for s in pubsub("run", EXAMPLE, "--once", "--tracing", cwd=tmp_path)}
    assert sorted(worker) == ["process tracing.OrderPaid", "render receipt"]
    process, own = worker["process tracing.OrderPaid"], worker["render receipt"]
    assert publish["name"] == "publish tracing.OrderPaid"
    assert publish["kind"] == "SpanKind.PRODUCER"
    assert process["kind"] == "SpanKind.CONSUMER"
    assert process["parent_id"] == publish["context"]["span_id"]
    assert own["parent_id"] == process["context"]["span_id"]
    traces = {s["context"]["trace_id"] for s in (publish, process, own)}
    assert traces == {publish["context"]["trace_id"]}
    assert process["attributes"]["pubsub.handler"] == "tracing.send_receipt"
    assert process["resource"]["attributes"]["service.name"] == "shop"
