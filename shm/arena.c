/*
** arena.c — the table of memtable arenas, bump allocation and rotation.
**
** A rotating writer marks its new arena LIVE before it swings
** active_memtable, so that any reader whose view is taken after a commit in
** the new arena sees that arena. If another writer won the rotation, the new
** arena (still empty) is given back. The claimer field lets the reaper give
** back an arena whose rotator died half-way.
*/
#include "arena.h"

#include "epoch.h"
#include "error.h"
#include "futex.h"
#include "skiplist.h"
#include "testhooks.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

size_t arena_table_bytes(void) { return sizeof(struct shm_memtable) * SHM_MAX_MEMTABLES; }

/* A fresh memtable has no commits and no file. Relaxed: published by the
** release store of LIVE. */
static void arena_reset_meta(struct shm_memtable *m)
{
  atomic_store_explicit(&m->min_seq, UINT64_MAX, memory_order_relaxed);
  atomic_store_explicit(&m->max_seq, 0, memory_order_relaxed);
  atomic_store_explicit(&m->flushed_file, 0, memory_order_relaxed);
  atomic_store_explicit(&m->retire_tag, 0, memory_order_relaxed);
}

void arena_init_all(shm_region *r, uint64_t arenas_off)
{
  struct shm_header *h = r->hdr;
  for (uint32_t i = 0; i < h->n_memtables; i++) {
    struct shm_memtable *m = arena_memtable(r, i);
    m->arena_off = arenas_off + (uint64_t)i * h->memtable_bytes;
    m->capacity = h->memtable_bytes;
    atomic_init(&m->state_claim, mt_word(MT_FREE, 0));
    atomic_init(&m->reserved, 0);
  }
  sl_init(r, 0);
  arena_reset_meta(arena_memtable(r, 0));
  atomic_init(&arena_memtable(r, 0)->id, 1);
  /* the region's creator reserved this much of arena 0 (region.c) */
  atomic_init(&arena_memtable(r, 0)->reserved, arena_first_reserve(h->memtable_bytes));
  atomic_init(&arena_memtable(r, 0)->state_claim, mt_word(MT_LIVE, 0));
  atomic_init(&h->active_memtable, 0);
  atomic_init(&h->next_memtable_id, 2);
  atomic_init(&h->viewable_memtables, 1);
}

uint64_t arena_first_reserve(uint64_t capacity)
{
  /* the head node and hash index, and room for the first allocations */
  uint64_t first = (sl_head_bytes(capacity) + ARENA_RESERVE_CHUNK / 2 + ARENA_RESERVE_CHUNK - 1) /
                   ARENA_RESERVE_CHUNK * ARENA_RESERVE_CHUNK;
  return capacity < first ? capacity : first;
}

/* The errno of this thread's last failed reservation (ENOSPC: the tmpfs is
** full), for the messages of whoever finds no room afterwards. */
static _Thread_local int last_reserve_error;

/* Raise m's watermark from `have` to `upto` (a CAS-max). release on
** success: a writer that sees the raised watermark (acquire, reserve_upto)
** skips the fallocate, so it must see it done. relaxed on failure: the
** caller reserved [have, upto) itself, whatever another raised it to. */
static void raise_reserved(struct shm_memtable *m, uint64_t have, uint64_t upto)
{
  while (have < upto && !atomic_compare_exchange_weak_explicit(&m->reserved, &have, upto, memory_order_release,
                                                               memory_order_relaxed)) {
  }
}

/* reserve_upto's work once the watermark `have` is below upto: out of line,
** so that the check every allocation makes is a few instructions, not a
** call with this one's frame (3% of a one-put commit's, callgrind). */
static __attribute__((noinline)) int reserve_more(shm_region *r, struct shm_memtable *m, uint64_t have,
                                                  uint64_t upto, int map)
{
  /* Beyond the floor of a trim in progress: the daemon may be punching
  ** those pages. The arena counts as full (arena_trim_begin); no error. */
  if (have & ARENA_TRIMMING)
    return EAGAIN;
  /* Racing reservers may both reserve the same range: it is idempotent. */
  int err = shm_reserve(r, m->arena_off + have, upto - have);
  last_reserve_error = err;
  if (err != 0)
    return err;
  /* Map the new pages into this process in one call (a hint; an old kernel
  ** says EINVAL): the writer that reserved them writes them next, and a
  ** page fault for each 4 KiB cost more than the kernel zeroing them. */
  if (map)
    (void)madvise(shm_at(r, m->arena_off + have), upto - have, MADV_POPULATE_WRITE);
  raise_reserved(m, have, upto);
  return 0;
}

