/*
** test_mvcc.c — version chains and visibility (shm/mvcc.h), through the
** public API with direct inspection of the chains, and on chains built by
** hand in a spare arena with commit descriptors whose state the test sets.
**
** Threads only (no fork()): the suite also runs under ThreadSanitizer.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "arena.h"
#include "internal.h"
#include "mvcc.h"
#include "seqring.h"
#include "skiplist.h"
#include "slots.h"
#include "scratch.h"
#include "testutil.h"

TestSuite(mvcc, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

static sochdb *open_db(void) { return tu_open(64u << 20, 4u << 20, 50); }

static int version_is(const struct mv_version *v, const char *val)
{
  return v && !mv_is_tombstone(v) && mv_vlen(v) == strlen(val) && memcmp(v->value, val, mv_vlen(v)) == 0;
}

/* --------------------------------------------- through the public API */

#define NVER 6

Test(mvcc, chain_newest_first_and_repeatable_reads)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  static const char *vals[NVER] = { "v1", "v2-longer", "", "v4", "v5\x00x", "v6" };
  sochdb_txn *snap[NVER + 1];
  snap[0] = tu_begin(db, SOCHDB_TXN_READONLY);   /* before any version */
  for (int i = 0; i < NVER; i++) {
    sochdb_txn *t = tu_begin(db, 0);
    cr_assert_eq(sochdb_put(t, "key", 3, vals[i], strlen(vals[i])), SOCHDB_OK, "put %d", i);
    cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK, "commit %d", i);
    snap[i + 1] = tu_begin(db, SOCHDB_TXN_READONLY);
    cr_assert_gt(snap[i + 1]->snapshot, snap[i]->snapshot, "snapshot %d did not advance", i + 1);
    /* every open snapshot keeps reading its own version */
    for (int s = 0; s <= i + 1; s++) {
      char ctx[64];
      snprintf(ctx, sizeof ctx, "after commit %d, snapshot %d", i, s);
      tu_expect_str(snap[s], "key", s ? vals[s - 1] : NULL, ctx);
    }
  }

  /* the chain: newest first, decreasing seqs, one version per commit */
  uint32_t mt = arena_active(r);
  uint64_t node = sl_find(r, mt, "key", 3);
  cr_assert_neq(node, 0, "key has no node in the active memtable");
  const struct sl_node *n = shm_at(r, node);
  uint64_t prev_seq = UINT64_MAX;
  int count = 0;
  for (uint64_t off = sl_versions(r, n); off; count++) {
    const struct mv_version *v = shm_at(r, off);
    uint64_t seq = atomic_load(&v->state);
    cr_assert_lt(count, NVER, "chain longer than the %d commits", NVER);
    cr_assert(seq != 0 && seq != MV_ABORTED, "version %d not stamped with a commit seq (%llu)", count,
              (unsigned long long)seq);
    cr_assert_eq(mv_resolve(r, v), seq, "mv_resolve of a stamped version differs from its stamp");
    cr_assert_lt(seq, prev_seq, "version %d: seq %llu not below %llu", count, (unsigned long long)seq,
                 (unsigned long long)prev_seq);
    cr_assert(version_is(v, vals[NVER - 1 - count]), "version %d holds the wrong value", count);
    /* the snapshot taken right after this commit is exactly its seq */
    cr_assert_eq(seq, snap[NVER - count]->snapshot, "version %d: seq %llu, snapshot after it %llu", count,
                 (unsigned long long)seq, (unsigned long long)snap[NVER - count]->snapshot);
    prev_seq = seq;
    off = shm_ref_off(r, v->older);
  }
  cr_assert_eq(count, NVER, "chain has %d versions, want %d", count, NVER);

  /* mv_visible at each historic snapshot */
  cr_assert_null(mv_visible(r, node, snap[0]->snapshot), "a version is visible before the first commit");
  for (int s = 1; s <= NVER; s++) {
    const struct mv_version *v = mv_visible(r, node, snap[s]->snapshot);
    cr_assert(version_is(v, vals[s - 1]), "mv_visible at snapshot %d returned the wrong version", s);
    if (snap[s]->snapshot > 1)   /* one below: the previous version (or none) */
      cr_assert(s == 1 ? mv_visible(r, node, snap[s]->snapshot - 1) == NULL
                       : version_is(mv_visible(r, node, snap[s]->snapshot - 1), vals[s - 2]),
                "mv_visible just below snapshot %d is wrong", s);
  }
  cr_assert(version_is(mv_visible(r, node, UINT64_MAX - 1), vals[NVER - 1]), "far-future snapshot");
  for (int s = 0; s <= NVER; s++)
    cr_assert_eq(sochdb_commit(snap[s], SOCHDB_ASYNC), SOCHDB_OK, "read-only commit");
  tu_close();
}

