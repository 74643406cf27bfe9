/*
** test_wbuf.c — a transaction's private write buffer (src/wbuf.h): lookups
** through the hash index, overwrites and deletes, key order for commit and
** iterators, and the promise that returned bytes stay valid until the buffer
** is freed. Process-local memory only: no database needed.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skiplist.h"
#include "wbuf.h"

static struct wbuf wb;

static void setup(void) { wbuf_init(&wb); }
static void teardown(void) { wbuf_free(&wb); }

TestSuite(wbuf, .init = setup, .fini = teardown, .timeout = 60);

static void put(const char *k, const char *v)
{
  int rc = wbuf_put(&wb, k, (uint32_t)strlen(k), v, (uint32_t)strlen(v), 0);
  cr_assert_eq(rc, 0, "wbuf_put(%s) failed", k);
}

static void del(const char *k)
{
  int rc = wbuf_put(&wb, k, (uint32_t)strlen(k), NULL, 0, 1);
  cr_assert_eq(rc, 0, "wbuf_put(%s, tombstone) failed", k);
}

static const struct wb_entry *get(const char *k) { return wbuf_get(&wb, k, (uint32_t)strlen(k)); }

static void expect(const char *k, const char *v)
{
  const struct wb_entry *e = get(k);
  cr_assert_not_null(e, "key %s missing", k);
  cr_assert_eq(e->tombstone, 0, "key %s is a tombstone", k);
  cr_assert(e->klen == strlen(k) && memcmp(e->key, k, e->klen) == 0, "entry of %s has key %.*s", k, (int)e->klen,
            (const char *)e->key);
  cr_assert(e->vlen == strlen(v) && memcmp(e->val, v, e->vlen) == 0, "key %s = %.*s, want %s", k, (int)e->vlen,
            (const char *)e->val, v);
}

Test(wbuf, empty)
{
  cr_assert_null(get("nothing"), "empty buffer found a key");
  const uint32_t *order = wbuf_sorted(&wb);
  cr_assert_not_null(order, "wbuf_sorted of an empty buffer returned NULL");
  cr_assert_eq(wb.n, 0, "empty buffer has %zu entries", wb.n);
}

Test(wbuf, put_get_overwrite_delete)
{
  put("alpha", "1");
  put("beta", "22");
  put("gamma", "333");
  expect("alpha", "1");
  expect("beta", "22");
  expect("gamma", "333");
  cr_assert_null(get("delta"), "absent key found");
  cr_assert_null(get("alph"), "prefix of a key found");
  cr_assert_null(get("alphaa"), "extension of a key found");
  cr_assert_eq(wb.n, 3, "3 keys, n = %zu", wb.n);

  put("beta", "overwritten");
  expect("beta", "overwritten");
  cr_assert_eq(wb.n, 3, "overwrite added an entry (n = %zu)", wb.n);

  del("alpha");
  const struct wb_entry *e = get("alpha");
  cr_assert_not_null(e, "a deleted key must stay in the buffer as a tombstone");
  cr_assert_eq(e->tombstone, 1, "delete did not make a tombstone");
  cr_assert_eq(e->vlen, 0, "tombstone has vlen %u", e->vlen);
  cr_assert_eq(wb.n, 3, "delete of a buffered key added an entry");

  del("never-put");
  e = get("never-put");
  cr_assert(e && e->tombstone, "delete of an unbuffered key must record a tombstone");
  cr_assert_eq(wb.n, 4, "n = %zu", wb.n);

  put("alpha", "back");
  expect("alpha", "back");
  cr_assert_eq(wb.n, 4, "put after delete added an entry");
  /* what a commit would write (the 1 GiB limit, user_bytes): the entries as
  ** they stand, not every value ever buffered */
  size_t want = strlen("alpha") + strlen("back") + strlen("beta") + strlen("overwritten") + strlen("gamma") +
                strlen("333") + strlen("never-put");
  cr_assert_eq(wb.bytes, want, "bytes %zu, the entries hold %zu", wb.bytes, want);
}

