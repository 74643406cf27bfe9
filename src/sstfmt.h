/*
** sstfmt.h — the SSTable on-disk format: an immutable, sorted file of
** versioned entries; building one in memory and reading it back from a
** caller-owned buffer (typically an mmap of the file).
**
** An entry is (user key 1..SOCHDB_MAX_KEY bytes, seq u64, kind PUT/DEL,
** value 0..SOCHDB_MAX_VALUE bytes; a DEL has an empty value). Entries are
** ordered by "internal key": user key ascending (memcmp, then the shorter
** first), then seq descending, so the newest version of a key comes first.
** One key may have several versions, and they may span data blocks.
**
**   file:    [ data block | data block | ... | filter block | index block | footer 64 B ]
**   block:   [ payload | trailer 16 B ]
**   trailer: [ compression u8 (0 none, 1 lz4) | 0 u8 x3 | uncompressed bytes u32 | xxh3 u64 ]
**
** A block's checksum is XXH3 of its stored (possibly compressed) payload,
** seeded with XXH3 of the trailer's first 8 bytes, itself seeded with a
** per-use seed (data, filter, index) XOR the block's file offset. So the
** compression byte and the length are covered too, and a block copied to
** another place or used for another purpose does not verify. LZ4 is used only
** when it saves at least 1/8 of the payload; an uncompressed block's length
** field equals its payload size.
**
** Data block payload (also the index block's, which is built the same way):
**   [ entry | entry | ... | restart offset u32 x n | n u32 ]
**   entry:   [ shared varint | unshared varint | value bytes varint | seq varint | kind u8 |
**              unshared key bytes | value ]
** "shared" is the number of leading key bytes shared with the previous entry;
** every 16th entry is a restart point with shared = 0, and the restart
** offsets (ascending, the first 0) point at them. Varints are LEB128.
** An empty payload (no entries) is just n = 0; only an empty table's index is.
**
** Filter block payload (never compressed):
**   [ bloom bits, nbytes*8 of them | k u8 ]
** over the distinct user keys, 10 bits per key (at least 64 bits), k = 7,
** double hashing: h = XXH3_64bits_withSeed(key, SEED), h1 = low 32 bits,
** h2 = high 32 bits, bit i = (h1 + i*h2) mod nbits for i in 0..k-1.
**
** Index block: one entry per data block, in file order: key = the block's
** last user key, seq = that entry's seq, kind PUT, value = [ offset u64 |
** stored size u32 ] (the stored size includes the trailer). Data blocks are
** contiguous from offset 0 to the filter block.
**
** Footer (64 bytes, every field naturally aligned):
**    0  magic "SOCHSST" NUL   8 B
**    8  version u32           (SST_VERSION)
**   12  entry count u32       (a table holds at most UINT32_MAX entries)
**   16  filter offset u64
**   24  index offset u64
**   32  filter stored size u32
**   36  index stored size u32
**   40  min seq u64           (0 for an empty table)
**   48  max seq u64
**   56  xxh3 u64 of the 56 bytes before it
** The filter block starts where the last data block ends,
** the index block follows it and the footer follows the index; a reader
** checks this.
**
** Everything is little-endian.
**
** Block cache: a reader may be given a cache of decompressed data blocks
** (sst_set_cache; in the engine, the shared block cache keyed by the table's
** file number and the block's offset). Only LZ4-compressed data blocks go
** through it, and a block is inserted only after its checksum was verified,
** it decompressed to exactly its trailer's length and its restart array
** parsed; so a hit is trusted without re-verifying the checksum (its entries
** are still bounds-checked as they are decoded). Uncompressed blocks are read
** in place, never copied or cached.
*/
#ifndef SOCHDB_SSTFMT_H
#define SOCHDB_SSTFMT_H

#include <stddef.h>
#include <stdint.h>

#include "sochdb.h"

#define SST_VERSION          1u
#define SST_FOOTER_BYTES     64u
#define SST_TRAILER_BYTES    16u
#define SST_RESTART_INTERVAL 16u
/* 12 KiB: a block closes once its payload passes this, so with entries of
** up to ~4 KiB it stays within one block-cache entry (BC_BLOCK_MAX, 16 KiB,
** shm/blockcache.h), which it then fills to three quarters or more. */
#define SST_BLOCK_DEFAULT    12288u
#define SST_BLOCK_MIN        1024u
#define SST_BLOCK_MAX        65536u
#define SST_BLOOM_BITS       10u
#define SST_BLOOM_K          7u

enum sst_kind { SST_PUT = 1, SST_DEL = 2 };
enum sst_compression { SST_NONE = 0, SST_LZ4 = 1 };

