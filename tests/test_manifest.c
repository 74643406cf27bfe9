/*
** test_manifest.c — the MANIFEST and CURRENT: edits replay to the identical
** state; a rewrite switches CURRENT and removes the old file; a crash in the
** middle of a rewrite leaves the old MANIFEST in force; a torn last record is
** cut off and appending goes on; damage before an intact record, inconsistent
** edits, another database or version, and missing files are reported.
*/
#include "testutil.h"

#include "bytes.h"
#include "filenames.h"
#include "manifest.h"
#include "testhooks.h"
#include "sochdb.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static const uint8_t DB_ID[16] = "0123456789abcdef";
static const uint8_t OTHER_ID[16] = "fedcba9876543210";

static char dir[64];

/* 11,000 fdatasyncs per run: on a tmpfs (tu_data_on_tmpfs) they cost
** nothing, and what is tested here, records torn or damaged on purpose,
** does not need a disk. */
static void setup(void)
{
  tu_data_on_tmpfs();
  char *made = tu_tmpdir();
  cr_assert_not_null(made, "mkdtemp failed");
  cr_assert_lt(strlen(made), sizeof dir);
  strcpy(dir, made);
  free(made);
}

static void teardown(void)
{
  DIR *d = opendir(dir);
  if (!d)
    return;
  char path[512];
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

TestSuite(manifest, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------ */

static void pathof(char *out, size_t n, const char *name)
{
  snprintf(out, n, "%s/%s", dir, name);
}

static int exists(const char *name)
{
  char p[256];
  pathof(p, sizeof p, name);
  return access(p, F_OK) == 0;
}

static uint8_t *slurp(const char *name, size_t *n)
{
  char p[256];
  pathof(p, sizeof p, name);
  return tu_read_file(p, n);
}

static void spit(const char *name, const void *buf, size_t n)
{
  char p[256];
  pathof(p, sizeof p, name);
  FILE *f = fopen(p, "wb");
  cr_assert_not_null(f, "cannot create %s", p);
  cr_assert_eq(fwrite(buf, 1, n, f), n, "short write of %s", p);
  fclose(f);
}

static size_t file_size(const char *name)
{
  char p[256];
  struct stat st;
  pathof(p, sizeof p, name);
  cr_assert_eq(stat(p, &st), 0, "stat %s", p);
  return (size_t)st.st_size;
}

/* Add file `number` at level with keys whose lengths vary with the number
** (up to the 4096-byte maximum). Each file's keys begin with its number, so
** no two files' ranges meet (levels below 0 must not overlap). */
static void add(struct manifest_edit *e, unsigned level, uint64_t number)
{
  static uint8_t lo[4096], hi[4096];
  uint32_t slen = 9 + (uint32_t)(number * 37 % 4087), llen = 9 + (uint32_t)(number * 101 % 292);
  if (number % 17 == 0)
    slen = 4096;
  memset(lo, 'a' + (int)(number % 26), slen);
  memset(hi, '~', llen);   /* above every byte of lo's */
  for (int i = 0; i < 8; i++)
    lo[i] = hi[i] = (uint8_t)(number >> (56 - 8 * i));
  struct manifest_file f = {
    .number = number, .size = number * 1000 + 7, .smallest = lo, .smallest_len = slen,
    .largest = hi, .largest_len = llen, .min_seq = number * 10, .max_seq = number * 10 + 9,
  };
  cr_assert_eq(manifest_edit_add_file(e, level, &f), SOCHDB_OK, "add_file %llu", (unsigned long long)number);
}

static void assert_same(const struct manifest_state *a, const struct manifest_state *b, const char *what)
{
  cr_assert_eq(a->last_flushed_seq, b->last_flushed_seq, "%s: last_flushed_seq %llu vs %llu", what,
               (unsigned long long)a->last_flushed_seq, (unsigned long long)b->last_flushed_seq);
  cr_assert_eq(a->next_file_number, b->next_file_number, "%s: next_file_number differs", what);
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++) {
    const struct manifest_level *x = &a->levels[l], *y = &b->levels[l];
    cr_assert_eq(x->n, y->n, "%s: level %u has %zu vs %zu files", what, l, x->n, y->n);
    for (size_t i = 0; i < x->n; i++) {
      const struct manifest_file *f = &x->files[i], *g = &y->files[i];
      cr_assert(f->number == g->number && f->size == g->size && f->min_seq == g->min_seq &&
                    f->max_seq == g->max_seq && f->smallest_len == g->smallest_len &&
                    f->largest_len == g->largest_len,
                "%s: level %u file %zu (%llu vs %llu) differs", what, l, i, (unsigned long long)f->number,
                (unsigned long long)g->number);
      cr_assert(!memcmp(f->smallest, g->smallest, f->smallest_len) && !memcmp(f->largest, g->largest, f->largest_len),
                "%s: keys of file %llu differ", what, (unsigned long long)f->number);
    }
  }
}

/* A deep copy of s, built through the public edit API. */
static void copy_state(struct manifest_state *dst, const struct manifest_state *src)
{
  manifest_state_init(dst);
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++) {
    const struct manifest_level *lv = &src->levels[l];
    dst->levels[l].files = calloc(lv->n ? lv->n : 1, sizeof *lv->files);
    cr_assert_not_null(dst->levels[l].files);
    dst->levels[l].cap = lv->n ? lv->n : 1;
    for (size_t i = 0; i < lv->n; i++) {
      struct manifest_file *f = &dst->levels[l].files[i];
      *f = lv->files[i];
      f->smallest = malloc(f->smallest_len);
      f->largest = malloc(f->largest_len);
      cr_assert(f->smallest && f->largest);
      memcpy(f->smallest, lv->files[i].smallest, f->smallest_len);
      memcpy(f->largest, lv->files[i].largest, f->largest_len);
    }
    dst->levels[l].n = lv->n;
  }
  dst->last_flushed_seq = src->last_flushed_seq;
  dst->next_file_number = src->next_file_number;
}

