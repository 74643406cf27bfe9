/*
** tablescan.c — columnar tables, the scan half: a range of a table's rows in
** primary-key order through the transaction's ordinary merge iterator
** (iter.c), opened with a projection so that SSTables give up only the
** requested columns and the filter's, skip the blocks whose min/max exclude
** the filter, and hide the row versions that fail it (sstfmt.h). Rows from
** memtables and the transaction's own writes are whole: the filter is
** evaluated on every row here as well. Where a whole columnar block is the
** only source of its keys (iter.c: sdb_iter_next_rows), its rows are read
** straight from its column segments, without going through row encodings.
** Owns the per-scan and the database's scan statistics.
*/
#include "internal.h"

#include "error.h"
#include "table.h"

#include <stdlib.h>
#include <string.h>

struct sochdb_scan {
  sochdb                *db;
  sochdb_iter           *it;
  const sochdb_table    *tb;
  size_t                 ncols;                      /* columns handed out */
  unsigned               cols[SOCHDB_MAX_COLUMNS];
  struct sst_projection  proj;                       /* the iterator reads it */
  struct sst_read_stats  read;                       /* ... and adds up into it */
  uint64_t               rows;
  uint8_t               *bounds;                     /* copies of the filter's bytes bounds */
  uint64_t               need;                       /* the columns decoded: asked for and the filter's */
  struct sdb_iter_block  blk;                        /* a block being read whole (blk.cv NULL: none) */
  uint32_t               blk_row;                    /* its next row */
  struct sdb_sticky_error failed;                    /* an error that ends the scan: every later next returns it */
  sochdb_value           vals[SOCHDB_MAX_COLUMNS];   /* the row being decoded */
};

/* ---- the filter -------------------------------------------------------------- */

/* A copy of a bytes bound into *at (advanced). */
static void keep_bound(sochdb_value *v, unsigned type, uint8_t **at)
{
  if (rowfmt_fixed(type) || !v->len)
    return;
  memcpy(*at, v->bytes, v->len);
  v->bytes = *at;
  *at += v->len;
}

static int set_bounds(struct rowfmt_filter *f, unsigned op, const sochdb_value *a, const sochdb_value *b)
{
  f->lo = *a;
  f->hi = op == SOCHDB_BETWEEN ? *b : *a;
  switch (op) {
  case SOCHDB_EQ:      f->has_lo = f->has_hi = f->lo_incl = f->hi_incl = 1; break;
  case SOCHDB_LT:      f->has_hi = 1; break;
  case SOCHDB_LE:      f->has_hi = f->hi_incl = 1; break;
  case SOCHDB_GT:      f->has_lo = 1; break;
  case SOCHDB_GE:      f->has_lo = f->lo_incl = 1; break;
  case SOCHDB_BETWEEN: f->has_lo = f->has_hi = f->lo_incl = f->hi_incl = 1; break;
  default:             return sdb_fail(SOCHDB_INVALID, "unknown filter operator %u", op);
  }
  return SOCHDB_OK;
}

/* The caller's filter as the storage layer evaluates it, its bytes copied. */
static int make_filter(sochdb_scan *s, const sochdb_filter *in)
{
  const sochdb_table *tb = s->tb;
  if (in->column >= tb->ncols)
    return sdb_fail(SOCHDB_INVALID, "filter on column %u of table '%s', which has %zu", in->column, tb->name,
                    tb->ncols);
  const sochdb_value *a = &in->value, *b = &in->value2;
  int two = in->op == SOCHDB_BETWEEN;
  if (a->is_null || (two && b->is_null))
    return sdb_fail(SOCHDB_INVALID, "a filter bound cannot be NULL (NULL never passes a filter)");
  unsigned type = tb->types[in->column];
  if (!rowfmt_fixed(type) && ((a->len && !a->bytes) || (two && b->len && !b->bytes)))
    return sdb_fail(SOCHDB_INVALID, "a filter bound of bytes at NULL");
  if (!rowfmt_fixed(type) && (a->len > SOCHDB_MAX_VALUE || (two && b->len > SOCHDB_MAX_VALUE)))
    return sdb_fail(SOCHDB_INVALID, "a filter bound above %u bytes (no stored value is longer)", SOCHDB_MAX_VALUE);
  struct rowfmt_filter *f = &s->proj.f;
  memset(f, 0, sizeof *f);
  f->col = in->column;
  f->type = type;
  int rc = set_bounds(f, in->op, a, b);
  if (rc)
    return rc;
  size_t need = rowfmt_fixed(type) ? 0 : a->len + (two ? b->len : 0);
  uint8_t *at = s->bounds = malloc(need ? need : 1);
  if (!at)
    return sdb_fail(SOCHDB_NOMEM, "copying a filter");
  keep_bound(&f->lo, type, &at);
  if (two)
    keep_bound(&f->hi, type, &at);
  else
    f->hi = f->lo;
  s->proj.filtered = 1;
  return SOCHDB_OK;
}

