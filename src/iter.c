/*
** iter.c — range iterators: a merge of every live memtable's skiplist (in
** the transaction's view) and the transaction's own writes, in key order.
**
** For each key the newest source wins: the transaction's own write first,
** then the newest memtable holding a version visible at the snapshot (a key's
** versions in newer memtables are always newer, see txn.c). Tombstones hide
** the key. Keys and values point into the region or the write buffer, which
** both outlive the transaction's snapshot: no copies.
*/
#include "internal.h"

#include "error.h"
#include "mvcc.h"
#include "skiplist.h"

#include <stdlib.h>
#include <string.h>

struct sochdb_iter {
  sochdb_txn      *t;
  uint8_t         *end;          /* exclusive bound, NULL = none */
  uint32_t         elen;
  uint32_t         ncur;
  uint64_t         node[SHM_MAX_MEMTABLES];   /* cursor per memtable of the view */
  struct wb_entry *own;          /* own writes in range, key order, as at open */
  size_t           nown, pos;
};

static int node_cmp(const shm_region *r, uint64_t node, const void *key, uint32_t klen)
{
  const struct sl_node *n = shm_at(r, node);
  return sl_compare(sl_key(n), n->klen, key, klen);
}

static int copy_own_writes(sochdb_iter *it, const void *start, uint32_t slen)
{
  struct wbuf *wb = &it->t->writes;
  if (!wb->n)
    return SOCHDB_OK;
  const uint32_t *order = wbuf_sorted(wb);
  it->own = order ? malloc(wb->n * sizeof *it->own) : NULL;
  if (!it->own)
    return sdb_fail(SOCHDB_NOMEM, "copying %zu own writes for an iterator", wb->n);
  for (size_t i = 0; i < wb->n; i++) {
    const struct wb_entry *e = &wb->ents[order[i]];
    if (start && sl_compare(e->key, e->klen, start, slen) < 0)
      continue;
    if (it->end && sl_compare(e->key, e->klen, it->end, it->elen) >= 0)
      break;
    it->own[it->nown++] = *e;
  }
  return SOCHDB_OK;
}

int sochdb_iter_open(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                     sochdb_iter **out)
{
  int rc = sdb_check_txn(t);
  if (rc != SOCHDB_OK)
    return rc;
  if (!out)
    return sdb_fail(SOCHDB_INVALID, "NULL iterator output");
  *out = NULL;
  if (slen > SOCHDB_MAX_KEY || elen > SOCHDB_MAX_KEY)
    return sdb_fail(SOCHDB_INVALID, "iterator bound longer than %u bytes", SOCHDB_MAX_KEY);
  if ((!start && slen) || (!end && elen))
    return sdb_fail(SOCHDB_INVALID, "NULL iterator bound with a length");
  sochdb_iter *it = calloc(1, sizeof *it);
  if (!it)
    return sdb_fail(SOCHDB_NOMEM, "allocating an iterator");
  it->t = t;
  if (end && elen) {
    if (!(it->end = malloc(elen))) {
      free(it);
      return sdb_fail(SOCHDB_NOMEM, "allocating an iterator");
    }
    memcpy(it->end, end, elen);
    it->elen = (uint32_t)elen;
  }
  if (!slen)
    start = NULL;
  rc = copy_own_writes(it, start, (uint32_t)slen);
  if (rc != SOCHDB_OK) {
    sochdb_iter_close(it);
    return rc;
  }
  it->ncur = t->view.n;
  for (uint32_t i = 0; i < it->ncur; i++)
    it->node[i] = sl_seek(&t->db->region, t->view.idx[i], start, (uint32_t)slen);
  *out = it;
  return SOCHDB_OK;
}

/* The smallest key among the cursors and own writes (NULL when all are done). */
static const uint8_t *smallest_key(const sochdb_iter *it, uint32_t *klen)
{
  const shm_region *r = &it->t->db->region;
  const uint8_t *best = NULL;
  for (uint32_t i = 0; i < it->ncur; i++) {
    if (!it->node[i])
      continue;
    const struct sl_node *n = shm_at(r, it->node[i]);
    if (!best || sl_compare(sl_key(n), n->klen, best, *klen) < 0) {
      best = sl_key(n);
      *klen = n->klen;
    }
  }
  if (it->pos < it->nown) {
    const struct wb_entry *e = &it->own[it->pos];
    if (!best || sl_compare(e->key, e->klen, best, *klen) <= 0) {
      best = e->key;
      *klen = e->klen;
    }
  }
  return best;
}

int sochdb_iter_next(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen)
{
  if (!it)
    return sdb_fail(SOCHDB_INVALID, "NULL iterator");
  int rc = sdb_check_txn(it->t);
  if (rc != SOCHDB_OK)
    return rc;
  if (!key || !klen || !val || !vlen)
    return sdb_fail(SOCHDB_INVALID, "NULL iterator output");
  const shm_region *r = &it->t->db->region;
  for (;;) {
    uint32_t kl = 0;
    const uint8_t *k = smallest_key(it, &kl);
    if (!k || (it->end && sl_compare(k, kl, it->end, it->elen) >= 0))
      return SOCHDB_NOTFOUND;
    const void *v = NULL;
    size_t vl = 0;
    int found = 0, decided = 0;
    if (it->pos < it->nown && sl_compare(it->own[it->pos].key, it->own[it->pos].klen, k, kl) == 0) {
      const struct wb_entry *e = &it->own[it->pos++];
      decided = 1;
      if (!e->tombstone) {
        found = 1;
        v = e->val;
        vl = e->vlen;
      }
    }
    for (uint32_t i = 0; i < it->ncur; i++) {   /* newest memtable first */
      if (!it->node[i] || node_cmp(r, it->node[i], k, kl) != 0)
        continue;
      if (!decided) {
        const struct mv_version *mv = mv_visible(r, it->node[i], it->t->snapshot);
        if (mv) {
          decided = 1;
          if (!(mv->flags & MV_TOMBSTONE)) {
            found = 1;
            v = mv->value;
            vl = mv->vlen;
          }
        }
      }
      it->node[i] = sl_next(r, it->node[i]);
    }
    if (found) {
      *key = k;
      *klen = kl;
      *val = v;
      *vlen = vl;
      return SOCHDB_OK;
    }
  }
}

void sochdb_iter_close(sochdb_iter *it)
{
  if (!it)
    return;
  free(it->own);
  free(it->end);
  free(it);
}
