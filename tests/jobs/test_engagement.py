"""Engagement on hand-made silver rows: segments by their rules, and the score chain giving the
same digits day by day, as one range, and with the days run out of order."""

import datetime as dt
import math
from collections import defaultdict

import pytest

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
D0 = dt.date(2026, 3, 1)
AS_OF = D0 + dt.timedelta(days=19)


def at(day: dt.date, hour: int = 12, late_days: int = 0) -> tuple[dt.datetime, dt.datetime]:
    """(event time, written time) on ``day``; the write ``late_days`` later."""
    t = dt.datetime.combine(day, dt.time(hour), UTC)
    return t, t + dt.timedelta(days=late_days, minutes=1)


def silver_row(i, student, day, event_type="page_view", course="c1", item=None, score=None, late_days=0, hour=12):
    t, written = at(day, hour, late_days)
    return {"event_id": f"e{i}", "student_id": student, "course_id": course, "item_id": item, "event_type": event_type,
            "event_time": t, "ingested_at": written, "event_date": day,
            "session_id": None, "device": None, "region": None, "country": None, "ip": None, "position_s": None,
            "duration_s": None, "from_position_s": None, "score": score, "max_score": 10.0 if score is not None else None,
            "batch_id": written.strftime("%Y%m%d")}


def events():
    rows = []
    day = lambda n: D0 + dt.timedelta(days=n)  # noqa: E731
    for n in range(13, 20):  # "top": busy every recent day, in two courses
        rows += [silver_row(len(rows), "top", day(n), "video_complete"), silver_row(len(rows) + 1, "top", day(n),
                                                                                     "assignment_submit", course="c2")]
    for n in (15, 17, 18):  # "quizzer": active, fails most quizzes
        rows.append(silver_row(len(rows), "quizzer", day(n), "quiz_attempt", item="q1", score=3.0))
    rows.append(silver_row(len(rows), "quizzer", day(16), "quiz_attempt", item="q1", score=9.0))
    rows.append(silver_row(len(rows), "fading", day(9)))  # active in the previous window only
    rows.append(silver_row(len(rows), "fading", day(10), late_days=2))  # known two days late
    rows.append(silver_row(len(rows), "gone", day(2)))  # nothing in either window
    rows.append(silver_row(len(rows), "light", day(18)))  # one page view this week
    rows.append(silver_row(len(rows), "light", day(19), hour=23, late_days=1))  # known only after AS_OF
    return rows


def write_silver(spark, settings, rows):
    from jobs.common import ensure_table
    from lake.tables import SILVER_ACTIVITIES, SILVER_COURSE_ITEMS

    df = spark.createDataFrame([tuple(r[c] for c in SILVER_ACTIVITIES.column_names) for r in rows],
                               SILVER_ACTIVITIES.spark_schema())
    df.write.format("delta").mode("append").save(ensure_table(spark, SILVER_ACTIVITIES, settings.lake_uri))
    items = spark.createDataFrame([("c1", "q1", "quiz", None, 10.0, 6.0, dt.datetime(2026, 1, 1))],
                                  SILVER_COURSE_ITEMS.spark_schema())
    items.write.format("delta").mode("overwrite").save(ensure_table(spark, SILVER_COURSE_ITEMS, settings.lake_uri))


def known_day(row) -> dt.date:
    return row["ingested_at"].date()


def run_day(spark, settings, day):
    """What the DAG run for ``day`` does: engagement for its as-of day, batch = rows known that day."""
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from jobs.engagement import build_engagement
    from lake.tables import SILVER_ACTIVITIES

    batch = read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).where(F.to_date("ingested_at") == F.lit(day))
    return build_engagement(spark, settings, day, batch)


def tables(spark, settings):
    from jobs.common import read_table
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT

    return {t.name: sorted(tuple(r) for r in read_table(spark, t, settings.lake_uri).collect())
            for t in (GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT)}


def test_segments_scores_and_the_same_digits_in_any_run_order(spark, fresh_lake, tmp_path):
    from jobs.common import read_table
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT

    rows = events()
    settings = fresh_lake
    write_silver(spark, settings, rows)
    # One run for the last day: no earlier snapshot, so the chain is built from the first known day.
    result = run_day(spark, settings, AS_OF)
    assert result["engagement_dates"][0] == (D0 + dt.timedelta(days=2)).isoformat()  # "gone", the first known
    assert result["engagement_dates"][-1] == AS_OF.isoformat()

    students = {r["student_id"]: r.asDict() for r in read_table(spark, GOLD_STUDENT_ENGAGEMENT, settings.lake_uri)
                .where(f"as_of_date = DATE'{AS_OF}'").collect()}
    assert {s: r["segment"] for s, r in students.items()} == {
        "top": "highly_engaged", "quizzer": "struggling", "fading": "disengaging", "gone": "inactive",
        "light": "active"}
    assert students["quizzer"]["quiz_attempts"] == 4 and students["quizzer"]["quiz_pass_rate"] == 0.25
    assert students["light"]["events_recent"] == 1  # the event known after AS_OF does not count yet
    assert students["gone"]["last_event_time"] is None and students["top"]["courses"] == 2

    # Scores: the closed form over the events known by each day, to DECIMAL(18,6) rounding.
    weights, lam = settings.engagement_weight_map, settings.engagement_decay_per_day
    course_rows = [r.asDict() for r in read_table(spark, GOLD_STUDENT_COURSE_ENGAGEMENT, settings.lake_uri).collect()]
    for row in course_rows:
        want = sum(weights[e["event_type"]] * math.exp(-lam * (row["as_of_date"] - min(e["event_date"], known_day(e))).days)
                   for e in rows if e["student_id"] == row["student_id"] and e["course_id"] == row["course_id"]
                   and known_day(e) <= row["as_of_date"])
        assert float(row["score"]) == pytest.approx(want, abs=1e-5), row
    firsts = defaultdict(lambda: dt.date.max)
    for e in rows:
        key = (e["student_id"], e["course_id"])
        firsts[key] = min(firsts[key], known_day(e))
    assert len(course_rows) == sum(max(0, (AS_OF - d).days + 1) for d in firsts.values())
    one_range = tables(spark, settings)

    # Daily runs in order (the first builds the chain, each next one adds a day to the day before),
    # and a backfill of an earlier day after the last (it rolls the later days forward from the day
    # before it) give exactly the same rows.
    for order in ([AS_OF - dt.timedelta(days=n) for n in (2, 1, 0)], [AS_OF, D0 + dt.timedelta(days=9)]):
        lake = settings.with_overrides(lake_root=str(tmp_path / f"lake-{order[0]}"))
        write_silver(spark, lake, rows)
        for day in order:
            run_day(spark, lake, day)
        assert tables(spark, lake) == one_range, order
