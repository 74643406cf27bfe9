/*
** compare.c — `sochdb-bench compare [options] [WORKLOAD...]`: sochdb side by
** side with LMDB, SQLite (WAL mode) and RocksDB, each driven through
** engine.h, in one run, on the same keys, values and machine.
**
** Workloads (run in this order, each on every engine before the next):
**  - fill_seq: one process, one put per transaction, sequential keys, no
**    waiting for the disk (sochdb ASYNC, LMDB MDB_NOSYNC, SQLite
**    synchronous=OFF, RocksDB sync=0);
**  - fill_batch: the same with --batch (1000) puts per transaction;
**  - read_rand: --keys keys are preloaded (batched); then random point reads,
**    one read-only transaction each, from 1, 2, 4, ... --procs processes;
**  - read_seq: full scans of the preloaded keys, one read-only transaction
**    each, in one process;
**  - mixed: YCSB B (95% reads, 5% updates) then YCSB A (50/50) from --procs
**    processes over the preloaded keys (zipfian, scrambled, as YCSB), one
**    transaction per operation, updates not waiting for the disk;
**  - sync_commit: one-put durable transactions (fsync'd before the commit
**    returns) from 1, 8 and 32 processes (--sync-procs).
** An engine that cannot open a database from several processes (RocksDB)
** runs P threads of one process instead, and the output marks it. Every
** engine's preloaded database is made before the read and mixed rows, which
** then run on each engine in turn. With --rounds N every timed phase runs N
** times, the engines taking turns, and each engine's median round is the
** one reported (the others' rates and ratios are listed beside it).
**
** Every value carries its version and is derived from its key and version;
** every read checks the whole value, every fill is read back afterwards, and
** the preloaded keys are scanned and checked before the timed scans and after
** the mixed workloads. A wrong or missing value fails that engine's workload
** and the run (exit 1).
**
** Output: a table of operations per second, workload by engine, with sochdb
** divided by the best other engine; latencies of the mixed workloads; memory
** (a client's private memory, sochdb's region, its daemon); the same as JSON
** (--json) and a PNG chart drawn by gnuplot from a script written next to it.
*/
#include "common.h"
#include "compare.h"
#include "engine.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CMP_MAX_ENGINES 4u
#define CMP_MAX_ROWS    48u
#define ZIPF_THETA      0.99     /* YCSB's zipfian constant */
#define VERSION_BYTES   8u       /* each value starts with its version, little-endian */
#define DEFAULT_JSON    "sochdb-bench-compare.json"
#define DEFAULT_PRIME_MB 1536u
#define MAX_ROUNDS      9u

/* The workloads, in the order they run; the internal phases after them. */
enum { WL_FILL_SEQ, WL_FILL_BATCH, WL_READ_RAND, WL_READ_SEQ, WL_MIXED, WL_SYNC, WL_COUNT,
       OP_LOAD = WL_COUNT, OP_VERIFY };

static const char *const wl_name[WL_COUNT] = { "fill_seq", "fill_batch", "read_rand", "read_seq", "mixed",
                                               "sync_commit" };
static const char *const wl_unit[WL_COUNT] = { "puts/s", "puts/s", "reads/s", "keys/s", "ops/s", "commits/s" };

/* Every engine this program knows, built in or not. */
static const struct known_engine {
  const char              *name;
  const char              *package;   /* what was missing at build time */
  const struct engine_ops *ops;       /* NULL: not built */
} known[] = {
  { "sochdb", "", &engine_sochdb },
#ifdef SOCHDB_BENCH_HAVE_LMDB
  { "lmdb", "liblmdb-dev", &engine_lmdb },
#else
  { "lmdb", "liblmdb-dev", NULL },
#endif
#ifdef SOCHDB_BENCH_HAVE_SQLITE
  { "sqlite", "libsqlite3-dev", &engine_sqlite },
#else
  { "sqlite", "libsqlite3-dev", NULL },
#endif
#ifdef SOCHDB_BENCH_HAVE_ROCKSDB
  { "rocksdb", "librocksdb-dev", &engine_rocksdb },
#else
  { "rocksdb", "librocksdb-dev", NULL },
#endif
};
#define N_KNOWN (sizeof known / sizeof known[0])

/* ---- configuration ------------------------------------------------------------ */

struct cconfig {
  const char *base;                 /* the benchmark's directory is made in here */
  const char *json;                 /* JSON file */
  const char *chart;                /* PNG file; NULL: beside the JSON */
  int         no_chart;
  double      seconds;              /* each timed phase */
  unsigned    keys;                 /* preloaded keys of read_rand, read_seq, mixed */
  unsigned    batch;                /* puts per transaction of fill_batch and the preload */
  unsigned    key_bytes, value_bytes, value_random_pct;
  unsigned    procs;                /* mixed's processes, read_rand's largest row */
  struct proc_list read_procs;      /* read_rand rows */
  struct proc_list sync_procs;      /* sync_commit rows */
  unsigned    region_mb, cache_mb, memtable_mb, lmdb_map_mb;
  unsigned    prime_mb;             /* page cache primed before each engine's fills and preload (0: never) */
  unsigned    rounds;               /* each phase this many times, the engines taking turns; the median counts */
  int         uniform;              /* mixed: uniform keys instead of zipfian */
  unsigned    workloads;            /* 1u << WL_* */
  unsigned    neng;
  const struct engine_ops *eng[CMP_MAX_ENGINES];
  unsigned    cpus;
};

static void cusage(FILE *out)
{
  fprintf(out,
    "usage: sochdb-bench compare [options] [WORKLOAD...]\n"
    "  sochdb side by side with LMDB, SQLite (WAL) and RocksDB (those built in); bench/README.md\n"
    "  workloads: fill_seq fill_batch read_rand read_seq mixed sync_commit (default: all)\n"
    "  --engines LIST     engines to run, of sochdb,lmdb,sqlite,rocksdb (default: every one built in)\n"
    "  --dir D            make the benchmark's directory in D (default " DEFAULT_BASE ")\n"
    "  --json FILE        the figures as JSON (default " DEFAULT_JSON ")\n"
    "  --chart FILE       the PNG chart (default: the JSON's name with .png; its gnuplot script with .gnuplot)\n"
    "  --no-chart         no chart\n"
    "  --seconds S        run time of each timed phase (default 2)\n"
    "  --keys N           keys preloaded for read_rand, read_seq and mixed (default 1000000)\n"
    "  --batch N          puts per transaction of fill_batch and of the preload (default 1000)\n"
    "  --procs P          processes of mixed, largest of read_rand (default: the CPUs, %u at most)\n"
    "  --read-procs LIST  process counts of read_rand (default 1,2,4,...,P)\n"
    "  --sync-procs LIST  process counts of sync_commit (default 1,8,32)\n"
    "  --distribution D   keys of mixed: zipfian (YCSB's, theta 0.99, scrambled) or uniform (default zipfian)\n"
    "  --key-bytes N      key size, 8..4096 (default 16)\n"
    "  --value-bytes N    value size, 8..1048576 (default 100)\n"
    "  --value-random-pct N  percent of each value that is random bytes (default 100)\n"
    "  --region-mb N      sochdb: shared region, sparse (default 4096)\n"
    "  --memtable-mb N    sochdb: memtable size (default 0: the library's, 64)\n"
    "  --cache-mb N       sochdb's shared block cache and RocksDB's block cache (default 64)\n"
    "  --lmdb-map-mb N    LMDB: map size, address space only (default 65536)\n"
    "  --prime-mb N       write and remove N MiB of page cache (at most an eighth of MemAvailable) before\n"
    "                     each engine's fill and preload phases, so that each starts on memory just freed\n"
    "                     (default %u; 0: never)\n"
    "  --rounds N         run each timed phase N times (1..%u), the engines taking turns, and report each\n"
    "                     engine's median round (of an even number, the slower middle one; default 1)\n",
    MAX_PROCS, DEFAULT_PRIME_MB, MAX_ROUNDS);
}

static int parse_workloads_word(const char *w, struct cconfig *c)
{
  if (!strcmp(w, "all")) {
    c->workloads = (1u << WL_COUNT) - 1;
    return 0;
  }
  for (unsigned i = 0; i < WL_COUNT; i++)
    if (!strcmp(w, wl_name[i])) {
      c->workloads |= 1u << i;
      return 0;
    }
  return fail("unknown compare workload '%s' (fill_seq, fill_batch, read_rand, read_seq, mixed, sync_commit, "
              "all)", w);
}

static int parse_engines(const char *s, struct cconfig *c)
{
  char copy[256];
  snprintf(copy, sizeof copy, "%s", s);
  c->neng = 0;
  for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    const struct known_engine *k = NULL;
    for (unsigned i = 0; i < N_KNOWN; i++)
      if (!strcmp(tok, known[i].name))
        k = &known[i];
    if (!k)
      return fail("unknown engine '%s' (sochdb, lmdb, sqlite, rocksdb)", tok);
    if (!k->ops)
      return fail("%s is not built into this sochdb-bench (%s was missing when it was built)", tok, k->package);
    for (unsigned i = 0; i < c->neng; i++)
      if (c->eng[i] == k->ops)
        return fail("--engines names %s twice", tok);
    c->eng[c->neng++] = k->ops;
  }
  return c->neng ? 0 : fail("--engines needs at least one engine");
}

static int cparse_option(const char *opt, const char *val, struct cconfig *c)
{
  const struct { const char *name; unsigned min, max; unsigned *out; } numbers[] = {
    { "--keys", 1, 1u << 30, &c->keys },                   { "--batch", 1, 65535, &c->batch },
    { "--key-bytes", 8, SOCHDB_MAX_KEY, &c->key_bytes },   { "--value-bytes", VERSION_BYTES, 1u << 20, &c->value_bytes },
    { "--value-random-pct", 0, 100, &c->value_random_pct }, { "--procs", 1, MAX_PROCS, &c->procs },
    { "--region-mb", 16, 1u << 20, &c->region_mb },        { "--memtable-mb", 0, 4096, &c->memtable_mb },
    { "--cache-mb", 1, 1u << 20, &c->cache_mb },           { "--lmdb-map-mb", 1, 1u << 30, &c->lmdb_map_mb },
    { "--prime-mb", 0, 65536, &c->prime_mb },              { "--rounds", 1, MAX_ROUNDS, &c->rounds },
  };
  for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
    if (!strcmp(opt, numbers[i].name))
      return parse_uint(opt, val, numbers[i].min, numbers[i].max, numbers[i].out);
  if (!strcmp(opt, "--dir"))
    c->base = val;
  else if (!strcmp(opt, "--json"))
    c->json = val;
  else if (!strcmp(opt, "--chart"))
    c->chart = val;
  else if (!strcmp(opt, "--seconds"))
    return parse_seconds(opt, val, &c->seconds);
  else if (!strcmp(opt, "--read-procs"))
    return parse_procs(opt, val, &c->read_procs);
  else if (!strcmp(opt, "--sync-procs"))
    return parse_procs(opt, val, &c->sync_procs);
  else if (!strcmp(opt, "--engines"))
    return parse_engines(val, c);
  else if (!strcmp(opt, "--distribution")) {
    if (strcmp(val, "zipfian") && strcmp(val, "uniform"))
      return fail("--distribution takes zipfian or uniform, not '%s'", val);
    c->uniform = !strcmp(val, "uniform");
  } else
    return 1;
  return 0;
}

