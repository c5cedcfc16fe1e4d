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
    """MERGE the run's rows into gold.pipeline_runs on (run_id, stage) through delta-rs (the
    record_run task needs no JVM), then publish them."""
    import pyarrow as pa

    from lake import delta_rs
    from lake.tables import GOLD_PIPELINE_RUNS
    from learntrack.sinks.cassandra_sink import publish_pipeline_runs

    rows = run_record_rows(run_id, interval, stages)
    source = pa.Table.from_pylist(rows, schema=GOLD_PIPELINE_RUNS.arrow_schema())
    (delta_rs.open_for_write(settings, GOLD_PIPELINE_RUNS)
     .merge(source, "t.run_id = s.run_id AND t.stage = s.stage", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all().execute())
    return publish_pipeline_runs(settings, rows)
