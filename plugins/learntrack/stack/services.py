"""The services of the local stack: how each is installed, configured, launched and probed.

Install scripts and config templates live in ``resources/<service>/`` beside this file (each has a
README with measured figures). Everything listens on ``settings.stack_host`` (loopback).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

from learntrack.settings import PROJECT_ROOT, Settings
from learntrack.stack.manager import Service, StackError, run_install_script

RESOURCES = Path(__file__).resolve().parent / "resources"


def _jvm_options(service: str) -> list[str]:
    lines = (RESOURCES / service / "jvm.options").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _render(template: Path, target: Path, **values) -> None:
    target.write_text(Template(template.read_text()).substitute(**{k: str(v) for k, v in values.items()}))


def _install_with_script(name: str, folder: str | None = None):
    def install(settings: Settings) -> None:
        run_install_script(name, RESOURCES / (folder or name) / "install.sh", settings.tools_dir / (folder or name))
    return install


def _no_prepare(settings: Settings, state: Path) -> None:
    return None


# ------------------------------------------------------------------------------------- postgres
# FerretDB's storage when mongo_backend == "postgresql": Debian's PostgreSQL server binaries, a
# cluster of our own under .local/stack/postgres (never the distribution's service), run as the
# `postgres` OS user when we are root (PostgreSQL refuses to run as root).
FERRETDB_ROLE = FERRETDB_DB = "ferretdb"


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _pg_user(settings: Settings) -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def _apt_install(service: str, package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(service, f"the Debian package {package} is not installed; install it (as root)")
    print(f"{service}: installing Debian package {package}", flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0:
            raise StackError(service, f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")


def _pg_install(settings: Settings) -> None:
    if not _pg_bin():
        _apt_install("postgres", "postgresql")
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError("postgres", "the 'postgres' OS user is missing (Debian's postgresql package "
                                         "creates it)") from exc


def _owned_dir(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(path, user, user)
    path.chmod(0o700)


def _let_reach(path: Path, user: str) -> None:
    """PostgreSQL runs as ``user`` and must pass through every folder above its data folder; a
    clone inside a private folder (``mktemp -d``, a 0700 home) blocks it. Grant pass-through only
    (x for others: no listing, no reading) on the folders that lack it, and say so."""
    import pwd

    account = pwd.getpwnam(user)
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    for folder in (*reversed(path.parents), path):
        st = folder.stat()
        reachable = (st.st_mode & 0o001 or (st.st_uid == account.pw_uid and st.st_mode & 0o100)
                     or (st.st_gid == account.pw_gid and st.st_mode & 0o010))
        if not reachable:
            print(f"postgres: letting the {user} user pass through {folder} (chmod o+x)", flush=True)
            folder.chmod(st.st_mode | 0o001)


def _pg_prepare(settings: Settings, state: Path) -> None:
    user, data = _pg_user(settings), state / "data"
    if user:
        _let_reach(state, user)
    _owned_dir(data, user)
    _owned_dir(state / "sock", user)
    if not (data / "PG_VERSION").exists():
        # Local socket: trust (the socket folder is 0700, reachable by postgres and root only);
        # TCP on loopback: password (scram), the password kept in a 0600 file in the state folder.
        proc = subprocess.run([str(_pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                               "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"],
                              capture_output=True, text=True, user=user, group=user, extra_groups=[] if user else None,
                              cwd=state)
        if proc.returncode != 0:
            raise StackError("postgres", f"initdb failed: {proc.stderr.strip()[-800:]}")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(Template((RESOURCES / "postgres" / "postgresql.conf.template").read_text()).substitute(
                host=settings.stack_host, port=settings.postgres_port, sock=state / "sock"))
    pass_file = state / "ferretdb.pass"
    if not pass_file.exists():
        pass_file.touch(mode=0o600)
        pass_file.write_text(secrets.token_urlsafe(24))


def _pg_command(settings: Settings, state: Path) -> list[str]:
    # Address and port from the settings on every start (they override postgresql.conf, written
    # once at initdb), so moving the stack to other ports is configuration only.
    return [str(_pg_bin() / "postgres"), "-D", str(state / "data"), "-p", str(settings.postgres_port),
            "-c", f"listen_addresses={settings.stack_host}"]


def _psql(settings: Settings, sql: str, database: str = "postgres") -> str:
    state = settings.stack_dir / "postgres"
    proc = subprocess.run([str(_pg_bin() / "psql"), "-h", str(state / "sock"), "-p", str(settings.postgres_port),
                           "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-f", "-"],
                          input=sql, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-500:] or f"psql exited {proc.returncode}")
    return proc.stdout


def _pg_ready(settings: Settings) -> None:
    _psql(settings, "SELECT 1")


# ---------------------------------------------------------------------------------------- mongo
def _ferretdb_url(settings: Settings) -> str:
    password = (settings.stack_dir / "postgres" / "ferretdb.pass").read_text().strip()
    return (f"postgres://{FERRETDB_ROLE}:{password}@{settings.stack_host}:{settings.postgres_port}/"
            f"{FERRETDB_DB}")


def _mongo_prepare(settings: Settings, state: Path) -> None:
    if settings.mongo_backend != "postgresql":
        return
    password = (settings.stack_dir / "postgres" / "ferretdb.pass").read_text().strip()
    if not _psql(settings, f"SELECT 1 FROM pg_roles WHERE rolname = '{FERRETDB_ROLE}'").strip():
        _psql(settings, f"CREATE ROLE {FERRETDB_ROLE} LOGIN PASSWORD '{password}'")
    if not _psql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{FERRETDB_DB}'").strip():
        _psql(settings, f"CREATE DATABASE {FERRETDB_DB} OWNER {FERRETDB_ROLE}")


def _mongo_env(settings: Settings, state: Path) -> dict[str, str]:
    # The PostgreSQL URL carries a password: passed in the environment, never on the command line.
    return {"FERRETDB_POSTGRESQL_URL": _ferretdb_url(settings)} if settings.mongo_backend == "postgresql" else {}


def _mongo_command(settings: Settings, state: Path) -> list[str]:
    if settings.mongo_backend == "postgresql":
        storage = ["--handler=postgresql"]
    elif settings.mongo_backend == "sqlite":
        storage = ["--handler=sqlite", f"--sqlite-url=file:{state / 'data'}/"]
    else:
        raise StackError("mongo", f"unknown mongo_backend {settings.mongo_backend!r}: postgresql or sqlite")
    return [str(settings.tools_dir / "ferretdb" / "ferretdb"), *storage,
            f"--listen-addr={settings.stack_host}:{settings.mongo_port}",
            f"--state-dir={state}", "--telemetry=disable", "--log-level=warn", "--log-format=text",
            "--debug-addr=-"]


def _mongo_ready(settings: Settings) -> None:
    from pymongo import MongoClient

    c = MongoClient(settings.stack_host, settings.mongo_port, serverSelectionTimeoutMS=1500)
    try:
        c.admin.command("ping")
    finally:
        c.close()


# ---------------------------------------------------------------------------------------- redis
def _redis_install(settings: Settings) -> None:
    if not shutil.which("redis-server"):
        _apt_install("redis", "redis-server")


def _redis_command(settings: Settings, state: Path) -> list[str]:
    return [shutil.which("redis-server") or "redis-server", "--bind", settings.stack_host,
            "--port", str(settings.redis_port), "--dir", str(state / "data"), "--daemonize", "no",
            "--logfile", "", "--protected-mode", "yes", "--appendonly", "yes", "--save", "60 1000"]


def _redis_ready(settings: Settings) -> None:
    import redis

    redis.Redis(host=settings.stack_host, port=settings.redis_port, socket_timeout=1.5).ping()


# ------------------------------------------------------------------------------------ cassandra
def _cassandra_prepare(settings: Settings, state: Path) -> None:
    res = RESOURCES / "cassandra"
    for sub in ("logs", "triggers"):
        (state / sub).mkdir(exist_ok=True)
    _render(res / "cassandra.yaml.template", state / "cassandra.yaml", state_dir=state / "data",
            host=settings.stack_host, cql_port=settings.cassandra_port,
            storage_port=settings.cassandra_storage_port, cluster_name="learntrack-local")
    _render(res / "logback.xml.template", state / "logback.xml", log_file=state / "logs" / "system.log")


def _cassandra_command(settings: Settings, state: Path) -> list[str]:
    tools = settings.tools_dir / "cassandra"
    # -Xms below -Xmx: Cassandra mlockall()s its heap when run as root, so -Xms1g pins 1 GiB at idle.
    return ["java", "-Xms256m", "-Xmx1g", f"-javaagent:{tools / 'jamm.jar'}", *_jvm_options("cassandra"),
            f"-Dcassandra.config=file://{state / 'cassandra.yaml'}", "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={state / 'data'}", f"-Dcassandra.logdir={state / 'logs'}",
            f"-Dcassandra.triggers_dir={state / 'triggers'}",
            f"-Dlogback.configurationFile={state / 'logback.xml'}",
            "-cp", f"{tools / 'lib'}/*", "org.apache.cassandra.service.CassandraDaemon"]


def _cassandra_ready(settings: Settings) -> None:
    from cassandra.cluster import Cluster

    cluster = Cluster([settings.stack_host], port=settings.cassandra_port, connect_timeout=3,
                      protocol_version=5)
    try:
        cluster.connect().execute("SELECT release_version FROM system.local")
    finally:
        cluster.shutdown()


# ---------------------------------------------------------------------------------------- neo4j
def _neo4j_command(settings: Settings, state: Path) -> list[str]:
    tools = settings.tools_dir / "neo4j"
    # Heap, page cache and JIT from settings; the rest of jvm.options as upstream has it.
    options = [o for o in _jvm_options("neo4j") if not o.startswith(("-Xms", "-Xmx"))
               and not (o == "-XX:TieredStopAtLevel=1" and not settings.neo4j_c1_only)]
    memory = [f"-Xms{min(256, settings.neo4j_heap_mb)}m", f"-Xmx{settings.neo4j_heap_mb}m",
              f"-Dlearntrack.neo4j.pagecache_mb={settings.neo4j_pagecache_mb}"]
    # The launcher is compiled by install.sh (faster start and ~50 MB less than source-file mode).
    return ["java", *memory, *options, "-cp", f"{tools / 'lib'}/*:{tools / 'classes'}", "Launcher",
            str(state / "data"), f"{settings.stack_host}:{settings.neo4j_bolt_port}"]


def _neo4j_ready(settings: Settings) -> None:
    from neo4j import GraphDatabase

    with GraphDatabase.driver(f"bolt://{settings.stack_host}:{settings.neo4j_bolt_port}", auth=None,
                              connection_timeout=3) as driver:
        driver.execute_query("RETURN 1")




# ------------------------------------------------------------------------ spark (optional)
# A standalone master and worker from the venv's own pyspark (`spark-class`): the same Spark and
# the same Python as the driver. Not started by a plain `stack up` (the jobs default to local[2]).
def _spark_class() -> str:
    return str(Path(sys.executable).with_name("spark-class"))


def _spark_env(settings: Settings, state: Path) -> dict[str, str]:
    return {"SPARK_LOCAL_IP": settings.stack_host, "SPARK_LOG_DIR": str(state), "SPARK_WORKER_DIR": str(state / "work"),
            "PYSPARK_PYTHON": sys.executable}


def _spark_master_command(settings: Settings, state: Path) -> list[str]:
    return [_spark_class(), "org.apache.spark.deploy.master.Master", "--host", settings.stack_host,
            "--port", str(settings.spark_master_port), "--webui-port", str(settings.spark_master_ui_port)]


def _spark_worker_command(settings: Settings, state: Path) -> list[str]:
    return [_spark_class(), "org.apache.spark.deploy.worker.Worker",
            f"spark://{settings.stack_host}:{settings.spark_master_port}", "--host", settings.stack_host,
            "--cores", str(settings.spark_worker_cores), "--memory", settings.spark_worker_memory,
            "--webui-port", str(settings.spark_worker_ui_port), "--work-dir", str(state / "work")]


def spark_master_state(settings: Settings) -> dict:
    """The master's own JSON view (workers, running and completed applications)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{settings.stack_host}:{settings.spark_master_ui_port}/json/",
                                timeout=3) as resp:
        return json.loads(resp.read())


