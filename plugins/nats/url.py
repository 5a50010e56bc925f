"""URL: what a ``nats://`` store URL says, where its credentials come from, and the URL
as it may be shown (never with a secret in it).

``nats://host:4222[,host2:4222]?ns=NAME[&option=value...]``:

- ``ns`` (required): the namespace, ``[A-Za-z0-9_-]{1,64}``; every stream and bucket
  of the store is named after it, so namespaces never see each other's records;
- ``dup_window`` (seconds, default 300): the events stream's duplicate window, how long
  the server remembers an event id to answer a re-publish as a duplicate;
- ``retry_horizon`` (seconds, default 120): how long after a failed append a publisher
  may retry it; ``pubsub check`` warns when the duplicate window is shorter;
- ``replicas`` (1 to 5, default 1): copies of every stream in a cluster;
- ``compression`` (``none`` or ``s2``; ``s2`` needs a 2.10+ server);
- ``timeout`` (seconds, default 5): the bound of every wait on the server (connect,
  an acknowledgement, an API call);
- ``update`` (``1``): let the store update an existing stream whose configuration
  differs from the URL's (without it, a difference is refused);
- ``mode`` (``rwc``, the default: create the namespace's streams when missing; ``rw``:
  an existing namespace only, what the read commands use: they never create one).

The consumer's options (``ack_wait``, ``max_ack_pending``, ``max_deliver``,
``max_in_flight``, ``ordered``, ``update_consumer``) pass through unread and stay in
``display`` (the store's ``url``), where ``plugins.nats.consumer`` reads and checks them.

Credentials: a creds file from ``PUBSUB_NATS_CREDS``, a user and password from
``PUBSUB_NATS_USER``/``PUBSUB_NATS_PASSWORD`` (or ``user:password@`` in the URL), a
token from ``PUBSUB_NATS_TOKEN``. ``display`` is the URL without any of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from core.errors import StoreUnavailableError

from .naming import NAMESPACE_PATTERN

__all__ = ["CONSUMER_OPTIONS", "Credentials", "NatsStoreURL", "parse_url", "redact"]

CREDS_ENV = "PUBSUB_NATS_CREDS"
USER_ENV = "PUBSUB_NATS_USER"
PASSWORD_ENV = "PUBSUB_NATS_PASSWORD"
TOKEN_ENV = "PUBSUB_NATS_TOKEN"

_OPTIONS = (
    "compression",
    "dup_window",
    "mode",
    "ns",
    "replicas",
    "retry_horizon",
    "timeout",
    "update",
)
# Read by plugins.nats.consumer from the store's url: kept, never interpreted here.
CONSUMER_OPTIONS = (
    "ack_wait",
    "max_ack_pending",
    "max_deliver",
    "max_in_flight",
    "ordered",
    "update_consumer",
)
_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """How the store authenticates; ``repr`` never shows a secret."""

    creds_file: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """What is used, for messages: never the secret itself."""
        if self.creds_file:
            return "creds file"
        if self.token:
            return "token"
        if self.user:
            return "user and password"
        return "none"


@dataclass(frozen=True, slots=True)
class NatsStoreURL:
    """A parsed ``nats://`` store URL."""

    servers: tuple[str, ...]
    namespace: str
    dup_window: float = 300.0
    retry_horizon: float = 120.0
    replicas: int = 1
    compression: str = "none"
    timeout: float = 5.0
    update: bool = False
    create: bool = True
    credentials: Credentials = field(default_factory=Credentials)
    consumer_options: tuple[tuple[str, str], ...] = ()

    @property
    def display(self) -> str:
        """The URL to show: hosts and options, no credentials (nor ``mode``: how the
        store was opened is not where it lives)."""
        hosts = ",".join(s.removeprefix("nats://") for s in self.servers)
        options = [f"ns={self.namespace}"]
        defaults = NatsStoreURL(self.servers, self.namespace)
        for name in ("dup_window", "retry_horizon", "replicas", "compression", "timeout"):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                options.append(f"{name}={_number(value)}")
        if self.update:
            options.append("update=1")
        options.extend(f"{name}={value}" for name, value in self.consumer_options)
        return f"nats://{hosts}?{'&'.join(options)}"


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` removed (for errors about a URL that could not
    be parsed: nothing secret is ever echoed)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    hosts, q, query = rest.partition("?")
    hosts = ",".join(h.rpartition("@")[2] for h in hosts.split(","))
    return f"{scheme}://{hosts}{q}{query}"


def _seconds(shown: str, options: Mapping[str, str], name: str, default: float) -> float:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 365 * _DAY:
        raise StoreUnavailableError(
            shown, f"option {name}={text!r} must be a number of seconds above 0, at most a year"
        )
    return value


def parse_url(url: str, environ: Mapping[str, str] | None = None) -> NatsStoreURL:
    """The servers, namespace, options and credentials of a ``nats://`` URL; a one-line
    ``StoreUnavailableError`` (showing the URL without credentials) when it is wrong."""
    env = os.environ if environ is None else environ
    shown = redact(url)
    scheme, sep, rest = url.partition("://")
    if scheme != "nats" or not sep:
        raise StoreUnavailableError(shown, "not a nats URL; use nats://host:4222?ns=NAME")
    hosts_text, _, query = rest.partition("?")
    user = password = None
    servers: list[str] = []
    for host in hosts_text.split(","):
        info, at, hostport = host.rpartition("@")
        if at:
            name, colon, secret = info.partition(":")
            user, password = unquote(name), unquote(secret) if colon else None
        hostport = hostport.rstrip("/")
        if not hostport:
            raise StoreUnavailableError(shown, "no server; use nats://host:4222?ns=NAME")
        if ":" not in hostport:
            hostport += ":4222"
        servers.append(f"nats://{hostport}")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS) - set(CONSUMER_OPTIONS))
    if unknown:
        raise StoreUnavailableError(
            shown,
            f"unknown option {unknown[0]!r}; known options: "
            f"{', '.join(sorted(_OPTIONS + CONSUMER_OPTIONS))}",
        )
    namespace = options.get("ns")
    if namespace is None:
        raise StoreUnavailableError(shown, "no namespace: add ?ns=NAME (letters, digits, _ and -)")
    if not NAMESPACE_PATTERN.fullmatch(namespace):
        raise StoreUnavailableError(
            shown, f"namespace {namespace!r} must be 1 to 64 letters, digits, '_' or '-'"
        )
    replicas_text = options.get("replicas", "1")
    if not replicas_text.isdigit() or not 1 <= int(replicas_text) <= 5:
        raise StoreUnavailableError(shown, f"option replicas={replicas_text!r} must be 1 to 5")
    compression = options.get("compression", "none")
    if compression not in ("none", "s2"):
        raise StoreUnavailableError(shown, f"option compression={compression!r} must be none or s2")
    mode = options.get("mode", "rwc")
    if mode not in ("rw", "rwc"):
        raise StoreUnavailableError(
            shown, f"option mode={mode!r} must be rw (an existing namespace only) or rwc"
        )
    update = options.get("update", "0")
    if update not in ("0", "1"):
        raise StoreUnavailableError(shown, f"option update={update!r} must be 0 or 1")
    return NatsStoreURL(
        servers=tuple(servers),
        namespace=namespace,
        dup_window=_seconds(shown, options, "dup_window", 300.0),
        retry_horizon=_seconds(shown, options, "retry_horizon", 120.0),
        replicas=int(replicas_text),
        compression=compression,
        timeout=_seconds(shown, options, "timeout", 5.0),
        update=update == "1",
        create=mode == "rwc",
        credentials=_credentials(env, user, password),
        consumer_options=tuple(
            (name, value)
            for name, value in parse_qsl(query, keep_blank_values=True)
            if name in CONSUMER_OPTIONS
        ),
    )


def _credentials(env: Mapping[str, str], user: str | None, password: str | None) -> Credentials:
    creds = env.get(CREDS_ENV) or None
    token = env.get(TOKEN_ENV) or None
    if user is None:
        user = env.get(USER_ENV) or None
        password = env.get(PASSWORD_ENV) or None
    return Credentials(creds_file=creds, user=user, password=password, token=token)
