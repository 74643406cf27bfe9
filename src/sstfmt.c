/*
** sstfmt.c — building and reading SSTables (see sstfmt.h for the layout).
** The reader trusts nothing it has not verified: every varint, length and
** restart offset is bounded by its block before use.
*/
#include "sstfmt.h"

#include "bytes.h"
#include "error.h"
#include "sochdb.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SST_MAGIC       "SOCHSST"
#define SEED_DATA       0x5353544441ull
#define SEED_FILTER     0x5353544642ull
#define SEED_INDEX      0x5353544943ull
#define SEED_FOOTER     0x5353544644ull
#define SEED_BLOOM      0x53535442ull
/* Bigger than any block the builder makes: a block is cut once it reaches
** SST_BLOCK_MAX, so it holds at most that plus one entry and its restart. */
#define SST_MAX_PAYLOAD (SST_BLOCK_MAX + SOCHDB_MAX_KEY + SOCHDB_MAX_VALUE + 64u)


/* Internal-key order: user key ascending, then seq descending. */
static int ikey_cmp(const uint8_t *a, size_t al, uint64_t aseq, const uint8_t *b, size_t bl, uint64_t bseq)
{
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c)
    return c;
  if (al != bl)
    return al < bl ? -1 : 1;
  if (aseq != bseq)
    return aseq > bseq ? -1 : 1;
  return 0;
}

static uint64_t bloom_hash(const void *key, size_t klen) { return XXH3_64bits_withSeed(key, klen, SEED_BLOOM); }

/* Checksum of a stored block: the trailer's first 8 bytes seed the payload's. */
static uint64_t block_checksum(const uint8_t *payload, size_t n, const uint8_t *trailer, uint64_t seed,
                               uint64_t offset)
{
  uint64_t s = XXH3_64bits_withSeed(trailer, 8, seed ^ offset);
  return XXH3_64bits_withSeed(payload, n, s);
}

/* ---- writing ------------------------------------------------------------ */

static int reserve(uint8_t **p, size_t *cap, size_t need)
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

