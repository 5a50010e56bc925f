"""Layout: creating (or binding to) the streams and the bucket of a namespace, and
proving that the server applied the configuration asked for.

A 2.9 server silently ignores stream fields it does not know (compression, for one),
and re-binding an existing stream keeps its old configuration. So a stream created here
is read back and compared field by field with the request: a field the server did not
apply is refused with a message naming it and the server's version (the stream just
created, still empty, is deleted again). An existing stream whose configuration differs
from the URL's is refused too, unless the URL says ``update=1``; then it is updated and
read back the same way. Never relying on silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import StoreUnavailableError

from . import naming
from .connection import bounded
from .url import NatsStoreURL

if TYPE_CHECKING:
    from nats.js.api import StreamConfig, StreamInfo
    from nats.js.client import JetStreamContext

__all__ = ["Applied", "dlq_bucket", "ensure_stream", "events_config", "snapshots_config"]

# The first server version that knows each optional feature the URL can ask for.
FEATURE_VERSIONS = {"compression": (2, 10, 0)}


@dataclass(frozen=True, slots=True)
class Applied:
    """What the server confirmed for one stream (as it echoed the configuration)."""

    stream: str
    created: bool
    duplicate_window: float
    replicas: int
    compression: str
    storage: str


def dlq_bucket(namespace: str) -> str:
    return f"PUBSUB_{namespace}_DLQ"


def events_config(parsed: NatsStoreURL) -> StreamConfig:
    from nats.js.api import (
        DiscardPolicy,
        RetentionPolicy,
        StorageType,
        StoreCompression,
        StreamConfig,
    )

    ns = parsed.namespace
    return StreamConfig(
        name=naming.events_stream(ns),
        description=f"pubsub events of namespace {ns}",
        subjects=[naming.events_subjects(ns)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=parsed.replicas,
        duplicate_window=parsed.dup_window,
        compression=StoreCompression.S2 if parsed.compression == "s2" else None,
    )


def snapshots_config(parsed: NatsStoreURL) -> StreamConfig:
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    ns = parsed.namespace
    return StreamConfig(
        name=naming.snapshots_stream(ns),
        description=f"pubsub projection snapshots of namespace {ns}",
        subjects=[naming.snapshots_subjects(ns)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=parsed.replicas,
        duplicate_window=120.0,
    )


def _value(value: Any) -> Any:
    return getattr(value, "value", value)


def _compression(config: StreamConfig) -> str:
    return str(_value(config.compression) or "none")


def _differences(wanted: StreamConfig, got: StreamConfig) -> list[str]:
    """``field=got`` (wanted ...) for every field we set that the server shows otherwise."""
    out: list[str] = []
    pairs: list[tuple[str, Any, Any]] = [
        ("subjects", sorted(wanted.subjects or []), sorted(got.subjects or [])),
        ("retention", _value(wanted.retention), _value(got.retention)),
        ("storage", _value(wanted.storage), _value(got.storage)),
        ("replicas", wanted.num_replicas or 1, got.num_replicas or 1),
        ("duplicate_window", round(wanted.duplicate_window, 3), round(got.duplicate_window, 3)),
        ("compression", _compression(wanted), _compression(got)),
    ]
    for name, want, have in pairs:
        if want != have:
            out.append(f"{name}={_show(have)} (asked {_show(want)})")
    return out


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}s"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _applied(info: StreamInfo, created: bool) -> Applied:
    config = info.config
    return Applied(
        stream=str(config.name),
        created=created,
        duplicate_window=float(config.duplicate_window),
        replicas=int(config.num_replicas or 1),
        compression=_compression(config),
        storage=str(_value(config.storage)),
    )


async def _stream_info(js: JetStreamContext, name: str) -> StreamInfo | None:
    """The stream's info, None when it does not exist."""
    import nats.js.errors

    try:
        return await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return None


async def ensure_stream(
    js: JetStreamContext,
    wanted: StreamConfig,
    parsed: NatsStoreURL,
    server_version: tuple[int, int, int],
) -> Applied:
    """Bind to the stream ``wanted`` names, creating it when missing, and prove that the
    server applied ``wanted`` (see the module's docstring)."""
    location = parsed.display
    name = str(wanted.name)
    shown = ".".join(map(str, server_version))
    for feature, since in FEATURE_VERSIONS.items():
        if feature == "compression" and _compression(wanted) != "none" and server_version < since:
            raise StoreUnavailableError(
                location,
                f"the NATS server is {shown}: {feature}={_compression(wanted)} needs "
                f"{'.'.join(map(str, since))} or newer (2.9 ignores it silently); "
                "remove the option or upgrade the server",
            )

    def call(aw: Any, what: str) -> Any:
        return bounded(aw, location=location, what=what, timeout=parsed.timeout)

    info = await call(_stream_info(js, name), f"reading stream {name}")
    if info is None and not parsed.create:
        raise StoreUnavailableError(
            location,
            f"namespace {parsed.namespace!r} does not exist on this server (no stream "
            f"{name}): publish to it or run a worker to create it",
        )
    if info is None:
        info = await call(js.add_stream(wanted), f"creating stream {name}")
        problems = _differences(wanted, info.config)
        if problems:
            try:
                await call(js.delete_stream(name), f"deleting stream {name}")
            finally:
                raise StoreUnavailableError(
                    location,
                    f"the NATS server ({shown}) did not apply to stream {name}: "
                    f"{'; '.join(problems)}; it was removed again. Change the URL's options "
                    "or use a server that supports them",
                )
        return _applied(info, created=True)

    problems = _differences(wanted, info.config)
    if not problems:
        return _applied(info, created=False)
    if not parsed.update:
        raise StoreUnavailableError(
            location,
            f"stream {name} exists with a different configuration: {'; '.join(problems)}; "
            "make the URL match, or add &update=1 to change the stream",
        )
    info = await call(js.update_stream(wanted), f"updating stream {name}")
    problems = _differences(wanted, info.config)
    if problems:
        raise StoreUnavailableError(
            location,
            f"the NATS server ({shown}) did not apply the update of stream {name}: "
            f"{'; '.join(problems)}",
        )
    return _applied(info, created=False)
