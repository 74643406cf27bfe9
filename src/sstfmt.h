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
** Hashed data blocks (version 3). A plain data block may end in a hash index
** of its keys instead, marked by the top bit of its last word:
**   [ entries | restart offset u32 x n | slot offset u16 x m | slot tag u8 x m |
**     m u16 | n | 0x80000000 u32 ]
** Every key's first entry in the block is then stored whole (shared = 0), so
** that it decodes where it stands; its later versions may still share the
** key. Each key has one slot, found by linear probing (the slot after m - 1
** is 0) from slot (((h >> 16) & 0xffffffff) * m) >> 32, where h is the key's
** bloom hash (below); the slot holds the offset of the key's first entry in
** the block and the tag h & 0xff, or 1 where that is 0. A slot with tag 0 is
** empty, and m > the keys of the block, so every probe meets one. A point
** read finds its key's entry without decoding the entries before it; a key
** absent from the block meets an empty slot, almost always after comparing
** no entry (tags differ). A block has a hash index only while its entries
** start below 64 KiB (they always do: a block is cut once it reaches
** SST_BLOCK_MAX); m is 1.5 x its keys, rounded up, plus one.
**
** Filter block payload (never compressed):
**   [ bloom bits, nbytes*8 of them | k u8 ]
** over the distinct user keys, 10 bits per key (at least 64 bits), k = 7,
** double hashing: h = XXH3_64bits_withSeed(key, SEED), h1 = low 32 bits,
** h2 = high 32 bits, bit i = (h1 + i*h2) mod nbits for i in 0..k-1.
** In a version-3 file the filter is blocked instead, each key's k bits in
** one 64-byte line, so that a lookup reads one cache line, not k:
**   [ 0 u8 x pad | lines, 64 B each | k u8 | pad u8 ]
** pad (< 64) puts the first line at a file offset that is a multiple of 64,
** which an mmap keeps. The key with hash h sets, in line ((h & 0xffffffff) *
** nlines) >> 32, the bits g >> 23 for g = h >> 32, then g * 0x9e3779b9 (mod
** 2^32), and so on k times; nlines = ceil(keys * 10 / 512), at least 1.
**
** Index block: one entry per data block, in file order: key = the block's
** last user key, seq = that entry's seq, kind PUT, value = [ offset u64 |
** stored size u32 ] (the stored size includes the trailer; a columnar
** block's value is longer, see below). Data blocks are contiguous from
** offset 0 to the filter block.
**
** In a version-4 file the index block is instead laid out as a reader
** searches it, so that every process reads it in place from its mapping of
** the file (shared page cache) instead of decoding a private copy, which
** cost each process about 70 bytes of heap per 4 KiB data block (a client
** reading 1 GB of values carried 25 MiB of it). Never compressed:
**   [ nblocks u32 | key_shared u32 | keys bytes u64 | pad u32 | 0 u32 |
**     0 u8 x pad | probe x (nblocks + 1) | entry x nblocks | keys ]
**   probe (struct sst_probe, 16 B): the block's last key's 8 bytes after
**     key_shared, big-endian, zero-padded | offset << 1 (columnar: never
**     set in version 4); the extra last probe is [ 0 | filter offset << 1 ]
**   entry (struct sst_index_entry, 40 B): offset u64 | stored size u32 |
**     last key's length u32 | its offset in keys u64 | its seq u64 | 0 u32 |
**     0 u32
**   key_shared: the bytes the first and last keys have in common (so every
**     key has them); pad (< 8) puts the probes at a file offset that is a
**     multiple of 8, which an mmap keeps.
** sst_open checks all of it against what it would have computed from the
** entries (blocks contiguous and in bounds, keys in order and in bounds,
** probes and key_shared as derived), so a damaged index whose checksum
** still holds is refused, not trusted.
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
** Versions. The builder writes a file without columnar blocks as version 4:
** the index laid out for searching in place (above), the blocked filter,
** data blocks hashed or not (hash_blocks). A file with columnar blocks is
** version 3 if it also has a hashed data block, else version 2. Versions 1
** (no columnar block, no hashed block, the classic filter: what the first
** format wrote) and 3 without columnar blocks are what earlier builds wrote
** and are still read. Version 3 and 4 mean the blocked filter (below); a
** reader cannot tell at open whether a block is hashed, so it does not
** require one. Older builds refuse a version they do not know with
** SOCHDB_VERSION instead of misreading it. A reader accepts all four; it
** refuses any other number and a version-2 file without a columnar block
** (SOCHDB_VERSION: the footer does not match the content), and reads a
** columnar index entry in a version-1 file, and a hashed block in a
** version-1 or -2 file, as the malformed things they are there
** (SOCHDB_CORRUPT).
**
** Columnar data blocks (version 2; docs/columnar.md). The rows of one table
** (keys FF FF 01 + table id + primary key whose value parses as a row,
** src/rowfmt.h; and their tombstones) that come one after the other are cut
** into blocks of their own, stored column by column:
**   block:   [ keys segment | column 0 segment | ... | column n-1 segment ]
**   segment: [ payload | trailer 16 B ]   (a trailer as above)
** Each segment is LZ4-compressed when that pays, and checksummed on its own:
** XXH3 seeded like a block's, with SEED_SEGMENT + its index (0 = keys, 1 +
** j = column j) as the per-use seed and the BLOCK's offset as the offset.
** There is no trailer for the block as a whole: the index describes it.
**   keys segment payload: a data block payload whose every entry has an
**     empty value (value bytes 0); the PUT entries are the block's rows, in
**     order: row r is the r-th PUT.
**   column segment payload, for nrows rows:
**     [ null bitmap ceil(nrows/8) B (bit r set: NULL, or the row has no such
**       column) | int64/double: 8 B x nrows (0 for a NULL) |
**       bytes/string: end offset u32 x nrows, then the bytes of every row ]
** A column's type is the row encoding's type tag; all rows of a block agree
** on the type of each column (a row that disagrees starts a new block). A
** block's column count is the largest of its rows'. A reader reassembles a
** row by taking each column's value at the row's position, so a row with
** fewer columns reads back with NULL in the missing ones.
** Its index entry's value is longer than a plain block's 12 bytes:
**    0  offset u64 | 8 stored size u32 (all segments)
**   12  format u8 = 1 | 13 ncols u8 (at most SST_MAX_COLUMNS) |
**   14  flags u8 (bit 0 "unique": every entry is a PUT of a key that has no
**       other entry in the block) | 15 0 u8 | 16 table u32 |
**   20  nrows u32 (PUT entries) | 24 keys segment stored size u32 |
**   28  max seq u64 (of the block's entries)
**   36  per column, 22 B: type u8 | flags u8 (bit 0: min/max valid) |
**       segment stored size u32 | min u64 | max u64
** Segments follow one another from the block's offset, in that order, and
** their sizes add up to the block's. min/max are the column's smallest and
** largest non-NULL values (int64, or a double's bits), valid only for int64
** and double columns without NaN: a filtered scan skips the column segments
** of a block whose min/max exclude its filter.
**
** Block cache: a reader may be given a cache of decompressed data blocks
** (sst_set_cache; in the engine, the shared block cache keyed by the table's
** file number and the block's offset). Only LZ4-compressed data blocks go
** through it, and a block is inserted only after its checksum was verified,
** it decompressed to exactly its trailer's length and its restart array
** parsed; so a hit is trusted without re-verifying the checksum (its entries
** are still bounds-checked as they are decoded). Uncompressed blocks are read
** in place, never copied or cached. Segments of columnar blocks are cached
** the same way, one entry each, keyed by the segment's own file offset, after
** their structure was checked (restart array, or column layout).
*/
#ifndef SOCHDB_SSTFMT_H
#define SOCHDB_SSTFMT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bytes.h"
#include "rowfmt.h"
#include "sochdb.h"

#define SST_VERSION          4u   /* without columnar blocks: the index searched in place; see Versions above */
#define SST_VERSION_HASHED   3u   /* with hashed data blocks (and columnar ones, now) */
#define SST_VERSION_COLUMNAR 2u   /* with columnar blocks, without hashed ones */
#define SST_VERSION_KV       1u   /* with neither */
#define SST_MAX_COLUMNS      64u  /* columns of a columnar block */
#define SST_FOOTER_BYTES     64u
#define SST_TRAILER_BYTES    16u
#define SST_RESTART_INTERVAL 16u
/* 4 KiB. A point read verifies the checksum of the whole block it reads
** (uncompressed blocks are read in place, not cached), so bigger blocks cost
** every get: 12 KiB halved random reads in sochdb-bench read_sst. The block
** cache's small tier (shm/blockcache.h) has entries of 4608 bytes for them. */
#define SST_BLOCK_DEFAULT    4096u
/* What a columnar block aims at by default: 48 KiB of rows. */
#define SST_COLUMNAR_DEFAULT 49152u
#define SST_BLOCK_MIN        1024u
#define SST_BLOCK_MAX        65536u
/* The most plain data blocks stored without trying LZ4 after blocks that did
** not compress: incompressible values cost LZ4 one block in 65 instead of
** every block (it was the daemon's largest cost while flushing them; at one
** in 17 it was still 7% of building a table of random 100-byte values), and
** values that turn compressible are stored raw for at most this many
** (256 KiB of 4 KiB blocks). */
#define SST_LZ4_SKIP_MAX     64u
#define SST_BLOOM_BITS       10u
#define SST_BLOOM_K          7u

/* SST_SKIP: only from an iterator with a projection (sst_iter_project): a
** row version that fails the projection's filter. It hides older versions
** like a tombstone would, from that scan's point of view. */
enum sst_kind { SST_PUT = 1, SST_DEL = 2, SST_SKIP = 3 };
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
  int       hashed;          /* the block gets a key hash index (a plain data block) */
  struct sst_keystart {      /* ... and where each of its keys starts */
    uint32_t off;
    uint64_t hash;
  }        *keys;
  size_t    nkeys, kcap;
};

/* One column of the columnar block being built; internal to the builder. */
struct sst_colbuf {
  uint8_t *nulls, *fixed, *data;    /* bitmap; 8 B values or u32 end offsets; bytes */
  size_t   nulls_cap, fixed_n, fixed_cap, data_n, data_cap;
  int      any, nan;                /* a non-NULL value was seen; a NaN was */
  int64_t  imin, imax;
  double   dmin, dmax;
};

struct sst_builder {
  size_t              block_bytes;
  size_t              col_block_bytes;   /* what a columnar block aims at */
  int                 failed;         /* SOCHDB_NOMEM, or a spill's error: every later call fails with it */
  uint8_t            *out;            /* the file so far (after what was spilled) */
  size_t              out_n, out_cap;
  int               (*spill)(void *ctx, const uint8_t *p, size_t n);   /* sst_builder_spill */
  void               *spill_ctx;
  uint64_t            spilled;        /* bytes of the file handed to spill, no longer in out */
  struct sst_blockbuf data, index;
  uint64_t           *hashes;         /* bloom hash of each distinct user key */
  size_t              nhashes, hcap;
  uint64_t            entries, min_seq, max_seq;
  /* the data block being built, when it is columnar */
  int                 columnar;
  uint32_t            col_table;      /* whose rows it holds */
  unsigned            col_n;          /* its columns so far */
  uint32_t            col_rows;       /* its PUT entries */
  size_t              col_bytes;      /* bytes in the column buffers */
  int                 col_unique;     /* every entry so far a PUT of a key of its own */
  uint64_t            col_max_seq;    /* the largest seq so far */
  uint8_t             col_types[SST_MAX_COLUMNS];
  struct sst_colbuf  *cols;           /* SST_MAX_COLUMNS, allocated with the first columnar block */
  uint8_t            *seg;            /* a segment's payload being assembled */
  size_t              seg_cap;
  int                 any_columnar;   /* the file has a columnar block */
  int                 hash_blocks;    /* plain data blocks get a hash index (the default) */
  int                 lz4_data;       /* plain data blocks may be LZ4-compressed (the default); 0: every one
                                      ** is stored as it is, and read in place from the mapping */
  int                 any_hashed;     /* ... and one did */
  int                 legacy_index;   /* write what builds before version 4 wrote (version 3 if a block is
                                      ** hashed, else 1 or 2): for tests that read older files */
  /* Plain data blocks that LZ4 could not shrink by an eighth make the next
  ** ones skip it: 1, 2, 4, ... SST_LZ4_SKIP_MAX blocks, until one shrinks. */
  unsigned            lz4_backoff, lz4_skip_left;
};

/* Start a table whose data blocks aim at block_bytes of payload (0 means
** SST_BLOCK_DEFAULT), its columnar blocks at 4 x block_bytes (0 means
** SST_COLUMNAR_DEFAULT), at most SST_BLOCK_MAX. Allocates nothing. SOCHDB_OK, or SOCHDB_INVALID if
** block_bytes is outside SST_BLOCK_MIN..SST_BLOCK_MAX (b is then unusable
** but sst_builder_free on it is safe). */
int  sst_builder_init(struct sst_builder *b, size_t block_bytes);

/* Append one entry; key and val are copied. Entries must come in internal-key
** order (see above): a key below the previous one, or an equal key with a seq
** not below the previous one, is refused. A row of a table (see the columnar
** blocks above) goes into a columnar block; any other entry into a plain one;
** a block is cut wherever the kind changes. Columnar blocks aim at four times
** block_bytes (at most SST_BLOCK_MAX), so that each column segment is big
** enough to compress.
** Errors: SOCHDB_INVALID (NULL key, klen 0 or above SOCHDB_MAX_KEY, vlen above
**   SOCHDB_MAX_VALUE, NULL val with vlen > 0, kind not SST_PUT/SST_DEL, a DEL
**   with a value, out of order, more than UINT32_MAX entries): nothing was
**   added and the builder can go on. SOCHDB_NOMEM: the builder is failed. */
int  sst_builder_add(struct sst_builder *b, const void *key, size_t klen, uint64_t seq, unsigned kind,
                     const void *val, size_t vlen);

/* Stream the file instead of holding it: whenever a data block ends and at
** least SST_SPILL_BYTES are held, they are handed to spill (which writes them
** at the file's end; a non-zero return fails the builder with that code), so
** a builder holds about that much of the file whatever its size. Call before
** the first add. */
#define SST_SPILL_BYTES (1u << 20)
void sst_builder_spill(struct sst_builder *b, int (*spill)(void *ctx, const uint8_t *p, size_t n), void *ctx);

/* Write the last data block, the filter, the index and the footer, and hand
** the whole file over: *buf (malloc'ed, the caller frees it) of *len bytes;
** with a spill, the file's end that was not spilled (the file is then
** b->spilled + *len bytes). The builder keeps nothing else; call
** sst_builder_free after it either way.
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

struct sst_index_entry {  /* also the layout of a version-4 file's entries */
  uint64_t offset;       /* of the data block */
  uint32_t size;         /* stored, with its trailer */
  uint32_t klen;         /* the block's last key: keys + key_off */
  uint64_t key_off;
  uint64_t seq;          /* ... and its seq */
  uint32_t col;          /* 0: a plain block; else 1 + its index in colblocks */
  uint32_t zero;         /* padding, 0 in a file */
};

/* A segment of a columnar block, as the index describes it. */
struct sst_segment {
  uint64_t offset;       /* in the file */
  uint32_t size;         /* stored, with its trailer */
  uint8_t  type;         /* column type (0 for the keys segment) */
  uint8_t  has_minmax;
  uint64_t min, max;     /* int64 or a double's bits */
};

struct sst_colblock {    /* a columnar block */
  uint32_t table;
  uint32_t nrows;        /* PUT entries */
  uint32_t ncols;
  uint32_t seg;          /* its keys segment in segs[]; its columns follow */
  int      unique;       /* every entry is a PUT of a key of its own (nrows entries) */
  uint64_t max_seq;      /* the largest seq of its entries */
};

/* What reading cost, added up by an iterator with a projection. */
struct sst_read_stats {
  uint64_t blocks_read;        /* data blocks whose entries were read */
  uint64_t blocks_skipped;     /* ... of them columnar, whose column segments min/max let it skip */
  uint64_t blocks_direct;      /* ... of them columnar, handed over whole (sst_iter_take_block) */
  uint64_t bytes_read;         /* stored bytes of the blocks and segments read (file or cache) */
  uint64_t bytes_decompressed; /* bytes produced by LZ4 */
};

/* Which columns of one table's rows an iterator reads, and an optional
** filter it evaluates on them (rowfmt.h). Columnar blocks of `table` are
** read partially, those of other tables not at all but for their keys
** (sst_iter_project); plain blocks are read whole. */
struct sst_projection {
  uint32_t table;
  uint64_t columns;            /* bit j: column j is wanted */
  int      filtered;           /* f applies */
  struct rowfmt_filter f;
};

/* Internal-key order: user key ascending (key_order), then seq descending. */
static inline int sst_ikey_order(const uint8_t *a, size_t al, uint64_t aseq, const uint8_t *b, size_t bl,
                                 uint64_t bseq)
{
  int c = key_order(a, al, b, bl);
  return c ? c : (aseq < bseq) - (aseq > bseq);
}

/* A cached block being read piecemeal (sst_block_cache's peek): copy puts
** bytes [from, to) of the block, clipped to its length, at the same place
** in the buffer the peek was given (and may write up to 7 bytes before from
** with the block's). */
struct sst_block_src {
  void (*copy)(const struct sst_block_src *src, size_t from, size_t to);
};

/* What a peek runs on a cached block of len bytes: its result, or -1. */
typedef int (*sst_block_reader)(void *arg, const struct sst_block_src *src, size_t len);

/* A cache of decompressed data blocks, keyed by the block's file offset
** (ctx says which table). lookup copies the block into dst (cap bytes) and
** returns 1 with *len set, or returns 0; insert stores a copy of data[0..len)
** (or ignores it). peek (optional: NULL, and point reads copy whole blocks
** through lookup) runs read(arg, src, len) on the block if it is cached and
** no longer than cap, src copying ranges of it into dst, and returns 1 with
** read's result in *read_rc if the cached block did not change while read
** ran; else 0 (not cached, or changed: what read saw may have been torn,
** and it must have bounds-checked every byte it read). prefetch (optional)
** asks the CPU for the last bytes of the block if it is cached, which a
** peek reads first. All may be called from several threads at once. */
struct sst_block_cache {
  int  (*lookup)(void *ctx, uint64_t block_offset, uint8_t *dst, size_t cap, size_t *len);
  void (*insert)(void *ctx, uint64_t block_offset, const uint8_t *data, size_t len);
  int  (*peek)(void *ctx, uint64_t block_offset, uint8_t *dst, size_t cap, sst_block_reader read, void *arg,
               int *read_rc);
  void (*prefetch)(void *ctx, uint64_t block_offset, size_t bytes);
  void *ctx;
};

/* What a point read needs of data block i, in one 16-byte entry: find_block
** searches pfx, and the entry it stops at (and the next one's where, often
** on the same cache line) locate the block without reading its index entry.
** The extra entry at nblocks holds where the data blocks end. */
struct sst_probe {
  uint64_t pfx;          /* the block's last key's 8 bytes after key_shared, big-endian, zero-padded */
  uint64_t where;        /* the block's offset << 1, | 1 if it is columnar; its size is the next where's
                         ** offset less its own (sst_open checked that blocks are contiguous) */
};

/* An open table. It points into the caller's buffer, which must stay mapped
** and unchanged until sst_close. Read-only after sst_open (and sst_set_cache)
** but for `verified` and `trusted`: several threads may read one reader at
** once, each with its own scratch and iterators.
**
** A data block's checksum (and, stored uncompressed, its layout) is verified
** the first time the reader loads it from the file, not again: the file
** never changes and its mapped pages are the same memory on every read, so
** a second check would only stream the block through the CPU again (a
** tenth of a point read). As with a block
** cache filled from verified reads, damage that appears later in a page this
** reader already verified (evicted, then read back wrong from the disk) is
** not seen by it; a new reader (another process, a reopen, `sochdb check`)
** verifies every block again. */
struct sst_reader {
  const uint8_t          *buf;
  size_t                  len;
  uint64_t                data_end;   /* = filter offset */
  const uint8_t          *bloom;      /* into buf */
  uint64_t                bloom_bits;
  unsigned                bloom_k;
  uint64_t                bloom_lines; /* of a blocked filter (version 3); 0: not blocked */
  uint32_t                nblocks;
  const struct sst_index_entry *index;  /* into buf (version 4, aligned), else malloc'ed (index_owned) */
  const uint8_t          *keys;       /* the index's keys: the same */
  const struct sst_probe *probe;      /* nblocks + 1 of them (sst_probe): the same */
  int                     index_owned;/* index, keys and probe are malloc'ed: sst_close frees them */
  uint32_t                key_shared; /* leading bytes every index key has in common */
  _Atomic uint64_t       *verified;   /* malloc'ed: a bit per data block whose checksum this reader
                                      ** verified (with `trusted` and `cached`, the things sst_get and
                                      ** iterators write) */
  _Atomic uint64_t       *trusted;    /* in verified's allocation: a bit per plain data block stored
                                      ** uncompressed whose checksum and layout this reader checked,
                                      ** so that it is only described again; per columnar block whose
                                      ** keys this reader checked against its index entry */
  _Atomic uint64_t       *cached;     /* in verified's allocation: a bit per plain data block a point
                                      ** read found in the cache (seek_cached): sst_prefetch_get asks
                                      ** the cache for its tail */
  uint64_t                entries, min_seq, max_seq;
  struct sst_block_cache  cache;      /* lookup/insert NULL: none */
  unsigned                version;    /* the footer's */
  struct sst_colblock    *colblocks;  /* malloc'ed, ncolblocks of them */
  uint32_t                ncolblocks;
  struct sst_segment     *segs;       /* malloc'ed */
  uint32_t                nsegs;
};

/* Open the table in buf[0..len): verify the footer, the filter block's and
** the index block's checksums, and parse and check the index (block handles
** contiguous and in bounds, last keys in order). Data blocks are verified
** when read. On success the reader owns its allocations until sst_close.
** buf must not change while the reader is open: what sst_open checked is
** trusted afterwards (a version-4 index's offsets, each data block's checksum
** once verified; entries are bounds-checked whenever decoded). The engine's
** SSTables are written once, renamed into place and never modified.
** Errors: SOCHDB_CORRUPT (damaged or truncated), SOCHDB_VERSION (a footer of
**   another format version), SOCHDB_INVALID (NULL argument), SOCHDB_NOMEM. */
int  sst_open(const uint8_t *buf, size_t len, struct sst_reader *r);
void sst_close(struct sst_reader *r);

/* 1 if LZ4 would shrink the plain data blocks r stores uncompressed by an
** eighth or more, as the builder requires of each block, judged on about
** `samples` of them spread over the file (0: all), and on the first 128 KiB
** of a larger one; 0 if not, or if r has no such block (all compressed,
** columnar, or none). The blocks are read
** unverified: the answer only chooses how a compaction handles the file. */
int  sst_plain_blocks_compress(const struct sst_reader *r, unsigned samples);

/* Use c (NULL = none; copied) for this reader's LZ4-compressed data blocks: a
** hit skips the checksum and decompression (the block was verified when it
** was inserted); a hit whose length is not the trailer's uncompressed size is
** ignored (a miss). A miss verifies, decompresses and inserts. Uncompressed
** blocks are read in place (zero copy) and never cached. Call it before
** sharing the reader between threads. sst_open leaves the reader without. */
void sst_set_cache(struct sst_reader *r, const struct sst_block_cache *c);

/* 0 if the bloom filter says key is certainly absent, 1 if it may be present. */
int  sst_may_contain(const struct sst_reader *r, const void *key, size_t klen);
/* What sst_prefetch_get learnt of a key, for the sst_get_hinted of the same
** key (the same pointer and length) and snapshot that follows it. */
struct sst_hint {
  const struct sst_reader *r;        /* NULL: no hint */
  const void              *key;
  size_t                   klen;
  uint64_t                 snapshot;
  uint64_t                 hash;     /* the key's bloom hash */
  uint32_t                 block;    /* the block that may hold it */
};

/* Ask for the lines an sst_get of key would read first: the bloom filter's
** line and the last line of the block that may hold key (its trailer), and
** say in *hint what was found on the way. Only in a version-3 file (one
** filter line; *hint is emptied otherwise). Reads the reader's own arrays,
** none of the file's bytes. */
void sst_prefetch_get(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
                      struct sst_hint *hint);

/* Recompute the checksum of the block stored at file[offset..offset+size)
** after changing its bytes (its trailer included): for tests and repair
** tools. which: what the block is, for its seed. */
enum sst_block_type { SST_BLOCK_DATA, SST_BLOCK_FILTER, SST_BLOCK_INDEX };
void sst_block_seal(uint8_t *file, uint64_t offset, uint32_t size, enum sst_block_type which);

/* Recompute the checksum(s) of data block i of the table r reads (which
** must be open on file's bytes): the block's, or each segment's of a
** columnar block. For tests and the fuzzer. */
void sst_data_block_seal(uint8_t *file, const struct sst_reader *r, uint32_t i);

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
** next call with that scratch). A row found in a columnar block is
** reassembled from every column segment into the scratch. Absent: SOCHDB_OK
** with res->found = 0.
** Errors: SOCHDB_INVALID (NULL argument, bad klen), SOCHDB_CORRUPT,
**   SOCHDB_NOMEM (growing scratch). */
int  sst_get(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
             struct sst_scratch *scratch, struct sst_get_result *res);
