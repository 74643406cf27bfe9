/*
** db.c — opening and closing a database: the directory and its identity,
** options, attaching to the shared region and a process slot, statistics,
** and what happens to handles across fork().
**
** The directory's identity is a random 16-byte id in DIR/sochdb.id, written
** once (by link(), so two racing creators agree on one). The region carries
** the same id, which is how a region left over from another directory with
** the same inode number is told apart.
*/
#include "internal.h"

#include "tables.h"

#include "error.h"
#include "blockcache.h"
#include "filelist.h"
#include "fsutil.h"
#include "seqring.h"
#include "walfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu-bp.h>

/* ---- handles across fork() ------------------------------------------- */

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static sochdb *handles;
static struct sdb_fork_fd *fork_fds;   /* descriptors a fork() child closes (internal.h) */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* urcu-bp's own fork handling keeps its reader registry sane in the child
** (tables.c reads under it), which may open new handles. */
static void before_fork(void)
{
  pthread_mutex_lock(&handles_lock);
  urcu_bp_before_fork();
}

static void after_fork_parent(void)
{
  urcu_bp_after_fork_parent();
  pthread_mutex_unlock(&handles_lock);
}

/* In the child, every inherited handle dies: its region fd is closed and
** its region unmapped, so that the child does not keep the parent's slot
** lock alive after the parent dies. The lock is an OFD lock on the region's
** open file description, which a mapping references as much as a
** descriptor: a worker forked by a process killed mid-commit kept it held,
** so nobody reaped the dead process and every later commit waited for its
** sequence for as long as the worker lived. */
static void after_fork_child(void)
{
  urcu_bp_after_fork_child();
  for (sochdb *db = handles; db; db = db->next_handle) {
    atomic_store_explicit(&db->forked, 1, memory_order_relaxed);
    if (db->region.fd >= 0)
      close(db->region.fd);
    db->region.fd = -1;
    if (db->region.base)
      munmap(db->region.base, db->region.size);
    db->region.base = NULL;
    db->region.hdr = NULL;
    if (db->lock_fd >= 0)
      close(db->lock_fd);
    db->lock_fd = -1;
  }
  /* A flock held by a thread of the parent (DIR/LOCK.spawn while it starts
  ** a daemon) belongs to the open file description: a child that kept its
  ** copy would hold the lock for as long as it lives. Closed, not unlocked:
  ** LOCK_UN would release the parent's lock too. The nodes live on the
  ** stacks of the parent's threads, which the child has a copy of. */
  for (struct sdb_fork_fd *f = fork_fds; f; f = f->next)
    close(f->fd);
  fork_fds = NULL;
  pthread_mutex_unlock(&handles_lock);
}

