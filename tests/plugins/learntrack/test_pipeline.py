"""The publish stages read gold as the pipeline leaves it (a lake written here, real stores)."""

import datetime as dt
from decimal import Decimal

import pytest

pytestmark = pytest.mark.stack

D1, D2 = dt.date(2026, 4, 1), dt.date(2026, 4, 2)


def engagement(day, scores):
    return [(day, s, Decimal(str(v)), 1, 1, 0, 0, None, None, "active") for s, v in scores.items()]


def test_R6_recovering_an_older_day_republishes_the_newest_snapshot_gold_rewrote(stack, spark, tmp_path):
    """A backfill of D1 makes the engagement chain rewrite D2; Redis must serve the rewritten D2
    (it kept serving the old D2 when only the run's own as-of day was published)."""
    from lake.delta import replace_partitions
    from lake.tables import GOLD_STUDENT_ENGAGEMENT
    from learntrack.intervals import Interval
    from learntrack.pipeline import publish_redis
    from learntrack.sinks import redis_sink

    settings = stack.with_overrides(lake_root=str(tmp_path / "lake"), redis_prefix="lt_pipeline_publish")
    r = redis_sink.connect(settings)
    for key in r.scan_iter("lt_pipeline_publish:*"):
        r.delete(key)

    def write(day, scores):
        df = spark.createDataFrame(engagement(day, scores), GOLD_STUDENT_ENGAGEMENT.spark_schema())
        replace_partitions(df, GOLD_STUDENT_ENGAGEMENT, settings.lake_uri, "as_of_date", [day])

    write(D1, {"a": 1.0})
    write(D2, {"a": 2.0})
    assert publish_redis(settings, Interval.for_day(D2))["published"] == 1
    write(D2, {"a": 2.5, "b": 0.5})  # the chain rewrote D2 after D1's retry took in a late batch
    out = publish_redis(settings, Interval.for_day(D1))
    assert out["as_of_date"] == D2.isoformat()
    assert redis_sink.snapshot_as_of(settings) == D2.isoformat()
    assert redis_sink.leaderboard(settings) == {"a": 2.5, "b": 0.5}
    again = publish_redis(settings, Interval.for_day(D1))
    assert again["unchanged"] and again["version"] == out["version"]


def test_run_chain_skips_the_stages_already_done_and_hands_their_results_on():
    """A resumed run (the seed-scale day) passes stored results downstream without re-running."""
    from learntrack.intervals import Interval
    from learntrack.pipeline import Stage, run_chain
    from learntrack.settings import Settings

    calls = []

    def first(settings, interval):
        calls.append("first")
        return {"n": 1}

    def second(settings, interval, first):
        calls.append("second")
        return {"n": first["n"] + 1}

    chain = (Stage(first), Stage(second))
    interval = Interval.for_day(dt.date(2024, 9, 2))
    assert run_chain(Settings(), interval, chain)["second"] == {"n": 2} and calls == ["first", "second"]
    calls.clear()
    out = run_chain(Settings(), interval, chain, done={"first": {"n": 41}})
    assert out == {"first": {"n": 41}, "second": {"n": 42}} and calls == ["second"]


NO_JVM_PROBE = """
import datetime as dt, json, sys
from learntrack.intervals import Interval
from learntrack.pipeline import STAGES, call_stage
from learntrack.run_records import write_run_records
from learntrack.settings import Settings

settings, interval = Settings.from_env(), Interval.for_day(dt.date(2026, 3, 1))
extracted = call_stage(STAGES["extract_bronze"], settings, interval)["rows_out"]
out = {name: call_stage(STAGES[name], settings, interval) for name in ("publish_cassandra", "publish_redis",
                                                                        "publish_neo4j")}
write_run_records(settings, "no-jvm-probe", interval, [{"stage": "publish_redis", "state": "success"}])
print(json.dumps({"pyspark_imported": "pyspark" in sys.modules, "py4j_imported": "py4j" in sys.modules,
                  "extracted": extracted, "published_dates": {k: v.get("published_dates") for k, v in out.items()}}))
"""


