"""Progress: the low-water mark over events that finish out of order, and the dead
letters that wait for it."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from core import DeadLetter, DeadLetterReason
from core.progress import GroupProgress


def letter(seq: int) -> DeadLetter:
    now = datetime.now(UTC)
    return DeadLetter(
        event_id=uuid4(),
        event_type="t",
        handler="h",
        reason=DeadLetterReason.EXHAUSTED,
        error_type="builtins.ValueError",
        message="m",
        traceback="tb",
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        seq=seq,
    )


class TestLowWaterMark:
    def test_mark_moves_only_over_contiguous_finished_events(self) -> None:
        """Finishing 3 and 2 before 1 keeps the mark at the checkpoint until 1 finishes."""
        progress = GroupProgress(0)
        for seq in (1, 2, 3):
            progress.start(seq)
        assert progress.finish(3) is False
        assert progress.finish(2) is False
        assert progress.mark == 0
        assert progress.in_flight == 1
        assert progress.finish(1) is True
        assert progress.mark == 3
        assert progress.in_flight == 0

    def test_starts_from_the_checkpoint(self) -> None:
        """Sequence numbers at or below the checkpoint count as seen."""
        progress = GroupProgress(5)
        assert progress.seen(5)
        assert not progress.seen(6)
        progress.start(6)
        assert progress.seen(6)
        assert not progress.dirty
        progress.finish(6)
        assert progress.dirty
        assert progress.mark == 6

    def test_letters_wait_for_the_mark(self) -> None:
        """A dead letter above the mark is only handed out once the mark passes it."""
        progress = GroupProgress(0)
        progress.start(1)
        progress.start(2)
        progress.finish(2, [letter(2)])
        assert progress.take_letters() == []
        progress.finish(1)
        assert [entry.seq for entry in progress.take_letters()] == [2]
        assert progress.take_letters() == []
