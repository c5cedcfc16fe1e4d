"""The Neo4j sink against the running server, in its own namespaces: isolation, idempotence, the
multi-region and account-sharing checks against brute-force Python, and the alerts they write back."""

import datetime as dt
from collections import defaultdict

import pytest

from learntrack.intervals import to_utc
from learntrack.sinks import neo4j_sink

pytestmark = pytest.mark.stack

UTC = dt.timezone.utc
NS = "lt_neo4j_unit"
NS_B = "lt_neo4j_unit'b"  # a quote: the namespace must travel as a parameter
T = dt.datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
D1 = dt.datetime(2024, 3, 4, tzinfo=UTC)
M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)
DAY_LEN = dt.timedelta(days=1)


def login(eid, sid, region, at, ip=None, device=None):
    return {"event_id": eid, "student_id": sid, "region": region, "country": region[:2].upper(),
            "ip": ip, "device": device, "event_time": at}


def travel_rows():
    """Hand-made multi-region cases (window 30 minutes), one student per case."""
    end = D1 + DAY_LEN
    return [
        login("x1", "s_exact", "eu-west", T, ip="10.0.0.1"),
        login("x2", "s_exact", "us-east", T + 30 * M),  # exactly at the window: flagged
        login("o1", "s_over", "eu-west", T),
        login("o2", "s_over", "us-east", T + 30 * M + dt.timedelta(seconds=1)),  # window + 1 s: not
        login("v1", "s_travel", "eu-west", T),
        login("v2", "s_travel", "us-east", T + 5 * H),  # legitimate travel
        login("m1", "s_same", "eu-west", T, ip="10.0.0.2"),
        login("m2", "s_same", "eu-west", T + M, ip="10.0.0.3"),  # same region
        login("t2", "s_tie", "eu-west", T, ip="10.0.0.4"),
        login("t1", "s_tie", "ap-south", T, ip="10.0.0.5"),  # same time: t1 comes first
        login("c1", "s_chain", "eu-west", T, device="dv"),
        login("c2", "s_chain", "us-east", T + 10 * M),
        login("c3", "s_chain", "ap-south", T + 20 * M),
        # range edges: b1 before D1 (or exactly at a range's since/until), b3 just before the day's end
        # with b4/b5 after it
        login("b1", "s_edge", "eu-west", D1 - 10 * M),
        login("b2", "s_edge", "us-east", D1 + 5 * M),
        login("b3", "s_edge", "eu-west", end - M),
        login("b4", "s_edge", "us-east", end + 20 * M),
        login("b5", "s_edge", "ap-south", end + 25 * M),
        # a naive time is the host's local time
        login("n1", "s_naive", "eu-west", T.astimezone().replace(tzinfo=None)),
        login("n2", "s_naive", "us-east", T + 3 * M),
    ]


def sharing_rows():
    """Threshold 3: 192.0.2.1 by exactly 3 students (one twice, one at a UTC+2 time that is still
    day 1 in UTC), 192.0.2.2 by 2, device kiosk-1 by 3, 192.0.2.3 by 2 students at the end of day 1
    and 2 others at the start of day 2."""
    d2 = D1 + DAY_LEN
    plus2 = dt.timezone(dt.timedelta(hours=2))
    return [
        login("i1", "u1", "eu-west", D1 + 8 * H, ip="192.0.2.1"),
        login("i2", "u2", "eu-west", D1 + 9 * H, ip="192.0.2.1"),
        login("i3", "u3", "eu-west", dt.datetime(2024, 3, 5, 0, 30, tzinfo=plus2), ip="192.0.2.1"),  # 22:30 UTC
        login("i4", "u1", "eu-west", D1 + 10 * H, ip="192.0.2.1"),
        login("j1", "u4", "eu-west", D1 + 8 * H, ip="192.0.2.2"),
        login("j2", "u5", "eu-west", D1 + 8 * H, ip="192.0.2.2"),
        login("k1", "u6", "eu-west", D1 + 12 * H, device="kiosk-1"),
        login("k2", "u7", "eu-west", D1 + 13 * H, device="kiosk-1"),
        login("k3", "u8", "eu-west", D1 + 14 * H, device="kiosk-1", ip="192.0.2.9"),
        login("l1", "u1", "eu-west", d2 - dt.timedelta(seconds=1), ip="192.0.2.3"),
        login("l2", "u2", "eu-west", d2 - M, ip="192.0.2.3"),
        login("l3", "u3", "eu-west", d2, ip="192.0.2.3"),
        login("l4", "u4", "eu-west", d2 + M, ip="192.0.2.3"),
    ]


