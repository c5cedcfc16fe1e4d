import datetime as dt

import pytest

from learntrack.activity_model import validate_activity

NOW = dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc)


def doc(**kw):
    base = {"event_id": "e1", "student_id": "s1", "course_id": "c1", "event_type": "video_pause",
            "event_time": NOW - dt.timedelta(hours=1), "position_s": 10.0, "duration_s": 100.0}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def test_valid_document_passes():
    assert validate_activity(doc(), now=NOW) is None


@pytest.mark.parametrize("change, reason", [
    ({"event_id": ...}, "event_id missing"),
    ({"student_id": 42}, "student_id missing or not"),
    ({"event_type": "video_rewind"}, "unknown event_type"),
    ({"event_time": "yesterday"}, "event_time missing or not a date"),
    ({"event_time": NOW + dt.timedelta(days=1)}, "future"),
    ({"position_s": -1.0}, "outside [0, duration]"),
    ({"position_s": 101.0}, "outside [0, duration]"),
    ({"position_s": "10"}, "without numeric"),
    ({"event_type": "quiz_attempt", "score": 11.0, "max_score": 10.0}, "quiz score"),
    ({"event_type": "login", "region": "moon-base"}, "unknown region"),
    ({"student_id": "s\u200b1"}, "student_id missing or not"),
    ({"page": "x" * 20_000}, "larger than 16 KiB"),
])
def test_each_rule_reports_its_reason(change, reason):
    assert reason in validate_activity(doc(**change), now=NOW)
