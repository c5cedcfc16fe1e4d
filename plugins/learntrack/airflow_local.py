"""Airflow as it runs in production, locally: ``learntrack airflow up|down|status|logs``.

Four processes of Airflow's own (api-server, scheduler with the LocalExecutor, dag-processor,
triggerer), each under ``<airflow home>/run/<component>/`` with its log and pid file, configured
only through environment variables built by :func:`airflow_env`. The metadata database is a
database and role of their own in the local stack's PostgreSQL. Secrets (metadata-DB password,
JWT secret, API secret key, Fernet key, admin password) are generated once into 0600 files under
``<airflow home>/secrets/`` and shared by every process. The stores are Airflow connections
(``AIRFLOW_CONN_LEARNTRACK_*``) derived from the settings. Also here: a small REST client
(:class:`AirflowApi`), :func:`backfill` and a headless-Chromium screenshot of a DAG's grid.
See docs/airflow.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from learntrack.settings import PROJECT_ROOT, Settings
from learntrack.stack.manager import (
    ServiceStatus,
    StackError,
    _alive,
    _read_pid,
    _started_in,
    port_open,
    rss_mb,
    tail,
)

#: The DAGs `up` waits for (file name = dag id in dags/).
LEARNTRACK_DAGS = ("learntrack_pipeline", "learntrack_maintenance")

CONN_MONGO, CONN_REDIS, CONN_CASSANDRA, CONN_NEO4J = (
    "learntrack_mongo", "learntrack_redis", "learntrack_cassandra", "learntrack_neo4j")

Echo = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# secrets: generated once, 0600 files, shared by every Airflow process and surviving restarts

def secrets_dir(settings: Settings) -> Path:
    return settings.airflow_home_path / "secrets"


def _secret(settings: Settings, name: str, make: Callable[[], str]) -> str:
    folder = secrets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / name
    try:  # O_EXCL: two processes creating the same secret at once agree on the first one written
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the other writer may not have written yet
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.1)
        raise StackError("airflow", f"secret file {path} is empty; delete it to generate a new one")
    with os.fdopen(fd, "w") as fh:
        value = make()
        fh.write(value + "\n")
    return value


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def db_password(settings: Settings) -> str:
    return _secret(settings, "metadata-db.pass", lambda: secrets.token_urlsafe(24))


def passwords_file(settings: Settings) -> Path:
    """The SimpleAuthManager passwords file (JSON {user: password}), 0600."""
    return secrets_dir(settings) / "simple_auth_manager_passwords.json"


def admin_password(settings: Settings) -> str:
    """The admin's password, generated into the passwords file Airflow reads, once."""
    _secret(settings, passwords_file(settings).name,
            lambda: json.dumps({settings.airflow_admin_user: secrets.token_urlsafe(16)}))
    path = passwords_file(settings)
    passwords = json.loads(path.read_text())
    if settings.airflow_admin_user not in passwords:  # admin user renamed in settings
        passwords[settings.airflow_admin_user] = secrets.token_urlsafe(16)
        path.write_text(json.dumps(passwords) + "\n")
    return passwords[settings.airflow_admin_user]


# --------------------------------------------------------------------------------------------
# connections: the stores as Airflow connections, derived from (and read back into) Settings

def _netloc(host: str | None, port: int | None, login: str | None, password: str | None) -> str:
    netloc = host or ""
    if port:
        netloc = f"{netloc}:{port}"
    if login or password:
        user = quote(login or "", safe="")
        netloc = f"{user}:{quote(password, safe='')}@{netloc}" if password is not None else f"{user}@{netloc}"
    return netloc


def _split_netloc(netloc: str) -> tuple[str, int | None, str | None, str | None]:
    """host, port, login, password of a URI's netloc; several hosts (h1:1,h2:2) stay in host."""
    login = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, has_password, pw = userinfo.partition(":")
        login = unquote(user) or None
        password = unquote(pw) if has_password else None
    m = re.fullmatch(r"([^,]*):(\d+)", netloc)
    if m:
        return m.group(1), int(m.group(2)), login, password
    return netloc, None, login, password


def _query_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _truthy(value: Any) -> bool:
    return str(value).lower() == "true"


