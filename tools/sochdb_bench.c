/*
** sochdb_bench.c — `sochdb bench DIR`: a quick, self-contained benchmark of
** the public API on a scratch database.
**
**   sochdb bench DIR [--seconds S] [--procs N] [--keep] [--json]
**
** Four workloads run one after the other, each in child processes that open
** their own handle (a handle does not survive fork()):
**   async_put  one process, one put per transaction, SOCHDB_ASYNC commits
**   sync_put   N processes, one put per transaction, SOCHDB_SYNC commits
**   read       N processes, one random point get per read-only transaction
**   scan       one process, one iterator over every key
** Every value is derived from its key, so every read and every scanned pair
** is checked; the scan must see exactly the keys the writers committed.
** Latencies are per operation (per transaction; per pair for the scan).
** DIR must not exist or be empty; what the benchmark created there (the
** database, its region, its daemon) is removed at the end unless --keep.
*/
#include "sochdb.h"

#include "cli.h"
#include "internal.h"   /* sdb_daemon_stop */
#include "region.h"     /* shm_region_unlink_path */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS   64
#define LAT_CAP     (1u << 18)   /* latency samples kept per process (the latest ones) */
#define VLEN        100
#define NWORKLOADS  4

enum { W_ASYNC, W_SYNC, W_READ, W_SCAN };
static const char *const wl_names[NWORKLOADS] = { "async_put", "sync_put", "read", "scan" };

/* What one child reports, in memory shared with the parent. */
typedef struct slot {
  unsigned long long ops, elapsed_ns;
  unsigned nlat;
  int failed;                   /* 0, or an exit status */
  char why[160];
  uint32_t lat[LAT_CAP];        /* nanoseconds, saturated */
} slot;

typedef struct shared {
  atomic_int ready, go;
  unsigned long long deadline_ns;
  unsigned long long async_keys;     /* keys written by async_put (the reads pick among them) */
  unsigned long long expect_keys;    /* keys the scan must see */
  slot slots[MAX_PROCS];
} shared;

typedef struct result {
  unsigned procs;
  unsigned long long ops;
  double seconds, rate, p50_us, p99_us;
} result;

static const char *bench_dir;
static double seconds = 3.0;

static unsigned long long now_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

/* ------------------------------------------------------------- data */

static size_t key_of(char *k, unsigned w, unsigned proc, unsigned long long i)
{
  return (size_t)(w == W_ASYNC ? snprintf(k, 32, "a-%012llu", i) : snprintf(k, 32, "s%02u-%012llu", proc, i));
}

/* The value of a key: VLEN bytes from an xorshift seeded by its FNV-1a hash. */
static void val_of(const void *key, size_t klen, unsigned char *v)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < klen; i++)
    h = (h ^ ((const unsigned char *)key)[i]) * 0x100000001b3ull;
  for (int j = 0; j < VLEN; j++) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    v[j] = (unsigned char)h;
  }
}

/* ------------------------------------------------------------- children */

static void record(slot *s, unsigned long long t0)
{
  unsigned long long d = now_ns() - t0;
  s->lat[s->nlat++ % LAT_CAP] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
  s->ops++;
}

static int fail(slot *s, const char *what, int rc)
{
  snprintf(s->why, sizeof s->why, "%s: %s (%s)", what, sochdb_strerror(rc), sochdb_last_error());
  s->failed = EXIT_DB_ERROR;
  return EXIT_DB_ERROR;
}

/* One put in one transaction, retried while the daemon is behind (BUSY). */
static int put_one(sochdb *db, slot *s, const char *k, size_t kl, unsigned flags)
{
  unsigned char v[VLEN];
  val_of(k, kl, v);
  for (int attempt = 0;; attempt++) {
    sochdb_txn *t;
    int rc = sochdb_txn_begin(db, 0, &t);
    if (rc != SOCHDB_OK)
      return fail(s, "begin", rc);
    if ((rc = sochdb_put(t, k, kl, v, VLEN)) != SOCHDB_OK) {
      sochdb_abort(t);
      return fail(s, "put", rc);
    }
    rc = sochdb_commit(t, flags);
    if (rc == SOCHDB_OK)
      return 0;
    if ((rc != SOCHDB_BUSY && rc != SOCHDB_CONFLICT) || attempt == 1000)
      return fail(s, "commit", rc);
    usleep(1000);
  }
}

