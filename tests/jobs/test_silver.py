"""Silver on hand-made bronze rows: valid, malformed and duplicate documents; counts reconcile."""

import datetime as dt

import pytest

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
T = dt.datetime(2026, 1, 9, 12, 0, tzinfo=UTC)


def bronze_rows(docs, batch_id):
    from bson import json_util
    from bson.json_util import RELAXED_JSON_OPTIONS

    rows = []
    for i, d in enumerate(docs):
        written = T + dt.timedelta(seconds=i)  # aware: Spark reads naive datetimes as host-local time
        rows.append((str(d.get("_id", f"oid{i}")), json_util.dumps(d, json_options=RELAXED_JSON_OPTIONS),
                     written, batch_id, written, written.date()))
    return rows


def ev(eid, **kw):
    d = {"_id": eid, "event_id": eid, "student_id": "s1", "course_id": "c1", "event_type": "video_pause",
         "item_id": "v1", "event_time": T - dt.timedelta(minutes=5), "position_s": 12.5, "duration_s": 100.0}
    d.update(kw)
    return d


def test_quarantine_rules_dedup_and_reconciliation(spark, fresh_lake):
    from learntrack.intervals import Interval
    from lake.delta import ensure_table, read_table
    from jobs.silver import build_silver
    from lake.tables import BRONZE_ACTIVITIES, QUARANTINE, SILVER_ACTIVITIES

    interval = Interval.for_day(T.date())
    docs = [
        ev("ok1"),
        ev("ok2", event_type="quiz_attempt", score=7.0, max_score=10.0, position_s=None, duration_s=None),
        ev("ok3", event_type="login", region="eu-west", event_time=T - dt.timedelta(days=2)),  # late event
        {k: v for k, v in ev("noid").items() if k != "event_id"},
        ev("badtype", event_type="teleport"),
        ev("badpos", position_s=150.0),
        ev("strpos", position_s="12"),
        ev("future", event_time=T + dt.timedelta(days=3)),
        ev("badscore", event_type="quiz_attempt", score=12.0, max_score=10.0),
        ev("baddate", event_time="2026-01-09"),
        ev("intstudent", student_id=42),
        ev("zwsp", student_id="s\u200b1"),
        ev("huge", user_agent="x" * 20_000),
    ]
    dup = dict(docs[0], _id="ok1-retry")  # same event id written twice
    path = ensure_table(spark, BRONZE_ACTIVITIES, fresh_lake.lake_uri)
    spark.createDataFrame(bronze_rows(docs + [dup], interval.batch_id),
                          BRONZE_ACTIVITIES.spark_schema()).write.format("delta").mode("append").save(path)

    want_quarantine = {  # the rule each malformed document breaks, by its _id
        "noid": "event_id missing or not a short printable string",
        "badtype": "unknown event_type",
        "badpos": "video position outside [0, duration]",
        "strpos": "video event without numeric position_s/duration_s",
        "future": "event_time in the future",
        "badscore": "quiz score missing or outside [0, max_score]",
        "baddate": "event_time missing or not a date",
        "intstudent": "student_id missing or not a short printable string",
        "zwsp": "student_id missing or not a short printable string",
        "huge": "document larger than 16 KiB",
    }
    result = build_silver(spark, fresh_lake, interval)
    assert result["rows_in"] == 14
    # The counts from the input (not from each other): the well-formed rows, each event id kept
    # once, the rest duplicates; and the reported counts are what the tables hold.
    well_formed = [d for d in docs + [dup] if d["_id"] not in want_quarantine]
    distinct_ids = {d["event_id"] for d in well_formed}
    assert (result["inserted"], result["duplicates"], result["quarantined"]) == \
        (len(distinct_ids), len(well_formed) - len(distinct_ids), len(want_quarantine))
    stored = (read_table(spark, BRONZE_ACTIVITIES, fresh_lake.lake_uri)
              .where(f"batch_id = '{interval.batch_id}'").count(),
              read_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri).count(),
              read_table(spark, QUARANTINE, fresh_lake.lake_uri).count())
    assert (result["rows_in"], result["inserted"], result["quarantined"]) == stored
    assert (result["inserted"], result["duplicates"], result["quarantined"]) == (3, 1, 10)
    assert result["affected_dates"] == ["2026-01-07", "2026-01-09"]

    q = {r["source_id"]: r["rule"] for r in read_table(spark, QUARANTINE, fresh_lake.lake_uri).collect()}
    assert q == want_quarantine
    silver = {r["event_id"]: r for r in read_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri).collect()}
    assert set(silver) == {"ok1", "ok2", "ok3"}
    assert silver["ok1"]["position_s"] == 12.5 and silver["ok2"]["score"] == 7.0
    assert silver["ok3"]["event_date"] == dt.date(2026, 1, 7)

    again = build_silver(spark, fresh_lake, interval)
    assert (again["inserted"], again["duplicates"], again["quarantined"]) == (0, 4, 10)
    assert read_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri).count() == 3
    assert read_table(spark, QUARANTINE, fresh_lake.lake_uri).count() == 10

    # The silver gate's reconciliation, from what is stored: it holds, and fails once a kept row is lost.
    from delta.tables import DeltaTable

    from expectations.gate import GateFailed, validate
    from expectations.gates import SILVER_RECONCILIATION_ZERO, silver_reconciliation
    from expectations.suites import reconciliation_suite

    suite = reconciliation_suite("silver.activities.reconciliation",
                                 [("rows_in", "accounted"), ("quarantined", "invalid_rows")],
                                 list(SILVER_RECONCILIATION_ZERO))
    days = [dt.date(2026, 1, 7), dt.date(2026, 1, 9)]
    counts = silver_reconciliation(spark, fresh_lake, [interval.batch_id], days)
    assert counts.first().asDict() == {"rows_in": 14, "accounted": 14, "kept": 3, "quarantined": 10,
                                       "invalid_rows": 10, "duplicates": 1, "valid_ids_missing_from_silver": 0,
                                       "event_ids_kept_twice": 0, "kept_outside_affected_days": 0,
                                       "bronze_batches_not_taken_in": 0, "rows_judged_again": 14,
                                       "placed_against_the_rules": 0}
    validate(counts, suite, fresh_lake, interval.batch_id)
    # Finding 6: "accounted" used to be kept + quarantined + (valid rows - kept), which cancels kept:
    # a lost insert still balanced. Now the duplicates come from bronze and the other batches.
    DeltaTable.forPath(spark, ensure_table(spark, SILVER_ACTIVITIES, fresh_lake.lake_uri)).delete("event_id = 'ok2'")
    lost = silver_reconciliation(spark, fresh_lake, [interval.batch_id], days).first()
    assert (lost["rows_in"], lost["accounted"], lost["valid_ids_missing_from_silver"]) == (14, 13, 1)
    DeltaTable.forPath(spark, ensure_table(spark, QUARANTINE, fresh_lake.lake_uri)).delete("source_id = 'huge'")
    with pytest.raises(GateFailed, match="valid_ids_missing_from_silver") as failed:
        validate(silver_reconciliation(spark, fresh_lake, [interval.batch_id], days), suite, fresh_lake,
                 interval.batch_id)
    assert "ExpectColumnPairValuesToBeEqual" in str(failed.value) or "column_pair" in str(failed.value)
    # The lost quarantine row now looks kept-or-duplicate by its place; judged again, the rules refuse it.
    counts = silver_reconciliation(spark, fresh_lake, [interval.batch_id], days).first()
    assert (counts["accounted"], counts["quarantined"], counts["invalid_rows"], counts["rows_judged_again"],
            counts["placed_against_the_rules"], counts["valid_ids_missing_from_silver"]) == (12, 9, 9, 14, 1, 2)