# ------------------------------------------------------------------------ independent checks
def brute_pairs(rows, since, until, window_minutes=30):
    out = set()
    for a in rows:
        for b in rows:
            ta, tb = to_utc(a["event_time"]), to_utc(b["event_time"])
            if (a["student_id"] == b["student_id"] and a["region"] != b["region"] and since <= ta < until
                    and (tb, b["event_id"]) > (ta, a["event_id"]) and tb - ta <= dt.timedelta(minutes=window_minutes)):
                out.add((a["student_id"], a["event_id"], a["region"], ta, a["ip"],
                         b["event_id"], b["region"], tb, b["ip"], (tb - ta).total_seconds() / 60))
    return out


def got_pairs(pairs):
    return {(p["student_id"], p["first_event_id"], p["first_region"], p["first_at"].to_native(), p["first_ip"],
             p["second_event_id"], p["second_region"], p["second_at"].to_native(), p["second_ip"], p["gap_minutes"])
            for p in pairs}


def brute_shared(rows, since, until, least):
    users = defaultdict(set)
    for r in rows:
        at = to_utc(r["event_time"])
        for kind in ("ip", "device"):
            if r[kind] and since <= at < until:
                users[(at.date(), kind, r[kind])].add(r["student_id"])
    return [{"event_date": d, "kind": k, "value": v, "students": len(s), "student_ids": sorted(s)}
            for (d, k, v), s in sorted(users.items()) if len(s) >= least]


def graph(settings):
    """Nodes per label, and every relationship out of a node of the namespace as (from id, type, to id,
    both ends in the namespace). Anchored per label on the (ns, id) constraints: no whole-graph scan."""
    driver = neo4j_sink.connect(settings)
    nodes, rels = {}, []
    try:
        for label, key in neo4j_sink.KEYS.items():
            recs = driver.execute_query(
                f"MATCH (x:{label}) WHERE x.ns = $ns AND x.{key} IS NOT NULL OPTIONAL MATCH (x)-[r]->(y) "
                f"RETURN x.{key} AS x, type(r) AS r, coalesce(y.key, y.event_id, y.student_id, y.name, y.value) AS y, "
                "y.ns = x.ns AS same", ns=settings.neo4j_namespace).records
            if recs:
                nodes[label] = len({r["x"] for r in recs})
            rels += [tuple(r.values()) for r in recs if r["r"]]
        return nodes, sorted(rels)
    finally:
        driver.close()


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture()
def neo(stack):
    settings = stack.with_overrides(neo4j_namespace=NS, multi_region_window_minutes=30, shared_access_min_students=3,
                                    shared_access_kinds="ip,device")
    other = settings.with_overrides(neo4j_namespace=NS_B)
    for s in (settings, other):
        neo4j_sink.clear_namespace(s)
    yield settings, other
    for s in (settings, other):
        neo4j_sink.clear_namespace(s)


DAY = (D1, D1 + dt.timedelta(days=1))
WIDE = (D1 - dt.timedelta(days=1), D1 + dt.timedelta(days=3))


# ------------------------------------------------------------------------------------ tests
def test_namespaces_are_isolated(neo):
    a, b = neo
    rows_a = travel_rows()
    rows_b = [{**r, "region": "eu-west", "ip": "192.0.2.1"} for r in travel_rows()]  # same ids, one region, one IP
    neo4j_sink.publish_access(a, rows_a)
    neo4j_sink.publish_access(b, rows_b)

    assert got_pairs(neo4j_sink.multi_region_pairs(a, *WIDE)) == brute_pairs(rows_a, *WIDE) != set()
    assert neo4j_sink.multi_region_pairs(b, *WIDE) == []
    assert neo4j_sink.shared_access(a, *WIDE) == brute_shared(rows_a, *WIDE, 3) == []
    assert neo4j_sink.shared_access(b, *WIDE) == brute_shared(rows_b, *WIDE, 3) != []
    neo4j_sink.detect_and_record(b, *WIDE)
    alerts_b = alert_view(b)
    assert alerts_b and all(k.startswith("shared_ip|") for k in alerts_b)
    neo4j_sink.detect_and_record(a, *WIDE)  # replaces a's alerts of the range, never b's
    assert alert_view(b) == alerts_b and alert_view(a) == expected_alerts(rows_a, *WIDE)
    nodes_a, rels_a = graph(a)
    nodes_b, rels_b = graph(b)
    assert nodes_a["Access"] == nodes_b["Access"] == len(rows_a)
    assert nodes_a["Student"] == nodes_b["Student"] == len({r["student_id"] for r in rows_a})
    assert nodes_a["Region"] == 3 and nodes_b["Region"] == 1
    assert all(same_ns for *_, same_ns in rels_a + rels_b)  # no relationship crosses namespaces

    assert neo4j_sink.clear_namespace(a) == sum(nodes_a.values())
    assert graph(a) == ({}, [])
    assert graph(b) == (nodes_b, rels_b)
    assert neo4j_sink.multi_region_pairs(a, *WIDE) == []


