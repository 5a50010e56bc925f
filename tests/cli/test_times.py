"""Tests of ``--since``/``--until`` parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pubsub_cli.times import ACCEPTED_FORMS, TimeParseError, parse_time

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class TestRelative:
    """Relative durations count back from now."""

    @pytest.mark.parametrize(
        ("text", "delta"),
        [
            pytest.param("45s", timedelta(seconds=45), id="seconds"),
            pytest.param("10m", timedelta(minutes=10), id="minutes"),
            pytest.param("2h", timedelta(hours=2), id="hours"),
            pytest.param("7d", timedelta(days=7), id="days"),
            pytest.param(" 1.5H ", timedelta(hours=1.5), id="fraction-and-case"),
        ],
    )
    def test_units(self, text: str, delta: timedelta) -> None:
        """Each unit subtracts the right amount from now."""
        assert parse_time(text, now=NOW) == NOW - delta


class TestISO:
    """ISO-8601 with or without a zone comes back as aware UTC."""

    def test_with_zone(self) -> None:
        """An explicit offset is converted to UTC."""
        got = parse_time("2024-05-01T14:00:00+02:00")
        assert got == NOW
        assert got.tzinfo is UTC

    def test_z_suffix(self) -> None:
        """A trailing Z means UTC."""
        assert parse_time("2024-05-01T12:00:00Z") == NOW

    def test_naive_is_local(self) -> None:
        """A naive time is read as local time."""
        naive = datetime(2024, 5, 1, 12, 0)
        assert parse_time("2024-05-01T12:00:00") == naive.astimezone().astimezone(UTC)

    def test_date_only(self) -> None:
        """A date alone is local midnight."""
        assert parse_time("2024-05-01") == datetime(2024, 5, 1).astimezone().astimezone(UTC)

    def test_other_zone(self) -> None:
        """Negative offsets work too."""
        assert parse_time("2024-05-01T07:00:00-05:00") == NOW.astimezone(UTC)


class TestRejected:
    """Anything else is refused with the accepted forms."""

    @pytest.mark.parametrize("text", ["yesterday", "10 minutes", "5w", "", "2024-13-01"])
    def test_bad(self, text: str) -> None:
        """The error names the input and lists the accepted forms."""
        with pytest.raises(TimeParseError) as info:
            parse_time(text)
        assert ACCEPTED_FORMS in str(info.value)

    @pytest.mark.parametrize(
        "text",
        [
            "99999999999999999999d",
            "3000000d",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:00:00-05:00",
        ],
    )
    def test_out_of_range(self, text: str) -> None:
        """A duration or date past the representable range is refused, not a crash."""
        with pytest.raises(TimeParseError, match="out of the range of dates") as info:
            parse_time(text, now=NOW)
        assert ACCEPTED_FORMS in str(info.value)


class TestCombinedAndEpoch:
    """Durations combine units (1h30m) and a time can be given as epoch seconds."""

    @pytest.mark.parametrize(
        ("text", "delta"),
        [
            pytest.param("1h30m", timedelta(hours=1, minutes=30), id="1h30m"),
            pytest.param("2d12h", timedelta(days=2, hours=12), id="2d12h"),
            pytest.param("1h 30m 15s", timedelta(hours=1, minutes=30, seconds=15), id="spaced"),
            pytest.param("1H30M", timedelta(hours=1, minutes=30), id="upper"),
        ],
    )
    def test_combined_durations(self, text: str, delta: timedelta) -> None:
        """Each part counts back from now."""
        assert parse_time(text, now=NOW) == NOW - delta

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("1764547200", datetime(2025, 12, 1, tzinfo=UTC), id="bare"),
            pytest.param(
                "1764547200.25", datetime(2025, 12, 1, 0, 0, 0, 250000, tzinfo=UTC), id="fraction"
            ),
            pytest.param("@0", datetime(1970, 1, 1, tzinfo=UTC), id="at-zero"),
        ],
    )
    def test_epoch_seconds(self, text: str, expected: datetime) -> None:
        """Seconds since 1970-01-01 UTC."""
        assert parse_time(text, now=NOW) == expected

    @pytest.mark.parametrize("text", ["2024", "1h30", "h30m", "1.5.5h"])
    def test_still_refused(self, text: str) -> None:
        """A short bare number (a year?) and half-written durations are not guessed at."""
        with pytest.raises(TimeParseError, match="is not a time"):
            parse_time(text, now=NOW)

    def test_epoch_out_of_range(self) -> None:
        """Milliseconds by mistake land past year 9999: refused, not a crash."""
        with pytest.raises(TimeParseError, match="out of the range of dates"):
            parse_time("99999999999999999", now=NOW)