/* 0 to run, or the exit status + 1. */
static int cparse_args(int argc, char **argv, struct cconfig *c)
{
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  *c = (struct cconfig){ .base = DEFAULT_BASE, .json = DEFAULT_JSON, .seconds = 2, .keys = 1000000,
                         .batch = 1000, .key_bytes = 16, .value_bytes = 100, .value_random_pct = 100,
                         .sync_procs = { { 1, 8, 32 }, 3 }, .region_mb = 4096, .cache_mb = 64,
                         .lmdb_map_mb = 65536, .prime_mb = DEFAULT_PRIME_MB, .rounds = 1 };
  c->cpus = cpus > 0 ? (unsigned)cpus : 1;
  c->procs = c->cpus < MAX_PROCS ? c->cpus : MAX_PROCS;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      cusage(stdout);
      return 1;
    }
    if (!strcmp(a, "--no-chart")) {
      c->no_chart = 1;
      continue;
    }
    if (a[0] != '-') {
      if (parse_workloads_word(a, c) != 0)
        return 3;
      continue;
    }
    int rc = i + 1 < argc ? cparse_option(a, argv[i + 1], c) : 1;
    if (rc > 0) {
      fail("unknown option or missing value: %s", a);
      cusage(stderr);
    }
    if (rc != 0)
      return 3;
    i++;
  }
  if (!c->workloads)
    c->workloads = (1u << WL_COUNT) - 1;
  if (!c->neng)
    for (unsigned i = 0; i < N_KNOWN; i++)
      if (known[i].ops)
        c->eng[c->neng++] = known[i].ops;
  if (!c->read_procs.rows) {   /* 1, 2, 4, ... below P, then P */
    for (unsigned p = 1; p < c->procs && c->read_procs.rows < MAX_ROWS - 1; p *= 2)
      c->read_procs.n[c->read_procs.rows++] = p;
    c->read_procs.n[c->read_procs.rows++] = c->procs;
  }
  return 0;
}

/* ---- keys and values ----------------------------------------------------------- */

/* Key id with the value of its version-th write. Its first VERSION_BYTES are
** the version XORed with a mask drawn from the key, so that a reader can tell
** which write it sees; the rest is random words drawn from the key and the
** version (one mix64 each), then, past --value-random-pct, 'v's. With the
** default 100% the values are incompressible and no two share bytes, as in
** the other workloads. The words are computed, not copied from a pool of
** random bytes: a copy from a random place in a 1 MiB pool (until 3d25ba6)
** missed the CPU's caches beside the engines' own traffic, and cost
** 14% of a sochdb reader's samples in read_rand, the same for every engine
** (bench/README.md, "Verification"). */
static void random_words(unsigned char *dst, size_t n, uint64_t seed)
{
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = mix64(seed + i);
    memcpy(dst + i, &w, 8);
  }
  if (i < n) {
    uint64_t w = mix64(seed + i);
    memcpy(dst + i, &w, n - i);
  }
}

static uint64_t version_mask(uint64_t id) { return mix64(id ^ 0x5bd1e9955bd1e995ull); }

static void set_value(struct kv *kv, uint64_t id, uint64_t version)
{
  memset(kv->key + 8, 'k', kv->klen - 8);
  for (unsigned b = 0; b < 8; b++)
    kv->key[b] = (unsigned char)(id >> (56 - 8 * b));
  uint64_t coded = version ^ version_mask(id);
  for (unsigned b = 0; b < VERSION_BYTES; b++)
    kv->val[b] = (unsigned char)(coded >> (8 * b));
  size_t random = kv->vrandom > VERSION_BYTES ? kv->vrandom - VERSION_BYTES : 0;
  random_words(kv->val + VERSION_BYTES, random, mix64(id * 0x9e3779b97f4a7c15ull + version));
  memset(kv->val + VERSION_BYTES + random, 'v', kv->vlen - VERSION_BYTES - random);
}

/* Just the key of id (the value is left as it is). */
static void set_key(struct kv *kv, uint64_t id)
{
  memset(kv->key + 8, 'k', kv->klen - 8);
  for (unsigned b = 0; b < 8; b++)
    kv->key[b] = (unsigned char)(id >> (56 - 8 * b));
}

/* The version a value of key id says it holds. */
static uint64_t value_version(uint64_t id, const void *val)
{
  const unsigned char *v = val;
  uint64_t coded = 0;
  for (unsigned b = 0; b < VERSION_BYTES; b++)
    coded |= (uint64_t)v[b] << (8 * b);
  return coded ^ version_mask(id);
}

static uint64_t key_of(const void *key)
{
  const unsigned char *k = key;
  uint64_t id = 0;
  for (unsigned b = 0; b < 8; b++)
    id = id << 8 | k[b];
  return id;
}

static unsigned long long ull(uint64_t v) { return (unsigned long long)v; }

/* val (vlen bytes) as read for key id must be a write of it: version want,
** or any version when want is 0. exp holds the expected value already when
** prepared (want known), else it is made here. */
static int check_value(const char *engine, struct kv *exp, uint64_t id, const void *val, size_t vlen,
                       uint64_t want, int prepared)
{
  if (vlen != exp->vlen)
    return fail("%s: key %#llx reads back %zu bytes, %zu were written", engine, ull(id), vlen, exp->vlen);
  uint64_t version = value_version(id, val);
  if (want ? version != want : version == 0)
    return fail("%s: key %#llx reads back version %llu, expected %llu", engine, ull(id), ull(version), ull(want));
  if (!prepared)
    set_value(exp, id, version);
  if (memcmp(val, exp->val, vlen) != 0)
    return fail("%s: key %#llx reads back a wrong value (version %llu)", engine, ull(id), ull(version));
  return 0;
}

/* YCSB's zipfian generator (Gray et al.), theta 0.99: rank 0 the most
** popular. */
struct zipf {
  uint64_t n;
  double   theta, alpha, zetan, eta, two_at;   /* two_at: 1 + 0.5^theta */
};

static void zipf_init(struct zipf *z, uint64_t n, double theta)
{
  double zetan = 0;
  for (uint64_t i = 1; i <= n; i++)
    zetan += 1 / pow((double)i, theta);
  double zeta2 = 1 + 1 / pow(2, theta);
  *z = (struct zipf){ n, theta, 1 / (1 - theta), zetan,
                      (1 - pow(2.0 / (double)n, 1 - theta)) / (1 - zeta2 / zetan), 1 + pow(0.5, theta) };
}

static uint64_t zipf_next(const struct zipf *z, double u)
{
  double uz = u * z->zetan;
  if (uz < 1)
    return 0;
  if (uz < z->two_at)
    return 1 % z->n;
  uint64_t r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1, z->alpha));
  return r < z->n ? r : z->n - 1;
}

/* ---- phases: what the workers do ------------------------------------------------ */

struct cphase {
  unsigned           op;          /* WL_* or OP_* */
  unsigned           procs;       /* workers: processes, or threads of one process */
  double             seconds;     /* 0: no time limit */
  uint64_t           limit;       /* OP_LOAD: puts */
  unsigned           batch;       /* puts per write transaction */
  unsigned           txn_flags;   /* of the write transactions: ENG_TXN_SYNC or 0 */
  uint64_t           keys;        /* the preloaded key space */
  unsigned           read_pct;    /* mixed */
  const struct zipf *zipf;        /* mixed: NULL for uniform */
};

struct cout {                     /* one worker's figures */
  uint64_t    ops, txns, retries;
  uint64_t    mem_private_kib;    /* the client's private memory outside the database's files */
  uint64_t    mem_private_all_kib;/* ... including them (smaps_rollup's Private_*) */
  uint64_t    mem_rss_kib;
  uint64_t    cpu_ns;             /* CPU time of the process during the loop (threads: thread 0 takes the
                                     whole process's) */
  struct hist lat;                /* one transaction each; mixed: reads */
  struct hist lat_upd;            /* mixed: updates */
};

struct cshared {                  /* MAP_SHARED between the parent and the workers */
  atomic_uint ready, done;
  atomic_int  go;
  atomic_int  verify_go;          /* the workers read back what they wrote after the parent's settle wait */
  uint64_t    deadline_ns;
  struct cout out[];
};

struct wctx {
  const struct cconfig       *c;
  const struct engine_ops    *ops;
  const struct engine_params *p;
  const struct cphase        *ph;
  struct cshared             *sh;
  struct engine              *e;
  unsigned                    idx;
  int                         threads;
};

/* One write transaction: n puts of keys [first, first + n) of process proc,
** each at version; retried while the engine says so (counted). */
static int write_txn(const struct wctx *w, struct kv *kv, unsigned proc, uint64_t first, uint64_t n,
                     uint64_t version, uint64_t *retries)
{
  const struct engine_ops *ops = w->ops;
  for (;;) {
    struct engine_txn *t;
    int rc = ops->begin(w->e, w->ph->txn_flags, &t);
    if (rc == ENG_OK) {
      for (uint64_t j = 0; j < n && rc == ENG_OK; j++) {
        set_value(kv, key_id(proc, first + j), version);
        rc = ops->put(t, kv->key, kv->klen, kv->val, kv->vlen);
      }
      if (rc == ENG_OK)
        rc = ops->commit(t);
      else
        ops->abort(t);
    }
    if (rc == ENG_OK)
      return 0;
    if (rc != ENG_RETRY)
      return fail("%s: a write transaction failed", ops->name);
    ++*retries;
  }
}

