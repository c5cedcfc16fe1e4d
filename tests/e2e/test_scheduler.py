"""The daily DAG under Airflow's real scheduler (LocalExecutor, PostgreSQL metadata DB), started by
the project's own command, catching up three days by itself, with faults injected from outside:

- day 2: every attempt of build_silver is SIGKILLed, so the run fails after its extraction
  committed day 2's batch to bronze;
- day 3: the first attempt of build_gold is SIGKILLed mid-stage and its retry completes;
  day 3's run also takes in day 2's stranded batch (the stage ledger).

Afterwards the lake and every sink equal the independent oracle for the three days, nothing is
doubled, each run's data interval is the closed UTC day it names, gold.pipeline_runs records the
backlog, the REST API lists the runs and the UI shows them (a screenshot is kept).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from learntrack.generator import GenParams, generate, load_into_mongo
from oracle import assert_engagement_equal, assert_gold_equal, assert_sinks_equal, expected_results
from stores import reset_namespaces

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

UTC = dt.timezone.utc
DAG = "learntrack_pipeline"
END = dt.datetime.combine(dt.datetime.now(UTC).date(), dt.time(), UTC)  # today's midnight: 3 closed days before it
DAYS = [(END - dt.timedelta(days=n)).date() for n in (3, 2, 1)]
PARAMS = GenParams(students=60, courses=8, days=3, end=END, seed=31, multi_region_rate=0.08, late_rate=0.05,
                   duplicate_rate=0.02, malformed_rate=0.01)
#: (day, task): how many of its attempts are killed
KILLS = {(DAYS[1], "build_silver"): 3, (DAYS[2], "build_gold"): 1}


def _task_pids(ti_id: str) -> list[int]:
    """The task runner process of the task instance: Airflow 3 titles it ``airflow worker -- <ti id>``.
    Its supervisor (the LocalExecutor worker, ``airflow worker -- LocalExecutor: ...``) names the
    task too but is left alone: it reports the killed task's failure, and the retry follows."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ").strip()
            except OSError:
                continue
            if title.startswith(f"airflow worker -- {ti_id}"):
                pids.append(int(proc.name))
    return pids


class Killer(threading.Thread):
    """Watches the runs through the REST API and SIGKILLs the chosen task attempts mid-stage."""

    def __init__(self, settings):
        super().__init__(daemon=True)
        from learntrack.airflow_local import AirflowApi

        self.api = AirflowApi(settings)
        self.killed: dict[tuple, set[int]] = {k: set() for k in KILLS}
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self):
        while not self.stop.is_set():
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
            time.sleep(1.0)

    def _poll(self):
        for run in self.api.dag_runs(DAG):
            day = dt.datetime.fromisoformat(run["data_interval_start"]).astimezone(UTC).date()
            for ti in self.api.task_instances(DAG, run["dag_run_id"]):
                key = (day, ti["task_id"])
                if key not in KILLS or ti["state"] != "running" or ti["try_number"] in self.killed[key]:
                    continue
                if len(self.killed[key]) >= KILLS[key]:
                    continue
                time.sleep(3)  # let the stage get going (SparkSession up, reading) before the kill
                pids = _task_pids(ti["id"])
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                if pids:
                    self.killed[key].add(ti["try_number"])


@pytest.fixture(scope="module")
def scheduled_world(stack):
    from learntrack import airflow_local
    from learntrack.mongo_ops import client

    home = stack.home_path / "test" / "scheduler"
    settings = stack.with_overrides(
        mongo_db="lt_sched", cassandra_keyspace="lt_sched", redis_prefix="lt_sched", lake_root=str(home / "lake"),
        airflow_home=str(home / "airflow"), airflow_api_port=8091, airflow_db_name="airflow_sched",
        pipeline_start_date=DAYS[0].isoformat(), task_retry_delay_s=5, task_max_retry_delay_s=20)
    airflow_local.down(settings, echo=lambda m: None)
    airflow_local.drop_metadata_db(settings)  # no runs from an earlier session: the scheduler starts afresh
    reset_namespaces(settings)
    mongo = client(settings)
    data = generate(PARAMS)
    load_into_mongo(mongo[settings.mongo_db], data)
    mongo.close()

    t0 = time.monotonic()
    airflow_local.up(settings, echo=print, start_stack=False)
    up_s = time.monotonic() - t0
    api = airflow_local.AirflowApi(settings)
    killer = Killer(settings)
    killer.start()
    api.unpause(DAG)
    try:
        deadline = time.monotonic() + 2400
        while time.monotonic() < deadline:  # the scheduler creates the catch-up runs one by one
            runs = api.dag_runs(DAG)
            if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
                break
            time.sleep(5)
        runs = api.dag_runs(DAG)
        print(f"airflow up {up_s:.0f}s; catch-up finished {time.monotonic() - t0:.0f}s after it started")
        yield settings, data, api, runs, killer
    finally:
        killer.stop.set()
        api.pause(DAG)
        api.close()
        airflow_local.down(settings, echo=print)


