"""What every job shares: the interval a run covers and Delta write helpers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.timezone.utc


@dataclass(frozen=True)
class Interval:
    """A DAG run's data interval [start, end). ``batch_id`` names everything the run writes."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty interval {self.start} .. {self.end}")

    @property
    def batch_id(self) -> str:
        return self.end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    @property
    def as_of_date(self) -> dt.date:
        """The last day the interval covers (end is exclusive)."""
        return (self.end.astimezone(UTC) - dt.timedelta(microseconds=1)).date()

    @classmethod
    def for_day(cls, day: dt.date) -> "Interval":
        start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + dt.timedelta(days=1))


_KNOWN_TABLES: set[tuple[int, str]] = set()


def ensure_table(spark, table, lake_root: str) -> str:
    """Create the Delta table from its declaration if it does not exist; return its path.

    Remembered per SparkSession so that a stage touching a table many times checks it once.
    """
    from delta.tables import DeltaTable

    path = table.path(lake_root)
    key = (id(spark), path)
    if key in _KNOWN_TABLES:
        return path
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(table.spark_schema())
    if table.partition_by:
        builder = builder.partitionedBy(*table.partition_by)
    builder.execute()
    _KNOWN_TABLES.add(key)
    return path


def read_table(spark, table, lake_root: str):
    return spark.read.format("delta").load(ensure_table(spark, table, lake_root))


def replace_partitions(df, table, lake_root: str, column: str, values: list) -> None:
    """Overwrite exactly the partitions ``column IN values`` with ``df`` (idempotent recompute)."""
    path = ensure_table(df.sparkSession, table, lake_root)
    if not values:
        return
    literals = ", ".join(f"DATE'{v.isoformat()}'" if hasattr(v, "isoformat") else repr(v) for v in values)
    (df.select(*table.column_names).write.format("delta").mode("overwrite")
       .option("replaceWhere", f"{column} IN ({literals})").save(path))


def table_version(spark, table, lake_root: str) -> int:
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, ensure_table(spark, table, lake_root)).history(1).first()["version"])


def quarantine_path(table, lake_root: str, batch_id: str) -> str:
    return f"{lake_root.rstrip('/')}/quarantine/{table.qualified}/{batch_id}"


def quarantine_run_output(spark, lake_root: str, batch_id: str, written: list[tuple]) -> list[str]:
    """After a failed gate: copy what the run wrote, ``(table, version before the run, rows)``, to
    ``<lake>/quarantine/<table>/<batch_id>`` and restore each table to its version before the run,
    so readers of the lake never see data that failed its gate. Returns the tables restored."""
    from delta.tables import DeltaTable

    restored = []
    for table, before, rows in written:
        if before is None or table_version(spark, table, lake_root) <= before:
            continue
        rows.write.format("delta").mode("overwrite").save(quarantine_path(table, lake_root, batch_id))
        DeltaTable.forPath(spark, table.path(lake_root)).restoreToVersion(before)
        restored.append(table.qualified)
    return restored
