import datetime as dt

import pytest

from learntrack.activity_model import Rule, judge_raw_activity, validate_activity

NOW = dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc)


def doc(**kw):
    base = {"event_id": "e1", "student_id": "s1", "course_id": "c1", "event_type": "video_pause",
            "item_id": "v1", "event_time": NOW - dt.timedelta(hours=1), "position_s": 10.0, "duration_s": 100.0}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def test_valid_document_passes():
    assert validate_activity(doc(), now=NOW) is None


@pytest.mark.parametrize("change, reason", [
    ({"event_id": ...}, "event_id missing"),
    ({"student_id": 42}, "student_id missing or not"),
    ({"event_type": "video_rewind"}, "unknown event_type"),
    ({"event_time": "yesterday"}, "event_time missing or not a date"),
    ({"event_time": NOW + dt.timedelta(days=1)}, "future"),
    ({"position_s": -1.0}, "outside [0, duration]"),
    ({"position_s": 101.0}, "outside [0, duration]"),
    ({"position_s": "10"}, "without numeric"),
    ({"event_type": "quiz_attempt", "score": 11.0, "max_score": 10.0}, "quiz score"),
    ({"event_type": "login", "region": "moon-base"}, "unknown region"),
    ({"student_id": "s\u200b1"}, "student_id missing or not"),
    ({"page": "x" * 20_000}, "larger than 16 KiB"),
    # issue 11, finding 4: a trailing line terminator is not part of an id
    ({"student_id": "s0001\n"}, "student_id missing or not"),
    ({"course_id": "c1\r\n"}, "course_id missing or not"),
    ({"event_id": "e1\u2028"}, "event_id missing or not"),
    # finding 3: a video event without an item crashed gold (NULL map key)
    ({"item_id": ...}, "without a short printable item_id"),
    ({"event_type": "quiz_attempt", "score": 1.0, "max_score": 2.0, "item_id": None}, "item_id"),
    ({"position_s": float("nan")}, "without numeric"),
    ({"duration_s": float("inf"), "position_s": 1e308}, "without numeric"),
    ({"device": {"os": "ios"}}, "optional field of the wrong type"),
    ({"region": ["eu-west"]}, "optional field of the wrong type"),
    ({"score": "7"}, "optional field of the wrong type"),
])
def test_each_rule_reports_its_reason(change, reason):
    assert reason in validate_activity(doc(**change), now=NOW)


def test_too_old_is_judged_against_the_write_day():
    old = doc(event_time=NOW - dt.timedelta(days=88, hours=1))  # 89 calendar days before
    assert validate_activity(old, now=NOW) is None  # no retention given: the write path's default
    assert validate_activity(old, now=NOW, max_age_days=90) is None
    assert validate_activity(old, now=NOW, max_age_days=89) == Rule.TOO_OLD


def _raw(d):
    from bson import json_util
    from bson.json_util import RELAXED_JSON_OPTIONS

    return json_util.dumps(d, json_options=RELAXED_JSON_OPTIONS)


def test_judge_reads_top_level_values_not_text():
    """Finding 10: silver judged fields by searching the raw JSON text."""
    # A nested object with a field of the same name must not decide the top-level field's type.
    nested = doc(meta={"student_id": "s-nested"}, student_id=42)
    assert judge_raw_activity(_raw(nested), NOW)["rule"] == Rule.STUDENT_ID
    valid_nested = doc(meta={"position_s": "not a number"})
    assert judge_raw_activity(_raw(valid_nested), NOW)["rule"] is None
    # Size is the BSON size the write path measures, not escaped JSON text (non-Latin text
    # escapes to 6 bytes per character in JSON, 3 in BSON).
    text = "\u4e2d" * 4000  # 12 kB of UTF-8
    assert validate_activity(doc(note=text), now=NOW) is None
    assert len(_raw(doc(note=text))) > 16 * 1024 or len(_raw(doc(note=text)).encode()) > 12_000
    assert judge_raw_activity(_raw(doc(note=text)), NOW)["rule"] is None
    # A string that looks like Extended JSON is a string, not a date.
    fake = doc(event_time='{"$date": "2026-01-09T00:00:00Z"}')
    assert judge_raw_activity(_raw(fake), NOW)["rule"] == Rule.EVENT_TIME


