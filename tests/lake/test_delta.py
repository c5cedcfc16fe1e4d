"""The Spark-side Delta helpers of ``lake.delta``."""

from __future__ import annotations

import datetime as dt

import pytest

pytestmark = pytest.mark.spark


def test_versions_read_through_delta_rs_are_sparks_versions_and_a_missing_table_is_created(spark, fresh_lake):
    """The versions a stage records before it writes (a failed gate restores them) come from the
    Delta log through delta-rs; they must be the versions Spark's history gives, and a table not
    written yet is created from its declaration (version 0), as ``table_version`` did."""
    from lake.delta import ensure_table, replace_partitions, table_version, versions
    from lake.tables import GOLD_COURSE_DAILY, GOLD_SHARED_ACCESS

    lake = fresh_lake.lake_uri
    tables = (GOLD_COURSE_DAILY, GOLD_SHARED_ACCESS)
    assert versions(spark, fresh_lake, tables) == {t.qualified: 0 for t in tables}
    ensure_table(spark, GOLD_SHARED_ACCESS, lake)
    rows = spark.createDataFrame([(dt.date(2026, 3, d), "ip", "10.0.0.1", 3, ["s1", "s2", "s3"]) for d in (1, 2)],
                                 GOLD_SHARED_ACCESS.spark_schema())
    for _ in range(3):  # three commits
        replace_partitions(rows, GOLD_SHARED_ACCESS, lake, "event_date", [dt.date(2026, 3, 1), dt.date(2026, 3, 2)])
    got = versions(spark, fresh_lake, tables)
    assert got == {t.qualified: table_version(spark, t, lake) for t in tables}
    assert got == {GOLD_COURSE_DAILY.qualified: 0, GOLD_SHARED_ACCESS.qualified: 3}
