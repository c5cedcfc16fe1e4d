"""One seed-scale day, for real, resumable (``learntrack bench seed-day load|run|status|reset``).

The seeds' platform: 2M students, 100K courses, about 7M activities a day. ``load`` writes one
generated day of that population into MongoDB database ``lt_seedday`` in parts of
``PART_STUDENTS`` students (each part: the part's student profiles, then their activities, through
the same bulk API as the operational path; malformed and duplicate documents as a buggy client
writes them). Every student-day draws from its own seeded stream, so a part is the same whenever it
is generated: a part cut short is simply written again (inserts of existing ``_id`` are counted as
duplicates by the server, upserts replace) and the parts done are recorded in the database itself
(collection ``seed_progress``). Run ``load`` again after an interruption and it goes on.

``run`` runs every stage of the daily chain (``pipeline.DAILY``: extraction, the three gates,
silver, gold, the three sinks) for the day, in-process as the benchmark of issue 10 does, and
records each finished stage's result and seconds in ``<home>/bench-lt_seedday/run-state.json``:
``run`` again resumes at the first unfinished stage (every stage is idempotent per interval, and
extraction commits in watermark order, so a stage cut short is re-run from its start or its last
commit). Memory is sampled every second: the peak of the machine's used memory (stack + pipeline +
anything else, ``MemTotal - MemAvailable``) and of the pipeline's process tree (Python + its JVM).

Isolated namespace ``lt_seedday`` (MongoDB database, Cassandra keyspace, Redis prefix, Neo4j
namespace); lake under ``<home>/bench-lt_seedday``. ``reset`` wipes all of it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from learntrack.settings import Settings

NAMESPACE = "lt_seedday"
SEED = 2002
DAY = dt.date(2024, 9, 2)
STUDENTS = 2_000_000
COURSES = 100_000
ACTIVITIES = 7_000_000
PART_STUDENTS = 50_000
#: The profiles were written over the 30 days before the day, a 10-minute slot holding about 460 of
#: them. All at one instant (the generator's shape) put 2M profiles in one slot: FerretDB sorts a
#: slot in memory before the first reply (14 GB, then the client's timeout; ADR 31).
PROFILE_SPREAD_DAYS = 30
EVENTS_PER_ACTIVE_STUDENT_DAY = 11.0  # what the generator yields per active student-day (measured: 10.8-11.2)
Echo = Callable[[str], None]


def bench_settings(settings: Settings, namespace: str = NAMESPACE) -> Settings:
    """The benchmark's own namespace in every store, and its own lake."""
    root = settings.home_path / f"bench-{namespace}"
    return settings.with_overrides(mongo_db=namespace, cassandra_keyspace=namespace, redis_prefix=namespace,
                                   neo4j_namespace=namespace, home=str(root / "home"),
                                   lake_root=str(root / "lake"), spark_jars_dir=str(settings.jars_dir),
                                   # every source starts there: the profiles were written 30 days before the day
                                   extract_first_day=(DAY - dt.timedelta(days=31)).isoformat())


def seed_params(students: int = STUDENTS, courses: int = COURSES, activities: int = ACTIVITIES):
    """One day of the seeds' platform: the activity rate is reached through the share of students
    active that day (the rest of the generator's shape is the tested one)."""
    from learntrack.generator import GenParams

    return GenParams(students=students, courses=courses, days=1,
                     end=dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), dt.timezone.utc), seed=SEED,
                     active_probability=min(1.0, activities / (students * EVENTS_PER_ACTIVE_STUDENT_DAY)),
                     duplicate_rate=0.01, malformed_rate=0.005)


def parts(students: int, part_students: int = PART_STUDENTS) -> list[tuple[int, int]]:
    return [(a, min(students, a + part_students)) for a in range(0, students, part_students)]


def part_batch(params, first: int, stop: int) -> list[dict]:
    """The activities of students [first, stop) on the day, as the generator writes them."""
    from learntrack.generator import Generator, _Day

    gen = Generator(params)
    return [doc for s in range(first, stop) for doc in _Day(gen, s, 0).generate()]


def profile(gen, s: int) -> dict:
    """Student ``s``'s profile, written at its own time in the ``PROFILE_SPREAD_DAYS`` before the day
    (deterministic: the same whenever a part is generated)."""
    from learntrack.mongo_ops import write_buckets

    spread = PROFILE_SPREAD_DAYS * 86_400
    written = (dt.datetime.combine(DAY, dt.time(), dt.timezone.utc) - dt.timedelta(seconds=spread)
               + dt.timedelta(seconds=(s * 7_919) % spread))
    doc = gen.student(s)
    return {**doc, "created_at": written, "updated_at": written,
            **write_buckets(written, "updated_day", "updated_slot")}


def _progress_doc(db) -> dict:
    return db.seed_progress.find_one({"_id": "load"}) or {"_id": "load", "parts_done": []}


