/*
** test_seqring.c — the commit sequencer (shm/seqring.c): claiming sequence
** numbers, deciding them out of order, in-order publication, wrapping the
** ring, and many threads sequencing at once.
**
** The ring lives in a real region, opened through the public API; the tests
** drive it directly with the internal functions. Every descriptor id used
** here names a transaction entry of the test's own slot, so whatever the
** sequencer does to "unblock" a waiter (reaping the slot named by a claim) can
** never touch another slot. seqring_decide does not publish by itself;
** seqring_wait_published(r, slot, 0) advances publication over every decided
** entry and returns at once, so it serves as "advance" below.
**
** In-process only (threads, no fork): this file also runs under TSan.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <sched.h>

#include "internal.h"
#include "region.h"
#include "seqring.h"
#include "slots.h"
#include "sochdb.h"
#include "testutil.h"

/* ------------------------------------------------------------ fixture */

/* tu_teardown unlinks the region file of tu_db_dir by its path, whatever
** state the region is in. */
TestSuite(seqring, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

static sochdb *open_db(void) { return tu_open(8u << 20, 1u << 20, 0); }

static uint64_t published(sochdb *db) { return seqring_published(&db->region); }
static uint64_t next_seq(sochdb *db)
{
  return atomic_load_explicit(&db->region.hdr->next_seq, memory_order_acquire);
}
static void advance(sochdb *db) { seqring_wait_published(&db->region, db->slot, 0); }
static uint32_t did_of(sochdb *db, uint32_t entry) { return seqring_did(db->slot, entry); }

/* ------------------------------------------------------------ basics */

Test(seqring, a_new_database_starts_at_published_1)
{
  sochdb *db = open_db();
  cr_assert_eq(published(db), 1u, "published_seq of a new database is %llu, expected 1",
               (unsigned long long)published(db));
  cr_assert_eq(next_seq(db), (uint64_t)SHM_FIRST_SEQ, "next_seq of a new database is %llu",
               (unsigned long long)next_seq(db));
  cr_assert_eq(SHM_FIRST_SEQ, 2u, "SHM_FIRST_SEQ");
  cr_assert_eq(seqring_section_bytes(), SEQRING_SIZE * sizeof(uint64_t), "ring section size");
  cr_assert_eq(seqring_did(3, 5), 3u * SHM_TXNS_PER_SLOT + 5u, "descriptor id = slot * entries + entry");
  sochdb_close(db);
}

Test(seqring, claims_are_consecutive_from_2)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  uint32_t d = did_of(db, 100);
  for (uint64_t want = SHM_FIRST_SEQ; want < SHM_FIRST_SEQ + 10; want++) {
    uint64_t s = seqring_claim(r, db->slot, d);
    cr_assert_eq(s, want, "claim #%llu returned %llu", (unsigned long long)(want - 1), (unsigned long long)s);
    cr_assert_eq(next_seq(db), s + 1, "next_seq after claiming %llu is %llu", (unsigned long long)s,
                 (unsigned long long)next_seq(db));
    cr_assert_eq(published(db), 1u, "claiming alone must not publish (published %llu)",
                 (unsigned long long)published(db));
  }
  for (uint64_t s = SHM_FIRST_SEQ; s < SHM_FIRST_SEQ + 10; s++)
    seqring_decide(r, s, d);
  cr_assert_eq(published(db), 1u, "deciding does not publish by itself");
  advance(db);
  cr_assert_eq(published(db), (uint64_t)SHM_FIRST_SEQ + 9, "published after deciding all: %llu",
               (unsigned long long)published(db));
  /* the public API continues the same sequence */
  sochdb_txn *t = NULL;
  cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK, "begin");
  cr_assert_eq(sochdb_put(t, "k", 1, "v", 1), SOCHDB_OK, "put");
  int rc = sochdb_commit(t, 0);
  cr_assert_eq(rc, SOCHDB_OK, "commit: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  cr_assert_eq(published(db), (uint64_t)SHM_FIRST_SEQ + 10, "the commit took the next seq: published %llu",
               (unsigned long long)published(db));
  sochdb_close(db);
}

