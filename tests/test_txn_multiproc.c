/*
** test_txn_multiproc.c — snapshot isolation across processes.
**
** Every test forks plain POSIX children inside a Criterion test. A child opens
** its OWN handle (a handle inherited across fork() is refused), reports by exit
** status (0 = ok; other codes are listed next to each child), and, where
** counts are needed, through a MAP_SHARED|MAP_ANONYMOUS array made before the
** fork. Waits are bounded; a child that does not finish in time is killed and
** the test fails. No assertion depends on timing.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strsignal, nftw, mkdtemp, MAP_ANONYMOUS */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <sched.h>

#include "sochdb.h"
#include "testutil.h"

TestSuite(txn_multiproc, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

/* Child exit codes shared by the helpers below. */
enum {
  CX_OK = 0,
  CX_OPEN = 2,        /* sochdb_open failed */
  CX_BEGIN = 3,       /* sochdb_txn_begin failed */
  CX_PUT = 4,         /* sochdb_put/delete failed */
  CX_GET = 5,         /* sochdb_get failed or returned a value we cannot parse */
  CX_RETRIES = 6,     /* too many conflicts for one transaction (bounded retry) */
  CX_COMMIT = 20,     /* 20 + rc: sochdb_commit returned an unexpected code */
};

/* Commit key=value pairs (NULL-terminated list of alternating C strings) in one txn. */
static void parent_put(sochdb *db, const char *const *kv)
{
  sochdb_txn *t = tu_begin(db, 0);
  for (int i = 0; kv[i]; i += 2)
    tu_put_str(t, kv[i], kv[i + 1]);
  tu_commit(t, SOCHDB_SYNC, "parent_put");
}

/* Assert that every child exited 0; names the first that did not. */
static void assert_children_ok(const char *what, const pid_t *pids, const int *st, int n, int late)
{
  char buf[96];
  cr_assert_eq(late, 0, "%s: %d of %d children did not finish in time (killed)", what, late, n);
  for (int i = 0; i < n; i++)
    cr_assert(st[i] != -1 && WIFEXITED(st[i]) && WEXITSTATUS(st[i]) == 0,
              "%s: child %d (pid %d) ended with %s (codes: 2 open, 3 begin, 4 put, 5 get, "
              "6 retries exhausted, 20+rc commit)",
              what, i, (int)pids[i], tu_status_str(st[i], buf, sizeof buf));
}

/* Poll stats until processes_attached == want (bounded); returns the last value seen. */
static uint32_t wait_attached(sochdb *db, uint32_t want, unsigned limit_ms)
{
  sochdb_stats s;
  memset(&s, 0, sizeof s);
  for (unsigned i = 0; i <= limit_ms; i++) {
    int rc = sochdb_stats_get(db, &s);
    cr_assert_eq(rc, SOCHDB_OK, "stats_get: %s", sochdb_strerror(rc));
    if (s.processes_attached == want) break;
    tu_sleep_ms(1);
  }
  return s.processes_attached;
}

/* ===================================================== 1. disjoint inserts */

#define DJ_PROCS 4
#define DJ_KEYS  2000

static void dj_key(char *b, size_t n, int i, int j) { snprintf(b, n, "p%d/k%d", i, j); }
static void dj_val(char *b, size_t n, int i, int j)
{
  snprintf(b, n, "v%d.%d.%u", i, j, (unsigned)(i * 7919u + (unsigned)j * 104729u));
}

static void dj_child(int i, uint64_t *conflicts)
{
  sochdb *db = tu_child_open(tu_db_dir, CX_OPEN);
  unsigned seed = 1234u + (unsigned)i;
  int j = 0, ntx = 0;
  while (j < DJ_KEYS) {
    int batch = 1 + (int)(rand_r(&seed) % 10u);
    if (batch > DJ_KEYS - j) batch = DJ_KEYS - j;
    unsigned flags = (ntx++ % 8 == 0) ? SOCHDB_SYNC : SOCHDB_ASYNC;
    int rc = SOCHDB_CONFLICT;
    for (int attempt = 0; attempt < 10000 && rc == SOCHDB_CONFLICT; attempt++) {
      sochdb_txn *t = NULL;
      if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK) _exit(CX_BEGIN);
      for (int b = 0; b < batch; b++) {
        char k[32], v[48];
        dj_key(k, sizeof k, i, j + b);
        dj_val(v, sizeof v, i, j + b);
        if (sochdb_put(t, k, strlen(k), v, strlen(v)) != SOCHDB_OK) _exit(CX_PUT);
      }
      rc = sochdb_commit(t, flags);
      if (rc == SOCHDB_CONFLICT) __atomic_add_fetch(conflicts, 1, __ATOMIC_RELAXED);
    }
    if (rc == SOCHDB_CONFLICT) _exit(CX_RETRIES);
    if (rc != SOCHDB_OK) _exit(CX_COMMIT + rc);
    j += batch;
  }
  sochdb_close(db);
  _exit(CX_OK);
}

