"""Tests of ``pubsub publish``: validation, all-or-nothing batches, JSON output."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI, EXAMPLES

ORDERS = str(EXAMPLES / "orders.py")
PLACED = '{"order_id": "A-1", "sku": "BOOK", "total": "12.50"}'


def count(cli: CLI) -> int:
    r = cli("events", "list", "--json", "--limit", "0")
    assert r.exit_code == 0, r.stderr
    return len(r.json_lines())


class TestSingle:
    """TYPE --data publishes one event."""

    def test_publish_prints_seq(self, cli: CLI) -> None:
        """The sequence number goes to stdout, the note to stderr."""
        r = cli("publish", "--app", ORDERS, "OrderPlaced", "--data", PLACED)
        assert r.exit_code == 0, r.stderr
        assert r.stdout.strip() == "1"
        assert "appended 1 event(s)" in r.stderr

    def test_json(self, cli: CLI) -> None:
        """--json prints one document with the appended events."""
        r = cli("publish", "--app", ORDERS, "OrderPlaced", "--data", PLACED, "--json")
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["appended"] == 1
        assert doc["events"][0]["seq"] == 1
        assert doc["events"][0]["type"] == "OrderPlaced"

    def test_same_id_is_duplicate(self, cli: CLI) -> None:
        """Publishing an event id again appends nothing and says duplicate."""
        data = PLACED[:-1] + ', "id": "6f1c1a86-52a1-4f0e-9a33-1d1d3b0c8e11"}'
        cli("publish", "--app", ORDERS, "OrderPlaced", "--data", data)
        r = cli("publish", "--app", ORDERS, "OrderPlaced", "--data", data, "--json")
        assert r.json()["duplicates"] == 1  # type: ignore[index]
        assert count(cli) == 1

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            pytest.param(("Nope", "--data", "{}"), "unknown event type 'Nope'", id="unknown-type"),
            pytest.param(("OrderPlaced", "--data", "{bad"), "malformed JSON", id="bad-json"),
            pytest.param(
                ("OrderPlaced", "--data", '{"order_id": "A"}'), "field 'sku'", id="missing-field"
            ),
            pytest.param(
                ("OrderPlaced", "--data", '{"order_id": 1, "sku": "x", "total": "1"}'),
                "field 'order_id'",
                id="wrong-type",
            ),
        ],
    )
    def test_rejected(self, cli: CLI, args: tuple[str, ...], expected: str) -> None:
        """A bad event is one line on stderr, exit 1, and nothing is appended."""
        r = cli("publish", "--app", ORDERS, *args)
        assert r.exit_code == 1
        assert expected in r.error_line
        assert r.stdout == ""

    def test_unknown_type_without_app(self, cli: CLI) -> None:
        """Without --app the error says to import the module that defines the type."""
        r = cli("publish", "Mystery", "--data", "{}")
        assert r.exit_code == 1
        assert "import the module that defines it" in r.error_line


class TestFile:
    """--file publishes JSON lines, all or nothing."""

    def test_file(self, cli: CLI) -> None:
        """Every line of the example file is appended in order."""
        r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
        assert r.exit_code == 0, r.stderr
        assert r.stdout.split() == ["1", "2", "3", "4"]

    def test_stdin(self, cli: CLI) -> None:
        """'-' reads standard input."""
        lines = f'{{"type": "OrderPlaced", "data": {PLACED}}}\n'
        r = cli("publish", "--app", ORDERS, "--file", "-", input=lines)
        assert r.exit_code == 0, r.stderr
        assert count(cli) == 1

    def test_malformed_line_writes_nothing(self, cli: CLI, tmp_path: Path) -> None:
        """A malformed line is named with its number and no line of the batch is kept."""
        good = f'{{"type": "OrderPlaced", "data": {PLACED}}}'
        cli("publish", "--app", ORDERS, "OrderPlaced", "--data", PLACED)
        path = tmp_path / "batch.jsonl"
        path.write_text(f"{good}\n{good}\n{{not json\n{good}\n")
        r = cli("publish", "--app", ORDERS, "--file", str(path))
        assert r.exit_code == 1
        assert f"{path} line 3: malformed JSON" in r.error_line
        assert "nothing was appended" in r.error_line
        assert count(cli) == 1

    def test_unknown_type_line(self, cli: CLI, tmp_path: Path) -> None:
        """An unknown type on a line names the line."""
        path = tmp_path / "batch.jsonl"
        path.write_text('{"type": "Ghost", "data": {}}\n')
        r = cli("publish", "--app", ORDERS, "--file", str(path))
        assert r.exit_code == 1
        assert "line 1: unknown event type 'Ghost'" in r.error_line

    def test_skip_invalid(self, cli: CLI, tmp_path: Path) -> None:
        """--skip-invalid appends the good lines and reports the others."""
        good = f'{{"type": "OrderPlaced", "data": {PLACED}}}'
        path = tmp_path / "batch.jsonl"
        path.write_text(f"{good}\n[1, 2]\n{good}\n")
        r = cli("publish", "--app", ORDERS, "--file", str(path), "--skip-invalid", "--json")
        assert r.exit_code == 0
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["appended"] == 2
        assert doc["skipped"][0]["where"].endswith("line 2")

    def test_missing_file(self, cli: CLI, tmp_path: Path) -> None:
        """A missing --file is one line, exit 1."""
        r = cli("publish", "--file", str(tmp_path / "none.jsonl"))
        assert r.exit_code == 1
        assert "no such file" in r.error_line

    def test_not_utf8(self, cli: CLI, tmp_path: Path) -> None:
        """A file with bytes that are not UTF-8 is one line naming the line, exit 1,
        and nothing is appended."""
        good = f'{{"type": "OrderPlaced", "data": {PLACED}}}'
        path = tmp_path / "latin1.jsonl"
        path.write_bytes(good.encode() + b"\n" + '{"type": "caf\u00e9"}\n'.encode("latin-1"))
        r = cli("publish", "--app", ORDERS, "--file", str(path))
        assert r.exit_code == 1
        assert r.error_line == (
            f"error: {path} line 2: not UTF-8 text (byte 0xe9); nothing was appended "
            "(--skip-invalid appends the rest)"
        )
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "pubsub.db").exists()

    def test_directory(self, cli: CLI, tmp_path: Path) -> None:
        """A folder given as --file is named as a folder."""
        r = cli("publish", "--file", str(tmp_path))
        assert r.exit_code == 1
        assert r.error_line == f"error: {tmp_path}: is a directory, not a JSON-lines file"

    def test_type_and_file_is_usage_error(self, cli: CLI) -> None:
        """TYPE with --file is a usage error."""
        assert cli("publish", "X", "--file", "a.jsonl").exit_code == 2
