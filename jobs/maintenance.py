"""Lake maintenance: retention by layer, compaction (OPTIMIZE) and VACUUM.

Retention follows the seeds: raw data 90 days, aggregates 2 years (settings). VACUUM keeps
``vacuum_retention_hours`` of history (default 7 days) so readers can still time-travel to any
version of the last week and a long-running reader never loses the files it is reading.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from learntrack.intervals import Interval
from lake.delta import ensure_table
from lake import ledger
from lake.tables import ALL_TABLES, SILVER_ACTIVITIES, Table
from learntrack.settings import Settings


#: The ledger's record of silver's retention: its dates hold the oldest day silver still keeps whole.
RETENTION_STAGE = "retention.silver.activities"


def silver_horizon(settings: Settings) -> dt.date | None:
    """The oldest event day silver still holds whole (None before the first retention run)."""
    return max((d for r in ledger.completions(settings, RETENTION_STAGE) for d in r["dates"]), default=None)


def retention_cutoff(table: Table, settings: Settings, today: dt.date) -> tuple[str, dt.date] | None:
    """(date column, oldest day kept) for tables with a retention rule."""
    if table.retention_setting is None:
        return None
    days = getattr(settings, table.retention_setting)
    return table.partition_by[0], today - dt.timedelta(days=days)


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
            if table.layer == "bronze":
                # The newest day of a bronze table carries the extraction watermark: deleting it
                # (a collection unchanged for the retention period, such as courses) would make the
                # next run re-extract the whole collection (issue 11, finding 8).
                newest = spark.read.format("delta").load(path).agg(F.max(column)).first()[0]
                keep_from = min(keep_from, newest) if newest else keep_from
            if table == SILVER_ACTIVITIES:
                # Gold never recomputes a day older than this: silver no longer holds it whole.
                ledger.record(settings, RETENTION_STAGE, interval.batch_id, [], [keep_from])
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
