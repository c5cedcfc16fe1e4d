"""A gate's verdict must not depend on the engine: GX's pandas engine (small frames, collected once)
and its Spark engine give the same result for every expectation, on clean and on broken rows."""

import datetime as dt

import pytest

pytestmark = [pytest.mark.spark]

UTC = dt.timezone.utc
D = dt.date(2026, 3, 1)


def course_daily_rows():
    from lake.tables import GOLD_COURSE_DAILY

    good = {"event_date": D, "course_id": "c1", "active_learners": 2, "events": 5, "page_views": 1, "video_plays": 1,
            "video_completions": 0, "quiz_attempts": 2, "assignment_submissions": 0, "logins": 1,
            "video_watch_seconds": 12.5, "avg_quiz_score_pct": 60.0, "quiz_pass_rate": 0.5, "new_learners": 1}
    broken = [dict(good, course_id="c2", events=1),  # fewer events than learners
              dict(good, course_id="c3", quiz_pass_rate=1.5, avg_quiz_score_pct=None),  # rate beyond 1
              dict(good, course_id="c1"),  # the key twice
              dict(good, course_id=None, new_learners=3)]  # a null key, more new learners than active
    return GOLD_COURSE_DAILY, [good], [good] + broken


def progress_rows():
    from lake.tables import GOLD_STUDENT_COURSE_PROGRESS

    t0 = dt.datetime(2026, 3, 1, 9, tzinfo=UTC)
    filler = {"STRING": "x", "BIGINT": 0, "INT": 0, "DOUBLE": 0.0, "TIMESTAMP": t0, "DATE": D}
    good = {c.name: None if c.nullable else filler.get(c.type, [] if c.type.startswith("ARRAY") else {})
            for c in GOLD_STUDENT_COURSE_PROGRESS.columns} | {"student_id": "s1", "course_id": "c1", "first_event_time": t0,
                                        "last_accessed": t0 + dt.timedelta(hours=1), "completion_pct": 50.0,
                                        "status": "in_progress"}
    broken = [dict(good, student_id="s2", last_accessed=t0 - dt.timedelta(hours=1)),  # before the first event
              dict(good, student_id="s3", status="paused", completion_pct=101.0)]
    return GOLD_STUDENT_COURSE_PROGRESS, [good], [good] + broken


def verdicts(result):
    return [(r.expectation_config.type, r.success, r.result.get("unexpected_count"), r.result.get("observed_value"))
            for r in result.results]


@pytest.mark.parametrize("rows_of, suite_of", [
    (course_daily_rows, "gold_course_daily_suite"),
    (progress_rows, "gold_student_course_progress_suite"),
])
def test_pandas_and_spark_engines_give_the_same_verdicts(spark, rows_of, suite_of):
    from expectations import suites
    from expectations.gate import run_suite

    table, clean, broken = rows_of()
    names = set(table.column_names)
    for rows in (clean, broken):
        df = spark.createDataFrame([{k: v for k, v in r.items() if k in names} for r in rows],
                                   table.spark_schema().__class__([f.__class__(f.name, f.dataType, True)
                                                                   for f in table.spark_schema()]))
        df = df.select(*table.column_names)
        on_pandas, engine_p = run_suite(df, getattr(suites, suite_of)(), pandas_max_rows=1000)
        on_spark, engine_s = run_suite(df, getattr(suites, suite_of)(), pandas_max_rows=0)
        assert (engine_p, engine_s) == ("pandas", "spark")
        if rows is clean:  # a suite that passes on Spark carries its verdicts only (ADR 40)
            assert [v[:2] for v in verdicts(on_pandas)] == [v[:2] for v in verdicts(on_spark)]
            assert all(r.success for r in on_spark.results)
        else:  # one that fails is validated again for its counts: the same as pandas's, row for row
            assert verdicts(on_pandas) == verdicts(on_spark)
            assert any(v[2] for v in verdicts(on_spark))
        assert on_pandas.success is (rows is clean)  # the broken rows are caught, by both


def test_a_frame_beyond_the_limit_is_validated_by_spark(spark):
    from expectations import suites
    from expectations.gate import run_suite

    df = spark.range(5).selectExpr("0L AS missing_from_bronze", "id AS in_mongo", "id AS in_bronze")
    assert run_suite(df, suites.bronze_completeness_suite(_bronze(), True), pandas_max_rows=4)[1] == "spark"
    assert run_suite(df, suites.bronze_completeness_suite(_bronze(), True), pandas_max_rows=5)[1] == "pandas"
    # A caller that knows the frame is larger than the limit: Spark, without collecting a head first.
    collected = []
    original = type(df).toPandas
    type(df).toPandas = lambda self: collected.append(self) or original(self)
    try:
        result, engine = run_suite(df, suites.bronze_completeness_suite(_bronze(), True), pandas_max_rows=5,
                                   at_least_rows=6)
        assert (engine, result.success, collected) == ("spark", True, [])
        assert run_suite(df, suites.bronze_completeness_suite(_bronze(), True), pandas_max_rows=5,
                         at_least_rows=5)[1] == "pandas" and len(collected) == 1
    finally:
        type(df).toPandas = original


