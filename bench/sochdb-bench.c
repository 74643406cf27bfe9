/*
** sochdb-bench.c — the benchmark of sochdb's durable commit path, of point
** reads from SSTables and of the write and space amplification of flushing
** and compaction.
**
**   sochdb-bench [--dir D] [--json FILE] [options] WORKLOAD...
**
** Workloads (run in this order, whatever the order given):
**  - sync_commit: one-put SOCHDB_SYNC transactions from P processes at once,
**    for each P of --procs. The daemon writes every commit published since
**    its last group with one fdatasync, so P processes that each wait for
**    their commit can at best commit P times per fdatasync: P divided by the
**    disk's fdatasync latency is the target. The benchmark measures that
**    latency first (4 KiB appends, each fdatasync'd, in the same directory)
**    and prints commits/s, the average group, fdatasyncs/s, commit latency
**    and how much of the target was reached.
**  - fill_async: one-put SOCHDB_ASYNC transactions from one process.
**  - recovery: fill a database with --recovery-mb of data, then time
**    sochdb_open + one get (a) after SIGKILL of the daemon (the region
**    survives), (b) after the region file was removed (rebuilt from the WAL,
**    page cache warm) and (c) the same with the WAL evicted from the page
**    cache.
**  - read_sst: load --read-keys keys (batched ASYNC transactions) into a
**    database with a small memtable (--memtable-mb), wait until the daemon
**    has flushed and compaction has settled, then do random point reads,
**    one READONLY transaction each, every value checked, from each process
**    count of --read-procs for --seconds: reads/s, latency, the block
**    cache's hit rate, and how much of the data was in SSTables.
**  - amplification: random overwrites of --amp-memtables memtables' worth
**    of data over a key space of a quarter of the puts, wait until flushing
**    and compaction have settled, then write amplification = (flush_bytes +
**    compact_bytes_written) / user_bytes and space amplification =
**    sst_bytes (+ the WAL files) / the live keys and values; then the same
**    volume of new keys in key order on a fresh database (compaction moves
**    such files down a level without rewriting them).
**  - memory: how much memory the shared region and the daemon hold, on a
**    database with the library's default sizes (64 MiB memtables): empty;
**    with --memory-mb of keys and values in its memtable (none flushed yet),
**    resident region ÷ that live data; and after 3 memtables more were
**    written, flushed and compacted, once the region stopped changing (a
**    recycled arena gives its pages back, or keeps them for a second for
**    the next memtable, which is then trimmed). Resident = the region file's allocated
**    pages (st_blocks: a tmpfs page is memory); the daemon's RSS and its
**    private memory outside the region and the database's files.
**
**  - read_hot: the fixed cost of a read-only transaction. --hot-keys keys
**    (they fit the memtable and the CPU's caches) are written once; then
**    --hot-rounds rounds of 0.2 s each of one READONLY transaction + one get
**    of a random key (value checked) + abort. The best round's nanoseconds a
**    transaction, and the median: the best is what changes to begin, get
**    and abort move, where this machine's run-to-run swing hides them in
**    the comparison's reads of a large database.
**
** `sochdb-bench compare ...` runs the comparison with LMDB, SQLite and
** RocksDB instead (compare.c).
**
** Every workload gets a fresh database in a fresh directory under /var/tmp
** (or --dir); the filesystem type is checked with statfs and printed, since
** fdatasync figures of a tmpfs mean nothing. Each commit writes a value
** derived from its key and every key written is read back and compared: a
** wrong or missing value fails the run (exit 1). At the end the directory,
** the region files and the daemons the benchmark started are gone.
** bench/README.md explains every figure.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "common.h"
#include "compare.h"
#include "walfmt.h"   /* wal_list_segments, wal_segment_path: the WAL files recovery evicts and sizes */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>   /* mallopt: see workload_recovery */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_BLOCK     4096u    /* bytes per append in the fdatasync probe */
#define AMP_KEYSPACE    4u       /* amplification: key space = puts / AMP_KEYSPACE */

/* ---- configuration -------------------------------------------------------- */

enum { W_SYNC = 1u, W_ASYNC = 2u, W_RECOVERY = 4u, W_READ = 8u, W_AMP = 16u, W_MEMORY = 32u, W_HOT = 64u };
#define W_ALL (W_SYNC | W_ASYNC | W_RECOVERY | W_READ | W_AMP | W_MEMORY | W_HOT)

struct config {
  const char *base;           /* the fresh directory is made in here */
  const char *json;           /* NULL: no JSON file */
  struct proc_list procs;      /* sync_commit rows */
  struct proc_list read_procs; /* read_sst rows */
  double      seconds;        /* per sync_commit and read_sst row, and for fill_async */
  double      fsync_seconds;  /* the fdatasync probe */
  unsigned    key_bytes, value_bytes;
  unsigned    value_random_pct; /* the share of each value that is random bytes; the rest is one byte */
  unsigned    recovery_mb;
  unsigned    region_mb;      /* shared region of each database (sparse) */
  unsigned    cache_mb;       /* block cache of each database; 0 = the library's default */
  unsigned    memtable_mb;    /* memtable of the read_sst and amplification databases */
  unsigned    read_keys;      /* keys read_sst loads */
  unsigned    amp_memtables;  /* amplification writes this many memtables' worth */
  unsigned    memory_mb;      /* keys and values the memory workload keeps in its memtable */
  unsigned    batch;          /* puts per transaction of the read_sst and amplification loads */
  unsigned    hot_keys, hot_rounds;   /* read_hot */
  unsigned    workloads;      /* W_* bits */
};

static void usage(FILE *out)
{
  fprintf(out,
    "usage: sochdb-bench [options] WORKLOAD...\n"
    "       sochdb-bench compare [options] [WORKLOAD...]   (sochdb against LMDB, SQLite, RocksDB; compare --help)\n"
    "  workloads: sync_commit fill_async recovery read_sst amplification memory read_hot (or all)\n"
    "  --dir D            make the benchmark's directory in D (default " DEFAULT_BASE ")\n"
    "  --json FILE        also write the figures as JSON to FILE\n"
    "  --procs LIST       process counts of sync_commit (default 1,8,32; at most %u)\n"
    "  --read-procs LIST  process counts of read_sst (default 1,2)\n"
    "  --seconds S        run time of each sync_commit and read_sst row, and of fill_async (default 3)\n"
    "  --fsync-seconds S  run time of each fdatasync probe: appends, overwrites, 8 overwriters at once (default 2)\n"
    "  --key-bytes N      key size, 8..4096 (default 16)\n"
    "  --value-bytes N    value size, 0..1048576 (default 100)\n"
    "  --value-random-pct N  percent of each value that is random bytes, the rest compresses (default 100)\n"
    "  --recovery-mb N    keys and values the recovery workload writes (default 32)\n"
    "  --region-mb N      shared region of each database, sparse (default 4096)\n"
    "  --cache-mb N       block cache of each database (default 0: the library's, region/16, at most 64)\n"
    "  --memtable-mb N    memtable of the read_sst and amplification databases (default 8)\n"
    "  --read-keys N      keys read_sst loads (default 1000000)\n"
    "  --amp-memtables N  amplification writes N memtables' worth of keys and values (default 10)\n"
    "  --memory-mb N      keys and values the memory workload keeps in one 64 MiB memtable (default 32)\n"
    "  --batch N          puts per transaction of those loads (default 100)\n"
    "  --hot-keys N       keys read_hot reads (default 10000, at most 1000000)\n"
    "  --hot-rounds N     rounds of 0.2 s of read_hot, the best one counts (default 15)\n",
    MAX_PROCS);
}

static int parse_workload(const char *w, struct config *c)
{
  if (!strcmp(w, "sync_commit"))
    c->workloads |= W_SYNC;
  else if (!strcmp(w, "fill_async"))
    c->workloads |= W_ASYNC;
  else if (!strcmp(w, "recovery"))
    c->workloads |= W_RECOVERY;
  else if (!strcmp(w, "read_sst"))
    c->workloads |= W_READ;
  else if (!strcmp(w, "amplification"))
    c->workloads |= W_AMP;
  else if (!strcmp(w, "memory"))
    c->workloads |= W_MEMORY;
  else if (!strcmp(w, "read_hot"))
    c->workloads |= W_HOT;
  else if (!strcmp(w, "all"))
    c->workloads |= W_ALL;
  else
    return fail("unknown workload '%s' (sync_commit, fill_async, recovery, read_sst, amplification, memory, "
                "read_hot, all)", w);
  return 0;
}

/* An option with a value; returns 0, -1 on a bad value, 1 if not ours. */
static int parse_option(const char *opt, const char *val, struct config *c)
{
  const struct { const char *name; unsigned min, max; unsigned *out; } numbers[] = {
    { "--key-bytes", 8, SOCHDB_MAX_KEY, &c->key_bytes },   { "--value-bytes", 0, 1u << 20, &c->value_bytes },
    { "--recovery-mb", 1, 65536, &c->recovery_mb },        { "--region-mb", 16, 1u << 20, &c->region_mb },
    { "--cache-mb", 0, 1u << 20, &c->cache_mb },           { "--memtable-mb", 1, 4096, &c->memtable_mb },
    { "--read-keys", 1, 1u << 30, &c->read_keys },         { "--amp-memtables", 1, 10000, &c->amp_memtables },
    { "--batch", 1, 65535, &c->batch },                    { "--value-random-pct", 0, 100, &c->value_random_pct },
    { "--memory-mb", 1, 48, &c->memory_mb },               { "--hot-keys", 1, 1000000, &c->hot_keys },
    { "--hot-rounds", 1, 1000, &c->hot_rounds },
  };
  for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
    if (!strcmp(opt, numbers[i].name))
      return parse_uint(opt, val, numbers[i].min, numbers[i].max, numbers[i].out);
  if (!strcmp(opt, "--dir"))
    c->base = val;
  else if (!strcmp(opt, "--json"))
    c->json = val;
  else if (!strcmp(opt, "--procs"))
    return parse_procs(opt, val, &c->procs);
  else if (!strcmp(opt, "--read-procs"))
    return parse_procs(opt, val, &c->read_procs);
  else if (!strcmp(opt, "--seconds"))
    return parse_seconds(opt, val, &c->seconds);
  else if (!strcmp(opt, "--fsync-seconds"))
    return parse_seconds(opt, val, &c->fsync_seconds);
  else
    return 1;
  return 0;
}

