/*
** test_store.c — the daemon's SSTable writer (daemon/store.c): a table
** appended in pieces of any size reaches its file byte for byte, in writes
** of whole, aligned pieces and one shorter last write: 2 MiB for a
** compaction's output, so that the page cache holds it in 2 MiB folios
** that readers map with one TLB entry each, 256 KiB for a flush's table,
** so that it gets no 2 MiB folio. The writes are observed through the test
** fault "sst.write": failing the k-th write reports its size and offset.
** The write-behind's errors (fault "sst.writeback") fail the table unless
** they leave its pages for the fdatasync.
*/
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filenames.h"
#include "filelist.h"
#include "internal.h"
#include "sochdb.h"
#include "store.h"
#include "testhooks.h"
#include "testutil.h"

TestSuite(store, .init = tu_setup_without_daemon, .fini = tu_teardown, .timeout = 60);

#define KIB 1024u
#define MIB (1024u * 1024u)

/* A store just good enough for the SSTable writer: its directory and region. */
static struct store open_store(void)
{
  sochdb *db = tu_open(8u << 20, 1u << 20, 0);
  struct store s;
  memset(&s, 0, sizeof s);
  s.db = db;
  s.r = &db->region;
  return s;
}

static void fill_pattern(uint8_t *p, size_t n, size_t from)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)((from + i) * 2654435761u >> 13);
}

/* Append pieces[0..n) (sizes, pattern-filled), then complete with tail. */
static int write_table(struct store *s, uint64_t number, enum sst_pieces how, const size_t *pieces, int n,
                       size_t tail, size_t *total)
{
  struct sst_file_out o;
  cr_assert_eq(store_sst_create(s, number, how, &o), SOCHDB_OK, "%s", sochdb_last_error());
  size_t at = 0;
  int rc = SOCHDB_OK;
  for (int i = 0; i < n && rc == SOCHDB_OK; i++) {
    uint8_t *buf = malloc(pieces[i] ? pieces[i] : 1);
    fill_pattern(buf, pieces[i], at);
    rc = store_sst_append(&o, buf, pieces[i]);
    at += pieces[i];
    free(buf);
  }
  uint8_t *t = malloc(tail ? tail : 1);
  fill_pattern(t, tail, at);
  if (rc == SOCHDB_OK)
    rc = store_sst_complete(s, &o, t, tail);
  else
    store_sst_abandon(&o);
  free(t);
  *total = at + tail;
  return rc;
}

/* The daemon's whole store on a fresh database (tu_close ends it). */
static sochdb *open_daemon_store(struct store *s)
{
  sochdb *db = tu_open(8u << 20, 1u << 20, 0);
  cr_assert_eq(store_open(s, db), SOCHDB_OK, "%s", sochdb_last_error());
  return db;
}

/* A small table under the store's next number: its rc, *number, *total. */
static int write_small_table(struct store *s, uint64_t *number, size_t *total)
{
  static const size_t pieces[] = { 5000 };
  *number = store_new_file_number(s);
  return write_table(s, *number, SST_SMALL_PIECES, pieces, 1, 100, total);
}

static void expect_file(uint64_t number, size_t total)
{
  char path[4300];
  snprintf(path, sizeof path, "%s/%06llu.sst", tu_dir(), (unsigned long long)number);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s exists once complete", path);
  uint8_t *got = malloc(total + 1), *want = malloc(total + 1);
  size_t n = fread(got, 1, total + 1, f);
  fclose(f);
  cr_assert_eq(n, total, "%s holds %zu bytes, %zu were appended", path, n, total);
  fill_pattern(want, total, 0);
  for (size_t i = 0; i < total; i++)
    cr_assert_eq(got[i], want[i], "byte %zu of %s", i, path);
  free(got);
  free(want);
}

