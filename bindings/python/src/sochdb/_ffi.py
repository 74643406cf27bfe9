"""Loading libsochdb.so and declaring the C API (include/sochdb.h) for ctypes.

Where the library is looked for, in this order (the first that exists wins):

1. ``$SOCHDB_LIBRARY``: a path to the library file (an error if it cannot be
   loaded: an explicit choice is never silently replaced);
2. ``ctypes.util.find_library("sochdb")``: an installed library
   (``cmake --install``, ldconfig's cache, ``$LD_LIBRARY_PATH``);
3. the build directories of a source checkout: ``build/libsochdb.so`` under
   the current directory and each of its parents, then under the checkout that
   holds this file (when the package is used from ``bindings/python/src``
   or installed in editable mode).

The library finds the ``sochdbd`` daemon next to itself, so a library loaded
from ``build/`` uses ``build/sochdbd``; ``$SOCHDB_DAEMON`` or the
``daemon_path`` option choose another.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path
from typing import List, Optional

LIBRARY_ENV = "SOCHDB_LIBRARY"
_LIBNAMES = ("libsochdb.so", "libsochdb.so.0")

# Error codes (enum in sochdb.h).
OK = 0
NOTFOUND = 1
CONFLICT = 2
BUSY = 3
INVALID = 4
CORRUPT = 5
IO = 6
NOMEM = 7
VERSION = 8
DAEMON = 9

TXN_READONLY = 0x1
SYNC = 0x0
ASYNC = 0x1

MAX_KEY = 4096
MAX_VALUE = 16 * 1024 * 1024
MAX_TXNS_PER_HANDLE = 128


class Options(ctypes.Structure):
    _fields_ = [
        ("region_bytes", ctypes.c_size_t),
        ("memtable_bytes", ctypes.c_size_t),
        ("busy_timeout_ms", ctypes.c_uint),
        ("daemon_path", ctypes.c_char_p),
        ("create_if_missing", ctypes.c_int),
        ("file_mode", ctypes.c_uint),
        ("cache_bytes", ctypes.c_size_t),
    ]


_u32, _u64 = ctypes.c_uint32, ctypes.c_uint64


class Stats(ctypes.Structure):
    # Same order and types as struct sochdb_stats; ctypes pads like the C compiler.
    _fields_ = [
        ("region_bytes", _u64),
        ("memtable_bytes", _u64),
        ("memtables_total", _u32),
        ("memtables_in_use", _u32),
        ("memtable_used_bytes", _u64),
        ("processes_attached", _u32),
        ("transactions_open", _u32),
        ("last_commit_seq", _u64),
        ("commits", _u64),
        ("conflicts", _u64),
        ("aborts", _u64),
        ("keys_written", _u64),
        ("processes_reaped", _u64),
        ("dead_txns_rolled_back", _u64),
        ("oldest_snapshot", _u64),
        ("durable_seq", _u64),
        ("wal_groups", _u64),
        ("wal_records", _u64),
        ("wal_bytes", _u64),
        ("daemon_running", _u32),
        ("wal_segments", _u32),
        ("user_bytes", _u64),
        ("flushes", _u64),
        ("flush_bytes", _u64),
        ("compactions", _u64),
        ("compact_bytes_read", _u64),
        ("compact_bytes_written", _u64),
        ("compaction_debt_bytes", _u64),
        ("wal_segments_removed", _u64),
        ("sst_files", _u32),
        ("l0_files", _u32),
        ("sst_bytes", _u64),
        ("cache_bytes", _u64),
        ("cache_hits", _u64),
        ("cache_misses", _u64),
        ("cache_inserts", _u64),
        ("cache_evictions", _u64),
        ("write_stalls", _u64),
        ("write_stall_us", _u64),
        ("compact_throttle_us", _u64),
        ("l0_stops", _u64),
        ("l0_stop_us", _u64),
    ]


# Columnar tables (sochdb.h): column types, the nullable flag, filter ops.
INT64, DOUBLE, BYTES, STRING = 1, 2, 3, 4
NULLABLE = 0x1
EQ, LT, LE, GT, GE, BETWEEN = 1, 2, 3, 4, 5, 6
MAX_COLUMNS = 64
MAX_NAME = 64


class Column(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_uint), ("flags", ctypes.c_uint)]


class Value(ctypes.Structure):
    _fields_ = [
        ("is_null", ctypes.c_int),
        ("i64", ctypes.c_int64),
        ("f64", ctypes.c_double),
        ("bytes", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
    ]


class Filter(ctypes.Structure):
    _fields_ = [("column", ctypes.c_uint), ("op", ctypes.c_uint), ("value", Value), ("value2", Value)]


class ScanStats(ctypes.Structure):
    _fields_ = [
        ("scans", _u64),
        ("rows", _u64),
        ("blocks_read", _u64),
        ("blocks_skipped", _u64),
        ("blocks_direct", _u64),
        ("bytes_read", _u64),
        ("bytes_decompressed", _u64),
    ]


def candidate_paths() -> List[Path]:
    """The build-tree locations tried after $SOCHDB_LIBRARY and find_library."""
    roots: List[Path] = []
    cwd = Path.cwd()
    roots.extend([cwd, *cwd.parents])
    here = Path(__file__).resolve()
    # .../bindings/python/src/sochdb/_ffi.py -> the checkout is parents[4]
    if len(here.parents) > 4:
        roots.append(here.parents[4])
    seen = set()
    out: List[Path] = []
    for root in roots:
        for name in _LIBNAMES:
            p = root / "build" / name
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


def find_library() -> str:
    """The path (or soname) of the library that load() would use."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return env
    found = ctypes.util.find_library("sochdb")
    if found:
        return found
    for p in candidate_paths():
        if p.is_file():
            return str(p)
    raise OSError(
        "libsochdb.so not found: set $SOCHDB_LIBRARY to its path, install it "
        "(cmake --install build), or build it in <checkout>/build"
    )


