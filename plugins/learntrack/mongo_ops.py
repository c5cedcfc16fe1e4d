"""MongoDB operational query patterns: bulk activity insert, latest-20, profile update.

Written to the MongoDB API subset that both real MongoDB and the local FerretDB speak
(find/sort/limit, insert_many unordered, find_one_and_update with $set, createIndexes).
An activity's ``_id`` is its client-made ``event_id``, so a retried write is rejected by the
server as a duplicate (code 11000) and counted, never stored twice.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from learntrack.activity_model import EVENT_TYPES, REGIONS, validate_activity
from learntrack.settings import COUNT_METHODS, Settings

DUPLICATE_KEY = 11000


def day_bucket(ts: dt.datetime) -> str:
    """The UTC day of a write time, stored beside it (``ingest_day``/``updated_day``).

    Incremental extraction reads by an equality filter on a stamped bucket, which every
    MongoDB-compatible server serves from an index; a range filter on the timestamp alone is a
    full scan on FerretDB. Write metadata is stamped by the write path on every document. The day
    is what counts are reconciled by; the finer ``slot_bucket`` is what extraction reads by.
    """
    return ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%d")


#: Width of the write-time slot (``ingest_slot``/``updated_slot``). A data-format constant, not a
#: setting: it is stamped into every document, so changing it means re-stamping the collection.
WRITE_SLOT_MINUTES = 10


def slot_bucket(ts: dt.datetime) -> str:
    """The UTC 10-minute slot of a write time (``2026-01-07T10:20``), stored beside it.

    Extraction reads one slot at a time, sorted by (write time, _id). FerretDB pushes only the
    equality on the bucket down to PostgreSQL and sorts what it gets back in memory, so the bucket
    must stay small: a 7M-event day is ~50k documents per slot, against 10 GB of FerretDB memory
    for the whole day bucket (docs/benchmarks.md, "Seed scale"). MongoDB serves it from the index.
    """
    ts = ts.astimezone(dt.timezone.utc)
    return ts.replace(minute=ts.minute - ts.minute % WRITE_SLOT_MINUTES).strftime("%Y-%m-%dT%H:%M")


def slots_between(first: dt.datetime, last: dt.datetime) -> list[str]:
    """Every slot from the one holding ``first`` to the one holding ``last``, oldest first."""
    step = dt.timedelta(minutes=WRITE_SLOT_MINUTES)
    start = dt.datetime.fromisoformat(slot_bucket(first)).replace(tzinfo=dt.timezone.utc)
    end = dt.datetime.fromisoformat(slot_bucket(last)).replace(tzinfo=dt.timezone.utc)
    return [slot_bucket(start + i * step) for i in range(int((end - start) / step) + 1)]


def write_buckets(ts: dt.datetime, day_field: str, slot_field: str) -> dict[str, str]:
    """The bucket fields the write path stamps beside a write time."""
    return {day_field: day_bucket(ts), slot_field: slot_bucket(ts)}


def client(settings: Settings):
    """The project's one way to a MongoDB client: timezone-aware, and never waiting forever (server
    selection, connect and socket timeouts from settings; a server that is down or hung surfaces
    as a pymongo ``ConnectionFailure`` naming its address)."""
    from pymongo import MongoClient

    return MongoClient(settings.mongo_uri, tz_aware=True, **client_timeouts(settings))


def client_timeouts(settings: Settings) -> dict[str, int]:
    """MongoClient's timeout options (milliseconds) from the settings (seconds)."""
    return {"serverSelectionTimeoutMS": round(settings.mongo_server_selection_timeout_s * 1000),
            "connectTimeoutMS": round(settings.mongo_connect_timeout_s * 1000),
            "socketTimeoutMS": round(settings.mongo_socket_timeout_s * 1000)}


def database(settings: Settings, mongo_client=None):
    return (mongo_client or client(settings))[settings.mongo_db]


