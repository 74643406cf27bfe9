/*
** test_sochdbd.c — the daemon's own loops (daemon/sochdbd.c): idle, it
** hardly wakes, and the events that bring work wake the thread that does it:
** an ASYNC or SYNC commit wakes a dozing WAL writer, a rotation and a writer
** short of memtable room wake an idle flusher, and a stop ends them all. (A full compaction asked for
** by `sochdb compact` waking an idle compactor: test_cli.c.) A process
** killed (SIGKILL, at a crash point) between its work and its wake leaves
** the wake to the reaper: a rotator's to the flusher, an ASYNC committer's
** to the writer.
**
** The wake tests run sochdbd-testing with $SOCHDB_TEST_IDLE_MS at an hour:
** every idle sleep of its threads is an hour long from the first idle round,
** so work that gets done was woken, and a missing wake fails the test by the
** suite's timeout instead of passing late.
*/
#include <criterion/criterion.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "durable.h"
#include "internal.h"
#include "sochdb.h"
#include "testutil.h"

static void unset_idle(void)
{
  unsetenv("SOCHDB_TEST_IDLE_MS");
  unsetenv("SOCHDB_TEST_IDLE_PAUSE_MS");
  tu_teardown();
}

TestSuite(sochdbd, .init = tu_setup, .fini = unset_idle, .timeout = 120);

#define REGION (16u << 20)
#define MT     (1u << 20)
#define AN_HOUR_MS "3600000"

/* Open the test's directory (a region of region_bytes) with a daemon that
** sleeps an hour whenever idle. */
static sochdb *open_sleepy_in(size_t region_bytes)
{
#ifndef SOCHDB_TEST_SOCHDBD_TESTING
  cr_skip_test("the build defines no sochdbd-testing");
  return NULL;
#else
  setenv("SOCHDB_TEST_IDLE_MS", AN_HOUR_MS, 1);   /* inherited by the daemon this open starts */
  sochdb_options o = tu_options(region_bytes, MT, 10000);
  o.daemon_path = SOCHDB_TEST_SOCHDBD_TESTING;
  tu_db = tu_open_with(tu_dir(), &o);
  return tu_db;
#endif
}

static sochdb *open_sleepy(void) { return open_sleepy_in(REGION); }

static int put(sochdb *db, const char *key, const char *val, unsigned flags)
{
  sochdb_txn *t = tu_begin(db, 0);
  cr_assert_eq(sochdb_put(t, key, strlen(key), val, strlen(val)), SOCHDB_OK, "put %s", key);
  return sochdb_commit(t, flags);
}

static uint64_t published(sochdb *db)
{
  return atomic_load_explicit(&db->region.hdr->published_seq, memory_order_acquire);
}

/* The pid sochdbd wrote into DIR/LOCK (asserted). */
static pid_t daemon_pid(void)
{
  char path[4200], buf[32] = { 0 };
  snprintf(path, sizeof path, "%s/LOCK", tu_dir());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(fd, 0, "open %s", path);
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  pid_t pid = n > 0 ? (pid_t)strtol(buf, NULL, 10) : 0;
  cr_assert_gt(pid, 0, "no pid in %s", path);
  return pid;
}

/* Call fn with each of process pid's threads' /proc/PID/task/TID/<file>,
** open for reading, until fn returns nonzero. */
static void each_thread_file(pid_t pid, const char *file, int (*fn)(FILE *f, void *ctx), void *ctx)
{
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "opendir %s", dir);
  struct dirent *e;
  int done = 0;
  while (!done && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[400];
    snprintf(path, sizeof path, "%s/%s/%s", dir, e->d_name, file);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;   /* a thread that just ended */
    done = fn(f, ctx);
    fclose(f);
  }
  closedir(d);
}

static int add_blocked(FILE *status, void *total)
{
  char line[128];
  unsigned long n;
  while (fgets(line, sizeof line, status))
    if (sscanf(line, "voluntary_ctxt_switches: %lu", &n) == 1)
      *(unsigned long *)total += n;
  return 0;
}

/* How many times the threads of process pid blocked, all together. */
static unsigned long blocked_times(pid_t pid)
{
  unsigned long total = 0;
  each_thread_file(pid, "status", add_blocked, &total);
  return total;
}

struct name_search {
  const char *name;
  int         found;
};

static int is_named(FILE *comm, void *ctx)
{
  struct name_search *q = ctx;
  char line[32] = { 0 };
  if (fgets(line, sizeof line, comm))
    line[strcspn(line, "\n")] = 0;
  return q->found = strcmp(line, q->name) == 0;
}

