/*
** region.h — the shared memory region: its header, its layout, and how a
** process creates or attaches to it.
**
** The region is one file in a tmpfs (/dev/shm, or $SOCHDB_SHM_DIR) named after
** the database directory's device and inode, mapped MAP_SHARED by every process
** that opens the database. Each process maps it at its own address, so
** everything stored inside refers to other parts by a 64-bit offset from the
** region's base (shm_at / shm_off); a raw pointer inside the region is a bug.
**
** Layout, all offsets fixed when the region is created:
**
**   [ header 4 KiB | process slots | commit sequence ring | commit-record ring |
**     live-file lists | block cache | memtable table | arenas ... ]
**
** The header's magic is stored last, with release order, so that an attacher
** that sees the magic sees a fully initialised region. Creation and
** validation happen under an exclusive flock() on the region file, which the
** kernel drops if the holder dies, so a creator killed half-way leaves a
** region without magic that the next opener simply initialises again.
*/
#ifndef SOCHDB_SHM_REGION_H
#define SOCHDB_SHM_REGION_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#define SHM_MAGIC           0x314244484353ULL /* "SCHDB1" little-endian */
#define SHM_LAYOUT_VERSION  22u  /* 22: compactions' rate-limit sleeps and flushes held at level 0's
                                  ** stop counted, and level 0's count while one is (shm_global_stats);
                                  ** 21: slots' counters never reset nor folded into the header,
                                  ** whose copies of them are gone (slots.h, shm_slot_stats);
                                  ** 20: writers' waits for the daemon counted in each slot (write stalls);
                                  ** 19: the commit-record ring sized to the region, up to 262,144
                                  ** entries (rec_ring_entries, durable.h);
                                  ** 18: an opener takes its slot under the creation flock, and an
                                  ** unusable region nobody holds a slot of is rebuilt (region.c);
                                  ** 17: block cache hits and misses counted in each process's slot;
                                  ** 16: a cache area's sets found among budgets above its size (an
                                  ** area of 15 could get fewer sets for the same size);
                                  ** 15: the block cache in size tiers (blockcache.h);
                                  ** 14: kick_futex's third bit (the writer leaving), kicks in steps of 8;
                                  ** 13: shm_log_end.logged_seq, on its own line; 12: next_file_floor;
                                  ** 11: where the log's synced groups end (shm_log_end) */
#define SHM_HEADER_BYTES    4096u
#define SHM_CACHELINE       64

#define SHM_DEFAULT_REGION_BYTES   (1ull << 30)
#define SHM_DEFAULT_MEMTABLE_BYTES (64ull << 20)
#define SHM_MIN_MEMTABLE_BYTES     (1ull << 20)
#define SHM_MAX_MEMTABLE_BYTES     (4ull << 30)
#define SHM_MAX_MEMTABLES          64u
/* The memtable arenas together span at most this many bytes, so that a
** 32-bit shm_ref reaches every 8-byte unit of them (layout version 8). */
#define SHM_MAX_ARENA_SPAN         ((1ull << 35) - 8)

