/*
** engine_sqlite.c — SQLite behind engine.h.
**
** One database file, DIR/bench.sqlite, in WAL mode, holding one table
** kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID (the rows live in the primary
** key's B-tree, as a key-value store's would). One connection per process,
** opened after fork(), with every statement prepared once. Write transactions
** begin with BEGIN IMMEDIATE: they take the database's write lock at once, so
** writers of all processes run one at a time and none fails late on a lock
** upgrade; a writer waits for the lock in SQLite's busy handler, up to
** BUSY_TIMEOUT_MS (then the transaction is retried and counted). Read-only
** transactions are BEGIN (deferred) ... COMMIT: a snapshot of the WAL.
**
** Durability: PRAGMA synchronous=FULL for SYNC transactions (the WAL is
** fsync'd at every commit), synchronous=OFF for the others (never fsync'd).
** SQLite reads the setting when a transaction begins, which is why engine.h
** asks for it at begin.
**
** PRAGMA mmap_size=1 GiB: reads come straight from the OS page cache, as
** LMDB's and sochdb's do; the page cache is SQLite's default (2 MB).
*/
#include "common.h"
#include "engine.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_TIMEOUT_MS 60000
#define MMAP_BYTES      (1ll << 30)

enum { S_BEGIN_R, S_BEGIN_W, S_COMMIT, S_ROLLBACK, S_GET, S_PUT, S_SCAN, S_COUNT };

static const char *const sql[S_COUNT] = {
  [S_BEGIN_R] = "BEGIN",
  [S_BEGIN_W] = "BEGIN IMMEDIATE",
  [S_COMMIT] = "COMMIT",
  [S_ROLLBACK] = "ROLLBACK",
  [S_GET] = "SELECT v FROM kv WHERE k = ?1",
  [S_PUT] = "INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)",
  [S_SCAN] = "SELECT k, v FROM kv ORDER BY k",
};

struct engine_txn {
  struct engine *e;
  int            readonly;
};

struct engine {
  sqlite3          *db;
  sqlite3_stmt     *st[S_COUNT];
  int               sync;      /* synchronous=FULL is in force */
  struct engine_txn txn;       /* one transaction at a time */
};

