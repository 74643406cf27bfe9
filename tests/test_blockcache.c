/*
** test_blockcache.c — the shared block cache (shm/blockcache.c): sizing,
** hits and misses with exact contents, blocks too big to cache, eviction
** when a set overflows, CLOCK keeping a recently used block over unused
** ones, the counters, the reaper freeing entries a dead writer left
** half-written, and no torn copy ever returned while threads — or processes
** sharing one MAP_SHARED area — insert and look up overlapping blocks.
**
** Every block's length and bytes derive from its (file, offset), so any copy
** can be checked exactly; a torn one (words of two blocks) never passes.
*/
#include <criterion/criterion.h>
#include <errno.h>

#include "blockcache.h"
#include "testutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void kill_children(void) { tu_kill_all_children(); }

/* One tier of BC_BLOCK_MAX entries: the geometry most tests below reason
** about (a set, its ways, eviction within it). The region's own tiers are
** tested at the end (default_tiers_...). */
static const struct bc_tiers ONE = { 1, { BC_BLOCK_MAX }, { 1 } };

TestSuite(blockcache, .fini = kill_children, .timeout = 120);

/* ------------------------------------------------------------ blocks */

/* Every length 1..BC_BLOCK_MAX occurs; several keys are full-size. */
static size_t blk_len(uint64_t f, uint64_t o)
{
  if ((f + o) % 5 == 0)
    return BC_BLOCK_MAX;
  return 1 + (size_t)((f * 7919u + o * 104729u) % BC_BLOCK_MAX);
}

static uint8_t blk_byte(uint64_t f, uint64_t o, size_t i)
{
  uint64_t x = f * 0x9E3779B97F4A7C15ull ^ o * 0xC2B2AE3D27D4EB4Full;
  return (uint8_t)((x >> (i % 8 * 8)) + i / 8);
}

static void blk_fill(uint64_t f, uint64_t o, uint8_t *buf, size_t len)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = blk_byte(f, o, i);
}

/* 1 if buf[0..len) is exactly block (f, o). */
static int blk_ok(uint64_t f, uint64_t o, const uint8_t *buf, size_t len)
{
  if (len != blk_len(f, o))
    return 0;
  for (size_t i = 0; i < len; i++)
    if (buf[i] != blk_byte(f, o, i))
      return 0;
  return 1;
}

static uint8_t blkbuf[BC_BLOCK_MAX];

/* Insert block (f, o) with its pattern. */
static void put(void *area, uint64_t f, uint64_t o, uint32_t owner)
{
  size_t n = blk_len(f, o);
  blk_fill(f, o, blkbuf, n);
  bc_insert(area, f, o, blkbuf, n, owner, NULL);
}

/* 1 on a hit (asserting its contents), 0 on a miss. */
static int get(void *area, uint64_t f, uint64_t o)
{
  uint8_t out[BC_BLOCK_MAX];
  size_t len = 0;
  if (!bc_lookup(area, f, o, out, sizeof out, &len))
    return 0;
  cr_assert(blk_ok(f, o, out, len), "block (%llu, %llu): wrong contents or length %zu", (unsigned long long)f,
            (unsigned long long)o, len);
  return 1;
}

/* Tries at which a block read after every miss is in a full set for sure
** enough: (1 - 1/BC_ADMIT_EVERY)^200 is about 1e-25. */
#define ADMIT_TRIES 200u

/* put into a full set, as a reader would after each miss, until admitted. */
static void put_admitted(void *area, uint64_t f, uint64_t o, uint32_t owner)
{
  for (unsigned i = 0; i < ADMIT_TRIES && !get(area, f, o); i++)
    put(area, f, o, owner);
  cr_assert_eq(get(area, f, o), 1, "block (%llu, %llu) not admitted in %u misses", (unsigned long long)f,
               (unsigned long long)o, ADMIT_TRIES);
}

/* An area (zero-filled, MAP_SHARED) of nsets sets, formatted. */
static void *make_area(uint64_t nsets, size_t *bytes)
{
  *bytes = bc_area_bytes_of(&ONE, nsets * BC_WAYS * BC_BLOCK_MAX);
  cr_assert_gt(*bytes, 0u, "area for %llu sets", (unsigned long long)nsets);
  void *a = tu_shared_alloc(*bytes);
  cr_assert_not_null(a, "mmap %zu bytes", *bytes);
  bc_init_of(&ONE, a, *bytes);
  struct bc_stats st;
  bc_get_stats(a, &st);
  cr_assert_eq(st.capacity_blocks, nsets * BC_WAYS, "capacity of %llu sets", (unsigned long long)nsets);
  return a;
}

static struct bc_stats stats(void *area)
{
  struct bc_stats st;
  bc_get_stats(area, &st);
  return st;
}

/* ------------------------------------------------------------ single thread */

