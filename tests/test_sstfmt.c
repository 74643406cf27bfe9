/*
** test_sstfmt.c — the SSTable format: a table of many versioned keys reads
** back exactly (point reads at several snapshots, a full scan, seeks);
** compressible blocks are stored with LZ4 and others not; the bloom filter's
** false-positive rate is low; a table damaged at any byte, or cut short,
** either reads back exactly right or reports SOCHDB_CORRUPT/SOCHDB_VERSION;
** out-of-order input is refused. With a block cache (a fake one here),
** compressed data blocks are inserted once and then served from it with
** identical results; a cache that answers with a wrong length is ignored;
** uncompressed blocks never reach it.
**
** Columnar blocks (the rows of a table, split into column segments): rows
** read back as the rows written (a row with fewer columns than its block
** reads NULL in the others), by scan, seek and get, among plain blocks; a
** projection returns the wanted columns only and a filter hides the rows it
** fails and skips blocks by min/max; a flipped byte in any segment is
** SOCHDB_CORRUPT on every read that covers it, never a wrong value; forged
** checksums only ever give SOCHDB_CORRUPT; segments go through the cache.
**
** The index search compares 8 bytes after the keys' shared prefix first:
** keys that tie there, or lie outside the prefix, are still found (or not)
** exactly. It starts where those bytes would sit if they grew evenly: keys
** spread evenly, exponentially or in two far clusters are all found. A reader verifies each data block's checksum once. Blocks that
** do not compress make the builder skip LZ4 for a few blocks.
*/
#include <criterion/criterion.h>

#include "rowfmt.h"
#include "sochdb.h"
#include "error.h"
#include "sstfmt.h"
#include "sstcraft.h"


#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ent {
  char     key[32];
  size_t   klen;
  uint64_t seq;
  unsigned kind;
  uint8_t *val;
  size_t   vlen;
};

struct model {
  struct ent *e;
  size_t      n, cap;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

static struct ent *model_push(struct model *m)
{
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 1024;
    m->e = realloc(m->e, m->cap * sizeof *m->e);
    cr_assert_not_null(m->e);
  }
  struct ent *e = &m->e[m->n++];
  memset(e, 0, sizeof *e);
  return e;
}

static void model_free(struct model *m)
{
  for (size_t i = 0; i < m->n; i++)
    free(m->e[i].val);
  free(m->e);
}

/* Value bytes: compressible (a repeated pattern) or random. */
static void fill_value(struct ent *e, size_t vlen, int compressible)
{
  e->vlen = vlen;
  e->val = malloc(vlen ? vlen : 1);
  cr_assert_not_null(e->val);
  for (size_t i = 0; i < vlen; i++)
    e->val[i] = compressible ? (uint8_t)("abcdefgh"[i % 8]) : (uint8_t)rng();
}

/* nkeys keys "k%08u" (even numbers) with a few 'x' appended, 1..maxv
** versions each, seq descending, some tombstones. */
/* id as 8 big-endian bytes at dst: keys that sort as their ids. */
static void put_be64(char *dst, uint64_t id)
{
  for (unsigned b = 0; b < 8; b++)
    dst[b] = (char)(id >> (56 - 8 * b));
}

static void make_model(struct model *m, unsigned nkeys, unsigned maxv, size_t maxval, int compress_mode)
{
  for (unsigned i = 0; i < nkeys; i++) {
    unsigned nv = 1 + (unsigned)(rng() % maxv);
    uint64_t seq = 1000 + rng() % 1000000;
    for (unsigned v = 0; v < nv; v++) {
      struct ent *e = model_push(m);
      e->klen = (size_t)snprintf(e->key, sizeof e->key, "k%08u", i * 2);
      for (unsigned x = 0; x < i % 5; x++)
        e->key[e->klen++] = 'x';
      e->seq = seq;
      seq -= 1 + rng() % 50;
      e->kind = rng() % 10 == 0 ? SST_DEL : SST_PUT;
      /* mode 2: per entry at random; 3: runs of 30 keys alike */
      int comp = compress_mode == 2 ? (int)(rng() % 2) : compress_mode == 3 ? (int)(i / 30 % 2) : compress_mode;
      fill_value(e, e->kind == SST_PUT ? (size_t)(rng() % (maxval + 1)) : 0, comp);
    }
  }
}

/* The table of m's entries; hashed: its plain data blocks get a hash index
** (the builder's default), or not (the formats of versions 1 and 2). */
/* hashed: 1 hashed blocks, 0 plain ones; legacy: the format of builds
** before version 4 (every database written before holds such files); lz4:
** the plain data blocks may be compressed (the default), or not. */
static void build_with(const struct model *m, size_t block_bytes, int hashed, int legacy, int lz4, uint8_t **buf,
                       size_t *len)
{
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, block_bytes), SOCHDB_OK, "builder init");
  b.hash_blocks = hashed;
  b.legacy_index = legacy;
  b.lz4_data = lz4;
  for (size_t i = 0; i < m->n; i++) {
    const struct ent *e = &m->e[i];
    int rc = sst_builder_add(&b, e->key, e->klen, e->seq, e->kind, e->val, e->vlen);
    cr_assert_eq(rc, SOCHDB_OK, "add #%zu: %s", i, sochdb_last_error());
  }
  cr_assert_eq(sst_builder_finish(&b, buf, len), SOCHDB_OK, "finish: %s", sochdb_last_error());
  sst_builder_free(&b);
}

static void build_as(const struct model *m, size_t block_bytes, int hashed, int legacy, uint8_t **buf, size_t *len)
{
  build_with(m, block_bytes, hashed, legacy, 1, buf, len);
}

static void build_hashed(const struct model *m, size_t block_bytes, int hashed, uint8_t **buf, size_t *len)
{
  build_as(m, block_bytes, hashed, 0, buf, len);
}

static void build(const struct model *m, size_t block_bytes, uint8_t **buf, size_t *len)
{
  build_hashed(m, block_bytes, 1, buf, len);
}

/* Build m's table (block_bytes, 0: the default) and open it as *r; the
** buffer, which the reader points into, is returned to free after sst_close. */
static uint8_t *build_open(const struct model *m, size_t block_bytes, struct sst_reader *r)
{
  uint8_t *buf;
  size_t len;
  build(m, block_bytes, &buf, &len);
  cr_assert_eq(sst_open(buf, len, r), SOCHDB_OK, "open: %s", sochdb_last_error());
  return buf;
}

/* The expected answer for key (versions m->e[first..end)) at snapshot. */
static const struct ent *expect(const struct model *m, size_t first, size_t end, uint64_t snap)
{
  for (size_t i = first; i < end; i++)
    if (m->e[i].seq <= snap)
      return &m->e[i];
  return NULL;
}

/* Compare one get with the model; returns the rc (asserting rc is OK unless
** allow_corrupt, in which case SOCHDB_CORRUPT is also accepted). */
static int check_get(const struct sst_reader *r, struct sst_scratch *s, const struct ent *key, const struct ent *want,
                     uint64_t snap, int allow_corrupt)
{
  struct sst_get_result res;
  int rc = sst_get(r, key->key, key->klen, snap, s, &res);
  if (allow_corrupt && rc == SOCHDB_CORRUPT)
    return rc;
  cr_assert_eq(rc, SOCHDB_OK, "get %.*s @%llu: rc %d (%s)", (int)key->klen, key->key, (unsigned long long)snap, rc,
               sochdb_last_error());
  if (!want) {
    cr_assert_eq(res.found, 0, "get %.*s @%llu: found a version (seq %llu), expected none", (int)key->klen, key->key,
                 (unsigned long long)snap, (unsigned long long)res.seq);
    return rc;
  }
  cr_assert_eq(res.found, 1, "get %.*s @%llu: not found, expected seq %llu", (int)key->klen, key->key,
               (unsigned long long)snap, (unsigned long long)want->seq);
  cr_assert_eq(res.seq, want->seq, "get %.*s @%llu: seq %llu, expected %llu", (int)key->klen, key->key,
               (unsigned long long)snap, (unsigned long long)res.seq, (unsigned long long)want->seq);
  cr_assert_eq(res.tombstone, want->kind == SST_DEL, "get %.*s: tombstone flag", (int)key->klen, key->key);
  cr_assert_eq(res.vlen, want->vlen, "get %.*s: value length %u, expected %zu", (int)key->klen, key->key, res.vlen,
               want->vlen);
  cr_assert(want->vlen == 0 || memcmp(res.val, want->val, want->vlen) == 0, "get %.*s: value bytes differ",
            (int)key->klen, key->key);
  return rc;
}

static void check_entry(const struct sst_entry *got, const struct ent *want, size_t i)
{
  cr_assert(got->klen == want->klen && memcmp(got->key, want->key, want->klen) == 0,
            "entry #%zu: key %.*s, expected %.*s", i, (int)got->klen, got->key, (int)want->klen, want->key);
  cr_assert_eq(got->seq, want->seq, "entry #%zu: seq", i);
  cr_assert_eq(got->kind, want->kind, "entry #%zu: kind", i);
  cr_assert(got->vlen == want->vlen && (want->vlen == 0 || memcmp(got->val, want->val, want->vlen) == 0),
            "entry #%zu: value differs", i);
}

/* Every get of every key at several snapshots, and absent keys. */
static void check_all_gets(const struct model *m, const struct sst_reader *r)
{
  struct sst_scratch s = {0};
  for (size_t i = 0; i < m->n;) {
    size_t end = i + 1;
    while (end < m->n && m->e[end].klen == m->e[i].klen && memcmp(m->e[end].key, m->e[i].key, m->e[i].klen) == 0)
      end++;
    uint64_t snaps[16];
    unsigned ns = 0;
    snaps[ns++] = UINT64_MAX;
    snaps[ns++] = 0;
    for (size_t j = i; j < end && ns + 3 <= 16; j++) {
      snaps[ns++] = m->e[j].seq;
      snaps[ns++] = m->e[j].seq - 1;
      snaps[ns++] = m->e[j].seq + 1;
    }
    for (unsigned k = 0; k < ns; k++)
      check_get(r, &s, &m->e[i], expect(m, i, end, snaps[k]), snaps[k], 0);
    /* absent: an odd number, and the key with a 'y' appended */
    struct ent absent = m->e[i];
    absent.klen = (size_t)snprintf(absent.key, sizeof absent.key, "k%08zu", (size_t)(i * 2 + 1) % 100000000);
    check_get(r, &s, &absent, NULL, UINT64_MAX, 0);
    absent = m->e[i];
    absent.key[absent.klen++] = 'y';
    check_get(r, &s, &absent, NULL, UINT64_MAX, 0);
    i = end;
  }
  sst_scratch_free(&s);
}

static void check_scan(const struct model *m, const struct sst_reader *r)
{
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, r);
  size_t i = 0;
  int rc;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    cr_assert_lt(i, m->n, "iterator yields more than the %zu entries added", m->n);
    check_entry(&e, &m->e[i], i);
    i++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "iterator ends with rc %d (%s)", rc, sochdb_last_error());
  cr_assert_eq(i, m->n, "iterator yields %zu entries, %zu added", i, m->n);
  sst_iter_free(&it);
}

/* Gets, scans and seeks of a table of many keys, with hashed data blocks or
** without, in this build's format or the one before version 4. */
static void round_trip(int hashed, int legacy)
{
  struct model m = {0};
  make_model(&m, 20000, 3, 60, 2);
  uint8_t *buf;
  size_t len;
  build_as(&m, 0, hashed, legacy, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  unsigned want = !legacy ? SST_VERSION : hashed ? SST_VERSION_HASHED : SST_VERSION_KV;
  cr_assert_eq(r.version, want, "version %u, not %u", r.version, want);
  /* version 4's index is read where it lies, never copied */
  int in_place = (const uint8_t *)r.index >= buf && (const uint8_t *)r.index < buf + len &&
                 (const uint8_t *)r.probe >= buf && (const uint8_t *)r.probe < buf + len &&
                 r.keys >= buf && r.keys < buf + len;
  cr_assert_eq(in_place, !legacy, "the index is %s the file", in_place ? "read in" : "copied out of");
  cr_assert_eq(r.index_owned, legacy, "the reader owns its index only when it decoded one");
  cr_assert_eq(r.entries, m.n, "footer entry count");
  cr_assert_gt(r.nblocks, 100u, "a table of %zu entries has many blocks (%u)", m.n, r.nblocks);

  check_all_gets(&m, &r);
  check_scan(&m, &r);

  /* seeks: to present keys (their newest version), to absent keys (the next
  ** key), before everything and past the end */
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, &r);
  for (unsigned t = 0; t < 2000; t++) {
    size_t i = (size_t)(rng() % m.n);
    while (i > 0 && m.e[i - 1].klen == m.e[i].klen && memcmp(m.e[i - 1].key, m.e[i].key, m.e[i].klen) == 0)
      i--;
    cr_assert_eq(sst_iter_seek(&it, m.e[i].key, m.e[i].klen), SOCHDB_OK, "seek");
    for (size_t j = i; j < i + 5 && j < m.n; j++) {
      cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_OK, "next after seek");
      check_entry(&e, &m.e[j], j);
    }
    /* just below the key: "k%08u" minus its last char + '\0'..: use the key cut short */
    if (i > 0 && m.e[i].klen > 9) {
      cr_assert_eq(sst_iter_seek(&it, m.e[i].key, m.e[i].klen - 1), SOCHDB_OK, "seek to a prefix");
      cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_OK, "next after seek to a prefix");
      check_entry(&e, &m.e[i], i);
    }
  }
  cr_assert_eq(sst_iter_seek(&it, "a", 1), SOCHDB_OK, "seek before the first key");
  cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_OK, "next after seeking before the first key");
  check_entry(&e, &m.e[0], 0);
  cr_assert_eq(sst_iter_seek(&it, "z", 1), SOCHDB_OK, "seek past the end");
  cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_NOTFOUND, "nothing past the end");
  cr_assert_eq(sst_iter_seek(&it, NULL, 0), SOCHDB_OK, "seek to the start");
  cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_OK, "next after seek to the start");
  check_entry(&e, &m.e[0], 0);
  sst_iter_free(&it);

  sst_close(&r);
  free(buf);
  model_free(&m);
}

/* Where the arrays of a version-4 index lie in its table (sstfmt.h). */
struct search_index_at {
  uint64_t index_off;
  uint32_t index_size, nb;
  size_t   probes, entries, keys;   /* file offsets */
};

