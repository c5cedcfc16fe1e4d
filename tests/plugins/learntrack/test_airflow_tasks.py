"""The Airflow task body: a stage that reports progress has it written to the task log."""

import datetime as dt
import logging

UTC = dt.timezone.utc


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_run_stage_logs_the_progress_of_stages_that_report_it(monkeypatch):
    import airflow.sdk

    from learntrack import airflow_tasks, cli, pipeline
    from learntrack.settings import Settings

    seen = {}

    def extract_like(settings, interval, progress=None):
        seen["progress"] = progress
        if progress:
            progress("bronze.activities: 200000/450000 rows committed")
        return {"rows_out": 450000}

    def gate_like(settings, interval, extract_like):
        seen["gate_input"] = extract_like
        return {"gate_checks": 1, "gate_failed": 0}

    class TaskInstance:
        try_number = 1

    ctx = {"data_interval_start": dt.datetime(2026, 1, 1, tzinfo=UTC),
           "data_interval_end": dt.datetime(2026, 1, 2, tzinfo=UTC), "ti": TaskInstance(), "dag_run": None}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: ctx, raising=False)
    monkeypatch.setattr(pipeline, "STAGES", {"extract_like": pipeline.Stage(extract_like),
                                             "gate_like": pipeline.Stage(gate_like)})
    monkeypatch.setattr(airflow_tasks, "settings_for_task", lambda: Settings.from_env({}))

    logger = logging.getLogger("learntrack")  # Airflow's logging setup may not propagate to the root
    collect = Collect()
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(collect)
    try:
        result = airflow_tasks.run_stage("extract_like")
    finally:
        logger.removeHandler(collect)
    assert result["rows_out"] == 450000 and seen["progress"] is not None
    line = "learntrack stage extract_like progress: bronze.activities: 200000/450000 rows committed"
    assert line in collect.messages

    # a stage without a progress parameter gets none, only its upstream results
    airflow_tasks.run_stage("gate_like", extract_like={"rows_out": 1})
    assert seen["gate_input"] == {"rows_out": 1}

    # and the CLI running the DAG shows the line as Airflow logs it
    logged = f"2026-11-22T17:09:40.1Z [info     ] {line} [learntrack] loc=airflow_tasks.py:143"
    assert cli._progress_line(logged).split() == ["extract_like", "bronze.activities:", "200000/450000", "rows",
                                                   "committed"]
