"""Codec: to_dict/from_dict and orjson bytes round-trip exactly; bad payloads and values
JSON cannot carry are refused with errors naming the type and the field."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import (
    Event,
    EventBus,
    EventDecodeError,
    EventEncodeError,
    EventRegistry,
    MemoryEventStore,
    UnknownEventTypeError,
)
from core.codec import decode, encode, from_dict, to_dict

INT_MIN, INT_MAX = -(2**63), 2**64 - 1


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    qty: int
    price: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class Rich(Event, type_name="tests.core.codec.Rich"):
    lines: list[Line]
    address: Address | None
    when: datetime
    ref: UUID
    color: Color
    level: Level
    pair: tuple[int, str]
    counts: dict[str, int]
    ratios: dict[str, float]
    big: int
    maybe: int | None
    amount: Decimal
    flag: bool


@dataclass(frozen=True, slots=True)
class Simple(Event, type_name="tests.core.codec.Simple"):
    order_id: str
    qty: int = 1


@dataclass(frozen=True, slots=True)
class Loose(Event, type_name="tests.core.codec.Loose"):
    payload: Any


@dataclass(frozen=True, slots=True)
class Upgraded(Event, type_name="tests.core.codec.Upgraded", version=2):
    name: str


# -- strategies -----------------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(INT_MIN, INT_MAX)
# Any offset a timezone accepts, seconds and microseconds included (orjson alone would
# round those to the minute; the codec writes such datetimes with isoformat).
offsets = st.timedeltas(
    min_value=timedelta(hours=-24) + timedelta(microseconds=1),
    max_value=timedelta(hours=24) - timedelta(microseconds=1),
).map(timezone)
aware = st.datetimes(timezones=st.one_of(st.just(UTC), offsets))

lines = st.builds(Line, texts, int64, finite, st.lists(texts, max_size=3).map(tuple))
addresses = st.builds(Address, texts, st.none() | texts)
rich_events = st.builds(
    Rich,
    lines=st.lists(lines, max_size=3),
    address=st.none() | addresses,
    when=aware,
    ref=st.uuids(),
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    pair=st.tuples(int64, texts),
    counts=st.dictionaries(texts, int64, max_size=3),
    ratios=st.dictionaries(texts, finite, max_size=3),
    big=int64,
    maybe=st.none() | int64,
    amount=st.decimals(allow_nan=False, allow_infinity=False),
    flag=st.booleans(),
    id=st.uuids(),
    created_at=aware,
    causation_id=st.none() | st.uuids(),
    correlation_id=st.none() | st.uuids(),
)


def sample() -> Rich:
    return Rich(
        lines=[Line("a", 1, 1.5, ("x",)), Line("b", 2, 2.5)],
        address=Address("Main St 1", "1000"),
        when=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ref=UUID(int=7),
        color=Color.GREEN,
        level=Level.HIGH,
        pair=(3, "three"),
        counts={"k": 1},
        ratios={"r": 0.25},
        big=INT_MAX,
        maybe=None,
        amount=Decimal("12.30"),
        flag=True,
    )


def rename_title(data: dict[str, Any]) -> dict[str, Any]:
    """The upcaster from Upgraded version 1 (``title``) to 2 (``name``)."""
    out = {k: v for k, v in data.items() if k != "title"}
    out["name"] = data["title"]
    return out


class TestRoundTrip:
    @settings(max_examples=150, deadline=None)
    @given(rich_events)
    def test_property_dict_and_bytes_round_trip(self, event: Rich) -> None:
        """Any generated event survives to_dict/from_dict and bytes encoding exactly."""
        data = event.to_dict()
        assert orjson.loads(orjson.dumps(data)) == data
        assert Rich.from_dict(data) == event
        back = Rich.from_bytes(event.to_bytes())
        assert back == event
        # == compares instants: the offsets must come back too
        assert back.when.utcoffset() == event.when.utcoffset()
        assert back.created_at.utcoffset() == event.created_at.utcoffset()
        assert decode(Rich.event_type, event.to_bytes()) == event

    def test_types_are_restored_not_just_equal(self) -> None:
        """Nested dataclasses, enums, tuples, UUIDs and aware datetimes come back typed."""
        event = sample()
        back = Rich.from_bytes(event.to_bytes())
        assert type(back.lines[0]) is Line
        assert type(back.lines[0].tags) is tuple
        assert type(back.pair) is tuple
        assert back.color is Color.GREEN
        assert back.level is Level.HIGH
        assert back.when.utcoffset() == timedelta(hours=5, minutes=30)
        assert back.ref == UUID(int=7)
        assert str(back.amount) == "12.30"
        assert back.id == event.id
        assert back.created_at == event.created_at

    @pytest.mark.parametrize(
        "offset",
        [
            pytest.param(timedelta(hours=1, seconds=30), id="seconds"),
            pytest.param(timedelta(hours=-3, minutes=-20, seconds=-7), id="negative-seconds"),
            pytest.param(timedelta(seconds=-30), id="under-a-minute-west"),
            pytest.param(timedelta(minutes=5, microseconds=250), id="microseconds"),
            pytest.param(timedelta(microseconds=1), id="under-a-second-east"),
            pytest.param(timedelta(microseconds=-999_999), id="under-a-second-west"),
        ],
    )
    def test_offsets_with_seconds_round_trip(self, offset: timedelta) -> None:
        """A UTC offset with seconds or microseconds is kept, not rounded to the minute."""
        zone = timezone(offset)
        event = replace(
            sample(),
            when=datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=zone),
            created_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=zone),
        )
        for back in (Rich.from_bytes(event.to_bytes()), Rich.from_dict(event.to_dict())):
            assert back == event
            assert back.when.utcoffset() == offset
            assert back.created_at.utcoffset() == offset

    def test_an_odd_offset_nested_in_a_container_round_trips(self) -> None:
        """An odd offset deep inside a field typed Any is found and kept too."""
        when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(seconds=45)))
        event = Loose(payload={"at": [when]})
        data = orjson.loads(event.to_bytes())
        assert data["payload"] == {"at": [when.isoformat()]}
        assert datetime.fromisoformat(data["payload"]["at"][0]) == when

    def test_odd_offsets_leave_the_other_values_as_orjson_writes_them(self) -> None:
        """With one odd offset the other dates and times are written as usual."""
        usual_event = sample()
        event = replace(
            usual_event, when=datetime(2026, 3, 4, tzinfo=timezone(timedelta(seconds=1)))
        )
        usual = orjson.loads(usual_event.to_bytes())
        written = orjson.loads(event.to_bytes())
        assert written["when"] == "2026-03-04T00:00:00+00:00:01"
        assert {k: v for k, v in written.items() if k != "when"} == {
            k: v for k, v in usual.items() if k != "when"
        }

    @pytest.mark.parametrize(
        "big",
        [
            pytest.param(INT_MIN, id="int64-min"),
            pytest.param(INT_MAX, id="uint64-max"),
            pytest.param(2**53 + 1, id="beyond-float-precision"),
        ],
    )
    def test_big_64_bit_ints_round_trip(self, big: int) -> None:
        """Integers at the edges of the 64-bit range come back unchanged."""
        event = replace(sample(), big=big)
        assert Rich.from_bytes(event.to_bytes()).big == big

    def test_decode_by_type_name_upcasts_older_versions(self) -> None:
        """A stored version-1 payload is upgraded by the registered upcaster."""
        registry = EventRegistry()
        registry.register(Upgraded)
        registry.add_upcaster(Upgraded.event_type, 1, rename_title)
        old = {**Upgraded("x").to_dict(), "title": "legacy"}
        del old["name"]
        event = decode(Upgraded.event_type, old, version=1, registry=registry)
        assert isinstance(event, Upgraded)
        assert event.name == "legacy"


class TestDecodeErrors:
    def test_unknown_type_name(self) -> None:
        """Decoding under an unregistered type name raises UnknownEventTypeError."""
        with pytest.raises(UnknownEventTypeError, match=r"tests\.core\.codec\.Missing"):
            decode("tests.core.codec.Missing", b"{}")

    def test_missing_field_names_type_and_field(self) -> None:
        """A missing required field is reported with the type and the field name."""
        data = Simple("o-1").to_dict()
        del data["order_id"]
        with pytest.raises(EventDecodeError) as info:
            Simple.from_dict(data)
        assert (info.value.type_name, info.value.field) == (Simple.event_type, "order_id")
        assert "order_id" in str(info.value)
        assert Simple.event_type in str(info.value)

    @pytest.mark.parametrize(
        ("mutate", "path"),
        [
            pytest.param(lambda d: d["lines"][1].update(qty="2"), "lines.1.qty", id="nested-int"),
            pytest.param(lambda d: d.update(big=True), "big", id="bool-for-int"),
            pytest.param(lambda d: d.update(when="yesterday"), "when", id="datetime"),
            pytest.param(lambda d: d.update(ref="not-a-uuid"), "ref", id="uuid"),
            pytest.param(lambda d: d.update(color="blue"), "color", id="enum"),
            pytest.param(lambda d: d.update(pair=[1]), "pair", id="tuple-length"),
            pytest.param(lambda d: d["counts"].update(k=1.5), "counts.k", id="dict-value"),
            pytest.param(
                lambda d: d["address"].pop("street"), "address.street", id="nested-missing"
            ),
            pytest.param(lambda d: d.update(lines={}), "lines", id="list"),
        ],
    )
    def test_ill_typed_field_names_its_path(self, mutate: Any, path: str) -> None:
        """A value of the wrong type is reported with its dotted field path."""
        data = sample().to_dict()
        mutate(data)
        with pytest.raises(EventDecodeError) as info:
            Rich.from_dict(data)
        assert info.value.field == path
        assert info.value.type_name == Rich.event_type
        assert repr(path) in str(info.value)

    def test_unexpected_top_level_field_is_named(self) -> None:
        """An unknown field is refused, never dropped, and the message names it."""
        data = {**Simple("o-1").to_dict(), "typo": 1}
        with pytest.raises(EventDecodeError, match="'typo'"):
            Simple.from_dict(data)

    def test_unexpected_nested_field_names_the_path(self) -> None:
        """An unknown field in a nested object names the nested field and the key."""
        data = sample().to_dict()
        data["address"]["extra"] = 1
        with pytest.raises(EventDecodeError, match="'extra'") as info:
            Rich.from_dict(data)
        assert info.value.field == "address"

    def test_payload_that_is_not_json(self) -> None:
        """Bytes that are not JSON raise EventDecodeError naming the type."""
        with pytest.raises(EventDecodeError, match=re.escape(Simple.event_type)):
            Simple.from_bytes(b"{not json")

    def test_newer_schema_version_is_refused(self) -> None:
        """A payload written by a newer schema version than the code's is refused."""
        with pytest.raises(EventDecodeError, match="newer"):
            decode(Simple.event_type, Simple("o").to_bytes(), version=2)


