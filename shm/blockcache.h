/*
** blockcache.h — the shared block cache: decompressed SSTable data blocks,
** kept in one memory area that every process of a database maps (MAP_SHARED,
** each at its own address), so that a block one process decompressed serves
** all of them.
**
** The area holds offsets and plain values only, never a pointer. It is a
** fixed-size, set-associative cache in size tiers: a block goes to the tier
** of the smallest entries that hold it, there (file, offset) hashes to one
** set of BC_WAYS entries, and CLOCK (a reference bit per entry, a hand per
** set) chooses the victim within the set. A block that would evict another
** is admitted with probability 1 in BC_ADMIT_EVERY (each thread draws its
** own): a block read often misses often and gets in soon, while blocks
** read once, by random reads over more than the cache holds, rarely
** displace cached ones, nor cost a 4 KiB copy each. A set with a free entry
** takes every block, into that entry. Blocks larger than BC_BLOCK_MAX
** are not cached, nor blocks over the small tier's entries when the budget
** gives the large tier no set (a cache under about 512 KiB).
**
** Every entry is a seqlock. Its state word is [ version 47 bits | valid 1 bit
** | writer 16 bits ]: a writer claims the entry by CAS (writer = its owner
** id, version + 1), writes tags and data, then publishes (writer 0, version +
** 1, valid). A reader copies an entry out and re-reads the state: if it
** changed, the copy may be torn and the lookup is a miss, so a lookup never
** returns a torn copy and never waits. A process killed while writing leaves
** its owner id in the state; the reaper calls bc_release_owner, which makes
** such entries empty again.
**
** SSTable file numbers are never reused (the daemon continues from the
** region's next_file_floor, even when the directory lost the MANIFEST
** edits that used them), so entries are never invalidated: those of
** deleted files age out by CLOCK.
*/
#ifndef SOCHDB_SHM_BLOCKCACHE_H
#define SOCHDB_SHM_BLOCKCACHE_H

#include <stddef.h>
#include <stdint.h>

#define BC_BLOCK_MAX  16384u   /* the largest entry; bigger blocks are not cached */
#define BC_WAYS       8u
#define BC_ADMIT_EVERY 4u      /* 1 in this many inserts into full sets goes ahead: see above */
#define BC_MAX_TIERS  2u

/* The size tiers: n of them, each with entries of block_max bytes (ascending)
** and share parts of the budget. */
struct bc_tiers {
  unsigned n;
  uint32_t block_max[BC_MAX_TIERS];
  uint32_t share[BC_MAX_TIERS];
};

/* What a region's cache uses: 4608-byte entries for the blocks sochdbd
** writes (about 4.1 KiB) with three quarters of the budget, 16 KiB entries
** with the rest. The _of functions below take other tiers (tests). */
extern const struct bc_tiers bc_default_tiers;

struct bc_stats {
  uint64_t hits, misses, inserts, evictions, too_big;
  uint64_t capacity_blocks;
  uint64_t capacity_bytes;   /* of the entries' data, every tier */
};

/* Bytes of the area for a cache of about cache_bytes of payload (each tier's
** share rounded down to whole sets; 0 when no tier gets a set: cache
** disabled). */
size_t bc_area_bytes(uint64_t cache_bytes);
size_t bc_area_bytes_of(const struct bc_tiers *t, uint64_t cache_bytes);

/* Bytes at the start of an area of area_bytes (as bc_area_bytes gives) that
** bc_init writes: the header and every set's metadata. The rest, the blocks,
** is written only by bc_insert, through its backing. */
size_t bc_meta_bytes(size_t area_bytes);
size_t bc_meta_bytes_of(const struct bc_tiers *t, size_t area_bytes);

/* How bc_insert backs a set's blocks with memory before it first writes one:
** reserve(ctx, addr, len) returns 0 once [addr, addr + len) is backed (see
** shm_reserve), or an errno, and then nothing is cached. NULL: the area is
** backed already (private memory, tests). */
struct bc_backing {
  int  (*reserve)(void *ctx, void *addr, size_t len);
  void *ctx;
};

/* Format the area (called once, by the creator, before anyone else sees it).
** The area must be 64-byte aligned in every process (a mapping is).
** Writes the header and each entry's small metadata, never the data pages, so
** a sparse area stays mostly untouched until blocks are cached. An area too
** small for one set is formatted as a disabled cache (every lookup misses). */
void   bc_init(void *area, size_t area_bytes);
void   bc_init_of(const struct bc_tiers *t, void *area, size_t area_bytes);

