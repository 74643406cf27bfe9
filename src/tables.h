/*
** tables.h — one process's table of mapped SSTables: the files of the
** region's current live-file list (shm/filelist.h), each mapped read-only
** once per process and shared by all its transactions, and the lookups that
** search them level by level.
**
** The table set is swapped under liburcu (urcu-bp, so that any application
** thread may read it without registering): a transaction takes a reference
** inside a read-side critical section at its first read that needs SSTables
** (a get, an iterator: src/txn.c, sdb_txn_tables) and drops it at its end,
** and the set it holds (with every mapping in it) lives at least that long. A new
** set is built by the first transaction that finds the region's list newer
** than the process's set, reusing the mappings of files it already has.
*/
#ifndef SOCHDB_TABLES_H
#define SOCHDB_TABLES_H

#include "sstfmt.h"
#include "blockcache.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct sochdb;

struct sdb_table_cache {        /* the block-cache hook's context for one file */
  void    *area;                /* the region's block cache, NULL = none */
  uint64_t number;
  uint32_t owner;               /* our slot + 1 */
  struct bc_backing backing;    /* reserves the cache's memory in the region as it fills */
  _Atomic uint64_t *hits, *misses;   /* this process's lookups: its slot's counters */
};

struct sdb_table {              /* one mapped SSTable */
  uint64_t       number;
  uint32_t       level;
  _Atomic long   refs;          /* table sets holding it */
  const uint8_t *map;
  size_t         len;
  int            open_rc;       /* SOCHDB_OK, or why it cannot be read (every read of it fails so) */
  char           open_err[256];
  struct sst_reader r;
  struct sdb_table_cache cache;
  uint8_t       *smallest;      /* its first and last user keys (malloc'ed) */
  uint32_t       slen;
  uint8_t       *largest;
  uint32_t       llen;
};

#define SDB_LEVELS 8u

struct sdb_tables {
  uint64_t           id;        /* the region file list it mirrors */
  _Atomic long       refs;      /* transactions + 1 while it is the process's current set */
  uint32_t           n;
  struct sdb_table **files;     /* list order: L0 newest first, then each level by smallest key */
  uint32_t           level_start[SDB_LEVELS + 1];   /* files of level l: [level_start[l], level_start[l+1]) */
  unsigned           levels;    /* 1 + the deepest level holding a file; 0 if none */
  int                failed;    /* a file of it could not be opened: built again after retry_ns */
  uint64_t           retry_ns;  /* CLOCK_MONOTONIC */
};

/* A set mirroring the region's current list (or one published after it),
** referenced for the caller. When the process's set has the current list's
** id (fl_current_id) it is taken without reading the list; otherwise
** *hazard (the transaction entry's view_files, shm/epoch.h) protects the
** list while it is read and its files are mapped, and is cleared before
** this returns. A file that fails to open makes its reads fail with why; it
** is opened again by the next list's set, or by the same list's set built
** again a second later. Errors: SOCHDB_NOMEM. */
int  sdb_tables_acquire(struct sochdb *db, _Atomic uint64_t *hazard, struct sdb_tables **out);
void sdb_tables_release(struct sdb_tables *ts);
/* At sochdb_close: drop the process's current set. */
void sdb_tables_close(struct sochdb *db);

/* 1 if table t may hold key (by its key range), 0 if not. A file that could
** not be opened may hold anything. */
int  sdb_table_may_hold(const struct sdb_table *t, const void *key, size_t klen);

/* Where a get's search of the tables stands: the level, and at level 0 the
** next file (tables.c, next_candidate). */
struct sdb_candidate_pos {
  unsigned level;
  uint32_t i;
};

/* What sdb_tables_prefetch found, for the sdb_tables_get of the same key
** (the same pointer and length) and snapshot in the same set: the first
** table that may hold the key, the search's position after it, and what
** that table's sst_prefetch_get learnt. */
struct sdb_tables_hint {
  const struct sdb_tables *ts;           /* NULL: no hint */
  const void              *key;
  size_t                   klen;
  uint64_t                 snapshot;
  const struct sdb_table  *first;        /* NULL: no table may hold the key */
  struct sdb_candidate_pos after;
  struct sst_hint          sst;
};

/* Ask for the first lines sdb_tables_get(key) will read in the first table
** that may hold key (sst_prefetch_get): a get does this before it searches
** the memtables, so that the misses of both overlap. *hint says what was
** found on the way, for the sdb_tables_get of the same key and snapshot. */
void sdb_tables_prefetch(const struct sdb_tables *ts, const void *key, size_t klen, uint64_t snapshot,
                         struct sdb_tables_hint *hint);
/* The newest version of key at or below snapshot in the tables, searched
** level by level; hint: NULL, or from sdb_tables_prefetch. res->found = 0 if
** none. res->val points into the mapping (valid while ts is held) or into
** scratch. Errors: SOCHDB_CORRUPT (a file that may hold the key is damaged),
** SOCHDB_NOMEM. */
int  sdb_tables_get(const struct sdb_tables *ts, const void *key, size_t klen, uint64_t snapshot,
                    struct sst_scratch *scratch, struct sst_get_result *res, const struct sdb_tables_hint *hint);

/* The first file of level l (>= 1) whose largest key is >= key (key NULL =
** the first file); level_start[l + 1] if none. */
uint32_t sdb_tables_seek_level(const struct sdb_tables *ts, unsigned l, const void *key, size_t klen);

#endif