def connections(settings: Settings) -> dict[str, dict[str, Any]]:
    """The four store connections in Airflow's JSON form, by connection id."""
    out: dict[str, dict[str, Any]] = {}

    m = urlsplit(settings.mongo_uri)
    host, port, login, password = _split_netloc(m.netloc)
    extra: dict[str, Any] = dict(parse_qsl(m.query))
    if m.scheme == "mongodb+srv":
        extra["srv"] = True
    out[CONN_MONGO] = {"conn_type": "mongo", "host": host, "port": port, "login": login, "password": password,
                       "schema": m.path.lstrip("/") or None, "extra": extra}

    r = urlsplit(settings.redis_url)
    host, port, login, password = _split_netloc(r.netloc)
    extra = dict(parse_qsl(r.query))
    extra["db"] = int(r.path.lstrip("/") or 0)
    if r.scheme == "rediss":
        extra["ssl"] = True
    out[CONN_REDIS] = {"conn_type": "redis", "host": host, "port": port, "login": login, "password": password,
                       "extra": extra}

    out[CONN_CASSANDRA] = {"conn_type": "cassandra", "host": settings.cassandra_hosts,
                           "port": settings.cassandra_port, "login": settings.cassandra_username or None,
                           "password": settings.cassandra_password or None}

    n = urlsplit(settings.neo4j_uri)
    host, port, login, password = _split_netloc(n.netloc)
    scheme, _, security = n.scheme.partition("+")
    extra = {}
    if scheme == "neo4j":
        extra["neo4j_scheme"] = True
    if security == "s":
        extra["certs_trusted_ca"] = True
    elif security == "ssc":
        extra["certs_self_signed"] = True
    out[CONN_NEO4J] = {"conn_type": "neo4j", "host": host, "port": port,
                       "login": settings.neo4j_user or login, "password": settings.neo4j_password or password,
                       "extra": extra}
    return {cid: {k: v for k, v in c.items() if v not in (None, {}, "")} for cid, c in out.items()}


def _store_fields(conn_id: str, conn: Any) -> dict[str, Any]:
    """Settings fields from an Airflow connection (``airflow.sdk.Connection``)."""
    extra = dict(conn.extra_dejson)
    if conn_id == CONN_MONGO:
        scheme = "mongodb+srv" if _truthy(extra.pop("srv", False)) else "mongodb"
        if _truthy(extra.pop("allow_insecure", False)):
            extra["tlsAllowInvalidCertificates"] = True
        query = urlencode({k: _query_value(v) for k, v in extra.items()})
        netloc = _netloc(conn.host, conn.port, conn.login, conn.password)
        return {"mongo_uri": urlunsplit((scheme, netloc, "/" + (conn.schema or ""), query, ""))}
    if conn_id == CONN_REDIS:
        scheme = "rediss" if _truthy(extra.pop("ssl", False)) else "redis"
        db = extra.pop("db", 0)
        query = urlencode({k: _query_value(v) for k, v in extra.items()})
        netloc = _netloc(conn.host, conn.port, conn.login, conn.password)
        return {"redis_url": urlunsplit((scheme, netloc, f"/{db if db is not None else 0}", query, ""))}
    if conn_id == CONN_CASSANDRA:
        fields: dict[str, Any] = {"cassandra_hosts": conn.host or "", "cassandra_username": conn.login or "",
                                  "cassandra_password": conn.password or ""}
        if conn.port:
            fields["cassandra_port"] = int(conn.port)
        return fields
    if conn_id == CONN_NEO4J:
        scheme = "neo4j" if _truthy(extra.get("neo4j_scheme")) else "bolt"
        if _truthy(extra.get("certs_self_signed")):
            scheme += "+ssc"
        elif _truthy(extra.get("certs_trusted_ca")):
            scheme += "+s"
        return {"neo4j_uri": f"{scheme}://{conn.host}:{conn.port or 7687}", "neo4j_user": conn.login or "",
                "neo4j_password": conn.password or ""}
    raise KeyError(conn_id)