def test_scheduler_catches_up_each_closed_day_and_faults_heal(scheduled_world):
    settings, _, api, runs, killer = scheduled_world
    assert not killer.errors, killer.errors
    by_day = {dt.datetime.fromisoformat(r["data_interval_start"]).astimezone(UTC).date(): r for r in runs}
    assert sorted(by_day) == DAYS, runs
    for day, run in by_day.items():  # each run's interval is the closed UTC day it names
        assert run["run_type"] == "scheduled"
        assert dt.datetime.fromisoformat(run["data_interval_end"]) - dt.datetime.fromisoformat(
            run["data_interval_start"]) == dt.timedelta(days=1)
    assert [by_day[d]["state"] for d in DAYS] == ["success", "failed", "success"]
    assert killer.killed[(DAYS[1], "build_silver")] == {1, 2, 3}
    assert killer.killed[(DAYS[2], "build_gold")] == {1}
    gold = {t["task_id"]: t for t in api.task_instances(DAG, by_day[DAYS[2]]["dag_run_id"])}
    assert gold["build_gold"]["try_number"] == 2 and gold["build_gold"]["state"] == "success"


def test_lake_and_sinks_equal_the_oracle_after_the_healed_failure(scheduled_world, spark):
    from pyspark.sql import functions as F

    from learntrack.intervals import Interval
    from lake.delta import read_table
    from lake.tables import BRONZE_ACTIVITIES, GOLD_PIPELINE_RUNS, SILVER_ACTIVITIES, STAGE_LEDGER

    settings, data, _, _, _ = scheduled_world
    run_day = DAYS[-1]
    exp = expected_results(data, settings, END, run_day)
    assert_sinks_equal(settings, data, exp, END, run_day)
    assert_gold_equal(spark, settings, exp)
    assert_engagement_equal(spark, settings, exp, run_day)

    lake = settings.lake_uri
    batches = {r["batch_id"]: r["count"] for r in read_table(spark, BRONZE_ACTIVITIES, lake).groupBy("batch_id")
               .count().collect()}
    assert set(batches) == {Interval.for_day(d).batch_id for d in DAYS}  # one batch per day, none doubled
    assert sum(batches.values()) == exp["written"]
    assert read_table(spark, SILVER_ACTIVITIES, lake).count() == exp["silver_rows"]
    ledger = {(r["stage"], r["batch_id"]): r for r in read_table(spark, STAGE_LEDGER, lake).collect()}
    day2, day3 = Interval.for_day(DAYS[1]).batch_id, Interval.for_day(DAYS[2]).batch_id
    assert ("silver", day2) not in ledger and ledger[("silver", day3)]["input_batches"] == [day2, day3]
    runs = read_table(spark, GOLD_PIPELINE_RUNS, lake)
    healed = runs.where((F.col("batch_id") == day3) & (F.col("stage") == "build_silver")).first()
    assert healed["backlog_batches"] == 1 and healed["state"] == "success"
    failed = runs.where((F.col("batch_id") == day2) & (F.col("stage") == "build_silver")).first()
    assert failed["state"] == "failed"


def test_rest_api_and_ui_show_the_runs(scheduled_world):
    settings, _, api, runs, _ = scheduled_world
    listed = {r["dag_run_id"] for r in api.dag_runs(DAG)}
    assert listed == {r["dag_run_id"] for r in runs}
    from learntrack.airflow_local import screenshot_grid

    shot = screenshot_grid(settings, DAG, settings.home_path / "test" / "scheduler" / "grid.png")
    assert shot.stat().st_size > 20_000  # a rendered grid, not a blank page
