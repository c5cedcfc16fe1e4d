import threading

import pytest

from learntrack.batches import chunks, read_ahead


def test_chunks_are_consecutive_and_bounded():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


def test_read_ahead_keeps_order_and_produces_while_the_consumer_works():
    produced = [threading.Event() for _ in range(4)]

    def source():
        for i in range(4):
            produced[i].set()
            yield i

    seen = []
    for i in read_ahead(source()):
        seen.append(i)
        if i + 1 < 4:  # while this item is "written", the next one is read (a plain loop would hang here)
            assert produced[i + 1].wait(5)
    assert seen == [0, 1, 2, 3]


def test_read_ahead_raises_the_producer_error_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise RuntimeError("cursor lost")

    seen = []
    with pytest.raises(RuntimeError, match="cursor lost"):
        for i in read_ahead(failing()):
            seen.append(i)
    assert seen == [1, 2]


def test_read_ahead_closed_early_stops_and_closes_the_source():
    closed = threading.Event()
    produced = []

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    stream = read_ahead(endless(), depth=1)
    assert next(stream) == 0
    stream.close()
    assert closed.wait(2)
    assert len(produced) <= 3  # the one consumed, the one waiting, the one being put
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())


def test_read_ahead_stops_when_the_consumer_fails():
    closed = threading.Event()

    def source():
        try:
            yield from range(100)
        finally:
            closed.set()

    with pytest.raises(ValueError):
        for i in read_ahead(source()):
            if i == 3:
                raise ValueError("commit failed")
    assert closed.wait(2)
