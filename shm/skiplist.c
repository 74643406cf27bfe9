/*
** skiplist.c — the insert-only lock-free skiplist of a memtable, as in
** LevelDB's and RocksDB's concurrent memtables but linked by 32-bit arena
** references (shm_ref, region.h) so that every process can walk it through
** its own mapping.
**
** Insertion links level 0 first (that is the linearisation point: from then
** on the key exists), then each upper level with its own CAS, redoing the
** search of a level when its CAS loses a race. Two processes inserting the
** same key race on the level-0 CAS; the loser adopts the winner's node (its
** own allocation is wasted arena space, never reachable).
**
** It also owns the hash index of point lookups (skiplist.h): the bucket
** array after the head node and the chains through the nodes.
*/
#include "skiplist.h"

#include "arena.h"
#include "testhooks.h"
#include "threadrand.h"

#include <assert.h>
#include <ck_pr.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* 8-aligned: the bucket array follows, then the first allocation */
#define HEAD_BYTES ((sizeof(struct sl_node) + SL_MAX_HEIGHT * sizeof(shm_ref) + 7) & ~(size_t)7)
#define ARENA_BYTES_PER_BUCKET 512u   /* 2-3 nodes a bucket in a full arena of 100-byte values: 256 read no faster */
#define MAX_BUCKETS            (1ull << 21)   /* 16 MiB: what a rotation zeroes, whatever the arena's size */
#define BUCKET_REF(b)          ((shm_ref)(b))
#define BUCKET_SUMMARY(b)      ((uint32_t)((b) >> 32))
#define ADOPT_WAIT_ROUNDS      256u   /* how long a writer waits for another's node to be hashed */

static inline struct sl_node *node_at(const shm_region *r, uint64_t off) { return shm_at(r, off); }

static inline uint64_t head_of(const shm_region *r, uint32_t mt) { return arena_memtable(r, mt)->arena_off; }

/* A power of two: one bucket per 512 to 1024 bytes of the arena, up to MAX_BUCKETS. */
static inline uint64_t bucket_count(uint64_t capacity)
{
  uint64_t want = capacity / ARENA_BYTES_PER_BUCKET;
  if (want >= MAX_BUCKETS)
    return MAX_BUCKETS;
  return want ? 1ull << (63 - __builtin_clzll(want)) : 1;
}

/* A bucket is one word: the ref of its chain's first node in the low half,
** and in the high half a summary of the chain's keys, two bits of 32 set by
** each (summary_bits): most lookups of a key the memtable lacks end there,
** without touching a node. */
typedef _Atomic uint64_t sl_bucket;

static inline sl_bucket *buckets_of(const shm_region *r, const struct shm_memtable *m)
{
  return (sl_bucket *)(r->base + m->arena_off + HEAD_BYTES);
}

static inline sl_bucket *bucket_for(const shm_region *r, const struct shm_memtable *m, uint64_t hash)
{
  return &buckets_of(r, m)[hash & (bucket_count(m->capacity) - 1)];
}

/* Bits of the hash that the bucket index does not use (buckets < 2^32). */
static inline uint32_t summary_bits(uint64_t hash)
{
  return 1u << (hash >> 59) | 1u << (hash >> 54 & 31);
}

/* A bucket that was `was`, with node `ref` (key hash `hash`) pushed on its chain. */
static inline uint64_t bucket_pushed(uint64_t was, uint64_t hash, shm_ref ref)
{
  return (uint64_t)(BUCKET_SUMMARY(was) | summary_bits(hash)) << 32 | ref;
}

uint64_t sl_head_bytes(uint64_t capacity) { return HEAD_BYTES + bucket_count(capacity) * sizeof(sl_bucket); }

uint64_t sl_hash(const void *key, uint32_t klen) { return XXH3_64bits(key, klen); }

