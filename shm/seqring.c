/*
** seqring.c — lock-free commit sequencing and in-order publication.
**
** Invariants:
**  - ring[s % N] holds, for the newest s handed out in that position,
**    CLAIMED(s, d) until s's descriptor is decided, then DECIDED(s, d).
**  - published_seq only passes s when ring[s % N] is DECIDED(s), so a
**    snapshot never includes a commit whose outcome is still open, and a
**    commit becomes visible only after every earlier one is decided.
**  - A position is reused for s + N only once published_seq >= s, so the
**    advancer can never miss an entry.
*/
#include "seqring.h"

#include "slots.h"

#include <ck_pr.h>
#include <sched.h>
#include <time.h>

#define TAG_BITS   46
#define TAG_MASK   ((1ull << TAG_BITS) - 1)
#define DID_SHIFT  2
#define TAG_SHIFT  18
#define ST_CLAIMED 1u
#define ST_DECIDED 2u

static inline uint64_t ent_make(uint64_t seq, uint32_t did, unsigned st)
{ return ((seq & TAG_MASK) << TAG_SHIFT) | ((uint64_t)(did & 0xffff) << DID_SHIFT) | st; }
static inline uint64_t ent_tag(uint64_t e)  { return e >> TAG_SHIFT; }
static inline uint32_t ent_did(uint64_t e)  { return (uint32_t)(e >> DID_SHIFT) & 0xffff; }
static inline unsigned ent_st(uint64_t e)   { return (unsigned)(e & 3u); }
static inline uint64_t tag_of(uint64_t seq) { return seq & TAG_MASK; }

static inline _Atomic uint64_t *ring(const shm_region *r) { return shm_at(r, r->hdr->ring_off); }

size_t seqring_section_bytes(void) { return SEQRING_SIZE * sizeof(uint64_t); }

void seqring_init(shm_region *r, uint64_t published)
{
  _Atomic uint64_t *ents = ring(r);
  for (uint64_t i = 0; i < SEQRING_SIZE; i++) {
    uint64_t s = published - i;          /* the last lap, already decided */
    atomic_init(&ents[s % SEQRING_SIZE], ent_make(s, 0, ST_DECIDED));
  }
  atomic_init(&r->hdr->published_seq, published);
  atomic_init(&r->hdr->next_seq, published + 1);
  atomic_init(&r->hdr->horizon, published);
}

/* Pause in a wait loop: spin briefly, then yield, then sleep, so a waiter on
** a descheduled or dead process does not burn a core. */
static void backoff(unsigned *round)
{
  unsigned n = (*round)++;
  if (n < 64)
    ck_pr_stall();                     /* Concurrency Kit: the CPU's spin-wait hint */
  else if (n < 256)
    sched_yield();
  else {
    struct timespec ts = { 0, 50000 };   /* 50 us */
    nanosleep(&ts, NULL);
  }
}

/* Whoever is stuck behind a claimed entry checks, now and then, whether its
** owner died; if so it reaps that slot, which decides the entry. */
static void unblock(shm_region *r, uint32_t my_slot, uint64_t entry, unsigned round)
{
  if (ent_st(entry) == ST_CLAIMED && round >= 256 && round % 64 == 0)
    slots_reap_if_dead(r, my_slot, ent_did(entry) / SHM_TXNS_PER_SLOT);
}

/* Move next_seq from s to s + 1 unless someone already did. The CAS works
** on a copy: a failed CAS overwrites its expected value, and s is ours.
** relaxed: next_seq is only a hint; the ring entry is the truth. */
static void help_next_seq(struct shm_header *h, uint64_t s)
{
  uint64_t expected = s;
  atomic_compare_exchange_strong_explicit(&h->next_seq, &expected, s + 1, memory_order_relaxed,
                                          memory_order_relaxed);
}

uint64_t seqring_claim(shm_region *r, uint32_t my_slot, uint32_t did)
{
  struct shm_header *h = r->hdr;
  _Atomic uint64_t *ents = ring(r);
  unsigned round = 0;
  for (;;) {
    /* relaxed: next_seq is a hint, stored relaxed (help_next_seq), so an
    ** acquire here would pair with nothing. The entry decides: a taken s is
    ** helped past below, an s a lap behind fails the previous-lap check and
    ** is read again, and only the CAS on the entry claims. */
    uint64_t s = atomic_load_explicit(&h->next_seq, memory_order_relaxed);
    _Atomic uint64_t *slot = &ents[s % SEQRING_SIZE];
    uint64_t e = atomic_load_explicit(slot, memory_order_acquire);
    if (ent_tag(e) == tag_of(s)) {
      help_next_seq(h, s);   /* s is taken: move next_seq past it */
      continue;
    }
    uint64_t prev = s - SEQRING_SIZE;
    /* s - published, not published < s - N: sequences near the start wrap */
    if (ent_tag(e) != tag_of(prev) || ent_st(e) != ST_DECIDED || s - seqring_published(r) > SEQRING_SIZE) {
      /* the ring is a full lap ahead of publication: wait for it */
      unblock(r, my_slot, atomic_load_explicit(&ents[(seqring_published(r) + 1) % SEQRING_SIZE],
                                                memory_order_acquire), round);
      backoff(&round);
      continue;
    }
    /* acq_rel: the claim must be visible to the reaper scanning for our did */
    if (atomic_compare_exchange_strong_explicit(slot, &e, ent_make(s, did, ST_CLAIMED),
                                                memory_order_acq_rel, memory_order_acquire)) {
      help_next_seq(h, s);
      return s;
    }
  }
}

