"""What a user sees when something is wrong: one or two lines naming what failed and a hint, a
non-zero exit, no traceback, within a bounded time, and never a password."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learntrack.settings import Settings
from learntrack.stack.manager import port_open

LEARNTRACK = str(Path(sys.executable).with_name("learntrack"))
DB = "lt_test_cli_errors"
BOUND_S = 30  # no command may take longer than this to say a store is down
CLOSED = {"mongo": 27099, "redis": 6399, "cassandra": 9099, "neo4j": 7699}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment without any LEARNTRACK_* of the caller's but where the stack listens (a
    stack on other ports, as a CI beside a dev stack runs it), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LEARNTRACK_") or k.endswith("_PORT") or k == "LEARNTRACK_STACK_HOST"}
    env.pop("LEARNTRACK_DEBUG", None)
    return {**env, "LEARNTRACK_MONGO_DB": DB, "LEARNTRACK_REDIS_PREFIX": DB, **extra}  # never the demo's keys


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([LEARNTRACK, *args], capture_output=True, text=True, env=env, timeout=timeout)
    return proc, time.monotonic() - t0


def assert_clean_failure(proc: subprocess.CompletedProcess, took: float, code: int = 2) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == code, out
    assert took < BOUND_S, f"took {took:.1f}s: {out}"
    return out


@pytest.fixture(scope="module", autouse=True)
def closed_ports():
    busy = [f"{name}:{port}" for name, port in CLOSED.items() if port_open("127.0.0.1", port)]
    if busy:
        pytest.fail(f"ports these tests need closed are in use: {busy}")


# ------------------------------------------------------------------------------ stores that are down

def test_mongo_down_names_the_server_the_hint_and_its_log():
    env = cli_env(LEARNTRACK_MONGO_PORT=str(CLOSED["mongo"]))
    proc, took = run_cli("mongo", "latest", "s1", env=env)
    out = assert_clean_failure(proc, took)
    log = Settings.from_env(env).stack_dir / "mongo" / "mongo.log"
    assert f"MongoDB at 127.0.0.1:{CLOSED['mongo']} is not reachable" in out
    assert "ServerSelectionTimeoutError" in out and "learntrack stack status" in out and str(log) in out
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr


@pytest.mark.parametrize("store, variable, name", [
    ("mongo", "LEARNTRACK_MONGO_PORT", "MongoDB"),
    ("redis", "LEARNTRACK_REDIS_PORT", "Redis"),
    ("cassandra", "LEARNTRACK_CASSANDRA_PORT", "Cassandra"),
    ("neo4j", "LEARNTRACK_NEO4J_BOLT_PORT", "Neo4j"),
])
def test_summary_with_a_store_down_says_which_before_starting_spark(stack, tmp_path, store, variable, name):
    env = cli_env(**{variable: str(CLOSED[store]), "LEARNTRACK_LAKE_ROOT": str(tmp_path / "lake"),
                     "LEARNTRACK_CASSANDRA_KEYSPACE": "lt_test_cli_errors", "LEARNTRACK_REDIS_PREFIX": DB})
    proc, took = run_cli("summary", "--date", "2026-01-09", env=env)
    out = assert_clean_failure(proc, took)
    assert f"{name} at 127.0.0.1:{CLOSED[store]} is not reachable" in out
    assert "learntrack stack status" in out and str(Settings.from_env(env).stack_dir / store / f"{store}.log") in out
    assert not (tmp_path / "lake").exists(), "Spark ran although a store was down"


def test_a_remote_store_gets_a_hint_about_its_setting_not_the_local_stack():
    env = cli_env(LEARNTRACK_MONGO_URI=f"mongodb://10.255.255.1:{CLOSED['mongo']}/",
                  LEARNTRACK_MONGO_SERVER_SELECTION_TIMEOUT_S="1", LEARNTRACK_MONGO_CONNECT_TIMEOUT_S="1")
    proc, took = run_cli("mongo", "latest", "s1", env=env)
    out = assert_clean_failure(proc, took)
    assert f"MongoDB at 10.255.255.1:{CLOSED['mongo']} is not reachable" in out and "LEARNTRACK_MONGO_URI" in out
    assert "stack status" not in out


# ------------------------------------------------------------------------------ credentials

def test_the_mongo_password_is_never_printed():
    env = cli_env(LEARNTRACK_MONGO_URI=f"mongodb://lt_user:s3cret-pw@127.0.0.1:{CLOSED['mongo']}/?authSource=admin",
                  LEARNTRACK_MONGO_SERVER_SELECTION_TIMEOUT_S="2")
    proc, took = run_cli("bench", "mongo", "--activities", "10", env=env)
    out = assert_clean_failure(proc, took)
    assert "s3cret-pw" not in out
    assert f"mongodb://lt_user:***@127.0.0.1:{CLOSED['mongo']}/" in proc.stdout


@pytest.mark.parametrize("uri, shown", [
    ("mongodb://u:p%40ss@h1:27017,h2:27018/db?replicaSet=rs0", "mongodb://u:***@h1:27017,h2:27018/db?replicaSet=rs0"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("mongodb+srv://admin:x:y@cluster0.example.net/", "mongodb+srv://admin:***@cluster0.example.net/"),
    ("mongodb://127.0.0.1:27017/", "mongodb://127.0.0.1:27017/"),
    ("abfss://container@account.dfs.core.windows.net/lake", "abfss://container@account.dfs.core.windows.net/lake"),
    ("s3a://bucket/lake?secret_key=abc&region=x", "s3a://bucket/lake?secret_key=***&region=x"),
    ("in text: mongodb://a:b@h/ and bolt://n:pw@g:7687 done",
     "in text: mongodb://a:***@h/ and bolt://n:***@g:7687 done"),
])
def test_redact_uri_masks_passwords(uri, shown):
    from learntrack.cli import redact_uri

    assert redact_uri(uri) == shown


# ------------------------------------------------------------------------------ bad input

@pytest.fixture()
def cli_db(stack):
    from learntrack.mongo_ops import database

    db = database(stack.with_overrides(mongo_db=DB))
    for name in ("activities", "students"):
        db[name].drop()
    return db


@pytest.mark.stack
@pytest.mark.parametrize("changes, expected", [
    ('{"email": "a@b.org", ', "not valid JSON"),
    ("{'email': 'a@b.org'}", "not valid JSON"),
    ('["email"]', "must be a JSON object"),
])
def test_update_profile_with_bad_json_says_where(cli_db, changes, expected):
    proc, took = run_cli("mongo", "update-profile", "s1", changes, env=cli_env())
    out = assert_clean_failure(proc, took)
    assert expected in out
    if expected == "not valid JSON":
        assert "line 1 column" in out, out


@pytest.mark.stack
def test_insert_reports_bad_lines_by_number_and_inserts_the_rest(cli_db, tmp_path):
    from bson import json_util

    good = {"event_id": "cli-e1", "student_id": "s1", "course_id": "c1", "event_type": "login",
            "event_time": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "region": "eu-west"}
    lines = [json_util.dumps(good),  # 1
             '{"event_id": "cli-e2", "student_id": ',  # 2: truncated
             "",  # 3: blank, ignored
             json_util.dumps(dict(good, event_id="cli-e4")),  # 4
             "[1, 2]",  # 5: JSON, but not a document
             json_util.dumps(dict(good, event_id="cli-e6", region="atlantis"))]  # 6: fails validation
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    proc, took = run_cli("mongo", "insert", str(path), env=cli_env())
    out = assert_clean_failure(proc, took, code=1)
    assert "line 2: not valid Extended JSON" in out and "line 5: not a JSON object" in out, out
    assert "line 6: login with unknown region" in out, out
    assert sorted(d["_id"] for d in cli_db.activities.find({}, {"_id": 1})) == ["cli-e1", "cli-e4"]


def test_missing_insert_file_is_named():
    proc, took = run_cli("mongo", "insert", "/nonexistent/in.jsonl", env=cli_env())
    out = assert_clean_failure(proc, took)
    assert "/nonexistent/in.jsonl" in out and "No such file" in out


def test_a_bad_setting_is_named():
    proc, took = run_cli("mongo", "latest", "s1", env=cli_env(LEARNTRACK_REDIS_PORT="six"))
    out = assert_clean_failure(proc, took)
    assert "LEARNTRACK_REDIS_PORT='six' is not a valid int" in out


# ------------------------------------------------------------------------------ anything else

def test_unexpected_errors_are_one_line_unless_debugging(monkeypatch, capsys):
    from learntrack import cli

    def boom(args, settings):
        raise KeyError("no such thing in mongodb://u:pw@h/")

    monkeypatch.setattr(cli, "cmd_mongo", boom)
    monkeypatch.delenv("LEARNTRACK_DEBUG", raising=False)
    assert cli.main(["mongo", "sweep"]) == 1
    err = capsys.readouterr().err
    assert "KeyError" in err and "LEARNTRACK_DEBUG=1" in err and "Traceback" not in err and "pw@" not in err

    monkeypatch.setenv("LEARNTRACK_DEBUG", "1")
    assert cli.main(["mongo", "sweep"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "boom" in err


# ------------------------------------------------------------------------------ the client itself

def test_mongo_client_carries_timeouts_from_settings():
    from learntrack.mongo_ops import client

    c = client(Settings.from_env({}))
    try:
        assert c.options.server_selection_timeout == 5
        assert c.options.pool_options.connect_timeout == 5
        assert c.options.pool_options.socket_timeout == 120
        assert c.codec_options.tz_aware
    finally:
        c.close()
    c = client(Settings.from_env({"LEARNTRACK_MONGO_SOCKET_TIMEOUT_S": "600",
                                  "LEARNTRACK_MONGO_SERVER_SELECTION_TIMEOUT_S": "1.5"}))
    try:
        assert c.options.pool_options.socket_timeout == 600 and c.options.server_selection_timeout == 1.5
    finally:
        c.close()
