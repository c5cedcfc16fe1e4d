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
# A client clock may run a little ahead of the server's; more than this is a bad timestamp.
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and value.isprintable()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def validate_activity(doc: Mapping[str, Any], now: dt.datetime | None = None) -> str | None:
    """Return the first rule ``doc`` breaks (a short reason), or None when it is valid."""
    now = now or dt.datetime.now(dt.timezone.utc)
    for key in ("event_id", "student_id", "course_id"):
        if not _is_id(doc.get(key)):
            return f"{key} missing or not a short printable string"
    etype = doc.get("event_type")
    if etype not in EVENT_TYPES:
        return f"unknown event_type {etype!r}"
    event_time = doc.get("event_time")
    if not isinstance(event_time, dt.datetime):
        return "event_time missing or not a date"
    if _as_utc(event_time) > now + MAX_CLOCK_SKEW:
        return "event_time in the future"
    if etype in VIDEO_EVENT_TYPES:
        pos, dur = doc.get("position_s"), doc.get("duration_s")
        if not (_is_number(pos) and _is_number(dur)):
            return "video event without numeric position_s/duration_s"
        if dur <= 0 or pos < 0 or pos > dur:
            return "video position outside [0, duration]"
    if etype == "quiz_attempt":
        score, max_score = doc.get("score"), doc.get("max_score")
        if not (_is_number(score) and _is_number(max_score)) or max_score <= 0 or not 0 <= score <= max_score:
            return "quiz score missing or outside [0, max_score]"
    if etype == "login":
        if doc.get("region") not in REGIONS:
            return f"login with unknown region {doc.get('region')!r}"
    return None
