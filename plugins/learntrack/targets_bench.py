"""One daily DAG run on each place the pipeline can run (``learntrack bench targets``).

Method. One generated data set (seed 5151, ``activities`` over 3 days, days in 2024 so nothing meets
the demo's) is loaded once into MongoDB. The same DAG run (the last day, ``airflow dags test``, as
the e2e tests run it) then runs three times, each on a fresh lake, only settings changing:

1. ``local``   — ``local[2]``, lake in a local folder (the default);
2. ``s3a``     — ``local[2]``, lake at ``s3a://learntrack/bench-targets`` on the local s3proxy;
3. ``cluster`` — the local Spark standalone master and worker, lake in a local folder.

Each figure is the whole run's wall time (Airflow's process, the JVM start, every task, the sinks),
printed with its ratio to ``local`` from the same invocation. The three lakes' data tables are
compared (delta-rs, outside Spark) so a fast but wrong target cannot pass unnoticed. Namespace
``lt_targets`` in every store; s3proxy and the cluster are started for the run and stopped after.
"""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Callable

from learntrack.benchmarks import machine
from learntrack.settings import Settings

NAMESPACE = "lt_targets"
SEED = 5151
END = dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc)
DAYS = 3
Echo = Callable[[str], None]


def _lake_rows(settings: Settings) -> dict[str, int]:
    from lake.storage import open_delta
    from lake.tables import DATA_TABLES

    return {t.qualified: open_delta(settings, t.path(settings.lake_uri)).to_pyarrow_table().num_rows
            for t in DATA_TABLES}


def bench_targets(settings: Settings, activities: int, echo: Echo = print) -> dict:
    from learntrack.cli import run_dag
    from learntrack.generator import GenParams
    from learntrack.lake_bench import EVENTS_PER_STUDENT_DAY, load_generated, wipe_sinks
    from learntrack.stack.manager import StackManager
    from learntrack.stack.services import S3PROXY_BUCKET, s3proxy_lake

    root = settings.home_path / "bench-targets"
    base = settings.with_overrides(mongo_db=NAMESPACE, cassandra_keyspace=NAMESPACE, redis_prefix=NAMESPACE,
                                   neo4j_namespace=NAMESPACE, airflow_home=str(root / "airflow"))
    params = GenParams(students=max(50, round(activities / (DAYS * EVENTS_PER_STUDENT_DAY))),
                       courses=max(20, activities // 2000), days=DAYS, end=END, seed=SEED,
                       duplicate_rate=0.01, malformed_rate=0.005)
    day = (END - dt.timedelta(days=1)).date()
    shutil.rmtree(root, ignore_errors=True)
    wipe_sinks(base)
    echo(f"Loading {activities:,} activities ({params.students:,} students, {params.courses} courses, "
         f"{DAYS} days) into {NAMESPACE}...")
    loaded = load_generated(base, params, echo)

    manager = StackManager(base, echo=lambda m: echo(f"  {m.strip()}"))
    manager.up(["s3proxy", "spark-master", "spark-worker"])
    stored = base.stack_dir / "s3proxy" / "data" / S3PROXY_BUCKET / "bench-targets"
    shutil.rmtree(stored, ignore_errors=True)
    targets = {
        "local": base.with_overrides(lake_root=str(root / "lake-local")),
        "s3a": base.with_overrides(**s3proxy_lake(base, "bench-targets")),
        "cluster": base.with_overrides(lake_root=str(root / "lake-cluster"),
                                       spark_master=f"spark://{base.stack_host}:{base.spark_master_port}"),
    }
    result: dict = {"machine": machine(), "activities": loaded["activities"], "day": day.isoformat(), "runs": {}}
    try:
        for name, target in targets.items():
            echo(f"[{name}] DAG run for {day}: lake {target.lake_uri}, Spark {target.spark_master}")
            seconds = run_dag(target, day, log_file=root / f"dag-{name}.log")
            result["runs"][name] = {"seconds": round(seconds, 1), "lake_rows": _lake_rows(target)}
            echo(f"[{name}] {seconds:.1f} s")
    finally:
        manager.down(["spark-worker", "spark-master", "s3proxy"])

    local = result["runs"]["local"]
    echo(f"\nOne daily DAG run ({loaded['activities']:,} activities loaded, day {day}) on {machine()}:")
    echo(f"  {'target':<8} {'seconds':>8} {'vs local':>9}  same lake as local")
    for name, run in result["runs"].items():
        run["ratio_to_local"] = round(run["seconds"] / local["seconds"], 2)
        same = run["lake_rows"] == local["lake_rows"]
        run["same_rows_as_local"] = same
        echo(f"  {name:<8} {run['seconds']:>8.1f} {run['ratio_to_local']:>8.2f}x  {'yes' if same else 'NO'}")
    if not all(r["same_rows_as_local"] for r in result["runs"].values()):
        raise RuntimeError("a target's lake differs from the local run's (row counts per table above)")
    return result