def load(settings: Settings, students: int = STUDENTS, courses: int = COURSES, activities: int = ACTIVITIES,
         part_students: int = PART_STUDENTS, max_parts: int | None = None, echo: Echo = print,
         namespace: str = NAMESPACE) -> dict:
    """Write the parts not yet done (at most ``max_parts`` of them in this call)."""
    from learntrack.generator import Generator, _write
    from learntrack.mongo_ops import client

    base = bench_settings(settings, namespace)
    params = seed_params(students, courses, activities)
    mongo = client(base)
    try:
        db = mongo[base.mongo_db]
        state = _progress_doc(db)
        wanted = {"students": students, "courses": courses, "activities": activities, "part_students": part_students,
                  "profile_spread_days": PROFILE_SPREAD_DAYS}
        if state.get("params") == {k: v for k, v in wanted.items() if k != "profile_spread_days"}:
            # a load from before the profiles were spread: rewrite them, the activities stay
            _spread_profiles(db, params, students, part_students, echo)
            state["params"] = wanted
        if state.get("params", wanted) != wanted:
            raise SystemExit(f"{namespace} holds a load with other parameters ({state['params']}); "
                             f"run `learntrack bench seed-day reset` first")
        db.seed_progress.update_one({"_id": "load"}, {"$set": {"params": wanted}}, upsert=True)
        todo = [p for p in parts(students, part_students) if p[0] not in set(state["parts_done"])]
        if not state["parts_done"]:
            echo(f"courses: writing {courses:,}")
            _write(db, iter(()), Generator(params).courses(), iter(()), progress=None)
        echo(f"{len(state['parts_done'])} of {len(parts(students, part_students))} parts done; "
             f"{min(len(todo), max_parts or len(todo))} to write now (active share {params.active_probability:.3f})")
        totals = {"activities_inserted": 0, "activities_duplicate": 0, "raw_written": 0, "students": 0, "seconds": 0.0}
        for first, stop in todo[:max_parts]:
            t0 = time.perf_counter()
            gen = Generator(params)
            batch = part_batch(params, first, stop)
            counts = _write(db, (profile(gen, s) for s in range(first, stop)), iter(()), iter([batch]), progress=None)
            db.seed_progress.update_one({"_id": "load"}, {"$addToSet": {"parts_done": first}})
            secs = time.perf_counter() - t0
            for k in ("activities_inserted", "activities_duplicate", "raw_written", "students"):
                totals[k] += counts[k]
            totals["seconds"] += secs
            docs = totals["activities_inserted"] + totals["raw_written"]
            echo(f"  part students {first:,}..{stop - 1:,}: {len(batch):,} documents in {secs:.1f} s; "
                 f"this call {docs:,} activities at {docs / max(totals['seconds'], 1e-9):,.0f} docs/s")
        state = _progress_doc(db)
        left = len(parts(students, part_students)) - len(state["parts_done"])
        # (no count of the collection here: on FerretDB even estimated_document_count reads it all)
        echo(f"load: {len(state['parts_done'])} parts done, {left} left")
        return {"totals": totals, "parts_done": len(state["parts_done"]), "parts_left": left}
    finally:
        mongo.close()


def _spread_profiles(db, params, students: int, part_students: int, echo: Echo) -> None:
    """Rewrite the profiles of a load made before ``PROFILE_SPREAD_DAYS`` (one write instant)."""
    from learntrack.generator import Generator, _write

    gen = Generator(params)
    t0 = time.perf_counter()
    done = set(_progress_doc(db).get("profiles_spread", []))  # resumable, part by part
    for first, stop in parts(students, part_students):
        if first in done:
            continue
        _write(db, (profile(gen, s) for s in range(first, stop)), iter(()), iter(()), progress=None)
        db.seed_progress.update_one({"_id": "load"}, {"$addToSet": {"profiles_spread": first}})
        echo(f"  profiles {first:,}..{stop - 1:,} rewritten over {PROFILE_SPREAD_DAYS} days "
             f"({time.perf_counter() - t0:.0f} s so far)")
    db.seed_progress.update_one({"_id": "load"}, {"$set": {"params.profile_spread_days": PROFILE_SPREAD_DAYS}})


class MemorySampler:
    """Peak of the machine's used memory and of this process tree's RSS, sampled every second."""

    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self.peak_used_mb = 0.0
        self.peak_tree_mb = 0.0
        self.start_used_mb = used_memory_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_used_mb = max(self.peak_used_mb, used_memory_mb())
            self.peak_tree_mb = max(self.peak_tree_mb, tree_rss_mb(os.getpid()))
            self._stop.wait(self.every_s)


def used_memory_mb() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kb = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
    return kb / 1024


