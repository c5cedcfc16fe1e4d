"""The one settings object: environment variables with local defaults.

Every address, path, port, weight and window the project uses comes from here, so a move from
one laptop to a Spark cluster, a Mongo replica set, multi-node Cassandra or an object-store lake
is a change of environment, never of code. Names are ``LEARNTRACK_<FIELD>`` in upper case.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default_home() -> str:
    return str(PROJECT_ROOT / ".local")


#: How a MongoDB day bucket may be counted (``mongo_count_method``; ``mongo_ops.count_matching``).
COUNT_METHODS = ("auto", "server", "stream")


@dataclass(frozen=True)
class Settings:
    # --- where local state lives (stack data, tools, logs, lake, Airflow home) ---------------
    home: str = field(default_factory=_default_home)

    # --- stores ----------------------------------------------------------------------------------
    # Empty URIs point at the local stack (stack_host and the ports below).
    mongo_uri: str = ""
    mongo_db: str = "learntrack"
    # Every MongoDB client of ours gives up instead of waiting forever (seconds): finding a server,
    # opening a connection, and one reply (long enough for an extraction's cursor batches).
    mongo_server_selection_timeout_s: float = 5.0
    mongo_connect_timeout_s: float = 5.0
    mongo_socket_timeout_s: float = 120.0
    # How the extraction's reconciliation and the bronze gate count a day bucket: "server"
    # (count_documents: an index count on MongoDB), "stream" (stream the bucket's _ids and count
    # them: bounded memory where the server materialises a count, as FerretDB 1.x does: 20 GB for a
    # 6.7M-document bucket) or "auto" (stream on FerretDB, server count elsewhere).
    mongo_count_method: str = "auto"
    redis_url: str = ""
    redis_prefix: str = "learntrack"
    # Everything a publish writes to Redis expires unless a later publish renews it (days).
    redis_snapshot_ttl_days: int = 14
    # Progress keys (resume positions) live this long after their last write or nightly refresh.
    redis_progress_ttl_days: int = 30
    # 1: insert_activities also updates Redis as it writes (resume positions, live scores); 0: off.
    redis_live_path: int = 1
    cassandra_hosts: str = ""  # comma-separated contact points
    cassandra_port: int = 9042
    cassandra_keyspace: str = "learntrack"
    # CQL replication map for CREATE KEYSPACE; a cluster sets e.g.
    # {"class": "NetworkTopologyStrategy", "dc1": 3}
    cassandra_replication: str = '{"class": "SimpleStrategy", "replication_factor": 1}'
    cassandra_username: str = ""
    cassandra_password: str = field(default="", repr=False)  # a secret: never in repr or logs
    # Publishing: statements in flight at once, and retries (with exponential backoff) of one that fails.
    cassandra_max_in_flight: int = 64
    # Statements go in unlogged batches of rows sharing a replica, up to this many bytes of values
    # (Cassandra warns above 5 KiB); 0 sends each statement alone.
    cassandra_batch_bytes: int = 4096
    cassandra_retries: int = 3
    cassandra_retry_backoff_s: float = 0.5
    neo4j_uri: str = ""
    neo4j_user: str = ""  # empty: no auth (the local embedded server runs without it)
    neo4j_password: str = field(default="", repr=False)  # a secret: never in repr or logs
    # Neo4j Community has one database: every node a run writes carries this namespace, and every
    # query is scoped by it (like the Mongo database, Cassandra keyspace and Redis prefix).
    neo4j_namespace: str = "learntrack"
    # How long the CLI's check that Redis, Cassandra or Neo4j answers waits before it says the
    # store is down (`learntrack summary` checks every store before it starts Spark).
    store_check_timeout_s: float = 5.0

    # --- lake and compute -----------------------------------------------------------------------
    lake_root: str = ""  # path or URI (file:///..., s3a://..., abfss://...); default <home>/lake
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"
    # JVM options of the driver, after the ones lake/spark.py sets itself. The parallel collector
    # made the 1M batch's lake stages 8-10% faster than the JVM's default G1 on 2 cores (ADR 41);
    # a cluster whose driver holds a large heap may prefer G1 back: "-XX:+UseG1GC".
    spark_driver_java_options: str = "-XX:+UseParallelGC"
    spark_shuffle_partitions: int = 4
    spark_jars_dir: str = ""  # default <home>/tools/spark-jars
    spark_conf: str = "{}"  # JSON object of extra Spark conf (cluster, any other Hadoop fs.* key)
    # --- the lake on an object store (lake/storage.py, docs/object-storage.md) -------------------
    # s3a:// lake: the endpoint of an S3-compatible store (empty: AWS S3 itself), its region, and
    # credentials (empty: the AWS default chain: env, profile, instance role). Spark and delta-rs
    # (learntrack sql/tables/report) both use them.
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = field(default="", repr=False)  # a secret: never in repr or logs
    # abfss://<container>@<account>.dfs.core.windows.net lake (ADLS Gen2): an account key, or a
    # service principal (client id, secret and tenant: OAuth client credentials).
    azure_storage_key: str = field(default="", repr=False)  # a secret: never in repr or logs
    azure_client_id: str = ""
    azure_client_secret: str = field(default="", repr=False)  # a secret: never in repr or logs
    azure_tenant_id: str = ""
    airflow_home: str = ""  # default <home>/airflow
    # --- local Airflow (`learntrack airflow up`: api-server, scheduler, dag-processor, triggerer) ---
    airflow_api_port: int = 8080  # api-server (UI, REST, execution API) on stack_host
    airflow_db_name: str = "airflow"  # metadata database and its role in the local PostgreSQL
    airflow_admin_user: str = "admin"  # SimpleAuthManager admin; password generated once, 0600 file
    airflow_start_timeout_s: int = 300  # how long `airflow up` waits for components and DAGs

    # --- scheduling (the DAGs) -------------------------------------------------------------------
    # First day the daily DAG runs for (YYYY-MM-DD); the scheduler catches up every day since.
    # Empty: no catch-up, only the latest complete day runs (`learntrack airflow up` sets it).
    pipeline_start_date: str = ""
    task_retries: int = 2  # per task; retries back off exponentially from task_retry_delay_s
    task_retry_delay_s: int = 60
    task_max_retry_delay_s: int = 900
    # POSTed a JSON message when a task fails for good (Slack/Teams/any webhook); empty: none.
    alert_webhook_url: str = ""
    # Test hook (learntrack.faults): the fail point at which a process kills itself. Never set in production.
    fail_at: str = ""

    # --- extraction ------------------------------------------------------------------------------
    extract_batch_size: int = 5000
    # Rows per bronze commit: each commit carries its own watermark, and the next chunk is read
    # from MongoDB while one commits, so smaller chunks overlap more but pay more commits.
    extract_commit_rows: int = 50_000
    # A whole day (not the partial days at the watermark and the upper bound) with at most this
    # many new documents is read as one query and sorted by the client (FerretDB's plain read rate;
    # the client holds the day); a larger or partial day one 10-minute slot at a time, sorted by
    # the server. 0: always by slot.
    extract_day_read_max_docs: int = 50_000
    # The day bucket a first extraction (empty bronze table) starts from, ISO date. Empty: the
    # oldest bucket in the collection, an index read on MongoDB but a scan of the whole collection
    # on FerretDB (its sort is not pushed down): set it on a large FerretDB-backed source.
    extract_first_day: str = ""
    # Documents written less than this many seconds before the interval end are left for the
    # next run: a write with an earlier ingested_at may still be in flight on another node.
    extract_safety_lag_s: int = 5
    # Day buckets before the watermark's own that extraction reconciles by count with bronze (and
    # the bronze gate checks): a write that landed behind the watermark (slow flush, slow clock,
    # caller-set write time) is found there and extracted late instead of being lost.
    extract_reconcile_days: int = 1
    # A gate validates a frame of at most this many rows with GX's pandas engine (collected once),
    # larger ones with Spark; 0: always Spark. Same expectations, same verdicts (tested).
    gate_pandas_max_rows: int = 200_000
    # The silver gate judges every bronze row of batches up to this many rows again with the rules
    # and compares each row's place (kept or quarantined, and why); beyond, a fixed sample of about
    # this many rows (ADR 34). 0: every row, whatever the size.
    silver_gate_judge_rows: int = 100_000
    # gate_bronze fails when the newest activity written up to the interval end is older than this.
    freshness_max_hours: float = 24.0

    # --- analytics -------------------------------------------------------------------------------
    # Points per event type for the engagement score.
    engagement_weights: str = (
        '{"page_view": 1, "video_play": 2, "video_pause": 0.5, "video_seek": 0.5, '
        '"video_complete": 5, "quiz_attempt": 4, "assignment_submit": 8, "login": 1}'
    )
    # Exponential time decay per day: S_today = S_prev * exp(-lambda * days) + points_today.
    engagement_decay_per_day: float = 0.1
    # Per-course bands: mid-rank percentile below low -> "low", above high -> "high".
    engagement_band_low: float = 0.25
    engagement_band_high: float = 0.75
    # Segments (docs/engagement.md): activity window, and what counts as struggling.
    engagement_activity_window_days: int = 7
    engagement_struggling_min_attempts: int = 2
    engagement_struggling_pass_rate: float = 0.5
    multi_region_window_minutes: int = 30
    # Account sharing: an IP or device used by at least this many distinct students on one day.
    shared_access_min_students: int = 5
    # What the account-sharing check groups by: "ip", and "device" once events carry a device id
    # (today's `device` is a platform type — web, ios, android, desktop — shared by everyone).
    shared_access_kinds: str = "ip"

    # --- lake maintenance ------------------------------------------------------------------------
    raw_retention_days: int = 90  # bronze and silver (raw and conformed events)
    aggregate_retention_days: int = 730  # gold
    vacuum_retention_hours: int = 168  # history VACUUM keeps for time travel and long readers

    # --- local stack (ports the embedded servers listen on, loopback only) -------------------
    stack_host: str = "127.0.0.1"
    # Storage of the local MongoDB wire server (FerretDB): "postgresql" (indexes serve equality
    # filters) or "sqlite" (no extra server, but every non-_id query scans the collection).
    mongo_backend: str = "postgresql"
    postgres_port: int = 5433
    mongo_port: int = 27017
    redis_port: int = 6379
    cassandra_storage_port: int = 7000
    neo4j_bolt_port: int = 7687
    # The embedded Neo4j's memory and JIT. The defaults suit the tests (small, and ~8 s to start
    # with the C1-only JIT instead of 13-18 s); a seed-scale day merges 792k logins 32% faster with
    # heap 2048, C2 (neo4j_c1_only=false) and a page cache that holds the graph (docs/benchmarks.md).
    neo4j_heap_mb: int = 512
    neo4j_pagecache_mb: int = 128
    neo4j_c1_only: bool = True
    # Optional Spark standalone cluster on loopback (`learntrack stack up spark-master spark-worker`);
    # point the jobs at it with LEARNTRACK_SPARK_MASTER=spark://127.0.0.1:7077.
    spark_master_port: int = 7077
    spark_master_ui_port: int = 8070
    spark_worker_ui_port: int = 8071
    spark_worker_cores: int = 2
    spark_worker_memory: str = "4g"
    # Optional local S3-compatible store (`learntrack stack up s3proxy`, an s3proxy jar over a
    # folder): a lake at s3a://learntrack/<prefix> with LEARNTRACK_S3_ENDPOINT=http://127.0.0.1:<port>.
    s3proxy_port: int = 18333
    stack_start_timeout_s: int = 180

    def __post_init__(self):
        local = {
            "mongo_uri": f"mongodb://{self.stack_host}:{self.mongo_port}/",
            "redis_url": f"redis://{self.stack_host}:{self.redis_port}/0",
            "cassandra_hosts": self.stack_host,
            "neo4j_uri": f"bolt://{self.stack_host}:{self.neo4j_bolt_port}",
        }
        for name, value in local.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)
        if self.mongo_count_method not in COUNT_METHODS:
            raise ValueError(f"LEARNTRACK_MONGO_COUNT_METHOD={self.mongo_count_method!r}: use auto, server or stream")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``LEARNTRACK_*`` variables, then apply explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"LEARNTRACK_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _coerce(f.type, raw, f.name)
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> "Settings":
        return replace(self, **overrides)

    def to_env(self) -> dict[str, str]:
        """These settings as LEARNTRACK_* variables, for a child process (Airflow, a Spark worker)."""
        return {f"LEARNTRACK_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    # --- derived paths -----------------------------------------------------------------------
    @property
    def home_path(self) -> Path:
        return Path(self.home).resolve()

    @property
    def tools_dir(self) -> Path:
        return self.home_path / "tools"

    @property
    def stack_dir(self) -> Path:
        return self.home_path / "stack"

    @property
    def lake_uri(self) -> str:
        """Lake root as Spark understands it: a URI, or an absolute local path."""
        return self.lake_root or str(self.home_path / "lake")

    @property
    def jars_dir(self) -> Path:
        return Path(self.spark_jars_dir) if self.spark_jars_dir else self.tools_dir / "spark-jars"

    @property
    def airflow_home_path(self) -> Path:
        return Path(self.airflow_home) if self.airflow_home else self.home_path / "airflow"

    @property
    def engagement_weight_map(self) -> dict[str, float]:
        return {k: float(v) for k, v in json.loads(self.engagement_weights).items()}

    @property
    def spark_conf_map(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in json.loads(self.spark_conf).items()}

    @property
    def shared_access_kind_list(self) -> tuple[str, ...]:
        kinds = tuple(k.strip() for k in self.shared_access_kinds.split(",") if k.strip())
        unknown = set(kinds) - {"ip", "device"}
        if unknown or not kinds:
            raise ValueError(f"LEARNTRACK_SHARED_ACCESS_KINDS={self.shared_access_kinds!r}: use ip and/or device")
        return kinds

    @property
    def cassandra_replication_map(self) -> dict[str, Any]:
        return json.loads(self.cassandra_replication)

    @property
    def cassandra_contact_points(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]


def _coerce(type_name: Any, raw: str, name: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            flag = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(raw.strip().lower())
            if flag is None:
                raise ValueError(raw)
            return flag
    except ValueError as exc:
        raise ValueError(f"LEARNTRACK_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw


def get_settings() -> Settings:
    return Settings.from_env()
