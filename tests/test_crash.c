/*
** test_crash.c — kill -9 at every step of a transaction's life.
**
** A forked child arms a test-only crash point (sochdb_test_crash_at, built
** with -DSOCHDB_TESTING=1), writes a,b,c,d = "child" in one transaction and
** commits; the library SIGKILLs it at the armed point. The parent then checks
** what DESIGN.md rule 3 promises:
**   (a) atomicity: a,b,c,d read all "0" or all "child", never a mix, in every
**       snapshot; all "child" once the commit was decided, all "0" when it
**       died before claiming a commit sequence; and a decided commit never
**       disappears again once seen;
**   (b) no wedge: the parent, then a second child, can commit to a,b,c,d
**       within a bounded number of retries;
**   (c) the dead process is reaped (processes_reaped grows) and an unfinished
**       commit of it is rolled back (dead_txns_rolled_back grows);
**   (d) its snapshot does not pin the horizon: with no transaction open, a fresh
**       handle sees oldest_snapshot == last_commit_seq.
** A last test kills a committing child at random instants (no crash point).
**
** All waits are bounded loops of 1 ms sleeps; nothing asserts on timing.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strsignal, nftw, mkdtemp, MAP_ANONYMOUS */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "sochdb.h"
#include "testhooks.h"
#include "testutil.h"

/* From testhooks.h (the library is compiled with -DSOCHDB_TESTING=1):
** the countdown-th time the named point is reached in this process, the
** process SIGKILLs itself; countdown 1 = first time; name NULL disarms. */
void sochdb_test_crash_at(const char *name, unsigned countdown);

TestSuite(crash, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

static const char *const ABCD[4] = { "a", "b", "c", "d" };

/* Exit codes of the crash children. */
enum {
  CC_OPEN = 2,            /* sochdb_open failed */
  CC_BEGIN = 3,           /* sochdb_txn_begin failed (other than by dying) */
  CC_PUT = 4,             /* sochdb_put failed */
  CC_NOT_KILLED = 50,     /* commit returned OK: the armed point was never reached */
  CC_COMMIT = 60,         /* 60 + rc: commit failed instead of dying */
  CC_RETRIES = 7,         /* second child: CONFLICT retries exhausted */
};

#define RETRY_LIMIT   5000u   /* CONFLICT retries, 1 ms apart, before "wedged" */
#define SETTLE_MS     5000u   /* how long a dead commit may take to settle */
#define NUDGE_MS      1000u   /* then a fresh open (which reaps) is tried once */

/* ------------------------------------------------------------------ helpers */

/* Commit keys = value with bounded CONFLICT retries; asserts success. */
static void commit_keys(sochdb *db, const char *const *keys, int n, const char *value, const char *what)
{
  unsigned retries = 0;
  int rc = tu_put_all_retry(db, keys, n, value, SOCHDB_SYNC, RETRY_LIMIT, &retries);
  if (rc == SOCHDB_OK) return;
  const char *err = sochdb_last_error();
  char detail[256];
  snprintf(detail, sizeof detail, "%s", err ? err : "");
  sochdb_stats s;
  memset(&s, 0, sizeof s);
  sochdb_stats_get(db, &s);
  cr_assert_fail("%s: committing '%s' failed with %s after %u retries (%s) — wedged? stats: attached %u, "
                 "open txns %u, last_commit_seq %llu, oldest_snapshot %llu, reaped %llu, rolled back %llu",
                 what, value, sochdb_strerror(rc), retries, detail, s.processes_attached, s.transactions_open,
                 (unsigned long long)s.last_commit_seq, (unsigned long long)s.oldest_snapshot,
                 (unsigned long long)s.processes_reaped, (unsigned long long)s.dead_txns_rolled_back);
}

/* Read keys[0..n) in a fresh read-only txn into vals (C strings; "<absent>" if missing).
** Asserts that every key is present. */
static void read_keys(sochdb *db, const char *const *keys, int n, char vals[][32])
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < n; i++) {
    int rc = tu_get_str(t, keys[i], vals[i], 32);
    cr_assert_eq(rc, SOCHDB_OK, "get(%s): %s — a key vanished", keys[i], sochdb_strerror(rc));
  }
  sochdb_abort(t);
}

