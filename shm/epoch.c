/*
** epoch.c — the cross-process reclamation epochs (see epoch.h).
*/
#include "epoch.h"

void epoch_enter(shm_region *r, _Atomic uint64_t *slot)
{
  /* seq_cst load and store, then a seq_cst fence: the reader half of the
  ** store-then-check handshake; the fence orders our store before the
  ** acquire-only loads of whatever we read next (memtable states, the
  ** current file list), which a plain seq_cst store would not on every
  ** architecture. */
  uint64_t e = atomic_load_explicit(&r->hdr->epoch, memory_order_seq_cst);
  atomic_store_explicit(slot, e, memory_order_seq_cst);
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"   /* TSan does not model fences; the loads are atomics anyway */
#endif
  atomic_thread_fence(memory_order_seq_cst);
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}

void epoch_leave(_Atomic uint64_t *slot)
{
  /* release: every read of reclaimable memory happens-before the clear */
  atomic_store_explicit(slot, 0, memory_order_release);
}

uint64_t epoch_retire(shm_region *r)
{
  /* seq_cst RMW: after the unpublishing stores, before the entry scan */
  return atomic_fetch_add_explicit(&r->hdr->epoch, 1, memory_order_seq_cst);
}

uint64_t epoch_oldest(shm_region *r, int which_commit)
{
  uint64_t oldest = UINT64_MAX;
  for (uint32_t i = 0; i < SHM_MAX_SLOTS; i++) {
    /* Every entry, free slots included: see oldest_snapshot in slots.c. */
    struct shm_slot *s = shm_slot_at(r, i);
    for (uint32_t j = 0; j < SHM_TXNS_PER_SLOT; j++) {
      _Atomic uint64_t *slot = which_commit ? &s->txn[j].commit_epoch : &s->txn[j].view_epoch;
      /* seq_cst: the reclaimer half of the handshake */
      uint64_t e = atomic_load_explicit(slot, memory_order_seq_cst);
      if (e && e < oldest)
        oldest = e;
    }
  }
  return oldest;
}
