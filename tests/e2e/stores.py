"""The stores as the end-to-end tests see them: a snapshot of the lake and every sink, and a reset
of the tests' namespaces."""

from __future__ import annotations


def reset_namespaces(settings) -> None:
    """Empty the test namespaces: lake and Airflow home folders, the MongoDB database, the Redis db,
    the Cassandra keyspace and the Neo4j namespace."""
    from cassandra.cluster import Cluster

    from conftest import wipe_home_dirs
    from learntrack.mongo_ops import client
    from learntrack.sinks import neo4j_sink, redis_sink

    wipe_home_dirs(settings)
    mongo = client(settings)
    mongo.drop_database(settings.mongo_db)
    mongo.close()
    redis_sink.connect(settings).flushdb()
    cluster = Cluster([settings.stack_host], port=settings.cassandra_port, protocol_version=5)
    cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=60)
    cluster.shutdown()
    neo4j_sink.clear_namespace(settings)


#: When a row was extracted: differs between any two runs that extract the same documents.
LINEAGE = ("extracted_at",)


def lake_rows(settings, spark, skip: tuple[str, ...] = LINEAGE) -> dict[str, list[str]]:
    """Every data table's rows, sorted, without the ``skip`` columns: what two runs over the same
    source must agree on."""
    from lake.delta import read_table
    from lake.tables import DATA_TABLES

    out = {}
    for table in DATA_TABLES:
        columns = [c for c in table.column_names if c not in skip]
        rows = read_table(spark, table, settings.lake_uri).select(*columns).collect()
        out[table.qualified] = sorted(repr([sorted(v.items()) if isinstance(v, dict) else v for v in r])
                                      for r in rows)
    return out


def lake_rows_read_by_delta_rs(settings, skip: tuple[str, ...] = LINEAGE) -> dict[str, list[str]]:
    """``lake_rows`` read without Spark, by delta-rs (wherever the lake lives: ``lake.storage``):
    what analysts' DuckDB sees, and a check of Spark's writes from outside."""
    import pyarrow as pa

    from lake.storage import open_delta
    from lake.tables import DATA_TABLES

    out = {}
    for table in DATA_TABLES:
        columns = [c for c in table.column_names if c not in skip]
        data = open_delta(settings, table.path(settings.lake_uri)).to_pyarrow_table(columns=columns)
        maps = {i for i, f in enumerate(data.schema) if pa.types.is_map(f.type)}
        out[table.qualified] = sorted(repr([sorted(v) if i in maps and v is not None else v
                                            for i, v in enumerate(row.values())]) for row in data.to_pylist())
    return out


def snapshot(settings, spark):
    from cassandra.cluster import Cluster

    from lake.delta import read_table
    from lake.tables import DATA_TABLES
    from learntrack.sinks import neo4j_sink, redis_sink

    snap = {}
    for table in DATA_TABLES:
        df = read_table(spark, table, settings.lake_uri)
        snap[table.qualified] = sorted(tuple(str(v) for v in r) for r in df.collect())
    cluster = Cluster([settings.stack_host], port=settings.cassandra_port, protocol_version=5)
    try:
        session = cluster.connect(settings.cassandra_keyspace)
        from learntrack.sinks.cassandra_schema import DAY_TABLES

        for t in [t.name for t in DAY_TABLES] + ["published_keys", "published_keys_by_bucket"]:
            snap[t] = sorted(tuple(str(v) for v in r) for r in session.execute(f"SELECT * FROM {t}"))
    finally:
        cluster.shutdown()
    r = redis_sink.connect(settings)
    read = {"zset": lambda k: r.zrange(k, 0, -1, withscores=True), "hash": r.hgetall,
            "set": lambda k: sorted(r.smembers(k)), "string": r.get}
    snap["redis"] = {k: (r.type(k), str(read[r.type(k)](k))) for k in r.scan_iter(f"{settings.redis_prefix}:*")}
    driver = neo4j_sink.connect(settings)
    try:
        ns = {"ns": settings.neo4j_namespace}
        recs, _, _ = driver.execute_query(
            "MATCH (s:Student {ns: $ns})-[:HAD]->(a:Access)-[:FROM]->(r:Region) "
            "RETURN s.student_id AS s, a.event_id AS e, toString(a.at) AS at, r.name AS r ORDER BY e", ns)
        snap["neo4j_paths"] = [tuple(x.values()) for x in recs]
        recs, _, _ = driver.execute_query(
            "MATCH (al:Alert {ns: $ns}) RETURN al.key AS k, al.kind AS kind ORDER BY k", ns)
        snap["neo4j_alerts"] = [tuple(x.values()) for x in recs]
        recs, _, _ = driver.execute_query("MATCH (n {ns: $ns}) RETURN count(n) AS n", ns)
        snap["neo4j_nodes"] = recs[0]["n"]
        recs, _, _ = driver.execute_query("MATCH (n {ns: $ns})-[x]->() RETURN count(x) AS n", ns)
        snap["neo4j_rels"] = recs[0]["n"]
    finally:
        driver.close()
    return snap
