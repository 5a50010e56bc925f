"""Decoding through the compiled builders: the result is what the dataclass __init__
would make, classes whose __init__ or __post_init__ does more still go through it, and
every payload the builders do not take is checked field by field as before."""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import FrameType, MappingProxyType
from typing import Any
from uuid import UUID

import orjson
import pytest

from core import Event, EventDecodeError, EventRegistry, StoredEvent
from core.codec import decode, encode, from_dict


@dataclass(frozen=True, slots=True)
class Flat(Event, type_name="tests.core.codec_fastpath.Flat"):
    name: str
    count: int
    ratio: float
    done: bool
    note: str | None = None


@dataclass(frozen=True)  # no slots: fields live in the instance __dict__
class Point:
    x: int
    y: float


@dataclass(frozen=True, slots=True)
class Shape(Event, type_name="tests.core.codec_fastpath.Shape"):
    points: list[Point]
    origin: Point | None


@dataclass(frozen=True, slots=True)
class Checked(Event, type_name="tests.core.codec_fastpath.Checked"):
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")


@dataclass(frozen=True, slots=True)
class Normalised(Event, type_name="tests.core.codec_fastpath.Normalised"):
    code: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", self.code.upper())


@dataclass(frozen=True, init=False)
class Upper:
    """A hand-written __init__: the decoder must call it, not bypass it."""

    text: str

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "text", text.upper())


@dataclass(frozen=True, slots=True)
class Wrapped(Event, type_name="tests.core.codec_fastpath.Wrapped"):
    inner: Upper


@dataclass(frozen=True, slots=True)
class Derived(Event, type_name="tests.core.codec_fastpath.Derived"):
    base: int
    doubled: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "doubled", self.base * 2)


def roundtrip(event: Event) -> Event:
    return decode(event.event_type, encode(event))


class TestReplayCost:
    def test_a_flat_record_decodes_in_a_handful_of_python_calls(self) -> None:
        """The replay path's cost, counted instead of timed: decoding a stored flat event
        runs a fixed, small number of Python functions (the record, the codec, the
        registry, the compiled builder and one converter each for the id and the time).
        Values already of their field's type cost no call, nor does __init__."""
        event = Flat("n", 3, 0.5, True)
        now = datetime.now(UTC)
        record = StoredEvent(
            seq=1,
            event_id=event.id,
            type_name=event.event_type,
            version=event.event_version,
            created_at=now,
            appended_at=now,
            payload=encode(event),
        )
        assert record.decode() == event  # compiles the plan outside the count
        calls: list[str] = []

        def profile(frame: FrameType, what: str, arg: object) -> None:
            if what == "call":
                calls.append(frame.f_code.co_name)

        sys.setprofile(profile)
        try:
            record.decode()
        finally:
            sys.setprofile(None)
        assert "__init__" not in calls
        assert len(calls) <= 6, calls


