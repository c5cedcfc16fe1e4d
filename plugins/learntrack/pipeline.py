"""The pipeline's stages, declared once (``STAGES`` at the end): what the DAG, the CLI and the
benchmark all run.

A stage is a plain function ``name(settings, interval, **upstream)``: its name is the Airflow task
id, and any parameter after ``interval`` names an upstream stage whose result it takes (XCom under
Airflow, a dict in-process). Each opens (or reuses) the SparkSession, runs one job, gate or
publish, and returns a small JSON-able dict. Nothing here knows about Airflow, and importing this
module is light (every heavy import is inside a function), so DAG files can read ``STAGES``.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from dataclasses import dataclass
from typing import Any, Callable

from lake.tables import (BRONZE_ACTIVITIES, BRONZE_COURSES, BRONZE_STUDENTS, GOLD_TABLES, QUARANTINE,
                         SILVER_ACTIVITIES, SILVER_COURSE_ITEMS, SILVER_STUDENTS, SILVER_STUDENTS_HISTORY)
from learntrack.intervals import Interval, to_utc
from learntrack.settings import Settings

BRONZE_TABLES = (BRONZE_ACTIVITIES, BRONZE_STUDENTS, BRONZE_COURSES)
SILVER_TABLES = (SILVER_ACTIVITIES, QUARANTINE, SILVER_STUDENTS, SILVER_STUDENTS_HISTORY, SILVER_COURSE_ITEMS)

Progress = Callable[[str], None]


def _spark(settings: Settings):
    from lake.spark import spark_session

    return spark_session(settings)


def extract_bronze(settings: Settings, interval: Interval, progress: Progress | None = None) -> dict[str, Any]:
    from jobs.bronze import extract_bronze as extract

    sources = extract(_spark(settings), settings, interval, progress)
    return {"sources": sources, "rows_out": sum(s["extracted"] for s in sources)}


def gate_bronze(settings: Settings, interval: Interval, extract_bronze: dict) -> dict[str, Any]:
    """Each source's bronze batch holds exactly the rows MongoDB counted for its range."""
    from pyspark.sql import functions as F

    from expectations.gate import validate
    from expectations.suites import bronze_batch_suite, freshness_suite
    from jobs.bronze import SOURCES
    from jobs.common import read_table

    spark = _spark(settings)
    # Rows of this batch from an earlier, interrupted attempt count too: the watermark resumed
    # after them, so the expected total is what this attempt saw plus those.
    expected = {e["table"]: e["expected"] + e.get("already_in_batch", 0) for e in extract_bronze["sources"]}
    out = []
    for src in SOURCES:
        batch = read_table(spark, src.table, settings.lake_uri).where(F.col("batch_id") == interval.batch_id)
        suite = bronze_batch_suite(src.table, expected.get(src.table.qualified, 0))
        out.append(validate(batch, suite, settings, interval.batch_id))
    out.append(validate(_activity_freshness(spark, settings, interval),
                        freshness_suite("bronze.activities.freshness", settings.freshness_max_hours),
                        settings, interval.batch_id))
    return _gate_result(out)


def _gate_result(checks: list[dict]) -> dict[str, Any]:
    return {"checks": checks, "gate_checks": sum(c["evaluated"] for c in checks),
            "gate_failed": sum(c["evaluated"] - c["passed"] for c in checks)}


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
    age = None if newest is None else (end - to_utc(newest)).total_seconds() / 3600
    return spark.createDataFrame([(age,)], "newest_age_hours double")


def build_silver(settings: Settings, interval: Interval) -> dict[str, Any]:
    from jobs.silver import build_silver as build

    return build(_spark(settings), settings, interval)


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


