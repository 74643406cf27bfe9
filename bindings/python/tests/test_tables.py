"""Columnar tables through the Python binding: schemas, rows of every type and
NULL, projection and filters, snapshot isolation and conflicts, the
refusals of bad input, and a scan cut short by its transaction's end."""

import math
import os
import time

import pytest

import sochdb
from sochdb import BYTES, DOUBLE, INT64, STRING, Column

PEOPLE = [("id", "int64"), ("name", "string", True), Column("score", DOUBLE, True), ("photo", BYTES, True)]


def make_people(db, rows):
    with db.transaction() as txn:
        people = txn.create_table("people", PEOPLE)
        for row in rows:
            txn.put_row(people, row)
    return people


def test_create_put_get_every_type_and_null(db):
    people = make_people(db, [(1, "Ann", 1.5, b"\x00\xff"), {"id": 2, "name": "Bob"}, (-(1 << 63), "", -0.0, b"")])
    assert people.name == "people" and people.id == 1
    assert people.columns == (
        Column("id", INT64, False), Column("name", STRING, True), Column("score", DOUBLE, True), Column("photo", BYTES, True)
    )
    with db.transaction(readonly=True) as txn:
        assert txn.get_row(people, 1) == (1, "Ann", 1.5, b"\x00\xff")
        assert txn.get_row(people, 2) == (2, "Bob", None, None)
        low = txn.get_row(people, -(1 << 63))
        assert low == (-(1 << 63), "", 0.0, b"") and math.copysign(1, low[2]) < 0  # -0.0 keeps its sign
        assert txn.get_row(people, 3) is None
        assert txn.get_row(people, 1, ["photo", 1]) == (b"\x00\xff", "Ann")


def test_open_table_checks_the_schema_and_names_a_missing_table(db):
    make_people(db, [])
    with db.transaction(readonly=True) as txn:
        with txn.open_table("people", PEOPLE) as t:
            assert [c.name for c in t.columns] == ["id", "name", "score", "photo"]
        with pytest.raises(sochdb.InvalidError):
            txn.open_table("people", [("id", "int64")])
        with pytest.raises(sochdb.NotFoundError):
            txn.open_table("nobody")


def test_scan_in_key_order_with_bounds_projection_and_filters(db):
    people = make_people(db, [(i, "p%d" % i, float(i % 7), None if i % 3 else b"x" * i) for i in range(50, 0, -1)])
    with db.transaction(readonly=True) as txn:
        assert [r[0] for r in txn.scan_table(people)] == list(range(1, 51))
        assert list(txn.scan_table(people, 10, 13, columns=["name"])) == [("p10",), ("p11",), ("p12",)]
        got = txn.scan_table(people, columns=["id"], where=("score", "==", 3.0))
        assert [r[0] for r in got] == [i for i in range(1, 51) if i % 7 == 3]
        assert got.columns == ("id",) and got.stats["rows"] == len([i for i in range(1, 51) if i % 7 == 3])
        between = txn.scan_table(people, columns=["id"], where=("name", "between", "p2", "p3"))
        assert [r[0] for r in between] == [2, 3] + list(range(20, 30))
        # NULL passes no filter: the photos of ids divisible by 3 only
        assert [r[0] for r in txn.scan_table(people, columns=[0], where=("photo", ">=", b""))] == list(range(3, 51, 3))
    assert db.scan_stats()["scans"] >= 4


def test_rows_follow_snapshot_isolation_and_conflict(db):
    people = make_people(db, [(1, "Ann", None, None)])
    reader = db.transaction(readonly=True)
    a, b = db.transaction(), db.transaction()
    a.put_row(people, (1, "Ann A", None, None))
    b.put_row(people, (1, "Ann B", None, None))
    assert a.get_row(people, 1, ["name"]) == ("Ann A",)  # its own write
    a.commit()
    with pytest.raises(sochdb.ConflictError):
        b.commit()
    assert reader.get_row(people, 1, ["name"]) == ("Ann",)  # its snapshot
    reader.abort()
    with db.transaction() as txn:
        txn.delete_row(people, 1)
        txn.delete_row(people, 99)  # absent: no error
    assert db.transaction(readonly=True).get_row(people, 1) is None


def test_added_column_reads_none_in_older_rows(db):
    people = make_people(db, [(1, "Ann", None, None)])
    with db.transaction() as txn:
        txn.add_column(people, "email", STRING)
        txn.put_row(people, (2, "Bob", None, None))  # the handle keeps the schema it was opened with
        wider = txn.open_table("people")
        assert len(people.columns) == 4 and wider.columns[-1] == Column("email", STRING, True)
        txn.put_row(wider, {"id": 3, "email": "cy@example.com"})
        with pytest.raises(sochdb.InvalidError):
            txn.add_column(wider, "email", STRING)  # a duplicate name
    with db.transaction(readonly=True) as txn:
        wider = txn.open_table("people")
        assert [txn.get_row(wider, i, ["email"]) for i in (1, 2)] == [(None,), (None,)]
        assert txn.get_row(wider, 3, ["name", "email"]) == (None, "cy@example.com")