def _spark_master_ready(settings: Settings) -> None:
    spark_master_state(settings)


def _spark_worker_ready(settings: Settings) -> None:
    alive = [w for w in spark_master_state(settings).get("workers", []) if w.get("state") == "ALIVE"]
    if not alive:
        raise ConnectionError("no worker registered with the Spark master yet")


# ---------------------------------------------------------------------------- s3proxy (optional)
# An S3-compatible store over a local folder, for a lake at s3a://learntrack/<prefix> (ADR 29).
# Requests must be signed: the access key is S3PROXY_IDENTITY, the secret a generated 0600 file.
S3PROXY_IDENTITY = "learntrack"
S3PROXY_BUCKET = "learntrack"  # created with the store (a bucket is a sub-folder of its data folder)


def s3proxy_secret_file(settings: Settings) -> Path:
    return settings.stack_dir / "s3proxy" / "credential"


def s3proxy_endpoint(settings: Settings) -> str:
    return f"http://{settings.stack_host}:{settings.s3proxy_port}"


def s3proxy_lake(settings: Settings, prefix: str = "lake") -> dict[str, str]:
    """Settings overrides for a lake on the local s3proxy (the secret read from its 0600 file)."""
    return {"lake_root": f"s3a://{S3PROXY_BUCKET}/{prefix}", "s3_endpoint": s3proxy_endpoint(settings),
            "s3_access_key": S3PROXY_IDENTITY, "s3_secret_key": s3proxy_secret_file(settings).read_text().strip()}


