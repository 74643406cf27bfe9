/*
** test_tables.c — the process's table of mapped SSTables (src/tables.c): a
** get searches level 0 newest first, then every deeper level that holds a
** file, down to the deepest; the shallower version wins; a newly published
** file list is taken by the next transaction; a file that failed to open is
** opened again (by the next list's set, or by the same list's a second on),
** and until then fails only the gets of keys it may hold.
**
** The database runs without sochdbd, so that nothing but the test publishes
** file lists: the tests write SSTables with the builder and publish lists
** naming them at the levels they choose (fl_publish, as the daemon does).
*/
#include <criterion/criterion.h>

#include "testutil.h"

#include "filenames.h"
#include "filelist.h"
#include "internal.h"
#include "sstfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

TestSuite(tables, .init = tu_setup_without_daemon, .fini = tu_teardown);

#define REGION (64u << 20)
#define MEMTABLE (4u << 20)

/* One entry of a table to write: key, seq, value (NULL: a tombstone). */
struct entry {
  const char *key;
  uint64_t    seq;
  const char *val;
};

/* Write DIR/<number>.sst holding entries (in key order, newest version of a
** key first) and describe it for a list at level. */
static struct fl_file write_table(uint64_t number, unsigned level, const struct entry *e, size_t n)
{
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, SST_BLOCK_MIN), SOCHDB_OK);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(sst_builder_add(&b, e[i].key, strlen(e[i].key), e[i].seq, e[i].val ? SST_PUT : SST_DEL, e[i].val,
                                 e[i].val ? strlen(e[i].val) : 0),
                 SOCHDB_OK, "adding %s", e[i].key);
  uint8_t *buf;
  size_t len;
  cr_assert_eq(sst_builder_finish(&b, &buf, &len), SOCHDB_OK);
  sst_builder_free(&b);
  char path[4200];
  cr_assert_eq(sst_file_path(path, sizeof path, tu_dir(), number), SOCHDB_OK);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  cr_assert_geq(fd, 0, "create %s", path);
  cr_assert_eq(write(fd, buf, len), (ssize_t)len);
  close(fd);
  free(buf);
  return (struct fl_file){ .number = number, .size = len, .level = level };
}

/* A database whose published sequence is past every seq the tables use. */
static sochdb *open_db(void)
{
  sochdb *db = tu_open(REGION, MEMTABLE, 5000);
  for (int i = 0; i < 20; i++)
    tu_commit_kv(db, "zz-unrelated", "x", SOCHDB_ASYNC);
  return db;
}

static void publish(sochdb *db, const struct fl_file *files, uint32_t n)
{
  cr_assert_eq(fl_publish(&db->region, files, n), SOCHDB_OK, "%s", sochdb_last_error());
}

Test(tables, a_get_reaches_the_deepest_level_holding_a_file)
{
  sochdb *db = open_db();
  const struct entry l0[] = { { "a-l0", 5, "zero" } };
  const struct entry l2[] = { { "b-l2", 4, "two" } };
  const struct entry l5[] = { { "c-l5", 3, "five" } };
  const struct entry l7[] = { { "d-l7", 2, "seven" } };
  /* list order: level 0 newest first, then each level by smallest key */
  struct fl_file files[] = { write_table(13, 0, l0, 1), write_table(12, 2, l2, 1), write_table(11, 5, l5, 1),
                             write_table(10, 7, l7, 1) };
  publish(db, files, 4);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "a-l0", "zero", "level 0");
  tu_expect_str(t, "b-l2", "two", "level 2, under an empty level 1");
  tu_expect_str(t, "c-l5", "five", "level 5");
  tu_expect_str(t, "d-l7", "seven", "level 7, the last");
  tu_expect_str(t, "e-none", NULL, "in no file");
  tu_expect_str(t, "b-l1", NULL, "in a gap of level 2's range");
  sochdb_abort(t);
  sochdb_close(db);
}

Test(tables, the_shallower_version_wins)
{
  sochdb *db = open_db();
  const struct entry l1[] = { { "k1", 9, "new" }, { "k2", 9, NULL } };
  const struct entry l4[] = { { "k1", 3, "old" }, { "k2", 3, "old" }, { "k3", 3, "only-old" } };
  struct fl_file files[] = { write_table(21, 1, l1, 2), write_table(20, 4, l4, 3) };
  publish(db, files, 2);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "k1", "new", "level 1 over level 4");
  tu_expect_str(t, "k2", NULL, "a tombstone at level 1 hides level 4's put");
  tu_expect_str(t, "k3", "only-old", "at level 4 only");
  sochdb_abort(t);
  sochdb_close(db);
}

