"""Events: the immutable dataclasses that flow through a bus, and the registry of
their type names.

Subclass ``Event`` and decorate with ``@dataclass(frozen=True, slots=True)``:

    @dataclass(frozen=True, slots=True)
    class OrderPlaced(Event):
        order_id: str
        total: Decimal

The base contributes keyword-only fields, so subclasses declare ordinary positional
fields without default-ordering trouble: ``id`` (a UUID4), ``created_at`` (UTC),
``causation_id`` and ``correlation_id``. The causal ids default from the handler that is
running when the event is made, so a chain of events can be traced without globals.

Every subclass is registered under a stable type name (its qualified name unless given
``class X(Event, type_name="orders.placed", version=2)``). Two different classes may not
share a name; older stored versions are upgraded by registered upcasters.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

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


def new_event_id() -> UUID:
    """A new event id: a version-7 UUID (RFC 9562), 48 bits of Unix milliseconds then 74
    random bits. Ids made later sort later, so a store's unique index on them grows at
    its right edge instead of touching a random page per insert; with random (version
    4) ids that index dominated the cost of a durable commit. The random bits keep ids
    unique across processes."""
    value = (time.time_ns() // 1_000_000) << 80 | _id_bits(80)
    return UUID(int=value & _V7_CLEAR | _V7_SET)


# Ids need uniqueness, not secrecy: a private generator seeded from the OS (not the
# global one, which tests may seed) is several times cheaper than os.urandom per id.
# A forked child draws a fresh seed, so parent and child never share a sequence.
_id_random = random.Random()
_id_bits = _id_random.getrandbits
os.register_at_fork(after_in_child=_id_random.seed)


# Version 7 in bits 76-79, the RFC 4122 variant (0b10) in bits 62-63.
_V7_CLEAR = ~(0xF << 76 | 0x3 << 62) & ((1 << 128) - 1)
_V7_SET = 0x7 << 76 | 0x2 << 62


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


@dataclass(frozen=True, slots=True)
class Event:
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


def is_frozen_dataclass(obj: object) -> bool:
    # The class's own parameters: a subclass that forgot the decorator inherits its
    # base's, but its own fields are neither frozen nor encoded.
    params = type(obj).__dict__.get("__dataclass_params__")
    return dataclasses.is_dataclass(obj) and bool(params and params.frozen)
