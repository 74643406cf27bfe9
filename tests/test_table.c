/*
** test_table.c — columnar tables through the public API: schemas (create,
** open, mismatch, added columns), rows put, read and deleted inside
** transactions with rollback, the reserved key space, snapshot isolation and
** conflicts on rows, projected and filtered scans that equal the same columns
** of full scans (and a brute-force filter) in memtables, after flushes and
** after compactions, blocks skipped by min/max and bytes read per column
** from the scan statistics, and kill -9 of a writer in the middle of a
** commit: no half transaction, every acknowledged row kept, also after the
** region is rebuilt from the files.
*/
#include "testutil.h"

#include "check.h"
#include "internal.h"   /* the region's full-compaction request */
#include "sstfmt.h"
#include "sstcraft.h"

#include <dirent.h>
#include <float.h>
#include <math.h>

TestSuite(table, .init = tu_setup, .fini = tu_teardown, .timeout = 240);

#define MT  (1u << 20)
#define REG (32u << 20)

/* ---- a table of 8 mixed columns ---------------------------------------------- */

enum { C_ID, C_TS, C_PRICE, C_QTY, C_NAME, C_CITY, C_NOTE, C_FLAG, NCOLS };

static const sochdb_column COLS[NCOLS] = {
  { "id", SOCHDB_INT64, 0 },       { "ts", SOCHDB_INT64, 0 },
  { "price", SOCHDB_DOUBLE, 0 },   { "qty", SOCHDB_INT64, SOCHDB_NULLABLE },
  { "name", SOCHDB_STRING, 0 },    { "city", SOCHDB_STRING, SOCHDB_NULLABLE },
  { "note", SOCHDB_BYTES, SOCHDB_NULLABLE }, { "flag", SOCHDB_INT64, 0 },
};

static const char *const CITIES[] = { "Amsterdam", "Berlin", "Cairo", "Delhi", "Edinburgh", "Fukuoka" };

/* Row i of generation gen: strings live in buf (room for 256 bytes). */
static void make_row(int64_t i, int gen, sochdb_value *v, char *buf)
{
  memset(v, 0, NCOLS * sizeof *v);
  v[C_ID].i64 = i;
  v[C_TS].i64 = i * 10 + gen;
  v[C_PRICE].f64 = (double)(i % 1000) / 8.0 + gen;
  v[C_QTY].is_null = i % 7 == 0;
  v[C_QTY].i64 = (i * 31 + gen) % 500;
  int n = snprintf(buf, 64, "name-%06lld-g%d", (long long)i, gen);
  v[C_NAME].bytes = buf;
  v[C_NAME].len = (size_t)n;
  v[C_CITY].is_null = i % 5 == 0;
  v[C_CITY].bytes = CITIES[(i + gen) % 6];
  v[C_CITY].len = strlen(CITIES[(i + gen) % 6]);
  char *note = buf + 64;
  size_t nl = (size_t)(40 + i % 60);
  for (size_t k = 0; k < nl; k++)
    note[k] = (char)('a' + (i + (int64_t)k + gen) % 26);
  v[C_NOTE].is_null = i % 11 == 0;
  v[C_NOTE].bytes = note;
  v[C_NOTE].len = nl;
  v[C_FLAG].i64 = (i + gen) % 2;
}

/* Doubles compare bit for bit (a -0.0 read back as 0.0 is wrong), but any
** NaN equals any NaN. */
static int value_eq(unsigned type, const sochdb_value *a, const sochdb_value *b)
{
  if (a->is_null || b->is_null)
    return a->is_null && b->is_null;
  if (type == SOCHDB_INT64)
    return a->i64 == b->i64;
  if (type == SOCHDB_DOUBLE)
    return memcmp(&a->f64, &b->f64, sizeof a->f64) == 0 || (isnan(a->f64) && isnan(b->f64));
  return a->len == b->len && (a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
}

/* x <=> y in a column of type: -1, 0 or 1, or 2 where they are unordered
** (a NaN). Bytes and strings by memcmp, then the shorter first. */
static int compare_values(unsigned type, const sochdb_value *x, const sochdb_value *y)
{
  if (type == SOCHDB_INT64)
    return (x->i64 > y->i64) - (x->i64 < y->i64);
  if (type == SOCHDB_DOUBLE)
    return isnan(x->f64) || isnan(y->f64) ? 2 : (x->f64 > y->f64) - (x->f64 < y->f64);
  int c = tu_keycmp(x->bytes, x->len, y->bytes, y->len);
  return (c > 0) - (c < 0);
}

/* Whether x passes f in a column of type, as docs/columnar.md defines it:
** NULL never passes, nor does NaN (on either side), and -0.0 == 0.0. */
static int filter_passes(unsigned type, const sochdb_filter *f, const sochdb_value *x)
{
  if (x->is_null)
    return 0;
  int c1 = compare_values(type, x, &f->value), c2 = compare_values(type, x, &f->value2);
  if (c1 == 2 || (f->op == SOCHDB_BETWEEN && c2 == 2))
    return 0;
  switch (f->op) {
  case SOCHDB_EQ: return c1 == 0;
  case SOCHDB_LT: return c1 < 0;
  case SOCHDB_LE: return c1 <= 0;
  case SOCHDB_GT: return c1 > 0;
  case SOCHDB_GE: return c1 >= 0;
  default:        return c1 >= 0 && c2 <= 0;
  }
}

static void expect_value(unsigned col, const sochdb_value *got, const sochdb_value *want, const char *ctx, int64_t pk)
{
  cr_assert(value_eq(COLS[col].type, got, want), "%s: row %lld column %s differs (null %d/%d, i64 %lld/%lld, len %zu/%zu)",
            ctx, (long long)pk, COLS[col].name, got->is_null, want->is_null, (long long)got->i64,
            (long long)want->i64, got->len, want->len);
}

static sochdb_table *create_table_of(sochdb *db, const char *name, const sochdb_column *cols, size_t ncols)
{
  sochdb_txn *t = tu_begin(db, 0);
  int rc = sochdb_table_create(t, name, cols, ncols);
  cr_assert_eq(rc, SOCHDB_OK, "create %s: %s (%s)", name, sochdb_strerror(rc), sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "create");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *tb = NULL;
  rc = sochdb_table_open(t, name, cols, ncols, &tb);
  cr_assert_eq(rc, SOCHDB_OK, "open %s: %s (%s)", name, sochdb_strerror(rc), sochdb_last_error());
  sochdb_abort(t);
  return tb;
}

static sochdb_table *create_table(sochdb *db, const char *name) { return create_table_of(db, name, COLS, NCOLS); }

static void put_row(sochdb_txn *t, sochdb_table *tb, int64_t i, int gen)
{
  sochdb_value v[NCOLS];
  char buf[256];
  make_row(i, gen, v, buf);
  int rc = sochdb_row_put(t, tb, v);
  cr_assert_eq(rc, SOCHDB_OK, "row_put %lld: %s (%s)", (long long)i, sochdb_strerror(rc), sochdb_last_error());
}

static sochdb_value pk_of(int64_t i)
{
  sochdb_value v;
  memset(&v, 0, sizeof v);
  v.i64 = i;
  return v;
}

/* Rows [0, n) at generation gen, `batch` per ASYNC transaction, retrying BUSY. */
static void fill(sochdb *db, sochdb_table *tb, int n, int gen, int batch)
{
  for (int i = 0; i < n; i += batch) {
    for (;;) {
      sochdb_txn *t = tu_begin(db, 0);
      for (int j = i; j < n && j < i + batch; j++)
        put_row(t, tb, j, gen);
      int rc = sochdb_commit(t, SOCHDB_ASYNC);
      if (rc == SOCHDB_OK)
        break;
      cr_assert_eq(rc, SOCHDB_BUSY, "commit rows from %d: %s (%s)", i, sochdb_strerror(rc), sochdb_last_error());
      tu_sleep_ms(5);
    }
  }
}

/* Row pk reads as generation gen (or absent, gen < 0) in t, every column. */
static void expect_row(sochdb_txn *t, sochdb_table *tb, int64_t pk, int gen, const char *ctx)
{
  sochdb_value got[NCOLS], want[NCOLS];
  char buf[256];
  sochdb_value key = pk_of(pk);
  int rc = sochdb_row_get(t, tb, &key, NULL, 0, got);
  if (gen < 0) {
    cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: row %lld: %s, want NOTFOUND", ctx, (long long)pk, sochdb_strerror(rc));
    return;
  }
  cr_assert_eq(rc, SOCHDB_OK, "%s: row %lld: %s (%s)", ctx, (long long)pk, sochdb_strerror(rc), sochdb_last_error());
  make_row(pk, gen, want, buf);
  for (unsigned c = 0; c < NCOLS; c++)
    expect_value(c, &got[c], &want[c], ctx, pk);
}

/* ---- schemas ------------------------------------------------------------------ */

Test(table, schemas_are_created_opened_checked_and_widened)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "orders");
  const sochdb_column *cols;
  size_t n;
  uint32_t id;
  cr_assert_eq(sochdb_table_schema(tb, &cols, &n, &id), SOCHDB_OK, "schema");
  cr_assert_eq(n, NCOLS, "columns");
  cr_assert_str_eq(cols[C_PRICE].name, "price", "a column name");
  cr_assert_gt(id, 0, "an id");

  sochdb_txn *t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_create(t, "orders", COLS, NCOLS), SOCHDB_INVALID, "a second create");
  cr_assert(strstr(sochdb_last_error(), "exists"), "message: %s", sochdb_last_error());
  sochdb_table *x = NULL;
  cr_assert_eq(sochdb_table_open(t, "nope", NULL, 0, &x), SOCHDB_NOTFOUND, "a missing table");
  sochdb_column other[NCOLS];
  memcpy(other, COLS, sizeof other);
  other[C_QTY].type = SOCHDB_DOUBLE;
  cr_assert_eq(sochdb_table_open(t, "orders", other, NCOLS, &x), SOCHDB_INVALID, "another schema");
  cr_assert(strstr(sochdb_last_error(), "qty") && strstr(sochdb_last_error(), "different schema"), "message: %s",
            sochdb_last_error());
  cr_assert_eq(sochdb_table_open(t, "orders", COLS, NCOLS - 1, &x), SOCHDB_INVALID, "fewer columns");
  cr_assert_null(x, "no handle on a mismatch");

  /* bad schemas */
  other[0] = (sochdb_column){ "id", SOCHDB_DOUBLE, 0 };
  cr_assert_eq(sochdb_table_create(t, "bad", other, 2), SOCHDB_INVALID, "a double primary key");
  other[0] = (sochdb_column){ "id", SOCHDB_INT64, SOCHDB_NULLABLE };
  cr_assert_eq(sochdb_table_create(t, "bad", other, 2), SOCHDB_INVALID, "a nullable primary key");
  other[0] = (sochdb_column){ "qty", SOCHDB_INT64, 0 };
  cr_assert_eq(sochdb_table_create(t, "bad", other, NCOLS), SOCHDB_INVALID, "a duplicate name");
  cr_assert_eq(sochdb_table_create(t, "bad", COLS, 0), SOCHDB_INVALID, "no column");
  other[0] = (sochdb_column){ "id", 9, 0 };
  cr_assert_eq(sochdb_table_create(t, "bad", other, 1), SOCHDB_INVALID, "an unknown type");
  cr_assert_eq(sochdb_table_create(t, "", COLS, NCOLS), SOCHDB_INVALID, "an empty name");

  /* a row written before the column is added reads it as NULL */
  put_row(t, tb, 1, 1);
  sochdb_column extra = { "extra", SOCHDB_INT64, 0 };
  cr_assert_eq(sochdb_table_add_column(t, tb, &extra), SOCHDB_INVALID, "an added column must be nullable");
  extra.flags = SOCHDB_NULLABLE;
  int rc = sochdb_table_add_column(t, tb, &extra);
  cr_assert_eq(rc, SOCHDB_OK, "add column: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "add column");

  t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_add_column(t, tb, &(sochdb_column){ "more", SOCHDB_INT64, SOCHDB_NULLABLE }),
               SOCHDB_CONFLICT, "a stale handle cannot widen the table");
  sochdb_table *wide = NULL;
  cr_assert_eq(sochdb_table_open(t, "orders", COLS, NCOLS, &wide), SOCHDB_INVALID, "the old schema no longer fits");
  cr_assert_eq(sochdb_table_open(t, "orders", NULL, 0, &wide), SOCHDB_OK, "open the new schema");
  sochdb_table_schema(wide, &cols, &n, NULL);
  cr_assert_eq(n, NCOLS + 1, "one column more");
  sochdb_value out[NCOLS + 1];
  sochdb_value key = pk_of(1);
  cr_assert_eq(sochdb_row_get(t, wide, &key, NULL, 0, out), SOCHDB_OK, "get the old row");
  cr_assert(out[NCOLS].is_null, "the added column reads NULL");
  sochdb_value v[NCOLS + 1];
  char buf[256];
  make_row(2, 1, v, buf);
  v[NCOLS] = (sochdb_value){ .i64 = 77 };
  cr_assert_eq(sochdb_row_put(t, wide, v), SOCHDB_OK, "put a wide row");
  unsigned which[] = { NCOLS, C_ID };
  cr_assert_eq(sochdb_row_get(t, wide, &(sochdb_value){ .i64 = 2 }, which, 2, out), SOCHDB_OK, "get it");
  cr_assert(!out[0].is_null && out[0].i64 == 77 && out[1].i64 == 2, "the added column's value");
  /* the old handle still reads its own columns of the wide row */
  expect_row(t, tb, 2, 1, "old handle, wide row");
  tu_commit(t, SOCHDB_SYNC, "wide row");
  sochdb_table_close(wide);
  sochdb_table_close(tb);
  tu_close();
}

