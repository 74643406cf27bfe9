/*
** epoch.c — commit epochs and view hazards (see epoch.h).
*/
#include "epoch.h"

#include "fence.h"

void epoch_enter(shm_region *r, _Atomic uint64_t *slot)
{
  /* The reader half of the epoch handshake: a seq_cst load of the epoch,
  ** our store, then the fence, which orders the store before our later
  ** loads against the reclaimer's seq_cst scan (C11 7.17.3: a seq_cst load
  ** after a seq_cst fence in S sees our store). The store is a release: a
  ** committer that waits for room enters again without leaving (txn.c),
  ** and a reclaimer that reads the newer epoch must see what was done under
  ** the older one, as the release of epoch_leave would have shown it (a
  ** trim reads `used` after its wait: shm/arena.c). */
  uint64_t e = atomic_load_explicit(&r->hdr->epoch, memory_order_seq_cst);
  atomic_store_explicit(slot, e, memory_order_release);
  shm_fence_seq_cst();
}

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>

static char tsan_holds_released;   /* the process-wide object of epoch.h's TSan note */
static void tsan_hold_released(void) { __tsan_release(&tsan_holds_released); }
void epoch_reuse_begins(void) { __tsan_acquire(&tsan_holds_released); }
#else
static inline void tsan_hold_released(void) {}
#endif

void epoch_leave(_Atomic uint64_t *slot)
{
  tsan_hold_released();
  /* release: every access to reclaimable memory happens-before the clear */
  atomic_store_explicit(slot, 0, memory_order_release);
}

uint64_t epoch_retire(shm_region *r)
{
  /* seq_cst RMW: after the unpublishing stores, before the entry scan */
  return atomic_fetch_add_explicit(&r->hdr->epoch, 1, memory_order_seq_cst);
}

/* Every transaction entry of every slot ever attached (slots_scan_bound),
** free slots included: a slot freed by a dying owner may still hold a
** hazard until the reaper clears it, and clearing is what matters. */
#define FOR_EACH_ENTRY(r, e)                                                     \
  for (uint32_t si_ = 0, hi_ = slots_scan_bound(r); si_ < hi_; si_++)            \
    for (struct shm_txn_entry *e = shm_slot_at(r, si_)->txn;                     \
         e < shm_slot_at(r, si_)->txn + SHM_TXNS_PER_SLOT; e++)

uint64_t epoch_oldest_commit(shm_region *r)
{
  uint64_t oldest = UINT64_MAX;
  FOR_EACH_ENTRY(r, e) {
    /* seq_cst: the reclaimer half of the handshake */
    uint64_t v = atomic_load_explicit(&e->commit_epoch, memory_order_seq_cst);
    if (v && v < oldest)
      oldest = v;
  }
  return oldest;
}

void hazard_publish(_Atomic uint64_t *hazard, uint64_t value)
{
  /* relaxed store then the fence: as in epoch_enter */
  atomic_store_explicit(hazard, value, memory_order_relaxed);
  shm_fence_seq_cst();
}

void hazard_clear(struct shm_txn_entry *e)
{
  tsan_hold_released();
  /* release: every read of what the hazards named happens-before the clear
  ** that the reclaimer's seq_cst scan reads */
  atomic_store_explicit(&e->view_memtables, 0, memory_order_release);
  atomic_store_explicit(&e->view_files, 0, memory_order_release);
}

void hazard_drop_memtables(struct shm_txn_entry *e)
{
  tsan_hold_released();
  /* release: as in hazard_clear */
  atomic_store_explicit(&e->view_memtables, 0, memory_order_release);
}

uint64_t hazard_memtables(shm_region *r)
{
  uint64_t in_use = 0;
  FOR_EACH_ENTRY(r, e)
    in_use |= atomic_load_explicit(&e->view_memtables, memory_order_seq_cst);   /* reclaimer half */
  return in_use;
}

uint64_t hazard_file_lists(shm_region *r)
{
  uint64_t in_use = 0;
  FOR_EACH_ENTRY(r, e) {
    uint64_t v = atomic_load_explicit(&e->view_files, memory_order_seq_cst);     /* reclaimer half */
    if (v && v <= 64)
      in_use |= 1ull << (v - 1);
  }
  return in_use;
}
