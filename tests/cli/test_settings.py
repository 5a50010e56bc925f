"""Tests of settings resolution: flag > env > pyproject.toml > default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pubsub_cli.settings import SettingsError, resolve_settings

from .conftest import CLI, EXAMPLES


class TestResolution:
    """Each source wins over the ones below it."""

    def test_defaults(self, tmp_path: Path) -> None:
        """Without anything, the database is ./pubsub.db and the group 'default'."""
        s = resolve_settings(cwd=tmp_path)
        assert s.db == Path("pubsub.db")
        assert s.group == "default"
        assert s.store_url == "sqlite:///pubsub.db"
        assert s.source["db"] == "default"

    def test_pyproject(self, tmp_path: Path) -> None:
        """[tool.pubsub] supplies values, paths relative to the project file."""
        (tmp_path / "pyproject.toml").write_text(
            '[tool.pubsub]\ndb = "data/events.db"\ngroup = "billing"\ngraceful-timeout = 5\n'
        )
        sub = tmp_path / "src"
        sub.mkdir()
        s = resolve_settings(cwd=sub)
        assert s.db == tmp_path / "data/events.db"
        assert s.group == "billing"
        assert s.graceful_timeout == 5.0
        assert s.source["group"] == "pyproject.toml"

    def test_given_value_wins(self, tmp_path: Path) -> None:
        """A flag (or env var, merged by typer) beats the project file."""
        (tmp_path / "pyproject.toml").write_text('[tool.pubsub]\ngroup = "billing"\n')
        assert resolve_settings(group="ops", cwd=tmp_path).group == "ops"

    def test_store_url_wins_over_db(self, tmp_path: Path) -> None:
        """--store names the store even when a db path is set."""
        s = resolve_settings(db="x.db", store="memory://", cwd=tmp_path)
        assert s.store_url == "memory://"
        assert s.sqlite_path() is None


class TestLocation:
    """db and store are one setting, the store's location: the higher source wins
    (flag > env > pyproject.toml > default); from one source, store wins."""

    @pytest.mark.parametrize(
        ("project", "given", "url"),
        [
            # a db flag beats a store from the environment or the project
            ("", {"db": "flag.db", "store": "memory://", "store_from_env": True}, "flag"),
            ('store = "memory://"', {"db": "flag.db"}, "flag"),
            # a db from the environment beats a project store, not a store flag
            ('store = "memory://"', {"db": "env.db", "db_from_env": True}, "env"),
            ("", {"db": "env.db", "db_from_env": True, "store": "memory://"}, "memory"),
            # a store from the environment beats a project db
            ('db = "project.db"', {"store": "memory://", "store_from_env": True}, "memory"),
            # same source: store wins
            ('db = "project.db"\nstore = "memory://"', {}, "memory"),
            (
                "",
                {"db": "env.db", "db_from_env": True, "store": "memory://", "store_from_env": True},
                "memory",
            ),
            ("", {"db": "flag.db", "store": "memory://"}, "memory"),
        ],
    )
    def test_higher_source_wins(
        self, tmp_path: Path, project: str, given: dict[str, Any], url: str
    ) -> None:
        (tmp_path / "pyproject.toml").write_text(f"[tool.pubsub]\n{project}\n")
        s = resolve_settings(cwd=tmp_path, **given)
        expected = {
            "flag": "sqlite:///flag.db",
            "env": "sqlite:///env.db",
            "memory": "memory://",
        }[url]
        assert s.store_url == expected

    @pytest.mark.parametrize("where", ["root", "command"])
    def test_db_flag_beats_store_env(self, cli: CLI, where: str) -> None:
        args = (
            ["--db", "flag.db", "events", "list"]
            if where == "root"
            else ["events", "list", "--db", "flag.db"]
        )
        r = cli(*args, env={"PUBSUB_STORE": "memory://"})
        assert r.exit_code == 1
        assert "flag.db" in r.error_line

    def test_db_flag_beats_project_store(self, cli: CLI, tmp_path: Path) -> None:
        (tmp_path / "pyproject.toml").write_text('[tool.pubsub]\nstore = "memory://"\n')
        r = cli("events", "list", "--db", "flag.db")
        assert r.exit_code == 1
        assert "flag.db" in r.error_line

    def test_db_env_beats_project_store(self, cli: CLI, tmp_path: Path) -> None:
        (tmp_path / "pyproject.toml").write_text('[tool.pubsub]\nstore = "memory://"\n')
        r = cli("events", "list", env={"PUBSUB_DB": "env.db"})
        assert r.exit_code == 1
        assert "env.db" in r.error_line

    def test_store_flag_beats_db_env(self, cli: CLI) -> None:
        r = cli("--store", "memory://", "events", "list", "--json", env={"PUBSUB_DB": "env.db"})
        assert r.exit_code == 0, r.stderr  # the empty memory store, not the missing env.db
        assert "error" not in r.stderr


class TestThroughTheCLI:
    """The command line applies the order."""

    def test_env_beats_pyproject(self, cli: CLI, tmp_path: Path) -> None:
        """PUBSUB_DB is used over [tool.pubsub] db; a flag beats both."""
        (tmp_path / "pyproject.toml").write_text('[tool.pubsub]\ndb = "project.db"\n')
        r = cli("events", "list", env={"PUBSUB_DB": "env.db"})
        assert r.exit_code == 1
        assert "env.db" in r.error_line
        r = cli("events", "list", "--db", "flag.db", env={"PUBSUB_DB": "env.db"})
        assert "flag.db" in r.error_line

    @pytest.mark.parametrize("where", ["root", "command"])
    def test_db_flag_positions(self, cli: CLI, where: str) -> None:
        """--db works before the command and after it."""
        args = (
            ["--db", "nowhere.db", "events", "list"]
            if where == "root"
            else ["events", "list", "--db", "nowhere.db"]
        )
        r = cli(*args)
        assert r.exit_code == 1
        assert "nowhere.db" in r.error_line


class TestProjectFileErrors:
    """A bad [tool.pubsub] is refused with one line naming the file and the key."""

    @pytest.mark.parametrize(
        ("toml", "problem"),
        [
            (
                'graceful-timeout = "x"',
                "[tool.pubsub] graceful-timeout: expected a number of seconds >= 0, "
                "got a string 'x'",
            ),
            ("graceful-timeout = -1", "graceful-timeout: expected a number of seconds >= 0"),
            ("graceful-timeout = true", "graceful-timeout: expected a number of seconds >= 0"),
            ("db = 5", "[tool.pubsub] db: expected a path (a non-empty string), got an integer 5"),
            ('group = ""', "group: expected a group name (a non-empty string), got a string ''"),
            ("store = [1]", "store: expected a store URL (a non-empty string), got an array"),
            (
                'dbb = "x.db"',
                "[tool.pubsub]: unknown key 'dbb'; known: db, store, group, app-dir, "
                "graceful-timeout",
            ),
            ('app-dir = "nodir"', "[tool.pubsub] app-dir: 'nodir' is not a folder"),
            ("db = ", "not valid TOML: Invalid value (at line 2, column 6)"),
        ],
    )
    def test_resolve_refuses(self, tmp_path: Path, toml: str, problem: str) -> None:
        """resolve_settings raises SettingsError with the file, the key and the problem."""
        (tmp_path / "pyproject.toml").write_text(f"[tool.pubsub]\n{toml}\n")
        with pytest.raises(SettingsError) as info:
            resolve_settings(cwd=tmp_path)
        assert str(info.value).startswith(str(tmp_path / "pyproject.toml"))
        assert problem in str(info.value)

    def test_underscore_spelling_accepted(self, tmp_path: Path) -> None:
        """graceful_timeout is the same key as graceful-timeout."""
        (tmp_path / "pyproject.toml").write_text("[tool.pubsub]\ngraceful_timeout = 3\n")
        assert resolve_settings(cwd=tmp_path).graceful_timeout == 3.0

    def test_not_a_table(self, tmp_path: Path) -> None:
        """tool.pubsub must be a table."""
        (tmp_path / "pyproject.toml").write_text("[tool]\npubsub = 3\n")
        with pytest.raises(SettingsError, match=r"tool\.pubsub must be a table, got an integer"):
            resolve_settings(cwd=tmp_path)

    def test_other_tools_tables_are_ignored(self, tmp_path: Path) -> None:
        """Only [tool.pubsub] is checked."""
        (tmp_path / "pyproject.toml").write_text('[tool.ruff]\nwhatever = 1\n[project]\nname="x"\n')
        assert resolve_settings(cwd=tmp_path).group == "default"

    @pytest.mark.parametrize(
        "args",
        [
            ("events", "list"),
            ("stats",),
            ("publish", "--app", str(EXAMPLES / "orders.py"), "OrderShipped", "--data", "{}"),
        ],
    )
    def test_cli_one_line_exit_2(self, cli: CLI, tmp_path: Path, args: tuple[str, ...]) -> None:
        """Through the command line: exit 2, one line, no traceback, no store created."""
        (tmp_path / "pyproject.toml").write_text('[tool.pubsub]\ngraceful-timeout = "x"\n')
        r = cli(*args)
        assert r.exit_code == 2
        assert r.stderr == (
            f"error: {tmp_path / 'pyproject.toml'} [tool.pubsub] graceful-timeout: "
            "expected a number of seconds >= 0, got a string 'x'\n"
        )
        assert not cli.db.exists()


class TestEnvironmentErrors:
    """A bad PUBSUB_* value is a usage error naming the variable."""

    @pytest.mark.parametrize(
        ("env", "line"),
        [
            (
                {"PUBSUB_STORE": "garbage"},
                "error: PUBSUB_STORE='garbage': 'garbage' is not a store URL: use "
                "sqlite:///path.db, memory:// or another scheme 'pubsub plugins list' shows",
            ),
            (
                {"PUBSUB_APP_DIR": "nodir"},
                "error: PUBSUB_APP_DIR='nodir': folder 'nodir' does not exist",
            ),
            (
                {"PUBSUB_GRACEFUL_TIMEOUT": "-2"},
                "error: PUBSUB_GRACEFUL_TIMEOUT='-2': must be >= 0",
            ),
        ],
    )
    def test_one_line(self, cli: CLI, env: dict[str, str], line: str) -> None:
        """run reads all three; the message names the variable and its value."""
        r = cli("run", "x.py", env=env)
        hint = "pubsub" if "PUBSUB_STORE" in env else "pubsub run"  # --store is a root option
        assert r.usage_error(hint) == line

    def test_store_flag_checked_too(self, cli: CLI) -> None:
        """--store on a command is checked the same way."""
        r = cli("events", "list", "--store", "pubsub.db")
        assert r.usage_error("pubsub events list").startswith(
            "error: --store: 'pubsub.db' is not a store URL"
        )


class TestLeaseTtlSetting:
    def test_lease_ttl_from_the_project_and_the_flag(self, tmp_path: Path) -> None:
        """[tool.pubsub] lease-ttl sets the worker's lease; a flag beats it; the default is 15."""
        assert resolve_settings(cwd=tmp_path).lease_ttl == 15.0
        (tmp_path / "pyproject.toml").write_text("[tool.pubsub]\nlease-ttl = 4.5\n")
        assert resolve_settings(cwd=tmp_path).lease_ttl == 4.5
        assert resolve_settings(cwd=tmp_path, lease_ttl=2.0).lease_ttl == 2.0

    def test_a_lease_shorter_than_a_tenth_of_a_second_is_refused(self, tmp_path: Path) -> None:
        """lease-ttl = 0 in the project file is one error naming the key."""
        (tmp_path / "pyproject.toml").write_text("[tool.pubsub]\nlease-ttl = 0\n")
        with pytest.raises(SettingsError, match="lease-ttl"):
            resolve_settings(cwd=tmp_path)
