"""Cursor: what a key-value Scan and a TableScan share — a C iterator that
belongs to one Transaction, stepped as a call in flight on its Database, and
closed when exhausted, by close(), on leaving a ``with`` block, or when its
transaction ends (then its next step raises InvalidError: never a silent end
to a scan that was not done).

A subclass opens its C iterator, then calls ``_opened(txn, handle)``, and
provides ``_step(handle)`` (the next item, or None at the end; raises on an
error) and ``_free(handle)`` (closes the C iterator).
"""

from __future__ import annotations

from typing import Any, NoReturn, Optional

from ._closeable import Closeable
from .errors import usage_error


class Cursor(Closeable):
    _txn: Any
    _it: Optional[int] = None
    _cut = False  # closed because its transaction ended, before the scan was done

    def _opened(self, txn: Any, handle: int) -> None:
        self._txn = txn
        self._it = handle
        txn._iters.add(self)

    def _step(self, handle: int) -> Optional[Any]:
        raise NotImplementedError

    def _free(self, handle: int) -> None:
        raise NotImplementedError

    def __iter__(self) -> "Cursor":
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._stop()
        db = self._txn._db
        db._calls.__enter__()  # InvalidError once the database is closed: the scan was not done
        try:
            it = self._it  # re-read: close() may have run while we waited
            if it is None:
                self._stop()
            try:
                item = self._step(it)
            except BaseException:
                self._close()
                raise
            if item is None:
                self._close()
                raise StopIteration
            return item
        finally:
            db._calls.__exit__()

    def close(self) -> None:
        if self._it is not None:
            self._txn._db._end_object(self._close)

    def _stop(self) -> NoReturn:
        """The end of a scan closed before this call: StopIteration if it ran
        to its end or was closed by its user, InvalidError if its transaction
        ended under it."""
        if self._cut:
            raise usage_error(
                "the scan was cut short: its transaction ended (committed, aborted or its database closed) "
                "before the scan was done"
            )
        raise StopIteration

    def _cut_short(self) -> None:
        self._cut = True
        self._close()

    def _close(self) -> None:
        it, self._it = self._it, None
        if it is not None:
            self._txn._iters.discard(self)
            self._free(it)
