"""Cassandra's schema: one table per read, created and changed by ordered, idempotent migrations.

Cassandra is modelled per query, so each reader (a Grafana panel, an analyst's lookup) has a table
whose partition key is what it filters on. Tables replaced a day at a time are declared as
``DayTable`` (day column, key columns, value columns); the publisher (``cassandra_sink``) drives
every write from the declaration. ``MIGRATIONS`` is append-only: a deployed keyspace records the
ids it applied in ``schema_migrations`` and the next publish applies the rest in order. Every
statement is safe to run twice (``IF NOT EXISTS``; an ``ADD`` of a column that exists is skipped),
so two publishers migrating at once, or a migration cut off half-way, end in the same schema.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

#: ``published_keys_by_bucket`` spreads each (table, day)'s keys over this many partitions, so one
#: stays small at millions of keys (2M students: ~31k rows each). Fixed for a keyspace's lifetime:
#: a key's bucket must not change between the publish that records it and the one that drops it.
KEY_BUCKETS = 64


def key_bucket(key: tuple[str, ...]) -> int:
    """The ``published_keys_by_bucket`` partition of a row key (stable across processes and hosts)."""
    return zlib.crc32("\x1f".join(key).encode()) % KEY_BUCKETS


@dataclass(frozen=True)
class DayTable:
    """A published table whose rows are replaced one day at a time (``replace_days``)."""

    name: str
    day_column: str
    keys: tuple[str, ...]  # the rest of the primary key (all text)
    columns: tuple[tuple[str, str], ...]  # value columns and their CQL types
    partition_by_day: bool = True  # False: the first key is the partition, the day a clustering column

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def create(self) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in self.columns)
        keys = ", ".join(f"{k} text" for k in self.keys)
        if self.partition_by_day:
            pk, order = f"(({self.day_column}), {', '.join(self.keys)})", ""
        else:
            pk = f"(({self.keys[0]}), {self.day_column}{''.join(', ' + k for k in self.keys[1:])})"
            order = f" WITH CLUSTERING ORDER BY ({self.day_column} DESC)"
        return (f"CREATE TABLE IF NOT EXISTS {{ks}}.{self.name} ({self.day_column} date, {keys}, {cols}, "
                f"PRIMARY KEY {pk}){order}")


COURSE_METRICS = (
    ("active_learners", "bigint"), ("events", "bigint"), ("page_views", "bigint"), ("video_plays", "bigint"),
    ("video_completions", "bigint"), ("quiz_attempts", "bigint"), ("assignment_submissions", "bigint"),
    ("logins", "bigint"), ("video_watch_seconds", "double"), ("avg_quiz_score_pct", "double"),
    ("quiz_pass_rate", "double"), ("new_learners", "bigint"),
)

COURSE_DAILY_BY_DAY = DayTable("course_daily_engagement_by_day", "event_date", ("course_id",), COURSE_METRICS)
COURSE_DAILY_BY_COURSE = DayTable("course_daily_engagement_by_course", "event_date", ("course_id",), COURSE_METRICS,
                                  partition_by_day=False)
STUDENT_ENGAGEMENT_BY_STUDENT = DayTable(
    "student_engagement_by_student", "as_of_date", ("student_id",),
    (("score", "double"), ("segment", "text"), ("courses", "bigint"), ("events_recent", "bigint"),
     ("events_previous", "bigint"), ("quiz_attempts", "bigint"), ("quiz_pass_rate", "double"),
     ("last_event_time", "timestamp")),
    partition_by_day=False)
SEGMENTS_BY_DAY = DayTable("segments_by_day", "as_of_date", ("segment",),
                           (("students", "bigint"), ("avg_score", "double")))
COMPLETION_FUNNEL_BY_DAY = DayTable(
    "course_completion_funnel_by_day", "as_of_date", ("course_id",),
    (("enrolled", "bigint"), ("started", "bigint"), ("half_completed", "bigint"), ("completed", "bigint")))
MULTI_REGION_ALERTS_BY_DAY = DayTable(
    "multi_region_alerts_by_day", "event_date", ("student_id", "first_event_id", "second_event_id"),
    (("first_region", "text"), ("second_region", "text"), ("first_at", "timestamp"), ("second_at", "timestamp"),
     ("gap_minutes", "double"), ("first_ip", "text"), ("second_ip", "text")))
SHARED_ACCESS_BY_DAY = DayTable("shared_access_by_day", "event_date", ("kind", "value"),
                                (("students", "bigint"), ("student_ids", "list<text>")))

DAY_TABLES = (COURSE_DAILY_BY_DAY, COURSE_DAILY_BY_COURSE, STUDENT_ENGAGEMENT_BY_STUDENT, SEGMENTS_BY_DAY,
              COMPLETION_FUNNEL_BY_DAY, MULTI_REGION_ALERTS_BY_DAY, SHARED_ACCESS_BY_DAY)

PIPELINE_RUNS = "pipeline_runs_by_day"
PIPELINE_RUN_COLUMNS = (("stage", "text"), ("state", "text"), ("try_number", "int"), ("started_at", "timestamp"),
                        ("duration_s", "double"), ("rows_in", "bigint"), ("rows_out", "bigint"),
                        ("backlog_batches", "int"), ("gate_checks", "int"), ("gate_failed", "int"))

#: (id, what it does, statements). Append only; never edit an applied one. ``{ks}`` is the keyspace.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "course daily engagement, by day and by course", (COURSE_DAILY_BY_DAY.create(), COURSE_DAILY_BY_COURSE.create())),
    # Keyspaces created before the metric existed (the tables above are IF NOT EXISTS).
    (2, "course metrics added after the first release",
     tuple(f"ALTER TABLE {{ks}}.{t.name} ADD {m} {typ}" for t in (COURSE_DAILY_BY_DAY, COURSE_DAILY_BY_COURSE)
           for m, typ in COURSE_METRICS)),
    (3, "pipeline health by day",
     (f"CREATE TABLE IF NOT EXISTS {{ks}}.{PIPELINE_RUNS} (run_date date, run_id text, "
      + ", ".join(f"{c} {t}" for c, t in PIPELINE_RUN_COLUMNS) + ", PRIMARY KEY ((run_date), run_id, stage))",)),
    (4, "what each publish wrote per table and day, so a replaced day leaves no stale row",
     ("CREATE TABLE IF NOT EXISTS {ks}.published_keys (table_name text, day date, key_values frozen<list<text>>, "
      "PRIMARY KEY ((table_name, day), key_values))",)),
    (5, "student engagement history, segments, completion funnel, access alerts",
     tuple(t.create() for t in (STUDENT_ENGAGEMENT_BY_STUDENT, SEGMENTS_BY_DAY, COMPLETION_FUNNEL_BY_DAY,
                                MULTI_REGION_ALERTS_BY_DAY, SHARED_ACCESS_BY_DAY))),
    # published_keys held a (table, day) in one partition: 635,761 rows for a seed-scale day's
    # students. The sink reads the old table too and empties a day's partition there once it has
    # moved the day's keys here.
    (6, "published keys spread over KEY_BUCKETS partitions per table and day",
     ("CREATE TABLE IF NOT EXISTS {ks}.published_keys_by_bucket (table_name text, day date, bucket int, "
      "key_values frozen<list<text>>, PRIMARY KEY ((table_name, day, bucket), key_values))",)),
)


def migrate(session, keyspace: str, replication: str) -> list[int]:
    """Create the keyspace if needed and apply the migrations it has not recorded; returns their ids."""
    from cassandra import InvalidRequest

    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (id int PRIMARY KEY, "
                    "description text, applied_at timestamp)")
    done = {r.id for r in session.execute(f"SELECT id FROM {keyspace}.schema_migrations")}
    applied = []
    record = session.prepare(f"INSERT INTO {keyspace}.schema_migrations (id, description, applied_at) "
                             "VALUES (?, ?, toTimestamp(now()))")
    for mid, description, statements in MIGRATIONS:
        if mid in done:
            continue
        for stmt in statements:
            try:
                session.execute(stmt.format(ks=keyspace), timeout=60)
            except InvalidRequest as exc:  # ADD of a column a keyspace already has
                if " ADD " not in stmt or not any(m in str(exc) for m in ("already exists", "conflicts with an existing")):
                    raise
        session.execute(record, (mid, description))
        applied.append(mid)
    return applied
