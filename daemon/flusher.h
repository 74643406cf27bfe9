/*
** flusher.h — the daemon's flush thread: rotated-out memtables become level-0
** SSTables; the WAL they cover is removed; their arenas are recycled once no
** snapshot needs them.
*/
#ifndef SOCHDB_DAEMON_FLUSHER_H
#define SOCHDB_DAEMON_FLUSHER_H

#include "store.h"

struct wal_seg_info {
  uint64_t lsn;
  uint64_t max_seq;            /* newest commit in it (0 = none) */
};

struct walwriter;

struct flusher {
  struct store        *s;
  struct walwriter    *w;      /* the writer of the log (NULL: read segments to learn their seqs) */
  struct wal_seg_info *segs;   /* what we learnt about old WAL segments */
  size_t               nsegs;
  _Atomic int         *stop;   /* set when the daemon stops: a flush waiting to seal gives up */
  /* Pages kept by recycled arenas (shm/arena.h): when each free arena was
  ** first seen holding some (0: not), and the active memtable's growth. */
  uint64_t             spare_since[SHM_MAX_MEMTABLES];
  uint64_t             watch_id, watch_used, watch_ns;
  uint64_t             spare_keep_ns;  /* how long a spare may wait for a rotation; 0: keep none */
  int                  trim_eager;  /* sochdbd-testing: trim to the fill point every round */
  int                  held;        /* the oldest memtable's flush waits for level 0 to have room */
};

/* One round: flush the oldest rotated-out memtable if there is one, retire
** and recycle flushed ones, remove covered WAL segments. Returns 1 if it
** flushed a memtable, 0 if there was nothing to flush, or minus an error
** code (the round can be retried). */
int  flusher_step(struct flusher *f);
/* The flusher's thread has stopped (the daemon leaves): the room it asked
** the log to leave for a table is given back, since no table of this daemon
** will take it. Call before the WAL writer's last passes. */
void flusher_stopped(struct flusher *f);
void flusher_free(struct flusher *f);

#endif
