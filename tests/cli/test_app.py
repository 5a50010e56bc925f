"""Tests of the command line as a whole: help, version, exit codes, JSON mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from pubsub_cli.app import app
from pubsub_cli.context import Invocation, shared_options
from pubsub_cli.times import ACCEPTED_FORMS

from .conftest import CLI, pubsub_process


class TestBasics:
    """Help and version work without a store."""

    def test_version(self, cli: CLI) -> None:
        """--version prints the version and exits 0."""
        r = cli("--version")
        assert r.exit_code == 0
        assert r.stdout.startswith("pubsub ")

    def test_help_lists_commands(self, cli: CLI) -> None:
        """--help names every command group."""
        r = cli("--help")
        assert r.exit_code == 0
        for name in (
            "run",
            "publish",
            "events",
            "replay",
            "snapshot",
            "dlq",
            "bench",
            "stats",
            "plugins",
            "check",
        ):
            assert name in r.stdout

    def test_usage_error_is_2(self, cli: CLI) -> None:
        """An unknown option is a usage error, exit 2."""
        r = cli("events", "list", "--nope")
        assert r.usage_error("pubsub events list").startswith("error: no such option --nope")

    @pytest.mark.parametrize(
        "since",
        ["yesterday", "5w", "10 minutes", "99999999999999999999d", "0001-01-01T00:00+05:00"],
    )
    @pytest.mark.parametrize("flag", ["--since", "--until"])
    def test_bad_since_is_usage_error(self, cli: CLI, flag: str, since: str) -> None:
        """A bad or out-of-range --since/--until exits 2 and shows the accepted forms."""
        r = cli("events", "list", flag, since)
        line = r.usage_error("pubsub events list")
        assert line.startswith(f"error: {flag}: {since!r} ")
        assert line.endswith(": use " + ACCEPTED_FORMS)

    def test_help_shows_env_vars(self, cli: CLI) -> None:
        """Important options show their environment variable."""
        r = cli("run", "--help")
        assert "PUBSUB_DB" in r.stdout
        assert "PUBSUB_GROUP" in r.stdout


class TestUsageErrors:
    """Every usage error is one line on stderr and a help hint, exit 2; help stays rich."""

    @pytest.mark.parametrize(
        ("args", "command", "line"),
        [
            (
                ("replay", "x.py", "--since", "10x"),
                "pubsub replay",
                "error: --since: '10x' is not a time: use " + ACCEPTED_FORMS,
            ),
            (("replay",), "pubsub replay", "error: missing argument TARGET"),
            (("nocmd",), "pubsub", "error: no such command 'nocmd'"),
            (
                ("events", "list", "--limit", "-1"),
                "pubsub events list",
                "error: --limit: must be >= 0",
            ),
            (
                ("events", "list", "-n", "abc"),
                "pubsub events list",
                "error: --limit: not an integer",
            ),
            (
                ("bench", "--store", "redis"),
                "pubsub bench",
                "error: --store: 'redis' is not one of 'memory', 'sqlite'",
            ),
            (
                ("dlq", "list", "--status", "gone"),
                "pubsub dlq list",
                "error: --status: 'gone' is not one of 'open', 'resolved', 'all'",
            ),
            (
                ("stats", "--json", "extra"),
                "pubsub stats",
                "error: got unexpected extra argument(s) (extra)",
            ),
        ],
    )
    def test_one_line(self, cli: CLI, args: tuple[str, ...], command: str, line: str) -> None:
        """The message names the option (or argument) and says what is wrong."""
        assert cli(*args).usage_error(command) == line

    def test_env_value_names_the_variable(self, cli: CLI) -> None:
        """A bad value from the environment names the variable and the value."""
        r = cli("run", "x.py", env={"PUBSUB_GRACEFUL_TIMEOUT": "soon"})
        assert r.usage_error("pubsub run") == "error: PUBSUB_GRACEFUL_TIMEOUT='soon': not a number"

    def test_long_message_is_not_wrapped(self, tmp_path: Path) -> None:
        """A real process on a narrow terminal still prints the message as one line."""
        r = pubsub_process("replay", "x.py", "--since", "10x", cwd=tmp_path, env={"COLUMNS": "40"})
        line = r.usage_error("pubsub replay")
        assert line == "error: --since: '10x' is not a time: use " + ACCEPTED_FORMS
        assert "╭" not in r.stderr

    def test_help_is_still_rich(self, cli: CLI) -> None:
        """--help keeps typer's panels."""
        r = cli("replay", "--help")
        assert r.exit_code == 0
        assert "╭─ Options" in r.stdout
        assert r.stderr == ""

    def test_group_without_command_shows_help(self, cli: CLI) -> None:
        """A group without its command prints the group's help, not an error line."""
        r = cli("dlq")
        assert r.exit_code == 2
        assert "╭─ Commands" in r.stdout
        assert "error:" not in r.stderr


APP_DIR_COMMANDS: dict[str, tuple[str, ...]] = {  # command -> arguments besides --app-dir
    "replay": ("x.py",),
    "run": ("x.py",),
    "publish": ("X", "--data", "{}"),
    "dlq retry": ("1", "--app", "x.py"),
    "snapshot create": ("x.py",),
    "snapshot restore": ("x.py",),
}


def _commands_with(option: str) -> set[str]:
    """The command paths (without 'pubsub') whose parameters include ``option``."""
    found: set[str] = set()

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))
        if any(option in getattr(p, "opts", ()) for p in command.params):
            found.add(" ".join(path))

    walk(typer.main.get_command(app), ())
    return found


