"""How fresh each lake table is, read from the Delta log alone (``learntrack tables``).

The data dictionary (docs/tables.md) says what a table should hold and for how long; this says what
it holds now: its version, its last commit, its rows, and the newest day of its freshness column.
Everything comes from the Delta log through delta-rs (file statistics and partition values), so
no data file is opened and no JVM is started.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lake.tables import ALL_TABLES, Table

UTC = dt.timezone.utc


@dataclass(frozen=True)
class TableStatus:
    table: Table
    version: int | None  # None: not written yet
    last_commit: dt.datetime | None
    last_operation: str | None
    rows: int | None
    newest: dt.date | None  # newest value of the freshness column (None: no rows, or no such column)

    def age_days(self, today: dt.date) -> int | None:
        """Whole days between the newest day held and ``today`` (0 = up to today)."""
        return None if self.newest is None else (today - self.newest).days


def table_status(settings, tables: tuple[Table, ...] = ALL_TABLES) -> list[TableStatus]:
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake.exceptions import TableNotFoundError

    from lake.storage import open_delta

    out = []
    for table in tables:
        try:
            delta = open_delta(settings, table.path(settings.lake_uri))
        except TableNotFoundError:
            out.append(TableStatus(table, None, None, None, None, None))
            continue
        last = delta.history(1)[0]
        files = pa.table(delta.get_add_actions(flatten=True))
        newest = None
        column = table.freshness_column
        if column and files.num_rows and f"partition.{column}" in files.column_names:
            newest = pc.max(files.column(f"partition.{column}")).as_py()
        out.append(TableStatus(table, delta.version(), dt.datetime.fromtimestamp(last["timestamp"] / 1000, UTC),
                               last.get("operation"), int(pc.sum(files.column("num_records")).as_py() or 0), newest))
    return out


def render_status(statuses: list[TableStatus], today: dt.date) -> str:
    """An aligned table for people: one line per table, stale or missing ones easy to spot."""
    head = ("table", "version", "last commit (UTC)", "rows", "freshness column", "newest", "days behind")
    lines = [head]
    for s in statuses:
        if s.version is None:
            lines.append((s.table.qualified, "-", "not written yet", "-", s.table.freshness_column or "-", "-", "-"))
            continue
        age = s.age_days(today)
        lines.append((s.table.qualified, str(s.version), s.last_commit.strftime("%Y-%m-%d %H:%M:%S"),
                      f"{s.rows:,}", s.table.freshness_column or "(current state)",
                      s.newest.isoformat() if s.newest else "-", "-" if age is None else str(age)))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)
