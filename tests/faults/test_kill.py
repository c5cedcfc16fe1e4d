"""kill -9 inside each stage, and each store down during its stage, then the retry: the lake and
every sink equal an uninterrupted run's.

The killed process is a stage as Airflow runs it: a process of its own, with the upstream stages'
results already stored (XCom there, a JSON file here), so a retry runs the killed stage again and
then the rest, never the stages that completed. The kill is SIGKILL from a fail point
(``learntrack.faults``): no handler, no ``finally``. Killed in turn: mid-extraction (a commit done),
between silver's quarantine and activities MERGEs, mid-gold, and mid-publish of each sink."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from learntrack.generator import GenParams, generate, load_into_mongo

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))

pytestmark = [pytest.mark.stack, pytest.mark.spark]

UTC = dt.timezone.utc
END = dt.datetime(2026, 2, 14, tzinfo=UTC)
DAY = dt.date(2026, 2, 13)
PARAMS = GenParams(students=30, courses=5, days=2, end=END, seed=31, multi_region_rate=0.1, late_rate=0.05,
                   duplicate_rate=0.03, malformed_rate=0.03)
KILLS = ("bronze.activities.committed", "silver.quarantine_merged", "gold.course_daily_written",
         "cassandra.by_day_written", "redis.hashes_written", "neo4j.batch_written")

#: A stage runner as Airflow is one: each stage once, its result stored before the next starts.
RUNNER = """
import datetime as dt, json, sys
from pathlib import Path
from learntrack.intervals import Interval
from learntrack.pipeline import DAILY, call_stage
from learntrack.settings import Settings

settings, interval, store = Settings.from_env(), Interval.for_day(dt.date.fromisoformat(sys.argv[1])), Path(sys.argv[2])
results = json.loads(store.read_text()) if store.exists() else {}
for stage in DAILY:
    if stage.name in results:
        continue
    results[stage.name] = call_stage(stage, settings, interval, **{n: results[n] for n in stage.needs})
    store.write_text(json.dumps(results, default=str))
"""


def run_stages(settings, store: Path, fail_at: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env(), "LEARNTRACK_FAIL_AT": fail_at}
    return subprocess.run([sys.executable, "-c", RUNNER, DAY.isoformat(), str(store)], env=env, capture_output=True,
                          text=True, timeout=1200)


def state(settings, spark) -> dict:
    """The lake's data tables without extraction times, and every sink."""
    from stores import lake_rows, snapshot

    snap = {**snapshot(settings, spark), **lake_rows(settings, spark)}  # without extraction times
    snap["redis"] = {k.split(":", 1)[1]: v for k, v in snap["redis"].items()}
    return snap


@pytest.fixture(scope="module")
def reference(stack, spark, tmp_path_factory):
    """The source data in MongoDB, and the state an uninterrupted run leaves (lake and sinks)."""
    from learntrack.mongo_ops import client
    from test_backfill import reset_sinks

    settings = stack.with_overrides(mongo_db="lt_test_kill")
    mongo = client(settings)
    mongo.drop_database(settings.mongo_db)
    load_into_mongo(mongo[settings.mongo_db], generate(PARAMS))
    mongo.close()
    folder = tmp_path_factory.mktemp("reference")
    ref = settings.with_overrides(lake_root=str(folder / "lake"), cassandra_keyspace="lt_test_kill_ref",
                                  redis_prefix="lt_test_kill_ref")
    reset_sinks(ref)
    done = run_stages(ref, folder / "stages.json")
    assert done.returncode == 0, done.stderr[-3000:]
    want = state(ref, spark)
    assert want["silver.quarantine"] and want["gold.course_daily_engagement"] and want["neo4j_paths"]
    return settings, want


def assert_same_state(settings, spark, want) -> None:
    got = state(settings, spark)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key


def test_a_retry_after_kill_9_inside_each_stage_ends_in_the_uninterrupted_state(reference, spark, tmp_path):
    from test_backfill import reset_sinks

    settings, want = reference
    killed = settings.with_overrides(lake_root=str(tmp_path / "killed"), cassandra_keyspace="lt_test_kill_run",
                                     redis_prefix="lt_test_kill_run")
    reset_sinks(killed)  # (Neo4j Community has one graph: the reference's is wiped too)
    store = tmp_path / "killed.json"
    for point in KILLS:
        proc = run_stages(killed, store, fail_at=point)
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-3000:])
    done = run_stages(killed, store)
    assert done.returncode == 0, done.stderr[-3000:]
    stages = json.loads(store.read_text())
    assert stages["gate_silver"]["gate_failed"] == 0 and stages["gate_gold"]["gate_failed"] == 0
    assert_same_state(killed, spark, want)


def _stack(action: str, service: str, settings) -> None:
    out = subprocess.run([str(Path(sys.executable).with_name("learntrack")), "stack", action, service], capture_output=True,
                         text=True, timeout=300, env={**os.environ, **settings.to_env()})
    assert out.returncode == 0, out.stdout + out.stderr


def test_each_store_down_during_its_stage_fails_clearly_and_the_retry_completes(reference, spark, tmp_path):
    """MongoDB and Redis are stopped for real (they restart in a second); Cassandra and Neo4j, which
    take a minute to start, are made unreachable by pointing their stage at a closed port."""
    from test_backfill import reset_sinks

    settings, want = reference
    run = settings.with_overrides(lake_root=str(tmp_path / "outage"), cassandra_keyspace="lt_test_outage",
                                  redis_prefix="lt_test_outage")
    reset_sinks(run)
    store = tmp_path / "outage.json"
    closed = 1  # nothing listens on port 1
    outages = [  # (stage that fails, message, settings of the attempt, service stopped for real)
        ("extract_bronze", "MongoDB at 127.0.0.1:%d is not reachable" % run.mongo_port, run, "mongo"),
        ("publish_cassandra", "Cassandra at 127.0.0.1:1 is not reachable", run.with_overrides(cassandra_port=closed),
         None),
        ("publish_redis", "Redis at 127.0.0.1:%d is not reachable" % run.redis_port, run, "redis"),
        ("publish_neo4j", "Neo4j at 127.0.0.1:1 is not reachable",
         run.with_overrides(neo4j_uri="bolt://127.0.0.1:1"), None),
    ]
    for stage, message, attempt, service in outages:
        if service:
            _stack("down", service, run)
        try:
            proc = run_stages(attempt, store)
        finally:
            if service:
                _stack("up", service, run)
        done = json.loads(store.read_text()) if store.exists() else {}
        assert proc.returncode == 1 and stage not in done, (stage, proc.stderr[-3000:])
        assert "StoreUnavailable: " + message in proc.stderr, (stage, proc.stderr[-3000:])
    proc = run_stages(run, store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_state(run, spark, want)
