#!/usr/bin/env python3
"""python_fork_workers.py — a prefork-style pool sharing one sochdb database.

    python3 examples/python_fork_workers.py [--workers N] [--requests N] [--pages N] [DIR]

The parent creates the database, then os.fork()s N workers, as a prefork web
server does. Each worker opens its OWN handle (a handle does not survive
fork()), "serves" requests for random pages and counts every hit in the shared
database: hits/<page> += 1 in a transaction, retried when another worker
updated the same page at the same time (ConflictError). At the end the parent
recomputes what every worker did (their random choices are seeded) and checks
that each page's count is exact: no lost update, whatever the interleaving.

Without DIR the database lives in a temporary directory, removed at the end
together with its shared-memory region file.

Runs from a checkout without installing anything: the package is taken from
bindings/python/src when `import sochdb` fails, and the library from
$SOCHDB_LIBRARY or build/libsochdb.so (see bindings/README.md).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

try:
    import sochdb
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bindings" / "python" / "src"))
    import sochdb


def requests_of(worker: int, requests: int, pages: int) -> list:
    """The pages one worker is asked for: seeded, so the parent can replay it."""
    rng = random.Random(1000 + worker)
    # Skewed like real traffic: low page numbers are hot, so workers collide.
    return [min(int(rng.expovariate(0.5)), pages - 1) for _ in range(requests)]


def worker(index: int, path: str, requests: int, pages: int) -> int:
    """Runs in the child. Returns the exit status."""
    conflicts = 0
    with sochdb.open(path) as db:  # this process's own handle
        for page in requests_of(index, requests, pages):
            key = b"hits/%03d" % page
            while True:
                try:
                    with db.transaction(sync=False) as txn:  # ASYNC: durable within ms
                        txn.put(key, b"%d" % (int(txn.get(key) or b"0") + 1))
                    break
                except sochdb.ConflictError:  # someone counted the same page: retry
                    conflicts += 1
        # A SYNC commit last: returns once everything before it is on disk too.
        db.run(lambda txn: txn.put(b"workers/%d" % index, b"%d" % conflicts))
    print("worker %d (pid %d): %d requests served, %d conflicts retried" % (index, os.getpid(), requests, conflicts))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--requests", type=int, default=500, help="requests per worker")
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("dir", nargs="?")
    args = ap.parse_args()

    tmp = None if args.dir else tempfile.mkdtemp(prefix="sochdb-example-")
    path = args.dir or os.path.join(tmp, "db")
    db = sochdb.open(path)
    region = db.region_path
    with db.transaction() as txn:  # start from zero (the directory may be reused)
        for key, _ in txn.scan(prefix=b"hits/"):
            txn.delete(key)
        for key, _ in txn.scan(prefix=b"workers/"):
            txn.delete(key)

    started = time.monotonic()
    pids = []
    for i in range(args.workers):
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                status = worker(i, path, args.requests, args.pages)
            except BaseException as e:  # report, never return into the parent's code
                print("worker %d failed: %r" % (i, e), file=sys.stderr)
            finally:
                sys.stdout.flush()
                os._exit(status)
        pids.append(pid)
    failed = sum(1 for pid in pids if os.waitpid(pid, 0)[1] != 0)
    elapsed = time.monotonic() - started

    # The parent's handle was opened before fork() and is still fine here.
    expected = Counter()
    for i in range(args.workers):
        expected.update(requests_of(i, args.requests, args.pages))
    with db.transaction(readonly=True) as txn:
        counted = {int(k[len(b"hits/"):]): int(v) for k, v in txn.scan(prefix=b"hits/")}
        conflicts = sum(int(v) for _, v in txn.scan(prefix=b"workers/"))
    total = sum(counted.values())
    ok = failed == 0 and counted == dict(expected)
    for page in sorted(expected):
        print("  page %d: %d hits%s" % (page, counted.get(page, 0), "" if counted.get(page) == expected[page] else " (expected %d)" % expected[page]))
    print(
        "%s: %d workers served %d requests in %.2f s, %d hits counted, %d conflicts retried"
        % ("OK" if ok else "FAILED", args.workers, args.workers * args.requests, elapsed, total, conflicts)
    )
    db.close()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)  # its daemon leaves when the directory goes
        try:
            os.unlink(region)
        except OSError:
            pass
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