static void reopen_and_compare(const struct manifest_state *expect, const char *what)
{
  struct manifest *m;
  struct manifest_state s;
  int rc = manifest_open(dir, DB_ID, &m, &s);
  cr_assert_eq(rc, SOCHDB_OK, "%s: reopen returned %d: %s", what, rc, sochdb_last_error());
  assert_same(expect, &s, what);
  manifest_close(m);
  manifest_state_free(&s);
}

/* Apply a mixed edit number i: adds files, deletes some, moves seqs on. */
static void apply_step(struct manifest *m, struct manifest_state *s, uint64_t *next)
{
  struct manifest_edit e = {0};
  unsigned nadd = 1 + (unsigned)(*next % 3);
  for (unsigned k = 0; k < nadd; k++) {
    add(&e, (unsigned)(*next % MANIFEST_LEVELS), *next);
    (*next)++;
  }
  /* delete the oldest file of a level that has at least two */
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    if (s->levels[l].n >= 2) {
      cr_assert_eq(manifest_edit_delete_file(&e, l, s->levels[l].files[0].number), SOCHDB_OK);
      break;
    }
  manifest_edit_set_flushed(&e, s->last_flushed_seq + 5);
  manifest_edit_set_next_file(&e, *next);
  int rc = manifest_apply(m, s, &e);
  cr_assert_eq(rc, SOCHDB_OK, "apply returned %d: %s", rc, sochdb_last_error());
  manifest_edit_free(&e);
}

static void build(struct manifest **m, struct manifest_state *s, int steps, uint64_t *next)
{
  int rc = manifest_create(dir, DB_ID, m);
  cr_assert_eq(rc, SOCHDB_OK, "create returned %d: %s", rc, sochdb_last_error());
  manifest_state_init(s);
  *next = 1;
  for (int i = 0; i < steps; i++)
    apply_step(*m, s, next);
}

/* ---- tests -------------------------------------------------------------------- */

Test(manifest, create_gives_empty_state_and_current)
{
  struct manifest *m;
  cr_assert_eq(manifest_create(dir, DB_ID, &m), SOCHDB_OK, "create: %s", sochdb_last_error());
  cr_assert_eq(manifest_number(m), 1);
  manifest_close(m);
  size_t n;
  uint8_t *cur = slurp("CURRENT", &n);
  cr_assert(n == 16 && !memcmp(cur, "MANIFEST-000001\n", 16), "CURRENT is '%.*s'", (int)n, cur);
  free(cur);
  cr_assert(exists("MANIFEST-000001"), "MANIFEST-000001 missing");
  cr_assert(!exists("MANIFEST-000001.tmp") && !exists("CURRENT.tmp"), "temporary files left behind");
  struct manifest_state empty;
  manifest_state_init(&empty);
  reopen_and_compare(&empty, "after create");
}

