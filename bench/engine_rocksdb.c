/*
** engine_rocksdb.c — RocksDB behind engine.h, through its C API (rocksdb/c.h).
**
** RocksDB locks a database to one process (DIR/LOCK), so it has no
** ENGINE_MULTIPROCESS: where the others run P processes, it runs one process
** whose P threads share one handle (rocksdb_t is thread-safe), and the output
** says so. Its own group commit then batches the threads' WAL writes.
**
** A write transaction is a WriteBatch applied by rocksdb_write() at commit,
** with WriteOptions.sync = 1 for SYNC (the WAL is fsync'd, grouped with the
** other threads' writes) and 0 otherwise (the WAL is written, never
** fsync'd). A get in a write transaction reads the database, not the batch
** (the benchmark never reads its own writes). A read-only transaction is a
** snapshot (rocksdb_create_snapshot) that its gets and its iterator read.
**
** Options: create_if_missing, increase_parallelism(CPUs), a block-based
** table with a bloom filter of 10 bits per key and an LRU block cache of
** --cache-mb (64 MiB by default, like sochdb's shared cache), reads from
** mapped files (allow_mmap_reads, as sochdb and LMDB read); everything else
** RocksDB's defaults (64 MiB memtables, leveled compaction, Snappy or LZ4
** where built in).
*/
#include "common.h"
#include "engine.h"

#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

struct engine {
  rocksdb_t              *db;
  rocksdb_options_t      *opts;
  rocksdb_cache_t        *cache;
  rocksdb_writeoptions_t *wsync, *wnosync;
  rocksdb_readoptions_t  *rplain;    /* gets of write transactions */
};

struct engine_txn {
  struct engine            *e;
  unsigned                  flags;
  rocksdb_writebatch_t     *batch;  /* write transactions */
  const rocksdb_snapshot_t *snap;   /* read-only transactions ... */
  rocksdb_readoptions_t    *ro;     /* ... read through it */
  rocksdb_pinnableslice_t  *pin;    /* the last get's value */
};

/* Report and free a RocksDB error string; ENG_ERROR. */
static int rfail(const char *what, char *err)
{
  fail("rocksdb: %s: %s", what, err);
  rocksdb_free(err);
  return ENG_ERROR;
}

static void r_close(struct engine *e)
{
  if (e->db)
    rocksdb_close(e->db);
  if (e->wsync)
    rocksdb_writeoptions_destroy(e->wsync);
  if (e->wnosync)
    rocksdb_writeoptions_destroy(e->wnosync);
  if (e->rplain)
    rocksdb_readoptions_destroy(e->rplain);
  if (e->opts)
    rocksdb_options_destroy(e->opts);
  if (e->cache)
    rocksdb_cache_destroy(e->cache);
  free(e);
}

static int r_open(const struct engine_params *p, struct engine **out)
{
  struct engine *e = calloc(1, sizeof *e);
  if (!e)
    return fail("out of memory");
  e->opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(e->opts, 1);
  /* Reads from the mapped files, as sochdb's (whose block cache holds only
  ** LZ4-compressed blocks: with incompressible values every block is read
  ** in place from its mapped SSTable) and LMDB's: without this, RocksDB's
  ** 64 MiB cache is the only memory its reads may use, and every miss is a
  ** pread into it. */
  rocksdb_options_set_allow_mmap_reads(e->opts, 1);
  rocksdb_options_increase_parallelism(e->opts, (int)p->cpus);
  rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
  e->cache = rocksdb_cache_create_lru(p->cache_bytes);
  rocksdb_block_based_options_set_block_cache(t, e->cache);
  rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom(10));   /* t owns it */
  rocksdb_options_set_block_based_table_factory(e->opts, t);
  rocksdb_block_based_options_destroy(t);
  e->wsync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(e->wsync, 1);
  e->wnosync = rocksdb_writeoptions_create();
  e->rplain = rocksdb_readoptions_create();
  char *err = NULL;
  e->db = rocksdb_open(e->opts, p->dir, &err);
  if (err) {
    e->db = NULL;
    r_close(e);
    return rfail(p->dir, err);
  }
  *out = e;
  return 0;
}

