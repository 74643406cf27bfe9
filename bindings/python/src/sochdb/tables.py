"""Columnar tables: Column, Table and TableScan, and the conversion of Python
values to and from the C API's sochdb_value.

A table holds rows of a fixed schema (named, typed columns; the first is the
primary key) in the database's key space, so every row operation belongs to
a Transaction and behaves as a key-value write or read in it. The
Transaction methods (create_table, open_table, put_row, get_row, delete_row,
add_column, scan_table) call into this module.

Types: ``INT64`` (Python int), ``DOUBLE`` (float; an int is taken too),
``BYTES`` (bytes; bytearray, memoryview and str, as UTF-8, are taken too) and
``STRING`` (str, stored as UTF-8; bytes are taken too). NULL is None. A
string is read back with ``surrogateescape``, so bytes that are not UTF-8
(written by a C program) survive a read and a write.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from . import _ffi
from ._closeable import Closeable
from ._cursor import Cursor
from .errors import check as _check, from_code, usage_error

INT64, DOUBLE, BYTES, STRING = _ffi.INT64, _ffi.DOUBLE, _ffi.BYTES, _ffi.STRING

_TYPE_NAMES = {INT64: "int64", DOUBLE: "double", BYTES: "bytes", STRING: "string"}
_TYPES_BY_NAME = {name: code for code, name in _TYPE_NAMES.items()}
_OPS = {"==": _ffi.EQ, "<": _ffi.LT, "<=": _ffi.LE, ">": _ffi.GT, ">=": _ffi.GE, "between": _ffi.BETWEEN}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class Column(NamedTuple):
    """One column of a schema: its name, its type (INT64, DOUBLE, BYTES or
    STRING; or "int64", "double", "bytes", "string") and whether it may
    hold NULL (None)."""

    name: str
    type: Union[int, str]
    nullable: bool = False


ColumnSpec = Union[Column, Tuple[Any, ...]]



def _type_code(t: Union[int, str], name: str) -> int:
    code = _TYPES_BY_NAME.get(t) if isinstance(t, str) else t
    if code not in _TYPE_NAMES or isinstance(code, bool):
        raise ValueError("column %r: unknown type %r (INT64, DOUBLE, BYTES, STRING or their names)" % (name, t))
    return code


def _column(spec: ColumnSpec) -> Column:
    """A Column from a Column or a (name, type[, nullable]) tuple, its type as a code."""
    if not isinstance(spec, tuple) or not 2 <= len(spec) <= 3:
        raise TypeError("a column is a Column or a (name, type[, nullable]) tuple, not %r" % (spec,))
    c = Column(*spec)
    if not isinstance(c.name, str):
        raise TypeError("a column's name is a str, not %s" % type(c.name).__name__)
    return Column(c.name, _type_code(c.type, c.name), bool(c.nullable))


def _c_columns(cols: Sequence[Column]) -> "ctypes.Array[_ffi.Column]":
    arr = (_ffi.Column * max(len(cols), 1))()
    for i, c in enumerate(cols):
        arr[i].name = _name(c.name, "column")
        arr[i].type = c.type
        arr[i].flags = _ffi.NULLABLE if c.nullable else 0
    return arr


def _to_value(x: Any, col: Column, out: _ffi.Value, keep: List[bytes]) -> None:
    """Fill out with x as col's type; bytes it points to go into keep (alive for the call)."""
    out.is_null, out.i64, out.f64, out.bytes, out.len = 0, 0, 0.0, None, 0
    if x is None:
        out.is_null = 1
        return
    t = col.type
    if t == INT64:
        if not isinstance(x, int) or isinstance(x, bool):
            raise TypeError("column %r is int64: an int, not %s" % (col.name, type(x).__name__))
        if not _INT64_MIN <= x <= _INT64_MAX:
            raise OverflowError("column %r: %d is outside int64" % (col.name, x))
        out.i64 = x
    elif t == DOUBLE:
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            raise TypeError("column %r is double: a float, not %s" % (col.name, type(x).__name__))
        out.f64 = float(x)
    else:
        if isinstance(x, str):
            b = x.encode("utf-8", "surrogateescape")
        elif isinstance(x, (bytes, bytearray, memoryview)):
            b = bytes(x)
        else:
            raise TypeError("column %r is %s: str or bytes, not %s" % (col.name, _TYPE_NAMES[t], type(x).__name__))
        keep.append(b)
        out.bytes = ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p)
        out.len = len(b)