Test(txn_multiproc, disjoint_inserts)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  uint64_t *conflicts = tu_shared_alloc(sizeof(uint64_t) * DJ_PROCS);
  cr_assert_not_null(conflicts, "mmap shared array");

  pid_t pids[DJ_PROCS];
  int st[DJ_PROCS];
  for (int i = 0; i < DJ_PROCS; i++) {
    pids[i] = tu_fork();
    cr_assert_geq(pids[i], 0, "fork: %s", strerror(errno));
    if (pids[i] == 0) dj_child(i, &conflicts[i]);
  }
  int late = tu_wait_children(pids, DJ_PROCS, 60000, st);
  assert_children_ok("disjoint inserts", pids, st, DJ_PROCS, late);

  uint64_t total_conflicts = 0;
  for (int i = 0; i < DJ_PROCS; i++) total_conflicts += conflicts[i];
  cr_assert_eq(total_conflicts, 0, "disjoint key sets must never conflict, got %llu conflicts",
               (unsigned long long)total_conflicts);

  /* Every key with its exact value. */
  sochdb_txn *t = NULL;
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  cr_assert_eq(rc, SOCHDB_OK, "txn_begin: %s", sochdb_strerror(rc));
  for (int i = 0; i < DJ_PROCS; i++)
    for (int j = 0; j < DJ_KEYS; j++) {
      char k[32], v[48];
      dj_key(k, sizeof k, i, j);
      dj_val(v, sizeof v, i, j);
      const void *val = NULL;
      size_t vl = 0;
      rc = sochdb_get(t, k, strlen(k), &val, &vl);
      cr_assert_eq(rc, SOCHDB_OK, "get(%s): %s", k, sochdb_strerror(rc));
      cr_assert(tu_val_eq(val, vl, v), "get(%s): value '%.*s', expected '%s'", k, (int)vl,
                (const char *)val, v);
    }

  /* A full scan: exactly the 8000 keys, strictly increasing, each with its value. */
  sochdb_iter *it = NULL;
  rc = sochdb_iter_open(t, NULL, 0, NULL, 0, &it);
  cr_assert_eq(rc, SOCHDB_OK, "iter_open: %s", sochdb_strerror(rc));
  const void *pk = NULL, *k, *v;
  size_t pkl = 0, kl, vl;
  int n = 0;
  while ((rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) {
    if (pk)
      cr_assert(tu_keycmp(pk, pkl, k, kl) < 0, "scan not strictly increasing: '%.*s' then '%.*s'",
                (int)pkl, (const char *)pk, (int)kl, (const char *)k);
    char kbuf[64];
    int i = -1, j = -1;
    cr_assert_lt(kl, sizeof kbuf, "unexpected key of %zu bytes in scan", kl);
    memcpy(kbuf, k, kl);
    kbuf[kl] = 0;
    cr_assert(sscanf(kbuf, "p%d/k%d", &i, &j) == 2 && i >= 0 && i < DJ_PROCS && j >= 0 && j < DJ_KEYS,
              "unexpected key '%s' in scan", kbuf);
    char want[48];
    dj_val(want, sizeof want, i, j);
    cr_assert(tu_val_eq(v, vl, want), "scan: key '%s' has '%.*s', expected '%s'", kbuf, (int)vl,
              (const char *)v, want);
    pk = k;
    pkl = kl;
    n++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "iter_next ended with %s", sochdb_strerror(rc));
  cr_assert_eq(n, DJ_PROCS * DJ_KEYS, "scan returned %d keys, expected %d", n, DJ_PROCS * DJ_KEYS);
  sochdb_iter_close(it);
  sochdb_abort(t);

  tu_shared_free(conflicts, sizeof(uint64_t) * DJ_PROCS);
  sochdb_close(db);
}

/* ================================================================ 2. bank */

#define BANK_ACCOUNTS   10
#define BANK_INITIAL    1000
#define BANK_TOTAL      (BANK_ACCOUNTS * BANK_INITIAL)
#define BANK_WRITERS    3
#define BANK_READERS    2
#define BANK_TRANSFERS  3000
#define BANK_HOT        3   /* half of the transfers stay inside accounts 0..2: reliable conflicts */