static void install_atfork(void) { pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

/* While a handle's region descriptor exists but is not on the list (during
** open and close), no other thread may fork: the child would inherit the
** descriptor, and with it our slot lock and perhaps the creation flock,
** keeping them alive after we die. So open and close hold handles_lock,
** which before_fork also takes. */
static void forbid_fork(void)
{
  pthread_once(&atfork_once, install_atfork);
  pthread_mutex_lock(&handles_lock);
}

static void allow_fork(void) { pthread_mutex_unlock(&handles_lock); }

int sdb_fork_fd_open(struct sdb_fork_fd *f, const char *path, int flags, unsigned mode)
{
  forbid_fork();
  f->fd = open(path, flags | O_CLOEXEC, mode);
  if (f->fd >= 0) {
    f->next = fork_fds;
    fork_fds = f;
  }
  allow_fork();
  return f->fd;
}

void sdb_fork_fd_close(struct sdb_fork_fd *f)
{
  forbid_fork();
  for (struct sdb_fork_fd **p = &fork_fds; *p; p = &(*p)->next)
    if (*p == f) {
      *p = f->next;
      break;
    }
  close(f->fd);
  f->fd = -1;
  allow_fork();
}

/* Callers hold handles_lock. */
static void list_handle(sochdb *db)
{
  db->next_handle = handles;
  handles = db;
}

static void unlist_handle(sochdb *db)
{
  for (sochdb **p = &handles; *p; p = &(*p)->next_handle)
    if (*p == db) {
      *p = db->next_handle;
      break;
    }
}

int sdb_report_bad_db(const sochdb *db)
{
  if (!db)
    return sdb_fail(SOCHDB_INVALID, "NULL database handle");
  return sdb_fail(SOCHDB_INVALID, "database handle inherited across fork(); open a new one in the child");
}

int sdb_report_bad_txn(const sochdb_txn *t)
{
  if (!t)
    return sdb_fail(SOCHDB_INVALID, "NULL transaction");
  return sdb_fail(SOCHDB_INVALID, "the transaction has ended (committed or aborted)");
}

/* ---- the directory ----------------------------------------------------- */

static int ensure_directory(const char *dir, int create, unsigned mode)
{
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return sdb_fail(SOCHDB_INVALID, "%s exists and is not a directory", dir);
    return SOCHDB_OK;
  }
  if (errno != ENOENT)
    return sdb_fail_errno("stat %s", dir);
  if (!create)
    return sdb_fail(SOCHDB_NOTFOUND, "no database at %s", dir);
  if (mkdir(dir, (mode_t)sdb_dir_mode(mode)) != 0) {
    if (errno == EEXIST)
      return SOCHDB_OK;
    return sdb_fail_errno("mkdir %s", dir);
  }
  /* exact bits, like every file of the database: mkdir applied the umask */
  if (chmod(dir, (mode_t)sdb_dir_mode(mode)) != 0)
    return sdb_fail_errno("chmod %s", dir);
  char parent[4200];
  snprintf(parent, sizeof parent, "%s", dir);
  return sdb_fsync_dir(dirname(parent));   /* the new directory's name is durable */
}

static int read_identity(const char *path, uint8_t id[16])
{
  int fd;
  size_t len;
  int e = sdb_open_regular(path, &fd, &len);
  if (e) {
    errno = e;
    return e == ENOENT ? SOCHDB_NOTFOUND
                       : e == EINVAL || e == EISDIR ? sdb_fail(SOCHDB_CORRUPT, "%s is not a regular file", path)
                                     : sdb_fail_errno("open %s", path);
  }
  ssize_t n = read(fd, id, 16);
  uint8_t extra;
  ssize_t more = n == 16 ? read(fd, &extra, 1) : 0;
  close(fd);
  if (n < 0)
    return sdb_fail_errno("read %s", path);
  if (n != 16 || more != 0)
    return sdb_fail(SOCHDB_CORRUPT, "%s is damaged (expected exactly 16 bytes)", path);
  return SOCHDB_OK;
}

/* Write a fresh id to a temporary file and link() it into place: link fails
** with EEXIST if another opener won, and then everybody reads the winner's. */
static int create_identity(const char *dir, const char *path, unsigned mode)
{
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/.sochdb.id.XXXXXX", dir);   /* unique per thread too */
  uint8_t id[16];
  if (getrandom(id, sizeof id, 0) != (ssize_t)sizeof id)
    return sdb_fail_errno("getrandom");
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return sdb_fail_errno("create %s", tmp);
  if (fchmod(fd, mode) != 0) {
    close(fd);
    unlink(tmp);
    return sdb_fail_errno("chmod %s", tmp);
  }
  int ok = write(fd, id, sizeof id) == (ssize_t)sizeof id && fsync(fd) == 0;
  close(fd);
  int rc = SOCHDB_OK;
  if (!ok)
    rc = sdb_fail_errno("write %s", tmp);
  else if (link(tmp, path) != 0 && errno != EEXIST)
    rc = sdb_fail_errno("link %s", path);
  unlink(tmp);
  /* Lose the identity to a power cut and the next open would make a new
  ** one, and find the log "another database's". */
  return rc == SOCHDB_OK ? sdb_fsync_dir(dir) : rc;
}

