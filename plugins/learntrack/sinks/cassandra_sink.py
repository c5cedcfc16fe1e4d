"""Cassandra: the published daily course aggregates that Grafana reads.

Two query tables over the same rows (Cassandra is modelled per query): by day (top courses on
a day) and by course (one course over time). A recomputed day replaces its rows exactly: courses
no longer present that day are deleted, the rest are upserted with prepared statements.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping

from learntrack import faults
from learntrack.settings import Settings

METRICS = ("active_learners", "events", "page_views", "video_plays", "video_completions", "quiz_attempts",
           "assignment_submissions", "logins", "video_watch_seconds", "avg_quiz_score_pct", "quiz_pass_rate",
           "new_learners")
_DOUBLES = {"video_watch_seconds", "avg_quiz_score_pct", "quiz_pass_rate"}
_METRIC_TYPES = {m: "double" if m in _DOUBLES else "bigint" for m in METRICS}
_COLUMNS_DDL = ", ".join(f"{m} {t}" for m, t in _METRIC_TYPES.items())

TABLE_BY_DAY = "course_daily_engagement_by_day"
TABLE_BY_COURSE = "course_daily_engagement_by_course"


def connect(settings: Settings):
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    auth = (PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password)
            if settings.cassandra_username else None)
    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port, auth_provider=auth,
                      load_balancing_policy=DCAwareRoundRobinPolicy(), protocol_version=5)
    return cluster, cluster.connect()


def ensure_schema(session, settings: Settings) -> None:
    replication = ", ".join(f"'{k}': {v!r}" if isinstance(v, str) else f"'{k}': {v}"
                            for k, v in settings.cassandra_replication_map.items())
    ks = settings.cassandra_keyspace
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{{replication}}}")
    session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.{TABLE_BY_DAY} (event_date date, course_id text, "
                    f"{_COLUMNS_DDL}, PRIMARY KEY ((event_date), course_id))")
    session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.{TABLE_BY_COURSE} (course_id text, event_date date, "
                    f"{_COLUMNS_DDL}, PRIMARY KEY ((course_id), event_date)) "
                    "WITH CLUSTERING ORDER BY (event_date DESC)")
    columns = session.prepare("SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?")
    for table in (TABLE_BY_DAY, TABLE_BY_COURSE):  # metrics added since the table was created
        present = {r.column_name for r in session.execute(columns, (ks, table))}
        for metric, ctype in _METRIC_TYPES.items():
            if metric not in present:
                session.execute(f"ALTER TABLE {ks}.{table} ADD {metric} {ctype}")


def publish_course_daily(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping]) -> dict:
    """Make Cassandra hold exactly ``rows`` for each of ``days``."""
    from cassandra.concurrent import execute_concurrent_with_args

    days = sorted(set(days))
    by_day: dict[dt.date, list[Mapping]] = {d: [] for d in days}
    for row in rows:
        by_day.setdefault(row["event_date"], []).append(row)
    cluster, session = connect(settings)
    try:
        ensure_schema(session, settings)
        ks = settings.cassandra_keyspace
        cols = ", ".join(METRICS)
        marks = ", ".join("?" for _ in METRICS)
        upsert_day = session.prepare(f"INSERT INTO {ks}.{TABLE_BY_DAY} (event_date, course_id, {cols}) "
                                     f"VALUES (?, ?, {marks})")
        upsert_course = session.prepare(f"INSERT INTO {ks}.{TABLE_BY_COURSE} (course_id, event_date, {cols}) "
                                        f"VALUES (?, ?, {marks})")
        existing = session.prepare(f"SELECT course_id FROM {ks}.{TABLE_BY_DAY} WHERE event_date = ?")
        delete_day = session.prepare(f"DELETE FROM {ks}.{TABLE_BY_DAY} WHERE event_date = ? AND course_id = ?")
        delete_course = session.prepare(f"DELETE FROM {ks}.{TABLE_BY_COURSE} WHERE course_id = ? AND event_date = ?")
        upserted = deleted = 0
        for day, day_rows in sorted(by_day.items()):
            keep = {r["course_id"] for r in day_rows}
            stale = [r.course_id for r in session.execute(existing, (day,)) if r.course_id not in keep]
            if stale:
                execute_concurrent_with_args(session, delete_day, [(day, c) for c in stale], raise_on_first_error=True)
                execute_concurrent_with_args(session, delete_course, [(c, day) for c in stale],
                                             raise_on_first_error=True)
                deleted += len(stale)
            values = [tuple(r[m] for m in METRICS) for r in day_rows]
            execute_concurrent_with_args(session, upsert_day,
                                         [(day, r["course_id"], *v) for r, v in zip(day_rows, values)],
                                         concurrency=64, raise_on_first_error=True)
            faults.point(settings, "cassandra.by_day_written")
            execute_concurrent_with_args(session, upsert_course,
                                         [(r["course_id"], day, *v) for r, v in zip(day_rows, values)],
                                         concurrency=64, raise_on_first_error=True)
            upserted += len(day_rows)
        return {"days": len(by_day), "rows_upserted": upserted, "rows_deleted": deleted}
    finally:
        cluster.shutdown()


def read_day(settings: Settings, day: dt.date) -> list[dict]:
    cluster, session = connect(settings)
    try:
        stmt = session.prepare(f"SELECT * FROM {settings.cassandra_keyspace}.{TABLE_BY_DAY} WHERE event_date = ?")
        return [dict(r._asdict()) for r in session.execute(stmt, (day,))]
    finally:
        cluster.shutdown()


TABLE_PIPELINE_RUNS = "pipeline_runs_by_day"
_RUN_COLUMNS = {"stage": "text", "state": "text", "try_number": "int", "started_at": "timestamp",
                "duration_s": "double", "rows_in": "bigint", "rows_out": "bigint", "backlog_batches": "int",
                "gate_checks": "int", "gate_failed": "int"}


def publish_pipeline_runs(settings: Settings, rows: list[Mapping]) -> dict:
    """Pipeline health for Grafana: per interval day, per run and stage (an upsert: a retried or
    re-run stage replaces its row)."""
    from cassandra.concurrent import execute_concurrent_with_args

    cluster, session = connect(settings)
    try:
        ensure_schema(session, settings)
        ks = settings.cassandra_keyspace
        ddl = ", ".join(f"{c} {t}" for c, t in _RUN_COLUMNS.items() if c != "stage")
        session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.{TABLE_PIPELINE_RUNS} (run_date date, run_id text, "
                        f"stage text, {ddl}, PRIMARY KEY ((run_date), run_id, stage))")
        cols = list(_RUN_COLUMNS)
        stmt = session.prepare(f"INSERT INTO {ks}.{TABLE_PIPELINE_RUNS} (run_date, run_id, {', '.join(cols)}) "
                               f"VALUES (?, ?, {', '.join('?' for _ in cols)})")
        args = [((r["interval_end"] - dt.timedelta(microseconds=1)).date(), r["run_id"], *(r[c] for c in cols))
                for r in rows]
        execute_concurrent_with_args(session, stmt, args, concurrency=16, raise_on_first_error=True)
        return {"rows_published": len(args)}
    finally:
        cluster.shutdown()