/* ---- rows in transactions ------------------------------------------------------- */

/* sochdb.h, sochdb_last_error: "a call that succeeds leaves it unchanged".
** A create looks the table up first, and that lookup's "no table" used to
** replace the message of the caller's last failure. The messages of the
** calls that do fail on a missing table stay. */
Test(table, a_successful_create_leaves_the_last_error_alone)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_txn *t = tu_begin(db, 0);
  cr_assert_eq(sochdb_put(t, "", 0, "x", 1), SOCHDB_INVALID, "an empty key");
  char before[512];
  snprintf(before, sizeof before, "%s", sochdb_last_error());
  cr_assert(strstr(before, "key is 0 bytes"), "message: %s", before);
  cr_assert_eq(sochdb_table_create(t, "fresh", COLS, NCOLS), SOCHDB_OK, "create");
  cr_assert_str_eq(sochdb_last_error(), before, "the last error after a successful create");
  sochdb_table *x = NULL;
  cr_assert_eq(sochdb_table_open(t, "missing", NULL, 0, &x), SOCHDB_NOTFOUND, "a missing table");
  cr_assert(strstr(sochdb_last_error(), "no table 'missing'"), "message: %s", sochdb_last_error());
  sochdb_abort(t);
  tu_close();
}

Test(table, rows_follow_their_transaction)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  sochdb_txn *t = tu_begin(db, 0);
  for (int i = 0; i < 10; i++)
    put_row(t, tb, i, 1);
  expect_row(t, tb, 3, 1, "own write");
  sochdb_abort(t);
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_row(t, tb, 3, -1, "after rollback");
  cr_assert_eq(sochdb_row_put(t, tb, (sochdb_value[NCOLS]){ { 0 } }), SOCHDB_INVALID, "a read-only transaction");
  sochdb_abort(t);

  t = tu_begin(db, 0);
  for (int i = 0; i < 10; i++)
    put_row(t, tb, i, 1);
  tu_commit(t, SOCHDB_SYNC, "rows");
  t = tu_begin(db, 0);
  sochdb_value k = pk_of(4);
  cr_assert_eq(sochdb_row_delete(t, tb, &k), SOCHDB_OK, "delete");
  put_row(t, tb, 5, 2);
  expect_row(t, tb, 4, -1, "own delete");
  expect_row(t, tb, 5, 2, "own update");
  sochdb_abort(t);
  t = tu_begin(db, 0);
  expect_row(t, tb, 4, 1, "delete rolled back");
  expect_row(t, tb, 5, 1, "update rolled back");
  cr_assert_eq(sochdb_row_delete(t, tb, &k), SOCHDB_OK, "delete");
  tu_commit(t, SOCHDB_SYNC, "delete");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_row(t, tb, 4, -1, "deleted");
  expect_row(t, tb, 9, 1, "kept");
  sochdb_value v[NCOLS];
  char buf[256];
  make_row(3, 1, v, buf);
  v[C_NAME].is_null = 1;
  sochdb_abort(t);
  t = tu_begin(db, 0);
  cr_assert_eq(sochdb_row_put(t, tb, v), SOCHDB_INVALID, "NULL in a column that is not nullable");
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

Test(table, reserved_keys_are_refused_and_never_listed)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  sochdb_txn *t = tu_begin(db, 0);
  const char *res = "\xff\xff\x01zzz";
  cr_assert_eq(sochdb_put(t, res, 6, "v", 1), SOCHDB_INVALID, "put of a reserved key");
  cr_assert(strstr(sochdb_last_error(), "reserved"), "message: %s", sochdb_last_error());
  cr_assert_eq(sochdb_delete(t, res, 2), SOCHDB_INVALID, "delete of a reserved key");
  const void *v;
  size_t vl;
  cr_assert_eq(sochdb_get(t, res, 3, &v, &vl), SOCHDB_INVALID, "get of a reserved key");
  tu_put_str(t, "a", "1");
  tu_put_str(t, "\xff", "2");
  tu_put_str(t, "\xff\xfe\xff", "3");
  put_row(t, tb, 1, 1);
  tu_commit(t, SOCHDB_SYNC, "mixed");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  const char *want[] = { "a", "\xff", "\xff\xfe\xff" };
  for (int pass = 0; pass < 2; pass++) {   /* unbounded, and bounded beyond the reserved start */
    sochdb_iter *it;
    cr_assert_eq(sochdb_iter_open(t, NULL, 0, pass ? "\xff\xff\xff" : NULL, pass ? 3 : 0, &it), SOCHDB_OK, "iter");
    const void *k;
    size_t kl;
    int n = 0;
    while (sochdb_iter_next(it, &k, &kl, &v, &vl) == SOCHDB_OK) {
      cr_assert_lt(n, 3, "a reserved key was listed: %.*s", (int)kl, (const char *)k);
      cr_assert(kl == strlen(want[n]) && !memcmp(k, want[n], kl), "key %d", n);
      n++;
    }
    cr_assert_eq(n, 3, "the user keys");
    sochdb_iter_close(it);
  }
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

/* Lengths near SIZE_MAX used to wrap the row's size and the filter's copy
** (a segfault); a table handle of another database handle used to write
** rows by its own schema. All are refused, and nothing is written. */
Test(table, huge_lengths_and_foreign_handles_are_refused)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  sochdb_txn *t = tu_begin(db, 0);
  sochdb_value v[NCOLS];
  char buf[256];
  const size_t huge[] = { SIZE_MAX - 12, SIZE_MAX / 2 + 1, (size_t)SOCHDB_MAX_VALUE + 1 };
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    make_row(1, 1, v, buf);
    v[C_NOTE].is_null = 0;
    v[C_NOTE].len = huge[i];
    cr_assert_eq(sochdb_row_put(t, tb, v), SOCHDB_INVALID, "a note of %zu bytes", huge[i]);
    cr_assert(strstr(sochdb_last_error(), "'note'"), "message: %s", sochdb_last_error());
  }
  sochdb_filter f = { .column = C_NAME, .op = SOCHDB_BETWEEN, .value = { .bytes = "a", .len = SIZE_MAX / 2 + 1 },
                      .value2 = { .bytes = "b", .len = SIZE_MAX / 2 + 1 } };
  sochdb_scan *sc = NULL;
  cr_assert_eq(sochdb_table_scan(t, tb, NULL, NULL, NULL, 0, &f, &sc), SOCHDB_INVALID, "a filter of 2 x 2^63 bytes");
  cr_assert_null(sc, "a refused scan's handle");
  put_row(t, tb, 2, 1);
  tu_commit(t, SOCHDB_SYNC, "one good row");

  sochdb *db2 = NULL;
  cr_assert_eq(sochdb_open(tu_db_dir, NULL, &db2), SOCHDB_OK, "second handle");
  sochdb_txn *t2 = tu_begin(db2, 0);
  make_row(3, 1, v, buf);
  sochdb_value pk = pk_of(2), out[NCOLS];
  const sochdb_column extra = { "extra", SOCHDB_INT64, SOCHDB_NULLABLE };
  cr_assert_eq(sochdb_row_put(t2, tb, v), SOCHDB_INVALID, "row_put with another handle's table");
  cr_assert(strstr(sochdb_last_error(), "another database handle"), "message: %s", sochdb_last_error());
  cr_assert_eq(sochdb_row_get(t2, tb, &pk, NULL, 0, out), SOCHDB_INVALID, "row_get");
  cr_assert_eq(sochdb_row_delete(t2, tb, &pk), SOCHDB_INVALID, "row_delete");
  cr_assert_eq(sochdb_table_add_column(t2, tb, &extra), SOCHDB_INVALID, "add_column");
  cr_assert_eq(sochdb_table_scan(t2, tb, NULL, NULL, NULL, 0, NULL, &sc), SOCHDB_INVALID, "scan");
  sochdb_table *tb2 = NULL;
  cr_assert_eq(sochdb_table_open(t2, "t", COLS, NCOLS, &tb2), SOCHDB_OK, "the table opened on the second handle");
  cr_assert_eq(sochdb_row_get(t2, tb2, &pk, NULL, 0, out), SOCHDB_OK, "row_get through its own handle");
  tu_commit(t2, SOCHDB_SYNC, "nothing written");
  sochdb_table_close(tb2);
  sochdb_close(db2);

  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_row(t, tb, 2, 1, "the good row");
  pk = pk_of(1);
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, out), SOCHDB_NOTFOUND, "a refused row");
  pk = pk_of(3);
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, out), SOCHDB_NOTFOUND, "a row refused on the second handle");
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

/* The primary key is never NULL: a key marked is_null is refused by every
** call that takes one (a delete used to act on whatever i64 it held). */
Test(table, a_null_primary_key_is_refused_everywhere)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  sochdb_txn *t = tu_begin(db, 0);
  put_row(t, tb, 7, 1);
  tu_commit(t, SOCHDB_SYNC, "row 7");
  sochdb_value null_pk = pk_of(7), out[NCOLS];
  null_pk.is_null = 1;
  t = tu_begin(db, 0);
  cr_assert_eq(sochdb_row_get(t, tb, &null_pk, NULL, 0, out), SOCHDB_INVALID, "row_get of a NULL key");
  cr_assert(strstr(sochdb_last_error(), "NULL primary key"), "message: %s", sochdb_last_error());
  cr_assert_eq(sochdb_row_delete(t, tb, &null_pk), SOCHDB_INVALID, "row_delete of a NULL key");
  sochdb_scan *sc = NULL;
  cr_assert_eq(sochdb_table_scan(t, tb, &null_pk, NULL, NULL, 0, NULL, &sc), SOCHDB_INVALID, "a NULL start");
  cr_assert_eq(sochdb_table_scan(t, tb, NULL, &null_pk, NULL, 0, NULL, &sc), SOCHDB_INVALID, "a NULL end");
  cr_assert_null(sc, "a refused scan's handle");
  tu_commit(t, SOCHDB_SYNC, "nothing written");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_row(t, tb, 7, 1, "row 7 after the refused delete");
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

/* A handle of a rolled-back create or add_column: table ids and schema
** generations are handed out again, so it used to write rows that the
** table's real schema decodes as CORRUPT. Checked at a transaction's first
** use of the handle, against the schema in its snapshot. */
static sochdb_table *open_in(sochdb_txn *t, const char *name)
{
  sochdb_table *tb = NULL;
  int rc = sochdb_table_open(t, name, NULL, 0, &tb);
  cr_assert_eq(rc, SOCHDB_OK, "open %s: %s", name, sochdb_last_error());
  return tb;
}

static int put_two(sochdb *db, sochdb_table *tb, int64_t pk, const sochdb_value *second, sochdb_value *third)
{
  sochdb_txn *t = tu_begin(db, 0);
  sochdb_value v[3] = { { .i64 = pk }, *second, { .is_null = 1 } };
  if (third)
    v[2] = *third;
  int rc = sochdb_row_put(t, tb, v);
  if (rc == SOCHDB_OK)
    tu_commit(t, SOCHDB_SYNC, "a row");
  else
    sochdb_abort(t);
  return rc;
}