static size_t put_varint(uint8_t *p, uint64_t v)
{
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static void blockbuf_reset(struct sst_blockbuf *bb)
{
  bb->n = 0;
  bb->nrestarts = 0;
  bb->since_restart = 0;
  bb->last_klen = 0;
  bb->entries = 0;
}

static size_t blockbuf_size(const struct sst_blockbuf *bb) { return bb->n + 4 * bb->nrestarts + 4; }

static int blockbuf_add(struct sst_blockbuf *bb, const uint8_t *key, size_t klen, uint64_t seq, unsigned kind,
                        const uint8_t *val, size_t vlen)
{
  size_t shared = 0;
  if (bb->since_restart == SST_RESTART_INTERVAL || bb->entries == 0) {
    if (bb->nrestarts == bb->rcap) {
      size_t c = bb->rcap ? bb->rcap * 2 : 64;
      uint32_t *q = realloc(bb->restarts, c * sizeof *q);
      if (!q)
        return SOCHDB_NOMEM;
      bb->restarts = q;
      bb->rcap = c;
    }
    bb->restarts[bb->nrestarts++] = (uint32_t)bb->n;
    bb->since_restart = 0;
  } else {
    size_t m = klen < bb->last_klen ? klen : bb->last_klen;
    while (shared < m && key[shared] == bb->last_key[shared])
      shared++;
  }
  if (!reserve(&bb->p, &bb->cap, bb->n + 4 * 10 + 1 + klen + vlen))
    return SOCHDB_NOMEM;
  uint8_t *p = bb->p + bb->n;
  size_t n = 0;
  n += put_varint(p + n, shared);
  n += put_varint(p + n, klen - shared);
  n += put_varint(p + n, vlen);
  n += put_varint(p + n, seq);
  p[n++] = (uint8_t)kind;
  memcpy(p + n, key + shared, klen - shared);
  n += klen - shared;
  if (vlen)
    memcpy(p + n, val, vlen);
  n += vlen;
  bb->n += n;
  memcpy(bb->last_key, key, klen);
  bb->last_klen = klen;
  bb->last_seq = seq;
  bb->since_restart++;
  bb->entries++;
  return SOCHDB_OK;
}

/* Append the restart array and count: the payload is then bb->p[0..n). */
static int blockbuf_seal(struct sst_blockbuf *bb)
{
  if (!reserve(&bb->p, &bb->cap, blockbuf_size(bb)))
    return SOCHDB_NOMEM;
  for (size_t i = 0; i < bb->nrestarts; i++)
    st32(bb->p + bb->n + 4 * i, bb->restarts[i]);
  bb->n += 4 * bb->nrestarts;
  st32(bb->p + bb->n, (uint32_t)bb->nrestarts);
  bb->n += 4;
  return SOCHDB_OK;
}

/* Append payload as a block at the end of the file; its stored size to *size. */
static int store_block(struct sst_builder *b, const uint8_t *payload, size_t n, uint64_t seed, int may_compress,
                       uint32_t *size)
{
  uint64_t offset = b->out_n;
  if (!reserve(&b->out, &b->out_cap, b->out_n + n + SST_TRAILER_BYTES))
    return SOCHDB_NOMEM;
  uint8_t *dst = b->out + b->out_n;
  size_t stored = n;
  unsigned comp = SST_NONE;
  if (may_compress && n >= 16) {
    int bound = LZ4_compressBound((int)n);
    uint8_t *tmp = bound > 0 ? malloc((size_t)bound) : NULL;
    if (!tmp)
      return SOCHDB_NOMEM;
    int c = LZ4_compress_default((const char *)payload, (char *)tmp, (int)n, bound);
    if (c > 0 && (size_t)c <= n - n / 8) {
      memcpy(dst, tmp, (size_t)c);
      stored = (size_t)c;
      comp = SST_LZ4;
    }
    free(tmp);
  }
  if (comp == SST_NONE)
    memcpy(dst, payload, n);
  uint8_t *t = dst + stored;
  memset(t, 0, SST_TRAILER_BYTES);
  t[0] = (uint8_t)comp;
  st32(t + 4, (uint32_t)n);
  st64(t + 8, block_checksum(dst, stored, t, seed, offset));
  b->out_n += stored + SST_TRAILER_BYTES;
  *size = (uint32_t)(stored + SST_TRAILER_BYTES);
  return SOCHDB_OK;
}

/* Write the data block being built and add its index entry. */
static int flush_data(struct sst_builder *b)
{
  struct sst_blockbuf *d = &b->data;
  if (d->entries == 0)
    return SOCHDB_OK;
  uint64_t offset = b->out_n;
  uint32_t size;
  int rc = blockbuf_seal(d);
  if (!rc)
    rc = store_block(b, d->p, d->n, SEED_DATA, 1, &size);
  if (rc)
    return rc;
  uint8_t handle[12];
  st64(handle, offset);
  st32(handle + 8, size);
  rc = blockbuf_add(&b->index, d->last_key, d->last_klen, d->last_seq, SST_PUT, handle, sizeof handle);
  blockbuf_reset(d);
  return rc;
}

int sst_builder_init(struct sst_builder *b, size_t block_bytes)
{
  memset(b, 0, sizeof *b);
  if (block_bytes == 0)
    block_bytes = SST_BLOCK_DEFAULT;
  if (block_bytes < SST_BLOCK_MIN || block_bytes > SST_BLOCK_MAX)
    return sdb_fail(SOCHDB_INVALID, "SSTable block size %zu is outside %u..%u", block_bytes, SST_BLOCK_MIN,
                    SST_BLOCK_MAX);
  b->block_bytes = block_bytes;
  return SOCHDB_OK;
}

static int builder_failed(struct sst_builder *b, int rc)
{
  if (rc == SOCHDB_NOMEM)
    b->failed = 1;
  return rc == SOCHDB_NOMEM ? sdb_fail(SOCHDB_NOMEM, "out of memory building an SSTable") : rc;
}

int sst_builder_add(struct sst_builder *b, const void *key, size_t klen, uint64_t seq, unsigned kind,
                    const void *val, size_t vlen)
{
  if (b->failed)
    return sdb_fail(SOCHDB_NOMEM, "SSTable builder failed earlier");
  if (b->block_bytes == 0)
    return sdb_fail(SOCHDB_INVALID, "SSTable builder not initialized or already finished");
  if (!key || klen == 0 || klen > SOCHDB_MAX_KEY)
    return sdb_fail(SOCHDB_INVALID, "SSTable key of %zu bytes (1..%u allowed)", klen, SOCHDB_MAX_KEY);
  if (vlen > SOCHDB_MAX_VALUE || (vlen && !val))
    return sdb_fail(SOCHDB_INVALID, "SSTable value of %zu bytes (at most %u, not NULL)", vlen, SOCHDB_MAX_VALUE);
  if (kind != SST_PUT && kind != SST_DEL)
    return sdb_fail(SOCHDB_INVALID, "SSTable entry kind %u", kind);
  if (kind == SST_DEL && vlen)
    return sdb_fail(SOCHDB_INVALID, "SSTable tombstone with a %zu-byte value", vlen);
  if (b->entries == UINT32_MAX)
    return sdb_fail(SOCHDB_INVALID, "SSTable holds at most %u entries", UINT32_MAX);
  struct sst_blockbuf *d = &b->data;
  /* The previous entry: in the data block, or the last one flushed (index). */
  const struct sst_blockbuf *prev = d->entries ? d : b->index.entries ? &b->index : NULL;
  int new_key = 1;
  if (prev) {
    int c = ikey_cmp(key, klen, seq, prev->last_key, prev->last_klen, prev->last_seq);
    if (c <= 0)
      return sdb_fail(SOCHDB_INVALID, "SSTable entries out of order (seq %llu after seq %llu)",
                      (unsigned long long)seq, (unsigned long long)prev->last_seq);
    new_key = klen != prev->last_klen || memcmp(key, prev->last_key, klen) != 0;
  }
  if (new_key) {
    if (b->nhashes == b->hcap) {
      size_t c = b->hcap ? b->hcap * 2 : 1024;
      uint64_t *q = realloc(b->hashes, c * sizeof *q);
      if (!q)
        return builder_failed(b, SOCHDB_NOMEM);
      b->hashes = q;
      b->hcap = c;
    }
    b->hashes[b->nhashes++] = bloom_hash(key, klen);
  }
  int rc = blockbuf_add(d, key, klen, seq, kind, val, vlen);
  if (rc)
    return builder_failed(b, rc);
  if (b->entries == 0 || seq < b->min_seq)
    b->min_seq = seq;
  if (b->entries == 0 || seq > b->max_seq)
    b->max_seq = seq;
  b->entries++;
  if (blockbuf_size(d) >= b->block_bytes && (rc = flush_data(b)))
    return builder_failed(b, rc);
  return SOCHDB_OK;
}

int sst_builder_finish(struct sst_builder *b, uint8_t **buf, size_t *len)
{
  if (b->failed)
    return sdb_fail(SOCHDB_NOMEM, "SSTable builder failed earlier");
  if (b->block_bytes == 0)
    return sdb_fail(SOCHDB_INVALID, "SSTable builder not initialized or already finished");
  int rc = flush_data(b);
  if (rc)
    return builder_failed(b, rc);

  /* filter */
  uint64_t nbits = (uint64_t)b->nhashes * SST_BLOOM_BITS;
  if (nbits < 64)
    nbits = 64;
  size_t nbytes = (size_t)((nbits + 7) / 8);
  nbits = (uint64_t)nbytes * 8;
  uint8_t *bloom = calloc(nbytes + 1, 1);
  if (!bloom)
    return builder_failed(b, SOCHDB_NOMEM);
  for (size_t i = 0; i < b->nhashes; i++) {
    uint64_t h1 = (uint32_t)b->hashes[i], h2 = b->hashes[i] >> 32;
    for (unsigned j = 0; j < SST_BLOOM_K; j++) {
      uint64_t bit = (h1 + j * h2) % nbits;
      bloom[bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
  }
  bloom[nbytes] = SST_BLOOM_K;
  uint64_t filter_off = b->out_n;
  uint32_t filter_size;
  rc = store_block(b, bloom, nbytes + 1, SEED_FILTER, 0, &filter_size);
  free(bloom);
  if (rc)
    return builder_failed(b, rc);

  /* index */
  uint64_t index_off = b->out_n;
  uint32_t index_size;
  if ((rc = blockbuf_seal(&b->index)) || (rc = store_block(b, b->index.p, b->index.n, SEED_INDEX, 1, &index_size)))
    return builder_failed(b, rc);

  /* footer */
  if (!reserve(&b->out, &b->out_cap, b->out_n + SST_FOOTER_BYTES))
    return builder_failed(b, SOCHDB_NOMEM);
  uint8_t *f = b->out + b->out_n;
  memset(f, 0, SST_FOOTER_BYTES);
  memcpy(f, SST_MAGIC, sizeof SST_MAGIC);
  st32(f + 8, SST_VERSION);
  st32(f + 12, (uint32_t)b->entries);
  st64(f + 16, filter_off);
  st64(f + 24, index_off);
  st32(f + 32, filter_size);
  st32(f + 36, index_size);
  st64(f + 40, b->min_seq);
  st64(f + 48, b->max_seq);
  sst_footer_seal(f);
  b->out_n += SST_FOOTER_BYTES;

  *buf = b->out;
  *len = b->out_n;
  b->out = NULL;
  b->out_n = b->out_cap = 0;
  b->block_bytes = 0;   /* finished */
  return SOCHDB_OK;
}

void sst_builder_free(struct sst_builder *b)
{
  free(b->out);
  free(b->data.p);
  free(b->data.restarts);
  free(b->index.p);
  free(b->index.restarts);
  free(b->hashes);
  memset(b, 0, sizeof *b);
}

/* ---- reading blocks ------------------------------------------------------- */

void sst_scratch_free(struct sst_scratch *s)
{
  free(s->p);
  s->p = NULL;
  s->cap = 0;
}

/* Check a block's payload structure (restart array) and describe it. */
static int parse_block(const uint8_t *p, size_t n, struct sst_blk *out, const char *what, uint64_t off)
{
  if (n < 4)
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: payload of %zu bytes", what, (unsigned long long)off,
                    n);
  uint32_t cnt = ld32(p + n - 4);
  if (cnt > (n - 4) / 4)
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: %u restarts do not fit", what,
                    (unsigned long long)off, cnt);
  size_t ents = n - 4 - 4 * (size_t)cnt;
  if ((cnt == 0) != (ents == 0))
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: %u restarts for %zu bytes of entries", what,
                    (unsigned long long)off, cnt, ents);
  const uint8_t *rs = p + ents;
  uint32_t prev = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    uint32_t r = ld32(rs + 4 * (size_t)i);
    if ((i == 0 && r != 0) || (i > 0 && r <= prev) || r >= ents)
      return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: bad restart offset %u", what,
                      (unsigned long long)off, r);
    prev = r;
  }
  out->p = p;
  out->ents = ents;
  out->restarts = rs;
  out->nrestarts = cnt;
  return SOCHDB_OK;
}

