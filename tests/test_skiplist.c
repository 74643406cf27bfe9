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

TestSuite(skiplist, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

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
    for (uint64_t n = atomic_load(&h->next[level]); n;) {
      const struct sl_node *node = shm_at(r, n);
      cr_assert_gt(node->height, level, "node of height %u linked on level %d", node->height, level);
      cr_assert_eq(sl_find(r, mt, sl_key(node), node->klen), n, "level-%d node not the level-0 node of its key",
                   level);
      if (prev)
        cr_assert_lt(sl_compare(sl_key(prev), prev->klen, sl_key(node), node->klen), 0,
                     "level %d not strictly increasing", level);
      prev = node;
      n = atomic_load(&node->next[level]);
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
    /* an absent key one byte longer / shorter than a present one */
    key[klen] = 0x00;
    cr_assert_eq(sl_find(r, mt, key, klen + 1), 0, "found the extension of key %llu", (unsigned long long)i);
    cr_assert_eq(sl_find(r, mt, key, klen - 1), 0, "found a prefix of key %llu", (unsigned long long)i);
  }
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
                  n + sizeof(struct sl_node) + node->height * sizeof(uint64_t) + node->klen <=
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
    /* a node seen once is found by key from then on */
    if (prev) {
      memcpy(key, sl_key(prev), prev->klen);
      if (sl_find(a->r, a->mt, key, prev->klen) != shm_off(a->r, prev))
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
  for (int round = 0; round < 3; round++) {
    if (round)
      sl_init(r, mt);
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

    uint8_t key[32];
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
      if (agreed)
        expected++;
    }
    cr_assert_gt(expected, NKEYS / 2, "round %d: too few keys inserted (%llu)", round, (unsigned long long)expected);
    cr_assert_eq(check_order(r, mt), expected, "round %d: level 0 holds a key twice or lost one", round);
    check_upper_levels(r, mt);
  }
  tu_close();
}
