"""The JetStream layout: subject tokens, headers and records, and the private server."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats_servers import NatsServer

from core.codec import encode
from core.errors import ChecksumMismatchError
from core.events import Event
from plugins.nats import naming

_TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(st.text())
def test_token_round_trips_and_uses_only_subject_safe_characters(name: str) -> None:
    encoded = naming.token(name)
    assert encoded
    assert set(encoded) <= _TOKEN_CHARS
    assert naming.untoken(encoded) == name


@given(st.text(), st.text())
def test_token_is_injective(a: str, b: str) -> None:
    if a != b:
        assert naming.token(a) != naming.token(b)


def test_token_of_dotted_names() -> None:
    assert naming.token("orders.OrderPlaced") == "orders_2EOrderPlaced"
    assert naming.token("a_b") == "a_5Fb"
    assert naming.events_subject("app", "orders.OrderPlaced") == (
        "pubsub.app.events.orders_2EOrderPlaced"
    )


@dataclass(frozen=True, slots=True)
class Shipped(Event, type_name="tests.nats.Shipped"):
    order: str


def test_headers_and_record_round_trip() -> None:
    parent = Shipped(order="o-0")
    event = Shipped(order="o-1", correlation_id=parent.id, causation_id=parent.id)
    payload = encode(event)
    headers = naming.event_headers(
        event.id,
        event.event_type,
        event.event_version,
        event.created_at,
        payload,
        event.correlation_id,
        event.causation_id,
        extra={"traceparent": "00-abc-def-01"},
    )
    assert headers[naming.HEADER_MSG_ID] == str(event.id)
    assert naming.user_headers(headers) == {"traceparent": "00-abc-def-01"}
    at = datetime(2026, 12, 4, tzinfo=UTC)
    record = naming.stored_event(7, payload, headers, at)
    assert (record.seq, record.event_id, record.type_name) == (7, event.id, "tests.nats.Shipped")
    assert record.created_at == event.created_at
    assert record.causation_id == parent.id
    assert record.correlation_id == parent.id
    assert record.decode() == event
    assert record.headers == {"traceparent": "00-abc-def-01"}


def test_a_flipped_payload_is_a_checksum_error_naming_its_seq() -> None:
    event = Shipped(order="o-1")
    payload = encode(event)
    headers = naming.event_headers(event.id, event.event_type, 1, event.created_at, payload)
    with pytest.raises(ChecksumMismatchError) as info:
        naming.stored_event(3, payload.replace(b"o-1", b"o-2"), headers, event.created_at)
    assert info.value.seq == 3
    assert info.value.type_name == "tests.nats.Shipped"


def test_private_server_runs_jetstream_on_its_own_port(nats_server: NatsServer) -> None:
    assert nats_server.port != 4222
    with socket.create_connection(("127.0.0.1", nats_server.port), timeout=5) as conn:
        line = conn.makefile("rb").readline()
    assert line.startswith(b"INFO ")
    info = json.loads(line[5:])
    assert info["jetstream"] is True
    assert info["port"] == nats_server.port