Test(wbuf, binary_keys_and_values)
{
  static const uint8_t k1[] = { 0x00 }, k2[] = { 0x00, 0x00 }, k3[] = { 0xff, 0x00, 0xff };
  static const uint8_t v[] = { 0x00, 0xff, 0x00, 0x7f };
  cr_assert_eq(wbuf_put(&wb, k1, 1, v, 4, 0), 0, "put k1");
  cr_assert_eq(wbuf_put(&wb, k2, 2, v, 2, 0), 0, "put k2");
  cr_assert_eq(wbuf_put(&wb, k3, 3, v + 1, 3, 0), 0, "put k3");
  const struct wb_entry *e = wbuf_get(&wb, k1, 1);
  cr_assert(e && e->vlen == 4 && memcmp(e->val, v, 4) == 0, "k1");
  e = wbuf_get(&wb, k2, 2);
  cr_assert(e && e->vlen == 2 && memcmp(e->val, v, 2) == 0, "k2 (k1 is its prefix)");
  e = wbuf_get(&wb, k3, 3);
  cr_assert(e && e->vlen == 3 && memcmp(e->val, v + 1, 3) == 0, "k3");
  cr_assert_null(wbuf_get(&wb, k3, 2), "prefix of k3 found");
}

Test(wbuf, zero_length_values)
{
  cr_assert_eq(wbuf_put(&wb, "empty", 5, "", 0, 0), 0, "put empty value");
  cr_assert_eq(wbuf_put(&wb, "nullval", 7, NULL, 0, 0), 0, "put NULL value of length 0");
  const struct wb_entry *e = get("empty");
  cr_assert(e && !e->tombstone && e->vlen == 0, "empty value must be a present key with vlen 0");
  cr_assert_not_null(e->val, "empty value pointer is NULL");
  e = get("nullval");
  cr_assert(e && !e->tombstone && e->vlen == 0, "NULL/0 value must be a present key with vlen 0");
  put("empty", "now-full");
  expect("empty", "now-full");
  cr_assert_eq(wbuf_put(&wb, "empty", 5, "", 0, 0), 0, "overwrite with empty");
  e = get("empty");
  cr_assert(e && !e->tombstone && e->vlen == 0, "overwrite with an empty value");
}

#define NMANY 10000

static void key_of(int i, char *buf, size_t n) { snprintf(buf, n, "key-%07d-%x", i, (unsigned)(i * 2654435761u)); }

Test(wbuf, index_grows_to_10000_keys)
{
  char k[40], v[40];
  for (int i = 0; i < NMANY; i++) {
    key_of(i, k, sizeof k);
    snprintf(v, sizeof v, "value-%d", i);
    put(k, v);
    cr_assert_geq(wb.index_cap, 2 * wb.n, "index over half full: cap %zu, n %zu", wb.index_cap, wb.n);
    cr_assert_eq(wb.index_cap & (wb.index_cap - 1), 0, "index_cap %zu not a power of two", wb.index_cap);
    if (i % 997 == 0)   /* early keys stay findable across every growth */
      for (int j = 0; j <= i; j += 101) {
        char kk[40], vv[40];
        key_of(j, kk, sizeof kk);
        snprintf(vv, sizeof vv, "value-%d", j);
        expect(kk, vv);
      }
  }
  cr_assert_eq(wb.n, NMANY, "n = %zu", wb.n);
  for (int i = 0; i < NMANY; i++) {
    key_of(i, k, sizeof k);
    snprintf(v, sizeof v, "value-%d", i);
    expect(k, v);
  }
  for (int i = NMANY; i < NMANY + 1000; i++) {
    key_of(i, k, sizeof k);
    cr_assert_null(get(k), "absent key %s found", k);
  }
  /* overwrite all; still one entry each */
  for (int i = 0; i < NMANY; i += 3) {
    key_of(i, k, sizeof k);
    snprintf(v, sizeof v, "second-%d", i);
    put(k, v);
  }
  cr_assert_eq(wb.n, NMANY, "overwrites added entries: n = %zu", wb.n);
  for (int i = 0; i < NMANY; i++) {
    key_of(i, k, sizeof k);
    snprintf(v, sizeof v, i % 3 ? "value-%d" : "second-%d", i);
    expect(k, v);
  }
}