static struct search_index_at search_index_at(const uint8_t *buf, size_t len)
{
  const uint8_t *footer = buf + len - SST_FOOTER_BYTES;
  struct search_index_at a = { .index_off = ld64(footer + 24), .index_size = ld32(footer + 36) };
  a.nb = ld32(buf + a.index_off);
  a.probes = a.index_off + 24 + ld32(buf + a.index_off + 16);
  a.entries = a.probes + 16 * ((size_t)a.nb + 1);
  a.keys = a.entries + 40 * (size_t)a.nb;
  return a;
}

/* Recompute every probe of the table's version-4 index from its entries and
** header as they now are (the reader's rule: 8 key bytes after key_shared,
** big-endian, zero-padded; offset << 1 | columnar), then reseal the index:
** a lie in an entry then reaches the check meant for it, not the probes'. */
static void reprobe_and_seal(uint8_t *buf, const struct search_index_at *a)
{
  uint32_t shared = ld32(buf + a->index_off + 4);
  uint64_t keys_bytes = ld64(buf + a->index_off + 8);
  for (uint32_t i = 0; i < a->nb; i++) {
    const uint8_t *e = buf + a->entries + 40 * (size_t)i;
    uint32_t klen = ld32(e + 12);
    uint64_t key_off = ld64(e + 16);
    uint8_t b[8] = { 0 };
    if (klen > shared && key_off + klen <= keys_bytes)
      memcpy(b, buf + a->keys + key_off + shared, klen - shared < 8 ? klen - shared : 8);
    uint64_t pfx = 0;
    for (int j = 0; j < 8; j++)
      pfx = pfx << 8 | b[j];
    st64(buf + a->probes + 16 * (size_t)i, pfx);
    st64(buf + a->probes + 16 * (size_t)i + 8, ld64(e) << 1 | (ld32(e + 32) != 0));
  }
  sst_block_seal(buf, a->index_off, a->index_size, SST_BLOCK_INDEX);
}

/* A version-4 index whose checksum holds but one of whose fields lies (a
** bug, or a file made to fool the reader) is refused: sst_open checks every
** field against what it must be, each lie by the check meant for it (the
** probes are made to agree with the lie first, but for the probes' own). At
** an odd address, where the arrays are copied out, too. */
Test(sstfmt, search_index_fields_are_checked)
{
  struct model m = {0};
  make_model(&m, 3000, 2, 40, 0);
  struct sst_reader r;
  uint8_t *buf = build_open(&m, 1024, &r);
  size_t len = r.len;
  struct search_index_at a = search_index_at(buf, len);
  cr_assert_eq(a.nb, r.nblocks, "the header's block count");
  cr_assert_eq(a.probes, (size_t)((const uint8_t *)r.probe - buf), "the probes where the header says");
  cr_assert_eq(a.probes % 8, 0u, "the probes start at a multiple of 8 in the file");
  cr_assert_gt(r.key_shared, 0u, "the model's keys share a prefix");
  sst_close(&r);
  size_t first = a.entries, second = a.entries + 40, last = a.entries + 40 * ((size_t)a.nb - 1);
  struct lie {
    const char *what, *refusal;
    size_t      at;
    unsigned    bytes;
    uint64_t    set;      /* the field's new value: ... */
    int         add;      /* ... or, when 1, added to it */
    int         reprobe;
  } lies[] = {
    { "block count", "sizes do not add up", a.index_off, 4, 1, 1, 0 },
    { "shared prefix", "shared key prefix is wrong", a.index_off + 4, 4, 1, 1, 1 },
    { "keys bytes", "sizes do not add up", a.index_off + 8, 8, 1, 1, 0 },
    { "pad", "header is malformed", a.index_off + 16, 4, 8, 0, 0 },
    { "reserved word", "header is malformed", a.index_off + 20, 4, 1, 0, 0 },
    { "a probe's prefix", "probe does not match", a.probes + 16, 8, 1, 1, 0 },
    { "the end probe", "probe does not match", a.probes + 16 * (size_t)a.nb + 8, 8, 2, 1, 0 },
    { "a block offset", "handle out of place", second, 8, 1, 1, 1 },
    { "a block size", "handle out of place", second + 8, 4, 1, 1, 1 },
    { "a columnar mark", "handle out of place", second + 32, 4, 1, 0, 1 },
    { "padding", "handle out of place", second + 36, 4, 1, 0, 1 },
    { "a key length of 0", "key length out of range", second + 12, 4, 0, 0, 1 },
    { "a key length over the limit", "key length out of range", second + 12, 4, SOCHDB_MAX_KEY + 1, 0, 1 },
    { "the first key's place (the second's)", "key out of place", first + 16, 8, 0, 0, 1 },
    { "a key's place", "key out of place", second + 16, 8, 1, 1, 1 },
    { "the last key's length", "key out of bounds", last + 12, 4, 1, 1, 1 },
    { "the first key", "keys out of order", a.keys, 1, 1, 1, 1 },
  };
  /* the first key's place set to the second's: its own bytes unused */
  lies[13].set = ld64(buf + second + 16);
  uint8_t *copy = malloc(len + 1);
  for (int odd = 0; odd <= 1; odd++)
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
      uint8_t *t = copy + odd;
      memcpy(t, buf, len);
      uint64_t v = 0;
      memcpy(&v, t + lies[i].at, lies[i].bytes);
      v = lies[i].add ? v + lies[i].set : lies[i].set;
      memcpy(t + lies[i].at, &v, lies[i].bytes);
      if (lies[i].reprobe)
        reprobe_and_seal(t, &a);
      else
        sst_block_seal(t, a.index_off, a.index_size, SST_BLOCK_INDEX);
      cr_assert_eq(sst_open(t, len, &r), SOCHDB_CORRUPT, "%s (%s address): refused", lies[i].what,
                   odd ? "an odd" : "an aligned");
      cr_assert(strstr(sochdb_last_error(), lies[i].refusal) != NULL, "%s: refused with \"%s\", not: %s",
                lies[i].what, lies[i].refusal, sochdb_last_error());
    }
  /* keys that do not fill their area: one byte more of it, unused (the
  ** block, its trailer's length and the footer say so, all resealed) */
  size_t payload = a.index_size - 16, grown_len = len + 1;
  uint8_t *grown = malloc(grown_len);
  memcpy(grown, buf, a.index_off + payload);
  grown[a.index_off + payload] = 0;
  memcpy(grown + a.index_off + payload + 1, buf + a.index_off + payload, 16 + SST_FOOTER_BYTES);
  st64(grown + a.index_off + 8, ld64(buf + a.index_off + 8) + 1);            /* keys bytes */
  st32(grown + a.index_off + payload + 1 + 4, (uint32_t)payload + 1);        /* the trailer's length */
  uint8_t *gfooter = grown + grown_len - SST_FOOTER_BYTES;
  st32(gfooter + 36, a.index_size + 1);
  sst_footer_seal(gfooter);
  sst_block_seal(grown, a.index_off, a.index_size + 1, SST_BLOCK_INDEX);
  cr_assert_eq(sst_open(grown, grown_len, &r), SOCHDB_CORRUPT, "an unused key byte: refused");
  cr_assert(strstr(sochdb_last_error(), "keys do not fill their area") != NULL, "refused as such: %s",
            sochdb_last_error());
  free(grown);

  /* the helper itself: probes recomputed over an unchanged index still open */
  memcpy(copy, buf, len);
  reprobe_and_seal(copy, &a);
  cr_assert_eq(sst_open(copy, len, &r), SOCHDB_OK, "reprobed, unchanged: %s", sochdb_last_error());
  sst_close(&r);
  free(copy);

  /* an unaligned buffer (a reader handed bytes at an odd address): the
  ** arrays are copied out and every get still answers */
  uint8_t *odd = malloc(len + 1);
  memcpy(odd + 1, buf, len);
  cr_assert_eq(sst_open(odd + 1, len, &r), SOCHDB_OK, "open at an odd address: %s", sochdb_last_error());
  cr_assert(r.index_owned, "the index was copied");
  check_all_gets(&m, &r);
  sst_close(&r);
  free(odd);
  free(buf);
  model_free(&m);
}

Test(sstfmt, round_trip) { round_trip(1, 0); }
Test(sstfmt, round_trip_unhashed) { round_trip(0, 0); }
Test(sstfmt, round_trip_version_3) { round_trip(1, 1); }
Test(sstfmt, round_trip_version_1) { round_trip(0, 1); }

Test(sstfmt, empty_table)
{
  struct model m = {0};
  uint8_t *buf;
  size_t len;
  build(&m, 0, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open an empty table: %s", sochdb_last_error());
  struct sst_scratch s = {0};
  struct sst_get_result res;
  cr_assert_eq(sst_get(&r, "a", 1, UINT64_MAX, &s, &res), SOCHDB_OK, "get in an empty table");
  cr_assert_eq(res.found, 0, "nothing found in an empty table");
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, &r);
  cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_NOTFOUND, "empty scan");
  cr_assert_eq(sst_iter_seek(&it, "a", 1), SOCHDB_OK, "seek in an empty table");
  cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_NOTFOUND, "nothing after a seek in an empty table");
  sst_iter_free(&it);
  sst_close(&r);
  free(buf);
}

/* The compression byte of every data block. */
static void count_compression(const struct sst_reader *r, unsigned *none, unsigned *lz4)
{
  *none = *lz4 = 0;
  for (uint32_t i = 0; i < r->nblocks; i++) {
    const uint8_t *t = r->buf + r->index[i].offset + r->index[i].size - SST_TRAILER_BYTES;
    cr_assert(t[0] == SST_NONE || t[0] == SST_LZ4, "block %u compression byte %u", i, t[0]);
    (t[0] == SST_LZ4 ? lz4 : none)[0]++;
  }
}

/* Every value a get of m's keys finds in r (opened on buf) points into the
** file: read in place, not copied. */
static void check_values_in_place(const struct model *m, const struct sst_reader *r, const uint8_t *buf, size_t len)
{
  struct sst_scratch s = {0};
  for (size_t i = 0; i < m->n; i++) {
    struct sst_get_result res;
    cr_assert_eq(sst_get(r, m->e[i].key, m->e[i].klen, UINT64_MAX, &s, &res), SOCHDB_OK, "get");
    if (res.found && res.vlen)
      cr_assert(res.val >= buf && res.val + res.vlen <= buf + len, "the value of #%zu points into the file", i);
  }
  sst_scratch_free(&s);
}

/* Random values: blocks stored as they are that LZ4 cannot shrink by an
** eighth are not worth compressing (a compaction moves them unchanged). */
Test(sstfmt, random_blocks_are_not_worth_compressing)
{
  struct model m = {0};
  make_model(&m, 2000, 2, 300, 0);
  uint8_t *buf;
  size_t len;
  build_with(&m, 8192, 1, 0, 0, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  cr_assert_gt(r.nblocks, 10u);
  cr_assert_eq(sst_plain_blocks_compress(&r, 16), 0, "random values would shrink by an eighth");
  sst_close(&r);
  free(buf);
  model_free(&m);
}

/* A block holding a large value (past 128 KiB) is judged on its first
** bytes: one of compressible values is worth compressing. (Such blocks were
** skipped, and a file of only them was moved uncompressed.) */
Test(sstfmt, large_compressible_values_are_worth_compressing)
{
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, 0), SOCHDB_OK);
  b.lz4_data = 0;
  static char v[200000];
  for (int i = 0; i < 4; i++) {
    char k[16];
    snprintf(k, sizeof k, "big-%d", i);
    memset(v, 'a' + i, sizeof v);
    cr_assert_eq(sst_builder_add(&b, k, strlen(k), 1, SST_PUT, v, sizeof v), SOCHDB_OK, "%s", sochdb_last_error());
  }
  uint8_t *buf;
  size_t len;
  cr_assert_eq(sst_builder_finish(&b, &buf, &len), SOCHDB_OK, "finish: %s", sochdb_last_error());
  sst_builder_free(&b);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  cr_assert_geq(r.nblocks, 4u, "a block a value");
  cr_assert_eq(sst_plain_blocks_compress(&r, 16), 1, "values of one repeated byte would shrink");
  sst_close(&r);
  free(buf);
}

Test(sstfmt, compression)
{
  for (int mode = 0; mode < 2; mode++) {
    struct model m = {0};
    make_model(&m, 2000, 2, 300, mode);
    uint8_t *buf;
    size_t len;
    build(&m, 8192, &buf, &len);
    struct sst_reader r;
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
    unsigned none, lz4;
    count_compression(&r, &none, &lz4);
    if (mode == 1)
      cr_assert(lz4 == r.nblocks && lz4 > 10, "compressible values: %u of %u blocks LZ4", lz4, r.nblocks);
    else
      cr_assert(none == r.nblocks && none > 10, "random values: %u of %u blocks uncompressed", none, r.nblocks);
    check_all_gets(&m, &r);
    check_scan(&m, &r);
    sst_close(&r);
    free(buf);
    model_free(&m);
  }
}

