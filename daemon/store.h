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
};

/* Open (or create) the MANIFEST, doom orphan files, publish the file list. */
int  store_open(struct store *s, sochdb *db);
void store_close(struct store *s);

/* A file number for a new SSTable (recorded by the next store_apply). */
uint64_t store_new_file_number(struct store *s);

/* Write buf as SSTable `number` durably (temporary name, fdatasync, rename,
** fsync of the directory). */
int  store_write_sst(struct store *s, uint64_t number, const uint8_t *buf, size_t len);

/* Apply edit to the MANIFEST (durably), then publish the new file list; the
** files the edit deletes are doomed. Takes the lock. */
int  store_apply(struct store *s, struct manifest_edit *edit);

/* Unlink doomed files no view can read any more; free retired file lists. */
void store_reclaim(struct store *s);

/* Total bytes per level (for compaction debt). */
void store_level_bytes(struct store *s, uint64_t out[MANIFEST_LEVELS]);

#endif