enum state4 { S_OLD, S_NEW, S_MIX };
static const char *const STATE_NAME[] = { "all \"0\"", "all \"child\"", "MIXED" };

/* a,b,c,d in a fresh txn, classified. vals receives the four values. */
static enum state4 read4(sochdb *db, char vals[4][32])
{
  read_keys(db, ABCD, 4, vals);
  int old = 0, neu = 0;
  for (int i = 0; i < 4; i++) {
    if (strcmp(vals[i], "0") == 0) old++;
    else if (strcmp(vals[i], "child") == 0) neu++;
  }
  return old == 4 ? S_OLD : (neu == 4 ? S_NEW : S_MIX);
}

static void assert_all4(sochdb *db, const char *want, const char *what)
{
  char v[4][32];
  read_keys(db, ABCD, 4, v);
  for (int i = 0; i < 4; i++)
    cr_assert_str_eq(v[i], want, "%s: %s = '%s', expected '%s'", what, ABCD[i], v[i], want);
}

/* Child: own handle, arm the crash point, write a,b,c,d = "child", commit. Never returns. */
static void child_commit_abcd(const char *dir, const char *name, unsigned k)
{
  sochdb *db = tu_child_open(dir, CC_OPEN);
  sochdb_test_crash_at(name, k);
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK) _exit(CC_BEGIN);
  for (int i = 0; i < 4; i++)
    if (sochdb_put(t, ABCD[i], 1, "child", 5) != SOCHDB_OK) _exit(CC_PUT);
  int rc = sochdb_commit(t, SOCHDB_SYNC);
  _exit(rc == SOCHDB_OK ? CC_NOT_KILLED : CC_COMMIT + rc);
}

/* Child: own handle, commit a,b,c,d = value with bounded retries. Never returns. */
static void child_put_abcd(const char *dir, const char *value)
{
  sochdb *db = tu_child_open(dir, CC_OPEN);
  int rc = tu_put_all_retry(db, ABCD, 4, value, SOCHDB_SYNC, RETRY_LIMIT, NULL);
  if (rc == SOCHDB_CONFLICT) _exit(CC_RETRIES);
  if (rc != SOCHDB_OK) _exit(CC_COMMIT + rc);
  sochdb_close(db);
  _exit(0);
}

/* Fork fn-style child and wait (bounded); returns its status. */
static int fork_crash_child(const char *name, unsigned k)
{
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) child_commit_abcd(tu_db_dir, name, k);
  int st = 0;
  cr_assert_eq(tu_wait_child(pid, 20000, &st), 0, "crash child (%s #%u) did not finish in time", name, k);
  return st;
}

/* With no transaction open anywhere, a fresh handle must see the horizon at the
** newest commit: no dead process's snapshot may pin it. Bounded poll. */
static void assert_horizon_free(const char *what)
{
  sochdb *db2 = tu_open_with(tu_dir(), NULL);   /* opening reaps dead slots */
  sochdb_stats s;
  for (unsigned i = 0; i <= 2000; i++) {
    s = tu_stats(db2);
    if (s.oldest_snapshot == s.last_commit_seq) break;
    tu_sleep_ms(1);
  }
  sochdb_close(db2);
  cr_assert_eq(s.oldest_snapshot, s.last_commit_seq,
               "%s: with no transaction open, oldest_snapshot = %llu stays behind last_commit_seq = %llu "
               "(a dead process's snapshot pins the horizon)",
               what, (unsigned long long)s.oldest_snapshot, (unsigned long long)s.last_commit_seq);
}

/* ------------------------------------------------------- one crash case */

enum expect { EXP_OLD, EXP_NEW, EXP_EITHER };

struct crash_case {
  const char *name;
  unsigned countdown;
  enum expect expect;     /* final state of a,b,c,d */
  int visible_at_once;    /* published before death: visible in the very first snapshot */
  int rolls_back;         /* an unfinished commit must be counted in dead_txns_rolled_back */
  int writer_first;       /* skip (a): write a,b,c,d before anything else (no stats, no open) */
};

