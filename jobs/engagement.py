"""Engagement: decayed scores per student and course, percentile bands, and segments.

An event is *known* on the UTC day it was written to MongoDB (``ingested_at``) and earns points
from min(event day, known day). The score as of day d (docs/engagement.md) is the recurrence

    S(d) = dec(S(d-1) * exp(-lambda)) + sum over events known on d of dec(w(type) * exp(-lambda * (d - from_day)))

with ``dec`` rounding to DECIMAL(18,6). It equals the closed form ``sum w * exp(-lambda * age)``
over the events known by d (to rounding), but every step is fixed and decimal sums are exact, so
the same silver gives the same digits whether days are computed one at a time, as a range, again,
or out of order. A daily run computes one day from the previous day's snapshot and the rows known
that day: its cost follows the number of students, not the days of history.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from learntrack.intervals import UTC
from lake.delta import read_table, replace_partitions
from lake.tables import (GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT, SCORE, SILVER_ACTIVITIES,
                         SILVER_COURSE_ITEMS)
from learntrack.settings import Settings

SEGMENTS = ("inactive", "disengaging", "struggling", "highly_engaged", "active")
BANDS = ("low", "normal", "high")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), UTC)


def daily_points(silver_df, start: dt.date, end: dt.date, weights: dict[str, float], decay_per_day: float):
    """Points per (student, course, known day) of the rows first known between start and end."""
    from pyspark.sql import functions as F

    known = F.to_date("ingested_at")
    weight = F.create_map(*[x for k, v in sorted(weights.items()) for x in (F.lit(k), F.lit(float(v)))])
    age = F.datediff(known, F.least(F.col("event_date"), known))
    points = (F.coalesce(F.try_element_at(weight, F.col("event_type")), F.lit(0.0))
              * F.exp(F.lit(-decay_per_day) * age)).cast(SCORE)
    rows = silver_df.where((F.col("ingested_at") >= F.lit(_midnight(start)))
                           & (F.col("ingested_at") < F.lit(_midnight(end + dt.timedelta(days=1)))))
    return (rows.groupBy("student_id", "course_id", known.alias("known_date"))
            .agg(F.sum(points).cast(SCORE).alias("points")))


def score_chain(points_df, previous_df, start: dt.date, end: dt.date, decay_per_day: float):
    """Per (student, course): the score of every day from start to end, from the scores of the day
    before start (``previous_df``) and the daily points; a pair has rows from its first known day."""
    from pyspark.sql import functions as F

    factor = repr(math.exp(-decay_per_day))  # one double literal, the same in every run
    days = (end - start).days + 1
    chain = (f"slice(aggregate(sequence(DATE'{start}', DATE'{end}'), array(coalesce(s0, CAST(0 AS {SCORE}))),"
             f" (acc, d) -> concat(acc, array(CAST(CAST(CAST(element_at(acc, -1) AS DOUBLE) * {factor}D AS {SCORE})"
             f" + coalesce(try_element_at(pts, d), CAST(0 AS {SCORE})) AS {SCORE})))), 2, {days})")
    pts = (points_df.groupBy("student_id", "course_id")
           .agg(F.map_from_entries(F.collect_list(F.struct("known_date", "points"))).alias("pts"),
                F.min("known_date").alias("first_known")))
    pairs = previous_df.select("student_id", "course_id", F.col("score").alias("s0")).join(
        pts, ["student_id", "course_id"], "full")
    since = F.when(F.col("s0").isNotNull(), F.lit(start)).otherwise(F.col("first_known"))
    return (pairs.select("student_id", "course_id", since.alias("since"), F.posexplode(F.expr(chain)).alias("i", "score"))
            .withColumn("as_of_date", F.date_add(F.lit(start), F.col("i")))
            .where(F.col("as_of_date") >= F.col("since"))
            .select("as_of_date", "course_id", "student_id", "score"))


def mid_rank_percentile(partition: list[str]):
    """(students scoring lower + half of those scoring the same, self included) / students."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    group = Window.partitionBy(*partition)
    lower = F.rank().over(group.orderBy("score")) - 1
    return (lower + F.count(F.lit(1)).over(Window.partitionBy(*partition, "score")) / 2) / F.count(F.lit(1)).over(group)