def settings_from_connections(settings: Settings) -> Settings:
    """Inside an Airflow task: the store fields (mongo_uri, redis_url, cassandra_hosts/port/
    username/password, neo4j_uri/user/password) from the ``learntrack_*`` connections where they
    are defined (environment, secrets backend or metadata DB); a missing connection keeps the
    settings value."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    overrides: dict[str, Any] = {}
    for conn_id in (CONN_MONGO, CONN_REDIS, CONN_CASSANDRA, CONN_NEO4J):
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            continue
        overrides.update(_store_fields(conn_id, conn))
    return settings.with_overrides(**overrides) if overrides else settings


# --------------------------------------------------------------------------------------------
# configuration: one function builds the environment of every Airflow process

def api_url(settings: Settings) -> str:
    return f"http://{settings.stack_host}:{settings.airflow_api_port}"


def metadata_db_url(settings: Settings) -> str:
    user = _db_identifier(settings)
    return (f"postgresql+psycopg2://{user}:{quote(db_password(settings), safe='')}@{settings.stack_host}:"
            f"{settings.postgres_port}/{user}")


def airflow_env(settings: Settings) -> dict[str, str]:
    """The full environment of an Airflow process: ``os.environ``, the LearnTrack settings as
    ``LEARNTRACK_*`` (tasks see the same settings), and Airflow's configuration as
    ``AIRFLOW__SECTION__KEY``. Creates the Airflow home and the secret files on first use.

    Layout, addresses, secrets and connections are always ours; the tunables (executor,
    parallelism, tasks per DAG, pause at creation) keep an ``AIRFLOW__...`` value already set in
    the environment, so a deployment changes them without code."""
    home = settings.airflow_home_path
    plugins_dir = home / "plugins"
    plugins_dir.mkdir(parents=True, exist_ok=True)
    base = api_url(settings)
    env = dict(os.environ)
    env.update(settings.to_env())
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        # Not <repo>/plugins: Airflow imports every .py file of its plugins folder as a top-level
        # module in every component (cli, settings, pipeline, ...), and the dag-processor's parsing
        # processes then inherit stale copies of edited learntrack modules. learntrack is an
        # installed package; this folder is for real Airflow plugins (none yet).
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db_url(settings),
        "AIRFLOW__CORE__FERNET_KEY": _secret(settings, "fernet.key", _fernet_key),
        # One api-server serves the UI, the public REST API and the execution API the task
        # runners of the LocalExecutor talk to.
        "AIRFLOW__API__HOST": settings.stack_host,
        "AIRFLOW__API__PORT": str(settings.airflow_api_port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__SECRET_KEY": _secret(settings, "api-secret.key", lambda: secrets.token_urlsafe(32)),
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(settings, "jwt-secret.key", lambda: secrets.token_urlsafe(48)),
        "AIRFLOW__API_AUTH__JWT_ISSUER": f"learntrack-local-{settings.airflow_db_name}",
        # Authentication on: SimpleAuthManager (Airflow's default) with one admin whose password
        # we generate; never "everyone is admin".
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONWARNINGS": "ignore",
    })
    admin_password(settings)  # the passwords file exists before the api-server reads it
    if not settings.pipeline_start_date:
        env["LEARNTRACK_PIPELINE_START_DATE"] = pipeline_start_date(settings)
    for conn_id, conn in connections(settings).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    for key, value in {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",  # 2 cores: Spark tasks are heavy
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "3",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }.items():
        env[key] = os.environ.get(key, value)
    return env


def pipeline_start_date(settings: Settings) -> str:
    """The daily DAG's first day in this Airflow home when ``pipeline_start_date`` is not set: the
    day the local Airflow was first configured minus 3 days (kept in ``<airflow home>/
    pipeline_start_date``), so the scheduler catches up a few days and never floods."""
    path = settings.airflow_home_path / "pipeline_start_date"
    if not path.exists():
        first = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=3)
        path.write_text(first.isoformat() + "\n")
    return path.read_text().strip()


def ensure_pools(settings: Settings, echo: Echo = _print) -> None:
    """The pools the DAGs use (created once through the REST API; a pool changed by hand keeps
    its slots): the single-slot lake pool, so only one task commits to the lake at a time."""
    from learntrack.airflow_tasks import LAKE_POOL

    api = AirflowApi(settings)
    try:
        existing = {p["name"]: p for p in api.pools()}
        for name, slots, description in ((LAKE_POOL, 1, "LearnTrack: one lake-writing task at a time"),):
            if name not in existing:
                api.request("POST", "/api/v2/pools", json={"name": name, "slots": slots, "description": description})
                echo(f"  pool {name}: created with {slots} slot(s)")
    finally:
        api.close()


def airflow_cli(settings: Settings, *argv: str, quiet: bool = False) -> subprocess.CompletedProcess:
    """Run ``airflow <argv>`` in the local Airflow's environment; the metadata database (and the
    PostgreSQL it lives in) is made to exist first."""
    ensure_metadata_db(settings)
    return subprocess.run([str(_airflow_exe()), *argv], env=airflow_env(settings), text=True,
                          capture_output=quiet)


def _airflow_exe() -> Path:
    return Path(sys.executable).with_name("airflow")


# --------------------------------------------------------------------------------------------
# metadata database: a database and a role of their own in the local stack's PostgreSQL

def _db_identifier(settings: Settings) -> str:
    name = settings.airflow_db_name
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise StackError("airflow-db", f"airflow_db_name {name!r} must be a lower-case SQL identifier")
    return name


def _postgres_service():
    from learntrack.stack.services import all_services

    return next(s for s in all_services(None) if s.name == "postgres")


def drop_metadata_db(settings: Settings) -> None:
    """Drop this home's metadata database (every run and task instance it recorded); Airflow must
    be down. For tests that need a scheduler with no history."""
    from learntrack.stack.services import _psql

    _psql(settings, f"DROP DATABASE IF EXISTS {_db_identifier(settings)} WITH (FORCE)")


def ensure_metadata_db(settings: Settings, echo: Echo | None = None) -> None:
    """Create (idempotently) the role and database ``airflow_db_name`` in the local PostgreSQL and
    set the role's password to the one in ``<airflow home>/secrets`` (starts PostgreSQL if needed).
    The password goes to psql on stdin, never on a command line. The database is claimed by the
    first Airflow home that uses it; another home with the same name is refused (StackError)."""
    from learntrack.stack.manager import StackManager
    from learntrack.stack.services import _psql

    StackManager(settings, [_postgres_service()], echo=echo or (lambda m: None)).up()
    name, password = _db_identifier(settings), db_password(settings)
    home = str(settings.airflow_home_path.resolve())
    try:
        # The database remembers the Airflow home it belongs to (its comment): a second home with
        # the same database name would otherwise reset the role's password under the first one.
        owner = _psql(settings, f"SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
                                f"WHERE datname = '{name}'").strip()
        if owner and owner != home:
            raise StackError("airflow-db", f"the metadata database {name} belongs to the Airflow home {owner}; "
                                           f"give this home ({settings.airflow_home_path}) a database of its own "
                                           "with LEARNTRACK_AIRFLOW_DB_NAME")
        _psql(settings, f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} LOGIN; END IF;
            END $$;
            ALTER ROLE {name} LOGIN PASSWORD '{password}';""")
        if not _psql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            try:
                _psql(settings, f"CREATE DATABASE {name} OWNER {name}")
            except RuntimeError as exc:
                if "already exists" not in str(exc):  # created concurrently
                    raise
        if not owner:
            _psql(settings, "COMMENT ON DATABASE {} IS '{}'".format(name, home.replace("'", "''")))
    except StackError:
        raise
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        raise StackError("airflow-db", f"could not create the metadata database {name}: {exc}",
                         settings.stack_dir / "postgres" / "postgres.log") from exc


