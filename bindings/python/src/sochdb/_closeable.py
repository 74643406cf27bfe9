"""Closeable: the context-manager and finalizer protocol of every object of
the binding that holds a C resource (Database, Table, a scan): ``with``
closes it, and so does the garbage collector if nobody did. A subclass
provides an idempotent ``close()``."""

from __future__ import annotations

from typing import Any


class Closeable:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