def gate_silver(settings: Settings, interval: Interval, build_silver: dict) -> dict[str, Any]:
    """Silver rows of the affected days, the write lag, and the reconciliation of every bronze batch
    build_silver took in; on success, records silver as completed for them in the stage ledger."""
    from pyspark.sql import functions as F

    from expectations.suites import reconciliation_suite, silver_activities_suite, silver_timing_suite
    from jobs.common import read_table
    from lake import ledger
    from lake.tables import SILVER_ACTIVITIES

    spark = _spark(settings)
    days = [dt.date.fromisoformat(d) for d in build_silver["affected_dates"]]
    batches = build_silver.get("input_batches") or [interval.batch_id]
    df = read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).where(F.col("event_date").isin(days))
    timing = df.select((F.col("ingested_at").cast("double") - F.col("event_time").cast("double")).alias("write_lag_s"))
    checks = [(df, silver_activities_suite()), (timing, silver_timing_suite()),
              (silver_reconciliation(spark, settings, batches, days),
               reconciliation_suite("silver.activities.reconciliation", [("rows_in", "accounted")],
                                    ["valid_ids_missing_from_silver", "kept_beyond_distinct_ids",
                                     "bronze_batches_not_taken_in"]))]
    written = [(SILVER_ACTIVITIES, (build_silver.get("versions_before") or {}).get(SILVER_ACTIVITIES.qualified),
                read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).where(F.col("batch_id").isin(batches)))]
    result = _gate_result(_validate_or_quarantine(spark, settings, interval, checks, written))
    ledger.record(spark, settings.lake_uri, "silver", interval.batch_id, batches, days)
    return result


def silver_reconciliation(spark, settings: Settings, batches: list[str], days: list[dt.date]):
    """One row of counts for the batches silver took in, from what is stored in each table: bronze
    rows in must equal silver rows kept + quarantine rows + duplicates (valid rows whose event id was
    already kept), every valid event id of the batches must be in silver, and no bronze batch up to
    the run's own that silver has not completed may be left out (a stranded batch)."""
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from jobs.silver import typed_activities
    from lake.ledger import pending_from_table
    from lake.tables import BRONZE_ACTIVITIES, QUARANTINE, SILVER_ACTIVITIES

    lake = settings.lake_uri
    bronze_all = read_table(spark, BRONZE_ACTIVITIES, lake)
    # Independent of build_silver's own list: which batches are pending now, as the ledger sees it.
    stranded = set(pending_from_table(spark, lake, "silver", max(batches), bronze_all).batches) - set(batches)
    bronze = bronze_all.where(F.col("batch_id").isin(batches))
    # Parsed once: the three counts below would otherwise each re-parse the raw batch.
    valid = typed_activities(bronze).where(F.col("rule").isNull()).select("event_id").persist()
    try:
        silver = read_table(spark, SILVER_ACTIVITIES, lake).where(F.col("event_date").isin(days))
        rows_in = bronze.count()
        kept = silver.where(F.col("batch_id").isin(batches)).count()
        quarantined = read_table(spark, QUARANTINE, lake).where(F.col("batch_id").isin(batches)).count()
        valid_rows = valid.count()
        missing = valid.join(silver.select("event_id"), "event_id", "left_anti").distinct().count()
        over_kept = max(0, kept - valid.distinct().count())  # a row inserted twice
    finally:
        valid.unpersist()
    accounted = kept + quarantined + (valid_rows - kept)
    return spark.createDataFrame([(rows_in, accounted, kept, quarantined, valid_rows - kept, missing, over_kept,
                                   len(stranded))],
                                 "rows_in long, accounted long, kept long, quarantined long, duplicates long, "
                                 "valid_ids_missing_from_silver long, kept_beyond_distinct_ids long, "
                                 "bronze_batches_not_taken_in long")


def build_gold(settings: Settings, interval: Interval) -> dict[str, Any]:
    from jobs.gold import build_gold as build

    return build(_spark(settings), settings, interval)


