"""On-demand benchmark of extraction against the source's own read speed (``learntrack bench extract``).

Method. A generated data set of about N activities over ``days`` days (the lake benchmark's
generator and loader, seed 4242, days in 2024) is loaded into MongoDB database ``lt_extractbench``
(or reused with ``--keep``). Then, alternating, in two rounds on the same server:

- **plain read** (the baseline): a pymongo ``find`` of every day bucket, decoded to dicts with
  extraction's codec options, nothing else done with them;
- **count**: every bucket counted with the upper bound, as the bronze gate counts
  (``mongo_ops.count_matching`` with the settings' ``mongo_count_method``);
- **extract**: ``jobs.bronze.extract_source`` for activities into a fresh lake, one interval
  covering every day: sorted read, Extended JSON, Arrow, Delta commits (delta-rs), and its own reconciliation
  count of the last buckets (``extract_reconcile_days``). It starts from the data's first day
  (``extract_first_day``); the search a first run makes without it (the oldest bucket, which
  FerretDB finds by scanning the whole collection) is timed on its own, once;
- **by slot**: the same extraction with ``extract_day_read_max_docs=0``, every day read one
  10-minute slot at a time (how a day larger than that limit is read; ADR 35).

Extraction needs no SparkSession (ADR 32), so none is started. Ratios compare figures of the same round.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from typing import Callable

from learntrack.settings import Settings

NAMESPACE = "lt_extractbench"
Echo = Callable[[str], None]


def _db(settings: Settings, mongo):
    from jobs.bronze import extraction_db

    return extraction_db(settings, mongo)


def plain_read(settings: Settings, buckets: list[str]) -> int:
    from learntrack.mongo_ops import client

    mongo = client(settings)
    try:
        coll = _db(settings, mongo).activities
        return sum(1 for d in buckets for _ in coll.find({"ingest_day": d}).batch_size(settings.extract_batch_size))
    finally:
        mongo.close()


def count_buckets(settings: Settings, buckets: list[str], upper: dt.datetime) -> int:
    from learntrack.mongo_ops import client, count_matching, count_method

    mongo = client(settings)
    try:
        coll = _db(settings, mongo).activities
        method = count_method(coll.database, settings.mongo_count_method)
        return sum(count_matching(coll, {"ingest_day": d, "ingested_at": {"$lte": upper}}, method,
                                  settings.extract_batch_size) for d in buckets)
    finally:
        mongo.close()


def extract(settings: Settings, interval) -> int:
    from jobs.bronze import SOURCES, extract_source
    from learntrack.mongo_ops import client

    mongo = client(settings)
    try:
        source = next(s for s in SOURCES if s.collection == "activities")
        return extract_source(settings, interval, source, _db(settings, mongo))["extracted"]
    finally:
        mongo.close()


def oldest_bucket_search(settings: Settings) -> int:
    from learntrack.mongo_ops import client

    mongo = client(settings)
    try:
        first = _db(settings, mongo).activities.find_one({"ingest_day": {"$type": "string"}}, {"ingest_day": 1},
                                                          sort=[("ingest_day", 1)])
        return 1 if first else 0
    finally:
        mongo.close()


def bench_extract(settings: Settings, activities: int, days: int = 10, keep: bool = False,
                  rounds: int = 2, echo: Echo = print) -> dict:
    from learntrack.benchmarks import describe_code, machine
    from learntrack.generator import GenParams
    from learntrack.intervals import Interval
    from learntrack.lake_bench import END, EVENTS_PER_STUDENT_DAY, SEED, load_generated
    from learntrack.mongo_ops import client

    root = settings.home_path / "bench-extract"
    base = settings.with_overrides(mongo_db=NAMESPACE, home=str(root / "home"))
    params = GenParams(students=max(50, round(activities / (days * EVENTS_PER_STUDENT_DAY))),
                       courses=max(20, activities // 2000), days=days, end=END, seed=SEED)
    mongo = client(base)
    try:
        have = mongo[base.mongo_db].activities.estimated_document_count()
    finally:
        mongo.close()
    result: dict = {"machine": machine(), "namespace": NAMESPACE, "params": {
        "students": params.students, "courses": params.courses, "days": days, "seed": SEED}}
    result["code"] = describe_code(echo)
    if keep and have >= activities * 0.9:
        echo(f"Reusing {have:,} activities in MongoDB {NAMESPACE}")
    else:
        echo(f"Loading {days} days, {params.students:,} students into MongoDB {NAMESPACE}...")
        result["load"] = load_generated(base, params, echo)
    start = dt.datetime.combine(params.start.date(), dt.time(), dt.timezone.utc)
    base = base.with_overrides(extract_first_day=start.date().isoformat())
    shutil.rmtree(root / "lakes", ignore_errors=True)
    interval = Interval(start, END + dt.timedelta(days=2))
    buckets = [(start.date() + dt.timedelta(days=i)).isoformat() for i in range((interval.end - start).days + 1)]

    def timed(name: str, fn) -> dict:
        t = time.perf_counter()
        docs = fn()
        secs = time.perf_counter() - t
        echo(f"  {name:<11} {docs:>10,} docs {secs:8.1f} s {docs / max(secs, 1e-9):>10,.0f} docs/s")
        return {"docs": docs, "seconds": round(secs, 2), "docs_per_s": round(docs / max(secs, 1e-9))}

    result["rounds"] = []
    for r in range(1, rounds + 1):
        echo(f"Round {r}")
        one = {"plain_read": timed("plain read", lambda: plain_read(base, buckets)),
               "count": timed("count", lambda: count_buckets(base, buckets, interval.end)),
               "extract": timed("extract", lambda: extract(
                   base.with_overrides(lake_root=str(root / "lakes" / f"round-{r}")), interval)),
               "extract_by_slot": timed("by slot", lambda: extract(
                   base.with_overrides(lake_root=str(root / "lakes" / f"round-{r}-by-slot"),
                                       extract_day_read_max_docs=0), interval))}
        one["extract_vs_plain"] = round(one["extract"]["docs_per_s"] / max(one["plain_read"]["docs_per_s"], 1), 3)
        one["by_slot_vs_plain"] = round(
            one["extract_by_slot"]["docs_per_s"] / max(one["plain_read"]["docs_per_s"], 1), 3)
        one["count_vs_plain"] = round(one["plain_read"]["seconds"] / max(one["count"]["seconds"], 1e-9), 3)
        echo(f"  extraction at {one['extract_vs_plain']:.0%} of the plain read rate (by slot only: "
             f"{one['by_slot_vs_plain']:.0%}); a count costs "
             f"{one['count']['seconds'] / max(one['plain_read']['seconds'], 1e-9):.2f}x a plain read")
        result["rounds"].append(one)
    echo("Without extract_first_day, a first run also searches the oldest bucket:")
    result["oldest_bucket_search"] = timed("search", lambda: oldest_bucket_search(base))
    return result
