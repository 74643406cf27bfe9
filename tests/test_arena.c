/*
** test_arena.c — memtable arenas (shm/arena.h): bump allocation, rotation,
** the live view, and the reaper's release of half-made rotations.
**
** Works on a real region opened through the public API; no transaction runs
** while a test drives the arena functions directly. Threads, never fork():
** the suite also runs under ThreadSanitizer.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <stdatomic.h>

#include "arena.h"
#include "epoch.h"
#include "internal.h"
#include "skiplist.h"
#include "testutil.h"

/* No daemon: these tests drive rotation by hand, and a daemon would flush
** and recycle the arenas they count. */
TestSuite(arena, .init = tu_setup_without_daemon, .fini = tu_teardown, .timeout = 120);

/* The state and claimer of arena i, packed in one word (arena.h). */
static uint32_t st_of(const shm_region *r, uint32_t i) { return mt_state_of(mt_load(arena_memtable(r, i))); }
static uint32_t cl_of(const shm_region *r, uint32_t i) { return mt_claimer_of(mt_load(arena_memtable(r, i))); }
static uint64_t viewable(const shm_region *r) { return atomic_load(&r->hdr->viewable_memtables); }

/* Forcing LIVE sets i's viewable bit first, as a rotator does. */
static void set_st(shm_region *r, uint32_t i, uint32_t st)
{
  if (st == MT_LIVE)
    atomic_fetch_or(&r->hdr->viewable_memtables, 1ull << i);
  atomic_store(&arena_memtable(r, i)->state_claim, mt_word(st, cl_of(r, i)));
}
static void set_cl(shm_region *r, uint32_t i, uint32_t cl)
{
  atomic_store(&arena_memtable(r, i)->state_claim, mt_word(st_of(r, i), cl));
}

static sochdb *open_db(size_t region_bytes, size_t memtable_bytes)
{
  return tu_open(region_bytes, memtable_bytes, 50);
}

static uint32_t count_state(const shm_region *r, uint32_t state)
{
  uint32_t c = 0;
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++)
    c += st_of(r, i) == state;
  return c;
}

static uint64_t mt_id(const shm_region *r, uint32_t i) { return atomic_load(&arena_memtable(r, i)->id); }

/* The view must list exactly the LIVE arenas, each once, strictly newest
** first; every LIVE arena has its viewable bit. */
static void check_view(const shm_region *r, const struct mt_view *v)
{
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++)
    cr_assert(st_of(r, i) != MT_LIVE || (viewable(r) >> i & 1), "LIVE arena %u without its viewable bit", i);
  cr_assert_eq(v->n, count_state(r, MT_LIVE), "view has %u memtables, %u are LIVE", v->n,
               count_state(r, MT_LIVE));
  for (uint32_t k = 0; k < v->n; k++) {
    cr_assert_lt(v->idx[k], r->hdr->n_memtables, "view entry %u out of range", k);
    cr_assert_eq(st_of(r, v->idx[k]), MT_LIVE, "view lists a non-LIVE arena");
    if (k)
      cr_assert_gt(mt_id(r, v->idx[k - 1]), mt_id(r, v->idx[k]), "view not newest first at %u", k);
  }
}

/* ------------------------------------------------------------ layout */

Test(arena, fresh_region_layout)
{
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t n = r->hdr->n_memtables;
  cr_assert(n >= 2 && n <= SHM_MAX_MEMTABLES, "n_memtables %u", n);
  cr_assert_eq(arena_active(r), 0, "arena 0 should be active at first");
  cr_assert_eq(count_state(r, MT_LIVE), 1, "exactly one LIVE arena at creation");
  for (uint32_t i = 0; i < n; i++) {
    struct shm_memtable *m = arena_memtable(r, i);
    cr_assert_eq(m->capacity, r->hdr->memtable_bytes, "arena %u capacity", i);
    cr_assert_eq(m->arena_off % 8, 0, "arena %u offset not aligned", i);
    cr_assert_leq(m->arena_off + m->capacity, r->hdr->region_bytes, "arena %u past the region", i);
    if (i)
      cr_assert_eq(m->arena_off, arena_memtable(r, i - 1)->arena_off + m->capacity, "arenas %u/%u not adjacent",
                   i - 1, i);
  }
  struct mt_view v;
  arena_view(r, &v);
  cr_assert(v.n == 1 && v.idx[0] == 0, "fresh view should be {0}");
  tu_close();
}

/* ------------------------------------------------------------ alloc */

Test(arena, alloc_is_8_aligned_and_disjoint)
{
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;   /* a FREE arena: nobody else uses it */
  struct shm_memtable *m = arena_memtable(r, mt);
  sl_init(r, mt);
  uint64_t prev_end = m->arena_off + atomic_load(&m->used);
  for (uint64_t n = 1; n <= 200; n++) {
    uint64_t off = arena_alloc(r, mt, n);
    cr_assert_neq(off, 0, "alloc of %llu bytes failed in an empty arena", (unsigned long long)n);
    cr_assert_eq(off % 8, 0, "alloc(%llu) = %llu not 8-aligned", (unsigned long long)n, (unsigned long long)off);
    cr_assert_geq(off, prev_end, "alloc(%llu) overlaps the previous block", (unsigned long long)n);
    prev_end = off + n;
    /* the bytes are ours: writing them must not disturb anything (ASan) */
    memset(shm_at(r, off), 0xab, n);
  }
  cr_assert_eq(arena_alloc(r, mt, 0) % 8, 0, "zero-byte alloc not aligned");
  tu_close();
}

Test(arena, alloc_exhaustion_returns_zero)
{
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;
  struct shm_memtable *m = arena_memtable(r, mt);
  sl_init(r, mt);
  uint64_t total = 0, count = 0;
  int exhausted = 0;
  for (uint64_t i = 0; i < (m->capacity / 1000) + 10; i++) {
    uint64_t off = arena_alloc(r, mt, 1000);
    if (!off) {
      exhausted = 1;
      break;
    }
    cr_assert(off >= m->arena_off && off + 1000 <= m->arena_off + m->capacity,
              "block %llu lies outside the arena", (unsigned long long)count);
    memset(shm_at(r, off), 0x5a, 1000);
    total += 1008;
    count++;
  }
  cr_assert(exhausted, "arena_alloc never returned 0");
  cr_assert_geq(total + 1008 + sl_head_bytes(m->capacity), m->capacity, "arena reported full with %llu of %llu bytes used",
                (unsigned long long)total, (unsigned long long)m->capacity);
  cr_assert_eq(arena_alloc(r, mt, 1000), 0, "second alloc after exhaustion succeeded");
  cr_assert_eq(arena_alloc(r, mt, m->capacity * 2), 0, "alloc bigger than the arena succeeded");
  /* an alloc that does not fit in a fresh arena either */
  uint32_t other = r->hdr->n_memtables - 2;
  sl_init(r, other);
  cr_assert_eq(arena_alloc(r, other, arena_memtable(r, other)->capacity), 0,
               "alloc of the whole capacity fit next to the head node");
  /* a damaged bump pointer near 2^64: off + n wrapped to a small number, and
  ** the block was handed out before the arena's start */
  atomic_store(&arena_memtable(r, other)->used, UINT64_MAX - 15);
  cr_assert_eq(arena_alloc(r, other, 64), 0, "an alloc past a bump pointer near 2^64 succeeded");
  tu_close();
}