/* A builder told not to compress (the daemon's, for levels 0 and 1) stores
** every data block of compressible values as it is: each get and scan reads
** it in place, its values pointing into the file. */
Test(sstfmt, compressible_blocks_stored_as_they_are_when_lz4_is_off)
{
  struct model m = {0};
  make_model(&m, 2000, 2, 300, 1);
  uint8_t *buf, *packed;
  size_t len, packed_len;
  build_with(&m, 8192, 1, 0, 0, &buf, &len);
  build_with(&m, 8192, 1, 0, 1, &packed, &packed_len);
  cr_assert_lt(packed_len * 2, len, "the values compress: %zu bytes with LZ4, %zu without", packed_len, len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  unsigned none, lz4;
  count_compression(&r, &none, &lz4);
  cr_assert(none == r.nblocks && none > 10, "%u of %u blocks uncompressed", none, r.nblocks);
  cr_assert_eq(sst_plain_blocks_compress(&r, 4), 1, "a sample of 4 blocks would shrink");
  cr_assert_eq(sst_plain_blocks_compress(&r, 0), 1, "every block would shrink");
  struct sst_reader rp;
  cr_assert_eq(sst_open(packed, packed_len, &rp), SOCHDB_OK, "open: %s", sochdb_last_error());
  cr_assert_eq(sst_plain_blocks_compress(&rp, 0), 0, "compressed blocks are compressed already");
  sst_close(&rp);
  check_all_gets(&m, &r);
  check_scan(&m, &r);
  check_values_in_place(&m, &r, buf, len);
  sst_close(&r);
  free(buf);
  free(packed);
  model_free(&m);
}

/* Blocks of the smallest size: m's keys spread over more than 100 of them. */
static uint8_t *build_open_small_blocks(const struct model *m, struct sst_reader *r)
{
  uint8_t *buf = build_open(m, SST_BLOCK_MIN, r);
  cr_assert_gt(r->nblocks, 100u, "small blocks: %u", r->nblocks);
  return buf;
}

static void close_free(struct sst_reader *r, uint8_t *buf, struct model *m)
{
  sst_close(r);
  free(buf);
  model_free(m);
}

/* Keys that share a 12-byte prefix and then tie on their next 8 bytes (the
** bytes the index search compares first), differing only after them or in
** length ("x" < "x\0" < "x\0\0z"): every get still finds its key, and keys
** outside the shared prefix (shorter, below, above) find nothing. */
Test(sstfmt, index_search_by_prefix)
{
  static const char shared[] = "tenant/0042/";
  struct model m = {0};
  for (unsigned i = 0; i < 3000; i++) {
    struct ent *e = model_push(&m);
    memcpy(e->key, shared, 12);
    put_be64(e->key + 12, (uint64_t)(i / 3) * (UINT64_MAX / 1000));   /* its first byte varies too */
    e->klen = 20;
    if (i % 3 >= 1)
      e->key[e->klen++] = 0;
    if (i % 3 == 2) {
      e->key[e->klen++] = 0;
      e->key[e->klen++] = 'z';
    }
    e->seq = 100 + i;
    e->kind = SST_PUT;
    fill_value(e, 40, 0);
  }
  struct sst_reader r;
  uint8_t *buf = build_open_small_blocks(&m, &r);
  cr_assert_eq(r.key_shared, 12u, "the index keys share \"%s\" (got %u bytes)", shared, r.key_shared);
  check_all_gets(&m, &r);
  static const char *const outside[] = { "tenant/", "tenant/0041/\xff\xff\xff\xff\xff\xff\xff\xff",
                                         "tenant/0042", "tenant/0043/", "tenant/0042/\xff", "a", "z" };
  struct sst_scratch s = {0};
  for (size_t k = 0; k < sizeof outside / sizeof *outside; k++) {
    struct ent absent = {0};
    absent.klen = strlen(outside[k]);
    memcpy(absent.key, outside[k], absent.klen);
    check_get(&r, &s, &absent, NULL, UINT64_MAX, 0);
  }
  sst_scratch_free(&s);
  close_free(&r, buf, &m);
}

/* Every block count from 1 to 70 (the binary search alone up to 16, the
** interpolation's first guess after it) finds each key at each snapshot and
** no absent key, the first and last blocks' keys included. */
Test(sstfmt, index_search_every_block_count)
{
  uint8_t covered[71] = {0};
  unsigned left = 70;
  for (unsigned nkeys = 1; nkeys <= 2000 && left; nkeys++) {
    struct model m = {0};
    make_model(&m, nkeys, 2, 60, 0);
    struct sst_reader r;
    uint8_t *buf = build_open(&m, SST_BLOCK_MIN, &r);
    if (r.nblocks >= 1 && r.nblocks <= 70 && !covered[r.nblocks]) {
      covered[r.nblocks] = 1;
      left--;
      check_all_gets(&m, &r);
    }
    close_free(&r, buf, &m);
  }
  for (unsigned n = 1; n <= 70; n++)
    cr_assert(covered[n], "no table of %u blocks was made", n);
}

/* 8-byte big-endian keys id_of(0..n-1), in order, one version each; and
** the keys between them (id + 1, where that is not the next key) absent. */
static void check_binary_keys(unsigned n, uint64_t (*id_of)(unsigned i, unsigned n))
{
  struct model m = {0};
  for (unsigned i = 0; i < n; i++) {
    struct ent *e = model_push(&m);
    put_be64(e->key, id_of(i, n));
    e->klen = 8;
    e->seq = 100 + i;
    e->kind = SST_PUT;
    fill_value(e, 40, 0);
  }
  struct sst_reader r;
  uint8_t *buf = build_open_small_blocks(&m, &r);
  check_all_gets(&m, &r);
  struct sst_scratch s = {0};
  for (unsigned i = 0; i + 1 < n; i++) {
    uint64_t id = id_of(i, n) + 1;
    if (id == id_of(i + 1, n))
      continue;
    struct ent absent = { .klen = 8 };
    put_be64(absent.key, id);
    check_get(&r, &s, &absent, NULL, UINT64_MAX, 0);
  }
  sst_scratch_free(&s);
  close_free(&r, buf, &m);
}

static uint64_t even_ids(unsigned i, unsigned n) { return (uint64_t)i * (UINT64_MAX / n); }
static uint64_t exponential_ids(unsigned i, unsigned n) { return (1ull << (i * 62ull / n)) + i; }
static uint64_t clustered_ids(unsigned i, unsigned n) { return i < n / 2 ? i * 3ull : UINT64_MAX - 3ull * (n - i); }

Test(sstfmt, index_search_uneven_keys)
{
  check_binary_keys(4000, even_ids);
  check_binary_keys(4000, exponential_ids);
  check_binary_keys(4000, clustered_ids);
}

/* A reader verifies a data block's checksum once: a block that fails is
** refused on every read (nothing marks it verified), only blocks read are
** marked, and a new reader of the same bytes checks again. */
Test(sstfmt, checksum_verified_once_per_reader)
{
  struct model m = {0};
  make_model(&m, 2000, 1, 100, 0);
  struct sst_reader r;
  uint8_t *buf = build_open(&m, 0, &r);
  size_t len = r.len;
  cr_assert_gt(r.nblocks, 3u, "several blocks");
  struct sst_scratch s = {0};
  struct sst_get_result res;
  const struct ent *first = &m.e[0];
  cr_assert_eq(sst_get(&r, first->key, first->klen, UINT64_MAX, &s, &res), SOCHDB_OK, "get");
  cr_assert(atomic_load(&r.verified[0]) & 1, "block 0 is marked verified after a read");
  cr_assert_eq(atomic_load(&r.verified[0]) >> 1, 0, "no block that was not read is marked");

  /* damage the last block before anything read it: refused, and again */
  const struct ent *last = &m.e[m.n - 1];
  uint32_t lb = r.nblocks - 1;
  buf[r.index[lb].offset + 3] ^= 0x40;
  for (int again = 0; again < 2; again++)
    cr_assert_eq(sst_get(&r, last->key, last->klen, UINT64_MAX, &s, &res), SOCHDB_CORRUPT,
                 "read %d of a damaged block", again + 1);
  cr_assert_eq(atomic_load(&r.verified[lb / 64]) & (1ull << (lb % 64)), 0, "a damaged block is never marked");

  /* damage block 0 after this reader verified it: a new reader refuses it */
  buf[r.index[0].offset + 3] ^= 0x40;
  struct sst_reader fresh;
  cr_assert_eq(sst_open(buf, len, &fresh), SOCHDB_OK, "open again");
  cr_assert_eq(sst_get(&fresh, first->key, first->klen, UINT64_MAX, &s, &res), SOCHDB_CORRUPT,
               "a new reader verifies block 0 again");
  sst_close(&fresh);
  sst_scratch_free(&s);
  close_free(&r, buf, &m);
}

/* Keys a run of make_runs holds: about 160 blocks of 200-byte values, so
** that a random run backs LZ4 off past SST_LZ4_SKIP_MAX blocks
** (1 + 2 + 4 + ... + 64 = 127) and the cap is what bounds the raw blocks at
** the start of the compressible run after it. */
#define RUN_KEYS 3000u

/* Which run (even: random values, odd: compressible) a key of make_runs is in. */
static unsigned run_of(const char *key) { return (unsigned)(strtoul(key + 1, NULL, 10) / 2 / RUN_KEYS); }

static void make_runs(struct model *m, unsigned runs)
{
  for (unsigned i = 0; i < runs * RUN_KEYS; i++) {
    struct ent *e = model_push(m);
    e->klen = (size_t)snprintf(e->key, sizeof e->key, "k%08u", i * 2);
    e->seq = 10 + i;
    e->kind = SST_PUT;
    fill_value(e, 200, i / RUN_KEYS % 2);
  }
}

/* After blocks that LZ4 could not shrink, the builder skips LZ4 for a few
** blocks (at most SST_LZ4_SKIP_MAX) before trying again: a compressible run
** after a random one starts with a few raw blocks, at most that many (an
** uncapped back-off would have grown to 128 over the random run before),
** then every block of it is compressed; everything reads back. */
Test(sstfmt, lz4_backs_off_on_incompressible_blocks)
{
  struct model m = {0};
  make_runs(&m, 4);
  struct sst_reader r;
  uint8_t *buf = build_open(&m, 0, &r);
  unsigned raw_in_run[4] = {0}, prev_run = UINT32_MAX, lz4_seen = 0;
  for (uint32_t i = 0; i < r.nblocks; i++) {
    const struct sst_index_entry *e = &r.index[i];
    char key[32] = {0};
    memcpy(key, r.keys + e->key_off, e->klen < 31 ? e->klen : 31);
    unsigned run = run_of(key);
    int first_of_run = run != prev_run;   /* may hold the end of the run before */
    prev_run = run;
    int lz4 = r.buf[e->offset + e->size - SST_TRAILER_BYTES] == SST_LZ4;
    if (run % 2 == 0) {
      cr_assert(!lz4 || first_of_run, "block %u of a random run is LZ4", i);
      lz4_seen = 0;
      continue;
    }
    if (first_of_run)
      continue;
    if (lz4) {
      lz4_seen = 1;
      continue;
    }
    cr_assert(!lz4_seen, "block %u: raw after an LZ4 block of the same compressible run", i);
    cr_assert_lt(run, 4u, "block %u: a key of run %u", i, run);
    raw_in_run[run]++;
  }
  for (unsigned run = 1; run < 4; run += 2)
    cr_assert_leq(raw_in_run[run], SST_LZ4_SKIP_MAX, "%u raw blocks at the start of compressible run %u (the "
                  "back-off skips at most %u)", raw_in_run[run], run, SST_LZ4_SKIP_MAX);
  cr_assert_geq(raw_in_run[1] + raw_in_run[3], 1u, "no compressible run started with a raw block");
  check_all_gets(&m, &r);
  check_scan(&m, &r);
  close_free(&r, buf, &m);
}

Test(sstfmt, zero_copy_values)
{
  struct model m = {0};
  make_model(&m, 300, 1, 200, 0);
  uint8_t *buf;
  size_t len;
  build(&m, 0, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  check_values_in_place(&m, &r, buf, len);
  sst_close(&r);
  free(buf);
  model_free(&m);
}

/* Stored (uncompressed) data block i of the table buf holds: its payload
** and payload bytes. */
static uint8_t *raw_block(uint8_t *buf, const struct sst_reader *r, uint32_t i, size_t *n)
{
  const uint8_t *t = buf + r->index[i].offset + r->index[i].size - SST_TRAILER_BYTES;
  cr_assert_eq(t[0], SST_NONE, "block %u is stored uncompressed", i);
  *n = r->index[i].size - SST_TRAILER_BYTES;
  return buf + r->index[i].offset;
}

/* The hash index of a block payload p[0..n): its slot count, offsets, tags. */
static uint32_t block_slots(uint8_t *p, size_t n, uint8_t **offs, uint8_t **tags)
{
  uint32_t last;
  uint16_t m;
  memcpy(&last, p + n - 4, 4);
  cr_assert(last & 0x80000000u, "the block is hashed");
  memcpy(&m, p + n - 6, 2);
  *offs = p + n - 6 - 3 * (size_t)m;
  *tags = *offs + 2 * (size_t)m;
  return m;
}

/* Every plain data block carries a hash index with a slot for each of its
** keys; a get follows it, and is refused where the index is damaged or where
** the file's version allows none. A scan never reads it. */
Test(sstfmt, hash_index)
{
  struct model m = {0};
  make_model(&m, 600, 3, 60, 0);
  struct sst_reader r;
  uint8_t *buf;
  size_t len;
  /* the legacy format: its footer can say version 1 below and keep an
  ** index that version reads */
  build_as(&m, 1024, 1, 1, &buf, &len);
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  cr_assert_eq(r.version, SST_VERSION_HASHED, "hashed blocks: version %u", r.version);
  cr_assert_gt(r.nblocks, 10u, "several blocks (%u)", r.nblocks);
  size_t keys = 0, used = 0;
  for (size_t i = 0; i < m.n; i++)
    keys += i == 0 || m.e[i].klen != m.e[i - 1].klen || memcmp(m.e[i].key, m.e[i - 1].key, m.e[i].klen) != 0;
  for (uint32_t i = 0; i < r.nblocks; i++) {
    size_t n;
    uint8_t *p = raw_block(buf, &r, i, &n), *offs, *tags;
    uint32_t slots = block_slots(p, n, &offs, &tags);
    size_t in_block = 0;
    for (uint32_t k = 0; k < slots; k++)
      in_block += tags[k] != 0;
    cr_assert(in_block > 0 && in_block < slots, "block %u: %zu keys in %u slots, one empty at least", i, in_block,
              slots);
    used += in_block;
  }
  /* a key whose versions span blocks has a slot in each of them */
  cr_assert(used >= keys && used < keys + r.nblocks, "%zu slots used for %zu keys in %u blocks", used, keys,
            r.nblocks);
  check_all_gets(&m, &r);

  /* every tag alike and no slot empty: a get ends after m probes, finding
  ** nothing where it should not, whichever tag the key has */
  struct sst_scratch s = {0};
  struct sst_get_result res;
  size_t n;
  uint8_t *p = raw_block(buf, &r, 1, &n), *offs, *tags;
  uint32_t slots = block_slots(p, n, &offs, &tags);
  size_t stored = n + SST_TRAILER_BYTES;   /* the trailer's checksum too */
  uint8_t *save = malloc(stored);
  cr_assert_not_null(save);
  memcpy(save, p, stored);
  sst_close(&r);
  /* an absent key inside block 1's range that the filter lets through (or
  ** the get would end before the block): block 1's first key, its first
  ** version past block 0 if it continues from there, and a suffix */
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  size_t at = 0;
  while (sst_ikey_order((const uint8_t *)m.e[at].key, m.e[at].klen, 0, r.keys + r.index[0].key_off,
                        r.index[0].klen, 0) <= 0)
    at++;
  struct ent absent = m.e[at];
  for (unsigned x = 0;; x++) {
    cr_assert_lt(x, 100000u, "an absent key the filter lets through");
    absent.klen = m.e[at].klen + (size_t)snprintf(absent.key + m.e[at].klen, 16, "~%u", x);
    if (sst_may_contain(&r, absent.key, absent.klen))
      break;
  }
  cr_assert(sst_ikey_order((const uint8_t *)absent.key, absent.klen, 0, r.keys + r.index[1].key_off,
                           r.index[1].klen, 0) < 0, "the absent key falls in block 1");
  sst_close(&r);
  for (unsigned tag = 1; tag < 256; tag++) {
    memset(tags, (int)tag, slots);
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
    sst_data_block_seal(buf, &r, 1);
    cr_assert_eq(sst_get(&r, absent.key, absent.klen, UINT64_MAX, &s, &res), SOCHDB_OK, "tag %u: %s", tag,
                 sochdb_last_error());
    cr_assert_eq(res.found, 0, "tag %u: an absent key is not found", tag);
    sst_close(&r);
  }
  memcpy(p, save, stored);

  /* a slot pointing past the entries: the get is refused, the scan is not */
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  memset(offs, 0xff, 2 * (size_t)slots);
  sst_data_block_seal(buf, &r, 1);
  size_t first = 0;   /* the first key of block 1 that block 0 does not hold too */
  while (sst_ikey_order((const uint8_t *)m.e[first].key, m.e[first].klen, 0, r.keys + r.index[0].key_off,
                        r.index[0].klen, 0) <= 0)
    first++;
  cr_assert_eq(sst_get(&r, m.e[first].key, m.e[first].klen, UINT64_MAX, &s, &res), SOCHDB_CORRUPT,
               "a slot outside the entries");
  check_scan(&m, &r);
  sst_close(&r);
  memcpy(p, save, stored);

  /* a hashed block in a file of version 1 (whose filter, read the old way,
  ** may turn a get away before any block): the scan is refused */
  uint8_t *footer = buf + len - SST_FOOTER_BYTES;
  footer[8] = SST_VERSION_KV;
  sst_footer_seal(footer);
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, &r);
  cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_CORRUPT, "a hash index in a version-1 file");
  cr_assert(strstr(sochdb_last_error(), "hash index") != NULL, "the message says so: %s", sochdb_last_error());
  sst_iter_free(&it);
  sst_close(&r);
  sst_scratch_free(&s);
  free(save);
  free(buf);
  model_free(&m);
}