def with_bands(course_scores, low: float, high: float):
    from pyspark.sql import functions as F

    pct = mid_rank_percentile(["as_of_date", "course_id"])
    return (course_scores.withColumn("percentile", pct)
            .withColumn("band", F.when(F.col("percentile") < low, "low")
                        .when(F.col("percentile") > high, "high").otherwise("normal")))


def recent_activity(silver_df, items_df, start: dt.date, end: dt.date, window_days: int):
    """Per (as-of day, student): events in the recent window and the one before, quiz attempts and
    passes in both, newest event; only events known by the as-of day count."""
    from pyspark.sql import functions as F

    span = 2 * window_days
    events = silver_df.where(F.col("event_date").between(start - dt.timedelta(days=span - 1), end)).select(
        "student_id", "event_date", "event_time", "event_type", "course_id", "item_id", "score",
        F.to_date("ingested_at").alias("known_date"))
    passing = items_df.where(F.col("item_type") == "quiz").select(
        F.col("course_id").alias("quiz_course_id"), F.col("item_id").alias("quiz_id"), "passing_score")
    events = events.join(F.broadcast(passing), (events.course_id == passing.quiz_course_id)
                         & (events.item_id == passing.quiz_id), "left")
    quiz = (F.col("event_type") == "quiz_attempt") & F.col("passing_score").isNotNull()
    passed = F.when(quiz, (F.col("score") >= F.col("passing_score")).cast("double"))
    # Totals per (student, event day, known day) first: the join below copies each row into every
    # as-of day whose two windows hold it (up to 2 x window_days), so it copies day totals, not
    # events (the 1M benchmark's batch: about 1M events x 14 before).
    daily = (events.groupBy("student_id", "event_date", "known_date")
             .agg(F.count(F.lit(1)).alias("events"),
                  F.sum((F.col("event_type") == "quiz_attempt").cast("bigint")).alias("quiz_attempts"),
                  F.sum(passed).alias("quiz_passes"), F.count(passed).alias("quiz_graded"),
                  F.max("event_time").alias("last_event_time")))
    days = events.sparkSession.range((end - start).days + 1).select(
        F.date_add(F.lit(start), F.col("id").cast("int")).alias("as_of_date"))
    joined = daily.join(F.broadcast(days), (F.col("event_date") <= F.col("as_of_date"))
                        & (F.col("event_date") > F.date_sub(F.col("as_of_date"), span))
                        & (F.col("known_date") <= F.col("as_of_date")))
    recent = F.col("event_date") > F.date_sub(F.col("as_of_date"), window_days)
    graded = F.sum("quiz_graded")
    return (joined.groupBy("as_of_date", "student_id")
            .agg(F.sum(F.when(recent, F.col("events")).otherwise(0)).cast("bigint").alias("events_recent"),
                 F.sum(F.when(~recent, F.col("events")).otherwise(0)).cast("bigint").alias("events_previous"),
                 F.sum("quiz_attempts").cast("bigint").alias("quiz_attempts"),
                 # the mean of the graded attempts' 0/1 outcomes, as avg() of the events gave it
                 F.when(graded > 0, F.sum("quiz_passes") / graded).alias("quiz_pass_rate"),
                 F.max("last_event_time").alias("last_event_time")))


