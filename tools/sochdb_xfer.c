/*
** sochdb_xfer.c — `sochdb dump`, `sochdb load` and `sochdb backup`: moving
** every key-value pair of a database out, in, or into another database.
**
**   sochdb dump   DIR [FILE]        every pair, key order, one snapshot
**   sochdb load   DIR [FILE]        a dump into DIR, in batched transactions
**   sochdb backup DIR DEST          a logical copy of one snapshot into DEST
**
** The dump format round-trips arbitrary bytes:
**   the header line  "SOCHDB-DUMP 1\n", or "SOCHDB-DUMP 2\n" when the
**                    snapshot holds columnar tables
**   per pair         'R', key length (u32, big-endian), key bytes,
**                         value length (u32, big-endian), value bytes
**   per table key    'T', laid out as 'R' (version 2 only): the reserved
**                         keys (0xFF 0xFF ...) holding the tables' schemas,
**                         their next id and their rows, after every 'R'
**   the trailer      'E', the number of records (u64, big-endian)
** Nothing may follow the trailer; a file without it is truncated and
** refused. A dump without tables is version 1, byte for byte as before, so
** older tools load it. Table keys load as they are (ids included), so only
** into a database that holds no table yet, or whose tables' keys are all
** the dump's, value for value: what a load of the same dump cut short
** leaves, which a second load then finishes.
** Exit statuses as the rest of the tool (cli.h).
*/
#include "sochdb.h"

#include "cli.h"
#include "internal.h" /* sdb_iter_open, sdb_write: backup copies the columnar tables' keys too */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "rowfmt.h"   /* rowfmt_reserved: which records carry the columnar tables' keys */
#include "table.h"    /* sdb_table_record_check: a table record load writes as it is */

#define DUMP_MAGIC      "SOCHDB-DUMP 1\n"
#define DUMP_MAGIC_V2   "SOCHDB-DUMP 2\n"
#define DEFAULT_BATCH   1000ull
#define BATCH_BYTES     (8u << 20)    /* a batch also ends after this many bytes */
#define WRITE_ATTEMPTS  10
#define BUSY_ATTEMPTS   200

typedef struct xargs {
  const struct xcmd *cmd;
  const char *pos[3];
  int npos, json, help;
  const char *batch_arg;
  unsigned long long batch;
} xargs;

typedef struct xcmd {
  const char *name, *synopsis, *details;
  int min_args, max_args;        /* positional arguments, DIR included */
  int (*run)(const xargs *a);
} xcmd;

/* The columnar tables' keys of one snapshot, summed up: how many, and a hash
** of every key and value in order. Two snapshots with equal sums hold the
** same tables (a hash collision aside). */
typedef struct tables_sum {
  unsigned long long keys;
  XXH64_hash_t hash;
} tables_sum;

/* What a command did, for its summary. */
typedef struct totals {
  unsigned long long pairs, bytes, batches;
  unsigned long long unconfirmed;   /* pairs of a batch applied but not confirmed durable (SOCHDB_DAEMON) */
  unsigned long long table_records; /* columnar tables' keys among pairs (committed) */
  unsigned long long unconfirmed_tables;   /* and among unconfirmed */
  tables_sum tables_before;   /* the tables DIR held when the load began (every key the dump's) */
  int tables_changed;         /* a batch found them changed by another process, and stopped */
  struct timespec start;
} totals;

/* A path as a JSON string on f, escaped like put_json_string. */
static void json_string(FILE *f, const char *p)
{
  fputc('"', f);
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* {"command":..., "dir":..., OTHER:..., "pairs":N, "bytes":N, "batches":N, "seconds":S} */
static void print_summary(FILE *f, const xargs *a, const char *other, const char *path, const totals *t)
{
  double s = cli_seconds_since(&t->start);
  if (!a->json) {
    fprintf(f, "%s: %llu pairs, %llu bytes of keys and values, %.2f s\n", a->cmd->name, t->pairs, t->bytes, s);
    return;
  }
  fprintf(f, "{\"command\":\"%s\",\"dir\":", a->cmd->name);
  json_string(f, a->pos[0]);
  fprintf(f, ",\"%s\":", other);
  json_string(f, path);
  fprintf(f, ",\"pairs\":%llu,\"bytes\":%llu,\"batches\":%llu,\"seconds\":%.3f}\n", t->pairs, t->bytes, t->batches,
          s);
}

/* ------------------------------------------------------------- dump */

static void put_u32(unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (24 - 8 * i));
}

static int write_record(FILE *f, const void *k, size_t kl, const void *v, size_t vl)
{
  unsigned char head[5] = { rowfmt_reserved(k, kl) ? 'T' : 'R' }, vlen[4];
  put_u32(head + 1, (uint32_t)kl);
  put_u32(vlen, (uint32_t)vl);
  return fwrite(head, 1, 5, f) != 5 || fwrite(k, 1, kl, f) != kl || fwrite(vlen, 1, 4, f) != 4 ||
         (vl && fwrite(v, 1, vl, f) != vl);
}

static int write_trailer(FILE *f, unsigned long long n)
{
  unsigned char t[9] = { 'E' };
  for (int i = 0; i < 8; i++)
    t[1 + i] = (unsigned char)(n >> (56 - 8 * i));
  return fwrite(t, 1, 9, f) != 9;
}

/* transient: each pair is copied or written before the next step */
static const struct sdb_iter_opts every_key = { .transient = 1 };

/* The keys' order: bytes compared as unsigned, a key before its extensions. */
static int key_cmp(const void *a, size_t al, const void *b, size_t bl)
{
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : (al > bl) - (al < bl);
}

static void sum_add(XXH3_state_t *h, const void *k, size_t kl, const void *v, size_t vl)
{
  uint64_t lens[2] = { kl, vl };   /* lengths first: no two runs of pairs hash the same bytes */
  XXH3_64bits_update(h, lens, sizeof lens);
  XXH3_64bits_update(h, k, kl);
  XXH3_64bits_update(h, v, vl);
}

