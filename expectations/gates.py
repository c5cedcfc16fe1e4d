"""The quality gates between stages: what each one checks, in one place.

A gate is a function of (spark, settings, interval, the upstream stage's result). It reads what
the stage stored (never only what the stage says it did), validates it with the suites of
``expectations.suites`` through ``expectations.gate.validate``, and on a failure moves what the run
wrote aside and restores the tables (``validate_or_quarantine``), so no reader and no sink sees
data that failed. ``learntrack.pipeline``'s ``gate_*`` stages are one line each around these.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from learntrack.intervals import Interval, to_utc
from learntrack.settings import Settings


def gate_result(checks: list[dict]) -> dict[str, Any]:
    return {"checks": checks, "gate_checks": sum(c["evaluated"] for c in checks),
            "gate_failed": sum(c["evaluated"] - c["passed"] for c in checks)}


def validate_or_quarantine(spark, settings: Settings, interval: Interval, checks: list, written: list) -> list[dict]:
    """Run every (frame or a function building it, suite[, at least this many rows]); on a failure,
    move what this run wrote aside (``written``: (table, version before the run, rows)) and restore
    those tables before failing the task."""
    from expectations.gate import GateFailed, validate_all
    from lake.delta import quarantine_run_output

    try:
        return validate_all(checks, settings, interval.batch_id)
    except GateFailed as exc:
        restored = quarantine_run_output(spark, settings.lake_uri, interval.batch_id, written)
        raise GateFailed(exc.suite, exc.failures + [f"restored {restored or 'nothing'}; this run's rows are "
                                                    f"under {settings.lake_uri}/quarantine/"], exc.report) from exc


# --- bronze -----------------------------------------------------------------------------------

def bronze_completeness(spark, settings: Settings, extracted: dict):
    """One row per reconciled day bucket of a source: documents MongoDB holds written up to the
    extraction's upper bound, and distinct ids bronze holds for the same bucket and bound. Counted
    here with a client of its own and no watermark, so a document written behind the watermark
    shows as missing whatever the extraction believed."""
    from jobs.bronze import SOURCES, bucket_counts, reconcile_days
    from learntrack.mongo_ops import client

    source = next(s for s in SOURCES if s.table.qualified == extracted["table"])
    upper = dt.datetime.fromisoformat(extracted["upper"])
    before = extracted["watermark_before"]
    days = reconcile_days((dt.datetime.fromisoformat(before),) if before else None, upper,
                          settings.extract_reconcile_days)
    mongo = client(settings)
    try:
        counts = bucket_counts(settings, source, mongo[settings.mongo_db][source.collection], days, upper)
    finally:
        mongo.close()
    return spark.createDataFrame([(d, m, b, max(0, m - b)) for d, (m, b) in sorted(counts.items())],
                                 "bucket string, in_mongo long, in_bronze long, missing_from_bronze long")


def activity_freshness(spark, settings: Settings, interval: Interval):
    """One row: hours between the interval end and the newest activity written before it (reads
    only the last few ingest-day partitions)."""
    from pyspark.sql import functions as F

    from lake.delta import read_table
    from lake.tables import BRONZE_ACTIVITIES

    end = interval.end.astimezone(dt.timezone.utc)
    since = end.date() - dt.timedelta(days=int(settings.freshness_max_hours // 24) + 2)
    newest = (read_table(spark, BRONZE_ACTIVITIES, settings.lake_uri)
              .where(F.col("ingest_date").between(since, end.date()) & (F.col("source_updated_at") <= F.lit(end)))
              .agg(F.max("source_updated_at")).first()[0])
    age = None if newest is None else (end - to_utc(newest)).total_seconds() / 3600
    return spark.createDataFrame([(age,)], "newest_age_hours double")


def gate_bronze(spark, settings: Settings, interval: Interval, extract_result: dict) -> dict[str, Any]:
    """Per source: the batch holds exactly the rows the extraction committed (this attempt's plus an
    interrupted earlier attempt's), with no key twice; and every MongoDB document of the reconciled
    day buckets is in bronze (counted independently of the watermark). Activities must be fresh."""
    from functools import partial

    from pyspark.sql import functions as F

    from expectations.gate import validate_all
    from expectations.suites import bronze_batch_suite, bronze_completeness_suite, freshness_suite
    from jobs.bronze import SOURCES
    from lake.delta import read_table

    extracted = {e["table"]: e for e in extract_result["sources"]}
    checks = []
    for src in SOURCES:
        e = extracted[src.table.qualified]
        batch = read_table(spark, src.table, settings.lake_uri).where(F.col("batch_id") == interval.batch_id)
        expected = e["extracted"] + e.get("already_in_batch", 0)
        checks.append((batch, bronze_batch_suite(src.table, expected), expected))
        # Activities are insert-only, so a bucket's count is exact. A profile moves to a newer bucket
        # when it changes (bronze keeps every version), so its buckets are compared as "at least".
        exact = src.collection == "activities"
        checks.append((partial(bronze_completeness, spark, settings, e), bronze_completeness_suite(src.table, exact)))
    checks.append((partial(activity_freshness, spark, settings, interval),
                   freshness_suite("bronze.activities.freshness", settings.freshness_max_hours)))
    return gate_result(validate_all(checks, settings, interval.batch_id))


# --- silver -----------------------------------------------------------------------------------

#: One bronze row (a document version): how the quarantine names the row it holds.
BRONZE_ROW_KEY = ["source_id", "source_updated_at"]


def silver_reconciliation(spark, settings: Settings, batches: list[str], days: list[dt.date]):
    """One row of counts for the bronze batches silver took in, each from what is stored:

    - every bronze row is in exactly one place: ``rows_in = kept + quarantined + duplicates``, where
      ``duplicates`` are the rows outside the quarantine beyond the first of each event id plus those
      whose event id an earlier batch already kept (worked out from bronze, the quarantine and the
      other batches' silver rows, not from ``kept``, so a lost insert breaks the equation);
    - every quarantined row is one bronze row of the batches (``quarantined = invalid_rows``);
    - each row's place agrees with the rules judged again (``placed_against_the_rules``): on every
      row of batches up to ``silver_gate_judge_rows``, on a fixed sample of about that many beyond
      (ADR 34; judging is the costly half of silver, and judging it all again doubled it);
    - every valid event id of the batches is in silver, and kept once in the whole table;
    - no bronze batch up to the run's own that silver has not completed was left out (stranded).

    A row's event id is read from its raw JSON in the JVM (``get_json_object``), not from silver.
    """
    from pyspark.sql import functions as F

    from lake.delta import read_table
    from lake.ledger import pending_from_table
    from lake.tables import BRONZE_ACTIVITIES, QUARANTINE, SILVER_ACTIVITIES

    lake = settings.lake_uri
    keys = BRONZE_ROW_KEY
    bronze_all = read_table(spark, BRONZE_ACTIVITIES, lake)
    # Independent of build_silver's own list: which batches are pending now, as the ledger sees it.
    stranded = set(pending_from_table(settings, "silver", max(batches), BRONZE_ACTIVITIES).batches) - set(batches)
    bronze = bronze_all.where(F.col("batch_id").isin(batches))
    quarantine = read_table(spark, QUARANTINE, lake).where(
        (F.col("source_table") == "activities") & F.col("batch_id").isin(batches))
    placed = (bronze.select(*keys, F.get_json_object("raw", "$.event_id").alias("event_id"))
              .join(quarantine.select(*keys, F.col("rule").alias("stored_rule")).dropDuplicates(keys), keys, "left")
              ).persist()
    try:
        # One pass over the batch's places, one over silver (joined to the batch's valid ids), one over
        # the quarantine, one judging again: each count of the reconciliation from what is stored.
        valid = F.col("stored_rule").isNull()
        b = placed.agg(F.count(F.lit(1)).alias("rows_in"), F.count(F.when(valid, 1)).alias("valid_rows"),
                       F.countDistinct(F.when(valid, F.col("event_id"))).alias("distinct_valid")).first()
        rows_in, valid_rows, distinct_valid = b["rows_in"], b["valid_rows"], b["distinct_valid"]
        valid_ids = placed.where(valid).select("event_id").distinct().withColumn("valid_id", F.lit(True))
        in_batches, in_days = F.col("batch_id").isin(batches), F.col("event_date").isin(days)
        ours = F.col("valid_id").isNotNull()
        s = (read_table(spark, SILVER_ACTIVITIES, lake).select("event_id", "batch_id", "event_date")
             .join(valid_ids, "event_id", "left")
             .agg(F.countDistinct(F.when(ours & ~in_batches, F.col("event_id"))).alias("kept_before"),
                  F.count(F.when(in_batches & in_days, 1)).alias("kept"),
                  F.count(F.when(in_batches, 1)).alias("kept_anywhere"),
                  F.countDistinct(F.when(ours, F.col("event_id"))).alias("present"),
                  F.count(F.when(ours, 1)).alias("held")).first())
        # Kept by a batch outside this set (any day: an id reused with another event time counts).
        kept_before, kept, kept_anywhere = s["kept_before"], s["kept"], s["kept_anywhere"]
        missing = distinct_valid - s["present"]
        # Rows of the batches' event ids in the whole table, beyond one per id.
        held = s["held"]
        quarantined = quarantine.count()
        judged, misplaced = placed_against_the_rules(bronze, placed, rows_in, settings)
    finally:
        placed.unpersist()
    duplicates = valid_rows - (distinct_valid - kept_before)
    return spark.createDataFrame(
        [(rows_in, kept + quarantined + duplicates, kept, quarantined, rows_in - valid_rows, duplicates, missing,
          max(0, held - distinct_valid), kept_anywhere - kept, len(stranded), judged, misplaced)],
        "rows_in long, accounted long, kept long, quarantined long, invalid_rows long, duplicates long, "
        "valid_ids_missing_from_silver long, event_ids_kept_twice long, kept_outside_affected_days long, "
        "bronze_batches_not_taken_in long, rows_judged_again long, placed_against_the_rules long")


def placed_against_the_rules(bronze, placed, rows_in: int, settings: Settings) -> tuple[int, int]:
    """(rows judged again, those whose place disagrees with the rules): a row silver kept or counted
    as a duplicate that the rules refuse, or a quarantined row whose stored rule is not the first
    rule it breaks. Every row when the batches hold at most ``silver_gate_judge_rows``; beyond, the
    rows whose key hashes to one residue of ``ceil(rows / limit)``: about ``limit`` rows, the same
    ones on a re-run, spread over every batch, day and source document."""
    from pyspark.sql import functions as F

    from jobs.silver import typed_activities

    keys = BRONZE_ROW_KEY
    limit = settings.silver_gate_judge_rows
    every = limit <= 0 or rows_in <= limit
    sample = bronze if every else bronze.where(
        F.pmod(F.xxhash64(*keys), F.lit(-(-rows_in // limit))) == 0)
    judged = (typed_activities(sample, settings.raw_retention_days).select(*keys, "rule")
              .join(placed.select(*keys, "stored_rule"), keys, "left"))
    c = judged.agg(F.count(F.lit(1)).alias("judged"),
                   F.count(F.when(~F.col("rule").eqNullSafe(F.col("stored_rule")), 1)).alias("misplaced")).first()
    return c["judged"], c["misplaced"]


SILVER_RECONCILIATION_ZERO = ("valid_ids_missing_from_silver", "event_ids_kept_twice", "kept_outside_affected_days",
                              "bronze_batches_not_taken_in", "placed_against_the_rules")


def gate_silver(spark, settings: Settings, interval: Interval, build_result: dict) -> dict[str, Any]:
    """Silver rows of the affected days, the write lag, and the reconciliation of every bronze batch
    build_silver took in; on failure every silver table the run changed is restored; on success,
    records silver as completed for those batches in the stage ledger."""
    from functools import partial

    from pyspark.sql import functions as F

    from expectations.suites import reconciliation_suite, silver_activities_suite, silver_timing_suite
    from lake.delta import read_table
    from lake import ledger
    from lake.tables import SILVER_ACTIVITIES, SILVER_TABLES

    days = [dt.date.fromisoformat(d) for d in build_result["affected_dates"]]
    batches = build_result.get("input_batches") or [interval.batch_id]
    df = read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).where(F.col("event_date").isin(days))
    timing = df.select((F.col("ingested_at").cast("double") - F.col("event_time").cast("double")).alias("write_lag_s"))
    inserted = build_result.get("inserted", 0)  # every row silver inserted is in the affected days
    checks = [(df, silver_activities_suite(), inserted), (timing, silver_timing_suite(), inserted),
              (partial(silver_reconciliation, spark, settings, batches, days),
               reconciliation_suite("silver.activities.reconciliation",
                                    [("rows_in", "accounted"), ("quarantined", "invalid_rows")],
                                    list(SILVER_RECONCILIATION_ZERO)))]
    before = build_result.get("versions_before") or {}

    def rows(table):
        t = read_table(spark, table, settings.lake_uri)
        return t.where(F.col("batch_id").isin(batches)) if "batch_id" in table.column_names else t

    written = [(t, before.get(t.qualified), rows(t)) for t in SILVER_TABLES]
    result = gate_result(validate_or_quarantine(spark, settings, interval, checks, written))
    ledger.record(settings, "silver", interval.batch_id, batches, days)
    return result


# --- gold -------------------------------------------------------------------------------------

def gate_gold(spark, settings: Settings, interval: Interval, build_result: dict) -> dict[str, Any]:
    """Every gold row this run wrote: the recomputed days, the recomputed as-of days, and the
    progress rows of the batches' students; silver events of the days equal gold's; on success,
    records gold as completed in the ledger."""
    from pyspark.sql import functions as F

    from expectations import suites
    from lake.delta import read_table
    from lake import ledger
    from lake.tables import (GOLD_COMPLETION_FUNNEL, GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_SHARED_ACCESS,
                             GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_COURSE_PROGRESS, GOLD_STUDENT_ENGAGEMENT,
                             SILVER_ACTIVITIES)

    lake = settings.lake_uri
    days = [dt.date.fromisoformat(d) for d in build_result["recomputed_dates"]]
    as_of_days = [dt.date.fromisoformat(d) for d in build_result.get("engagement_dates", [])]
    batches = build_result.get("input_batches") or [interval.batch_id]
    students = (read_table(spark, SILVER_ACTIVITIES, lake).where(F.col("batch_id").isin(batches))
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
        (GOLD_SHARED_ACCESS, read_table(spark, GOLD_SHARED_ACCESS, lake).where(F.col("event_date").isin(days)),
         suites.gold_shared_access_suite(settings.shared_access_min_students)),
        (GOLD_COMPLETION_FUNNEL, read_table(spark, GOLD_COMPLETION_FUNNEL, lake)
         .where(F.col("as_of_date").isin(build_result.get("funnel_dates", []))), suites.gold_completion_funnel_suite()),
    ]

    def events_reconciliation():
        silver_events = read_table(spark, SILVER_ACTIVITIES, lake).where(F.col("event_date").isin(days)).count()
        gold_events = written[0][1].agg(F.sum("events")).first()[0] or 0
        return spark.createDataFrame([(silver_events, gold_events)], "silver_events long, gold_events long")

    checks = [(df, suite) for _, df, suite in written]
    checks.append((events_reconciliation, suites.reconciliation_suite("gold.course_daily_engagement.reconciliation",
                                                                      [("silver_events", "gold_events")])))
    before = build_result.get("versions_before") or {}
    result = gate_result(validate_or_quarantine(spark, settings, interval, checks,
                                                [(t, before.get(t.qualified), df) for t, df, _ in written]))
    ledger.record(settings, "gold", interval.batch_id, batches, days)
    # The as-of days of the snapshot tables (engagement, funnel), for the sinks that serve them.
    ledger.record(settings, "gold_snapshots", interval.batch_id, batches,
                  as_of_days + [dt.date.fromisoformat(d) for d in build_result.get("funnel_dates", [])])
    return result