/* 0 to run, or the exit status (0 after --help, 2 on a usage error) + 1. */
static int parse_args(int argc, char **argv, struct config *c)
{
  *c = (struct config){ .base = DEFAULT_BASE, .procs = { { 1, 8, 32 }, 3 }, .read_procs = { { 1, 2 }, 2 },
                        .seconds = 3, .fsync_seconds = 2, .key_bytes = 16, .value_bytes = 100,
                        .value_random_pct = 100, .recovery_mb = 32, .region_mb = 4096, .memtable_mb = 8,
                        .read_keys = 1000000, .amp_memtables = 10, .memory_mb = 32, .batch = 100,
                        .hot_keys = 10000, .hot_rounds = 15 };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 1;
    }
    if (a[0] != '-') {
      if (parse_workload(a, c) != 0)
        return 3;
      continue;
    }
    int rc = i + 1 < argc ? parse_option(a, argv[i + 1], c) : 1;
    if (rc > 0) {
      fail("unknown option or missing value: %s", a);
      usage(stderr);
    }
    if (rc != 0)
      return 3;
    i++;
  }
  if (!c->workloads) {
    usage(stderr);
    return 3;
  }
  return 0;
}

static int kv_init(struct kv *kv, const struct config *c)
{
  return kv_alloc(kv, c->key_bytes, c->value_bytes, c->value_random_pct);
}

/* One transaction writing kv, retried on conflict (keys are disjoint, so
** there should be none; they are counted). */
static int commit_one(sochdb *db, const struct kv *kv, unsigned flags, uint64_t *conflicts)
{
  for (;;) {
    sochdb_txn *t;
    int rc = sochdb_txn_begin(db, 0, &t);
    if (rc == SOCHDB_OK && (rc = sochdb_put(t, kv->key, kv->klen, kv->val, kv->vlen)) != SOCHDB_OK)
      sochdb_abort(t);
    else if (rc == SOCHDB_OK)
      rc = sochdb_commit(t, flags);
    if (rc == SOCHDB_OK)
      return 0;
    if (rc != SOCHDB_CONFLICT)
      return db_fail("commit", rc);
    ++*conflicts;
  }
}

/* Key i of process proc, set in kv (with its value), must read back that
** value in t; or be absent when absent is set. */
static int check_key(sochdb_txn *t, const struct kv *kv, unsigned proc, uint64_t i, int absent)
{
  const void *val;
  size_t vlen;
  int rc = sochdb_get(t, kv->key, kv->klen, &val, &vlen);
  if (absent && rc == SOCHDB_NOTFOUND)
    return 0;
  if (absent && rc == SOCHDB_OK)
    return fail("key %u:%llu was never written, yet reads back %zu bytes", proc, (unsigned long long)i, vlen);
  if (rc != SOCHDB_OK)
    return fail("get of key %u:%llu: %s (%s)", proc, (unsigned long long)i, sochdb_strerror(rc),
                sochdb_last_error());
  if (vlen != kv->vlen || memcmp(val, kv->val, vlen) != 0)
    return fail("key %u:%llu reads back a wrong value (%zu bytes, %zu written)", proc, (unsigned long long)i,
                vlen, kv->vlen);
  return 0;
}

static int begin_read(sochdb *db, sochdb_txn **t)
{
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, t);
  return rc == SOCHDB_OK ? 0 : db_fail("begin a read-only transaction", rc);
}

/* Read keys [first, first + n) of process proc in one snapshot; each must
** hold exactly the value written. */
static int verify_keys(sochdb *db, struct kv *kv, unsigned proc, uint64_t first, uint64_t n)
{
  sochdb_txn *t;
  if (begin_read(db, &t) != 0)
    return -1;
  int bad = 0;
  for (uint64_t i = first; i < first + n && !bad; i++) {
    kv_set(kv, key_id(proc, i));
    bad = check_key(t, kv, proc, i, 0);
  }
  sochdb_abort(t);
  return bad;
}

/* Keys [0, n) of process 0 in one snapshot: key i must hold the value of its
** writes[i]-th write, or be absent if writes[i] is 0. */
static int verify_versions(sochdb *db, struct kv *kv, const uint32_t *writes, uint64_t n)
{
  sochdb_txn *t;
  if (begin_read(db, &t) != 0)
    return -1;
  int bad = 0;
  for (uint64_t i = 0; i < n && !bad; i++) {
    kv_set_version(kv, key_id(0, i), writes[i]);
    bad = check_key(t, kv, 0, i, writes[i] == 0);
  }
  sochdb_abort(t);
  return bad;
}

/* Calls fn(path, ctx) for each WAL segment of the database in dir. */
static int for_each_segment(const char *dir, int (*fn)(const char *path, void *ctx), void *ctx)
{
  uint64_t *lsns;
  size_t n;
  int rc = wal_list_segments(dir, &lsns, &n);
  if (rc != SOCHDB_OK)
    return db_fail("list the WAL segments", rc);
  for (size_t i = 0; i < n && rc == 0; i++) {
    char path[PATH_MAX + 64];
    wal_segment_path(path, sizeof path, dir, lsns[i]);
    rc = fn(path, ctx);
  }
  free(lsns);
  return rc;
}

static int add_file_size(const char *path, void *ctx)
{
  struct stat st;
  if (stat(path, &st) != 0)
    return fail_errno("stat", path);
  *(uint64_t *)ctx += (uint64_t)st.st_size;
  return 0;
}

/* Drop a (clean, synced) file's pages from the page cache. */
static int evict_file(const char *path, void *ctx)
{
  (void)ctx;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail_errno("open", path);
  int err = fdatasync(fd) == 0 ? posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) : errno;
  close(fd);
  if (err) {
    errno = err;
    return fail_errno("evict from the page cache", path);
  }
  return 0;
}

/* ---- databases and their daemon -------------------------------------------- */

struct bench_db {
  char    dir[PATH_MAX];
  char    region[PATH_MAX];   /* its region file, once opened */
  size_t  memtable_bytes;     /* when it creates the region; 0 = the library's default */
  sochdb *db;                 /* the parent's handle: stats, verification */
};

/* The sizes only matter to the process that creates the region. */
static sochdb_options db_options(const struct config *c, size_t memtable_bytes)
{
  return (sochdb_options){ .region_bytes = (size_t)c->region_mb << 20, .memtable_bytes = memtable_bytes,
                           .cache_bytes = (size_t)c->cache_mb << 20 };
}

static int bdb_open(const struct config *c, struct bench_db *b)
{
  sochdb_options o = db_options(c, b->memtable_bytes);
  int rc = sochdb_open(b->dir, &o, &b->db);
  if (rc != SOCHDB_OK) {
    b->db = NULL;
    return db_fail(b->dir, rc);
  }
  snprintf(b->region, sizeof b->region, "%s", sochdb_region_path(b->db));
  return 0;
}

static void bdb_close(struct bench_db *b)
{
  sochdb_close(b->db);
  b->db = NULL;
}

static int bdb_create(const struct config *c, const char *root, const char *name, size_t memtable_bytes,
                      struct bench_db *b)
{
  memset(b, 0, sizeof *b);
  b->memtable_bytes = memtable_bytes;
  if ((size_t)snprintf(b->dir, sizeof b->dir, "%s/%s", root, name) >= sizeof b->dir)
    return fail("path too long: %s/%s", root, name);
  return bdb_open(c, b);
}

/* Close, stop its daemon, remove its region and its directory. */
static int bdb_destroy(struct bench_db *b)
{
  bdb_close(b);
  int rc = stop_daemon(b->dir, SIGTERM);
  if (b->region[0] && unlink(b->region) != 0 && errno != ENOENT)
    rc = fail_errno("remove", b->region);
  rm_rf(b->dir);
  return rc;
}

/* ---- the fdatasync probe ---------------------------------------------------- */

struct fsync_result {
  struct hist lat;
  double      seconds;
};

/* The overwrite probe writes into a file of this many synced zeros (again
** from its start when it reaches the end). */
#define PROBE_OVERWRITE_BYTES (16u << 20)
#define PROBE_MAX_WRITERS     8u   /* the parallel probe's writers: sync_commit's 8 processes */

/* Write PROBE_OVERWRITE_BYTES of zeros to fd and make them durable. */
static int zero_fill(int fd, const char *path)
{
  static unsigned char zeros[1u << 16];
  for (off_t off = 0; off < (off_t)PROBE_OVERWRITE_BYTES; off += (off_t)sizeof zeros)
    if (pwrite(fd, zeros, sizeof zeros, off) != (ssize_t)sizeof zeros)
      return fail_errno("zero-fill", path);
  return fsync(fd) == 0 ? 0 : fail_errno("fsync", path);
}

static unsigned char probe_block[PROBE_BLOCK];   /* what every write writes: not zeros */

/* One writer of the probe, a thread: PROBE_BLOCK writes from first, each
** followed by an fdatasync, until end; with wrap, from first again when it
** reaches wrap (a stripe of synced zeros), else the file grows. */
struct probe_writer {
  int         fd;
  const char *path;
  off_t       first, wrap;
  uint64_t    start, end;       /* clock, ns */
  struct hist lat;
  int         rc;
};

static void *probe_loop(void *arg)
{
  struct probe_writer *w = arg;
  uint64_t t = w->start;
  for (off_t off = w->first; t < w->end && w->rc == 0 && !interrupted; off += PROBE_BLOCK) {
    if (w->wrap && off >= w->wrap)
      off = w->first;
    if (pwrite(w->fd, probe_block, PROBE_BLOCK, off) != (ssize_t)PROBE_BLOCK || fdatasync(w->fd) != 0)
      w->rc = fail_errno("write and fdatasync", w->path);
    t = lap(&w->lat, t);
  }
  w->end = t;
  return NULL;
}

