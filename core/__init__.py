"""pubsub core: typed events, the asynchronous bus, policies and store protocols.

Only re-exports live here; each name is defined in the module of its concept.
"""

from .bus import BusStatistics as BusStatistics
from .bus import EventBus as EventBus
from .clock import Clock as Clock
from .clock import RandomSource as RandomSource
from .clock import SystemClock as SystemClock
from .clock import ThreadAwareClock as ThreadAwareClock
from .consumer import Consumer as Consumer
from .consumer import ConsumerOptions as ConsumerOptions
from .consumer import OwnsDelivery as OwnsDelivery
from .dispatch import Middleware as Middleware
from .entrypoints import open_store as open_store
from .errors import BreakerOpenError as BreakerOpenError
from .errors import BusClosedError as BusClosedError
from .errors import ChecksumMismatchError as ChecksumMismatchError
from .errors import DeadLetterNotFoundError as DeadLetterNotFoundError
from .errors import DispatchError as DispatchError
from .errors import EventDecodeError as EventDecodeError
from .errors import EventDefinitionError as EventDefinitionError
from .errors import EventEncodeError as EventEncodeError
from .errors import EventError as EventError
from .errors import GroupLockedError as GroupLockedError
from .errors import NotAStoreError as NotAStoreError
from .errors import PluginLoadError as PluginLoadError
from .errors import PubSubError as PubSubError
from .errors import SchemaVersionError as SchemaVersionError
from .errors import StoreError as StoreError
from .errors import StoreUnavailableError as StoreUnavailableError
from .errors import SubscriptionError as SubscriptionError
from .errors import SyncPublishInLoopError as SyncPublishInLoopError
from .errors import UnknownEventTypeError as UnknownEventTypeError
from .errors import UnknownStoreSchemeError as UnknownStoreSchemeError
from .events import DispatchContext as DispatchContext
from .events import Event as Event
from .events import EventRegistry as EventRegistry
from .events import Upcaster as Upcaster
from .events import current_dispatch as current_dispatch
from .events import default_registry as default_registry
from .hooks import PublishDetails as PublishDetails
from .hooks import PublishHook as PublishHook
from .instrument import AttemptOutcome as AttemptOutcome
from .instrument import Delivery as Delivery
from .instrument import DeliveryScope as DeliveryScope
from .instrument import HandlerSpan as HandlerSpan
from .instrument import Instrumentation as Instrumentation
from .instrument import PublishSpan as PublishSpan
from .memory import MemoryDeadLetterQueue as MemoryDeadLetterQueue
from .memory import MemoryEventStore as MemoryEventStore
from .metrics import EventTypeRecorder as EventTypeRecorder
from .metrics import HandlerRecorder as HandlerRecorder
from .metrics import InMemoryMetrics as InMemoryMetrics
from .metrics import MetricsCollector as MetricsCollector
from .policies import BreakerPolicy as BreakerPolicy
from .policies import BreakerState as BreakerState
from .policies import CircuitBreaker as CircuitBreaker
from .policies import HandlerPolicy as HandlerPolicy
from .policies import RetryPolicy as RetryPolicy
from .projections import Projection as Projection
from .projections import RestoreReport as RestoreReport
from .replay import HandlerTally as HandlerTally
from .replay import RedriveResult as RedriveResult
from .replay import ReplayReport as ReplayReport
from .results import HandlerOutcome as HandlerOutcome
from .results import OutcomeStatus as OutcomeStatus
from .results import PublishResult as PublishResult
from .routing import Handler as Handler
from .routing import HandlerContext as HandlerContext
from .routing import Router as Router
from .routing import Subscription as Subscription
from .store import Appender as Appender
from .store import AppendResult as AppendResult
from .store import AtomicAppend as AtomicAppend
from .store import DeadLetter as DeadLetter
from .store import DeadLetterQueue as DeadLetterQueue
from .store import DeadLetterReason as DeadLetterReason
from .store import DeadLetterStatus as DeadLetterStatus
from .store import EventStore as EventStore
from .store import GroupInfo as GroupInfo
from .store import Lease as Lease
from .store import SelfCheckingStore as SelfCheckingStore
from .store import Snapshot as Snapshot
from .store import StoreCapability as StoreCapability
from .store import StoreCheck as StoreCheck
from .store import StoredEvent as StoredEvent
from .store import store_capabilities as store_capabilities

__all__ = [
    "AppendResult",
    "Appender",
    "AtomicAppend",
    "AttemptOutcome",
    "BreakerOpenError",
    "BreakerPolicy",
    "BreakerState",
    "BusClosedError",
    "BusStatistics",
    "ChecksumMismatchError",
    "CircuitBreaker",
    "Clock",
    "Consumer",
    "ConsumerOptions",
    "DeadLetter",
    "DeadLetterNotFoundError",
    "DeadLetterQueue",
    "DeadLetterReason",
    "DeadLetterStatus",
    "Delivery",
    "DeliveryScope",
    "DispatchContext",
    "DispatchError",
    "Event",
    "EventBus",
    "EventDecodeError",
    "EventDefinitionError",
    "EventEncodeError",
    "EventError",
    "EventRegistry",
    "EventStore",
    "EventTypeRecorder",
    "GroupInfo",
    "GroupLockedError",
    "Handler",
    "HandlerContext",
    "HandlerOutcome",
    "HandlerPolicy",
    "HandlerRecorder",
    "HandlerSpan",
    "HandlerTally",
    "InMemoryMetrics",
    "Instrumentation",
    "Lease",
    "MemoryDeadLetterQueue",
    "MemoryEventStore",
    "MetricsCollector",
    "Middleware",
    "NotAStoreError",
    "OutcomeStatus",
    "OwnsDelivery",
    "PluginLoadError",
    "Projection",
    "PubSubError",
    "PublishDetails",
    "PublishHook",
    "PublishResult",
    "PublishSpan",
    "RandomSource",
    "RedriveResult",
    "ReplayReport",
    "RestoreReport",
    "RetryPolicy",
    "Router",
    "SchemaVersionError",
    "SelfCheckingStore",
    "Snapshot",
    "StoreCapability",
    "StoreCheck",
    "StoreError",
    "StoreUnavailableError",
    "StoredEvent",
    "Subscription",
    "SubscriptionError",
    "SyncPublishInLoopError",
    "SystemClock",
    "ThreadAwareClock",
    "UnknownEventTypeError",
    "UnknownStoreSchemeError",
    "Upcaster",
    "current_dispatch",
    "default_registry",
    "open_store",
    "store_capabilities",
]
