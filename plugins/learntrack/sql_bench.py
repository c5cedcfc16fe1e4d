"""The analysts' queries on both engines (``learntrack bench sql [--lake PATH]``).

Method: every query of docs/analysts.md whose tables exist in the lake runs through ``lake.sql``
with DuckDB and with Spark SQL, alternating, ``rounds`` times each (best kept); the SparkSession is
started before any timing, so Spark's figures are query time, not JVM start. The two engines'
answers are compared row by row (floats to a relative 1e-9). The size that matters is printed
beside: rows of silver.activities and of the gold tables read.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from learntrack.settings import PROJECT_ROOT, Settings

Echo = Callable[[str], None]


def analyst_queries() -> dict[str, str]:
    """docs/analysts.md's SQL blocks, by the name on their first line."""
    text = (PROJECT_ROOT / "docs" / "analysts.md").read_text()
    return {b.splitlines()[0].removeprefix("-- ").strip(): b for b in re.findall(r"```sql\n(.*?)```", text, re.S)}


def same_rows(a: list[tuple], b: list[tuple]) -> bool:
    """Same rows in the same order; numbers compared as numbers (an engine may answer a DECIMAL
    where the other answers a DOUBLE), floats to a relative 1e-9."""
    from decimal import Decimal

    def number(v):
        return float(v) if isinstance(v, Decimal) else v

    a = [tuple(number(v) for v in row) for row in a]
    b = [tuple(number(v) for v in row) for row in b]
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if isinstance(u, float) and isinstance(v, float):
                if abs(u - v) > 1e-9 * max(1.0, abs(u), abs(v)):
                    return False
            elif u != v:
                return False
    return True


def bench_sql(settings: Settings, rounds: int = 2, echo: Echo = print) -> dict:
    from lake import sql as lake_sql
    from lake.spark import spark_session
    from learntrack.benchmarks import machine

    duck, spark = lake_sql.LakeSQL(settings, "duckdb"), lake_sql.LakeSQL(settings, "spark")
    t0 = time.perf_counter()
    spark_session(settings, app_name="learntrack-sql")
    result: dict = {"machine": machine(), "lake": settings.lake_uri, "spark_start_s": round(time.perf_counter() - t0, 1),
                    "queries": {}}
    try:
        sizes = {}
        for table in ("silver.activities", "gold.course_daily_engagement", "gold.student_engagement",
                      "gold.student_course_progress"):
            try:
                sizes[table] = duck.query(f"SELECT count(*) FROM {table}").rows()[0][0]
            except lake_sql.LakeSQLError:
                sizes[table] = None
        result["rows"] = sizes
        echo(f"Lake {settings.lake_uri}: " + ", ".join(f"{k} {v:,} rows" for k, v in sizes.items() if v is not None))
        echo(f"SparkSession started in {result['spark_start_s']} s (not counted below)")
        echo(f"  {'query':<28} {'rows':>7} {'DuckDB s':>9} {'Spark s':>8} {'Spark/DuckDB':>12}  agree")
        for name, query in analyst_queries().items():
            times = {"duckdb": [], "spark": []}
            answers = {}
            try:
                for _ in range(rounds):
                    for engine, conn in (("duckdb", duck), ("spark", spark)):
                        t = time.perf_counter()
                        answers[engine] = conn.query(query).rows()
                        times[engine].append(time.perf_counter() - t)
            except lake_sql.LakeSQLError as exc:
                echo(f"  {name:<28} skipped: {exc}")
                continue
            agree = same_rows(answers["duckdb"], answers["spark"])
            best = {k: min(v) for k, v in times.items()}
            ratio = best["spark"] / max(best["duckdb"], 1e-9)
            result["queries"][name] = {"rows": len(answers["duckdb"]), "duckdb_s": round(best["duckdb"], 3),
                                       "spark_s": round(best["spark"], 3), "ratio": round(ratio, 1), "agree": agree}
            echo(f"  {name:<28} {len(answers['duckdb']):>7,} {best['duckdb']:>9.2f} {best['spark']:>8.2f} "
                 f"{ratio:>11.1f}x  {'yes' if agree else 'NO'}")
    finally:
        duck.close()
        spark.close()
    return result
