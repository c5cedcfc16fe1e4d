"""The operational query patterns against the real MongoDB wire server."""

import datetime as dt
import json
import subprocess
import sys

import pytest

from learntrack.mongo_ops import _index_in_plan

UTC = dt.timezone.utc


@pytest.fixture()
def db(stack):
    from learntrack.mongo_ops import database, ensure_collections

    d = database(stack.with_overrides(mongo_db="lt_test_ops"))
    for name in ("activities", "students", "courses"):
        d[name].drop()
    ensure_collections(d)
    return d


@pytest.mark.stack
def test_mongo_bulk_insert_latest_and_profile_update(db):
    from learntrack.mongo_ops import ProfileError, insert_activities, latest_activities, update_profile

    t0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
    docs = [{"event_id": f"rt-{i}", "student_id": "s-rt", "course_id": "c1", "event_type": "page_view",
             "event_time": t0 + dt.timedelta(minutes=i)} for i in range(30)]
    docs.append({"event_id": "rt-bad", "student_id": "s-rt", "course_id": "c1", "event_type": "teleport",
                 "event_time": t0})
    report = insert_activities(db, docs)
    assert (report.inserted, report.duplicates, [i for i, _ in report.rejected]) == (30, 0, [30])
    again = insert_activities(db, docs[:5])
    assert (again.inserted, again.duplicates) == (0, 5)
    latest = latest_activities(db, "s-rt")
    assert [d["event_id"] for d in latest] == [f"rt-{i}" for i in range(29, 9, -1)]

    db.students.insert_one({"_id": "s-rt", "name": "A", "email": "a@example.org"})
    doc = update_profile(db, "s-rt", {"email": "b@example.org", "progress": {"c1": 40}})
    assert doc["email"] == "b@example.org" and doc["progress"] == {"c1": 40} and doc["updated_at"]
    with pytest.raises(ProfileError, match="invalid email"):
        update_profile(db, "s-rt", {"email": "not-an-email"})
    with pytest.raises(ProfileError, match="not allowed"):
        update_profile(db, "s-rt", {"is_admin": True})
    with pytest.raises(ProfileError, match="unknown student"):
        update_profile(db, "s-nobody", {"name": "x"})




@pytest.mark.stack
def test_sweep_stamps_documents_written_without_write_metadata(db):
    """Another writer's documents (no ingest_day, a string write time) become visible to the
    day-bucket extraction; stamped documents and clean ones are left alone on the next sweep."""
    from learntrack.mongo_ops import insert_activities, insert_raw, sweep_write_metadata

    t0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
    insert_activities(db, [{"event_id": "clean", "student_id": "s1", "course_id": "c1", "event_type": "login",
                            "event_time": t0, "region": "eu-west"}])
    insert_raw(db, [{"_id": "bare", "event_id": "bare", "student_id": "s1", "course_id": "c1",
                     "event_type": "page_view", "event_time": t0},
                    {"_id": "textual", "event_id": "textual", "student_id": "s1", "course_id": "c1",
                     "event_type": "page_view", "event_time": t0, "ingested_at": "2026-01-05T10:00:00Z",
                     "ingest_day": "2026-01-05"}])
    before_slots = dt.datetime(2026, 1, 5, 10, 17, 30, tzinfo=UTC)  # a writer from before slots existed
    insert_raw(db, [{"_id": "no-slot", "event_id": "no-slot", "student_id": "s1", "course_id": "c1",
                     "event_type": "page_view", "event_time": t0, "ingested_at": before_slots,
                     "ingest_day": "2026-01-05"}])
    db.students.insert_one({"_id": "s9", "name": "No Stamp"})
    now = dt.datetime(2026, 1, 6, 3, 0, tzinfo=UTC)
    assert sweep_write_metadata(db, now=now) == {"activities": 3, "students": 1, "courses": 0}
    no_slot = db.activities.find_one({"_id": "no-slot"})
    assert (no_slot["ingested_at"].replace(tzinfo=UTC), no_slot["ingest_day"], no_slot["ingest_slot"]) == \
        (before_slots, "2026-01-05", "2026-01-05T10:10")  # its own time kept: extracted once, not again
    assert db.students.find_one({"_id": "s9"})["updated_slot"] == "2026-01-06T03:00"
    textual = db.activities.find_one({"_id": "textual"})
    assert textual["ingested_at"].replace(tzinfo=UTC) == now and textual["ingest_day"] == "2026-01-06"
    assert textual["ingested_at_original"] == "2026-01-05T10:00:00Z"
    assert db.activities.find_one({"_id": "bare"})["ingest_day"] == "2026-01-06"
    assert "ingested_at_original" not in db.activities.find_one({"_id": "bare"})
    assert db.activities.find_one({"_id": "clean"})["ingest_day"] != "2026-01-06"
    assert db.students.find_one({"_id": "s9"})["updated_day"] == "2026-01-06"
    assert sweep_write_metadata(db, now=now) == {"activities": 0, "students": 0, "courses": 0}


