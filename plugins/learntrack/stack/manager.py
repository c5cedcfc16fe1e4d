"""Local stack manager: install, start, check and stop the real servers on loopback.

Each service runs under ``<home>/stack/<name>/`` with its own data folder, log file and pid
file. ``up`` is idempotent, waits for a real query to answer, and fails naming the service,
the cause and the log file. ``down`` stops only processes whose pid file this manager wrote
and whose command line still points at our state folder (a recycled pid is never killed).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from learntrack.settings import Settings


class StackError(RuntimeError):
    """A service could not be installed or started; the message says which, why and where."""

    def __init__(self, service: str, cause: str, log_file: Path | None = None):
        self.service, self.cause, self.log_file = service, cause, log_file
        where = f" (log: {log_file})" if log_file else ""
        super().__init__(f"{service}: {cause}{where}")


@dataclass
class Service:
    name: str
    port: Callable[[Settings], int]
    install: Callable[[Settings], None]
    prepare: Callable[[Settings, Path], None]  # render config files into the state folder
    command: Callable[[Settings, Path], list[str]]
    ready: Callable[[Settings], None]  # raises while the service cannot answer a query
    needs_java: bool = False
    after: tuple[str, ...] = ()  # services that must answer before this one starts
    run_as: Callable[[Settings], str | None] = lambda settings: None  # OS user (PostgreSQL refuses root)
    env: Callable[[Settings, Path], dict[str, str]] = lambda settings, state: {}
    stop_signal: int = signal.SIGTERM
    #: Started only when named (`stack up spark-master spark-worker`); a plain status or down
    #: includes it while it runs.
    optional: bool = False

    def state_dir(self, settings: Settings) -> Path:
        return settings.stack_dir / self.name

    def log_file(self, settings: Settings) -> Path:
        return self.state_dir(settings) / f"{self.name}.log"

    def pid_file(self, settings: Settings) -> Path:
        return self.state_dir(settings) / "pid"


@dataclass
class ServiceStatus:
    name: str
    state: str  # running | starting | stopped | port-in-use | unhealthy
    pid: int | None
    port: int
    rss_mb: float | None
    log_file: Path


# --------------------------------------------------------------------------------------------
# process helpers

def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _started_in(pid: int, state_dir: Path) -> bool:
    """True when the process runs inside ``state_dir`` (every service is spawned with it as cwd), so
    a pid recycled by an unrelated process is never taken for ours. The working directory is
    used rather than the command line because some servers (Redis) rewrite their process title."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(state_dir.resolve())
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie is not alive
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float | None:
    """Resident memory of the process and every process of its group (PostgreSQL forks workers);
    shared pages are counted once per process, so this is an upper bound."""
    try:
        pgid = os.getpgid(pid)
    except OSError:
        return None
    total = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == pgid:
                    total += _rss_kb(int(proc.name))
            except OSError:
                continue
    return total / 1024


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log yet)"


