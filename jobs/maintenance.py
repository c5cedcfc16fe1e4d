"""Lake maintenance: retention by layer, compaction (OPTIMIZE) and VACUUM.

Retention follows the seeds: raw data 90 days, aggregates 2 years (settings). VACUUM keeps
``vacuum_retention_hours`` of history (default 7 days) so readers can still time-travel to any
version of the last week and a long-running reader never loses the files it is reading.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobs.common import Interval, ensure_table
from lake.tables import ALL_TABLES, Table
from learntrack.settings import Settings


def retention_cutoff(table: Table, settings: Settings, today: dt.date) -> tuple[str, dt.date] | None:
    """(date column, oldest day kept) for tables with a retention rule."""
    if not table.partition_by:
        return None
    column = table.partition_by[0]
    days = {"bronze": settings.raw_retention_days, "silver": settings.raw_retention_days,
            "gold": settings.aggregate_retention_days}[table.layer]
    return column, today - dt.timedelta(days=days)


def maintain(spark, settings: Settings, interval: Interval, tables: tuple[Table, ...] = ALL_TABLES) -> list[dict[str, Any]]:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    out = []
    for table in tables:
        path = ensure_table(spark, table, settings.lake_uri)
        delta = DeltaTable.forPath(spark, path)
        deleted = 0
        cutoff = retention_cutoff(table, settings, interval.as_of_date)
        if cutoff:
            column, keep_from = cutoff
            before = delta.history(1).first()["version"]
            delta.delete(F.col(column) < F.lit(keep_from))
            last = delta.history(1).first()
            if last["version"] != before and last["operation"] == "DELETE":
                deleted = int(last["operationMetrics"].get("numDeletedRows", 0) or 0)
        optimized = delta.optimize().executeCompaction().first()
        metrics = optimized["metrics"] if optimized else None
        delta.vacuum(settings.vacuum_retention_hours)
        out.append({"table": table.qualified, "retention_deleted_rows": deleted,
                    "files_removed": metrics["numFilesRemoved"] if metrics else 0,
                    "files_added": metrics["numFilesAdded"] if metrics else 0})
    return out