class TestEncodeErrors:
    @pytest.mark.parametrize(
        ("change", "path"),
        [
            pytest.param({"ratios": {"r": math.nan}}, "ratios.r", id="nan-in-dict"),
            pytest.param(
                {"lines": [Line("a", 1, 1.0), Line("b", 1, math.inf)]},
                "lines.1.price",
                id="inf-in-nested",
            ),
            pytest.param({"lines": [Line("a", 1, -math.inf)]}, "lines.0.price", id="minus-inf"),
            pytest.param({"big": INT_MAX + 1}, "big", id="int-above-64-bit"),
            pytest.param({"big": INT_MIN - 1}, "big", id="int-below-64-bit"),
            pytest.param({"counts": {"k": 2**70}}, "counts.k", id="huge-int-in-dict"),
        ],
    )
    def test_unfaithful_values_are_refused_naming_the_field(
        self, change: dict[str, Any], path: str
    ) -> None:
        """NaN, infinity and integers beyond 64 bits raise EventEncodeError naming the field."""
        event = replace(sample(), **change)
        for encoder in (encode, to_dict):
            with pytest.raises(EventEncodeError) as info:
                encoder(event)
            assert info.value.field == path
            assert info.value.type_name == Rich.event_type
            assert repr(path) in str(info.value)

    @pytest.mark.parametrize(
        ("change", "path"),
        [
            pytest.param({"pair": (1, "a\ud800b")}, "pair.1", id="lone-high-surrogate"),
            pytest.param({"lines": [Line("\udfff", 1, 1.0)]}, "lines.0.sku", id="nested"),
            pytest.param({"counts": {"k\udc80": 1}}, "counts", id="dict-key"),
            pytest.param({"address": Address("x", "\ud83d")}, "address.postcode", id="optional"),
        ],
    )
    def test_unpaired_surrogates_are_refused_naming_the_field(
        self, change: dict[str, Any], path: str
    ) -> None:
        """A string UTF-8 cannot carry raises EventEncodeError naming the field, never
        orjson's bare error and never a silently changed string."""
        event = replace(sample(), **change)
        for encoder in (encode, to_dict):
            with pytest.raises(EventEncodeError, match="surrogate") as info:
                encoder(event)
            assert info.value.field == path
            assert info.value.type_name == Rich.event_type

    def test_surrogate_in_a_plain_str_field(self) -> None:
        """A top-level str field with a surrogate is named by its own name."""
        with pytest.raises(EventEncodeError, match="surrogate") as info:
            Simple("o\ud800").to_bytes()
        assert info.value.field == "order_id"

    def test_paired_surrogates_are_ordinary_text(self) -> None:
        """Characters outside the BMP (written as surrogate pairs in JSON) round-trip."""
        event = Simple("emoji \U0001f600")
        assert Simple.from_bytes(event.to_bytes()) == event

    async def test_publish_with_a_store_refuses_and_appends_nothing(self) -> None:
        """Publishing an unencodable event to a durable bus raises and stores nothing."""
        store = MemoryEventStore()
        async with EventBus(store) as bus:
            with pytest.raises(EventEncodeError, match="ratios"):
                await bus.publish_async(replace(sample(), ratios={"r": math.nan}))
        assert await store.last_seq() == 0

    def test_from_dict_checks_the_class(self) -> None:
        """from_dict on a non-mapping payload raises EventDecodeError."""
        with pytest.raises(EventDecodeError):
            from_dict(Simple, [1, 2])  # type: ignore[arg-type]
