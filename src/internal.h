/*
** internal.h — the private definitions behind the public opaque handles:
** struct sochdb (one process's attachment) and struct sochdb_txn.
*/
#ifndef SOCHDB_INTERNAL_H
#define SOCHDB_INTERNAL_H

#include "sochdb.h"

#include "arena.h"
#include "fsutil.h"   /* SDB_ID_FILE */
#include "region.h"
#include "skiplist.h"
#include "slots.h"
#include "sstfmt.h"
#include "wbuf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* Where a handle's last commit left its skiplist searches, for its next
** commit to resume from (txn.c): keys committed in increasing order across
** commits (a bulk load, an append-only log) then cost a link or two each in
** every memtable instead of a descent from the head. The fingers are region
** offsets; a commit uses one only for a memtable live in its view or active
** (so kept by its commit epoch: txn.c, resume_finger) whose id is still the
** one saved with it. Zeroed, it matches nothing (memtable ids start at 1). */
struct commit_fingers {
  struct sl_finger active;                     /* the installs', in the active memtable */
  uint64_t         active_id;
  struct sl_finger older[SHM_MAX_MEMTABLES];   /* the conflict checks', by memtable index */
  uint64_t         older_id[SHM_MAX_MEMTABLES];
};

struct sochdb {
  shm_region      region;
  uint32_t        slot;               /* our process slot */
  unsigned        busy_timeout_ms;
  uint64_t        max_version_bytes;  /* a version must fit comfortably in one arena */
  uint32_t        flush_backlog;      /* the write stall's limit, in memtables (txn.c) */
  _Atomic uint64_t entry_bits[SHM_TXNS_PER_SLOT / 64];  /* transaction entries in use */
  _Atomic int     forked;             /* set in a fork() child: the handle is dead there */
  /* Open transactions by entry, for sochdb_close. Each element is written
  ** only by the thread that holds its entry bit, and close runs after
  ** every other call on the handle, so plain stores do: no lock on begin. */
  struct sochdb_txn *open_txns[SHM_TXNS_PER_SLOT];
  struct sochdb_txn *_Atomic spare;   /* a finished transaction's object, for the next begin (txn.c) */
  struct sochdb  *next_handle;        /* process-wide list, for the fork handler */
  char           *dir;
  int             lock_fd;            /* DIR/LOCK, probed to see whether sochdbd runs */
  _Atomic uint64_t daemon_probe_ns;   /* when we last probed (rate limit) */
  _Atomic uint64_t daemon_retry_ns;   /* no new start attempt before this (after a failed one) */
  _Atomic int      successor_lapsed;  /* a wait for a leaving daemon's successor ran out (src/txn.c) */
  char            daemon_path[4096];  /* the sochdbd we start when none runs */
  struct sdb_tables *_Atomic tables;  /* mapped SSTables, read under urcu (tables.c) */
  pthread_mutex_t tables_lock;        /* serialises building a new set */
  _Atomic int     fingers_busy;       /* a commit holds `fingers` (threads sharing the handle) */
  struct commit_fingers fingers;
};

/* Copies a transaction hands out (values of compressed blocks, keys of
** SSTable entries): they must live until the transaction ends. */
struct txn_keep {
  struct txn_keep *next;
  size_t used, cap;
  uint8_t data[];
};

/* Not zeroed: sochdb_txn_begin sets every field but writes and scratch,
** which a reused object (the handle's spare, txn.c) brings emptied. */
struct sochdb_txn {
  sochdb         *db;                 /* NULL once it ended (a handle's spare) */
  uint64_t        generation;         /* bumped by every begin that reuses the object */
  uint32_t        iters;              /* iterators (and scans) open on it: while there are any, an
                                      ** ended t is kept (db NULL), neither reused nor freed (iter.c) */
  int             orphan;             /* ended with iterators open: the last iterator_close frees it */
  unsigned        flags;
  uint32_t        entry;              /* our transaction entry in the slot */
  uint64_t        snapshot;
  struct mt_view  view;               /* live memtables when the snapshot was taken */
  struct wbuf     writes;
  struct sdb_tables *tables;          /* SSTables it reads, NULL until its first read (tables.h) */
  struct sst_scratch scratch;         /* decompressed blocks for gets */
  struct txn_keep *keep;
  uint64_t        tables_checked[4];  /* serials of table handles sdb_table_check passed in this transaction */
  unsigned        ntables_checked;    /* how many were ever added (the array is a ring) */
};