/* Read the database's id, creating it (with *mode) if missing and create is
** set. *mode becomes the database's mode: the one its creator gave the id
** file, which every file made later takes too (sdb_apply_db_mode), whatever
** file_mode a later opener passes. */
static int load_identity(const char *dir, int create, unsigned *mode, uint8_t id[16])
{
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, SDB_ID_FILE);
  int rc = read_identity(path, id);
  if (rc == SOCHDB_NOTFOUND && !create)
    return sdb_fail(SOCHDB_NOTFOUND, "%s is not a sochdb database (no %s)", dir, SDB_ID_FILE);
  if (rc == SOCHDB_NOTFOUND && (rc = create_identity(dir, path, *mode)) == SOCHDB_OK)
    rc = read_identity(path, id);
  struct stat st;
  if (rc == SOCHDB_OK && stat(path, &st) == 0)
    *mode = st.st_mode & 0777;
  return rc;
}

int sdb_dir_is_ours(const sochdb *db)
{
  char path[4200];
  uint8_t id[16];
  snprintf(path, sizeof path, "%s/%s", db->dir, SDB_ID_FILE);
  if (read_identity(path, id) == SOCHDB_OK && memcmp(id, db->region.hdr->db_id, sizeof id) == 0)
    return SOCHDB_OK;
  return sdb_fail(SOCHDB_IO, "%s no longer holds this database (deleted, or replaced by another): nothing is "
                  "written or removed there", db->dir);
}

/* ---- options ----------------------------------------------------------- */

static int resolve_options(const sochdb_options *o, struct shm_open_params *p, unsigned *busy_ms, int *create)
{
  sochdb_options d;
  memset(&d, 0, sizeof d);
  if (!o)
    o = &d;
  p->region_bytes = o->region_bytes ? o->region_bytes : SHM_DEFAULT_REGION_BYTES;
  p->memtable_bytes = o->memtable_bytes ? o->memtable_bytes : SHM_DEFAULT_MEMTABLE_BYTES;
  p->file_mode = o->file_mode ? o->file_mode : 0600;
  *busy_ms = o->busy_timeout_ms ? o->busy_timeout_ms : 10000;
  *create = o->create_if_missing >= 0;
  p->cache_bytes = o->cache_bytes ? o->cache_bytes : p->region_bytes / 16 < (64u << 20) ? p->region_bytes / 16
                                                                                         : (64u << 20);
  if (p->cache_bytes > p->region_bytes / 2)
    return sdb_fail(SOCHDB_INVALID, "cache_bytes %zu is more than half the region", o->cache_bytes);
  if (p->memtable_bytes < SHM_MIN_MEMTABLE_BYTES || p->memtable_bytes > SHM_MAX_MEMTABLE_BYTES ||
      p->memtable_bytes % 4096)
    return sdb_fail(SOCHDB_INVALID, "memtable_bytes must be a multiple of 4096 from 1 MiB to 4 GiB, not %zu",
                    o->memtable_bytes);
  if (p->region_bytes > (1ull << 40) || p->region_bytes % 4096)
    return sdb_fail(SOCHDB_INVALID, "region_bytes must be a multiple of 4096 up to 1 TiB, not %zu",
                    o->region_bytes);
  if (p->file_mode & ~0777u)
    return sdb_fail(SOCHDB_INVALID, "file_mode %o has bits beyond 0777", p->file_mode);
  /* Before anything is created: a refused open leaves no directory or
  ** sochdb.id behind (which a later create_if_missing < 0 would accept). */
  return shm_layout_check(p->region_bytes, p->memtable_bytes, p->cache_bytes);
}

/* ---- open / close ------------------------------------------------------ */

int sochdb_open(const char *dir, const sochdb_options *opts, sochdb **out)
{
  char saved[SDB_ERROR_DETAIL_BYTES];
  sdb_save_error(saved);
  int rc = sdb_open(dir, opts, 0, out);
  if (rc == SOCHDB_OK)
    sdb_restore_error(saved);
  return rc;
}

