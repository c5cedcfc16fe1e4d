"""The whole DAG, run by Airflow (`airflow dags test`) against the real stack.

Expected numbers are computed here in plain Python from the generated source documents, with no
Spark and no project analytics code, and compared with what landed in Cassandra, Redis and Neo4j.
A second run of the same DAG run must leave the lake and every store exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

import pytest

from learntrack.generator import GenParams, generate, is_clean, load_into_mongo

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

UTC = dt.timezone.utc
END = dt.datetime(2026, 1, 10, tzinfo=UTC)
RUN_DAY = dt.date(2026, 1, 9)  # the DAG run's interval: [2026-01-09, 2026-01-10)
PARAMS = GenParams(students=120, courses=12, days=3, end=END, seed=11, multi_region_rate=0.08, late_rate=0.05,
                   duplicate_rate=0.02, malformed_rate=0.01)


# ------------------------------------------------------------------------------ independent model
def expected_results(data, settings):
    """What the pipeline must publish, computed directly from the source documents: the ones
    written up to the interval end, minus the malformed ones (per the generator's record of what it
    corrupted), keeping the first write of each event id."""
    written = [d for d in data.activities if d["ingested_at"] <= END]
    malformed = {m["_id"]: m["rule"] for m in data.truth["malformed"]}
    first: dict[str, dict] = {}
    for d in sorted((d for d in written if str(d["_id"]) not in malformed),
                    key=lambda d: (d["ingested_at"], str(d["_id"]))):
        first.setdefault(d["event_id"], d)
    extracted = list(first.values())
    quarantined = {str(d["_id"]): malformed[str(d["_id"])] for d in written if str(d["_id"]) in malformed}
    days = sorted({d["event_time"].date() for d in extracted})

    course_day = defaultdict(lambda: defaultdict(float))
    learners = defaultdict(set)
    quiz_pcts = defaultdict(list)
    for d in extracted:
        key = (d["event_time"].date(), d["course_id"])
        row = course_day[key]
        row["events"] += 1
        learners[key].add(d["student_id"])
        field = {"page_view": "page_views", "video_play": "video_plays", "video_complete": "video_completions",
                 "quiz_attempt": "quiz_attempts", "assignment_submit": "assignment_submissions",
                 "login": "logins"}.get(d["event_type"])
        if field:
            row[field] += 1
        if d["event_type"] == "quiz_attempt":
            quiz_pcts[key].append(d["score"] / d["max_score"] * 100)
    cassandra = {}
    for key, row in course_day.items():
        pcts = quiz_pcts.get(key)
        cassandra[key] = {
            "active_learners": len(learners[key]), "events": int(row["events"]),
            **{f: int(row[f]) for f in ("page_views", "video_plays", "video_completions", "quiz_attempts",
                                        "assignment_submissions", "logins")},
            "avg_quiz_score_pct": sum(pcts) / len(pcts) if pcts else None,
        }

    weights, lam = settings.engagement_weight_map, settings.engagement_decay_per_day
    scores = defaultdict(float)
    for d in extracted:
        age = (RUN_DAY - d["event_time"].date()).days
        if age >= 0:
            scores[d["student_id"]] += weights.get(d["event_type"], 0.0) * math.exp(-lam * age)

    logins = [d for d in extracted if d["event_type"] == "login"]
    window = dt.timedelta(minutes=settings.multi_region_window_minutes)
    since = dt.datetime.combine(days[0], dt.time(), UTC)
    until = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), UTC)
    pairs = set()
    for a in logins:
        if not since <= a["event_time"] < until:
            continue
        for b in logins:
            later = b["event_time"] > a["event_time"] or (b["event_time"] == a["event_time"]
                                                          and b["event_id"] > a["event_id"])
            if (b["student_id"] == a["student_id"] and b["region"] != a["region"] and later
                    and b["event_time"] - a["event_time"] <= window):
                pairs.add((a["student_id"], a["event_id"], b["event_id"]))
    return {"days": days, "cassandra": cassandra, "scores": dict(scores), "pairs": pairs,
            "silver_rows": len(extracted), "written": len(written), "quarantined": quarantined,
            "duplicates": len(written) - len(extracted) - len(quarantined),
            "held_back": len(data.activities) - len(written)}


# ------------------------------------------------------------------------------ store snapshots
def snapshot(settings, spark):
    from cassandra.cluster import Cluster

    from jobs.common import read_table
    from lake.tables import ALL_TABLES
    from learntrack.sinks import neo4j_sink, redis_sink

    snap = {}
    for table in ALL_TABLES:
        df = read_table(spark, table, settings.lake_uri)
        snap[table.qualified] = sorted(tuple(str(v) for v in r) for r in df.collect())
    cluster = Cluster([settings.stack_host], port=settings.cassandra_port, protocol_version=5)
    try:
        session = cluster.connect(settings.cassandra_keyspace)
        for t in ("course_daily_engagement_by_day", "course_daily_engagement_by_course"):
            snap[t] = sorted(tuple(str(v) for v in r) for r in session.execute(f"SELECT * FROM {t}"))
    finally:
        cluster.shutdown()
    r = redis_sink.connect(settings)
    snap["redis"] = {k: (r.type(k), str(r.zrange(k, 0, -1, withscores=True) if r.type(k) == "zset"
                                        else r.hgetall(k) if r.type(k) == "hash" else r.get(k)))
                     for k in r.scan_iter(f"{settings.redis_prefix}:*")}
    driver = neo4j_sink.connect(settings)
    try:
        recs, _, _ = driver.execute_query(
            "MATCH (s:Student)-[:HAD]->(a:Access)-[:FROM]->(r:Region) "
            "RETURN s.student_id AS s, a.event_id AS e, toString(a.at) AS at, r.name AS r ORDER BY e")
        snap["neo4j_paths"] = [tuple(x.values()) for x in recs]
        recs, _, _ = driver.execute_query("MATCH (n) RETURN count(n) AS n")
        snap["neo4j_nodes"] = recs[0]["n"]
        recs, _, _ = driver.execute_query("MATCH ()-[x]->() RETURN count(x) AS n")
        snap["neo4j_rels"] = recs[0]["n"]
    finally:
        driver.close()
    return snap


# ------------------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def pipeline_world(stack, spark):
    """Clean namespaces, generated data in MongoDB, and one DAG run."""
    from conftest import wipe_home_dirs
    from learntrack.cli import run_dag
    from learntrack.mongo_ops import client
    from learntrack.sinks import neo4j_sink, redis_sink

    settings = stack
    wipe_home_dirs(settings)
    mongo = client(settings)
    mongo.drop_database(settings.mongo_db)
    redis_sink.connect(settings).flushdb()
    from cassandra.cluster import Cluster

    cluster = Cluster([settings.stack_host], port=settings.cassandra_port, protocol_version=5)
    cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}")
    cluster.shutdown()
    driver = neo4j_sink.connect(settings)
    driver.execute_query("MATCH (n) DETACH DELETE n")
    driver.close()

    data = generate(PARAMS)
    load_into_mongo(mongo[settings.mongo_db], data)
    mongo.close()
    run_dag(settings, RUN_DAY)
    return settings, data


def test_published_numbers_equal_an_independent_computation(pipeline_world):
    from learntrack.sinks import cassandra_sink, neo4j_sink, redis_sink

    settings, data = pipeline_world
    exp = expected_results(data, settings)
    assert exp["held_back"] > 0, "the data set should contain writes after the interval end (late events)"
    assert exp["quarantined"] and exp["duplicates"] > 0

    # Cassandra: every (day, course) row, every metric.
    got = {}
    for day in exp["days"]:
        for row in cassandra_sink.read_day(settings, day):
            got[(row["event_date"].date() if hasattr(row["event_date"], "date") else row["event_date"],
                 row["course_id"])] = row
    got = {(dt.date.fromisoformat(str(k[0])), k[1]): v for k, v in got.items()}
    assert set(got) == set(exp["cassandra"])
    for key, want in exp["cassandra"].items():
        row = got[key]
        for metric, value in want.items():
            if metric == "avg_quiz_score_pct" and value is not None:
                assert row[metric] == pytest.approx(value, rel=1e-9), (key, metric)
            else:
                assert row[metric] == value, (key, metric)

    # Redis: the leaderboard holds every student's decayed score as of the run day.
    r = redis_sink.connect(settings)
    board = dict(r.zrange(redis_sink.keys(settings)["leaderboard"], 0, -1, withscores=True))
    assert set(board) == set(exp["scores"])
    for sid, score in exp["scores"].items():
        assert board[sid] == pytest.approx(score, rel=1e-9, abs=1e-9), sid
    assert r.get(redis_sink.keys(settings)["as_of"]) == RUN_DAY.isoformat()

    # Neo4j: the Cypher multi-region pairs equal the brute-force pairs, and include the injected cases.
    since = dt.datetime.combine(exp["days"][0], dt.time(), UTC)
    until = dt.datetime.combine(exp["days"][-1] + dt.timedelta(days=1), dt.time(), UTC)
    pairs = {(p["student_id"], p["first_event_id"], p["second_event_id"])
             for p in neo4j_sink.multi_region_pairs(settings, since, until)}
    assert pairs == exp["pairs"]
    extracted_ids = {d["event_id"] for d in data.activities if d["ingested_at"] <= END and is_clean(d)}
    injected = {tuple(c["event_ids"]) for c in data.truth["multi_region"] if set(c["event_ids"]) <= extracted_ids}
    assert injected and injected <= {(a, b) for _, a, b in pairs}


def test_lake_keeps_every_row_and_quarantines_the_malformed_with_their_rule(pipeline_world, spark):
    from pyspark.sql import functions as F

    from jobs.common import Interval, read_table
    from lake.tables import BRONZE_ACTIVITIES, QUARANTINE, SILVER_ACTIVITIES

    settings, data = pipeline_world
    exp = expected_results(data, settings)
    batch = Interval.for_day(RUN_DAY).batch_id
    bronze = read_table(spark, BRONZE_ACTIVITIES, settings.lake_uri).where(F.col("batch_id") == batch).count()
    silver = read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).count()
    quarantine = {r["source_id"]: r["rule"] for r in read_table(spark, QUARANTINE, settings.lake_uri).collect()}
    assert bronze == exp["written"]
    assert silver == exp["silver_rows"]
    assert quarantine == exp["quarantined"]
    assert bronze == silver + len(quarantine) + exp["duplicates"]


def test_second_run_of_the_same_dag_run_changes_nothing(pipeline_world, spark):
    from learntrack.cli import run_dag

    settings, _ = pipeline_world
    before = snapshot(settings, spark)
    run_dag(settings, RUN_DAY)
    after = snapshot(settings, spark)
    for key in before:
        assert after[key] == before[key], f"{key} changed on re-run"