Test(table, a_handle_of_a_rolled_back_schema_change_is_refused)
{
  sochdb *db = tu_open(REG, MT, 5000);
  const sochdb_column as_string[] = { { "id", SOCHDB_INT64, 0 }, { "x", SOCHDB_STRING, 0 } };
  const sochdb_column as_double[] = { { "id", SOCHDB_INT64, 0 }, { "x", SOCHDB_DOUBLE, 0 } };
  sochdb_txn *t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_create(t, "t", as_string, 2), SOCHDB_OK);
  sochdb_table *ghost = open_in(t, "t");
  sochdb_abort(t);
  t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_create(t, "t", as_double, 2), SOCHDB_OK, "%s", sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "the second create");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *real = open_in(t, "t");
  sochdb_abort(t);
  uint32_t ghost_id, real_id;
  const sochdb_column *c;
  size_t n;
  sochdb_table_schema(ghost, &c, &n, &ghost_id);
  sochdb_table_schema(real, &c, &n, &real_id);
  cr_assert_eq(ghost_id, real_id, "the rolled-back create's id was handed out again");

  sochdb_value str = { .bytes = "abc", .len = 3 }, dbl = { .f64 = 2.5 };
  cr_assert_eq(put_two(db, ghost, 1, &str, NULL), SOCHDB_INVALID, "a row through the rolled-back create's handle");
  cr_assert(strstr(sochdb_last_error(), "open it again"), "message: %s", sochdb_last_error());
  cr_assert_eq(put_two(db, real, 2, &dbl, NULL), SOCHDB_OK, "%s", sochdb_last_error());

  /* add_column rolled back, then another column under the same generation */
  t = tu_begin(db, 0);
  const sochdb_column y_int = { "y", SOCHDB_INT64, SOCHDB_NULLABLE }, y_str = { "y", SOCHDB_STRING, SOCHDB_NULLABLE };
  cr_assert_eq(sochdb_table_add_column(t, real, &y_int), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_table *widened = open_in(t, "t");
  sochdb_abort(t);
  t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_add_column(t, real, &y_str), SOCHDB_OK, "%s", sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "the other column");
  sochdb_value i64 = { .i64 = 7 };
  cr_assert_eq(put_two(db, widened, 3, &dbl, &i64), SOCHDB_INVALID, "a row through the rolled-back column's handle");
  cr_assert_eq(put_two(db, real, 4, &dbl, NULL), SOCHDB_OK, "a handle older than a committed column still writes: %s",
               sochdb_last_error());

  t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *now = open_in(t, "t");
  sochdb_value out[3];
  int rows = 0;
  for (int64_t pk = 1; pk <= 4; pk++) {
    sochdb_value key = { .i64 = pk };
    int rc = sochdb_row_get(t, now, &key, NULL, 0, out);
    cr_assert(rc == SOCHDB_OK || rc == SOCHDB_NOTFOUND, "row %lld: %s (%s)", (long long)pk, sochdb_strerror(rc),
              sochdb_last_error());
    if (rc == SOCHDB_OK) {
      cr_assert(out[1].f64 == 2.5 && out[2].is_null, "row %lld as written", (long long)pk);
      rows++;
    }
  }
  cr_assert_eq(rows, 2, "rows 2 and 4 only");
  sochdb_abort(t);
  sochdb_table_close(ghost);
  sochdb_table_close(real);
  sochdb_table_close(widened);
  sochdb_table_close(now);
  tu_close();
}

/* ---- snapshot isolation --------------------------------------------------------- */

Test(table, snapshots_and_conflicts_hold_for_rows)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  fill(db, tb, 100, 1, 50);
  sochdb_txn *old = tu_begin(db, SOCHDB_TXN_READONLY);
  fill(db, tb, 100, 2, 50);
  sochdb_txn *t = tu_begin(db, 0);
  sochdb_value k = pk_of(7);
  cr_assert_eq(sochdb_row_delete(t, tb, &k), SOCHDB_OK, "delete");
  tu_commit(t, SOCHDB_SYNC, "delete");
  expect_row(old, tb, 7, 1, "old snapshot, deleted since");
  expect_row(old, tb, 8, 1, "old snapshot, updated since");
  sochdb_scan *s;
  cr_assert_eq(sochdb_table_scan(old, tb, NULL, NULL, NULL, 0, NULL, &s), SOCHDB_OK, "scan");
  sochdb_value row[NCOLS];
  int n = 0;
  while (sochdb_scan_next(s, row) == SOCHDB_OK) {
    cr_assert_eq(row[C_ID].i64, n, "scan order");
    cr_assert_eq(row[C_TS].i64, n * 10 + 1, "the old snapshot's generation in the scan");
    n++;
  }
  cr_assert_eq(n, 100, "the old snapshot scans 100 rows");
  sochdb_scan_close(s, NULL);
  sochdb_abort(old);

  /* first committer wins on a primary key; other keys do not conflict */
  sochdb_txn *a = tu_begin(db, 0), *b = tu_begin(db, 0), *c = tu_begin(db, 0);
  put_row(a, tb, 20, 5);
  put_row(b, tb, 20, 6);
  put_row(c, tb, 21, 6);
  tu_put_str(a, "kv-with-row", "a");
  tu_commit(a, SOCHDB_SYNC, "a");
  cr_assert_eq(sochdb_commit(b, SOCHDB_SYNC), SOCHDB_CONFLICT, "b wrote the same row");
  tu_commit(c, SOCHDB_SYNC, "c");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_row(t, tb, 20, 5, "the winner's row");
  expect_row(t, tb, 21, 6, "another row");
  tu_expect_str(t, "kv-with-row", "a", "the key written with the row");
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

/* ---- scans ---------------------------------------------------------------------- */

/* What the test wrote: the generation of each row, -1 if deleted or never. */
struct model {
  int n;
  int gen[40000];
};

static const unsigned *const PROJECTIONS[] = {
  (const unsigned[]){ C_PRICE },
  (const unsigned[]){ C_NAME, C_QTY },
  (const unsigned[]){ C_NOTE, C_ID, C_CITY },
  (const unsigned[]){ C_FLAG, C_TS },
  (const unsigned[]){ C_CITY },
};
static const size_t PROJ_N[] = { 1, 2, 3, 2, 1 };

static sochdb_scan *open_scan(sochdb_txn *t, sochdb_table *tb, const sochdb_value *lo, const sochdb_value *hi,
                              const unsigned *cols, size_t n, const sochdb_filter *f)
{
  sochdb_scan *s = NULL;
  int rc = sochdb_table_scan(t, tb, lo, hi, cols, n, f, &s);
  cr_assert_eq(rc, SOCHDB_OK, "table_scan: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  return s;
}

/* A full scan and a projected one in lockstep over [lo, hi): the projected
** columns equal the full scan's, and the full scan equals the model. */
static void check_projection(sochdb_txn *t, sochdb_table *tb, const struct model *m, int64_t lo, int64_t hi,
                             const unsigned *cols, size_t ncols, const char *ctx)
{
  sochdb_value l = pk_of(lo), h = pk_of(hi);
  sochdb_scan *full = open_scan(t, tb, &l, &h, NULL, 0, NULL);
  sochdb_scan *proj = open_scan(t, tb, &l, &h, cols, ncols, NULL);
  sochdb_value fr[NCOLS], pr[NCOLS], want[NCOLS];
  char buf[256];
  int64_t expect = lo;
  int rc;
  while ((rc = sochdb_scan_next(full, fr)) == SOCHDB_OK) {
    while (expect < hi && m->gen[expect] < 0)
      expect++;
    cr_assert_eq(fr[C_ID].i64, expect, "%s: the full scan returned row %lld where %lld was due", ctx,
                 (long long)fr[C_ID].i64, (long long)expect);
    make_row(expect, m->gen[expect], want, buf);
    for (unsigned c = 0; c < NCOLS; c++)
      expect_value(c, &fr[c], &want[c], ctx, expect);
    int prc = sochdb_scan_next(proj, pr);
    cr_assert_eq(prc, SOCHDB_OK, "%s: the projected scan ended early at %lld: %s (%s)", ctx, (long long)expect,
                 sochdb_strerror(prc), sochdb_last_error());
    for (size_t i = 0; i < ncols; i++)
      expect_value(cols[i], &pr[i], &fr[cols[i]], ctx, expect);
    expect++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: full scan: %s (%s)", ctx, sochdb_strerror(rc), sochdb_last_error());
  while (expect < hi && m->gen[expect] < 0)
    expect++;
  cr_assert_eq(expect, hi, "%s: the full scan stopped at %lld", ctx, (long long)expect);
  cr_assert_eq(sochdb_scan_next(proj, pr), SOCHDB_NOTFOUND, "%s: the projected scan has more rows", ctx);
  sochdb_scan_close(full, NULL);
  sochdb_scan_close(proj, NULL);
}

static void check_all_projections(sochdb *db, sochdb_table *tb, const struct model *m, const char *ctx)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  char what[128];
  for (size_t p = 0; p < sizeof PROJ_N / sizeof PROJ_N[0]; p++) {
    snprintf(what, sizeof what, "%s, projection %zu", ctx, p);
    check_projection(t, tb, m, 0, m->n, PROJECTIONS[p], PROJ_N[p], what);
  }
  snprintf(what, sizeof what, "%s, a range", ctx);
  check_projection(t, tb, m, m->n / 3, m->n / 3 + 517, PROJECTIONS[1], PROJ_N[1], what);
  sochdb_abort(t);
}

static void model_fill(sochdb *db, sochdb_table *tb, struct model *m, int gen)
{
  fill(db, tb, m->n, gen, 100);
  for (int i = 0; i < m->n; i++)
    m->gen[i] = gen;
}

/* Delete every k-th row, starting at `first`. */
static void model_delete(sochdb *db, sochdb_table *tb, struct model *m, int first, int k)
{
  for (int i = first; i < m->n; i += 100 * k) {
    sochdb_txn *t = tu_begin(db, 0);
    for (int j = i; j < m->n && j < i + 100 * k; j += k) {
      sochdb_value pk = pk_of(j);
      cr_assert_eq(sochdb_row_delete(t, tb, &pk), SOCHDB_OK, "delete");
      m->gen[j] = -1;
    }
    tu_commit(t, SOCHDB_ASYNC, "deletes");
  }
}

Test(table, projected_scans_equal_full_scans_in_memory_sstables_and_after_compaction)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  static struct model m;
  m.n = 4000;
  for (int i = 0; i < m.n; i++)
    m.gen[i] = -1;
  model_fill(db, tb, &m, 1);
  check_all_projections(db, tb, &m, "in memtables");

  for (int gen = 2; gen <= 4; gen++)
    model_fill(db, tb, &m, gen);
  model_delete(db, tb, &m, 3, 13);
  TU_WAIT_STATS(db, s->flushes >= 2 && s->sst_files >= 1, "flushes");
  check_all_projections(db, tb, &m, "memtables and SSTables");

  /* a snapshot taken now must keep reading generation 4 from columnar blocks */
  sochdb_txn *old = tu_begin(db, SOCHDB_TXN_READONLY);
  static struct model m4;
  m4 = m;
  for (int gen = 5; gen <= 9; gen++)
    model_fill(db, tb, &m, gen);
  model_delete(db, tb, &m, 5, 17);
  TU_WAIT_STATS(db, s->compactions >= 1, "a compaction");
  char what[64];
  for (size_t p = 0; p < 3; p++) {
    snprintf(what, sizeof what, "an old snapshot, projection %zu", p);
    check_projection(old, tb, &m4, 0, m4.n, PROJECTIONS[p], PROJ_N[p], what);
  }
  for (int i = 0; i < m.n; i += 97)
    expect_row(old, tb, i, m4.gen[i], "an old snapshot's get");
  sochdb_abort(old);
  check_all_projections(db, tb, &m, "after compactions");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < m.n; i += 7)
    expect_row(t, tb, i, m.gen[i], "get after compactions");
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

/* ---- filters, skipped blocks, bytes per column ---------------------------------- */

/* The rows a brute-force filter passes, in pk order, into out; their count. */
static int brute_force(const struct model *m, const sochdb_filter *f, int64_t *out)
{
  int n = 0;
  for (int i = 0; i < m->n; i++) {
    if (m->gen[i] < 0)
      continue;
    sochdb_value v[NCOLS];
    char buf[256];
    make_row(i, m->gen[i], v, buf);
    if (filter_passes(COLS[f->column].type, f, &v[f->column]))
      out[n++] = i;
  }
  return n;
}