Test(wbuf, sorted_order_last_write_wins)
{
  /* 3000 writes over 1000 distinct keys (random order, repeats, deletes) */
  enum { NK = 1000, NW = 3000 };
  static char last[NK][32];
  static int state[NK];   /* 0 unwritten, 1 put, 2 deleted */
  uint64_t x = 88172645463325252ull;
  for (int w = 0; w < NW; w++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int i = (int)(x % NK);
    char k[16];
    snprintf(k, sizeof k, "%d", i * 7);   /* decimal strings: byte order != numeric order */
    if ((x >> 20) % 5 == 0) {
      del(k);
      state[i] = 2;
    } else {
      snprintf(last[i], sizeof last[i], "w%d", w);
      put(k, last[i]);
      state[i] = 1;
    }
  }
  size_t distinct = 0;
  for (int i = 0; i < NK; i++)
    distinct += state[i] != 0;
  cr_assert_eq(wb.n, distinct, "n = %zu, distinct keys written = %zu", wb.n, distinct);

  const uint32_t *order = wbuf_sorted(&wb);
  cr_assert_not_null(order, "wbuf_sorted returned NULL");
  cr_assert_eq(wbuf_sorted(&wb), order, "sorting again without writes should reuse the order");
  static char seen[NK];
  for (size_t j = 0; j < wb.n; j++) {
    cr_assert_lt(order[j], wb.n, "order[%zu] = %u out of range", j, order[j]);
    const struct wb_entry *e = &wb.ents[order[j]];
    if (j) {
      const struct wb_entry *p = &wb.ents[order[j - 1]];
      cr_assert_lt(sl_compare(p->key, p->klen, e->key, e->klen), 0, "order not strictly increasing at %zu", j);
    }
    char k[16];
    cr_assert_lt(e->klen, sizeof k, "key too long");
    memcpy(k, e->key, e->klen);
    k[e->klen] = 0;
    int i = atoi(k) / 7;
    cr_assert(i >= 0 && i < NK && !seen[i], "key %s listed twice or unknown", k);
    seen[i] = 1;
    if (state[i] == 2)
      cr_assert(e->tombstone, "key %s was last deleted but is not a tombstone", k);
    else
      cr_assert(!e->tombstone && e->vlen == strlen(last[i]) && memcmp(e->val, last[i], e->vlen) == 0,
                "key %s: value %.*s, last write was %s", k, (int)e->vlen, (const char *)e->val, last[i]);
  }
  /* a new write invalidates the order; the next sort includes it */
  put("0000", "new");
  order = wbuf_sorted(&wb);
  cr_assert_not_null(order, "re-sort");
  cr_assert_eq(wb.n, distinct + 1, "n after a new key");
  int found = 0;
  for (size_t j = 1; j < wb.n; j++) {
    const struct wb_entry *p = &wb.ents[order[j - 1]], *e = &wb.ents[order[j]];
    cr_assert_lt(sl_compare(p->key, p->klen, e->key, e->klen), 0, "re-sorted order broken at %zu", j);
  }
  for (size_t j = 0; j < wb.n; j++)
    found += wb.ents[order[j]].klen == 4 && memcmp(wb.ents[order[j]].key, "0000", 4) == 0;
  cr_assert_eq(found, 1, "new key appears %d times in the sorted order", found);
}

Test(wbuf, returned_values_stay_valid_after_overwrite)
{
  /* hold on to every value ever returned, then overwrite the key many times
  ** (filling several chunks) and check the old bytes did not move or change */
  enum { NV = 400 };
  static const uint8_t *held[NV];
  static char want[NV][64];
  for (int i = 0; i < NV; i++) {
    snprintf(want[i], sizeof want[i], "version %d of the one key, padded %0*d", i, i % 20, 0);
    put("the-key", want[i]);
    const struct wb_entry *e = get("the-key");
    cr_assert_not_null(e, "get after put %d", i);
    held[i] = e->val;
    /* interleave other keys and a big value so chunks turn over */
    char k[16];
    snprintf(k, sizeof k, "other%d", i);
    put(k, want[i]);
    if (i % 50 == 0) {
      static char big[40000];
      memset(big, 'A' + i % 26, sizeof big - 1);
      cr_assert_eq(wbuf_put(&wb, "big", 3, big, sizeof big - 1, 0), 0, "big put");
    }
  }
  for (int i = 0; i < NV; i++)
    cr_assert_eq(memcmp(held[i], want[i], strlen(want[i])), 0, "value returned by get #%d changed after overwrites",
                 i);
  del("the-key");
  for (int i = 0; i < NV; i++)
    cr_assert_eq(memcmp(held[i], want[i], strlen(want[i])), 0, "value #%d changed after the delete", i);
}