Test(blockcache, sizing_and_disabled)
{
  uint64_t set_bytes = (uint64_t)BC_WAYS * BC_BLOCK_MAX;
  cr_assert_eq(bc_area_bytes_of(&ONE, 0), 0u, "no cache");
  cr_assert_eq(bc_area_bytes_of(&ONE, set_bytes - 1), 0u, "too small for one set");
  size_t one = bc_area_bytes_of(&ONE, set_bytes), two = bc_area_bytes_of(&ONE, 2 * set_bytes - 1);
  cr_assert_geq(one, set_bytes, "one set holds its payload");
  cr_assert_eq(one, two, "rounded down to whole sets");
  cr_assert_gt(bc_area_bytes_of(&ONE, 2 * set_bytes), one, "two sets");

  /* NULL area: every call is harmless, every lookup misses */
  uint8_t out[16];
  size_t len = 99;
  bc_insert(NULL, 1, 0, "abc", 3, 1, NULL);
  cr_assert_eq(bc_lookup(NULL, 1, 0, out, sizeof out, &len), 0, "NULL area misses");
  bc_release_owner(NULL, 1);
  struct bc_stats st = stats(NULL);
  cr_assert_eq(st.capacity_blocks + st.hits + st.misses + st.inserts, 0u, "NULL area: zero stats");

  /* an area too small for a set is formatted as a disabled cache */
  static uint64_t small[1024];
  bc_init_of(&ONE, small, sizeof small);
  bc_insert(small, 1, 0, "abc", 3, 1, NULL);
  cr_assert_eq(bc_lookup(small, 1, 0, out, sizeof out, &len), 0, "disabled cache misses");
  cr_assert_eq(stats(small).capacity_blocks, 0u, "disabled: no capacity");

  /* an area a little bigger than needed: whole sets only */
  size_t bytes = bc_area_bytes_of(&ONE, 3 * set_bytes) + (size_t)set_bytes / 2;
  void *a = tu_shared_alloc(bytes);
  cr_assert_not_null(a);
  bc_init_of(&ONE, a, bytes);
  cr_assert_eq(stats(a).capacity_blocks, 3u * BC_WAYS, "3 sets fit");
  tu_shared_free(a, bytes);
}

/* The area's blocks get memory through the backing, one set at a time and
** once per set (bc_meta_bytes is all bc_init writes); a backing that cannot
** reserve (a full tmpfs) means the block is not cached, never a write into
** memory that has none. */
#define POISON 0x5a

struct backing_log {
  unsigned calls;
  int      fail;
  char    *lo, *hi;     /* the blocks: every range reserved must be one set's, untouched yet */
  char    *got[64];     /* the ranges reserved (that did not fail) */
  unsigned ngot;
  int      bad;
};

static int log_reserve(void *ctx, void *addr, size_t len)
{
  struct backing_log *l = ctx;
  char *p = addr;
  l->calls++;
  size_t set_bytes = (size_t)BC_WAYS * BC_BLOCK_MAX;
  l->bad |= len != set_bytes || p < l->lo || p + len > l->hi || (size_t)(p - l->lo) % set_bytes != 0;
  for (size_t i = 0; i < len && !l->bad; i++)
    l->bad |= p[i] != POISON;      /* reserved before any block of the set is written */
  if (!l->fail && l->ngot < 64)
    l->got[l->ngot++] = p;
  return l->fail;
}

/* Every byte a block was written to lies in a range the backing reserved. */
static int writes_inside_reserved(const struct backing_log *l)
{
  size_t set_bytes = (size_t)BC_WAYS * BC_BLOCK_MAX;
  for (char *p = l->lo; p < l->hi; p++) {
    if (*p == POISON)
      continue;
    int in = 0;
    for (unsigned k = 0; k < l->ngot && !in; k++)
      in = p >= l->got[k] && p < l->got[k] + set_bytes;
    if (!in)
      return 0;
  }
  return 1;
}

Test(blockcache, backing_reserves_each_set_once)
{
  size_t bytes;
  void *a = make_area(4, &bytes);
  cr_assert_lt(bc_meta_bytes_of(&ONE, bytes), bytes - 4u * BC_WAYS * BC_BLOCK_MAX + 1, "the metadata is not the blocks");
  struct backing_log log = { .fail = ENOSPC, .lo = (char *)a + bc_meta_bytes_of(&ONE, bytes), .hi = (char *)a + bytes };
  memset(log.lo, POISON, (size_t)(log.hi - log.lo));
  struct bc_backing b = { log_reserve, &log };
  blk_fill(9, 0, blkbuf, blk_len(9, 0));
  bc_insert(a, 9, 0, blkbuf, blk_len(9, 0), 1, &b);
  cr_assert_eq(log.calls, 1u, "the backing was asked once");
  cr_assert_eq(get(a, 9, 0), 0, "a block whose set has no memory is not cached");
  cr_assert_eq(stats(a).inserts, 0u, "nothing inserted");
  log.fail = 0;
  bc_insert(a, 9, 0, blkbuf, blk_len(9, 0), 1, &b);
  cr_assert_eq(get(a, 9, 0), 1, "cached once its set has memory");
  for (uint64_t o = 1; o < 64; o++) {
    blk_fill(9, o * 4096, blkbuf, blk_len(9, o * 4096));
    bc_insert(a, 9, o * 4096, blkbuf, blk_len(9, o * 4096), 1, &b);
  }
  cr_assert_leq(log.calls, 1u + 4u, "each of the 4 sets backed once, not per insert (%u calls)", log.calls);
  cr_assert_eq(log.bad, 0, "each reservation is one whole set's blocks, before any is written");
  cr_assert(writes_inside_reserved(&log), "every block was written into a set the backing reserved");
  tu_shared_free(a, bytes);
}