/* One read-only transaction reading key id (exp's key), checked against
** version want (0: any; prepared: exp holds the value already). */
static int read_txn(const struct wctx *w, struct kv *exp, uint64_t id, uint64_t want, int prepared,
                    uint64_t *retries)
{
  const struct engine_ops *ops = w->ops;
  for (;;) {
    struct engine_txn *t;
    const void *val;
    size_t vlen;
    int rc = ops->begin(w->e, ENG_TXN_READONLY | ENG_TXN_ONE_READ, &t), bad = 0;
    if (rc == ENG_OK) {
      rc = ops->get(t, exp->key, exp->klen, &val, &vlen);
      if (rc == ENG_OK)
        bad = check_value(ops->name, exp, id, val, vlen, want, prepared);
      ops->abort(t);
    }
    if (rc == ENG_OK)
      return bad;
    if (rc == ENG_NOTFOUND)
      return fail("%s: key %#llx, written, is not found", ops->name, ull(id));
    if (rc != ENG_RETRY)
      return fail("%s: a read transaction failed", ops->name);
    ++*retries;
  }
}

/* Keys [0, n) of process proc, written at version 1, in one snapshot. */
static int verify_written(const struct wctx *w, struct kv *exp, unsigned proc, uint64_t n)
{
  const struct engine_ops *ops = w->ops;
  struct engine_txn *t;
  int rc = ENG_RETRY;
  for (unsigned tries = 0; rc == ENG_RETRY && tries < 100; tries++)
    rc = ops->begin(w->e, ENG_TXN_READONLY, &t);
  if (rc != ENG_OK)
    return fail("%s: cannot begin the verification", ops->name);
  int bad = 0;
  for (uint64_t i = 0; i < n && !bad; i++) {
    const void *val;
    size_t vlen;
    uint64_t id = key_id(proc, i);
    set_value(exp, id, 1);
    rc = ops->get(t, exp->key, exp->klen, &val, &vlen);
    if (rc == ENG_OK)
      bad = check_value(ops->name, exp, id, val, vlen, 1, 1);
    else
      bad = fail("%s: key %#llx, committed, reads back %s", ops->name, ull(id),
                 rc == ENG_NOTFOUND ? "as missing" : "with an error");
  }
  ops->abort(t);
  return bad;
}

/* A scan of the preloaded keys: they must come in order, each once. full:
** every key and value checked (any version); else the key's id, the
** value's length and version (want) only, which costs a few nanoseconds. */
struct scan_ctx {
  const char *engine;
  struct kv  *exp;
  uint64_t    next, keys, want;
  int         full, bad;
};

static int scan_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
  struct scan_ctx *s = ctx;
  uint64_t id = key_id(0, s->next);
  if (s->next >= s->keys || klen != s->exp->klen || key_of(key) != id) {
    s->bad = fail("%s: the scan's key #%llu is %#llx (%zu bytes), expected %#llx", s->engine, ull(s->next),
                  ull(klen >= 8 ? key_of(key) : 0), klen, ull(id));
    return 1;
  }
  if (s->full) {
    s->bad = check_value(s->engine, s->exp, id, val, vlen, s->want, 0);
    if (!s->bad && memcmp(key, s->exp->key, klen) != 0)
      s->bad = fail("%s: key %#llx: wrong padding", s->engine, ull(id));
  } else if (vlen != s->exp->vlen || value_version(id, val) != s->want)
    s->bad = fail("%s: key %#llx: the scan reads %zu bytes at version %llu", s->engine, ull(id), vlen,
                  ull(vlen >= VERSION_BYTES ? value_version(id, val) : 0));
  s->next++;
  return s->bad ? 1 : 0;
}

/* One full scan in one read-only transaction. */
static int scan_txn(const struct wctx *w, struct kv *exp, int full, uint64_t want, uint64_t *retries)
{
  const struct engine_ops *ops = w->ops;
  for (;;) {
    struct scan_ctx s = { ops->name, exp, 0, w->ph->keys, want, full, 0 };
    struct engine_txn *t;
    int rc = ops->begin(w->e, ENG_TXN_READONLY | ENG_TXN_ONE_READ, &t);
    if (rc == ENG_OK) {
      rc = ops->scan(t, scan_cb, &s);
      ops->abort(t);
    }
    if (s.bad)
      return -1;
    if (rc == ENG_RETRY) {
      ++*retries;
      continue;
    }
    if (rc != ENG_OK)
      return fail("%s: a scan failed", ops->name);
    if (s.next != s.keys)
      return fail("%s: a scan saw %llu keys of the %llu loaded", ops->name, ull(s.next), ull(s.keys));
    return 0;
  }
}

/* This process's memory, outside the database's files and region. */
static void measure_memory(const struct wctx *w, struct cout *o)
{
  const char *exclude[2] = { w->p->dir, w->ops->shared_file ? w->ops->shared_file(w->e) : NULL };
  struct mem_usage m;
  if (mem_usage(0, exclude, 2, &m) == 0) {
    o->mem_private_kib = m.private_kib - m.excluded_kib;
    o->mem_private_all_kib = m.private_kib;
    o->mem_rss_kib = m.rss_kib;
  }
}

static double unit_random(uint64_t r) { return (double)(r >> 11) * 0x1.0p-53; }

/* The timed loop of one worker. The clock is read once an operation, after
** it: an operation's latency runs from the end of the one before, and so
** also holds the few nanoseconds of picking its key. A second read before
** each operation cost as much as a tenth of a point read here
** (docs/performance-history.md). */
static int worker_loop(const struct wctx *w, struct kv *kv, struct kv *exp, struct cout *o)
{
  const struct cphase *ph = w->ph;
  uint64_t deadline = w->sh->deadline_ns, t = now_ns(), seed = mix64(w->idx + 1) ^ t;
  switch (ph->op) {
  case WL_FILL_SEQ:
  case WL_FILL_BATCH:
  case WL_SYNC:
  case OP_LOAD:
    for (uint64_t i = 0; (ph->op != OP_LOAD || i < ph->limit) && t < deadline; ) {
      uint64_t n = ph->op == OP_LOAD && ph->limit - i < ph->batch ? ph->limit - i : ph->batch;
      if (write_txn(w, kv, ph->op == OP_LOAD ? 0 : w->idx, i, n, 1, &o->retries) != 0)
        return -1;
      t = lap(&o->lat, t);
      o->txns++;
      o->ops += n;
      i += n;
    }
    return 0;
  case WL_READ_RAND:
    for (uint64_t i = 0; t < deadline; i++) {
      uint64_t k = mix64(seed + i) % ph->keys;
      set_value(exp, key_id(0, k), 1);
      if (read_txn(w, exp, key_id(0, k), 1, 1, &o->retries) != 0)
        return -1;
      t = lap(&o->lat, t);
      o->txns++;
      o->ops++;
    }
    return 0;
  case WL_READ_SEQ:
    while (t < deadline) {
      if (scan_txn(w, exp, 0, 1, &o->retries) != 0)
        return -1;
      t = lap(&o->lat, t);
      o->txns++;
      o->ops += ph->keys;
    }
    return 0;
  case OP_VERIFY:
    return scan_txn(w, exp, 1, 0, &o->retries);
  case WL_MIXED:
    for (uint64_t i = 0, updates = 0; t < deadline; i++) {
      uint64_t r = mix64(seed + 2 * i), rk = mix64(seed + 2 * i + 1);
      uint64_t k = ph->zipf ? mix64(zipf_next(ph->zipf, unit_random(rk))) % ph->keys : rk % ph->keys;
      if (r % 100 < ph->read_pct) {
        set_key(exp, key_id(0, k));
        if (read_txn(w, exp, key_id(0, k), 0, 0, &o->retries) != 0)
          return -1;
        t = lap(&o->lat, t);
      } else {
        /* a version no other write uses: the worker in the high bits */
        uint64_t version = (uint64_t)(w->idx + 1) << 40 | ++updates;
        if (write_txn(w, kv, 0, k, 1, version, &o->retries) != 0)
          return -1;
        t = lap(&o->lat_upd, t);
      }
      o->txns++;
      o->ops++;
    }
    return 0;
  }
  return fail("unknown phase %u", ph->op);
}

/* One worker, process or thread: ready, wait for go, the loop, memory, done,
** then read back what it wrote. */
static int worker_run(const struct wctx *w)
{
  struct kv kv, exp;
  struct cout *o = &w->sh->out[w->idx];
  if (kv_alloc(&kv, w->c->key_bytes, w->c->value_bytes, w->c->value_random_pct) != 0)
    return -1;
  if (kv_alloc(&exp, w->c->key_bytes, w->c->value_bytes, w->c->value_random_pct) != 0) {
    kv_free(&kv);
    return -1;
  }
  uint64_t retries = 0;
  /* read_seq's scans check little: one full check first, outside the time. */
  int rc = w->ph->op == WL_READ_SEQ ? scan_txn(w, &exp, 1, 1, &retries) : 0;
  atomic_fetch_add(&w->sh->ready, 1);
  while (rc == 0 && !atomic_load_explicit(&w->sh->go, memory_order_acquire))
    sleep_us(50);
  int whole = !w->threads || w->idx == 0;   /* this worker speaks for its process */
  uint64_t cpu0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
  if (rc == 0)
    rc = worker_loop(w, &kv, &exp, o);
  if (whole)
    o->cpu_ns = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
  if (rc == 0 && whole)
    measure_memory(w, o);
  atomic_fetch_add(&w->sh->done, 1);
  unsigned op = w->ph->op;
  while (rc == 0 && !atomic_load_explicit(&w->sh->verify_go, memory_order_acquire))
    sleep_us(1000);
  if (rc == 0 && (op == WL_FILL_SEQ || op == WL_FILL_BATCH || op == WL_SYNC))
    rc = verify_written(w, &exp, w->idx, o->ops);
  kv_free(&kv);
  kv_free(&exp);
  return rc;
}

/* A worker process of a multi-process engine: its own handle. */
static int proc_child(unsigned idx, void *ctx)
{
  struct wctx w = *(const struct wctx *)ctx;
  w.idx = idx;
  if (w.ops->open(w.p, &w.e) != 0)
    return 1;
  int rc = worker_run(&w);
  w.ops->close(w.e);
  return rc ? 1 : 0;
}

static void *thread_main(void *arg)
{
  if (worker_run(arg) != 0) {   /* the parent sees the process fail */
    fflush(NULL);
    _exit(1);
  }
  return NULL;
}

/* The one process of an engine without ENGINE_MULTIPROCESS: one handle,
** ph->procs threads. */
static int thread_child(unsigned idx, void *ctx)
{
  const struct wctx *proto = ctx;
  unsigned n = proto->ph->procs;
  struct wctx *w = calloc(n, sizeof *w);
  pthread_t *tid = calloc(n, sizeof *tid);
  struct engine *e;
  (void)idx;
  if (!w || !tid || proto->ops->open(proto->p, &e) != 0)
    return 1;
  for (unsigned i = 0; i < n; i++) {
    w[i] = *proto;
    w[i].idx = i;
    w[i].e = e;
    if (pthread_create(&tid[i], NULL, thread_main, &w[i]) != 0) {
      fail("pthread_create: %s", strerror(errno));
      _exit(1);
    }
  }
  for (unsigned i = 0; i < n; i++)
    pthread_join(tid[i], NULL);
  proto->ops->close(e);
  free(w);
  free(tid);
  return 0;
}

