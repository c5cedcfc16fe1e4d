"""The services of the local stack: how each is installed, configured, launched and probed.

Install scripts and config templates live in ``resources/<service>/`` beside this file (each has a
README with measured figures). Everything listens on ``settings.stack_host`` (loopback).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from string import Template

from learntrack.settings import Settings
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


# ---------------------------------------------------------------------------------------- mongo
def _mongo_command(settings: Settings, state: Path) -> list[str]:
    return [str(settings.tools_dir / "ferretdb" / "ferretdb"),
            "--handler=sqlite", f"--sqlite-url=file:{state / 'data'}/",
            f"--listen-addr={settings.stack_host}:{settings.mongo_port}",
            f"--state-dir={state}", "--telemetry=disable", "--log-level=WARN",
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
    if shutil.which("redis-server"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError("redis", "redis-server is not installed; install Debian's redis-server package")
    print("redis: installing Debian package redis-server", flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0:
            raise StackError("redis", f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")


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
    # The launcher is compiled by install.sh (faster start and ~50 MB less than source-file mode).
    return ["java", *_jvm_options("neo4j"), "-cp", f"{tools / 'lib'}/*:{tools / 'classes'}", "Launcher",
            str(state / "data"), f"{settings.stack_host}:{settings.neo4j_bolt_port}"]


def _neo4j_ready(settings: Settings) -> None:
    from neo4j import GraphDatabase

    with GraphDatabase.driver(f"bolt://{settings.stack_host}:{settings.neo4j_bolt_port}", auth=None,
                              connection_timeout=3) as driver:
        driver.execute_query("RETURN 1")


def _spark_jars_install(settings: Settings) -> None:
    run_install_script("spark-jars", RESOURCES / "spark" / "install.sh", settings.jars_dir)


def all_services() -> list[Service]:
    return [
        Service("mongo", lambda s: s.mongo_port, _install_with_script("ferretdb"), _no_prepare, _mongo_command,
                _mongo_ready),
        Service("redis", lambda s: s.redis_port, _redis_install, _no_prepare, _redis_command, _redis_ready),
        Service("cassandra", lambda s: s.cassandra_port, _install_with_script("cassandra"), _cassandra_prepare,
                _cassandra_command, _cassandra_ready, needs_java=True),
        Service("neo4j", lambda s: s.neo4j_bolt_port, _install_with_script("neo4j"), _no_prepare,
                _neo4j_command, _neo4j_ready, needs_java=True),
    ]


def install_spark_jars(settings: Settings) -> None:
    _spark_jars_install(settings)

