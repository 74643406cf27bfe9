/*
** sochdb-colbench.c — the benchmark of columnar tables: how much less a scan
** of one column reads, decompresses and costs than a scan of every column,
** how many blocks a filter's min/max lets a scan skip, and the same queries
** on SQLite for comparison.
**
**   sochdb-colbench [--rows N] [--dir D] [--memtable-mb N] [--cache-mb N]
**                   [--runs N] [--no-compact] [--no-sqlite] [--keep]
**
** A table of 8 columns of mixed types, about 200 bytes a row:
**   id int64 (primary key), ts int64 (grows with id: a time stamp),
**   user int64 (random), price double, qty int64 (nullable, 10% NULL),
**   city string (one of 64), comment string (about 130 bytes of words),
**   score double
** is loaded with N rows (default 2,000,000) in transactions of 10,000, the
** daemon is left to flush and then asked for a full compaction (as `sochdb
** compact` does), and three queries run, each first cold, then --runs times
** warm (default 3):
**   Q1  scan every row, one column (qty)
**   Q8  scan every row, all 8 columns
**   QF  rows whose ts falls in a range of 1% of the rows (columns id, price)
** Cold: the database is closed, its daemon stopped, its shared region (and
** with it the block cache) removed and its files dropped from the page cache
** (posix_fadvise), then it is opened again and the query runs once: what it
** reads comes from the disk. Warm: everything is in the page cache (and what
** fits, in the block cache); the best of the runs counts. For each: rows, the
** times, and from the scan statistics the bytes read and decompressed and the
** blocks read and skipped. Then the same data in
** SQLite (one table, INTEGER PRIMARY KEY, no other index; journal off) and
** the same queries: time, and bytes read from its file (cache misses x page
** size). Checks printed at the end: Q1 reads <= 15% of Q8's bytes, Q1 is at
** least 4x faster than Q8, QF skips most blocks. Exit 1 if a query returns
** a wrong row count. The directory is removed at the end unless --keep.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sochdb.h"

#include "internal.h"   /* the region's full-compaction request, as `sochdb compact` makes it */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/file.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef SOCHDB_COLBENCH_SQLITE
#include <sqlite3.h>
#endif

#define NCOLS     8
#define BATCH     10000
#define NCITIES   64
#define NWORDS    512

struct options {
  uint64_t rows;
  const char *dir;
  unsigned memtable_mb, cache_mb, runs;
  int compact, sqlite, keep;
};

struct result {            /* one query */
  const char *name;
  uint64_t rows;
  double   seconds;        /* warm: the best of the runs */
  double   cold;           /* the cold run */
  sochdb_scan_stats st;    /* sochdb: of the first run; SQLite: bytes_read only */
};

static const sochdb_column COLS[NCOLS] = {
  { "id", SOCHDB_INT64, 0 },      { "ts", SOCHDB_INT64, 0 },    { "user", SOCHDB_INT64, 0 },
  { "price", SOCHDB_DOUBLE, 0 },  { "qty", SOCHDB_INT64, SOCHDB_NULLABLE },
  { "city", SOCHDB_STRING, 0 },   { "comment", SOCHDB_STRING, 0 }, { "score", SOCHDB_DOUBLE, 0 },
};
enum { C_ID, C_TS, C_USER, C_PRICE, C_QTY, C_CITY, C_COMMENT, C_SCORE };

static volatile uint64_t sink;   /* keeps the values read alive */
static char cities[NCITIES][16];
static char words[NWORDS][12];

static _Noreturn void die(const char *what, int rc)
{
  fprintf(stderr, "sochdb-colbench: %s: %s (%s)\n", what, sochdb_strerror(rc), sochdb_last_error());
  exit(2);
}

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Stop the daemon serving dir, waiting up to 10 s. */
static void stop_daemon(const char *dir) { sdb_daemon_stop(dir, SIGTERM, 10000); }

/* nftw: drop a file from the page cache (it must not be mapped anywhere). */
static int drop_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)ftw;
  if (flag == FTW_F && sb->st_size > 0) {
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      fdatasync(fd);
      posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      close(fd);
    }
  }
  return 0;
}

