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

#include <dirent.h>
#include <fcntl.h>

#include "arena.h"
#include "internal.h"
#include "mvcc.h"
#include "skiplist.h"
#include "seqring.h"
#include "slots.h"
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

/* Child: arm the crash point, write a,b,c,d = "child" through db, commit
** with flags. Never returns. */
static void commit_abcd_flags_until_killed(sochdb *db, const char *name, unsigned k, unsigned flags)
{
  sochdb_test_crash_at(name, k);
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK)
    _exit(CC_BEGIN);
  for (int i = 0; i < 4; i++)
    if (sochdb_put(t, ABCD[i], 1, "child", 5) != SOCHDB_OK)
      _exit(CC_PUT);
  int rc = sochdb_commit(t, flags);
  _exit(rc == SOCHDB_OK ? CC_NOT_KILLED : CC_COMMIT + rc);
}

/* The same, SYNC. */
static void commit_abcd_until_killed(sochdb *db, const char *name, unsigned k)
{
  commit_abcd_flags_until_killed(db, name, k, SOCHDB_SYNC);
}

/* Child: the same through its own handle. Never returns. */
static void child_commit_abcd(const char *dir, const char *name, unsigned k)
{
  commit_abcd_until_killed(tu_child_open(dir, CC_OPEN), name, k);
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
CRASH_TEST(kill_after_listing_1,             "commit.listed",      1, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_listing_2,             "commit.listed",      2, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_install_1,             "commit.install",     1, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_install_2,             "commit.install",     2, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_install_3,             "commit.install",     3, EXP_OLD,    0,      1,         0)
CRASH_TEST(kill_after_claim_seq,             "commit.claim_seq",   1, EXP_EITHER, 0,      0,         0)
CRASH_TEST(kill_after_decided,               "commit.decided",     1, EXP_NEW,    0,      0,         0)
CRASH_TEST(kill_after_stamped,               "commit.stamped",     1, EXP_NEW,    0,      0,         0)
CRASH_TEST(kill_after_published,             "commit.published",   1, EXP_NEW,    1,      0,         0)
/* The same deaths, but the survivors' first act is to write the dead commit's keys: the
** writers alone must get past whatever the dead process left on them (no stats, no open). */
CRASH_TEST(writer_first_after_listing_2,     "commit.listed",      2, EXP_OLD,    0,      1,         1)
CRASH_TEST(writer_first_after_install_2,     "commit.install",     2, EXP_OLD,    0,      1,         1)
CRASH_TEST(writer_first_after_claim_seq,     "commit.claim_seq",   1, EXP_EITHER, 0,      0,         1)
CRASH_TEST(writer_first_after_decided,       "commit.decided",     1, EXP_NEW,    0,      0,         1)
CRASH_TEST(writer_first_after_stamped,       "commit.stamped",     1, EXP_NEW,    0,      0,         1)
CRASH_TEST(writer_first_after_published,     "commit.published",   1, EXP_NEW,    1,      0,         1)

/* ------------------------- a prefork parent killed while its worker lives */

/* The slot's liveness lock belongs to the region's open file description,
** which a mapping holds as much as a descriptor does. A fork child that kept
** its parent's mapping would keep the dead parent's lock: the parent would
** never be reaped, and the sequence it claimed would hold every later commit
** back for as long as the child lived (db.c, after_fork_child). */

/* The worker: forked by a process that has the database open, as a prefork
** server forks. It opens its own handle, sends its pid on ready_fd, and lives
** until hold_fd reads end-of-file (the test closes it, or ends). */
static void prefork_worker(const char *dir, int ready_fd, int hold_fd)
{
  sochdb *db = tu_child_open(dir, CC_OPEN);
  pid_t me = getpid();
  if (write(ready_fd, &me, sizeof me) != (ssize_t)sizeof me) _exit(CC_OPEN);
  char c;
  while (read(hold_fd, &c, 1) < 0 && errno == EINTR) {}
  sochdb_close(db);
  _exit(0);
}

/* The parent: open, fork the worker, then die in a commit at
** commit.claim_seq, holding a sequence nobody decided. Never returns. */
static void prefork_parent(const char *dir, int ready_fd, int hold_fd)
{
  sochdb *db = tu_child_open(dir, CC_OPEN);
  pid_t w = fork();
  if (w < 0) _exit(CC_OPEN);
  if (w == 0) prefork_worker(dir, ready_fd, hold_fd);
  commit_abcd_until_killed(db, "commit.claim_seq", 1);
}

Test(crash, a_process_killed_mid_commit_is_reaped_while_its_fork_child_lives)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  commit_keys(db, ABCD, 4, "0", "setup");
  sochdb_stats before = tu_stats(db);
  int ready[2], hold[2];
  cr_assert(pipe(ready) == 0 && pipe(hold) == 0, "pipe: %s", strerror(errno));
  pid_t parent = tu_fork();
  cr_assert_geq(parent, 0, "fork: %s", strerror(errno));
  if (parent == 0) {
    close(ready[0]);
    close(hold[1]);   /* so that the worker sees end-of-file when the test closes its end */
    prefork_parent(tu_db_dir, ready[1], hold[0]);
  }
  close(ready[1]);
  close(hold[0]);
  pid_t worker = 0;
  struct pollfd pf = { .fd = ready[0], .events = POLLIN };
  cr_assert(poll(&pf, 1, 20000) == 1 && read(ready[0], &worker, sizeof worker) == (ssize_t)sizeof worker,
            "the fork child never said it had opened the database");
  int st = 0;
  char sbuf[64];
  cr_assert_eq(tu_wait_child(parent, 20000, &st), 0, "the parent did not die in its commit in time");
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the parent ended with %s, expected SIGKILL at "
            "commit.claim_seq", tu_status_str(st, sbuf, sizeof sbuf));

  /* Another process commits while the worker lives: it must get past the
  ** dead parent's undecided sequence. Bounded: a wedge fails the test. */
  pid_t writer = tu_fork();
  cr_assert_geq(writer, 0, "fork: %s", strerror(errno));
  if (writer == 0) child_put_abcd(tu_db_dir, "second");
  int late = tu_wait_child(writer, 30000, &st);
  cr_assert_eq(kill(worker, 0), 0, "the worker was gone before the commit ended, so this proves nothing");
  cr_assert(late == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "the second writer %s %s (7: CONFLICT retries exhausted on the dead parent's keys) while the "
            "parent's fork child lived: the child kept the parent's slot lock, so the parent was never reaped",
            late ? "was killed after 30 s," : "ended with", tu_status_str(st, sbuf, sizeof sbuf));
  assert_all4(db, "second", "after the second process's commit");
  cr_assert_gt(tu_stats(db).processes_reaped, before.processes_reaped, "the dead parent was not counted as reaped");
  close(hold[1]);   /* the worker leaves */
  close(ready[0]);
  sochdb_close(db);
}

