"""LearnTrack daily pipeline: MongoDB -> bronze -> gate -> silver -> gate -> gold -> gate -> sinks.

Wiring only: every task body is one call into ``learntrack.airflow_tasks``, imported inside the
task, so parsing this file imports nothing heavy and touches no store.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="learntrack_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["learntrack"],
    doc_md=__doc__,
)
def learntrack_pipeline():
    @task
    def extract_bronze() -> list:
        from learntrack.airflow_tasks import run_stage

        return run_stage("extract")

    @task
    def gate_bronze(extracted: list) -> list:
        from learntrack.airflow_tasks import run_stage

        return run_stage("gate_bronze", extracted=extracted)

    @task
    def build_silver() -> dict:
        from learntrack.airflow_tasks import run_stage

        return run_stage("silver")

    @task
    def gate_silver(silver: dict) -> list:
        from learntrack.airflow_tasks import run_stage

        return run_stage("gate_silver", affected_dates=silver["affected_dates"])

    @task
    def build_gold(silver: dict) -> dict:
        from learntrack.airflow_tasks import run_stage

        return run_stage("gold", affected_dates=silver["affected_dates"])

    @task
    def gate_gold(gold: dict) -> list:
        from learntrack.airflow_tasks import run_stage

        return run_stage("gate_gold", recomputed_dates=gold["recomputed_dates"])

    @task
    def publish_cassandra(gold: dict) -> dict:
        from learntrack.airflow_tasks import run_stage

        return run_stage("publish_cassandra", recomputed_dates=gold["recomputed_dates"])

    @task
    def publish_redis() -> dict:
        from learntrack.airflow_tasks import run_stage

        return run_stage("publish_redis")

    @task
    def publish_neo4j(gold: dict) -> dict:
        from learntrack.airflow_tasks import run_stage

        return run_stage("publish_neo4j", recomputed_dates=gold["recomputed_dates"])

    extracted = extract_bronze()
    bronze_ok = gate_bronze(extracted)
    silver = build_silver()
    bronze_ok >> silver
    silver_ok = gate_silver(silver)
    gold = build_gold(silver)
    silver_ok >> gold
    gold_ok = gate_gold(gold)
    for publish in (publish_cassandra(gold), publish_redis(), publish_neo4j(gold)):
        gold_ok >> publish


learntrack_pipeline_dag = learntrack_pipeline()
