"""Bronze: incremental, append-only extraction of MongoDB collections into Delta.

The watermark is the (write time, _id) of the newest row already in the bronze table itself, so
the state and the data it describes are committed in the same Delta commit: a crash between
chunks leaves every committed chunk and a watermark that points right after it, never a skipped
or doubled batch. Each chunk is read in (write time, _id) order with a strict "greater than the
watermark" filter, so re-running an interval that is already extracted adds nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from itertools import chain, groupby
from typing import Any, Callable, Iterable, Iterator

from lake.tables import BRONZE_ACTIVITIES, BRONZE_COURSES, BRONZE_STUDENTS, Table
from learntrack import faults
from learntrack.intervals import UTC, Interval, to_utc
from learntrack.mongo_ops import WRITE_SLOT_MINUTES
from learntrack.settings import Settings

log = logging.getLogger(__name__)
SLOTS_PER_DAY = 24 * 60 // WRITE_SLOT_MINUTES


@dataclass(frozen=True)
class Source:
    collection: str
    table: Table
    watermark_field: str  # ingested_at for events, updated_at for profiles
    bucket_field: str  # the UTC day of the watermark field, stamped by the write path (counts)
    slot_field: str  # its UTC 10-minute slot, stamped beside it (sorted reads)


SOURCES = (
    Source("activities", BRONZE_ACTIVITIES, "ingested_at", "ingest_day", "ingest_slot"),
    Source("students", BRONZE_STUDENTS, "updated_at", "updated_day", "updated_slot"),
    Source("courses", BRONZE_COURSES, "updated_at", "updated_day", "updated_slot"),
)

def bronze_state(settings: Settings, table: Table, batch_id: str,
                 delta=None) -> tuple[tuple[dt.datetime, Any] | None, int]:
    """(watermark, rows already in ``batch_id``) read back from the bronze table (``delta``: the
    table already opened through delta-rs, so its log is not read twice).

    The watermark is the (write time, _id) of the newest extracted row. Read through delta-rs
    (lake.delta_rs): the newest ``ingest_date`` comes from the Delta log's partition values, then only
    that partition's write times are read, and the batch's rows are counted from the batch_id
    column, whose file statistics skip the files of other batches (no Spark job: 3 per source before).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from bson import json_util

    from lake import delta_rs

    delta = delta if delta is not None else delta_rs.open_table(settings, table)
    days = delta_rs.partition_values(delta, "ingest_date")
    if not days:
        return None, 0
    data = delta.to_pyarrow_dataset()
    already = data.count_rows(filter=ds.field("batch_id") == batch_id)
    in_newest = ds.field("ingest_date") == pa.scalar(dt.date.fromisoformat(max(days)), pa.date32())
    ts = pc.max(data.to_table(filter=in_newest, columns=["source_updated_at"])["source_updated_at"])
    # Several documents may share the newest write time: take the last in MongoDB's own _id order
    # (BSON compares by type first, so a string id sorts before an ObjectId whatever its text).
    ties = data.to_table(filter=in_newest & (ds.field("source_updated_at") == ts), columns=["raw"])["raw"]
    last_id = max((json_util.loads(raw)["_id"] for raw in ties.to_pylist()), key=_bson_order)
    return (to_utc(ts.as_py()), last_id), int(already)


def _bson_order(value: Any) -> tuple:
    from bson import ObjectId

    rank = {int: 1, float: 1, str: 2, dict: 3, list: 4, bytes: 5, ObjectId: 7, bool: 8, dt.datetime: 9}
    return rank.get(type(value), 99), value if not isinstance(value, (dict, list)) else str(value)