def test_judge_types_the_valid_document():
    out = judge_raw_activity(_raw(doc(position_s=10, session_id="x")), NOW)
    assert out["rule"] is None and out["position_s"] == 10.0 and isinstance(out["position_s"], float)
    assert out["event_time"] == NOW - dt.timedelta(hours=1) and out["session_id"] == "x"


def test_judge_refuses_dates_beyond_what_a_datetime_holds():
    """Finding 3: a BSON date outside years 1-9999 raised inside the extraction cursor."""
    from bson.datetime_ms import DatetimeMS

    raw = _raw(doc(event_time=DatetimeMS(-(10 ** 15))))
    assert '"$numberLong"' in raw
    assert judge_raw_activity(raw, NOW)["rule"] == Rule.EVENT_TIME
    assert judge_raw_activity("not json", NOW)["rule"] == Rule.EVENT_ID


@pytest.mark.parametrize("element", [1, 0.5, True, None, {}, [], "", "\U0001d11e", {"\U0001d11e": 1},
                                     {"$date": "2026-01-01T00:00:00Z"}, [1, [1, [1]]]],
                         ids=lambda e: repr(e)[:20])
def test_text_short_enough_to_skip_the_size_check_cannot_encode_over_the_limit(element):
    """``validate_activity`` skips the BSON encoding for text of at most MAX_TEXT_CHARS_UNDER_LIMIT
    characters. The densest documents that text can hold (arrays of one small value, as compact as
    JSON allows, unescaped 4-byte characters) must stay within 5 bytes per character."""
    import json

    from bson import encode

    from learntrack.activity_model import MAX_DOC_BYTES, MAX_TEXT_CHARS_UNDER_LIMIT
    from learntrack.extended_json import loads_utc

    def text(n):
        return json.dumps({"a": [element] * n}, separators=(",", ":"), ensure_ascii=False)

    n = 1
    while len(text(n + 1)) <= MAX_TEXT_CHARS_UNDER_LIMIT:
        n += 1
    densest = text(n)
    size = len(encode(loads_utc(densest)))
    assert size <= 5 * len(densest) + 5 and size < MAX_DOC_BYTES
    assert len(encode({"k": "\U0001d11e" * MAX_TEXT_CHARS_UNDER_LIMIT})) < MAX_DOC_BYTES


def test_a_document_too_large_is_refused_whether_or_not_its_text_length_is_given():
    from learntrack.activity_model import MAX_TEXT_CHARS_UNDER_LIMIT
    from learntrack.extended_json import dumps_relaxed

    big = doc(session_id="x" * 17_000)
    written = NOW
    assert validate_activity(big, now=written) == Rule.TOO_LARGE
    assert validate_activity(big, now=written, text_chars=len(dumps_relaxed(big))) == Rule.TOO_LARGE
    assert judge_raw_activity(dumps_relaxed(big), written)["rule"] == Rule.TOO_LARGE
    # Given a short text length, the encoding is skipped: the caller vouches for the text.
    assert validate_activity(big, now=written, text_chars=MAX_TEXT_CHARS_UNDER_LIMIT) is None


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_utc_datetimes_are_to_pylists_instants_in_timezone_utc(unit):
    """Silver's write times: the same instants as pyarrow's ``to_pylist``, with ``timezone.utc``
    (what judging compares against), nulls kept, before 1970 and at the edges of the years too."""
    import pyarrow as pa

    from learntrack.activity_model import utc_datetimes

    utc = dt.timezone.utc
    values = [dt.datetime(2026, 1, 10, 9, 30, 1, 123456, tzinfo=utc), None,
              dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=utc), dt.datetime(1, 1, 1, tzinfo=utc),
              dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=utc)]
    column = pa.array(values, pa.timestamp("us", tz="UTC")).cast(pa.timestamp(unit, tz="UTC"), safe=False)
    got = utc_datetimes(column)
    assert got == column.to_pylist()
    assert all(v is None or v.tzinfo is utc for v in got)
    if unit == "us":
        assert got == values