/* fdatasync latency of PROBE_BLOCK writes: appends (the file grows, so each
** fdatasync also commits its new size and blocks), or, with overwrite,
** writes into synced zeros (no metadata changes: what a log reused in place,
** like SQLite's WAL, pays). With writers > 1 (overwrite only), as many
** threads write and fdatasync at once, each in its own stripe of the file:
** how many syncs the disk completes when several are in flight, and how long
** each then takes. */
static int probe_fdatasync(const char *root, double seconds, int overwrite, unsigned writers,
                           struct fsync_result *r)
{
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/fdatasync-probe", root);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return fail_errno("create", path);
  memset(r, 0, sizeof *r);
  memset(probe_block, 0x5a, sizeof probe_block);
  struct probe_writer w[PROBE_MAX_WRITERS];
  pthread_t th[PROBE_MAX_WRITERS];
  unsigned started = 0;
  int rc = overwrite ? zero_fill(fd, path) : 0;
  uint64_t start = now_ns(), stripe = PROBE_OVERWRITE_BYTES / writers / PROBE_BLOCK * PROBE_BLOCK;
  for (unsigned i = 0; i < writers && rc == 0; i++) {
    w[i] = (struct probe_writer){ .fd = fd, .path = path, .first = (off_t)(i * stripe),
                                  .wrap = overwrite ? (off_t)((i + 1) * stripe) : 0, .start = start,
                                  .end = start + (uint64_t)(seconds * NS_PER_S) };
    if (pthread_create(&th[i], NULL, probe_loop, &w[i]) != 0) {
      rc = fail("cannot start a probe thread");
      break;
    }
    started++;
  }
  uint64_t end = start;
  for (unsigned i = 0; i < started; i++) {
    pthread_join(th[i], NULL);
    rc = rc ? rc : w[i].rc;
    hist_merge(&r->lat, &w[i].lat);
    end = w[i].end > end ? w[i].end : end;
  }
  r->seconds = (double)(end - start) / NS_PER_S;
  close(fd);
  unlink(path);
  return rc;
}

/* ---- worker processes -------------------------------------------------------- */

/* What one run of concurrent committers (or readers) does. */
struct phase {
  unsigned procs;
  unsigned flags;            /* SOCHDB_SYNC or SOCHDB_ASYNC */
  double   seconds;          /* 0: no time limit */
  uint64_t max_commits;      /* per process; 0: no limit */
  uint64_t read_keys;        /* 0: commit; else read random keys of [0, read_keys) of process 0 */
};

struct worker_out {
  uint64_t    txns, conflicts;   /* transactions done (commits, or reads in a read phase) */
  uint64_t    private_kib;   /* read phases: the worker's private memory outside the region and the
                             ** database's files, after its reads (Private_* of /proc/self/smaps) */
  struct hist lat;           /* one whole transaction each */
};

/* Shared (MAP_SHARED) between the parent and its workers. */
struct shared {
  atomic_uint       ready, done;
  atomic_int        go;
  uint64_t          deadline_ns;   /* written before go is released */
  struct worker_out out[];
};

struct phase_result {
  unsigned    procs;
  double      seconds;
  uint64_t    txns, conflicts;
  uint64_t    wal_groups, wal_records;   /* deltas over the measured window */
  uint64_t    cache_hits, cache_misses;  /* ... of the block cache */
  uint64_t    private_kib;               /* read phases: the largest worker's (worker_out) */
  struct hist lat;
};

static int commit_loop(sochdb *db, struct kv *kv, const struct phase *ph, unsigned idx, uint64_t deadline,
                       struct worker_out *o)
{
  uint64_t t = now_ns();
  for (uint64_t i = 0; (!ph->max_commits || i < ph->max_commits) && t < deadline; i++) {
    kv_set(kv, key_id(idx, i));
    if (commit_one(db, kv, ph->flags, &o->conflicts) != 0)
      return -1;
    t = lap(&o->lat, t);
    o->txns++;
  }
  return 0;
}

/* Random keys of [0, ph->read_keys) of process 0, one read-only transaction
** each, checked against the value of their first write (the read_sst load
** writes each key once, as version 1); a wrong or missing value fails. */
static int read_loop(sochdb *db, struct kv *kv, const struct phase *ph, unsigned idx, uint64_t deadline,
                     struct worker_out *o)
{
  uint64_t seed = mix64(idx + 1), now = now_ns();
  for (uint64_t i = 0; now < deadline; i++) {
    uint64_t k = mix64(seed + i) % ph->read_keys;
    kv_set_version(kv, key_id(0, k), 1);
    sochdb_txn *t;
    if (begin_read(db, &t) != 0)
      return -1;
    int bad = check_key(t, kv, 0, k, 0);
    sochdb_abort(t);
    if (bad)
      return -1;
    now = lap(&o->lat, now);
    o->txns++;
  }
  return 0;
}

/* A worker: its own handle (a handle does not survive fork), commit (or
** read) until told to stop, then check every key it wrote. Returns the exit
** status. */
static int worker_main(const struct config *c, const struct bench_db *b, const struct phase *ph, unsigned idx,
                       struct shared *sh)
{
  const char *dir = b->dir;
  struct kv kv;
  sochdb *db;
  sochdb_options o = db_options(c, 0);
  if (kv_init(&kv, c) != 0)
    return 1;
  int rc = sochdb_open(dir, &o, &db);
  if (rc != SOCHDB_OK) {
    db_fail("a worker's open", rc);
    kv_free(&kv);
    return 1;
  }
  atomic_fetch_add(&sh->ready, 1);
  while (!atomic_load_explicit(&sh->go, memory_order_acquire))
    sleep_us(50);
  if (ph->read_keys) {
    rc = read_loop(db, &kv, ph, idx, sh->deadline_ns, &sh->out[idx]);
    const char *exclude[] = { b->region, b->dir };
    struct mem_usage m;
    if (mem_usage(0, exclude, 2, &m) == 0)
      sh->out[idx].private_kib = m.private_kib - m.excluded_kib;
  } else
    rc = commit_loop(db, &kv, ph, idx, sh->deadline_ns, &sh->out[idx]);
  atomic_fetch_add(&sh->done, 1);
  if (rc == 0 && !ph->read_keys)
    rc = verify_keys(db, &kv, idx, 0, sh->out[idx].txns);
  sochdb_close(db);
  kv_free(&kv);
  return rc ? 1 : 0;
}

struct worker_ctx {
  const struct config   *c;
  const struct bench_db *b;
  const struct phase    *ph;
  struct shared         *sh;
};

static int worker_child(unsigned idx, void *ctx)
{
  struct worker_ctx *w = ctx;
  return worker_main(w->c, w->b, w->ph, idx, w->sh);
}

static int spawn_workers(const struct config *c, const struct bench_db *b, const struct phase *ph,
                         struct shared *sh, struct kids *k)
{
  struct worker_ctx w = { c, b, ph, sh };
  return kids_spawn(k, ph->procs, worker_child, &w);
}

/* Start the workers together and take the stats around their run. */
static int measure(struct bench_db *b, const struct phase *ph, struct shared *sh, struct kids *k,
                   struct phase_result *r)
{
  sochdb_stats s0, s1;
  double done_max_s = ph->seconds > 0 ? ph->seconds + DONE_SLACK_S : 3600;
  if (wait_count(&sh->ready, ph->procs, k, READY_WAIT_S, "open the database") != 0 || stats_now(b->db, &s0) != 0)
    return -1;
  uint64_t t0 = now_ns();
  sh->deadline_ns = ph->seconds > 0 ? t0 + (uint64_t)(ph->seconds * NS_PER_S) : UINT64_MAX;
  atomic_store_explicit(&sh->go, 1, memory_order_release);
  if (wait_count(&sh->done, ph->procs, k, done_max_s, "finish") != 0 || stats_now(b->db, &s1) != 0)
    return -1;
  r->seconds = (double)(now_ns() - t0) / NS_PER_S;
  r->wal_groups = s1.wal_groups - s0.wal_groups;
  r->wal_records = s1.wal_records - s0.wal_records;
  r->cache_hits = s1.cache_hits - s0.cache_hits;
  r->cache_misses = s1.cache_misses - s0.cache_misses;
  return 0;
}

static int run_phase(const struct config *c, struct bench_db *b, const struct phase *ph, struct phase_result *r)
{
  size_t bytes = sizeof(struct shared) + ph->procs * sizeof(struct worker_out);
  struct shared *sh = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED)
    return fail("mmap %zu bytes: %s", bytes, strerror(errno));
  memset(r, 0, sizeof *r);
  r->procs = ph->procs;
  struct kids k;
  int rc = spawn_workers(c, b, ph, sh, &k);
  if (rc == 0)
    rc = measure(b, ph, sh, &k, r);
  if (kids_finish(&k, rc != 0) != 0 && rc == 0)
    rc = fail("a worker process failed (see above)");
  for (unsigned i = 0; i < ph->procs; i++) {
    r->txns += sh->out[i].txns;
    r->conflicts += sh->out[i].conflicts;
    if (sh->out[i].private_kib > r->private_kib)
      r->private_kib = sh->out[i].private_kib;
    hist_merge(&r->lat, &sh->out[i].lat);
  }
  munmap(sh, bytes);
  return rc;
}

/* ---- workloads ----------------------------------------------------------------- */

struct recovery_result {
  uint64_t            commits, data_bytes, wal_bytes;
  struct phase_result fill;
  double              restart_ms, rebuild_ms, rebuild_cold_ms;
  struct shm_write_probe pages;   /* of the regions' directory, before the fill */
};

/* A load of batched ASYNC puts by the benchmark's own process. */
struct load {
  uint64_t  puts;
  uint64_t  keys;            /* the key space: keys [0, keys) of process 0 */
  int       random;          /* 0: put i writes key i; 1: put i writes a random key */
  double    seconds;
  uint32_t *writes;          /* per key, how often it was written: the version of its value */
  uint32_t  peak_l0;         /* the most level-0 files seen by the load (sampled every 10 ms) */
};

/* The database once flushing and compaction had nothing left to do. */
struct settled {
  sochdb_stats st;
  double       seconds;      /* the wait, from the load's last commit */
  uint64_t     wal_file_bytes; /* the WAL segment files left */
};

