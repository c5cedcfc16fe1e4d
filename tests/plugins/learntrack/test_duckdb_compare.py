"""DuckDB's course daily engagement on a tiny silver lake, against numbers worked out by hand."""

import datetime as dt

import pytest

UTC = dt.timezone.utc
D1, D2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)


def at(day, h, m=0, s=0):
    return dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=UTC)


def event(eid, student, etype, when, item=None, **numbers):
    return {"event_id": eid, "student_id": student, "course_id": "c1", "item_id": item, "event_type": etype,
            "event_time": when, "ingested_at": when, "event_date": when.date(), "batch_id": "b1", **numbers}


@pytest.fixture()
def tiny_lake(tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    from lake.tables import SILVER_ACTIVITIES, SILVER_COURSE_ITEMS
    from learntrack.settings import Settings

    settings = Settings(lake_root=str(tmp_path))
    events = [
        # s1, day 1: plays v1 at 10 s, pauses at 70 s 100 s later: 60 s watched
        event("e1", "s1", "video_play", at(D1, 9), "v1", position_s=10.0, duration_s=300.0),
        event("e2", "s1", "video_pause", at(D1, 9, 1, 40), "v1", position_s=70.0, duration_s=300.0),
        # s1 plays again at 23:59:50 and completes at 00:00:30 next day: min(300-70, 2*40 s) = 80 s on day 1
        event("e3", "s1", "video_play", at(D1, 23, 59, 50), "v1", position_s=70.0, duration_s=300.0),
        event("e4", "s1", "video_complete", at(D2, 0, 0, 30), "v1", position_s=300.0, duration_s=300.0),
        # s2, day 1: a quiz passed (8 >= 6) and one failed (4 < 6), a page view and a login
        event("e5", "s2", "quiz_attempt", at(D1, 10), "q1", score=8.0, max_score=10.0),
        event("e6", "s2", "quiz_attempt", at(D1, 11), "q1", score=4.0, max_score=10.0),
        event("e7", "s2", "page_view", at(D1, 12), "p1"),
        event("e8", "s2", "login", at(D1, 8)),
        # s3 first appears on day 2; a play with nothing after it watches nothing
        event("e9", "s3", "video_play", at(D2, 15), "v1", position_s=0.0, duration_s=300.0),
    ]
    schema = SILVER_ACTIVITIES.arrow_schema()
    write_deltalake(SILVER_ACTIVITIES.path(settings.lake_uri),
                    pa.Table.from_pylist([{f.name: e.get(f.name) for f in schema} for e in events], schema=schema))
    items = [{"course_id": "c1", "item_id": "v1", "item_type": "video", "duration_s": 300.0, "max_score": None,
              "passing_score": None, "updated_at": at(D1, 0)},
             {"course_id": "c1", "item_id": "q1", "item_type": "quiz", "duration_s": None, "max_score": 10.0,
              "passing_score": 6.0, "updated_at": at(D1, 0)}]
    item_schema = SILVER_COURSE_ITEMS.arrow_schema()
    write_deltalake(SILVER_COURSE_ITEMS.path(settings.lake_uri),
                    pa.Table.from_pylist([{f.name: i.get(f.name) for f in item_schema} for i in items],
                                         schema=item_schema))
    return settings


def test_duckdb_course_daily_matches_the_hand_computation(tiny_lake):
    from learntrack.duckdb_compare import duckdb_course_daily

    rows = {r["event_date"]: r for r in duckdb_course_daily(tiny_lake, [D1, D2])}
    day1, day2 = rows[D1], rows[D2]
    assert (day1["active_learners"], day1["events"], day1["video_plays"], day1["quiz_attempts"],
            day1["page_views"], day1["logins"], day1["video_completions"]) == (2, 7, 2, 2, 1, 1, 0)
    assert day1["video_watch_seconds"] == pytest.approx(60.0 + 80.0)
    assert day1["avg_quiz_score_pct"] == pytest.approx(60.0) and day1["quiz_pass_rate"] == pytest.approx(0.5)
    assert day1["new_learners"] == 2
    assert (day2["active_learners"], day2["events"], day2["video_completions"], day2["new_learners"]) == (2, 2, 1, 1)
    assert day2["video_watch_seconds"] == 0.0
    assert day2["avg_quiz_score_pct"] is None and day2["quiz_pass_rate"] is None


def test_differences_names_missing_rows_and_numbers_beyond_the_tolerance():
    from learntrack.duckdb_compare import differences

    row = {"event_date": D1, "course_id": "c1", "events": 3, "video_watch_seconds": 100.0, "quiz_pass_rate": None}
    assert differences([row], [dict(row, video_watch_seconds=100.0 + 1e-9)]) == []
    assert differences([row], [dict(row, events=4)]) == [f"{(D1, 'c1')} events: 3 != 4"]
    assert differences([row], [dict(row, quiz_pass_rate=0.5)]) == [f"{(D1, 'c1')} quiz_pass_rate: None != 0.5"]
    assert differences([row], []) == [f"only in one result: {(D1, 'c1')}"]
