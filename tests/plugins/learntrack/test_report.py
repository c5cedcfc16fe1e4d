"""The report's queries take the day as a date literal, and the browser check used on the real
report (tests/e2e) can fail: a broken chart, a script error and a blank page are all seen."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from learntrack.report import SECTIONS, TREND_DAYS, section_sql

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))


def test_every_section_is_bounded_by_the_report_day():
    day = dt.date(2026, 1, 9)
    for section in SECTIONS:
        sql = section_sql(section, day)
        assert "DATE '2026-01-09'" in sql and "{" not in sql, section.name
    trend = section_sql(next(s for s in SECTIONS if s.name == "engagement_trend"), day)
    assert f"DATE '{(day - dt.timedelta(days=TREND_DAYS - 1)).isoformat()}'" in trend


def test_the_browser_check_sees_a_broken_chart_a_script_error_and_a_blank_page(tmp_path):
    from report_browser import open_headless

    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body data-charts="2">'
                   '<img class="chart" src="data:image/png;base64,AAAA"><img class="chart" src="missing.png">'
                   '<script>window.addEventListener("load", function () {'
                   ' var ok = [].slice.call(document.querySelectorAll("img.chart"))'
                   '   .filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;'
                   ' document.body.setAttribute("data-charts-rendered", String(ok)); notAFunction(); });'
                   '</script></body></html>')
    seen = open_headless(bad, tmp_path / "bad.png", height=600)
    assert (seen.charts, seen.charts_rendered) == (2, 0)
    assert any("notAFunction" in e for e in seen.console_errors), seen.console_errors
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert open_headless(blank, tmp_path / "blank.png", height=600).distinct_colours <= 2