def student_segments(course_rows, activity_df, settings: Settings):
    """Student score (sum over courses) and segment, first rule that holds:
    inactive (no event in either window), disengaging (none in the recent window), struggling
    (enough quiz attempts, pass rate below the threshold), highly_engaged (percentile among the
    day's active students above band_high), active."""
    from pyspark.sql import functions as F

    students = (course_rows.groupBy("as_of_date", "student_id")
                .agg(F.sum("score").cast(SCORE).alias("score"), F.count(F.lit(1)).alias("courses")))
    rows = (students.join(activity_df, ["as_of_date", "student_id"], "left")
            .fillna({"events_recent": 0, "events_previous": 0, "quiz_attempts": 0}))
    active = rows.where(F.col("events_recent") > 0).select(
        "as_of_date", "student_id", mid_rank_percentile(["as_of_date"]).alias("active_percentile"))
    rows = rows.join(active, ["as_of_date", "student_id"], "left")
    segment = (F.when((F.col("events_recent") == 0) & (F.col("events_previous") == 0), "inactive")
               .when(F.col("events_recent") == 0, "disengaging")
               .when((F.col("quiz_attempts") >= settings.engagement_struggling_min_attempts)
                     & (F.col("quiz_pass_rate") < settings.engagement_struggling_pass_rate), "struggling")
               .when(F.col("active_percentile") > settings.engagement_band_high, "highly_engaged")
               .otherwise("active"))
    return rows.withColumn("segment", segment).select(*GOLD_STUDENT_ENGAGEMENT.column_names)


def _has_snapshot(df, day: dt.date) -> bool:
    from pyspark.sql import functions as F

    return bool(df.where(F.col("as_of_date") == F.lit(day)).limit(1).count())


def build_engagement(spark, settings: Settings, as_of: dt.date, batch_rows) -> dict[str, Any]:
    """Recompute the as-of days a batch changes: from the first day its rows were known (or
    ``as_of`` if that day has no snapshot yet) through the newest snapshot. Without the day-before
    snapshot, and with silver rows known earlier, the chain is rebuilt from the first known day."""
    from pyspark.sql import functions as F

    lake = settings.lake_uri
    silver = read_table(spark, SILVER_ACTIVITIES, lake)
    course_table = read_table(spark, GOLD_STUDENT_COURSE_ENGAGEMENT, lake)
    first_known = batch_rows.agg(F.min(F.to_date("ingested_at"))).first()[0]
    starts = [d for d in (first_known, None if _has_snapshot(course_table, as_of) else as_of) if d is not None]
    if not starts:
        return {"engagement_dates": []}
    start = min(starts)
    latest = course_table.agg(F.max("as_of_date")).first()[0]
    end = max(as_of, latest or as_of)
    if start > end:  # rows known only after every snapshot: the next day's run counts them
        return {"engagement_dates": []}
    before = start - dt.timedelta(days=1)
    if _has_snapshot(course_table, before):
        previous = course_table.where(F.col("as_of_date") == F.lit(before))
    else:  # first run, or a rebuild: chain from the beginning of the known history
        earliest = silver.agg(F.min(F.to_date("ingested_at"))).first()[0]
        start = min(start, earliest or start)
        previous = course_table.limit(0)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]

    points = daily_points(silver, start, end, settings.engagement_weight_map, settings.engagement_decay_per_day)
    chain = score_chain(points, previous, start, end, settings.engagement_decay_per_day)
    replace_partitions(with_bands(chain, settings.engagement_band_low, settings.engagement_band_high),
                       GOLD_STUDENT_COURSE_ENGAGEMENT, lake, "as_of_date", days)

    written = (read_table(spark, GOLD_STUDENT_COURSE_ENGAGEMENT, lake)  # read again: after the write
               .where(F.col("as_of_date").between(start, end)))
    activity = recent_activity(silver, read_table(spark, SILVER_COURSE_ITEMS, lake), start, end,
                               settings.engagement_activity_window_days)
    replace_partitions(student_segments(written, activity, settings), GOLD_STUDENT_ENGAGEMENT, lake,
                       "as_of_date", days)
    return {"engagement_dates": [d.isoformat() for d in days]}