/* ------------------------------------------------------------ resident pages */

/* The region's pages follow the data: an arena's pages are reserved as it
** fills (a chunk at a time, never the whole capacity up front), and a
** recycled arena gives them back. */
Test(arena, pages_follow_the_data)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint64_t start = tu_region_resident(db);
  uint32_t mt = r->hdr->n_memtables - 1;   /* a FREE arena: claim it by hand */
  struct shm_memtable *m = arena_memtable(r, mt);
  cr_assert_eq(atomic_load(&m->reserved), 0u, "a FREE arena of a fresh region has no pages");
  set_st(r, mt, MT_CLAIMED);
  cr_assert_eq(arena_reserve(r, mt), SOCHDB_OK);
  sl_init(r, mt);
  uint64_t filled = 0, first = 0, last = 0;
  while (filled < (5u << 20)) {
    last = arena_alloc(r, mt, 4000);
    cr_assert_neq(last, 0, "alloc at %llu bytes", (unsigned long long)filled);
    first = first ? first : last;
    filled += 4000;
  }
  /* reserved before anything is written: the pages exist already */
  uint64_t full = tu_region_resident(db);
  cr_assert_geq(full, start + filled, "the 5 MiB allocated are reserved before they are written (%llu -> %llu)",
                (unsigned long long)start, (unsigned long long)full);
  cr_assert_leq(full, start + sl_head_bytes(m->capacity) + filled + 2 * ARENA_RESERVE_CHUNK, "only a chunk ahead "
                "is reserved, not the 32 MiB arena (%llu -> %llu)", (unsigned long long)start, (unsigned long long)full);
  cr_assert_geq(atomic_load(&m->reserved), atomic_load(&m->used), "the watermark covers every allocation");
  memset(shm_at(r, first), 0x6b, last + 4000 - first);
  cr_assert_leq(tu_region_resident(db), full, "writing them takes no more pages");
  set_st(r, mt, MT_RETIRED);
  arena_recycle(r, mt, 0);
  cr_assert_eq(st_of(r, mt), MT_FREE);
  cr_assert_eq(atomic_load(&m->reserved), 0u, "recycled: no pages reserved");
  cr_assert_leq(tu_region_resident(db), start + ARENA_RESERVE_CHUNK, "a recycled arena's pages are given back "
                "(%llu -> %llu)", (unsigned long long)start, (unsigned long long)tu_region_resident(db));
  /* reused, it works as a fresh one (its bytes read back as written) */
  set_st(r, mt, MT_CLAIMED);
  cr_assert_eq(arena_reserve(r, mt), SOCHDB_OK);
  sl_init(r, mt);
  uint64_t off = arena_alloc(r, mt, 3u << 20);
  cr_assert_neq(off, 0);
  memset(shm_at(r, off), 0x3c, 3u << 20);
  cr_assert_eq(((uint8_t *)shm_at(r, off))[(3u << 20) - 1], 0x3c);
  set_st(r, mt, MT_FREE);
  tu_close();
}

/* Claim FREE arena mt by hand and allocate `bytes` in it, each byte written
** with `fill`; returns the first allocation's offset. */
static uint64_t fill_by_hand(shm_region *r, uint32_t mt, uint64_t bytes, int fill)
{
  set_st(r, mt, MT_CLAIMED);
  cr_assert_eq(arena_reserve(r, mt), SOCHDB_OK);
  sl_init(r, mt);
  uint64_t first = arena_alloc(r, mt, bytes);
  cr_assert_neq(first, 0, "alloc of %llu bytes", (unsigned long long)bytes);
  memset(shm_at(r, first), fill, bytes);
  return first;
}

/* Arena mt of a fresh region as a memtable that took a spare's pages:
** `bytes` of them left by the last memtable, the fill point back at the start. */
static shm_region *reused_by_hand(sochdb *db, uint32_t *mt, uint64_t bytes)
{
  shm_region *r = &db->region;
  *mt = r->hdr->n_memtables - 1;
  fill_by_hand(r, *mt, bytes, 0x11);
  sl_init(r, *mt);
  return r;
}

/* The first chunk boundary past arena mt's head node and hash index: the
** lowest floor a trim of a fresh memtable can take. */
static uint64_t past_head(const shm_region *r, uint32_t mt)
{
  uint64_t head = sl_head_bytes(arena_memtable(r, mt)->capacity);
  return (head + ARENA_RESERVE_CHUNK - 1) / ARENA_RESERVE_CHUNK * ARENA_RESERVE_CHUNK;
}

/* Every byte of [off, off + n) is `fill`. */
static int all_bytes(const shm_region *r, uint64_t off, uint64_t n, int fill)
{
  const uint8_t *p = shm_at(r, off);
  for (uint64_t i = 0; i < n; i++)
    if (p[i] != (uint8_t)fill)
      return 0;
  return 1;
}

