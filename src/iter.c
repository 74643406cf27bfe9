/*
** iter.c — range iterators: a merge of the transaction's own writes, every
** live memtable of its view, and its SSTables (taken at its first read:
** src/txn.c, sdb_txn_tables), in key order.
**
** For each key the newest source wins: the transaction's own write first,
** then the newest memtable holding a version visible at the snapshot (a
** key's versions in newer memtables are always newer, see txn.c, and every
** memtable is newer than every SSTable for the keys it holds), then, among
** the SSTables, the visible version with the highest commit seq. Tombstones
** hide the key. Keys and values in the region, in the write buffer or in a
** mapped uncompressed block are handed out without copying; those of
** compressed blocks and SSTable keys are copied into the transaction.
**
** Table scans (src/table.c) open the same merge through sdb_iter_open with a
** projection, which the SSTable cursors apply to columnar blocks (sstfmt.h):
** a version that fails the filter comes out of them as SST_SKIP and hides
** the key like a tombstone; and "transient" values, copied into the
** iterator and valid until its next call, so that a long scan does not keep
** every row it read until the transaction ends. The public sochdb_iter_open
** never reaches the reserved keys (0xFF 0xFF ..., rowfmt.h).
**
** Runs: while one SSTable cursor, or one memtable's, alone holds the keys
** below every other source's current key (the others stay where they are
** meanwhile), its entries are taken one after the other without comparing
** them with the other sources: a long scan over a compacted level costs two
** key comparisons per key instead of several per source, and over the keys
** only a memtable holds (the newest of a load in key order) none but the
** bound's. A run that ends at once
** backs off for a few keys, so interleaved sources pay little for trying.
** Within a run, a table scan (sdb_iter_next_rows) is handed a whole columnar
** block at once when every row of it is the only, visible version of its key
** (sst_iter_take_block): the scan reads it column by column.
*/
#include "internal.h"

#include "error.h"
#include "mvcc.h"
#include "rowfmt.h"
#include "skiplist.h"
#include "tables.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cursor over one L0 file or over one whole level >= 1 (its files in order). */
struct table_cursor {
  const struct sdb_tables *ts;
  const struct sdb_iter_opts *o;  /* the iterator's: projection, stats */
  uint32_t         file, end;     /* the file being read, and one past the last */
  int              open;          /* it holds an sst_iter on file */
  int              valid;         /* e is its current entry */
  const uint8_t   *map, *map_end; /* the open file's mapping (hand_out asks of every entry) */
  struct sst_iter  it;
  struct sst_entry e;
};

_Static_assert(SHM_MAX_MEMTABLES <= 64, "sochdb_iter's mem_min has a bit per memtable of a view");

struct sochdb_iter {
  sochdb_txn      *t;
  uint64_t         generation;   /* t's when opened: t may be reused once it ends */
  uint8_t         *end;          /* exclusive bound, NULL = none */
  uint32_t         elen;
  uint32_t         ncur;
  uint64_t         node[SHM_MAX_MEMTABLES];   /* cursor per memtable of the view */
  struct wb_entry *own;          /* own writes in range, key order, as at open */
  size_t           nown, pos;
  uint32_t         ntab;
  struct table_cursor *tab;      /* L0 files, then one per deeper level */
  /* The sources whose current key is the one smallest_key found: the
  ** general step asks only them for their verdict and moves only them. */
  uint64_t         mem_min;      /* bit i: node[i] (so at most 64 of them: below) */
  uint32_t        *tab_min;      /* indexes into tab, ntab_min of them */
  uint32_t         ntab_min;
  int              own_min;      /* own[pos] */
  struct sdb_iter_opts o;
  int              run;          /* the table cursor of the run in progress, -1 if none */
  int              mrun;         /* the memtable cursor (node[]) of the run in progress, -1 if none */
  const uint8_t   *run_end;      /* the run's bound: another source's current key (NULL: none) */
  uint32_t         run_elen;
  uint32_t         run_rows;     /* keys the run went through */
  unsigned         run_backoff;  /* general steps before a run is tried again */
  int              run_taken;    /* the run's cursor is on a block handed over whole */
  uint32_t         taken_klen;   /* ... whose last key is in kbuf */
  uint8_t         *vbuf;         /* transient: the value handed out last */
  size_t           vcap;
  uint8_t          kbuf[SOCHDB_MAX_KEY];   /* the key being decided, when only a cursor holds it */
  struct sdb_sticky_error failed;   /* a source failed (damage, no memory): every later next reports it */
};

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
      c->map = t->map;
      c->map_end = t->map + t->len;
      if (c->o->proj)
        sst_iter_project(&c->it, c->o->proj, c->o->stats);
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
      return sdb_fail_prefix(rc, "SSTable %06llu", (unsigned long long)c->ts->files[c->file]->number);
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
  it->tab_min = calloc(n0 + SDB_LEVELS, sizeof *it->tab_min);
  if (!it->tab || !it->tab_min)
    return sdb_fail(SOCHDB_NOMEM, "allocating SSTable cursors");
  for (uint32_t i = 0; i < n0; i++)
    it->tab[it->ntab++] = (struct table_cursor){ .ts = ts, .o = &it->o, .file = ts->level_start[0] + i,
                                                 .end = ts->level_start[0] + i + 1 };
  for (unsigned l = 1; l < SDB_LEVELS; l++) {
    uint32_t first = sdb_tables_seek_level(ts, l, start, slen);
    if (first < ts->level_start[l + 1])
      it->tab[it->ntab++] =
          (struct table_cursor){ .ts = ts, .o = &it->o, .file = first, .end = ts->level_start[l + 1] };
  }
  for (uint32_t i = 0; i < it->ntab; i++) {
    int rc = cursor_step(&it->tab[i], start, slen);
    if (rc != SOCHDB_OK)
      return rc;
  }
  return SOCHDB_OK;
}

