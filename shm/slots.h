/*
** slots.h — process slots: who is attached, which snapshots they hold, and
** the commit descriptors of their transactions; and the reaper that reclaims
** all of it when a process dies.
**
** Every open handle owns one slot. Ownership is an exclusive open-file-
** description lock (fcntl F_OFD_SETLK) on byte <slot index> of the region
** file, taken through the handle's own file descriptor. The kernel drops it
** when the process dies, whatever instruction it was at, and it does not
** depend on which thread took it. So "is slot i alive?" is answered by trying
** to take that lock: EAGAIN means a live handle holds it. Whoever succeeds on
** a slot that still has an owner is the one and only reaper of that slot
** (the lock makes reaping exclusive; a reaper that dies drops the lock and the
** next one redoes the idempotent steps).
**
** Each slot holds SHM_TXNS_PER_SLOT transaction entries. An entry is both the
** transaction's published snapshot (the cross-process reader table that
** bounds reclamation) and its commit descriptor (PENDING / ABORTED /
** committed at seq), which the versions it installs point to by
** (slot, entry, generation).
*/
#ifndef SOCHDB_SHM_SLOTS_H
#define SOCHDB_SHM_SLOTS_H

#include "region.h"

#define SHM_MAX_SLOTS      256u
#define SHM_TXNS_PER_SLOT  128u

/* Commit descriptor states. Committed descriptors hold their sequence
** number, which is always >= SHM_FIRST_SEQ, so states never collide. */
#define TXN_PENDING  0u
#define TXN_ABORTED  1u

struct shm_txn_entry {
  _Atomic uint64_t snapshot;  /* published snapshot seq; 0 = entry holds none */
  _Atomic uint64_t gen;       /* bumped before the descriptor is reused */
  _Atomic uint64_t state;     /* TXN_PENDING, TXN_ABORTED or the commit seq */
  _Atomic uint64_t record;    /* its commit record (durable.h): every version it made; 0 = none */
  _Atomic uint64_t seq;       /* the commit sequence it claimed, 0 before */
  _Atomic uint64_t view_memtables; /* hazard: bit i = memtable i is in its view (epoch.h) */
  _Atomic uint64_t commit_epoch;   /* epoch when its commit began writing memtables; 0 = not committing */
  _Atomic uint64_t view_files;     /* hazard: file list index + 1 it reads; 0 = none (epoch.h) */
};

/* A slot's counters are never reset: they carry over from owner to owner
** (a new owner, a reaper, a closing handle all leave them), so a total, the
** sum of every slot's, only grows, whoever attaches or leaves while it is
** read. Moving a leaver's counts into the header instead had a window, between
** taking them from the slot and adding them there, in which a reading missed
** them, or counted them twice, and the next reading dipped. */
struct shm_slot_stats {       /* written by the slot's owners, one at a time; read by stats */
  _Atomic uint64_t commits;
  _Atomic uint64_t conflicts;
  _Atomic uint64_t aborts;
  _Atomic uint64_t keys_written;
  _Atomic uint64_t user_bytes;   /* key + value bytes committed */
  /* Block cache lookups of this process (bc_lookup_counted): each process
  ** counts on its own line, so that cached reads in many processes do not
  ** all add to one line of the cache's header. */
  _Atomic uint64_t cache_hits;
  _Atomic uint64_t cache_misses;
  /* Its owners' waits for the daemon (src/txn.c, note_stall). */
  _Atomic uint64_t write_stalls;
  _Atomic uint64_t write_stall_ns;
};

struct shm_slot {
  _Atomic uint64_t owner_pid;  /* 0 = free; informational (liveness is the lock) */
  _Atomic uint64_t is_daemon;  /* held by sochdbd: not counted as an attached process */
  uint64_t pad[6];
  struct shm_slot_stats stats;   /* with the two stall counters, where 16 bytes of padding were */
  struct shm_txn_entry txn[SHM_TXNS_PER_SLOT];
};

/* A version names its descriptor with this 64-bit reference. */
static inline uint64_t txn_ref(uint32_t slot, uint32_t entry, uint64_t gen)
{ return ((uint64_t)slot << 48) | ((uint64_t)entry << 40) | (gen & 0xffffffffffull); }
static inline uint32_t txn_ref_slot(uint64_t ref)  { return (uint32_t)(ref >> 48); }
static inline uint32_t txn_ref_entry(uint64_t ref) { return (uint32_t)(ref >> 40) & 0xff; }
static inline uint64_t txn_ref_gen(uint64_t ref)   { return ref & 0xffffffffffull; }

