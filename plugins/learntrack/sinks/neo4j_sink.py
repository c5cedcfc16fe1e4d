"""Neo4j: the access graph, multi-region and account-sharing detection, and the alerts they raise.

    (:Student {ns, student_id})-[:HAD]->(:Access {ns, event_id, at, country, ip, device})
    (:Access)-[:FROM]->(:Region {ns, name})
    (:Access)-[:VIA_IP]->(:IP {ns, value})          only when the login has an IP
    (:Access)-[:ON_DEVICE]->(:Device {ns, value})   only when it has a device
    (:Alert {ns, key, kind, at, ...})-[:ABOUT]->(:Student | :IP | :Device), -[:EVIDENCE]->(:Access)

Namespaces. Neo4j Community has one database, so the namespace (``settings.neo4j_namespace``) is
data: every node carries it as ``ns`` and every query, write and delete names ``$ns``. Uniqueness
holds per namespace through composite constraints ``REQUIRE (n.ns, n.<id>) IS UNIQUE``: verified on
Community 5.26 that they are accepted and enforced (a duplicate (ns, id) pair is rejected, the same
id in another ns is not), so no "<ns>|<id>" key property is needed. The global constraints of the
earlier single-namespace model would refuse the same student in two namespaces: ensure_schema drops them.

Writes are MERGEs on those keys in ``UNWIND $rows`` batches, one transaction each, so publishing the
same logins again changes nothing; a corrected login (other region, IP, device or student) has its
stale relationships replaced. Every value, the namespace included, is a Cypher parameter; only
labels and relationship types, which are constants of this module, are ever part of a query's text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterable, Mapping

from learntrack import faults
from learntrack.batches import chunks
from learntrack.intervals import UTC, to_utc
from learntrack.settings import Settings

# Every label and the property that, with ns, identifies a node of it (a composite uniqueness constraint).
KEYS = {"Alert": "key", "Access": "event_id", "Student": "student_id", "Region": "name",
        "IP": "value", "Device": "value"}
# Per kind of shared value: its node label and the relationship an Access reaches it by.
SHARED = {"ip": ("IP", "VIA_IP"), "device": ("Device", "ON_DEVICE")}

SCHEMA = (
    # The single-namespace model's global constraints: they would refuse one student id in two namespaces.
    "DROP CONSTRAINT student_id IF EXISTS",
    "DROP CONSTRAINT region_name IF EXISTS",
    "DROP CONSTRAINT access_event IF EXISTS",
    "DROP INDEX access_at IF EXISTS",
    *(f"CREATE CONSTRAINT ns_{label.lower()} IF NOT EXISTS FOR (n:{label}) REQUIRE (n.ns, n.{key}) IS UNIQUE"
      for label, key in KEYS.items()),
    "CREATE INDEX ns_access_at IF NOT EXISTS FOR (n:Access) ON (n.ns, n.at)",
    "CREATE INDEX ns_alert_at IF NOT EXISTS FOR (n:Alert) ON (n.ns, n.at)",
)

MERGE_ACCESS = """
UNWIND $rows AS row
MERGE (s:Student {ns: $ns, student_id: row.student_id})
MERGE (r:Region {ns: $ns, name: row.region})
MERGE (a:Access {ns: $ns, event_id: row.event_id})
SET a.at = row.at, a.country = row.country, a.ip = row.ip, a.device = row.device
WITH row, s, r, a
CALL (row, s, r, a) {
  MATCH (a)-[x:HAD|FROM|VIA_IP|ON_DEVICE]-(n)
  WHERE NOT (n = s OR n = r OR (n:IP AND row.ip IS NOT NULL AND n.value = row.ip)
             OR (n:Device AND row.device IS NOT NULL AND n.value = row.device))
  DELETE x
}
MERGE (s)-[:HAD]->(a)
MERGE (a)-[:FROM]->(r)
FOREACH (v IN CASE WHEN row.ip IS NULL THEN [] ELSE [row.ip] END |
  MERGE (i:IP {ns: $ns, value: v}) MERGE (a)-[:VIA_IP]->(i))
