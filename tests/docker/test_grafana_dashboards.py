"""Grafana cannot run on this machine, so two checks stand in for it.

1. Schema: every dashboard JSON is type-checked by ``tsc`` against @grafana/schema's ``Dashboard``
   type (``docker/grafana/schema-check``; ``make setup`` installs it with ``npm ci``). A broken copy
   of a dashboard must be rejected.
2. Queries: known rows are published through the project's sinks into a keyspace and a Redis prefix
   of this test's own; then every dashboard variable and every panel query runs against the live
   Cassandra and Redis the way the data source plugins run them (hadesarchitect-cassandra-datasource:
   raw CQL, rows grouped into one frame per value of the first column, only the CQL types the plugin
   converts; redis-datasource: its ``command`` handlers, variables as command lines), the panel's
   transformations are applied, and every column or field the panel uses must be present, non-empty
   and equal to what was published.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "docker" / "grafana"
SCHEMA_CHECK = GRAFANA / "schema-check"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
CASSANDRA = "hadesarchitect-cassandra-datasource"
REDIS = "redis-datasource"
GLOBAL_VARIABLES = {"__from", "__to"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.extend(p["panels"] if p["type"] == "row" else [p])
    return out


def provisioned_datasources() -> dict[str, str]:
    import yaml

    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "learntrack.yaml").read_text())
    return {d["uid"]: d["type"] for d in doc["datasources"]}


# =============================================================================== 1. schema
def run_schema_check(*paths: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not on PATH: the dashboard schema check needs Node.js >= 18 (then `make setup` "
                    "installs docker/grafana/schema-check's packages with npm ci)")
    proc = subprocess.run([node, "check.mjs", *map(str, paths)], cwd=SCHEMA_CHECK, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode == 2:  # setup problem (packages not installed), never a verdict on the dashboards
        pytest.fail(f"dashboard schema check not set up: {proc.stderr.strip()}")
    return proc


def test_dashboards_exist():
    assert {p.stem for p in DASHBOARDS} >= {"learntrack-engagement", "learntrack-leaderboards", "learntrack-access",
                                            "learntrack-pipeline"}


def test_every_dashboard_satisfies_grafana_dashboard_schema():
    proc = run_schema_check(*DASHBOARDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(DASHBOARDS)} dashboard(s) satisfy" in proc.stdout


def _first_panel(d, type_=None):
    return next(p for p in all_panels(d) if type_ in (None, p["type"]))


BROKEN = {
    "gridPos height not a number": (lambda d: _first_panel(d)["gridPos"].update(h="ten"),
                                    "not assignable to type 'number'"),
    "unknown top-level key": (lambda d: d.update(refresh_rate="5m"), "'\"refresh_rate\"' does not exist"),
    "misspelled panel key": (lambda d: _first_panel(d).update(titel="x"), "'\"titel\"' does not exist"),
    "misspelled table option": (lambda d: _first_panel(d, "table")["options"].update(showHeadr=True),
                                "'\"showHeadr\"' does not exist"),
    "unknown override property": (
        lambda d: _first_panel(d, "table")["fieldConfig"]["overrides"].append(
            {"matcher": {"id": "byName", "options": "x"}, "properties": [{"id": "unti", "value": "s"}]}),
        "'\"unti\"' is not assignable"),
    "threshold mode not an enum value": (
        lambda d: _first_panel(d, "table")["fieldConfig"]["defaults"]["thresholds"].update(mode="absolut"),
        "'\"absolut\"' is not assignable"),
    "redis command the plugin lacks": (
        lambda d: _first_panel(d)["targets"].__setitem__(0, {
            "refId": "A", "datasource": {"type": REDIS, "uid": "learntrack-redis"}, "type": "command",
            "command": "zrevrangebyscore", "keyName": "k", "min": "-inf", "max": "+inf"}),
        "'\"zrevrangebyscore\"' is not assignable"),
    "redis key on a cassandra query": (lambda d: _first_panel(d)["targets"][0].update(keyName="k"),
                                       "not assignable to type 'PanelTarget'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_schema_check_rejects_a_broken_dashboard(case, tmp_path):
    mutate, expected = BROKEN[case]
    dash = load(GRAFANA / "dashboards" / "learntrack-engagement.json")
    mutate(dash)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dash, indent=2))
    proc = run_schema_check(broken)
    assert proc.returncode == 1, f"tsc accepted a dashboard with {case}:\n{proc.stdout}{proc.stderr}"
    assert f"{broken}(" in proc.stdout and "error TS" in proc.stdout, proc.stdout  # reported at the JSON's line
    assert expected in proc.stdout, proc.stdout


# ====================================================================== structure (no stores)
VAR_REF = re.compile(r"\$\{(\w+)(?::([^}]*))?\}|\$(\w+)")


def referenced_variables(text: str) -> set[str]:
    return {m.group(1) or m.group(3) for m in VAR_REF.finditer(text)}


def strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path):
    dash = load(path)
    sources = provisioned_datasources()
    panels = all_panels(dash)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, f"panel {p['id']} is wider than the grid"
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['id']} overlaps another panel"
        cells |= mine
        if p["type"] == "text":
            continue
        ds = p["datasource"]
        assert sources.get(ds["uid"]) == ds["type"], f"panel {p['id']}: data source {ds} is not provisioned"
        assert p["targets"], f"panel {p['id']} has no query"
        for t in p["targets"]:
            assert t["datasource"] == ds, f"panel {p['id']}: query {t['refId']} uses another data source"
    # Every variable used is defined, and a variable only uses variables defined before it (Grafana's rule).
    defined: list[str] = []
    for v in dash.get("templating", {}).get("list", []):
        if v.get("datasource"):
            assert sources.get(v["datasource"]["uid"]) == v["datasource"]["type"], f"variable {v['name']}"
        used = referenced_variables(" ".join(strings(v.get("query", ""))))
        assert used <= set(defined) | GLOBAL_VARIABLES, f"variable {v['name']} uses {used - set(defined)}"
        defined.append(v["name"])
    used = set().union(*(referenced_variables(s) for s in strings(dash["panels"])))
    assert used <= set(defined) | GLOBAL_VARIABLES, f"undefined variables {used - set(defined)}"


def test_dashboard_uids_unique_and_provider_path_is_the_mounted_folder():
    import yaml

    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "learntrack.yaml").read_text())
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    mounts = dict(m.split(":")[:2][::-1] for m in compose["services"]["grafana"]["volumes"])
    assert {p["options"]["path"] for p in provider["providers"]} == {"/var/lib/grafana/dashboards"}
    assert mounts["/var/lib/grafana/dashboards"] == "./grafana/dashboards"


def test_redis_prefix_constant_is_the_default_prefix():
    from learntrack.settings import Settings

    for path in DASHBOARDS:
        for v in load(path).get("templating", {}).get("list", []):
            if v["name"] == "prefix":
                assert v["type"] == "constant" and v["query"] == Settings().redis_prefix


# ================================================================== 2. queries (live stores)
DAY = dt.date(2026, 2, 3)
DAYS = [DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1), DAY]
TIME_FROM, TIME_TO = DAY - dt.timedelta(days=30), DAY + dt.timedelta(days=1)  # the dashboard's time range
UTC = dt.timezone.utc


def _course_rows():
    rows = []
    for i, day in enumerate(DAYS):
        for cid, n in (("c-a", 3), ("c-b", 7), *((("c-c", 2),) if i == 1 else ())):
            n += i
            rows.append({"event_date": day, "course_id": cid, "active_learners": n, "events": 10 * n + 1,
                         "page_views": 4 * n, "video_plays": 2 * n, "video_completions": n // 2 + 1,
                         "quiz_attempts": n + 2, "assignment_submissions": n - 1, "logins": n + 5,
                         "video_watch_seconds": 600.5 * n, "avg_quiz_score_pct": 50.0 + n,
                         "quiz_pass_rate": 0.25 * (i + 1), "new_learners": i + 1})
    return rows


COURSE_ROWS = _course_rows()
STUDENT_ROWS = [  # gold.student_engagement of two as-of days
    {"as_of_date": day, "student_id": sid, "score": Decimal(score) + i, "courses": courses, "events_recent": recent + i,
     "events_previous": recent - 1, "quiz_attempts": courses + 1, "quiz_pass_rate": 0.5 + i / 10,
     "last_event_time": dt.datetime(day.year, day.month, day.day, hour, 30, tzinfo=UTC), "segment": segment}
    for i, day in enumerate(DAYS[1:])
    for sid, score, courses, recent, hour, segment in (
        ("s-x", "4.500000", 1, 3, 9, "active"), ("s-y", "9.250000", 2, 8, 10, "highly_engaged"),
        ("s-z", "1.125000", 1, 1, 11, "at_risk"), ("s-w", "5.000000", 2, 4, 12, "active"))
]
STUDENT_COURSE_ROWS = [  # gold.student_course_engagement of DAY
    {"as_of_date": DAY, "course_id": cid, "student_id": sid, "score": Decimal(score), "percentile": pct, "band": band}
    for cid, sid, score, pct, band in (
        ("c-a", "s-x", "3.000000", 0.5, "mid"), ("c-a", "s-y", "8.000000", 1.0, "top"),
        ("c-b", "s-y", "7.500000", 1.0, "top"), ("c-b", "s-w", "2.250000", 0.5, "mid"),
        ("c-b", "s-z", "0.500000", 0.0, "low"))
]
FUNNEL_ROWS = [{"as_of_date": DAY, "course_id": cid, "enrolled": e, "started": s, "half_completed": h, "completed": c}
               for cid, e, s, h, c in (("c-a", 40, 30, 12, 5), ("c-b", 90, 70, 33, 21))]
ALERT_ROWS = [
    {"event_date": DAY, "student_id": sid, "first_event_id": f"e-{sid}-1", "second_event_id": f"e-{sid}-2",
     "first_region": r1, "second_region": r2, "first_at": dt.datetime(2026, 2, 3, h, 0, tzinfo=UTC),
     "second_at": dt.datetime(2026, 2, 3, h, m, tzinfo=UTC), "gap_minutes": float(m), "first_ip": ip1, "second_ip": ip2}
    for sid, r1, r2, h, m, ip1, ip2 in (("s-x", "eu-west", "ap-south", 8, 12, "10.0.0.1", "10.9.0.7"),
                                        ("s-z", "us-east", "eu-central", 14, 45, "10.0.0.2", "10.8.1.1"))
]
SHARED_ROWS = [
    {"event_date": DAY, "kind": kind, "value": value, "students": len(ids), "student_ids": ids}
    for kind, value, ids in (("ip", "10.0.0.1", ["s-w", "s-x", "s-y"]), ("ip", "10.0.0.9", ["s-x", "s-z"]),
                             ("device", "dev-42", ["s-w", "s-y"]))
]


def _run_rows():
    from learntrack.intervals import Interval
    from learntrack.run_records import run_record_rows

    def stages(day, failed):
        t = f"{(day + dt.timedelta(days=1)).isoformat()}T00:0"
        return [{"stage": "build_silver", "state": "success", "try_number": 2 if failed else 1,
                 "started_at": f"{t}1:00+00:00", "duration_s": 41.5, "rows_in": 900, "rows_out": 850,
                 "backlog_batches": 1 if failed else 0, "gate_checks": None, "gate_failed": None},
                {"stage": "gate_silver", "state": "failed" if failed else "success", "try_number": 3 if failed else 1,
                 "started_at": f"{t}2:00+00:00", "duration_s": 12.0, "rows_in": 850, "rows_out": 0 if failed else 850,
                 "backlog_batches": None, "gate_checks": 20, "gate_failed": 1 if failed else 0}]
    return [r for day, failed in ((DAY - dt.timedelta(days=1), False), (DAY, True))
            for r in run_record_rows(f"scheduled__{day.isoformat()}T00:00:00+00:00", Interval.for_day(day),
                                     stages(day, failed))]


def norm(v):
    """A value as the Python driver returns it (what a panel shows) or as published, made comparable."""
    from cassandra.util import Date

    if isinstance(v, Date):
        return v.date()
    if isinstance(v, dt.datetime):
        return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, Decimal):
        return float(v)
    return v


def expected_tables() -> dict[str, list[dict]]:
    """Every published Cassandra table's rows, derived from the inputs (not read back)."""
    segments: dict[tuple, list[float]] = {}
    for r in STUDENT_ROWS:
        segments.setdefault((r["as_of_date"], r["segment"]), []).append(float(r["score"]))
    runs = [{"run_date": (r["interval_end"] - dt.timedelta(microseconds=1)).date(), **r} for r in RUN_ROWS]
    tables = {
        "course_daily_engagement_by_day": COURSE_ROWS, "course_daily_engagement_by_course": COURSE_ROWS,
        "student_engagement_by_student": STUDENT_ROWS,
        "segments_by_day": [{"as_of_date": d, "segment": s, "students": len(v), "avg_score": sum(v) / len(v)}
                            for (d, s), v in segments.items()],
        "course_completion_funnel_by_day": FUNNEL_ROWS, "multi_region_alerts_by_day": ALERT_ROWS,
        "shared_access_by_day": SHARED_ROWS, "pipeline_runs_by_day": runs,
    }
    return {t: [{k: norm(v) for k, v in r.items()} for r in rows] for t, rows in tables.items()}