Test(store, a_table_appended_in_pieces_of_any_size_is_written_byte_for_byte)
{
  struct store s = open_store();
  static const size_t a[] = { 1, 7, 1 * MIB, 3 * MIB + 5, 0, 2 * MIB, 2 * MIB - 1, 1, 4 * MIB, 100 };
  static const size_t b[] = { 2 * MIB, 2 * MIB };   /* whole chunks only, then an empty tail */
  static const size_t c[] = { 5 };                  /* shorter than a chunk altogether */
  size_t total;
  for (uint64_t how = SST_SMALL_PIECES; how <= SST_HUGE_PIECES; how++) {
    uint64_t number = 1 + 3 * how;
    cr_assert_eq(write_table(&s, number, how, a, 10, 12345, &total), SOCHDB_OK, "%s", sochdb_last_error());
    expect_file(number, total);
    cr_assert_eq(write_table(&s, number + 1, how, b, 2, 0, &total), SOCHDB_OK, "%s", sochdb_last_error());
    expect_file(number + 1, total);
    cr_assert_eq(write_table(&s, number + 2, how, c, 1, 3, &total), SOCHDB_OK, "%s", sochdb_last_error());
    expect_file(number + 2, total);
  }
  tu_close();
}

/* Write-behind (store.c): an error the writeback start returns, which the
** file may never report again (ext4 drops the pages of a failed delayed
** allocation), fails the table at its completion, and the temporary file
** goes; a refusal that leaves the pages dirty (ENOSYS, as under a seccomp
** filter) does not, and the fdatasync writes the table whole. Injected at
** fault point "sst.writeback", on the second start (8 MiB in). */
static void table_after_writeback_error(int err, int want_rc)
{
  struct store s = open_store();
  static const size_t pieces[] = { 3 * MIB, 3 * MIB, 3 * MIB, 3 * MIB };
  size_t total;
  sochdb_test_fault("sst.writeback", err, 1, 1);
  int rc = write_table(&s, 7, SST_SMALL_PIECES, pieces, 4, 100 * KIB, &total);
  sochdb_test_fault(NULL, 0, 0, 0);
  cr_assert_eq(rc, want_rc, "%s: %s (%s)", strerror(err), sochdb_strerror(rc), sochdb_last_error());
  char path[4300];
  snprintf(path, sizeof path, "%s/000007.sst.tmp", tu_dir());
  cr_assert_neq(access(path, F_OK), 0, "%s is left behind", path);
  if (want_rc == SOCHDB_OK) {
    expect_file(7, total);
  } else {
    cr_assert_not_null(strstr(sochdb_last_error(), "writeback of"), "the error says so: %s", sochdb_last_error());
    snprintf(path, sizeof path, "%s/000007.sst", tu_dir());
    cr_assert_neq(access(path, F_OK), 0, "%s exists after a failed writeback", path);
  }
  tu_close();
}

Test(store, an_error_from_starting_writeback_fails_the_table)
{
  table_after_writeback_error(EIO, SOCHDB_IO);
}

Test(store, a_refused_writeback_start_leaves_the_table_to_its_fdatasync)
{
  table_after_writeback_error(ENOSYS, SOCHDB_OK);
}

/* The k-th write of a table of n pieces (sizes) and a 100 KiB tail fails
** (EIO): its size and offset, from the error. */
static void kth_write_of(struct store *s, enum sst_pieces how, const size_t *pieces, int n, unsigned k,
                         size_t *bytes, unsigned long long *offset)
{
  size_t total;
  sochdb_test_fault("sst.write", EIO, k - 1, 1);
  int rc = write_table(s, 100 + k, how, pieces, n, 100 * KIB, &total);
  sochdb_test_fault(NULL, 0, 0, 0);
  cr_assert_eq(rc, SOCHDB_IO, "write %u fails: %s", k, sochdb_strerror(rc));
  const char *msg = strstr(sochdb_last_error(), ".tmp (");
  cr_assert_not_null(msg, "the error names the write: %s", sochdb_last_error());
  cr_assert_eq(sscanf(msg, ".tmp (%zu bytes at %llu)", bytes, offset), 2, "%s", sochdb_last_error());
}

/* The same for pieces {1 MiB, 1.5 MiB, 5 MiB, 300 KiB}: 8080 KiB in all. */
static void kth_write(struct store *s, enum sst_pieces how, unsigned k, size_t *bytes, unsigned long long *offset)
{
  static const size_t pieces[] = { 1 * MIB, 3 * MIB / 2, 5 * MIB, 300 * KIB };
  kth_write_of(s, how, pieces, 4, k, bytes, offset);
}