def tree_rss_mb(root: int) -> float:
    """RSS of a process and all its descendants (the JVM py4j starts is a child)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields["PPid"].strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / 1024


def _state_path(base: Settings) -> Path:
    return Path(base.home).parent / "run-state.json"


def run(settings: Settings, echo: Echo = print, namespace: str = NAMESPACE, max_minutes: float | None = None) -> dict:
    """Every stage of the daily chain for the day, resuming after the last finished stage. With
    ``max_minutes``, no stage starts after that budget (a stage is never cut: its time stays clean)."""
    from lake.spark import spark_session
    from lake.tables import BRONZE_ACTIVITIES
    from learntrack import pipeline
    from learntrack.benchmarks import machine
    from learntrack.intervals import Interval

    base = bench_settings(settings, namespace)
    path = _state_path(base)
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"results": {}, "seconds": {}}
    interval = Interval.for_day(DAY)
    done = [s.name for s in pipeline.DAILY if s.name in state["results"]]
    echo(f"Seed-scale day {DAY}: {len(done)} of {len(pipeline.DAILY)} stages done"
         + (f" ({', '.join(done)})" if done else "") + f"; Spark {base.spark_master}, driver {base.spark_driver_memory}")

    def keep_peaks() -> dict:  # kept as stages finish: a call that fails later keeps its figures
        peaks = state.setdefault("peak_memory_mb", {})
        peaks["machine_used"] = round(max(peaks.get("machine_used", 0), sampler.peak_used_mb))
        peaks["pipeline_tree"] = round(max(peaks.get("pipeline_tree", 0), sampler.peak_tree_mb))
        peaks["machine_used_at_start"] = round(sampler.start_used_mb)
        return peaks

    def finished(stage, result, seconds: float) -> None:
        state["results"][stage.name] = result
        state["seconds"][stage.name] = round(seconds, 1)
        keep_peaks()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, default=str))
        tmp.replace(path)
        echo(f"  {stage.name:<18} {seconds:8.1f} s   (peak used memory so far {sampler.peak_used_mb:,.0f} MB, "
             f"pipeline {sampler.peak_tree_mb:,.0f} MB)")

    with MemorySampler() as sampler:
        t0 = time.perf_counter()
        spark_session(base)
        echo(f"  SparkSession started in {time.perf_counter() - t0:.1f} s")
        for stage in pipeline.DAILY:
            if stage.name in state["results"]:
                continue
            if max_minutes is not None and time.perf_counter() - t0 > max_minutes * 60:
                echo(f"  stopping before {stage.name}: the {max_minutes} min budget of this call is spent "
                     f"(`learntrack bench seed-day run` goes on from here)")
                break
            pipeline.run_chain(base, interval, chain=(stage,), done=state["results"], on_stage=finished,
                               options={"extract_bronze": {"progress": lambda m: echo(f"    {m}")}})
    peaks = keep_peaks()
    path.write_text(json.dumps(state, default=str))
    if "extract_bronze" not in state["results"]:
        return {"day": DAY.isoformat(), "seconds": state["seconds"]}
    # the batch's rows: those this call extracted and those an earlier, interrupted call committed
    extracted = next(e["extracted"] + e["already_in_batch"] for e in state["results"]["extract_bronze"]["sources"]
                     if e["table"] == BRONZE_ACTIVITIES.qualified)
    total = sum(state["seconds"].values())
    left = [s.name for s in pipeline.DAILY if s.name not in state["results"]]
    echo(f"\nSeed-scale day {DAY} ({machine()}): {extracted:,} activities"
         + (f"; stages not run yet: {', '.join(left)}" if left else "; every stage done"))
    for name, secs in state["seconds"].items():
        echo(f"  {name:<18} {secs:8.1f} s  {extracted / max(secs, 1e-9):>10,.0f} rows/s")
    echo(f"  {'total':<18} {total:8.1f} s  ({total / 60:.1f} min)")
    echo(f"  peak memory: machine {peaks['machine_used']:,} MB used (stack + pipeline + rest; "
         f"{peaks['machine_used_at_start']:,} MB before this call), pipeline process tree {peaks['pipeline_tree']:,} MB")
    return {"day": DAY.isoformat(), "activities": extracted, "seconds": state["seconds"], "total_s": round(total, 1),
            "peak_memory_mb": peaks, "silver": state["results"].get("build_silver")}


def status(settings: Settings, echo: Echo = print, namespace: str = NAMESPACE) -> dict:
    from learntrack.mongo_ops import client

    base = bench_settings(settings, namespace)
    mongo = client(base)
    try:
        state = _progress_doc(mongo[base.mongo_db])
    finally:
        mongo.close()
    path = _state_path(base)
    run_state = json.loads(path.read_text()) if path.exists() else {"seconds": {}}
    echo(f"load: {len(state['parts_done'])} parts done ({state.get('params')})")
    echo(f"run: stages done {run_state['seconds']}")
    return {"parts_done": len(state["parts_done"]), "stages_done": run_state["seconds"]}


def reset(settings: Settings, echo: Echo = print, namespace: str = NAMESPACE) -> None:
    from learntrack.lake_bench import wipe_sinks
    from learntrack.mongo_ops import client

    base = bench_settings(settings, namespace)
    mongo = client(base)
    try:
        mongo.drop_database(base.mongo_db)
    finally:
        mongo.close()
    wipe_sinks(base)
    shutil.rmtree(Path(base.home).parent, ignore_errors=True)
    echo(f"wiped {namespace} (MongoDB, Cassandra, Redis, Neo4j) and {Path(base.home).parent}")