Test(tables, the_next_transaction_takes_a_newly_published_list)
{
  sochdb *db = open_db();
  const struct entry first[] = { { "m", 4, "first" } };
  struct fl_file a[] = { write_table(30, 1, first, 1) };
  publish(db, a, 1);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "m", "first", "the first list");
  tu_expect_str(t, "n", NULL, "not yet published");
  sochdb_abort(t);

  /* the process's set now mirrors the first list; a second one adds a
  ** deeper file and a newer version of m at level 0 */
  const struct entry newer[] = { { "m", 8, "second" } };
  const struct entry deep[] = { { "n", 2, "deep" } };
  struct fl_file b[] = { write_table(32, 0, newer, 1), a[0], write_table(31, 3, deep, 1) };
  publish(db, b, 3);
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "m", "second", "level 0 of the second list");
  tu_expect_str(t, "n", "deep", "level 3 of the second list");
  sochdb_abort(t);
  sochdb_close(db);
}

static void move_table(uint64_t number, const char *from_suffix, const char *to_suffix)
{
  char path[4200], from[4300], to[4300];
  cr_assert_eq(sst_file_path(path, sizeof path, tu_dir(), number), SOCHDB_OK);
  snprintf(from, sizeof from, "%s%s", path, from_suffix);
  snprintf(to, sizeof to, "%s%s", path, to_suffix);
  cr_assert_eq(rename(from, to), 0, "rename %s: %s", from, strerror(errno));
}

/* A file that could not be opened is not kept failed in the process: the
** next list's set opens it again, and so does the same list's set once
** its retry time (a second) has passed. Here the file is missing, then
** restored; too many mappings or no memory pass the same way. */
Test(tables, a_file_that_failed_to_open_is_opened_again)
{
  sochdb *db = open_db();
  const struct entry e[] = { { "k", 4, "v" } };
  struct fl_file a[] = { write_table(40, 1, e, 1) };
  move_table(40, "", ".away");
  publish(db, a, 1);
  char buf[8];
  cr_assert_eq(tu_read_str(db, "k", buf, sizeof buf), SOCHDB_CORRUPT, "the file is missing");
  move_table(40, ".away", "");
  publish(db, a, 1);   /* the same file in a new list */
  cr_assert_eq(tu_read_str(db, "k", buf, sizeof buf), SOCHDB_OK, "the next list's set: %s", sochdb_last_error());

  const struct entry e2[] = { { "k2", 5, "v2" } };
  struct fl_file b[] = { write_table(41, 0, e2, 1), a[0] };
  move_table(41, "", ".away");
  publish(db, b, 2);
  cr_assert_eq(tu_read_str(db, "k2", buf, sizeof buf), SOCHDB_CORRUPT, "the second file is missing");
  move_table(41, ".away", "");
  tu_sleep_ms(1100);   /* past the failed set's retry time; no new list */
  cr_assert_eq(tu_read_str(db, "k2", buf, sizeof buf), SOCHDB_OK, "the same list, a second later: %s",
               sochdb_last_error());
  cr_assert_eq(tu_read_str(db, "k", buf, sizeof buf), SOCHDB_OK);
  sochdb_close(db);
}

/* A level's file that cannot be opened fails only the gets of keys it may
** hold (between its neighbours' ranges): the level's other files answer for
** their own keys. The binary search took it for a file holding every key,
** so every key after it in the level reported its error (noted by an
** independent review). */
Test(tables, a_file_that_cannot_be_opened_fails_only_the_keys_it_may_hold)
{
  sochdb *db = open_db();
  const struct entry a[] = { { "a1", 3, "va1" }, { "a2", 3, "va2" } };
  const struct entry b[] = { { "b1", 3, "vb1" }, { "b2", 3, "vb2" } };
  const struct entry c[] = { { "c1", 3, "vc1" }, { "c2", 3, "vc2" } };
  const struct entry d[] = { { "d1", 3, "vd1" }, { "d2", 3, "vd2" } };
  const struct entry e[] = { { "e1", 3, "ve1" } };
  struct fl_file files[] = { write_table(50, 1, a, 2), write_table(51, 1, b, 2), write_table(52, 1, c, 2),
                             write_table(53, 1, d, 2), write_table(54, 1, e, 1) };
  move_table(52, "", ".away");
  publish(db, files, 5);
  static const struct { const char *key, *want; } readable[] = {
    { "a1", "va1" }, { "a3", NULL }, { "b2", "vb2" }, { "d1", "vd1" }, { "d2", "vd2" }, { "e1", "ve1" }, { "f", NULL },
  };
  char buf[8];
  for (size_t i = 0; i < sizeof readable / sizeof readable[0]; i++) {
    int rc = tu_read_str(db, readable[i].key, buf, sizeof buf);
    cr_assert_eq(rc, readable[i].want ? SOCHDB_OK : SOCHDB_NOTFOUND, "%s beside the missing file: %s (%s)",
                 readable[i].key, sochdb_strerror(rc), sochdb_last_error());
    if (readable[i].want)
      cr_assert_str_eq(buf, readable[i].want, "%s", readable[i].key);
  }
  static const char *const maybe_in_it[] = { "c1", "c2", "b3", "c0", "d0" };
  for (size_t i = 0; i < sizeof maybe_in_it / sizeof maybe_in_it[0]; i++)
    cr_assert_eq(tu_read_str(db, maybe_in_it[i], buf, sizeof buf), SOCHDB_CORRUPT, "%s may be in the missing file",
                 maybe_in_it[i]);
  sochdb_close(db);
}