static int get_one(sochdb *db, slot *s, const char *k, size_t kl)
{
  sochdb_txn *t;
  const void *got;
  size_t glen;
  unsigned char v[VLEN];
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  if (rc != SOCHDB_OK)
    return fail(s, "begin", rc);
  rc = sochdb_get(t, k, kl, &got, &glen);
  val_of(k, kl, v);
  int bad = rc == SOCHDB_OK && (glen != VLEN || memcmp(got, v, VLEN) != 0);
  sochdb_abort(t);
  if (rc != SOCHDB_OK)
    return fail(s, k, rc);
  if (bad) {
    snprintf(s->why, sizeof s->why, "%s reads a wrong value", k);
    return s->failed = EXIT_DB_ERROR;
  }
  return 0;
}

/* Every pair, in one snapshot, each checked; the count must be expect_keys. */
static int scan_all(sochdb *db, slot *s, unsigned long long expect)
{
  sochdb_txn *t;
  sochdb_iter *it;
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  if (rc != SOCHDB_OK)
    return fail(s, "begin", rc);
  if ((rc = sochdb_iter_open(t, NULL, 0, NULL, 0, &it)) != SOCHDB_OK) {
    sochdb_abort(t);
    return fail(s, "iter_open", rc);
  }
  const void *k, *val;
  size_t kl, vl;
  unsigned char v[VLEN];
  for (unsigned long long t0 = now_ns(); (rc = sochdb_iter_next(it, &k, &kl, &val, &vl)) == SOCHDB_OK;
       t0 = now_ns()) {
    val_of(k, kl, v);
    if (vl != VLEN || memcmp(val, v, VLEN) != 0) {
      snprintf(s->why, sizeof s->why, "the scan reads a wrong value for %.*s", (int)(kl < 40 ? kl : 40),
               (const char *)k);
      s->failed = EXIT_DB_ERROR;
      break;
    }
    record(s, t0);
  }
  sochdb_iter_close(it);
  sochdb_abort(t);
  if (rc != SOCHDB_OK && rc != SOCHDB_NOTFOUND)
    return fail(s, "iter_next", rc);
  if (!s->failed && s->ops != expect) {
    snprintf(s->why, sizeof s->why, "the scan saw %llu keys; %llu were committed", s->ops, expect);
    s->failed = EXIT_DB_ERROR;
  }
  return s->failed;
}

static int child(shared *sh, unsigned w, unsigned proc)
{
  slot *s = &sh->slots[proc];
  sochdb *db;
  int rc = sochdb_open(bench_dir, NULL, &db);
  atomic_fetch_add(&sh->ready, 1);
  if (rc != SOCHDB_OK)
    return fail(s, "open", rc);
  while (!atomic_load(&sh->go))
    usleep(200);
  uint64_t rnd = 0x9e3779b97f4a7c15ull * (proc + 1);
  unsigned long long start = now_ns();
  if (w == W_SCAN)
    scan_all(db, s, sh->expect_keys);
  while (w != W_SCAN && !s->failed && now_ns() < sh->deadline_ns) {
    char k[32];
    unsigned long long t0 = now_ns();
    if (w == W_READ) {
      rnd ^= rnd << 13;
      rnd ^= rnd >> 7;
      rnd ^= rnd << 17;
      size_t kl = key_of(k, W_ASYNC, 0, rnd % sh->async_keys);
      if (get_one(db, s, k, kl) != 0)
        break;
    } else {
      size_t kl = key_of(k, w, proc, s->ops);
      if (put_one(db, s, k, kl, w == W_ASYNC ? SOCHDB_ASYNC : SOCHDB_SYNC) != 0)
        break;
    }
    record(s, t0);
  }
  s->elapsed_ns = now_ns() - start;
  sochdb_close(db);
  return s->failed;
}

