"""The seed-scale day's loader writes a generated day in parts and resumes after an interruption
(real MongoDB, a tiny population in a test namespace); its memory probes see child processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from learntrack import seed_day

NS = "lt_test_seedday"


def test_parts_cover_every_student_once():
    got = seed_day.parts(130, 40)
    assert got == [(0, 40), (40, 80), (80, 120), (120, 130)]
    assert [s for a, b in got for s in range(a, b)] == list(range(130))


def test_the_activity_rate_is_reached_through_the_active_share():
    params = seed_day.seed_params(students=20_000, courses=500, activities=70_000)
    written = len(seed_day.part_batch(params, 0, 20_000))
    assert 0.9 * 70_000 <= written <= 1.1 * 70_000, written


def test_profiles_are_written_over_the_month_before_the_day_a_few_to_a_slot():
    """All 2M profiles at one instant put them in one 10-minute slot, which FerretDB sorted in
    memory (14 GB) before its first reply: the seed day's profiles are spread, deterministically."""
    import collections
    import datetime as dt

    from learntrack.generator import Generator

    gen = Generator(seed_day.seed_params(students=20_000, courses=50, activities=1_000))
    docs = [seed_day.profile(gen, s) for s in range(20_000)]
    day = dt.datetime.combine(seed_day.DAY, dt.time(), dt.timezone.utc)
    assert all(day - dt.timedelta(days=seed_day.PROFILE_SPREAD_DAYS) <= d["updated_at"] < day for d in docs)
    per_slot = collections.Counter(d["updated_slot"] for d in docs)
    assert len(per_slot) > 4_000 and max(per_slot.values()) <= 10  # ~4,320 slots in 30 days
    assert all(d["updated_day"] == d["updated_at"].date().isoformat() for d in docs)
    assert seed_day.profile(gen, 123) == docs[123]  # the same whenever a part is generated again
    assert {k: v for k, v in docs[5].items() if not k.startswith(("updated", "created"))} == {
        k: v for k, v in gen.student(5).items() if not k.startswith(("updated", "created"))}


def test_load_in_parts_resumes_and_writes_every_document_once(stack):
    from learntrack.generator import generate, is_clean
    from learntrack.mongo_ops import client, insert_activities

    sizes = dict(students=150, courses=12, activities=600, part_students=40)
    seed_day.reset(stack, echo=lambda m: None, namespace=NS)
    first = seed_day.load(stack, **sizes, max_parts=2, echo=lambda m: None, namespace=NS)
    assert (first["parts_done"], first["parts_left"]) == (2, 2)

    # A part cut short: half of the third part's documents are already in when the load resumes.
    params = seed_day.seed_params(sizes["students"], sizes["courses"], sizes["activities"])
    third = [d for d in seed_day.part_batch(params, 80, 120) if is_clean(d)]
    mongo = client(seed_day.bench_settings(stack, NS))
    try:
        db = mongo[NS]
        insert_activities(db, third[: len(third) // 2], now=max(d["ingested_at"] for d in third))
        rest = seed_day.load(stack, **sizes, echo=lambda m: None, namespace=NS)
        assert (rest["parts_done"], rest["parts_left"]) == (4, 0)

        expected = generate(params)  # the whole day in memory, independently of the parts
        want_ids = sorted(str(d["_id"]) for d in expected.activities)
        got_ids = sorted(str(d["_id"]) for d in db.activities.find({}, {"_id": 1}))
        assert got_ids == want_ids  # each document exactly once
        assert db.students.count_documents({}) == 150 and db.courses.count_documents({}) == 12

        again = seed_day.load(stack, **sizes, echo=lambda m: None, namespace=NS)  # nothing left to do
        assert again["totals"]["activities_inserted"] == 0
        assert db.activities.count_documents({}) == len(want_ids)

        # A load from before the profiles were spread has them rewritten; its activities stay.
        stamped = db.students.find_one({"_id": "s0000007"})["updated_at"]
        db.students.update_many({}, {"$set": {"updated_at": stamped}})
        db.seed_progress.update_one({"_id": "load"}, {"$unset": {"params.profile_spread_days": ""}})
        seed_day.load(stack, **sizes, echo=lambda m: None, namespace=NS)
        assert len(db.students.distinct("updated_at")) == 150
        assert db.activities.count_documents({}) == len(want_ids)

        with pytest.raises(SystemExit, match="other parameters"):
            seed_day.load(stack, **{**sizes, "students": 151}, echo=lambda m: None, namespace=NS)
    finally:
        mongo.close()
        seed_day.reset(stack, echo=lambda m: None, namespace=NS)


def test_memory_probes_count_child_processes():
    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(200 * 2**20); import time; time.sleep(30)"])
    try:
        import time

        alone = seed_day.tree_rss_mb(child.pid)
        for _ in range(50):  # until the child has touched its 200 MB
            if (alone := seed_day.tree_rss_mb(child.pid)) > 190:
                break
            time.sleep(0.1)
        assert alone > 190
        assert seed_day.tree_rss_mb(os.getpid()) >= alone + 1  # this process plus the child
        assert 0 < seed_day.used_memory_mb()
    finally:
        child.kill()
        child.wait()
