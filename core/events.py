"""Events: the immutable dataclasses that flow through a bus, and the registry of
their type names.

Subclass ``Event`` and decorate with ``@dataclass(frozen=True, slots=True)``:

    @dataclass(frozen=True, slots=True)
    class OrderPlaced(Event):
        order_id: str
        total: Decimal

The base contributes keyword-only fields, so subclasses declare ordinary positional
fields without default-ordering trouble: ``id`` (a version-7 UUID, ascending in order of
construction), ``created_at`` (UTC), ``causation_id`` and ``correlation_id``. The causal
ids default from the handler that is running when the event is made, so a chain of
events can be traced without globals.

Building an event is cheap (under twice a plain frozen slots dataclass with the same
fields): a slots event class gets a generated ``__init__`` that records one stamp, and
its id and creation time are derived from that stamp when first read (see "ids and
creation times" below). A class without ``slots=True`` works the same, at the price of
the dataclass ``__init__``.

Every subclass is registered under a stable type name (its qualified name unless given
``class X(Event, type_name="orders.placed", version=2)``). Two different classes may not
share a name; older stored versions are upgraded by registered upcasters.
"""

from __future__ import annotations

import array
import contextvars
import dataclasses
import itertools
import os
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID, SafeUUID

from .errors import EventDecodeError, EventDefinitionError, UnknownEventTypeError

__all__ = ["Event", "EventRegistry", "Upcaster", "current_dispatch", "default_registry"]


class DispatchContext:
    """What a running handler can know about its invocation (read with
    ``current_dispatch()``): the event being handled, the attempt number (1-based), and
    whether this delivery is a redelivery (a replay or a DLQ re-drive). A consumer
    catching up after a crash cannot tell whether the consumer that died got to an
    event: those deliveries say ``redelivery=False``; handlers must be idempotent
    anyway (delivery is at least once)."""

    __slots__ = ("attempt", "event", "redelivery")

    def __init__(self, event: Event, attempt: int = 1, redelivery: bool = False) -> None:
        self.event = event
        self.attempt = attempt
        self.redelivery = redelivery

    def __repr__(self) -> str:
        return (
            f"DispatchContext(event={type(self.event).__name__}, attempt={self.attempt}, "
            f"redelivery={self.redelivery})"
        )


# What the running handler is handling. On the hot path the bus stores the event itself
# (attempt 1, first delivery) and saves building a DispatchContext per publish;
# current_dispatch() builds one when asked.
_dispatch: contextvars.ContextVar[Event | DispatchContext | None] = contextvars.ContextVar(
    "pubsub_dispatch", default=None
)


def current_dispatch() -> DispatchContext | None:
    """The invocation of the handler running in this context, or None outside handlers."""
    ctx = _dispatch.get()
    if ctx is None or isinstance(ctx, DispatchContext):
        return ctx
    return DispatchContext(ctx)


# -- ids and creation times ------------------------------------------------------------
#
# Building an event must cost little more than building a plain frozen dataclass, and a
# UUID object and an aware datetime each cost more than that dataclass. So an event made
# with its defaults records a *stamp* in one slot: the clock reading (an integer of
# nanoseconds) and 64 random bits. Its ``id`` and ``created_at`` are computed from the
# stamp the first time either is read (``_materialize``) and kept in their slots, so every
# reader (equality, hashing, repr, the codec, a store) sees the same values; those values
# are fixed at construction, whenever they are first read. An event made inside a handler
# takes its causal ids from the handled event at once (holding the parent itself would
# chain every follow-up to all its ancestors).
#
# The id is a version-7 UUID (RFC 9562): 48 bits of Unix milliseconds, then the
# sub-millisecond fraction in 20 bits (12 in rand_a as the RFC's method 3, 8 more at the
# top of rand_b), then 54 random bits. The clock reading behind it is strictly increasing
# within the process (a reading that does not pass the last one takes the last one plus
# a nanosecond, so a clock stepped back never reorders ids; created_at keeps the real
# reading), which makes ids strictly ascending in order of construction. Ids made later
# sort later, so a store's unique index on them grows at its right edge. The random bits
# come from os.urandom in blocks of 4,096 (no system call per event); a forked child
# starts a fresh block, so parent and child never share bits.

_time_ns = time.time_ns
_last_key = 0
"""The newest clock reading (nanoseconds) an id of this process was made from."""

_BLOCK = 4096


def _random_block() -> array.array[int]:
    block = array.array("Q")
    block.frombytes(os.urandom(block.itemsize * _BLOCK))
    return block


