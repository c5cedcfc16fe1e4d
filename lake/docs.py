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
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
