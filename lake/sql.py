"""SQL on the lake by table name (``learntrack sql``), for analysts who have no SparkSession.

Every declared table (``lake.tables``) is queryable as ``layer.name`` (``gold.course_daily_engagement``,
``silver.activities`` ...). Time travel: ``gold.x VERSION AS OF 3`` or
``gold.x TIMESTAMP AS OF '2026-11-22 08:00:00'`` after a table name, in either engine.

Two engines, one result shape (an Arrow table):
- **DuckDB** (the default for a lake delta-rs reads: a local path, ``file://``, ``s3a://``,
  ``abfss://`` with the credentials of ``lake.storage``): each table is read through delta-rs
  (``deltalake``), i.e. the committed Delta snapshot Spark would see, without a JVM.
  Only the tables a query names are opened. Measured in docs/benchmarks.md ("SQL engines").
- **Spark SQL** (the fallback for URIs delta-rs is not configured for, e.g. ``gs://``; or
  ``--engine spark``): the same names, rewritten to Delta path references
  (``delta.`<path>```) so that no session-catalog entry can point at another lake, with Spark's own
  ``VERSION AS OF``. Qualify columns by an alias (``FROM gold.x AS g ... g.col``), not by the
  table name.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any

from lake import storage
from lake.tables import ALL_TABLES, Table

LAYERS = ("bronze", "silver", "gold")
_BY_NAME = {t.qualified: t for t in ALL_TABLES}
_TABLE_REF = re.compile(r"\b(bronze|silver|gold)\s*\.\s*(\w+)", re.IGNORECASE)
_TIME_TRAVEL = re.compile(r"\b(bronze|silver|gold)\s*\.\s*(\w+)\s+(VERSION|TIMESTAMP)\s+AS\s+OF\s+(\d+|'[^']*')",
                          re.IGNORECASE)


class LakeSQLError(Exception):
    """A query the lake cannot answer, with the reason in words (unknown table, table not built yet...)."""


@dataclass
class QueryResult:
    table: Any  # pyarrow.Table
    engine: str
    seconds: float

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def rows(self) -> list[tuple]:
        cols = [self.table.column(i).to_pylist() for i in range(self.table.num_columns)]
        return list(zip(*cols))


def referenced_tables(sql: str) -> list[Table]:
    """The declared tables a query names (unknown ``layer.name`` references are an error)."""
    out: list[Table] = []
    for layer, name in _TABLE_REF.findall(sql):
        key = f"{layer.lower()}.{name.lower()}"
        if key not in _BY_NAME:
            known = ", ".join(sorted(k for k in _BY_NAME if k.startswith(layer.lower() + ".")))
            raise LakeSQLError(f"no table {key} in the lake; {layer.lower()} has: {known}")
        if _BY_NAME[key] not in out:
            out.append(_BY_NAME[key])
    return out


def default_engine(lake_uri: str) -> str:
    """DuckDB wherever delta-rs reads the lake (a local folder, S3, ADLS: ``lake.storage``), else Spark."""
    return "duckdb" if storage.delta_rs_readable(lake_uri) else "spark"


class LakeSQL:
    """A connection to the lake by table name; keeps its engine open across queries (the shell)."""

    def __init__(self, settings, engine: str = "auto"):
        self.settings = settings
        self.lake = settings.lake_uri
        self.engine = default_engine(self.lake) if engine == "auto" else engine
        if self.engine not in ("duckdb", "spark"):
            raise LakeSQLError(f"unknown engine {engine!r} (duckdb, spark or auto)")
        self._con = None
        self._spark = None
        self._views: set[str] = set()

    # ----------------------------------------------------------------------------- DuckDB
    def _duck(self):
        if self._con is None:
            import duckdb

            self._con = duckdb.connect()
            self._con.execute("SET TimeZone = 'UTC'")
            for layer in LAYERS:
                self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        return self._con

    def _delta(self, table: Table, version: int | None = None, timestamp: str | None = None):
        from deltalake.exceptions import TableNotFoundError

        path = table.path(self.lake)
        try:
            delta = storage.open_delta(self.settings, path, version=version)
            if timestamp is not None:
                when = dt.datetime.fromisoformat(timestamp)
                delta.load_as_version(when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc))
        except TableNotFoundError:
            raise LakeSQLError(f"{table.qualified} has not been written yet in the lake at {self.lake} "
                               f"(run the pipeline first)") from None
        except Exception as exc:  # a version or timestamp outside the table's history
            if version is None and timestamp is None:
                raise
            latest = storage.open_delta(self.settings, path).version()
            raise LakeSQLError(f"{table.qualified} has versions 0..{latest}; "
                               f"AS OF {version if version is not None else timestamp} is outside them ({exc})") from None
        return delta.to_pyarrow_dataset()

    def _register(self, table: Table, view: str, **as_of) -> None:
        if view in self._views and not as_of:
            return
        con = self._duck()
        source = "_src_" + re.sub(r"\W", "_", view)
        con.register(source, self._delta(table, **as_of))
        con.execute(f'CREATE OR REPLACE VIEW {table.layer}."{view.split(".", 1)[1]}" AS SELECT * FROM {source}')
        self._views.add(view)

    def _run_duckdb(self, sql: str):
        def travel(match: re.Match) -> str:
            layer, name, kind, value = match.groups()
            table = referenced_tables(f"{layer}.{name}")[0]
            value = value.strip("'")
            tag = f"v{value}" if kind.upper() == "VERSION" else "t" + re.sub(r"\W", "", value)
            view = f"{table.qualified}@{tag}"
            self._register(table, view, **({"version": int(value)} if kind.upper() == "VERSION" else {"timestamp": value}))
            return f'{table.layer}."{table.name}@{tag}"'

        for table in referenced_tables(_TIME_TRAVEL.sub("", sql)):
            self._register(table, table.qualified)
        sql = _TIME_TRAVEL.sub(travel, sql)
        import duckdb

        try:
            return self._duck().sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise LakeSQLError(f"DuckDB: {exc}") from None

    # ----------------------------------------------------------------------------- Spark
    def _run_spark(self, sql: str):
        from pyspark.errors import PySparkException

        from lake.spark import spark_session

        if self._spark is None:
            self._spark = spark_session(self.settings, app_name="learntrack-sql")
        spark = self._spark
        # Names become path references in the query text, not session-catalog tables: the catalog
        # outlives this connection (one SparkSession per process), so a `gold.x` registered there for
        # another lake would answer this one's query.
        for table in referenced_tables(sql):
            if table.qualified not in self._views:
                from delta.tables import DeltaTable

                if not DeltaTable.isDeltaTable(spark, table.path(self.lake)):
                    raise LakeSQLError(f"{table.qualified} has not been written yet in the lake at {self.lake} "
                                       f"(run the pipeline first)")
                self._views.add(table.qualified)

        def by_path(match: re.Match) -> str:
            table = referenced_tables(match.group(0))[0]
            return "delta.`" + table.path(self.lake).replace("`", "``") + "`"

        sql = _TABLE_REF.sub(by_path, sql)
        try:
            return spark.sql(sql).toArrow()
        except PySparkException as exc:
            raise LakeSQLError(f"Spark: {str(exc).splitlines()[0]}") from None

    # ----------------------------------------------------------------------------- API
    def query(self, sql: str) -> QueryResult:
        sql = sql.strip().rstrip(";")
        t0 = time.perf_counter()
        table = self._run_duckdb(sql) if self.engine == "duckdb" else self._run_spark(sql)
        return QueryResult(table, self.engine, time.perf_counter() - t0)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def query(settings, sql: str, engine: str = "auto") -> QueryResult:
    lake = LakeSQL(settings, engine)
    try:
        return lake.query(sql)
    finally:
        lake.close()


# ------------------------------------------------------------------------------- output
def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else f"{value:.6e}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def render_table(result: QueryResult, max_rows: int = 100) -> str:
    """Aligned text: numbers right, text left; a footer with the row count, engine and time."""
    import pyarrow as pa

    rows = result.rows()
    shown = rows[:max_rows]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
               for f in result.table.schema]
    cells = [[_cell(v) for v in row] for row in shown]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(result.columns), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    more = f", first {max_rows} shown" if len(rows) > max_rows else ""
    out.append(f"({len(rows):,} row{'s' if len(rows) != 1 else ''}{more}; {result.engine}, {result.seconds:.2f} s)")
    return "\n".join(out)


def write_csv(result: QueryResult, target) -> None:
    """CSV with a header row; ``target`` a path or a text stream."""
    import csv

    def emit(stream) -> None:
        writer = csv.writer(stream)
        writer.writerow(result.columns)
        writer.writerows(["" if v is None else v for v in row] for row in result.rows())

    if hasattr(target, "write"):
        emit(target)
    else:
        with open(target, "w", newline="", encoding="utf-8") as f:
            emit(f)


def write_parquet(result: QueryResult, path: str) -> None:
    import pyarrow.parquet as pq

    pq.write_table(result.table, path)


def describe(settings) -> list[tuple[str, str, str]]:
    """(table, grain, whether it exists yet) for the shell's ``\\d``."""
    return [(t.qualified, t.grain, "yes" if storage.is_delta_table(settings, t.path(settings.lake_uri)) else "not yet")
            for t in ALL_TABLES]
