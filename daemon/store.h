/*
** store.h — the daemon's side of the on-disk tree: the MANIFEST, the file
** list it publishes in the region, new SSTable files, and files waiting to be
** unlinked until no snapshot can read them. Shared by the flusher
** (flusher.c) and the compactor (compactor.c), under one lock.
*/
#ifndef SOCHDB_DAEMON_STORE_H
#define SOCHDB_DAEMON_STORE_H

#include "internal.h"

#include "compaction.h"
#include "manifest.h"

#include <pthread.h>

struct store {
  sochdb                   *db;
  shm_region               *r;
  pthread_mutex_t           lock;   /* everything below */
  struct manifest          *man;
  struct manifest_state     state;
  uint64_t                  next_file;
  uint64_t                 *doomed;   /* files to unlink once no file list names them */
  size_t                    ndoomed, capdoomed;
  struct compaction_options copts;
  uint64_t                  compact_rate;   /* bytes/s a compaction may read; 0 = unlimited */
  unsigned                  l0_unthrottle;  /* level-0 files at which compactions ignore compact_rate (0: never) */
  unsigned                  l0_stop;        /* level-0 files at which flushes wait for compaction (0: never) */
  int                       compact_failing; /* the last compaction failed: flushes do not wait for one */
  unsigned                  compress_from_level;   /* store_compresses */
  int                       failed;   /* the MANIFEST or the published list is in doubt: store_failed */
  uint64_t                  roll_bytes;   /* the MANIFEST is rewritten as a snapshot past this (roll_manifest) */
  uint64_t                  rolled_bytes; /* its size after the last rewrite (0: none since open) */
};

/* Open (or create) the MANIFEST, doom orphan files, publish the file list.
** On failure everything is released: there is nothing to store_close. */
int  store_open(struct store *s, sochdb *db);
/* Whether an edit failed in a way only a new store can mend: the MANIFEST
** could not be written or synced (its handle refuses every later edit, and
** the file is in doubt), or an edit was made durable but its file list
** could not be published (the region's list and the MANIFEST differ). The
** daemon then leaves, and the next one opens the store from the files. */
int  store_failed(struct store *s);
void store_close(struct store *s);

/* The level from which tables LZ4-compress their plain data blocks, by
** default: level 0 (flushes) and level 1 hold the newest data, which reads
** and compactions touch most, and at most l0_trigger memtables plus four
** in L1 (some 512 MiB with 64 MiB memtables), so storing their blocks as
** they are costs little disk and spares every read of them a decompression
** and a block-cache copy (a point read of a compressed block decompresses
** all of it). Deeper levels, where nearly all of a large database lies,
** are compressed. RocksDB users configure the same (compression_per_level
** with none for the first levels). */
#define STORE_COMPRESS_FROM_LEVEL 2u

/* Whether tables written into `level` try LZ4 on their plain data blocks
** (level >= s->compress_from_level). */
int store_compresses(const struct store *s, unsigned level);

/* A file number for a new SSTable (recorded by the next store_apply). */
uint64_t store_new_file_number(struct store *s);

/* How a table's bytes reach the page cache: in whole, aligned pieces of
** one size (store.c says why there are two). */
enum sst_pieces {
  SST_SMALL_PIECES,   /* 256 KiB: a flush's level-0 table, written at the rate commits come in */
  SST_HUGE_PIECES     /* 2 MiB: a compaction's output, which readers map with one TLB entry per piece */
};

/* An SSTable being written: NNNNNN.sst.tmp, renamed once complete and durable. */
struct sst_file_out {
  int      fd;          /* -1: not open */
  uint64_t number;
  uint64_t written;     /* bytes appended so far (some may wait in stage) */
  size_t   piece;       /* the size of each write but the last (enum sst_pieces) */
  uint8_t *stage;       /* the file's unwritten bytes after its last piece boundary (malloc'ed; NULL) */
  size_t   staged;
  uint64_t in_file;     /* bytes written to fd so far */
  uint64_t kicked;      /* writeback started for [0, kicked) (write_behind, store.c) */
  int      wb_err;      /* the first error that writeback returned, 0: none (fails the table) */
  char     path[4200], tmp[4220];
};

/* Create SSTable `number`'s temporary file, to be written in `pieces`. */
int  store_sst_create(struct store *s, uint64_t number, enum sst_pieces pieces, struct sst_file_out *o);
/* Append (an sst_builder_spill sink: ctx is the sst_file_out). */
int  store_sst_append(void *ctx, const uint8_t *p, size_t n);
/* Append the file's end, make it durable (fdatasync), give it the region's
** mode, rename it to its name and fsync the directory. The temporary file
** is removed on failure. Closes o either way. */
int  store_sst_complete(struct store *s, struct sst_file_out *o, const uint8_t *tail, size_t n);
/* Give up: close and remove the temporary file. No-op if not open. */
void store_sst_abandon(struct sst_file_out *o);

/* Write buf as SSTable `number` durably: create, complete. */
int  store_write_sst(struct store *s, uint64_t number, enum sst_pieces pieces, const uint8_t *buf, size_t len);

/* SOCHDB_BUSY (with the message set) if an edit adding `adds` files and
** deleting `dels` would leave more than the region's file lists hold
** (FL_MAX_FILES) and more than there are now. */
int  store_check_room(struct store *s, size_t adds, size_t dels);

/* Apply edit to the MANIFEST (durably), then publish the new file list; the
** files the edit deletes are doomed. Takes the lock. An edit that
** store_check_room refuses is not applied, and the new files it adds are
** removed. */
int  store_apply(struct store *s, struct manifest_edit *edit);

/* Unlink doomed files no view can read any more; free retired file lists.
** The lock is held to choose them, not while they are unlinked. */
void store_reclaim(struct store *s);

/* Level 0's pressure: whether a compaction should read at full speed
** (level 0 holds l0_unthrottle files or more, or l0_stop: writers may be
** waiting for it), and whether a flush should wait (l0_stop or more, read
** under the lock, while compactions succeed:
** one that fails may not take files out of level 0 for a long time, and
** holding every writer meanwhile would turn damage to one table into a
** database nobody can write). *l0 gets level 0's file count. */
int  store_level0_unthrottles(struct store *s);
int  store_level0_stops(struct store *s, size_t *l0);
/* Whether the last compaction succeeded (1) or failed (0), for
** store_level0_stops. */
void store_compaction_result(struct store *s, int succeeded);

/* Total bytes per level (for compaction debt). */
void store_level_bytes(struct store *s, uint64_t out[MANIFEST_LEVELS]);

#endif
