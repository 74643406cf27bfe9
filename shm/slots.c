/*
** slots.c — process slots, the cross-process reader table, and the reaper.
**
** Snapshot publication and the reclamation horizon follow a store-then-check
** protocol between a reader and a reclaimer (the two sides of Dekker's
** algorithm, hence the seq_cst fence and operations there):
**
**   reader:    snapshot := published; STORE entry.snapshot; FENCE;
**              LOAD horizon; retry if snapshot < horizon
**   reclaimer: H := min(published, all snapshots); STORE horizon := H;
**              LOAD all snapshots again; reclaim only below the new minimum
**
** Either the reclaimer's second scan sees the reader's entry, or the reader
** sees the new horizon and retries with a newer snapshot (published >= H).
** So nothing a published snapshot can read is ever reclaimed.
*/
#include "slots.h"

#include "epoch.h"

#include "arena.h"
#include "blockcache.h"
#include "durable.h"
#include "error.h"
#include "fence.h"
#include "mvcc.h"
#include "seqring.h"
#include "testhooks.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

size_t slots_section_bytes(void) { return sizeof(struct shm_slot) * SHM_MAX_SLOTS; }

/* Byte `slot` of the region file is the slot's liveness lock. */
static int slot_lock(const shm_region *r, uint32_t slot, short type)
{
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = slot;
  fl.l_len = 1;
  return fcntl(r->fd, F_OFD_SETLK, &fl);
}

int slots_any_held(int region_fd)
{
  struct flock fl;
  memset(&fl, 0, sizeof fl);   /* l_pid 0, as F_OFD_GETLK wants */
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = SHM_MAX_SLOTS;    /* every slot's byte (slot_lock) */
  if (fcntl(region_fd, F_OFD_GETLK, &fl) != 0)
    return -1;
  return fl.l_type != F_UNLCK;
}

/* Stamp every version listed in commit record `record` (0: none) with final.
** The reaper runs this for dead processes inside every open: a damaged
** record must not take it out of the mapping (every open would crash the
** same way), so what it names is bounded first; what is out of bounds is
** left unstamped (pending: invisible to readers). */
static void stamp_record(shm_region *r, uint64_t record, uint64_t final)
{
  if (!record || !shm_in_arenas(r, record, sizeof(struct mv_commit)))
    return;
  struct mv_commit *c = shm_at(r, record);
  /* acquire: pairs with each release raise of nops (mv_commit_add), so
  ** every version listed is seen */
  uint32_t n = atomic_load_explicit(&c->nops, memory_order_acquire);
  if (n > c->cap || !shm_in_arenas(r, record, mv_commit_bytes(n)))
    return;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t voff = shm_ref_off(r, c->versions[i]);
    if (!shm_in_arenas(r, voff, mv_version_bytes(0)))
      continue;
    struct mv_version *v = shm_at(r, voff);
    /* relaxed: the stamp carries its own meaning; the release on gen that
    ** follows orders it before the descriptor can be reused. */
    atomic_store_explicit(&v->state, final, memory_order_relaxed);
  }
}

uint64_t slots_descriptor_record(const struct shm_txn_entry *e)
{
  /* acquire: pairs with the owner's release store of the record, made after
  ** its first version was listed (src/txn.c) */
  return atomic_load_explicit(&e->record, memory_order_acquire);
}

void slots_retire_descriptor(shm_region *r, struct shm_txn_entry *e, uint64_t record)
{
  uint64_t state = atomic_load_explicit(&e->state, memory_order_acquire);
  if (state == TXN_PENDING) {
    uint64_t expected = TXN_PENDING;
    /* acq_rel: the decision is the commit point; it must be ordered after
    ** the installs that precede it and before the stamps that follow. */
    if (atomic_compare_exchange_strong_explicit(&e->state, &expected, TXN_ABORTED,
                                                memory_order_acq_rel, memory_order_acquire))
      state = TXN_ABORTED;
    else
      state = expected;
  }
  /* state is decided now (a commit seq, or TXN_ABORTED): never TXN_PENDING */
  stamp_record(r, record, state == TXN_ABORTED ? MV_ABORTED : state);
  /* release: a reader that sees the new generation must see the stamps */
  atomic_fetch_add_explicit(&e->gen, 1, memory_order_release);
  /* The record is let go before the state is reset: a reaper that finds a
  ** decided state re-stamps the same values, one that finds the reset state
  ** finds no record, so a decided commit can never be re-stamped aborted. */
  atomic_store_explicit(&e->record, 0, memory_order_relaxed);
  atomic_store_explicit(&e->seq, 0, memory_order_relaxed);
  /* release: a reader that sees the reset state must see the new gen */
  atomic_store_explicit(&e->state, TXN_PENDING, memory_order_release);
}