Test(store, a_compaction_output_is_written_in_whole_aligned_2_mib_pieces_and_one_shorter_last_write)
{
  struct store s = open_store();
  static const struct { size_t bytes; unsigned long long at; } want[] = {
    { 2 * MIB, 0 }, { 2 * MIB, 2 * MIB }, { 2 * MIB, 4 * MIB },
    { 1 * MIB + 3 * MIB / 2 + 5 * MIB + 300 * KIB + 100 * KIB - 6 * MIB, 6 * MIB },
  };
  for (unsigned k = 1; k <= 4; k++) {
    size_t bytes;
    unsigned long long at;
    kth_write(&s, SST_HUGE_PIECES, k, &bytes, &at);
    cr_assert_eq(bytes, want[k - 1].bytes, "write %u: %zu bytes", k, bytes);
    cr_assert_eq(at, want[k - 1].at, "write %u: at %llu", k, at);
  }
  /* one append of two pieces and a byte, nothing staged: two writes of a piece each */
  static const size_t two_and_a_byte[] = { 4 * MIB + 1 };
  for (unsigned k = 1; k <= 2; k++) {
    size_t bytes;
    unsigned long long at;
    kth_write_of(&s, SST_HUGE_PIECES, two_and_a_byte, 1, k, &bytes, &at);
    cr_assert_eq(bytes, 2 * MIB, "write %u of one 4 MiB append: %zu bytes", k, bytes);
    cr_assert_eq(at, (k - 1) * 2ull * MIB, "write %u of one 4 MiB append: at %llu", k, at);
  }
  tu_close();
}

/* A flush's table: 31 whole 256 KiB pieces, each its own write, even where
** one append holds several (before, a 1 MiB append was one write, which
** the page cache could hold in one 1 MiB folio), and the 144 KiB left. */
Test(store, a_flush_table_is_written_in_whole_aligned_256_kib_pieces_and_one_shorter_last_write)
{
  struct store s = open_store();
  static const struct { unsigned k; size_t bytes; unsigned long long at; } want[] = {
    { 1, 256 * KIB, 0 }, { 2, 256 * KIB, 256 * KIB }, { 5, 256 * KIB, 1 * MIB },
    { 31, 256 * KIB, 30 * 256 * KIB }, { 32, 144 * KIB, 31 * 256 * KIB },
  };
  for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++) {
    size_t bytes;
    unsigned long long at;
    kth_write(&s, SST_SMALL_PIECES, want[i].k, &bytes, &at);
    cr_assert_eq(bytes, want[i].bytes, "write %u: %zu bytes", want[i].k, bytes);
    cr_assert_eq(at, want[i].at, "write %u: at %llu", want[i].k, at);
  }
  tu_close();
}

/* The daemon's store on a directory whose CURRENT was lost: its tables are
** not orphans of a new database. store_open refuses (SOCHDB_CORRUPT) and
** removes nothing; it used to start an empty MANIFEST and remove them all. */
Test(store, a_store_without_current_beside_its_tables_refuses_and_removes_nothing)
{
  struct store s;
  sochdb *db = open_daemon_store(&s);
  size_t total;
  uint64_t number;
  cr_assert_eq(write_small_table(&s, &number, &total), SOCHDB_OK, "%s", sochdb_last_error());
  store_close(&s);
  char path[4300];
  snprintf(path, sizeof path, "%s/CURRENT", tu_dir());
  cr_assert_eq(unlink(path), 0);
  int rc = store_open(&s, db);
  cr_assert_eq(rc, SOCHDB_CORRUPT, "store_open without CURRENT beside a table: %s", sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), "no CURRENT"), "%s", sochdb_last_error());
  expect_file(number, total);
  cr_assert_neq(access(path, F_OK), 0, "a refused store wrote a new CURRENT");
  tu_close();
}