/* A recycled arena may keep its pages for the next rotation: the rotation
** claims it before any arena without pages, and writes into pages that
** exist. Unclaimed, it gives them back (arena_release_spare), and then it
** is a free arena like the others. */
Test(arena, a_kept_arena_is_claimed_first_and_given_back_when_released)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint64_t start = tu_region_resident(db);
  uint32_t mt = r->hdr->n_memtables - 1;   /* the last FREE arena: a rotation would take arena 1 first */
  struct shm_memtable *m = arena_memtable(r, mt);
  fill_by_hand(r, mt, 6u << 20, 0x5a);
  uint64_t backed = arena_backed(r, mt), full = tu_region_resident(db);
  cr_assert_geq(backed, 6u << 20);
  set_st(r, mt, MT_RETIRED);
  arena_recycle(r, mt, 1);
  cr_assert_eq(st_of(r, mt), MT_FREE);
  cr_assert_eq(arena_backed(r, mt), backed, "kept: the watermark stays");
  cr_assert_eq(tu_region_resident(db), full, "kept: the pages stay");
  cr_assert(arena_spare_bytes(r, mt));
  cr_assert(!arena_spare_bytes(r, 1), "a fresh free arena holds no pages");

  uint32_t from = arena_active(r);
  cr_assert_eq(arena_rotate(r, db->slot, from), SOCHDB_OK);
  cr_assert_eq(arena_active(r), mt, "the rotation took arena %u, not the one with pages (%u)", arena_active(r), mt);
  cr_assert_eq(tu_region_resident(db), full, "reusing it took no new page");
  uint64_t off = arena_alloc(r, mt, 1u << 20);
  cr_assert_neq(off, 0);
  memset(shm_at(r, off), 0x3c, 1u << 20);
  cr_assert(all_bytes(r, off, 1u << 20, 0x3c));
  cr_assert_eq(tu_region_resident(db), full, "writing into the kept pages took no new page");
  cr_assert(!arena_spare_bytes(r, mt), "a LIVE arena is no spare");
  cr_assert_eq(arena_release_spare(r, mt, db->slot), 0, "a LIVE arena is not given back");

  /* rotated past, flushed, recycled again and kept: nobody takes it */
  cr_assert_eq(arena_rotate(r, db->slot, mt), SOCHDB_OK);
  set_st(r, mt, MT_RETIRED);
  arena_recycle(r, mt, 1);
  cr_assert_eq(arena_release_spare(r, mt, db->slot), 1);
  cr_assert_eq(st_of(r, mt), MT_FREE);
  cr_assert_eq(cl_of(r, mt), 0u, "the giver's claim is dropped");
  cr_assert_eq(atomic_load(&m->reserved), 0u, "released: no pages reserved");
  cr_assert(!arena_spare_bytes(r, mt));
  /* the rotation away from it backed the start of another arena */
  cr_assert_leq(tu_region_resident(db), start + arena_first_reserve(m->capacity) + ARENA_RESERVE_CHUNK,
                "released: its pages are given back (%llu -> %llu)", (unsigned long long)start,
                (unsigned long long)tu_region_resident(db));
  tu_close();
}

/* An arena that took a spare's pages and fills slowly gives back the tail
** beyond a floor: pages below it and the bytes in them stay, and writers
** go past it again afterwards, on fresh pages. */
Test(arena, a_trim_gives_back_the_tail_and_writers_go_past_it_after)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  uint32_t mt;
  shm_region *r = reused_by_hand(db, &mt, 20u << 20);
  uint64_t was = arena_backed(r, mt), full = tu_region_resident(db), head = past_head(r, mt);
  uint64_t kept = arena_alloc(r, mt, 1500u << 10);
  memset(shm_at(r, kept), 0x77, 1500u << 10);
  uint64_t floor = head + ARENA_RESERVE_CHUNK;   /* the first boundary past the fill point */

  struct arena_trim t;
  cr_assert_eq(arena_trim_begin(r, mt, head, &t), 0, "a floor below the fill point is refused");
  cr_assert_eq(arena_trim_begin(r, mt, floor + 4096, &t), 0, "a floor off a chunk boundary is refused");
  cr_assert_eq(arena_trim_begin(r, mt, was, &t), 0, "nothing above the watermark to give back");
  cr_assert_eq(arena_trim_begin(r, mt, floor, &t), 1);
  cr_assert_eq(arena_trim_begin(r, mt, floor + (2u << 20), &t), 0, "one trim at a time");
  cr_assert_eq(arena_trim_end(r, &t), 1, "nothing passed the floor: punched");
  cr_assert_eq(atomic_load(&arena_memtable(r, mt)->reserved), floor, "the watermark is the floor, unflagged");
  cr_assert_leq(tu_region_resident(db), full - was + floor, "the tail's pages are given back (%llu -> %llu)",
                (unsigned long long)full, (unsigned long long)tu_region_resident(db));
  cr_assert(all_bytes(r, kept, 1500u << 10, 0x77), "the bytes below the floor are intact");

  uint64_t more = arena_alloc(r, mt, 3u << 20);
  cr_assert_neq(more, 0, "writers go past the floor after the trim");
  uint64_t floor_off = arena_memtable(r, mt)->arena_off + floor;
  cr_assert(all_bytes(r, floor_off, more + (3u << 20) - floor_off, 0),
            "past the floor the pages are fresh (zero), not the old tail's");
  memset(shm_at(r, more), 0x22, 3u << 20);
  cr_assert_geq(arena_backed(r, mt), (uint64_t)(more - arena_memtable(r, mt)->arena_off) + (3u << 20));
  cr_assert(all_bytes(r, kept, 1500u << 10, 0x77));
  set_st(r, mt, MT_FREE);
  tu_close();
}

/* While a trim is in progress, allocations below its floor go on and one
** reaching past it fails as if the arena were full, with no error for the
** messages. A commit that saw the old watermark may have written past the
** floor: then the trim punches nothing and puts the watermark back. */
Test(arena, a_trim_refuses_allocations_past_its_floor_and_yields_to_writes_there)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  uint32_t mt;
  shm_region *r = reused_by_hand(db, &mt, 20u << 20);
  struct shm_memtable *m = arena_memtable(r, mt);
  uint64_t was = arena_backed(r, mt), full = tu_region_resident(db);
  uint64_t floor = past_head(r, mt) + ARENA_RESERVE_CHUNK;   /* room below it for one allocation of 1 MiB */

  /* a commit is in progress (its epoch held) when the trim begins */
  _Atomic uint64_t *epoch = &shm_txn_entry_at(r, db->slot, 0)->commit_epoch;
  epoch_enter(r, epoch);
  struct arena_trim t;
  cr_assert_eq(arena_trim_begin(r, mt, floor, &t), 1);
  cr_assert_leq(epoch_oldest_commit(r), t.tag, "the trimmer must wait for the commit in progress");
  cr_assert_neq(arena_alloc(r, mt, 1u << 20), 0, "below the floor, allocations go on");
  cr_assert_eq(arena_alloc(r, mt, 1u << 20), 0, "one reaching past the floor fails");
  cr_assert_eq(arena_last_reserve_error(), 0, "and is no reservation error");
  cr_assert_eq(arena_backed(r, mt), floor);
  /* ... as the commit in progress, which loaded the watermark before the
  ** trim began, wrote past the floor (the refused allocation moved `used`
  ** past it too: either way the trimmer cannot punch) */
  uint64_t theirs = m->arena_off + floor + (3u << 20);
  memset(shm_at(r, theirs), 0x44, 4096);
  epoch_leave(epoch);
  cr_assert_gt(epoch_oldest_commit(r), t.tag);
  cr_assert_eq(arena_trim_end(r, &t), 0, "allocations passed the floor: nothing punched");
  cr_assert_eq(atomic_load(&m->reserved), was, "the old watermark is back");
  cr_assert_eq(tu_region_resident(db), full, "no page was given back");
  cr_assert(all_bytes(r, theirs, 4096, 0x44), "the write past the floor is intact");
  cr_assert_neq(arena_alloc(r, mt, 1u << 20), 0, "allocations go on below the old watermark");

  /* a trimmer that could not wait puts the watermark back as well */
  sl_init(r, mt);
  cr_assert_eq(arena_trim_begin(r, mt, floor, &t), 1);
  arena_trim_cancel(r, &t);
  cr_assert_eq(atomic_load(&m->reserved), was);
  set_st(r, mt, MT_FREE);
  tu_close();
}