/* Grow the scratch to at least n bytes. */
static int scratch_reserve(struct sst_scratch *s, size_t n)
{
  if (n <= s->cap)
    return SOCHDB_OK;
  uint8_t *q = realloc(s->p, n);
  if (!q)
    return sdb_fail(SOCHDB_NOMEM, "out of memory decompressing an SSTable block");
  s->p = q;
  s->cap = n;
  return SOCHDB_OK;
}

/* Verify the block stored at buf[off..off+size) and find its payload: buf
** itself when stored uncompressed, else decompressed into the scratch (NULL:
** the block must be uncompressed). */
static int load_payload(const uint8_t *buf, uint64_t off, uint32_t size, uint64_t seed, struct sst_scratch *s,
                        const uint8_t **out, size_t *out_n, const char *what)
{
  if (size < SST_TRAILER_BYTES)
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: %u bytes", what, (unsigned long long)off, size);
  const uint8_t *payload = buf + off;
  size_t stored = size - SST_TRAILER_BYTES;
  const uint8_t *t = payload + stored;
  if (ld64(t + 8) != block_checksum(payload, stored, t, seed, off))
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: checksum mismatch", what, (unsigned long long)off);
  uint32_t ulen = ld32(t + 4);
  if (t[1] || t[2] || t[3] || t[0] > SST_LZ4 || (t[0] == SST_NONE && ulen != stored) || ulen > SST_MAX_PAYLOAD ||
      (t[0] == SST_LZ4 && (!s || stored > (size_t)LZ4_compressBound((int)ulen))))
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: bad trailer", what, (unsigned long long)off);
  if (t[0] == SST_NONE) {
    *out = payload;
    *out_n = stored;
    return SOCHDB_OK;
  }
  int rc = scratch_reserve(s, ulen);
  if (rc)
    return rc;
  int d = LZ4_decompress_safe((const char *)payload, (char *)s->p, (int)stored, (int)ulen);
  if (d < 0 || (uint32_t)d != ulen)
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: LZ4 data does not decompress", what,
                    (unsigned long long)off);
  *out = s->p;
  *out_n = ulen;
  return SOCHDB_OK;
}

