/*
** fuzz_sst.c — libFuzzer target for the SSTable reader (src/sstfmt.c).
**
** The input is a whole table file. It is read twice: as it is (checksums
** nearly always fail, which tests that damage is caught before parsing),
** then with every checksum recomputed (footer, filter, index, and each data
** block the index names, or each segment of a columnar block), so that the
** parsers behind the checksums — restart arrays, varints, entries, LZ4
** payloads, index handles, columnar descriptors, column segments, rows — get
** arbitrary bytes too. Each time the table opens it is iterated to the end
** (whole, then through a projection with a filter on the first table whose
** rows it holds), sought into and read with sst_get / sst_may_contain.
** Each time it is also read through a block cache (fz_cache below), twice,
** the second time from its hits, so that the blocks a cache hands back,
** whole or searched in pieces (sst_block_cache's peek), are parsed with the
** same arbitrary bytes; for every other input the pieces are torn (some
** words garbled, differently in each copy, and the peek then says the block
** changed), as a reader racing a writer of the shared cache may copy them,
** and every other whole hit has the wrong length.
** Nothing may crash, read out of bounds or leak.
*/
#include "bytes.h"
#include "rowfmt.h"
#include "sstfmt.h"

#include "sochdb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENTRIES 100000
#define PROBES 8

static volatile uint64_t sink;   /* keeps the touched bytes alive */

/* ---- a block cache in the input's image -------------------------------- */

#define FZ_CACHED 64

struct fz_cache {
  uint64_t  off[FZ_CACHED];
  uint8_t  *data[FZ_CACHED];      /* exactly len[i] bytes: ASan sees any overread */
  size_t    len[FZ_CACHED];
  unsigned  n;
  int       torn;                 /* pieces are garbled and the peek reports a change */
  unsigned  copies;               /* pieces copied: which words a tear garbles changes with each */
  unsigned  lookups;
};

static int fz_find(const struct fz_cache *c, uint64_t off)
{
  for (unsigned i = 0; i < c->n; i++)
    if (c->off[i] == off)
      return (int)i;
  return -1;
}

static int fz_lookup(void *ctx, uint64_t off, uint8_t *dst, size_t cap, size_t *len)
{
  struct fz_cache *c = ctx;
  int i = fz_find(c, off);
  if (i < 0 || c->len[i] > cap)
    return 0;
  memcpy(dst, c->data[i], c->len[i]);
  *len = c->len[i];
  if (c->torn && c->len[i] && ++c->lookups % 2)
    --*len;                       /* a hit of the wrong length: the reader must take it as a miss */
  return 1;
}

static void fz_insert(void *ctx, uint64_t off, const uint8_t *data, size_t len)
{
  struct fz_cache *c = ctx;
  uint8_t *copy;
  if (c->n == FZ_CACHED || fz_find(c, off) >= 0 || !(copy = malloc(len ? len : 1)))
    return;
  memcpy(copy, data, len);
  c->off[c->n] = off;
  c->data[c->n] = copy;
  c->len[c->n++] = len;
}

struct fz_src {                  /* sst_block_src over one cached block */
  struct sst_block_src src;      /* first: fz_copy gets it back as this */
  struct fz_cache *c;
  int i;
  uint8_t *dst;
};

/* As bc_read_copy: whole words, so from the word that holds byte `from`.
** Torn: some words garbled, which ones and how changing from one copy to
** the next, as a writer racing the copies would leave them. */
static void fz_copy(const struct sst_block_src *src, size_t from, size_t to)
{
  const struct fz_src *fs = (const struct fz_src *)src;
  struct fz_cache *c = fs->c;
  size_t len = c->len[fs->i];
  unsigned copy = c->copies++;
  if (to > len)
    to = len;
  for (size_t b = from & ~(size_t)7; b < to; b++) {
    uint8_t v = c->data[fs->i][b];
    if (c->torn && ((b >> 3) * 2654435761u + copy) % 3 == 0)
      v ^= (uint8_t)(b * 167 + 13 + copy);
    fs->dst[b] = v;
  }
}

static int fz_peek(void *ctx, uint64_t off, uint8_t *dst, size_t cap, sst_block_reader read, void *arg,
                   int *read_rc)
{
  struct fz_cache *c = ctx;
  int i = fz_find(c, off);
  if (i < 0 || c->len[i] > cap)
    return 0;
  struct fz_src fs = { { fz_copy }, c, i, dst };
  *read_rc = read(arg, &fs.src, c->len[i]);
  return !c->torn;
}

static void fz_prefetch(void *ctx, uint64_t off, size_t bytes)
{
  (void)ctx, (void)off, (void)bytes;
}

static void fz_cache_free(struct fz_cache *c)
{
  for (unsigned i = 0; i < c->n; i++)
    free(c->data[i]);
}


static void touch(const uint8_t *p, size_t n)
{
  uint64_t h = 0;
  for (size_t i = 0; i < n; i++)
    h = h * 31 + p[i];
  sink += h;
}

/* Every value of a block handed over whole. */
static void touch_block(const struct sst_colview *cv, uint32_t nrows)
{
  for (uint32_t row = 0; row < nrows; row++)
    for (unsigned j = 0; j < 4; j++) {
      unsigned type;
      sochdb_value v;
      if (sst_colview_get(cv, j, row, &type, &v) == SOCHDB_OK && !v.is_null)
        sink += type == SOCHDB_BYTES || type == SOCHDB_STRING ? (touch(v.bytes, v.len), v.len) : (uint64_t)v.i64;
    }
}