/* Back arena bytes [0, upto) with pages (shm_reserve), rounded up to a
** whole chunk, before anyone writes them, and map them into this process if
** `map`. Returns 0 or an errno. */
static inline int reserve_upto(shm_region *r, struct shm_memtable *m, uint64_t upto, int map)
{
  upto = (upto + ARENA_RESERVE_CHUNK - 1) & ~(ARENA_RESERVE_CHUNK - 1);
  if (upto > m->capacity)
    upto = m->capacity;
  /* acquire: pairs with the release CAS in whichever process raised the
  ** watermark (raise_reserved), whose fallocate had returned before it */
  uint64_t have = atomic_load_explicit(&m->reserved, memory_order_acquire);
  if (upto <= (have & ~ARENA_TRIMMING))
    return 0;
  return reserve_more(r, m, have, upto, map);
}

int arena_back(shm_region *r, uint32_t i, uint64_t upto)
{
  return reserve_upto(r, arena_memtable(r, i), upto, 0);
}

int arena_last_reserve_error(void) { return last_reserve_error; }

uint64_t arena_alloc(shm_region *r, uint32_t i, uint64_t n)
{
  struct shm_memtable *m = arena_memtable(r, i);
  n = (n + 7) & ~7ull;
  /* relaxed: reserving bytes orders nothing; contents are published by the
  ** release CAS that links them into a list */
  uint64_t off = atomic_fetch_add_explicit(&m->used, n, memory_order_relaxed);
  if (off > m->capacity || n > m->capacity - off)   /* not off + n: a damaged `used` near 2^64 would wrap it */
    return 0;
  /* The bytes stay claimed (never read) if the tmpfs is full: the arena
  ** counts as full, and whoever then finds no room says why
  ** (arena_last_reserve_error). */
  if (reserve_upto(r, m, off + n, 1) != 0)
    return 0;
  return m->arena_off + off;
}

uint64_t arena_backed(const shm_region *r, uint32_t i)
{
  /* relaxed: a figure for a choice that any value keeps correct */
  return atomic_load_explicit(&arena_memtable(r, i)->reserved, memory_order_relaxed) & ~ARENA_TRIMMING;
}

/* Claim the free arena that still holds the most pages (a spare kept by
** arena_recycle): writing into pages that exist costs no page fault, no
** zeroing. Another claimer may take it first: look again. */
static int claim_free_arena(shm_region *r, uint32_t my_slot, uint32_t *out)
{
  for (;;) {
    int best = -1;
    uint64_t best_backed = 0;
    for (uint32_t i = 0; i < r->hdr->n_memtables; i++) {
      uint64_t backed = arena_backed(r, i);
      if (atomic_load_explicit(&arena_memtable(r, i)->state_claim, memory_order_relaxed) == mt_word(MT_FREE, 0) &&
          (best < 0 || backed > best_backed)) {
        best = (int)i;
        best_backed = backed;
      }
    }
    if (best < 0)
      return 0;
    uint64_t expected = mt_word(MT_FREE, 0);
    /* seq_cst: acquire, to see the last owner's writes (its watermark too)
    ** before reusing the arena; and seq_cst because a claimer that dies
    ** before LIVE leaves the claim to arena_release_claims_of, whose hazard
    ** and commit-epoch scans must come after, in the single total order S,
    ** the fence of every reader that saw the arena LIVE in a lost
    ** rotation's life (a fence before a load that is coherence-ordered
    ** before a seq_cst operation precedes that operation in S; an acquire
    ** CAS gives no such order) */
    if (atomic_compare_exchange_strong_explicit(&arena_memtable(r, (uint32_t)best)->state_claim, &expected,
                                                mt_word(MT_CLAIMED, my_slot + 1), memory_order_seq_cst,
                                                memory_order_relaxed)) {
      epoch_reuse_begins();   /* for ThreadSanitizer only: epoch.h */
      *out = (uint32_t)best;
      return 1;
    }
  }
}