def _slots(collection, source: Source, watermark, upper: dt.datetime, first_day: str = "") -> list[str]:
    """The write slots that can hold documents after the watermark and up to ``upper``, oldest first.

    A whole day between the watermark's and ``upper``'s is first asked for one document of its day
    bucket (one query, which ends at the first document found); the day's 144 slots are read only
    if it has one. A source written
    rarely (a course catalogue) keeps an old watermark, and reading every 10-minute slot since it
    cost one round trip per slot on every run, growing with the days since its last write
    (4,750 slots, about 2 s per source, 33 days after the last profile change). The day bucket and
    the slot are stamped from the same write time (``mongo_ops.write_buckets``), so an empty day
    bucket means empty slots.
    """
    from learntrack.mongo_ops import slots_between

    if watermark is None and first_day:  # first run from a configured day (extract_first_day)
        start = dt.datetime.fromisoformat(first_day).replace(tzinfo=UTC)
    elif watermark is None:  # first run: from the oldest bucket in the collection
        first = collection.find_one({source.bucket_field: {"$type": "string"}}, {source.bucket_field: 1},
                                    sort=[(source.bucket_field, 1)])
        if first is None:
            return []
        start = dt.datetime.fromisoformat(first[source.bucket_field]).replace(tzinfo=UTC)
    else:
        start = watermark[0]
    if start > upper:
        return []
    slots = slots_between(start, upper)
    flt = _mongo_filter(source.watermark_field, watermark, upper)
    whole_days = [d for d, n in Counter(s[:10] for s in slots).items() if n == SLOTS_PER_DAY]
    empty = {d for d in whole_days if collection.find_one({source.bucket_field: d, **flt}, {"_id": 1}) is None}
    return [s for s in slots if s[:10] not in empty]


def _mongo_filter(field: str, watermark, upper: dt.datetime) -> dict:
    """The server-side filter of a bucket's new documents: a flat range on the write time.

    Flat on purpose: FerretDB pushes ``{bucket: d, field: {$gte, $lte}}`` down to PostgreSQL as an
    index scan of the bucket, but a ``$and``/``$or`` form of the same condition as a scan of the
    whole collection (measured: 2.1 s against 21.8 s for one bucket of 195k documents). The
    documents written at exactly the watermark's time that are already in bronze are dropped by
    ``_after_watermark`` on the client.
    """
    return {field: {"$gte": watermark[0], "$lte": upper} if watermark is not None else {"$lte": upper}}


def _after_watermark(docs: Iterable[dict], field: str, watermark) -> Iterator[dict]:
    """``docs`` (sorted by write time, then _id) without those at or before the watermark."""
    if watermark is None:
        yield from docs
        return
    ts, last_id = watermark
    last = _bson_order(last_id)
    for doc in docs:
        written = doc[field]
        if isinstance(written, dt.datetime) and written == ts and _bson_order(doc["_id"]) <= last:
            continue
        yield doc


def _write_order(field: str):
    """Sort key of MongoDB's (write time, _id) order on the client: dates as the milliseconds BSON
    stores (a date outside years 1-9999 is a ``DatetimeMS``), ids by ``_bson_order``."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    millisecond = dt.timedelta(milliseconds=1)

    def key(doc: dict) -> tuple:
        ts = doc[field]
        ms = (to_utc(ts) - epoch) // millisecond if isinstance(ts, dt.datetime) else int(ts)
        return ms, _bson_order(doc["_id"])

    return key


def _read_day(collection, source: Source, day: str, flt: dict, limit: int, batch_size: int) -> list[dict] | None:
    """The day bucket's documents matching ``flt``, in (write time, _id) order, read as one query and
    sorted here; None when the day holds more than ``limit`` (the caller reads it by slot instead).

    One query per day is FerretDB's plain read rate: its 144 slot queries cost 1.23x as much (they
    pay a round trip and a plan each), and it pushes down neither ``$in`` nor a range over slots.
    The server is not asked to sort (FerretDB sorts in memory); the client holds at most ``limit``
    documents, and a day that turns out larger has cost at most ``limit`` documents of reading.
    """
    docs: list[dict] = []
    cursor = collection.find({source.bucket_field: day, **flt}).batch_size(batch_size)
    try:
        for doc in cursor:
            docs.append(doc)
            if len(docs) > limit:
                return None
    finally:
        cursor.close()
    docs.sort(key=_write_order(source.watermark_field))
    return docs


def reconcile_days(watermark, upper: dt.datetime, lookback_days: int) -> list[str]:
    """The day buckets reconciled by count: from ``lookback_days`` before the watermark's day (the
    day of ``upper`` on a first run) to the day of ``upper``."""
    end = upper.astimezone(UTC).date()
    start = (watermark[0].astimezone(UTC).date() if watermark else end) - dt.timedelta(days=lookback_days)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _bronze_ids(settings: Settings, source: Source, days: list[str], upper: dt.datetime):
    """(ingest_date, source_id) of bronze's rows in the day partitions ``days`` written up to ``upper``."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from lake import delta_rs

    where = (ds.field("ingest_date").isin(pa.array([dt.date.fromisoformat(d) for d in days], pa.date32()))
             & (ds.field("source_updated_at") <= pa.scalar(upper, pa.timestamp("us", tz="UTC"))))
    return delta_rs.scan(settings, source.table, where, columns=["ingest_date", "source_id"])


