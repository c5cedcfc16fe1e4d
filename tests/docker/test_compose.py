"""The production compose file: valid for Compose (``docker-compose config`` needs no engine), auth on
every store, secrets only from the env file, only Grafana and Airflow's UI published, health checks
everywhere, every image pinned to a release."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from learntrack.settings import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
REQUIRED = sorted(set(re.findall(r"\$\{(\w+):\?", str(yaml.safe_load(COMPOSE.read_text())))))  # comments aside
BUILT_HERE = "learntrack:local"
#: Images whose releases are numbered major.minor (PostgreSQL 15.8 is a release; mongo:7.0 is a moving tag).
TWO_PART_RELEASES = {"postgres"}


def _env_file(tmp_path: Path, drop: str | None = None) -> Path:
    lines = []
    for line in (DOCKER / "env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        if line.startswith("#") or "=" not in line or name == drop:
            continue
        lines.append(line if line.split("=", 1)[1] else f"{name}=t0p-{name.lower()}-0123456789")
    path = tmp_path / "test.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(env_file: Path) -> subprocess.CompletedProcess:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is not installed; `learntrack stack install` installs it (Debian package)")
    return subprocess.run([compose, "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    proc = _config(_env_file(tmp_path_factory.mktemp("compose")))
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def test_compose_validates_and_every_secret_is_mandatory(tmp_path):
    assert len(REQUIRED) >= 9, REQUIRED
    example = {ln.split("=", 1)[0] for ln in (DOCKER / "env.example").read_text().splitlines() if "=" in ln
               and not ln.startswith("#")}
    assert set(REQUIRED) <= example  # the example names every variable the file needs
    for name in REQUIRED:
        proc = _config(_env_file(tmp_path, drop=name))
        assert proc.returncode != 0, f"compose accepted an env file without {name}"
        assert name in proc.stderr and "set in docker/.env" in proc.stderr, proc.stderr


def test_only_grafana_and_the_airflow_ui_are_published_on_loopback_by_default(resolved):
    published = {name: svc["ports"] for name, svc in resolved["services"].items() if svc.get("ports")}
    assert set(published) == {"grafana", "airflow-apiserver"}
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), ports


def test_every_store_requires_authentication(resolved):
    svc = resolved["services"]
    mongo = " ".join(svc["mongo"]["entrypoint"])
    assert "--keyFile" in mongo and "--replSet rs0" in mongo and "--noauth" not in mongo
    assert svc["mongo"]["environment"]["MONGO_INITDB_ROOT_PASSWORD"]
    assert "--requirepass" in " ".join(svc["redis"]["command"])
    assert "PasswordAuthenticator" in " ".join(svc["cassandra"]["entrypoint"])
    assert "LOGIN = false" in " ".join(svc["cassandra-auth"]["entrypoint"])  # the default superuser is disabled
    assert svc["neo4j"]["environment"]["NEO4J_AUTH"].startswith("neo4j/") and svc["neo4j"]["environment"]["NEO4J_AUTH"] != "none"
    assert svc["postgres"]["environment"]["POSTGRES_PASSWORD"]
    grafana = svc["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] and grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    env = svc["airflow-scheduler"]["environment"]
    assert re.match(r"mongodb://[^:]+:[^@]+@mongo:27017/\?replicaSet=rs0", env["LEARNTRACK_MONGO_URI"])
    assert re.match(r"redis://:[^@]+@redis:6379/0", env["LEARNTRACK_REDIS_URL"])
    assert env["LEARNTRACK_CASSANDRA_PASSWORD"] and env["LEARNTRACK_NEO4J_PASSWORD"]
    assert env["LEARNTRACK_SPARK_MASTER"] == "spark://spark-master:7077"


def test_no_secret_is_written_in_the_file():
    raw = yaml.safe_load(COMPOSE.read_text())
    secret = re.compile(r"PASSWORD|SECRET|FERNET|KEY$|AUTH$")

    def walk(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{path}[{i}]")
        else:
            yield path, node

    for path, value in walk(raw):
        if secret.search(path.rsplit(".", 1)[-1]) and not path.endswith("GF_AUTH_ANONYMOUS_ENABLED"):
            assert re.search(r"\$\{\w+:\?", str(value)), f"{path} = {value!r} is not taken from the env file"
    assert "change-me" not in COMPOSE.read_text()
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=PROJECT_ROOT)
    assert ignored.returncode == 0, "docker/.env must be git-ignored"


def test_every_image_is_pinned_and_every_service_has_a_health_check(resolved):
    for name, svc in resolved["services"].items():
        image = svc["image"]
        if image != BUILT_HERE:
            repo, _, tag = image.rpartition(":")
            release = r"\d+\.\d+" if repo in TWO_PART_RELEASES else r"\d+\.\d+\.\d+"
            assert repo and re.match(release + r"(-[\w.]+)?$", tag), f"{name}: {image} is not pinned to a release"
        one_shot = svc.get("restart") == "no"
        assert one_shot or "healthcheck" in svc, f"{name} has no health check"
    assert "spark-master" in resolved["services"] and "spark-worker" in resolved["services"]