static int load_block(const uint8_t *buf, uint64_t off, uint32_t size, uint64_t seed, struct sst_scratch *s,
                      struct sst_blk *out, const char *what)
{
  const uint8_t *p = NULL;   /* initialised only for gcc's -Wmaybe-uninitialized */
  size_t n = 0;
  int rc = load_payload(buf, off, size, seed, s, &p, &n, what);
  return rc ? rc : parse_block(p, n, out, what, off);
}

static int get_varint(const uint8_t *p, size_t end, size_t *pos, uint64_t *v)
{
  uint64_t r = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (*pos >= end)
      return 0;
    uint8_t c = p[(*pos)++];
    if (shift == 63 && c > 1)
      return 0;
    r |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = r;
      return 1;
    }
  }
  return 0;
}

static void cursor_start(struct sst_cursor *c, const struct sst_blk *b)
{
  c->blk = *b;
  c->pos = 0;
  c->next_restart = 0;
  c->klen = 0;
}

/* Position the cursor at restart point i (the next entry decoded is its). */
static void cursor_restart(struct sst_cursor *c, uint32_t i)
{
  c->pos = ld32(c->blk.restarts + 4 * (size_t)i);
  c->next_restart = i;
  c->klen = 0;
}

/* Decode the next entry: 1, 0 at the block's end, or -1 if malformed. */
static int cursor_next(struct sst_cursor *c)
{
  const struct sst_blk *b = &c->blk;
  if (c->pos >= b->ents)
    return 0;
  int at_restart = 0;
  if (c->next_restart < b->nrestarts) {
    uint32_t r = ld32(b->restarts + 4 * (size_t)c->next_restart);
    if (c->pos > r)
      return -1;                     /* a restart offset inside an entry */
    if (c->pos == r) {
      at_restart = 1;
      c->next_restart++;
    }
  }
  size_t pos = c->pos;
  uint64_t shared, unshared, vlen, seq;
  if (!get_varint(b->p, b->ents, &pos, &shared) || !get_varint(b->p, b->ents, &pos, &unshared) ||
      !get_varint(b->p, b->ents, &pos, &vlen) || !get_varint(b->p, b->ents, &pos, &seq) || pos >= b->ents)
    return -1;
  unsigned kind = b->p[pos++];
  if ((at_restart && shared) || shared > c->klen || unshared > SOCHDB_MAX_KEY ||
      shared + unshared == 0 || shared + unshared > SOCHDB_MAX_KEY || vlen > SOCHDB_MAX_VALUE ||
      (kind != SST_PUT && kind != SST_DEL) || (kind == SST_DEL && vlen) ||
      unshared + vlen > b->ents - pos)
    return -1;
  memcpy(c->key + shared, b->p + pos, (size_t)unshared);
  pos += (size_t)unshared;
  c->klen = (size_t)(shared + unshared);
  c->seq = seq;
  c->kind = kind;
  c->val = b->p + pos;
  c->vlen = (uint32_t)vlen;
  c->pos = pos + (size_t)vlen;
  return 1;
}

