"""Neo4j: the access graph and the multi-region Cypher query.

(:Student {student_id})-[:HAD]->(:Access {event_id, at, ip, device})-[:FROM]->(:Region {name})
Every write is a MERGE on a uniquely constrained key (event_id, student_id, region name), so
re-publishing the same logins changes nothing. All values travel as Cypher parameters.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping

from learntrack import faults
from learntrack.settings import Settings

CONSTRAINTS = (
    "CREATE CONSTRAINT student_id IF NOT EXISTS FOR (s:Student) REQUIRE s.student_id IS UNIQUE",
    "CREATE CONSTRAINT region_name IF NOT EXISTS FOR (r:Region) REQUIRE r.name IS UNIQUE",
    "CREATE CONSTRAINT access_event IF NOT EXISTS FOR (a:Access) REQUIRE a.event_id IS UNIQUE",
    "CREATE INDEX access_at IF NOT EXISTS FOR (a:Access) ON (a.at)",
)

MERGE_ACCESS = """
UNWIND $rows AS row
MERGE (s:Student {student_id: row.student_id})
MERGE (r:Region {name: row.region})
MERGE (a:Access {event_id: row.event_id})
SET a.at = row.at, a.ip = row.ip, a.device = row.device, a.country = row.country
MERGE (s)-[:HAD]->(a)
MERGE (a)-[:FROM]->(r)
"""

MULTI_REGION = """
MATCH (s:Student)-[:HAD]->(a1:Access)-[:FROM]->(r1:Region)
WHERE a1.at >= $since AND a1.at < $until
MATCH (s)-[:HAD]->(a2:Access)-[:FROM]->(r2:Region)
WHERE r2 <> r1 AND (a2.at > a1.at OR (a2.at = a1.at AND a2.event_id > a1.event_id))
  AND a2.at <= a1.at + duration({minutes: $window_minutes})
RETURN s.student_id AS student_id, a1.event_id AS first_event_id, r1.name AS first_region, a1.at AS first_at,
       a2.event_id AS second_event_id, r2.name AS second_region, a2.at AS second_at
ORDER BY student_id, first_at, second_at
"""


def connect(settings: Settings):
    from neo4j import GraphDatabase

    auth = (settings.neo4j_user, settings.neo4j_password) if settings.neo4j_user else None
    return GraphDatabase.driver(settings.neo4j_uri, auth=auth)


def ensure_schema(driver) -> None:
    for stmt in CONSTRAINTS:
        driver.execute_query(stmt)


def publish_access(settings: Settings, rows: Iterable[Mapping], batch: int = 2000) -> dict:
    driver = connect(settings)
    try:
        ensure_schema(driver)
        buf: list[dict] = []
        n = 0
        for row in rows:
            buf.append({"student_id": row["student_id"], "region": row["region"], "event_id": row["event_id"],
                        "at": _utc(row["event_time"]), "ip": row.get("ip"), "device": row.get("device"),
                        "country": row.get("country")})
            if len(buf) >= batch:
                driver.execute_query(MERGE_ACCESS, rows=buf)
                n += len(buf)
                buf = []
        if buf:
            driver.execute_query(MERGE_ACCESS, rows=buf)
            n += len(buf)
        faults.point(settings, "neo4j.batch_written")
        return {"access_events": n}
    finally:
        driver.close()


def multi_region_pairs(settings: Settings, since: dt.datetime, until: dt.datetime,
                       window_minutes: int | None = None) -> list[dict]:
    """Pairs of accesses by one student from two regions within the window; the first access
    falls in [since, until)."""
    driver = connect(settings)
    try:
        records, _, _ = driver.execute_query(
            MULTI_REGION, since=_utc(since), until=_utc(until),
            window_minutes=window_minutes or settings.multi_region_window_minutes)
        return [r.data() for r in records]
    finally:
        driver.close()


def _utc(value: dt.datetime) -> dt.datetime:
    from learntrack.intervals import to_utc

    return to_utc(value)  # rows come from Spark: naive means the host's local time
