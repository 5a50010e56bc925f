"""Tests of settings resolution: flag > env > pyproject.toml > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubsub_cli.settings import resolve_settings

from .conftest import CLI


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