Test(manifest, many_edits_reopen_identical)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 300, &next);
  size_t live = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    live += s.levels[l].n;
  cr_assert_gt(live, 100, "the edits should leave many files live (%zu)", live);
  cr_assert_eq(s.last_flushed_seq, 1500);
  cr_assert_eq(s.next_file_number, next);
  manifest_close(m);
  reopen_and_compare(&s, "after 300 edits");

  /* appending after a reopen goes on from the replayed state */
  struct manifest_state s2;
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &s2), SOCHDB_OK, "reopen: %s", sochdb_last_error());
  for (int i = 0; i < 20; i++)
    apply_step(m, &s2, &next);
  manifest_close(m);
  reopen_and_compare(&s2, "after 20 more edits");
  manifest_state_free(&s);
  manifest_state_free(&s2);
}

Test(manifest, same_file_moved_between_levels_in_one_edit)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 3, &next);
  uint64_t num = s.levels[1].files[0].number;
  struct manifest_edit e = {0};
  cr_assert_eq(manifest_edit_delete_file(&e, 1, num), SOCHDB_OK);
  add(&e, 2, num);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_OK, "move: %s", sochdb_last_error());
  manifest_edit_free(&e);
  manifest_close(m);
  reopen_and_compare(&s, "after a move");
  manifest_state_free(&s);
}

Test(manifest, rewrite_then_reopen)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 100, &next);
  size_t before = file_size("MANIFEST-000001");
  cr_assert_eq(manifest_rewrite(m, &s), SOCHDB_OK, "rewrite: %s", sochdb_last_error());
  cr_assert_eq(manifest_number(m), 2);
  cr_assert(!exists("MANIFEST-000001"), "the old MANIFEST is still there");
  cr_assert(exists("MANIFEST-000002"), "the new MANIFEST is missing");
  cr_assert(!exists("MANIFEST-000002.tmp") && !exists("CURRENT.tmp"), "temporary files left behind");
  cr_assert_lt(file_size("MANIFEST-000002"), before, "a snapshot should be smaller than 100 edits");
  size_t n;
  uint8_t *cur = slurp("CURRENT", &n);
  cr_assert(n == 16 && !memcmp(cur, "MANIFEST-000002\n", 16), "CURRENT is '%.*s'", (int)n, cur);
  free(cur);
  reopen_and_compare(&s, "after rewrite");

  /* appending to the new file, and a second rewrite */
  for (int i = 0; i < 10; i++)
    apply_step(m, &s, &next);
  reopen_and_compare(&s, "after rewrite and 10 edits");
  cr_assert_eq(manifest_rewrite(m, &s), SOCHDB_OK, "second rewrite: %s", sochdb_last_error());
  cr_assert(!exists("MANIFEST-000002") && exists("MANIFEST-000003"), "second rewrite: wrong files");
  apply_step(m, &s, &next);
  manifest_close(m);
  reopen_and_compare(&s, "after the second rewrite");
  manifest_state_free(&s);
}

Test(manifest, rewrite_of_empty_state)
{
  struct manifest *m;
  struct manifest_state s;
  manifest_state_init(&s);
  cr_assert_eq(manifest_create(dir, DB_ID, &m), SOCHDB_OK);
  cr_assert_eq(manifest_rewrite(m, &s), SOCHDB_OK, "rewrite: %s", sochdb_last_error());
  manifest_close(m);
  reopen_and_compare(&s, "empty after rewrite");
}

Test(manifest, crash_mid_rewrite_leftover_tmp)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 30, &next);
  manifest_close(m);
  spit("MANIFEST-000002.tmp", "SOCHMAN\0half a file", 19);
  spit("CURRENT.tmp", "MANIFEST-0000", 13);
  reopen_and_compare(&s, "with a leftover MANIFEST-000002.tmp");

  /* a rewrite after that crash still works */
  struct manifest_state s2;
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &s2), SOCHDB_OK);
  cr_assert_eq(manifest_rewrite(m, &s2), SOCHDB_OK, "rewrite: %s", sochdb_last_error());
  manifest_close(m);
  reopen_and_compare(&s, "after rewriting over the leftover");
  manifest_state_free(&s);
  manifest_state_free(&s2);
}