def bucket_counts(settings: Settings, source: Source, collection, days: list[str], upper: dt.datetime):
    """Per day bucket: (documents MongoDB holds written up to ``upper``, distinct ids bronze holds for
    the same bucket and bound). Independent of the watermark: what the bronze gate compares.

    A count on FerretDB reads the bucket's documents (as costly as reading them) and holds them in
    memory, so there the ids are streamed and counted (``mongo_count_method``), and the buckets are
    counted side by side; bronze's side is read through delta-rs meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from learntrack.mongo_ops import count_matching, count_method

    if not days:
        return {}
    method = count_method(collection.database, settings.mongo_count_method)  # asked once, not per bucket

    def in_mongo(day: str) -> int:
        return count_matching(collection, {source.bucket_field: day, source.watermark_field: {"$lte": upper}},
                              method, settings.extract_batch_size)

    with ThreadPoolExecutor(max_workers=max(1, min(len(days), 4))) as pool:
        counted = pool.map(in_mongo, days)
        ids = _bronze_ids(settings, source, days, upper)
        stored = {r["ingest_date"].isoformat(): r["source_id_count_distinct"]
                  for r in ids.group_by("ingest_date").aggregate([("source_id", "count_distinct")]).to_pylist()}
        return {d: (n, stored.get(d, 0)) for d, n in zip(days, counted)}


def _missing_documents(settings: Settings, source: Source, collection, day: str, upper: dt.datetime,
                       batch_size: int) -> Iterator[dict]:
    """The bucket's documents (up to ``upper``) that bronze does not hold: one read of the bucket
    (an ``$in`` of ids is a scan of the whole collection on FerretDB)."""
    import pyarrow.dataset as ds

    from lake import delta_rs

    have = set(delta_rs.scan(settings, source.table, ds.field("ingest_date") == dt.date.fromisoformat(day),
                             columns=["source_id"])["source_id"].to_pylist())
    for doc in collection.find({source.bucket_field: day, source.watermark_field: {"$lte": upper}}).batch_size(
            batch_size):
        if str(doc["_id"]) not in have:
            yield doc


def _bronze_columns(docs: Iterable[dict], source: Source, unreadable: list[str],
                    rows_per_commit: int) -> Iterator[dict[str, list]]:
    """Bronze rows of ``docs``, as column lists of at most ``rows_per_commit`` rows (one commit each).

    A document whose watermark field is not a date (years beyond 1-9999 decode as ``DatetimeMS``)
    is listed in ``unreadable`` instead.
    """
    from learntrack.extended_json import dumps_relaxed

    def empty() -> dict[str, list]:
        return {"source_id": [], "raw": [], "source_updated_at": [], "ingest_date": []}

    cols = empty()
    ids, raws, stamps, days = cols.values()
    for doc in docs:
        ts = doc[source.watermark_field]
        if not isinstance(ts, dt.datetime):
            unreadable.append(str(doc["_id"]))
            continue
        ts = ts.astimezone(UTC)
        ids.append(str(doc["_id"]))
        raws.append(dumps_relaxed(doc))
        stamps.append(ts)
        days.append(ts.date())
        if len(ids) >= rows_per_commit:
            yield cols
            cols = empty()
            ids, raws, stamps, days = cols.values()
    if ids:
        yield cols


def _arrow_rows(table: Table, cols: dict[str, list], batch_id: str, extracted_at: dt.datetime):
    import pyarrow as pa

    n = len(cols["source_id"])
    data = {**cols, "batch_id": [batch_id] * n, "extracted_at": [extracted_at] * n}
    schema = table.arrow_schema()
    return pa.table([pa.array(data[f.name], f.type) for f in schema], schema=schema)


def extract_source(settings: Settings, interval: Interval, source: Source, db,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Append ``source``'s documents written after bronze's watermark, up to the interval's end, to
    its bronze table; then reconcile the recent day buckets by count. Each chunk is one Delta commit
    through delta-rs (no JVM: the Arrow chunk is written as it is; ADR 32), so the rows and, being
    the newest rows, the watermark move together."""
    from lake import delta_rs
    from learntrack.batches import read_ahead

    delta = delta_rs.open_for_write(settings, source.table)
    # ``already``: rows an earlier attempt of this same batch committed (a re-run, or a crash mid-way).
    watermark, already = bronze_state(settings, source.table, interval.batch_id, delta)
    now = dt.datetime.now(UTC)
    upper = min(interval.end, now - dt.timedelta(seconds=settings.extract_safety_lag_s))
    flt = _mongo_filter(source.watermark_field, watermark, upper)
    collection = db[source.collection]
    slots = _slots(collection, source, watermark, upper, settings.extract_first_day)
    written = 0
    unreadable: list[str] = []
    read_whole: set[str] = set()  # day buckets this run read entirely, as one query
    extracted_at = now  # aware: a naive value would be read as the host's local time

    def commit(chunks: Iterable[dict[str, list]]) -> None:
        nonlocal written
        for cols in chunks:
            delta_rs.append(delta, _arrow_rows(source.table, cols, interval.batch_id, extracted_at))
            written += len(cols["source_id"])
            faults.point(settings, f"bronze.{source.table.name}.committed")
            if progress:
                progress(f"bronze.{source.table.name}: {written:,} rows committed")

    def new_documents() -> Iterator[list[dict]]:
        # A day at a time, oldest first, each an equality on its bucket the server serves from an
        # index, so a run reads what is new, never the collection's history. A day of at most
        # extract_day_read_max_docs new documents is read as one query and sorted here (ADR 35);
        # a larger one one write slot at a time, sorted by the server (a sort FerretDB does in
        # memory stays the size of a slot). Only documents stamped with the buckets and a date
        # watermark can match (docs/decisions.md, "extraction watermark"); the count
        # reconciliation below finds any other. Yields the documents of a day (or a slot) in order.
        limit = settings.extract_day_read_max_docs
        previous_over = False  # the last whole day read by slot held more than the limit
        for day, in_day in groupby(slots, key=lambda slot: slot[:10]):
            in_day = list(in_day)
            # Only a whole day: the server narrows a query by the bucket equality alone (the write
            # time is filtered after), so a day bucket read for the watermark's last slot, or for
            # the upper bound's first, would fetch the whole day for a few documents.
            whole = limit > 0 and len(in_day) == SLOTS_PER_DAY
            # A day after one over the limit is read by slot straight away: days of one source are
            # alike, and a day query over the limit is read for nothing (the limit's worth of documents).
            by_day = whole and not previous_over
            docs = _read_day(collection, source, day, flt, limit, settings.extract_batch_size) if by_day else None
            if docs is not None:
                if watermark is None or watermark[0] <= dt.datetime.fromisoformat(day).replace(tzinfo=UTC):
                    read_whole.add(day)  # not the watermark's own day: documents behind it are not in the read
                yield list(_after_watermark(docs, source.watermark_field, watermark))
                continue
            if by_day:
                log.info("bronze.%s: day %s holds more than %d new documents; read by slot",
                         source.table.name, day, limit)
            in_slots = 0
            for slot in in_day:
                docs = list(_after_watermark(
                    collection.find({source.slot_field: slot, **flt})
                    .sort([(source.watermark_field, 1), ("_id", 1)]).batch_size(settings.extract_batch_size),
                    source.watermark_field, watermark))
                in_slots += len(docs)
                yield docs
            if whole:
                previous_over = in_slots > limit

    # Three steps at once, each in its own thread: the next day is read (waiting on MongoDB) while
    # this one is encoded into chunks, and a chunk is committed (in delta-rs, which releases the
    # GIL) while the next is encoded. Commits stay in watermark order, so a crash still leaves a
    # consistent prefix.
    documents = chain.from_iterable(read_ahead(new_documents()))
    commit(read_ahead(_bronze_columns(documents, source, unreadable, settings.extract_commit_rows)))
    new_rows = written

    # Reconcile the recent buckets by count, independently of the watermark: a document written
    # behind it (a slow flush, a writer's slow clock, a caller-set write time) is extracted now.
    # (Rows are committed first, so the count sees them; an append keeps the watermark: the
    # repaired rows are older than the newest row.) A day this run has just read whole, as one
    # query, is not counted: every one of its documents up to ``upper`` was in that read, and a
    # count reads them all again (ADR 39). The bronze gate still counts it, independently.
    repaired = 0
    counted = [d for d in reconcile_days(watermark, upper, settings.extract_reconcile_days) if d not in read_whole]
    for d, (in_mongo, in_bronze) in bucket_counts(settings, source, collection, counted, upper).items():
        if in_mongo > in_bronze:
            before = written
            commit(_bronze_columns(_missing_documents(settings, source, collection, d, upper,
                                                      settings.extract_batch_size),
                                   source, unreadable, settings.extract_commit_rows))
            repaired += written - before
            log.warning("bronze.%s: %d documents of bucket %s were behind the watermark; extracted now",
                        source.table.name, written - before, d)
    if unreadable:
        raise ValueError(f"{source.collection}: {len(unreadable)} documents have a {source.watermark_field} that is not "
                         f"a date between years 1 and 9999 (first ids: {unreadable[:5]}); the write path stamps it, "
                         f"so another writer did: fix or delete them, then re-run")
    return {"table": source.table.qualified, "extracted": written, "new_rows": new_rows,
            "repaired_behind_watermark": repaired, "buckets_counted": counted, "already_in_batch": already,
            "watermark_before": watermark[0].isoformat() if watermark else None, "upper": upper.isoformat()}


def extraction_db(settings: Settings, mongo):
    """The source database as extraction reads it: aware UTC dates, and a date outside years 1-9999
    decoded as DatetimeMS instead of raising InvalidBSON inside the cursor (which stopped every run
    at the same document); silver then quarantines it."""
    from bson.codec_options import CodecOptions, DatetimeConversion

    return mongo.get_database(settings.mongo_db, codec_options=CodecOptions(
        tz_aware=True, tzinfo=UTC, datetime_conversion=DatetimeConversion.DATETIME_AUTO))


def extract_bronze(settings: Settings, interval: Interval,
                   progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Extract every source collection's new documents up to the interval end (no SparkSession)."""
    from learntrack.mongo_ops import client

    mongo = client(settings)
    try:
        db = extraction_db(settings, mongo)
        return [extract_source(settings, interval, src, db, progress) for src in SOURCES]
    finally:
        mongo.close()