/* ---- the data --------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)   /* splitmix64: row i's pseudo-random numbers */
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static void make_vocabulary(void)
{
  static const char *const syll[] = { "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "vu", "ga", "he" };
  for (int i = 0; i < NCITIES; i++)
    snprintf(cities[i], sizeof cities[i], "%s%s%s", syll[i % 12], syll[(i / 12 + 3) % 12], syll[(i * 7) % 12]);
  for (int i = 0; i < NWORDS; i++) {
    uint64_t h = mix((uint64_t)i * 977);
    int n = 2 + (int)(h % 3);
    words[i][0] = '\0';
    for (int k = 0; k < n; k++)
      strcat(words[i], syll[(h >> (8 * k + 8)) % 12]);
  }
}

/* Row i; its comment goes into buf (room for 256 bytes). */
static void make_row(uint64_t i, sochdb_value *v, char *buf)
{
  uint64_t h = mix(i);
  memset(v, 0, NCOLS * sizeof *v);
  v[C_ID].i64 = (int64_t)i;
  v[C_TS].i64 = 1700000000000 + (int64_t)i * 1000 + (int64_t)(h % 1000);
  v[C_USER].i64 = (int64_t)(h >> 12) % 1000000;
  v[C_PRICE].f64 = (double)((h >> 20) % 100000) / 100.0;
  v[C_QTY].i64 = (int64_t)((h >> 40) % 100);
  v[C_QTY].is_null = (h >> 50) % 10 == 0;
  v[C_CITY].bytes = cities[(h >> 8) % NCITIES];
  v[C_CITY].len = strlen(v[C_CITY].bytes);
  size_t n = 0;
  for (uint64_t k = 0; n < 120; k++) {
    const char *w = words[mix(i * 64 + k) % NWORDS];
    size_t l = strlen(w);
    memcpy(buf + n, w, l);
    buf[n + l] = ' ';
    n += l + 1;
  }
  v[C_COMMENT].bytes = buf;
  v[C_COMMENT].len = n;
  v[C_SCORE].f64 = (double)(h % 1000003) / 1000003.0;
}

/* ---- sochdb ------------------------------------------------------------------------- */

static sochdb_table *create_table(sochdb *db)
{
  sochdb_txn *t;
  sochdb_table *tb;
  int rc = sochdb_txn_begin(db, 0, &t);
  if (rc || (rc = sochdb_table_create(t, "bench", COLS, NCOLS)) || (rc = sochdb_commit(t, SOCHDB_SYNC)))
    die("create the table", rc);
  if ((rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t)) || (rc = sochdb_table_open(t, "bench", COLS, NCOLS, &tb)))
    die("open the table", rc);
  sochdb_abort(t);
  return tb;
}

/* Rows [first, first + n) in one transaction, retried while the daemon is behind. */
static void load_batch(sochdb *db, sochdb_table *tb, uint64_t first, uint64_t n)
{
  for (int attempt = 0;; attempt++) {
    sochdb_txn *t;
    int rc = sochdb_txn_begin(db, 0, &t);
    for (uint64_t i = first; rc == SOCHDB_OK && i < first + n; i++) {
      sochdb_value v[NCOLS];
      char buf[256];
      make_row(i, v, buf);
      rc = sochdb_row_put(t, tb, v);
    }
    if (rc == SOCHDB_OK)
      rc = sochdb_commit(t, SOCHDB_ASYNC);
    else
      sochdb_abort(t);
    if (rc == SOCHDB_OK)
      return;
    if (rc != SOCHDB_BUSY || attempt == 100)
      die("load rows", rc);
    usleep(10000);
  }
}

static sochdb_stats stats(sochdb *db)
{
  sochdb_stats s;
  int rc = sochdb_stats_get(db, &s);
  if (rc)
    die("stats", rc);
  return s;
}

/* Until only the active memtable is left unflushed and compaction has no debt. */
static void settle(sochdb *db)
{
  for (int quiet = 0; quiet < 20;) {
    sochdb_stats s = stats(db);
    quiet = s.memtables_in_use <= 1 && s.compaction_debt_bytes == 0 && s.l0_files < 4 ? quiet + 1 : 0;
    usleep(50000);
  }
}