/* ---- open / next / close ------------------------------------------------------ */

static int set_columns(sochdb_scan *s, const unsigned *cols, size_t ncols)
{
  const sochdb_table *tb = s->tb;
  if (cols && (ncols == 0 || ncols > SOCHDB_MAX_COLUMNS))
    return sdb_fail(SOCHDB_INVALID, "a scan of %zu columns (1 to %u)", ncols, SOCHDB_MAX_COLUMNS);
  s->ncols = cols ? ncols : tb->ncols;
  for (size_t i = 0; i < s->ncols; i++) {
    s->cols[i] = cols ? cols[i] : (unsigned)i;
    if (s->cols[i] >= tb->ncols)
      return sdb_fail(SOCHDB_INVALID, "column %u of table '%s', which has %zu", s->cols[i], tb->name, tb->ncols);
    s->proj.columns |= 1ull << s->cols[i];
  }
  return SOCHDB_OK;
}

/* The row keys [start, end) of the scan: a bound pk, or the table's edge. */
static int range_key(const sochdb_table *tb, const sochdb_value *pk, int upper, uint8_t *key, size_t *klen)
{
  if (pk) {
    *klen = sdb_row_key(tb, pk, key);
    return *klen ? SOCHDB_OK : SOCHDB_INVALID;
  }
  rowfmt_row_prefix(key, tb->id);
  *klen = upper ? rowfmt_successor(key, ROWFMT_PREFIX_LEN) : ROWFMT_PREFIX_LEN;
  return SOCHDB_OK;
}

static int open_iterator(sochdb_scan *s, sochdb_txn *t, const sochdb_value *start_pk, const sochdb_value *end_pk)
{
  uint8_t lo[SOCHDB_MAX_KEY], hi[SOCHDB_MAX_KEY];
  size_t lolen, hilen;
  int rc = range_key(s->tb, start_pk, 0, lo, &lolen);
  if (rc == SOCHDB_OK)
    rc = range_key(s->tb, end_pk, 1, hi, &hilen);
  if (rc)
    return rc;
  struct sdb_iter_opts o = { .proj = &s->proj, .stats = &s->read, .transient = 1 };
  return sdb_iter_open(t, lo, lolen, hi, hilen, &o, &s->it);
}

int sochdb_table_scan(sochdb_txn *t, sochdb_table *tb, const sochdb_value *start_pk, const sochdb_value *end_pk,
                      const unsigned *cols, size_t ncols, const sochdb_filter *filter, sochdb_scan **out)
{
  int rc = sdb_table_check(t, tb);
  if (rc == SOCHDB_OK && !out)
    rc = sdb_fail(SOCHDB_INVALID, "NULL scan output");
  if (rc)
    return rc;
  *out = NULL;
  sochdb_scan *s = calloc(1, sizeof *s);
  if (!s)
    return sdb_fail(SOCHDB_NOMEM, "allocating a scan");
  s->db = t->db;
  s->tb = tb;
  s->proj.table = tb->id;
  rc = set_columns(s, cols, ncols);
  if (rc == SOCHDB_OK && filter)
    rc = make_filter(s, filter);
  s->need = s->proj.columns | (s->proj.filtered ? 1ull << s->proj.f.col : 0);
  if (rc == SOCHDB_OK)
    rc = open_iterator(s, t, start_pk, end_pk);
  if (rc) {
    sochdb_scan_close(s, NULL);
    return rc;
  }
  *out = s;
  return SOCHDB_OK;
}

/* Column c of row r of the block being read, checked against the schema. */
static int block_value(const sochdb_scan *s, unsigned c, uint32_t r, sochdb_value *v)
{
  unsigned type;
  if (sst_colview_get(s->blk.cv, c, r, &type, v) != SOCHDB_OK || (type && type != s->tb->types[c]))
    return sdb_fail(SOCHDB_CORRUPT, "a block of table '%s' holds column '%s' of another type", s->tb->name,
                    s->tb->names[c]);
  return sdb_row_check_null(s->tb, c, v);
}

/* The next row of the block being read that passes the filter: 1 with
** out[] filled, 0 when the block is done, or minus an error code. */
static int block_next(sochdb_scan *s, sochdb_value *out)
{
  while (!s->blk.skipped && s->blk_row < s->blk.nrows) {
    uint32_t r = s->blk_row++;
    sochdb_value fv;
    int rc = s->proj.filtered ? block_value(s, s->proj.f.col, r, &fv) : SOCHDB_OK;
    if (rc)
      return -rc;
    if (s->proj.filtered && !rowfmt_match(&s->proj.f, &fv))
      continue;
    for (size_t i = 0; i < s->ncols; i++)
      if ((rc = block_value(s, s->cols[i], r, &out[i])))
        return -rc;
    s->rows++;
    return 1;
  }
  s->blk.cv = NULL;
  return 0;
}

