"""Progress: a consumer group's low-water mark over concurrently dispatched events.

Events are dispatched concurrently, so they finish out of order. The checkpoint may only
move past an event once it *and every event before it* has finished: otherwise a crash
would skip the unfinished one. ``GroupProgress`` tracks the sequence numbers that started
and finished and exposes the highest contiguous finished one (the low-water mark), with
the dead letters that wait for the mark to pass their event.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from .store import DeadLetter

__all__ = ["GroupProgress"]


class GroupProgress:
    """Tracks which sequence numbers are in flight and done above the checkpoint."""

    __slots__ = ("_done", "_letters", "_started", "committed", "mark")

    def __init__(self, checkpoint: int) -> None:
        self.mark = checkpoint  # every seq <= mark has finished
        self.committed = checkpoint  # what the store holds
        self._started: set[int] = set()
        self._done: list[int] = []  # heap of finished seqs above the mark
        self._letters: list[tuple[int, DeadLetter]] = []

    def seen(self, seq: int) -> bool:
        """Has this seq been started (or finished) by this consumer already?"""
        return seq <= self.mark or seq in self._started

    def start(self, seq: int) -> None:
        self._started.add(seq)

    def finish(self, seq: int, dead_letters: Sequence[DeadLetter] = ()) -> bool:
        """Mark ``seq`` finished; True when the low-water mark moved."""
        for letter in dead_letters:
            self._letters.append((seq, letter))
        if seq == self.mark + 1:
            self._started.discard(seq)
            self.mark = seq
            done = self._done
            while done and done[0] == self.mark + 1:
                self.mark = heapq.heappop(done)
                self._started.discard(self.mark)
            return True
        heapq.heappush(self._done, seq)
        return False

    @property
    def dirty(self) -> bool:
        return self.mark > self.committed or any(s <= self.mark for s, _ in self._letters)

    @property
    def in_flight(self) -> int:
        return len(self._started) - len(self._done)

    def requeue(self, mark: int, letters: Sequence[DeadLetter]) -> None:
        """Put back letters taken for a commit that failed (they go with the next one)."""
        self._letters[:0] = [(mark, letter) for letter in letters]

    def take_letters(self) -> list[DeadLetter]:
        """The dead letters of events at or below the mark (they commit with it)."""
        ready = [letter for seq, letter in self._letters if seq <= self.mark]
        self._letters = [(seq, letter) for seq, letter in self._letters if seq > self.mark]
        return ready