/* ---- results ----------------------------------------------------------------------- */

struct cell {                     /* one workload row on one engine */
  int         ran, failed;
  int         threads;            /* ran as threads of one process */
  double      seconds;
  uint64_t    ops, txns, retries;
  struct hist lat, lat_upd;
  uint64_t    mem_private_kib, mem_private_all_kib, mem_rss_kib;   /* the largest of its clients */
  uint64_t    cpu_ns, helper_cpu_ns;  /* CPU time of the clients (all together) and of the helper */
  uint64_t    region_kib, helper_rss_kib, helper_private_kib;
  int         settled;            /* a fill whose engine's background work was waited for (quiesce) */
  double      durable_after_s, settled_after_s;   /* from the end of the phase */
  uint64_t    settle_helper_cpu_ns;               /* the helper's CPU time during that wait */
  uint64_t    stall_us;           /* the clients' waits for the helper during the phase (engine_ops.stall_us) */
  unsigned    rounds;             /* the rounds run (--rounds), this cell being the median one */
  double      round_rate[MAX_ROUNDS];             /* every round's cell_rate, in the order they ran */
};

struct row {
  unsigned    wl, procs, read_pct;
  char        label[40];
  struct cell cell[CMP_MAX_ENGINES];
};

static int cell_ok(const struct cell *x) { return x->ran && !x->failed; }

/* A settled fill (sochdb) counts until its newest commit was durable: its
** ASYNC commits leave the log write to sochdbd, where LMDB (pwrite or the
** map), SQLite (the WAL) and RocksDB (write() of the WAL) write inside the
** commit, so the time the log took to catch up after the clock belongs to
** the fill. */
static double cell_rate(const struct cell *x)
{
  return per_s(x->ops, x->seconds + (x->settled ? x->durable_after_s : 0));
}

/* The median of an engine's rounds of one row (runs[0..n), in the order
** they ran; of an even number, the slower middle one) into *out, with every
** round's rate: its CPU and latency figures are that round's, its memory
** figures the last round's (what the row left at its end). A failed round
** makes the cell the failed one. */
static void keep_median(struct cell *out, const struct cell *runs, unsigned n)
{
  unsigned order[MAX_ROUNDS], failed = n;
  for (unsigned i = 0; i < n; i++) {
    order[i] = i;
    if (!cell_ok(&runs[i]))
      failed = i;
  }
  for (unsigned i = 1; i < n; i++)   /* insertion sort by rate: n <= MAX_ROUNDS */
    for (unsigned j = i; j > 0 && cell_rate(&runs[order[j]]) < cell_rate(&runs[order[j - 1]]); j--) {
      unsigned t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  *out = runs[failed < n ? failed : order[(n - 1) / 2]];
  const struct cell *last = &runs[n - 1];
  out->mem_private_kib = last->mem_private_kib;
  out->mem_private_all_kib = last->mem_private_all_kib;
  out->mem_rss_kib = last->mem_rss_kib;
  out->region_kib = last->region_kib;
  out->helper_rss_kib = last->helper_rss_kib;
  out->helper_private_kib = last->helper_private_kib;
  out->rounds = n;
  for (unsigned i = 0; i < n; i++)
    out->round_rate[i] = cell_ok(&runs[i]) ? cell_rate(&runs[i]) : 0;
}

/* The j-th engine to run in round k: each round starts one engine later, so
** that no engine always runs first, right after another's phase. */
static unsigned turn(const struct cconfig *c, unsigned round, unsigned j) { return (round + j) % c->neng; }

struct load_info {
  int      ran;
  uint64_t keys;
  double   seconds, settle_seconds;
  uint64_t retries;
};

struct cresults {
  char             root[PATH_MAX];
  struct fs_info   fs;
  double           page_touch_us;   /* page_touch_us(), before any phase */
  struct page_cache_probe page_cache;
  struct region_pages pages;
  unsigned         nrows;
  struct row       row[CMP_MAX_ROWS];
  struct load_info load[CMP_MAX_ENGINES];
  unsigned         prime_mb;         /* what each prime writes: --prime-mb, at most an eighth of MemAvailable */
  unsigned         primes, prime_failures;
  int              failed;
};

/* Run one phase of engine ops on the database of p; the figures go to cell
** (added to it when cell is NULL: a load or a check, not reported). */
static int run_cphase(const struct cconfig *c, const struct engine_ops *ops, void *state,
                      struct engine_params *p, const struct cphase *ph, struct cell *cell)
{
  int threads = !(ops->caps & ENGINE_MULTIPROCESS);
  p->procs = threads ? 1 : ph->procs;
  p->threads = threads ? ph->procs : 1;
  size_t bytes = sizeof(struct cshared) + ph->procs * sizeof(struct cout);
  struct cshared *sh = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED)
    return fail("mmap %zu bytes: %s", bytes, strerror(errno));
  struct wctx w = { c, ops, p, ph, sh, NULL, 0, threads };
  struct kids k;
  double seconds = 0, done_max_s = ph->seconds > 0 ? ph->seconds + DONE_SLACK_S : 3600;
  int rc = kids_spawn(&k, threads ? 1 : ph->procs, threads ? thread_child : proc_child, &w);
  if (rc == 0)
    rc = wait_count(&sh->ready, ph->procs, &k, READY_WAIT_S, "open the database");
  uint64_t helper0 = 0, helper1 = 0, stall0 = 0, stall1 = 0;
  if (rc == 0) {
    helper0 = ops->helper_cpu_ns ? ops->helper_cpu_ns(state) : 0;
    stall0 = ops->stall_us ? ops->stall_us(state) : 0;
    uint64_t t0 = now_ns();
    sh->deadline_ns = ph->seconds > 0 ? t0 + (uint64_t)(ph->seconds * NS_PER_S) : UINT64_MAX;
    atomic_store_explicit(&sh->go, 1, memory_order_release);
    /* asleep until the clock stops, then every millisecond: a 2-core machine has no core to spare
    ** for a parent waking more often */
    if (ph->seconds > 0)
      rc = wait_until(sh->deadline_ns, &k);
    if (rc == 0)
      rc = wait_count_every(&sh->done, ph->procs, &k, done_max_s, "finish", 1000);
    seconds = (double)(now_ns() - t0) / NS_PER_S;
    helper1 = ops->helper_cpu_ns ? ops->helper_cpu_ns(state) : 0;
    stall1 = ops->stall_us ? ops->stall_us(state) : 0;
  }
  if (rc == 0 && cell && ops->shared_memory)
    ops->shared_memory(state, &cell->region_kib, &cell->helper_rss_kib, &cell->helper_private_kib);
  /* What a fill left the engine to do once the clock stopped; the workers
  ** read back after it, so that their reads do not slow it down. */
  if (rc == 0 && cell && ops->quiesce && (ph->op == WL_FILL_SEQ || ph->op == WL_FILL_BATCH)) {
    fprintf(stderr, "compare: waiting for %s's background work to settle...\n", ops->name);
    rc = ops->quiesce(state, &cell->durable_after_s, &cell->settled_after_s);
    uint64_t helper2 = ops->helper_cpu_ns ? ops->helper_cpu_ns(state) : 0;
    cell->settle_helper_cpu_ns = helper2 > helper1 ? helper2 - helper1 : 0;
    cell->settled = rc == 0;
  }
  atomic_store_explicit(&sh->verify_go, 1, memory_order_release);
  if (kids_finish(&k, rc != 0) != 0 && rc == 0)
    rc = fail("%s: a worker failed (see above)", ops->name);
  if (cell) {
    cell->ran = 1;
    cell->failed = rc != 0;
    cell->threads = threads && ph->procs > 1;
    cell->seconds = seconds;
    cell->helper_cpu_ns = helper1 > helper0 ? helper1 - helper0 : 0;
    cell->stall_us = stall1 > stall0 ? stall1 - stall0 : 0;
    for (unsigned i = 0; i < ph->procs; i++) {
      const struct cout *o = &sh->out[i];
      cell->cpu_ns += o->cpu_ns;
      cell->ops += o->ops;
      cell->txns += o->txns;
      cell->retries += o->retries;
      hist_merge(&cell->lat, &o->lat);
      hist_merge(&cell->lat_upd, &o->lat_upd);
      if (o->mem_private_kib > cell->mem_private_kib)
        cell->mem_private_kib = o->mem_private_kib;
      if (o->mem_private_all_kib > cell->mem_private_all_kib)
        cell->mem_private_all_kib = o->mem_private_all_kib;
      if (o->mem_rss_kib > cell->mem_rss_kib)
        cell->mem_rss_kib = o->mem_rss_kib;
    }
  }
  munmap(sh, bytes);
  return rc;
}

/* A fresh database of ops in root/ENGINE-NAME, set up. */
static int db_create(const struct cconfig *c, struct cresults *res, const struct engine_ops *ops, const char *name,
                     char *dir, size_t dsize, struct engine_params *p, void **state)
{
  if ((size_t)snprintf(dir, dsize, "%s/%s-%s", res->root, ops->name, name) >= dsize)
    return fail("path too long: %s", res->root);
  if (mkdir(dir, 0700) != 0)
    return fail_errno("create", dir);
  *p = (struct engine_params){ .dir = dir, .cpus = c->cpus, .threads = 1, .procs = 1,
                               .cache_bytes = (size_t)c->cache_mb << 20,
                               .region_bytes = (size_t)c->region_mb << 20,
                               .memtable_bytes = (size_t)c->memtable_mb << 20,
                               .map_bytes = (size_t)c->lmdb_map_mb << 20 };
  *state = NULL;
  return ops->setup ? ops->setup(p, state) : 0;
}

static int db_destroy(const struct engine_ops *ops, struct engine_params *p, void *state, const char *dir)
{
  int rc = ops->teardown ? ops->teardown(p, state) : 0;
  rm_rf(dir);
  return rc;
}