struct read_result {
  struct load         load;
  struct settled      at;
  unsigned            rows;
  struct phase_result row[MAX_ROWS];
};

struct amp_result {
  struct load    load;
  uint64_t       live_keys, live_bytes;
  struct settled at;
};

/* What the region and the daemon hold at one moment. */
struct mem_point {
  uint64_t     region_bytes;      /* allocated pages of the region file */
  sochdb_stats st;
  uint64_t     daemon_rss_kib, daemon_private_kib;
};

struct memory_result {
  struct load      load, more;    /* the live data; then 3 memtables' worth more */
  uint64_t         live_bytes;    /* keys and values of the first load */
  struct mem_point empty, loaded, idle;
  struct settled   at;
  double           idle_seconds;  /* waited after settling for the region to stop changing */
};

struct hot_result {
  struct load load;
  unsigned    rounds;
  uint64_t    reads;           /* in all rounds */
  double      best_ns, median_ns;   /* a transaction (begin + get + abort), of the rounds */
};

struct results {
  char                   root[PATH_MAX];
  struct fs_info         fs;
  struct region_pages    pages;            /* where the regions go, and their page size */
  long                   cpus;
  int                    have_fsync, have_async, have_recovery, have_read, have_amp, have_memory, have_hot;
  struct fsync_result    fsync;            /* appends: the target of sync_commit */
  struct fsync_result    fsync_overwrite;  /* into synced zeros */
  struct fsync_result    fsync_parallel;   /* ... by PROBE_MAX_WRITERS writers at once */
  unsigned               nsync;
  struct phase_result    sync[MAX_ROWS];
  struct phase_result    async;
  struct recovery_result rec;
  struct read_result     read;
  struct amp_result      amp;       /* random overwrites */
  struct amp_result      amp_seq;   /* the same volume of new keys, in key order */
  struct memory_result   mem;
  struct hot_result      hot;
};

/* steps(c, b, ctx) on a fresh database named name, removed afterwards. */
static int on_fresh_db(const struct config *c, struct results *res, const char *name, size_t memtable_bytes,
                       int (*steps)(const struct config *c, struct bench_db *b, void *ctx), void *ctx)
{
  struct bench_db b;
  int rc = bdb_create(c, res->root, name, memtable_bytes, &b);
  if (rc == 0)
    rc = steps(c, &b, ctx);
  if (bdb_destroy(&b) != 0)
    rc = -1;
  return rc;
}

struct phase_run {
  const struct phase  *ph;
  struct phase_result *r;
};

static int phase_steps(const struct config *c, struct bench_db *b, void *ctx)
{
  struct phase_run *run = ctx;
  return run_phase(c, b, run->ph, run->r);
}

/* One phase on a fresh database named name, removed afterwards. */
static int fresh_phase(const struct config *c, struct results *res, const char *name, const struct phase *ph,
                       struct phase_result *r)
{
  struct phase_run run = { ph, r };
  return on_fresh_db(c, res, name, 0, phase_steps, &run);
}

static int workload_sync(const struct config *c, struct results *res)
{
  fprintf(stderr, "measuring fdatasync for %.1f s of appends, %.1f s of overwrites, %.1f s of %u overwriters...\n",
          c->fsync_seconds, c->fsync_seconds, c->fsync_seconds, PROBE_MAX_WRITERS);
  if (probe_fdatasync(res->root, c->fsync_seconds, 0, 1, &res->fsync) != 0 ||
      probe_fdatasync(res->root, c->fsync_seconds, 1, 1, &res->fsync_overwrite) != 0 ||
      probe_fdatasync(res->root, c->fsync_seconds, 1, PROBE_MAX_WRITERS, &res->fsync_parallel) != 0)
    return -1;
  res->have_fsync = 1;
  for (unsigned i = 0; i < c->procs.rows; i++) {
    struct phase ph = { c->procs.n[i], SOCHDB_SYNC, c->seconds, 0, 0 };
    char name[32];
    snprintf(name, sizeof name, "sync_commit-%u", ph.procs);
    fprintf(stderr, "sync_commit with %u process(es) for %.1f s...\n", ph.procs, ph.seconds);
    if (fresh_phase(c, res, name, &ph, &res->sync[i]) != 0)
      return -1;
    res->nsync = i + 1;
  }
  return 0;
}

static int workload_async(const struct config *c, struct results *res)
{
  struct phase ph = { 1, SOCHDB_ASYNC, c->seconds, 0, 0 };
  fprintf(stderr, "fill_async for %.1f s...\n", ph.seconds);
  if (fresh_phase(c, res, "fill_async", &ph, &res->async) != 0)
    return -1;
  res->have_async = 1;
  return 0;
}

/* sochdb_open + one get (checked), timed. */
static int timed_open_get(const struct config *c, struct bench_db *b, struct kv *kv, uint64_t key, double *ms)
{
  uint64_t t0 = now_ns();
  int rc = bdb_open(c, b);
  if (rc == 0)
    rc = verify_keys(b->db, kv, 0, key, 1);
  *ms = (double)(now_ns() - t0) / 1e6;
  return rc;
}

/* (a) the daemon is killed; the region and every commit in it survive. */
static int time_restart(const struct config *c, struct bench_db *b, struct kv *kv, uint64_t n, double *ms)
{
  bdb_close(b);
  if (stop_daemon(b->dir, SIGKILL) != 0 || timed_open_get(c, b, kv, n / 2, ms) != 0)
    return -1;
  return verify_keys(b->db, kv, 0, 0, n);
}

/* (b), (c) the region is gone: the opener replays the WAL into a new one. */
static int time_rebuild(const struct config *c, struct bench_db *b, struct kv *kv, uint64_t n, int evict, double *ms)
{
  bdb_close(b);
  if (stop_daemon(b->dir, SIGTERM) != 0)
    return -1;
  if (unlink(b->region) != 0)
    return fail_errno("remove", b->region);
  if (evict && for_each_segment(b->dir, evict_file, NULL) != 0)
    return -1;
  if (timed_open_get(c, b, kv, n / 2, ms) != 0)
    return -1;
  return verify_keys(b->db, kv, 0, 0, n);   /* every commit came back */
}

static int recovery_steps(const struct config *c, struct bench_db *b, void *ctx)
{
  struct recovery_result *r = ctx;
  struct kv kv;
  struct phase ph = { 1, SOCHDB_ASYNC, 0, r->commits, 0 };
  if (kv_init(&kv, c) != 0)
    return -1;
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", b->region);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  shm_write_probe(slash ? dir : ".", &r->pages);
  fprintf(stderr, "recovery: writing %llu commits...\n", (unsigned long long)r->commits);
  int rc = run_phase(c, b, &ph, &r->fill);
  if (rc == 0) {
    fprintf(stderr, "recovery: restart after SIGKILL of the daemon...\n");
    rc = time_restart(c, b, &kv, r->commits, &r->restart_ms);
  }
  if (rc == 0) {
    fprintf(stderr, "recovery: rebuild from the WAL...\n");
    rc = time_rebuild(c, b, &kv, r->commits, 0, &r->rebuild_ms);
  }
  if (rc == 0)
    rc = time_rebuild(c, b, &kv, r->commits, 1, &r->rebuild_cold_ms);
  if (rc == 0)
    rc = for_each_segment(b->dir, add_file_size, &r->wal_bytes);
  kv_free(&kv);
  return rc;
}

static int workload_recovery(const struct config *c, struct results *res)
{
  struct recovery_result *r = &res->rec;
  memset(r, 0, sizeof *r);
  uint64_t pair = c->key_bytes + c->value_bytes;
  r->commits = (((uint64_t)c->recovery_mb << 20) + pair - 1) / pair;
  r->data_bytes = r->commits * pair;
  /* Each timed open stands for a process that opens the database after a
  ** reboot: its replay's scratch arrays (tens of MiB) come from fresh pages.
  ** In this one process glibc would raise its mmap threshold once the
  ** first replay freed them and serve the second replay from heap pages
  ** already written, which costs far less where a first write is dear
  ** (5-14 us a page under a hypervisor that shadows page tables). A fixed
  ** threshold keeps every large allocation a fresh mapping. */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  int rc = on_fresh_db(c, res, "recovery", 0, recovery_steps, r);
  res->have_recovery = rc == 0;
  return rc;
}

/* ---- read_sst and amplification: a load, then flushing and compaction settle */

/* Puts [first, first + n) of the load in one transaction, committed ASYNC.
** The benchmark's process is the only writer: a conflict is an engine bug. */
static int load_batch(sochdb *db, struct kv *kv, struct load *ld, uint64_t first, uint64_t n)
{
  sochdb_txn *t;
  int rc = sochdb_txn_begin(db, 0, &t);
  if (rc != SOCHDB_OK)
    return db_fail("begin a load transaction", rc);
  for (uint64_t i = first; i < first + n && rc == SOCHDB_OK; i++) {
    uint64_t k = ld->random ? mix64(i) % ld->keys : i;
    kv_set_version(kv, key_id(0, k), ++ld->writes[k]);
    rc = sochdb_put(t, kv->key, kv->klen, kv->val, kv->vlen);
  }
  if (rc != SOCHDB_OK) {
    sochdb_abort(t);
    return db_fail("put", rc);
  }
  rc = sochdb_commit(t, SOCHDB_ASYNC);
  return rc == SOCHDB_OK ? 0 : db_fail("commit of a load transaction (the only writer)", rc);
}

static int load_keys(const struct config *c, sochdb *db, struct load *ld)
{
  struct kv kv;
  if (kv_init(&kv, c) != 0)
    return -1;
  int rc = 0;
  uint64_t t0 = now_ns(), sampled = 0;
  for (uint64_t i = 0; i < ld->puts && rc == 0; i += c->batch) {
    rc = interrupted ? fail("interrupted") : 0;
    if (rc == 0)
      rc = load_batch(db, &kv, ld, i, ld->puts - i < c->batch ? ld->puts - i : c->batch);
    /* Level 0 sampled every 10 ms, not after every transaction: the stats
    ** list the WAL directory, which would cost the timed load a readdir
    ** each (a flush changes the count far less often). */
    sochdb_stats st;
    uint64_t now = now_ns();
    if (rc == 0 && now - sampled >= 10000000u && sochdb_stats_get(db, &st) == SOCHDB_OK) {
      sampled = now;
      if (st.l0_files > ld->peak_l0)
        ld->peak_l0 = st.l0_files;
    }
  }
  ld->seconds = (double)(now_ns() - t0) / NS_PER_S;
  kv_free(&kv);
  return rc;
}

