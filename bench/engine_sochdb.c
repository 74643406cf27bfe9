/*
** engine_sochdb.c — sochdb behind engine.h.
**
** Every worker process opens its own handle; all attach to one shared region
** and one sochdbd (started by the first open). The parent holds a handle of
** its own from setup to teardown: it keeps the daemon and the region alive
** between the phases and reads the stats (quiesce), and teardown stops the
** daemon and removes the region, as the sochdb workloads do.
*/
#include "common.h"
#include "engine.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct engine_txn {
  sochdb_txn *t;
  unsigned    flags;           /* ENG_TXN_* */
};

struct engine {
  sochdb           *db;
  struct engine_txn txn;       /* one transaction at a time */
};

struct sochdb_state {
  sochdb *db;                  /* the parent's handle */
  char    dir[PATH_MAX];
  char    region[PATH_MAX];
};

static sochdb_options options(const struct engine_params *p)
{
  return (sochdb_options){ .region_bytes = p->region_bytes, .memtable_bytes = p->memtable_bytes,
                           .cache_bytes = p->cache_bytes };
}

static int s_setup(const struct engine_params *p, void **state)
{
  struct sochdb_state *s = calloc(1, sizeof *s);
  if (!s)
    return fail("out of memory");
  sochdb_options o = options(p);
  int rc = sochdb_open(p->dir, &o, &s->db);
  if (rc != SOCHDB_OK) {
    free(s);
    return db_fail(p->dir, rc);
  }
  snprintf(s->dir, sizeof s->dir, "%s", p->dir);
  snprintf(s->region, sizeof s->region, "%s", sochdb_region_path(s->db));
  *state = s;
  return 0;
}

static int s_teardown(const struct engine_params *p, void *state)
{
  struct sochdb_state *s = state;
  if (!s)
    return 0;
  sochdb_close(s->db);
  int rc = stop_daemon(s->dir, SIGTERM);
  if (s->region[0] && unlink(s->region) != 0 && errno != ENOENT)
    rc = fail_errno("remove", s->region);
  free(s);
  return rc;
}

static int s_quiesce(void *state, double *durable_s, double *settle_s)
{
  struct sochdb_state *s = state;
  sochdb_stats st;
  if (stats_now(s->db, &st) != 0 || sochdb_wait_durable(s->db, st.last_commit_seq, durable_s) != 0 ||
      sochdb_wait_settled(s->db, &st, settle_s) != 0)
    return -1;
  *settle_s += *durable_s;
  return 0;
}

static uint64_t status_kib(pid_t pid, const char *field)
{
  char path[64], line[256];
  uint64_t v = 0;
  snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, field, strlen(field)))
      v = strtoull(line + strlen(field), NULL, 10);
  fclose(f);
  return v;
}

/* The region's pages (a tmpfs file: its allocated blocks are memory) and
** the daemon's RSS and private memory outside the region. */
static void s_shared_memory(void *state, uint64_t *region_kib, uint64_t *rss_kib, uint64_t *private_kib)
{
  struct sochdb_state *s = state;
  struct stat st;
  *region_kib = stat(s->region, &st) == 0 ? (uint64_t)st.st_blocks / 2 : 0;
  *rss_kib = *private_kib = 0;
  pid_t pid = sdb_daemon_pid(s->dir);
  if (pid) {
    const char *exclude[] = { s->region, s->dir };
    struct mem_usage m;
    *rss_kib = status_kib(pid, "VmRSS:");
    if (mem_usage(pid, exclude, 2, &m) == 0)
      *private_kib = m.private_kib - m.excluded_kib;
  }
}

static uint64_t s_helper_cpu_ns(void *state)
{
  struct sochdb_state *s = state;
  pid_t pid = sdb_daemon_pid(s->dir);
  return pid ? proc_cpu_ns(pid) : 0;
}

static uint64_t s_stall_us(void *state)
{
  struct sochdb_state *s = state;
  sochdb_stats st;
  return stats_now(s->db, &st) == 0 ? st.write_stall_us : 0;
}

