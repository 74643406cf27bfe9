"""Database, Transaction and Scan: the Pythonic layer over the C API."""

from __future__ import annotations

import ctypes
import functools
import os
import random
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar, Union

from . import _ffi, tables
from ._closeable import Closeable
from ._cursor import Cursor
from .errors import ConflictError, check as _check, usage_error

BytesLike = Union[bytes, bytearray, memoryview, str]
T = TypeVar("T")

_OPTION_NAMES = (
    "region_bytes",
    "memtable_bytes",
    "cache_bytes",
    "busy_timeout_ms",
    "daemon_path",
    "create_if_missing",
    "file_mode",
)

DEFAULT_RETRIES = 100

# Bumped in every fork()ed child: a handle opened in an earlier generation is
# inherited, and its lock may have been held by a thread that is not here.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _as_bytes(x: Any, what: str) -> bytes:
    """Keys and values: bytes as they are, other bytes-likes copied, str as UTF-8."""
    if isinstance(x, bytes):
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, str):
        return x.encode("utf-8")
    raise TypeError("%s must be bytes, bytearray, memoryview or str, not %s" % (what, type(x).__name__))


def _prefix_end(prefix: bytes) -> Optional[bytes]:
    """The smallest key greater than every key starting with prefix (None: no bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)



def _sleep_backoff(attempt: int, base: float, cap: float) -> None:
    if base > 0:
        time.sleep(random.uniform(0, min(cap, base * (2 ** min(attempt, 16)))))


def _c_path(path: Union[str, bytes, "os.PathLike[str]"], what: str) -> bytes:
    """path as the C library gets it; a NUL inside would cut it short there."""
    p = os.fsencode(path)
    if b"\0" in p:
        raise ValueError("embedded null byte in the %s %r" % (what, p))
    return p


_OPTION_MAX = {name: (1 << (8 * ctypes.sizeof(ctype))) - 1 for name, ctype in _ffi.Options._fields_}


def _options(kw: Dict[str, Any]) -> Optional[_ffi.Options]:
    unknown = set(kw) - set(_OPTION_NAMES)
    if unknown:
        raise TypeError("unknown sochdb option(s): %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(_OPTION_NAMES)))
    if not kw:
        return None
    o = _ffi.Options()
    for name in ("region_bytes", "memtable_bytes", "cache_bytes", "busy_timeout_ms", "file_mode"):
        v = kw.get(name)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _OPTION_MAX[name]:
            raise ValueError("option %s must be an int in [0, %d], not %r" % (name, _OPTION_MAX[name], v))
        setattr(o, name, v)
    dp = kw.get("daemon_path")
    if dp is not None:
        o.daemon_path = _c_path(dp, "daemon path")
    cim = kw.get("create_if_missing")
    if cim is not None:
        o.create_if_missing = 1 if cim else -1
    return o


class _CallsInFlight:
    """Counts the C calls in flight on one handle or its objects, used as
    ``with db._calls:`` around each (ctypes releases the GIL during a call),
    so that close() in another thread waits for them and never frees a
    transaction, an iterator or the mapping one is using. It holds no
    reference to its Database, which a dropped handle's finalizer closes
    (but a deferred close, below, until it runs).

    The calls are counted per thread: a close() that runs in a thread which
    itself has a call in flight (a signal handler, or a finalizer, that ran in
    the middle of one) cannot wait for it, so it is deferred to the end of
    the last call in flight."""

    __slots__ = ("_lock", "_owners", "_closing", "_on_idle", "_generation", "_path")

    def __init__(self, path: str):
        # Reentrant: a signal handler or a finalizer may run while this thread holds it.
        self._lock = threading.RLock()
        self._owners: Dict[int, int] = {}  # thread ident -> its calls in flight
        self._closing = False
        self._on_idle: Optional[Callable[[], None]] = None  # a close() deferred until no call is in flight
        self._generation = _fork_generation
        self._path = path

    def __enter__(self) -> None:
        if self._generation != _fork_generation:
            return  # inherited across fork: the library refuses every call, and nothing here counts
        tid = threading.get_ident()
        with self._lock:  # nothing that allocates inside: a finalizer run by the GC here would deadlock
            ok = not self._closing
            if ok:
                self._owners[tid] = self._owners.get(tid, 0) + 1  # one store: counted or not
        if not ok:
            raise usage_error("the database %s is closed" % self._path)

    def __exit__(self, *exc: Any) -> None:
        if self._generation != _fork_generation:  # as __enter__ found it: a fork leaves no caller in the child
            return
        tid = threading.get_ident()
        with self._lock:
            n = self._owners[tid] - 1
            if n:
                self._owners[tid] = n
            else:
                del self._owners[tid]
            run = self._on_idle if not self._owners else None
            if run is not None:
                self._on_idle = None
        if run is not None:
            run()

    def refuse_and_drain(self, finish: Callable[[], None]) -> bool:
        """Refuse new calls and wait for those in flight (milliseconds at
        most, but a SYNC commit). False if another thread closes already, or
        if this thread has a call in flight itself: then finish() runs when
        the last call in flight ends."""
        tid = threading.get_ident()
        with self._lock:
            if self._closing:
                return False
            self._closing = True
            if self._owners.get(tid):
                self._on_idle = finish
                return False
        while self._owners:
            time.sleep(0.0005)
        return True


class Database(Closeable):
    """One process's handle on one database directory (``sochdb_open``).

    Shared by all threads of the process; transactions are per thread. A
    handle does not survive ``os.fork()``: in the child every call on an
    inherited handle raises InvalidError; open a new one there. Close it with
    ``close()`` or use it as a context manager.
    """

    def __init__(self, path: Union[str, bytes, "os.PathLike[str]"], **options: Any):
        self._handle: Optional[int] = None
        self._pid = os.getpid()
        self._txns: "weakref.WeakSet[Transaction]" = weakref.WeakSet()
        self._generation = _fork_generation
        self.path = os.fsdecode(path)
        self._calls = _CallsInFlight(self.path)
        cpath = _c_path(path, "database path")
        opts = _options(options)
        lib = _ffi.lib()
        out = ctypes.c_void_p()
        rc = lib.sochdb_open(cpath, ctypes.byref(opts) if opts is not None else None, ctypes.byref(out))
        _check(rc)
        self._handle = out.value

    # -- life cycle ------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Abort the transactions still open and detach. Idempotent.

        In a fork()ed child, closing an inherited handle only frees this
        process's copy; the parent's handle is unaffected. Called from a
        signal handler (or a finalizer) that interrupted a call on this
        handle in the same thread, it refuses new calls at once and detaches
        when that call returns."""
        if self._handle is None:
            return
        if self._generation == _fork_generation and not self._calls.refuse_and_drain(self._finish_close):
            return
        self._finish_close()

    def _finish_close(self) -> None:
        for t in list(self._txns):  # while the handle is open: _release aborts only then
            t._release()
        h, self._handle = self._handle, None
        if h is not None:
            _ffi.lib().sochdb_close(h)

    def __enter__(self) -> "Database":
        return self

    def __repr__(self) -> str:
        return "<sochdb.Database %r%s>" % (self.path, " closed" if self.closed else "")

    def _end_object(self, end: Callable[[], None]) -> None:
        """Run ``end`` (which frees a transaction or an iterator) as a call in
        flight. Where the database is closed (a GC cycle may finalize it
        first) run it without counting; where another thread is closing it,
        skip it: that close() ends the object."""
        try:
            self._calls.__enter__()
        except Exception:
            if self._handle is None:
                end()
            return
        try:
            end()
        finally:
            self._calls.__exit__()

    def _h(self) -> int:
        h = self._handle
        if h is None:
            raise usage_error("the database %s is closed" % self.path)
        return h

    # -- transactions ----------------------------------------------------

    def transaction(self, *, readonly: bool = False, sync: bool = True) -> "Transaction":
        """Begin a transaction (its snapshot is taken now).

        As a context manager it commits when the block ends normally
        (SYNC by default: durable when commit returns; ``sync=False`` for
        ASYNC: visible at once, durable within milliseconds) and aborts when
        it raises. ``readonly=True`` refuses writes and never conflicts."""
        return Transaction(self, readonly=readonly, sync=sync)

    def run(
        self,
        fn: Callable[["Transaction"], T],
        *,
        retries: int = DEFAULT_RETRIES,
        sync: bool = True,
        readonly: bool = False,
        backoff: float = 0.0001,
        max_backoff: float = 0.01,
    ) -> T:
        """Run ``fn(txn)`` in a new transaction and commit it, retrying the whole
        thing (a fresh snapshot each time) on ConflictError, at most ``retries``
        more times, with a small random backoff. Returns what fn returned; an
        exception from fn aborts and propagates (not retried)."""
        attempt = 0
        while True:
            try:
                with self.transaction(sync=sync, readonly=readonly) as txn:
                    result = fn(txn)
                return result
            except ConflictError:
                if attempt >= retries:
                    raise
                _sleep_backoff(attempt, backoff, max_backoff)
                attempt += 1

    # -- one-off operations --------------------------------------------------

    def get(self, key: BytesLike) -> Optional[bytes]:
        """Read one key in a fresh read-only snapshot."""
        with self.transaction(readonly=True) as txn:
            return txn.get(key)

    def put(self, key: BytesLike, value: BytesLike, *, sync: bool = True) -> None:
        """Write one key in its own transaction (retried on conflict)."""
        self.run(lambda t: t.put(key, value), sync=sync)

    def delete(self, key: BytesLike, *, sync: bool = True) -> None:
        """Delete one key in its own transaction (retried on conflict)."""
        self.run(lambda t: t.delete(key), sync=sync)

    # -- introspection -----------------------------------------------------------

    def stats(self) -> Dict[str, int]:
        """``sochdb_stats_get`` as a dict (counters summed over all processes)."""
        st = _ffi.Stats()
        with self._calls:
            _check(_ffi.lib().sochdb_stats_get(self._h(), ctypes.byref(st)))
        return {name: getattr(st, name) for name, _ in _ffi.Stats._fields_}

    def scan_stats(self) -> Dict[str, int]:
        """``sochdb_scan_stats_get``: the cost of every table scan closed in any
        process since the shared region was created."""
        return tables.scan_stats(self)

    @property
    def region_path(self) -> str:
        """The shared region file of this database (under /dev/shm or $SOCHDB_SHM_DIR)."""
        if self._pid != os.getpid():  # the C call cannot refuse an inherited handle, so refuse it here
            self._h()
            raise usage_error("the database %s was opened before a fork(): open it again in this process" % self.path)
        with self._calls:  # close() in another thread must not free the handle under the call
            return os.fsdecode(_ffi.lib().sochdb_region_path(self._h()))


