"""Tests of ``events list`` on longer and damaged logs: rows are printed as they are
read, a default limit that cut the listing says so, ``--to-seq`` ends the range, and a
corrupt record is listed with an error instead of ending the listing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core import open_store
from core.store import EventStore, StoredEvent
from pubsub_cli import context

from .conftest import CLI, EXAMPLES, Watched, spawn


def fill(db: Path, n: int) -> None:
    """Append ``n`` OrderPlaced events through the store API (fast, no CLI)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import orders
    finally:
        sys.path.remove(str(EXAMPLES))

    async def go() -> None:
        store = await open_store(f"sqlite:///{db}")
        try:
            for start in range(0, n, 500):
                await store.append(
                    [
                        orders.OrderPlaced(order_id=f"A-{i}", sku="BOOK", total=orders.Decimal(1))
                        for i in range(start, min(n, start + 500))
                    ]
                )
        finally:
            await store.aclose()

    asyncio.run(go())


def flip_payload_byte(db: Path, seq: int) -> None:
    """Damage one stored payload behind the store's back (its checksum stays)."""
    conn = sqlite3.connect(db)
    try:
        (payload,) = conn.execute("SELECT payload FROM events WHERE seq = ?", (seq,)).fetchone()
        damaged = bytearray(payload)
        damaged[5] ^= 0x01
        conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (bytes(damaged), seq))
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def logged(cli: CLI) -> CLI:
    fill(cli.db, 150)
    return cli


class TestDefaultLimit:
    """Without --limit the listing stops at 100 and says so on stderr."""

    @pytest.mark.parametrize("json", [True, False], ids=["json", "table"])
    def test_cut_is_announced(self, logged: CLI, json: bool) -> None:
        """The note names how many were shown, how many match and how to see all."""
        r = logged("events", "list", *(["--json"] if json else []))
        assert r.exit_code == 0, r.stderr
        if json:
            assert len(r.json_lines()) == 100
        note = "showing the first 100 of 150 events; pass --limit 0 for all"
        assert note in r.stderr
        assert note not in r.stdout

    def test_a_filter_that_cannot_be_counted(self, logged: CLI) -> None:
        """With a time filter the note says more match, without a count."""
        r = logged("events", "list", "--json", "--since", "1h")
        assert "showing the first 100 matching events; pass --limit 0" in r.stderr

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(("--limit", "100"), id="explicit-limit"),
            pytest.param(("--limit", "0"), id="all"),
            pytest.param(("--from-seq", "51"), id="exactly-100-left"),
        ],
    )
    def test_no_note_when_nothing_was_cut_by_default(self, logged: CLI, args: list[str]) -> None:
        """An explicit limit, or a listing that fits, prints no note."""
        r = logged("events", "list", "--json", *args)
        assert r.exit_code == 0
        assert "showing the first" not in r.stderr
        assert len(r.json_lines()) == (150 if "0" in args else 100)


class TestToSeq:
    """--to-seq ends the range; an inverted range is a usage error."""

    def test_range(self, logged: CLI) -> None:
        """--from-seq and --to-seq select an inclusive range."""
        rows = logged("events", "list", "--json", "--from-seq", "10", "--to-seq", "12").json_lines()
        assert [row["seq"] for row in rows] == [10, 11, 12]  # type: ignore[index]

    def test_inverted(self, logged: CLI) -> None:
        """--to-seq before --from-seq is refused."""
        line = logged("events", "list", "--from-seq", "5", "--to-seq", "4").usage_error(
            "pubsub events list"
        )
        assert "--to-seq" in line
        assert "inverted" in line


class _Watching:
    """A store whose read notes, at one record, how much stdout already holds."""

    def __init__(self, store: EventStore, at: int, stdout: list[Any]) -> None:
        self._store = store
        self._at = at
        self._stdout = stdout  # the command's stdout, when --json moved sys.stdout away
        self.seen_then: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _read(self, **kw: Any) -> AsyncIterator[StoredEvent]:
        async for r in self._store.read(**kw):
            if r.seq == self._at:
                stdout = self._stdout[0] if self._stdout else sys.stdout
                stdout.flush()
                self.seen_then = stdout.buffer.getvalue().decode()
            yield r

    def read(self, **kw: Any) -> AsyncIterator[StoredEvent]:
        return self._read(**kw)


