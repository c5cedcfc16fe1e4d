"""Silver on hand-made bronze rows: valid, malformed and duplicate documents; counts reconcile."""

import datetime as dt

import pytest

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
T = dt.datetime(2026, 1, 9, 12, 0, tzinfo=UTC)


def bronze_rows(docs, batch_id):
    from bson import json_util
    from bson.json_util import RELAXED_JSON_OPTIONS

    rows = []
    for i, d in enumerate(docs):
        written = (T + dt.timedelta(seconds=i)).replace(tzinfo=None)
        rows.append((str(d.get("_id", f"oid{i}")), json_util.dumps(d, json_options=RELAXED_JSON_OPTIONS),
                     written, batch_id, written, written.date()))
    return rows


def ev(eid, **kw):
    d = {"_id": eid, "event_id": eid, "student_id": "s1", "course_id": "c1", "event_type": "video_pause",
         "event_time": T - dt.timedelta(minutes=5), "position_s": 12.5, "duration_s": 100.0}
    d.update(kw)
    return d


def test_quarantine_rules_dedup_and_reconciliation(spark, fresh_lake):
    from jobs.common import Interval, ensure_table, read_table
    from jobs.silver import build_silver
    from lake.tables import BRONZE_ACTIVITIES, QUARANTINE, SILVER_ACTIVITIES

    interval = Interval.for_day(T.date())
    docs = [
        ev("ok1"),
        ev("ok2", event_type="quiz_attempt", score=7.0, max_score=10.0, position_s=None, duration_s=None),
        ev("ok3", event_type="login", region="eu-west", event_time=T - dt.timedelta(days=2)),  # late event
        {k: v for k, v in ev("noid").items() if k != "event_id"},
        ev("badtype", event_type="teleport"),
        ev("badpos", position_s=150.0),
        ev("strpos", position_s="12"),
        ev("future", event_time=T + dt.timedelta(days=3)),
        ev("badscore", event_type="quiz_attempt", score=12.0, max_score=10.0),
        ev("baddate", event_time="2026-01-09"),
        ev("intstudent", student_id=42),
        ev("zwsp", student_id="s\u200b1"),
        ev("huge", user_agent="x" * 20_000),
    ]
    dup = dict(docs[0], _id="ok1-retry")  # same event id written twice
    path = ensure_table(spark, BRONZE_ACTIVITIES, fresh_lake.lake_uri)
    spark.createDataFrame(bronze_rows(docs + [dup], interval.batch_id),
                          BRONZE_ACTIVITIES.spark_schema()).write.format("delta").mode("append").save(path)

    result = build_silver(spark, fresh_lake, interval)
    assert result["rows_in"] == 14
    assert (result["inserted"], result["duplicates"], result["quarantined"]) == (3, 1, 10)
    assert result["rows_in"] == result["inserted"] + result["duplicates"] + result["quarantined"]
    assert result["affected_dates"] == ["2026-01-07", "2026-01-09"]

    q = {r["source_id"]: r["rule"] for r in read_table(spark, QUARANTINE, fresh_lake.lake_uri).collect()}
    assert q == {
        "noid": "event_id missing or not a short printable string",
        "badtype": "unknown event_type",
        "badpos": "video position outside [0, duration]",
        "strpos": "video event without numeric position_s/duration_s",
        "future": "event_time in the future",
        "badscore": "quiz score missing or outside [0, max_score]",
        "baddate": "event_time missing or not a date",
        "intstudent": "student_id missing or not a short printable string",
        "zwsp": "student_id missing or not a short printable string",
        "huge": "document larger than 16 KiB",
    }
    silver = {r["event_id"]: r for r in read_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri).collect()}
    assert set(silver) == {"ok1", "ok2", "ok3"}
    assert silver["ok1"]["position_s"] == 12.5 and silver["ok2"]["score"] == 7.0
    assert silver["ok3"]["event_date"] == dt.date(2026, 1, 7)

    again = build_silver(spark, fresh_lake, interval)
    assert (again["inserted"], again["duplicates"], again["quarantined"]) == (0, 4, 10)
    assert read_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri).count() == 3
    assert read_table(spark, QUARANTINE, fresh_lake.lake_uri).count() == 10