/* ------------------------- killed between linking a node and hashing it */

/* Child: arm `point` and commit key with the value "child": killed after it
** linked the key's new node into the skiplist, before the hash index holds
** it (shm/skiplist.h): at once (insert.linked), or with its version in the
** node's chain (commit.installed_unhashed, src/txn.c). Never returns. */
static void child_insert_killed(const char *dir, const char *point, const char *key)
{
  sochdb *db = tu_child_open(dir, CC_OPEN);
  sochdb_test_crash_at(point, 1);
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK)
    _exit(CC_BEGIN);
  if (sochdb_put(t, key, strlen(key), "child", 5) != SOCHDB_OK) _exit(CC_PUT);
  int rc = sochdb_commit(t, SOCHDB_SYNC);
  _exit(rc == SOCHDB_OK ? CC_NOT_KILLED : CC_COMMIT + rc);
}

/* Child: a process of its own reads key; exit 0 if it holds want. */
static void child_expect(const char *dir, const char *key, const char *want)
{
  sochdb *db = tu_child_open(dir, CC_OPEN);
  char v[32];
  int rc = tu_read_str(db, key, v, sizeof v);
  _exit(rc == SOCHDB_OK && strcmp(v, want) == 0 ? 0 : 1);
}

/* The node the dead writer left holds no committed version, so the key is
** absent. The next writer of the key finds that node without a hash entry,
** marks the memtable's index incomplete (and reaps the dead writer's intent
** where it left one), and its commit is then found by every get: in this
** process and in another. */
static void kill_between_linking_and_hashing(const char *point)
{
  static const char *const FRESH[1] = { "fresh" };
  sochdb *db = tu_open_with(tu_dir(), NULL);
  commit_keys(db, ABCD, 4, "0", "setup");
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) child_insert_killed(tu_db_dir, point, FRESH[0]);
  int st = 0;
  char sbuf[64];
  cr_assert_eq(tu_wait_child(pid, 20000, &st), 0, "the inserting child did not finish in time");
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the inserting child ended with %s, expected SIGKILL",
            tu_status_str(st, sbuf, sizeof sbuf));

  shm_region *r = &db->region;
  uint32_t mt = arena_active(r);
  uint64_t node = sl_find(r, mt, "fresh", 5);
  cr_assert_neq(node, 0, "the killed writer's node is not in the active memtable's list");
  const struct sl_node *n = shm_at(r, node);
  int intent = strcmp(point, "insert.linked") != 0;   /* killed with its version in the node's chain */
  cr_assert_eq(atomic_load(&n->versions) != 0, intent, "the node %s a version after a kill at %s",
               intent ? "lacks" : "holds", point);
  cr_assert_eq(sl_lookup(r, mt, "fresh", 5, sl_hash("fresh", 5)), 0, "the killed writer's node was hashed");
  cr_assert(sl_index_complete(r, mt), "the index is marked incomplete before anyone found the node");
  char v[32];
  cr_assert_eq(tu_read_str(db, "fresh", v, sizeof v), SOCHDB_NOTFOUND, "the dead commit's key is present");

  commit_keys(db, FRESH, 1, "parent", "the writer after the dead one");
  cr_assert(!sl_index_complete(r, mt), "the writer that found the unhashed node left the index complete");
  cr_assert_eq(tu_read_str(db, "fresh", v, sizeof v), SOCHDB_OK, "the commit after the dead one is not found");
  cr_assert_str_eq(v, "parent", "fresh = '%s' after the commit of \"parent\"", v);
  pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) child_expect(tu_db_dir, "fresh", "parent");
  cr_assert_eq(tu_wait_child(pid, 20000, &st), 0, "the reading child did not finish in time");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "another process did not read fresh = \"parent\" (%s)",
            tu_status_str(st, sbuf, sizeof sbuf));
  sochdb_close(db);
}

Test(crash, kill_between_linking_and_hashing_a_node)
{
  kill_between_linking_and_hashing("insert.linked");
}

/* A new key's node is hashed only after the version is in its chain: killed
** in between, the writer leaves its intent on an unhashed node. */
Test(crash, kill_between_installing_a_version_and_hashing_its_new_node)
{
  kill_between_linking_and_hashing("commit.installed_unhashed");
}

/* ------------------------------------ killed while waiting for memtable room */

/* A committer that finds every memtable arena full waits for the daemon to
** flush one, holding intents in memtables and a commit epoch it refreshed
** (txn.c, make_room) that the flusher waits for before it seals a memtable.
** Killed there (crash point commit.wait_room), it must not wedge anyone:
** the child fills the region with no daemon running until it waits, the
** parent then starts a daemon (by opening), which must reap the child, flush
** and give room back; every commit the child had acknowledged is there and
** the one it died in is not. */
#define WR_VAL 1000

static void wr_key(long i, char *k) { snprintf(k, 32, "room/%07ld", i); }

/* Child: one 1 KB put per ASYNC commit into small memtables, publishing how
** many were acknowledged, until the armed crash point kills it. */
static void fill_until_killed_at(const char *point, volatile long *acked)
{
  sochdb_options o = tu_options(16u << 20, 1u << 20, 60000);
  sochdb *db;
  if (sochdb_open(tu_db_dir, &o, &db) != SOCHDB_OK)
    _exit(CC_OPEN);
  sochdb_test_crash_at(point, 1);
  char k[32], v[WR_VAL];
  memset(v, 'r', sizeof v);
  for (long i = 0; i < 1000000; i++) {
    sochdb_txn *t;
    if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK)
      _exit(CC_BEGIN);
    wr_key(i, k);
    if (sochdb_put(t, k, strlen(k), v, sizeof v) != SOCHDB_OK)
      _exit(CC_PUT);
    int rc = sochdb_commit(t, SOCHDB_ASYNC);
    if (rc != SOCHDB_OK)
      _exit(CC_COMMIT + rc);
    *acked = i + 1;
  }
  _exit(CC_NOT_KILLED);
}

/* With no daemon (nothing flushes), fork a child that fills memtables until
** crash point `point` kills it; returns how many commits it acknowledged. */
static long filler_killed_at(const char *point, volatile long *acked)
{
  sochdb_test_without_daemon(1);
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0)
    fill_until_killed_at(point, acked);
  int st = 0;
  cr_assert_eq(tu_wait_child(pid, 60000, &st), 0, "the filling child did not finish in time");
  char sbuf[64];
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child ended with %s, not at %s (2 open, 3 begin, "
            "4 put, 50 never reached it, 60+rc commit)", tu_status_str(st, sbuf, sizeof sbuf), point);
  return *acked;
}

