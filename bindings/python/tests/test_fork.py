"""Several os.fork()ed processes sharing one database; each child opens its
own handle (a handle does not survive fork())."""

from __future__ import annotations

import os
import random

import pytest

import sochdb

ACCOUNTS = 8
INITIAL = 100
TOTAL = ACCOUNTS * INITIAL


def test_inherited_handle_raises_in_child_parent_unaffected(db, dbdir, fork):
    db.put(b"from-parent", b"1")
    open_txn = db.transaction()
    open_txn.put(b"parent-pending", b"1")

    def child(_i):
        out = {}
        for name, call in [
            ("transaction", lambda: db.transaction()),
            ("get", lambda: db.get(b"from-parent")),
            ("stats", lambda: db.stats()),
            ("region_path", lambda: db.region_path),
            ("txn.get", lambda: open_txn.get(b"from-parent")),
            ("txn.commit", lambda: open_txn.commit()),
        ]:
            try:
                call()
                out[name] = "no error"
            except sochdb.InvalidError as e:
                out[name] = e.detail
        db.close()  # frees the child's copy only
        with sochdb.open(dbdir) as own:  # the rule: open a new handle in the child
            own.put(b"from-child", str(os.getpid()).encode())
            out["own-read"] = own.get(b"from-parent").decode()
        return out

    (out,) = fork(1, child)
    for name in ("transaction", "get", "stats", "region_path", "txn.get", "txn.commit"):
        assert "fork" in out[name], (name, out[name])
    assert out["own-read"] == "1"
    # The parent's handle and its open transaction carry on.
    assert db.get(b"from-child") is not None
    open_txn.commit()
    assert db.get(b"parent-pending") == b"1"
    assert db.stats()["processes_attached"] >= 1


def test_concurrent_disjoint_inserts_all_present(db, dbdir, fork):
    workers, per_worker = 4, 150

    def child(i):
        with sochdb.open(dbdir) as own:
            for j in range(per_worker):
                # A few keys per transaction, ASYNC: visible at once; the last one SYNC.
                with own.transaction(sync=(j == per_worker - 1)) as txn:
                    txn.put(b"w%02d/%04d" % (i, j), b"%d:%d" % (i, j))
        return per_worker

    assert fork(workers, child) == [per_worker] * workers
    with db.transaction(readonly=True) as txn:
        pairs = list(txn.scan(prefix=b"w"))
    assert len(pairs) == workers * per_worker
    expected = sorted(b"w%02d/%04d" % (i, j) for i in range(workers) for j in range(per_worker))
    assert [k for k, _ in pairs] == expected
    for k, v in pairs:
        i, j = k[1:].split(b"/")
        assert v == b"%d:%d" % (int(i), int(j))


def _barrier(own, name, parties):
    """Every child arrives, then waits for the others: maximal overlap."""
    key = b"barrier/" + name

    def arrive(txn):
        txn.put(key, b"%d" % (int(txn.get(key) or 0) + 1))

    own.run(arrive, sync=False)
    while int(own.get(key)) < parties:
        pass


def _balances(txn):
    return [int(txn.get(b"acct/%d" % a)) for a in range(ACCOUNTS)]


def test_bank_transfers_keep_the_total_in_every_snapshot(db, dbdir, fork):
    with db.transaction() as txn:
        for a in range(ACCOUNTS):
            txn.put(b"acct/%d" % a, b"%d" % INITIAL)
    writers, transfers = 3, 120

    def child(i):
        with sochdb.open(dbdir) as own:
            _barrier(own, b"bank", writers + 1)
            if i == writers:  # the reader: snapshots while the writers run
                snapshots, bad = 0, 0
                while True:
                    with own.transaction(readonly=True) as txn:
                        if sum(_balances(txn)) != TOTAL:
                            bad += 1
                        done = txn.get(b"done/count")
                    snapshots += 1
                    if done is not None and int(done) == writers:
                        return {"snapshots": snapshots, "bad": bad}
            rng = random.Random(i)
            conflicts = 0

            def transfer(txn):
                a, b = rng.sample(range(ACCOUNTS), 2)
                amount = rng.randint(1, 20)
                ka, kb = b"acct/%d" % a, b"acct/%d" % b
                va, vb = int(txn.get(ka)), int(txn.get(kb))
                if va < amount:
                    return
                txn.put(ka, b"%d" % (va - amount))
                txn.put(kb, b"%d" % (vb + amount))
                # Our own snapshot plus our writes still sums to the total.
                assert sum(_balances(txn)) == TOTAL

            for _ in range(transfers):
                while True:
                    try:
                        with own.transaction(sync=False) as txn:
                            transfer(txn)
                        break
                    except sochdb.ConflictError:
                        conflicts += 1

            def finish(txn):
                done = txn.get(b"done/count")
                txn.put(b"done/count", b"%d" % (int(done or 0) + 1))

            own.run(finish)
            return {"conflicts": conflicts}

    results = fork(writers + 1, child, timeout=90)
    print("bank: %s" % results)
    reader = results[writers]
    assert reader["bad"] == 0
    assert reader["snapshots"] >= 1
    with db.transaction(readonly=True) as txn:
        balances = _balances(txn)
    assert sum(balances) == TOTAL and min(balances) >= 0
    conflicts = sum(r["conflicts"] for r in results[:writers])
    assert db.stats()["conflicts"] >= conflicts


def test_conflict_across_processes_is_observed_and_retried(db, dbdir, fork):
    db.put(b"hot", b"0")
    txn = db.transaction()  # our snapshot: hot == 0
    txn.put(b"hot", b"parent")

    def child(_i):
        with sochdb.open(dbdir) as own:
            own.put(b"hot", b"child")  # commits after the parent's snapshot
        return True

    fork(1, child)
    with pytest.raises(sochdb.ConflictError):
        txn.commit()
    assert db.get(b"hot") == b"child"

    attempts = []

    def update(t):
        attempts.append(1)
        t.put(b"hot", b"parent:" + t.get(b"hot"))
        if len(attempts) == 1:  # another process commits meanwhile, once
            fork(1, child)

    db.run(update)
    assert len(attempts) == 2
    assert db.get(b"hot") == b"parent:child"


def test_counter_with_retry_is_exact(db, dbdir, fork):
    workers, increments = 4, 60
    db.put(b"counter", b"0")

    def child(_i):
        retried = []
        with sochdb.open(dbdir) as own:
            _barrier(own, b"counter", workers)

            def incr(txn):
                retried.append(1)
                txn.put(b"counter", b"%d" % (int(txn.get(b"counter")) + 1))

            for _ in range(increments):
                own.run(incr, sync=False, retries=10_000)
        return len(retried) - increments  # attempts that conflicted

    conflicts = fork(workers, child)
    print("counter: %d increments, %s conflicts retried per worker" % (workers * increments, conflicts))
    assert int(db.get(b"counter")) == workers * increments
    assert db.stats()["conflicts"] >= sum(conflicts)