/* Poll the stats until SETTLE_STABLE polls in a row find everything settled
** and no file changed; then size the WAL files left. */
static int wait_settled(struct bench_db *b, struct settled *out)
{
  if (sochdb_wait_settled(b->db, &out->st, &out->seconds) != 0)
    return -1;
  out->wal_file_bytes = 0;
  return for_each_segment(b->dir, add_file_size, &out->wal_file_bytes);
}

static int load_settle(const struct config *c, struct bench_db *b, const char *name, struct load *ld,
                       struct settled *at)
{
  ld->writes = calloc(ld->keys, sizeof *ld->writes);
  if (!ld->writes)
    return fail("out of memory");
  fprintf(stderr, "%s: %llu puts over %llu keys, ASYNC, %u per transaction, %u MiB memtables...\n", name,
          (unsigned long long)ld->puts, (unsigned long long)ld->keys, c->batch, c->memtable_mb);
  if (load_keys(c, b->db, ld) != 0)
    return -1;
  fprintf(stderr, "%s: loaded in %.1f s; waiting for flushing and compaction to settle...\n", name, ld->seconds);
  return wait_settled(b, at);
}

/* Every key of the load reads back its last value (absent if never written). */
static int verify_load(const struct config *c, struct bench_db *b, const struct load *ld)
{
  struct kv kv;
  if (kv_init(&kv, c) != 0)
    return -1;
  int rc = verify_versions(b->db, &kv, ld->writes, ld->keys);
  kv_free(&kv);
  return rc;
}

static void load_free(struct load *ld)
{
  free(ld->writes);
  ld->writes = NULL;
}

static int read_steps(const struct config *c, struct bench_db *b, void *ctx)
{
  struct read_result *r = ctx;
  int rc = load_settle(c, b, "read_sst", &r->load, &r->at);
  for (unsigned i = 0; rc == 0 && i < c->read_procs.rows; i++) {
    struct phase ph = { c->read_procs.n[i], 0, c->seconds, 0, r->load.keys };
    fprintf(stderr, "read_sst: %u process(es) reading for %.1f s...\n", ph.procs, ph.seconds);
    rc = run_phase(c, b, &ph, &r->row[i]);
    r->rows = rc == 0 ? i + 1 : r->rows;
  }
  if (rc == 0)
    rc = verify_load(c, b, &r->load);
  load_free(&r->load);
  return rc;
}

static int workload_read(const struct config *c, struct results *res)
{
  struct read_result *r = &res->read;
  memset(r, 0, sizeof *r);
  r->load = (struct load){ .puts = c->read_keys, .keys = c->read_keys };
  int rc = on_fresh_db(c, res, "read_sst", (size_t)c->memtable_mb << 20, read_steps, r);
  res->have_read = rc == 0;
  return rc;
}

static int amp_steps(const struct config *c, struct bench_db *b, void *ctx)
{
  struct amp_result *r = ctx;
  int rc = load_settle(c, b, "amplification", &r->load, &r->at);
  if (rc == 0)
    rc = verify_load(c, b, &r->load);
  for (uint64_t k = 0; rc == 0 && k < r->load.keys; k++)
    r->live_keys += r->load.writes[k] != 0;
  r->live_bytes = r->live_keys * (c->key_bytes + c->value_bytes);
  load_free(&r->load);
  return rc;
}

/* One amplification load on a fresh database: random overwrites of a
** quarter as many keys as puts, or (in_order) every put a new key, in key
** order, as a bulk load or a log keyed by time writes them. */
static int amp_load(const struct config *c, struct results *res, struct amp_result *r, int in_order)
{
  memset(r, 0, sizeof *r);
  uint64_t pair = c->key_bytes + c->value_bytes, bytes = ((uint64_t)c->amp_memtables * c->memtable_mb) << 20;
  r->load.puts = (bytes + pair - 1) / pair;
  r->load.keys = in_order ? r->load.puts : r->load.puts / AMP_KEYSPACE ? r->load.puts / AMP_KEYSPACE : 1;
  r->load.random = !in_order;
  return on_fresh_db(c, res, in_order ? "amplification_in_order" : "amplification", (size_t)c->memtable_mb << 20,
                     amp_steps, r);
}

static int workload_amp(const struct config *c, struct results *res)
{
  int rc = amp_load(c, res, &res->amp, 0);
  if (rc == 0)
    rc = amp_load(c, res, &res->amp_seq, 1);
  res->have_amp = rc == 0;
  return rc;
}

static int measure_memory(struct bench_db *b, struct mem_point *p)
{
  struct stat st;
  if (stat(b->region, &st) != 0)
    return fail_errno("stat", b->region);
  p->region_bytes = (uint64_t)st.st_blocks * 512;
  if (stats_now(b->db, &p->st) != 0)
    return -1;
  pid_t pid = sdb_daemon_pid(b->dir);
  p->daemon_rss_kib = p->daemon_private_kib = 0;
  if (pid) {
    const char *exclude[] = { b->region, b->dir };
    struct mem_usage m;
    if (mem_usage(pid, exclude, 2, &m) == 0) {
      p->daemon_rss_kib = m.rss_kib;
      p->daemon_private_kib = m.private_kib - m.excluded_kib;
    }
  }
  return 0;
}

#define LIBRARY_MEMTABLE_MB 64u  /* sochdb_options.memtable_bytes's default: what users get */
#define IDLE_WAIT_S 10.0

/* Poll until the region has not changed for 2 s (at least 3 s after the
** load settled, at most IDLE_WAIT_S): the recycled arenas' pages given back. */
static int wait_idle_region(struct bench_db *b, struct memory_result *r)
{
  uint64_t t0 = now_ns(), stable_since = t0;
  struct mem_point p;
  if (measure_memory(b, &p) != 0)
    return -1;
  for (;;) {
    double waited = (double)(now_ns() - t0) / NS_PER_S;
    if (interrupted || waited >= IDLE_WAIT_S || (waited >= 3 && (double)(now_ns() - stable_since) / NS_PER_S >= 2))
      break;
    usleep(250000);
    uint64_t before = p.region_bytes;
    if (measure_memory(b, &p) != 0)
      return -1;
    if (p.region_bytes != before)
      stable_since = now_ns();
  }
  r->idle_seconds = (double)(now_ns() - t0) / NS_PER_S;
  r->idle = p;
  return 0;
}

static int memory_steps(const struct config *c, struct bench_db *b, void *ctx)
{
  struct memory_result *r = ctx;
  int rc = measure_memory(b, &r->empty);
  r->load.writes = calloc(r->load.keys, sizeof *r->load.writes);
  if (rc == 0 && !r->load.writes)
    rc = fail("out of memory");
  if (rc == 0) {
    fprintf(stderr, "memory: %u MiB of keys and values into the memtable...\n", c->memory_mb);
    rc = load_keys(c, b->db, &r->load);
  }
  load_free(&r->load);
  if (rc == 0)
    rc = measure_memory(b, &r->loaded);
  if (rc == 0 && r->loaded.st.flushes != 0)
    rc = fail("memory: the load was flushed (%llu flushes): the memtable does not hold it; use a smaller "
              "--memory-mb", (unsigned long long)r->loaded.st.flushes);
  if (rc == 0)
    rc = load_settle(c, b, "memory", &r->more, &r->at);
  if (rc == 0) {
    fprintf(stderr, "memory: settled; waiting for the region to stop changing...\n");
    rc = wait_idle_region(b, r);
  }
  if (rc == 0)
    rc = verify_load(c, b, &r->more);
  load_free(&r->more);
  return rc;
}

static int workload_memory(const struct config *c, struct results *res)
{
  struct memory_result *r = &res->mem;
  memset(r, 0, sizeof *r);
  uint64_t pair = c->key_bytes + c->value_bytes;
  r->load.puts = r->load.keys = ((uint64_t)c->memory_mb << 20) / pair;
  r->live_bytes = r->load.puts * pair;
  r->more.puts = r->more.keys = ((uint64_t)3 * LIBRARY_MEMTABLE_MB << 20) / pair;
  int rc = on_fresh_db(c, res, "memory", 0, memory_steps, r);
  res->have_memory = rc == 0;
  return rc;
}

/* ---- read_hot: the fixed cost of a read-only transaction ---------------------- */

#define HOT_ROUND_NS 200000000ull
#define HOT_CLOCK_EVERY 1000u      /* reads between two readings of the clock */

/* The keys and expected values of read_hot, built before the clock runs. */
struct hot_set {
  size_t         klen, vlen;
  unsigned char *keys, *vals;
};

static void hot_set_free(struct hot_set *h)
{
  free(h->keys);
  free(h->vals);
}

static int hot_set_build(const struct config *c, uint64_t n, struct hot_set *h)
{
  struct kv kv;
  if (kv_init(&kv, c) != 0)
    return -1;
  *h = (struct hot_set){ kv.klen, kv.vlen, malloc(n * kv.klen), malloc(n * kv.vlen + 1) };   /* + 1: values may be empty */
  int rc = h->keys && h->vals ? 0 : fail("out of memory");
  for (uint64_t k = 0; rc == 0 && k < n; k++) {
    kv_set_version(&kv, key_id(0, k), 1);   /* the load wrote each key once */
    memcpy(h->keys + k * h->klen, kv.key, h->klen);
    memcpy(h->vals + k * h->vlen, kv.val, h->vlen);
  }
  kv_free(&kv);
  if (rc != 0)
    hot_set_free(h);   /* one of the two may have been allocated */
  return rc;
}

