"""Settings: where each option of the command line comes from.

A value resolves flag > environment variable (``PUBSUB_*``) > ``[tool.pubsub]`` in the
nearest ``pyproject.toml`` > default. typer reads the flag and the environment (so
``--help`` shows ``[env var: ...]``); this module adds the project file and the defaults,
and turns the database path into a store URL.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import StoreUnavailableError

__all__ = ["DEFAULTS", "Settings", "find_project_settings", "resolve_settings"]

DEFAULTS: Mapping[str, Any] = {
    "db": "pubsub.db",
    "store": None,
    "group": "default",
    "app_dir": None,
    "graceful_timeout": 30.0,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved options every command shares."""

    db: Path
    store: str | None
    group: str
    app_dir: Path | None
    graceful_timeout: float
    source: Mapping[str, str]  # option -> "flag or env", "pyproject.toml" or "default"

    @property
    def store_url(self) -> str:
        """``--store`` when given, else the SQLite file ``--db`` names."""
        return self.store if self.store else f"sqlite:///{self.db}"

    def sqlite_path(self) -> Path | None:
        """The file behind the store URL when it is a SQLite one."""
        url = self.store_url
        if not url.startswith("sqlite://"):
            return None
        path = url.removeprefix("sqlite://")
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


def find_project_settings(start: Path) -> tuple[dict[str, Any], Path | None]:
    """The ``[tool.pubsub]`` table of the nearest ``pyproject.toml`` at or above
    ``start`` (empty when there is none, or when the file cannot be parsed)."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                return {}, None
            table = data.get("tool", {}).get("pubsub", {})
            if not isinstance(table, dict):
                return {}, None
            return {k.replace("-", "_"): v for k, v in table.items()}, candidate
    return {}, None


def resolve_settings(
    *,
    db: str | Path | None = None,
    store: str | None = None,
    group: str | None = None,
    app_dir: str | Path | None = None,
    graceful_timeout: float | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve each option: the given value (flag or env, already merged by typer), else
    the project's ``[tool.pubsub]``, else the default. Relative paths from the project
    file are relative to that file's folder."""
    base = cwd if cwd is not None else Path.cwd()
    project, project_file = find_project_settings(base)
    given: dict[str, Any] = {
        "db": db,
        "store": store,
        "group": group,
        "app_dir": app_dir,
        "graceful_timeout": graceful_timeout,
    }
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for key, value in given.items():
        if value is not None:
            values[key], source[key] = value, "flag or env"
        elif key in project:
            values[key], source[key] = project[key], "pyproject.toml"
            if key in ("db", "app_dir") and project_file is not None:
                values[key] = project_file.parent / str(project[key])
        else:
            values[key], source[key] = DEFAULTS[key], "default"
    return Settings(
        db=Path(values["db"]),
        store=values["store"],
        group=str(values["group"]),
        app_dir=None if values["app_dir"] is None else Path(values["app_dir"]),
        graceful_timeout=float(values["graceful_timeout"]),
        source=source,
    )