/* Whether one of process pid's threads is named name. */
static int has_thread_named(pid_t pid, const char *name)
{
  struct name_search q = { name, 0 };
  each_thread_file(pid, "comm", is_named, &q);
  return q.found;
}

#ifdef SOCHDB_TEST_SOCHDBD
/* A database served by the build's own sochdbd, whose /proc entries the
** tests read. */
static sochdb *open_with_the_builds_daemon(void)
{
  sochdb_options o = tu_options(REGION, MT, 10000);
  o.daemon_path = SOCHDB_TEST_SOCHDBD;
  return tu_db = tu_open_with(tu_dir(), &o);
}
#endif

/* Before: the writer woke every 5 ms, the flusher every 5 ms, the compactor
** every 20 ms and the reaper every 100 ms, 460 wakes a second. Now the
** reaper's 10 and about one each for the others. The bound is loose on
** purpose: it tells polling from sleeping, whatever the machine's load. */
Test(sochdbd, an_idle_daemon_hardly_wakes)
{
#ifndef SOCHDB_TEST_SOCHDBD
  cr_skip_test("the build defines no sochdbd");
#else
  sochdb *db = open_with_the_builds_daemon();
  cr_assert_eq(put(db, "k", "v", SOCHDB_ASYNC), SOCHDB_OK);
  cr_assert_eq(put(db, "k", "w", 0), SOCHDB_OK);
  pid_t pid = daemon_pid();
  tu_sleep_ms(2000);    /* the threads' idle sleeps grow to their longest */
  unsigned long before = blocked_times(pid);
  tu_sleep_ms(2000);
  unsigned long wakes = blocked_times(pid) - before;
  cr_assert_lt(wakes, 200, "the idle daemon woke %lu times in 2 s", wakes);
  tu_close();
#endif
}

/* top -H, ps -L and perf tell the daemon's threads apart by their names. */
Test(sochdbd, the_daemons_threads_carry_their_names)
{
#ifndef SOCHDB_TEST_SOCHDBD
  cr_skip_test("the build defines no sochdbd");
#else
  sochdb *db = open_with_the_builds_daemon();
  cr_assert_eq(put(db, "k", "v", 0), SOCHDB_OK, "a SYNC commit: the writer thread runs");
  pid_t pid = daemon_pid();
  static const char *const names[] = { "sochdbd-wal", "sochdbd-flush", "sochdbd-compact" };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    /* a thread names itself as it starts: the daemon may serve a moment before */
    for (int tries = 0; !has_thread_named(pid, names[i]); tries++) {
      cr_assert_lt(tries, 5000, "no thread of sochdbd %d is named %s", (int)pid, names[i]);
      tu_sleep_ms(1);
    }
  }
  tu_close();
#endif
}

/* An ASYNC commit does not kick the writer (its round writes it with the
** others); but a writer that dozes has no rounds: the commit must wake it. */
Test(sochdbd, an_async_commit_wakes_a_dozing_writer)
{
  sochdb *db = open_sleepy();
  shm_region *r = &db->region;
  cr_assert_eq(put(db, "first", "1", 0), SOCHDB_OK, "a SYNC commit kicks the dozing writer");
  for (int i = 0; !durable_writer_dozes(r); i++) {
    cr_assert_lt(i, 60000, "the writer never dozed");
    tu_sleep_ms(1);
  }
  cr_assert_eq(put(db, "second", "2", SOCHDB_ASYNC), SOCHDB_OK);
  uint64_t seq = published(db);
  cr_assert_eq(durable_wait(r, seq, 3600000u), 1, "commit %llu made durable", (unsigned long long)seq);
  tu_close();
}

static void fill(sochdb *db, int from, int n)
{
  char key[32], val[1001];
  memset(val, 'v', sizeof val - 1);
  val[sizeof val - 1] = 0;
  for (int i = from; i < from + n; i++) {
    snprintf(key, sizeof key, "key-%08d", i);
    int rc = put(db, key, val, SOCHDB_ASYNC);
    cr_assert_eq(rc, SOCHDB_OK, "put %d: %s (%s)", i, sochdb_strerror(rc), sochdb_last_error());
  }
}

/* One rotation, arenas to spare: only the rotation's wake starts the flush. */
Test(sochdbd, a_rotation_wakes_an_idle_flusher)
{
  sochdb *db = open_sleepy();
  fill(db, 0, 1500);    /* 1.5 MB into 1 MiB memtables */
  TU_WAIT_STATS(db, s->flushes >= 1, "the flush of the rotated-out memtable");
  tu_close();
}

