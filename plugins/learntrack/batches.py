"""Batching for bulk writes to the stores (MongoDB inserts, Redis pipelines, Neo4j UNWIND)."""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items, read lazily (a Spark row stream stays a stream)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
