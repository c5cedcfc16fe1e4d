"""Silver: typed, validated, deduplicated activities and the current student dimension.

Every bronze row of the run's batch ends in exactly one place: a new silver row, a duplicate of
an event id silver already holds (or that repeats inside the batch), or the quarantine with the
first rule it broke. Both writes are MERGEs on keys, so re-running a batch changes nothing.
The rules are ``learntrack.activity_model.validate_activity``, the write path's own, run on each
parsed document; "future" and "too old" are judged against the row's own write time so that the
outcome never depends on when the job runs.
"""

from __future__ import annotations

from typing import Any

from learntrack.intervals import Interval
from lake.delta import ensure_table, read_table, versions
from lake.tables import (BRONZE_ACTIVITIES, BRONZE_COURSES, BRONZE_STUDENTS, QUARANTINE, SILVER_ACTIVITIES,
                         SILVER_COURSE_ITEMS, SILVER_STUDENTS, SILVER_STUDENTS_HISTORY, SILVER_TABLES)
from learntrack import faults
from learntrack.settings import Settings

JUDGED_SCHEMA = ("rule STRING, event_id STRING, student_id STRING, course_id STRING, item_id STRING, "
                 "event_type STRING, event_time TIMESTAMP, session_id STRING, device STRING, region STRING, "
                 "country STRING, ip STRING, position_s DOUBLE, duration_s DOUBLE, from_position_s DOUBLE, "
                 "score DOUBLE, max_score DOUBLE")


_BRONZE_PASSTHROUGH = ("source_id", "source_updated_at", "raw", "batch_id", "ingest_date")