def gate_gold(settings: Settings, interval: Interval, build_gold: dict) -> dict[str, Any]:
    """Every gold row this run wrote: the recomputed days, the recomputed as-of days, and the
    progress rows of the batches' students; on success, records gold as completed in the ledger."""
    from pyspark.sql import functions as F

    from expectations import suites
    from jobs.common import read_table
    from lake import ledger
    from lake.tables import (GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_STUDENT_COURSE_ENGAGEMENT,
                             GOLD_STUDENT_COURSE_PROGRESS, GOLD_STUDENT_ENGAGEMENT, SILVER_ACTIVITIES)

    spark = _spark(settings)
    lake = settings.lake_uri
    days = [dt.date.fromisoformat(d) for d in build_gold["recomputed_dates"]]
    as_of_days = [dt.date.fromisoformat(d) for d in build_gold.get("engagement_dates", [])]
    batches = build_gold.get("input_batches") or [interval.batch_id]
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
    ]
    silver_events = read_table(spark, SILVER_ACTIVITIES, lake).where(F.col("event_date").isin(days)).count()
    gold_events = written[0][1].agg(F.sum("events")).first()[0] or 0
    checks = [(df, suite) for _, df, suite in written]
    checks.append((spark.createDataFrame([(silver_events, gold_events)], "silver_events long, gold_events long"),
                   suites.reconciliation_suite("gold.course_daily_engagement.reconciliation",
                                               [("silver_events", "gold_events")])))
    before = build_gold.get("versions_before") or {}
    result = _gate_result(_validate_or_quarantine(spark, settings, interval, checks,
                                                  [(t, before.get(t.qualified), df) for t, df, _ in written]))
    ledger.record(spark, lake, "gold", interval.batch_id, batches, days)
    return result


def _publish_pending(settings: Settings, interval: Interval, sink: str, publish: Callable[[list[dt.date]], dict]):
    """Publish the days of every gold completion this sink has not published yet, up to the run's
    own (a publish that failed on day D is repaired by D+1's run), then record the sink's completion."""
    from lake import ledger

    spark = _spark(settings)
    pending = ledger.pending_from_ledger(spark, settings.lake_uri, sink, "gold", interval.batch_id)
    days = list(pending.dates)
    result = publish(days)
    ledger.record(spark, settings.lake_uri, sink, interval.batch_id, pending.batches, days)
    return {**result, "published_dates": [d.isoformat() for d in days], "backlog_batches": len(pending.backlog)}


def publish_cassandra(settings: Settings, interval: Interval) -> dict:
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from lake.tables import GOLD_COURSE_DAILY
    from learntrack.sinks.cassandra_sink import publish_course_daily

    def publish(days: list[dt.date]) -> dict:
        rows = (r.asDict() for r in read_table(_spark(settings), GOLD_COURSE_DAILY, settings.lake_uri)
                .where(F.col("event_date").isin(days)).toLocalIterator())
        out = publish_course_daily(settings, days, rows)
        return {**out, "rows_out": out["rows_upserted"]}

    return _publish_pending(settings, interval, "publish_cassandra", publish)


def publish_redis(settings: Settings, interval: Interval) -> dict:
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from lake.tables import GOLD_STUDENT_ENGAGEMENT
    from learntrack.sinks.redis_sink import publish_scores

    rows = (r.asDict() for r in read_table(_spark(settings), GOLD_STUDENT_ENGAGEMENT, settings.lake_uri)
            .where(F.col("as_of_date") == F.lit(interval.as_of_date)).toLocalIterator())
    out = publish_scores(settings, interval.as_of_date, rows)
    return {**out, "rows_out": out.get("published")}


def publish_neo4j(settings: Settings, interval: Interval) -> dict:
    """Publish the logins of the days gold recomputed and run the multi-region query over them."""
    from pyspark.sql import functions as F

    from jobs.common import read_table
    from lake.tables import SILVER_ACTIVITIES
    from learntrack.sinks.neo4j_sink import multi_region_pairs, publish_access

    def publish(days: list[dt.date]) -> dict:
        logins = (read_table(_spark(settings), SILVER_ACTIVITIES, settings.lake_uri)
                  .where(F.col("event_date").isin(days) & (F.col("event_type") == "login"))
                  .select("event_id", "student_id", "region", "country", "ip", "device", "event_time"))
        result = publish_access(settings, (r.asDict() for r in logins.toLocalIterator()))
        result["rows_out"] = result.get("access_events")
        if days:
            since = dt.datetime.combine(min(days), dt.time(), dt.timezone.utc)
            until = dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
            pairs = multi_region_pairs(settings, since, until)
            result.update(multi_region_pairs=len(pairs),
                          multi_region_students=len({p["student_id"] for p in pairs}))
        return result

    return _publish_pending(settings, interval, "publish_neo4j", publish)


