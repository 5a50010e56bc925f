"""Settings: where each option of the command line comes from.

A value resolves flag > environment variable (``PUBSUB_*``) > ``[tool.pubsub]`` in the
nearest ``pyproject.toml`` (or the file ``--config FILE`` names instead) > default. typer reads the flag and the environment (so
``--help`` shows ``[env var: ...]``); this module adds the project file and the defaults,
and turns the database path into a store URL.

The project file is checked, not guessed at: a ``pyproject.toml`` that is not valid TOML,
a ``[tool.pubsub]`` value of the wrong type (``graceful-timeout = "x"``, ``db = 5``), an
``app-dir`` that is not a folder, or a key this version does not know (a typo such as
``dbb`` would otherwise quietly open ``./pubsub.db``) is a ``SettingsError`` naming the
file and the key, which the command line reports as a usage error (exit 2).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from core.errors import StoreUnavailableError

__all__ = [
    "DEFAULTS",
    "PROJECT_KEYS",
    "Settings",
    "SettingsError",
    "find_project_settings",
    "read_config_file",
    "resolve_settings",
]

DEFAULTS: Mapping[str, Any] = {
    "db": "pubsub.db",
    "store": None,
    "group": "default",
    "app_dir": None,
    "graceful_timeout": 30.0,
    "lease_ttl": 15.0,
    "metrics_addr": None,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved options every command shares."""

    db: Path
    store: str | None
    group: str
    app_dir: Path | None
    graceful_timeout: float
    lease_ttl: float
    metrics_addr: str | None  # HOST:PORT of the worker's Prometheus endpoint (None: off)
    # option -> "flag", "env", "pyproject.toml", "config", "default" (or, for a store that a db of
    # a higher source beat, "overridden by db")
    source: Mapping[str, str]

    @property
    def store_url(self) -> str:
        """The store URL when one won, else the SQLite file ``db`` names."""
        return self.store if self.store else f"sqlite:///{self.db}"

    def sqlite_path(self) -> Path | None:
        """The file behind the store URL when it is a SQLite one."""
        url = self.store_url
        if not url.startswith("sqlite://"):
            return None
        path = url.removeprefix("sqlite://").split("?", 1)[0]  # options are not the path
        path = path[1:] if path.startswith("/") else path
        return Path(path) if path and path != ":memory:" else None

    def require_existing_store(self) -> None:
        """Read commands never create a database: a missing file is an error."""
        path = self.sqlite_path()
        if path is not None and not path.exists():
            raise StoreUnavailableError(
                str(path),
                "does not exist: pass --db PATH (or set PUBSUB_DB) to an existing store, "
                "or create one with 'pubsub publish' or 'pubsub run'",
            )


class SettingsError(ValueError):
    """A project setting that cannot be used; the message names the file and the key."""


def _kind(value: Any) -> str:
    """What a TOML value is, in the words of the TOML spec."""
    for cls, name in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time"),
    ):
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _lease_seconds(value: Any) -> float | None:
    seconds = _seconds(value)
    return seconds if seconds is not None and seconds >= 0.1 else None


# key as written in [tool.pubsub] -> (what it must be, check returning None when it is not)
PROJECT_KEYS: Mapping[str, tuple[str, Callable[[Any], Any]]] = {
    "db": ("a path (a non-empty string)", _text),
    "store": ("a store URL (a non-empty string)", _text),
    "group": ("a group name (a non-empty string)", _text),
    "app-dir": ("a folder (a non-empty string)", _text),
    "graceful-timeout": ("a number of seconds >= 0", _seconds),
    "lease-ttl": ("a number of seconds >= 0.1", _lease_seconds),
    "metrics-addr": ("an address HOST:PORT (a non-empty string)", _text),
}


