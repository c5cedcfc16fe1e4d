"""Delta Lake on an S3-compatible store (s3proxy) from the LearnTrack venv's pyspark, vs a local path.

Run with /work/main/.venv/bin/python, s3proxy already listening (start_s3proxy.sh).
Env: S3_ENDPOINT (default http://127.0.0.1:18333), S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET,
     ROWS (default 20000), S3A_JARS_MODE = spark.jars | extraClassPath (default extraClassPath).
Does, for both s3a://BUCKET/lake/t and a local folder, the same steps and times each:
  create (partitioned by date) -> append -> MERGE -> replaceWhere overwrite -> read latest
  -> read VERSION AS OF 0/1 -> DESCRIBE HISTORY.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import s3util  # noqa: E402

ENDPOINT = os.environ.get("S3_ENDPOINT", "http://127.0.0.1:18333")
ACCESS = os.environ.get("S3_ACCESS_KEY", "learntrack")
SECRET = os.environ.get("S3_SECRET_KEY", "learntrack-secret")
BUCKET = os.environ.get("S3_BUCKET", "lt-lake")
ROWS = int(os.environ.get("ROWS", "20000"))
JARS_MODE = os.environ.get("S3A_JARS_MODE", "extraClassPath")
DELTA_JARS = sorted(glob.glob("/work/main/.local/tools/spark-jars/*.jar"))
S3A_JARS = sorted(glob.glob(os.path.join(os.environ.get("S3A_JARS_DIR", str(HERE / "jars")), "*.jar")))
LOG4J = "/work/main/lake/log4j2.properties"

# The s3a settings the project would pass through LEARNTRACK_SPARK_CONF.
S3A_CONF = {
    "spark.hadoop.fs.s3a.endpoint": ENDPOINT,
    "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
    "spark.hadoop.fs.s3a.path.style.access": "true",
    "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    "spark.hadoop.fs.s3a.access.key": ACCESS,
    "spark.hadoop.fs.s3a.secret.key": SECRET,
    # Delta picks io.delta.storage.S3SingleDriverLogStore for s3a:// by itself; spelled out here.
    "spark.delta.logStore.s3a.impl": "io.delta.storage.S3SingleDriverLogStore",
}
S3A_CONF.update(json.loads(os.environ.get("EXTRA_CONF", "{}")))


def log(msg: str) -> None:
    print(msg, flush=True)


def spark_session():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    home = HERE / "spark-home"
    b = (
        SparkSession.builder.appName("s3proto").master("local[1]")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.warehouse.dir", str(home / "spark-warehouse"))
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        .config("spark.databricks.delta.optimizeWrite.enabled", "true")
    )
    java_opts = f"-Dderby.system.home={home / 'derby'} -Dlog4j2.configurationFile=file:{LOG4J}"
    if JARS_MODE == "spark.jars":
        b = b.config("spark.jars", ",".join(DELTA_JARS + S3A_JARS))
    else:
        # local mode: driver = executor JVM, so the class path is enough and nothing is copied.
        b = b.config("spark.jars", ",".join(DELTA_JARS))
        b = b.config("spark.driver.extraClassPath", ":".join(S3A_JARS))
    b = b.config("spark.driver.extraJavaOptions", java_opts)
    for k, v in S3A_CONF.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def make_frame(spark, n: int, day0: int, days: int, tag: str):
    from pyspark.sql import functions as F

    return (
        spark.range(n)
        .withColumn("event_date", F.date_add(F.lit("2026-01-01").cast("date"), (F.col("id") % days + day0).cast("int")))
        .withColumn("learner_id", (F.col("id") % 997).cast("int"))
        .withColumn("score", (F.col("id") * 7 % 101).cast("double"))
        .withColumn("tag", F.lit(tag))
    )


def run_steps(spark, path: str, label: str) -> dict[str, float]:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    t: dict[str, float] = {}

    def step(name, fn):
        t0 = time.perf_counter()
        out = fn()
        t[name] = time.perf_counter() - t0
        log(f"  [{label}] {name:<14} {t[name]:6.2f}s" + (f"  -> {out}" if out is not None else ""))
        return out

    base = make_frame(spark, ROWS, 0, 5, "v0")  # 5 dates
    step("create", lambda: base.write.format("delta").partitionBy("event_date").mode("overwrite").save(path))
    more = make_frame(spark, ROWS // 2, 5, 2, "v1").withColumn("id", F.col("id") + ROWS)  # 2 new dates
    step("append", lambda: more.write.format("delta").mode("append").save(path))

    def merge():
        upd = make_frame(spark, 2000, 0, 5, "merged").withColumn("score", F.lit(100.0))
        upd = upd.union(make_frame(spark, 500, 0, 1, "inserted").withColumn("id", F.col("id") + 10_000_000))
        (DeltaTable.forPath(spark, path).alias("t")
         .merge(upd.alias("s"), "t.id = s.id AND t.event_date = s.event_date")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    step("merge", merge)

    def replace_where():
        day = make_frame(spark, 1000, 6, 1, "replaced")  # only 2026-01-07
        (day.write.format("delta").mode("overwrite")
         .option("replaceWhere", "event_date = DATE'2026-01-07'").save(path))
    step("replaceWhere", replace_where)

    def read_latest():
        df = spark.read.format("delta").load(path)
        return {r["tag"]: r["n"] for r in df.groupBy("tag").agg(F.count("*").alias("n")).collect()}
    step("read_latest", read_latest)
    step("read_v0", lambda: spark.sql(f"SELECT count(*) c FROM delta.`{path}` VERSION AS OF 0").first()["c"])
    step("read_v1", lambda: spark.read.format("delta").option("versionAsOf", 1).load(path).count())

    def history():
        rows = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version", "operation").collect()
        return [(r["version"], r["operation"]) for r in rows]
    step("history", history)
    t["total"] = sum(v for k, v in t.items())
    return t


def main() -> None:
    t0 = time.perf_counter()
    log(f"bucket {BUCKET}: {s3util.create_bucket(ENDPOINT, BUCKET, ACCESS, SECRET)}")
    s3_path = f"s3a://{BUCKET}/lake/t"
    local_path = str(HERE / "local-lake" / "t")
    shutil.rmtree(HERE / "local-lake", ignore_errors=True)
    # a clean s3 table: remove the old one through the S3 API
    for key, _ in s3util.list_keys(ENDPOINT, BUCKET, ACCESS, SECRET, prefix="lake/"):
        s3util.s3_request("DELETE", ENDPOINT, f"/{BUCKET}/{key}", ACCESS, SECRET)

    ts = time.perf_counter()
    spark = spark_session()
    log(f"spark session up in {time.perf_counter() - ts:.2f}s (jars mode {JARS_MODE}, "
        f"{len(DELTA_JARS)} delta jars, {len(S3A_JARS)} s3a jars)")
    log(f"spark {spark.version}, hadoop {spark.sparkContext._jvm.org.apache.hadoop.util.VersionInfo.getVersion()}")
    # warm-up on a throwaway local table so the first measured run does not pay JIT/class loading alone
    tw = time.perf_counter()
    make_frame(spark, 100, 0, 1, "w").write.format("delta").mode("overwrite").save(str(HERE / "local-lake" / "warm"))
    log(f"warm-up {time.perf_counter() - tw:.2f}s")

    # Passes run in ORDER; a table is removed before each pass, so every pass makes versions 0..3.
    # The first pass in a JVM pays JIT/codegen for every step, so the default is a warm pass of each
    # kind first, then the measured pair: the comparison uses the LAST pass of each kind.
    passes: list[tuple[str, dict[str, float]]] = []
    order = os.environ.get("ORDER", "local,s3a,s3a,local").split(",")
    for which in order:
        if which == "s3a":
            path = s3_path
            for key, _ in s3util.list_keys(ENDPOINT, BUCKET, ACCESS, SECRET, prefix="lake/t/"):
                s3util.s3_request("DELETE", ENDPOINT, f"/{BUCKET}/{key}", ACCESS, SECRET)
        else:
            path = local_path
            shutil.rmtree(local_path, ignore_errors=True)
        log(f"--- pass {len(passes) + 1}: {which}: {path}")
        passes.append((which, run_steps(spark, path, which)))
    results = {which: t for which, t in passes}  # last pass of each kind

    keys = s3util.list_keys(ENDPOINT, BUCKET, ACCESS, SECRET, prefix="lake/t/")
    s3_bytes = sum(s for _, s in keys)
    s3_parquet = [k for k, _ in keys if k.endswith(".parquet")]
    local_bytes = sum(p.stat().st_size for p in Path(local_path).rglob("*") if p.is_file())
    log(f"s3 table: {len(keys)} objects, {s3_bytes / 1024:.1f} KiB ({len(s3_parquet)} parquet); "
        f"local table: {local_bytes / 1024:.1f} KiB")
    if "s3a" in results and "local" in results:
        log("last passes:    s3a(s)  local(s)  ratio")
        for k in results["s3a"]:
            a, b = results["s3a"][k], results["local"][k]
            log(f"{k:<14} {a:7.2f}  {b:7.2f}  {a / b:5.2f}x")
    spark.stop()
    log(f"script wall {time.perf_counter() - t0:.2f}s")
    Path(HERE / "timings.json").write_text(json.dumps({"passes": passes, "results": results, "load": os.getloadavg(), "s3_objects": len(keys),
                                                       "s3_bytes": s3_bytes, "local_bytes": local_bytes,
                                                       "rows_create": ROWS, "jars_mode": JARS_MODE}, indent=1))


if __name__ == "__main__":
    main()
