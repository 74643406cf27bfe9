"""sochdb — Python bindings (ctypes, no compiler needed) for sochdb, a
transactional key-value engine that several processes share.

    import sochdb

    with sochdb.open("/var/lib/myapp/db") as db:
        with db.transaction() as txn:          # commits (SYNC) at the end, aborts on exception
            txn.put(b"users/1", b"Alice")
        with db.transaction(readonly=True) as txn:
            print(txn.get(b"users/1"))         # b'Alice'
            for key, value in txn.scan(prefix=b"users/"):
                print(key, value)
        db.run(lambda txn: txn.put(b"hits", b"1"))   # retried on ConflictError
        with db.transaction() as txn:          # columnar tables
            people = txn.create_table("people", [("id", "int64"), ("name", "string", True)])
            txn.put_row(people, (7, "Ann"))
        with db.transaction(readonly=True) as txn:
            for (name,) in txn.scan_table(people, columns=["name"], where=("id", ">=", 5)):
                print(name)

A handle does not survive os.fork(): open a new one in the child.
The library is found through $SOCHDB_LIBRARY, then ctypes.util.find_library,
then <dir>/build/libsochdb.so for the current directory and its parents and the
checkout holding this package (see sochdb._ffi).
"""

from . import _ffi
from ._ffi import MAX_KEY, MAX_TXNS_PER_HANDLE, MAX_VALUE, find_library, library_path
from .db import Database, Scan, Transaction, open, retry
from .tables import BYTES, DOUBLE, INT64, STRING, Column, Table, TableScan
from .errors import (
    BusyError,
    ConflictError,
    CorruptError,
    DaemonError,
    Error,
    InvalidError,
    IoError,
    NoMemoryError,
    NotFoundError,
    VersionError,
    error_class,
)

# The SOCHDB_* error codes, for comparing with Error.code.
OK = _ffi.OK
NOTFOUND = _ffi.NOTFOUND
CONFLICT = _ffi.CONFLICT
BUSY = _ffi.BUSY
INVALID = _ffi.INVALID
CORRUPT = _ffi.CORRUPT
IO = _ffi.IO
NOMEM = _ffi.NOMEM
VERSION = _ffi.VERSION
DAEMON = _ffi.DAEMON

__version__ = "0.1.0"

__all__ = [
    "open",
    "retry",
    "Database",
    "Transaction",
    "Scan",
    "Column",
    "Table",
    "TableScan",
    "INT64",
    "DOUBLE",
    "BYTES",
    "STRING",
    "Error",
    "NotFoundError",
    "ConflictError",
    "BusyError",
    "InvalidError",
    "CorruptError",
    "IoError",
    "NoMemoryError",
    "VersionError",
    "DaemonError",
    "error_class",
    "find_library",
    "library_path",
    "MAX_KEY",
    "MAX_VALUE",
    "MAX_TXNS_PER_HANDLE",
    "OK",
    "NOTFOUND",
    "CONFLICT",
    "BUSY",
    "INVALID",
    "CORRUPT",
    "IO",
    "NOMEM",
    "VERSION",
    "DAEMON",
]
