"""``learntrack`` command line: the local stack, sample data, pipeline runs and a readable summary."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from learntrack.settings import Settings, get_settings


def echo(msg: str = "") -> None:
    """Every line the CLI prints goes through here, with any password in a URI masked."""
    print(redact_uri(str(msg)), flush=True)


# --------------------------------------------------------------------------------------------
# errors a user sees: one or two lines naming what failed and a hint, never a traceback or a password

class CliError(Exception):
    """An error reported as its message alone (no traceback), with exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# The store-error helpers live in learntrack.store_errors (the stage runner uses them too).
from learntrack.store_errors import (STORES, redact_uri, store_addresses, store_failure,  # noqa: E402,F401
                                     store_unreachable)


def _ping_mongo(settings: Settings) -> None:
    from learntrack.mongo_ops import client

    c = client(settings)
    try:
        c.admin.command("ping")
    finally:
        c.close()


def _ping_redis(settings: Settings) -> None:
    import redis

    t = settings.store_check_timeout_s
    r = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=t, socket_timeout=t)
    try:
        r.ping()
    finally:
        r.close()


def _ping_cassandra(settings: Settings) -> None:
    import logging

    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    logging.getLogger("cassandra").addHandler(logging.NullHandler())  # its warnings repeat what we report
    t = settings.store_check_timeout_s
    auth = (PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password)
            if settings.cassandra_username else None)
    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port, auth_provider=auth,
                      load_balancing_policy=DCAwareRoundRobinPolicy(), protocol_version=5, connect_timeout=t,
                      control_connection_timeout=t)
    try:
        cluster.connect()
    finally:
        cluster.shutdown()


def _ping_neo4j(settings: Settings) -> None:
    from neo4j import GraphDatabase

    t = settings.store_check_timeout_s
    auth = (settings.neo4j_user, settings.neo4j_password) if settings.neo4j_user else None
    with GraphDatabase.driver(settings.neo4j_uri, auth=auth, connection_timeout=t,
                              connection_acquisition_timeout=t) as driver:
        driver.verify_connectivity()


_PINGS = {"mongo": _ping_mongo, "redis": _ping_redis, "cassandra": _ping_cassandra, "neo4j": _ping_neo4j}


def check_stores(settings: Settings, stores=("mongo", "redis", "cassandra", "neo4j")) -> None:
    """Raise CliError naming every store that does not answer (each within its timeout)."""
    problems = []
    for store in stores:
        t0 = time.monotonic()
        try:
            _PINGS[store](settings)
        except Exception as exc:  # noqa: BLE001 - reported below when it is a connection failure
            if store_failure(exc) is None and not isinstance(exc, OSError):
                raise
            problems.append(store_unreachable(settings, store, exc, round(time.monotonic() - t0, 1)))
    if problems:
        raise CliError("\nERROR ".join(problems))


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
    echo(f"{'service':<12} {'state':<20} {'pid':>7} {'port':>6} {'rss MB':>7}  log")
    for s in statuses:
        rss = f"{s.rss_mb:.0f}" if s.rss_mb else "-"
        echo(f"{s.name:<12} {s.state:<20} {s.pid or '-':>7} {s.port:>6} {rss:>7}  {s.log_file}")
    total = sum(s.rss_mb or 0 for s in statuses)
    echo(f"{'total':<12} {'':<20} {'':>7} {'':>6} {total:>7.0f}")


# --------------------------------------------------------------------------------------------
# data

def _gen_params(args):
    from learntrack.generator import GenParams

    end = dt.datetime.combine(args.end, dt.time(), dt.timezone.utc)
    return GenParams(students=args.students, courses=args.courses, days=args.days, end=end, seed=args.seed,
                     multi_region_rate=args.multi_region_rate, late_rate=args.late_rate,
                     duplicate_rate=args.duplicate_rate, malformed_rate=args.malformed_rate,
                     travel_rate=args.travel_rate, shared_ip_students=args.shared_ip_students)