#: $jsonSchema for activities, enforced where the server supports validators (real MongoDB).
ACTIVITY_SCHEMA = {
    "bsonType": "object",
    "required": ["event_id", "student_id", "course_id", "event_type", "event_time", "ingested_at", "ingest_day",
                 "ingest_slot"],
    "properties": {
        "event_id": {"bsonType": "string", "maxLength": 64},
        "student_id": {"bsonType": "string", "maxLength": 64},
        "course_id": {"bsonType": "string", "maxLength": 64},
        "event_type": {"enum": list(EVENT_TYPES)},
        "event_time": {"bsonType": "date"},
        "ingested_at": {"bsonType": "date"},
        "ingest_day": {"bsonType": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        "ingest_slot": {"bsonType": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]0$"},
        "position_s": {"bsonType": ["double", "int", "long"], "minimum": 0},
        "duration_s": {"bsonType": ["double", "int", "long"], "minimum": 0},
        "score": {"bsonType": ["double", "int", "long"], "minimum": 0},
        "region": {"enum": list(REGIONS)},
    },
}
STUDENT_SCHEMA = {
    "bsonType": "object",
    "required": ["name", "email", "updated_at"],
    "properties": {"email": {"bsonType": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$"},
                   "updated_at": {"bsonType": "date"}},
}


def ensure_collections(db, validation_action: str = "warn") -> dict[str, str]:
    """Create the collections with their validators where the server supports them.

    ``warn`` (the default) lets MongoDB log violations but keep the document: the write-path
    API refuses bad documents anyway, and what a buggy client still writes must reach the lake's
    quarantine with its reason rather than vanish at the server. Servers without validators
    (FerretDB) are reported, not failed: validation then lives in the write path and silver.
    """
    from pymongo.errors import OperationFailure

    report = {}
    existing = set(db.list_collection_names())
    for name, schema in (("activities", ACTIVITY_SCHEMA), ("students", STUDENT_SCHEMA), ("courses", None)):
        opts = {"validator": {"$jsonSchema": schema}, "validationAction": validation_action} if schema else {}
        try:
            if name not in existing:
                db.create_collection(name, **opts)
            elif opts:
                db.command("collMod", name, **opts)
            report[name] = f"validator ({validation_action})" if opts else "created"
        except OperationFailure as exc:
            if exc.code not in (115, 238):  # CommandNotSupported, NotImplemented
                raise
            if name not in set(db.list_collection_names()):
                db.create_collection(name)
            report[name] = "validators not supported by this server: write-path validation only"
    ensure_indexes(db)
    return report


def ensure_indexes(db) -> None:
    """Create the indexes the query patterns and the extractor use (idempotent)."""
    db.activities.create_index([("student_id", 1), ("event_time", -1)], name="student_latest")
    for name, field, day, slot in WRITE_METADATA:
        # The per-day counts extraction reconciles by (names kept from before slots existed: an
        # index re-declared under another name is an error on MongoDB), and its sorted reads, one
        # slot at a time.
        db[name].create_index([(day, 1), (field, 1), ("_id", 1)],
                              name="ingest_bucket" if name == "activities" else "changes")
        db[name].create_index([(slot, 1), (field, 1), ("_id", 1)], name=f"{name}_by_slot")
    db.students.create_index([("email", 1)], name="email")


@dataclass
class InsertReport:
    inserted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (input index, reason)
    # Live path (``live=``): documents applied to Redis, and accepted documents Redis failed on
    # (stored in MongoDB all the same; the nightly reconcile repairs Redis).
    live_applied: int = 0
    live_failed: int = 0

    def __str__(self) -> str:
        text = f"inserted={self.inserted} duplicates={self.duplicates} rejected={len(self.rejected)}"
        if self.live_applied or self.live_failed:
            text += f" live_applied={self.live_applied} live_failed={self.live_failed}"
        return text


def insert_activities(db, docs: Iterable[Mapping[str, Any]], *, validate: bool = True,
                      now: dt.datetime | None = None, batch_size: int = 5000, live=None) -> InsertReport:
    """Bulk, unordered insert. Invalid documents are reported with their reason and skipped;
    duplicates of an existing event id are counted; everything else is written.

    ``ingested_at`` is the write time, stamped per flush (``now`` when given, else the clock at the
    flush), so a long call does not stamp late flushes with its start time: extraction leaves the
    newest ``extract_safety_lag_s`` for the next run and would otherwise never see them. A caller
    that supplies ``ingested_at`` (the generator replaying history) writes behind the watermark
    when extraction has already passed it; extraction's bucket reconciliation picks those up
    (``extract_reconcile_days``) and the bronze gate's independent count detects any it cannot.

    ``live`` (e.g. ``redis_live.LiveWriter(settings)``): after each flush, the documents MongoDB
    accepted (not duplicates, not rejected) are applied to Redis in one pipeline. A Redis failure
    never fails the write: it is counted in ``live_failed`` and logged; the nightly reconcile
    repairs Redis (docs/serving-redis-live.md).
    """
    from pymongo.errors import BulkWriteError

    report = InsertReport()
    batch: list[dict] = []
    batch_index: list[int] = []

    def flush() -> None:
        if not batch:
            return
        stamp = now or dt.datetime.now(dt.timezone.utc)
        for doc in batch:
            if doc.get("ingested_at") is None:
                doc["ingested_at"] = stamp
            doc.update(write_buckets(doc["ingested_at"], "ingest_day", "ingest_slot"))
        failed: set[int] = set()
        try:
            res = db.activities.insert_many(batch, ordered=False)
            report.inserted += len(res.inserted_ids)
        except BulkWriteError as exc:
            details = exc.details
            report.inserted += details.get("nInserted", 0)
            for err in details.get("writeErrors", []):
                failed.add(err["index"])
                if err.get("code") == DUPLICATE_KEY:
                    report.duplicates += 1
                else:
                    report.rejected.append((batch_index[err["index"]], f"server: {err.get('errmsg')}"))
        if live is not None:
            accepted = [doc for j, doc in enumerate(batch) if j not in failed]
            try:
                report.live_applied += live.apply(accepted)
            except Exception as exc:  # noqa: BLE001 - MongoDB has the data; Redis is repaired nightly
                import logging

                report.live_failed += len(accepted)
                logging.getLogger(__name__).warning(
                    "live path: Redis update of %d stored activities failed (%s: %s); the nightly "
                    "reconcile repairs it", len(accepted), type(exc).__name__, exc)
        batch.clear()
        batch_index.clear()

    for i, raw in enumerate(docs):
        doc = dict(raw)
        if validate:
            reason = validate_activity(doc, now=now or dt.datetime.now(dt.timezone.utc))
            if reason:
                report.rejected.append((i, reason))
                continue
        if "event_id" in doc and "_id" not in doc:
            doc["_id"] = doc["event_id"]
        batch.append(doc)
        batch_index.append(i)
        if len(batch) >= batch_size:
            flush()
    flush()
    return report


def insert_raw(db, docs: list[dict]) -> int:
    """Write documents as they are, with no validation: what a buggy client does. Used by the
    generator to put malformed and duplicate documents in front of the pipeline."""
    from pymongo.errors import BulkWriteError

    try:
        return len(db.activities.insert_many(docs, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        return exc.details.get("nInserted", 0)


#: (collection, write-time field, day-bucket field, slot-bucket field): what extraction reads each
#: collection by.
WRITE_METADATA = (("activities", "ingested_at", "ingest_day", "ingest_slot"),
                  ("students", "updated_at", "updated_day", "updated_slot"),
                  ("courses", "updated_at", "updated_day", "updated_slot"))


def sweep_write_metadata(db, now: dt.datetime | None = None) -> dict[str, int]:
    """Stamp documents another writer left without a date write time or a day bucket, so the next
    extraction reads them (it reads by day bucket and write time only; docs/decisions.md, ADR 5).

    The stamp is the sweep time, because an older time would sit behind the extraction watermark
    and stay invisible; a previous value is kept in ``<field>_original``. This scans the whole
    collection (no index can find a missing field), so it runs weekly, not in the daily DAG.
    Returns the documents stamped per collection.
    """
    from pymongo import UpdateOne

    now = now or dt.datetime.now(dt.timezone.utc)
    stamped = {}
    for name, field, day, slot in WRITE_METADATA:
        flt = {"$or": [{field: {"$not": {"$type": "date"}}}, {day: {"$not": {"$type": "string"}}},
                       {slot: {"$not": {"$type": "string"}}}]}
        ops = []
        for doc in db[name].find(flt, {field: 1, day: 1}):
            written = doc.get(field)
            if isinstance(written, dt.datetime) and doc.get(day) == day_bucket(written):
                # Only the slot is missing (a document from before slots existed): the write time
                # stays, so a document already extracted is not extracted again.
                change = {slot: slot_bucket(written)}
            else:
                change = {field: now, **write_buckets(now, day, slot)}
                if written is not None:
                    change[f"{field}_original"] = written
            ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": change}))
        if ops:
            db[name].bulk_write(ops, ordered=False)
        stamped[name] = len(ops)
    return stamped


def counts_by_streaming(db) -> bool:
    """Whether this server materialises a count (FerretDB 1.x holds every matching document in
    memory before counting), so a large bucket is counted by streaming its ids instead."""
    return bool(db.client.admin.command("buildInfo").get("ferretdbVersion"))


def count_method(db, method: str) -> str:
    """``method`` checked, and "auto" resolved for this server (asked once: callers keep the answer)."""
    if method not in COUNT_METHODS:
        raise ValueError(f"unknown count method {method!r}: one of {', '.join(COUNT_METHODS)}")
    if method == "auto":
        return "stream" if counts_by_streaming(db) else "server"
    return method


def count_matching(collection, flt: Mapping[str, Any], method: str = "auto", batch_size: int = 10_000) -> int:
    """Documents matching ``flt``: ``count_documents``, or the matching ``_id``s streamed and
    counted on the client (``method``: one of ``COUNT_METHODS``; "auto" asks the server)."""
    if count_method(collection.database, method) == "server":
        return collection.count_documents(dict(flt))
    return sum(1 for _ in collection.find(dict(flt), {"_id": 1}).batch_size(batch_size))


def activities_written_since(db, since: dt.datetime, now: dt.datetime | None = None) -> Iterable[dict]:
    """Activities written at or after ``since``, bucket by bucket up to today's (index reads; a range
    on ``ingested_at`` alone is a scan of the whole collection on FerretDB and on MongoDB)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    first = dt.date.fromisoformat(day_bucket(since))
    last = dt.date.fromisoformat(day_bucket(max(now, since)))
    for i in range((last - first).days + 1):
        yield from db.activities.find({"ingest_day": (first + dt.timedelta(days=i)).isoformat(),
                                       "ingested_at": {"$gte": since}})


def latest_activities(db, student_id: str, limit: int = 20) -> list[dict]:
    """The newest ``limit`` activities of a student, served by the student_latest index."""
    cursor = db.activities.find({"student_id": student_id}).sort("event_time", -1).limit(limit)
    return list(cursor)


def explain_latest(db, student_id: str, limit: int = 20) -> dict:
    """How the server runs the latest-N query: the index it uses (None when it scans)."""
    plan = db.activities.find({"student_id": student_id}).sort("event_time", -1).limit(limit).explain()
    return {"index": _index_in_plan(plan), "plan": plan}


def _index_in_plan(node) -> str | None:
    """Find the index a plan uses: MongoDB's IXSCAN ``indexName``, PostgreSQL's ``Index Name``, or
    SQLite's ``USING INDEX x`` (FerretDB returns its storage's SQL plan)."""
    if isinstance(node, dict):
        if node.get("stage") in ("IXSCAN", "EXPRESS_IXSCAN") and node.get("indexName"):
            return node["indexName"]
        if node.get("Index Name"):  # PostgreSQL's JSON plan (FerretDB on PostgreSQL)
            return node["Index Name"]
        for value in node.values():
            found = _index_in_plan(value)
            if found:
                return found
    elif isinstance(node, (list, tuple)):
        for value in node:
            found = _index_in_plan(value)
            if found:
                return found
    elif isinstance(node, str):
        m = re.search(r"(?:USING (?:COVERING )?INDEX|Index(?: Only)? Scan(?: Backward)? using) (\S+)", node)
        if m:
            return m.group(1)
    return None


PROFILE_FIELDS = {"name", "email", "phone", "country", "home_region", "subscription", "progress"}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ProfileError(ValueError):
    pass


def update_profile(db, student_id: str, changes: Mapping[str, Any],
                   now: dt.datetime | None = None) -> dict:
    """Apply allowed, validated changes to a student's profile; return the updated document."""
    from pymongo import ReturnDocument

    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise ProfileError(f"fields not allowed: {sorted(unknown)}; allowed: {sorted(PROFILE_FIELDS)}")
    if "email" in changes and not (isinstance(changes["email"], str) and EMAIL_RE.match(changes["email"])):
        raise ProfileError(f"invalid email {changes['email']!r}")
    update = dict(changes)
    update["updated_at"] = now or dt.datetime.now(dt.timezone.utc)
    update.update(write_buckets(update["updated_at"], "updated_day", "updated_slot"))
    doc = db.students.find_one_and_update({"_id": student_id}, {"$set": update},
                                          return_document=ReturnDocument.AFTER)
    if doc is None:
        raise ProfileError(f"unknown student {student_id!r}")
    return doc
