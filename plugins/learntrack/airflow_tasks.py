"""The bridge from Airflow to the pipeline's stages.

- ``dag_defaults``: what every LearnTrack DAG shares, from settings (light: DAG files import it).
- ``interval_from_context``: the run's data interval, strictly: a run without a real interval or
  for an interval that has not ended fails at once (no retries), naming what was wrong.
- ``run_stage``: one generic task body: settings for the task (environment, then the Airflow
  connections), the stage function, its timing.
- ``record_run``: the last task of the daily DAG: writes ``gold.pipeline_runs`` and publishes it
  to Cassandra for Grafana, then fails the run if any stage did not succeed.
- ``on_task_failure``: records a failed task in ``<home>/ops/failures.jsonl`` and POSTs it to the
  alert webhook when one is configured.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learntrack.intervals import Interval

log = logging.getLogger("learntrack")

UTC = dt.timezone.utc
#: The pool every lake-writing task of both DAGs takes its slot from (created by `airflow up`
#: with 1 slot): maintenance never commits to a Delta table while a daily stage does.
LAKE_POOL = "learntrack_lake"
#: Start date when no pipeline_start_date is configured (catch-up is then off: only the latest
#: complete day runs, so a new deployment never floods the scheduler with old days).
FALLBACK_START = dt.datetime(2026, 1, 1, tzinfo=UTC)
#: The daily DAG's schedule: one closed UTC day per run, [midnight, next midnight).
DAILY_CRON = "0 0 * * *"
#: Weekly maintenance: Sunday noon UTC, far from the daily run at midnight.
MAINTENANCE_CRON = "0 12 * * 0"


def dag_defaults(settings=None) -> dict[str, Any]:
    from learntrack.settings import Settings

    import pendulum  # Airflow serialises a DAG's time zone only as a pendulum zone

    s = settings or Settings.from_env()
    first = dt.date.fromisoformat(s.pipeline_start_date) if s.pipeline_start_date else FALLBACK_START.date()
    start = pendulum.datetime(first.year, first.month, first.day, tz="UTC")
    return {
        "start_date": start,
        "catchup": bool(s.pipeline_start_date),
        "max_active_runs": 1,
        "default_args": {
            "owner": "learntrack-data",
            "retries": s.task_retries,
            "retry_delay": dt.timedelta(seconds=s.task_retry_delay_s),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": dt.timedelta(seconds=s.task_max_retry_delay_s),
            "on_failure_callback": on_task_failure,
        },
        "tags": ["learntrack"],
    }


# --------------------------------------------------------------------------------------------
# the interval

def interval_from_context(ctx) -> Interval:
    """The run's data interval. Scheduled, catch-up and backfill runs of a data-interval timetable
    always carry one; a run that does not (or whose interval is still open) is refused."""
    from airflow.sdk.exceptions import AirflowFailException

    from learntrack.intervals import FutureIntervalError, Interval

    start, end = ctx.get("data_interval_start"), ctx.get("data_interval_end")
    if start is None or end is None or end <= start:
        raise AirflowFailException(
            f"run {ctx['dag_run'].run_id} has no data interval ({start} .. {end}); LearnTrack processes closed "
            "intervals only: trigger it with a logical date or data_interval_start/end "
            "(`learntrack run --date D` does), or let the scheduler create it")
    def plain(value) -> dt.datetime:  # pendulum's DateTime is a subclass pyspark refuses
        return dt.datetime.fromtimestamp(value.timestamp(), UTC)

    try:
        return Interval(plain(start), plain(end)).refuse_future()
    except FutureIntervalError as exc:
        raise AirflowFailException(str(exc)) from exc


def settings_for_task():
    """Settings from the environment, with the store addresses taken from the Airflow connections
    ``learntrack_mongo``/``_redis``/``_cassandra``/``_neo4j`` where they are defined (a secrets
    backend or AIRFLOW_CONN_* in production; `learntrack airflow up` derives them from settings)."""
    from learntrack.settings import get_settings

    settings = get_settings()
    try:
        from learntrack.airflow_local import settings_from_connections
    except ImportError:  # pragma: no cover - the module ships with the project
        return settings
    return settings_from_connections(settings)


# --------------------------------------------------------------------------------------------
# task bodies

def run_stage(name: str, **upstream):
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from expectations.gate import GateFailed
    from learntrack.pipeline import STAGES, call_stage, stage_metrics

    ctx = get_current_context()
    interval = interval_from_context(ctx)
    stage = STAGES[name]
    log.info("learntrack stage %s for interval %s (batch %s, try %s)", name, interval, interval.batch_id,
             ctx["ti"].try_number)
    started = dt.datetime.now(UTC)
    t0 = time.monotonic()
    kwargs = dict(upstream)
    if "progress" in inspect.signature(stage.fn).parameters:  # e.g. extraction: its chunks in the task log
        kwargs["progress"] = progress_logger(name)
    try:
        result = call_stage(stage, settings_for_task(), interval, **kwargs)
    except GateFailed as exc:
        # No retry: the gate has restored the tables it checks, so a retry would validate the
        # restored (older) rows, pass, and record the batch as completed.
        raise AirflowFailException(str(exc)) from exc
    took = time.monotonic() - t0
    log.info("learntrack stage %s result: %s", name, _short(result))
    log.info("learntrack stage %s done in %.1fs: %s", name, took, stage_metrics(result))
    if isinstance(result, dict):
        result = {**result, "_run": {"started_at": started.isoformat(), "duration_s": round(took, 3),
                                     "try_number": ctx["ti"].try_number}}
    return result


def progress_logger(name: str):
    """A stage's ``progress`` callback under Airflow: each message goes to the task log (the CLI
    shows these lines while `learntrack` runs the DAG)."""
    def progress(message: str) -> None:
        log.info("learntrack stage %s progress: %s", name, message)

    return progress


def _short(value: Any, limit: int = 600) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def record_run(stage_names: list[str]):
    """Write one gold.pipeline_runs row per stage of this run (state, timing, rows, gate outcome,
    backlog), publish them to Cassandra, then fail if any stage did not succeed, so the run's
    state stays what its stages made it."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from learntrack.pipeline import stage_metrics
    from learntrack.run_records import write_run_records

    ctx = get_current_context()
    ti, run = ctx["ti"], ctx["dag_run"]
    interval = interval_from_context(ctx)
    states = ti.get_task_states(dag_id=run.dag_id, run_ids=[run.run_id], task_ids=stage_names)
    states = states.get(run.run_id, states)
    results = dict(zip(stage_names, ti.xcom_pull(task_ids=stage_names) or [None] * len(stage_names)))
    rows = []
    for name in stage_names:
        result = results.get(name)
        meta = (result or {}).get("_run", {}) if isinstance(result, dict) else {}
        rows.append({"stage": name, "state": str(states.get(name) or "unknown"), **stage_metrics(result),
                     "try_number": meta.get("try_number"), "started_at": meta.get("started_at"),
                     "duration_s": meta.get("duration_s"),
                     "detail": _short({k: v for k, v in (result or {}).items() if k != "_run"}
                                      if isinstance(result, dict) else result, 2000)})
    write_run_records(settings_for_task(), run.run_id, interval, rows)
    failed = [r["stage"] for r in rows if r["state"] != "success"]
    if failed:
        raise AirflowFailException(f"stages not successful in run {run.run_id}: {', '.join(failed)}")
    return {"stages": len(rows)}


def on_task_failure(context) -> None:
    """Keep a durable record of every failed task and notify the webhook, if any. Never raises:
    a broken notification must not hide the failure it reports."""
    from learntrack.settings import get_settings

    try:
        settings = get_settings()
        ti = context.get("ti") or context.get("task_instance")
        exc = context.get("exception")
        record = {"at": dt.datetime.now(UTC).isoformat(), "dag_id": getattr(ti, "dag_id", None),
                  "task_id": getattr(ti, "task_id", None), "run_id": getattr(ti, "run_id", None),
                  "try_number": getattr(ti, "try_number", None), "error": str(exc)[:2000] if exc else None}
        path = settings.home_path / "ops" / "failures.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if settings.alert_webhook_url:
            import urllib.request

            text = f"LearnTrack: {record['dag_id']}.{record['task_id']} failed in {record['run_id']}: {record['error']}"
            req = urllib.request.Request(settings.alert_webhook_url, data=json.dumps({"text": text, **record}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            urllib.request.urlopen(req, timeout=10).close()
    except Exception:  # noqa: BLE001
        log.exception("learntrack failure callback could not record or notify")
