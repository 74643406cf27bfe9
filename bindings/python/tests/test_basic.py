"""Single-process behaviour: reads and writes, transactions, scans, stats."""

from __future__ import annotations

import os

import pytest

import sochdb


def test_put_get_delete_roundtrip(db):
    with db.transaction() as txn:
        txn.put(b"users/1", b"Alice")
        txn.put(b"users/2", b"Bob")
    with db.transaction(readonly=True) as txn:
        assert txn.get(b"users/1") == b"Alice"
        assert txn.get(b"users/2") == b"Bob"
        assert txn.get(b"users/3") is None
        assert txn.get(b"users/3", b"dflt") == b"dflt"
        assert b"users/1" in txn and b"users/3" not in txn
    with db.transaction() as txn:
        txn.delete(b"users/1")
        txn.delete(b"never-existed")  # not an error
    assert db.get(b"users/1") is None
    assert db.get(b"users/2") == b"Bob"


def test_get_returns_a_copy_that_outlives_the_transaction(db):
    db.put(b"k", b"v" * 1000)
    with db.transaction(readonly=True) as txn:
        value = txn.get(b"k")
    assert isinstance(value, bytes)
    # The C value pointed into the region; ours is a copy, still valid after the end.
    assert value == b"v" * 1000


def test_key_and_value_types(db):
    with db.transaction() as txn:
        txn.put("text-key", "välue")  # str is UTF-8
        txn.put(bytearray(b"ba"), memoryview(b"mv"))
        txn.put(b"empty", b"")
        txn.put(b"\x00bin\xff", b"\x00\x01\x02")
        with pytest.raises(TypeError):
            txn.put(1, b"x")
        with pytest.raises(TypeError):
            txn.get(None)
    with db.transaction(readonly=True) as txn:
        assert txn.get("text-key") == "välue".encode()
        assert txn.get(b"ba") == b"mv"
        assert txn.get(b"empty") == b""  # present and empty, not None
        assert txn.get(b"\x00bin\xff") == b"\x00\x01\x02"


def test_large_value(db):
    big = bytes(range(256)) * 4096  # 1 MiB
    db.put(b"big", big)
    assert db.get(b"big") == big


def test_own_writes_and_snapshot_isolation(db):
    db.put(b"a", b"1")
    reader = db.transaction(readonly=True)  # snapshot before the write below
    writer = db.transaction()
    writer.put(b"a", b"2")
    writer.put(b"b", b"new")
    assert writer.get(b"a") == b"2"  # sees its own writes
    assert db.get(b"a") == b"1"  # others do not, before commit
    writer.commit()
    assert db.get(b"a") == b"2"
    assert reader.get(b"a") == b"1"  # the old snapshot is stable
    assert reader.get(b"b") is None
    reader.abort()


def test_context_manager_commits_and_aborts(db):
    with db.transaction() as txn:
        txn.put(b"kept", b"1")
    assert txn.closed
    with pytest.raises(RuntimeError):
        with db.transaction() as txn:
            txn.put(b"dropped", b"1")
            raise RuntimeError("boom")
    assert txn.closed
    assert db.get(b"kept") == b"1"
    assert db.get(b"dropped") is None


def test_explicit_commit_and_abort_inside_with(db):
    with db.transaction() as txn:
        txn.put(b"x", b"1")
        txn.commit()  # the block's end then does nothing
    with db.transaction() as txn:
        txn.put(b"y", b"1")
        txn.abort()
    assert db.get(b"x") == b"1"
    assert db.get(b"y") is None


def test_finished_transaction_refuses_use(db):
    txn = db.transaction()
    txn.put(b"k", b"v")
    txn.commit()
    for call in (lambda: txn.get(b"k"), lambda: txn.put(b"k", b"v"), txn.commit, lambda: txn.scan()):
        with pytest.raises(sochdb.InvalidError) as ei:
            call()
        assert ei.value.code == sochdb.INVALID
    txn.abort()  # a no-op on a finished transaction


def test_async_commit(db):
    with db.transaction(sync=False) as txn:
        txn.put(b"fast", b"1")
    assert db.get(b"fast") == b"1"
    txn = db.transaction()
    txn.put(b"fast2", b"1")
    txn.commit(sync=False)
    assert db.get(b"fast2") == b"1"