/* A transaction of ours names arena mt in its view (its hazard, returned). */
static _Atomic uint64_t *view_arena(sochdb *db, uint32_t mt)
{
  _Atomic uint64_t *hazard = &shm_txn_entry_at(&db->region, db->slot, 0)->view_memtables;
  hazard_publish(hazard, 1ull << mt);
  return hazard;
}

/* ... and stops naming it: then the free arena's pages (the region held
** `full` bytes) can be given back. */
static void release_once_unviewed(sochdb *db, uint32_t mt, _Atomic uint64_t *hazard, uint64_t full)
{
  atomic_store(hazard, 0);
  cr_assert_eq(arena_release_spare(&db->region, mt, db->slot), 1, "once no view names it, it can be released");
  cr_assert_lt(tu_region_resident(db), full, "and its pages go then");
}

/* Slot 6 claimed arena mt and died: the reaper frees the claim, and the
** orphan counts no pages. */
static void reap_dead_claimer(shm_region *r, uint32_t mt)
{
  set_st(r, mt, MT_CLAIMED);
  set_cl(r, mt, 7);
  arena_release_claims_of(r, 6);
  cr_assert_eq(st_of(r, mt), MT_FREE);
  cr_assert_eq(arena_backed(r, mt), 0u, "the orphan claims no pages");
}

/* A free arena claimed by a giver (or rotator) that died may have its
** pages half given back: the reaper gives them all back and frees it
** claiming none, so the next claimer backs them again. */
Test(arena, release_claims_of_a_dead_giver_gives_its_pages_back)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint64_t start = tu_region_resident(db);
  uint32_t mt = r->hdr->n_memtables - 1;
  fill_by_hand(r, mt, 16u << 20, 0x11);
  set_st(r, mt, MT_FREE);
  cr_assert(arena_spare_bytes(r, mt));
  reap_dead_claimer(r, mt);   /* it claimed the arena to give its pages back */
  cr_assert_leq(tu_region_resident(db), start + ARENA_RESERVE_CHUNK, "the orphan's pages are given back (%llu -> %llu)",
                (unsigned long long)start, (unsigned long long)tu_region_resident(db));
  tu_close();
}

/* ... unless a view still names it (from its lost rotation's life, before
** the dead claimer's claim): then the pages stay, counted as none, until
** its next give-back. */
Test(arena, release_claims_of_a_dead_claimer_keeps_pages_a_view_may_read)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;
  fill_by_hand(r, mt, 16u << 20, 0x11);
  uint64_t full = tu_region_resident(db);
  _Atomic uint64_t *hazard = view_arena(db, mt);
  reap_dead_claimer(r, mt);
  cr_assert_eq(tu_region_resident(db), full, "a viewed orphan's pages were given back");
  release_once_unviewed(db, mt, hazard, full);
  tu_close();
}

/* A free arena some view still names (its rotation lost after a reader
** listed it) keeps its pages: a read of a punched hole needs a new page. */
Test(arena, a_free_arena_a_view_names_is_not_given_back)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;
  fill_by_hand(r, mt, 4u << 20, 0x11);
  set_st(r, mt, MT_FREE);
  uint64_t full = tu_region_resident(db);
  _Atomic uint64_t *hazard = view_arena(db, mt);
  cr_assert_eq(arena_release_spare(r, mt, db->slot), 0, "a viewed arena was given back");
  cr_assert_eq(st_of(r, mt), MT_FREE, "and it is free again");
  cr_assert_eq(cl_of(r, mt), 0u);
  cr_assert_eq(tu_region_resident(db), full, "with its pages");
  release_once_unviewed(db, mt, hazard, full);
  tu_close();
}

/* A commit's conflict check (src/txn.c, install_all) reads the arenas of a
** fresh view that it publishes as no hazard: its commit epoch keeps them.
** An arena whose rotation lost escapes that epoch (it goes back to FREE at
** once), so a commit that listed it while it was LIVE may still read its
** head after it is free: arena mt, LIVE and claimed by a rotator (slot 6)
** that has not swung active_memtable yet, in the view of a commit in
** progress (ours); then the rotation lost. */
static _Atomic uint64_t *commit_views_a_losing_arena(sochdb *db, uint32_t mt)
{
  shm_region *r = &db->region;
  fill_by_hand(r, mt, 4u << 20, 0x11);
  set_cl(r, mt, 7);
  set_st(r, mt, MT_LIVE);
  _Atomic uint64_t *ce = &shm_txn_entry_at(r, db->slot, 0)->commit_epoch;
  epoch_enter(r, ce);
  struct mt_view v;
  arena_view(r, &v);
  int listed = 0;
  for (uint32_t k = 0; k < v.n; k++)
    listed |= v.idx[k] == mt;
  cr_assert(listed, "the commit's view lists the LIVE arena");
  atomic_store(&arena_memtable(r, mt)->state_claim, mt_word(MT_FREE, 0));   /* the rotation lost */
  return ce;
}

/* ... the rotation lost: the arena is free, and the commit may still read
** it. Given back now, that read would need a fresh page (a SIGBUS on a full
** tmpfs), as for a transaction's view (a_free_arena_a_view_names_...). */
Test(arena, a_free_arena_a_commit_in_progress_may_read_is_not_given_back)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;
  _Atomic uint64_t *ce = commit_views_a_losing_arena(db, mt);
  uint64_t full = tu_region_resident(db);
  cr_assert_eq(arena_release_spare(r, mt, db->slot), 0, "an arena a commit in progress may read was given back");
  cr_assert_eq(st_of(r, mt), MT_FREE, "and it is free again");
  cr_assert_eq(tu_region_resident(db), full, "with its pages");
  epoch_leave(ce);
  cr_assert_eq(arena_release_spare(r, mt, db->slot), 1, "once the commit is over, it can be released");
  cr_assert_lt(tu_region_resident(db), full, "and its pages go then");
  tu_close();
}