/* release: orders the arena's contents before its new state */
static void set_word(struct shm_memtable *m, uint32_t state, uint32_t claimer)
{
  atomic_store_explicit(&m->state_claim, mt_word(state, claimer), memory_order_release);
}

int arena_reserve(shm_region *r, uint32_t i)
{
  struct shm_memtable *m = arena_memtable(r, i);
  int err = reserve_upto(r, m, arena_first_reserve(m->capacity), 1);
  if (err == 0)
    return SOCHDB_OK;
  errno = err;
  return sdb_fail(SOCHDB_BUSY, "cannot reserve %llu bytes of shared memory for a memtable in %s: %s",
                  (unsigned long long)arena_first_reserve(m->capacity), r->path, strerror(err));
}

int arena_rotate(shm_region *r, uint32_t my_slot, uint32_t full)
{
  struct shm_header *h = r->hdr;
  if (arena_active(r) != full)
    return SOCHDB_OK;
  uint32_t fresh;
  if (!claim_free_arena(r, my_slot, &fresh)) {
    int err = last_reserve_error;
    return err ? sdb_fail(SOCHDB_BUSY, "every memtable arena of %s is full or could not get memory (%s)", r->path,
                          strerror(err))
               : sdb_fail(SOCHDB_BUSY, "every memtable arena of %s is full", r->path);
  }
  struct shm_memtable *m = arena_memtable(r, fresh);
  int rc = arena_reserve(r, fresh);
  if (rc != SOCHDB_OK) {
    set_word(m, MT_FREE, 0);
    return rc;
  }
  sl_init(r, fresh);
  arena_reset_meta(m);
  atomic_store_explicit(&m->id, atomic_fetch_add_explicit(&h->next_memtable_id, 1, memory_order_relaxed),
                        memory_order_relaxed);
  /* relaxed: the release store of LIVE below, and the acq_rel CAS that
  ** makes the arena active, publish the bit with everything before them;
  ** a view that must hold this memtable (its snapshot holds a commit made
  ** in it) happens after them, and so sees the bit (arena_view) */
  atomic_fetch_or_explicit(&h->viewable_memtables, 1ull << fresh, memory_order_relaxed);
  CRASHPOINT("rotate.viewable");   /* killed here: tests/test_crash.c, kill_between_viewable_and_live */
  set_word(m, MT_LIVE, my_slot + 1);   /* readers that see LIVE see the head and id */
  uint32_t expected = full;
  /* acq_rel: writers that load the new active index (acquire) see the head */
  int won = atomic_compare_exchange_strong_explicit(&h->active_memtable, &expected, fresh,
                                                    memory_order_acq_rel, memory_order_acquire);
  if (won)
    CRASHPOINT("rotate.swung");   /* killed still claiming the active arena: tests/test_crash.c */
  /* One store either way: a lost arena (empty: nobody used it) is free again
  ** at once, a won one drops our claim. */
  set_word(m, won ? MT_LIVE : MT_FREE, 0);
  if (won) {
    CRASHPOINT("rotate.won");   /* killed before its wake: tests/test_sochdbd.c (the reaper wakes) */
    arena_wake_flusher(r);      /* after the CAS: see futex.h */
  }
  return SOCHDB_OK;
}

void arena_wake_flusher(shm_region *r) { shm_futex_wake_all(&r->hdr->active_memtable); }