int sdb_open(const char *dir, const sochdb_options *opts, int as_daemon, sochdb **out)
{
  if (!dir || !*dir || !out)
    return sdb_fail(SOCHDB_INVALID, "sochdb_open needs a directory and an output handle");
  *out = NULL;
  if (sdb_reserve_standard_fds() != 0)
    return sdb_fail_errno("a standard descriptor (0, 1 or 2) is closed, and /dev/null could not take it: the "
                          "database's files would get its number");
  struct shm_open_params p;
  memset(&p, 0, sizeof p);
  unsigned busy_ms;
  int create;
  int rc = resolve_options(opts, &p, &busy_ms, &create);
  if (rc == SOCHDB_OK)
    rc = ensure_directory(dir, create, p.file_mode);
  if (rc == SOCHDB_OK)
    rc = load_identity(dir, create, &p.file_mode, p.db_id);
  if (rc != SOCHDB_OK)
    return rc;
  sochdb *db = calloc(1, sizeof *db);
  if (!db || !(db->dir = sdb_absolute_path(dir))) {
    int e = errno;
    free(db);
    errno = e;
    return e == ENOMEM ? sdb_fail(SOCHDB_NOMEM, "allocating the database handle") : sdb_fail_errno("getcwd");
  }
  p.dir = dir;
  p.populate = sdb_replay_wal;          /* a region made anew is filled from the WAL */
  p.populate_ctx = db->dir;
  p.keep_locked = 1;                    /* our slot is taken before another opener may judge the region unused */
  db->lock_fd = -1;
  forbid_fork();
  rc = shm_region_open(&p, &db->region);
  if (rc == SOCHDB_OK) {
    rc = slots_attach(&db->region, as_daemon, &db->slot);
    shm_region_unlock(&db->region);
    if (rc != SOCHDB_OK)
      shm_region_close(&db->region);
  }
  if (rc == SOCHDB_OK)
    list_handle(db);
  allow_fork();
  if (rc != SOCHDB_OK) {
    free(db->dir);
    free(db);
    return rc;
  }
  db->busy_timeout_ms = busy_ms;
  db->max_version_bytes = db->region.hdr->memtable_bytes / 2;
  db->flush_backlog = sdb_flush_backlog_limit(&db->region);
  pthread_mutex_init(&db->tables_lock, NULL);
  rc = sdb_daemon_setup(db, opts ? opts->daemon_path : NULL, p.file_mode, !as_daemon);
  if (rc != SOCHDB_OK) {
    int saved = rc;
    char why[512];
    snprintf(why, sizeof why, "%s", sochdb_last_error());
    sochdb_close(db);
    return sdb_fail(saved, "%s", why);
  }
  *out = db;
  return SOCHDB_OK;
}

void sochdb_close(sochdb *db)
{
  if (!db)
    return;
  if (atomic_load_explicit(&db->forked, memory_order_relaxed)) {
    /* An inherited copy in a fork child: the slot is the parent's, and the
    ** mutexes may have been held by threads that do not exist here. Only
    ** unmap and free. */
    forbid_fork();
    unlist_handle(db);
    allow_fork();
    if (db->region.base)
      munmap(db->region.base, db->region.size);
    sdb_txn_free(db->spare);
    free(db->dir);
    free(db);
    return;
  }
  sdb_txn_abort_all(db);
  sdb_txn_free(db->spare);
  sdb_tables_close(db);
  pthread_mutex_destroy(&db->tables_lock);
  forbid_fork();
  slots_detach(&db->region, db->slot);
  shm_region_close(&db->region);
  unlist_handle(db);
  allow_fork();
  if (db->lock_fd >= 0)
    close(db->lock_fd);
  free(db->dir);
  free(db);
}

int sdb_daemon_serves(sochdb *db)
{
  int serves = flock(db->lock_fd, LOCK_SH | LOCK_NB) != 0;   /* refused: a daemon holds it exclusively */
  if (!serves)
    flock(db->lock_fd, LOCK_UN);
  return serves;
}