Test(wbuf, big_values_are_kept_whole)
{
  /* values above CHUNK_BYTES/4 (16 KiB) get chunks of their own; mix them
  ** with small writes so the small chunk keeps being used around them */
  static const size_t sizes[] = { 16 * 1024, 16 * 1024 + 1, 20000, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 7,
                                  100000, 1 << 20, 3 * 1024 * 1024 + 3 };
  enum { NS = sizeof sizes / sizeof sizes[0] };
  static uint8_t *vals[NS];
  for (size_t i = 0; i < NS; i++) {
    vals[i] = malloc(sizes[i]);
    cr_assert_not_null(vals[i], "malloc");
    for (size_t b = 0; b < sizes[i]; b++)
      vals[i][b] = (uint8_t)(b * 31 + i * 7 + (b >> 8));
    char k[16];
    snprintf(k, sizeof k, "big%zu", i);
    cr_assert_eq(wbuf_put(&wb, k, (uint32_t)strlen(k), vals[i], (uint32_t)sizes[i], 0), 0, "put %s", k);
    char sk[16], sv[16];
    snprintf(sk, sizeof sk, "small%zu", i);
    snprintf(sv, sizeof sv, "sv%zu", i);
    put(sk, sv);
  }
  /* the very first write big: no small chunk exists yet */
  struct wbuf w2;
  wbuf_init(&w2);
  cr_assert_eq(wbuf_put(&w2, "b", 1, vals[2], (uint32_t)sizes[2], 0), 0, "big first");
  cr_assert_eq(wbuf_put(&w2, "s", 1, "tiny", 4, 0), 0, "small after big first");
  const struct wb_entry *e2 = wbuf_get(&w2, "b", 1);
  cr_assert(e2 && e2->vlen == sizes[2] && memcmp(e2->val, vals[2], sizes[2]) == 0, "big-first value damaged");
  e2 = wbuf_get(&w2, "s", 1);
  cr_assert(e2 && e2->vlen == 4 && memcmp(e2->val, "tiny", 4) == 0, "small-after-big value damaged");
  wbuf_free(&w2);

  for (size_t i = 0; i < NS; i++) {
    char k[16];
    snprintf(k, sizeof k, "big%zu", i);
    const struct wb_entry *e = get(k);
    cr_assert_not_null(e, "%s missing", k);
    cr_assert_eq(e->vlen, sizes[i], "%s: vlen %u, want %zu", k, e->vlen, sizes[i]);
    cr_assert_eq(memcmp(e->val, vals[i], sizes[i]), 0, "%s: value bytes damaged", k);
    char sk[16], sv[16];
    snprintf(sk, sizeof sk, "small%zu", i);
    snprintf(sv, sizeof sv, "sv%zu", i);
    expect(sk, sv);
  }
  for (size_t i = 0; i < NS; i++)
    free(vals[i]);
}

Test(wbuf, free_then_reuse)
{
  put("a", "1");
  wbuf_free(&wb);
  cr_assert_eq(wb.n, 0, "free left entries");
  cr_assert_null(get("a"), "freed buffer still finds a key");
  wbuf_init(&wb);
  put("a", "2");
  expect("a", "2");
}

/* Keys written in key order are given back as written, without a sort; one
** key out of place at the very end, or in the middle, is sorted in. */
static void expect_order(const char *const *want, size_t n, const char *ctx)
{
  const uint32_t *order = wbuf_sorted(&wb);
  cr_assert_not_null(order, "%s: wbuf_sorted", ctx);
  cr_assert_eq(wb.n, n, "%s: %zu entries", ctx, wb.n);
  for (size_t j = 0; j < n; j++) {
    const struct wb_entry *e = &wb.ents[order[j]];
    cr_assert(e->klen == strlen(want[j]) && !memcmp(e->key, want[j], e->klen), "%s: position %zu holds %.*s, want %s",
              ctx, j, (int)e->klen, (const char *)e->key, want[j]);
  }
}