Test(blockcache, hit_miss_and_contents)
{
  size_t bytes;
  void *a = make_area(4, &bytes);
  cr_assert_eq(get(a, 7, 4096), 0, "empty cache misses");
  put(a, 7, 4096, 1);
  cr_assert_eq(get(a, 7, 4096), 1, "inserted block hits");
  cr_assert_eq(get(a, 7, 8192), 0, "other offset misses");
  cr_assert_eq(get(a, 8, 4096), 0, "other file misses");

  /* dst too small: a miss, and dst beyond cap untouched */
  uint8_t small[65];
  memset(small, 0x5A, sizeof small);
  size_t len = 0;
  cr_assert_gt(blk_len(7, 4096), 64u, "test block longer than 64");
  cr_assert_eq(bc_lookup(a, 7, 4096, small, 64, &len), 0, "cap below the length misses");
  cr_assert_eq(small[64], 0x5A, "nothing written past cap");

  /* odd lengths (not whole words), and an empty block */
  for (size_t n = 1; n <= 17; n++) {
    blk_fill(100, n, blkbuf, n);
    bc_insert(a, 100, n, blkbuf, n, 1, NULL);
    uint8_t out[32];
    memset(out, 0, sizeof out);
    cr_assert_eq(bc_lookup(a, 100, n, out, n, &len), 1, "block of %zu bytes hits with cap = its length", n);
    cr_assert_eq(len, n, "length %zu", n);
    for (size_t i = 0; i < n; i++)
      cr_assert_eq(out[i], blk_byte(100, n, i), "byte %zu of a %zu-byte block", i, n);
    cr_assert_eq(out[n], 0, "nothing written past the block");
  }
  bc_insert(a, 200, 0, NULL, 0, 1, NULL);
  len = 99;
  cr_assert_eq(bc_lookup(a, 200, 0, blkbuf, 0, &len), 1, "an empty block hits");
  cr_assert_eq(len, 0u, "empty block length");

  /* inserting a cached block again does nothing */
  struct bc_stats before = stats(a);
  put(a, 7, 4096, 2);
  cr_assert_eq(stats(a).inserts, before.inserts, "duplicate insert ignored");
  /* an invalid owner inserts nothing */
  put(a, 300, 0, 0);
  put(a, 301, 0, 70000);
  cr_assert_eq(get(a, 300, 0) + get(a, 301, 0), 0, "owner 0 / > 65535 refused");
  tu_shared_free(a, bytes);
}

Test(blockcache, a_read_in_pieces_copies_the_ranges_asked)
{
  size_t bytes;
  void *a = make_area(4, &bytes);
  _Atomic uint64_t hits = 0, misses = 0;
  struct bc_read rd;
  cr_assert_eq(bc_read_begin(a, 9, 0, BC_BLOCK_MAX, &rd, &hits, &misses), 0, "an empty cache misses");
  cr_assert_eq(misses, 1u, "the miss counted in the caller's counter");
  put(a, 9, 0, 1);
  size_t n = blk_len(9, 0);
  cr_assert_gt(n, 300u, "test block longer than 300");
  cr_assert_eq(bc_read_begin(a, 9, 0, n - 1, &rd, &hits, &misses), 0, "cap below the length misses");
  cr_assert_eq(bc_read_begin(a, 9, 0, n, &rd, &hits, &misses), 1, "a cached block is found");
  cr_assert_eq(rd.len, n, "its length");
  uint8_t out[BC_BLOCK_MAX + 8];
  memset(out, 0xEE, sizeof out);
  const size_t ranges[][2] = { { 13, 40 }, { 200, 201 }, { n - 5, n + 100 } };   /* the last one clipped */
  for (unsigned k = 0; k < 3; k++)
    bc_read_copy(&rd, ranges[k][0], ranges[k][1], out);
  bc_read_copy(&rd, 50, 50, out);   /* empty */
  cr_assert_eq(bc_read_end(&rd), 1, "nothing changed: the pieces are the block's");
  cr_assert_eq(hits, 1u, "the hit counted at the end");
  for (size_t i = 0; i < sizeof out; i++) {
    int asked = 0;
    for (unsigned k = 0; k < 3; k++)
      asked |= i >= ranges[k][0] && i < ranges[k][1] && i < n;
    int word_before = (i >= 8 && i < 13) || (i >= 200 - 200 % 8 && i < 200) || (i >= (n - 5) / 8 * 8 && i < n - 5);
    if (asked)
      cr_assert_eq(out[i], blk_byte(9, 0, i), "byte %zu asked for", i);
    else if (!word_before)
      cr_assert_eq(out[i], 0xEE, "byte %zu not asked for, and not in the word of one that was", i);
  }
  struct bc_stats st = stats(a);
  cr_assert_eq(st.hits + st.misses, 0u, "the area's own counters untouched: the caller's were given");
  tu_shared_free(a, bytes);
}