void sl_init(shm_region *r, uint32_t mt)
{
  struct shm_memtable *m = arena_memtable(r, mt);
  struct sl_node *head = node_at(r, m->arena_off);
  /* atomic stores, not memset: a reader whose view briefly listed this arena
  ** (a lost rotation) may still be loading these links and buckets; and a
  ** recycled arena that kept its pages holds its last memtable's */
  atomic_store_explicit(&head->versions, 0, memory_order_relaxed);
  for (int level = 0; level < SL_MAX_HEIGHT; level++)
    atomic_store_explicit(&head->next[level], 0, memory_order_relaxed);
  /* Plain fields, written only when they do not hold their (never changing)
  ** values already: a fresh arena, or one whose pages were given back, which
  ** no view names (arena_release_spare). A commit's search finger may rest
  ** on the head of an arena whose rotation lost and read these (key_less)
  ** while a new rotator initialises it: rewriting the same bytes then would
  ** still be a data race. */
  if (head->klen != 0 || head->height != SL_MAX_HEIGHT) {
    head->klen = 0;
    head->height = SL_MAX_HEIGHT;
  }
  sl_bucket *buckets = buckets_of(r, m);
  for (uint64_t i = 0, n = bucket_count(m->capacity); i < n; i++)
    atomic_store_explicit(&buckets[i], 0, memory_order_relaxed);
  /* relaxed, all: published by the caller's release of the memtable state */
  atomic_store_explicit(&m->index_incomplete, 0, memory_order_relaxed);
  atomic_store_explicit(&m->used, sl_head_bytes(m->capacity), memory_order_relaxed);
}

/* Heights with p = 1/4 per level, from a per-thread xorshift generator. */
uint8_t sl_random_height(void)
{
  uint8_t h = 1;
  for (uint64_t bits = shm_thread_random(); h < SL_MAX_HEIGHT && (bits & 3) == 0; bits >>= 2)
    h++;
  return h;
}