RUN_ROWS = _run_rows()


class World:
    """What was published, where, and how to read it."""

    def __init__(self, settings, session, redis):
        self.settings, self.session, self.redis = settings, session, redis
        self.tables = expected_tables()
        self.version = redis.get(f"{settings.redis_prefix}:engagement:current")
        self.redis_model = self._redis_model()

    def _redis_model(self) -> dict:
        """The snapshot's keys and values, derived from the inputs."""
        p = f"{self.settings.redis_prefix}:engagement"
        v = f"{p}:v:{self.version}"
        today = [r for r in STUDENT_ROWS if r["as_of_date"] == DAY]
        model = {f"{p}:current": self.version,
                 f"{v}:leaderboard": {r["student_id"]: float(r["score"]) for r in today},
                 f"{v}:segments": {}, f"{v}:courses": sorted({r["course_id"] for r in STUDENT_COURSE_ROWS}),
                 f"{v}:meta": {"as_of_date": DAY.isoformat(), "students": str(len(today)),
                               "courses": str(len({r["course_id"] for r in STUDENT_COURSE_ROWS}))}}
        for r in today:
            model[f"{v}:segments"][r["segment"]] = str(int(model[f"{v}:segments"].get(r["segment"], "0")) + 1)
            model[f"{v}:student:{r['student_id']}"] = {
                "score": r["score"], "segment": r["segment"], "events_recent": str(r["events_recent"]),
                "as_of_date": DAY.isoformat(), "last_event_time": r["last_event_time"].isoformat()}
        for r in STUDENT_COURSE_ROWS:
            model.setdefault(f"{v}:course:{r['course_id']}:leaderboard", {})[r["student_id"]] = float(r["score"])
        return model


