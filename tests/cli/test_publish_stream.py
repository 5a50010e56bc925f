"""Tests of ``pubsub publish --file`` as a stream: JSON lines end at ``\\n`` only, bytes
that are not UTF-8 are a line's error, the input is appended in bounded chunks after a
validating pass, and an ``events list --json`` export re-imports idempotently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from core.events import Event
from core.store import AppendResult
from plugins.sqlite import store as sqlite_store
from pubsub_cli.commands import publish as publish_command

from .conftest import CLI, EXAMPLES

ORDERS = str(EXAMPLES / "orders.py")


def line(order_id: str) -> str:
    data = {"order_id": order_id, "sku": "BOOK", "total": "1.00"}
    return orjson.dumps({"type": "OrderPlaced", "data": data}).decode()


def stored(cli: CLI) -> list[dict[str, Any]]:
    r = cli("events", "list", "--json", "--limit", "0")
    assert r.exit_code == 0, r.stderr
    # JSON lines end at "\n" only: str.splitlines would also split at U+2028 and kin.
    return [orjson.loads(x) for x in r.stdout.split("\n") if x.strip()]


class TestLineEnds:
    """Only ``\\n`` ends a line: other Unicode line breaks are text inside a string."""

    @pytest.mark.parametrize(
        "sep",
        [
            pytest.param("\u2028", id="U+2028"),
            pytest.param("\u2029", id="U+2029"),
            pytest.param("\u0085", id="U+0085"),
        ],
    )
    def test_raw_separator_inside_a_string(self, cli: CLI, tmp_path: Path, sep: str) -> None:
        """A raw separator inside a JSON string keeps its line valid and its text intact."""
        path = tmp_path / "odd.jsonl"
        path.write_text(line(f"A{sep}1") + "\n" + line("A-2") + "\n", encoding="utf-8")
        r = cli("publish", "--app", ORDERS, "--file", str(path))
        assert r.exit_code == 0, r.stderr
        assert [e["data"]["order_id"] for e in stored(cli)] == [f"A{sep}1", "A-2"]

    def test_skip_invalid_keeps_line_numbers(self, cli: CLI, tmp_path: Path) -> None:
        """With --skip-invalid the line after one holding U+2028 is still numbered right."""
        path = tmp_path / "odd.jsonl"
        text = line("A\u20281") + "\n" + "{oops\n" + line("A-3") + "\n"
        path.write_text(text, encoding="utf-8")
        r = cli("publish", "--app", ORDERS, "--file", str(path), "--skip-invalid", "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["appended"] == 2
        assert [s["where"] for s in doc["skipped"]] == [f"{path} line 2"]
        assert [e["line"] for e in doc["events"]] == [1, 3]


class TestNotUtf8:
    """Bytes that are not UTF-8 are one line naming the line, also on standard input."""

    def test_stdin(self, cli: CLI) -> None:
        """Latin-1 on stdin: exit 1, one error line with the line number, nothing appended."""
        cli(
            "publish",
            "--app",
            ORDERS,
            "OrderPlaced",
            "--data",
            '{"order_id": "x", "sku": "y", "total": "1"}',
        )
        data = (line("A-1") + "\n").encode() + '{"type": "caf\u00e9"}\n'.encode("latin-1")
        r = cli("publish", "--app", ORDERS, "--file", "-", input=data)  # type: ignore[arg-type]
        assert r.exit_code == 1
        assert r.error_line.startswith("error: <stdin> line 2: not UTF-8 text (byte 0xe9)")
        assert "Traceback" not in r.stderr
        assert len(stored(cli)) == 1

    def test_skipped_with_skip_invalid(self, cli: CLI, tmp_path: Path) -> None:
        """--skip-invalid skips the line that is not UTF-8 like any other bad line."""
        path = tmp_path / "mixed.jsonl"
        path.write_bytes(b"\xff\xfe\n" + (line("A-2") + "\n").encode())
        r = cli("publish", "--app", ORDERS, "--file", str(path), "--skip-invalid")
        assert r.exit_code == 0, r.stderr
        assert f"skipped {path} line 1: not UTF-8 text (byte 0xff)" in r.stderr
        assert [e["data"]["order_id"] for e in stored(cli)] == ["A-2"]


class TestChunks:
    """The input is validated whole, then appended in bounded chunks."""

    @pytest.fixture
    def appends(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        """The size of every append the store receives, with chunks of 2 events."""
        sizes: list[int] = []
        real = sqlite_store._Appender.append  # the parts of the file's one transaction

        async def spy(self: Any, events: Any, **options: Any) -> list[AppendResult]:
            batch: list[Event] = list(events)
            sizes.append(len(batch))
            return await real(self, batch, **options)

        monkeypatch.setattr(sqlite_store._Appender, "append", spy)
        monkeypatch.setattr(publish_command, "CHUNK", 2)
        return sizes

    def test_appends_in_chunks(self, cli: CLI, tmp_path: Path, appends: list[int]) -> None:
        """Five events go to the store as 2 + 2 + 1, in order, all reported."""
        path = tmp_path / "five.jsonl"
        path.write_text("".join(line(f"A-{n}") + "\n" for n in range(5)))
        r = cli("publish", "--app", ORDERS, "--file", str(path))
        assert r.exit_code == 0, r.stderr
        assert appends == [2, 2, 1]
        assert r.stdout.split() == ["1", "2", "3", "4", "5"]
        assert "appended 5 event(s)" in r.stderr
        assert [e["data"]["order_id"] for e in stored(cli)] == [f"A-{n}" for n in range(5)]

    def test_bad_last_line_appends_nothing(
        self, cli: CLI, tmp_path: Path, appends: list[int]
    ) -> None:
        """A bad line after several chunks' worth of good ones: no append at all."""
        path = tmp_path / "late.jsonl"
        path.write_text("".join(line(f"A-{n}") + "\n" for n in range(5)) + "{bad\n")
        r = cli("publish", "--app", ORDERS, "--file", str(path))
        assert r.exit_code == 1
        assert f"{path} line 6: malformed JSON" in r.error_line
        assert appends == []
        assert not cli.db.exists()

    def test_stdin_is_read_once(self, cli: CLI, appends: list[int]) -> None:
        """Standard input (read once) is appended in chunks too, from its copy."""
        text = "".join(line(f"A-{n}") + "\n" for n in range(3))
        r = cli("publish", "--app", ORDERS, "--file", "-", "--json", input=text)
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert appends == [2, 1]
        assert [e["seq"] for e in doc["events"]] == [1, 2, 3]
        assert [e["line"] for e in doc["events"]] == [1, 2, 3]

    def test_a_full_disk_after_several_chunks_appends_nothing(
        self, cli: CLI, tmp_path: Path, appends: list[int]
    ) -> None:
        """The store fills up several chunks into the file: the whole input is one
        transaction, so nothing of it is stored, no seq is printed, and the error says
        so; what the log held before stays."""
        first = cli("publish", "--app", ORDERS, "--file", "-", input=line("A-0") + "\n")
        assert first.exit_code == 0, first.stderr
        url = f"sqlite:///{cli.db}?max_page_count=40"
        path = tmp_path / "big.jsonl"
        note = "x" * 1_500  # about 40 events fill the capped file
        path.write_text(
            "".join(line(f"B-{n}").replace('"BOOK"', f'"{note}"') + "\n" for n in range(400))
        )
        r = cli("--store", url, "publish", "--app", ORDERS, "--file", str(path))
        assert r.exit_code == 1
        assert len(appends) > 2  # it failed several chunks (of 2) into the file
        assert "nothing was appended (the 400 event(s) were one transaction, rolled back)" in (
            r.error_line
        )
        assert r.stdout == ""
        assert [e["data"]["order_id"] for e in stored(cli)] == ["A-0"]

    def test_no_event_creates_no_store(self, cli: CLI) -> None:
        """An input with no event (blank lines) appends nothing and creates no store."""
        r = cli("publish", "--file", "-", input="\n\n")
        assert r.exit_code == 0, r.stderr
        assert "nothing appended: <stdin> holds no event" in r.stderr
        assert not cli.db.exists()