Test(sstfmt, versions_span_blocks)
{
  /* one key with 300 versions over many blocks, between two other keys */
  struct model m = {0};
  struct ent *e = model_push(&m);
  e->klen = 1;
  e->key[0] = 'a';
  e->seq = 5;
  e->kind = SST_PUT;
  fill_value(e, 10, 0);
  for (unsigned v = 0; v < 300; v++) {
    e = model_push(&m);
    e->klen = 3;
    memcpy(e->key, "mid", 3);
    e->seq = 10000 - 10 * v;
    e->kind = v % 7 == 3 ? SST_DEL : SST_PUT;
    fill_value(e, e->kind == SST_PUT ? 40 : 0, v % 2);
  }
  e = model_push(&m);
  e->klen = 1;
  e->key[0] = 'z';
  e->seq = 1;
  e->kind = SST_PUT;
  fill_value(e, 10, 0);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  cr_assert_gt(r.nblocks, 5u, "the versions fill several blocks (%u)", r.nblocks);
  struct sst_scratch s = {0};
  for (uint64_t snap = 0; snap <= 10010; snap++)
    check_get(&r, &s, &m.e[1], expect(&m, 1, 301, snap), snap, 0);
  sst_scratch_free(&s);
  check_scan(&m, &r);
  sst_close(&r);
  free(buf);
  model_free(&m);
}

Test(sstfmt, large_key_and_value)
{
  struct model m = {0};
  struct ent *e = model_push(&m);
  e->klen = 1;
  e->key[0] = 'a';
  e->seq = 3;
  e->kind = SST_PUT;
  fill_value(e, SOCHDB_MAX_VALUE, 1);
  uint8_t *bigkey = malloc(SOCHDB_MAX_KEY);
  cr_assert_not_null(bigkey);
  memset(bigkey, 'q', SOCHDB_MAX_KEY);
  uint8_t *rnd = malloc(1 << 20);
  cr_assert_not_null(rnd);
  for (size_t i = 0; i < 1u << 20; i++)
    rnd[i] = (uint8_t)rng();
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, 0), SOCHDB_OK, "init");
  cr_assert_eq(sst_builder_add(&b, "a", 1, 3, SST_PUT, e->val, e->vlen), SOCHDB_OK, "16 MiB value");
  cr_assert_eq(sst_builder_add(&b, bigkey, SOCHDB_MAX_KEY, 2, SST_PUT, rnd, 1u << 20), SOCHDB_OK, "4 KiB key");
  cr_assert_eq(sst_builder_add(&b, "r", 1, 1, SST_PUT, rnd, SOCHDB_MAX_VALUE + 1u), SOCHDB_INVALID, "too big");
  bigkey[0] = 'r';
  cr_assert_eq(sst_builder_add(&b, bigkey, SOCHDB_MAX_KEY + 1u, 1, SST_PUT, "", 0), SOCHDB_INVALID, "key too big");
  uint8_t *buf;
  size_t len;
  cr_assert_eq(sst_builder_finish(&b, &buf, &len), SOCHDB_OK, "finish");
  sst_builder_free(&b);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  struct sst_scratch s = {0};
  struct sst_get_result res;
  cr_assert_eq(sst_get(&r, "a", 1, UINT64_MAX, &s, &res), SOCHDB_OK, "get the big value");
  cr_assert(res.found && res.vlen == SOCHDB_MAX_VALUE && memcmp(res.val, e->val, e->vlen) == 0, "big value");
  bigkey[0] = 'q';
  cr_assert_eq(sst_get(&r, bigkey, SOCHDB_MAX_KEY, UINT64_MAX, &s, &res), SOCHDB_OK, "get the big key");
  cr_assert(res.found && res.vlen == 1u << 20 && memcmp(res.val, rnd, 1u << 20) == 0, "big key's value");
  sst_scratch_free(&s);
  sst_close(&r);
  free(buf);
  free(bigkey);
  free(rnd);
  model_free(&m);
}

/* No false negative, few false positives: the classic filter (versions 1
** and 2) and the blocked one (versions 3 and 4), whose lines start at file
** offsets that are multiples of 64. */
Test(sstfmt, bloom_false_positives)
{
  struct model m = {0};
  make_model(&m, 10000, 1, 8, 0);
  for (int blocked = 0; blocked < 2; blocked++) {
    uint8_t *buf;
    size_t len;
    build_as(&m, 0, blocked, !blocked, &buf, &len);   /* version 1, then 4 */
    struct sst_reader r;
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
    cr_assert_eq(r.bloom_lines != 0, blocked, "the filter is blocked in versions 3 and 4 only");
    if (blocked)
      cr_assert_eq((size_t)(r.bloom - buf) % 64, 0u, "the filter's lines are aligned in the file");
    for (size_t i = 0; i < m.n; i++)
      cr_assert(sst_may_contain(&r, m.e[i].key, m.e[i].klen), "no false negative for %s", m.e[i].key);
    unsigned fp = 0;
    for (unsigned i = 0; i < 10000; i++) {
      char k[32];
      int n = snprintf(k, sizeof k, "absent-%u", i);
      fp += (unsigned)sst_may_contain(&r, k, (size_t)n);
    }
    cr_assert_lt(fp, 300u, "false positives: %u of 10000 absent keys (limit 3%%)", fp);
    cr_log_info("bloom filter, %s: %u false positives in 10000", blocked ? "blocked" : "classic", fp);
    sst_close(&r);
    free(buf);
  }
  model_free(&m);
}

/* Open the (possibly damaged) table and read everything: each answer must be
** exactly right or SOCHDB_CORRUPT/SOCHDB_VERSION. */
static unsigned damaged_opened, damaged_refused, damaged_reads_refused;

static void check_damaged(const struct model *m, const uint8_t *buf, size_t len, size_t where)
{
  struct sst_reader r;
  int rc = sst_open(buf, len, &r);
  if (rc == SOCHDB_CORRUPT || rc == SOCHDB_VERSION) {
    damaged_refused++;
    return;
  }
  damaged_opened++;
  cr_assert_eq(rc, SOCHDB_OK, "damage at %zu: open rc %d", where, rc);
  struct sst_scratch s = {0};
  for (size_t i = 0; i < m->n;) {
    size_t end = i + 1;
    while (end < m->n && m->e[end].klen == m->e[i].klen && memcmp(m->e[end].key, m->e[i].key, m->e[i].klen) == 0)
      end++;
    damaged_reads_refused += check_get(&r, &s, &m->e[i], expect(m, i, end, UINT64_MAX), UINT64_MAX, 1) != 0;
    damaged_reads_refused +=
        check_get(&r, &s, &m->e[i], expect(m, i, end, m->e[i].seq - 1), m->e[i].seq - 1, 1) != 0;
    i = end;
  }
  sst_scratch_free(&s);
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, &r);
  size_t i = 0;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    cr_assert_lt(i, m->n, "damage at %zu: too many entries", where);
    check_entry(&e, &m->e[i], i);
    i++;
  }
  cr_assert(rc == SOCHDB_CORRUPT || (rc == SOCHDB_NOTFOUND && i == m->n), "damage at %zu: scan ends with %d after %zu",
            where, rc, i);
  sst_iter_free(&it);
  sst_close(&r);
}

Test(sstfmt, damage_any_byte)
{
  struct model m = {0};
  make_model(&m, 100, 2, 40, 3);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open intact");
  cr_assert_geq(r.nblocks, 3u, "a few blocks (%u)", r.nblocks);
  unsigned none, lz4;
  count_compression(&r, &none, &lz4);
  cr_assert(none > 0 && lz4 > 0, "both kinds of block (%u plain, %u LZ4)", none, lz4);
  sst_close(&r);
  check_damaged(&m, buf, len, (size_t)-1);
  static const uint8_t flips[] = {0x01, 0x80, 0xff, 0x10};
  for (size_t pos = 0; pos < len; pos++) {
    for (unsigned f = 0; f < 2; f++) {
      uint8_t x = flips[(pos + f * 2) % 4];
      buf[pos] ^= x;
      check_damaged(&m, buf, len, pos);
      buf[pos] ^= x;
    }
  }
  /* Both kinds of outcome happened: damage found at open (footer, filter,
  ** index) and damage found only when reading a data block. */
  cr_assert(damaged_refused > 0 && damaged_opened > 0 && damaged_reads_refused > 0,
            "damage: %u opens refused, %u opened, %u reads refused", damaged_refused, damaged_opened,
            damaged_reads_refused);
  cr_log_info("damage over %zu bytes: %u opens refused, %u opened, %u reads refused", len, damaged_refused,
              damaged_opened, damaged_reads_refused);
  /* a version field changed and resealed: SOCHDB_VERSION */
  uint8_t *footer = buf + len - SST_FOOTER_BYTES;
  footer[8] = SST_VERSION + 1;
  sst_footer_seal(footer);
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_VERSION, "a version this library does not know");
  free(buf);
  /* a version-1 file that says version 2 lacks the columnar block 2 means */
  build_as(&m, 1024, 0, 1, &buf, &len);
  footer = buf + len - SST_FOOTER_BYTES;
  footer[8] = SST_VERSION_COLUMNAR;
  sst_footer_seal(footer);
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_VERSION, "version 2 without a columnar block");
  free(buf);
  model_free(&m);
}

/* Read everything of a table whose checksums were forged: any answer is
** acceptable (the damage is undetectable by design) except a crash or an
** out-of-bounds read (ASan) or an error other than SOCHDB_CORRUPT. */
static void read_forged(const struct model *m, const uint8_t *buf, size_t len)
{
  struct sst_reader r;
  int rc = sst_open(buf, len, &r);
  cr_assert(rc == SOCHDB_OK || rc == SOCHDB_CORRUPT, "forged table: open rc %d", rc);
  if (rc)
    return;
  struct sst_scratch s = {0};
  for (size_t i = 0; i < m->n; i++) {
    struct sst_get_result res;
    rc = sst_get(&r, m->e[i].key, m->e[i].klen, m->e[i].seq, &s, &res);
    cr_assert(rc == SOCHDB_OK || rc == SOCHDB_CORRUPT, "forged table: get rc %d", rc);
    if (rc == SOCHDB_OK && res.found && res.vlen) {
      volatile uint8_t x = res.val[0];   /* the value must be readable */
      x ^= res.val[res.vlen - 1];
      (void)x;
    }
  }
  sst_scratch_free(&s);
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, &r);
  size_t n = 0;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK)
    cr_assert_lt(n++, 10 * m->n + 10, "forged table: the scan does not end");
  cr_assert(rc == SOCHDB_NOTFOUND || rc == SOCHDB_CORRUPT, "forged table: scan rc %d", rc);
  for (size_t i = 0; i < m->n; i += 7) {
    rc = sst_iter_seek(&it, m->e[i].key, m->e[i].klen);
    cr_assert(rc == SOCHDB_OK || rc == SOCHDB_CORRUPT, "forged table: seek rc %d", rc);
    if (rc == SOCHDB_OK)
      rc = sst_iter_next(&it, &e);
    cr_assert(rc == SOCHDB_OK || rc == SOCHDB_NOTFOUND || rc == SOCHDB_CORRUPT, "forged table: next rc %d", rc);
  }
  sst_iter_free(&it);
  sst_close(&r);
}