/* A full compaction by the daemon, as `sochdb compact` asks for one. */
static void compact(sochdb *db)
{
  uint64_t ticket = sdb_full_compaction_request(db);
  while (!sdb_full_compaction_done(db, ticket)) {
    sdb_daemon_ensure(db);
    usleep(50000);
  }
}

static double load(sochdb *db, sochdb_table *tb, const struct options *o)
{
  double t0 = now();
  for (uint64_t i = 0; i < o->rows; i += BATCH) {
    load_batch(db, tb, i, o->rows - i < BATCH ? o->rows - i : BATCH);
    if (isatty(STDERR_FILENO) && (i / BATCH) % 20 == 0)
      fprintf(stderr, "\rloading %" PRIu64 " / %" PRIu64 " rows", i, o->rows);
  }
  if (isatty(STDERR_FILENO))
    fputs("\r\033[K", stderr);
  return now() - t0;
}

/* One scan: rows, seconds, stats. */
static uint64_t run_scan(sochdb *db, sochdb_table *tb, const unsigned *cols, size_t ncols, const sochdb_filter *f,
                         double *secs, sochdb_scan_stats *st)
{
  double t0 = now();
  sochdb_txn *t;
  sochdb_scan *s;
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  if (rc || (rc = sochdb_table_scan(t, tb, NULL, NULL, cols, ncols, f, &s)))
    die("scan", rc);
  sochdb_value row[NCOLS];
  uint64_t n = 0, sum = 0;
  while ((rc = sochdb_scan_next(s, row)) == SOCHDB_OK) {
    n++;
    sum += (uint64_t)row[0].i64 + row[0].len;   /* touch the values */
  }
  if (rc != SOCHDB_NOTFOUND)
    die("scan", rc);
  sochdb_scan_close(s, st);
  sochdb_abort(t);
  *secs = now() - t0;
  sink += sum;
  return n;
}

static struct result best_of(sochdb *db, sochdb_table *tb, const char *name, const unsigned *cols, size_t ncols,
                             const sochdb_filter *f, unsigned runs)
{
  struct result r = { .name = name, .seconds = 1e30 };
  for (unsigned k = 0; k < runs; k++) {
    double s;
    sochdb_scan_stats st;
    r.rows = run_scan(db, tb, cols, ncols, f, &s, &st);
    if (k == 0)
      r.st = st;
    if (s < r.seconds)
      r.seconds = s;
  }
  return r;
}

/* The ts range of 1% of the rows, in the middle. */
static void filter_range(uint64_t rows, int64_t *lo, int64_t *hi)
{
  uint64_t first = rows / 2, n = rows / 100 ? rows / 100 : 1;
  *lo = 1700000000000 + (int64_t)first * 1000;
  *hi = 1700000000000 + (int64_t)(first + n) * 1000 - 1;
}

/* ---- SQLite --------------------------------------------------------------------------- */

#ifdef SOCHDB_COLBENCH_SQLITE
static void sql_die(sqlite3 *db, const char *what)
{
  fprintf(stderr, "sochdb-colbench: SQLite %s: %s\n", what, sqlite3_errmsg(db));
  exit(2);
}

static void sql_exec(sqlite3 *db, const char *sql)
{
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
    sql_die(db, sql);
}

static double sql_load(sqlite3 *db, uint64_t rows)
{
  double t0 = now();
  sql_exec(db, "CREATE TABLE bench (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, user INTEGER NOT NULL, "
               "price REAL NOT NULL, qty INTEGER, city TEXT NOT NULL, comment TEXT NOT NULL, score REAL NOT NULL)");
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "INSERT INTO bench VALUES (?,?,?,?,?,?,?,?)", -1, &st, NULL) != SQLITE_OK)
    sql_die(db, "prepare");
  for (uint64_t i = 0; i < rows; i++) {
    if (i % BATCH == 0)
      sql_exec(db, "BEGIN");
    sochdb_value v[NCOLS];
    char buf[256];
    make_row(i, v, buf);
    sqlite3_bind_int64(st, 1, v[C_ID].i64);
    sqlite3_bind_int64(st, 2, v[C_TS].i64);
    sqlite3_bind_int64(st, 3, v[C_USER].i64);
    sqlite3_bind_double(st, 4, v[C_PRICE].f64);
    if (v[C_QTY].is_null)
      sqlite3_bind_null(st, 5);
    else
      sqlite3_bind_int64(st, 5, v[C_QTY].i64);
    sqlite3_bind_text(st, 6, v[C_CITY].bytes, (int)v[C_CITY].len, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, v[C_COMMENT].bytes, (int)v[C_COMMENT].len, SQLITE_STATIC);
    sqlite3_bind_double(st, 8, v[C_SCORE].f64);
    if (sqlite3_step(st) != SQLITE_DONE)
      sql_die(db, "insert");
    sqlite3_reset(st);
    if (i % BATCH == BATCH - 1 || i == rows - 1)
      sql_exec(db, "COMMIT");
  }
  sqlite3_finalize(st);
  return now() - t0;
}