static inline uint64_t next_at(const shm_region *r, uint64_t node, int level)
{
  /* acquire: pairs with the release CAS that linked the successor, so its
  ** key and links are visible */
  return shm_ref_off(r, atomic_load_explicit(&node_at(r, node)->next[level], memory_order_acquire));
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

int sl_index_complete(const shm_region *r, uint32_t mt)
{
  /* relaxed: a writer marks the index before its commit is published, and a
  ** reader asks after it took its snapshot (an acquire that the publication
  ** synchronises with), so a commit the snapshot holds brings the mark */
  return !atomic_load_explicit(&arena_memtable(r, mt)->index_incomplete, memory_order_relaxed);
}

uint64_t sl_lookup(const shm_region *r, uint32_t mt, const void *key, uint32_t klen, uint64_t hash)
{
  if (!sl_index_complete(r, mt))
    return sl_find(r, mt, key, klen);
  /* acquire: pairs with the release CAS that pushed the chain's first node.
  ** Every write of a bucket after sl_init is such a CAS, which continues the
  ** release sequence of every push before it: so the whole chain, every
  ** node's key and hnext, is visible, and hnext needs no acquire. (The one
  ** exception, sl_build_append's plain stores, is published with the whole
  ** region by the release store of its magic.) */
  const struct shm_memtable *m = arena_memtable(r, mt);
  uint64_t bucket = atomic_load_explicit(bucket_for(r, m, hash), memory_order_acquire);
  uint32_t want = summary_bits(hash);
  if ((BUCKET_SUMMARY(bucket) & want) != want)
    return 0;
  for (shm_ref at = BUCKET_REF(bucket); at;) {
    uint64_t n = shm_ref_off(r, at);
    if (node_has_key(r, n, key, klen))
      return n;
    at = atomic_load_explicit(&node_at(r, n)->hnext, memory_order_relaxed);
  }
  return 0;
}

/* Put a node linked on level 0 on its bucket's chain, then say so: at once,
** or (a commit's) once its version is in the node's chain. */
static void index_push(shm_region *r, uint32_t mt, uint64_t node, uint64_t hash)
{
  struct shm_memtable *m = arena_memtable(r, mt);
  sl_bucket *bucket = bucket_for(r, m, hash);
  struct sl_node *n = node_at(r, node);
  uint64_t was = atomic_load_explicit(bucket, memory_order_relaxed), now;
  do {
    /* relaxed: nobody reads hnext before the CAS below publishes the node on the chain */
    atomic_store_explicit(&n->hnext, BUCKET_REF(was), memory_order_relaxed);
    now = bucket_pushed(was, hash, shm_off_ref(r, node));
    /* release: whoever reaches the node through the bucket sees its key and hnext */
  } while (!atomic_compare_exchange_weak_explicit(bucket, &was, now, memory_order_release, memory_order_relaxed));
  /* release: a writer that sees it (acquire, adopt) and then commits makes
  ** the push visible to every snapshot that holds its commit */
  atomic_store_explicit(&n->hashed, 1, memory_order_release);
}

/* A node found in the list, which another process may have inserted: wait
** a little for it to be hashed, then mark the index incomplete (its
** inserter may be dead). We are about to add a version to it, so this comes
** before our commit can be seen, and the caller's commit orders it. */
static uint64_t adopt(shm_region *r, uint32_t mt, uint64_t node)
{
  const struct sl_node *n = node_at(r, node);
  for (unsigned round = 0; !atomic_load_explicit(&n->hashed, memory_order_acquire); round++) {
    if (!sl_index_complete(r, mt))
      break;     /* marked already (a node of a dead inserter stays unhashed): no wait */
    if (round == ADOPT_WAIT_ROUNDS) {
      /* relaxed: ordered before our commit's publication (sl_index_complete) */
      atomic_store_explicit(&arena_memtable(r, mt)->index_incomplete, 1, memory_order_relaxed);
      break;
    }
    if (round < ADOPT_WAIT_ROUNDS / 2)
      ck_pr_stall();
    else
      sched_yield();
  }
  return node;
}

static uint64_t new_node(shm_region *r, uint32_t mt, const void *key, uint32_t klen, uint8_t height)
{
  uint64_t off = arena_alloc(r, mt, sl_node_bytes(height, klen));
  if (!off)
    return 0;
  struct sl_node *n = node_at(r, off);
  atomic_init(&n->versions, 0);
  atomic_init(&n->hnext, 0);
  atomic_init(&n->hashed, 0);
  n->klen = (uint16_t)klen;
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
    shm_ref expected = shm_off_ref(r, succs[level]);
    atomic_store_explicit(&n->next[level], expected, memory_order_relaxed);
    /* release: whoever reaches the node through this link sees its contents */
    if (atomic_compare_exchange_strong_explicit(&node_at(r, preds[level])->next[level], &expected,
                                                shm_off_ref(r, node), memory_order_release, memory_order_relaxed))
      return node;
    preds[level] = scan_level(r, preds[level], level, key, klen, &succs[level]);
  }
}

/* The descent of a search: preds/succs of key on levels [0, top], from x, a
** node before key on level top. */
static void descend(const shm_region *r, uint64_t x, int top, const void *key, uint32_t klen,
                    uint64_t preds[SL_MAX_HEIGHT], uint64_t succs[SL_MAX_HEIGHT])
{
  for (int level = top; level >= 0; level--)
    x = preds[level] = scan_level(r, x, level, key, klen, &succs[level]);
}