/* The flusher's, compactor's and block cache's figures, and the live files. */
static void collect_storage_stats(sochdb *db, sochdb_stats *out)
{
  const struct shm_header *h = db->region.hdr;
  const struct shm_global_stats *g = &h->stats;
  out->flushes = atomic_load_explicit(&g->flushes, memory_order_relaxed);
  out->flush_bytes = atomic_load_explicit(&g->flush_bytes, memory_order_relaxed);
  out->compactions = atomic_load_explicit(&g->compactions, memory_order_relaxed);
  out->compact_bytes_read = atomic_load_explicit(&g->compact_bytes_read, memory_order_relaxed);
  out->compact_bytes_written = atomic_load_explicit(&g->compact_bytes_written, memory_order_relaxed);
  out->compaction_debt_bytes = atomic_load_explicit(&g->compact_debt_bytes, memory_order_relaxed);
  out->wal_segments_removed = atomic_load_explicit(&g->wal_segments_removed, memory_order_relaxed);
  out->sst_files = (uint32_t)atomic_load_explicit(&g->live_files, memory_order_relaxed);
  out->l0_files = (uint32_t)atomic_load_explicit(&g->live_l0_files, memory_order_relaxed);
  out->sst_bytes = atomic_load_explicit(&g->live_file_bytes, memory_order_relaxed);
  out->compact_throttle_us = atomic_load_explicit(&g->compact_throttle_us, memory_order_relaxed);
  out->l0_stops = atomic_load_explicit(&g->l0_stops, memory_order_relaxed);
  out->l0_stop_us = atomic_load_explicit(&g->l0_stop_us, memory_order_relaxed);
  if (h->cache_off) {
    struct bc_stats bc;
    bc_get_stats(shm_at(&db->region, h->cache_off), &bc);
    out->cache_bytes = h->cache_bytes;
    out->cache_hits += bc.hits;       /* lookups counted in no slot (bc_lookup); the rest: slots_collect_stats */
    out->cache_misses += bc.misses;
    out->cache_inserts = bc.inserts;
    out->cache_evictions = bc.evictions;
  }
}

int sochdb_stats_get(sochdb *db, sochdb_stats *out)
{
  int rc = sdb_check_db(db);
  if (rc != SOCHDB_OK)
    return rc;
  if (!out)
    return sdb_fail(SOCHDB_INVALID, "NULL stats output");
  memset(out, 0, sizeof *out);
  slots_reap_all(&db->region, db->slot);   /* report the living, not the dead */
  slots_collect_stats(&db->region, db->slot, out);
  const struct shm_header *h = db->region.hdr;
  out->region_bytes = h->region_bytes;
  out->memtable_bytes = h->memtable_bytes;
  out->memtables_total = h->n_memtables;
  struct mt_view v;
  arena_view(&db->region, &v);
  out->memtables_in_use = v.n;
  out->durable_seq = atomic_load_explicit(&h->durable_seq, memory_order_acquire);
  out->wal_groups = atomic_load_explicit(&h->stats.wal_groups, memory_order_relaxed);
  out->wal_records = atomic_load_explicit(&h->stats.wal_records, memory_order_relaxed);
  out->wal_bytes = atomic_load_explicit(&h->stats.wal_bytes, memory_order_relaxed);
  out->daemon_running = (uint32_t)sdb_daemon_serves(db);
  uint64_t *lsns;
  size_t nseg;
  if (wal_list_segments(db->dir, &lsns, &nseg) == SOCHDB_OK) {
    out->wal_segments = (uint32_t)nseg;
    free(lsns);
  }
  for (uint32_t i = 0; i < v.n; i++) {
    struct shm_memtable *m = arena_memtable(&db->region, v.idx[i]);
    uint64_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
    out->memtable_used_bytes += used < m->capacity ? used : m->capacity;
  }
  collect_storage_stats(db, out);
  return SOCHDB_OK;
}

const char *sochdb_region_path(sochdb *db) { return db ? db->region.path : NULL; }
