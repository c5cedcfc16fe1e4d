"""The publish stages read gold as the pipeline leaves it (a lake written here, real stores)."""

import datetime as dt
from decimal import Decimal

import pytest

pytestmark = pytest.mark.stack

D1, D2 = dt.date(2026, 4, 1), dt.date(2026, 4, 2)


def engagement(day, scores):
    return [(day, s, Decimal(str(v)), 1, 1, 0, 0, None, None, "active") for s, v in scores.items()]


def test_R6_recovering_an_older_day_republishes_the_newest_snapshot_gold_rewrote(stack, spark, tmp_path):
    """A backfill of D1 makes the engagement chain rewrite D2; Redis must serve the rewritten D2
    (it kept serving the old D2 when only the run's own as-of day was published)."""
    from lake.delta import replace_partitions
    from lake.tables import GOLD_STUDENT_ENGAGEMENT
    from learntrack.intervals import Interval
    from learntrack.pipeline import publish_redis
    from learntrack.sinks import redis_sink

    settings = stack.with_overrides(lake_root=str(tmp_path / "lake"), redis_prefix="lt_pipeline_publish")
    r = redis_sink.connect(settings)
    for key in r.scan_iter("lt_pipeline_publish:*"):
        r.delete(key)

    def write(day, scores):
        df = spark.createDataFrame(engagement(day, scores), GOLD_STUDENT_ENGAGEMENT.spark_schema())
        replace_partitions(df, GOLD_STUDENT_ENGAGEMENT, settings.lake_uri, "as_of_date", [day])

    write(D1, {"a": 1.0})
    write(D2, {"a": 2.0})
    assert publish_redis(settings, Interval.for_day(D2))["published"] == 1
    write(D2, {"a": 2.5, "b": 0.5})  # the chain rewrote D2 after D1's retry took in a late batch
    out = publish_redis(settings, Interval.for_day(D1))
    assert out["as_of_date"] == D2.isoformat()
    assert redis_sink.snapshot_as_of(settings) == D2.isoformat()
    assert redis_sink.leaderboard(settings) == {"a": 2.5, "b": 0.5}
    again = publish_redis(settings, Interval.for_day(D1))
    assert again["unchanged"] and again["version"] == out["version"]


def test_run_chain_skips_the_stages_already_done_and_hands_their_results_on():
    """A resumed run (the seed-scale day) passes stored results downstream without re-running."""
    from learntrack.intervals import Interval
    from learntrack.pipeline import Stage, run_chain
    from learntrack.settings import Settings

    calls = []

    def first(settings, interval):
        calls.append("first")
        return {"n": 1}

    def second(settings, interval, first):
        calls.append("second")
        return {"n": first["n"] + 1}

    chain = (Stage(first), Stage(second))
    interval = Interval.for_day(dt.date(2024, 9, 2))
    assert run_chain(Settings(), interval, chain)["second"] == {"n": 2} and calls == ["first", "second"]
    calls.clear()
    out = run_chain(Settings(), interval, chain, done={"first": {"n": 41}})
    assert out == {"first": {"n": 41}, "second": {"n": 42}} and calls == ["second"]
