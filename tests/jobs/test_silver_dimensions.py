"""Silver's dimensions (course items, students) under re-runs of older batches."""

import datetime as dt

import pytest

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
D1 = dt.datetime(2026, 1, 8, 9, 0, tzinfo=UTC)
D2 = dt.datetime(2026, 1, 9, 9, 0, tzinfo=UTC)


def _course(videos, at):
    return {"_id": "c1", "content": {"videos": [{"video_id": v, "duration_s": 60.0} for v in videos],
                                      "quizzes": [], "pdfs": []}, "updated_at": at}


def _append_bronze(spark, settings, table, docs_by_batch):
    from bson import json_util
    from bson.json_util import RELAXED_JSON_OPTIONS

    from lake.delta import ensure_table

    rows = [(d["_id"], json_util.dumps(d, json_options=RELAXED_JSON_OPTIONS), d["updated_at"], batch, d["updated_at"],
             d["updated_at"].date()) for batch, docs in docs_by_batch for d in docs]
    spark.createDataFrame(rows, table.spark_schema()).write.format("delta").mode("append").save(
        ensure_table(spark, table, settings.lake_uri))


def test_rerunning_an_older_batch_keeps_the_newer_course_content(spark, fresh_lake):
    """Finding 5: re-running day D after the course changed on D+1 removed the new video."""
    from learntrack.intervals import Interval
    from lake.delta import read_table
    from jobs.silver import build_course_items
    from lake.tables import BRONZE_COURSES, SILVER_COURSE_ITEMS

    day1, day2 = Interval.for_day(D1.date()), Interval.for_day(D2.date())
    _append_bronze(spark, fresh_lake, BRONZE_COURSES, [(day1.batch_id, [_course(["v1", "v2"], D1)]),
                                                        (day2.batch_id, [_course(["v1", "v3"], D2)])])

    def items():
        return sorted((r["item_id"], r["updated_at"].replace(tzinfo=None))
                      for r in read_table(spark, SILVER_COURSE_ITEMS, fresh_lake.lake_uri).collect())

    build_course_items(spark, fresh_lake, day1)
    build_course_items(spark, fresh_lake, day2)
    newest = items()
    assert [i for i, _ in newest] == ["v1", "v3"]
    build_course_items(spark, fresh_lake, day1)  # a re-run of the older day
    assert items() == newest
