"""Render docs/tables.md from the table declarations (``python -m lake.docs > docs/tables.md``)."""

from __future__ import annotations

from lake.tables import ALL_TABLES


def render() -> str:
    out = ["# Lake tables", "",
           "Generated from `lake/tables.py` by `python -m lake.docs`; a test fails when this file is stale.", ""]
    for t in ALL_TABLES:
        out += [f"## `{t.qualified}`", "", t.doc, "",
                f"- grain: {t.grain}", f"- keys: {', '.join(f'`{k}`' for k in t.keys)}",
                f"- partitioned by: {', '.join(f'`{p}`' for p in t.partition_by) or '—'}",
                f"- retention: {_retention(t)}", f"- freshness: {_freshness(t)}", "",
                "| column | type | null | meaning |", "|---|---|---|---|"]
        out += [f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.doc} |" for c in t.columns]
        out.append("")
    out += _cassandra()
    return "\n".join(out)


def _default(field: str):
    from dataclasses import fields

    from learntrack.settings import Settings

    return next(f.default for f in fields(Settings) if f.name == field)


def _retention(t) -> str:
    vacuum = (f"VACUUM keeps {_default('vacuum_retention_hours')} h of versions for time travel "
              f"(`LEARNTRACK_VACUUM_RETENTION_HOURS`)")
    if t.retention_setting is None:
        kept = ("every row is kept (one per run and stage: small)" if t.bookkeeping else
                "every row is kept (no date to age out by: the table holds each key's current state"
                + (" or its whole version history" if "history" in t.name else "") + ")")
        return f"none, {kept}; {vacuum}"
    text = (f"rows whose `{t.partition_by[0]}` is more than {_default(t.retention_setting)} days old "
            f"(`LEARNTRACK_{t.retention_setting.upper()}`) are deleted by the weekly `learntrack_maintenance` DAG")
    if t.layer == "bronze":
        text += "; the newest day is always kept (it carries the extraction watermark)"
    return f"{text}; {vacuum}"


def _freshness(t) -> str:
    from learntrack.airflow_tasks import DAILY_CRON

    run = f"the daily `learntrack_pipeline` run for day D (cron `{DAILY_CRON}` UTC, after D closes)"
    if t.bookkeeping:
        return f"a row per stage of every run; written by {run} as each stage ends"
    if t.freshness_column is None:
        return f"current state as of {run}; `learntrack tables` shows its last commit"
    return (f"after {run}, the newest `{t.freshness_column}` is D when the day has rows; "
            f"`learntrack tables` shows the newest day each table holds")


def _cassandra() -> list[str]:
    """The Cassandra read tables, from their declarations in ``learntrack.sinks.cassandra_schema``."""
    from learntrack.sinks.cassandra_schema import DAY_TABLES

    out = ["# Cassandra read tables", "",
           "Published from gold by `publish_cassandra`, one table per read; a published day is replaced "
           "exactly (`published_keys_by_bucket`). Schema changes are the ordered migrations in `cassandra_schema.MIGRATIONS`.", ""]
    for t in DAY_TABLES:
        partition = t.day_column if t.partition_by_day else t.keys[0]
        clustering = [k for k in (t.day_column, *t.keys) if k != partition]
        out += [f"## `{t.name}`", "", f"- partition key: `{partition}`; clustering: "
                + ", ".join(f"`{c}`" for c in clustering), "- columns: "
                + ", ".join(f"`{c}` {typ}" for c, typ in t.columns), ""]
    return out


if __name__ == "__main__":
    print(render(), end="")
