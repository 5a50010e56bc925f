"""Library logging: every dead letter is one record on ``pubsub.dlq`` carrying the
event's id and type, the handler, the group and the seq; live failures are warnings,
replay's and a failing middleware's are info; a failing middleware or hook warns once
with the event and group it failed on, whatever the number of events."""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core import Event, EventBus, EventRegistry, HandlerOutcome, MemoryEventStore
from core.testing import FakeClock

DLQ = "pubsub.dlq"


@dataclass(frozen=True, slots=True)
class Parcel(Event, type_name="tests.core.logging.Parcel"):
    ref: str


async def refuse(event: Parcel) -> None:
    raise ValueError(f"no room for {event.ref}")


async def accept(event: Parcel) -> None:
    pass


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


class TestDeadLetterRecords:
    async def test_a_live_failure_is_a_warning_with_its_facts(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A handler that gives up on a stored event: one warning naming the handler and
        the event, with event_id, event_type, handler, group and seq as fields."""
        store = MemoryEventStore()
        caplog.set_level(logging.DEBUG, logger="pubsub")
        async with EventBus(store, group="billing", clock=FakeClock()) as bus:
            bus.subscribe(Parcel, name="shelf")(refuse)
            event = Parcel("p-1")
            await bus.publish_async(event)
        (record,) = records(caplog, DLQ)
        assert record.levelno == logging.WARNING
        fields: dict[str, Any] = record.__dict__
        assert fields["event_id"] == event.id
        assert fields["event_type"] == "tests.core.logging.Parcel"
        assert fields["handler"] == "shelf"
        assert fields["group"] == "billing"
        assert fields["seq"] == 1
        assert fields["source"] == "live"
        message = record.getMessage()
        assert "shelf gave up on tests.core.logging.Parcel seq 1" in message
        assert "ValueError: no room for p-1" in message
        assert record.exc_info is None  # the traceback is in the entry, not the log

    async def test_one_record_per_entry_and_none_for_success(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Three failing events make three records; a handler that succeeds logs nothing."""
        caplog.set_level(logging.DEBUG, logger="pubsub")
        async with EventBus(clock=FakeClock()) as bus:
            bus.subscribe(Parcel, name="shelf")(refuse)
            bus.subscribe(Parcel, name="ok")(accept)
            events = [Parcel(f"p-{n}") for n in range(3)]
            for event in events:
                await bus.publish_async(event)
        logged = records(caplog, DLQ)
        assert [r.__dict__["event_id"] for r in logged] == [e.id for e in events]
        assert {r.__dict__["handler"] for r in logged} == {"shelf"}
        assert all(r.__dict__["group"] is None for r in logged)  # no store, no group

    async def test_replay_failures_are_info(self, caplog: pytest.LogCaptureFixture) -> None:
        """Replay counts its dead letters in its report: their records are info."""
        store = MemoryEventStore()
        async with EventBus(store, consume=False) as producer:
            await producer.publish_async(Parcel("p-1"))
        caplog.set_level(logging.DEBUG, logger="pubsub")
        async with EventBus(store, consume=False, clock=FakeClock()) as bus:
            bus.subscribe(Parcel, name="shelf")(refuse)
            report = await bus.replay(store.read())
        assert report.dead_letters == 1
        (record,) = records(caplog, DLQ)
        assert record.levelno == logging.INFO
        assert record.__dict__["source"] == "replay"

    async def test_an_undecodable_record_is_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A stored record of a type the consumer does not know: a warning for the
        ``<decode>`` handler with the record's id, type and seq."""
        store = MemoryEventStore()
        event = Parcel("p-1")
        async with EventBus(store, consume=False) as producer:
            await producer.publish_async(event)
        caplog.set_level(logging.DEBUG, logger="pubsub")
        async with EventBus(store, group="g", registry=EventRegistry()) as bus:
            bus.subscribe(Event, name="all")(accept)
        (record,) = records(caplog, DLQ)
        assert record.levelno == logging.WARNING
        fields: dict[str, Any] = record.__dict__
        assert (fields["handler"], fields["event_id"], fields["seq"]) == ("<decode>", event.id, 1)
        assert fields["event_type"] == "tests.core.logging.Parcel"
        assert fields["group"] == "g"


class TestObserverFailures:
    async def test_a_failing_middleware_warns_once_with_the_event(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Over five events a raising middleware is one warning (carrying the first
        event's id and type and the group); its per-event dead letters are info."""

        async def exploding(event: Event, call_next: Any) -> list[HandlerOutcome[Any]]:
            raise RuntimeError("middleware broke")

        caplog.set_level(logging.INFO, logger="pubsub")
        store = MemoryEventStore()
        async with EventBus(store, group="g", clock=FakeClock()) as bus:
            bus.add_middleware(exploding)
            bus.subscribe(Parcel, name="shelf")(accept)
            events = [Parcel(f"p-{n}") for n in range(5)]
            for event in events:
                await bus.publish_async(event)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        (warning,) = warnings
        assert warning.name == "pubsub"
        assert "middleware" in warning.getMessage()
        assert warning.__dict__["event_id"] == events[0].id
        assert warning.__dict__["event_type"] == "tests.core.logging.Parcel"
        assert warning.__dict__["group"] == "g"
        assert warning.exc_info is None
        letters = records(caplog, DLQ)
        assert [r.levelno for r in letters] == [logging.INFO] * 5
        assert {r.__dict__["handler"] for r in letters} == {"<middleware>"}

    async def test_a_failing_hook_warns_once_with_the_event(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A hook that raises is removed after one warning naming the event it failed on."""

        def hook(details: Any) -> None:
            raise KeyError("hook broke")

        caplog.set_level(logging.DEBUG, logger="pubsub")
        async with EventBus(clock=FakeClock()) as bus:
            bus.on_publish(hook)
            bus.subscribe(Parcel, name="ok")(accept)
            events = [Parcel(f"p-{n}") for n in range(3)]
            for event in events:
                await bus.publish_async(event)
        (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "on_publish hook" in warning.getMessage()
        assert warning.__dict__["event_id"] == events[0].id
        # The traceback is a separate debug record, not on the warning.
        (debug,) = [r for r in caplog.records if r.levelno == logging.DEBUG]
        assert debug.exc_info is not None
        assert debug.exc_info[1] is warning.__dict__["pubsub_error"]


class TestNoPrints:
    @pytest.mark.parametrize("package", ["core", "plugins"])
    def test_the_library_never_prints(self, package: str) -> None:
        """core and plugins report through logging: no print() call, no write to
        sys.stdout or sys.stderr anywhere in their source."""
        root = Path(__file__).resolve().parents[2] / package
        found = []
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                func = node.func if isinstance(node, ast.Call) else None
                if isinstance(func, ast.Name) and func.id == "print":
                    found.append(f"{path.name}:{node.lineno} print()")
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in ("stdout", "stderr")
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"
                ):
                    found.append(f"{path.name}:{node.lineno} sys.{node.attr}")
        assert found == []