/* ... the same arena claimed again, by a rotator that died before it was
** LIVE: the reaper keeps its pages while the commit may read them. */
Test(arena, release_claims_of_a_dead_claimer_keeps_pages_a_commit_may_read)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;
  _Atomic uint64_t *ce = commit_views_a_losing_arena(db, mt);
  uint64_t full = tu_region_resident(db);
  reap_dead_claimer(r, mt);
  cr_assert_eq(tu_region_resident(db), full, "the pages of an orphan a commit may read were given back");
  epoch_leave(ce);
  tu_close();
}

/* A daemon that died in a trim leaves its flag: the tail past the floor may
** still hold pages nobody counts, so recycling gives every page back even
** when asked to keep them. */
Test(arena, a_recycled_arena_with_a_dead_trim_keeps_no_pages)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  uint64_t start = tu_region_resident(db);
  uint32_t mt;
  shm_region *r = reused_by_hand(db, &mt, 16u << 20);
  struct arena_trim t;
  cr_assert_eq(arena_trim_begin(r, mt, past_head(r, mt), &t), 1);   /* ... and the trimmer died */
  set_st(r, mt, MT_RETIRED);
  arena_recycle(r, mt, 1);
  cr_assert_eq(st_of(r, mt), MT_FREE);
  cr_assert_eq(atomic_load(&arena_memtable(r, mt)->reserved), 0u);
  cr_assert_leq(tu_region_resident(db), start + ARENA_RESERVE_CHUNK, "every page is given back (%llu -> %llu)",
                (unsigned long long)start, (unsigned long long)tu_region_resident(db));
  tu_close();
}

/* ---- trims racing writers ----
** Writer threads allocate 16 KiB blocks in an arena that took a spare's
** pages, each inside a commit epoch, and fill each with a byte of its own
** (never 0, the byte a punched page reads), while the main thread trims
** the tail at the next chunk boundary (in every other round only when the
** fill point is just below one), waiting for the epochs as the daemon
** does: blocks allocated before the trim began cross its floor, and others
** reach it while it waits and punches. Afterwards every block a writer got
** holds its byte: no trim punched a page under a write. This checks the
** whole handshake under real races (and ThreadSanitizer); each of its
** pieces is checked alone by the tests above, since one piece failing is
** mostly covered by the others here. */
#define TW_WRITERS 3
#define TW_BLOCK   (16u << 10)
#define TW_MAX     4000u

struct tw_writer {
  pthread_t          th;
  shm_region        *r;
  uint32_t           mt, id, n;
  _Atomic uint64_t  *epoch;
  _Atomic int        done;
  uint64_t           refused;
  uint64_t           off[TW_MAX];
};

static uint8_t tw_byte(uint32_t id, uint32_t n) { return (uint8_t)(1 + (id * 31u + n) % 255u); }

static void *tw_write(void *p)
{
  struct tw_writer *w = p;
  struct shm_memtable *m = arena_memtable(w->r, w->mt);
  while (w->n < TW_MAX && atomic_load(&m->used) + TW_BLOCK <= m->capacity) {
    epoch_enter(w->r, w->epoch);
    uint64_t off = arena_alloc(w->r, w->mt, TW_BLOCK);
    if (off) {
      memset(shm_at(w->r, off), tw_byte(w->id, w->n), TW_BLOCK);
      w->off[w->n++] = off;
    }
    epoch_leave(w->epoch);
    if (!off) {
      w->refused++;   /* past a trim's floor (or the end): a committer would rotate */
      sched_yield();
    }
  }
  atomic_store(&w->done, 1);
  return NULL;
}

static int tw_all_done(struct tw_writer *w)
{
  for (int i = 0; i < TW_WRITERS; i++)
    if (!atomic_load(&w[i].done))
      return 0;
  return 1;
}

Test(arena, trims_racing_writers_never_punch_a_written_block)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;
  static struct tw_writer w[TW_WRITERS];
  unsigned punched = 0, cancelled = 0;
  uint64_t refused = 0;
  /* 24 rounds, and more while fewer than 12 trims began (a loaded machine
  ** may schedule the trimmer too late in a round) */
  for (int round = 0; round < 400 && (round < 24 || punched + cancelled < 12); round++) {
    fill_by_hand(r, mt, 24u << 20, 0);   /* a spare's pages ... */
    sl_init(r, mt);                        /* ... reused */
    for (int i = 0; i < TW_WRITERS; i++) {
      w[i] = (struct tw_writer){ .r = r, .mt = mt, .id = (uint32_t)(round * TW_WRITERS + i),
                                 .epoch = &shm_txn_entry_at(r, db->slot, (uint32_t)i + 1)->commit_epoch };
      cr_assert_eq(pthread_create(&w[i].th, NULL, tw_write, &w[i]), 0);
    }
    while (!tw_all_done(w)) {
      struct shm_memtable *m = arena_memtable(r, mt);
      uint64_t used = atomic_load(&m->used);
      uint64_t floor = (used + ARENA_RESERVE_CHUNK - 1) & ~(ARENA_RESERVE_CHUNK - 1);
      struct arena_trim t;
      /* every other round only just below a chunk boundary: blocks in
      ** flight cross the floor */
      int near = round % 2 == 0;
      if ((!near || floor - used <= 2 * TW_BLOCK) && floor < arena_backed(r, mt) &&
          arena_trim_begin(r, mt, floor, &t)) {
        while (epoch_oldest_commit(r) <= t.tag)
          sched_yield();
        if (arena_trim_end(r, &t))
          punched++;
        else
          cancelled++;
      }
      sched_yield();
    }
    for (int i = 0; i < TW_WRITERS; i++) {
      cr_assert_eq(pthread_join(w[i].th, NULL), 0);
      refused += w[i].refused;
      for (uint32_t n = 0; n < w[i].n; n++)
        cr_assert(all_bytes(r, w[i].off[n], TW_BLOCK, tw_byte(w[i].id, n)),
                  "round %d: writer %u's block %u at %llu was overwritten (a trim punched it?)", round, w[i].id, n,
                  (unsigned long long)w[i].off[n]);
    }
    set_st(r, mt, MT_FREE);
  }
  cr_log_info("%u trims punched, %u cancelled, %llu allocations refused past a floor or the end", punched,
              cancelled, (unsigned long long)refused);
  cr_assert_gt(punched + cancelled, 0u, "no trim began");
  tu_close();
}