class TestStreaming:
    """Rows reach stdout while the log is still being read, a chunk at a time."""

    @pytest.mark.parametrize("json", [True, False], ids=["json", "table"])
    def test_rows_before_the_end(
        self, cli: CLI, monkeypatch: pytest.MonkeyPatch, json: bool
    ) -> None:
        """When record 1,400 is read, the first 1,000 are already printed."""
        fill(cli.db, 1500)
        watched: list[_Watching] = []
        stdout: list[Any] = []
        real_open, real_redirect = context._open_store, contextlib.redirect_stdout

        async def watching_open(url: str) -> EventStore:
            store = _Watching(await real_open(url), 1400, stdout)
            watched.append(store)
            return store  # type: ignore[return-value]

        def noting_redirect(target: Any) -> Any:
            stdout.append(sys.stdout)  # --json keeps this one for the JSON lines
            return real_redirect(target)

        monkeypatch.setattr(context, "_open_store", watching_open)
        monkeypatch.setattr(contextlib, "redirect_stdout", noting_redirect)
        r = cli("events", "list", "--limit", "0", *(["--json"] if json else []))
        assert r.exit_code == 0, r.stderr
        (store,) = watched
        assert store.seen_then is not None
        if json:
            early = [line for line in store.seen_then.splitlines() if line.startswith("{")]
            assert 1000 <= len(early) < 1400
            assert len(r.json_lines()) == 1500
        else:
            assert '"A-999"' in store.seen_then
            assert '"A-1399"' not in store.seen_then
            assert "1,500 event(s)" in r.stdout


class TestCorruptRecord:
    """A payload that fails its checksum is flagged; the rest is still listed."""

    @pytest.fixture
    def damaged(self, cli: CLI) -> CLI:
        fill(cli.db, 50)
        flip_payload_byte(cli.db, 31)
        return cli

    def test_json_flags_it_and_lists_the_rest(self, damaged: CLI) -> None:
        """The corrupt record is a line with seq, type and error; exit code 0."""
        r = damaged("events", "list", "--json")
        assert r.exit_code == 0, r.stderr
        rows = r.json_lines()
        assert [row["seq"] for row in rows] == list(range(1, 51))  # type: ignore[index]
        bad = rows[30]
        assert bad == {
            "seq": 31,
            "type": "OrderPlaced",
            "error": "corrupt: its payload does not match the stored checksum",
        }
        assert "1 corrupt record(s) listed with an error (seq 31)" in r.stderr

    def test_table_marks_the_row(self, damaged: CLI) -> None:
        """The table shows the corrupt row with a CORRUPT marker among the others."""
        r = damaged("events", "list")
        assert r.exit_code == 0
        marked = [line for line in r.stdout.splitlines() if "CORRUPT" in line]
        assert len(marked) == 1
        assert marked[0].split()[0] == "31"
        assert "50 event(s)" in r.stdout

    def test_limit_counts_the_corrupt_row(self, damaged: CLI) -> None:
        """A limit counts the flagged record as one of the listed."""
        rows = damaged("events", "list", "--json", "--from-seq", "30", "--limit", "3").json_lines()
        assert [row["seq"] for row in rows] == [30, 31, 32]  # type: ignore[index]


class TestTailPastCorruptRecord:
    """events tail flags a corrupt record and keeps following."""

    def test_json_lines_go_on(self, tmp_path: Path) -> None:
        """The corrupt record is a flagged line and the events after it still come."""
        db = tmp_path / "tail.db"
        fill(db, 10)
        flip_payload_byte(db, 5)
        watched = Watched(
            spawn("events", "tail", "--last", "10", "--json", "--db", str(db), cwd=tmp_path)
        )
        try:
            watched.expect('"seq":10,', on="stdout")
        finally:
            watched.proc.send_signal(signal.SIGINT)
        r = watched.finish()
        assert r.exit_code == 0, r.stderr
        rows = r.json_lines()
        assert [row["seq"] for row in rows] == list(range(1, 11))  # type: ignore[index]
        assert rows[4] == {  # type: ignore[comparison-overlap]
            "seq": 5,
            "type": "OrderPlaced",
            "error": "corrupt: its payload does not match the stored checksum",
        }
        assert "event seq 5 is corrupt" in r.stderr
