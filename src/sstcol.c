/*
** sstcol.c — the columnar half of the SSTable format (layout in sstfmt.h):
** splitting a table's rows into column buffers while a block is built,
** writing a block's index descriptor, parsing it back, checking a column
** segment, reading one row's values out of the loaded segments, and the
** min/max test that lets a filtered scan skip a block. Blocks, pieces,
** checksums and caching stay in sstfmt.c.
*/
#include "sstfmt_int.h"

#include "bytes.h"
#include "error.h"

#include <string.h>

/* ---- building ---------------------------------------------------------------- */

void sstcol_classify(const uint8_t *key, size_t klen, unsigned kind, const uint8_t *val, size_t vlen,
                     struct sstcol_row *row)
{
  row->columnar = 0;
  row->ncols = 0;
  if (!rowfmt_key_table(key, klen, &row->table))
    return;
  if (kind == SST_PUT && rowfmt_decode(val, vlen, SST_MAX_COLUMNS, &row->ncols, row->types, row->vals) != 0)
    return;                           /* not a row after all: a plain entry */
  row->columnar = 1;
}

int sstcol_fits(const struct sst_builder *b, const struct sstcol_row *row)
{
  if (b->data.entries == 0)
    return 1;
  if (b->columnar != row->columnar)
    return 0;
  if (!row->columnar)
    return 1;
  if (row->table != b->col_table)
    return 0;
  unsigned m = row->ncols < b->col_n ? row->ncols : b->col_n;
  return memcmp(row->types, b->col_types, m) == 0;
}

void sstcol_start(struct sst_builder *b, const struct sstcol_row *row)
{
  b->columnar = row->columnar;
  b->col_table = row->table;
  b->col_n = 0;
  b->col_rows = 0;
  b->col_bytes = 0;
  b->col_unique = 1;
  b->col_max_seq = 0;
}

void sstcol_note_entry(struct sst_builder *b, unsigned kind, uint64_t seq, int same_key)
{
  if (kind != SST_PUT || same_key)
    b->col_unique = 0;
  if (seq > b->col_max_seq)
    b->col_max_seq = seq;
}

static void colbuf_clear(struct sst_colbuf *c)
{
  c->fixed_n = 0;
  c->data_n = 0;
  c->any = 0;
  c->nan = 0;
}

static void note_minmax(struct sst_colbuf *c, unsigned type, const sochdb_value *v)
{
  if (type == SOCHDB_INT64) {
    if (!c->any || v->i64 < c->imin)
      c->imin = v->i64;
    if (!c->any || v->i64 > c->imax)
      c->imax = v->i64;
  } else if (v->f64 != v->f64) {
    c->nan = 1;
  } else {
    if (!c->any || v->f64 < c->dmin)
      c->dmin = v->f64;
    if (!c->any || v->f64 > c->dmax)
      c->dmax = v->f64;
  }
  c->any = 1;
}

/* Append row `row`'s value v (NULL pointer: the row has no such column) of a
** column of type; the bytes it adds go to *added. */
static int colbuf_add(struct sst_colbuf *c, unsigned type, const sochdb_value *v, uint32_t row, size_t *added)
{
  if (!sst_grow(&c->nulls, &c->nulls_cap, (size_t)row / 8 + 1))
    return SOCHDB_NOMEM;
  if (row % 8 == 0)
    c->nulls[row / 8] = 0;
  int null = !v || v->is_null;
  if (null)
    c->nulls[row / 8] |= (uint8_t)(1u << (row % 8));
  if (rowfmt_fixed(type)) {
    if (!sst_grow(&c->fixed, &c->fixed_cap, c->fixed_n + 8))
      return SOCHDB_NOMEM;
    uint64_t bits = 0;
    if (!null) {
      if (type == SOCHDB_INT64)
        bits = (uint64_t)v->i64;
      else
        memcpy(&bits, &v->f64, 8);
      note_minmax(c, type, v);
    }
    st64(c->fixed + c->fixed_n, bits);
    c->fixed_n += 8;
    *added += 8;
    return SOCHDB_OK;
  }
  size_t len = null ? 0 : v->len;
  if (!sst_grow(&c->fixed, &c->fixed_cap, c->fixed_n + 4) || !sst_grow(&c->data, &c->data_cap, c->data_n + len))
    return SOCHDB_NOMEM;
  if (len)
    memcpy(c->data + c->data_n, v->bytes, len);
  c->data_n += len;
  st32(c->fixed + c->fixed_n, (uint32_t)c->data_n);
  c->fixed_n += 4;
  *added += 4 + len;
  return SOCHDB_OK;
}

