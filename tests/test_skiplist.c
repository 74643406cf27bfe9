/*
** test_skiplist.c — the lock-free, insert-only memtable skiplist (shm/skiplist.h).
**
** The skiplist is driven directly on a real region: a database is opened with
** the public API (small options) and the tests work in a spare arena (one that
** is FREE, hence in no transaction's view), laid out with sl_init. Threads,
** never fork(): the suite also runs under ThreadSanitizer.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <stdatomic.h>

#include "arena.h"
#include "internal.h"
#include "skiplist.h"
#include "testutil.h"

/* No daemon: it gives the pages of FREE arenas that hold any back to the
** system (arena_release_spares), and the tests write into FREE arenas. */
TestSuite(skiplist, .init = tu_setup_without_daemon, .fini = tu_teardown, .timeout = 120);

static sochdb *open_db(size_t memtable_bytes) { return tu_open(64u << 20, memtable_bytes, 50); }

/* A FREE arena (in nobody's view), freshly laid out as an empty skiplist. */
static uint32_t scratch_memtable(sochdb *db)
{
  shm_region *r = &db->region;
  uint32_t n = r->hdr->n_memtables;
  cr_assert_geq(n, 2u, "region has %u memtables", n);
  uint32_t mt = n - 1;
  cr_assert_eq(mt_state_of(mt_load(arena_memtable(r, mt))), MT_FREE, "arena %u is not free", mt);
  sl_init(r, mt);
  return mt;
}

static int sign(int x) { return (x > 0) - (x < 0); }

/* A point lookup through the hash index, as a get makes it. */
static uint64_t lookup(const shm_region *r, uint32_t mt, const uint8_t *key, uint32_t klen)
{
  return sl_lookup(r, mt, key, klen, sl_hash(key, klen));
}