/* A reader on a handle of its own holds memtable 0 in its view for a while. */
struct viewer {
  pthread_t    thread;
  _Atomic int  viewing;
};

static void *hold_a_view(void *arg)
{
  struct viewer *v = arg;
  sochdb *db = tu_open_with(tu_dir(), NULL);
  sochdb_txn *t = NULL;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK);
  const void *val;
  size_t vlen;
  cr_assert_eq(sochdb_get(t, "key-00000000", 12, &val, &vlen), SOCHDB_OK, "the view holds memtable 0");
  atomic_store(&v->viewing, 1);
  tu_sleep_ms(300);
  sochdb_abort(t);
  sochdb_close(db);
  return NULL;
}

/* Two arenas: the first, flushed, cannot be recycled while the reader views
** it, so the writer runs out of room with the flusher asleep. Only the
** writer can wake it once the reader is gone. */
Test(sochdbd, a_writer_short_of_room_wakes_an_idle_flusher)
{
  sochdb *db = open_sleepy_in(6u << 20);
  cr_assert_eq(db->region.hdr->n_memtables, 2u, "6 MiB holds exactly two 1 MiB memtables");
  fill(db, 0, 1);
  struct viewer v = { .viewing = 0 };
  cr_assert_eq(pthread_create(&v.thread, NULL, hold_a_view, &v), 0);
  while (!atomic_load(&v.viewing))
    tu_sleep_ms(1);
  fill(db, 1, 2500);    /* fills memtable 0, then 1, then waits for 0 */
  pthread_join(v.thread, NULL);
  TU_WAIT_STATS(db, s->flushes >= 2, "two flushes");
  tu_close();
}

/* Many rotations, and writers short of room now and then: the daemon keeps
** up, woken each time, and what was written reads back. */
Test(sochdbd, a_daemon_that_sleeps_whenever_idle_keeps_up_with_many_rotations)
{
  sochdb *db = open_sleepy();
  fill(db, 0, 40000);   /* 40 MB: more than twice the region's arenas */
  TU_WAIT_STATS(db, s->flushes >= 30, "30 flushes");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  char got[1100];
  cr_assert_eq(tu_get_str(t, "key-00000000", got, sizeof got), SOCHDB_OK);
  cr_assert_eq(strlen(got), 1000, "the first key reads back from its SSTable");
  sochdb_abort(t);
  tu_close();
}

/* ---- a process killed between its work and its wake (real kill -9) ---- */

/* Child: its own handle on the test's database (the daemon already runs),
** crash point `point` armed, then 1 KB ASYNC commits until the point kills
** it. Exits 50 if it never did, 2+ for a failure on the way. */
static void commit_until_killed_at(const char *point)
{
  sochdb_options o = tu_options(REGION, MT, 10000);
#ifdef SOCHDB_TEST_SOCHDBD_TESTING
  o.daemon_path = SOCHDB_TEST_SOCHDBD_TESTING;   /* should the daemon die, its successor sleeps as long */
#endif
  sochdb *db;
  if (sochdb_open(tu_dir(), &o, &db) != SOCHDB_OK)
    _exit(2);
  sochdb_test_crash_at(point, 1);
  char key[32], val[1000];
  memset(val, 'k', sizeof val);
  for (int i = 0; i < 100000; i++) {
    sochdb_txn *t;
    snprintf(key, sizeof key, "killed-%06d", i);
    if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK || sochdb_put(t, key, strlen(key), val, sizeof val) != SOCHDB_OK)
      _exit(3);
    if (sochdb_commit(t, SOCHDB_ASYNC) != SOCHDB_OK)
      _exit(4);
  }
  _exit(50);
}

static void child_killed_at(const char *point)
{
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0)
    commit_until_killed_at(point);
  int st = 0;
  cr_assert_eq(tu_wait_child(pid, 60000, &st), 0, "the child did not end in time");
  char sbuf[64];
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child ended with %s, not killed at %s",
            tu_status_str(st, sbuf, sizeof sbuf), point);
}

/* An ASYNC committer killed after publishing its commit, before its nudge:
** the writer dozes (for an hour here) and nobody else commits. The reaper,
** finding the dead process, nudges the writer, and the commit is written. */
Test(sochdbd, an_async_commit_whose_committer_died_before_its_nudge_is_made_durable)
{
  sochdb *db = open_sleepy();
  shm_region *r = &db->region;
  cr_assert_eq(put(db, "first", "1", 0), SOCHDB_OK);
  for (int i = 0; !durable_writer_dozes(r); i++) {
    cr_assert_lt(i, 60000, "the writer never dozed");
    tu_sleep_ms(1);
  }
  uint64_t before = published(db);
  child_killed_at("commit.published");
  uint64_t seq = published(db);
  cr_assert_eq(seq, before + 1, "the dead child's commit was published");
  cr_assert_eq(durable_wait(r, seq, 30000u), 1, "commit %llu of the dead child made durable",
               (unsigned long long)seq);
  cr_assert_gt(tu_stats(db).processes_reaped, 0u, "the child was reaped");
  tu_close();
}

