"""Serving benchmarks: each sink's publish rate beside a baseline measured in the same run on the
same server (``learntrack bench-serving``). Prints a table; nothing here is asserted.

- Redis: ``publish_scores`` (students/s, each a ZADD + HSET + EXPIRE and a per-course ZADD) against
  ``redis-benchmark -P 64 -t set`` (SETs/s, the server's pipelined ceiling).
- Cassandra: ``replace_days`` rows/s against one synchronous prepared INSERT at a time.
- Neo4j: ``publish_access`` accesses/s (UNWIND batches) against one transaction per access.
- The live path: ``insert_activities`` p50/p99 with and without the Redis write-through.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time
from typing import Callable

from learntrack.settings import Settings

NAMESPACE = "lt_bench_serving"
DAY = dt.date(2026, 5, 1)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def bench_redis(settings: Settings, students: int) -> dict:
    from learntrack.sinks import redis_sink

    r = redis_sink.connect(settings)
    rows = [{"student_id": f"s{i:07d}", "score": i % 997 / 7, "segment": "active", "events_recent": 3,
             "last_event_time": None} for i in range(students)]
    courses = [{"student_id": row["student_id"], "course_id": f"c{i % 500:05d}", "score": row["score"]}
               for i, row in enumerate(rows)]
    t0 = time.perf_counter()
    redis_sink.publish_scores(settings, DAY, rows, courses, digest=f"bench{time.time_ns()}")
    publish_s = time.perf_counter() - t0
    for key in r.scan_iter(f"{settings.redis_prefix}:*"):
        r.unlink(key)
    baseline = None
    tool = shutil.which("redis-benchmark")
    if tool:
        host, port = r.connection_pool.connection_kwargs["host"], r.connection_pool.connection_kwargs["port"]
        out = subprocess.run([tool, "-h", host, "-p", str(port), "-P", "64", "-t", "set", "-n", str(students * 4),
                              "-q", "-r", "100000"], capture_output=True, text=True, timeout=300).stdout
        found = re.findall(r"SET: ([\d.]+) requests per second", out.replace("\r", "\n"))
        baseline = float(found[-1]) if found else None
    return {"sink": "Redis publish_scores", "rows": students, "seconds": publish_s,
            "rate": _rate(students, publish_s), "unit": "students/s",
            "baseline": "redis-benchmark -P 64 SET", "baseline_rate": baseline, "baseline_unit": "SET/s",
            "note": "each student = ZADD + HSET + EXPIRE x2 + a course ZADD (5 commands)"}


def bench_cassandra(settings: Settings, rows_n: int, baseline_n: int) -> dict:
    from learntrack.sinks import cassandra_sink
    from learntrack.sinks.cassandra_schema import COURSE_DAILY_BY_DAY

    rows = [{"event_date": DAY, "course_id": f"c{i:06d}", **{m: i for m in cassandra_sink.METRICS}}
            for i in range(rows_n)]
    cluster, session = cassandra_sink.connect(settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=120)
        cassandra_sink.ensure_schema(session, settings)
        t0 = time.perf_counter()
        cassandra_sink.replace_days(session, settings, COURSE_DAILY_BY_DAY, [DAY], rows)
        replace_s = time.perf_counter() - t0
        cols = ("event_date", "course_id", *cassandra_sink.METRICS)
        stmt = session.prepare(f"INSERT INTO {settings.cassandra_keyspace}.{COURSE_DAILY_BY_DAY.name} "
                               f"({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})")
        t0 = time.perf_counter()
        for row in rows[:baseline_n]:
            session.execute(stmt, tuple(row[c] for c in cols))
        one_s = time.perf_counter() - t0
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=120)
    finally:
        cluster.shutdown()
    return {"sink": "Cassandra replace_days", "rows": rows_n, "seconds": replace_s, "rate": _rate(rows_n, replace_s),
            "unit": "rows/s", "baseline": f"one INSERT at a time ({baseline_n} rows)",
            "baseline_rate": _rate(baseline_n, one_s), "baseline_unit": "rows/s",
            "note": f"{settings.cassandra_max_in_flight} in flight, batches of {settings.cassandra_batch_bytes} B; "
                    "a published-keys record + the row per row"}


def bench_neo4j(settings: Settings, accesses: int, baseline_n: int) -> dict:
    from learntrack.sinks import neo4j_sink

    t = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
    rows = [{"event_id": f"e{i:08d}", "student_id": f"s{i % (accesses // 3 + 1):07d}", "region": f"r{i % 6}",
             "country": "XX", "ip": f"10.0.{i % 250}.{i % 200}", "device": "web",
             "event_time": t + dt.timedelta(seconds=i)} for i in range(accesses + baseline_n)]
    neo4j_sink.clear_namespace(settings)
    t0 = time.perf_counter()
    neo4j_sink.publish_access(settings, rows[:accesses])
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in rows[accesses:]:
        neo4j_sink.publish_access(settings, [row], batch=1)
    one_s = time.perf_counter() - t0
    neo4j_sink.clear_namespace(settings)
    return {"sink": "Neo4j publish_access", "rows": accesses, "seconds": batch_s, "rate": _rate(accesses, batch_s),
            "unit": "accesses/s", "baseline": f"one transaction per access ({baseline_n})",
            "baseline_rate": _rate(baseline_n, one_s), "baseline_unit": "accesses/s",
            "note": "UNWIND batches of 2000, one transaction each"}


def run(settings: Settings, students: int = 50_000, cassandra_rows: int = 20_000, accesses: int = 20_000,
        live_calls: int = 200, echo: Callable[[str], None] = print) -> list[dict]:
    from learntrack.sinks import redis_live

    ns = settings.with_overrides(redis_prefix=NAMESPACE, cassandra_keyspace=NAMESPACE, neo4j_namespace=NAMESPACE,
                                 mongo_db=NAMESPACE)
    results = []
    for name, bench in (("Redis", lambda: bench_redis(ns, students)),
                        ("Cassandra", lambda: bench_cassandra(ns, cassandra_rows, min(2000, cassandra_rows))),
                        ("Neo4j", lambda: bench_neo4j(ns, accesses, min(500, accesses)))):
        echo(f"... {name}")
        results.append(bench())
    echo("... live path (insert_activities with and without the Redis write-through)")
    live = redis_live.bench_live_path(ns, live_calls, 50, echo=lambda m: None)
    echo("")
    echo(f"{'sink':<26} {'rows':>8} {'rate':>12} {'unit':<11} {'baseline rate':>14}  baseline          ratio")
    for r in results:
        base = r["baseline_rate"]
        ratio = f"{r['rate'] / base:5.2f}x" if base else "-"
        echo(f"{r['sink']:<26} {r['rows']:>8} {r['rate']:>12,.0f} {r['unit']:<11} "
             f"{(base or 0):>14,.0f}  {r['baseline']}  {ratio}")
    echo(f"live path per insert_activities call of 50 docs: {live}")
    return results + [{"sink": "live path", **live}]
