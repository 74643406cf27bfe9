/*
** filelist.c — the live-SSTable lists (see filelist.h).
*/
#include "filelist.h"

#include "epoch.h"
#include "error.h"
#include "futex.h"

#include <string.h>

size_t fl_section_bytes(void) { return sizeof(struct fl_list) * FL_LISTS; }

void fl_init(shm_region *r)
{
  /* The section's place, set before this call, without shm_at's test for
  ** offset 0: a link-time optimising gcc saw a store through its NULL. */
  struct fl_list *lists = (struct fl_list *)(r->base + r->hdr->files_off);
  for (uint32_t i = 0; i < FL_LISTS; i++)
    atomic_init(&lists[i].state, FL_FREE);
  struct fl_list *l = &lists[0];
  atomic_init(&l->id, 1);
  l->nfiles = 0;
  atomic_init(&l->state, FL_CURRENT);
  atomic_init(&r->hdr->current_files, 0);
  atomic_init(&r->hdr->files_futex, 0);
}

const struct fl_list *fl_protect(const shm_region *r, _Atomic uint64_t *hazard)
{
  for (;;) {
    /* relaxed: only a candidate; the acquire re-check below is what counts */
    uint32_t i = atomic_load_explicit(&r->hdr->current_files, memory_order_relaxed);
    hazard_publish(hazard, i + 1);
    /* Still current after the hazard is visible: the daemon swings away
    ** (seq_cst) before it scans hazards, so it will see ours. Current
    ** again after a reuse is as good: it is current now. Acquire: pairs
    ** with the swing's release, so the list's contents are visible. */
    if (atomic_load_explicit(&r->hdr->current_files, memory_order_acquire) == i)
      return fl_list_at(r, i % FL_LISTS);
  }
}

uint64_t fl_current_id(const shm_region *r)
{
  /* acquire: pairs with the swing's release, so the id read is the one
  ** written before it, or a later (larger) one of a rebuild; relaxed id:
  ** that coherence is all it needs, and it guards nothing it points to */
  uint32_t i = atomic_load_explicit(&r->hdr->current_files, memory_order_acquire);
  return atomic_load_explicit(&fl_list_at(r, i % FL_LISTS)->id, memory_order_relaxed);
}

static int claim_free_list(shm_region *r, uint32_t *out)
{
  for (uint32_t i = 0; i < FL_LISTS; i++) {
    struct fl_list *l = fl_list_at(r, i);
    /* relaxed: only the daemon changes list states */
    if (atomic_load_explicit(&l->state, memory_order_relaxed) == FL_FREE) {
      atomic_store_explicit(&l->state, FL_BUILDING, memory_order_relaxed);
      epoch_reuse_begins();   /* for ThreadSanitizer only: epoch.h */
      *out = i;
      return 1;
    }
  }
  return 0;
}

/* For statistics, which must not read a list they hold no hazard on.
** Relaxed: three independent figures, each exact when it was stored. */
void fl_set_totals(shm_region *r, const struct fl_file *files, uint32_t n)
{
  uint64_t l0 = 0, bytes = 0;
  for (uint32_t i = 0; i < n; i++) {
    l0 += files[i].level == 0;
    bytes += files[i].size;
  }
  struct shm_global_stats *g = &r->hdr->stats;
  atomic_store_explicit(&g->live_files, n, memory_order_relaxed);
  atomic_store_explicit(&g->live_l0_files, l0, memory_order_relaxed);
  atomic_store_explicit(&g->live_file_bytes, bytes, memory_order_relaxed);
}

int fl_publish(shm_region *r, const struct fl_file *files, uint32_t n)
{
  if (n > FL_MAX_FILES)
    return sdb_fail(SOCHDB_INVALID, "%u live SSTables; the region lists at most %u", n, FL_MAX_FILES);
  uint32_t idx;
  if (!claim_free_list(r, &idx))
    return sdb_fail(SOCHDB_BUSY, "every file list of %s is still read by an old snapshot", r->path);
  /* relaxed, here and for the list states: only the daemon's one publishing
  ** thread writes them, and readers follow current_files alone */
  uint32_t old_idx = atomic_load_explicit(&r->hdr->current_files, memory_order_relaxed);
  struct fl_list *old = fl_list_at(r, old_idx), *l = fl_list_at(r, idx);
  /* relaxed: published by the seq_cst store of current_files below; a
  ** reader that reads it early (fl_current_id) may take any value it holds */
  atomic_store_explicit(&l->id, atomic_load_explicit(&old->id, memory_order_relaxed) + 1, memory_order_relaxed);
  l->nfiles = n;
  memcpy(l->files, files, n * sizeof *files);
  atomic_store_explicit(&l->state, FL_CURRENT, memory_order_relaxed);
  /* seq_cst: a release for the contents, and the unpublishing store of the
  ** hazard handshake for the old list */
  atomic_store_explicit(&r->hdr->current_files, idx, memory_order_seq_cst);
  atomic_store_explicit(&old->state, FL_RETIRED, memory_order_relaxed);
  fl_set_totals(r, files, n);
  fl_wake_compactor(r);
  return SOCHDB_OK;
}

void fl_wake_compactor(shm_region *r)
{
  /* release: what the waker did before (a list published, a compaction
  ** asked for) is seen by the compactor that reads the moved word */
  atomic_fetch_add_explicit(&r->hdr->files_futex, 1, memory_order_release);
  shm_futex_wake_all(&r->hdr->files_futex);
}

/* At a daemon's start: what a dead one left half-way through fl_publish. */
static void adopt_lists(shm_region *r)
{
  /* relaxed: no other daemon runs, and readers only follow current_files */
  uint32_t cur = atomic_load_explicit(&r->hdr->current_files, memory_order_relaxed);
  for (uint32_t i = 0; i < FL_LISTS; i++) {
    struct fl_list *l = fl_list_at(r, i);
    uint64_t st = atomic_load_explicit(&l->state, memory_order_relaxed);
    if (st == FL_BUILDING)
      atomic_store_explicit(&l->state, FL_FREE, memory_order_relaxed);
    else if (st == FL_CURRENT && i != cur)
      atomic_store_explicit(&l->state, FL_RETIRED, memory_order_relaxed);
  }
}

void fl_reclaim(shm_region *r, int at_start)
{
  if (at_start)
    adopt_lists(r);
  /* relaxed states: the daemon's alone (fl_publish); the hazards are read
  ** seq_cst by hazard_file_lists */
  int any = 0;
  for (uint32_t i = 0; i < FL_LISTS && !any; i++)
    any = atomic_load_explicit(&fl_list_at(r, i)->state, memory_order_relaxed) == FL_RETIRED;
  if (!any)
    return;   /* spare the scan of every transaction entry */
  uint64_t in_use = hazard_file_lists(r);
  for (uint32_t i = 0; i < FL_LISTS; i++) {
    struct fl_list *l = fl_list_at(r, i);
    if (atomic_load_explicit(&l->state, memory_order_relaxed) == FL_RETIRED && !(in_use >> i & 1))
      atomic_store_explicit(&l->state, FL_FREE, memory_order_relaxed);
  }
}

int fl_names_file(const shm_region *r, uint64_t number)
{
  for (uint32_t i = 0; i < FL_LISTS; i++) {
    const struct fl_list *l = fl_list_at(r, i);
    /* relaxed: the daemon's own state, read by the daemon */
    if (atomic_load_explicit(&l->state, memory_order_relaxed) == FL_FREE)
      continue;
    for (uint32_t j = 0; j < l->nfiles; j++)
      if (l->files[j].number == number)
        return 1;
  }
  return 0;
}
