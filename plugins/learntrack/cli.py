"""``learntrack`` command line: the local stack, sample data, pipeline runs and a readable summary."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from learntrack.settings import PROJECT_ROOT, Settings, get_settings


def echo(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# stack

def cmd_stack(args, settings: Settings) -> int:
    from learntrack.stack.manager import StackError, StackManager, tail

    mgr = StackManager(settings)
    try:
        if args.action == "install":
            echo("Installing the local stack (first time: a few minutes)...")
            mgr.install(args.services)
        elif args.action == "up":
            t0 = time.monotonic()
            echo("Starting the local stack...")
            mgr.up(args.services)
            echo(f"Stack ready in {time.monotonic() - t0:.1f}s")
            _print_status(mgr.status(args.services))
        elif args.action == "down":
            mgr.down(args.services)
        elif args.action == "status":
            statuses = mgr.status(args.services)
            _print_status(statuses)
            return 0 if all(s.state == "running" for s in statuses) else 3
        elif args.action == "logs":
            for svc in mgr._select(args.services):
                echo(f"==> {svc.log_file(settings)} <==")
                echo(tail(svc.log_file(settings), args.lines))
    except StackError as exc:
        echo(f"ERROR {exc}")
        return 2
    return 0


def _print_status(statuses) -> None:
    echo(f"{'service':<10} {'state':<20} {'pid':>7} {'port':>6} {'rss MB':>7}  log")
    for s in statuses:
        rss = f"{s.rss_mb:.0f}" if s.rss_mb else "-"
        echo(f"{s.name:<10} {s.state:<20} {s.pid or '-':>7} {s.port:>6} {rss:>7}  {s.log_file}")
    total = sum(s.rss_mb or 0 for s in statuses)
    echo(f"{'total':<10} {'':<20} {'':>7} {'':>6} {total:>7.0f}")


# --------------------------------------------------------------------------------------------
# data

def cmd_generate(args, settings: Settings) -> int:
    from learntrack.generator import GenParams, generate, load_into_mongo
    from learntrack.mongo_ops import database

    end = dt.datetime.combine(args.end, dt.time(), dt.timezone.utc)
    params = GenParams(students=args.students, courses=args.courses, days=args.days, end=end, seed=args.seed)
    t0 = time.monotonic()
    echo(f"Generating {args.students} students, {args.courses} courses, {args.days} days ending {args.end} "
         f"(seed {args.seed})...")
    data = generate(params)
    echo(f"  {len(data.activities)} activities generated in {time.monotonic() - t0:.1f}s; writing to MongoDB...")
    counts = load_into_mongo(database(settings), data)
    truth_path = settings.home_path / "generated" / f"truth-seed{args.seed}.json"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_text(json.dumps(data.truth, indent=1, default=str))
    echo(f"  written: {counts} ({time.monotonic() - t0:.1f}s); ground truth: {truth_path}")
    return 0


# --------------------------------------------------------------------------------------------
# pipeline

def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home_path
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(settings.to_env())
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONWARNINGS": "ignore",
    })
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    return env


def airflow(settings: Settings, *argv: str, quiet: bool = False) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(exe), *argv], env=airflow_env(settings), text=True,
                          capture_output=quiet)


def _progress_line(line: str) -> str | None:
    """The lines of an Airflow log a person wants to see while the DAG runs."""
    import re

    m = re.search(r"learntrack stage (\w+) result: (.*?)\s+\[learntrack\]", line)
    if m:
        return f"  done  {m.group(1):<18} {m.group(2)[:150]}"
    m = re.search(r"learntrack stage (\w+) for interval", line)
    if m:
        return f"  start {m.group(1)}"
    if "GateFailed" in line or "Task failed" in line or "ERROR" in line:
        return "  " + line.strip()[:220]
    return None


def run_dag(settings: Settings, day: dt.date, log_file: Path | None = None) -> float:
    """Run the DAG for ``day`` with ``airflow dags test``; return seconds taken."""
    t0 = time.monotonic()
    mig = airflow(settings, "db", "migrate", quiet=True)
    if mig.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{mig.stdout[-2000:]}\n{mig.stderr[-2000:]}")
    log_file = log_file or settings.home_path / "logs" / f"dag-{day.isoformat()}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    echo(f"Running DAG learntrack_pipeline for {day} (log: {log_file})...")
    with open(log_file, "w") as fh:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "dags", "test",
                                 "learntrack_pipeline", day.isoformat()], env=airflow_env(settings),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            fh.write(line)
            shown = _progress_line(line)
            if shown:
                echo(shown)
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"DAG run for {day} failed (exit {code}); see {log_file}")
    return time.monotonic() - t0


def cmd_run(args, settings: Settings) -> int:
    took = run_dag(settings, args.date)
    echo(f"DAG run for {args.date} succeeded in {took:.0f}s")
    return 0


def cmd_summary(args, settings: Settings) -> int:
    from learntrack.summary import print_summary

    print_summary(settings, args.date, echo)
    return 0


def cmd_demo(args, settings: Settings) -> int:
    """Stack up, generate, run the pipeline for the last generated day, print the summary."""
    t0 = time.monotonic()
    if cmd_stack(argparse.Namespace(action="up", services=None), settings):
        return 2
    cmd_generate(args, settings)
    day = args.end - dt.timedelta(days=1)
    took = run_dag(settings, day)
    echo(f"DAG run succeeded in {took:.0f}s")
    from learntrack.summary import print_summary

    print_summary(settings, day, echo)
    echo(f"\nDemo finished in {time.monotonic() - t0:.0f}s.")
    return 0


# --------------------------------------------------------------------------------------------

def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learntrack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stack", help="install/start/stop/inspect the local stack")
    st.add_argument("action", choices=["install", "up", "down", "status", "logs"])
    st.add_argument("services", nargs="*", help="mongo redis cassandra neo4j spark-jars (default: all)")
    st.add_argument("-n", "--lines", type=int, default=40, help="log lines for 'logs'")
    st.set_defaults(func=cmd_stack)

    today = dt.datetime.now(dt.timezone.utc).date()

    def gen_args(sp):
        sp.add_argument("--students", type=int, default=200)
        sp.add_argument("--courses", type=int, default=20)
        sp.add_argument("--days", type=int, default=3)
        sp.add_argument("--end", type=_date, default=today, help="exclusive end day of the events (default today)")
        sp.add_argument("--seed", type=int, default=7)

    g = sub.add_parser("generate", help="generate sample data into MongoDB")
    gen_args(g)
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="run the Airflow DAG for one day (airflow dags test)")
    r.add_argument("--date", type=_date, required=True)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("summary", help="print what landed in each store")
    s.add_argument("--date", type=_date, required=True)
    s.set_defaults(func=cmd_summary)

    d = sub.add_parser("demo", help="stack up + generate + pipeline + summary")
    gen_args(d)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args, get_settings())


if __name__ == "__main__":
    sys.exit(main())