/* A small table written and recorded at level 0 (durable, then published):
** its number and size. */
static void record_small_table(struct store *s, uint64_t *number, size_t *total)
{
  cr_assert_eq(write_small_table(s, number, total), SOCHDB_OK, "%s", sochdb_last_error());
  struct manifest_edit e;
  manifest_edit_init(&e);
  struct manifest_file f = { *number, *total, (uint8_t *)"a", 1, (uint8_t *)"z", 1, 1, 1 };
  cr_assert_eq(manifest_edit_add_file(&e, 0, &f), SOCHDB_OK);
  cr_assert_eq(store_apply(s, &e), SOCHDB_OK, "%s", sochdb_last_error());
  manifest_edit_free(&e);
}

/* Close s, flip a bit of its MANIFEST at offset `at`, and expect store_open
** to refuse (SOCHDB_CORRUPT, saying `says`) and keep table `number`. */
static void damage_manifest_and_expect_refusal(struct store *s, sochdb *db, uint64_t at, uint64_t number,
                                               size_t total, const char *says)
{
  char path[4300];
  snprintf(path, sizeof path, "%s/MANIFEST-%06llu", tu_dir(), (unsigned long long)manifest_number(s->man));
  store_close(s);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
  uint8_t byte;
  cr_assert_eq(pread(fd, &byte, 1, (off_t)at), 1);
  byte ^= 0x20;
  cr_assert_eq(pwrite(fd, &byte, 1, (off_t)at), 1);
  close(fd);
  int rc = store_open(s, db);
  cr_assert_eq(rc, SOCHDB_CORRUPT, "store_open after byte %llu of the MANIFEST was damaged: %s",
               (unsigned long long)at, sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), says), "%s", sochdb_last_error());
  expect_file(number, total);
}

/* A MANIFEST rewritten as one snapshot record (roll_manifest), then damaged
** there: the snapshot is written with its file and durable before CURRENT
** names it, so it is never torn. store_open read the damage as a torn tail,
** started from an empty state and removed every table as an orphan (one
** flipped bit lost the database; found by an independent review). It now
** refuses (SOCHDB_CORRUPT) and removes nothing. */
Test(store, a_store_whose_sole_snapshot_record_is_damaged_refuses_and_removes_nothing)
{
  struct store s;
  sochdb *db = open_daemon_store(&s);
  size_t total;
  uint64_t number;
  record_small_table(&s, &number, &total);
  cr_assert_eq(manifest_rewrite(s.man, &s.state), SOCHDB_OK, "%s", sochdb_last_error());
  damage_manifest_and_expect_refusal(&s, db, MANIFEST_HEADER + 24, number, total, "first record");
  tu_close();
}

/* The MANIFEST's last record, the edit that added a flushed table, damaged
** after the daemon published the list naming it: the reader cuts it off as
** a torn tail, and the table looked like an orphan. Removing it would lose
** what its flush took out of the log. The region's list says the edit was
** durable: store_open refuses (SOCHDB_CORRUPT) and keeps the table. */
Test(store, a_table_the_published_list_names_is_kept_when_the_manifest_lost_its_edit)
{
  struct store s;
  sochdb *db = open_daemon_store(&s);
  uint64_t last_record = manifest_bytes(s.man);
  size_t total;
  uint64_t number;
  record_small_table(&s, &number, &total);
  damage_manifest_and_expect_refusal(&s, db, last_record + 24, number, total, "lost an edit");
  tu_close();
}

/* Files whose names only look like tables: store_open must neither remove
** them as orphans nor take their numbers, and check must not list them.
** "-1.sst" and twenty nines used to read as UINT64_MAX, which wrapped the
** next file number to 0, so new tables would have reused live numbers. */
Test(store, only_table_names_as_written_are_taken_for_tables)
{
  static const char *const odd[] = { "-1.sst", "99999999999999999999.sst", " 000007.sst", "+000008.sst",
                                     "0000009.sst", "00010.sst", "18446744073709551615.sst", "000011.sst.bak" };
  char path[4300];
  for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
    snprintf(path, sizeof path, "%s/%s", tu_dir(), odd[i]);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    close(fd);
  }
  struct store s;
  open_daemon_store(&s);
  uint64_t number = store_new_file_number(&s);
  cr_assert(number >= 1 && number < 100, "the next table number is %llu: a name was taken for a table's",
            (unsigned long long)number);
  store_close(&s);
  for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
    snprintf(path, sizeof path, "%s/%s", tu_dir(), odd[i]);
    cr_assert_eq(access(path, F_OK), 0, "%s was removed as an orphan table", odd[i]);
  }
  uint64_t n;
  cr_assert(sst_file_number("000012.sst", ".sst", &n) && n == 12);
  cr_assert(sst_file_number("1234567.sst.tmp", ".sst.tmp", &n) && n == 1234567);
  cr_assert(!sst_file_number("000012.sst", ".sst.tmp", &n));
  tu_close();
}