def test_bad_rows_and_arguments_are_refused_before_anything_is_written(db):
    people = make_people(db, [])
    with db.transaction() as txn:
        with pytest.raises(TypeError):
            txn.put_row(people, ("1", "Ann", None, None))  # a str as int64
        with pytest.raises(TypeError):
            txn.put_row(people, (True, "Ann", None, None))
        with pytest.raises(OverflowError):
            txn.put_row(people, (1 << 63, "Ann", None, None))
        with pytest.raises(ValueError):
            txn.put_row(people, (1, "Ann"))  # too few columns
        with pytest.raises(KeyError):
            txn.put_row(people, {"id": 1, "nick": "A"})
        with pytest.raises(sochdb.InvalidError):
            txn.put_row(people, (None, "Ann", None, None))  # NULL primary key
        with pytest.raises(KeyError):
            txn.get_row(people, 1, ["nick"])
        with pytest.raises(ValueError):
            txn.scan_table(people, where=("score", "~", 1.0))
        with pytest.raises(TypeError):
            txn.scan_table(people, where=("score", "between", 1.0))
        with pytest.raises(ValueError):
            txn.create_table("bad", [("id", "float")])
        with pytest.raises(sochdb.InvalidError):
            txn.create_table("bad", [("id", DOUBLE)])  # a double cannot be a primary key
        with pytest.raises(sochdb.InvalidError):
            txn.create_table("people", PEOPLE)  # exists
    with db.transaction(readonly=True) as txn:
        assert list(txn.scan_table(people)) == []
        with pytest.raises(sochdb.InvalidError):
            txn.put_row(people, (1, "Ann", None, None))  # read-only


def test_a_table_scan_is_cut_short_by_its_transactions_end(db):
    people = make_people(db, [(i, None, None, None) for i in range(10)])
    txn = db.transaction(readonly=True)
    scan = txn.scan_table(people, columns=["id"])
    assert next(scan) == (0,)
    txn.commit()
    with pytest.raises(sochdb.InvalidError, match="cut short"):
        next(scan)
    assert scan.stats is not None and scan.stats["rows"] == 1


def test_a_table_belongs_to_the_database_handle_that_opened_it(db, dbdir):
    people = make_people(db, [(1, "Ann", None, None)])
    with sochdb.open(dbdir) as other:
        with other.transaction(readonly=True) as txn:
            with pytest.raises(sochdb.InvalidError, match="another Database"):
                txn.get_row(people, 1)
            assert txn.get_row(txn.open_table("people"), 1, ["name"]) == ("Ann",)
    people.close()
    with db.transaction(readonly=True) as txn:
        with pytest.raises(sochdb.InvalidError, match="closed"):
            txn.get_row(people, 1)


def test_a_table_closed_while_a_scan_of_it_is_open_stays_until_the_scan_ends(db):
    """The C scan reads its table's schema at every step: close() freed the
    handle at once, and a table opened after it reused the memory, so the
    scan decoded rows with another table's schema (CorruptError)."""
    people = make_people(db, [(i, "p%d" % i, None, None) for i in range(5)])
    with db.transaction() as txn:
        txn.create_table("other", [("k", "bytes"), ("v", "int64")])
    txn = db.transaction(readonly=True)
    scan = txn.scan_table(people, columns=["id", "name"])
    assert next(scan) == (0, "p0")
    people.close()
    assert people.closed
    with pytest.raises(sochdb.InvalidError, match="closed"):
        txn.get_row(people, 1)
    others = [txn.open_table("other") for _ in range(8)]  # would take the freed memory
    assert list(scan) == [(i, "p%d" % i) for i in range(1, 5)]
    for o in others:
        o.close()
    txn.abort()


def test_names_with_a_nul_character_are_refused(db):
    with db.transaction() as txn:
        with pytest.raises(ValueError):
            txn.create_table("zz\0yy", [("id", "int64")])
        with pytest.raises(ValueError):
            txn.create_table("zz", [("id\0q", "int64")])
        with pytest.raises(sochdb.NotFoundError):
            txn.open_table("zz")


def test_strings_that_are_not_utf8_survive_a_round_trip(db):
    people = make_people(db, [])
    odd = b"caf\xe9".decode("utf-8", "surrogateescape")  # Latin-1 bytes written by some C program
    with db.transaction() as txn:
        txn.put_row(people, (1, odd, None, None))
    with db.transaction() as txn:
        name = txn.get_row(people, 1, ["name"])[0]
        assert name == odd
        txn.put_row(people, (2, name, None, None))
    with db.transaction(readonly=True) as txn:
        assert txn.get_row(people, 2, ["name"]) == (odd,)


def test_a_scan_of_one_column_reads_fewer_bytes_from_sstables(dbdir):
    """Projection pushdown: rows flushed to SSTables are stored column by
    column, and a scan of the key alone reads a tenth of what a scan of
    every column does (the 2 KiB photos stay on disk)."""
    with sochdb.open(dbdir, memtable_bytes=1 << 20) as db:
        people = make_people(db, [])
        for first in range(0, 3000, 500):
            with db.transaction(sync=False) as txn:
                for i in range(first, first + 500):
                    txn.put_row(people, (i, "p%d" % i, float(i), os.urandom(2048)))
        deadline = time.monotonic() + 60  # until most of the 6 MiB of photos are flushed
        while db.stats()["sst_bytes"] < 4 << 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stats()["sst_bytes"] >= 4 << 20, "not flushed within 60 s: %r" % db.stats()
        with db.transaction(readonly=True) as txn:
            ids = txn.scan_table(people, columns=["id"])
            n = sum(1 for _ in ids)
            rows = txn.scan_table(people)
            assert sum(1 for _ in rows) == n == 3000
        assert ids.stats["blocks_read"] > 0, ids.stats
        assert ids.stats["bytes_read"] < rows.stats["bytes_read"] / 10, (ids.stats, rows.stats)