/* Damage that passes the checksums (they are resealed after each change):
** the parser itself must bound every varint, length and restart offset. */
Test(sstfmt, forged_checksums)
{
  struct model m = {0};
  make_model(&m, 100, 2, 40, 3);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open intact");
  uint32_t nb = r.nblocks;
  struct sst_index_entry *idx = malloc(nb * sizeof *idx);
  cr_assert_not_null(idx);
  memcpy(idx, r.index, nb * sizeof *idx);
  const uint8_t *f = buf + len - SST_FOOTER_BYTES;
  uint64_t index_off, filter_off;
  uint32_t index_size, filter_size;
  memcpy(&filter_off, f + 16, 8);
  memcpy(&index_off, f + 24, 8);
  memcpy(&filter_size, f + 32, 4);
  memcpy(&index_size, f + 36, 4);
  sst_close(&r);

  struct blk { uint64_t off; uint32_t size; enum sst_block_type type; } blocks[64];
  unsigned n = 0;
  for (uint32_t i = 0; i < nb && n < 62; i++)
    blocks[n++] = (struct blk){idx[i].offset, idx[i].size, SST_BLOCK_DATA};
  blocks[n++] = (struct blk){filter_off, filter_size, SST_BLOCK_FILTER};
  blocks[n++] = (struct blk){index_off, index_size, SST_BLOCK_INDEX};
  free(idx);

  static const uint8_t flips[] = {0x01, 0x80, 0xff, 0x10, 0x7f};
  for (unsigned bi = 0; bi < n; bi++) {
    /* every byte of the block but the checksum itself, trailer included */
    for (uint32_t p = 0; p < blocks[bi].size - 8; p++) {
      uint8_t x = flips[(p + bi) % 5];
      buf[blocks[bi].off + p] ^= x;
      sst_block_seal(buf, blocks[bi].off, blocks[bi].size, blocks[bi].type);
      read_forged(&m, buf, len);
      buf[blocks[bi].off + p] ^= x;
    }
    sst_block_seal(buf, blocks[bi].off, blocks[bi].size, blocks[bi].type);
  }
  /* random garbage in a data block, resealed */
  for (unsigned t = 0; t < 200; t++) {
    unsigned bi = (unsigned)(rng() % (n - 2));
    uint8_t *save = malloc(blocks[bi].size);
    cr_assert_not_null(save);
    memcpy(save, buf + blocks[bi].off, blocks[bi].size);
    for (unsigned k = 0; k < 1 + t % 20; k++)
      buf[blocks[bi].off + rng() % (blocks[bi].size - 8)] = (uint8_t)rng();
    sst_block_seal(buf, blocks[bi].off, blocks[bi].size, blocks[bi].type);
    read_forged(&m, buf, len);
    memcpy(buf + blocks[bi].off, save, blocks[bi].size);
    free(save);
  }
  /* footer fields changed and resealed */
  uint8_t *footer = buf + len - SST_FOOTER_BYTES;
  for (unsigned p = 8; p < 56; p++) {
    footer[p] ^= 0x01;
    sst_footer_seal(footer);
    int rc = sst_open(buf, len, &r);
    if (rc == SOCHDB_OK) {
      read_forged(&m, buf, len);
      sst_close(&r);
    } else {
      cr_assert(rc == SOCHDB_CORRUPT || rc == SOCHDB_VERSION, "forged footer byte %u: rc %d", p, rc);
    }
    footer[p] ^= 0x01;
  }
  free(buf);
  model_free(&m);
}

/* A table of tens of millions of keys has a filter (and an index) bigger
** than any data block: the reader bounds what it decompresses, not what it
** reads in place. A small table's filter is swapped for one of 17 MiB whose
** bits are all set, the index moved after it and resealed. */
Test(sstfmt, filter_bigger_than_any_block)
{
  struct model m = {0};
  make_model(&m, 300, 2, 40, 0);
  struct sst_reader r;
  uint8_t *buf = build_open(&m, 1024, &r);
  size_t len = r.len;
  sst_close(&r);
  const uint8_t *f = buf + len - SST_FOOTER_BYTES;
  uint64_t filter_off, index_off;
  uint32_t filter_size, index_size;
  memcpy(&filter_off, f + 16, 8);
  memcpy(&index_off, f + 24, 8);
  memcpy(&filter_size, f + 32, 4);
  memcpy(&index_size, f + 36, 4);
  uint8_t pad = buf[filter_off + filter_size - SST_TRAILER_BYTES - 1];
  size_t lines = (17u << 20) / 64, payload = pad + lines * 64 + 2;
  uint32_t big = (uint32_t)(payload + SST_TRAILER_BYTES);
  size_t nlen = filter_off + big + index_size + SST_FOOTER_BYTES;
  uint8_t *nb = calloc(1, nlen);
  cr_assert_not_null(nb);
  memcpy(nb, buf, filter_off);
  uint8_t *fp = nb + filter_off;
  memset(fp + pad, 0xff, lines * 64);
  fp[payload - 2] = SST_BLOOM_K;
  fp[payload - 1] = pad;
  uint32_t plen = (uint32_t)payload;
  memcpy(fp + payload + 4, &plen, 4);              /* trailer: stored, its length */
  sst_block_seal(nb, filter_off, big, SST_BLOCK_FILTER);
  uint64_t new_index = filter_off + big;
  memcpy(nb + new_index, buf + index_off, index_size);
  sst_block_seal(nb, new_index, index_size, SST_BLOCK_INDEX);
  uint8_t *footer = nb + nlen - SST_FOOTER_BYTES;
  memcpy(footer, f, SST_FOOTER_BYTES);
  memcpy(footer + 24, &new_index, 8);
  memcpy(footer + 32, &big, 4);
  sst_footer_seal(footer);
  cr_assert_eq(sst_open(nb, nlen, &r), SOCHDB_OK, "a 17 MiB filter: %s", sochdb_last_error());
  cr_assert_eq(r.bloom_lines, lines, "every line of it");
  check_all_gets(&m, &r);
  check_scan(&m, &r);
  sst_close(&r);
  free(nb);
  free(buf);
  model_free(&m);
}

Test(sstfmt, truncation)
{
  struct model m = {0};
  make_model(&m, 40, 2, 40, 2);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  for (size_t n = 0; n < len; n++) {
    uint8_t *cut = malloc(n ? n : 1);   /* exact size: overreads are caught by ASan */
    cr_assert_not_null(cut);
    memcpy(cut, buf, n);
    struct sst_reader r;
    int rc = sst_open(cut, n, &r);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "cut to %zu of %zu bytes: rc %d", n, len, rc);
    /* and the same bytes cut from the front */
    memcpy(cut, buf + len - n, n);
    rc = sst_open(cut, n, &r);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "first %zu of %zu bytes dropped: rc %d", len - n, len, rc);
    free(cut);
  }
  free(buf);
  model_free(&m);
}

Test(sstfmt, invalid_input)
{
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, 100), SOCHDB_INVALID, "block size below the minimum");
  sst_builder_free(&b);
  cr_assert_eq(sst_builder_init(&b, 1 << 20), SOCHDB_INVALID, "block size above the maximum");
  sst_builder_free(&b);
  cr_assert_eq(sst_builder_init(&b, 0), SOCHDB_OK, "default block size");
  cr_assert_eq(sst_builder_add(&b, "b", 1, 10, SST_PUT, "v", 1), SOCHDB_OK, "first add");
  cr_assert_eq(sst_builder_add(&b, "a", 1, 20, SST_PUT, "v", 1), SOCHDB_INVALID, "smaller key");
  cr_assert_eq(sst_builder_add(&b, "b", 1, 10, SST_PUT, "v", 1), SOCHDB_INVALID, "same key and seq");
  cr_assert_eq(sst_builder_add(&b, "b", 1, 11, SST_PUT, "v", 1), SOCHDB_INVALID, "same key, newer seq after older");
  cr_assert_eq(sst_builder_add(&b, "", 0, 5, SST_PUT, "v", 1), SOCHDB_INVALID, "empty key");
  cr_assert_eq(sst_builder_add(&b, "c", 1, 5, 3, "v", 1), SOCHDB_INVALID, "bad kind");
  cr_assert_eq(sst_builder_add(&b, "c", 1, 5, SST_DEL, "v", 1), SOCHDB_INVALID, "tombstone with a value");
  cr_assert_eq(sst_builder_add(&b, "c", 1, 5, SST_PUT, NULL, 3), SOCHDB_INVALID, "NULL value");
  cr_assert_eq(sst_builder_add(&b, "b", 1, 9, SST_DEL, NULL, 0), SOCHDB_OK, "older version of the same key");
  cr_assert_eq(sst_builder_add(&b, "ba", 2, 99, SST_PUT, "w", 1), SOCHDB_OK, "longer key after its prefix");
  cr_assert_eq(sst_builder_add(&b, "b", 1, 1, SST_PUT, "w", 1), SOCHDB_INVALID, "prefix after the longer key");
  uint8_t *buf;
  size_t len;
  cr_assert_eq(sst_builder_finish(&b, &buf, &len), SOCHDB_OK, "finish after refused adds");
  cr_assert_eq(sst_builder_finish(&b, &buf, &len), SOCHDB_INVALID, "finish twice");
  sst_builder_free(&b);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  cr_assert_eq(r.entries, 3u, "three entries kept");
  struct sst_scratch s = {0};
  struct sst_get_result res;
  cr_assert_eq(sst_get(&r, "b", 1, 9, &s, &res), SOCHDB_OK, "get");
  cr_assert(res.found && res.tombstone && res.seq == 9, "tombstone at seq 9");
  cr_assert_eq(sst_get(&r, "b", 1, 100, &s, &res), SOCHDB_OK, "get");
  cr_assert(res.found && !res.tombstone && res.vlen == 1 && res.val[0] == 'v', "put at seq 10");
  cr_assert_eq(sst_get(&r, "", 0, 100, &s, &res), SOCHDB_INVALID, "get with an empty key");
  sst_close(&r);
  free(buf);
}

/* ---- the block cache hook --------------------------------------------------- */

/* A fake block cache: a small array of copies. lie 1: a lookup of a cached
** block "hits" with another cached block of another length (bytes that parse
** as a block); lie 2: every lookup "hits" with 17 bytes of garbage; lie 3:
** every peek says the block changed while it was read; lie 4: so does every
** peek, whose copies garble bytes as torn ones would be (fake_copy). Its peek (unless
** no_peek) first fills the destination with another cached block, as a
** scratch that held it would be: a search that read a byte it did not copy
** would read that block's. */
struct fake_cache {
  struct { uint64_t off; size_t len; uint8_t *data; } e[512];
  unsigned n;
  unsigned lookups, hits, inserts, dup_inserts, lies;
  unsigned peek_hits;
  size_t   peeked_bytes, copied_bytes;   /* of the blocks peeked at, and copied out of them */
  int      lie, no_peek;
};

/* The entry a lookup of off answers with (lie 1: another of another
** length, no longer than cap), or -1. */
static int fake_find(struct fake_cache *c, uint64_t off, size_t cap)
{
  for (unsigned i = 0; i < c->n; i++) {
    if (c->e[i].off != off)
      continue;
    unsigned j = i;
    for (unsigned k = 0; c->lie == 1 && k < c->n && j == i; k++)
      if (c->e[k].len != c->e[i].len && c->e[k].len <= cap)
        j = k;
    c->lies += j != i;
    return c->e[j].len <= cap ? (int)j : -1;
  }
  return -1;
}

static int fake_lookup(void *ctx, uint64_t off, uint8_t *dst, size_t cap, size_t *len)
{
  struct fake_cache *c = ctx;
  c->lookups++;
  if (c->lie == 2) {
    memset(dst, 0xEE, cap);
    *len = 17;
    return 1;
  }
  int j = fake_find(c, off, cap);
  if (j < 0)
    return 0;
  memcpy(dst, c->e[j].data, c->e[j].len);
  *len = c->e[j].len;
  c->hits++;
  return 1;
}

struct fake_src {
  struct sst_block_src src;
  const uint8_t       *data;
  size_t               len;
  uint8_t             *dst;
  struct fake_cache   *c;
};

/* As the block cache's copy: whole words, so from the word that holds
** byte from. lie 4: each copied byte may be garbled (zeroed, 0xff, or
** flipped), as torn bytes would be. */
static void fake_copy(const struct sst_block_src *src, size_t from, size_t to)
{
  const struct fake_src *fs = (const struct fake_src *)src;
  if (to > fs->len)
    to = fs->len;
  if (from >= to)
    return;
  fs->c->copied_bytes += to - from;
  from -= from % 8;
  memcpy(fs->dst + from, fs->data + from, to - from);
  for (size_t i = from; fs->c->lie == 4 && i < to; i++) {
    uint64_t x = rng();
    if (x % 8 == 0)
      fs->dst[i] = x >> 8 & 1 ? 0 : 0xff;
    else if (x % 8 == 1)
      fs->dst[i] ^= (uint8_t)(x >> 16);
  }
}

static int fake_peek(void *ctx, uint64_t off, uint8_t *dst, size_t cap, sst_block_reader read, void *arg,
                     int *read_rc)
{
  struct fake_cache *c = ctx;
  c->lookups++;
  int j = fake_find(c, off, cap);
  if (j < 0)
    return 0;
  unsigned stale = ((unsigned)j + 1) % c->n;
  memset(dst, 0xEE, cap);
  memcpy(dst, c->e[stale].data, c->e[stale].len < cap ? c->e[stale].len : cap);
  struct fake_src fs = { { fake_copy }, c->e[j].data, c->e[j].len, dst, c };
  *read_rc = read(arg, &fs.src, c->e[j].len);
  if (c->lie == 3 || c->lie == 4)
    return 0;
  c->hits++;
  c->peek_hits++;
  c->peeked_bytes += c->e[j].len;
  return 1;
}

static void fake_insert(void *ctx, uint64_t off, const uint8_t *data, size_t len)
{
  struct fake_cache *c = ctx;
  for (unsigned i = 0; i < c->n; i++)
    if (c->e[i].off == off) {
      c->dup_inserts++;
      return;
    }
  cr_assert_lt(c->n, 512u, "fake cache full");
  c->e[c->n].off = off;
  c->e[c->n].len = len;
  c->e[c->n].data = malloc(len);
  cr_assert_not_null(c->e[c->n].data);
  memcpy(c->e[c->n].data, data, len);
  c->n++;
  c->inserts++;
}

static void fake_free(struct fake_cache *c)
{
  for (unsigned i = 0; i < c->n; i++)
    free(c->e[i].data);
  free(c);
}

/* A fake cache for r, with a peek unless no_peek. */
static struct fake_cache *fake_attach_as(struct sst_reader *r, int no_peek)
{
  struct fake_cache *c = calloc(1, sizeof *c);
  cr_assert_not_null(c);
  c->no_peek = no_peek;
  struct sst_block_cache hook = {.lookup = fake_lookup, .insert = fake_insert, .peek = no_peek ? NULL : fake_peek,
                                 .ctx = c};
  sst_set_cache(r, &hook);
  return c;
}

static struct fake_cache *fake_attach(struct sst_reader *r) { return fake_attach_as(r, 0); }

