"""The stage ledger: a stage takes every upstream batch after its newest completed one and up to
its run's own, so a batch a failed run left in bronze is taken in by the next run, and a re-run of
an old day takes only its own batch."""

from __future__ import annotations

import datetime as dt

import pytest

from learntrack.intervals import Interval

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
D1, D2, D3 = (dt.date(2026, 2, n) for n in (1, 2, 3))


def _bronze(spark, settings, day: dt.date, event_ids: list[str]) -> None:
    from bson import json_util

    from lake.delta import ensure_table
    from lake.tables import BRONZE_ACTIVITIES

    written = dt.datetime.combine(day, dt.time(12), UTC)
    batch = Interval.for_day(day).batch_id
    rows = []
    for i, eid in enumerate(event_ids):
        doc = {"_id": eid, "event_id": eid, "student_id": "s1", "course_id": "c1", "event_type": "page_view",
               "event_time": written - dt.timedelta(minutes=5), "ingested_at": written + dt.timedelta(seconds=i)}
        rows.append((eid, json_util.dumps(doc), written + dt.timedelta(seconds=i), batch, written, day))
    path = ensure_table(spark, BRONZE_ACTIVITIES, settings.lake_uri)
    spark.createDataFrame(rows, BRONZE_ACTIVITIES.spark_schema()).write.format("delta").mode("append").save(path)


def test_a_stranded_batch_is_taken_in_by_the_next_run_and_an_old_rerun_takes_only_its_own(spark, fresh_lake):
    from lake.delta import read_table
    from jobs.silver import build_silver
    from lake import ledger
    from lake.tables import SILVER_ACTIVITIES

    b1, b2, b3 = (Interval.for_day(d).batch_id for d in (D1, D2, D3))
    _bronze(spark, fresh_lake, D1, ["a1", "a2"])
    first = build_silver(spark, fresh_lake, Interval.for_day(D1))
    assert first["input_batches"] == [b1] and first["backlog_batches"] == 0
    ledger.record(fresh_lake, "silver", b1, first["input_batches"], first["affected_dates"])

    _bronze(spark, fresh_lake, D2, ["b1", "b2", "b3"])  # day 2 extracted, then its silver failed: no record
    build_silver(spark, fresh_lake, Interval.for_day(D2))
    _bronze(spark, fresh_lake, D3, ["c1"])
    healed = build_silver(spark, fresh_lake, Interval.for_day(D3))
    assert healed["input_batches"] == [b2, b3] and healed["backlog_batches"] == 1
    assert healed["rows_in"] == 4 and healed["inserted"] == 1  # day 2's rows were already merged once: no doubles
    ledger.record(fresh_lake, "silver", b3, healed["input_batches"], healed["affected_dates"])
    assert ledger.processed_up_to(fresh_lake, "silver") == b3

    rerun = build_silver(spark, fresh_lake, Interval.for_day(D1))  # an old day re-run: its own batch only
    assert rerun["input_batches"] == [b1] and rerun["inserted"] == 0
    assert read_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri).count() == 6

    # the sinks read gold's completions the same way: days of every batch they have not published
    ledger.record(fresh_lake, "gold", b1, [b1], [D1])
    ledger.record(fresh_lake, "gold", b3, [b2, b3], [D2, D3])
    ledger.record(fresh_lake, "gold", b3, [b3], [D3])  # insert-only: the first record stays
    pending = ledger.pending_from_ledger(fresh_lake, "publish_cassandra", "gold", b3)
    assert pending.dates == (D1, D2, D3) and pending.backlog == (b1, b2)
    ledger.record(fresh_lake, "publish_cassandra", b3, pending.batches, pending.dates)
    after = ledger.pending_from_ledger(fresh_lake, "publish_cassandra", "gold", b3)
    assert after.dates == (D2, D3)  # a re-run of day 3 republishes the days of its own gold completion only
