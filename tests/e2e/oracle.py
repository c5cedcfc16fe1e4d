"""The independent oracle of the end-to-end tests: what the pipeline must publish, computed in plain
Python from the generated source documents, with no Spark and no project analytics code."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

UTC = dt.timezone.utc


def watched_seconds(events):
    """(play event, seconds watched) for every play: up to the next video event of the same student and
    video (pause/complete position, or a seek's from-position), capped by the rest of the video and by
    2x the wall-clock time in between; 0 when nothing follows or the next event is another play."""
    streams = defaultdict(list)
    for d in events:
        if d["event_type"] in ("video_play", "video_pause", "video_seek", "video_complete"):
            streams[(d["student_id"], d["course_id"], d["item_id"])].append(d)
    out = []
    for stream in streams.values():
        stream.sort(key=lambda d: (d["event_time"], d["event_id"]))
        for cur, nxt in zip(stream, stream[1:] + [None]):
            if cur["event_type"] != "video_play":
                continue
            seconds = 0.0
            if nxt is not None:
                if nxt["event_type"] in ("video_pause", "video_complete"):
                    end = nxt["position_s"]
                elif nxt["event_type"] == "video_seek":
                    end = nxt.get("from_position_s", cur["position_s"])
                else:
                    end = cur["position_s"]
                elapsed = (nxt["event_time"] - cur["event_time"]).total_seconds()
                seconds = max(0.0, min(end - cur["position_s"], 2.0 * elapsed, cur["duration_s"] - cur["position_s"]))
            out.append((cur, seconds))
    return out


def engagement_scores(extracted, settings, as_of):
    """Closed form: per (student, course), the sum over events known (written to MongoDB) by the
    end of ``as_of`` of weight * exp(-lambda * days since min(event day, known day))."""
    weights, lam = settings.engagement_weight_map, settings.engagement_decay_per_day
    scores = defaultdict(float)
    for d in extracted:
        known = d["ingested_at"].astimezone(UTC).date()
        if known <= as_of:
            age = (as_of - min(d["event_time"].date(), known)).days
            scores[(d["student_id"], d["course_id"])] += weights.get(d["event_type"], 0.0) * math.exp(-lam * age)
    return scores


def expected_segments(extracted, settings, as_of, student_scores, passing):
    """Segment per student from the activity windows; the 'highly engaged' percentile is taken
    over the stored scores (checked separately) so that near-ties cannot flip it."""
    window = settings.engagement_activity_window_days
    recent, previous, attempts, passes = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(list)
    for d in extracted:
        age = (as_of - d["event_time"].date()).days
        if d["ingested_at"].astimezone(UTC).date() > as_of or not 0 <= age < 2 * window:
            continue
        (recent if age < window else previous)[d["student_id"]] += 1
        if d["event_type"] == "quiz_attempt":
            attempts[d["student_id"]] += 1
            passes[d["student_id"]].append(d["score"] >= passing[(d["course_id"], d["item_id"])])
    active = {s: v for s, v in student_scores.items() if recent[s]}
    out = {}
    for student, score in student_scores.items():
        rate = sum(passes[student]) / len(passes[student]) if passes[student] else None
        pct = ((sum(v < score for v in active.values()) + sum(v == score for v in active.values()) / 2)
               / len(active)) if student in active else None
        out[student] = ("inactive" if not recent[student] and not previous[student]
                        else "disengaging" if not recent[student]
                        else "struggling" if (attempts[student] >= settings.engagement_struggling_min_attempts
                                              and rate is not None and rate < settings.engagement_struggling_pass_rate)
                        else "highly_engaged" if pct > settings.engagement_band_high else "active")
    return out


def expected_results(data, settings, end: dt.datetime, run_day: dt.date):
    """What the pipeline must publish, computed directly from the source documents: the ones
    written up to the interval end, minus the malformed ones (per the generator's record of what it
    corrupted), keeping the first write of each event id."""
    written = [d for d in data.activities if d["ingested_at"] <= end]
    malformed = {m["_id"]: m["rule"] for m in data.truth["malformed"]}
    first: dict[str, dict] = {}
    for d in sorted((d for d in written if str(d["_id"]) not in malformed),
                    key=lambda d: (d["ingested_at"], str(d["_id"]))):
        first.setdefault(d["event_id"], d)
    extracted = list(first.values())
    quarantined = {str(d["_id"]): malformed[str(d["_id"])] for d in written if str(d["_id"]) in malformed}
    days = sorted({d["event_time"].date() for d in extracted})

    course_day = defaultdict(lambda: defaultdict(float))
    learners = defaultdict(set)
    quiz_pcts = defaultdict(list)
    for d in extracted:
        key = (d["event_time"].date(), d["course_id"])
        row = course_day[key]
        row["events"] += 1
        learners[key].add(d["student_id"])
        field = {"page_view": "page_views", "video_play": "video_plays", "video_complete": "video_completions",
                 "quiz_attempt": "quiz_attempts", "assignment_submit": "assignment_submissions",
                 "login": "logins"}.get(d["event_type"])
        if field:
            row[field] += 1
        if d["event_type"] == "quiz_attempt":
            quiz_pcts[key].append(d["score"] / d["max_score"] * 100)
    courses = {c["_id"]: c for c in data.courses}
    passing = {(c["_id"], q["quiz_id"]): q["passing_score"] for c in data.courses for q in c["content"]["quizzes"]}
    passes = defaultdict(list)
    for d in extracted:
        if d["event_type"] == "quiz_attempt":
            passes[(d["event_time"].date(), d["course_id"])].append(
                d["score"] >= passing[(d["course_id"], d["item_id"])])
    watch = defaultdict(float)
    for d, seconds in watched_seconds(extracted):
        watch[(d["event_time"].date(), d["course_id"])] += seconds
    first_day = {}
    for d in extracted:
        key = (d["student_id"], d["course_id"])
        first_day[key] = min(first_day.get(key, d["event_time"].date()), d["event_time"].date())
    new = defaultdict(int)
    for (student, course), day in first_day.items():
        new[(day, course)] += 1
    cassandra = {}
    for key, row in course_day.items():
        pcts = quiz_pcts.get(key)
        cassandra[key] = {
            "active_learners": len(learners[key]), "events": int(row["events"]),
            **{f: int(row[f]) for f in ("page_views", "video_plays", "video_completions", "quiz_attempts",
                                        "assignment_submissions", "logins")},
            "avg_quiz_score_pct": sum(pcts) / len(pcts) if pcts else None,
            "quiz_pass_rate": sum(passes[key]) / len(passes[key]) if passes.get(key) else None,
            "video_watch_seconds": watch.get(key, 0.0), "new_learners": new.get(key, 0),
        }

    progress = {}
    by_student_course = defaultdict(list)
    for d in extracted:
        by_student_course[(d["student_id"], d["course_id"])].append(d)
    for key, events in by_student_course.items():
        videos = [v["video_id"] for v in courses[key[1]]["content"]["videos"]]
        completed = {d["item_id"] for d in events if d["event_type"] == "video_complete"}
        video_events = sorted((d for d in events if d["event_type"].startswith("video_")),
                              key=lambda d: (d["event_time"], d["position_s"]))
        resume = {d["item_id"]: d["position_s"] for d in video_events}
        resume_at = {d["item_id"]: d["event_time"] for d in video_events}
        passed = {d["item_id"] for d in events
                  if d["event_type"] == "quiz_attempt" and d["score"] >= passing[(d["course_id"], d["item_id"])]}
        status = ("completed" if videos and len(completed) >= len(videos)
                  else "in_progress" if video_events else "not_started")
        progress[key] = {
            "videos_total": len(videos), "videos_completed": len(completed),
            "completion_pct": min(100.0, len(completed) / len(videos) * 100) if videos else 0.0,
            "status": status, "resume_positions": resume,
            "quizzes_passed": len(passed), "passed_quiz_ids": sorted(passed),
            "completed_video_ids": sorted(completed), "resume_at": resume_at,
            "first_event_time": min(d["event_time"] for d in events),
            "last_accessed": max(d["event_time"] for d in events),
        }

    course_scores = engagement_scores(extracted, settings, run_day)
    scores = defaultdict(float)
    for (student, _course), score in course_scores.items():
        scores[student] += score

    logins = [d for d in extracted if d["event_type"] == "login"]
    window = dt.timedelta(minutes=settings.multi_region_window_minutes)
    since = dt.datetime.combine(days[0], dt.time(), UTC)
    until = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), UTC)
    pairs = set()
    for a in logins:
        if not since <= a["event_time"] < until:
            continue
        for b in logins:
            later = b["event_time"] > a["event_time"] or (b["event_time"] == a["event_time"]
                                                          and b["event_id"] > a["event_id"])
            if (b["student_id"] == a["student_id"] and b["region"] != a["region"] and later
                    and b["event_time"] - a["event_time"] <= window):
                pairs.add((a["student_id"], a["event_id"], b["event_id"]))
    campus = defaultdict(set)
    for d in logins:
        if d["event_time"].date() in days and d.get("ip"):
            campus[(d["event_time"].date(), d["ip"])].add(d["student_id"])
    shared = {key: sorted(ids) for key, ids in campus.items() if len(ids) >= settings.shared_access_min_students}

    profiles = {}
    for p in sorted((p for p in data.students if p["updated_at"] <= end), key=lambda p: p["updated_at"]):
        profiles[p["_id"]] = p
    funnel = defaultdict(lambda: {"enrolled": 0, "started": 0, "half_completed": 0, "completed": 0})
    pairs_enrolled = {(s, c) for s, p in profiles.items() for c in p["enrolled_courses"]} | set(progress)
    for student, course in pairs_enrolled:
        row, prog = funnel[course], progress.get((student, course))
        row["enrolled"] += 1
        row["started"] += bool(prog and prog["status"] != "not_started")
        row["half_completed"] += bool(prog and prog["completion_pct"] >= 50)
        row["completed"] += bool(prog and prog["status"] == "completed")
    return {"days": days, "cassandra": cassandra, "scores": dict(scores), "extracted": extracted, "passing": passing,
            "course_scores": dict(course_scores), "shared": shared, "funnel": dict(funnel),
            "pairs": pairs, "progress": progress,
            "silver_rows": len(extracted), "written": len(written), "quarantined": quarantined,
            "duplicates": len(written) - len(extracted) - len(quarantined),
            "held_back": len(data.activities) - len(written)}




# ------------------------------------------------------------------------------ comparisons
def assert_sinks_equal(settings, data, exp, end: dt.datetime, run_day: dt.date):
    """Cassandra, Redis and Neo4j hold what the oracle computed from the source documents."""
    import pytest

    from collections import Counter

    from learntrack.generator import is_clean
    from learntrack.sinks import cassandra_sink, neo4j_sink, redis_sink

    # Cassandra: every (day, course) row, every metric.
    got = {}
    for day in exp["days"]:
        for row in cassandra_sink.read_day(settings, day):
            got[(row["event_date"].date() if hasattr(row["event_date"], "date") else row["event_date"],
                 row["course_id"])] = row
    got = {(dt.date.fromisoformat(str(k[0])), k[1]): v for k, v in got.items()}
    assert set(got) == set(exp["cassandra"])
    for key, want in exp["cassandra"].items():
        row = got[key]
        for metric, value in want.items():
            if isinstance(value, float):
                assert row[metric] == pytest.approx(value, rel=1e-9, abs=1e-6), (key, metric)
            else:
                assert row[metric] == value, (key, metric)

    # Cassandra's other read tables: engagement history and segments of the run day, the funnel,
    # multi-region alerts and shared IPs.
    history = {r["student_id"]: r for r in cassandra_sink.read_day(settings, run_day,
                                                                    cassandra_sink.STUDENT_ENGAGEMENT_BY_STUDENT)}
    assert set(history) == set(exp["scores"])
    for sid, score in exp["scores"].items():
        assert history[sid]["score"] == pytest.approx(score, abs=1e-5), sid
    segments = {r["segment"]: r["students"] for r in cassandra_sink.read_day(settings, run_day,
                                                                             cassandra_sink.SEGMENTS_BY_DAY)}
    assert segments == dict(Counter(r["segment"] for r in history.values()))
    funnel = {r["course_id"]: {k: r[k] for k in ("enrolled", "started", "half_completed", "completed")}
              for r in cassandra_sink.read_day(settings, run_day, cassandra_sink.COMPLETION_FUNNEL_BY_DAY)}
    assert funnel == exp["funnel"]
    alerts, shared = set(), {}
    for day in exp["days"]:
        alerts |= {(a["student_id"], a["first_event_id"], a["second_event_id"])
                   for a in cassandra_sink.read_day(settings, day, cassandra_sink.MULTI_REGION_ALERTS_BY_DAY)}
        shared |= {(day, a["value"]): a["student_ids"]
                   for a in cassandra_sink.read_day(settings, day, cassandra_sink.SHARED_ACCESS_BY_DAY)}
    assert alerts == exp["pairs"]
    assert shared == exp["shared"]

    # Redis: the snapshot of the run day: every student's decayed score, overall and per course.
    board = redis_sink.leaderboard(settings)
    assert set(board) == set(exp["scores"])
    for sid, score in exp["scores"].items():
        assert board[sid] == pytest.approx(score, abs=1e-5), sid  # DECIMAL(18,6) rounding per step
        assert redis_sink.student(settings, sid)["segment"] == history[sid]["segment"]
    assert redis_sink.snapshot_as_of(settings) == run_day.isoformat()
    for course in {c for _, c in exp["course_scores"]}:
        want = {s: v for (s, c), v in exp["course_scores"].items() if c == course}
        got = redis_sink.leaderboard(settings, course)
        assert set(got) == set(want) and all(got[s] == pytest.approx(v, abs=1e-5) for s, v in want.items()), course

    # Neo4j: the Cypher multi-region pairs equal the brute-force pairs, and include the injected cases.
    since = dt.datetime.combine(exp["days"][0], dt.time(), UTC)
    until = dt.datetime.combine(exp["days"][-1] + dt.timedelta(days=1), dt.time(), UTC)
    pairs = {(p["student_id"], p["first_event_id"], p["second_event_id"])
             for p in neo4j_sink.multi_region_pairs(settings, since, until)}
    assert pairs == exp["pairs"]
    extracted_ids = {d["event_id"] for d in data.activities if d["ingested_at"] <= end and is_clean(d)}
    injected = {tuple(c["event_ids"]) for c in data.truth["multi_region"] if set(c["event_ids"]) <= extracted_ids}
    assert injected and injected <= {(a, b) for _, a, b in pairs}
    # The sharing check in Cypher finds the IPs gold and the oracle found.
    shared = {(s["event_date"], s["value"]): s["student_ids"] for s in neo4j_sink.shared_access(settings, since, until)}
    assert shared == exp["shared"]
    alerts, _, _ = neo4j_sink.connect(settings).execute_query(
        "MATCH (al:Alert {ns: $ns}) RETURN al.kind AS kind, count(*) AS n", ns=settings.neo4j_namespace)
    want = {"multi_region": len(exp["pairs"]), "shared_ip": len(exp["shared"])}
    assert {r["kind"]: r["n"] for r in alerts} == {k: n for k, n in want.items() if n}


def assert_gold_equal(spark, settings, exp):
    """gold.student_course_progress and gold.multi_region_access equal the oracle."""
    import pytest

    from lake.delta import read_table
    from lake.tables import GOLD_COMPLETION_FUNNEL, GOLD_MULTI_REGION, GOLD_SHARED_ACCESS, GOLD_STUDENT_COURSE_PROGRESS

    got = {(r["student_id"], r["course_id"]): r.asDict()
           for r in read_table(spark, GOLD_STUDENT_COURSE_PROGRESS, settings.lake_uri).collect()}
    assert set(got) == set(exp["progress"])
    for key, want in exp["progress"].items():
        row = got[key]
        for col, value in want.items():
            if col in ("first_event_time", "last_accessed"):
                assert row[col].astimezone(UTC) == value, (key, col)  # Spark hands back host-local time
            elif col == "resume_positions":
                assert row[col] == pytest.approx(value), key
            elif col == "resume_at":
                assert {k: v.astimezone(UTC) for k, v in row[col].items()} == value, key
            elif isinstance(value, float):
                assert row[col] == pytest.approx(value), (key, col)
            else:
                assert row[col] == value, (key, col)
    assert "in_progress" in {p["status"] for p in exp["progress"].values()}
    assert any(p["videos_completed"] > 0 for p in exp["progress"].values())
    pairs = {(r["student_id"], r["first_event_id"], r["second_event_id"])
             for r in read_table(spark, GOLD_MULTI_REGION, settings.lake_uri).collect()}
    assert pairs == exp["pairs"]
    shared = {(r["event_date"], r["value"]): r["student_ids"]
              for r in read_table(spark, GOLD_SHARED_ACCESS, settings.lake_uri).collect()}
    assert shared == exp["shared"]
    funnel = {r["course_id"]: {k: r[k] for k in ("enrolled", "started", "half_completed", "completed")}
              for r in read_table(spark, GOLD_COMPLETION_FUNNEL, settings.lake_uri).collect()}
    assert funnel == exp["funnel"]


def assert_engagement_equal(spark, settings, exp, run_day: dt.date):
    """Every as-of day of the chain (the batch's events were known over several days) against the
    closed form, the bands against percentiles computed here, the segments against the rules."""
    import pytest

    from lake.delta import read_table
    from lake.tables import GOLD_STUDENT_COURSE_ENGAGEMENT, GOLD_STUDENT_ENGAGEMENT

    course_rows = [r.asDict() for r in read_table(spark, GOLD_STUDENT_COURSE_ENGAGEMENT, settings.lake_uri).collect()]
    student_rows = {(r["as_of_date"], r["student_id"]): r.asDict()
                    for r in read_table(spark, GOLD_STUDENT_ENGAGEMENT, settings.lake_uri).collect()}
    as_of_days = sorted({r["as_of_date"] for r in course_rows})
    first_known = min(d["ingested_at"].astimezone(UTC).date() for d in exp["extracted"])
    assert as_of_days == [first_known + dt.timedelta(days=i) for i in range((run_day - first_known).days + 1)]
    segments_seen = set()
    for day in as_of_days:
        want = {k: v for k, v in engagement_scores(exp["extracted"], settings, day).items()}
        got = {(r["student_id"], r["course_id"]): r for r in course_rows if r["as_of_date"] == day}
        assert set(got) == set(want), day
        for key, score in want.items():
            assert float(got[key]["score"]) == pytest.approx(score, abs=1e-5), (day, key)
        by_course = defaultdict(list)
        for (student, course), row in got.items():
            by_course[course].append(row["score"])
        for (student, course), row in got.items():
            peers = by_course[course]
            pct = (sum(v < row["score"] for v in peers) + sum(v == row["score"] for v in peers) / 2) / len(peers)
            assert row["percentile"] == pytest.approx(pct), (day, student, course)
            band = ("low" if pct < settings.engagement_band_low else "high" if pct > settings.engagement_band_high
                    else "normal")
            assert row["band"] == band, (day, student, course)
        stored = {s: row["score"] for (d, s), row in student_rows.items() if d == day}
        assert set(stored) == {s for s, _ in want}
        for student, score in stored.items():
            assert score == sum(v["score"] for (s, _), v in got.items() if s == student)
        segments = expected_segments(exp["extracted"], settings, day, stored, exp["passing"])
        for student, segment in segments.items():
            assert student_rows[(day, student)]["segment"] == segment, (day, student)
        segments_seen |= set(segments.values())
    assert {"active", "highly_engaged"} <= segments_seen, segments_seen


# ------------------------------------------------------------------------------ analysts' questions
def expected_analyses(exp, settings, run_day: dt.date) -> dict[str, list[tuple]]:
    """The questions of docs/analysts.md answered from the source documents, rows in each query's
    order. ``at_risk_movement`` folds 'active'/'highly_engaged' of the day before into 'engaged'
    (that split rests on a percentile of stored scores; the at-risk segments do not)."""
    extracted = exp["extracted"]
    out: dict[str, list[tuple]] = {}

    weekly = defaultdict(set)
    for d in extracted:
        day = d["event_time"].date()
        weekly[(day - dt.timedelta(days=day.weekday()), d["course_id"])].add(d["student_id"])
    out["weekly_active_learners"] = sorted(((w, c, len(s)) for (w, c), s in weekly.items()),
                                           key=lambda r: (r[0], -r[2], r[1]))

    dropoff = defaultdict(int)
    for d in extracted:
        if d["event_type"] == "video_pause" and d["duration_s"] > 0:
            dropoff[min(9, math.floor(d["position_s"] / d["duration_s"] * 10)) * 10] += 1
    out["video_dropoff"] = sorted(dropoff.items())

    quiz = defaultdict(list)
    for d in extracted:
        if d["event_type"] == "quiz_attempt":
            quiz[d["event_time"].date()].append(d["score"] >= exp["passing"][(d["course_id"], d["item_id"])])
    out["quiz_pass_rate_trend"] = [(day, len(v), sum(v) / len(v)) for day, v in sorted(quiz.items())]

    out["completion_funnel"] = sorted(
        ((c, f["enrolled"], f["started"], f["half_completed"], f["completed"], round(f["completed"] / f["enrolled"], 3))
         for c, f in exp["funnel"].items()), key=lambda r: (-r[1], r[0]))

    def segments(day):
        scores = defaultdict(float)
        for (student, _course), score in engagement_scores(extracted, settings, day).items():
            scores[student] += score
        return expected_segments(extracted, settings, day, scores, exp["passing"])

    today, before = segments(run_day), segments(run_day - dt.timedelta(days=1))
    fold = {"active": "engaged", "highly_engaged": "engaged"}
    movement = defaultdict(int)
    for student, segment in today.items():
        if segment in ("struggling", "disengaging"):
            movement[(segment, fold.get(before.get(student, "(new)"), before.get(student, "(new)")))] += 1
    out["at_risk_movement"] = sorted(((s, p, n) for (s, p), n in movement.items()), key=lambda r: (-r[2], r[0], r[1]))

    region = {d["event_id"]: d["region"] for d in extracted if d["event_type"] == "login"}
    pairs, pair_students = defaultdict(int), defaultdict(set)
    for student, first, second in exp["pairs"]:
        key = tuple(sorted((region[first], region[second])))
        pairs[key] += 1
        pair_students[key].add(student)
    out["multi_region_pairs"] = sorted(((a, b, n, len(pair_students[(a, b)])) for (a, b), n in pairs.items()),
                                       key=lambda r: (-r[2], r[0], r[1]))

    top = []
    for day in sorted({k[0] for k in exp["cassandra"]}):
        ranked = sorted(((c, row) for (d, c), row in exp["cassandra"].items() if d == day),
                        key=lambda cr: (-cr[1]["video_watch_seconds"], cr[0]))[:3]
        top += [(day, c, row["video_watch_seconds"], row["active_learners"]) for c, row in ranked]
    out["top_courses_by_watch_time"] = top

    devices, device_students = defaultdict(int), defaultdict(set)
    for d in extracted:
        if d["event_type"] == "login":
            devices[(d["region"], d["device"])] += 1
            device_students[(d["region"], d["device"])].add(d["student_id"])
    out["login_devices_by_region"] = sorted(((r, dv, n, len(device_students[(r, dv)])) for (r, dv), n in devices.items()),
                                            key=lambda x: (x[0], -x[2], x[1]))

    status = defaultdict(lambda: {"completed": 0, "in_progress": 0, "not_started": 0, "pct": []})
    for (_student, course), p in exp["progress"].items():
        status[course][p["status"]] += 1
        status[course]["pct"].append(p["completion_pct"])
    out["course_progress_status"] = [(c, s["completed"], s["in_progress"], s["not_started"], sum(s["pct"]) / len(s["pct"]))
                                     for c, s in sorted(status.items())]

    rules = defaultdict(int)
    for rule in exp["quarantined"].values():
        rules[rule] += 1
    out["quarantine_by_rule"] = sorted(rules.items(), key=lambda r: (-r[1], r[0]))
    return out


def assert_rows_equal(name: str, got: list[tuple], want: list[tuple]) -> None:
    """Same rows in the same order; floats to a relative 1e-9 (sums of doubles in another order)."""
    import pytest

    assert len(got) == len(want), (name, got, want)
    for g, w in zip(got, want):
        assert len(g) == len(w), (name, g, w)
        for x, y in zip(g, w):
            if isinstance(y, float) and not isinstance(x, str):
                assert float(x) == pytest.approx(y, rel=1e-9), (name, g, w)
            else:
                assert x == y, (name, g, w)