Test(sstfmt, cache_hits_return_identical_results)
{
  struct model m = {0};
  make_model(&m, 2000, 2, 300, 1);   /* compressible: every block LZ4 */
  uint8_t *buf;
  size_t len;
  build(&m, 4096, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  cr_assert_null(r.cache.lookup, "sst_open leaves the cache empty");
  unsigned none, lz4;
  count_compression(&r, &none, &lz4);
  cr_assert(lz4 == r.nblocks && lz4 > 10, "%u of %u blocks LZ4", lz4, r.nblocks);
  struct fake_cache *c = fake_attach(&r);

  /* first run: gets fill the cache, then hit it */
  check_all_gets(&m, &r);
  cr_assert_gt(c->inserts, 10u, "gets inserted blocks (%u)", c->inserts);
  cr_assert_leq(c->inserts, r.nblocks, "at most one insert per block");
  cr_assert_eq(c->dup_inserts, 0u, "a cached block is never inserted again");
  /* second run: only hits */
  unsigned lookups = c->lookups, hits = c->hits, inserts = c->inserts;
  check_all_gets(&m, &r);
  cr_assert_gt(c->lookups, lookups, "the second run looked up blocks");
  cr_assert_eq(c->hits - hits, c->lookups - lookups, "every lookup of the second run hit");
  cr_assert_eq(c->inserts, inserts, "nothing inserted on the second run");
  sst_close(&r);
  fake_free(c);

  /* a scan fills a fresh cache with every block; a second scan only hits */
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "reopen");
  c = fake_attach(&r);
  check_scan(&m, &r);
  cr_assert_eq(c->inserts, r.nblocks, "the scan inserted every block");
  check_scan(&m, &r);
  cr_assert_eq(c->hits, r.nblocks, "the second scan hit every block");
  cr_assert_eq(c->inserts, r.nblocks, "and inserted nothing");
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, &r);
  size_t mid = m.n / 2;
  cr_assert_eq(sst_iter_seek(&it, m.e[mid].key, m.e[mid].klen), SOCHDB_OK, "seek through the cache");
  cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_OK, "next after seek");
  while (mid > 0 && m.e[mid - 1].klen == m.e[mid].klen && memcmp(m.e[mid - 1].key, m.e[mid].key, m.e[mid].klen) == 0)
    mid--;
  check_entry(&e, &m.e[mid], mid);
  sst_iter_free(&it);

  /* a hit skips the checksum: damage block 0's payload (not its trailer) */
  buf[r.index[0].offset + 1] ^= 0x40;
  struct sst_scratch s = {0};
  check_get(&r, &s, &m.e[0], expect(&m, 0, 1, UINT64_MAX), UINT64_MAX, 0);
  sst_set_cache(&r, NULL);
  struct sst_get_result res;
  cr_assert_eq(sst_get(&r, m.e[0].key, m.e[0].klen, UINT64_MAX, &s, &res), SOCHDB_CORRUPT,
               "without the cache the damaged block is read and refused");
  cr_assert_null(r.cache.lookup, "sst_set_cache(NULL) removes the cache");
  sst_scratch_free(&s);
  sst_close(&r);
  fake_free(c);
  free(buf);
  model_free(&m);
}

Test(sstfmt, lying_cache_is_ignored)
{
  struct model m = {0};
  make_model(&m, 600, 2, 300, 1);
  uint8_t *buf;
  size_t len;
  build(&m, 4096, &buf, &len);
  for (int lie = 1; lie <= 4; lie++) {
    struct sst_reader r;
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
    struct fake_cache *c = fake_attach(&r);
    check_scan(&m, &r);   /* fill it honestly */
    cr_assert_eq(c->inserts, r.nblocks, "every block cached");
    c->lie = lie;
    unsigned lookups = c->lookups, hits = c->hits;
    check_all_gets(&m, &r);
    check_scan(&m, &r);
    cr_assert_gt(c->lookups - lookups, 10u, "the lying cache was asked");
    if (lie == 1)
      cr_assert(c->hits - hits == c->lookups - lookups && c->lies > 10,
                "and answered with another block of another length (%u times)", c->lies);
    if (lie >= 3)
      cr_assert(c->copied_bytes > 0 && c->peek_hits == 0, "the peeks ran the search (%zu bytes copied), and "
                "every one said the block changed", c->copied_bytes);
    sst_close(&r);
    fake_free(c);
  }
  free(buf);
  model_free(&m);
}

/* Point reads through the peek: the same answers as from the file, reading
** only what they search of a cached block. Values up to 300 bytes, several
** versions a key, snapshots between them (check_all_gets); hashed blocks,
** and blocks without a hash index (whose search copies all the entries). */
Test(sstfmt, point_reads_copy_only_what_they_search_of_a_cached_block)
{
  struct model m = {0};
  make_model(&m, 2000, 3, 300, 1);
  for (int hashed = 1; hashed >= 0; hashed--) {
    uint8_t *buf;
    size_t len;
    build_hashed(&m, 4096, hashed, &buf, &len);
    struct sst_reader r;
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
    struct fake_cache *c = fake_attach(&r);
    check_scan(&m, &r);   /* fill it */
    cr_assert_eq(c->inserts, r.nblocks, "every block cached");
    check_all_gets(&m, &r);
    cr_assert_gt(c->peek_hits, 1000u, "the gets peeked (%u)", c->peek_hits);
    cr_assert_eq(c->inserts, r.nblocks, "and inserted nothing");
    double share = (double)c->copied_bytes / (double)c->peeked_bytes;
    cr_log_info("hashed %d: %u peeks copied %.1f%% of their blocks' bytes", hashed, c->peek_hits, 100 * share);
    if (hashed)
      cr_assert_lt(share, 0.25, "a search through the hash index copies a small part of the block (%.1f%%)",
                   100 * share);
    else
      cr_assert_gt(share, 0.80, "a search without one copies the entries (%.1f%%)", 100 * share);
    sst_close(&r);
    fake_free(c);
    free(buf);
  }
  model_free(&m);
}

Test(sstfmt, uncompressed_table_never_uses_the_cache)
{
  struct model m = {0};
  make_model(&m, 600, 2, 300, 0);   /* random values: nothing compresses */
  uint8_t *buf;
  size_t len;
  build(&m, 4096, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  unsigned none, lz4;
  count_compression(&r, &none, &lz4);
  cr_assert(none == r.nblocks && none > 10, "%u of %u blocks uncompressed", none, r.nblocks);
  struct fake_cache *c = fake_attach(&r);
  check_all_gets(&m, &r);
  check_scan(&m, &r);
  cr_assert_eq(c->lookups + c->inserts, 0u, "uncompressed blocks never reach the cache (%u lookups, %u inserts)",
               c->lookups, c->inserts);
  sst_close(&r);
  fake_free(c);
  free(buf);
  model_free(&m);
}

/* ---- columnar blocks ----------------------------------------------------------- */

#define COL_TABLE 7u

static void row_key(struct ent *e, uint32_t table, int64_t pk)
{
  rowfmt_row_prefix((uint8_t *)e->key, table);
  sochdb_value v = { .i64 = pk };
  e->klen = ROWFMT_PREFIX_LEN + rowfmt_pk_encode((uint8_t *)e->key + ROWFMT_PREFIX_LEN, SOCHDB_INT64, &v);
}

/* A row of 4 columns (5 when wide: a column added later) for pk at seq. */
static void row_value(struct ent *e, int64_t pk, uint64_t seq, int wide)
{
  static const uint8_t types[5] = { SOCHDB_INT64, SOCHDB_INT64, SOCHDB_DOUBLE, SOCHDB_STRING, SOCHDB_INT64 };
  sochdb_value v[5];
  memset(v, 0, sizeof v);
  char str[48];
  v[0].i64 = pk;
  v[1].i64 = pk * 3;
  v[2].f64 = (double)pk / 4.0 + (double)(seq % 7);
  v[3].len = (size_t)snprintf(str, sizeof str, "s%lld-%llu", (long long)pk, (unsigned long long)seq);
  v[3].bytes = str;
  v[3].is_null = pk % 4 == 0;
  v[4].i64 = (int64_t)seq;
  v[4].is_null = pk % 3 == 0;
  unsigned n = wide ? 5 : 4;
  e->vlen = rowfmt_size(n, types, v);
  e->val = malloc(e->vlen);
  cr_assert_not_null(e->val);
  rowfmt_encode(e->val, n, types, v);
}

/* Plain keys, then rows of COL_TABLE (versions, tombstones, a value that is
** not a row, narrow then wide rows), rows of table 9, plain reserved keys. */
static void make_columnar_model(struct model *m, unsigned nrows, unsigned maxv)
{
  for (unsigned i = 0; i < 20; i++) {
    struct ent *e = model_push(m);
    e->klen = (size_t)snprintf(e->key, sizeof e->key, "a%05u", i);
    e->seq = 5 + i;
    e->kind = SST_PUT;
    fill_value(e, 10, 1);
  }
  for (uint32_t table = COL_TABLE; table <= 9; table += 2) {
    unsigned n = table == COL_TABLE ? nrows : 30;
    for (unsigned i = 0; i < n; i++) {
      unsigned nv = 1 + (unsigned)(rng() % maxv);
      uint64_t seq = 100000 + rng() % 100000;
      for (unsigned v = 0; v < nv; v++) {
        struct ent *e = model_push(m);
        row_key(e, table, (int64_t)i * 2);
        e->seq = seq;
        seq -= 1 + rng() % 50;
        e->kind = rng() % 10 == 0 ? SST_DEL : SST_PUT;
        if (e->kind == SST_PUT && table == COL_TABLE && i == n / 3)
          fill_value(e, 9, 1);              /* not a row: a plain block of its own */
        else if (e->kind == SST_PUT)
          row_value(e, (int64_t)i * 2, e->seq, i >= n / 2);
      }
    }
  }
  for (unsigned i = 0; i < 10; i++) {
    struct ent *e = model_push(m);
    e->klen = (size_t)snprintf(e->key, sizeof e->key, "\xff\xff\x02z%03u", i);
    e->seq = 7;
    e->kind = SST_PUT;
    fill_value(e, 12, 0);
  }
}

/* Two values are the same row (missing trailing columns = NULL), or, when
** they are not rows, the same bytes. */
static int same_row(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
  uint8_t ta[64], tb[64];
  sochdb_value va[64], vb[64];
  unsigned na, nb;
  if (rowfmt_decode(a, an, 64, &na, ta, va) || rowfmt_decode(b, bn, 64, &nb, tb, vb))
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
  for (unsigned j = 0; j < na || j < nb; j++) {
    const sochdb_value *x = j < na ? &va[j] : NULL, *y = j < nb ? &vb[j] : NULL;
    int xnull = !x || x->is_null, ynull = !y || y->is_null;
    if (xnull || ynull) {
      if (xnull != ynull)
        return 0;
      continue;
    }
    if (ta[j] != tb[j])
      return 0;
    if (rowfmt_fixed(ta[j]) ? memcmp(&x->i64, &y->i64, 8) && x->f64 != y->f64
                            : x->len != y->len || (x->len && memcmp(x->bytes, y->bytes, x->len)))
      return 0;
  }
  return 1;
}

static void check_row_entry(const struct sst_entry *got, const struct ent *want, size_t i)
{
  cr_assert(got->klen == want->klen && memcmp(got->key, want->key, want->klen) == 0, "entry #%zu: key", i);
  cr_assert_eq(got->seq, want->seq, "entry #%zu: seq", i);
  cr_assert_eq(got->kind, want->kind, "entry #%zu: kind", i);
  cr_assert(same_row(got->val, got->vlen, want->val, want->vlen), "entry #%zu: value differs", i);
}

/* Scan, gets at several snapshots and seeks, against the model. */
static void check_columnar(const struct model *m, const struct sst_reader *r)
{
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, r);
  size_t i = 0;
  int rc;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    cr_assert_lt(i, m->n, "more entries than added");
    check_row_entry(&e, &m->e[i], i);
    i++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "scan: rc %d (%s)", rc, sochdb_last_error());
  cr_assert_eq(i, m->n, "scan: %zu entries of %zu", i, m->n);
  struct sst_scratch s = {0};
  for (size_t k = 0; k < m->n;) {
    size_t end = k + 1;
    while (end < m->n && m->e[end].klen == m->e[k].klen && !memcmp(m->e[end].key, m->e[k].key, m->e[k].klen))
      end++;
    uint64_t snaps[] = { UINT64_MAX, m->e[k].seq - 1, m->e[end - 1].seq, m->e[end - 1].seq - 1 };
    for (unsigned n = 0; n < 4; n++) {
      const struct ent *want = expect(m, k, end, snaps[n]);
      struct sst_get_result res;
      rc = sst_get(r, m->e[k].key, m->e[k].klen, snaps[n], &s, &res);
      cr_assert_eq(rc, SOCHDB_OK, "get #%zu: rc %d (%s)", k, rc, sochdb_last_error());
      cr_assert_eq(res.found, want != NULL, "get #%zu @%llu: found", k, (unsigned long long)snaps[n]);
      if (want) {
        cr_assert(res.seq == want->seq && res.tombstone == (want->kind == SST_DEL), "get #%zu: version", k);
        cr_assert(same_row(res.val, res.vlen, want->val, want->vlen), "get #%zu: value", k);
      }
    }
    if (k % 5 == 0) {
      cr_assert_eq(sst_iter_seek(&it, m->e[k].key, m->e[k].klen), SOCHDB_OK, "seek #%zu", k);
      cr_assert_eq(sst_iter_next(&it, &e), SOCHDB_OK, "next after seek #%zu", k);
      check_row_entry(&e, &m->e[k], k);
    }
    k = end;
  }
  sst_scratch_free(&s);
  sst_iter_free(&it);
}

Test(sstfmt, columnar_round_trip)
{
  struct model m = {0};
  make_columnar_model(&m, 400, 3);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  cr_assert_eq(r.version, SST_VERSION_HASHED, "a table with columnar and hashed blocks is version %u", r.version);
  cr_assert_gt(r.ncolblocks, 4u, "columnar blocks (%u)", r.ncolblocks);
  cr_assert_gt(r.nblocks, r.ncolblocks + 2, "plain blocks too (%u of %u)", r.nblocks - r.ncolblocks, r.nblocks);
  unsigned wide = 0, tables = 0;
  for (uint32_t i = 0; i < r.ncolblocks; i++) {
    wide += r.colblocks[i].ncols == 5;
    tables |= 1u << (r.colblocks[i].table & 15);
    cr_assert(r.colblocks[i].ncols == 4 || r.colblocks[i].ncols == 5 || r.colblocks[i].ncols == 0, "columns");
  }
  cr_assert(wide > 0 && tables == (1u << COL_TABLE | 1u << 9), "wide blocks and both tables");
  const struct sst_segment *ts = &r.segs[r.colblocks[0].seg + 2];
  cr_assert(ts->type == SOCHDB_INT64 && ts->has_minmax && (int64_t)ts->min <= (int64_t)ts->max, "min/max");
  check_columnar(&m, &r);
  sst_close(&r);
  free(buf);

  /* without hashed blocks, version 2 */
  build_hashed(&m, 1024, 0, &buf, &len);
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open: %s", sochdb_last_error());
  cr_assert_eq(r.version, SST_VERSION_COLUMNAR, "columnar blocks, no hashed ones: version %u", r.version);
  check_columnar(&m, &r);
  sst_close(&r);
  free(buf);
  model_free(&m);

  /* a table without rows is version 4, hashed or not; version 1 in the
  ** legacy format when it is not hashed */
  memset(&m, 0, sizeof m);
  make_model(&m, 50, 2, 40, 1);
  for (int legacy = 0; legacy <= 1; legacy++) {
    build_as(&m, 1024, 0, legacy, &buf, &len);
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
    cr_assert_eq(r.version, legacy ? SST_VERSION_KV : SST_VERSION, "no columnar block: version %u", r.version);
    sst_close(&r);
    free(buf);
  }
  model_free(&m);
}

