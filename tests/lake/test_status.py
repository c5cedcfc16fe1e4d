"""Table freshness from the Delta log: what `learntrack tables` prints is what the test wrote."""

from __future__ import annotations

import datetime as dt

from lake.delta import ensure_table, replace_partitions
from lake.status import render_status, table_status
from lake.tables import GOLD_COURSE_DAILY, SILVER_STUDENTS

DAY1, DAY2 = dt.date(2025, 3, 1), dt.date(2025, 3, 2)


def _row(day: dt.date, course: str) -> dict:
    return {"event_date": day, "course_id": course, "active_learners": 1, "events": 3, "page_views": 1,
            "video_plays": 1, "video_completions": 0, "quiz_attempts": 1, "assignment_submissions": 0, "logins": 0,
            "video_watch_seconds": 10.0, "avg_quiz_score_pct": 50.0, "quiz_pass_rate": 1.0, "new_learners": 1}


def test_version_rows_and_newest_day_are_read_from_the_log(spark, base_settings, tmp_path, monkeypatch, capsys):
    settings = base_settings.with_overrides(lake_root=str(tmp_path / "lake"), home=str(tmp_path / "home"),
                                            spark_jars_dir=str(base_settings.jars_dir))
    root = settings.lake_uri
    ensure_table(spark, GOLD_COURSE_DAILY, root)  # v0
    schema = GOLD_COURSE_DAILY.spark_schema()
    replace_partitions(spark.createDataFrame([_row(DAY1, "c1"), _row(DAY1, "c2")], schema), GOLD_COURSE_DAILY,
                       root, "event_date", [DAY1])  # v1
    replace_partitions(spark.createDataFrame([_row(DAY1, "c1"), _row(DAY2, "c1"), _row(DAY2, "c3")], schema),
                       GOLD_COURSE_DAILY, root, "event_date", [DAY1, DAY2])  # v2: day 1 now has one course
    before = dt.datetime.now(dt.timezone.utc)

    gold, silver = table_status(settings, (GOLD_COURSE_DAILY, SILVER_STUDENTS))
    assert (gold.version, gold.rows, gold.newest) == (2, 3, DAY2)
    assert gold.age_days(dt.date(2025, 3, 5)) == 3
    assert gold.last_commit <= before and (before - gold.last_commit) < dt.timedelta(minutes=10)
    assert (silver.version, silver.rows, silver.newest) == (None, None, None)

    text = render_status([gold, silver], dt.date(2025, 3, 5)).splitlines()
    assert text[0].split()[:2] == ["table", "version"]
    assert text[1].split()[:2] == ["gold.course_daily_engagement", "2"] and text[1].split()[-3:] == \
        ["event_date", "2025-03-02", "3"]
    assert "not written yet" in text[2]

    from learntrack import cli

    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    assert cli.main(["tables", "--today", "2025-03-02"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("gold.course_daily_engagement"))
    assert line.split()[-3:] == ["event_date", "2025-03-02", "0"] and "silver.activities" in out