Test(seqring, out_of_order_decisions_publish_the_consecutive_prefix)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  uint32_t d[3] = { did_of(db, 100), did_of(db, 101), did_of(db, 102) };
  uint64_t s[3];
  for (int i = 0; i < 3; i++)
    s[i] = seqring_claim(r, db->slot, d[i]);
  cr_assert(s[0] == 2 && s[1] == 3 && s[2] == 4, "claimed %llu %llu %llu", (unsigned long long)s[0],
            (unsigned long long)s[1], (unsigned long long)s[2]);

  seqring_decide(r, s[2], d[2]);
  advance(db);
  cr_assert_eq(published(db), 1u, "only the 3rd is decided: published must stay 1, is %llu",
               (unsigned long long)published(db));
  /* waiting for an already-published seq returns at once */
  seqring_wait_published(r, db->slot, 1);

  seqring_decide(r, s[0], d[0]);
  advance(db);
  cr_assert_eq(published(db), s[0], "1st decided: published must be %llu, is %llu", (unsigned long long)s[0],
               (unsigned long long)published(db));

  seqring_decide(r, s[1], d[1]);
  advance(db);
  cr_assert_eq(published(db), s[2], "all decided: published must be %llu, is %llu", (unsigned long long)s[2],
               (unsigned long long)published(db));
  seqring_wait_published(r, db->slot, s[2]);
  sochdb_close(db);
}

Test(seqring, decide_with_the_wrong_descriptor_does_nothing)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  uint32_t d = did_of(db, 100), other = did_of(db, 101);
  uint64_t s = seqring_claim(r, db->slot, d);
  seqring_decide(r, s, other);          /* not the claimer */
  seqring_decide(r, s + 1, d);          /* a seq nobody claimed */
  seqring_decide(r, s + SEQRING_SIZE, d); /* same ring position, another lap */
  advance(db);
  cr_assert_eq(published(db), 1u, "a decide by the wrong descriptor or seq published %llu",
               (unsigned long long)published(db));
  seqring_decide(r, s, d);
  seqring_decide(r, s, d);              /* deciding twice is harmless */
  advance(db);
  cr_assert_eq(published(db), s, "the claimer's decide publishes %llu, published %llu", (unsigned long long)s,
               (unsigned long long)published(db));
  uint64_t s2 = seqring_claim(r, db->slot, other);
  cr_assert_eq(s2, s + 1, "the next claim is %llu, got %llu", (unsigned long long)(s + 1), (unsigned long long)s2);
  seqring_decide(r, s2, other);
  advance(db);
  cr_assert_eq(published(db), s2, "published %llu", (unsigned long long)published(db));
  sochdb_close(db);
}

Test(seqring, wraparound_single_in_flight)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  uint32_t d = did_of(db, 100);
  const uint64_t cycles = 3ull * SEQRING_SIZE + 123;
  for (uint64_t i = 0; i < cycles; i++) {
    uint64_t want = SHM_FIRST_SEQ + i;
    uint64_t s = seqring_claim(r, db->slot, d);
    if (s != want)
      cr_assert_fail("cycle %llu: claimed %llu, expected %llu", (unsigned long long)i, (unsigned long long)s,
                     (unsigned long long)want);
    seqring_decide(r, s, d);
    advance(db);              /* never blocks: a stall shows up as a wrong value */
    if (published(db) != s)
      cr_assert_fail("cycle %llu: published %llu after waiting for %llu", (unsigned long long)i,
                     (unsigned long long)published(db), (unsigned long long)s);
  }
  cr_assert_eq(next_seq(db), SHM_FIRST_SEQ + cycles, "next_seq at the end: %llu", (unsigned long long)next_seq(db));
  sochdb_close(db);
}

