"""Error codes of include/sochdb.h mapped to exception classes."""

from __future__ import annotations

import os

import pytest

import sochdb


@pytest.mark.parametrize(
    "code,cls,name",
    [
        (sochdb.NOTFOUND, sochdb.NotFoundError, "SOCHDB_NOTFOUND"),
        (sochdb.CONFLICT, sochdb.ConflictError, "SOCHDB_CONFLICT"),
        (sochdb.BUSY, sochdb.BusyError, "SOCHDB_BUSY"),
        (sochdb.INVALID, sochdb.InvalidError, "SOCHDB_INVALID"),
        (sochdb.CORRUPT, sochdb.CorruptError, "SOCHDB_CORRUPT"),
        (sochdb.IO, sochdb.IoError, "SOCHDB_IO"),
        (sochdb.NOMEM, sochdb.NoMemoryError, "SOCHDB_NOMEM"),
        (sochdb.VERSION, sochdb.VersionError, "SOCHDB_VERSION"),
        (sochdb.DAEMON, sochdb.DaemonError, "SOCHDB_DAEMON"),
    ],
)
def test_code_to_class(code, cls, name):
    assert (sochdb.OK, sochdb.NOTFOUND, sochdb.CONFLICT, sochdb.BUSY, sochdb.INVALID) == (0, 1, 2, 3, 4)
    assert sochdb.error_class(code) is cls
    assert issubclass(cls, sochdb.Error)
    e = cls(code, "reason", "detail")
    assert e.code == code and e.code_name == name
    assert str(e) == "%s: reason (detail)" % name
    assert sochdb.error_class(1234) is sochdb.Error


def test_open_missing_without_create_is_notfound(tmp_path):
    with pytest.raises(sochdb.NotFoundError) as ei:
        sochdb.open(tmp_path / "missing", create_if_missing=False)
    assert ei.value.code == sochdb.NOTFOUND
    assert not (tmp_path / "missing").exists()


def test_open_on_a_file_is_invalid(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"not a directory")
    with pytest.raises(sochdb.Error) as ei:
        sochdb.open(f)
    assert ei.value.code == sochdb.INVALID
    assert isinstance(ei.value, sochdb.InvalidError)
    assert ei.value.detail  # the message from sochdb_last_error()


def test_key_and_value_limits_are_invalid(db):
    with db.transaction() as txn:
        with pytest.raises(sochdb.InvalidError) as ei:
            txn.put(b"k" * (sochdb.MAX_KEY + 1), b"v")
        assert "4097" in ei.value.detail and "4096" in str(ei.value)
        with pytest.raises(sochdb.InvalidError):
            txn.put(b"", b"v")
        with pytest.raises(sochdb.InvalidError):
            txn.get(b"")
        with pytest.raises(sochdb.InvalidError) as ei:
            txn.put(b"k", bytes(sochdb.MAX_VALUE + 1))
        assert "limit" in ei.value.detail
        txn.put(b"k" * sochdb.MAX_KEY, b"max key is fine")
    assert db.get(b"k" * sochdb.MAX_KEY) == b"max key is fine"


def test_conflict_in_one_process(db):
    db.put(b"acct", b"100")
    t1, t2 = db.transaction(), db.transaction()
    t1.put(b"acct", b"90")
    t2.put(b"acct", b"80")
    t2.put(b"other", b"x")
    t1.commit()
    with pytest.raises(sochdb.ConflictError) as ei:
        t2.commit()
    assert ei.value.code == sochdb.CONFLICT
    assert t2.closed  # commit always ends the transaction
    assert db.get(b"acct") == b"90"
    assert db.get(b"other") is None  # nothing of t2 was applied
    assert db.stats()["conflicts"] >= 1


def test_readonly_transactions_never_conflict(db):
    db.put(b"k", b"1")
    r = db.transaction(readonly=True)
    assert r.get(b"k") == b"1"
    db.put(b"k", b"2")
    r.commit()  # trivially fine


def test_missing_daemon_is_daemon_error(tmp_path):
    with pytest.raises(sochdb.DaemonError) as ei:
        sochdb.open(tmp_path / "db", daemon_path=str(tmp_path / "no-such-sochdbd"))
    assert ei.value.code == sochdb.DAEMON
    assert "no-such-sochdbd" in ei.value.detail


def test_library_lookup_order(monkeypatch, tmp_path):
    from sochdb import _ffi

    monkeypatch.setenv("SOCHDB_LIBRARY", "/explicit/libsochdb.so")
    assert _ffi.find_library() == "/explicit/libsochdb.so"  # the variable always wins
    monkeypatch.delenv("SOCHDB_LIBRARY")
    monkeypatch.setattr(_ffi.ctypes.util, "find_library", lambda name: None)
    fake = tmp_path / "checkout" / "build" / "libsochdb.so"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"")
    monkeypatch.chdir(tmp_path / "checkout")
    assert _ffi.find_library() == str(fake)  # then <cwd or a parent>/build
    assert sochdb.library_path() and os.path.exists(sochdb.library_path())


def test_errors_survive_pickle_and_copy():
    """multiprocessing and concurrent.futures pickle what a worker raises: an
    Error must come back whole (a TypeError in the parent's result handler
    before, which hung multiprocessing.Pool and broke a ProcessPoolExecutor)."""
    import copy
    import pickle

    e = sochdb.ConflictError(sochdb.CONFLICT, "write-write conflict", "key k", None)
    io = sochdb.IoError(sochdb.IO, "I/O error", "open x", 13)
    for orig in (e, io):
        for back in (pickle.loads(pickle.dumps(orig)), copy.copy(orig)):
            assert type(back) is type(orig)
            assert (back.code, back.code_name, back.reason, back.detail, back.errno, str(back)) == (
                orig.code, orig.code_name, orig.reason, orig.detail, orig.errno, str(orig))


def test_error_raised_in_a_process_pool_worker_reaches_the_parent(dbdir):
    import concurrent.futures as cf
    import multiprocessing as mp

    sochdb.open(dbdir).close()
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as ex:
        fut = ex.submit(_put_empty_key, str(dbdir))
        with pytest.raises(sochdb.InvalidError) as ei:
            fut.result(timeout=60)
    assert ei.value.code == sochdb.INVALID and "key is 0 bytes" in ei.value.detail


def _put_empty_key(path):
    with sochdb.open(path) as db:
        db.put(b"", b"an empty key is refused")
