"""Events: frozen dataclasses with ids, UTC times, type names, versions and a registry."""

from __future__ import annotations

import copy
import dataclasses
import gc
import inspect
import pickle
import threading
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import pytest

from core import (
    DispatchContext,
    Event,
    EventDefinitionError,
    EventRegistry,
    UnknownEventTypeError,
    default_registry,
    events,
)
from core.codec import encode
from plugins.sqlite.records import event_row


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


@dataclass(frozen=True, slots=True)
class Child(Placed, type_name="tests.core.events.Child"):
    """A subclass of a subclass, with a default, a factory and a keyword-only field."""

    tags: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    urgent: bool = field(default=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Checked(Event, type_name="tests.core.events.Checked"):
    qty: int

    def __post_init__(self) -> None:
        if self.qty < 0:
            raise ValueError("qty must not be negative")


@dataclass(frozen=True, slots=True)
class WithInitVar(Event, type_name="tests.core.events.WithInitVar"):
    qty: int
    scale: InitVar[int] = 1
    scaled: int = field(init=False, default=0)

    def __post_init__(self, scale: int) -> None:
        object.__setattr__(self, "scaled", self.qty * scale)


@dataclass(frozen=True)
class NoSlots(Event, type_name="tests.core.events.NoSlots"):
    value: int


class FakeNs:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class TestBaseFieldsFixedAtConstruction:
    def test_created_at_is_the_time_of_construction(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """created_at is the clock reading taken when the event was built, to the
        microsecond, however late it is first read."""
        fake = FakeNs(1_800_000_000_123_456_789)
        monkeypatch.setattr(events, "_time_ns", fake)
        monkeypatch.setattr(events, "_last_key", 0)
        event = Placed("o-1")
        fake.now += 5 * 10**9
        assert event.created_at == datetime(2027, 1, 15, 8, 0, 0, 123456, tzinfo=UTC)
        assert event.created_at.tzinfo is UTC
        assert event.id.int >> 80 == 1_800_000_000_123

    def test_every_reader_sees_the_same_values(self) -> None:
        """id and created_at are the same objects on every read, and equality, hashing,
        repr, the codec and a copy all agree on them."""
        event = Placed("o-1")
        twin = copy.copy(event)
        assert twin == event
        assert hash(twin) == hash(event)
        assert event.id is event.id
        assert event.created_at is event.created_at
        assert repr(event.id) in repr(event)
        data = event.to_dict()
        assert data["id"] == str(event.id)
        assert data["created_at"] == event.created_at.isoformat()
        assert Placed.from_bytes(encode(event)) == event

    def test_an_encoded_event_was_not_stamped_again(self) -> None:
        """Encoding an event read before reports the values read before."""
        event = Placed("o-1")
        first_id, first_time = event.id, event.created_at
        payload = encode(event)
        assert Placed.from_bytes(payload).id == first_id
        assert Placed.from_bytes(payload).created_at == first_time

    def test_the_way_to_a_store_reads_no_clock_and_makes_no_id(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Encoding a new event and building its SQLite row derive the id and time
        from the construction's stamp: no clock reading, no random bits, no new id."""
        event = Placed("o-1")

        def refuse(*args: object) -> object:
            raise AssertionError("the clock or the id generator was used again")

        monkeypatch.setattr(events, "_time_ns", refuse)
        monkeypatch.setattr(events, "_utcnow", refuse)
        monkeypatch.setattr(events, "new_event_id", refuse)
        monkeypatch.setattr(events, "_bits", iter(()))
        payload = encode(event)
        row = event_row(event)
        assert row[0] == event.id.bytes
        assert row[3] == event.created_at.isoformat()
        assert Placed.from_bytes(payload) == event

    def test_the_id_is_an_ordinary_uuid(self) -> None:
        """The id is a uuid.UUID equal to, hashing like and pickling like one built from
        its text."""
        event_id = Placed("o-1").id
        built = UUID(str(event_id))
        assert type(event_id) is UUID
        assert event_id == built
        assert hash(event_id) == hash(built)
        assert event_id.is_safe == built.is_safe
        assert pickle.loads(pickle.dumps(event_id)) == built
        assert copy.deepcopy(event_id) == built

    @pytest.mark.parametrize(
        "event",
        [
            pytest.param(Placed("o-1", 3), id="slots"),
            pytest.param(Child("o-1", 2, ("a",), ["n"], urgent=True), id="subclass-of-subclass"),
            pytest.param(NoSlots(4), id="no-slots"),
            pytest.param(WithInitVar(2, 5), id="initvar"),
        ],
    )
    def test_pickle_and_copy_keep_every_field(self, event: Event) -> None:
        """Pickling, copying and deep-copying an event keep its id, time and fields."""
        for back in (pickle.loads(pickle.dumps(event)), copy.copy(event), copy.deepcopy(event)):
            assert back == event
            assert (back.id, back.created_at) == (event.id, event.created_at)

    def test_replace_keeps_the_identity(self) -> None:
        """dataclasses.replace changes the named field and keeps id and created_at."""
        event = Placed("o-1", 1)
        changed = dataclasses.replace(event, total=2)
        assert (changed.id, changed.created_at, changed.total) == (event.id, event.created_at, 2)

    def test_threads_reading_a_new_event_agree(self) -> None:
        """Threads reading the ids of the same fresh events at once see the same ids."""
        made = [Placed("o") for _ in range(2_000)]
        start = threading.Barrier(3)
        seen: list[list[UUID]] = []

        def read() -> None:
            start.wait()
            seen.append([event.id for event in made])

        threads = [threading.Thread(target=read) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 3
        assert seen[0] == seen[1] == seen[2]


class TestConstruction:
    def test_given_base_fields_are_kept(self) -> None:
        """Base fields passed to the constructor are used as given, the others made."""
        given = UUID(int=7)
        when = datetime(2026, 1, 2, tzinfo=UTC)
        full = Placed("o-1", id=given, created_at=when, causation_id=given, correlation_id=given)
        assert (full.id, full.created_at, full.causation_id, full.correlation_id) == (
            given,
            when,
            given,
            given,
        )
        partial = Placed("o-1", id=given)
        assert partial.id == given
        assert partial.created_at.tzinfo is UTC
        assert partial.causation_id is None

    def test_an_unknown_keyword_is_refused(self) -> None:
        """A keyword that names no field is a TypeError naming it, as dataclasses say."""
        with pytest.raises(TypeError, match="unexpected keyword argument 'idd'"):
            Placed("o-1", idd=UUID(int=1))  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="multiple values"):
            Placed("o-1", order_id="o-2")  # type: ignore[misc]

    def test_every_field_shape_builds(self) -> None:
        """Defaults, factories (a new object each time), keyword-only fields and a
        subclass of a subclass build as dataclasses would build them."""
        a, b = Child("o-1"), Child("o-2", 5, ("x",), urgent=True)
        assert (a.order_id, a.total, a.tags, a.notes, a.urgent) == ("o-1", 0, (), [], False)
        assert (b.total, b.tags, b.urgent) == (5, ("x",), True)
        assert a.notes is not Child("o-3").notes
        with pytest.raises(TypeError):
            Child("o-1", 1, (), [], True)  # type: ignore[misc]
        with pytest.raises(TypeError):
            Child()  # type: ignore[call-arg]

    def test_the_signature_is_the_dataclass_one(self) -> None:
        """The constructor's parameters are the dataclass's: own fields positional, base
        fields and keyword-only fields after the star."""
        params = inspect.signature(Child).parameters
        assert list(params) == [
            "order_id",
            "total",
            "tags",
            "notes",
            "id",
            "created_at",
            "causation_id",
            "correlation_id",
            "urgent",
        ]
        assert params["id"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["total"].default == 0

    def test_post_init_runs(self) -> None:
        """A class's __post_init__ runs after the fields are set, and can refuse."""
        assert Checked(1).qty == 1
        with pytest.raises(ValueError, match="negative"):
            Checked(-1)

    def test_initvar_and_init_false_fields_work(self) -> None:
        """A class with an InitVar and an init=False field builds as dataclasses do."""
        event = WithInitVar(2, 5)
        assert event.scaled == 10
        assert event.id.version == 7

    def test_a_class_without_slots_gets_its_base_fields(self) -> None:
        """A frozen event class without slots has an id, a time and causal links too."""
        event = NoSlots(1)
        assert event.id.version == 7
        assert event.created_at.tzinfo is UTC
        assert event.causation_id is None

    def test_bad_field_order_is_refused_at_definition(self) -> None:
        """A field without a default after one with a default is refused when the class
        is defined, as dataclasses refuses it."""
        with pytest.raises(TypeError, match="non-default argument"):

            @dataclass(frozen=True, slots=True)
            class Bad(Event, type_name="tests.core.events.BadOrder"):
                a: int = 0
                b: int  # type: ignore[misc]


class TestCausalDefaults:
    @pytest.mark.parametrize(
        "wrap", [pytest.param(False, id="event"), pytest.param(True, id="context")]
    )
    def test_an_event_made_in_a_handler_links_to_the_handled_one(self, wrap: bool) -> None:
        """While the dispatch context holds an event (or a DispatchContext of it), an
        event made gets its id as causation and its correlation."""
        root = Placed("root")
        parent = Placed("parent", causation_id=root.id, correlation_id=root.id)
        token = events._dispatch.set(DispatchContext(parent, 2, True) if wrap else parent)
        try:
            child = Placed("child")
        finally:
            events._dispatch.reset(token)
        assert child.causation_id == parent.id
        assert child.correlation_id == root.id
        assert Placed("after").causation_id is None

    def test_a_follow_up_does_not_keep_its_parent_alive(self) -> None:
        """An event made in a handler holds the parent's ids, not the parent, so a chain
        of follow-ups never keeps its ancestors in memory."""
        parent = Placed("parent")
        token = events._dispatch.set(parent)
        try:
            child = Placed("child")
        finally:
            events._dispatch.reset(token)
        assert not any(r is parent for r in gc.get_referents(child))
        stamp = child._stamp
        assert all(type(part) is int for part in stamp)