/* Commit 1 KB values under keys k00000000, k00000001, ... (ASYNC) until a
** commit fails: its code; *committed = how many succeeded. */
static int fill_until_error(sochdb *db, int *committed)
{
  char key[32], val[1000];
  memset(val, 'v', sizeof val);
  int rc = SOCHDB_OK;
  for (*committed = 0; *committed < 100000; (*committed)++) {
    sochdb_txn *t;
    cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
    snprintf(key, sizeof key, "k%08d", *committed);
    cr_assert_eq(sochdb_put(t, key, strlen(key), val, sizeof val), SOCHDB_OK);
    rc = sochdb_commit(t, SOCHDB_ASYNC);
    if (rc != SOCHDB_OK)
      break;
  }
  return rc;
}

/* Every one of the first n keys fill_until_error committed reads back. */
static void check_filled(sochdb *db, int n, int step)
{
  char key[32];
  const void *v;
  size_t vlen;
  sochdb_txn *t;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK);
  for (int i = 0; i < n; i += step) {
    snprintf(key, sizeof key, "k%08d", i);
    cr_assert_eq(sochdb_get(t, key, strlen(key), &v, &vlen), SOCHDB_OK, "committed %s lost", key);
    cr_assert_eq(vlen, 1000u);
  }
  sochdb_abort(t);
}