/* ---- writing ------------------------------------------------------------ */

/* A block being built (data or index); internal to the builder. */
struct sst_blockbuf {
  uint8_t  *p;
  size_t    n, cap;
  uint32_t *restarts;
  size_t    nrestarts, rcap;
  unsigned  since_restart;
  uint8_t   last_key[SOCHDB_MAX_KEY];
  size_t    last_klen;
  uint64_t  last_seq;
  size_t    entries;
};

struct sst_builder {
  size_t              block_bytes;
  int                 failed;         /* a SOCHDB_NOMEM happened: every later call fails */
  uint8_t            *out;            /* the file so far */
  size_t              out_n, out_cap;
  struct sst_blockbuf data, index;
  uint64_t           *hashes;         /* bloom hash of each distinct user key */
  size_t              nhashes, hcap;
  uint64_t            entries, min_seq, max_seq;
};

/* Start a table whose data blocks aim at block_bytes of payload (0 means
** SST_BLOCK_DEFAULT). Allocates nothing. SOCHDB_OK, or SOCHDB_INVALID if
** block_bytes is outside SST_BLOCK_MIN..SST_BLOCK_MAX (b is then unusable
** but sst_builder_free on it is safe). */
int  sst_builder_init(struct sst_builder *b, size_t block_bytes);

/* Append one entry; key and val are copied. Entries must come in internal-key
** order (see above): a key below the previous one, or an equal key with a seq
** not below the previous one, is refused.
** Errors: SOCHDB_INVALID (NULL key, klen 0 or above SOCHDB_MAX_KEY, vlen above
**   SOCHDB_MAX_VALUE, NULL val with vlen > 0, kind not SST_PUT/SST_DEL, a DEL
**   with a value, out of order, more than UINT32_MAX entries): nothing was
**   added and the builder can go on. SOCHDB_NOMEM: the builder is failed. */
int  sst_builder_add(struct sst_builder *b, const void *key, size_t klen, uint64_t seq, unsigned kind,
                     const void *val, size_t vlen);

/* Write the last data block, the filter, the index and the footer, and hand
** the whole file over: *buf (malloc'ed, the caller frees it) of *len bytes.
** The builder keeps nothing; call sst_builder_free after it either way.
** Errors: SOCHDB_NOMEM (also if an earlier add failed so), SOCHDB_INVALID
**   (finish called twice). */
int  sst_builder_finish(struct sst_builder *b, uint8_t **buf, size_t *len);

/* Free what the builder holds (not a buffer handed over by finish). */
void sst_builder_free(struct sst_builder *b);

/* ---- reading ------------------------------------------------------------ */

/* A growable buffer for decompressed blocks, owned by the caller; start it
** zeroed ({0}) and free it with sst_scratch_free. Not shared between threads. */
struct sst_scratch {
  uint8_t *p;
  size_t   cap;
};
void sst_scratch_free(struct sst_scratch *s);

struct sst_index_entry {
  uint64_t offset;       /* of the data block */
  uint32_t size;         /* stored, with its trailer */
  uint32_t klen;         /* the block's last key: keys + key_off */
  size_t   key_off;
  uint64_t seq;          /* ... and its seq */
};

/* A cache of decompressed data blocks, keyed by the block's file offset
** (ctx says which table). lookup copies the block into dst (cap bytes) and
** returns 1 with *len set, or returns 0; insert stores a copy of data[0..len)
** (or ignores it). Both may be called from several threads at once. */
struct sst_block_cache {
  int  (*lookup)(void *ctx, uint64_t block_offset, uint8_t *dst, size_t cap, size_t *len);
  void (*insert)(void *ctx, uint64_t block_offset, const uint8_t *data, size_t len);
  void *ctx;
};

/* An open table. It points into the caller's buffer, which must stay mapped
** and unchanged until sst_close. Read-only after sst_open (and sst_set_cache):
** several threads may read one reader at once, each with its own scratch and
** iterators. */
struct sst_reader {
  const uint8_t          *buf;
  size_t                  len;
  uint64_t                data_end;   /* = filter offset */
  const uint8_t          *bloom;      /* into buf */
  uint64_t                bloom_bits;
  unsigned                bloom_k;
  uint32_t                nblocks;
  struct sst_index_entry *index;      /* malloc'ed */
  uint8_t                *keys;       /* malloc'ed: the index's keys */
  uint64_t                entries, min_seq, max_seq;
  struct sst_block_cache  cache;      /* lookup/insert NULL: none */
};