def _s3proxy_prepare(settings: Settings, state: Path) -> None:
    secret = s3proxy_secret_file(settings)
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(24))
    (state / "data" / S3PROXY_BUCKET).mkdir(parents=True, exist_ok=True)
    target = state / "s3proxy.properties"
    target.touch(mode=0o600)  # it carries the secret
    _render(RESOURCES / "s3proxy" / "s3proxy.properties.template", target, host=settings.stack_host,
            port=settings.s3proxy_port, identity=S3PROXY_IDENTITY, credential=secret.read_text().strip(),
            basedir=state / "data")


def _s3proxy_command(settings: Settings, state: Path) -> list[str]:
    return ["java", *_jvm_options("s3proxy"), "-jar", str(settings.tools_dir / "s3proxy" / "s3proxy.jar"),
            "--properties", str(state / "s3proxy.properties")]


def _s3proxy_ready(settings: Settings) -> None:
    """A signed listing of the bucket answers (a wrong secret would be refused)."""
    from pyarrow import fs

    s3 = fs.S3FileSystem(access_key=S3PROXY_IDENTITY, secret_key=s3proxy_secret_file(settings).read_text().strip(),
                         endpoint_override=s3proxy_endpoint(settings), region="us-east-1",
                         connect_timeout=2, request_timeout=3, retry_strategy=fs.AwsStandardS3RetryStrategy(0))
    if s3.get_file_info(S3PROXY_BUCKET).type != fs.FileType.Directory:
        raise ConnectionError(f"s3proxy answers but has no bucket {S3PROXY_BUCKET}")


