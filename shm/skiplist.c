/*
** skiplist.c — the insert-only lock-free skiplist of a memtable, as in
** LevelDB's and RocksDB's concurrent memtables but linked by region offsets
** so that every process can walk it through its own mapping.
**
** Insertion links level 0 first (that is the linearisation point: from then
** on the key exists), then each upper level with its own CAS, redoing the
** search of a level when its CAS loses a race. Two processes inserting the
** same key race on the level-0 CAS; the loser adopts the winner's node (its
** own allocation is wasted arena space, never reachable).
*/
#include "skiplist.h"

#include "arena.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEAD_BYTES (sizeof(struct sl_node) + SL_MAX_HEIGHT * sizeof(uint64_t))

int sl_compare(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c)
    return c;
  return alen < blen ? -1 : alen > blen;
}

static inline struct sl_node *node_at(const shm_region *r, uint64_t off) { return shm_at(r, off); }

static inline uint64_t head_of(const shm_region *r, uint32_t mt) { return arena_memtable(r, mt)->arena_off; }

uint64_t sl_head_bytes(void) { return HEAD_BYTES; }

void sl_init(shm_region *r, uint32_t mt)
{
  struct shm_memtable *m = arena_memtable(r, mt);
  struct sl_node *head = node_at(r, m->arena_off);
  /* atomic stores, not memset: a reader whose view briefly listed this arena
  ** (a lost rotation) may still be loading these links */
  atomic_store_explicit(&head->versions, 0, memory_order_relaxed);
  for (int level = 0; level < SL_MAX_HEIGHT; level++)
    atomic_store_explicit(&head->next[level], 0, memory_order_relaxed);
  head->klen = 0;
  head->height = SL_MAX_HEIGHT;
  /* relaxed: published by the caller's release of the memtable state */
  atomic_store_explicit(&m->used, HEAD_BYTES, memory_order_relaxed);
}

/* Heights with p = 1/4 per level, from a per-thread xorshift generator. */
static uint8_t random_height(void)
{
  static _Thread_local uint64_t x;
  if (!x) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&x;
    x |= 1;
  }
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  uint8_t h = 1;
  for (uint64_t bits = x; h < SL_MAX_HEIGHT && (bits & 3) == 0; bits >>= 2)
    h++;
  return h;
}

static inline uint64_t next_at(const shm_region *r, uint64_t node, int level)
{
  /* acquire: pairs with the release CAS that linked the successor, so its
  ** key and links are visible */
  return atomic_load_explicit(&node_at(r, node)->next[level], memory_order_acquire);
}

static inline int key_less(const shm_region *r, uint64_t node, const void *key, uint32_t klen)
{
  const struct sl_node *n = node_at(r, node);
  return sl_compare(sl_key(n), n->klen, key, klen) < 0;
}

/* From `from` on `level`, the last node < key; its successor in *succ. */
static uint64_t scan_level(const shm_region *r, uint64_t from, int level, const void *key,
                           uint32_t klen, uint64_t *succ)
{
  uint64_t x = from;
  for (;;) {
    uint64_t nx = next_at(r, x, level);
    if (nx && key_less(r, nx, key, klen)) {
      x = nx;
      continue;
    }
    *succ = nx;
    return x;
  }
}

static void find_preds(const shm_region *r, uint32_t mt, const void *key, uint32_t klen,
                       uint64_t preds[SL_MAX_HEIGHT], uint64_t succs[SL_MAX_HEIGHT])
{
  uint64_t x = head_of(r, mt);
  for (int level = SL_MAX_HEIGHT - 1; level >= 0; level--)
    x = preds[level] = scan_level(r, x, level, key, klen, &succs[level]);
}

static int node_has_key(const shm_region *r, uint64_t node, const void *key, uint32_t klen)
{
  const struct sl_node *n = node_at(r, node);
  return node && sl_compare(sl_key(n), n->klen, key, klen) == 0;
}

uint64_t sl_seek(const shm_region *r, uint32_t mt, const void *key, uint32_t klen)
{
  uint64_t x = head_of(r, mt), succ = 0;
  if (!key)
    return next_at(r, x, 0);
  for (int level = SL_MAX_HEIGHT - 1; level >= 0; level--)
    x = scan_level(r, x, level, key, klen, &succ);
  return succ;
}

uint64_t sl_find(const shm_region *r, uint32_t mt, const void *key, uint32_t klen)
{
  uint64_t n = sl_seek(r, mt, key, klen);
  return n && node_has_key(r, n, key, klen) ? n : 0;
}

static uint64_t new_node(shm_region *r, uint32_t mt, const void *key, uint32_t klen, uint8_t height)
{
  uint64_t off = arena_alloc(r, mt, sizeof(struct sl_node) + height * sizeof(uint64_t) + klen);
  if (!off)
    return 0;
  struct sl_node *n = node_at(r, off);
  atomic_init(&n->versions, 0);
  n->klen = klen;
  n->height = height;
  memcpy((uint8_t *)&n->next[height], key, klen);
  return off;
}

/* Link `node` on `level` between preds/succs, searching again from the old
** predecessor whenever the CAS loses. Returns the existing node if the key
** turned up on level 0 meanwhile, else `node`. */
static uint64_t link_level(shm_region *r, uint64_t node, int level, const void *key, uint32_t klen,
                           uint64_t preds[], uint64_t succs[])
{
  struct sl_node *n = node_at(r, node);
  for (;;) {
    if (level == 0 && node_has_key(r, succs[0], key, klen))
      return succs[0];
    /* relaxed: the node is not reachable on this level until the CAS below */
    atomic_store_explicit(&n->next[level], succs[level], memory_order_relaxed);
    uint64_t expected = succs[level];
    /* release: whoever reaches the node through this link sees its contents */
    if (atomic_compare_exchange_strong_explicit(&node_at(r, preds[level])->next[level], &expected, node,
                                                memory_order_release, memory_order_relaxed))
      return node;
    preds[level] = scan_level(r, preds[level], level, key, klen, &succs[level]);
  }
}

uint64_t sl_find_or_insert(shm_region *r, uint32_t mt, const void *key, uint32_t klen)
{
  uint64_t preds[SL_MAX_HEIGHT], succs[SL_MAX_HEIGHT];
  find_preds(r, mt, key, klen, preds, succs);
  if (node_has_key(r, succs[0], key, klen))
    return succs[0];
  uint8_t height = random_height();
  uint64_t node = new_node(r, mt, key, klen, height);
  if (!node)
    return 0;
  uint64_t linked = link_level(r, node, 0, key, klen, preds, succs);
  if (linked != node)
    return linked;
  for (int level = 1; level < height; level++)
    link_level(r, node, level, key, klen, preds, succs);
  return node;
}