def migrate(settings: Settings, echo: Echo = _print) -> float:
    """``airflow db migrate`` (idempotent); returns seconds taken."""
    log = run_dir(settings) / "db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "a") as fh:
        fh.write(f"\n=== learntrack airflow: db migrate at {time.ctime()}\n")
        fh.flush()
        proc = subprocess.run([str(_airflow_exe()), "db", "migrate"], env=airflow_env(settings), stdout=fh,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=settings.airflow_home_path)
    if proc.returncode != 0:
        raise StackError("airflow-db", f"airflow db migrate failed with exit code {proc.returncode}; last log "
                                       f"lines:\n{tail(log)}", log)
    took = time.monotonic() - t0
    echo(f"  metadata database {settings.airflow_db_name}: migrated in {took:.1f}s")
    return took


# --------------------------------------------------------------------------------------------
# components: one process each, state under <airflow home>/run/<name>/

@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    health_key: str | None  # key in /api/v2/monitor/health (None: the api-server itself)

    def state_dir(self, settings: Settings) -> Path:
        return run_dir(settings) / self.name

    def log_file(self, settings: Settings) -> Path:
        return self.state_dir(settings) / f"{self.name}.log"

    def pid_file(self, settings: Settings) -> Path:
        return self.state_dir(settings) / "pid"

    def port(self, settings: Settings) -> int | None:
        return settings.airflow_api_port if self.name == "api-server" else None

    def command(self, settings: Settings) -> list[str]:
        argv = list(self.argv)
        if self.name == "api-server":
            argv += ["--host", settings.stack_host, "--port", str(settings.airflow_api_port), "--workers", "1"]
        return [str(_airflow_exe()), *argv]


# Every component reads task logs from the shared local log folder, so the log-serving side
# processes (needed only when workers run on other machines) are not started.
COMPONENTS = (
    Component("api-server", ("api-server",), None),
    Component("scheduler", ("scheduler", "--skip-serve-logs"), "scheduler"),
    Component("dag-processor", ("dag-processor",), "dag_processor"),
    Component("triggerer", ("triggerer", "--skip-serve-logs"), "triggerer"),
)


def run_dir(settings: Settings) -> Path:
    return settings.airflow_home_path / "run"


def _select(names: Iterable[str] | None) -> list[Component]:
    if not names:
        return list(COMPONENTS)
    known = {c.name: c for c in COMPONENTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(",".join(unknown), f"unknown Airflow component; known: {', '.join(known)}")
    return [known[n] for n in names]


def owned_pid(settings: Settings, comp: Component) -> int | None:
    """The pid of our own running process for ``comp`` (pid file + cwd in its state folder)."""
    pid = _read_pid(comp.pid_file(settings))
    if pid and _alive(pid) and _started_in(pid, comp.state_dir(settings)):
        return pid
    return None


def _spawn(settings: Settings, comp: Component, env: dict[str, str]) -> subprocess.Popen:
    state = comp.state_dir(settings)
    state.mkdir(parents=True, exist_ok=True)
    cmd = comp.command(settings)
    with open(comp.log_file(settings), "ab") as fh:
        fh.write(f"\n=== learntrack airflow: starting {comp.name} at {time.ctime()}\n=== {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=state,
                                start_new_session=True, env=env)
    comp.pid_file(settings).write_text(str(proc.pid))
    (state / "config.sha256").write_text(_config_digest(env))
    return proc


def _config_digest(env: dict[str, str]) -> str:
    """What a component was configured with: its LEARNTRACK_* and AIRFLOW* variables, hashed."""
    relevant = {k: v for k, v in env.items()
                if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "LEARNTRACK_")) or k == "AIRFLOW_HOME"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _heartbeat_after(health: dict, key: str, since: dt.datetime) -> bool:
    """The component's latest job is healthy and heartbeat after ``since`` (a job left by a killed
    process stays "healthy" in the health report for its threshold; this tells ours apart)."""
    part = health.get(key) or {}
    beat = part.get(f"latest_{key}_heartbeat")
    if part.get("status") != "healthy" or not beat:
        return False
    return dt.datetime.fromisoformat(beat) >= since