/* ---- review: rows of a crafted file against the table's schema ------------------ */

/* A row of table `table` (id int64, name string, q int64 nullable): name
** NULL when null_name, its id column `id` (the key says `pk`). */
static void add_row(struct sst_builder *b, uint32_t table, int64_t pk, int64_t id, int null_name, uint64_t seq)
{
  static const uint8_t types[3] = { SOCHDB_INT64, SOCHDB_STRING, SOCHDB_INT64 };
  uint8_t key[32], val[64];
  rowfmt_row_prefix(key, table);
  sochdb_value k = { .i64 = pk };
  size_t klen = ROWFMT_PREFIX_LEN + rowfmt_pk_encode(key + ROWFMT_PREFIX_LEN, SOCHDB_INT64, &k);
  sochdb_value v[3] = { { .i64 = id }, { .is_null = null_name, .bytes = "nm", .len = 2 }, { .i64 = pk * 2 } };
  size_t vlen = rowfmt_encode(val, 3, types, v);
  cr_assert_eq(sst_builder_add(b, key, klen, seq, SST_PUT, val, vlen), SOCHDB_OK, "add row %lld", (long long)pk);
}

/* An SSTable whose checksums hold but whose row 2 has NULL in a column that
** is not nullable: a scan and a get handed out the NULL as if it were data
** (the API promises none there), where a damaged file is SOCHDB_CORRUPT. */
Test(tables, a_row_with_null_in_a_column_that_is_not_nullable_is_corrupt)
{
  static const sochdb_column cols[3] = {
    { "id", SOCHDB_INT64, 0 }, { "name", SOCHDB_STRING, 0 }, { "q", SOCHDB_INT64, SOCHDB_NULLABLE },
  };
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  cr_assert_eq(sochdb_table_create(t, "t", cols, 3), SOCHDB_OK, "create: %s", sochdb_last_error());
  tu_commit(t, SOCHDB_ASYNC, "create");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *tb = NULL;
  cr_assert_eq(sochdb_table_open(t, "t", cols, 3, &tb), SOCHDB_OK, "open");
  uint32_t id;
  const sochdb_column *c;
  size_t n;
  sochdb_table_schema(tb, &c, &n, &id);
  sochdb_abort(t);

  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, SST_BLOCK_MIN), SOCHDB_OK);
  for (int64_t pk = 1; pk <= 3; pk++)
    add_row(&b, id, pk, pk, pk == 2, 4);
  uint8_t *buf;
  size_t len;
  cr_assert_eq(sst_builder_finish(&b, &buf, &len), SOCHDB_OK);
  sst_builder_free(&b);
  char path[4200];
  cr_assert_eq(sst_file_path(path, sizeof path, tu_dir(), 60), SOCHDB_OK);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, buf, len), (ssize_t)len);
  close(fd);
  free(buf);
  struct fl_file f = { .number = 60, .size = len, .level = 1 };
  publish(db, &f, 1);

  t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int proj = 0; proj < 2; proj++) {   /* every column; the name alone (its block read whole) */
    unsigned one = 1;
    sochdb_scan *s = NULL;
    cr_assert_eq(sochdb_table_scan(t, tb, NULL, NULL, proj ? &one : NULL, proj ? 1 : 0, NULL, &s), SOCHDB_OK);
    sochdb_value out[3];
    int rc, rows = 0;
    while ((rc = sochdb_scan_next(s, out)) == SOCHDB_OK) {
      cr_assert(!out[proj ? 0 : 1].is_null, "scan (projection %d): row %d hands out NULL in 'name', which is not "
                "nullable", proj, rows);
      rows++;
    }
    cr_assert_eq(rc, SOCHDB_CORRUPT, "scan (projection %d): %s after %d rows", proj, sochdb_strerror(rc), rows);
    sochdb_scan_close(s, NULL);
  }
  sochdb_value pk = { .i64 = 2 }, out[3];
  int rc = sochdb_row_get(t, tb, &pk, NULL, 0, out);
  cr_assert_eq(rc, SOCHDB_CORRUPT, "get: %s (name NULL %d)", sochdb_strerror(rc), out[1].is_null);
  sochdb_abort(t);
  sochdb_table_close(tb);
  sochdb_close(db);
}