struct bank_shared {
  int writers_done;
  uint64_t conflicts[BANK_WRITERS];
  uint64_t snapshots[BANK_READERS];
  uint64_t violations[BANK_READERS];
  char first_violation[BANK_READERS][160];
};

static void bank_key(char *b, size_t n, int a) { snprintf(b, n, "acct%02d", a); }

static void bank_writer(int w, struct bank_shared *sh)
{
  sochdb *db = tu_child_open(tu_db_dir, CX_OPEN);
  unsigned seed = 777u + (unsigned)w * 31u;
  for (int n = 0; n < BANK_TRANSFERS; n++) {
    int hot = rand_r(&seed) % 2;
    int range = hot ? BANK_HOT : BANK_ACCOUNTS;
    int a = (int)(rand_r(&seed) % (unsigned)range);
    int b = (int)(rand_r(&seed) % (unsigned)(range - 1));
    if (b >= a) b++;
    int64_t amount = 1 + (int64_t)(rand_r(&seed) % 50u);
    unsigned flags = (n % 16 == 0) ? SOCHDB_SYNC : SOCHDB_ASYNC;
    char ka[16], kb[16];
    bank_key(ka, sizeof ka, a);
    bank_key(kb, sizeof kb, b);

    int rc = SOCHDB_CONFLICT;
    for (int attempt = 0; attempt < 100000 && rc == SOCHDB_CONFLICT; attempt++) {
      sochdb_txn *t = NULL;
      if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK) _exit(CX_BEGIN);
      const void *v;
      size_t vl;
      int64_t ba, bb;
      if (sochdb_get(t, ka, strlen(ka), &v, &vl) != SOCHDB_OK || tu_parse_i64(v, vl, &ba)) _exit(CX_GET);
      if (sochdb_get(t, kb, strlen(kb), &v, &vl) != SOCHDB_OK || tu_parse_i64(v, vl, &bb)) _exit(CX_GET);
      /* Widen the read-to-commit window so the writers really race on the hot accounts. */
      if (attempt == 0 && (n & 1)) sched_yield();
      int64_t x = amount < ba ? amount : ba;   /* balances never go negative */
      char va[24], vb[24];
      snprintf(va, sizeof va, "%lld", (long long)(ba - x));
      snprintf(vb, sizeof vb, "%lld", (long long)(bb + x));
      if (sochdb_put(t, ka, strlen(ka), va, strlen(va)) != SOCHDB_OK) _exit(CX_PUT);
      if (sochdb_put(t, kb, strlen(kb), vb, strlen(vb)) != SOCHDB_OK) _exit(CX_PUT);
      rc = sochdb_commit(t, flags);
      if (rc == SOCHDB_CONFLICT) __atomic_add_fetch(&sh->conflicts[w], 1, __ATOMIC_RELAXED);
    }
    if (rc == SOCHDB_CONFLICT) _exit(CX_RETRIES);
    if (rc != SOCHDB_OK) _exit(CX_COMMIT + rc);
  }
  sochdb_close(db);
  _exit(CX_OK);
}

/* One read-only snapshot: sum by get and by scan. Returns 0 if consistent, else
** writes a description into why. */
static int bank_check_snapshot(sochdb *db, char *why, size_t n)
{
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t) != SOCHDB_OK) _exit(CX_BEGIN);
  int64_t bal[BANK_ACCOUNTS], sum_get = 0, sum_iter = 0;
  int bad = 0;
  for (int a = 0; a < BANK_ACCOUNTS; a++) {
    char k[16];
    bank_key(k, sizeof k, a);
    const void *v;
    size_t vl;
    if (sochdb_get(t, k, strlen(k), &v, &vl) != SOCHDB_OK || tu_parse_i64(v, vl, &bal[a])) _exit(CX_GET);
    sum_get += bal[a];
  }
  if (sum_get != BANK_TOTAL) {
    snprintf(why, n, "sum by get = %lld", (long long)sum_get);
    bad = 1;
  }
  sochdb_iter *it = NULL;
  if (sochdb_iter_open(t, "acct", 4, "acct~", 5, &it) != SOCHDB_OK) _exit(CX_GET);
  const void *k, *v;
  size_t kl, vl;
  int cnt = 0, rc;
  while ((rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) {
    int64_t x;
    if (tu_parse_i64(v, vl, &x)) _exit(CX_GET);
    if (!bad && (cnt >= BANK_ACCOUNTS || x != bal[cnt])) {
      snprintf(why, n, "scan entry %d ('%.*s' = %lld) differs from get in the same snapshot", cnt,
               (int)kl, (const char *)k, (long long)x);
      bad = 1;
    }
    sum_iter += x;
    cnt++;
  }
  sochdb_iter_close(it);
  if (!bad && rc != SOCHDB_NOTFOUND) {
    snprintf(why, n, "iter_next failed: %s", sochdb_strerror(rc));
    bad = 1;
  }
  if (!bad && (cnt != BANK_ACCOUNTS || sum_iter != BANK_TOTAL)) {
    snprintf(why, n, "scan saw %d accounts summing to %lld", cnt, (long long)sum_iter);
    bad = 1;
  }
  sochdb_abort(t);
  return bad;
}