def test_readonly_transaction_refuses_writes(db):
    db.put(b"k", b"v")
    with db.transaction(readonly=True) as txn:
        with pytest.raises(sochdb.InvalidError) as ei:
            txn.put(b"k", b"other")
        assert "read-only" in str(ei.value)
        with pytest.raises(sochdb.InvalidError):
            txn.delete(b"k")
        assert txn.get(b"k") == b"v"  # still usable for reads
    assert db.get(b"k") == b"v"


# 0xFF 0xFF ... is reserved for columnar tables (see test_reserved_keys_are_refused).
KEYS = [b"\x00", b"\x00\x00", b"a", b"a\x00", b"ab", b"b", b"ba", b"z" * 10, b"\x7f", b"\x80", b"\xff", b"\xff\xfe"]


def _fill(db):
    with db.transaction() as txn:
        for k in reversed(KEYS):
            txn.put(k, b"v:" + k)


def test_scan_is_in_byte_order(db):
    _fill(db)
    with db.transaction(readonly=True) as txn:
        pairs = list(txn.scan())
    assert [k for k, _ in pairs] == sorted(KEYS)
    assert all(v == b"v:" + k for k, v in pairs)


@pytest.mark.parametrize(
    "start,end",
    [(None, None), (b"a", None), (None, b"b"), (b"a", b"b"), (b"a\x00", b"ba"), (b"\x80", None), (b"b", b"a"), (b"q", b"r")],
)
def test_scan_bounds_are_half_open(db, start, end):
    _fill(db)
    expected = [k for k in sorted(KEYS) if (start is None or k >= start) and (end is None or k < end)]
    with db.transaction(readonly=True) as txn:
        assert [k for k, _ in txn.scan(start, end)] == expected


def test_scan_prefix(db):
    _fill(db)
    with db.transaction(readonly=True) as txn:
        assert [k for k, _ in txn.scan(prefix=b"a")] == [b"a", b"a\x00", b"ab"]
        assert [k for k, _ in txn.scan(prefix=b"\xff")] == [b"\xff", b"\xff\xfe"]
        assert [k for k, _ in txn.scan(prefix=b"\x00")] == [b"\x00", b"\x00\x00"]
        with pytest.raises(TypeError):
            txn.scan(b"a", prefix=b"a")


def test_reserved_keys_are_refused(db):
    with db.transaction() as txn:
        for call in (lambda: txn.put(b"\xff\xffx", b"v"), lambda: txn.get(b"\xff\xff"),
                     lambda: txn.delete(b"\xff\xff\x00")):
            with pytest.raises(sochdb.InvalidError):
                call()


def test_scan_sees_own_writes_and_deletes(db):
    _fill(db)
    with db.transaction() as txn:
        txn.delete(b"a")
        txn.put(b"aa", b"mine")
        keys = [k for k, _ in txn.scan(prefix=b"a")]
        assert keys == [b"a\x00", b"aa", b"ab"]
        txn.abort()


def test_abandoned_scan_is_closed_by_commit(db):
    _fill(db)
    txn = db.transaction()
    it = txn.scan()
    assert next(it)[0] == b"\x00"
    txn.put(b"new", b"1")
    txn.commit()  # closes the open iterator first (the C API requires it): cut short, it says so
    with pytest.raises(sochdb.InvalidError, match="cut short"):
        next(it)
    with db.transaction(readonly=True) as txn:
        with txn.scan() as it2:
            next(it2)
        assert list(it2) == []


def test_stats(db):
    before = db.stats()
    assert isinstance(before, dict)
    for key in ("commits", "conflicts", "aborts", "processes_attached", "last_commit_seq", "daemon_running"):
        assert key in before and isinstance(before[key], int)
    assert before["processes_attached"] >= 1
    db.put(b"k", b"v")
    after = db.stats()
    assert after["commits"] == before["commits"] + 1
    assert after["last_commit_seq"] > before["last_commit_seq"]
    assert after["region_bytes"] > 0 and after["memtable_bytes"] > 0
    # the struct's last fields: a binding shorter than the C struct lacks them
    assert after["write_stalls"] == 0 and after["write_stall_us"] == 0
    assert db.region_path.endswith(".region")