Test(manifest, crash_mid_rewrite_before_current_switched)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 30, &next);
  struct manifest_state old;
  copy_state(&old, &s);
  size_t n1, nc;
  uint8_t *man1 = slurp("MANIFEST-000001", &n1);
  uint8_t *cur = slurp("CURRENT", &nc);
  /* a complete MANIFEST-000002 that holds more than the old file */
  cr_assert_eq(manifest_rewrite(m, &s), SOCHDB_OK, "rewrite: %s", sochdb_last_error());
  apply_step(m, &s, &next);
  manifest_close(m);
  /* ... as if the crash came before CURRENT was switched and the old file removed */
  spit("MANIFEST-000001", man1, n1);
  spit("CURRENT", cur, nc);
  free(man1);
  free(cur);
  cr_assert(exists("MANIFEST-000002"), "MANIFEST-000002 should be there");
  reopen_and_compare(&old, "CURRENT naming the old file");
  manifest_state_free(&s);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &s), SOCHDB_OK);
  cr_assert_eq(manifest_number(m), 1, "the old file is the live one");
  manifest_close(m);
  manifest_state_free(&s);
  manifest_state_free(&old);
}

Test(manifest, torn_last_record_at_every_length)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 10, &next);
  struct manifest_state before;
  copy_state(&before, &s);
  size_t s0 = file_size("MANIFEST-000001");
  apply_step(m, &s, &next);
  manifest_close(m);
  manifest_state_free(&s);
  size_t s1;
  uint8_t *full = slurp("MANIFEST-000001", &s1);
  cr_assert_gt(s1, s0 + 16, "the last record should be non-trivial");

  for (size_t t = s0; t < s1; t++) {
    spit("MANIFEST-000001", full, t);
    struct manifest_state got;
    int rc = manifest_open(dir, DB_ID, &m, &got);
    cr_assert_eq(rc, SOCHDB_OK, "cut at %zu of %zu: open returned %d: %s", t, s1, rc, sochdb_last_error());
    assert_same(&before, &got, "torn last record");
    cr_assert_eq(file_size("MANIFEST-000001"), s0, "cut at %zu: the torn tail should be cut off", t);
    /* appending after the cut works and survives a reopen */
    uint64_t n = next + 1000;
    apply_step(m, &got, &n);
    manifest_close(m);
    reopen_and_compare(&got, "append after a torn tail");
    manifest_state_free(&got);
  }
  free(full);
  manifest_state_free(&before);
}

Test(manifest, damaged_last_record_is_cut_off)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 10, &next);
  struct manifest_state before;
  copy_state(&before, &s);
  size_t s0 = file_size("MANIFEST-000001");
  apply_step(m, &s, &next);
  manifest_close(m);
  size_t s1;
  uint8_t *full = slurp("MANIFEST-000001", &s1);
  for (size_t at = s0; at < s1; at += 7) {
    full[at] ^= 0x5a;
    spit("MANIFEST-000001", full, s1);
    full[at] ^= 0x5a;
    struct manifest_state got;
    int rc = manifest_open(dir, DB_ID, &m, &got);
    cr_assert_eq(rc, SOCHDB_OK, "byte %zu flipped in the last record: open returned %d", at, rc);
    assert_same(&before, &got, "damaged last record");
    manifest_close(m);
    manifest_state_free(&got);
  }
  free(full);
  manifest_state_free(&s);
  manifest_state_free(&before);
}

Test(manifest, damaged_middle_record_is_corrupt)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 3, &next);
  size_t a = file_size("MANIFEST-000001");
  apply_step(m, &s, &next);
  size_t b = file_size("MANIFEST-000001");
  apply_step(m, &s, &next);
  manifest_close(m);
  size_t n;
  uint8_t *full = slurp("MANIFEST-000001", &n);
  /* every byte of a middle record: its header (length, zero, checksum), payload, padding */
  for (size_t at = a; at < b; at++) {
    full[at] ^= 0x01;
    spit("MANIFEST-000001", full, n);
    full[at] ^= 0x01;
    struct manifest_state got;
    int rc = manifest_open(dir, DB_ID, &m, &got);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "byte %zu (record %zu..%zu) flipped: open returned %d", at, a, b, rc);
    cr_assert_null(m, "no handle on error");
  }
  /* and a damaged snapshot (the first record) */
  full[40 + 20] ^= 0x80;
  spit("MANIFEST-000001", full, n);
  struct manifest_state got;
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "damaged snapshot record");
  free(full);
  manifest_state_free(&s);
}

