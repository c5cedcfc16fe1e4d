"""Pipeline runs the way the data team makes them: through the running Airflow's scheduler.

``learntrack run --date D`` makes (or, when it exists, clears and re-runs) the daily DAG's run for
the closed UTC day D, with its data interval given explicitly; ``learntrack backfill FROM TO`` asks
Airflow for a backfill (the API behind ``airflow backfill create``). Either way the scheduler runs
the tasks (LocalExecutor, retries, pools, max_active_runs=1), and the command follows the runs
task by task until they finish. Days that have not ended are refused before anything is created.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable, Iterable

from learntrack.intervals import UTC, Interval
from learntrack.settings import Settings

DAG = "learntrack_pipeline"
Echo = Callable[[str], None]


def _interval_start(run: dict) -> dt.date:
    return dt.datetime.fromisoformat(run["data_interval_start"]).astimezone(UTC).date()


class BeforeStartDateError(ValueError):
    """Airflow runs no task of a run dated before the DAG's start date: refuse instead of a run
    that "succeeds" having done nothing."""


def check_days(settings: Settings, days: Iterable[dt.date], now: dt.datetime | None = None) -> list[Interval]:
    """The days' intervals; raises for a day that has not ended by `now` (default: the clock) or
    precedes the DAG's start date."""
    from learntrack import airflow_local

    start = dt.date.fromisoformat(settings.pipeline_start_date or airflow_local.pipeline_start_date(settings))
    early = sorted(d for d in days if d < start)
    if early:
        raise BeforeStartDateError(
            f"{', '.join(map(str, early))} precede the daily DAG's start date {start}; Airflow would run none of "
            f"its tasks. Set LEARNTRACK_PIPELINE_START_DATE={early[0]} and restart Airflow "
            "(`learntrack airflow down && learntrack airflow up`)")
    return [Interval.for_day(d).refuse_future(now) for d in days]


def run_days(settings: Settings, days: Iterable[dt.date], echo: Echo = print, timeout: float = 3 * 3600) -> dict:
    """Run the daily DAG for each day (in the order given) and wait; returns {day: state}."""
    from learntrack import airflow_local

    days = list(dict.fromkeys(days))
    intervals = check_days(settings, days)  # before anything is created
    airflow_local.up(settings, echo)
    api = airflow_local.AirflowApi(settings)
    try:
        api.unpause(DAG)
        existing = {_interval_start(r): r for r in api.dag_runs(DAG)}
        run_ids = {}
        for day, interval in zip(days, intervals):
            if day in existing:  # the run exists: clear it, and the scheduler runs it again
                run_id = existing[day]["dag_run_id"]
                api.request("POST", f"/api/v2/dags/{DAG}/clearTaskInstances",
                            json={"dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True,
                                  "dry_run": False})
                echo(f"  {day}: re-running existing run {run_id}")
            else:
                run_id = api.trigger(DAG, logical_date=interval.start, data_interval=(interval.start, interval.end))
                echo(f"  {day}: created run {run_id}")
            run_ids[run_id] = day
        states = api.wait(DAG, list(run_ids), timeout=timeout, echo=echo)
        return {run_ids[r]: s for r, s in states.items()}
    finally:
        api.close()


def backfill(settings: Settings, start: dt.date, end: dt.date, echo: Echo = print, reprocess: str = "completed",
             run_backwards: bool = False, timeout: float = 6 * 3600) -> dict:
    """Backfill the closed days start..end (inclusive) through Airflow's backfill; returns {day: state}."""
    from learntrack import airflow_local

    if end < start:
        raise ValueError(f"backfill range is empty: {start} .. {end}")
    check_days(settings, [start, end])
    airflow_local.up(settings, echo)
    api = airflow_local.AirflowApi(settings)
    try:
        api.unpause(DAG)
        created = api.backfill(DAG, start, end, reprocess=reprocess, run_backwards=run_backwards)
        echo(f"  backfill {created.get('id')}: {start} .. {end} ({reprocess=}, {run_backwards=})")
        wanted = {start + dt.timedelta(days=i) for i in range((end - start).days + 1)}
        backfill_runs = []
        for _ in range(60):  # the scheduler creates the backfill's runs shortly after
            runs = [r for r in api.dag_runs(DAG) if _interval_start(r) in wanted and r["run_type"] == "backfill"]
            if {_interval_start(r) for r in runs} >= wanted:
                backfill_runs = runs
                break
            time.sleep(2)
        if not backfill_runs:
            raise RuntimeError(f"Airflow created no backfill runs for {start} .. {end}; see `learntrack airflow logs`")
        states = api.wait(DAG, [r["dag_run_id"] for r in backfill_runs], timeout=timeout, echo=echo)
        return {_interval_start(r): states[r["dag_run_id"]] for r in backfill_runs}
    finally:
        api.close()


def wait_for_days(settings: Settings, days: list[dt.date], echo: Echo = print, timeout: float = 3 * 3600) -> dict | None:
    """Unpause the DAG and wait for the scheduler's own (catch-up) runs of ``days``; None when every
    one of them had already finished before this call (nothing new will run)."""
    from learntrack import airflow_local

    api = airflow_local.AirflowApi(settings)
    try:
        before = {_interval_start(r): r["state"] for r in api.dag_runs(DAG)}
        if all(before.get(d) in ("success", "failed") for d in days):
            return None
        api.unpause(DAG)
        states: dict[dt.date, str] = {}
        for day in sorted(days):  # max_active_runs=1: the scheduler creates each run after the one before
            deadline = time.monotonic() + timeout
            while (run := next((r for r in api.dag_runs(DAG) if _interval_start(r) == day), None)) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the scheduler created no run for {day} within {timeout:.0f} s; "
                                       "see `learntrack airflow logs scheduler`")
                time.sleep(2)
            states[day] = api.wait(DAG, [run["dag_run_id"]], timeout=timeout, echo=echo)[run["dag_run_id"]]
        return states
    finally:
        api.close()