static struct row *add_row(struct cresults *res, unsigned wl, unsigned procs, unsigned read_pct)
{
  if (res->nrows == CMP_MAX_ROWS)
    return NULL;
  struct row *r = &res->row[res->nrows++];
  memset(r, 0, sizeof *r);
  r->wl = wl;
  r->procs = procs;
  r->read_pct = read_pct;
  if (wl == WL_MIXED)
    snprintf(r->label, sizeof r->label, "mixed %u/%u x%u", read_pct, 100 - read_pct, procs);
  else if (wl == WL_FILL_BATCH)
    snprintf(r->label, sizeof r->label, "fill_batch");
  else if (wl == WL_FILL_SEQ || wl == WL_READ_SEQ)
    snprintf(r->label, sizeof r->label, "%s", wl_name[wl]);
  else
    snprintf(r->label, sizeof r->label, "%s x%u", wl_name[wl], procs);
  return r;
}

/* Just before a fill's or the preload's workers start (not while they wait
** for the clock: they poll every 50 us), so that what an engine pays for new
** pages in the phase depends on no other engine (prime_page_cache). Not
** before reads, mixed or sync_commit: nothing measured says they need it. */
static void prime_before(struct cresults *res, unsigned op)
{
  if (!res->prime_mb || !(op == WL_FILL_SEQ || op == WL_FILL_BATCH || op == OP_LOAD))
    return;
  uint64_t t0 = now_ns();
  res->primes++;
  if (prime_page_cache(res->root, res->prime_mb) != 0) {
    res->prime_failures++;
    fprintf(stderr, "compare: priming %u MiB of page cache in %s failed (%s); this phase runs unprimed\n",
            res->prime_mb, res->root, strerror(errno));
  } else {
    fprintf(stderr, "compare: primed %u MiB of page cache in %.2f s\n", res->prime_mb,
            (double)(now_ns() - t0) / NS_PER_S);
  }
}

/* An eighth of MemAvailable, so that the prime's dirty pages stay under the
** kernel's writeback thresholds (10% of available memory by default) and
** are removed before any is written; --prime-mb where /proc/meminfo says
** nothing. */
static unsigned prime_size_mb(unsigned asked)
{
  FILE *f = fopen("/proc/meminfo", "r");
  unsigned long long kib = 0;
  char line[256];
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
      break;
  if (f)
    fclose(f);
  unsigned long long cap = kib / 1024 / 8;
  return kib && cap < asked ? (unsigned)cap : asked;
}

/* "(round 2/3)" when there are rounds, else "". */
static const char *round_note(const struct cconfig *c, unsigned round, char *buf, size_t size)
{
  if (c->rounds < 2)
    return "";
  snprintf(buf, size, " (round %u/%u)", round + 1, c->rounds);
  return buf;
}

static struct cell *runs_of(const struct cconfig *c, struct cell *runs, unsigned i, unsigned e);

/* Round `round` of a row that runs on a fresh database of each engine
** (fill_seq, fill_batch, one sync_commit row), into its cells of runs. */
static void run_fresh_round(const struct cconfig *c, struct cresults *res, const struct row *r,
                            const struct cphase *ph, unsigned round, struct cell *runs)
{
  for (unsigned j = 0; j < c->neng && !interrupted; j++) {
    unsigned e = turn(c, round, j);
    const struct engine_ops *ops = c->eng[e];
    char dir[PATH_MAX], name[48], note[32];
    struct engine_params p;
    void *state;
    struct cell *cell = &runs_of(c, runs, 0, e)[round];
    snprintf(name, sizeof name, "%s-%u", wl_name[r->wl], r->procs);
    fprintf(stderr, "compare: %s on %s for %.1f s%s...\n", r->label, ops->name, ph->seconds,
            round_note(c, round, note, sizeof note));
    int rc = db_create(c, res, ops, name, dir, sizeof dir, &p, &state);
    if (rc == 0) {
      prime_before(res, ph->op);
      rc = run_cphase(c, ops, state, &p, ph, cell);
    }
    if (db_destroy(ops, &p, state, dir) != 0)
      rc = -1;
    if (rc != 0) {
      cell->ran = 1;
      cell->failed = 1;
      res->failed = 1;
    }
  }
}

/* The rounds' cells of row i, engine e: runs[((i * neng) + e) * rounds + k]. */
static struct cell *runs_of(const struct cconfig *c, struct cell *runs, unsigned i, unsigned e)
{
  return runs + ((size_t)i * c->neng + e) * c->rounds;
}

/* Each engine's median round into the rows' cells (nrounds were run). A
** row an engine ran in some rounds only (a phase that could not start, or
** a failure in another row that stopped its later ones) is failed. */
static void keep_medians(const struct cconfig *c, struct row **rows, unsigned nrows, struct cell *runs,
                         unsigned nrounds)
{
  for (unsigned i = 0; i < nrows; i++)
    for (unsigned e = 0; e < c->neng; e++) {
      const struct cell *mine = runs_of(c, runs, i, e);
      unsigned n = 0;
      while (n < nrounds && mine[n].ran)
        n++;
      if (n)
        keep_median(&rows[i]->cell[e], mine, n);
      if (n && n < nrounds)
        rows[i]->cell[e].failed = 1;
    }
}

/* A row on a fresh database of each engine, --rounds times. */
static void run_fresh_row(const struct cconfig *c, struct cresults *res, struct row *r, const struct cphase *ph)
{
  struct cell *runs = calloc((size_t)c->neng * c->rounds, sizeof *runs);
  if (!runs) {
    fail("out of memory for %u rounds", c->rounds);
    res->failed = 1;
    return;
  }
  for (unsigned k = 0; k < c->rounds && !interrupted; k++)
    run_fresh_round(c, res, r, ph, k, runs);
  keep_medians(c, &r, 1, runs, c->rounds);
  free(runs);
}

/* An engine's preloaded database for read_rand, read_seq and mixed. */
struct loaded_db {
  char                 dir[PATH_MAX];
  struct engine_params p;
  void                *state;
  int                  created, rc;   /* rc: 0 while its phases may go on */
};

/* Create engine e's database, preload it and wait for its background work. */
static void preload(const struct cconfig *c, struct cresults *res, unsigned e, struct loaded_db *db)
{
  const struct engine_ops *ops = c->eng[e];
  struct load_info *ld = &res->load[e];
  struct cell scratch;
  fprintf(stderr, "compare: loading %u keys into %s (%u per transaction)...\n", c->keys, ops->name, c->batch);
  db->rc = db_create(c, res, ops, "loaded", db->dir, sizeof db->dir, &db->p, &db->state);
  db->created = 1;
  if (db->rc == 0) {
    struct cphase load = { .op = OP_LOAD, .procs = 1, .limit = c->keys, .batch = c->batch, .keys = c->keys };
    memset(&scratch, 0, sizeof scratch);
    prime_before(res, load.op);
    db->rc = run_cphase(c, ops, db->state, &db->p, &load, &scratch);
    ld->ran = db->rc == 0;
    ld->keys = c->keys;
    ld->seconds = scratch.seconds;
    ld->retries = scratch.retries;
  }
  if (db->rc == 0 && ops->quiesce) {
    fprintf(stderr, "compare: waiting for %s's background work to settle...\n", ops->name);
    double durable_s;
    db->rc = ops->quiesce(db->state, &durable_s, &ld->settle_seconds);
  }
}

/* After the updates: every key holds a whole value of one of its writes.
** Then the database goes. A failure fails every row the engine ran. */
static void check_and_remove(const struct cconfig *c, struct cresults *res, unsigned e, struct loaded_db *db,
                             struct cell *runs, unsigned nrows)
{
  const struct engine_ops *ops = c->eng[e];
  if (db->rc == 0 && !interrupted) {
    struct cphase check = { .op = OP_VERIFY, .procs = 1, .keys = c->keys };
    fprintf(stderr, "compare: checking every key of %s...\n", ops->name);
    db->rc = run_cphase(c, ops, db->state, &db->p, &check, NULL);
    if (db->rc != 0)
      for (unsigned i = 0; i < nrows; i++)
        for (unsigned k = 0; k < c->rounds; k++)
          runs_of(c, runs, i, e)[k].failed = runs_of(c, runs, i, e)[k].ran;
  }
  if (db->created && db_destroy(ops, &db->p, db->state, db->dir) != 0)
    db->rc = -1;
  if (db->rc != 0)
    res->failed = 1;
}

/* What a mixed phase's updates left an engine to do (sochdb's flushes and
** compactions; every engine's dirty pages, which LMDB, SQLite and RocksDB
** leave to the kernel when they do not sync) is done before another
** engine's phase starts, outside every clock. */
static int settle_after_updates(const struct engine_ops *ops, void *state)
{
  double durable_s, settle_s;
  int rc = ops->quiesce ? ops->quiesce(state, &durable_s, &settle_s) : 0;
  sync();
  return rc;
}

/* Every round of rows [from, to) on each engine's preloaded database. */
static void run_loaded_rounds(const struct cconfig *c, struct loaded_db *db, struct row **rows, unsigned from,
                              unsigned to, struct cell *runs, const struct zipf *zipf)
{
  for (unsigned k = 0; k < c->rounds && !interrupted; k++)
    for (unsigned i = from; i < to && !interrupted; i++)
      for (unsigned j = 0; j < c->neng && !interrupted; j++) {
        unsigned e = turn(c, k, j);
        if (!db[e].created || db[e].rc != 0)
          continue;
        const struct row *r = rows[i];
        struct cphase ph = { .op = r->wl, .procs = r->procs, .seconds = c->seconds, .keys = c->keys,
                             .read_pct = r->read_pct, .zipf = zipf };
        char note[32];
        fprintf(stderr, "compare: %s on %s for %.1f s%s...\n", r->label, c->eng[e]->name, ph.seconds,
                round_note(c, k, note, sizeof note));
        db[e].rc = run_cphase(c, c->eng[e], db[e].state, &db[e].p, &ph, &runs_of(c, runs, i, e)[k]);
        if (db[e].rc == 0 && r->wl == WL_MIXED)
          db[e].rc = settle_after_updates(c->eng[e], db[e].state);
      }
}

/* read_rand, read_seq and mixed, on one preloaded database per engine: every
** engine's is loaded first, then each round runs every row on each engine
** in turn, so that an engine's phase and the others' of the same row run
** seconds apart, not one engine's rows all before another's. */
static void run_loaded(const struct cconfig *c, struct cresults *res, struct row **rows, unsigned nrows,
                       const struct zipf *zipf)
{
  struct loaded_db *db = calloc(c->neng, sizeof *db);
  struct cell *runs = calloc((size_t)nrows * c->neng * c->rounds, sizeof *runs);
  if (!db || !runs) {
    fail("out of memory for %u rounds of %u rows", c->rounds, nrows);
    res->failed = 1;
    free(db);
    free(runs);
    return;
  }
  for (unsigned e = 0; e < c->neng && !interrupted; e++)
    preload(c, res, e, &db[e]);
  /* read_rand and read_seq check that every key holds its preloaded value:
  ** all their rounds run before the mixed rows' updates (which come last) */
  unsigned first_mixed = 0;
  while (first_mixed < nrows && rows[first_mixed]->wl != WL_MIXED)
    first_mixed++;
  run_loaded_rounds(c, db, rows, 0, first_mixed, runs, zipf);
  run_loaded_rounds(c, db, rows, first_mixed, nrows, runs, zipf);
  for (unsigned e = 0; e < c->neng; e++)
    check_and_remove(c, res, e, &db[e], runs, nrows);
  keep_medians(c, rows, nrows, runs, c->rounds);
  free(db);
  free(runs);
}

