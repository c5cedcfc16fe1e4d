"""Deterministic generator of students, courses and activity sessions.

Same seed and parameters give the same documents, byte for byte, so tests can compute the expected
analytics independently from what was generated. Sessions are realistic enough for the pipeline
to mean something: skewed course popularity, a diurnal rhythm, login with region/IP/device,
video play/pause/seek/complete whose positions stay within the video and resume where the student
left off, quiz attempts with scores. Injected cases (multi-region logins, late writes) are
recorded in ``GeneratedData.truth`` beside the data.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from learntrack.activity_model import DEVICES, REGIONS

UTC = dt.timezone.utc
CATEGORIES = ("data-science", "programming", "business", "languages", "math", "design")
# Hour-of-day weights (UTC used as local time for simplicity): quiet nights, evening peak.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 10, 10, 9, 7, 4, 2]


@dataclass
class GenParams:
    students: int = 200
    courses: int = 20
    days: int = 3
    end: dt.datetime = dt.datetime(2026, 1, 10, tzinfo=UTC)  # exclusive end of the event window
    seed: int = 7
    active_probability: float = 0.6  # chance a student is active on a given day
    multi_region_rate: float = 0.03  # per session: a second login from another region minutes later
    late_rate: float = 0.02  # per event: written 1-3 days after it happened (offline client)


@dataclass
class GeneratedData:
    students: list[dict]
    courses: list[dict]
    activities: list[dict]
    truth: dict[str, Any] = field(default_factory=dict)


def _ip(rng: random.Random, region: str) -> str:
    base = REGIONS.index(region) * 20 + 11
    return f"{base}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def generate(params: GenParams) -> GeneratedData:
    rng = random.Random(params.seed)
    start = params.end - dt.timedelta(days=params.days)
    created = start - dt.timedelta(days=30)

    courses = []
    for c in range(params.courses):
        videos = [
            {"video_id": f"c{c:05d}-v{v:02d}", "title": f"Lecture {v + 1}",
             "duration_s": rng.randrange(180, 1800),
             "blob_url": f"https://blob.example/videos/c{c:05d}/v{v:02d}.mp4",
             "quality_variants": {q: f"https://cdn.example/c{c:05d}/v{v:02d}_{q}.m3u8"
                                  for q in ("360p", "720p", "1080p")}}
            for v in range(rng.randrange(3, 9))
        ]
        quizzes = [{"quiz_id": f"c{c:05d}-q{q:02d}", "max_score": 10, "passing_score": 6,
                    "questions": rng.randrange(5, 15)} for q in range(rng.randrange(1, 4))]
        pdfs = [{"pdf_id": f"c{c:05d}-p00", "blob_url": f"https://blob.example/pdfs/c{c:05d}/notes.pdf",
                 "size_mb": round(rng.uniform(0.2, 12), 1)}]
        courses.append({
            "_id": f"c{c:05d}", "title": f"Course {c}", "category": rng.choice(CATEGORIES),
            "difficulty_level": rng.choice(("beginner", "intermediate", "advanced")),
            "content": {"videos": videos, "quizzes": quizzes, "pdfs": pdfs},
            "total_duration_s": sum(v["duration_s"] for v in videos),
            "created_at": created, "updated_at": created,
        })
    # Zipf-like popularity: course k is chosen with weight 1/(k+1).
    popularity = [1.0 / (k + 1) for k in range(params.courses)]

    students = []
    for s in range(params.students):
        home = rng.choice(REGIONS)
        k = min(params.courses, rng.randrange(1, 5))
        enrolled: list[str] = []
        while len(enrolled) < k:
            cid = courses[rng.choices(range(params.courses), weights=popularity)[0]]["_id"]
            if cid not in enrolled:
                enrolled.append(cid)
        students.append({
            "_id": f"s{s:07d}", "name": f"Student {s}", "email": f"student{s}@example.org",
            "home_region": home, "country": home.split("-")[0].upper(),
            "subscription": rng.choice(("free", "free", "plus", "pro")),
            "enrolled_courses": enrolled, "progress": {},
            "created_at": created, "updated_at": created,
        })

    course_by_id = {c["_id"]: c for c in courses}
    resume: dict[tuple[str, str], float] = {}  # (student, video) -> last position
    activities: list[dict] = []
    multi_region: list[dict] = []
    late: list[str] = []
    counter = 0

    def emit(student: dict, course_id: str, etype: str, at: dt.datetime, **extra: Any) -> dict:
        nonlocal counter
        counter += 1
        event_id = f"e{params.seed:03d}-{counter:09d}-{rng.getrandbits(24):06x}"
        delay = dt.timedelta(seconds=rng.uniform(0.2, 5.0))
        if rng.random() < params.late_rate:
            delay = dt.timedelta(days=rng.uniform(1, 3))
            late.append(event_id)
        doc = {"_id": event_id, "event_id": event_id, "student_id": student["_id"],
               "course_id": course_id, "event_type": etype,
               "event_time": at.replace(microsecond=(at.microsecond // 1000) * 1000),
               "ingested_at": (at + delay).replace(microsecond=((at + delay).microsecond // 1000) * 1000)}
        doc.update(extra)
        activities.append(doc)
        return doc

    for day in range(params.days):
        day_start = start + dt.timedelta(days=day)
        for student in students:
            if rng.random() >= params.active_probability:
                continue
            travelling = rng.random() < 0.05  # legitimate travel: the whole day elsewhere
            region = rng.choice([r for r in REGIONS if r != student["home_region"]]) if travelling \
                else student["home_region"]
            for _ in range(rng.choice((1, 1, 1, 2))):
                hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
                t = day_start + dt.timedelta(hours=hour, seconds=rng.randrange(3600))
                course_id = rng.choice(student["enrolled_courses"])
                course = course_by_id[course_id]
                session_id = f"{student['_id']}-{int(t.timestamp())}"
                device = rng.choice(DEVICES)
                common = {"session_id": session_id, "device": device}
                login = emit(student, course_id, "login", t, region=region, country=region.split("-")[0].upper(),
                             ip=_ip(rng, region), **common)
                if rng.random() < params.multi_region_rate:
                    other = rng.choice([r for r in REGIONS if r != region])
                    t2 = t + dt.timedelta(minutes=rng.uniform(2, 25))
                    second = emit(student, course_id, "login", t2, region=other,
                                  country=other.split("-")[0].upper(), ip=_ip(rng, other),
                                  session_id=f"{session_id}-x", device=rng.choice(DEVICES))
                    multi_region.append({"student_id": student["_id"], "regions": sorted({region, other}),
                                         "event_ids": [login["event_id"], second["event_id"]]})
                t += dt.timedelta(seconds=rng.randrange(2, 20))
                emit(student, course_id, "page_view", t, item_id=course_id, page="course_home", **common)
                for video in rng.sample(course["content"]["videos"], k=min(len(course["content"]["videos"]),
                                                                            rng.randrange(1, 3))):
                    vid, dur = video["video_id"], float(video["duration_s"])
                    pos = resume.get((student["_id"], vid), 0.0)
                    if pos >= dur:
                        pos = 0.0  # rewatch from the start
                    t += dt.timedelta(seconds=rng.randrange(1, 10))
                    for _segment in range(rng.randrange(1, 4)):
                        emit(student, course_id, "video_play", t, item_id=vid, position_s=round(pos, 1),
                             duration_s=dur, **common)
                        watched = min(dur - pos, rng.uniform(30, 600))
                        t += dt.timedelta(seconds=watched)
                        pos = round(pos + watched, 1)
                        if pos >= dur:
                            emit(student, course_id, "video_complete", t, item_id=vid, position_s=dur,
                                 duration_s=dur, **common)
                            break
                        emit(student, course_id, "video_pause", t, item_id=vid, position_s=pos,
                             duration_s=dur, **common)
                        t += dt.timedelta(seconds=rng.randrange(5, 300))
                        if rng.random() < 0.3:  # seek somewhere else in the video
                            new_pos = round(rng.uniform(0, dur * 0.95), 1)
                            emit(student, course_id, "video_seek", t, item_id=vid, position_s=new_pos,
                                 duration_s=dur, from_position_s=pos, **common)
                            pos = new_pos
                    resume[(student["_id"], vid)] = pos
                if rng.random() < 0.3:
                    quiz = rng.choice(course["content"]["quizzes"])
                    t += dt.timedelta(seconds=rng.randrange(60, 900))
                    score = float(min(quiz["max_score"], max(0, round(rng.gauss(6.5, 2.0)))))
                    emit(student, course_id, "quiz_attempt", t, item_id=quiz["quiz_id"], score=score,
                         max_score=float(quiz["max_score"]), passed=score >= quiz["passing_score"], **common)
                if rng.random() < 0.1:
                    t += dt.timedelta(seconds=rng.randrange(60, 900))
                    emit(student, course_id, "assignment_submit", t, item_id=f"{course_id}-a01", **common)

    activities.sort(key=lambda d: (d["ingested_at"], d["_id"]))
    truth = {"multi_region": multi_region, "late_event_ids": late,
             "window": [start.isoformat(), params.end.isoformat()]}
    return GeneratedData(students=students, courses=courses, activities=activities, truth=truth)


def load_into_mongo(db, data: GeneratedData) -> dict[str, int]:
    """Write generated data through the operational API (bulk, idempotent)."""
    from pymongo import ReplaceOne

    from learntrack.mongo_ops import ensure_indexes, insert_activities

    ensure_indexes(db)
    for name, docs in (("students", data.students), ("courses", data.courses)):
        if docs:
            db[name].bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
    report = insert_activities(db, data.activities, validate=True,
                               now=max(d["ingested_at"] for d in data.activities) if data.activities else None)
    return {"students": len(data.students), "courses": len(data.courses),
            "activities_inserted": report.inserted, "activities_duplicate": report.duplicates,
            "activities_rejected": len(report.rejected)}
