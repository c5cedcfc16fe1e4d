"""Deterministic generator of students, courses and activity sessions, from tiny to seed scale.

Every student, course and student-day draws from its own seeded random stream, so the output is
the same for the same parameters whatever the scale, and the whole thing streams: a day's
activities are produced, written and forgotten (only each student's last video position is kept,
so that the next session resumes where the last one paused).

Realistic shape: Zipf-like course popularity, a diurnal rhythm, sessions that start with a login
(region, country, IP, device), then page views, video play/pause/seek/complete whose positions
stay inside the video, quiz attempts with scores, assignment submissions; students with a home
region who sometimes travel (a whole day elsewhere: hours apart, legitimate).

Injected at chosen rates, with their ground truth recorded beside the data:
- multi-region access: a second login from another region 2–25 minutes after a session's login;
- late events: written 1–3 days after they happened (an offline client syncing);
- exact duplicates: the same event written again by a retrying client under a new ``_id``;
- malformed documents, written straight to the collection as a buggy client would: missing ids,
  wrong types, unknown event types, impossible positions, future timestamps, oversized fields,
  ids with invisible unicode.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from learntrack.batches import chunks
from learntrack.activity_model import DEVICES, REGIONS, Rule

UTC = dt.timezone.utc
CATEGORIES = ("data-science", "programming", "business", "languages", "math", "design")
# Hour-of-day weights (UTC used as local time for simplicity): quiet nights, evening peak.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 10, 10, 9, 7, 4, 2]
HOUR_CUM = list(itertools.accumulate(HOUR_WEIGHTS))

#: What silver must say about each kind of malformed document (see jobs/silver.py).
MALFORMED_KINDS = {
    "missing_event_id": Rule.EVENT_ID,
    "student_id_not_string": Rule.STUDENT_ID,
    "invisible_unicode_id": Rule.STUDENT_ID,
    "unknown_event_type": Rule.EVENT_TYPE,
    "event_time_not_date": Rule.EVENT_TIME,
    "future_event_time": Rule.FUTURE,
    "negative_position": Rule.VIDEO_POSITION,
    "position_beyond_duration": Rule.VIDEO_POSITION,
    "position_as_string": Rule.VIDEO_NOT_NUMERIC,
    "quiz_score_above_max": Rule.QUIZ_SCORE,
    "oversized_field": Rule.TOO_LARGE,
}


@dataclass
class GenParams:
    students: int = 200
    courses: int = 20
    days: int = 3
    end: dt.datetime = dt.datetime(2026, 1, 10, tzinfo=UTC)  # exclusive end of the session window
    seed: int = 7
    active_probability: float = 0.6  # chance a student is active on a given day
    travel_rate: float = 0.05  # chance an active student-day is spent in another region
    multi_region_rate: float = 0.03  # per session: a second login from another region minutes later
    late_rate: float = 0.02  # per event: written 1-3 days after it happened
    duplicate_rate: float = 0.0  # per event: written again by a retrying client
    malformed_rate: float = 0.0  # per event: replaced by a malformed document
    # The first N students log in from one shared "campus" IP each day (account-sharing checks).
    shared_ip_students: int = 0

    @property
    def start(self) -> dt.datetime:
        return self.end - dt.timedelta(days=self.days)


@dataclass
class GeneratedData:
    students: list[dict]
    courses: list[dict]
    activities: list[dict]  # everything written to the collection, in write order
    truth: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ entities
def _buckets(t: dt.datetime, day_field: str = "updated_day", slot_field: str = "updated_slot") -> dict[str, str]:
    from learntrack.mongo_ops import write_buckets

    return write_buckets(t, day_field, slot_field)


def _ms(t: dt.datetime) -> dt.datetime:
    """MongoDB stores milliseconds: generate exactly what will be read back."""
    return t.replace(microsecond=(t.microsecond // 1000) * 1000)


def course_doc(params: GenParams, c: int) -> dict:
    rng = random.Random(params.seed * 1_000_003 + 17 * c + 1)
    created = params.start - dt.timedelta(days=30)
    cid = f"c{c:05d}"
    videos = [
        {"video_id": f"{cid}-v{v:02d}", "title": f"Lecture {v + 1}", "duration_s": rng.randrange(180, 1800),
         "blob_url": f"https://blob.example/videos/{cid}/v{v:02d}.mp4",
         "quality_variants": {q: f"https://cdn.example/{cid}/v{v:02d}_{q}.m3u8" for q in ("360p", "720p", "1080p")}}
        for v in range(rng.randrange(3, 9))
    ]
    # Quiz ids are per course ("q01" in many courses), as on real platforms: joins must use both keys.
    quizzes = [{"quiz_id": f"q{q:02d}", "max_score": 10, "passing_score": rng.choice((5, 6, 7, 8)),
                "questions": rng.randrange(5, 15)} for q in range(rng.randrange(1, 4))]
    pdfs = [{"pdf_id": f"{cid}-p00", "blob_url": f"https://blob.example/pdfs/{cid}/notes.pdf",
             "size_mb": round(rng.uniform(0.2, 12), 1)}]
    return {"_id": cid, "title": f"Course {c}", "category": rng.choice(CATEGORIES),
            "difficulty_level": rng.choice(("beginner", "intermediate", "advanced")),
            "content": {"videos": videos, "quizzes": quizzes, "pdfs": pdfs},
            "total_duration_s": sum(v["duration_s"] for v in videos), "created_at": created, "updated_at": created,
            **_buckets(created)}


class _Popularity:
    """Zipf-like course choice: course k has weight 1/(k+1)."""

    def __init__(self, n: int):
        self.cum = list(itertools.accumulate(1.0 / (k + 1) for k in range(n)))

    def pick(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cum, rng.random() * self.cum[-1])


def student_doc(params: GenParams, s: int, popularity: _Popularity) -> dict:
    rng = random.Random(params.seed * 2_000_003 + 31 * s + 2)
    created = params.start - dt.timedelta(days=30)
    home = rng.choice(REGIONS)
    k = min(params.courses, rng.randrange(1, 5))
    enrolled: list[str] = []
    while len(enrolled) < k:
        cid = f"c{popularity.pick(rng):05d}"
        if cid not in enrolled:
            enrolled.append(cid)
    return {"_id": f"s{s:07d}", "name": f"Student {s}", "email": f"student{s}@example.org",
            "phone": f"+1-555-{s % 10_000_000:07d}", "home_region": home, "country": home.split("-")[0].upper(),
            "subscription": rng.choice(("free", "free", "plus", "pro")), "enrolled_courses": enrolled,
            "progress": {}, "created_at": created, "updated_at": created, **_buckets(created)}


def shared_ip(day: int) -> str:
    """The campus IP of a simulated day (TEST-NET-3, never a real address)."""
    return f"203.0.113.{day % 254 + 1}"


def _ip(rng: random.Random, region: str) -> str:
    base = REGIONS.index(region) * 20 + 11
    return f"{base}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _object_id(rng: random.Random, at: dt.datetime):
    from bson import ObjectId

    return ObjectId(int(at.timestamp()).to_bytes(4, "big") + rng.getrandbits(64).to_bytes(8, "big"))


# ------------------------------------------------------------------------------ sessions
class _Day:
    """All events of one student-day, drawn from the student-day's own random stream."""

    def __init__(self, gen: "Generator", s: int, day: int):
        self.gen, self.p = gen, gen.params
        self.rng = random.Random((self.p.seed * 7_919 + day) * 10_000_019 + s)
        self.student = gen.student(s)
        self.s = s
        self.day = day
        self.k = 0
        self.events: list[dict] = []

    def emit(self, course_id: str, etype: str, at: dt.datetime, **extra: Any) -> dict:
        self.k += 1
        event_id = f"e{self.p.seed}-{self.day:04d}-{self.student['_id']}-{self.k:04d}"
        rng = self.rng
        delay = dt.timedelta(seconds=rng.uniform(0.2, 5.0))
        late = rng.random() < self.p.late_rate
        if late:
            delay = dt.timedelta(days=rng.uniform(1, 3))
            self.gen.truth["late_event_ids"].append(event_id)
        doc = {"_id": event_id, "event_id": event_id, "student_id": self.student["_id"], "course_id": course_id,
               "event_type": etype, "event_time": _ms(at), "ingested_at": _ms(at + delay),
               **_buckets(at + delay, "ingest_day", "ingest_slot")}
        doc.update(extra)
        self.events.append(doc)
        return doc

    def generate(self) -> list[dict]:
        rng, st = self.rng, self.student
        if rng.random() >= self.p.active_probability:
            return []
        day_start = self.p.start + dt.timedelta(days=self.day)
        travelling = rng.random() < self.p.travel_rate
        region = rng.choice([r for r in REGIONS if r != st["home_region"]]) if travelling else st["home_region"]
        if travelling:
            self.gen.truth["travel"].append({"student_id": st["_id"], "date": day_start.date().isoformat(),
                                             "region": region})
        for n in range(rng.choice((1, 1, 1, 2))):
            hour = bisect.bisect_left(HOUR_CUM, rng.random() * HOUR_CUM[-1])
            t = self.gen.session_start(st["_id"], day_start + dt.timedelta(hours=hour, seconds=rng.randrange(3600)),
                                       rng)
            course_id = rng.choice(st["enrolled_courses"])
            course = self.gen.course(int(course_id[1:]))
            session_id = f"{st['_id']}-{self.day:04d}-{n}"
            common = {"session_id": session_id, "device": rng.choice(DEVICES)}
            ip = _ip(rng, region)
            if self.s < self.p.shared_ip_students and n == 0:
                ip = shared_ip(self.day)
                self.gen.truth["shared_ip"].append({"student_id": st["_id"], "ip": ip,
                                                    "date": day_start.date().isoformat()})
            login = self.emit(course_id, "login", t, region=region, country=region.split("-")[0].upper(), ip=ip,
                              **common)
            if rng.random() < self.p.multi_region_rate:
                other = rng.choice([r for r in REGIONS if r != region])
                second = self.emit(course_id, "login", t + dt.timedelta(minutes=rng.uniform(2, 25)), region=other,
                                   country=other.split("-")[0].upper(), ip=_ip(rng, other),
                                   session_id=f"{session_id}-x", device=rng.choice(DEVICES))
                self.gen.truth["multi_region"].append({"student_id": st["_id"], "regions": sorted({region, other}),
                                                       "event_ids": [login["event_id"], second["event_id"]]})
            t += dt.timedelta(seconds=rng.randrange(2, 20))
            self.emit(course_id, "page_view", t, item_id=course_id, page="course_home", **common)
            t = self._watch(course, t, common)
            if rng.random() < 0.3:
                quiz = rng.choice(course["content"]["quizzes"])
                t += dt.timedelta(seconds=rng.randrange(60, 900))
                score = float(min(quiz["max_score"], max(0, round(rng.gauss(6.5, 2.0)))))
                self.emit(course_id, "quiz_attempt", t, item_id=quiz["quiz_id"], score=score,
                          max_score=float(quiz["max_score"]), passed=score >= quiz["passing_score"], **common)
            if rng.random() < 0.1:
                t += dt.timedelta(seconds=rng.randrange(60, 900))
                self.emit(course_id, "assignment_submit", t, item_id=f"{course_id}-a01", **common)
            self.gen.session_end(st["_id"], t)
        return self._corrupt(self.events)

    def _watch(self, course: dict, t: dt.datetime, common: dict) -> dt.datetime:
        """Play/pause/seek/complete with positions that stay inside the video and resume."""
        rng, videos = self.rng, course["content"]["videos"]
        for video in rng.sample(videos, k=min(len(videos), rng.randrange(1, 3))):
            vid, dur = video["video_id"], float(video["duration_s"])
            pos = self.gen.resume_position(self.student["_id"], vid)
            if pos >= dur:
                pos = 0.0  # rewatch from the start
            t += dt.timedelta(seconds=rng.randrange(1, 10))
            for _segment in range(rng.randrange(1, 4)):
                self.emit(course["_id"], "video_play", t, item_id=vid, position_s=round(pos, 1), duration_s=dur,
                          **common)
                watched = min(dur - pos, rng.uniform(30, 600))
                t += dt.timedelta(seconds=watched)
                pos = round(pos + watched, 1)
                if pos >= dur:
                    self.emit(course["_id"], "video_complete", t, item_id=vid, position_s=dur, duration_s=dur,
                              **common)
                    break
                self.emit(course["_id"], "video_pause", t, item_id=vid, position_s=pos, duration_s=dur, **common)
                t += dt.timedelta(seconds=rng.randrange(5, 300))
                if rng.random() < 0.3:  # seek somewhere else, then the next play starts there
                    new_pos = round(rng.uniform(0, dur * 0.95), 1)
                    self.emit(course["_id"], "video_seek", t, item_id=vid, position_s=new_pos, duration_s=dur,
                              from_position_s=pos, **common)
                    pos = new_pos
                    t += dt.timedelta(seconds=rng.uniform(0.5, 5))
            self.gen.remember_position(self.student["_id"], vid, pos)
        return t

    def _corrupt(self, events: list[dict]) -> list[dict]:
        """Replace some events by malformed documents and add retried duplicates."""
        p, rng, truth = self.p, self.rng, self.gen.truth
        out = []
        kinds = sorted(MALFORMED_KINDS)
        for doc in events:
            if p.malformed_rate and rng.random() < p.malformed_rate:
                kind = kinds[rng.randrange(len(kinds))]
                bad = _malform(dict(doc), kind, rng)
                bad["_id"] = _object_id(rng, doc["ingested_at"])
                truth["malformed"].append({"_id": str(bad["_id"]), "kind": kind, "rule": MALFORMED_KINDS[kind],
                                           "event_id": doc["event_id"]})
                out.append(bad)
                continue
            out.append(doc)
            if p.duplicate_rate and rng.random() < p.duplicate_rate:
                written = _ms(doc["ingested_at"] + dt.timedelta(seconds=rng.uniform(1, 120)))
                dup = dict(doc, _id=_object_id(rng, doc["ingested_at"]), ingested_at=written,
                           **_buckets(written, "ingest_day", "ingest_slot"))
                truth["duplicates"].append({"_id": str(dup["_id"]), "event_id": doc["event_id"]})
                out.append(dup)
        return out