static int run_all(const struct cconfig *c, struct cresults *res)
{
  struct row *loaded[CMP_MAX_ROWS];
  unsigned nloaded = 0;
  struct zipf zipf;
  const struct zipf *zp = NULL;
  for (unsigned wl = 0; wl < WL_COUNT && !interrupted; wl++) {
    int on = !!(c->workloads & (1u << wl));
    if (on && (wl == WL_FILL_SEQ || wl == WL_FILL_BATCH)) {
      struct cphase ph = { .op = wl, .procs = 1, .seconds = c->seconds, .batch = wl == WL_FILL_SEQ ? 1 : c->batch };
      run_fresh_row(c, res, add_row(res, wl, 1, 0), &ph);
    } else if (on && wl == WL_READ_RAND) {
      for (unsigned i = 0; i < c->read_procs.rows; i++)
        loaded[nloaded++] = add_row(res, wl, c->read_procs.n[i], 0);
    } else if (on && wl == WL_READ_SEQ)
      loaded[nloaded++] = add_row(res, wl, 1, 0);
    else if (on && wl == WL_MIXED) {
      loaded[nloaded++] = add_row(res, wl, c->procs, 95);
      loaded[nloaded++] = add_row(res, wl, c->procs, 50);
    } else if (on && wl == WL_SYNC) {
      for (unsigned i = 0; i < c->sync_procs.rows && !interrupted; i++) {
        struct cphase ph = { .op = wl, .procs = c->sync_procs.n[i], .seconds = c->seconds, .batch = 1,
                             .txn_flags = ENG_TXN_SYNC };
        run_fresh_row(c, res, add_row(res, wl, ph.procs, 0), &ph);
      }
    }
    /* read_rand, read_seq and mixed (in this order in WL_*) share one preloaded database per engine */
    if (wl == WL_MIXED && nloaded) {
      if (!c->uniform && (c->workloads & (1u << WL_MIXED))) {
        fprintf(stderr, "compare: zipfian constants for %u keys...\n", c->keys);
        zipf_init(&zipf, c->keys, ZIPF_THETA);
        zp = &zipf;
      }
      run_loaded(c, res, loaded, nloaded, zp);
      nloaded = 0;
    }
  }
  return interrupted ? fail("interrupted") : 0;
}

/* ---- report ------------------------------------------------------------------------ */

static int engine_index(const struct cconfig *c, const char *name)
{
  for (unsigned e = 0; e < c->neng; e++)
    if (!strcmp(c->eng[e]->name, name))
      return (int)e;
  return -1;
}

/* sochdb's rate over the best other engine's; 0 when either is missing.
** *best gets that engine. */
/* A cell's rate: its median's (round < 0), or round k's (0 if it has none). */
static double rate_in(const struct cell *x, int round)
{
  if (!cell_ok(x))
    return 0;
  if (round < 0)
    return cell_rate(x);
  return (unsigned)round < x->rounds ? x->round_rate[round] : 0;
}

/* sochdb's rate over the best other engine's, of the medians (round < 0)
** or in round k; 0 when either is missing. *best gets that engine. */
static double ratio_in(const struct cconfig *c, const struct row *r, int round, int *best)
{
  int s = engine_index(c, "sochdb");
  double top = 0;
  *best = -1;
  for (unsigned e = 0; e < c->neng; e++)
    if ((int)e != s && rate_in(&r->cell[e], round) > top) {
      top = rate_in(&r->cell[e], round);
      *best = (int)e;
    }
  if (s < 0 || top <= 0)
    return 0;
  return rate_in(&r->cell[s], round) / top;
}

static double sochdb_ratio(const struct cconfig *c, const struct row *r, int *best)
{
  return ratio_in(c, r, -1, best);
}

static double us(const struct hist *h, double q) { return h->count ? hist_quantile_ms(h, q) * 1000 : 0; }

static void print_cmp_header(const struct cconfig *c, const struct cresults *res)
{
  printf("sochdb-bench compare: %u CPU(s); databases in %s (%s)%s\n", c->cpus, res->root, res->fs.name,
         res->fs.in_memory ? " -- IN MEMORY, sync_commit figures mean nothing" : "");
  printf("first touch of a fresh page in a process: %.2f us (paid once per page by each process that maps it)\n",
         res->page_touch_us);
  print_page_cache_probe(&res->page_cache);
  print_region_pages(&res->pages);
  if (res->prime_mb)
    printf("page cache primed with %u MiB (--prime-mb %u) before each engine's fill and preload phases: %u primes, "
           "%u failed (bench/README.md, fairness)\n", res->prime_mb, c->prime_mb, res->primes, res->prime_failures);
  else
    printf("page cache not primed (--prime-mb %u%s)\n", c->prime_mb, c->prime_mb ? ", MemAvailable too small" : "");
  printf("keys %u bytes, values %u bytes; %.1f s per phase; %u keys preloaded for read_rand, read_seq and mixed "
         "(%u per transaction); mixed keys %s\n", c->key_bytes, c->value_bytes, c->seconds, c->keys, c->batch,
         c->uniform ? "uniform" : "zipfian (theta 0.99, scrambled)");
  printf("engines:");
  for (unsigned e = 0; e < c->neng; e++)
    printf(" %s", c->eng[e]->name);
  int missing = 0;
  for (unsigned i = 0; i < N_KNOWN; i++)
    if (!known[i].ops)
      printf("%s%s (%s missing at build time)", missing++ ? ", " : "; not built: ", known[i].name,
             known[i].package);
  printf("\n\n");
}

static void print_rates(const struct cconfig *c, const struct cresults *res)
{
  int marked = 0;
  printf("%-18s %-10s", "workload", "unit");
  for (unsigned e = 0; e < c->neng; e++)
    printf(" %12s", c->eng[e]->name);
  printf("   %s\n", engine_index(c, "sochdb") >= 0 && c->neng > 1 ? "sochdb / best other" : "");
  for (unsigned i = 0; i < res->nrows; i++) {
    const struct row *r = &res->row[i];
    printf("%-18s %-10s", r->label, wl_unit[r->wl]);
    for (unsigned e = 0; e < c->neng; e++) {
      const struct cell *x = &r->cell[e];
      if (!x->ran)
        printf(" %12s", "-");
      else if (x->failed)
        printf(" %12s", "FAILED");
      else
        printf(" %11.0f%c", cell_rate(x), x->threads ? '*' : ' ');
      marked |= x->threads;
    }
    int best;
    double q = sochdb_ratio(c, r, &best);
    if (q > 0)
      printf("   %6.2fx (%s)", q, c->eng[best]->name);
    printf("\n");
  }
  if (marked)
    printf("* one process of that many threads (RocksDB locks a database to one process); the others ran that "
           "many processes\n");
  printf("fills: sochdb's rate runs until its newest commit was durable (\"durable after\" below), the others "
         "write their log or pages inside the commit\n");
  printf("LMDB and SQLite let one writer at a time in (LMDB's writer mutex, SQLite's WAL write lock); sochdb's "
         "writers run concurrently\n\n");
}

/* sochdb's rate over the best other engine's in round k of row r; 0 when
** either is missing. */
static double round_ratio(const struct cconfig *c, const struct row *r, unsigned k)
{
  int best;
  return ratio_in(c, r, (int)k, &best);
}

/* With --rounds: every round's rate, and sochdb's ratio in each. */
static void print_rounds(const struct cconfig *c, const struct cresults *res)
{
  if (c->rounds < 2)
    return;
  printf("each figure above is the engine's median of %u rounds, run in turns (round k starts with the k-th "
         "engine); every round, in the order run:\n", c->rounds);
  for (unsigned i = 0; i < res->nrows; i++) {
    const struct row *r = &res->row[i];
    printf("%-18s", r->label);
    for (unsigned e = 0; e < c->neng; e++) {
      const struct cell *x = &r->cell[e];
      printf("  %s", c->eng[e]->name);
      for (unsigned k = 0; k < x->rounds; k++)
        printf("%c%.0f", k ? '/' : ' ', x->round_rate[k]);
    }
    if (engine_index(c, "sochdb") >= 0 && c->neng > 1) {
      printf("  ratio");
      for (unsigned k = 0; k < c->rounds; k++)
        printf("%c%.2fx", k ? '/' : ' ', round_ratio(c, r, k));
    }
    printf("\n");
  }
  printf("\n");
}

static double cpu_us_per_op(const struct cell *x, int helper)
{
  return x->ops ? (double)(helper ? x->helper_cpu_ns : x->cpu_ns) / 1e3 / (double)x->ops : 0;
}

/* CPU time per operation: robust where the machine is shared and the rates
** are not. */
static void print_cpu(const struct cconfig *c, const struct cresults *res)
{
  printf("CPU time per operation, microseconds (lower is better): the client processes' (RocksDB: its one process, "
         "background threads included) + sochdbd's\n");
  printf("%-18s %-10s", "workload", "");
  for (unsigned e = 0; e < c->neng; e++)
    printf(" %14s", c->eng[e]->name);
  printf("\n");
  for (unsigned i = 0; i < res->nrows; i++) {
    const struct row *r = &res->row[i];
    printf("%-18s %-10s", r->label, "");
    for (unsigned e = 0; e < c->neng; e++) {
      const struct cell *x = &r->cell[e];
      char buf[32];
      if (!cell_ok(x))
        snprintf(buf, sizeof buf, "-");
      else if (c->eng[e]->helper_cpu_ns)
        snprintf(buf, sizeof buf, "%.2f+%.2f", cpu_us_per_op(x, 0), cpu_us_per_op(x, 1));
      else
        snprintf(buf, sizeof buf, "%.2f", cpu_us_per_op(x, 0));
      printf(" %14s", buf);
    }
    printf("\n");
  }
  printf("\n");
}

/* A settled fill's figures over the phase and the settle together: the
** helper's CPU a put, and the rate. */
static double helper_us_per_op_until_settled(const struct cell *x)
{
  return x->ops ? (double)(x->helper_cpu_ns + x->settle_helper_cpu_ns) / 1e3 / (double)x->ops : 0;
}