static int qfail(sqlite3 *db, const char *what)
{
  return fail("sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int db_path(const struct engine_params *p, char *path, size_t size)
{
  if ((size_t)snprintf(path, size, "%s/bench.sqlite", p->dir) >= size)
    return fail("path too long: %s", p->dir);
  return 0;
}

static int exec(sqlite3 *db, const char *s)
{
  char *msg = NULL;
  if (sqlite3_exec(db, s, NULL, NULL, &msg) == SQLITE_OK)
    return 0;
  fail("sqlite: %s: %s", s, msg ? msg : sqlite3_errmsg(db));
  sqlite3_free(msg);
  return -1;
}

/* The database, in WAL mode (a property of the file), and its table, before
** the workers open it at once. */
static int q_setup(const struct engine_params *p, void **state)
{
  char path[PATH_MAX];
  sqlite3 *db = NULL;
  *state = NULL;
  if (db_path(p, path, sizeof path) != 0)
    return -1;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK ? 0
           : qfail(db, path);
  if (rc == 0)
    rc = exec(db, "PRAGMA journal_mode=WAL; "
                  "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID");
  sqlite3_close(db);
  return rc;
}

static void q_close(struct engine *e)
{
  for (unsigned i = 0; i < S_COUNT; i++)
    sqlite3_finalize(e->st[i]);
  sqlite3_close(e->db);
  free(e);
}

static int q_open(const struct engine_params *p, struct engine **out)
{
  char path[PATH_MAX], pragmas[128];
  struct engine *e = calloc(1, sizeof *e);
  if (!e)
    return fail("out of memory");
  e->txn.e = e;
  int rc = db_path(p, path, sizeof path);
  if (rc == 0 && sqlite3_open_v2(path, &e->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
    rc = qfail(e->db, path);
  if (rc == 0 && sqlite3_busy_timeout(e->db, BUSY_TIMEOUT_MS) != SQLITE_OK)
    rc = qfail(e->db, "busy_timeout");
  snprintf(pragmas, sizeof pragmas, "PRAGMA synchronous=OFF; PRAGMA mmap_size=%lld", MMAP_BYTES);
  if (rc == 0)
    rc = exec(e->db, pragmas);
  for (unsigned i = 0; i < S_COUNT && rc == 0; i++)
    if (sqlite3_prepare_v3(e->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &e->st[i], NULL) != SQLITE_OK)
      rc = qfail(e->db, sql[i]);
  if (rc != 0) {
    q_close(e);
    return -1;
  }
  *out = e;
  return 0;
}

/* Run a statement without results. SQLITE_BUSY (the busy handler gave up):
** ENG_RETRY. */
static int run(struct engine *e, unsigned s)
{
  int rc = sqlite3_step(e->st[s]);
  sqlite3_reset(e->st[s]);
  if (rc == SQLITE_DONE)
    return ENG_OK;
  if (rc == SQLITE_BUSY)
    return ENG_RETRY;
  return qfail(e->db, sql[s]);
}

static int q_begin(struct engine *e, unsigned flags, struct engine_txn **t)
{
  e->txn.readonly = !!(flags & ENG_TXN_READONLY);
  int rc, sync = !!(flags & ENG_TXN_SYNC);
  if (!e->txn.readonly && sync != e->sync) {
    /* Not a prepared statement: SQLite applies this pragma when it compiles it. */
    if (exec(e->db, sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF") != 0)
      return ENG_ERROR;
    e->sync = sync;
  }
  if ((rc = run(e, e->txn.readonly ? S_BEGIN_R : S_BEGIN_W)) != ENG_OK)
    return rc;
  *t = &e->txn;
  return ENG_OK;
}

static int q_put(struct engine_txn *t, const void *key, size_t klen, const void *val, size_t vlen)
{
  sqlite3_stmt *s = t->e->st[S_PUT];
  if (sqlite3_bind_blob(s, 1, key, (int)klen, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_blob(s, 2, val, (int)vlen, SQLITE_STATIC) != SQLITE_OK)
    return qfail(t->e->db, "bind");
  return run(t->e, S_PUT);
}

static int q_get(struct engine_txn *t, const void *key, size_t klen, const void **val, size_t *vlen)
{
  sqlite3_stmt *s = t->e->st[S_GET];
  sqlite3_reset(s);   /* the previous get's value is released now */
  if (sqlite3_bind_blob(s, 1, key, (int)klen, SQLITE_STATIC) != SQLITE_OK)
    return qfail(t->e->db, "bind");
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    *val = sqlite3_column_blob(s, 0);
    *vlen = (size_t)sqlite3_column_bytes(s, 0);
    return ENG_OK;
  }
  sqlite3_reset(s);
  if (rc == SQLITE_DONE)
    return ENG_NOTFOUND;
  return rc == SQLITE_BUSY ? ENG_RETRY : qfail(t->e->db, sql[S_GET]);
}

static int q_scan(struct engine_txn *t, engine_scan_fn fn, void *ctx)
{
  sqlite3_stmt *s = t->e->st[S_SCAN];
  int rc, stop = 0;
  while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW)
    stop = fn(ctx, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), sqlite3_column_blob(s, 1),
              (size_t)sqlite3_column_bytes(s, 1));
  sqlite3_reset(s);
  if (stop)
    return stop;
  if (rc == SQLITE_DONE)
    return ENG_OK;
  return rc == SQLITE_BUSY ? ENG_RETRY : qfail(t->e->db, sql[S_SCAN]);
}

static void q_abort(struct engine_txn *t)
{
  sqlite3_reset(t->e->st[S_GET]);
  if (sqlite3_get_autocommit(t->e->db) == 0)   /* still in the transaction */
    run(t->e, S_ROLLBACK);
}

static int q_commit(struct engine_txn *t)
{
  sqlite3_reset(t->e->st[S_GET]);
  int rc = run(t->e, S_COMMIT);
  if (rc != ENG_OK)
    q_abort(t);
  return rc;
}

const struct engine_ops engine_sqlite = {
  .name = "sqlite",
  .caps = ENGINE_MULTIPROCESS,
  .settings = "WAL mode; table kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID; one connection per process (opened "
              "after fork), statements prepared once; writers BEGIN IMMEDIATE (serialised by the WAL write "
              "lock), busy_timeout 60 s; SYNC = synchronous=FULL, else synchronous=OFF; mmap_size 1 GiB; "
              "default page cache and autocheckpoint (1000 pages)",
  .setup = q_setup,
  .open = q_open,
  .close = q_close,
  .begin = q_begin,
  .put = q_put,
  .get = q_get,
  .scan = q_scan,
  .commit = q_commit,
  .abort = q_abort,
};
