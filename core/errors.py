"""Errors: every failure the library reports, under one root.

Each error keeps the facts it was built from as attributes and renders as one line
that says what to do, because the command line prints it as it is.

    PubSubError
    ├── EventError
    │   ├── EventDefinitionError     an Event subclass cannot be registered or encoded
    │   ├── UnknownEventTypeError    a type name no registered class answers to
    │   ├── EventDecodeError         a payload that does not fit its class (names the field)
    │   └── EventEncodeError         a value JSON cannot carry faithfully (NaN, huge int, ...)
    ├── SubscriptionError            a handler that cannot be subscribed (dev mode, duplicate name)
    ├── DispatchError                also an ExceptionGroup: every handler failure of a publish
    ├── BreakerOpenError             a call refused by an open circuit breaker (an outcome's error)
    ├── BusClosedError               publish after aclose()
    ├── SyncPublishInLoopError       publish() called where publish_async() belongs
    ├── StoreError
    │   ├── StoreUnavailableError    the store cannot be opened, read or written
    │   ├── NotAStoreError           a file that is not a pubsub store (left untouched)
    │   ├── SchemaVersionError       a store written by a newer version of pubsub
    │   ├── ChecksumMismatchError    a stored payload whose checksum does not match
    │   ├── GroupLockedError         another live consumer holds the group's lease
    │   └── UnknownStoreSchemeError  a store URL whose scheme no plugin registers
    ├── DeadLetterNotFoundError      a DLQ id that does not exist
    └── PluginLoadError              an entry point that failed to import
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class _Outcome(Protocol):
    """What DispatchError keeps of each handler's outcome (core.results.HandlerOutcome
    fits; the protocol keeps this module free of imports from the rest of core)."""

    @property
    def handler(self) -> str: ...

    @property
    def error(self) -> Exception | None: ...


class PubSubError(Exception):
    """Root of every error pubsub raises on purpose; catch it to catch them all."""


class EventError(PubSubError):
    """An event class, instance or payload is wrong; see the subclasses."""


class EventDefinitionError(EventError):
    """Raised when an Event subclass cannot be registered (a clashing type name, a field
    type the codec cannot carry). Problems with one payload are EventDecodeError."""

    def __init__(self, cls_name: str, problem: str, *, seq: int | None = None) -> None:
        self.cls_name = cls_name
        self.problem = problem
        self.seq = seq
        at = f"seq {seq}: " if seq is not None else ""
        super().__init__(f"{at}event class {cls_name!r}: {problem}")


class UnknownEventTypeError(EventError):
    """Raised when a type name has no registered class. Import the module that defines
    it (``--app TARGET`` on the command line)."""

    def __init__(
        self, type_name: str, known: Sequence[str] = (), *, seq: int | None = None
    ) -> None:
        self.type_name = type_name
        self.known = tuple(known)
        self.seq = seq
        hint = f"; known types: {', '.join(sorted(self.known)[:10])}" if self.known else ""
        at = f" (seq {seq})" if seq is not None else ""
        super().__init__(
            f"unknown event type {type_name!r}{at}: import the module that defines it{hint}"
        )


class EventDecodeError(EventError):
    """Raised when a payload does not fit its registered class: a missing, unexpected or
    ill-typed field, or a schema version newer than the code. ``field`` is a dotted path
    (``items.0.sku``) or None when the payload as a whole is wrong."""

    def __init__(
        self,
        type_name: str,
        field: str | None,
        problem: str,
        *,
        seq: int | None = None,
    ) -> None:
        self.type_name = type_name
        self.field = field
        self.problem = problem
        self.seq = seq
        where = f" field {field!r}" if field else ""
        at = f" (seq {seq})" if seq is not None else ""
        super().__init__(f"cannot decode {type_name!r}{at}:{where} {problem}")


class EventEncodeError(EventError):
    """Raised at publish when an event holds a value JSON cannot carry faithfully (NaN,
    infinity, an integer beyond 64 bits, an unsupported type): refused, never changed."""

    def __init__(self, type_name: str, field: str | None, problem: str) -> None:
        self.type_name = type_name
        self.field = field
        self.problem = problem
        where = f" field {field!r}" if field else ""
        super().__init__(f"cannot encode {type_name!r}:{where} {problem}")


class SubscriptionError(PubSubError):
    """Raised when a handler cannot be subscribed: a duplicate handler name on one bus, or
    (in development mode) a handler whose signature does not fit its event type."""


class DispatchError(PubSubError, ExceptionGroup[Exception]):
    """Raised by ``publish_async(..., raise_on_error=True)`` when at least one handler
    failed. It is an ExceptionGroup of the handlers' final exceptions, so both
    ``except* ValueError`` and ``except PubSubError`` work; ``outcomes`` holds every
    handler's outcome, the successful ones included."""

    outcomes: tuple[_Outcome, ...]

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        outcomes: Sequence[_Outcome] = (),
    ) -> DispatchError:
        self = super().__new__(cls, message, exceptions)
        self.outcomes = tuple(outcomes)
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        outcomes: Sequence[_Outcome] = (),
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Any]) -> DispatchError:  # type: ignore[override]
        return DispatchError(self.message, excs, self.outcomes)


