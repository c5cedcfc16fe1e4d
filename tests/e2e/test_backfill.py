"""Backfill: the daily chain (extraction, gates, silver, gold, the three sinks) run for the same days
in order, in UTC, and out of order on a host in another time zone, leaves identical tables (apart
from lineage: which batch brought a row and when it was extracted) and identical sinks.

Out of order is what a backfill of an earlier day after a later one really is here: the earlier
day's run extracted its batch and then failed, the later day's run took that batch in as backlog,
and the earlier day's retry runs last, on its own batch. (Running the later day first on a fresh
lake would not do: its extraction takes everything written up to its end, and the earlier day's
run then has nothing to do.)"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time

import pytest

from learntrack.generator import GenParams, generate, load_into_mongo

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

UTC = dt.timezone.utc
END = dt.datetime(2026, 2, 4, tzinfo=UTC)
DAYS = [dt.date(2026, 2, 2), dt.date(2026, 2, 3)]
PARAMS = GenParams(students=40, courses=6, days=3, end=END, seed=23, multi_region_rate=0.08, late_rate=0.08,
                   duplicate_rate=0.03, malformed_rate=0.02)
LINEAGE = {"batch_id", "extracted_at"}


def run_day(settings, day, upto: str | None = None) -> dict:
    """The daily chain for ``day`` in-process (the DAG's stage functions in its order), every stage
    or only those up to ``upto``; a gate that fails raises."""
    from learntrack.intervals import Interval
    from learntrack import pipeline

    names = [s.name for s in pipeline.DAILY]
    chain = pipeline.DAILY[:names.index(upto) + 1] if upto else pipeline.DAILY
    results = pipeline.run_chain(settings, Interval.for_day(day), chain)
    for name, result in results.items():
        if name.startswith("gate_"):  # gates ran, checked something, and passed
            assert result["gate_checks"] > 0 and result["gate_failed"] == 0, (day, name, result)
    return results


def reset_sinks(settings) -> None:
    """Empty this lake's Cassandra keyspace and Redis keys, and (Neo4j Community has one graph) the graph."""
    from cassandra.cluster import Cluster

    from learntrack.sinks import neo4j_sink, redis_sink

    cluster = Cluster([settings.stack_host], port=settings.cassandra_port, protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=60)
    finally:
        cluster.shutdown()
    r = redis_sink.connect(settings)
    for key in r.scan_iter(f"{settings.redis_prefix}:*"):
        r.delete(key)
    neo4j_sink.clear_namespace(settings)


def sinks(settings, spark) -> dict:
    """What the sinks hold for this lake (Redis keys without their prefix)."""
    from lake.tables import DATA_TABLES
    from stores import snapshot

    snap = snapshot(settings, spark)
    for table in DATA_TABLES:  # compared without lineage by lake_tables
        snap.pop(table.qualified)
    snap["redis"] = {k.split(":", 1)[1]: v for k, v in snap["redis"].items()}
    return snap


@contextlib.contextmanager
def host_time_zone(name: str):
    """The Python process's local time zone (what pyspark uses to convert naive datetimes)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def lake_tables(spark, settings):
    from lake.delta import read_table
    from lake.tables import DATA_TABLES

    out = {}
    for table in DATA_TABLES:
        columns = [c for c in table.column_names if c not in LINEAGE]
        rows = read_table(spark, table, settings.lake_uri).select(*columns).collect()
        out[table.qualified] = sorted(repr([sorted(v.items()) if isinstance(v, dict) else v for v in r]) for r in rows)
    return out


def test_days_out_of_order_and_in_another_time_zone_give_the_same_tables(stack, spark, tmp_path):
    from learntrack.intervals import Interval
    from learntrack.mongo_ops import client

    settings = stack.with_overrides(mongo_db="lt_test_backfill")
    mongo = client(settings)
    mongo.drop_database(settings.mongo_db)
    load_into_mongo(mongo[settings.mongo_db], generate(PARAMS))
    mongo.close()

    in_order = settings.with_overrides(lake_root=str(tmp_path / "in-order"), cassandra_keyspace="lt_test_bf_in_order",
                                       redis_prefix="lt_test_bf_in_order")
    reset_sinks(in_order)
    for day in DAYS:
        run_day(in_order, day)
    want_sinks = sinks(in_order, spark)

    shuffled = settings.with_overrides(lake_root=str(tmp_path / "shuffled"), cassandra_keyspace="lt_test_bf_shuffled",
                                       redis_prefix="lt_test_bf_shuffled")
    reset_sinks(shuffled)
    earlier, later = DAYS
    with host_time_zone("Europe/Berlin"):  # UTC+1 in February: a naive datetime would move an hour
        assert time.localtime(0).tm_hour == 1
        first_try = run_day(shuffled, earlier, upto="gate_bronze")  # then build_silver fails: nothing after
        assert first_try["extract_bronze"]["rows_out"] > 0
        next_day = run_day(shuffled, later)
        retry = run_day(shuffled, earlier)
    # the later day took the earlier day's batch in; the retry then reprocessed that batch after it
    assert next_day["build_silver"]["backlog_batches"] == 1 and next_day["build_gold"]["backlog_batches"] == 1
    assert retry["extract_bronze"]["rows_out"] == 0  # extracted by the first try
    assert retry["build_silver"]["input_batches"] == [Interval.for_day(earlier).batch_id]
    extracted = {src["table"]: src["extracted"] for src in first_try["extract_bronze"]["sources"]}
    assert retry["build_silver"]["rows_in"] == extracted["bronze.activities"]
    assert retry["build_gold"]["recomputed_dates"] and retry["build_gold"]["engagement_dates"]

    want, got = lake_tables(spark, in_order), lake_tables(spark, shuffled)
    assert want["gold.course_daily_engagement"] and want["gold.student_engagement"]
    for name in want:
        assert got[name] == want[name], f"{name} differs after a backfill in another order"
    assert want_sinks["course_daily_engagement_by_day"] and want_sinks["redis"] and want_sinks["neo4j_paths"]
    got_sinks = sinks(shuffled, spark)
    for name in want_sinks:
        assert got_sinks[name] == want_sinks[name], f"sink {name} differs after a backfill in another order"
