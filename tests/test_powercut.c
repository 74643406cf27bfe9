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
** zeros again, whole or in part; a synced one never does, and a write over
** bytes that were not zeros is never touched.
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
    shim(cmd);   /* synced over zeros; unsynced over zeros; unsynced over data (not recorded) */
    pc_stats st = { 0 };
    cr_assert_eq(cut(seed, &st), 0);
    cr_assert_eq(size_of(wal, "seg"), 8192, "seed %llu: the size changed", (unsigned long long)seed);
    cr_assert_eq(differ(wal, "seg", 1000), 0, "seed %llu: the synced write (or the one over data) changed",
                 (unsigned long long)seed);
    long pat, zero, other;
    classify(wal, "seg", 1000, 4000, &pat, &zero, &other);
    cr_assert_leq(other, 512, "seed %llu: more than a sector of garbage", (unsigned long long)seed);
    kept += pat == 3000;
    undone += zero == 3000;
    partly += pat < 3000 && zero < 3000;
    classify(wal, "seg", 4000, 8192, &pat, &zero, &other);
    cr_assert_eq(zero, 4192, "seed %llu: the runway after the writes changed", (unsigned long long)seed);
    cr_assert_eq(st.overwrites_undone + st.overwrites_kept, 1, "seed %llu: %llu undone, %llu kept: one write over "
                 "zeros was unsynced", (unsigned long long)seed, (unsigned long long)st.overwrites_undone,
                 (unsigned long long)st.overwrites_kept);
  }
  cr_assert(kept && undone && partly, "kept %d, undone %d, partly undone or torn %d times in 40", kept, undone, partly);
}
