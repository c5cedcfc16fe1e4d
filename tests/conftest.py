"""Shared fixtures. Integration and end-to-end tests use the real local stack that
`learntrack stack up` started (the Makefile's `test` target starts it), in their own namespaces:
MongoDB database `lt_test`, Cassandra keyspace `lt_test`, Redis db 1 / prefix `lt_test`, a lake and
Airflow home under .local/test. Neo4j community has a single database: tests wipe its graph."""

from __future__ import annotations

import os
import shutil

import pytest

from learntrack.settings import PROJECT_ROOT, Settings

# Airflow reads its configuration at import: point it at a test home before anything imports it.
os.environ.setdefault("AIRFLOW_HOME", str(Settings.from_env().home_path / "test" / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    s = Settings.from_env()
    test_home = s.home_path / "test"
    return s.with_overrides(
        mongo_db="lt_test", cassandra_keyspace="lt_test", redis_url=s.redis_url.rsplit("/", 1)[0] + "/1",
        redis_prefix="lt_test", neo4j_namespace="lt_test", lake_root=str(test_home / "lake"), airflow_home=str(test_home / "airflow"),
        airflow_db_name="airflow_test",  # a metadata database belongs to one Airflow home
    )


@pytest.fixture(scope="session")
def stack(base_settings):
    """Fail clearly (not skip) when the stack is not up: these tests exist to run against it."""
    from learntrack.stack.manager import StackManager

    statuses = StackManager(base_settings, echo=lambda m: None).status()
    down = [f"{s.name}={s.state}" for s in statuses if s.state != "running"]
    if down:
        pytest.fail(f"local stack not running ({', '.join(down)}); run `learntrack stack up` (make test does)")
    return base_settings


@pytest.fixture(scope="session")
def spark(base_settings):
    from lake.spark import spark_session

    session = spark_session(base_settings, app_name="learntrack-tests")
    yield session
    session.stop()


@pytest.fixture()
def fresh_lake(base_settings, tmp_path):
    """Settings whose lake is a new empty folder."""
    return base_settings.with_overrides(lake_root=str(tmp_path / "lake"), home=str(tmp_path / "home"))


def wipe_home_dirs(settings: Settings) -> None:
    for p in (settings.lake_uri, str(settings.airflow_home_path)):
        shutil.rmtree(p, ignore_errors=True)
