/*
** testutil.h — small helpers shared by the Criterion suites: temporary
** directories, the region directory, bounded waits for children and threads,
** shared result arrays, retrying write transactions, seeds and key spaces of
** randomized tests, and the asserting scaffolding of in-process tests (open
** a database, begin, put, read, commit).
**
** Everything here is static inline so each test file gets its own copy and no
** extra object has to be linked. Two kinds of helpers:
**   - the plain ones (everything above "Asserting helpers") never call
**     cr_assert: helpers that run in forked children must never report to
**     Criterion (children report by exit status), so they return codes and
**     the tests assert;
**   - the asserting ones (tu_open, tu_begin, tu_put_str, TU_JOIN, ...) assert
**     with Criterion and are meant for the test's own process only (the
**     parent, or threads of an in-process test), never for a forked child.
**
** Per-test life cycle (see tu_setup / tu_teardown, meant for .init / .fini):
**   - a fresh database directory made with mkdtemp under /tmp;
**   - if SOCHDB_SHM_DIR is unset (not run by ctest), a per-test directory for
**     the region files, exported with setenv so forked children inherit it;
**   - at the end: every child still registered is killed and reaped, the
**     region file is unlinked (found by its path, shm_region_path, whatever
**     state the region was left in), and the temporary directories are
**     removed recursively.
** Criterion runs .fini even after a failed assertion, so nothing is left behind.
**
** Needs the test library (sochdb_testing) for shm_region_path, which every
** suite that includes this file links.
*/
#ifndef SOCHDB_TESTUTIL_H
#define SOCHDB_TESTUTIL_H

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "arena.h"    /* arena_rotate: tu_rotate */
#include "internal.h" /* sdb_daemon_stop */
#include "region.h"   /* shm_region_path: where the region file of a directory is */
#include "testhooks.h" /* sochdb_test_without_daemon */
#include "sochdb.h"

#define TU_MAX_CHILDREN 256

/* Per-test state (one test per process under Criterion, so globals are fine). */
static char *tu_db_dir;          /* the test's database directory */
static char *tu_own_shm_dir;     /* the region directory we created, if SOCHDB_SHM_DIR was unset */
static sochdb *tu_db;            /* the handle last opened by tu_open (closed by tu_close) */
static pid_t tu_children[TU_MAX_CHILDREN];
static int tu_nchildren;

/* ---------------------------------------------------------------- time */

static inline void tu_sleep_ms(unsigned ms)
{
  struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static inline void tu_sleep_us(unsigned us)
{
  struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ------------------------------------------------------- directories */

/* Where tu_tmpdir makes directories: /tmp, or a tmpfs (tu_data_on_tmpfs). */
static const char *tu_tmp_base = "/tmp";

/* A fresh directory BASE/sochdb-test-XXXXXX (malloc'd), or NULL. */
static inline char *tu_tmpdir(void)
{
  char tmpl[256];
  snprintf(tmpl, sizeof tmpl, "%s/sochdb-test-XXXXXX", tu_tmp_base);
  if (!mkdtemp(tmpl)) return NULL;
  return strdup(tmpl);
}

/* For suites about process deaths, not power loss, which fdatasync many
** thousands of times (test_flush_crash: 22,000): their directories go to
** /dev/shm when it is a tmpfs, where fdatasync costs nothing. What they
** test (kill -9 at any point) is the same there: the page cache survives a
** process's death on any filesystem. On a disk, with the other suites
** syncing beside them, those syncs made up most of their run time. Call
** before tu_setup. */
static inline void tu_data_on_tmpfs(void)
{
  struct statfs sf;
  if (statfs("/dev/shm", &sf) == 0 && sf.f_type == TMPFS_MAGIC)
    tu_tmp_base = "/dev/shm";
}

/* Mount a tmpfs with `options` (mount(8)'s -o) on a fresh directory named
** from template tmpl (mkdtemp's XXXXXX), which becomes its path. Skips the
** test where mounting is not allowed (not root, a container): a test that
** needs a tmpfs of its own proves nothing without one. tu_unmount undoes it. */
static inline void tu_mount_tmpfs_or_skip(char *tmpl, const char *options)
{
  cr_assert_not_null(mkdtemp(tmpl), "mkdtemp %s: %s", tmpl, strerror(errno));
  if (mount("tmpfs", tmpl, "tmpfs", 0, options) != 0) {
    int err = errno;
    rmdir(tmpl);
    cr_skip_test("cannot mount a tmpfs with %s here (%s)", options, strerror(err));
  }
}

static inline void tu_unmount(const char *mnt)
{
  umount2(mnt, MNT_DETACH);
  rmdir(mnt);
}

static inline int tu_rmrf_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)sb; (void)flag; (void)ftw;
  if (remove(path) != 0 && errno != ENOENT) return -1;
  return 0;
}

