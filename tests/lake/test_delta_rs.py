"""The lake through delta-rs (no JVM): what the publish stages and the ledger read and write must be
what Spark reads and writes, on the same tables, both ways."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc


def test_rows_read_without_a_jvm_equal_sparks_rows_of_the_same_table(spark, fresh_lake):
    """Maps come back as dicts, timestamps as the same instants (aware UTC), dates as dates, and a
    partition filter selects exactly Spark's rows."""
    import pyarrow.dataset as ds

    from lake import delta_rs
    from lake.delta import ensure_table, read_table
    from lake.tables import GOLD_STUDENT_COURSE_PROGRESS, GOLD_STUDENT_ENGAGEMENT

    at = dt.datetime(2026, 3, 1, 22, 30, 5, 123456, tzinfo=UTC)
    progress = [{"student_id": f"s{i}", "course_id": "c1", "videos_total": 3, "videos_completed": i % 3,
                 "completion_pct": 100.0 * (i % 3) / 3, "status": "in_progress", "quizzes_passed": 1,
                 "resume_positions": {"v1": 10.5 + i, "v2": 3.0}, "first_event_time": at - dt.timedelta(days=i),
                 "last_accessed": at, "completed_video_ids": ["v1"] if i % 3 else [], "passed_quiz_ids": ["q1"],
                 "resume_at": {"v1": at, "v2": at - dt.timedelta(seconds=i)}} for i in range(5)]
    path = ensure_table(spark, GOLD_STUDENT_COURSE_PROGRESS, fresh_lake.lake_uri)
    (spark.createDataFrame([tuple(r[c] for c in GOLD_STUDENT_COURSE_PROGRESS.column_names) for r in progress],
                           GOLD_STUDENT_COURSE_PROGRESS.spark_schema()).write.format("delta").mode("append").save(path))
    got = sorted(delta_rs.rows(fresh_lake, GOLD_STUDENT_COURSE_PROGRESS), key=lambda r: r["student_id"])
    assert got == [{c: r[c] for c in GOLD_STUDENT_COURSE_PROGRESS.column_names} for r in progress]
    assert got[0]["last_accessed"].tzinfo is not None and got[0]["last_accessed"] == at

    # a partition filter (as the publishes use) against Spark's answer on the same table
    days = [dt.date(2026, 3, d) for d in (1, 2, 3)]
    ensure_table(spark, GOLD_STUDENT_ENGAGEMENT, fresh_lake.lake_uri)
    columns = GOLD_STUDENT_ENGAGEMENT.column_names
    def row(day, i):
        values = {"as_of_date": day, "student_id": f"s{i}", "score": Decimal("12.5"), "courses": 1,
                  "events_recent": i, "events_previous": 0, "quiz_attempts": 0, "segment": "active"}
        return tuple(values.get(c) for c in columns)

    rows = [row(day, i) for day in days for i in range(3)]
    (spark.createDataFrame(rows, GOLD_STUDENT_ENGAGEMENT.spark_schema()).write.format("delta").mode("append")
     .save(GOLD_STUDENT_ENGAGEMENT.path(fresh_lake.lake_uri)))
    picked = delta_rs.scan(fresh_lake, GOLD_STUDENT_ENGAGEMENT, ds.field("as_of_date").isin(days[1:]))
    want = read_table(spark, GOLD_STUDENT_ENGAGEMENT, fresh_lake.lake_uri).where("as_of_date > DATE'2026-03-01'")
    assert sorted(picked.column("student_id").to_pylist()) == sorted(r["student_id"] for r in want.collect())
    assert picked.num_rows == 6
    # the partition values come from the log, as the days Spark wrote
    delta = delta_rs.open_table(fresh_lake, GOLD_STUDENT_ENGAGEMENT)
    assert delta_rs.partition_values(delta, "as_of_date") == [d.isoformat() for d in days]


def test_a_table_not_written_yet_reads_as_no_rows_with_its_declared_columns(fresh_lake):
    from lake import delta_rs
    from lake.tables import GOLD_COURSE_DAILY

    assert list(delta_rs.rows(fresh_lake, GOLD_COURSE_DAILY)) == []
    empty = delta_rs.scan(fresh_lake, GOLD_COURSE_DAILY, columns=["course_id"])
    assert empty.num_rows == 0 and empty.column_names == ["course_id"]
    assert delta_rs.open_table(fresh_lake, GOLD_COURSE_DAILY) is None
    assert delta_rs.partition_values(None, "day") == []


def test_the_ledger_written_without_spark_is_the_table_spark_reads_and_concurrent_records_all_land(spark, fresh_lake):
    """delta-rs creates the ledger from its declaration; Spark's own create-if-missing accepts it
    (same schema), reads every record; six writers racing (three sinks, twice) all land once."""
    from lake import ledger
    from lake.delta import read_table
    from lake.tables import STAGE_LEDGER

    ledger.record(fresh_lake, "gold", "20260302T000000Z", ["20260301T000000Z", "20260302T000000Z"],
                  [dt.date(2026, 3, 1)])
    errors: list[BaseException] = []

    def publish(sink: str) -> None:
        try:
            pending = ledger.pending_from_ledger(fresh_lake, sink, "gold", "20260302T000000Z")
            ledger.record(fresh_lake, sink, "20260302T000000Z", pending.batches, pending.dates)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(f"publish_{n}",)) for n in ("a", "b", "c", "a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    seen = {(r["stage"], r["batch_id"]): r for r in read_table(spark, STAGE_LEDGER, fresh_lake.lake_uri).collect()}
    assert sorted(seen) == [(s, "20260302T000000Z") for s in ("gold", "publish_a", "publish_b", "publish_c")]
    assert seen[("publish_a", "20260302T000000Z")]["dates"] == [dt.date(2026, 3, 1)]
    assert seen[("gold", "20260302T000000Z")]["input_batches"] == ["20260301T000000Z", "20260302T000000Z"]
    assert ledger.processed_up_to(fresh_lake, "publish_b") == "20260302T000000Z"
    assert ledger.pending_from_ledger(fresh_lake, "publish_b", "gold", "20260302T000000Z").dates == (
        dt.date(2026, 3, 1),)  # a re-run of the same day republishes its own days, no more


def test_commits_to_s3_use_conditional_puts_and_other_lakes_need_no_extra_option(tmp_path):
    """delta-rs refuses to commit to S3 without a way to make the commit atomic: a conditional PUT
    (If-None-Match), never an unsafe rename. A local or ADLS lake gets no extra option."""
    from lake.delta_rs import write_options
    from learntrack.settings import Settings

    s3 = Settings(lake_root="s3a://bucket/lake", s3_endpoint="http://127.0.0.1:18333")
    assert write_options(s3)["AWS_CONDITIONAL_PUT"] == "etag"
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in write_options(s3)
    assert write_options(Settings(lake_root=str(tmp_path / "lake"))) is None
    adls = Settings(lake_root="abfss://lake@acct.dfs.core.windows.net/x", azure_storage_key="a2V5")
    assert "AWS_CONDITIONAL_PUT" not in write_options(adls)
