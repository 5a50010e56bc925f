"""Connection: opening a NATS connection with bounded waits, and turning what nats-py
raises (or never answers) into one-line store errors.

nats-py left to its defaults retries a dead server for minutes and logs a traceback per
attempt; a ``publish_async`` future can stay pending forever when the server dies. Here
the first connect tries each server twice within ``timeout`` seconds and reports the
last cause in one line; every later wait goes through ``bounded``, which gives up after
``timeout`` seconds with a ``StoreUnavailableError`` that says what did not answer. Once
connected, the client reconnects for as long as the store stays open (each wait is
bounded anyway), so a server restart heals a long-running process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import StoreUnavailableError

from .url import NatsStoreURL

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["bounded", "connect", "describe"]

T = TypeVar("T")


def describe(exc: BaseException) -> str:
    """What went wrong, in a few words (never a traceback)."""
    import nats.errors
    import nats.js.errors

    if isinstance(exc, nats.js.errors.APIError):
        code = f" (error {exc.err_code})" if exc.err_code else ""
        return f"{exc.description or type(exc).__name__}{code}"
    if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError):
        return "no JetStream responded: is the server started with -js, and the stream there?"
    if (
        isinstance(exc, nats.errors.AuthorizationError)
        or "authorization violation" in str(exc).lower()
    ):
        return "authorization violation: check the credentials (PUBSUB_NATS_*)"
    if isinstance(exc, nats.errors.ConnectionClosedError):
        return "the connection is closed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is nats-server running there?)"
    if isinstance(exc, ConnectionResetError):
        return "the server closed the connection (a refusal of the credentials looks like this too)"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    text = str(exc).removeprefix("nats: ")
    return text or type(exc).__name__


async def bounded(aw: Awaitable[T], *, location: str, what: str, timeout: float) -> T:
    """``await aw`` for at most ``timeout`` seconds; a timeout or a NATS error becomes a
    ``StoreUnavailableError`` naming ``what`` was being done."""
    async with bounded_steps(location=location, what=what, timeout=timeout):
        return await aw


@contextlib.asynccontextmanager
async def bounded_steps(
    *, location: str, what: str, timeout: float
) -> AsyncIterator[Callable[[], None]]:
    """A bound on a run of awaits without a task per await: the body fails once
    ``timeout`` seconds pass since the start or since it last called the function this
    gives (each step gets the whole bound). A timeout or a NATS error becomes a
    ``StoreUnavailableError`` naming ``what`` was being done."""
    import nats.errors

    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout) as scope:
            yield lambda: scope.reschedule(loop.time() + timeout)
    except TimeoutError:
        raise StoreUnavailableError(
            location,
            f"{what}: no answer from the NATS server within {timeout:g} s "
            "(is it running and reachable?); nothing after the last acknowledged write is "
            "known to be stored",
        ) from None
    except nats.errors.Error as exc:
        raise StoreUnavailableError(location, f"{what}: {describe(exc)}") from None


async def connect(parsed: NatsStoreURL) -> Client:
    """A connected client, or a one-line ``StoreUnavailableError`` within about
    ``parsed.timeout`` seconds (nothing printed by nats-py)."""
    from nats.aio.client import Client

    location = parsed.display
    last_error: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        # nats-py's default logs a traceback per failed attempt; keep the cause instead
        # (a refusal of the credentials outranks what a retry met after it).
        if not (last_error and "authorization" in describe(last_error[0])):
            last_error[:] = [exc]

    async def quiet() -> None:
        return None

    creds = parsed.credentials
    options: dict[str, Any] = {
        "servers": list(parsed.servers),
        "error_cb": on_error,
        "disconnected_cb": quiet,
        "reconnected_cb": quiet,
        "closed_cb": quiet,
        "connect_timeout": max(1, math.ceil(parsed.timeout / 2)),
        "max_reconnect_attempts": 1,  # the first connect: every server twice, then give up
        "reconnect_time_wait": 0.1,
        "name": f"pubsub {parsed.namespace}",
    }
    if creds.creds_file:
        options["user_credentials"] = creds.creds_file
    if creds.token:
        options["token"] = creds.token
    if creds.user:
        options["user"] = creds.user
        options["password"] = creds.password or ""
    client = Client()
    try:
        await asyncio.wait_for(client.connect(**options), parsed.timeout)
    except (TimeoutError, Exception) as exc:
        await _close_quietly(client)
        cause = last_error[0] if last_error else exc
        hosts = ", ".join(s.removeprefix("nats://") for s in parsed.servers)
        if isinstance(cause, TimeoutError):
            detail = f"no answer within {parsed.timeout:g} s"
        else:
            detail = describe(cause)
        auth = f" (credentials: {creds.kind})" if creds.kind != "none" else ""
        raise StoreUnavailableError(
            location, f"cannot connect to the NATS server at {hosts}: {detail}{auth}"
        ) from None
    # Connected: from now on reconnect for as long as the store is open (every wait is
    # bounded, so a caller never hangs on a server that stays away).
    client.options["max_reconnect_attempts"] = -1
    client.options["reconnect_time_wait"] = 0.5
    return client


async def _close_quietly(client: Client) -> None:
    try:
        await asyncio.wait_for(client.close(), 2)
    except (TimeoutError, Exception):  # closing a half-open client: nothing to report
        return