static double rate_until_settled(const struct cell *x)
{
  double secs = x->seconds + x->settled_after_s;
  return secs > 0 ? (double)x->ops / secs : 0;
}

/* A fill's clock stops with its last commit; what the engine's helper still
** had to do then (make the commits durable, flush, compact) is shown here,
** with the rate the fill would have had if the clock had run until it was
** done: the rate a load longer than the region's memtables can sustain. */
static void print_settle(const struct cconfig *c, const struct cresults *res)
{
  int any = 0;
  for (unsigned i = 0; i < res->nrows; i++)
    for (unsigned e = 0; e < c->neng; e++) {
      const struct cell *x = &res->row[i].cell[e];
      if (!cell_ok(x) || !x->settled)
        continue;
      if (!any++)
        printf("after the clock stopped (engines with a helper that reports it): the newest commit durable after, "
               "flushing and compaction settled after, the helper's CPU a put until then, puts/s over both; and "
               "the share of the phase its writer waited for the helper (sochdb: the write stall)\n"
               "%-18s %-10s %14s %14s %14s %14s %14s\n", "workload", "engine", "durable after", "settled after",
               "helper us/put", "puts/s", "writer waited");
      char waited[32] = "-";   /* one writer (a fill): its waits over the phase */
      if (c->eng[e]->stall_us && x->seconds > 0)
        snprintf(waited, sizeof waited, "%.0f%%", 100.0 * (double)x->stall_us / 1e6 / x->seconds);
      printf("%-18s %-10s %13.2fs %13.2fs %14.2f %14.0f %14s\n", res->row[i].label, c->eng[e]->name,
             x->durable_after_s, x->settled_after_s, helper_us_per_op_until_settled(x), rate_until_settled(x),
             waited);
    }
  if (any)
    printf("\n");
}

static void print_latencies(const struct cconfig *c, const struct cresults *res)
{
  int any = 0;
  for (unsigned i = 0; i < res->nrows; i++)
    any |= res->row[i].wl == WL_MIXED;
  if (!any)
    return;
  printf("mixed: latency of one operation (one transaction), microseconds\n");
  printf("%-18s %-9s %9s %9s %9s   %9s %9s %9s %9s\n", "workload", "engine", "read p50", "p99", "p99.9",
         "upd p50", "p99", "p99.9", "retries");
  for (unsigned i = 0; i < res->nrows; i++) {
    const struct row *r = &res->row[i];
    if (r->wl != WL_MIXED)
      continue;
    for (unsigned e = 0; e < c->neng; e++) {
      const struct cell *x = &r->cell[e];
      if (!cell_ok(x))
        continue;
      printf("%-18s %-9s %9.2f %9.2f %9.2f   %9.2f %9.2f %9.2f %9llu\n", r->label, c->eng[e]->name,
             us(&x->lat, 0.5), us(&x->lat, 0.99), us(&x->lat, 0.999), us(&x->lat_upd, 0.5),
             us(&x->lat_upd, 0.99), us(&x->lat_upd, 0.999), ull(x->retries));
    }
  }
  printf("retries: sochdb's write-write conflicts (first committer wins), SQLite's busy timeouts\n\n");
}

/* The row whose memory figures are shown for engine e: the last mixed row it
** ran, else the last row it ran. */
static const struct row *memory_row(const struct cresults *res, unsigned e)
{
  const struct row *pick = NULL;
  for (unsigned i = 0; i < res->nrows; i++) {
    const struct row *r = &res->row[i];
    if (cell_ok(&r->cell[e]) && (r->wl == WL_MIXED || !pick || pick->wl != WL_MIXED))
      pick = r;
  }
  return pick;
}

static void print_memory(const struct cconfig *c, const struct cresults *res)
{
  printf("memory, KiB: a client process's private memory outside the database's files and region "
         "(Private_Clean + Private_Dirty of /proc/PID/smaps), the largest of the clients\n");
  printf("%-9s %-18s %14s %14s %12s %14s %12s %14s\n", "engine", "at the end of", "client private",
         "incl. db files", "client RSS", "region (shm)", "daemon RSS", "daemon private");
  for (unsigned e = 0; e < c->neng; e++) {
    const struct row *r = memory_row(res, e);
    if (!r)
      continue;
    const struct cell *x = &r->cell[e];
    printf("%-9s %-18s %14llu %14llu %12llu", c->eng[e]->name, r->label, ull(x->mem_private_kib),
           ull(x->mem_private_all_kib), ull(x->mem_rss_kib));
    if (c->eng[e]->shared_memory)
      printf(" %14llu %12llu %14llu\n", ull(x->region_kib), ull(x->helper_rss_kib), ull(x->helper_private_kib));
    else
      printf(" %14s %12s %14s\n", "-", "-", "-");
    if (x->threads)
      printf("%-9s %-18s (one process with every thread: the whole engine, block cache and memtables)\n", "", "");
  }
  printf("\n");
}

static void print_settings(const struct cconfig *c, const struct cresults *res)
{
  for (unsigned e = 0; e < c->neng; e++) {
    printf("%s: %s\n", c->eng[e]->name, c->eng[e]->settings);
    if (res->load[e].ran)
      printf("  preload: %llu keys in %.2f s = %.0f puts/s%s", ull(res->load[e].keys), res->load[e].seconds,
             per_s(res->load[e].keys, res->load[e].seconds), c->eng[e]->quiesce ? "" : "\n");
    if (res->load[e].ran && c->eng[e]->quiesce)
      printf(", then %.1f s for flushing and compaction to settle\n", res->load[e].settle_seconds);
  }
  printf("\n");
}

/* ---- JSON and the chart ---------------------------------------------------------- */

static void json_cell(FILE *f, const struct cell *x, const struct engine_ops *ops, unsigned wl)
{
  fprintf(f, "{\"ran\": %s, \"failed\": %s", x->ran ? "true" : "false", x->failed ? "true" : "false");
  if (cell_ok(x)) {
    fprintf(f, ", \"threads_in_one_process\": %s, \"seconds\": %.3f, \"ops\": %llu, \"txns\": %llu, "
               "\"retries\": %llu, \"ops_per_s\": %.1f, \"p50_us\": %.3f, \"p99_us\": %.3f, \"p999_us\": %.3f, "
               "\"p9999_us\": %.3f",
            x->threads ? "true" : "false", x->seconds, ull(x->ops), ull(x->txns), ull(x->retries), cell_rate(x),
            us(&x->lat, 0.5), us(&x->lat, 0.99), us(&x->lat, 0.999), us(&x->lat, 0.9999));
    fprintf(f, ", \"client_cpu_us_per_op\": %.4f", cpu_us_per_op(x, 0));
    if (ops->helper_cpu_ns)
      fprintf(f, ", \"daemon_cpu_us_per_op\": %.4f", cpu_us_per_op(x, 1));
    if (ops->stall_us)
      fprintf(f, ", \"write_stall_s\": %.3f", (double)x->stall_us / 1e6);
    fprintf(f, ", \"round_ops_per_s\": [");
    for (unsigned k = 0; k < x->rounds; k++)
      fprintf(f, "%s%.1f", k ? ", " : "", x->round_rate[k]);
    fprintf(f, "]");
    if (x->settled)
      fprintf(f, ", \"durable_after_s\": %.3f, \"settled_after_s\": %.3f, \"daemon_cpu_us_per_op_until_settled\": %.4f, "
                 "\"ops_per_s_until_settled\": %.1f", x->durable_after_s, x->settled_after_s,
              helper_us_per_op_until_settled(x), rate_until_settled(x));
    if (wl == WL_MIXED)
      fprintf(f, ", \"reads\": %llu, \"updates\": %llu, \"update_p50_us\": %.3f, \"update_p99_us\": %.3f, "
                 "\"update_p999_us\": %.3f", ull(x->lat.count), ull(x->lat_upd.count), us(&x->lat_upd, 0.5),
              us(&x->lat_upd, 0.99), us(&x->lat_upd, 0.999));
    fprintf(f, ", \"memory_kib\": {\"client_private\": %llu, \"client_private_incl_db_files\": %llu, "
               "\"client_rss\": %llu", ull(x->mem_private_kib), ull(x->mem_private_all_kib), ull(x->mem_rss_kib));
    if (ops->shared_memory)
      fprintf(f, ", \"region\": %llu, \"daemon_rss\": %llu, \"daemon_private\": %llu", ull(x->region_kib),
              ull(x->helper_rss_kib), ull(x->helper_private_kib));
    fprintf(f, "}");
  }
  fprintf(f, "}");
}