def test_close_is_idempotent_and_aborts_open_transactions(dbdir):
    db = sochdb.open(dbdir)
    txn = db.transaction()
    txn.put(b"k", b"v")
    it = txn.scan()
    db.close()
    db.close()
    assert db.closed and txn.closed
    with pytest.raises(sochdb.InvalidError):
        db.transaction()
    with pytest.raises(sochdb.InvalidError):
        txn.get(b"k")
    with pytest.raises(sochdb.InvalidError, match="cut short"):
        list(it)
    with sochdb.open(dbdir) as db2:  # the aborted write was never applied
        assert db2.get(b"k") is None
    assert db2.closed


def test_options(dbdir):
    with sochdb.open(dbdir, memtable_bytes=1 << 20, region_bytes=64 << 20, busy_timeout_ms=2000, file_mode=0o600) as db:
        st = db.stats()
        assert st["memtable_bytes"] == 1 << 20
        assert st["region_bytes"] == 64 << 20
    with pytest.raises(TypeError):
        sochdb.open(dbdir, no_such_option=1)
    with pytest.raises(ValueError):
        sochdb.open(dbdir, region_bytes=-1)
    # past the C field's width: ctypes used to keep only the low bits
    with pytest.raises(ValueError):
        sochdb.open(dbdir, busy_timeout_ms=1 << 32)
    with pytest.raises(ValueError):
        sochdb.open(dbdir, region_bytes=1 << 64)
    # a NUL would end the path early in C: another directory would be opened
    with pytest.raises(ValueError, match="null byte"):
        sochdb.open(str(dbdir) + "\0-elsewhere")
    with pytest.raises(ValueError, match="null byte"):
        sochdb.open(dbdir, daemon_path="/bin/true\0x")


_GC_CYCLE = """
import gc, sys
import sochdb
db = sochdb.open(sys.argv[1])
t = db.transaction()
t.put(b"k", b"v")
s = t.scan()
cycle = [t, db, s] if sys.argv[2] == "txn-first" else [db, s, t]
cycle.append(cycle)
del db, t, s, cycle
gc.collect()
with sochdb.open(sys.argv[1]) as db2:  # reuses what a double free would have corrupted
    for i in range(3):
        db2.put(b"a%d" % i, b"b")
    assert db2.get(b"k") is None
print("survived")
"""


@pytest.mark.parametrize("order", ["db-first", "txn-first"])
def test_garbage_collected_cycle_of_database_and_transaction(dbdir, order):
    """The collector may finalize the Database first; its close frees the
    C transactions, which the Transaction's finalizer then must not abort
    again (a segfault before)."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sochdb.__file__)))
    r = subprocess.run([sys.executable, "-c", _GC_CYCLE, str(dbdir), order], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "survived" in r.stdout, (r.returncode, r.stdout, r.stderr)


def test_run_retries_and_returns(db):
    calls = []

    def fn(txn):
        calls.append(1)
        if len(calls) == 1:  # make the first attempt conflict
            other = db.transaction()
            other.put(b"counter", b"x")
            txn.put(b"counter", b"y")
            other.commit()
        else:
            txn.put(b"counter", b"z")
        return len(calls)

    assert db.run(fn) == 2
    assert db.get(b"counter") == b"z"


def test_retry_decorator(db):
    attempts = []

    @sochdb.retry(retries=3, backoff=0)
    def update():
        attempts.append(1)
        with db.transaction() as txn:
            txn.put(b"r", str(len(attempts)).encode())
            if len(attempts) < 3:
                db.put(b"r", b"interloper")  # commits first: ours conflicts

    update()
    assert len(attempts) == 3
    assert db.get(b"r") == b"3"

    @sochdb.retry(retries=1, backoff=0)
    def always_conflicts():
        with db.transaction() as txn:
            txn.put(b"r", b"never")
            db.put(b"r", b"interloper")

    with pytest.raises(sochdb.ConflictError):
        always_conflicts()


def test_too_many_transactions_is_busy(db):
    txns = [db.transaction(readonly=True) for _ in range(sochdb.MAX_TXNS_PER_HANDLE)]
    with pytest.raises(sochdb.BusyError) as ei:
        db.transaction(readonly=True)
    assert ei.value.code == sochdb.BUSY
    for t in txns:
        t.abort()
    db.transaction(readonly=True).abort()  # room again


def test_threads_share_a_handle(db):
    import threading

    db.put(b"n", b"0")
    errors = []

    def work():
        try:
            for _ in range(50):
                db.run(lambda t: t.put(b"n", b"%d" % (int(t.get(b"n")) + 1)), sync=False, retries=10_000)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert db.get(b"n") == b"200"


def test_close_from_another_thread_while_reading_does_not_crash(tmp_path):
    # ctypes releases the GIL during C calls: close() used to free the
    # transaction and unmap the region under a get/commit in another thread
    # (SIGSEGV within a few rounds). Now close() waits for calls in flight.
    import threading
    import time

    path = str(tmp_path / "db")
    with sochdb.open(path) as db:
        db.put(b"big", b"v" * (4 << 20), sync=False)
    for _ in range(40):
        db = sochdb.open(path)
        seen = []

        def reader():
            try:
                while True:
                    with db.transaction(readonly=True) as txn:
                        v = txn.get(b"big")
                        assert v == b"v" * (4 << 20)
            except sochdb.InvalidError as e:
                seen.append(e)

        th = threading.Thread(target=reader)
        th.start()
        time.sleep(0.005)
        db.close()
        th.join()
        assert seen and "closed" in str(seen[0])


_EXIT_RACES_CLOSE = """
import sys, threading, time
import sochdb
from sochdb import _ffi
lib = _ffi.lib()
real_abort = lib.sochdb_abort
inside = threading.Event()
def slow_abort(p):  # widens the window between __exit__'s bookkeeping and its sochdb_abort
    if threading.current_thread().name == "B":
        inside.set()
        time.sleep(0.2)
    return real_abort(p)