/* Decode entries until the first whose internal key is >= (key, seq): 1 with
** it decoded, 0 if none in the block, -1 if malformed. Binary search over the
** restart points first. */
static int cursor_seek(struct sst_cursor *c, const uint8_t *key, size_t klen, uint64_t seq)
{
  uint32_t lo = 0, hi = c->blk.nrestarts;   /* restarts below lo are < target */
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    cursor_restart(c, mid);
    int rc = cursor_next(c);
    if (rc <= 0)
      return -1;
    if (ikey_cmp(c->key, c->klen, c->seq, key, klen, seq) < 0)
      lo = mid;
    else
      hi = mid;
  }
  if (c->blk.nrestarts == 0)
    return 0;
  cursor_restart(c, lo);
  for (;;) {
    int rc = cursor_next(c);
    if (rc <= 0)
      return rc;
    if (ikey_cmp(c->key, c->klen, c->seq, key, klen, seq) >= 0)
      return 1;
  }
}

/* ---- opening ---------------------------------------------------------------- */

static int bad(const char *msg) { return sdb_fail(SOCHDB_CORRUPT, "SSTable: %s", msg); }

int sst_open(const uint8_t *buf, size_t len, struct sst_reader *r)
{
  if (!r)
    return sdb_fail(SOCHDB_INVALID, "sst_open: NULL reader");
  memset(r, 0, sizeof *r);
  if (!buf && len)
    return sdb_fail(SOCHDB_INVALID, "sst_open: NULL buffer");
  if (len < SST_FOOTER_BYTES)
    return sdb_fail(SOCHDB_CORRUPT, "SSTable of %zu bytes is shorter than its footer", len);
  const uint8_t *f = buf + len - SST_FOOTER_BYTES;
  if (memcmp(f, SST_MAGIC, sizeof SST_MAGIC) != 0)
    return bad("bad footer magic (not an SSTable, or truncated)");
  if (ld64(f + 56) != XXH3_64bits_withSeed(f, 56, SEED_FOOTER))
    return bad("footer checksum mismatch");
  if (ld32(f + 8) != SST_VERSION)
    return sdb_fail(SOCHDB_VERSION, "SSTable version %u; this library reads %u", ld32(f + 8), SST_VERSION);
  uint64_t filter_off = ld64(f + 16), index_off = ld64(f + 24);
  uint32_t filter_size = ld32(f + 32), index_size = ld32(f + 36);
  uint64_t body = len - SST_FOOTER_BYTES;
  if (index_size > body || index_off != body - index_size || filter_size > index_off ||
      filter_off != index_off - filter_size)
    return bad("footer block handles do not tile the file");

  /* filter: never compressed, so its bits stay in buf */
  const uint8_t *fp = NULL;   /* initialised only for gcc's -Wmaybe-uninitialized */
  size_t fn = 0;
  int rc = load_payload(buf, filter_off, filter_size, SEED_FILTER, NULL, &fp, &fn, "filter");
  if (rc)
    return rc;
  if (fn < 2)
    return bad("filter block is malformed");
  r->bloom = fp;
  r->bloom_bits = (uint64_t)(fn - 1) * 8;
  r->bloom_k = fp[fn - 1];
  if (r->bloom_k == 0 || r->bloom_k > 30)
    return bad("filter block has a bad hash count");

  /* index */
  struct sst_scratch s = {0};
  struct sst_blk ib;
  rc = load_block(buf, index_off, index_size, SEED_INDEX, &s, &ib, "index");
  if (rc) {
    sst_scratch_free(&s);
    return rc;
  }
  struct sst_cursor *c = malloc(sizeof *c);
  if (!c) {
    sst_scratch_free(&s);
    return sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
  }
  cursor_start(c, &ib);
  size_t cap = 0, keys_n = 0, keys_cap = 0;
  uint64_t expect_off = 0;
  rc = SOCHDB_OK;
  for (;;) {
    int e = cursor_next(c);
    if (e == 0)
      break;
    if (e < 0 || c->kind != SST_PUT || c->vlen != 12) {
      rc = bad("index block entry is malformed");
      break;
    }
    uint64_t boff = ld64(c->val);
    uint32_t bsize = ld32(c->val + 8);
    if (boff != expect_off || bsize < SST_TRAILER_BYTES || bsize > filter_off - boff) {
      rc = bad("index block handle out of place");
      break;
    }
    if (r->nblocks > 0) {
      const struct sst_index_entry *p = &r->index[r->nblocks - 1];
      if (ikey_cmp(r->keys + p->key_off, p->klen, p->seq, c->key, c->klen, c->seq) >= 0) {
        rc = bad("index block keys out of order");
        break;
      }
    }
    if (r->nblocks == cap) {
      size_t nc = cap ? cap * 2 : 64;
      struct sst_index_entry *q = realloc(r->index, nc * sizeof *q);
      if (!q) {
        rc = sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
        break;
      }
      r->index = q;
      cap = nc;
    }
    if (!reserve(&r->keys, &keys_cap, keys_n + c->klen)) {
      rc = sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
      break;
    }
    memcpy(r->keys + keys_n, c->key, c->klen);
    r->index[r->nblocks++] =
        (struct sst_index_entry){.offset = boff, .size = bsize, .klen = (uint32_t)c->klen, .key_off = keys_n,
                                 .seq = c->seq};
    keys_n += c->klen;
    expect_off = boff + bsize;
  }
  free(c);
  sst_scratch_free(&s);
  if (!rc && expect_off != filter_off)
    rc = bad("data blocks do not end where the filter starts");
  r->entries = ld32(f + 12);
  r->min_seq = ld64(f + 40);
  r->max_seq = ld64(f + 48);
  if (!rc && (r->nblocks == 0) != (r->entries == 0))
    rc = bad("entry count does not match the index");
  if (rc) {
    sst_close(r);
    return rc;
  }
  r->buf = buf;
  r->len = len;
  r->data_end = filter_off;
  return SOCHDB_OK;
}

