/*
** walwriter.h — the daemon's WAL writer: it turns published commits into
** log groups, one write and one fdatasync per group, and publishes what is
** durable. It also adopts the log when a daemon starts: it finds the end of
** the last segment, cuts off a torn tail (an interrupted, never acknowledged
** group), and makes durable what the previous daemon wrote but had not yet
** confirmed.
*/
#ifndef SOCHDB_WALWRITER_H
#define SOCHDB_WALWRITER_H

#include "internal.h"
#include "walfmt.h"

#include <pthread.h>

/* Segments this writer closed, newest last: what the flusher would otherwise
** learn by reading each one back (flusher.c, truncate_wal). */
#define WW_CLOSED_MAX 64
struct ww_closed_segment {
  uint64_t lsn;       /* its first LSN: its name */
  uint64_t seq_bound; /* every commit it logs is at or below this */
};

struct walwriter {
  sochdb     *db;
  shm_region *r;
  int         fd;             /* the current segment */
  uint64_t    seg_first_lsn;
  uint64_t    salt;           /* the current segment's (wal_seg_salt) */
  uint64_t    end_offset;     /* where the next group goes in the segment */
  uint64_t    last_group;     /* where the last group written whole starts (0: none in this segment) */
  uint64_t    adopted_from;   /* where ww_open's scan of the last segment began (0: it made a new one) */
  uint64_t    zeroed_end;     /* zeros, a hole or (a reused file) an earlier use's bytes from end_offset to
                              ** here: its runway, written over without growing the file; the file may go
                              ** on past it after a runway write failed part-way */
  size_t      group_cap;      /* 0: GROUP_CAP_BYTES; halved after each failed group write (a nearly full disk) */
  int         runway_failed;  /* logged that this segment's groups are appended, for want of room */
  uint64_t    next_lsn;
  uint64_t    next_seq;       /* the first commit not yet written */
  uint64_t    last_logged;    /* the newest commit this writer logged (0: none yet): the next segment's
                              ** prev_seq (walfmt.h) */
  uint8_t    *buf;            /* one group being built */
  size_t      cap;
  int         dir_unsynced;   /* the current segment's directory entry is not yet durable */
  pthread_mutex_t          closed_lock;   /* the writer adds, the flusher looks */
  struct ww_closed_segment closed[WW_CLOSED_MAX];   /* a ring; the oldest are forgotten */
  unsigned                 nclosed;       /* segments closed since ww_open */
  /* Set by the flusher while a memtable waits for its flush (flusher.c,
  ** ask_room_for_table): a group must leave room_bytes free on the disk for
  ** its table, which alone gives the log's space back, unless the log does
  ** not yet hold room_seq, the newest commit of a table built and waiting
  ** for the log (0: none built yet). room_bytes 0: no flush waits. */
  _Atomic uint64_t         room_seq;
  _Atomic uint64_t         room_bytes;
  int                      tables_elsewhere;   /* DIR/wal is on another filesystem than DIR: no room to leave */
  pthread_mutex_t          pool_lock;     /* the flusher adds, the writer takes */
  uint64_t                 pool[WAL_FREE_MAX];   /* DIR/wal/<lsn>.free, each durable under that name */
  unsigned                 npool;
};

/* Held (read) while the writer follows commit-record offsets of the ring,
** (write) while the flusher forgets those into an arena it recycles: an
** offset the writer loaded just before the forget (a stale one, of a
** committer that died before it set its record) must not be followed into
** pages the recycling then punches (reading a hole would allocate a page,
** a SIGBUS on a full tmpfs). Both threads are the daemon's. */
extern pthread_rwlock_t ww_records_lock;

/* Adopt or create the log. Logs what it repaired to stderr. */
int  ww_open(struct walwriter *w, sochdb *db);
/* Write every published commit not yet written as one group and make it
** durable. Returns 1 if it wrote, 0 if there was nothing, or an error code
** (negative) after which nothing was published and the call may be retried. */
int  ww_write_pending(struct walwriter *w);
void ww_close(struct walwriter *w);
/* A bound on the seqs that segment `lsn` logs, if this writer closed it
** (1); 0 if it did not, or forgot it (the caller reads the segment). Any
** thread. */
int  ww_closed_seq_bound(struct walwriter *w, uint64_t lsn, uint64_t *seq_bound);

/* Whether the flusher should keep a removed segment's file for reuse
** (renamed to DIR/wal/<lsn>.free) rather than unlink it, with `pending`
** such files it renamed but has not added yet: the pool has room for one
** more and the disk has room to spare. Any thread. */
int  ww_pool_wants(struct walwriter *w, unsigned pending);
/* The file of segment lsn, renamed to its .free name and that rename made
** durable (its directory synced), is the writer's to reuse. Any thread. */
void ww_pool_add(struct walwriter *w, uint64_t lsn);
/* Remove the files kept for reuse: a daemon that leaves gives their disk
** space back (up to WAL_FREE_MAX segments'), as SQLite's last connection
** gives back its WAL's. Once the flusher and the writer have stopped. */
void ww_release_pool(struct walwriter *w);

void ww_log(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
