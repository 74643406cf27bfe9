/*
** wbuf.c — the transaction write buffer (see wbuf.h).
*/
#include "wbuf.h"

#include "skiplist.h"   /* sl_compare, and sl_hash: the memtables' hash index takes the same hash */

#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES (64u * 1024u)
#define WBUF_KEEP_ENTRIES 1024u   /* a fill_batch transaction's: 40 KiB of entries, 8 KiB of index */

struct wb_chunk {
  struct wb_chunk *next;
  size_t used, cap;
  uint8_t data[];
};

void wbuf_init(struct wbuf *wb) { memset(wb, 0, sizeof *wb); }

void wbuf_free(struct wbuf *wb)
{
  for (struct wb_chunk *c = wb->chunks, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(wb->ents);
  free(wb->index);
  free(wb->order);
  memset(wb, 0, sizeof *wb);
}

/* Empty the hash index of wb's n entries. A sparse one entry by entry: an
** entry sits at the first slot its hash probed that was free when it was
** put (entries are never removed), so a one-put transaction clears one
** word where a memset of the 64 was 2% of its commit (callgrind). */
static void clear_index(struct wbuf *wb)
{
  if (wb->n * 8 > wb->index_cap) {
    memset(wb->index, 0, wb->index_cap * sizeof *wb->index);
    return;
  }
  size_t mask = wb->index_cap - 1;
  for (size_t i = 0; i < wb->n; i++) {
    size_t h = wb->ents[i].hash & mask;
    while (wb->index[h] != i + 1)
      h = (h + 1) & mask;
    wb->index[h] = 0;
  }
}

void wbuf_reset(struct wbuf *wb)
{
  struct wb_chunk *keep = NULL;
  for (struct wb_chunk *c = wb->chunks, *next; c; c = next) {
    next = c->next;
    if (!keep && c->cap == CHUNK_BYTES)
      keep = c;
    else
      free(c);
  }
  if (keep) {
    keep->used = 0;
    keep->next = NULL;
  }
  if (wb->index_cap > 2 * WBUF_KEEP_ENTRIES) {
    free(wb->index);
    wb->index = NULL;
    wb->index_cap = 0;
  } else if (wb->n) {
    clear_index(wb);   /* before the entries go: it reads their hashes */
  }
  if (wb->cap > WBUF_KEEP_ENTRIES) {
    free(wb->ents);
    wb->ents = NULL;
    wb->cap = 0;
  }
  if (wb->order_cap > WBUF_KEEP_ENTRIES) {
    free(wb->order);
    wb->order = NULL;
    wb->order_cap = 0;
  }
  wb->chunks = keep;
  wb->n = 0;
  wb->sorted = 0;
  wb->bytes = 0;
}

/* A chunk with room for n bytes, linked in: a large payload gets one of its
** own, behind the current small chunk. Out of line: stash's every call
** pays only its check (callgrind: half of stash's instructions were this
** function's frame). */
static __attribute__((noinline)) struct wb_chunk *add_chunk(struct wbuf *wb, size_t n)
{
  size_t cap = n > CHUNK_BYTES / 4 ? n : CHUNK_BYTES;
  struct wb_chunk *c = malloc(sizeof *c + cap);
  if (!c)
    return NULL;
  c->used = 0;
  c->cap = cap;
  if (n > CHUNK_BYTES / 4 && wb->chunks) {   /* keep the current small chunk in front */
    c->next = wb->chunks->next;
    wb->chunks->next = c;
  } else {
    c->next = wb->chunks;
    wb->chunks = c;
  }
  return c;
}

/* Copy bytes into the chunk arena. */
static inline const uint8_t *stash(struct wbuf *wb, const void *p, size_t n)
{
  struct wb_chunk *c = wb->chunks;
  if (!c || c->cap - c->used < n) {
    c = add_chunk(wb, n);
    if (!c)
      return NULL;
  }
  uint8_t *dst = c->data + c->used;
  if (n)
    memcpy(dst, p, n);
  c->used += (n + 7) & ~(size_t)7;
  if (c->used > c->cap)
    c->used = c->cap;
  return dst;
}

static int grow_index(struct wbuf *wb)
{
  size_t cap = wb->index_cap ? wb->index_cap * 2 : 64;
  uint32_t *idx = calloc(cap, sizeof *idx);
  if (!idx)
    return -1;
  for (size_t i = 0; i < wb->n; i++) {
    size_t h = wb->ents[i].hash & (cap - 1);
    while (idx[h])
      h = (h + 1) & (cap - 1);
    idx[h] = (uint32_t)i + 1;
  }
  free(wb->index);
  wb->index = idx;
  wb->index_cap = cap;
  return 0;
}

static long find_slot(const struct wbuf *wb, const void *key, uint32_t klen, uint64_t hash)
{
  if (!wb->index_cap)
    return -1;
  for (size_t h = hash & (wb->index_cap - 1);; h = (h + 1) & (wb->index_cap - 1)) {
    uint32_t i = wb->index[h];
    if (!i)
      return -(long)h - 2;                        /* free slot h */
    const struct wb_entry *e = &wb->ents[i - 1];
    if (e->hash == hash && e->klen == klen && memcmp(e->key, key, klen) == 0)
      return (long)i - 1;
  }
}

const struct wb_entry *wbuf_get(const struct wbuf *wb, const void *key, uint32_t klen)
{
  if (!wb->n)
    return NULL;   /* a read-only transaction's gets: no hash to compute */
  long i = find_slot(wb, key, klen, sl_hash(key, klen));
  return i >= 0 ? &wb->ents[i] : NULL;
}

int wbuf_put(struct wbuf *wb, const void *key, uint32_t klen, const void *val, uint32_t vlen, int tombstone)
{
  uint64_t hash = sl_hash(key, klen);
  if ((wb->n + 1) * 2 > wb->index_cap && grow_index(wb) != 0)
    return -1;
  const uint8_t *v = stash(wb, val, tombstone ? 0 : vlen);
  if (!v)
    return -1;
  long i = find_slot(wb, key, klen, hash);
  uint32_t stored = tombstone ? 0 : vlen;
  if (i >= 0) {                                   /* overwrite: same key, new value */
    wb->bytes = wb->bytes - wb->ents[i].vlen + stored;   /* the commit writes the last value only */
    wb->ents[i].val = v;
    wb->ents[i].vlen = stored;
    wb->ents[i].tombstone = tombstone;
    return 0;
  }
  if (wb->n == wb->cap) {
    size_t cap = wb->cap ? wb->cap * 2 : 16;
    struct wb_entry *e = realloc(wb->ents, cap * sizeof *e);
    if (!e)
      return -1;
    wb->ents = e;
    wb->cap = cap;
  }
  const uint8_t *k = stash(wb, key, klen);
  if (!k)
    return -1;
  wb->ents[wb->n] = (struct wb_entry){ k, v, klen, stored, hash, tombstone };
  wb->index[-i - 2] = (uint32_t)++wb->n;
  wb->sorted = 0;
  wb->bytes += klen + stored;
  return 0;
}

/* glibc's qsort_r passes the entry array as context: two threads may sort
** two transactions' buffers at once, so no static may carry it. */
static int by_key(const void *a, const void *b, void *ctx)
{
  const struct wb_entry *ents = ctx;
  const struct wb_entry *x = &ents[*(const uint32_t *)a], *y = &ents[*(const uint32_t *)b];
  return sl_compare(x->key, x->klen, y->key, y->klen);
}

const uint32_t *wbuf_sorted(struct wbuf *wb)
{
  if (wb->sorted)
    return wb->order;
  if (wb->n > wb->order_cap || !wb->order) {
    size_t cap = wb->n ? wb->n : 1;
    uint32_t *grown = realloc(wb->order, cap * sizeof *grown);
    if (!grown)
      return NULL;
    wb->order = grown;
    wb->order_cap = cap;
  }
  uint32_t *order = wb->order;
  for (size_t i = 0; i < wb->n; i++)
    order[i] = (uint32_t)i;
  size_t i = 1;   /* keys written in order (a batched load) need no sort: n - 1 comparisons */
  while (i < wb->n && by_key(&order[i - 1], &order[i], wb->ents) < 0)
    i++;
  if (i < wb->n)
    qsort_r(order, wb->n, sizeof *order, by_key, wb->ents);
  wb->sorted = 1;
  return order;
}
