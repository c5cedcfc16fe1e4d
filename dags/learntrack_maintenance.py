"""Weekly lake maintenance: retention by layer, OPTIMIZE, VACUUM. Wiring only."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="learntrack_maintenance",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["learntrack"],
    doc_md=__doc__,
)
def learntrack_maintenance():
    @task
    def maintain_lake():
        from learntrack.airflow_tasks import run_stage

        return run_stage("maintain")

    maintain_lake()


learntrack_maintenance_dag = learntrack_maintenance()