Test(blockcache, a_read_in_pieces_of_a_block_replaced_meanwhile_is_a_miss)
{
  size_t bytes;
  void *a = make_area(1, &bytes);
  put(a, 1, 0, 1);
  _Atomic uint64_t hits = 0, misses = 0;
  struct bc_read rd;
  cr_assert_eq(bc_read_begin(a, 1, 0, BC_BLOCK_MAX, &rd, &hits, &misses), 1, "found");
  uint8_t out[BC_BLOCK_MAX];
  bc_read_copy(&rd, 0, 64, out);
  /* other blocks into the one set until ours is evicted (looked for with
  ** bc_read_begin, which leaves its CLOCK bit clear, unlike a hit) */
  unsigned o = 1;
  _Atomic uint64_t looks = 0;
  struct bc_read still;
  while (o < 100000 && bc_read_begin(a, 1, 0, BC_BLOCK_MAX, &still, &looks, &looks))
    put(a, 2, 4096u * o++, 2);
  cr_assert_lt(o, 100000u, "block (1, 0) evicted by %u others", o);
  bc_read_copy(&rd, 64, 128, out);
  cr_assert_eq(bc_read_end(&rd), 0, "its entry changed during the read: a miss, whatever was copied");
  cr_assert_eq(hits, 0u, "no hit counted");
  cr_assert_eq(misses, 1u, "one miss counted");
  tu_shared_free(a, bytes);
}

Test(blockcache, too_big)
{
  size_t bytes;
  void *a = make_area(1, &bytes);
  static uint8_t big[BC_BLOCK_MAX + 1];
  bc_insert(a, 1, 0, big, sizeof big, 1, NULL);
  size_t len;
  cr_assert_eq(bc_lookup(a, 1, 0, big, sizeof big, &len), 0, "a block over BC_BLOCK_MAX is not cached");
  struct bc_stats st = stats(a);
  cr_assert_eq(st.too_big, 1u, "too_big counted");
  cr_assert_eq(st.inserts, 0u, "nothing inserted");
  blk_fill(1, 0, big, BC_BLOCK_MAX);
  bc_insert(a, 1, 5, big, BC_BLOCK_MAX, 1, NULL);
  cr_assert_eq(bc_lookup(a, 1, 5, big + 1, BC_BLOCK_MAX, &len), 1, "exactly BC_BLOCK_MAX is cached");
  cr_assert_eq(len, BC_BLOCK_MAX, "full length");
  cr_assert_eq(stats(a).inserts, 1u, "one insert");
  tu_shared_free(a, bytes);
}

Test(blockcache, eviction_when_a_set_overflows)
{
  size_t bytes;
  void *a = make_area(1, &bytes);   /* one set: every block competes */
  for (uint64_t o = 0; o < BC_WAYS; o++)
    put(a, 1, o, 1);
  for (uint64_t o = 0; o < BC_WAYS; o++)
    cr_assert_eq(get(a, 1, o), 1, "block %llu of a full set hits", (unsigned long long)o);
  cr_assert_eq(stats(a).evictions, 0u, "no eviction while the set has room");
  put_admitted(a, 1, 100, 1);
  unsigned present = 0;
  for (uint64_t o = 0; o < BC_WAYS; o++)
    present += (unsigned)get(a, 1, o);
  cr_assert_eq(present, BC_WAYS - 1, "exactly one older block evicted (%u of %u left)", present, BC_WAYS);
  struct bc_stats st = stats(a);
  cr_assert_eq(st.evictions, 1u, "one eviction counted");
  cr_assert_eq(st.inserts, BC_WAYS + 1u, "inserts");
  tu_shared_free(a, bytes);
}

/* A full set admits about one new block in BC_ADMIT_EVERY: blocks read once
** each, as random reads over more than the cache holds read them, mostly
** leave what it holds in place. A set with room takes every block. */
Test(blockcache, a_full_set_admits_one_block_in_bc_admit_every)
{
  size_t bytes;
  void *a = make_area(1, &bytes);
  for (uint64_t o = 0; o < BC_WAYS; o++)
    put(a, 1, o, 1);
  for (uint64_t o = 0; o < BC_WAYS; o++)
    cr_assert_eq(get(a, 1, o), 1, "block %llu: a set with room takes every block", (unsigned long long)o);
  const unsigned tries = 400;
  for (uint64_t o = 0; o < tries; o++)
    put(a, 2, o, 1);
  struct bc_stats st = stats(a);
  unsigned admitted = (unsigned)(st.inserts - BC_WAYS);
  /* binomial(400, 1/4): 100 +- 8.7; these bounds are 5.8 deviations out */
  cr_assert(admitted >= 50 && admitted <= 150, "%u of %u blocks read once got in", admitted, tries);
  cr_assert_eq(st.evictions, admitted, "each admitted block evicted one");
  tu_shared_free(a, bytes);
}

