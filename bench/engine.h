/*
** engine.h — the small key-value interface `sochdb-bench compare` drives
** sochdb, LMDB, SQLite and RocksDB through (one file each: engine_*.c).
**
** The benchmark's parent process never opens an engine itself: it calls
** setup before the first worker of a database starts and teardown after the
** last one ended. Each worker process opens its own handle after fork() (no
** handle of these engines survives a fork). An engine without
** ENGINE_MULTIPROCESS (RocksDB locks a database to one process) gets one
** worker process whose P threads share one handle; the others get P
** processes, one handle each, used by one thread.
**
** A transaction is used by one thread; a handle of an engine without
** ENGINE_THREADS has at most one open transaction at a time (the benchmark
** never opens two).
*/
#ifndef SOCHDB_BENCH_ENGINE_H
#define SOCHDB_BENCH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

/* Results of the calls below. Errors are reported (fail()) by the engine. */
enum {
  ENG_OK = 0,
  ENG_NOTFOUND = 1,      /* get: no such key */
  ENG_RETRY = 2,         /* commit (or begin): a conflict or a lock timeout; nothing applied, run it again */
  ENG_ERROR = -1,
};

#define ENGINE_MULTIPROCESS 0x1u   /* several processes may open one database at once */
#define ENGINE_THREADS      0x2u   /* one handle may be shared by threads */

#define ENG_TXN_READONLY 0x1u      /* begin: a read-only transaction (a snapshot) */
#define ENG_TXN_SYNC     0x2u      /* begin: its commit returns once durable (fsync'd); else no
                                      waiting for the disk. Chosen at begin, not at commit:
                                      SQLite takes PRAGMA synchronous at BEGIN. */
#define ENG_TXN_ONE_READ 0x4u      /* begin, with READONLY: the transaction makes exactly one get or one
                                      scan. An engine whose single read is a consistent snapshot by itself
                                      (RocksDB's Get and its iterator) may skip its explicit snapshot, as its
                                      own users would. */

/* What every handle of one database gets: the same in every process. */
struct engine_params {
  const char *dir;             /* the database's directory: exists, empty before setup */
  unsigned    cpus;            /* online CPUs */
  unsigned    threads;         /* threads that will share one handle (1 unless ENGINE_THREADS) */
  unsigned    procs;           /* processes that will open the database at once */
  size_t      cache_bytes;     /* block / page cache, where the engine has one it sizes */
  size_t      region_bytes;    /* sochdb: the shared region (sparse) */
  size_t      memtable_bytes;  /* sochdb: one memtable arena; 0 = the library's default */
  size_t      map_bytes;       /* LMDB: the map size (address space, not memory) */
};

struct engine;                 /* one handle: per process, or per process shared by its threads */
struct engine_txn;

/* scan's callback: nonzero stops the scan and is returned by scan. */
typedef int (*engine_scan_fn)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen);

struct engine_ops {
  const char *name;            /* "sochdb", "lmdb", "sqlite", "rocksdb" */
  unsigned    caps;            /* ENGINE_* */
  /* One line: the settings the benchmark uses (printed and in the JSON). */
  const char *settings;

  /* In the parent, before the first open of a database (may be NULL): create
  ** what every process expects to find. *state is the engine's, given back
  ** to the parent's other calls. */
  int  (*setup)(const struct engine_params *p, void **state);
  /* In the parent, after the last handle was closed (may be NULL): free the
  ** state, stop what runs on the engine's behalf; the caller then removes
  ** p->dir. */
  int  (*teardown)(const struct engine_params *p, void *state);
  /* In the parent, after a load or a fill (may be NULL): wait until the
  ** engine's background work on it has settled. From the call: *durable_s
  ** until the newest commit was durable (its log caught up), *settle_s
  ** until flushes and compaction settled. */
  int  (*quiesce)(void *state, double *durable_s, double *settle_s);
  /* In the parent (may be NULL): the engine's memory outside its clients,
  ** in KiB: what a shared region holds, and a helper process's RSS and
  ** private memory. */
  void (*shared_memory)(void *state, uint64_t *region_kib, uint64_t *helper_rss_kib,
                        uint64_t *helper_private_kib);

  /* In the parent (may be NULL): CPU time so far, in ns, of the helper
  ** process that works for the clients (sochdbd), or 0. */
  uint64_t (*helper_cpu_ns)(void *state);
  /* In the parent (may be NULL): microseconds the clients have waited so
  ** far, all together, for the helper to catch up (sochdb's write stalls). */
  uint64_t (*stall_us)(void *state);

  int  (*open)(const struct engine_params *p, struct engine **out);
  void (*close)(struct engine *e);
  /* A file the handle maps that is the database's although it lies outside
  ** p->dir (sochdb's region in /dev/shm); NULL if none. */
  const char *(*shared_file)(struct engine *e);

  int  (*begin)(struct engine *e, unsigned flags, struct engine_txn **t);
  int  (*put)(struct engine_txn *t, const void *key, size_t klen, const void *val, size_t vlen);
  /* *val stays valid until the next call on t or its end. */
  int  (*get)(struct engine_txn *t, const void *key, size_t klen, const void **val, size_t *vlen);
  /* Every key in byte order, in t's snapshot. */
  int  (*scan)(struct engine_txn *t, engine_scan_fn fn, void *ctx);
  /* Frees t whatever it returns: ENG_OK, ENG_RETRY, ENG_ERROR. */
  int  (*commit)(struct engine_txn *t);
  void (*abort)(struct engine_txn *t);
};

extern const struct engine_ops engine_sochdb;
#ifdef SOCHDB_BENCH_HAVE_LMDB
extern const struct engine_ops engine_lmdb;
#endif
#ifdef SOCHDB_BENCH_HAVE_SQLITE
extern const struct engine_ops engine_sqlite;
#endif
#ifdef SOCHDB_BENCH_HAVE_ROCKSDB
extern const struct engine_ops engine_rocksdb;
#endif

#endif /* SOCHDB_BENCH_ENGINE_H */