/* After a rewrite the snapshot is the MANIFEST's only record. It is
** written with the file, durable before CURRENT names it, so it is never
** torn: damage anywhere in it, or the file cut short of its end, is
** corruption, not a torn tail to cut off (an empty state would make every
** table an orphan). */
Test(manifest, a_damaged_or_cut_sole_snapshot_record_is_corrupt)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 10, &next);
  cr_assert_eq(manifest_rewrite(m, &s), SOCHDB_OK, "rewrite: %s", sochdb_last_error());
  manifest_close(m);
  size_t n;
  uint8_t *full = slurp("MANIFEST-000002", &n);
  for (size_t at = 40; at < n; at += 11) {
    full[at] ^= 0x10;
    spit("MANIFEST-000002", full, n);
    full[at] ^= 0x10;
    struct manifest_state got;
    int rc = manifest_open(dir, DB_ID, &m, &got);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "byte %zu of %zu flipped in the sole snapshot record: open returned %d", at,
                 n, rc);
  }
  for (size_t len = 40; len < n; len += len < 80 ? 1 : 97) {
    spit("MANIFEST-000002", full, len);
    struct manifest_state got;
    int rc = manifest_open(dir, DB_ID, &m, &got);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "the MANIFEST cut to %zu of %zu bytes: open returned %d", len, n, rc);
  }
  spit("MANIFEST-000002", full, n);
  reopen_and_compare(&s, "the snapshot whole again");
  free(full);
  manifest_state_free(&s);
}

static void add_range(struct manifest_edit *e, unsigned level, uint64_t number, const char *lo, const char *hi)
{
  struct manifest_file f = { .number = number, .size = 1000, .smallest = (uint8_t *)lo,
                             .smallest_len = (uint32_t)strlen(lo), .largest = (uint8_t *)hi,
                             .largest_len = (uint32_t)strlen(hi), .min_seq = 1, .max_seq = 2 };
  cr_assert_eq(manifest_edit_add_file(e, level, &f), SOCHDB_OK);
}

/* One edit, applied or refused as `want`. */
static void expect_apply(struct manifest *m, struct manifest_state *s, struct manifest_edit *e, int want,
                         const char *what)
{
  int rc = manifest_apply(m, s, e);
  manifest_edit_free(e);
  cr_assert_eq(rc, want, "%s: %s (%s)", what, sochdb_strerror(rc), sochdb_last_error());
}