/* The filtered scan returns exactly the brute force's rows; its stats to *st. */
static void check_filter(sochdb_txn *t, sochdb_table *tb, const struct model *m, const sochdb_filter *f,
                         const char *ctx, sochdb_scan_stats *st)
{
  static int64_t want[40000];
  int n = brute_force(m, f, want);
  unsigned cols[] = { C_ID, f->column };
  sochdb_scan *s = open_scan(t, tb, NULL, NULL, cols, 2, f);
  sochdb_value row[2];
  int got = 0, rc;
  while ((rc = sochdb_scan_next(s, row)) == SOCHDB_OK) {
    cr_assert_lt(got, n, "%s: more rows than the brute force's %d (row %lld)", ctx, n, (long long)row[0].i64);
    cr_assert_eq(row[0].i64, want[got], "%s: row %lld where %lld was due", ctx, (long long)row[0].i64,
                 (long long)want[got]);
    got++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: %s (%s)", ctx, sochdb_strerror(rc), sochdb_last_error());
  cr_assert_eq(got, n, "%s: %d rows, the brute force %d", ctx, got, n);
  sochdb_scan_close(s, st);
  cr_assert_eq(st->rows, (uint64_t)n, "%s: the stats count the rows", ctx);
}

static sochdb_filter filter_i64(unsigned col, unsigned op, int64_t a, int64_t b)
{
  sochdb_filter f;
  memset(&f, 0, sizeof f);
  f.column = col;
  f.op = op;
  f.value.i64 = a;
  f.value2.i64 = b;
  return f;
}

Test(table, filters_equal_brute_force_and_skip_blocks_by_min_max)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  static struct model m;
  m.n = 20000;
  model_fill(db, tb, &m, 1);
  model_delete(db, tb, &m, 1, 29);
  TU_WAIT_STATS(db, s->flushes >= 2, "flushes");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_scan_stats st;
  /* 1% of the rows, by a column that grows with the primary key */
  sochdb_filter f = filter_i64(C_TS, SOCHDB_BETWEEN, 120000, 121990);
  check_filter(t, tb, &m, &f, "ts between", &st);
  cr_assert_gt(st.blocks_read, 20, "blocks were read (%llu)", (unsigned long long)st.blocks_read);
  cr_assert_gt(st.blocks_skipped * 10, st.blocks_read * 8, "most blocks are skipped: %llu of %llu",
               (unsigned long long)st.blocks_skipped, (unsigned long long)st.blocks_read);
  f = filter_i64(C_TS, SOCHDB_EQ, 50001, 0);
  check_filter(t, tb, &m, &f, "ts =", &st);
  f = filter_i64(C_TS, SOCHDB_LT, 3000, 0);
  check_filter(t, tb, &m, &f, "ts <", &st);
  f = filter_i64(C_TS, SOCHDB_GE, 199000, 0);
  check_filter(t, tb, &m, &f, "ts >=", &st);
  f = filter_i64(C_QTY, SOCHDB_EQ, 17, 0);
  check_filter(t, tb, &m, &f, "qty = (nullable, scattered)", &st);
  f = filter_i64(C_QTY, SOCHDB_GT, 480, 0);
  check_filter(t, tb, &m, &f, "qty >", &st);
  f = filter_i64(C_PRICE, SOCHDB_LT, 0, 0);
  f.value.f64 = 3.5;
  check_filter(t, tb, &m, &f, "price < (double)", &st);
  f = filter_i64(C_CITY, SOCHDB_EQ, 0, 0);
  f.value.bytes = "Cairo";
  f.value.len = 5;
  check_filter(t, tb, &m, &f, "city = (string)", &st);
  f = filter_i64(C_NAME, SOCHDB_GT, 0, 0);
  f.value.bytes = "name-019";
  f.value.len = 8;
  check_filter(t, tb, &m, &f, "name > (string)", &st);
  f = filter_i64(C_TS, SOCHDB_LT, INT64_MIN, 0);
  check_filter(t, tb, &m, &f, "nothing passes", &st);
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

static sochdb_scan_stats scan_cost(sochdb_txn *t, sochdb_table *tb, const unsigned *cols, size_t n)
{
  sochdb_scan *s = open_scan(t, tb, NULL, NULL, cols, n, NULL);
  sochdb_value row[NCOLS];
  while (sochdb_scan_next(s, row) == SOCHDB_OK) {
  }
  sochdb_scan_stats st;
  sochdb_scan_close(s, &st);
  return st;
}

Test(table, one_column_reads_a_fraction_of_the_bytes_of_all)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  fill(db, tb, 20000, 1, 100);
  TU_WAIT_STATS(db, s->flushes >= 2, "flushes");
  sochdb_scan_stats before;
  cr_assert_eq(sochdb_scan_stats_get(db, &before), SOCHDB_OK, "scan stats");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_scan_stats all = scan_cost(t, tb, NULL, 0);
  unsigned one[] = { C_QTY };
  sochdb_scan_stats qty = scan_cost(t, tb, one, 1);
  sochdb_abort(t);
  cr_assert_eq(all.rows, qty.rows, "both scans see every row");
  cr_assert_gt(all.bytes_read, 0, "the full scan read SSTables");
  cr_assert_gt(qty.blocks_direct, 0, "blocks read straight from their columns");
  cr_assert_lt(qty.bytes_read * 4, all.bytes_read, "1 column of 8: %llu bytes read, all: %llu",
               (unsigned long long)qty.bytes_read, (unsigned long long)all.bytes_read);
  cr_assert_lt(qty.bytes_decompressed * 4, all.bytes_decompressed + 1, "decompressed: %llu vs %llu",
               (unsigned long long)qty.bytes_decompressed, (unsigned long long)all.bytes_decompressed);
  cr_log_info("bytes read: 1 column %llu, 8 columns %llu", (unsigned long long)qty.bytes_read,
              (unsigned long long)all.bytes_read);
  sochdb_scan_stats after;
  cr_assert_eq(sochdb_scan_stats_get(db, &after), SOCHDB_OK, "scan stats");
  cr_assert_eq(after.scans - before.scans, 2, "two scans counted");
  cr_assert_eq(after.bytes_read - before.bytes_read, all.bytes_read + qty.bytes_read, "bytes read, totalled");
  cr_assert_eq(after.rows - before.rows, all.rows + qty.rows, "rows, totalled");
  static struct model m;   /* the rows read straight from columns are the right ones */
  m.n = 20000;
  for (int i = 0; i < m.n; i++)
    m.gen[i] = 1;
  check_all_projections(db, tb, &m, "blocks read whole");
  sochdb_table_close(tb);
  tu_close();
}

/* ---- kill -9 in the middle of a commit ------------------------------------------- */

#define CRASH_TXNS 400

/* Transaction i writes rows 2i and 2i+1 and the key "last" = i. */
static void crash_writer(const char *dir, volatile int *acked, const char *point, unsigned countdown)
{
  sochdb *db = tu_child_open(dir, 90);
  sochdb_txn *t;
  sochdb_table *tb;
  if (sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t) || sochdb_table_open(t, "t", COLS, NCOLS, &tb))
    _exit(91);
  sochdb_abort(t);
  sochdb_test_crash_at(point, countdown);
  for (int i = 0; i < CRASH_TXNS; i++) {
    if (sochdb_txn_begin(db, 0, &t))
      _exit(92);
    sochdb_value v[NCOLS];
    char buf[256], last[16];
    for (int k = 0; k < 2; k++) {
      make_row(2 * i + k, i, v, buf);
      if (sochdb_row_put(t, tb, v))
        _exit(93);
    }
    snprintf(last, sizeof last, "%d", i);
    if (sochdb_put(t, "last", 4, last, strlen(last)) || sochdb_commit(t, SOCHDB_SYNC))
      _exit(94);
    acked[i] = 1;
  }
  _exit(0);
}

/* Every transaction is whole; every acknowledged one is there; at most one
** more (the one in flight). Returns how many are there. */
static int check_crash_state(sochdb *db, sochdb_table *tb, const volatile int *acked, const char *ctx)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  int present = 0, nacked = 0;
  for (int i = 0; i < CRASH_TXNS; i++) {
    sochdb_value a = pk_of(2 * i), b = pk_of(2 * i + 1), row[NCOLS];
    int ra = sochdb_row_get(t, tb, &a, NULL, 0, row), rb = sochdb_row_get(t, tb, &b, NULL, 0, row);
    cr_assert(ra == SOCHDB_OK || ra == SOCHDB_NOTFOUND, "%s: get: %s", ctx, sochdb_strerror(ra));
    cr_assert_eq(ra, rb, "%s: transaction %d is half there (%s / %s)", ctx, i, sochdb_strerror(ra),
                 sochdb_strerror(rb));
    if (acked[i]) {
      nacked++;
      cr_assert_eq(ra, SOCHDB_OK, "%s: acknowledged transaction %d is lost", ctx, i);
    }
    if (ra == SOCHDB_OK) {
      expect_row(t, tb, 2 * i, i, ctx);
      present++;
    }
  }
  cr_assert(present == nacked || present == nacked + 1, "%s: %d transactions there, %d acknowledged", ctx, present,
            nacked);
  if (present) {
    char buf[16];
    cr_assert_eq(tu_get_str(t, "last", buf, sizeof buf), SOCHDB_OK, "%s: the key written with the rows", ctx);
    cr_assert_eq(atoi(buf), present - 1, "%s: last = %s with %d transactions", ctx, buf, present);
  }
  sochdb_abort(t);
  return present;
}

static void crash_mid_commit(const char *point, unsigned countdown)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  volatile int *acked = tu_shared_alloc(CRASH_TXNS * sizeof *acked);
  cr_assert_not_null((void *)acked, "shared memory");
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork");
  if (pid == 0)
    crash_writer(tu_dir(), acked, point, countdown);
  int status = 0;
  cr_assert_eq(tu_wait_child(pid, 60000, &status), 0, "the writer finished");
  char what[64];
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer died at %s: %s", point,
            tu_status_str(status, what, sizeof what));
  int present = check_crash_state(db, tb, acked, "after the kill");
  cr_assert_gt(present, 10, "the writer committed before it died");
  sochdb_table_close(tb);
  tu_close();
  tu_stop_daemon(tu_dir());
  tu_remove_region(tu_dir());
  db = tu_open(REG, MT, 5000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  cr_assert_eq(sochdb_table_open(t, "t", COLS, NCOLS, &tb), SOCHDB_OK, "the schema survives the rebuild");
  sochdb_abort(t);
  check_crash_state(db, tb, acked, "after a region rebuild");
  sochdb_table_close(tb);
  tu_close();
  tu_shared_free((void *)acked, CRASH_TXNS * sizeof *acked);
}

/* installs are per key, 3 per transaction: dies after the first row of one */
Test(table, kill_9_while_installing_leaves_no_half_row)
{
  crash_mid_commit("commit.install", 3 * 57 + 1);
}

/* after the commit point, before the caller heard of it */
Test(table, kill_9_after_the_commit_point_leaves_it_whole)
{
  crash_mid_commit("commit.decided", 61);
}

/* ---- damage in one column segment ------------------------------------------------- */

/* The largest SSTable of dir into path, mapped privately into *buf (a copy). */
static void largest_sst(const char *dir, char *path, size_t n)
{
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "opendir");
  struct dirent *e;
  off_t best = -1;
  path[0] = 0;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l < 5 || strcmp(e->d_name + l - 4, ".sst"))
      continue;
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(p, &st) == 0 && st.st_size > best) {
      best = st.st_size;
      snprintf(path, n, "%s", p);
    }
  }
  closedir(d);
  cr_assert(path[0], "no SSTable in %s", dir);
}

/* The whole of the largest SSTable of dir (malloc'ed, *len bytes), its path
** in path, and *fd open read-write on it. */
static uint8_t *read_largest_sst(const char *dir, char *path, size_t n, int *fd, size_t *len)
{
  largest_sst(dir, path, n);
  *fd = open(path, O_RDWR);
  cr_assert_geq(*fd, 0, "open %s", path);
  struct stat st;
  cr_assert_eq(fstat(*fd, &st), 0);
  *len = (size_t)st.st_size;
  uint8_t *buf = malloc(*len);
  cr_assert_eq(pread(*fd, buf, *len, 0), (ssize_t)*len, "read %s", path);
  return buf;
}

/* Flip one byte in the payload of column `col`'s segment of a columnar block
** in the middle of the largest SSTable; the primary key of a row in it to *pk. */
static void damage_column(const char *dir, unsigned col, int64_t *pk)
{
  char path[4400];
  int fd;
  size_t len;
  uint8_t *buf = read_largest_sst(dir, path, sizeof path, &fd, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "sst_open");
  cr_assert_gt(r.ncolblocks, 2u, "columnar blocks in %s", path);
  uint32_t b = r.nblocks / 2;
  while (!r.index[b].col)
    b++;
  const struct sst_colblock *cb = &r.colblocks[r.index[b].col - 1];
  const struct sst_segment *seg = &r.segs[cb->seg + 1 + col];
  const uint8_t *k = r.keys + r.index[b].key_off;   /* the block's last key: a row key */
  sochdb_value v;
  cr_assert_eq(rowfmt_pk_decode(k + ROWFMT_PREFIX_LEN, r.index[b].klen - ROWFMT_PREFIX_LEN, SOCHDB_INT64, &v), 0, "pk");
  *pk = v.i64;
  uint8_t x = buf[seg->offset + seg->size / 2] ^ 0x20;
  cr_assert_eq(pwrite(fd, &x, 1, (off_t)(seg->offset + seg->size / 2)), 1, "write");
  sst_close(&r);
  close(fd);
  free(buf);
}