/* 1 if the header of area (area_bytes, as given to bc_init) is the one
** bc_init wrote: its set count and data offset follow from area_bytes and
** never change, and a damaged one would send every lookup, insert and
** reap outside the area. 0 otherwise. An attacher checks it once
** (shm/region.c), as it checks the region's own layout. */
int    bc_header_intact(const void *area, size_t area_bytes);
int    bc_header_intact_of(const struct bc_tiers *t, const void *area, size_t area_bytes);

/* Copy the block (file, offset) into dst (cap bytes) if cached: returns 1 with
** *len set, else 0 (also when the block is longer than cap). Never returns a
** torn copy. A NULL area, or one formatted with no set, always misses. It
** looks in the tiers that may hold a block of at most cap bytes: a cap near
** the block's length (its file tells it) spares a look into a larger tier. */
int    bc_lookup(void *area, uint64_t file, uint64_t offset, void *dst, size_t cap, size_t *len);

/* bc_lookup, counting the hit or miss in *hits or *misses (a process's own
** counters, its slot's: shm/slots.h) instead of the area's header, whose
** one line every process would otherwise write on every lookup. */
int    bc_lookup_counted(void *area, uint64_t file, uint64_t offset, void *dst, size_t cap, size_t *len,
                         _Atomic uint64_t *hits, _Atomic uint64_t *misses);

/* A lookup in pieces, for a reader that needs a few ranges of a block, not
** all of it (a point read through a block's hash index): bc_read_begin
** finds (file, offset), no longer than cap, and notes its entry's state
** (1 with rd->len set; else 0, a miss counted in *misses unless the
** area holds no cache, as bc_lookup counts); bc_read_copy
** copies bytes [from, to) of it, clipped to rd->len, to the same place in
** dst (a buffer of rd->len bytes; whole words, so it may also write up to 7
** bytes before from), as often as the reader likes; bc_read_end returns 1,
** counting a hit in *hits, if the entry was not changed since the begin,
** and then every byte copied is the block's; else 0, a miss: the bytes
** copied may be torn and must be thrown away. Until the end says so, the
** reader must treat what it copied as untrusted (bounds-check everything
** it reads from it). No call waits, and none writes the entry but its
** CLOCK reference bit. */
struct bc_read {
  void                   *entry;    /* the entry's metadata, in the area */
  const _Atomic uint64_t *data;     /* its data words, in the area */
  uint64_t                seen;     /* its state at the begin */
  size_t                  len;      /* the block's length */
  _Atomic uint64_t       *hits, *misses;
};
int    bc_read_begin(void *area, uint64_t file, uint64_t offset, size_t cap, struct bc_read *rd,
                     _Atomic uint64_t *hits, _Atomic uint64_t *misses);
void   bc_read_copy(const struct bc_read *rd, size_t from, size_t to, void *dst);
int    bc_read_end(const struct bc_read *rd);

/* Ask the CPU for the lines of the last bytes of block (file, offset) if
** it is cached (no counting, no waiting): a reader that will read its
** tail soon lets that cache miss overlap other work. */
void   bc_prefetch_end(void *area, uint64_t file, uint64_t offset, size_t bytes);

/* Insert a copy of data[0..len) under (file, offset), in the first tier whose
** entries hold it; a block no tier holds (len > BC_BLOCK_MAX) is counted in
** too_big and ignored. owner = the inserting process's slot + 1
** (1..65535). Does nothing if the block is already cached, or (with
** probability 1 - 1/BC_ADMIT_EVERY) if its set is full;
** may silently give up under contention (every way of the set being
** written) or when backing cannot reserve the set's memory. */
void   bc_insert(void *area, uint64_t file, uint64_t offset, const void *data, size_t len, uint32_t owner,
                 const struct bc_backing *backing);

/* Reaper: the entries a dead owner left half-written become free (empty)
** again. owner must be dead: a live writer's entry would be taken from it. */
void   bc_release_owner(void *area, uint32_t owner);

/* Counters (each read on its own: not one consistent snapshot). */
void   bc_get_stats(const void *area, struct bc_stats *out);

#ifdef SOCHDB_TESTING
/* For tests: do what bc_insert does up to the middle of the copy and stop, as
** a writer killed there would: an entry of (file, offset)'s set is claimed by
** owner, its tags written and half of len bytes of data (pattern byte 0xAB).
** Returns 1 if an entry was claimed, 0 if none could be. */
int    bc_test_claim_and_stop(void *area, uint64_t file, uint64_t offset, size_t len, uint32_t owner);
/* For tests: how many entries name owner as their writer right now. */
unsigned bc_test_owned(const void *area, uint32_t owner);
#endif

#endif
