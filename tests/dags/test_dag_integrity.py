"""DAG integrity, in the Astronomer style: every DAG imports cleanly, within a parse-time budget,
with no I/O and nothing heavy imported at parse time; every task has an owner, retries >= 2 with
backoff, an execution timeout; the daily DAG's graph is exactly the declared stage chain."""

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAVY = ["pyspark", "pymongo", "great_expectations", "cassandra", "neo4j", "redis", "delta", "jobs", "lake.spark",
         "lake.ledger", "pandas"]
PARSE_BUDGET_S = 10.0  # Airflow's dagbag_import_timeout is 30 s; a DAG file should need a fraction

PROBE = r"""
import json, socket, sys, time, importlib.util
def refuse(*a, **k):
    raise AssertionError(f"network I/O at parse time: {a}")
socket.socket.connect = refuse
socket.create_connection = refuse
import airflow.sdk  # Airflow itself is not what is timed
path = sys.argv[1]
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
took = time.perf_counter() - t0
from airflow.sdk import DAG
dags = [v for v in vars(mod).values() if isinstance(v, DAG)]
heavy = sorted(h for h in json.loads(sys.argv[2]) if any(m == h or m.startswith(h + ".") for m in sys.modules))
print(json.dumps({"dags": [d.dag_id for d in dags], "heavy": heavy, "seconds": took}))
"""


def _parse(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_dag_file_parses_fast_without_io_or_heavy_imports():
    files = sorted(DAGS.glob("*.py"))
    assert files
    for path in files:
        info = _parse(path)
        assert info["dags"], f"{path.name} defines no DAG"
        assert info["heavy"] == [], f"{path.name} imports {info['heavy']} at parse time"
        assert info["seconds"] < PARSE_BUDGET_S, f"{path.name} took {info['seconds']:.1f}s to parse"


@pytest.fixture(scope="module")
def bag(monkeypatch_module):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def monkeypatch_module():
    """Connections patched to nothing: parsing must not need any (a DAG that looks one up at parse
    time fails here)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__SECRETS__BACKEND", "")
    mp.setenv("LEARNTRACK_PIPELINE_START_DATE", "2026-03-01")
    yield mp
    mp.undo()


def test_every_task_has_owner_retries_backoff_timeout_and_tags(bag):
    for dag_id, dag in bag.dags.items():
        assert "learntrack" in dag.tags, dag_id
        assert dag.max_active_runs == 1, dag_id
        for task in dag.tasks:
            where = f"{dag_id}.{task.task_id}"
            assert task.owner and task.owner != "airflow", where
            assert task.retries >= 2, where
            assert task.retry_exponential_backoff and task.max_retry_delay, where
            assert task.execution_timeout and task.execution_timeout <= dt.timedelta(hours=3), where
            assert task.on_failure_callback, where


def test_every_dag_serialises_as_the_dag_processor_stores_it(bag):
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, dag in bag.dags.items():
        restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        assert type(restored.timetable).__name__ == "CronDataIntervalTimetable", dag_id
        assert set(restored.task_ids) == set(dag.task_ids), dag_id


def test_daily_dag_is_the_declared_stage_chain_on_closed_utc_days(bag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    from learntrack.airflow_tasks import LAKE_POOL
    from learntrack.pipeline import DAILY

    dag = bag.dags["learntrack_pipeline"]
    assert set(dag.task_ids) == {s.name for s in DAILY} | {"record_run"}
    for s in DAILY:
        task = dag.get_task(s.name)
        assert task.upstream_task_ids == set(s.upstream), s.name
        assert (task.pool == LAKE_POOL) == s.writes_lake, s.name
        assert {o.name for o in task.outlets} == set(s.outlets), s.name
    assert dag.get_task("record_run").upstream_task_ids == {s.name for s in DAILY}
    assert dag.get_task("record_run").trigger_rule == "all_done"
    for publish in ("publish_cassandra", "publish_redis", "publish_neo4j"):
        assert "gate_gold" in dag.get_task(publish).upstream_task_ids
    assert "gate_bronze" in dag.get_task("build_silver").upstream_task_ids
    assert "gate_silver" in dag.get_task("build_gold").upstream_task_ids
    assert dag.catchup and dag.start_date == dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)

    timetable = dag.timetable
    assert isinstance(timetable, CronDataIntervalTimetable) or type(timetable).__name__ == "CronDataIntervalTimetable"
    # The run that fires at midnight processes the day that has just ended.
    import pendulum

    from airflow.timetables.base import TimeRestriction

    first = CronDataIntervalTimetable("0 0 * * *", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.datetime(2026, 3, 1), latest=None, catchup=True))
    assert (first.data_interval.start, first.data_interval.end) == (pendulum.datetime(2026, 3, 1),
                                                                     pendulum.datetime(2026, 3, 2))
    assert first.run_after == pendulum.datetime(2026, 3, 2)


def test_maintenance_never_shares_the_daily_minute_and_takes_the_lake_pool(bag):
    from learntrack.airflow_tasks import DAILY_CRON, LAKE_POOL, MAINTENANCE_CRON

    assert set(bag.dags) == {"learntrack_pipeline", "learntrack_maintenance"}
    maintenance = bag.dags["learntrack_maintenance"]
    assert set(maintenance.task_ids) == {"maintain_lake", "sweep_source"}
    assert maintenance.get_task("maintain_lake").pool == LAKE_POOL
    assert MAINTENANCE_CRON.split()[:2] != DAILY_CRON.split()[:2]


def test_stage_chain_is_declared_once_and_ordered():
    from learntrack.pipeline import DAILY, STAGES

    seen = set()
    for s in DAILY:
        assert set(s.upstream) <= seen, f"{s.name} follows a stage declared after it"
        assert STAGES[s.name] is s
        seen.add(s.name)
    assert [s.name for s in DAILY if not s.writes_lake] == ["publish_cassandra", "publish_redis", "publish_neo4j"]


def test_a_run_without_an_interval_or_for_an_open_interval_is_refused():
    from airflow.sdk.exceptions import AirflowFailException

    from learntrack.airflow_tasks import interval_from_context

    class Run:
        run_id = "manual__x"

    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(AirflowFailException, match="no data interval"):
        interval_from_context({"data_interval_start": now, "data_interval_end": now, "dag_run": Run()})
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    with pytest.raises(AirflowFailException, match="has not ended yet"):
        interval_from_context({"data_interval_start": tomorrow - dt.timedelta(days=1), "data_interval_end": tomorrow,
                               "dag_run": Run()})
    yesterday = interval_from_context({"data_interval_start": tomorrow - dt.timedelta(days=2),
                                       "data_interval_end": tomorrow - dt.timedelta(days=1), "dag_run": Run()})
    assert yesterday.as_of_date == now.date() - dt.timedelta(days=1)
    import pendulum  # what Airflow's context holds: plain datetimes come out (pyspark refuses pendulum's)

    day = interval_from_context({"data_interval_start": pendulum.datetime(2026, 1, 9, tz="UTC"),
                                 "data_interval_end": pendulum.datetime(2026, 1, 10, tz="UTC"), "dag_run": Run()})
    assert type(day.start) is dt.datetime and type(day.end) is dt.datetime and day.batch_id == "20260110T000000Z"
