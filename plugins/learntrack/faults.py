"""Fail points: named places in the stages where a test makes the process die as a crash would.

``point(settings, name)`` does nothing unless ``settings.fail_at`` (LEARNTRACK_FAIL_AT) names it;
then the process sends itself SIGKILL: no exception handler, ``finally`` or atexit runs, exactly
as when the kernel's OOM killer or a lost node ends a task. The fault suite
(tests/faults/test_kill.py) uses these to show that a retry ends in the uninterrupted state.
Never set in production; the names are listed in POINTS so a typo in a test fails loudly.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "bronze.activities.committed",  # mid-extraction: one Delta commit of activities done
    "bronze.students.committed",
    "bronze.courses.committed",
    "silver.quarantine_merged",  # between silver's quarantine MERGE and its activities MERGE
    "gold.course_daily_written",  # mid-gold: course-daily replaced, the tables written beside it maybe not
    "cassandra.by_day_written",  # mid-publish: the by-day table upserted, the by-course one not
    "redis.hashes_written",  # mid-publish: student hashes and staging leaderboard, no swap yet
    "neo4j.batch_written",  # mid-publish: access events merged, no multi-region query, no ledger
)


def point(settings, name: str) -> None:
    wanted = getattr(settings, "fail_at", "")
    if not wanted:
        return
    if wanted not in POINTS:
        raise ValueError(f"LEARNTRACK_FAIL_AT={wanted!r} is not a fail point; known: {', '.join(POINTS)}")
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