static void bank_reader(int r, struct bank_shared *sh)
{
  sochdb *db = tu_child_open(tu_db_dir, CX_OPEN);
  for (int n = 0; n < 200000; n++) {
    int done = __atomic_load_n(&sh->writers_done, __ATOMIC_ACQUIRE);
    char why[160] = "";
    if (bank_check_snapshot(db, why, sizeof why)) {
      if (sh->violations[r]++ == 0) memcpy(sh->first_violation[r], why, sizeof why);
    }
    sh->snapshots[r]++;
    if (done && sh->snapshots[r] >= 20) break;
    tu_sleep_us(200);   /* leave CPU to the writers on small machines */
  }
  sochdb_close(db);
  _exit(CX_OK);
}

Test(txn_multiproc, bank_transfers_keep_the_sum)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  sochdb_txn *t = NULL;
  int rc = sochdb_txn_begin(db, 0, &t);
  cr_assert_eq(rc, SOCHDB_OK, "txn_begin: %s", sochdb_strerror(rc));
  for (int a = 0; a < BANK_ACCOUNTS; a++) {
    char k[16], v[16];
    bank_key(k, sizeof k, a);
    snprintf(v, sizeof v, "%d", BANK_INITIAL);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, strlen(v)), SOCHDB_OK, "put %s", k);
  }
  rc = sochdb_commit(t, SOCHDB_SYNC);
  cr_assert_eq(rc, SOCHDB_OK, "initial commit: %s", sochdb_strerror(rc));

  struct bank_shared *sh = tu_shared_alloc(sizeof *sh);
  cr_assert_not_null(sh, "mmap shared results");

  pid_t readers[BANK_READERS], writers[BANK_WRITERS];
  int rst[BANK_READERS], wst[BANK_WRITERS];
  for (int r = 0; r < BANK_READERS; r++) {
    readers[r] = tu_fork();
    cr_assert_geq(readers[r], 0, "fork: %s", strerror(errno));
    if (readers[r] == 0) bank_reader(r, sh);
  }
  for (int w = 0; w < BANK_WRITERS; w++) {
    writers[w] = tu_fork();
    cr_assert_geq(writers[w], 0, "fork: %s", strerror(errno));
    if (writers[w] == 0) bank_writer(w, sh);
  }
  int wlate = tu_wait_children(writers, BANK_WRITERS, 90000, wst);
  __atomic_store_n(&sh->writers_done, 1, __ATOMIC_RELEASE);
  int rlate = tu_wait_children(readers, BANK_READERS, 20000, rst);
  assert_children_ok("bank writers", writers, wst, BANK_WRITERS, wlate);
  assert_children_ok("bank readers", readers, rst, BANK_READERS, rlate);

  for (int r = 0; r < BANK_READERS; r++) {
    cr_assert_gt(sh->snapshots[r], 0, "reader %d took no snapshot", r);
    cr_assert_eq(sh->violations[r], 0, "reader %d: %llu of %llu snapshots were inconsistent; first: %s", r,
                 (unsigned long long)sh->violations[r], (unsigned long long)sh->snapshots[r],
                 sh->first_violation[r]);
  }
  uint64_t conflicts = 0;
  for (int w = 0; w < BANK_WRITERS; w++) conflicts += sh->conflicts[w];
  cr_log_info("bank: %llu conflicts over %d transfers; readers took %llu + %llu snapshots",
              (unsigned long long)conflicts, BANK_WRITERS * BANK_TRANSFERS,
              (unsigned long long)sh->snapshots[0], (unsigned long long)sh->snapshots[1]);
  cr_assert_gt(conflicts, 0, "3 writers x %d transfers on %d hot accounts never conflicted: "
               "first-committer-wins is not detecting write-write conflicts", BANK_TRANSFERS, BANK_HOT);

  char why[160] = "";
  cr_assert_eq(bank_check_snapshot(db, why, sizeof why), 0, "final state inconsistent: %s", why);

  tu_shared_free(sh, sizeof *sh);
  sochdb_close(db);
}

