"""`learntrack run` and `backfill` refuse, before creating anything, days that have not ended and
days before the daily DAG's start date (Airflow would run none of their tasks and call it success)."""

import datetime as dt

import pytest

from learntrack.intervals import FutureIntervalError
from learntrack.scheduled_runs import BeforeStartDateError, check_days

TODAY = dt.datetime.now(dt.timezone.utc).date()


@pytest.fixture()
def settings(base_settings, tmp_path):
    return base_settings.with_overrides(airflow_home=str(tmp_path / "airflow"), pipeline_start_date="2026-01-01")


def test_a_day_that_has_not_ended_is_refused(settings):
    with pytest.raises(FutureIntervalError, match="has not ended yet"):
        check_days(settings, [TODAY])
    with pytest.raises(FutureIntervalError):
        check_days(settings, [dt.date(2027, 1, 1)])
    [yesterday] = check_days(settings, [TODAY - dt.timedelta(days=1)])
    assert yesterday.end == dt.datetime.combine(TODAY, dt.time(), dt.timezone.utc)


def test_a_day_before_the_start_date_is_refused_with_the_setting_to_change(settings):
    with pytest.raises(BeforeStartDateError, match="LEARNTRACK_PIPELINE_START_DATE=2025-12-31"):
        check_days(settings, [dt.date(2025, 12, 31), dt.date(2026, 1, 2)])


def test_cli_run_for_a_future_day_exits_2_with_the_reason(settings, capsys, monkeypatch):
    from learntrack import cli

    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    assert cli.main(["run", "--date", (TODAY + dt.timedelta(days=3)).isoformat()]) == 2
    out = capsys.readouterr().out
    assert "ERROR" in out and "has not ended yet" in out
    assert not (settings.airflow_home_path / "airflow.cfg").exists()  # nothing was started