/* Fill preds/succs of key on levels [0, top] and return top: through the
** finger if it holds predecessors of a smaller key in mt (the finger's
** nodes above top are all before key: preds and succs are left unset
** there, and a caller that needs those levels starts from the finger's),
** else from the head (top = SL_MAX_HEIGHT - 1). Not copying the levels
** above, nor saving them again (finger_save), was 5% of the instructions
** of a one-put commit (callgrind). */
static int find_preds_finger(const shm_region *r, uint32_t mt, const void *key, uint32_t klen,
                             const struct sl_finger *f, uint64_t preds[SL_MAX_HEIGHT],
                             uint64_t succs[SL_MAX_HEIGHT])
{
  /* every saved predecessor is at or before the level-0 one in key order,
  ** so that one being below key puts them all below it */
  if (!f || f->mt != mt || !key_less(r, f->preds[0], key, klen)) {
    find_preds(r, mt, key, klen, preds, succs);
    return SL_MAX_HEIGHT - 1;
  }
  int top = 0;   /* the lowest level whose successor is not below key: the search starts there */
  for (; top < SL_MAX_HEIGHT - 1; top++) {
    uint64_t nx = next_at(r, f->preds[top], top);
    if (!nx || !key_less(r, nx, key, klen))
      break;
  }
  descend(r, f->preds[top], top, key, klen, preds, succs);
  return top;
}

/* Remember the search for a key at `node`: the node itself precedes every
** greater key on its `levels` lowest levels, preds on the others up to top
** (find_preds_finger's); above top the finger keeps its own nodes, which
** the search found before key. A node we did not link ourselves counts on
** level 0 only: another process may still be linking its upper levels,
** whose links are not set before their CAS. */
static void finger_save(struct sl_finger *f, uint32_t mt, uint64_t node, int levels, int top,
                        const uint64_t preds[SL_MAX_HEIGHT])
{
  if (!f)
    return;
  f->mt = mt;
  int level = 0;
  for (; level < levels; level++)
    f->preds[level] = node;
  for (; level <= top; level++)
    f->preds[level] = preds[level];
}

/* The key right after the finger on level 0: a run of lookups of adjacent
** keys (a commit's keys checked against an older memtable they mostly miss,
** or that holds each next to the last) then reads one link each, not a
** descent. Sets *node (0: absent) and returns 1, or 0 to search. The finger
** stays right: its node, or a found node, is before every greater key. */
static int find_next_to_finger(const shm_region *r, uint32_t mt, const void *key, uint32_t klen,
                               struct sl_finger *f, uint64_t *node)
{
  if (!f || f->mt != mt || !key_less(r, f->preds[0], key, klen))
    return 0;
  uint64_t nx = next_at(r, f->preds[0], 0);
  if (nx && key_less(r, nx, key, klen))
    return 0;
  *node = node_has_key(r, nx, key, klen) ? nx : 0;
  if (*node)
    f->preds[0] = *node;
  return 1;
}

int sl_finger_at_end(const shm_region *r, const struct sl_finger *f)
{
  return f->mt != UINT32_MAX && next_at(r, f->preds[0], 0) == 0;
}

uint64_t sl_find_finger(const shm_region *r, uint32_t mt, const void *key, uint32_t klen, struct sl_finger *f)
{
  uint64_t found;
  if (find_next_to_finger(r, mt, key, klen, f, &found))
    return found;
  uint64_t preds[SL_MAX_HEIGHT], succs[SL_MAX_HEIGHT];
  int top = find_preds_finger(r, mt, key, klen, f, preds, succs);
  uint64_t node = node_has_key(r, succs[0], key, klen) ? succs[0] : 0;
  finger_save(f, mt, node, node ? 1 : 0, top, preds);
  return node;
}

void sl_prefetch_bucket(const shm_region *r, uint32_t mt, uint64_t hash, int for_write)
{
  const sl_bucket *b = bucket_for(r, arena_memtable(r, mt), hash);
  if (for_write)
    __builtin_prefetch(b, 1);
  else
    __builtin_prefetch(b, 0);
}