Test(mvcc, tombstone_hides_only_from_later_snapshots)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  tu_commit_kv(db, "k", "alive", SOCHDB_ASYNC);
  sochdb_txn *before = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_commit_kv(db, "k", NULL, SOCHDB_ASYNC);    /* delete */
  sochdb_txn *after = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_commit_kv(db, "k", "again", SOCHDB_ASYNC);
  sochdb_txn *reborn = tu_begin(db, SOCHDB_TXN_READONLY);

  tu_expect_str(before, "k", "alive", "snapshot before the delete");
  tu_expect_str(after, "k", NULL, "snapshot after the delete");
  tu_expect_str(reborn, "k", "again", "snapshot after the re-put");

  uint64_t node = sl_find(r, arena_active(r), "k", 1);
  cr_assert_neq(node, 0, "no node for k");
  const struct mv_version *v = mv_visible(r, node, after->snapshot);
  cr_assert_not_null(v, "the tombstone itself must be the visible version");
  cr_assert(mv_is_tombstone(v), "visible version at the delete's snapshot is not a tombstone");
  cr_assert_eq(mv_vlen(v), 0, "tombstone carries %u value bytes", mv_vlen(v));
  cr_assert(version_is(mv_visible(r, node, before->snapshot), "alive"), "older snapshot lost its version");

  /* a tombstone for a key that never existed */
  tu_commit_kv(db, "ghost", NULL, SOCHDB_ASYNC);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "ghost", NULL, "deleted never-existing key");
  sochdb_abort(t);
  sochdb_abort(before);
  sochdb_abort(after);
  sochdb_abort(reborn);
  tu_close();
}

Test(mvcc, aborted_versions_are_never_visible)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  tu_commit_kv(db, "a", "a0", SOCHDB_ASYNC);
  tu_commit_kv(db, "z", "z0", SOCHDB_ASYNC);

  /* loser writes a (installed first: key order) and z (conflicts) */
  sochdb_txn *loser = tu_begin(db, 0);
  cr_assert_eq(sochdb_put(loser, "a", 1, "a-lost", 6), SOCHDB_OK, "put a");
  cr_assert_eq(sochdb_put(loser, "z", 1, "z-lost", 6), SOCHDB_OK, "put z");
  tu_commit_kv(db, "z", "z1", SOCHDB_ASYNC);         /* the first committer */
  int rc = sochdb_commit(loser, SOCHDB_ASYNC);
  cr_assert_eq(rc, SOCHDB_CONFLICT, "second committer: %s, want CONFLICT", sochdb_strerror(rc));

  uint64_t node = sl_find(r, arena_active(r), "a", 1);
  cr_assert_neq(node, 0, "no node for a");
  const struct sl_node *n = shm_at(r, node);
  const struct mv_version *head = shm_at(r, sl_versions(r, n));
  cr_assert(mv_vlen(head) == 6 && memcmp(head->value, "a-lost", 6) == 0,
            "the loser's intent on a should be at the head of a's chain");
  cr_assert_eq(atomic_load(&head->state), MV_ABORTED, "the loser's version is not stamped ABORTED (%llu)",
               (unsigned long long)atomic_load(&head->state));
  cr_assert_eq(mv_resolve(r, head), MV_ABORTED, "mv_resolve of the aborted version");
  uint64_t snaps[] = { 1, 2, 3, 4, 5, 100, UINT64_MAX - 1 };
  for (size_t i = 0; i < sizeof snaps / sizeof snaps[0]; i++) {
    const struct mv_version *v = mv_visible(r, node, snaps[i]);
    cr_assert(v != head, "aborted version visible at snapshot %llu", (unsigned long long)snaps[i]);
  }
  uint64_t state = 0;
  const struct mv_version *live = mv_newest_live(r, node, &state);
  cr_assert(version_is(live, "a0"), "newest live version of a should be a0");
  cr_assert(state > 1 && state != MV_ABORTED, "its state %llu should be a commit seq", (unsigned long long)state);

  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "a", "a0", "after the aborted commit");
  tu_expect_str(t, "z", "z1", "after the aborted commit");
  sochdb_abort(t);

  /* the aborted intent does not block the next writer of a */
  tu_commit_kv(db, "a", "a2", SOCHDB_ASYNC);
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "a", "a2", "after writing over an aborted version");
  sochdb_abort(t);
  sochdb_stats st;
  cr_assert_eq(sochdb_stats_get(db, &st), SOCHDB_OK, "stats");
  cr_assert_eq(st.conflicts, 1, "stats.conflicts = %llu", (unsigned long long)st.conflicts);
  tu_close();
}