@pytest.mark.stack
def test_latest_20_is_served_by_the_student_index(db):
    from learntrack.mongo_ops import explain_latest, insert_activities

    t0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
    insert_activities(db, [{"event_id": f"ix-{i}", "student_id": f"s{i % 50}", "course_id": "c1",
                            "event_type": "page_view", "event_time": t0 + dt.timedelta(minutes=i)}
                           for i in range(500)])
    plan = explain_latest(db, "s7")
    assert plan["index"] and "student_latest" in plan["index"], plan["plan"]
    db.activities.drop_index("student_latest")
    try:
        assert explain_latest(db, "s7")["index"] is None
    finally:
        db.activities.create_index([("student_id", 1), ("event_time", -1)], name="student_latest")


def server_takes_validators(db) -> bool:
    """Asked of the server directly, not through ensure_collections: does it create a collection
    with a $jsonSchema validator (real MongoDB) or refuse it as not implemented (FerretDB)?"""
    from pymongo.errors import OperationFailure

    db.drop_collection("validator_probe")
    try:
        db.create_collection("validator_probe", validator={"$jsonSchema": {"bsonType": "object"}})
    except OperationFailure as exc:
        assert exc.code in (115, 238), exc  # CommandNotSupported, NotImplemented: anything else is a bug
        return False
    finally:
        db.drop_collection("validator_probe")
    return True


@pytest.mark.stack
def test_collections_and_indexes_are_created_idempotently(db):
    from learntrack.mongo_ops import ACTIVITY_SCHEMA, STUDENT_SCHEMA, ensure_collections

    db.activities.insert_one({"_id": "kept", "event_id": "kept"})
    again = ensure_collections(db)
    validators = server_takes_validators(db)
    validated = "validator (warn)" if validators else \
        "validators not supported by this server: write-path validation only"
    assert again == {"activities": validated, "students": validated, "courses": "created"}
    options = {c["name"]: c.get("options", {}) for c in db.list_collections()}
    assert {"activities", "students", "courses"} <= set(options)
    if validators:  # what the report claims is what the server holds
        assert options["activities"]["validator"] == {"$jsonSchema": ACTIVITY_SCHEMA}
        assert options["students"]["validator"] == {"$jsonSchema": STUDENT_SCHEMA}
        assert options["activities"]["validationAction"] == "warn" and "validator" not in options["courses"]
    assert db.activities.find_one({"_id": "kept"}) == {"_id": "kept", "event_id": "kept"}  # nothing dropped
    keys = {c: {i["name"]: list(i["key"].items()) for i in db[c].list_indexes()} for c in ("activities", "students")}
    assert keys["activities"]["student_latest"] == [("student_id", 1), ("event_time", -1)]
    assert keys["activities"]["ingest_bucket"] == [("ingest_day", 1), ("ingested_at", 1), ("_id", 1)]
    assert keys["students"]["changes"] == [("updated_day", 1), ("updated_at", 1), ("_id", 1)]
    assert keys["activities"]["activities_by_slot"] == [("ingest_slot", 1), ("ingested_at", 1), ("_id", 1)]
    assert keys["students"]["students_by_slot"] == [("updated_slot", 1), ("updated_at", 1), ("_id", 1)]


@pytest.mark.stack
def test_cli_insert_reports_bad_lines_and_keeps_the_rest(stack, db, tmp_path):
    from bson import json_util

    good = {"event_id": "cli-1", "student_id": "s1", "course_id": "c1", "event_type": "login",
            "event_time": dt.datetime(2026, 1, 1, tzinfo=UTC), "region": "eu-west"}
    bad = dict(good, event_id="cli-2", region="atlantis")
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json_util.dumps(d) for d in (good, bad, good)) + "\n")
    env = {**stack.to_env(), "LEARNTRACK_MONGO_DB": "lt_test_ops"}
    proc = subprocess.run([sys.executable, "-m", "learntrack.cli", "mongo", "insert", str(path)],
                          capture_output=True, text=True, env={**__import__("os").environ, **env})
    assert proc.returncode == 1
    assert "inserted=1 duplicates=1 rejected=1" in proc.stdout
    assert "line 2: login with unknown region" in proc.stdout
    assert db.activities.count_documents({}) == 1


def test_index_found_in_mongodb_and_sql_plans():
    mongo = {"queryPlanner": {"winningPlan": {"stage": "LIMIT", "inputStage": {
        "stage": "FETCH", "inputStage": {"stage": "IXSCAN", "indexName": "student_latest"}}}}}
    assert _index_in_plan(mongo) == "student_latest"
    assert _index_in_plan({"queryPlanner": {"winningPlan": {"stage": "COLLSCAN"}}}) is None
    assert _index_in_plan({"queryPlanner": {"Plan": ["SEARCH t USING INDEX t_student_latest (x=?)"]}}) \
        == "t_student_latest"
    assert _index_in_plan({"queryPlanner": {"Plan": {"Node Type": "Index Scan",
                                                      "x": "Index Scan using idx_a on t"}}}) == "idx_a"
    assert _index_in_plan({"queryPlanner": {"Plan": ["SCAN bulk_123"]}}) is None
    pg = {"queryPlanner": {"Plan": {"Node Type": "Bitmap Heap Scan", "Plans": [
        {"Node Type": "Bitmap Index Scan", "Index Name": "activities_student_latest_gin"}]}}}
    assert _index_in_plan(pg) == "activities_student_latest_gin"