/* Below level 0 a get searches the one file of a level whose range holds
** its key: files there whose ranges meet would hide keys. Edits that would
** leave such a pair are refused, whether the other file is already there or
** in the same edit, sharing only a boundary key or moved down; level 0's
** files may overlap, and a compaction replaces the files it deletes. A
** record that says so anyway is damage when the MANIFEST is read back. */
Test(manifest, files_whose_ranges_meet_below_level_0_are_refused)
{
  struct manifest *m;
  struct manifest_state s;
  manifest_state_init(&s);
  cr_assert_eq(manifest_create(dir, DB_ID, &m), SOCHDB_OK);
  struct manifest_edit e = {0};
  add_range(&e, 1, 10, "ccc", "fff");
  add_range(&e, 2, 11, "aaa", "zzz");
  add_range(&e, 0, 12, "aaa", "zzz");
  expect_apply(m, &s, &e, SOCHDB_OK, "one file a level, and level 0 over them");
  static const struct { unsigned level; const char *lo, *hi, *what; } refused[] = {
    { 1, "eee", "hhh", "a file over part of another's keys" },
    { 1, "fff", "ggg", "a file sharing one boundary key" },
    { 1, "zzz", "aaa", "a file whose smallest key is above its largest" },
    { 0, "zzz", "aaa", "the same at level 0" },
  };
  for (unsigned i = 0; i < sizeof refused / sizeof *refused; i++) {
    add_range(&e, refused[i].level, 20 + i, refused[i].lo, refused[i].hi);
    expect_apply(m, &s, &e, SOCHDB_CORRUPT, refused[i].what);
  }
  add_range(&e, 1, 25, "ppp", "rrr");
  add_range(&e, 1, 26, "ggg", "hhh");
  add_range(&e, 1, 27, "hhh", "kkk");
  expect_apply(m, &s, &e, SOCHDB_CORRUPT, "two new files over the same key");
  cr_assert_eq(manifest_edit_delete_file(&e, 1, 10), SOCHDB_OK);
  cr_assert_eq(manifest_edit_add_file(&e, 2, &s.levels[1].files[0]), SOCHDB_OK);
  expect_apply(m, &s, &e, SOCHDB_CORRUPT, "a file moved down over another");
  add_range(&e, 0, 30, "bbb", "ddd");
  add_range(&e, 1, 31, "ggg", "hhh");
  add_range(&e, 1, 32, "xxx", "yyy");
  expect_apply(m, &s, &e, SOCHDB_OK, "files between the others, and level 0 over them");
  cr_assert_eq(manifest_edit_delete_file(&e, 1, 10), SOCHDB_OK);
  cr_assert_eq(manifest_edit_delete_file(&e, 1, 31), SOCHDB_OK);
  add_range(&e, 1, 33, "ccc", "eee");
  add_range(&e, 1, 34, "eeef", "hhh");
  expect_apply(m, &s, &e, SOCHDB_OK, "a compaction's outputs over the keys of the files it deletes");
  manifest_close(m);
  reopen_and_compare(&s, "after refused and applied edits");

  /* the last record, resealed with file 32's smallest key "xxx" made "ddd":
  ** over file 33's keys */
  size_t n;
  uint8_t *full = slurp("MANIFEST-000001", &n);
  uint8_t *key = memmem(full + 40, n - 40, "xxx", 3);
  cr_assert_not_null(key, "file 32's smallest key is in the MANIFEST");
  memcpy(key, "ddd", 3);
  size_t rec = 40;   /* the record holding it: 16-byte headers (length, zero, checksum), padded to 8 */
  while (rec + 16 + ((ld32(full + rec) + 7) & ~7u) <= (size_t)(key - full))
    rec += 16 + ((ld32(full + rec) + 7) & ~7u);
  uint32_t bytes = ld32(full + rec);
  uint64_t off = rec;
  uint64_t sum = XXH3_64bits_withSeed(full + rec + 16, bytes, 0x4d414e0b66ull ^ (off << 32) ^ off ^ ((uint64_t)bytes << 8));
  st64(full + rec + 8, sum);
  spit("MANIFEST-000001", full, n);
  struct manifest_state got;
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "a record putting two files over one key");
  free(full);
  manifest_state_free(&s);
}