/* (a): poll fresh snapshots until the dead process is reaped and a,b,c,d are
** settled (the expected state 20 reads in a row). Every read must be atomic. */
static enum state4 settle(sochdb *db, const struct crash_case *c, uint64_t reaped_before)
{
  enum state4 st = S_OLD;
  int saw_new = 0, stable = 0, reaped = 0, nudged = 0;
  char v[4][32];
  for (unsigned i = 0; i < SETTLE_MS && stable < 20; i++) {
    st = read4(db, v);
    cr_assert_neq(st, S_MIX, "%s #%u: torn commit visible (read %u): a=%s b=%s c=%s d=%s", c->name, c->countdown,
                  i, v[0], v[1], v[2], v[3]);
    if (i == 0 && c->visible_at_once)
      cr_assert_eq(st, S_NEW, "%s #%u: a commit published before the crash is not visible", c->name, c->countdown);
    if (c->expect == EXP_OLD)
      cr_assert_eq(st, S_OLD, "%s #%u: the commit died before claiming a sequence, yet reads %s", c->name,
                   c->countdown, STATE_NAME[st]);
    if (saw_new)
      cr_assert_eq(st, S_NEW, "%s #%u: a commit seen as visible disappeared again", c->name, c->countdown);
    saw_new |= st == S_NEW;

    reaped = tu_stats(db).processes_reaped > reaped_before;
    int want_ok = c->expect == EXP_EITHER || st == (c->expect == EXP_NEW ? S_NEW : S_OLD);
    stable = (reaped && want_ok) ? stable + 1 : 0;

    if (!reaped && !nudged && i >= NUDGE_MS) {
      /* Nobody reaped the dead slot within NUDGE_MS by itself (daemon reaper or a
      ** blocked committer); an open reaps dead slots, so the test goes on, but say so. */
      cr_log_warn("%s #%u: dead process not reaped after %u ms of reads; reaping via a fresh open", c->name,
                  c->countdown, i);
      sochdb *db2 = tu_open_with(tu_dir(), NULL);
      sochdb_close(db2);
      nudged = 1;
    }
    tu_sleep_ms(1);
  }
  cr_assert(reaped, "%s #%u: the killed process was never reaped (processes_reaped did not grow)", c->name,
            c->countdown);
  cr_assert_geq(stable, 20, "%s #%u: a,b,c,d did not settle to the expected state; last read %s", c->name,
                c->countdown, STATE_NAME[st]);
  return st;
}

static void run_crash_case(const struct crash_case *c)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  commit_keys(db, ABCD, 4, "0", "setup");
  sochdb_stats before = tu_stats(db);

  int st = fork_crash_child(c->name, c->countdown);
  char sbuf[64];
  cr_assert(!(WIFEXITED(st) && WEXITSTATUS(st) == CC_NOT_KILLED),
            "crash point \"%s\" (countdown %u) was never reached: the commit completed", c->name, c->countdown);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
            "crash child for \"%s\" #%u ended with %s, expected SIGKILL (exit 2 open, 3 begin, 4 put, 60+rc commit)",
            c->name, c->countdown, tu_status_str(st, sbuf, sizeof sbuf));

  /* (a) atomicity. settle() calls sochdb_stats_get, which may reap; the writer_first
  ** variants skip it so that only the writers themselves can unblock the keys. */
  enum state4 fin = S_OLD;
  int fin_known = 0;
  if (!c->writer_first) {
    fin = settle(db, c, before.processes_reaped);
    fin_known = 1;
  }

  /* (b) no wedge: the parent, then another process, write the same keys. */
  commit_keys(db, ABCD, 4, "parent", c->name);
  assert_all4(db, "parent", "after the parent's commit");
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) child_put_abcd(tu_db_dir, "second");
  int st2 = 0;
  cr_assert_eq(tu_wait_child(pid, 20000, &st2), 0, "%s: second writer did not finish in time", c->name);
  cr_assert(WIFEXITED(st2) && WEXITSTATUS(st2) == 0,
            "%s: second writer ended with %s (7 = CONFLICT retries exhausted, 60+rc commit)", c->name,
            tu_status_str(st2, sbuf, sizeof sbuf));
  assert_all4(db, "second", "after the second process's commit");

  /* (c) stats */
  sochdb_stats after = tu_stats(db);
  for (unsigned i = 0; i < 2000 && after.processes_reaped <= before.processes_reaped; i++) {
    tu_sleep_ms(1);
    after = tu_stats(db);
  }
  cr_assert_gt(after.processes_reaped, before.processes_reaped, "%s: processes_reaped did not grow", c->name);
  /* An unfinished commit that ended wholly absent was rolled back: commit.install always
  ** (it never claimed a sequence), commit.claim_seq when it settled to the old state. */
  if (c->rolls_back || (fin_known && c->expect == EXP_EITHER && fin == S_OLD)) {
    for (unsigned i = 0; i < 2000 && after.dead_txns_rolled_back <= before.dead_txns_rolled_back; i++) {
      tu_sleep_ms(1);
      after = tu_stats(db);
    }
    cr_assert_gt(after.dead_txns_rolled_back, before.dead_txns_rolled_back,
                 "%s #%u: the dead process's unfinished commit was not counted in dead_txns_rolled_back (%llu)",
                 c->name, c->countdown, (unsigned long long)after.dead_txns_rolled_back);
  }

  /* (d) the dead process's snapshot (if any) no longer holds the horizon back. */
  sochdb_close(db);
  assert_horizon_free(c->name);
}

