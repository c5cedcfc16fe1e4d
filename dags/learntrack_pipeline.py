"""LearnTrack daily pipeline: MongoDB -> bronze -> gate -> silver -> gate -> gold -> gate -> sinks.

Wiring only: every task is one call into ``learntrack.airflow_tasks.run_stage``, imported inside
the task, so parsing this file imports nothing heavy and touches no store.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from learntrack.airflow_tasks import DAG_DEFAULTS


@task
def stage(name: str, **upstream):
    from learntrack.airflow_tasks import run_stage

    return run_stage(name, **upstream)


def step(task_id: str, name: str, **upstream):
    return stage.override(task_id=task_id)(name, **upstream)


@dag(dag_id="learntrack_pipeline", schedule="@daily", doc_md=__doc__, **DAG_DEFAULTS)
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
