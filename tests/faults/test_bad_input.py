"""A corpus of bad input written raw to MongoDB (what a buggy client or another writer does), run
through every stage and sink: each document is quarantined with its rule or accepted by a
documented rule, no stage crashes, and the counts reconcile for the batch."""

import datetime as dt

import pytest
from bson.datetime_ms import DatetimeMS
from bson.int64 import Int64

from learntrack.activity_model import Rule
from learntrack.mongo_ops import write_buckets

pytestmark = [pytest.mark.stack, pytest.mark.spark]

UTC = dt.timezone.utc
DAY = dt.date(2026, 3, 10)
WRITTEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
AT = WRITTEN - dt.timedelta(minutes=30)
KEPT, DUPLICATE = "kept", "duplicate"
#: The local server (FerretDB) refuses these on write (MongoDB stores them; silver then quarantines
#: them by the same rules: tests/plugins/learntrack/test_activity_model.py).
REFUSED_BY_SERVER = "refused by the server"


def video(eid, **kw):
    d = {"event_id": eid, "student_id": "s1", "course_id": "c1", "event_type": "video_pause", "item_id": "v1",
         "event_time": AT, "position_s": 10.0, "duration_s": 600.0, "session_id": "x1", "device": "web"}
    d.update(kw)
    return {k: v for k, v in d.items() if v is not ...}


def page(eid, **kw):
    return video(eid, **{"event_type": "page_view", "item_id": "c1", "position_s": ..., "duration_s": ..., **kw})


#: (case name = the document's _id, document, what must become of it).
CORPUS = [
    ("ok-video", video("ok-video"), KEPT),
    ("ok-page", page("ok-page"), KEPT),
    ("ok-int64-position", video("ok-int64-position", position_s=Int64(12), duration_s=Int64(600)), KEPT),
    ("ok-nested-same-name", page("ok-nested-same-name", meta={"student_id": 5, "event_time": "not a date"}), KEPT),
    ("ok-non-latin-12kB", page("ok-non-latin-12kB", note="\u4e2d" * 4000), KEPT),
    ("ok-skew-within-5-minutes", page("ok-skew-within-5-minutes", event_time=WRITTEN + dt.timedelta(minutes=4)), KEPT),
    ("ok-unknown-extra-field", page("ok-unknown-extra-field", referrer={"utm": ["a", "b"]}), KEPT),
    ("dup-payload", video("dup-payload", position_s=20.0), KEPT),
    ("dup-payload-2nd", video("dup-payload", position_s=30.0), DUPLICATE),  # the first write wins
    ("bad-event-id-int", video("bad-event-id-int", event_id=17), Rule.EVENT_ID),
    ("bad-event-id-missing", video("bad-event-id-missing", event_id=...), Rule.EVENT_ID),
    ("bad-event-id-newline", video("bad-event-id-newline", event_id="e-nl\n"), Rule.EVENT_ID),
    ("bad-student-id-u2028", video("bad-student-id-u2028", student_id="s1\u2028"), Rule.STUDENT_ID),
    ("bad-student-id-crlf", video("bad-student-id-crlf", student_id="s1\r\n"), Rule.STUDENT_ID),
    ("bad-student-id-object", video("bad-student-id-object", student_id={"id": "s1"}), Rule.STUDENT_ID),
    ("bad-course-id-control", video("bad-course-id-control", course_id="c\x071"), Rule.COURSE_ID),
    ("bad-course-id-array", video("bad-course-id-array", course_id=["c1"]), Rule.COURSE_ID),
    ("bad-event-type", video("bad-event-type", event_type="teleport"), Rule.EVENT_TYPE),
    ("bad-event-type-int", video("bad-event-type-int", event_type=3), Rule.EVENT_TYPE),
    ("bad-time-string", video("bad-time-string", event_time="2026-03-10T11:30:00Z"), Rule.EVENT_TIME),
    ("bad-time-with-offset", video("bad-time-with-offset", event_time="2026-03-10T13:30:00+02:00"), Rule.EVENT_TIME),
    ("bad-time-epoch-int", video("bad-time-epoch-int", event_time=1773142200000), Rule.EVENT_TIME),
    ("bad-time-extjson-text", video("bad-time-extjson-text", event_time='{"$date": "2026-03-10T11:30:00Z"}'), Rule.EVENT_TIME),
    ("bad-time-out-of-range", video("bad-time-out-of-range", event_time=DatetimeMS(-(10 ** 15))), Rule.EVENT_TIME),
    ("bad-time-missing", video("bad-time-missing", event_time=...), Rule.EVENT_TIME),
    ("bad-time-far-future", video("bad-time-far-future", event_time=dt.datetime(9999, 12, 31, tzinfo=UTC)), Rule.FUTURE),
    ("bad-time-far-past", video("bad-time-far-past", event_time=dt.datetime(1970, 1, 1, tzinfo=UTC)), Rule.TOO_OLD),
    ("bad-item-missing", video("bad-item-missing", item_id=...), Rule.ITEM_ID),
    ("bad-item-newline", video("bad-item-newline", item_id="v1\n"), Rule.ITEM_ID),
    ("bad-position-nan", video("bad-position-nan", position_s=float("nan")), REFUSED_BY_SERVER),
    ("bad-duration-inf", video("bad-duration-inf", duration_s=float("inf")), REFUSED_BY_SERVER),
    ("bad-position-string", video("bad-position-string", position_s="12"), Rule.VIDEO_NOT_NUMERIC),
    ("bad-position-bool", video("bad-position-bool", position_s=True), Rule.VIDEO_NOT_NUMERIC),
    ("bad-position-negative", video("bad-position-negative", position_s=-1.0), Rule.VIDEO_POSITION),
    ("bad-position-huge", video("bad-position-huge", position_s=1e300), Rule.VIDEO_POSITION),
    ("bad-quiz-above-max", video("bad-quiz-above-max", event_type="quiz_attempt", item_id="q1", score=11.0, max_score=10.0), Rule.QUIZ_SCORE),
    ("bad-quiz-max-zero", video("bad-quiz-max-zero", event_type="quiz_attempt", item_id="q1", score=0.0, max_score=0.0), Rule.QUIZ_SCORE),
    ("bad-login-region-object", page("bad-login-region-object", event_type="login", region={"name": "eu-west"}), Rule.LOGIN_REGION),
    ("bad-device-object", page("bad-device-object", device={"os": "ios"}), Rule.FIELD_TYPE),
    ("bad-session-array", page("bad-session-array", session_id=["a", "b"]), Rule.FIELD_TYPE),
    ("bad-score-string-on-page", page("bad-score-string-on-page", score="7"), Rule.FIELD_TYPE),
    ("bad-16MB-string", page("bad-16MB-string", user_agent="x" * 15_000_000), Rule.TOO_LARGE),
]


