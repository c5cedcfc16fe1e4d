"""Gold on tiny hand-made silver frames, checked against counts worked out by hand."""

import datetime as dt

import pytest

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
DAY = dt.date(2026, 1, 9)
T = dt.datetime(2026, 1, 9, 10, 0, tzinfo=UTC)


def silver_frame(spark, rows):
    from lake.tables import SILVER_ACTIVITIES

    base = {c: None for c in SILVER_ACTIVITIES.column_names}
    full = []
    for i, r in enumerate(rows):
        at = T + dt.timedelta(minutes=i)
        full.append({**base, "event_id": f"e{i}", "event_time": at, "ingested_at": at, "event_date": at.date(),
                     "batch_id": "b1", **r})
    return spark.createDataFrame([tuple(r[c] for c in SILVER_ACTIVITIES.column_names) for r in full],
                                 SILVER_ACTIVITIES.spark_schema())


def items_frame(spark, rows):
    from lake.tables import SILVER_COURSE_ITEMS

    return spark.createDataFrame([(c, i, "quiz", None, 10.0, p, T) for c, i, p in rows],
                                 SILVER_COURSE_ITEMS.spark_schema())


def test_quiz_results_join_on_course_and_item(spark):
    """Finding 7: two courses that both call a quiz ``q1`` (per-course item ids). Joined on the
    item id alone, each attempt matched both quizzes: events counted twice, pass rates mixed."""
    from jobs.engagement import recent_activity
    from jobs.gold import course_daily_engagement
    from lake.tables import GOLD_STUDENT_COURSE_PROGRESS

    silver = silver_frame(spark, [
        {"student_id": "s1", "course_id": "cA", "item_id": "q1", "event_type": "quiz_attempt", "score": 6.0,
         "max_score": 10.0},  # cA passes at 5: pass
        {"student_id": "s1", "course_id": "cB", "item_id": "q1", "event_type": "quiz_attempt", "score": 6.0,
         "max_score": 10.0},  # cB passes at 8: fail
        {"student_id": "s2", "course_id": "cB", "item_id": "q1", "event_type": "quiz_attempt", "score": 9.0,
         "max_score": 10.0},  # pass
    ])
    items = items_frame(spark, [("cA", "q1", 5.0), ("cB", "q1", 8.0)])
    progress = spark.createDataFrame([], GOLD_STUDENT_COURSE_PROGRESS.spark_schema())
    got = {r["course_id"]: r for r in course_daily_engagement(silver, items, progress, [DAY]).collect()}
    assert {c: (r["events"], r["quiz_attempts"], r["quiz_pass_rate"]) for c, r in got.items()} == {
        "cA": (1, 1, 1.0), "cB": (2, 2, 0.5)}

    recent = {r["student_id"]: r for r in recent_activity(silver, items, DAY, DAY, 7).collect()}
    assert (recent["s1"]["quiz_attempts"], recent["s1"]["quiz_pass_rate"]) == (2, 0.5)
    assert (recent["s2"]["quiz_attempts"], recent["s2"]["quiz_pass_rate"]) == (1, 1.0)
    assert recent["s1"]["events_recent"] == 2