struct unlink_seen {
  struct store *s;
  char path[4300];
  int calls, lock_free, file_there;
};

static void at_doomed_unlink(void *arg)
{
  struct unlink_seen *u = arg;
  u->calls++;
  u->file_there = access(u->path, F_OK) == 0;
  u->lock_free = pthread_mutex_trylock(&u->s->lock) == 0;
  if (u->lock_free)
    pthread_mutex_unlock(&u->s->lock);
}

/* A table an edit deleted is doomed, and store_reclaim unlinks it once no
** file list names it, without the store's lock: with `discard` an unlink
** waits on the disk, and the compactor and the flusher take that lock for
** every table they make. */
Test(store, a_doomed_table_is_unlinked_without_the_store_lock)
{
  struct store s;
  open_daemon_store(&s);
  size_t total;
  uint64_t number;
  record_small_table(&s, &number, &total);
  struct manifest_edit e;
  manifest_edit_init(&e);
  cr_assert_eq(manifest_edit_delete_file(&e, 0, number), SOCHDB_OK);
  cr_assert_eq(store_apply(&s, &e), SOCHDB_OK, "%s", sochdb_last_error());
  manifest_edit_free(&e);
  struct unlink_seen u = { .s = &s };
  cr_assert_eq(sst_file_path(u.path, sizeof u.path, tu_dir(), number), SOCHDB_OK);
  cr_assert_eq(access(u.path, F_OK), 0, "%s went before store_reclaim", u.path);
  sochdb_test_call_at("store.unlink_doomed", at_doomed_unlink, &u);
  store_reclaim(&s);
  sochdb_test_call_at(NULL, NULL, NULL);
  cr_assert_eq(u.calls, 1, "store_reclaim unlinked %d files, not the doomed one", u.calls);
  cr_assert(u.file_there, "the table was gone before its unlink");
  cr_assert(u.lock_free, "the store's lock was held while a doomed table was unlinked");
  cr_assert_neq(access(u.path, F_OK), 0, "%s is still there", u.path);
  store_close(&s);
  tu_close();
}

/* A table whose name could not be made durable (the directory's fsync
** failed) is in no edit: it must not stay behind under its final name
** until the next daemon's sweep. */
Test(store, a_table_whose_directory_sync_failed_is_removed)
{
  struct store s;
  open_daemon_store(&s);
  size_t total;
  uint64_t number;
  sochdb_test_fault("sst.dir_sync", EIO, 0, 1);
  int rc = write_small_table(&s, &number, &total);
  sochdb_test_fault(NULL, 0, 0, 0);
  cr_assert_eq(rc, SOCHDB_IO, "a failed directory fsync: %s", sochdb_strerror(rc));
  char path[4300];
  cr_assert_eq(sst_file_path(path, sizeof path, tu_dir(), number), SOCHDB_OK);
  cr_assert_neq(access(path, F_OK), 0, "%s stayed behind, in no edit", path);
  cr_assert_eq(write_small_table(&s, &number, &total), SOCHDB_OK, "%s", sochdb_last_error());
  expect_file(number, total);
  store_close(&s);
  tu_close();
}

/* How many MANIFEST-* files the test's directory holds. */
static int manifest_files(void)
{
  DIR *d = opendir(tu_dir());
  cr_assert_not_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += !strncmp(e->d_name, "MANIFEST-", 9);
  closedir(d);
  return n;
}

