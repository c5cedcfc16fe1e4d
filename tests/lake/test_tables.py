from pathlib import Path

from lake.docs import render
from lake.tables import ALL_TABLES

ROOT = Path(__file__).resolve().parents[2]


def test_docs_tables_md_is_generated_from_the_declarations():
    assert (ROOT / "docs" / "tables.md").read_text() == render(), "run: python -m lake.docs > docs/tables.md"


def test_every_table_declares_keys_that_are_columns_and_not_nullable():
    names = set()
    for t in ALL_TABLES:
        assert t.qualified not in names
        names.add(t.qualified)
        cols = {c.name: c for c in t.columns}
        for k in (*t.keys, *t.partition_by):
            assert k in cols and not cols[k].nullable, (t.qualified, k)
        assert t.spark_schema().fieldNames() == t.column_names


def test_every_arrow_schema_is_the_spark_schema():
    """An Arrow batch built from ``arrow_schema`` lands in Spark with the declared types."""
    from pyspark.sql.pandas.types import from_arrow_schema

    for t in ALL_TABLES:
        assert from_arrow_schema(t.arrow_schema()) == t.spark_schema(), t.qualified