Test(crash, kill_while_waiting_for_memtable_room)
{
  volatile long *acked = tu_shared_alloc(sizeof *acked);
  cr_assert_not_null(acked);
  long n = filler_killed_at("commit.wait_room", acked);   /* it fills every arena, then waits */
  cr_assert_gt(n, 1000, "the child acknowledged %ld commits before it had to wait", n);

  sochdb_test_without_daemon(0);   /* a daemon starts with this open */
  sochdb *db = tu_open_with(tu_dir(), NULL);
  char k[32];
  /* One commit, begun while every arena is still full: it waits for room
  ** (busy_timeout_ms, 10 s), which the daemon makes once it has reaped the
  ** dead committer. Its own snapshot's view must not hold the arenas back. */
  sochdb_txn *t;
  cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
  cr_assert_eq(sochdb_put(t, "after", 5, "room", 4), SOCHDB_OK);
  int rc = sochdb_commit(t, SOCHDB_SYNC);
  cr_assert_eq(rc, SOCHDB_OK, "no room came back after the waiting committer died: %s (%s)", sochdb_strerror(rc),
               sochdb_last_error());
  sochdb_stats s = tu_stats(db);
  cr_assert_gt(s.flushes, 0u, "the daemon flushed past the dead committer's epoch");
  cr_assert_gt(s.processes_reaped, 0u, "the dead committer was reaped");

  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK);
  const void *v;
  size_t vlen;
  for (long i = 0; i < n; i++) {
    wr_key(i, k);
    rc = sochdb_get(t, k, strlen(k), &v, &vlen);
    cr_assert_eq(rc, SOCHDB_OK, "acknowledged commit %s lost: %s", k, sochdb_strerror(rc));
    cr_assert_eq(vlen, WR_VAL, "%s has %zu bytes", k, vlen);
  }
  wr_key(n, k);
  cr_assert_eq(sochdb_get(t, k, strlen(k), &v, &vlen), SOCHDB_NOTFOUND, "the commit the child died in (%s) "
               "is visible", k);
  sochdb_abort(t);
  sochdb_close(db);
  tu_shared_free((void *)acked, sizeof *acked);
}

/* ------------------------------- killed rotating, between its mask and LIVE */

/* A rotator sets its fresh arena's bit in viewable_memtables before it
** marks the arena LIVE (arena.c). Killed between the two (crash point
** rotate.viewable), it leaves an arena CLAIMED by a dead slot whose bit
** says "maybe viewable". The reaper must give the arena back: the parent
** (no daemon, so nothing else frees an arena) then fills every arena of
** the region, the orphan included, and views that meet the stale bit skip
** the arena until it is LIVE again. Every commit the child acknowledged is
** there, and the one it died in is not. */
/* Keys wr_key(from..to-1) read back with WR_VAL bytes; wr_key(to) is absent when absent_after. */
static void rv_expect_keys(sochdb *db, long from, long to, int absent_after, const char *ctx)
{
  sochdb_txn *t;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK);
  char k[32];
  const void *v;
  size_t vlen;
  for (long i = from; i < to; i++) {
    wr_key(i, k);
    int rc = sochdb_get(t, k, strlen(k), &v, &vlen);
    cr_assert_eq(rc, SOCHDB_OK, "%s: acknowledged commit %s lost: %s", ctx, k, sochdb_strerror(rc));
    cr_assert_eq(vlen, WR_VAL, "%s: %s has %zu bytes", ctx, k, vlen);
  }
  wr_key(to, k);
  if (absent_after)
    cr_assert_eq(sochdb_get(t, k, strlen(k), &v, &vlen), SOCHDB_NOTFOUND, "%s: %s is visible", ctx, k);
  sochdb_abort(t);
}

Test(crash, kill_between_viewable_and_live)
{
  volatile long *acked = tu_shared_alloc(sizeof *acked);
  cr_assert_not_null(acked);
  long n = filler_killed_at("rotate.viewable", acked);
  cr_assert_gt(n, 100, "the child acknowledged %ld commits before its first rotation", n);

  /* Still no daemon: this open reaps the child, and only the reaper can free the orphan. */
  sochdb_options o = tu_options(16u << 20, 1u << 20, 200);
  sochdb *db = tu_open_with(tu_dir(), &o);
  shm_region *r = &db->region;
  cr_assert_gt(tu_stats(db).processes_reaped, 0u, "the dead rotator was reaped");
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++)
    cr_assert_neq(mt_state_of(mt_load(arena_memtable(r, i))), MT_CLAIMED,
                  "arena %u is still CLAIMED after its claimer was reaped", i);
  rv_expect_keys(db, 0, n, 1, "after the reap");

  char k[32], v[WR_VAL];
  memset(v, 'p', sizeof v);
  long i = n + 1, rc = SOCHDB_OK;   /* wr_key(n): the dead commit's key, left absent */
  for (; rc == SOCHDB_OK; i++) {
    sochdb_txn *t;
    cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
    wr_key(i, k);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, sizeof v), SOCHDB_OK);
    rc = sochdb_commit(t, SOCHDB_ASYNC);
  }
  cr_assert_eq(rc, SOCHDB_BUSY, "filling the region ended with %s, not SOCHDB_BUSY", sochdb_strerror((int)rc));
  sochdb_stats s = tu_stats(db);
  cr_assert_eq(s.memtables_in_use, s.memtables_total, "with every arena full, %u of %u hold a memtable: the dead "
               "rotator's arena was not given back", s.memtables_in_use, s.memtables_total);
  long last = i - 1;   /* wr_key(last) is the commit that found no room */
  sochdb_close(db);

  sochdb_test_without_daemon(0);   /* a daemon starts with this open, flushes, and everything is there */
  db = tu_open_with(tu_dir(), NULL);
  rv_expect_keys(db, 0, n, 1, "child's commits, with a daemon");
  rv_expect_keys(db, n + 1, last, 1, "parent's commits, with a daemon");
  sochdb_close(db);
  tu_shared_free((void *)acked, sizeof *acked);
}

/* ------------------------- killed rotating, after winning, still claiming */

/* Commit key = val, ASYNC, at once. */
static void put_now(sochdb *db, const char *key, const char *val)
{
  sochdb_txn *t;
  cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
  cr_assert_eq(sochdb_put(t, key, strlen(key), val, strlen(val)), SOCHDB_OK);
  int rc = sochdb_commit(t, SOCHDB_ASYNC);
  cr_assert_eq(rc, SOCHDB_OK, "commit %s: %s (%s)", key, sochdb_strerror(rc), sochdb_last_error());
}

static void expect_value(sochdb *db, const char *key, const char *want, const char *when)
{
  sochdb_txn *t;
  const void *v;
  size_t vlen;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK);
  int rc = sochdb_get(t, key, strlen(key), &v, &vlen);
  cr_assert(rc == SOCHDB_OK && vlen == strlen(want) && memcmp(v, want, vlen) == 0, "%s: %s reads %s%.*s, want %s",
            when, key, rc == SOCHDB_OK ? "" : sochdb_strerror(rc), rc == SOCHDB_OK ? (int)vlen : 0,
            rc == SOCHDB_OK ? (const char *)v : "", want);
  sochdb_abort(t);
}