@pytest.fixture(scope="module")
def world(stack):
    from learntrack.sinks import cassandra_sink as cs
    from learntrack.sinks import redis_sink as rs

    settings = stack.with_overrides(cassandra_keyspace="lt_grafana", redis_prefix="lt_grafana")
    r = rs.connect(settings)
    for key in r.scan_iter("lt_grafana:*"):  # this test's own prefix
        r.delete(key)
    cluster, session = cs.connect(settings)
    try:
        cs.ensure_schema(session, settings)
        session.execute("TRUNCATE lt_grafana.pipeline_runs_by_day")  # upserted, not replaced per day: start empty
        cs.publish_course_daily(settings, DAYS, COURSE_ROWS)
        cs.publish_student_engagement(settings, DAYS[1:], STUDENT_ROWS)
        cs.publish_completion_funnel(settings, [DAY], FUNNEL_ROWS)
        cs.publish_multi_region_alerts(settings, [DAY], ALERT_ROWS)
        cs.publish_shared_access(settings, [DAY], SHARED_ROWS)
        cs.publish_pipeline_runs(settings, RUN_ROWS)
        rs.publish_scores(settings, DAY, [r for r in STUDENT_ROWS if r["as_of_date"] == DAY], STUDENT_COURSE_ROWS)
        session.set_keyspace(settings.cassandra_keyspace)
        yield World(settings, session, r)
    finally:
        cluster.shutdown()