/* Iterate r with projection p; check every entry against the model: a row of
** p's table has the wanted columns only, or is SST_SKIP when it fails the
** filter; a row of another table is SST_SKIP (its keys alone are read);
** anything else is whole. */
static void check_projected(const struct model *m, const struct sst_reader *r, const struct sst_projection *p,
                            struct sst_read_stats *st)
{
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, r);
  memset(st, 0, sizeof *st);
  sst_iter_project(&it, p, st);
  size_t i = 0;
  int rc;
  uint32_t table;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    const struct ent *w = &m->e[i];
    cr_assert(e.klen == w->klen && !memcmp(e.key, w->key, w->klen) && e.seq == w->seq, "entry #%zu", i);
    uint8_t types[64];
    sochdb_value got[64], want[64];
    unsigned ng, nw;
    if (w->kind == SST_DEL || !rowfmt_key_table(e.key, e.klen, &table) ||
        rowfmt_decode(w->val, w->vlen, 64, &nw, types, want)) {
      check_row_entry(&e, w, i);
      i++;
      continue;
    }
    if (table != p->table) {
      cr_assert_eq(e.kind, SST_SKIP, "entry #%zu: a row of table %u read through a projection of %u", i, table,
                   p->table);
      i++;
      continue;
    }
    int pass = !p->filtered || rowfmt_match(&p->f, &want[p->f.col]);
    cr_assert_eq(e.kind, pass ? SST_PUT : SST_SKIP, "entry #%zu: kind %u", i, e.kind);
    if (pass) {
      cr_assert_eq(rowfmt_decode(e.val, e.vlen, 64, &ng, types, got), 0, "entry #%zu: a row", i);
      for (unsigned j = 0; j < ng; j++)
        if (!(p->columns >> j & 1) && (!p->filtered || j != p->f.col))
          cr_assert(got[j].is_null, "entry #%zu: column %u was not asked for", i, j);
        else if (j < nw && !want[j].is_null)
          cr_assert(!got[j].is_null && (j == 3 ? got[j].len == want[j].len : got[j].i64 == want[j].i64 ||
                                        got[j].f64 == want[j].f64), "entry #%zu: column %u", i, j);
    }
    i++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "projected scan: rc %d (%s)", rc, sochdb_last_error());
  cr_assert_eq(i, m->n, "projected scan: %zu entries of %zu", i, m->n);
  sst_iter_free(&it);
}

Test(sstfmt, columnar_projection_and_filter)
{
  struct model m = {0};
  make_columnar_model(&m, 2000, 2);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  struct sst_projection all = { .table = COL_TABLE, .columns = ~0ull }, one = { .table = COL_TABLE, .columns = 2 };
  struct sst_read_stats sa, s1, sf;
  check_projected(&m, &r, &all, &sa);
  check_projected(&m, &r, &one, &s1);
  cr_assert_eq(sa.blocks_read, s1.blocks_read, "the same blocks");
  cr_assert_lt(s1.bytes_read * 2, sa.bytes_read, "1 column: %llu bytes, all: %llu", (unsigned long long)s1.bytes_read,
               (unsigned long long)sa.bytes_read);
  /* column 1 = 3 * pk grows with the key: a narrow range skips most blocks */
  struct sst_projection f = one;
  f.columns = 8;
  f.filtered = 1;
  f.f = (struct rowfmt_filter){ .col = 1, .type = SOCHDB_INT64, .has_lo = 1, .lo_incl = 1, .has_hi = 1,
                                .lo = { .i64 = 6000 }, .hi = { .i64 = 6200 } };
  check_projected(&m, &r, &f, &sf);
  cr_assert_gt(sf.blocks_skipped * 10, (uint64_t)r.ncolblocks * 7, "%llu of %u columnar blocks skipped",
               (unsigned long long)sf.blocks_skipped, r.ncolblocks);
  cr_assert_lt(sf.bytes_read, s1.bytes_read, "the filter reads less than one column");
  /* a double and a string filter, evaluated on every row */
  f.f = (struct rowfmt_filter){ .col = 2, .type = SOCHDB_DOUBLE, .has_hi = 1, .hi = { .f64 = 100.5 } };
  check_projected(&m, &r, &f, &sf);
  f.f = (struct rowfmt_filter){ .col = 3, .type = SOCHDB_STRING, .has_lo = 1, .lo = { .bytes = "s30", .len = 3 } };
  check_projected(&m, &r, &f, &sf);
  /* a projection of another table reads none of their columns: the rows of
  ** table 7 come back hidden, table 9's projected */
  struct sst_projection other = { .table = 9, .columns = 1 };
  check_projected(&m, &r, &other, &sf);
  sst_close(&r);
  free(buf);
  model_free(&m);
}

/* Read the (possibly damaged) columnar table: every answer exact, or
** SOCHDB_CORRUPT. Returns 1 if the full scan reported SOCHDB_CORRUPT. */
static int check_columnar_damaged(const struct model *m, const uint8_t *buf, size_t len, size_t where)
{
  struct sst_reader r;
  int rc = sst_open(buf, len, &r);
  if (rc == SOCHDB_CORRUPT || rc == SOCHDB_VERSION)
    return 1;
  cr_assert_eq(rc, SOCHDB_OK, "damage at %zu: open rc %d", where, rc);
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, &r);
  size_t i = 0;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    cr_assert_lt(i, m->n, "damage at %zu: too many entries", where);
    check_row_entry(&e, &m->e[i], i);
    i++;
  }
  cr_assert(rc == SOCHDB_CORRUPT || (rc == SOCHDB_NOTFOUND && i == m->n), "damage at %zu: scan rc %d", where, rc);
  sst_iter_free(&it);
  int scan_corrupt = rc == SOCHDB_CORRUPT;
  struct sst_projection p = { .table = COL_TABLE, .columns = 4 };
  sst_iter_init(&it, &r);
  sst_iter_project(&it, &p, NULL);
  for (i = 0; (rc = sst_iter_next(&it, &e)) == SOCHDB_OK; i++)
    cr_assert(e.klen == m->e[i].klen && !memcmp(e.key, m->e[i].key, e.klen), "damage at %zu: projected key", where);
  cr_assert(rc == SOCHDB_CORRUPT || rc == SOCHDB_NOTFOUND, "damage at %zu: projected rc %d", where, rc);
  sst_iter_free(&it);
  struct sst_scratch s = {0};
  for (size_t k = where % 5; k < m->n; k += 5) {   /* a sample: each get reads a whole block */
    struct sst_get_result res;
    rc = sst_get(&r, m->e[k].key, m->e[k].klen, m->e[k].seq, &s, &res);
    cr_assert(rc == SOCHDB_CORRUPT || rc == SOCHDB_OK, "damage at %zu: get rc %d", where, rc);
    if (rc == SOCHDB_OK) {
      cr_assert(res.found && res.seq == m->e[k].seq, "damage at %zu: get #%zu finds another version", where, k);
      cr_assert(res.tombstone || same_row(res.val, res.vlen, m->e[k].val, m->e[k].vlen),
                "damage at %zu: get #%zu returned a wrong value", where, k);
    }
  }
  sst_scratch_free(&s);
  sst_close(&r);
  return scan_corrupt;
}

Test(sstfmt, columnar_damage_in_any_segment_is_corrupt)
{
  struct model m = {0};
  make_columnar_model(&m, 120, 2);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open intact");
  uint64_t data_end = r.data_end;
  cr_assert_gt(r.ncolblocks, 2u, "columnar blocks");
  sst_close(&r);
  cr_assert_eq(check_columnar_damaged(&m, buf, len, (size_t)-1), 0, "intact");
  static const uint8_t flips[] = { 0x01, 0x80, 0xff, 0x10 };
  for (size_t pos = 0; pos < len; pos++) {
    uint8_t x = flips[pos % 4];
    buf[pos] ^= x;
    int corrupt = check_columnar_damaged(&m, buf, len, pos);
    cr_assert(pos >= data_end || corrupt, "a flipped byte at %zu (a data block or segment) went unnoticed", pos);
    buf[pos] ^= x;
  }
  free(buf);
  model_free(&m);
}

/* Projected and filtered scans of a forged table: no crash, no error but
** SOCHDB_CORRUPT, whatever they return. */
static void read_forged_projected(const uint8_t *buf, size_t len)
{
  struct sst_reader r;
  if (sst_open(buf, len, &r) != SOCHDB_OK)
    return;
  struct sst_projection p[2] = {
    { .table = COL_TABLE, .columns = 8 },
    { .table = COL_TABLE, .columns = 1, .filtered = 1,
      .f = { .col = 1, .type = SOCHDB_INT64, .has_lo = 1, .lo = { .i64 = 90 } } },
  };
  for (int k = 0; k < 2; k++) {
    struct sst_iter it;
    struct sst_entry e;
    struct sst_read_stats st;
    sst_iter_init(&it, &r);
    sst_iter_project(&it, &p[k], &st);
    int rc;
    for (unsigned n = 0; (rc = sst_iter_next(&it, &e)) == SOCHDB_OK; n++) {
      cr_assert_lt(n, 100000u, "forged: the scan does not end");
      if (e.vlen) {
        volatile uint8_t x = e.val[0] ^ e.val[e.vlen - 1];   /* readable */
        (void)x;
      }
    }
    cr_assert(rc == SOCHDB_NOTFOUND || rc == SOCHDB_CORRUPT, "forged: projected scan rc %d", rc);
    sst_iter_free(&it);
  }
  sst_close(&r);
}

Test(sstfmt, columnar_forged_checksums)
{
  struct model m = {0};
  make_columnar_model(&m, 60, 2);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open intact");
  static const uint8_t flips[] = { 0x01, 0x80, 0xff, 0x10, 0x7f };
  for (uint32_t bi = 0, done = 0; bi < r.nblocks && done < 2; bi++) {   /* two columnar blocks */
    if (!r.index[bi].col)
      continue;
    done++;
    const struct sst_index_entry *ie = &r.index[bi];
    for (uint32_t p = 0; p < ie->size; p++) {
      uint8_t x = flips[(p + bi) % 5];
      buf[ie->offset + p] ^= x;
      sst_data_block_seal(buf, &r, bi);   /* every segment's checksum recomputed */
      read_forged(&m, buf, len);
      read_forged_projected(buf, len);
      buf[ie->offset + p] ^= x;
    }
    sst_data_block_seal(buf, &r, bi);
  }
  sst_close(&r);
  free(buf);
  model_free(&m);
}

Test(sstfmt, columnar_segments_go_through_the_cache)
{
  struct model m = {0};
  make_columnar_model(&m, 300, 2);
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  struct fake_cache *c = fake_attach(&r);
  check_columnar(&m, &r);
  cr_assert_gt(c->inserts, r.ncolblocks, "segments were cached (%u)", c->inserts);
  cr_assert_eq(c->dup_inserts, 0u, "none twice");
  unsigned inserts = c->inserts, hits = c->hits;
  check_columnar(&m, &r);
  cr_assert_eq(c->inserts, inserts, "the second pass inserts nothing");
  cr_assert_gt(c->hits, hits, "and hits");
  c->lie = 2;
  check_columnar(&m, &r);   /* garbage from the cache is ignored */
  sst_close(&r);
  fake_free(c);
  free(buf);
  model_free(&m);
}

/* Whole blocks: taken only at a block's first entry, only when its every
** entry is the only version of its key, visible and below the bound; the
** rows read through sst_colview_get are the model's; the iterator goes on
** after the block. */
Test(sstfmt, columnar_blocks_are_taken_whole_only_when_they_can_be)
{
  struct model m = {0};
  for (unsigned i = 0; i < 3000; i++) {   /* one version each, but every 700th key twice */
    unsigned nv = i % 700 == 699 ? 2 : 1;
    for (unsigned v = 0; v < nv; v++) {
      struct ent *e = model_push(&m);
      row_key(e, COL_TABLE, (int64_t)i);
      e->seq = 1000 + i * 3 - v;
      e->kind = SST_PUT;
      row_value(e, (int64_t)i, e->seq, 0);
    }
  }
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
  unsigned unique = 0;
  for (uint32_t i = 0; i < r.ncolblocks; i++)
    unique += r.colblocks[i].unique;
  cr_assert(unique > 3 && unique < r.ncolblocks, "%u of %u blocks unique", unique, r.ncolblocks);
  struct sst_projection p = { .table = COL_TABLE, .columns = 3 };   /* columns 0 and 1 */
  for (int pass = 0; pass < 3; pass++) {
    /* pass 0: everything visible; 1: a snapshot below some seqs; 2: a bound */
    uint64_t snap = pass == 1 ? 1000 + 1500 * 3 : UINT64_MAX;
    struct ent bound;
    row_key(&bound, COL_TABLE, 2500);
    struct sst_iter it;
    struct sst_entry e;
    sst_iter_init(&it, &r);
    sst_iter_project(&it, &p, NULL);
    size_t i = 0, taken = 0;
    int rc;
    while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
      cr_assert(e.klen == m.e[i].klen && !memcmp(e.key, m.e[i].key, e.klen), "entry #%zu", i);
      const struct sst_colview *cv;
      const uint8_t *last;
      uint32_t nrows, lastlen;
      int skipped;
      if (!sst_iter_take_block(&it, snap, pass == 2 ? (const uint8_t *)bound.key : NULL, bound.klen, &cv, &nrows,
                               &skipped, &last, &lastlen)) {
        i++;
        continue;
      }
      taken++;
      cr_assert(!skipped, "no filter: nothing skipped");
      for (uint32_t row = 0; row < nrows; row++, i++) {
        const struct ent *w = &m.e[i];
        cr_assert(w->seq <= snap, "a row above the snapshot was handed over");
        cr_assert(i + 1 == m.n || m.e[i + 1].klen != w->klen || memcmp(m.e[i + 1].key, w->key, w->klen) ||
                  row + 1 == nrows, "a block with two versions of a key was handed over");
        unsigned type;
        sochdb_value v0, v1;
        cr_assert_eq(sst_colview_get(cv, 0, row, &type, &v0), SOCHDB_OK, "column 0");
        cr_assert_eq(sst_colview_get(cv, 1, row, &type, &v1), SOCHDB_OK, "column 1");
        sochdb_value pk;
        rowfmt_pk_decode((const uint8_t *)w->key + ROWFMT_PREFIX_LEN, w->klen - ROWFMT_PREFIX_LEN, SOCHDB_INT64, &pk);
        cr_assert(v0.i64 == pk.i64 && v1.i64 == pk.i64 * 3, "row %u of a taken block", row);
        cr_assert_neq(sst_colview_get(cv, 2, row, &type, &v0), SOCHDB_OK, "column 2 was not read");
      }
      cr_assert(lastlen == m.e[i - 1].klen && !memcmp(last, m.e[i - 1].key, lastlen), "the block's last key");
      if (pass == 2)
        cr_assert_lt(memcmp(last, bound.key, bound.klen), 0, "a block reaching the bound was handed over");
    }
    cr_assert_eq(rc, SOCHDB_NOTFOUND, "pass %d: rc %d (%s)", pass, rc, sochdb_last_error());
    cr_assert_eq(i, m.n, "pass %d: every entry, taken or not (%zu of %zu)", pass, i, m.n);
    cr_assert_gt(taken, 2u, "pass %d: blocks were taken (%zu)", pass, taken);
    sst_iter_free(&it);
  }
  sst_close(&r);
  free(buf);
  model_free(&m);
}