/* Iterate r through a projection of table: column 2, filtered on column 1;
** every block that can be is taken whole. */
static void exercise_projected(const struct sst_reader *r, uint32_t table)
{
  struct sst_projection p = { .table = table, .columns = 4, .filtered = 1,
                              .f = { .col = 1, .type = SOCHDB_INT64, .has_lo = 1, .lo = { .i64 = 100 } } };
  struct sst_read_stats st;
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, r);
  sst_iter_project(&it, &p, &st);
  for (unsigned n = 0; n < MAX_ENTRIES && sst_iter_next(&it, &e) == SOCHDB_OK; n++) {
    touch(e.key, e.klen);
    touch(e.val, e.vlen);
    const struct sst_colview *cv;
    const uint8_t *last;
    uint32_t nrows, lastlen;
    int skipped;
    if (sst_iter_take_block(&it, UINT64_MAX, NULL, 0, &cv, &nrows, &skipped, &last, &lastlen) && !skipped)
      touch_block(cv, nrows);
  }
  sst_iter_free(&it);
  sink += st.bytes_read;
}

static void exercise(const uint8_t *buf, size_t len, struct fz_cache *cache)
{
  struct sst_reader r;
  if (sst_open(buf, len, &r) != SOCHDB_OK)
    return;
  if (cache) {
    struct sst_block_cache hook = { fz_lookup, fz_insert, fz_peek, fz_prefetch, cache };
    sst_set_cache(&r, &hook);
  }
  uint8_t keys[PROBES][SOCHDB_MAX_KEY];
  size_t klens[PROBES] = {0};
  uint64_t seqs[PROBES] = {0};
  unsigned nkeys = 0;
  uint32_t table = 0;
  int rows = 0;

  struct sst_iter it;
  sst_iter_init(&it, &r);
  struct sst_entry e;
  for (unsigned n = 0; n < MAX_ENTRIES && sst_iter_next(&it, &e) == SOCHDB_OK; n++) {
    touch(e.key, e.klen);
    touch(e.val, e.vlen);
    if (!rows)
      rows = rowfmt_key_table(e.key, e.klen, &table);
    if (nkeys < PROBES && (n % 7 == 0 || nkeys == 0)) {
      memcpy(keys[nkeys], e.key, e.klen);
      klens[nkeys] = e.klen;
      seqs[nkeys] = e.seq;
      nkeys++;
    }
  }
  sst_iter_free(&it);
  if (rows)
    exercise_projected(&r, table);

  struct sst_scratch s = {0};
  static const uint8_t absent[] = "\xff\xff\xff-not-there";
  for (unsigned i = 0; i <= nkeys; i++) {
    const uint8_t *k = i < nkeys ? keys[i] : absent;
    size_t kl = i < nkeys ? klens[i] : sizeof absent - 1;
    uint64_t seq = i < nkeys ? seqs[i] : UINT64_MAX;
    struct sst_get_result res;
    if (sst_get(&r, k, kl, UINT64_MAX, &s, &res) == SOCHDB_OK && res.found)
      touch(res.val, res.vlen);
    if (seq && sst_get(&r, k, kl, seq - 1, &s, &res) == SOCHDB_OK && res.found)
      touch(res.val, res.vlen);
    sink += (uint64_t)sst_may_contain(&r, k, kl);
    sst_iter_init(&it, &r);
    if (sst_iter_seek(&it, k, kl) == SOCHDB_OK)
      for (unsigned n = 0; n < 20 && sst_iter_next(&it, &e) == SOCHDB_OK; n++)
        touch(e.key, e.klen);
    sst_iter_free(&it);
  }
  sst_scratch_free(&s);
  sst_close(&r);
}

/* Recompute every checksum the footer and index lead to. */
static void reseal(uint8_t *buf, size_t len)
{
  if (len < SST_FOOTER_BYTES)
    return;
  uint8_t *f = buf + len - SST_FOOTER_BYTES;
  sst_footer_seal(f);
  uint64_t body = len - SST_FOOTER_BYTES, filter_off = ld64(f + 16), index_off = ld64(f + 24);
  uint32_t filter_size = ld32(f + 32), index_size = ld32(f + 36);
  if (filter_size >= SST_TRAILER_BYTES && filter_off <= body && filter_size <= body - filter_off)
    sst_block_seal(buf, filter_off, filter_size, SST_BLOCK_FILTER);
  if (index_size >= SST_TRAILER_BYTES && index_off <= body && index_size <= body - index_off)
    sst_block_seal(buf, index_off, index_size, SST_BLOCK_INDEX);
  struct sst_reader r;
  if (sst_open(buf, len, &r) != SOCHDB_OK)
    return;
  for (uint32_t i = 0; i < r.nblocks; i++)
    sst_data_block_seal(buf, &r, i);
  sst_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t *buf = malloc(size ? size : 1);   /* exactly sized: ASan sees any overread */
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  exercise(buf, size, NULL);
  reseal(buf, size);
  exercise(buf, size, NULL);
  /* Twice through one cache: the first fills it, the second reads hits. */
  struct fz_cache cache = { .torn = size && (data[0] & 1) };
  exercise(buf, size, &cache);
  exercise(buf, size, &cache);
  fz_cache_free(&cache);
  free(buf);
  return 0;
}
