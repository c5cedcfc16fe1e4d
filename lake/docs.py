"""Render docs/tables.md from the table declarations (``python -m lake.docs > docs/tables.md``)."""

from __future__ import annotations

from lake.tables import ALL_TABLES


def render() -> str:
    out = ["# Lake tables", "",
           "Generated from `lake/tables.py` by `python -m lake.docs`; a test fails when this file is stale.", ""]
    for t in ALL_TABLES:
        out += [f"## `{t.qualified}`", "", t.doc, "",
                f"- grain: {t.grain}", f"- keys: {', '.join(f'`{k}`' for k in t.keys)}",
                f"- partitioned by: {', '.join(f'`{p}`' for p in t.partition_by) or '—'}", "",
                "| column | type | null | meaning |", "|---|---|---|---|"]
        out += [f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.doc} |" for c in t.columns]
        out.append("")
    out += _cassandra()
    return "\n".join(out)


def _cassandra() -> list[str]:
    """The Cassandra read tables, from their declarations in ``learntrack.sinks.cassandra_schema``."""
    from learntrack.sinks.cassandra_schema import DAY_TABLES

    out = ["# Cassandra read tables", "",
           "Published from gold by `publish_cassandra`, one table per read; a published day is replaced "
           "exactly (`published_keys`). Schema changes are the ordered migrations in `cassandra_schema.MIGRATIONS`.", ""]
    for t in DAY_TABLES:
        partition = t.day_column if t.partition_by_day else t.keys[0]
        clustering = [k for k in (t.day_column, *t.keys) if k != partition]
        out += [f"## `{t.name}`", "", f"- partition key: `{partition}`; clustering: "
                + ", ".join(f"`{c}`" for c in clustering), "- columns: "
                + ", ".join(f"`{c}` {typ}" for c, typ in t.columns), ""]
    return out


if __name__ == "__main__":
    print(render(), end="")