/* --------------------------------------------- concurrent writers */

#define NINC_THREADS 4
#define NINC 250

struct inc_arg {
  sochdb *db;
  int id;
  atomic_int *errors;
  int conflicts;
};

static void *incrementer(void *p)
{
  struct inc_arg *a = p;
  for (int n = 0; n < NINC; n++) {
    int done = 0;
    for (int tries = 0; tries < 5000 && !done; tries++) {
      sochdb_txn *t = NULL;
      if (sochdb_txn_begin(a->db, 0, &t) != SOCHDB_OK) {
        atomic_fetch_add(a->errors, 1);
        return NULL;
      }
      const void *v;
      size_t vl;
      char buf[32];
      if (sochdb_get(t, "ctr", 3, &v, &vl) != SOCHDB_OK || vl >= sizeof buf) {
        atomic_fetch_add(a->errors, 1);
        sochdb_abort(t);
        return NULL;
      }
      memcpy(buf, v, vl);
      buf[vl] = 0;
      snprintf(buf, sizeof buf, "%ld", atol(buf) + 1);
      /* a private key sorting before ctr and a shared one after it: a
      ** conflict on the shared key leaves an aborted intent on ctr's chain */
      char mine[16];
      snprintf(mine, sizeof mine, "a-thread-%d", a->id);
      if (n % 2)
        sched_yield();   /* widen the window between snapshot and commit */
      if (sochdb_put(t, "ctr", 3, buf, strlen(buf)) != SOCHDB_OK ||
          sochdb_put(t, mine, strlen(mine), buf, strlen(buf)) != SOCHDB_OK ||
          sochdb_put(t, "zz-mirror", 9, buf, strlen(buf)) != SOCHDB_OK) {
        atomic_fetch_add(a->errors, 1);
        sochdb_abort(t);
        return NULL;
      }
      int rc = sochdb_commit(t, SOCHDB_ASYNC);
      if (rc == SOCHDB_OK)
        done = 1;
      else if (rc == SOCHDB_CONFLICT) {
        a->conflicts++;
        sched_yield();
      } else {
        atomic_fetch_add(a->errors, 1);
        return NULL;
      }
    }
    if (!done) {
      atomic_fetch_add(a->errors, 1);
      return NULL;
    }
  }
  return NULL;
}

Test(mvcc, concurrent_writers_build_a_consistent_chain)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  tu_commit_kv(db, "ctr", "0", SOCHDB_ASYNC);
  atomic_int errors = 0;
  pthread_t th[NINC_THREADS];
  struct inc_arg args[NINC_THREADS];
  for (int i = 0; i < NINC_THREADS; i++) {
    args[i] = (struct inc_arg){ db, i, &errors, 0 };
    cr_assert_eq(pthread_create(&th[i], NULL, incrementer, &args[i]), 0, "pthread_create");
  }
  int conflicts = 0;
  for (int i = 0; i < NINC_THREADS; i++) {
    pthread_join(th[i], NULL);
    conflicts += args[i].conflicts;
  }
  cr_assert_eq(atomic_load(&errors), 0, "%d threads failed", atomic_load(&errors));
  char want[16];
  snprintf(want, sizeof want, "%d", NINC_THREADS * NINC);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_expect_str(t, "ctr", want, "final counter (lost update?)");
  tu_expect_str(t, "zz-mirror", want, "final mirror of the counter");

  /* the chain: committed versions strictly decreasing in seq, their values
  ** counting down from the final one; each is what its own seq sees */
  uint32_t mt = arena_active(r);
  uint64_t node = sl_find(r, mt, "ctr", 3);
  cr_assert_neq(node, 0, "no node for ctr");
  const struct sl_node *n = shm_at(r, node);
  long expect_val = NINC_THREADS * NINC;
  uint64_t prev = UINT64_MAX;
  int committed = 0, aborted = 0;
  for (uint64_t off = sl_versions(r, n); off;) {
    const struct mv_version *v = shm_at(r, off);
    uint64_t seq = mv_resolve(r, v);
    cr_assert_neq(seq, 0, "a version is still pending after every commit finished");
    if (seq == MV_ABORTED) {
      aborted++;
      for (uint64_t s = 1; s <= t->snapshot; s += 1 + t->snapshot / 64)
        cr_assert_neq(mv_visible(r, node, s), v, "aborted version visible at %llu", (unsigned long long)s);
    } else {
      cr_assert_lt(seq, prev, "committed seqs not decreasing: %llu after %llu", (unsigned long long)seq,
                   (unsigned long long)prev);
      char buf[32];
      snprintf(buf, sizeof buf, "%ld", expect_val);
      cr_assert(version_is(v, buf), "committed version %d should hold %s", committed, buf);
      cr_assert_eq(mv_visible(r, node, seq), v, "mv_visible(%llu) is not the version committed at it",
                   (unsigned long long)seq);
      prev = seq;
      expect_val--;
      committed++;
    }
    off = shm_ref_off(r, v->older);
  }
  cr_assert_eq(committed, NINC_THREADS * NINC + 1, "%d committed versions, want %d", committed,
               NINC_THREADS * NINC + 1);
  cr_assert_eq(expect_val, -1, "values did not count down to 0");
  cr_log_info("ctr chain: %d committed, %d aborted versions; %d conflicts", committed, aborted, conflicts);
  sochdb_abort(t);
  tu_close();
}

