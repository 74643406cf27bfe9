/*
** durable.c — the commit-record queue, durable_seq and the futexes that
** wake the WAL writer and the SYNC committers (see durable.h; futex.h).
*/
#include "durable.h"

#include "fence.h"
#include "futex.h"
#include "mvcc.h"

#include <xxhash.h>

#define LOG_END_SEED 0x6c6f67656e64ull   /* "logend": no other checksum of the region matches it by chance */

/* Entries are shm_refs: records live in the arenas, and a ring of half the
** bytes of offsets can hold twice the commits in the same memory. */
static inline _Atomic shm_ref *rec_ring(const shm_region *r) { return shm_at(r, r->hdr->rec_ring_off); }

size_t durable_section_bytes(uint32_t entries) { return entries * sizeof(shm_ref); }

uint32_t durable_ring_entries(uint64_t region_bytes)
{
  uint32_t n = REC_RING_MAX_ENTRIES;
  while (n > REC_RING_MIN_ENTRIES && (uint64_t)n * 512u > region_bytes)
    n /= 2;
  return n;
}

/* Entries are a power of two (sections_in_place checks the header's). */
static inline uint64_t ring_slot(const shm_region *r, uint64_t seq) { return seq & (r->hdr->rec_ring_entries - 1u); }

void durable_init(shm_region *r, uint64_t durable)
{
  atomic_init(&r->hdr->durable_seq, durable);
  atomic_init(&r->hdr->durable_futex, 0);
  atomic_init(&r->hdr->kick_futex, 0);
  atomic_init(&r->hdr->log_end.check, 0);   /* no note: a check of 0 is never taken */
}

static uint64_t log_end_check(const struct durable_log_end *e)
{
  const uint64_t w[6] = { e->segment, e->last_group, e->end_offset, e->next_lsn, e->seq, e->logged_seq };
  return XXH3_64bits_withSeed(w, sizeof w, LOG_END_SEED);
}

void durable_note_log_end(shm_region *r, const struct durable_log_end *e)
{
  struct shm_log_end *n = &r->hdr->log_end;
  /* relaxed: what protects a reader is the XXH3 check, which matches the
  ** six words only when they are one note's. A writer killed half-way
  ** leaves words of two notes under either note's check (or under the 0
  ** stored here first, which is never taken). The only reader that matters
  ** starts after this writer died (the next daemon, after DIR/LOCK). */
  atomic_store_explicit(&n->check, 0, memory_order_relaxed);
  atomic_store_explicit(&n->segment, e->segment, memory_order_relaxed);
  atomic_store_explicit(&n->last_group, e->last_group, memory_order_relaxed);
  atomic_store_explicit(&n->end_offset, e->end_offset, memory_order_relaxed);
  atomic_store_explicit(&n->next_lsn, e->next_lsn, memory_order_relaxed);
  atomic_store_explicit(&n->seq, e->seq, memory_order_relaxed);
  atomic_store_explicit(&n->logged_seq, e->logged_seq, memory_order_relaxed);
  /* release: whoever acquires this check sees the words it covers */
  atomic_store_explicit(&n->check, log_end_check(e), memory_order_release);
}

int durable_log_end(const shm_region *r, struct durable_log_end *out)
{
  const struct shm_log_end *n = &r->hdr->log_end;
  /* acquire: pairs with the release store of the check */
  uint64_t check = atomic_load_explicit(&n->check, memory_order_acquire);
  out->segment = atomic_load_explicit(&n->segment, memory_order_relaxed);
  out->last_group = atomic_load_explicit(&n->last_group, memory_order_relaxed);
  out->end_offset = atomic_load_explicit(&n->end_offset, memory_order_relaxed);
  out->next_lsn = atomic_load_explicit(&n->next_lsn, memory_order_relaxed);
  out->seq = atomic_load_explicit(&n->seq, memory_order_relaxed);
  out->logged_seq = atomic_load_explicit(&n->logged_seq, memory_order_relaxed);
  return check != 0 && check == log_end_check(out);
}

int durable_may_claim(const shm_region *r)
{
  /* relaxed: next_seq is stored relaxed (a hint; seqring.c), so acquire
  ** would pair with nothing. The bound holds even with a stale read: a
  ** committer that passes having read next <= d + max lag claims one
  ** sequence, and reads a larger next_seq at its next check (coherence), so
  ** each of the slots x transaction entries makes at most one claim past
  ** durable d + max lag. So none goes past d + the ring's entries, whose
  ** record slot is durable d's, already written (durable.h).
  ** Signed: read after next_seq, durable_seq may be past it already. */
  uint64_t next = atomic_load_explicit(&r->hdr->next_seq, memory_order_relaxed);
  return (int64_t)(next - durable_seq(r)) <= (int64_t)durable_max_lag(r);
}

