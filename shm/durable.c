/*
** durable.c — the commit-record queue, durable_seq and the futexes (see
** durable.h). The futexes are process-shared (no FUTEX_PRIVATE_FLAG): the
** waiters and the waker are different processes mapping the same page.
*/
#include "durable.h"

#include "mvcc.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline _Atomic uint64_t *rec_ring(const shm_region *r) { return shm_at(r, r->hdr->rec_ring_off); }

size_t durable_section_bytes(void) { return REC_RING_SIZE * sizeof(uint64_t); }

void durable_init(shm_region *r, uint64_t durable)
{
  atomic_init(&r->hdr->durable_seq, durable);
  atomic_init(&r->hdr->durable_futex, 0);
  atomic_init(&r->hdr->kick_futex, 0);
}

int durable_may_claim(const shm_region *r)
{
  uint64_t next = atomic_load_explicit(&r->hdr->next_seq, memory_order_acquire);
  return next - durable_seq(r) <= MAX_COMMIT_LAG;
}

void durable_set_record(shm_region *r, uint64_t seq, uint64_t commit)
{
  /* relaxed: published to the writer by the release of the decision and of
  ** the ring entry, which the writer acquires through published_seq */
  atomic_store_explicit(&rec_ring(r)[seq % REC_RING_SIZE], commit, memory_order_relaxed);
}

void durable_forget_range(shm_region *r, uint64_t lo, uint64_t hi)
{
  _Atomic uint64_t *ring = rec_ring(r);
  for (uint32_t i = 0; i < REC_RING_SIZE; i++) {
    uint64_t off = atomic_load_explicit(&ring[i], memory_order_relaxed);
    /* relaxed CAS: only this exact stale value is ours to clear; a committer
    ** writing a fresh record there meanwhile wins */
    if (off >= lo && off < hi)
      atomic_compare_exchange_strong_explicit(&ring[i], &off, 0, memory_order_relaxed, memory_order_relaxed);
  }
}

static int in_region(const shm_region *r, uint64_t off, uint64_t bytes)
{
  return off >= r->hdr->memtables_off && off < r->size && bytes <= r->size - off;
}

const struct mv_commit *durable_record(const shm_region *r, uint64_t seq)
{
  uint64_t off = atomic_load_explicit(&rec_ring(r)[seq % REC_RING_SIZE], memory_order_relaxed);
  if (!off || !in_region(r, off, sizeof(struct mv_commit)))
    return NULL;
  const struct mv_commit *c = shm_at(r, off);
  /* A record of another lap, or of an aborted commit, names another seq or
  ** has versions not stamped with this one: it carries nothing for seq. */
  /* relaxed: the whole record was written before the decision, whose
  ** release the writer acquired through published_seq */
  uint32_t nops = atomic_load_explicit(&c->nops, memory_order_relaxed);
  if (c->seq != seq || !nops || nops > c->cap || !in_region(r, off, mv_commit_bytes(nops)))
    return NULL;
  for (uint32_t i = 0; i < nops; i++) {
    uint64_t voff = shm_ref_off(r, c->versions[i]);
    if (!in_region(r, voff, mv_version_bytes(0)))
      return NULL;
    const struct mv_version *v = shm_at(r, voff);
    if (atomic_load_explicit(&v->state, memory_order_relaxed) != seq)
      return NULL;
  }
  return c;
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *timeout)
{
  return syscall(SYS_futex, (uint32_t *)word, op, val, timeout, NULL, 0);
}

static void wake_all(_Atomic uint32_t *word)
{
  /* release: the waiter re-reads the state it waits on after waking */
  atomic_fetch_add_explicit(word, 1, memory_order_release);
  futex(word, FUTEX_WAKE, INT_MAX, NULL);
}

static void wait_change(_Atomic uint32_t *word, uint32_t seen, unsigned timeout_ms)
{
  struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
  futex(word, FUTEX_WAIT, seen, &ts);   /* EAGAIN, EINTR, ETIMEDOUT: the caller re-checks */
}

void durable_publish(shm_region *r, uint64_t seq)
{
  /* release: a SYNC committer that sees its seq durable returns success */
  atomic_store_explicit(&r->hdr->durable_seq, seq, memory_order_release);
  wake_all(&r->hdr->durable_futex);
}

void durable_kick(shm_region *r) { wake_all(&r->hdr->kick_futex); }

void durable_wait_kick(shm_region *r, unsigned timeout_ms)
{
  uint32_t seen = atomic_load_explicit(&r->hdr->kick_futex, memory_order_acquire);
  uint64_t written = durable_seq(r);
  if (atomic_load_explicit(&r->hdr->published_seq, memory_order_acquire) > written)
    return;                              /* work is waiting already */
  wait_change(&r->hdr->kick_futex, seen, timeout_ms);
}

int durable_wait(shm_region *r, uint64_t seq, unsigned timeout_ms)
{
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    /* read the futex word before the condition, so a wake in between is not lost */
    uint32_t seen = atomic_load_explicit(&r->hdr->durable_futex, memory_order_acquire);
    if (durable_seq(r) >= seq)
      return 1;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed = (now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
    if (elapsed >= (long)timeout_ms)
      return 0;
    wait_change(&r->hdr->durable_futex, seen, (unsigned)((long)timeout_ms - elapsed));
  }
}