/* 3000 rows of one version each, but key `twice` (if not -1) has an older
** version right after its newest: built with 1 KiB blocks and opened. */
static uint8_t *build_rows_one_twice(struct model *m, long twice, struct sst_reader *r)
{
  memset(m, 0, sizeof *m);
  for (long i = 0; i < 3000; i++)
    for (long v = 0; v < (i == twice ? 2 : 1); v++) {
      struct ent *e = model_push(m);
      row_key(e, COL_TABLE, i);
      e->seq = 1000 + (uint64_t)i * 3 - (uint64_t)v;
      e->kind = SST_PUT;
      row_value(e, i, e->seq, 0);
    }
  return build_open(m, 1024, r);
}

/* A columnar block that opens with an older version of the previous block's
** last key is not unique: its entries are not all their keys' newest. */
Test(sstfmt, a_block_that_opens_with_an_older_version_is_not_unique)
{
  struct model m;
  struct sst_reader plain;
  uint8_t *pbuf = build_rows_one_twice(&m, -1, &plain);
  cr_assert_gt(plain.ncolblocks, 4u, "blocks: %u", plain.ncolblocks);
  long last = -1;
  int seen = 0;
  for (uint32_t b = 0; b + 1 < plain.ncolblocks && seen < 3; b++) {
    last += plain.colblocks[b].nrows;   /* block b's last key */
    struct model m2;
    struct sst_reader r;
    uint8_t *buf = build_rows_one_twice(&m2, last, &r);
    if (r.colblocks[b].nrows == plain.colblocks[b].nrows) {   /* the older version opens block b + 1 */
      seen++;
      cr_assert(!r.colblocks[b + 1].unique, "block %u opens with an older version of key %ld yet is unique", b + 1,
                last);
      cr_assert(plain.colblocks[b + 1].unique, "block %u without it is unique", b + 1);
    }
    sst_close(&r);
    free(buf);
    model_free(&m2);
  }
  cr_assert_gt(seen, 0, "no older version landed at the start of a block");
  sst_close(&plain);
  free(pbuf);
  model_free(&m);
}

/* ---- columnar blocks whose keys disagree with their index entry ---------------- */

/* A projected scan at snapshot taking blocks whole where it can: the live
** rows it yields (a key's newest visible version), its end code. */
static int take_scan(const struct sst_reader *r, uint64_t snap, size_t *rows)
{
  struct sst_projection p = { .table = COL_TABLE, .columns = 3 };
  struct sst_iter it;
  struct sst_entry e;
  sst_iter_init(&it, r);
  sst_iter_project(&it, &p, NULL);
  char prev[32];
  size_t plen = 0;
  int rc;
  *rows = 0;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    const struct sst_colview *cv;
    const uint8_t *last;
    uint32_t nrows, lastlen;
    int skipped;
    if (sst_iter_take_block(&it, snap, NULL, 0, &cv, &nrows, &skipped, &last, &lastlen)) {
      *rows += nrows;
      memcpy(prev, last, lastlen);   /* its older versions are passed over, as iter.c does */
      plen = lastlen;
    } else if (e.kind == SST_PUT && e.seq <= snap && !(e.klen == plen && !memcmp(prev, e.key, plen))) {
      (*rows)++;
      memcpy(prev, e.key, e.klen);
      plen = e.klen;
    }
  }
  sst_iter_free(&it);
  return rc;
}

/* Readers rely on a columnar block's index entry: a get and an iterator take
** row n - 1 for the n-th PUT of the keys, and a block taken whole is handed
** over on the strength of unique, max seq, row count and last key. A file
** whose checksums hold but whose index entry says what the block's keys do
** not is CORRUPT: no stale version, row above the snapshot or row of another
** key handed out instead. */
Test(sstfmt, a_columnar_block_whose_keys_disagree_with_its_index_is_not_taken_whole)
{
  struct model m = {0};
  for (unsigned i = 0; i < 600; i++) {   /* random pks: keys segments LZ4 cannot shrink */
    int64_t pk = (int64_t)i * (1ll << 32) + (int64_t)(rng() & 0xffffffffu);
    for (unsigned v = 0; v < (i == 300 ? 2u : 1u); v++) {
      struct ent *e = model_push(&m);
      row_key(e, COL_TABLE, pk);
      e->seq = 1000 + i * 3 - v;
      e->kind = SST_PUT;
      row_value(e, pk, e->seq, 0);
    }
  }
  uint8_t *orig;
  size_t len, ioff, in;
  build(&m, 1024, &orig, &len);
  uint8_t *sealed = sc_index_uncompressed(orig, len, &len, &ioff, &in);
  free(orig);
  orig = sealed;
  uint8_t *buf = malloc(len);
  cr_assert_not_null(buf);
  struct sst_reader r;
  size_t rows;
  uint64_t snap = 1000 + 300 * 3;   /* keys 0..300 visible */
  for (int c = 0; c < 3; c++) {
    memcpy(buf, orig, len);
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open");
    int done = 0;
    for (uint32_t i = 0; i < r.nblocks && !done; i++) {
      if (!r.index[i].col)
        continue;
      const struct sst_colblock *cb = &r.colblocks[r.index[i].col - 1];
      const struct sst_segment *ks = &r.segs[cb->seg];
      uint8_t *d = sc_col_descriptor(buf, ioff, in, r.index[i].offset, r.index[i].size);
      if (c == 0 && !cb->unique) {          /* two versions of a key, said unique */
        d[14] |= 1;
        done = 1;
      } else if (c == 1 && cb->unique && cb->max_seq > snap) {   /* newer entries than it says */
        memset(d + 28, 0, 8);
        done = 1;
      } else if (c == 2 && cb->unique && buf[ks->offset + ks->size - SST_TRAILER_BYTES] == SST_NONE) {
        done = 2;   /* a PUT of the keys segment turned DEL: the keys name a row fewer than the columns hold */
      }
      if (done == 2) {   /* entry 3: shared, unshared, vlen, seq varints, kind, then key bytes */
        size_t at = 0;
        for (int k = 0; k <= 3; k++) {
          uint64_t v[4] = { 0 };
          for (int f = 0; f < 4; f++)
            for (unsigned sh = 0;; sh += 7) {
              uint8_t b = buf[ks->offset + at++];
              v[f] |= (uint64_t)(b & 0x7f) << sh;
              if (!(b & 0x80))
                break;
            }
          if (k == 3)
            buf[ks->offset + at] = SST_DEL;
          at += 1 + v[1] + v[2];
        }
        sst_data_block_seal(buf, &r, i);
      }
    }
    cr_assert(done, "case %d: a block to change", c);
    sst_close(&r);
    sst_block_seal(buf, ioff, (uint32_t)in + SST_TRAILER_BYTES, SST_BLOCK_INDEX);
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "case %d: the checksums hold", c);
    int rc = take_scan(&r, c == 1 ? snap : UINT64_MAX, &rows);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "case %d: a scan ends in %d after %zu rows (%s)", c, rc, rows,
                 c == 0 ? "two versions said unique" : c == 1 ? "max seq too low" : "a row fewer in the keys");
    struct sst_iter it;   /* without a projection: no block taken whole, the same answer */
    struct sst_entry e;
    sst_iter_init(&it, &r);
    while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    }
    sst_iter_free(&it);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "case %d: a plain iteration", c);
    if (c == 2) {   /* a get of a key after the changed one: not the row of the key before it */
      struct sst_scratch s = {0};
      struct sst_get_result res;
      for (size_t k = 5; k < 40; k++)
        cr_assert_eq(sst_get(&r, m.e[k].key, m.e[k].klen, UINT64_MAX, &s, &res), SOCHDB_CORRUPT, "get #%zu", k);
      sst_scratch_free(&s);
    }
    sst_close(&r);
  }
  free(buf);
  free(orig);
  model_free(&m);
}

/* ------------------------------------------------------------ streaming */

struct sink {
  uint8_t *p;
  size_t   n, cap;
  unsigned calls;
  int      fail_at;     /* the call that fails (0 = none) */
};

static int sink_write(void *ctx, const uint8_t *p, size_t n)
{
  struct sink *k = ctx;
  if (++k->calls == (unsigned)k->fail_at)
    return sdb_fail(SOCHDB_IO, "the sink failed on purpose");
  cr_assert_geq(n, (size_t)SST_SPILL_BYTES, "a spill hands at least SST_SPILL_BYTES over (%zu)", n);
  if (k->n + n > k->cap) {
    k->cap = (k->n + n) * 2;
    k->p = realloc(k->p, k->cap);
    cr_assert_not_null(k->p);
  }
  memcpy(k->p + k->n, p, n);
  k->n += n;
  return 0;
}

/* The same entries built whole and streamed through a sink give the same
** file, byte for byte, and the builder never held much of it. */
static void check_spill_identical(const struct model *m)
{
  uint8_t *whole, *tail;
  size_t wlen, tlen;
  build(m, 0, &whole, &wlen);
  cr_assert_gt(wlen, 4u * SST_SPILL_BYTES, "the table (%zu bytes) is several spills long", wlen);
  struct sink k = { 0 };
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, 0), SOCHDB_OK);
  sst_builder_spill(&b, sink_write, &k);
  size_t most_held = 0;
  for (size_t i = 0; i < m->n; i++) {
    const struct ent *e = &m->e[i];
    cr_assert_eq(sst_builder_add(&b, e->key, e->klen, e->seq, e->kind, e->val, e->vlen), SOCHDB_OK);
    most_held = b.out_n > most_held ? b.out_n : most_held;
  }
  cr_assert_eq(sst_builder_finish(&b, &tail, &tlen), SOCHDB_OK, "finish: %s", sochdb_last_error());
  cr_assert_eq(b.spilled, k.n, "spilled counts what the sink got");
  sst_builder_free(&b);
  cr_assert_gt(k.calls, 3u, "spilled %u times", k.calls);
  cr_assert_lt(most_held, 2u * SST_SPILL_BYTES, "the builder held at most %zu bytes of the file", most_held);
  cr_assert_eq(k.n + tlen, wlen, "streamed %zu + %zu bytes, whole %zu", k.n, tlen, wlen);
  cr_assert(memcmp(k.p, whole, k.n) == 0 && memcmp(tail, whole + k.n, tlen) == 0, "the streamed file differs");
  free(whole);
  free(tail);
  free(k.p);
}

Test(sstfmt, streamed_file_is_the_same_file)
{
  struct model m = {0};
  make_model(&m, 40000, 3, 300, 0);
  check_spill_identical(&m);
  model_free(&m);
  struct model c = {0};
  make_columnar_model(&c, 400000, 2);
  check_spill_identical(&c);
  model_free(&c);
}

/* A sink that fails fails the builder, for good, with its error. */
Test(sstfmt, failed_spill_fails_the_builder)
{
  struct model m = {0};
  make_model(&m, 60000, 1, 200, 0);
  struct sink k = { .fail_at = 2 };
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, 0), SOCHDB_OK);
  sst_builder_spill(&b, sink_write, &k);
  int rc = SOCHDB_OK;
  size_t i = 0;
  for (; i < m.n && rc == SOCHDB_OK; i++)
    rc = sst_builder_add(&b, m.e[i].key, m.e[i].klen, m.e[i].seq, m.e[i].kind, m.e[i].val, m.e[i].vlen);
  cr_assert_eq(rc, SOCHDB_IO, "the sink's error comes back (%s)", sochdb_strerror(rc));
  cr_assert_eq(sst_builder_add(&b, "zz", 2, 1, SST_PUT, "v", 1), SOCHDB_IO, "and stays");
  uint8_t *tail;
  size_t tlen;
  cr_assert_eq(sst_builder_finish(&b, &tail, &tlen), SOCHDB_IO, "finish refuses too");
  sst_builder_free(&b);
  free(k.p);
  model_free(&m);
}

/* load_data describes a plain block from the reader's trusted bit only once
** the block passed every check: such a block reads the second time as the
** first, and one whose restart count is forged (its checksum resealed) is
** corrupt on every read, not only the first. */
Test(sstfmt, a_block_is_trusted_only_after_its_checks_passed)
{
  struct model m = {0};
  make_model(&m, 200, 1, 200, 0);   /* random values: blocks stored uncompressed */
  uint8_t *buf;
  size_t len;
  build(&m, 1024, &buf, &len);
  struct sst_reader r;
  struct sst_scratch s = {0};
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK);
  cr_assert_gt(r.nblocks, 1u);
  uint64_t off = r.index[0].offset;
  uint32_t size = r.index[0].size;
  cr_assert_eq(buf[off + size - SST_TRAILER_BYTES], SST_NONE, "block 0 is stored uncompressed");
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < m.n; i++)
      check_get(&r, &s, &m.e[i], &m.e[i], m.e[i].seq, 0);
  cr_assert(atomic_load(&r.trusted[0]) & 1, "block 0 trusted after a clean read");
  sst_close(&r);

  uint8_t *count = buf + off + size - SST_TRAILER_BYTES - 4;
  uint32_t was;
  memcpy(&was, count, 4);
  uint32_t forged = (was & 0x80000000u) | 0x0fffffffu;   /* the hash-index flag kept; more restarts than fit */
  memcpy(count, &forged, 4);
  sst_block_seal(buf, off, size, SST_BLOCK_DATA);
  cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK);
  for (int pass = 0; pass < 2; pass++)
    cr_assert_eq(check_get(&r, &s, &m.e[0], &m.e[0], m.e[0].seq, 1), SOCHDB_CORRUPT, "read %d of the forged block",
                 pass + 1);
  cr_assert_eq(atomic_load(&r.trusted[0]) & 1, 0u, "a block that failed its checks is not trusted");
  sst_close(&r);
  sst_scratch_free(&s);
  free(buf);
  model_free(&m);
}