/* A rotator killed right after the CAS that made its arena active, before
** it dropped its claim on it (crash point rotate.swung). Writers write into
** that arena and rotate past it while the claim stays: the daemon's reaper
** runs once a minute here, and the test reads no stats (they reap too).
** The memtable after it must not be flushed first: memtables leave the
** views oldest first and a get searches L0 newest file first, so a key
** written in both would read its older value from then on. Once the claim
** is dropped the two are flushed in order and the key reads its newer
** value throughout. */
Test(crash, a_rotator_killed_still_claiming_the_active_arena_is_flushed_in_order)
{
  char script[PATH_MAX];
  sochdb_options o = tu_options(16u << 20, 1u << 20, 5000);
  o.daemon_path = tu_daemon_script(script, sizeof script, SOCHDB_TEST_SOCHDBD, "--interval-ms 60000");
  sochdb *db = tu_open_with(tu_dir(), &o);
  tu_sleep_ms(300);   /* past the daemon's first reap, at its start: the next is a minute away */
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    sochdb *mine;
    if (sochdb_open(tu_dir(), &o, &mine) != SOCHDB_OK)
      _exit(2);
    sochdb_test_crash_at("rotate.swung", 1);
    tu_rotate(mine);
    _exit(50);
  }
  int st = 0;
  cr_assert_eq(tu_wait_child(pid, 20000, &st), 0, "the rotating child did not finish in time");
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child was not killed at rotate.swung (status %#x)", st);
  shm_region *r = &db->region;
  uint32_t claimed = arena_active(r);
  cr_assert_neq(mt_claimer_of(mt_load(arena_memtable(r, claimed))), 0, "the dead rotator claims the active arena");

  put_now(db, "k", "old");   /* into the claimed arena */
  tu_rotate(db);
  uint32_t newer = arena_active(r);
  put_now(db, "k", "new");
  tu_rotate(db);             /* both wait for their flush */
  for (int i = 0; i < 1000 && !atomic_load(&arena_memtable(r, newer)->flushed_file); i++)
    tu_sleep_ms(1);
  cr_assert_eq(atomic_load(&arena_memtable(r, newer)->flushed_file), 0,
               "the newer memtable was flushed before the older one a dead rotator claims");
  expect_value(db, "k", "new", "while the claim stays");

  sochdb_stats s0 = tu_stats(db);   /* reaps the child: its claim is dropped */
  cr_assert_geq(s0.processes_reaped, 1, "the child was reaped");
  TU_WAIT_STATS(db, s->memtables_in_use <= 1 && s->flushes >= 2, "both flushed once the claim is dropped");
  expect_value(db, "k", "new", "from the SSTables");
  sochdb_close(db);
  unlink(script);
}

/* ------------------------------------------- killed while attaching a slot */

/* An attacher reserves its slot's pages, raises slots_high past it, then
** writes its pid (shm/slots.c). Killed after the reservation
** (slots.reserved) it leaves slots_high where it was; killed after the raise
** (slots.opened) it leaves a scanned slot with no owner. Either way nothing
** waits for it, no phantom process is counted, and the next attacher takes
** the slot. */
static void attach_killed_at(const char *point, uint32_t expect_high)
{
  sochdb *db = tu_open(16u << 20, 1u << 20, 5000);
  shm_region *r = &db->region;
  tu_commit_kv(db, "before", point, SOCHDB_ASYNC);
  uint32_t high = atomic_load(&r->hdr->slots_high);
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    sochdb_test_crash_at(point, 1);
    sochdb *mine = NULL;
    _exit(sochdb_open(tu_db_dir, NULL, &mine) == SOCHDB_OK ? CC_NOT_KILLED : CC_OPEN);
  }
  int st = 0;
  char sbuf[64];
  cr_assert_eq(tu_wait_child(pid, 60000, &st), 0, "the attaching child did not finish in time");
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child ended with %s, not at %s",
            tu_status_str(st, sbuf, sizeof sbuf), point);
  cr_assert_eq(atomic_load(&r->hdr->slots_high), high + expect_high, "%s: slots_high %u, was %u", point,
               atomic_load(&r->hdr->slots_high), high);
  cr_assert_eq(atomic_load(&shm_slot_at(r, high)->owner_pid), 0u, "%s: the dead attacher left its pid", point);
  cr_assert_eq(tu_stats(db).processes_attached, 1u, "%s: a dead attacher is counted", point);
  tu_commit_kv(db, "after", point, SOCHDB_SYNC);
  sochdb *next = tu_open_with(tu_dir(), NULL);
  cr_assert_eq(next->slot, high, "%s: the next attacher takes slot %u, not %u", point, high, next->slot);
  cr_assert_eq(atomic_load(&r->hdr->slots_high), high + 1, "%s: the slot is scanned once attached", point);
  char buf[32];
  cr_assert_eq(tu_read_str(next, "before", buf, sizeof buf), SOCHDB_OK, "%s: before", point);
  cr_assert_eq(tu_read_str(next, "after", buf, sizeof buf), SOCHDB_OK, "%s: after", point);
  cr_assert_str_eq(buf, point);
  tu_commit_kv(next, "next", point, SOCHDB_ASYNC);
  sochdb_close(next);
  tu_close();
}

Test(crash, kill_after_reserving_a_slot) { attach_killed_at("slots.reserved", 0); }

Test(crash, kill_after_raising_slots_high) { attach_killed_at("slots.opened", 1); }

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
    if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK)
    _exit(CC_BEGIN);
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

/* ------------------------------------------------------------ WAL replay */

/* A region rebuilt from the WAL (src/recovery.c) into memtables much smaller
** than the ones the log was written with: the replay spans several of them.
** Each key's history (puts and deletes over many commits, one commit that
** alone is nearly a memtable) must come back whole, newest first, with older
** memtables holding older commits; and after the daemon flushes that
** rebuilt region, a second rebuild must still have everything. */

#define RP_KEYS   3000
#define RP_VLEN   200
#define RP_MAXV   16
#define RP_REGION (64u << 20)

struct rp_hist {
  int n;
  int ver[RP_MAXV];           /* in commit order: a version number (> 0), or -1 for a delete */
};

static void rp_key(int k, char *out) { snprintf(out, 32, "replay/%05d", k); }

static void rp_val(int k, int ver, char *out)   /* RP_VLEN bytes, no NUL */
{
  memset(out, 'a' + (k + ver) % 26, RP_VLEN);
  int n = snprintf(out, 32, "%d:%d:", k, ver);
  out[n] = '.';
}

static void rp_note(struct rp_hist *h, int k, int ver)
{
  cr_assert_lt(h[k].n, RP_MAXV, "history of key %d too long", k);
  h[k].ver[h[k].n++] = ver;
}