static inline struct shm_slot *shm_slot_at(const shm_region *r, uint32_t i)
{ return (struct shm_slot *)shm_at(r, r->hdr->slots_off) + i; }

static inline struct shm_txn_entry *shm_txn_entry_at(const shm_region *r, uint32_t slot, uint32_t e)
{ return &shm_slot_at(r, slot)->txn[e]; }

size_t slots_section_bytes(void);

/* How many slots a scan of every entry must look at: one more than the
** highest slot ever attached. seq_cst, and loaded at the start of each scan,
** after the scanner's own unpublishing store: a slot attached later raised
** slots_high (seq_cst) before it stored anything in its entries, so the
** store-then-check protocols that read entries (slots.c, epoch.c) lose
** nothing by skipping it: its publisher's check comes after the scanner's
** store in the total order, and sees it. */
static inline uint32_t slots_scan_bound(const shm_region *r)
{
  uint32_t high = atomic_load_explicit(&r->hdr->slots_high, memory_order_seq_cst);
  return high < SHM_MAX_SLOTS ? high : SHM_MAX_SLOTS;   /* a damaged word must not send scans past the section */
}

/* Claim a free slot (reaping dead ones on the way). SOCHDB_BUSY if all are live.
** is_daemon marks the slot as sochdbd's before it is published. */
int  slots_attach(shm_region *r, int is_daemon, uint32_t *slot_out);
/* Whether a live slot is a daemon's (sochdbd attaches as one while it
** serves this region). A look: it may change the moment after. */
int  slots_daemon_attached(const shm_region *r);
/* Give our slot back: our entries must be idle. */
void slots_detach(shm_region *r, uint32_t slot);

/* Whether any process holds a slot of the region file that region_fd is
** open on: 1 if one does, 0 if none, -1 on an error (errno). Every attached
** process, sochdbd included, holds its slot's lock (a byte of the file)
** from its attach to its detach or death, so 0 means nobody uses it. */
int  slots_any_held(int region_fd);

/* Reap `slot` if its owner is dead. Returns 1 if it was reaped (or found
** free), 0 if a live handle holds it. Never call it on one's own slot. */
int  slots_reap_if_dead(shm_region *r, uint32_t my_slot, uint32_t slot);
/* Try every slot but ours. Returns how many dead slots were reaped. */
unsigned slots_reap_all(shm_region *r, uint32_t my_slot);

/* Publish a snapshot in entry e: returns the snapshot seq. Lock-free; see
** the horizon protocol in slots.c. */
uint64_t slots_publish_snapshot(shm_region *r, struct shm_txn_entry *e);
/* Its two halves, for a caller that publishes other hazards at the same
** time and orders all their stores with one seq_cst fence (src/txn.c):
** offer stores the published seq in e and returns it; after the fence,
** held says whether it still holds, else the caller offers again. */
uint64_t slots_offer_snapshot(shm_region *r, struct shm_txn_entry *e);
int      slots_snapshot_held(shm_region *r, uint64_t snap);

/* Finish a descriptor whose transaction is over: stamp the versions of its
** commit record `record` with their final state (an undecided descriptor is
** decided aborted first), bump the generation and reset it. Used by the
** owner after commit/abort, with the record it made (a reaper that took the
** slot from a live owner whose lock was lost has cleared the descriptor's),
** and by the reaper for a dead owner, with slots_descriptor_record(e). */
void slots_retire_descriptor(shm_region *r, struct shm_txn_entry *e, uint64_t record);

/* The commit record descriptor e names (0: none yet). */
uint64_t slots_descriptor_record(const struct shm_txn_entry *e);

/* The oldest published snapshot (or published_seq if none) — the horizon
** below which nothing may be reclaimed. Also stores it in hdr->horizon. */
uint64_t slots_compute_horizon(shm_region *r);

/* Sum the per-slot counters, count live slots and open snapshots. */
struct sochdb_stats;
void slots_collect_stats(shm_region *r, uint32_t my_slot, struct sochdb_stats *out);

#endif