# ------------------------------------------------------------------- the plugins, simulated
class Frame:
    def __init__(self, name, fields: dict[str, list]):
        self.name, self.fields = name, dict(fields)

    def rows(self) -> list[dict]:
        n = max((len(v) for v in self.fields.values()), default=0)
        return [{k: v[i] for k, v in self.fields.items()} for i in range(n)]


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_time(v):
    from cassandra.util import Date

    return isinstance(v, (dt.datetime, dt.date, Date))


def kind(values: list) -> str:
    present = [v for v in values if v is not None]
    if present and all(is_number(v) for v in present):
        return "number"
    if present and all(is_time(v) for v in present):
        return "time"
    return "string"


#: Python driver types whose CQL type the Cassandra plugin converts (pkg/cassandra/row.go normalize);
#: anything else (list, set, map, decimal, tuple, duration, ...) makes the plugin fail the query.
def _plugin_converts(v) -> bool:
    from cassandra.util import Date

    return v is None or isinstance(v, (bool, int, float, str, bytes, dt.datetime, Date, uuid.UUID,
                                       ipaddress.IPv4Address, ipaddress.IPv6Address))


SELECT = re.compile(r"^\s*SELECT\s+(?P<distinct>DISTINCT\s+)?(?P<items>.+?)\s+FROM\s+(?P<table>\w+)"
                    r"(?:\s+WHERE\s+(?P<where>.+?))?(?P<filtering>\s+ALLOW\s+FILTERING)?"
                    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
                    re.I | re.S)
