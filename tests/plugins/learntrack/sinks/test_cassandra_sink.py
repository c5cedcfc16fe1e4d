"""Cassandra: ordered idempotent migrations, and days replaced exactly even after a failure part-way.

``test_C1`` is issue 9's finding; it failed on the sink as of 6e6dcb2 (a by-course row left stale)."""

import datetime as dt

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
    calls = fail_on_call(monkeypatch, 6)  # by-day: record, delete, upsert, forget; by-course: record, [delete]
    with pytest.raises(Failure):
        publish_course_daily(settings, [D1], [course_row(D1, "a", 2)])
    assert "DELETE FROM" in calls[-1] and TABLE_BY_COURSE in calls[-1]
    monkeypatch.undo()
    publish_course_daily(settings, [D1], [course_row(D1, "a", 2)])
    for table in (TABLE_BY_DAY, TABLE_BY_COURSE):
        assert {r.course_id for r in session.execute(f"SELECT course_id FROM {KEYSPACE}.{table}")} == {"a"}, table


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 7, 9, 10, 11, 16])  # of 16 statement groups
def test_a_publish_cut_off_anywhere_is_completed_exactly_by_the_next(cs, monkeypatch, fail_at):
    from learntrack.sinks.cassandra_sink import TABLE_BY_COURSE, TABLE_BY_DAY, publish_course_daily

    settings, session = cs
    publish_course_daily(settings, [D1, D2], [course_row(D1, "a"), course_row(D1, "b"), course_row(D2, "c")])
    want = [course_row(D1, "b", 5), course_row(D1, "d", 5)]  # a is stale, b changes, d is new, D2 emptied
    fail_on_call(monkeypatch, fail_at)
    with pytest.raises(Failure):
        publish_course_daily(settings, [D1, D2], want)
    monkeypatch.undo()
    publish_course_daily(settings, [D1, D2], want)
    got = {(r.event_date.date() if hasattr(r.event_date, "date") else r.event_date, r.course_id, r.events)
           for r in session.execute(f"SELECT event_date, course_id, events FROM {KEYSPACE}.{TABLE_BY_DAY}")}
    assert {(dt.date.fromisoformat(str(d)), c, e) for d, c, e in got} == {(D1, "b", 5), (D1, "d", 5)}
    assert {r.course_id for r in session.execute(f"SELECT course_id FROM {KEYSPACE}.{TABLE_BY_COURSE}")} == {"b", "d"}
    assert len(rows_of(session, "published_keys")) == 4  # two keys per table, nothing stale recorded


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

    from learntrack.sinks.cassandra_sink import publish_course_daily, read_day

    settings, session = cs
    real, failures = cc.execute_concurrent_with_args, []

    def flaky(session, stmt, args, **kw):
        assert kw["concurrency"] == settings.cassandra_max_in_flight and not kw["raise_on_first_error"]
        results = real(session, stmt, args, **kw)
        if "INSERT INTO" in stmt.query_string and "by_day" in stmt.query_string and not failures:
            failures.append(1)  # the first upsert of the first row times out once
            return [(False, TimeoutError("write timeout"))] + list(results)[1:]
        return results
    monkeypatch.setattr(cc, "execute_concurrent_with_args", flaky)
    publish_course_daily(settings, [D1], [course_row(D1, "a", 4), course_row(D1, "b", 4)])
    assert failures and {r["course_id"]: r["events"] for r in read_day(settings, D1)} == {"a": 4, "b": 4}


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