def _random_stream() -> Iterator[int]:
    """Random 64-bit integers without end, read from the OS a block at a time."""
    return itertools.chain.from_iterable(iter(_random_block, None))


_bits = _random_stream()


def _reseed_after_fork() -> None:
    global _bits
    _bits = _random_stream()


os.register_at_fork(after_in_child=_reseed_after_fork)

# Version 7 in bits 76-79, the RFC 4122 variant (0b10) in bits 62-63.
_V7 = 0x7 << 76 | 0x2 << 62
_RANDOM_54 = (1 << 54) - 1


def _id_int(key: int, bits: int) -> int:
    """The 128 bits of the id made from clock reading ``key`` (ns) and random ``bits``."""
    ms, ns = divmod(key, 1_000_000)
    sub = ns * 1_048_576 // 1_000_000  # the fraction of the millisecond in 20 bits
    return ms << 80 | _V7 | (sub >> 8) << 64 | (sub & 0xFF) << 54 | bits & _RANDOM_54


def _uuid_maker() -> Callable[[int], UUID]:
    """A UUID from its integer without UUID.__init__'s argument checks (the integer is
    ours and in range). The result is an ordinary uuid.UUID: it compares, hashes,
    pickles and prints as UUID(int=value) does."""
    int_slot, safe_slot = UUID.__dict__.get("int"), UUID.__dict__.get("is_safe")
    if not (
        isinstance(int_slot, types.MemberDescriptorType)
        and isinstance(safe_slot, types.MemberDescriptorType)
    ):
        return lambda value: UUID(int=value)  # a Python whose UUID is built differently
    new, set_int, set_safe, unknown = (
        object.__new__,
        int_slot.__set__,
        safe_slot.__set__,
        SafeUUID.unknown,
    )

    def make(value: int) -> UUID:
        uuid: UUID = new(UUID)
        set_int(uuid, value)
        set_safe(uuid, unknown)
        return uuid

    return make


_make_uuid = _uuid_maker()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc_from_ns(ns: int) -> datetime:
    """The aware UTC datetime of a time_ns() reading, as datetime.now(UTC) would give
    it (microseconds, rounded down), computed in integers."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _next_key() -> tuple[int, int]:
    """A strictly increasing clock reading for an id and the real reading behind it."""
    global _last_key
    now = _time_ns()
    if now > _last_key:
        _last_key = now
        return now, now
    _last_key += 1
    return _last_key, now


def new_event_id() -> UUID:
    """A new event id: a version-7 UUID (RFC 9562), later than every id this process
    made before it (see the notes above on its layout)."""
    key, _ = _next_key()
    return _make_uuid(_id_int(key, next(_bits)))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _parent() -> Event | None:
    ctx = _dispatch.get()
    if ctx is None:
        return None
    return ctx.event if isinstance(ctx, DispatchContext) else ctx


def _causation() -> UUID | None:
    parent = _parent()
    return None if parent is None else parent.id


def _correlation() -> UUID | None:
    parent = _parent()
    if parent is None:
        return None
    return parent.correlation_id or parent.id


E = TypeVar("E", bound="Event")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the payload of version n into the payload of version n + 1."""


class EventRegistry:
    """Maps type names to Event classes and holds upcasters. Registration happens when
    a subclass is defined; class definitions are process-wide, so is the default
    registry (a bus keeps no state here)."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[Event]) -> None:
        name = cls.event_type
        with self._lock:
            known = self._by_name.get(name)
            if known is not None and not _same_definition(known, cls):
                raise EventDefinitionError(
                    f"{cls.__module__}.{cls.__qualname__}",
                    f"type name {name!r} is already used by "
                    f"{known.__module__}.{known.__qualname__}; "
                    "give one of them its own name with class X(Event, type_name='...')",
                )
            self._by_name[name] = cls

    def resolve(self, type_name: str) -> type[Event]:
        """The class registered under ``type_name``; UnknownEventTypeError if none."""
        try:
            return self._by_name[type_name]
        except KeyError:
            raise UnknownEventTypeError(type_name, list(self._by_name)) from None

    def get(self, type_name: str) -> type[Event] | None:
        return self._by_name.get(type_name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def subtypes(self, cls: type[Event]) -> list[str]:
        """Type names of ``cls`` and every registered subclass of it (for reads by type)."""
        return sorted(name for name, known in self._by_name.items() if issubclass(known, cls))

    def add_upcaster(self, type_name: str, from_version: int, upcaster: Upcaster) -> None:
        """Register a function that upgrades a payload of ``type_name`` from
        ``from_version`` to ``from_version + 1``."""
        self._upcasters[(type_name, from_version)] = upcaster

    def upcast(self, type_name: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Bring a stored payload of ``version`` up to the class's current version."""
        cls = self.resolve(type_name)
        target = cls.event_version
        if version > target:
            raise EventDecodeError(
                type_name,
                None,
                f"schema version {version} is newer than the code's version {target}: "
                "upgrade the module that defines it",
            )
        while version < target:
            step = self._upcasters.get((type_name, version))
            if step is None:
                raise EventDecodeError(
                    type_name,
                    None,
                    f"stored version {version} is older than {target} and no upcaster "
                    f"from {version} is registered",
                )
            try:
                payload = step(payload)
            except Exception as exc:  # a broken upcaster is this payload's decode error
                raise EventDecodeError(
                    type_name,
                    None,
                    f"upcaster from version {version} raised {type(exc).__name__}: {exc}",
                ) from exc
            version += 1
        return payload


