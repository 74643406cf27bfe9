/*
** rowfmt.c — row keys, row values and the one-column filter of columnar
** tables (see rowfmt.h). Every decoder bounds each length by its input
** before use: rows come from files and may be damaged.
*/
#include "rowfmt.h"

#include "bytes.h"

#include <math.h>
#include <string.h>

const uint8_t rowfmt_reserved_start[2] = { 0xFF, 0xFF };

int rowfmt_reserved(const void *key, size_t klen)
{
  return klen >= 2 && memcmp(key, rowfmt_reserved_start, 2) == 0;
}

size_t rowfmt_meta_key(uint8_t *out, const char *name, size_t nlen)
{
  out[0] = 0xFF;
  out[1] = 0xFF;
  out[2] = ROWFMT_META;
  memcpy(out + 3, name, nlen);
  return 3 + nlen;
}

void rowfmt_row_prefix(uint8_t *out, uint32_t table)
{
  out[0] = 0xFF;
  out[1] = 0xFF;
  out[2] = ROWFMT_ROWS;
  out[3] = (uint8_t)(table >> 24);
  out[4] = (uint8_t)(table >> 16);
  out[5] = (uint8_t)(table >> 8);
  out[6] = (uint8_t)table;
}

size_t rowfmt_successor(uint8_t *p, size_t n)
{
  while (n > 0 && p[n - 1] == 0xFF)
    n--;
  if (n > 0)
    p[n - 1]++;
  return n;
}

int rowfmt_key_table(const uint8_t *key, size_t klen, uint32_t *table)
{
  if (klen < ROWFMT_PREFIX_LEN || key[0] != 0xFF || key[1] != 0xFF || key[2] != ROWFMT_ROWS)
    return 0;
  *table = (uint32_t)key[3] << 24 | (uint32_t)key[4] << 16 | (uint32_t)key[5] << 8 | key[6];
  return 1;
}


/* ---- primary keys ------------------------------------------------------------ */

size_t rowfmt_pk_size(unsigned type, const sochdb_value *pk)
{
  return type == SOCHDB_INT64 ? 8 : pk->len;
}

size_t rowfmt_pk_encode(uint8_t *out, unsigned type, const sochdb_value *pk)
{
  if (type != SOCHDB_INT64) {
    if (pk->len)
      memcpy(out, pk->bytes, pk->len);
    return pk->len;
  }
  uint64_t u = (uint64_t)pk->i64 ^ (1ull << 63);
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(u >> (56 - 8 * i));
  return 8;
}

int rowfmt_pk_decode(const uint8_t *p, size_t n, unsigned type, sochdb_value *out)
{
  memset(out, 0, sizeof *out);
  if (type != SOCHDB_INT64) {
    out->bytes = p;
    out->len = n;
    return 0;
  }
  if (n != 8)
    return -1;
  uint64_t u = 0;
  for (int i = 0; i < 8; i++)
    u = u << 8 | p[i];
  out->i64 = (int64_t)(u ^ (1ull << 63));
  return 0;
}

/* ---- row values -------------------------------------------------------------- */

size_t rowfmt_size(unsigned ncols, const uint8_t *types, const sochdb_value *vals)
{
  size_t n = rowfmt_header_size(ncols);
  for (unsigned j = 0; j < ncols; j++) {
    if (vals[j].is_null)
      continue;
    size_t len = rowfmt_fixed(types[j]) ? 8 : vals[j].len;
    if (n > SIZE_MAX / 2 || len > SIZE_MAX / 4)
      return SIZE_MAX;   /* far past any limit; stopping here keeps the sum from wrapping */
    n += rowfmt_fixed(types[j]) ? 8 : varint_len(len) + len;
  }
  return n;
}

size_t rowfmt_encode(uint8_t *out, unsigned ncols, const uint8_t *types, const sochdb_value *vals)
{
  out[0] = ROWFMT_TAG;
  out[1] = (uint8_t)ncols;
  memcpy(out + 2, types, ncols);
  uint8_t *nulls = out + 2 + ncols;
  memset(nulls, 0, (ncols + 7) / 8);
  size_t n = rowfmt_header_size(ncols);
  for (unsigned j = 0; j < ncols; j++) {
    const sochdb_value *v = &vals[j];
    if (v->is_null) {
      nulls[j / 8] |= (uint8_t)(1u << (j % 8));
    } else if (types[j] == SOCHDB_INT64) {
      st64(out + n, (uint64_t)v->i64);
      n += 8;
    } else if (types[j] == SOCHDB_DOUBLE) {
      uint64_t bits;
      memcpy(&bits, &v->f64, 8);
      st64(out + n, bits);
      n += 8;
    } else {
      n += put_varint(out + n, v->len);
      if (v->len)
        memcpy(out + n, v->bytes, v->len);
      n += v->len;
    }
  }
  return n;
}