/* sst_get, taking the hash and block from hint when it is of this reader,
** key and snapshot (hint may be NULL). */
int  sst_get_hinted(const struct sst_reader *r, const void *key, size_t klen, uint64_t snapshot,
                    struct sst_scratch *scratch, struct sst_get_result *res, const struct sst_hint *hint);

/* ---- iterating ----------------------------------------------------------- */

struct sst_entry {
  const uint8_t *key;        /* into the iterator: valid until its next call */
  uint32_t       klen;
  uint64_t       seq;
  unsigned       kind;
  const uint8_t *val;        /* into buf or the iterator's scratch: same validity */
  uint32_t       vlen;
  const uint8_t *stored_key; /* the key's klen bytes where the block stores them whole (into buf or the
                             ** scratch, like val), or NULL: a key that shares a prefix is decoded into key */
};

/* A columnar block's column segments as loaded; internal to the reader. */
struct sst_colseg {
  const uint8_t *nulls, *vals, *data;  /* bitmap; 8 B values or end offsets; bytes */
  uint32_t       maxlen;               /* the longest value (8 for int64 and double) */
};
struct sst_colview {
  const struct sst_colblock *cb;
  const struct sst_segment  *segs;     /* its column segments: r->segs + cb->seg + 1 */
  uint64_t                   loaded;   /* bit j: column j's segment is in col[j] */
  struct sst_colseg          col[SST_MAX_COLUMNS];
  struct sst_scratch         buf[1 + SST_MAX_COLUMNS];   /* decompressed segments: keys, columns */
};

