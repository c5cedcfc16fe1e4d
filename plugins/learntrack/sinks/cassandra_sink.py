"""Cassandra: the published aggregates Grafana and analysts read, one table per read
(``cassandra_schema``: the tables and their migrations).

A recomputed day replaces its rows exactly, in every table, even after a failure part-way:
``published_keys`` records the keys each table holds for each day, and the order of the writes
keeps that record a superset of the rows (record new keys, delete stale rows, upsert rows, forget
stale keys). A publish cut off anywhere leaves at worst rows that the record still names, so the
next publish of the day finds and deletes them. While a day is being replaced a reader sees each
row either old or new (Cassandra has no multi-row isolation); after a crash the retry completes it.

Every statement is prepared; they run concurrently with at most ``cassandra_max_in_flight`` in
flight, and a statement that fails is retried ``cassandra_retries`` times with exponential backoff.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping

from learntrack import faults
from learntrack.intervals import to_utc
from learntrack.settings import Settings
from learntrack.sinks.cassandra_schema import (COMPLETION_FUNNEL_BY_DAY, COURSE_DAILY_BY_COURSE, COURSE_DAILY_BY_DAY,
                                               COURSE_METRICS, MULTI_REGION_ALERTS_BY_DAY, PIPELINE_RUN_COLUMNS,
                                               PIPELINE_RUNS, SEGMENTS_BY_DAY, SHARED_ACCESS_BY_DAY,
                                               STUDENT_ENGAGEMENT_BY_STUDENT, DayTable, migrate)

METRICS = tuple(m for m, _ in COURSE_METRICS)
TABLE_BY_DAY = COURSE_DAILY_BY_DAY.name
TABLE_BY_COURSE = COURSE_DAILY_BY_COURSE.name
TABLE_PIPELINE_RUNS = PIPELINE_RUNS


def connect(settings: Settings):
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    auth = (PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password)
            if settings.cassandra_username else None)
    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port, auth_provider=auth,
                      load_balancing_policy=DCAwareRoundRobinPolicy(), protocol_version=5)
    return cluster, cluster.connect()


def ensure_schema(session, settings: Settings) -> list[int]:
    replication = "{" + ", ".join(f"'{k}': {v!r}" if isinstance(v, str) else f"'{k}': {v}"
                                  for k, v in settings.cassandra_replication_map.items()) + "}"
    return migrate(session, settings.cassandra_keyspace, replication)


@contextlib.contextmanager
def open_session(settings: Settings):
    """One connection with the schema migrated, for several publishes (connecting costs ~1 s)."""
    cluster, session = connect(settings)
    try:
        ensure_schema(session, settings)
        yield session
    finally:
        cluster.shutdown()


def _session(settings: Settings, work: Callable[[Any], dict], session=None) -> dict:
    if session is not None:
        return work(session)
    with open_session(settings) as opened:
        return work(opened)


def execute_all(session, settings: Settings, statement, args: list[tuple]) -> int:
    """Run ``statement`` for every argument tuple, at most ``cassandra_max_in_flight`` at once;
    retry the failed ones with exponential backoff, then raise the last error."""
    from cassandra.concurrent import execute_concurrent_with_args

    pending = list(args)
    for attempt in range(settings.cassandra_retries + 1):
        results = execute_concurrent_with_args(session, statement, pending,
                                               concurrency=settings.cassandra_max_in_flight,
                                               raise_on_first_error=False)
        failed = [(a, r) for a, (ok, r) in zip(pending, results) if not ok]
        if not failed:
            return len(args)
        if attempt == settings.cassandra_retries:
            raise failed[0][1]
        pending = [a for a, _ in failed]
        time.sleep(settings.cassandra_retry_backoff_s * 2 ** attempt)
    return len(args)


def replace_days(session, settings: Settings, table: DayTable, days: Iterable[dt.date],
                 rows: Iterable[Mapping]) -> dict:
    """Make ``table`` hold exactly ``rows`` for each of ``days`` (rows of other days are refused)."""
    ks = settings.cassandra_keyspace
    days = sorted(set(days))
    by_day: dict[dt.date, dict[tuple, Mapping]] = {d: {} for d in days}
    for row in rows:
        day = row[table.day_column]
        if day not in by_day:
            raise ValueError(f"{table.name}: a row of {day} is not among the days being replaced")
        by_day[day][tuple(str(row[k]) for k in table.keys)] = row
    cols = (table.day_column, *table.keys, *table.column_names)
    upsert = session.prepare(f"INSERT INTO {ks}.{table.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})")
    where = " AND ".join(f"{c} = ?" for c in (table.day_column, *table.keys))
    delete = session.prepare(f"DELETE FROM {ks}.{table.name} WHERE {where}")
    recorded = session.prepare(f"SELECT key_values FROM {ks}.published_keys WHERE table_name = ? AND day = ?")
    record = session.prepare(f"INSERT INTO {ks}.published_keys (table_name, day, key_values) VALUES (?, ?, ?)")
    forget = session.prepare(f"DELETE FROM {ks}.published_keys WHERE table_name = ? AND day = ? AND key_values = ?")
    upserted = deleted = 0
    for day, keyed in by_day.items():
        old = {tuple(r.key_values) for r in session.execute(recorded, (table.name, day))}
        stale = sorted(old - set(keyed))
        execute_all(session, settings, record, [(table.name, day, list(k)) for k in keyed if k not in old])
        deleted += execute_all(session, settings, delete, [(day, *k) for k in stale])
        upserted += execute_all(session, settings, upsert,
                                [(day, *k, *(_cql(row[c]) for c in table.column_names)) for k, row in keyed.items()])
        execute_all(session, settings, forget, [(table.name, day, list(k)) for k in stale])
    return {"rows_upserted": upserted, "rows_deleted": deleted}


def _cql(value):
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return to_utc(value)  # rows from Spark: naive means the host's local time
    return value


# --- publishers: one per gold table, each writing every table that serves a read of it ---------
# ``session``: an ``open_session`` to share among several publishes; without it each connects.
def publish_course_daily(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                         session=None) -> dict:
    """gold.course_daily_engagement of ``days`` into the by-day and by-course tables."""
    rows, days = list(rows), sorted(set(days))

    def work(cql):
        by_day = replace_days(cql, settings, COURSE_DAILY_BY_DAY, days, rows)
        faults.point(settings, "cassandra.by_day_written")
        replace_days(cql, settings, COURSE_DAILY_BY_COURSE, days, rows)
        return {"days": len(days), **by_day}

    return _session(settings, work, session)


def publish_student_engagement(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                               session=None) -> dict:
    """gold.student_engagement of the as-of ``days``: each student's history, and segment sizes."""
    rows, days = list(rows), sorted(set(days))
    segments: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        segments[(r["as_of_date"], r["segment"])].append(float(r["score"]))
    segment_rows = [{"as_of_date": d, "segment": s, "students": len(v), "avg_score": sum(v) / len(v)}
                    for (d, s), v in segments.items()]

    def work(cql):
        out = replace_days(cql, settings, STUDENT_ENGAGEMENT_BY_STUDENT, days, rows)
        replace_days(cql, settings, SEGMENTS_BY_DAY, days, segment_rows)
        return {"days": len(days), **out, "segments": len(segment_rows)}

    return _session(settings, work, session)


