"""Every lake table, declared once: layer, name, schema, keys, partitioning and meaning.

Jobs write through these declarations (``lake.delta``), the quality gates derive their schema and
key expectations from them (``expectations.suites``), and ``docs/tables.md`` is generated from
them (``python -m lake.docs``, checked by a test), so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Spark SQL type
    nullable: bool = True
    doc: str = ""


#: Days each layer keeps (a ``Settings`` field), counted on a table's first partition column and
#: applied by the weekly maintenance DAG (``jobs.maintenance``). An unpartitioned table holds
#: current state (replaced or merged in place), so it has no rows to age out.
RETENTION_SETTINGS = {"bronze": "raw_retention_days", "silver": "raw_retention_days",
                      "gold": "aggregate_retention_days"}


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]  # unique together, never null
    partition_by: tuple[str, ...] = ()
    grain: str = ""
    doc: str = ""
    #: Records about runs (what ran, when, how long), not data derived from the source: a re-run
    #: may update them, so same-data comparisons (idempotency, backfill order) leave them out.
    bookkeeping: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def retention_setting(self) -> str | None:
        """The ``Settings`` field holding how many days of rows this table keeps (None: no retention)."""
        return RETENTION_SETTINGS.get(self.layer) if self.partition_by else None

    @property
    def freshness_column(self) -> str | None:
        """The date column whose newest value says which day the table is up to (None: it holds
        current state, and its last commit says how fresh it is)."""
        return self.partition_by[0] if self.partition_by else None

    @property
    def ddl(self) -> str:
        return ", ".join(f"`{c.name}` {c.type}{'' if c.nullable else ' NOT NULL'}" for c in self.columns)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def path(self, lake_root: str) -> str:
        return f"{lake_root.rstrip('/')}/{self.layer}/{self.name}"

    def spark_schema(self):
        from pyspark.sql.types import StructField, StructType

        return StructType([StructField(c.name, _spark_type(c.type), c.nullable) for c in self.columns])

    def arrow_schema(self):
        """The same schema for Arrow record batches (a writer that builds columns, not Python rows)."""
        import pyarrow as pa

        return pa.schema([pa.field(c.name, _arrow_type(c.type), c.nullable) for c in self.columns])


def _build_type(name: str, simple: dict, decimal, array, map_):
    """A type from the SQL type names used in declarations, with one engine's constructors."""
    if name.startswith("DECIMAL(") and name.endswith(")"):
        precision, scale = (int(x) for x in name[8:-1].split(","))
        return decimal(precision, scale)
    if name.startswith("ARRAY<") and name.endswith(">"):
        return array(_build_type(name[6:-1], simple, decimal, array, map_))
    if name.startswith("MAP<") and name.endswith(">"):
        key, value = (_build_type(part.strip(), simple, decimal, array, map_) for part in name[4:-1].split(",", 1))
        return map_(key, value)
    return simple[name]


def _spark_type(name: str):
    """Spark type for a declared type name (no SparkSession needed)."""
    from pyspark.sql import types as T

    simple = {"STRING": T.StringType(), "DOUBLE": T.DoubleType(), "BIGINT": T.LongType(), "INT": T.IntegerType(),
              "DATE": T.DateType(), "TIMESTAMP": T.TimestampType(), "BOOLEAN": T.BooleanType()}
    return _build_type(name, simple, T.DecimalType, T.ArrayType, T.MapType)


def _arrow_type(name: str):
    """Arrow type for the same names; timestamps are UTC instants, as Spark's session time zone."""
    import pyarrow as pa

    simple = {"STRING": pa.string(), "DOUBLE": pa.float64(), "BIGINT": pa.int64(), "INT": pa.int32(),
              "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us", tz="UTC"), "BOOLEAN": pa.bool_()}
    return _build_type(name, simple, pa.decimal128, pa.list_, pa.map_)


C = Column