class TestSameResultAsInit:
    def test_flat_event_equals_and_has_exact_types(self) -> None:
        """A decoded flat event equals the original, field types included."""
        event = Flat("n", 3, 0.5, True, "x")
        back = roundtrip(event)
        assert back == event
        assert type(back) is Flat
        assert [type(getattr(back, f)) for f in ("name", "count", "ratio", "done")] == [
            str,
            int,
            float,
            bool,
        ]
        assert type(back.id) is UUID
        assert back.id.is_safe == event.id.is_safe
        assert type(back.created_at) is datetime

    def test_decoded_events_hash_compare_and_pickle_like_constructed_ones(self) -> None:
        """An instance made by the builder behaves like one made by __init__."""
        event = Flat("n", 3, 0.5, False)
        back = roundtrip(event)
        assert hash(back) == hash(event)
        assert pickle.loads(pickle.dumps(back)) == event
        assert repr(back) == repr(event)

    def test_an_integer_for_a_float_field_becomes_a_float(self) -> None:
        """JSON writes 2.0 as 2 in some producers: the float field still gets a float."""
        data = {**Flat("n", 1, 0.5, True).to_dict(), "ratio": 2}
        back = Flat.from_dict(data)
        assert back.ratio == 2.0
        assert type(back.ratio) is float

    def test_nested_dataclasses_without_slots(self) -> None:
        """Nested classes without slots are built with their fields set."""
        event = Shape([Point(1, 1.5), Point(2, 2)], Point(0, 0.0))
        back = roundtrip(event)
        assert back == event
        assert isinstance(back, Shape)
        assert type(back.points[1].y) is float
        assert vars(back.points[0]) == {"x": 1, "y": 1.5}

    def test_missing_fields_with_defaults_are_filled(self) -> None:
        """A payload without a defaulted field (an older producer) gets the default."""
        data = Flat("n", 1, 0.5, True, "x").to_dict()
        del data["note"]
        assert Flat.from_dict(data).note is None

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("{12345678-1234-5678-1234-567812345678}", id="braces"),
            pytest.param("urn:uuid:12345678-1234-5678-1234-567812345678", id="urn"),
            pytest.param("12345678123456781234567812345678", id="no-dashes"),
            pytest.param("12345678-1234-5678-1234-56781234567A", id="upper-case"),
        ],
    )
    def test_uuid_spellings_uuid_accepts_are_accepted(self, text: str) -> None:
        """Every spelling UUID() reads is read to the same UUID."""
        data = {**Flat("n", 1, 0.5, True).to_dict(), "id": text}
        assert Flat.from_dict(data).id == UUID(text)

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("12345678-1234-5678-1234-56781234567g", id="not-hex"),
            pytest.param("12345678-1234-5678-1234-5678123456", id="short"),
            pytest.param("", id="empty"),
        ],
    )
    def test_bad_uuids_name_the_field(self, text: str) -> None:
        """A string that is not a UUID is refused naming the field."""
        data = {**Flat("n", 1, 0.5, True).to_dict(), "id": text}
        with pytest.raises(EventDecodeError) as info:
            Flat.from_dict(data)
        assert info.value.field == "id"

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("2026-01-02T03:04:05Z", id="z-suffix"),
            pytest.param("2026-01-02T03:04:05.000001", id="naive-micro"),
            pytest.param("2026-01-02T03:04:05.5+00:00", id="short-fraction"),
        ],
    )
    def test_datetime_spellings_fromisoformat_accepts(self, text: str) -> None:
        """Datetimes are read by fromisoformat, whatever path the string takes."""
        data = {**Flat("n", 1, 0.5, True).to_dict(), "created_at": text}
        assert Flat.from_dict(data).created_at == datetime.fromisoformat(text)

    def test_sub_second_offset_survives_the_whole_path(self) -> None:
        """An offset of under a second comes back through the stored-record path."""
        zone = timezone(timedelta(microseconds=-7))
        event = Flat("n", 1, 0.5, True, created_at=datetime(2026, 1, 2, tzinfo=zone))
        back = roundtrip(event)
        assert back.created_at.utcoffset() == timedelta(microseconds=-7)
        assert back == event

    def test_utc_created_at_comes_back_as_utc(self) -> None:
        """The common case: a UTC time decodes to a UTC time."""
        event = Flat("n", 1, 0.5, True, created_at=datetime(2026, 1, 2, tzinfo=UTC))
        assert roundtrip(event).created_at.utcoffset() == timedelta(0)