ITEM = re.compile(r"^(?:(?P<col>\w+)|(?P<fn>toJson|CAST)\((?P<arg>\w+)(?:\s+AS\s+text)?\)"
                  r"(?:\s+AS\s+(?P<alias>\w+))?)$", re.I)


def parse_cql(cql: str) -> dict:
    m = SELECT.match(cql)
    assert m, f"not a SELECT this test understands: {cql}"
    items = []
    for raw in (s.strip() for s in m["items"].split(",")):
        i = ITEM.match(raw)
        assert i, f"select item {raw!r} not understood in: {cql}"
        if i["col"]:
            items.append({"name": i["col"], "column": i["col"], "fn": None})
        else:
            items.append({"name": i["alias"], "column": i["arg"], "fn": i["fn"].lower()})
    conds = []
    for c in re.split(r"\s+AND\s+", m["where"] or "", flags=re.I) if m["where"] else []:
        if mi := re.match(r"^(\w+)\s+IN\s*\((.*)\)$", c.strip(), re.I | re.S):
            conds.append((mi[1], "in", re.findall(r"'([^']*)'", mi[2])))
        elif mc := re.match(r"^(\w+)\s*(=|>=|<=|>|<)\s*'([^']*)'$", c.strip()):
            conds.append((mc[1], mc[2], mc[3]))
        else:
            raise AssertionError(f"condition {c!r} not understood in: {cql}")
    return {"items": items, "table": m["table"], "conds": conds, "limit": int(m["limit"]) if m["limit"] else None,
            "distinct": bool(m["distinct"])}


def matches(row: dict, conds) -> bool:
    def s(v):
        return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else str(v)

    ops = {"=": lambda a, b: a == b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
           ">": lambda a, b: a > b, "<": lambda a, b: a < b, "in": lambda a, b: a in b}
    return all(ops[op](s(row[col]), val) for col, op, val in conds)


def run_cql(world: World, cql: str) -> tuple[list[dict], list[Frame]]:
    """Rows as the Python driver reads them, and the frames the Cassandra plugin would return."""
    result = world.session.execute(cql)
    names = list(result.column_names)
    rows = [dict(zip(names, r)) for r in result]
    for r in rows:
        bad = {k: type(v).__name__ for k, v in r.items() if not _plugin_converts(v)}
        assert not bad, f"the Cassandra plugin cannot convert {bad} (select it as text, e.g. toJson(...)): {cql}"
    frames: dict[str, Frame] = {}
    for r in rows:  # pkg/cassandra/session.go Select: one frame per value of the first column
        fid = str(r[names[0]])
        f = frames.setdefault(fid, Frame(fid, {n: [] for n in names}))
        for n in names:
            f.fields[n].append(r[n])
    return rows, list(frames.values())


def redis_variable(world: World, command: str) -> list[str]:
    """pkg/redis-custom.go: the command line split like a shell, its reply flattened to strings."""
    reply = world.redis.execute_command(*shlex.split(command))
    if reply is None:
        return []
    if isinstance(reply, (list, set)):
        return [str(v) for v in reply]
    return str(reply).replace("\r\n", "\n").split("\n")


def redis_value_frame(key, value) -> Frame:
    try:
        return Frame(key, {"Value": [float(value)]})
    except ValueError:
        return Frame(key, {"Value": [value]})


def run_redis(store, target: dict) -> list[Frame]:
    """The redis-datasource handlers for the commands the dashboards use, over Redis or the model."""
    cmd, key = target["command"], target["keyName"]
    live = not isinstance(store, dict)
    if cmd == "get":
        value = store.get(key)  # Redis and the model (a dict) read alike
        assert value not in (None, ""), f"GET {key}: no value"
        return [redis_value_frame(key, value)]
    if cmd == "hgetall":
        h = store.hgetall(key) if live else store.get(key, {})
        assert h, f"HGETALL {key}: empty"
        return [Frame(key, {"Field": list(h), "Value": list(h.values())})]
    if cmd == "zrange":
        assert target.get("zrangeQuery", "") == "", "only the index range is simulated"
        if live:
            reply = store.execute_command("ZRANGE", key, target["min"], target["max"], "WITHSCORES")
            if reply and not isinstance(reply[0], (list, tuple)):  # redis-py may or may not pair the reply
                reply = list(zip(reply[::2], reply[1::2]))
            pairs = [(member, float(score)) for member, score in reply]
        else:
            ordered = sorted(store.get(key, {}).items(), key=lambda kv: (kv[1], kv[0]))
            lo, hi = int(target["min"]), int(target["max"])
            n = len(ordered)
            lo, hi = (lo + n if lo < 0 else lo), (hi + n if hi < 0 else hi)
            pairs = ordered[max(lo, 0):hi + 1]
        assert pairs, f"ZRANGE {key}: empty"
        return [Frame("zrange", {member: [score] for member, score in pairs})]  # pkg/redis-zset.go
    pytest.fail(f"redis command {cmd!r} is not one this test knows how the plugin runs")