class BreakerOpenError(PubSubError):
    """The error of an outcome whose call an open circuit breaker refused (the handler
    did not run; status ``rejected``). It is never raised by publish itself: it reaches
    you inside a DispatchError or as ``outcome.error``."""

    def __init__(self, handler: str) -> None:
        self.handler = handler
        super().__init__(f"circuit breaker of {handler!r} is open: the call was refused")


class BusClosedError(PubSubError):
    """Raised by publish after ``aclose()``; create a new bus to publish again."""

    def __init__(self) -> None:
        super().__init__("the bus is closed: it no longer accepts events; create a new EventBus")


class SyncPublishInLoopError(PubSubError):
    """Raised when ``bus.publish()`` (the synchronous entry for scripts) is called while an
    event loop is running in this thread; there, ``await bus.publish_async(event)``."""

    def __init__(self) -> None:
        super().__init__(
            "bus.publish() cannot run inside a running event loop: "
            "use 'await bus.publish_async(event)' instead"
        )


class StoreError(PubSubError):
    """A store could not do what was asked; see the subclasses."""


class StoreUnavailableError(StoreError):
    """Raised when a store cannot be opened, read or written (missing, read-only, full,
    corrupt). Nothing already committed is lost."""

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"store {location}: {problem}")


class NotAStoreError(StoreError):
    """Raised when a file is not a pubsub store; the file is left byte-for-byte unchanged."""

    def __init__(self, location: str, problem: str = "is not a pubsub store") -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location} {problem}; pass the path of a pubsub store or a new file")


class SchemaVersionError(StoreError):
    """Raised when a store was written by a newer pubsub (schema ``found`` > ``supported``);
    upgrade pubsub. The file is left unchanged."""

    def __init__(self, location: str, found: int, supported: int) -> None:
        self.location = location
        self.found = found
        self.supported = supported
        super().__init__(
            f"{location} has schema version {found}, this pubsub supports up to {supported}: "
            "upgrade pubsub to open it"
        )


class ChecksumMismatchError(StoreError):
    """Raised when a stored payload no longer matches its checksum (a flipped bit on disk).
    Only that sequence number is affected; the rest of the log stays readable."""

    def __init__(self, seq: int, type_name: str = "?") -> None:
        self.seq = seq
        self.type_name = type_name
        super().__init__(
            f"event seq {seq} ({type_name}) is corrupt: its payload does not match the stored "
            "checksum; run 'pubsub check'"
        )


class GroupLockedError(StoreError):
    """Raised when another live consumer holds the lease of a consumer group; stop it, or
    wait for its lease to expire (``expires_in`` seconds)."""

    def __init__(self, group: str, holder: str, expires_in: float) -> None:
        self.group = group
        self.holder = holder
        self.expires_in = expires_in
        super().__init__(
            f"consumer group {group!r} is held by {holder} (lease expires in {expires_in:.1f}s): "
            "stop that worker or use another --group"
        )


class UnknownStoreSchemeError(StoreError):
    """Raised when no ``pubsub.stores`` plugin registers a store URL's scheme."""

    def __init__(self, url: str, known: Sequence[str]) -> None:
        self.url = url
        self.known = tuple(known)
        super().__init__(
            f"no store for URL {url!r}; known schemes: {', '.join(sorted(self.known)) or 'none'}"
        )


class DeadLetterNotFoundError(PubSubError):
    """Raised when a dead-letter id does not exist (``pubsub dlq list`` shows the ids)."""

    def __init__(self, entry_id: int) -> None:
        self.entry_id = entry_id
        super().__init__(f"no dead letter with id {entry_id}: see 'pubsub dlq list --status all'")


class PluginLoadError(PubSubError):
    """Raised when an entry point, or a handler module given by path, cannot be loaded."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")
