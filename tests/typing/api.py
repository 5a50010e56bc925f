"""Typed usage examples of the core API, checked by ``mypy --strict`` and never run.

tests/core/test_typing.py type-checks this file (it must pass) and api_errors.py (each
line marked ``# E: <code>`` must fail with that code, and no other line may).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, assert_type

from core import (
    BreakerPolicy,
    Event,
    EventBus,
    EventStore,
    Handler,
    HandlerContext,
    HandlerOutcome,
    InMemoryMetrics,
    MemoryEventStore,
    MetricsCollector,
    PublishResult,
    RetryPolicy,
    Router,
    Subscription,
    current_dispatch,
)


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="typing.api.OrderPlaced"):
    order_id: str
    total: int = 0


@dataclass(frozen=True, slots=True)
class ExpressOrderPlaced(OrderPlaced, type_name="typing.api.ExpressOrderPlaced"):
    courier: str = "fast"


router = Router(name="orders")


@router.subscribe(OrderPlaced, retry=RetryPolicy(max_attempts=3), timeout=5.0)
async def reserve_stock(event: OrderPlaced) -> None:
    ctx = current_dispatch()
    attempt: int = ctx.attempt if ctx is not None else 1
    print(event.order_id, attempt)


@router.subscribe(ExpressOrderPlaced, name="audit")
def audit(event: OrderPlaced) -> None:
    """A handler of a base class fits a subscription to a subclass."""
    print(event.total)


async def everything(event: Event) -> None:
    print(event.event_type)


sub: Subscription[OrderPlaced, None] = router.add(OrderPlaced, everything, name="everything")
handler: Handler[ExpressOrderPlaced, None] = reserve_stock


async def quote(event: OrderPlaced) -> int:
    return event.total * 2


def quote_sync(event: OrderPlaced) -> str:
    return event.order_id


async def ship(event: OrderPlaced, ctx: HandlerContext[OrderPlaced]) -> bool:
    await ctx.publish(ExpressOrderPlaced(event.order_id))
    return ctx.redelivery


# R is inferred from what the handler returns, async or sync, with a context or not.
assert_type(router.add(OrderPlaced, quote), Subscription[OrderPlaced, int])
assert_type(router.add(OrderPlaced, quote_sync, name="quote_sync"), Subscription[OrderPlaced, str])
assert_type(router.add(OrderPlaced, ship), Subscription[OrderPlaced, bool])
assert_type(
    router.subscribe(OrderPlaced, name="q2")(quote), Callable[[OrderPlaced], Awaitable[int]]
)

CallNext = Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]]


async def timing(event: Event, call_next: CallNext) -> list[HandlerOutcome[Any]]:
    return await call_next(event)


async def main() -> None:
    store: EventStore = MemoryEventStore()
    metrics: MetricsCollector = InMemoryMetrics()
    async with EventBus(store, metrics=metrics, raise_on_error=True) as bus:
        bus.include(router)
        bus.add_middleware(timing)

        @bus.subscribe(OrderPlaced, breaker=BreakerPolicy(failure_threshold=3))
        async def notify(event: OrderPlaced) -> None:
            print(event.order_id)

        result: PublishResult = await bus.publish_async(OrderPlaced("o-1", 10))
        seq: int | None = result.seq
        for outcome in result:
            print(outcome.handler, outcome.status.value, outcome.attempts, seq)
        snapshot = bus.metrics.snapshot()
        print(snapshot["handlers"])