_RAW_COLUMNS = (
    C("source_id", "STRING", False, "the document's _id as text"),
    C("raw", "STRING", False, "the whole source document as MongoDB relaxed Extended JSON"),
    C("source_updated_at", "TIMESTAMP", False, "the watermark column (ingested_at or updated_at)"),
    C("batch_id", "STRING", False, "extraction batch: the DAG run's interval end"),
    C("extracted_at", "TIMESTAMP", False, "when the extractor read the document"),
    C("ingest_date", "DATE", False, "date of source_updated_at, the partition"),
)


def _bronze(name: str, source: str) -> Table:
    return Table("bronze", name, _RAW_COLUMNS, keys=("source_id", "source_updated_at"),
                 partition_by=("ingest_date",),
                 grain=f"one row per version of a {source} document as extracted",
                 doc=f"Append-only raw copy of MongoDB `{source}`; silver can be rebuilt from it.")


BRONZE_ACTIVITIES = _bronze("activities", "activities")
BRONZE_STUDENTS = _bronze("students", "students")
BRONZE_COURSES = _bronze("courses", "courses")

SILVER_ACTIVITIES = Table(
    "silver", "activities",
    (
        C("event_id", "STRING", False, "client-made stable event id"),
        C("student_id", "STRING", False),
        C("course_id", "STRING", False),
        C("item_id", "STRING", True, "video/quiz/assignment/page the event is about"),
        C("event_type", "STRING", False, "one of learntrack.activity_model.EVENT_TYPES"),
        C("event_time", "TIMESTAMP", False, "when it happened, as the client saw it (UTC)"),
        C("ingested_at", "TIMESTAMP", False, "when it was written to MongoDB"),
        C("event_date", "DATE", False, "date of event_time: late events land in their own day"),
        C("session_id", "STRING"),
        C("device", "STRING"),
        C("region", "STRING", True, "login events: access region"),
        C("country", "STRING"),
        C("ip", "STRING"),
        C("position_s", "DOUBLE", True, "video events: position in the video, seconds"),
        C("duration_s", "DOUBLE", True, "video events: video length, seconds"),
        C("from_position_s", "DOUBLE", True, "video seeks: where playback was before the seek"),
        C("score", "DOUBLE", True, "quiz attempts"),
        C("max_score", "DOUBLE", True, "quiz attempts"),
        C("batch_id", "STRING", False, "bronze batch the row came from"),
    ),
    keys=("event_id",), partition_by=("event_date",),
    grain="one row per distinct event_id",
    doc="Typed, validated, deduplicated activities (MERGE on event_id).",
)

QUARANTINE = Table(
    "silver", "quarantine",
    (
        C("source_table", "STRING", False),
        C("source_id", "STRING", False),
        C("source_updated_at", "TIMESTAMP", False),
        C("rule", "STRING", False, "the first rule the row broke"),
        C("raw", "STRING", False),
        C("batch_id", "STRING", False),
        C("ingest_date", "DATE", False),
    ),
    keys=("source_table", "source_id", "source_updated_at"), partition_by=("ingest_date",),
    grain="one row per rejected bronze row",
    doc="Rows that failed silver's rules, with the rule and the raw document.",
)

_PROFILE_COLUMNS = (
    C("student_id", "STRING", False), C("name", "STRING"), C("email", "STRING"),
    C("home_region", "STRING"), C("country", "STRING"), C("subscription", "STRING"),
    C("enrolled_courses", "ARRAY<STRING>"),
)

SILVER_STUDENTS = Table(
    "silver", "students",
    (*_PROFILE_COLUMNS, C("updated_at", "TIMESTAMP", False)),
    keys=("student_id",), grain="one row per student (current state)",
    doc="Student dimension, latest profile version.",
)

SILVER_STUDENTS_HISTORY = Table(
    "silver", "students_history",
    (
        *_PROFILE_COLUMNS,
        C("valid_from", "TIMESTAMP", False, "the version's updated_at"),
        C("valid_to", "TIMESTAMP", True, "the next version's updated_at; null while current"),
        C("is_current", "BOOLEAN", False),
    ),
    keys=("student_id", "valid_from"), grain="one row per extracted profile version (SCD type 2)",
    doc="Student dimension with history: which region, subscription and courses a student had when. "
        "Versions only accumulate, so applying a batch again or late gives the same rows.",
)