def cmd_generate(args, settings: Settings) -> int:
    from learntrack.generator import write_to_mongo
    from learntrack.mongo_ops import database

    params = _gen_params(args)
    t0 = time.monotonic()
    echo(f"Generating into MongoDB {settings.mongo_db}: {params.students:,} students, {params.courses:,} courses, "
         f"{params.days} days ending {args.end} (seed {params.seed})")
    counts, truth = write_to_mongo(database(settings), params, progress=lambda m: echo("  " + m))
    truth_path = settings.home_path / "generated" / f"truth-seed{params.seed}.json"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_text(json.dumps(truth, indent=1, default=str))
    echo(f"  done in {time.monotonic() - t0:.1f}s: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    echo(f"  injected: {len(truth['multi_region'])} multi-region logins, {len(truth['travel'])} travel days, "
         f"{len(truth['late_event_ids'])} late, {len(truth['duplicates'])} duplicates, "
         f"{len(truth['malformed'])} malformed; ground truth: {truth_path}")
    return 0


# --------------------------------------------------------------------------------------------
# MongoDB operational query patterns

def cmd_mongo(args, settings: Settings) -> int:
    from bson import json_util

    from learntrack import mongo_ops

    if args.action == "update-profile":  # the input first: a typo needs no server to be reported
        changes = _json_object_arg(args.changes, "update-profile CHANGES")
    db = mongo_ops.database(settings)
    if args.action == "init":
        for name, state in mongo_ops.ensure_collections(db).items():
            echo(f"{name:<11} {state}")
        echo("indexes: " + ", ".join(sorted(i["name"] for i in db.activities.list_indexes())))
    elif args.action == "insert":
        docs, line_of, unreadable = _read_jsonl(args.file, json_util.loads)
        live = None
        if docs and settings.redis_live_path:  # the platform's write path: Redis follows as it writes
            from learntrack.sinks.redis_live import LiveWriter

            live = LiveWriter(settings)
        report = mongo_ops.insert_activities(db, docs, live=live) if docs else mongo_ops.InsertReport()
        echo(f"read {len(docs)} documents: {report}"
             + (f"; {len(unreadable)} lines skipped (not a JSON document)" if unreadable else ""))
        skipped = sorted(unreadable + [(line_of[index], reason) for index, reason in report.rejected])
        for line, reason in skipped:
            echo(f"  line {line}: {reason}")
        return 0 if not skipped else 1
    elif args.action == "latest":
        for d in mongo_ops.latest_activities(db, args.student, args.limit):
            extra = {k: d[k] for k in ("position_s", "score", "region") if k in d}
            echo(f"{d['event_time']:%Y-%m-%d %H:%M:%S}  {d['event_type']:<17} {d['course_id']:<8} "
                 f"{d.get('item_id') or '':<14} {extra or ''}")
        if args.explain:
            plan = mongo_ops.explain_latest(db, args.student, args.limit)
            echo(f"plan: {'index ' + plan['index'] if plan['index'] else 'collection scan (no index used)'}")
    elif args.action == "update-profile":
        try:
            doc = mongo_ops.update_profile(db, args.student, changes)
        except mongo_ops.ProfileError as exc:
            echo(f"ERROR {exc}")
            return 2
        echo(json_util.dumps(doc, indent=1))
    elif args.action == "sweep":
        for name, n in mongo_ops.sweep_write_metadata(db).items():
            echo(f"{name:<11} {n} documents stamped with write metadata")
    return 0


