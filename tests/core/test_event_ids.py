"""Event ids: version-7 UUIDs, strictly ascending within a process, unique everywhere."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import pytest

from core import Event, events
from core.events import new_event_id

NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Made(Event, type_name="tests.core.event_ids.Made"):
    n: int = 0


class FakeNs:
    """A time_ns() that returns what the test sets."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeNs:
    """The clock ids and creation times read, set by hand (and no id made before)."""
    fake = FakeNs(1_700_000_000_123_456_789)
    monkeypatch.setattr(events, "_time_ns", fake)
    monkeypatch.setattr(events, "_last_key", 0)
    return fake


def ms_of(event_id: UUID) -> int:
    return event_id.int >> 80


def from_child(make: Callable[[], list[int]]) -> Iterator[list[int]]:
    """Run ``make`` in a forked child and yield what it returned (as integers)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        try:
            os.write(write, ",".join(map(str, make())).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    yield [int(x) for x in b"".join(chunks).decode().split(",") if x]


class TestLayout:
    def test_default_id_is_a_version_7_uuid(self) -> None:
        """An event's default id is an RFC 9562 version-7 UUID."""
        event_id = Made().id
        assert event_id.version == 7
        assert event_id.variant == "specified in RFC 4122"

    def test_ids_carry_the_creation_millisecond(self, clock: FakeNs) -> None:
        """The first 48 bits are the Unix time in milliseconds, so ids made in a later
        millisecond sort after earlier ones whatever their random bits."""
        earlier = [new_event_id() for _ in range(50)]
        clock.now += NS_PER_MS
        later = [new_event_id() for _ in range(50)]
        assert {ms_of(i) for i in earlier} == {1_700_000_000_123}
        assert {ms_of(i) for i in later} == {1_700_000_000_124}
        assert max(earlier) < min(later)

    def test_the_sub_millisecond_fraction_orders_ids(self, clock: FakeNs) -> None:
        """Within one millisecond, an id made from a later clock reading sorts later
        (the fraction of the millisecond follows the milliseconds, RFC 9562 method 3)."""
        made = []
        for _ in range(200):
            clock.now += 997  # about a microsecond, never crossing a millisecond here
            made.append(Made().id)
        assert len({ms_of(i) for i in made}) == 1
        assert made == sorted(made)
        assert len(set(made)) == 200

    def test_a_clock_stepped_back_never_reorders_ids(self, clock: FakeNs) -> None:
        """Ids keep ascending when the clock goes back or stands still, while
        created_at reports the clock's real reading."""
        first = Made()
        clock.now -= 3_600 * 10**9  # an hour back
        back = Made()
        same = Made()  # the clock has not moved since
        assert first.id < back.id < same.id
        assert back.created_at == datetime.fromtimestamp(clock.now // 10**9, UTC).replace(
            microsecond=clock.now // 1000 % 10**6
        )
        assert first.created_at > back.created_at


class TestOrderAndUniqueness:
    def test_a_million_ids_are_unique_and_strictly_ascending(self) -> None:
        """1,000,000 ids made one after another in this process are all distinct and
        each sorts after the one before."""
        ids = [new_event_id().int for _ in range(1_000_000)]
        assert all(a < b for a, b in itertools.pairwise(ids))

    def test_event_ids_follow_construction_order_whenever_read(self) -> None:
        """Ids of events built in a row ascend in the order the events were built, even
        when they are first read in the opposite order."""
        built = [Made(i) for i in range(20_000)]
        for event in reversed(built):
            assert isinstance(event.id, UUID)
        ids = [event.id for event in built]
        assert all(a < b for a, b in itertools.pairwise(ids))

    def test_threads_draw_distinct_ascending_ids(self) -> None:
        """Ids made by several threads at once never collide, and each thread's own ids
        ascend."""
        start = threading.Barrier(4)
        results: list[list[UUID]] = []

        def work() -> None:
            start.wait()
            results.append([Made(i).id for i in range(5_000)])

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 4
        for mine in results:
            assert mine == sorted(mine)
        assert len({i for mine in results for i in mine}) == 20_000

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_forked_children_never_repeat_ids(self) -> None:
        """Children forked from one parent (after it made ids, with random bits of the
        same block left over) make ids no sibling and not the parent makes."""
        parent = [new_event_id().int for _ in range(100)]
        children = [
            ids
            for _ in range(4)
            for ids in from_child(lambda: [Made().id.int for _ in range(3_000)])
        ]
        parent += [new_event_id().int for _ in range(3_000)]
        assert [len(ids) for ids in children] == [3_000] * 4
        every = [i for ids in children for i in ids] + parent
        assert len(set(every)) == len(every)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_an_event_built_before_a_fork_has_one_id(self) -> None:
        """An event built before a fork and first read after it has the same id in the
        parent and the child, as if its id had been made when it was built."""
        event = Made()
        (child,) = from_child(lambda: [event.id.int])
        assert child == [event.id.int]


class TestRandomness:
    def test_random_bits_come_from_the_os_in_blocks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Ids read os.urandom once per 4,096 ids, not once per id."""
        calls: list[int] = []
        real = os.urandom

        def counting(n: int) -> bytes:
            calls.append(n)
            return real(n)

        monkeypatch.setattr(os, "urandom", counting)
        monkeypatch.setattr(events, "_bits", events._random_stream())
        for _ in range(10_000):
            Made()
        assert len(calls) == 3
        assert set(calls) == {4096 * 8}

    def test_ids_of_one_clock_reading_differ_in_their_random_bits(self, clock: FakeNs) -> None:
        """Two processes reading the same nanosecond still make different ids: 54 bits
        of each id are random."""
        a = events._id_int(clock.now, next(events._bits))
        b = events._id_int(clock.now, next(events._bits))
        mask = (1 << 54) - 1
        assert a >> 54 == b >> 54
        assert a & mask != b & mask
