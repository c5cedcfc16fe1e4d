"""The daily course engagement computed by DuckDB beside Spark, on the same silver Delta tables.

For the lake benchmark (issue 10): how long one engine takes against the other on the same data
and machine, and whether they agree. DuckDB reads the Delta tables through delta-rs
(``deltalake``), so it sees exactly the committed snapshot Spark sees. The SQL is written from the
definition in ``docs/tables.md``, not translated from ``jobs.gold``, so agreement is a check too.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from learntrack.settings import Settings

COURSE_DAILY_SQL = """
WITH win AS (
    SELECT * FROM silver WHERE event_date BETWEEN $lo AND $hi
), day_rows AS (
    SELECT * FROM win WHERE list_contains($days, event_date)
), quizzes AS (
    SELECT course_id, item_id, passing_score FROM items WHERE item_type = 'quiz'
), counts AS (
    SELECT d.event_date, d.course_id,
           count(DISTINCT d.student_id) AS active_learners, count(*) AS events,
           count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
           count(*) FILTER (WHERE event_type = 'video_play') AS video_plays,
           count(*) FILTER (WHERE event_type = 'video_complete') AS video_completions,
           count(*) FILTER (WHERE event_type = 'quiz_attempt') AS quiz_attempts,
           count(*) FILTER (WHERE event_type = 'assignment_submit') AS assignment_submissions,
           count(*) FILTER (WHERE event_type = 'login') AS logins,
           avg(score / max_score * 100) FILTER (WHERE event_type = 'quiz_attempt') AS avg_quiz_score_pct,
           avg((score >= q.passing_score)::DOUBLE)
               FILTER (WHERE event_type = 'quiz_attempt' AND q.passing_score IS NOT NULL) AS quiz_pass_rate
    FROM day_rows d LEFT JOIN quizzes q ON d.course_id = q.course_id AND d.item_id = q.item_id
    GROUP BY ALL
), paired AS (
    SELECT *,
           lead(event_type) OVER w AS next_type, lead(position_s) OVER w AS next_pos,
           lead(from_position_s) OVER w AS next_from, lead(event_time) OVER w AS next_time
    FROM win
    WHERE event_type IN ('video_play', 'video_pause', 'video_seek', 'video_complete')
    WINDOW w AS (PARTITION BY student_id, course_id, item_id ORDER BY event_time, event_id)
), watch AS (
    SELECT event_date, course_id, sum(coalesce(greatest(0.0, least(
               CASE WHEN next_type IN ('video_pause', 'video_complete') THEN next_pos
                    WHEN next_type = 'video_seek' THEN coalesce(next_from, position_s)
                    ELSE position_s END - position_s,
               $speed * (epoch_us(next_time) - epoch_us(event_time)) / 1e6,
               duration_s - position_s)), 0.0)) AS video_watch_seconds
    FROM paired
    WHERE event_type = 'video_play' AND list_contains($days, event_date)
    GROUP BY ALL
), first_seen AS (
    SELECT first_day AS event_date, course_id, count(*) AS new_learners
    FROM (SELECT student_id, course_id, min(event_time)::DATE AS first_day FROM silver GROUP BY ALL)
    WHERE list_contains($days, first_day)
    GROUP BY ALL
)
SELECT c.*, coalesce(w.video_watch_seconds, 0.0) AS video_watch_seconds,
       coalesce(f.new_learners, 0) AS new_learners
FROM counts c
LEFT JOIN watch w USING (event_date, course_id)
LEFT JOIN first_seen f USING (event_date, course_id)
"""

NUMBERS = ("active_learners", "events", "page_views", "video_plays", "video_completions", "quiz_attempts",
           "assignment_submissions", "logins", "video_watch_seconds", "avg_quiz_score_pct", "quiz_pass_rate",
           "new_learners")


def duckdb_course_daily(settings: Settings, days: list[dt.date]) -> list[dict[str, Any]]:
    import duckdb
    from jobs.gold import MAX_PLAYBACK_SPEED
    from lake.storage import open_delta
    from lake.tables import SILVER_ACTIVITIES, SILVER_COURSE_ITEMS

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("silver", open_delta(settings, SILVER_ACTIVITIES.path(settings.lake_uri)).to_pyarrow_dataset())
        con.register("items", open_delta(settings, SILVER_COURSE_ITEMS.path(settings.lake_uri)).to_pyarrow_dataset())
        cur = con.execute(COURSE_DAILY_SQL, {"lo": min(days), "hi": max(days) + dt.timedelta(days=1),
                                             "days": sorted(days), "speed": MAX_PLAYBACK_SPEED})
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        con.close()


def spark_course_daily(spark, settings: Settings, days: list[dt.date]) -> list[dict[str, Any]]:
    from jobs.gold import course_daily_engagement
    from lake.delta import read_table
    from lake.tables import GOLD_STUDENT_COURSE_PROGRESS, SILVER_ACTIVITIES, SILVER_COURSE_ITEMS

    lake = settings.lake_uri
    df = course_daily_engagement(read_table(spark, SILVER_ACTIVITIES, lake), read_table(spark, SILVER_COURSE_ITEMS, lake),
                                 read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, lake), days)
    return [r.asDict() for r in df.collect()]


def differences(a: list[dict], b: list[dict], tolerance: float = 1e-6) -> list[str]:
    """Rows or numbers on which the two results disagree (relative tolerance for sums of doubles)."""
    key = lambda r: (r["event_date"], r["course_id"])  # noqa: E731
    left, right = {key(r): r for r in a}, {key(r): r for r in b}
    out = [f"only in one result: {k}" for k in sorted(set(left) ^ set(right), key=str)]
    for k in sorted(set(left) & set(right), key=str):
        for col in NUMBERS:
            x, y = left[k].get(col), right[k].get(col)
            if (x is None) != (y is None) or (x is not None and abs(x - y) > tolerance * max(1.0, abs(x), abs(y))):
                out.append(f"{k} {col}: {x} != {y}")
    return out


def compare(spark, settings: Settings, days: list[dt.date], rounds: int = 2, echo=print) -> dict[str, Any]:
    """Time both engines (alternating, ``rounds`` each) on the same days; check they agree."""
    spark_s, duck_s = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        by_spark = spark_course_daily(spark, settings, days)
        spark_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        by_duck = duckdb_course_daily(settings, days)
        duck_s.append(time.perf_counter() - t)
    diff = differences(by_spark, by_duck)
    result = {"days": len(days), "rows": len(by_spark), "spark_s": [round(s, 2) for s in spark_s],
              "duckdb_s": [round(s, 2) for s in duck_s], "ratio_spark_over_duckdb": round(min(spark_s) / max(min(duck_s), 1e-9), 2),
              "differences": diff[:20], "agree": not diff}
    echo(f"  course daily engagement over {len(days)} days ({len(by_spark):,} rows): Spark {min(spark_s):.1f} s, "
         f"DuckDB {min(duck_s):.1f} s ({result['ratio_spark_over_duckdb']}x); "
         + ("results agree" if not diff else f"{len(diff)} DIFFERENCES, first: {diff[:3]}"))
    return result