def _json_object_arg(text: str, what: str) -> dict:
    """A command-line argument that must be a JSON object; CliError saying where it is not."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                       f"(char {exc.pos})\n  e.g. '{{\"email\": \"a@b.org\", \"phone\": \"+1 555\"}}'") from None
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a JSON object, not {type(value).__name__}: {text[:80]}") from None
    return value


def _read_jsonl(path: str, loads) -> tuple[list[dict], list[int], list[tuple[int, str]]]:
    """(documents, the line number of each, (line number, why) of each line that is not a JSON
    object) of a file of one JSON document per line; blank lines are ignored."""
    docs, line_of, unreadable = [], [], []
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        try:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    doc = loads(line)
                except Exception as exc:  # noqa: BLE001 - json, bson and Extended JSON errors alike
                    unreadable.append((number, f"not valid Extended JSON: {type(exc).__name__}: {exc}"[:300]))
                    continue
                if not isinstance(doc, dict):
                    unreadable.append((number, f"not a JSON object (one activity document per line), "
                                               f"but {type(doc).__name__}"))
                    continue
                docs.append(doc)
                line_of.append(number)
        except UnicodeDecodeError as exc:
            raise CliError(f"{path} is not UTF-8 text (byte {exc.start} of line {len(line_of) + len(unreadable) + 1}"
                           f" or later): {exc.reason}") from None
    return docs, line_of, unreadable


def cmd_bench(args, settings: Settings) -> int:
    """On-demand benchmarks: print figures as they come, save them as JSON under <home>/benchmarks."""
    if args.target == "seed-day":
        from learntrack import seed_day

        step = args.step or "status"
        echo(f"Benchmark: one seed-scale day ({seed_day.STUDENTS:,} students, {seed_day.COURSES:,} courses, "
             f"about {seed_day.ACTIVITIES:,} activities), step {step}")
        if step == "load":
            result = seed_day.load(settings, max_parts=args.parts, echo=echo)
        elif step == "run":
            result = seed_day.run(settings, echo=echo, max_minutes=args.max_minutes)
        elif step == "reset":
            seed_day.reset(settings, echo=echo)
            return 0
        else:
            seed_day.status(settings, echo=echo)
            return 0
    elif args.target == "sql":
        from learntrack.sql_bench import bench_sql

        if args.lake:
            settings = settings.with_overrides(lake_root=args.lake)
        echo(f"Benchmark: docs/analysts.md's queries in DuckDB and Spark SQL on {settings.lake_uri}")
        result = bench_sql(settings, echo=echo)
    elif args.target == "targets":
        from learntrack.targets_bench import bench_targets

        echo(f"Benchmark: one daily DAG run on a local lake, an s3a:// lake (s3proxy) and the local Spark "
             f"cluster, {args.activities:,} activities")
        result = bench_targets(settings, args.activities, echo=echo)
    elif args.target == "lake":
        from learntrack.lake_bench import bench_lake

        echo(f"Benchmark: lake pipeline stages, {args.activities:,} activities over {args.history_days} days "
             f"(+1 daily day)")
        result = bench_lake(settings, args.activities, history_days=args.history_days, echo=echo)
    elif args.target == "stages":
        from learntrack.lake_bench import bench_stages

        echo(f"Benchmark: silver through the gold gate again on the last lake benchmark's batch, "
             f"{args.rounds} round{'s' if args.rounds != 1 else ''}")
        result = bench_stages(settings, rounds=args.rounds, echo=echo)
    elif args.target == "extract":
        from learntrack.extract_bench import bench_extract

        echo(f"Benchmark: extraction beside a plain read of the same documents, {args.activities:,} activities")
        result = bench_extract(settings, args.activities, days=args.days, keep=args.keep, echo=echo)
    elif args.target == "serving":
        from learntrack.serving_bench import run as bench_serving

        echo(f"Benchmark: serving sinks, {args.rows:,} students / rows / accesses, each beside its baseline")
        result = bench_serving(settings, students=args.rows, cassandra_rows=args.rows, accesses=args.rows, echo=echo)
    else:
        from learntrack.benchmarks import bench_mongo

        settings = settings.with_overrides(mongo_db=args.database)
        echo(f"Benchmark: MongoDB operational patterns, {args.activities:,} activities in {settings.mongo_db} "
             f"({redact_uri(settings.mongo_uri)})")
        result = bench_mongo(settings, args.activities, queries=args.queries, keep=args.keep, echo=echo)
        echo(json.dumps(result, indent=1))
    size = (args.step if args.target == "seed-day" else "lake" if args.target == "sql"
            else result["activities"] if args.target == "stages" else args.activities)
    out = settings.home_path / "benchmarks" / f"{args.target}-{size}-{int(time.time())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    echo(f"saved: {out}")
    return 0


# --------------------------------------------------------------------------------------------
# pipeline

# The local Airflow's one environment builder lives in learntrack.airflow_local.
from learntrack.airflow_local import airflow_env  # noqa: E402


def _progress_line(line: str) -> str | None:
    """The lines of an Airflow log a person wants to see while the DAG runs."""
    m = re.search(r"learntrack stage (\w+) result: (.*?)\s+\[learntrack\]", line)
    if m:
        return f"  done  {m.group(1):<18} {m.group(2)[:150]}"
    m = re.search(r"learntrack stage (\w+) for interval", line)
    if m:
        return f"  start {m.group(1)}"
    m = re.search(r"learntrack stage (\w+) progress: (.*?)(?:\s+\[learntrack\].*)?$", line.rstrip())
    if m:
        return f"        {m.group(1):<18} {m.group(2)[:150]}"
    if "GateFailed" in line or "Task failed" in line or "ERROR" in line:
        return "  " + line.strip()[:220]
    return None


def run_dag(settings: Settings, day: dt.date, log_file: Path | None = None) -> float:
    """Run the DAG for the closed day ``day`` in-process with ``airflow dags test`` (SQLite, one
    SparkSession for every task); return seconds taken. Only the data end-to-end tests use this
    shortcut: users run through the scheduler (``learntrack run``, ADR 10)."""
    t0 = time.monotonic()
    # Airflow runs no task of a run dated before the DAG's start date: start the DAG on the day.
    settings = settings.with_overrides(airflow_home=str(settings.airflow_home_path / "dags-test"),
                                       pipeline_start_date=day.isoformat())
    env = {**airflow_env(settings), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
           f"sqlite:///{settings.airflow_home_path / 'airflow.db'}", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    mig = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, text=True,
                         capture_output=True)
    if mig.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{mig.stdout[-2000:]}\n{mig.stderr[-2000:]}")
    log_file = log_file or settings.home_path / "logs" / f"dag-{day.isoformat()}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    echo(f"Running DAG learntrack_pipeline for {day} in-process (log: {log_file})...")
    with open(log_file, "w") as fh:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "dags", "test",
                                 "learntrack_pipeline",
                                 # the manual interval of logical date D+1 is the closed day [D, D+1)
                                 (day + dt.timedelta(days=1)).isoformat()], env=env,
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


def _report_states(states: dict, t0: float) -> int:
    for day, state in sorted(states.items()):
        echo(f"  {day}: {state}")
    failed = [str(d) for d, s in states.items() if s != "success"]
    echo(f"{len(states) - len(failed)} of {len(states)} runs succeeded in {time.monotonic() - t0:.0f}s"
         + (f"; failed: {', '.join(failed)} (see the UI or `learntrack airflow logs`)" if failed else ""))
    return 1 if failed else 0


def cmd_run(args, settings: Settings) -> int:
    """The daily DAG for each given day, through the running Airflow's scheduler."""
    from learntrack.intervals import FutureIntervalError
    from learntrack.scheduled_runs import run_days

    t0 = time.monotonic()
    try:
        states = run_days(settings, args.date, echo)
    except (FutureIntervalError, ValueError) as exc:
        echo(f"ERROR {exc}")
        return 2
    return _report_states(states, t0)