def sweep_source(settings: Settings, interval: Interval) -> dict[str, int]:
    """Make documents written without write metadata visible to the next extraction."""
    from learntrack.mongo_ops import client, sweep_write_metadata

    mongo = client(settings)
    try:
        return sweep_write_metadata(mongo[settings.mongo_db])
    finally:
        mongo.close()


def maintain_lake(settings: Settings, interval: Interval) -> dict[str, Any]:
    from jobs.maintenance import maintain as run

    tables = run(_spark(settings), settings, interval)
    return {"tables": tables, "rows_out": sum(t["retention_deleted_rows"] for t in tables)}


# ---------------------------------------------------------------------------------------------
# The stage chains, declared once: the DAGs, the CLI and the benchmark iterate these.

@dataclass(frozen=True)
class Stage:
    """One task: the function (its name is the task id), the stages it must follow besides those
    whose results it takes (its parameters without defaults after ``interval``), and what the
    scheduler needs to know."""

    fn: Callable[..., Any]
    after: tuple[str, ...] = ()
    #: Writes Delta tables: takes the single slot of the lake pool, so maintenance never runs
    #: beside it (Delta would reject one of two concurrent commits to a table).
    writes_lake: bool = True
    #: What the stage updates when it succeeds, as asset names (data-aware scheduling, lineage).
    outlets: tuple[str, ...] = ()
    timeout_minutes: int = 60

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def needs(self) -> tuple[str, ...]:
        """Upstream stages whose results this stage takes, by parameter name."""
        params = list(inspect.signature(self.fn).parameters.values())[2:]
        return tuple(p.name for p in params if p.default is inspect.Parameter.empty)

    @property
    def upstream(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.needs + self.after))


def _tables(*tables) -> tuple[str, ...]:
    return tuple(t.qualified for t in tables)


DAILY = (
    Stage(extract_bronze, outlets=_tables(*BRONZE_TABLES), timeout_minutes=120),
    Stage(gate_bronze, timeout_minutes=30),
    Stage(build_silver, after=("gate_bronze",), outlets=_tables(*SILVER_TABLES)),
    Stage(gate_silver, timeout_minutes=30),
    Stage(build_gold, after=("gate_silver",)),
    Stage(gate_gold, outlets=_tables(*GOLD_TABLES), timeout_minutes=30),
    Stage(publish_cassandra, after=("gate_gold",), writes_lake=False, outlets=("sink.cassandra.course_daily",)),
    Stage(publish_redis, after=("gate_gold",), writes_lake=False, outlets=("sink.redis.engagement",)),
    Stage(publish_neo4j, after=("gate_gold",), writes_lake=False, outlets=("sink.neo4j.access_graph",)),
)
MAINTENANCE = (
    Stage(maintain_lake, timeout_minutes=180),
    Stage(sweep_source, writes_lake=False, timeout_minutes=120),
)
STAGES = {s.name: s for s in DAILY + MAINTENANCE}


def run_chain(settings: Settings, interval: Interval, chain: tuple[Stage, ...] = DAILY,
              options: dict[str, dict] | None = None,
              on_stage: Callable[[Stage, Any, float], None] | None = None) -> dict[str, Any]:
    """Run a chain in-process, in order, each stage given its upstream results as the DAG gives
    them (the CLI, the benchmark and the tests use this; Airflow runs the same functions)."""
    results: dict[str, Any] = {}
    for stage in chain:
        kwargs = {name: results[name] for name in stage.needs}
        t0 = time.perf_counter()
        results[stage.name] = stage.fn(settings, interval, **kwargs, **(options or {}).get(stage.name, {}))
        if on_stage:
            on_stage(stage, results[stage.name], time.perf_counter() - t0)
    return results


METRIC_KEYS = ("rows_in", "rows_out", "backlog_batches", "gate_checks", "gate_failed")


def stage_metrics(result: Any) -> dict[str, Any]:
    """The figures gold.pipeline_runs keeps from a stage's result."""
    result = result if isinstance(result, dict) else {}
    return {k: result.get(k) for k in METRIC_KEYS}