SILVER_COURSE_ITEMS = Table(
    "silver", "course_items",
    (
        C("course_id", "STRING", False), C("item_id", "STRING", False),
        C("item_type", "STRING", False, "video, quiz or pdf"),
        C("duration_s", "DOUBLE", True, "videos"), C("max_score", "DOUBLE", True, "quizzes"),
        C("passing_score", "DOUBLE", True, "quizzes"), C("updated_at", "TIMESTAMP", False),
    ),
    keys=("course_id", "item_id"), grain="one row per content item of a course (current state)",
    doc="Course content dimension (videos, quizzes, PDFs) from the latest course document.",
)

GOLD_COURSE_DAILY = Table(
    "gold", "course_daily_engagement",
    (
        C("event_date", "DATE", False), C("course_id", "STRING", False),
        C("active_learners", "BIGINT", False, "distinct students with any event"),
        C("events", "BIGINT", False, "all events"),
        C("page_views", "BIGINT", False), C("video_plays", "BIGINT", False),
        C("video_completions", "BIGINT", False), C("quiz_attempts", "BIGINT", False),
        C("assignment_submissions", "BIGINT", False), C("logins", "BIGINT", False),
        C("video_watch_seconds", "DOUBLE", False,
          "seconds of video played: each play's position up to the next pause/complete position or the "
          "seek's from-position, capped by the wall-clock time between them (x2 playback speed)"),
        C("avg_quiz_score_pct", "DOUBLE", True, "mean of score/max_score*100 over quiz attempts"),
        C("quiz_pass_rate", "DOUBLE", True, "share of quiz attempts with score >= the quiz's passing score"),
        C("new_learners", "BIGINT", False, "students whose first event in the course is on this day"),
    ),
    keys=("event_date", "course_id"), partition_by=("event_date",),
    grain="one row per course per day with activity",
    doc="Daily course engagement; a day is recomputed whole when any of its events arrive.",
)

SCORE = "DECIMAL(18,6)"  # exact sums, so the daily chain gives the same digits in any run order

GOLD_STUDENT_COURSE_ENGAGEMENT = Table(
    "gold", "student_course_engagement",
    (
        C("as_of_date", "DATE", False, "score as known at the end of this day"),
        C("course_id", "STRING", False),
        C("student_id", "STRING", False),
        C("score", SCORE, False,
          "S(d) = S(d-1) * exp(-lambda) + points of the events first known on d, each "
          "weight(type) * exp(-lambda * (d - min(event day, known day))) (docs/engagement.md)"),
        C("percentile", "DOUBLE", False,
          "mid-rank percentile of the score among the course's students that day: (below + equal/2) / n"),
        C("band", "STRING", False, "low (< band_low), high (> band_high) or normal"),
    ),
    keys=("as_of_date", "course_id", "student_id"), partition_by=("as_of_date",),
    grain="one row per student and course with any event known by the as-of day, per as-of day",
    doc="Per-course engagement score with exponential decay, and the student's percentile band in the course.",
)

GOLD_STUDENT_ENGAGEMENT = Table(
    "gold", "student_engagement",
    (
        C("as_of_date", "DATE", False, "score as known at the end of this day"),
        C("student_id", "STRING", False),
        C("score", SCORE, False, "sum of the student's per-course scores (student_course_engagement)"),
        C("courses", "BIGINT", False, "courses the student has a score in"),
        C("events_recent", "BIGINT", False, "events in the activity window ending on as_of_date"),
        C("events_previous", "BIGINT", False, "events in the window before that"),
        C("quiz_attempts", "BIGINT", False, "quiz attempts in both windows"),
        C("quiz_pass_rate", "DOUBLE", True, "share of those attempts at or above the quiz's passing score"),
        C("last_event_time", "TIMESTAMP", True, "newest event in both windows; null when inactive"),
        C("segment", "STRING", False,
          "inactive, disengaging, struggling, highly_engaged or active (docs/engagement.md)"),
    ),
    keys=("as_of_date", "student_id"), partition_by=("as_of_date",),
    grain="one row per student with any event known by the as-of day, per as-of day",
    doc="Per-student engagement score with exponential time decay, and the student's segment.",
)

