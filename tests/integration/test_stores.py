"""Each real store round-trips data through the project's own clients and settings."""

import datetime as dt
import uuid

import pytest

pytestmark = pytest.mark.stack

UTC = dt.timezone.utc


def test_mongo_bulk_insert_latest_and_profile_update(stack):
    from learntrack.mongo_ops import (ProfileError, database, ensure_indexes, insert_activities,
                                      latest_activities, update_profile)

    db = database(stack)
    db.activities.drop()
    db.students.drop()
    ensure_indexes(db)
    t0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
    docs = [{"event_id": f"rt-{i}", "student_id": "s-rt", "course_id": "c1", "event_type": "page_view",
             "event_time": t0 + dt.timedelta(minutes=i)} for i in range(30)]
    docs.append({"event_id": "rt-bad", "student_id": "s-rt", "course_id": "c1", "event_type": "teleport",
                 "event_time": t0})
    report = insert_activities(db, docs)
    assert (report.inserted, report.duplicates, [i for i, _ in report.rejected]) == (30, 0, [30])
    again = insert_activities(db, docs[:5])
    assert (again.inserted, again.duplicates) == (0, 5)
    latest = latest_activities(db, "s-rt")
    assert [d["event_id"] for d in latest] == [f"rt-{i}" for i in range(29, 9, -1)]

    db.students.insert_one({"_id": "s-rt", "name": "A", "email": "a@example.org"})
    doc = update_profile(db, "s-rt", {"email": "b@example.org", "progress": {"c1": 40}})
    assert doc["email"] == "b@example.org" and doc["progress"] == {"c1": 40} and doc["updated_at"]
    with pytest.raises(ProfileError, match="invalid email"):
        update_profile(db, "s-rt", {"email": "not-an-email"})
    with pytest.raises(ProfileError, match="not allowed"):
        update_profile(db, "s-rt", {"is_admin": True})
    with pytest.raises(ProfileError, match="unknown student"):
        update_profile(db, "s-nobody", {"name": "x"})


def test_redis_round_trip(stack):
    from learntrack.sinks.redis_sink import connect

    r = connect(stack)
    key = f"{stack.redis_prefix}:rt:{uuid.uuid4()}"
    r.zadd(key, {"a": 1.5, "b": 3.0})
    assert r.zrevrange(key, 0, -1, withscores=True) == [("b", 3.0), ("a", 1.5)]
    r.delete(key)


def test_cassandra_prepared_round_trip(stack):
    from learntrack.sinks.cassandra_sink import connect, ensure_schema

    cluster, session = connect(stack)
    try:
        ensure_schema(session, stack)
        session.execute(f"CREATE TABLE IF NOT EXISTS {stack.cassandra_keyspace}.rt (k text PRIMARY KEY, v int)")
        ins = session.prepare(f"INSERT INTO {stack.cassandra_keyspace}.rt (k, v) VALUES (?, ?)")
        sel = session.prepare(f"SELECT v FROM {stack.cassandra_keyspace}.rt WHERE k = ?")
        session.execute(ins, ("x'; DROP TABLE rt; --", 7))
        assert session.execute(sel, ("x'; DROP TABLE rt; --",)).one().v == 7
    finally:
        cluster.shutdown()


def test_neo4j_parameterised_round_trip(stack):
    from learntrack.sinks.neo4j_sink import connect, ensure_schema

    driver = connect(stack)
    try:
        ensure_schema(driver)
        sid = f"rt-{uuid.uuid4()}"
        driver.execute_query("MERGE (s:Student {student_id: $sid}) SET s.name = $name", sid=sid, name="O'Hara")
        recs, _, _ = driver.execute_query("MATCH (s:Student {student_id: $sid}) RETURN s.name AS n", sid=sid)
        assert [r["n"] for r in recs] == ["O'Hara"]
        driver.execute_query("MATCH (s:Student {student_id: $sid}) DETACH DELETE s", sid=sid)
    finally:
        driver.close()