/* ----------------------------------------- hand-built versions */

#define FAKE_SLOT 200u       /* no process holds it: a pretend committer */
#define FAKE_ENTRY 5u

struct scratch {
  shm_region *r;
  uint32_t mt;
  uint64_t node;
  struct shm_txn_entry *e;
};

static struct scratch scratch_setup(sochdb *db)
{
  struct scratch s;
  s.r = &db->region;
  s.mt = tu_scratch_arena(db);   /* in no transaction's view */
  s.node = sl_find_or_insert(s.r, s.mt, "hand", 4);
  cr_assert_neq(s.node, 0, "scratch node");
  s.e = shm_txn_entry_at(s.r, FAKE_SLOT, FAKE_ENTRY);
  return s;
}

/* Make the version at off (0: none) the head of the scratch node's chain. */
static void set_head(struct scratch *s, uint64_t off)
{
  atomic_store(&((struct sl_node *)shm_at(s->r, s->node))->versions, shm_off_ref(s->r, off));
}

/* A version of the scratch node's key, pushed on its chain: stamped seq,
** or (seq 0) pending on descriptor ref. */
static uint64_t push_version(struct scratch *s, uint64_t seq, uint64_t ref, const char *val, int tombstone)
{
  uint32_t vlen = val ? (uint32_t)strlen(val) : 0;
  uint64_t off = arena_alloc(s->r, s->mt, mv_version_bytes(vlen));
  cr_assert_neq(off, 0, "arena_alloc");
  struct mv_version *v = shm_at(s->r, off);
  struct sl_node *n = shm_at(s->r, s->node);
  mv_version_fill(s->r, v, seq ? seq : mv_pending_state(ref), s->node, val, vlen, tombstone);
  v->older = atomic_load(&n->versions);
  set_head(s, off);
  return off;
}

static void set_desc(struct shm_txn_entry *e, uint64_t gen, uint64_t state)
{
  atomic_store(&e->gen, gen);
  atomic_store(&e->state, state);
}