GOLD_STUDENT_COURSE_PROGRESS = Table(
    "gold", "student_course_progress",
    (
        C("student_id", "STRING", False), C("course_id", "STRING", False),
        C("videos_total", "BIGINT", False, "videos in the course"),
        C("videos_completed", "BIGINT", False, "distinct videos with a video_complete event"),
        C("completion_pct", "DOUBLE", False, "videos_completed / videos_total * 100"),
        C("status", "STRING", False, "not_started (no video event), in_progress, completed (all videos)"),
        C("quizzes_passed", "BIGINT", False, "distinct quizzes with an attempt at or above the passing score"),
        C("resume_positions", "MAP<STRING,DOUBLE>", False,
          "per video: the position of the student's latest video event (where to resume)"),
        C("first_event_time", "TIMESTAMP", False), C("last_accessed", "TIMESTAMP", False),
        C("completed_video_ids", "ARRAY<STRING>", False, "videos with a video_complete event (sorted)"),
        C("passed_quiz_ids", "ARRAY<STRING>", False, "quizzes passed (sorted)"),
        C("resume_at", "MAP<STRING,TIMESTAMP>", False,
          "per video: when the resume position was recorded (latest event time; ties: larger position)"),
    ),
    keys=("student_id", "course_id"), grain="one row per student and course with any event",
    doc="Progress and resume positions, merged incrementally: each batch's events are folded into the "
        "stored row with min/max/union rules, so a batch applied twice or late changes nothing twice.",
)

GOLD_MULTI_REGION = Table(
    "gold", "multi_region_access",
    (
        C("event_date", "DATE", False, "date of the first access"),
        C("student_id", "STRING", False),
        C("first_event_id", "STRING", False), C("first_region", "STRING", False),
        C("first_at", "TIMESTAMP", False),
        C("second_event_id", "STRING", False), C("second_region", "STRING", False),
        C("second_at", "TIMESTAMP", False),
        C("gap_minutes", "DOUBLE", False),
        C("first_ip", "STRING"), C("second_ip", "STRING"),
    ),
    keys=("first_event_id", "second_event_id"), partition_by=("event_date",),
    grain="one row per pair of logins by one student from two regions within the window",
    doc="Multi-region access candidates with their evidence events (window in settings).",
)

GOLD_SHARED_ACCESS = Table(
    "gold", "shared_access",
    (
        C("event_date", "DATE", False, "UTC day of the logins"),
        C("kind", "STRING", False, "ip or device"),
        C("value", "STRING", False, "the IP address or device"),
        C("students", "BIGINT", False, "distinct students who logged in from it that day"),
        C("student_ids", "ARRAY<STRING>", False, "those students (sorted)"),
    ),
    keys=("event_date", "kind", "value"), partition_by=("event_date",),
    grain="one row per IP or device used by at least shared_access_min_students students on a day",
    doc="Account-sharing candidates: an IP or device many students logged in from on one day (threshold in settings).",
)

GOLD_COMPLETION_FUNNEL = Table(
    "gold", "course_completion_funnel",
    (
        C("as_of_date", "DATE", False, "the newest as-of day a run reached (the snapshot's stamp)"),
        C("course_id", "STRING", False),
        C("enrolled", "BIGINT", False, "students enrolled in the course (profile) or with any event in it"),
        C("started", "BIGINT", False, "of those, students with any video event in the course"),
        C("half_completed", "BIGINT", False, "of those, students with completion_pct >= 50"),
        C("completed", "BIGINT", False, "of those, students who completed every video"),
    ),
    keys=("as_of_date", "course_id"), partition_by=("as_of_date",),
    grain="one row per course (one current snapshot of student_course_progress)",
    doc="Completion funnel, enrolled -> started -> 50% -> completed, of the current progress state. One "
        "snapshot, rewritten by every run and stamped with the newest as-of day, so days run in any order "
        "give the same table; the day-by-day history is in the course and student tables.",
)