void sst_block_seal(uint8_t *file, uint64_t offset, uint32_t size, enum sst_block_type which)
{
  uint64_t seed = which == SST_BLOCK_DATA ? SEED_DATA : which == SST_BLOCK_FILTER ? SEED_FILTER : SEED_INDEX;
  uint8_t *t = file + offset + size - SST_TRAILER_BYTES;
  st64(t + 8, block_checksum(file + offset, size - SST_TRAILER_BYTES, t, seed, offset));
}

void sst_footer_seal(uint8_t *footer)
{
  st64(footer + 56, XXH3_64bits_withSeed(footer, 56, SEED_FOOTER));
}

void sst_close(struct sst_reader *r)
{
  free(r->index);
  free(r->keys);
  memset(r, 0, sizeof *r);
}

/* ---- point reads ------------------------------------------------------------ */

int sst_may_contain(const struct sst_reader *r, const void *key, size_t klen)
{
  if (r->bloom_bits == 0)
    return 0;
  uint64_t h = bloom_hash(key, klen), h1 = (uint32_t)h, h2 = h >> 32;
  for (unsigned j = 0; j < r->bloom_k; j++) {
    uint64_t bit = (h1 + j * h2) % r->bloom_bits;
    if (!(r->bloom[bit / 8] & (1u << (bit % 8))))
      return 0;
  }
  return 1;
}

