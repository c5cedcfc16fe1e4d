"""LearnTrack daily pipeline: MongoDB -> bronze -> gate -> silver -> gate -> gold -> gate -> sinks.

Wiring only: every task is one call into ``learntrack.airflow_tasks.run_stage``, imported inside
the task, so parsing this file imports nothing heavy and touches no store.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@task
def stage(name: str, **upstream):
    from learntrack.airflow_tasks import run_stage

    return run_stage(name, **upstream)


def step(task_id: str, name: str, **upstream):
    return stage.override(task_id=task_id)(name, **upstream)


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
    extracted = step("extract_bronze", "extract")
    silver = step("build_silver", "silver")
    step("gate_bronze", "gate_bronze", extracted=extracted) >> silver
    gold = step("build_gold", "gold", silver=silver)
    step("gate_silver", "gate_silver", silver=silver) >> gold
    gold_ok = step("gate_gold", "gate_gold", gold=gold)
    gold_ok >> [step("publish_cassandra", "publish_cassandra", gold=gold),
                step("publish_redis", "publish_redis"),
                step("publish_neo4j", "publish_neo4j", gold=gold)]


learntrack_pipeline_dag = learntrack_pipeline()