/* A full tmpfs without root (full_tmpfs_is_busy_not_sigbus, below, needs
** it): the reservation fails with ENOSPC (the test-only
** fault point shm.reserve), as on a full tmpfs. Commits get SOCHDB_BUSY
** naming the cause once every arena is used up, nothing committed is lost,
** and commits work again once memory is back. */
Test(arena, reservation_failures_are_busy_and_named_then_pass)
{
  sochdb *db = open_db(16u << 20, 1u << 20);
  int committed = 0;
  sochdb_test_fault("shm.reserve", ENOSPC, 0, 1000000);
  int rc = fill_until_error(db, &committed);
  sochdb_test_fault(NULL, 0, 0, 0);
  cr_assert_eq(rc, SOCHDB_BUSY, "no memory for pages ended with %s after %d commits", sochdb_strerror(rc),
               committed);
  cr_assert_not_null(strstr(sochdb_last_error(), "No space left"), "the cause is named: %s", sochdb_last_error());
  cr_assert_gt(committed, 100, "the first arena's reserved chunk held %d commits of 1 KB", committed);
  sochdb_txn *t;
  cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
  cr_assert_eq(sochdb_put(t, "after", 5, "ok", 2), SOCHDB_OK);
  rc = sochdb_commit(t, SOCHDB_ASYNC);
  cr_assert_eq(rc, SOCHDB_OK, "memory is back, so are commits: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  check_filled(db, committed, 1);
  tu_close();
}

/* ------------------------------------------------------------ rotate */

Test(arena, rotate_activates_newer_memtable)
{
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t order[4];
  order[0] = arena_active(r);
  for (int i = 1; i < 4; i++) {
    uint32_t old = arena_active(r);
    int rc = arena_rotate(r, db->slot, old);
    cr_assert_eq(rc, SOCHDB_OK, "rotation %d: %s", i, sochdb_strerror(rc));
    uint32_t now = arena_active(r);
    cr_assert_neq(now, old, "rotation %d left the same memtable active", i);
    cr_assert_gt(mt_id(r, now), mt_id(r, old), "rotation %d: new id %llu not above %llu", i,
                 (unsigned long long)mt_id(r, now), (unsigned long long)mt_id(r, old));
    cr_assert_eq(st_of(r, now), MT_LIVE, "new active memtable is not LIVE");
    cr_assert_eq(st_of(r, old), MT_LIVE, "the full memtable must stay LIVE");
    cr_assert_eq(cl_of(r, now), 0, "claimer not cleared after rotation");
    /* the new memtable is an empty skiplist */
    cr_assert_eq(sl_seek(r, now, NULL, 0), 0, "new memtable is not empty");
    order[i] = now;
    struct mt_view v;
    arena_view(r, &v);
    check_view(r, &v);
    cr_assert_eq(v.n, (uint32_t)i + 1, "after %d rotations the view has %u memtables", i, v.n);
    for (int k = 0; k <= i; k++)
      cr_assert_eq(v.idx[k], order[i - k], "view position %d is arena %u, want %u", k, v.idx[k], order[i - k]);
  }
  /* rotating away from a memtable that is no longer active changes nothing */
  uint32_t active = arena_active(r);
  cr_assert_eq(arena_rotate(r, db->slot, order[0]), SOCHDB_OK, "stale rotation should report OK");
  cr_assert_eq(arena_active(r), active, "stale rotation changed the active memtable");
  cr_assert_eq(count_state(r, MT_LIVE), 4, "stale rotation made a memtable LIVE");
  tu_close();
}

Test(arena, rotate_busy_when_none_free)
{
  /* 8 MiB region, 1 MiB memtables: only a few arenas after the tables */
  sochdb *db = open_db(8u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t n = r->hdr->n_memtables;
  cr_assert(n >= 2 && n < 8, "expected a handful of arenas, got %u", n);
  for (uint32_t i = 1; i < n; i++)
    cr_assert_eq(arena_rotate(r, db->slot, arena_active(r)), SOCHDB_OK, "rotation %u of %u failed", i, n - 1);
  cr_assert_eq(count_state(r, MT_LIVE), n, "every arena should be LIVE now");
  uint32_t active = arena_active(r);
  uint64_t next_id = atomic_load(&r->hdr->next_memtable_id);
  for (int i = 0; i < 3; i++) {
    int rc = arena_rotate(r, db->slot, active);
    cr_assert_eq(rc, SOCHDB_BUSY, "rotation with no free arena: %s, want BUSY", sochdb_strerror(rc));
  }
  cr_assert_eq(arena_active(r), active, "failed rotation changed the active memtable");
  cr_assert_eq(count_state(r, MT_LIVE), n, "failed rotation changed arena states");
  cr_assert_eq(count_state(r, MT_CLAIMED), 0, "failed rotation left an arena CLAIMED");
  cr_assert_eq(atomic_load(&r->hdr->next_memtable_id), next_id, "failed rotation consumed an id");
  struct mt_view v;
  arena_view(r, &v);
  check_view(r, &v);
  cr_assert_eq(v.n, n, "view should hold all %u arenas", n);

  /* once an arena is free again (as after a flush), rotation works */
  uint32_t victim = v.idx[v.n - 1];   /* the oldest */
  set_st(r, victim, MT_FREE);
  cr_assert_eq(arena_rotate(r, db->slot, active), SOCHDB_OK, "rotation after an arena was freed");
  cr_assert_eq(arena_active(r), victim, "the freed arena should be the new active one");
  cr_assert_gt(mt_id(r, victim), mt_id(r, active), "a reused arena must get a newer id");
  arena_view(r, &v);
  check_view(r, &v);
  cr_assert_eq(v.idx[0], victim, "the reused arena must come first in the view");
  tu_close();
}

/* The viewable bits follow the arenas' lives: set by the rotation that
** makes one LIVE, kept while it is retired (views skip it by its state),
** cleared by recycling, set again when it is reused. (The arenas of lost
** rotations keep their bits, FREE: concurrent_rotations_make_one_active
** checks that views still list exactly the LIVE ones.) */
Test(arena, viewable_bits_cover_every_live_arena)
{
  sochdb *db = open_db(8u << 20, 1u << 20);
  shm_region *r = &db->region;
  struct mt_view v;
  cr_assert_eq(viewable(r), 1u, "a fresh region: only arena 0");
  uint32_t first = arena_active(r);
  cr_assert_eq(arena_rotate(r, db->slot, first), SOCHDB_OK);
  uint32_t second = arena_active(r);
  cr_assert_eq(viewable(r), 1ull << first | 1ull << second, "the rotation set its arena's bit");
  arena_retire(r, first);
  arena_view(r, &v);
  check_view(r, &v);
  cr_assert(v.n == 1 && v.idx[0] == second, "a retired arena is not in the view");
  cr_assert(viewable(r) >> first & 1, "retiring keeps the bit");
  arena_recycle(r, first, 0);
  cr_assert_eq(viewable(r), 1ull << second, "recycling clears only the recycled arena's bit");
  cr_assert_eq(arena_rotate(r, db->slot, second), SOCHDB_OK);
  cr_assert_eq(arena_active(r), first, "the recycled arena is reused");
  cr_assert(viewable(r) >> first & 1, "reused: its bit is set again");
  uint64_t before = viewable(r);
  cr_assert_eq(arena_rotate(r, db->slot, second), SOCHDB_OK, "stale rotation");
  cr_assert_eq(viewable(r), before, "a stale rotation claims nothing");
  arena_view(r, &v);
  check_view(r, &v);
  cr_assert_eq(v.n, 2u, "both LIVE arenas in the view");
  tu_close();
}

struct rot_arg {
  shm_region *r;
  uint32_t slot;
  uint32_t full;
  pthread_barrier_t *start;
  int rc;
};

static void *rotator(void *p)
{
  struct rot_arg *a = p;
  pthread_barrier_wait(a->start);
  a->rc = arena_rotate(a->r, a->slot, a->full);
  return NULL;
}

#define NROT 4

Test(arena, concurrent_rotations_make_one_active)
{
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t n = r->hdr->n_memtables;
  int rounds = n - 1 < 12 ? (int)n - 1 : 12;
  for (int round = 0; round < rounds; round++) {
    uint32_t full = arena_active(r);
    pthread_t th[NROT];
    struct rot_arg args[NROT];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NROT);
    for (int t = 0; t < NROT; t++) {
      /* distinct slot numbers, as if NROT processes rotated at once */
      args[t] = (struct rot_arg){ r, db->slot + (uint32_t)t, full, &start, -1 };
      cr_assert_eq(pthread_create(&th[t], NULL, rotator, &args[t]), 0, "pthread_create");
    }
    for (int t = 0; t < NROT; t++)
      pthread_join(th[t], NULL);
    pthread_barrier_destroy(&start);
    for (int t = 0; t < NROT; t++)
      cr_assert_eq(args[t].rc, SOCHDB_OK, "round %d thread %d: %s", round, t, sochdb_strerror(args[t].rc));
    uint32_t now = arena_active(r);
    cr_assert_neq(now, full, "round %d: still the full memtable active", round);
    cr_assert_eq(count_state(r, MT_LIVE), (uint32_t)round + 2, "round %d: %u LIVE arenas, want %d (leak?)", round,
                 count_state(r, MT_LIVE), round + 2);
    cr_assert_eq(count_state(r, MT_CLAIMED), 0, "round %d: an arena stayed CLAIMED", round);
    for (uint32_t i = 0; i < n; i++)
      cr_assert_eq(cl_of(r, i), 0, "round %d: arena %u keeps a claimer", round, i);
    struct mt_view v;
    arena_view(r, &v);
    check_view(r, &v);
    cr_assert_eq(v.idx[0], now, "round %d: the active memtable is not the newest", round);
    cr_assert_eq(v.idx[1], full, "round %d: the full memtable is not second newest", round);
  }
  tu_close();
}

/* ---------------------------------------------------- reaper release */

Test(arena, release_claims_frees_stuck_claim)
{
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t dead = 7, other = 9;              /* slots of two pretend processes */
  uint32_t a = 3, b = 4;
  /* `dead` claimed arena a and died while initialising it */
  set_st(r, a, MT_CLAIMED);
  set_cl(r, a, dead + 1);
  /* `other` (alive) is half-way through claiming arena b */
  set_st(r, b, MT_CLAIMED);
  set_cl(r, b, other + 1);
  uint32_t active = arena_active(r);

  arena_release_claims_of(r, dead);
  cr_assert_eq(st_of(r, a), MT_FREE, "dead slot's CLAIMED arena not freed");
  cr_assert_eq(cl_of(r, a), 0, "dead slot's claimer not cleared");
  cr_assert_eq(st_of(r, b), MT_CLAIMED, "another slot's claim was released");
  cr_assert_eq(cl_of(r, b), other + 1, "another slot's claimer was cleared");
  cr_assert_eq(arena_active(r), active, "release changed the active memtable");
  cr_assert_eq(st_of(r, active), MT_LIVE, "active memtable no longer LIVE");

  /* the freed arena is usable by a rotation again; b is skipped */
  set_st(r, b, MT_FREE);
  set_cl(r, b, 0);
  for (uint32_t i = 1; i < r->hdr->n_memtables; i++)
    if (i != a)
      set_st(r, i, MT_LIVE);   /* pretend every other arena is in use */
  cr_assert_eq(arena_rotate(r, db->slot, active), SOCHDB_OK, "rotation into the released arena");
  cr_assert_eq(arena_active(r), a, "rotation should have taken the released arena");
  tu_close();
}

Test(arena, release_claims_of_dead_loser_frees_its_live_empty_arena)
{
  /* The rotator marked its arena LIVE, lost the CAS on active_memtable, and
  ** died before giving the (empty) arena back: the reaper must free it. */
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t dead = 11, a = 5;
  sl_init(r, a);
  atomic_store(&arena_memtable(r, a)->id, atomic_fetch_add(&r->hdr->next_memtable_id, 1));
  set_st(r, a, MT_LIVE);
  set_cl(r, a, dead + 1);
  arena_release_claims_of(r, dead);
  cr_assert_eq(st_of(r, a), MT_FREE, "orphan LIVE arena of a dead loser kept");
  cr_assert_eq(count_state(r, MT_LIVE), 1, "only the active memtable should be LIVE");
  tu_close();
}

Test(arena, release_claims_keeps_arena_that_won_while_active)
{
  /* The rotator won the CAS and died before clearing its claimer. */
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t dead = 12;
  cr_assert_eq(arena_rotate(r, db->slot, arena_active(r)), SOCHDB_OK, "rotate");
  uint32_t won = arena_active(r);
  set_cl(r, won, dead + 1);
  arena_release_claims_of(r, dead);
  cr_assert_eq(st_of(r, won), MT_LIVE, "the active memtable was freed");
  cr_assert_eq(arena_active(r), won, "active memtable changed");
  cr_assert_eq(cl_of(r, won), 0, "claimer not cleared");
  tu_close();
}

Test(arena, release_claims_keeps_arena_that_won_and_was_rotated_past)
{
  /* The rotator won the CAS (its arena became active and received commits)
  ** and died before clearing its claimer; other writers then filled that
  ** memtable and rotated past it before anyone reaped the dead slot. The
  ** arena holds committed data: releasing the claim must not free it. */
  sochdb *db = open_db(64u << 20, 1u << 20);
  shm_region *r = &db->region;
  uint32_t dead = 13;
  cr_assert_eq(arena_rotate(r, db->slot, arena_active(r)), SOCHDB_OK, "rotate");
  uint32_t won = arena_active(r);
  set_cl(r, won, dead + 1);   /* died before clearing it */

  /* a commit lands in the dead rotator's memtable */
  sochdb_txn *t = NULL;
  cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK, "begin");
  cr_assert_eq(sochdb_put(t, "precious", 8, "data", 4), SOCHDB_OK, "put");
  cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK, "commit");
  cr_assert_neq(sl_find(r, won, "precious", 8), 0, "the commit should be in the dead rotator's memtable");

  /* someone rotates past it */
  cr_assert_eq(arena_rotate(r, db->slot, won), SOCHDB_OK, "rotate past");
  cr_assert_neq(arena_active(r), won, "rotation did not happen");

  arena_release_claims_of(r, dead);   /* the reaper of the dead slot */
  cr_assert_eq(st_of(r, won), MT_LIVE,
               "arena_release_claims_of freed a LIVE memtable holding committed data "
               "(it only checks whether the arena is active *now*)");
  const void *v = NULL;
  size_t vl = 0;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK, "begin");
  int rc = sochdb_get(t, "precious", 8, &v, &vl);
  cr_assert_eq(rc, SOCHDB_OK, "committed key lost after the reaper released a claim: %s", sochdb_strerror(rc));
  sochdb_abort(t);
  tu_close();
}

