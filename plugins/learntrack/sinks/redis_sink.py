"""Redis: the engagement snapshot the platform and Grafana read (scores, leaderboards, segments).

A published snapshot is a *version*: ``<as_of>.<content digest>``. Its keys carry the version,
and one pointer names the version readers use (prefix ``<p>`` from settings)::

  <p>:engagement:current                          STRING  the published version
  <p>:engagement:v:<V>:leaderboard                ZSET    student_id -> score (all courses)
  <p>:engagement:v:<V>:course:<course>:leaderboard ZSET   student_id -> score in that course
  <p>:engagement:v:<V>:student:<student>          HASH    score, segment, events_recent, as_of_date, last_event_time
  <p>:engagement:v:<V>:segments                   HASH    segment -> students
  <p>:engagement:v:<V>:courses                    SET     courses with a leaderboard (to delete the version)
  <p>:engagement:v:<V>:meta                       HASH    as_of_date, students, courses; written last
  <p>:engagement:versions                         ZSET    every version a publish started (score 0)

Why: a reader resolves the pointer once and reads one version, so it never mixes two snapshots;
a crash part-way leaves the pointer on the previous complete version, and the next publish
deletes whatever the crashed one left (the ``versions`` registry names it, no SCAN). The swap is a
WATCHed transaction that refuses to move the pointer to an older as-of day, so a late publisher
cannot replace a newer snapshot. The digest makes the version a function of the content: publishing
the same gold twice finds its version already current and writes nothing. Every key a run writes
has the snapshot TTL (``redis_snapshot_ttl_days``): a pipeline that stops publishing lets Redis
empty itself rather than serve numbers weeks old as current.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from typing import Iterable, Mapping

from learntrack import faults
from learntrack.batches import chunks
from learntrack.intervals import to_utc
from learntrack.settings import Settings


def connect(settings: Settings, **options):
    """A client of the settings' Redis (``options``: redis-py's, e.g. timeouts and retry)."""
    import redis

    return redis.Redis.from_url(settings.redis_url, decode_responses=True, **options)


def _root(settings: Settings) -> str:
    return f"{settings.redis_prefix}:engagement"


def pointer_key(settings: Settings) -> str:
    return f"{_root(settings)}:current"


def registry_key(settings: Settings) -> str:
    return f"{_root(settings)}:versions"


def version_key(settings: Settings, version: str, *parts: str) -> str:
    return ":".join((_root(settings), "v", version, *parts))


def _as_of(version: str) -> str:
    """The as-of day (ISO) a version ``<as_of>.<digest>`` was published for."""
    return version.split(".", 1)[0]


def content_digest(student_rows: list[Mapping], course_rows: list[Mapping]) -> str:
    """Digest of a snapshot's content, independent of row order (for callers without Spark)."""
    h = hashlib.sha256()
    for line in sorted(repr(sorted((k, str(v)) for k, v in r.items())) for r in (*student_rows, *course_rows)):
        h.update(line.encode())
    return h.hexdigest()


def publish_scores(settings: Settings, as_of: dt.date, student_rows: Iterable[Mapping],
                   course_rows: Iterable[Mapping] = (), digest: str | None = None, batch: int = 5000) -> dict:
    """Publish gold's engagement of ``as_of`` as a new version and point readers at it.

    ``student_rows``: gold.student_engagement rows; ``course_rows``: gold.student_course_engagement
    rows of the same day. ``digest`` identifies the content (the pipeline computes it in Spark);
    without it the rows are materialised and digested here.
    """
    if digest is None:
        student_rows, course_rows = list(student_rows), list(course_rows)
        digest = content_digest(student_rows, course_rows)
    version = f"{as_of.isoformat()}.{digest[:16]}"
    r = connect(settings)
    ttl = settings.redis_snapshot_ttl_days * 86400
    current = r.get(pointer_key(settings))
    if current == version and r.exists(version_key(settings, version, "meta")):
        _delete_versions_except(r, settings, current)
        return {"published": 0, "version": version, "as_of_date": as_of.isoformat(), "unchanged": True}
    if current and _as_of(current) > as_of.isoformat():
        _delete_versions_except(r, settings, current)
        return {"published": 0, "skipped": f"a newer as-of day ({current}) is already published"}

    r.zadd(registry_key(settings), {version: 0})  # a set; a ZSET only so it can be read in pages
    r.expire(registry_key(settings), ttl)
    _delete_version(r, settings, version)  # leftovers of a crashed publish of the same content
    students, courses = _write_version(r, settings, version, as_of, student_rows, course_rows, ttl, batch)
    faults.point(settings, "redis.hashes_written")
    meta = version_key(settings, version, "meta")
    # Content only (no publish time): a retried publish must leave what one publish leaves.
    r.hset(meta, mapping={"as_of_date": as_of.isoformat(), "students": students, "courses": courses})
    r.expire(meta, ttl)
    if not _swap(r, settings, version, as_of, ttl):
        _delete_versions_except(r, settings, r.get(pointer_key(settings)))
        return {"published": 0, "skipped": "a newer as-of day was published meanwhile"}
    deleted = _delete_versions_except(r, settings, version)
    return {"published": students, "courses": courses, "version": version, "as_of_date": as_of.isoformat(),
            "versions_deleted": deleted}