def cmd_backfill(args, settings: Settings) -> int:
    from learntrack.intervals import FutureIntervalError
    from learntrack.scheduled_runs import backfill

    t0 = time.monotonic()
    try:
        states = backfill(settings, args.start, args.end, echo, reprocess=args.reprocess,
                          run_backwards=args.backwards)
    except (FutureIntervalError, ValueError) as exc:
        echo(f"ERROR {exc}")
        return 2
    return _report_states(states, t0)


def cmd_sql(args, settings: Settings) -> int:
    """SQL on the lake by table name; without a query, an interactive shell (or the query on stdin)."""
    from lake import sql as lake_sql

    if args.format == "parquet" and not args.out:
        raise CliError("--format parquet needs --out FILE")
    lake = lake_sql.LakeSQL(settings, args.engine)

    def answer(text: str) -> None:
        result = lake.query(text)
        if args.format == "table":
            out = lake_sql.render_table(result, max_rows=args.max_rows)
            if args.out:
                Path(args.out).write_text(out + "\n", encoding="utf-8")
            else:
                echo(out)
        elif args.format == "csv":
            lake_sql.write_csv(result, args.out or sys.stdout)
        else:
            lake_sql.write_parquet(result, args.out)
        if args.out:
            echo(f"{result.table.num_rows:,} rows written to {args.out} ({result.engine}, {result.seconds:.2f} s)")

    try:
        if args.query:
            answer(args.query)
            return 0
        if not sys.stdin.isatty():
            answer(sys.stdin.read())
            return 0
        echo(f"LearnTrack lake SQL ({lake.engine}) on {settings.lake_uri}: end a statement with ';', "
             f"\\d lists tables, \\q quits")
        buffer: list[str] = []
        while True:
            try:
                line = input("lake> " if not buffer else "  ...> ")
            except EOFError:
                return 0
            if not buffer and line.strip() in ("\\q", "quit", "exit"):
                return 0
            if not buffer and line.strip() == "\\d":
                for name, grain, exists in lake_sql.describe(settings):
                    echo(f"  {name:<38} {exists:<8} {grain}")
                continue
            buffer.append(line)
            if line.rstrip().endswith(";"):
                try:
                    answer("\n".join(buffer))
                except lake_sql.LakeSQLError as exc:
                    _error(str(exc))
                buffer.clear()
    except lake_sql.LakeSQLError as exc:
        raise CliError(str(exc)) from None
    finally:
        lake.close()