def _same_definition(known: type[Event], cls: type[Event]) -> bool:
    """Whether ``cls`` replaces ``known`` rather than competing with it for a name."""
    if known is cls:
        return True
    # The same module and qualified name again is a re-definition: a module re-imported,
    # a function defining its local class once per call.
    if (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__):
        return True
    # @dataclass(slots=True) re-creates the class from a copy of the original's
    # namespace and registers the copy before restoring its __qualname__ (so a class
    # defined in a function is seen as "Local", not "f.<locals>.Local"). The copy shares
    # the original's dataclass field table, which no separately defined class can.
    fields = known.__dict__.get("__dataclass_fields__")
    return (
        fields is not None
        and cls.__dict__.get("__dataclass_fields__") is fields
        and known.__module__ == cls.__module__
        and known.__name__ == cls.__name__
    )


default_registry = EventRegistry()


class _Stamped:
    """Holds an event's stamp until its id and creation time are first read."""

    __slots__ = ("_stamp",)


@dataclass(frozen=True, slots=True)
class Event(_Stamped):
    """Base of all events: an immutable dataclass with an id, a UTC creation time and
    causal links. Subclass it with ``@dataclass(frozen=True, slots=True)``.

    Class keywords: ``type_name`` (stable name stored in the log; default the class's
    qualified name) and ``version`` (the schema version, default 1).
    """

    event_type: ClassVar[str] = "Event"
    event_version: ClassVar[int] = 1

    id: UUID = field(default_factory=new_event_id, kw_only=True)
    created_at: datetime = field(default_factory=_utcnow, kw_only=True)
    causation_id: UUID | None = field(default_factory=_causation, kw_only=True)
    correlation_id: UUID | None = field(default_factory=_correlation, kw_only=True)

    def __init_subclass__(
        cls, *, type_name: str | None = None, version: int | None = None, **kwargs: Any
    ) -> None:
        # Explicit super(): the slots dataclass decorator re-creates Event, so the
        # zero-argument form would point at the discarded first class.
        super(Event, cls).__init_subclass__(**kwargs)
        own = cls.__dict__
        # A slots dataclass is re-created by its decorator without the class keywords:
        # keep the values the first creation stored on the class.
        name = type_name or own.get("event_type") or cls.__qualname__
        ver = version if version is not None else own.get("event_version", 1)
        if not isinstance(name, str) or not name:
            raise EventDefinitionError(cls.__qualname__, "type_name must be a non-empty string")
        if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
            raise EventDefinitionError(cls.__qualname__, "version must be an integer >= 1")
        cls.event_type = name
        cls.event_version = ver
        default_registry.register(cls)
        if "__dataclass_fields__" in own:
            # The class a slots dataclass decorator re-created: fields are known.
            _install_fast_init(cls)

    @property
    def correlation(self) -> UUID:
        """The id shared by every event of one causal chain (the root's own id)."""
        return self.correlation_id or self.id

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-compatible data; ``from_dict`` turns it back into an equal
        event."""
        from .codec import to_dict

        return to_dict(self)

    @classmethod
    def from_dict(cls: type[E], data: Mapping[str, Any]) -> E:
        """Build an event of this class from ``to_dict`` data, checking every field."""
        from .codec import from_dict

        return from_dict(cls, data)

    def to_bytes(self) -> bytes:
        """The event's payload as orjson bytes (what a store keeps)."""
        from .codec import encode

        return encode(self)

    @classmethod
    def from_bytes(cls: type[E], payload: bytes) -> E:
        from .codec import decode_as

        return decode_as(cls, payload)