/* Buffer a write (tombstone 1: a delete) or read a key, like sochdb_put,
** sochdb_delete and sochdb_get, but for any key, the reserved ones
** (0xFF 0xFF ..., rowfmt.h) included: for the table layer (table.c). */
int  sdb_write(sochdb_txn *t, const void *key, size_t klen, const void *val, size_t vlen, int tombstone);
int  sdb_get(sochdb_txn *t, const void *key, size_t klen, const void **val, size_t *vlen);

/* An iterator like sochdb_iter_open's over any range (reserved keys
** included), reading columnar blocks through proj (NULL: whole rows) and
** counting what it reads into stats (may be NULL). transient: keys and
** values stay valid until the next sochdb_iter_next only, instead of until
** the transaction ends. o (copied) may be NULL. */
struct sdb_iter_opts {
  const struct sst_projection *proj;
  struct sst_read_stats       *stats;
  int                          transient;
};
int  sdb_iter_open(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                   const struct sdb_iter_opts *o, sochdb_iter **out);

/* A whole columnar block, for table scans (sst_iter_take_block): rows
** 0..nrows-1 of cv are the next keys, every one live and visible, and no
** other source holds a key among them. cv NULL: a single key instead. */
struct sdb_iter_block {
  const struct sst_colview *cv;
  uint32_t                  nrows;
  int                       skipped;   /* min/max excluded the projection's filter: no row passes */
};
/* sochdb_iter_next, but hands over a block at once where it can (blk->cv
** set; valid until the next call); otherwise blk->cv is NULL and the key
** and value are set. An iterator opened with a projection only. */
int  sdb_iter_next_rows(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen,
                        struct sdb_iter_block *blk);
/* SOCHDB_OK while its transaction is the one it was opened in and live;
** else SOCHDB_INVALID: the tables a block handed over points into may be
** unmapped. */
int  sdb_iter_check(const sochdb_iter *it);

/* A copy of p[0..n) that lives until t ends, or NULL (out of memory). */
const void *sdb_txn_keep(sochdb_txn *t, const void *p, size_t n);

/* sochdb_open, for sochdbd too (as_daemon: its slot is not a client's). */
int  sdb_open(const char *dir, const sochdb_options *opts, int as_daemon, sochdb **out);

/* A descriptor whose flock must not outlive this process in a fork() child
** (DIR/LOCK.spawn): opened and closed while no thread can fork, and listed
** meanwhile, so that a child forked in between closes its copy. The node is
** the caller's (on its stack) until sdb_fork_fd_close. Returns the fd or -1. */
struct sdb_fork_fd {
  int                 fd;
  struct sdb_fork_fd *next;
};
int  sdb_fork_fd_open(struct sdb_fork_fd *f, const char *path, int flags, unsigned mode);
void sdb_fork_fd_close(struct sdb_fork_fd *f);

/* SOCHDB_OK, or SOCHDB_INVALID for a NULL handle or transaction, one
** inherited across fork(), or a transaction that ended. Inline tests in
** front of the reports: every call of the API makes them, a scan on every
** key. */
int  sdb_report_bad_db(const sochdb *db);
int  sdb_report_bad_txn(const sochdb_txn *t);
static inline int sdb_check_db(const sochdb *db)
{
  /* relaxed: set by the fork child handler in this same thread */
  return db && !atomic_load_explicit(&db->forked, memory_order_relaxed) ? SOCHDB_OK : sdb_report_bad_db(db);
}
static inline int sdb_check_txn(const sochdb_txn *t)
{
  return t && t->db ? sdb_check_db(t->db) : sdb_report_bad_txn(t);
}
/* SOCHDB_OK while db->dir still holds the database db opened (its
** sochdb.id); SOCHDB_IO once it was deleted or replaced by another, perhaps
** at the same path. The daemon asks before it creates, renames or removes a
** file by path, so that a daemon outliving its database never writes into
** or removes from a new one made where it was. */
int  sdb_dir_is_ours(const sochdb *db);
/* Nanoseconds on CLOCK_MONOTONIC: the clock of retry and idle deadlines. */
static inline uint64_t sdb_monotonic_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline struct shm_txn_entry *sdb_txn_entry(const sochdb_txn *t)
{ return shm_txn_entry_at(&t->db->region, t->db->slot, t->entry); }