/* Among the table cursors at key k (tab_min), the visible version with the
** highest seq (skipping, on each, versions newer than the snapshot): 1
** found, 0 none, or minus an error code. */
static int tables_candidate(sochdb_iter *it, const uint8_t *k, uint32_t kl, struct sst_entry *best)
{
  int found = 0;
  for (uint32_t j = 0; j < it->ntab_min; j++) {
    struct table_cursor *c = &it->tab[it->tab_min[j]];
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

/* Move the table cursors at key k (tab_min; k given as a stable copy) past it. */
static int tables_skip(sochdb_iter *it, const uint8_t *k, uint32_t kl)
{
  for (uint32_t j = 0; j < it->ntab_min; j++) {
    struct table_cursor *c = &it->tab[it->tab_min[j]];
    while (c->valid && sl_compare(c->e.key, c->e.klen, k, kl) == 0) {
      int rc = cursor_step(c, NULL, 0);
      if (rc != SOCHDB_OK)
        return rc;
    }
  }
  return SOCHDB_OK;
}

/* ---- open / next / close ------------------------------------------------- */

static int iter_open(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                     const struct sdb_iter_opts *o, sochdb_iter **out)
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
  it->generation = t->generation;
  it->run = -1;
  it->mrun = -1;
  if (o)
    it->o = *o;
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
  t->iters++;          /* t is kept until we close, even once it ends (txn.c, keep_spare) */
  rc = copy_own_writes(it, start, (uint32_t)slen);
  if (rc == SOCHDB_OK)
    rc = sdb_txn_tables(t);
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

/* An iterator over a user range: the reserved keys start at 0xFF 0xFF, and
** every user range ends there (a bad bound is left as it is, for iter_open
** to report). */
static int user_iter_open(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                          const struct sdb_iter_opts *o, sochdb_iter **out)
{
  int bad_end = elen > SOCHDB_MAX_KEY || (!end && elen);
  if (!bad_end && (!elen || sl_compare(end, (uint32_t)elen, rowfmt_reserved_start, 2) > 0)) {
    end = rowfmt_reserved_start;
    elen = 2;
  }
  return iter_open(t, start, slen, end, elen, o, out);
}

int sochdb_iter_open(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                     sochdb_iter **out)
{
  return user_iter_open(t, start, slen, end, elen, NULL, out);
}

int sochdb_iter_open_transient(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                               sochdb_iter **out)
{
  static const struct sdb_iter_opts transient = { .transient = 1 };
  return user_iter_open(t, start, slen, end, elen, &transient, out);
}

int sdb_iter_open(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                  const struct sdb_iter_opts *o, sochdb_iter **out)
{
  return iter_open(t, start, slen, end, elen, o, out);
}

/* others_min's step: k becomes *best if it is smaller (or *best is none). */
static void take_smaller(const uint8_t **best, uint32_t *blen, const uint8_t *k, uint32_t kl)
{
  if (!*best || sl_compare(k, kl, *best, *blen) < 0) {
    *best = k;
    *blen = kl;
  }
}

/* The smallest key among the cursors and own writes (NULL when all are
** done), and which sources hold it (mem_min, tab_min, own_min). */
static const uint8_t *smallest_key(sochdb_iter *it, uint32_t *klen)
{
  const shm_region *r = &it->t->db->region;
  const uint8_t *best = NULL;
  it->mem_min = 0;
  it->ntab_min = 0;
  it->own_min = 0;
  for (uint32_t i = 0; i < it->ncur; i++) {
    if (!it->node[i])
      continue;
    const struct sl_node *n = shm_at(r, it->node[i]);
    int c = best ? sl_compare(sl_key(n), n->klen, best, *klen) : -1;
    if (c < 0) {
      best = sl_key(n);
      *klen = n->klen;
      it->mem_min = 0;
    }
    if (c <= 0)
      it->mem_min |= 1ull << i;
  }
  for (uint32_t i = 0; i < it->ntab; i++) {
    const struct table_cursor *tc = &it->tab[i];
    if (!tc->valid)
      continue;
    int c = best ? sl_compare(tc->e.key, tc->e.klen, best, *klen) : -1;
    if (c < 0) {
      best = tc->e.key;
      *klen = tc->e.klen;
      it->mem_min = 0;
      it->ntab_min = 0;
    }
    if (c <= 0)
      it->tab_min[it->ntab_min++] = i;
  }
  if (it->pos < it->nown) {
    const struct wb_entry *e = &it->own[it->pos];
    int c = best ? sl_compare(e->key, e->klen, best, *klen) : -1;
    if (c < 0) {
      it->mem_min = 0;
      it->ntab_min = 0;
    }
    if (c <= 0) {   /* on a tie, the write buffer's copy (as iter_step takes it) */
      best = e->key;
      *klen = e->klen;
      it->own_min = 1;
    }
  }
  return best;
}

/* The verdict of the memtables at the smallest key (mem_min): 1 decided
** (visible version in *mv), 0 not. *stable: the key in the region when a
** memtable holds it. */
static int memtables_verdict(sochdb_iter *it, const struct mv_version **mv, const uint8_t **stable)
{
  const shm_region *r = &it->t->db->region;
  int decided = 0;
  for (uint64_t m = it->mem_min; m; m &= m - 1) {   /* newest memtable (lowest index) first */
    uint32_t i = (uint32_t)__builtin_ctzll(m);
    *stable = sl_key(shm_at(r, it->node[i]));
    if (!decided && (*mv = mv_visible(r, it->node[i], it->t->snapshot)))
      decided = 1;
  }
  return decided;
}

/* Move the memtable cursors at the smallest key (mem_min) past it. */
static void memtables_skip(sochdb_iter *it)
{
  const shm_region *r = &it->t->db->region;
  for (uint64_t m = it->mem_min; m; m &= m - 1) {
    uint32_t i = (uint32_t)__builtin_ctzll(m);
    it->node[i] = sl_next(r, it->node[i]);
  }
}

/* Transient mode: the value copied into the iterator (the cursors move on
** before it is returned); k is already stable until the next call. */
static int transient_value(sochdb_iter *it, const uint8_t *k, const struct sst_entry *best, const void **key,
                           const void **val, size_t *vlen)
{
  if (best->vlen > it->vcap) {
    size_t cap = it->vcap ? it->vcap : 256;
    while (cap < best->vlen)
      cap *= 2;
    uint8_t *p = realloc(it->vbuf, cap);
    if (!p)
      return -sdb_fail(SOCHDB_NOMEM, "copying a row of %u bytes", best->vlen);
    it->vbuf = p;
    it->vcap = cap;
  }
  if (best->vlen)
    memcpy(it->vbuf, best->val, best->vlen);
  *key = k;
  *val = it->vbuf;
  *vlen = best->vlen;
  return 1;
}

/* 1 if p points into the mapping of cursor c's file, which the
** transaction holds until it ends (c NULL: unknown, or p NULL: no). */
static inline int in_mapping(const struct table_cursor *c, const uint8_t *p)
{
  return c && p && p >= c->map && p < c->map_end;
}

/* hand_out's other cases: transient, or a copy to keep. */
static int hand_out_copy(sochdb_iter *it, const struct table_cursor *c, const struct sst_entry *e, const uint8_t *k,
                         const void **key, const void **val, size_t *vlen)
{
  if (it->o.transient)
    return transient_value(it, k, e, key, val, vlen);
  const void *v = e->val, *kk = e->stored_key;
  if (!in_mapping(c, e->val))   /* decompressed: copy */
    v = e->vlen ? sdb_txn_keep(it->t, e->val, e->vlen) : e->val;
  /* a key stored whole in the mapping is handed out in place, as values are
  ** (version 3 stores every key's first entry in a block whole); one that
  ** shares a prefix, or is in a decompressed block, is copied */
  if (!in_mapping(c, e->stored_key))
    kk = sdb_txn_keep(it->t, e->key, e->klen);
  if (!v || !kk)
    return -sdb_fail(SOCHDB_NOMEM, "copying an SSTable entry of %u bytes", e->klen + e->vlen);
  *key = kk;
  *val = v;
  *vlen = e->vlen;
  return 1;
}

/* Entry e (a live PUT of key k, which is stable until the next call) of
** table cursor c (NULL: unknown), made to last as long as the iterator
** promises: 1, or -SOCHDB_NOMEM. Called before the cursor moves past it.
** Inline, the common case of a scan: key and value in place in the mapping. */
static inline int hand_out(sochdb_iter *it, const struct table_cursor *c, const struct sst_entry *e,
                           const uint8_t *k, const void **key, const void **val, size_t *vlen)
{
  if (it->o.transient || !in_mapping(c, e->val) || !in_mapping(c, e->stored_key))
    return hand_out_copy(it, c, e, k, key, val, vlen);
  *key = e->stored_key;
  *val = e->val;
  *vlen = e->vlen;
  return 1;
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
  if (best.kind != SST_PUT)   /* a tombstone, or a version the projection's filter hides */
    return 0;
  const struct table_cursor *c = NULL;
  for (uint32_t j = 0; j < it->ntab_min && !c; j++) {
    const struct table_cursor *tc = &it->tab[it->tab_min[j]];
    if (tc->valid && tc->e.val == best.val)
      c = tc;
  }
  return hand_out(it, c, &best, k, key, val, vlen);
}

/* ---- runs ------------------------------------------------------------------ */

/* The smallest current key of every source but table cursor `skip` (or
** memtable cursor `mskip`; -1: none), and the iterator's end: the bound of
** a run of that cursor (NULL: none). Each is stable while its source does
** not move. */
static const uint8_t *others_min(const sochdb_iter *it, int skip, int mskip, uint32_t *blen)
{
  const shm_region *r = &it->t->db->region;
  const uint8_t *best = it->end;
  *blen = it->elen;
  for (uint32_t i = 0; i < it->ncur; i++) {
    if (it->node[i] && (int)i != mskip) {
      const struct sl_node *n = shm_at(r, it->node[i]);
      take_smaller(&best, blen, sl_key(n), n->klen);
    }
  }
  for (uint32_t i = 0; i < it->ntab; i++)
    if ((int)i != skip && it->tab[i].valid)
      take_smaller(&best, blen, it->tab[i].e.key, it->tab[i].e.klen);
  if (it->pos < it->nown)
    take_smaller(&best, blen, it->own[it->pos].key, it->own[it->pos].klen);
  return best;
}

/* Start a run if one table cursor, or one memtable cursor, alone holds the
** smallest key (smallest_key says which sources hold it) and that key is
** below every other source's. Without a run: that smallest key, its
** sources recorded for the general step (NULL if it looked for none, or all
** are done: the step looks again). */
static const uint8_t *run_try(sochdb_iter *it, uint32_t *klen)
{
  if (it->run_backoff) {
    it->run_backoff--;
    return NULL;
  }
  uint32_t kl = 0;
  const uint8_t *k = smallest_key(it, &kl);
  if (!k)
    return NULL;
  int first = it->ntab_min ? (int)it->tab_min[0] : -1;
  int mfirst = it->mem_min ? __builtin_ctzll(it->mem_min) : -1;
  int alone = __builtin_popcountll(it->mem_min) + it->ntab_min == 1 && !it->own_min;
  if (alone)   /* the others' smallest keys are above k: only the end can bound the run at k */
    it->run_end = others_min(it, first, mfirst, &it->run_elen);
  if (!alone || (it->run_end && sl_compare(k, kl, it->run_end, it->run_elen) >= 0)) {
    it->run_backoff = 8;
    *klen = kl;
    return k;
  }
  it->run = first;
  it->mrun = mfirst;
  it->run_rows = 0;
  return NULL;
}

static void run_over(sochdb_iter *it)
{
  if (it->run_rows < 2)
    it->run_backoff = 8;
  it->run = -1;
  it->mrun = -1;
}

/* Move the run's cursor past the block handed over whole, and past the
** older versions of its last key (they may begin the next block). */
static int run_leave_block(sochdb_iter *it, struct table_cursor *c)
{
  it->run_taken = 0;
  int rc = cursor_step(c, NULL, 0);   /* past its first row, whose entry c held: the rest went with it */
  while (rc == SOCHDB_OK && c->valid && key_order(c->e.key, c->e.klen, it->kbuf, it->taken_klen) == 0)
    rc = cursor_step(c, NULL, 0);
  return rc;
}

/* The cursor's block, whole, if it can be handed over: 1, or 0. */
static int run_take_block(sochdb_iter *it, struct table_cursor *c, struct sdb_iter_block *blk)
{
  const uint8_t *last;
  uint32_t lastlen;
  if (!blk || !sst_iter_take_block(&c->it, it->t->snapshot, it->run_end, it->run_elen, &blk->cv, &blk->nrows,
                                   &blk->skipped, &last, &lastlen))
    return 0;
  memcpy(it->kbuf, last, lastlen);
  it->taken_klen = lastlen;
  if (it->o.stats)
    it->o.stats->blocks_direct++;
  it->run_taken = 1;
  it->run_rows += blk->nrows;
  return 1;
}

/* The run's next live key: 1 with it handed out (the key in kbuf), 2 with a
** whole block in *blk (when blk is not NULL), 0 when the run is over (its
** cursor reached the bound or its end), or minus an error code. Each key's
** versions are newest first: the first at or below the snapshot decides;
** the others are passed over. */
static int run_next(sochdb_iter *it, const void **key, uint32_t *klen, const void **val, size_t *vlen,
                    struct sdb_iter_block *blk)
{
  struct table_cursor *c = &it->tab[it->run];
  if (it->run_taken) {
    int rc = run_leave_block(it, c);
    if (rc != SOCHDB_OK)
      return -rc;
  }
  while (c->valid && (!it->run_end || key_order(c->e.key, c->e.klen, it->run_end, it->run_elen) < 0)) {
    if (run_take_block(it, c, blk))
      return 2;
    uint32_t kl = c->e.klen;
    copy_short(it->kbuf, c->e.key, kl);
    int decided = 0, found = 0;
    do {   /* the key's versions: the first is the key just copied */
      if (!decided && c->e.seq <= it->t->snapshot) {
        decided = 1;
        found = c->e.kind == SST_PUT ? hand_out(it, c, &c->e, it->kbuf, key, val, vlen) : 0;
        if (found < 0)
          return found;
      }
      int rc = cursor_step(c, NULL, 0);
      if (rc != SOCHDB_OK)
        return -rc;
    } while (c->valid && key_order(c->e.key, c->e.klen, it->kbuf, kl) == 0);
    it->run_rows++;
    if (found) {
      *klen = kl;
      return 1;
    }
  }
  run_over(it);
  return 0;
}

/* The memtable run's next live key: 1 with it handed out (key and value in
** the region: stable), 0 when the run is over. No other source holds its
** keys, so a node without a version visible at the snapshot is a key that
** does not exist there, and is passed over. A node another process links
** below the bound meanwhile, here or in another source behind its cursor,
** holds only versions newer than the snapshot: a commit installs its
** versions before it claims and publishes its seq (src/txn.c), so one at or
** below the snapshot was installed before this transaction began. The
** general step relies on the same order for the nodes its cursors passed. */
static int mrun_next(sochdb_iter *it, const void **key, uint32_t *klen, const void **val, size_t *vlen)
{
  const shm_region *r = &it->t->db->region;
  uint64_t *node = &it->node[it->mrun];
  while (*node) {
    const struct sl_node *n = shm_at(r, *node);
    if (it->run_end && sl_compare(sl_key(n), n->klen, it->run_end, it->run_elen) >= 0)
      break;
    const struct mv_version *mv = mv_visible(r, *node, it->t->snapshot);
    *node = sl_next(r, *node);
    it->run_rows++;
    if (mv && !mv_is_tombstone(mv)) {
      *key = sl_key(n);
      *klen = n->klen;
      *val = mv->value;
      *vlen = mv_vlen(mv);
      return 1;
    }
  }
  run_over(it);
  return 0;
}

/* run_next as sochdb_iter_next returns it: SOCHDB_OK with a key (or a
** block), an error code, or RUN_OVER. */
#define RUN_OVER (-1)
static int run_step(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen,
                    struct sdb_iter_block *blk)
{
  uint32_t kl = 0;
  int r = it->mrun >= 0 ? mrun_next(it, key, &kl, val, vlen) : run_next(it, key, &kl, val, vlen, blk);
  if (r < 0)
    return -r;
  *klen = kl;
  return r ? SOCHDB_OK : RUN_OVER;
}

static int iter_step(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen,
                     struct sdb_iter_block *blk);

/* One step, with a failure made sticky (struct sdb_sticky_error). */
static int iter_next(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen,
                     struct sdb_iter_block *blk)
{
  if (!it)
    return iter_step(it, key, klen, val, vlen, blk);
  int rc = sdb_sticky_get(&it->failed);
  return rc ? rc : sdb_sticky_note(&it->failed, iter_step(it, key, klen, val, vlen, blk));
}

/* sdb_iter_check, inline for sochdb_iter_next's every key. */
static inline int iter_check(const sochdb_iter *it)
{
  int rc = sdb_check_txn(it->t);
  if (rc == SOCHDB_OK && it->t->generation != it->generation)
    rc = sdb_fail(SOCHDB_INVALID, "the iterator's transaction has ended");
  return rc;
}

int sdb_iter_check(const sochdb_iter *it)
{
  return iter_check(it);
}

static int iter_step(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen,
                     struct sdb_iter_block *blk)
{
  if (!it)
    return sdb_fail(SOCHDB_INVALID, "NULL iterator");
  int rc = iter_check(it);
  if (rc != SOCHDB_OK)
    return rc;
  if (!key || !klen || !val || !vlen)
    return sdb_fail(SOCHDB_INVALID, "NULL iterator output");
  for (;;) {
    uint32_t kl = 0;
    const uint8_t *k = NULL;
    if (it->run < 0 && it->mrun < 0)
      k = run_try(it, &kl);
    if (it->run >= 0 || it->mrun >= 0) {
      rc = run_step(it, key, klen, val, vlen, blk);
      if (rc != RUN_OVER)
        return rc;
      continue;
    }
    if (!k)
      k = smallest_key(it, &kl);
    if (!k || (it->end && sl_compare(k, kl, it->end, it->elen) >= 0))
      return SOCHDB_NOTFOUND;
    const void *outk = NULL, *v = NULL;
    size_t vl = 0;
    int found = 0;
    const struct mv_version *mv = NULL;
    const uint8_t *stable = NULL;
    if (it->own_min) {
      const struct wb_entry *e = &it->own[it->pos++];
      k = e->key;            /* stable: the write buffer outlives the iterator */
      found = !e->tombstone;
      v = e->val;
      vl = e->vlen;
    } else if (memtables_verdict(it, &mv, &stable)) {
      k = stable;            /* stable: the region outlives the transaction */
      found = !mv_is_tombstone(mv);
      v = mv->value;
      vl = mv_vlen(mv);
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
    memtables_skip(it);
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

int sochdb_iter_next(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen)
{
  return iter_next(it, key, klen, val, vlen, NULL);
}

int sdb_iter_next_rows(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen,
                       struct sdb_iter_block *blk)
{
  blk->cv = NULL;
  return iter_next(it, key, klen, val, vlen, blk);
}

void sochdb_iter_close(sochdb_iter *it)
{
  if (!it)
    return;
  for (uint32_t i = 0; i < it->ntab; i++)
    cursor_close_file(&it->tab[i]);
  free(it->tab);
  free(it->tab_min);
  free(it->vbuf);
  free(it->own);
  free(it->end);
  if (it->t && --it->t->iters == 0 && it->t->orphan)
    sdb_txn_free(it->t);   /* the transaction ended while we were open */
  free(it);
}