/* A set with a free way (here after a dead writer's entry was reaped) puts
** the block there, even where CLOCK's hand points at a valid block. */
Test(blockcache, a_free_way_is_taken_before_a_victim)
{
  size_t bytes;
  void *a = make_area(1, &bytes);
  for (uint64_t o = 0; o < BC_WAYS; o++)   /* ways 0..7, the hand still at 0 */
    put(a, 1, o, 1);
  /* a writer takes CLOCK's victim, way 0 (the hand moves on to way 1), and dies there */
  cr_assert_eq(bc_test_claim_and_stop(a, 5, 0, 1000, 3), 1, "a writer dies in a way");
  bc_release_owner(a, 3);   /* its way is free again */
  put(a, 6, 0, 1);
  cr_assert_eq(get(a, 6, 0), 1, "a set with room takes the block");
  for (uint64_t o = 1; o < BC_WAYS; o++)
    cr_assert_eq(get(a, 1, o), 1, "block %llu evicted while a way was free", (unsigned long long)o);
  cr_assert_eq(stats(a).evictions, 1u, "only the dead writer's claim evicted a block");
  tu_shared_free(a, bytes);
}

Test(blockcache, clock_keeps_recently_used)
{
  size_t bytes;
  void *a = make_area(1, &bytes);
  for (uint64_t o = 0; o < BC_WAYS; o++)
    put(a, 1, o, 1);
  for (uint64_t o = 0; o < BC_WAYS / 2; o++)   /* use the first half */
    cr_assert_eq(get(a, 1, o), 1, "hit");
  for (uint64_t o = 0; o < BC_WAYS / 2; o++)   /* then insert as many new blocks */
    put_admitted(a, 2, o, 1);
  for (uint64_t o = 0; o < BC_WAYS / 2; o++) {
    cr_assert_eq(get(a, 1, o), 1, "recently used block %llu kept", (unsigned long long)o);
    cr_assert_eq(get(a, 2, o), 1, "new block %llu cached", (unsigned long long)o);
    cr_assert_eq(get(a, 1, o + BC_WAYS / 2), 0, "unused block %llu evicted", (unsigned long long)(o + BC_WAYS / 2));
  }
  cr_assert_eq(stats(a).evictions, BC_WAYS / 2, "evictions");
  tu_shared_free(a, bytes);
}

Test(blockcache, stats)
{
  size_t bytes;
  void *a = make_area(2, &bytes);
  static uint8_t big[BC_BLOCK_MAX + 8];
  put(a, 1, 0, 1);
  put(a, 1, 1, 1);
  put(a, 1, 1, 1);                              /* duplicate: not counted */
  bc_insert(a, 1, 2, big, sizeof big, 1, NULL);       /* too big */
  get(a, 1, 0);
  get(a, 1, 0);
  get(a, 1, 1);
  get(a, 1, 2);
  get(a, 9, 9);
  struct bc_stats st = stats(a);
  cr_assert_eq(st.hits, 3u, "hits");
  cr_assert_eq(st.misses, 2u, "misses");
  cr_assert_eq(st.inserts, 2u, "inserts");
  cr_assert_eq(st.evictions, 0u, "evictions");
  cr_assert_eq(st.too_big, 1u, "too_big");
  cr_assert_eq(st.capacity_blocks, 2u * BC_WAYS, "capacity");
  tu_shared_free(a, bytes);
}

