"""Backfill: the pipeline's lake stages (with their gates) run for the same days in order, in UTC,
and out of order on a host in another time zone, leave identical tables (apart from lineage: which
batch brought a row and when it was extracted)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time

import pytest

from learntrack.generator import GenParams, generate, load_into_mongo

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

UTC = dt.timezone.utc
END = dt.datetime(2026, 2, 4, tzinfo=UTC)
DAYS = [dt.date(2026, 2, 2), dt.date(2026, 2, 3)]
PARAMS = GenParams(students=40, courses=6, days=3, end=END, seed=23, multi_region_rate=0.08, late_rate=0.08,
                   duplicate_rate=0.03, malformed_rate=0.02)
LINEAGE = {"batch_id", "extracted_at"}


def run_days(settings, days):
    from jobs.common import Interval
    from learntrack import pipeline

    lake_stages = tuple(s for s in pipeline.DAILY if s.writes_lake)  # the sinks have their own tests
    for day in days:
        pipeline.run_chain(settings, Interval.for_day(day), lake_stages)


@contextlib.contextmanager
def host_time_zone(name: str):
    """The Python process's local time zone (what pyspark uses to convert naive datetimes)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def lake_tables(spark, settings):
    from jobs.common import read_table
    from lake.tables import DATA_TABLES

    out = {}
    for table in DATA_TABLES:
        columns = [c for c in table.column_names if c not in LINEAGE]
        rows = read_table(spark, table, settings.lake_uri).select(*columns).collect()
        out[table.qualified] = sorted(repr([sorted(v.items()) if isinstance(v, dict) else v for v in r]) for r in rows)
    return out


def test_days_out_of_order_and_in_another_time_zone_give_the_same_tables(stack, spark, tmp_path):
    from learntrack.mongo_ops import client

    settings = stack.with_overrides(mongo_db="lt_test_backfill")
    mongo = client(settings)
    mongo.drop_database(settings.mongo_db)
    load_into_mongo(mongo[settings.mongo_db], generate(PARAMS))
    mongo.close()

    in_order = settings.with_overrides(lake_root=str(tmp_path / "in-order"))
    run_days(in_order, DAYS)
    shuffled = settings.with_overrides(lake_root=str(tmp_path / "shuffled"))
    with host_time_zone("Europe/Berlin"):  # UTC+1 in February: a naive datetime would move an hour
        assert time.localtime(0).tm_hour == 1
        run_days(shuffled, list(reversed(DAYS)))

    want, got = lake_tables(spark, in_order), lake_tables(spark, shuffled)
    assert want["gold.course_daily_engagement"] and want["gold.student_engagement"]
    for name in want:
        assert got[name] == want[name], f"{name} differs after a backfill in another order"