def _bronze():
    from lake.tables import BRONZE_ACTIVITIES

    return BRONZE_ACTIVITIES


def test_validate_all_runs_every_check_and_raises_the_first_failure_in_order(spark, fresh_lake):
    """Suites run side by side (``GATE_THREADS``); the verdict and the results must be those of
    running them one after the other: every check runs, results come back in the checks' order, and
    the first failing check (by order, not by finishing time) is the one raised, naming the others."""
    import threading

    from expectations import suites
    from expectations.gate import GateFailed, validate_all

    threads = set()

    def counts(missing: int):
        def build():  # a frame built on the validating thread, as the reconciliations are
            threads.add(threading.current_thread().name)
            return spark.createDataFrame([(missing, 7, 7 - missing)], "missing_from_bronze long, in_mongo long, "
                                                                      "in_bronze long")
        return build

    ok, bad = suites.bronze_completeness_suite(_bronze(), True), suites.reconciliation_suite(
        "counts.equal", [("in_mongo", "in_bronze")], ["missing_from_bronze"])
    frame = spark.createDataFrame([(0, 7, 7)], "missing_from_bronze long, in_mongo long, in_bronze long")
    results = validate_all([(counts(0), ok), (frame, bad), (counts(0), ok)], fresh_lake, "b1")
    assert [r["suite"] for r in results] == [ok.name, bad.name, ok.name]
    assert all(r["passed"] == r["evaluated"] > 0 for r in results)
    assert threads and all(t.startswith("gate") for t in threads)

    built = []
    late_failure = suites.reconciliation_suite("late.failure", [("in_mongo", "in_bronze")])

    def recorded(missing):
        build = counts(missing)
        return lambda: built.append(missing) or build()

    with pytest.raises(GateFailed) as failed:
        validate_all([(recorded(0), ok), (recorded(2), bad), (recorded(3), late_failure), (recorded(0), ok)],
                     fresh_lake, "b1")
    assert failed.value.suite == bad.name  # the first failing check in order
    assert any("late.failure" in f for f in failed.value.failures)  # the other failure is named
    assert sorted(built) == [0, 0, 2, 3]  # every check ran


def test_a_suite_on_spark_is_validated_for_verdicts_and_again_for_counts_only_when_it_fails(spark, fresh_lake):
    """ADR 40: GX's default result format runs a Spark job per expectation for a sample of unexpected
    values even when nothing is unexpected; a passing suite is validated once, verdicts only. A
    failing one names its unexpected counts in the failure and the report all the same."""
    from great_expectations.datasource.fluent.interfaces import Batch

    from expectations import suites
    from expectations.gate import GateFailed, validate

    formats = []
    original = Batch.validate
    Batch.validate = lambda self, expect, **kw: formats.append(kw.get("result_format")) or original(self, expect, **kw)
    settings = fresh_lake.with_overrides(gate_pandas_max_rows=0)  # every frame on Spark
    try:
        good = spark.createDataFrame([(0, 7, 7), (0, 3, 3)], "missing_from_bronze long, in_mongo long, in_bronze long")
        passed = validate(good, suites.bronze_completeness_suite(_bronze(), True), settings, "b1")
        assert (passed["engine"], passed["passed"], formats) == ("spark", 2, ["BOOLEAN_ONLY"])

        formats.clear()
        bad = spark.createDataFrame([(2, 7, 5), (0, 3, 4), (1, 3, 2)],
                                    "missing_from_bronze long, in_mongo long, in_bronze long")
        with pytest.raises(GateFailed) as failed:
            validate(bad, suites.bronze_completeness_suite(_bronze(), True), settings, "b1")
    finally:
        Batch.validate = original
    assert formats == ["BOOLEAN_ONLY", None]  # the second time with GX's default: counts
    assert sorted(failed.value.failures) == sorted([
        "expect_column_values_to_be_between(column=missing_from_bronze, min_value=0.0, max_value=0.0) unexpected=2",
        "expect_column_pair_values_a_to_be_greater_than_b(column_A=in_mongo, column_B=in_bronze, or_equal=True) "
        "unexpected=1"])
    page = failed.value.report.read_text()
    assert page.count("<td>FAIL</td>") == 2 and "<td>2</td>" in page and "<td>1</td>" in page