def cmd_tables(args, settings: Settings) -> int:
    """Every lake table's version, last commit, rows and newest day (from the Delta log only)."""
    from lake.status import render_status, table_status
    from lake.storage import delta_rs_readable

    if not delta_rs_readable(settings.lake_uri):
        raise CliError(f"learntrack tables reads local, s3a:// and abfss:// lakes; {settings.lake_uri} is none "
                       f"(use `learntrack sql --engine spark` and DESCRIBE HISTORY)")
    echo(f"Lake {settings.lake_uri} (retention and meaning per table: docs/tables.md)")
    echo(render_status(table_status(settings), args.today or dt.datetime.now(dt.timezone.utc).date()))
    return 0


def cmd_report(args, settings: Settings) -> int:
    """The HTML report with charts for one day, and the charts as PNGs."""
    from learntrack.report import write_report

    out_dir = Path(args.out) if args.out else settings.home_path / "reports"
    echo(f"Report for {args.date} from the lake at {settings.lake_uri}:")
    page, results = write_report(settings, args.date, out_dir, echo)
    for r in results:
        if r.error:
            echo(f"  {r.section.title}: {r.error}")
    echo(f"Open {page}")
    return 0


def cmd_summary(args, settings: Settings) -> int:
    from learntrack.summary import print_summary

    check_stores(settings)  # a store that is down is named in seconds, before Spark starts
    print_summary(settings, args.date, echo)
    return 0


def cmd_demo(args, settings: Settings) -> int:
    """Stack up, generate, start Airflow with catch-up from the first generated day and let its
    scheduler run every generated day (re-running them when an earlier demo already did), print
    the summary and leave the UI up with the runs visible."""
    from learntrack import airflow_local
    from learntrack.scheduled_runs import DAG, run_days, wait_for_days

    t0 = time.monotonic()
    if cmd_stack(argparse.Namespace(action="up", services=None), settings):
        return 2
    if cmd_generate(args, settings):
        return 2
    days = [args.end - dt.timedelta(days=n) for n in range(args.days, 0, -1)]
    settings = settings.with_overrides(pipeline_start_date=days[0].isoformat())
    echo(f"Starting Airflow; the scheduler catches up {days[0]} .. {days[-1]} by itself")
    airflow_local.up(settings, echo)
    states = wait_for_days(settings, days, echo)
    if states is None:  # an earlier demo ran these days already: run them again through the scheduler
        echo("These days already have runs (an earlier demo): re-running them")
        states = run_days(settings, days, echo)
    code = _report_states(states, t0)
    from learntrack.summary import print_summary

    print_summary(settings, days[-1], echo)
    shot = settings.home_path / "demo" / "grid.png"
    try:
        airflow_local.screenshot_grid(settings, DAG, shot)
        echo(f"Screenshot of the DAG grid: {shot}")
    except Exception as exc:  # noqa: BLE001 - the UI is up either way
        echo(f"(no screenshot: {exc})")
    echo(airflow_local.login_hint(settings))
    echo(f"\nDemo finished in {time.monotonic() - t0:.0f}s. Airflow keeps running: `learntrack airflow down` stops it.")
    return code


# --------------------------------------------------------------------------------------------
# Airflow as in production: api-server, scheduler, dag-processor, triggerer on loopback