Test(blockcache, release_owner_frees_half_written)
{
  size_t bytes;
  void *a = make_area(1, &bytes);
  /* a writer (owner 3) "died" in the middle of every way of the set */
  for (uint64_t o = 0; o < BC_WAYS; o++)
    cr_assert_eq(bc_test_claim_and_stop(a, 5, o, 1000, 3), 1, "claim way for (5, %llu)", (unsigned long long)o);
  for (uint64_t o = 0; o < BC_WAYS; o++)
    cr_assert_eq(get(a, 5, o), 0, "a half-written entry never hits");
  for (unsigned i = 0; i < ADMIT_TRIES; i++)   /* admitted ones find every way being written */
    put(a, 1, 0, 1);
  cr_assert_eq(get(a, 1, 0), 0, "no way free: the insert gave up");
  cr_assert_eq(stats(a).inserts, 0u, "nothing inserted");

  bc_release_owner(a, 4);   /* another owner: nothing changes */
  put(a, 1, 0, 1);
  cr_assert_eq(get(a, 1, 0), 0, "still no way free after reaping someone else");

  bc_release_owner(a, 3);
  for (uint64_t o = 0; o < BC_WAYS; o++)
    cr_assert_eq(get(a, 5, o), 0, "a reaped entry is empty");
  for (uint64_t o = 0; o < BC_WAYS; o++)
    put(a, 1, o, 1);
  for (uint64_t o = 0; o < BC_WAYS; o++)
    cr_assert_eq(get(a, 1, o), 1, "every reaped way is usable again (block %llu)", (unsigned long long)o);
  struct bc_stats st = stats(a);
  cr_assert_eq(st.inserts, BC_WAYS, "inserts after reaping");
  cr_assert_eq(st.evictions, 0u, "reaped entries are free, not evicted");

  /* a live writer's claim in a full set of valid blocks: reaping owner 2 only frees its own */
  cr_assert_eq(bc_test_claim_and_stop(a, 6, 0, 10, 2), 1, "claim over a valid block");
  cr_assert_eq(bc_test_claim_and_stop(a, 6, 1, 10, 7), 1, "another claim");
  bc_release_owner(a, 2);
  put(a, 6, 0, 1);
  cr_assert_eq(get(a, 6, 0), 1, "a block is cached again");
  cr_assert_eq(get(a, 6, 1), 0, "owner 7's entry still being written");
  tu_shared_free(a, bytes);
}

/* ------------------------------------------------------------ concurrency */

#define KEY_FILES   3u
#define KEY_OFFSETS 16u

struct worker {
  void    *area;
  uint32_t owner;
  unsigned iters;
  uint64_t seed;
  uint64_t hits, bad;
  _Atomic uint64_t *piece_hits, *piece_misses;   /* where reads in pieces count (the area's own) */
};

