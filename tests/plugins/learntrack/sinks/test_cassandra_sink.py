"""Cassandra: ordered idempotent migrations, and days replaced exactly even after a failure part-way.

``test_C1`` is issue 9's finding; it failed on the sink as of 6e6dcb2 (a by-course row left stale)."""

import datetime as dt
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.stack

D1, D2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
KEYSPACE = "lt_cassandra_sink"


def course_row(day, course, n=1):
    from learntrack.sinks.cassandra_sink import METRICS

    return {"event_date": day, "course_id": course, **{m: n for m in METRICS}}


@pytest.fixture()
def cs(stack):
    from learntrack.sinks.cassandra_sink import connect

    settings = stack.with_overrides(cassandra_keyspace=KEYSPACE, cassandra_retry_backoff_s=0.01)
    cluster, session = connect(settings)
    session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=60)
    yield settings, session
    cluster.shutdown()


def rows_of(session, table):
    return sorted(tuple(str(v) for v in r) for r in session.execute(f"SELECT * FROM {KEYSPACE}.{table}"))


class Failure(Exception):
    pass


def fail_on_call(monkeypatch, n):
    """Make the ``n``-th statement group of a publish fail (every retry too)."""
    from learntrack.sinks import cassandra_sink

    real, calls = cassandra_sink.execute_all, []

    def execute_all(session, settings, stmt, args):
        calls.append(stmt.query_string)
        if len(calls) == n:
            raise Failure(stmt.query_string)
        return real(session, settings, stmt, args)
    monkeypatch.setattr(cassandra_sink, "execute_all", execute_all)
    return calls


def test_C1_a_failure_between_the_deletes_leaves_no_stale_row_after_the_next_publish(cs, monkeypatch):
    from learntrack.sinks.cassandra_sink import TABLE_BY_COURSE, TABLE_BY_DAY, publish_course_daily

    settings, session = cs
    publish_course_daily(settings, [D1], [course_row(D1, "a"), course_row(D1, "b")])
    calls = fail_on_call(monkeypatch, 7)  # by-day: record, upsert, delete, forget; by-course: record, upsert, [delete]
    with pytest.raises(Failure):
        publish_course_daily(settings, [D1], [course_row(D1, "a", 2)])
    assert "DELETE FROM" in calls[-1] and TABLE_BY_COURSE in calls[-1]
    monkeypatch.undo()
    publish_course_daily(settings, [D1], [course_row(D1, "a", 2)])
    for table in (TABLE_BY_DAY, TABLE_BY_COURSE):
        assert {r.course_id for r in session.execute(f"SELECT course_id FROM {KEYSPACE}.{table}")} == {"a"}, table


CUTS = ([(20_000, 4096, n) for n in range(1, 13)]  # one chunk: 12 statement groups
        + [(1, 0, n) for n in (1, 2, 3, 4, 5, 9, 13, 16)])  # a chunk per row, no batches: 16 groups


@pytest.mark.parametrize("chunk_rows,batch_bytes,fail_at", CUTS)
def test_a_publish_cut_off_anywhere_is_completed_exactly_by_the_next(cs, monkeypatch, chunk_rows, batch_bytes,
                                                                     fail_at):
    from learntrack.sinks import cassandra_sink
    from learntrack.sinks.cassandra_sink import TABLE_BY_COURSE, TABLE_BY_DAY, publish_course_daily

    settings, session = cs
    settings = settings.with_overrides(cassandra_batch_bytes=batch_bytes)
    monkeypatch.setattr(cassandra_sink, "CHUNK_ROWS", chunk_rows)
    publish_course_daily(settings, [D1, D2], [course_row(D1, "a"), course_row(D1, "b"), course_row(D2, "c")])
    want = [course_row(D1, "b", 5), course_row(D1, "d", 5)]  # a is stale, b changes, d is new, D2 emptied
    calls = fail_on_call(monkeypatch, fail_at)
    with pytest.raises(Failure):
        publish_course_daily(settings, [D1, D2], want)
    assert len(calls) == fail_at
    monkeypatch.undo()
    publish_course_daily(settings, [D1, D2], want)
    got = {(r.event_date.date() if hasattr(r.event_date, "date") else r.event_date, r.course_id, r.events)
           for r in session.execute(f"SELECT event_date, course_id, events FROM {KEYSPACE}.{TABLE_BY_DAY}")}
    assert {(dt.date.fromisoformat(str(d)), c, e) for d, c, e in got} == {(D1, "b", 5), (D1, "d", 5)}
    assert {r.course_id for r in session.execute(f"SELECT course_id FROM {KEYSPACE}.{TABLE_BY_COURSE}")} == {"b", "d"}
    assert len(rows_of(session, "published_keys_by_bucket")) == 4  # two keys per table, nothing stale recorded


