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
    from expectations.suites import bronze_batch_suite, freshness_suite
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
    out.append(validate(_activity_freshness(spark, settings, interval),
                        freshness_suite("bronze.activities.freshness", settings.freshness_max_hours),
                        settings, interval.batch_id))
    return out


def _activity_freshness(spark, settings: Settings, interval: Interval):
    """One row: hours between the interval end and the newest activity written before it (reads
    only the last few ingest-day partitions)."""
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from lake.tables import BRONZE_ACTIVITIES

    end = interval.end.astimezone(dt.timezone.utc)
    since = end.date() - dt.timedelta(days=int(settings.freshness_max_hours // 24) + 2)
    newest = (read_table(spark, BRONZE_ACTIVITIES, settings.lake_uri)
              .where(F.col("ingest_date").between(since, end.date()) & (F.col("source_updated_at") <= F.lit(end)))
              .agg(F.max("source_updated_at")).first()[0])
    age = None if newest is None else (end - newest.replace(tzinfo=dt.timezone.utc)).total_seconds() / 3600
    return spark.createDataFrame([(age,)], "newest_age_hours double")


def silver(settings: Settings, interval: Interval) -> dict[str, Any]:
    from jobs.silver import build_silver

    return build_silver(_spark(settings), settings, interval)


def _validate_or_quarantine(spark, settings: Settings, interval: Interval, checks: list, written: list) -> list[dict]:
    """Run every (frame, suite); on a failure, move what this run wrote aside (``written``:
    (table, version before the run, rows)) and restore those tables before failing the task."""
    from expectations.gate import GateFailed, validate
    from jobs.common import quarantine_run_output

    try:
        return [validate(df, suite, settings, interval.batch_id) for df, suite in checks]
    except GateFailed as exc:
        restored = quarantine_run_output(spark, settings.lake_uri, interval.batch_id, written)
        raise GateFailed(exc.suite, exc.failures + [f"restored {restored or 'nothing'}; this run's rows are "
                                                    f"under {settings.lake_uri}/quarantine/"], exc.report) from exc


def gate_silver(settings: Settings, interval: Interval, affected_dates: Iterable[str],
                versions_before: dict | None = None) -> list[dict]:
    from pyspark.sql import functions as F

    from expectations.suites import reconciliation_suite, silver_activities_suite, silver_timing_suite
    from jobs.common import read_table
    from lake.tables import SILVER_ACTIVITIES

    spark = _spark(settings)
    days = [dt.date.fromisoformat(d) for d in affected_dates]
    df = read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).where(F.col("event_date").isin(days))
    timing = df.select((F.col("ingested_at").cast("double") - F.col("event_time").cast("double")).alias("write_lag_s"))
    checks = [(df, silver_activities_suite()), (timing, silver_timing_suite()),
              (silver_reconciliation(spark, settings, interval, days),
               reconciliation_suite("silver.activities.reconciliation", [("rows_in", "accounted")],
                                    ["valid_ids_missing_from_silver", "kept_beyond_distinct_ids"]))]
    written = [(SILVER_ACTIVITIES, (versions_before or {}).get(SILVER_ACTIVITIES.qualified),
                read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).where(F.col("batch_id") == interval.batch_id))]
    return _validate_or_quarantine(spark, settings, interval, checks, written)


def silver_reconciliation(spark, settings: Settings, interval: Interval, days: list[dt.date]):
    """One row of counts for the batch, from what is stored in each table: bronze rows in must equal
    silver rows kept + quarantine rows + duplicates (valid rows whose event id was already kept),
    and every valid event id of the batch must be in silver."""
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from jobs.silver import typed_activities
    from lake.tables import BRONZE_ACTIVITIES, QUARANTINE, SILVER_ACTIVITIES

    lake, batch_id = settings.lake_uri, interval.batch_id
    bronze = read_table(spark, BRONZE_ACTIVITIES, lake).where(F.col("batch_id") == batch_id)
    # Parsed once: the three counts below would otherwise each re-parse the raw batch.
    valid = typed_activities(bronze).where(F.col("rule").isNull()).select("event_id").persist()
    try:
        silver = read_table(spark, SILVER_ACTIVITIES, lake).where(F.col("event_date").isin(days))
        rows_in = bronze.count()
        kept = silver.where(F.col("batch_id") == batch_id).count()
        quarantined = read_table(spark, QUARANTINE, lake).where(F.col("batch_id") == batch_id).count()
        valid_rows = valid.count()
        missing = valid.join(silver.select("event_id"), "event_id", "left_anti").distinct().count()
        over_kept = max(0, kept - valid.distinct().count())  # a row inserted twice
    finally:
        valid.unpersist()
    accounted = kept + quarantined + (valid_rows - kept)
    return spark.createDataFrame([(rows_in, accounted, kept, quarantined, valid_rows - kept, missing, over_kept)],
                                 "rows_in long, accounted long, kept long, quarantined long, duplicates long, "
                                 "valid_ids_missing_from_silver long, kept_beyond_distinct_ids long")


