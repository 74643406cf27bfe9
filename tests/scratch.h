/*
** scratch.h — a spare memtable arena for tests that drive the skiplist and
** version chains by hand (test_skiplist, test_mvcc).
**
** The arena is one that is FREE, hence in no transaction's view, claimed
** the way a rotating writer claims one (so that no rotation takes it while
** the test uses it), its first pages reserved, and laid out as an empty
** skiplist.
*/
#ifndef SOCHDB_TESTS_SCRATCH_H
#define SOCHDB_TESTS_SCRATCH_H

#include <criterion/criterion.h>
#include <stdatomic.h>

#include "arena.h"
#include "internal.h"
#include "skiplist.h"

static inline uint32_t tu_scratch_arena(sochdb *db)
{
  shm_region *r = &db->region;
  uint32_t n = r->hdr->n_memtables;
  cr_assert_geq(n, 2u, "region has %u memtables", n);
  uint32_t mt = n - 1;
  uint64_t free_word = mt_word(MT_FREE, 0);
  cr_assert(atomic_compare_exchange_strong(&arena_memtable(r, mt)->state_claim, &free_word,
                                           mt_word(MT_CLAIMED, db->slot + 1)), "arena %u is not free", mt);
  cr_assert_eq(arena_reserve(r, mt), SOCHDB_OK, "reserve the scratch arena");
  sl_init(r, mt);
  return mt;
}

#endif