static int r_begin(struct engine *e, unsigned flags, struct engine_txn **out)
{
  struct engine_txn *t = calloc(1, sizeof *t);
  if (!t)
    return fail("out of memory");
  t->e = e;
  t->flags = flags;
  if ((flags & ENG_TXN_READONLY) && (flags & ENG_TXN_ONE_READ)) {
    /* one Get or one iterator: each reads a consistent implicit snapshot; t->ro stays NULL */
  } else if (flags & ENG_TXN_READONLY) {
    t->snap = rocksdb_create_snapshot(e->db);
    t->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(t->ro, t->snap);
  } else
    t->batch = rocksdb_writebatch_create();
  *out = t;
  return ENG_OK;
}

static void r_end(struct engine_txn *t)
{
  if (t->pin)
    rocksdb_pinnableslice_destroy(t->pin);
  if (t->ro)
    rocksdb_readoptions_destroy(t->ro);
  if (t->snap)
    rocksdb_release_snapshot(t->e->db, t->snap);
  if (t->batch)
    rocksdb_writebatch_destroy(t->batch);
  free(t);
}

static int r_put(struct engine_txn *t, const void *key, size_t klen, const void *val, size_t vlen)
{
  if (!t->batch)
    return fail("rocksdb: put in a read-only transaction");
  rocksdb_writebatch_put(t->batch, key, klen, val, vlen);
  return ENG_OK;
}

static int r_get(struct engine_txn *t, const void *key, size_t klen, const void **val, size_t *vlen)
{
  char *err = NULL;
  if (t->pin)
    rocksdb_pinnableslice_destroy(t->pin);
  t->pin = rocksdb_get_pinned(t->e->db, t->ro ? t->ro : t->e->rplain, key, klen, &err);
  if (err)
    return rfail("get", err);
  if (!t->pin)
    return ENG_NOTFOUND;
  *val = rocksdb_pinnableslice_value(t->pin, vlen);
  return ENG_OK;
}

static int r_scan(struct engine_txn *t, engine_scan_fn fn, void *ctx)
{
  rocksdb_iterator_t *it = rocksdb_create_iterator(t->e->db, t->ro ? t->ro : t->e->rplain);
  int stop = 0;
  for (rocksdb_iter_seek_to_first(it); !stop && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(it, &kl), *v = rocksdb_iter_value(it, &vl);
    stop = fn(ctx, k, kl, v, vl);
  }
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  if (err)
    return rfail("iterator", err);
  return stop;
}

static int r_commit(struct engine_txn *t)
{
  char *err = NULL;
  if (t->batch)
    rocksdb_write(t->e->db, t->flags & ENG_TXN_SYNC ? t->e->wsync : t->e->wnosync, t->batch, &err);
  r_end(t);
  return err ? rfail("write", err) : ENG_OK;
}

static void r_abort(struct engine_txn *t) { r_end(t); }

const struct engine_ops engine_rocksdb = {
  .name = "rocksdb",
  .caps = ENGINE_THREADS,
  .settings = "ONE process (RocksDB locks a database to one process): P threads sharing one handle where the "
              "others run P processes; a write transaction = a WriteBatch, SYNC = WriteOptions.sync (WAL "
              "fsync'd, group commit), else sync=0 (WAL written, not fsync'd); read-only = a snapshot (none for a "
              "one-read transaction: Get and iterators read an implicit one); bloom filter 10 bits/key, LRU block "
              "cache --cache-mb (64 MiB), allow_mmap_reads, increase_parallelism(CPUs), other "
              "options default",
  .open = r_open,
  .close = r_close,
  .begin = r_begin,
  .put = r_put,
  .get = r_get,
  .scan = r_scan,
  .commit = r_commit,
  .abort = r_abort,
};