/* The first block whose last internal key is >= (key, seq); nblocks if none. */
static uint32_t find_block(const struct sst_reader *r, const uint8_t *key, size_t klen, uint64_t seq)
{
  uint32_t lo = 0, hi = r->nblocks;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    const struct sst_index_entry *e = &r->index[mid];
    if (ikey_cmp(r->keys + e->key_off, e->klen, e->seq, key, klen, seq) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void sst_set_cache(struct sst_reader *r, const struct sst_block_cache *c)
{
  if (c)
    r->cache = *c;
  else
    memset(&r->cache, 0, sizeof r->cache);
}

/* The uncompressed length of data block e if its trailer (not verified yet)
** says LZ4 with a plausible length, else 0: only such blocks are cached.
** sst_open checked that the block lies in the file and holds a trailer. */
static uint32_t cacheable_len(const struct sst_reader *r, const struct sst_index_entry *e)
{
  const uint8_t *t = r->buf + e->offset + e->size - SST_TRAILER_BYTES;
  uint32_t ulen = ld32(t + 4);
  if (t[0] != SST_LZ4 || t[1] || t[2] || t[3] || ulen == 0 || ulen > SST_MAX_PAYLOAD)
    return 0;
  return ulen;
}

/* Block e from the cache into the scratch (grown to ulen already): 1 with *b,
** or 0 on a miss. A hit of another length, or one whose restart array does
** not parse (a cache that lies), is a miss: the block is then read from the
** file and verified. */
static int cache_lookup(const struct sst_reader *r, const struct sst_index_entry *e, uint32_t ulen,
                        struct sst_scratch *s, struct sst_blk *b)
{
  size_t n = 0;
  if (!r->cache.lookup(r->cache.ctx, e->offset, s->p, s->cap, &n) || n != ulen)
    return 0;
  return parse_block(s->p, n, b, "data", e->offset) == SOCHDB_OK;
}

/* Data block i: from the cache if it has it, else from the file (verified),
** then into the cache if it was compressed. */
static int load_data(const struct sst_reader *r, uint32_t i, struct sst_scratch *s, struct sst_blk *b)
{
  const struct sst_index_entry *e = &r->index[i];
  uint32_t ulen = r->cache.lookup || r->cache.insert ? cacheable_len(r, e) : 0;
  if (ulen && r->cache.lookup) {
    int rc = scratch_reserve(s, ulen);
    if (rc)
      return rc;
    if (cache_lookup(r, e, ulen, s, b))
      return SOCHDB_OK;
  }
  int rc = load_block(r->buf, e->offset, e->size, SEED_DATA, s, b, "data");
  /* verified, decompressed to ulen bytes in the scratch and parsed */
  if (rc == SOCHDB_OK && ulen && r->cache.insert && b->p == s->p)
    r->cache.insert(r->cache.ctx, e->offset, s->p, ulen);
  return rc;
}

static int corrupt_entry(const struct sst_reader *r, uint32_t i)
{
  return sdb_fail(SOCHDB_CORRUPT, "SSTable data block at %llu: malformed entry",
                  (unsigned long long)r->index[i].offset);
}

int sst_get(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
            struct sst_scratch *scratch, struct sst_get_result *res)
{
  if (!r || !key || !scratch || !res || klen == 0 || klen > SOCHDB_MAX_KEY)
    return sdb_fail(SOCHDB_INVALID, "sst_get: NULL argument or key of %zu bytes", klen);
  memset(res, 0, sizeof *res);
  if (r->nblocks == 0 || !sst_may_contain(r, key, klen))
    return SOCHDB_OK;
  /* The first entry >= (key, snapshot) is in the first block whose last
  ** entry is >= it: versions continuing into the next block are found there. */
  uint32_t i = find_block(r, key, klen, snapshot);
  if (i == r->nblocks)
    return SOCHDB_OK;
  struct sst_blk b;
  int rc = load_data(r, i, scratch, &b);
  if (rc)
    return rc;
  struct sst_cursor *c = malloc(sizeof *c);
  if (!c)
    return sdb_fail(SOCHDB_NOMEM, "out of memory in sst_get");
  cursor_start(c, &b);
  int e = cursor_seek(c, key, klen, snapshot);
  if (e < 0)
    rc = corrupt_entry(r, i);
  else if (e > 0 && c->klen == klen && memcmp(c->key, key, klen) == 0) {
    res->found = 1;
    res->tombstone = c->kind == SST_DEL;
    res->val = c->val;
    res->vlen = c->vlen;
    res->seq = c->seq;
  }
  free(c);
  return rc;
}

/* ---- iterating ---------------------------------------------------------------- */

void sst_iter_init(struct sst_iter *it, const struct sst_reader *r)
{
  memset(it, 0, sizeof *it);
  it->r = r;
}

static int iter_load(struct sst_iter *it, uint32_t i)
{
  it->block = i;
  it->loaded = 0;
  it->pending = 0;
  if (i >= it->r->nblocks)
    return SOCHDB_OK;
  struct sst_blk b;
  int rc = load_data(it->r, i, &it->scratch, &b);
  if (rc) {
    it->block = it->r->nblocks;
    return rc;
  }
  cursor_start(&it->cur, &b);
  it->loaded = 1;
  return SOCHDB_OK;
}

int sst_iter_seek(struct sst_iter *it, const void *key, size_t klen)
{
  it->started = 1;
  if (!key)
    return iter_load(it, 0);
  if (klen == 0 || klen > SOCHDB_MAX_KEY)
    return sdb_fail(SOCHDB_INVALID, "sst_iter_seek: key of %zu bytes", klen);
  uint32_t i = find_block(it->r, key, klen, UINT64_MAX);
  int rc = iter_load(it, i);
  if (rc || !it->loaded)
    return rc;
  int e = cursor_seek(&it->cur, key, klen, UINT64_MAX);
  if (e < 0) {
    it->block = it->r->nblocks;
    it->loaded = 0;
    return corrupt_entry(it->r, i);
  }
  if (e > 0)
    it->pending = 1;
  else
    return iter_load(it, i + 1);
  return SOCHDB_OK;
}

int sst_iter_next(struct sst_iter *it, struct sst_entry *e)
{
  if (!it->started) {   /* fresh: start at the first block */
    it->started = 1;
    int rc = iter_load(it, 0);
    if (rc)
      return rc;
  }
  while (!it->pending) {
    if (!it->loaded)
      return SOCHDB_NOTFOUND;
    int d = cursor_next(&it->cur);
    if (d > 0)
      break;
    if (d < 0) {
      uint32_t i = it->block;
      it->block = it->r->nblocks;
      it->loaded = 0;
      return corrupt_entry(it->r, i);
    }
    int rc = iter_load(it, it->block + 1);
    if (rc)
      return rc;
  }
  it->pending = 0;
  e->key = it->cur.key;
  e->klen = (uint32_t)it->cur.klen;
  e->seq = it->cur.seq;
  e->kind = it->cur.kind;
  e->val = it->cur.val;
  e->vlen = it->cur.vlen;
  return SOCHDB_OK;
}

void sst_iter_free(struct sst_iter *it)
{
  sst_scratch_free(&it->scratch);
  it->loaded = 0;
  it->pending = 0;
}
