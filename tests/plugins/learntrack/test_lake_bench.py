"""``bench stages`` replays silver..gate_gold from a lake put back to "after extraction": the reset
must empty every silver and gold table and the ledger, and leave bronze exactly as it was."""

import pyarrow as pa


def write(table, lake, rows: int, versions: int) -> None:
    """``versions`` commits: the empty table first (as ``ensure_table`` creates it), then appends."""
    from deltalake import write_deltalake

    schema = table.arrow_schema()
    path = table.path(lake)
    write_deltalake(path, schema.empty_table(), partition_by=list(table.partition_by) or None)
    for _ in range(versions - 1):
        data = pa.table({f.name: pa.array([filler(f.type)] * rows, f.type) for f in schema}, schema=schema)
        write_deltalake(path, data, mode="append", partition_by=list(table.partition_by) or None)


def filler(kind: pa.DataType):
    import datetime as dt

    if pa.types.is_string(kind):
        return "x"
    if pa.types.is_integer(kind):
        return 1
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return 1
    if pa.types.is_timestamp(kind):
        return dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    if pa.types.is_date(kind):
        return dt.date(2026, 3, 1)
    if pa.types.is_boolean(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [filler(kind.value_type)]
    return None  # maps: nullable in every declaration


def count(table, lake) -> tuple[int, int]:
    from deltalake import DeltaTable

    delta = DeltaTable(table.path(lake))
    return delta.to_pyarrow_table().num_rows, delta.version()


def test_reset_to_bronze_empties_silver_gold_and_the_ledger_and_keeps_bronze(tmp_path, base_settings):
    from lake.tables import BRONZE_ACTIVITIES, GOLD_COURSE_DAILY, SILVER_ACTIVITIES, SILVER_STUDENTS, STAGE_LEDGER
    from learntrack.lake_bench import reset_to_bronze

    lake = str(tmp_path / "lake")
    write(BRONZE_ACTIVITIES, lake, rows=3, versions=3)
    write(SILVER_ACTIVITIES, lake, rows=2, versions=2)
    write(GOLD_COURSE_DAILY, lake, rows=4, versions=3)
    write(SILVER_STUDENTS, lake, rows=0, versions=1)  # never written since its creation
    write(STAGE_LEDGER, lake, rows=1, versions=2)

    restored = reset_to_bronze(base_settings, lake)

    assert sorted(restored) == sorted([SILVER_ACTIVITIES.qualified, GOLD_COURSE_DAILY.qualified])
    assert count(SILVER_ACTIVITIES, lake)[0] == 0 and count(GOLD_COURSE_DAILY, lake)[0] == 0
    assert count(SILVER_STUDENTS, lake) == (0, 0)
    assert count(BRONZE_ACTIVITIES, lake) == (6, 2)  # untouched: two appends of three rows
    assert not (tmp_path / "lake" / "ops" / "stage_ledger").exists()