static void rp_put(sochdb_txn *t, struct rp_hist *h, int k, int ver)
{
  char key[32], val[RP_VLEN];
  rp_key(k, key);
  if (ver < 0) {
    tu_del_str(t, key);
  } else {
    rp_val(k, ver, val);
    cr_assert_eq(sochdb_put(t, key, strlen(key), val, RP_VLEN), SOCHDB_OK, "put %s", key);
  }
  rp_note(h, k, ver);
}

/* One round of writes: keys in a scrambled order, 8 per transaction, some
** deleted; a quarter of them written again at once by a commit of their own
** (two versions of a key in neighbouring commits). */
static void rp_round(sochdb *db, struct rp_hist *h, int round)
{
  for (int j = 0; j < RP_KEYS; j += 8) {
    sochdb_txn *t = tu_begin(db, 0);
    for (int i = j; i < j + 8 && i < RP_KEYS; i++) {
      int k = (int)((i * 7919L) % RP_KEYS);
      rp_put(t, h, k, (k + round) % 7 == 0 ? -1 : h[k].n + 1);
    }
    tu_commit(t, SOCHDB_ASYNC, "a round of the replay workload");
    for (int i = j; i < j + 8 && i < RP_KEYS; i++) {
      int k = (int)((i * 7919L) % RP_KEYS);
      if (k % 4 != round % 4)
        continue;
      t = tu_begin(db, 0);
      rp_put(t, h, k, h[k].n + 1);
      tu_commit(t, SOCHDB_ASYNC, "a second version");
    }
  }
}

/* Every key reads its last write (absent if deleted) in a fresh snapshot. */
static void rp_check_reads(sochdb *db, const struct rp_hist *h, const char *when)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int k = 0; k < RP_KEYS; k++) {
    char key[32], want[RP_VLEN];
    rp_key(k, key);
    const void *val;
    size_t vlen;
    int rc = sochdb_get(t, key, strlen(key), &val, &vlen);
    int last = h[k].n ? h[k].ver[h[k].n - 1] : -1;
    if (last < 0) {
      cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: deleted key %s reads %s", when, key, sochdb_strerror(rc));
      continue;
    }
    rp_val(k, last, want);
    cr_assert_eq(rc, SOCHDB_OK, "%s: get %s: %s", when, key, sochdb_strerror(rc));
    cr_assert(vlen == RP_VLEN && !memcmp(val, want, RP_VLEN), "%s: %s does not read version %d", when, key, last);
  }
  sochdb_abort(t);
}

/* The live memtables of a rebuilt region nobody else writes to: each a
** well-formed skiplist whose chains are stamped, newest first; older
** memtables hold older commits, min_seq is each one's oldest; and all of
** them together hold each key's whole history. Returns how many there are. */
static uint32_t rp_check_memtables(sochdb *db, const struct rp_hist *h)
{
  shm_region *r = &db->region;
  struct mt_view v;
  arena_view(r, &v);
  static struct {
    int n;
    int ver[RP_MAXV];
    uint64_t seq[RP_MAXV];
  } got[RP_KEYS];
  memset(got, 0, sizeof got);
  uint64_t newer_min = UINT64_MAX;
  for (uint32_t i = 0; i < v.n; i++) {   /* newest first */
    uint32_t mt = v.idx[i];
    uint64_t lo = UINT64_MAX, hi = 0;
    const struct sl_node *prev = NULL;
    for (uint64_t n = sl_seek(r, mt, NULL, 0); n; n = sl_next(r, n)) {
      const struct sl_node *node = shm_at(r, n);
      if (prev)
        cr_assert_lt(sl_compare(sl_key(prev), prev->klen, sl_key(node), node->klen), 0,
                     "memtable %u: level 0 out of order", mt);
      prev = node;
      char key[32];
      int k = -1, used = 0;
      cr_assert_lt(node->klen, sizeof key, "memtable %u: a key of %u bytes", mt, node->klen);
      memcpy(key, sl_key(node), node->klen);
      key[node->klen] = 0;
      int filler = !strcmp(key, "filler");   /* not in the history */
      cr_assert(filler || (sscanf(key, "replay/%d%n", &k, &used) == 1 && used == (int)node->klen && k >= 0 &&
                           k < RP_KEYS),
                "memtable %u holds a stray key %s", mt, key);
      uint64_t last = UINT64_MAX;
      for (uint64_t off = sl_versions(r, node); off;) {
        const struct mv_version *ver = shm_at(r, off);
        uint64_t s = atomic_load(&ver->state);
        cr_assert(s != 0 && s != MV_ABORTED && s < last, "%s: version seq %llu after %llu in its chain", key,
                  (unsigned long long)s, (unsigned long long)last);
        cr_assert_eq(shm_ref_off(r, ver->node), n, "%s: a version names another node", key);
        last = s;
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
        off = shm_ref_off(r, ver->older);
        if (filler)
          continue;
        int vn = -1;
        if (!mv_is_tombstone(ver)) {
          char want[RP_VLEN];
          cr_assert(sscanf((const char *)ver->value, "%*d:%d:", &vn) == 1, "%s: unreadable value", key);
          rp_val(k, vn, want);
          cr_assert(mv_vlen(ver) == RP_VLEN && !memcmp(ver->value, want, RP_VLEN), "%s: version %d damaged", key,
                    vn);
        } else {
          cr_assert_eq(mv_vlen(ver), 0, "%s: a tombstone with a value", key);
        }
        cr_assert_lt(got[k].n, RP_MAXV, "%s: too many versions", key);
        got[k].ver[got[k].n] = vn;
        got[k].seq[got[k].n++] = s;
      }
    }
    for (int level = 1; level < SL_MAX_HEIGHT; level++) {
      const struct sl_node *head = shm_at(r, arena_memtable(r, mt)->arena_off), *p = NULL;
      for (uint64_t n = shm_ref_off(r, atomic_load(&head->next[level])); n;) {
        const struct sl_node *node = shm_at(r, n);
        cr_assert_gt(node->height, level, "memtable %u: node of height %u on level %d", mt, node->height, level);
        cr_assert_eq(sl_find(r, mt, sl_key(node), node->klen), n, "memtable %u: level %d names a stray node", mt,
                     level);
        if (p)
          cr_assert_lt(sl_compare(sl_key(p), p->klen, sl_key(node), node->klen), 0,
                       "memtable %u: level %d out of order", mt, level);
        p = node;
        n = shm_ref_off(r, atomic_load(&node->next[level]));
      }
    }
    cr_assert_neq(hi, 0, "memtable %u of the rebuilt region is empty", mt);
    cr_assert_leq(hi, newer_min, "memtable %u holds commit %llu, newer than commit %llu of a newer memtable", mt,
                  (unsigned long long)hi, (unsigned long long)newer_min);
    cr_assert_eq(atomic_load(&arena_memtable(r, mt)->min_seq), lo, "memtable %u: min_seq is not its oldest commit",
                 mt);
    newer_min = lo;
  }
  for (int k = 0; k < RP_KEYS; k++) {
    cr_assert_eq(got[k].n, h[k].n, "key %d: %d versions after the replay, %d written", k, got[k].n, h[k].n);
    for (int j = 0; j < got[k].n; j++) {
      cr_assert_eq(got[k].ver[j], h[k].ver[h[k].n - 1 - j], "key %d: version %d of the chain is %d, want %d", k, j,
                   got[k].ver[j], h[k].ver[h[k].n - 1 - j]);
      if (j)
        cr_assert_lt(got[k].seq[j], got[k].seq[j - 1], "key %d: versions not newest first across memtables", k);
    }
  }
  return v.n;
}