def health(settings: Settings, timeout: float = 3.0) -> dict:
    """GET /api/v2/monitor/health (no login needed)."""
    import httpx

    resp = httpx.get(f"{api_url(settings)}/api/v2/monitor/health", timeout=timeout)
    resp.raise_for_status()
    return resp.json()


def up(settings: Settings, echo: Echo = _print, start_stack: bool = True) -> list[ServiceStatus]:
    """Start what is not running (idempotent): the local stack, the metadata database (+ migrate),
    then the four components; wait until they are healthy, create the DAGs' pools, and wait until
    the LearnTrack DAGs are parsed and listed by the REST API. A running component whose settings
    (LEARNTRACK_*, AIRFLOW_* of :func:`airflow_env`) changed since it started is restarted.
    Raises StackError naming the component and its log."""
    t0 = time.monotonic()
    running = {c.name: owned_pid(settings, c) for c in COMPONENTS}
    if any(running.values()):  # a component started with other settings is restarted with these
        digest = _config_digest(airflow_env(settings))
        for comp in COMPONENTS:
            if running[comp.name] and _read_text(comp.state_dir(settings) / "config.sha256") != digest:
                echo(f"  {comp.name}: started with other settings (LEARNTRACK_*/AIRFLOW_*): restarting")
                down(settings, [comp.name], echo)
                running[comp.name] = None
    to_start = [c for c in COMPONENTS if not running[c.name]]
    for comp in COMPONENTS:
        if running[comp.name]:
            echo(f"  {comp.name}: already running (pid {running[comp.name]})")
    port = settings.airflow_api_port
    if not running["api-server"] and port_open(settings.stack_host, port):
        comp = COMPONENTS[0]
        raise StackError(comp.name, f"port {port} on {settings.stack_host} is already in use by a process this "
                                    "project did not start; stop it or set LEARNTRACK_AIRFLOW_API_PORT",
                         comp.log_file(settings))
    if to_start:
        if start_stack:
            from learntrack.stack.manager import StackManager

            echo("Local stack:")
            StackManager(settings, echo=echo).up()
        echo(f"Airflow metadata database {settings.airflow_db_name} on {settings.stack_host}:{settings.postgres_port}")
        ensure_metadata_db(settings, lambda m: None if "already running" in m else echo(m))
        migrate(settings, echo)
        env = airflow_env(settings)
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        procs = {}
        for comp in to_start:
            procs[comp.name] = (comp, _spawn(settings, comp, env))
            where = f" on {settings.stack_host}:{comp.port(settings)}" if comp.port(settings) else ""
            echo(f"  {comp.name}: starting{where} (log: {comp.log_file(settings)})")
        _wait_healthy(settings, procs, since, echo)
    else:
        _check_healthy(settings)
    ensure_pools(settings, echo)
    _wait_dags(settings, echo, t0)
    if to_start:
        echo(f"Airflow ready in {time.monotonic() - t0:.1f}s")
    return status(settings)


def login_hint(settings: Settings) -> str:
    return (f"UI: {api_url(settings)}  login: {settings.airflow_admin_user} / {admin_password(settings)}  "
            f"(password kept in {passwords_file(settings)})")


def _wait_healthy(settings: Settings, procs: dict[str, tuple[Component, subprocess.Popen]],
                  since: dt.datetime, echo: Echo) -> None:
    t0 = time.monotonic()
    deadline = t0 + settings.airflow_start_timeout_s
    pending = dict(procs)
    last = "no answer yet"
    while pending:
        for name, (comp, proc) in list(pending.items()):
            code = proc.poll()
            if code is not None:
                comp.pid_file(settings).unlink(missing_ok=True)
                raise StackError(name, f"exited with code {code} while starting; last log lines:\n"
                                       f"{tail(comp.log_file(settings))}", comp.log_file(settings))
        try:
            report = health(settings)
        except Exception as exc:  # noqa: BLE001 - the api-server is not answering yet
            report, last = None, f"api-server: {str(exc)[:200]}"
        if report is not None:
            for name, (comp, proc) in list(pending.items()):
                if comp.health_key is None or _heartbeat_after(report, comp.health_key, since):
                    echo(f"  {name}: healthy after {time.monotonic() - t0:.1f}s "
                         f"(pid {proc.pid}, {rss_mb(proc.pid) or 0:.0f} MB)")
                    del pending[name]
            last = json.dumps({k: (v or {}).get("status") for k, v in report.items()})
        if not pending:
            return
        if time.monotonic() > deadline:
            comp = next(iter(pending.values()))[0]
            raise StackError(comp.name, f"not healthy within {settings.airflow_start_timeout_s}s (health: {last}); "
                                        "the processes are left running for inspection", comp.log_file(settings))
        time.sleep(1.0)