int sstcol_add(struct sst_builder *b, const struct sstcol_row *row)
{
  if (!b->cols && !(b->cols = calloc(SST_MAX_COLUMNS, sizeof *b->cols)))
    return SOCHDB_NOMEM;
  size_t added = 0;
  for (unsigned j = b->col_n; j < row->ncols; j++) {   /* new columns: NULL in the rows before */
    b->col_types[j] = row->types[j];
    colbuf_clear(&b->cols[j]);
    for (uint32_t r = 0; r < b->col_rows; r++)
      if (colbuf_add(&b->cols[j], row->types[j], NULL, r, &added))
        return SOCHDB_NOMEM;
  }
  if (row->ncols > b->col_n)
    b->col_n = row->ncols;
  for (unsigned j = 0; j < b->col_n; j++)
    if (colbuf_add(&b->cols[j], b->col_types[j], j < row->ncols ? &row->vals[j] : NULL, b->col_rows, &added))
      return SOCHDB_NOMEM;
  b->col_rows++;
  b->col_bytes += added;
  return SOCHDB_OK;
}

int sstcol_segment(struct sst_builder *b, unsigned j, size_t *n)
{
  const struct sst_colbuf *c = &b->cols[j];
  size_t bm = ((size_t)b->col_rows + 7) / 8;
  size_t total = bm + c->fixed_n + c->data_n;
  if (!sst_grow(&b->seg, &b->seg_cap, total ? total : 1))
    return SOCHDB_NOMEM;
  if (bm)
    memcpy(b->seg, c->nulls, bm);
  if (c->fixed_n)
    memcpy(b->seg + bm, c->fixed, c->fixed_n);
  if (c->data_n)
    memcpy(b->seg + bm + c->fixed_n, c->data, c->data_n);
  *n = total;
  return SOCHDB_OK;
}

size_t sstcol_descriptor(const struct sst_builder *b, uint64_t off, const uint32_t *sizes, uint8_t *out)
{
  uint64_t total = sizes[0];
  for (unsigned j = 0; j < b->col_n; j++)
    total += sizes[1 + j];
  st64(out, off);
  st32(out + 8, (uint32_t)total);
  out[12] = SST_COL_FORMAT;
  out[13] = (uint8_t)b->col_n;
  out[14] = b->col_unique ? SST_COL_UNIQUE : 0;
  out[15] = 0;
  st32(out + 16, b->col_table);
  st32(out + 20, b->col_rows);
  st32(out + 24, sizes[0]);
  st64(out + 28, b->col_max_seq);
  for (unsigned j = 0; j < b->col_n; j++) {
    const struct sst_colbuf *c = &b->cols[j];
    uint8_t *d = out + SST_COL_DESC_BYTES + SST_COL_DESC_PER_COL * j;
    unsigned type = b->col_types[j];
    uint64_t min = 0, max = 0;
    if (type == SOCHDB_INT64) {
      min = (uint64_t)c->imin;
      max = (uint64_t)c->imax;
    } else if (type == SOCHDB_DOUBLE) {
      memcpy(&min, &c->dmin, 8);
      memcpy(&max, &c->dmax, 8);
    }
    d[0] = (uint8_t)type;
    d[1] = rowfmt_fixed(type) && c->any && !c->nan;
    st32(d + 2, sizes[1 + j]);
    st64(d + 6, c->any ? min : 0);
    st64(d + 14, c->any ? max : 0);
  }
  return SST_COL_DESC_BYTES + SST_COL_DESC_PER_COL * (size_t)b->col_n;
}

void sstcol_free(struct sst_builder *b)
{
  for (unsigned j = 0; b->cols && j < SST_MAX_COLUMNS; j++) {
    free(b->cols[j].nulls);
    free(b->cols[j].fixed);
    free(b->cols[j].data);
  }
  free(b->cols);
  free(b->seg);
  b->cols = NULL;
  b->seg = NULL;
}

/* ---- reading ----------------------------------------------------------------- */

static int bad_index(uint64_t boff, const char *what)
{
  return sdb_fail(SOCHDB_CORRUPT, "SSTable: the index entry of the columnar block at %llu %s",
                  (unsigned long long)boff, what);
}

