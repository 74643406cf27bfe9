/*
** test_powercut.c — the power-loss mode of sochdb-stress: the LD_PRELOAD
** shim (stress/powercut.c, libsochdb-powercut.so) driven through coreutils
** (`sync FILE` is an fsync, `sync --data FILE` an fdatasync, `rm` an unlink,
** `mv` a rename), and the crash state the supervisor makes from its records
** (stress/crashstate.c): the durable prefix of every file is kept byte for
** byte, at most the unsynced tail is lost or torn, an unlink or a rename no
** directory fsync made durable may be undone (and sometimes is), one that was
** made durable never is, and a record with a bad checksum is ignored. A
** pwrite over zeros (the WAL's runway) that no later sync covered may become
** zeros again, whole or in part; a pwrite over other bytes (a recycled WAL
** segment's old incarnation) may get its old bytes back, whole, after a
** prefix, or have a torn sector, within what the tail cut left of the file;
** a synced write never changes.
*/
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "powercut.h"
#include "stress.h"

static char root[256], db[300], wal[320], state[300];

static void pc_setup(void)
{
  snprintf(root, sizeof root, "%s/sochdb-powercut.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  cr_assert_not_null(mkdtemp(root));
  snprintf(db, sizeof db, "%s/db", root);
  snprintf(wal, sizeof wal, "%s/wal", db);
  snprintf(state, sizeof state, "%s/powercut", root);
  cr_assert_eq(mkdir(db, 0755), 0);
  cr_assert_eq(mkdir(wal, 0755), 0);
}

static void pc_teardown(void)
{
  st_rmrf(root);
}

TestSuite(powercut, .init = pc_setup, .fini = pc_teardown, .timeout = 120);

static unsigned char pattern(long i)
{
  return (unsigned char)(i * 7 + 3);
}

/* Append bytes [from, to) of the pattern to dir/name. */
static void grow(const char *dir, const char *name, long from, long to)
{
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
  for (long i = from; i < to; i++) {
    unsigned char b = pattern(i);
    cr_assert_eq(write(fd, &b, 1), 1);
  }
  close(fd);
}

static long size_of(const char *dir, const char *name)
{
  char path[600];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* How many of dir/name's first n bytes differ from the pattern. */
static long differ(const char *dir, const char *name, long n)
{
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  long bad = 0;
  for (long i = 0; i < n; i++) {
    int c = fgetc(f);
    bad += c == EOF || (unsigned char)c != pattern(i);
  }
  fclose(f);
  return bad;
}

/* Run a shell command with the shim preloaded (in db's directory). */
static void shim(const char *cmd)
{
  char line[2048];
  snprintf(line, sizeof line, "cd '%s' && export LD_PRELOAD='%s' " PC_ENV_STATE "='%s/log' " PC_ENV_DIR "='%s' && %s", db,
           SOCHDB_TEST_POWERCUT_LIB, state, db, cmd);
  cr_assert_eq(system(line), 0, "%s", line);
}

static int cut(uint64_t seed, pc_stats *st)
{
  char path[400];
  FILE *log = fopen(st_path(path, sizeof path, root, "cut.log"), "w");
  cr_assert_not_null(log);
  int rc = pc_materialise(db, state, &seed, log, st);
  fclose(log);
  return rc;
}

Test(powercut, the_durable_prefix_is_kept_and_only_the_tail_is_lost_or_torn)
{
  int whole = 0, dropped = 0, torn = 0;
  for (uint64_t seed = 1; seed <= 40; seed++) {
    st_rmrf(db);
    mkdir(db, 0755);
    mkdir(wal, 0755);
    grow(wal, "seg", 0, 1000);
    cr_assert_eq(pc_baseline(db, state), 0);   /* 1000 bytes durable */
    grow(wal, "seg", 1000, 4000);
    shim(seed % 2 ? "sync wal/seg" : "sync --data wal/seg");   /* 4000 durable */
    grow(wal, "seg", 4000, 6000);                              /* 2000 unsynced */
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    long n = size_of(wal, "seg");
    cr_assert(n >= 4000 && n <= 6000, "seed %llu: %ld bytes", (unsigned long long)seed, n);
    cr_assert_eq(differ(wal, "seg", 4000), 0, "seed %llu: the durable prefix changed", (unsigned long long)seed);
    long bad = differ(wal, "seg", n);
    cr_assert_leq(bad, 512, "seed %llu: more than a sector torn", (unsigned long long)seed);
    whole += n == 6000 && !bad;
    dropped += n < 6000;
    torn += bad > 0;
    cr_assert_eq(st.cuts, 1);
  }
  cr_assert(whole && dropped && torn, "kept whole %d, cut %d, torn %d times in 40", whole, dropped, torn);
}

Test(powercut, an_unsynced_unlink_may_be_undone_a_synced_one_never)
{
  int back = 0, gone = 0;
  for (uint64_t seed = 1; seed <= 30; seed++) {
    st_rmrf(db);
    mkdir(db, 0755);
    mkdir(wal, 0755);
    grow(db, "000001.sst", 0, 700);
    grow(db, "000002.sst", 0, 300);
    cr_assert_eq(pc_baseline(db, state), 0);
    shim("rm 000002.sst && sync . && rm 000001.sst");   /* the first unlink durable, the second not */
    cr_assert_eq(size_of(db, "000001.sst"), -1);
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    cr_assert_eq(size_of(db, "000002.sst"), -1, "seed %llu: a durable unlink was undone", (unsigned long long)seed);
    long n = size_of(db, "000001.sst");
    if (n >= 0) {
      cr_assert_eq(n, 700);
      cr_assert_eq(differ(db, "000001.sst", 700), 0);
      back++;
    } else {
      gone++;
    }
  }
  cr_assert(back && gone, "brought back %d, left unlinked %d times in 30", back, gone);
}

Test(powercut, an_unsynced_rename_may_be_reverted_with_the_file_it_replaced)
{
  int reverted = 0, kept = 0;
  for (uint64_t seed = 1; seed <= 30; seed++) {
    st_rmrf(db);
    mkdir(db, 0755);
    mkdir(wal, 0755);
    grow(db, "CURRENT", 0, 10);   /* the old one: 10 bytes */
    cr_assert_eq(pc_baseline(db, state), 0);
    grow(db, "CURRENT.tmp", 0, 20);
    shim("sync CURRENT.tmp && mv CURRENT.tmp CURRENT");   /* the rename's directory fsync never came */
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    long n = size_of(db, "CURRENT");
    cr_assert(n == 10 || n == 20, "seed %llu: CURRENT has %ld bytes", (unsigned long long)seed, n);
    reverted += n == 10;
    kept += n == 20;
  }
  cr_assert(reverted && kept, "reverted %d, kept %d times in 30", reverted, kept);
}

Test(powercut, a_file_never_synced_keeps_at_most_what_was_written_and_bad_records_are_ignored)
{
  int shorter = 0;
  for (uint64_t seed = 1; seed <= 30; seed++) {
    st_rmrf(db);
    mkdir(db, 0755);
    mkdir(wal, 0755);
    cr_assert_eq(pc_baseline(db, state), 0);
    grow(wal, "new", 0, 900);
    struct stat s;
    char path[600], log[400];
    snprintf(path, sizeof path, "%s/new", wal);
    cr_assert_eq(stat(path, &s), 0);
    /* a record claiming all 900 bytes durable, with a wrong checksum */
    FILE *f = fopen(st_path(log, sizeof log, state, "log"), "a");
    fprintf(f, "F %llu %llu 900 %s #00000000\n", (unsigned long long)s.st_dev, (unsigned long long)s.st_ino, path);
    fclose(f);
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    long n = size_of(wal, "new");
    cr_assert_leq(n, 900);
    if (n > 0) cr_assert_leq(differ(wal, "new", n), 512);
    shorter += n >= 0 && n < 900;
  }
  cr_assert(shorter, "the never-synced file was never cut: the bad record was believed");
}

/* Bytes [lo, hi) of dir/name: how many are the pattern, how many zero (a
** byte can be both: the pattern has zeros), how many neither. */
static void classify(const char *dir, const char *name, long lo, long hi, long *pat, long *zero, long *other)
{
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  *pat = *zero = *other = 0;
  for (long i = 0; i < hi; i++) {
    int c = fgetc(f);
    if (i < lo)
      continue;
    int is_pat = c != EOF && (unsigned char)c == pattern(i);
    *pat += is_pat;
    *zero += c == 0;
    *other += !is_pat && c != 0;
  }
  fclose(f);
}

Test(powercut, an_unsynced_write_over_zeros_may_be_undone_a_synced_one_never)
{
  int kept = 0, undone = 0, partly = 0;
  char cmd[1024];
  for (uint64_t seed = 1; seed <= 40; seed++) {
    st_rmrf(db);
    mkdir(db, 0755);
    mkdir(wal, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/seg", wal);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    cr_assert(fd >= 0 && ftruncate(fd, 8192) == 0);   /* 8 KiB of zeros: a runway */
    close(fd);
    cr_assert_eq(pc_baseline(db, state), 0);
    snprintf(cmd, sizeof cmd, "%s wal/seg 0 1000 sync && %s wal/seg 1000 3000 && %s wal/seg 0 500", SOCHDB_TEST_PWRITE,
             SOCHDB_TEST_PWRITE, SOCHDB_TEST_PWRITE);
    shim(cmd);   /* synced over zeros; unsynced over zeros; unsynced over data, the same bytes (an O record) */
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    cr_assert_eq(size_of(wal, "seg"), 8192, "seed %llu: the size changed", (unsigned long long)seed);
    cr_assert_leq(differ(wal, "seg", 500), 500, "seed %llu", (unsigned long long)seed);   /* at most torn */
    long pat0, zero0, other0;
    classify(wal, "seg", 500, 1000, &pat0, &zero0, &other0);
    cr_assert_eq(pat0, 500, "seed %llu: the synced write changed", (unsigned long long)seed);
    long pat, zero, other;
    classify(wal, "seg", 1000, 4000, &pat, &zero, &other);
    cr_assert_leq(other, 512, "seed %llu: more than a sector of garbage", (unsigned long long)seed);
    kept += pat == 3000;
    undone += zero == 3000;
    partly += pat < 3000 && zero < 3000;
    classify(wal, "seg", 4000, 8192, &pat, &zero, &other);
    cr_assert_eq(zero, 4192, "seed %llu: the runway after the writes changed", (unsigned long long)seed);
    cr_assert_eq(st.overwrites_undone + st.overwrites_kept, 2, "seed %llu: %llu undone, %llu kept: one write over "
                 "zeros and one over data were unsynced", (unsigned long long)seed,
                 (unsigned long long)st.overwrites_undone, (unsigned long long)st.overwrites_kept);
  }
  cr_assert(kept && undone && partly, "kept %d, undone %d, partly undone or torn %d times in 40", kept, undone, partly);
}

/* test_powercut's pattern with `pc_pwrite ... alt` over it: new bytes that
** differ from the old at every offset. */
static unsigned char alt(long i)
{
  return (unsigned char)(pattern(i) ^ 0xa5);
}

enum { KEPT, PUT_BACK, PREFIX, TORN, OUTCOMES };

/* Bytes [lo, hi) of dir/name after the cut, over which an unsynced write of
** alt() went: the allowed outcomes are new bytes up to some k, old ones
** after it, with at most one 512-byte aligned sector anything (torn) before
** k. Which outcome it is; fails the test on any other state. */
static int overwrite_outcome(const char *dir, const char *name, long lo, long hi, uint64_t seed)
{
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  cr_assert_eq(fseek(f, lo, SEEK_SET), 0);
  unsigned char *b = malloc((size_t)(hi - lo));
  cr_assert_eq(fread(b, 1, (size_t)(hi - lo), f), (size_t)(hi - lo), "seed %llu: short file", (unsigned long long)seed);
  fclose(f);
  long k = lo;   /* one past the last byte that is not old */
  for (long i = lo; i < hi; i++)
    if (b[i - lo] != pattern(i))
      k = i + 1;
  long sector = -1, odd = 0;
  for (long i = lo; i < k; i++) {
    if (b[i - lo] == alt(i))
      continue;
    cr_assert(sector < 0 || sector == i / 512, "seed %llu: byte %ld neither new nor old, outside the torn sector %ld",
              (unsigned long long)seed, i, sector);
    sector = i / 512;
    odd++;
  }
  free(b);
  if (odd)
    return TORN;
  return k == hi ? KEPT : k == lo ? PUT_BACK : PREFIX;
}

static void fresh_db(void)
{
  st_rmrf(db);
  mkdir(db, 0755);
  mkdir(wal, 0755);
}

Test(powercut, an_unsynced_write_over_old_bytes_may_get_them_back_a_synced_one_never)
{
  int seen[OUTCOMES] = { 0 };
  char cmd[1024], old[400];
  for (uint64_t seed = 1; seed <= 48; seed++) {
    fresh_db();
    grow(wal, "seg", 0, 8192);   /* a recycled segment: its old incarnation's bytes, durable */
    cr_assert_eq(pc_baseline(db, state), 0);
    snprintf(cmd, sizeof cmd, "%s wal/seg 0 64 sync alt && %s wal/seg 1000 3000 alt", SOCHDB_TEST_PWRITE,
             SOCHDB_TEST_PWRITE);
    shim(cmd);   /* a new header, synced; a group over the old bytes, not synced */
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    cr_assert_eq(size_of(wal, "seg"), 8192, "seed %llu: the size changed", (unsigned long long)seed);
    cr_assert_eq(overwrite_outcome(wal, "seg", 0, 64, seed), KEPT, "seed %llu: the synced header changed",
                 (unsigned long long)seed);
    cr_assert_eq(differ(wal, "seg", 1000) - 64, 0, "seed %llu: bytes before the write changed",
                 (unsigned long long)seed);
    seen[overwrite_outcome(wal, "seg", 1000, 4000, seed)]++;
    long pat, zero, other;
    classify(wal, "seg", 4000, 8192, &pat, &zero, &other);
    cr_assert_eq(pat, 4192, "seed %llu: the bytes after the write changed", (unsigned long long)seed);
    cr_assert_eq(st.overwrites_undone + st.overwrites_kept, 1, "seed %llu", (unsigned long long)seed);
    cr_assert_eq(access(st_path(old, sizeof old, state, PC_OLD_DIR), F_OK), -1, "the saved old bytes were left");
  }
  cr_assert(seen[KEPT] && seen[PUT_BACK] && seen[PREFIX] && seen[TORN],
            "kept %d, put back %d, put back after a prefix %d, torn %d times in 48", seen[KEPT], seen[PUT_BACK],
            seen[PREFIX], seen[TORN]);
}

/* The size step 2 cut dir/name to, from the cut's log (-1: not cut), and
** whether it tore a sector of the tail it kept. */
static long cut_to(const char *name, int *torn)
{
  char path[400], line[1024], want[64];
  FILE *f = fopen(st_path(path, sizeof path, root, "cut.log"), "r");
  cr_assert_not_null(f);
  long to = -1;
  snprintf(want, sizeof want, "/%s: ", name);
  while (fgets(line, sizeof line, f)) {
    const char *c = strstr(line, want), *at = c ? strstr(c, ": cut to ") : NULL;
    if (at) {
      to = atol(at + strlen(": cut to "));
      *torn = strstr(at, "torn sector") != NULL;
    }
  }
  fclose(f);
  return to;
}

Test(powercut, old_bytes_put_back_never_grow_a_file_cut_short)
{
  int clipped = 0, gone = 0;
  char cmd[1024];
  for (uint64_t seed = 1; seed <= 40; seed++) {
    fresh_db();
    grow(wal, "seg", 0, 4096);
    cr_assert_eq(pc_baseline(db, state), 0);   /* 4096 durable */
    grow(wal, "seg", 4096, 8192);              /* an unsynced tail ... */
    snprintf(cmd, sizeof cmd, "%s wal/seg 6000 1000 alt", SOCHDB_TEST_PWRITE);
    shim(cmd);                                 /* ... overwritten in part, unsynced too */
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    int torn = 0;
    long n = size_of(wal, "seg"), to = cut_to("seg", &torn);
    cr_assert(n >= 4096 && n <= 8192, "seed %llu: %ld bytes", (unsigned long long)seed, n);
    if (to >= 0)
      cr_assert_eq(n, to, "seed %llu: cut to %ld, %ld bytes after the old ones went back", (unsigned long long)seed,
                   to, n);
    cr_assert_eq(differ(wal, "seg", 4096), 0, "seed %llu: the durable prefix changed", (unsigned long long)seed);
    if (n > 6000 && n < 7000 && !torn)   /* (a sector step 2 tore may be a second one) */
      overwrite_outcome(wal, "seg", 6000, n, seed), clipped++;
    gone += n <= 6000;
  }
  cr_assert(clipped && gone, "cut within the write %d, before it %d times in 40", clipped, gone);
}

Test(powercut, an_overwrite_whose_old_bytes_cannot_be_saved_fails_the_cut)
{
  char cmd[1024], old[400];
  fresh_db();
  grow(wal, "seg", 0, 4096);
  cr_assert_eq(pc_baseline(db, state), 0);
  FILE *f = fopen(st_path(old, sizeof old, state, PC_OLD_DIR), "w");   /* a file where old/ should be */
  cr_assert_not_null(f, "%s: %s", old, strerror(errno));
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s wal/seg 100 200 alt", SOCHDB_TEST_PWRITE);
  shim(cmd);   /* the write itself goes ahead */
  cr_assert_eq(overwrite_outcome(wal, "seg", 100, 300, 0), KEPT);
  pc_stats st = { 0 };
  cr_assert_eq(cut(1, &st), -1, "a write the crash state could not revert passed");
}
