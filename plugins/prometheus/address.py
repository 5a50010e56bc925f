"""Address: where the metrics endpoint listens, parsed from ``HOST:PORT``.

``127.0.0.1:9464``, ``[::1]:9464``, ``0.0.0.0:9464``, ``localhost:9464``; a bare
``:9464`` or ``9464`` means the loopback interface, so the endpoint is reachable from
other machines only when a host says so. Port 0 asks the system for a free port.
Parsing does not resolve names: a host that cannot be bound is the server's error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["DEFAULT_HOST", "ListenAddress", "parse_address"]

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A host (a name or an IP address, IPv6 without brackets) and a port."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Whether only this machine can connect (``localhost`` or a loopback IP)."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def with_port(self, port: int) -> ListenAddress:
        return ListenAddress(self.host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str) -> ListenAddress:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` as a ListenAddress; ValueError (one line
    saying what is expected) for anything else."""
    value = text.strip()
    if not value:
        raise ValueError("expected HOST:PORT (such as 127.0.0.1:9464), got an empty value")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:PORT (such as [::1]:9464), got {text!r}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {text!r} is not an IPv6 address") from None
    elif ":" in value:
        host, _, port_text = value.rpartition(":")
        if ":" in host:
            raise ValueError(f"write an IPv6 address in brackets, as [::1]:9464, not {text!r}")
        host = host or DEFAULT_HOST
    else:
        host, port_text = DEFAULT_HOST, value
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"expected a port number after the host in {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} in {text!r} is out of range (0-65535)")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"expected a host name or IP address in {text!r}")
    return ListenAddress(host, port)
