"""Maintenance on a small lake: retention deletes only what is older than the layer's limit,
compaction reduces the file count, and time travel to the last version before still works."""

import datetime as dt

import pytest

pytestmark = pytest.mark.spark


def test_retention_compaction_and_time_travel(spark, fresh_lake):
    from pyspark.sql import functions as F

    from learntrack.intervals import Interval
    from lake.delta import ensure_table, read_table
    from jobs.maintenance import maintain
    from lake.tables import GOLD_COURSE_DAILY, SILVER_ACTIVITIES

    today = dt.date(2026, 6, 1)
    path = ensure_table(spark, GOLD_COURSE_DAILY, fresh_lake.lake_uri)
    days = [today - dt.timedelta(days=n) for n in (1, 2, 800)]  # 800 days: beyond the 2-year retention
    for course in ("c1", "c2", "c3"):  # three commits: three small files in every day's partition
        rows = [(day, course, 1, 1, 0, 0, 0, 0, 0, 1, 0.0, None, None, 1) for day in days]
        spark.createDataFrame(rows, GOLD_COURSE_DAILY.spark_schema()).write.format("delta").mode("append").save(path)
    version_before = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg(F.max("version")).first()[0]

    report = {r["table"]: r for r in maintain(spark, fresh_lake, Interval.for_day(today),
                                                tables=(GOLD_COURSE_DAILY, SILVER_ACTIVITIES))}
    gold = report["gold.course_daily_engagement"]
    assert gold["retention_deleted_rows"] == 3
    assert gold["files_removed"] > gold["files_added"] >= 1
    kept = sorted({r["event_date"] for r in read_table(spark, GOLD_COURSE_DAILY, fresh_lake.lake_uri).collect()})
    assert kept == sorted(days[:2])
    old = spark.read.format("delta").option("versionAsOf", version_before).load(path)
    assert old.count() == 9  # time travel to before maintenance still reads every row
    assert report["silver.activities"]["retention_deleted_rows"] == 0  # an empty table is fine too


def test_retention_keeps_the_newest_bronze_day_which_carries_the_watermark(spark, fresh_lake):
    """Finding 8: courses unchanged for 90 days lost every bronze row to retention, and with them
    the extraction watermark: the next run re-extracted the whole collection."""
    from jobs.bronze import bronze_state
    from learntrack.intervals import Interval
    from lake.delta import ensure_table, read_table
    from jobs.maintenance import maintain
    from lake.tables import BRONZE_COURSES

    old = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)
    older = old - dt.timedelta(days=3)
    path = ensure_table(spark, BRONZE_COURSES, fresh_lake.lake_uri)
    rows = [(cid, f'{{"_id": "{cid}"}}', at, "b", at, at.date()) for cid, at in (("c1", older), ("c2", old))]
    spark.createDataFrame(rows, BRONZE_COURSES.spark_schema()).write.format("delta").mode("append").save(path)
    before, _ = bronze_state(fresh_lake, BRONZE_COURSES, "b")

    report = maintain(spark, fresh_lake, Interval.for_day(old.date() + dt.timedelta(days=200)),
                      tables=(BRONZE_COURSES,))
    assert report[0]["retention_deleted_rows"] == 1  # the older day goes; the newest stays
    assert [r["source_id"] for r in read_table(spark, BRONZE_COURSES, fresh_lake.lake_uri).collect()] == ["c2"]
    assert bronze_state(fresh_lake, BRONZE_COURSES, "b")[0] == before == (old, "c2")