def typed_activities(bronze_df, max_age_days: int | None = None):
    """Judge each bronze row with the write path's own rules (``judge_raw_activity`` on the parsed
    document's top-level values) and return its typed columns plus ``rule`` (null when valid).

    One Python rule set for both paths (issue 11, finding 10): a regular expression over the raw
    JSON text cannot tell a top-level field from a nested one, or escaped text from BSON size.
    The rows cross to Python as Arrow record batches (``mapInArrow``), judged in a plain loop: a
    row-at-a-time UDF paid three times the judging itself in serialisation (issue 10).
    ``raw`` comes back for the refused rows only (the quarantine keeps it; silver has no raw
    column), so a cached batch does not hold every document's text twice.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    from lake.tables import _spark_type

    passthrough = bronze_df.select(*_BRONZE_PASSTHROUGH)
    schema = StructType([StructField(f.name, f.dataType, True) if f.name == "raw" else f
                         for f in passthrough.schema.fields]
                        + [StructField(f, _spark_type(t), True) for f, t in JUDGED_TYPES])

    def judge_batches(batches):
        import pyarrow as pa

        from lake.tables import _arrow_type
        from learntrack.activity_model import judge_raw_activity, utc_datetimes

        types = [_arrow_type(t) for _, t in JUDGED_TYPES]
        raw_at = _BRONZE_PASSTHROUGH.index("raw")  # the batches hold the passthrough columns, in order
        for batch in batches:
            raws = batch.column("raw").to_pylist()
            written = utc_datetimes(batch.column("source_updated_at"))
            outs = [judge_raw_activity(raw, at, max_age_days) for raw, at in zip(raws, written)]
            refused_raw = [raw if out["rule"] else None for raw, out in zip(raws, outs)]
            columns = batch.columns
            columns[raw_at] = pa.array(refused_raw, pa.string())
            yield pa.RecordBatch.from_arrays(
                columns + [pa.array([out.get(name) for out in outs], typ) for name, typ in zip(JUDGED_FIELDS, types)],
                names=[*_BRONZE_PASSTHROUGH, *JUDGED_FIELDS])

    judged = passthrough.mapInArrow(judge_batches, schema)
    return judged.select(*_BRONZE_PASSTHROUGH, *[F.col(f) for f in JUDGED_FIELDS if f != "rule"],
                         F.col("source_updated_at").alias("ingested_at"), F.col("rule")
                         ).withColumn("event_date", F.to_date("event_time"))


JUDGED_TYPES = tuple(tuple(part.strip().split(" ")) for part in JUDGED_SCHEMA.split(","))
JUDGED_FIELDS = tuple(name for name, _ in JUDGED_TYPES)


def build_silver(spark, settings: Settings, interval: Interval) -> dict[str, Any]:
    """Move every bronze batch silver has not completed, up to the run's own, into silver (ADR 17);
    return the counts, the batches taken in and the affected days."""
    from concurrent.futures import ThreadPoolExecutor

    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lake.ledger import pending_from_table

    lake = settings.lake_uri
    versions_before = versions(spark, settings, SILVER_TABLES)
    bronze = spark.read.format("delta").load(ensure_table(spark, BRONZE_ACTIVITIES, lake))
    pending = pending_from_table(settings, "silver", interval.batch_id, BRONZE_ACTIVITIES)
    batch = typed_activities(bronze.where(pending.batch_filter()), settings.raw_retention_days).persist()
    # The profile tables read other bronze tables and write other silver tables: they are built on a
    # second thread while the activities are judged and merged, overlapping their fixed costs (as
    # gold's writes, ADR 36). Each is a keyed MERGE, so the order does not change the outcome, and a
    # failed gate restores every silver table to ``versions_before`` whichever committed.
    profiles = ThreadPoolExecutor(max_workers=1, thread_name_prefix="silver-profiles")
    students = profiles.submit(build_student_dimension, spark, settings, interval, pending.batch_filter())
    course_items = profiles.submit(build_course_items, spark, settings, interval, pending.batch_filter())
    try:
        # One job judges the batch (it is cached) and counts it: rows per (rule, event day).
        tally = batch.groupBy("rule", "event_date").count().collect()
        rows_in = sum(r["count"] for r in tally)
        by_rule = {}
        for r in tally:
            if r["rule"] is not None:
                by_rule[r["rule"]] = by_rule.get(r["rule"], 0) + r["count"]
        quarantined = sum(by_rule.values())
        valid = rows_in - quarantined
        days = sorted(r["event_date"] for r in tally if r["rule"] is None)
        bad = batch.where(F.col("rule").isNotNull())
        good = batch.where(F.col("rule").isNull())

        # Inside the batch keep the first write of each event id; the rest are duplicates.
        first = Window.partitionBy("event_id").orderBy("ingested_at", "source_id")
        unique = (good.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n"))
        # An id silver already holds on any day is a duplicate too (the same id written again with
        # another event time would otherwise be kept twice). Reads silver's event_id column only.
        held = read_table(spark, SILVER_ACTIVITIES, lake).select("event_id").join(
            unique.select("event_id"), "event_id", "left_semi")
        unique = unique.join(held, "event_id", "left_anti")

        q_path = ensure_table(spark, QUARANTINE, lake)
        if quarantined:  # a MERGE of nothing would still be two Delta jobs
            (DeltaTable.forPath(spark, q_path).alias("t")
             .merge(bad.select(F.lit("activities").alias("source_table"), "source_id", "source_updated_at", "rule",
                               "raw", "batch_id", "ingest_date").alias("s"),
                    "t.source_table = s.source_table AND t.source_id = s.source_id "
                    "AND t.source_updated_at = s.source_updated_at")
             .whenNotMatchedInsertAll().execute())
        faults.point(settings, "silver.quarantine_merged")

        target = DeltaTable.forPath(spark, ensure_table(spark, SILVER_ACTIVITIES, lake))
        # A retry carries its event's time, so a duplicate can only be in the batch's own days:
        # naming them lets the MERGE read those partitions instead of the whole history.
        in_days = (" AND t.event_date IN (" + ", ".join(f"DATE'{d}'" for d in days) + ")") if days else ""
        if valid:
            (target.alias("t")
             .merge(unique.select(*SILVER_ACTIVITIES.column_names).alias("s"), "t.event_id = s.event_id" + in_days)
             .whenNotMatchedInsertAll().execute())
        inserted = merged_rows_inserted(settings, SILVER_ACTIVITIES, versions_before[SILVER_ACTIVITIES.qualified])
    finally:
        batch.unpersist()
        profiles.shutdown(wait=True)  # a failure above still lets the profile MERGEs finish, not half-run

    students, course_items = students.result(), course_items.result()
    result = {
        "batch_id": interval.batch_id, "input_batches": list(pending.batches), "backlog_batches": len(pending.backlog),
        "rows_in": rows_in, "rows_out": inserted, "inserted": inserted,
        "duplicates": valid - inserted, "quarantined": quarantined, "quarantine_by_rule": by_rule,
        "affected_dates": [d.isoformat() for d in days], "students_upserted": students,
        "course_items_upserted": course_items, "versions_before": versions_before,
    }
    return result  # gate_silver reconciles these counts against what landed in the tables


def merged_rows_inserted(settings: Settings, table, version_before: int) -> int:
    """Rows the MERGE that followed ``version_before`` inserted (0 when it committed nothing), read
    from the commit's metrics in the Delta log through delta-rs (a Spark history job before)."""
    from lake import delta_rs

    last = delta_rs.open_table(settings, table).history(1)[0]
    if last["version"] == version_before or last["operation"] != "MERGE":
        return 0
    return int(last.get("operationMetrics", {}).get("numTargetRowsInserted", 0))