uint64_t sl_find_or_insert_finger(shm_region *r, uint32_t mt, const void *key, uint32_t klen, uint64_t hash,
                                  struct sl_finger *f, int *unindexed)
{
  uint64_t preds[SL_MAX_HEIGHT], succs[SL_MAX_HEIGHT];
  int top = find_preds_finger(r, mt, key, klen, f, preds, succs);
  if (node_has_key(r, succs[0], key, klen)) {
    finger_save(f, mt, succs[0], 1, top, preds);
    return adopt(r, mt, succs[0]);
  }
  uint8_t height = sl_random_height();
  uint64_t node = new_node(r, mt, key, klen, height);
  if (!node)
    return 0;
  /* levels the finger search skipped: from the finger's node, before key */
  for (int level = height - 1; level > top; level--)
    preds[level] = scan_level(r, f->preds[level], level, key, klen, &succs[level]);
  uint64_t linked = link_level(r, node, 0, key, klen, preds, succs);
  if (linked != node) {
    finger_save(f, mt, linked, 1, top, preds);
    return adopt(r, mt, linked);
  }
  CRASHPOINT("insert.linked");   /* killed here: tests/test_crash.c, the index is marked incomplete */
  if (unindexed)
    *unindexed = 1;
  else
    index_push(r, mt, node, hash);
  for (int level = 1; level < height; level++)
    link_level(r, node, level, key, klen, preds, succs);
  finger_save(f, mt, node, height, top, preds);
  return node;
}

void sl_index_node(shm_region *r, uint32_t mt, uint64_t node, uint64_t hash)
{
  if (node)   /* never 0 here; said so, gcc sees no write through shm_at's NULL */
    index_push(r, mt, node, hash);
}

uint64_t sl_find_or_insert(shm_region *r, uint32_t mt, const void *key, uint32_t klen)
{
  return sl_find_or_insert_finger(r, mt, key, klen, sl_hash(key, klen), NULL, NULL);
}

void sl_build_begin(struct sl_builder *b, shm_region *r, uint32_t mt)
{
  b->r = r;
  b->m = arena_memtable(r, mt);
  b->head = head_of(r, mt);
  b->link = NULL;
  b->link_ctx = NULL;
  /* relaxed: see above; the memtable must still be empty */
  assert(atomic_load_explicit(&node_at(r, b->head)->next[0], memory_order_relaxed) == 0);
  for (int level = 0; level < SL_MAX_HEIGHT; level++)
    b->last[level] = head_of(r, mt);
}

/* Point the link on `level` of node `pred` (the head or a node appended before) at `node`. */
static void build_link(struct sl_builder *b, uint64_t pred, int level, uint64_t node)
{
  shm_ref ref = shm_off_ref(b->r, node);
  if (b->link)
    b->link(b->link_ctx, pred + offsetof(struct sl_node, next) + (uint64_t)level * sizeof(shm_ref), ref);
  else   /* relaxed: nobody else can reach this memtable yet (see skiplist.h) */
    atomic_store_explicit(&node_at(b->r, pred)->next[level], ref, memory_order_relaxed);
}

void sl_build_append(struct sl_builder *b, uint64_t node, void *bytes, const void *key, uint32_t klen,
                     uint8_t height, uint64_t versions)
{
  shm_region *r = b->r;
  struct sl_node *n = bytes;
  assert(height >= 1 && height <= SL_MAX_HEIGHT);
  assert(b->last[0] == b->head || b->link || key_less(r, b->last[0], key, klen));
  /* relaxed, all of them: nobody else can reach this memtable yet (see skiplist.h) */
  atomic_store_explicit(&n->versions, shm_off_ref(r, versions), memory_order_relaxed);
  n->klen = (uint16_t)klen;
  n->height = height;
  memcpy((uint8_t *)&n->next[height], key, klen);
  uint64_t hash = sl_hash(key, klen);
  sl_bucket *bucket = bucket_for(r, b->m, hash);
  uint64_t was = atomic_load_explicit(bucket, memory_order_relaxed);
  atomic_store_explicit(&n->hnext, BUCKET_REF(was), memory_order_relaxed);
  atomic_store_explicit(bucket, bucket_pushed(was, hash, shm_off_ref(r, node)), memory_order_relaxed);
  atomic_store_explicit(&n->hashed, 1, memory_order_relaxed);
  for (int level = 0; level < height; level++) {
    atomic_store_explicit(&n->next[level], 0, memory_order_relaxed);
    build_link(b, b->last[level], level, node);
    b->last[level] = node;
  }
}
