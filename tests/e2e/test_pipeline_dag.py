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
def watched_seconds(events):
    """(play event, seconds watched) for every play: up to the next video event of the same student and
    video (pause/complete position, or a seek's from-position), capped by the rest of the video and by
    2x the wall-clock time in between; 0 when nothing follows or the next event is another play."""
    streams = defaultdict(list)
    for d in events:
        if d["event_type"] in ("video_play", "video_pause", "video_seek", "video_complete"):
            streams[(d["student_id"], d["item_id"])].append(d)
    out = []
    for stream in streams.values():
        stream.sort(key=lambda d: (d["event_time"], d["event_id"]))
        for cur, nxt in zip(stream, stream[1:] + [None]):
            if cur["event_type"] != "video_play":
                continue
            seconds = 0.0
            if nxt is not None:
                if nxt["event_type"] in ("video_pause", "video_complete"):
                    end = nxt["position_s"]
                elif nxt["event_type"] == "video_seek":
                    end = nxt.get("from_position_s", cur["position_s"])
                else:
                    end = cur["position_s"]
                elapsed = (nxt["event_time"] - cur["event_time"]).total_seconds()
                seconds = max(0.0, min(end - cur["position_s"], 2.0 * elapsed, cur["duration_s"] - cur["position_s"]))
            out.append((cur, seconds))
    return out


def engagement_scores(extracted, settings, as_of):
    """Closed form: per (student, course), the sum over events known (written to MongoDB) by the
    end of ``as_of`` of weight * exp(-lambda * days since min(event day, known day))."""
    weights, lam = settings.engagement_weight_map, settings.engagement_decay_per_day
    scores = defaultdict(float)
    for d in extracted:
        known = d["ingested_at"].astimezone(UTC).date()
        if known <= as_of:
            age = (as_of - min(d["event_time"].date(), known)).days
            scores[(d["student_id"], d["course_id"])] += weights.get(d["event_type"], 0.0) * math.exp(-lam * age)
    return scores


