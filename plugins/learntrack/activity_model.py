"""The activity document model: event types, their type-specific fields, and write-path validation.

MongoDB keeps documents flexible; this module is the contract the platform's writers follow. The
same rules, re-expressed in Spark, decide what silver keeps and what goes to quarantine
(``jobs/silver.py``), so a document the API would refuse is also a document silver quarantines.
"""

from __future__ import annotations

import datetime as dt
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


def _size(doc: Mapping[str, Any]) -> int:
    from bson import encode

    try:
        return len(encode(dict(doc)))
    except Exception:  # noqa: BLE001 - not encodable: the server would refuse it anyway
        return 0


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and value.isascii() and value.isprintable() \
        and not value[0].isspace()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def validate_activity(doc: Mapping[str, Any], now: dt.datetime | None = None) -> str | None:
    """Return the first rule ``doc`` breaks (a short reason), or None when it is valid."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if _size(doc) > MAX_DOC_BYTES:
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
    return None