/* A region in a tmpfs that fills up: an arena's pages are reserved before
** they are written, so a full tmpfs is SOCHDB_BUSY naming the cause, never
** a SIGBUS on first touch; what was committed stays readable. Needs root to
** mount a small tmpfs; skipped elsewhere (see the next test). */
Test(arena, full_tmpfs_is_busy_not_sigbus)
{
  char mnt[] = "/tmp/sochdb-tmpfs-XXXXXX";
  tu_mount_tmpfs_or_skip(mnt, "size=12m");
  setenv("SOCHDB_SHM_DIR", mnt, 1);
  sochdb_options o = { .region_bytes = 64u << 20, .memtable_bytes = 2u << 20, .busy_timeout_ms = 50 };
  sochdb *db;
  int rc = sochdb_open(tu_db_dir, &o, &db);
  cr_assert_eq(rc, SOCHDB_OK, "open in a 12 MiB tmpfs: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  int committed = 0;
  rc = fill_until_error(db, &committed);
  cr_assert_eq(rc, SOCHDB_BUSY, "filling the tmpfs ended with %s after %d commits", sochdb_strerror(rc), committed);
  cr_assert_not_null(strstr(sochdb_last_error(), "No space left"), "the cause is named: %s", sochdb_last_error());
  cr_assert_gt(committed, 1000, "a 12 MiB tmpfs holds more than %d commits of 1 KB", committed);
  check_filled(db, committed, committed / 50 + 1);
  unlink(sochdb_region_path(db));
  sochdb_close(db);
  tu_unmount(mnt);
}

/* Commits that take turns in their commit epochs, so that one is always in
** progress (as under sustained commits from several processes), none of
** them lasting: a spare arena is still given back, since none of them can
** have seen it LIVE for long. Before, arena_release_spare refused while
** any commit was in progress at the instant it looked. */
struct relay {
  shm_region *r;
  _Atomic uint64_t *ce[2];
  atomic_int stop;
};

static void *commit_relay(void *arg)
{
  struct relay *x = arg;
  epoch_enter(x->r, x->ce[0]);
  for (unsigned n = 1; !atomic_load(&x->stop); n++) {
    epoch_enter(x->r, x->ce[n & 1]);   /* the next commit begins before the last one ends */
    epoch_leave(x->ce[(n - 1) & 1]);
    for (volatile int spin = 0; spin < 2000; spin++) {
    }
  }
  epoch_leave(x->ce[0]);
  epoch_leave(x->ce[1]);
  return NULL;
}

Test(arena, a_spare_is_given_back_under_commits_that_take_turns)
{
  sochdb *db = open_db(256u << 20, 32u << 20);
  shm_region *r = &db->region;
  uint32_t mt = r->hdr->n_memtables - 1;
  fill_by_hand(r, mt, 4u << 20, 0x11);
  set_st(r, mt, MT_FREE);
  uint64_t full = tu_region_resident(db);
  struct relay x = { r, { &shm_txn_entry_at(r, db->slot, 1)->commit_epoch, &shm_txn_entry_at(r, db->slot, 2)->commit_epoch }, 0 };
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, commit_relay, &x), 0);
  while (!atomic_load(x.ce[1]))
    sched_yield();   /* the relay has begun */
  int released = 0;
  for (int i = 0; i < 20 && !released; i++)
    released = arena_release_spare(r, mt, db->slot);
  atomic_store(&x.stop, 1);
  pthread_join(th, NULL);
  cr_assert(released, "a spare was kept while commits that never saw it took turns");
  cr_assert_lt(tu_region_resident(db), full, "and its pages went");
  tu_close();
}