/* The live memtables, newest first, with their ids (ids[SHM_MAX_MEMTABLES]). */
static void collect_view(const shm_region *r, struct mt_view *v, uint64_t *ids)
{
  v->n = 0;
  /* A memtable this view must hold went LIVE, with its bit set before, in
  ** what happened before the view (the caller's snapshot or active index
  ** acquired it), so coherence gives a mask with the bit, and only a
  ** recycled memtable loses it. acquire: a memtable left out because its
  ** bit was cleared must be seen as the recycler saw it (arena_recycle),
  ** as one left out for its state (acquired below) is. */
  uint64_t viewable = atomic_load_explicit(&r->hdr->viewable_memtables, memory_order_acquire);
  for (; viewable; viewable &= viewable - 1) {
    uint32_t i = (uint32_t)__builtin_ctzll(viewable);
    struct shm_memtable *m = arena_memtable(r, i);
    if (mt_state_of(mt_load(m)) != MT_LIVE)
      continue;
    /* relaxed: an id is set before the release store of LIVE acquired above */
    uint64_t id = atomic_load_explicit(&m->id, memory_order_relaxed);
    uint32_t k = v->n++;
    while (k > 0 && ids[k - 1] < id) {  /* insertion sort, newest first */
      ids[k] = ids[k - 1];
      v->idx[k] = v->idx[k - 1];
      k--;
    }
    ids[k] = id;
    v->idx[k] = i;
  }
}

/* Whether mask has more than n bits set. Not __builtin_popcountll: built for
** any x86-64 (no -mpopcnt) that is a call into libgcc, 1.5% of a one-put
** commit's instructions (callgrind); this clears as many bits as it counts,
** one to three in the throttle below. */
static int more_bits_than(uint64_t mask, uint32_t n)
{
  for (; mask; mask &= mask - 1)
    if (n-- == 0)
      return 1;
  return 0;
}

int arena_flush_backlog_over(const shm_region *r, uint32_t limit)
{
  /* relaxed: only a throttle reads this; a mask a moment stale starts or
  ** ends one writer's wait a moment late, and orders nothing */
  uint64_t viewable = atomic_load_explicit(&r->hdr->viewable_memtables, memory_order_relaxed);
  if (!more_bits_than(viewable, limit + 1))
    return 0;   /* nearly always: one load, no arena looked at */
  uint32_t active = arena_active(r), waiting = 0;
  for (; viewable; viewable &= viewable - 1) {
    uint32_t i = (uint32_t)__builtin_ctzll(viewable);
    /* acquire: a writer that waited here until a memtable was RETIRED then
    ** takes its snapshot after the flush that retired it, so its commit
    ** finds no version newer than its snapshot out of memory (src/txn.c,
    ** versions_left_memory) and looks nothing up in the SSTables.
    ** A claimer means a rotation in progress: not a full memtable. */
    uint64_t word = atomic_load_explicit(&arena_memtable(r, i)->state_claim, memory_order_acquire);
    if (i != active && word == mt_word(MT_LIVE, 0))
      waiting++;
  }
  return waiting > limit;
}

void arena_view(const shm_region *r, struct mt_view *v)
{
  uint64_t ids[SHM_MAX_MEMTABLES];
  collect_view(r, v, ids);
}

static uint64_t view_bits(const struct mt_view *v)
{
  uint64_t bits = 0;
  for (uint32_t i = 0; i < v->n; i++)
    bits |= 1ull << v->idx[i];
  return bits;
}

void arena_view_offer(const shm_region *r, _Atomic uint64_t *hazard, struct mt_view *v, uint64_t *ids)
{
  collect_view(r, v, ids);
  /* relaxed: the caller's seq_cst fence orders it before the re-check */
  atomic_store_explicit(hazard, view_bits(v), memory_order_relaxed);
}

int arena_view_held(const shm_region *r, const struct mt_view *v, const uint64_t *ids)
{
  /* Still LIVE with the same id after the hazard is visible: the flusher
  ** retires (seq_cst) before it scans hazards, so it will see ours. A new
  ** id means the arena was recycled meanwhile: look again. */
  for (uint32_t i = 0; i < v->n; i++) {
    struct shm_memtable *m = arena_memtable(r, v->idx[i]);
    if (mt_state_of(mt_load(m)) != MT_LIVE || atomic_load_explicit(&m->id, memory_order_relaxed) != ids[i])
      return 0;
  }
  return 1;
}

void arena_note_seq(shm_region *r, uint32_t i, uint64_t seq)
{
  struct shm_memtable *m = arena_memtable(r, i);
  /* relaxed CAS-min: published to the flusher by our decision (release),
  ** which it acquires through published_seq before it reads min_seq */
  uint64_t cur = atomic_load_explicit(&m->min_seq, memory_order_relaxed);
  while (seq < cur && !atomic_compare_exchange_weak_explicit(&m->min_seq, &cur, seq, memory_order_relaxed,
                                                             memory_order_relaxed)) {
  }
}