Test(seqring, wraparound_with_batches_decided_in_reverse)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  enum { BATCH = 1500, ROUNDS = 9 };    /* 13500 seqs: three laps and more, batches straddle the wrap */
  static uint64_t s[BATCH];
  uint64_t want = SHM_FIRST_SEQ;
  for (int round = 0; round < ROUNDS; round++) {
    uint64_t before = published(db);
    for (int i = 0; i < BATCH; i++) {
      s[i] = seqring_claim(r, db->slot, did_of(db, 100 + (uint32_t)(i % 20)));
      if (s[i] != want + (uint64_t)i)
        cr_assert_fail("round %d: claim %d gave %llu, expected %llu", round, i, (unsigned long long)s[i],
                       (unsigned long long)(want + (uint64_t)i));
    }
    for (int i = BATCH - 1; i >= 1; i--) {
      seqring_decide(r, s[i], did_of(db, 100 + (uint32_t)(i % 20)));
      if (i % 250 == 0) {
        advance(db);
        cr_assert_eq(published(db), before, "round %d: the first of the batch is undecided, yet published "
                     "moved from %llu to %llu", round, (unsigned long long)before, (unsigned long long)published(db));
      }
    }
    seqring_decide(r, s[0], did_of(db, 100));
    advance(db);
    cr_assert_eq(published(db), s[BATCH - 1], "round %d: published %llu, expected %llu", round,
                 (unsigned long long)published(db), (unsigned long long)s[BATCH - 1]);
    want += BATCH;
  }
  sochdb_close(db);
}

/* ------------------------------------------------------------ a full lap */

struct lap_arg {
  sochdb *db;
  uint32_t did;
  _Atomic int started;
  _Atomic int done;
  uint64_t seq;
  uint64_t published_at_return;
};

static void *lap_claimer(void *p)
{
  struct lap_arg *a = p;
  atomic_store(&a->started, 1);
  a->seq = seqring_claim(&a->db->region, a->db->slot, a->did);
  a->published_at_return = seqring_published(&a->db->region);
  atomic_store(&a->done, 1);
  return NULL;
}

/* With SEQRING_SIZE claims outstanding, the next claim would reuse the
** position of an unpublished seq: it must wait until publication moves. */
Test(seqring, a_claim_a_full_lap_ahead_waits_for_publication)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  uint32_t d = did_of(db, 100);
  for (uint64_t i = 0; i < SEQRING_SIZE; i++) {
    uint64_t s = seqring_claim(r, db->slot, d);
    if (s != SHM_FIRST_SEQ + i)
      cr_assert_fail("claim %llu gave %llu", (unsigned long long)i, (unsigned long long)s);
  }
  const uint64_t last = SHM_FIRST_SEQ + SEQRING_SIZE - 1;   /* 4097 */
  struct lap_arg a;
  memset(&a, 0, sizeof a);
  a.db = db;
  a.did = did_of(db, 101);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, lap_claimer, &a), 0, "pthread_create");
  for (int i = 0; i < 100000 && !atomic_load(&a.started); i++)
    sched_yield();
  for (int i = 0; i < 200; i++)   /* give it a chance to (wrongly) claim */
    sched_yield();
  /* Decide the 2nd..last first: publication is still stuck behind seq 2. */
  for (uint64_t s = SHM_FIRST_SEQ + 1; s <= last; s++)
    seqring_decide(r, s, d);
  advance(db);
  cr_assert_eq(published(db), 1u, "seq 2 is undecided: published %llu", (unsigned long long)published(db));
  seqring_decide(r, SHM_FIRST_SEQ, d);
  advance(db);
  cr_assert_eq(published(db), last, "published %llu, expected %llu", (unsigned long long)published(db),
               (unsigned long long)last);
  int done = 0;
  for (int i = 0; i < 20000 && !(done = atomic_load(&a.done)); i++)
    tu_sleep_ms(1);
  cr_assert(done, "the claimer did not return within ~20 s after publication moved");
  TU_JOIN(th, "the claimer");
  cr_assert_eq(a.seq, last + 1, "the claimer got %llu, expected %llu", (unsigned long long)a.seq,
               (unsigned long long)(last + 1));
  cr_assert_geq(a.published_at_return, a.seq - SEQRING_SIZE,
                "claim %llu returned while published was %llu: it reused the ring position of an "
                "unpublished seq", (unsigned long long)a.seq, (unsigned long long)a.published_at_return);
  seqring_decide(r, a.seq, a.did);
  advance(db);
  cr_assert_eq(published(db), a.seq, "published %llu", (unsigned long long)published(db));
  sochdb_close(db);
}

/* ------------------------------------------------------------ decide_all_of */