/* ======================================================= 3. lost update */

#define LU_PROCS 4
#define LU_INCS  1000

static void lu_child(int i, uint64_t *conflicts)
{
  sochdb *db = tu_child_open(tu_db_dir, CX_OPEN);
  for (int n = 0; n < LU_INCS; n++) {
    unsigned flags = (n % 32 == 0) ? SOCHDB_SYNC : SOCHDB_ASYNC;
    int rc = SOCHDB_CONFLICT;
    for (int attempt = 0; attempt < 100000 && rc == SOCHDB_CONFLICT; attempt++) {
      sochdb_txn *t = NULL;
      if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK) _exit(CX_BEGIN);
      const void *v;
      size_t vl;
      int64_t x;
      if (sochdb_get(t, "ctr", 3, &v, &vl) != SOCHDB_OK || tu_parse_i64(v, vl, &x)) _exit(CX_GET);
      char nv[24];
      snprintf(nv, sizeof nv, "%lld", (long long)(x + 1));
      if (sochdb_put(t, "ctr", 3, nv, strlen(nv)) != SOCHDB_OK) _exit(CX_PUT);
      rc = sochdb_commit(t, flags);
      if (rc == SOCHDB_CONFLICT) {
        conflicts[i]++;
        sched_yield();
      }
    }
    if (rc == SOCHDB_CONFLICT) _exit(CX_RETRIES);
    if (rc != SOCHDB_OK) _exit(CX_COMMIT + rc);
  }
  sochdb_close(db);
  _exit(CX_OK);
}

Test(txn_multiproc, no_lost_updates)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  parent_put(db, (const char *const[]){ "ctr", "0", NULL });
  uint64_t *conflicts = tu_shared_alloc(sizeof(uint64_t) * LU_PROCS);
  cr_assert_not_null(conflicts, "mmap shared array");

  pid_t pids[LU_PROCS];
  int st[LU_PROCS];
  for (int i = 0; i < LU_PROCS; i++) {
    pids[i] = tu_fork();
    cr_assert_geq(pids[i], 0, "fork: %s", strerror(errno));
    if (pids[i] == 0) lu_child(i, conflicts);
  }
  int late = tu_wait_children(pids, LU_PROCS, 90000, st);
  assert_children_ok("counter increments", pids, st, LU_PROCS, late);

  sochdb_txn *t = NULL;
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  cr_assert_eq(rc, SOCHDB_OK, "txn_begin: %s", sochdb_strerror(rc));
  char buf[32];
  rc = tu_get_str(t, "ctr", buf, sizeof buf);
  cr_assert_eq(rc, SOCHDB_OK, "get(ctr): %s", sochdb_strerror(rc));
  sochdb_abort(t);
  uint64_t c = 0;
  for (int i = 0; i < LU_PROCS; i++) c += conflicts[i];
  cr_log_info("counter: %llu conflicts retried", (unsigned long long)c);
  cr_assert_str_eq(buf, "4000", "counter is %s after %d x %d read-modify-write increments: updates were lost",
                   buf, LU_PROCS, LU_INCS);
  tu_shared_free(conflicts, sizeof(uint64_t) * LU_PROCS);
  sochdb_close(db);
}

/* ================================================= 4. snapshot stability */

#define SS_KEYS 10

/* Child A: overwrite every s<i> with new<i>. */
static void ss_child_a(void)
{
  sochdb *db = tu_child_open(tu_db_dir, CX_OPEN);
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK) _exit(CX_BEGIN);
  for (int i = 0; i < SS_KEYS; i++) {
    char k[8], v[16];
    snprintf(k, sizeof k, "s%d", i);
    snprintf(v, sizeof v, "new%d", i);
    if (sochdb_put(t, k, strlen(k), v, strlen(v)) != SOCHDB_OK) _exit(CX_PUT);
  }
  int rc = sochdb_commit(t, SOCHDB_SYNC);
  if (rc != SOCHDB_OK) _exit(CX_COMMIT + rc);
  sochdb_close(db);
  _exit(CX_OK);
}

/* Child B: delete s0, overwrite s1 again, insert s99. */
static void ss_child_b(void)
{
  sochdb *db = tu_child_open(tu_db_dir, CX_OPEN);
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK) _exit(CX_BEGIN);
  if (sochdb_delete(t, "s0", 2) != SOCHDB_OK) _exit(CX_PUT);
  if (sochdb_put(t, "s1", 2, "newer1", 6) != SOCHDB_OK) _exit(CX_PUT);
  if (sochdb_put(t, "s99", 3, "added", 5) != SOCHDB_OK) _exit(CX_PUT);
  int rc = sochdb_commit(t, SOCHDB_ASYNC);
  if (rc != SOCHDB_OK) _exit(CX_COMMIT + rc);
  sochdb_close(db);
  _exit(CX_OK);
}