@pytest.fixture()
def corpus_lake(stack, fresh_lake):
    from pymongo.errors import PyMongoError

    from learntrack.mongo_ops import database, ensure_indexes

    settings = fresh_lake.with_overrides(mongo_db="lt_test_bad_input", cassandra_keyspace="lt_test_bad_input",
                                         redis_prefix="lt_test_bad_input", home=stack.home)  # home: the tools
    db = database(settings)
    for name in ("activities", "students", "courses"):
        db[name].drop()
    ensure_indexes(db)
    docs, refused = [], []
    for i, (name, doc, outcome) in enumerate(CORPUS):  # the case name is the document's _id
        written = WRITTEN + dt.timedelta(seconds=i)
        full = {**doc, "_id": name, "ingested_at": written,
                **write_buckets(written, "ingest_day", "ingest_slot")}
        (refused if outcome == REFUSED_BY_SERVER else docs).append(full)
    db.activities.insert_many(docs, ordered=True)
    for doc in refused:
        with pytest.raises(PyMongoError):
            database(settings).activities.insert_one(doc)  # a client of its own: FerretDB drops the connection
    assert db.activities.count_documents({}) == len(docs)
    db.courses.insert_one({"_id": "c1", "content": {"videos": [{"video_id": "v1", "duration_s": 600.0}],
                                                     "quizzes": [{"quiz_id": "q1", "max_score": 10.0,
                                                                  "passing_score": 6.0}], "pdfs": []},
                           "updated_at": WRITTEN,
                           **write_buckets(WRITTEN, "updated_day", "updated_slot")})
    return settings, db


def test_every_bad_document_is_quarantined_with_its_rule_and_nothing_crashes(corpus_lake, spark):
    from learntrack.intervals import Interval
    from lake.delta import read_table
    from lake.tables import QUARANTINE, SILVER_ACTIVITIES
    from learntrack.pipeline import run_chain

    settings, db = corpus_lake
    interval = Interval.for_day(DAY)
    results = run_chain(settings, interval)  # every stage and sink; a crash or a failed gate raises

    expected = {name: outcome for name, _, outcome in CORPUS if outcome != REFUSED_BY_SERVER}
    quarantined = {r["source_id"]: r["rule"] for r in read_table(spark, QUARANTINE, settings.lake_uri).collect()}
    kept = {r["event_id"] for r in read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).collect()}
    assert quarantined == {k: v for k, v in expected.items() if v not in (KEPT, DUPLICATE)}
    assert kept == {k for k, v in expected.items() if v == KEPT}  # event id = case name for kept cases
    silver = results["build_silver"]
    assert (silver["rows_in"], silver["inserted"], silver["duplicates"], silver["quarantined"]) == (
        len(expected), len(kept), 1, len(quarantined))
    assert len(quarantined) >= 25 and len(set(quarantined.values())) >= 14  # kinds and distinct rules
    first = read_table(spark, SILVER_ACTIVITIES, settings.lake_uri).where("event_id = 'dup-payload'").first()
    assert first["position_s"] == 20.0  # the first write of an event id wins
    assert results["gate_silver"]["gate_failed"] == 0 and results["gate_gold"]["gate_failed"] == 0
    # Silver is repeatable on the corpus: a second pass changes nothing.
    from jobs.silver import build_silver

    again = build_silver(spark, settings, interval)
    assert (again["inserted"], again["quarantined"]) == (0, len(quarantined))
    assert read_table(spark, QUARANTINE, settings.lake_uri).count() == len(quarantined)