FOREACH (v IN CASE WHEN row.device IS NULL THEN [] ELSE [row.device] END |
  MERGE (d:Device {ns: $ns, value: v}) MERGE (a)-[:ON_DEVICE]->(d))
"""

# Ties in time are ordered by event_id, so two simultaneous accesses make exactly one pair.
MULTI_REGION = """
MATCH (a1:Access {ns: $ns}) WHERE a1.at >= $since AND a1.at < $until
MATCH (s:Student {ns: $ns})-[:HAD]->(a1)-[:FROM]->(r1:Region)
MATCH (s)-[:HAD]->(a2:Access)-[:FROM]->(r2:Region)
WHERE r2 <> r1 AND a2.at >= a1.at AND a2.at <= a1.at + duration({minutes: $window_minutes})
  AND (a2.at > a1.at OR a2.event_id > a1.event_id)
RETURN s.student_id AS student_id,
       a1.event_id AS first_event_id, r1.name AS first_region, a1.at AS first_at, a1.ip AS first_ip,
       a2.event_id AS second_event_id, r2.name AS second_region, a2.at AS second_at, a2.ip AS second_ip,
       duration.inSeconds(a1.at, a2.at).milliseconds / 60000.0 AS gap_minutes
ORDER BY student_id, first_at, first_event_id, second_at, second_event_id
"""

# Every access has one student, so a value with fewer accesses on a day than $min_students cannot
# qualify: the lists are collected only for the values that can. Collecting them for every value
# held every access's ids at once (792k logins in a seed-scale day: over Neo4j's transaction memory
# limit); the counts per (value, day) are small.
SHARED_QUERY = """
MATCH (a:Access {ns: $ns}) WHERE a.at >= $since AND a.at < $until
MATCH (a)-[:%(rel)s]->(v:%(label)s)
WITH v, date(datetime({datetime: a.at, timezone: 'UTC'})) AS event_date, count(*) AS accesses
WHERE accesses >= $min_students
CALL (v, event_date) {
  MATCH (s:Student)-[:HAD]->(a:Access)-[:%(rel)s]->(v)
  WHERE a.ns = $ns AND a.at >= $since AND a.at < $until
    AND date(datetime({datetime: a.at, timezone: 'UTC'})) = event_date
  WITH collect(DISTINCT s.student_id) AS student_ids, collect(a.event_id) AS event_ids
  WHERE size(student_ids) >= $min_students
  RETURN student_ids, event_ids
}
RETURN event_date, v.value AS value, student_ids, event_ids
ORDER BY event_date, value
"""

# Alerts of the re-detected range that the new detection did not raise again, $limit at a time.
DROP_STALE_ALERTS = """
MATCH (al:Alert {ns: $ns}) WHERE al.at >= $since AND al.at < $until
  AND al.kind IN $kinds AND NOT al.key IN $keep