/* A writer killed just after its rotation won, before it woke the flusher:
** the full memtable must still be flushed, though the flusher sleeps an hour
** when idle and nobody writes after the rotation. The reaper wakes it. */
Test(sochdbd, a_memtable_whose_rotator_died_before_its_wake_is_flushed)
{
  sochdb *db = open_sleepy();
  child_killed_at("rotate.won");
  TU_WAIT_STATS(db, s->flushes >= 1, "the flush of the memtable the dead child rotated out");
  cr_assert_gt(tu_stats(db).processes_reaped, 0u, "the child was reaped");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  char got[1100];
  cr_assert_eq(tu_get_str(t, "killed-000000", got, sizeof got), SOCHDB_OK, "the child's first commit reads back");
  sochdb_abort(t);
  tu_close();
}

/* A stop that lands between a thread's look for work and its sleep must not
** leave the daemon asleep for its idle sleep (an hour here): every idle round
** pauses 200 ms at that point, and SIGTERM comes during the first ones. */
Test(sochdbd, a_stop_between_a_look_for_work_and_the_sleep_is_not_lost)
{
  setenv("SOCHDB_TEST_IDLE_PAUSE_MS", "200", 1);
  open_sleepy();
  tu_stop_daemon(tu_dir());   /* SIGTERM, then asserts the daemon ended within 10 s */
  tu_close();
}

/* sdb_daemon_pid and sdb_daemon_stop (sochdb destroy, the benchmarks) name
** and signal only a sochdbd that holds the directory's LOCK now: a LOCK
** whose pid is another database's running daemon (its own daemon died and
** the pid went to that one) is not obeyed. */
Test(sochdbd, a_lock_naming_another_databases_daemon_is_not_obeyed)
{
  sochdb *db = tu_open(REGION, MT, 10000);
  cr_assert_eq(put(db, "k", "v", SOCHDB_SYNC), SOCHDB_OK, "a SYNC commit: the daemon runs");
  pid_t theirs = sdb_daemon_pid(tu_dir());
  cr_assert_gt(theirs, 0, "the test database's daemon is named");

  char *other = tu_tmpdir(), lock[4200], pid[32];
  cr_assert_not_null(other, "a second directory");
  snprintf(lock, sizeof lock, "%s/LOCK", other);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  int n = snprintf(pid, sizeof pid, "%d\n", (int)theirs);
  cr_assert(fd >= 0 && write(fd, pid, (size_t)n) == n, "a LOCK naming that daemon");
  cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0, "held by this process, as a daemon would hold it");

  cr_assert_eq(sdb_daemon_pid(other), 0, "a daemon that does not hold the LOCK is not its daemon");
  cr_assert_eq(sdb_daemon_stop(other, SIGTERM, 200), SOCHDB_BUSY, "the LOCK stays held: nobody stopped");
  tu_sleep_ms(50);
  cr_assert_eq(kill(theirs, 0), 0, "the other database's daemon was not signalled");
  cr_assert_eq(sdb_daemon_pid(tu_dir()), theirs, "and its own directory still names it");

  close(fd);
  cr_assert_eq(tu_rmrf(other), 0, "remove %s", other);
  free(other);
}

/* A flag's value outside its range is refused with the range, exit 2:
** zero for --sync-delay-ms or --interval-ms used to end the daemon with no
** word, and the message said 0 was allowed. */
Test(sochdbd, a_flag_out_of_its_range_is_refused_with_the_range)
{
  static const struct { const char *flag, *value, *says; } cases[] = {
    { "--sync-delay-ms", "0", "takes 1..1000" },   { "--interval-ms", "0", "takes 1..60000" },
    { "--interval-ms", "70000", "takes 1..60000" }, { "--l0-trigger", "1", "takes 2..1000" },
    { "--level-ratio", "-3", "takes 2..1000" },     { "--spare-ms", "x", "takes 0..60000" },
    { "--compress-from-level", "9", "takes 0..8" },
    { "--l0-unthrottle", "2049", "takes 0..2048" },
    { "--l0-stop", "3", "takes 0 or --l0-trigger (4)..2048" },
    { "--l0-trigger 8 --l0-unthrottle", "7", "--l0-unthrottle takes 0 or --l0-trigger (8)..2048" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char cmd[8300], out[512] = "";
    snprintf(cmd, sizeof cmd, "'%s' %s %s '%s' 2>&1", SOCHDB_TEST_SOCHDBD, cases[i].flag, cases[i].value, tu_dir());
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s %s: status %d", cases[i].flag, cases[i].value,
              status);
    cr_assert_not_null(strstr(out, cases[i].says), "%s %s said \"%s\"", cases[i].flag, cases[i].value, out);
  }
}

