"""Tests of ``pubsub events list / show``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI, EXAMPLES, pubsub_process, spawn

ORDERS = str(EXAMPLES / "orders.py")


@pytest.fixture
def filled(cli: CLI) -> CLI:
    r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
    assert r.exit_code == 0, r.stderr
    return cli


class TestList:
    """events list browses the log in sequence order."""

    def test_table(self, filled: CLI) -> None:
        """The table shows every event and its type."""
        r = filled("events", "list")
        assert r.exit_code == 0
        assert "OrderShipped" in r.stdout
        assert "4 event(s)" in r.stdout

    def test_table_ids_tell_events_apart(self, filled: CLI) -> None:
        """The id column shows the random end of each (time-ordered) id."""
        ids = [row["id"] for row in filled("events", "list", "--json").json_lines()]  # type: ignore[index]
        table = filled("events", "list").stdout
        shown = [str(i).replace("-", "")[-12:] for i in ids]
        assert len(set(shown)) == len(ids)
        for short in shown:
            assert short in table

    def test_json_lines(self, filled: CLI) -> None:
        """--json prints one JSON object per line with the documented keys."""
        rows = filled("events", "list", "--json").json_lines()
        assert [r["seq"] for r in rows] == [1, 2, 3, 4]  # type: ignore[index]
        assert set(rows[0]) == {  # type: ignore[arg-type]
            "seq",
            "id",
            "type",
            "version",
            "created_at",
            "appended_at",
            "correlation_id",
            "causation_id",
            "data",
        }

    def test_filters(self, filled: CLI) -> None:
        """--type, --from-seq and --limit select."""
        rows = filled("events", "list", "--json", "--type", "OrderShipped").json_lines()
        assert [r["seq"] for r in rows] == [4]  # type: ignore[index]
        rows = filled("events", "list", "--json", "--from-seq", "2", "--limit", "2").json_lines()
        assert [r["seq"] for r in rows] == [2, 3]  # type: ignore[index]

    def test_since_until(self, filled: CLI) -> None:
        """--since 1h includes everything just written; --until 1h excludes it."""
        assert len(filled("events", "list", "--json", "--since", "1h").json_lines()) == 4
        assert filled("events", "list", "--json", "--until", "1h").json_lines() == []
        far = "2999-01-01T00:00:00"
        assert filled("events", "list", "--json", "--since", far).json_lines() == []


class TestShow:
    """events show prints one event with its causal chain."""

    def test_by_seq(self, filled: CLI) -> None:
        """A sequence number finds the event; --json has event, causes, effects."""
        doc = filled("events", "show", "3", "--json").json()
        assert isinstance(doc, dict)
        assert doc["event"]["data"]["sku"] == "GHOST"
        assert doc["causes"] == []
        assert doc["effects"] == []

    def test_by_id(self, filled: CLI) -> None:
        """An event id finds the same event."""
        first = filled("events", "list", "--json").json_lines()[0]
        doc = filled("events", "show", first["id"], "--json").json()  # type: ignore[index]
        assert doc["event"]["seq"] == 1  # type: ignore[index]

    def test_table(self, filled: CLI) -> None:
        """Without --json the payload and the chain are shown."""
        r = filled("events", "show", "1")
        assert r.exit_code == 0
        assert "causal chain" in r.stdout
        assert "BOOK" in r.stdout

    def test_missing(self, filled: CLI) -> None:
        """An unknown sequence number is one line, exit 1."""
        r = filled("events", "show", "99")
        assert r.exit_code == 1
        assert "no event 99" in r.error_line

    def test_bad_ref(self, filled: CLI) -> None:
        """Something that is neither a number nor a UUID is a usage error."""
        r = filled("events", "show", "abc")
        assert r.usage_error("pubsub events show") == (
            "error: SEQ|ID: 'abc' is neither a sequence number, an event id (UUID) nor a "
            "short id (at least 4 hex digits of one, as 'events list' shows)"
        )

    @pytest.mark.parametrize("ref", ["0", "-1", "99999999999999999999999"])
    def test_seq_out_of_range(self, filled: CLI, ref: str) -> None:
        """A sequence number below 1 or beyond 64 bits is a usage error, not a traceback."""
        r = filled("events", "show", "--", ref)
        assert r.usage_error("pubsub events show") == (
            f"error: SEQ|ID: {ref!r} is not a sequence number: they run from 1 to {2**63 - 1}"
        )


class TestShortId:
    """events show takes the short id events list prints, or any unique fragment."""

    def ids(self, cli: CLI) -> list[str]:
        return [str(row["id"]) for row in cli("events", "list", "--json").json_lines()]  # type: ignore[index]

    def test_the_short_id_of_the_table(self, filled: CLI) -> None:
        """The 12 digits events list shows find that event."""
        ids = self.ids(filled)
        short = ids[2].replace("-", "")[-12:]
        assert short in filled("events", "list").stdout
        r = filled("events", "show", short, "--json")
        assert r.exit_code == 0, r.stderr
        assert r.json()["event"]["seq"] == 3  # type: ignore[index]

    def test_a_unique_start(self, filled: CLI) -> None:
        """The first digits of the full id work too, with or without dashes."""
        ids = self.ids(filled)
        r = filled("events", "show", ids[1][:23].upper(), "--json")
        assert r.json()["event"]["id"] == ids[1]  # type: ignore[index]

    def test_ambiguous_lists_candidates(self, filled: CLI) -> None:
        """A fragment that fits several events is one error line naming them, exit 1."""
        ids = self.ids(filled)
        common = ids[0][:8]  # time-ordered ids made together share their start
        assert all(i.startswith(common) for i in ids)
        r = filled("events", "show", common)
        assert r.exit_code == 1
        line = r.error_line
        assert f"short id {common!r} is ambiguous: it fits 4 events" in line
        for n, full in enumerate(ids, start=1):
            assert f"#{n} {full}" in line

    def test_no_match(self, filled: CLI) -> None:
        """A well-formed fragment that fits nothing is 'no event', exit 1."""
        r = filled("events", "show", "ffffffffffff")
        assert r.exit_code == 1
        assert "no event ffffffffffff" in r.error_line


class TestClosedPipe:
    """A reader that leaves early (``pubsub events list --json | head -1``) ends the
    command quietly with exit 0."""

    @pytest.mark.parametrize("json", [True, False])
    def test_reader_leaves_early(self, tmp_path: Path, json: bool) -> None:
        lines = "".join(
            f'{{"type": "OrderPlaced", "data": {{"order_id": "A-{n}", "sku": "BOOK", '
            f'"total": "1.00"}}}}\n'
            for n in range(3000)  # far more output than a pipe holds: the writer blocks
        )
        (tmp_path / "many.jsonl").write_text(lines)
        env = {"PUBSUB_DB": str(tmp_path / "pubsub.db")}
        r = pubsub_process(
            "publish", "--app", ORDERS, "--file", "many.jsonl", cwd=tmp_path, env=env
        )
        assert r.exit_code == 0, r.stderr
        args = ["events", "list", "--limit", "3000"] + (["--json"] if json else [])
        proc = spawn(*args, cwd=tmp_path, env=env)
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline()
        proc.stdout.close()  # the reader leaves while the writer still has lines
        code = proc.wait(timeout=120)
        err = proc.stderr.read()
        proc.stderr.close()
        assert code == 0, err
        assert err == ""