static int write_cjson(const struct cconfig *c, const struct cresults *res)
{
  FILE *f = fopen(c->json, "w");
  if (!f)
    return fail_errno("create", c->json);
  fprintf(f, "{\n  \"benchmark\": \"sochdb-bench compare\",\n  \"cpus\": %u,\n  \"dir\": ", c->cpus);
  json_str(f, res->root);
  fprintf(f, ",\n  \"fs\": ");
  json_str(f, res->fs.name);
  fprintf(f, ",\n  \"page_touch_us\": %.3f", res->page_touch_us);
  fprintf(f, ",\n  \"page_cache_fresh_mbps\": %.1f,\n  \"page_cache_cached_mbps\": %.1f", res->page_cache.fresh_mbps,
          res->page_cache.cached_mbps);
  json_region_pages(f, &res->pages);
  fprintf(f, ",\n  \"fs_in_memory\": %s,\n  \"key_bytes\": %u,\n  \"value_bytes\": %u,\n  \"value_random_pct\": %u,"
             "\n  \"seconds\": %.3f,\n  \"keys\": %u,\n  \"batch\": %u,\n  \"procs\": %u,\n  \"distribution\": \"%s\","
             "\n  \"prime_mb\": %u,\n  \"prime_mb_asked\": %u,\n  \"primes\": %u,\n  \"prime_failures\": %u,"
             "\n  \"rounds\": %u,\n  \"engines\": [", res->fs.in_memory ? "true" : "false", c->key_bytes,
          c->value_bytes, c->value_random_pct, c->seconds, c->keys, c->batch, c->procs,
          c->uniform ? "uniform" : "zipfian", res->prime_mb, c->prime_mb, res->primes, res->prime_failures,
          c->rounds);
  for (unsigned e = 0; e < c->neng; e++) {
    const struct engine_ops *ops = c->eng[e];
    fprintf(f, "%s\n    {\"name\": \"%s\", \"multiprocess\": %s, \"settings\": ", e ? "," : "", ops->name,
            ops->caps & ENGINE_MULTIPROCESS ? "true" : "false");
    json_str(f, ops->settings);
    if (res->load[e].ran)
      fprintf(f, ", \"preload\": {\"keys\": %llu, \"seconds\": %.3f, \"puts_per_s\": %.1f, \"retries\": %llu, "
                 "\"settle_seconds\": %.3f}", ull(res->load[e].keys), res->load[e].seconds,
              per_s(res->load[e].keys, res->load[e].seconds), ull(res->load[e].retries),
              res->load[e].settle_seconds);
    fprintf(f, "}");
  }
  fprintf(f, "\n  ],\n  \"not_built\": [");
  int n = 0;
  for (unsigned i = 0; i < N_KNOWN; i++)
    if (!known[i].ops)
      fprintf(f, "%s\"%s\"", n++ ? ", " : "", known[i].name);
  fprintf(f, "],\n  \"rows\": [");
  for (unsigned i = 0; i < res->nrows; i++) {
    const struct row *r = &res->row[i];
    fprintf(f, "%s\n    {\"workload\": \"%s\", \"label\": \"%s\", \"procs\": %u, ", i ? "," : "", wl_name[r->wl],
            r->label, r->procs);
    if (r->wl == WL_MIXED)
      fprintf(f, "\"read_pct\": %u, ", r->read_pct);
    fprintf(f, "\"unit\": \"%s\", \"results\": {", wl_unit[r->wl]);
    for (unsigned e = 0; e < c->neng; e++) {
      fprintf(f, "%s\n      \"%s\": ", e ? "," : "", c->eng[e]->name);
      json_cell(f, &r->cell[e], c->eng[e], r->wl);
    }
    int best;
    double q = sochdb_ratio(c, r, &best);
    fprintf(f, "\n    }");
    if (q > 0) {
      fprintf(f, ", \"best_other\": \"%s\", \"sochdb_over_best_other\": %.4f, \"round_ratios\": [",
              c->eng[best]->name, q);
      for (unsigned k = 0; k < c->rounds; k++)
        fprintf(f, "%s%.4f", k ? ", " : "", round_ratio(c, r, k));
      fprintf(f, "]");
    }
    fprintf(f, "}");
  }
  fprintf(f, "\n  ],\n  \"memory\": {");
  n = 0;
  for (unsigned e = 0; e < c->neng; e++) {
    const struct row *r = memory_row(res, e);
    if (!r)
      continue;
    const struct cell *x = &r->cell[e];
    fprintf(f, "%s\n    \"%s\": {\"at_end_of\": \"%s\", \"client_private_kib\": %llu, "
               "\"client_private_incl_db_files_kib\": %llu, \"client_rss_kib\": %llu",
            n++ ? "," : "", c->eng[e]->name, r->label, ull(x->mem_private_kib), ull(x->mem_private_all_kib),
            ull(x->mem_rss_kib));
    if (c->eng[e]->shared_memory)
      fprintf(f, ", \"region_kib\": %llu, \"daemon_rss_kib\": %llu, \"daemon_private_kib\": %llu",
              ull(x->region_kib), ull(x->helper_rss_kib), ull(x->helper_private_kib));
    fprintf(f, ", \"one_process_for_all_threads\": %s}", x->threads ? "true" : "false");
  }
  fprintf(f, "\n  }\n}\n");
  return fclose(f) == 0 ? 0 : fail_errno("write", c->json);
}

/* path with its extension (if any) replaced by ext. */
static void with_ext(char *out, size_t size, const char *path, const char *ext)
{
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
  snprintf(out, size, "%.*s%s", (int)stem, path, ext);
}

/* A name gnuplot reads literally inside double quotes. */
static void gp_str(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++)
    if (*s == '"' || *s == '\\')
      fprintf(f, "\\%c", *s);
    else
      fputc(*s, f);
  fputc('"', f);
}

/* The gnuplot script: the figures of the JSON's rows inline, grouped bars on
** a log scale. */
static int write_gnuplot(const struct cconfig *c, const struct cresults *res, const char *script, const char *png)
{
  FILE *f = fopen(script, "w");
  if (!f)
    return fail_errno("create", script);
  fprintf(f, "# Written by sochdb-bench compare with the figures of %s (its \"rows\": ops_per_s).\n"
             "# Redraw with: gnuplot %s\n", c->json, script);
  fprintf(f, "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
             "  set terminal pngcairo size 1500,800 noenhanced font \"sans,10\"\n"
             "} else {\n  set terminal png size 1500,800 noenhanced\n}\n");
  fprintf(f, "set output ");
  gp_str(f, png);
  char rounds[48] = "";
  if (c->rounds > 1)
    snprintf(rounds, sizeof rounds, "; each engine's median of %u rounds", c->rounds);
  fprintf(f, "\nset title \"sochdb-bench compare: operations per second, higher is better (log scale); %u CPU(s), "
             "%s; keys %u B, values %u B; xN = N processes (* RocksDB: N threads of one process)%s\"\n",
          c->cpus, res->fs.name, c->key_bytes, c->value_bytes, rounds);
  fprintf(f, "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
             "set boxwidth 0.9\nset logscale y\nset format y \"%%.0s%%c\"\nset grid ytics\nset ylabel \"ops/s\"\n"
             "set xtics rotate by -25 scale 0\nset key outside top center horizontal\n"
             "set datafile missing \"-\"\n");
  double low = 0;
  for (unsigned i = 0; i < res->nrows; i++)
    for (unsigned e = 0; e < c->neng; e++)
      if (cell_ok(&res->row[i].cell[e]) && cell_rate(&res->row[i].cell[e]) >= 1 &&
          (low == 0 || cell_rate(&res->row[i].cell[e]) < low))
        low = cell_rate(&res->row[i].cell[e]);
  fprintf(f, "set yrange [%.0f:*]\n", low > 0 ? pow(10, floor(log10(low))) : 1);
  fprintf(f, "$data << EOD\n");
  for (unsigned i = 0; i < res->nrows; i++) {
    const struct row *r = &res->row[i];
    gp_str(f, r->label);
    for (unsigned e = 0; e < c->neng; e++)
      if (cell_ok(&r->cell[e]))
        fprintf(f, " %.1f", cell_rate(&r->cell[e]));
      else
        fprintf(f, " -");
    fprintf(f, "\n");
  }
  fprintf(f, "EOD\nplot ");
  for (unsigned e = 0; e < c->neng; e++) {
    fprintf(f, "%s$data using %u%s title ", e ? ", " : "", e + 2, e ? "" : ":xtic(1)");
    gp_str(f, c->eng[e]->name);
  }
  fprintf(f, "\n");
  return fclose(f) == 0 ? 0 : fail_errno("write", script);
}

/* gnuplot on PATH? */
static int have_program(const char *name)
{
  const char *path = getenv("PATH");
  char buf[PATH_MAX];
  if (!path)
    path = "/usr/bin:/bin";
  for (const char *p = path; *p; ) {
    size_t n = strcspn(p, ":");
    if (n && (size_t)snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, name) < sizeof buf && access(buf, X_OK) == 0)
      return 1;
    p += n + (p[n] == ':');
  }
  return 0;
}

static int draw_chart(const struct cconfig *c, const struct cresults *res)
{
  char png[PATH_MAX], script[PATH_MAX];
  char cwd[PATH_MAX] = "";
  const char *out = c->chart ? c->chart : c->json;
  if (out[0] != '/' && getcwd(cwd, sizeof cwd - 1))   /* the script names an absolute file: it runs from anywhere */
    strcat(cwd, "/");
  else
    cwd[0] = 0;
  if (c->chart)
    snprintf(png, sizeof png, "%s%s", cwd, c->chart);
  else {
    char rel[PATH_MAX];
    with_ext(rel, sizeof rel, c->json, ".png");
    snprintf(png, sizeof png, "%s%s", cwd, rel);
  }
  with_ext(script, sizeof script, png, ".gnuplot");
  if (write_gnuplot(c, res, script, png) != 0)
    return -1;
  if (!have_program("gnuplot")) {
    printf("chart: skipped, gnuplot is not installed (apt-get install gnuplot-nox, then: gnuplot %s)\n", script);
    return 0;
  }
  char *argv[] = { "gnuplot", script, NULL };
  pid_t pid;
  int status, err = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
  if (err)
    return fail("gnuplot: %s", strerror(err));
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail("gnuplot %s failed", script);
  printf("chart: %s (gnuplot script %s)\n", png, script);
  return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

int compare_main(int argc, char **argv)
{
  static struct cconfig c;
  static struct cresults res;   /* large: the histograms */
  int rc = cparse_args(argc, argv, &c);
  if (rc)
    return rc - 1;
  catch_signals();
  char tmpl[PATH_MAX];
  if ((size_t)snprintf(tmpl, sizeof tmpl, "%s/sochdb-bench.XXXXXX", c.base) >= sizeof tmpl)
    return fail("--dir is too long"), 1;
  if (!mkdtemp(tmpl))
    return fail_errno("create a directory in", c.base), 1;
  /* Absolute: the workers tell the database's mappings by this prefix. */
  if (!realpath(tmpl, res.root))
    snprintf(res.root, sizeof res.root, "%s", tmpl);
  fs_type(res.root, &res.fs);
  region_pages(res.root, &res.pages);
  res.page_touch_us = page_touch_us();
  page_cache_probe(res.root, &res.page_cache);
  res.prime_mb = prime_size_mb(c.prime_mb);
  if (res.fs.in_memory)
    fprintf(stderr, "sochdb-bench: warning: %s is on %s: fsync costs nothing there, so the sync_commit figures "
                    "say nothing about a disk (use --dir)\n", res.root, res.fs.name);
  for (unsigned i = 0; i < N_KNOWN; i++)
    if (!known[i].ops)
      fprintf(stderr, "sochdb-bench: %s is not built in (%s was missing when sochdb-bench was built)\n",
              known[i].name, known[i].package);
  rc = run_all(&c, &res);
  rm_rf(res.root);
  if (interrupted)
    return 1;
  print_cmp_header(&c, &res);
  print_rates(&c, &res);
  print_rounds(&c, &res);
  print_latencies(&c, &res);
  print_cpu(&c, &res);
  print_settle(&c, &res);
  print_memory(&c, &res);
  print_settings(&c, &res);
  int out = write_cjson(&c, &res);
  if (out == 0)
    printf("JSON: %s\n", c.json);
  if (out == 0 && !c.no_chart)
    out = draw_chart(&c, &res);
  if (res.failed)
    fprintf(stderr, "sochdb-bench compare: FAILED: some workload failed on some engine (see above)\n");
  return rc != 0 || out != 0 || res.failed ? 1 : 0;
}