/* ------------------------------------------------------------- the parent */

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Runs workload w in procs children; fills *r, or says why it failed. */
static int run_workload(shared *sh, unsigned w, unsigned procs, progress_bar *bar, result *r)
{
  pid_t pids[MAX_PROCS];
  memset(sh->slots, 0, sizeof sh->slots[0] * procs);
  atomic_store(&sh->ready, 0);
  atomic_store(&sh->go, 0);
  fflush(NULL);
  for (unsigned p = 0; p < procs; p++)
    if ((pids[p] = fork()) == 0)
      _exit(child(sh, w, p));
    else if (pids[p] < 0) {
      fprintf(stderr, "sochdb: fork: %s\n", strerror(errno));
      for (unsigned q = 0; q < p; q++)   /* they wait for go: let them run out at once */
        kill(pids[q], SIGKILL), waitpid(pids[q], NULL, 0);
      return EXIT_DB_ERROR;
    }
  /* Start the clock once every handle is open (or a minute passed: a child
  ** that died before saying so is reported below). */
  for (int i = 0; i < 60000 && (unsigned)atomic_load(&sh->ready) < procs; i++)
    usleep(1000);
  unsigned long long start = now_ns(), total = (unsigned long long)(seconds * 1e9);
  sh->deadline_ns = start + total;
  atomic_store(&sh->go, 1);

  int status = EXIT_OK;
  for (unsigned left = procs; left > 0;) {
    for (unsigned p = 0; p < procs; p++) {
      int st;
      if (pids[p] > 0 && waitpid(pids[p], &st, WNOHANG) == pids[p]) {
        pids[p] = 0;
        left--;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
          status = EXIT_DB_ERROR;
      }
    }
    unsigned long long el = now_ns() - start;
    if (left > 0) {
      bar_draw(bar, wl_names[w], w == W_SCAN ? sh->slots[0].ops : (el < total ? el : total),
               w == W_SCAN ? sh->expect_keys : total, "");
      usleep(20000);
    }
  }
  bar_clear(bar);

  memset(r, 0, sizeof *r);
  r->procs = procs;
  size_t nlat = 0;
  unsigned long long max_ns = 1;
  for (unsigned p = 0; p < procs; p++) {
    slot *s = &sh->slots[p];
    if (s->failed || status != EXIT_OK) {
      fprintf(stderr, "sochdb: bench %s, process %u: %s\n", wl_names[w], p,
              s->why[0] ? s->why : "the process died");
      status = EXIT_DB_ERROR;
    }
    r->ops += s->ops;
    max_ns = s->elapsed_ns > max_ns ? s->elapsed_ns : max_ns;
    nlat += s->nlat < LAT_CAP ? s->nlat : LAT_CAP;
  }
  if (status != EXIT_OK)
    return status;
  uint32_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
  if (all == NULL)
    return db_error("bench", SOCHDB_NOMEM);
  size_t n = 0;
  for (unsigned p = 0; p < procs; p++) {
    unsigned k = sh->slots[p].nlat < LAT_CAP ? sh->slots[p].nlat : LAT_CAP;
    memcpy(all + n, sh->slots[p].lat, k * sizeof *all);
    n += k;
  }
  qsort(all, n, sizeof *all, cmp_u32);
  r->seconds = (double)max_ns / 1e9;
  r->rate = (double)r->ops / r->seconds;
  r->p50_us = n ? all[n / 2] / 1e3 : 0;
  r->p99_us = n ? all[n * 99 / 100] / 1e3 : 0;
  free(all);
  return EXIT_OK;
}

/* ------------------------------------------------------------- DIR */

