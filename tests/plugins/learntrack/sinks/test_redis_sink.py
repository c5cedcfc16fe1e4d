"""The Redis snapshot: versioned, swapped atomically, cleaned after a crash, with TTLs.

Tests R1-R5 are issue 9's findings; each failed on the sink as of 6e6dcb2 (in its key layout)."""

import datetime as dt

import pytest

pytestmark = pytest.mark.stack

D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
PREFIX = "lt_redis_sink"


def students(scores):
    return [{"student_id": s, "score": v, "segment": "active" if v < 5 else "highly_engaged", "events_recent": 1,
             "last_event_time": dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)} for s, v in scores.items()]


def courses(scores):
    return [{"course_id": c, "student_id": s, "score": v} for (s, c), v in scores.items()]


class Crash(Exception):
    pass


@pytest.fixture()
def rs(stack):
    from learntrack.sinks.redis_sink import connect

    settings = stack.with_overrides(redis_prefix=PREFIX)
    r = connect(settings)
    for key in r.scan_iter(f"{PREFIX}:*"):
        r.delete(key)
    yield settings, r
    for key in r.scan_iter(f"{PREFIX}:*"):
        r.delete(key)


def at_point(monkeypatch, name, action=None):
    """Make the fail point ``name`` raise (a crash without cleanup) or run ``action``."""
    from learntrack import faults

    def point(settings, n):
        if n == name:
            if action:
                return action()
            raise Crash(n)
    monkeypatch.setattr(faults, "point", point)


def published(settings):
    """What a reader sees: the as-of day, the leaderboard and every student's hash."""
    from learntrack.sinks import redis_sink

    board = redis_sink.leaderboard(settings)
    return redis_sink.snapshot_as_of(settings), board, {s: redis_sink.student(settings, s) for s in board}


@pytest.mark.parametrize("batch", [5000, 1])  # one pipeline, or a course's rows in several
def test_publishes_leaderboards_hashes_and_segments(rs, batch):
    from learntrack.sinks import redis_sink

    settings, r = rs
    out = redis_sink.publish_scores(settings, D1, students({"a": 1.5, "b": 9.0}),
                                    courses({("a", "c1"): 1.0, ("a", "c2"): 0.5, ("b", "c1"): 9.0}), batch=batch)
    assert out["published"] == 2 and out["courses"] == 2
    assert redis_sink.top(settings, 1) == [("b", 9.0)]
    assert redis_sink.leaderboard(settings, "c1") == {"a": 1.0, "b": 9.0}
    assert redis_sink.leaderboard(settings, "c2") == {"a": 0.5}
    assert redis_sink.student(settings, "b")["segment"] == "highly_engaged"
    version = redis_sink.current_version(settings)
    assert r.hgetall(redis_sink.version_key(settings, version, "segments")) == {"active": "1", "highly_engaged": "1"}
    assert r.hgetall(redis_sink.version_key(settings, version, "meta"))["students"] == "2"


def test_R1_a_crash_mid_publish_leaves_readers_on_the_previous_snapshot(rs, monkeypatch):
    from learntrack.sinks.redis_sink import publish_scores

    settings, _ = rs
    publish_scores(settings, D1, students({"a": 1.0}))
    before = published(settings)
    at_point(monkeypatch, "redis.hashes_written")
    with pytest.raises(Crash):
        publish_scores(settings, D2, students({"a": 2.0, "b": 3.0}))
    assert published(settings) == before
    assert before[0] == D1.isoformat() and before[1] == {"a": 1.0} and before[2]["a"]["score"] == "1.0"


def test_R2_no_staging_key_survives_a_crash_once_the_next_run_ran(rs, monkeypatch):
    from learntrack.sinks.redis_sink import publish_scores, version_key

    settings, r = rs
    at_point(monkeypatch, "redis.hashes_written")
    with pytest.raises(Crash):
        publish_scores(settings, D2, students({"a": 2.0, "b": 1.0}), courses({("a", "c1"): 2.0}))
    assert len(list(r.scan_iter(f"{PREFIX}:*"))) > 3  # the crash left a partial version behind
    monkeypatch.undo()
    out = publish_scores(settings, D3, students({"a": 3.0}))
    assert out["versions_deleted"] == 1
    v = out["version"]
    keys = set(r.scan_iter(f"{PREFIX}:*"))
    assert keys == {f"{PREFIX}:engagement:current", f"{PREFIX}:engagement:versions",
                    *(version_key(settings, v, *p) for p in (("leaderboard",), ("student", "a"), ("segments",),
                                                            ("meta",)))}


def test_R3_an_older_day_cannot_replace_a_newer_one_published_meanwhile(rs, monkeypatch):
    from learntrack.sinks.redis_sink import publish_scores

    settings, r = rs

    def newer_publisher():
        monkeypatch.undo()
        publish_scores(settings, D3, students({"a": 3.0}))

    at_point(monkeypatch, "redis.hashes_written", newer_publisher)
    out = publish_scores(settings, D2, students({"a": 2.0}))
    assert out["published"] == 0 and "newer" in out["skipped"]
    assert published(settings)[:2] == (D3.isoformat(), {"a": 3.0})
    assert r.zcard(f"{PREFIX}:engagement:versions") == 1  # D2's version was deleted
    assert publish_scores(settings, D1, students({"a": 9.0}))["published"] == 0


@pytest.mark.parametrize("batch", [5000, 1])
def test_R4_every_key_a_publish_writes_has_a_ttl(rs, batch):
    from learntrack.sinks.redis_sink import publish_scores

    settings, r = rs
    publish_scores(settings, D1, students({"a": 1.0, "b": 2.0}), courses({("a", "c1"): 1.0, ("b", "c1"): 2.0}),
                   batch=batch)
    keys = list(r.scan_iter(f"{PREFIX}:*"))
    assert len(keys) == 9  # pointer, registry, board, 2 students, course board, course set, segments, meta
    ttl = settings.redis_snapshot_ttl_days * 86400
    assert all(ttl - 60 < r.ttl(k) <= ttl for k in keys), {k: r.ttl(k) for k in keys}


def test_R5_a_student_who_leaves_the_snapshot_is_gone(rs):
    from learntrack.sinks.redis_sink import publish_scores, student

    settings, r = rs
    publish_scores(settings, D1, students({"a": 1.0, "b": 1.0}), courses({("b", "c9"): 1.0}))
    publish_scores(settings, D2, students({"a": 2.0}))
    assert student(settings, "b") == {}
    assert not [k for k in r.scan_iter(f"{PREFIX}:*") if k.endswith(":b") or ":c9:" in k]


def test_the_same_content_twice_writes_nothing(rs):
    from learntrack.sinks.redis_sink import publish_scores

    settings, r = rs
    first = publish_scores(settings, D1, students({"a": 1.0}))
    keys = sorted(r.scan_iter(f"{PREFIX}:*"))
    second = publish_scores(settings, D1, students({"a": 1.0}))
    assert second == {"published": 0, "version": first["version"], "as_of_date": D1.isoformat(), "unchanged": True}
    assert sorted(r.scan_iter(f"{PREFIX}:*")) == keys
    changed = publish_scores(settings, D1, students({"a": 1.25}))  # a recomputed day replaces its version
    assert changed["published"] == 1 and changed["version"] != first["version"]
    assert published(settings)[1] == {"a": 1.25}