lib.sochdb_abort = slow_abort
db = sochdb.open(sys.argv[1])
def b():
    try:
        with db.transaction() as t:
            t.put(b"k", b"v")
            raise KeyError("boom")
    except KeyError:
        pass
th = threading.Thread(target=b, name="B")
th.start()
inside.wait()
db.close()
th.join()
print("survived")
"""


def test_close_waits_for_an_abort_on_exception_in_another_thread(dbdir):
    """A `with` block left by an exception aborts its transaction; a close()
    in another thread must wait for that abort, not free the transaction
    under it (a segfault or 'double free' before)."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sochdb.__file__)))
    r = subprocess.run([sys.executable, "-c", _EXIT_RACES_CLOSE, str(dbdir)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "survived" in r.stdout, (r.returncode, r.stdout, r.stderr)


def test_region_path_counts_as_a_call_in_flight(db, monkeypatch):
    """region_path reads the handle: a close() in another thread must wait
    for it, not free the handle under the call."""
    import threading
    import time

    from sochdb import _ffi

    lib = _ffi.lib()
    real_path, real_close = lib.sochdb_region_path, lib.sochdb_close
    inside, closed, freed_under_call = threading.Event(), threading.Event(), []

    def slow_path(h):
        inside.set()
        time.sleep(0.2)
        if closed.is_set():  # do not read the freed handle: record it
            freed_under_call.append(True)
            return b"/freed"
        return real_path(h)

    def close(h):
        closed.set()
        real_close(h)

    monkeypatch.setattr(lib, "sochdb_region_path", slow_path)
    monkeypatch.setattr(lib, "sochdb_close", close)
    th = threading.Thread(target=lambda: (inside.wait(), db.close()))
    th.start()
    path = db.region_path
    th.join()
    assert not freed_under_call and path != "/freed"
    assert db.closed


_CLOSE_IN_SIGNAL_HANDLER = """
import signal, sys, time
import sochdb
from sochdb import _ffi
db = sochdb.open(sys.argv[1])
db.put(b"k", b"v")
lib = _ffi.lib()
real_get = lib.sochdb_get
def slow_get(*args):  # the signal arrives while the call is in flight
    time.sleep(0.5)
    return real_get(*args)
lib.sochdb_get = slow_get
def on_alarm(signum, frame):  # a graceful-shutdown handler
    db.close()
    print("handler returned", flush=True)
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.1)
with db.transaction(readonly=True) as t:
    print("got", t.get(b"k"), flush=True)
print("closed", db.closed, flush=True)
"""


def test_close_in_a_signal_handler_that_interrupted_a_call(dbdir):
    """A signal handler that closes the database runs between bytecodes,
    possibly inside a call on it in the same thread: close() waited for that
    call forever (a hang) before; now the close happens when it returns."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sochdb.__file__)))
    try:
        r = subprocess.run([sys.executable, "-c", _CLOSE_IN_SIGNAL_HANDLER, str(dbdir)], env=env,
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("close() in a signal handler hung")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.split("\n")[:3] == ["handler returned", "got b'v'", "closed True"], r.stdout