class StackManager:
    def __init__(self, settings: Settings, services: Iterable[Service] | None = None,
                 echo: Callable[[str], None] | None = None):
        from learntrack.stack.services import all_services

        self.settings = settings
        self.services = list(services) if services is not None else all_services(settings)
        self.echo = echo or (lambda msg: print(msg, flush=True))

    # ---------------------------------------------------------------------------------------
    def owned_pid(self, svc: Service) -> int | None:
        """The pid of our own running process for ``svc``, or None."""
        pid = _read_pid(svc.pid_file(self.settings))
        if pid and _alive(pid) and _started_in(pid, svc.state_dir(self.settings)):
            return pid
        return None

    def install(self, names: Iterable[str] | None = None) -> None:
        """Install what is missing: the selected services, and (for all) the Spark/Delta jars, the
        Grafana dashboards' schema check, the compose file's validator and the report test's browser."""
        if not names:
            from learntrack.stack.services import (install_compose_validator, install_grafana_schema_check,
                                                   install_report_browser, install_spark_jars)

            install_spark_jars(self.settings)
            install_grafana_schema_check(self.settings)
            install_compose_validator(self.settings)
            install_report_browser(self.settings)
        for svc in self._select(names):
            if svc.needs_java:
                check_java(svc.name)
            t0 = time.monotonic()
            svc.install(self.settings)
            took = time.monotonic() - t0
            if took > 1:
                self.echo(f"  {svc.name}: installed in {took:.0f}s")

    def up(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        selected = self._with_dependencies(self._select(names))
        self.install([s.name for s in selected])
        to_start = []
        for svc in selected:  # check every port before starting anything
            if self.owned_pid(svc):
                self.echo(f"  {svc.name}: already running")
                continue
            port = svc.port(self.settings)
            if port_open(self.settings.stack_host, port):
                raise StackError(
                    svc.name,
                    f"port {port} on {self.settings.stack_host} is already in use by a process "
                    "this stack did not start; stop it or set the port in settings",
                    svc.log_file(self.settings),
                )
            to_start.append(svc)
        # Start in waves: a service starts once the services it comes after answer.
        done = {s.name for s in selected if s not in to_start}
        while to_start:
            wave = [s for s in to_start if all(d in done or d not in {x.name for x in to_start}
                                                 for d in s.after)]
            if not wave:
                raise StackError(",".join(s.name for s in to_start), "circular 'after' dependencies")
            starting: dict[str, tuple[Service, subprocess.Popen]] = {}
            for svc in wave:
                starting[svc.name] = (svc, self._spawn(svc))
                self.echo(f"  {svc.name}: starting on {self.settings.stack_host}:{svc.port(self.settings)}")
            self._wait_ready(starting)
            done |= {s.name for s in wave}
            to_start = [s for s in to_start if s not in wave]
        for svc in selected:  # already-running services must answer too
            self._check_ready(svc)
        return self.status([s.name for s in selected])

    def down(self, names: Iterable[str] | None = None) -> None:
        for svc in reversed(self._select(names, running_optional=True)):
            pid = self.owned_pid(svc)
            if not pid:
                self.echo(f"  {svc.name}: not running")
                svc.pid_file(self.settings).unlink(missing_ok=True)
                continue
            t0 = time.monotonic()
            _signal_group(pid, svc.stop_signal)
            while _alive(pid) and time.monotonic() - t0 < 60:
                time.sleep(0.2)
            if _alive(pid):
                _signal_group(pid, signal.SIGKILL)
                self.echo(f"  {svc.name}: killed after 60s without a clean exit")
            else:
                self.echo(f"  {svc.name}: stopped in {time.monotonic() - t0:.1f}s")
            svc.pid_file(self.settings).unlink(missing_ok=True)

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        out = []
        for svc in self._select(names, running_optional=True):
            pid = self.owned_pid(svc)
            port = svc.port(self.settings)
            if pid:
                try:
                    svc.ready(self.settings)
                    state = "running"
                except Exception:  # noqa: BLE001 - any failure means "not answering yet"
                    state = "starting/unhealthy"
            else:
                state = "port-in-use" if port_open(self.settings.stack_host, port) else "stopped"
            out.append(ServiceStatus(svc.name, state, pid, port, rss_mb(pid) if pid else None,
                                     svc.log_file(self.settings)))
        return out

    # ---------------------------------------------------------------------------------------
    def _select(self, names: Iterable[str] | None, running_optional: bool = False) -> list[Service]:
        """The named services; none named: every service but the optional ones (those too while
        they run, with ``running_optional``)."""
        if not names:
            return [s for s in self.services if not s.optional or (running_optional and self.owned_pid(s))]
        wanted = list(names)
        known = {s.name: s for s in self.services}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise StackError(",".join(unknown), f"unknown service; known: {', '.join(known)}")
        return [known[n] for n in wanted]

    def _with_dependencies(self, selected: list[Service]) -> list[Service]:
        known = {s.name: s for s in self.services}
        names = {s.name for s in selected}
        pending = list(selected)
        while pending:
            for dep in pending.pop().after:
                if dep not in names:
                    names.add(dep)
                    pending.append(known[dep])
        return [s for s in self.services if s.name in names]

    def _spawn(self, svc: Service) -> subprocess.Popen:
        state = svc.state_dir(self.settings)
        (state / "data").mkdir(parents=True, exist_ok=True)
        svc.prepare(self.settings, state)
        log = svc.log_file(self.settings)
        cmd = svc.command(self.settings, state)
        with open(log, "ab") as fh:
            fh.write(f"\n=== learntrack stack: starting {svc.name} at {time.ctime()}\n"
                     f"=== {' '.join(cmd)}\n".encode())
            fh.flush()
            user = svc.run_as(self.settings)
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=state, start_new_session=True, env={**os.environ, **svc.env(self.settings, state)},
                                    user=user, group=user, extra_groups=[] if user else None)
        svc.pid_file(self.settings).write_text(str(proc.pid))
        return proc

    def _check_ready(self, svc: Service) -> None:
        try:
            svc.ready(self.settings)
        except Exception as exc:  # noqa: BLE001
            raise StackError(svc.name, f"is running but does not answer: {exc}",
                             svc.log_file(self.settings)) from exc

    def _wait_ready(self, starting: dict[str, tuple[Service, subprocess.Popen]]) -> None:
        deadline = time.monotonic() + self.settings.stack_start_timeout_s
        t0 = time.monotonic()
        pending = dict(starting)
        last_err: dict[str, str] = {}
        while pending:
            for name, (svc, proc) in list(pending.items()):
                code = proc.poll()
                if code is not None:
                    svc.pid_file(self.settings).unlink(missing_ok=True)
                    raise StackError(
                        name, f"exited with code {code} while starting; last log lines:\n"
                        f"{tail(svc.log_file(self.settings))}", svc.log_file(self.settings))
                if not port_open(self.settings.stack_host, svc.port(self.settings)):
                    last_err[name] = "port not open yet"
                    continue
                try:
                    svc.ready(self.settings)
                except Exception as exc:  # noqa: BLE001
                    last_err[name] = str(exc)[:200]
                    continue
                self.echo(f"  {name}: ready after {time.monotonic() - t0:.1f}s "
                          f"(pid {proc.pid}, {rss_mb(proc.pid) or 0:.0f} MB)")
                del pending[name]
            if not pending:
                break
            if time.monotonic() > deadline:
                name, (svc, proc) = next(iter(pending.items()))
                raise StackError(
                    name, f"did not answer within {self.settings.stack_start_timeout_s}s "
                    f"({last_err.get(name, '?')}); the process is left running for inspection",
                    svc.log_file(self.settings))
            time.sleep(1.0)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def check_java(service: str) -> str:
    java = shutil.which("java")
    if not java:
        raise StackError(service, "needs Java 17 ('java' is not on PATH); install openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    first = out.splitlines()[0] if out else ""
    if '"17' not in first:
        raise StackError(service, f"needs Java 17 as the default 'java'; found: {first}")
    return java


def run_install_script(service: str, script: Path, target: Path) -> None:
    """Run an idempotent resources/<svc>/install.sh, streaming its progress lines."""
    proc = subprocess.run(["bash", str(script), str(target)], stdout=sys.stdout, stderr=sys.stderr)
    if proc.returncode != 0:
        raise StackError(service, f"install script {script} failed with exit code {proc.returncode}")
