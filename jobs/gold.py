"""Gold: daily course engagement and per-student engagement scores.

A day is always recomputed whole from silver and written with replaceWhere on its partition, so
recomputing a day, in any order and any number of times, yields the same rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from jobs.common import Interval, read_table, replace_partitions
from lake.tables import GOLD_COURSE_DAILY, GOLD_STUDENT_ENGAGEMENT, SILVER_ACTIVITIES
from learntrack.settings import Settings


def _dates(values: Iterable) -> list[dt.date]:
    return sorted({v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)) for v in values})


def course_daily_engagement(silver_df, days: list[dt.date]):
    from pyspark.sql import functions as F

    def n(event_type: str):
        return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0)).cast("bigint")

    return (silver_df.where(F.col("event_date").isin(days))
            .groupBy("event_date", "course_id")
            .agg(F.countDistinct("student_id").alias("active_learners"),
                 F.count(F.lit(1)).alias("events"),
                 n("page_view").alias("page_views"), n("video_play").alias("video_plays"),
                 n("video_complete").alias("video_completions"), n("quiz_attempt").alias("quiz_attempts"),
                 n("assignment_submit").alias("assignment_submissions"), n("login").alias("logins"),
                 F.avg(F.when(F.col("event_type") == "quiz_attempt",
                              F.col("score") / F.col("max_score") * 100)).alias("avg_quiz_score_pct")))


def student_engagement(silver_df, as_of: dt.date, weights: dict[str, float], decay_per_day: float):
    """score = sum over events up to ``as_of`` of weight(type) * exp(-decay * age in days)."""
    from pyspark.sql import functions as F

    weight = F.create_map(*[x for k, v in sorted(weights.items()) for x in (F.lit(k), F.lit(float(v)))])
    age = F.datediff(F.lit(as_of), F.col("event_date"))
    return (silver_df.where(F.col("event_date") <= F.lit(as_of))
            .withColumn("points", F.coalesce(weight[F.col("event_type")], F.lit(0.0))
                        * F.exp(-F.lit(decay_per_day) * age))
            .groupBy("student_id")
            .agg(F.sum("points").alias("score"), F.count(F.lit(1)).alias("events"),
                 F.max("event_time").alias("last_event_time"))
            .withColumn("as_of_date", F.lit(as_of)))


def build_gold(spark, settings: Settings, interval: Interval, affected_dates: Iterable | None = None) -> dict[str, Any]:
    from pyspark.sql import functions as F

    silver = read_table(spark, SILVER_ACTIVITIES, settings.lake_uri)
    if affected_dates is None:  # standalone re-run: the days this batch put rows in
        affected_dates = [r[0] for r in silver.where(F.col("batch_id") == interval.batch_id)
                          .select("event_date").distinct().collect()]
    days = _dates(affected_dates)
    daily = course_daily_engagement(silver, days)
    replace_partitions(daily, GOLD_COURSE_DAILY, settings.lake_uri, "event_date", days)

    as_of = interval.as_of_date
    scores = student_engagement(silver, as_of, settings.engagement_weight_map, settings.engagement_decay_per_day)
    replace_partitions(scores, GOLD_STUDENT_ENGAGEMENT, settings.lake_uri, "as_of_date", [as_of])
    return {"recomputed_dates": [d.isoformat() for d in days], "as_of_date": as_of.isoformat()}
