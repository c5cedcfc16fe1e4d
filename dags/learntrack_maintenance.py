"""Weekly maintenance: lake retention by layer, OPTIMIZE, VACUUM; and the MongoDB sweep that stamps
documents written without write metadata. Sunday noon UTC, away from the daily run at midnight,
and the lake task shares the daily DAG's single-slot lake pool, so it never commits beside a
daily stage. Wiring only; the stages come from ``learntrack.pipeline.MAINTENANCE``."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, dag, task

from learntrack.airflow_tasks import LAKE_POOL, MAINTENANCE_CRON, dag_defaults
from learntrack.pipeline import MAINTENANCE


@task
def stage(name: str):
    from learntrack.airflow_tasks import run_stage

    return run_stage(name)


@dag(dag_id="learntrack_maintenance", schedule=CronDataIntervalTimetable(MAINTENANCE_CRON, timezone="UTC"),
     doc_md=__doc__, **{**dag_defaults(), "catchup": False})
def learntrack_maintenance():
    for s in MAINTENANCE:
        stage.override(task_id=s.name, pool=LAKE_POOL if s.writes_lake else "default_pool",
                       execution_timeout=dt.timedelta(minutes=s.timeout_minutes))(s.name)


learntrack_maintenance_dag = learntrack_maintenance()