def test_publish_is_idempotent_and_follows_corrections(neo):
    s, _ = neo
    rows = travel_rows() + sharing_rows()
    assert neo4j_sink.publish_access(s, rows, batch=4) == {"access_events": len(rows)}
    first = graph(s)
    assert neo4j_sink.publish_access(s, rows) == {"access_events": len(rows)}
    assert graph(s) == first
    nodes, rels = first
    with_ip = [r for r in rows if r["ip"]]
    assert nodes["IP"] == len({r["ip"] for r in with_ip})
    assert nodes["Device"] == len({r["device"] for r in rows if r["device"]})
    by_type = defaultdict(int)
    for _, kind, _, _ in rels:
        by_type[kind] += 1
    assert dict(by_type) == {"HAD": len(rows), "FROM": len(rows), "VIA_IP": len(with_ip),
                             "ON_DEVICE": sum(1 for r in rows if r["device"])}

    # A corrected login moves its edges: one region, one IP, one device each, never two.
    fixed = {**rows[0], "region": "us-east", "ip": "10.9.9.9", "device": "dv-new"}
    m1 = next(r for r in rows if r["event_id"] == "m1")
    neo4j_sink.publish_access(s, [fixed, {**m1, "ip": None}])
    _, rels = graph(s)
    assert [(k, y) for x, k, y, _ in rels if x == rows[0]["event_id"]] == [("FROM", "us-east"), ("ON_DEVICE", "dv-new"),
                                                                          ("VIA_IP", "10.9.9.9")]
    assert [(k, y) for x, k, y, _ in rels if x == "m1"] == [("FROM", "eu-west")]


def test_multi_region_matches_brute_force(neo):
    s, _ = neo
    rows = travel_rows()
    neo4j_sink.publish_access(s, rows)
    for since, until in (DAY, WIDE, (T, T + M), (D1 - 10 * M, D1), (D1 - 20 * M, D1 - 10 * M)):
        got = neo4j_sink.multi_region_pairs(s, since, until)
        assert got_pairs(got) == brute_pairs(rows, since, until)
        assert len(got) == len(got_pairs(got))
    ids = {(p[1], p[5]) for p in got_pairs(neo4j_sink.multi_region_pairs(s, *DAY))}
    assert ids == {("x1", "x2"), ("t1", "t2"), ("c1", "c2"), ("c1", "c3"), ("c2", "c3"), ("b3", "b4"), ("b3", "b5"),
                   ("n1", "n2")}
    assert [p["first_event_id"] for p in neo4j_sink.multi_region_pairs(s, D1 - 10 * M, D1)] == ["b1"]  # at since: in
    assert neo4j_sink.multi_region_pairs(s, D1 - 20 * M, D1 - 10 * M) == []  # at until: out
    # the window is a parameter: 31 minutes takes the +1 s case and the one just past the day's end
    wider = got_pairs(neo4j_sink.multi_region_pairs(s, *DAY, window_minutes=31))
    assert wider == brute_pairs(rows, *DAY, window_minutes=31)
    assert {(p[1], p[5]) for p in wider} - ids == {("o1", "o2")}


def test_shared_access_matches_brute_force(neo):
    s, _ = neo
    rows = sharing_rows() + travel_rows()
    neo4j_sink.publish_access(s, rows)
    for since, until in (DAY, WIDE, (D1 + dt.timedelta(days=1), D1 + dt.timedelta(days=2))):
        for least in (None, 2, 4):
            want = brute_shared(rows, since, until, 3 if least is None else least)
            assert neo4j_sink.shared_access(s, since, until, min_students=least) == want
    assert [(r["kind"], r["value"], r["student_ids"]) for r in neo4j_sink.shared_access(s, *WIDE)] == [
        ("device", "kiosk-1", ["u6", "u7", "u8"]), ("ip", "192.0.2.1", ["u1", "u2", "u3"])]


