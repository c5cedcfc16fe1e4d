"""``learntrack report --date D``: one self-contained HTML page of charts, and the charts as PNGs.

For people who would rather look than query: the engagement trend, the top courses, the completion
funnel, how students moved between segments, and what the quality gates kept out. Every chart is a
SQL query on the lake by table name (``lake.sql``; DuckDB for a local lake, no JVM), drawn with
matplotlib; the page embeds the PNGs (base64) and the numbers behind each chart as a table, and
lists each table's freshness with a link to the data dictionary (docs/tables.md). The day is a
``datetime.date``, formatted into the queries as a date literal: no user text reaches the SQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from learntrack.settings import Settings

#: Days of history the trend and quality sections cover, ending with the report's day.
TREND_DAYS = 30
RECENT_DAYS = 7
DICTIONARY = Path(__file__).resolve().parents[2] / "docs" / "tables.md"


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    why: str
    sql: str  # {day}, {trend_start}, {recent_start}: date literals
    chart: str  # line, barh, bar, stacked


SECTIONS = (
    Section("engagement_trend", "Engagement trend",
            f"Events and hours of video watched per day, over the {TREND_DAYS} days up to the report's day.",
            """SELECT event_date, CAST(sum(events) AS BIGINT) AS events, round(sum(video_watch_seconds) / 3600.0, 2) AS watch_hours,
                      CAST(sum(active_learners) AS BIGINT) AS learner_courses
               FROM gold.course_daily_engagement
               WHERE event_date BETWEEN {trend_start} AND {day}
               GROUP BY event_date ORDER BY event_date""", "line"),
    Section("top_courses", "Top courses",
            "The ten courses with the most video watched on the report's day.",
            """SELECT course_id, round(video_watch_seconds / 3600.0, 2) AS watch_hours, active_learners, events
               FROM gold.course_daily_engagement
               WHERE event_date = {day}
               ORDER BY video_watch_seconds DESC, course_id LIMIT 10""", "barh"),
    Section("completion_funnel", "Completion funnel",
            "Enrolments across all courses, as of the newest snapshot up to the report's day: how many "
            "started, got half way, and completed.",
            """SELECT 'enrolled' AS step, CAST(sum(enrolled) AS BIGINT) AS students FROM f
               UNION ALL SELECT 'started', CAST(sum(started) AS BIGINT) FROM f
               UNION ALL SELECT 'half way', CAST(sum(half_completed) AS BIGINT) FROM f
               UNION ALL SELECT 'completed', CAST(sum(completed) AS BIGINT) FROM f""", "bar"),
    Section("segment_flows", "Segment flows",
            "Students by engagement segment on the report's day, split by the segment they were in on the "
            "previous scored day ('(new)': not scored before).",
            """WITH seg AS (
                   SELECT as_of_date, student_id, segment,
                          lag(segment) OVER (PARTITION BY student_id ORDER BY as_of_date) AS previous_segment
                   FROM gold.student_engagement WHERE as_of_date <= {day})
               SELECT segment, coalesce(previous_segment, '(new)') AS previous_segment, count(*) AS students
               FROM seg WHERE as_of_date = {day}
               GROUP BY 1, 2 ORDER BY segment, previous_segment""", "stacked"),
    Section("quarantine_reasons", "Quarantine reasons",
            f"Source documents silver kept out, by rule, written in the {RECENT_DAYS} days up to the report's day.",
            """SELECT rule, count(*) AS documents FROM silver.quarantine
               WHERE ingest_date BETWEEN {recent_start} AND {day}
               GROUP BY rule ORDER BY documents DESC, rule""", "barh"),
    Section("gate_outcomes", "Quality gates",
            f"Expectations each gate evaluated and failed, summed over the runs of the {RECENT_DAYS} days up "
            "to the report's day (latest attempt of each run).",
            """SELECT stage, count(*) AS runs, CAST(sum(gate_checks) AS BIGINT) AS checks, CAST(sum(gate_failed) AS BIGINT) AS failed
               FROM gold.pipeline_runs
               WHERE stage LIKE 'gate_%' AND CAST(interval_start AS DATE) BETWEEN {recent_start} AND {day}
               GROUP BY stage ORDER BY stage""", "bar"),
)

_FUNNEL_SNAPSHOT = ("WITH f AS (SELECT * FROM gold.course_completion_funnel WHERE as_of_date = "
                    "(SELECT max(as_of_date) FROM gold.course_completion_funnel WHERE as_of_date <= {day})) ")


def section_sql(section: Section, day: dt.date) -> str:
    literal = lambda d: f"DATE '{d.isoformat()}'"  # noqa: E731 - a date object, never user text
    sql = (_FUNNEL_SNAPSHOT + section.sql) if section.name == "completion_funnel" else section.sql
    return sql.format(day=literal(day), trend_start=literal(day - dt.timedelta(days=TREND_DAYS - 1)),
                      recent_start=literal(day - dt.timedelta(days=RECENT_DAYS - 1)))


@dataclass
class SectionResult:
    section: Section
    columns: list[str]
    rows: list[tuple]
    png: Path | None = None
    error: str | None = None  # a table not written yet: said on the page, the rest still renders


def report_data(settings: Settings, day: dt.date) -> list[SectionResult]:
    from lake.sql import LakeSQL, LakeSQLError

    lake = LakeSQL(settings)
    out = []
    try:
        for section in SECTIONS:
            try:
                result = lake.query(section_sql(section, day))
                out.append(SectionResult(section, result.columns, result.rows()))
            except LakeSQLError as exc:
                out.append(SectionResult(section, [], [], error=str(exc)))
    finally:
        lake.close()
    return out


def _draw(result: SectionResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, whatever the host has for a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    cols, rows = result.columns, result.rows
    kind = result.section.chart
    if not rows:
        ax.text(0.5, 0.5, "no rows for this day", ha="center", va="center", fontsize=14, color="#666")
        ax.set_axis_off()
    elif kind == "line":
        days = [r[0] for r in rows]
        ax.plot(days, [r[1] for r in rows], marker="o", color="#1f77b4", label=cols[1])
        ax.set_ylabel(cols[1])
        twin = ax.twinx()
        twin.plot(days, [r[2] for r in rows], marker="s", color="#ff7f0e", label=cols[2])
        twin.set_ylabel(cols[2])
        from matplotlib.dates import DateFormatter

        ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
        fig.autofmt_xdate()
        fig.legend(loc="upper left")
    elif kind == "barh":
        labels = [str(r[0]) for r in rows][::-1]
        ax.barh(labels, [r[1] for r in rows][::-1], color="#2ca02c")
        ax.set_xlabel(cols[1])
    elif kind == "bar" and result.section.name == "gate_outcomes":
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r[2] for r in rows], width=0.4, label="checks", color="#1f77b4")
        ax.bar([i + 0.2 for i in x], [r[3] for r in rows], width=0.4, label="failed", color="#d62728")
        ax.set_xticks(list(x), [str(r[0]) for r in rows])
        ax.legend()
    elif kind == "bar":
        ax.bar([str(r[0]) for r in rows], [r[1] or 0 for r in rows], color="#9467bd")
        ax.set_ylabel(cols[1])
    elif kind == "stacked":
        segments = sorted({r[0] for r in rows})
        previous = sorted({r[1] for r in rows})
        bottom = [0] * len(segments)
        for prev in previous:
            heights = [sum(r[2] for r in rows if r[0] == s and r[1] == prev) for s in segments]
            ax.bar(segments, heights, bottom=bottom, label=f"from {prev}")
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_ylabel("students")
        ax.legend(fontsize=8)
    ax.set_title(result.section.title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _table_html(result: SectionResult, max_rows: int = 40) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in result.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in result.rows[:max_rows])
    more = f"<p class='note'>{len(result.rows) - max_rows} more rows not shown.</p>" if len(result.rows) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _freshness_html(settings: Settings, day: dt.date) -> str:
    from lake.status import render_status, table_status
    from lake.storage import delta_rs_readable

    if not delta_rs_readable(settings.lake_uri):
        return "<p class='note'>Table freshness is listed for local, s3a:// and abfss:// lakes only.</p>"
    return f"<pre>{html.escape(render_status(table_status(settings), day))}</pre>"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LearnTrack report {day}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} .note {{ color: #666; font-size: 0.9em; }}
section {{ margin: 2em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-top: 0.5em; }}
td, th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: right; }} th {{ background: #f4f4f4; }}
.error {{ color: #a00; }} pre {{ font-size: 0.8em; overflow-x: auto; }}
</style></head>
<body data-charts="{charts}">
<h1>LearnTrack report for {day}</h1>
<p class="note">Generated {generated} UTC from the lake at {lake}. Every chart is a query on the lake by
table name; the numbers behind it follow the chart. What each table holds, and for how long:
<a href="{dictionary}">the data dictionary</a>.</p>
{sections}
<section id="freshness"><h2>Table freshness</h2>
<p class="note">Version, last commit and newest day of every lake table (the Delta log).</p>{freshness}</section>
<script>
// Marks the page once every chart image has decoded, so a headless browser can tell a page whose
// charts rendered from one with a broken image.
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img.chart"));
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-charts-rendered", String(ok));
}});
</script>
</body></html>
"""


