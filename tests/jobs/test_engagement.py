"""Engagement on hand-made silver rows: segments by their rules, and the score chain giving the
same digits day by day, as one range, and with the days run out of order.

Each run is the gold stage as the DAG runs it: ``build_gold`` takes the silver batches the stage
ledger says are pending (by ``batch_id``, as extraction assigned them, not by the day a row was
written), and a success is recorded in the ledger as ``gate_gold`` does."""

import datetime as dt
import math
import shutil
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


def silver_row(i, student, day, event_type="page_view", course="c1", item=None, score=None, late_days=0, hour=12,
               written=None):
    t, at_write = at(day, hour, late_days)
    written = written or at_write
    video = event_type.startswith("video_")  # silver keeps video events only with their item and position
    return {"event_id": f"e{i}", "student_id": student, "course_id": course, "item_id": "v1" if video else item,
            "event_type": event_type, "event_time": t, "ingested_at": written, "event_date": day,
            "session_id": None, "device": None, "region": None, "country": None, "ip": None,
            "position_s": 300.0 if video else None, "duration_s": 300.0 if video else None,
            "from_position_s": None, "score": score, "max_score": 10.0 if score is not None else None,
            "batch_id": None}  # set by write_silver: which run extracted the row


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
    # Written two seconds before the end of day 17: within the extraction's safety lag, so the
    # run for day 17 leaves it to the next run's batch although it is known on day 17.
    rows.append(silver_row(len(rows), "owl", day(17), hour=23,
                           written=dt.datetime.combine(day(18), dt.time(), UTC) - dt.timedelta(seconds=2)))
    return rows


def extracted_batch(row, settings, first_run: dt.date) -> str:
    """The bronze batch (and so silver batch_id) a row lands in, as extraction assigns it: the first
    run takes everything written up to its interval end; each later run what was written in its day,
    except the last ``extract_safety_lag_s`` seconds of the day, which the next run takes."""
    from learntrack.intervals import Interval

    day = (row["ingested_at"] + dt.timedelta(seconds=settings.extract_safety_lag_s)).date()
    return Interval.for_day(max(day, first_run)).batch_id


def write_silver(spark, settings, rows, first_run: dt.date):
    """Silver as the runs from ``first_run`` on extract it (each row with its batch id)."""
    from lake.delta import ensure_table
    from lake.tables import SILVER_ACTIVITIES, SILVER_COURSE_ITEMS

    rows = [{**r, "batch_id": extracted_batch(r, settings, first_run)} for r in rows]
    df = spark.createDataFrame([tuple(r[c] for c in SILVER_ACTIVITIES.column_names) for r in rows],
                               SILVER_ACTIVITIES.spark_schema())
    df.write.format("delta").mode("append").save(ensure_table(spark, SILVER_ACTIVITIES, settings.lake_uri))
    items = spark.createDataFrame([("c1", "q1", "quiz", None, 10.0, 6.0, dt.datetime(2026, 1, 1, tzinfo=UTC)),
                                   ("c1", "v1", "video", 300.0, None, None, dt.datetime(2026, 1, 1, tzinfo=UTC))],
                                  SILVER_COURSE_ITEMS.spark_schema())
    items.write.format("delta").mode("overwrite").save(ensure_table(spark, SILVER_COURSE_ITEMS, settings.lake_uri))


def known_day(row) -> dt.date:
    return row["ingested_at"].date()


def run_day(spark, settings, day):
    """What the DAG run for ``day`` does in gold: build_gold over the silver batches pending for
    gold in the stage ledger (its own and any a failed run left), then, as gate_gold does on
    success, the completion recorded in the ledger."""
    from learntrack.intervals import Interval
    from jobs.gold import build_gold
    from lake import ledger

    interval = Interval.for_day(day)
    result = build_gold(spark, settings, interval)
    ledger.record(settings, "gold", interval.batch_id, result["input_batches"],
                  result["recomputed_dates"])
    return result


def tables(spark, settings):
    from lake.delta import read_table
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT

    return {t.name: sorted(tuple(r) for r in read_table(spark, t, settings.lake_uri).collect())
            for t in (GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT)}