def alert_view(settings):
    """Each alert's key and its relationships' (type, target id)."""
    driver = neo4j_sink.connect(settings)
    try:
        recs = driver.execute_query(
            "MATCH (al:Alert {ns: $ns})-[x]->(t) "
            "RETURN al.key AS key, type(x) AS rel, coalesce(t.event_id, t.student_id, t.value) AS target",
            ns=settings.neo4j_namespace).records
    finally:
        driver.close()
    view = defaultdict(set)
    for r in recs:
        view[r["key"]].add((r["rel"], r["target"]))
    return dict(view)


def expected_alerts(rows, since, until):
    """Alerts computed from the rows: multi-region pairs of the range, sharing of its days."""
    want = {}
    for sid, e1, *_, e2, _r, _t, _ip, _gap in brute_pairs(rows, since, until):
        want[f"multi_region|{e1}|{e2}"] = {("ABOUT", sid), ("EVIDENCE", e1), ("EVIDENCE", e2)}
    for sh in brute_shared(rows, since, until, 3):
        evidence = {("EVIDENCE", r["event_id"]) for r in rows
                    if r[sh["kind"]] == sh["value"] and to_utc(r["event_time"]).date() == sh["event_date"]}
        want[f"shared_{sh['kind']}|{sh['event_date']}|{sh['value']}"] = {("ABOUT", sh["value"])} | evidence
    return want


@pytest.mark.parametrize("batch", [1000, 1])  # 1: every alert and every stale drop a transaction of its own
def test_alerts_are_recorded_idempotently_and_replaced(neo, batch, monkeypatch):
    s, _ = neo
    real = neo4j_sink.detect_and_record
    monkeypatch.setattr(neo4j_sink, "detect_and_record", lambda *a: real(*a, batch=batch))
    rows = travel_rows() + sharing_rows()
    neo4j_sink.publish_access(s, rows)
    out = neo4j_sink.detect_and_record(s, *DAY)
    assert got_pairs(out["multi_region"]) == brute_pairs(rows, *DAY)
    assert out["shared_access"] == brute_shared(rows, *DAY, 3)
    want = expected_alerts(rows, *DAY)
    assert len(want) == 8 + 2 and alert_view(s) == want
    before = graph(s)
    assert before[0]["Alert"] == 10
    assert sum(1 for _, k, _, _ in before[1] if k in ("ABOUT", "EVIDENCE")) == sum(map(len, want.values()))

    assert neo4j_sink.detect_and_record(s, *DAY) == out  # re-run: same alerts, same links
    assert graph(s) == before

    # Corrections: x2 now in x1's region (no pair), u3 left 192.0.2.1 (2 students), kiosk-1 swaps u8
    # for s_travel (still 3: the alert stays, its evidence changes).
    fixes = {"x2": {"region": "eu-west"}, "i3": {"ip": "198.51.100.7"}, "v1": {"device": "kiosk-1"},
             "k3": {"device": "kiosk-2"}}
    rows = [{**r, **fixes.get(r["event_id"], {})} for r in rows]
    neo4j_sink.publish_access(s, [r for r in rows if r["event_id"] in fixes])
    neo4j_sink.detect_and_record(s, *DAY)
    now = alert_view(s)
    assert now == expected_alerts(rows, *DAY)
    assert "multi_region|x1|x2" not in now and "shared_ip|2024-03-04|192.0.2.1" not in now
    assert {e for _, e in now["shared_device|2024-03-04|kiosk-1"]} == {"kiosk-1", "k1", "k2", "v1"}

    # Detection of another range leaves this range's alerts alone (b4-b5 of the next day joins them).
    neo4j_sink.detect_and_record(s, D1 + dt.timedelta(days=1), D1 + dt.timedelta(days=2))
    assert alert_view(s) == {**now, **expected_alerts(rows, D1 + dt.timedelta(days=1), D1 + dt.timedelta(days=2))}
    assert "multi_region|b4|b5" in alert_view(s)

    # A range inside a day: multi-region alerts of that range only, sharing judged over the whole day.
    view = alert_view(s)
    out = neo4j_sink.detect_and_record(s, T, T + M)
    assert got_pairs(out["multi_region"]) == brute_pairs(rows, T, T + M) != set()
    assert out["shared_access"] == brute_shared(rows, *DAY, 3)
    assert alert_view(s) == view