def all_services(settings: Settings | None = None) -> list[Service]:
    postgres = [Service("postgres", lambda s: s.postgres_port, _pg_install, _pg_prepare, _pg_command, _pg_ready,
                        run_as=_pg_user, stop_signal=signal.SIGINT)]  # SIGINT: PostgreSQL's fast shutdown
    if settings is not None and settings.mongo_backend != "postgresql":
        postgres = []
    return [
        *postgres,
        Service("mongo", lambda s: s.mongo_port, _install_with_script("ferretdb"), _mongo_prepare, _mongo_command,
                _mongo_ready, after=tuple(p.name for p in postgres), env=_mongo_env),
        Service("redis", lambda s: s.redis_port, _redis_install, _no_prepare, _redis_command, _redis_ready),
        Service("cassandra", lambda s: s.cassandra_port, _install_with_script("cassandra"), _cassandra_prepare,
                _cassandra_command, _cassandra_ready, needs_java=True),
        Service("neo4j", lambda s: s.neo4j_bolt_port, _install_with_script("neo4j"), _no_prepare,
                _neo4j_command, _neo4j_ready, needs_java=True),
        Service("spark-master", lambda s: s.spark_master_port, lambda s: None, _no_prepare, _spark_master_command,
                _spark_master_ready, needs_java=True, env=_spark_env, optional=True),
        Service("spark-worker", lambda s: s.spark_worker_ui_port, lambda s: None, _no_prepare, _spark_worker_command,
                _spark_worker_ready, needs_java=True, after=("spark-master",), env=_spark_env, optional=True),
        Service("s3proxy", lambda s: s.s3proxy_port, _install_with_script("s3proxy"), _s3proxy_prepare,
                _s3proxy_command, _s3proxy_ready, needs_java=True, optional=True),
    ]