/* Counters of events that are rare and global (not per process). */
struct shm_global_stats {
  _Atomic uint64_t processes_reaped;
  _Atomic uint64_t dead_txns_rolled_back;
  /* The WAL writer's counters. */
  _Atomic uint64_t wal_groups;         /* groups written = fdatasyncs */
  _Atomic uint64_t wal_records;
  _Atomic uint64_t wal_bytes;
  /* The flusher's and the compactor's (daemon/flusher.c, daemon/compactor.c). */
  _Atomic uint64_t flushes;
  _Atomic uint64_t flush_bytes;        /* SSTable bytes written by flushes */
  _Atomic uint64_t compactions;
  _Atomic uint64_t compact_bytes_read;
  _Atomic uint64_t compact_bytes_written;
  _Atomic uint64_t compact_debt_bytes; /* bytes the levels are over their targets */
  _Atomic uint64_t wal_segments_removed;
  _Atomic uint64_t full_compaction_requested; /* bumped by `sochdb compact`; the daemon answers */
  _Atomic uint64_t full_compaction_done;      /* ... by setting this to the request it finished */
  _Atomic uint64_t compact_progress_done;     /* bytes read by the running compaction */
  _Atomic uint64_t compact_progress_total;    /* ... of this many */
  _Atomic uint64_t live_files;        /* SSTables in the current file list (filelist.c) */
  _Atomic uint64_t live_l0_files;     /* ... of them in level 0 */
  _Atomic uint64_t live_file_bytes;   /* ... their total size */
  /* Columnar table scans, added when each scan closes (src/table.c). */
  _Atomic uint64_t table_scans;
  _Atomic uint64_t scan_rows;
  _Atomic uint64_t scan_blocks_read;
  _Atomic uint64_t scan_blocks_skipped;
  _Atomic uint64_t scan_bytes_read;
  _Atomic uint64_t scan_bytes_decompressed;
  _Atomic uint64_t scan_blocks_direct;
  /* Level 0's pressure (layout version 22): the time compactions slept to
  ** keep to the read rate limit, and the flushes held because level 0 held
  ** --l0-stop files, and how long (daemon/compactor.c, daemon/flusher.c). */
  _Atomic uint64_t compact_throttle_us;
  _Atomic uint64_t l0_stops;
  _Atomic uint64_t l0_stop_us;
  _Atomic uint64_t l0_held_files;  /* level 0's files while a flush waits at its stop, else 0:
                                   ** a writer's SOCHDB_BUSY says why (src/txn.c) */
};

/* Where the log's whole groups end: a note for the next daemon, which then
** reads only what follows (durable.h). */
struct shm_log_end {
  _Atomic uint64_t segment;     /* the first LSN of the segment (its file name) */
  _Atomic uint64_t last_group;  /* file offset of the last group written */
  _Atomic uint64_t end_offset;  /* file offset after it */
  _Atomic uint64_t next_lsn;    /* the LSN after it */
  _Atomic uint64_t seq;         /* no commit in the segment up to end_offset is newer */
  _Atomic uint64_t logged_seq;  /* a commit the log holds whole, or one the SSTables hold (layout 13) */
  _Atomic uint64_t check;       /* XXH3 of the six above, stored last: else there is no note */
};

struct shm_header {
  /* Immutable after creation; covered by `checksum`. */
  uint64_t magic;             /* written last, release; read acquire */
  uint32_t layout_version;
  uint32_t header_bytes;
  uint64_t region_bytes;
  uint64_t memtable_bytes;
  uint8_t  db_id[16];         /* identity of the directory (its sochdb.id file) */
  uint64_t slots_off;
  uint64_t ring_off;
  uint64_t memtables_off;
  uint64_t rec_ring_off;      /* commit records for the WAL writer (durable.h) */
  uint64_t files_off;         /* live-SSTable lists (filelist.h) */
  uint64_t cache_off;         /* shared block cache (blockcache.h), 0 = none */
  uint64_t cache_bytes;
  uint32_t n_slots;
  uint32_t n_memtables;
  uint32_t rec_ring_entries;  /* durable_ring_entries(region_bytes) (layout 19) */
  uint32_t reserved;          /* 0 */
  uint64_t created_unix_ns;
  uint64_t checksum;          /* XXH3 of every field above (but the magic) */
  uint8_t  boot_id[16];       /* the kernel boot that made it; outside the checksum on purpose:
                              ** a damaged one can only make us rebuild, which is safe */