class TestAppDir:
    """--app-dir must name an existing folder, on every command that takes it."""

    def test_list_is_complete(self) -> None:
        """The cases below cover every command with --app-dir."""
        assert _commands_with("--app-dir") == set(APP_DIR_COMMANDS)

    @pytest.mark.parametrize("command", sorted(APP_DIR_COMMANDS))
    def test_missing_folder(self, cli: CLI, command: str) -> None:
        """A folder that does not exist is refused before anything is opened or created."""
        r = cli(*command.split(), *APP_DIR_COMMANDS[command], "--app-dir", "nodir")
        line = r.usage_error(f"pubsub {command}")
        assert line == "error: --app-dir: folder 'nodir' does not exist"
        assert not cli.db.exists()

    def test_a_file_is_not_a_folder(self, cli: CLI, tmp_path: Path) -> None:
        """A file given as --app-dir is refused too."""
        (tmp_path / "handlers.py").write_text("")
        r = cli("replay", "x.py", "--app-dir", "handlers.py")
        assert (
            r.usage_error("pubsub replay")
            == "error: --app-dir: 'handlers.py' is a file, not a folder"
        )


class TestUnexpectedErrors:
    """An exception the command line does not expect (a bug) is still one line."""

    @pytest.fixture
    def broken_stats(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def boom(store: object) -> dict[str, object]:
            raise RuntimeError("boom")

        monkeypatch.setattr("pubsub_cli.commands.stats._counts", boom)

    def test_one_line_exit_1(self, cli: CLI, broken_stats: None) -> None:
        """Exit 1 and one line that says it is unexpected; no traceback."""
        r = cli("stats", "--store", "memory://")
        assert r.exit_code == 1
        assert r.stderr == (
            "error: unexpected RuntimeError: boom (a bug in pubsub: please report it; "
            "-v shows the traceback)\n"
        )

    def test_verbose_shows_traceback(self, cli: CLI, broken_stats: None) -> None:
        """-v adds the traceback before the line."""
        r = cli("-v", "stats", "--store", "memory://")
        assert r.exit_code == 1
        assert r.stderr.startswith("Traceback (most recent call last):")
        assert r.stderr.splitlines()[-1].startswith("error: unexpected RuntimeError: boom")


class TestProcess:
    """The installed entry points behave like the in-process runner."""

    def test_python_m(self, tmp_path: Path) -> None:
        """python -m pubsub_cli runs the same command line."""
        r = pubsub_process("--version", cwd=tmp_path)
        assert r.exit_code == 0
        assert r.stdout.startswith("pubsub ")

    def test_help_does_not_import_rich_console(self, tmp_path: Path) -> None:
        """Importing the app does not import rich's console (rich is loaded lazily)."""
        code = "import sys, pubsub_cli.app; print('rich.console' in sys.modules)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"

    def test_missing_db_one_line(self, tmp_path: Path) -> None:
        """A read command on a missing database: one line, exit 1, nothing created."""
        r = pubsub_process("events", "list", "--db", "missing.db", cwd=tmp_path)
        assert r.exit_code == 1
        assert r.stderr.count("\n") == 1
        assert r.error_line.startswith("error: store missing.db: does not exist")
        assert not (tmp_path / "missing.db").exists()

    def test_foreign_file_untouched(self, tmp_path: Path) -> None:
        """A file that is not a pubsub store is refused and left byte-for-byte unchanged."""
        foreign = tmp_path / "notes.db"
        foreign.write_bytes(b"these are my notes, not a database\n" * 100)
        before = foreign.read_bytes()
        for args in (("events", "list"), ("publish", "X", "--data", "{}"), ("check",)):
            r = pubsub_process(*args, "--db", str(foreign), cwd=tmp_path)
            assert r.exit_code == 1, args
            assert foreign.read_bytes() == before
            assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]

    def test_foreign_sqlite_untouched(self, tmp_path: Path) -> None:
        """A SQLite file of another application is refused and left unchanged."""
        import sqlite3
        from contextlib import closing

        other = tmp_path / "other.db"
        with closing(sqlite3.connect(other)) as conn, conn:
            conn.execute("create table t (x)")
            conn.execute("insert into t values (1)")
        conn.close()
        before = other.read_bytes()
        r = pubsub_process("events", "list", "--db", str(other), cwd=tmp_path)
        assert r.exit_code == 1
        assert "not a pubsub store" in r.error_line
        assert other.read_bytes() == before


def help_options(text: str) -> list[str]:
    """The long option names of a --help screen, in the order shown."""
    rows = (line.strip("│ ") for line in text.splitlines())
    return [row.split()[0] for row in rows if row.startswith("--")]


class TestSharedOptions:
    """Commands get --app-dir, --json, --db and --store from one declaration."""

    @pytest.mark.parametrize(
        ("command", "expected"),
        [
            (("dlq", "list"), ["--json", "--db", "--store"]),
            (("replay",), ["--app-dir", "--json", "--db", "--store"]),
            (("run",), ["--app-dir", "--db", "--store"]),
            (("bench",), ["--store", "--json"]),  # bench's own --store (memory|sqlite)
        ],
    )
    def test_help_lists_them_after_the_commands_own(
        self, cli: CLI, command: tuple[str, ...], expected: list[str]
    ) -> None:
        """They follow the command's own options, in the same order everywhere."""
        r = cli(*command, "--help")
        assert r.exit_code == 0
        shown = help_options(r.stdout)
        assert [o for o in shown if o in ("--app-dir", "--json", "--db", "--store")] == expected
        assert shown[-1] == "--help"

    def test_a_command_cannot_redeclare_one(self) -> None:
        """Declaring --json (or --db...) itself as well is a programming error."""

        def twice(inv: Invocation, json: bool = False) -> None:
            del inv, json

        with pytest.raises(TypeError, match="json"):
            shared_options()(twice)