/* Open the table in buf[0..len): verify the footer, the filter block's and
** the index block's checksums, and parse and check the index (block handles
** contiguous and in bounds, last keys in order). Data blocks are verified
** when read. On success the reader owns two allocations (sst_close).
** Errors: SOCHDB_CORRUPT (damaged or truncated), SOCHDB_VERSION (a footer of
**   another format version), SOCHDB_INVALID (NULL argument), SOCHDB_NOMEM. */
int  sst_open(const uint8_t *buf, size_t len, struct sst_reader *r);
void sst_close(struct sst_reader *r);

/* Use c (NULL = none; copied) for this reader's LZ4-compressed data blocks: a
** hit skips the checksum and decompression (the block was verified when it
** was inserted); a hit whose length is not the trailer's uncompressed size is
** ignored (a miss). A miss verifies, decompresses and inserts. Uncompressed
** blocks are read in place (zero copy) and never cached. Call it before
** sharing the reader between threads. sst_open leaves the reader without. */
void sst_set_cache(struct sst_reader *r, const struct sst_block_cache *c);

/* 0 if the bloom filter says key is certainly absent, 1 if it may be present. */
int  sst_may_contain(const struct sst_reader *r, const void *key, size_t klen);

/* Recompute the checksum of the block stored at file[offset..offset+size)
** after changing its bytes (its trailer included): for tests and repair
** tools. which: what the block is, for its seed. */
enum sst_block_type { SST_BLOCK_DATA, SST_BLOCK_FILTER, SST_BLOCK_INDEX };
void sst_block_seal(uint8_t *file, uint64_t offset, uint32_t size, enum sst_block_type which);

/* Recompute the checksum of a footer (the last SST_FOOTER_BYTES of a file)
** after changing a field: for tests and repair tools. */
void sst_footer_seal(uint8_t *footer);

struct sst_get_result {
  int            found;      /* 1 if a version with seq <= snapshot exists */
  int            tombstone;  /* found and that version is a DEL */
  const uint8_t *val;        /* a PUT's value: into buf or the scratch */
  uint32_t       vlen;
  uint64_t       seq;        /* the version's seq */
};

/* The newest version of key with seq <= snapshot. The bloom filter is checked
** first; then one data block is read (its checksum verified every time,
** unless it comes from the reader's block cache: see sst_set_cache).
** res->val points into the reader's buffer when the block is stored
** uncompressed (valid as long as it), otherwise into scratch (valid until the
** next call with that scratch). Absent: SOCHDB_OK with res->found = 0.
** Errors: SOCHDB_INVALID (NULL argument, bad klen), SOCHDB_CORRUPT,
**   SOCHDB_NOMEM (growing scratch). */
int  sst_get(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
             struct sst_scratch *scratch, struct sst_get_result *res);

/* ---- iterating ----------------------------------------------------------- */

struct sst_entry {
  const uint8_t *key;        /* into the iterator: valid until its next call */
  uint32_t       klen;
  uint64_t       seq;
  unsigned       kind;
  const uint8_t *val;        /* into buf or the iterator's scratch: same validity */
  uint32_t       vlen;
};

/* Internal cursor over one decoded block. */
struct sst_blk {
  const uint8_t *p;          /* the payload's entries */
  size_t         ents;       /* their bytes */
  const uint8_t *restarts;   /* nrestarts u32 */
  uint32_t       nrestarts;
};
struct sst_cursor {
  struct sst_blk blk;
  size_t         pos;        /* of the next entry */
  uint32_t       next_restart;
  uint8_t        key[SOCHDB_MAX_KEY];
  size_t         klen;
  uint64_t       seq;
  unsigned       kind;
  const uint8_t *val;
  uint32_t       vlen;
};

struct sst_iter {
  const struct sst_reader *r;
  struct sst_scratch       scratch;
  int                      started;    /* seek or next was called */
  uint32_t                 block;      /* the block in cur; nblocks when done */
  int                      loaded;     /* cur holds block */
  int                      pending;    /* cur's entry is yet to be returned */
  struct sst_cursor        cur;
};

/* Position it before the table's first entry. Allocates nothing yet. */
void sst_iter_init(struct sst_iter *it, const struct sst_reader *r);
/* Position it before the first entry whose user key is >= key (all its
** versions follow); key NULL = the first entry. Errors: SOCHDB_INVALID (bad
** klen), SOCHDB_CORRUPT, SOCHDB_NOMEM. */
int  sst_iter_seek(struct sst_iter *it, const void *key, size_t klen);
/* The next entry: SOCHDB_OK with *e filled, SOCHDB_NOTFOUND at the end, or
** SOCHDB_CORRUPT / SOCHDB_NOMEM (the iterator is then at its end). */
int  sst_iter_next(struct sst_iter *it, struct sst_entry *e);
void sst_iter_free(struct sst_iter *it);

#endif
