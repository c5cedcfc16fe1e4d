"""The activity document model: event types, their type-specific fields, and the one rule set.

MongoDB keeps documents flexible; this module is the contract the platform's writers follow. The
same function, ``validate_activity``, judges a document on the write path and in silver
(``jobs/silver.py`` runs it on each parsed bronze document, ``judge_raw_activity``), so a document
the API would refuse is exactly a document silver quarantines, with the same reason.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Mapping

EVENT_TYPES = (
    "page_view",
    "video_play",
    "video_pause",
    "video_seek",
    "video_complete",
    "quiz_attempt",
    "assignment_submit",
    "login",
)
VIDEO_EVENT_TYPES = ("video_play", "video_pause", "video_seek", "video_complete")
REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast", "sa-east", "af-north")
DEVICES = ("web", "ios", "android", "desktop")

MAX_ID_LEN = 64
#: An activity is a small event; anything larger is a client bug (or abuse), not data.
MAX_DOC_BYTES = 16 * 1024
# A client clock may run a little ahead of the server's; more than this is a bad timestamp.
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)

#: Fields the write path stamps (not part of the client's document: not counted in its size).
WRITE_METADATA_FIELDS = ("_id", "ingested_at", "ingest_day", "ingest_slot")
#: Optional attributes: when present and not null they must have this type, whatever the event.
STRING_FIELDS = ("item_id", "session_id", "device", "region", "country", "ip")
NUMBER_FIELDS = ("position_s", "duration_s", "from_position_s", "score", "max_score")
#: Events about one content item: gold keys video progress and quiz results by (course, item).
ITEM_EVENT_TYPES = VIDEO_EVENT_TYPES + ("quiz_attempt",)


class Rule:
    """The reasons a document is refused (write path) or quarantined (silver): one wording."""

    TOO_LARGE = "document larger than 16 KiB"
    EVENT_ID = "event_id missing or not a short printable string"
    STUDENT_ID = "student_id missing or not a short printable string"
    COURSE_ID = "course_id missing or not a short printable string"
    EVENT_TYPE = "unknown event_type"
    EVENT_TIME = "event_time missing or not a date"
    FUTURE = "event_time in the future"
    VIDEO_NOT_NUMERIC = "video event without numeric position_s/duration_s"
    VIDEO_POSITION = "video position outside [0, duration]"
    QUIZ_SCORE = "quiz score missing or outside [0, max_score]"
    LOGIN_REGION = "login with unknown region"
    ITEM_ID = "video or quiz event without a short printable item_id"
    TOO_OLD = "event_time older than the raw retention window before its write"
    FIELD_TYPE = "optional field of the wrong type (text or finite number expected)"


def _size(doc: Mapping[str, Any]) -> int:
    """BSON size of the client's document (write metadata excluded), as the server would store it."""
    from bson import encode

    try:
        return len(encode({k: v for k, v in doc.items() if k not in WRITE_METADATA_FIELDS}))
    except Exception:  # noqa: BLE001 - not encodable: the server would refuse it anyway
        return 0


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and value.isascii() and value.isprintable() \
        and not value[0].isspace()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


#: JSON text of at most this many characters cannot be more than MAX_DOC_BYTES of BSON. Per
#: element BSON spends at most 5 bytes per character of text: a one-digit int in an array (``1,``)
#: is a type byte, an index of at most 4 digits and its NUL, and 4 bytes; a character of a string or
#: key at most 4 bytes of UTF-8; true/false/null, dates and every Extended JSON wrapper are shorter
#: in BSON than in text. So 5 x 2,048 + 5 < 16 KiB (tested against ``bson.encode``).
MAX_TEXT_CHARS_UNDER_LIMIT = MAX_DOC_BYTES // 8


