"""delta-rs (deltalake, read-only use of the project venv) reading the Spark-written s3a table from s3proxy,
then DuckDB over the Arrow data delta-rs hands it."""
import os, time, json
t0 = time.perf_counter()
import deltalake, duckdb, pyarrow as pa
from deltalake import DeltaTable

ENDPOINT = os.environ.get("S3_ENDPOINT", "http://127.0.0.1:18333")
OPTS = {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_ACCESS_KEY_ID": "learntrack",
    "AWS_SECRET_ACCESS_KEY": "learntrack-secret",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",                 # plain http endpoint
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",  # path style (the default when an endpoint is set)
    "AWS_S3_ALLOW_UNSAFE_RENAME": "true",     # only matters for writes; harmless for reads
}
uri = "s3://lt-lake/lake/t"   # delta-rs takes s3:// (s3a:// is accepted too)
print("deltalake", deltalake.__version__, "duckdb", duckdb.__version__, "pyarrow", pa.__version__)
for u in (uri, "s3a://lt-lake/lake/t"):
    t = time.perf_counter()
    try:
        dt = DeltaTable(u, storage_options=OPTS)
        print(f"open {u}: version {dt.version()} in {time.perf_counter()-t:.2f}s; partitions {dt.metadata().partition_columns}")
    except Exception as e:
        print(f"open {u}: FAILED {type(e).__name__}: {e}")
dt = DeltaTable(uri, storage_options=OPTS)
t = time.perf_counter()
tbl = dt.to_pyarrow_table()
print(f"latest: {tbl.num_rows} rows in {time.perf_counter()-t:.2f}s")
hist = [(h.get('version'), h.get('operation')) for h in dt.history()]
print("history:", hist)
t = time.perf_counter()
v0 = DeltaTable(uri, storage_options=OPTS, version=0).to_pyarrow_table()
v1 = DeltaTable(uri, storage_options=OPTS, version=1).to_pyarrow_table()
print(f"time travel: v0 {v0.num_rows} rows, v1 {v1.num_rows} rows in {time.perf_counter()-t:.2f}s")
print("files in latest:", len(dt.file_uris()))
# DuckDB over delta-rs: hand it the Arrow table (or a dataset for lazy scans)
con = duckdb.connect()
t = time.perf_counter()
ds = dt.to_pyarrow_dataset()
res = con.execute("SELECT tag, count(*) n, round(avg(score),2) s FROM ds GROUP BY tag ORDER BY tag").fetchall()
print(f"duckdb over delta-rs dataset: {res} in {time.perf_counter()-t:.2f}s")
res = con.execute("SELECT event_date, count(*) FROM ds WHERE event_date >= DATE '2026-01-06' GROUP BY 1 ORDER BY 1").fetchall()
print("duckdb partition filter:", res)
# QueryBuilder (delta-rs' own SQL, DataFusion) if present
try:
    from deltalake import QueryBuilder
    qb = QueryBuilder().register("t", dt)
    out = qb.execute("SELECT count(*) AS n FROM t").read_all()
    print("delta-rs QueryBuilder count:", pa.table(out).to_pylist())
except Exception as e:
    print("QueryBuilder:", type(e).__name__, e)
print(f"total {time.perf_counter()-t0:.2f}s")