def cmd_airflow(args, settings: Settings) -> int:
    from learntrack import airflow_local as af
    from learntrack.stack.manager import StackError

    try:
        if args.action == "up":
            echo(f"Starting Airflow (home {settings.airflow_home_path})...")
            statuses = af.up(settings, echo)
            echo(af.format_status(statuses))
            echo(af.login_hint(settings))
        elif args.action == "down":
            af.down(settings, args.components, echo)
        elif args.action == "status":
            statuses = af.status(settings, args.components)
            echo(af.format_status(statuses))
            return 0 if all(s.state == "running" for s in statuses) else 3
        elif args.action == "logs":
            echo(af.logs(settings, args.components, args.lines))
    except StackError as exc:
        echo(f"ERROR {exc}")
        return 2
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
        sp.add_argument("--multi-region-rate", type=float, default=0.03, help="per session")
        sp.add_argument("--travel-rate", type=float, default=0.05, help="per active student-day")
        sp.add_argument("--late-rate", type=float, default=0.02, help="per event")
        sp.add_argument("--duplicate-rate", type=float, default=0.01, help="per event")
        sp.add_argument("--malformed-rate", type=float, default=0.005, help="per event")
        sp.add_argument("--shared-ip-students", type=int, default=8,
                        help="students who log in from one shared campus IP each day (account-sharing check)")

    g = sub.add_parser("generate", help="generate sample data into MongoDB")
    gen_args(g)
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("mongo", help="MongoDB operational query patterns")
    msub = m.add_subparsers(dest="action", required=True)
    msub.add_parser("init", help="collections, validators (where supported) and indexes")
    insert_help = ("bulk insert activities from a file of Extended JSON lines. A line that is not a JSON "
                   "object, and a document that fails validation, is reported with its line number and "
                   "skipped; every other document is inserted (exit status 1 when a line was skipped)")
    mi = msub.add_parser("insert", help=insert_help, description=insert_help)
    mi.add_argument("file")
    ml = msub.add_parser("latest", help="a student's latest activities, newest first")
    ml.add_argument("student")
    ml.add_argument("-n", "--limit", type=int, default=20)
    ml.add_argument("--explain", action="store_true", help="also say which index the server uses")
    mu = msub.add_parser("update-profile", help="update allowed profile fields")
    mu.add_argument("student")
    mu.add_argument("changes", help='JSON object, e.g. \'{"email": "a@b.org", "phone": "+1 555"}\'')
    msub.add_parser("sweep", help="stamp documents written without write metadata (full scan; weekly DAG)")
    m.set_defaults(func=cmd_mongo)

    b = sub.add_parser("bench", help="on-demand benchmarks (print figures, not part of the tests)")
    b.add_argument("target", choices=["mongo", "lake", "stages", "extract", "serving", "seed-day", "sql", "targets"])
    b.add_argument("step", nargs="?", choices=["load", "run", "status", "reset"],
                   help="seed-day: load (resumable, in parts), run (resumable, stage by stage), status, reset")
    b.add_argument("--parts", type=int, default=None, help="seed-day load: at most this many parts now")
    b.add_argument("--max-minutes", type=float, default=None, help="seed-day run: start no stage after this")
    b.add_argument("--lake", help="sql: the lake to query (default: the settings' lake)")
    b.add_argument("--rows", type=int, default=20_000, help="serving: students, Cassandra rows and Neo4j accesses")
    b.add_argument("--activities", type=int, default=1_000_000)
    b.add_argument("--queries", type=int, default=200)
    b.add_argument("--database", default="lt_bench")
    b.add_argument("--keep", action="store_true", help="reuse the data already loaded when large enough")
    b.add_argument("--history-days", type=int, default=30, help="lake: days of history before the timed day")
    b.add_argument("--days", type=int, default=10, help="extract: days the activities are spread over")
    b.add_argument("--rounds", type=int, default=3,
                   help="stages: rounds, each from the lake copy put back; the first warms the JVM up")
    b.set_defaults(func=cmd_bench)

    r = sub.add_parser("run", help="run the daily DAG for closed UTC days through Airflow's scheduler")
    r.add_argument("--date", type=_date, required=True, nargs="+", help="one or more days (YYYY-MM-DD)")
    r.set_defaults(func=cmd_run)

    bf = sub.add_parser("backfill", help="backfill the daily DAG over closed UTC days FROM..TO (inclusive)")
    bf.add_argument("start", type=_date)
    bf.add_argument("end", type=_date)
    bf.add_argument("--reprocess", choices=["none", "failed", "completed"], default="completed",
                    help="days that already have a run: skip, rerun if failed, or rerun (default)")
    bf.add_argument("--backwards", action="store_true", help="newest day first")
    bf.set_defaults(func=cmd_backfill)

    q = sub.add_parser("sql", help="SQL on the lake by table name (gold.course_daily_engagement ...); "
                                   "no query: interactive shell")
    q.add_argument("query", nargs="?", help="e.g. \"SELECT * FROM gold.course_daily_engagement VERSION AS OF 2\"")
    q.add_argument("--engine", choices=["auto", "duckdb", "spark"], default="auto",
                   help="auto: DuckDB wherever delta-rs reads the lake (local, s3a://, abfss://), else Spark SQL")
    q.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    q.add_argument("--out", help="write the result to this file instead of the terminal")
    q.add_argument("--max-rows", type=int, default=100, help="table format: rows shown")
    q.set_defaults(func=cmd_sql)

    tb = sub.add_parser("tables", help="each lake table's version, last commit, rows and newest day")
    tb.add_argument("--today", type=_date, help="count 'days behind' from this UTC day (default: today)")
    tb.set_defaults(func=cmd_tables)

    rp = sub.add_parser("report", help="a self-contained HTML report with charts for one day (and the PNGs)")
    rp.add_argument("--date", type=_date, required=True)
    rp.add_argument("--out", help="directory for the page and the PNGs (default: <home>/reports)")
    rp.set_defaults(func=cmd_report)

    s = sub.add_parser("summary", help="print what landed in each store")
    s.add_argument("--date", type=_date, required=True)
    s.set_defaults(func=cmd_summary)

    af = sub.add_parser("airflow", help="run Airflow's services locally (api-server, scheduler, dag-processor, "
                                        "triggerer) on PostgreSQL; UI and REST API on 127.0.0.1")
    af.add_argument("action", choices=["up", "down", "status", "logs"])
    af.add_argument("components", nargs="*", help="down/status/logs: api-server scheduler dag-processor triggerer "
                                                  "(default: all)")
    af.add_argument("-n", "--lines", type=int, default=40, help="log lines for 'logs'")
    af.set_defaults(func=cmd_airflow)

    d = sub.add_parser("demo", help="stack up + generate + Airflow up + scheduled runs + summary")
    gen_args(d)
    d.set_defaults(func=cmd_demo)
    return p


