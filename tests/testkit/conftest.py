"""The test kit's tests run users' test files through the plugin with ``pytester``."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

HANDLERS = """
from dataclasses import dataclass

from core import Event, HandlerContext, RetryPolicy, Router

router = Router(name="shop")


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="kit.order_placed"):
    order_id: str
    total: int = 0


@dataclass(frozen=True, slots=True)
class OrderShipped(Event, type_name="kit.order_shipped"):
    order_id: str


@router.subscribe(OrderPlaced, name="shop.ship")
async def ship(event: OrderPlaced, ctx: HandlerContext[OrderPlaced]) -> str:
    await ctx.publish(OrderShipped(event.order_id))
    return f"shipped {event.order_id}"


@router.subscribe(OrderShipped, name="shop.notify")
def notify(event: OrderShipped) -> str:
    return f"told {event.order_id}"
"""


class UserProject:
    """A user's project in pytester's folder: an ini in the chosen asyncio mode, a
    handlers module, and test files run in-process through the plugin."""

    def __init__(self, pytester: pytest.Pytester, mode: str = "strict") -> None:
        self.pytester = pytester
        pytester.makeini(
            "[pytest]\n"
            f"asyncio_mode = {mode}\n"
            "asyncio_default_fixture_loop_scope = function\n"
            "filterwarnings = error\n"
        )
        pytester.makepyfile(handlers=HANDLERS)

    def tests(self, source: str) -> None:
        self.pytester.makepyfile(test_user=textwrap.dedent(source))

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", *args)


@pytest.fixture
def project(pytester: pytest.Pytester) -> UserProject:
    return UserProject(pytester)
