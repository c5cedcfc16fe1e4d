"""Each real store round-trips data through the project's own clients and settings."""

import datetime as dt
import uuid

import pytest

pytestmark = pytest.mark.stack

UTC = dt.timezone.utc


def test_mongo_round_trip(stack):
    from learntrack.mongo_ops import client

    c = client(stack)
    coll = c[stack.mongo_db]["roundtrip"]
    coll.drop()
    doc = {"_id": "x", "n": 2**40, "f": 1.5, "t": dt.datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC),
           "nested": {"a": [1, "b", {"c": None}]}, "text": "naïve 日本 \U0001F600"}
    coll.insert_one(doc)
    assert coll.find_one({"_id": "x"}) == doc
    coll.drop()
    c.close()


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
