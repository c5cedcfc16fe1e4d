"""On-demand benchmarks of the MongoDB operational query patterns (``learntrack bench mongo``).

Prints figures with the data size and the machine; compares against a baseline measured in the
same run (the latest-20 query with its index dropped). Not part of the test suite.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import time
from typing import Callable

from learntrack.settings import Settings


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _latencies(fn: Callable[[], object], n: int, budget_s: float) -> list[float]:
    out, start = [], time.monotonic()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
        if time.monotonic() - start > budget_s:
            break
    return out


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


#: The packages a pipeline run imports; a benchmark names the checkout each one came from.
CODE_PACKAGES = ("jobs", "lake", "expectations", "learntrack")


def code_under_test() -> dict[str, str]:
    """Per package: its checkout and that checkout's commit ("+changes" when the tree differs).

    An A/B of two worktrees goes wrong silently when ``python -c`` runs from another checkout: the
    current directory comes first on ``sys.path``, so jobs/, lake/ and expectations/ were that
    checkout's while learntrack came from the worktree (2026-12-07). A benchmark prints this and
    warns when the packages come from more than one checkout."""
    import importlib
    import subprocess
    from functools import lru_cache
    from pathlib import Path

    def git(folder, *args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    @lru_cache(maxsize=None)
    def checkout(top: str) -> str:  # asked once per checkout, not per package
        dirty = git(top, "status", "--porcelain", "--untracked-files=no")
        return f"{top} {git(top, 'rev-parse', '--short', 'HEAD')}{' +changes' if dirty else ''}"

    out = {}
    for name in CODE_PACKAGES:
        folder = Path(next(iter(importlib.import_module(name).__path__))).resolve()
        try:
            top = git(folder, "rev-parse", "--show-toplevel")
            out[name] = checkout(top) if top else str(folder)
        except (OSError, subprocess.SubprocessError):
            out[name] = str(folder)
    return out


def describe_code(echo: Callable[[str], None]) -> dict[str, str]:
    """Print the code under test (one line, or a warning listing each package's checkout)."""
    code = code_under_test()
    if len(set(code.values())) == 1:
        echo(f"Code: {next(iter(code.values()))}")
    else:
        echo("WARNING: the code under test comes from more than one checkout: "
             + "; ".join(f"{k} {v}" for k, v in code.items()))
    return code


def bench_mongo(settings: Settings, activities: int, queries: int = 200, updates: int = 500,
                budget_s: float = 300, echo: Callable[[str], None] = print, keep: bool = False) -> dict:
    """Load ``activities`` generated events with the bulk API, then time the three patterns."""
    from learntrack.generator import GenParams, Generator, is_clean
    from learntrack.mongo_ops import (database, ensure_collections, explain_latest, insert_activities,
                                      latest_activities, update_profile)

    db = database(settings)
    existing = db.activities.estimated_document_count() if "activities" in db.list_collection_names() else 0
    params = GenParams(students=max(100, activities // 40), courses=max(20, activities // 2000), days=8,
                       end=dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc), seed=99, late_rate=0.0,
                       duplicate_rate=0.0, malformed_rate=0.0)
    result: dict = {"machine": machine(), "server": db.client.server_info().get("version"),
                    "students": params.students}
    if keep and existing >= activities:
        echo(f"reusing {existing:,} activities already in {settings.mongo_db}")
        inserted = existing
    else:
        for name in ("activities", "students", "courses"):
            db[name].drop()
        ensure_collections(db)
        gen = Generator(params)
        db.students.insert_many(list(gen.students()), ordered=False)
        inserted, insert_s, t_start = 0, 0.0, time.monotonic()
        for batch in gen.activity_batches():
            batch = [d for d in batch if is_clean(d)]
            for i in range(0, len(batch), 5000):
                chunk = batch[i:i + 5000][: activities - inserted]
                if not chunk:
                    break
                t0 = time.perf_counter()
                report = insert_activities(db, chunk, now=chunk[-1]["ingested_at"], batch_size=5000)
                insert_s += time.perf_counter() - t0
                inserted += report.inserted
            echo(f"  inserted {inserted:,}/{activities:,} ({inserted / max(insert_s, 1e-9):,.0f} docs/s, "
                 f"{time.monotonic() - t_start:.0f}s elapsed)")
            if inserted >= activities:
                break
        result["insert_docs_per_s"] = round(inserted / insert_s)
    result["activities"] = inserted
    rng = random.Random(1)
    students = [f"s{rng.randrange(params.students):07d}" for _ in range(queries)]
    it = iter(students * 100)

    def latest() -> None:
        latest_activities(db, next(it), 20)

    result["latest20_index"] = explain_latest(db, students[0])["index"]
    with_index = _latencies(latest, queries, budget_s)
    result["latest20_ms_p50"], result["latest20_ms_p99"] = _pct(with_index, 50), _pct(with_index, 99)
    result["latest20_samples"] = len(with_index)
    echo(f"  latest-20 with index ({result['latest20_index'] or 'none used'}): "
         f"p50 {result['latest20_ms_p50']:.2f} ms, p99 {result['latest20_ms_p99']:.2f} ms ({len(with_index)} queries)")

    db.activities.drop_index("student_latest")
    try:
        without = _latencies(latest, queries, budget_s)
    finally:
        db.activities.create_index([("student_id", 1), ("event_time", -1)], name="student_latest")
    result["latest20_noindex_ms_p50"], result["latest20_noindex_ms_p99"] = _pct(without, 50), _pct(without, 99)
    result["latest20_noindex_samples"] = len(without)
    result["latest20_speedup_p50"] = round(result["latest20_noindex_ms_p50"] / result["latest20_ms_p50"], 1)
    echo(f"  latest-20 without index: p50 {result['latest20_noindex_ms_p50']:.2f} ms, "
         f"p99 {result['latest20_noindex_ms_p99']:.2f} ms ({len(without)} queries); "
         f"index speed-up at p50: {result['latest20_speedup_p50']}x")

    ids = iter([f"s{rng.randrange(params.students):07d}" for _ in range(updates)])
    upd = _latencies(lambda: update_profile(db, next(ids), {"phone": f"+1-555-{rng.randrange(10**7):07d}",
                                                            "progress": {"c00001": rng.randrange(101)}}),
                     updates, budget_s)
    result["profile_update_ms_p50"], result["profile_update_ms_p99"] = _pct(upd, 50), _pct(upd, 99)
    echo(f"  profile update: p50 {result['profile_update_ms_p50']:.2f} ms, "
         f"p99 {result['profile_update_ms_p99']:.2f} ms ({len(upd)} updates)")
    return result