static void raise_retired_max(shm_region *r, const struct shm_memtable *m)
{
  /* relaxed CAS-max: published to committers by the release half of the
  ** seq_cst RETIRED store that follows (see versions_left_memory in src/txn.c) */
  uint64_t max = atomic_load_explicit(&m->max_seq, memory_order_relaxed);
  uint64_t cur = atomic_load_explicit(&r->hdr->retired_max_seq, memory_order_relaxed);
  while (max > cur && !atomic_compare_exchange_weak_explicit(&r->hdr->retired_max_seq, &cur, max,
                                                             memory_order_relaxed, memory_order_relaxed)) {
  }
}

uint64_t arena_retire(shm_region *r, uint32_t i)
{
  struct shm_memtable *m = arena_memtable(r, i);
  raise_retired_max(r, m);
  /* seq_cst: the unpublishing store of both handshakes (epoch.h) */
  atomic_store_explicit(&m->state_claim, mt_word(MT_RETIRED, 0), memory_order_seq_cst);
  uint64_t tag = epoch_retire(r);
  /* relaxed: only the daemon reads it, and only the daemon wrote it */
  atomic_store_explicit(&m->retire_tag, tag, memory_order_relaxed);
  return tag;
}

void arena_adopt_retired(shm_region *r)
{
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++) {
    struct shm_memtable *m = arena_memtable(r, i);
    if (mt_state_of(mt_load(m)) != MT_RETIRED)
      continue;
    raise_retired_max(r, m);
    /* relaxed: only the daemon reads the tag; the epoch bump is seq_cst */
    atomic_store_explicit(&m->retire_tag, epoch_retire(r), memory_order_relaxed);
  }
}

/* Punched this much at a time: the punch holds the tmpfs file's lock, which
** every reservation (arena_alloc crossing a chunk, a cache set's first
** block) also takes, so one 64 MiB punch would stall them for milliseconds.
** A failed punch (no support) keeps the pages: whoever reserves them again
** does so idempotently. */
#define PUNCH_STEP (4ull << 20)

static void punch(shm_region *r, const struct shm_memtable *m, uint64_t from, uint64_t to)
{
  for (uint64_t at = from; at < to; at += PUNCH_STEP) {
    uint64_t len = to - at < PUNCH_STEP ? to - at : PUNCH_STEP;
    if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(m->arena_off + at), (off_t)len) != 0)
      break;
  }
}

/* Give every page of m back to the system. Relaxed: the release store of
** FREE that follows publishes the 0, and the next claimer's CAS acquires
** it (a giver that dies is reaped: arena_release_claims_of gives the pages
** back again and drops its claim). */
static void give_back_pages(shm_region *r, struct shm_memtable *m)
{
  atomic_store_explicit(&m->reserved, 0, memory_order_relaxed);
  punch(r, m, 0, m->capacity);
}

void arena_recycle(shm_region *r, uint32_t i, int keep_pages)
{
  struct shm_memtable *m = arena_memtable(r, i);
  /* Nobody reads or writes it any more. Kept, its pages (all those below
  ** the watermark) spare the next rotation the kernel backing and zeroing
  ** fresh ones (about 40% of a batched load's client time); the daemon
  ** gives a spare back if no rotation takes it soon (arena_release_spare),
  ** and the tail of one that is taken but not filled (arena_trim_begin).
  ** A dead trimmer's flag means pages past its floor that nobody counts:
  ** those go with the rest. A daemon killed before FREE leaves the arena
  ** RETIRED, and the next daemon recycles it again. */
  int dead_trim = (atomic_load_explicit(&m->reserved, memory_order_relaxed) & ARENA_TRIMMING) != 0;
  if (!keep_pages || dead_trim)
    give_back_pages(r, m);
  /* release: a view that no longer lists the memtable because it read this
  ** (acquire, arena_view; later fetch_ors continue the release sequence)
  ** must see what seeing it RETIRED would have shown: retired_max_seq
  ** raised, its SSTable in the file list (txn.c). The release store of FREE
  ** below orders the clear before the next claimer's fetch_or (its CAS
  ** acquires FREE), so the two cannot swap. */
  atomic_fetch_and_explicit(&r->hdr->viewable_memtables, ~(1ull << i), memory_order_release);
  CRASHPOINT("recycle.unviewable");   /* killed here: tests/test_flush_crash.c */
  set_word(m, MT_FREE, 0);
}