/* Stop the daemon (SIGTERM: it writes and syncs everything first) and remove the region. */
static void rp_lose_region(void)
{
  tu_close();
  tu_stop_daemon(tu_dir());
  tu_remove_region(tu_dir());
}

Test(crash, replay_into_small_memtables_keeps_every_version)
{
  static struct rp_hist h[RP_KEYS];
  sochdb *db = tu_open(RP_REGION, 16u << 20, 5000);   /* nothing is flushed while the log is written */
  for (int i = 0; i < 600; i++) {                     /* so that the big commit straddles two memtables */
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    tu_commit_kv(db, "filler", v, SOCHDB_ASYNC);
  }
  sochdb_txn *t = tu_begin(db, 0);
  for (int k = 0; k < RP_KEYS; k++)                   /* one commit of ~0.9 MiB */
    rp_put(t, h, k, 1);
  tu_commit(t, SOCHDB_ASYNC, "the big commit");
  for (int round = 1; round <= 3; round++)
    rp_round(db, h, round);
  rp_check_reads(db, h, "before the rebuild");
  cr_assert_eq(tu_stats(db).flushes, 0, "a memtable was flushed: the test needs the whole history in the log");
  rp_lose_region();

  /* Rebuild into 1 MiB memtables, no daemon: nothing flushes them while we look. */
  sochdb_test_without_daemon(1);
  db = tu_open(RP_REGION, 1u << 20, 5000);
  uint32_t memtables = rp_check_memtables(db, h);
  cr_assert_geq(memtables, 4, "the replay filled only %u memtables", memtables);
  rp_check_reads(db, h, "after the rebuild");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  char buf[32];
  cr_assert_eq(tu_get_str(t, "filler", buf, sizeof buf), SOCHDB_OK, "get filler");
  cr_assert_str_eq(buf, "599", "the filler key's last commit");
  sochdb_abort(t);
  tu_close();

  /* With a daemon: the rotated-out memtables are flushed; then more commits,
  ** and a second rebuild from the SSTables and the rest of the log. */
  sochdb_test_without_daemon(0);
  db = tu_open(RP_REGION, 1u << 20, 5000);
  TU_WAIT_STATS(db, s->flushes >= memtables - 1, "the flushes of the rebuilt memtables");
  for (int round = 4; round <= 5; round++)
    rp_round(db, h, round);
  rp_check_reads(db, h, "after the flushes");
  rp_lose_region();
  db = tu_open(RP_REGION, 1u << 20, 5000);
  rp_check_reads(db, h, "after the second rebuild");
  cr_assert_eq(tu_get_str(t = tu_begin(db, SOCHDB_TXN_READONLY), "filler", buf, sizeof buf), SOCHDB_OK, "filler");
  sochdb_abort(t);
  tu_close();
}

/* Updates of a few long keys, out of key order: a memtable holds a node per
** key and a version per update, but the replay counted a node for every
** op (a kilobyte each here) and built each memtable at a few percent of
** its room, so a log that one memtable held needed twenty to be replayed
** and the open failed with BUSY at the size the database ran with. */
#define UL_KEYS 8
#define UL_KLEN 1000

static void ul_key(int k, char *out)
{
  memset(out, 'a' + k, UL_KLEN);
  snprintf(out + UL_KLEN - 8, 9, "%07d", k);   /* the 8 last bytes tell them apart */
}

Test(crash, a_replay_counts_one_node_per_key_not_per_update)
{
  sochdb *db = tu_open(RP_REGION, 16u << 20, 5000);
  char key[UL_KLEN + 1], val[16];
  const int rounds = 2500;   /* 20,000 updates: about 1 MiB as versions, 22 MiB as nodes */
  for (int i = 0; i < rounds; i++) {
    sochdb_txn *t = tu_begin(db, 0);
    for (int k = UL_KEYS - 1; k >= 0; k--) {   /* each transaction writes the keys in descending order */
      ul_key(k, key);
      snprintf(val, sizeof val, "%07d", i);
      cr_assert_eq(sochdb_put(t, key, UL_KLEN, val, 7), SOCHDB_OK);
    }
    tu_commit(t, SOCHDB_ASYNC, "an update of every key");
  }
  cr_assert_eq(tu_stats(db).flushes, 0, "a memtable was flushed: the test needs the whole history in the log");
  rp_lose_region();
  sochdb_test_without_daemon(1);
  sochdb_options o = tu_options(8u << 20, 1u << 20, 5000);   /* a handful of 1 MiB memtables */
  sochdb *small = NULL;
  int rc = sochdb_open(tu_dir(), &o, &small);
  cr_assert_eq(rc, SOCHDB_OK, "replaying 20,000 updates of 8 keys into 1 MiB memtables: %s (%s)",
               sochdb_strerror(rc), sochdb_last_error());
  sochdb_txn *t = tu_begin(small, SOCHDB_TXN_READONLY);
  snprintf(val, sizeof val, "%07d", rounds - 1);
  for (int k = 0; k < UL_KEYS; k++) {
    ul_key(k, key);
    const void *v;
    size_t vl;
    cr_assert_eq(sochdb_get(t, key, UL_KLEN, &v, &vl), SOCHDB_OK, "key %d", k);
    cr_assert(vl == 7 && !memcmp(v, val, 7), "key %d holds %.*s, not the last update", k, (int)vl, (const char *)v);
  }
  sochdb_abort(t);
  sochdb_close(small);
}

/* A log that cannot fit the new region's memtables: the open fails with
** SOCHDB_BUSY and says why, and leaves nothing half made: an open with room
** enough replays it all. */
Test(crash, replay_into_too_small_a_region_is_busy)
{
  static struct rp_hist h[RP_KEYS];
  sochdb *db = tu_open(RP_REGION, 16u << 20, 5000);
  for (int round = 1; round <= 4; round++)
    rp_round(db, h, round);
  rp_lose_region();
  sochdb_options o = tu_options(6u << 20, 1u << 20, 5000);
  sochdb *small = NULL;
  int rc = sochdb_open(tu_dir(), &o, &small);
  cr_assert_eq(rc, SOCHDB_BUSY, "open of a region too small for the log: %s (%s)", sochdb_strerror(rc),
               sochdb_last_error());
  cr_assert_null(small, "a handle on a failed open");
  cr_assert(strstr(sochdb_last_error(), "too small to replay"), "the error says why: %s", sochdb_last_error());
  db = tu_open(RP_REGION, 1u << 20, 5000);     /* the failed region file is made again */
  rp_check_reads(db, h, "after a failed rebuild");
  tu_close();
}