def validate_activity(doc: Mapping[str, Any], now: dt.datetime | None = None,
                      max_age_days: int | None = None, text_chars: int | None = None) -> str | None:
    """Return the first rule ``doc`` breaks (a short reason), or None when it is valid.

    ``now`` is the write time (silver passes the row's own, so the outcome never depends on when
    a job runs); ``max_age_days`` refuses events whose day is that many days or more before the
    write day (silver: the raw retention, so no late event reaches a day retention has emptied).
    ``text_chars``: the length of the JSON text ``doc`` was parsed from, when there is one; text
    that short cannot be too large, and the BSON encoding that measures the size is skipped
    (a fifth of silver's judging).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if (text_chars is None or text_chars > MAX_TEXT_CHARS_UNDER_LIMIT) and _size(doc) > MAX_DOC_BYTES:
        return Rule.TOO_LARGE
    for key, rule in (("event_id", Rule.EVENT_ID), ("student_id", Rule.STUDENT_ID), ("course_id", Rule.COURSE_ID)):
        if not _is_id(doc.get(key)):
            return rule
    etype = doc.get("event_type")
    if etype not in EVENT_TYPES:
        return Rule.EVENT_TYPE
    event_time = doc.get("event_time")
    if not isinstance(event_time, dt.datetime):
        return Rule.EVENT_TIME
    if _as_utc(event_time) > now + MAX_CLOCK_SKEW:
        return Rule.FUTURE
    if max_age_days is not None and (_as_utc(now).date() - _as_utc(event_time).date()).days >= max_age_days:
        return Rule.TOO_OLD
    if etype in ITEM_EVENT_TYPES and not _is_id(doc.get("item_id")):
        return Rule.ITEM_ID
    if etype in VIDEO_EVENT_TYPES:
        pos, dur = doc.get("position_s"), doc.get("duration_s")
        if not (_is_number(pos) and _is_number(dur)):
            return Rule.VIDEO_NOT_NUMERIC
        if dur <= 0 or pos < 0 or pos > dur:
            return Rule.VIDEO_POSITION
    if etype == "quiz_attempt":
        score, max_score = doc.get("score"), doc.get("max_score")
        if not (_is_number(score) and _is_number(max_score)) or max_score <= 0 or not 0 <= score <= max_score:
            return Rule.QUIZ_SCORE
    if etype == "login" and doc.get("region") not in REGIONS:
        return Rule.LOGIN_REGION
    if any(doc.get(f) is not None and not isinstance(doc[f], str) for f in STRING_FIELDS) or any(
            doc.get(f) is not None and not _is_number(doc[f]) for f in NUMBER_FIELDS):
        return Rule.FIELD_TYPE
    return None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def utc_datetimes(column) -> list[dt.datetime | None]:
    """An Arrow timestamp column (UTC; a finer unit must hold whole microseconds) as aware datetimes
    in ``datetime.timezone.utc``. ``to_pylist`` gives the same instants with a ``zoneinfo`` UTC, five
    times slower to build and slower to compare (a fifth of silver's judging)."""
    import pyarrow as pa

    micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    return [None if us is None else _EPOCH + dt.timedelta(microseconds=us) for us in micros]


#: How silver reads a bronze row's Extended JSON: aware UTC datetimes, and dates outside what a
#: datetime holds (years 1-9999) as DatetimeMS instead of an error, so the rules can refuse them.
def judge_raw_activity(raw: str, written_at: dt.datetime, max_age_days: int | None = None) -> dict[str, Any]:
    """Parse one bronze document (Extended JSON) and judge its top-level values with
    ``validate_activity``; return ``rule`` (None when valid) and the typed fields silver stores.

    Unparseable text or a document that is not an object is judged too (rule: the event id's),
    never raised: one bad row must not stop a batch.
    """
    from learntrack.extended_json import loads_utc

    try:
        doc = loads_utc(raw)  # json_util.loads with aware UTC dates, the same values (extended_json)
    except Exception:  # noqa: BLE001 - not Extended JSON at all: refused by the first rule
        doc = None
    if not isinstance(doc, dict):
        return {"rule": Rule.EVENT_ID}
    rule = validate_activity(doc, now=_as_utc(written_at), max_age_days=max_age_days, text_chars=len(raw))
    if rule:
        return {"rule": rule}
    out: dict[str, Any] = {"rule": None, "event_time": _as_utc(doc["event_time"])}
    for f in ("event_id", "student_id", "course_id", "event_type", *STRING_FIELDS):
        out[f] = doc.get(f)
    for f in NUMBER_FIELDS:
        out[f] = None if doc.get(f) is None else float(doc[f])
    return out