#define CRASH_TEST(tname, point, k, exp, at_once, rb, wf)                               \
  Test(crash, tname)                                                                    \
  {                                                                                     \
    static const struct crash_case c = { point, k, exp, at_once, rb, wf };              \
    run_crash_case(&c);                                                                 \
  }

/*         test name                         point                 k  final       at once rolls back writer first */
CRASH_TEST(kill_after_put_buffered,          "put.buffered",       1, EXP_OLD,    0,      0,         0)
CRASH_TEST(kill_holding_snapshot,            "txn.begin.snapshot", 1, EXP_OLD,    0,      0,         0)
CRASH_TEST(kill_after_install_1,             "commit.install",     1, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_install_2,             "commit.install",     2, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_install_3,             "commit.install",     3, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_claim_seq,             "commit.claim_seq",   1, EXP_EITHER, 0,      0,         0)
CRASH_TEST(kill_after_decided,               "commit.decided",     1, EXP_NEW,    0,      0,         0)
CRASH_TEST(kill_after_stamped,               "commit.stamped",     1, EXP_NEW,    0,      0,         0)
CRASH_TEST(kill_after_published,             "commit.published",   1, EXP_NEW,    1,      0,         0)
/* The same deaths, but the survivors' first act is to write the dead commit's keys: the
** writers alone must get past whatever the dead process left on them (no stats, no open). */
CRASH_TEST(writer_first_after_install_2,     "commit.install",     2, EXP_OLD,    0,      1,         1)
CRASH_TEST(writer_first_after_claim_seq,     "commit.claim_seq",   1, EXP_EITHER, 0,      0,         1)
CRASH_TEST(writer_first_after_decided,       "commit.decided",     1, EXP_NEW,    0,      0,         1)
CRASH_TEST(writer_first_after_stamped,       "commit.stamped",     1, EXP_NEW,    0,      0,         1)
CRASH_TEST(writer_first_after_published,     "commit.published",   1, EXP_NEW,    1,      0,         1)

/* --------------------------------------------- random kills, no crash point */

#define RR_ROUNDS   30
#define RR_COMMITS  200000   /* the child's loop bound; it is killed long before */

static const char *const XYZ[3] = { "x", "y", "z" };

/* Child: commit x,y,z = "r<round>-<n>" for n = 0,1,2,...; after each commit that
** returned OK, publish n in *acked. Writes one byte to ready_fd once open. */
static void rr_child(int round, int ready_fd, int64_t *acked)
{
  sochdb *db = tu_child_open(tu_db_dir, CC_OPEN);
  /* In odd rounds the parent does not wait for this byte and may have closed the pipe. */
  signal(SIGPIPE, SIG_IGN);
  char one = 1;
  ssize_t w = write(ready_fd, &one, 1);
  (void)w;
  close(ready_fd);
  for (int64_t n = 0; n < RR_COMMITS;) {
    char v[32];
    snprintf(v, sizeof v, "r%d-%lld", round, (long long)n);
    sochdb_txn *t = NULL;
    if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK) _exit(CC_BEGIN);
    for (int i = 0; i < 3; i++)
      if (sochdb_put(t, XYZ[i], 1, v, strlen(v)) != SOCHDB_OK) _exit(CC_PUT);
    int rc = sochdb_commit(t, (n & 1) ? SOCHDB_ASYNC : SOCHDB_SYNC);
    if (rc == SOCHDB_OK) {
      __atomic_store_n(acked, n, __ATOMIC_RELEASE);
      n++;
    } else if (rc != SOCHDB_CONFLICT) {
      _exit(CC_COMMIT + rc);
    }
  }
  sochdb_close(db);
  _exit(0);
}

