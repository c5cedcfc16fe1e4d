"""Regression tests for the FerretDB update pool deadlock (issue 11, finding 0; local patch 6 in
plugins/learntrack/stack/resources/ferretdb, see its README).

FerretDB 1.24.2's `update` command kept every statement's query (an open PostgreSQL result, one
pooled connection) until the whole command returned. A bulk of >= 50 ReplaceOne/UpdateOne over
existing documents (pool_max_conns = 50) then waited forever for a connection for its write, and
every later request on the server hung until FerretDB was restarted. findAndModify held its query
connection during its write too, so >= 50 concurrent find_one_and_update could deadlock the same way.

The clients here have short timeouts, so a broken server fails these tests instead of hanging them.
Running them against a broken build wedges that server (it then needs a restart), so they refuse to
run against a FerretDB whose build is known to lack the fix (package `learntrack-p6` or older, or a
plain upstream build) unless LEARNTRACK_TEST_FERRETDB_WEDGE=1 (to reproduce the bug on a throwaway
server, e.g. LEARNTRACK_MONGO_PORT pointing at one).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import pytest
from pymongo import ReplaceOne, ReturnDocument
from pymongo.errors import PyMongoError

DB_NAME = "lt_test_ferret_bulk"
N_EXISTING = 500   # 10x the pool size: the broken build wedges at the 50th statement
N_NEW = 50         # upserts of new documents in the same bulk
FIXED_PATCH_LEVEL = 7  # learntrack-p6 had only the update part of the fix
BULK_TIMEOUT_S = 30  # the fixed build needs well under 2 s for this bulk


def _ferretdb_package(mongo_client) -> str | None:
    """`package:` of the running FerretDB binary (via serverStatus.pid), None if not FerretDB or unknown."""
    status = mongo_client.admin.command("serverStatus")
    if "ferretdbVersion" not in status or not status.get("pid"):
        return None
    try:
        out = subprocess.run([f"/proc/{int(status['pid'])}/exe", "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # not on this host, or not ours to read
    m = re.search(r"^package: (\S+)$", out, re.M)
    return m.group(1) if m else None


def _refuse_known_broken_build(mongo_client) -> None:
    if os.environ.get("LEARNTRACK_TEST_FERRETDB_WEDGE") == "1":
        return
    package = _ferretdb_package(mongo_client)
    if package is None:
        return
    m = re.fullmatch(r"learntrack-p(\d+)", package)
    if not m or int(m.group(1)) < FIXED_PATCH_LEVEL:
        pytest.fail(f"the FerretDB on this port is build package {package!r}, which has the update pool "
                    f"deadlock (fixed by learntrack-p{FIXED_PATCH_LEVEL}): this test would wedge it until restart. "
                    "Run `learntrack stack install` and restart mongo, or set LEARNTRACK_TEST_FERRETDB_WEDGE=1 "
                    "to reproduce on a throwaway server.")


@pytest.fixture()
def ferret(stack):
    from learntrack.mongo_ops import client

    settings = stack.with_overrides(mongo_db=DB_NAME, mongo_socket_timeout_s=BULK_TIMEOUT_S,
                                    mongo_server_selection_timeout_s=5, mongo_connect_timeout_s=5)
    c = client(settings)
    c.drop_database(DB_NAME)
    yield settings, c
    try:
        c.drop_database(DB_NAME)
    except PyMongoError:
        pass  # a wedged server: the test has already failed and said why
    c.close()


def _assert_server_answers(settings) -> None:
    """A new client (short socket timeout) gets answers: the server is not wedged."""
    from learntrack.mongo_ops import client

    c = client(settings.with_overrides(mongo_socket_timeout_s=10))
    try:
        assert c.admin.command("ping")["ok"] == 1
        assert c[DB_NAME].list_collection_names() is not None
    except PyMongoError as exc:
        pytest.fail(f"the server no longer answers after the bulk (wedged): {exc}")
    finally:
        c.close()


@pytest.mark.stack
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
def test_bulk_replace_upsert_over_existing_docs_returns_and_server_stays_up(ferret, ordered):
    settings, c = ferret
    _refuse_known_broken_build(c)
    coll = c[DB_NAME]["docs"]
    coll.insert_many([{"_id": f"d{i:05d}", "v": 0, "old": True} for i in range(N_EXISTING)])

    ids = [f"d{i:05d}" for i in range(N_EXISTING + N_NEW)]
    ops = [ReplaceOne({"_id": i}, {"_id": i, "v": 1, "n": n}, upsert=True) for n, i in enumerate(ids)]
    t0 = time.monotonic()
    try:
        res = coll.bulk_write(ops, ordered=ordered)
    except PyMongoError as exc:
        pytest.fail(f"bulk_write of {len(ops)} ReplaceOne(upsert=True) did not return within {BULK_TIMEOUT_S} s "
                    f"({time.monotonic() - t0:.1f} s: {type(exc).__name__}): FerretDB update pool deadlock")

    assert res.upserted_count == N_NEW
    assert sorted(res.upserted_ids.values()) == ids[N_EXISTING:]
    assert res.modified_count == N_EXISTING
    _assert_server_answers(settings)

    docs = {d["_id"]: d for d in coll.find({})}
    assert sorted(docs) == ids
    assert all(docs[i] == {"_id": i, "v": 1, "n": n} for n, i in enumerate(ids))  # replaced: "old" is gone


@pytest.mark.stack
def test_concurrent_find_one_and_update_does_not_wedge_the_server(ferret):
    """100 clients at once (2x the pool): each findAndModify must release its read connection
    before it writes, else all can hold one and wait for a second."""
    from learntrack.mongo_ops import client

    settings, c = ferret
    _refuse_known_broken_build(c)
    coll = c[DB_NAME]["counters"]
    n_clients, per_client = 100, 10
    coll.insert_many([{"_id": f"c{k:03d}", "v": 0} for k in range(n_clients)])
    errors: list[str] = []

    def worker(k: int) -> None:
        cc = client(settings)
        try:
            for _ in range(per_client):
                cc[DB_NAME]["counters"].find_one_and_update({"_id": f"c{k:03d}"}, {"$inc": {"v": 1}},
                                                            return_document=ReturnDocument.AFTER)
        except PyMongoError as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            cc.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BULK_TIMEOUT_S + 30)
    assert not errors, f"{len(errors)} clients failed (FerretDB pool deadlock?), e.g. {errors[0]}"
    _assert_server_answers(settings)
    assert sorted(d["v"] for d in coll.find({})) == [per_client] * n_clients
