"""The local Airflow (`learntrack airflow up|down|status|logs`): its configuration, secrets and
connections (no servers needed), then the real thing against the local stack: four components on
PostgreSQL with authentication on, the DAGs listed by the REST API, a triggered run picked up by
the scheduler, a backfill, a screenshot of the UI's grid, and a clean stop.

The stack tests run their own Airflow: home under the test home, api-server on port 8089 and the
metadata database ``airflow_test``, so a developer's Airflow on 8080 is left alone."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from learntrack import airflow_local as af
from learntrack.settings import Settings
from learntrack.stack.manager import StackError, _alive, _started_in, port_open

UTC = dt.timezone.utc
STORE_FIELDS = ("mongo_uri", "redis_url", "cassandra_hosts", "cassandra_port", "cassandra_username",
                "cassandra_password", "neo4j_uri", "neo4j_user", "neo4j_password")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def tmp_settings(tmp_path, monkeypatch) -> Settings:
    for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__PARALLELISM"):
        monkeypatch.delenv(key, raising=False)
    return Settings.from_env({}, home=str(tmp_path), airflow_api_port=free_port())


# ------------------------------------------------------------------------------ configuration
def test_env_is_production_shaped_and_every_key_is_a_real_airflow_option(tmp_settings):
    from airflow.configuration import conf

    env = af.airflow_env(tmp_settings)
    port = tmp_settings.airflow_api_port
    assert env["AIRFLOW_HOME"] == str(tmp_settings.airflow_home_path)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        f"postgresql+psycopg2://airflow:{af.db_password(tmp_settings)}@127.0.0.1:{tmp_settings.postgres_port}/airflow")
    assert env["AIRFLOW__API__BASE_URL"] == f"http://127.0.0.1:{port}"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{port}/execution/"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags")
    # Tasks see the same settings; the daily DAG's first day is fixed at the first start (minus 3 days).
    first_day = (dt.datetime.now(UTC).date() - dt.timedelta(days=3)).isoformat()
    assert {k: v for k, v in env.items() if k.startswith("LEARNTRACK_")} == \
        {**tmp_settings.to_env(), "LEARNTRACK_PIPELINE_START_DATE": first_day}
    assert af.airflow_env(tmp_settings.with_overrides(pipeline_start_date="2026-02-01"))[
        "LEARNTRACK_PIPELINE_START_DATE"] == "2026-02-01"
    # A misspelt or removed option would be silently ignored by Airflow: check each against the
    # installed Airflow's own description of its configuration.
    described = conf.configuration_description
    unknown = [k for k in env if k.startswith("AIRFLOW__") and
               k.split("__")[2].lower() not in described.get(k.split("__")[1].lower(), {}).get("options", {})]
    assert not unknown, unknown


def test_tunables_defer_to_airflow_variables_already_set(tmp_settings, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "16")
    env = af.airflow_env(tmp_settings)
    assert env["AIRFLOW__CORE__PARALLELISM"] == "16"
    assert env["AIRFLOW__API__PORT"] == str(tmp_settings.airflow_api_port)  # addresses stay ours


def test_secrets_are_generated_once_private_and_per_home(tmp_settings, tmp_path):
    keys = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    first, again = af.airflow_env(tmp_settings), af.airflow_env(tmp_settings)
    assert all(first[k] == again[k] for k in keys)  # every process gets the same ones
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 48
    folder = af.secrets_dir(tmp_settings)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.iterdir())
    assert len(files) == 5 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    passwords = json.loads(af.passwords_file(tmp_settings).read_text())
    assert passwords == {"admin": af.admin_password(tmp_settings)} and len(passwords["admin"]) >= 16
    other = af.airflow_env(tmp_settings.with_overrides(home=str(tmp_path / "other")))
    assert all(other[k] != first[k] for k in keys)
    # The metadata-DB password never appears on a command line.
    for comp in af.COMPONENTS:
        assert af.db_password(tmp_settings) not in " ".join(comp.command(tmp_settings))


def test_a_taken_api_port_is_a_clear_error_naming_the_component(tmp_settings):
    with socket.socket() as other:
        other.bind(("127.0.0.1", tmp_settings.airflow_api_port))
        other.listen()
        with pytest.raises(StackError) as err:
            af.up(tmp_settings, echo=lambda m: None)
    assert err.value.service == "api-server"
    assert f"port {tmp_settings.airflow_api_port}" in err.value.cause
    assert str(err.value.log_file).endswith("api-server.log")
    assert all(s.state == "stopped" and s.pid is None for s in af.status(tmp_settings))


# ------------------------------------------------------------------------------ connections
CLUSTER = dict(
    mongo_uri="mongodb://app:p%40ss@m1:27017,m2:27017/admin?replicaSet=rs0&readPreference=secondaryPreferred",
    redis_url="rediss://:s3cret@r1:6380/2", cassandra_hosts="10.0.0.1,10.0.0.2,10.0.0.3", cassandra_port=9142,
    cassandra_username="cass", cassandra_password="pw", neo4j_uri="neo4j+s://n1:7688", neo4j_user="neo4j",
    neo4j_password="pw2")


def set_connections(monkeypatch, settings: Settings) -> None:
    for conn_id, conn in af.connections(settings).items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_store_connections_round_trip_through_airflow(monkeypatch):
    cluster = Settings.from_env({}, **CLUSTER)
    set_connections(monkeypatch, cluster)
    local = Settings.from_env({})
    assert all(getattr(local, f) != getattr(cluster, f) for f in ("mongo_uri", "redis_url", "neo4j_uri"))
    back = af.settings_from_connections(local)
    assert {f: getattr(back, f) for f in STORE_FIELDS} == {f: getattr(cluster, f) for f in STORE_FIELDS}
    assert back.mongo_db == local.mongo_db  # only the store addresses and credentials come from connections


def test_the_providers_read_the_connections_as_the_settings_mean_them(monkeypatch):
    from airflow.providers.apache.cassandra.hooks.cassandra import CassandraHook
    from airflow.providers.mongo.hooks.mongo import MongoHook
    from airflow.providers.neo4j.hooks.neo4j import Neo4jHook
    from airflow.providers.redis.hooks.redis import RedisHook

    set_connections(monkeypatch, Settings.from_env({}, **CLUSTER))
    mongo = MongoHook(af.CONN_MONGO)
    assert mongo.uri == "mongodb://app:p%40ss@m1:27017,m2:27017/admin"
    assert mongo.extras == {"replicaSet": "rs0", "readPreference": "secondaryPreferred"}
    redis_kwargs = RedisHook(af.CONN_REDIS).get_conn().connection_pool.connection_kwargs
    assert (redis_kwargs["host"], redis_kwargs["port"], redis_kwargs["db"], redis_kwargs["password"]) == \
        ("r1", 6380, 2, "s3cret")
    cluster = CassandraHook(af.CONN_CASSANDRA).get_cluster()
    assert cluster.contact_points == ["10.0.0.1", "10.0.0.2", "10.0.0.3"] and cluster.port == 9142
    neo4j = Neo4jHook(af.CONN_NEO4J)
    assert neo4j.get_uri(neo4j.get_connection(af.CONN_NEO4J)) == "neo4j+s://n1:7688"


def test_missing_connections_keep_the_settings(monkeypatch):
    for conn_id in (af.CONN_MONGO, af.CONN_REDIS, af.CONN_CASSANDRA, af.CONN_NEO4J):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    settings = Settings.from_env({}, mongo_uri="mongodb://h:1/", redis_url="redis://h:2/3")
    assert af.settings_from_connections(settings) == settings
    monkeypatch.setenv("AIRFLOW_CONN_LEARNTRACK_REDIS", json.dumps(
        {"conn_type": "redis", "host": "r9", "port": 6390, "extra": {"db": 4}}))
    changed = af.settings_from_connections(settings)
    assert changed.redis_url == "redis://r9:6390/4" and changed.mongo_uri == "mongodb://h:1/"


# ------------------------------------------------------------------------------ the real thing
@pytest.fixture(scope="module")
def airflow_up(stack):
    settings = stack.with_overrides(airflow_api_port=8089, airflow_db_name="airflow_test")
    af.down(settings, echo=lambda m: None)  # leftovers of an interrupted run
    messages: list[str] = []
    t0 = time.monotonic()
    statuses = af.up(settings, echo=messages.append)
    took = time.monotonic() - t0
    print(f"\nairflow up (stack running) took {took:.1f}s; " +
          ", ".join(f"{s.name} {s.rss_mb:.0f} MB" for s in statuses))
    yield settings, statuses, messages
    af.down(settings, echo=lambda m: None)


@pytest.fixture()
def api(airflow_up):
    client = af.AirflowApi(airflow_up[0])
    yield client
    client.close()


@pytest.mark.stack
def test_up_starts_four_healthy_components_and_lists_the_dags(airflow_up, api):
    settings, statuses, messages = airflow_up
    assert [s.name for s in statuses] == ["api-server", "scheduler", "dag-processor", "triggerer"]
    assert all(s.state == "running" and s.pid and s.rss_mb for s in statuses), statuses
    assert len({s.pid for s in statuses}) == 4
    health = af.health(settings)
    assert all(health[k]["status"] == "healthy" for k in ("metadatabase", "scheduler", "dag_processor",
                                                          "triggerer")), health
    assert {"learntrack_pipeline", "learntrack_maintenance"} <= {d["dag_id"] for d in api.dags()}
    assert any("DAGs listed by the REST API" in m for m in messages)
    pool = api.request("GET", "/api/v2/pools/learntrack_lake")
    assert pool["slots"] == 1
    # The metadata database is PostgreSQL's airflow_test, reached with the role's own password.
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=settings.postgres_port, dbname="airflow_test",
                          user="airflow_test", password=af.db_password(settings)) as db:
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM dag WHERE dag_id LIKE 'learntrack_%'")
            assert cur.fetchone()[0] == 2


@pytest.mark.stack
def test_second_up_is_idempotent(airflow_up):
    settings, statuses, _ = airflow_up
    messages: list[str] = []
    again = af.up(settings, echo=messages.append)
    assert [s.pid for s in again] == [s.pid for s in statuses]
    assert sum("already running" in m for m in messages) == 4
    assert not any("starting" in m for m in messages)


@pytest.mark.stack
def test_authentication_is_on(airflow_up, api):
    import httpx

    base = af.api_url(airflow_up[0])
    assert httpx.get(f"{base}/api/v2/dags").status_code == 401
    assert httpx.post(f"{base}/auth/token", json={"username": "admin", "password": "wrong"}).status_code == 401
    with pytest.raises(PermissionError):
        af.AirflowApi(airflow_up[0], password="wrong").dags()
    assert api.dags()  # the admin's generated password works


@pytest.mark.stack
def test_the_cli_reports_status_and_up_again_exits_0(airflow_up):
    settings = airflow_up[0]
    env = {**os.environ, **settings.to_env()}
    learntrack = [sys.executable, "-m", "learntrack.cli"]
    proc = subprocess.run([*learntrack, "airflow", "status"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert any(line.startswith(name) and " running " in line for line in proc.stdout.splitlines()), proc.stdout
    proc = subprocess.run([*learntrack, "airflow", "up"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already running" in proc.stdout and f"UI: http://127.0.0.1:{settings.airflow_api_port}" in proc.stdout


@pytest.mark.stack
def test_a_triggered_run_is_picked_up_by_the_scheduler(airflow_up, api):
    """Trigger, unpause, and wait until the scheduler starts the run (moves it out of queued or
    queues its first task); then fail it and pause again, so no pipeline work is left running."""
    dag_id = "learntrack_pipeline"
    now = int(time.time())
    run_id = f"lt_test_{now}"
    day = dt.datetime.combine(dt.datetime.now(UTC).date() - dt.timedelta(days=1), dt.time(), UTC)  # closed
    logical = day + dt.timedelta(seconds=now % 3600)  # unique: the schedule may have a run for `day`
    got = api.trigger(dag_id, logical_date=logical, data_interval=(day, day + dt.timedelta(days=1)),
                      conf={"source": "test"}, run_id=run_id)
    assert got == run_id
    run = api.dag_run(dag_id, run_id)
    assert run["state"] == "queued" and run["data_interval_start"].startswith(day.date().isoformat())
    api.unpause(dag_id)
    try:
        deadline, picked = time.monotonic() + 180, False
        while time.monotonic() < deadline and not picked:
            for other in api.dag_runs(dag_id, state=["queued", "running"]):  # e.g. the schedule's own run
                if other["dag_run_id"] != run_id:
                    api.set_run_state(dag_id, other["dag_run_id"], "failed")
            state = api.dag_run(dag_id, run_id)["state"]
            tis = [ti["state"] for ti in api.task_instances(dag_id, run_id)]
            picked = state != "queued" and any(tis)  # running, with a task scheduled or further
            time.sleep(1)
        assert picked, f"the scheduler did not start run {run_id} within 180s (state {state}, tasks {tis})"
    finally:
        api.pause(dag_id)
        if api.dag_run(dag_id, run_id)["state"] not in af.TERMINAL_RUN_STATES:
            api.set_run_state(dag_id, run_id, "failed")
    lines: list[str] = []
    assert api.wait(dag_id, [run_id], timeout=60, echo=lines.append)[run_id] == "failed"
    assert lines and all(line.split()[0] == run_id for line in lines)  # one progress line per task state
    assert run_id in {r["dag_run_id"] for r in api.dag_runs(dag_id)}


@pytest.mark.stack
def test_backfill_through_the_rest_api(airflow_up, api):
    """A dry run lists the days; a real backfill creates its runs (the DAG is paused, so they
    wait) and is cancelled."""
    settings = airflow_up[0]
    dag_id = "learntrack_pipeline"
    first = dt.date.fromisoformat(af.pipeline_start_date(settings))  # the DAG's start date here
    days = [first, first + dt.timedelta(days=1)]
    dry = af.backfill(settings, dag_id, days[0], days[1], dry_run=True)
    assert [b["logical_date"][:10] for b in dry["backfills"]] == [d.isoformat() for d in days]
    wanted = [d.isoformat() for d in days]

    def queued_for_days():  # runs for those days may exist already (earlier tests): reprocessed
        return sorted(r["logical_date"][:10] for r in api.dag_runs(dag_id, state=["queued"])
                      if r["logical_date"] and r["logical_date"][:10] in wanted)

    assert queued_for_days() == []
    created = af.backfill(settings, dag_id, days[0], days[1], reprocess="completed", max_active_runs=1)
    try:
        assert created["dag_id"] == dag_id and created["max_active_runs"] == 1
        assert queued_for_days() == wanted
    finally:
        api.cancel_backfill(created["id"])
        for r in api.dag_runs(dag_id, state=["queued", "running"]):
            api.set_run_state(dag_id, r["dag_run_id"], "failed")


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of pixels of an 8-bit RGB/RGBA, non-interlaced PNG (Chromium's)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, interlace = header[8], header[9], header[12]
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


@pytest.mark.stack
def test_the_ui_shows_the_grid_of_the_pipeline(airflow_up, tmp_path):
    settings = airflow_up[0]
    out = af.screenshot_grid(settings, "learntrack_pipeline", tmp_path / "grid.png", width=1280, height=800)
    assert out.stat().st_size > 20_000
    width, height, rows = png_pixels(out)
    assert (width, height) == (1280, 800)
    bpp = len(rows[0]) // width
    pixels = [row[i:i + 3] for row in rows[::4] for i in range(0, len(row), bpp * 4)]
    background = max(set(pixels), key=pixels.count)
    assert len(set(pixels)) >= 20, "the screenshot has almost no colours: a blank page"
    assert sum(p != background for p in pixels) > 0.02 * len(pixels)


@pytest.mark.stack
def test_up_restarts_what_was_started_with_other_settings(airflow_up):
    settings, statuses, _ = airflow_up
    changed = settings.with_overrides(extract_batch_size=settings.extract_batch_size + 1)
    messages: list[str] = []
    after = af.up(changed, echo=messages.append)
    assert sum("started with other settings" in m for m in messages) == 4, messages
    assert all(s.state == "running" for s in after)
    assert not {s.pid for s in after} & {s.pid for s in statuses}
    environ = Path(f"/proc/{after[1].pid}/environ").read_bytes().split(b"\0")
    assert f"LEARNTRACK_EXTRACT_BATCH_SIZE={changed.extract_batch_size}".encode() in environ


@pytest.mark.stack
def test_down_stops_only_ours_and_is_idempotent(airflow_up):
    settings = airflow_up[0]
    statuses = af.status(settings)
    messages: list[str] = []
    af.down(settings, echo=messages.append)
    assert sum("stopped" in m or "killed" in m for m in messages) == 4, messages
    assert all(s.state == "stopped" and s.pid is None for s in af.status(settings))
    assert not port_open("127.0.0.1", settings.airflow_api_port)
    for s in statuses:  # no process of ours is left (a recycled pid would run elsewhere)
        assert not (_alive(s.pid) and _started_in(s.pid, s.log_file.parent))
    messages.clear()
    af.down(settings, echo=messages.append)
    assert sum("not running" in m for m in messages) == 4
