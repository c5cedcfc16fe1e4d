"""The whole DAG, run by Airflow (`airflow dags test`) against the real stack.

Expected numbers are computed here in plain Python from the generated source documents, with no
Spark and no project analytics code, and compared with what landed in Cassandra, Redis and Neo4j.
A second run of the same DAG run must leave the lake and every store exactly as they were.
"""

from __future__ import annotations

import datetime as dt

import pytest

from learntrack.generator import GenParams, generate, load_into_mongo
from oracle import assert_engagement_equal, assert_gold_equal, assert_sinks_equal, expected_results as oracle_results
from stores import reset_namespaces, snapshot

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

UTC = dt.timezone.utc
END = dt.datetime(2026, 1, 10, tzinfo=UTC)
RUN_DAY = dt.date(2026, 1, 9)  # the DAG run's interval: [2026-01-09, 2026-01-10)
PARAMS = GenParams(students=120, courses=12, days=3, end=END, seed=11, multi_region_rate=0.08, late_rate=0.05,
                   shared_ip_students=10,
                   duplicate_rate=0.02, malformed_rate=0.01)


# ------------------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def pipeline_world(stack, spark):
    """Clean namespaces, generated data in MongoDB, and one DAG run."""
    from learntrack.cli import run_dag
    from learntrack.mongo_ops import client

    settings = stack
    reset_namespaces(settings)
    mongo = client(settings)
    data = generate(PARAMS)
    load_into_mongo(mongo[settings.mongo_db], data)
    mongo.close()
    run_dag(settings, RUN_DAY)
    return settings, data


def expected_results(data, settings):
    return oracle_results(data, settings, END, RUN_DAY)


def test_published_numbers_equal_an_independent_computation(pipeline_world):
    settings, data = pipeline_world
    exp = expected_results(data, settings)
    assert exp["held_back"] > 0, "the data set should contain writes after the interval end (late events)"
    assert exp["quarantined"] and exp["duplicates"] > 0
    assert exp["shared"], "the generator's campus IPs should reach the account-sharing threshold"
    assert_sinks_equal(settings, data, exp, END, RUN_DAY)


def test_gold_progress_and_multi_region_tables_equal_the_independent_computation(pipeline_world, spark):
    settings, data = pipeline_world
    assert_gold_equal(spark, settings, expected_results(data, settings))


def test_engagement_chain_bands_and_segments_equal_an_independent_computation(pipeline_world, spark):
    """Every as-of day of the chain (the batch's events were known over several days) against the
    closed form, the bands against percentiles computed here, the segments against the rules."""
    settings, data = pipeline_world
    assert_engagement_equal(spark, settings, expected_results(data, settings), RUN_DAY)


def test_lake_keeps_every_row_and_quarantines_the_malformed_with_their_rule(pipeline_world, spark):
    from pyspark.sql import functions as F

    from learntrack.intervals import Interval
    from lake.delta import read_table
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
    # What is neither kept nor quarantined is the retries the generator recorded writing (by _id) up
    # to the interval end: its ground truth, not the oracle's written - kept - quarantined.
    written_ids = {str(d["_id"]) for d in data.activities if d["ingested_at"] <= END}
    retries = [t for t in data.truth["duplicates"] if t["_id"] in written_ids]
    assert retries and bronze - silver - len(quarantine) == len(retries)


def test_second_run_of_the_same_dag_run_changes_nothing(pipeline_world, spark):
    from learntrack.cli import run_dag

    settings, _ = pipeline_world
    before = snapshot(settings, spark)
    run_dag(settings, RUN_DAY)
    after = snapshot(settings, spark)
    for key in before:
        assert after[key] == before[key], f"{key} changed on re-run"