# -- the base fields' storage -----------------------------------------------------------

_BASE_NAMES = ("id", "created_at", "causation_id", "correlation_id")


class _Derived:
    """The descriptor of a base field: reads the field's slot and, when an event made
    with its defaults has not filled it yet, fills every base field from the stamp
    first. Read on the class, it gives the slot itself (what dataclasses expects of a
    slots class)."""

    __slots__ = ("_read", "slot")

    def __init__(self, slot: types.MemberDescriptorType) -> None:
        self.slot = slot
        self._read = slot.__get__

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.slot
        try:
            return self._read(obj)
        except AttributeError:
            _materialize(obj)
            return self._read(obj)

    def __set__(self, obj: Any, value: Any) -> None:
        self.slot.__set__(obj, value)

    def __delete__(self, obj: Any) -> None:
        self.slot.__delete__(obj)


_SLOTS: dict[str, types.MemberDescriptorType] = {name: Event.__dict__[name] for name in _BASE_NAMES}
for _name, _slot in _SLOTS.items():
    setattr(Event, _name, _Derived(_slot))
del _name, _slot

_stamp_slot: Any = _Stamped.__dict__["_stamp"]
_get_stamp, _set_stamp, _del_stamp = (
    _stamp_slot.__get__,
    _stamp_slot.__set__,
    _stamp_slot.__delete__,
)
_set_id = _SLOTS["id"].__set__
_set_created = _SLOTS["created_at"].__set__
_get_causation = _SLOTS["causation_id"].__get__
_set_causation = _SLOTS["causation_id"].__set__
_set_correlation = _SLOTS["correlation_id"].__set__
_materialize_lock = threading.Lock()
_get_id = _SLOTS["id"].__get__
_get_created = _SLOTS["created_at"].__get__
_get_correlation = _SLOTS["correlation_id"].__get__


def base_fields(event: Event) -> tuple[UUID, datetime, UUID | None, UUID | None]:
    """``(id, created_at, correlation_id, causation_id)`` of ``event`` in one call,
    read from their slots (a store writing many events reads them this way: four
    attribute reads each go through the base fields' descriptor)."""
    try:
        return _get_id(event), _get_created(event), _get_correlation(event), _get_causation(event)
    except AttributeError:
        _materialize(event)
        return _get_id(event), _get_created(event), _get_correlation(event), _get_causation(event)


_dispatch_get = _dispatch.get


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None] | None:
    """What sets field ``name`` of an instance of ``cls`` made with object.__new__ (the
    codec fills decoded events this way), or None if it is not stored in a slot."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            found = klass.__dict__[name]
            if isinstance(found, _Derived):
                found = found.slot
            if isinstance(found, types.MemberDescriptorType):
                setter: Callable[[Any, Any], None] = found.__set__
                return setter
            return None
    return None


def _materialize(event: Event) -> None:
    """Fill the base fields of an event made with its defaults from its stamp, once;
    under a lock, so two threads reading a new event's id at the same moment agree."""
    with _materialize_lock:
        try:
            stamp = _get_stamp(event)
        except AttributeError:
            return  # filled already, or never stamped (made without __init__)
        key, bits = stamp[0], stamp[1]
        _set_id(event, _make_uuid(_id_int(key, bits)))
        _set_created(event, _utc_from_ns(stamp[2] if len(stamp) == 3 else key))
        try:
            _get_causation(event)
        except AttributeError:  # made outside a handler
            _set_causation(event, None)
            _set_correlation(event, None)
        _del_stamp(event)


def _inherit(event: Event, ctx: Event | DispatchContext) -> None:
    """Set the causal ids of an event made while a handler runs."""
    parent = ctx.event if type(ctx) is DispatchContext else ctx
    assert isinstance(parent, Event)
    _set_causation(event, parent.id)
    _set_correlation(event, parent.correlation_id or parent.id)


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_UNSET: Any = _Unset()
_FACTORY: Any = _Unset()


def _explicit(
    event: Event, id: Any, created_at: Any, causation_id: Any, correlation_id: Any
) -> None:
    """Base fields of an event made with some of them given: the rest as the field
    defaults would make them."""
    _set_id(event, new_event_id() if id is _UNSET else id)
    _set_created(event, _utcnow() if created_at is _UNSET else created_at)
    _set_causation(event, _causation() if causation_id is _UNSET else causation_id)
    _set_correlation(event, _correlation() if correlation_id is _UNSET else correlation_id)


