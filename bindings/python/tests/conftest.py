"""Test setup shared by the suites.

Environment, set before sochdb is imported (and inherited by forked children):
  - SOCHDB_SHM_DIR: a private temporary directory for the region files, never
    /dev/shm (parallel runs cannot collide, a crashed test leaves nothing in the
    system tmpfs; tests/testutil.h does the same). Removed at the end.
  - SOCHDB_DAEMON: the sochdbd next to the library under test, unless set.
  - SOCHDB_DAEMON_IDLE_MS: daemons started by the tests leave soon after them.
The library: $SOCHDB_LIBRARY, else the binding's own lookup (sochdb._ffi).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, List

import pytest

_HERE = Path(__file__).resolve().parent
try:
    import sochdb  # noqa: F401  (installed package)
except ImportError:  # run from the source tree without installing
    sys.path.insert(0, str(_HERE.parent / "src"))

import sochdb  # noqa: E402
from sochdb import _ffi  # noqa: E402

_OWN_SHM_DIR = None
if not os.environ.get("SOCHDB_SHM_DIR"):
    _OWN_SHM_DIR = tempfile.mkdtemp(prefix="sochdb-pytest-shm-")
    os.environ["SOCHDB_SHM_DIR"] = _OWN_SHM_DIR
os.environ.setdefault("SOCHDB_DAEMON_IDLE_MS", "1500")

LIBRARY = _ffi.find_library()
if not os.environ.get("SOCHDB_DAEMON") and os.path.sep in LIBRARY:
    daemon = Path(LIBRARY).resolve().parent / "sochdbd"
    if daemon.is_file():
        os.environ["SOCHDB_DAEMON"] = str(daemon)


def pytest_report_header(config: Any) -> List[str]:
    return [
        "sochdb package: %s" % Path(sochdb.__file__).parent,
        "sochdb library: %s" % LIBRARY,
        "sochdb daemon: %s" % os.environ.get("SOCHDB_DAEMON", "(next to the library, then $PATH)"),
        "SOCHDB_SHM_DIR: %s" % os.environ["SOCHDB_SHM_DIR"],
    ]


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    if _OWN_SHM_DIR:
        shutil.rmtree(_OWN_SHM_DIR, ignore_errors=True)


@pytest.fixture
def dbdir(tmp_path: Path) -> Path:
    """A fresh database directory (not created yet: sochdb_open makes it)."""
    d = tmp_path / "db"
    yield d
    # Removing the directory also tells its daemon to leave; the region file
    # lives in SOCHDB_SHM_DIR, removed at the end of the session.
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def db(dbdir: Path) -> "sochdb.Database":
    handle = sochdb.open(dbdir)
    yield handle
    handle.close()


def fork_workers(n: int, target: Callable[..., Any], *args: Any, timeout: float = 60.0) -> List[Any]:
    """Run target(index, *args) in n os.fork()ed children at once and return
    what each returned (JSON-serialisable), in index order.

    A child never returns into pytest: it reports through a pipe and leaves
    with os._exit(). An exception in a child fails the parent with the
    child's traceback; a child still running after timeout is killed."""
    children = []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(r)
                try:
                    payload = {"ok": target(i, *args)}
                except BaseException:
                    payload = {"error": traceback.format_exc()}
                    code = 1
                data = json.dumps(payload).encode()
                while data:
                    data = data[os.write(w, data):]
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))

    results: List[Any] = []
    errors: List[str] = []
    deadline = time.monotonic() + timeout
    for i, (pid, r) in enumerate(children):
        chunks = []
        killed = False
        while True:  # read to EOF (the child exits or is killed)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not killed:
                os.kill(pid, signal.SIGKILL)
                killed = True
                errors.append("worker %d (pid %d): killed after %.0f s" % (i, pid, timeout))
            ready, _, _ = select.select([r], [], [], max(remaining, 0.1))
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        raw = b"".join(chunks)
        payload = json.loads(raw) if raw else {"error": "no report (status %d)" % status}
        if "error" in payload:
            errors.append("worker %d (pid %d): %s" % (i, pid, payload["error"]))
            results.append(None)
        else:
            results.append(payload["ok"])
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)
    return results


@pytest.fixture
def fork() -> Callable[..., List[Any]]:
    """fork_workers, as a fixture."""
    return fork_workers
