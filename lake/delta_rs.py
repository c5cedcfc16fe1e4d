"""The lake without a JVM: declared tables read as Arrow, and small writes, through delta-rs.

The publish stages only read gold (and silver's logins) and record their completion in the stage
ledger; doing that through delta-rs spares each publish task a JVM and a SparkSession (10–20 s per
task process under Airflow, and several Spark jobs per table in-process). The same store and
credentials as Spark's come from ``lake.storage``. Spark and delta-rs write the same Delta
protocol; tables stay readable by both (no deletion vectors, no column mapping: ADR 30).
"""

from __future__ import annotations

from typing import Any, Iterator

from lake import storage


def exists(settings, table) -> bool:
    return storage.is_delta_table(settings, table.path(settings.lake_uri))


def dataset(settings, table):
    """The table's current version as a ``pyarrow.dataset`` (partition filters prune files)."""
    return storage.open_delta(settings, table.path(settings.lake_uri)).to_pyarrow_dataset()


def scan(settings, table, where=None, columns: list[str] | None = None):
    """The rows matching ``where`` (a ``pyarrow.dataset`` expression) as an Arrow table; the
    declared schema with no rows when the table has not been written yet."""
    if not exists(settings, table):
        schema = table.arrow_schema()
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    return dataset(settings, table).to_table(filter=where, columns=columns)


def rows(settings, table, where=None, columns: list[str] | None = None,
         batch_rows: int = 20_000) -> Iterator[dict[str, Any]]:
    """The rows as dicts, streamed one record batch at a time (maps as dicts, timestamps as aware
    UTC datetimes, as the sinks take them)."""
    if not exists(settings, table):
        return
    for batch in dataset(settings, table).to_batches(filter=where, columns=columns, batch_size=batch_rows):
        yield from batch.to_pylist(maps_as_pydicts="strict")


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

    path = table.path(settings.lake_uri)
    local = storage.local_path(path)
    uri = local if local is not None else path
    if not exists(settings, table):
        DeltaTable.create(uri, schema=table.arrow_schema(), mode="ignore",
                          partition_by=list(table.partition_by) or None, storage_options=write_options(settings))
    return DeltaTable(uri, storage_options=write_options(settings))