/* Scan every row of tb with one column: the code it ends with. */
static int scan_column(sochdb_txn *t, sochdb_table *tb, unsigned col)
{
  sochdb_scan *s = open_scan(t, tb, NULL, NULL, &col, 1, NULL);
  sochdb_value v;
  int rc;
  while ((rc = sochdb_scan_next(s, &v)) == SOCHDB_OK) {
  }
  sochdb_scan_close(s, NULL);
  return rc;
}

/* Table t of 12,000 rows, in SSTables, its database closed and its daemon
** stopped: its files may be changed now. */
static void flushed_table_then_stopped(void)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  static struct model m;
  m.n = 12000;
  model_fill(db, tb, &m, 1);
  TU_WAIT_STATS(db, s->flushes >= 2, "flushes");
  sochdb_table_close(tb);
  tu_close();
  tu_stop_daemon(tu_dir());
}

/* After flushed_table_then_stopped and a change to the files: the database
** opened again without its region (an empty block cache), a read-only
** transaction, and table t open in it (*tb). */
static sochdb_txn *reopened_table(sochdb_table **tb)
{
  tu_remove_region(tu_dir());
  sochdb *db = tu_open(REG, MT, 1000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  cr_assert_eq(sochdb_table_open(t, "t", COLS, NCOLS, tb), SOCHDB_OK, "open");
  return t;
}

Test(table, a_damaged_column_segment_is_reported_and_spares_the_other_columns)
{
  flushed_table_then_stopped();
  int64_t pk;
  damage_column(tu_dir(), C_NOTE, &pk);
  sochdb_table *tb;
  sochdb_txn *t = reopened_table(&tb);
  cr_assert_eq(scan_column(t, tb, C_NOTE), SOCHDB_CORRUPT, "a scan of the damaged column");
  cr_assert_eq(scan_column(t, tb, C_PRICE), SOCHDB_NOTFOUND, "a scan of another column reads past the damage");
  sochdb_value key = pk_of(pk), row[NCOLS];
  cr_assert_eq(sochdb_row_get(t, tb, &key, NULL, 0, row), SOCHDB_CORRUPT, "a get of a row in the block");
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
  struct check_summary sum;
  cr_assert_eq(sdb_check_dir(tu_dir(), NULL, &sum), SOCHDB_OK, "check runs");
  cr_assert_eq(sum.damaged, 1, "check reports the damaged segment");
}

/* Give column col of a columnar block in the middle of the largest SSTable
** another 8-byte type in its index entry (double <-> int64), every checksum
** made to hold again: the index block is rewritten uncompressed. The number
** of columnar blocks so changed: 1. */
static void retype_column(const char *dir, unsigned col)
{
  char path[4400];
  int fd;
  size_t len;
  uint8_t *buf = read_largest_sst(dir, path, sizeof path, &fd, &len);
  size_t n, ioff, ulen;
  uint8_t *out = sc_index_uncompressed(buf, len, &n, &ioff, &ulen);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "sst_open");
  uint32_t b = r.nblocks / 2;
  while (!r.index[b].col)
    b++;
  uint8_t *d = sc_col_descriptor(out, ioff, ulen, r.index[b].offset, r.index[b].size);
  uint8_t *type = d + 36 + 22 * col;
  cr_assert(*type == SOCHDB_DOUBLE || *type == SOCHDB_INT64, "an 8-byte column");
  *type = *type == SOCHDB_DOUBLE ? SOCHDB_INT64 : SOCHDB_DOUBLE;
  sst_block_seal(out, ioff, (uint32_t)ulen + SST_TRAILER_BYTES, SST_BLOCK_INDEX);
  sst_close(&r);
  cr_assert_eq(sst_open(out, n, &r), SOCHDB_OK, "the retyped table opens: its checksums hold");
  sst_close(&r);
  cr_assert_eq(pwrite(fd, out, n, 0), (ssize_t)n, "write");
  close(fd);
  free(out);
  free(buf);
}

/* A column of a block whose stored type is not the schema's (checksums
** intact) is CORRUPT, and stays so: a scan that goes on after the error
** keeps getting it, as an iterator does, instead of reading on past the
** damaged block to an end that looks complete. */
Test(table, a_scan_error_from_a_block_of_the_wrong_type_is_sticky)
{
  flushed_table_then_stopped();
  retype_column(tu_dir(), C_PRICE);
  sochdb_table *tb;
  sochdb_txn *t = reopened_table(&tb);
  for (int whole = 0; whole < 2; whole++) {   /* the price column alone (blocks taken whole), every column */
    unsigned col = C_PRICE;
    sochdb_scan *s = open_scan(t, tb, NULL, NULL, whole ? NULL : &col, whole ? 0 : 1, NULL);
    sochdb_value v[NCOLS];
    int rc;
    size_t before = 0;
    while ((rc = sochdb_scan_next(s, v)) == SOCHDB_OK)
      before++;
    cr_assert_eq(rc, SOCHDB_CORRUPT, "%s: the retyped block is reported (%zu rows before it)",
                 whole ? "every column" : "one column", before);
    for (int again = 0; again < 2000; again++) {
      rc = sochdb_scan_next(s, v);
      cr_assert_eq(rc, SOCHDB_CORRUPT, "%s: call %d after the error: %s", whole ? "every column" : "one column",
                   again + 1, sochdb_strerror(rc));
    }
    sochdb_scan_close(s, NULL);
  }
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

/* ---- random updates and snapshots ------------------------------------------------- */

/* A scan used after its transaction ended: sochdb_scan_next must refuse it,
** as sochdb_iter_next does. A scan reading a block taken whole read on from
** the block without looking at its transaction: the rest of the block came
** back (1,499 rows in the review's case), and where a compaction had replaced
** the files and the ended transaction held the last reference to the old
** ones, it read their unmapped pages (SIGSEGV). Found by an independent
** review. mode 0: the files stay; 1: they are replaced first. */
static void scan_on_after_the_end(sochdb *db, sochdb_table *tb, int mode)
{
  static const unsigned one[] = { C_QTY };
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_scan *s = open_scan(t, tb, NULL, NULL, one, 1, NULL);
  sochdb_value row[NCOLS];
  for (int i = 0; i < 5; i++)
    cr_assert_eq(sochdb_scan_next(s, row), SOCHDB_OK, "mode %d: row %d", mode, i);
  sochdb_txn *other = NULL;
  if (mode == 1) {
    fill(db, tb, 20000, 2, 100);
    tu_full_compaction(db);
    other = tu_begin(db, SOCHDB_TXN_READONLY);   /* this process now reads the new files */
    expect_row(other, tb, 7, 2, "after the compaction");
  }
  sochdb_abort(t);   /* the last reference to the files the scan reads */
  int rc = sochdb_scan_next(s, row);
  sochdb_scan_stats st;
  sochdb_scan_close(s, &st);
  if (other)
    sochdb_abort(other);
  cr_assert_gt(st.blocks_direct, 0, "mode %d: the scan took no block whole, so the test shows nothing", mode);
  cr_assert_eq(rc, SOCHDB_INVALID, "mode %d: a scan of an ended transaction: %s (%s)", mode, sochdb_strerror(rc),
               sochdb_last_error());
  cr_assert(strstr(sochdb_last_error(), "ended"), "mode %d: message: %s", mode, sochdb_last_error());
}

Test(table, a_scan_of_an_ended_transaction_is_refused)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  fill(db, tb, 20000, 1, 100);
  tu_full_compaction(db);
  scan_on_after_the_end(db, tb, 0);
  scan_on_after_the_end(db, tb, 1);
  sochdb_table_close(tb);
  tu_close();
}

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void) { return tu_xorshift(&rnd_state); }

/* Round r: a random few rows updated to generation r, a few deleted, a few
** (re)inserted, in transactions of 50. */
static void random_round(sochdb *db, sochdb_table *tb, struct model *m, int r)
{
  sochdb_txn *t = tu_begin(db, 0);
  int n = 0;
  for (int i = 0; i < m->n; i++) {
    uint64_t x = rnd() % 1000;
    if (x >= 40)
      continue;
    if (x < 8) {
      sochdb_value pk = pk_of(i);
      cr_assert_eq(sochdb_row_delete(t, tb, &pk), SOCHDB_OK, "delete");
      m->gen[i] = -1;
    } else {
      put_row(t, tb, i, r);
      m->gen[i] = r;
    }
    if (++n % 50 == 0) {
      tu_commit(t, SOCHDB_ASYNC, "round");
      t = tu_begin(db, 0);
    }
  }
  tu_commit(t, SOCHDB_ASYNC, "round");
}

Test(table, random_updates_under_held_snapshots_scan_like_the_model)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  static struct model m, held[3];
  sochdb_txn *snap[3];
  m.n = 6000;
  model_fill(db, tb, &m, 1);
  int nheld = 0;
  for (int r = 2; r <= 40; r++) {
    random_round(db, tb, &m, r);
    if (r % 13 == 0 && nheld < 3) {
      held[nheld] = m;
      snap[nheld++] = tu_begin(db, SOCHDB_TXN_READONLY);
    }
    if (r % 10 == 0)
      model_fill(db, tb, &m, r);   /* whole generations: flushes and compactions */
  }
  TU_WAIT_STATS(db, s->compactions >= 1, "a compaction");
  char what[64];
  for (int h = 0; h < nheld; h++) {
    snprintf(what, sizeof what, "snapshot %d", h);
    check_projection(snap[h], tb, &held[h], 0, held[h].n, PROJECTIONS[1], PROJ_N[1], what);
    sochdb_abort(snap[h]);
  }
  check_all_projections(db, tb, &m, "now");
  /* push the table out of the memtables and compact it fully: its blocks
  ** then hold one version per key, and scans read them whole */
  sochdb_table *filler = create_table(db, "filler");
  fill(db, filler, 15000, 1, 100);
  tu_full_compaction(db);
  sochdb_scan_stats before, after;
  cr_assert_eq(sochdb_scan_stats_get(db, &before), SOCHDB_OK, "stats");
  check_all_projections(db, tb, &m, "compacted");
  cr_assert_eq(sochdb_scan_stats_get(db, &after), SOCHDB_OK, "stats");
  cr_assert_gt(after.blocks_direct - before.blocks_direct, 10, "blocks read whole: %llu of %llu",
               (unsigned long long)(after.blocks_direct - before.blocks_direct),
               (unsigned long long)(after.blocks_read - before.blocks_read));
  sochdb_table_close(filler);
  sochdb_table_close(tb);
  tu_close();
}

/* ---- random histories of rows against a model ------------------------------------ */

/* Write generation g of row p to tb in t (g < 0: delete it), and record it in m. */
typedef void write_fn(sochdb_txn *t, sochdb_table *tb, struct model *m, int p, int g);

/* Commit n random writes of generation g, a fifth of them deletes, over
** scattered rows or (half the time, and always when n is m->n: every row)
** a run of adjacent ones. Done again while the memtables are full (BUSY). */
static void commit_random_rows(sochdb *db, sochdb_table *tb, struct model *m, write_fn *write, int g, int n)
{
  static struct model next;
  for (;;) {
    next = *m;
    sochdb_txn *t = tu_begin(db, 0);
    int base = (int)(rnd() % (uint64_t)m->n), adjacent = n >= m->n || rnd() % 2;
    for (int k = 0; k < n; k++)
      write(t, tb, &next, adjacent ? (base + k) % m->n : (int)(rnd() % (uint64_t)m->n), rnd() % 5 == 0 ? -1 : g);
    int rc = sochdb_commit(t, SOCHDB_ASYNC);
    if (rc == SOCHDB_OK) {
      *m = next;
      return;
    }
    cr_assert_eq(rc, SOCHDB_BUSY, "commit of generation %d: %s (%s)", g, sochdb_strerror(rc), sochdb_last_error());
    tu_sleep_ms(5);
  }
}

/* Something that happens while a scan is under way (every 400 rows). */
struct midway {
  void (*fn)(struct midway *md);
  sochdb *db;
  sochdb_table *tb;
  sochdb_txn *t;   /* the scan's transaction, when it writes */
  struct model *m;
  int pass, times;
};

/* ---- special values: filters and min/max against a model ------------------------- */

/* A table whose columns hold the values that filters and min/max skipping
** get wrong, if any: INT64_MIN and INT64_MAX, NaN, -0.0 and 0.0, the
** infinities, DBL_MAX and -DBL_MIN, "", "a\0", "\xff", "\xff\xff", and NULL
** in every nullable column. The other values grow with the primary key,
** so that blocks are skipped, and read whole, by min/max. */
enum { S_ID, S_I, S_D, S_S, S_B, NSCOLS };

static const sochdb_column SCOLS[NSCOLS] = {
  { "id", SOCHDB_INT64, 0 },
  { "i", SOCHDB_INT64, SOCHDB_NULLABLE },
  { "d", SOCHDB_DOUBLE, SOCHDB_NULLABLE },
  { "s", SOCHDB_STRING, SOCHDB_NULLABLE },
  { "b", SOCHDB_BYTES, SOCHDB_NULLABLE },
};