def _check_healthy(settings: Settings) -> None:
    try:
        report = health(settings)
    except Exception as exc:  # noqa: BLE001
        comp = COMPONENTS[0]
        raise StackError(comp.name, f"is running but does not answer: {exc}", comp.log_file(settings)) from exc
    for comp in COMPONENTS[1:]:
        if (report.get(comp.health_key) or {}).get("status") != "healthy":
            raise StackError(comp.name, f"is running but not healthy: {report.get(comp.health_key)}",
                             comp.log_file(settings))


def _wait_dags(settings: Settings, echo: Echo, t0: float) -> None:
    """Wait until the dag-processor has parsed the LearnTrack DAGs and the REST API lists them.
    Import errors are printed as soon as they are reported (the dag-processor re-parses a file
    when it changes, so fixing it while this waits is enough)."""
    api = AirflowApi(settings)
    deadline = time.monotonic() + settings.airflow_start_timeout_s
    shown = errors = ""
    try:
        while True:
            found = {d["dag_id"]: d for d in api.dags()}
            missing = [d for d in LEARNTRACK_DAGS if d not in found]
            if not missing:
                listed = ", ".join(f"{d} ({'paused' if found[d]['is_paused'] else 'active'})"
                                   for d in LEARNTRACK_DAGS)
                echo(f"  DAGs listed by the REST API after {time.monotonic() - t0:.1f}s: {listed}")
                return
            errors = "; ".join(f"{Path(e.get('filename') or '?').name}: "
                               f"{((e.get('stack_trace') or '').strip().splitlines() or [''])[-1]}"
                               for e in api.import_errors())
            if errors and errors != shown:
                echo(f"  waiting for DAGs {', '.join(missing)}; import errors: {errors}")
                shown = errors
            if time.monotonic() > deadline:
                comp = COMPONENTS[2]
                raise StackError(comp.name, f"DAGs {', '.join(missing)} not listed by /api/v2/dags within "
                                            f"{settings.airflow_start_timeout_s}s "
                                            f"({errors or 'no import errors reported'})", comp.log_file(settings))
            time.sleep(2.0)
    finally:
        api.close()