void seqring_decide(shm_region *r, uint64_t seq, uint32_t did)
{
  uint64_t e = ent_make(seq, did, ST_CLAIMED);
  /* release: the descriptor's decision and the version stamps happen-before
  ** anyone who sees DECIDED and then publishes past it */
  atomic_compare_exchange_strong_explicit(&ring(r)[seq % SEQRING_SIZE], &e,
                                          ent_make(seq, did, ST_DECIDED),
                                          memory_order_release, memory_order_relaxed);
}

/* Move published_seq over every consecutive decided entry. Returns the entry
** that stopped it (for the waiter to inspect). */
static uint64_t advance(shm_region *r)
{
  _Atomic uint64_t *ents = ring(r);
  for (;;) {
    uint64_t p = seqring_published(r);
    /* acquire: synchronises with the decider's release */
    uint64_t e = atomic_load_explicit(&ents[(p + 1) % SEQRING_SIZE], memory_order_acquire);
    if (ent_tag(e) != tag_of(p + 1) || ent_st(e) != ST_DECIDED)
      return e;
    /* release: readers that acquire published_seq see the decided commits */
    atomic_compare_exchange_strong_explicit(&r->hdr->published_seq, &p, p + 1,
                                            memory_order_release, memory_order_relaxed);
  }
}

void seqring_wait_published(shm_region *r, uint32_t my_slot, uint64_t seq)
{
  unsigned round = 0;
  uint64_t seen = seqring_published(r);
  for (;;) {
    uint64_t blocker = advance(r);
    uint64_t now = seqring_published(r);
    if (now >= seq)
      return;
    if (now != seen) {       /* the queue moves: keep spinning, do not sleep */
      seen = now;
      round = 0;
    }
    unblock(r, my_slot, blocker, round);
    backoff(&round);
  }
}

void seqring_help(shm_region *r, uint32_t my_slot)
{
  uint64_t blocker = advance(r);
  if (ent_st(blocker) == ST_CLAIMED && slots_reap_if_dead(r, my_slot, ent_did(blocker) / SHM_TXNS_PER_SLOT))
    advance(r);
}

/* Decide every claimed, unpublished entry with a descriptor id in [lo, hi]. */
static void decide_range(shm_region *r, uint32_t lo, uint32_t hi)
{
  _Atomic uint64_t *ents = ring(r);
  uint64_t p = seqring_published(r);
  /* relaxed, like every access to next_seq: no load order here could make up
  ** for its relaxed stores. What makes the scan see every claim of the slot
  ** is the slot lock: the kernel drops a dead owner's and we took it
  ** (slots.c, reap_locked), which orders all the owner did before our loads.
  ** A claim of s was made after reading next_seq == s, and next_seq only
  ** grows, so every claim lies at or below next (hence s <= next). A live
  ** owner whose slot was reclaimed (its descriptor closed behind its back)
  ** may claim after this scan; it decides that claim itself (txn.c). */
  uint64_t next = atomic_load_explicit(&r->hdr->next_seq, memory_order_relaxed);
  for (uint64_t s = p + 1; s <= next && s - p <= SEQRING_SIZE; s++) {
    uint64_t e = atomic_load_explicit(&ents[s % SEQRING_SIZE], memory_order_acquire);
    if (ent_tag(e) == tag_of(s) && ent_st(e) == ST_CLAIMED && ent_did(e) >= lo && ent_did(e) <= hi)
      seqring_decide(r, s, ent_did(e));
  }
  advance(r);
}

void seqring_decide_all_of_slot(shm_region *r, uint32_t slot)
{
  decide_range(r, seqring_did(slot, 0), seqring_did(slot, SHM_TXNS_PER_SLOT - 1));
}

void seqring_decide_all_of(shm_region *r, uint32_t did) { decide_range(r, did, did); }
