"""The pipeline's stages as plain functions of (settings, interval): what each Airflow task calls.

Each stage opens (or reuses) the SparkSession, runs one job or gate, and returns a small
JSON-able dict for XCom and the summary. Nothing here knows about Airflow.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable

from jobs.common import Interval
from learntrack.settings import Settings

Progress = Callable[[str], None]


def _spark(settings: Settings):
    from lake.spark import spark_session

    return spark_session(settings)


def extract(settings: Settings, interval: Interval, progress: Progress | None = None) -> list[dict]:
    from jobs.bronze import extract_bronze

    return extract_bronze(_spark(settings), settings, interval, progress)


def gate_bronze(settings: Settings, interval: Interval, extracted: list[dict]) -> list[dict]:
    """Each source's bronze batch holds exactly the rows MongoDB counted for its range."""
    from pyspark.sql import functions as F

    from expectations.gate import validate
    from expectations.suites import bronze_batch_suite
    from jobs.bronze import SOURCES
    from jobs.common import read_table

    spark = _spark(settings)
    # Rows of this batch from an earlier, interrupted attempt count too: the watermark resumed
    # after them, so the expected total is what this attempt saw plus those.
    expected = {e["table"]: e["expected"] + e.get("already_in_batch", 0) for e in extracted}
    out = []
    for src in SOURCES:
        batch = read_table(spark, src.table, settings.lake_uri).where(F.col("batch_id") == interval.batch_id)
        suite = bronze_batch_suite(src.table, expected.get(src.table.qualified, 0))
        out.append(validate(batch, suite, settings, interval.batch_id))
    return out


def silver(settings: Settings, interval: Interval) -> dict[str, Any]:
    from jobs.silver import build_silver

    return build_silver(_spark(settings), settings, interval)


def gate_silver(settings: Settings, interval: Interval, affected_dates: Iterable[str]) -> list[dict]:
    from pyspark.sql import functions as F

    from expectations.gate import validate
    from expectations.suites import silver_activities_suite, silver_timing_suite
    from jobs.common import read_table
    from lake.tables import SILVER_ACTIVITIES

    days = [dt.date.fromisoformat(d) for d in affected_dates]
    df = read_table(_spark(settings), SILVER_ACTIVITIES, settings.lake_uri).where(F.col("event_date").isin(days))
    timing = df.select((F.col("ingested_at").cast("double") - F.col("event_time").cast("double")).alias("write_lag_s"))
    return [validate(df, silver_activities_suite(), settings, interval.batch_id),
            validate(timing, silver_timing_suite(), settings, interval.batch_id)]


def gold(settings: Settings, interval: Interval, affected_dates: Iterable[str] | None) -> dict[str, Any]:
    from jobs.gold import build_gold

    return build_gold(_spark(settings), settings, interval, affected_dates)


def gate_gold(settings: Settings, interval: Interval, recomputed_dates: Iterable[str]) -> list[dict]:
    from pyspark.sql import functions as F

    from expectations.gate import validate
    from expectations.suites import (gold_course_daily_suite, gold_multi_region_suite,
                                     gold_student_course_progress_suite, gold_student_engagement_suite)
    from jobs.common import read_table
    from lake.tables import (GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_STUDENT_COURSE_PROGRESS,
                             GOLD_STUDENT_ENGAGEMENT)

    spark = _spark(settings)
    lake = settings.lake_uri
    days = [dt.date.fromisoformat(d) for d in recomputed_dates]
    checks = [
        (read_table(spark, GOLD_COURSE_DAILY, lake).where(F.col("event_date").isin(days)), gold_course_daily_suite()),
        (read_table(spark, GOLD_STUDENT_ENGAGEMENT, lake).where(F.col("as_of_date") == F.lit(interval.as_of_date)),
         gold_student_engagement_suite()),
        (read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, lake), gold_student_course_progress_suite()),
        (read_table(spark, GOLD_MULTI_REGION, lake).where(F.col("event_date").isin(days)),
         gold_multi_region_suite(settings.multi_region_window_minutes)),
    ]
    return [validate(df, suite, settings, interval.batch_id) for df, suite in checks]


def publish_cassandra(settings: Settings, interval: Interval, recomputed_dates: Iterable[str]) -> dict:
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from lake.tables import GOLD_COURSE_DAILY
    from learntrack.sinks.cassandra_sink import publish_course_daily

    days = [dt.date.fromisoformat(d) for d in recomputed_dates]
    rows = (r.asDict() for r in read_table(_spark(settings), GOLD_COURSE_DAILY, settings.lake_uri)
            .where(F.col("event_date").isin(days)).toLocalIterator())
    return publish_course_daily(settings, days, rows)


def publish_redis(settings: Settings, interval: Interval) -> dict:
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from lake.tables import GOLD_STUDENT_ENGAGEMENT
    from learntrack.sinks.redis_sink import publish_scores

    rows = (r.asDict() for r in read_table(_spark(settings), GOLD_STUDENT_ENGAGEMENT, settings.lake_uri)
            .where(F.col("as_of_date") == F.lit(interval.as_of_date)).toLocalIterator())
    return publish_scores(settings, interval.as_of_date, rows)


def publish_neo4j(settings: Settings, interval: Interval, recomputed_dates: Iterable[str]) -> dict:
    """Publish the logins of the recomputed days and run the multi-region query over them."""
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from lake.tables import SILVER_ACTIVITIES
    from learntrack.sinks.neo4j_sink import multi_region_pairs, publish_access

    days = [dt.date.fromisoformat(d) for d in recomputed_dates]
    logins = (read_table(_spark(settings), SILVER_ACTIVITIES, settings.lake_uri)
              .where(F.col("event_date").isin(days) & (F.col("event_type") == "login"))
              .select("event_id", "student_id", "region", "country", "ip", "device", "event_time"))
    result = publish_access(settings, (r.asDict() for r in logins.toLocalIterator()))
    if days:
        since = dt.datetime.combine(min(days), dt.time(), dt.timezone.utc)
        until = dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
        pairs = multi_region_pairs(settings, since, until)
        result.update(multi_region_pairs=len(pairs),
                      multi_region_students=len({p["student_id"] for p in pairs}))
    return result


def maintain(settings: Settings, interval: Interval) -> list[dict]:
    from jobs.maintenance import maintain as run

    return run(_spark(settings), settings, interval)