def _from_value(v: _ffi.Value, t: int) -> Any:
    """A copy of v as Python: the bytes it points to may not outlive the call."""
    if v.is_null:
        return None
    if t == INT64:
        return v.i64
    if t == DOUBLE:
        return v.f64
    b = ctypes.string_at(v.bytes, v.len) if v.len else b""
    return b.decode("utf-8", "surrogateescape") if t == STRING else b


class Table(Closeable):
    """An open table: its name, id and schema as it was opened (``columns``).

    Opened by ``Transaction.open_table`` (or ``create_table``), used in any
    later transaction of the same Database, by any thread; after
    ``add_column`` commits, open it again to use the new column. ``close()``
    (or the garbage collector) frees the handle, not the table; a call on
    it in flight, or a scan of it still open, keeps the C handle until it
    ends (the C scan reads the table's schema at every step)."""

    def __init__(self, ptr: int, db: Any):
        self._ptr: Optional[int] = ptr
        self._db = db
        self._lock = threading.Lock()
        self._users = 0  # calls in flight and open scans: the C handle outlives close() until they end
        self._closing = False
        cols = ctypes.POINTER(_ffi.Column)()
        n, tid = ctypes.c_size_t(), ctypes.c_uint32()
        _check(_ffi.lib().sochdb_table_schema(ptr, ctypes.byref(cols), ctypes.byref(n), ctypes.byref(tid)))
        self.id = tid.value
        self.columns: Tuple[Column, ...] = tuple(
            Column(cols[i].name.decode("utf-8", "surrogateescape"), cols[i].type, bool(cols[i].flags & _ffi.NULLABLE))
            for i in range(n.value)
        )
        self.name = ""  # set by open_table
        self._index = {c.name: i for i, c in enumerate(self.columns)}

    @property
    def closed(self) -> bool:
        return self._closing

    def _acquire(self, txn: Any) -> int:
        """The C handle, kept until the matching _release()."""
        if txn._db is not self._db:
            raise usage_error("the table %r was opened on another Database: open it there" % self.name)
        with self._lock:  # nothing that allocates inside: a finalizer run here would deadlock
            p = None if self._closing else self._ptr
            if p is not None:
                self._users += 1
        if p is None:
            raise usage_error("the table %r is closed" % self.name)
        return p

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            p = self._take_if_unused()
        if p is not None:
            _ffi.lib().sochdb_table_close(p)

    @contextlib.contextmanager
    def _held(self, txn: Any) -> Iterator[int]:
        p = self._acquire(txn)
        try:
            yield p
        finally:
            self._release()

    def _take_if_unused(self) -> Optional[int]:
        """Under the lock: the C handle to free, once closed and unused."""
        p = None
        if self._closing and self._users == 0:
            p, self._ptr = self._ptr, None
        return p

    def column_index(self, column: Union[int, str]) -> int:
        """The index of a column given by name or index."""
        if isinstance(column, str):
            i = self._index.get(column)
            if i is None:
                raise KeyError("table %r has no column %r" % (self.name, column))
            return i
        if isinstance(column, int) and not isinstance(column, bool) and 0 <= column < len(self.columns):
            return column
        raise IndexError("table %r has no column %r" % (self.name, column))

    def _c_indices(self, columns: Optional[Sequence[Union[int, str]]]) -> Tuple[Optional[Any], List[int]]:
        """(the C array of column indices or None for all, the indices)."""
        if columns is None:
            return None, list(range(len(self.columns)))
        idx = [self.column_index(c) for c in columns]
        if not idx:
            raise ValueError("columns: name at least one column, or None for all")
        return (ctypes.c_uint * len(idx))(*idx), idx

    def _row(self, row: Union[Sequence[Any], Dict[str, Any]]) -> Tuple["ctypes.Array[_ffi.Value]", List[bytes]]:
        """A full row as the C API takes it: a sequence in schema order, or a
        dict by column name (the columns it leaves out are NULL)."""
        if isinstance(row, dict):
            unknown = set(row) - set(self._index)
            if unknown:
                raise KeyError("table %r has no column(s) %s" % (self.name, ", ".join(sorted(map(repr, unknown)))))
            row = [row.get(c.name) for c in self.columns]
        elif isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise TypeError("a row is a sequence of the columns' values or a dict by name, not %s" % type(row).__name__)
        if len(row) != len(self.columns):
            raise ValueError("table %r has %d columns, the row %d values" % (self.name, len(self.columns), len(row)))
        vals, keep = (_ffi.Value * len(self.columns))(), []
        for i, (x, col) in enumerate(zip(row, self.columns)):
            _to_value(x, col, vals[i], keep)
        return vals, keep

    def _pk(self, pk: Any) -> Tuple[_ffi.Value, List[bytes]]:
        v, keep = _ffi.Value(), []
        if pk is None:
            raise TypeError("a primary key is never None")
        _to_value(pk, self.columns[0], v, keep)
        return v, keep

    def close(self) -> None:
        with self._lock:
            self._closing = True
            p = self._take_if_unused()
        if p is not None:
            _ffi.lib().sochdb_table_close(p)

    def __repr__(self) -> str:
        cols = ", ".join("%s %s%s" % (c.name, _TYPE_NAMES[c.type], " NULL" if c.nullable else "") for c in self.columns)
        return "<sochdb.Table %r id %d (%s)%s>" % (self.name, self.id, cols, " closed" if self.closed else "")