def down(settings: Settings, names: Iterable[str] | None = None, echo: Echo = _print) -> None:
    """Stop our own processes only (pid file + cwd check): the main process gets SIGTERM and up to
    60 s to stop its children; whatever is left of its process group is then killed."""
    for comp in reversed(_select(names)):
        pid = owned_pid(settings, comp)
        if not pid:
            echo(f"  {comp.name}: not running")
            comp.pid_file(settings).unlink(missing_ok=True)
            continue
        t0 = time.monotonic()
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        while _alive(pid) and time.monotonic() - t0 < 60:
            time.sleep(0.2)
        left = _group_members(pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for member in left:
                try:
                    os.kill(member, sig)
                except OSError:
                    pass
            t1 = time.monotonic()
            while left and time.monotonic() - t1 < 10:
                time.sleep(0.2)
                left = [m for m in left if _alive(m)]
            if not left:
                break
        how = "killed" if _alive(pid) or left else "stopped"
        echo(f"  {comp.name}: {how} in {time.monotonic() - t0:.1f}s")
        comp.pid_file(settings).unlink(missing_ok=True)


def _group_members(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid``: the session our component was started in
    (start_new_session), so its children (executor workers, task runners, Spark drivers) too."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == pgid and _alive(int(proc.name)):
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


def status(settings: Settings, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    selected = _select(names)
    try:
        report: dict | None = health(settings)
    except Exception:  # noqa: BLE001
        report = None
    out = []
    for comp in selected:
        pid = owned_pid(settings, comp)
        port = comp.port(settings)
        if pid:
            if report is None:
                state = "starting/unhealthy"
            elif comp.health_key is None:
                state = "running"
            else:
                state = "running" if (report.get(comp.health_key) or {}).get("status") == "healthy" \
                    else "starting/unhealthy"
        else:
            state = "port-in-use" if port and port_open(settings.stack_host, port) else "stopped"
        out.append(ServiceStatus(comp.name, state, pid, port or 0, rss_mb(pid) if pid else None,
                                 comp.log_file(settings)))
    return out


def format_status(statuses: list[ServiceStatus]) -> str:
    lines = [f"{'component':<14} {'state':<20} {'pid':>7} {'port':>6} {'rss MB':>7}  log"]
    for s in statuses:
        rss = f"{s.rss_mb:.0f}" if s.rss_mb else "-"
        lines.append(f"{s.name:<14} {s.state:<20} {s.pid or '-':>7} {s.port or '-':>6} {rss:>7}  {s.log_file}")
    lines.append(f"{'total':<14} {'':<20} {'':>7} {'':>6} {sum(s.rss_mb or 0 for s in statuses):>7.0f}")
    return "\n".join(lines)


def logs(settings: Settings, names: Iterable[str] | None = None, lines: int = 40) -> str:
    out = []
    for comp in _select(names):
        out += [f"==> {comp.log_file(settings)} <==", tail(comp.log_file(settings), lines)]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# REST client

TERMINAL_RUN_STATES = ("success", "failed")


def _iso(value: dt.datetime | dt.date) -> str:
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), dt.timezone.utc)
    if value.tzinfo is None:
        raise ValueError(f"{value!r}: give a timezone-aware datetime (UTC)")
    return value.isoformat()


class AirflowApi:
    """The running local Airflow's public REST API (v2), logged in as the admin with a JWT from
    ``POST /auth/token`` (SimpleAuthManager)."""

    def __init__(self, settings: Settings, username: str | None = None, password: str | None = None,
                 timeout: float = 30.0):
        import httpx

        self.settings = settings
        self.base_url = api_url(settings)
        self.username = username or settings.airflow_admin_user
        self._password = password
        self._token: str | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def token(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            password = self._password if self._password is not None else admin_password(self.settings)
            resp = self.http.post("/auth/token", json={"username": self.username, "password": password})
            if resp.status_code != 201:
                raise PermissionError(f"login as {self.username} at {self.base_url}/auth/token failed: "
                                      f"{resp.status_code} {resp.text[:200]}")
            self._token = resp.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kwargs) -> Any:
        for attempt in (0, 1):
            resp = self.http.request(method, path, headers={"Authorization": f"Bearer {self.token(attempt == 1)}"},
                                     **kwargs)
            if resp.status_code != 401:
                break
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def _paged(self, path: str, key: str, params: dict | None = None) -> list[dict]:
        out: list[dict] = []
        while True:
            page = self.request("GET", path, params={**(params or {}), "limit": 100, "offset": len(out)})
            out += page[key]
            if not page[key] or len(out) >= page.get("total_entries", 0):
                return out

    # -- DAGs
    def dags(self) -> list[dict]:
        return self._paged("/api/v2/dags", "dags")

    def pools(self) -> list[dict]:
        return self._paged("/api/v2/pools", "pools")

    def import_errors(self) -> list[dict]:
        return self._paged("/api/v2/importErrors", "import_errors")

    def tasks(self, dag_id: str) -> list[str]:
        return [t["task_id"] for t in self.request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]]

    def unpause(self, dag_id: str) -> dict:
        return self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> dict:
        return self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})

    # -- runs
    def trigger(self, dag_id: str, logical_date: dt.datetime | None = None,
                data_interval: tuple[dt.datetime, dt.datetime] | None = None, conf: dict | None = None,
                run_id: str | None = None) -> str:
        """Create a manual run; returns its run id. Without ``data_interval`` the DAG's timetable
        infers it from ``logical_date``."""
        body: dict[str, Any] = {"logical_date": _iso(logical_date) if logical_date else None, "conf": conf or {}}
        if data_interval:
            body["data_interval_start"], body["data_interval_end"] = (_iso(d) for d in data_interval)
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def dag_runs(self, dag_id: str, **filters: Any) -> list[dict]:
        return self._paged(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs", {"order_by": "id", **filters})

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> dict:
        return self.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}",
                            json={"state": state})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._paged(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                           "task_instances")

    def wait(self, dag_id: str, run_ids: Iterable[str], timeout: float = 3600, echo: Echo = _print,
             poll_s: float = 2.0) -> dict[str, str]:
        """Poll until every run is success or failed; print a line whenever a task changes state.
        Returns {run_id: state}; raises TimeoutError with the current states."""
        run_ids = list(run_ids)
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        seen: dict[tuple, str | None] = {}
        while True:
            for run_id in run_ids:
                if states.get(run_id) in TERMINAL_RUN_STATES:
                    continue
                states[run_id] = self.dag_run(dag_id, run_id)["state"]
                for ti in self.task_instances(dag_id, run_id):
                    key = (run_id, ti["task_id"], ti.get("map_index", -1))
                    if ti["state"] and seen.get(key) != ti["state"]:
                        seen[key] = ti["state"]
                        echo(f"  {run_id}  {ti['task_id']:<20} {ti['state']}")
            if all(states[r] in TERMINAL_RUN_STATES for r in run_ids):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}: runs not finished after {timeout:.0f}s: {states}")
            time.sleep(poll_s)

    # -- backfills
    def backfill(self, dag_id: str, start: dt.datetime | dt.date, end: dt.datetime | dt.date,
                 reprocess: str = "completed", run_backwards: bool = False, max_active_runs: int = 1,
                 conf: dict | None = None, dry_run: bool = False) -> dict:
        body = {"dag_id": dag_id, "from_date": _iso(start), "to_date": _iso(end), "run_backwards": run_backwards,
                "reprocess_behavior": reprocess, "max_active_runs": max_active_runs, "dag_run_conf": conf or {}}
        return self.request("POST", "/api/v2/backfills/dry_run" if dry_run else "/api/v2/backfills", json=body)

    def cancel_backfill(self, backfill_id: int) -> dict:
        return self.request("PUT", f"/api/v2/backfills/{backfill_id}/cancel")

    def close(self) -> None:
        self.http.close()