def gold(settings: Settings, interval: Interval, affected_dates: Iterable[str] | None) -> dict[str, Any]:
    from jobs.gold import build_gold

    return build_gold(_spark(settings), settings, interval, affected_dates)


def gate_gold(settings: Settings, interval: Interval, recomputed_dates: Iterable[str],
              engagement_dates: Iterable[str] = (), versions_before: dict | None = None) -> list[dict]:
    """Every gold row this run wrote: the recomputed days, the recomputed as-of days, and the
    progress rows of the batch's students."""
    from pyspark.sql import functions as F

    from expectations import suites
    from jobs.common import read_table
    from lake.tables import (GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_STUDENT_COURSE_ENGAGEMENT,
                             GOLD_STUDENT_COURSE_PROGRESS, GOLD_STUDENT_ENGAGEMENT, SILVER_ACTIVITIES)

    spark = _spark(settings)
    lake = settings.lake_uri
    days = [dt.date.fromisoformat(d) for d in recomputed_dates]
    as_of_days = [dt.date.fromisoformat(d) for d in engagement_dates]
    students = (read_table(spark, SILVER_ACTIVITIES, lake).where(F.col("batch_id") == interval.batch_id)
                .select("student_id").distinct())
    written = [  # (table, the rows this run wrote, their suite)
        (GOLD_COURSE_DAILY, read_table(spark, GOLD_COURSE_DAILY, lake).where(F.col("event_date").isin(days)),
         suites.gold_course_daily_suite()),
        (GOLD_STUDENT_COURSE_ENGAGEMENT,
         read_table(spark, GOLD_STUDENT_COURSE_ENGAGEMENT, lake).where(F.col("as_of_date").isin(as_of_days)),
         suites.gold_student_course_engagement_suite()),
        (GOLD_STUDENT_ENGAGEMENT,
         read_table(spark, GOLD_STUDENT_ENGAGEMENT, lake).where(F.col("as_of_date").isin(as_of_days)),
         suites.gold_student_engagement_suite()),
        (GOLD_STUDENT_COURSE_PROGRESS,
         read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, lake).join(students, "student_id", "left_semi"),
         suites.gold_student_course_progress_suite()),
        (GOLD_MULTI_REGION, read_table(spark, GOLD_MULTI_REGION, lake).where(F.col("event_date").isin(days)),
         suites.gold_multi_region_suite(settings.multi_region_window_minutes)),
    ]
    silver_events = read_table(spark, SILVER_ACTIVITIES, lake).where(F.col("event_date").isin(days)).count()
    gold_events = written[0][1].agg(F.sum("events")).first()[0] or 0
    checks = [(df, suite) for _, df, suite in written]
    checks.append((spark.createDataFrame([(silver_events, gold_events)], "silver_events long, gold_events long"),
                   suites.reconciliation_suite("gold.course_daily_engagement.reconciliation",
                                               [("silver_events", "gold_events")])))
    before = versions_before or {}
    return _validate_or_quarantine(spark, settings, interval, checks,
                                   [(t, before.get(t.qualified), df) for t, df, _ in written])


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


def sweep_source(settings: Settings, interval: Interval) -> dict[str, int]:
    """Make documents written without write metadata visible to the next extraction."""
    from learntrack.mongo_ops import client, sweep_write_metadata

    mongo = client(settings)
    try:
        return sweep_write_metadata(mongo[settings.mongo_db])
    finally:
        mongo.close()


def maintain(settings: Settings, interval: Interval) -> list[dict]:
    from jobs.maintenance import maintain as run

    return run(_spark(settings), settings, interval)
