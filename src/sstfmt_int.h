/*
** sstfmt_int.h — what the two halves of the SSTable code share and nobody
** else sees: sstfmt.c (blocks, pieces, checksums, the reader and the builder)
** and sstcol.c (columnar blocks: rows split into column segments, the index
** descriptor, reassembly, min/max). The layout is documented in sstfmt.h.
*/
#ifndef SOCHDB_SSTFMT_INT_H
#define SOCHDB_SSTFMT_INT_H

#include "sstfmt.h"

#include <stdlib.h>

#define SST_COL_DESC_BYTES   36u   /* the fixed part of a columnar index entry */
#define SST_COL_UNIQUE       0x1u  /* descriptor flag: every entry a PUT of its own key */
#define SST_COL_DESC_PER_COL 22u
#define SST_COL_FORMAT       1u

/* Grow *p (capacity *cap) to hold need bytes: 1, or 0 out of memory. */
static inline int sst_grow(uint8_t **p, size_t *cap, size_t need)
{
  if (need <= *cap)
    return 1;
  size_t c = *cap ? *cap : 4096;
  while (c < need)
    c *= 2;
  uint8_t *q = realloc(*p, c);
  if (!q)
    return 0;
  *p = q;
  *cap = c;
  return 1;
}

/* All of a block's columns, as a mask. */
static inline uint64_t sst_all_columns(unsigned ncols)
{
  return ncols >= 64 ? ~0ull : (1ull << ncols) - 1;
}

/* ---- building (sstcol.c) ------------------------------------------------------ */

/* An entry as the builder sees it: a row of a table (columnar), or not. */
struct sstcol_row {
  int          columnar;
  uint32_t     table;
  unsigned     ncols;                 /* a PUT's; 0 for a tombstone */
  uint8_t      types[SST_MAX_COLUMNS];
  sochdb_value vals[SST_MAX_COLUMNS];
};

void   sstcol_classify(const uint8_t *key, size_t klen, unsigned kind, const uint8_t *val, size_t vlen,
                       struct sstcol_row *row);
/* 1 if row may join the data block being built (the block is empty, or of
** the same kind: plain, or rows of the same table with agreeing types). */
int    sstcol_fits(const struct sst_builder *b, const struct sstcol_row *row);
/* The data block being built is empty: it takes row's kind. */
void   sstcol_start(struct sst_builder *b, const struct sstcol_row *row);
/* A columnar entry of the block being built: its kind, its seq, and whether
** the file's previous entry has the same key (in this block, or last in the
** one before: a block that opens with an older version is not unique either,
** so a scan can never take one whole on the strength of the flag alone). */
void   sstcol_note_entry(struct sst_builder *b, unsigned kind, uint64_t seq, int same_key);
/* Append a PUT row's values to the column buffers. SOCHDB_OK or SOCHDB_NOMEM. */
int    sstcol_add(struct sst_builder *b, const struct sstcol_row *row);
/* Column j's segment payload, assembled in b->seg. SOCHDB_OK or SOCHDB_NOMEM. */
int    sstcol_segment(struct sst_builder *b, unsigned j, size_t *n);
/* The index entry's value of the block at off whose segments (keys first)
** were stored with sizes[]; returns its length (out: room for
** SST_COL_DESC_BYTES + SST_MAX_COLUMNS * SST_COL_DESC_PER_COL). */
size_t sstcol_descriptor(const struct sst_builder *b, uint64_t off, const uint32_t *sizes, uint8_t *out);
void   sstcol_free(struct sst_builder *b);

/* ---- reading (sstcol.c) ------------------------------------------------------- */

struct sstcol_caps {                  /* array capacities while sst_open parses the index */
  size_t colblocks, segs;
};

/* Parse the columnar index value v[0..n) of the block at [boff, boff +
** bsize) into r's arrays: SOCHDB_OK with *col = its index + 1,
** SOCHDB_CORRUPT (message set), SOCHDB_NOMEM. */
int    sstcol_parse_index(struct sst_reader *r, struct sstcol_caps *caps, const uint8_t *v, size_t n,
                          uint64_t boff, uint32_t bsize, uint32_t *col);
/* Check a column segment's payload p[0..n) for nrows rows of type and
** describe it in *out: SOCHDB_OK or SOCHDB_CORRUPT (message set; what names
** the block). */
int    sstcol_check_column(const uint8_t *p, size_t n, unsigned type, uint32_t nrows, struct sst_colseg *out,
                           uint64_t block_off);
/* Row `row`'s value of column j (loaded) into *v. */
void   sstcol_value(const struct sst_colview *cv, unsigned j, uint32_t row, sochdb_value *v);
/* Row `row` of the block, encoded as a row value (rowfmt.h) into out, or
** only measured when out is NULL: its columns up to the last one loaded
** that is not NULL in this row, those not loaded NULL (so never longer than
** the row as written). Returns its size. */
size_t sstcol_encode_row(const struct sst_colview *cv, uint32_t row, uint8_t *out);
/* No row of the loaded block encodes to more bytes than this. */
size_t sstcol_row_bound(const struct sst_colview *cv);
/* 1 if block cb's min/max for the filter's column prove no row passes f. */
int    sstcol_excluded(const struct sst_reader *r, const struct sst_colblock *cb, const struct rowfmt_filter *f);

#endif
