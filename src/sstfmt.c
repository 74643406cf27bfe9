/*
** sstfmt.c — building and reading SSTables (see sstfmt.h for the layout):
** plain data blocks, the filter, the index and the footer; every block and
** every segment of a columnar block (a "piece") verified, decompressed and
** cached the same way; point reads and the iterator over both kinds of data
** block, with projection for columnar ones. What only columnar blocks need
** (rows split into columns, descriptors, reassembly, min/max) is sstcol.c.
** The reader trusts nothing it has not verified: every varint, length and
** restart offset is bounded by its block before use.
*/
#include "sstfmt_int.h"

#include "bytes.h"
#include "error.h"
#include "sochdb.h"
#include "bulkhash.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#define SST_MAGIC       "SOCHSST"
#define SEED_DATA       0x5353544441ull
#define SEED_FILTER     0x5353544642ull
#define SEED_INDEX      0x5353544943ull
#define SEED_FOOTER     0x5353544644ull
#define SEED_BLOOM      0x53535442ull
#define SEED_SEGMENT    0x5353544353ull   /* + the segment's index in its block */
/* Bigger than any data block (or segment) the builder makes: a block is cut
** once it reaches SST_BLOCK_MAX, so it holds at most that plus one entry and
** its restart. The most an LZ4 piece may decompress to: a filter is never
** compressed, and an index bigger than this is stored as it is. */
#define SST_MAX_PAYLOAD (SST_BLOCK_MAX + SOCHDB_MAX_KEY + SOCHDB_MAX_VALUE + 64u)


static uint64_t bloom_hash(const void *key, size_t klen) { return XXH3_64bits_withSeed(key, klen, SEED_BLOOM); }

/* ---- a data block's hash index (sstfmt.h, "Hashed data blocks") ---------- */

#define SST_HASHED 0x80000000u   /* in a block's last word: it ends in a hash index */

/* The slots of a block of nkeys keys, and the bytes they and their count take. */
static uint32_t hash_slots(size_t nkeys) { return (uint32_t)(nkeys + (nkeys + 1) / 2 + 1); }
static size_t hash_bytes(size_t nkeys) { return 3 * (size_t)hash_slots(nkeys) + 2; }

/* Where the probe for bloom hash h starts among m slots (bits 16-47, mostly
** the high ones), and the tag it looks for (bits 0-7): bits that neither
** each other nor the blocked filter's first bit (bits 55-63) decide, so that
** an absent key the filter lets through is no likelier than any other to
** meet its tag. */
static uint32_t slot_home(uint64_t h, uint32_t m) { return (uint32_t)(((h >> 16) & 0xffffffffu) * m >> 32); }
static uint8_t slot_tag(uint64_t h) { return (uint8_t)h ? (uint8_t)h : 1; }

/* The filter's bits for hash h are (h1 + j * h2) mod nbits, j < k, where h1
** and h2 are h's halves (the format, sstfmt.h). A probe steps from one to
** the next by adding h2 mod nbits, so a lookup divides twice, not k times:
** the same positions. */
struct bloom_probe {
  uint64_t bit, step, nbits;
};

static inline struct bloom_probe bloom_first(uint64_t h, uint64_t nbits)
{
  return (struct bloom_probe){ (uint32_t)h % nbits, (h >> 32) % nbits, nbits };
}

static inline void bloom_next(struct bloom_probe *p)
{
  p->bit += p->step;            /* both below nbits: one subtraction is enough */
  if (p->bit >= p->nbits)
    p->bit -= p->nbits;
}

/* The blocked filter's line for hash h, and the k bits in it: successive
** multiplications by an odd constant stir the hash's high half, each bit
** taken from the product's top 9 bits. */
#define BLOOM_LINE_BYTES 64u
static inline uint64_t bloom_line(uint64_t h, uint64_t nlines) { return (h & 0xffffffffu) * nlines >> 32; }
static inline unsigned bloom_line_bit(uint32_t *g)
{
  unsigned bit = *g >> 23;
  *g *= 0x9e3779b9u;
  return bit;
}

/* Checksum of a stored block: the trailer's first 8 bytes seed the payload's. */
static uint64_t block_checksum(const uint8_t *payload, size_t n, const uint8_t *trailer, uint64_t seed,
                               uint64_t offset)
{
  uint64_t s = XXH3_64bits_withSeed(trailer, 8, seed ^ offset);
  return XXH3_64bits_withSeed(payload, n, s);
}

/* ---- writing ------------------------------------------------------------ */

static void blockbuf_reset(struct sst_blockbuf *bb)
{
  bb->n = 0;
  bb->nrestarts = 0;
  bb->since_restart = 0;
  bb->last_klen = 0;
  bb->entries = 0;
  bb->nkeys = 0;
}

static size_t blockbuf_size(const struct sst_blockbuf *bb)
{
  return bb->n + 4 * bb->nrestarts + 4 + (bb->hashed ? hash_bytes(bb->nkeys) : 0);
}

/* In a hashed block, a key's first entry is stored whole, where it starts
** noted with the key's hash (the block's hash index points there). */
static int blockbuf_note_key(struct sst_blockbuf *bb, uint64_t hash)
{
  if (bb->nkeys == bb->kcap) {
    size_t c = bb->kcap ? bb->kcap * 2 : 64;
    struct sst_keystart *q = realloc(bb->keys, c * sizeof *q);
    if (!q)
      return SOCHDB_NOMEM;
    bb->keys = q;
    bb->kcap = c;
  }
  bb->keys[bb->nkeys++] = (struct sst_keystart){ (uint32_t)bb->n, hash };
  return SOCHDB_OK;
}

/* How many bytes key and last share at their start. */
static size_t shared_prefix(const uint8_t *key, size_t klen, const uint8_t *last, size_t last_klen)
{
  size_t m = klen < last_klen ? klen : last_klen, shared = 0;
  for (; shared + 8 <= m; shared += 8)
    if (ld64be(key + shared) != ld64be(last + shared))
      return shared + (size_t)__builtin_clzll(ld64be(key + shared) ^ ld64be(last + shared)) / 8;
  while (shared < m && key[shared] == last[shared])
    shared++;
  return shared;
}