def publish_completion_funnel(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                              session=None) -> dict:
    """Mirror gold's one funnel snapshot: every day Cassandra holds that ``rows`` lack is emptied."""
    rows = list(rows)

    def work(cql):
        held = {r.as_of_date for r in cql.execute(
            f"SELECT DISTINCT as_of_date FROM {settings.cassandra_keyspace}.{COMPLETION_FUNNEL_BY_DAY.name}")}
        held = {dt.date.fromisoformat(str(d)) for d in held}
        return replace_days(cql, settings, COMPLETION_FUNNEL_BY_DAY, held | set(days), rows)

    return _session(settings, work, session)


def publish_multi_region_alerts(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                                session=None) -> dict:
    rows, days = list(rows), sorted(set(days))
    return _session(settings, lambda s: replace_days(s, settings, MULTI_REGION_ALERTS_BY_DAY, days, rows), session)


def publish_shared_access(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                          session=None) -> dict:
    rows, days = list(rows), sorted(set(days))
    return _session(settings, lambda s: replace_days(s, settings, SHARED_ACCESS_BY_DAY, days, rows), session)


def publish_pipeline_runs(settings: Settings, rows: list[Mapping]) -> dict:
    """Pipeline health for Grafana: per interval day, per run and stage (an upsert: a retried or
    re-run stage replaces its row)."""
    cols = [c for c, _ in PIPELINE_RUN_COLUMNS]

    def work(session):
        stmt = session.prepare(f"INSERT INTO {settings.cassandra_keyspace}.{PIPELINE_RUNS} (run_date, run_id, "
                               f"{', '.join(cols)}) VALUES (?, ?, {', '.join('?' for _ in cols)})")
        args = [((r["interval_end"] - dt.timedelta(microseconds=1)).date(), r["run_id"], *(r[c] for c in cols))
                for r in rows]
        return {"rows_published": execute_all(session, settings, stmt, args)}

    return _session(settings, work)


# --- readers (tests, the CLI summary) ------------------------------------------------------------
def read_day(settings: Settings, day: dt.date, table: DayTable = COURSE_DAILY_BY_DAY) -> list[dict]:
    cluster, session = connect(settings)
    try:
        stmt = session.prepare(f"SELECT * FROM {settings.cassandra_keyspace}.{table.name} "
                               f"WHERE {table.day_column} = ? ALLOW FILTERING")
        return [dict(r._asdict()) for r in session.execute(stmt, (day,))]
    finally:
        cluster.shutdown()


def read_table(settings: Settings, table: str) -> list[dict]:
    """Every row of a (small) table: for tests and the summary, not for serving."""
    cluster, session = connect(settings)
    try:
        return [dict(r._asdict()) for r in session.execute(f"SELECT * FROM {settings.cassandra_keyspace}.{table}")]
    finally:
        cluster.shutdown()
