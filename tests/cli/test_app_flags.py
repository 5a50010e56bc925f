"""Tests of what users of comparable command lines expect of ``pubsub``: ``--version``
with Python and platform, the output flags after the command too, ``--no-color``,
``--config FILE``, and help screens without typer's type noise."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from .conftest import CLI, EXAMPLES

ORDERS = str(EXAMPLES / "orders.py")


@pytest.fixture
def filled(cli: CLI) -> CLI:
    r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
    assert r.exit_code == 0, r.stderr
    return cli


class TestVersion:
    """--version says what a bug report needs."""

    def test_names_python_and_platform(self, cli: CLI) -> None:
        """One line: pubsub's version, Python's version and implementation, the platform."""
        r = cli("--version")
        assert r.exit_code == 0
        (line,) = r.stdout.splitlines()
        assert line.startswith("pubsub 0.")
        assert f"Python {platform.python_version()} {platform.python_implementation()}" in line
        assert platform.system() in line


class TestOutputFlagsAfterTheCommand:
    """-v, -vv, -q and --no-color work after the command as before it."""

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(("-v", "events", "list"), id="before"),
            pytest.param(("events", "list", "-v"), id="after"),
            pytest.param(("events", "list", "-vv"), id="after-vv"),
        ],
    )
    def test_verbose_shows_the_traceback(self, cli: CLI, args: tuple[str, ...]) -> None:
        """On a missing store, -v adds the traceback to the one error line."""
        r = cli(*args)
        assert r.exit_code == 1
        assert "Traceback" in r.stderr
        assert "does not exist" in r.error_line

    def test_without_verbose_no_traceback(self, cli: CLI) -> None:
        """The same failure without -v is the line alone."""
        r = cli("events", "list")
        assert r.exit_code == 1
        assert "Traceback" not in r.stderr

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(("-q", "events", "list"), id="before"),
            pytest.param(("events", "list", "-q"), id="after"),
            pytest.param(("events", "list", "--quiet", "--json"), id="after-long"),
        ],
    )
    def test_quiet_hides_notes(self, filled: CLI, args: tuple[str, ...]) -> None:
        """-q silences the note that a default limit cut the listing."""
        lines = "".join(
            f'{{"type": "OrderShipped", "data": {{"order_id": "{n}"}}}}\n' for n in range(100)
        )
        assert filled("publish", "--app", ORDERS, "--file", "-", input=lines).exit_code == 0
        loud = filled(*[a for a in args if a not in ("-q", "--quiet")])
        assert "showing the first 100" in loud.stderr
        r = filled(*args)
        assert r.exit_code == 0
        assert "showing the first 100" not in r.stderr

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(("--no-color", "events", "list"), id="before"),
            pytest.param(("events", "list", "--no-color"), id="after"),
        ],
    )
    def test_no_color(self, filled: CLI, args: tuple[str, ...]) -> None:
        """--no-color keeps escape codes out of output that would otherwise be coloured."""
        colour = {"NO_COLOR": "", "FORCE_COLOR": "1"}
        assert "\x1b[" in filled("events", "list", env=colour).stdout
        r = filled(*args, env=colour)
        assert r.exit_code == 0
        assert "\x1b[" not in r.stdout
        assert "OrderShipped" in r.stdout


class TestConfigFile:
    """--config FILE reads settings from a pyproject-style or a plain pubsub.toml file."""

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param('db = "elsewhere.db"\n', id="plain"),
            pytest.param('[tool.pubsub]\ndb = "elsewhere.db"\n', id="pyproject-style"),
        ],
    )
    def test_db_from_the_file(self, filled: CLI, tmp_path: Path, body: str) -> None:
        """The file's db is used (relative to the file); PUBSUB_DB still beats it."""
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "pubsub.toml").write_text(body)
        filled.db.rename(conf / "elsewhere.db")
        r = filled(
            "--config", str(conf / "pubsub.toml"), "events", "list", "--json", env={"PUBSUB_DB": ""}
        )
        assert r.exit_code == 0, r.stderr
        assert len(r.json_lines()) == 4

    def test_replaces_the_nearest_pyproject(self, filled: CLI, tmp_path: Path) -> None:
        """A broken pyproject.toml nearby is not read when --config names a file."""
        (tmp_path / "pyproject.toml").write_text("this is [ not toml")
        assert filled("events", "list").exit_code == 2
        (tmp_path / "pubsub.toml").write_text(f'db = "{filled.db.name}"\n')
        r = filled("--config", "pubsub.toml", "events", "list", "--json")
        assert r.exit_code == 0, r.stderr

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            pytest.param(None, "does not exist: pass a TOML file", id="missing"),
            pytest.param("dbb = 'x.db'\n", "unknown key 'dbb'", id="unknown-key"),
            pytest.param("[tool.other]\nx = 1\n", "no [tool.pubsub] table", id="no-table"),
            pytest.param("db = [", "not valid TOML", id="not-toml"),
        ],
    )
    def test_bad_file_is_a_usage_error(
        self, filled: CLI, tmp_path: Path, body: str | None, message: str
    ) -> None:
        """A missing or bad file is one error line, exit 2."""
        path = tmp_path / "bad.toml"
        if body is not None:
            path.write_text(body)
        r = filled("--config", str(path), "events", "list")
        assert r.exit_code == 2
        assert message in r.error_line


COMMANDS = [
    (),
    ("run",),
    ("publish",),
    ("events", "list"),
    ("events", "tail"),
    ("events", "show"),
    ("replay",),
    ("snapshot", "create"),
    ("snapshot", "list"),
    ("snapshot", "restore"),
    ("dlq", "list"),
    ("dlq", "show"),
    ("dlq", "retry"),
    ("dlq", "purge"),
    ("bench",),
    ("stats",),
    ("check",),
    ("plugins", "list"),
]


class TestHelpScreens:
    """Help shows what to type, not typer's Python types or 64-bit bounds."""

    @pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "pubsub")
    def test_no_type_noise(self, cli: CLI, command: tuple[str, ...]) -> None:
        """No <bool>, <int>, <str>, <list[...]> or [1<=x<=9223372036854775807]."""
        r = cli(*command, "--help")
        assert r.exit_code == 0, r.stderr
        assert "9223372036854775807" not in r.stdout
        noise = re.findall(r"<(?:bool|int|str|float|list\[\w+\]|int range|float range)>", r.stdout)
        assert noise == []
        assert "-v" in r.stdout
        assert "--no-color" in r.stdout

    def test_ranges_stay_checked(self, cli: CLI) -> None:
        """Hiding the bound in help does not lift it."""
        r = cli("events", "list", "--from-seq", str(2**63))
        assert r.usage_error("pubsub events list").startswith("error: --from-seq:")
