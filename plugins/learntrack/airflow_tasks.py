"""The bridge from an Airflow task to a pipeline stage: read the run's data interval from the
task context, build settings from the environment, call ``learntrack.pipeline``."""

from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger("learntrack")

#: What every LearnTrack DAG shares (light: importable at DAG parse time).
DAG_DEFAULTS = {
    "start_date": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {"retries": 0},
    "tags": ["learntrack"],
}


def current_interval():
    from airflow.sdk import get_current_context

    from jobs.common import Interval

    ctx = get_current_context()
    start, end = ctx["data_interval_start"], ctx["data_interval_end"]
    if start is None or end is None or end <= start:  # a manual run without an interval: its day
        from jobs.common import UTC

        logical = ctx["logical_date"] or ctx["dag_run"].run_after
        return Interval.for_day(logical.astimezone(UTC).date())
    return Interval(start, end)


#: What each stage takes from its upstream tasks' results (XCom), by argument name.
UPSTREAM_ARGS = {
    "gate_bronze": lambda up: {"extracted": up["extracted"]},
    "gate_silver": lambda up: {"affected_dates": up["silver"]["affected_dates"],
                               "versions_before": up["silver"].get("versions_before")},
    "gold": lambda up: {"affected_dates": up["silver"]["affected_dates"]},
    "gate_gold": lambda up: {"recomputed_dates": up["gold"]["recomputed_dates"],
                             "engagement_dates": up["gold"].get("engagement_dates", []),
                             "versions_before": up["gold"].get("versions_before")},
    "publish_cassandra": lambda up: {"recomputed_dates": up["gold"]["recomputed_dates"]},
    "publish_neo4j": lambda up: {"recomputed_dates": up["gold"]["recomputed_dates"]},
}


def run_stage(name: str, **upstream):
    from learntrack import pipeline
    from learntrack.settings import get_settings

    kwargs = UPSTREAM_ARGS.get(name, lambda up: {})(upstream)
    interval = current_interval()
    log.info("learntrack stage %s for interval %s .. %s (batch %s)", name, interval.start, interval.end,
             interval.batch_id)
    result = getattr(pipeline, name)(get_settings(), interval, **kwargs)
    log.info("learntrack stage %s result: %s", name, result)
    return result