STAGE_LEDGER = Table(
    "ops", "stage_ledger",
    (
        C("stage", "STRING", False, "silver, gold, publish_cassandra, publish_neo4j"),
        C("batch_id", "STRING", False, "the run's batch (its interval end) that completed the stage"),
        C("input_batches", "ARRAY<STRING>", False, "the upstream batches this completion took in"),
        C("dates", "ARRAY<DATE>", False, "the days the stage wrote (silver: event days; gold: recomputed days)"),
        C("completed_at", "TIMESTAMP", False),
        C("run_id", "STRING", True, "the Airflow run (or CLI) that completed it"),
    ),
    keys=("stage", "batch_id"),
    grain="one row per stage completed by a run (after its gate passed)",
    doc="Durable \"processed up to\" state: a stage takes every upstream batch after its newest completed "
        "batch and up to the run's own, so a day whose run failed is picked up by the next run "
        "(docs/decisions.md, ADR 17). Insert-only: a re-run keeps the first completion.",
    bookkeeping=True,
)

GOLD_PIPELINE_RUNS = Table(
    "gold", "pipeline_runs",
    (
        C("run_id", "STRING", False, "Airflow run id (or cli__<batch>)"),
        C("stage", "STRING", False, "task id = stage name"),
        C("batch_id", "STRING", False, "the run's interval end"),
        C("interval_start", "TIMESTAMP", False), C("interval_end", "TIMESTAMP", False),
        C("state", "STRING", False, "success, failed, upstream_failed, skipped, ..."),
        C("try_number", "INT", True, "attempt that produced the row (retries count up)"),
        C("started_at", "TIMESTAMP", True), C("duration_s", "DOUBLE", True),
        C("rows_in", "BIGINT", True, "rows the stage read (bronze rows for silver, silver rows for gold)"),
        C("rows_out", "BIGINT", True, "rows the stage wrote or published"),
        C("backlog_batches", "INT", True, "earlier batches this run picked up because a run before it failed"),
        C("gate_checks", "INT", True, "gates: expectations evaluated"),
        C("gate_failed", "INT", True, "gates: expectations failed"),
        C("detail", "STRING", True, "the stage's result, JSON, truncated"),
    ),
    keys=("run_id", "stage"),
    grain="one row per stage of a DAG run (the latest attempt)",
    doc="Pipeline health: what each run's stages read, wrote, checked and how long they took; published "
        "to Cassandra for Grafana's pipeline-health panel.",
    bookkeeping=True,
)

ALL_TABLES = (BRONZE_ACTIVITIES, BRONZE_STUDENTS, BRONZE_COURSES, SILVER_ACTIVITIES, QUARANTINE,
              SILVER_STUDENTS, SILVER_STUDENTS_HISTORY, SILVER_COURSE_ITEMS, GOLD_COURSE_DAILY,
              GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT, GOLD_STUDENT_COURSE_PROGRESS, GOLD_MULTI_REGION,
              GOLD_SHARED_ACCESS, GOLD_COMPLETION_FUNNEL, GOLD_PIPELINE_RUNS, STAGE_LEDGER)
#: Gold tables built from silver by build_gold and checked by gate_gold.
BRONZE_TABLES = tuple(t for t in ALL_TABLES if t.layer == "bronze" and not t.bookkeeping)
SILVER_TABLES = tuple(t for t in ALL_TABLES if t.layer == "silver" and not t.bookkeeping)
GOLD_TABLES = tuple(t for t in ALL_TABLES if t.layer == "gold" and not t.bookkeeping)
#: Tables holding data derived from the source (what same-data comparisons compare).
DATA_TABLES = tuple(t for t in ALL_TABLES if not t.bookkeeping)