def test_extraction_the_publish_stages_and_run_records_run_without_spark(stack, tmp_path):
    """An extract or publish task or record_run under Airflow is a process of its own: it must not
    import pyspark (so no JVM starts), yet write bronze and record its completion in the ledger,
    which Spark stages read."""
    import json
    import os
    import subprocess
    import sys

    from lake import delta_rs, ledger
    from lake.tables import BRONZE_ACTIVITIES
    from learntrack.mongo_ops import database, insert_activities

    s = stack.with_overrides(lake_root=str(tmp_path / "lake"), home=str(tmp_path / "home"), mongo_db="lt_test_nojvm",
                             cassandra_keyspace="lt_test_nojvm", redis_prefix="lt_test_nojvm",
                             neo4j_namespace="lt_test_nojvm", extract_safety_lag_s=0)
    db = database(s)
    db.activities.drop()
    written = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
    insert_activities(db, [{"event_id": f"nojvm-{i}", "student_id": "s1", "course_id": "c1",
                            "event_type": "page_view", "event_time": written} for i in range(3)], now=written)
    proc = subprocess.run([sys.executable, "-c", NO_JVM_PROBE], env={**os.environ, **s.to_env()}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["pyspark_imported"] is False and seen["py4j_imported"] is False, seen
    assert seen["extracted"] == 3
    assert sorted(delta_rs.scan(s, BRONZE_ACTIVITIES, columns=["source_id"])["source_id"].to_pylist()) == \
        sorted(str(d["_id"]) for d in db.activities.find({}, {"_id": 1}))
    assert seen["published_dates"] == {"publish_cassandra": [], "publish_redis": None, "publish_neo4j": []}
    assert {r["stage"] for r in ledger.completions(s, "publish_cassandra")} == {"publish_cassandra"}
    assert ledger.processed_up_to(s, "publish_neo4j") == "20260302T000000Z"


def test_neo4j_publishes_the_pending_batches_logins_and_the_graph_holds_every_login(stack, tmp_path):
    """A late login for an old day comes with a later batch: that batch's publish sends its own
    logins only (the old day's other logins are in the graph already), the graph then holds every
    login of both batches, and the check over the recomputed days sees the late pair."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from lake import ledger
    from lake.tables import SILVER_ACTIVITIES
    from learntrack.intervals import Interval
    from learntrack.pipeline import publish_neo4j
    from learntrack.sinks import neo4j_sink

    s = stack.with_overrides(lake_root=str(tmp_path / "lake"), home=str(tmp_path / "home"),
                             neo4j_namespace="lt_pipeline_neo4j")
    neo4j_sink.clear_namespace(s)
    schema = SILVER_ACTIVITIES.arrow_schema()
    b1, b2 = Interval.for_day(D1).batch_id, Interval.for_day(D2).batch_id

    def login(event_id, student, region, day, hour, minute, batch):
        at = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.timezone.utc)
        return {"event_id": event_id, "student_id": student, "course_id": "c1", "event_type": "login",
                "event_time": at, "event_date": day, "region": region, "country": "US", "ip": "10.0.0.1",
                "device": "web", "ingested_at": at, "batch_id": batch}

    def land(rows, batch, days):  # silver's rows of a batch, and gold's completion of it
        write_deltalake(SILVER_ACTIVITIES.path(s.lake_uri),
                        pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema),
                        mode="append")
        ledger.record(s, "gold", batch, [batch], days)

    land([login("n1", "s1", "us-east", D1, 9, 0, b1), login("n2", "s2", "us-east", D1, 10, 0, b1),
          login("n3", "s1", "us-east", D1, 12, 0, b1)], b1, [D1])
    assert publish_neo4j(s, Interval.for_day(D1))["access_events"] == 3
    # Batch 2: a login of its own day, and s1 from another region 5 minutes after n1 (late).
    land([login("n4", "s2", "us-east", D2, 9, 0, b2), login("n5", "s1", "eu-west", D1, 9, 5, b2)], b2, [D1, D2])
    out = publish_neo4j(s, Interval.for_day(D2))
    assert out["access_events"] == 2 and out["published_dates"] == [D1.isoformat(), D2.isoformat()]
    recs, _, _ = neo4j_sink.connect(s).execute_query(
        "MATCH (st:Student {ns: $ns})-[:HAD]->(a:Access)-[:FROM]->(r:Region) RETURN a.event_id AS e, "
        "st.student_id AS s, r.name AS r ORDER BY e", ns=s.neo4j_namespace)
    assert [tuple(r.values()) for r in recs] == [("n1", "s1", "us-east"), ("n2", "s2", "us-east"),
                                                 ("n3", "s1", "us-east"), ("n4", "s2", "us-east"),
                                                 ("n5", "s1", "eu-west")]
    since = dt.datetime.combine(D1, dt.time(), dt.timezone.utc)
    pairs = neo4j_sink.multi_region_pairs(s, since, since + dt.timedelta(days=2))
    assert {(p["student_id"], p["first_event_id"], p["second_event_id"]) for p in pairs} >= {("s1", "n1", "n5")}
    assert out["multi_region_students"] == 1