static int scan_step(sochdb_scan *s, sochdb_value *out);

/* A failure is sticky, as an iterator's is (struct sdb_sticky_error). */
int sochdb_scan_next(sochdb_scan *s, sochdb_value *out)
{
  if (!s || !out)
    return sdb_fail(SOCHDB_INVALID, "NULL scan or row output");
  int rc = sdb_sticky_get(&s->failed);
  return rc ? rc : sdb_sticky_note(&s->failed, scan_step(s, out));
}

static int scan_step(sochdb_scan *s, sochdb_value *out)
{
  /* The iterator first: its transaction outlives a sochdb_close of the
  ** handle (an orphan while iterators are open) and says it ended, where
  ** the handle is freed. It also guards a block taken whole, which reads
  ** the transaction's mappings directly. */
  int rc = sdb_iter_check(s->it);
  if (rc == SOCHDB_OK)
    rc = sdb_check_db(s->db);
  if (rc)
    return rc;
  for (;;) {
    int b = s->blk.cv ? block_next(s, out) : 0;
    if (b)
      return b > 0 ? SOCHDB_OK : -b;
    const void *k, *v;
    size_t kl, vl;
    rc = sdb_iter_next_rows(s->it, &k, &kl, &v, &vl, &s->blk);
    if (rc)
      return rc;
    if (s->blk.cv) {
      s->blk_row = 0;
      continue;
    }
    unsigned nv;
    if ((rc = sdb_row_decode(s->tb, v, vl, s->need, &nv, s->vals)))
      return rc;
    if (s->proj.filtered) {     /* memtable and own rows come whole, unfiltered */
      sochdb_value fv;
      sdb_row_column(s->vals, nv, s->proj.f.col, &fv);
      if (!rowfmt_match(&s->proj.f, &fv))
        continue;
    }
    if ((rc = sdb_row_columns_out(s->tb, s->vals, nv, s->cols, s->ncols, out)))
      return rc;
    s->rows++;
    return SOCHDB_OK;
  }
}

static void add(_Atomic uint64_t *counter, uint64_t n)
{
  atomic_fetch_add_explicit(counter, n, memory_order_relaxed);   /* statistics only */
}

void sochdb_scan_close(sochdb_scan *s, sochdb_scan_stats *stats)
{
  if (!s)
    return;
  sochdb_scan_stats st = { .scans = 1, .rows = s->rows, .blocks_read = s->read.blocks_read,
                           .blocks_skipped = s->read.blocks_skipped, .blocks_direct = s->read.blocks_direct,
                           .bytes_read = s->read.bytes_read,
                           .bytes_decompressed = s->read.bytes_decompressed };
  if (stats)
    *stats = st;
  if (s->it && sdb_iter_check(s->it) == SOCHDB_OK && sdb_check_db(s->db) == SOCHDB_OK) {   /* as scan_step */
    struct shm_global_stats *g = &s->db->region.hdr->stats;
    add(&g->table_scans, 1);
    add(&g->scan_rows, st.rows);
    add(&g->scan_blocks_read, st.blocks_read);
    add(&g->scan_blocks_skipped, st.blocks_skipped);
    add(&g->scan_blocks_direct, st.blocks_direct);
    add(&g->scan_bytes_read, st.bytes_read);
    add(&g->scan_bytes_decompressed, st.bytes_decompressed);
  }
  sochdb_iter_close(s->it);
  free(s->bounds);
  free(s);
}

static uint64_t get(const _Atomic uint64_t *counter)
{
  return atomic_load_explicit(counter, memory_order_relaxed);   /* statistics only */
}

int sochdb_scan_stats_get(sochdb *db, sochdb_scan_stats *out)
{
  int rc = sdb_check_db(db);
  if (rc == SOCHDB_OK && !out)
    rc = sdb_fail(SOCHDB_INVALID, "NULL scan stats output");
  if (rc)
    return rc;
  const struct shm_global_stats *g = &db->region.hdr->stats;
  *out = (sochdb_scan_stats){ .scans = get(&g->table_scans), .rows = get(&g->scan_rows),
                              .blocks_read = get(&g->scan_blocks_read),
                              .blocks_skipped = get(&g->scan_blocks_skipped),
                              .blocks_direct = get(&g->scan_blocks_direct),
                              .bytes_read = get(&g->scan_bytes_read),
                              .bytes_decompressed = get(&g->scan_bytes_decompressed) };
  return SOCHDB_OK;
}
