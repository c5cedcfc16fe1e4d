"""Bronze extraction against the real MongoDB wire server: incremental, exactly once, resumable."""

import datetime as dt

import pytest
from bson import ObjectId
from learntrack.mongo_ops import write_buckets

pytestmark = [pytest.mark.stack, pytest.mark.spark]

UTC = dt.timezone.utc
T1 = dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def doc(i, ts, oid=False):
    d = {"event_id": f"b{i:03d}", "student_id": "s1", "course_id": "c1", "event_type": "page_view",
         "event_time": ts - dt.timedelta(seconds=1), "ingested_at": ts,
         **write_buckets(ts, "ingest_day", "ingest_slot")}
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
    from lake.delta import read_table
    from lake.tables import BRONZE_ACTIVITIES

    return sorted(r["source_id"] for r in read_table(spark, BRONZE_ACTIVITIES, settings.lake_uri).collect())


def test_incremental_exactly_once_with_ties_on_the_write_time(world, spark):
    from jobs.bronze import SOURCES, extract_source
    from learntrack.intervals import Interval

    settings, db = world
    activities = SOURCES[0]
    first = [doc(i, T1) for i in range(4)] + [doc(90, T1, oid=True)]
    db.activities.insert_many(first)
    day1 = Interval.for_day(T1.date())
    out = extract_source(settings, day1, activities, db)
    assert (out["new_rows"], out["extracted"], out["repaired_behind_watermark"]) == (5, 5, 0)
    assert extract_source(settings, day1, activities, db)["extracted"] == 0  # re-run adds nothing

    later = [doc(10, T1 + dt.timedelta(hours=1)), doc(11, T1 + dt.timedelta(hours=1), oid=True),
             doc(12, T1 + dt.timedelta(days=1))]
    db.activities.insert_many(later)
    out = extract_source(settings, day1, activities, db)
    assert out["extracted"] == 2  # the document written on the next day waits for its interval
    out = extract_source(settings, Interval.for_day((T1 + dt.timedelta(days=1)).date()), activities, db)
    assert out["extracted"] == 1
    assert bronze_ids(spark, settings) == sorted(str(d["_id"]) for d in first + later)


