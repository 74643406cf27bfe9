/*
** iter.c — range iterators: a merge of the transaction's own writes, every
** live memtable of its view, and the SSTables of its view, in key order.
**
** For each key the newest source wins: the transaction's own write first,
** then the newest memtable holding a version visible at the snapshot (a
** key's versions in newer memtables are always newer, see txn.c, and every
** memtable is newer than every SSTable for the keys it holds), then, among
** the SSTables, the visible version with the highest commit seq. Tombstones
** hide the key. Keys and values in the region, in the write buffer or in a
** mapped uncompressed block are handed out without copying; those of
** compressed blocks and SSTable keys are copied into the transaction.
*/
#include "internal.h"

#include "error.h"
#include "mvcc.h"
#include "skiplist.h"
#include "tables.h"

#include <stdlib.h>
#include <string.h>

/* A cursor over one L0 file or over one whole level >= 1 (its files in order). */
struct table_cursor {
  const struct sdb_tables *ts;
  uint32_t         file, end;     /* the file being read, and one past the last */
  int              open;          /* it holds an sst_iter on file */
  int              valid;         /* e is its current entry */
  struct sst_iter  it;
  struct sst_entry e;
};

struct sochdb_iter {
  sochdb_txn      *t;
  uint8_t         *end;          /* exclusive bound, NULL = none */
  uint32_t         elen;
  uint32_t         ncur;
  uint64_t         node[SHM_MAX_MEMTABLES];   /* cursor per memtable of the view */
  struct wb_entry *own;          /* own writes in range, key order, as at open */
  size_t           nown, pos;
  uint32_t         ntab;
  struct table_cursor *tab;      /* L0 files, then one per deeper level */
  uint8_t          kbuf[SOCHDB_MAX_KEY];   /* the key being decided, when only a cursor holds it */
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

/* ---- table cursors ------------------------------------------------------- */

static void cursor_close_file(struct table_cursor *c)
{
  if (c->open)
    sst_iter_free(&c->it);
  c->open = 0;
}

/* Load the next entry, moving to the next file of the level when one ends. */
static int cursor_step(struct table_cursor *c, const void *seek, size_t slen)
{
  for (;;) {
    if (!c->open) {
      if (c->file >= c->end) {
        c->valid = 0;
        return SOCHDB_OK;
      }
      const struct sdb_table *t = c->ts->files[c->file];
      if (t->open_rc != SOCHDB_OK)
        return sdb_fail(t->open_rc, "%s", t->open_err);
      sst_iter_init(&c->it, &t->r);
      c->open = 1;
      if (seek) {
        int rc = sst_iter_seek(&c->it, seek, slen);
        if (rc != SOCHDB_OK)
          return rc;
      }
    }
    int rc = sst_iter_next(&c->it, &c->e);
    if (rc == SOCHDB_OK) {
      c->valid = 1;
      return SOCHDB_OK;
    }
    if (rc != SOCHDB_NOTFOUND)
      return sdb_fail(rc, "SSTable %06llu: %s", (unsigned long long)c->ts->files[c->file]->number,
                      sochdb_last_error());
    cursor_close_file(c);
    c->file++;
    seek = NULL;       /* the next file of a level starts above the seek key */
  }
}

static int open_table_cursors(sochdb_iter *it, const void *start, size_t slen)
{
  const struct sdb_tables *ts = it->t->tables;
  uint32_t n0 = ts->level_start[1] - ts->level_start[0];
  it->tab = calloc(n0 + SDB_LEVELS, sizeof *it->tab);
  if (!it->tab)
    return sdb_fail(SOCHDB_NOMEM, "allocating SSTable cursors");
  for (uint32_t i = 0; i < n0; i++)
    it->tab[it->ntab++] = (struct table_cursor){ .ts = ts, .file = ts->level_start[0] + i,
                                                 .end = ts->level_start[0] + i + 1 };
  for (unsigned l = 1; l < SDB_LEVELS; l++) {
    uint32_t first = sdb_tables_seek_level(ts, l, start, slen);
    if (first < ts->level_start[l + 1])
      it->tab[it->ntab++] = (struct table_cursor){ .ts = ts, .file = first, .end = ts->level_start[l + 1] };
  }
  for (uint32_t i = 0; i < it->ntab; i++) {
    int rc = cursor_step(&it->tab[i], start, slen);
    if (rc != SOCHDB_OK)
      return rc;
  }
  return SOCHDB_OK;
}

/* Among the table cursors at key k, the visible version with the highest
** seq (skipping, on each, versions newer than the snapshot): 1 found, 0
** none, or minus an error code. */
static int tables_candidate(sochdb_iter *it, const uint8_t *k, uint32_t kl, struct sst_entry *best)
{
  int found = 0;
  for (uint32_t i = 0; i < it->ntab; i++) {
    struct table_cursor *c = &it->tab[i];
    while (c->valid && sl_compare(c->e.key, c->e.klen, k, kl) == 0 && c->e.seq > it->t->snapshot) {
      int rc = cursor_step(c, NULL, 0);
      if (rc != SOCHDB_OK)
        return -rc;
    }
    if (c->valid && sl_compare(c->e.key, c->e.klen, k, kl) == 0 && (!found || c->e.seq > best->seq)) {
      *best = c->e;
      found = 1;
    }
  }
  return found ? 1 : 0;
}

/* Move every table cursor past key k (given as a stable copy). */
static int tables_skip(sochdb_iter *it, const uint8_t *k, uint32_t kl)
{
  for (uint32_t i = 0; i < it->ntab; i++) {
    struct table_cursor *c = &it->tab[i];
    while (c->valid && sl_compare(c->e.key, c->e.klen, k, kl) == 0) {
      int rc = cursor_step(c, NULL, 0);
      if (rc != SOCHDB_OK)
        return rc;
    }
  }
  return SOCHDB_OK;
}

/* ---- open / next / close ------------------------------------------------- */

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
  if (rc == SOCHDB_OK)
    rc = open_table_cursors(it, start, slen);
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

static void take_smaller(const uint8_t **best, uint32_t *blen, const uint8_t *k, uint32_t kl, int ties)
{
  int c = *best ? sl_compare(k, kl, *best, *blen) : -1;
  if (c < 0 || (ties && c == 0)) {
    *best = k;
    *blen = kl;
  }
}

/* The smallest key among the cursors and own writes (NULL when all are done). */
static const uint8_t *smallest_key(const sochdb_iter *it, uint32_t *klen)
{
  const shm_region *r = &it->t->db->region;
  const uint8_t *best = NULL;
  for (uint32_t i = 0; i < it->ncur; i++) {
    if (it->node[i]) {
      const struct sl_node *n = shm_at(r, it->node[i]);
      take_smaller(&best, klen, sl_key(n), n->klen, 0);
    }
  }
  for (uint32_t i = 0; i < it->ntab; i++)
    if (it->tab[i].valid)
      take_smaller(&best, klen, it->tab[i].e.key, it->tab[i].e.klen, 0);
  if (it->pos < it->nown)   /* on a tie, the stable copy in the write buffer */
    take_smaller(&best, klen, it->own[it->pos].key, it->own[it->pos].klen, 1);
  return best;
}

/* The memtables' verdict on key k: 1 decided (visible version in *mv), 0
** not. *stable: the key in the region when a memtable holds it. */
static int memtables_verdict(sochdb_iter *it, const uint8_t *k, uint32_t kl, const struct mv_version **mv,
                             const uint8_t **stable)
{
  const shm_region *r = &it->t->db->region;
  int decided = 0;
  for (uint32_t i = 0; i < it->ncur; i++) {   /* newest memtable first */
    if (!it->node[i] || node_cmp(r, it->node[i], k, kl) != 0)
      continue;
    *stable = sl_key(shm_at(r, it->node[i]));
    if (!decided && (*mv = mv_visible(r, it->node[i], it->t->snapshot)))
      decided = 1;
  }
  return decided;
}

static void memtables_skip(sochdb_iter *it, const uint8_t *k, uint32_t kl)
{
  const shm_region *r = &it->t->db->region;
  for (uint32_t i = 0; i < it->ncur; i++)
    if (it->node[i] && node_cmp(r, it->node[i], k, kl) == 0)
      it->node[i] = sl_next(r, it->node[i]);
}

/* Key k's value from the SSTables: 1 found (live), 0 absent or deleted, or
** minus an error code. The key and value handed out are made to last until
** the transaction ends. */
static int tables_verdict(sochdb_iter *it, const uint8_t *k, uint32_t kl, const void **key, const void **val,
                          size_t *vlen)
{
  struct sst_entry best = { 0 };
  int found = tables_candidate(it, k, kl, &best);
  if (found <= 0)
    return found;
  if (best.kind == SST_DEL)
    return 0;
  const struct sdb_table *t = NULL;
  for (uint32_t i = 0; i < it->ntab && !t; i++)
    if (it->tab[i].valid && it->tab[i].e.val == best.val)
      t = it->tab[i].ts->files[it->tab[i].file];
  const void *v = best.val;
  if (!t || best.val < t->map || best.val >= t->map + t->len)   /* decompressed: copy */
    v = best.vlen ? sdb_txn_keep(it->t, best.val, best.vlen) : best.val;
  const void *kk = sdb_txn_keep(it->t, best.key, best.klen);
  if (!v || !kk)
    return -sdb_fail(SOCHDB_NOMEM, "copying an SSTable entry of %u bytes", best.klen + best.vlen);
  *key = kk;
  *val = v;
  *vlen = best.vlen;
  return 1;
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
  for (;;) {
    uint32_t kl = 0;
    const uint8_t *k = smallest_key(it, &kl);
    if (!k || (it->end && sl_compare(k, kl, it->end, it->elen) >= 0))
      return SOCHDB_NOTFOUND;
    const void *outk = NULL, *v = NULL;
    size_t vl = 0;
    int found = 0;
    const struct mv_version *mv = NULL;
    const uint8_t *stable = NULL;
    if (it->pos < it->nown && sl_compare(it->own[it->pos].key, it->own[it->pos].klen, k, kl) == 0) {
      const struct wb_entry *e = &it->own[it->pos++];
      k = e->key;            /* stable: the write buffer outlives the iterator */
      found = !e->tombstone;
      v = e->val;
      vl = e->vlen;
    } else if (memtables_verdict(it, k, kl, &mv, &stable)) {
      k = stable;            /* stable: the region outlives the transaction */
      found = !(mv->flags & MV_TOMBSTONE);
      v = mv->value;
      vl = mv->vlen;
    } else {
      if (stable)
        k = stable;
      else {
        memcpy(it->kbuf, k, kl);   /* only a cursor holds it: keep it while they move */
        k = it->kbuf;
      }
      found = tables_verdict(it, k, kl, &outk, &v, &vl);
      if (found < 0)
        return -found;
      if (found)
        k = outk;
    }
    outk = k;
    memtables_skip(it, k, kl);
    rc = tables_skip(it, k, kl);
    if (rc != SOCHDB_OK)
      return rc;
    if (found) {
      *key = outk;
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
  for (uint32_t i = 0; i < it->ntab; i++)
    cursor_close_file(&it->tab[i]);
  free(it->tab);
  free(it->own);
  free(it->end);
  free(it);
}