/* One round: begin, get (checked), abort, for HOT_ROUND_NS; *ns a read. */
static int hot_round(sochdb *db, const struct hot_set *h, uint64_t keys, uint64_t seed, double *ns, uint64_t *reads)
{
  uint64_t t0 = now_ns(), n = 0;
  for (uint64_t now = t0; now - t0 < HOT_ROUND_NS; now = now_ns()) {
    for (unsigned j = 0; j < HOT_CLOCK_EVERY; j++, n++) {
      uint64_t k = mix64(seed + n) % keys;
      const void *val;
      size_t vlen;
      sochdb_txn *t;
      if (begin_read(db, &t) != 0)
        return -1;
      int rc = sochdb_get(t, h->keys + k * h->klen, h->klen, &val, &vlen);
      int bad = rc != SOCHDB_OK || vlen != h->vlen || memcmp(val, h->vals + k * h->vlen, vlen) != 0;
      sochdb_abort(t);
      if (bad)
        return fail("read_hot: key %llu reads back %s", (unsigned long long)k,
                    rc == SOCHDB_OK ? "a wrong value" : sochdb_strerror(rc));
    }
  }
  *ns = (double)(now_ns() - t0) / (double)n;
  *reads += n;
  return 0;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int hot_steps(const struct config *c, struct bench_db *b, void *ctx)
{
  struct hot_result *r = ctx;
  struct hot_set h;
  double *ns = calloc(c->hot_rounds, sizeof *ns);
  r->load.writes = calloc(r->load.keys, sizeof *r->load.writes);
  int rc = ns && r->load.writes ? 0 : fail("out of memory");
  if (rc == 0)
    rc = load_keys(c, b->db, &r->load);
  if (rc == 0 && (rc = hot_set_build(c, r->load.keys, &h)) == 0) {
    fprintf(stderr, "read_hot: %u rounds of %.1f s over %llu keys...\n", c->hot_rounds,
            (double)HOT_ROUND_NS / NS_PER_S, (unsigned long long)r->load.keys);
    for (unsigned i = 0; rc == 0 && i < c->hot_rounds; i++)
      rc = interrupted ? fail("interrupted") : hot_round(b->db, &h, r->load.keys, mix64(i + 1), &ns[i], &r->reads);
    hot_set_free(&h);
  }
  if (rc == 0) {
    qsort(ns, c->hot_rounds, sizeof *ns, cmp_double);
    r->rounds = c->hot_rounds;
    r->best_ns = ns[0];
    r->median_ns = ns[c->hot_rounds / 2];
  }
  free(ns);
  load_free(&r->load);
  return rc;
}

static int workload_hot(const struct config *c, struct results *res)
{
  struct hot_result *r = &res->hot;
  memset(r, 0, sizeof *r);
  r->load = (struct load){ .puts = c->hot_keys, .keys = c->hot_keys };
  int rc = on_fresh_db(c, res, "read_hot", 0, hot_steps, r);
  res->have_hot = rc == 0;
  return rc;
}

/* ---- report ---------------------------------------------------------------------- */

/* What a sync_commit row shows, derived once for the table and the JSON. */
struct sync_row {
  double commits_s, group, fsyncs_s, p50_ms, p99_ms;
  double target_s;           /* procs / fdatasync latency */
  double cap_s;              /* min(target, fill_async commits/s); 0 without fill_async */
};

static double fsync_rate(const struct results *res)
{
  return per_s(res->fsync.lat.count, res->fsync.seconds);
}

static struct sync_row sync_row(const struct results *res, const struct phase_result *p)
{
  struct sync_row s;
  s.commits_s = per_s(p->txns, p->seconds);
  s.group = p->wal_groups ? (double)p->wal_records / (double)p->wal_groups : 0;
  s.fsyncs_s = per_s(p->wal_groups, p->seconds);
  s.p50_ms = hist_quantile_ms(&p->lat, 0.50);
  s.p99_ms = hist_quantile_ms(&p->lat, 0.99);
  s.target_s = p->procs * fsync_rate(res);
  s.cap_s = 0;
  if (res->have_async) {
    double ceiling = per_s(res->async.txns, res->async.seconds);
    s.cap_s = ceiling < s.target_s ? ceiling : s.target_s;
  }
  return s;
}

static void print_header(const struct config *c, const struct results *res)
{
  printf("sochdb-bench: %ld CPU(s); database directories in %s (%s)%s; regions in %s\n", res->cpus,
         res->root, res->fs.name, res->fs.in_memory ? " -- IN MEMORY, fdatasync figures mean nothing" : "",
         res->pages.dir[0] ? res->pages.dir : "-");
  print_region_pages(&res->pages);
  printf("keys %u bytes, values %u bytes; sync_commit, fill_async and recovery: one put per transaction\n\n",
         c->key_bytes, c->value_bytes);
}

static void print_probe(const char *what, const struct fsync_result *r)
{
  const struct hist *f = &r->lat;
  printf("fdatasync of a %u-byte %s: mean %.3f ms, p50 %.3f ms, p99 %.3f ms (%llu in %.1f s) "
         "= %.0f fdatasyncs/s\n", PROBE_BLOCK, what, hist_mean_ms(f), hist_quantile_ms(f, 0.5),
         hist_quantile_ms(f, 0.99), (unsigned long long)f->count, r->seconds, per_s(f->count, r->seconds));
}

static void print_sync(const struct config *c, const struct results *res)
{
  print_probe("append", &res->fsync);
  print_probe("overwrite of synced zeros", &res->fsync_overwrite);
  char what[64];
  snprintf(what, sizeof what, "overwrite, %u writers at once", PROBE_MAX_WRITERS);
  print_probe(what, &res->fsync_parallel);
  printf("(sochdb's log appends: the append figure is the target below; a log reused in place pays the "
         "other)\n\n");
  printf("sync_commit (SOCHDB_SYNC, %.1f s per row)\n", c->seconds);
  printf("%5s %11s %7s %10s %8s %8s %11s %7s %11s %7s\n", "procs", "commits/s", "group", "fsyncs/s",
         "p50 ms", "p99 ms", "target/s", "of it", "capped/s", "of it");
  for (unsigned i = 0; i < res->nsync; i++) {
    struct sync_row s = sync_row(res, &res->sync[i]);
    printf("%5u %11.0f %7.2f %10.0f %8.3f %8.3f %11.0f %6.0f%%", res->sync[i].procs, s.commits_s, s.group,
           s.fsyncs_s, s.p50_ms, s.p99_ms, s.target_s, 100 * s.commits_s / s.target_s);
    if (s.cap_s)
      printf(" %11.0f %6.0f%%\n", s.cap_s, 100 * s.commits_s / s.cap_s);
    else
      printf(" %11s %7s\n", "-", "-");
  }
  printf("target = procs x fdatasyncs/s of the probe; capped = min(target, fill_async commits/s)%s\n\n",
         res->have_async ? "" : " (run fill_async too for it)");
}

static void print_async(const struct results *res)
{
  const struct phase_result *p = &res->async;
  printf("fill_async (SOCHDB_ASYNC, 1 process, %.1f s): %.0f commits/s, p50 %.4f ms, p99 %.4f ms, "
         "%.0f fdatasyncs/s of %.1f commits each\n\n", p->seconds, per_s(p->txns, p->seconds),
         hist_quantile_ms(&p->lat, 0.5), hist_quantile_ms(&p->lat, 0.99), per_s(p->wal_groups, p->seconds),
         p->wal_groups ? (double)p->wal_records / (double)p->wal_groups : 0.0);
}

static void print_recovery(const struct results *res)
{
  const struct recovery_result *r = &res->rec;
  printf("recovery: %llu commits, %.1f MiB of keys and values, WAL %.1f MiB (written at %.0f commits/s, ASYNC)\n",
         (unsigned long long)r->commits, (double)r->data_bytes / 1048576, (double)r->wal_bytes / 1048576,
         per_s(r->fill.txns, r->fill.seconds));
  printf("  open + get after SIGKILL of the daemon (region kept):   %9.1f ms\n", r->restart_ms);
  printf("  open + get after removing the region (WAL replay):      %9.1f ms\n", r->rebuild_ms);
  printf("  the same with the WAL evicted from the page cache:      %9.1f ms\n", r->rebuild_cold_ms);
  printf("  a region page: first write through a mapping, after MADV_POPULATE_WRITE, %.2f us; "
         "pwrite into a fresh one %.2f us\n\n", r->pages.mapped_write_us, r->pages.pwrite_us);
}

static double mib(uint64_t bytes) { return (double)bytes / 1048576; }

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

/* The share of the memtable bytes written that flushes took to SSTables.
** Writers rotate a memtable only when it is full, so each flush took one
** memtable's bytes (less the last allocation that did not fit); the active
** memtable holds the rest. With one write per key and keys of one size, it
** is about the share of the keys that lived in SSTables. */
static double flushed_share(const sochdb_stats *s)
{
  double flushed = (double)s->flushes * (double)s->memtable_bytes;
  return ratio(flushed, flushed + (double)s->memtable_used_bytes);
}

/* What a read_sst row shows, derived once for the table and the JSON. */
struct read_row {
  double reads_s, per_proc_s, p50_us, p99_us;
  double hit_rate;           /* block cache hits / lookups during the row */
  double lookups;            /* block cache lookups per read */
};

static struct read_row read_row(const struct phase_result *p)
{
  struct read_row r;
  double lookups = (double)(p->cache_hits + p->cache_misses);
  r.reads_s = per_s(p->txns, p->seconds);
  r.per_proc_s = r.reads_s / p->procs;
  r.p50_us = hist_quantile_ms(&p->lat, 0.50) * 1000;
  r.p99_us = hist_quantile_ms(&p->lat, 0.99) * 1000;
  r.hit_rate = ratio((double)p->cache_hits, lookups);
  r.lookups = ratio(lookups, (double)p->txns);
  return r;
}

static void print_settled(const struct load *ld, const struct settled *at)
{
  const sochdb_stats *s = &at->st;
  printf("  loaded in %.2f s = %.0f puts/s; settled %.1f s later: %llu flushes, %llu compactions, %u SSTables "
         "(%u in L0) of %.1f MiB, %.1f MiB unflushed in the active memtable\n", ld->seconds,
         per_s(ld->puts, ld->seconds), at->seconds, (unsigned long long)s->flushes,
         (unsigned long long)s->compactions, s->sst_files, s->l0_files, mib(s->sst_bytes),
         mib(s->memtable_used_bytes));
  printf("  level 0 held at most %u files during the load (sampled); flushes held at its stop %llu times for %.2f s in "
         "all; compactions slept %.2f s for the rate limit\n", ld->peak_l0, (unsigned long long)s->l0_stops,
         (double)s->l0_stop_us / 1e6, (double)s->compact_throttle_us / 1e6);
}

static void print_read_rows(const struct read_result *r)
{
  printf("%5s %11s %11s %8s %8s %10s %13s %12s\n", "procs", "reads/s", "per proc", "p50 us", "p99 us", "cache hit",
         "lookups/read", "private KiB");
  int lookups = 0;
  for (unsigned i = 0; i < r->rows; i++) {
    struct read_row w = read_row(&r->row[i]);
    printf("%5u %11.0f %11.0f %8.2f %8.2f", r->row[i].procs, w.reads_s, w.per_proc_s, w.p50_us, w.p99_us);
    if (w.lookups > 0)
      printf(" %9.1f%% %13.2f", 100 * w.hit_rate, w.lookups);
    else
      printf(" %10s %13.2f", "-", w.lookups);
    printf(" %12llu\n", (unsigned long long)r->row[i].private_kib);
    lookups |= w.lookups > 0;
  }
  printf("private KiB: the largest reader process's private memory outside the region and the database's files "
         "(Private_Clean + Private_Dirty of /proc/PID/smaps) after its reads\n");
  if (!lookups)
    printf("no block cache lookups: only LZ4-compressed blocks are cached, and these did not compress (see "
           "--value-random-pct); uncompressed blocks are read in place from the mapped SSTables\n");
  printf("\n");
}

static void print_read(const struct config *c, const struct results *res)
{
  const struct read_result *r = &res->read;
  const sochdb_stats *s = &r->at.st;
  printf("read_sst: %llu keys written once each (ASYNC, %u puts per transaction), %u MiB memtables\n",
         (unsigned long long)r->load.keys, c->batch, c->memtable_mb);
  print_settled(&r->load, &r->at);
  printf("  keys in SSTables: about %.1f%% (flushed / all memtable bytes); SSTables = %.2f x the %.1f MiB of keys "
         "and values committed\n", 100 * flushed_share(s), ratio((double)s->sst_bytes, (double)s->user_bytes),
         mib(s->user_bytes));
  printf("random point reads, one READONLY transaction each, every value checked, %.1f s per row; block cache "
         "%.1f MiB\n", c->seconds, mib(s->cache_bytes));
  print_read_rows(r);
}

/* The amplification figures, derived once for the table and the JSON. */
struct amp_figures {
  double write, write_wal;   /* (flush + compaction written [+ WAL written]) / user bytes */
  double space, space_wal;   /* (sst_bytes [+ WAL files]) / live keys and values */
};

static struct amp_figures amp_figures(const struct amp_result *r)
{
  const sochdb_stats *s = &r->at.st;
  double written = (double)(s->flush_bytes + s->compact_bytes_written);
  return (struct amp_figures){ ratio(written, (double)s->user_bytes),
                               ratio(written + (double)s->wal_bytes, (double)s->user_bytes),
                               ratio((double)s->sst_bytes, (double)r->live_bytes),
                               ratio((double)(s->sst_bytes + r->at.wal_file_bytes), (double)r->live_bytes) };
}

static void print_amp(const struct config *c, const struct amp_result *r)
{
  const sochdb_stats *s = &r->at.st;
  struct amp_figures a = amp_figures(r);
  printf("amplification: %llu %s (%.1f MiB = %u memtables of %u MiB; ASYNC, %u per transaction) over "
         "%llu keys, %llu of them written: %.1f MiB live\n", (unsigned long long)r->load.puts,
         r->load.random ? "random puts" : "puts of new keys in key order",
         mib(r->load.puts * (c->key_bytes + c->value_bytes)), c->amp_memtables, c->memtable_mb, c->batch,
         (unsigned long long)r->load.keys, (unsigned long long)r->live_keys, mib(r->live_bytes));
  print_settled(&r->load, &r->at);
  printf("  write amplification = (flushed %.1f MiB + compaction written %.1f MiB) / user %.1f MiB = %.2f "
         "(%.2f with the WAL's %.1f MiB); compaction read %.1f MiB\n", mib(s->flush_bytes),
         mib(s->compact_bytes_written), mib(s->user_bytes), a.write, a.write_wal, mib(s->wal_bytes),
         mib(s->compact_bytes_read));
  printf("  space amplification = SSTables %.1f MiB / live %.1f MiB = %.2f (%.2f with the %.1f MiB of WAL files "
         "left)\n\n", mib(s->sst_bytes), mib(r->live_bytes), a.space, a.space_wal, mib(r->at.wal_file_bytes));
}

static void print_memory_point(const char *what, const struct mem_point *p)
{
  printf("  %-44s region %7.1f MiB resident (memtables %6.1f MiB used), daemon RSS %5.1f MiB, private %5.1f MiB\n",
         what, mib(p->region_bytes), mib(p->st.memtable_used_bytes), (double)p->daemon_rss_kib / 1024,
         (double)p->daemon_private_kib / 1024);
}

static void print_memory(const struct config *c, const struct results *res)
{
  const struct memory_result *r = &res->mem;
  char what[80];
  printf("memory: one database, 64 MiB memtables, %u-byte keys, %u-byte values\n", c->key_bytes, c->value_bytes);
  print_memory_point("empty", &r->empty);
  snprintf(what, sizeof what, "%.1f MiB of live data in the memtable", mib(r->live_bytes));
  print_memory_point(what, &r->loaded);
  snprintf(what, sizeof what, "then %.0f MiB more: flushed, settled, idle", mib(r->more.puts * (c->key_bytes +
           c->value_bytes)));
  print_memory_point(what, &r->idle);
  printf("  resident region / live data in it = %.2f (%.2f without the empty region's %.1f MiB of tables); "
         "after %.1f s idle: %llu flushes, %llu compactions\n\n",
         ratio((double)r->loaded.region_bytes, (double)r->live_bytes),
         ratio((double)(r->loaded.region_bytes - r->empty.region_bytes), (double)r->live_bytes),
         mib(r->empty.region_bytes), r->idle_seconds, (unsigned long long)r->idle.st.flushes,
         (unsigned long long)r->idle.st.compactions);
}

static void print_hot(const struct config *c, const struct results *res)
{
  const struct hot_result *r = &res->hot;
  printf("read_hot: %llu keys of %u+%u bytes; %u rounds of %.1f s, %llu reads in all\n",
         (unsigned long long)r->load.keys, c->key_bytes, c->value_bytes, r->rounds, (double)HOT_ROUND_NS / NS_PER_S,
         (unsigned long long)r->reads);
  printf("  a READONLY transaction with one get (value checked): best round %.1f ns, median %.1f ns\n", r->best_ns,
         r->median_ns);
}

static void json_memory_point(FILE *f, const char *name, const struct mem_point *p)
{
  fprintf(f, "\"%s\": {\"region_bytes\": %llu, \"memtable_used_bytes\": %llu, \"daemon_rss_kib\": %llu, "
             "\"daemon_private_kib\": %llu}", name, (unsigned long long)p->region_bytes,
          (unsigned long long)p->st.memtable_used_bytes, (unsigned long long)p->daemon_rss_kib,
          (unsigned long long)p->daemon_private_kib);
}

static void json_memory(FILE *f, const struct results *res)
{
  const struct memory_result *r = &res->mem;
  fprintf(f, ",\n  \"memory\": {\"live_bytes\": %llu, \"region_per_live\": %.4f, ",
          (unsigned long long)r->live_bytes, ratio((double)r->loaded.region_bytes, (double)r->live_bytes));
  json_memory_point(f, "empty", &r->empty);
  fprintf(f, ", ");
  json_memory_point(f, "loaded", &r->loaded);
  fprintf(f, ", ");
  json_memory_point(f, "idle", &r->idle);
  fprintf(f, "}");
}

static void json_probe(FILE *f, const char *name, const struct fsync_result *r)
{
  const struct hist *h = &r->lat;
  fprintf(f, ",\n  \"%s\": {\"block_bytes\": %u, \"count\": %llu, \"seconds\": %.3f, \"per_s\": %.1f, "
             "\"mean_ms\": %.4f, \"p50_ms\": %.4f, \"p99_ms\": %.4f}",
          name, PROBE_BLOCK, (unsigned long long)h->count, r->seconds, per_s(h->count, r->seconds),
          hist_mean_ms(h), hist_quantile_ms(h, 0.5), hist_quantile_ms(h, 0.99));
}

static void json_sync(FILE *f, const struct results *res)
{
  json_probe(f, "fdatasync", &res->fsync);
  json_probe(f, "fdatasync_overwrite", &res->fsync_overwrite);
  json_probe(f, "fdatasync_overwrite_parallel", &res->fsync_parallel);
  fprintf(f, ",\n  \"sync_commit\": [");
  for (unsigned i = 0; i < res->nsync; i++) {
    const struct phase_result *p = &res->sync[i];
    struct sync_row s = sync_row(res, p);
    fprintf(f, "%s\n    {\"procs\": %u, \"seconds\": %.3f, \"commits\": %llu, \"conflicts\": %llu, "
               "\"commits_per_s\": %.1f, \"wal_groups\": %llu, \"wal_records\": %llu, \"avg_group\": %.3f, "
               "\"fdatasyncs_per_s\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"target_per_s\": %.1f, "
               "\"of_target\": %.4f, \"capped_target_per_s\": %.1f}",
            i ? "," : "", p->procs, p->seconds, (unsigned long long)p->txns, (unsigned long long)p->conflicts,
            s.commits_s, (unsigned long long)p->wal_groups, (unsigned long long)p->wal_records, s.group,
            s.fsyncs_s, s.p50_ms, s.p99_ms, s.target_s, s.commits_s / s.target_s, s.cap_s);
  }
  fprintf(f, "\n  ]");
}

static void json_async(FILE *f, const struct results *res)
{
  const struct phase_result *p = &res->async;
  fprintf(f, ",\n  \"fill_async\": {\"procs\": 1, \"seconds\": %.3f, \"commits\": %llu, \"commits_per_s\": %.1f, "
             "\"p50_ms\": %.5f, \"p99_ms\": %.5f, \"wal_groups\": %llu, \"wal_records\": %llu}",
          p->seconds, (unsigned long long)p->txns, per_s(p->txns, p->seconds), hist_quantile_ms(&p->lat, 0.5),
          hist_quantile_ms(&p->lat, 0.99), (unsigned long long)p->wal_groups, (unsigned long long)p->wal_records);
}

static void json_recovery(FILE *f, const struct results *res)
{
  const struct recovery_result *r = &res->rec;
  fprintf(f, ",\n  \"recovery\": {\"commits\": %llu, \"data_bytes\": %llu, \"wal_bytes\": %llu, "
             "\"fill_commits_per_s\": %.1f, \"restart_after_daemon_kill_ms\": %.3f, "
             "\"rebuild_from_wal_ms\": %.3f, \"rebuild_from_wal_cold_ms\": %.3f, "
             "\"region_page_mapped_write_us\": %.3f, \"region_page_pwrite_us\": %.3f}",
          (unsigned long long)r->commits, (unsigned long long)r->data_bytes, (unsigned long long)r->wal_bytes,
          per_s(r->fill.txns, r->fill.seconds), r->restart_ms, r->rebuild_ms, r->rebuild_cold_ms,
          r->pages.mapped_write_us, r->pages.pwrite_us);
}

static void json_settled(FILE *f, const struct load *ld, const struct settled *at)
{
  const sochdb_stats *s = &at->st;
  fprintf(f, "\"puts\": %llu, \"keys\": %llu, \"load_seconds\": %.3f, \"load_puts_per_s\": %.1f, "
             "\"settle_seconds\": %.3f, \"memtable_bytes\": %llu, \"memtable_used_bytes\": %llu, "
             "\"user_bytes\": %llu, "
             "\"flushes\": %llu, \"flush_bytes\": %llu, \"compactions\": %llu, \"compact_bytes_read\": %llu, "
             "\"compact_bytes_written\": %llu, \"wal_bytes_written\": %llu, \"wal_file_bytes\": %llu, "
             "\"sst_files\": %u, \"l0_files\": %u, \"sst_bytes\": %llu, \"cache_bytes\": %llu, "
             "\"peak_l0_files\": %u, \"l0_stops\": %llu, \"l0_stop_us\": %llu, \"compact_throttle_us\": %llu",
          (unsigned long long)ld->puts, (unsigned long long)ld->keys, ld->seconds, per_s(ld->puts, ld->seconds),
          at->seconds, (unsigned long long)s->memtable_bytes, (unsigned long long)s->memtable_used_bytes,
          (unsigned long long)s->user_bytes, (unsigned long long)s->flushes, (unsigned long long)s->flush_bytes,
          (unsigned long long)s->compactions, (unsigned long long)s->compact_bytes_read,
          (unsigned long long)s->compact_bytes_written, (unsigned long long)s->wal_bytes,
          (unsigned long long)at->wal_file_bytes, s->sst_files, s->l0_files, (unsigned long long)s->sst_bytes,
          (unsigned long long)s->cache_bytes, ld->peak_l0, (unsigned long long)s->l0_stops,
          (unsigned long long)s->l0_stop_us, (unsigned long long)s->compact_throttle_us);
}

static void json_read(FILE *f, const struct config *c, const struct results *res)
{
  const struct read_result *r = &res->read;
  fprintf(f, ",\n  \"read_sst\": {\"batch\": %u, ", c->batch);
  json_settled(f, &r->load, &r->at);
  fprintf(f, ", \"keys_in_sst_share_est\": %.4f, \"rows\": [", flushed_share(&r->at.st));
  for (unsigned i = 0; i < r->rows; i++) {
    const struct phase_result *p = &r->row[i];
    struct read_row w = read_row(p);
    fprintf(f, "%s\n    {\"procs\": %u, \"seconds\": %.3f, \"reads\": %llu, \"reads_per_s\": %.1f, "
               "\"reads_per_s_per_proc\": %.1f, \"p50_us\": %.3f, \"p99_us\": %.3f, \"cache_hits\": %llu, "
               "\"cache_misses\": %llu, \"cache_hit_rate\": %.4f, \"cache_lookups_per_read\": %.3f, "
               "\"reader_private_kib\": %llu}",
            i ? "," : "", p->procs, p->seconds, (unsigned long long)p->txns, w.reads_s, w.per_proc_s, w.p50_us,
            w.p99_us, (unsigned long long)p->cache_hits, (unsigned long long)p->cache_misses, w.hit_rate, w.lookups,
            (unsigned long long)p->private_kib);
  }
  fprintf(f, "\n  ]}");
}

static void json_amp(FILE *f, const struct config *c, const struct amp_result *r, const char *name)
{
  struct amp_figures a = amp_figures(r);
  fprintf(f, ",\n  \"%s\": {\"batch\": %u, \"memtables_written\": %u, ", name, c->batch, c->amp_memtables);
  json_settled(f, &r->load, &r->at);
  fprintf(f, ", \"live_keys\": %llu, \"live_bytes\": %llu, \"write_amp\": %.4f, \"write_amp_with_wal\": %.4f, "
             "\"space_amp\": %.4f, \"space_amp_with_wal\": %.4f}",
          (unsigned long long)r->live_keys, (unsigned long long)r->live_bytes, a.write, a.write_wal, a.space,
          a.space_wal);
}

static void json_hot(FILE *f, const struct results *res)
{
  const struct hot_result *r = &res->hot;
  fprintf(f, ",\n  \"read_hot\": {\"keys\": %llu, \"rounds\": %u, \"round_seconds\": %.1f, \"reads\": %llu, "
             "\"best_ns\": %.1f, \"median_ns\": %.1f}", (unsigned long long)r->load.keys, r->rounds,
          (double)HOT_ROUND_NS / NS_PER_S, (unsigned long long)r->reads, r->best_ns, r->median_ns);
}

static int write_json(const struct config *c, const struct results *res)
{
  FILE *f = fopen(c->json, "w");
  if (!f)
    return fail_errno("create", c->json);
  fprintf(f, "{\n  \"cpus\": %ld,\n  \"dir\": ", res->cpus);
  json_str(f, res->root);
  fprintf(f, ",\n  \"fs\": ");
  json_str(f, res->fs.name);
  fprintf(f, ",\n  \"fs_in_memory\": %s,\n  \"region_dir\": ", res->fs.in_memory ? "true" : "false");
  json_str(f, res->pages.dir);
  json_region_pages(f, &res->pages);
  fprintf(f, ",\n  \"key_bytes\": %u,\n  \"value_bytes\": %u", c->key_bytes, c->value_bytes);
  if (res->have_fsync)
    json_sync(f, res);
  if (res->have_async)
    json_async(f, res);
  if (res->have_recovery)
    json_recovery(f, res);
  if (res->have_read)
    json_read(f, c, res);
  if (res->have_amp) {
    json_amp(f, c, &res->amp, "amplification");
    json_amp(f, c, &res->amp_seq, "amplification_in_order");
  }
  if (res->have_memory)
    json_memory(f, res);
  if (res->have_hot)
    json_hot(f, res);
  fprintf(f, "\n}\n");
  return fclose(f) == 0 ? 0 : fail_errno("write", c->json);
}

static void report(const struct config *c, const struct results *res)
{
  print_header(c, res);
  if (res->have_fsync)
    print_sync(c, res);
  if (res->have_async)
    print_async(res);
  if (res->have_recovery)
    print_recovery(res);
  if (res->have_read)
    print_read(c, res);
  if (res->have_amp) {
    print_amp(c, &res->amp);
    print_amp(c, &res->amp_seq);
  }
  if (res->have_memory)
    print_memory(c, res);
  if (res->have_hot)
    print_hot(c, res);
}

/* ---- main -------------------------------------------------------------------------- */

static int make_root(const struct config *c, struct results *res)
{
  if ((size_t)snprintf(res->root, sizeof res->root, "%s/sochdb-bench.XXXXXX", c->base) >= sizeof res->root)
    return fail("--dir is too long");
  if (!mkdtemp(res->root))
    return fail_errno("create a directory in", c->base);
  fs_type(res->root, &res->fs);
  region_pages(res->root, &res->pages);
  if (res->fs.in_memory)
    fprintf(stderr, "sochdb-bench: warning: %s is on %s: fdatasync costs nothing there, so the "
                    "sync_commit and fdatasync figures say nothing about a disk (use --dir)\n",
            res->root, res->fs.name);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc > 1 && !strcmp(argv[1], "compare"))   /* sochdb against LMDB, SQLite, RocksDB: compare.c */
    return compare_main(argc - 1, argv + 1);
  struct config c;
  int rc = parse_args(argc, argv, &c);
  if (rc)
    return rc - 1;
  static struct results res;   /* large: the histograms */
  res.cpus = sysconf(_SC_NPROCESSORS_ONLN);
  catch_signals();
  if (make_root(&c, &res) != 0)
    return 1;
  if (c.workloads & W_SYNC)
    rc = workload_sync(&c, &res);
  if (rc == 0 && c.workloads & W_ASYNC)
    rc = workload_async(&c, &res);
  if (rc == 0 && c.workloads & W_RECOVERY)
    rc = workload_recovery(&c, &res);
  if (rc == 0 && c.workloads & W_READ)
    rc = workload_read(&c, &res);
  if (rc == 0 && c.workloads & W_AMP)
    rc = workload_amp(&c, &res);
  if (rc == 0 && c.workloads & W_MEMORY)
    rc = workload_memory(&c, &res);
  if (rc == 0 && c.workloads & W_HOT)
    rc = workload_hot(&c, &res);
  rm_rf(res.root);
  if (rc != 0 || interrupted)
    return 1;
  report(&c, &res);
  return c.json && write_json(&c, &res) != 0 ? 1 : 0;
}