Test(mvcc, resolve_consults_descriptor)
{
  sochdb *db = open_db();
  struct scratch s = scratch_setup(db);
  uint64_t gen = 41;
  set_desc(s.e, gen, TXN_PENDING);
  uint64_t off = push_version(&s, 0, txn_ref(FAKE_SLOT, FAKE_ENTRY, gen), "x", 0);
  struct mv_version *v = shm_at(s.r, off);

  cr_assert_eq(mv_resolve(s.r, v), 0, "pending descriptor: resolve should say 0 (pending)");
  set_desc(s.e, gen, 1234);
  cr_assert_eq(mv_resolve(s.r, v), 1234, "committed descriptor: resolve should give its seq");
  set_desc(s.e, gen, TXN_ABORTED);
  cr_assert_eq(mv_resolve(s.r, v), MV_ABORTED, "aborted descriptor: resolve should give MV_ABORTED");

  /* the descriptor moved on to another transaction (generation bumped): its
  ** state is not ours, whatever it says; the version's own stamp decides */
  set_desc(s.e, gen + 1, 999);
  uint64_t got = mv_resolve(s.r, v);
  cr_assert_neq(got, 999, "resolve used the state of a reused descriptor (generation mismatch)");
  cr_assert_eq(got, 0, "generation mismatch with no stamp: resolve = %llu, want the stamp 0",
               (unsigned long long)got);
  set_desc(s.e, gen + 1, TXN_ABORTED);
  cr_assert_eq(mv_resolve(s.r, v), 0, "generation mismatch: an aborted reuser must not abort us");
  atomic_store(&v->state, 777);   /* the owner stamped before moving on */
  cr_assert_eq(mv_resolve(s.r, v), 777, "stamped version: resolve should give the stamp");
  set_desc(s.e, gen, TXN_ABORTED);
  cr_assert_eq(mv_resolve(s.r, v), 777, "a stamp is final: the descriptor is not consulted");

  /* generations are compared on their low 40 bits, as txn_ref keeps them */
  uint64_t big = (1ull << 40) + 7;
  set_desc(s.e, big, 555);
  uint64_t off2 = push_version(&s, 0, txn_ref(FAKE_SLOT, FAKE_ENTRY, big), "y", 0);
  cr_assert_eq(mv_resolve(s.r, shm_at(s.r, off2)), 555, "a generation beyond 40 bits must still match its ref");
  set_desc(s.e, big + 1, 556);
  cr_assert_eq(mv_resolve(s.r, shm_at(s.r, off2)), 0, "the next generation beyond 40 bits must not match");
  set_desc(s.e, 0, TXN_PENDING);

  /* a damaged pending word naming a slot or entry past the section (the
  ** ref has room for 2^16 slots and 256 entries) names no descriptor: it
  ** is not followed (a read 128 MB past the mapping) but taken as aborted */
  uint64_t off3 = push_version(&s, 0, txn_ref(0x3fff, 0, 1), "z", 0);
  cr_assert_eq(mv_resolve(s.r, shm_at(s.r, off3)), MV_ABORTED, "a slot past the section");
  uint64_t off4 = push_version(&s, 0, txn_ref(0, 200, 1), "w", 0);
  cr_assert_eq(mv_resolve(s.r, shm_at(s.r, off4)), MV_ABORTED, "an entry past the slot");
  tu_close();
}

