/*
** skiplist.h — the lock-free, insert-only skiplist that indexes one memtable
** arena, shared by every attached process.
**
** Nodes are never removed (a delete is a tombstone version), so insertion is
** the only mutation of the structure: a node is linked bottom-up, each level
** with one CAS, and a reader that follows `next` links with acquire loads
** always sees a fully initialised node. Links are 32-bit arena references
** (shm_ref, region.h); the functions below take and return region offsets.
** Each node carries the head of its key's version chain (see mvcc.h).
**
** Point lookups go through a hash index instead of the skiplist: an array
** of buckets after the head node (one for every 512 to 1024 arena bytes,
** 2^21 at most), each the head of an insert-only chain linked through the
** nodes' `hnext` and a summary of its keys' hashes. An inserter links the
** node on level 0, pushes it on its bucket's chain, then sets `hashed`
** (a commit pushes it once its version is in the node's chain, and before
** its decision: src/txn.c, install_one); nothing else ever writes a chain.
** A process killed between the level-0 link and the push leaves a node the
** index lacks, with no committed version: the next writer
** that finds such a node (it reads `hashed` before it adds a version) marks
** the memtable's index incomplete, before its commit can be seen, and
** lookups in that memtable search the skiplist from then on. So the index
** holds every node that holds a version a snapshot can see, or says it may
** not. Ranges (sl_seek) and the commit's checks always use the skiplist.
*/
#ifndef SOCHDB_SHM_SKIPLIST_H
#define SOCHDB_SHM_SKIPLIST_H

#include "bytes.h"
#include "region.h"

#define SL_MAX_HEIGHT 16

struct shm_memtable;

struct sl_node {
  _Atomic shm_ref versions;   /* newest version of this key, 0 = none yet */
  _Atomic shm_ref hnext;      /* the next node of its hash bucket's chain */
  uint16_t klen;              /* <= SOCHDB_MAX_KEY */
  uint8_t  height;
  _Atomic uint8_t hashed;     /* 1 once the node is on its bucket's chain */
  _Atomic shm_ref next[];     /* `height` links, followed by the key bytes */
};

_Static_assert(sizeof(struct sl_node) == 12, "a node's header is 12 bytes");

static inline const uint8_t *sl_key(const struct sl_node *n)
{ return (const uint8_t *)&n->next[n->height]; }

/* Bytes of the head node and the hash index of an arena of this capacity:
** an arena with exactly this much used has never been written. */
uint64_t sl_head_bytes(uint64_t capacity);

/* Lay out the head node and an empty hash index at the start of memtable
** i's arena. */
void     sl_init(shm_region *r, uint32_t mt);

/* The node for key, or 0: a skiplist search. */
uint64_t sl_find(const shm_region *r, uint32_t mt, const void *key, uint32_t klen);

/* A key's hash, for sl_lookup (the same for every memtable). */
uint64_t sl_hash(const void *key, uint32_t klen);

/* The node for key (whose sl_hash is hash), or 0: through the hash index
** while it is complete, else a skiplist search. */
uint64_t sl_lookup(const shm_region *r, uint32_t mt, const void *key, uint32_t klen, uint64_t hash);

/* 1 while memtable mt's hash index holds every node (see above). */
int      sl_index_complete(const shm_region *r, uint32_t mt);

/* The node for key, inserting it if missing. 0 when the arena is full. */
uint64_t sl_find_or_insert(shm_region *r, uint32_t mt, const void *key, uint32_t klen);

/* A search finger (process-private): the predecessors, on every level, of
** the last key looked up in memtable `mt` through it. A lookup of a greater
** key in the same memtable resumes from them instead of from the head (the
** lowest level whose saved predecessor's successor is not below the key,
** then down), so a run of lookups in key order costs O(log distance) each,
** not O(log n). Saved nodes stay valid because nothing is removed from a
** memtable, but only while the memtable cannot be recycled: reset the
** finger (sl_finger_reset) whenever its user may have let go of it (left
** its commit epoch, changed view). A key not greater than the last one
** falls back to a search from the head. A key right after the level-0
** predecessor (no node between) is answered from that link alone, and only
** the level-0 predecessor moves (to a node found there): the upper levels
** may lag behind it, which costs a later search a longer climb, never a
** wrong answer (each is still before every greater key). */
struct sl_finger {
  uint32_t mt;                          /* UINT32_MAX: empty */
  uint64_t preds[SL_MAX_HEIGHT];
};

static inline void sl_finger_reset(struct sl_finger *f) { f->mt = UINT32_MAX; }

/* 1 if no node follows the finger's on level 0 now. Right after a lookup
** that found nothing: no key at or after the one looked up is in the list
** at this instant. */
int      sl_finger_at_end(const shm_region *r, const struct sl_finger *f);