def build_student_dimension(spark, settings: Settings, interval: Interval, batches=None) -> int:
    """Upsert the latest profile version of each student changed in the batches (a Column filter on
    ``batch_id``; default: the run's own batch)."""
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lake = settings.lake_uri
    bronze = spark.read.format("delta").load(ensure_table(spark, BRONZE_STUDENTS, lake))
    schema = ("`_id` STRING, name STRING, email STRING, home_region STRING, country STRING, "
              "subscription STRING, enrolled_courses ARRAY<STRING>")
    latest = Window.partitionBy("student_id").orderBy(F.col("updated_at").desc())
    versions = (bronze.where(F.col("batch_id") == interval.batch_id if batches is None else batches)
                .select(F.from_json("raw", schema).alias("j"), "source_updated_at")
                .select(F.col("j._id").alias("student_id"), "j.name", "j.email", "j.home_region", "j.country",
                        "j.subscription", "j.enrolled_courses", F.col("source_updated_at").alias("updated_at"))
                .where(F.col("student_id").isNotNull())
                .withColumn("_n", F.row_number().over(latest)))
    changed = versions.where("_n = 1").drop("_n")
    path = ensure_table(spark, SILVER_STUDENTS, lake)
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(changed.alias("s"), "t.student_id = s.student_id")
     .whenMatchedUpdateAll(condition="s.updated_at > t.updated_at")
     .whenNotMatchedInsertAll().execute())
    build_student_history(spark, lake, versions.drop("_n"))
    return changed.count()


def build_student_history(spark, lake: str, versions) -> None:
    """SCD2: add the batch's profile versions to the touched students' stored versions and
    recompute their validity ranges. A version is keyed by its updated_at, so re-applying a batch,
    or a batch arriving late, yields the same rows."""
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    path = ensure_table(spark, SILVER_STUDENTS_HISTORY, lake)
    attrs = [c for c in SILVER_STUDENTS.column_names if c != "updated_at"]
    new = versions.select(*attrs, F.col("updated_at").alias("valid_from"))
    stored = (read_table(spark, SILVER_STUDENTS_HISTORY, lake)
              .join(new.select("student_id").distinct(), "student_id", "left_semi").select(*attrs, "valid_from"))
    every = stored.unionByName(new).dropDuplicates(["student_id", "valid_from"])
    valid_to = F.lead("valid_from").over(Window.partitionBy("student_id").orderBy("valid_from"))
    rebuilt = every.withColumn("valid_to", valid_to).withColumn("is_current", F.col("valid_to").isNull())
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(rebuilt.alias("s"), "t.student_id = s.student_id AND t.valid_from = s.valid_from")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())