Test(seqring, decide_all_of_decides_only_that_descriptor)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  uint32_t d1 = did_of(db, 110), d2 = did_of(db, 111), d3 = did_of(db, 112);
  const uint32_t who[6] = { d1, d2, d1, d3, d1, d2 };
  uint64_t s[6];
  for (int i = 0; i < 6; i++)
    s[i] = seqring_claim(r, db->slot, who[i]);
  cr_assert_eq(s[5], s[0] + 5, "consecutive claims");

  seqring_decide_all_of(r, d1);   /* decides s0, s2, s4 and advances */
  cr_assert_eq(published(db), s[0], "after decide_all_of(d1): published %llu, expected %llu (s1 belongs to d2)",
               (unsigned long long)published(db), (unsigned long long)s[0]);
  /* the other descriptors' entries are still claimed: deciding them works */
  seqring_decide(r, s[1], d2);
  advance(db);
  cr_assert_eq(published(db), s[2], "after deciding s1 (d2): published %llu, expected %llu (s3 belongs to d3)",
               (unsigned long long)published(db), (unsigned long long)s[2]);
  seqring_decide_all_of(r, did_of(db, 113));   /* owns nothing: no change */
  cr_assert_eq(published(db), s[2], "decide_all_of of an unrelated descriptor moved published to %llu",
               (unsigned long long)published(db));
  seqring_decide_all_of(r, d3);
  cr_assert_eq(published(db), s[4], "after decide_all_of(d3): published %llu, expected %llu",
               (unsigned long long)published(db), (unsigned long long)s[4]);
  seqring_decide_all_of(r, d2);
  cr_assert_eq(published(db), s[5], "after decide_all_of(d2): published %llu, expected %llu",
               (unsigned long long)published(db), (unsigned long long)s[5]);
  seqring_decide_all_of(r, d1);   /* nothing left: idempotent */
  cr_assert_eq(published(db), s[5], "published %llu", (unsigned long long)published(db));
  cr_assert_eq(seqring_claim(r, db->slot, d1), s[5] + 1, "the sequence continues");
  sochdb_close(db);
}

/* ------------------------------------------------------------ threads */

#define MT_THREADS 4
#define MT_PER_THREAD 20000
#define MT_TOTAL ((uint64_t)MT_THREADS * MT_PER_THREAD)

static _Atomic uint64_t mt_bits[(MT_TOTAL + 63) / 64];

struct mt_arg {
  sochdb *db;
  uint32_t did;
  pthread_barrier_t *bar;
  unsigned out_of_range, duplicates, not_increasing, not_published;
  uint64_t first_bad;
};

static void *mt_worker(void *p)
{
  struct mt_arg *a = p;
  shm_region *r = &a->db->region;
  uint64_t prev = 0;
  pthread_barrier_wait(a->bar);   /* all start together: maximal contention */
  for (unsigned i = 0; i < MT_PER_THREAD; i++) {
    uint64_t s = seqring_claim(r, a->db->slot, a->did);
    if (s < SHM_FIRST_SEQ || s >= SHM_FIRST_SEQ + MT_TOTAL) {
      if (!a->out_of_range++)
        a->first_bad = s;
      continue;   /* deciding it could be anything; count and go on */
    }
    uint64_t bit = s - SHM_FIRST_SEQ;
    uint64_t old = atomic_fetch_or(&mt_bits[bit / 64], 1ull << (bit % 64));
    if (old & (1ull << (bit % 64))) {
      if (!a->duplicates++)
        a->first_bad = s;
    }
    if (s <= prev)
      a->not_increasing++;
    prev = s;
    seqring_decide(r, s, a->did);
    seqring_wait_published(r, a->db->slot, s);
    if (seqring_published(r) < s)
      a->not_published++;
  }
  return NULL;
}