  /* Mutable state, one hot word per cache line so committers do not
  ** false-share with readers taking snapshots. */
  alignas(SHM_CACHELINE) _Atomic uint64_t next_seq;      /* next commit sequence to hand out */
  alignas(SHM_CACHELINE) _Atomic uint64_t published_seq; /* newest commit visible to new snapshots */
  alignas(SHM_CACHELINE) _Atomic uint64_t horizon;       /* snapshots below this may be reclaimed */
  alignas(SHM_CACHELINE) _Atomic uint64_t durable_seq;   /* every commit <= it is on disk */
  _Atomic uint32_t durable_futex;                        /* bumped when durable_seq moves */
  /* by the WAL writer after each group (layout version 11); on its own line
  ** since 13, which outgrew durable_seq's: only the next daemon reads it */
  alignas(SHM_CACHELINE) struct shm_log_end log_end;
  alignas(SHM_CACHELINE) _Atomic uint32_t kick_futex;    /* += 8 to wake the WAL writer; bit 0: it sleeps, 1: dozes, 2: leaves */
  alignas(SHM_CACHELINE) _Atomic uint32_t active_memtable;  /* also the futex the idle flusher sleeps on */
  _Atomic uint64_t next_memtable_id;
  /* Bit i set: memtable i may be LIVE. Always a superset of the LIVE ones,
  ** so arena_view reads only these instead of every memtable's state: a
  ** rotator sets the bit before it stores LIVE, and only arena_recycle
  ** clears it, while the memtable is RETIRED (no one else changes it then),
  ** before it stores FREE. A bit left set (a lost rotation, a dead claimer)
  ** only costs a look. (layout version 6) */
  _Atomic uint64_t viewable_memtables;
  /* One more than the highest process slot ever attached (slots.c): the
  ** scans of every transaction entry stop there, so slots never used cost
  ** neither time nor memory (their pages are never touched). Only grows.
  ** (layout version 7) */
  _Atomic uint32_t slots_high;
  alignas(SHM_CACHELINE) _Atomic uint64_t epoch;         /* reclamation epoch (epoch.h) */
  _Atomic uint64_t retired_max_seq;  /* newest commit in a memtable retired so far (arena.h) */
  alignas(SHM_CACHELINE) _Atomic uint32_t current_files; /* index of the current file list */
  _Atomic uint32_t files_futex;  /* bumped when a file list is published or a full compaction is asked for */
  /* No SSTable number below it is handed out again (daemon/store.c): the
  ** block cache keys blocks by file number, and a directory put back to an
  ** older copy while the region lived on would otherwise hand out numbers
  ** whose old blocks the cache still holds. (layout version 12) */
  _Atomic uint64_t next_file_floor;
  alignas(SHM_CACHELINE) struct shm_global_stats stats;
};

/* The note fills one line, so its stores never share one with a hot word. */
_Static_assert(offsetof(struct shm_header, kick_futex) == offsetof(struct shm_header, log_end) + SHM_CACHELINE,
               "shm_log_end must fit in one cache line");

/* One process's view of an attached region. Process-local, never shared. */
typedef struct shm_region {
  char              *base;    /* this process's mapping */
  size_t             size;
  int                fd;      /* own open file description: carries our slot lock */
  pthread_mutex_t    reap_lock; /* threads of one handle share fd, so its slot locks
                                ** do not exclude each other: this does */
  struct shm_header *hdr;
  uint64_t           ref_base; /* region offset of shm_ref 0: 8 bytes before the first arena */
  char               path[4096];
} shm_region;

static inline void *shm_at(const shm_region *r, uint64_t off) { return off ? r->base + off : NULL; }
static inline uint64_t shm_off(const shm_region *r, const void *p) { return (uint64_t)((const char *)p - r->base); }

/* A link inside the memtable arenas, in 32 bits instead of a 64-bit region
** offset: the distance from ref_base in 8-byte units (every arena allocation
** is 8-aligned), 0 = none. Skiplist links, version chains and commit records
** hold these; the head node at the very start of the first arena is ref 1,
** and is never a link's target anyway. Half the bytes of an offset, on
** every node level and every version (layout version 8). */
typedef uint32_t shm_ref;

static inline uint64_t shm_ref_off(const shm_region *r, shm_ref ref)
{ return ref ? r->ref_base + ((uint64_t)ref << 3) : 0; }