@pytest.mark.stack
def test_activities_written_since_reads_the_buckets_from_that_day_on(db):
    """What publish_redis re-applies after gold's interval: every activity written at or after the
    instant, across day buckets, each bucket served by the ingest_bucket index."""
    from learntrack.mongo_ops import activities_written_since, ensure_indexes, insert_activities

    ensure_indexes(db)
    t0 = dt.datetime(2026, 1, 5, 23, 0, tzinfo=UTC)
    for i, minutes in enumerate([-30, 0, 30, 90, 60 * 24 + 61]):  # before, at, same day, next day, day after
        at = t0 + dt.timedelta(minutes=minutes)
        insert_activities(db, [{"event_id": f"w{i}", "student_id": "s1", "course_id": "c1", "event_type": "login",
                                "event_time": at - dt.timedelta(seconds=1), "region": "eu-central"}], now=at)
    since = sorted(d["event_id"] for d in activities_written_since(db, t0, now=t0 + dt.timedelta(days=3)))
    assert since == ["w1", "w2", "w3", "w4"]
    plan = db.activities.find({"ingest_day": "2026-01-06", "ingested_at": {"$gte": t0}}).explain()
    if "filterPushdown" in plan:  # FerretDB
        assert plan["filterPushdown"] is True
    else:
        assert "ingest_bucket" in str(plan["queryPlanner"]["winningPlan"])


def test_write_slots_are_ten_utc_minutes_whatever_the_offset():
    from learntrack.mongo_ops import slot_bucket, slots_between, write_buckets

    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert slot_bucket(dt.datetime(2026, 1, 7, 5, 49, 59, 999000, tzinfo=ist)) == "2026-01-07T00:10"
    assert slot_bucket(dt.datetime(2026, 1, 7, 0, 20, tzinfo=UTC)) == "2026-01-07T00:20"
    assert write_buckets(dt.datetime(2026, 1, 6, 23, 59, 59, tzinfo=UTC), "d", "s") == \
        {"d": "2026-01-06", "s": "2026-01-06T23:50"}
    got = slots_between(dt.datetime(2026, 1, 6, 23, 45, tzinfo=UTC), dt.datetime(2026, 1, 7, 0, 10, tzinfo=UTC))
    assert got == ["2026-01-06T23:40", "2026-01-06T23:50", "2026-01-07T00:00", "2026-01-07T00:10"]
    assert len(slots_between(dt.datetime(2026, 1, 7, tzinfo=UTC), dt.datetime(2026, 1, 7, 23, 59, tzinfo=UTC))) == 144


@pytest.mark.stack
def test_a_bucket_counted_by_streaming_ids_equals_the_servers_count(db):
    """FerretDB materialises a count (20 GB for a 6.7M-document bucket), so there the bucket's ids
    are streamed and counted; both methods must give the same number for the same filter, including
    the upper bound on the write time and documents of other buckets."""
    from learntrack.mongo_ops import count_matching, counts_by_streaming, insert_activities, insert_raw

    t0 = dt.datetime(2026, 2, 1, 23, 50, tzinfo=UTC)
    docs = [{"event_id": f"cnt-{i}", "student_id": f"s{i % 7}", "course_id": "c1", "event_type": "page_view",
             "event_time": t0 + dt.timedelta(minutes=i)} for i in range(25)]
    for i, d in enumerate(docs):  # 10 written on Feb 1, 15 on Feb 2
        insert_activities(db, [d], now=t0 + dt.timedelta(minutes=i))
    insert_raw(db, [{"_id": "raw-1", "ingest_day": "2026-02-01", "ingested_at": t0 + dt.timedelta(minutes=3)},
                    {"_id": "raw-2", "ingest_day": "2026-02-01"}])  # no write time: outside the bound
    upper = t0 + dt.timedelta(minutes=5)
    for flt, want in (({"ingest_day": "2026-02-01", "ingested_at": {"$lte": upper}}, 7),
                      ({"ingest_day": "2026-02-01"}, 12), ({"ingest_day": "2026-02-02"}, 15),
                      ({"ingest_day": "2026-02-03"}, 0)):
        got = {m: count_matching(db.activities, flt, m, batch_size=4) for m in ("server", "stream", "auto")}
        assert got == {"server": want, "stream": want, "auto": want}, (flt, got)
    assert counts_by_streaming(db) is True  # the local stack's server is FerretDB
    with pytest.raises(ValueError, match="count method"):
        count_matching(db.activities, {}, "guess")


def test_an_unknown_count_method_is_refused_with_the_variable_to_fix():
    from learntrack.settings import Settings

    with pytest.raises(ValueError, match="LEARNTRACK_MONGO_COUNT_METHOD"):
        Settings(mongo_count_method="exact")