Test(manifest, inconsistent_edits_refused)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 20, &next);
  struct manifest_state before;
  copy_state(&before, &s);
  size_t size = file_size("MANIFEST-000001");
  uint64_t live = s.levels[3].files[0].number;

  struct manifest_edit e = {0};
  /* deleting a file that is not live (a good add alongside must not happen either) */
  add(&e, 0, next + 50);
  cr_assert_eq(manifest_edit_delete_file(&e, 0, 999999), SOCHDB_OK);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "delete of a file that is not live");
  manifest_edit_free(&e);
  /* deleting a live file at the wrong level */
  cr_assert_eq(manifest_edit_delete_file(&e, 4, live), SOCHDB_OK);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "delete at the wrong level");
  manifest_edit_free(&e);
  /* adding a file that is already live (at another level) */
  add(&e, 5, live);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "add of a live file");
  manifest_edit_free(&e);
  /* adding the same file twice in one edit */
  add(&e, 0, next + 60);
  add(&e, 1, next + 60);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "same file added twice");
  manifest_edit_free(&e);
  /* deleting the same file twice in one edit */
  cr_assert_eq(manifest_edit_delete_file(&e, 3, live), SOCHDB_OK);
  cr_assert_eq(manifest_edit_delete_file(&e, 3, live), SOCHDB_OK);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "same file deleted twice");
  manifest_edit_free(&e);
  /* last_flushed_seq going backwards, with otherwise good changes */
  add(&e, 0, next + 70);
  manifest_edit_set_flushed(&e, s.last_flushed_seq - 1);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "last_flushed_seq backwards");
  manifest_edit_free(&e);
  /* next_file_number going backwards */
  manifest_edit_set_next_file(&e, s.next_file_number - 1);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "next_file_number backwards");
  manifest_edit_free(&e);
  /* numbers past any file's: next_file_number could wrap onto live tables' */
  manifest_edit_set_next_file(&e, SDB_MAX_FILE_NUMBER + 2);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "next_file_number past any file's");
  manifest_edit_free(&e);
  add(&e, 0, SDB_MAX_FILE_NUMBER + 1);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "a file number past any file's");
  manifest_edit_free(&e);
  /* a file the same edit's next_file_number would hand out again */
  add(&e, 0, next + 80);
  manifest_edit_set_next_file(&e, next + 80);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "a file at next_file_number");
  manifest_edit_free(&e);
  /* seqs past any commit's, or a file whose seqs run backwards */
  manifest_edit_set_flushed(&e, MANIFEST_MAX_SEQ + 1);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "last_flushed_seq past any commit's");
  manifest_edit_free(&e);
  struct manifest_file f = { .number = next + 90, .size = 1, .smallest = (uint8_t *)"a", .smallest_len = 1,
                             .largest = (uint8_t *)"b", .largest_len = 1, .min_seq = 5, .max_seq = MANIFEST_MAX_SEQ + 1 };
  cr_assert_eq(manifest_edit_add_file(&e, 0, &f), SOCHDB_OK);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "a file's max_seq past any commit's");
  manifest_edit_free(&e);
  f.max_seq = 4;
  cr_assert_eq(manifest_edit_add_file(&e, 0, &f), SOCHDB_OK);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_CORRUPT, "a file's min_seq above its max_seq");
  manifest_edit_free(&e);

  assert_same(&before, &s, "after refused edits");
  cr_assert_eq(file_size("MANIFEST-000001"), size, "refused edits must not touch the file");

  /* bad arguments to the helpers */
  struct manifest_file bad = { .number = 1, .smallest = (uint8_t *)"a", .smallest_len = 0,
                               .largest = (uint8_t *)"b", .largest_len = 1 };
  cr_assert_eq(manifest_edit_add_file(&e, 0, &bad), SOCHDB_INVALID, "empty key");
  bad.smallest_len = 1;
  cr_assert_eq(manifest_edit_add_file(&e, MANIFEST_LEVELS, &bad), SOCHDB_INVALID, "level out of range");
  cr_assert_eq(manifest_edit_delete_file(&e, MANIFEST_LEVELS, 1), SOCHDB_INVALID, "level out of range");
  cr_assert_eq(e.nadds + e.ndels, 0, "failed helpers leave the edit unchanged");

  /* equal seqs are not backwards; the handle still works after refusals */
  manifest_edit_set_flushed(&e, s.last_flushed_seq);
  manifest_edit_set_next_file(&e, s.next_file_number);
  cr_assert_eq(manifest_apply(m, &s, &e), SOCHDB_OK, "an edit keeping the numbers: %s", sochdb_last_error());
  manifest_edit_free(&e);
  apply_step(m, &s, &next);
  manifest_close(m);
  reopen_and_compare(&s, "after refusals and good edits");
  manifest_state_free(&s);
  manifest_state_free(&before);
}

/* CURRENT must name its MANIFEST exactly as it is spelt: "MANIFEST-0000001"
** is another file's name for the same number. */
Test(manifest, current_spelling_another_name_is_corrupt)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 3, &next);
  manifest_close(m);
  static const char *const odd[] = { "MANIFEST-0000001\n", "MANIFEST-+00001\n", "MANIFEST-18446744073709551615\n",
                                     "MANIFEST-000001 \n" };
  for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
    spit("CURRENT", odd[i], strlen(odd[i]));
    struct manifest_state got;
    cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "CURRENT = %s", odd[i]);
    cr_assert(strstr(sochdb_last_error(), "CURRENT is malformed"), "%s", sochdb_last_error());
  }
  spit("CURRENT", "MANIFEST-000001\n", 16);
  reopen_and_compare(&s, "CURRENT spelt as written");
  manifest_state_free(&s);
}