def install_spark_jars(settings: Settings) -> None:
    run_install_script("spark-jars", RESOURCES / "spark" / "install.sh", settings.jars_dir)


def install_compose_validator(settings: Settings) -> None:
    """``docker-compose`` (Debian's 1.29) validates docker/docker-compose.yml without a Docker
    engine (tests/docker/test_compose.py)."""
    if shutil.which("docker-compose"):
        print("compose-validator: already installed", flush=True)
        return
    _apt_install("compose-validator", "docker-compose")


def install_report_browser(settings: Settings) -> None:
    """Debian's ``chromium``: the report test opens `learntrack report`'s page headless and checks
    every chart rendered (tests/e2e). The report itself needs no browser."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        print("report-browser: already installed", flush=True)
        return
    _apt_install("report-browser", "chromium")


# The dashboards' schema check (tests/docker): @grafana/schema and typescript, pinned by the folder's
# package-lock.json, installed into its node_modules. Skipped when the lock file is unchanged since the
# last install (npm ci would wipe and reinstall node_modules every time).
GRAFANA_SCHEMA_CHECK = PROJECT_ROOT / "docker" / "grafana" / "schema-check"


def install_grafana_schema_check(settings: Settings, folder: Path = GRAFANA_SCHEMA_CHECK) -> None:
    lock, stamp = folder / "package-lock.json", folder / "node_modules" / ".learntrack-installed"
    if not lock.exists():
        print(f"grafana-schema-check: {folder} not in this checkout, skipped", flush=True)
        return
    if stamp.exists() and stamp.read_bytes() == lock.read_bytes():
        print("grafana-schema-check: already installed", flush=True)
        return
    npm = shutil.which("npm")
    if not npm:
        raise StackError("grafana-schema-check", "npm is not on PATH; install Node.js >= 18 (the Grafana "
                                                 "dashboards are type-checked with tsc)")
    print(f"grafana-schema-check: npm ci in {folder}", flush=True)
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder,
                          stdout=sys.stdout, stderr=sys.stderr)
    if proc.returncode != 0:
        raise StackError("grafana-schema-check", f"npm ci in {folder} failed with exit code {proc.returncode}")
    stamp.write_bytes(lock.read_bytes())
