import datetime as dt

from learntrack.activity_model import validate_activity
from learntrack.generator import GenParams, generate


def test_same_seed_same_documents_and_different_seed_differs():
    a, b = generate(GenParams(students=30, courses=5, days=2)), generate(GenParams(students=30, courses=5, days=2))
    assert a.activities == b.activities and a.students == b.students
    c = generate(GenParams(students=30, courses=5, days=2, seed=8))
    assert c.activities != a.activities


def test_generated_events_are_valid_and_positions_fit_the_video():
    p = GenParams(students=60, courses=8, days=3)
    data = generate(p)
    assert len(data.activities) > 300
    now = max(d["ingested_at"] for d in data.activities)
    assert all(validate_activity(d, now=now) is None for d in data.activities)
    start = p.end - dt.timedelta(days=p.days)
    assert all(start <= d["event_time"] < p.end + dt.timedelta(hours=3) for d in data.activities)
    assert all(d["ingested_at"] >= d["event_time"] for d in data.activities)
    assert len({d["event_id"] for d in data.activities}) == len(data.activities)
    types = {d["event_type"] for d in data.activities}
    assert {"login", "video_play", "video_pause", "quiz_attempt"} <= types


def test_injected_multi_region_logins_are_recorded_with_their_events():
    data = generate(GenParams(students=100, courses=5, days=2, multi_region_rate=0.2))
    by_id = {d["event_id"]: d for d in data.activities}
    assert data.truth["multi_region"]
    for case in data.truth["multi_region"]:
        first, second = (by_id[e] for e in case["event_ids"])
        assert first["region"] != second["region"]
        assert dt.timedelta(0) < second["event_time"] - first["event_time"] <= dt.timedelta(minutes=30)
