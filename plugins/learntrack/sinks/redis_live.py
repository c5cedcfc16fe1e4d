"""Redis live path: resume positions, progress and live engagement scores, written through by
``mongo_ops.insert_activities`` as activities are stored, and reconciled with gold every night.

Keys (prefix from settings; ``{student}`` is a cluster hash tag: every key of a student lives in
one slot, so a script touching several of them is cluster-safe). docs/serving-redis-live.md.

  <p>:progress:{<student>}:<course>   HASH, TTL redis_progress_ttl_days, renewed by every write
      pos:<video>, at:<video>          resume position (seconds) and its event time (epoch ms)
      done:<video>                     "1" per completed video
      videos_completed                 count of done:<video>
      videos_total, completion_pct     only once the nightly reconcile has told us videos_total
      status                           not_started / in_progress / completed (gold's rules)
      last_video, last_video_pos, last_video_at, last_accessed (epoch ms)
  <p>:live:score:{<student>}          HASH, TTL redis_snapshot_ttl_days, renewed by every write
      base, base_day                   gold's score at the last rebase's as-of day d0
      pts:<YYYY-MM-DD>                 points of the events known (ingested) on that day, each
                                       w * exp(-decay * (day - min(event day, day)))
      score, score_day, decay          S(score_day); S(d) = score * exp(-decay * (d - score_day))
  <p>:live:seen:{<student>}:<YYYY-MM-DD>  SET of event ids counted in pts:<day> (idempotence)

Rules are gold's: per video the position of the latest event by event time (ms, as MongoDB stores
it), ties the larger position; a late older event never moves it back (compare-and-set in Lua).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import time
from typing import Any, Iterable, Mapping

from learntrack.activity_model import VIDEO_EVENT_TYPES, validate_activity
from learntrack.batches import chunks
from learntrack.intervals import to_utc
from learntrack.settings import Settings

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MS = dt.timedelta(milliseconds=1)
_DAY_S = 86_400

# --- Lua ---------------------------------------------------------------------------------------
# Day numbers (days since 1970-01-01) from YYYY-MM-DD without os.* (not available in Redis Lua),
# and a byte-wise string order (Lua's < follows the server's LC_COLLATE).
_LUA_HELPERS = """
local function dn(s)
  local y, m, d = tonumber(string.sub(s, 1, 4)), tonumber(string.sub(s, 6, 7)), tonumber(string.sub(s, 9, 10))
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end
local function bytes_gt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local function fmt(x)  -- the same text as Python's _num for the same double
  for _, p in ipairs({'%.15g', '%.16g'}) do
    local t = string.format(p, x)
    if tonumber(t) == x then return t end
  end
  return string.format('%.17g', x)