class Transaction:
    """A snapshot-isolated transaction. Used by one thread at a time.

    Reads see the snapshot taken at begin plus this transaction's own writes.
    Writes are buffered and applied all at once by ``commit()``, or not at all.
    """

    def __init__(self, db: Database, *, readonly: bool = False, sync: bool = True):
        self._db = db
        self._ptr: Optional[int] = None
        self._iters: "weakref.WeakSet[Cursor]" = weakref.WeakSet()  # its open Scans and TableScans
        self.readonly = readonly
        self.sync = sync
        out = ctypes.c_void_p()
        flags = _ffi.TXN_READONLY if readonly else 0
        with db._calls:
            _check(_ffi.lib().sochdb_txn_begin(db._h(), flags, ctypes.byref(out)))
            self._ptr = out.value
            db._txns.add(self)

    @property
    def closed(self) -> bool:
        """True once committed, aborted, or its database closed."""
        return self._ptr is None

    def _t(self) -> int:
        p = self._ptr
        if p is None:
            raise usage_error("the transaction is finished (committed, aborted or its database closed)")
        return p

    def _take(self) -> Optional[int]:
        """Detach the C transaction from this object, closing its iterators first."""
        for it in list(self._iters):
            it._cut_short()
        p, self._ptr = self._ptr, None
        self._db._txns.discard(self)
        return p

    def _release(self) -> None:
        p = self._take()
        # A closed database freed its transactions: the garbage collector may
        # finalize a Database before a Transaction of the same cycle.
        if p is not None and self._db._handle is not None:
            _ffi.lib().sochdb_abort(p)

    # -- reads and writes -----------------------------------------------------

    def put(self, key: BytesLike, value: BytesLike) -> None:
        k, v = _as_bytes(key, "key"), _as_bytes(value, "value")
        with self._db._calls:
            _check(_ffi.lib().sochdb_put(self._t(), k, len(k), v, len(v)))

    def delete(self, key: BytesLike) -> None:
        """Delete key (not an error if it is absent)."""
        k = _as_bytes(key, "key")
        with self._db._calls:
            _check(_ffi.lib().sochdb_delete(self._t(), k, len(k)))

    def get(self, key: BytesLike, default: Optional[bytes] = None) -> Optional[bytes]:
        """The value of key in this snapshot (a copy), or default if absent."""
        k = _as_bytes(key, "key")
        val, vlen = ctypes.c_void_p(), ctypes.c_size_t()
        with self._db._calls:
            rc = _ffi.lib().sochdb_get(self._t(), k, len(k), ctypes.byref(val), ctypes.byref(vlen))
            if rc == _ffi.NOTFOUND:
                return default
            _check(rc)
            return ctypes.string_at(val.value, vlen.value) if vlen.value else b""  # before close() may unmap it

    def __contains__(self, key: BytesLike) -> bool:
        return self.get(key) is not None

    def scan(
        self,
        start: Optional[BytesLike] = None,
        end: Optional[BytesLike] = None,
        *,
        prefix: Optional[BytesLike] = None,
    ) -> "Scan":
        """Iterate (key, value) pairs, copies, with start <= key < end in byte
        order (None: unbounded), or with keys starting with ``prefix``. Sees the
        snapshot plus this transaction's writes made before the call."""
        if prefix is not None:
            if start is not None or end is not None:
                raise TypeError("scan(): give prefix or start/end, not both")
            p = _as_bytes(prefix, "prefix")
            return Scan(self, p or None, _prefix_end(p) if p else None)
        s = _as_bytes(start, "start") if start is not None else None
        e = _as_bytes(end, "end") if end is not None else None
        return Scan(self, s or None, e or None)

    # -- columnar tables (sochdb.tables) ------------------------------------------

    def create_table(self, name: str, columns: Sequence["tables.ColumnSpec"]) -> "tables.Table":
        """Create table ``name`` (it exists for others once this transaction
        commits) and open it. Each column is a ``Column(name, type,
        nullable=False)`` or a ``(name, type[, nullable])`` tuple; the first
        is the primary key: INT64, BYTES or STRING, not nullable."""
        return tables.create_table(self, name, columns)

    def open_table(self, name: str, columns: Optional[Sequence["tables.ColumnSpec"]] = None) -> "tables.Table":
        """Open table ``name`` as this snapshot holds it (NotFoundError if it
        has none); with ``columns``, InvalidError unless they are exactly its
        schema. The Table serves any later transaction of this Database."""
        return tables.open_table(self, name, columns)

    def add_column(self, table: "tables.Table", name: str, type: Union[int, str]) -> None:
        """Append a nullable column (rows written before read it as None);
        open the table again to use it."""
        tables.add_column(self, table, name, type)

    def put_row(self, table: "tables.Table", row: Union[Sequence[Any], Dict[str, Any]]) -> None:
        """Insert or replace the row whose primary key is its first column: a
        sequence in schema order, or a dict by column name (absent: None)."""
        tables.put_row(self, table, row)

    def delete_row(self, table: "tables.Table", pk: Any) -> None:
        """Delete the row with primary key ``pk`` (not an error if absent)."""
        tables.delete_row(self, table, pk)

    def get_row(
        self, table: "tables.Table", pk: Any, columns: Optional[Sequence[Union[int, str]]] = None
    ) -> Optional[Tuple[Any, ...]]:
        """The row with primary key ``pk`` as a tuple of ``columns`` (names or
        indices; None: every column), or None if there is none."""
        return tables.get_row(self, table, pk, columns)

    def scan_table(
        self,
        table: "tables.Table",
        start: Any = None,
        end: Any = None,
        *,
        columns: Optional[Sequence[Union[int, str]]] = None,
        where: Optional[Sequence[Any]] = None,
    ) -> "tables.TableScan":
        """Rows with start <= primary key < end (None: unbounded) in key order,
        each a tuple of ``columns`` (None: all), that pass ``where``:
        ``(column, op, value)`` with op one of ==, <, <=, >, >=, or
        ``(column, "between", low, high)``; NULL passes no filter. Only the
        columns asked for and the filter's are read from SSTables."""
        return tables.TableScan(self, table, start, end, columns, where)

    # -- ending ------------------------------------------------------------------

    def commit(self, sync: Optional[bool] = None) -> None:
        """Apply every write atomically, or none (ConflictError: retry the whole
        transaction). The transaction is finished whatever happens."""
        if sync is None:
            sync = self.sync
        with self._db._calls:
            p = self._take()
            if p is None:
                raise usage_error("the transaction is finished (committed, aborted or its database closed)")
            _check(_ffi.lib().sochdb_commit(p, _ffi.SYNC if sync else _ffi.ASYNC))

    def abort(self) -> None:
        """Discard the writes. A no-op on a finished transaction."""
        if self._ptr is not None:
            self._db._end_object(self._release)  # on a closed database _release only frees iterators

    def __enter__(self) -> "Transaction":
        self._t()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._ptr is None:  # committed or aborted inside the block
            return
        if exc_type is None:
            self.commit()
        else:
            # As a call in flight, like abort(): a close() in another thread
            # must not free the transaction under this sochdb_abort.
            self._db._end_object(self._release)

    def __del__(self) -> None:
        try:
            self.abort()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "finished" if self.closed else ("read-only" if self.readonly else "open")
        return "<sochdb.Transaction %s on %r>" % (state, self._db.path)