/* Reclaim everything a dead owner held. Caller holds the slot's lock. Every
** step is idempotent, so a reaper that dies half-way is simply redone. */
static void reap_locked(shm_region *r, uint32_t slot)
{
  struct shm_slot *s = shm_slot_at(r, slot);
  for (uint32_t i = 0; i < SHM_TXNS_PER_SLOT; i++) {
    struct shm_txn_entry *e = &s->txn[i];
    uint64_t record = slots_descriptor_record(e);   /* named only once a version is listed */
    int had_intents = record && atomic_load_explicit(&e->state, memory_order_acquire) == TXN_PENDING;
    slots_retire_descriptor(r, e, record);   /* undecided = aborted: wholly absent */
    if (record)
      CRASHPOINT("reap.one_retired");   /* killed after one descriptor: tests/test_crash.c */
    /* release: pairs with the horizon scan; the snapshot is gone */
    atomic_store_explicit(&e->snapshot, 0, memory_order_release);
    epoch_leave(&e->commit_epoch);     /* after the descriptor is decided: a flush may go on */
    hazard_clear(e);
    if (had_intents)
      atomic_fetch_add_explicit(&r->hdr->stats.dead_txns_rolled_back, 1, memory_order_relaxed);
  }
  CRASHPOINT("reap.retired");   /* killed after every descriptor, before the ring: tests/test_crash.c */
  seqring_decide_all_of_slot(r, slot);   /* after every descriptor is decided */
  arena_release_claims_of(r, slot);
  if (r->hdr->cache_off)
    bc_release_owner(shm_at(r, r->hdr->cache_off), slot + 1);   /* blocks it was caching */
  atomic_fetch_add_explicit(&r->hdr->stats.processes_reaped, 1, memory_order_relaxed);
  atomic_store_explicit(&s->is_daemon, 0, memory_order_relaxed);
  /* release: a new owner that sees 0 sees the slot fully cleaned */
  atomic_store_explicit(&s->owner_pid, 0, memory_order_release);
  /* What the dead process left may be work for a daemon thread that sleeps,
  ** idle: an arena it had claimed, or viewed, for the flusher; commits of it
  ** that are now published, for the writer. */
  arena_wake_flusher(r);
  (void)durable_nudge(r);   /* the dead acknowledged nothing: no successor to see to */
}

int slots_reap_if_dead(shm_region *r, uint32_t my_slot, uint32_t slot)
{
  if (slot == my_slot || slot >= SHM_MAX_SLOTS)
    return 0;
  struct shm_slot *s = shm_slot_at(r, slot);
  if (atomic_load_explicit(&s->owner_pid, memory_order_acquire) == 0)
    return 1;
  pthread_mutex_lock(&r->reap_lock);
  int free_or_dead = slot_lock(r, slot, F_WRLCK) == 0;   /* EAGAIN: a live handle holds it */
  if (free_or_dead) {
    if (atomic_load_explicit(&s->owner_pid, memory_order_acquire) != 0)
      reap_locked(r, slot);
    slot_lock(r, slot, F_UNLCK);
  }
  pthread_mutex_unlock(&r->reap_lock);
  return free_or_dead;
}

unsigned slots_reap_all(shm_region *r, uint32_t my_slot)
{
  unsigned reaped = 0;
  uint32_t high = slots_scan_bound(r);
  for (uint32_t i = 0; i < high; i++) {
    struct shm_slot *s = shm_slot_at(r, i);
    if (i != my_slot && atomic_load_explicit(&s->owner_pid, memory_order_acquire) != 0 &&
        slots_reap_if_dead(r, my_slot, i))
      reaped++;
  }
  return reaped;
}

