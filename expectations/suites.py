"""Expectation suites, one per layer and table. Schema and key expectations come from the table
declarations in ``lake.tables``; the value rules are the domain's (event types, positions within
the video, scores within bounds, write time after event time)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lake.tables import (GOLD_COURSE_DAILY, GOLD_MULTI_REGION, GOLD_STUDENT_COURSE_ENGAGEMENT,
                         GOLD_STUDENT_COURSE_PROGRESS, GOLD_STUDENT_ENGAGEMENT, SILVER_ACTIVITIES, Table)
from learntrack.activity_model import EVENT_TYPES, MAX_CLOCK_SKEW


@dataclass
class SuiteSpec:
    """A suite's name and expectations; ``expectations.gate`` turns it into a GX suite inside a
    data context (GX 1.x cannot build suites before a context exists)."""

    name: str
    expectations: list = field(default_factory=list)

    def add_expectation(self, expectation) -> None:
        self.expectations.append(expectation)


def _structure(table: Table) -> list:
    import great_expectations.expectations as gxe

    exps = [gxe.ExpectTableColumnsToMatchSet(column_set=table.column_names, exact_match=True)]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c.name) for c in table.columns if not c.nullable]
    if len(table.keys) == 1:
        exps.append(gxe.ExpectColumnValuesToBeUnique(column=table.keys[0]))
    else:
        exps.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(table.keys)))
    return exps


def bronze_batch_suite(table: Table, expected_rows: int):
    """A bronze batch holds exactly the documents MongoDB counted for the extraction range."""
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name=f"bronze.{table.name}.batch")
    for e in _structure(table):
        suite.add_expectation(e)
    suite.add_expectation(gxe.ExpectTableRowCountToEqual(value=expected_rows))
    return suite


def silver_activities_suite():
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name="silver.activities")
    for e in _structure(SILVER_ACTIVITIES):
        suite.add_expectation(e)
    for e in (
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="duration_s", column_B="position_s", or_equal=True,
                                                    ignore_row_if="either_value_is_missing"),
        gxe.ExpectColumnValuesToBeBetween(column="position_s", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="max_score", column_B="score", or_equal=True,
                                                    ignore_row_if="either_value_is_missing"),
        gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0),
    ):
        suite.add_expectation(e)
    return suite


def silver_timing_suite():
    """Validated over a projection with ``write_lag_s = ingested_at - event_time``."""
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name="silver.activities.timing")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="write_lag_s", min_value=-MAX_CLOCK_SKEW.total_seconds()))
    return suite


def gold_course_daily_suite():
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name="gold.course_daily_engagement")
    for e in _structure(GOLD_COURSE_DAILY):
        suite.add_expectation(e)
    for e in (
        gxe.ExpectColumnValuesToBeBetween(column="active_learners", min_value=1),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="events", column_B="active_learners", or_equal=True),
        gxe.ExpectColumnValuesToBeBetween(column="avg_quiz_score_pct", min_value=0, max_value=100),
    ):
        suite.add_expectation(e)
    for c in ("page_views", "video_plays", "video_completions", "quiz_attempts", "assignment_submissions", "logins",
              "video_watch_seconds", "new_learners"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="quiz_pass_rate", min_value=0, max_value=1))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="active_learners",
                                                                      column_B="new_learners", or_equal=True))
    return suite


def gold_student_course_progress_suite():
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name="gold.student_course_progress")
    for e in _structure(GOLD_STUDENT_COURSE_PROGRESS):
        suite.add_expectation(e)
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="completion_pct", min_value=0, max_value=100))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="status",
                                                         value_set=["not_started", "in_progress", "completed"]))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="last_accessed",
                                                                      column_B="first_event_time", or_equal=True))
    return suite


def gold_multi_region_suite(window_minutes: int):
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name="gold.multi_region_access")
    for e in _structure(GOLD_MULTI_REGION):
        suite.add_expectation(e)
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="gap_minutes", min_value=0,
                                                            max_value=window_minutes))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="second_at", column_B="first_at",
                                                                      or_equal=True))
    return suite


def gold_student_engagement_suite():
    import great_expectations.expectations as gxe

    from jobs.engagement import SEGMENTS

    suite = SuiteSpec(name="gold.student_engagement")
    for e in _structure(GOLD_STUDENT_ENGAGEMENT):
        suite.add_expectation(e)
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="courses", min_value=1))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="segment", value_set=list(SEGMENTS)))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="quiz_pass_rate", min_value=0, max_value=1))
    return suite


def gold_student_course_engagement_suite():
    import great_expectations.expectations as gxe

    from jobs.engagement import BANDS

    suite = SuiteSpec(name="gold.student_course_engagement")
    for e in _structure(GOLD_STUDENT_COURSE_ENGAGEMENT):
        suite.add_expectation(e)
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="percentile", min_value=0, max_value=1))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="band", value_set=list(BANDS)))
    return suite


def reconciliation_suite(name: str, equal_pairs: list[tuple[str, str]], zero_columns: list[str] = ()):
    """Counts between layers, validated over a one-row frame of counts: each pair must be equal
    and each zero column must be 0 (for example, rows that did not arrive where they should)."""
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name=name)
    for a, b in equal_pairs:
        suite.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A=a, column_B=b))
    for c in zero_columns:
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=0))
    return suite


def freshness_suite(name: str, max_age_hours: float):
    """Over a one-row frame with ``newest_age_hours``: the newest source write extracted up to the
    interval end is at most ``max_age_hours`` older than the end (null: nothing recent at all)."""
    import great_expectations.expectations as gxe

    suite = SuiteSpec(name=name)
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="newest_age_hours"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="newest_age_hours", min_value=0,
                                                            max_value=max_age_hours))
    return suite