class TestReimport:
    """``events list --json | pubsub publish --file -`` keeps ids, times and links."""

    @pytest.fixture
    def exported(self, cli: CLI) -> str:
        r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
        assert r.exit_code == 0, r.stderr
        r = cli("events", "list", "--json", "--limit", "0")
        assert r.exit_code == 0, r.stderr
        return r.stdout

    def test_into_the_same_log_is_idempotent(self, cli: CLI, exported: str) -> None:
        """Every event is already stored: nothing appended, the summary says so."""
        r = cli("publish", "--app", ORDERS, "--file", "-", input=exported)
        assert r.exit_code == 0, r.stderr
        assert "appended 0 event(s)" in r.stderr
        assert "4 already stored" in r.stderr
        assert len(stored(cli)) == 4

    def test_json_counts_duplicates(self, cli: CLI, exported: str) -> None:
        """--json counts the re-imported events as duplicates."""
        r = cli("publish", "--app", ORDERS, "--file", "-", "--json", input=exported)
        doc = r.json()
        assert isinstance(doc, dict)
        assert (doc["appended"], doc["duplicates"]) == (0, 4)

    def test_into_another_log_keeps_the_events(
        self, cli: CLI, exported: str, tmp_path: Path
    ) -> None:
        """A fresh log gets the same ids, creation times and data."""
        other = tmp_path / "other.db"
        r = cli("--db", str(other), "publish", "--app", ORDERS, "--file", "-", input=exported)
        assert r.exit_code == 0, r.stderr
        copy = cli("--db", str(other), "events", "list", "--json", "--limit", "0")
        keep = ("id", "type", "version", "created_at", "correlation_id", "causation_id", "data")
        assert [{k: e[k] for k in keep} for e in copy.json_lines()] == [  # type: ignore[index]
            {k: e[k] for k in keep} for e in (orjson.loads(x) for x in exported.splitlines())
        ]
