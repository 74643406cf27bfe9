"""Exceptions: one class per SOCHDB_* error code of include/sochdb.h."""

from __future__ import annotations

from typing import Dict, Optional, Type

from . import _ffi

CODE_NAMES: Dict[int, str] = {
    _ffi.OK: "SOCHDB_OK",
    _ffi.NOTFOUND: "SOCHDB_NOTFOUND",
    _ffi.CONFLICT: "SOCHDB_CONFLICT",
    _ffi.BUSY: "SOCHDB_BUSY",
    _ffi.INVALID: "SOCHDB_INVALID",
    _ffi.CORRUPT: "SOCHDB_CORRUPT",
    _ffi.IO: "SOCHDB_IO",
    _ffi.NOMEM: "SOCHDB_NOMEM",
    _ffi.VERSION: "SOCHDB_VERSION",
    _ffi.DAEMON: "SOCHDB_DAEMON",
}


class Error(Exception):
    """Any error returned by the sochdb library.

    ``code`` is the SOCHDB_* code, ``code_name`` its name, ``reason`` the
    static text of sochdb_strerror() and ``detail`` what sochdb_last_error()
    said about this failure (may be empty). ``str(e)`` combines them.
    """

    code: int = -1

    def __init__(self, code: int, reason: str, detail: str = "", errno: Optional[int] = None):
        self.code = code
        self.code_name = CODE_NAMES.get(code, "SOCHDB_%d" % code)
        self.reason = reason
        self.detail = detail
        self.errno = errno
        msg = "%s: %s" % (self.code_name, reason)
        if detail:
            msg += " (%s)" % detail
        super().__init__(msg)

    @property
    def message(self) -> str:
        return self.args[0]

    def __reduce__(self):  # type: ignore[override]
        # pickle and copy rebuild an exception as cls(*args); args is the
        # message alone, which __init__ cannot take. multiprocessing pickles
        # what a worker raises: without this the parent's result handler dies.
        return (self.__class__, (self.code, self.reason, self.detail, self.errno))


class NotFoundError(Error):
    """SOCHDB_NOTFOUND where absence is an error: opening a missing database
    with ``create_if_missing=False``. (``get`` returns None instead.)"""


class ConflictError(Error):
    """SOCHDB_CONFLICT: another transaction committed (or is committing) one of
    our keys after our snapshot. Nothing was applied: retry the transaction
    (see ``Database.run`` and ``retry``)."""


class BusyError(Error):
    """SOCHDB_BUSY: no room in the region within busy_timeout_ms, every process
    slot taken, or more than 128 open transactions on one handle."""


class InvalidError(Error):
    """SOCHDB_INVALID: bad argument (key length, value size, flags), a write in a
    read-only transaction, a handle inherited across fork(), or an object
    used after it was closed."""


class CorruptError(Error):
    """SOCHDB_CORRUPT: a checksum or format failure in a file or the region."""


class IoError(Error):
    """SOCHDB_IO: a system call failed; ``errno`` holds its errno."""


class NoMemoryError(Error):
    """SOCHDB_NOMEM."""


class VersionError(Error):
    """SOCHDB_VERSION: the directory or region has an incompatible format."""


class DaemonError(Error):
    """SOCHDB_DAEMON: sochdbd could not be started or reached. From a SYNC
    commit it means the commit IS applied and visible but its durability was
    not confirmed."""


_CLASSES: Dict[int, Type[Error]] = {
    _ffi.NOTFOUND: NotFoundError,
    _ffi.CONFLICT: ConflictError,
    _ffi.BUSY: BusyError,
    _ffi.INVALID: InvalidError,
    _ffi.CORRUPT: CorruptError,
    _ffi.IO: IoError,
    _ffi.NOMEM: NoMemoryError,
    _ffi.VERSION: VersionError,
    _ffi.DAEMON: DaemonError,
}


def error_class(code: int) -> Type[Error]:
    """The exception class for a SOCHDB_* code (Error for unknown codes)."""
    return _CLASSES.get(code, Error)


def from_code(code: int) -> Error:
    """The exception for a code just returned by the library in this thread.

    Must be called right after the failing call, in the same thread, before
    any other sochdb call: the detail comes from sochdb_last_error()."""
    lib = _ffi.lib()
    errno = None
    if code == _ffi.IO:
        import ctypes

        errno = ctypes.get_errno() or None
    raw = lib.sochdb_last_error()  # first: valid until this thread's next call
    detail = raw.decode("utf-8", "replace") if raw else ""
    reason = lib.sochdb_strerror(code).decode("utf-8", "replace")
    return error_class(code)(code, reason, detail, errno)


def check(code: int) -> None:
    """Raise the exception for a code the library just returned, unless OK."""
    if code != _ffi.OK:
        raise from_code(code)


def usage_error(detail: str) -> InvalidError:
    """An InvalidError raised by the binding itself (closed object, wrong type)."""
    return InvalidError(_ffi.INVALID, "invalid argument", detail)