/* rm -rf path (does not follow symlinks, does not cross devices). 0 on success. */
static inline int tu_rmrf(const char *path)
{
  if (!path) return 0;
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  return nftw(path, tu_rmrf_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* Whether the file `before` describes (a stat of path, taken earlier) is
** still at path, rather than none or a new file of the same name: a region
** is named after its directory's inode, which a directory made meanwhile
** by a test running in parallel may get once the first is removed. */
static inline int tu_same_file_at(const char *path, const struct stat *before)
{
  struct stat now;
  return stat(path, &now) == 0 && now.st_ino == before->st_ino && now.st_dev == before->st_dev;
}

/* Make sure region files go somewhere private to the test when not run by ctest. */
static inline void tu_shm_env_setup(void)
{
  const char *d = getenv("SOCHDB_SHM_DIR");
  if (d && *d) return;
  tu_own_shm_dir = tu_tmpdir();
  if (tu_own_shm_dir) setenv("SOCHDB_SHM_DIR", tu_own_shm_dir, 1);
}

/* Unlink the region file of dir, found by its path (shm_region_path), so that
** it goes whatever state the region is in (damaged, half made, never made). */
static inline void tu_remove_region(const char *dir)
{
  if (!dir) return;
  char p[4096];
  if (shm_region_path(dir, p, sizeof p) == SOCHDB_OK) unlink(p);
}

/* ------------------------------------------------------------ children */

/* fork(), remembering the child so teardown can kill it if the test fails. */
static inline pid_t tu_fork(void)
{
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid > 0 && tu_nchildren < TU_MAX_CHILDREN) tu_children[tu_nchildren++] = pid;
  return pid;
}

static inline void tu_forget_child(pid_t pid)
{
  for (int i = 0; i < tu_nchildren; i++)
    if (tu_children[i] == pid) {
      tu_children[i] = tu_children[--tu_nchildren];
      return;
    }
}

/* Wait for pid up to limit_ms (polling every 1 ms). 0 and *status on exit;
** -1 on timeout, after which the child has been SIGKILLed and reaped. */
static inline int tu_wait_child(pid_t pid, unsigned limit_ms, int *status)
{
  int st = 0;
  for (unsigned i = 0; i <= limit_ms; i++) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      tu_forget_child(pid);
      if (status) *status = st;
      return 0;
    }
    if (r < 0 && errno != EINTR) {
      tu_forget_child(pid);
      if (status) *status = -1;
      return -1;
    }
    tu_sleep_ms(1);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  tu_forget_child(pid);
  if (status) *status = st;
  return -1;
}

/* Wait for n children with one shared deadline. statuses[i] gets each status.
** Returns how many did not finish in time (those were killed and reaped). */
static inline int tu_wait_children(const pid_t *pids, int n, unsigned limit_ms, int *statuses)
{
  int left = n, late = 0;
  char done[TU_MAX_CHILDREN] = { 0 };
  for (unsigned t = 0; left > 0 && t <= limit_ms; t++) {
    for (int i = 0; i < n; i++) {
      if (done[i]) continue;
      int st = 0;
      pid_t r = waitpid(pids[i], &st, WNOHANG);
      if (r == pids[i] || (r < 0 && errno != EINTR)) {
        statuses[i] = r == pids[i] ? st : -1;
        done[i] = 1;
        left--;
        tu_forget_child(pids[i]);
      }
    }
    if (left > 0) tu_sleep_ms(1);
  }
  for (int i = 0; i < n; i++) {
    if (done[i]) continue;
    kill(pids[i], SIGKILL);
    int st = 0;
    waitpid(pids[i], &st, 0);
    statuses[i] = st;
    tu_forget_child(pids[i]);
    late++;
  }
  return late;
}