def test_a_failing_gate_publishes_nothing_and_keeps_a_readable_report(pipeline_world, spark):
    """A bad configuration (a negative engagement weight) makes gold break the gate's rule that
    scores are never negative: the run fails at gate_gold, no sink changes, the gold tables are
    restored to what they were, and the failing rows are kept in the lake's quarantine folder."""
    from learntrack.intervals import Interval
    from learntrack.cli import run_dag

    settings, _ = pipeline_world
    bad = settings.with_overrides(engagement_weights='{"page_view": -50, "login": 1}')
    sinks = ("course_daily_engagement_by_day", "course_daily_engagement_by_course", "redis", "neo4j_paths",
             "neo4j_nodes", "neo4j_rels")
    before = snapshot(settings, spark)
    with pytest.raises(RuntimeError, match="failed"):
        run_dag(bad, RUN_DAY)
    after = snapshot(settings, spark)
    for key in sinks:
        assert after[key] == before[key], f"{key} changed although the gate failed"
    for key in before:
        assert after[key] == before[key], f"{key} still holds rows that failed the gate"
    from lake.delta import quarantine_path
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT

    kept = spark.read.format("delta").load(quarantine_path(GOLD_STUDENT_COURSE_ENGAGEMENT, settings.lake_uri,
                                                            Interval.for_day(RUN_DAY).batch_id))
    assert kept.where("score < 0").count() > 0
    report = bad.home_path / "quality" / Interval.for_day(RUN_DAY).batch_id / "gold.student_course_engagement.html"
    assert "FAILED" in report.read_text()


def test_every_analyst_question_in_the_docs_answers_as_the_source_documents_do(pipeline_world):
    """docs/analysts.md's queries, run as written through `learntrack sql` on the DAG's lake: DuckDB's
    answers against the source documents, Spark SQL's against DuckDB's."""
    from lake.sql import LakeSQL
    from learntrack.sql_bench import analyst_queries, same_rows
    from oracle import assert_rows_equal, expected_analyses

    settings, data = pipeline_world
    want = expected_analyses(expected_results(data, settings), settings, RUN_DAY)
    queries = analyst_queries()
    assert set(queries) == set(want) and len(queries) >= 8  # every documented question is checked
    lake, on_spark = LakeSQL(settings), LakeSQL(settings, "spark")
    try:
        for name, sql in queries.items():
            got = lake.query(sql).rows()
            if name == "at_risk_movement":
                fold = {"active": "engaged", "highly_engaged": "engaged"}
                merged: dict[tuple, int] = {}
                for segment, previous, n in got:
                    key = (segment, fold.get(previous, previous))
                    merged[key] = merged.get(key, 0) + n
                got = sorted(((s, p, n) for (s, p), n in merged.items()), key=lambda r: (-r[2], r[0], r[1]))
            assert got or name in ("at_risk_movement", "multi_region_pairs"), f"{name}: no rows to compare"
            assert_rows_equal(name, got, want[name])
            assert same_rows(lake.query(sql).rows(), on_spark.query(sql).rows()), f"{name}: Spark SQL answers otherwise"
        assert want["multi_region_pairs"] and want["quarantine_by_rule"] and want["top_courses_by_watch_time"]
    finally:
        lake.close()
        on_spark.close()


def test_the_report_shows_the_source_documents_numbers_and_every_chart_renders_in_a_browser(pipeline_world,
                                                                                             tmp_path):
    """`learntrack report`: the numbers behind the charts against the source documents, then the page
    in headless Chromium (every chart image decoded, a non-blank screenshot, no console errors)."""
    from oracle import expected_analyses
    from report_browser import open_headless
    from learntrack.report import TREND_DAYS, write_report

    settings, data = pipeline_world
    exp = expected_results(data, settings)
    page, results = write_report(settings, RUN_DAY, tmp_path, echo=lambda m: None)
    got = {r.section.name: r for r in results}
    assert not [r.error for r in results if r.error]

    per_day: dict = {}
    for (day, _course), row in exp["cassandra"].items():
        if RUN_DAY - dt.timedelta(days=TREND_DAYS - 1) <= day <= RUN_DAY:
            events, watch, learners = per_day.get(day, (0, 0.0, 0))
            per_day[day] = (events + row["events"], watch + row["video_watch_seconds"], learners + row["active_learners"])
    assert [(d, e, round(w / 3600, 2), n) for d, (e, w, n) in sorted(per_day.items())] == \
        [(d, e, pytest.approx(w, abs=0.006), n) for d, e, w, n in got["engagement_trend"].rows]
    top = sorted(((c, row) for (d, c), row in exp["cassandra"].items() if d == RUN_DAY),
                 key=lambda cr: (-cr[1]["video_watch_seconds"], cr[0]))[:10]
    assert [(c, row["active_learners"], row["events"]) for c, row in top] == \
        [(c, n, e) for c, _w, n, e in got["top_courses"].rows]
    totals = {k: sum(f[k] for f in exp["funnel"].values()) for k in ("enrolled", "started", "half_completed", "completed")}
    assert got["completion_funnel"].rows == [("enrolled", totals["enrolled"]), ("started", totals["started"]),
                                             ("half way", totals["half_completed"]), ("completed", totals["completed"])]
    assert got["quarantine_reasons"].rows == expected_analyses(exp, settings, RUN_DAY)["quarantine_by_rule"]
    gates = {r[0]: r for r in got["gate_outcomes"].rows}
    assert {"gate_bronze", "gate_silver", "gate_gold"} <= set(gates) and all(r[2] > 0 for r in gates.values())
    assert sum(n for _s, _p, n in got["segment_flows"].rows) > 0

    charts = [r.png for r in results]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in charts) and len(charts) == 6
    seen = open_headless(page, tmp_path / "page.png")
    assert seen.charts_rendered == seen.charts == 6, seen
    assert seen.console_errors == [], seen.console_errors
    assert seen.distinct_colours > 500, "the screenshot is (nearly) blank"