/* Binary keys that differ late, by length or by 0x00 and 0xff bytes (the
** replay sorts them on 8-byte slices after their common prefix, padding
** short keys with zeros), each written several times in scrambled commit
** order: after a rebuild every memtable's list is in sl_compare order and
** every key reads its last value. */
#define BK_KEYS 600

static uint32_t bk_key(int i, uint8_t *out)   /* a shared 5-byte prefix, then 0..14 bytes of 0x00, 0x01, 0xff */
{
  static const uint8_t alphabet[3] = { 0x00, 0x01, 0xff };
  memcpy(out, "pfx\xff\x00", 5);
  uint32_t len = 5 + (uint32_t)(i % 15);
  for (uint32_t b = 5, x = (uint32_t)i; b < len; b++, x /= 3)
    out[b] = alphabet[(x + b) % 3];
  return len;
}

/* Call fn on each regular, non-empty file of dir's log (opened read-only)
** until it returns non-zero; returns that, or 0. */
static int each_wal_file(const char *dir, int (*fn)(const char *path, int fd, void *arg), void *arg)
{
  char wal[4300];
  snprintf(wal, sizeof wal, "%s/wal", dir);
  DIR *d = opendir(wal);
  cr_assert_not_null(d, "opendir %s", wal);
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(d))) {
    char path[8700];
    snprintf(path, sizeof path, "%s/%s", wal, e->d_name);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
      rc = fn(path, fd, arg);
    if (fd >= 0)
      close(fd);
  }
  closedir(d);
  return rc;
}

static int evict_file(const char *path, int fd, void *arg)
{
  (void)path, (void)arg;
  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  return 0;
}

/* A log out of the page cache (evicted with POSIX_FADV_DONTNEED; where the
** directory is on a disk) is read ahead by the replay's reader thread
** (src/recovery.c): every commit is replayed all the same. */
static void evict_wal(const char *dir) { (void)each_wal_file(dir, evict_file, NULL); }

Test(crash, replay_of_a_log_out_of_the_page_cache)
{
  sochdb *db = tu_open(RP_REGION, 16u << 20, 5000);   /* 12 MiB of log, none of it flushed */
  char k[32], v[96];
  enum { N = 80000 };
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "cold/%06d", i);
    snprintf(v, sizeof v, "%064d", i);
    tu_commit_kv(db, k, v, i == N - 1 ? SOCHDB_SYNC : SOCHDB_ASYNC);
  }
  rp_lose_region();
  evict_wal(tu_dir());
  db = tu_open(RP_REGION, 16u << 20, 5000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "cold/%06d", i);
    snprintf(v, sizeof v, "%064d", i);
    tu_expect_str(t, k, v, "replayed from a log out of the page cache");
  }
  sochdb_abort(t);
  tu_close();
}

static int file_start_cold(const char *path, int fd, void *arg)
{
  (void)arg;
  void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
  unsigned char in = 1;
  cr_assert_neq(m, MAP_FAILED, "mmap %s", path);
  cr_assert_eq(mincore(m, 4096, &in), 0, "mincore %s", path);
  munmap(m, 4096);
  return !(in & 1);
}

/* Whether a segment of the log starts out of the page cache: then the
** replay starts its reader thread. mincore, not a read: a read that misses
** starts the kernel's readahead. */
static int wal_is_cold(const char *dir) { return each_wal_file(dir, file_start_cold, NULL); }

#define KR_COMMITS 80000   /* about 12 MiB of log: several 4 MiB memtables, and the reader thread */

static void kr_key(int i, char *k, size_t n) { snprintf(k, n, "kr/%06d", i); }
static void kr_val(int i, char *v, size_t n) { snprintf(v, n, "%064d", i); }

/* A region being rebuilt is published only once the replay is done: an
** opener killed in the middle of it (on its reader thread, after a segment
** is scanned, after a memtable is built, with a window of the memtable
** being laid out in its helper's hands) leaves a region file the next
** opener makes again, and the log is never touched, so every commit is
** replayed then. */
Test(crash, kill_during_replay)
{
  sochdb *db = tu_open(RP_REGION, 16u << 20, 5000);   /* nothing flushed: the whole history is in the log */
  char k[32], v[96];
  for (int i = 0; i < KR_COMMITS; i++) {
    kr_key(i, k, sizeof k);
    kr_val(i, v, sizeof v);
    tu_commit_kv(db, k, v, i == KR_COMMITS - 1 ? SOCHDB_SYNC : SOCHDB_ASYNC);
  }
  cr_assert_eq(tu_stats(db).flushes, 0, "a memtable was flushed: the test needs the whole history in the log");
  rp_lose_region();

  sochdb_test_without_daemon(1);
  static const struct { const char *point; unsigned countdown; } kills[] = {
    { "replay.warming", 2 }, { "replay.scanned", 1 }, { "replay.built", 2 }, { "replay.window", 5 },
  };
  for (size_t i = 0; i < sizeof kills / sizeof kills[0]; i++) {
    evict_wal(tu_dir());
    int cold = wal_is_cold(tu_dir());
    pid_t pid = tu_fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
      sochdb_test_crash_at(kills[i].point, kills[i].countdown);
      sochdb_options o = tu_options(RP_REGION, 4u << 20, 5000);
      sochdb *mine = NULL;
      _exit(sochdb_open(tu_db_dir, &o, &mine) == SOCHDB_OK ? CC_NOT_KILLED : CC_OPEN);
    }
    int st = 0;
    char sbuf[64];
    cr_assert_eq(tu_wait_child(pid, 60000, &st), 0, "the replaying child did not finish in time");
    if (!strcmp(kills[i].point, "replay.warming") && !cold) {
      /* no reader thread where nothing leaves the page cache (tmpfs) */
      cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == CC_NOT_KILLED, "with the log cached the child ended with %s",
                tu_status_str(st, sbuf, sizeof sbuf));
      cr_log_info("the log stayed in the page cache here: replay.warming not reached");
      tu_remove_region(tu_dir());
      continue;
    }
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child ended with %s, not at %s",
              tu_status_str(st, sbuf, sizeof sbuf), kills[i].point);
  }

  db = tu_open(RP_REGION, 4u << 20, 5000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < KR_COMMITS; i++) {
    kr_key(i, k, sizeof k);
    kr_val(i, v, sizeof v);
    tu_expect_str(t, k, v, "replayed after openers were killed replaying");
  }
  sochdb_abort(t);
  tu_commit_kv(db, "after", "replays", SOCHDB_ASYNC);
  tu_close();
  sochdb_test_without_daemon(0);
  db = tu_open(RP_REGION, 4u << 20, 5000);
  char buf[32];
  cr_assert_eq(tu_read_str(db, "after", buf, sizeof buf), SOCHDB_OK, "a commit after the rebuild, with a daemon");
  kr_key(KR_COMMITS - 1, k, sizeof k);
  kr_val(KR_COMMITS - 1, v, sizeof v);
  tu_expect_str(t = tu_begin(db, SOCHDB_TXN_READONLY), k, v, "the last commit, with a daemon");
  sochdb_abort(t);
  tu_close();
}

