"""Read commands on SQLite stores: they take store URLs with options, never create or
initialize a database (an empty file is refused and left byte-for-byte as it was), and
refuse bad option values with one line."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import CLI, isolated_imports

__all__ = ["isolated_imports"]  # the fixture, used by cli below

HANDLERS = """
from dataclasses import dataclass

from core import Event, Router

router = Router(name="h")


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="Tick"):
    n: int


@router.subscribe(Tick, name="h.tick")
async def tick(event: Tick) -> None:
    pass
"""

READ_COMMANDS = [
    pytest.param(("events", "list"), id="events-list"),
    pytest.param(("events", "list", "--json"), id="events-list-json"),
    pytest.param(("stats",), id="stats"),
    pytest.param(("dlq", "list"), id="dlq-list"),
    pytest.param(("snapshot", "list"), id="snapshot-list"),
]


@pytest.fixture
def cli(tmp_path: Path, isolated_imports: None) -> CLI:
    return CLI(tmp_path / "pubsub.db", tmp_path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def published(cli: CLI, tmp_path: Path) -> Path:
    """A store holding two events."""
    (tmp_path / "h.py").write_text(HANDLERS)
    for n in (1, 2):
        r = cli("publish", "Tick", "--app", "h.py", "--data", f'{{"n": {n}}}')
        assert r.exit_code == 0, r.stderr
    return cli.db


class TestStoreURLOptions:
    """A store URL with options names the file before the query string."""

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param("?mode=ro", id="mode-ro"),
            pytest.param("?mode=rw", id="mode-rw"),
            pytest.param("?busy_timeout=2", id="busy-timeout"),
            pytest.param("?busy_timeout=2&synchronous=NORMAL", id="two-options"),
        ],
    )
    def test_events_list_reads_with_options(self, cli: CLI, published: Path, query: str) -> None:
        """events list --store sqlite:///x.db?... lists the events."""
        r = cli("events", "list", "--json", "--store", f"sqlite:///{published}{query}")
        assert r.exit_code == 0, r.stderr
        assert [line["seq"] for line in r.json_lines()] == [1, 2]  # type: ignore[index]

    def test_missing_file_with_options_is_named_without_them(
        self, cli: CLI, tmp_path: Path
    ) -> None:
        """A missing file is reported by its path, and nothing is created."""
        missing = tmp_path / "missing.db"
        r = cli("stats", "--store", f"sqlite:///{missing}?mode=ro")
        assert r.exit_code == 1
        assert r.error_line == (
            f"error: store {missing}: does not exist: pass --db PATH (or set PUBSUB_DB) to "
            "an existing store, or create one with 'pubsub publish' or 'pubsub run'"
        )
        assert not missing.exists()

    @pytest.mark.parametrize("value", ["inf", "nan", "1e400", "-1", "soon"])
    def test_bad_busy_timeout_is_one_line(self, cli: CLI, published: Path, value: str) -> None:
        """busy_timeout must be a finite number of seconds: else exit 1, one line."""
        url = f"sqlite:///{published}?busy_timeout={value}"
        r = cli("events", "list", "--store", url)
        assert r.exit_code == 1
        assert r.error_line.startswith(
            f"error: store {url}: option busy_timeout={value!r} must be a number of seconds"
        )
        assert "Traceback" not in r.stderr


class TestNeverCreates:
    """Read commands leave a file that is not a store yet exactly as it was."""

    @pytest.mark.parametrize("command", READ_COMMANDS)
    def test_empty_file_is_refused_untouched(
        self, cli: CLI, tmp_path: Path, command: tuple[str, ...]
    ) -> None:
        """A 0-byte file: exit 1, one line saying it is empty, still 0 bytes, no -wal."""
        empty = tmp_path / "empty.db"
        empty.write_bytes(b"")
        r = cli(*command, "--db", str(empty))
        assert r.exit_code == 1, r.stdout
        assert "is an empty file (0 bytes), not a pubsub store yet" in r.error_line
        assert empty.read_bytes() == b""
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("empty")) == [
            "empty.db"
        ]
        if "--json" in command:
            assert r.stdout == ""

    def test_empty_sqlite_database_is_refused_untouched(self, cli: CLI, tmp_path: Path) -> None:
        """An empty SQLite database (no tables) is not made a store by a read command."""
        blank = tmp_path / "blank.db"
        conn = sqlite3.connect(blank)
        conn.execute("PRAGMA user_version = 0")
        conn.execute("VACUUM")  # writes the header: a valid, empty database file
        conn.close()
        before = digest(blank)
        r = cli("events", "list", "--db", str(blank))
        assert r.exit_code == 1
        assert "is an empty SQLite database, not a pubsub store yet" in r.error_line
        assert digest(blank) == before

    def test_publish_still_creates_the_store(self, cli: CLI, tmp_path: Path) -> None:
        """A command that creates stores (publish) still turns an empty file into one."""
        (tmp_path / "h.py").write_text(HANDLERS)
        empty = tmp_path / "new.db"
        empty.write_bytes(b"")
        r = cli("publish", "Tick", "--app", "h.py", "--data", '{"n": 1}', "--db", str(empty))
        assert r.exit_code == 0, r.stderr
        r = cli("events", "list", "--json", "--db", str(empty))
        assert [line["seq"] for line in r.json_lines()] == [1]  # type: ignore[index]
