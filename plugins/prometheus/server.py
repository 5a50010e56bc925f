"""Server: a collector's registry over HTTP, at ``/metrics``, on a thread of its own.

prometheus-client's WSGI server answers each scrape on a daemon thread by collecting the
registry; nothing it runs touches the event loop or the store (the worker gauges are a
reading the loop keeps up to date). ``close()`` stops it and frees the port.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import TYPE_CHECKING, Any

from core.errors import PubSubError

from .address import ListenAddress

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsServer", "MetricsServerError"]

_REASONS = {
    errno.EADDRINUSE: "the port is in use (another process listens there)",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


class MetricsServerError(PubSubError):
    """Raised when the metrics endpoint cannot listen at the address it was given (a
    port in use, a host that is not this machine's or does not resolve)."""

    def __init__(self, address: ListenAddress, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(
            f"cannot serve metrics on {address}: {reason}; choose another address "
            "(--metrics-addr HOST:PORT)"
        )


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the host does not resolve ({exc.strerror or exc})"
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


class MetricsServer:
    """``/metrics`` of ``registry``, served from ``address`` until ``close()`` (or the
    end of a ``with`` block). ``address`` is where it listens (the port the system chose
    when it was given port 0)."""

    def __init__(self, registry: CollectorRegistry, address: ListenAddress) -> None:
        from prometheus_client import start_http_server

        try:
            httpd, thread = start_http_server(address.port, address.host, registry=registry)
        except OSError as exc:
            raise MetricsServerError(address, _reason(exc)) from exc
        self._httpd: Any = httpd
        self._thread: threading.Thread = thread
        self.address = address.with_port(int(httpd.server_address[1]))
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving (a scrape under way finishes first) and free the port."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
