"""On-demand benchmark of the lake pipeline (``learntrack bench lake --activities N``).

Method. One generated data set of H+1 days (seed 4242, days in 2024 so nothing meets the demo's
days), sized so that the first H days hold about N activities, is loaded once into MongoDB
(generation time excluded from the docs/s). Extraction takes every document written up to an
interval's end (the watermark lives in the bronze table), so with everything loaded up-front,
successive intervals replay the days as the daily DAG would. The stages of ``learntrack.pipeline``
are called in-process in the DAG's order, with the arguments the DAG passes
(``pipeline.run_chain``), each timed on its own; the SparkSession is created before any
timing (under Airflow each task may also pay a JVM start, not counted here).

1. Stage throughput: a fresh lake and one interval covering the H history days, i.e. one batch of
   about N activities; seconds and rows/s per stage, "rows" being the batch's extracted
   activities for every stage (gold recomputes the batch's days, the sinks publish them).
   Beside it, gold's course daily engagement of the batch's days computed by Spark and by DuckDB
   (through delta-rs) on the same silver tables, alternating, best of two each, and compared.
2. History cost: the daily run of the next day, with H days of history in the lake (right after
   1.) and with 1 day (a second fresh lake: run day 1, then time day 2); ratio H-day / 1-day per
   stage. Both timed days are ordinary generated days of similar size (day 2 carries fewer late
   writes of earlier days than day H+1). The 1-day scenario runs first, which also warms the JVM.

Isolated namespace: MongoDB database, Cassandra keyspace and Redis prefix ``lt_lakebench``; lakes
and quality reports under ``<home>/bench-lake``; all wiped at start and left for inspection.
Neo4j Community has a single graph: the benchmark's Access nodes (event ids ``e4242-``) and its
Student nodes left without accesses are deleted at start, between the scenarios and at the end.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from typing import Callable

from learntrack.benchmarks import describe_code, machine
from learntrack.settings import Settings

NAMESPACE = "lt_lakebench"
SEED = 4242
END = dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)
EVENTS_PER_STUDENT_DAY = 6.5  # what the generator yields on average (measured)
Echo = Callable[[str], None]


def _wipe_neo4j(settings: Settings) -> None:
    """The benchmark runs in a namespace of its own: clear it."""
    from learntrack.sinks import neo4j_sink

    neo4j_sink.clear_namespace(settings)


def wipe_sinks(settings: Settings) -> None:
    """Drop the namespace's Cassandra keyspace, Redis keys and Neo4j nodes."""
    from learntrack.sinks import cassandra_sink, redis_sink

    cluster, session = cassandra_sink.connect(settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=120)
    finally:
        cluster.shutdown()
    r = redis_sink.connect(settings)
    keys = list(r.scan_iter(f"{settings.redis_prefix}:*", count=5000))
    for i in range(0, len(keys), 5000):
        r.delete(*keys[i:i + 5000])
    _wipe_neo4j(settings)


class GeneratedLoader:
    """A generated data set loaded into the namespace's MongoDB database (dropped first) one
    simulated day of writes at a time, so a benchmark can time a day's run while MongoDB holds only
    what the platform had written by then: the run's Redis reconciliation re-applies the writes
    made after the interval, and with the later days loaded too it re-applied two whole days (in
    production, the few minutes between the day's end and the run)."""

    def __init__(self, settings: Settings, params, echo: Echo):
        from learntrack.generator import Generator
        from learntrack.mongo_ops import client, ensure_indexes

        self.settings, self.params, self.echo = settings, params, echo
        self.written, self.seconds, self.days_loaded = 0, 0.0, 0
        gen = Generator(params)
        self._batches = enumerate(gen.activity_batches(), 1)
        mongo = client(settings)
        try:
            mongo.drop_database(settings.mongo_db)
            db = mongo[settings.mongo_db]
            ensure_indexes(db)
            db.courses.insert_many(list(gen.courses()), ordered=False)
            db.students.insert_many(list(gen.students()), ordered=False)
        finally:
            mongo.close()

    def through(self, last_day: int | None = None) -> dict:
        """Load the writes of the simulated days up to ``last_day`` (all of them, late writes after
        the last day included, when None); returns the totals so far."""
        from learntrack.generator import is_clean
        from learntrack.mongo_ops import client, insert_activities, insert_raw

        mongo = client(self.settings)
        try:
            db = mongo[self.settings.mongo_db]
            while last_day is None or self.days_loaded < last_day:
                step = next(self._batches, None)
                if step is None:
                    break
                day, batch = step
                clean = [d for d in batch if is_clean(d)]
                raw = [d for d in batch if not is_clean(d)]
                t0 = time.perf_counter()
                if clean:
                    self.written += insert_activities(db, clean, now=clean[-1]["ingested_at"]).inserted
                if raw:  # duplicates and malformed documents, as a buggy client writes them
                    self.written += insert_raw(db, raw)
                self.seconds += time.perf_counter() - t0
                self.days_loaded = day
                what = f"day {day}" if day <= self.params.days else "late writes after the last day"
                self.echo(f"  loaded {what}: {self.written:,} activities so far "
                          f"({self.written / max(self.seconds, 1e-9):,.0f} docs/s)")
        finally:
            mongo.close()
        return {"activities": self.written, "seconds": round(self.seconds, 1),
                "docs_per_s": round(self.written / max(self.seconds, 1e-9))}


