"""Gold: daily course engagement, student course progress and its completion funnel, multi-region
access and shared IPs/devices (and engagement, in ``jobs.engagement``).

A day is always recomputed whole from silver and written with replaceWhere on its partition, and
per-student tables are recomputed for the students a batch touched and MERGEd on their keys, so
recomputing, in any order and any number of times, yields the same rows. The recomputed days are
the days a batch put rows in plus the day before each: a video pause or a login arriving late on
day d can change what a play or a login of day d-1 is paired with.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from learntrack.intervals import Interval
from lake.delta import ensure_table, read_table, replace_partitions, versions
from jobs.engagement import build_engagement
from jobs.maintenance import silver_horizon
from lake.tables import (GOLD_COMPLETION_FUNNEL, GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_SHARED_ACCESS,
                         GOLD_STUDENT_COURSE_PROGRESS, GOLD_TABLES, SILVER_ACTIVITIES, SILVER_COURSE_ITEMS,
                         SILVER_STUDENTS)
from learntrack import faults
from learntrack.settings import Settings

#: Playback faster than this many seconds of video per second of wall clock is not believed.
MAX_PLAYBACK_SPEED = 2.0


def _dates(values: Iterable) -> list[dt.date]:
    return sorted({v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)) for v in values})


def days_to_recompute(affected: Iterable) -> list[dt.date]:
    days = _dates(affected)
    return sorted(set(days) | {d - dt.timedelta(days=1) for d in days})


def video_watch(silver_df):
    """Seconds watched per play event: from the play's position to the next video event of the same
    student and video (a pause or completion position, or a seek's from-position), never more than
    the rest of the video or MAX_PLAYBACK_SPEED x the wall-clock time between the two events."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    video = silver_df.where(F.col("event_type").isin("video_play", "video_pause", "video_seek", "video_complete"))
    nxt = Window.partitionBy("student_id", "course_id", "item_id").orderBy("event_time", "event_id")
    paired = (video.withColumn("next_type", F.lead("event_type").over(nxt))
              .withColumn("next_pos", F.lead("position_s").over(nxt))
              .withColumn("next_from", F.lead("from_position_s").over(nxt))
              .withColumn("next_time", F.lead("event_time").over(nxt))
              .where(F.col("event_type") == "video_play"))
    end = (F.when(F.col("next_type").isin("video_pause", "video_complete"), F.col("next_pos"))
           .when(F.col("next_type") == "video_seek", F.coalesce("next_from", "position_s"))
           .otherwise(F.col("position_s")))
    elapsed = F.col("next_time").cast("double") - F.col("event_time").cast("double")
    watched = F.greatest(F.lit(0.0), F.least(end - F.col("position_s"), F.lit(MAX_PLAYBACK_SPEED) * elapsed,
                                             F.col("duration_s") - F.col("position_s")))
    return paired.select("event_date", "course_id", "student_id", "item_id", "event_id",
                         F.coalesce(watched, F.lit(0.0)).alias("watch_seconds"))


def course_daily_engagement(silver_df, items_df, progress_df, days: list[dt.date]):
    """Per course and day; new learners are the pairs whose first event (in the progress table,
    which holds each pair's first event time) falls on the day."""
    from pyspark.sql import functions as F

    def n(event_type: str):
        return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0)).cast("bigint")

    lo, hi = min(days), max(days) + dt.timedelta(days=1)  # plays near midnight pair with the next day
    window = silver_df.where(F.col("event_date").between(lo, hi))
    day_rows = window.where(F.col("event_date").isin(days))
    # Item ids are per course (two courses may both have a ``q1``): join on both.
    quizzes = items_df.where(F.col("item_type") == "quiz").select(
        F.col("course_id").alias("quiz_course_id"), F.col("item_id").alias("quiz_id"),
        F.col("passing_score").alias("quiz_passing_score"))
    with_pass = day_rows.join(F.broadcast(quizzes), (day_rows.course_id == quizzes.quiz_course_id)
                              & (day_rows.item_id == quizzes.quiz_id), "left")
    counts = (with_pass.groupBy("event_date", "course_id")
              .agg(F.countDistinct("student_id").alias("active_learners"), F.count(F.lit(1)).alias("events"),
                   n("page_view").alias("page_views"), n("video_play").alias("video_plays"),
                   n("video_complete").alias("video_completions"), n("quiz_attempt").alias("quiz_attempts"),
                   n("assignment_submit").alias("assignment_submissions"), n("login").alias("logins"),
                   F.avg(F.when(F.col("event_type") == "quiz_attempt",
                                F.col("score") / F.col("max_score") * 100)).alias("avg_quiz_score_pct"),
                   F.avg(F.when((F.col("event_type") == "quiz_attempt") & F.col("quiz_passing_score").isNotNull(),
                                (F.col("score") >= F.col("quiz_passing_score")).cast("double")))
                   .alias("quiz_pass_rate")))
    watch = (video_watch(window).where(F.col("event_date").isin(days))
             .groupBy("event_date", "course_id").agg(F.sum("watch_seconds").alias("video_watch_seconds")))
    first_seen = (progress_df.select("course_id", F.to_date("first_event_time").alias("event_date"))
                  .where(F.col("event_date").isin(days))
                  .groupBy("event_date", "course_id").agg(F.count(F.lit(1)).alias("new_learners")))
    return (counts.join(watch, ["event_date", "course_id"], "left").join(first_seen, ["event_date", "course_id"], "left")
            .fillna({"video_watch_seconds": 0.0, "new_learners": 0}))