Test(mvcc, visible_walks_hand_built_chain)
{
  sochdb *db = open_db();
  struct scratch s = scratch_setup(db);
  uint64_t gen = 3;
  uint64_t ref = txn_ref(FAKE_SLOT, FAKE_ENTRY, gen);
  uint64_t other = txn_ref(FAKE_SLOT, FAKE_ENTRY + 1, 1);
  /* oldest to newest: tomb@3, v5@5, aborted, v10@10, pending (descriptor) */
  uint64_t t3 = push_version(&s, 3, other, NULL, 1);
  uint64_t v5 = push_version(&s, 5, other, "five", 0);
  uint64_t ab = push_version(&s, MV_ABORTED, other, "aborted", 0);
  uint64_t v10 = push_version(&s, 10, other, "ten", 0);
  set_desc(s.e, gen, TXN_PENDING);
  uint64_t pend = push_version(&s, 0, ref, "pending", 0);
  (void)ab;

  struct { uint64_t snap; uint64_t want; } cases[] = {
    { 1, 0 }, { 2, 0 }, { 3, t3 }, { 4, t3 }, { 5, v5 }, { 9, v5 }, { 10, v10 }, { 11, v10 }, { 1000, v10 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct mv_version *got = mv_visible(s.r, s.node, cases[i].snap);
    cr_assert_eq(got, shm_at(s.r, cases[i].want), "snapshot %llu: wrong version (pending intent on top)",
                 (unsigned long long)cases[i].snap);
  }
  const struct mv_version *tv = mv_visible(s.r, s.node, 4);
  cr_assert(tv && mv_is_tombstone(tv), "the tombstone must be returned as such");

  uint64_t state = 99;
  cr_assert_eq(mv_newest_live(s.r, s.node, &state), shm_at(s.r, pend), "newest live should be the intent");
  cr_assert_eq(state, 0, "intent state should be pending");

  /* the descriptor commits at 12: visible from 12 on, not at 11 */
  set_desc(s.e, gen, 12);
  cr_assert_eq(mv_visible(s.r, s.node, 11), shm_at(s.r, v10), "commit at 12 visible at 11");
  cr_assert_eq(mv_visible(s.r, s.node, 12), shm_at(s.r, pend), "commit at 12 invisible at 12");
  /* it aborts instead: never visible, v10 is the newest live */
  set_desc(s.e, gen, TXN_ABORTED);
  for (uint64_t snap = 1; snap < 40; snap++)
    cr_assert_neq(mv_visible(s.r, s.node, snap), shm_at(s.r, pend), "aborted intent visible at %llu",
                  (unsigned long long)snap);
  cr_assert_eq(mv_newest_live(s.r, s.node, &state), shm_at(s.r, v10), "newest live should skip the aborted intent");
  cr_assert_eq(state, 10, "state of the newest live version");
  set_desc(s.e, 0, TXN_PENDING);
  tu_close();
}

Test(mvcc, install_rules)
{
  sochdb *db = open_db();
  struct scratch s = scratch_setup(db);
  uint64_t other = txn_ref(FAKE_SLOT, FAKE_ENTRY + 1, 1);
  struct sl_node *n = shm_at(s.r, s.node);
  uint64_t other_out = 12345;   /* blocker slot or conflicting seq */

  /* empty chain: installs */
  uint64_t a = push_version(&s, 0, other, "tmp", 0);
  set_head(&s, 0);
  cr_assert_eq(mv_install(s.r, s.node, a, 1, &other_out), MV_INSTALLED, "install on an empty chain");
  cr_assert_eq(sl_versions(s.r, n), a, "the installed version is not the head");
  cr_assert_eq(((struct mv_version *)shm_at(s.r, a))->older, 0, "first version has an older link");
  atomic_store(&((struct mv_version *)shm_at(s.r, a))->state, 10);

  /* newest committed at 10: a snapshot of 9 conflicts, 10 does not */
  uint64_t b = push_version(&s, 0, other, "b", 0);
  set_head(&s, a);   /* push_version linked it; unlink again */
  cr_assert_eq(mv_install(s.r, s.node, b, 9, &other_out), MV_CONFLICT, "commit at 10 vs snapshot 9");
  cr_assert_eq(other_out, 10, "MV_CONFLICT should report the winning seq 10, got %llu",
               (unsigned long long)other_out);
  cr_assert_eq(sl_versions(s.r, n), a, "a conflicting install changed the chain");
  cr_assert_eq(mv_install(s.r, s.node, b, 10, &other_out), MV_INSTALLED, "commit at 10 vs snapshot 10");
  cr_assert_eq(shm_ref_off(s.r, ((struct mv_version *)shm_at(s.r, b))->older), a, "older link of the new head");

  /* b is pending on its descriptor: another installer is blocked by its slot */
  uint64_t gen = 8;
  atomic_store(&((struct mv_version *)shm_at(s.r, b))->state, mv_pending_state(txn_ref(FAKE_SLOT, FAKE_ENTRY, gen)));
  set_desc(s.e, gen, TXN_PENDING);
  uint64_t c = push_version(&s, 0, other, "c", 0);
  set_head(&s, b);
  cr_assert_eq(mv_install(s.r, s.node, c, 100, &other_out), MV_BLOCKED, "pending intent on top must block");
  cr_assert_eq(other_out, FAKE_SLOT, "blocker slot %llu, want %u", (unsigned long long)other_out, FAKE_SLOT);
  /* its transaction aborts: the aborted version is skipped, 10 <= 11 installs */
  set_desc(s.e, gen, TXN_ABORTED);
  cr_assert_eq(mv_install(s.r, s.node, c, 11, &other_out), MV_INSTALLED, "install over an aborted intent");
  cr_assert_eq(shm_ref_off(s.r, ((struct mv_version *)shm_at(s.r, c))->older), b, "aborted versions stay in the "
               "chain");
  /* ... but a snapshot below the newest live commit still conflicts */
  atomic_store(&((struct mv_version *)shm_at(s.r, c))->state, MV_ABORTED);
  uint64_t d = push_version(&s, 0, other, "d", 0);
  set_head(&s, c);
  other_out = 0;
  cr_assert_eq(mv_install(s.r, s.node, d, 9, &other_out), MV_CONFLICT, "conflict below aborted versions");
  cr_assert_eq(other_out, 10, "the conflicting seq is the newest live one (10), got %llu",
               (unsigned long long)other_out);
  set_desc(s.e, 0, TXN_PENDING);
  tu_close();
}