/* What the reserved key k names, for a message: "table NAME's schema", "the
** next table id", "a row of table ID". */
static void describe_table_key(const unsigned char *k, size_t kl, char *out, size_t n)
{
  uint32_t id;
  static const char schema[] = "schema/";
  const size_t prefix = 3 + sizeof schema - 1;   /* FF FF 00 "schema/" */
  if (kl > prefix && k[2] == ROWFMT_META && !memcmp(k + 3, schema, sizeof schema - 1))
    snprintf(out, n, "table %.*s's schema", (int)(kl - prefix > 200 ? 200 : kl - prefix), (const char *)k + prefix);
  else if (kl == 3 + sizeof "next_table_id" - 1 && !memcmp(k + 3, "next_table_id", kl - 3))
    snprintf(out, n, "the next table id");
  else if (rowfmt_key_table(k, kl, &id))
    snprintf(out, n, "a row of table id %u", id);
  else
    snprintf(out, n, "a key of the tables");
}

static int sum_equal(const tables_sum *a, const tables_sum *b)
{
  return a->keys == b->keys && (a->keys == 0 || a->hash == b->hash);
}

/* A visit's status for "stop here: the tables are not the ones sought" */
#define SUM_STOPPED (-1)

typedef int (*table_key_visit)(void *ctx, const void *k, size_t kl, const void *v, size_t vl);