/* Children that exited 0 out of n. */
static inline int tu_count_ok(const int *statuses, int n)
{
  int ok = 0;
  for (int i = 0; i < n; i++)
    if (statuses[i] != -1 && WIFEXITED(statuses[i]) && WEXITSTATUS(statuses[i]) == 0) ok++;
  return ok;
}

/* "exit 3", "signal 9", ... into buf (for assertion messages). */
static inline const char *tu_status_str(int status, char *buf, size_t n)
{
  if (status == -1) snprintf(buf, n, "unknown (waitpid failed)");
  else if (WIFEXITED(status)) snprintf(buf, n, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) snprintf(buf, n, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else snprintf(buf, n, "status 0x%x", (unsigned)status);
  return buf;
}

static inline void tu_kill_all_children(void)
{
  while (tu_nchildren > 0) {
    pid_t pid = tu_children[--tu_nchildren];
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
  }
}

/* Read exactly one byte from fd within limit_ms. 1 = got it, 0 = EOF, -1 = timeout/error. */
static inline int tu_read_byte(int fd, unsigned limit_ms, char *out)
{
  struct pollfd p = { .fd = fd, .events = POLLIN };
  for (;;) {
    int r = poll(&p, 1, (int)limit_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t k = read(fd, out, 1);
    if (k < 0 && errno == EINTR) continue;
    return k == 1 ? 1 : (k == 0 ? 0 : -1);
  }
}

/* --------------------------------------------------- shared memory */

/* Zeroed memory shared with children forked afterwards (MAP_SHARED|MAP_ANONYMOUS). */
static inline void *tu_shared_alloc(size_t bytes)
{
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static inline void tu_shared_free(void *p, size_t bytes)
{
  if (p) munmap(p, bytes);
}

/* ------------------------------------------------------ values */

/* Does (val, vlen) hold exactly the C string s? */
static inline int tu_val_eq(const void *val, size_t vlen, const char *s)
{
  size_t n = strlen(s);
  return vlen == n && (n == 0 || memcmp(val, s, n) == 0);
}

/* Parse a decimal integer stored without a terminator. 0 on success. */
static inline int tu_parse_i64(const void *val, size_t vlen, int64_t *out)
{
  char buf[32];
  if (!val || vlen == 0 || vlen >= sizeof buf) return -1;
  memcpy(buf, val, vlen);
  buf[vlen] = 0;
  char *end = NULL;
  errno = 0;
  long long v = strtoll(buf, &end, 10);
  if (errno || end != buf + vlen) return -1;
  *out = (int64_t)v;
  return 0;
}

/* The seed of a randomized test: dflt, unless SOCHDB_TEST_SEED holds a
** number (strtoull's syntax) to replay another history. Never 0, which a
** xorshift generator would never leave. */
static inline uint64_t tu_seed(uint64_t dflt)
{
  const char *s = getenv("SOCHDB_TEST_SEED");
  uint64_t x = s && *s ? strtoull(s, NULL, 0) * 0x9E3779B97F4A7C15ull : dflt;
  return x ? x : dflt;
}

/* The next number of a xorshift64 generator (state never 0). */
static inline uint64_t tu_xorshift(uint64_t *state)
{
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

/* Byte order of keys as the engine defines it (memcmp, shorter prefix first). */
static inline int tu_keycmp(const void *a, size_t alen, const void *b, size_t blen)
{
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* Wait (at most 60 s) until cond holds of the stats of db, cond naming them
** `s` (a sochdb_stats *); asserts, saying what was awaited and where the
** daemon's work stood. */
#define TU_WAIT_STATS(db, cond, what)                                                                    \
  do {                                                                                                   \
    sochdb_stats s_;                                                                                     \
    int ok_ = 0;                                                                                         \
    for (int w_ = 0; w_ < 6000 && !ok_; w_++) {                                                          \
      s_ = tu_stats(db);                                                                                 \
      sochdb_stats *s = &s_;                                                                             \
      ok_ = (cond);                                                                                      \
      if (!ok_)                                                                                          \
        tu_sleep_ms(10);                                                                                 \
    }                                                                                                    \
    cr_assert(ok_, "waited 60 s for %s (memtables in use %u, flushes %llu, sst files %u, l0 %u, "        \
              "compactions %llu)", what, s_.memtables_in_use, (unsigned long long)s_.flushes,            \
              s_.sst_files, s_.l0_files, (unsigned long long)s_.compactions);                            \
  } while (0)

/* ------------------------------------------------------ transactions */

/* Read key (C string) in t into buf as a C string. Returns the sochdb code;
** on SOCHDB_OK buf holds the value (truncated to n-1 bytes, which the
** tests never reach). */
static inline int tu_get_str(sochdb_txn *t, const char *key, char *buf, size_t n)
{
  const void *v = NULL;
  size_t vl = 0;
  int rc = sochdb_get(t, key, strlen(key), &v, &vl);
  if (rc != SOCHDB_OK) {
    if (n) buf[0] = 0;
    return rc;
  }
  if (vl >= n) vl = n - 1;
  memcpy(buf, v, vl);
  buf[vl] = 0;
  return SOCHDB_OK;
}

/* Write a transaction with fill(t, ctx) and commit it with flags; while the
** commit is SOCHDB_CONFLICT or SOCHDB_BUSY (nothing applied), do it all
** again, 1 ms later, up to max_retries times. *retries (may be NULL) counts
** them. An error of begin or fill is returned at once (the transaction
** aborted); otherwise the last commit's code. */
typedef int (*tu_fill_fn)(sochdb_txn *t, void *ctx);

static inline int tu_commit_retry(sochdb *db, tu_fill_fn fill, void *ctx, unsigned flags, unsigned max_retries,
                                  unsigned *retries)
{
  int rc = SOCHDB_CONFLICT;
  for (unsigned attempt = 0; attempt <= max_retries; attempt++) {
    sochdb_txn *t = NULL;
    rc = sochdb_txn_begin(db, 0, &t);
    if (rc != SOCHDB_OK) return rc;
    rc = fill(t, ctx);
    if (rc != SOCHDB_OK) {
      sochdb_abort(t);
      return rc;
    }
    rc = sochdb_commit(t, flags);
    if (rc != SOCHDB_CONFLICT && rc != SOCHDB_BUSY) return rc;
    if (retries) (*retries)++;
    tu_sleep_ms(1);
  }
  return rc;
}

struct tu_put_all { const char *const *keys; int nkeys; const char *value; };

static inline int tu_fill_put_all(sochdb_txn *t, void *ctx)
{
  const struct tu_put_all *p = ctx;
  int rc = SOCHDB_OK;
  for (int i = 0; i < p->nkeys && rc == SOCHDB_OK; i++)
    rc = sochdb_put(t, p->keys[i], strlen(p->keys[i]), p->value, strlen(p->value));
  return rc;
}

/* Commit keys[0..nkeys) = value in one transaction, retried as by
** tu_commit_retry (*conflicts counts the retries). Returns the last code. */
static inline int tu_put_all_retry(sochdb *db, const char *const *keys, int nkeys, const char *value,
                                   unsigned flags, unsigned max_retries, unsigned *conflicts)
{
  struct tu_put_all p = { keys, nkeys, value };
  return tu_commit_retry(db, tu_fill_put_all, &p, flags, max_retries, conflicts);
}

/* --------------------------------------------------- fixture */

/* .init: fresh database directory (tu_db_dir) and region directory. A
** test's own .init runs after its suite's: the second call replaces the
** first's directory. */
static inline void tu_setup(void)
{
  tu_nchildren = 0;
  tu_db = NULL;
  tu_shm_env_setup();
  if (tu_db_dir) {
    tu_rmrf(tu_db_dir);
    free(tu_db_dir);
  }
  tu_db_dir = tu_tmpdir();
}

/* Remove dir's CURRENT and MANIFEST files and SSTables: what a brand-new
** database on the same directory would not have. */
static inline void tu_remove_manifest(const char *dir)
{
  DIR *d = opendir(dir);
  cr_assert(d != NULL, "opendir %s", dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (!strcmp(e->d_name, "CURRENT") || !strncmp(e->d_name, "MANIFEST-", 9) ||
        (len > 4 && !strcmp(e->d_name + len - 4, ".sst"))) {
      char path[4400];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
  }
  closedir(d);
}

/* Run without sochdbd (a test-build hook): opening the database starts no
** daemon. For suites that place or count process slots exactly (a real
** daemon attaches at a moment of its own choosing). Nothing makes commits
** durable then: such suites commit SOCHDB_ASYNC. */
static inline void tu_setup_without_daemon(void)
{
  tu_setup();
  sochdb_test_without_daemon(1);
}

/* Send sig to the sochdbd serving dir and wait up to 10 s until it released
** DIR/LOCK. 1 when no daemon holds it any more (none at all is fine). */
static inline int tu_signal_daemon_and_wait(const char *dir, int sig)
{
  return sdb_daemon_stop(dir, sig, 10000) == SOCHDB_OK;
}

/* Stop the sochdbd serving dir with SIGTERM (its orderly shutdown) and wait
** until it released the lock. For tests that tamper with a region no
** process may be attached to. Asserts it stopped within 10 s. */
static inline void tu_stop_daemon(const char *dir)
{
  cr_assert(tu_signal_daemon_and_wait(dir, SIGTERM), "sochdbd of %s did not stop within 10 s", dir);
}

/* 1 when every thread of pid is stopped (state T or t in /proc/PID/task/TID/stat). */
static inline int tu_all_threads_stopped(pid_t pid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  if (!d)
    return 0;
  int stopped = 1;
  struct dirent *e;
  while (stopped && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char stat_path[80 + sizeof e->d_name], buf[512] = "";
    snprintf(stat_path, sizeof stat_path, "%s/%s/stat", path, e->d_name);
    FILE *f = fopen(stat_path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
      fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');   /* the state follows the command name, which may hold spaces */
    stopped = paren && (paren[2] == 'T' || paren[2] == 't');
  }
  closedir(d);
  return stopped;
}

/* SIGSTOP pid and wait until every one of its threads has stopped: kill()
** returns once the signal is queued, and a thread busy on another CPU (or
** on a vCPU the host has descheduled) may still run for a while, long
** enough to flush a memtable a test meant it not to. Asserts within 10 s. */
static inline void tu_stop_process(pid_t pid)
{
  cr_assert_eq(kill(pid, SIGSTOP), 0, "SIGSTOP %d: %s", (int)pid, strerror(errno));
  int stopped = 0;
  for (int i = 0; i < 10000 && !(stopped = tu_all_threads_stopped(pid)); i++)
    tu_sleep_ms(1);
  cr_assert(stopped, "process %d did not stop within 10 s of SIGSTOP", (int)pid);
}

/* .fini: kill leftover children, unlink the region, remove the directories. */
static inline void tu_teardown(void)
{
  tu_kill_all_children();
  if (tu_db_dir) {
    /* A daemon left serving the directory would go on writing SSTables into
    ** it while it is being removed (leaving it behind in /tmp) and take CPU
    ** from the next test; its shutdown is tested where it matters. */
    tu_signal_daemon_and_wait(tu_db_dir, SIGKILL);
    tu_remove_region(tu_db_dir);
    tu_rmrf(tu_db_dir);
    char script[4200];
    snprintf(script, sizeof script, "%s.sochdbd", tu_db_dir);
    unlink(script);   /* tu_daemon_script's, if the test made one */
    free(tu_db_dir);
    tu_db_dir = NULL;
  }
  if (tu_own_shm_dir) {
    tu_rmrf(tu_own_shm_dir);
    unsetenv("SOCHDB_SHM_DIR");
    free(tu_own_shm_dir);
    tu_own_shm_dir = NULL;
  }
}

/* In a child: open our own handle on dir or _exit(code). */
static inline sochdb *tu_child_open(const char *dir, int code)
{
  sochdb *db = NULL;
  if (sochdb_open(dir, NULL, &db) != SOCHDB_OK || !db) _exit(code);
  return db;
}

/* ====================================================================
** Asserting helpers: Criterion assertions, for the test's own process
** (or its threads) only, never in a forked child.
** ==================================================================== */

/* ------------------------------------------------------------ threads */

/* Join th, waiting at most ms milliseconds: 1 if joined, 0 if not. A thread
** stuck in the library (a hang is a bug too) fails the test instead of
** hanging it. Does not assert by itself; TU_JOIN does. */
static inline int tu_join_within(pthread_t th, unsigned ms)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

/* Join th within 20 s or fail the test; what names the thread in the message. */
#define TU_JOIN(th, what) cr_assert(tu_join_within((th), 20000), "%s did not finish within 20 s", (what))

/* ------------------------------------------------------------ handles */

/* The test's database directory; asserts that tu_setup could make it. */
static inline const char *tu_dir(void)
{
  cr_assert_not_null(tu_db_dir, "mkdtemp failed: %s", strerror(errno));
  return tu_db_dir;
}

/* How many entries of dir have names ending in suffix (".sst": tables, not
** ".sst.tmp"); asserts dir can be opened. */
static inline int tu_count_files(const char *dir, const char *suffix)
{
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
  int n = 0;
  size_t sl = strlen(suffix);
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    n += len > sl && strcmp(e->d_name + len - sl, suffix) == 0;
  }
  closedir(d);
  return n;
}

/* The bytes of pages the region file of db holds (st_blocks: a tmpfs page is
** memory). */
static inline uint64_t tu_region_resident(sochdb *db)
{
  struct stat st;
  cr_assert_eq(stat(sochdb_region_path(db), &st), 0, "stat the region");
  return (uint64_t)st.st_blocks * 512;
}

/* A script beside the database directory that starts `daemon` with `flags`,
** for sochdb_options.daemon_path (the opener passes no flags); its path
** into path. The caller unlinks it. */
static inline const char *tu_daemon_script(char *path, size_t n, const char *daemon, const char *flags)
{
  snprintf(path, n, "%s.sochdbd", tu_dir());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "create %s: %s", path, strerror(errno));
  fprintf(f, "#!/bin/sh\nexec '%s' %s \"$@\"\n", daemon, flags);
  cr_assert_eq(fclose(f), 0);
  cr_assert_eq(chmod(path, 0755), 0);
  return path;
}

/* The whole file at path (malloc'ed, one byte to spare), *len its size;
** asserts that it is read. */
static inline uint8_t *tu_read_file(const char *path, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  uint8_t *buf = malloc((size_t)st.st_size + 1);
  cr_assert_not_null(buf);
  cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size, "read %s", path);
  close(fd);
  *len = (size_t)st.st_size;
  return buf;
}

/* Options with everything default (zero) but the sizes and the busy timeout
** (0 = the library's default). */
static inline sochdb_options tu_options(size_t region_bytes, size_t memtable_bytes, unsigned busy_timeout_ms)
{
  sochdb_options o;
  memset(&o, 0, sizeof o);
  o.region_bytes = region_bytes;
  o.memtable_bytes = memtable_bytes;
  o.busy_timeout_ms = busy_timeout_ms;
  return o;
}

/* Open dir with o (NULL: the defaults); asserts success and a handle. */
static inline sochdb *tu_open_with(const char *dir, const sochdb_options *o)
{
  sochdb *db = NULL;
  int rc = sochdb_open(dir, o, &db);
  cr_assert_eq(rc, SOCHDB_OK, "sochdb_open(%s): %s (%s)", dir, sochdb_strerror(rc), sochdb_last_error());
  cr_assert_not_null(db, "sochdb_open returned OK without a handle");
  return db;
}

/* Open the test's directory (tu_db_dir) with tu_options(...), asserting; the
** handle is also remembered in tu_db for tu_close. */
static inline sochdb *tu_open(size_t region_bytes, size_t memtable_bytes, unsigned busy_timeout_ms)
{
  const char *dir = tu_dir();
  sochdb_options o = tu_options(region_bytes, memtable_bytes, busy_timeout_ms);
  tu_db = tu_open_with(dir, &o);
  return tu_db;
}

/* tu_open, served by `daemon` started with `flags` (tu_daemon_script). */
static inline sochdb *tu_open_served(const char *daemon, const char *flags, size_t region_bytes,
                                     size_t memtable_bytes, unsigned busy_timeout_ms)
{
  static char script[4200];
  sochdb_options o = tu_options(region_bytes, memtable_bytes, busy_timeout_ms);
  o.daemon_path = tu_daemon_script(script, sizeof script, daemon, flags);
  tu_db = tu_open_with(tu_dir(), &o);
  return tu_db;
}

/* tu_open, served by a sochdbd that LZ4-compresses the blocks of every
** level (--compress-from-level 0), for tests of what reads do with
** compressed blocks: by default a flush's level-0 table stores its blocks
** as they are (daemon/store.h). */
static inline sochdb *tu_open_compressing(size_t region_bytes, size_t memtable_bytes, unsigned busy_timeout_ms)
{
#ifndef SOCHDB_TEST_SOCHDBD
  cr_skip_test("the build defines no sochdbd");
  return NULL;
#else
  return tu_open_served(SOCHDB_TEST_SOCHDBD, "--compress-from-level 0", region_bytes, memtable_bytes,
                        busy_timeout_ms);
#endif
}

/* Close the handle last opened by tu_open. */
static inline void tu_close(void)
{
  sochdb_close(tu_db);
  tu_db = NULL;
}

/* sochdb_stats of db (zeroed first); asserts success. */
static inline sochdb_stats tu_stats(sochdb *db)
{
  sochdb_stats s;
  memset(&s, 0, sizeof s);
  int rc = sochdb_stats_get(db, &s);
  cr_assert_eq(rc, SOCHDB_OK, "stats_get: %s", sochdb_strerror(rc));
  return s;
}

/* Make a new memtable active, waiting up to 5 s for the daemon to free an
** arena when none is. */
static inline void tu_rotate(sochdb *db)
{
  shm_region *r = &db->region;
  uint32_t before = arena_active(r);
  int rc;
  for (int tries = 0; (rc = arena_rotate(r, db->slot, before)) == SOCHDB_BUSY && tries < 500; tries++)
    tu_sleep_ms(10);
  cr_assert_eq(rc, SOCHDB_OK, "arena_rotate: %s", sochdb_strerror(rc));
  cr_assert_neq(arena_active(r), before, "rotation did not change the active memtable");
}

/* A full compaction of the files there are now, waited for up to 60 s
** (asserted). Unlike tu_full_compaction it does not wait for the memtables
** to be flushed, which a transaction held open would keep forever. */
static inline void tu_compact_files(sochdb *db)
{
  uint64_t ticket = sdb_full_compaction_request(db);
  int done = 0;
  for (int i = 0; i < 6000 && !done; i++) {
    done = sdb_full_compaction_done(db, ticket);
    if (!done)
      tu_sleep_ms(10);
  }
  cr_assert(done, "the full compaction did not finish within 60 s");
}

/* Every memtable flushed, then a full compaction (as `sochdb compact`
** does), waited for up to 60 s (asserted). */
static inline void tu_full_compaction(sochdb *db)
{
  tu_rotate(db);
  TU_WAIT_STATS(db, s->memtables_in_use <= 1, "every memtable but the new active one flushed");
  tu_compact_files(db);
}

/* Lines of DIR/sochdbd.log (the daemon's log) that hold needle; asserts the
** log exists. */
static inline int tu_log_lines(const char *dir, const char *needle)
{
  char path[4200], line[4096];
  snprintf(path, sizeof path, "%s/sochdbd.log", dir);
  FILE *f = fopen(path, "r");
  cr_assert(f != NULL, "no daemon log at %s", path);
  int n = 0;
  while (fgets(line, sizeof line, f))
    n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

/* ------------------------------------------------------------ keys */

/* A byte string: a key, a primary key, a prefix. */
struct tu_key {
  const void *p;
  size_t n;
};

/* qsort's order of struct tu_key: the engine's key order. */
static inline int tu_key_order(const void *a, const void *b)
{
  const struct tu_key *x = a, *y = b;
  return tu_keycmp(x->p, x->n, y->p, y->n);
}

/* keys[0..n), the i-th made by shape(i, out) (which returns its length, at
** most max_len bytes) in pool (pool_bytes, kept by the caller), then sorted
** in key order. Asserts that they fit in the pool and are all different. */
static inline void tu_make_keys(struct tu_key *keys, int n, size_t (*shape)(int i, uint8_t *out), size_t max_len,
                                uint8_t *pool, size_t pool_bytes)
{
  size_t used = 0;
  for (int i = 0; i < n; i++) {
    cr_assert_leq(used + max_len, pool_bytes, "%d keys do not fit in %zu bytes", n, pool_bytes);
    keys[i] = (struct tu_key){ pool + used, shape(i, pool + used) };
    used += keys[i].n;
  }
  qsort(keys, (size_t)n, sizeof keys[0], tu_key_order);
  for (int i = 1; i < n; i++)
    cr_assert_lt(tu_key_order(&keys[i - 1], &keys[i]), 0, "keys %d and %d are equal", i - 1, i);
}

/* ------------------------------------------------------ transactions */

static inline sochdb_txn *tu_begin(sochdb *db, unsigned flags)
{
  sochdb_txn *t = NULL;
  int rc = sochdb_txn_begin(db, flags, &t);
  cr_assert_eq(rc, SOCHDB_OK, "txn_begin(0x%x): %s (%s)", flags, sochdb_strerror(rc), sochdb_last_error());
  cr_assert_not_null(t, "txn_begin returned OK without a transaction");
  return t;
}

/* Put C strings k = v in t. */
static inline void tu_put_str(sochdb_txn *t, const char *k, const char *v)
{
  int rc = sochdb_put(t, k, strlen(k), v, strlen(v));
  cr_assert_eq(rc, SOCHDB_OK, "put(%s): %s (%s)", k, sochdb_strerror(rc), sochdb_last_error());
}

/* Delete C string k in t. */
static inline void tu_del_str(sochdb_txn *t, const char *k)
{
  int rc = sochdb_delete(t, k, strlen(k));
  cr_assert_eq(rc, SOCHDB_OK, "delete(%s): %s", k, sochdb_strerror(rc));
}

/* Commit t with flags; what names it in the message. */
static inline void tu_commit(sochdb_txn *t, unsigned flags, const char *what)
{
  int rc = sochdb_commit(t, flags);
  cr_assert_eq(rc, SOCHDB_OK, "commit (%s): %s (%s)", what, sochdb_strerror(rc), sochdb_last_error());
}

/* Commit k = v (v NULL: delete k) in a transaction of its own, committed with flags. */
static inline void tu_commit_kv(sochdb *db, const char *k, const char *v, unsigned flags)
{
  sochdb_txn *t = tu_begin(db, 0);
  if (v)
    tu_put_str(t, k, v);
  else
    tu_del_str(t, k);
  tu_commit(t, flags, k);
}

/* Assert what t reads for k (want NULL: absent); ctx starts the message. */
static inline void tu_expect_str(sochdb_txn *t, const char *k, const char *want, const char *ctx)
{
  const void *v = NULL;
  size_t vl = 0;
  int rc = sochdb_get(t, k, strlen(k), &v, &vl);
  if (!want) {
    cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: get(%s) = %s, want NOTFOUND (value \"%.*s\")", ctx, k,
                 sochdb_strerror(rc), rc == SOCHDB_OK ? (int)vl : 0, rc == SOCHDB_OK ? (const char *)v : "");
    return;
  }
  cr_assert_eq(rc, SOCHDB_OK, "%s: get(%s) = %s, want \"%s\"", ctx, k, sochdb_strerror(rc), want);
  cr_assert(vl == strlen(want) && memcmp(v, want, vl) == 0, "%s: get(%s) = \"%.*s\", want \"%s\"", ctx, k, (int)vl,
            (const char *)v, want);
}

/* The value of key in a fresh read-only snapshot of db: SOCHDB_OK and buf (as
** tu_get_str), or the code. Asserts only that the snapshot could be taken. */
static inline int tu_read_str(sochdb *db, const char *key, char *buf, size_t n)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  int rc = tu_get_str(t, key, buf, n);
  sochdb_abort(t);
  return rc;
}

#endif /* SOCHDB_TESTUTIL_H */