/* Make slot a scanned one: back its pages with memory (the region is
** created without the slots section's pages, so that slots no process ever
** uses cost nothing), then raise slots_high past it, before anything of
** the slot is read or written. Every slot below it is reserved too, not
** only this one: a lower slot may be locked by a process that has not
** reserved it yet (or died before it could), and the scans read every slot
** below slots_high, where an unreserved page of a full tmpfs is a SIGBUS.
** So "below slots_high" always means "reserved". Returns 0 or the errno of
** the reservation. seq_cst load and CAS (see slots_scan_bound): whichever of
** them finds it above slot already comes after, in the total order, the
** raise that put it there, so a scan that missed this slot came before
** that raise. */
static int open_slot(shm_region *r, uint32_t slot)
{
  uint32_t cur = atomic_load_explicit(&r->hdr->slots_high, memory_order_seq_cst);
  if (cur > slot)
    return 0;   /* reserved, with every slot below, by whoever raised it */
  uint64_t first_page = r->hdr->slots_off & ~4095ull;
  uint64_t end = r->hdr->slots_off + (uint64_t)(slot + 1) * sizeof(struct shm_slot);
  int err = shm_reserve(r, first_page, ((end + 4095) & ~4095ull) - first_page);
  if (err)
    return err;
  CRASHPOINT("slots.reserved");   /* killed here: tests/test_crash.c */
  while (cur <= slot && !atomic_compare_exchange_weak_explicit(&r->hdr->slots_high, &cur, slot + 1,
                                                               memory_order_seq_cst, memory_order_seq_cst)) {
  }
  return 0;
}

int slots_daemon_attached(const shm_region *r)
{
  uint32_t high = slots_scan_bound(r);
  for (uint32_t i = 0; i < high; i++) {
    struct shm_slot *s = shm_slot_at(r, i);
    /* acquire: pairs with the attach's release, so is_daemon is this owner's */
    if (atomic_load_explicit(&s->owner_pid, memory_order_acquire) != 0 &&
        atomic_load_explicit(&s->is_daemon, memory_order_relaxed))
      return 1;
  }
  return 0;
}

int slots_attach(shm_region *r, int is_daemon, uint32_t *slot_out)
{
  for (uint32_t i = 0; i < SHM_MAX_SLOTS; i++) {
    if (slot_lock(r, i, F_WRLCK) != 0) {
      if (errno == EAGAIN || errno == EACCES)
        continue;
      return sdb_fail_errno("lock process slot %u of %s", i, r->path);
    }
    int err = open_slot(r, i);
    if (err) {
      slot_lock(r, i, F_UNLCK);
      return sdb_fail(SOCHDB_BUSY, "cannot reserve shared memory for process slot %u of %s: %s", i, r->path,
                      strerror(err));
    }
    CRASHPOINT("slots.opened");     /* killed here: tests/test_crash.c */
    struct shm_slot *s = shm_slot_at(r, i);
    if (atomic_load_explicit(&s->owner_pid, memory_order_acquire) != 0)
      reap_locked(r, i);             /* its owner died: clean it, then take it */
    atomic_store_explicit(&s->is_daemon, (uint64_t)is_daemon, memory_order_relaxed);
    /* release: a stats reader that sees the pid sees whether it is the daemon */
    atomic_store_explicit(&s->owner_pid, (uint64_t)getpid(), memory_order_release);
    *slot_out = i;
    slots_reap_all(r, i);
    return SOCHDB_OK;
  }
  return sdb_fail(SOCHDB_BUSY, "all %u process slots of %s are held by live processes",
                  SHM_MAX_SLOTS, r->path);
}

void slots_detach(shm_region *r, uint32_t slot)
{
  struct shm_slot *s = shm_slot_at(r, slot);   /* its counters stay: shm_slot_stats */
  atomic_store_explicit(&s->is_daemon, 0, memory_order_relaxed);
  atomic_store_explicit(&s->owner_pid, 0, memory_order_release);
  slot_lock(r, slot, F_UNLCK);
}

uint64_t slots_offer_snapshot(shm_region *r, struct shm_txn_entry *e)
{
  uint64_t snap = seqring_published(r);
  /* relaxed: the caller's seq_cst fence orders it before the horizon check */
  atomic_store_explicit(&e->snapshot, snap, memory_order_relaxed);
  return snap;
}

int slots_snapshot_held(shm_region *r, uint64_t snap)
{
  /* seq_cst: after the caller's fence, the reader half of the horizon protocol */
  return snap >= atomic_load_explicit(&r->hdr->horizon, memory_order_seq_cst);
}