/* One query: rows, seconds; bytes read from the file (page cache misses). */
static uint64_t sql_query(sqlite3 *db, const char *sql, int64_t lo, int64_t hi, double *secs, uint64_t *bytes)
{
  int cur, high;
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_MISS, &cur, &high, 1);   /* reset */
  double t0 = now();
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    sql_die(db, "prepare");
  if (strchr(sql, '?')) {
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
  }
  uint64_t n = 0, sum = 0;
  int ncol = sqlite3_column_count(st), rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int c = 0; c < ncol; c++)
      sum += (uint64_t)sqlite3_column_bytes(st, c);   /* materialise every value */
    n++;
  }
  if (rc != SQLITE_DONE)
    sql_die(db, "query");
  sqlite3_finalize(st);
  *secs = now() - t0;
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_MISS, &cur, &high, 0);
  *bytes = (uint64_t)cur * 4096;
  sink += sum;
  return n;
}

static sqlite3 *sql_open(const char *path)
{
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    sql_die(db, "open");
  sql_exec(db, "PRAGMA journal_mode=OFF");
  sql_exec(db, "PRAGMA synchronous=OFF");
  sql_exec(db, "PRAGMA cache_size=-65536");   /* 64 MiB, like sochdb's default block cache */
  return db;
}

/* The query once cold (a new connection, the file dropped from the page
** cache), then the best of the warm runs; the bytes read are the cold run's. */
static struct result sql_best(sqlite3 **db, const char *path, const char *name, const char *sql, int64_t lo,
                              int64_t hi, unsigned runs)
{
  struct result r = { .name = name, .seconds = 1e30 };
  sqlite3_close(*db);
  nftw(path, drop_cb, 1, FTW_PHYS);
  *db = sql_open(path);
  r.rows = sql_query(*db, sql, lo, hi, &r.cold, &r.st.bytes_read);
  for (unsigned k = 0; k < runs; k++) {
    double s;
    uint64_t bytes;
    r.rows = sql_query(*db, sql, lo, hi, &s, &bytes);
    if (s < r.seconds)
      r.seconds = s;
  }
  return r;
}

static void run_sqlite(const char *dir, const struct options *o, struct result *out)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/bench.sqlite", dir);
  sqlite3 *db = sql_open(path);
  sql_exec(db, "PRAGMA page_size=4096");
  double secs = sql_load(db, o->rows);
  struct stat st;
  stat(path, &st);
  printf("SQLite: loaded %" PRIu64 " rows in %.1f s; file %.1f MiB\n", o->rows, secs,
         (double)st.st_size / 1048576.0);
  int64_t lo, hi;
  filter_range(o->rows, &lo, &hi);
  out[0] = sql_best(&db, path, "Q1 qty", "SELECT qty FROM bench", 0, 0, o->runs);
  out[1] = sql_best(&db, path, "Q8 all", "SELECT * FROM bench", 0, 0, o->runs);
  out[2] = sql_best(&db, path, "QF ts 1%", "SELECT id, price FROM bench WHERE ts BETWEEN ? AND ?", lo, hi, o->runs);
  sqlite3_close(db);
}
#endif

/* ---- report --------------------------------------------------------------------------- */

static double mib(uint64_t b) { return (double)b / 1048576.0; }