static inline shm_ref shm_off_ref(const shm_region *r, uint64_t off)
{ return off ? (shm_ref)((off - r->ref_base) >> 3) : 0; }

static inline void *shm_ref_at(const shm_region *r, shm_ref ref) { return shm_at(r, shm_ref_off(r, ref)); }

struct shm_open_params {
  const char *dir;            /* database directory (must exist) */
  uint64_t    region_bytes;   /* used only when creating */
  uint64_t    memtable_bytes; /* used only when creating */
  uint64_t    cache_bytes;    /* used only when creating (0: no block cache) */
  unsigned    file_mode;
  uint8_t     db_id[16];      /* identity read from the directory */
  /* Called on a region this process has just formatted, before its magic
  ** is published: fills it from the directory (WAL replay). */
  int       (*populate)(shm_region *r, void *ctx);
  void       *populate_ctx;
  /* 1: return (on success) with the exclusive flock openers validate under
  ** still held, for the caller to take its process slot before it calls
  ** shm_region_unlock: an opener that finds the region unusable replaces it
  ** only when no slot is held (slots_any_held), so none may be about to be. */
  int         keep_locked;
};

/* Path of the region file of directory `dir` into out (size n). Returns SOCHDB_OK or an error. */
int  shm_region_path(const char *dir, char *out, size_t n);

/* Create or attach. Returns SOCHDB_OK, SOCHDB_IO, SOCHDB_VERSION, SOCHDB_CORRUPT, SOCHDB_INVALID. */
int  shm_region_open(const struct shm_open_params *p, shm_region *out);
/* Let go of the flock shm_region_open kept (keep_locked). */
void shm_region_unlock(shm_region *r);
void shm_region_close(shm_region *r);

/* Unlink r's file if its path still names it (nobody replaced it), under
** the exclusive flock that openers hold while they validate or replace a
** region, so none of them is half-way through it. For a region whose
** directory no longer exists: processes still attached keep their mapping,
** and nobody can open the database again. Returns 1 when unlinked, 0 when
** the path names another file or none, -1 on an error (errno set). */
int  shm_region_unlink(shm_region *r);
/* The same for the region file at path, which this process need not have
** attached (`sochdb destroy`): 1 unlinked, 0 none there, -1 on an error.
** With only_unused, not while a process holds a slot of it (errno EBUSY):
** one that attached after the caller found nobody attached would be left
** on a region nobody else opens. */
int  shm_region_unlink_path(const char *path, int only_unused);

/* Whether a region of these sizes can be made (the checks region_format
** makes), without touching anything: sochdb_open refuses bad options before
** it creates the directory or its sochdb.id. SOCHDB_OK or SOCHDB_INVALID. */
int  shm_layout_check(uint64_t region_bytes, uint64_t memtable_bytes, uint64_t cache_bytes);

/* Layout helpers shared by the modules that live in the region. */
uint64_t shm_layout_arena_off(const struct shm_header *h, uint32_t idx);

/* [off, off + bytes) lies within the memtable arenas' part of the mapping:
** for offsets read from the region's mutable half before they are followed
** where a damaged one must not take us out of the mapping (recovery paths). */
static inline int shm_in_arenas(const shm_region *r, uint64_t off, uint64_t bytes)
{
  return off >= r->hdr->memtables_off && off < r->size && bytes <= r->size - off;
}

/* The checksum of h's immutable fields, as stored in h->checksum. */
uint64_t shm_header_checksum(const struct shm_header *h);

/* Back [off, off + len) of the region with real pages before anyone writes
** there. The region is sparse: a write to an untouched page of a full tmpfs
** would be a SIGBUS; reserving first turns it into an error. Idempotent.
** Returns 0, or the errno (ENOSPC) of a tmpfs that is full; 0 where the
** filesystem cannot reserve (its pages come on first write). */
int shm_reserve(const shm_region *r, uint64_t off, uint64_t len);

#endif