end
"""

# progress(): compare-and-set of one event on a progress hash (one HMGET, one HSET).
# kind: '' (not a video event), 'v' (video), 'c' (video_complete). t: event time, epoch ms.
_LUA_PROGRESS = """
local function progress(k, ttl, ts, kind, vid, ps)
  local t, pos = tonumber(ts), tonumber(ps)
  local v = redis.call('HMGET', k, 'last_accessed', 'at:' .. vid, 'pos:' .. vid, 'last_video_at',
                       'last_video_pos', 'last_video', 'videos_completed', 'videos_total')
  local set = {}
  local function put(f, x) set[#set + 1] = f; set[#set + 1] = x end
  local la = tonumber(v[1])
  if la == nil or t > la then put('last_accessed', ts) end
  local done = tonumber(v[7]) or 0
  local has_video = v[6] ~= false
  if kind ~= '' then
    local at = tonumber(v[2])
    if at == nil or t > at or (t == at and pos > tonumber(v[3])) then put('pos:' .. vid, ps); put('at:' .. vid, ts) end
    local lt = tonumber(v[4])
    local better = lt == nil or t > lt
    if not better and t == lt then
      local lp = tonumber(v[5])
      better = pos > lp or (pos == lp and bytes_gt(vid, v[6]))
    end
    if better then put('last_video', vid); put('last_video_pos', ps); put('last_video_at', ts) end
    has_video = true
    if kind == 'c' and redis.call('HSETNX', k, 'done:' .. vid, '1') == 1 then done = done + 1 end
  end
  local total = tonumber(v[8])
  local status = 'not_started'
  if total ~= nil and total > 0 and done >= total then status = 'completed'
  elseif has_video then status = 'in_progress' end
  put('status', status); put('videos_completed', done)
  if total ~= nil then
    local pct = 0
    if total > 0 then pct = math.min(100, done / total * 100) end
    put('completion_pct', fmt(pct))
  end
  redis.call('HSET', k, unpack(set))
  redis.call('EXPIRE', k, ttl)
  return 1
end
"""

# score(): one event's points on the student's score hash, once per event id. seen: the seen set
# of the known day; prev: the day before's (a copy stamped just before midnight counts once).
_LUA_SCORE = """
local function score(k, seen, prev, ttl, eid, day, ps, lams)
  local d, p, lam = dn(day), tonumber(ps), tonumber(lams)
  local v = redis.call('HMGET', k, 'base_day', 'score_day', 'score')
  if v[1] and d <= dn(v[1]) then return 0 end   -- gold's base already holds it
  if redis.call('SISMEMBER', prev, eid) == 1 then return 0 end
  if redis.call('SADD', seen, eid) == 0 then return 0 end
  redis.call('EXPIRE', seen, ttl)
  redis.call('HINCRBYFLOAT', k, 'pts:' .. day, ps)
  local s, sday = tonumber(v[3]) or 0, v[2]
  if not sday then
    s, sday = p, day
  else
    local sd = dn(sday)
    if d > sd then s, sday = s * math.exp(-lam * (d - sd)) + p, day
    else s = s + p * math.exp(-lam * (sd - d)) end
  end
  redis.call('HSET', k, 'score', fmt(s), 'score_day', sday, 'decay', lams)
  redis.call('EXPIRE', k, ttl)
  return 1
end
"""

#: One stored activity. KEYS: progress hash, score hash, seen set of the known day, seen set of
#: the day before (all in the student's slot). ARGV: progress ttl_s, event time (epoch ms), kind,
#: video id, position, score ttl_s, event id, known day (YYYY-MM-DD), points as of the known day,
#: decay per day. Returns 1 when the score counted the event, 0 when it already had it.
LIVE_APPLY = _LUA_HELPERS + _LUA_PROGRESS + _LUA_SCORE + """
progress(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return score(KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9], ARGV[10])
"""

#: Progress only (the reconcile's tail): KEYS[1] progress hash; ARGV as LIVE_APPLY's first five.
PROGRESS_APPLY = _LUA_HELPERS + _LUA_PROGRESS + """
return progress(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""

#: KEYS[1] progress hash. ARGV: ttl_s, then field, value pairs: the hash becomes exactly these.
PROGRESS_REPLACE = """
local k = KEYS[1]
redis.call('DEL', k)
local n = #ARGV
local i = 2
while i < n do
  local last = math.min(n, i + 999)
  redis.call('HSET', k, unpack(ARGV, i, last))
  i = last + 1
end
redis.call('EXPIRE', k, tonumber(ARGV[1]))
return 1
"""

#: KEYS[1] score hash, KEYS[2..] seen sets of days <= as_of. ARGV: ttl_s, as-of day, base score,
#: decay, mode ('gold': a gold row; 'orphan': live state without a gold row, base 0).
#: Returns 1 rebased, 0 already rebased for this day (orphan), -1 a newer rebase is in place.
SCORE_REBASE = _LUA_HELPERS + """
local k = KEYS[1]
local ttl, asof, lam = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[4])
local a = dn(asof)
local cur = redis.call('HGET', k, 'base_day')
if cur then
  local c = dn(cur)
  if c > a then return -1 end
  if ARGV[5] == 'orphan' and c == a then return 0 end
end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
local kept = {}
local sd, sday = a, asof
for _, f in ipairs(redis.call('HKEYS', k)) do
  if string.sub(f, 1, 4) == 'pts:' then
    local day = string.sub(f, 5)
    local d = dn(day)
    if d <= a then redis.call('HDEL', k, f)
    else
      kept[#kept + 1] = {d, tonumber(redis.call('HGET', k, f))}
      if d > sd then sd, sday = d, day end
    end
  end
end
local s = tonumber(ARGV[3]) * math.exp(-lam * (sd - a))
for _, e in ipairs(kept) do s = s + e[2] * math.exp(-lam * (sd - e[1])) end
redis.call('HSET', k, 'base', ARGV[3], 'base_day', asof, 'score', fmt(s), 'score_day', sday, 'decay', ARGV[4])
redis.call('EXPIRE', k, ttl)
return 1
"""

SCRIPTS = {"live_apply": LIVE_APPLY, "progress_apply": PROGRESS_APPLY, "progress_replace": PROGRESS_REPLACE,
           "score_rebase": SCORE_REBASE}


# --- keys ----------------------------------------------------------------------------------------
def progress_key(prefix: str, student_id: str, course_id: str) -> str:
    return f"{prefix}:progress:{{{student_id}}}:{course_id}"


def score_key(prefix: str, student_id: str) -> str:
    return f"{prefix}:live:score:{{{student_id}}}"


def seen_key(prefix: str, student_id: str, day: str) -> str:
    return f"{prefix}:live:seen:{{{student_id}}}:{day}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# --- time ----------------------------------------------------------------------------------------
def _doc_utc(value: dt.datetime) -> dt.datetime:
    """A MongoDB document's datetime: naive means UTC (pymongo's rule), unlike Spark's values."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ms(value: dt.datetime) -> int:
    """Epoch milliseconds, truncated as BSON stores a datetime (what gold's rules compare)."""
    return (value - _EPOCH) // _MS


def _from_ms(value: str | int) -> dt.datetime:
    return _EPOCH + int(value) * _MS


def _day(value: dt.datetime) -> dt.date:
    return _from_ms(_ms(value)).date()


def _num(value: Any) -> str:
    """The fewest of 15, 16 or 17 significant digits that read back as the same double: the Lua
    scripts' ``fmt`` does the same, so a value written by either side is the same text."""
    x = float(value)
    for fmt in ("%.15g", "%.16g"):
        if float(fmt % x) == x:
            return fmt % x
    return "%.17g" % x


# --- connection ----------------------------------------------------------------------------------
def connect(settings: Settings, timeout_s: float = 1.0):
    """A Redis client for the live path: short timeouts and one quick retry, so an outage costs a
    write at most a couple of timeouts (a retried pipeline is safe: every script is idempotent)."""
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    from learntrack.sinks import redis_sink

    return redis_sink.connect(settings, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                              retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1))


class _Scripts:
    """EVALSHA in pipelines, loading the scripts once (and again after a server restart)."""

    def __init__(self, client):
        import hashlib

        self.client = client
        self.sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}

    def run(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run (script, keys, args) calls in one pipeline; return their results."""
        from redis.exceptions import NoScriptError

        if not calls:
            return []
        for attempt in (0, 1):
            pipe = self.client.pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.evalsha(self.sha[name], len(keys), *keys, *args)
            results = pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                for src in SCRIPTS.values():
                    self.client.script_load(src)
                continue  # every script is idempotent: running the whole pipeline again is safe
            for r in results:
                if isinstance(r, Exception):
                    raise r
            return results
        raise AssertionError("unreachable")


class LiveUnavailable(RuntimeError):
    """Redis failed recently: the live writer is cooling down instead of waiting on it again."""


class LiveWriter:
    """Applies stored activity documents to Redis: progress (compare-and-set) and live score
    (once per event id). ``insert_activities(db, docs, live=LiveWriter(settings))`` calls
    ``apply`` with exactly the documents MongoDB accepted.

    After a failure the writer refuses for ``cooldown_s`` (raising ``LiveUnavailable``), so a
    hung Redis costs one write its timeout, not every write; the nightly reconcile repairs the gap.
    """

    def __init__(self, settings: Settings, client=None, *, timeout_s: float = 1.0, cooldown_s: float = 5.0):
        self.settings = settings
        self.client = client if client is not None else connect(settings, timeout_s)
        self.scripts = _Scripts(self.client)
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self._weights = settings.engagement_weight_map
        self._decay = float(settings.engagement_decay_per_day)
        self._progress_ttl = settings.redis_progress_ttl_days * _DAY_S
        self._score_ttl = settings.redis_snapshot_ttl_days * _DAY_S

    # -- per document -------------------------------------------------------------------------
    def _usable(self, doc: Mapping[str, Any]) -> bool:
        """Count only what silver keeps: the same rule set, judged at the write time."""
        written = doc.get("ingested_at")
        if not isinstance(written, dt.datetime):
            return False
        return validate_activity(doc, now=_doc_utc(written), max_age_days=self.settings.raw_retention_days) is None

    def _progress_args(self, doc: Mapping[str, Any]) -> tuple[str, list[Any]]:
        etype = doc["event_type"]
        kind = ("c" if etype == "video_complete" else "v") if etype in VIDEO_EVENT_TYPES else ""
        video = (doc.get("item_id") or "") if kind else ""
        pos = _num(doc["position_s"]) if kind else "0"
        key = progress_key(self.settings.redis_prefix, doc["student_id"], doc["course_id"])
        return key, [self._progress_ttl, _ms(_doc_utc(doc["event_time"])), kind, video, pos]

    def points(self, doc: Mapping[str, Any]) -> tuple[dt.date, float]:
        """(known day, points as of the known day): w * exp(-decay * (known - min(event, known)))."""
        known = _day(_doc_utc(doc["ingested_at"]))
        from_day = min(_day(_doc_utc(doc["event_time"])), known)
        weight = self._weights.get(doc["event_type"], 0.0)
        return known, weight * math.exp(-self._decay * (known - from_day).days)

    def progress_call(self, doc: Mapping[str, Any]) -> tuple[str, list[str], list[Any]]:
        key, args = self._progress_args(doc)
        return "progress_apply", [key], args

    def live_call(self, doc: Mapping[str, Any]) -> tuple[str, list[str], list[Any]]:
        key, args = self._progress_args(doc)
        known, pts = self.points(doc)
        day, before = known.isoformat(), (known - dt.timedelta(days=1)).isoformat()
        sid, prefix = doc["student_id"], self.settings.redis_prefix
        return ("live_apply", [key, score_key(prefix, sid), seen_key(prefix, sid, day), seen_key(prefix, sid, before)],
                [*args, self._score_ttl, doc["event_id"], day, _num(pts), _num(self._decay)])

    # -- batches ------------------------------------------------------------------------------
    def apply(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Apply stored documents (with ``ingested_at``) in one pipeline; return how many were
        usable. Raises on any Redis error (the caller counts it; MongoDB already has the data)."""
        calls = [self.live_call(doc) for doc in docs if self._usable(doc)]
        if not calls:
            return 0
        if time.monotonic() < self._down_until:
            raise LiveUnavailable(f"Redis failed less than {self.cooldown_s}s ago; not retried yet")
        try:
            self.scripts.run(calls)
        except Exception:
            self._down_until = time.monotonic() + self.cooldown_s
            raise
        return len(calls)

    def apply_progress(self, docs: Iterable[Mapping[str, Any]], batch: int = 5000) -> int:
        """Progress only (the reconcile's tail): compare-and-set, never the score."""
        n, calls = 0, []
        for doc in docs:
            if self._usable(doc):
                calls.append(self.progress_call(doc))
                if len(calls) >= batch:
                    n += len(self.scripts.run(calls))
                    calls = []
        return n + len(self.scripts.run(calls))


def _writer(settings_or_client, prefix: str | None = None) -> LiveWriter:
    if isinstance(settings_or_client, LiveWriter):
        return settings_or_client
    if isinstance(settings_or_client, Settings):
        return LiveWriter(settings_or_client)
    settings = Settings() if prefix is None else Settings(redis_prefix=prefix)
    return LiveWriter(settings, client=settings_or_client)


# --- readers -------------------------------------------------------------------------------------
def live_score(settings_or_client, student_id: str, today: dt.date | None = None, *,
               prefix: str | None = None) -> float:
    """The student's live engagement score on ``today`` (UTC today by default), in one call:
    base * e^(-decay (d - d0)) + sum over known days k <= d of pts_k * e^(-decay (d - k)).
    A Settings, a LiveWriter, or a redis client (with ``prefix``) reads it."""
    w = _writer(settings_or_client, prefix)
    h = w.client.hgetall(score_key(w.settings.redis_prefix, student_id))
    if not h:
        return 0.0
    today = today or dt.datetime.now(UTC).date()
    lam = float(h.get("decay", w.settings.engagement_decay_per_day))
    total = 0.0
    if "base_day" in h:
        d0 = dt.date.fromisoformat(h["base_day"])
        total += float(h["base"]) * math.exp(-lam * max(0, (today - d0).days))
    for f, v in h.items():
        if f.startswith("pts:"):
            age = (today - dt.date.fromisoformat(f[4:])).days
            if age >= 0:
                total += float(v) * math.exp(-lam * age)
    return total


def read_progress(settings_or_client, student_id: str, course_id: str, *,
                  prefix: str | None = None) -> dict | None:
    """The progress hash as typed values (None when the key does not exist)."""
    w = _writer(settings_or_client, prefix)
    h = w.client.hgetall(progress_key(w.settings.redis_prefix, student_id, course_id))
    if not h:
        return None
    out: dict[str, Any] = {
        "resume_positions": {f[4:]: float(v) for f, v in h.items() if f.startswith("pos:")},
        "resume_at": {f[3:]: _from_ms(v) for f, v in h.items() if f.startswith("at:")},
        "completed_video_ids": sorted(f[5:] for f in h if f.startswith("done:")),
        "videos_completed": int(h.get("videos_completed", 0)),
        "videos_total": int(h["videos_total"]) if "videos_total" in h else None,
        "completion_pct": float(h["completion_pct"]) if "completion_pct" in h else None,
        "status": h.get("status"),
        "last_accessed": _from_ms(h["last_accessed"]) if "last_accessed" in h else None,
        "last_video": h.get("last_video"),
        "last_video_pos": float(h["last_video_pos"]) if "last_video_pos" in h else None,
        "last_video_at": _from_ms(h["last_video_at"]) if "last_video_at" in h else None,
    }
    return out


# --- nightly reconcile ---------------------------------------------------------------------------
def _rebase_chunk(w: LiveWriter, as_of: dt.date, items: list[tuple[str, str, str]]) -> list[int]:
    """items: (student_id, base, mode). Two round trips: the hashes' fields (to name the seen sets
    of days <= as_of as keys, which a cluster requires), then the rebase scripts."""
    prefix, asof = w.settings.redis_prefix, as_of.isoformat()
    pipe = w.client.pipeline(transaction=False)
    for sid, _, _ in items:
        pipe.hkeys(score_key(prefix, sid))
    fields = pipe.execute()
    calls = []
    for (sid, base, mode), names in zip(items, fields):
        old = sorted(f[4:] for f in names if f.startswith("pts:") and f[4:] <= asof)
        calls.append(("score_rebase", [score_key(prefix, sid), *(seen_key(prefix, sid, d) for d in old)],
                      [w._score_ttl, asof, base, _num(w._decay), mode]))
    return w.scripts.run(calls)


def rebase_scores(settings: Settings, as_of: dt.date, rows: Iterable[Mapping], *, batch: int = 1000,
                  client=None, timeout_s: float = 30.0) -> dict:
    """Rebase live scores on gold.student_engagement of ``as_of``: each student's base becomes
    gold's score at d0 = as_of, the points of events known on days <= as_of (which gold now holds)
    are dropped with their seen sets, later ones are kept. Students with live state but no gold row
    keep only their later points (base 0). A student already rebased on a newer day is left alone.
    Idempotent: running it twice is running it once."""
    w = LiveWriter(settings, client=client, timeout_s=timeout_s)
    out = {"as_of_date": as_of.isoformat(), "rebased": 0, "orphans": 0, "skipped_newer": 0}

    for chunk in chunks(rows, batch):
        results = _rebase_chunk(w, as_of, [(r["student_id"], str(r["score"]), "gold") for r in chunk])
        out["rebased"] += results.count(1)
        out["skipped_newer"] += results.count(-1)
    # Live state without a gold row for as_of still has an older base_day (or none): base 0, later
    # points kept. Found by SCAN (nightly only; never KEYS); a student rebased above is left alone.
    pattern = _glob_escape(f"{settings.redis_prefix}:live:score:") + "*"
    head = len(f"{settings.redis_prefix}:live:score:{{")
    keys = (k for k in w.client.scan_iter(match=pattern, count=1000) if k.endswith("}"))
    for chunk in chunks(keys, batch):
        out["orphans"] += _rebase_chunk(w, as_of, [(k[head:-1], "0", "orphan") for k in chunk]).count(1)
    return out


def _progress_fields(row: Mapping) -> list[Any]:
    positions = dict(row.get("resume_positions") or {})
    at = {v: _ms(to_utc(t)) for v, t in (row.get("resume_at") or {}).items() if t is not None}
    last_accessed = _ms(to_utc(row["last_accessed"])) if row.get("last_accessed") else None
    fields: list[Any] = []
    for video, pos in sorted(positions.items()):
        fields += [f"pos:{video}", _num(pos), f"at:{video}", at.get(video, last_accessed or 0)]
    for video in row.get("completed_video_ids") or ():
        fields += [f"done:{video}", "1"]
    if positions:
        video = max(positions, key=lambda v: (at.get(v, last_accessed or 0), float(positions[v]), v))
        fields += ["last_video", video, "last_video_pos", _num(positions[video]),
                   "last_video_at", at.get(video, last_accessed or 0)]
    fields += ["videos_completed", int(row["videos_completed"]), "videos_total", int(row["videos_total"]),
               "completion_pct", _num(row["completion_pct"]), "status", row["status"]]
    if last_accessed is not None:
        fields += ["last_accessed", last_accessed]
    return fields


def reconcile_progress(settings: Settings, rows: Iterable[Mapping], tail: Iterable[Mapping] = (), *,
                       batch: int = 1000, client=None, timeout_s: float = 30.0) -> dict:
    """Replace each (student, course) progress hash with gold.student_course_progress's row
    (repairing any drift), then re-apply ``tail`` — the activity documents written after the
    interval gold covers — with the live compare-and-set rules, so a newer position is not lost.
    The tail goes after every row, so a tail document is never wiped by its pair's replace.
    Idempotent."""
    w = LiveWriter(settings, client=client, timeout_s=timeout_s)
    replaced = 0
    for chunk in chunks(rows, batch):
        calls = [("progress_replace", [progress_key(settings.redis_prefix, r["student_id"], r["course_id"])],
                  [w._progress_ttl, *_progress_fields(r)]) for r in chunk]
        replaced += len(w.scripts.run(calls))
    return {"replaced": replaced, "tail_applied": w.apply_progress(tail, batch=batch)}


# --- benchmark -----------------------------------------------------------------------------------
def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def bench_live_path(settings: Settings, n_calls: int = 200, docs_per_call: int = 50, echo=print) -> dict:
    """p50/p99 latency of ``insert_activities`` calls without and with the live writer, alternating
    in one run against the same servers (own MongoDB database and Redis prefix, removed after)."""
    import random

    from learntrack.mongo_ops import client as mongo_client, ensure_indexes, insert_activities

    s = settings.with_overrides(mongo_db=f"{settings.mongo_db}_bench_live",
                                redis_prefix=f"{settings.redis_prefix}_bench_live")
    mongo = mongo_client(s)
    mongo.drop_database(s.mongo_db)
    db = mongo[s.mongo_db]
    ensure_indexes(db)
    writer = LiveWriter(s)
    rng = random.Random(7)
    types = ("video_play", "video_pause", "video_seek", "video_complete", "page_view", "quiz_attempt", "login")
    t0 = dt.datetime.now(UTC) - dt.timedelta(hours=1)

    def docs(call: int) -> list[dict]:
        out = []
        for i in range(docs_per_call):
            etype = rng.choice(types)
            d = {"event_id": f"bench-{call}-{i}", "student_id": f"s{rng.randrange(500)}",
                 "course_id": f"c{rng.randrange(20)}", "event_type": etype,
                 "event_time": t0 + dt.timedelta(seconds=rng.randrange(3600))}
            if etype.startswith("video"):
                d.update(item_id=f"v{rng.randrange(10)}", duration_s=600.0, position_s=float(rng.randrange(600)))
            elif etype == "quiz_attempt":
                d.update(item_id=f"q{rng.randrange(5)}", score=float(rng.randrange(11)), max_score=10.0)
            elif etype == "login":
                d.update(region="eu-west")
            out.append(d)
        return out

    times: dict[str, list[float]] = {"without_live": [], "with_live": []}
    failed = 0
    try:
        for call in range(2 * n_calls):
            with_live = call % 2 == 1
            batch = docs(call)
            start = time.perf_counter()
            report = insert_activities(db, batch, live=writer if with_live else None)
            times["with_live" if with_live else "without_live"].append(time.perf_counter() - start)
            failed += report.live_failed
    finally:
        mongo.drop_database(s.mongo_db)
        mongo.close()
        keys = list(writer.client.scan_iter(match=_glob_escape(s.redis_prefix + ":") + "*", count=1000))
        for i in range(0, len(keys), 1000):
            writer.client.delete(*keys[i:i + 1000])
    result = {"calls": n_calls, "docs_per_call": docs_per_call, "live_failed": failed}
    for name, values in times.items():
        result[name] = {"p50_ms": round(1000 * _percentile(values, 0.50), 2),
                        "p99_ms": round(1000 * _percentile(values, 0.99), 2),
                        "mean_ms": round(1000 * statistics.fmean(values), 2)}
    echo(f"insert_activities, {n_calls} calls x {docs_per_call} docs each way: "
         + "; ".join(f"{k} p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms" for k, v in result.items()
                     if isinstance(v, dict)))
    return result


if __name__ == "__main__":  # python -m learntrack.sinks.redis_live [calls] [docs_per_call]
    import sys

    bench_live_path(Settings.from_env(), *(int(a) for a in sys.argv[1:3]))