static void print_results(const char *engine, const struct result *r, int n, int scan_stats)
{
  printf("\n%-8s %-10s %10s %9s %9s %12s %14s %12s %8s %8s\n", engine, "query", "rows", "cold s", "warm s",
         "MiB read", "MiB decompr.", "blocks read", "skipped", "direct");
  for (int i = 0; i < n; i++) {
    printf("%-8s %-10s %10" PRIu64 " %9.3f %9.3f %12.1f", "", r[i].name, r[i].rows, r[i].cold, r[i].seconds,
           mib(r[i].st.bytes_read));
    if (scan_stats)
      printf(" %14.1f %12" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n", mib(r[i].st.bytes_decompressed),
             r[i].st.blocks_read, r[i].st.blocks_skipped, r[i].st.blocks_direct);
    else
      printf(" %14s %12s %8s %8s\n", "-", "-", "-", "-");
  }
}

static int check(const char *what, int ok)
{
  printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
  return ok;
}

static int report(const struct options *o, const struct result *r)
{
  double bytes_pct = 100.0 * (double)r[0].st.bytes_read / (double)(r[1].st.bytes_read ? r[1].st.bytes_read : 1);
  double speedup = r[0].seconds > 0 ? r[1].seconds / r[0].seconds : 0;
  double cold_speedup = r[0].cold > 0 ? r[1].cold / r[0].cold : 0;
  double skipped = r[2].st.blocks_read ? 100.0 * (double)r[2].st.blocks_skipped / (double)r[2].st.blocks_read : 0;
  printf("\nsochdb: Q1 reads %.1f%% of Q8's bytes (%.1f%% I/O reduction), %.1f%% of its decompressed bytes; "
         "Q1 is %.1fx faster than Q8 cold, %.1fx warm; QF skipped %.1f%% of the blocks it read the keys of\n",
         bytes_pct, 100.0 - bytes_pct,
         100.0 * (double)r[0].st.bytes_decompressed / (double)(r[1].st.bytes_decompressed ? r[1].st.bytes_decompressed : 1),
         cold_speedup, speedup, skipped);
  int ok = check("Q1 reads <= 15% of the bytes Q8 reads", bytes_pct <= 15.0);
  ok &= check("Q1 is at least 4x faster than Q8 (warm: the best of the runs)", speedup >= 4.0);
  ok &= check("QF skips most blocks by min/max", skipped > 50.0);
  uint64_t want = o->rows / 100 ? o->rows / 100 : 1;
  int rows_ok = r[0].rows == o->rows && r[1].rows == o->rows && r[2].rows == want;
  check("every query returned the right number of rows", rows_ok);
  (void)ok;                       /* the figures are reported; only wrong answers fail the run */
  return rows_ok ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------------ */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}

static void usage(void)
{
  fputs("usage: sochdb-colbench [--rows N] [--dir D] [--memtable-mb N] [--cache-mb N] [--runs N]\n"
        "                       [--no-compact] [--no-sqlite] [--keep]\n", stderr);
  exit(2);
}

static void parse(int argc, char **argv, struct options *o)
{
  *o = (struct options){ .rows = 2000000, .dir = "/var/tmp", .memtable_mb = 8, .runs = 3, .compact = 1, .sqlite = 1 };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--no-compact")) o->compact = 0;
    else if (!strcmp(a, "--no-sqlite")) o->sqlite = 0;
    else if (!strcmp(a, "--keep")) o->keep = 1;
    else if (!v) usage();
    else if (!strcmp(a, "--rows")) o->rows = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "--dir")) o->dir = v, i++;
    else if (!strcmp(a, "--memtable-mb")) o->memtable_mb = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--cache-mb")) o->cache_mb = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--runs")) o->runs = (unsigned)atoi(v), i++;
    else usage();
  }
  if (o->rows < 100 || o->runs == 0 || o->memtable_mb == 0)
    usage();
}

static sochdb *open_db(const char *dir, const struct options *o)
{
  sochdb_options opt;
  memset(&opt, 0, sizeof opt);
  opt.region_bytes = 1ull << 30;
  opt.memtable_bytes = (size_t)o->memtable_mb << 20;
  opt.cache_bytes = (size_t)o->cache_mb << 20;
  sochdb *db;
  int rc = sochdb_open(dir, &opt, &db);
  if (rc)
    die("open", rc);
  return db;
}