void durable_set_record(shm_region *r, uint64_t seq, uint64_t commit)
{
  /* relaxed: published to the writer by the release of the decision and of
  ** the ring entry, which the writer acquires through published_seq */
  atomic_store_explicit(&rec_ring(r)[ring_slot(r, seq)], shm_off_ref(r, commit), memory_order_relaxed);
}

void durable_forget_range(shm_region *r, uint64_t lo, uint64_t hi)
{
  _Atomic shm_ref *ring = rec_ring(r);
  for (uint32_t i = 0; i < r->hdr->rec_ring_entries; i++) {
    shm_ref ref = atomic_load_explicit(&ring[i], memory_order_relaxed);
    uint64_t off = shm_ref_off(r, ref);
    /* relaxed CAS: only this exact stale value is ours to clear; a committer
    ** writing a fresh record there meanwhile wins */
    if (off >= lo && off < hi)
      atomic_compare_exchange_strong_explicit(&ring[i], &ref, 0, memory_order_relaxed, memory_order_relaxed);
  }
}

const struct mv_commit *durable_record(const shm_region *r, uint64_t seq)
{
  uint64_t off = shm_ref_off(r, atomic_load_explicit(&rec_ring(r)[ring_slot(r, seq)], memory_order_relaxed));
  if (!off || !shm_in_arenas(r, off, sizeof(struct mv_commit)))
    return NULL;
  const struct mv_commit *c = shm_at(r, off);
  /* A record of another lap, or of an aborted commit, names another seq or
  ** has versions not stamped with this one: it carries nothing for seq. */
  /* relaxed: the whole record was written before the decision, whose
  ** release the writer acquired through published_seq */
  uint32_t nops = atomic_load_explicit(&c->nops, memory_order_relaxed);
  if (c->seq != seq || !nops || nops > c->cap || !shm_in_arenas(r, off, mv_commit_bytes(nops)))
    return NULL;
  for (uint32_t i = 0; i < nops; i++) {
    uint64_t voff = shm_ref_off(r, c->versions[i]);
    if (!shm_in_arenas(r, voff, mv_version_bytes(0)))
      return NULL;
    const struct mv_version *v = shm_at(r, voff);
    if (atomic_load_explicit(&v->state, memory_order_relaxed) != seq)
      return NULL;
  }
  return c;
}

/* The futex bit a SYNC committer waiting for seq sleeps on. A group's
** publish wakes the waiters of its own seqs, not every waiter: the others
** would wake only to sleep again, two context switches each. Seqs 32 apart
** share a bit; such a waiter wakes early and sleeps again, nothing worse. */
static uint32_t seq_bit(uint64_t seq) { return 1u << (seq % 32); }

/* The bits of the seqs in (after, upto]: all of them for a range of 32 or
** more, and for one that does not move forward (nothing narrower is known). */
static uint32_t seq_bits(uint64_t after, uint64_t upto)
{
  if (upto <= after || upto - after >= 32)
    return UINT32_MAX;
  uint32_t bits = 0;
  for (uint64_t s = after + 1; s <= upto; s++)
    bits |= seq_bit(s);
  return bits;
}

void durable_deadline(struct timespec *at, unsigned ms)
{
  clock_gettime(CLOCK_MONOTONIC, at);   /* FUTEX_WAIT_BITSET's timeout: absolute, on this clock */
  at->tv_sec += ms / 1000;
  at->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (at->tv_nsec >= 1000000000L) {
    at->tv_sec++;
    at->tv_nsec -= 1000000000L;
  }
}

void durable_publish(shm_region *r, uint64_t seq)
{
  /* relaxed: only the writer stores durable_seq (a new daemon read it with
  ** acquire when it took over), so this is our own last store; an older
  ** value would only widen the range. A writer killed between the store
  ** and the wake leaves those seqs' waiters asleep until their timeout:
  ** every caller waits in a loop of short timeouts (src/txn.c, flusher.c). */
  uint64_t before = atomic_load_explicit(&r->hdr->durable_seq, memory_order_relaxed);
  /* release: a SYNC committer that sees its seq durable returns success */
  atomic_store_explicit(&r->hdr->durable_seq, seq, memory_order_release);
  /* release: a waiter that read the old word before checking durable_seq
  ** fails its FUTEX_WAIT (the word moved) or is queued before our wake */
  atomic_fetch_add_explicit(&r->hdr->durable_futex, 1, memory_order_release);
  shm_futex(&r->hdr->durable_futex, FUTEX_WAKE_BITSET, INT_MAX, NULL, seq_bits(before, seq));
}

/* kick_futex counts kicks in steps of 8; its low bit says the writer sleeps
** on it, or is about to, the next bit that it dozes (sleeps long, idle), and
** the third that it is leaving (durable_writer_leaves).
** Both sides change the word with a read-modify-write, so one of the two
** comes first in its order: if the writer's flag does, the kick sees it and
** wakes the writer; if the kick does, the writer's fetch_or acquires it, and
** with it every commit published before the kick, finds the work, and does
** not sleep. So a kick skips the system call whenever the writer is busy,
** which is nearly always while SYNC commits arrive. */
#define WRITER_ASLEEP 1u
#define WRITER_DOZING 2u
#define KICK_STEP     8u   /* WRITER_LEAVING (durable.h) is 4 */
_Static_assert(DURABLE_WRITER_LEAVING == 4u, "the kick word's third bit");