/* Internal cursor over one decoded block. */
struct sst_blk {
  const uint8_t *p;          /* the payload's entries */
  size_t         ents;       /* their bytes */
  const uint8_t *restarts;   /* nrestarts u32 */
  uint32_t       nrestarts;
  uint32_t       nslots;     /* of its hash index; 0: none */
  const uint8_t *slot_off;   /* nslots u16 */
  const uint8_t *slot_tag;   /* nslots u8 */
};
struct sst_cursor {
  struct sst_blk blk;
  size_t         pos;        /* of the next entry */
  uint32_t       next_restart;
  uint8_t        key[SOCHDB_MAX_KEY];
  size_t         klen;
  const uint8_t *whole;      /* key's bytes stored whole in the block (this entry's, or an earlier
                             ** version's of the same key), or NULL */
  uint64_t       seq;
  unsigned       kind;
  const uint8_t *val;
  uint32_t       vlen;
  uint32_t       nput;       /* PUT entries decoded since the block's start (linear decoding only) */
  int            linear;     /* seeks decode from the start (columnar keys, which count nput) */
  int            first;      /* the entry decoded last is the block's first */
};

struct sst_iter {
  const struct sst_reader *r;
  struct sst_scratch       scratch;
  int                      started;    /* seek or next was called */
  uint32_t                 block;      /* the block in cur; nblocks when done */
  int                      loaded;     /* cur holds block */
  int                      pending;    /* cur's entry is yet to be returned */
  struct sst_cursor        cur;
  /* columnar blocks */
  const struct sst_projection *proj;   /* NULL: every column of every row */
  struct sst_read_stats   *stats;      /* NULL: not counted */
  struct sst_colview      *cv;         /* malloc'ed at the first columnar block */
  struct sst_scratch       rowbuf;     /* the row being handed out */
  int                      col;        /* cur is a columnar block's keys */
  int                      col_skip;   /* ... whose column segments were skipped */
  int                      col_filter; /* ... whose rows the filter is evaluated on */
  int                      taken;      /* the block was taken whole: the next call starts the next */
};