void sdb_txn_abort_all(sochdb *db);   /* used by sochdb_close */
/* The write stall's limit for r's memtable size, in memtables (txn.c):
** computed once per handle, at open. */
uint32_t sdb_flush_backlog_limit(const shm_region *r);
void sdb_txn_free(sochdb_txn *t);     /* a transaction object and all it owns; NULL: nothing */
int  sdb_txn_tables(sochdb_txn *t);   /* take t->tables if not yet taken (txn.c) */

/* Make sure a sochdbd serves this database, starting one if none does.
** Cheap when one runs (one flock probe, rate-limited). Returns SOCHDB_OK or
** SOCHDB_DAEMON. */
int  sdb_daemon_ensure(sochdb *db);
/* The same, giving up on a daemon start after max_wait_ms (the caller's
** deadline): neither the spawn lock nor a starting daemon is waited for
** longer. */
int  sdb_daemon_ensure_within(sochdb *db, unsigned max_wait_ms);
/* At open: open DIR/LOCK, choose the daemon binary, and (if ensure) make
** sure one runs. */
int  sdb_daemon_setup(sochdb *db, const char *daemon_path, unsigned mode, int ensure);
/* Take DIR/LOCK exclusively (waiting at most 10 s for a daemon holding it to
** leave) so that no daemon writes the log until *fd_out is closed. */
int  sdb_daemon_lock_out(const char *dir, int *fd_out);
/* The pid of the sochdbd holding DIR/LOCK, or 0: none holds it, the holder
** has not written its pid yet, or the pid in the file is no sochdbd
** (/proc/PID/comm), so that a reused pid is never taken for a daemon. */
pid_t sdb_daemon_pid(const char *dir);
/* Whether a daemon holds db's DIR/LOCK now (a probe with our own handle). */
int   sdb_daemon_serves(sochdb *db);
/* Whether some process holds db's DIR/LOCK (1), none does (0), or -1 on error. */
int  sdb_daemon_lock_held(const sochdb *db);
/* Send sig to the sochdbd holding DIR/LOCK (SIGTERM: it writes what was
** published, then exits) and wait up to timeout_ms until the lock is free.
** SOCHDB_OK once no daemon holds it (none at all included); SOCHDB_BUSY,
** naming the pid in sochdb_last_error(), if one still does; SOCHDB_IO if
** LOCK cannot be opened. For tools and tests: clients never stop daemons. */
int  sdb_daemon_stop(const char *dir, int sig, unsigned timeout_ms);
/* Ask the daemon for a full compaction (`sochdb compact`): the request lives
** in the region, so whichever daemon runs next answers it. Returns the
** ticket that sdb_full_compaction_done compares with. */
uint64_t sdb_full_compaction_request(sochdb *db);
/* Whether the daemon finished the full compaction of ticket or of a later
** request (it marks done the newest request it saw when it began the job). */
int      sdb_full_compaction_done(const sochdb *db, uint64_t ticket);
/* The MANIFEST state's files as the region lists them (shm/filelist.h):
** level 0 newest first, deeper levels by smallest key. *out is malloc'ed. */
struct manifest_state;
struct fl_file;
int  sdb_state_file_list(const struct manifest_state *st, struct fl_file **out, uint32_t *n);
/* Replay DIR/wal into a region being created (shm_open_params.populate). */
int  sdb_replay_wal(shm_region *r, void *dir);

#endif