def _stats_dict(st: _ffi.ScanStats) -> Dict[str, int]:
    return {name: getattr(st, name) for name, _ in _ffi.ScanStats._fields_}


class TableScan(Cursor):
    """Rows of a table in primary-key order (``Transaction.scan_table``), each a
    tuple of the columns asked for. Only those columns (and the filter's)
    are read from SSTables. Closed when exhausted, by ``close()``, on
    leaving a ``with`` block, or when its transaction ends (then its next
    step raises InvalidError). ``stats`` holds what it cost once closed."""

    def __init__(self, txn: Any, table: Table, start: Any, end: Any, columns: Any, where: Any):
        self._table = table  # kept open while the scan runs
        self.stats: Optional[Dict[str, int]] = None
        cidx, idx = table._c_indices(columns)
        self.columns = tuple(table.columns[i].name for i in idx)
        self._types = [table.columns[i].type for i in idx]
        self._out = (_ffi.Value * len(idx))()
        keep: List[bytes] = []
        bounds = []
        for b in (start, end):
            if b is None:
                bounds.append(None)
            else:
                v, k = table._pk(b)
                keep += k
                bounds.append(ctypes.byref(v))
        filt = _filter(table, where, keep) if where is not None else None
        out = ctypes.c_void_p()
        with txn._db._calls:
            t = txn._t()
            tp = table._acquire(txn)  # released by _free: the C scan reads the table at every step
            rc = _ffi.lib().sochdb_table_scan(
                t, tp, bounds[0], bounds[1], cidx, len(idx) if cidx is not None else 0,
                ctypes.byref(filt) if filt is not None else None, ctypes.byref(out),
            )
            if rc != _ffi.OK:
                err = from_code(rc)
                table._release()
                raise err
            self._opened(txn, out.value)

    def __next__(self) -> Tuple[Any, ...]:
        return super().__next__()

    def _step(self, s: int) -> Optional[Tuple[Any, ...]]:
        rc = _ffi.lib().sochdb_scan_next(s, self._out)
        if rc == _ffi.NOTFOUND:
            return None
        _check(rc)
        return tuple(_from_value(self._out[i], t) for i, t in enumerate(self._types))

    def _free(self, s: int) -> None:
        st = _ffi.ScanStats()
        _ffi.lib().sochdb_scan_close(s, ctypes.byref(st))
        self.stats = _stats_dict(st)
        self._table._release()


