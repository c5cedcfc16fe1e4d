"""Expectation suites, one per layer and table. Schema and key expectations come from the table
declarations in ``lake.tables``; the value rules are the domain's (event types, positions within
the video, scores within bounds, write time after event time)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lake.tables import (GOLD_COMPLETION_FUNNEL, GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_SHARED_ACCESS,
                         GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_COURSE_PROGRESS, GOLD_STUDENT_ENGAGEMENT,
                         SILVER_ACTIVITIES, Table)
from learntrack.activity_model import EVENT_TYPES, MAX_CLOCK_SKEW


@dataclass
class SuiteSpec:
    """A suite's name and expectations; ``expectations.gate`` turns it into a GX suite inside a
    data context (GX 1.x cannot build suites before a context exists)."""

    name: str
    expectations: list = field(default_factory=list)


def _structure(table: Table) -> list:
    import great_expectations.expectations as gxe

    exps = [gxe.ExpectTableColumnsToMatchSet(column_set=table.column_names, exact_match=True)]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c.name) for c in table.columns if not c.nullable]
    if len(table.keys) == 1:
        exps.append(gxe.ExpectColumnValuesToBeUnique(column=table.keys[0]))
    else:
        exps.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(table.keys)))
    return exps


def _table_suite(table: Table, extra: list, name: str | None = None) -> SuiteSpec:
    """The table's structure expectations plus ``extra``."""
    return SuiteSpec(name=name or table.qualified, expectations=_structure(table) + list(extra))


def _between(column: str, lo=None, hi=None):
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=lo, max_value=hi)


def _at_least(column_a: str, column_b: str, **kw):
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=column_a, column_B=column_b, or_equal=True, **kw)


def _in_set(column: str, values) -> object:
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values))


def bronze_batch_suite(table: Table, expected_rows: int):
    """A bronze batch holds exactly the documents MongoDB counted for the extraction range."""
    import great_expectations.expectations as gxe

    return _table_suite(table, [gxe.ExpectTableRowCountToEqual(value=expected_rows)], name=f"bronze.{table.name}.batch")


def bronze_completeness_suite(table: Table, exact: bool):
    """Over ``expectations.gates.bronze_completeness``: no MongoDB document of a reconciled bucket is
    missing from bronze; for an insert-only source, bronze holds no more than MongoDB either."""
    exps = [_between("missing_from_bronze", 0, 0)]
    if exact:
        exps.append(_at_least("in_mongo", "in_bronze"))
    return SuiteSpec(name=f"bronze.{table.name}.completeness", expectations=exps)


def silver_activities_suite():
    return _table_suite(SILVER_ACTIVITIES, [
        _in_set("event_type", EVENT_TYPES),
        _at_least("duration_s", "position_s", ignore_row_if="either_value_is_missing"),
        _between("position_s", 0),
        _at_least("max_score", "score", ignore_row_if="either_value_is_missing"),
        _between("score", 0),
    ])


def silver_timing_suite():
    """Validated over a projection with ``write_lag_s = ingested_at - event_time``."""
    return SuiteSpec(name="silver.activities.timing",
                     expectations=[_between("write_lag_s", -MAX_CLOCK_SKEW.total_seconds())])


def gold_course_daily_suite():
    counts = ("page_views", "video_plays", "video_completions", "quiz_attempts", "assignment_submissions", "logins",
              "video_watch_seconds", "new_learners")
    return _table_suite(GOLD_COURSE_DAILY, [
        _between("active_learners", 1), _at_least("events", "active_learners"),
        _between("avg_quiz_score_pct", 0, 100), *[_between(c, 0) for c in counts],
        _between("quiz_pass_rate", 0, 1), _at_least("active_learners", "new_learners"),
    ])


def gold_student_course_progress_suite():
    return _table_suite(GOLD_STUDENT_COURSE_PROGRESS, [
        _between("completion_pct", 0, 100), _in_set("status", ["not_started", "in_progress", "completed"]),
        _at_least("last_accessed", "first_event_time"),
    ])


def gold_multi_region_suite(window_minutes: int):
    return _table_suite(GOLD_MULTI_REGION, [_between("gap_minutes", 0, window_minutes),
                                            _at_least("second_at", "first_at")])


def gold_shared_access_suite(min_students: int):
    return _table_suite(GOLD_SHARED_ACCESS, [_in_set("kind", ["ip", "device"]), _between("students", min_students)])


def gold_completion_funnel_suite():
    """Each stage of the funnel holds no more students than the one before."""
    return _table_suite(GOLD_COMPLETION_FUNNEL, [
        _between("enrolled", 1), _at_least("enrolled", "started"), _at_least("started", "half_completed"),
        _at_least("half_completed", "completed"), _between("completed", 0),
    ])


def gold_student_engagement_suite():
    from jobs.engagement import SEGMENTS

    return _table_suite(GOLD_STUDENT_ENGAGEMENT, [
        _between("score", 0), _between("courses", 1), _in_set("segment", SEGMENTS), _between("quiz_pass_rate", 0, 1),
    ])


def gold_student_course_engagement_suite():
    from jobs.engagement import BANDS

    return _table_suite(GOLD_STUDENT_COURSE_ENGAGEMENT, [
        _between("score", 0), _between("percentile", 0, 1), _in_set("band", BANDS),
    ])


def reconciliation_suite(name: str, equal_pairs: list[tuple[str, str]], zero_columns: list[str] = ()):
    """Counts between layers, validated over a one-row frame of counts: each pair must be equal
    and each zero column must be 0 (for example, rows that did not arrive where they should)."""
    import great_expectations.expectations as gxe

    return SuiteSpec(name=name, expectations=[gxe.ExpectColumnPairValuesToBeEqual(column_A=a, column_B=b)
                                              for a, b in equal_pairs] + [_between(c, 0, 0) for c in zero_columns])


def freshness_suite(name: str, max_age_hours: float):
    """Over a one-row frame with ``newest_age_hours``: the newest source write extracted up to the
    interval end is at most ``max_age_hours`` older than the end (null: nothing recent at all)."""
    import great_expectations.expectations as gxe

    return SuiteSpec(name=name, expectations=[gxe.ExpectColumnValuesToNotBeNull(column="newest_age_hours"),
                                              _between("newest_age_hours", 0, max_age_hours)])