/* ---- a file size limit inherited from the starter ----------------------------- */

/* The daemon inherits the limits of the client that starts it. Under that
** client's `ulimit -f` of 64 KiB (soft; the hard limit above) the daemon's
** first WAL segment past 64 KiB killed it with SIGXFSZ, silently, and the
** daemon started after it too: SYNC commits returned SOCHDB_DAEMON after
** 5 s each. The daemon raises its soft limit to the hard one. */
Test(sochdbd, a_starters_file_size_limit_does_not_kill_the_daemon)
{
  struct rlimit hard;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &hard), 0);
  if (hard.rlim_max != RLIM_INFINITY && hard.rlim_max < (64u << 20))
    cr_skip_test("the hard file size limit here is %llu bytes", (unsigned long long)hard.rlim_max);
  sochdb *db = tu_open(REGION, MT, 2000);   /* the region is made here, without the limit */
  tu_commit_kv(db, "made", "1", SOCHDB_SYNC);
  tu_close();
  tu_stop_daemon(tu_dir());
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(2);
    rl.rlim_cur = 64u << 10;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(3);
    sochdb_options o = tu_options(REGION, MT, 2000);
    sochdb *child = NULL;
    if (sochdb_open(tu_dir(), &o, &child) != SOCHDB_OK)
      _exit(4);
    static char v[4096];
    for (int i = 0; i < 64; i++) {   /* 256 KiB of SYNC commits: the WAL passes 64 KiB */
      char k[32];
      snprintf(k, sizeof k, "limited-%03d", i);
      memset(v, 'a' + i % 26, sizeof v);
      sochdb_txn *t = NULL;
      if (sochdb_txn_begin(child, 0, &t) != SOCHDB_OK || sochdb_put(t, k, strlen(k), v, sizeof v) != SOCHDB_OK)
        _exit(5);
      int rc = sochdb_commit(t, SOCHDB_SYNC);
      if (rc != SOCHDB_OK)
        _exit(10 + rc);
    }
    sochdb_close(child);
    _exit(0);
  }
  int st = 0;
  char how[64];
  cr_assert_eq(tu_wait_child(pid, 100000, &st), 0, "the limited client did not finish in 100 s");
  tu_forget_child(pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the client under a 64 KiB file size limit: %s (exit 10+rc: a "
            "SYNC commit failed; %d: SOCHDB_DAEMON, the daemon died)", tu_status_str(st, how, sizeof how),
            10 + SOCHDB_DAEMON);
}

/* ---- a starter without standard streams ---------------------------------------- */

/* Started with stdin and stdout closed (`sochdbd DIR <&- >&-`), the report
** pipe detach() makes got fds 0 and 1; leave_the_starters_streams then put
** /dev/null and the log over fd 1, the pipe's write end, so the parent half
** saw end-of-file without a verdict and exited 1 while the daemon served.
** sochdbd keeps 0-2 taken before it opens anything, as the CLI does. */
Test(sochdbd, a_starter_without_stdin_and_stdout_hears_that_the_daemon_serves)
{
  sochdb *db = tu_open(REGION, MT, 2000);
  tu_commit_kv(db, "made", "1", SOCHDB_SYNC);
  tu_close();
  tu_stop_daemon(tu_dir());
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    close(0);
    close(1);
    execl(SOCHDB_TEST_SOCHDBD, "sochdbd", tu_dir(), (char *)NULL);
    _exit(127);
  }
  int st = 0;
  char how[64];
  cr_assert_eq(tu_wait_child(pid, 20000, &st), 0, "the starter did not return in 20 s");
  tu_forget_child(pid);
  pid_t served = daemon_pid();
  int alive = kill(served, 0) == 0;
  tu_stop_daemon(tu_dir());
  cr_assert(alive, "the daemon %d serves", (int)served);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the starter's verdict on a daemon that serves: %s",
            tu_status_str(st, how, sizeof how));
}