/* Sums up the columnar tables' keys of t's snapshot into *sum, passing each,
** in key order, to visit (if not NULL), which returns EXIT_OK to go on. An
** exit status, or visit's SUM_STOPPED. */
static int sum_tables(sochdb_txn *t, tables_sum *sum, table_key_visit visit, void *ctx)
{
  XXH3_state_t *h = XXH3_createState();
  if (h == NULL)
    return db_error("out of memory", SOCHDB_NOMEM);
  sochdb_iter *it;
  int rc = sdb_iter_open(t, rowfmt_reserved_start, sizeof rowfmt_reserved_start, NULL, 0, &every_key, &it);
  if (rc != SOCHDB_OK) {
    XXH3_freeState(h);
    return db_error("cannot open an iterator", rc);
  }
  XXH3_64bits_reset(h);
  sum->keys = 0;
  int status = EXIT_OK;
  const void *k, *v;
  size_t kl, vl;
  while (status == EXIT_OK && (rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) {
    sum_add(h, k, kl, v, vl);
    sum->keys++;
    if (visit != NULL)
      status = visit(ctx, k, kl, v, vl);
  }
  sochdb_iter_close(it);
  sum->hash = XXH3_64bits_digest(h);
  XXH3_freeState(h);
  if (status == EXIT_OK && rc != SOCHDB_NOTFOUND)
    return db_error("reading the tables failed", rc);
  return status;
}

/* A visit that stops the sum past *ctx keys. */
static int stop_past(void *ctx, const void *k, size_t kl, const void *v, size_t vl)
{
  (void)k, (void)kl, (void)v, (void)vl;
  unsigned long long *left = ctx;
  return (*left)-- == 0 ? SUM_STOPPED : EXIT_OK;
}

/* 1 if t's snapshot holds a reserved key (a columnar table), 0 if not, or
** an exit status < 0 after a message. */
static int holds_tables(sochdb_txn *t)
{
  tables_sum sum;
  unsigned long long none = 0;
  int status = sum_tables(t, &sum, stop_past, &none);
  return status == SUM_STOPPED ? 1 : -status;
}

/* Every pair of t's snapshot into f, the columnar tables' keys included. */
static int dump_pairs(sochdb_txn *t, FILE *f, totals *tot)
{
  int tables = holds_tables(t);
  if (tables < 0)
    return -tables;
  sochdb_iter *it;
  int rc = sdb_iter_open(t, NULL, 0, NULL, 0, &every_key, &it);
  if (rc != SOCHDB_OK)
    return db_error("cannot open an iterator", rc);
  const void *k, *v;
  size_t kl, vl;
  int status = fputs(tables ? DUMP_MAGIC_V2 : DUMP_MAGIC, f) < 0 ? EXIT_DB_ERROR : EXIT_OK;
  while (status == EXIT_OK && (rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) {
    if (write_record(f, k, kl, v, vl))
      status = EXIT_DB_ERROR;
    tot->pairs++;
    tot->bytes += kl + vl;
  }
  sochdb_iter_close(it);
  if (status == EXIT_OK && rc != SOCHDB_NOTFOUND)
    return db_error("dump failed", rc);
  if (status == EXIT_OK && write_trailer(f, tot->pairs))
    status = EXIT_DB_ERROR;
  if (status != EXIT_OK)
    fprintf(stderr, "sochdb: writing the dump: %s\n", strerror(errno));
  return status;
}

/* Where a dump to FILE goes: a temporary file beside FILE, renamed over it
** only once complete and on disk. A dump that fails half-way (a full disk)
** must not destroy the good dump it was to replace, nor leave a truncated
** one under FILE's name; one that said it succeeded must survive a power
** cut. A FILE that exists and is not a regular file (a FIFO, a device, a
** symbolic link, /dev/stdout) is written in place, as before. */
typedef struct dump_out {
  FILE *f;
  const char *path;
  char tmp[PATH_MAX + 16];      /* "" when written in place */
} dump_out;

/* The mode a file created by fopen(path, "w") would get: FILE's own when
** it is replaced, else 0666 less the umask. */
static mode_t dump_mode(const struct stat *st, int exists)
{
  if (exists)
    return st->st_mode & 07777;
  mode_t mask = umask(0);
  umask(mask);
  return 0666 & ~mask;
}

static int dump_open(dump_out *o, const char *path)
{
  struct stat st;
  int exists = lstat(path, &st) == 0;
  o->path = path;
  o->tmp[0] = '\0';
  if (exists && !S_ISREG(st.st_mode)) {
    o->f = fopen(path, "wb");
  } else if (snprintf(o->tmp, sizeof o->tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof o->tmp) {
    errno = ENAMETOOLONG;
    o->tmp[0] = '\0';
    o->f = NULL;
  } else {
    int fd = mkstemp(o->tmp);
    if (fd >= 0 && fchmod(fd, dump_mode(&st, exists)) != 0) {
      int e = errno;
      close(fd);
      unlink(o->tmp);
      errno = e;
      fd = -1;
    }
    o->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (o->f == NULL && fd >= 0) {
      close(fd);
      unlink(o->tmp);
    }
    if (o->f == NULL)
      o->tmp[0] = '\0';
    /* A directory this user cannot write to, holding a FILE it can: as before */
    if (o->f == NULL && exists && (errno == EACCES || errno == EPERM || errno == EROFS))
      o->f = fopen(path, "wb");
  }
  if (o->f == NULL)
    fprintf(stderr, "sochdb: cannot create %s: %s\n", path, strerror(errno));
  return o->f != NULL ? EXIT_OK : EXIT_DB_ERROR;
}

/* The directory holding path, synced so that the rename survives a crash. */
static int sync_parent(const char *path)
{
  char dir[PATH_MAX + 16];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL)
    snprintf(dir, sizeof dir, ".");
  else
    slash[slash == dir] = '\0';    /* "/x" -> "/" */
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* Ends the dump: on success the file is flushed, synced and renamed over
** FILE; on failure the temporary file is removed and FILE left as it was. */
static int dump_close(dump_out *o, int status)
{
  int failed = status == EXIT_OK && (fflush(o->f) != 0 || (o->tmp[0] && fsync(fileno(o->f)) != 0));
  if (fclose(o->f) != 0)
    failed |= status == EXIT_OK;
  if (!failed && status == EXIT_OK && o->tmp[0] && (rename(o->tmp, o->path) != 0 || sync_parent(o->path) != 0))
    failed = 1;
  if (failed)
    fprintf(stderr, "sochdb: writing %s: %s\n", o->path, strerror(errno));
  if ((failed || status != EXIT_OK) && o->tmp[0])
    unlink(o->tmp);
  return failed ? EXIT_DB_ERROR : status;
}

static int run_dump(const xargs *a)
{
  const char *path = a->npos > 1 ? a->pos[1] : "-";
  int to_stdout = !strcmp(path, "-");
  if (to_stdout && isatty(STDOUT_FILENO)) {
    fputs("sochdb: dump writes binary data; give a FILE or redirect standard output\n", stderr);
    return EXIT_USAGE;
  }
  totals tot = { 0 };
  clock_gettime(CLOCK_MONOTONIC, &tot.start);
  sochdb *db;
  int status = cli_open_db(a->pos[0], -1, &db);
  if (status != EXIT_OK)
    return status;
  dump_out out = { stdout, path, "" };
  sochdb_txn *t = NULL;
  int rc = SOCHDB_OK;
  if (!to_stdout && (status = dump_open(&out, path)) != EXIT_OK) {
    /* said */
  } else if ((rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t)) != SOCHDB_OK) {
    status = db_error("cannot begin a transaction", rc);
  } else {
    status = dump_pairs(t, out.f, &tot);
    sochdb_commit(t, 0);
  }
  if (!to_stdout && out.f != NULL)
    status = dump_close(&out, status);
  /* stdout is buffered: its last bytes are written only now, and the
  ** summary must not claim a dump that did not reach its destination. */
  if (to_stdout && status == EXIT_OK && (fflush(stdout) != 0 || ferror(stdout))) {
    fprintf(stderr, "sochdb: writing the dump: %s\n", strerror(errno));
    status = EXIT_DB_ERROR;
  }
  sochdb_close(db);
  if (status == EXIT_OK)
    print_summary(to_stdout ? stderr : stdout, a, "file", path, &tot);
  return status;
}

/* ------------------------------------------------------------- batches */

/* Pairs waiting for one transaction: their bytes back to back. */
typedef struct batch {
  unsigned char *data;
  size_t len, cap;
  size_t *off;                  /* off[i]: record i's key length word */
  size_t n, ncap;
} batch;

static int batch_add(batch *b, const void *k, uint32_t kl, const void *v, uint32_t vl)
{
  size_t need = 8 + (size_t)kl + vl;
  if (b->len + need > b->cap) {
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + need)
      cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (p == NULL)
      return -1;
    b->data = p;
    b->cap = cap;
  }
  if (b->n == b->ncap) {
    size_t ncap = b->ncap ? b->ncap * 2 : 1024;
    size_t *o = realloc(b->off, ncap * sizeof *o);
    if (o == NULL)
      return -1;
    b->off = o;
    b->ncap = ncap;
  }
  unsigned char *p = b->data + b->len;
  b->off[b->n++] = b->len;
  memcpy(p, &kl, 4);
  memcpy(p + 4, &vl, 4);
  memcpy(p + 8, k, kl);
  if (vl)
    memcpy(p + 8 + kl, v, vl);
  b->len += need;
  return 0;
}

static void batch_pair(const batch *b, size_t i, const void **k, uint32_t *kl, const void **v, uint32_t *vl)
{
  const unsigned char *p = b->data + b->off[i];
  memcpy(kl, p, 4);
  memcpy(vl, p + 4, 4);
  *k = p + 8;
  *v = p + 8 + *kl;
}

static void sleep_ms(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* In t, before a batch holding tables' keys is written. Those keys keep
** their ids and names, and the tables DIR held when the load began were
** all the dump's (check_tables_of_dump), but another process may have
** created or written a table since: the pairs before the tables can take
** long. So the first batch of them must find DIR's tables as they were
** then (tot->tables_before), and every batch each meta key (a schema, the
** next table id) it writes absent or holding the dump's value. t writes
** those keys too, so a table created after t's snapshot makes t's commit
** conflict, and the retry sees it. */
static int check_tables_unchanged(sochdb_txn *t, const batch *b, totals *tot)
{
  int changed = 0;
  if (tot->table_records == 0) {   /* this run's first batch of them */
    tables_sum now;
    unsigned long long limit = tot->tables_before.keys;
    int status = sum_tables(t, &now, stop_past, &limit);
    if (status != EXIT_OK && status != SUM_STOPPED)
      return status;
    changed = status == SUM_STOPPED || !sum_equal(&now, &tot->tables_before);
  }
  for (size_t i = 0; i < b->n && !changed; i++) {
    const void *k, *v;
    uint32_t kl, vl;
    batch_pair(b, i, &k, &kl, &v, &vl);
    if (!rowfmt_reserved(k, kl) || ((const unsigned char *)k)[2] != ROWFMT_META)
      continue;
    const void *old;
    size_t oldlen;
    int rc = sdb_get(t, k, kl, &old, &oldlen);
    if (rc != SOCHDB_OK && rc != SOCHDB_NOTFOUND)
      return db_error("reading the tables failed", rc);
    changed = rc == SOCHDB_OK && (oldlen != vl || memcmp(old, v, vl) != 0);
  }
  if (!changed)
    return EXIT_OK;
  tot->tables_changed = 1;
  fputs("sochdb: the database has tables of its own now (created or changed while the load ran), and a "
        "dump's tables keep their names and ids: they are not loaded (load the dump into a new database)\n",
        stderr);
  return EXIT_USAGE;
}

/* Writes the batch in one transaction: a conflict (nothing applied) or BUSY
** (the daemon is behind) is retried. */
static int batch_commit(sochdb *db, batch *b, totals *tot)
{
  if (b->n == 0)
    return EXIT_OK;
  size_t table_records = 0;
  for (size_t i = 0; i < b->n; i++) {
    const void *k, *v;
    uint32_t kl, vl;
    batch_pair(b, i, &k, &kl, &v, &vl);
    table_records += rowfmt_reserved(k, kl) != 0;
  }
  int rc = SOCHDB_OK;
  for (int attempt = 0; attempt < WRITE_ATTEMPTS + BUSY_ATTEMPTS; attempt++) {
    sochdb_txn *t;
    if ((rc = sochdb_txn_begin(db, 0, &t)) != SOCHDB_OK)
      return db_error("cannot begin a transaction", rc);
    int status = table_records ? check_tables_unchanged(t, b, tot) : EXIT_OK;
    if (status != EXIT_OK) {
      sochdb_abort(t);
      return status;
    }
    for (size_t i = 0; i < b->n && rc == SOCHDB_OK; i++) {
      const void *k, *v;
      uint32_t kl, vl;
      batch_pair(b, i, &k, &kl, &v, &vl);
      /* the tables' keys go in as they are, through the engine's own write */
      rc = rowfmt_reserved(k, kl) ? sdb_write(t, k, kl, v, vl, 0) : sochdb_put(t, k, kl, v, vl);
    }
    if (rc != SOCHDB_OK) {
      sochdb_abort(t);
      return db_error("put failed", rc);
    }
    rc = sochdb_commit(t, SOCHDB_SYNC);
    if (rc == SOCHDB_OK)
      break;
    if (rc == SOCHDB_DAEMON) {   /* applied and visible: only its durability is unknown */
      tot->unconfirmed = b->n;
      tot->unconfirmed_tables = table_records;
    }
    if (rc != SOCHDB_CONFLICT && rc != SOCHDB_BUSY)
      return db_error("commit failed", rc);
    sleep_ms(rc == SOCHDB_BUSY ? 50 : 1);
  }
  if (rc != SOCHDB_OK)
    return db_error("gave up on a batch", rc);
  for (size_t i = 0; i < b->n; i++) {
    const void *k, *v;
    uint32_t kl, vl;
    batch_pair(b, i, &k, &kl, &v, &vl);
    tot->bytes += (unsigned long long)kl + vl;
  }
  tot->pairs += b->n;
  tot->table_records += table_records;
  tot->batches++;
  b->n = b->len = 0;
  return EXIT_OK;
}

static int batch_full(const batch *b, unsigned long long max)
{
  return b->n >= max || b->len >= BATCH_BYTES;
}

/* ------------------------------------------------------------- load */

typedef struct reader {
  FILE *f;
  const char *path;
  unsigned long long record;    /* records read so far */
  int version;                  /* the header's: 1, or 2 (table keys may follow the pairs) */
  struct sdb_table_records tables;   /* the schemas read so far, for the rows after them */
  unsigned char *k, *v;         /* SOCHDB_MAX_KEY and SOCHDB_MAX_VALUE bytes */
  int table_key;                /* the last record read is a 'T' */
  off_t at;                     /* the file's offset after the last record read (a regular file) */
  off_t tables_at;              /* where the first 'T' record starts, or -1 (found by the check pass) */
  unsigned long long tables_record;   /* and the records before it */
} reader;

static uint32_t get_u32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int bad_dump(const reader *r, const char *what)
{
  fprintf(stderr, "sochdb: %s: record %llu: %s\n", r->path, r->record + 1, what);
  return EXIT_USAGE;
}

/* The next record: 1 a pair in r->k/r->v, 0 the trailer (checked), or an exit status < 0. */
static int read_record(reader *r, uint32_t *kl, uint32_t *vl, int *status)
{
  unsigned char head[9];
  if (fread(head, 1, 1, r->f) != 1)
    return *status = bad_dump(r, "the dump ends early (no trailer): truncated?"), -1;
  if (head[0] == 'E') {
    if (fread(head + 1, 1, 8, r->f) != 8 || fgetc(r->f) != EOF)
      return *status = bad_dump(r, "a damaged trailer, or data after it"), -1;
    unsigned long long n = 0;
    for (int i = 1; i < 9; i++)
      n = n << 8 | head[i];
    if (n != r->record)
      return *status = bad_dump(r, "the trailer's pair count does not match the records"), -1;
    return 0;
  }
  int table_key = head[0] == 'T' && r->version >= 2;
  if ((head[0] != 'R' && !table_key) || fread(head + 1, 1, 4, r->f) != 4)
    return *status = bad_dump(r, "not a record: is this a sochdb dump?"), -1;
  *kl = get_u32(head + 1);
  if (*kl < 1 || *kl > SOCHDB_MAX_KEY || fread(r->k, 1, *kl, r->f) != *kl || fread(head, 1, 4, r->f) != 4)
    return *status = bad_dump(r, "a bad key length, or the file ends inside the record"), -1;
  *vl = get_u32(head);
  if (*vl > SOCHDB_MAX_VALUE || fread(r->v, 1, *vl, r->f) != *vl)
    return *status = bad_dump(r, "a bad value length, or the file ends inside the record"), -1;
  if (!table_key && rowfmt_reserved(r->k, *kl))
    return *status = bad_dump(r, "a pair's key starts with 0xFF 0xFF, which is reserved for the engine "
                                 "(columnar tables); a dump never holds one"), -1;
  /* Decoded as what its key says it is: written as it is, a damaged one
  ** would break its table, or every table creation, for good. */
  int rc = table_key ? sdb_table_record_check(&r->tables, r->k, *kl, r->v, *vl) : SOCHDB_OK;
  if (rc != SOCHDB_OK) {
    char what[600];
    snprintf(what, sizeof what, "%s (%s)",
             rc == SOCHDB_INVALID ? "a table record whose key is no columnar table's" : "a damaged table record",
             sochdb_last_error());
    return *status = bad_dump(r, what), -1;
  }
  r->record++;
  r->table_key = table_key;
  r->at += 1 + 4 + (off_t)*kl + 4 + (off_t)*vl;
  return 1;
}

/* "SOCHDB-DUMP " and a version above 2: a dump made by a newer sochdb
** is told apart from a file that is no dump at all, so that the operator
** knows which tool can load it. */
static int other_version(const char *magic, size_t n, const char *path)
{
  const size_t tag = sizeof "SOCHDB-DUMP " - 1;
  size_t digits = 0;
  while (tag + digits < n && magic[tag + digits] >= '0' && magic[tag + digits] <= '9')
    digits++;
  if (n < tag || memcmp(magic, DUMP_MAGIC, tag) != 0 || digits == 0 ||
      (digits == 1 && (magic[tag] == '1' || magic[tag] == '2')))
    return 0;   /* no dump, or a damaged header of a known version (CRLF line ends) */
  fprintf(stderr, "sochdb: %s is a sochdb dump of version %.*s, which this sochdb %d.%d.%d (it reads dump "
                  "versions 1 and 2) does not know: load it with the sochdb that made it\n",
          path, (int)digits, magic + tag, SOCHDB_VERSION_MAJOR, SOCHDB_VERSION_MINOR, SOCHDB_VERSION_PATCH);
  return 1;
}

static int read_magic(reader *r)
{
  _Static_assert(sizeof DUMP_MAGIC == sizeof DUMP_MAGIC_V2, "both headers are one length");
  char magic[sizeof DUMP_MAGIC - 1];
  size_t n = fread(magic, 1, sizeof magic, r->f);
  r->version = n != sizeof magic ? 0 : !memcmp(magic, DUMP_MAGIC, n) ? 1 : !memcmp(magic, DUMP_MAGIC_V2, n) ? 2 : 0;
  if (r->version == 0) {
    if (!other_version(magic, n, r->path))
      fprintf(stderr, "sochdb: %s is not a sochdb dump (version 1 or 2)\n", r->path);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

/* Reads r's file from offset at on: r->at is at, the caller sets r->record. */
static int read_again_at(reader *r, off_t at)
{
  if (fseeko(r->f, at, SEEK_SET) != 0) {
    fprintf(stderr, "sochdb: %s: cannot read it again: %s\n", r->path, strerror(errno));
    return EXIT_DB_ERROR;
  }
  r->at = at;
  return EXIT_OK;
}

/* The records after the dump's header (read_magic first), into db; with db
** NULL only checked (a regular file is checked before anything is written,
** so a bad record loads nothing). */
static int load_pass(reader *r, sochdb *db, const xargs *a, totals *tot, progress_bar *bar, off_t size)
{
  int status = EXIT_OK, more;
  batch b = { 0 };
  uint32_t kl, vl;
  off_t record_at = r->at;
  while (status == EXIT_OK && (more = read_record(r, &kl, &vl, &status)) > 0) {
    if (db == NULL && r->table_key && r->tables_at < 0) {
      r->tables_at = record_at;
      r->tables_record = r->record - 1;
    }
    record_at = r->at;
    if (db == NULL)
      continue;
    if (batch_add(&b, r->k, kl, r->v, vl) != 0) {
      fputs("sochdb: out of memory\n", stderr);
      status = EXIT_DB_ERROR;
    } else if (batch_full(&b, a->batch) && (status = batch_commit(db, &b, tot)) == EXIT_OK) {
      char tail[64];
      snprintf(tail, sizeof tail, "%llu pairs", tot->pairs);
      bar_draw(bar, "loading", (uint64_t)ftello(r->f), (uint64_t)size, tail);
    }
  }
  if (status == EXIT_OK && db != NULL)
    status = batch_commit(db, &b, tot);
  bar_clear(bar);
  free(b.data);
  free(b.off);
  return status;
}

/* The merge of DIR's table keys (in order) with the dump's 'T' records (in
** order, from r->tables_at): each of DIR's must be one of the dump's, with
** its value. */
typedef struct dump_match {
  reader *r;
  int more, status;             /* read_record's last result */
  uint32_t kl, vl;              /* the dump's record in r->k, r->v */
  const char *dir;
} dump_match;

static int match_table_key(void *ctx, const void *k, size_t kl, const void *v, size_t vl)
{
  dump_match *m = ctx;
  while (m->more > 0 && key_cmp(m->r->k, m->kl, k, kl) < 0)
    m->more = read_record(m->r, &m->kl, &m->vl, &m->status);
  if (m->more < 0)
    return m->status;
  if (m->more > 0 && key_cmp(m->r->k, m->kl, k, kl) == 0 && m->vl == vl && memcmp(m->r->v, v, vl) == 0)
    return EXIT_OK;
  char what[300];
  describe_table_key(k, kl, what, sizeof what);
  fprintf(stderr, "sochdb: the dump holds columnar tables, and %s already has tables the dump does not hold as "
                  "they are (%s %s): a dump's tables keep their names and ids, so they load only into a database "
                  "without any, or into one a load of the same dump left partly done (load it into a new one)\n",
          m->dir, what, m->more > 0 && key_cmp(m->r->k, m->kl, k, kl) == 0 ? "differs" : "is not in the dump");
  return EXIT_USAGE;
}

/* A dump's tables keep their ids and names, so they go only into a
** database whose tables, if any, are the dump's: merged into others, an
** id or a name would be two tables' at once. DIR's tables pass when every
** key of theirs is in the dump with the same value, which is what a load
** of this dump cut short leaves; loading the rest then finishes them. The
** comparison reads the dump's tables again from r->tables_at, so DIR with
** tables takes a regular FILE. What DIR holds is summed up into
** tot->tables_before for the first batch of tables to find again. */
static int check_tables_of_dump(sochdb *db, reader *r, int seekable, const char *dir, totals *tot)
{
  sochdb_txn *t;
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  if (rc != SOCHDB_OK)
    return db_error("cannot begin a transaction", rc);
  int tables = holds_tables(t);
  int status = tables < 0 ? -tables : EXIT_OK;
  if (status == EXIT_OK && tables && !seekable) {
    fprintf(stderr, "sochdb: the dump holds columnar tables, and %s already has tables of its own: a dump read "
                    "from a pipe cannot be compared with them before it is loaded (give the dump as a FILE, "
                    "which also finishes a load of it cut short, or load it into a new database)\n", dir);
    status = EXIT_USAGE;
  }
  off_t back = r->at;
  int moved = 0;
  dump_match m = { r, 0, EXIT_OK, 0, 0, dir };   /* more 0: no record (yet) */
  if (status == EXIT_OK && tables && r->tables_at >= 0 && (status = read_again_at(r, r->tables_at)) == EXIT_OK) {
    moved = 1;
    r->record = r->tables_record;
    m.more = read_record(r, &m.kl, &m.vl, &m.status);
    status = m.more < 0 ? m.status : EXIT_OK;
  }
  if (status == EXIT_OK)
    status = sum_tables(t, &tot->tables_before, tables ? match_table_key : NULL, &m);
  sochdb_commit(t, 0);
  if (moved) {   /* back to where the pairs start */
    sdb_table_records_free(&r->tables);
    r->record = 0;
    int again = read_again_at(r, back);
    status = status == EXIT_OK ? again : status;
  }
  return status;
}

static int load_from(reader *r, const xargs *a, totals *tot)
{
  struct stat st;
  int seekable = fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode);
  progress_bar bar;
  memset(&bar, 0, sizeof bar);
  bar.enabled = isatty(STDERR_FILENO) && seekable;
  /* Standard input may be a regular file read from an offset other than 0
  ** ({ read -r line; sochdb load DIR; } < FILE): the dump starts there. */
  off_t start = seekable ? ftello(r->f) : 0;
  if (start < 0)
    start = 0;
  if (seekable) {
    int status = read_magic(r);
    r->at = start + (off_t)(sizeof DUMP_MAGIC - 1);
    if (status == EXIT_OK)
      status = load_pass(r, NULL, a, tot, &bar, 0);   /* and finds r->tables_at */
    if (status == EXIT_OK)
      status = read_again_at(r, start);
    if (status != EXIT_OK)
      return status;
    r->record = 0;
    sdb_table_records_free(&r->tables);   /* read again from the start */
  }
  /* Before the database is opened (created, if missing): input that is not
  ** a dump must not leave a new, empty database behind. */
  int status = read_magic(r);
  if (status != EXIT_OK)
    return status;
  r->at = start + (off_t)(sizeof DUMP_MAGIC - 1);
  sochdb *db;
  status = cli_open_db(a->pos[0], 1, &db);
  if (status != EXIT_OK)
    return status;
  if (r->version >= 2)
    status = check_tables_of_dump(db, r, seekable, a->pos[0], tot);
  if (status == EXIT_OK)
    status = load_pass(r, db, a, tot, &bar, seekable ? st.st_size : 0);
  sochdb_close(db);
  if (status != EXIT_OK && tot->pairs > 0)
    fprintf(stderr, "sochdb: %llu pairs before the failure were loaded (committed)\n", tot->pairs);
  /* Tables in DIR make a second load of the dump from a pipe refused
  ** (check_tables_of_dump): "load it again" says from a file. */
  int tables_in = tot->table_records + tot->unconfirmed_tables > 0;
  if (status != EXIT_OK && tot->unconfirmed > 0)
    fprintf(stderr, "sochdb: the failed batch's %llu pairs were applied too, but no daemon confirmed them durable: "
                    "a crash may lose them, so load the dump again%s once a daemon runs\n", tot->unconfirmed,
            tables_in ? " (from a file)" : "");
  if (status != EXIT_OK && tables_in && tot->tables_changed)
    fprintf(stderr, "sochdb: the dump's columnar tables are only partly loaded into %s, whose tables changed "
                    "meanwhile: a load of the dump into it again is refused\n", a->pos[0]);
  else if (status != EXIT_OK && tables_in)
    fprintf(stderr, "sochdb: the dump's columnar tables are only partly loaded into %s: load the same dump into "
                    "it again, from a file, to finish them (or load it into a new database)\n", a->pos[0]);
  return status;
}

static int run_load(const xargs *a)
{
  const char *path = a->npos > 1 ? a->pos[1] : "-";
  reader r = { NULL, path, 0, 0, { NULL, 0, 0 }, malloc(SOCHDB_MAX_KEY), malloc(SOCHDB_MAX_VALUE), 0, 0, -1, 0 };
  totals tot = { 0 };
  clock_gettime(CLOCK_MONOTONIC, &tot.start);
  int status = EXIT_OK;
  if (r.k == NULL || r.v == NULL) {
    fputs("sochdb: out of memory\n", stderr);
    status = EXIT_DB_ERROR;
  } else if (!strcmp(path, "-") && isatty(STDIN_FILENO)) {
    fputs("sochdb: load reads a dump from standard input, which is a terminal; give a FILE\n", stderr);
    status = EXIT_USAGE;
  } else if ((r.f = strcmp(path, "-") ? fopen(path, "rb") : stdin) == NULL) {
    fprintf(stderr, "sochdb: cannot open %s: %s\n", path, strerror(errno));
    status = EXIT_DB_ERROR;
  } else {
    status = load_from(&r, a, &tot);
  }
  if (r.f != NULL && r.f != stdin)
    fclose(r.f);
  sdb_table_records_free(&r.tables);
  free(r.k);
  free(r.v);
  if (status == EXIT_OK)
    print_summary(stdout, a, "file", path, &tot);
  return status;
}

/* ------------------------------------------------------------- backup */

/* A counter on stderr for a terminal: backup knows no total in advance. */
static void backup_progress(const progress_bar *bar, const totals *tot)
{
  if (bar->enabled)
    fprintf(stderr, "\r\033[Kbackup: %llu pairs copied", tot->pairs);
}

/* Every pair of the snapshot, the columnar tables' included (their schemas
** and rows are keys from 0xFF 0xFF on, which sochdb_iter_open leaves out):
** a backup is the whole database. Their ids and schemas are copied as they
** are, so DEST's tables are the same tables; DEST is new, so none clashes. */
static int copy_pairs(sochdb_txn *snap, sochdb *dst, const xargs *a, totals *tot)
{
  sochdb_iter *it;
  /* transient: batch_add copies each pair before the next */
  static const struct sdb_iter_opts every_key = { .transient = 1 };
  int rc = sdb_iter_open(snap, NULL, 0, NULL, 0, &every_key, &it);
  if (rc != SOCHDB_OK)
    return db_error("cannot open an iterator", rc);
  progress_bar bar;
  memset(&bar, 0, sizeof bar);
  bar.enabled = isatty(STDERR_FILENO);
  batch b = { 0 };
  int status = EXIT_OK;
  const void *k, *v;
  size_t kl, vl;
  while (status == EXIT_OK && (rc = sochdb_iter_next(it, &k, &kl, &v, &vl)) == SOCHDB_OK) {
    if (batch_add(&b, k, (uint32_t)kl, v, (uint32_t)vl) != 0)
      status = db_error("out of memory", SOCHDB_NOMEM);
    else if (batch_full(&b, a->batch) && (status = batch_commit(dst, &b, tot)) == EXIT_OK)
      backup_progress(&bar, tot);
  }
  if (status == EXIT_OK && rc != SOCHDB_NOTFOUND)
    status = db_error("reading the source failed", rc);
  if (status == EXIT_OK)
    status = batch_commit(dst, &b, tot);
  if (bar.enabled)
    fputs("\r\033[K", stderr);
  sochdb_iter_close(it);
  free(b.data);
  free(b.off);
  return status;
}

/* DEST must not hold anything yet: a backup is never merged into data. */
static int check_dest(const char *dest)
{
  struct stat st;
  if (stat(dest, &st) != 0)
    return EXIT_OK;
  if (!S_ISDIR(st.st_mode)) {
    fprintf(stderr, "sochdb: %s exists and is not a directory\n", dest);
    return EXIT_USAGE;
  }
  /* Look, do not rmdir: an empty mount point cannot be removed (EBUSY), and a
  ** removed directory would come back with sochdb's mode, not the user's. */
  DIR *d = opendir(dest);
  if (d == NULL) {
    fprintf(stderr, "sochdb: cannot read %s: %s\n", dest, strerror(errno));
    return EXIT_DB_ERROR;
  }
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      empty = 0;
  closedir(d);
  if (empty)
    return EXIT_OK;
  fprintf(stderr, "sochdb: %s is not empty; backup writes into a new or empty directory only\n", dest);
  return EXIT_USAGE;
}

/* A finished backup that something else opened meanwhile (its daemon not
** stopped, or its region still attached) is still whole and durable: a
** warning, not a failure. */
static void release_dest(const char *dest)
{
  if (cli_release_db(dest) != EXIT_OK)
    fprintf(stderr, "sochdb: warning: the backup in %s is complete, but another process uses it (above): copy "
                    "its files only once none does\n", dest);
}

static int run_backup(const xargs *a)
{
  totals tot = { 0 };
  clock_gettime(CLOCK_MONOTONIC, &tot.start);
  int status = check_dest(a->pos[1]);
  sochdb *src = NULL, *dst = NULL;
  if (status == EXIT_OK)
    status = cli_open_db(a->pos[0], -1, &src);
  if (status == EXIT_OK)
    status = cli_open_db(a->pos[1], 1, &dst);
  sochdb_txn *snap = NULL;
  int rc;
  if (status == EXIT_OK && (rc = sochdb_txn_begin(src, SOCHDB_TXN_READONLY, &snap)) != SOCHDB_OK)
    status = db_error("cannot begin a transaction", rc);
  if (status == EXIT_OK)
    status = copy_pairs(snap, dst, a, &tot);
  if (snap != NULL)
    sochdb_commit(snap, 0);
  sochdb_close(dst);
  sochdb_close(src);
  if (status == EXIT_OK)
    release_dest(a->pos[1]);
  else if (dst != NULL)
    fprintf(stderr, "sochdb: %s is incomplete (it looks like a database, with part of the pairs): remove it "
                    "with 'sochdb destroy %s'\n", a->pos[1], a->pos[1]);
  if (status == EXIT_OK)
    print_summary(stdout, a, "dest", a->pos[1], &tot);
  return status;
}

/* ------------------------------------------------------------- commands */

static const xcmd xcmds[] = {
  { "dump", "DIR [FILE] [--json]",
    "Writes every key-value pair of DIR, in key order, and every columnar table,\n"
    "from one snapshot (other processes may write meanwhile), to FILE, or to\n"
    "standard output when FILE is absent or '-' (never to a terminal). The format\n"
    "round-trips arbitrary bytes: the line \"SOCHDB-DUMP 1\", then per pair 'R',\n"
    "the key's length (4 bytes, big-endian), the key, the value's length (4\n"
    "bytes), the value; then 'E' and the number of records (8 bytes, big-endian).\n"
    "When DIR holds columnar tables the line is \"SOCHDB-DUMP 2\" and the pairs are\n"
    "followed by 'T' records, laid out as 'R': the reserved keys (0xFF 0xFF ...)\n"
    "holding the tables' schemas and rows, counted in the summary's pairs (a\n"
    "tool that reads version 1 only refuses it by its version). FILE is written\n"
    "under a temporary name beside it (FILE.tmp-XXXXXX), synced, and renamed over FILE\n"
    "only when complete: a dump that fails leaves FILE as it was. A summary goes\n"
    "to stdout (to stderr when the dump does).\n\n"
    "  --json    print the summary as one JSON object\n",
    1, 2, run_dump },
  { "load", "DIR [FILE] [--batch N] [--json]",
    "Stores every pair of a dump (FILE, or standard input when FILE is absent or\n"
    "'-') into DIR, creating the database if needed, in transactions of N pairs\n"
    "(or fewer: one ends at the pair that takes it to 8 MiB), each durable when\n"
    "committed; existing keys are overwritten, others are kept. A dump's columnar\n"
    "tables (version 2) keep their names and ids, so they load only into a database\n"
    "that has no table yet, or whose tables are all the dump's, key for key and\n"
    "value for value: what a load of the same dump cut short leaves, which a load\n"
    "from FILE then finishes (else nothing is loaded). A regular FILE is checked\n"
    "whole before anything is written: a truncated or damaged dump, or a pair's\n"
    "key starting with 0xFF 0xFF (reserved for the engine), loads nothing. From a\n"
    "pipe (standard input, a FIFO, <(...)) a bad record stops the load, and the\n"
    "batches committed before it stay. A progress bar is drawn on stderr when it\n"
    "is a terminal and FILE a regular file.\n\n"
    "  --batch N   pairs per transaction (default 1000)\n"
    "  --json      print the summary as one JSON object\n",
    1, 2, run_load },
  { "backup", "DIR DEST [--batch N] [--json]",
    "Copies one consistent snapshot of DIR into a new database at DEST (which\n"
    "must not exist or be empty), while other processes go on writing to DIR.\n"
    "It is a LOGICAL copy, not a file copy: every key-value pair of one read-only\n"
    "snapshot, and every columnar table (its schema and rows), is written into\n"
    "DEST in transactions of N pairs or rows; DEST gets fresh files of its own.\n"
    "When it is done, DEST's\n"
    "daemon is stopped and its shared region removed: DEST is then a closed set\n"
    "of files, safe to copy (tar, rsync) or move. Until the command ends\n"
    "successfully DEST is incomplete, though it looks like a database: after a\n"
    "failure (or a kill, a reboot) remove it with 'sochdb destroy DEST'.\n\n"
    "  --batch N   pairs per transaction (default 1000)\n"
    "  --json      print the summary as one JSON object\n",
    2, 2, run_backup },
};
#define NXCMDS (sizeof xcmds / sizeof xcmds[0])

int xfer_is_command(const char *name)
{
  for (size_t i = 0; i < NXCMDS; i++)
    if (!strcmp(xcmds[i].name, name))
      return 1;
  return 0;
}

static int xusage(const xargs *a, const char *msg)
{
  fprintf(stderr, "sochdb: %s\nusage: sochdb %s %s\nTry 'sochdb %s --help'.\n", msg, a->cmd->name,
          a->cmd->synopsis, a->cmd->name);
  return EXIT_USAGE;
}

static int parse_xoption(xargs *a, int argc, char **argv, int *i)
{
  const char *arg = argv[*i];
  if (!strcmp(arg, "--json"))
    a->json = 1;
  else if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
    a->help = 1;
  else if (!strcmp(arg, "--batch") && strcmp(a->cmd->name, "dump") && *i + 1 < argc)
    a->batch_arg = argv[++*i];
  else if (!strncmp(arg, "--batch=", 8) && strcmp(a->cmd->name, "dump"))
    a->batch_arg = arg + 8;
  else {
    char msg[256];
    snprintf(msg, sizeof msg, "%s has no option '%.100s' (or it needs a value)", a->cmd->name, arg);
    return xusage(a, msg);
  }
  return EXIT_OK;
}

static int parse_batch(xargs *a)
{
  a->batch = DEFAULT_BATCH;
  if (a->batch_arg == NULL)
    return EXIT_OK;
  unsigned long long v;
  int status = cli_parse_number("--batch", a->batch_arg, 1, 65535, "a count of pairs from 1 to 65535", &v);
  a->batch = v;
  return status;
}

/* `sochdb [--json] dump|load|backup ...`: argv[0] is the command's name. */
int xfer_main(int argc, char **argv, int json)
{
  xargs a;
  memset(&a, 0, sizeof a);
  a.json = json;
  for (size_t i = 0; i < NXCMDS; i++)
    if (!strcmp(xcmds[i].name, argv[0]))
      a.cmd = &xcmds[i];
  int only_args = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    int status;
    if (!only_args && !strcmp(arg, "--"))
      only_args = 1;
    else if (!only_args && arg[0] == '-' && arg[1] && (status = parse_xoption(&a, argc, argv, &i)) != EXIT_OK)
      return status;
    else if ((only_args || arg[0] != '-' || !arg[1]) && a.npos == a.cmd->max_args)
      return xusage(&a, "too many arguments");
    else if (only_args || arg[0] != '-' || !arg[1])
      a.pos[a.npos++] = arg;
  }
  if (a.help) {
    printf("usage: sochdb %s %s\n\n%s", a.cmd->name, a.cmd->synopsis, a.cmd->details);
    return EXIT_OK;
  }
  if (a.npos < a.cmd->min_args)
    return xusage(&a, "missing arguments");
  int status = parse_batch(&a);
  return status != EXIT_OK ? status : a.cmd->run(&a);
}