def test_a_day_recorded_before_the_buckets_is_replaced_exactly_and_its_old_record_emptied(cs):
    """Keyspaces before migration 6 recorded a day in one ``published_keys`` partition."""
    from learntrack.sinks.cassandra_sink import TABLE_BY_DAY, ensure_schema, publish_course_daily, read_day

    settings, session = cs
    ensure_schema(session, settings)
    cols = ("event_date", "course_id", "events")
    for course in ("old_a", "keep"):  # rows and a record as the earlier sink left them
        session.execute(f"INSERT INTO {KEYSPACE}.{TABLE_BY_DAY} ({', '.join(cols)}) VALUES (%s, %s, %s)",
                        (D1, course, 1))
        session.execute(f"INSERT INTO {KEYSPACE}.published_keys (table_name, day, key_values) VALUES (%s, %s, %s)",
                        (TABLE_BY_DAY, D1, [course]))
    publish_course_daily(settings, [D1], [course_row(D1, "keep", 2), course_row(D1, "new", 2)])
    assert {r["course_id"]: r["events"] for r in read_day(settings, D1)} == {"keep": 2, "new": 2}
    assert rows_of(session, "published_keys") == []
    publish_course_daily(settings, [D1], [course_row(D1, "new", 3)])  # "keep" is stale now: on record by bucket
    assert {r["course_id"]: r["events"] for r in read_day(settings, D1)} == {"new": 3}


def test_a_key_twice_in_a_day_is_refused(cs):
    from learntrack.sinks.cassandra_sink import publish_course_daily

    settings, _ = cs
    with pytest.raises(ValueError, match="appears twice"):
        publish_course_daily(settings, [D1], [course_row(D1, "a", 1), course_row(D1, "a", 2)])


def test_batches_group_rows_by_replica_and_stay_under_the_byte_limit(cs):
    from learntrack.sinks.cassandra_sink import _batches, ensure_schema

    settings, session = cs
    ensure_schema(session, settings)
    stmt = session.prepare(f"INSERT INTO {KEYSPACE}.student_engagement_by_student (as_of_date, student_id, score) "
                           "VALUES (?, ?, ?)")
    args = [(D1, f"s{i:05d}", float(i)) for i in range(500)]
    batches = _batches(session, settings.with_overrides(cassandra_batch_bytes=200), stmt, args)
    per_batch = [len(b._statements_and_parameters) for b in batches]
    assert sum(per_batch) == 500 and max(per_batch) == 200 // (4 + 6 + 8)  # date + "sNNNNN" + double
    alone = _batches(session, settings.with_overrides(cassandra_batch_bytes=0), stmt, args[:3])
    assert [b.routing_key for b in alone] == [b"s00000", b"s00001", b"s00002"]


def test_migrations_are_ordered_recorded_and_idempotent(cs):
    from learntrack.sinks.cassandra_schema import MIGRATIONS
    from learntrack.sinks.cassandra_sink import ensure_schema

    settings, session = cs
    assert [m[0] for m in MIGRATIONS] == sorted(m[0] for m in MIGRATIONS)
    assert ensure_schema(session, settings) == [m[0] for m in MIGRATIONS]
    assert ensure_schema(session, settings) == []
    assert {r.id for r in session.execute(f"SELECT id FROM {KEYSPACE}.schema_migrations")} == {m[0] for m in MIGRATIONS}


