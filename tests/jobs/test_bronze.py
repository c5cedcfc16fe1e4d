"""Bronze extraction against the real MongoDB wire server: incremental, exactly once, resumable."""

import datetime as dt

import pytest
from bson import ObjectId

pytestmark = [pytest.mark.stack, pytest.mark.spark]

UTC = dt.timezone.utc
T1 = dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def doc(i, ts, oid=False):
    d = {"event_id": f"b{i:03d}", "student_id": "s1", "course_id": "c1", "event_type": "page_view",
         "event_time": ts - dt.timedelta(seconds=1), "ingested_at": ts, "ingest_day": ts.date().isoformat()}
    d["_id"] = ObjectId() if oid else d["event_id"]
    return d


@pytest.fixture()
def world(stack, fresh_lake):
    from learntrack.mongo_ops import database

    settings = fresh_lake.with_overrides(mongo_db="lt_test_bronze")
    db = database(settings)
    db.activities.drop()
    db.students.drop()
    db.courses.drop()
    return settings, db


def bronze_ids(spark, settings):
    from jobs.common import read_table
    from lake.tables import BRONZE_ACTIVITIES

    return sorted(r["source_id"] for r in read_table(spark, BRONZE_ACTIVITIES, settings.lake_uri).collect())


def test_incremental_exactly_once_with_ties_on_the_write_time(world, spark):
    from jobs.bronze import SOURCES, extract_source
    from jobs.common import Interval

    settings, db = world
    activities = SOURCES[0]
    first = [doc(i, T1) for i in range(4)] + [doc(90, T1, oid=True)]
    db.activities.insert_many(first)
    day1 = Interval.for_day(T1.date())
    out = extract_source(spark, settings, day1, activities, db)
    assert (out["expected"], out["extracted"]) == (5, 5)
    assert extract_source(spark, settings, day1, activities, db)["extracted"] == 0  # re-run adds nothing

    later = [doc(10, T1 + dt.timedelta(hours=1)), doc(11, T1 + dt.timedelta(hours=1), oid=True),
             doc(12, T1 + dt.timedelta(days=1))]
    db.activities.insert_many(later)
    out = extract_source(spark, settings, day1, activities, db)
    assert out["extracted"] == 2  # the document written on the next day waits for its interval
    out = extract_source(spark, settings, Interval.for_day((T1 + dt.timedelta(days=1)).date()), activities, db)
    assert out["extracted"] == 1
    assert bronze_ids(spark, settings) == sorted(str(d["_id"]) for d in first + later)


def test_a_crash_between_commits_resumes_without_loss_or_duplicates(world, spark, monkeypatch):
    import jobs.bronze as bronze
    from jobs.common import Interval

    settings, db = world
    docs = [doc(i, T1 + dt.timedelta(seconds=i // 3)) for i in range(10)]  # ties inside commits
    db.activities.insert_many(docs)
    monkeypatch.setattr(bronze, "COMMIT_ROWS", 4)
    calls = {"n": 0}
    real = bronze._append

    def failing_append(df, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash after the first commit")
        real(df, path)

    monkeypatch.setattr(bronze, "_append", failing_append)
    day = Interval.for_day(T1.date())
    with pytest.raises(RuntimeError, match="simulated crash"):
        bronze.extract_source(spark, settings, day, bronze.SOURCES[0], db)
    assert len(bronze_ids(spark, settings)) == 4
    monkeypatch.setattr(bronze, "_append", real)
    out = bronze.extract_source(spark, settings, day, bronze.SOURCES[0], db)
    assert (out["already_in_batch"], out["extracted"]) == (4, 6)
    assert bronze_ids(spark, settings) == sorted(d["_id"] for d in docs)
