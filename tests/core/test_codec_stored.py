"""Decoding a stored record: every error names the record's sequence number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from core import (
    Event,
    EventDecodeError,
    EventDefinitionError,
    EventRegistry,
    StoredEvent,
    UnknownEventTypeError,
)
from core.codec import encode


@dataclass(frozen=True, slots=True)
class Shipped(Event, type_name="tests.core.codec_stored.Shipped"):
    parcel: str
    weight: int


@dataclass(frozen=True, slots=True)
class Unreadable(Event, type_name="tests.core.codec_stored.Unreadable"):
    value: complex  # no JSON form: the codec refuses the class when asked to decode it


def record(seq: int, type_name: str, payload: bytes, version: int = 1) -> StoredEvent:
    now = datetime.now(UTC)
    return StoredEvent(
        seq=seq,
        event_id=Shipped("p", 1).id,
        type_name=type_name,
        version=version,
        created_at=now,
        appended_at=now,
        payload=payload,
    )


def registry_of(*classes: type[Event]) -> EventRegistry:
    registry = EventRegistry()
    for cls in classes:
        registry.register(cls)
    return registry


class TestStoredDecode:
    def test_decodes_the_event(self) -> None:
        """A well-formed record decodes to an equal event of its class."""
        event = Shipped("p-1", 250)
        back = record(1, Shipped.event_type, encode(event)).decode(registry_of(Shipped))
        assert type(back) is Shipped
        assert back == event

    def test_unknown_type_carries_and_names_the_seq(self) -> None:
        """UnknownEventTypeError from a record says which record, in .seq and in words."""
        stored = record(41, "tests.core.codec_stored.Gone", b"{}")
        with pytest.raises(UnknownEventTypeError) as info:
            stored.decode(registry_of(Shipped))
        assert type(info.value) is UnknownEventTypeError
        assert info.value.type_name == "tests.core.codec_stored.Gone"
        assert info.value.seq == 41
        assert "seq 41" in str(info.value)
        assert "tests.core.codec_stored.Gone" in str(info.value)
        assert Shipped.event_type in str(info.value)  # the known types are still listed

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            pytest.param(b'{"parcel": "p"}', "weight", id="missing-field"),
            pytest.param(b'{"parcel": "p", "weight": "9"}', "weight", id="ill-typed"),
            pytest.param(b"{not json", None, id="not-json"),
        ],
    )
    def test_decode_errors_carry_and_name_the_seq(self, payload: bytes, field: str | None) -> None:
        """A payload that does not fit its class raises EventDecodeError with the seq."""
        with pytest.raises(EventDecodeError) as info:
            record(7, Shipped.event_type, payload).decode(registry_of(Shipped))
        assert info.value.seq == 7
        assert info.value.field == field
        assert "(seq 7)" in str(info.value)

    def test_newer_version_carries_the_seq(self) -> None:
        """A record written by a newer schema version names its seq too."""
        stored = record(9, Shipped.event_type, encode(Shipped("p", 1)), version=5)
        with pytest.raises(EventDecodeError, match="newer") as info:
            stored.decode(registry_of(Shipped))
        assert info.value.seq == 9

    def test_a_class_the_codec_cannot_read_carries_the_seq(self) -> None:
        """EventDefinitionError raised while decoding a record names the record too."""
        stored = record(12, Unreadable.event_type, b'{"value": 1}')
        with pytest.raises(EventDefinitionError) as info:
            stored.decode(registry_of(Unreadable))
        assert info.value.seq == 12
        assert "seq 12" in str(info.value)

    def test_a_raising_upcaster_is_a_decode_error_with_the_seq(self) -> None:
        """An upcaster that raises turns into EventDecodeError naming the record and the
        upcaster's error, so a consumer dead-letters the event instead of stopping."""
        registry = registry_of(Shipped)

        def broken(payload: dict[str, object]) -> dict[str, object]:
            raise KeyError("weight_grams")

        registry.add_upcaster(Shipped.event_type, 0, broken)
        stored = record(5, Shipped.event_type, encode(Shipped("p", 1)), version=0)
        with pytest.raises(
            EventDecodeError, match="upcaster from version 0 raised KeyError"
        ) as info:
            stored.decode(registry)
        assert info.value.seq == 5