def load_generated(settings: Settings, params, echo: Echo) -> dict:
    """Load a whole generated data set (the benchmarks' shared loader: extract, targets); returns
    docs written, seconds, docs/s."""
    return GeneratedLoader(settings, params, echo).through(None)


def run_interval(settings: Settings, interval, label: str, echo: Echo) -> dict:
    """All stages for one interval, chained as the DAG chains them (``pipeline.DAILY``); seconds per stage."""
    from lake.tables import BRONZE_ACTIVITIES
    from learntrack import pipeline

    echo(f"[{label}] interval {interval.start:%Y-%m-%d} .. {interval.end:%Y-%m-%d} (batch {interval.batch_id})")
    secs: dict[str, float] = {}
    rows = 0

    def timed(stage, result, seconds: float) -> None:
        nonlocal rows
        secs[stage.name] = round(seconds, 2)
        if stage.name == "extract_bronze":
            rows = next(e["extracted"] for e in result["sources"] if e["table"] == BRONZE_ACTIVITIES.qualified)
        echo(f"  {stage.name:<18} {secs[stage.name]:8.1f} s  {rows / max(secs[stage.name], 1e-9):>10,.0f} rows/s")

    up = pipeline.run_chain(settings, interval, options={"extract_bronze": {"progress": lambda m: echo(f"    {m}")}},
                            on_stage=timed)
    silver = up["build_silver"]
    total = round(sum(secs.values()), 1)
    echo(f"  {'total':<18} {total:8.1f} s  {rows / max(total, 1e-9):>10,.0f} rows/s  ({rows:,} activities, "
         f"{silver['inserted']:,} new in silver, {len(up['build_gold']['recomputed_dates'])} days recomputed)")
    return {"interval": [interval.start.isoformat(), interval.end.isoformat()], "activities": rows,
            "seconds": secs, "total_s": total,
            "rows_per_s": {k: round(rows / max(v, 1e-9)) for k, v in secs.items()},
            "silver": {k: silver[k] for k in ("rows_in", "inserted", "duplicates", "quarantined")},
            "recomputed_dates": up["build_gold"]["recomputed_dates"]}