static int grow_arrays(struct sst_reader *r, struct sstcol_caps *caps, unsigned nsegs)
{
  if (r->ncolblocks == caps->colblocks) {
    size_t c = caps->colblocks ? caps->colblocks * 2 : 64;
    struct sst_colblock *q = realloc(r->colblocks, c * sizeof *q);
    if (!q)
      return 0;
    r->colblocks = q;
    caps->colblocks = c;
  }
  if (r->nsegs + nsegs > caps->segs) {
    size_t c = caps->segs ? caps->segs : 256;
    while (c < r->nsegs + nsegs)
      c *= 2;
    struct sst_segment *q = realloc(r->segs, c * sizeof *q);
    if (!q)
      return 0;
    r->segs = q;
    caps->segs = c;
  }
  return 1;
}

/* Check column j's part of the descriptor d and describe its segment. */
static int parse_column(const uint8_t *d, struct sst_segment *s)
{
  s->type = d[0];
  s->has_minmax = d[1];
  s->size = ld32(d + 2);
  s->min = ld64(d + 6);
  s->max = ld64(d + 14);
  return rowfmt_type_ok(s->type) && s->has_minmax <= 1 && (!s->has_minmax || rowfmt_fixed(s->type));
}

int sstcol_parse_index(struct sst_reader *r, struct sstcol_caps *caps, const uint8_t *v, size_t n, uint64_t boff,
                       uint32_t bsize, uint32_t *col)
{
  if (n < SST_COL_DESC_BYTES || v[12] != SST_COL_FORMAT || v[13] > SST_MAX_COLUMNS || (v[14] & ~SST_COL_UNIQUE) ||
      v[15] || n != SST_COL_DESC_BYTES + SST_COL_DESC_PER_COL * (size_t)v[13])
    return bad_index(boff, "is malformed");
  unsigned ncols = v[13];
  if (!grow_arrays(r, caps, ncols + 1))
    return sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
  struct sst_segment *s = r->segs + r->nsegs;
  memset(s, 0, (ncols + 1) * sizeof *s);
  s[0].size = ld32(v + 24);
  for (unsigned j = 0; j < ncols; j++)
    if (!parse_column(v + SST_COL_DESC_BYTES + SST_COL_DESC_PER_COL * j, &s[1 + j]))
      return bad_index(boff, "describes a column wrongly");
  uint64_t at = boff;
  for (unsigned k = 0; k <= ncols; k++) {
    if (s[k].size < SST_TRAILER_BYTES || s[k].size > boff + bsize - at)
      return bad_index(boff, "has segments that do not fit the block");
    s[k].offset = at;
    at += s[k].size;
  }
  if (at != boff + bsize)
    return bad_index(boff, "has segments that do not fill the block");
  r->colblocks[r->ncolblocks] =
      (struct sst_colblock){ .table = ld32(v + 16), .nrows = ld32(v + 20), .ncols = ncols, .seg = r->nsegs,
                             .unique = v[14] & SST_COL_UNIQUE, .max_seq = ld64(v + 28) };
  r->nsegs += ncols + 1;
  *col = ++r->ncolblocks;
  return SOCHDB_OK;
}

static int bad_offsets(uint64_t block_off)
{
  return sdb_fail(SOCHDB_CORRUPT, "SSTable columnar block at %llu: bad value offsets in a column segment",
                  (unsigned long long)block_off);
}

int sstcol_check_column(const uint8_t *p, size_t n, unsigned type, uint32_t nrows, struct sst_colseg *out,
                        uint64_t block_off)
{
  size_t bm = ((size_t)nrows + 7) / 8, w = rowfmt_fixed(type) ? 8 : 4;
  if (n < bm || (n - bm) / w < nrows || (w == 8 && n - bm != 8 * (size_t)nrows))
    return sdb_fail(SOCHDB_CORRUPT, "SSTable columnar block at %llu: a column segment of %zu bytes for %u rows",
                    (unsigned long long)block_off, n, nrows);
  out->nulls = p;
  out->vals = p + bm;
  out->data = p + bm + w * (size_t)nrows;
  out->maxlen = 8;
  if (w == 8)
    return SOCHDB_OK;
  size_t dn = n - bm - 4 * (size_t)nrows;
  uint32_t prev = 0;
  out->maxlen = 0;
  for (uint32_t r = 0; r < nrows; r++) {   /* ascending, within the data, ending at its end */
    uint32_t e = ld32(out->vals + 4 * (size_t)r);
    if (e < prev || e > dn)
      return bad_offsets(block_off);
    if (e - prev > out->maxlen)
      out->maxlen = e - prev;
    prev = e;
  }
  return prev == dn ? SOCHDB_OK : bad_offsets(block_off);
}