#define NSROWS 5000
#define NSPECIAL 9

static const int64_t SPECIAL_INTS[] = { INT64_MIN, INT64_MAX, 0, -1 };
static const double SPECIAL_DOUBLES[NSPECIAL] = { NAN, -0.0, 0.0, INFINITY, -INFINITY, DBL_MAX, -DBL_MIN, 1.5, -2.25 };
static const struct tu_key SPECIAL_BYTES[NSPECIAL] = {
  { "", 0 }, { "a", 1 }, { "a\0", 2 }, { "ab", 2 }, { "b", 1 },
  { "\xff", 1 }, { "\xff\xff", 2 }, { "m", 1 }, { "zz", 2 },
};

/* Row p's primary key: negative ones too, far apart. */
static int64_t special_pk(int p) { return ((int64_t)p - NSROWS / 2) * 1000003; }

static uint64_t mix(uint64_t h)
{
  h ^= h >> 31;
  h *= 0x7FB5D329728EA185ull;
  h ^= h >> 27;
  h *= 0x81DADEF4BC2DD44Dull;
  return h ^ (h >> 33);
}

/* Column c of row p at generation g into v; its bytes in buf (128 bytes). */
static void special_value(int p, int g, unsigned c, sochdb_value *v, uint8_t *buf)
{
  uint64_t h = mix((uint64_t)p * 131 + (uint64_t)g * 0x10001 + c * 0x9E3779B97F4A7C15ull);
  unsigned pick = (unsigned)(h >> 8) % NSPECIAL;
  memset(v, 0, sizeof *v);
  v->is_null = c != S_ID && h % (10 - c) == 0;
  switch (c) {
  case S_ID:
    v->i64 = special_pk(p);
    break;
  case S_I:
    v->i64 = h % 23 == 1 ? SPECIAL_INTS[pick % 4] : (int64_t)p * 10 + g % 10;
    break;
  case S_D:
    v->f64 = h % 29 == 1 ? SPECIAL_DOUBLES[pick] : (double)p / 8.0 + (double)(g % 7) / 64.0 - 300.0;
    break;
  case S_S:
    if (h % 3 == 1) {
      v->bytes = SPECIAL_BYTES[pick].p;
      v->len = SPECIAL_BYTES[pick].n;
    } else {
      v->len = (size_t)snprintf((char *)buf, 32, "s%05d-%d", p, g % 5);
      v->bytes = buf;
    }
    break;
  default:
    v->len = (size_t)(h >> 16) % 90;
    for (size_t k = 0; k < v->len; k++)
      buf[k] = (uint8_t)mix(h + k);
    v->bytes = buf;
  }
}

static void write_special(sochdb_txn *t, sochdb_table *tb, struct model *m, int p, int g)
{
  sochdb_value v[NSCOLS];
  uint8_t bufs[NSCOLS][128];
  for (unsigned c = 0; c < NSCOLS; c++)
    special_value(p, g, c, &v[c], bufs[c]);
  int rc = g < 0 ? sochdb_row_delete(t, tb, &v[S_ID]) : sochdb_row_put(t, tb, v);
  cr_assert_eq(rc, SOCHDB_OK, "write of row %d: %s (%s)", p, sochdb_strerror(rc), sochdb_last_error());
  m->gen[p] = g;
}

/* Table "s" of the special values, empty (so is m); the generator seeded
** (SOCHDB_TEST_SEED replays another history). */
static sochdb_table *create_special(sochdb *db, struct model *m)
{
  rnd_state = tu_seed(88172645463325252ull);
  m->n = NSROWS;
  for (int p = 0; p < NSROWS; p++)
    m->gen[p] = -1;
  return create_table_of(db, "s", SCOLS, NSCOLS);
}

/* A bound of a random filter, one the values hold now and then. */
static void special_bound(unsigned column, sochdb_value *v)
{
  memset(v, 0, sizeof *v);
  unsigned pick = (unsigned)(rnd() % NSPECIAL);
  if (SCOLS[column].type == SOCHDB_DOUBLE)
    v->f64 = SPECIAL_DOUBLES[pick];
  else if (SCOLS[column].type == SOCHDB_INT64)
    v->i64 = SPECIAL_INTS[pick % 4];
  else
    v->bytes = SPECIAL_BYTES[pick].p, v->len = SPECIAL_BYTES[pick].n;
}

/* A random filter: every op on every column, the primary key included,
** with bounds from random rows or (one in five) special ones; BETWEEN's
** bounds mostly in order, now and then the other way round. Its bytes stay
** valid until the next call. */
static sochdb_filter random_filter(void)
{
  static uint8_t buf[2][128];
  sochdb_filter f;
  memset(&f, 0, sizeof f);
  f.column = (unsigned)(rnd() % NSCOLS);
  f.op = (unsigned)(SOCHDB_EQ + rnd() % 6);
  special_value((int)(rnd() % NSROWS), (int)(rnd() % 40), f.column, &f.value, buf[0]);
  special_value((int)(rnd() % NSROWS), (int)(rnd() % 40), f.column, &f.value2, buf[1]);
  if (f.value.is_null || rnd() % 5 == 0)
    special_bound(f.column, &f.value);
  if (f.value2.is_null)
    f.value2 = f.value;
  if (compare_values(SCOLS[f.column].type, &f.value, &f.value2) == 1 && rnd() % 4) {
    sochdb_value x = f.value;
    f.value = f.value2;
    f.value2 = x;
  }
  return f;
}

/* A scan of table "s": rows [lo, hi) by number (-1: open), the columns
** (the primary key first), a filter or NULL. */
struct query {
  int lo, hi;
  unsigned cols[6];
  size_t ncols;
  const sochdb_filter *f;
};

static struct query random_query(const sochdb_filter *f)
{
  struct query q = { .cols = { S_ID }, .ncols = 1 + rnd() % 5 };
  for (size_t i = 1; i < q.ncols; i++)
    q.cols[i] = (unsigned)(rnd() % NSCOLS);
  q.lo = rnd() % 3 ? -1 : (int)(rnd() % NSROWS);
  q.hi = rnd() % 3 ? -1 : (int)(rnd() % NSROWS);
  q.f = rnd() % 6 ? f : NULL;
  return q;
}

static void describe_query(const struct query *q, const char *ctx, char *out, size_t n)
{
  static const char *const ops[] = { "?", "=", "<", "<=", ">", ">=", "between" };
  const sochdb_filter *f = q->f;
  int len = snprintf(out, n, "%s, rows [%d, %d)", ctx, q->lo, q->hi);
  if (!f || len < 0 || (size_t)len >= n)
    return;
  const sochdb_value *a = &f->value, *b = &f->value2;
  const char *col = SCOLS[f->column].name, *op = ops[f->op];
  unsigned type = SCOLS[f->column].type;
  if (type == SOCHDB_INT64)
    snprintf(out + len, n - (size_t)len, ", %s %s %lld (%lld)", col, op, (long long)a->i64, (long long)b->i64);
  else if (type == SOCHDB_DOUBLE)
    snprintf(out + len, n - (size_t)len, ", %s %s %g (%g)", col, op, a->f64, b->f64);
  else
    snprintf(out + len, n - (size_t)len, ", %s %s, bounds of %zu (and %zu) bytes", col, op, a->len, b->len);
}

/* Whether row p of m is due in a scan filtered by f (may be NULL). */
static int special_row_due(const struct model *m, int p, const sochdb_filter *f)
{
  if (m->gen[p] < 0 || !f)
    return m->gen[p] >= 0;
  sochdb_value x;
  uint8_t buf[128];
  special_value(p, m->gen[p], f->column, &x, buf);
  return filter_passes(SCOLS[f->column].type, f, &x);
}

static void expect_special_row(const sochdb_value *out, const struct query *q, int p, int g, const char *what)
{
  for (size_t i = 0; i < q->ncols; i++) {
    sochdb_value want;
    uint8_t buf[128];
    unsigned c = q->cols[i];
    special_value(p, g, c, &want, buf);
    cr_assert(value_eq(SCOLS[c].type, &out[i], &want), "%s: row %d (generation %d), column %s: null %d/%d, i64 "
              "%lld/%lld, f64 %g/%g, len %zu/%zu", what, p, g, SCOLS[c].name, out[i].is_null, want.is_null,
              (long long)out[i].i64, (long long)want.i64, out[i].f64, want.f64, out[i].len, want.len);
  }
}

/* Scan q of table "s" in t returns exactly the rows of m it is due, in
** order, row by row; md (may be NULL) happens while it runs. */
static void expect_special_scan(sochdb_txn *t, sochdb_table *tb, const struct model *m, const struct query *q,
                                const char *ctx, struct midway *md)
{
  char what[256];
  describe_query(q, ctx, what, sizeof what);
  sochdb_value lo = pk_of(special_pk(q->lo)), hi = pk_of(special_pk(q->hi)), out[6];
  sochdb_scan *s = open_scan(t, tb, q->lo >= 0 ? &lo : NULL, q->hi >= 0 ? &hi : NULL, q->cols, q->ncols, q->f);
  int end = q->hi >= 0 ? q->hi : NSROWS, midway_at = 400;
  for (int p = q->lo >= 0 ? q->lo : 0;; p++) {
    while (p < end && !special_row_due(m, p, q->f))
      p++;
    int rc = sochdb_scan_next(s, out);
    if (p >= end) {
      cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: a row after the last one due (%s)", what, sochdb_strerror(rc));
      break;
    }
    cr_assert_eq(rc, SOCHDB_OK, "%s: the scan ended (%s: %s) where row %d was due", what, sochdb_strerror(rc),
                 sochdb_last_error(), p);
    expect_special_row(out, q, p, m->gen[p], what);
    if (md && p >= midway_at) {
      md->fn(md);
      midway_at = p + 400;
    }
  }
  sochdb_scan_close(s, NULL);
}

/* Every row and column of t unfiltered, then n random queries. */
static void expect_queries(sochdb_txn *t, sochdb_table *tb, const struct model *m, int n, const char *ctx)
{
  struct query all = { -1, -1, { S_ID, S_I, S_D, S_S, S_B }, NSCOLS, NULL };
  expect_special_scan(t, tb, m, &all, ctx, NULL);
  for (int k = 0; k < n; k++) {
    sochdb_filter f = random_filter();
    struct query q = random_query(&f);
    expect_special_scan(t, tb, m, &q, ctx, NULL);
  }
}

static void expect_queries_now(sochdb *db, sochdb_table *tb, const struct model *m, int n, const char *ctx)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_queries(t, tb, m, n, ctx);
  sochdb_abort(t);
}

/* Every row found again by filters equal to its own primary key and its
** own d: where the row is the first or the last of its block, the filter's
** bounds are the block's min or max, and min/max must keep the block. */
static void expect_rows_found_by_their_values(sochdb_txn *t, sochdb_table *tb, const struct model *m, const char *ctx)
{
  static const unsigned cols[] = { S_ID, S_D };
  for (int p = 0; p < NSROWS; p++) {
    for (size_t i = 0; m->gen[p] >= 0 && i < 2; i++) {
      uint8_t buf[128];
      sochdb_filter f = { .column = cols[i], .op = SOCHDB_EQ };
      special_value(p, m->gen[p], cols[i], &f.value, buf);
      struct query q = { p, p + 1, { S_ID, cols[i] }, 2, &f };
      if (!f.value.is_null)
        expect_special_scan(t, tb, m, &q, ctx, NULL);
    }
  }
}

/* n random writes of t over m's rows, into own (m with them). */
static void write_own_rows(sochdb_txn *t, sochdb_table *tb, const struct model *m, struct model *own, int n, int g)
{
  *own = *m;
  for (int k = 0; k < n; k++)
    write_special(t, tb, own, (int)(rnd() % NSROWS), rnd() % 4 == 0 ? -1 : g + k % 37);
}

