"""Event ids: version-7 UUIDs, ordered by creation millisecond, unique."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest

from core import Event
from core.events import new_event_id


@dataclass(frozen=True, slots=True)
class Made(Event, type_name="tests.core.event_ids.Made"):
    pass


class TestEventIds:
    def test_default_id_is_a_version_7_uuid(self) -> None:
        """An event's default id is an RFC 9562 version-7 UUID."""
        event_id = Made().id
        assert event_id.version == 7
        assert event_id.variant == "specified in RFC 4122"

    def test_ids_carry_the_creation_millisecond(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The first 48 bits are the Unix time in milliseconds, so ids made in a later
        millisecond sort after earlier ones whatever their random bits."""
        now = [1_700_000_000_123_456_789]
        monkeypatch.setattr(time, "time_ns", lambda: now[0])
        earlier = [new_event_id() for _ in range(50)]
        now[0] += 1_000_000  # one millisecond later
        later = [new_event_id() for _ in range(50)]
        assert {i.int >> 80 for i in earlier} == {1_700_000_000_123}
        assert max(earlier) < min(later)

    def test_ids_are_unique(self) -> None:
        """Many ids made in the same few milliseconds never collide."""
        ids = {new_event_id() for _ in range(20_000)}
        assert len(ids) == 20_000

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_forked_child_draws_other_ids(self) -> None:
        """A forked child does not repeat the parent's random bits."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its next id's random bits and leave
            os.write(write, str(new_event_id().int & ((1 << 62) - 1)).encode())
            os._exit(0)
        os.close(write)
        parent_bits = new_event_id().int & ((1 << 62) - 1)
        child_bits = int(os.read(read, 100).decode())
        os.close(read)
        os.waitpid(pid, 0)
        assert child_bits != parent_bits