def bench_lake(settings: Settings, activities: int, history_days: int = 30, echo: Echo = print) -> dict:
    from learntrack.intervals import Interval
    from lake.spark import spark_session
    from learntrack.generator import GenParams

    if history_days < 1:
        raise ValueError("history_days must be at least 1")
    root = settings.home_path / "bench-lake"
    base = settings.with_overrides(mongo_db=NAMESPACE, cassandra_keyspace=NAMESPACE, redis_prefix=NAMESPACE,
                                   neo4j_namespace=NAMESPACE, home=str(root / "home"), spark_jars_dir=str(settings.jars_dir))
    params = GenParams(students=max(50, round(activities / (history_days * EVENTS_PER_STUDENT_DAY))),
                       courses=max(20, activities // 2000), days=history_days + 1, end=END, seed=SEED,
                       duplicate_rate=0.01, malformed_rate=0.005)
    first = params.start.date()
    result: dict = {"machine": machine(), "activities_requested": activities, "history_days": history_days,
                    "namespace": NAMESPACE, "lake": str(root),
                    "params": {"students": params.students, "courses": params.courses, "days": params.days,
                               "first_day": first.isoformat(), "seed": SEED}}
    result["code"] = describe_code(echo)
    echo(f"Wiping namespace {NAMESPACE} (MongoDB, Cassandra, Redis, the benchmark's Neo4j nodes, {root})")
    shutil.rmtree(root, ignore_errors=True)
    wipe_sinks(base)
    try:
        echo(f"Loading {params.students:,} students, {params.courses:,} courses and {params.days} days of "
             f"activities into MongoDB {NAMESPACE}, each day's writes before the first run that follows them...")
        loader = GeneratedLoader(base, params, echo)
        loader.through(2)  # what MongoDB holds when day 2's run starts
        t0 = time.perf_counter()
        spark_session(base)
        result["spark_start_s"] = round(time.perf_counter() - t0, 1)
        echo(f"SparkSession started in {result['spark_start_s']} s")

        one = base.with_overrides(lake_root=str(root / "lake-1day"))
        echo("\n== History 1 day: fresh lake, run day 1 (warm-up), then time day 2")
        result["warmup_day1"] = run_interval(one, Interval.for_day(first), "1-day history: day 1", echo)
        daily_1 = run_interval(one, Interval.for_day(first + dt.timedelta(days=1)), "1-day history: day 2", echo)
        wipe_sinks(base)
        loader.through(max(2, history_days))  # then the history days' writes, for the batch

        many = base.with_overrides(lake_root=str(root / f"lake-{history_days}day"))
        echo(f"\n== Stage throughput: fresh lake, one batch of the {history_days} history days")
        start = dt.datetime.combine(first, dt.time(), dt.timezone.utc)
        result["throughput"] = run_interval(many, Interval(start, start + dt.timedelta(days=history_days)),
                                            f"{history_days}-day batch", echo)
        echo("\n== The same gold computation in DuckDB, on the batch's silver (learntrack.duckdb_compare)")
        from learntrack.duckdb_compare import compare

        result["duckdb"] = compare(spark_session(many), many,
                                   [dt.date.fromisoformat(d) for d in result["throughput"]["recomputed_dates"]],
                                   echo=echo)
        echo(f"\n== History {history_days} days: time day {history_days + 1}")
        result["load"] = loader.through(None)  # day H+1 and the late writes after it
        daily_h = run_interval(many, Interval.for_day(first + dt.timedelta(days=history_days)),
                               f"{history_days}-day history: day {history_days + 1}", echo)
    finally:
        _wipe_neo4j(base)  # its namespace; the other stores keep their data for inspection

    ratio = {k: round(daily_h["seconds"][k] / max(daily_1["seconds"][k], 1e-9), 2) for k in daily_1["seconds"]}
    ratio["total"] = round(daily_h["total_s"] / max(daily_1["total_s"], 1e-9), 2)
    result["history"] = {"1_day": daily_1, f"{history_days}_day": daily_h, "ratio": ratio}

    tp = result["throughput"]
    echo(f"\nSummary ({result['machine']})")
    echo(f"  MongoDB load: {result['load']['activities']:,} activities at {result['load']['docs_per_s']:,} docs/s")
    echo(f"  {'stage':<18} {'batch s':>8} {'rows/s':>9} | {'daily, 1d hist':>14} {f'{history_days}d hist':>10} "
         f"{'ratio':>6}")
    for k in (*daily_1["seconds"], "total"):
        b = tp["total_s"] if k == "total" else tp["seconds"][k]
        d1 = daily_1["total_s"] if k == "total" else daily_1["seconds"][k]
        dh = daily_h["total_s"] if k == "total" else daily_h["seconds"][k]
        echo(f"  {k:<18} {b:8.1f} {tp['activities'] / max(b, 1e-9):9,.0f} | {d1:12.1f} s {dh:8.1f} s "
             f"{ratio[k]:5.2f}x")
    duck = result["duckdb"]
    echo(f"  gold course daily of the batch ({duck['days']} days, {duck['rows']:,} rows): Spark {min(duck['spark_s'])} s, "
         f"DuckDB {min(duck['duckdb_s'])} s, {duck['ratio_spark_over_duckdb']}x; "
         + ("they agree" if duck["agree"] else f"they DISAGREE: {duck['differences'][:3]}"))
    echo(f"  batch: {tp['activities']:,} activities over {history_days} days; daily runs: "
         f"{daily_1['activities']:,} (day 2) and {daily_h['activities']:,} (day {history_days + 1}) activities")
    return result


#: The stages ``bench stages`` re-runs: everything after extraction and its gate up to the gold gate.
REPLAYED_STAGES = ("build_silver", "gate_silver", "build_gold", "gate_gold")


def reset_to_bronze(settings: Settings, lake: str) -> list[str]:
    """Put a lake back to the moment after extraction: every silver and gold table restored to its
    first (empty) version, the stage ledger removed; bronze untouched. Returns the tables restored."""
    from lake import storage
    from lake.tables import GOLD_TABLES, SILVER_TABLES, STAGE_LEDGER

    restored = []
    for table in (*SILVER_TABLES, *GOLD_TABLES):
        path = table.path(lake)
        if not storage.is_delta_table(settings, path):
            continue
        delta = storage.open_delta(settings, path)
        first = min(h["version"] for h in delta.history())
        if delta.version() > first:
            delta.restore(first)
            restored.append(table.qualified)
    shutil.rmtree(STAGE_LEDGER.path(lake), ignore_errors=True)
    return restored


def bench_stages(settings: Settings, rounds: int = 3, echo: Echo = print) -> dict:
    """Re-run silver through the gold gate on the batch of the last ``bench lake``, from a copy of
    its lake put back to "after extraction" each round (``reset_to_bronze``), chained as the DAG
    chains them (``pipeline.run_chain``): the lake stages' code compared in 1-1.5 min a round
    instead of the whole benchmark's 10 minutes. Run it from two checkouts, alternating, to compare
    them on the same data."""
    import json
    import statistics

    from lake.spark import spark_session
    from learntrack import pipeline
    from learntrack.intervals import Interval

    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    saved = sorted((settings.home_path / "benchmarks").glob("lake-*.json"), key=lambda p: p.stat().st_mtime)
    if not saved:
        raise SystemExit("no `learntrack bench lake` result under <home>/benchmarks: run that first")
    last = json.loads(saved[-1].read_text())
    source = settings.home_path / "bench-lake" / f"lake-{last['history_days']}day"
    if not source.is_dir():
        raise SystemExit(f"{source} is gone: run `learntrack bench lake` again")
    start, end = (dt.datetime.fromisoformat(x) for x in last["throughput"]["interval"])
    interval = Interval(start, end)
    copy = settings.home_path / "bench-stages"
    base = settings.with_overrides(lake_root=str(copy / "lake"), home=str(copy / "home"),
                                   spark_jars_dir=str(settings.jars_dir))
    result: dict = {"machine": machine(), "code": describe_code(echo), "from": str(saved[-1]),
                    "batch": interval.batch_id, "activities": last["throughput"]["activities"], "rounds": []}
    echo(f"Batch {interval.batch_id} of {saved[-1].name}: {result['activities']:,} activities; lake copied "
         f"from {source}")
    t0 = time.perf_counter()
    spark_session(base)
    echo(f"SparkSession started in {time.perf_counter() - t0:.1f} s")
    for n in range(1, rounds + 1):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy / "lake")
        reset_to_bronze(base, base.lake_uri)
        secs: dict[str, float] = {}
        up = pipeline.run_chain(base, interval, chain=tuple(pipeline.STAGES[name] for name in REPLAYED_STAGES),
                                on_stage=lambda stage, _, seconds: secs.__setitem__(stage.name, round(seconds, 2)))
        total = round(sum(secs.values()), 1)
        result["rounds"].append({"seconds": secs, "total_s": total, "silver_inserted": up["build_silver"]["inserted"]})
        echo(f"  round {n}: " + "  ".join(f"{k} {v:.1f} s" for k, v in secs.items())
             + f"  = {total:.1f} s, {result['activities'] / total:,.0f} rows/s")
    # The first round pays the JVM's warm-up (90 s against 61 s for the same round after it): with
    # more than one round it is left out, as the full benchmark's 1-day scenario warms the JVM first.
    counted = result["rounds"][1:] or result["rounds"]
    totals = [r["total_s"] for r in counted]
    result["median_s"] = statistics.median(totals)
    echo(f"Summary: {REPLAYED_STAGES[0]}..{REPLAYED_STAGES[-1]} of {result['activities']:,} activities, "
         f"{len(counted)} round{'s' if len(counted) != 1 else ''}"
         f"{' after a warm-up round' if len(counted) < rounds else ' (a single round: a cold JVM)'}: "
         f"best {min(totals):.1f} s, median {result['median_s']:.1f} s "
         f"({result['activities'] / result['median_s']:,.0f} rows/s); gate_bronze is not re-run (it counts MongoDB)")
    return result
