/*
** arena.h — memtable arenas: the table of fixed-size arenas in the region,
** lock-free bump allocation inside one, and rotation to a fresh arena when
** the active one is full.
**
** Each arena holds one memtable (a skiplist, see skiplist.h). Exactly one is
** active (hdr->active_memtable); writers allocate from it with one atomic
** add. When an allocation does not fit, the writer rotates: it claims a free
** arena, initialises it, marks it LIVE and swings active_memtable to it with a
** CAS. Full arenas stay LIVE and readable (newest id first) until the daemon
** has flushed them (daemon/flusher.c); when no arena is free, writers wait,
** then get SOCHDB_BUSY.
*/
#ifndef SOCHDB_SHM_ARENA_H
#define SOCHDB_SHM_ARENA_H

#include "region.h"

/* FREE -> CLAIMED (a rotator initialises it) -> LIVE (in every new view;
** the active one takes writes) -> flushed by the daemon (still LIVE, its
** flushed_file set) -> RETIRED (out of new views) -> FREE (once no view
** names it and no commit can still be looking at it, epoch.h). */
enum { MT_FREE = 0, MT_CLAIMED = 1, MT_LIVE = 2, MT_RETIRED = 3 };

struct shm_memtable {
  /* State (MT_*) in the low half, claimer (slot + 1 of the process that is
  ** rotating to it, 0 = none) in the high half: one word, so that every
  ** transition is one atomic step and a process killed between two steps
  ** can never leave a claimed arena without its claimer (or the reverse). */
  _Atomic uint64_t state_claim;
  _Atomic uint64_t id;        /* creation order: higher = newer */
  _Atomic uint64_t used;      /* bump pointer, bytes from the arena start */
  uint64_t arena_off;         /* fixed at region creation */
  uint64_t capacity;
  /* The smallest commit seq with a version here (UINT64_MAX: none yet):
  ** each committer lowers it before deciding, so the WAL before it can go
  ** once every older memtable is flushed (daemon/flusher.c). */
  _Atomic uint64_t min_seq;
  _Atomic uint64_t max_seq;       /* set by the flusher */
  _Atomic uint64_t flushed_file;  /* the SSTable holding it, 0 = not flushed yet */
  _Atomic uint64_t retire_tag;    /* commit-epoch tag once RETIRED (epoch.h) */
  /* Bytes from the arena start that are backed by real pages (fallocate):
  ** allocations reserve ahead in ARENA_RESERVE_CHUNK steps, and a recycled
  ** arena gives its pages back (or keeps them a while for the next
  ** rotation), so the region's resident size follows the data it holds,
  ** not the arenas' capacity (layout version 5). With ARENA_TRIMMING set,
  ** the daemon is giving back the pages beyond the rest of the word (the
  ** floor): nobody reserves past it meanwhile (arena_trim_begin). */
  _Atomic uint64_t reserved;
  /* Nonzero once a node may be missing from the skiplist's hash index (an
  ** inserter died between linking and hashing it): lookups then search the
  ** skiplist (skiplist.h). Cleared by sl_init. */
  _Atomic uint64_t index_incomplete;
  uint64_t pad[5];
};

/* A process-local, ordered list of live memtables (newest first). */
struct mt_view {
  uint32_t n;
  uint32_t idx[SHM_MAX_MEMTABLES];
};

static inline uint64_t mt_word(uint32_t state, uint32_t claimer) { return (uint64_t)claimer << 32 | state; }
static inline uint32_t mt_state_of(uint64_t word)   { return (uint32_t)word; }
static inline uint32_t mt_claimer_of(uint64_t word) { return (uint32_t)(word >> 32); }

/* acquire: whoever sees LIVE sees the arena's initialised head and id */
static inline uint64_t mt_load(const struct shm_memtable *m)
{ return atomic_load_explicit(&m->state_claim, memory_order_acquire); }

size_t   arena_table_bytes(void);
void     arena_init_all(shm_region *r, uint64_t arenas_off);

static inline struct shm_memtable *arena_memtable(const shm_region *r, uint32_t i)
{ return (struct shm_memtable *)shm_at(r, r->hdr->memtables_off) + i; }

/* Pages are reserved for an arena this many bytes at a time. */
#define ARENA_RESERVE_CHUNK (1ull << 20)

/* The flag of `reserved` that marks a trim in progress. */
#define ARENA_TRIMMING (1ull << 63)

/* How many bytes from arena i's start are backed by pages for sure. */
uint64_t arena_backed(const shm_region *r, uint32_t i);

/* How much of an arena of this capacity a fresh memtable starts with reserved. */
uint64_t arena_first_reserve(uint64_t capacity);

/* Back the start of arena i (its head node, the first allocations) with real
** pages now (SOCHDB_BUSY if the tmpfs is full); arena_alloc reserves the rest
** as it goes. */
int      arena_reserve(shm_region *r, uint32_t i);

/* Allocate n bytes (8-aligned) in memtable i. Returns the region offset, or
** 0 if it does not fit (or the tmpfs has no page left to back it: the caller
** rotates, and arena_last_reserve_error says why if no room is found). */
uint64_t arena_alloc(shm_region *r, uint32_t i, uint64_t n);

/* Back arena i's bytes [0, upto) with pages, as arena_alloc does, but
** without mapping them into this process: for a writer that writes them
** through the region's file (recovery.c), where mapping them first would
** only cost. Returns 0 or an errno (also arena_last_reserve_error's). */
int      arena_back(shm_region *r, uint32_t i, uint64_t upto);