/* How long arena_release_spare (the daemon's) waits, holding its claim, for
** the commits that may read the arena; the reaper, which may run inside a
** commit's own epoch, does not wait. */
#define SPARE_WAIT_MS 20u

/* Whether a commit in progress may still read a free arena claimed just
** before (seq_cst) by the caller or a dead claimer it reaps: one whose
** conflict check listed it while a rotation to it was in progress (LIVE,
** claimed), a rotation that then lost. That check's view is no hazard: the
** commit epoch keeps what it reads (src/txn.c, install_all), but a lost
** rotation's arena escapes the epoch, going back to FREE at once. Such a
** commit took its epoch before its fence, and read LIVE after it, before
** the FREE that the claim read: its fence precedes the claim in S, so its
** epoch is at or below the tag and the scan (after the claim) sees it. A
** commit still held after wait_ms keeps the pages, as a hazard does. */
static int commit_may_read(shm_region *r, unsigned wait_ms)
{
  uint64_t tag = epoch_retire(r);
  /* Only commits at or below the tag matter: one that takes its epoch after
  ** the bump cannot have seen the arena LIVE (its rotation lost before the
  ** claim). Under sustained commits from several processes some commit is
  ** nearly always in its epoch, so asking once would keep the pages for as
  ** long as the load lasts; those at the tag end within microseconds. */
  for (unsigned tick = 0; epoch_oldest_commit(r) <= tag; tick++) {
    if (tick >= wait_ms * 10)
      return 1;
    struct timespec pause = { 0, 100000 };   /* 0.1 ms */
    nanosleep(&pause, NULL);
  }
  return 0;
}

uint64_t arena_spare_bytes(const shm_region *r, uint32_t i)
{
  return mt_state_of(mt_load(arena_memtable(r, i))) == MT_FREE ? arena_backed(r, i) : 0;
}

int arena_release_spare(shm_region *r, uint32_t i, uint32_t my_slot)
{
  struct shm_memtable *m = arena_memtable(r, i);
  uint64_t expected = mt_word(MT_FREE, 0);
  /* Claimed, it takes no writer while its pages go; a rotator meanwhile
  ** claims another arena. seq_cst (acquire for the contents, as in
  ** claim_free_arena): a view may still name a free arena, one whose
  ** rotation lost, and read its head (sl_init). A reader publishes its
  ** hazard, fences, then saw the arena LIVE, before the loser's FREE that
  ** this CAS reads: so its fence precedes the CAS in S, and the scan below
  ** sees the hazard unless it is cleared; and a commit whose conflict check
  ** may read it, the same way (commit_may_read). Its pages stay then:
  ** reading a punched hole needs a new page, a SIGBUS on a full tmpfs. */
  if (!atomic_compare_exchange_strong_explicit(&m->state_claim, &expected, mt_word(MT_CLAIMED, my_slot + 1),
                                               memory_order_seq_cst, memory_order_relaxed))
    return 0;
  int viewed = (hazard_memtables(r) >> i & 1) || commit_may_read(r, SPARE_WAIT_MS);
  if (!viewed) {
    CRASHPOINT("spare.claimed");   /* killed here: tests/test_flush_crash.c */
    give_back_pages(r, m);
  }
  set_word(m, MT_FREE, 0);
  return !viewed;
}