/* hash: the key's bloom hash, for a hashed block. same_key: the caller knows
** that key is the previous entry's key (the builder compared them already);
** 0 when it does not know (the index). */
static int blockbuf_add(struct sst_blockbuf *bb, const uint8_t *key, size_t klen, uint64_t seq, unsigned kind,
                        const uint8_t *val, size_t vlen, uint64_t hash, int same_key)
{
  size_t shared = 0;
  int restart = bb->since_restart == SST_RESTART_INTERVAL || bb->entries == 0;
  same_key = same_key && bb->entries;   /* the first entry of a block continues nothing in it */
  if (restart) {
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
  } else if (same_key) {
    shared = klen;
  } else if (!bb->hashed) {          /* a hashed block stores a new key whole, where the index points */
    shared = shared_prefix(key, klen, bb->last_key, bb->last_klen);
  }
  if (bb->hashed && !same_key && blockbuf_note_key(bb, hash))
    return SOCHDB_NOMEM;
  if (!sst_grow(&bb->p, &bb->cap, bb->n + 4 * 10 + 1 + klen + vlen))
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

/* Append the hash index of a hashed block's keys (after its restart array):
** 0, or 1 if a key starts too far in for a u16 offset (the block is then
** written without one; its keys' first entries are whole either way). */
static int blockbuf_hash(struct sst_blockbuf *bb)
{
  if (bb->nkeys == 0 || bb->keys[bb->nkeys - 1].off > 0xffffu)
    return 0;
  uint32_t m = hash_slots(bb->nkeys);
  uint8_t *offs = bb->p + bb->n, *tags = offs + 2 * (size_t)m;
  memset(offs, 0, 3 * (size_t)m);    /* empty slots too: the same entries make the same file */
  for (size_t k = 0; k < bb->nkeys; k++) {
    uint32_t at = slot_home(bb->keys[k].hash, m);
    while (tags[at])                 /* m > nkeys: an empty slot comes */
      at = at + 1 == m ? 0 : at + 1;
    tags[at] = slot_tag(bb->keys[k].hash);
    st16(offs + 2 * (size_t)at, (uint16_t)bb->keys[k].off);
  }
  st16(tags + m, (uint16_t)m);
  bb->n += 3 * (size_t)m + 2;
  return 1;
}

/* Append the restart array, a hashed block's hash index and the count: the
** payload is then bb->p[0..n), and bb->hashed says whether it has the index. */
static int blockbuf_seal(struct sst_blockbuf *bb)
{
  if (!sst_grow(&bb->p, &bb->cap, blockbuf_size(bb)))
    return SOCHDB_NOMEM;
  for (size_t i = 0; i < bb->nrestarts; i++)
    st32(bb->p + bb->n + 4 * i, bb->restarts[i]);
  bb->n += 4 * bb->nrestarts;
  bb->hashed = bb->hashed && blockbuf_hash(bb);
  st32(bb->p + bb->n, (uint32_t)bb->nrestarts | (bb->hashed ? SST_HASHED : 0));
  bb->n += 4;
  return SOCHDB_OK;
}

/* Where the next piece goes in the file: after what was spilled and held. */
static uint64_t file_pos(const struct sst_builder *b) { return b->spilled + b->out_n; }

/* LZ4's c bytes of an n-byte payload (c = 0: LZ4 failed) are kept only when
** they save an eighth. */
static int lz4_pays(size_t c, size_t n) { return c > 0 && c <= n - n / 8; }

/* Append payload as a piece (a block, or a segment of a columnar one) at the
** end of the file, its checksum seeded with seed ^ seed_off; its stored size
** to *size. */
static int store_piece(struct sst_builder *b, const uint8_t *payload, size_t n, uint64_t seed, uint64_t seed_off,
                       int may_compress, uint32_t *size)
{
  if (!sst_grow(&b->out, &b->out_cap, b->out_n + n + SST_TRAILER_BYTES))
    return SOCHDB_NOMEM;
  uint8_t *dst = b->out + b->out_n;
  size_t stored = n;
  unsigned comp = SST_NONE;
  if (may_compress && n >= 16) {
    int bound = LZ4_compressBound((int)n);
    uint8_t *tmp = bound > 0 ? malloc((size_t)bound) : NULL;
    if (!tmp)
      return SOCHDB_NOMEM;
    int c = LZ4_compress_default((const char *)payload, (char *)tmp, (int)n, bound);   /* 0: failed, never < 0 */
    if (lz4_pays((size_t)c, n)) {
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
  st64(t + 8, block_checksum(dst, stored, t, seed, seed_off));
  b->out_n += stored + SST_TRAILER_BYTES;
  *size = (uint32_t)(stored + SST_TRAILER_BYTES);
  return SOCHDB_OK;
}

/* A block: its checksum is seeded with its own offset. */
static int store_block(struct sst_builder *b, const uint8_t *payload, size_t n, uint64_t seed, int may_compress,
                       uint32_t *size)
{
  return store_piece(b, payload, n, seed, file_pos(b), may_compress, size);
}

/* The data block just written ends on the data blockbuf's last key: index it. */
static int add_index_entry(struct sst_builder *b, const uint8_t *val, size_t n)
{
  struct sst_blockbuf *d = &b->data;
  int rc = blockbuf_add(&b->index, d->last_key, d->last_klen, d->last_seq, SST_PUT, val, n, 0, 0);
  blockbuf_reset(d);
  return rc;
}

/* Whether the next plain data block tries LZ4 (see lz4_backoff). */
static int lz4_worth_trying(struct sst_builder *b)
{
  if (b->lz4_skip_left == 0)
    return 1;
  b->lz4_skip_left--;
  return 0;
}

/* A block that tried LZ4 shrank (stored < payload) or did not. */
static void lz4_outcome(struct sst_builder *b, int shrank)
{
  if (shrank)
    b->lz4_backoff = 0;
  else
    b->lz4_backoff = b->lz4_backoff == 0 ? 1 : b->lz4_backoff >= SST_LZ4_SKIP_MAX / 2 ? SST_LZ4_SKIP_MAX
                                                                                  : 2 * b->lz4_backoff;
  b->lz4_skip_left = b->lz4_backoff;
}

/* Write the plain data block being built and add its index entry. */
static int flush_plain(struct sst_builder *b)
{
  struct sst_blockbuf *d = &b->data;
  uint64_t offset = file_pos(b);
  uint32_t size;
  int rc = blockbuf_seal(d);
  int try_lz4 = b->lz4_data && lz4_worth_trying(b);
  if (!rc)
    rc = store_block(b, d->p, d->n, SEED_DATA, try_lz4, &size);
  if (rc)
    return rc;
  b->any_hashed |= d->hashed;
  if (try_lz4)
    lz4_outcome(b, size < d->n + SST_TRAILER_BYTES);
  uint8_t handle[12];
  st64(handle, offset);
  st32(handle + 8, size);
  return add_index_entry(b, handle, sizeof handle);
}

/* Write the columnar block being built: its keys segment (the data blockbuf,
** whose entries carry no value), one segment per column, its index entry. */
static int flush_columnar(struct sst_builder *b)
{
  struct sst_blockbuf *d = &b->data;
  uint64_t offset = file_pos(b);
  uint32_t sizes[1 + SST_MAX_COLUMNS];
  int rc = blockbuf_seal(d);
  if (!rc)
    rc = store_piece(b, d->p, d->n, SEED_SEGMENT, offset, 1, &sizes[0]);
  for (unsigned j = 0; !rc && j < b->col_n; j++) {
    size_t n = 0;
    rc = sstcol_segment(b, j, &n);
    if (!rc)
      rc = store_piece(b, b->seg, n, SEED_SEGMENT + 1 + j, offset, 1, &sizes[1 + j]);
  }
  if (rc)
    return rc;
  uint8_t desc[SST_COL_DESC_BYTES + SST_COL_DESC_PER_COL * SST_MAX_COLUMNS];
  size_t n = sstcol_descriptor(b, offset, sizes, desc);
  b->any_columnar = 1;
  return add_index_entry(b, desc, n);
}

/* Hand what is held to the spill sink, if there is one and enough is held. */
static int maybe_spill(struct sst_builder *b)
{
  if (!b->spill || b->out_n < SST_SPILL_BYTES)
    return SOCHDB_OK;
  int rc = b->spill(b->spill_ctx, b->out, b->out_n);
  if (rc) {
    b->failed = rc;   /* part of it may be written: the file is lost */
    return rc;
  }
  b->spilled += b->out_n;
  b->out_n = 0;
  return SOCHDB_OK;
}

/* Write the data block being built, if any, and add its index entry. */
static int flush_data(struct sst_builder *b)
{
  if (b->data.entries == 0)
    return SOCHDB_OK;
  int rc = b->columnar ? flush_columnar(b) : flush_plain(b);
  return rc ? rc : maybe_spill(b);
}

void sst_builder_spill(struct sst_builder *b, int (*spill)(void *ctx, const uint8_t *p, size_t n), void *ctx)
{
  b->spill = spill;
  b->spill_ctx = ctx;
}

/* The data block being built is big enough to be cut. */
static int block_full(const struct sst_builder *b)
{
  size_t size = blockbuf_size(&b->data);
  if (!b->columnar)
    return size >= b->block_bytes;
  return size + b->col_bytes >= b->col_block_bytes;
}

int sst_builder_init(struct sst_builder *b, size_t block_bytes)
{
  memset(b, 0, sizeof *b);
  /* Columnar blocks are bigger (a scan reads each column's segment alone):
  ** SST_COLUMNAR_DEFAULT, or four plain blocks when the caller chose a size. */
  b->col_block_bytes = block_bytes ? 4 * block_bytes : SST_COLUMNAR_DEFAULT;
  if (block_bytes == 0)
    block_bytes = SST_BLOCK_DEFAULT;
  if (block_bytes < SST_BLOCK_MIN || block_bytes > SST_BLOCK_MAX)
    return sdb_fail(SOCHDB_INVALID, "SSTable block size %zu is outside %u..%u", block_bytes, SST_BLOCK_MIN,
                    SST_BLOCK_MAX);
  if (b->col_block_bytes > SST_BLOCK_MAX)
    b->col_block_bytes = SST_BLOCK_MAX;
  b->block_bytes = block_bytes;
  b->hash_blocks = 1;
  b->lz4_data = 1;
  return SOCHDB_OK;
}

static int builder_failed(struct sst_builder *b, int rc)
{
  if (rc == SOCHDB_NOMEM)
    b->failed = rc;
  return rc == SOCHDB_NOMEM ? sdb_fail(SOCHDB_NOMEM, "out of memory building an SSTable") : rc;
}

/* The arguments of sst_builder_add, but for their order. */
static int check_add(const struct sst_builder *b, const void *key, size_t klen, unsigned kind, const void *val,
                     size_t vlen)
{
  if (b->failed)
    return sdb_fail(b->failed, "SSTable builder failed earlier");
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
  return SOCHDB_OK;
}

/* Remember the bloom hash of a new user key. */
static int add_hash(struct sst_builder *b, const void *key, size_t klen)
{
  if (b->nhashes == b->hcap) {
    size_t c = b->hcap ? b->hcap * 2 : 1024;
    uint64_t *q = realloc(b->hashes, c * sizeof *q);
    if (!q)
      return SOCHDB_NOMEM;
    b->hashes = q;
    b->hcap = c;
  }
  b->hashes[b->nhashes++] = bloom_hash(key, klen);
  return SOCHDB_OK;
}

/* The entry into the data block being built: a plain entry whole; a row
** with no value, which goes to the column buffers instead. */
static int add_to_block(struct sst_builder *b, const struct sstcol_row *row, const void *key, size_t klen,
                        uint64_t seq, unsigned kind, const void *val, size_t vlen, int same_key)
{
  if (!row->columnar)   /* the last hash is this key's: a new key's, or the one it continues */
    return blockbuf_add(&b->data, key, klen, seq, kind, val, vlen, b->hashes[b->nhashes - 1], same_key);
  sstcol_note_entry(b, kind, seq, same_key);
  int rc = blockbuf_add(&b->data, key, klen, seq, kind, NULL, 0, 0, same_key);
  return rc || kind != SST_PUT ? rc : sstcol_add(b, row);
}

int sst_builder_add(struct sst_builder *b, const void *key, size_t klen, uint64_t seq, unsigned kind,
                    const void *val, size_t vlen)
{
  int rc = check_add(b, key, klen, kind, val, vlen);
  if (rc)
    return rc;
  struct sst_blockbuf *d = &b->data;
  /* The previous entry: in the data block, or the last one flushed (index). */
  const struct sst_blockbuf *prev = d->entries ? d : b->index.entries ? &b->index : NULL;
  int new_key = 1;
  if (prev) {   /* sst_ikey_order's two steps, the first of which says whether the key is new */
    int c = key_order(key, klen, prev->last_key, prev->last_klen);
    new_key = c != 0;
    if (c < 0 || (c == 0 && seq >= prev->last_seq))
      return sdb_fail(SOCHDB_INVALID, "SSTable entries out of order (seq %llu after seq %llu)",
                      (unsigned long long)seq, (unsigned long long)prev->last_seq);
  }
  struct sstcol_row row;
  sstcol_classify(key, klen, kind, val, vlen, &row);
  if (!sstcol_fits(b, &row) && (rc = flush_data(b)))
    return builder_failed(b, rc);
  if (d->entries == 0) {
    sstcol_start(b, &row);
    d->hashed = b->hash_blocks && !row.columnar;
  }
  if ((new_key && (rc = add_hash(b, key, klen))) ||
      (rc = add_to_block(b, &row, key, klen, seq, kind, val, vlen, !new_key)))
    return builder_failed(b, rc);
  if (b->entries == 0 || seq < b->min_seq)
    b->min_seq = seq;
  if (b->entries == 0 || seq > b->max_seq)
    b->max_seq = seq;
  b->entries++;
  if (block_full(b) && (rc = flush_data(b)))
    return builder_failed(b, rc);
  return SOCHDB_OK;
}

/* The filter payload of the keys added, for a version-1 or -2 file (see
** sstfmt.h): malloc'ed, its size in *n; NULL out of memory. */
static uint8_t *bloom_classic(const struct sst_builder *b, size_t *n)
{
  uint64_t nbits = (uint64_t)b->nhashes * SST_BLOOM_BITS;
  if (nbits < 64)
    nbits = 64;
  size_t nbytes = (size_t)((nbits + 7) / 8);
  nbits = (uint64_t)nbytes * 8;
  uint8_t *bloom = calloc(nbytes + 1, 1);
  if (!bloom)
    return NULL;
  for (size_t i = 0; i < b->nhashes; i++) {
    struct bloom_probe p = bloom_first(b->hashes[i], nbits);
    for (unsigned j = 0; j < SST_BLOOM_K; j++, bloom_next(&p))
      bloom[p.bit / 8] |= (uint8_t)(1u << (p.bit % 8));
  }
  bloom[nbytes] = SST_BLOOM_K;
  *n = nbytes + 1;
  return bloom;
}

/* ... and the blocked one of a version-3 file stored at file offset off. */
static uint8_t *bloom_blocked(const struct sst_builder *b, uint64_t off, size_t *n)
{
  uint64_t nlines = ((uint64_t)b->nhashes * SST_BLOOM_BITS + 8 * BLOOM_LINE_BYTES - 1) / (8 * BLOOM_LINE_BYTES);
  if (nlines == 0)
    nlines = 1;
  size_t pad = (BLOOM_LINE_BYTES - off % BLOOM_LINE_BYTES) % BLOOM_LINE_BYTES;
  *n = pad + (size_t)nlines * BLOOM_LINE_BYTES + 2;
  uint8_t *bloom = calloc(*n, 1);
  if (!bloom)
    return NULL;
  for (size_t i = 0; i < b->nhashes; i++) {
    uint8_t *line = bloom + pad + bloom_line(b->hashes[i], nlines) * BLOOM_LINE_BYTES;
    uint32_t g = (uint32_t)(b->hashes[i] >> 32);
    for (unsigned j = 0; j < SST_BLOOM_K; j++) {
      unsigned bit = bloom_line_bit(&g);
      line[bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
  }
  bloom[*n - 2] = SST_BLOOM_K;
  bloom[*n - 1] = (uint8_t)pad;
  return bloom;
}

/* A version-4 index block (sstfmt.h): its header, then pad zeros. */
#define SEARCH_INDEX_HEADER 24u

_Static_assert(sizeof(struct sst_probe) == 16 && sizeof(struct sst_index_entry) == 40,
               "a version-4 index is read in place: its structs are the file's layout");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the file format is little-endian");

static int parse_block(const uint8_t *p, size_t n, struct sst_blk *out, const char *what, uint64_t off,
                       int hash_ok);
static int parse_index(struct sst_reader *r, const struct sst_blk *ib, uint64_t filter_off);

/* The version-4 index (sstfmt.h), stored uncompressed at the current end:
** the sealed index blockbuf decoded as a reader of an older version decodes
** it, then written out as that reader's arrays. */
static int store_search_index(struct sst_builder *b, uint64_t filter_off, uint32_t *size)
{
  uint64_t index_off = file_pos(b);
  struct sst_blk ib;
  struct sst_reader t;
  memset(&t, 0, sizeof t);
  t.version = SST_VERSION;
  t.data_end = filter_off;
  int rc = parse_block(b->index.p, b->index.n, &ib, "index", index_off, 0);
  if (rc == SOCHDB_OK)
    rc = parse_index(&t, &ib, filter_off);
  uint32_t nb = t.nblocks;
  uint64_t keys_bytes = nb ? t.index[nb - 1].key_off + t.index[nb - 1].klen : 0;
  size_t pad = (size_t)((8 - (index_off + SEARCH_INDEX_HEADER) % 8) % 8);
  size_t probes = ((size_t)nb + 1) * sizeof(struct sst_probe), entries = (size_t)nb * sizeof(struct sst_index_entry);
  size_t n = SEARCH_INDEX_HEADER + pad + probes + entries + (size_t)keys_bytes;
  uint8_t *p = rc == SOCHDB_OK ? calloc(1, n) : NULL;
  if (rc == SOCHDB_OK && !p)
    rc = sdb_fail(SOCHDB_NOMEM, "out of memory building an SSTable's index");
  if (rc == SOCHDB_OK) {
    st32(p, nb);
    st32(p + 4, t.key_shared);
    st64(p + 8, keys_bytes);
    st32(p + 16, (uint32_t)pad);
    uint8_t *at = p + SEARCH_INDEX_HEADER + pad;
    memcpy(at, t.probe, probes);
    if (nb) {   /* an empty table decodes no entries: NULL arrays */
      memcpy(at + probes, t.index, entries);
      memcpy(at + probes + entries, t.keys, (size_t)keys_bytes);
    }
    rc = store_block(b, p, n, SEED_INDEX, 0, size);
  }
  free(p);
  sst_close(&t);
  return rc;
}

int sst_builder_finish(struct sst_builder *b, uint8_t **buf, size_t *len)
{
  if (b->failed)
    return sdb_fail(b->failed, "SSTable builder failed earlier");
  if (b->block_bytes == 0)
    return sdb_fail(SOCHDB_INVALID, "SSTable builder not initialized or already finished");
  int rc = flush_data(b);
  if (rc)
    return builder_failed(b, rc);

  unsigned version = !b->any_columnar && !b->legacy_index ? SST_VERSION
                   : b->any_hashed                       ? SST_VERSION_HASHED
                   : b->any_columnar                     ? SST_VERSION_COLUMNAR
                                                         : SST_VERSION_KV;

  /* filter */
  uint64_t filter_off = file_pos(b);
  uint8_t *bloom;
  size_t bloom_n;
  if (!(bloom = version >= SST_VERSION_HASHED ? bloom_blocked(b, filter_off, &bloom_n) : bloom_classic(b, &bloom_n)))
    return builder_failed(b, SOCHDB_NOMEM);
  uint32_t filter_size;
  rc = store_block(b, bloom, bloom_n, SEED_FILTER, 0, &filter_size);
  free(bloom);
  if (rc)
    return builder_failed(b, rc);

  /* index */
  uint64_t index_off = file_pos(b);
  uint32_t index_size;
  if ((rc = blockbuf_seal(&b->index)) ||
      (rc = version == SST_VERSION ? store_search_index(b, filter_off, &index_size)
                                   /* compressed only below what a reader decompresses */
                                   : store_block(b, b->index.p, b->index.n, SEED_INDEX, b->index.n <= SST_MAX_PAYLOAD,
                                                 &index_size)))
    return builder_failed(b, rc);

  /* footer */
  if (!sst_grow(&b->out, &b->out_cap, b->out_n + SST_FOOTER_BYTES))
    return builder_failed(b, SOCHDB_NOMEM);
  uint8_t *f = b->out + b->out_n;
  memset(f, 0, SST_FOOTER_BYTES);
  memcpy(f, SST_MAGIC, sizeof SST_MAGIC);
  st32(f + 8, version);
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
  free(b->data.keys);
  free(b->index.p);
  free(b->index.restarts);
  free(b->index.keys);
  free(b->hashes);
  sstcol_free(b);
  memset(b, 0, sizeof *b);
}

/* ---- reading blocks ------------------------------------------------------- */

void sst_scratch_free(struct sst_scratch *s)
{
  free(s->p);
  s->p = NULL;
  s->cap = 0;
}

/* The layout of a block payload p[0..n) that parse_block found sound: the
** restart array and, if it has one, the hash index before it (its slots'
** offsets are bounded when a get uses them). */
static void describe_block(const uint8_t *p, size_t n, struct sst_blk *out)
{
  uint32_t cnt = ld32(p + n - 4);
  size_t end = n - 4;               /* of the restart array */
  out->nslots = 0;
  out->slot_off = out->slot_tag = NULL;
  if (cnt & SST_HASHED) {
    cnt &= ~SST_HASHED;
    uint32_t m = ld16(p + end - 2);
    end -= 2 + 3 * (size_t)m;
    out->nslots = m;
    out->slot_off = p + end;
    out->slot_tag = p + end + 2 * (size_t)m;
  }
  out->p = p;
  out->ents = end - 4 * (size_t)cnt;
  out->restarts = p + out->ents;
  out->nrestarts = cnt;
}

/* What can be wrong with a block's payload structure: block_shape says. */
enum block_fault { BLOCK_SOUND, BLOCK_SHORT, BLOCK_HASH_FORBIDDEN, BLOCK_HASH_UNFIT, BLOCK_RESTARTS_UNFIT,
                   BLOCK_RESTARTS_EMPTY, BLOCK_RESTART_BAD };

/* Check a block's payload structure (restart array, and its hash index if it
** has one, which only hash_ok allows), quietly: its fault, with the number
** the fault is about in *what. It reads only the count (and a hashed
** block's slot count) in the last 4 (6) bytes and the restart array they
** place, bounds-checked (torn copies too: sst_get's peek). */
static enum block_fault block_shape(const uint8_t *p, size_t n, int hash_ok, uint32_t *what)
{
  if (n < 4)
    return BLOCK_SHORT;
  uint32_t cnt = ld32(p + n - 4);
  size_t end = n - 4;               /* of the restart array */
  if (cnt & SST_HASHED) {
    if (!hash_ok)
      return BLOCK_HASH_FORBIDDEN;
    cnt &= ~SST_HASHED;
    uint32_t m = end >= 2 ? ld16(p + end - 2) : 0;
    if (m == 0 || 3 * (size_t)m > end - 2)
      return *what = m, BLOCK_HASH_UNFIT;
    end -= 2 + 3 * (size_t)m;
  }
  if (cnt > end / 4)
    return *what = cnt, BLOCK_RESTARTS_UNFIT;
  size_t ents = end - 4 * (size_t)cnt;
  if ((cnt == 0) != (ents == 0))
    return *what = cnt, BLOCK_RESTARTS_EMPTY;
  const uint8_t *rs = p + ents;
  uint32_t prev = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    uint32_t r = ld32(rs + 4 * (size_t)i);
    if ((i == 0 && r != 0) || (i > 0 && r <= prev) || r >= ents)
      return *what = r, BLOCK_RESTART_BAD;
    prev = r;
  }
  return BLOCK_SOUND;
}

/* Check a block's payload structure (block_shape) and describe it. */
static int parse_block(const uint8_t *p, size_t n, struct sst_blk *out, const char *what, uint64_t off, int hash_ok)
{
  uint32_t v = 0;
  unsigned long long at = off;
  switch (block_shape(p, n, hash_ok, &v)) {
  case BLOCK_SOUND:
    describe_block(p, n, out);
    return SOCHDB_OK;
  case BLOCK_SHORT:
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: payload of %zu bytes", what, at, n);
  case BLOCK_HASH_FORBIDDEN:
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: a hash index where none may be", what, at);
  case BLOCK_HASH_UNFIT:
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: a hash index of %u slots does not fit", what, at, v);
  case BLOCK_RESTARTS_UNFIT:
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: %u restarts do not fit", what, at, v);
  case BLOCK_RESTARTS_EMPTY:
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: %u restarts for %s entries", what, at, v,
                    v ? "no" : "some");
  default:
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: bad restart offset %u", what, at, v);
  }
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

/* ---- pieces: blocks and segments ------------------------------------------ */

/* A block, or a segment of a columnar block: where it is stored (trailer
** included) and how its checksum is seeded. */
struct piece {
  uint64_t    off;
  uint32_t    size;
  uint64_t    seed, seed_off;
  const char *what;       /* a block's kind, for messages */
  int         segment;    /* its index in its block, or -1 for a block */
  _Atomic uint64_t *verified;   /* NULL, or the word of the reader's verified bits that holds the piece's */
  uint64_t    verified_bit;
};

static struct piece block_piece(uint64_t off, uint32_t size, uint64_t seed, const char *what)
{
  return (struct piece){ .off = off, .size = size, .seed = seed, .seed_off = off, .what = what, .segment = -1 };
}

/* Segment k of the columnar block at block_off. */
static struct piece segment_piece(uint64_t block_off, const struct sst_segment *s, unsigned k)
{
  return (struct piece){ .off = s->offset, .size = s->size, .seed = SEED_SEGMENT + k, .seed_off = block_off,
                         .what = "columnar", .segment = (int)k };
}

static int piece_fail(const struct piece *pc, const char *msg)
{
  if (pc->segment < 0)
    return sdb_fail(SOCHDB_CORRUPT, "SSTable %s block at %llu: %s", pc->what, (unsigned long long)pc->off, msg);
  return sdb_fail(SOCHDB_CORRUPT, "SSTable columnar block at %llu, segment %d: %s",
                  (unsigned long long)pc->seed_off, pc->segment, msg);
}

/* Relaxed: the bit only says that this reader already checked bytes that
** never change; it orders nothing else (the bytes are the file's, the same
** for every thread). A race verifies a block twice, harmlessly. */
static int piece_verified(const struct piece *pc)
{
  return pc->verified && (atomic_load_explicit(pc->verified, memory_order_relaxed) & pc->verified_bit);
}

static void mark_verified(const struct piece *pc)
{
  if (pc->verified)
    atomic_fetch_or_explicit(pc->verified, pc->verified_bit, memory_order_relaxed);
}

/* Verify piece pc of buf (checksum, trailer): SOCHDB_OK with its payload's
** uncompressed length and whether it is LZ4, or SOCHDB_CORRUPT. */
static int check_piece(const uint8_t *buf, const struct piece *pc, uint32_t *ulen, int *lz4)
{
  if (pc->size < SST_TRAILER_BYTES)
    return piece_fail(pc, "shorter than its trailer");
  const uint8_t *payload = buf + pc->off;
  size_t stored = pc->size - SST_TRAILER_BYTES;
  const uint8_t *t = payload + stored;
  if (!piece_verified(pc)) {
    if (ld64(t + 8) != block_checksum(payload, stored, t, pc->seed, pc->seed_off))
      return piece_fail(pc, "checksum mismatch");
    mark_verified(pc);
  }
  *ulen = ld32(t + 4);
  /* An LZ4 piece's length is what a reader allocates, so it is bounded; a
  ** stored piece's is its size in the file (a large table's filter and
  ** index exceed any data block). */
  if (t[1] || t[2] || t[3] || t[0] > SST_LZ4 || (t[0] == SST_NONE && *ulen != stored) ||
      (t[0] == SST_LZ4 && *ulen > SST_MAX_PAYLOAD) ||
      (t[0] == SST_LZ4 && stored > (size_t)LZ4_compressBound((int)*ulen)))
    return piece_fail(pc, "bad trailer");
  *lz4 = t[0] == SST_LZ4;
  return SOCHDB_OK;
}

/* Verify piece pc and find its payload: in buf when stored uncompressed, else
** decompressed into the scratch (NULL: the piece must be uncompressed). */
static int load_verified(const uint8_t *buf, const struct piece *pc, struct sst_scratch *s, const uint8_t **out,
                         size_t *out_n)
{
  uint32_t ulen = 0;
  int lz4 = 0;
  int rc = check_piece(buf, pc, &ulen, &lz4);
  if (rc)
    return rc;
  if (!lz4) {
    *out = buf + pc->off;
    *out_n = ulen;
    return SOCHDB_OK;
  }
  if (!s)
    return piece_fail(pc, "bad trailer");
  if ((rc = scratch_reserve(s, ulen)))
    return rc;
  int d = LZ4_decompress_safe((const char *)buf + pc->off, (char *)s->p, (int)(pc->size - SST_TRAILER_BYTES),
                              (int)ulen);
  if (d < 0 || (uint32_t)d != ulen)
    return piece_fail(pc, "LZ4 data does not decompress");
  *out = s->p;
  *out_n = ulen;
  return SOCHDB_OK;
}

static int load_payload(const uint8_t *buf, uint64_t off, uint32_t size, uint64_t seed, struct sst_scratch *s,
                        const uint8_t **out, size_t *out_n, const char *what)
{
  struct piece pc = block_piece(off, size, seed, what);
  return load_verified(buf, &pc, s, out, out_n);
}

static int load_block(const uint8_t *buf, uint64_t off, uint32_t size, uint64_t seed, struct sst_scratch *s,
                      struct sst_blk *out, const char *what)
{
  const uint8_t *p = NULL;   /* initialised only for gcc's -Wmaybe-uninitialized */
  size_t n = 0;
  int rc = load_payload(buf, off, size, seed, s, &p, &n, what);
  return rc ? rc : parse_block(p, n, out, what, off, 0);
}

/* The uncompressed length of piece pc if its trailer (not verified yet) says
** LZ4 with a plausible length, else 0: only such pieces are cached. sst_open
** checked that the piece lies in the file and holds a trailer. */
static uint32_t cacheable_len(const uint8_t *buf, const struct piece *pc)
{
  const uint8_t *t = buf + pc->off + pc->size - SST_TRAILER_BYTES;
  uint32_t ulen = ld32(t + 4);
  if (t[0] != SST_LZ4 || t[1] || t[2] || t[3] || ulen == 0 || ulen > SST_MAX_PAYLOAD)
    return 0;
  return ulen;
}

static void count_read(struct sst_read_stats *st, uint32_t stored, size_t decompressed)
{
  if (st) {
    st->bytes_read += stored;
    st->bytes_decompressed += decompressed;
  }
}

/* Piece pc's payload: from the reader's cache into the scratch when use_cache
** and it has it (*hit = 1; unverified: the caller checks its structure), else
** verified from the file. */
static int fetch_piece(const struct sst_reader *r, const struct piece *pc, int use_cache, struct sst_scratch *s,
                       const uint8_t **out, size_t *n, int *hit, struct sst_read_stats *st)
{
  *hit = 0;
  uint32_t ulen = use_cache && r->cache.lookup ? cacheable_len(r->buf, pc) : 0;
  if (ulen) {
    int rc = scratch_reserve(s, ulen);
    if (rc)
      return rc;
    size_t got = 0;
    /* cap = ulen: only the cache tier that holds blocks of this length is looked in */
    if (r->cache.lookup(r->cache.ctx, pc->off, s->p, ulen, &got) && got == ulen) {
      *hit = 1;
      *out = s->p;
      *n = got;
      count_read(st, pc->size, 0);
      return SOCHDB_OK;
    }
  }
  int rc = load_verified(r->buf, pc, s, out, n);
  if (rc == SOCHDB_OK)
    count_read(st, pc->size, *out == s->p ? *n : 0);
  return rc;
}

/* Checks a piece's payload structure, describing it in arg. */
typedef int (*piece_check)(const uint8_t *p, size_t n, void *arg);

/* Piece pc, read through the cache (unless look is 0: the caller looked),
** its structure checked: a cached copy that does not pass is a miss (the
** piece is read from the file again), and a piece decompressed from the
** file goes into the cache once it passed. */
static int load_piece(const struct sst_reader *r, const struct piece *pc, int look, struct sst_scratch *s,
                      piece_check check, void *arg, struct sst_read_stats *st)
{
  const uint8_t *p = NULL;
  size_t n = 0;
  int hit = 0;
  int rc = fetch_piece(r, pc, look, s, &p, &n, &hit, st);
  if (rc == SOCHDB_OK)
    rc = check(p, n, arg);
  if (rc != SOCHDB_OK && hit) {
    rc = fetch_piece(r, pc, 0, s, &p, &n, &hit, st);
    if (rc == SOCHDB_OK)
      rc = check(p, n, arg);
  }
  if (rc == SOCHDB_OK && !hit && p == s->p && r->cache.insert)
    r->cache.insert(r->cache.ctx, pc->off, p, n);
  return rc;
}

struct blk_check {           /* for check_blk: a block of entries (data, or columnar keys) */
  struct sst_blk *out;
  const char     *what;
  uint64_t        off;
  int             hash_ok;    /* it may have a hash index */
};

static int check_blk(const uint8_t *p, size_t n, void *arg)
{
  struct blk_check *c = arg;
  return parse_block(p, n, c->out, c->what, c->off, c->hash_ok);
}

struct col_check {           /* for check_col: a column segment */
  unsigned           type;
  uint32_t           nrows;
  struct sst_colseg *out;
  uint64_t           block_off;
};

static int check_col(const uint8_t *p, size_t n, void *arg)
{
  struct col_check *c = arg;
  return sstcol_check_column(p, n, c->type, c->nrows, c->out, c->block_off);
}

/* Block i's bit in one of the reader's per-block bitmaps (verified,
** trusted, cached). Relaxed: each bit is a hint that only spares work (a
** check, a look in the cache) and orders nothing; a race repeats the work,
** harmlessly. Set by a plain load first, so that a set bit costs no write. */
static int block_bit(_Atomic uint64_t *bits, uint32_t i)
{
  return (atomic_load_explicit(&bits[i / 64], memory_order_relaxed) >> (i % 64)) & 1;
}

static void set_block_bit(_Atomic uint64_t *bits, uint32_t i)
{
  if (!block_bit(bits, i))
    atomic_fetch_or_explicit(&bits[i / 64], 1ull << (i % 64), memory_order_relaxed);
}

/* Plain data block i of r, where the file stores it. */
static struct piece data_piece(const struct sst_reader *r, uint32_t i)
{
  uint64_t off = r->probe[i].where >> 1;
  return block_piece(off, (uint32_t)((r->probe[i + 1].where >> 1) - off), SEED_DATA, "data");
}

/* Plain data block i: from the cache if it has it, else from the file. A
** block stored uncompressed that passed every check once in this reader
** (its trusted bit) is only described again: its bytes are the file's,
** which never change (block_bit). */
static int load_data(const struct sst_reader *r, uint32_t i, int look, struct sst_scratch *s, struct sst_blk *b,
                     struct sst_read_stats *st)
{
  struct piece pc = data_piece(r, i);
  if (block_bit(r->trusted, i)) {
    describe_block(r->buf + pc.off, pc.size - SST_TRAILER_BYTES, b);
    count_read(st, pc.size, 0);
    return SOCHDB_OK;
  }
  pc.verified = &r->verified[i / 64];
  pc.verified_bit = 1ull << (i % 64);
  struct blk_check c = { b, "data", pc.off, r->version >= SST_VERSION_HASHED };
  int rc = load_piece(r, &pc, look, s, check_blk, &c, st);
  if (rc == SOCHDB_OK && b->p == r->buf + pc.off)   /* in place: checksummed, uncompressed, its layout checked */
    set_block_bit(r->trusted, i);
  return rc;
}

static void cursor_start(struct sst_cursor *c, const struct sst_blk *b, int linear);
static int  cursor_next(struct sst_cursor *c);

/* Whether the keys segment of columnar block i (cb) is what its index entry
** says, which the readers rely on: every key a row of cb->table (a
** projection of another table reads only its keys), a row per PUT entry, nrows of them (a
** get and an iterator take row n - 1 for the n-th PUT, a block taken whole
** hands out nrows rows without decoding its keys); entries with no value, in
** order, none above max_seq; if unique, every entry a PUT of a key of its
** own, the first above the previous block's last key; the last entry the
** index entry's key and seq. A checksum proves none of it.
** SOCHDB_OK, SOCHDB_CORRUPT or SOCHDB_NOMEM. */
static int check_columnar_keys(const struct sst_reader *r, uint32_t i, const struct sst_colblock *cb,
                               const struct sst_blk *keys)
{
  struct {
    struct sst_cursor c;
    uint8_t           prev[SOCHDB_MAX_KEY];
  } *w = malloc(sizeof *w);
  if (!w)
    return sdb_fail(SOCHDB_NOMEM, "out of memory reading a columnar block");
  const struct sst_index_entry *e = &r->index[i];
  cursor_start(&w->c, keys, 1);
  size_t plen = 0, n = 0;
  uint64_t pseq = 0;
  int ok = 1, d = 0;
  if (cb->unique && i > 0) {   /* the previous block's last key, as the first entry's predecessor */
    const struct sst_index_entry *p = &r->index[i - 1];
    memcpy(w->prev, r->keys + p->key_off, p->klen);
    plen = p->klen;
  }
  for (int first = 1; ok && (d = cursor_next(&w->c)) > 0; first = 0) {
    const struct sst_cursor *c = &w->c;
    int kc = plen ? key_order(w->prev, plen, c->key, c->klen) : -1;
    uint32_t table = 0;
    ok = c->vlen == 0 && c->seq <= cb->max_seq &&
         (!first || (rowfmt_key_table(c->key, c->klen, &table) && table == cb->table)) &&
         (cb->unique ? c->kind == SST_PUT && kc < 0 : first || kc < 0 || (kc == 0 && pseq > c->seq));
    memcpy(w->prev, c->key, c->klen);
    plen = c->klen;
    pseq = c->seq;
    n++;
  }
  uint32_t last_table = 0;   /* the first and the last key rows of cb->table: so is every key between */
  ok = ok && d == 0 && w->c.nput == cb->nrows && n && key_order(w->prev, plen, r->keys + e->key_off, e->klen) == 0 &&
       pseq == e->seq && rowfmt_key_table(w->prev, plen, &last_table) && last_table == cb->table;
  free(w);
  return ok ? SOCHDB_OK
            : sdb_fail(SOCHDB_CORRUPT, "SSTable columnar block at %llu: its keys do not match its index entry",
                       (unsigned long long)e->offset);
}

/* Columnar data block i: its keys segment into *keys, and the segments of
** the columns in want into cv (each in a scratch of cv's). The keys are
** checked against the index entry the first time this reader loads the
** block (its trusted bit, which plain blocks use for their own checks;
** relaxed, as there: the file never changes, and a race checks twice). */
static int load_columnar(const struct sst_reader *r, uint32_t i, uint64_t want, struct sst_colview *cv,
                         struct sst_blk *keys, struct sst_read_stats *st)
{
  const struct sst_index_entry *e = &r->index[i];
  const struct sst_colblock *cb = &r->colblocks[e->col - 1];
  const struct sst_segment *sg = &r->segs[cb->seg];
  cv->cb = cb;
  cv->segs = sg + 1;
  cv->loaded = 0;
  struct piece pc = segment_piece(e->offset, &sg[0], 0);
  struct blk_check kc = { keys, "columnar keys", e->offset, 0 };
  int rc = load_piece(r, &pc, 1, &cv->buf[0], check_blk, &kc, st);
  if (rc == SOCHDB_OK && !block_bit(r->trusted, i) && (rc = check_columnar_keys(r, i, cb, keys)) == SOCHDB_OK)
    set_block_bit(r->trusted, i);
  for (unsigned j = 0; rc == SOCHDB_OK && j < cb->ncols; j++) {
    if (!(want >> j & 1))
      continue;
    pc = segment_piece(e->offset, &sg[1 + j], 1 + j);
    struct col_check cc = { sg[1 + j].type, cb->nrows, &cv->col[j], e->offset };
    rc = load_piece(r, &pc, 1, &cv->buf[1 + j], check_col, &cc, st);
    if (rc == SOCHDB_OK)
      cv->loaded |= 1ull << j;
  }
  return rc;
}

static void colview_free(struct sst_colview *cv)
{
  if (!cv)
    return;
  for (unsigned k = 0; k <= SST_MAX_COLUMNS; k++)
    sst_scratch_free(&cv->buf[k]);
  free(cv);
}

/* Row `row` of the loaded block, encoded (rowfmt.h) into dst, which holds
** sstcol_row_bound bytes at least. */
static int assemble_row(const struct sst_colview *cv, uint32_t row, struct sst_scratch *dst, const uint8_t **out,
                        uint32_t *n)
{
  size_t size = sstcol_encode_row(cv, row, dst->p);
  if (size > SOCHDB_MAX_VALUE)
    return sdb_fail(SOCHDB_CORRUPT, "SSTable columnar block: a row of %zu bytes", size);
  *n = (uint32_t)size;
  *out = dst->p;
  return SOCHDB_OK;
}

/* Room in dst for any row of the block cv holds. */
static int reserve_rows(const struct sst_colview *cv, struct sst_scratch *dst)
{
  return scratch_reserve(dst, sstcol_row_bound(cv));
}

/* linear: seeks decode from the block's start, counting PUT entries (nput). */
static void cursor_start(struct sst_cursor *c, const struct sst_blk *b, int linear)
{
  c->blk = *b;
  c->pos = 0;
  c->next_restart = 0;
  c->klen = 0;
  c->whole = NULL;
  c->nput = 0;
  c->linear = linear;
}

/* Position the cursor at restart point i (the next entry decoded is its). */
static void cursor_restart(struct sst_cursor *c, uint32_t i)
{
  c->pos = ld32(c->blk.restarts + 4 * (size_t)i);
  c->next_restart = i;
  c->klen = 0;
  c->nput = 0;              /* right for i == 0 only: linear cursors restart nowhere else */
}

/* Decode the next entry: 1, 0 at the block's end, or -1 if malformed.
** Inlined into sst_iter_next, whose scans call it once a key (a call less
** there was 4% of a scan's instructions); cursor_next elsewhere. */
static inline __attribute__((always_inline)) int cursor_decode(struct sst_cursor *c)
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
  c->first = pos == 0;
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
  if (shared == 0)
    c->whole = b->p + pos;
  else if (unshared != 0 || shared != c->klen)
    c->whole = NULL;                 /* a new key that shares a prefix: only the copy below is whole */
  copy_short(c->key + shared, b->p + pos, (size_t)unshared);
  pos += (size_t)unshared;
  c->klen = (size_t)(shared + unshared);
  c->seq = seq;
  c->kind = kind;
  c->val = b->p + pos;
  c->vlen = (uint32_t)vlen;
  c->pos = pos + (size_t)vlen;
  c->nput += kind == SST_PUT;
  return 1;
}

static int cursor_next(struct sst_cursor *c)
{
  return cursor_decode(c);
}

/* The lines of a block's restart points, or of the entries of restart
** interval i: a search reads them next, and asking for them at once lets
** their cache misses overlap instead of following each other. Only those:
** asking for a whole block's lines keeps the memory busy with lines that
** are never read. */
static void prefetch_restarts(const struct sst_blk *b)
{
  for (uint32_t i = 0; i < b->nrestarts; i++)
    __builtin_prefetch(b->p + ld32(b->restarts + 4 * (size_t)i));
}

static void prefetch_interval(const struct sst_blk *b, uint32_t i)
{
  size_t start = ld32(b->restarts + 4 * (size_t)i);
  size_t end = i + 1 < b->nrestarts ? ld32(b->restarts + 4 * (size_t)i + 4) : b->ents;
  for (size_t at = start + 64; at < end && at < b->ents; at += 64)
    __builtin_prefetch(b->p + at);
}

/* Decode entries until the first whose internal key is >= (key, seq): 1 with
** it decoded, 0 if none in the block, -1 if malformed. Binary search over the
** restart points first, unless the cursor is linear. */
static int cursor_seek(struct sst_cursor *c, const uint8_t *key, size_t klen, uint64_t seq)
{
  uint32_t lo = 0, hi = c->linear ? 0 : c->blk.nrestarts;   /* restarts below lo are < target */
  while (hi > lo + 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    cursor_restart(c, mid);
    int rc = cursor_next(c);
    if (rc <= 0)
      return -1;
    if (sst_ikey_order(c->key, c->klen, c->seq, key, klen, seq) < 0)
      lo = mid;
    else
      hi = mid;
  }
  if (c->blk.nrestarts == 0)
    return 0;
  cursor_restart(c, lo);
  prefetch_interval(&c->blk, lo);
  for (;;) {
    int rc = cursor_next(c);
    if (rc <= 0)
      return rc;
    if (sst_ikey_order(c->key, c->klen, c->seq, key, klen, seq) >= 0)
      return 1;
  }
}

/* What fill_entry copies first: the longest entry header (four varints of
** up to 10 bytes, and the kind) and, at the benchmark's sizes (16-byte
** keys, 100-byte values), all of the entry, in one round of cache misses
** where two would follow one another. */
#define ENTRY_FIRST_COPY 128u

/* Copy the entry at pos of a block being read piecemeal from src: its
** header, then its key and value, clipped to the entries' bytes. The bytes
** may be torn (sst_block_cache's peek): a wrong length copies too little or
** too much of the block, never outside it, and cursor_next checks every
** bound of what it then decodes. */
static void fill_entry(const struct sst_block_src *src, const struct sst_blk *b, size_t pos)
{
  if (pos >= b->ents)
    return;
  size_t head = b->ents - pos > ENTRY_FIRST_COPY ? pos + ENTRY_FIRST_COPY : b->ents;
  src->copy(src, pos, head);
  size_t at = pos;
  uint64_t shared, unshared, vlen, seq;
  if (!get_varint(b->p, head, &at, &shared) || !get_varint(b->p, head, &at, &unshared) ||
      !get_varint(b->p, head, &at, &vlen) || !get_varint(b->p, head, &at, &seq) || at >= head)
    return;
  at++;                              /* the kind */
  size_t room = b->ents - at;
  size_t body = unshared > room || vlen > room - unshared ? room : (size_t)(unshared + vlen);
  if (at + body > head)
    src->copy(src, head, at + body);
}

static int cursor_next_from(struct sst_cursor *c, const struct sst_block_src *src)
{
  if (src)
    fill_entry(src, &c->blk, c->pos);
  return cursor_next(c);
}

/* cursor_seek through the block's hash index, for a key of bloom hash h:
** 1 with the first entry >= (key, seq) decoded when the block holds the key,
** else 0 (the key is not in the block), -1 if malformed. Only the slots whose
** tag matches cost an entry's decoding: nearly always the key's own. src:
** the block is being read piecemeal (NULL: it is all there), its hash index
** copied already; each entry is copied before it is decoded. */
static int cursor_seek_hashed(struct sst_cursor *c, uint64_t h, const uint8_t *key, size_t klen, uint64_t seq,
                              const struct sst_block_src *src)
{
  const struct sst_blk *b = &c->blk;
  uint32_t m = b->nslots, at = slot_home(h, m);
  uint8_t tag = slot_tag(h);
  for (uint32_t probes = 0; probes < m && b->slot_tag[at]; probes++, at = at + 1 == m ? 0 : at + 1) {
    if (b->slot_tag[at] != tag)
      continue;
    c->pos = ld16(b->slot_off + 2 * (size_t)at);
    for (size_t ahead = 64; !src && ahead <= 128 && c->pos + ahead < b->ents; ahead += 64)
      __builtin_prefetch(b->p + c->pos + ahead);   /* the rest of the entry: its value's lines */
    c->next_restart = b->nrestarts;  /* decoding starts off the restart points: whole keys */
    c->klen = 0;
    if (cursor_next_from(c, src) <= 0)
      return -1;                     /* a slot outside the entries, or at a shared key */
    if (c->klen != klen || memcmp(c->key, key, klen) != 0)
      continue;
    while (c->seq > seq) {           /* versions newer than the snapshot: the next one, if it is this key's */
      int rc = cursor_next_from(c, src);
      if (rc <= 0)
        return rc;
      if (c->klen != klen || memcmp(c->key, key, klen) != 0)
        return 0;
    }
    return 1;
  }
  return 0;
}

/* Search block b for the first entry >= (key, seq) (h: the key's bloom
** hash): as cursor_seek_hashed (through its hash index) or cursor_seek. src
** as cursor_seek_hashed's: a block without a hash index is then copied
** whole, since its search may read any entry. Inlined in its two callers:
** out of line, a point read took 37 instructions more (callgrind). */
static inline __attribute__((always_inline)) int seek_block(struct sst_cursor *c, const struct sst_blk *b, uint64_t h,
                                                            const uint8_t *key, size_t klen, uint64_t seq,
                                                            const struct sst_block_src *src)
{
  cursor_start(c, b, 0);
  if (b->nslots)
    return cursor_seek_hashed(c, h, key, klen, seq, src);
  if (src)
    src->copy(src, 0, b->ents);
  else
    prefetch_restarts(b);
  return cursor_seek(c, key, klen, seq);
}

/* ---- opening ---------------------------------------------------------------- */

static int bad(const char *msg) { return sdb_fail(SOCHDB_CORRUPT, "SSTable: %s", msg); }

/* Check the footer f of a file of len bytes; its version into *version. */
static int check_footer(const uint8_t *f, unsigned *version)
{
  if (memcmp(f, SST_MAGIC, sizeof SST_MAGIC) != 0)
    return bad("bad footer magic (not an SSTable, or truncated)");
  if (ld64(f + 56) != XXH3_64bits_withSeed(f, 56, SEED_FOOTER))
    return bad("footer checksum mismatch");
  *version = ld32(f + 8);
  if (*version < SST_VERSION_KV || *version > SST_VERSION)
    return sdb_fail(SOCHDB_VERSION, "SSTable version %u; this library reads %u to %u", *version, SST_VERSION_KV,
                    SST_VERSION);
  return SOCHDB_OK;
}

/* The filter payload p[0..n) into r: classic, or blocked (version 3). */
static int parse_filter(struct sst_reader *r, const uint8_t *p, size_t n)
{
  if (n < 2)
    return bad("filter block is malformed");
  size_t pad = 0, bytes = n - 1;           /* classic: [bits | k] */
  if (r->version >= SST_VERSION_HASHED) { /* blocked: [pad zeros | lines | k | pad] */
    pad = p[n - 1];
    bytes = n - 2 - pad;
    if (pad >= BLOOM_LINE_BYTES || n - 2 <= pad || bytes % BLOOM_LINE_BYTES)
      return bad("blocked filter block is malformed");
    r->bloom_lines = bytes / BLOOM_LINE_BYTES;
  }
  r->bloom = p + pad;
  r->bloom_bits = (uint64_t)bytes * 8;
  r->bloom_k = p[pad + bytes];
  if (r->bloom_k == 0 || r->bloom_k > 30)
    return bad("filter block has a bad hash count");
  return SOCHDB_OK;
}

/* A decoded index being grown (versions 1 to 3): r's arrays once complete. */
struct index_decode {
  struct sst_index_entry *index;
  uint8_t                *keys;
  size_t                  cap, keys_n, keys_cap;
};

/* Append the index entry c names (a data block at expect_off) to d. */
static int add_block(struct sst_reader *r, struct index_decode *d, const struct sst_cursor *c, uint64_t expect_off,
                     uint64_t filter_off, struct sstcol_caps *caps)
{
  if (c->kind != SST_PUT || c->vlen < 12 || (c->vlen != 12 && r->version == SST_VERSION_KV))
    return bad("index block entry is malformed");
  uint64_t boff = ld64(c->val);
  uint32_t bsize = ld32(c->val + 8);
  if (boff != expect_off || bsize < SST_TRAILER_BYTES || bsize > filter_off - boff)
    return bad("index block handle out of place");
  if (r->nblocks > 0) {
    const struct sst_index_entry *p = &d->index[r->nblocks - 1];
    if (sst_ikey_order(d->keys + p->key_off, p->klen, p->seq, c->key, c->klen, c->seq) >= 0)
      return bad("index block keys out of order");
  }
  uint32_t col = 0;
  if (c->vlen != 12) {
    int rc = sstcol_parse_index(r, caps, c->val, c->vlen, boff, bsize, &col);
    if (rc)
      return rc;
  }
  if (r->nblocks == d->cap) {
    size_t nc = d->cap ? d->cap * 2 : 64;
    struct sst_index_entry *q = realloc(d->index, nc * sizeof *q);
    if (!q)
      return sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
    d->index = q;
    d->cap = nc;
  }
  if (!sst_grow(&d->keys, &d->keys_cap, d->keys_n + c->klen))
    return sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
  memcpy(d->keys + d->keys_n, c->key, c->klen);
  d->index[r->nblocks++] = (struct sst_index_entry){ .offset = boff, .size = bsize, .klen = (uint32_t)c->klen,
                                                     .key_off = d->keys_n, .seq = c->seq, .col = col };
  d->keys_n += c->klen;
  return SOCHDB_OK;
}

/* Bytes [0, 8) of k, big-endian, zero past its end: two keys with different
** prefixes compare as their prefixes do (a shorter key reads as zeros where
** the longer one has bytes, so it is not greater). */
static uint64_t key_prefix(const uint8_t *k, size_t klen)
{
  if (klen >= 8)
    return ld64be(k);    /* the common case: no copy of a variable length (a call to memcpy) */
  uint8_t b[8] = {0};
  memcpy(b, k, klen);
  return ld64be(b);
}

/* The bytes every index key has in common: the first and last keys' common
** prefix, since the keys are in order. */
static uint32_t index_key_shared(const struct sst_index_entry *index, const uint8_t *keys, uint32_t n)
{
  if (n == 0)
    return 0;
  const struct sst_index_entry *first = &index[0], *last = &index[n - 1];
  uint32_t most = first->klen < last->klen ? first->klen : last->klen, shared = 0;
  while (shared < most && keys[first->key_off + shared] == keys[last->key_off + shared])
    shared++;
  return shared;
}

/* What find_block searches for block i (i == n: the end of the data). */
static struct sst_probe index_probe(const struct sst_index_entry *index, const uint8_t *keys, uint32_t n,
                                    uint32_t key_shared, uint64_t data_end, uint32_t i)
{
  if (i == n)
    return (struct sst_probe){ 0, data_end << 1 };
  const struct sst_index_entry *e = &index[i];
  return (struct sst_probe){ key_prefix(keys + e->key_off + key_shared, e->klen - key_shared),
                             e->offset << 1 | (e->col != 0) };
}

/* What find_block searches, computed from the decoded index: the index keys'
** common prefix and their next bytes. */
static int index_search_setup(struct sst_reader *r)
{
  uint32_t n = r->nblocks;
  struct sst_probe *probe = malloc(((size_t)n + 1) * sizeof *probe);
  if (!probe)
    return sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
  r->key_shared = index_key_shared(r->index, r->keys, n);
  for (uint32_t i = 0; i <= n; i++)
    probe[i] = index_probe(r->index, r->keys, n, r->key_shared, r->data_end, i);
  r->probe = probe;
  return SOCHDB_OK;
}

/* Parse the index block ib into r; the data blocks must end at filter_off. */
static int parse_index(struct sst_reader *r, const struct sst_blk *ib, uint64_t filter_off)
{
  struct sst_cursor *c = malloc(sizeof *c);
  if (!c)
    return sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
  cursor_start(c, ib, 0);
  struct index_decode d = { 0 };
  struct sstcol_caps caps = { 0, 0 };
  uint64_t expect_off = 0;
  int rc = SOCHDB_OK;
  for (;;) {
    int e = cursor_next(c);
    if (e == 0)
      break;
    rc = e < 0 ? bad("index block entry is malformed") : add_block(r, &d, c, expect_off, filter_off, &caps);
    if (rc)
      break;
    expect_off = d.index[r->nblocks - 1].offset + d.index[r->nblocks - 1].size;
  }
  free(c);
  r->index = d.index;   /* sst_close frees them, whatever happens next */
  r->keys = d.keys;
  r->index_owned = 1;
  if (!rc && expect_off != filter_off)
    rc = bad("data blocks do not end where the filter starts");
  if (!rc && r->version == SST_VERSION_COLUMNAR && r->ncolblocks == 0)
    rc = sdb_fail(SOCHDB_VERSION, "SSTable version %u without a columnar block; this library writes such "
                  "tables as version %u", SST_VERSION_COLUMNAR, SST_VERSION_KV);
  return rc ? rc : index_search_setup(r);
}

/* Point r's index, keys and probes at the arrays of the version-4 index
** payload `at` (aligned: in place; else copies), keys_bytes of keys. */
static int place_search_index(struct sst_reader *r, const uint8_t *at, uint32_t nb, uint64_t keys_bytes)
{
  size_t probes = ((size_t)nb + 1) * sizeof(struct sst_probe), entries = (size_t)nb * sizeof(struct sst_index_entry);
  if ((uintptr_t)at % 8 == 0) {   /* a mapped file, or a malloc'ed table: always */
    r->probe = (const struct sst_probe *)(const void *)at;
    r->index = (const struct sst_index_entry *)(const void *)(at + probes);
    r->keys = at + probes + entries;
    return SOCHDB_OK;
  }
  void *probe = malloc(probes), *index = malloc(entries ? entries : 1), *keys = malloc(keys_bytes ? keys_bytes : 1);
  r->probe = probe;
  r->index = index;
  r->keys = keys;
  r->index_owned = 1;
  if (!probe || !index || !keys)
    return sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
  memcpy(probe, at, probes);
  memcpy(index, at + probes, entries);
  memcpy(keys, at + probes + entries, keys_bytes);
  return SOCHDB_OK;
}

/* The version-4 index payload p[0..n) into r, each field checked against
** what it must be: the block's checksum held, but a reader trusts no
** offset it has not bounded. */
static int parse_search_index(struct sst_reader *r, const uint8_t *p, size_t n, uint64_t filter_off)
{
  if (n < SEARCH_INDEX_HEADER)
    return bad("index block is malformed");
  uint32_t nb = ld32(p), shared = ld32(p + 4), pad = ld32(p + 16);
  uint64_t keys_bytes = ld64(p + 8);
  if (pad >= 8 || ld32(p + 20) != 0 || n < SEARCH_INDEX_HEADER + pad || !all_zero(p + SEARCH_INDEX_HEADER, pad))
    return bad("index block header is malformed");
  uint64_t room = n - SEARCH_INDEX_HEADER - pad;
  uint64_t arrays = ((uint64_t)nb + 1) * sizeof(struct sst_probe) + (uint64_t)nb * sizeof(struct sst_index_entry);
  if (room < arrays || room - arrays != keys_bytes)
    return bad("index block sizes do not add up");
  r->nblocks = nb;
  int rc = place_search_index(r, p + SEARCH_INDEX_HEADER + pad, nb, keys_bytes);
  if (rc)
    return rc;
  /* What the decoding of older versions makes true: blocks back to back
  ** from 0 to the filter, keys back to back from 0 (find_block takes the
  ** shared prefix from the first key at offset 0), keys in order. */
  uint64_t expect_off = 0, key_at = 0;
  for (uint32_t i = 0; i < nb; i++) {
    const struct sst_index_entry *e = &r->index[i], *prev = e - 1;
    if (e->offset != expect_off || e->size < SST_TRAILER_BYTES || e->size > filter_off - e->offset || e->col ||
        e->zero)
      return bad("index block handle out of place");
    if (e->klen == 0 || e->klen > SOCHDB_MAX_KEY)
      return bad("index block key length out of range");
    if (e->key_off != key_at)
      return bad("index block key out of place");
    if (e->klen > keys_bytes - key_at)
      return bad("index block key out of bounds");
    if (i > 0 && sst_ikey_order(r->keys + prev->key_off, prev->klen, prev->seq, r->keys + e->key_off, e->klen,
                                e->seq) >= 0)
      return bad("index block keys out of order");
    expect_off += e->size;
    key_at += e->klen;
  }
  if (expect_off != filter_off)
    return bad("data blocks do not end where the filter starts");
  if (key_at != keys_bytes)
    return bad("index block keys do not fill their area");
  if (shared != index_key_shared(r->index, r->keys, nb))
    return bad("index block's shared key prefix is wrong");
  r->key_shared = shared;
  for (uint32_t i = 0; i <= nb; i++) {
    struct sst_probe want = index_probe(r->index, r->keys, nb, shared, filter_off, i);
    if (r->probe[i].pfx != want.pfx || r->probe[i].where != want.where)
      return bad("index block probe does not match its entry");
  }
  return SOCHDB_OK;
}

/* Of a block larger than this (one holding a large value: up to 16 MiB),
** only its first bytes are judged. */
#define LZ4_SAMPLE_MAX (2 * SST_BLOCK_MAX)

int sst_plain_blocks_compress(const struct sst_reader *r, unsigned samples)
{
  uint32_t step = samples && r->nblocks > samples ? r->nblocks / samples : 1;
  int bound = LZ4_compressBound((int)LZ4_SAMPLE_MAX);
  char *tmp = malloc((size_t)bound);
  size_t raw = 0, packed = 0;
  for (uint32_t i = 0; tmp && i < r->nblocks; i += step) {
    const struct sst_index_entry *e = &r->index[i];
    size_t n = e->size - SST_TRAILER_BYTES;
    const uint8_t *p = r->buf + e->offset;
    if (e->col || p[n] != SST_NONE || n < 16)
      continue;   /* columnar, compressed already, or too small to try */
    size_t m = n < LZ4_SAMPLE_MAX ? n : LZ4_SAMPLE_MAX;
    size_t c = (size_t)LZ4_compress_default((const char *)p, tmp, (int)m, bound);   /* 0: failed */
    raw += m;
    packed += lz4_pays(c, m) ? c : m;
  }
  free(tmp);
  return lz4_pays(packed, raw);
}

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
  int rc = check_footer(f, &r->version);
  if (rc)
    return rc;
  uint64_t filter_off = ld64(f + 16), index_off = ld64(f + 24);
  uint32_t filter_size = ld32(f + 32), index_size = ld32(f + 36);
  uint64_t body = len - SST_FOOTER_BYTES;
  if (index_size > body || index_off != body - index_size || filter_size > index_off ||
      filter_off != index_off - filter_size)
    return bad("footer block handles do not tile the file");

  /* filter: never compressed, so its bits stay in buf */
  const uint8_t *fp = NULL;   /* initialised only for gcc's -Wmaybe-uninitialized */
  size_t fn = 0;
  rc = load_payload(buf, filter_off, filter_size, SEED_FILTER, NULL, &fp, &fn, "filter");
  if (rc)
    return rc;
  if ((rc = parse_filter(r, fp, fn)))
    return rc;

  /* index */
  r->data_end = filter_off;   /* the last probe */
  if (r->version == SST_VERSION) {   /* searched in place: never compressed */
    const uint8_t *ip = NULL;
    size_t in = 0;
    rc = load_payload(buf, index_off, index_size, SEED_INDEX, NULL, &ip, &in, "index");
    if (rc == SOCHDB_OK)
      rc = parse_search_index(r, ip, in, filter_off);
  } else {
    struct sst_scratch s = {0};
    struct sst_blk ib;
    rc = load_block(buf, index_off, index_size, SEED_INDEX, &s, &ib, "index");
    if (rc == SOCHDB_OK)
      rc = parse_index(r, &ib, filter_off);
    sst_scratch_free(&s);
  }
  /* A bit per data block whose checksum this reader verified, one per
  ** block it trusts (load_data), one per block it found in the cache
  ** (seek_cached): its own, in one allocation. */
  size_t words = (size_t)r->nblocks / 64 + 1;
  if (rc == SOCHDB_OK && !(r->verified = calloc(3 * words, sizeof *r->verified)))
    rc = sdb_fail(SOCHDB_NOMEM, "out of memory opening an SSTable");
  if (rc == SOCHDB_OK) {
    r->trusted = r->verified + words;
    r->cached = r->trusted + words;
  }
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
  return SOCHDB_OK;
}

void sst_block_seal(uint8_t *file, uint64_t offset, uint32_t size, enum sst_block_type which)
{
  uint64_t seed = which == SST_BLOCK_DATA ? SEED_DATA : which == SST_BLOCK_FILTER ? SEED_FILTER : SEED_INDEX;
  uint8_t *t = file + offset + size - SST_TRAILER_BYTES;
  st64(t + 8, block_checksum(file + offset, size - SST_TRAILER_BYTES, t, seed, offset));
}

void sst_data_block_seal(uint8_t *file, const struct sst_reader *r, uint32_t i)
{
  const struct sst_index_entry *e = &r->index[i];
  if (!e->col) {
    sst_block_seal(file, e->offset, e->size, SST_BLOCK_DATA);
    return;
  }
  const struct sst_colblock *cb = &r->colblocks[e->col - 1];
  for (unsigned k = 0; k <= cb->ncols; k++) {
    const struct sst_segment *s = &r->segs[cb->seg + k];
    uint8_t *t = file + s->offset + s->size - SST_TRAILER_BYTES;
    st64(t + 8, block_checksum(file + s->offset, s->size - SST_TRAILER_BYTES, t, SEED_SEGMENT + k, e->offset));
  }
}

void sst_footer_seal(uint8_t *footer)
{
  st64(footer + 56, XXH3_64bits_withSeed(footer, 56, SEED_FOOTER));
}

void sst_close(struct sst_reader *r)
{
  if (r->index_owned) {
    free((void *)r->index);
    free((void *)r->keys);
    free((void *)r->probe);
  }
  free(r->verified);
  free(r->colblocks);
  free(r->segs);
  memset(r, 0, sizeof *r);
}

/* ---- point reads ------------------------------------------------------------ */

/* The bloom filter's answer for a key of bloom hash h. */
static int bloom_may_contain(const struct sst_reader *r, uint64_t h)
{
  if (r->bloom_bits == 0)
    return 0;
  if (r->bloom_lines) {
    const uint8_t *line = r->bloom + bloom_line(h, r->bloom_lines) * BLOOM_LINE_BYTES;
    uint32_t g = (uint32_t)(h >> 32);
    unsigned miss = 0;
    for (unsigned j = 0; j < r->bloom_k; j++) {   /* no early exit: one line, every bit in it at once */
      unsigned bit = bloom_line_bit(&g);
      miss |= ~line[bit / 8] >> (bit % 8) & 1u;
    }
    return !miss;
  }
  struct bloom_probe p = bloom_first(h, r->bloom_bits);
  for (unsigned j = 0; j < r->bloom_k; j++, bloom_next(&p))
    if (!(r->bloom[p.bit / 8] & (1u << (p.bit % 8))))
      return 0;
  return 1;
}

int sst_may_contain(const struct sst_reader *r, const void *key, size_t klen)
{
  return bloom_may_contain(r, bloom_hash(key, klen));
}

/* What find_block looks for: an internal key and its prefix as probe[].pfx
** holds them. */
struct block_target {
  const uint8_t *key;
  size_t         klen;
  uint64_t       seq;
  uint64_t       pfx;
};

/* Whether block i's last internal key is below the target. Equal prefixes
** fall back to comparing whole internal keys. */
static int block_below(const struct sst_reader *r, uint32_t i, const struct block_target *t)
{
  uint64_t mp = r->probe[i].pfx;
  if (mp != t->pfx)
    return mp < t->pfx;
  const struct sst_index_entry *e = &r->index[i];
  return sst_ikey_order(r->keys + e->key_off, e->klen, e->seq, t->key, t->klen, t->seq) < 0;
}

/* Where x (a < x <= z) would sit among values growing evenly from a to z,
** scaled to [0, span]. */
static uint32_t even_position(uint64_t a, uint64_t z, uint64_t x, uint32_t span)
{
  uint32_t p = (uint32_t)((double)(x - a) / (double)(z - a) * (double)span);
  return p > span ? span : p;   /* the double's rounding, at most */
}

/* Narrow [*lo, *hi) to around where the target's prefix would sit if the
** blocks' prefixes grew evenly, as they nearly do for keys spread evenly
** (numbers, hashes, times, ids): from that guess, steps of 1, 2, 4, ...
** towards the target until one passes it. A few lines where a binary search
** over thousands of blocks reads a dozen, of which the last ones miss the
** cache. Uneven keys cost at most twice the binary search's steps. */
static void interpolate(const struct sst_reader *r, const struct block_target *t, uint32_t *lo, uint32_t *hi)
{
  uint64_t a = r->probe[*lo].pfx, b = r->probe[*hi - 1].pfx;
  if (t->pfx <= a || t->pfx >= b)
    return;
  uint32_t g = *lo + even_position(a, b, t->pfx, *hi - 1 - *lo);
  if (block_below(r, g, t)) {
    *lo = g + 1;
    for (uint64_t step = 1; g + step < *hi; step *= 2) {
      if (!block_below(r, g + step, t)) {
        *hi = g + step;
        return;
      }
      *lo = g + step + 1;
    }
  } else {
    *hi = g;
    for (uint64_t step = 1; step <= g - *lo; step *= 2) {
      if (block_below(r, g - step, t)) {
        *lo = g - step + 1;
        return;
      }
      *hi = g - step;
    }
  }
}

/* The first block whose last internal key is >= (key, seq); nblocks if none.
** Keys that share the index keys' common prefix are told apart by their next
** 8 bytes (probe[].pfx) while those differ: one array of 16 bytes a block,
** which caches well, instead of an index entry and its key at every step. */
static uint32_t find_block(const struct sst_reader *r, const uint8_t *key, size_t klen, uint64_t seq)
{
  if (r->nblocks == 0)
    return 0;                 /* an empty table has no index keys (keys is NULL) */
  uint32_t shared = r->key_shared;
  int c = memcmp(key, r->keys, klen < shared ? klen : shared);   /* the first index key holds the prefix */
  if (c < 0 || (c == 0 && klen < shared))
    return 0;                 /* below every index key */
  if (c > 0)
    return r->nblocks;        /* above every one */
  struct block_target t = { key, klen, seq, key_prefix(key + shared, klen - shared) };
  uint32_t lo = 0, hi = r->nblocks;
  if (hi > 16)
    interpolate(r, &t, &lo, &hi);
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (block_below(r, mid, &t))
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

static int corrupt_entry(const struct sst_reader *r, uint32_t i)
{
  return sdb_fail(SOCHDB_CORRUPT, "SSTable data block at %llu: malformed entry",
                  (unsigned long long)r->index[i].offset);
}

/* The row a columnar cursor stands on: SOCHDB_OK, or SOCHDB_CORRUPT when
** the keys name more rows than the columns hold, or carry values. */
static int current_row(const struct sst_reader *r, uint32_t i, const struct sst_cursor *c,
                       const struct sst_colview *cv, uint32_t *row)
{
  if (c->vlen != 0 || c->nput > cv->cb->nrows)
    return corrupt_entry(r, i);
  *row = c->nput - 1;
  return SOCHDB_OK;
}

/* sst_get in columnar block i, whose every segment is read. */
static int get_columnar(const struct sst_reader *r, uint32_t i, const uint8_t *key, size_t klen, uint64_t snapshot,
                        struct sst_scratch *scratch, struct sst_get_result *res, struct sst_cursor *c)
{
  struct sst_colview *cv = calloc(1, sizeof *cv);
  if (!cv)
    return sdb_fail(SOCHDB_NOMEM, "out of memory in sst_get");
  struct sst_blk keys;
  int rc = load_columnar(r, i, ~0ull, cv, &keys, NULL);
  if (rc == SOCHDB_OK) {
    cursor_start(c, &keys, 1);
    rc = reserve_rows(cv, scratch);
    int e = rc ? 0 : cursor_seek(c, key, klen, snapshot);
    uint32_t row = 0;
    if (e < 0)
      rc = corrupt_entry(r, i);
    else if (e > 0 && c->klen == klen && memcmp(c->key, key, klen) == 0) {
      res->found = 1;
      res->tombstone = c->kind == SST_DEL;
      res->seq = c->seq;
      if (c->kind == SST_PUT && (rc = current_row(r, i, c, cv, &row)) == SOCHDB_OK)
        rc = assemble_row(cv, row, scratch, &res->val, &res->vlen);
    }
  }
  colview_free(cv);
  if (rc)
    memset(res, 0, sizeof *res);
  return rc;
}

/* Before a get loads block i, ask for the lines it will most likely read:
** the trailer and the restart array before it, and the kilobyte around
** where the key would sit if the block's keys grew evenly from the previous
** block's last key to its own, as they nearly do for evenly spread keys.
** Their misses then overlap the trailer's instead of following it. Only
** those lines: asking for a whole block keeps the memory busy with lines
** that are never read. */
static void prefetch_block_guess(const struct sst_reader *r, uint32_t i, const uint8_t *key, size_t klen)
{
  const uint8_t *start = r->buf + (r->probe[i].where >> 1), *end = r->buf + (r->probe[i + 1].where >> 1);
  for (ptrdiff_t back = 1; back < 256 + 1 && back <= end - start; back += 64)
    __builtin_prefetch(end - back);
  if (i == 0 || klen < r->key_shared)
    return;
  uint64_t a = r->probe[i - 1].pfx, z = r->probe[i].pfx;
  uint64_t kp = key_prefix(key + r->key_shared, klen - r->key_shared);
  if (kp <= a || kp > z || z == a)
    return;
  const uint8_t *guess = start + even_position(a, z, kp, (uint32_t)(end - start));
  const uint8_t *from = guess - start > 512 ? guess - 512 : start, *to = end - guess > 512 ? guess + 512 : end;
  for (const uint8_t *p = from; p < to; p += 64)
    __builtin_prefetch(p);
}

/* What peek_search copies first of a block's end: the tail of a block of
** 4 KiB (the count, a few restarts, a hash index of about 50 slots) in one
** round of cache misses. */
#define TAIL_FIRST_COPY 256u

void sst_prefetch_get(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
                      struct sst_hint *hint)
{
  hint->r = NULL;
  if (r->nblocks == 0 || !r->bloom_lines)
    return;
  uint64_t h = bloom_hash(key, klen);
  __builtin_prefetch(r->bloom + bloom_line(h, r->bloom_lines) * BLOOM_LINE_BYTES);
  uint32_t i = find_block(r, key, klen, snapshot);
  if (i < r->nblocks && !(r->probe[i].where & 1)) {
    __builtin_prefetch(r->buf + (r->probe[i + 1].where >> 1) - 1);   /* its trailer: the first line read */
    /* The trusted bit first: a block read in place (never cached) then costs
    ** no look at the cached bits, a line of their own, and the get finds the
    ** trusted line loaded. */
    if (r->cache.prefetch && !block_bit(r->trusted, i) && block_bit(r->cached, i))
      r->cache.prefetch(r->cache.ctx, r->probe[i].where >> 1, TAIL_FIRST_COPY);   /* what peek_search reads first */
  }
  *hint = (struct sst_hint){ r, key, klen, snapshot, h, i };
}

/* A point read's search of a cached data block that is read piecemeal
** (peek_search): where the block is copied, and what is looked for. */
struct peek {
  struct sst_cursor *c;
  uint8_t           *dst;       /* the scratch: the copied bytes land at their places in the block */
  size_t             n;         /* the block's length, as its trailer in the file gives it */
  uint64_t           h, seq;
  const uint8_t     *key;
  size_t             klen;
  int                hash_ok;   /* its blocks may have a hash index */
};

/* sst_block_reader of a point read: copy the block's tail (its count, restart
** array and hash index), check its shape as parse_block does, and search it,
** copying each entry the search decodes. -1 if the copy is not a sound block
** of the expected length. Everything it reads may be torn, and is
** bounds-checked: block_shape's reads stay within the n bytes, and
** seek_block's copies and reads within the entries they place. */
static int peek_search(void *arg, const struct sst_block_src *src, size_t len)
{
  struct peek *pk = arg;
  size_t n = pk->n, first = n < TAIL_FIRST_COPY ? n : TAIL_FIRST_COPY;
  if (len != n || n < 6)
    return -1;
  src->copy(src, n - first, n);
  uint32_t cnt = ld32(pk->dst + n - 4);
  size_t tail = 4 + 4 * (size_t)(cnt & ~SST_HASHED) + (cnt & SST_HASHED ? 2 + 3 * (size_t)ld16(pk->dst + n - 6) : 0);
  if (tail > n)
    return -1;
  if (tail > first)
    src->copy(src, n - tail, n - first);
  uint32_t what;
  if (block_shape(pk->dst, n, pk->hash_ok, &what) != BLOCK_SOUND)
    return -1;
  struct sst_blk b;
  describe_block(pk->dst, n, &b);
  return seek_block(pk->c, &b, pk->h, pk->key, pk->klen, pk->seq, src);
}

/* Search data block i in the reader's cache, without copying it whole (the
** cache's peek), if it is there: 1 with the search's result in *e. Else 0,
** and *look says whether load_data should look in the cache (not once the
** peek found the block missing, changing or unsound: it reads the file). */
static int seek_cached(const struct sst_reader *r, uint32_t i, struct sst_cursor *c, uint64_t h, const uint8_t *key,
                       size_t klen, uint64_t seq, struct sst_scratch *s, int *e, int *look)
{
  *look = 1;
  if (!r->cache.peek || block_bit(r->trusted, i))
    return 0;   /* read in place, never cached */
  struct piece pc = data_piece(r, i);
  uint32_t ulen = cacheable_len(r->buf, &pc);
  if (!ulen || scratch_reserve(s, ulen) != SOCHDB_OK)
    return 0;   /* stored uncompressed (read in place), or no memory (load_data reports it) */
  struct peek pk = { c, s->p, ulen, h, seq, key, klen, r->version >= SST_VERSION_HASHED };
  int rc = -1;
  *look = 0;
  if (r->cache.peek(r->cache.ctx, pc.off, s->p, ulen, peek_search, &pk, &rc) != 1 || rc < 0)
    return 0;
  set_block_bit(r->cached, i);
  *e = rc;
  return 1;
}

int sst_get(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
            struct sst_scratch *scratch, struct sst_get_result *res)
{
  return sst_get_hinted(r, key, klen, snapshot, scratch, res, NULL);
}

int sst_get_hinted(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
                   struct sst_scratch *scratch, struct sst_get_result *res, const struct sst_hint *hint)
{
  if (!r || !key || !scratch || !res || klen == 0 || klen > SOCHDB_MAX_KEY)
    return sdb_fail(SOCHDB_INVALID, "sst_get: NULL argument or key of %zu bytes", klen);
  memset(res, 0, sizeof *res);
  int hinted = hint && hint->r == r && hint->key == key && hint->klen == klen && hint->snapshot == snapshot;
  uint64_t h = hinted ? hint->hash : bloom_hash(key, klen);
  if (r->nblocks == 0 || !bloom_may_contain(r, h))
    return SOCHDB_OK;
  /* The first entry >= (key, snapshot) is in the first block whose last
  ** entry is >= it: versions continuing into the next block are found there. */
  uint32_t i = hinted ? hint->block : find_block(r, key, klen, snapshot);
  if (i == r->nblocks)
    return SOCHDB_OK;
  /* On the stack (4 KiB of it for the key): a point read allocates nothing. */
  struct sst_cursor cur, *c = &cur;
  if (r->probe[i].where & 1)
    return get_columnar(r, i, key, klen, snapshot, scratch, res, c);
  prefetch_block_guess(r, i, key, klen);
  int e = 0, look = 1, rc = SOCHDB_OK;
  if (!seek_cached(r, i, c, h, key, klen, snapshot, scratch, &e, &look)) {
    struct sst_blk b;
    if ((rc = load_data(r, i, look, scratch, &b, NULL)))
      return rc;
    e = seek_block(c, &b, h, key, klen, snapshot, NULL);
  }
  if (e < 0)
    rc = corrupt_entry(r, i);
  else if (e > 0 && c->klen == klen && memcmp(c->key, key, klen) == 0) {
    res->found = 1;
    res->tombstone = c->kind == SST_DEL;
    res->val = c->val;
    res->vlen = c->vlen;
    res->seq = c->seq;
  }
  return rc;
}

/* ---- iterating ---------------------------------------------------------------- */

void sst_iter_init(struct sst_iter *it, const struct sst_reader *r)
{
  memset(it, 0, sizeof *it);
  it->r = r;
}

void sst_iter_project(struct sst_iter *it, const struct sst_projection *p, struct sst_read_stats *stats)
{
  it->proj = p;
  it->stats = stats;
}

/* Which columns of columnar block cb the iterator reads, and how: *skip when
** min/max exclude the filter, *filter when it is evaluated on the rows. */
static uint64_t columns_wanted(const struct sst_iter *it, const struct sst_colblock *cb, int *skip, int *filter)
{
  const struct sst_projection *p = it->proj;
  *skip = *filter = 0;
  if (!p)
    return ~0ull;
  if (p->table != cb->table) {   /* beyond the scan's range: its keys alone (sst_iter_project) */
    *skip = 1;
    return 0;
  }
  if (!p->filtered)
    return p->columns;
  if (sstcol_excluded(it->r, cb, &p->f)) {
    *skip = 1;
    return 0;
  }
  if (it->r->segs[cb->seg + 1 + p->f.col].type != p->f.type)
    return p->columns;             /* not the filter's type: left to the caller */
  *filter = 1;
  return p->columns | 1ull << p->f.col;
}

/* Columnar block i into the iterator: its keys, and the columns it wants. */
static int iter_load_columnar(struct sst_iter *it, uint32_t i, struct sst_blk *keys)
{
  if (!it->cv && !(it->cv = calloc(1, sizeof *it->cv)))
    return sdb_fail(SOCHDB_NOMEM, "out of memory reading a columnar block");
  const struct sst_colblock *cb = &it->r->colblocks[it->r->index[i].col - 1];
  uint64_t want = columns_wanted(it, cb, &it->col_skip, &it->col_filter);
  if (it->col_skip && it->stats && cb->table == it->proj->table)
    it->stats->blocks_skipped++;
  it->col = 1;
  int rc = load_columnar(it->r, i, want, it->cv, keys, it->stats);
  return rc ? rc : reserve_rows(it->cv, &it->rowbuf);
}

static int iter_load(struct sst_iter *it, uint32_t i)
{
  it->block = i;
  it->loaded = 0;
  it->pending = 0;
  it->col = 0;
  it->taken = 0;
  if (i >= it->r->nblocks)
    return SOCHDB_OK;
  struct sst_blk b;
  int columnar = it->r->index[i].col != 0;
  int rc = columnar ? iter_load_columnar(it, i, &b) : load_data(it->r, i, 1, &it->scratch, &b, it->stats);
  if (rc) {
    it->block = it->r->nblocks;
    return rc;
  }
  if (it->stats)
    it->stats->blocks_read++;
  cursor_start(&it->cur, &b, columnar);
  it->loaded = 1;
  return SOCHDB_OK;
}

/* The iterator fails at block i: it is then at its end. */
static int iter_corrupt(struct sst_iter *it, uint32_t i)
{
  it->block = it->r->nblocks;
  it->loaded = 0;
  it->pending = 0;
  return corrupt_entry(it->r, i);
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
  if (e < 0)
    return iter_corrupt(it, i);
  if (e > 0)
    it->pending = 1;
  else
    return iter_load(it, i + 1);
  return SOCHDB_OK;
}

/* The value of the columnar entry the cursor stands on, as the projection
** wants it: the row (wanted columns only), or SST_SKIP. */
static int columnar_value(struct sst_iter *it, struct sst_entry *e)
{
  e->val = NULL;
  e->vlen = 0;
  if (it->cur.kind != SST_PUT)
    return SOCHDB_OK;
  uint32_t row = 0;
  int rc = current_row(it->r, it->block, &it->cur, it->cv, &row);
  if (rc)
    return iter_corrupt(it, it->block);
  if (it->col_filter) {
    sochdb_value v;
    sstcol_value(it->cv, it->proj->f.col, row, &v);
    if (!rowfmt_match(&it->proj->f, &v)) {
      e->kind = SST_SKIP;
      return SOCHDB_OK;
    }
  } else if (it->col_skip) {
    e->kind = SST_SKIP;
    return SOCHDB_OK;
  }
  rc = assemble_row(it->cv, row, &it->rowbuf, &e->val, &e->vlen);
  if (rc) {
    it->block = it->r->nblocks;
    it->loaded = 0;
  }
  return rc;
}

/* The cursor's block is done: a columnar one must have held exactly the rows
** its index entry counts. Then the next block. */
static int iter_next_block(struct sst_iter *it)
{
  if (it->col && it->cur.nput != it->cv->cb->nrows)
    return iter_corrupt(it, it->block);
  return iter_load(it, it->block + 1);
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
    int d = it->taken ? 0 : cursor_decode(&it->cur);
    if (d > 0)
      break;
    if (d < 0)
      return iter_corrupt(it, it->block);
    int rc = it->taken ? iter_load(it, it->block + 1) : iter_next_block(it);
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
  e->stored_key = it->cur.whole;
  return it->col ? columnar_value(it, e) : SOCHDB_OK;
}

int sst_iter_take_block(struct sst_iter *it, uint64_t snapshot, const uint8_t *bound, size_t blen,
                        const struct sst_colview **cv, uint32_t *nrows, int *skipped, const uint8_t **last,
                        uint32_t *lastlen)
{
  if (!it->col || !it->loaded || it->pending || it->taken || !it->cur.first || !it->proj)
    return 0;
  const struct sst_colblock *cb = it->cv->cb;
  const struct sst_index_entry *e = &it->r->index[it->block];
  const uint8_t *lk = it->r->keys + e->key_off;
  if (cb->table != it->proj->table || !cb->unique || cb->max_seq > snapshot ||
      (bound && sst_ikey_order(lk, e->klen, 0, bound, blen, 0) >= 0))
    return 0;
  *cv = it->cv;
  *nrows = cb->nrows;
  *skipped = it->col_skip;
  *last = lk;
  *lastlen = e->klen;
  it->taken = 1;
  return 1;
}

int sst_colview_get(const struct sst_colview *cv, unsigned j, uint32_t row, unsigned *type, sochdb_value *v)
{
  if (j >= cv->cb->ncols) {
    *type = 0;
    *v = (sochdb_value){ .is_null = 1 };
    return SOCHDB_OK;
  }
  if (!(cv->loaded >> j & 1))
    return SOCHDB_INVALID;
  *type = cv->segs[j].type;
  sstcol_value(cv, j, row, v);
  return SOCHDB_OK;
}

void sst_iter_free(struct sst_iter *it)
{
  sst_scratch_free(&it->scratch);
  sst_scratch_free(&it->rowbuf);
  colview_free(it->cv);
  it->cv = NULL;
  it->loaded = 0;
  it->pending = 0;
}