def _filter(table: Table, where: Sequence[Any], keep: List[bytes]) -> _ffi.Filter:
    """(column, op, value) or (column, "between", low, high) as a sochdb_filter."""
    if not isinstance(where, (tuple, list)) or len(where) not in (3, 4):
        raise TypeError('where is (column, op, value) or (column, "between", low, high), not %r' % (where,))
    op = _OPS.get(where[1])
    if op is None:
        raise ValueError("unknown filter op %r (one of %s)" % (where[1], ", ".join(_OPS)))
    if (op == _ffi.BETWEEN) != (len(where) == 4):
        raise TypeError('"between" takes two bounds, every other op one: %r' % (where,))
    f = _ffi.Filter()
    f.column = table.column_index(where[0])
    f.op = op
    col = table.columns[f.column]
    for x, dst in zip(where[2:], (f.value, f.value2)):
        if x is None:
            raise TypeError("a filter's bound is never None (NULL passes no filter)")
        _to_value(x, col, dst, keep)
    return f


# -- the Transaction's table operations ----------------------------------------


def create_table(txn: Any, name: str, columns: Sequence[ColumnSpec]) -> Table:
    cols = [_column(c) for c in columns]
    arr = _c_columns(cols)
    n = _name(name, "table")
    with txn._db._calls:
        _check(_ffi.lib().sochdb_table_create(txn._t(), n, arr, len(cols)))
    return open_table(txn, name)


def open_table(txn: Any, name: str, columns: Optional[Sequence[ColumnSpec]] = None) -> Table:
    n = _name(name, "table")
    cols = [_column(c) for c in columns] if columns is not None else None
    arr = _c_columns(cols) if cols is not None else None
    out = ctypes.c_void_p()
    with txn._db._calls:
        _check(_ffi.lib().sochdb_table_open(txn._t(), n, arr, len(cols) if cols else 0, ctypes.byref(out)))
        tb = Table(out.value, txn._db)
    tb.name = name
    return tb


def add_column(txn: Any, table: Table, name: str, type: Union[int, str]) -> None:
    col = _ffi.Column(_name(name, "column"), _type_code(type, name), _ffi.NULLABLE)
    with txn._db._calls, table._held(txn) as tp:
        _check(_ffi.lib().sochdb_table_add_column(txn._t(), tp, ctypes.byref(col)))


def put_row(txn: Any, table: Table, row: Union[Sequence[Any], Dict[str, Any]]) -> None:
    vals, keep = table._row(row)
    with txn._db._calls, table._held(txn) as tp:
        _check(_ffi.lib().sochdb_row_put(txn._t(), tp, vals))
    del keep


def delete_row(txn: Any, table: Table, pk: Any) -> None:
    v, keep = table._pk(pk)
    with txn._db._calls, table._held(txn) as tp:
        _check(_ffi.lib().sochdb_row_delete(txn._t(), tp, ctypes.byref(v)))
    del keep


def get_row(txn: Any, table: Table, pk: Any, columns: Optional[Sequence[Union[int, str]]]) -> Optional[Tuple[Any, ...]]:
    v, keep = table._pk(pk)
    cidx, idx = table._c_indices(columns)
    out = (_ffi.Value * len(idx))()
    with txn._db._calls, table._held(txn) as tp:
        rc = _ffi.lib().sochdb_row_get(txn._t(), tp, ctypes.byref(v), cidx, len(idx) if cidx is not None else 0, out)
        if rc == _ffi.NOTFOUND:
            return None
        _check(rc)
        # copied before the call ends: the bytes live until the transaction does
        return tuple(_from_value(out[j], table.columns[i].type) for j, i in enumerate(idx))


def scan_stats(db: Any) -> Dict[str, int]:
    st = _ffi.ScanStats()
    with db._calls:
        _check(_ffi.lib().sochdb_scan_stats_get(db._h(), ctypes.byref(st)))
    return _stats_dict(st)


def _name(name: Any, what: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError("a %s name is a str, not %s" % (what, type(name).__name__))
    if "\0" in name:  # the C API would read it cut short there: another name
        raise ValueError("a %s name holds no NUL character: %r" % (what, name))
    return name.encode("utf-8")