Test(wbuf, keys_written_in_order_or_nearly)
{
  static const char *const sorted[] = { "a", "ab", "b", "ba", "c", "d" };
  for (size_t i = 0; i < 6; i++)
    put(sorted[i], "v");
  expect_order(sorted, 6, "written in order");
  put("0", "v");                   /* now the last key belongs first */
  static const char *const last_first[] = { "0", "a", "ab", "b", "ba", "c", "d" };
  expect_order(last_first, 7, "the last key out of place");
  put("bb", "v");                  /* and one in the middle */
  static const char *const middle[] = { "0", "a", "ab", "b", "ba", "bb", "c", "d" };
  expect_order(middle, 8, "a key out of place in the middle");
}

/* A reset buffer holds nothing of its last use, whether it kept its memory
** (a few keys) or gave it back (thousands, over the kept sizes), and works
** as a fresh one: new keys, their order, values in the kept chunk. */
static void reset_and_reuse(size_t nkeys)
{
  char k[32], v[32];
  for (size_t i = 0; i < nkeys; i++) {
    snprintf(k, sizeof k, "old%06zu", i);
    put(k, "stale");
  }
  wbuf_sorted(&wb);
  wbuf_reset(&wb);
  cr_assert_eq(wb.n, 0, "reset after %zu keys left %zu entries", nkeys, wb.n);
  cr_assert_eq(wb.bytes, 0, "reset after %zu keys left %zu bytes counted", nkeys, wb.bytes);
  for (size_t i = 0; i < nkeys; i++) {
    snprintf(k, sizeof k, "old%06zu", i);
    cr_assert_null(get(k), "reset after %zu keys still finds %s", nkeys, k);
  }
  for (size_t i = 3; i-- > 0;) {
    snprintf(k, sizeof k, "new%zu", i);
    snprintf(v, sizeof v, "fresh%zu", i);
    put(k, v);
  }
  const char *const want[] = { "new0", "new1", "new2" };
  expect_order(want, 3, "after reset");
  expect("new1", "fresh1");
  cr_assert_null(get("old000000"), "a key of the last use came back after new puts");
}

Test(wbuf, reset_forgets_small_and_large_buffers)
{
  reset_and_reuse(5);      /* keeps its arrays and chunk */
  wbuf_reset(&wb);
  reset_and_reuse(5000);   /* over the kept sizes: arrays and chunks freed */
  wbuf_reset(&wb);
  reset_and_reuse(0);
}

/* wbuf_reset clears a sparse index entry by entry (clear_index): every slot
** must be empty afterwards, including those of entries that collided and
** sit past their home slot. A slot left behind is never cleared again: the
** index fills with stale entries over transactions until find_slot finds no
** free slot and probes forever. Only emptiness is checked here (a lookup of
** an empty buffer never reads the index). Rounds of 1 to 12 keys, one key
** written twice, cover the entry-by-entry clear (n * 8 <= 64) and the memset. */
Test(wbuf, reset_empties_every_index_slot)
{
  char k[32];
  unsigned displaced = 0;
  for (unsigned round = 0; round < 400; round++) {
    unsigned nkeys = 1 + round % 12;
    for (unsigned i = 0; i < nkeys; i++) {
      snprintf(k, sizeof k, "r%u-k%u", round, i);
      put(k, "v");
    }
    snprintf(k, sizeof k, "r%u-k0", round);
    put(k, "again");   /* an overwrite adds no entry */
    cr_assert_eq(wb.n, nkeys, "round %u: %zu entries for %u keys", round, wb.n, nkeys);
    for (size_t h = 0; h < wb.index_cap; h++)
      displaced += wb.index[h] && (wb.ents[wb.index[h] - 1].hash & (wb.index_cap - 1)) != h;
    wbuf_reset(&wb);
    cr_assert_not_null(wb.index, "a small buffer keeps its index");
    for (size_t h = 0; h < wb.index_cap; h++)
      cr_assert_eq(wb.index[h], 0, "round %u (%u keys): slot %zu still holds entry %u after the reset", round,
                   nkeys, h, wb.index[h]);
  }
  cr_assert_gt(displaced, 20u, "only %u entries collided: the probe past a home slot went untested", displaced);
}
