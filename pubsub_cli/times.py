"""Times: what ``--since`` and ``--until`` accept.

ISO-8601 with or without a time zone (a naive time is local time), relative durations
counted back from now (``45s``, ``10m``, ``2h``, ``7d``, and combinations such as
``1h30m`` or ``2d12h``), and Unix epoch seconds (``1764547200``, ``1764547200.5``,
``@0``; a bare number needs 9 digits or more, so that ``2024`` is not read as 1970). Everything comes back
as an aware UTC datetime; anything else is a ``TimeParseError`` that lists the accepted
forms, which the command line turns into a usage error (exit 2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["ACCEPTED_FORMS", "TimeParseError", "parse_time", "time_option", "time_range"]

ACCEPTED_FORMS = (
    "ISO-8601 (2026-11-27T10:00, +02:00 or Z; naive = local), 45s/10m/2h/7d or "
    "combined 1h30m, or epoch seconds (1764547200 or @1764547200)"
)

_PART = r"(\d+(?:\.\d+)?)\s*([smhd])"
_RELATIVE = re.compile(rf"^\s*(?:{_PART}\s*)+$", re.IGNORECASE)
_PARTS = re.compile(_PART, re.IGNORECASE)
# Epoch seconds: @N (as GNU date writes it), or a bare number of at least 9 digits (from
# 1973 on), so that a year such as "2024" is not read as 33 minutes past 1970.
_EPOCH = re.compile(r"^\s*(?:@\s*\d+|\d{9,})(?:\.\d+)?\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class TimeParseError(ValueError):
    """Raised for a time that is neither ISO-8601 nor a relative duration, or that
    lies outside the dates Python can represent."""

    def __init__(self, text: str, problem: str = "is not a time") -> None:
        self.text = text
        super().__init__(f"{text!r} {problem}: use {ACCEPTED_FORMS}")


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """``text`` as an aware UTC datetime; relative durations count back from ``now``."""
    try:
        return _parse(text, now)
    except TimeParseError:
        raise
    except (OverflowError, OSError, ValueError):  # 99999999999d, 0001-01-01 east of UTC, ...
        raise TimeParseError(text, "is out of the range of dates (years 1 to 9999)") from None


def _parse(text: str, now: datetime | None) -> datetime:
    if _RELATIVE.match(text):
        back = timedelta()
        for amount, unit in _PARTS.findall(text):
            back += timedelta(**{_UNITS[unit.lower()]: float(amount)})
        current = now if now is not None else datetime.now(UTC)
        return (current - back).astimezone(UTC)
    if _EPOCH.match(text):  # a bare number: seconds since 1970-01-01 UTC
        return datetime.fromtimestamp(float(text.strip().lstrip("@")), UTC)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeParseError(text) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # a naive time is the local time
    return parsed.astimezone(UTC)


def time_option(value: str | None, flag: str) -> datetime | None:
    """Parse a ``--since``/``--until`` value; a bad one is a usage error (exit 2)."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except TimeParseError as exc:
        import typer

        raise typer.BadParameter(str(exc), param_hint=f"'{flag}'") from None


def time_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """Parse ``--since`` and ``--until``; a range that ends before it starts is a usage
    error (it could only ever select nothing)."""
    since_at, until_at = time_option(since, "--since"), time_option(until, "--until")
    if since_at is not None and until_at is not None and since_at > until_at:
        import typer

        def local(at: datetime) -> str:
            return at.astimezone().strftime("%Y-%m-%d %H:%M:%S")

        raise typer.BadParameter(
            f"--since {since!r} ({local(since_at)}) is later than --until {until!r} "
            f"({local(until_at)}): the time range is inverted"
        )
    return since_at, until_at


SINCE_HELP = (
    "Only events appended at or after this time: 45s, 10m, 2h, 7d or 1h30m ago, "
    "ISO-8601 (a time without a zone is local time) or epoch seconds"
)
UNTIL_HELP = "Only events appended at or before this time (same forms as --since)"
