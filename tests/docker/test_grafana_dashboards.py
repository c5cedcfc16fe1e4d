"""Grafana cannot run on this machine, so every panel's query is run here against the live
Cassandra and Redis (after publishing known rows through the project's sinks) and must return
those rows; every panel must use a provisioned data source."""

import datetime as dt
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

GRAFANA = Path(__file__).resolve().parents[2] / "docker" / "grafana"
DAY = dt.date(2026, 2, 3)
ROWS = [
    {"event_date": DAY, "course_id": cid, "active_learners": n, "events": 10 * n, "page_views": n, "video_plays": 2 * n,
     "video_completions": n // 2, "quiz_attempts": 1, "assignment_submissions": 0, "logins": n,
     "video_watch_seconds": 600.0 * n, "avg_quiz_score_pct": 50.0 + n, "quiz_pass_rate": 0.5, "new_learners": 1}
    for cid, n in (("c-a", 3), ("c-b", 7))
]
SCORES = [{"student_id": "s-x", "score": 4.5, "segment": "active", "events_recent": 3,
           "last_event_time": dt.datetime(2026, 2, 3, 10)},
          {"student_id": "s-y", "score": 9.25, "segment": "highly_engaged", "events_recent": 5,
           "last_event_time": dt.datetime(2026, 2, 3, 11)}]


def _run_rows():
    from learntrack.intervals import Interval
    from learntrack.run_records import run_record_rows

    stages = [{"stage": "build_silver", "state": "success", "try_number": 2, "started_at": "2026-02-04T00:01:00+00:00",
               "duration_s": 41.5, "rows_in": 900, "rows_out": 850, "backlog_batches": 1, "gate_checks": None,
               "gate_failed": None},
              {"stage": "gate_silver", "state": "failed", "try_number": 3, "started_at": "2026-02-04T00:02:00+00:00",
               "duration_s": 12.0, "rows_in": None, "rows_out": None, "backlog_batches": None, "gate_checks": 20,
               "gate_failed": 1}]
    return run_record_rows("scheduled__2026-02-03T00:00:00+00:00", Interval.for_day(DAY), stages)


RUN_ROWS = _run_rows()


def panels():
    dash = json.loads((GRAFANA / "dashboards" / "learntrack-engagement.json").read_text())
    return dash["panels"]


def panel_columns(panel) -> list[str]:
    return [c.strip() for c in re.search(r"SELECT (.*) FROM", panel["targets"][0]["target"]).group(1).split(",")]


def substitute(text: str, settings) -> str:
    return (text.replace("$day", DAY.isoformat()).replace("$course", "c-b")
            .replace("$prefix", settings.redis_prefix))


@pytest.fixture(scope="module")
def published(stack):
    from learntrack.sinks.cassandra_sink import publish_course_daily, publish_pipeline_runs
    from learntrack.sinks.redis_sink import connect, publish_scores

    settings = stack.with_overrides(cassandra_keyspace="lt_grafana", redis_prefix="lt_grafana")
    publish_course_daily(settings, [DAY], ROWS)
    r = connect(settings)
    for key in r.scan_iter("lt_grafana:*"):
        r.delete(key)
    publish_scores(settings, DAY, SCORES)
    publish_pipeline_runs(settings, RUN_ROWS)
    return settings


def test_every_panel_uses_a_provisioned_datasource():
    provisioned = set(re.findall(r"uid:\s*(\S+)", (GRAFANA / "provisioning/datasources/learntrack.yaml").read_text()))
    assert {p["datasource"]["uid"] for p in panels()} <= provisioned


def test_cassandra_panels_return_the_published_rows(published):
    from learntrack.sinks.cassandra_sink import connect

    cluster, session = connect(published)
    try:
        session.set_keyspace(published.cassandra_keyspace)
        results = {}
        for p in panels():
            if p["datasource"]["type"] != "hadesarchitect-cassandra-datasource":
                continue
            rows = [r._asdict() for r in session.execute(substitute(p["targets"][0]["target"], published))]
            results[p["id"]] = rows
        by_day = {r["course_id"]: r for r in results[1]}
        assert set(by_day) == {"c-a", "c-b"}
        for want in ROWS:  # the day's panel shows every published column (the day is its filter), as published
            assert by_day[want["course_id"]] == {k: v for k, v in want.items() if k != "event_date"}
        [course] = results[2]
        columns = panel_columns(panels()[1])
        want = {**[r for r in ROWS if r["course_id"] == "c-b"][0], "event_date": DAY.isoformat()}
        assert set(course) == set(columns) and "events" in columns
        assert {c: str(v) if c == "event_date" else v for c, v in course.items()} == {c: want[c] for c in columns}
        health = {r["stage"]: r for r in results[5]}
        assert set(health) == {"build_silver", "gate_silver"}
        columns = panel_columns(panels()[4])
        for want in RUN_ROWS:  # every column the panel shows is there, as published
            got = health[want["stage"]]
            assert set(columns) <= set(got)
            assert all(got[c] == want[c] for c in columns)
        assert health["gate_silver"]["gate_failed"] == 1 and health["build_silver"]["backlog_batches"] == 1
    finally:
        cluster.shutdown()


def test_redis_panels_return_the_leaderboard(published):
    from learntrack.sinks.redis_sink import connect

    r = connect(published)
    out = {}
    for p in panels():
        if p["datasource"]["type"] != "redis-datasource":
            continue
        t = p["targets"][0]
        key = substitute(t["keyName"], published)
        if t["command"] == "zrevrangebyscore":
            out[p["id"]] = r.zrevrangebyscore(key, t["max"], t["min"], start=0, num=t["count"], withscores=True)
        elif t["command"] == "get":
            out[p["id"]] = r.get(key)
        else:
            pytest.fail(f"panel {p['id']} uses a command this test does not know: {t['command']}")
    assert out[3] == [("s-y", 9.25), ("s-x", 4.5)]
    assert out[4] == DAY.isoformat()