/* Random projected and filtered scans of special values equal the model
** row by row, over rows in memtables, L0 and deeper files, in snapshots
** held across compactions, merged with own writes, and once the files
** are compacted so that blocks are read whole. Filters and min/max
** skipping must agree on NULL, NaN, -0.0 and the extremes, or a block is
** skipped that holds a row due, or a row passes that should not. */
Test(table, random_filtered_scans_of_special_values_read_as_the_model_says)
{
  static struct model m, held[3], own;
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_special(db, &m);
  sochdb_txn *snap[3];
  int nheld = 0;
  char what[64];
  for (int g = 1; g <= 30; g++) {
    commit_random_rows(db, tb, &m, write_special, g, g == 1 ? NSROWS : 100 + (int)(rnd() % 600));
    if (g % 4 == 0)
      tu_rotate(db);
    if (g % 10 == 0)
      tu_compact_files(db);
    if (g % 9 == 0) {
      held[nheld] = m;
      snap[nheld++] = tu_begin(db, SOCHDB_TXN_READONLY);
    }
    if (g % 3 == 0) {
      snprintf(what, sizeof what, "after round %d", g);
      expect_queries_now(db, tb, &m, 25, what);
    }
  }
  for (int h = 0; h < nheld; h++) {
    snprintf(what, sizeof what, "held snapshot %d", h);
    expect_queries(snap[h], tb, &held[h], 25, what);
    sochdb_abort(snap[h]);
  }
  sochdb_txn *t = tu_begin(db, 0);
  write_own_rows(t, tb, &m, &own, 400, 500);
  expect_queries(t, tb, &own, 25, "own writes");
  sochdb_abort(t);
  tu_full_compaction(db);
  expect_queries_now(db, tb, &m, 40, "fully compacted");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_rows_found_by_their_values(t, tb, &m, "fully compacted, a filter on a row's own value");
  sochdb_abort(t);
  t = tu_begin(db, 0);
  write_own_rows(t, tb, &m, &own, 50, 900);
  expect_queries(t, tb, &own, 25, "own writes over blocks read whole");
  sochdb_abort(t);
  sochdb_scan_stats st;
  cr_assert_eq(sochdb_scan_stats_get(db, &st), SOCHDB_OK, "scan stats");
  cr_assert(st.blocks_skipped > 0 && st.blocks_direct > 0, "no block skipped (%llu) or read whole (%llu): the test "
            "shows less than it should", (unsigned long long)st.blocks_skipped, (unsigned long long)st.blocks_direct);
  sochdb_table_close(tb);
  tu_close();
}

/* Another process's work, midway through a scan: a commit, a rotation
** (the full memtables get flushed), now and then a full compaction that
** deletes the files the scan reads; and own writes of the scan's
** transaction, made after the scan opened, which it must not see. */
static void commit_and_compact(struct midway *md)
{
  static struct model unseen;
  md->times++;
  commit_random_rows(md->db, md->tb, md->m, write_special, 100 + 20 * md->pass + md->times, 300);
  for (int k = 0; md->t && k < 20; k++)
    write_special(md->t, md->tb, &unseen, (int)(rnd() % NSROWS), rnd() % 2 ? -1 : 800 + k);
  tu_rotate(md->db);
  if (md->times % 3 == 0)
    tu_compact_files(md->db);
}

/* A scan open while others commit, memtables are flushed and compactions
** delete the files it reads keeps returning its snapshot's rows, filtered
** or not: its transaction holds the files of its view. The read-write
** passes merge own writes made before the scan opened. */
Test(table, an_open_scan_keeps_its_snapshot_while_its_files_are_compacted_away)
{
  static struct model m, at;
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_special(db, &m);
  for (int g = 1; g <= 8; g++) {
    commit_random_rows(db, tb, &m, write_special, g, g == 1 ? NSROWS : 400);
    if (g % 3 == 0)
      tu_rotate(db);
  }
  /* filters that pass most rows, or the scan would be over before anything happened */
  static const sochdb_filter filters[] = {
    { .column = S_D, .op = SOCHDB_GT, .value = { .f64 = -300.0 } },
    { .column = S_I, .op = SOCHDB_GE, .value = { .i64 = 0 } },
    { .column = S_S, .op = SOCHDB_BETWEEN, .value = { .bytes = "s", .len = 1 }, .value2 = { .bytes = "t", .len = 1 } },
    { .column = S_ID, .op = SOCHDB_GE, .value = { .i64 = -1000003 * (NSROWS / 4) } },
  };
  for (int pass = 0; pass < 6; pass++) {
    int rw = pass % 2;
    sochdb_txn *t = tu_begin(db, rw ? 0 : SOCHDB_TXN_READONLY);
    if (rw)
      write_own_rows(t, tb, &m, &at, 150, 700);
    else
      at = m;
    struct query q = { -1, -1, { S_ID, S_D, S_S }, 3, pass < 2 ? NULL : &filters[pass - 2] };
    struct midway md = { commit_and_compact, db, tb, rw ? t : NULL, &m, pass, 0 };
    char what[32];
    snprintf(what, sizeof what, "pass %d", pass);
    expect_special_scan(t, tb, &at, &q, what, &md);
    cr_assert_geq(md.times, 3, "%s: the scan was interrupted %d times only", what, md.times);
    sochdb_abort(t);
  }
  expect_queries_now(db, tb, &m, 10, "after the passes");
  sochdb_table_close(tb);
  tu_close();
}

/* ---- bytes primary keys of every shape -------------------------------------------- */

#define NBPK 1500

static struct tu_key bpk[NBPK];

/* The i-th primary key made, before sorting, into b; its length. Plain
** ones, the same extended by 0x00 (a prefix of one another), ones of 0xFF
** 0xFF ... (the bytes every row key starts with), of 0x00 ... and single
** bytes, the empty key, and long ones up to SOCHDB_MAX_PK. */
static size_t shaped_pk(int i, uint8_t *b)
{
  size_t n;
  switch (i % 5) {
  case 0:
    return (size_t)snprintf((char *)b, 16, "p%05d", i);
  case 1:
    n = shaped_pk(i - 1, b);
    b[n++] = 0;
    return n;
  case 2:
    b[0] = 0xFF, b[1] = 0xFF, b[2] = (uint8_t)(i >> 8), b[3] = (uint8_t)i;
    return 4;
  case 3:
    if (i == 3)
      return 0;
    if (i % 7 == 3) {
      b[0] = (uint8_t)(i / 7);
      return 1;
    }
    b[0] = 0, b[1] = (uint8_t)(i >> 8), b[2] = (uint8_t)i;
    return 3;
  default:
    n = i % 50 == 4 ? SOCHDB_MAX_PK : 100 + (size_t)i % 500;
    memset(b, 'q', n);
    b[n - 2] = (uint8_t)(i >> 8), b[n - 1] = (uint8_t)i;
    return n;
  }
}

static const sochdb_column BCOLS[3] = {
  { "pk", SOCHDB_BYTES, 0 }, { "n", SOCHDB_INT64, 0 }, { "s", SOCHDB_STRING, SOCHDB_NULLABLE },
};

/* Row p at generation g: n tells the row and generation apart, s is NULL
** for every third generation. */
static void write_bytes_row(sochdb_txn *t, sochdb_table *tb, struct model *m, int p, int g)
{
  char s[16];
  int sl = snprintf(s, sizeof s, "g%d", g);
  sochdb_value v[3] = { { .bytes = bpk[p].p, .len = bpk[p].n }, { .i64 = (int64_t)p * 3 + g },
                        { .is_null = g % 3 == 0, .bytes = s, .len = (size_t)sl } };
  int rc = g < 0 ? sochdb_row_delete(t, tb, &v[0]) : sochdb_row_put(t, tb, v);
  cr_assert_eq(rc, SOCHDB_OK, "write of primary key %d: %s (%s)", p, sochdb_strerror(rc), sochdb_last_error());
  m->gen[p] = g;
}

/* A bound into v: primary key i, with 0x00 appended (tweak 1: just after
** it) or its last byte dropped (tweak -1: before it and its extensions);
** NULL for i < 0, no bound. */
static const sochdb_value *pk_bound(int i, int tweak, uint8_t *buf, sochdb_value *v)
{
  if (i < 0)
    return NULL;
  memcpy(buf, bpk[i].p, bpk[i].n);
  *v = (sochdb_value){ .bytes = buf, .len = bpk[i].n };
  if (tweak > 0 && v->len < SOCHDB_MAX_PK)
    buf[v->len++] = 0;
  if (tweak < 0 && v->len > 0)
    v->len--;
  return v;
}

static void expect_bytes_row(const sochdb_value *out, int p, int g, const char *ctx)
{
  cr_assert(out[0].len == bpk[p].n && (!bpk[p].n || memcmp(out[0].bytes, bpk[p].p, bpk[p].n) == 0),
            "%s: a primary key of %zu bytes (order %d to it) where key %d was due", ctx, out[0].len,
            tu_keycmp(out[0].bytes, out[0].len, bpk[p].p, bpk[p].n), p);
  char s[16];
  int sl = snprintf(s, sizeof s, "g%d", g);
  cr_assert(out[1].i64 == (int64_t)p * 3 + g && out[2].is_null == (g % 3 == 0) &&
                (out[2].is_null || (out[2].len == (size_t)sl && memcmp(out[2].bytes, s, (size_t)sl) == 0)),
            "%s: primary key %d: not generation %d's row", ctx, p, g);
}

/* A scan of [lo, hi) (NULL: open) returns exactly the rows of m there. */
static void expect_bytes_scan(sochdb_txn *t, sochdb_table *tb, const struct model *m, const sochdb_value *lo,
                              const sochdb_value *hi, const char *ctx)
{
  char what[128];
  snprintf(what, sizeof what, "%s, bounds of %zd and %zd bytes", ctx, lo ? (ssize_t)lo->len : -1,
           hi ? (ssize_t)hi->len : -1);
  sochdb_scan *s = open_scan(t, tb, lo, hi, NULL, 0, NULL);
  sochdb_value out[3];
  for (int p = 0;; p++) {
    while (p < NBPK && (m->gen[p] < 0 || (lo && tu_keycmp(bpk[p].p, bpk[p].n, lo->bytes, lo->len) < 0)))
      p++;
    int due = p < NBPK && (!hi || tu_keycmp(bpk[p].p, bpk[p].n, hi->bytes, hi->len) < 0);
    int rc = sochdb_scan_next(s, out);
    if (!due) {
      cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: a row after the last one due (%s)", what, sochdb_strerror(rc));
      break;
    }
    cr_assert_eq(rc, SOCHDB_OK, "%s: the scan ended (%s: %s) where key %d was due", what, sochdb_strerror(rc),
                 sochdb_last_error(), p);
    expect_bytes_row(out, p, m->gen[p], what);
  }
  sochdb_scan_close(s, NULL);
}

/* Every row of t, then n scans between random bounds. */
static void expect_bytes_scans(sochdb_txn *t, sochdb_table *tb, const struct model *m, int n, const char *ctx)
{
  static uint8_t lb[SOCHDB_MAX_PK + 1], hb[SOCHDB_MAX_PK + 1];
  expect_bytes_scan(t, tb, m, NULL, NULL, ctx);
  for (int k = 0; k < n; k++) {
    sochdb_value l, h;
    int lo = rnd() % 3 ? (int)(rnd() % NBPK) : -1, hi = rnd() % 3 ? (int)(rnd() % NBPK) : -1;
    expect_bytes_scan(t, tb, m, pk_bound(lo, (int)(rnd() % 3) - 1, lb, &l), pk_bound(hi, (int)(rnd() % 3) - 1, hb, &h),
                      ctx);
  }
}

static void expect_bytes_scans_now(sochdb *db, sochdb_table *tb, const struct model *m, int n, const char *ctx)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_bytes_scans(t, tb, m, n, ctx);
  sochdb_abort(t);
}

/* Bytes primary keys of every shape (the empty one, 0x00 and 0xFF bytes,
** keys that are prefixes of others, keys of SOCHDB_MAX_PK bytes) scan in
** byte order between bounds on, just before and just after keys, in
** memtables and files, a held snapshot, own writes, and after a full
** compaction. A row key is the table's prefix and the primary key: scan
** bounds and block boundaries go wrong, if anywhere, at such keys. */
Test(table, bytes_primary_keys_of_every_shape_scan_as_the_model_says)
{
  static uint8_t pool[1u << 20];
  static struct model m, held, own;
  tu_make_keys(bpk, NBPK, shaped_pk, SOCHDB_MAX_PK, pool, sizeof pool);
  rnd_state = tu_seed(88172645463325252ull);
  m.n = NBPK;
  for (int p = 0; p < NBPK; p++)
    m.gen[p] = -1;
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table_of(db, "b", BCOLS, 3);
  sochdb_txn *snap = NULL;
  for (int g = 1; g <= 24; g++) {
    commit_random_rows(db, tb, &m, write_bytes_row, g, g == 1 ? NBPK : 200);
    if (g % 4 == 0)
      tu_rotate(db);
    if (g % 8 == 0)
      tu_compact_files(db);
    if (g == 10) {
      held = m;
      snap = tu_begin(db, SOCHDB_TXN_READONLY);
    }
    if (g % 4 == 1) {
      char what[32];
      snprintf(what, sizeof what, "after round %d", g);
      expect_bytes_scans_now(db, tb, &m, 30, what);
    }
  }
  expect_bytes_scans(snap, tb, &held, 30, "held snapshot");
  sochdb_abort(snap);
  sochdb_txn *t = tu_begin(db, 0);
  own = m;
  for (int k = 0; k < 100; k++)
    write_bytes_row(t, tb, &own, (int)(rnd() % NBPK), rnd() % 3 == 0 ? -1 : 99);
  expect_bytes_scans(t, tb, &own, 30, "own writes");
  sochdb_abort(t);
  tu_full_compaction(db);
  expect_bytes_scans_now(db, tb, &m, 30, "compacted");
  sochdb_table_close(tb);
  tu_close();
}