static void run_one_child(void (*fn)(void), const char *what)
{
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) fn();
  int st = 0;
  int r = tu_wait_child(pid, 20000, &st);
  assert_children_ok(what, &pid, &st, 1, r != 0);
}

Test(txn_multiproc, snapshot_is_stable_while_others_commit)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  sochdb_txn *t = NULL;
  int rc = sochdb_txn_begin(db, 0, &t);
  cr_assert_eq(rc, SOCHDB_OK, "txn_begin: %s", sochdb_strerror(rc));
  for (int i = 0; i < SS_KEYS; i++) {
    char k[8], v[16];
    snprintf(k, sizeof k, "s%d", i);
    snprintf(v, sizeof v, "old%d", i);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, strlen(v)), SOCHDB_OK, "put %s", k);
  }
  rc = sochdb_commit(t, SOCHDB_SYNC);
  cr_assert_eq(rc, SOCHDB_OK, "setup commit: %s", sochdb_strerror(rc));

  /* r: a read-only snapshot; w: a read-write txn that will try to write a key others change. */
  sochdb_txn *r = NULL, *w = NULL;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &r), SOCHDB_OK, "begin r");
  cr_assert_eq(sochdb_txn_begin(db, 0, &w), SOCHDB_OK, "begin w");
  char before[SS_KEYS][32];
  for (int i = 0; i < SS_KEYS; i++) {
    char k[8], want[16];
    snprintf(k, sizeof k, "s%d", i);
    snprintf(want, sizeof want, "old%d", i);
    rc = tu_get_str(r, k, before[i], sizeof before[i]);
    cr_assert_eq(rc, SOCHDB_OK, "first read of %s: %s", k, sochdb_strerror(rc));
    cr_assert_str_eq(before[i], want, "first read of %s", k);
  }
  char wv[32];
  cr_assert_eq(tu_get_str(w, "s1", wv, sizeof wv), SOCHDB_OK, "w reads s1");

  run_one_child(ss_child_a, "snapshot: child A");
  run_one_child(ss_child_b, "snapshot: child B");

  /* Repeatable reads in r, after both committers have even closed their handles. */
  for (int i = 0; i < SS_KEYS; i++) {
    char k[8], now[32];
    snprintf(k, sizeof k, "s%d", i);
    rc = tu_get_str(r, k, now, sizeof now);
    cr_assert_eq(rc, SOCHDB_OK, "re-read of %s in the old snapshot: %s", k, sochdb_strerror(rc));
    cr_assert_str_eq(now, before[i], "re-read of %s in the same snapshot changed", k);
  }
  const void *v;
  size_t vl;
  rc = sochdb_get(r, "s99", 3, &v, &vl);
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "a key inserted after the snapshot is visible in it (%s)", sochdb_strerror(rc));

  /* An iterator opened now in the old snapshot still shows the old state. */
  sochdb_iter *it = NULL;
  cr_assert_eq(sochdb_iter_open(r, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter_open in r");
  const void *k;
  size_t kl;
  int n = 0;
  while ((rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) {
    char want_k[8];
    cr_assert_lt(n, SS_KEYS, "old snapshot scan returned more than %d keys ('%.*s')", SS_KEYS, (int)kl,
                 (const char *)k);
    snprintf(want_k, sizeof want_k, "s%d", n);
    cr_assert(tu_val_eq(k, kl, want_k), "old snapshot scan: key %d is '%.*s', expected %s", n, (int)kl,
              (const char *)k, want_k);
    cr_assert(tu_val_eq(v, vl, before[n]), "old snapshot scan: %s = '%.*s', expected '%s'", want_k, (int)vl,
              (const char *)v, before[n]);
    n++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "iter_next: %s", sochdb_strerror(rc));
  cr_assert_eq(n, SS_KEYS, "old snapshot scan returned %d keys", n);
  sochdb_iter_close(it);
  sochdb_abort(r);

  /* w still reads its snapshot, and first-committer-wins refuses its write to s1. */
  cr_assert_eq(tu_get_str(w, "s1", wv, sizeof wv), SOCHDB_OK, "w re-reads s1");
  cr_assert_str_eq(wv, "old1", "w's snapshot changed under it");
  cr_assert_eq(sochdb_put(w, "s1", 2, "from-w", 6), SOCHDB_OK, "w puts s1");
  rc = sochdb_commit(w, SOCHDB_SYNC);
  cr_assert_eq(rc, SOCHDB_CONFLICT, "writing a key another process committed after our snapshot must "
               "give SOCHDB_CONFLICT, got %s", sochdb_strerror(rc));

  /* A new transaction sees everything the children committed, and nothing of w. */
  sochdb_txn *n2 = NULL;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &n2), SOCHDB_OK, "begin new txn");
  char buf[32];
  rc = tu_get_str(n2, "s0", buf, sizeof buf);
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "s0 was deleted, new txn reads %s '%s'", sochdb_strerror(rc), buf);
  cr_assert_eq(tu_get_str(n2, "s1", buf, sizeof buf), SOCHDB_OK, "new txn reads s1");
  cr_assert_str_eq(buf, "newer1", "s1 in a new txn");
  for (int i = 2; i < SS_KEYS; i++) {
    char kk[8], want[16];
    snprintf(kk, sizeof kk, "s%d", i);
    snprintf(want, sizeof want, "new%d", i);
    cr_assert_eq(tu_get_str(n2, kk, buf, sizeof buf), SOCHDB_OK, "new txn reads %s", kk);
    cr_assert_str_eq(buf, want, "%s in a new txn", kk);
  }
  cr_assert_eq(tu_get_str(n2, "s99", buf, sizeof buf), SOCHDB_OK, "new txn reads s99");
  cr_assert_str_eq(buf, "added", "s99 in a new txn");
  it = NULL;
  cr_assert_eq(sochdb_iter_open(n2, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter_open in new txn");
  n = 0;
  while ((rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) {
    cr_assert(!tu_val_eq(k, kl, "s0"), "deleted s0 shows up in a new scan");
    n++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "iter_next: %s", sochdb_strerror(rc));
  cr_assert_eq(n, SS_KEYS, "new scan returned %d keys, expected s1..s9 and s99", n);
  sochdb_iter_close(it);
  sochdb_abort(n2);
  sochdb_close(db);
}

/* ============================================= 5. inherited handle after fork */

/* Exit codes of the fork child in this test. */
enum {
  IH_BEGIN_NOT_INVALID = 10,  /* txn_begin on the inherited handle did not return SOCHDB_INVALID */
  IH_STATS_NOT_INVALID = 11,  /* stats_get on the inherited handle did not return SOCHDB_INVALID */
  IH_GET_NOT_INVALID = 12,    /* get on an inherited transaction did not return SOCHDB_INVALID */
  IH_OWN_FAILED = 13,         /* the child's own handle did not work */
};

Test(txn_multiproc, inherited_handle_is_invalid_in_child)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  parent_put(db, (const char *const[]){ "k", "parent", NULL });
  sochdb_txn *pt = NULL;   /* a transaction open across the fork */
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &pt), SOCHDB_OK, "begin pt");

  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    sochdb_txn *t = NULL;
    if (sochdb_txn_begin(db, 0, &t) != SOCHDB_INVALID) _exit(IH_BEGIN_NOT_INVALID);
    sochdb_stats s;
    if (sochdb_stats_get(db, &s) != SOCHDB_INVALID) _exit(IH_STATS_NOT_INVALID);
    const void *v;
    size_t vl;
    if (sochdb_get(pt, "k", 1, &v, &vl) != SOCHDB_INVALID) _exit(IH_GET_NOT_INVALID);
    /* Our own handle works. */
    sochdb *mine = tu_child_open(tu_db_dir, CX_OPEN);
    char buf[32];
    if (sochdb_txn_begin(mine, 0, &t) != SOCHDB_OK) _exit(IH_OWN_FAILED);
    if (tu_get_str(t, "k", buf, sizeof buf) != SOCHDB_OK || strcmp(buf, "parent") != 0) _exit(IH_OWN_FAILED);
    if (sochdb_put(t, "c", 1, "child", 5) != SOCHDB_OK) _exit(IH_OWN_FAILED);
    if (sochdb_commit(t, SOCHDB_SYNC) != SOCHDB_OK) _exit(IH_OWN_FAILED);
    sochdb_close(mine);
    _exit(CX_OK);
  }
  int st = 0;
  char sbuf[64];
  cr_assert_eq(tu_wait_child(pid, 20000, &st), 0, "child did not finish in time");
  cr_assert(WIFEXITED(st), "child ended with %s", tu_status_str(st, sbuf, sizeof sbuf));
  cr_assert_neq(WEXITSTATUS(st), IH_BEGIN_NOT_INVALID,
                "sochdb_txn_begin on a handle inherited across fork must return SOCHDB_INVALID");
  cr_assert_neq(WEXITSTATUS(st), IH_STATS_NOT_INVALID,
                "sochdb_stats_get on a handle inherited across fork must return SOCHDB_INVALID");
  cr_assert_neq(WEXITSTATUS(st), IH_GET_NOT_INVALID,
                "sochdb_get on a transaction inherited across fork must return SOCHDB_INVALID");
  cr_assert_eq(WEXITSTATUS(st), 0, "child ended with %s (2 = open failed, 13 = own handle failed)",
               tu_status_str(st, sbuf, sizeof sbuf));

  /* The parent's handle and its open transaction are unaffected. */
  char buf[32];
  cr_assert_eq(tu_get_str(pt, "k", buf, sizeof buf), SOCHDB_OK, "parent's txn after the fork");
  cr_assert_str_eq(buf, "parent", "parent's txn after the fork");
  cr_assert_eq(tu_get_str(pt, "c", buf, sizeof buf), SOCHDB_NOTFOUND, "child's commit leaked into an older snapshot");
  sochdb_abort(pt);
  parent_put(db, (const char *const[]){ "k2", "after", NULL });
  sochdb_txn *t = NULL;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK, "begin after fork");
  cr_assert_eq(tu_get_str(t, "c", buf, sizeof buf), SOCHDB_OK, "child's commit visible to the parent");
  cr_assert_str_eq(buf, "child", "child's commit");
  cr_assert_eq(tu_get_str(t, "k2", buf, sizeof buf), SOCHDB_OK, "parent's own commit after the fork");
  sochdb_abort(t);
  uint32_t att = wait_attached(db, 1, 2000);
  cr_assert_eq(att, 1, "processes_attached is %u after the child exited; the parent holds 1 handle", att);
  sochdb_close(db);
}