def _malform(doc: dict, kind: str, rng: random.Random) -> dict:
    if kind == "missing_event_id":
        doc.pop("event_id")
    elif kind == "student_id_not_string":
        doc["student_id"] = int(doc["student_id"][1:])
    elif kind == "invisible_unicode_id":
        doc["student_id"] = doc["student_id"][:3] + "\u200b" + doc["student_id"][3:]
    elif kind == "unknown_event_type":
        doc["event_type"] = "video_rewind"
    elif kind == "event_time_not_date":
        doc["event_time"] = doc["event_time"].strftime("%d/%m/%Y %H:%M")
    elif kind == "future_event_time":
        doc["event_time"] = doc["ingested_at"] + dt.timedelta(days=rng.randrange(2, 400))
    elif kind in ("negative_position", "position_beyond_duration", "position_as_string"):
        dur = float(doc.get("duration_s") or 600.0)
        doc.update(event_type="video_pause", duration_s=dur, item_id=doc.get("item_id") or "unknown-video",
                   position_s={"negative_position": -rng.uniform(1, 60),
                               "position_beyond_duration": dur + rng.uniform(1, 600),
                               "position_as_string": str(round(dur / 2, 1))}[kind])
    elif kind == "quiz_score_above_max":
        doc.update(event_type="quiz_attempt", item_id=doc.get("item_id") or "unknown-quiz", score=12.0,
                   max_score=10.0)
    elif kind == "oversized_field":
        doc["user_agent"] = "Mozilla/5.0 " + "x" * 20_000
    return doc