/* DIR must not exist, or be an empty directory; *existed says which. */
static int check_dir(const char *dir, int *existed)
{
  struct stat st;
  *existed = stat(dir, &st) == 0;
  if (!*existed)
    return EXIT_OK;
  DIR *d = S_ISDIR(st.st_mode) ? opendir(dir) : NULL;
  int entries = d == NULL;
  for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
    entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  if (d != NULL)
    closedir(d);
  if (entries == 0)
    return EXIT_OK;
  fprintf(stderr, "sochdb: %s exists and is not an empty directory; bench writes into a new or empty "
                  "directory only\n", dir);
  return EXIT_USAGE;
}

static int keep_top;   /* remove_database: DIR existed before, so only its contents go */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  if (ftw->level == 0 && keep_top)
    return 0;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Stop the daemon (SIGTERM to the pid in DIR/LOCK, then wait until its lock
** is free), unlink the region, remove the files; keep DIR if it existed. */
static void remove_database(const char *dir, const char *region, int existed)
{
  sdb_daemon_stop(dir, SIGTERM, 10000);
  if (region[0])
    shm_region_unlink_path(region, 0);
  keep_top = existed;
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------- output */

static void print_results(int json, unsigned procs, const result *r)
{
  if (!json) {
    printf("%-10s %5s %12s %8s %12s %10s %10s\n", "workload", "procs", "ops", "seconds", "ops/s", "p50 us",
           "p99 us");
    for (int w = 0; w < NWORKLOADS; w++)
      printf("%-10s %5u %12llu %8.2f %12.0f %10.1f %10.1f\n", wl_names[w], r[w].procs, r[w].ops, r[w].seconds,
             r[w].rate, r[w].p50_us, r[w].p99_us);
    printf("(one put or one get per transaction; the scan's ops are pairs; every value read was checked)\n");
    return;
  }
  printf("{\"command\":\"bench\",\"dir\":");
  put_json_string(bench_dir, strlen(bench_dir));
  printf(",\"seconds\":%.3f,\"procs\":%u,\"verified\":true,\"workloads\":{", seconds, procs);
  for (int w = 0; w < NWORKLOADS; w++)
    printf("%s\"%s\":{\"procs\":%u,\"ops\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.1f,\"p50_us\":%.2f,"
           "\"p99_us\":%.2f}", w ? "," : "", wl_names[w], r[w].procs, r[w].ops, r[w].seconds, r[w].rate,
           r[w].p50_us, r[w].p99_us);
  printf("}}\n");
}

/* ------------------------------------------------------------- command line */

static const char bench_synopsis[] = "DIR [--seconds S] [--procs N] [--keep] [--json]";
static const char bench_details[] =
  "Measures the engine through the public API on a scratch database at DIR,\n"
  "which must not exist or be an empty directory. Four workloads run in turn,\n"
  "each in child processes with handles of their own:\n"
  "  async_put  1 process: one 100-byte put per transaction, ASYNC commits\n"
  "  sync_put   N processes: one put per transaction, SYNC (durable) commits\n"
  "  read       N processes: one random get per read-only transaction\n"
  "  scan       1 process: one iterator over every key written\n"
  "For each: operations, operations per second and the 50th and 99th\n"
  "percentile latency of one operation (the scan's: of one pair). Every value\n"
  "read is checked against what was written, and the scan must see exactly the\n"
  "keys committed; a mismatch fails the command (exit status 3). A progress bar\n"
  "is drawn on stderr when it is a terminal. Afterwards the database, its\n"
  "shared region and its daemon are removed (DIR itself is kept if it existed).\n\n"
  "  --seconds S   how long each timed workload runs (default 3; 0.1 to 3600)\n"
  "  --procs N     processes for sync_put and read (default 4; 1 to 64)\n"
  "  --keep        leave the database in DIR\n"
  "  --json        print the results as one JSON object\n";

static int busage(const char *msg)
{
  fprintf(stderr, "sochdb: %s\nusage: sochdb bench %s\nTry 'sochdb bench --help'.\n", msg, bench_synopsis);
  return EXIT_USAGE;
}

/* `sochdb [--json] bench ...`: argv[0] is "bench". */
int bench_main(int argc, char **argv, int json)
{
  const char *sec_arg = NULL, *procs_arg = NULL;
  int keep = 0, help = 0, only_args = 0;
  unsigned procs = 4;
  char msg[256];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_args && !strcmp(a, "--"))
      only_args = 1;
    else if (only_args || a[0] != '-' || !a[1]) {
      if (bench_dir != NULL)
        return busage("too many arguments");
      bench_dir = a;
    } else if (!strcmp(a, "--json"))
      json = 1;
    else if (!strcmp(a, "--keep"))
      keep = 1;
    else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
      help = 1;
    else if (!strncmp(a, "--seconds=", 10))
      sec_arg = a + 10;
    else if (!strncmp(a, "--procs=", 8))
      procs_arg = a + 8;
    else if (!strcmp(a, "--seconds") && i + 1 < argc)
      sec_arg = argv[++i];
    else if (!strcmp(a, "--procs") && i + 1 < argc)
      procs_arg = argv[++i];
    else {
      snprintf(msg, sizeof msg, "bench has no option '%.100s' (or it needs a value)", a);
      return busage(msg);
    }
  }
  if (help) {
    printf("usage: sochdb bench %s\n\n%s", bench_synopsis, bench_details);
    return EXIT_OK;
  }
  if (bench_dir == NULL)
    return busage("bench needs DIR");
  char *end = NULL;
  if (sec_arg)
    seconds = strtod(sec_arg, &end);
  if (sec_arg && (end == sec_arg || *end || !(seconds >= 0.1 && seconds <= 3600))) {
    fprintf(stderr, "sochdb: --seconds wants 0.1 to 3600, not '%s'\n", sec_arg);
    return EXIT_USAGE;
  }
  if (procs_arg) {
    char want[32];
    snprintf(want, sizeof want, "1 to %d", MAX_PROCS);
    unsigned long long v;
    if (cli_parse_number("--procs", procs_arg, 1, MAX_PROCS, want, &v) != EXIT_OK)
      return EXIT_USAGE;
    procs = (unsigned)v;
  }

  int existed, status = check_dir(bench_dir, &existed);
  if (status != EXIT_OK)
    return status;
  sochdb *db;   /* held open throughout: the region and the daemon stay between workloads */
  int rc = sochdb_open(bench_dir, NULL, &db);
  if (rc != SOCHDB_OK) {
    snprintf(msg, sizeof msg, "cannot open %.200s", bench_dir);
    status = db_error(msg, rc);
    remove_database(bench_dir, "", existed);
    return status;
  }
  char region[4200];
  snprintf(region, sizeof region, "%s", sochdb_region_path(db));
  shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) {
    fprintf(stderr, "sochdb: mmap: %s\n", strerror(errno));
    status = EXIT_DB_ERROR;
  }
  progress_bar bar;
  memset(&bar, 0, sizeof bar);
  bar.enabled = isatty(STDERR_FILENO);
  result r[NWORKLOADS];
  const unsigned nprocs[NWORKLOADS] = { 1, procs, procs, 1 };
  for (unsigned w = 0; w < NWORKLOADS && status == EXIT_OK; w++) {
    status = run_workload(sh, w, nprocs[w], &bar, &r[w]);
    if (w == W_ASYNC)
      sh->async_keys = r[w].ops;
    if (w <= W_SYNC)
      sh->expect_keys += r[w].ops;
  }
  if (sh != MAP_FAILED)
    munmap(sh, sizeof *sh);
  sochdb_close(db);
  if (status == EXIT_OK)
    print_results(json, procs, r);
  if (!keep)
    remove_database(bench_dir, region, existed);
  return finish_stdout(status);
}
