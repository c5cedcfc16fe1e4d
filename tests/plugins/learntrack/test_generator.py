import datetime as dt

from learntrack.activity_model import validate_activity
from learntrack.generator import MALFORMED_KINDS, GenParams, Generator, generate, is_clean


def test_same_seed_same_documents_and_different_seed_differs():
    a, b = generate(GenParams(students=30, courses=5, days=2)), generate(GenParams(students=30, courses=5, days=2))
    assert a.activities == b.activities and a.students == b.students and a.truth == b.truth
    c = generate(GenParams(students=30, courses=5, days=2, seed=8))
    assert c.activities != a.activities


def test_a_student_is_the_same_whatever_the_scale():
    small, large = Generator(GenParams(students=10)), Generator(GenParams(students=10_000))
    assert small.student(7) == large.student(7)


def test_generated_events_are_valid_and_positions_fit_the_video():
    p = GenParams(students=60, courses=8, days=3)
    data = generate(p)
    assert len(data.activities) > 300
    assert all(validate_activity(d, now=d["ingested_at"]) is None for d in data.activities)
    assert all(p.start <= d["event_time"] < p.end + dt.timedelta(hours=3) for d in data.activities)
    assert all(d["ingested_at"] >= d["event_time"] for d in data.activities)
    assert [d["ingested_at"] for d in data.activities] == sorted(d["ingested_at"] for d in data.activities)
    assert len({d["event_id"] for d in data.activities}) == len(data.activities)
    types = {d["event_type"] for d in data.activities}
    assert {"login", "page_view", "video_play", "video_pause", "quiz_attempt"} <= types


def test_a_session_resumes_the_video_where_the_student_paused():
    data = generate(GenParams(students=40, courses=3, days=4, late_rate=0))
    last: dict[tuple, float] = {}
    resumed = 0
    for d in sorted(data.activities, key=lambda d: d["event_time"]):
        key = (d["student_id"], d.get("item_id"))
        if d["event_type"] == "video_play" and key in last and last[key] < d["duration_s"]:
            assert d["position_s"] == last[key]
            resumed += 1
        if d["event_type"] in ("video_pause", "video_seek", "video_complete"):
            last[key] = d["position_s"]
    assert resumed > 20


def test_injected_multi_region_logins_are_recorded_with_their_events():
    data = generate(GenParams(students=100, courses=5, days=2, multi_region_rate=0.2))
    by_id = {d["event_id"]: d for d in data.activities}
    assert data.truth["multi_region"] and data.truth["travel"]
    for case in data.truth["multi_region"]:
        first, second = (by_id[e] for e in case["event_ids"])
        assert first["region"] != second["region"]
        assert dt.timedelta(0) < second["event_time"] - first["event_time"] <= dt.timedelta(minutes=30)


def test_malformed_and_duplicate_documents_match_their_ground_truth():
    data = generate(GenParams(students=150, courses=5, days=2, malformed_rate=0.05, duplicate_rate=0.03))
    raw = {str(d["_id"]): d for d in data.activities if not is_clean(d)}
    truth_bad = {m["_id"]: m for m in data.truth["malformed"]}
    truth_dup = {m["_id"]: m for m in data.truth["duplicates"]}
    assert set(raw) == set(truth_bad) | set(truth_dup)
    assert {m["kind"] for m in truth_bad.values()} == set(MALFORMED_KINDS)
    for oid, m in truth_bad.items():
        assert validate_activity(raw[oid], now=raw[oid]["ingested_at"]) == m["rule"], m["kind"]
    clean = {d["event_id"]: d for d in data.activities if is_clean(d)}
    for oid, m in truth_dup.items():
        original = clean[m["event_id"]]
        write_meta = ("_id", "ingested_at", "ingest_day", "ingest_slot")
        assert {k: v for k, v in raw[oid].items() if k not in write_meta} == \
            {k: v for k, v in original.items() if k not in write_meta}
        assert raw[oid]["ingested_at"] > original["ingested_at"]