# ----------------------------------------------------------------------------- transformations
REDUCER_NAMES = {"lastNotNull": "Last *", "last": "Last", "first": "First", "max": "Max", "min": "Min",
                 "mean": "Mean", "sum": "Total", "count": "Count"}


def _reduce(values, reducer):
    present = [v for v in values if v is not None]
    return {"lastNotNull": lambda: present[-1] if present else None, "last": lambda: values[-1] if values else None,
            "first": lambda: values[0] if values else None, "max": lambda: max(present, default=None),
            "min": lambda: min(present, default=None), "sum": lambda: sum(present), "count": lambda: len(values),
            "mean": lambda: sum(present) / len(present) if present else None}[reducer]()


def transform(frames: list[Frame], t: dict) -> list[Frame]:
    names = {n for f in frames for n in f.fields}
    opts = t["options"]
    if t["id"] == "organize":
        for group in ("excludeByName", "renameByName", "indexByName", "includeByName"):
            missing = set(opts.get(group, {})) - names
            assert not missing, f"organize.{group} names fields the query does not return: {missing}"
        out = []
        for f in frames:
            kept = {opts.get("renameByName", {}).get(n, n): v for n, v in f.fields.items()
                    if not opts.get("excludeByName", {}).get(n)}
            out.append(Frame(f.name, kept))
        return out
    if t["id"] == "reduce":
        assert opts.get("mode") == "seriesToRows"
        fields = {"Field": [], **{REDUCER_NAMES[r]: [] for r in opts["reducers"]}}
        for f in frames:
            for n, v in f.fields.items():
                if kind(v) == "time" and not opts.get("includeTimeField"):
                    continue
                fields["Field"].append(n)
                for r in opts["reducers"]:
                    fields[REDUCER_NAMES[r]].append(_reduce(v, r))
        return [Frame("reduced", fields)]
    if t["id"] == "convertFieldType":
        out = []
        for c in opts["conversions"]:
            assert c["targetField"] in names, f"convertFieldType: no field {c['targetField']}"
        for f in frames:
            fields = dict(f.fields)
            for c in opts["conversions"]:
                if c["targetField"] in fields and c["destinationType"] == "number":
                    fields[c["targetField"]] = [float(v) for v in fields[c["targetField"]]]
            out.append(Frame(f.name, fields))
        return out
    if t["id"] == "sortBy":
        for s in opts["sort"]:
            assert s["field"] in names, f"sortBy: no field {s['field']}"
        return [sort_frame(f, opts["sort"][0]["field"], opts["sort"][0].get("desc", False)) for f in frames]
    if t["id"] == "limit":
        return [Frame(f.name, {n: v[:opts["limitField"]] for n, v in f.fields.items()}) for f in frames]
    if t["id"] == "merge":
        rows = [r for f in frames for r in f.rows()]
        cols = list(dict.fromkeys(n for f in frames for n in f.fields))
        return [Frame("merged", {c: [r.get(c) for r in rows] for c in cols})]
    pytest.fail(f"transformation {t['id']!r} is not one this test knows")


def sort_frame(f: Frame, field: str, desc: bool) -> Frame:
    order = sorted(range(len(f.fields[field])), key=lambda i: (f.fields[field][i] is None, f.fields[field][i]),
                   reverse=desc)
    return Frame(f.name, {n: [v[i] for i in order] for n, v in f.fields.items()})


