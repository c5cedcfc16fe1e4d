"""`learntrack run` and `backfill` refuse, before creating anything, days that have not ended and
days before the daily DAG's start date (Airflow would run none of their tasks and call it success)."""

import datetime as dt

import pytest

from learntrack.intervals import FutureIntervalError
from learntrack.scheduled_runs import BeforeStartDateError, check_days


@pytest.fixture()
def settings(base_settings, tmp_path):
    return base_settings.with_overrides(airflow_home=str(tmp_path / "airflow"), pipeline_start_date="2026-01-01")


def test_a_day_that_has_not_ended_is_refused(settings):
    # A fixed clock: a "today" taken at collection was already over when a suite crossed
    # midnight UTC (CI, 2026-12-07).
    now = dt.datetime(2026, 6, 15, 0, 0, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(FutureIntervalError, match="has not ended yet"):
        check_days(settings, [dt.date(2026, 6, 15)], now=now)
    with pytest.raises(FutureIntervalError, match="the last day that can run is 2026-06-14"):
        check_days(settings, [dt.date(2026, 6, 14), dt.date(2026, 6, 20)], now=now)
    [yesterday] = check_days(settings, [dt.date(2026, 6, 14)], now=now)
    assert yesterday.end == dt.datetime(2026, 6, 15, tzinfo=dt.timezone.utc) < now
    with pytest.raises(FutureIntervalError):  # the default is the real clock
        check_days(settings, [dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)])


def test_a_day_before_the_start_date_is_refused_with_the_setting_to_change(settings):
    with pytest.raises(BeforeStartDateError, match="LEARNTRACK_PIPELINE_START_DATE=2025-12-31"):
        check_days(settings, [dt.date(2025, 12, 31), dt.date(2026, 1, 2)])


def test_cli_run_for_a_future_day_exits_2_with_the_reason(settings, capsys, monkeypatch):
    from learntrack import cli

    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    in_three_days = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=3)
    assert cli.main(["run", "--date", in_three_days.isoformat()]) == 2
    out = capsys.readouterr().out
    assert "ERROR" in out and "has not ended yet" in out
    assert not (settings.airflow_home_path / "airflow.cfg").exists()  # nothing was started
