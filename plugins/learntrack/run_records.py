"""Pipeline-run observability: one ``gold.pipeline_runs`` row per stage of a run, kept in the lake
(analysts, audits) and published to Cassandra (Grafana's pipeline-health panel)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from learntrack.intervals import UTC, Interval
from learntrack.settings import Settings


def _ts(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value)).astimezone(UTC)


def run_record_rows(run_id: str, interval: Interval, stages: list[dict]) -> list[dict]:
    """Rows in the declared column order; timestamps timezone-aware (Spark reads naive ones as the
    host's local time)."""
    from lake.tables import GOLD_PIPELINE_RUNS

    base = {"run_id": run_id, "batch_id": interval.batch_id, "interval_start": interval.start.astimezone(UTC),
            "interval_end": interval.end.astimezone(UTC)}
    out = []
    for stage in stages:
        row = {**base, **stage, "started_at": _ts(stage.get("started_at"))}
        out.append({c: row.get(c) for c in GOLD_PIPELINE_RUNS.column_names})
    return out


def write_run_records(settings: Settings, run_id: str, interval: Interval, stages: list[dict]) -> dict:
    from delta.tables import DeltaTable

    from lake.delta import ensure_table
    from lake.spark import spark_session
    from lake.tables import GOLD_PIPELINE_RUNS
    from learntrack.sinks.cassandra_sink import publish_pipeline_runs

    rows = run_record_rows(run_id, interval, stages)
    spark = spark_session(settings)
    df = spark.createDataFrame([tuple(r.values()) for r in rows], GOLD_PIPELINE_RUNS.spark_schema())
    (DeltaTable.forPath(spark, ensure_table(spark, GOLD_PIPELINE_RUNS, settings.lake_uri)).alias("t")
     .merge(df.alias("s"), "t.run_id = s.run_id AND t.stage = s.stage")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    return publish_pipeline_runs(settings, rows)