def check_panel_uses(panel: dict, frames: list[Frame]) -> None:
    """Every field the panel names after its transformations exists, and its visualisation has data."""
    names = {n for f in frames for n in f.fields}
    pid = panel["id"]
    assert frames and all(f.rows() for f in frames), f"panel {pid}: no data"
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byName":
            field = o["matcher"]["options"]
            assert field in names, f"panel {pid}: override for missing field {field}"
    for s in panel.get("options", {}).get("sortBy", []):
        assert s["displayName"] in names, f"panel {pid}: sorted by missing field {s['displayName']}"
    if x := panel.get("options", {}).get("xField"):
        assert x in names, f"panel {pid}: x field {x} missing"
    fields = [(n, kind(v)) for f in frames for n, v in f.fields.items()]
    for n, v in ((n, v) for f in frames for n, v in f.fields.items()):  # present and non-empty
        assert any(x not in (None, "") for x in v), f"panel {pid}: field {n} is empty"
    if panel["type"] in ("stat", "bargauge", "piechart", "timeseries", "barchart"):
        assert any(k == "number" for _, k in fields), f"panel {pid}: no numeric field to draw"
    if panel["type"] == "piechart" and panel["options"]["reduceOptions"].get("values"):
        assert any(k == "string" for _, k in fields), f"panel {pid}: no field naming the slices"
    if panel["type"] == "timeseries":
        for f in frames:
            kinds = {kind(v) for v in f.fields.values()}
            assert {"time", "number"} <= kinds, f"panel {pid}: frame {f.name} lacks a time or numeric field"


# ------------------------------------------------------------------------------- variables
def substitute(text: str, values: dict[str, list[str]]) -> str:
    def one(m):
        name, fmt = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), None)
        if name in ("__from", "__to"):
            assert fmt == "date:YYYY-MM-DD", f"time format {fmt!r} not simulated"
            return (TIME_FROM if name == "__from" else TIME_TO).isoformat()
        assert name in values, f"variable ${name} is not defined (or not yet, at this point of the list)"
        vals = values[name]
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in vals)
        assert fmt is None and len(vals) == 1, f"${{{name}:{fmt}}} with {vals} not simulated"
        return vals[0]

    return VAR_REF.sub(one, text)


def variable_options(world: World, var: dict, values: dict) -> list[str]:
    ds = var["datasource"]["type"]
    if ds == CASSANDRA:  # pkg/plugin GetVariables: the first column, formatted with %v
        cql = substitute(var["query"]["query"], values)
        rows, _ = run_cql(world, cql)
        first = [next(iter(r.values())) for r in rows]
        assert all(isinstance(v, str) for v in first), \
            f"variable {var['name']}: the first column must be text (the plugin formats others with Go's %v): {cql}"
        opts = first
    elif ds == REDIS:
        opts = redis_variable(world, substitute(var["query"], values))
    else:
        pytest.fail(f"variable {var['name']}: data source {ds} not simulated")
    sort = var.get("sort", 0)
    if sort in (1, 2):
        opts = sorted(opts, reverse=sort == 2)
    elif sort != 0:
        pytest.fail(f"variable sort {sort} not simulated")
    return opts


def resolve_variables(world: World, dash: dict) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each variable's value as Grafana picks it on load (the first option; every option for a multi
    variable, to draw them all), and its options. The prefix constant is this test's prefix."""
    values, options = {}, {}
    for var in dash.get("templating", {}).get("list", []):
        if var["type"] == "constant":
            opts = [world.settings.redis_prefix if var["name"] == "prefix" else var["query"]]
        elif var["type"] == "query":
            opts = variable_options(world, var, values)
        else:
            pytest.fail(f"variable type {var['type']} not simulated")
        assert opts, f"variable {var['name']} has no options"
        options[var["name"]] = opts
        values[var["name"]] = opts if var.get("multi") else opts[:1]
    return values, options


# ------------------------------------------------------------------------------------ tests
EXPECTED_OPTIONS = {  # what each variable must offer, from the published data
    ("learntrack-engagement", "day"): [d.isoformat() for d in reversed(DAYS)],
    ("learntrack-engagement", "course"): ["c-a", "c-b"],
    ("learntrack-engagement", "courses"): ["c-a", "c-b"],
    ("learntrack-leaderboards", "course"): ["c-a", "c-b"],
    ("learntrack-leaderboards", "student"): ["s-y", "s-w", "s-x", "s-z"],
    ("learntrack-leaderboards", "day"): [d.isoformat() for d in reversed(DAYS[1:])],
    ("learntrack-access", "day"): [d.isoformat() for d in reversed(DAYS)],
    ("learntrack-pipeline", "day"): [DAY.isoformat(), (DAY - dt.timedelta(days=1)).isoformat()],
}