/* Check x,y,z after round's child died: equal, and holding either the last
** acknowledged commit or the one after it (or, if none was acknowledged,
** prev or the child's first). Returns the child's n seen, or -1 for prev. */
static int64_t rr_check(sochdb *db, int round, int64_t acked, const char *prev)
{
  char v[3][32];
  read_keys(db, XYZ, 3, v);
  cr_assert(strcmp(v[0], v[1]) == 0 && strcmp(v[1], v[2]) == 0,
            "round %d: torn commit visible: x=%s y=%s z=%s", round, v[0], v[1], v[2]);
  if (strcmp(v[0], prev) == 0) {
    cr_assert_eq(acked, -1, "round %d: commit %lld was acknowledged but x,y,z still read '%s': lost", round,
                 (long long)acked, prev);
    return -1;
  }
  int r = -1;
  long long n = -1;
  char tail;
  cr_assert(sscanf(v[0], "r%d-%lld%c", &r, &n, &tail) == 2 && r == round,
            "round %d: unexpected value '%s' (previous '%s')", round, v[0], prev);
  cr_assert(n == acked || n == acked + 1,
            "round %d: x,y,z = commit %lld, but the last acknowledged commit is %lld", round, n, (long long)acked);
  return n;
}

Test(crash, random_kill_during_commits)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  commit_keys(db, XYZ, 3, "init", "setup");
  int64_t *acked = tu_shared_alloc(sizeof(int64_t) * RR_ROUNDS);
  cr_assert_not_null(acked, "mmap shared array");
  unsigned seed = 4242u;
  char prev[32] = "init";
  int killed = 0;

  for (int round = 0; round < RR_ROUNDS; round++) {
    acked[round] = -1;
    int fds[2];
    cr_assert_eq(pipe(fds), 0, "pipe: %s", strerror(errno));
    pid_t pid = tu_fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
      close(fds[0]);
      rr_child(round, fds[1], &acked[round]);
    }
    close(fds[1]);
    /* Even rounds: kill inside the commit loop; odd rounds: anywhere, open included. */
    if (round % 2 == 0) {
      char b;
      int r = tu_read_byte(fds[0], 20000, &b);
      cr_assert_eq(r, 1, "round %d: child did not report its open", round);
    }
    close(fds[0]);
    tu_sleep_us(rand_r(&seed) % 5001u);
    kill(pid, SIGKILL);
    int st = 0;
    char sbuf[64];
    cr_assert_eq(tu_wait_child(pid, 20000, &st), 0, "round %d: killed child not reaped in time", round);
    cr_assert((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) || (WIFEXITED(st) && WEXITSTATUS(st) == 0),
              "round %d: child ended with %s before it was killed (2 open, 3 begin, 4 put, 60+rc commit)", round,
              tu_status_str(st, sbuf, sizeof sbuf));
    killed += WIFSIGNALED(st);

    /* Atomic and not lost, in several fresh snapshots; a decided commit may appear later, never vanish. */
    int64_t a = __atomic_load_n(&acked[round], __ATOMIC_ACQUIRE);
    int64_t seen = -2;
    for (int i = 0; i < 10; i++) {
      int64_t s = rr_check(db, round, a, prev);
      cr_assert_geq(s, seen, "round %d: visible state went back from %lld to %lld", round, (long long)seen,
                    (long long)s);
      seen = s;
    }

    /* Not wedged: the parent writes the same keys. */
    snprintf(prev, sizeof prev, "p%d", round);
    commit_keys(db, XYZ, 3, prev, "random kill");
    char v[3][32];
    read_keys(db, XYZ, 3, v);
    for (int i = 0; i < 3; i++)
      cr_assert_str_eq(v[i], prev, "round %d: parent's commit not visible in %s", round, XYZ[i]);
  }
  cr_log_info("random kills: %d of %d children were killed mid-run", killed, RR_ROUNDS);
  tu_shared_free(acked, sizeof(int64_t) * RR_ROUNDS);
  sochdb_close(db);
  assert_horizon_free("after random kills");
}