def _write_version(r, settings, version, as_of, student_rows, course_rows, ttl, batch) -> tuple[int, int]:
    """Every key of the version, pipelined; a batch's students are added to the leaderboard (one
    ZADD) before their hashes are written, so the leaderboard names every hash a crashed publish
    may have left. A key's TTL is set once, right after the command that creates it (ZADD and HSET
    keep a key's TTL)."""
    board = version_key(settings, version, "leaderboard")
    course_set = version_key(settings, version, "courses")
    segments: Counter = Counter()
    pipe = r.pipeline(transaction=False)
    students = 0
    for chunk in chunks(student_rows, batch):
        pipe.zadd(board, {row["student_id"]: float(row["score"]) for row in chunk})
        if not students:
            pipe.expire(board, ttl)
        for row in chunk:
            key = version_key(settings, version, "student", row["student_id"])
            last = row.get("last_event_time")
            pipe.hset(key, mapping={"score": str(row["score"]), "segment": row["segment"],
                                    "events_recent": int(row["events_recent"]), "as_of_date": as_of.isoformat(),
                                    "last_event_time": to_utc(last).isoformat() if last else ""})
            pipe.expire(key, ttl)
            segments[row["segment"]] += 1
        students += len(chunk)
        pipe.execute()
    courses: set[str] = set()
    for chunk in chunks(course_rows, batch):
        boards: dict[str, dict[str, float]] = {}
        for row in chunk:
            boards.setdefault(row["course_id"], {})[row["student_id"]] = float(row["score"])
        for course, scores in boards.items():
            key = version_key(settings, version, "course", course, "leaderboard")
            if course in courses:
                pipe.zadd(key, scores)
                continue
            pipe.sadd(course_set, course)  # on the course set before its leaderboard exists
            if not courses:
                pipe.expire(course_set, ttl)
            pipe.zadd(key, scores)
            pipe.expire(key, ttl)
            courses.add(course)
        pipe.execute()
    seg_key = version_key(settings, version, "segments")
    if segments:
        pipe.hset(seg_key, mapping=dict(segments))
        pipe.expire(seg_key, ttl)
    pipe.execute()
    return students, len(courses)


def _swap(r, settings, version: str, as_of: dt.date, ttl: int) -> bool:
    """Point readers at ``version`` unless a newer as-of day is current (checked under WATCH, so
    a publisher that swapped in between makes this transaction retry and see it)."""
    import redis

    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(pointer_key(settings))
                current = pipe.get(pointer_key(settings))
                if current and _as_of(current) > as_of.isoformat():
                    pipe.unwatch()
                    return False
                if not pipe.exists(version_key(settings, version, "meta")):
                    raise RuntimeError(f"Redis snapshot {version} was deleted before its swap "
                                       "(another publisher ran at the same time); retry the publish")
                pipe.multi()
                pipe.set(pointer_key(settings), version, ex=ttl)
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def _delete_versions_except(r, settings, keep: str | None) -> int:
    """Delete every registered version but ``keep``: superseded snapshots and a crashed publish's."""
    stale = [v for v in r.zrange(registry_key(settings), 0, -1) if v != keep]
    for version in stale:
        _delete_version(r, settings, version)
        r.zrem(registry_key(settings), version)
    return len(stale)


def _delete_version(r, settings, version: str, batch: int = 5000) -> None:
    board = version_key(settings, version, "leaderboard")
    course_set = version_key(settings, version, "courses")
    pipe = r.pipeline(transaction=False)
    n = 0
    for sid, _ in r.zscan_iter(board):
        pipe.unlink(version_key(settings, version, "student", sid))
        n += 1
        if n % batch == 0:
            pipe.execute()
    for course in r.sscan_iter(course_set):
        pipe.unlink(version_key(settings, version, "course", course, "leaderboard"))
    pipe.unlink(board, course_set, version_key(settings, version, "segments"), version_key(settings, version, "meta"))
    pipe.execute()


# --- readers ----------------------------------------------------------------------------------
# A reader resolves the pointer, then reads that version. Old versions are deleted right after a
# swap, so a reader that finds its version gone (a few milliseconds' window) reads the pointer again.
def current_version(settings: Settings, r=None) -> str | None:
    return (r or connect(settings)).get(pointer_key(settings))


def snapshot_as_of(settings: Settings) -> str | None:
    version = current_version(settings)
    return _as_of(version) if version else None


def top(settings: Settings, n: int = 10, course: str | None = None) -> list[tuple[str, float]]:
    """The ``n`` best students of the published snapshot, overall or in one course (``n`` < 0: all)."""
    r = connect(settings)
    version = current_version(settings, r)
    if not version:
        return []
    parts = ("course", course, "leaderboard") if course else ("leaderboard",)
    return r.zrevrange(version_key(settings, version, *parts), 0, n - 1 if n > 0 else -1, withscores=True)


def leaderboard(settings: Settings, course: str | None = None) -> dict[str, float]:
    return dict(top(settings, -1, course))


def student(settings: Settings, student_id: str) -> dict[str, str]:
    r = connect(settings)
    version = current_version(settings, r)
    return r.hgetall(version_key(settings, version, "student", student_id)) if version else {}