class TestInitStillRunsWhenItMatters:
    def test_post_init_validation_refuses_on_decode(self) -> None:
        """A __post_init__ check still runs and its ValueError is a decode error."""
        data = {**Checked(1, 2).to_dict(), "low": 5}
        with pytest.raises(EventDecodeError, match="above high"):
            decode(Checked.event_type, orjson.dumps(data))
        with pytest.raises(EventDecodeError, match="above high"):
            Checked.from_dict(data)

    def test_post_init_normalisation_is_applied(self) -> None:
        """A __post_init__ that normalises a value does so on decode too."""
        data = {**Normalised("abc").to_dict(), "code": "xyz"}
        assert Normalised.from_dict(data).code == "XYZ"
        assert decode(Normalised.event_type, orjson.dumps(data)).code == "XYZ"  # type: ignore[attr-defined]

    def test_a_hand_written_init_is_called(self) -> None:
        """A nested class with its own __init__ is built by it."""
        data = {**Wrapped(Upper("a")).to_dict(), "inner": {"text": "shout"}}
        assert Wrapped.from_dict(data).inner.text == "SHOUT"

    def test_init_false_fields_are_set_by_init(self) -> None:
        """A field __init__ does not take is not stored, and is filled as __init__ fills
        it."""
        event = Derived(21)
        data = event.to_dict()
        assert "doubled" not in data
        back = Derived.from_dict(data)
        assert (back.base, back.doubled) == (21, 42)


class TestRefusalsAreUnchanged:
    @pytest.mark.parametrize(
        ("change", "path"),
        [
            pytest.param({"count": True}, "count", id="bool-for-int"),
            pytest.param({"count": 1.0}, "count", id="float-for-int"),
            pytest.param({"name": 3}, "name", id="int-for-str"),
            pytest.param({"done": 1}, "done", id="int-for-bool"),
            pytest.param({"ratio": "0.5"}, "ratio", id="str-for-float"),
            pytest.param({"note": 4}, "note", id="optional"),
            pytest.param({"created_at": 0}, "created_at", id="datetime-not-str"),
            pytest.param({"created_at": "soon"}, "created_at", id="datetime-bad-str"),
            pytest.param({"causation_id": "x"}, "causation_id", id="optional-uuid"),
        ],
    )
    def test_ill_typed_values_name_the_field(self, change: dict[str, Any], path: str) -> None:
        """Every ill-typed value still raises EventDecodeError naming type and field,
        by either entry point."""
        data = {**Flat("n", 1, 0.5, True).to_dict(), **change}
        for call in (
            lambda: from_dict(Flat, data),
            lambda: decode(Flat.event_type, orjson.dumps(data)),
        ):
            with pytest.raises(EventDecodeError) as info:
                call()
            assert (info.value.type_name, info.value.field) == (Flat.event_type, path)

    def test_an_extra_field_instead_of_a_missing_one(self) -> None:
        """Same number of keys, one renamed: the missing field is named."""
        data = Flat("n", 1, 0.5, True).to_dict()
        data["nmae"] = data.pop("name")
        with pytest.raises(EventDecodeError) as info:
            Flat.from_dict(data)
        assert info.value.field == "name"

    def test_nested_error_names_the_nested_path(self) -> None:
        """A bad value inside a nested class is reported with its dotted path."""
        data = Shape([Point(1, 1.0), Point(2, 2.0)], None).to_dict()
        data["points"][1]["x"] = "2"
        with pytest.raises(EventDecodeError) as info:
            decode(Shape.event_type, orjson.dumps(data))
        assert info.value.field == "points.1.x"

    def test_a_mapping_that_is_not_a_dict(self) -> None:
        """from_dict still accepts any mapping."""
        event = Flat("n", 1, 0.5, True)
        assert Flat.from_dict(MappingProxyType(event.to_dict())) == event

    def test_upcast_payloads_take_the_checked_path(self) -> None:
        """A payload upgraded by an upcaster (here missing a defaulted field) decodes."""
        registry = EventRegistry()
        registry.register(Flat)
        registry.add_upcaster(
            Flat.event_type, 0, lambda d: {k: v for k, v in d.items() if k != "legacy"}
        )
        data = {**Flat("n", 1, 0.5, True).to_dict(), "legacy": 1}
        del data["note"]
        back = decode(Flat.event_type, orjson.dumps(data), version=0, registry=registry)
        assert isinstance(back, Flat)
        assert (back.name, back.note) == ("n", None)
