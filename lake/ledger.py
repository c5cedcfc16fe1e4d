"""The stage ledger: which runs completed which stage, and what each took in.

A stage never reads "the rows of my run's batch" alone. It reads every upstream batch after the
newest batch it has completed and up to its own run's batch (plus its own batch, which a re-run
reprocesses). A run that fails after extraction therefore strands nothing: the next run, a retry
or a backfill takes the batch in. Completions are recorded only after the stage's gate passed
(silver, gold) or its publish finished (sinks), so a failed or killed attempt leaves the ledger
as it was. See docs/decisions.md (ADR 17).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, replace
from typing import Iterable

from learntrack.intervals import UTC
from lake.tables import STAGE_LEDGER


@dataclass(frozen=True)
class Pending:
    """What a stage takes in for a run: upstream batch ids and (when the upstream is in the ledger)
    the days those batches wrote."""

    after: str | None  # the stage's newest completed batch before this run (exclusive lower bound)
    batch_id: str  # the run's own batch (inclusive upper bound, always included)
    batches: tuple[str, ...]  # upstream batches in (after, batch_id] plus batch_id
    dates: tuple[dt.date, ...]

    @property
    def backlog(self) -> tuple[str, ...]:
        """Batches older than the run's own that a failed or skipped run left behind."""
        return tuple(b for b in self.batches if b < self.batch_id)

    def takes(self, batch: str) -> bool:
        """Whether ``batch`` is in this window: (after, batch_id] or batch_id itself."""
        return batch == self.batch_id or (batch <= self.batch_id and (self.after is None or batch > self.after))

    def batch_filter(self, column: str = "batch_id"):
        """Rows of the batches this stage takes in: (after, batch_id] plus batch_id itself."""
        from pyspark.sql import functions as F

        col = F.col(column)
        window = col <= F.lit(self.batch_id)
        if self.after is not None:
            window = window & (col > F.lit(self.after))
        return window | (col == F.lit(self.batch_id))


def completions(settings, stage: str) -> list[dict]:
    """The ledger's rows for ``stage`` (a small table: one row per stage and run)."""
    import pyarrow.dataset as ds

    from lake import delta_rs

    return delta_rs.scan(settings, STAGE_LEDGER, ds.field("stage") == stage).to_pylist()


def processed_up_to(settings, stage: str) -> str | None:
    """The newest batch a run completed ``stage`` for (batch ids sort as times)."""
    return max((r["batch_id"] for r in completions(settings, stage)), default=None)


def window(settings, stage: str, batch_id: str) -> Pending:
    """The run's window for ``stage``: after its newest completed batch, up to the run's own (use
    ``batch_filter()`` on any table with a ``batch_id`` column); no batches listed yet."""
    return Pending(processed_up_to(settings, stage), batch_id, (), ())


def pending_from_table(settings, stage: str, batch_id: str, upstream) -> Pending:
    """Pending input of ``stage`` read from an upstream *table* (a declared ``Table`` with a
    ``batch_id`` column): silver takes bronze batches this way. Read through delta-rs, the column
    alone: batches are appended in time order, so the files' statistics on ``batch_id`` skip the
    batches already processed (a Spark job of 3 s on the 1M benchmark's bronze, twice a run)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from lake import delta_rs

    open_ = window(settings, stage, batch_id)
    column = ds.field("batch_id")
    where = column <= batch_id if open_.after is None else (column <= batch_id) & (column > open_.after)
    found = delta_rs.scan(settings, upstream, where, columns=["batch_id"])["batch_id"]
    return replace(open_, batches=tuple(sorted(set(pc.unique(found).to_pylist()) | {batch_id})))


def pending_from_ledger(settings, stage: str, upstream_stage: str, batch_id: str) -> Pending:
    """Pending input of ``stage`` read from the upstream stage's completions (gold takes silver's,
    the sinks take gold's): the batches and the union of the days they wrote. No JVM needed."""
    open_ = window(settings, stage, batch_id)
    rows = [r for r in completions(settings, upstream_stage) if open_.takes(r["batch_id"])]
    batches = {batch_id} | {r["batch_id"] for r in rows} | {b for r in rows for b in r["input_batches"]}
    dates = {d for r in rows for d in r["dates"]}
    return replace(open_, batches=tuple(sorted(batches)), dates=tuple(sorted(dates)))


def record(settings, stage: str, batch_id: str, input_batches: Iterable[str], dates: Iterable) -> None:
    """Record that the run of ``batch_id`` completed ``stage``. Insert-only: re-running a stage for a
    batch it already completed keeps the first record, so the ledger reads as one run left it.
    The run id is Airflow's (its task processes carry it in the environment), else "cli".
    Written through delta-rs (a MERGE of one row), so a stage without Spark can record too."""
    import pyarrow as pa

    from lake import delta_rs

    run_id = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID", "cli")
    days = sorted({d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)) for d in dates})
    row = pa.Table.from_pylist([{"stage": stage, "batch_id": batch_id, "input_batches": sorted(set(input_batches)),
                                 "dates": days, "completed_at": dt.datetime.now(UTC), "run_id": run_id}],
                               schema=STAGE_LEDGER.arrow_schema())
    for attempt in range(8):  # the sinks publish side by side and each records its completion
        try:
            (delta_rs.open_for_write(settings, STAGE_LEDGER)
             .merge(row, "t.stage = s.stage AND t.batch_id = s.batch_id", source_alias="s", target_alias="t")
             .when_not_matched_insert_all().execute())
            return
        except Exception as exc:  # noqa: BLE001 - delta-rs reports a lost commit race as CommitFailedError
            if "commit" not in (type(exc).__name__ + str(exc)[:300]).lower() or attempt == 7:
                raise
            time.sleep(0.2 * (attempt + 1))
