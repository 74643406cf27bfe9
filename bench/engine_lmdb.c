/*
** engine_lmdb.c — LMDB behind engine.h.
**
** One environment per process, opened after fork() (LMDB's own rule), on
** DIR/data.mdb and DIR/lock.mdb. Readers never block; writers take LMDB's
** writer mutex in lock.mdb, so write transactions of all processes run one
** at a time. A read-only transaction is reset and renewed rather than freed
** and allocated again (LMDB's advice for frequent readers).
**
** The map is writable (MDB_WRITEMAP): a commit writes its pages in place in
** the shared mapping instead of malloc'ing them and pwrite()ing them (LMDB's
** documentation: faster for a database that fits in RAM, as every database
** of this benchmark does; sochdb's commits likewise write into shared memory).
**
** Durability: a SYNC transaction is committed with LMDB's default, durable
** commit (msync(MS_SYNC) of the data pages, then of the meta page); any other with
** MDB_NOSYNC, switched with mdb_env_set_flags() before the transaction
** begins: nothing is flushed, the OS writes the pages back when it likes (an
** application crash loses nothing, a system crash may lose the last
** transactions).
*/
#include "common.h"
#include "engine.h"

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

struct engine_txn {
  struct engine *e;
  MDB_txn       *txn;
  int            readonly;
};

struct engine {
  MDB_env          *env;
  MDB_dbi           dbi;
  MDB_txn          *reader;    /* a reset read-only transaction, renewed by the next begin */
  int               nosync;    /* MDB_NOSYNC is set */
  struct engine_txn txn;       /* one transaction at a time */
};

static int lfail(const char *what, int rc)
{
  return fail("lmdb: %s: %s", what, mdb_strerror(rc));
}

/* The environment, opened on dir, and the main database. */
static int env_open(const struct engine_params *p, MDB_env **env, MDB_dbi *dbi)
{
  int rc = mdb_env_create(env);
  if (rc)
    return lfail("env_create", rc);
  MDB_txn *t;
  if ((rc = mdb_env_set_mapsize(*env, p->map_bytes)) != 0)
    lfail("set_mapsize", rc);
  else if ((rc = mdb_env_set_maxreaders(*env, MAX_PROCS + 56)) != 0)
    lfail("set_maxreaders", rc);
  else if ((rc = mdb_env_open(*env, p->dir, MDB_NOSYNC | MDB_WRITEMAP, 0600)) != 0)
    lfail(p->dir, rc);
  else if ((rc = mdb_txn_begin(*env, NULL, 0, &t)) != 0)
    lfail("txn_begin", rc);
  else if ((rc = mdb_dbi_open(t, NULL, 0, dbi)) != 0) {
    lfail("dbi_open", rc);
    mdb_txn_abort(t);
  } else if ((rc = mdb_txn_commit(t)) != 0)   /* frees t, whatever it returns */
    lfail("commit", rc);
  if (rc) {
    mdb_env_close(*env);
    *env = NULL;
    return -1;
  }
  return 0;
}

/* The files exist before the workers open them at once. */
static int l_setup(const struct engine_params *p, void **state)
{
  MDB_env *env;
  MDB_dbi dbi;
  *state = NULL;
  if (env_open(p, &env, &dbi) != 0)
    return -1;
  mdb_env_close(env);
  return 0;
}

static int l_open(const struct engine_params *p, struct engine **out)
{
  struct engine *e = calloc(1, sizeof *e);
  if (!e)
    return fail("out of memory");
  if (env_open(p, &e->env, &e->dbi) != 0) {
    free(e);
    return -1;
  }
  e->nosync = 1;
  e->txn.e = e;
  *out = e;
  return 0;
}

static void l_close(struct engine *e)
{
  mdb_txn_abort(e->reader);
  if (e->nosync)
    mdb_env_sync(e->env, 1);   /* what a NOSYNC process does before it leaves: the next phase starts clean */
  mdb_env_close(e->env);
  free(e);
}

static int l_begin(struct engine *e, unsigned flags, struct engine_txn **t)
{
  int rc;
  e->txn.readonly = !!(flags & ENG_TXN_READONLY);
  if (e->txn.readonly && e->reader) {
    if ((rc = mdb_txn_renew(e->reader)) != 0)
      return lfail("txn_renew", rc);
    e->txn.txn = e->reader;
    e->reader = NULL;
  } else {
    int nosync = !(flags & ENG_TXN_SYNC);
    if (!e->txn.readonly && nosync != e->nosync) {
      if ((rc = mdb_env_set_flags(e->env, MDB_NOSYNC, nosync)) != 0)
        return lfail("env_set_flags", rc);
      e->nosync = nosync;
    }
    if ((rc = mdb_txn_begin(e->env, NULL, e->txn.readonly ? MDB_RDONLY : 0, &e->txn.txn)) != 0)
      return lfail("txn_begin", rc);
  }
  *t = &e->txn;
  return ENG_OK;
}

static int l_put(struct engine_txn *t, const void *key, size_t klen, const void *val, size_t vlen)
{
  MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
  int rc = mdb_put(t->txn, t->e->dbi, &k, &v, 0);
  return rc == 0 ? ENG_OK : lfail("put", rc);
}

static int l_get(struct engine_txn *t, const void *key, size_t klen, const void **val, size_t *vlen)
{
  MDB_val k = { klen, (void *)key }, v;
  int rc = mdb_get(t->txn, t->e->dbi, &k, &v);
  if (rc == MDB_NOTFOUND)
    return ENG_NOTFOUND;
  if (rc != 0)
    return lfail("get", rc);
  *val = v.mv_data;
  *vlen = v.mv_size;
  return ENG_OK;
}

static int l_scan(struct engine_txn *t, engine_scan_fn fn, void *ctx)
{
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(t->txn, t->e->dbi, &c), stop = 0;
  if (rc != 0)
    return lfail("cursor_open", rc);
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !stop; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    stop = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
  mdb_cursor_close(c);
  if (stop)
    return stop;
  return rc == MDB_NOTFOUND ? ENG_OK : lfail("cursor_get", rc);
}

/* A read-only transaction is kept, reset, for the next begin. */
static void l_end_reader(struct engine_txn *t)
{
  mdb_txn_reset(t->txn);
  t->e->reader = t->txn;
  t->txn = NULL;
}

static int l_commit(struct engine_txn *t)
{
  if (t->readonly) {
    l_end_reader(t);
    return ENG_OK;
  }
  int rc = mdb_txn_commit(t->txn);
  t->txn = NULL;
  return rc == 0 ? ENG_OK : lfail("commit", rc);
}

static void l_abort(struct engine_txn *t)
{
  if (t->readonly) {
    l_end_reader(t);
    return;
  }
  mdb_txn_abort(t->txn);
  t->txn = NULL;
}

const struct engine_ops engine_lmdb = {
  .name = "lmdb",
  .caps = ENGINE_MULTIPROCESS,
  .settings = "one environment per process (opened after fork); writers serialised by LMDB's writer mutex; "
              "MDB_WRITEMAP; SYNC = default durable commit (msync of data, then of meta), else MDB_NOSYNC (no flush "
              "at all); read-only transactions reset/renewed; map size --lmdb-map-mb; no MDB_APPEND",
  .setup = l_setup,
  .open = l_open,
  .close = l_close,
  .begin = l_begin,
  .put = l_put,
  .get = l_get,
  .scan = l_scan,
  .commit = l_commit,
  .abort = l_abort,
};