def write_report(settings: Settings, day: dt.date, out_dir: Path,
                 echo: Callable[[str], None] = print) -> tuple[Path, list[SectionResult]]:
    """The HTML page and one PNG per chart in ``out_dir``; returns the page and the data behind it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = report_data(settings, day)
    parts = []
    for result in results:
        sec = result.section
        block = [f"<section id='{sec.name}'><h2>{html.escape(sec.title)}</h2><p class='note'>{html.escape(sec.why)}</p>"]
        if result.error:
            block.append(f"<p class='error'>{html.escape(result.error)}</p>")
        else:
            result.png = out_dir / f"{sec.name}-{day.isoformat()}.png"
            _draw(result, result.png)
            data = base64.b64encode(result.png.read_bytes()).decode("ascii")
            block.append(f"<img class='chart' alt='{html.escape(sec.title)}' src='data:image/png;base64,{data}'>")
            block.append(_table_html(result))
            echo(f"  {sec.title}: {len(result.rows):,} rows -> {result.png.name}")
        block.append("</section>")
        parts.append("".join(block))
    page = out_dir / f"report-{day.isoformat()}.html"
    page.write_text(PAGE.format(
        day=day.isoformat(), charts=sum(1 for r in results if r.png), lake=html.escape(settings.lake_uri),
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        dictionary=html.escape(DICTIONARY.as_uri()), sections="\n".join(parts),
        freshness=_freshness_html(settings, day)), encoding="utf-8")
    return page, results
