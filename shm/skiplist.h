/*
** skiplist.h — the lock-free, insert-only skiplist that indexes one memtable
** arena, shared by every attached process.
**
** Nodes are never removed (a delete is a tombstone version), so insertion is
** the only mutation of the structure: a node is linked bottom-up, each level
** with one CAS, and a reader that follows `next` links with acquire loads
** always sees a fully initialised node. Links are region offsets. Each node
** carries the head of its key's version chain (see mvcc.h).
*/
#ifndef SOCHDB_SHM_SKIPLIST_H
#define SOCHDB_SHM_SKIPLIST_H

#include "region.h"

#define SL_MAX_HEIGHT 16

struct sl_node {
  _Atomic uint64_t versions;  /* newest version of this key (offset), 0 = none yet */
  uint32_t klen;
  uint8_t  height;
  uint8_t  pad[3];
  _Atomic uint64_t next[];    /* `height` links, followed by the key bytes */
};

static inline const uint8_t *sl_key(const struct sl_node *n)
{ return (const uint8_t *)&n->next[n->height]; }

/* Bytes of the head node: an arena with exactly this much used has never been written. */
uint64_t sl_head_bytes(void);

/* Lay out the head node at the start of memtable i's arena. */
void     sl_init(shm_region *r, uint32_t mt);

/* The node for key, or 0. */
uint64_t sl_find(const shm_region *r, uint32_t mt, const void *key, uint32_t klen);

/* The node for key, inserting it if missing. 0 when the arena is full. */
uint64_t sl_find_or_insert(shm_region *r, uint32_t mt, const void *key, uint32_t klen);

/* The first node with key >= key (key NULL = the first node), or 0. */
uint64_t sl_seek(const shm_region *r, uint32_t mt, const void *key, uint32_t klen);

/* The node after n on level 0, or 0. */
static inline uint64_t sl_next(const shm_region *r, uint64_t n)
{
  const struct sl_node *node = shm_at(r, n);
  /* acquire: pairs with the release CAS that linked the successor */
  return atomic_load_explicit(&node->next[0], memory_order_acquire);
}

int sl_compare(const void *a, uint32_t alen, const void *b, uint32_t blen);

#endif
