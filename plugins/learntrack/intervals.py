"""The data interval a pipeline run covers. Light on purpose: DAG files and the CLI import it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.timezone.utc


def to_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime as timezone-aware UTC. A naive value is taken as the host's local time: that is
    what pyspark's collect() hands back for a TIMESTAMP (and how it reads a naive value it is
    given), so every timestamp crossing the Python/Spark boundary goes through here or is aware."""
    return None if value is None else value.astimezone(UTC)


class FutureIntervalError(ValueError):
    """A run was asked for an interval that has not ended yet: its data is still being written."""


@dataclass(frozen=True)
class Interval:
    """A DAG run's data interval [start, end). ``batch_id`` names everything the run writes."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty interval {self.start} .. {self.end}")

    @property
    def batch_id(self) -> str:
        return self.end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    @property
    def as_of_date(self) -> dt.date:
        """The last day the interval covers (end is exclusive)."""
        return (self.end.astimezone(UTC) - dt.timedelta(microseconds=1)).date()

    @classmethod
    def for_day(cls, day: dt.date) -> "Interval":
        start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + dt.timedelta(days=1))

    def refuse_future(self, now: dt.datetime | None = None) -> "Interval":
        """Raise unless the interval has ended: a run for a day still being written would extract
        a partial day into a batch that fails its gates (and move the watermark past it)."""
        now = now or dt.datetime.now(UTC)
        if self.end > now:
            raise FutureIntervalError(
                f"interval {self.start.astimezone(UTC):%Y-%m-%d %H:%M} .. {self.end.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
                f"has not ended yet (now {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC); "
                f"the last day that can run is {(now.astimezone(UTC) - dt.timedelta(days=1)).date()}")
        return self

    def __str__(self) -> str:
        return f"{self.start.astimezone(UTC):%Y-%m-%dT%H:%M}Z..{self.end.astimezone(UTC):%Y-%m-%dT%H:%M}Z"