static uint64_t xorshift(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Read block (f, o) in three pieces (bc_read_*), at places drawn from r,
** into out: 1 if a read the end accepted copied any wrong byte. */
static int read_pieces(struct worker *w, uint64_t f, uint64_t o, uint64_t r, uint8_t *out)
{
  struct bc_read rd;
  if (!bc_read_begin(w->area, f, o, BC_BLOCK_MAX, &rd, w->piece_hits, w->piece_misses))
    return 0;
  size_t from[3], to[3];
  for (unsigned k = 0; k < 3; k++, r >>= 11) {   /* 7 bits of r place a piece, 4 more size it */
    from[k] = (size_t)(r & 0x7f) * rd.len / 128;
    to[k] = from[k] + 1 + (size_t)(r >> 7 & 0xf) * 97;
    bc_read_copy(&rd, from[k], to[k], out);
  }
  if (!bc_read_end(&rd))
    return 0;
  w->hits++;
  int bad = rd.len != blk_len(f, o);
  for (unsigned k = 0; k < 3; k++)
    for (size_t i = from[k]; i < to[k] && i < rd.len; i++)
      bad |= out[i] != blk_byte(f, o, i);
  return bad;
}

/* Look up random blocks of a key space bigger than the cache, whole or in
** pieces; insert on a miss of a whole lookup. Every hit is checked byte for byte. Asserts nothing (it also runs in
** forked children). */
static void work(struct worker *w)
{
  static __thread uint8_t out[BC_BLOCK_MAX], in[BC_BLOCK_MAX];
  for (unsigned i = 0; i < w->iters; i++) {
    uint64_t r = xorshift(&w->seed);
    uint64_t f = 1 + r % KEY_FILES, o = (r >> 8) % KEY_OFFSETS * 4096u;
    size_t len = 0;
    if (r >> 40 & 1) {
      w->bad += read_pieces(w, f, o, xorshift(&w->seed), out);
    } else if (bc_lookup(w->area, f, o, out, sizeof out, &len)) {
      w->hits++;
      w->bad += !blk_ok(f, o, out, len);
    } else {
      size_t n = blk_len(f, o);
      blk_fill(f, o, in, n);
      bc_insert(w->area, f, o, in, n, w->owner, NULL);
    }
  }
}

static void *work_thread(void *p)
{
  work(p);
  return NULL;
}

#if defined(__SANITIZE_THREAD__)
#define ITERS 4000u
#else
#define ITERS 40000u
#endif

Test(blockcache, threads_never_see_torn_blocks)
{
  size_t bytes;
  void *a = make_area(2, &bytes);   /* 16 entries for 48 blocks: constant eviction */
  struct worker w[4];
  pthread_t th[4];
  _Atomic uint64_t piece[2] = { 0, 0 };   /* hits, misses of the reads in pieces */
  for (unsigned t = 0; t < 4; t++) {
    w[t] = (struct worker){.area = a, .owner = t + 1, .iters = ITERS, .seed = 0x1234567ull * (t + 1),
                           .piece_hits = &piece[0], .piece_misses = &piece[1]};
    cr_assert_eq(pthread_create(&th[t], NULL, work_thread, &w[t]), 0, "pthread_create");
  }
  uint64_t hits = 0;
  for (unsigned t = 0; t < 4; t++) {
    TU_JOIN(th[t], "worker");
    cr_assert_eq(w[t].bad, 0u, "thread %u got %llu torn or wrong blocks", t, (unsigned long long)w[t].bad);
    hits += w[t].hits;
  }
  struct bc_stats st = stats(a);
  cr_log_info("threads: %llu hits, %llu misses, %llu inserts, %llu evictions", (unsigned long long)st.hits,
              (unsigned long long)st.misses, (unsigned long long)st.inserts, (unsigned long long)st.evictions);
  cr_assert_eq(st.hits + piece[0], hits, "hit counters match the hits seen");
  cr_assert_eq(st.hits + st.misses + piece[0] + piece[1], 4ull * ITERS, "every lookup counted once");
  cr_assert(piece[0] > 0 && st.hits > 0, "hits in pieces (%llu) and whole (%llu)", (unsigned long long)piece[0],
            (unsigned long long)st.hits);
  cr_assert(st.hits > 0 && st.evictions > 0, "the test exercised hits (%llu) and evictions (%llu)",
            (unsigned long long)st.hits, (unsigned long long)st.evictions);
  tu_shared_free(a, bytes);
}

Test(blockcache, processes_never_see_torn_blocks)
{
  size_t bytes;
  void *a = make_area(2, &bytes);
  _Atomic uint64_t *piece = tu_shared_alloc(2 * sizeof *piece);   /* hits, misses of the reads in pieces */
  cr_assert_not_null(piece, "shared counters");
  pid_t pids[3];
  for (unsigned c = 0; c < 3; c++) {
    pid_t pid = tu_fork();
    cr_assert_geq(pid, 0, "fork");
    if (pid == 0) {
      struct worker w = {.area = a, .owner = c + 10, .iters = ITERS, .seed = 0xabcdefull * (c + 1),
                         .piece_hits = &piece[0], .piece_misses = &piece[1]};
      work(&w);
      _exit(w.bad ? 1 : w.hits == 0 ? 2 : 0);
    }
    pids[c] = pid;
  }
  int statuses[3];
  cr_assert_eq(tu_wait_children(pids, 3, 60000, statuses), 0, "children finished in time");
  for (unsigned c = 0; c < 3; c++) {
    char buf[64];
    cr_assert(WIFEXITED(statuses[c]) && WEXITSTATUS(statuses[c]) == 0,
              "child %u: %s (1: torn or wrong block, 2: no hit)", c, tu_status_str(statuses[c], buf, sizeof buf));
  }
  struct bc_stats st = stats(a);
  cr_assert_eq(st.hits + st.misses + piece[0] + piece[1], 3ull * ITERS,
               "every lookup of every process counted once");
  cr_assert(piece[0] > 0, "hits in pieces (%llu)", (unsigned long long)piece[0]);
  tu_shared_free(piece, 2 * sizeof *piece);
  cr_assert(st.hits > 0 && st.evictions > 0, "hits (%llu) and evictions (%llu) in the shared area",
            (unsigned long long)st.hits, (unsigned long long)st.evictions);
  tu_shared_free(a, bytes);
}

/* ------------------------------------------------------------ the region's tiers */

/* An area of the region's tiers (bc_default_tiers) for cache_bytes. */
static void *make_default_area(uint64_t cache_bytes, size_t *bytes)
{
  *bytes = bc_area_bytes(cache_bytes);
  cr_assert_gt(*bytes, 0u, "area for %llu bytes", (unsigned long long)cache_bytes);
  void *a = tu_shared_alloc(*bytes);
  cr_assert_not_null(a, "mmap %zu bytes", *bytes);
  bc_init(a, *bytes);
  cr_assert(bc_header_intact(a, *bytes), "the header bc_init wrote is intact");
  return a;
}

/* A data block of the default size (SST_BLOCK_DEFAULT of entries and the
** one that crossed it: 4139-4194 bytes in sochdbd's tables) took a whole
** 16 KiB entry, so a cache held a quarter of its bytes' worth of them (the
** block-cache review: 32 such blocks in a 512 KiB cache). With the small
** tier they fill at least three quarters of the budget's three quarters. */
Test(blockcache, default_size_blocks_fill_most_of_the_small_tier)
{
  const uint64_t budget = 512u << 10;
  size_t bytes;
  void *a = make_default_area(budget, &bytes);
  static uint8_t blk[4160];
  memset(blk, 0x5a, sizeof blk);
  unsigned nblocks = (unsigned)(budget / sizeof blk) + 2, cached = 0;
  for (unsigned o = 0; o < nblocks; o++)
    bc_insert(a, 1, o * 4096ull, blk, sizeof blk, 1, NULL);
  for (unsigned o = 0; o < nblocks; o++) {
    uint8_t out[sizeof blk];
    size_t len = 0;
    cached += bc_lookup(a, 1, o * 4096ull, out, sizeof out, &len) && len == sizeof blk;
  }
  cr_assert_geq(cached * sizeof blk, budget * 3 / 4 * 3 / 4, "%u blocks of %zu bytes (%llu KiB) cached in a %llu "
                "KiB cache", cached, sizeof blk, (unsigned long long)(cached * sizeof blk >> 10),
                (unsigned long long)(budget >> 10));
  struct bc_stats st = stats(a);
  cr_assert_leq(st.capacity_bytes, budget, "the entries take no more than the budget");
  cr_assert_leq(bytes, budget + bc_meta_bytes(bytes), "the area is the budget and its metadata");
  tu_shared_free(a, bytes);
}

/* Blocks of every length go to their tier and come back whole, whatever
** room the reader offers; a dead writer's entries are freed in every tier;
** the area's layout follows from its size alone. */
Test(blockcache, default_tiers_hold_blocks_of_every_size)
{
  size_t bytes;
  void *a = make_default_area(16u << 20, &bytes);   /* 32 large sets for about 46 large blocks: no eviction */
  for (uint64_t o = 0; o < 64; o++)
    put(a, 3, o * 4096, 1);
  unsigned hits = 0;
  for (uint64_t o = 0; o < 64; o++) {
    hits += (unsigned)get(a, 3, o * 4096);   /* room for BC_BLOCK_MAX: looks in both tiers */
    size_t n = blk_len(3, o * 4096), len = 0;
    uint8_t out[BC_BLOCK_MAX];
    cr_assert_eq(bc_lookup(a, 3, o * 4096, out, n, &len), 1, "block %llu (%zu bytes) with room for just itself",
                 (unsigned long long)o, n);
    cr_assert(blk_ok(3, o * 4096, out, len), "block %llu's contents", (unsigned long long)o);
  }
  cr_assert_eq(hits, 64u, "every block cached in a cache far larger than them");
  static uint8_t big[BC_BLOCK_MAX + 1];
  bc_insert(a, 4, 0, big, sizeof big, 1, NULL);
  cr_assert_eq(stats(a).too_big, 1u, "a block over BC_BLOCK_MAX is no tier's");

  cr_assert_eq(bc_test_claim_and_stop(a, 5, 0, 1000, 9), 1, "a small block's entry");
  cr_assert_eq(bc_test_claim_and_stop(a, 5, 1, 9000, 9), 1, "a large block's entry");
  cr_assert_eq(bc_test_owned(a, 9), 2u, "owner 9 holds one entry in each tier");
  bc_release_owner(a, 9);
  cr_assert_eq(bc_test_owned(a, 9), 0u, "the reaper frees both");

  cr_assert_not(bc_header_intact(a, bytes + 64u * BC_WAYS * BC_BLOCK_MAX), "another size, another layout");
  uint64_t *word = a;
  word[2] ^= 1;   /* a tier's set count */
  cr_assert_not(bc_header_intact(a, bytes), "a damaged tier is seen");
  tu_shared_free(a, bytes);
}

/* The area bc_area_bytes gives for a budget gets that budget's sets. The
** layout was searched among budgets up to the area's size, taken for an
** upper bound ("a budget's area is at least the budget"), but each tier's
** share rounds down to whole sets, so an area can be smaller than its
** budget: 512 KiB made an area of 507904 bytes, whose own search found no
** large set (no block over 4608 bytes was ever cached), 2 MiB lost one of
** its 4 large sets, and 48-53 KiB made an area with no set at all. */
Test(blockcache, an_area_gets_the_sets_of_its_budget)
{
  static uint8_t blk[BC_BLOCK_MAX];
  memset(blk, 0x3c, sizeof blk);
  for (uint64_t budget = 0; budget <= (4u << 20); budget += 1024) {
    size_t bytes = bc_area_bytes(budget);
    uint64_t small = budget / 4 * 3 / (BC_WAYS * 4608u), large = budget / 4 / (BC_WAYS * BC_BLOCK_MAX);
    if (!bytes) {
      cr_assert_eq(small + large, 0u, "budget %llu has sets but no area", (unsigned long long)budget);
      continue;
    }
    void *a = tu_shared_alloc(bytes);
    cr_assert_not_null(a);
    bc_init(a, bytes);
    struct bc_stats st = stats(a);
    cr_assert_eq(st.capacity_blocks, (small + large) * BC_WAYS,
                 "budget %llu (area %zu): %llu blocks, want %llu small and %llu large sets' worth",
                 (unsigned long long)budget, bytes, (unsigned long long)st.capacity_blocks,
                 (unsigned long long)small, (unsigned long long)large);
    if (large) {
      bc_insert(a, 1, 0, blk, sizeof blk, 1, NULL);
      uint8_t out[BC_BLOCK_MAX];
      size_t len = 0;
      cr_assert_eq(bc_lookup(a, 1, 0, out, sizeof out, &len), 1, "budget %llu: a 16 KiB block is cached",
                   (unsigned long long)budget);
    }
    tu_shared_free(a, bytes);
  }
}
