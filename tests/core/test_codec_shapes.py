"""Codec: every shape of event class round-trips exactly, whatever orjson's own walk of
a dataclass would leave out (fields kept outside ``__dict__``, names with a leading
underscore, fields with ``init=False``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from uuid import UUID

import orjson
import pytest

from core import Event
from core.codec import decode, encode, from_dict, to_dict


@dataclass(frozen=True)
class PlainLine:
    """A nested dataclass without slots (its fields live in __dict__)."""

    sku: str
    qty: int = 1


@dataclass(frozen=True, slots=True)
class SlotLine:
    sku: str
    qty: int = 1


@dataclass
class MutableLine:
    """A nested dataclass neither frozen nor slotted."""

    sku: str


@dataclass(frozen=True)
class PrivateLine:
    """A nested dataclass with a field orjson skips (leading underscore)."""

    _code: str
    label: str = ""


@dataclass(frozen=True)
class Base(PlainLine):
    """A dict-based dataclass whose subclass adds slots."""


@dataclass(frozen=True, slots=True)
class Mixed(Base):
    """Fields in the base's __dict__ and in this class's slots."""

    extra: int = 0


@dataclass(frozen=True, slots=True)
class Slotted(Event, type_name="tests.core.codec_shapes.Slotted"):
    n: int


@dataclass(frozen=True)
class Derived(Event, type_name="tests.core.codec_shapes.Derived"):
    """The issue's case: no slots, so the base fields live in Event's slots."""

    n: int


@dataclass(frozen=True, slots=True)
class SlotChild(Slotted, type_name="tests.core.codec_shapes.SlotChild"):
    label: str = "x"


@dataclass(frozen=True)
class DictChild(Slotted, type_name="tests.core.codec_shapes.DictChild"):
    """No slots below a slots class."""

    label: str = "x"


@dataclass(frozen=True)
class DictGrandchild(Derived, type_name="tests.core.codec_shapes.DictGrandchild"):
    label: str = "x"


@dataclass(frozen=True, slots=True)
class SlotGrandchild(Derived, type_name="tests.core.codec_shapes.SlotGrandchild"):
    """Slots below a class without them."""

    label: str = "x"


@dataclass(frozen=True)
class Defaults(Event, type_name="tests.core.codec_shapes.Defaults"):
    n: int = 3
    names: tuple[str, ...] = ("a",)
    lines: list[PlainLine] = field(default_factory=list)
    flag: bool = field(default=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Nested(Event, type_name="tests.core.codec_shapes.Nested"):
    plain: PlainLine
    slot: SlotLine
    mutable: MutableLine
    private: PrivateLine
    mixed: Mixed
    many: tuple[PlainLine, ...] = ()
    maybe: PlainLine | None = None


@dataclass(frozen=True)
class NestedNoSlots(Event, type_name="tests.core.codec_shapes.NestedNoSlots"):
    lines: list[SlotLine]
    by_name: dict[str, PlainLine]


@dataclass(frozen=True, slots=True)
class Private(Event, type_name="tests.core.codec_shapes.Private"):
    """An event with a field orjson would skip."""

    _secret: str
    shown: str = ""


@dataclass(frozen=True, slots=True)
class Computed(Event, type_name="tests.core.codec_shapes.Computed"):
    """An init=False field is derived again by __post_init__, never stored."""

    qty: int
    double: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "double", self.qty * 2)


PARENT = UUID(int=42)

SHAPES = [
    pytest.param(Slotted(1), id="slots"),
    pytest.param(Derived(1), id="no-slots"),
    pytest.param(Derived(1, causation_id=PARENT, correlation_id=PARENT), id="no-slots-causal"),
    pytest.param(SlotChild(1, "y"), id="slots-under-slots"),
    pytest.param(DictChild(1, "y"), id="no-slots-under-slots"),
    pytest.param(DictGrandchild(1, "y"), id="no-slots-under-no-slots"),
    pytest.param(SlotGrandchild(1, "y"), id="slots-under-no-slots"),
    pytest.param(Defaults(), id="defaults"),
    pytest.param(Defaults(4, ("b", "c"), [PlainLine("s", 2)], flag=True), id="defaults-given"),
    pytest.param(
        Nested(
            PlainLine("p"),
            SlotLine("s", 3),
            MutableLine("m"),
            PrivateLine("c0de", "l"),
            Mixed("x", 2, 5),
            (PlainLine("a"), PlainLine("b", 7)),
            PlainLine("z"),
        ),
        id="nested-dataclasses",
    ),
    pytest.param(
        NestedNoSlots([SlotLine("s")], {"k": PlainLine("p", 9)}), id="nested-under-no-slots"
    ),
    pytest.param(Private("hidden", "shown"), id="underscore-field"),
    pytest.param(Computed(4), id="init-false-field"),
]


class TestEveryShapeRoundTrips:
    @pytest.mark.parametrize("event", SHAPES)
    def test_to_dict_and_from_dict(self, event: Event) -> None:
        """from_dict(to_dict(e)) equals e, base fields included."""
        back = from_dict(type(event), to_dict(event))
        assert back == event
        assert (back.id, back.created_at, back.causation_id, back.correlation_id) == (
            event.id,
            event.created_at,
            event.causation_id,
            event.correlation_id,
        )

    @pytest.mark.parametrize("event", SHAPES)
    def test_bytes_and_decode_by_type_name(self, event: Event) -> None:
        """The stored bytes decode, by class and by type name, to an equal event."""
        payload = encode(event)
        assert type(event).from_bytes(payload) == event
        assert decode(event.event_type, payload) == event

    @pytest.mark.parametrize("event", SHAPES)
    def test_the_payload_holds_exactly_the_init_fields(self, event: Event) -> None:
        """The payload names every field the constructor takes and nothing else."""
        data = orjson.loads(encode(event))
        init = [f.name for f in dataclasses.fields(event) if f.init]
        assert sorted(data) == sorted(init)

    def test_the_issue_case(self) -> None:
        """Derived.from_dict(e.to_dict()) == e for a frozen event class without slots."""
        event = Derived(7)
        assert Derived.from_dict(event.to_dict()) == event