_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def _declare(lib: ctypes.CDLL) -> None:
    vp, sz, i, u = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_uint
    pvp, psz = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)
    cp = ctypes.c_char_p

    def f(name, res, *args):
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = list(args)

    f("sochdb_strerror", cp, i)
    f("sochdb_last_error", cp)
    f("sochdb_open", i, cp, ctypes.POINTER(Options), pvp)
    f("sochdb_close", None, vp)
    f("sochdb_txn_begin", i, vp, u, pvp)
    f("sochdb_put", i, vp, cp, sz, cp, sz)
    f("sochdb_delete", i, vp, cp, sz)
    f("sochdb_get", i, vp, cp, sz, pvp, psz)
    f("sochdb_commit", i, vp, u)
    f("sochdb_abort", None, vp)
    f("sochdb_iter_open", i, vp, cp, sz, cp, sz, pvp)
    f("sochdb_iter_open_transient", i, vp, cp, sz, cp, sz, pvp)
    f("sochdb_iter_next", i, vp, pvp, psz, pvp, psz)
    f("sochdb_iter_close", None, vp)
    f("sochdb_stats_get", i, vp, ctypes.POINTER(Stats))
    f("sochdb_region_path", cp, vp)
    pcol, pval, pu = ctypes.POINTER(Column), ctypes.POINTER(Value), ctypes.POINTER(ctypes.c_uint)
    f("sochdb_table_create", i, vp, cp, pcol, sz)
    f("sochdb_table_open", i, vp, cp, pcol, sz, pvp)
    f("sochdb_table_close", None, vp)
    f("sochdb_table_schema", i, vp, ctypes.POINTER(pcol), psz, ctypes.POINTER(ctypes.c_uint32))
    f("sochdb_table_add_column", i, vp, vp, pcol)
    f("sochdb_row_put", i, vp, vp, pval)
    f("sochdb_row_delete", i, vp, vp, pval)
    f("sochdb_row_get", i, vp, vp, pval, pu, sz, pval)
    f("sochdb_table_scan", i, vp, vp, pval, pval, pu, sz, ctypes.POINTER(Filter), pvp)
    f("sochdb_scan_next", i, vp, pval)
    f("sochdb_scan_close", None, vp, ctypes.POINTER(ScanStats))
    f("sochdb_scan_stats_get", i, vp, ctypes.POINTER(ScanStats))


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use, once per process)."""
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                path = find_library()
                loaded = ctypes.CDLL(path, use_errno=True)
                _declare(loaded)
                _lib = loaded
    return _lib


def library_path() -> Optional[str]:
    """The file the library was loaded from (None before the first load)."""
    if _lib is None:
        return None
    return _lib._name