class Generator:
    def __init__(self, params: GenParams):
        self.params = params
        self.popularity = _Popularity(params.courses)
        self._courses: dict[int, dict] = {}
        # student -> {video: last position}, the few most recent videos only (bounded memory at scale)
        self._positions: dict[str, dict[str, float]] = {}
        self._busy_until: dict[str, dt.datetime] = {}  # a student's sessions never overlap
        self.truth: dict[str, Any] = {"multi_region": [], "late_event_ids": [], "travel": [], "duplicates": [],
                                      "malformed": [], "shared_ip": [],
                                      "window": [params.start.isoformat(), params.end.isoformat()]}

    def course(self, c: int) -> dict:
        if c not in self._courses:
            self._courses[c] = course_doc(self.params, c)
        return self._courses[c]

    def student(self, s: int) -> dict:
        return student_doc(self.params, s, self.popularity)

    def resume_position(self, student_id: str, video_id: str) -> float:
        return self._positions.get(student_id, {}).get(video_id, 0.0)

    def remember_position(self, student_id: str, video_id: str, pos: float) -> None:
        videos = self._positions.setdefault(student_id, {})
        videos.pop(video_id, None)
        videos[video_id] = pos
        if len(videos) > 8:
            videos.pop(next(iter(videos)))

    def session_start(self, student_id: str, wanted: dt.datetime, rng: random.Random) -> dt.datetime:
        busy = self._busy_until.get(student_id)
        return wanted if busy is None or wanted > busy else busy + dt.timedelta(minutes=rng.uniform(10, 120))

    def session_end(self, student_id: str, at: dt.datetime) -> None:
        self._busy_until[student_id] = at

    def courses(self) -> Iterator[dict]:
        return (self.course(c) for c in range(self.params.courses))

    def students(self) -> Iterator[dict]:
        return (self.student(s) for s in range(self.params.students))

    def activity_batches(self) -> Iterator[list[dict]]:
        """Activities in write (ingested_at) order, one batch per simulated day; late writes wait in
        a heap until their day comes."""
        pending: list[tuple[dt.datetime, str, int, dict]] = []
        tiebreak = itertools.count()
        for day in range(self.params.days):
            for s in range(self.params.students):
                for doc in _Day(self, s, day).generate():
                    heapq.heappush(pending, (doc["ingested_at"], str(doc["_id"]), next(tiebreak), doc))
            horizon = self.params.start + dt.timedelta(days=day + 1)
            batch = []
            while pending and pending[0][0] < horizon:
                batch.append(heapq.heappop(pending)[3])
            yield batch
        rest = [heapq.heappop(pending)[3] for _ in range(len(pending))]
        if rest:
            yield rest