/* sl_find and sl_find_or_insert through a finger (f NULL: from the head);
** hash is the key's sl_hash. With `unindexed` NULL a node the insert makes
** is hashed at once; otherwise it is left out of the hash index and
** *unindexed set to 1 (untouched when the key was there), and the caller
** must hash it with sl_index_node before what it writes into the node can
** be seen committed, and without waiting on anything meanwhile: until then
** sl_lookup misses it, and a writer that finds it in the list waits for
** the hash, briefly, then marks the index incomplete. */
uint64_t sl_find_finger(const shm_region *r, uint32_t mt, const void *key, uint32_t klen, struct sl_finger *f);
uint64_t sl_find_or_insert_finger(shm_region *r, uint32_t mt, const void *key, uint32_t klen, uint64_t hash,
                                  struct sl_finger *f, int *unindexed);

/* Hash a node sl_find_or_insert_finger left unindexed (hash: its key's
** sl_hash), once. */
void     sl_index_node(shm_region *r, uint32_t mt, uint64_t node, uint64_t hash);

/* Ask for the line of the hash bucket of a key with this sl_hash in mt:
** for writing (an insert will write it: a commit asks a few keys ahead), or
** for reading (a get; the line stays shared with the other readers). */
void     sl_prefetch_bucket(const shm_region *r, uint32_t mt, uint64_t hash, int for_write);

/* The first node with key >= key (key NULL = the first node), or 0. */
uint64_t sl_seek(const shm_region *r, uint32_t mt, const void *key, uint32_t klen);

/* Arena bytes of a node of this height and key length (8-aligned, as arena_alloc rounds). */
static inline uint64_t sl_node_bytes(uint8_t height, uint32_t klen)
{ return (sizeof(struct sl_node) + (uint64_t)height * sizeof(shm_ref) + klen + 7) & ~7ull; }

/* A node height drawn as inserts draw it (p = 1/4 per level). */
uint8_t  sl_random_height(void);

/* Bulk building, for recovery: appending nodes in strictly increasing key
** order to a memtable that only this process can reach (the region's magic
** is not published yet, so relaxed stores suffice: the magic's release
** store publishes them). Each append is O(1): the last node of every level
** is kept as the predecessor. The result is the skiplist that inserting the
** same keys with the same heights would give.
**
** The caller may lay nodes out somewhere other than the region's mapping (a
** private buffer it then writes to the region's file: recovery does, since
** a first write through a mapping can cost far more than the kernel's copy)
** and say where each node's bytes go; the builder then writes only those
** bytes, the hash buckets (through the mapping), and the links into nodes
** appended before, which go to `link` when it is set. */
struct sl_builder {
  shm_region *r;
  struct shm_memtable *m;
  uint64_t    head;
  uint64_t    last[SL_MAX_HEIGHT];   /* the last node of each level (the head at first) */
  /* Store ref at region offset off, a link field of the head or of a node
  ** appended before; NULL (sl_build_begin's choice): through the mapping. */
  void      (*link)(void *ctx, uint64_t off, shm_ref ref);
  void       *link_ctx;
};

/* Start appending to memtable mt, which must hold no node yet. */
void     sl_build_begin(struct sl_builder *b, shm_region *r, uint32_t mt);

/* Lay out a node for region offset `node` (sl_node_bytes(height, klen)
** bytes the caller allocated in the memtable) at `bytes` (shm_at(r, node),
** or the caller's copy of those bytes), with key and version chain
** `versions`, and append it: key must be greater than every key appended
** before. */
void     sl_build_append(struct sl_builder *b, uint64_t node, void *bytes, const void *key, uint32_t klen,
                         uint8_t height, uint64_t versions);

/* The node after n (never 0: the head or a node) on level 0, or 0. */
static inline uint64_t sl_next(const shm_region *r, uint64_t n)
{
  /* not shm_at: its NULL for offset 0 is a path GCC 12 then warns about at -O3 */
  const struct sl_node *node = (const struct sl_node *)(r->base + n);
  /* acquire: pairs with the release CAS that linked the successor */
  return shm_ref_off(r, atomic_load_explicit(&node->next[0], memory_order_acquire));
}

/* The newest version of node n (offset), or 0. acquire: pairs with the
** installing CAS (mvcc.c), so the version's bytes are visible. */
static inline uint64_t sl_versions(const shm_region *r, const struct sl_node *n)
{ return shm_ref_off(r, atomic_load_explicit(&n->versions, memory_order_acquire)); }

/* Bytewise key order, a prefix first (<0, 0, >0). */
static inline int sl_compare(const void *a, uint32_t alen, const void *b, uint32_t blen)
{ return key_order(a, alen, b, blen); }

#endif