Test(crash, replay_sorts_binary_keys)
{
  sochdb *db = tu_open(RP_REGION, 16u << 20, 5000);
  static int last[BK_KEYS];
  uint8_t key[32];
  char val[32];
  for (int round = 1; round <= 3; round++)
    for (int j = 0; j < BK_KEYS; j += 5) {
      sochdb_txn *t = tu_begin(db, 0);
      for (int i = j; i < j + 5; i++) {
        int k = (i * 389 + round * 17) % BK_KEYS;
        uint32_t klen = bk_key(k, key);
        int dup = 0;   /* bk_key repeats itself for some i: one write per key and transaction */
        for (int m = j; m < i; m++) {
          uint8_t other[32];
          int km = (m * 389 + round * 17) % BK_KEYS;
          dup |= bk_key(km, other) == klen && !memcmp(other, key, klen);
        }
        if (dup)
          continue;
        snprintf(val, sizeof val, "%d.%d", k, round);
        cr_assert_eq(sochdb_put(t, key, klen, val, strlen(val)), SOCHDB_OK, "put");
        for (int m = 0; m < BK_KEYS; m++) {   /* every number naming the same key sees this write */
          uint8_t other[32];
          if (bk_key(m, other) == klen && !memcmp(other, key, klen))
            last[m] = k * 10 + round;
        }
      }
      tu_commit(t, SOCHDB_ASYNC, "binary keys");
    }
  rp_lose_region();
  sochdb_test_without_daemon(1);
  db = tu_open(RP_REGION, 1u << 20, 5000);
  shm_region *r = &db->region;
  struct mt_view v;
  arena_view(r, &v);
  for (uint32_t i = 0; i < v.n; i++) {
    const struct sl_node *prev = NULL;
    for (uint64_t n = sl_seek(r, v.idx[i], NULL, 0); n; n = sl_next(r, n)) {
      const struct sl_node *node = shm_at(r, n);
      if (prev)
        cr_assert_lt(sl_compare(sl_key(prev), prev->klen, sl_key(node), node->klen), 0, "keys out of order");
      prev = node;
    }
  }
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int k = 0; k < BK_KEYS; k++) {
    uint32_t klen = bk_key(k, key);
    const void *got;
    size_t glen;
    cr_assert_eq(sochdb_get(t, key, klen, &got, &glen), SOCHDB_OK, "binary key %d lost", k);
    snprintf(val, sizeof val, "%d.%d", last[k] / 10, last[k] % 10);
    cr_assert(glen == strlen(val) && !memcmp(got, val, glen), "binary key %d reads %.*s, not %s", k, (int)glen,
              (const char *)got, val);
  }
  sochdb_abort(t);
  tu_close();
  sochdb_test_without_daemon(0);
}

/* ---- a reaper killed half-way through reaping a dead committer -----------
** The committer killed at its install, after claiming its seq or after
** deciding; the process that reaps it killed after retiring one descriptor
** or all of them, before it decides the dead slot's seqs in the ring; a
** third process finishes the reap. The transaction is wholly there (it had
** decided) or wholly absent, and later commits go on (from the reaper
** review). */
TestSuite(reapcrash, .init = tu_setup_without_daemon, .fini = tu_teardown, .timeout = 120);

/* ASYNC: no daemon runs in this suite. */
static void rc_child_commit(const char *dir, const char *cp)
{
  commit_abcd_flags_until_killed(tu_child_open(dir, CC_OPEN), cp, 1, SOCHDB_ASYNC);
}

static void rc_child_reaper(const char *dir, const char *cp)
{
  sochdb_test_crash_at(cp, 1);
  sochdb *db = tu_child_open(dir, CC_OPEN);   /* slots_attach reaps the dead slot */
  sochdb_close(db);
  _exit(CC_NOT_KILLED);
}

static void rc_run(const char *commit_cp, const char *reap_cp, const char *want)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  sochdb_txn *t;
  cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(sochdb_put(t, ABCD[i], 1, "0", 1), SOCHDB_OK);
  cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK);
  int st = 0;
  pid_t a = tu_fork();
  if (a == 0)
    rc_child_commit(tu_db_dir, commit_cp);
  cr_assert_eq(tu_wait_child(a, 20000, &st), 0);
  cr_assert(WIFSIGNALED(st), "committer not killed at %s", commit_cp);
  pid_t b = tu_fork();
  if (b == 0)
    rc_child_reaper(tu_db_dir, reap_cp);
  cr_assert_eq(tu_wait_child(b, 20000, &st), 0);
  cr_assert(WIFSIGNALED(st), "reaper not killed at %s (status %d)", reap_cp, st);
  /* a third process finishes the reap */
  pid_t c = tu_fork();
  if (c == 0) {
    sochdb_close(tu_child_open(tu_db_dir, CC_OPEN));
    _exit(0);
  }
  cr_assert_eq(tu_wait_child(c, 20000, &st), 0);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "third opener failed: %d", st);
  slots_reap_all(&db->region, db->slot);
  seqring_help(&db->region, db->slot);
  assert_all4(db, want, "after the reaper died and the reap was redone");
  /* and the database goes on: a new commit is published */
  cr_assert_eq(tu_put_all_retry(db, ABCD, 4, "second", SOCHDB_ASYNC, RETRY_LIMIT, NULL), SOCHDB_OK);
  assert_all4(db, "second", "after a later commit");
  sochdb_close(db);
}

Test(reapcrash, decided_commit_reaper_killed_before_ring) { rc_run("commit.decided", "reap.retired", "child"); }
Test(reapcrash, decided_commit_reaper_killed_after_one_entry) { rc_run("commit.decided", "reap.one_retired", "child"); }
Test(reapcrash, claimed_commit_reaper_killed_before_ring) { rc_run("commit.claim_seq", "reap.retired", "0"); }
Test(reapcrash, claimed_commit_reaper_killed_after_one_entry) { rc_run("commit.claim_seq", "reap.one_retired", "0"); }
Test(reapcrash, installing_commit_reaper_killed_after_one_entry) { rc_run("commit.install", "reap.one_retired", "0"); }
