/*
** wbuf.h — a transaction's private write buffer: the puts and deletes it has
** made and not yet committed, process-local memory only.
**
** Lookups go through a hash index (a transaction sees its own writes); commit
** and iterators take the entries in key order (sorted lazily, once per batch
** of writes). Keys and values are copied into an append-only chunk arena, so
** a value returned to the caller stays valid until the transaction ends even
** if the key is written again.
*/
#ifndef SOCHDB_WBUF_H
#define SOCHDB_WBUF_H

#include <stddef.h>
#include <stdint.h>

struct wb_entry {
  const uint8_t *key;
  const uint8_t *val;
  uint32_t klen;
  uint32_t vlen;
  uint64_t hash;              /* sl_hash(key): the memtables' index uses it too */
  int      tombstone;
};

struct wb_chunk;

struct wbuf {
  struct wb_entry *ents;
  size_t           n, cap;
  uint32_t        *index;       /* open addressing: entry number + 1, 0 = empty */
  size_t           index_cap;   /* power of two */
  uint32_t        *order;       /* entry numbers in key order, valid when sorted */
  size_t           order_cap;
  int              sorted;
  struct wb_chunk *chunks;
  size_t           bytes;       /* key and value bytes of the entries as they stand (what a commit writes) */
};

void  wbuf_init(struct wbuf *wb);
void  wbuf_free(struct wbuf *wb);
/* Empty wb for the next transaction, keeping what a small one needs (one
** chunk, arrays for WBUF_KEEP_ENTRIES keys): the next one then allocates
** nothing until it outgrows them. Larger allocations are freed. */
void  wbuf_reset(struct wbuf *wb);
/* Record a put (tombstone 0) or delete (1). Returns 0, or -1 on ENOMEM. */
int   wbuf_put(struct wbuf *wb, const void *key, uint32_t klen, const void *val, uint32_t vlen, int tombstone);
const struct wb_entry *wbuf_get(const struct wbuf *wb, const void *key, uint32_t klen);
/* Entry numbers in key order (n of them), or NULL on ENOMEM. */
const uint32_t *wbuf_sorted(struct wbuf *wb);

#endif
