"""Weekly maintenance: lake retention by layer, OPTIMIZE, VACUUM; and the MongoDB sweep that stamps
documents written without write metadata. Wiring only."""

from __future__ import annotations

from airflow.sdk import dag, task

from learntrack.airflow_tasks import DAG_DEFAULTS


@dag(dag_id="learntrack_maintenance", schedule="@weekly", doc_md=__doc__, **DAG_DEFAULTS)
def learntrack_maintenance():
    @task
    def maintain_lake():
        from learntrack.airflow_tasks import run_stage

        return run_stage("maintain")

    @task
    def sweep_source():
        from learntrack.airflow_tasks import run_stage

        return run_stage("sweep_source")

    maintain_lake()
    sweep_source()


learntrack_maintenance_dag = learntrack_maintenance()