def _given(event: Event, base: dict[str, Any]) -> None:
    """The base fields of an event made with some of them given (the generated
    ``__init__`` takes them as keyword arguments)."""
    unknown = sorted(base.keys() - _BASE_NAMES)
    if unknown:
        raise TypeError(
            f"{type(event).__qualname__}.__init__() got an unexpected keyword argument "
            f"{unknown[0]!r}"
        )
    _explicit(event, *(base.get(name, _UNSET) for name in _BASE_NAMES))


# Names the generated __init__ uses besides its parameters: a class with a field of one
# of these names keeps the dataclass __init__.
_RESERVED = frozenset(
    {"self", "next", "_time_ns", "_last_key", "_bits", "_dispatch_get", "_inherit", "_given"}
    | {"_UNSET", "_FACTORY"}
)
_INITVAR = getattr(dataclasses, "_FIELD_INITVAR", None)


def _install_fast_init(cls: type[Event]) -> None:
    """Replace the dataclass ``__init__`` of a slots event class with one that does the
    same for the class's own fields and stamps the base fields (see the notes on ids).

    Only the shapes whose dataclass ``__init__`` is plain get it: every field an init
    field stored in a slot, the base fields as Event declares them, no InitVar and no
    hand-written ``__init__``. A ``__post_init__`` is called as dataclasses would call
    it. Any other class keeps its dataclass ``__init__``, which calls the field
    defaults."""
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    if code is None or code.co_filename != "<string>":
        return  # written by hand, or already ours
    declared = cls.__dict__["__dataclass_fields__"]
    fields = dataclasses.fields(cls)
    if _INITVAR is None and len(declared) != len(fields):
        return  # cannot tell InitVars apart on this Python
    if any(getattr(f, "_field_type", None) is _INITVAR for f in declared.values()):
        return
    base = Event.__dataclass_fields__
    if any(declared.get(name) is not base[name] for name in _BASE_NAMES):
        return  # a base field redeclared
    closure: dict[str, Any] = {}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        name = f.name
        if not f.init or name in _RESERVED or name.startswith("__"):
            return
        if name in _BASE_NAMES:
            continue  # taken by **__base: one test of an empty dict instead of four
        setter = slot_setter(cls, name)
        if setter is None:
            return
        closure[f"__set{i}"] = setter
        value = name
        if f.default is not dataclasses.MISSING:
            closure[f"__default{i}"] = f.default
            param = f"{name}=__default{i}"
        elif f.default_factory is not dataclasses.MISSING:
            closure[f"__factory{i}"] = f.default_factory
            param = f"{name}=_FACTORY"
            value = f"__factory{i}() if {name} is _FACTORY else {name}"
        else:
            param = name
        (keyword if f.kw_only else positional).append(param)
        body.append(f"        __set{i}(self, {value})")
    closure["__set_stamp"] = _set_stamp
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else []), "**__base"])
    lines = [
        f"def __make({', '.join(closure)}):",
        f"    def __init__({signature}):",
        "        global _last_key",
        *body,
        "        if not __base:",
        "            __now = _time_ns()",
        "            if __now > _last_key:",
        "                _last_key = __now",
        "                __set_stamp(self, (__now, next(_bits)))",
        "            else:",
        "                _last_key += 1",
        "                __set_stamp(self, (_last_key, next(_bits), __now))",
        "            __ctx = _dispatch_get()",
        "            if __ctx is not None:",
        "                _inherit(self, __ctx)",
        "        else:",
        "            _given(self, __base)",
    ]
    if hasattr(cls, "__post_init__"):
        lines.append("        self.__post_init__()")
    lines.append("    return __init__")
    namespace: dict[str, Any] = {}
    exec(
        compile("\n".join(lines), f"<pubsub event init {cls.__qualname__}>", "exec"),
        globals(),
        namespace,
    )
    fast = namespace["__make"](**closure)
    fast.__qualname__ = f"{cls.__qualname__}.__init__"
    fast.__doc__ = init.__doc__
    fast.__wrapped__ = init  # inspect.signature() shows the dataclass signature
    fast.__pubsub_plain_init__ = True  # it sets the fields and nothing else (for the codec)
    setattr(cls, "__init__", fast)  # noqa: B010 (mypy refuses assigning a method)


_install_fast_init(Event)


def is_frozen_dataclass(obj: object) -> bool:
    # The class's own parameters: a subclass that forgot the decorator inherits its
    # base's, but its own fields are neither frozen nor encoded.
    params = type(obj).__dict__.get("__dataclass_params__")
    return dataclasses.is_dataclass(obj) and bool(params and params.frozen)