void durable_kick(shm_region *r)
{
  /* release: what we published before the kick goes with it (above) */
  uint32_t before = atomic_fetch_add_explicit(&r->hdr->kick_futex, KICK_STEP, memory_order_release);
  if (before & WRITER_ASLEEP)
    shm_futex_wake_all(&r->hdr->kick_futex);
}

/* An ASYNC commit only reads the word, so that the commits of many processes
** do not take turns owning its cache line. Reading is a store-then-check
** against the writer's: our commit is visible (we read published_seq with
** acquire, covering it; another process's CAS may have moved it), then we
** read the flag; the writer sets the flag, then reads published_seq. By the
** seq_cst fence rules of C++20 [atomics.order] (RC11; what gcc and clang
** implement): if our read of the word precedes the writer's fetch_or in its
** modification order, our fence precedes the writer's in the single order S;
** had the writer then read published_seq from before the store we acquired,
** its fence would have to precede ours (that store happens before our
** fence). So one side sees the other.
**
** The same store-then-check tells the committer whether the writer is
** leaving: durable_writer_leaves sets that bit, fences, and then reads
** published_seq for its last passes. */
int durable_nudge(shm_region *r)
{
  shm_fence_seq_cst();
  /* relaxed: ordered by the fence above */
  uint32_t word = atomic_load_explicit(&r->hdr->kick_futex, memory_order_relaxed);
  if (word & WRITER_DOZING)
    durable_kick(r);
  return (word & DURABLE_WRITER_LEAVING) != 0;
}

void durable_writer_leaves(shm_region *r)
{
  /* relaxed: the fence after it orders it before our reads of
  ** published_seq, which is all durable_nudge's check relies on */
  atomic_fetch_or_explicit(&r->hdr->kick_futex, DURABLE_WRITER_LEAVING, memory_order_relaxed);
  shm_fence_seq_cst();   /* the leaving writer's half of durable_nudge's store-then-check */
}

void durable_writer_arrives(shm_region *r)
{
  /* relaxed: a committer that still sees the bit only waits for its
  ** commit to be durable, which this writer makes it */
  atomic_fetch_and_explicit(&r->hdr->kick_futex, ~DURABLE_WRITER_LEAVING, memory_order_relaxed);
}

int durable_wait_kick(shm_region *r, unsigned timeout_ms, int doze)
{
  uint32_t flags = WRITER_ASLEEP | (doze ? WRITER_DOZING : 0);
  /* acquire: the kicks before this, and the commits published before them */
  uint32_t seen = atomic_fetch_or_explicit(&r->hdr->kick_futex, flags, memory_order_acquire) | flags;
  shm_fence_seq_cst();   /* the writer's half of durable_nudge's store-then-check */
  uint64_t written = durable_seq(r);
  int woken = atomic_load_explicit(&r->hdr->published_seq, memory_order_acquire) > written;  /* work waits already */
  if (!woken)   /* woken, or kicked before we slept (the word moved); else the time ran out, or a signal */
    woken = shm_futex_wait_ms(&r->hdr->kick_futex, seen, timeout_ms);
  /* relaxed: a flag left set a moment longer costs a kick one needless wake */
  atomic_fetch_and_explicit(&r->hdr->kick_futex, ~(WRITER_ASLEEP | WRITER_DOZING), memory_order_relaxed);
  return woken;
}

int durable_writer_dozes(const shm_region *r)
{
  /* relaxed: a look, it orders nothing */
  return (atomic_load_explicit(&r->hdr->kick_futex, memory_order_relaxed) & WRITER_DOZING) != 0;
}

int durable_wait(shm_region *r, uint64_t seq, unsigned timeout_ms)
{
  struct timespec deadline;
  durable_deadline(&deadline, timeout_ms);
  for (;;) {
    /* read the futex word before the condition, so a wake in between is not lost */
    uint32_t seen = atomic_load_explicit(&r->hdr->durable_futex, memory_order_acquire);
    if (durable_seq(r) >= seq)
      return 1;
    /* EAGAIN: the word moved (a publish) before we slept; EINTR: a signal.
    ** Anything else (ETIMEDOUT, or a futex this system refuses) ends the
    ** wait, so that it can never spin past its deadline. */
    if (shm_futex(&r->hdr->durable_futex, FUTEX_WAIT_BITSET, seen, &deadline, seq_bit(seq)) != 0 && errno != EAGAIN &&
        errno != EINTR)
      return durable_seq(r) >= seq;
  }
}