def expected_segments(extracted, settings, as_of, student_scores, passing):
    """Segment per student from the activity windows; the 'highly engaged' percentile is taken
    over the stored scores (checked separately) so that near-ties cannot flip it."""
    window = settings.engagement_activity_window_days
    recent, previous, attempts, passes = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(list)
    for d in extracted:
        age = (as_of - d["event_time"].date()).days
        if d["ingested_at"].astimezone(UTC).date() > as_of or not 0 <= age < 2 * window:
            continue
        (recent if age < window else previous)[d["student_id"]] += 1
        if d["event_type"] == "quiz_attempt":
            attempts[d["student_id"]] += 1
            passes[d["student_id"]].append(d["score"] >= passing[d["item_id"]])
    active = {s: v for s, v in student_scores.items() if recent[s]}
    out = {}
    for student, score in student_scores.items():
        rate = sum(passes[student]) / len(passes[student]) if passes[student] else None
        pct = ((sum(v < score for v in active.values()) + sum(v == score for v in active.values()) / 2)
               / len(active)) if student in active else None
        out[student] = ("inactive" if not recent[student] and not previous[student]
                        else "disengaging" if not recent[student]
                        else "struggling" if (attempts[student] >= settings.engagement_struggling_min_attempts
                                              and rate is not None and rate < settings.engagement_struggling_pass_rate)
                        else "highly_engaged" if pct > settings.engagement_band_high else "active")
    return out


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
    courses = {c["_id"]: c for c in data.courses}
    passing = {q["quiz_id"]: q["passing_score"] for c in data.courses for q in c["content"]["quizzes"]}
    passes = defaultdict(list)
    for d in extracted:
        if d["event_type"] == "quiz_attempt":
            passes[(d["event_time"].date(), d["course_id"])].append(d["score"] >= passing[d["item_id"]])
    watch = defaultdict(float)
    for d, seconds in watched_seconds(extracted):
        watch[(d["event_time"].date(), d["course_id"])] += seconds
    first_day = {}
    for d in extracted:
        key = (d["student_id"], d["course_id"])
        first_day[key] = min(first_day.get(key, d["event_time"].date()), d["event_time"].date())
    new = defaultdict(int)
    for (student, course), day in first_day.items():
        new[(day, course)] += 1
    cassandra = {}
    for key, row in course_day.items():
        pcts = quiz_pcts.get(key)
        cassandra[key] = {
            "active_learners": len(learners[key]), "events": int(row["events"]),
            **{f: int(row[f]) for f in ("page_views", "video_plays", "video_completions", "quiz_attempts",
                                        "assignment_submissions", "logins")},
            "avg_quiz_score_pct": sum(pcts) / len(pcts) if pcts else None,
            "quiz_pass_rate": sum(passes[key]) / len(passes[key]) if passes.get(key) else None,
            "video_watch_seconds": watch.get(key, 0.0), "new_learners": new.get(key, 0),
        }

    progress = {}
    by_student_course = defaultdict(list)
    for d in extracted:
        by_student_course[(d["student_id"], d["course_id"])].append(d)
    for key, events in by_student_course.items():
        videos = [v["video_id"] for v in courses[key[1]]["content"]["videos"]]
        completed = {d["item_id"] for d in events if d["event_type"] == "video_complete"}
        video_events = sorted((d for d in events if d["event_type"].startswith("video_")),
                              key=lambda d: (d["event_time"], d["position_s"]))
        resume = {d["item_id"]: d["position_s"] for d in video_events}
        resume_at = {d["item_id"]: d["event_time"] for d in video_events}
        passed = {d["item_id"] for d in events if d["event_type"] == "quiz_attempt" and d["score"] >= passing[d["item_id"]]}
        status = ("completed" if videos and len(completed) >= len(videos)
                  else "in_progress" if video_events else "not_started")
        progress[key] = {
            "videos_total": len(videos), "videos_completed": len(completed),
            "completion_pct": min(100.0, len(completed) / len(videos) * 100) if videos else 0.0,
            "status": status, "resume_positions": resume,
            "quizzes_passed": len(passed), "passed_quiz_ids": sorted(passed),
            "completed_video_ids": sorted(completed), "resume_at": resume_at,
            "first_event_time": min(d["event_time"] for d in events),
            "last_accessed": max(d["event_time"] for d in events),
        }

    course_scores = engagement_scores(extracted, settings, RUN_DAY)
    scores = defaultdict(float)
    for (student, _course), score in course_scores.items():
        scores[student] += score

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
    return {"days": days, "cassandra": cassandra, "scores": dict(scores), "extracted": extracted, "passing": passing,
            "pairs": pairs, "progress": progress,
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
            if isinstance(value, float):
                assert row[metric] == pytest.approx(value, rel=1e-9, abs=1e-6), (key, metric)
            else:
                assert row[metric] == value, (key, metric)

    # Redis: the leaderboard holds every student's decayed score as of the run day.
    r = redis_sink.connect(settings)
    board = dict(r.zrange(redis_sink.keys(settings)["leaderboard"], 0, -1, withscores=True))
    assert set(board) == set(exp["scores"])
    for sid, score in exp["scores"].items():
        assert board[sid] == pytest.approx(score, abs=1e-5), sid  # DECIMAL(18,6) rounding per step
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


def test_gold_progress_and_multi_region_tables_equal_the_independent_computation(pipeline_world, spark):
    from jobs.common import read_table
    from lake.tables import GOLD_MULTI_REGION, GOLD_STUDENT_COURSE_PROGRESS

    settings, data = pipeline_world
    exp = expected_results(data, settings)
    got = {(r["student_id"], r["course_id"]): r.asDict()
           for r in read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, settings.lake_uri).collect()}
    assert set(got) == set(exp["progress"])
    for key, want in exp["progress"].items():
        row = got[key]
        for col, value in want.items():
            if col in ("first_event_time", "last_accessed"):
                assert row[col].replace(tzinfo=UTC) == value, (key, col)
            elif col == "resume_positions":
                assert row[col] == pytest.approx(value), key
            elif col == "resume_at":
                assert {k: v.replace(tzinfo=UTC) for k, v in row[col].items()} == value, key
            elif isinstance(value, float):
                assert row[col] == pytest.approx(value), (key, col)
            else:
                assert row[col] == value, (key, col)
    assert "in_progress" in {p["status"] for p in exp["progress"].values()}
    assert any(p["videos_completed"] > 0 for p in exp["progress"].values())
    pairs = {(r["student_id"], r["first_event_id"], r["second_event_id"])
             for r in read_table(spark, GOLD_MULTI_REGION, settings.lake_uri).collect()}
    assert pairs == exp["pairs"]