def test_the_same_run_on_a_spark_cluster_with_an_object_store_lake_builds_the_same_lake(pipeline_world):
    """Only settings change, as for a deployment that outgrew one machine: LEARNTRACK_SPARK_MASTER
    points at the local standalone cluster (`learntrack stack up spark-master spark-worker`) and the
    lake's URI at s3a://learntrack/... on the local S3-compatible store (`learntrack stack up
    s3proxy`). The run executes on the cluster, writes through s3proxy, and holds the local-folder
    run's rows table for table, as delta-rs reads both from outside Spark; `learntrack sql` and
    `learntrack tables` answer from it. (One run for both targets: each alone is configuration the
    other does not touch, and the DAG run is the expensive part.)"""
    import shutil

    from lake import sql as lake_sql
    from lake.status import table_status
    from lake.tables import DATA_TABLES
    from learntrack.cli import run_dag
    from learntrack.stack.manager import StackManager
    from learntrack.stack.services import S3PROXY_BUCKET, s3proxy_lake, spark_master_state
    from stores import lake_rows_read_by_delta_rs

    settings, _ = pipeline_world
    manager = StackManager(settings, echo=lambda m: None)
    services = ["s3proxy", "spark-master", "spark-worker"]
    manager.up(services)
    stored = settings.stack_dir / "s3proxy" / "data" / S3PROXY_BUCKET / "e2e-lake"  # s3proxy's own folder
    shutil.rmtree(stored, ignore_errors=True)
    try:
        target = settings.with_overrides(
            spark_master=f"spark://{settings.stack_host}:{settings.spark_master_port}",
            **s3proxy_lake(settings, "e2e-lake"))
        assert target.lake_uri == f"s3a://{S3PROXY_BUCKET}/e2e-lake"
        before = {a["id"] for a in spark_master_state(settings)["completedapps"]}
        run_dag(target, RUN_DAY)
        ran = [a for a in spark_master_state(settings)["completedapps"] if a["id"] not in before]
        assert ran, "the run did not execute on the cluster"
        assert (stored / "silver" / "activities" / "_delta_log").is_dir(), "the run did not write through s3proxy"

        local, remote = lake_rows_read_by_delta_rs(settings), lake_rows_read_by_delta_rs(target)
        assert remote["silver.activities"] and remote["gold.course_daily_engagement"]
        for table, rows in local.items():
            assert remote[table] == rows, f"{table} differs between the local run and the cluster + s3a:// run"

        query = ("SELECT course_id, sum(events) AS events FROM gold.course_daily_engagement "
                 "GROUP BY course_id ORDER BY course_id")
        answer = lake_sql.query(target, query)
        assert answer.engine == "duckdb" and answer.rows() == lake_sql.query(settings, query).rows()
        # Row counts from the Delta logs' statistics (`learntrack tables`); the run-record tables
        # differ by design (the local lake has seen more runs).
        rows = {s.table.qualified: s.rows for s in table_status(target, DATA_TABLES)}
        assert rows == {s.table.qualified: s.rows for s in table_status(settings, DATA_TABLES)}
        assert rows["silver.activities"] == len(local["silver.activities"])
    finally:
        manager.down(list(reversed(services)))