/* ============================================== 6. many processes at once */

#define MP_PROCS   16
#define MP_COMMITS 50

static void mp_child(int i)
{
  sochdb *db = tu_child_open(tu_db_dir, CX_OPEN);
  for (int j = 0; j < MP_COMMITS; j++) {
    char k[16], v[16];
    snprintf(k, sizeof k, "m%02d/%02d", i, j);
    snprintf(v, sizeof v, "x%d.%d", i, j);
    const char *keys[1] = { k };
    int rc = tu_put_all_retry(db, keys, 1, v, (j % 10 == 0) ? SOCHDB_SYNC : SOCHDB_ASYNC, 1000, NULL);
    if (rc == SOCHDB_CONFLICT) _exit(CX_RETRIES);
    if (rc != SOCHDB_OK) _exit(CX_COMMIT + rc);
  }
  sochdb_close(db);
  _exit(CX_OK);
}

Test(txn_multiproc, many_processes_open_commit_close)
{
  sochdb *db = tu_open_with(tu_dir(), NULL);
  pid_t pids[MP_PROCS];
  int st[MP_PROCS];
  for (int i = 0; i < MP_PROCS; i++) {
    pids[i] = tu_fork();
    cr_assert_geq(pids[i], 0, "fork: %s", strerror(errno));
    if (pids[i] == 0) mp_child(i);
  }
  int late = tu_wait_children(pids, MP_PROCS, 60000, st);
  assert_children_ok("16 processes", pids, st, MP_PROCS, late);

  sochdb_txn *t = NULL;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK, "begin");
  for (int i = 0; i < MP_PROCS; i++)
    for (int j = 0; j < MP_COMMITS; j++) {
      char k[16], v[16], buf[32];
      snprintf(k, sizeof k, "m%02d/%02d", i, j);
      snprintf(v, sizeof v, "x%d.%d", i, j);
      int rc = tu_get_str(t, k, buf, sizeof buf);
      cr_assert_eq(rc, SOCHDB_OK, "commit %s of a closed process is missing: %s", k, sochdb_strerror(rc));
      cr_assert_str_eq(buf, v, "value of %s", k);
    }
  sochdb_iter *it = NULL;
  cr_assert_eq(sochdb_iter_open(t, "m", 1, "n", 1, &it), SOCHDB_OK, "iter_open");
  const void *k, *v;
  size_t kl, vl;
  int n = 0, rc;
  while ((rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) n++;
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "iter_next: %s", sochdb_strerror(rc));
  cr_assert_eq(n, MP_PROCS * MP_COMMITS, "scan of m..n returned %d keys", n);
  sochdb_iter_close(it);
  sochdb_abort(t);

  uint32_t att = wait_attached(db, 1, 2000);
  cr_assert_eq(att, 1, "processes_attached is %u after all children closed; the parent holds 1 handle", att);
  sochdb_close(db);
}
