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

from lake.tables import BRONZE_TABLES, GOLD_TABLES, SILVER_TABLES
from learntrack.intervals import Interval
from learntrack.settings import Settings


Progress = Callable[[str], None]


def _spark(settings: Settings):
    from lake.spark import spark_session

    return spark_session(settings)


def extract_bronze(settings: Settings, interval: Interval, progress: Progress | None = None) -> dict[str, Any]:
    from jobs.bronze import extract_bronze as extract

    sources = extract(settings, interval, progress)  # through delta-rs: no JVM (ADR 32)
    return {"sources": sources, "rows_out": sum(s["extracted"] for s in sources)}


def gate_bronze(settings: Settings, interval: Interval, extract_bronze: dict) -> dict[str, Any]:
    """Each source's batch holds what extraction committed; MongoDB's recent buckets are all in bronze."""
    from expectations import gates

    return gates.gate_bronze(_spark(settings), settings, interval, extract_bronze)


def build_silver(settings: Settings, interval: Interval) -> dict[str, Any]:
    from jobs.silver import build_silver as build

    return build(_spark(settings), settings, interval)


def gate_silver(settings: Settings, interval: Interval, build_silver: dict) -> dict[str, Any]:
    """Silver of the affected days and the reconciliation of every bronze batch taken in."""
    from expectations import gates

    return gates.gate_silver(_spark(settings), settings, interval, build_silver)


def build_gold(settings: Settings, interval: Interval) -> dict[str, Any]:
    from jobs.gold import build_gold as build

    return build(_spark(settings), settings, interval)


def gate_gold(settings: Settings, interval: Interval, build_gold: dict) -> dict[str, Any]:
    """Every gold row this run wrote, and silver's events of the recomputed days equal gold's."""
    from expectations import gates

    return gates.gate_gold(_spark(settings), settings, interval, build_gold)


def _publish_pending(settings: Settings, interval: Interval, sink: str,
                     publish: Callable[[list[dt.date], list[str]], dict], upstream: str = "gold"):
    """Publish the days of every ``upstream`` completion this sink has not published yet, up to the
    run's own (a publish that failed on day D is repaired by D+1's run), then record the sink's
    completion. ``upstream`` "gold" lists event days; "gold_snapshots" the as-of days. ``publish``
    gets the days and the bronze batches behind them (the run's own, the backlog's, their inputs)."""
    from lake import ledger

    pending = ledger.pending_from_ledger(settings, sink, upstream, interval.batch_id)
    days = list(pending.dates)
    result = publish(days, list(pending.batches))
    ledger.record(settings, sink, interval.batch_id, pending.batches, days)
    return {**result, "published_dates": [d.isoformat() for d in days], "backlog_batches": len(pending.backlog)}


def _gold_rows(settings: Settings, table, column: str, days: list[dt.date]):
    """The rows of a gold table for ``days`` (its partition column), streamed through delta-rs:
    the publish stages need no JVM (ADR 30)."""
    import pyarrow.dataset as ds

    from lake import delta_rs

    return delta_rs.rows(settings, table, ds.field(column).isin(days)) if days else iter(())


def publish_cassandra(settings: Settings, interval: Interval) -> dict:
    """Every Cassandra read table: course days, alerts and shared access by the event days gold
    recomputed; engagement history, segments and the funnel by the as-of days it wrote."""
    from lake import delta_rs
    from lake.tables import (GOLD_COMPLETION_FUNNEL, GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_SHARED_ACCESS,
                             GOLD_STUDENT_ENGAGEMENT)
    from learntrack.sinks import cassandra_sink as sink

    def by_event_day(days: list[dt.date], session) -> dict:
        out = sink.publish_course_daily(settings, days, _gold_rows(settings, GOLD_COURSE_DAILY, "event_date", days),
                                        session)
        alerts = sink.publish_multi_region_alerts(
            settings, days, _gold_rows(settings, GOLD_MULTI_REGION, "event_date", days), session)
        shared = sink.publish_shared_access(
            settings, days, _gold_rows(settings, GOLD_SHARED_ACCESS, "event_date", days), session)
        return {**out, "multi_region_alerts": alerts["rows_upserted"], "shared_access": shared["rows_upserted"]}

    def by_as_of_day(days: list[dt.date], session) -> dict:
        eng = sink.publish_student_engagement(
            settings, days, _gold_rows(settings, GOLD_STUDENT_ENGAGEMENT, "as_of_date", days), session)
        funnel_rows = delta_rs.rows(settings, GOLD_COMPLETION_FUNNEL)
        funnel = sink.publish_completion_funnel(settings, days, funnel_rows, session)  # one snapshot, mirrored
        return {"student_engagement_rows": eng["rows_upserted"], "funnel_rows": funnel["rows_upserted"]}

    with sink.open_session(settings) as session:  # one connection for all five publishes
        daily = _publish_pending(settings, interval, "publish_cassandra", lambda d, _: by_event_day(d, session))
        snapshots = _publish_pending(settings, interval, "publish_cassandra.snapshots",
                                     lambda d, _: by_as_of_day(d, session), "gold_snapshots")
    return {**daily, "rows_out": daily["rows_upserted"] + snapshots["student_engagement_rows"]
            + snapshots["funnel_rows"] + daily["multi_region_alerts"] + daily["shared_access"],
            "snapshots": snapshots}