class Scan(Cursor):
    """An iterator over (key, value) pairs of a range (``Transaction.scan``).

    Closed when exhausted, by ``close()``, on leaving a ``with`` block, or
    when its transaction ends."""

    def __init__(self, txn: Transaction, start: Optional[bytes], end: Optional[bytes]):
        out = ctypes.c_void_p()
        with txn._db._calls:
            _check(
                # transient: _step copies each pair before the next step,
                # so the transaction keeps no copy of what the scan read
                _ffi.lib().sochdb_iter_open_transient(
                    txn._t(), start, len(start) if start else 0, end, len(end) if end else 0, ctypes.byref(out)
                )
            )
            self._opened(txn, out.value)
        self._k, self._kl = ctypes.c_void_p(), ctypes.c_size_t()
        self._v, self._vl = ctypes.c_void_p(), ctypes.c_size_t()

    def __next__(self) -> Tuple[bytes, bytes]:
        return super().__next__()

    def _step(self, it: int) -> Optional[Tuple[bytes, bytes]]:
        rc = _ffi.lib().sochdb_iter_next(
            it, ctypes.byref(self._k), ctypes.byref(self._kl), ctypes.byref(self._v), ctypes.byref(self._vl)
        )
        if rc == _ffi.NOTFOUND:
            return None
        _check(rc)
        key = ctypes.string_at(self._k.value, self._kl.value)
        val = ctypes.string_at(self._v.value, self._vl.value) if self._vl.value else b""
        return key, val

    def _free(self, it: int) -> None:
        _ffi.lib().sochdb_iter_close(it)


def open(path: Union[str, bytes, "os.PathLike[str]"], **options: Any) -> Database:  # noqa: A001
    """Open (creating if missing) the database in directory ``path``.

    Options (all optional, 0/None = the library's default): ``region_bytes``,
    ``memtable_bytes``, ``cache_bytes`` (fixed by the process that creates the
    region), ``busy_timeout_ms``, ``daemon_path`` (the sochdbd to spawn),
    ``create_if_missing`` (True by default; False: NotFoundError if missing),
    ``file_mode`` (e.g. 0o660)."""
    return Database(path, **options)


def retry(
    fn: Optional[Callable[..., T]] = None,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 0.0001,
    max_backoff: float = 0.01,
) -> Any:
    """Decorator: call the function again (whole) when it raises ConflictError,
    at most ``retries`` more times. Usable as ``@retry`` or ``@retry(retries=5)``.
    The function must begin its own transaction on each call."""

    def deco(f: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            attempt = 0
            while True:
                try:
                    return f(*args, **kwargs)
                except ConflictError:
                    if attempt >= retries:
                        raise
                    _sleep_backoff(attempt, backoff, max_backoff)
                    attempt += 1

        return wrapper

    if fn is not None:
        return deco(fn)
    return deco