@pytest.mark.stack
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_variables_offer_the_published_values(world, path):
    dash = load(path)
    _, options = resolve_variables(world, dash)
    for var in dash.get("templating", {}).get("list", []):
        name = var["name"]
        if name == "version":
            assert options[name] == [world.version] and world.version.startswith(DAY.isoformat())
        elif name == "prefix":
            continue
        else:
            assert options[name] == EXPECTED_OPTIONS[(path.stem, name)], name


PANELS = [(p, panel["id"]) for p in DASHBOARDS for panel in all_panels(load(p)) if panel["type"] != "text"]


@pytest.mark.stack
@pytest.mark.parametrize("path,panel_id", PANELS, ids=lambda v: v.stem if isinstance(v, Path) else str(v))
def test_panel_shows_the_published_data(world, path, panel_id):
    dash = load(path)
    panel = next(p for p in all_panels(dash) if p["id"] == panel_id)
    values, _ = resolve_variables(world, dash)
    frames: list[Frame] = []
    for target in panel["targets"]:
        ds = target["datasource"]["type"]
        if ds == CASSANDRA:
            frames += check_cassandra_target(world, panel, target, values)
        elif ds == REDIS:
            frames += check_redis_target(world, panel, target, values)
        else:
            pytest.fail(f"panel {panel_id}: data source {ds} is not one this test knows")
    for t in panel.get("transformations", []):
        frames = transform(frames, t)
    check_panel_uses(panel, frames)
    if panel["type"] == "table" and panel["datasource"]["type"] == REDIS and panel["options"].get("sortBy"):
        s = panel["options"]["sortBy"][0]
        frames = [sort_frame(f, s["displayName"], s.get("desc", False)) for f in frames]
        check_leaderboard(world, panel, frames, values)


def check_cassandra_target(world: World, panel: dict, target: dict, values: dict) -> list[Frame]:
    assert target["rawQuery"] is True and target["queryType"] == "query"
    cql = substitute(target["target"], values)
    q = parse_cql(cql)
    rows, frames = run_cql(world, cql)
    assert rows, f"panel {panel['id']}: no rows for {cql}"
    columns = [i["name"] for i in q["items"]]
    assert list(rows[0]) == columns, f"panel {panel['id']}: columns {list(rows[0])} != {columns}"
    for alias in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("alias", "")):
        assert alias in columns, f"panel {panel['id']}: legend names missing column {alias}"
    # Every row equals a published row (each selected column), and every published row the query
    # selects is there.
    published = [r for r in world.tables[q["table"]] if matches(r, q["conds"])]
    if q["limit"]:
        published = published[:q["limit"]]

    def shown(row):
        out = []
        for i in q["items"]:
            v = norm(row[i["name"]])
            out.append(json.loads(v) if i["fn"] == "tojson" else v)
        return out

    def wanted(row):
        return [row[i["column"]] if i["fn"] != "cast" else str(row[i["column"]]) for i in q["items"]]

    assert sorted(map(repr, map(shown, rows))) == sorted(map(repr, map(wanted, published))), \
        f"panel {panel['id']}: rows differ from the published rows for {cql}"
    for c in columns:
        assert any(r[c] not in (None, "", []) for r in rows), f"panel {panel['id']}: column {c} is empty"
    return frames


def check_redis_target(world: World, panel: dict, target: dict, values: dict) -> list[Frame]:
    target = {**target, "keyName": substitute(target["keyName"], values)}
    got = run_redis(world.redis, target)
    want = run_redis(world.redis_model, target)

    def comparable(frames):
        out = []
        for f in frames:
            fields = {}
            for n, vs in f.fields.items():
                fields[n] = [float(v) if isinstance(v, (Decimal, float, int)) or
                             (isinstance(v, str) and re.fullmatch(r"-?\d+(\.\d+)?", v)) else v for v in vs]
            if "Field" in fields:  # hash order is Redis's, not ours
                fields = dict(sorted(zip(fields["Field"], fields["Value"])))
            out.append(fields)
        return out

    assert comparable(got) == comparable(want), f"panel {panel['id']}: {target['command']} {target['keyName']}"
    return got


def check_leaderboard(world: World, panel: dict, frames: list[Frame], values: dict) -> None:
    """A leaderboard table lists the best students, best first, as published."""
    [f] = frames
    key = substitute(panel["targets"][0]["keyName"], values)
    board = world.redis_model[key]
    best = sorted(board.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    assert list(zip(f.fields["Student"], f.fields["Score"])) == best, panel["title"]