def progress_of_events(rows, items_df):
    """The progress state that ``rows`` alone imply, per (student, course)."""
    from pyspark.sql import functions as F

    quizzes = items_df.where(F.col("item_type") == "quiz").select(
        F.col("course_id").alias("q_course"), F.col("item_id").alias("q_item"), "passing_score")
    passed = (rows.where(F.col("event_type") == "quiz_attempt")
              .join(F.broadcast(quizzes), (F.col("course_id") == F.col("q_course")) & (F.col("item_id") == F.col("q_item")))
              .where(F.col("score") >= F.col("passing_score"))
              .groupBy("student_id", "course_id").agg(F.array_sort(F.collect_set("item_id")).alias("passed_quiz_ids")))
    video = rows.where(F.col("event_type").isin("video_play", "video_pause", "video_seek", "video_complete"))
    resume = (video.groupBy("student_id", "course_id", "item_id")
              .agg(F.max_by("position_s", F.struct("event_time", "position_s")).alias("pos"),
                   F.max("event_time").alias("at"))
              .groupBy("student_id", "course_id")
              .agg(F.map_from_entries(F.collect_list(F.struct("item_id", "pos"))).alias("resume_positions"),
                   F.map_from_entries(F.collect_list(F.struct("item_id", "at"))).alias("resume_at")))
    base = (rows.groupBy("student_id", "course_id")
            .agg(F.min("event_time").alias("first_event_time"), F.max("event_time").alias("last_accessed"),
                 F.array_sort(F.collect_set(F.when(F.col("event_type") == "video_complete", F.col("item_id"))))
                 .alias("completed_video_ids")))
    return base.join(passed, ["student_id", "course_id"], "left").join(resume, ["student_id", "course_id"], "left")


def fold_progress(stored_df, new_df, items_df):
    """Fold new progress state into the stored rows: min first time, max last access, union of
    completed videos and passed quizzes, per video the position recorded latest (ties: the larger).
    Every rule is commutative and idempotent, so batches can be applied in any order, or twice."""
    from pyspark.sql import functions as F

    empty_ids = F.array().cast("array<string>")
    keys = ["student_id", "course_id"]
    old = stored_df.select(*keys, *[F.col(c).alias(f"o_{c}") for c in (
        "first_event_time", "last_accessed", "completed_video_ids", "passed_quiz_ids", "resume_positions", "resume_at")])
    j = new_df.join(old, keys, "left")

    def sorted_map(expr: str):
        return F.expr(f"map_from_entries(array_sort(map_entries({expr})))")

    o_at, n_at = "coalesce(o_resume_at, map())", "coalesce(resume_at, map())"
    o_pos, n_pos = "coalesce(o_resume_positions, map())", "coalesce(resume_positions, map())"
    positions = (f"map_zip_with({o_pos}, {n_pos}, (k, a, b) -> CASE WHEN b IS NULL THEN a WHEN a IS NULL THEN b "
                 f"WHEN try_element_at({n_at}, k) > try_element_at({o_at}, k) THEN b "
                 f"WHEN try_element_at({n_at}, k) < try_element_at({o_at}, k) THEN a ELSE greatest(a, b) END)")
    folded = j.select(
        *keys,
        F.least("first_event_time", "o_first_event_time").alias("first_event_time"),
        F.greatest("last_accessed", "o_last_accessed").alias("last_accessed"),
        F.array_sort(F.array_union(F.coalesce("o_completed_video_ids", empty_ids),
                                   F.coalesce("completed_video_ids", empty_ids))).alias("completed_video_ids"),
        F.array_sort(F.array_union(F.coalesce("o_passed_quiz_ids", empty_ids),
                                   F.coalesce("passed_quiz_ids", empty_ids))).alias("passed_quiz_ids"),
        sorted_map(positions).cast("map<string,double>").alias("resume_positions"),
        sorted_map(f"map_zip_with({o_at}, {n_at}, (k, a, b) -> greatest(a, b))").cast("map<string,timestamp>")
        .alias("resume_at"),
        F.when(F.col("first_event_time") < F.col("o_first_event_time"), F.to_date("o_first_event_time"))
        .alias("_moved_first_date"))
    videos_total = (items_df.where(F.col("item_type") == "video").groupBy("course_id")
                    .agg(F.count(F.lit(1)).alias("videos_total")))
    out = folded.join(F.broadcast(videos_total), "course_id", "left").fillna({"videos_total": 0})
    done = F.size("completed_video_ids")
    completion = F.when(F.col("videos_total") > 0,
                        F.least(F.lit(100.0), done / F.col("videos_total") * 100)).otherwise(0.0)
    status = (F.when((F.col("videos_total") > 0) & (done >= F.col("videos_total")), "completed")
              .when(F.size("resume_positions") > 0, "in_progress").otherwise("not_started"))
    return out.select(
        "student_id", "course_id", F.col("videos_total").cast("bigint").alias("videos_total"),
        done.cast("bigint").alias("videos_completed"), completion.alias("completion_pct"), status.alias("status"),
        F.size("passed_quiz_ids").cast("bigint").alias("quizzes_passed"), "resume_positions", "first_event_time",
        "last_accessed", "completed_video_ids", "passed_quiz_ids", "resume_at", "_moved_first_date")


