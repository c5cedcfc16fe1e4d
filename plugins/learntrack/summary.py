"""A person-readable account of what landed in each store for one pipeline day."""

from __future__ import annotations

import datetime as dt
from typing import Callable


def print_summary(settings, day: dt.date, echo: Callable[[str], None]) -> None:
    from lake.delta import read_table
    from lake.spark import spark_session
    from lake.tables import ALL_TABLES
    from learntrack.mongo_ops import client
    from learntrack.sinks import cassandra_sink, neo4j_sink, redis_sink

    echo("")
    echo(f"==================== LearnTrack summary for {day} ====================")
    mongo = client(settings)
    db = mongo[settings.mongo_db]
    echo("MongoDB (source)      " + ", ".join(f"{c}={db[c].estimated_document_count()}"
                                              for c in ("students", "courses", "activities")))
    mongo.close()

    spark = spark_session(settings)
    echo(f"Delta lake            {settings.lake_uri}")
    for table in ALL_TABLES:
        echo(f"  {table.qualified:<32} {read_table(spark, table, settings.lake_uri).count():>9} rows")
    quarantine = read_table(spark, [t for t in ALL_TABLES if t.name == "quarantine"][0], settings.lake_uri)
    for row in quarantine.groupBy("rule").count().orderBy("rule").collect():
        echo(f"    quarantined: {row['count']:>5}  {row['rule']}")

    rows = cassandra_sink.read_day(settings, day)
    echo(f"Cassandra             {settings.cassandra_keyspace}.{cassandra_sink.TABLE_BY_DAY} "
         f"for {day}: {len(rows)} courses")
    for r in sorted(rows, key=lambda r: -r["events"])[:5]:
        avg = f"{r['avg_quiz_score_pct']:.1f}%" if r["avg_quiz_score_pct"] is not None else "-"
        passed = f"{r['quiz_pass_rate'] * 100:.0f}%" if r.get("quiz_pass_rate") is not None else "-"
        echo(f"    {r['course_id']}: learners={r['active_learners']:>4} (new {r['new_learners'] or 0:>3}) "
             f"events={r['events']:>5} watched={(r['video_watch_seconds'] or 0) / 3600:6.1f} h "
             f"completions={r['video_completions']:>3} quizzes={r['quiz_attempts']:>3} avg={avg} passed={passed}")

    funnel = cassandra_sink.read_day(settings, day, cassandra_sink.COMPLETION_FUNNEL_BY_DAY)
    if funnel:
        total = {k: sum(r[k] for r in funnel) for k in ("enrolled", "started", "half_completed", "completed")}
        echo(f"                      completion funnel on {day} ({len(funnel)} courses): enrolled {total['enrolled']}"
             f" -> started {total['started']} -> 50% {total['half_completed']} -> completed {total['completed']}")
    alerts = cassandra_sink.read_day(settings, day, cassandra_sink.MULTI_REGION_ALERTS_BY_DAY)
    shared = cassandra_sink.read_day(settings, day, cassandra_sink.SHARED_ACCESS_BY_DAY)
    echo(f"                      access alerts on {day}: {len(alerts)} multi-region pairs, "
         f"{len(shared)} shared IPs/devices")

    version = redis_sink.current_version(settings)
    board = redis_sink.leaderboard(settings)
    echo(f"Redis                 engagement snapshot {version or '(none)'}: {len(board)} students")
    for sid, score in redis_sink.top(settings, 5):
        echo(f"    {sid}: {score:.2f}")
    if version:
        segments = redis_sink.connect(settings).hgetall(redis_sink.version_key(settings, version, "segments"))
        echo("    segments: " + ", ".join(f"{k}={v}" for k, v in sorted(segments.items())))

    since = dt.datetime.combine(day - dt.timedelta(days=30), dt.time(), dt.timezone.utc)
    until = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    pairs = neo4j_sink.multi_region_pairs(settings, since, until)
    echo(f"Neo4j                 multi-region access within {settings.multi_region_window_minutes} min: "
         f"{len({p['student_id'] for p in pairs})} students, {len(pairs)} access pairs")
    for p in pairs[:5]:
        echo(f"    {p['student_id']}: {p['first_region']} {p['first_at'].iso_format()[:19]} -> "
             f"{p['second_region']} {p['second_at'].iso_format()[:19]}")
    echo(f"Quality reports       {settings.home_path / 'quality'}")
    echo("=" * 70)