Test(seqring, threads_get_every_seq_exactly_once)
{
  sochdb *db = open_db();
  memset(mt_bits, 0, sizeof mt_bits);
  struct mt_arg a[MT_THREADS];
  pthread_t th[MT_THREADS];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, MT_THREADS);
  for (int i = 0; i < MT_THREADS; i++) {
    memset(&a[i], 0, sizeof a[i]);
    a[i].db = db;
    a[i].bar = &bar;
    a[i].did = did_of(db, 100 + (uint32_t)i);
    cr_assert_eq(pthread_create(&th[i], NULL, mt_worker, &a[i]), 0, "pthread_create");
  }
  for (int i = 0; i < MT_THREADS; i++)
    if (!tu_join_within(th[i], 20000))
      cr_assert_fail("sequencing stalled: thread %d did not finish within 20 s (published %llu, next_seq %llu)",
                     i, (unsigned long long)published(db), (unsigned long long)next_seq(db));
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < MT_THREADS; i++) {
    cr_assert_eq(a[i].out_of_range, 0u, "thread %d got %u seqs out of range (first %llu)", i, a[i].out_of_range,
                 (unsigned long long)a[i].first_bad);
    cr_assert_eq(a[i].duplicates, 0u, "thread %d got %u seqs another claim already had (first %llu)", i,
                 a[i].duplicates, (unsigned long long)a[i].first_bad);
    cr_assert_eq(a[i].not_increasing, 0u, "thread %d's seqs went backwards %u times", i, a[i].not_increasing);
    cr_assert_eq(a[i].not_published, 0u, "thread %d: wait_published returned early %u times", i,
                 a[i].not_published);
  }
  for (uint64_t b = 0; b < MT_TOTAL; b++)
    if (!(atomic_load(&mt_bits[b / 64]) & (1ull << (b % 64))))
      cr_assert_fail("seq %llu was never handed out", (unsigned long long)(b + SHM_FIRST_SEQ));
  cr_assert_eq(published(db), SHM_FIRST_SEQ + MT_TOTAL - 1, "published ends at %llu, expected %llu",
               (unsigned long long)published(db), (unsigned long long)(SHM_FIRST_SEQ + MT_TOTAL - 1));
  cr_assert_eq(next_seq(db), SHM_FIRST_SEQ + MT_TOTAL, "next_seq ends at %llu", (unsigned long long)next_seq(db));
  sochdb_close(db);
}

/* Claims through two handles (two slots, two mappings of the region at two
** addresses) interleave into one sequence too. */
struct mh_arg {
  sochdb *db;
  uint32_t did;
  uint64_t sum;
  unsigned count;
};

static void *mh_worker(void *p)
{
  struct mh_arg *a = p;
  for (unsigned i = 0; i < 5000; i++) {
    uint64_t s = seqring_claim(&a->db->region, a->db->slot, a->did);
    a->sum += s;
    a->count++;
    seqring_decide(&a->db->region, s, a->did);
    seqring_wait_published(&a->db->region, a->db->slot, s);
  }
  return NULL;
}

Test(seqring, two_handles_share_one_sequence)
{
  sochdb *db1 = open_db();
  sochdb *db2 = open_db();
  cr_assert_neq(db1->slot, db2->slot, "two handles got the same slot %u", db1->slot);
  cr_assert_neq((void *)db1->region.base, (void *)db2->region.base, "the two handles share one mapping");
  struct mh_arg a[2] = { { db1, seqring_did(db1->slot, 100), 0, 0 }, { db2, seqring_did(db2->slot, 100), 0, 0 } };
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, mh_worker, &a[i]), 0, "pthread_create");
  for (int i = 0; i < 2; i++)
    if (!tu_join_within(th[i], 20000))
      cr_assert_fail("sequencing stalled: handle %d's thread did not finish within 20 s (published %llu, "
                     "next_seq %llu)", i, (unsigned long long)seqring_published(&db1->region),
                     (unsigned long long)atomic_load(&db1->region.hdr->next_seq));
  uint64_t n = (uint64_t)a[0].count + a[1].count;
  uint64_t want = 0;
  for (uint64_t s = SHM_FIRST_SEQ; s < SHM_FIRST_SEQ + n; s++)
    want += s;
  cr_assert_eq(n, 10000u, "claims made: %llu", (unsigned long long)n);
  cr_assert_eq(a[0].sum + a[1].sum, want, "the two handles' seqs are not exactly 2..%llu",
               (unsigned long long)(SHM_FIRST_SEQ + n - 1));
  cr_assert_eq(seqring_published(&db1->region), SHM_FIRST_SEQ + n - 1, "published %llu",
               (unsigned long long)seqring_published(&db1->region));
  cr_assert_eq(seqring_published(&db2->region), seqring_published(&db1->region), "both mappings agree");
  sochdb_close(db2);
  sochdb_close(db1);
}