/* Every flush and compaction appends an edit to the MANIFEST, and every
** daemon start replays all of it: past roll_bytes (4 MiB; 4 KiB here) it is
** rewritten as one snapshot, and the old file goes. What a reopen reads is
** the state the edits made. */
Test(store, the_manifest_is_rewritten_as_a_snapshot_once_it_grows)
{
  struct store s;
  sochdb *db = open_daemon_store(&s);
  s.roll_bytes = 4096;
  uint64_t first = manifest_number(s.man), last = 0;
  enum { EDITS = 200 };
  for (int i = 0; i < EDITS; i++) {
    struct manifest_edit e;
    manifest_edit_init(&e);
    char lo[16], hi[16];
    snprintf(lo, sizeof lo, "k%06d", i);
    snprintf(hi, sizeof hi, "k%06d~", i);
    uint64_t n = store_new_file_number(&s);
    struct manifest_file f = { n, 1000, (uint8_t *)lo, (uint32_t)strlen(lo), (uint8_t *)hi, (uint32_t)strlen(hi),
                               (uint64_t)i + 1, (uint64_t)i + 1 };
    cr_assert_eq(manifest_edit_add_file(&e, 1, &f), SOCHDB_OK);
    if (last)
      cr_assert_eq(manifest_edit_delete_file(&e, 1, last), SOCHDB_OK);
    manifest_edit_set_flushed(&e, (uint64_t)i + 1);
    cr_assert_eq(store_apply(&s, &e), SOCHDB_OK, "edit %d: %s", i, sochdb_last_error());
    manifest_edit_free(&e);
    last = n;
    cr_assert_leq(manifest_bytes(s.man), 2 * 4096 + 1024, "edit %d: the MANIFEST grew to %llu bytes", i,
                  (unsigned long long)manifest_bytes(s.man));
  }
  cr_assert_gt(manifest_number(s.man), first + 1, "rewritten more than once (MANIFEST-%06llu)",
               (unsigned long long)manifest_number(s.man));
  cr_assert_eq(manifest_files(), 1, "the rewritten MANIFESTs were not removed");
  cr_assert(!store_failed(&s));
  store_close(&s);
  struct manifest_state st;
  cr_assert_eq(manifest_read(tu_dir(), db->region.hdr->db_id, &st, NULL), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert(st.levels[1].n == 1 && st.levels[1].files[0].number == last, "level 1 holds %u files after a reopen",
            st.levels[1].n);
  cr_assert_eq(st.last_flushed_seq, EDITS, "last_flushed_seq after a reopen");
  manifest_state_free(&st);
  tu_close();
}

/* An edit of n fake level-1 files numbered from the store (keys fNNNNNN),
** deleting dels[0..ndels) of level 1. */
static int apply_level1(struct store *s, unsigned n, const uint64_t *dels, unsigned ndels, uint64_t *first)
{
  struct manifest_edit e;
  manifest_edit_init(&e);
  for (unsigned i = 0; i < n; i++) {
    uint64_t number = store_new_file_number(s);
    if (first && i == 0)
      *first = number;
    char lo[16], hi[16];
    snprintf(lo, sizeof lo, "f%07llu", (unsigned long long)number);
    snprintf(hi, sizeof hi, "f%07llu~", (unsigned long long)number);
    struct manifest_file f = { number, 1000, (uint8_t *)lo, (uint32_t)strlen(lo), (uint8_t *)hi,
                               (uint32_t)strlen(hi), 1, 1 };
    cr_assert_eq(manifest_edit_add_file(&e, 1, &f), SOCHDB_OK);
  }
  for (unsigned i = 0; i < ndels; i++)
    cr_assert_eq(manifest_edit_delete_file(&e, 1, dels[i]), SOCHDB_OK);
  int rc = store_apply(s, &e);
  manifest_edit_free(&e);
  return rc;
}

static size_t manifest_level1_files(sochdb *db)
{
  struct manifest_state st;
  cr_assert_eq(manifest_read(tu_dir(), db->region.hdr->db_id, &st, NULL), SOCHDB_OK, "%s", sochdb_last_error());
  size_t n = st.levels[1].n;
  manifest_state_free(&st);
  return n;
}

/* The region lists at most FL_MAX_FILES files. A MANIFEST that named more
** could never be published again, and the database would not open: an edit
** that would pass the limit is refused before it is recorded (BUSY, the
** daemon flushes later), its new file is removed, and edits that do not add
** to the count (compactions) still pass and make room. */
Test(store, an_edit_past_the_file_limit_is_refused_before_the_manifest_records_it)
{
  struct store s;
  sochdb *db = open_daemon_store(&s);
  uint64_t first = 0, start;
  for (unsigned done = 0; done < FL_MAX_FILES; done += 256) {
    cr_assert_eq(apply_level1(&s, 256, NULL, 0, &start), SOCHDB_OK, "files %u..: %s", done, sochdb_last_error());
    if (!first)
      first = start;
  }
  cr_assert_eq(manifest_level1_files(db), FL_MAX_FILES);
  cr_assert_eq(store_check_room(&s, 1, 0), SOCHDB_BUSY, "room for one more");
  cr_assert_eq(store_check_room(&s, 1, 1), SOCHDB_OK, "a replacement at the limit");

  uint64_t number;
  size_t total;
  cr_assert_eq(write_small_table(&s, &number, &total), SOCHDB_OK, "%s", sochdb_last_error());
  struct manifest_edit e;
  manifest_edit_init(&e);
  struct manifest_file f = { number, total, (uint8_t *)"a", 1, (uint8_t *)"b", 1, 2, 2 };
  cr_assert_eq(manifest_edit_add_file(&e, 0, &f), SOCHDB_OK);
  cr_assert_eq(store_apply(&s, &e), SOCHDB_BUSY, "a flush past the limit");
  manifest_edit_free(&e);
  cr_assert(strstr(sochdb_last_error(), "at most"), "message: %s", sochdb_last_error());
  cr_assert(!store_failed(&s), "a refused edit failed the store");
  cr_assert_eq(manifest_level1_files(db), FL_MAX_FILES, "the refused edit was recorded");
  char path[4300];
  snprintf(path, sizeof path, "%s/%06llu.sst", tu_dir(), (unsigned long long)number);
  cr_assert(access(path, F_OK) != 0, "the refused edit's new table %s is still there", path);

  uint64_t two[] = { first, first + 1 };
  cr_assert_eq(apply_level1(&s, 1, two, 2, NULL), SOCHDB_OK, "a compaction of two into one: %s", sochdb_last_error());
  cr_assert_eq(apply_level1(&s, 1, NULL, 0, NULL), SOCHDB_OK, "the flush, once there is room: %s",
               sochdb_last_error());
  cr_assert_eq(manifest_level1_files(db), FL_MAX_FILES);
  store_close(&s);
  cr_assert_eq(store_open(&s, db), SOCHDB_OK, "a store at the limit reopens: %s", sochdb_last_error());
  store_close(&s);
  tu_close();
}

/* The block cache keys blocks by file number: a number must never be
** handed out twice, even when the MANIFEST never recorded it (a daemon
** killed after numbering a table) or the directory was put back to an
** older copy while the region lived on. The region remembers the floor. */
Test(store, file_numbers_are_not_reused_after_the_manifest_lost_them)
{
  struct store s;
  sochdb *db = open_daemon_store(&s);
  uint64_t last = 0;
  for (int i = 0; i < 5; i++)
    last = store_new_file_number(&s);   /* numbered, never recorded */
  store_close(&s);
  cr_assert_eq(store_open(&s, db), SOCHDB_OK, "%s", sochdb_last_error());
  uint64_t next = store_new_file_number(&s);
  cr_assert_gt(next, last, "number %llu handed out again (the last was %llu)", (unsigned long long)next,
               (unsigned long long)last);
  store_close(&s);
  tu_close();
}

/* A daemon that outlives its database (deleted, a new one made at its path)
** must neither write into the new one nor remove its files: the store asks
** whether DIR/sochdb.id is still its database's before it creates a table,
** renames one into place, or removes one. Here the id file is replaced (a
** new database's) between a table's create and its rename, then before a
** create; with the id back, the store works again. */
Test(store, a_directory_that_now_holds_another_database_is_left_alone)
{
  struct store s = open_store();
  char id_path[4300], kept[4320];
  snprintf(id_path, sizeof id_path, "%s/%s", tu_dir(), SDB_ID_FILE);
  snprintf(kept, sizeof kept, "%s.kept", id_path);
  cr_assert_eq(sdb_dir_is_ours(s.db), SOCHDB_OK, "%s", sochdb_last_error());
  struct sst_file_out o;
  uint64_t number = 7;
  cr_assert_eq(store_sst_create(&s, number, SST_SMALL_PIECES, &o), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(rename(id_path, kept), 0);
  FILE *f = fopen(id_path, "wb");   /* another database's id */
  cr_assert_not_null(f);
  fputs("0123456789abcdef0123456789abcdef\n", f);
  fclose(f);
  static const uint8_t tail[100];
  cr_assert_eq(store_sst_complete(&s, &o, tail, sizeof tail), SOCHDB_IO, "the table was renamed into another "
               "database's directory");
  cr_assert(strstr(sochdb_last_error(), "no longer holds this database"), "message: %s", sochdb_last_error());
  char path[4300];
  snprintf(path, sizeof path, "%s/%06llu.sst", tu_dir(), (unsigned long long)number);
  cr_assert_neq(access(path, F_OK), 0, "%s was made in another database's directory", path);
  cr_assert_eq(store_sst_create(&s, number + 1, SST_SMALL_PIECES, &o), SOCHDB_IO, "a table was created in another database's directory");
  cr_assert_eq(rename(kept, id_path), 0);
  static const size_t pieces[] = { 5000 };
  size_t total;
  cr_assert_eq(write_table(&s, number + 2, SST_SMALL_PIECES, pieces, 1, 100, &total), SOCHDB_OK, "with its id back: %s",
               sochdb_last_error());
  expect_file(number + 2, total);
  tu_close();
}

/* An edit refused before the MANIFEST records it (here by the test fault
** manifest.prepare, as by no memory; or past the file limit) has its new
** tables removed by number. If DIR meanwhile holds another database (the
** one the daemon served deleted, a new one made at its path), a table of
** that number is the new database's: removing it would lose its data. The
** refusal's cleanup asks whether DIR is still ours, as every other
** removal of the store does. */
Test(store, a_refused_edit_removes_nothing_from_another_database)
{
  struct store s;
  sochdb *db = open_daemon_store(&s);
  (void)db;
  uint64_t number;
  size_t total;
  cr_assert_eq(write_small_table(&s, &number, &total), SOCHDB_OK, "%s", sochdb_last_error());
  char id_path[4300], kept[4320];
  snprintf(id_path, sizeof id_path, "%s/%s", tu_dir(), SDB_ID_FILE);
  snprintf(kept, sizeof kept, "%s.kept", id_path);
  cr_assert_eq(rename(id_path, kept), 0);
  FILE *f = fopen(id_path, "wb");   /* another database's id: its table of this number stands for it */
  cr_assert_not_null(f);
  fputs("0123456789abcdef0123456789abcdef\n", f);
  fclose(f);
  struct manifest_edit e;
  manifest_edit_init(&e);
  struct manifest_file mf = { number, total, (uint8_t *)"a", 1, (uint8_t *)"z", 1, 1, 1 };
  cr_assert_eq(manifest_edit_add_file(&e, 0, &mf), SOCHDB_OK);
  sochdb_test_fault("manifest.prepare", ENOMEM, 0, 1);
  int rc = store_apply(&s, &e);
  sochdb_test_fault(NULL, 0, 0, 0);
  manifest_edit_free(&e);
  cr_assert_neq(rc, SOCHDB_OK, "the edit was not refused");
  cr_assert(strstr(sochdb_last_error(), "not prepared"), "the refusal's own message is lost: %s",
            sochdb_last_error());
  char path[4300];
  snprintf(path, sizeof path, "%s/%06llu.sst", tu_dir(), (unsigned long long)number);
  cr_assert_eq(access(path, F_OK), 0, "%s, another database's table by now, was removed", path);
  cr_assert_eq(rename(kept, id_path), 0);
  store_close(&s);
  tu_close();
}