static int s_open(const struct engine_params *p, struct engine **out)
{
  struct engine *e = calloc(1, sizeof *e);
  if (!e)
    return fail("out of memory");
  sochdb_options o = options(p);
  int rc = sochdb_open(p->dir, &o, &e->db);
  if (rc != SOCHDB_OK) {
    free(e);
    return db_fail("a worker's open", rc);
  }
  *out = e;
  return 0;
}

static void s_close(struct engine *e)
{
  sochdb_close(e->db);
  free(e);
}

static const char *s_shared_file(struct engine *e) { return sochdb_region_path(e->db); }

static int s_begin(struct engine *e, unsigned flags, struct engine_txn **t)
{
  int rc = sochdb_txn_begin(e->db, flags & ENG_TXN_READONLY ? SOCHDB_TXN_READONLY : 0, &e->txn.t);
  if (rc != SOCHDB_OK)
    return db_fail("begin", rc);
  e->txn.flags = flags;
  *t = &e->txn;
  return ENG_OK;
}

static int s_put(struct engine_txn *t, const void *key, size_t klen, const void *val, size_t vlen)
{
  int rc = sochdb_put(t->t, key, klen, val, vlen);
  return rc == SOCHDB_OK ? ENG_OK : db_fail("put", rc);
}

static int s_get(struct engine_txn *t, const void *key, size_t klen, const void **val, size_t *vlen)
{
  int rc = sochdb_get(t->t, key, klen, val, vlen);
  if (rc == SOCHDB_OK)
    return ENG_OK;
  return rc == SOCHDB_NOTFOUND ? ENG_NOTFOUND : db_fail("get", rc);
}

static int s_scan(struct engine_txn *t, engine_scan_fn fn, void *ctx)
{
  sochdb_iter *it;
  int rc = sochdb_iter_open(t->t, NULL, 0, NULL, 0, &it);
  if (rc != SOCHDB_OK)
    return db_fail("iter_open", rc);
  const void *k, *v;
  size_t kl, vl;
  int stop = 0;
  while (!stop && (rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK)
    stop = fn(ctx, k, kl, v, vl);
  sochdb_iter_close(it);
  if (stop)
    return stop;
  return rc == SOCHDB_NOTFOUND ? ENG_OK : db_fail("iter_next", rc);
}

static int s_commit(struct engine_txn *t)
{
  int rc = sochdb_commit(t->t, t->flags & ENG_TXN_SYNC ? SOCHDB_SYNC : SOCHDB_ASYNC);
  t->t = NULL;
  if (rc == SOCHDB_OK)
    return ENG_OK;
  return rc == SOCHDB_CONFLICT ? ENG_RETRY : db_fail("commit", rc);
}

static void s_abort(struct engine_txn *t)
{
  sochdb_abort(t->t);
  t->t = NULL;
}

const struct engine_ops engine_sochdb = {
  .name = "sochdb",
  .caps = ENGINE_MULTIPROCESS,
  .settings = "one handle per process, all attached to one shared region and one sochdbd; SYNC = SOCHDB_SYNC "
              "(group commit, fdatasync), else SOCHDB_ASYNC (visible at once, durable within 5 ms while the log keeps up); 64 MiB "
              "memtables, 4 GiB sparse region, 64 MiB shared block cache (unless --memtable-mb, --region-mb, "
              "--cache-mb); the parent waits for flushing and compaction to settle after the preload",
  .setup = s_setup,
  .teardown = s_teardown,
  .quiesce = s_quiesce,
  .shared_memory = s_shared_memory,
  .helper_cpu_ns = s_helper_cpu_ns,
  .stall_us = s_stall_us,
  .open = s_open,
  .close = s_close,
  .shared_file = s_shared_file,
  .begin = s_begin,
  .put = s_put,
  .get = s_get,
  .scan = s_scan,
  .commit = s_commit,
  .abort = s_abort,
};