def test_a_keyspace_of_the_first_release_gains_the_later_columns(cs):
    """A table created before new_learners existed, with no migration record: migrating adds it."""
    from learntrack.sinks.cassandra_sink import ensure_schema, publish_course_daily, read_day

    settings, session = cs
    session.execute(f"CREATE KEYSPACE {KEYSPACE} WITH replication = {{'class': 'SimpleStrategy', "
                    "'replication_factor': 1}")
    session.execute(f"CREATE TABLE {KEYSPACE}.course_daily_engagement_by_day (event_date date, course_id text, "
                    "events bigint, PRIMARY KEY ((event_date), course_id))")
    ensure_schema(session, settings)
    publish_course_daily(settings, [D1], [course_row(D1, "a", 3)])
    assert read_day(settings, D1)[0]["new_learners"] == 3


def test_a_statement_that_fails_is_retried_with_backoff(cs, monkeypatch):
    import cassandra.concurrent as cc

    from learntrack.sinks import cassandra_sink
    from learntrack.sinks.cassandra_sink import publish_course_daily, read_day

    settings, session = cs
    real, calls, sleeps = cc.execute_concurrent, [], []

    def flaky(session, statements, **kw):
        if kw.get("raise_on_first_error", True):  # the reads of the record
            return real(session, statements, **kw)
        assert kw["concurrency"] == settings.cassandra_max_in_flight
        calls.append(len(statements))
        if len(calls) == 2:  # the by-day upserts (the record is the first call): the first batch times out
            return [(False, TimeoutError("write timeout"))] + list(real(session, statements[1:], **kw))
        return real(session, statements, **kw)
    monkeypatch.setattr(cc, "execute_concurrent", flaky)
    monkeypatch.setattr(cassandra_sink, "time", SimpleNamespace(sleep=sleeps.append))  # the sink's sleeps only
    publish_course_daily(settings, [D1], [course_row(D1, "a", 4), course_row(D1, "b", 4)])
    assert calls[1:3] == [1, 1] and sleeps == [settings.cassandra_retry_backoff_s]  # one batch, retried once
    assert {r["course_id"]: r["events"] for r in read_day(settings, D1)} == {"a": 4, "b": 4}


def test_every_read_table_replaces_its_days(cs):
    from learntrack.sinks import cassandra_sink as cs_

    settings, session = cs
    t = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc)
    eng = [{"as_of_date": D1, "student_id": s, "score": v, "segment": seg, "courses": 1, "events_recent": 2,
            "events_previous": 0, "quiz_attempts": 0, "quiz_pass_rate": None, "last_event_time": t}
           for s, v, seg in (("s1", 1.5, "active"), ("s2", 2.5, "active"), ("s3", 9.0, "highly_engaged"))]
    cs_.publish_student_engagement(settings, [D1], eng)
    seg = {r["segment"]: (r["students"], r["avg_score"]) for r in cs_.read_day(settings, D1, cs_.SEGMENTS_BY_DAY)}
    assert seg == {"active": (2, 2.0), "highly_engaged": (1, 9.0)}
    cs_.publish_student_engagement(settings, [D1], eng[:1])
    assert {r["student_id"] for r in cs_.read_table(settings, "student_engagement_by_student")} == {"s1"}
    assert {r["segment"] for r in cs_.read_day(settings, D1, cs_.SEGMENTS_BY_DAY)} == {"active"}
    alerts = [{"event_date": D1, "student_id": "s1", "first_event_id": "e1", "second_event_id": "e2",
               "first_region": "eu", "second_region": "us", "first_at": t, "second_at": t + dt.timedelta(minutes=5),
               "gap_minutes": 5.0, "first_ip": "1.1.1.1", "second_ip": None}]
    cs_.publish_multi_region_alerts(settings, [D1], alerts)
    [got] = cs_.read_day(settings, D1, cs_.MULTI_REGION_ALERTS_BY_DAY)
    assert got["second_region"] == "us" and got["gap_minutes"] == 5.0
    cs_.publish_shared_access(settings, [D1], [{"event_date": D1, "kind": "ip", "value": "9.9.9.9", "students": 2,
                                                "student_ids": ["s1", "s2"]}])
    assert cs_.read_day(settings, D1, cs_.SHARED_ACCESS_BY_DAY)[0]["student_ids"] == ["s1", "s2"]
    with pytest.raises(ValueError, match="not among the days"):
        cs_.publish_completion_funnel(settings, [D2], [{"as_of_date": D1, "course_id": "c", "enrolled": 1,
                                                        "started": 1, "half_completed": 0, "completed": 0}])
