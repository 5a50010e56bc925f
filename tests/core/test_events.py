"""Events: frozen dataclasses with ids, UTC times, type names, versions and a registry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import pytest

from core import Event, EventDefinitionError, EventRegistry, UnknownEventTypeError, default_registry


@dataclass(frozen=True, slots=True)
class Placed(Event, type_name="tests.core.events.Placed"):
    order_id: str
    total: int = 0


@dataclass(frozen=True, slots=True)
class Versioned(Event, type_name="tests.core.events.Versioned", version=3):
    note: str


@dataclass(frozen=True, slots=True)
class DefaultNamed(Event):
    value: int


class TestEventBase:
    def test_subclass_declares_plain_fields_before_base_defaults(self) -> None:
        """A subclass takes positional fields although the base fields have defaults."""
        event = Placed("o-1", 5)
        assert (event.order_id, event.total) == ("o-1", 5)

    def test_id_is_a_unique_uuid(self) -> None:
        """Every event gets its own UUID id."""
        a, b = Placed("o-1"), Placed("o-1")
        assert isinstance(a.id, UUID)
        assert a.id != b.id

    def test_created_at_is_utc(self) -> None:
        """The creation time is timezone-aware UTC and close to now."""
        before = datetime.now(UTC)
        event = Placed("o-1")
        assert event.created_at.tzinfo is UTC
        assert before <= event.created_at <= datetime.now(UTC)

    def test_base_fields_are_keyword_only(self) -> None:
        """id and created_at cannot be passed positionally by accident."""
        with pytest.raises(TypeError):
            Placed("o-1", 1, UUID(int=1))  # type: ignore[misc]

    def test_events_are_frozen(self) -> None:
        """Assigning to a field of an event raises."""
        event = Placed("o-1")
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.order_id = "o-2"  # type: ignore[misc]

    def test_no_causal_links_outside_a_handler(self) -> None:
        """An event made outside any handler has no causation and is its own correlation."""
        event = Placed("o-1")
        assert event.causation_id is None
        assert event.correlation_id is None
        assert event.correlation == event.id


class TestTypeNames:
    def test_type_name_can_be_overridden(self) -> None:
        """The class keyword type_name sets the stable name."""
        assert Placed.event_type == "tests.core.events.Placed"

    def test_default_type_name_is_the_qualified_name(self) -> None:
        """Without type_name, the class's qualified name is used."""
        assert DefaultNamed.event_type == "DefaultNamed"

    @pytest.mark.parametrize(
        ("cls", "version"),
        [pytest.param(Placed, 1, id="default"), pytest.param(Versioned, 3, id="explicit")],
    )
    def test_schema_version(self, cls: type[Event], version: int) -> None:
        """The schema version defaults to 1 and can be declared."""
        assert cls.event_version == version

    def test_registered_in_the_default_registry(self) -> None:
        """Defining a subclass registers it under its type name."""
        assert default_registry.resolve("tests.core.events.Placed") is Placed

    def test_a_clashing_type_name_is_refused(self) -> None:
        """A second class may not take a type name another class holds."""
        with pytest.raises(EventDefinitionError, match=r"tests\.core\.events\.Placed"):

            @dataclass(frozen=True, slots=True)
            class Other(Event, type_name="tests.core.events.Placed"):
                x: int

    def test_a_class_defined_in_a_function_registers(self) -> None:
        """A slots event class local to a function registers under its qualified name
        (the decorator's re-created class replaces its original) and round-trips."""

        @dataclass(frozen=True, slots=True)
        class Local(Event):
            n: int
            label: str = ""

        assert Local.event_type.endswith("<locals>.Local")
        assert default_registry.resolve(Local.event_type) is Local
        assert "__slots__" in Local.__dict__
        event = Local(3, "x")
        assert Local.from_bytes(event.to_bytes()) == event

    def test_a_local_class_with_its_own_type_name_registers(self) -> None:
        """The same holds with an explicit type name and a version."""

        @dataclass(frozen=True, slots=True)
        class Named(Event, type_name="tests.core.events.LocalNamed", version=2):
            n: int

        assert (Named.event_type, Named.event_version) == ("tests.core.events.LocalNamed", 2)
        assert default_registry.resolve("tests.core.events.LocalNamed") is Named

    def test_a_local_class_can_be_defined_again(self) -> None:
        """Each call of the defining function re-defines the class; the newest wins."""

        def define() -> type[Event]:
            @dataclass(frozen=True, slots=True)
            class Again(Event, type_name="tests.core.events.LocalAgain"):
                n: int

            return Again

        first, second = define(), define()
        assert first is not second
        assert default_registry.resolve("tests.core.events.LocalAgain") is second

    def test_local_classes_of_two_functions_may_not_share_a_name(self) -> None:
        """Two different local classes claiming one type name are still refused."""

        def one() -> type[Event]:
            @dataclass(frozen=True, slots=True)
            class Shared(Event, type_name="tests.core.events.LocalShared"):
                n: int

            return Shared

        def two() -> type[Event]:
            @dataclass(frozen=True, slots=True)
            class Shared(Event, type_name="tests.core.events.LocalShared"):
                n: int

            return Shared

        kept = one()
        with pytest.raises(EventDefinitionError, match=r"one\.<locals>\.Shared"):
            two()
        assert default_registry.resolve("tests.core.events.LocalShared") is kept

    def test_a_local_class_may_not_take_a_module_level_name(self) -> None:
        """A local slots class cannot take the name of a class defined elsewhere, with
        the same class name or not."""
        original = default_registry.resolve("tests.core.events.Placed")
        with pytest.raises(EventDefinitionError, match=r"tests\.core\.events\.Placed"):

            @dataclass(frozen=True, slots=True)
            class Placed(Event, type_name="tests.core.events.Placed"):
                order_id: str

        assert default_registry.resolve("tests.core.events.Placed") is original

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"version": "2"}, id="version-str"),
            pytest.param({"version": 0}, id="version-zero"),
        ],
    )
    def test_bad_class_keywords_are_refused(self, kwargs: dict[str, object]) -> None:
        """A version that is not an integer >= 1 is refused at class definition."""
        with pytest.raises(EventDefinitionError):

            class Bad(Event, **kwargs):  # type: ignore[misc]
                pass

    def test_unknown_type_name_names_it(self) -> None:
        """Resolving an unknown name raises UnknownEventTypeError naming it."""
        registry = EventRegistry()
        with pytest.raises(UnknownEventTypeError, match=r"no\.such\.type") as info:
            registry.resolve("no.such.type")
        assert info.value.type_name == "no.such.type"