/* Position it before the table's first entry. Allocates nothing yet. */
void sst_iter_init(struct sst_iter *it, const struct sst_reader *r);
/* Before the first seek or next: read columnar blocks of p->table through
** projection p (both p and stats, which may be NULL, must outlive the
** iterator). A PUT of such a block comes back as a row whose unwanted
** columns are NULL (those after the last wanted one are left out: they read
** as NULL too), or as SST_SKIP (no value) when it fails p's filter; the
** column segments of a block whose min/max exclude the filter are not read
** at all (every PUT of it is SST_SKIP). A columnar block of another table
** has its keys read alone, every PUT of it SST_SKIP: a projected iterator
** serves a scan of p->table, whose range holds no other table's rows; it
** only passes such a block (the next table's first, where the scan ends).
** stats adds up what was read. */
void sst_iter_project(struct sst_iter *it, const struct sst_projection *p, struct sst_read_stats *stats);
/* Position it before the first entry whose user key is >= key (all its
** versions follow); key NULL = the first entry. Errors: SOCHDB_INVALID (bad
** klen), SOCHDB_CORRUPT, SOCHDB_NOMEM. */
int  sst_iter_seek(struct sst_iter *it, const void *key, size_t klen);
/* The next entry: SOCHDB_OK with *e filled, SOCHDB_NOTFOUND at the end, or
** SOCHDB_CORRUPT / SOCHDB_NOMEM (the iterator is then at its end). */
int  sst_iter_next(struct sst_iter *it, struct sst_entry *e);
void sst_iter_free(struct sst_iter *it);

/* Block at a time, for projected scans: when the entry the iterator returned
** last is the first of a columnar block of the projection's table whose
** entries are each the only version of their key, all PUTs at or below
** snapshot, and whose last key is below bound (NULL: none), hand that block
** over whole: 1 with *cv (its wanted columns, valid until the iterator's next
** call), its row count, whether min/max skipped its columns (*skipped: no row
** passes the filter), and its last key (*last, same validity). The next
** sst_iter_next returns the first entry after the block. 0 when not so
** (nothing changes). The rows' values: sst_colview_get. */
int  sst_iter_take_block(struct sst_iter *it, uint64_t snapshot, const uint8_t *bound, size_t blen,
                         const struct sst_colview **cv, uint32_t *nrows, int *skipped, const uint8_t **last,
                         uint32_t *lastlen);

/* Column j of row `row` of a block taken whole: its type (0 when the block has
** no such column, the value then NULL) and value (bytes point into the
** block's segments). SOCHDB_OK, or SOCHDB_INVALID if column j was not read. */
int  sst_colview_get(const struct sst_colview *cv, unsigned j, uint32_t row, unsigned *type, sochdb_value *v);

#endif