def test_segments_scores_and_the_same_digits_in_any_run_order(spark, fresh_lake, tmp_path):
    from learntrack.intervals import Interval
    from lake.delta import read_table
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT

    rows = events()
    settings = fresh_lake
    write_silver(spark, settings, rows, first_run=AS_OF)
    # One run for the last day: its batch holds every row written by then; no earlier snapshot, so
    # the chain is built from the first known day.
    result = run_day(spark, settings, AS_OF)
    assert result["engagement_dates"][0] == (D0 + dt.timedelta(days=2)).isoformat()  # "gone", the first known
    assert result["engagement_dates"][-1] == AS_OF.isoformat()

    students = {r["student_id"]: r.asDict() for r in read_table(spark, GOLD_STUDENT_ENGAGEMENT, settings.lake_uri)
                .where(f"as_of_date = DATE'{AS_OF}'").collect()}
    assert {s: r["segment"] for s, r in students.items()} == {
        "top": "highly_engaged", "quizzer": "struggling", "fading": "disengaging", "gone": "inactive",
        "light": "active", "owl": "active"}
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

    # Daily runs in order: the first builds the chain; the next takes its batch, which holds the row
    # written at the end of day 17, so it recomputes from day 17.
    d17, d18 = AS_OF - dt.timedelta(days=2), AS_OF - dt.timedelta(days=1)
    daily = settings.with_overrides(lake_root=str(tmp_path / "lake-daily"))
    write_silver(spark, daily, rows, first_run=d17)
    run_day(spark, daily, d17)
    shutil.copytree(daily.lake_uri, tmp_path / "lake-retry")  # the same lake after day 17, for the next case
    assert run_day(spark, daily, d18)["engagement_dates"] == [d17.isoformat(), d18.isoformat()]
    run_day(spark, daily, AS_OF)
    assert tables(spark, daily) == one_range, "daily runs in order"

    # Gold fails on day 18 (nothing recorded), day 19's run takes day 18's batch as backlog, then
    # day 18's retry runs after day 19: its own batch only (with the row known on day 17), and it
    # rolls the chain forward through day 19.
    lake = settings.with_overrides(lake_root=str(tmp_path / "lake-retry"))
    later = run_day(spark, lake, AS_OF)
    assert later["backlog_batches"] == 1 and later["engagement_dates"][0] == d17.isoformat()
    retry = run_day(spark, lake, d18)
    assert retry["input_batches"] == [Interval.for_day(d18).batch_id]
    assert retry["engagement_dates"] == [d17.isoformat(), d18.isoformat(), AS_OF.isoformat()]
    assert tables(spark, lake) == one_range, "a failed day retried after the next"


def test_recent_activity_equals_a_count_over_the_events_of_each_as_of_day(spark):
    """Every as-of day's windows, counted event by event in Python: the day totals Spark joins must
    give the same counts, pass rate and newest event (late rows count from their known day)."""
    from jobs.engagement import recent_activity
    from lake.tables import SILVER_ACTIVITIES, SILVER_COURSE_ITEMS

    rows = events() + [silver_row(900, "quizzer", D0 + dt.timedelta(days=5), "quiz_attempt", item="q2", score=1.0),
                       silver_row(901, "quizzer", D0 + dt.timedelta(days=12), "quiz_attempt", item="q9", score=9.0),
                       silver_row(902, "quizzer", D0 + dt.timedelta(days=14), "quiz_attempt", item="q1", score=8.0,
                                  late_days=3)]
    items = [{"course_id": "c1", "item_id": q, "item_type": "quiz", "duration_s": None, "max_score": 10.0,
              "passing_score": p, "updated_at": dt.datetime(2026, 1, 1, tzinfo=UTC)} for q, p in (("q1", 6.0), ("q2", 5.0))]
    silver = spark.createDataFrame([{**r, "batch_id": "b"} for r in rows], SILVER_ACTIVITIES.spark_schema())
    items_df = spark.createDataFrame(items, SILVER_COURSE_ITEMS.spark_schema())
    start, end, window = D0, AS_OF + dt.timedelta(days=1), 7
    from pyspark.sql import functions as F

    got = {(r["as_of_date"], r["student_id"]): r.asDict() for r in  # epoch seconds: any host time zone
           recent_activity(silver, items_df, start, end, window)
           .withColumn("last_event_time", F.unix_micros("last_event_time") / 1e6).collect()}

    passing = {("c1", i["item_id"]): i["passing_score"] for i in items}
    want = {}
    for n in range((end - start).days + 1):
        as_of = start + dt.timedelta(days=n)
        for student in {r["student_id"] for r in rows}:
            seen = [r for r in rows if r["student_id"] == student and known_day(r) <= as_of
                    and as_of - dt.timedelta(days=2 * window) < r["event_date"] <= as_of]
            if not seen:
                continue
            graded = [float(r["score"] >= passing[(r["course_id"], r["item_id"])]) for r in seen
                      if r["event_type"] == "quiz_attempt" and (r["course_id"], r["item_id"]) in passing]
            recent = [r for r in seen if r["event_date"] > as_of - dt.timedelta(days=window)]
            want[(as_of, student)] = {
                "as_of_date": as_of, "student_id": student, "events_recent": len(recent),
                "events_previous": len(seen) - len(recent),
                "quiz_attempts": sum(r["event_type"] == "quiz_attempt" for r in seen),
                "quiz_pass_rate": sum(graded) / len(graded) if graded else None,
                "last_event_time": max(r["event_time"] for r in seen).timestamp()}
    assert got == want
    assert any(v["quiz_pass_rate"] not in (None, 0.0, 1.0) for v in want.values())  # the data exercise the mean
