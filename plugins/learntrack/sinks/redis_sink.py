"""Redis: live engagement scores and the leaderboard.

Keys (prefix from settings):
  <p>:engagement:leaderboard        ZSET student_id -> score (the latest as-of day)
  <p>:engagement:student:<id>       HASH score, segment, events_recent, as_of_date, last_event_time
  <p>:engagement:as_of              the as-of day currently published
A snapshot is written under temporary keys and swapped in with RENAME inside MULTI, so readers
see the old or the new snapshot, never a mix; an older as-of day never replaces a newer one.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping

from learntrack.intervals import to_utc
from learntrack import faults
from learntrack.settings import Settings


def connect(settings: Settings):
    import redis

    return redis.Redis.from_url(settings.redis_url, decode_responses=True)


def keys(settings: Settings) -> dict[str, str]:
    p = f"{settings.redis_prefix}:engagement"
    return {"leaderboard": f"{p}:leaderboard", "student": f"{p}:student:", "as_of": f"{p}:as_of"}


def publish_scores(settings: Settings, as_of: dt.date, rows: Iterable[Mapping], batch: int = 5000) -> dict:
    r = connect(settings)
    k = keys(settings)
    current = r.get(k["as_of"])
    if current and current > as_of.isoformat():
        return {"published": 0, "skipped": f"a newer as-of day {current} is already published"}
    tmp = f"{k['leaderboard']}:tmp:{as_of.isoformat()}"
    r.delete(tmp)
    pipe = r.pipeline(transaction=False)
    n = 0
    for row in rows:
        sid = row["student_id"]
        pipe.zadd(tmp, {sid: float(row["score"])})
        last = row["last_event_time"]
        pipe.hset(f"{k['student']}{sid}", mapping={
            "score": str(row["score"]), "segment": row["segment"], "events_recent": int(row["events_recent"]),
            "as_of_date": as_of.isoformat(), "last_event_time": to_utc(last).isoformat() if last else ""})
        n += 1
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    faults.point(settings, "redis.hashes_written")
    with r.pipeline(transaction=True) as swap:
        if n:
            swap.rename(tmp, k["leaderboard"])
        else:
            swap.delete(k["leaderboard"])
        swap.set(k["as_of"], as_of.isoformat())
        swap.execute()
    return {"published": n, "as_of_date": as_of.isoformat()}


def top(settings: Settings, n: int = 10) -> list[tuple[str, float]]:
    return connect(settings).zrevrange(keys(settings)["leaderboard"], 0, n - 1, withscores=True)