Test(manifest, other_db_id_is_corrupt)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 3, &next);
  manifest_close(m);
  struct manifest_state got;
  cr_assert_eq(manifest_open(dir, OTHER_ID, &m, &got), SOCHDB_CORRUPT, "another database's MANIFEST");
  cr_assert_null(m);
  manifest_state_free(&s);
}

Test(manifest, other_version_and_bad_header)
{
  struct manifest *m;
  struct manifest_state s;
  uint64_t next;
  build(&m, &s, 3, &next);
  manifest_close(m);
  size_t n;
  uint8_t *full = slurp("MANIFEST-000001", &n);
  uint32_t v = 2;
  memcpy(full + 8, &v, 4);
  uint64_t sum = XXH3_64bits_withSeed(full, 32, 0x4d414e0a55ull);
  memcpy(full + 32, &sum, 8);
  spit("MANIFEST-000001", full, n);
  struct manifest_state got;
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_VERSION, "version 2");
  full[9] ^= 1;   /* now the header checksum fails */
  spit("MANIFEST-000001", full, n);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "damaged header");
  spit("MANIFEST-000001", full, 20);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "short header");
  free(full);
  manifest_state_free(&s);
}

Test(manifest, missing_files)
{
  struct manifest *m;
  struct manifest_state got;
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_NOTFOUND, "no CURRENT");
  cr_assert_eq(manifest_create(dir, DB_ID, &m), SOCHDB_OK);
  manifest_close(m);
  spit("CURRENT", "MANIFEST-000007\n", 16);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "CURRENT names a missing MANIFEST");
  spit("CURRENT", "MANIFEST-000001", 15);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "CURRENT without its newline");
  spit("CURRENT", "MANIFEST-1\n", 11);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "CURRENT with too few digits");
  spit("CURRENT", "MANIFEST-000001\n", 16);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_OK, "CURRENT restored: %s", sochdb_last_error());
  manifest_close(m);
  manifest_state_free(&got);
}

/* A directory without CURRENT is a new database only if it holds no
** SSTable. With tables beside it CURRENT was lost, and an empty state would
** lose them all (the daemon would remove them as orphans). A MANIFEST alone
** is a creation cut short before CURRENT was renamed in: it lists no file. */
Test(manifest, sstables_without_current_are_corrupt_a_manifest_alone_is_a_new_database)
{
  struct manifest *m;
  struct manifest_state got;
  cr_assert_eq(manifest_create(dir, DB_ID, &m), SOCHDB_OK);
  manifest_close(m);
  char path[128];
  snprintf(path, sizeof path, "%s/CURRENT", dir);
  cr_assert_eq(unlink(path), 0);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_NOTFOUND, "a MANIFEST without CURRENT or tables");
  spit("000008.sst.tmp", "x", 1);   /* a table never completed is no table */
  cr_assert_eq(manifest_read(dir, DB_ID, &got, NULL), SOCHDB_NOTFOUND, "beside a temporary table file");
  spit("000007.sst", "x", 1);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_CORRUPT, "an SSTable without CURRENT");
  cr_assert_not_null(strstr(sochdb_last_error(), "no CURRENT"), "%s", sochdb_last_error());
  cr_assert_eq(manifest_read(dir, DB_ID, &got, NULL), SOCHDB_CORRUPT, "manifest_read, the same");
}

/* What manifest_open replayed is synced before it returns (a predecessor
** killed before its fdatasync left records only the page cache holds, and
** the daemon acts on them at once): a failed sync fails the open. */
Test(manifest, opening_syncs_what_it_replayed_before_it_returns)
{
  struct manifest *m;
  struct manifest_state s, got;
  uint64_t next;
  build(&m, &s, 3, &next);
  manifest_close(m);
  sochdb_test_fault("manifest.open_sync", EIO, 0, 1);
  cr_assert_eq(manifest_open(dir, DB_ID, &m, &got), SOCHDB_IO, "open with its fdatasync failing");
  cr_assert_null(m, "a failed open hands out no handle");
  cr_assert_not_null(strstr(sochdb_last_error(), "fdatasync"), "%s", sochdb_last_error());
  reopen_and_compare(&s, "once the sync works");
  manifest_state_free(&s);
}