def _digest(table) -> str:
    """An order-independent digest of an Arrow table's rows (DuckDB's row hashes, summed exactly)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("t", table)
        total, rows = con.execute("SELECT sum(hash(t)), count(*) FROM t").fetchone()
    finally:
        con.close()
    return f"{total}:{rows}"


def _rows(table, batch_rows: int = 20_000):
    from lake.delta_rs import arrow_rows

    return arrow_rows(table.to_batches(batch_rows))


def publish_redis(settings: Settings, interval: Interval) -> dict:
    """The newest as-of day gold holds, not only the run's: a retried or backfilled older day makes
    the engagement chain rewrite every later day, and the served snapshot must follow."""
    import hashlib

    import pyarrow.dataset as ds

    from lake import delta_rs
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT
    from learntrack.sinks.redis_sink import publish_scores

    # the as-of days gold holds, from the Delta log's partition values (no data read)
    held = [dt.date.fromisoformat(d) for d in delta_rs.partition_values(
        delta_rs.open_table(settings, GOLD_STUDENT_ENGAGEMENT), "as_of_date")]
    as_of = max(filter(None, [*held, interval.as_of_date]))
    on_day = ds.field("as_of_date") == as_of
    students = delta_rs.scan(settings, GOLD_STUDENT_ENGAGEMENT, on_day)
    courses = delta_rs.scan(settings, GOLD_STUDENT_COURSE_ENGAGEMENT, on_day)
    digest = hashlib.sha256(f"{_digest(students)}|{_digest(courses)}".encode()).hexdigest()
    out = publish_scores(settings, as_of, _rows(students), _rows(courses), digest=digest)
    live = reconcile_live(settings, interval, as_of, students)
    return {**out, "live": live, "rows_out": out.get("published")}


def reconcile_live(settings: Settings, interval: Interval, as_of: dt.date, students) -> dict:
    """Re-base the live scores on gold's ``as_of`` (``students``: its student_engagement rows, as
    Arrow) and replace every progress key with gold's row, then re-apply what MongoDB received after
    the interval gold covers (so no fresh resume position is lost); repairs whatever the
    write-through path missed or got wrong."""
    from lake import delta_rs
    from lake.tables import GOLD_STUDENT_COURSE_PROGRESS
    from learntrack.mongo_ops import activities_written_since, client
    from learntrack.sinks import redis_live

    rebased = redis_live.rebase_scores(settings, as_of, _rows(students.select(["student_id", "score"])))
    mongo = client(settings)
    try:
        tail = activities_written_since(mongo[settings.mongo_db], interval.end)
        reconciled = redis_live.reconcile_progress(settings, delta_rs.rows(settings, GOLD_STUDENT_COURSE_PROGRESS),
                                                   tail)
    finally:
        mongo.close()
    return {"scores": rebased, "progress": reconciled}


def publish_neo4j(settings: Settings, interval: Interval) -> dict:
    """Publish the logins the pending batches brought to the days gold recomputed, then run the
    Cypher checks over those days and record their (:Alert) nodes (multi-region access, shared IPs).

    Silver's rows are insert-only and each belongs to the one batch that brought it, so the logins
    of the pending batches are all a day's logins the graph does not hold yet: a late event no
    longer republishes its whole day (2.5 s for five days against 0.5 s for the batch, ADR 38).
    The checks still read whole days, old accesses and new."""
    import pyarrow.dataset as ds

    from lake import delta_rs
    from lake.tables import SILVER_ACTIVITIES
    from learntrack.sinks.neo4j_sink import detect_and_record, publish_access

    def publish(days: list[dt.date], batches: list[str]) -> dict:
        logins = delta_rs.rows(settings, SILVER_ACTIVITIES,
                               ds.field("event_date").isin(days) & (ds.field("event_type") == "login")
                               & ds.field("batch_id").isin(batches),
                               columns=["event_id", "student_id", "region", "country", "ip", "device", "event_time"]
                               ) if days else iter(())
        result = publish_access(settings, logins)
        result["rows_out"] = result.get("access_events")
        if days:
            since = dt.datetime.combine(min(days), dt.time(), dt.timezone.utc)
            until = dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
            found = detect_and_record(settings, since, until)
            pairs = found["multi_region"]
            result.update(multi_region_pairs=len(pairs), multi_region_students=len({p["student_id"] for p in pairs}),
                          shared_access=len(found["shared_access"]))
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


def call_stage(stage: Stage, settings: Settings, interval: Interval, **kwargs: Any) -> Any:
    """Run one stage; a store's connection failure becomes a ``StoreUnavailable`` that names the
    store, its address and where to look (the driver's error stays attached as the cause)."""
    from learntrack.store_errors import explain

    try:
        return stage.fn(settings, interval, **kwargs)
    except Exception as exc:
        clear = explain(settings, exc)
        if clear is None:
            raise
        raise clear from exc


def run_chain(settings: Settings, interval: Interval, chain: tuple[Stage, ...] = DAILY,
              options: dict[str, dict] | None = None,
              on_stage: Callable[[Stage, Any, float], None] | None = None,
              done: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a chain in-process, in order, each stage given its upstream results as the DAG gives
    them (the CLI, the benchmark and the tests use this; Airflow runs the same functions).
    ``done``: results of stages that already ran for this interval; they are not run again."""
    results: dict[str, Any] = dict(done or {})
    for stage in chain:
        if stage.name in results:
            continue
        kwargs = {name: results[name] for name in stage.needs}
        t0 = time.perf_counter()
        results[stage.name] = call_stage(stage, settings, interval, **kwargs, **(options or {}).get(stage.name, {}))
        if on_stage:
            on_stage(stage, results[stage.name], time.perf_counter() - t0)
    return results


METRIC_KEYS = ("rows_in", "rows_out", "backlog_batches", "gate_checks", "gate_failed")


def stage_metrics(result: Any) -> dict[str, Any]:
    """The figures gold.pipeline_runs keeps from a stage's result."""
    result = result if isinstance(result, dict) else {}
    return {k: result.get(k) for k in METRIC_KEYS}
