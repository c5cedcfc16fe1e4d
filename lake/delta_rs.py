"""The lake without a JVM: declared tables read as Arrow, and appends and small writes, through delta-rs.

The publish stages only read gold (and silver's logins) and record their completion in the stage
ledger, and extraction appends Arrow chunks to bronze; doing that through delta-rs spares each of
those task processes a JVM and a SparkSession (10–20 s per task process under Airflow, and several
Spark jobs per table in-process, with each chunk shipped to the JVM inside a task: ADR 32). The same store and
credentials as Spark's come from ``lake.storage``. Spark and delta-rs write the same Delta
protocol; tables stay readable by both (no deletion vectors, no column mapping: ADR 30).
"""

from __future__ import annotations

from typing import Any, Iterator

from lake import storage


def open_table(settings, table):
    """The table's delta-rs ``DeltaTable``, or None when it has not been written yet: one read of
    the Delta log (on an object store, a separate existence check would read it twice)."""
    from deltalake.exceptions import TableNotFoundError

    try:
        return storage.open_delta(settings, table.path(settings.lake_uri))
    except TableNotFoundError:
        return None


def partition_values(delta, column: str) -> list[str]:
    """The distinct values of partition column ``column`` in ``delta`` (an ``open_table``), read from
    the Delta log (no data file is opened), sorted; empty for None (a table not written yet)."""
    if delta is None:
        return []
    return sorted({str(p[column]) for p in delta.partitions() if p.get(column) is not None})


def scan(settings, table, where=None, columns: list[str] | None = None):
    """The rows matching ``where`` (a ``pyarrow.dataset`` expression) as an Arrow table; the
    declared schema with no rows when the table has not been written yet."""
    delta = open_table(settings, table)
    if delta is None:
        schema = table.arrow_schema()
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    return delta.to_pyarrow_dataset().to_table(filter=where, columns=columns)


def arrow_rows(batches) -> Iterator[dict[str, Any]]:
    """Arrow record batches as dicts, the way the sinks take them: maps as dicts, timestamps as
    aware UTC datetimes."""
    for batch in batches:
        yield from batch.to_pylist(maps_as_pydicts="strict")


def rows(settings, table, where=None, columns: list[str] | None = None,
         batch_rows: int = 20_000) -> Iterator[dict[str, Any]]:
    """The rows as dicts (``arrow_rows``), streamed one record batch at a time."""
    delta = open_table(settings, table)
    if delta is None:
        return
    yield from arrow_rows(delta.to_pyarrow_dataset().to_batches(filter=where, columns=columns,
                                                                batch_size=batch_rows))


def write_options(settings) -> dict[str, str] | None:
    """Storage options for a delta-rs *commit*. S3 has no atomic rename: delta-rs commits there with
    a conditional PUT (``If-None-Match: *``, which AWS S3, s3proxy, MinIO and R2 honour), so
    concurrent delta-rs writers (the three publishes recording their completion) cannot overwrite
    each other's commit. ADLS needs nothing."""
    opts = storage.delta_rs_options(settings)
    if storage.scheme(settings.lake_uri) in storage.S3_SCHEMES:
        opts = {**opts, "AWS_CONDITIONAL_PUT": "etag"}
    return opts or None


def open_for_write(settings, table):
    """The delta-rs table, created from its declaration first when it does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    path = table.path(settings.lake_uri)
    local = storage.local_path(path)
    uri = local if local is not None else path
    options = write_options(settings)
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:  # created by the first writer; "ignore" lets a racing one's stand
        DeltaTable.create(uri, schema=table.arrow_schema(), mode="ignore",
                          partition_by=list(table.partition_by) or None, storage_options=options)
        return DeltaTable(uri, storage_options=options)


def append(delta, data) -> None:
    """One Delta commit appending ``data`` (Arrow, in the table's declared schema) to ``delta`` (an
    ``open_for_write``), which then describes the table as of that commit."""
    from deltalake import write_deltalake

    write_deltalake(delta, data, mode="append")