int arena_trim_begin(shm_region *r, uint32_t i, uint64_t floor, struct arena_trim *t)
{
  struct shm_memtable *m = arena_memtable(r, i);
  uint64_t was = atomic_load_explicit(&m->reserved, memory_order_relaxed);
  if ((was & ARENA_TRIMMING) || floor >= was || floor % ARENA_RESERVE_CHUNK != 0 ||
      floor < atomic_load_explicit(&m->used, memory_order_relaxed))
    return 0;
  /* seq_cst: the unpublishing store of the commit-epoch handshake
  ** (epoch.h). A commit whose epoch the caller's wait does not see loads
  ** the watermark after this (reserve_upto) and reserves nothing beyond
  ** the floor. A CAS: a writer that raised the watermark meanwhile wins. */
  if (!atomic_compare_exchange_strong_explicit(&m->reserved, &was, floor | ARENA_TRIMMING, memory_order_seq_cst,
                                               memory_order_relaxed))
    return 0;
  CRASHPOINT("trim.marked");   /* killed here: tests/test_flush_crash.c */
  *t = (struct arena_trim){ .idx = i, .floor = floor, .was = was, .tag = epoch_retire(r) };
  return 1;
}

void arena_trim_cancel(shm_region *r, const struct arena_trim *t)
{
  /* release: nothing was punched; a writer that sees the old watermark
  ** back may write below it at once */
  atomic_store_explicit(&arena_memtable(r, t->idx)->reserved, t->was, memory_order_release);
}

int arena_trim_end(shm_region *r, const struct arena_trim *t)
{
  struct shm_memtable *m = arena_memtable(r, t->idx);
  /* Every commit that may have seen the old watermark is over (the caller
  ** waited for t->tag; their epoch clears were acquired by its scan, so
  ** their bumps of `used` are visible here). An allocation past the floor
  ** is one of theirs, written, or a later one that reserve_upto refused;
  ** we cannot tell which, so nothing is punched. */
  if (atomic_load_explicit(&m->used, memory_order_relaxed) > t->floor) {
    arena_trim_cancel(r, t);
    return 0;
  }
  punch(r, m, t->floor, t->was);
  /* release: a writer that reserves past the floor again (acquire) backs
  ** fresh pages after the punch, never under it */
  atomic_store_explicit(&m->reserved, t->floor, memory_order_release);
  return 1;
}

void arena_release_claims_of(shm_region *r, uint32_t slot)
{
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++) {
    struct shm_memtable *m = arena_memtable(r, i);
    uint64_t word = mt_load(m);
    if (mt_claimer_of(word) != slot + 1)
      continue;
    /* A dead rotator's arena is an orphan only if it never became active.
    ** One that did may since have been rotated past, but then it was
    ** written to (rotation away from it follows a failed allocation, and
    ** even a failed allocation bumps `used`), while nobody ever allocates in
    ** an arena that never became active: so an orphan is one that is not
    ** active and still holds only its head node. Active first (acquire),
    ** used second: every change of active_memtable is a CAS made after the
    ** failed allocation that bumped `used`, so seeing "not active" makes
    ** that bump visible. */
    int inactive = arena_active(r) != i;
    uint64_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
    int orphan = mt_state_of(word) == MT_CLAIMED || (inactive && used == sl_head_bytes(m->capacity));
    /* A CLAIMED orphan's pages may be half given back (the daemon died in
    ** arena_release_spare): give them all back, claiming none. Nobody
    ** writes it, but a view from before its claim may still name it (a
    ** lost rotation's, as in arena_release_spare) and read its head and
    ** buckets: a punched hole read needs a new page, a SIGBUS on a full
    ** tmpfs; so may a commit's conflict check (commit_may_read). Then its
    ** pages stay, counted as none (the next give-back of the arena punches
    ** all of it). The dead claimer's CAS is seq_cst (claim_free_arena's or
    ** arena_release_spare's) and we acquired it, so the hazard scan's
    ** seq_cst loads follow it, and the reader's fence that preceded it, in
    ** the single total order: a hazard published before that fence is seen.
    ** Relaxed `reserved`: published by the release CAS to FREE. */
    if (mt_state_of(word) == MT_CLAIMED) {
      if ((hazard_memtables(r) >> i & 1) || commit_may_read(r, 0))
        atomic_store_explicit(&m->reserved, 0, memory_order_relaxed);
      else
        give_back_pages(r, m);
    }
    /* CAS, not store: only the claim we looked at is ours to drop */
    atomic_compare_exchange_strong_explicit(&m->state_claim, &word,
                                            orphan ? mt_word(MT_FREE, 0) : mt_word(mt_state_of(word), 0),
                                            memory_order_release, memory_order_relaxed);
  }
}