/* Decode column j's value at p[*pos..end). */
static int decode_value(const uint8_t *p, size_t end, size_t *pos, unsigned type, sochdb_value *v)
{
  if (rowfmt_fixed(type)) {
    if (end - *pos < 8)
      return -1;
    uint64_t bits = ld64(p + *pos);
    *pos += 8;
    if (type == SOCHDB_INT64)
      v->i64 = (int64_t)bits;
    else
      memcpy(&v->f64, &bits, 8);
    return 0;
  }
  uint64_t len;
  if (!get_varint(p, end, pos, &len) || len > end - *pos)
    return -1;
  v->bytes = p + *pos;
  v->len = (size_t)len;
  *pos += (size_t)len;
  return 0;
}

int rowfmt_decode(const uint8_t *p, size_t n, unsigned max, unsigned *ncols, uint8_t *types, sochdb_value *vals)
{
  return rowfmt_decode_some(p, n, max, ~0ull, ncols, types, vals);
}

int rowfmt_decode_some(const uint8_t *p, size_t n, unsigned max, uint64_t mask, unsigned *ncols, uint8_t *types,
                       sochdb_value *vals)
{
  if (n < 2 || p[0] != ROWFMT_TAG || p[1] > max || n < rowfmt_header_size(p[1]))
    return -1;
  unsigned nc = p[1];
  const uint8_t *nulls = p + 2 + nc;
  size_t pos = rowfmt_header_size(nc);
  for (unsigned j = 0; j < nc; j++) {
    sochdb_value scratch, *v = j < 64 && (mask >> j & 1) ? &vals[j] : &scratch;
    *v = (sochdb_value){ .is_null = (nulls[j / 8] >> (j % 8)) & 1 };
    types[j] = p[2 + j];
    if (!rowfmt_type_ok(types[j]) || (!v->is_null && decode_value(p, n, &pos, types[j], v) != 0))
      return -1;
  }
  if (nc % 8 && nulls[nc / 8] >> (nc % 8))
    return -1;                       /* bits past the last column */
  if (pos != n)
    return -1;
  *ncols = nc;
  return 0;
}

/* ---- the filter ------------------------------------------------------------ */

/* a <=> b for non-NULL values of one type: -1, 0, 1, or 2 if unordered (NaN). */
static int value_cmp(unsigned type, const sochdb_value *a, const sochdb_value *b)
{
  if (type == SOCHDB_INT64)
    return (a->i64 > b->i64) - (a->i64 < b->i64);
  if (type == SOCHDB_DOUBLE) {
    if (isnan(a->f64) || isnan(b->f64))
      return 2;
    return (a->f64 > b->f64) - (a->f64 < b->f64);
  }
  size_t m = a->len < b->len ? a->len : b->len;
  int c = m ? memcmp(a->bytes, b->bytes, m) : 0;
  if (c)
    return c < 0 ? -1 : 1;
  return (a->len > b->len) - (a->len < b->len);
}

/* v is not below f's lower bound (when it has one). */
static int above_lo(const struct rowfmt_filter *f, const sochdb_value *v)
{
  if (!f->has_lo)
    return 1;
  int c = value_cmp(f->type, v, &f->lo);
  return c != 2 && (c > 0 || (c == 0 && f->lo_incl));
}

/* v is not above f's upper bound (when it has one). */
static int below_hi(const struct rowfmt_filter *f, const sochdb_value *v)
{
  if (!f->has_hi)
    return 1;
  int c = value_cmp(f->type, v, &f->hi);
  return c != 2 && (c < 0 || (c == 0 && f->hi_incl));
}

int rowfmt_match(const struct rowfmt_filter *f, const sochdb_value *v)
{
  if (v->is_null || (f->type == SOCHDB_DOUBLE && isnan(v->f64)))
    return 0;
  return above_lo(f, v) && below_hi(f, v);
}

int rowfmt_range_may_match(const struct rowfmt_filter *f, const sochdb_value *min, const sochdb_value *max)
{
  /* Some value in [min, max] passes iff max is not below lo and min not above hi,
  ** and the bounds leave room: lo <= hi (a filter that no value passes skips all). */
  if (!below_hi(f, min) || !above_lo(f, max))
    return 0;
  if (f->has_lo && f->has_hi) {
    int c = value_cmp(f->type, &f->lo, &f->hi);
    if (c == 2 || c > 0 || (c == 0 && !(f->lo_incl && f->hi_incl)))
      return 0;
  }
  return 1;
}
