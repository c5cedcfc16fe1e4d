"""The Redis live path against the real local Redis and MongoDB wire server: resume positions
written through by insert_activities, live scores against the closed form of docs/engagement.md,
idempotence, the nightly rebase and reconcile, a Redis outage, and TTLs."""

from __future__ import annotations

import datetime as dt
import math
import socket
from decimal import Decimal

import pytest

from learntrack.sinks import redis_live as rl

pytestmark = pytest.mark.stack

UTC = dt.timezone.utc
PREFIX = "lt_live"
D0 = dt.date(2026, 1, 5)


def at(day: dt.date, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


def video(eid, t, pos, *, sid="s1", cid="c1", vid="v1", etype="video_pause", dur=600.0, known=None):
    d = {"event_id": eid, "student_id": sid, "course_id": cid, "event_type": etype, "event_time": t,
         "item_id": vid, "position_s": pos, "duration_s": dur}
    if known is not None:
        d["ingested_at"] = known
    return d


def event(eid, etype, t, *, sid="s1", cid="c1", known=None):
    d = {"event_id": eid, "student_id": sid, "course_id": cid, "event_type": etype, "event_time": t}
    if etype == "login":
        d["region"] = "eu-west"
    elif etype == "quiz_attempt":
        d.update(item_id="q1", score=7.0, max_score=10.0)
    if known is not None:
        d["ingested_at"] = known
    return d


def wipe(client) -> None:
    keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


def all_keys(client) -> list[str]:
    return sorted(client.scan_iter(match=f"{PREFIX}:*", count=1000))


def assert_every_key_expires(s, client) -> None:
    keys = all_keys(client)
    assert keys
    for k in keys:
        ttl = client.ttl(k)
        want = (s.redis_progress_ttl_days if ":progress:" in k else s.redis_snapshot_ttl_days) * 86_400
        assert want - 60 <= ttl <= want, (k, ttl)


def state(client) -> dict:
    """Every key under the test prefix with its value (for twice-equals-once comparisons)."""
    out = {}
    for k in all_keys(client):
        kind = client.type(k)
        out[k] = client.hgetall(k) if kind == "hash" else sorted(client.smembers(k))
    return out


@pytest.fixture()
def live(stack):
    s = stack.with_overrides(redis_prefix=PREFIX, mongo_db="lt_live")
    client = rl.connect(s)
    wipe(client)
    yield s
    wipe(client)


@pytest.fixture()
def r(live):
    return rl.connect(live)


@pytest.fixture()
def db(live):
    from learntrack.mongo_ops import client, ensure_indexes

    mongo = client(live)
    mongo.drop_database(live.mongo_db)
    d = mongo[live.mongo_db]
    ensure_indexes(d)
    yield d
    mongo.drop_database(live.mongo_db)
    mongo.close()


def gold_resume(db, sid, cid, vid):
    """Gold's rule, on what MongoDB stored: the latest video event by event time, ties the larger
    position."""
    docs = list(db.activities.find({"student_id": sid, "course_id": cid, "item_id": vid,
                                    "event_type": {"$regex": "^video_"}}))
    best = max(docs, key=lambda d: (d["event_time"], d["position_s"]))
    return best["position_s"], best["event_time"].astimezone(UTC)


def gold_completion(done: int, total: int, has_video: bool) -> tuple[float, str]:
    """gold.student_course_progress: completion_pct and status (jobs/gold.py fold_progress)."""
    pct = min(100.0, done / total * 100) if total > 0 else 0.0
    status = "completed" if total > 0 and done >= total else "in_progress" if has_video else "not_started"
    return pct, status


def expected_score(base: float, base_day: dt.date, events: list[tuple[str, dt.date, dt.date]],
                   day: dt.date, weights: dict, lam: float) -> float:
    """The closed form: base decayed from d0, plus every event known on k > d0 (and k <= day) at
    weight * exp(-lam * (day - min(event day, k)))."""
    total = base * math.exp(-lam * (day - base_day).days)
    for etype, event_day, known in events:
        if base_day < known <= day:
            total += weights.get(etype, 0.0) * math.exp(-lam * (day - min(event_day, known)).days)
    return total


# ------------------------------------------------------------------------------------------------
def test_resume_position_follows_the_latest_event_never_an_older_late_one(live, r, db):
    from learntrack.mongo_ops import insert_activities

    w = rl.LiveWriter(live)
    now = at(D0, 12)
    t = at(D0, 10)
    first = [video("e1", t, 10.0, etype="video_play"), video("e2", t + dt.timedelta(minutes=5), 50.0),
             video("e3", t + dt.timedelta(minutes=1), 0.0, vid="v2", etype="video_play"),
             event("e4", "page_view", t + dt.timedelta(minutes=10))]
    rep = insert_activities(db, first, now=now, live=w)
    assert (rep.inserted, rep.live_applied, rep.live_failed) == (4, 4, 0)
    p = rl.read_progress(live, "s1", "c1")
    pos, when = gold_resume(db, "s1", "c1", "v1")
    assert (p["resume_positions"]["v1"], p["resume_at"]["v1"]) == (pos, when) == (50.0, t + dt.timedelta(minutes=5))
    assert p["resume_positions"]["v2"] == 0.0
    assert (p["last_video"], p["last_video_pos"]) == ("v1", 50.0)
    assert p["last_accessed"] == t + dt.timedelta(minutes=10)
    assert (p["status"], p["videos_completed"], p["videos_total"], p["completion_pct"]) == (
        "in_progress", 0, None, None)

    # A late, older event (written after, happened before) does not move the position back.
    insert_activities(db, [video("e5", t + dt.timedelta(minutes=2), 5.0, etype="video_seek")], now=now, live=w)
    assert rl.read_progress(live, "s1", "c1")["resume_positions"]["v1"] == gold_resume(db, "s1", "c1", "v1")[0] == 50.0
    # Same event time: the larger position wins, whatever the arrival order; a time that differs
    # below the millisecond is the same time to MongoDB (and to gold).
    tie = t + dt.timedelta(minutes=5)
    insert_activities(db, [video("e6", tie, 40.0)], now=now, live=w)
    assert rl.read_progress(live, "s1", "c1")["resume_positions"]["v1"] == 50.0
    insert_activities(db, [video("e7", tie, 70.0), video("e8", tie + dt.timedelta(microseconds=900), 60.0)],
                      now=now, live=w)
    assert rl.read_progress(live, "s1", "c1")["resume_positions"]["v1"] == gold_resume(db, "s1", "c1", "v1")[0] == 70.0
    # A duplicate event id is rejected by MongoDB and therefore not applied either.
    rep = insert_activities(db, [video("e2", t + dt.timedelta(minutes=30), 99.0)], now=now, live=w)
    assert (rep.duplicates, rep.live_applied) == (1, 0)
    assert rl.read_progress(live, "s1", "c1")["resume_positions"]["v1"] == 70.0
    # So is a document the write path refuses.
    rep = insert_activities(db, [video("e9", t + dt.timedelta(minutes=40), 700.0)], now=now, live=w)
    assert (len(rep.rejected), rep.live_applied) == (1, 0)
    assert rl.read_progress(live, "s1", "c1")["resume_positions"]["v1"] == 70.0
    assert_every_key_expires(live, r)


def test_live_score_after_insert_equals_the_closed_form(live, r, db):
    from learntrack.mongo_ops import insert_activities

    weights, lam = live.engagement_weight_map, live.engagement_decay_per_day
    w = rl.LiveWriter(live)
    base = Decimal("10.500000")
    assert rl.rebase_scores(live, D0, [{"student_id": "s-sc", "score": base}])["rebased"] == 1
    d = lambda n: D0 + dt.timedelta(days=n)  # noqa: E731
    written = []  # (event type, event day, known day)

    def insert(docs, now):
        rep = insert_activities(db, docs, now=now, live=w)
        assert rep.inserted == len(docs) and rep.live_failed == 0
        written.extend((x["event_type"], x["event_time"].date(), now.date()) for x in docs)

    # Known on the base day: gold's base holds it already; it must not count again.
    insert([event("k0", "page_view", at(D0, 9), sid="s-sc")], at(D0, 18))
    insert([video("k1", at(D0, 23), 30.0, sid="s-sc", etype="video_play"),  # event day d0, known d0+1
            event("k2", "quiz_attempt", at(d(1), 8), sid="s-sc")], at(d(1), 9))
    insert([event("k3", "assignment_submit", at(d(2), 9), sid="s-sc"),
            event("k4", "login", at(d(-5), 9), sid="s-sc")], at(d(2), 10))  # late: event day d0-5
    insert([event("k5", "page_view", at(d(1), 19), sid="s-sc")], at(d(1), 20))  # known d0+1, applied last
    # A client clock a little ahead across midnight: event day d0+3, known d0+2 (earns from d0+2).
    insert([event("k6", "page_view", at(d(3), 0, 2), sid="s-sc")], at(d(2), 23, 59))

    for day in (d(2), d(3), d(10)):
        want = expected_score(float(base), D0, written, day, weights, lam)
        assert rl.live_score(live, "s-sc", today=day) == pytest.approx(want, rel=1e-12, abs=1e-12)
    # The stored ingest-day value, and a reader that only has a client and the prefix.
    h = r.hgetall(rl.score_key(PREFIX, "s-sc"))
    assert h["score_day"] == d(2).isoformat()
    assert float(h["score"]) == pytest.approx(expected_score(float(base), D0, written, d(2), weights, lam), rel=1e-12)
    assert rl.live_score(r, "s-sc", today=d(3), prefix=PREFIX) == pytest.approx(
        expected_score(float(base), D0, written, d(3), weights, lam), rel=1e-12)
    # The late login counts from its own day (min(event day, known day)): 5 days older than d0.
    late_only = expected_score(0.0, D0, [("login", d(-5), d(2))], d(2), weights, lam)
    assert late_only == pytest.approx(weights["login"] * math.exp(-lam * 7))
    assert rl.live_score(live, "nobody", today=d(3)) == 0.0
    assert_every_key_expires(live, r)


def test_an_event_applied_twice_counts_once_also_across_midnight(live, r, db):
    from learntrack.mongo_ops import insert_activities

    w = rl.LiveWriter(live)
    weights, lam = live.engagement_weight_map, live.engagement_decay_per_day
    just_before = at(D0, 23, 59, 59, 999_000)
    doc = event("m1", "quiz_attempt", at(D0, 23, 50), sid="s-m")
    assert insert_activities(db, [doc], now=just_before, live=w).live_applied == 1
    once = rl.live_score(live, "s-m", today=D0 + dt.timedelta(days=1))
    assert once == pytest.approx(weights["quiz_attempt"] * math.exp(-lam))

    stored = db.activities.find_one({"_id": "m1"})
    assert w.apply([stored]) == 1 and w.apply([stored, stored]) == 2  # applied, not counted again
    # A copy of the event stamped just after midnight (a retry that reached Redis again).
    assert w.apply([dict(stored, ingested_at=at(D0 + dt.timedelta(days=1), 0, 0, 0, 100_000))]) == 1
    # The retried MongoDB write after midnight: a duplicate, not applied.
    rep = insert_activities(db, [doc], now=at(D0 + dt.timedelta(days=1), 0, 0, 1), live=w)
    assert (rep.inserted, rep.duplicates, rep.live_applied) == (0, 1, 0)
    assert rl.live_score(live, "s-m", today=D0 + dt.timedelta(days=1)) == pytest.approx(once, rel=1e-12)
    assert r.scard(rl.seen_key(PREFIX, "s-m", D0.isoformat())) == 1
    assert not r.exists(rl.seen_key(PREFIX, "s-m", (D0 + dt.timedelta(days=1)).isoformat()))


def test_rebase_drops_exactly_the_days_gold_holds_and_twice_is_once(live, r):
    w = rl.LiveWriter(live)
    weights, lam = live.engagement_weight_map, live.engagement_decay_per_day
    d = lambda n: D0 + dt.timedelta(days=n)  # noqa: E731
    docs = []
    for sid in ("s-a", "s-b"):
        for n, etype in ((-1, "page_view"), (0, "quiz_attempt"), (1, "assignment_submit"), (2, "video_play")):
            if sid == "s-b" and n == -1:
                continue
            doc = (video(f"{sid}-{n}", at(d(n), 8), 1.0, sid=sid, etype=etype, known=at(d(n), 9))
                   if etype == "video_play" else event(f"{sid}-{n}", etype, at(d(n), 8), sid=sid, known=at(d(n), 9)))
            docs.append(doc)
    assert w.apply(docs) == len(docs)
    before = r.hgetall(rl.score_key(PREFIX, "s-a"))
    assert {f for f in before if f.startswith("pts:")} == {f"pts:{d(n)}" for n in (-1, 0, 1, 2)}

    rows = [{"student_id": "s-a", "score": Decimal("7.250000")}, {"student_id": "s-c", "score": Decimal("3")}]
    out = rl.rebase_scores(live, D0, rows)
    assert (out["rebased"], out["orphans"], out["skipped_newer"]) == (2, 1, 0)
    after = r.hgetall(rl.score_key(PREFIX, "s-a"))
    assert {f for f in after if f.startswith("pts:")} == {f"pts:{d(1)}", f"pts:{d(2)}"}
    assert (after[f"pts:{d(1)}"], after[f"pts:{d(2)}"]) == (before[f"pts:{d(1)}"], before[f"pts:{d(2)}"])
    assert (after["base"], after["base_day"], after["score_day"]) == ("7.250000", D0.isoformat(), d(2).isoformat())
    for sid in ("s-a", "s-b"):
        seen = [bool(r.exists(rl.seen_key(PREFIX, sid, str(d(n))))) for n in (-1, 0, 1, 2)]
        assert seen == [False, False, True, True], sid
    later = [("assignment_submit", d(1), d(1)), ("video_play", d(2), d(2))]
    for day in (d(2), d(5)):
        assert rl.live_score(live, "s-a", today=day) == pytest.approx(
            expected_score(7.25, D0, later, day, weights, lam), rel=1e-12)
        assert rl.live_score(live, "s-b", today=day) == pytest.approx(  # no gold row: later points only
            expected_score(0.0, D0, later, day, weights, lam), rel=1e-12)
        assert rl.live_score(live, "s-c", today=day) == pytest.approx(3 * math.exp(-lam * (day - D0).days))
    assert float(after["score"]) == pytest.approx(expected_score(7.25, D0, later, d(2), weights, lam), rel=1e-12)

    # Events gold now holds do not count again when applied late; later ones still count once.
    assert w.apply([docs[1], docs[2]]) == 2 and rl.live_score(live, "s-a", today=d(5)) == pytest.approx(
        expected_score(7.25, D0, later, d(5), weights, lam), rel=1e-12)

    snapshot = state(r)
    again = rl.rebase_scores(live, D0, rows)
    assert (again["rebased"], again["orphans"]) == (2, 0)
    assert state(r) == snapshot
    # An older as-of day never replaces a newer base.
    old = rl.rebase_scores(live, d(-1), [{"student_id": "s-a", "score": Decimal("100")}])
    assert (old["rebased"], old["orphans"], old["skipped_newer"]) == (0, 0, 1) and state(r) == snapshot
    assert_every_key_expires(live, r)


@pytest.fixture()
def host_not_utc(monkeypatch):
    """A host clock zone other than UTC, as on a laptop: Spark's naive TIMESTAMPs are local time."""
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_reconcile_repairs_drift_and_keeps_a_newer_tail_position(live, r, host_not_utc):
    w = rl.LiveWriter(live)
    known = at(D0 + dt.timedelta(days=1), 1)
    naive_local = lambda t: t.astimezone().replace(tzinfo=None)  # noqa: E731 - how Spark hands TIMESTAMPs back
    t = at(D0, 10)
    w.apply([video("r1", t, 100.0, known=known), video("r2", t - dt.timedelta(hours=1), 300.0, vid="v2",
                                                              etype="video_complete", dur=300.0, known=known)])
    key = rl.progress_key(PREFIX, "s1", "c1")
    r.hset(key, mapping={"pos:v1": "999", "videos_completed": "7", "status": "completed", "junk": "x"})
    r.hdel(key, "done:v2")

    gold = [
        {"student_id": "s1", "course_id": "c1", "videos_total": 4, "videos_completed": 1, "completion_pct": 25.0,
         "status": "in_progress", "quizzes_passed": 0, "resume_positions": {"v1": 100.0, "v2": 300.0},
         "resume_at": {"v1": naive_local(t), "v2": naive_local(t - dt.timedelta(hours=1))},
         "completed_video_ids": ["v2"], "last_accessed": naive_local(t)},
        {"student_id": "s2", "course_id": "c1", "videos_total": 2, "videos_completed": 1, "completion_pct": 50.0,
         "status": "in_progress", "resume_positions": {"a": 10.0}, "resume_at": {"a": t},
         "completed_video_ids": ["a"], "last_accessed": t},
        {"student_id": "s3", "course_id": "c9", "videos_total": 0, "videos_completed": 0, "completion_pct": 0.0,
         "status": "not_started", "resume_positions": {}, "resume_at": {}, "completed_video_ids": [],
         "last_accessed": t},
    ]
    tail = [video("t1", t + dt.timedelta(hours=1), 150.0, known=known),  # newer: wins over gold's 100
            video("t2", t - dt.timedelta(hours=2), 10.0, vid="v2", etype="video_seek", known=known),  # older
            video("t3", t + dt.timedelta(minutes=90), 600.0, vid="v3", etype="video_complete", known=known),
            video("t4", t + dt.timedelta(hours=2), 20.0, sid="s2", vid="b", etype="video_complete", dur=20.0,
                  known=known),
            event("t5", "page_view", t + dt.timedelta(hours=3), sid="s3", cid="c9", known=known)]
    out = rl.reconcile_progress(live, gold, tail)
    assert out == {"replaced": 3, "tail_applied": 5}

    p = rl.read_progress(live, "s1", "c1")
    assert "junk" not in r.hgetall(key)
    assert p["resume_positions"] == {"v1": 150.0, "v2": 300.0, "v3": 600.0}
    assert p["resume_at"]["v1"] == t + dt.timedelta(hours=1) and p["resume_at"]["v2"] == t - dt.timedelta(hours=1)
    assert (p["completed_video_ids"], p["videos_completed"], p["videos_total"]) == (["v2", "v3"], 2, 4)
    assert (p["completion_pct"], p["status"]) == gold_completion(2, 4, True) == (50.0, "in_progress")
    assert (p["last_video"], p["last_video_pos"]) == ("v3", 600.0)
    assert p["last_accessed"] == t + dt.timedelta(minutes=90)

    p2 = rl.read_progress(live, "s2", "c1")
    assert (p2["completion_pct"], p2["status"]) == gold_completion(2, 2, True) == (100.0, "completed")
    p3 = rl.read_progress(live, "s3", "c9")
    assert (p3["completion_pct"], p3["status"]) == gold_completion(0, 0, False) == (0.0, "not_started")
    assert p3["last_accessed"] == t + dt.timedelta(hours=3)

    snapshot = state(r)
    assert rl.reconcile_progress(live, gold, tail) == out
    assert state(r) == snapshot
    # Without the tail, gold's state is exactly what is left (the drift is gone, not merged).
    rl.reconcile_progress(live, gold[:1])
    p = rl.read_progress(live, "s1", "c1")
    assert (p["resume_positions"], p["completed_video_ids"], p["videos_completed"], p["status"]) == (
        {"v1": 100.0, "v2": 300.0}, ["v2"], 1, "in_progress")
    assert_every_key_expires(live, r)


def test_a_redis_outage_does_not_fail_the_mongodb_write(live, db, caplog):
    from learntrack.mongo_ops import insert_activities

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = live.with_overrides(redis_url=f"redis://127.0.0.1:{port}/1")
    docs = [video(f"o{i}", at(D0, 10, i), float(i)) for i in range(5)]
    with caplog.at_level("WARNING"):
        rep = insert_activities(db, docs, now=at(D0, 12), live=rl.LiveWriter(down), batch_size=3)
    assert (rep.inserted, rep.live_applied, rep.live_failed) == (5, 0, 5)
    assert db.activities.count_documents({}) == 5
    assert "live path" in caplog.text and "live_failed=5" in str(rep)
    # Without a live writer nothing changes in the report.
    assert str(insert_activities(db, [video("o9", at(D0, 11), 1.0)], now=at(D0, 12))) == \
        "inserted=1 duplicates=0 rejected=0"


def test_every_key_written_has_its_ttl(live, r, db):
    from learntrack.mongo_ops import insert_activities

    w = rl.LiveWriter(live)
    insert_activities(db, [video("x1", at(D0, 10), 5.0), event("x2", "login", at(D0, 11), sid="s-x")],
                      now=at(D0, 12), live=w)
    rl.rebase_scores(live, D0 - dt.timedelta(days=1), [{"student_id": "s-y", "score": Decimal("1")}])
    rl.reconcile_progress(live, [{"student_id": "s-z", "course_id": "c1", "videos_total": 1, "videos_completed": 0,
                                  "completion_pct": 0.0, "status": "not_started", "resume_positions": {},
                                  "resume_at": {}, "completed_video_ids": [], "last_accessed": at(D0, 1)}])
    keys = all_keys(r)
    assert {rl.progress_key(PREFIX, "s1", "c1"), rl.progress_key(PREFIX, "s-x", "c1"),
            rl.progress_key(PREFIX, "s-z", "c1"), rl.score_key(PREFIX, "s1"), rl.score_key(PREFIX, "s-x"),
            rl.score_key(PREFIX, "s-y"), rl.seen_key(PREFIX, "s1", D0.isoformat())} <= set(keys)
    assert_every_key_expires(live, r)