/* Deterministic xorshift so a failure can be reproduced. */
static uint64_t rnd(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Key of number i: 8..24 bytes, binary (contains 0x00 and 0xff), unique 8-byte prefix. */
static uint32_t make_key(uint64_t i, uint8_t *out)
{
  uint64_t s = i * 0x9e3779b97f4a7c15ull + 0x1234567ull;
  uint32_t len = 8 + (uint32_t)(rnd(&s) % 17);   /* 8..24 */
  for (uint32_t b = 0; b < 8; b++)                 /* unique prefix: i big-endian, scrambled */
    out[b] = (uint8_t)(((i * 0x2545f4914f6cdd1dull) >> (56 - 8 * b)) & 0xff);
  for (uint32_t b = 8; b < len; b++) {
    uint64_t v = rnd(&s);
    out[b] = (v & 3) == 0 ? 0x00 : (v & 3) == 1 ? 0xff : (uint8_t)(v >> 8);
  }
  return len;
}

/* Walk level 0 from the start: assert strictly increasing keys, return the count. */
static uint64_t check_order(const shm_region *r, uint32_t mt)
{
  uint64_t count = 0;
  const struct sl_node *prev = NULL;
  for (uint64_t n = sl_seek(r, mt, NULL, 0); n; n = sl_next(r, n)) {
    const struct sl_node *node = shm_at(r, n);
    cr_assert(node->klen >= 1 && node->klen <= SOCHDB_MAX_KEY, "node %llu has klen %u",
              (unsigned long long)n, node->klen);
    cr_assert(node->height >= 1 && node->height <= SL_MAX_HEIGHT, "node height %u", node->height);
    if (prev)
      cr_assert_lt(sl_compare(sl_key(prev), prev->klen, sl_key(node), node->klen), 0,
                   "level 0 not strictly increasing after %llu nodes", (unsigned long long)count);
    prev = node;
    count++;
  }
  return count;
}

/* Every upper level is sorted, and each of its nodes is tall enough to be on it. */
static void check_upper_levels(const shm_region *r, uint32_t mt)
{
  uint64_t head = arena_memtable(r, mt)->arena_off;
  for (int level = 1; level < SL_MAX_HEIGHT; level++) {
    const struct sl_node *prev = NULL;
    const struct sl_node *h = shm_at(r, head);
    for (uint64_t n = shm_ref_off(r, atomic_load(&h->next[level])); n;) {
      const struct sl_node *node = shm_at(r, n);
      cr_assert_gt(node->height, level, "node of height %u linked on level %d", node->height, level);
      cr_assert_eq(sl_find(r, mt, sl_key(node), node->klen), n, "level-%d node not the level-0 node of its key",
                   level);
      if (prev)
        cr_assert_lt(sl_compare(sl_key(prev), prev->klen, sl_key(node), node->klen), 0,
                     "level %d not strictly increasing", level);
      prev = node;
      n = shm_ref_off(r, atomic_load(&node->next[level]));
    }
  }
}

/* ------------------------------------------------------------ compare */

Test(skiplist, compare_orders_bytes_then_length)
{
  static const struct {
    const char *a;
    uint32_t alen;
    const char *b;
    uint32_t blen;
    int want;
  } cases[] = {
    { "a", 1, "a", 1, 0 },
    { "a", 1, "b", 1, -1 },
    { "b", 1, "a", 1, 1 },
    { "a", 1, "ab", 2, -1 },          /* a prefix sorts first */
    { "ab", 2, "a", 1, 1 },
    { "abc", 3, "abd", 3, -1 },
    { "abd", 3, "abc", 3, 1 },
    { "abc", 3, "ab\xff", 3, -1 },    /* bytes are unsigned: 0xff > 'c' */
    { "\x7f", 1, "\x80", 1, -1 },
    { "\xff", 1, "\x00", 1, 1 },
    { "\x00", 1, "\x00\x00", 2, -1 }, /* NUL bytes are ordinary bytes */
    { "a\x00", 2, "a", 1, 1 },
    { "a\x00", 2, "a\x01", 2, -1 },
    { "a\x00z", 3, "a\x00z", 3, 0 },
    { "\xff\xff", 2, "\xff\xff\xff", 3, -1 },
    { "\x00\xff", 2, "\x01", 1, -1 },  /* the first byte decides, not the length */
    { "zz", 2, "zzz", 0, 1 },         /* vs the empty key */
    { "zz", 0, "zzz", 0, 0 },
    /* compared 8 bytes at a time up to 32 bytes: the first differing byte
    ** decides, unsigned, whichever word it is in and wherever in the word */
    { "abcdefgh\x01", 9, "abcdefgi\x00", 9, -1 },
    { "\x01" "bcdefgh", 8, "\x00" "bcdefgz", 8, 1 },
    { "abcdefgh", 8, "abcdefgh\x00", 9, -1 },
    { "0123456789abcdef", 16, "0123456789abcdeg", 16, -1 },
    { "0123456789abcde\xff", 16, "0123456789abcde\x01", 16, 1 },
    { "01234567\x80", 9, "01234567\x7f\xff", 10, 1 },
    { "0123456789abcdef0123456789abcdef", 32, "0123456789abcdef0123456789abcdef", 32, 0 },
    { "0123456789abcdef0123456789abcdeF", 32, "0123456789abcdef0123456789abcdef", 32, -1 },
    { "0123456789abcdef0123456789abcdef!", 33, "0123456789abcdef0123456789abcdef", 32, 1 },
    { "0123456789abcdef0123456789abcdef0123\xfe", 37, "0123456789abcdef0123456789abcdef0123\xff", 37, -1 },
    { "0123456789abcdeX0123456789abcdef0123", 36, "0123456789abcdef0123456789abcdef0123", 36, -1 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = sign(sl_compare(cases[i].a, cases[i].alen, cases[i].b, cases[i].blen));
    cr_assert_eq(got, cases[i].want, "case %zu: sl_compare sign %d, want %d", i, got, cases[i].want);
    int rev = sign(sl_compare(cases[i].b, cases[i].blen, cases[i].a, cases[i].alen));
    cr_assert_eq(rev, -cases[i].want, "case %zu reversed: sign %d, want %d", i, rev, -cases[i].want);
  }
}

/* ------------------------------------------------- single-threaded */

Test(skiplist, empty_list)
{
  sochdb *db = open_db(1u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  cr_assert_eq(sl_seek(r, mt, NULL, 0), 0, "empty list has a first node");
  cr_assert_eq(sl_seek(r, mt, "a", 1), 0, "seek in an empty list found a node");
  cr_assert_eq(sl_find(r, mt, "a", 1), 0, "find in an empty list found a node");
  tu_close();
}

#define NRANDOM 5000

Test(skiplist, insert_find_many_random_keys)
{
  sochdb *db = open_db(4u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  static uint64_t node_of[NRANDOM];
  uint8_t key[32];

  /* insert in a scrambled order: the even-numbered keys only */
  for (uint64_t j = 0; j < NRANDOM; j++) {
    uint64_t i = (j * 7919) % NRANDOM;
    if (i % 2)
      continue;
    uint32_t klen = make_key(i, key);
    uint64_t n = sl_find_or_insert(r, mt, key, klen);
    cr_assert_neq(n, 0, "insert of key %llu failed (arena full?)", (unsigned long long)i);
    const struct sl_node *node = shm_at(r, n);
    cr_assert_eq(node->klen, klen, "node klen %u, want %u", node->klen, klen);
    cr_assert_eq(memcmp(sl_key(node), key, klen), 0, "node key bytes differ for key %llu", (unsigned long long)i);
    cr_assert_eq(atomic_load(&node->versions), 0, "a new node already has versions");
    cr_assert_eq(n % 8, 0, "node offset %llu not 8-aligned", (unsigned long long)n);
    node_of[i] = n;
  }
  for (uint64_t i = 0; i < NRANDOM; i++) {
    uint32_t klen = make_key(i, key);
    uint64_t n = sl_find(r, mt, key, klen);
    if (i % 2 == 0)
      cr_assert_eq(n, node_of[i], "sl_find(key %llu) = %llu, inserted at %llu", (unsigned long long)i,
                   (unsigned long long)n, (unsigned long long)node_of[i]);
    else
      cr_assert_eq(n, 0, "sl_find found absent key %llu", (unsigned long long)i);
    cr_assert_eq(lookup(r, mt, key, klen), n, "the hash index disagrees with the list on key %llu",
                 (unsigned long long)i);
    /* an absent key one byte longer / shorter than a present one */
    key[klen] = 0x00;
    cr_assert_eq(sl_find(r, mt, key, klen + 1), 0, "found the extension of key %llu", (unsigned long long)i);
    cr_assert_eq(sl_find(r, mt, key, klen - 1), 0, "found a prefix of key %llu", (unsigned long long)i);
    cr_assert_eq(lookup(r, mt, key, klen + 1), 0, "the index found the extension of key %llu", (unsigned long long)i);
    cr_assert_eq(lookup(r, mt, key, klen - 1), 0, "the index found a prefix of key %llu", (unsigned long long)i);
  }
  cr_assert(sl_index_complete(r, mt), "inserts that all finished left the index incomplete");
  cr_assert_eq(check_order(r, mt), NRANDOM / 2, "level 0 does not hold exactly the inserted keys");
  check_upper_levels(r, mt);
  tu_close();
}

Test(skiplist, duplicate_insert_returns_same_node)
{
  sochdb *db = open_db(1u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  uint64_t a = sl_find_or_insert(r, mt, "dup", 3);
  cr_assert_neq(a, 0, "first insert failed");
  uint64_t used = atomic_load(&arena_memtable(r, mt)->used);
  for (int i = 0; i < 10; i++) {
    uint64_t b = sl_find_or_insert(r, mt, "dup", 3);
    cr_assert_eq(b, a, "re-insert %d gave node %llu, first was %llu", i, (unsigned long long)b,
                 (unsigned long long)a);
  }
  cr_assert_eq(atomic_load(&arena_memtable(r, mt)->used), used,
               "re-inserting an existing key allocated arena space");
  uint64_t c = sl_find_or_insert(r, mt, "dup\0", 4);
  cr_assert(c != 0 && c != a, "\"dup\\0\" must be a different key from \"dup\"");
  cr_assert_eq(check_order(r, mt), 2, "list should hold 2 keys");
  tu_close();
}

Test(skiplist, seek_lands_on_next_greater)
{
  sochdb *db = open_db(1u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  /* keys 10, 20, ..., 990 as 4-digit strings */
  char k[8];
  for (int i = 990; i >= 10; i -= 10) {
    snprintf(k, sizeof k, "%04d", i);
    cr_assert_neq(sl_find_or_insert(r, mt, k, 4), 0, "insert %s", k);
  }
  for (int i = 0; i <= 1000; i++) {
    snprintf(k, sizeof k, "%04d", i);
    uint64_t n = sl_seek(r, mt, k, 4);
    int want = i <= 10 ? 10 : ((i + 9) / 10) * 10;
    if (want > 990) {
      cr_assert_eq(n, 0, "seek(%s) past the last key found a node", k);
      continue;
    }
    cr_assert_neq(n, 0, "seek(%s) found nothing", k);
    const struct sl_node *node = shm_at(r, n);
    char wk[8];
    snprintf(wk, sizeof wk, "%04d", want);
    cr_assert(node->klen == 4 && memcmp(sl_key(node), wk, 4) == 0, "seek(%s) landed on %.*s, want %s", k,
              (int)node->klen, (const char *)sl_key(node), wk);
  }
  /* prefixes and extensions */
  uint64_t n = sl_seek(r, mt, "05", 2);   /* "05" < "0500" */
  cr_assert(n && memcmp(sl_key(shm_at(r, n)), "0500", 4) == 0, "seek(\"05\") should land on 0500");
  n = sl_seek(r, mt, "0500\x00", 5);      /* just after 0500 */
  cr_assert(n && memcmp(sl_key(shm_at(r, n)), "0510", 4) == 0, "seek(\"0500\\0\") should land on 0510");
  n = sl_seek(r, mt, "\x00", 1);
  cr_assert(n && memcmp(sl_key(shm_at(r, n)), "0010", 4) == 0, "seek(\"\\0\") should land on the first key");
  cr_assert_eq(sl_seek(r, mt, "\xff", 1), 0, "seek(\"\\xff\") should be past every key");
  n = sl_seek(r, mt, NULL, 0);
  cr_assert(n && memcmp(sl_key(shm_at(r, n)), "0010", 4) == 0, "seek(NULL) should give the first key");
  tu_close();
}

Test(skiplist, binary_keys_order)
{
  sochdb *db = open_db(1u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  static const struct { const char *k; uint32_t len; } keys[] = {
    { "\xff", 1 }, { "\x00", 1 }, { "\x00\x00", 2 }, { "\x00\xff", 2 }, { "\x01", 1 },
    { "\x7f", 1 }, { "\x80", 1 }, { "\xff\x00", 2 }, { "\xff\xff\xff", 3 }, { "a\x00b", 3 }, { "a", 1 },
  };
  /* expected order, by index into keys[] */
  static const int sorted[] = { 1, 2, 3, 4, 10, 9, 5, 6, 0, 7, 8 };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    cr_assert_neq(sl_find_or_insert(r, mt, keys[i].k, keys[i].len), 0, "insert key %zu", i);
  size_t i = 0;
  for (uint64_t n = sl_seek(r, mt, NULL, 0); n; n = sl_next(r, n), i++) {
    cr_assert_lt(i, sizeof sorted / sizeof sorted[0], "more nodes than keys");
    const struct sl_node *node = shm_at(r, n);
    int w = sorted[i];
    cr_assert(node->klen == keys[w].len && memcmp(sl_key(node), keys[w].k, keys[w].len) == 0,
              "position %zu holds the wrong key (want keys[%d])", i, w);
  }
  cr_assert_eq(i, sizeof sorted / sizeof sorted[0], "walked %zu nodes", i);
  tu_close();
}

Test(skiplist, full_arena_returns_zero)
{
  sochdb *db = open_db(1u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  struct shm_memtable *m = arena_memtable(r, mt);
  static uint8_t key[SOCHDB_MAX_KEY];
  uint64_t inserted = 0, first = 0;
  uint64_t limit = m->capacity / SOCHDB_MAX_KEY + 16;   /* bound: the arena must fill before this */
  int full = 0;
  for (uint64_t i = 0; i < limit; i++) {
    memset(key, 'k', sizeof key);
    memcpy(key, &i, sizeof i);
    uint64_t n = sl_find_or_insert(r, mt, key, sizeof key);
    if (!n) {
      full = 1;
      break;
    }
    const struct sl_node *node = shm_at(r, n);
    cr_assert(n >= m->arena_off &&
                  n + sl_node_bytes(node->height, node->klen) <=
                      m->arena_off + m->capacity,
              "node %llu (height %u) lies outside its arena", (unsigned long long)n, node->height);
    if (!first)
      first = n;
    inserted++;
  }
  cr_assert(full, "sl_find_or_insert never reported a full arena after %llu keys of 4 KiB",
            (unsigned long long)inserted);
  cr_assert_gt(inserted, 100, "only %llu 4-KiB keys fit in a 1 MiB arena", (unsigned long long)inserted);
  /* still consistent and usable for reads; existing keys found without allocating */
  cr_assert_eq(check_order(r, mt), inserted, "list lost or duplicated keys when the arena filled");
  uint64_t zero = 0;
  memset(key, 'k', sizeof key);
  memcpy(key, &zero, sizeof zero);
  cr_assert_eq(sl_find_or_insert(r, mt, key, sizeof key), first, "existing key not found in a full arena");
  cr_assert_eq(sl_find_or_insert(r, mt, "tiny-new-key", 12), 0, "a new key fit in a full arena?");
  cr_assert_eq(sl_find(r, mt, "tiny-new-key", 12), 0, "failed insert left a node behind");
  tu_close();
}

/* ------------------------------------------------------ bulk building */

static int cmp_key_numbers(const void *a, const void *b)
{
  uint8_t ka[64], kb[64];   /* make_key writes at most 24: 64 keeps gcc from seeing key_order's memcmp of over 32 bytes read past them */
  uint32_t la = make_key(*(const uint64_t *)a, ka), lb = make_key(*(const uint64_t *)b, kb);
  return sl_compare(ka, la, kb, lb);
}

/* Appending keys in order (sl_build_append, what recovery does) gives the
** list that inserting them would: every key found at its node, both lists
** walk in the same order, upper levels hold exactly the tall nodes; and
** the built list then takes ordinary inserts before, between and after its
** keys. */
Test(skiplist, bulk_build_matches_inserts)
{
  sochdb *db = open_db(4u << 20);
  shm_region *r = &db->region;
  uint32_t built = scratch_memtable(db);
  uint32_t inserted = built - 1;
  cr_assert_eq(mt_state_of(mt_load(arena_memtable(r, inserted))), MT_FREE, "arena %u is not free", inserted);
  sl_init(r, inserted);
  static uint64_t order[NRANDOM];
  static uint64_t node_of[NRANDOM];
  for (uint64_t i = 0; i < NRANDOM; i++)
    order[i] = 2 * i;                            /* even key numbers; the odd ones come later */
  qsort(order, NRANDOM, sizeof *order, cmp_key_numbers);
  struct sl_builder b;
  sl_build_begin(&b, r, built);
  uint8_t key[32];
  uint64_t heights[SL_MAX_HEIGHT + 1] = { 0 };
  for (uint64_t j = 0; j < NRANDOM; j++) {
    uint32_t klen = make_key(order[j], key);
    uint8_t height = sl_random_height();
    cr_assert(height >= 1 && height <= SL_MAX_HEIGHT, "height %u", height);
    heights[height]++;
    uint64_t node = arena_alloc(r, built, sl_node_bytes(height, klen));
    cr_assert_neq(node, 0, "arena full after %llu nodes", (unsigned long long)j);
    sl_build_append(&b, node, shm_at(r, node), key, klen, height, node);   /* any arena offset will do as a chain */
    node_of[j] = node;
    cr_assert_neq(sl_find_or_insert(r, inserted, key, klen), 0, "insert into the reference list");
  }
  cr_assert_gt(heights[2], 0, "no node of height 2 among %u", NRANDOM);
  cr_assert_eq(check_order(r, built), NRANDOM, "the built list does not hold exactly the appended keys");
  check_upper_levels(r, built);
  uint64_t a = sl_seek(r, built, NULL, 0), c = sl_seek(r, inserted, NULL, 0);
  for (uint64_t j = 0; j < NRANDOM; j++, a = sl_next(r, a), c = sl_next(r, c)) {
    const struct sl_node *x = shm_at(r, a), *y = shm_at(r, c);
    cr_assert_eq(a, node_of[j], "built node %llu out of place", (unsigned long long)j);
    cr_assert(x->klen == y->klen && !memcmp(sl_key(x), sl_key(y), x->klen), "lists differ at %llu",
              (unsigned long long)j);
    cr_assert_eq(sl_versions(r, x), a, "node %llu lost its version chain", (unsigned long long)j);
    uint32_t klen = make_key(order[j], key);
    cr_assert_eq(sl_find(r, built, key, klen), a, "sl_find of appended key %llu", (unsigned long long)j);
    cr_assert_eq(lookup(r, built, key, klen), a, "the index lacks appended key %llu", (unsigned long long)j);
  }
  cr_assert_eq(a, 0, "the built list is longer");
  cr_assert_eq(c, 0, "the inserted list is longer");
  for (uint64_t i = 1; i < 2 * NRANDOM + 2; i += 2) {   /* the odd keys: between and after */
    uint32_t klen = make_key(i, key);
    cr_assert_eq(sl_find(r, built, key, klen), 0, "key %llu found before its insert", (unsigned long long)i);
    cr_assert_eq(lookup(r, built, key, klen), 0, "the index found key %llu before its insert", (unsigned long long)i);
    uint64_t n = sl_find_or_insert(r, built, key, klen);
    cr_assert_neq(n, 0, "insert of %llu into the built list", (unsigned long long)i);
    cr_assert_eq(lookup(r, built, key, klen), n, "the index lacks inserted key %llu", (unsigned long long)i);
  }
  cr_assert_eq(check_order(r, built), 2 * NRANDOM + 1, "inserts into the built list lost keys");
  check_upper_levels(r, built);
  for (uint64_t j = 0; j < NRANDOM; j++) {
    uint32_t klen = make_key(order[j], key);
    cr_assert_eq(sl_find(r, built, key, klen), node_of[j], "appended key %llu moved", (unsigned long long)j);
  }
  tu_close();
}

/* ------------------------------------------------------ concurrency */

#define NTHREADS 4
#define NKEYS 4000           /* keys 0..NKEYS-1; each thread inserts a window of 2000 */
#define WINDOW 2000

struct ins_arg {
  shm_region *r;
  uint32_t mt;
  int id;
  pthread_barrier_t *start;
  uint64_t node[NKEYS];      /* node returned per key, 0 if this thread did not insert it */
  int failures;
};

static void *inserter(void *p)
{
  struct ins_arg *a = p;
  uint8_t key[32];
  pthread_barrier_wait(a->start);
  uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(a->id + 1);
  /* each thread's window overlaps its neighbours' by half; scrambled order */
  for (int j = 0; j < WINDOW; j++) {
    int i = (a->id * (NKEYS / NTHREADS) + (int)((uint64_t)j * 17 + (rnd(&s) % 2)) % WINDOW) % NKEYS;
    uint32_t klen = make_key((uint64_t)i, key);
    uint64_t n = sl_find_or_insert(a->r, a->mt, key, klen);
    if (!n)
      a->failures++;
    else if (a->node[i] && a->node[i] != n)
      a->failures++;       /* same thread, same key, two nodes */
    else
      a->node[i] = n;
  }
  return NULL;
}

/* Walks the list while the inserters run: order must hold at every instant,
** and every node reached must be complete (key bytes and links readable). */
struct walk_arg {
  shm_region *r;
  uint32_t mt;
  atomic_int *stop;
  pthread_barrier_t *start;
  int errors;
  long walks;
};

static void *walker(void *p)
{
  struct walk_arg *a = p;
  pthread_barrier_wait(a->start);
  uint8_t key[32];
  for (long w = 0; w < 100000 && !atomic_load(a->stop); w++) {
    const struct sl_node *prev = NULL;
    for (uint64_t n = sl_seek(a->r, a->mt, NULL, 0); n; n = sl_next(a->r, n)) {
      const struct sl_node *node = shm_at(a->r, n);
      if (node->klen < 8 || node->klen > 24 || node->height < 1 || node->height > SL_MAX_HEIGHT)
        a->errors++;
      else if (prev && sl_compare(sl_key(prev), prev->klen, sl_key(node), node->klen) >= 0)
        a->errors++;
      prev = node;
    }
    /* a node seen once is found by key from then on; through the index
    ** once its inserter said it is hashed */
    if (prev) {
      memcpy(key, sl_key(prev), prev->klen);
      if (sl_find(a->r, a->mt, key, prev->klen) != shm_off(a->r, prev))
        a->errors++;
      if (atomic_load_explicit(&prev->hashed, memory_order_acquire) &&
          lookup(a->r, a->mt, key, prev->klen) != shm_off(a->r, prev))
        a->errors++;
    }
    a->walks++;
  }
  return NULL;
}

Test(skiplist, concurrent_overlapping_inserts)
{
  sochdb *db = open_db(4u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  uint8_t key[32];
  for (int round = 0; round < 3; round++) {
    if (round) {
      sl_init(r, mt);   /* the arena reused: its pages still hold the last round's nodes and buckets */
      for (int i = 0; i < NKEYS; i++) {
        uint32_t klen = make_key((uint64_t)i, key);
        cr_assert_eq(lookup(r, mt, key, klen), 0, "round %d: a reused arena's index still finds key %d", round, i);
      }
    }
    static struct ins_arg args[NTHREADS];
    pthread_t th[NTHREADS], wt;
    pthread_barrier_t start;
    atomic_int stop = 0;
    pthread_barrier_init(&start, NULL, NTHREADS + 1);
    struct walk_arg wa = { r, mt, &stop, &start, 0, 0 };
    cr_assert_eq(pthread_create(&wt, NULL, walker, &wa), 0, "pthread_create walker");
    for (int t = 0; t < NTHREADS; t++) {
      memset(&args[t], 0, sizeof args[t]);
      args[t].r = r;
      args[t].mt = mt;
      args[t].id = t;
      args[t].start = &start;
      cr_assert_eq(pthread_create(&th[t], NULL, inserter, &args[t]), 0, "pthread_create");
    }
    for (int t = 0; t < NTHREADS; t++)
      pthread_join(th[t], NULL);
    atomic_store(&stop, 1);
    pthread_join(wt, NULL);
    pthread_barrier_destroy(&start);
    cr_assert_eq(wa.errors, 0, "round %d: a concurrent walker saw %d inconsistencies", round, wa.errors);

    uint64_t expected = 0;
    for (int i = 0; i < NKEYS; i++) {
      uint64_t agreed = 0;
      for (int t = 0; t < NTHREADS; t++) {
        cr_assert_eq(args[t].failures, 0, "round %d thread %d: %d failed inserts", round, t, args[t].failures);
        if (!args[t].node[i])
          continue;
        if (!agreed)
          agreed = args[t].node[i];
        cr_assert_eq(args[t].node[i], agreed, "round %d key %d: threads got different nodes (%llu vs %llu)",
                     round, i, (unsigned long long)args[t].node[i], (unsigned long long)agreed);
      }
      uint32_t klen = make_key((uint64_t)i, key);
      uint64_t n = sl_find(r, mt, key, klen);
      cr_assert_eq(n, agreed, "round %d key %d: sl_find gives %llu, inserters got %llu", round, i,
                   (unsigned long long)n, (unsigned long long)agreed);
      cr_assert_eq(lookup(r, mt, key, klen), agreed, "round %d key %d: the index disagrees", round, i);
      if (agreed)
        expected++;
    }
    cr_assert_gt(expected, NKEYS / 2, "round %d: too few keys inserted (%llu)", round, (unsigned long long)expected);
    cr_assert_eq(check_order(r, mt), expected, "round %d: level 0 holds a key twice or lost one", round);
    check_upper_levels(r, mt);
  }
  tu_close();
}

/* ------------------------------------------------------ fingers */

/* Inserts in key order through a finger (what a commit does) build the list
** that plain inserts build; finger lookups find what sl_find finds, in order,
** out of order (a smaller key falls back to the head) and across memtables
** (a finger of another memtable is not used). */
Test(skiplist, finger_inserts_match_plain_inserts)
{
  sochdb *db = open_db(4u << 20);
  shm_region *r = &db->region;
  uint32_t a = scratch_memtable(db), b = a - 1;
  cr_assert_eq(mt_state_of(mt_load(arena_memtable(r, b))), MT_FREE, "arena %u is not free", b);
  sl_init(r, b);
  static uint64_t order[NRANDOM];
  for (uint64_t i = 0; i < NRANDOM; i++)
    order[i] = 3 * i;                            /* multiples of 3; the others stay absent */
  qsort(order, NRANDOM, sizeof *order, cmp_key_numbers);
  struct sl_finger f;
  sl_finger_reset(&f);
  uint8_t key[32];
  for (uint64_t j = 0; j < NRANDOM; j++) {
    uint32_t klen = make_key(order[j], key);
    /* the commit's way: the new node is left out of the hash index until
    ** sl_index_node; the same key again is found, and nothing is left out */
    int unindexed = 0;
    uint64_t n = sl_find_or_insert_finger(r, a, key, klen, sl_hash(key, klen), &f, &unindexed);
    cr_assert_neq(n, 0, "finger insert %llu", (unsigned long long)j);
    cr_assert_eq(unindexed, 1, "a new node was not reported unindexed");
    cr_assert_eq(sl_lookup(r, a, key, klen, sl_hash(key, klen)), 0, "an unindexed node was hashed");
    sl_index_node(r, a, n, sl_hash(key, klen));
    cr_assert_eq(sl_lookup(r, a, key, klen, sl_hash(key, klen)), n, "sl_index_node did not hash the node");
    unindexed = 0;
    cr_assert_eq(sl_find_or_insert_finger(r, a, key, klen, sl_hash(key, klen), &f, &unindexed), n,
                 "the same key again through the finger");
    cr_assert_eq(unindexed, 0, "a node found was reported unindexed");
    cr_assert_eq(sl_find(r, a, key, klen), n, "sl_find of a key inserted through a finger");
    cr_assert_neq(sl_find_or_insert(r, b, key, klen), 0, "plain insert %llu", (unsigned long long)j);
  }
  cr_assert_eq(check_order(r, a), NRANDOM, "finger inserts lost or duplicated keys");
  check_upper_levels(r, a);
  for (uint64_t x = sl_seek(r, a, NULL, 0), y = sl_seek(r, b, NULL, 0); x || y; x = sl_next(r, x), y = sl_next(r, y)) {
    cr_assert(x && y, "the lists differ in length");
    const struct sl_node *nx = shm_at(r, x), *ny = shm_at(r, y);
    cr_assert(nx->klen == ny->klen && !memcmp(sl_key(nx), sl_key(ny), nx->klen), "the lists differ");
  }
  /* finger lookups of every key number in key order: present and absent ones */
  static uint64_t all[3 * NRANDOM];
  for (uint64_t i = 0; i < 3 * NRANDOM; i++)
    all[i] = i;
  qsort(all, 3 * NRANDOM, sizeof *all, cmp_key_numbers);
  sl_finger_reset(&f);
  cr_assert_eq(sl_finger_at_end(r, &f), 0, "an empty finger is at no end");
  uint64_t last_present = 0;    /* in key order */
  for (uint64_t j = 0; j < 3 * NRANDOM; j++)
    if (all[j] % 3 == 0)
      last_present = j;
  for (uint64_t j = 0; j < 3 * NRANDOM; j++) {
    uint32_t klen = make_key(all[j], key);
    uint64_t want = sl_find(r, a, key, klen);
    cr_assert_eq(sl_find_finger(r, a, key, klen, &f), want, "finger find of key %llu", (unsigned long long)all[j]);
    cr_assert_eq(want != 0, all[j] % 3 == 0, "key %llu", (unsigned long long)all[j]);
    cr_assert_eq(sl_finger_at_end(r, &f), j >= last_present, "key %llu (%llu of %d in key order): at the end is %d",
                 (unsigned long long)all[j], (unsigned long long)j, 3 * NRANDOM, j >= last_present);
  }
  /* backwards (every lookup falls back to the head), and through a finger of the other memtable */
  for (uint64_t j = 3 * NRANDOM; j-- > 0;) {
    uint32_t klen = make_key(all[j], key);
    cr_assert_eq(sl_find_finger(r, a, key, klen, &f), sl_find(r, a, key, klen), "backwards %llu",
                 (unsigned long long)j);
    cr_assert_eq(sl_find_finger(r, b, key, klen, &f), sl_find(r, b, key, klen), "other memtable %llu",
                 (unsigned long long)j);
  }
  tu_close();
}

/* One finger used for finds and inserts in turn, in key order with strides
** of 1 to 40 key numbers: a lookup right after a fast-path hit (which moves
** only the finger's level-0 node) must still find the way through the upper
** levels it left behind, and inserts through it must link every level right. */
Test(skiplist, finger_after_fast_hits_finds_and_inserts)
{
  sochdb *db = open_db(4u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  static uint64_t all[3 * NRANDOM];
  for (uint64_t i = 0; i < 3 * NRANDOM; i++)
    all[i] = i;
  qsort(all, 3 * NRANDOM, sizeof *all, cmp_key_numbers);
  uint8_t key[32];
  for (uint64_t j = 0; j < 3 * NRANDOM; j += 2)   /* every other key, in key order */
    cr_assert_neq(sl_find_or_insert(r, mt, key, make_key(all[j], key)), 0, "insert %llu", (unsigned long long)j);
  struct sl_finger f;
  uint64_t x = 88172645463325252ull, inserted = 0;
  for (int round = 0; round < 4; round++) {
    sl_finger_reset(&f);
    for (uint64_t j = (uint64_t)round; j < 3 * NRANDOM;) {
      uint32_t klen = make_key(all[j], key);
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      if (x % 4 == 0) {              /* an insert through the finger */
        int had = sl_find(r, mt, key, klen) != 0;
        uint64_t n = sl_find_or_insert_finger(r, mt, key, klen, sl_hash(key, klen), &f, NULL);
        cr_assert_neq(n, 0, "finger insert of key %llu", (unsigned long long)j);
        cr_assert_eq(sl_find(r, mt, key, klen), n, "key %llu after its finger insert", (unsigned long long)j);
        inserted += !had;
      } else {
        cr_assert_eq(sl_find_finger(r, mt, key, klen, &f), sl_find(r, mt, key, klen), "finger find of key %llu",
                     (unsigned long long)j);
      }
      j += 1 + (x >> 8) % 40;
    }
  }
  cr_assert_gt(inserted, 100u, "only %llu inserts went through the finger", (unsigned long long)inserted);
  cr_assert_eq(check_order(r, mt), (3 * NRANDOM + 1) / 2 + inserted, "finger use lost or duplicated keys");
  check_upper_levels(r, mt);
  tu_close();
}

struct finger_arg {
  shm_region *r;
  uint32_t mt;
  int id;
  pthread_barrier_t *start;
  const uint64_t *order;     /* key numbers in key order */
  int failures;
};

/* Each thread inserts every key in key order through its finger, starting
** at its own offset and wrapping (the wrap falls back to the head), so that
** most of its keys are inserted, or just being inserted, by the others. */
static void *finger_inserter(void *p)
{
  struct finger_arg *a = p;
  struct sl_finger f;
  sl_finger_reset(&f);
  uint8_t key[32];
  pthread_barrier_wait(a->start);
  for (uint64_t j = 0; j < NRANDOM; j++) {
    uint64_t i = a->order[(j + (uint64_t)a->id * (NRANDOM / NTHREADS)) % NRANDOM];
    uint32_t klen = make_key(i, key);
    uint64_t n = sl_find_or_insert_finger(a->r, a->mt, key, klen, sl_hash(key, klen), &f, NULL);
    const struct sl_node *node = n ? shm_at(a->r, n) : NULL;
    if (!node || node->klen != klen || memcmp(sl_key(node), key, klen))
      a->failures++;
  }
  return NULL;
}

Test(skiplist, concurrent_finger_inserts)
{
  sochdb *db = open_db(4u << 20);
  shm_region *r = &db->region;
  uint32_t mt = scratch_memtable(db);
  static uint64_t order[NRANDOM];
  for (uint64_t i = 0; i < NRANDOM; i++)
    order[i] = i;
  qsort(order, NRANDOM, sizeof *order, cmp_key_numbers);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, NTHREADS);
  struct finger_arg args[NTHREADS];
  pthread_t th[NTHREADS];
  for (int t = 0; t < NTHREADS; t++) {
    args[t] = (struct finger_arg){ r, mt, t, &start, order, 0 };
    cr_assert_eq(pthread_create(&th[t], NULL, finger_inserter, &args[t]), 0, "pthread_create");
  }
  for (int t = 0; t < NTHREADS; t++) {
    TU_JOIN(th[t], "a finger inserter");
    cr_assert_eq(args[t].failures, 0, "thread %d got %d wrong nodes", t, args[t].failures);
  }
  pthread_barrier_destroy(&start);
  cr_assert_eq(check_order(r, mt), NRANDOM, "concurrent finger inserts lost or duplicated keys");
  check_upper_levels(r, mt);
  uint8_t key[32];
  for (uint64_t i = 0; i < NRANDOM; i++) {
    uint32_t klen = make_key(i, key);
    cr_assert_neq(sl_find(r, mt, key, klen), 0, "key %llu lost", (unsigned long long)i);
  }
  tu_close();
}