void sstcol_value(const struct sst_colview *cv, unsigned j, uint32_t row, sochdb_value *v)
{
  const struct sst_colseg *s = &cv->col[j];
  unsigned type = cv->segs[j].type;
  memset(v, 0, sizeof *v);
  if (s->nulls[row / 8] & (1u << (row % 8))) {
    v->is_null = 1;
  } else if (rowfmt_fixed(type)) {
    uint64_t bits = ld64(s->vals + 8 * (size_t)row);
    if (type == SOCHDB_INT64)
      v->i64 = (int64_t)bits;
    else
      memcpy(&v->f64, &bits, 8);
  } else {
    uint32_t start = row ? ld32(s->vals + 4 * ((size_t)row - 1)) : 0, end = ld32(s->vals + 4 * (size_t)row);
    v->bytes = s->data + start;
    v->len = end - start;
  }
}

/* Column j's value of row `row` into out + n (out NULL: measured only) of a
** row of ncols columns: the bytes it takes, 0 for a NULL (its bit is set). */
static size_t encode_value(const struct sst_colview *cv, unsigned j, uint32_t row, uint8_t *out, size_t n,
                           unsigned ncols)
{
  const struct sst_colseg *s = &cv->col[j];
  if (!(cv->loaded >> j & 1) || (s->nulls[row / 8] >> (row % 8) & 1)) {
    if (out)
      out[2 + ncols + j / 8] |= (uint8_t)(1u << (j % 8));
    return 0;
  }
  if (rowfmt_fixed(cv->segs[j].type)) {
    if (out)
      memcpy(out + n, s->vals + 8 * (size_t)row, 8);   /* stored as the row stores it: LE bits */
    return 8;
  }
  uint32_t start = row ? ld32(s->vals + 4 * ((size_t)row - 1)) : 0, len = ld32(s->vals + 4 * (size_t)row) - start;
  size_t vn = varint_len(len);
  if (out) {
    put_varint(out + n, len);
    memcpy(out + n + vn, s->data + start, len);
  }
  return vn + len;
}

size_t sstcol_row_bound(const struct sst_colview *cv)
{
  unsigned ncols = cv->loaded ? 64 - (unsigned)__builtin_clzll(cv->loaded) : 0;
  size_t n = rowfmt_header_size(ncols);
  for (unsigned j = 0; j < ncols; j++)
    if (cv->loaded >> j & 1)
      n += varint_len(cv->col[j].maxlen) + cv->col[j].maxlen;
  return n;
}

/* The columns row `row` is encoded with: up to its last loaded non-NULL one.
** Trailing NULLs read the same when they are left out, and leaving them out
** keeps a reassembled row no longer than the row as written: a row of fewer
** columns than its block (written before a column was added) would else come
** back a type byte (and a bitmap byte) longer, past SOCHDB_MAX_VALUE when it
** was written at the limit. */
static unsigned row_columns(const struct sst_colview *cv, uint32_t row)
{
  unsigned ncols = cv->loaded ? 64 - (unsigned)__builtin_clzll(cv->loaded) : 0;
  while (ncols > 0 && (!(cv->loaded >> (ncols - 1) & 1) || (cv->col[ncols - 1].nulls[row / 8] >> (row % 8) & 1)))
    ncols--;
  return ncols;
}

size_t sstcol_encode_row(const struct sst_colview *cv, uint32_t row, uint8_t *out)
{
  unsigned ncols = row_columns(cv, row);
  size_t n = rowfmt_header_size(ncols);
  if (out) {
    out[0] = ROWFMT_TAG;
    out[1] = (uint8_t)ncols;
    memset(out + 2 + ncols, 0, (ncols + 7) / 8);
  }
  for (unsigned j = 0; j < ncols; j++) {
    if (out)
      out[2 + j] = cv->segs[j].type;
    n += encode_value(cv, j, row, out, n, ncols);
  }
  return n;
}

/* A min or max bits of a column of type as a value. */
static sochdb_value bound_value(unsigned type, uint64_t bits)
{
  sochdb_value v;
  memset(&v, 0, sizeof v);
  if (type == SOCHDB_INT64)
    v.i64 = (int64_t)bits;
  else
    memcpy(&v.f64, &bits, 8);
  return v;
}

int sstcol_excluded(const struct sst_reader *r, const struct sst_colblock *cb, const struct rowfmt_filter *f)
{
  if (f->col >= cb->ncols)
    return 1;                       /* no row has the column: every one reads NULL, which never passes */
  const struct sst_segment *s = &r->segs[cb->seg + 1 + f->col];
  if (s->type != f->type || !s->has_minmax)
    return 0;
  sochdb_value min = bound_value(s->type, s->min), max = bound_value(s->type, s->max);
  return !rowfmt_range_may_match(f, &min, &max);
}