def backfill(settings: Settings, dag_id: str, start: dt.datetime | dt.date, end: dt.datetime | dt.date,
             reprocess: str = "completed", run_backwards: bool = False, max_active_runs: int = 1,
             conf: dict | None = None, dry_run: bool = False) -> dict:
    """Backfill ``dag_id`` for the runs whose logical dates fall in [start, end] (both inclusive;
    a date means 00:00 UTC) through the running Airflow's REST API (``POST /api/v2/backfills``,
    the API behind ``airflow backfill create``). The scheduler creates and runs them, at most
    ``max_active_runs`` at a time. ``reprocess``: "none" (skip dates that already have a run),
    "failed" (rerun failed ones) or "completed" (rerun every existing run). ``dry_run`` returns
    the logical dates it would create ({"backfills": [...]}) and creates nothing.
    Returns the backfill (its ``id`` and dates)."""
    api = AirflowApi(settings)
    try:
        return api.backfill(dag_id, start, end, reprocess, run_backwards, max_active_runs, conf, dry_run)
    finally:
        api.close()


# --------------------------------------------------------------------------------------------
# UI proof: a headless-Chromium screenshot of a DAG's grid

def ensure_chromium() -> str:
    """The Chromium binary; installed with apt (Debian's ``chromium``) when missing."""
    from learntrack.stack.services import _apt_install

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        _apt_install("chromium", "chromium")
        found = shutil.which("chromium")
    if not found:
        raise StackError("chromium", "the chromium package installed no 'chromium' binary on PATH")
    return found


class _Cdp:
    """The least of the Chrome DevTools Protocol over the page's websocket."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=20)
        self.next_id = 0

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.ws.close()


def screenshot_grid(settings: Settings, dag_id: str, out_png: Path | str, width: int = 1600, height: int = 1000,
                    timeout: float = 90.0) -> Path:
    """Log into the running Airflow's UI with headless Chromium (the JWT from /auth/token goes into
    the ``_token`` cookie, as the login page does), open the DAG's page (its grid), wait until the
    grid shows the DAG's tasks, and save a PNG screenshot. Raises if the page never shows them."""
    import httpx

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    chromium = ensure_chromium()
    api = AirflowApi(settings)
    try:
        token, task_ids = api.token(), api.tasks(dag_id)
    finally:
        api.close()
    profile = Path(tempfile.mkdtemp(prefix="learntrack-chromium-"))
    log = settings.airflow_home_path / "run" / "chromium.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    cdp = None
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StackError("chromium", f"did not open its DevTools port (exit {proc.poll()}): {tail(log, 10)}",
                                 log)
            time.sleep(0.2)
        devtools_port = int(port_file.read_text().split()[0])
        pages = [t for t in httpx.get(f"http://127.0.0.1:{devtools_port}/json/list", timeout=10).json()
                 if t.get("type") == "page"]
        cdp = _Cdp(pages[0]["webSocketDebuggerUrl"])
        cdp.call("Network.enable")
        cdp.call("Network.setCookie", name="_token", value=token, url=api_url(settings) + "/", path="/",
                 httpOnly=False, secure=False)
        cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        cdp.call("Page.enable")
        cdp.call("Page.navigate", url=f"{api_url(settings)}/dags/{dag_id}")
        deadline, shown = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            shown = cdp.evaluate("document.body ? document.body.innerText : ''") or ""
            path = cdp.evaluate("location.pathname") or ""
            if path.startswith(f"/dags/{dag_id}") and sum(t in shown for t in task_ids) >= min(2, len(task_ids)):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the UI did not show the grid of {dag_id} within {timeout:.0f}s "
                               f"(at {cdp.evaluate('location.href')}; page text: {shown[:300]!r})")
        time.sleep(1.5)  # let the grid finish drawing
        shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        out_png.write_bytes(base64.b64decode(shot["data"]))
        return out_png
    finally:
        if cdp:
            cdp.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except OSError:
                break
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(profile, ignore_errors=True)