def find_project_settings(start: Path) -> tuple[dict[str, Any], Path | None]:
    """The checked ``[tool.pubsub]`` table of the nearest ``pyproject.toml`` at or above
    ``start``, keys with ``_`` for ``-`` (empty when there is no such file or table).
    Raises ``SettingsError`` for a file that is not TOML, an unknown key or a value of
    the wrong type."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return _check_table(candidate), candidate
    return {}, None


def _parse(file: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"{file}: not UTF-8 text, so not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{file}: cannot be read: {exc.strerror or exc}") from None


def _check_table(file: Path) -> dict[str, Any]:
    data = _parse(file)
    tool = data.get("tool", {})
    table = tool.get("pubsub", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise SettingsError(f"{file}: tool.pubsub must be a table, got {_kind(table)}")
    return _check_keys(file, table, " [tool.pubsub]")


def read_config_file(file: Path) -> dict[str, Any]:
    """The checked settings of ``--config FILE``: a ``pyproject.toml``-style file (a
    top-level ``tool`` table: its ``[tool.pubsub]`` table is read) or a plain
    ``pubsub.toml`` whose top-level keys are the settings (``db = "x.db"``)."""
    if not file.is_file():
        problem = "is a folder" if file.is_dir() else "does not exist"
        raise SettingsError(f"--config {str(file)!r} {problem}: pass a TOML file")
    data = _parse(file)
    if "tool" in data:
        tool = data["tool"]
        table = tool.get("pubsub") if isinstance(tool, dict) else None
        if not isinstance(table, dict):
            raise SettingsError(
                f"{file}: has a [tool] table but no [tool.pubsub] table; put the settings "
                "there, or at the top level of a plain pubsub.toml"
            )
        return _check_keys(file, table, " [tool.pubsub]")
    return _check_keys(file, data, "")


def _check_keys(file: Path, table: dict[str, Any], where: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in table.items():
        spelled = key.replace("_", "-")
        if spelled not in PROJECT_KEYS:
            raise SettingsError(
                f"{file}{where}: unknown key {key!r}; known: {', '.join(PROJECT_KEYS)}"
            )
        expected, check = PROJECT_KEYS[spelled]
        good = check(value)
        if good is None:
            raise SettingsError(
                f"{file}{where} {key}: expected {expected}, got {_kind(value)} {value!r}"
            )
        checked[spelled.replace("-", "_")] = good
    app_dir = checked.get("app_dir")
    if app_dir is not None and not (file.parent / app_dir).is_dir():
        raise SettingsError(
            f"{file}{where} app-dir: {app_dir!r} is not a folder (relative to {file.parent})"
        )
    return checked


_RANK = {"flag": 3, "env": 2, "pyproject.toml": 1, "config": 1, "default": 0}


def resolve_settings(
    *,
    db: str | Path | None = None,
    store: str | None = None,
    group: str | None = None,
    app_dir: str | Path | None = None,
    graceful_timeout: float | None = None,
    lease_ttl: float | None = None,
    metrics_addr: str | None = None,
    cwd: Path | None = None,
    db_from_env: bool = False,
    store_from_env: bool = False,
    config: Path | None = None,
) -> Settings:
    """Resolve each option: the given value (flag or env, already merged by typer), else
    the project's ``[tool.pubsub]``, else the default. Relative paths from the project
    file are relative to that file's folder.

    ``db`` and ``store`` are one setting, the store's location: whichever of the two
    comes from the higher source wins (``--db`` beats ``PUBSUB_STORE``, ``PUBSUB_DB``
    beats a project ``store``); from the same source, ``store`` wins. ``db_from_env``
    and ``store_from_env`` say that a given ``db``/``store`` was read from the
    environment rather than from a flag.

    With ``config`` (``--config FILE``) that file takes the place of the nearest
    ``pyproject.toml``, which is then not read."""
    base = cwd if cwd is not None else Path.cwd()
    project_file: Path | None
    if config is not None:
        file = config if config.is_absolute() else base / config
        project, project_file, label = read_config_file(file), file, "config"
    else:
        project, project_file = find_project_settings(base)
        label = "pyproject.toml"
    given: dict[str, Any] = {
        "db": db,
        "store": store,
        "group": group,
        "app_dir": app_dir,
        "graceful_timeout": graceful_timeout,
        "lease_ttl": lease_ttl,
        "metrics_addr": metrics_addr,
    }
    from_env = {"db": db_from_env, "store": store_from_env}
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for key, value in given.items():
        if value is not None:
            values[key], source[key] = value, "env" if from_env.get(key) else "flag"
        elif key in project:
            values[key], source[key] = project[key], label
            if key in ("db", "app_dir") and project_file is not None:
                values[key] = project_file.parent / str(project[key])
        else:
            values[key], source[key] = DEFAULTS[key], "default"
    if values["store"] is not None and _RANK[source["store"]] < _RANK[source["db"]]:
        values["store"], source["store"] = None, "overridden by db"
    return Settings(
        db=Path(values["db"]),
        store=values["store"],
        group=str(values["group"]),
        app_dir=None if values["app_dir"] is None else Path(values["app_dir"]),
        graceful_timeout=float(values["graceful_timeout"]),
        lease_ttl=float(values["lease_ttl"]),
        metrics_addr=None if values["metrics_addr"] is None else str(values["metrics_addr"]),
        source=source,
    )
