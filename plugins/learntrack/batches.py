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


def read_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` while a thread already produces the next ones (at most ``depth`` waiting).

    For a source and a sink that both wait on something else: extraction reads and encodes the next
    chunk of documents (waiting on MongoDB) while the current one is written (waiting on the JVM).
    Order is kept; an error in the producer is raised here, at the item where it happened; closing
    the iterator early stops the producer (after the item it is on) and closes ``items``.
    """
    import queue
    import threading

    done = object()
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((None, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()
