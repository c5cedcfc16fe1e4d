"""Cassandra: the published aggregates Grafana and analysts read, one table per read
(``cassandra_schema``: the tables and their migrations).

A recomputed day replaces its rows exactly, in every table, even after a failure part-way:
``published_keys_by_bucket`` records the keys each table holds for each day, and the order of the
writes keeps that record a superset of the rows (each row's key is recorded before the row is
written; a stale row is deleted before its key is forgotten). A publish cut off anywhere leaves at
worst rows that the record still names, so the next publish of the day finds and deletes them.
While a day is being replaced a reader sees each row either old or new (Cassandra has no multi-row
isolation); after a crash the retry completes it. Rows stream through in chunks: a day of 2M
students is never held in memory, only its keys.

Every statement is prepared. They go in unlogged batches of rows whose partitions share a replica
(``cassandra_batch_bytes``; the Spark Cassandra connector's ``replica_set`` grouping), with at most
``cassandra_max_in_flight`` batches in flight; a batch that fails is retried ``cassandra_retries``
times with exponential backoff (every write is idempotent). Batching is what makes the Python
driver fast: one request per ~20 rows instead of one per row (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Mapping

from learntrack import faults
from learntrack.batches import chunks
from learntrack.intervals import to_utc
from learntrack.settings import Settings
from learntrack.sinks.cassandra_schema import (COMPLETION_FUNNEL_BY_DAY, COURSE_DAILY_BY_COURSE, COURSE_DAILY_BY_DAY,
                                               COURSE_METRICS, KEY_BUCKETS, MULTI_REGION_ALERTS_BY_DAY,
                                               PIPELINE_RUN_COLUMNS, PIPELINE_RUNS, SEGMENTS_BY_DAY,
                                               SHARED_ACCESS_BY_DAY, STUDENT_ENGAGEMENT_BY_STUDENT, DayTable,
                                               key_bucket, migrate)

METRICS = tuple(m for m, _ in COURSE_METRICS)
TABLE_BY_DAY = COURSE_DAILY_BY_DAY.name
TABLE_BY_COURSE = COURSE_DAILY_BY_COURSE.name
TABLE_PIPELINE_RUNS = PIPELINE_RUNS
CHUNK_ROWS = 20_000  # rows bound and written per round; the memory a publish holds besides the keys


def connect(settings: Settings):
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    auth = (PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password)
            if settings.cassandra_username else None)
    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port, auth_provider=auth,
                      load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()), protocol_version=5)
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


def _batches(session, settings: Settings, statement, args: list[tuple]) -> list:
    """``statement`` bound to every argument tuple, in unlogged batches of at most
    ``cassandra_batch_bytes`` of values whose partitions share a replica set (so a batch is one
    replica's write, not a coordinator's fan-out); each statement alone when that is 0."""
    from cassandra.query import BatchStatement, BatchType

    bound = [statement.bind(a) for a in args]
    limit = settings.cassandra_batch_bytes
    if limit <= 0:
        return bound
    token_map = session.cluster.metadata.token_map
    groups: dict[Any, list] = defaultdict(list)
    for b in bound:
        replicas = None
        if token_map is not None and b.routing_key is not None:
            replicas = tuple(token_map.get_replicas(b.keyspace, token_map.token_class.from_key(b.routing_key)))
        groups[replicas].append(b)
    batches = []
    for group in groups.values():
        batch, size = None, 0
        for b in group:
            n = sum(len(v) for v in b.values if isinstance(v, bytes))
            if batch is None or size + n > limit:
                batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                batches.append(batch)
            batch.add(b)
            size += n
    return batches


def execute_all(session, settings: Settings, statement, args: list[tuple]) -> int:
    """Run ``statement`` for every argument tuple (batched: ``_batches``), at most
    ``cassandra_max_in_flight`` requests at once; retry the failed ones with exponential backoff,
    then raise the last error. Returns the number of argument tuples."""
    from cassandra.concurrent import execute_concurrent

    pending = _batches(session, settings, statement, args)
    for attempt in range(settings.cassandra_retries + 1):
        if not pending:
            break
        results = execute_concurrent(session, [(b, None) for b in pending],
                                     concurrency=settings.cassandra_max_in_flight, raise_on_first_error=False)
        failed = [(b, r) for b, (ok, r) in zip(pending, results) if not ok]
        if not failed:
            break
        if attempt == settings.cassandra_retries:
            raise failed[0][1]
        pending = [b for b, _ in failed]
        time.sleep(settings.cassandra_retry_backoff_s * 2 ** attempt)
    return len(args)


def _recorded(session, settings: Settings, statements, table: DayTable, day: dt.date) -> tuple[set[tuple], set[tuple]]:
    """The keys the record names for ``table``'s ``day``: (in ``published_keys_by_bucket``, in the
    single-partition ``published_keys`` that keyspaces before migration 6 wrote). ``statements``:
    the two prepared SELECTs, prepared once per ``replace_days``."""
    from cassandra.concurrent import execute_concurrent_with_args

    by_bucket, legacy = statements
    results = execute_concurrent_with_args(session, by_bucket, [(table.name, day, b) for b in range(KEY_BUCKETS)],
                                           concurrency=settings.cassandra_max_in_flight)
    recorded = {tuple(r.key_values) for _, rows in results for r in rows}
    return recorded, {tuple(r.key_values) for r in session.execute(legacy, (table.name, day))}


def replace_days(session, settings: Settings, table: DayTable, days: Iterable[dt.date],
                 rows: Iterable[Mapping]) -> dict:
    """Make ``table`` hold exactly ``rows`` for each of ``days``; rows of other days, and a key
    twice in a day, are refused. ``rows`` is read once, ``CHUNK_ROWS`` at a time."""
    ks = settings.cassandra_keyspace
    days = sorted(set(days))
    cols = (table.day_column, *table.keys, *table.column_names)
    upsert = session.prepare(f"INSERT INTO {ks}.{table.name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})")
    where = " AND ".join(f"{c} = ?" for c in (table.day_column, *table.keys))
    delete = session.prepare(f"DELETE FROM {ks}.{table.name} WHERE {where}")
    record = session.prepare(f"INSERT INTO {ks}.published_keys_by_bucket (table_name, day, bucket, key_values) "
                             "VALUES (?, ?, ?, ?)")
    forget = session.prepare(f"DELETE FROM {ks}.published_keys_by_bucket "
                             "WHERE table_name = ? AND day = ? AND bucket = ? AND key_values = ?")
    drop_legacy = session.prepare(f"DELETE FROM {ks}.published_keys WHERE table_name = ? AND day = ?")
    selects = (session.prepare(f"SELECT key_values FROM {ks}.published_keys_by_bucket "
                               "WHERE table_name = ? AND day = ? AND bucket = ?"),
               session.prepare(f"SELECT key_values FROM {ks}.published_keys WHERE table_name = ? AND day = ?"))
    recorded = {d: _recorded(session, settings, selects, table, d) for d in days}
    seen: dict[dt.date, set[tuple]] = {d: set() for d in days}
    upserted = deleted = 0
    names = table.column_names
    for chunk in chunks(rows, CHUNK_ROWS):
        new_keys, args = [], []
        for row in chunk:
            day = row[table.day_column]
            if day not in seen:
                raise ValueError(f"{table.name}: a row of {day} is not among the days being replaced")
            key = tuple(str(row[k]) for k in table.keys)
            if key in seen[day]:
                raise ValueError(f"{table.name}: key {key} appears twice on {day}")
            seen[day].add(key)
            if key not in recorded[day][0]:
                new_keys.append((table.name, day, key_bucket(key), list(key)))
            args.append((day, *key, *[_cql(row[c]) for c in names]))
        execute_all(session, settings, record, new_keys)  # a row's key is on record before the row
        upserted += execute_all(session, settings, upsert, args)
    for day in days:
        in_buckets, legacy = recorded[day]
        stale = sorted((in_buckets | legacy) - seen[day])
        deleted += execute_all(session, settings, delete, [(day, *k) for k in stale])
        execute_all(session, settings, forget, [(table.name, day, key_bucket(k), list(k)) for k in stale])
        if legacy:  # every key it named is now recorded by bucket, or deleted
            session.execute(drop_legacy, (table.name, day))
    return {"rows_upserted": upserted, "rows_deleted": deleted}


_AS_IS = (str, int, float, bool, type(None), dt.date, list)


def _cql(value):
    from decimal import Decimal

    if type(value) in _AS_IS:  # most values: no conversion
        return value
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
    """gold.student_engagement of the as-of ``days``: each student's history, and segment sizes
    (summed while the rows stream past: a day of 2M students is not held in memory)."""
    days = sorted(set(days))
    segments: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0])

    def counted(source: Iterable[Mapping]) -> Iterator[Mapping]:
        for r in source:
            seg = segments[(r["as_of_date"], r["segment"])]
            seg[0] += 1
            seg[1] += float(r["score"])
            yield r

    def work(cql):
        out = replace_days(cql, settings, STUDENT_ENGAGEMENT_BY_STUDENT, days, counted(rows))
        segment_rows = [{"as_of_date": d, "segment": s, "students": n, "avg_score": total / n}
                        for (d, s), (n, total) in segments.items()]
        replace_days(cql, settings, SEGMENTS_BY_DAY, days, segment_rows)
        return {"days": len(days), **out, "segments": len(segment_rows)}

    return _session(settings, work, session)


def publish_completion_funnel(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                              session=None) -> dict:
    """Mirror gold's one funnel snapshot: every day Cassandra holds that ``rows`` lack is emptied."""

    def work(cql):
        held = {r.as_of_date for r in cql.execute(
            f"SELECT DISTINCT as_of_date FROM {settings.cassandra_keyspace}.{COMPLETION_FUNNEL_BY_DAY.name}")}
        held = {dt.date.fromisoformat(str(d)) for d in held}
        return replace_days(cql, settings, COMPLETION_FUNNEL_BY_DAY, held | set(days), rows)

    return _session(settings, work, session)


def publish_multi_region_alerts(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                                session=None) -> dict:
    days = sorted(set(days))
    return _session(settings, lambda s: replace_days(s, settings, MULTI_REGION_ALERTS_BY_DAY, days, rows), session)


def publish_shared_access(settings: Settings, days: Iterable[dt.date], rows: Iterable[Mapping],
                          session=None) -> dict:
    days = sorted(set(days))
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