/* The errno (ENOSPC) of this thread's last reservation of arena pages that
** failed, or 0 if none did. */
int      arena_last_reserve_error(void);

/* The active memtable index (acquire: its skiplist head must be initialised). */
static inline uint32_t arena_active(const shm_region *r)
{ return atomic_load_explicit(&r->hdr->active_memtable, memory_order_acquire); }

/* Rotate away from `full` (if it is still active). Returns SOCHDB_OK when some
** memtable other than `full` is active afterwards, SOCHDB_BUSY if no arena is free.
** A won rotation wakes the flusher. */
int      arena_rotate(shm_region *r, uint32_t my_slot, uint32_t full);

/* Wake the daemon's flusher, which sleeps on active_memtable while it has
** nothing to do: a rotation gave it a memtable to flush, or a writer waits
** for an arena. */
void     arena_wake_flusher(shm_region *r);

/* Live memtables, newest first. */
void     arena_view(const shm_region *r, struct mt_view *v);

/* 1 if more than `limit` memtables are full and wait for their flush (LIVE,
** unclaimed, not the active one); flushed memtables that readers still hold
** do not count. A figure for a throttle: it may be a moment stale. */
int      arena_flush_backlog_over(const shm_region *r, uint32_t limit);

/* The same for a transaction that keeps reading them, in two halves around
** the caller's seq_cst fence (which may order other hazards too): offer
** takes the view, with each memtable's id in ids[SHM_MAX_MEMTABLES], and
** stores it in *hazard (the entry's view_memtables, epoch.h); after the
** fence, held says whether every memtable it names is still the one it
** saw, else the caller offers again. Once held, the flusher recycles none
** of them before the hazard is cleared. (An arena whose rotation lost goes
** back to FREE without the flusher; it never held a version.) */
void     arena_view_offer(const shm_region *r, _Atomic uint64_t *hazard, struct mt_view *v, uint64_t *ids);
int      arena_view_held(const shm_region *r, const struct mt_view *v, const uint64_t *ids);

/* A committer: a version of commit seq lives in memtable i. */
void     arena_note_seq(shm_region *r, uint32_t i, uint64_t seq);

/* The flusher: take memtable i out of new views (LIVE -> RETIRED). Returns
** its commit-epoch tag (epoch.h). First raises hdr->retired_max_seq to its
** max_seq: a transaction whose snapshot is older than that can no longer
** see every version newer than its snapshot in memory, so its commit looks
** its keys up in the SSTables as well (src/txn.c, check_flushed). */
uint64_t arena_retire(shm_region *r, uint32_t i);
/* ... and give it back once no view can read it (RETIRED -> FREE), its
** pages returned to the system, or kept (keep_pages) for the next rotation,
** which claims the free arena with the most pages first. */
void     arena_recycle(shm_region *r, uint32_t i, int keep_pages);

/* ---- pages that a recycled arena kept ----
** The daemon gives them back when no rotation takes them soon, and, once a
** rotation did, those beyond where its writers will get soon. */

/* The bytes of pages free arena i still holds (0 if it is not free). */
uint64_t arena_spare_bytes(const shm_region *r, uint32_t i);

/* Give a free arena's pages back, claiming it meanwhile as my_slot (the
** reaper frees the claim of a giver that dies, and gives the pages back).
** 0 if it was not free, or a view still names it (a lost rotation's). */
int      arena_release_spare(shm_region *r, uint32_t i, uint32_t my_slot);

/* Giving back the pages of a LIVE arena beyond a floor, in two steps, while
** writers go on allocating below it without a lock:
**   arena_trim_begin marks the watermark (ARENA_TRIMMING, the floor): from
**     then on an allocation reaching past the floor fails as if the arena
**     were full, and the writer rotates. Returns 0 (nothing begun) unless
**     the floor is a multiple of ARENA_RESERVE_CHUNK, at or above `used`
**     and below the watermark. The caller then waits until every commit
**     epoch is above t->tag (epoch.h): commits that loaded the old watermark
**     are over.
**   arena_trim_end punches [floor, old watermark) and lowers the watermark
**     to the floor, writers reserving past it again; or, if allocations
**     passed the floor meanwhile (1 returned, 0 if so), puts the old
**     watermark back and punches nothing.
**   arena_trim_cancel puts the old watermark back (a caller that could not
**     wait).
** A trimmer that dies in between leaves the flag: the arena is full at its
** floor and, once flushed, recycled as any other. One trimmer at a time. */
struct arena_trim {
  uint32_t idx;
  uint64_t floor, was, tag;
};
int      arena_trim_begin(shm_region *r, uint32_t i, uint64_t floor, struct arena_trim *t);
int      arena_trim_end(shm_region *r, const struct arena_trim *t);
void     arena_trim_cancel(shm_region *r, const struct arena_trim *t);

/* A new daemon, before it flushes anything: a dead one may have retired a
** memtable without tagging it or raising retired_max_seq (killed inside
** arena_retire); tag every RETIRED one afresh and raise retired_max_seq
** again, so that commits that may still look at them are waited for. */
void     arena_adopt_retired(shm_region *r);

/* For the reaper: release arenas a dead slot had claimed but not finished. */
void     arena_release_claims_of(shm_region *r, uint32_t slot);

#endif