DEBUG_VARIABLE = "LEARNTRACK_DEBUG"


def main(argv: list[str] | None = None) -> int:
    """Run a command; anything that goes wrong ends in a short message on stderr and a non-zero
    exit: 2 for a store that is down, bad input or a bad setting, 1 for anything unexpected
    (with ``LEARNTRACK_DEBUG=1``, after its traceback)."""
    args = build_parser().parse_args(argv)
    settings = None
    try:
        settings = get_settings()
        return args.func(args, settings)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into a message
        return _report_unexpected(exc, settings)


def _error(message: str) -> None:
    print(redact_uri("ERROR " + message), file=sys.stderr, flush=True)


def _report_unexpected(exc: Exception, settings: Settings | None) -> int:
    debug = os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")
    if debug:
        import traceback

        print(redact_uri("".join(traceback.format_exception(exc))), file=sys.stderr, flush=True)
    failed = store_failure(exc) if settings is not None else None
    if failed:
        _error(store_unreachable(settings, *failed))
        return 2
    from learntrack.stack.manager import StackError

    if isinstance(exc, StackError):  # names the service, the cause and the log already
        _error(str(exc))
        return 2
    if settings is None and isinstance(exc, ValueError):  # a LEARNTRACK_* variable that does not parse
        _error(str(exc))
        return 2
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    hint = "" if debug else f"\n  run with {DEBUG_VARIABLE}=1 for the traceback"
    _error(f"{type(exc).__name__}: {text[:300]}{hint}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