def test_engagement_chain_bands_and_segments_equal_an_independent_computation(pipeline_world, spark):
    """Every as-of day of the chain (the batch's events were known over several days) against the
    closed form, the bands against percentiles computed here, the segments against the rules."""
    from jobs.common import read_table
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT

    settings, data = pipeline_world
    exp = expected_results(data, settings)
    course_rows = [r.asDict() for r in read_table(spark, GOLD_STUDENT_COURSE_ENGAGEMENT, settings.lake_uri).collect()]
    student_rows = {(r["as_of_date"], r["student_id"]): r.asDict()
                    for r in read_table(spark, GOLD_STUDENT_ENGAGEMENT, settings.lake_uri).collect()}
    as_of_days = sorted({r["as_of_date"] for r in course_rows})
    first_known = min(d["ingested_at"].astimezone(UTC).date() for d in exp["extracted"])
    assert as_of_days == [first_known + dt.timedelta(days=i) for i in range((RUN_DAY - first_known).days + 1)]
    segments_seen = set()
    for day in as_of_days:
        want = {k: v for k, v in engagement_scores(exp["extracted"], settings, day).items()}
        got = {(r["student_id"], r["course_id"]): r for r in course_rows if r["as_of_date"] == day}
        assert set(got) == set(want), day
        for key, score in want.items():
            assert float(got[key]["score"]) == pytest.approx(score, abs=1e-5), (day, key)
        by_course = defaultdict(list)
        for (student, course), row in got.items():
            by_course[course].append(row["score"])
        for (student, course), row in got.items():
            peers = by_course[course]
            pct = (sum(v < row["score"] for v in peers) + sum(v == row["score"] for v in peers) / 2) / len(peers)
            assert row["percentile"] == pytest.approx(pct), (day, student, course)
            band = ("low" if pct < settings.engagement_band_low else "high" if pct > settings.engagement_band_high
                    else "normal")
            assert row["band"] == band, (day, student, course)
        stored = {s: row["score"] for (d, s), row in student_rows.items() if d == day}
        assert set(stored) == {s for s, _ in want}
        for student, score in stored.items():
            assert score == sum(v["score"] for (s, _), v in got.items() if s == student)
        segments = expected_segments(exp["extracted"], settings, day, stored, exp["passing"])
        for student, segment in segments.items():
            assert student_rows[(day, student)]["segment"] == segment, (day, student)
        segments_seen |= set(segments.values())
    assert {"active", "highly_engaged"} <= segments_seen, segments_seen


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


def test_a_failing_gate_publishes_nothing_and_keeps_a_readable_report(pipeline_world, spark):
    """A bad configuration (a negative engagement weight) makes gold break the gate's rule that
    scores are never negative: the run fails at gate_gold, no sink changes, the gold tables are
    restored to what they were, and the failing rows are kept in the lake's quarantine folder."""
    from jobs.common import Interval
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
    from jobs.common import quarantine_path
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT

    kept = spark.read.format("delta").load(quarantine_path(GOLD_STUDENT_COURSE_ENGAGEMENT, settings.lake_uri,
                                                            Interval.for_day(RUN_DAY).batch_id))
    assert kept.where("score < 0").count() > 0
    report = bad.home_path / "quality" / Interval.for_day(RUN_DAY).batch_id / "gold.student_course_engagement.html"
    assert "FAILED" in report.read_text()