def test_spark_reads_what_extraction_wrote_through_delta_rs_with_the_declared_schema(world, spark):
    """Extraction commits through delta-rs (no JVM, ADR 32); silver reads bronze in Spark. The table
    delta-rs created must be the declared one to Spark: same columns, types and partitioning, and
    the raw document intact."""
    import json

    from lake.delta import read_table
    from lake.tables import BRONZE_ACTIVITIES
    from jobs.bronze import extract_bronze
    from learntrack.intervals import Interval

    settings, db = world
    db.activities.insert_many([doc(i, T1 + dt.timedelta(minutes=i)) for i in range(3)])
    extract_bronze(settings, Interval.for_day(T1.date()))
    df = read_table(spark, BRONZE_ACTIVITIES, settings.lake_uri)
    declared = BRONZE_ACTIVITIES.spark_schema()
    assert [(f.name, f.dataType) for f in df.schema] == [(f.name, f.dataType) for f in declared]
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{BRONZE_ACTIVITIES.path(settings.lake_uri)}`").first()
    assert list(detail["partitionColumns"]) == list(BRONZE_ACTIVITIES.partition_by)
    row = df.where("source_id = 'b001'").selectExpr("ingest_date", "unix_micros(source_updated_at) AS micros",
                                                      "raw").first()
    written = T1 + dt.timedelta(minutes=1)
    assert (row["ingest_date"], row["micros"]) == (T1.date(), int(written.timestamp()) * 1_000_000)
    assert json.loads(row["raw"])["event_id"] == "b001"


def test_a_crash_between_commits_resumes_without_loss_or_duplicates(world, spark, monkeypatch):
    import jobs.bronze as bronze
    from lake import delta_rs
    from learntrack.intervals import Interval

    settings, db = world
    docs = [doc(i, T1 + dt.timedelta(seconds=i // 3)) for i in range(10)]  # ties inside commits
    db.activities.insert_many(docs)
    settings = settings.with_overrides(extract_commit_rows=4)
    calls = {"n": 0}
    real = delta_rs.append

    def failing_append(delta, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash after the first commit")
        real(delta, data)

    monkeypatch.setattr(delta_rs, "append", failing_append)
    day = Interval.for_day(T1.date())
    with pytest.raises(RuntimeError, match="simulated crash"):
        bronze.extract_source(settings, day, bronze.SOURCES[0], db)
    assert len(bronze_ids(spark, settings)) == 4
    monkeypatch.setattr(delta_rs, "append", real)
    out = bronze.extract_source(settings, day, bronze.SOURCES[0], db)
    assert (out["already_in_batch"], out["extracted"]) == (4, 6)
    assert bronze_ids(spark, settings) == sorted(d["_id"] for d in docs)


def test_writes_behind_the_watermark_are_found_and_extracted(world, spark):
    """Finding 1: a document written with a write time behind the watermark (a slow flush, a slow
    clock, a caller-set ingested_at) never matched the (ingested_at, _id) > watermark filter, and
    the bronze gate counted with the same filter. Now the gate counts each recent bucket on its own
    and fails, and the next extraction reconciles the buckets and extracts the document."""
    from expectations.gate import GateFailed
    from expectations.gates import bronze_completeness, gate_bronze
    from jobs.bronze import SOURCES, extract_bronze, extract_source
    from learntrack.intervals import Interval

    settings, db = world
    day = Interval.for_day(T1.date())
    db.activities.insert_many([doc(i, T1 + dt.timedelta(minutes=i)) for i in range(5)])
    extract_bronze(settings, day)
    first = extract_bronze(settings, day)  # nothing new; its watermark is minute 4
    gate_bronze(spark, settings, day, {"sources": first})  # complete: passes

    # Written after the extraction, stamped before its watermark (minute 4), with a smaller _id.
    db.activities.insert_many([doc(100 + i, T1 + dt.timedelta(minutes=2, seconds=i)) for i in range(3)])
    db.activities.insert_one(dict(doc(200, T1 + dt.timedelta(hours=-20)), _id="a-earlier-bucket"))
    activities = next(e for e in first if e["table"] == "bronze.activities")
    gap = {r["bucket"]: r["missing_from_bronze"] for r in bronze_completeness(spark, settings, activities).collect()}
    assert gap == {"2026-02-28": 1, "2026-03-01": 3, "2026-03-02": 0}
    with pytest.raises(GateFailed, match="bronze.activities.completeness"):
        gate_bronze(spark, settings, day, {"sources": first})

    again = extract_source(settings, day, SOURCES[0], db)
    assert (again["new_rows"], again["repaired_behind_watermark"]) == (0, 4)
    gate_bronze(spark, settings, day, {"sources": extract_bronze(settings, day)})
    assert bronze_ids(spark, settings) == sorted(str(d["_id"]) for d in db.activities.find({}, {"_id": 1}))


def test_a_long_insert_during_extraction_loses_nothing(world, spark):
    """Concurrency: a 100k-document insert through the write path while extractions run; afterwards
    bronze holds exactly MongoDB's documents."""
    import threading
    import time

    from jobs.bronze import extract_bronze
    from learntrack.intervals import Interval
    from learntrack.mongo_ops import insert_activities

    settings, db = world
    settings = settings.with_overrides(extract_safety_lag_s=1)
    start = dt.datetime.now(UTC) - dt.timedelta(seconds=5)
    docs = ({"event_id": f"c{i:06d}", "student_id": f"s{i % 500}", "course_id": "c1", "event_type": "page_view",
             "event_time": start} for i in range(100_000))
    report = {}
    writer = threading.Thread(target=lambda: report.update(r=insert_activities(db, docs, batch_size=5000)))
    writer.start()
    # Today's interval ends in the future: each extraction is bounded by now - the safety lag.
    today = Interval.for_day(start.date())
    tomorrow = Interval.for_day(start.date() + dt.timedelta(days=1))  # in case the test crosses midnight
    runs = 0
    while writer.is_alive() and not db.activities.estimated_document_count():
        time.sleep(0.05)
    while writer.is_alive():  # at least one extraction overlaps the insert
        extract_bronze(settings, today)
        runs += 1
    writer.join()
    assert report["r"].inserted == 100_000
    time.sleep(settings.extract_safety_lag_s + 1)
    extract_bronze(settings, today)
    extract_bronze(settings, tomorrow)
    ids = bronze_ids(spark, settings)
    assert runs >= 1 and len(ids) == len(set(ids)) == 100_000


def test_the_query_of_a_slot_is_served_from_its_index(world):
    """The slot's filter stays flat: FerretDB pushes it down to PostgreSQL (its explain says
    ``filterPushdown``), where the same condition as ``$and``/``$or`` read the whole collection."""
    from jobs.bronze import _mongo_filter
    from learntrack.mongo_ops import ensure_indexes

    settings, db = world
    ensure_indexes(db)
    db.activities.insert_many([doc(i, T1 + dt.timedelta(minutes=i)) for i in range(5)])
    flt = {"ingest_slot": "2026-03-01T10:00",
           **_mongo_filter("ingested_at", (T1 + dt.timedelta(minutes=2), "b002"), T1 + dt.timedelta(hours=1))}
    plan = db.activities.find(flt).sort([("ingested_at", 1), ("_id", 1)]).explain()
    if "filterPushdown" in plan:  # FerretDB
        assert plan["filterPushdown"] is True, plan
    else:  # MongoDB: the slot index
        assert "activities_by_slot" in str(plan["queryPlanner"]["winningPlan"]), plan
    assert [d["_id"] for d in db.activities.find(flt)] == ["b002", "b003", "b004"]  # ties at the mark: client-side


def test_a_source_written_rarely_reads_only_the_slots_of_days_that_have_writes(world, spark):
    """A catalogue changed once a week keeps an old watermark: each run read every 10-minute slot
    since it (one query each, 144 a day). Whole days whose bucket is empty are now skipped after one
    lookup; the slots of a day with a write, and the partial days at both ends, are still read."""
    from jobs.bronze import SOURCES, _mongo_filter, _slots, extract_source
    from learntrack.intervals import Interval

    settings, db = world
    activities = SOURCES[0]
    db.activities.insert_many([doc(1, T1), doc(2, T1 + dt.timedelta(days=3, hours=5))])
    out = extract_source(settings, Interval.for_day(T1.date()), activities, db)
    assert out["extracted"] == 1
    watermark, upper = (T1, "b001"), dt.datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    slots = _slots(db.activities, activities, watermark, upper)
    # 03-01 from 10:00 (partial), 03-04 (a write), 03-07 up to 12:00 (partial); 03-02/03/05/06 empty
    assert sorted({s[:10] for s in slots}) == ["2026-03-01", "2026-03-04", "2026-03-07"]
    assert len(slots) == 84 + 144 + 73
    assert slots == sorted(slots)
    flt = _mongo_filter("ingested_at", watermark, upper)
    assert all(db.activities.find_one({"ingest_slot": s, **flt}) is None for s in
               ("2026-03-02T10:00", "2026-03-05T00:00"))  # what was skipped was empty
    late = Interval.for_day(dt.date(2026, 3, 6))
    out = extract_source(settings, late, activities, db)
    assert (out["new_rows"], out["repaired_behind_watermark"]) == (1, 0)  # found by the slot read
    assert bronze_ids(spark, settings) == ["b001", "b002"]


@pytest.mark.parametrize("day_read_max_docs, new_rows, repaired", [(0, 2, 1), (100, 3, 0)],
                         ids=["read-by-slot", "read-by-day"])
def test_a_document_written_without_a_slot_is_extracted(spark, world, day_read_max_docs, new_rows, repaired):
    """A writer from before slots existed stamps the day but no slot: the sorted read, one slot at a
    time, cannot see it; the day's count can, so the same run extracts it and the gate passes. A
    day read as one query (ADR 35) sees it in the first place."""
    from expectations.gates import gate_bronze
    from jobs.bronze import extract_bronze
    from learntrack.intervals import Interval

    settings, db = world
    settings = settings.with_overrides(extract_day_read_max_docs=day_read_max_docs)
    day = Interval.for_day(T1.date())
    old_writer = doc(1, T1 + dt.timedelta(minutes=1))
    del old_writer["ingest_slot"]
    db.activities.insert_many([doc(0, T1), old_writer, doc(2, T1 + dt.timedelta(minutes=2))])
    report = extract_bronze(settings, day)
    activities = next(e for e in report if e["table"] == "bronze.activities")
    assert (activities["new_rows"], activities["repaired_behind_watermark"], activities["extracted"]) == (
        new_rows, repaired, 3)
    gate_bronze(spark, settings, day, {"sources": report})
    again = next(e for e in extract_bronze(settings, day) if e["table"] == "bronze.activities")
    assert again["extracted"] == 0


def test_a_day_read_as_one_query_commits_what_slot_reads_commit_in_the_same_order(world, monkeypatch):
    """ADR 35: a small day is read as one query and sorted on the client. Its commits must be the
    slot reads': the same rows in MongoDB's (write time, _id) order, chunk by chunk, with ties on
    the write time between string ids and ObjectIds, a crash between two rows of one write time, a
    day over the limit read by slot beside one under it, and a write time outside years 1-9999
    (refused as before)."""
    from bson.datetime_ms import DatetimeMS

    import jobs.bronze as bronze
    from lake import delta_rs
    from learntrack.intervals import Interval

    settings, db = world
    day2 = T1 + dt.timedelta(days=1)
    docs = ([doc(i, T1 + dt.timedelta(seconds=i // 4, milliseconds=7 * (i % 2)), oid=i % 3 == 0) for i in range(40)]
            + [doc(100 + i, day2 + dt.timedelta(hours=i % 5, minutes=i % 7)) for i in range(15)])
    db.activities.insert_many(list(reversed(docs)))  # insertion order is not the write order
    interval = Interval(T1.replace(hour=0), day2.replace(hour=0) + dt.timedelta(days=1))
    real_append, real_read_day = delta_rs.append, bronze._read_day

    def commits(day_read_max_docs, lake):
        chunks, days_read = [], []

        def append(delta, data):
            if crash and len(chunks) == 1:
                raise RuntimeError("simulated crash after the first commit")
            chunks.append(data.column("source_id").to_pylist())
            real_append(delta, data)

        def read_day(collection, source, day, *args):
            docs = real_read_day(collection, source, day, *args)
            days_read.append((day, docs is not None))
            return docs

        monkeypatch.setattr(delta_rs, "append", append)
        monkeypatch.setattr(bronze, "_read_day", read_day)
        local = settings.with_overrides(extract_day_read_max_docs=day_read_max_docs, extract_commit_rows=7,
                                        lake_root=str(lake))
        crash = True
        with pytest.raises(RuntimeError, match="simulated crash"):
            bronze.extract_source(local, interval, bronze.SOURCES[0], db)
        first_read = days_read[0] if days_read else None  # the crashed run may have read further ahead
        crash = False
        days_read.clear()
        out = bronze.extract_source(local, interval, bronze.SOURCES[0], db)
        return chunks, (first_read, days_read), out

    by_slot, read, _ = commits(0, settings.home_path / "by-slot")
    assert read == (None, [])
    # The resumed run starts inside 03-01 and ends with 03-03's first slot: both partial days are
    # read by slot (a day query would fetch the whole bucket); 03-02 is whole.
    by_day, read, out = commits(100, settings.home_path / "by-day")
    assert read == (("2026-03-01", True), [("2026-03-02", True)])
    mixed, read, _ = commits(20, settings.home_path / "mixed")  # 03-01 holds 40 documents: by slot
    assert read == (("2026-03-01", False), [("2026-03-02", True)])
    monkeypatch.setattr(delta_rs, "append", real_append)
    monkeypatch.setattr(bronze, "_read_day", real_read_day)
    assert by_day == by_slot == mixed
    expected = sorted(docs, key=lambda d: (d["ingested_at"], bronze._bson_order(d["_id"])))
    assert by_day[0][-1] != str(expected[7]["_id"]) and expected[6]["ingested_at"] == expected[7]["ingested_at"]
    assert [i for chunk in by_day for i in chunk] == [str(d["_id"]) for d in expected]
    assert (out["new_rows"], out["already_in_batch"], out["repaired_behind_watermark"]) == (48, 7, 0)

    rogue = dict(doc(900, day2), ingested_at=DatetimeMS(-62_198_755_200_000 - 1))  # before year 1
    db.activities.insert_one(rogue)
    with pytest.raises(ValueError, match="not a date between years 1 and 9999"):
        bronze.extract_source(settings.with_overrides(lake_root=str(settings.home_path / "rogue")), interval,
                              bronze.SOURCES[0], bronze.extraction_db(settings, db.client))


def test_a_day_read_whole_is_not_counted_again_and_the_gate_still_counts_it(world, spark, monkeypatch):
    """ADR 39: a day bucket extraction has just read whole, as one query, is not counted by the
    extraction (a count reads its documents again); the watermark's own day, which the read saw only
    after the watermark, still is. The bronze gate counts every reconciled day independently: a
    document that lands in a day after its read fails the gate, and the next extraction, for which
    that day holds the watermark, counts it and extracts the document."""
    import learntrack.mongo_ops as mongo_ops
    from expectations.gate import GateFailed
    from expectations.gates import gate_bronze
    from jobs.bronze import extract_bronze
    from learntrack.intervals import Interval

    settings, db = world

    def extract(interval):
        report = extract_bronze(settings, interval)
        return report, next(e for e in report if e["table"] == "bronze.activities")

    counted = []  # the activity buckets MongoDB was asked to count (the real count still runs)
    real_count = mongo_ops.count_matching

    def count_matching(collection, flt, *args, **kwargs):
        if collection.name == "activities":
            counted.append(flt["ingest_day"])
        return real_count(collection, flt, *args, **kwargs)

    monkeypatch.setattr(mongo_ops, "count_matching", count_matching)
    day1, day2 = Interval.for_day(T1.date()), Interval.for_day(T1.date() + dt.timedelta(days=1))
    db.activities.insert_many([doc(i, T1 + dt.timedelta(minutes=i)) for i in range(5)])
    _, first = extract(day1)
    # 03-01 was read whole; of 03-02 (the interval's end) only its first slot was in the read
    assert (first["extracted"], first["buckets_counted"]) == (5, ["2026-03-02"])
    assert counted == ["2026-03-02"]

    db.activities.insert_many([doc(10 + i, T1 + dt.timedelta(days=1, minutes=i)) for i in range(3)])
    counted.clear()
    report, second = extract(day2)
    # 03-01 holds the watermark (its documents behind it were not in the read): counted; 03-02 read whole
    assert (second["extracted"], second["buckets_counted"]) == (3, ["2026-02-28", "2026-03-01", "2026-03-03"])
    assert sorted(counted) == ["2026-02-28", "2026-03-01", "2026-03-03"]

    # Lands in 03-02 after its read, stamped before the interval's end: the gate's own count sees it.
    db.activities.insert_one(doc(20, T1 + dt.timedelta(days=1, minutes=1, seconds=30)))
    with pytest.raises(GateFailed, match="bronze.activities.completeness"):
        gate_bronze(spark, settings, day2, {"sources": report})
    _, again = extract(day2)
    assert (again["new_rows"], again["repaired_behind_watermark"]) == (0, 1)
    assert "2026-03-02" in again["buckets_counted"]
    assert bronze_ids(spark, settings) == sorted(str(d["_id"]) for d in db.activities.find({}, {"_id": 1}))


def test_a_day_after_one_over_the_limit_is_read_by_slot_straight_away(world, spark, monkeypatch):
    """A day query over ``extract_day_read_max_docs`` is read for nothing (the seed-scale day's
    profiles: 30 days of about 67k, each a 50k-document read thrown away). After a whole day that
    held more than the limit, the next is read by slot without trying; after one that held less, a
    day query is tried again. Every document still reaches bronze, once."""
    import jobs.bronze as bronze
    from learntrack.intervals import Interval

    settings, db = world
    settings = settings.with_overrides(extract_day_read_max_docs=20)
    sizes = {0: 30, 1: 30, 2: 5, 3: 5}  # documents per day from 03-01
    db.activities.insert_many([doc(100 * d + i, T1 + dt.timedelta(days=d, minutes=i))
                               for d, n in sizes.items() for i in range(n)])
    tried, real_read_day = [], bronze._read_day

    def read_day(collection, source, day, *args):
        docs = real_read_day(collection, source, day, *args)
        tried.append((day, docs is not None))
        return docs

    monkeypatch.setattr(bronze, "_read_day", read_day)
    out = bronze.extract_source(settings, Interval.for_day(dt.date(2026, 3, 4)), bronze.SOURCES[0], db)
    # 03-01 tried and over; 03-02 by slot (30: over); 03-03 by slot (5: under); 03-04 tried and read
    assert tried == [("2026-03-01", False), ("2026-03-04", True)]
    assert out["extracted"] == sum(sizes.values())
    assert bronze_ids(spark, settings) == sorted(str(d["_id"]) for d in db.activities.find({}, {"_id": 1}))