WITH al LIMIT $limit
DETACH DELETE al
RETURN count(*) AS dropped
"""

# One alert per row, linked to what it is about and to exactly its evidence (stale links removed).
MERGE_ALERTS = """
UNWIND $rows AS row
MATCH %(about)s
MERGE (al:Alert {ns: $ns, key: row.key})
SET al += row.props
WITH row, t, al
CALL (row, t, al) {
  MATCH (al)-[x:ABOUT|EVIDENCE]->(n)
  WHERE NOT (n = t OR (n:Access AND n.event_id IN row.evidence))
  DELETE x
}
MERGE (al)-[:ABOUT]->(t)
WITH row, al
CALL (row, al) {
  UNWIND row.evidence AS eid
  MATCH (a:Access {ns: $ns, event_id: eid})
  MERGE (al)-[:EVIDENCE]->(a)
}
"""
ABOUT = {"multi_region": "(t:Student {ns: $ns, student_id: row.about})",
         "ip": "(t:IP {ns: $ns, value: row.about})", "device": "(t:Device {ns: $ns, value: row.about})"}


def connect(settings: Settings):
    from neo4j import GraphDatabase

    auth = (settings.neo4j_user, settings.neo4j_password) if settings.neo4j_user else None
    return GraphDatabase.driver(settings.neo4j_uri, auth=auth)


def ensure_schema(driver) -> None:
    """Constraints before the first write: a MERGE without its unique index scans the label."""
    for stmt in SCHEMA:
        driver.execute_query(stmt)


def publish_access(settings: Settings, rows: Iterable[Mapping], batch: int = 2000) -> dict:
    """MERGE login rows (event_id, student_id, region, country, ip, device, event_time) into the
    graph, one transaction per batch. A naive event_time is the host's local time (Spark's)."""
    driver = connect(settings)
    try:
        ensure_schema(driver)
        n = 0
        for chunk in chunks((_access_row(r) for r in rows), batch):
            driver.execute_query(MERGE_ACCESS, rows=chunk, ns=settings.neo4j_namespace)
            n += len(chunk)
            faults.point(settings, "neo4j.batch_written")
        if not n:
            faults.point(settings, "neo4j.batch_written")
        return {"access_events": n}
    finally:
        driver.close()


def multi_region_pairs(settings: Settings, since: dt.datetime, until: dt.datetime,
                       window_minutes: int | None = None) -> list[dict]:
    """Pairs of one student's accesses from two regions, the second at most window minutes (inclusive)
    after the first, the first in [since, until). first_at/second_at are neo4j DateTimes."""
    with _session(settings) as session:
        return session.execute_read(lambda tx: _multi_region(tx, settings, since, until, window_minutes))


def shared_access(settings: Settings, since: dt.datetime, until: dt.datetime,
                  min_students: int | None = None) -> list[dict]:
    """IPs and devices used by at least min_students distinct students on one UTC day, counting the
    accesses in [since, until)."""
    with _session(settings) as session:
        rows = session.execute_read(lambda tx: _shared(tx, settings, since, until, min_students))
    return [_without_ids(r) for r in rows]


def detect_and_record(settings: Settings, since: dt.datetime, until: dt.datetime, batch: int = 1000) -> dict:
    """Run both checks and make the (:Alert) nodes of the range exactly what they find: new alerts
    are merged, alerts whose evidence no longer qualifies are removed. Multi-region alerts belong
    to the range by their first access; sharing is judged per whole UTC day, so its range is
    widened to the days [since, until) touches.

    The writes go ``batch`` alerts to a transaction (a seed-scale day raises 23k multi-region
    alerts: one transaction broke Neo4j's transaction memory limit). Merging first and dropping the
    stale ones after, each batch idempotent, a failure part-way leaves extra alerts, never missing
    ones, and the retried publish (the ledger records it only when this returns) converges."""
    days = (_day_floor(since), _day_floor(_utc(until) - dt.timedelta(microseconds=1)) + dt.timedelta(days=1))
    ns = settings.neo4j_namespace

    with _session(settings, schema=True) as session:
        pairs = session.execute_read(lambda tx: _multi_region(tx, settings, since, until, None))
        shared = session.execute_read(lambda tx: _shared(tx, settings, *days, None))
        alerts = _alert_rows(pairs, shared)
        for about, template in ABOUT.items():
            for rows in chunks((r for r in alerts if r["about_kind"] == about), batch):
                session.execute_write(lambda tx, q=MERGE_ALERTS % {"about": template}, rows=rows:
                                      tx.run(q, ns=ns, rows=rows).consume())
        for kinds, (lo, hi) in ((["multi_region"], (_utc(since), _utc(until))),
                                ([f"shared_{k}" for k in SHARED], days)):
            keep = [r["key"] for r in alerts if r["props"]["kind"] in kinds]
            while session.execute_write(lambda tx: tx.run(DROP_STALE_ALERTS, ns=ns, since=lo, until=hi, kinds=kinds,
                                                          keep=keep, limit=batch).single()["dropped"]):
                pass
    return {"multi_region": pairs, "shared_access": [_without_ids(s) for s in shared]}


def clear_namespace(settings: Settings, chunk: int = 10_000) -> int:
    """Delete every node of the namespace (and its relationships), in bounded transactions; other
    namespaces are untouched. Returns the number of nodes deleted."""
    driver = connect(settings)
    try:
        deleted = 0
        for label, key in KEYS.items():  # "key IS NOT NULL" lets the (ns, key) constraint's index serve
            while n := driver.execute_query(
                    f"MATCH (n:{label}) WHERE n.ns = $ns AND n.{key} IS NOT NULL "
                    "WITH n LIMIT $chunk DETACH DELETE n RETURN count(*) AS n",
                    ns=settings.neo4j_namespace, chunk=chunk).records[0]["n"]:
                deleted += n
        return deleted
    finally:
        driver.close()


# ------------------------------------------------------------------------------------ helpers
def _multi_region(tx, settings: Settings, since, until, window_minutes) -> list[dict]:
    window = settings.multi_region_window_minutes if window_minutes is None else window_minutes
    return [r.data() for r in tx.run(MULTI_REGION, ns=settings.neo4j_namespace, since=_utc(since),
                                     until=_utc(until), window_minutes=window)]


def _shared(tx, settings: Settings, since, until, min_students) -> list[dict]:
    least = settings.shared_access_min_students if min_students is None else min_students
    out = []
    for kind in settings.shared_access_kind_list:  # ``device`` only where events carry device ids
        label, rel = SHARED[kind]
        for r in tx.run(SHARED_QUERY % {"label": label, "rel": rel}, ns=settings.neo4j_namespace,
                        since=_utc(since), until=_utc(until), min_students=least):
            ids = sorted(r["student_ids"])
            out.append({"event_date": r["event_date"].to_native(), "kind": kind, "value": r["value"],
                        "students": len(ids), "student_ids": ids, "event_ids": sorted(r["event_ids"])})
    return sorted(out, key=lambda s: (s["event_date"], s["kind"], s["value"]))


def _alert_rows(pairs: list[dict], shared: list[dict]) -> list[dict]:
    """One row per alert: its key, what it is about, its evidence (event ids) and its properties."""
    rows = [{"key": f"multi_region|{p['first_event_id']}|{p['second_event_id']}", "about_kind": "multi_region",
             "about": p["student_id"], "evidence": [p["first_event_id"], p["second_event_id"]],
             "props": {"kind": "multi_region", "at": p["first_at"], "student_id": p["student_id"],
                       "first_region": p["first_region"], "second_region": p["second_region"],
                       "gap_minutes": p["gap_minutes"]}} for p in pairs]
    rows += [{"key": f"shared_{s['kind']}|{s['event_date'].isoformat()}|{s['value']}", "about_kind": s["kind"],
              "about": s["value"], "evidence": s["event_ids"],
              "props": {"kind": f"shared_{s['kind']}", "at": dt.datetime.combine(s["event_date"], dt.time(), UTC),
                        "day": s["event_date"], "value": s["value"], "students": s["students"],
                        "student_ids": s["student_ids"]}} for s in shared]
    return rows


def _without_ids(shared_row: dict) -> dict:
    return {k: v for k, v in shared_row.items() if k != "event_ids"}


@contextlib.contextmanager
def _session(settings: Settings, schema: bool = False):
    """One driver and one session on it, closed together; schema=True ensures constraints first."""
    driver = connect(settings)
    try:
        if schema:
            ensure_schema(driver)
        with driver.session() as session:
            yield session
    finally:
        driver.close()


def _access_row(row: Mapping) -> dict:
    return {"event_id": row["event_id"], "student_id": row["student_id"], "region": row["region"],
            "country": row.get("country"), "at": _utc(row["event_time"]),
            "ip": row.get("ip") or None, "device": row.get("device") or None}  # blank: none


def _utc(value: dt.datetime) -> dt.datetime:
    return to_utc(value)  # rows come from Spark: naive means the host's local time


def _day_floor(value: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(_utc(value).date(), dt.time(), UTC)