def test_the_silver_gate_judges_a_large_batch_again_on_a_fixed_sample(spark, fresh_lake):
    """Beyond ``silver_gate_judge_rows`` the rules are applied again to a sample: the same rows on
    every run, and a row quarantined with the wrong rule is found when it is in the sample."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from expectations.gates import silver_reconciliation
    from jobs.silver import build_silver
    from lake.delta import ensure_table, read_table
    from lake.tables import BRONZE_ACTIVITIES, QUARANTINE
    from learntrack.intervals import Interval

    interval = Interval.for_day(T.date())
    docs = [ev(f"ok{i}") for i in range(30)] + [ev(f"bad{i}", position_s=500.0) for i in range(30)]
    path = ensure_table(spark, BRONZE_ACTIVITIES, fresh_lake.lake_uri)
    spark.createDataFrame(bronze_rows(docs, interval.batch_id),
                          BRONZE_ACTIVITIES.spark_schema()).write.format("delta").mode("append").save(path)
    result = build_silver(spark, fresh_lake, interval)
    days = [dt.date.fromisoformat(d) for d in result["affected_dates"]]
    sampled = fresh_lake.with_overrides(silver_gate_judge_rows=20)

    def counts(settings):
        return silver_reconciliation(spark, settings, [interval.batch_id], days).first()

    full, first, again = counts(fresh_lake), counts(sampled), counts(sampled)
    assert (full["rows_judged_again"], full["placed_against_the_rules"]) == (60, 0)
    assert 5 <= first["rows_judged_again"] < 60 and first["placed_against_the_rules"] == 0
    assert again["rows_judged_again"] == first["rows_judged_again"]
    # Which rows the sample holds, computed here as the gate states it: key hash mod ceil(60 / 20).
    in_sample = {r["source_id"] for r in read_table(spark, BRONZE_ACTIVITIES, fresh_lake.lake_uri)
                 .where(F.pmod(F.xxhash64("source_id", "source_updated_at"), F.lit(3)) == 0).collect()}
    assert len(in_sample) == first["rows_judged_again"]
    # Quarantined with another rule than the first it breaks: a sampled row is found, an unsampled one is not.
    wrong_in, wrong_out = sorted(in_sample & {f"bad{i}" for i in range(30)})[0], \
        sorted({f"bad{i}" for i in range(30)} - in_sample)[0]
    quarantine = DeltaTable.forPath(spark, ensure_table(spark, QUARANTINE, fresh_lake.lake_uri))
    quarantine.update(F.col("source_id") == wrong_out, {"rule": F.lit("unknown event_type")})
    assert counts(sampled)["placed_against_the_rules"] == 0
    assert counts(fresh_lake)["placed_against_the_rules"] == 1
    quarantine.update(F.col("source_id") == wrong_in, {"rule": F.lit("unknown event_type")})
    assert counts(sampled)["placed_against_the_rules"] == 1
    assert counts(fresh_lake)["placed_against_the_rules"] == 2


def test_student_history_keeps_every_profile_version_in_any_batch_order(spark, fresh_lake):
    from bson import json_util

    from learntrack.intervals import Interval
    from lake.delta import ensure_table, read_table
    from jobs.silver import build_student_dimension
    from lake.tables import BRONZE_STUDENTS, SILVER_STUDENTS, SILVER_STUDENTS_HISTORY

    def version(day, hour, region):
        at = dt.datetime(2026, 1, day, hour)
        doc = {"_id": "s1", "name": "Ada", "home_region": region, "subscription": "free", "updated_at": at}
        return ("s1", json_util.dumps(doc), at, Interval.for_day(dt.date(2026, 1, day)).batch_id, at, at.date())

    path = ensure_table(spark, BRONZE_STUDENTS, fresh_lake.lake_uri)
    rows = [version(5, 9, "eu-west"), version(5, 17, "us-east"), version(6, 8, "ap-south")]
    spark.createDataFrame(rows, BRONZE_STUDENTS.spark_schema()).write.format("delta").mode("append").save(path)
    for day in (6, 5, 6):  # the later batch first, then the earlier one, then the later again
        build_student_dimension(spark, fresh_lake, Interval.for_day(dt.date(2026, 1, day)))
    history = sorted((r["valid_from"], r["valid_to"], r["is_current"], r["home_region"])
                     for r in read_table(spark, SILVER_STUDENTS_HISTORY, fresh_lake.lake_uri).collect())
    t = [dt.datetime(2026, 1, 5, 9), dt.datetime(2026, 1, 5, 17), dt.datetime(2026, 1, 6, 8)]
    assert history == [(t[0], t[1], False, "eu-west"), (t[1], t[2], False, "us-east"), (t[2], None, True, "ap-south")]
    current = read_table(spark, SILVER_STUDENTS, fresh_lake.lake_uri).collect()
    assert [(r["student_id"], r["home_region"]) for r in current] == [("s1", "ap-south")]