/* ---- a column added to a table with rows ------------------------------------------ */

#define NADDED 3000

/* Column x of row i: NULL for the rows written before x was added (the
** even ones) and for every fifth of the others. */
static sochdb_value added_x(int i) { return (sochdb_value){ .is_null = i % 2 == 0 || i % 5 == 0, .f64 = i / 2.0 }; }

static int added_row_due(int i, const sochdb_filter *f)
{
  sochdb_value x = added_x(i);
  return !f || filter_passes(SOCHDB_DOUBLE, f, &x);
}

/* A scan of every row, filtered on x by f (may be NULL), of the columns id
** and a and, with_x, x. */
static void expect_added_column_scan(sochdb_txn *t, sochdb_table *tb, const sochdb_filter *f, int with_x,
                                     const char *ctx)
{
  static const unsigned cols[3] = { 0, 1, 2 };
  sochdb_scan *s = open_scan(t, tb, NULL, NULL, cols, with_x ? 3 : 2, f);
  sochdb_value out[3] = { { 0 } };
  for (int i = 0;; i++) {
    while (i < NADDED && !added_row_due(i, f))
      i++;
    int rc = sochdb_scan_next(s, out);
    if (i >= NADDED) {
      cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: a row after the last one due (%s)", ctx, sochdb_strerror(rc));
      break;
    }
    cr_assert_eq(rc, SOCHDB_OK, "%s: the scan ended (%s: %s) where row %d was due", ctx, sochdb_strerror(rc),
                 sochdb_last_error(), i);
    sochdb_value x = added_x(i);
    cr_assert(out[0].i64 == i && out[1].i64 == i * 3 && (!with_x || value_eq(SOCHDB_DOUBLE, &out[2], &x)),
              "%s: row %lld (null x %d) where row %d was due", ctx, (long long)out[0].i64, out[2].is_null, i);
  }
  sochdb_scan_close(s, NULL);
}

/* Rows written before and after a column was added, in memtables, in
** files of either schema, then together in blocks after a full compaction:
** filters on the new column return the rows due (a block without the
** column holds only NULLs, which no filter passes, and may be skipped), an
** unfiltered scan reads NULL for the old rows, and a handle opened before
** the change still scans every row. */
Test(table, rows_from_before_and_after_an_added_column_scan_and_filter_by_it)
{
  static const sochdb_column cols[3] = {
    { "id", SOCHDB_INT64, 0 }, { "a", SOCHDB_INT64, 0 }, { "x", SOCHDB_DOUBLE, SOCHDB_NULLABLE },
  };
  static const sochdb_filter filters[] = {
    { .column = 2, .op = SOCHDB_GE, .value = { .f64 = 100.0 } },
    { .column = 2, .op = SOCHDB_LT, .value = { .f64 = 700.0 } },
    { .column = 2, .op = SOCHDB_BETWEEN, .value = { .f64 = 100.0 }, .value2 = { .f64 = 900.0 } },
    { .column = 2, .op = SOCHDB_GT, .value = { .f64 = -1e300 } },
  };
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *old = create_table_of(db, "w", cols, 2), *tb = NULL;
  sochdb_txn *t = tu_begin(db, 0);
  for (int i = 0; i < NADDED; i += 2)
    cr_assert_eq(sochdb_row_put(t, old, (sochdb_value[2]){ { .i64 = i }, { .i64 = i * 3 } }), SOCHDB_OK, "put");
  tu_commit(t, SOCHDB_SYNC, "the rows before");
  tu_rotate(db);
  t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_add_column(t, old, &cols[2]), SOCHDB_OK, "add column: %s", sochdb_last_error());
  cr_assert_eq(sochdb_table_open(t, "w", cols, 3, &tb), SOCHDB_OK, "open: %s", sochdb_last_error());
  for (int i = 1; i < NADDED; i += 2)
    cr_assert_eq(sochdb_row_put(t, tb, (sochdb_value[3]){ { .i64 = i }, { .i64 = i * 3 }, added_x(i) }), SOCHDB_OK,
                 "put");
  tu_commit(t, SOCHDB_SYNC, "the column and the rows after");
  static const char *const stages[] = { "just written", "flushed to files of either schema", "compacted together" };
  for (int stage = 0; stage < 3; stage++) {
    if (stage == 1) {
      tu_rotate(db);
      TU_WAIT_STATS(db, s->memtables_in_use <= 1, "the memtables flushed");
    }
    if (stage == 2)
      tu_full_compaction(db);
    t = tu_begin(db, SOCHDB_TXN_READONLY);
    char what[96];
    for (size_t q = 0; q < sizeof filters / sizeof filters[0]; q++) {
      snprintf(what, sizeof what, "%s, filter %zu", stages[stage], q);
      expect_added_column_scan(t, tb, &filters[q], 1, what);
    }
    expect_added_column_scan(t, tb, NULL, 1, stages[stage]);
    snprintf(what, sizeof what, "%s, the handle of the old schema", stages[stage]);
    expect_added_column_scan(t, old, NULL, 0, what);
    sochdb_abort(t);
  }
  sochdb_table_close(old);
  sochdb_table_close(tb);
  tu_close();
}

/* ---- review: a row of the largest size beside a wider row ------------------------ */

/* A row of exactly SOCHDB_MAX_VALUE bytes, written through a handle opened
** before a column was added, shares a columnar block with a row of the wider
** schema once flushed. The block's reader reassembled every row with the
** block's column count (one type byte more, here), so the row came back one
** byte over SOCHDB_MAX_VALUE and was refused as SOCHDB_CORRUPT: an
** acknowledged row lost to every get and scan, and to compaction. */
Test(table, a_row_of_the_largest_size_reads_back_from_a_block_of_wider_rows)
{
  static const sochdb_column cols[3] = {
    { "id", SOCHDB_INT64, 0 }, { "data", SOCHDB_BYTES, 0 }, { "x", SOCHDB_INT64, SOCHDB_NULLABLE },
  };
  sochdb *db = tu_open(256u << 20, 64u << 20, 10000);
  sochdb_table *old = create_table_of(db, "big", cols, 2), *wide = NULL;
  sochdb_txn *t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_add_column(t, old, &cols[2]), SOCHDB_OK, "add column: %s", sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "add column");
  /* header 2 + 2 types + 1 bitmap byte, the id 8 bytes, the length 4 bytes */
  const size_t len = SOCHDB_MAX_VALUE - 17;
  uint8_t *data = malloc(len);
  cr_assert_not_null(data);
  for (size_t i = 0; i < len; i++)
    data[i] = (uint8_t)(i * 7 + i / 251);
  t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_open(t, "big", cols, 3, &wide), SOCHDB_OK, "open: %s", sochdb_last_error());
  cr_assert_eq(sochdb_row_put(t, wide, (sochdb_value[3]){ { .i64 = 1 }, { .bytes = "a", .len = 1 }, { .i64 = 5 } }),
               SOCHDB_OK, "the wide row: %s", sochdb_last_error());
  int rc = sochdb_row_put(t, old, (sochdb_value[2]){ { .i64 = 2 }, { .bytes = data, .len = len } });
  cr_assert_eq(rc, SOCHDB_OK, "a row of %u bytes: %s (%s)", SOCHDB_MAX_VALUE, sochdb_strerror(rc),
               sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "the rows");
  for (int stage = 0; stage < 2; stage++) {
    if (stage == 0) {
      tu_rotate(db);
      TU_WAIT_STATS(db, s->memtables_in_use <= 1, "the memtable flushed");
    } else {
      tu_compact_files(db);
    }
    t = tu_begin(db, SOCHDB_TXN_READONLY);
    sochdb_value out[3];
    rc = sochdb_row_get(t, old, &(sochdb_value){ .i64 = 2 }, NULL, 0, out);
    cr_assert_eq(rc, SOCHDB_OK, "stage %d: the largest row: %s (%s)", stage, sochdb_strerror(rc), sochdb_last_error());
    cr_assert(out[1].len == len && memcmp(out[1].bytes, data, len) == 0, "stage %d: its bytes", stage);
    rc = sochdb_row_get(t, wide, &(sochdb_value){ .i64 = 2 }, NULL, 0, out);
    cr_assert_eq(rc, SOCHDB_OK, "stage %d: through the wide handle: %s (%s)", stage, sochdb_strerror(rc),
                 sochdb_last_error());
    cr_assert(out[2].is_null, "stage %d: the added column reads NULL", stage);
    sochdb_scan *s = open_scan(t, wide, NULL, NULL, NULL, 0, NULL);
    int n = 0;
    while ((rc = sochdb_scan_next(s, out)) == SOCHDB_OK)
      n++;
    cr_assert_eq(rc, SOCHDB_NOTFOUND, "stage %d: a full scan: %s (%s)", stage, sochdb_strerror(rc),
                 sochdb_last_error());
    cr_assert_eq(n, 2, "stage %d: both rows", stage);
    sochdb_scan_close(s, NULL);
    sochdb_abort(t);
  }
  free(data);
  sochdb_table_close(old);
  sochdb_table_close(wide);
  tu_close();
}

/* ---- review: a scan reads no other table's columns ------------------------------- */

/* A one-column scan of table a, whose one row sits in the block before table
** b's first one, read all eight columns of b's block (about 15 KB here, for
** a row of a few bytes): the iterator reads the next block before it sees
** that the scan is over, and a projection read another table's columnar
** block whole. It reads that block's keys only now: no more than the same
** one-column read of b's first row costs, plus a's own block. */
Test(table, a_projected_scan_reads_no_column_of_the_next_table)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *a = create_table(db, "a");
  sochdb_table *b = create_table(db, "b");
  sochdb_txn *t = tu_begin(db, 0);
  put_row(t, a, 1, 1);
  tu_commit(t, SOCHDB_SYNC, "a row of a");
  fill(db, b, 20000, 1, 100);
  tu_full_compaction(db);
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  unsigned one = C_QTY;
  sochdb_scan_stats sa = scan_cost(t, a, &one, 1);
  sochdb_value lo = pk_of(0), hi = pk_of(1), row;
  sochdb_scan *s = open_scan(t, b, &lo, &hi, &one, 1, NULL);
  cr_assert_eq(sochdb_scan_next(s, &row), SOCHDB_OK, "b's first row");
  cr_assert_eq(sochdb_scan_next(s, &row), SOCHDB_NOTFOUND, "b's first row only");
  sochdb_scan_stats sb;
  sochdb_scan_close(s, &sb);
  sochdb_abort(t);
  cr_assert_eq(sa.rows, 1, "a's row");
  cr_assert_lt(sa.bytes_read, sb.bytes_read + 512, "one column of a read %llu bytes; the same column of b's first "
               "row %llu", (unsigned long long)sa.bytes_read, (unsigned long long)sb.bytes_read);
  cr_assert_lt(sa.bytes_decompressed, sb.bytes_decompressed + 512, "decompressed: %llu; b's first row %llu",
               (unsigned long long)sa.bytes_decompressed, (unsigned long long)sb.bytes_decompressed);
  sochdb_table_close(a);
  sochdb_table_close(b);
  tu_close();
}

/* sochdb_close with a scan open: its transaction is aborted, and the scan
** (like an iterator) says so, SOCHDB_INVALID, instead of reading the freed
** handle (a heap-use-after-free under ASan before), and can still be closed. */
Test(table, a_scan_outliving_its_handle_is_refused_and_closes)
{
  sochdb *db = tu_open(REG, MT, 5000);
  sochdb_table *tb = create_table(db, "t");
  fill(db, tb, 10, 1, 10);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_scan *s;
  cr_assert_eq(sochdb_table_scan(t, tb, NULL, NULL, NULL, 0, NULL, &s), SOCHDB_OK, "scan");
  sochdb_iter *it;
  cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter_open");
  sochdb_value row[NCOLS];
  cr_assert_eq(sochdb_scan_next(s, row), SOCHDB_OK, "the first row");
  tu_close();
  cr_assert_eq(sochdb_scan_next(s, row), SOCHDB_INVALID, "a scan whose handle was closed");
  const void *k, *v;
  size_t kl, vl;
  cr_assert_eq(sochdb_iter_next(it, &k, &kl, &v, &vl), SOCHDB_INVALID, "an iterator whose handle was closed");
  sochdb_scan_stats st;
  sochdb_scan_close(s, &st);
  cr_assert_eq(st.rows, 1, "the scan's own statistics");
  sochdb_iter_close(it);
  sochdb_table_close(tb);
}
