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


def _bronze_activity(eid, course, event_time, written):
    from bson import json_util
    from bson.json_util import RELAXED_JSON_OPTIONS

    from learntrack.intervals import Interval

    d = {"_id": eid, "event_id": eid, "student_id": "s1", "course_id": course, "event_type": "page_view",
         "item_id": course, "event_time": event_time, "ingested_at": written}
    return (eid, json_util.dumps(d, json_options=RELAXED_JSON_OPTIONS), written,
            Interval.for_day(written.date()).batch_id, written, written.date())


def test_a_late_event_beyond_silver_retention_leaves_gold_as_it_was(spark, fresh_lake):
    """Finding 2: silver keeps 90 days, gold 730. A late event for a day retention had emptied made
    gold recompute that day from what was left: one event replaced the day's every course."""
    from learntrack.intervals import Interval
    from lake.delta import ensure_table, read_table
    from jobs.gold import build_gold
    from jobs.maintenance import maintain
    from jobs.silver import build_silver
    from lake import ledger
    from lake.tables import BRONZE_ACTIVITIES, GOLD_COURSE_DAILY, QUARANTINE, SILVER_ACTIVITIES

    path = ensure_table(spark, BRONZE_ACTIVITIES, fresh_lake.lake_uri)

    def append(rows):
        spark.createDataFrame(rows, BRONZE_ACTIVITIES.spark_schema()).write.format("delta").mode("append").save(path)

    def gold_day():
        return sorted((r["course_id"], r["events"]) for r in read_table(spark, GOLD_COURSE_DAILY, fresh_lake.lake_uri)
                      .where(f"event_date = DATE'{DAY}'").collect())

    append([_bronze_activity("a1", "cA", T, T), _bronze_activity("a2", "cA", T, T),
            _bronze_activity("b1", "cB", T, T)])
    first = Interval.for_day(DAY)
    build_silver(spark, fresh_lake, first)
    ledger.record(fresh_lake, "silver", first.batch_id, [first.batch_id], [DAY])  # as the gates do
    build_gold(spark, fresh_lake, first)
    ledger.record(fresh_lake, "gold", first.batch_id, [first.batch_id], [DAY])
    assert gold_day() == [("cA", 2), ("cB", 1)]

    maintain(spark, fresh_lake, Interval.for_day(DAY + dt.timedelta(days=95)), tables=(SILVER_ACTIVITIES,))
    assert read_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri).count() == 0
    # Written 80 days after its event (within silver's window when written, processed only after
    # the retention run), and 100 days after (beyond silver's window: quarantined with its reason).
    append([_bronze_activity("late80", "cA", T, T + dt.timedelta(days=80)),
            _bronze_activity("late100", "cA", T, T + dt.timedelta(days=100))])
    late = Interval.for_day(DAY + dt.timedelta(days=100))
    silver = build_silver(spark, fresh_lake, late)
    assert (silver["inserted"], silver["quarantined"]) == (1, 1)
    assert [r["rule"] for r in read_table(spark, QUARANTINE, fresh_lake.lake_uri).collect()] == [
        "event_time older than the raw retention window before its write"]
    gold = build_gold(spark, fresh_lake, late)
    assert gold["days_beyond_retention"] == [(DAY - dt.timedelta(days=1)).isoformat(), DAY.isoformat()]
    assert gold_day() == [("cA", 2), ("cB", 1)]
