"""The stack manager's contract, exercised with a tiny real server (python -m http.server)."""

import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from learntrack.settings import Settings
from learntrack.stack.manager import Service, StackError, StackManager, port_open


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_service(port: int, fail: bool = False) -> Service:
    def command(settings, state: Path):
        if fail:
            return [sys.executable, "-c", "import sys; print('boom: config invalid'); sys.exit(3)"]
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(state)]

    def ready(settings):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()

    return Service("web", lambda s: port, lambda s: None, lambda s, st: None, command, ready)


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings.from_env({}, home=str(tmp_path), stack_start_timeout_s=20)


def test_up_is_idempotent_and_down_stops_only_what_it_started(settings):
    port = free_port()
    messages = []
    mgr = StackManager(settings, [http_service(port)], echo=messages.append)
    try:
        [status] = mgr.up()
        assert status.state == "running" and status.pid
        mgr.up()
        assert any("already running" in m for m in messages)
        assert mgr.owned_pid(mgr.services[0]) == status.pid
    finally:
        mgr.down()
    assert not port_open("127.0.0.1", port)
    assert mgr.status()[0].state == "stopped"


def test_port_taken_by_someone_else_is_a_clear_error(settings, tmp_path):
    port = free_port()
    other = StackManager(settings.with_overrides(home=str(tmp_path / "other")), [http_service(port)],
                         echo=lambda m: None)
    other.up()
    try:
        mgr = StackManager(settings, [http_service(port)], echo=lambda m: None)
        with pytest.raises(StackError) as err:
            mgr.up()
        assert err.value.service == "web" and f"port {port}" in err.value.cause
        assert str(err.value.log_file).endswith("web.log")
        assert mgr.status()[0].state == "port-in-use"
        mgr.down()  # not ours: must not stop the other process
        assert port_open("127.0.0.1", port)
    finally:
        other.down()


def test_a_process_that_dies_at_start_reports_its_log(settings):
    mgr = StackManager(settings, [http_service(free_port(), fail=True)], echo=lambda m: None)
    with pytest.raises(StackError) as err:
        mgr.up()
    assert "exited with code 3" in err.value.cause and "boom: config invalid" in err.value.cause