def merge_progress(spark, lake: str, batch_rows, items_df) -> list[dt.date]:
    """Fold the batch's events into student_course_progress; return the days whose new-learner
    counts changed because a late event moved a pair's first day earlier."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = ensure_table(spark, GOLD_STUDENT_COURSE_PROGRESS, lake)
    new = progress_of_events(batch_rows, items_df)
    stored = read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, lake).join(new.select("student_id", "course_id"),
                                                         ["student_id", "course_id"], "left_semi")
    folded = fold_progress(stored, new, items_df).persist()
    try:
        moved = [r[0] for r in folded.where(F.col("_moved_first_date").isNotNull())
                 .select("_moved_first_date").distinct().collect()]
        (DeltaTable.forPath(spark, path).alias("t")
         .merge(folded.drop("_moved_first_date").alias("s"), "t.student_id = s.student_id AND t.course_id = s.course_id")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    finally:
        folded.unpersist()
    return moved


def multi_region_access(silver_df, days: list[dt.date], window_minutes: int):
    """Pairs of logins by one student from two regions, the second within the window of the first
    (ties in time ordered by event id), the first falling on one of ``days``."""
    from pyspark.sql import functions as F

    lo, hi = min(days), max(days) + dt.timedelta(days=1)
    logins = silver_df.where((F.col("event_type") == "login") & F.col("event_date").between(lo, hi)).select(
        "student_id", "event_id", "region", "event_time", "event_date", "ip")
    a, b = logins.alias("a"), logins.alias("b")
    later = (F.col("b.event_time") > F.col("a.event_time")) | (
        (F.col("b.event_time") == F.col("a.event_time")) & (F.col("b.event_id") > F.col("a.event_id")))
    within = F.col("b.event_time") <= F.col("a.event_time") + F.expr(f"INTERVAL {int(window_minutes)} MINUTES")
    pairs = a.join(b, (F.col("a.student_id") == F.col("b.student_id")) & (F.col("a.region") != F.col("b.region"))
                   & later & within)
    return pairs.where(F.col("a.event_date").isin(days)).select(
        F.col("a.event_date").alias("event_date"), F.col("a.student_id").alias("student_id"),
        F.col("a.event_id").alias("first_event_id"), F.col("a.region").alias("first_region"),
        F.col("a.event_time").alias("first_at"), F.col("b.event_id").alias("second_event_id"),
        F.col("b.region").alias("second_region"), F.col("b.event_time").alias("second_at"),
        ((F.col("b.event_time").cast("double") - F.col("a.event_time").cast("double")) / 60).alias("gap_minutes"),
        F.col("a.ip").alias("first_ip"), F.col("b.ip").alias("second_ip"))


def shared_access(silver_df, days: list[dt.date], min_students: int, kinds: tuple[str, ...] = ("ip",)):
    """IPs (and devices, when ``kinds`` names them) that at least ``min_students`` distinct students
    logged in from on one day."""
    from pyspark.sql import functions as F

    logins = silver_df.where((F.col("event_type") == "login") & F.col("event_date").isin(days))
    per_kind = [logins.where(F.col(kind).isNotNull()).groupBy("event_date", F.col(kind).alias("value"))
                .agg(F.array_sort(F.collect_set("student_id")).alias("student_ids"))
                .select("event_date", F.lit(kind).alias("kind"), "value",
                        F.size("student_ids").cast("bigint").alias("students"), "student_ids")
                for kind in kinds]
    out = per_kind[0]
    for more in per_kind[1:]:
        out = out.unionByName(more)
    return out.where(F.col("students") >= min_students)


def completion_funnel(progress_df, students_df, as_of: dt.date):
    """Per course: enrolled (profile, or any event) -> started (a video event) -> 50% -> completed."""
    from pyspark.sql import functions as F

    enrolled = (students_df.select("student_id", F.explode_outer("enrolled_courses").alias("course_id"))
                .where(F.col("course_id").isNotNull())
                .unionByName(progress_df.select("student_id", "course_id")).distinct())
    pairs = enrolled.join(progress_df.select("student_id", "course_id", "status", "completion_pct"),
                          ["student_id", "course_id"], "left")

    def n(cond):
        return F.sum(F.when(cond, 1).otherwise(0)).cast("bigint")

    return pairs.groupBy("course_id").agg(
        F.count(F.lit(1)).alias("enrolled"),
        n(F.col("status").isin("in_progress", "completed")).alias("started"),
        n(F.col("completion_pct") >= 50).alias("half_completed"),
        n(F.col("status") == "completed").alias("completed"),
    ).select(F.lit(as_of).alias("as_of_date"), "*")


def write_funnel_snapshot(spark, lake: str, as_of: dt.date) -> list[dt.date]:
    """The funnel of the current progress state, as one snapshot stamped with the newest as-of day
    any run reached: progress is current state, so an older day's run cannot know that day's
    funnel, and a table of one current snapshot is the same whatever order the days ran in."""
    held = [r[0] for r in read_table(spark, GOLD_COMPLETION_FUNNEL, lake).select("as_of_date").distinct().collect()]
    stamp = max(held + [as_of])
    funnel = completion_funnel(read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, lake),
                               read_table(spark, SILVER_STUDENTS, lake), stamp)
    replace_partitions(funnel, GOLD_COMPLETION_FUNNEL, lake, "as_of_date", sorted(set(held) | {stamp}))
    return [stamp]


def build_gold(spark, settings: Settings, interval: Interval) -> dict[str, Any]:
    """Gold for every silver batch gold has not completed, up to the run's own (ADR 17). Reads
    those batches' rows and bounded windows of silver (the recomputed days and their neighbours),
    never the whole history."""
    from lake.ledger import window

    lake = settings.lake_uri
    versions_before = versions(spark, settings, GOLD_TABLES)
    silver = read_table(spark, SILVER_ACTIVITIES, lake)
    items = read_table(spark, SILVER_COURSE_ITEMS, lake)
    batch_rows = silver.where(window(settings, "gold", interval.batch_id).batch_filter())
    seen = batch_rows.groupBy("batch_id", "event_date").count().collect()
    batches = sorted({r["batch_id"] for r in seen} | {interval.batch_id})
    # The tables below are independent of each other but for the order progress -> recomputed days
    # -> course daily; each write is mostly fixed cost on a daily run (planning, Delta log, small
    # tasks), so they are submitted side by side and overlap on the cluster's cores. Every write is
    # still a whole-day replace or a keyed MERGE: the outcome does not depend on their order.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gold") as pool:
        engagement = pool.submit(build_engagement, spark, settings, interval.as_of_date, batch_rows)
        moved_first_days = merge_progress(spark, lake, batch_rows, items)
        funnel = pool.submit(write_funnel_snapshot, spark, lake, interval.as_of_date)
        days = days_to_recompute([r["event_date"] for r in seen] + moved_first_days)
        # A day retention has emptied in silver is final in gold: recomputing it from what is left
        # would replace the day with almost nothing (issue 11, finding 2). Silver quarantines such
        # late events already; this guards a batch processed after a later retention run.
        horizon = silver_horizon(settings)
        beyond = [d for d in days if horizon and d < horizon]
        days = [d for d in days if d not in beyond]
        result: dict[str, Any] = {
            "recomputed_dates": [d.isoformat() for d in days], "versions_before": versions_before,
            "days_beyond_retention": [d.isoformat() for d in beyond], "input_batches": batches,
            "backlog_batches": sum(b < interval.batch_id for b in batches), "rows_in": sum(r["count"] for r in seen)}
        if days:
            multi_region = multi_region_access(silver, days, settings.multi_region_window_minutes)
            shared = shared_access(silver, days, settings.shared_access_min_students,
                                   settings.shared_access_kind_list)
            access = [pool.submit(replace_partitions, multi_region, GOLD_MULTI_REGION, lake, "event_date", days),
                      pool.submit(replace_partitions, shared, GOLD_SHARED_ACCESS, lake, "event_date", days)]
            progress = read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, lake)
            replace_partitions(course_daily_engagement(silver, items, progress, days), GOLD_COURSE_DAILY, lake,
                               "event_date", days)
            faults.point(settings, "gold.course_daily_written")
            for written in access:
                written.result()
        result["funnel_dates"] = [d.isoformat() for d in funnel.result()]
        result.update(engagement.result())
    result["as_of_date"] = interval.as_of_date.isoformat()
    return result
