"""LearnTrack daily pipeline: MongoDB -> bronze -> gate -> silver -> gate -> gold -> gate -> sinks.

One run per closed UTC day: the data interval is [midnight, next midnight), created by a
data-interval timetable, so the run that starts just after midnight processes the day that has
just ended. The stages and their order come from ``learntrack.pipeline.DAILY`` (declared once;
task id = stage name = function name). Every stage takes every upstream batch not yet processed
up to its run's own, so a failed day is healed by its retry or by the next run. A last task
records the run in ``gold.pipeline_runs``.

Wiring only: each task is one call into ``learntrack.airflow_tasks``, imported inside the task, so
parsing this file imports nothing heavy and touches no store.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task

from learntrack.airflow_tasks import DAILY_CRON, LAKE_POOL, dag_defaults
from learntrack.pipeline import DAILY


@task
def stage(name: str, upstream: dict | None = None):
    """One stage; ``upstream`` maps the names of the stages whose results it takes to their XComs.
    (A ``**kwargs`` parameter would receive the whole task context.)"""
    from learntrack.airflow_tasks import run_stage

    return run_stage(name, **(upstream or {}))


@task(trigger_rule="all_done")
def record_run(stage_names: list[str]):
    from learntrack.airflow_tasks import record_run as record

    return record(stage_names)


@dag(dag_id="learntrack_pipeline", schedule=CronDataIntervalTimetable(DAILY_CRON, timezone="UTC"),
     doc_md=__doc__, **dag_defaults())
def learntrack_pipeline():
    tasks = {}
    for s in DAILY:
        tasks[s.name] = stage.override(
            task_id=s.name, pool=LAKE_POOL if s.writes_lake else "default_pool",
            execution_timeout=dt.timedelta(minutes=s.timeout_minutes),
            outlets=[Asset(name) for name in s.outlets],
        )(s.name, {name: tasks[name] for name in s.needs})
        for name in s.after:
            tasks[name] >> tasks[s.name]
    recorder = record_run.override(pool=LAKE_POOL, execution_timeout=dt.timedelta(minutes=15))(
        [s.name for s in DAILY])
    list(tasks.values()) >> recorder


learntrack_pipeline_dag = learntrack_pipeline()