uint64_t slots_publish_snapshot(shm_region *r, struct shm_txn_entry *e)
{
  for (;;) {
    uint64_t snap = slots_offer_snapshot(r, e);
    shm_fence_seq_cst();
    if (slots_snapshot_held(r, snap))
      return snap;
  }
}

static uint64_t oldest_snapshot(shm_region *r, uint64_t bound)
{
  uint32_t high = slots_scan_bound(r);
  for (uint32_t i = 0; i < high; i++) {
    /* Every entry, free slots included: skipping one on a relaxed load of
    ** its owner would step outside the seq_cst order the protocol needs
    ** (slots never attached are skipped safely: slots_scan_bound). */
    struct shm_slot *s = shm_slot_at(r, i);
    for (uint32_t j = 0; j < SHM_TXNS_PER_SLOT; j++) {
      uint64_t snap = atomic_load_explicit(&s->txn[j].snapshot, memory_order_seq_cst);
      if (snap && snap < bound)
        bound = snap;
    }
  }
  return bound;
}

uint64_t slots_compute_horizon(shm_region *r)
{
  uint64_t first = oldest_snapshot(r, seqring_published(r));
  uint64_t cur = atomic_load_explicit(&r->hdr->horizon, memory_order_seq_cst);
  /* seq_cst CAS-max: two reclaimers must never move the horizon backwards,
  ** or a reader could validate against the lower value after the other
  ** reclaimer's second scan missed it */
  while (first > cur && !atomic_compare_exchange_weak_explicit(&r->hdr->horizon, &cur, first,
                                                               memory_order_seq_cst, memory_order_seq_cst))
    ;
  return oldest_snapshot(r, first);
}

/* Add one slot's counters, whoever owns it now or owned it before. */
static void add_slot_counters(const struct shm_slot_stats *c, struct sochdb_stats *out, uint64_t *stall_ns)
{
  /* relaxed: counters, ordered with nothing */
  out->commits += atomic_load_explicit(&c->commits, memory_order_relaxed);
  out->conflicts += atomic_load_explicit(&c->conflicts, memory_order_relaxed);
  out->aborts += atomic_load_explicit(&c->aborts, memory_order_relaxed);
  out->keys_written += atomic_load_explicit(&c->keys_written, memory_order_relaxed);
  out->user_bytes += atomic_load_explicit(&c->user_bytes, memory_order_relaxed);
  out->cache_hits += atomic_load_explicit(&c->cache_hits, memory_order_relaxed);
  out->cache_misses += atomic_load_explicit(&c->cache_misses, memory_order_relaxed);
  out->write_stalls += atomic_load_explicit(&c->write_stalls, memory_order_relaxed);
  *stall_ns += atomic_load_explicit(&c->write_stall_ns, memory_order_relaxed);
}

void slots_collect_stats(shm_region *r, uint32_t my_slot, struct sochdb_stats *out)
{
  (void)my_slot;
  struct shm_global_stats *g = &r->hdr->stats;
  out->processes_reaped = atomic_load_explicit(&g->processes_reaped, memory_order_relaxed);
  out->dead_txns_rolled_back = atomic_load_explicit(&g->dead_txns_rolled_back, memory_order_relaxed);
  uint64_t published = seqring_published(r);
  out->last_commit_seq = published;
  out->oldest_snapshot = published;
  uint64_t stall_ns = 0;
  uint32_t high = slots_scan_bound(r);   /* a slot above it was never attached: no counts */
  for (uint32_t i = 0; i < high; i++) {
    struct shm_slot *s = shm_slot_at(r, i);
    add_slot_counters(&s->stats, out, &stall_ns);   /* free slots too: shm_slot_stats */
    /* acquire: pairs with the attach's release, so is_daemon is this owner's */
    if (atomic_load_explicit(&s->owner_pid, memory_order_acquire) == 0)
      continue;
    if (!atomic_load_explicit(&s->is_daemon, memory_order_relaxed))
      out->processes_attached++;
    for (uint32_t j = 0; j < SHM_TXNS_PER_SLOT; j++) {
      uint64_t snap = atomic_load_explicit(&s->txn[j].snapshot, memory_order_relaxed);
      if (!snap)
        continue;
      out->transactions_open++;
      if (snap < out->oldest_snapshot)
        out->oldest_snapshot = snap;
    }
  }
  out->write_stall_us = stall_ns / 1000;
}