def build_course_items(spark, settings: Settings, interval: Interval, batches=None) -> int:
    """Replace the content items of every course changed in the batches (as for students) with its
    latest version."""
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lake = settings.lake_uri
    bronze = spark.read.format("delta").load(ensure_table(spark, BRONZE_COURSES, lake))
    schema = ("`_id` STRING, content STRUCT<videos: ARRAY<STRUCT<video_id: STRING, duration_s: DOUBLE>>, "
              "quizzes: ARRAY<STRUCT<quiz_id: STRING, max_score: DOUBLE, passing_score: DOUBLE>>, "
              "pdfs: ARRAY<STRUCT<pdf_id: STRING>>>")
    latest = Window.partitionBy("source_id").orderBy(F.col("source_updated_at").desc())
    courses = (bronze.where(F.col("batch_id") == interval.batch_id if batches is None else batches)
               .withColumn("_n", F.row_number().over(latest)).where("_n = 1")
               .select(F.from_json("raw", schema).alias("j"), F.col("source_updated_at").alias("updated_at"))
               .where(F.col("j._id").isNotNull()))
    videos = courses.select(F.col("j._id").alias("course_id"), "updated_at",
                            F.explode_outer("j.content.videos").alias("v")).where(F.col("v").isNotNull()).select(
        "course_id", F.col("v.video_id").alias("item_id"), F.lit("video").alias("item_type"),
        F.col("v.duration_s").alias("duration_s"), F.lit(None).cast("double").alias("max_score"),
        F.lit(None).cast("double").alias("passing_score"), "updated_at")
    quizzes = courses.select(F.col("j._id").alias("course_id"), "updated_at",
                             F.explode_outer("j.content.quizzes").alias("q")).where(F.col("q").isNotNull()).select(
        "course_id", F.col("q.quiz_id").alias("item_id"), F.lit("quiz").alias("item_type"),
        F.lit(None).cast("double").alias("duration_s"), F.col("q.max_score").alias("max_score"),
        F.col("q.passing_score").alias("passing_score"), "updated_at")
    pdfs = courses.select(F.col("j._id").alias("course_id"), "updated_at",
                          F.explode_outer("j.content.pdfs").alias("p")).where(F.col("p").isNotNull()).select(
        "course_id", F.col("p.pdf_id").alias("item_id"), F.lit("pdf").alias("item_type"),
        F.lit(None).cast("double").alias("duration_s"), F.lit(None).cast("double").alias("max_score"),
        F.lit(None).cast("double").alias("passing_score"), "updated_at")
    # Only a version at least as new as the stored one replaces a course's items: re-running an older
    # batch after the course changed must not bring its old content back (issue 11, finding 5).
    path = ensure_table(spark, SILVER_COURSE_ITEMS, lake)
    stored = (read_table(spark, SILVER_COURSE_ITEMS, lake).groupBy("course_id")
              .agg(F.max("updated_at").alias("stored_at")))
    newer = (courses.select(F.col("j._id").alias("course_id"), "updated_at").join(stored, "course_id", "left")
             .where(F.col("stored_at").isNull() | (F.col("updated_at") >= F.col("stored_at"))))
    changed = sorted({r["course_id"] for r in newer.select("course_id").collect()})
    items = (videos.unionByName(quizzes).unionByName(pdfs)
             .where(F.col("item_id").isNotNull() & F.col("course_id").isin(changed))).persist()
    try:
        target = DeltaTable.forPath(spark, path)
        if changed:  # one MERGE: a changed course's items are replaced whole, items it lost are deleted
            (target.alias("t")
             .merge(items.select(*SILVER_COURSE_ITEMS.column_names).alias("s"),
                    "t.course_id = s.course_id AND t.item_id = s.item_id")
             .whenMatchedUpdateAll().whenNotMatchedInsertAll()
             .whenNotMatchedBySourceDelete(F.col("t.course_id").isin(changed)).execute())
        return items.count()
    finally:
        items.unpersist()