def generate(params: GenParams) -> GeneratedData:
    """Everything in memory (tests and small demos)."""
    gen = Generator(params)
    courses = list(gen.courses())
    students = list(gen.students())
    activities = [d for batch in gen.activity_batches() for d in batch]
    return GeneratedData(students=students, courses=courses, activities=activities, truth=gen.truth)


def is_clean(doc: dict) -> bool:
    """A document the generator wrote through the validated API (not a malformed one)."""
    return isinstance(doc.get("_id"), str)


def load_into_mongo(db, data: GeneratedData) -> dict[str, int]:
    """Write in-memory generated data (see ``write_to_mongo`` for the streaming path)."""
    return _write(db, iter(data.students), iter(data.courses), iter([data.activities]), progress=None)


def write_to_mongo(db, params: GenParams, progress: Callable[[str], None] | None = None) -> tuple[dict, dict]:
    """Stream generated data into MongoDB in bulk; return (counts, ground truth)."""
    gen = Generator(params)
    counts = _write(db, gen.students(), gen.courses(), gen.activity_batches(), progress)
    return counts, gen.truth


def _write(db, students, courses, activity_batches, progress) -> dict[str, int]:
    from pymongo import ReplaceOne

    from learntrack.mongo_ops import ensure_indexes, insert_activities, insert_raw

    ensure_indexes(db)
    counts = {"students": 0, "courses": 0, "activities_inserted": 0, "activities_duplicate": 0,
              "activities_rejected": 0, "raw_written": 0}
    for name, docs in (("courses", courses), ("students", students)):
        for chunk in chunks(docs, 5000):
            # One bulk of replace-upserts, new and existing documents alike (re-running a generation
            # replaces everything; the FerretDB build's patch 6 fixed the wedge this used to cause).
            db[name].bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in chunk], ordered=False)
            counts[name] += len(chunk)
        if progress:
            progress(f"{name}: {counts[name]:,} written")
    t0 = time.monotonic()
    for batch in activity_batches:
        for chunk in chunks(iter(batch), 20_000):
            clean = [d for d in chunk if is_clean(d)]
            raw = [d for d in chunk if not is_clean(d)]
            if clean:
                now = max(d["ingested_at"] for d in clean)
                report = insert_activities(db, clean, now=now)
                counts["activities_inserted"] += report.inserted
                counts["activities_duplicate"] += report.duplicates
                counts["activities_rejected"] += len(report.rejected)
            if raw:  # the buggy client: no validation, straight into the collection
                counts["raw_written"] += insert_raw(db, raw)
            if progress:
                done = counts["activities_inserted"] + counts["raw_written"]
                progress(f"activities: {done:,} written ({done / max(time.monotonic() - t0, 1e-9):,.0f}/s)")
    return counts