/* Close db, make everything cold (no daemon, no region, no page cache), reopen. */
static sochdb *reopen_cold(sochdb *db, const char *dir, const struct options *o)
{
  char region[4096];
  sochdb_close(db);
  stop_daemon(dir);
  if (shm_region_path(dir, region, sizeof region) == SOCHDB_OK)
    unlink(region);
  nftw(dir, drop_cb, 16, FTW_PHYS);
  return open_db(dir, o);
}

static sochdb_table *open_table(sochdb *db)
{
  sochdb_txn *t;
  sochdb_table *tb;
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  if (rc || (rc = sochdb_table_open(t, "bench", COLS, NCOLS, &tb)))
    die("open the table", rc);
  sochdb_abort(t);
  return tb;
}

/* Query q cold, then warm. */
static struct result measure(sochdb **db, sochdb_table **tb, const char *dir, const struct options *o,
                             const char *name, const unsigned *cols, size_t ncols, const sochdb_filter *f)
{
  sochdb_table_close(*tb);
  *db = reopen_cold(*db, dir, o);
  *tb = open_table(*db);
  sochdb_scan_stats st;
  double cold;
  run_scan(*db, *tb, cols, ncols, f, &cold, &st);
  struct result r = best_of(*db, *tb, name, cols, ncols, f, o->runs);
  r.cold = cold;
  r.st = st;
  return r;
}

static void run_sochdb(const char *dir, const struct options *o, struct result *r)
{
  sochdb *db = open_db(dir, o);
  sochdb_table *tb = create_table(db);
  double secs = load(db, tb, o);
  settle(db);
  if (o->compact)
    compact(db);
  sochdb_stats s = stats(db);
  printf("sochdb: loaded %" PRIu64 " rows in %.1f s (%.0f rows/s); %.1f MiB of rows, %.1f MiB in %u SSTables%s\n",
         o->rows, secs, (double)o->rows / secs, mib(s.user_bytes), mib(s.sst_bytes), s.sst_files,
         o->compact ? " after a full compaction" : "");
  unsigned one[] = { C_QTY }, some[] = { C_ID, C_PRICE };
  sochdb_filter f = { .column = C_TS, .op = SOCHDB_BETWEEN };
  filter_range(o->rows, &f.value.i64, &f.value2.i64);
  r[0] = measure(&db, &tb, dir, o, "Q1 qty", one, 1, NULL);
  r[1] = measure(&db, &tb, dir, o, "Q8 all", NULL, 0, NULL);
  r[2] = measure(&db, &tb, dir, o, "QF ts 1%", some, 2, &f);
  sochdb_table_close(tb);
  sochdb_close(db);
}

int main(int argc, char **argv)
{
  struct options o;
  parse(argc, argv, &o);
  make_vocabulary();
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sochdb-colbench.XXXXXX", o.dir);
  if (!mkdtemp(dir)) {
    fprintf(stderr, "sochdb-colbench: mkdtemp %s: %s\n", dir, strerror(errno));
    return 2;
  }
  printf("sochdb-colbench: %" PRIu64 " rows of 8 columns, in %s\n", o.rows, dir);
  struct result r[3], q[3];
  run_sochdb(dir, &o, r);
  print_results("sochdb", r, 3, 1);
  int status = report(&o, r);
#ifdef SOCHDB_COLBENCH_SQLITE
  if (o.sqlite) {
    run_sqlite(dir, &o, q);
    print_results("SQLite", q, 3, 0);
    printf("\nsochdb vs SQLite (SQLite time / sochdb time): cold Q1 %.1fx, Q8 %.1fx, QF %.1fx; "
           "warm Q1 %.1fx, Q8 %.1fx, QF %.1fx\n", q[0].cold / r[0].cold, q[1].cold / r[1].cold,
           q[2].cold / r[2].cold, q[0].seconds / r[0].seconds, q[1].seconds / r[1].seconds,
           q[2].seconds / r[2].seconds);
  }
#else
  (void)q;
  if (o.sqlite)
    printf("\n(SQLite comparison not built: libsqlite3 was not found)\n");
#endif
  if (!o.keep) {
    /* the region's name comes from the directory's identity: ask before removing it */
    char region[4096];
    int have_region = shm_region_path(dir, region, sizeof region) == SOCHDB_OK;
    stop_daemon(dir);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (have_region)
      unlink(region);
  }
  return status;
}
