/*
** sochdb.c — the `sochdb` command-line tool: read and write the keys of a
** database directory from the shell, and watch the counters of its shared
** region while other processes use it.
**
**   sochdb [--json] COMMAND DIR [ARGS]     (sochdb --help lists the commands)
**
** Every command is one transaction, so a `get` or `scan` sees one consistent
** snapshot even while other processes write (`compact` asks the daemon for
** a full compaction and waits for it). Keys and values are taken from
** argv byte for byte; output escapes them only where a line-oriented format
** needs it. Exit status: 0 success, 1 not found, 2 usage error, 3 database
** or I/O error. The columnar table commands (`sochdb table ...`) are in
** sochdb_table.c; what both parts use is declared in cli.h.
*/
#include "sochdb.h"

#include "cli.h"

#include "check.h"   /* sdb_check_dir, for `sochdb check` (internal: the CLI links the static library) */
#include "internal.h" /* struct sochdb: the region header's compaction progress, for `sochdb compact`;
                      ** sdb_full_compaction_request, sdb_daemon_ensure */
#include "pagesize.h" /* shm_page_bytes, for `sochdb stats` */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


/* A write transaction that lost a conflict changed nothing, so running it
** again is always safe; a person at a shell has no better plan either. */
#define WRITE_ATTEMPTS 10

#define DEFAULT_INTERVAL_MS 1000ull
#define MAX_INTERVAL_MS     (24ull * 3600 * 1000)

#define DEFAULT_COMPACT_TIMEOUT_S 600ull
#define MAX_COMPACT_TIMEOUT_S     (7ull * 24 * 3600)

typedef struct args args;
typedef struct command command;

/* Everything the command line said, then what prepare() derived from it. */
struct args {
  const command *cmd;
  const char *pos[3];           /* DIR and up to two more */
  int literal[3];               /* pos[i] came after "--": a "-" there is the value "-", not stdin */
  int npos;
  int json, help, raw, keys_only, watch, escaped;
  const char *prefix, *start, *end, *limit_arg, *interval_arg, *timeout_arg;

  /* Derived before the database is opened. */
  const char *dir;
  const char *key;
  size_t klen;
  const void *value;
  size_t vlen;
  char *owned_value;            /* owns value when it came from stdin or --escaped */
  const char *lo, *hi;          /* scan range [lo, hi); NULL = unbounded */
  size_t lolen, hilen;
  char key_buf[SOCHDB_MAX_KEY], lo_buf[SOCHDB_MAX_KEY], hi_buf[SOCHDB_MAX_KEY];   /* --escaped, decoded */
  char prefix_end[SOCHDB_MAX_KEY];
  unsigned long long limit;     /* ULLONG_MAX = no limit */
  unsigned long long interval_ms;
  unsigned long long timeout_s;
};

enum { CMD_PUT = 1u, CMD_GET = 2u, CMD_DEL = 4u, CMD_SCAN = 8u, CMD_STATS = 16u, CMD_CHECK = 32u, CMD_COMPACT = 64u,
       CMD_DESTROY = 128u, CMD_ALL = 255u };

struct command {
  const char *name;
  unsigned id;                  /* its bit in option.commands */
  int nargs;                    /* arguments after DIR */
  int create_if_missing;        /* passed to sochdb_open: 1 or -1 */
  const char *synopsis;         /* what follows "sochdb NAME" */
  const char *summary;          /* one line in `sochdb --help` */
  const char *details;          /* the rest of `sochdb NAME --help` */
  int (*prepare)(args *a);      /* checks arguments before anything is opened; may be NULL */
  int (*run)(sochdb *db, const args *a);   /* NULL for check, which opens no database */
};

/* ---------------------------------------------------------------- output */

/* Reads sochdb_strerror() first: sochdb_last_error() is only guaranteed
** until this thread's next sochdb call, and strerror is one. */
int db_error(const char *what, int rc)
{
  const char *message = sochdb_strerror(rc);
  const char *detail = sochdb_last_error();
  if (detail[0] != '\0')
    fprintf(stderr, "sochdb: %s: %s (%s)\n", what, message, detail);
  else
    fprintf(stderr, "sochdb: %s: %s\n", what, message);
  return EXIT_DB_ERROR;
}

/* One entry must stay one line, so the bytes that would break a line or a
** tab-separated column, and any byte a terminal would interpret, are escaped. */
void put_escaped(FILE *f, const void *bytes, size_t n)
{
  const unsigned char *p = bytes;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = p[i];
    if (c == '\\')       fputs("\\\\", f);
    else if (c == '\t')  fputs("\\t", f);
    else if (c == '\n')  fputs("\\n", f);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\x%02x", c);
    else                 fputc(c, f);
  }
}

/* Keys and values are bytes, not UTF-8, so each byte >= 0x80 becomes
** \u0080..\u00ff: lossless, and valid JSON whatever the data is. */
void put_json_string(const void *bytes, size_t n)
{
  const unsigned char *p = bytes;
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20 || c >= 0x7f) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

static int key_not_found(const args *a)
{
  fputs("sochdb: key '", stderr);
  put_escaped(stderr, a->key, a->klen);
  fputs("' not found\n", stderr);
  return EXIT_NOT_FOUND;
}

/* stdout is buffered: a full disk or closed pipe only shows up here. */
int finish_stdout(int status)
{
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "sochdb: writing the output: %s\n", strerror(errno));
    return status == EXIT_OK ? EXIT_DB_ERROR : status;
  }
  return status;
}

/* --------------------------------------------------------- transactions */

/* The part of a command that runs inside its transaction. It reports its
** own errors, while sochdb_last_error() still describes them, and returns
** an exit status. */
typedef int (*txn_body)(sochdb_txn *t, const args *a);

static int run_txn(sochdb *db, const args *a, unsigned flags, txn_body body)
{
  for (int attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
    sochdb_txn *t;
    int rc = sochdb_txn_begin(db, flags, &t);
    if (rc != SOCHDB_OK)
      return db_error("cannot begin a transaction", rc);
    int status = body(t, a);
    if (status != EXIT_OK) {
      sochdb_abort(t);
      return status;
    }
    /* Read-only transactions end with a commit too: it is free, and an
    ** abort would be counted in the aborts statistic. */
    rc = sochdb_commit(t, SOCHDB_SYNC);
    if (rc == SOCHDB_OK)
      return EXIT_OK;
    if (rc != SOCHDB_CONFLICT)
      return db_error("commit failed", rc);
  }
  fprintf(stderr, "sochdb: gave up after %d attempts that each conflicted with another writer\n",
          WRITE_ATTEMPTS);
  return EXIT_DB_ERROR;
}

/* ------------------------------------------------------------ arguments */

static int check_key(const char *what, size_t n)
{
  if (n >= 1 && n <= SOCHDB_MAX_KEY)
    return EXIT_OK;
  fprintf(stderr, "sochdb: %s is %zu bytes; keys are 1 to %u bytes\n", what, n, SOCHDB_MAX_KEY);
  return EXIT_USAGE;
}

static int hex_digit(char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The inverse of put_escaped, for --escaped: a key as `scan` prints it can
** be given back to get, del or put, bytes an argument cannot carry (0x00)
** included. Writes at most cap bytes to out (none when out is NULL) and
** returns the decoded length, or -1 after a message when s holds an escape
** put_escaped never writes: a typo must not become a different key. */
static long long unescape(const char *what, const char *s, char *out, size_t cap)
{
  size_t n = 0;
  for (const char *p = s; *p != '\0'; n++) {
    int c = (unsigned char)*p++;
    if (c == '\\') {
      int hi, lo;
      if (*p == '\\' || *p == 't' || *p == 'n') {
        c = *p == 't' ? '\t' : *p == 'n' ? '\n' : '\\';
        p++;
      } else if (*p == 'x' && (hi = hex_digit(p[1])) >= 0 && (lo = hex_digit(p[2])) >= 0) {
        c = hi * 16 + lo;
        p += 3;
      } else {
        fprintf(stderr, "sochdb: %s has a bad escape at byte %zu: --escaped takes \\\\, \\t, \\n and "
                        "\\xNN (two hex digits), as scan prints them\n", what, (size_t)(p - 1 - s));
        return -1;
      }
    }
    if (out != NULL && n < cap)
      out[n] = (char)c;
  }
  return (long long)n;
}

/* Points bytes and len at arg, or with --escaped to its decoded bytes in buf
** (cap bytes; a longer result is only measured, for the caller's limit). */
static int argument_bytes(const args *a, const char *what, const char *arg, char *buf, size_t cap,
                          const char **bytes, size_t *len)
{
  if (!a->escaped) {
    *bytes = arg;
    *len = strlen(arg);
    return EXIT_OK;
  }
  long long n = unescape(what, arg, buf, cap);
  if (n < 0)
    return EXIT_USAGE;
  *bytes = buf;
  *len = (size_t)n;
  return EXIT_OK;
}

static int prepare_key(args *a)
{
  int status = argument_bytes(a, "the key", a->pos[1], a->key_buf, sizeof a->key_buf, &a->key, &a->klen);
  if (status != EXIT_OK)
    return status;
  if (a->klen >= 2 && (unsigned char)a->key[0] == 0xff && (unsigned char)a->key[1] == 0xff) {
    fputs("sochdb: keys starting with the bytes 0xFF 0xFF are reserved for columnar tables\n", stderr);
    return EXIT_USAGE;
  }
  return check_key("the key", a->klen);
}

/* Decimal only, whole string, within [min, max]: a typo must not turn
** into a silent default. `want` describes the range for the message. */
int cli_parse_number(const char *option, const char *s, unsigned long long min, unsigned long long max,
                     const char *want, unsigned long long *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno == ERANGE || v < min || v > max) {
    fprintf(stderr, "sochdb: %s wants %s, not '%s'\n", option, want, s);
    return EXIT_USAGE;
  }
  *out = v;
  return EXIT_OK;
}

/* Reads all of stdin. One byte past the limit is read so that a value of
** exactly SOCHDB_MAX_VALUE bytes is told apart from a larger one, which is
** refused: storing a truncated value would be silent data loss. */
static int read_stdin_value(args *a)
{
  const size_t limit = (size_t)SOCHDB_MAX_VALUE + 1;
  size_t cap = 64 * 1024, len = 0;
  char *buf = malloc(cap);
  if (buf == NULL) {
    fputs("sochdb: out of memory\n", stderr);
    return EXIT_DB_ERROR;
  }
  while (!feof(stdin) && len < limit) {
    if (len == cap) {
      size_t grown = cap * 2 < limit ? cap * 2 : limit;
      char *bigger = realloc(buf, grown);
      if (bigger == NULL) {
        free(buf);
        fputs("sochdb: out of memory\n", stderr);
        return EXIT_DB_ERROR;
      }
      buf = bigger;
      cap = grown;
    }
    len += fread(buf + len, 1, cap - len, stdin);
    if (ferror(stdin)) {
      fprintf(stderr, "sochdb: reading standard input: %s\n", strerror(errno));
      free(buf);
      return EXIT_DB_ERROR;
    }
  }
  if (len == limit) {
    fprintf(stderr, "sochdb: the value on standard input is larger than the limit of %u bytes\n",
            SOCHDB_MAX_VALUE);
    free(buf);
    return EXIT_USAGE;
  }
  a->owned_value = buf;
  a->value = buf;
  a->vlen = len;
  return EXIT_OK;
}

static int prepare_put(args *a)
{
  int status = prepare_key(a);
  if (status != EXIT_OK)
    return status;
  if (strcmp(a->pos[2], "-") == 0 && !a->literal[2])
    return read_stdin_value(a);
  if (!a->escaped) {
    a->value = a->pos[2];
    a->vlen = strlen(a->pos[2]);
    return EXIT_OK;
  }
  size_t cap = strlen(a->pos[2]) + 1;   /* decoding never lengthens */
  if ((a->owned_value = malloc(cap)) == NULL) {
    fputs("sochdb: out of memory\n", stderr);
    return EXIT_DB_ERROR;
  }
  const char *value = NULL;
  status = argument_bytes(a, "the value", a->pos[2], a->owned_value, cap, &value, &a->vlen);
  a->value = value;
  return status;
}

static int prepare_get(args *a)
{
  if (a->raw && a->json) {
    fputs("sochdb: get takes --raw or --json, not both\n", stderr);
    return EXIT_USAGE;
  }
  return prepare_key(a);
}

/* The smallest key greater than every key that starts with p. Trailing
** 0xff bytes cannot be incremented, and dropping them loses nothing: every
** key starting with "a\xff" is still below "b". Returns 0 when p is empty
** or all 0xff, where no such key exists and the range has no end. */
static size_t prefix_successor(const char *p, size_t n, char *out)
{
  while (n > 0 && (unsigned char)p[n - 1] == 0xff)
    n--;
  if (n == 0)
    return 0;
  memcpy(out, p, n);
  out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
  return n;
}

static int prepare_bound(const args *a, const char *option, const char *value, char *buf, const char **bound,
                         size_t *len)
{
  if (value == NULL)
    return EXIT_OK;
  const char *bytes;
  int status = argument_bytes(a, option, value, buf, SOCHDB_MAX_KEY, &bytes, len);
  if (status != EXIT_OK)
    return status;
  if (*len > SOCHDB_MAX_KEY)
    return check_key(option, *len);
  *bound = *len > 0 ? bytes : NULL;   /* an empty bound means "unbounded" to sochdb_iter_open */
  return EXIT_OK;
}

static int prepare_scan(args *a)
{
  int status;
  a->limit = ULLONG_MAX;
  if (a->limit_arg != NULL) {
    status = cli_parse_number("--limit", a->limit_arg, 0, ULLONG_MAX - 1, "a count of entries", &a->limit);
    if (status != EXIT_OK)
      return status;
  }
  if (a->prefix && (a->start || a->end)) {
    fputs("sochdb: --prefix sets both ends of the range; it cannot be combined with --start or --end\n", stderr);
    return EXIT_USAGE;
  }
  if (a->prefix) {
    if ((status = prepare_bound(a, "--prefix", a->prefix, a->lo_buf, &a->lo, &a->lolen)) != EXIT_OK)
      return status;
    a->hilen = prefix_successor(a->lo, a->lolen, a->prefix_end);
    a->hi = a->hilen > 0 ? a->prefix_end : NULL;
    return EXIT_OK;
  }
  if ((status = prepare_bound(a, "--start", a->start, a->lo_buf, &a->lo, &a->lolen)) != EXIT_OK)
    return status;
  return prepare_bound(a, "--end", a->end, a->hi_buf, &a->hi, &a->hilen);
}

static int prepare_stats(args *a)
{
  a->interval_ms = DEFAULT_INTERVAL_MS;
  if (a->interval_arg == NULL)
    return EXIT_OK;
  if (!a->watch) {
    fputs("sochdb: --interval only makes sense with --watch\n", stderr);
    return EXIT_USAGE;
  }
  return cli_parse_number("--interval", a->interval_arg, 1, MAX_INTERVAL_MS,
                      "milliseconds from 1 to 86400000 (a day)", &a->interval_ms);
}

static int prepare_compact(args *a)
{
  a->timeout_s = DEFAULT_COMPACT_TIMEOUT_S;
  if (a->timeout_arg == NULL)
    return EXIT_OK;
  return cli_parse_number("--timeout", a->timeout_arg, 1, MAX_COMPACT_TIMEOUT_S,
                      "seconds from 1 to 604800 (a week)", &a->timeout_s);
}

/* ------------------------------------------------------- put, get, del */

static int put_body(sochdb_txn *t, const args *a)
{
  int rc = sochdb_put(t, a->key, a->klen, a->value, a->vlen);
  return rc == SOCHDB_OK ? EXIT_OK : db_error("put failed", rc);
}

static int run_put(sochdb *db, const args *a)
{
  return run_txn(db, a, 0, put_body);
}

static void print_value(const args *a, const void *val, size_t vlen)
{
  if (a->json) {
    fputs("{\"key\":", stdout);
    put_json_string(a->key, a->klen);
    fputs(",\"value\":", stdout);
    put_json_string(val, vlen);
    fputs("}\n", stdout);
    return;
  }
  fwrite(val, 1, vlen, stdout);
  if (!a->raw)
    putchar('\n');
}

static int get_body(sochdb_txn *t, const args *a)
{
  const void *val;
  size_t vlen;
  int rc = sochdb_get(t, a->key, a->klen, &val, &vlen);
  if (rc == SOCHDB_NOTFOUND)
    return key_not_found(a);
  if (rc != SOCHDB_OK)
    return db_error("get failed", rc);
  print_value(a, val, vlen);   /* now: val is only valid until the transaction ends */
  return EXIT_OK;
}

static int run_get(sochdb *db, const args *a)
{
  return run_txn(db, a, SOCHDB_TXN_READONLY, get_body);
}

/* Reading first, in the same transaction, is what lets del tell the user
** that nothing was there; a delete of an absent key would succeed silently. */
static int del_body(sochdb_txn *t, const args *a)
{
  const void *val;
  size_t vlen;
  int rc = sochdb_get(t, a->key, a->klen, &val, &vlen);
  if (rc == SOCHDB_NOTFOUND)
    return key_not_found(a);
  if (rc == SOCHDB_OK)
    rc = sochdb_delete(t, a->key, a->klen);
  return rc == SOCHDB_OK ? EXIT_OK : db_error("delete failed", rc);
}

static int run_del(sochdb *db, const args *a)
{
  return run_txn(db, a, 0, del_body);
}

/* ----------------------------------------------------------------- scan */

static void print_entry(const args *a, unsigned long long index,
                        const void *key, size_t klen, const void *val, size_t vlen)
{
  if (a->json) {
    fputs(index == 0 ? "\n{\"key\":" : ",\n{\"key\":", stdout);
    put_json_string(key, klen);
    if (!a->keys_only) {
      fputs(",\"value\":", stdout);
      put_json_string(val, vlen);
    }
    putchar('}');
    return;
  }
  put_escaped(stdout, key, klen);
  if (!a->keys_only) {
    putchar('\t');
    put_escaped(stdout, val, vlen);
  }
  putchar('\n');
}

static int scan_body(sochdb_txn *t, const args *a)
{
  sochdb_iter *it;
  /* transient: each entry is printed before the next; a public iterator
  ** would keep a copy of every compressed one until the scan's end */
  int rc = sochdb_iter_open_transient(t, a->lo, a->lolen, a->hi, a->hilen, &it);
  if (rc != SOCHDB_OK)
    return db_error("cannot open an iterator", rc);

  if (a->json)
    putchar('[');
  unsigned long long n = 0;
  const void *key, *val;
  size_t klen, vlen;
  while (n < a->limit && (rc = sochdb_iter_next(it, &key, &klen, &val, &vlen)) == SOCHDB_OK)
    print_entry(a, n++, key, klen, val, vlen);
  int status = (rc == SOCHDB_OK || rc == SOCHDB_NOTFOUND) ? EXIT_OK : db_error("scan failed", rc);
  sochdb_iter_close(it);
  if (a->json)
    fputs(n > 0 ? "\n]\n" : "]\n", stdout);
  return status;
}

static int run_scan(sochdb *db, const args *a)
{
  return run_txn(db, a, SOCHDB_TXN_READONLY, scan_body);
}

/* ---------------------------------------------------------------- stats */

/* Every field of struct sochdb_stats, in order. The assertion below fails
** to compile when the struct gains a field this list does not name. */
#define STATS_FIELDS(X) \
  X(region_bytes) X(memtable_bytes) X(memtables_total) X(memtables_in_use) \
  X(memtable_used_bytes) X(processes_attached) X(transactions_open) X(last_commit_seq) \
  X(commits) X(conflicts) X(aborts) X(keys_written) X(processes_reaped) \
  X(dead_txns_rolled_back) X(oldest_snapshot) X(durable_seq) X(wal_groups) X(wal_records) \
  X(wal_bytes) X(daemon_running) X(wal_segments) X(user_bytes) X(flushes) X(flush_bytes) \
  X(compactions) X(compact_bytes_read) X(compact_bytes_written) X(compaction_debt_bytes) \
  X(wal_segments_removed) X(sst_files) X(l0_files) X(sst_bytes) X(cache_bytes) X(cache_hits) \
  X(cache_misses) X(cache_inserts) X(cache_evictions) X(write_stalls) X(write_stall_us) \
  X(compact_throttle_us) X(l0_stops) X(l0_stop_us)

#define STATS_FIELD_SIZE(f) + sizeof(((sochdb_stats *)0)->f)
_Static_assert(0 STATS_FIELDS(STATS_FIELD_SIZE) == sizeof(sochdb_stats),
               "STATS_FIELDS misses a field of struct sochdb_stats");

#define STATS_FIELD_ENTRY(f) { #f, offsetof(sochdb_stats, f), sizeof(((sochdb_stats *)0)->f) },
static const struct stats_field {
  const char *name;
  size_t offset, size;
} stats_fields[] = { STATS_FIELDS(STATS_FIELD_ENTRY) };

/* Fields are uint32_t or uint64_t; memcpy reads either without aliasing games. */
static uint64_t stats_value(const sochdb_stats *s, const struct stats_field *f)
{
  const char *p = (const char *)s + f->offset;
  if (f->size == sizeof(uint32_t)) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
  }
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Wide enough for the longest label, "dead txns rolled back", plus a gap. */
#define LABEL_WIDTH 24

/* Text labels are the field names with spaces, so that a reader of the
** text output can find the same field in the --json output and the header. */
static void print_label(const char *name)
{
  int n = 0;
  for (; name[n] != '\0'; n++)
    putchar(name[n] == '_' ? ' ' : name[n]);
  int pad = LABEL_WIDTH - n;
  printf("%*s", pad > 1 ? pad : 1, "");
}

/* What --watch adds to the counters: per-second rates and ratios over the
** last interval, and how full the live memtables are. NO_FIGURE where it is
** unknown: every interval figure on the first sample, the group-commit size
** when no WAL group was written, the hit rate when the cache was not used. */
#define NO_FIGURE (-1.0)
typedef struct rates {
  double commits, conflicts;    /* per second */
  double fsyncs;                /* WAL groups written per second: one fdatasync each */
  double group_commit;          /* commits per WAL group */
  double cache_hit_pct;         /* block-cache hits per lookup */
  double memtable_fill_pct;     /* used bytes / capacity of the live memtables (from one sample) */
  double stall_ms;              /* milliseconds writers waited for the daemon, per second (write_stall_us:
                                ** over 1000 when several waited at once) */
} rates;

/* The derived figures, in the order printed. */
#define WATCH_FIGURES 7
static void watch_figures(const rates *r, const char *names[WATCH_FIGURES], double values[WATCH_FIGURES])
{
  static const char *const n[WATCH_FIGURES] = { "commits_per_sec",  "conflicts_per_sec", "fsyncs_per_sec",
                                                "avg_group_commit", "cache_hit_pct",     "memtable_fill_pct",
                                                "stall_ms_per_sec" };
  const double v[WATCH_FIGURES] = { r->commits,      r->conflicts,     r->fsyncs,  r->group_commit,
                                    r->cache_hit_pct, r->memtable_fill_pct, r->stall_ms };
  for (int i = 0; i < WATCH_FIGURES; i++) {
    names[i] = n[i];
    values[i] = v[i];
  }
}

/* The totals of every columnar table scan (sochdb_scan_stats_get, apart from
** struct sochdb_stats), named as in the --json output. 0 if unreadable. */
#define SCAN_FIGURES 7
static int scan_figures(sochdb *db, const char *names[SCAN_FIGURES], uint64_t values[SCAN_FIGURES])
{
  static const char *const n[SCAN_FIGURES] = { "table_scans",        "scan_rows",           "scan_blocks_read",
                                               "scan_blocks_skipped", "scan_blocks_direct", "scan_bytes_read",
                                               "scan_bytes_decompressed" };
  sochdb_scan_stats st;
  if (sochdb_scan_stats_get(db, &st) != SOCHDB_OK)
    return 0;
  const uint64_t v[SCAN_FIGURES] = { st.scans,         st.rows,       st.blocks_read,        st.blocks_skipped,
                                     st.blocks_direct, st.bytes_read, st.bytes_decompressed };
  for (int i = 0; i < SCAN_FIGURES; i++) {
    names[i] = n[i];
    values[i] = v[i];
  }
  return 1;
}

static void print_stats_text(sochdb *db, const sochdb_stats *s, const rates *r)
{
  for (size_t i = 0; i < sizeof stats_fields / sizeof stats_fields[0]; i++) {
    print_label(stats_fields[i].name);
    printf("%llu\n", (unsigned long long)stats_value(s, &stats_fields[i]));
  }
  const char *scan_names[SCAN_FIGURES];
  uint64_t scan_values[SCAN_FIGURES];
  int scans = scan_figures(db, scan_names, scan_values);
  for (int i = 0; scans && i < SCAN_FIGURES; i++) {
    print_label(scan_names[i]);
    printf("%llu\n", (unsigned long long)scan_values[i]);
  }
  print_label("region_path");
  printf("%s\n", sochdb_region_path(db));
  char why[192];
  uint64_t page = shm_page_bytes(sochdb_region_path(db), why, sizeof why);
  print_label("region_pages");
  printf("%s (%s)\n", page == SHM_HUGE_PAGE_BYTES ? "2 MiB" : "4 KiB", why);
  if (r == NULL)
    return;
  const char *names[WATCH_FIGURES];
  double values[WATCH_FIGURES];
  watch_figures(r, names, values);
  for (int i = 0; i < WATCH_FIGURES; i++) {
    print_label(names[i]);
    if (values[i] >= 0)
      printf("%.1f\n", values[i]);
    else
      puts("-");
  }
}

static void print_stats_json(sochdb *db, const sochdb_stats *s, const rates *r)
{
  putchar('{');
  for (size_t i = 0; i < sizeof stats_fields / sizeof stats_fields[0]; i++)
    printf("\"%s\":%llu,", stats_fields[i].name, (unsigned long long)stats_value(s, &stats_fields[i]));
  const char *scan_names[SCAN_FIGURES];
  uint64_t scan_values[SCAN_FIGURES];
  int scans = scan_figures(db, scan_names, scan_values);
  for (int i = 0; scans && i < SCAN_FIGURES; i++)
    printf("\"%s\":%llu,", scan_names[i], (unsigned long long)scan_values[i]);
  const char *path = sochdb_region_path(db);
  fputs("\"region_path\":", stdout);
  put_json_string(path, strlen(path));
  char why[192];
  printf(",\"region_page_bytes\":%llu,\"region_pages\":", (unsigned long long)shm_page_bytes(path, why, sizeof why));
  put_json_string(why, strlen(why));
  if (r != NULL) {
    const char *names[WATCH_FIGURES];
    double values[WATCH_FIGURES];
    watch_figures(r, names, values);
    for (int i = 0; i < WATCH_FIGURES; i++) {
      if (values[i] >= 0)
        printf(",\"%s\":%.1f", names[i], values[i]);
      else
        printf(",\"%s\":null", names[i]);
    }
  }
  fputs("}\n", stdout);
}

static void print_stats(sochdb *db, const args *a, const sochdb_stats *s, const rates *r)
{
  if (a->json)
    print_stats_json(db, s, r);
  else
    print_stats_text(db, s, r);
}

typedef struct sample {
  sochdb_stats stats;
  struct timespec at;
} sample;

static int take_sample(sochdb *db, sample *out)
{
  int rc = sochdb_stats_get(db, &out->stats);
  if (rc != SOCHDB_OK)
    return db_error("cannot read the statistics", rc);
  clock_gettime(CLOCK_MONOTONIC, &out->at);
  return EXIT_OK;
}

/* What a counter grew by between two samples. A counter that went down
** means the region was rebuilt from the directory and its counters
** restarted; count from zero then. */
static uint64_t delta(uint64_t before, uint64_t after)
{
  return after >= before ? after - before : after;
}

static double rate(uint64_t before, uint64_t after, double seconds)
{
  return seconds > 0 ? (double)delta(before, after) / seconds : 0.0;
}

/* part / whole, as a share (or a percentage with scale 100); NO_FIGURE when whole is 0. */
static double ratio(uint64_t part, uint64_t whole, double scale)
{
  return whole ? (double)part * scale / (double)whole : NO_FIGURE;
}

static double memtable_fill_pct(const sochdb_stats *s)
{
  uint64_t capacity = (uint64_t)s->memtables_in_use * s->memtable_bytes;
  double pct = ratio(s->memtable_used_bytes, capacity, 100.0);
  return pct < 0 ? 0.0 : pct > 100.0 ? 100.0 : pct;
}

/* The figures of one sample; prev NULL on the first. */
static rates rates_between(const sample *prev, const sample *cur)
{
  rates r = { NO_FIGURE, NO_FIGURE, NO_FIGURE, NO_FIGURE, NO_FIGURE, memtable_fill_pct(&cur->stats), NO_FIGURE };
  if (prev == NULL)
    return r;
  const sochdb_stats *a = &prev->stats, *b = &cur->stats;
  double seconds = (double)(cur->at.tv_sec - prev->at.tv_sec) + (double)(cur->at.tv_nsec - prev->at.tv_nsec) / 1e9;
  r.commits = rate(a->commits, b->commits, seconds);
  r.conflicts = rate(a->conflicts, b->conflicts, seconds);
  r.fsyncs = rate(a->wal_groups, b->wal_groups, seconds);
  r.group_commit = ratio(delta(a->wal_records, b->wal_records), delta(a->wal_groups, b->wal_groups), 1.0);
  uint64_t hits = delta(a->cache_hits, b->cache_hits);
  r.cache_hit_pct = ratio(hits, hits + delta(a->cache_misses, b->cache_misses), 100.0);
  r.stall_ms = rate(a->write_stall_us, b->write_stall_us, seconds) / 1000.0;
  return r;
}

static volatile sig_atomic_t stop_requested;

static void request_stop(int sig)
{
  (void)sig;
  stop_requested = 1;
}

/* SIGINT and SIGTERM stay blocked except inside pselect(), which unblocks
** them atomically: a signal that arrives while a sample is being printed is
** noticed at once instead of after one more full interval. */
static int catch_stop_signals(sigset_t *wait_mask)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
      sigprocmask(SIG_BLOCK, &stop_signals, wait_mask) != 0) {
    fprintf(stderr, "sochdb: cannot install signal handlers: %s\n", strerror(errno));
    return EXIT_DB_ERROR;
  }
  sigdelset(wait_mask, SIGINT);
  sigdelset(wait_mask, SIGTERM);
  return EXIT_OK;
}

static void sleep_until_stopped(unsigned long long ms, const sigset_t *wait_mask)
{
  struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
  pselect(0, NULL, NULL, NULL, &ts, wait_mask);   /* EINTR is the point, not an error */
}

static int watch_stats(sochdb *db, const args *a)
{
  sigset_t wait_mask;
  int status = catch_stop_signals(&wait_mask);
  if (status != EXIT_OK)
    return status;
  /* Clearing keeps a terminal showing one table; a pipe gets every sample. */
  int clear_screen = !a->json && isatty(STDOUT_FILENO);
  sample prev, cur;
  int have_prev = 0;
  while (!stop_requested) {
    if ((status = take_sample(db, &cur)) != EXIT_OK)
      return status;
    rates r = rates_between(have_prev ? &prev : NULL, &cur);
    if (clear_screen)
      fputs("\033[H\033[2J", stdout);
    else if (have_prev && !a->json)
      putchar('\n');             /* a blank line between samples */
    print_stats(db, a, &cur.stats, &r);
    if ((status = finish_stdout(EXIT_OK)) != EXIT_OK)
      return status;
    prev = cur;
    have_prev = 1;
    sleep_until_stopped(a->interval_ms, &wait_mask);
  }
  return EXIT_OK;
}

static int run_stats(sochdb *db, const args *a)
{
  if (a->watch)
    return watch_stats(db, a);
  sample s;
  int status = take_sample(db, &s);
  if (status == EXIT_OK)
    print_stats(db, a, &s.stats, NULL);
  return status;
}

/* ---------------------------------------------------------------- check */

/* `sochdb check` has exit statuses of its own (see its --help). */
enum { CHECK_CLEAN = 0, CHECK_DAMAGED = 1, CHECK_CANNOT_RUN = 2 };

typedef struct check_output {
  const args *a;
  const struct check_summary *summary;   /* counted before each problem() call */
  uint64_t damaged_seen;
  int bar;                      /* a progress bar is drawn on stderr (a terminal) */
  int bar_shown;
  unsigned last_permille;
  struct timespec last_draw;
  /* --json: the problems, printed in the final object */
  struct check_problem { char *file, *what; int damage; } *problems;
  size_t nproblems, cap;
} check_output;

static void clear_bar(check_output *o)
{
  if (o->bar_shown) {
    fputs("\r\033[K", stderr);
    o->bar_shown = 0;
  }
}

static void check_on_problem(void *ctx, const char *file, const char *what)
{
  check_output *o = ctx;
  int damage = o->summary->damaged > o->damaged_seen;
  o->damaged_seen = o->summary->damaged;
  clear_bar(o);
  fprintf(stderr, "%s: %s%s\n", file, damage ? "" : "warning: ", what);
  if (!o->a->json)
    return;
  if (o->nproblems == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 16;
    struct check_problem *grown = realloc(o->problems, cap * sizeof *grown);
    if (grown == NULL)
      return;                   /* stderr has it anyway */
    o->problems = grown;
    o->cap = cap;
  }
  struct check_problem *p = &o->problems[o->nproblems];
  p->file = strdup(file);
  p->what = strdup(what);
  p->damage = damage;
  if (p->file != NULL && p->what != NULL)
    o->nproblems++;
  else {
    free(p->file);
    free(p->what);
  }
}

/* Redrawn at most every 100 ms, and only when the figure changed. */
static void check_on_progress(void *ctx, uint64_t done, uint64_t total)
{
  check_output *o = ctx;
  if (!o->bar)
    return;
  unsigned permille = total ? (unsigned)(done * 1000 / total) : 1000;
  if (permille > 1000)
    permille = 1000;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long ms = (long)(now.tv_sec - o->last_draw.tv_sec) * 1000 + (now.tv_nsec - o->last_draw.tv_nsec) / 1000000;
  if ((o->bar_shown && permille == o->last_permille) || (o->bar_shown && ms < 100 && permille < 1000))
    return;
  enum { WIDTH = 40 };
  char bar[WIDTH + 1];
  unsigned filled = permille * WIDTH / 1000;
  for (unsigned i = 0; i < WIDTH; i++)
    bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = '\0';
  fprintf(stderr, "\rchecking [%s] %3u.%u%%  %llu/%llu MiB", bar, permille / 10, permille % 10,
          (unsigned long long)(done >> 20), (unsigned long long)(total >> 20));
  o->bar_shown = 1;
  o->last_permille = permille;
  o->last_draw = now;
}

static void print_check_json(const args *a, const struct check_summary *s, const check_output *o)
{
  fputs("{\"dir\":", stdout);
  put_json_string(a->dir, strlen(a->dir));
  printf(",\"status\":\"%s\",\"files_checked\":%llu,\"bytes_checked\":%llu,\"sst_files\":%llu,"
         "\"sst_entries\":%llu,\"wal_segments\":%llu,\"wal_records\":%llu,\"damaged\":%llu,\"warnings\":%llu,"
         "\"problems\":[",
         s->damaged ? "damaged" : "clean", (unsigned long long)s->files_checked,
         (unsigned long long)s->bytes_checked, (unsigned long long)s->sst_files,
         (unsigned long long)s->sst_entries, (unsigned long long)s->wal_segments,
         (unsigned long long)s->wal_records, (unsigned long long)s->damaged, (unsigned long long)s->warnings);
  for (size_t i = 0; i < o->nproblems; i++) {
    fputs(i ? ",{\"file\":" : "{\"file\":", stdout);
    put_json_string(o->problems[i].file, strlen(o->problems[i].file));
    printf(",\"kind\":\"%s\",\"what\":", o->problems[i].damage ? "damage" : "warning");
    put_json_string(o->problems[i].what, strlen(o->problems[i].what));
    putchar('}');
  }
  fputs("]}\n", stdout);
}

static void print_check_text(const args *a, const struct check_summary *s)
{
  printf("%s: %s: %llu file%s, %.1f MiB verified (SSTables: %llu, with %llu entries; WAL segments: %llu, with "
         "%llu records); %llu damaged, %llu warning%s\n",
         a->dir, s->damaged ? "DAMAGED" : "clean", (unsigned long long)s->files_checked,
         s->files_checked == 1 ? "" : "s", (double)s->bytes_checked / (1024.0 * 1024.0),
         (unsigned long long)s->sst_files, (unsigned long long)s->sst_entries, (unsigned long long)s->wal_segments,
         (unsigned long long)s->wal_records, (unsigned long long)s->damaged, (unsigned long long)s->warnings,
         s->warnings == 1 ? "" : "s");
}

static int run_check(const args *a)
{
  struct check_summary s;
  memset(&s, 0, sizeof s);
  check_output o;
  memset(&o, 0, sizeof o);
  o.a = a;
  o.summary = &s;
  o.bar = isatty(STDERR_FILENO);
  struct check_callbacks cb = { check_on_problem, check_on_progress, &o };
  int rc = sdb_check_dir(a->dir, &cb, &s);
  clear_bar(&o);
  int status;
  if (rc != SOCHDB_OK) {
    const char *message = sochdb_strerror(rc);
    const char *detail = sochdb_last_error();
    if (detail[0] != '\0')
      fprintf(stderr, "sochdb: cannot check %s: %s (%s)\n", a->dir, message, detail);
    else
      fprintf(stderr, "sochdb: cannot check %s: %s\n", a->dir, message);
    status = CHECK_CANNOT_RUN;
  } else {
    if (a->json)
      print_check_json(a, &s, &o);
    else
      print_check_text(a, &s);
    status = s.damaged ? CHECK_DAMAGED : CHECK_CLEAN;
  }
  for (size_t i = 0; i < o.nproblems; i++) {
    free(o.problems[i].file);
    free(o.problems[i].what);
  }
  free(o.problems);
  status = finish_stdout(status);
  return status == EXIT_DB_ERROR ? CHECK_CANNOT_RUN : status;
}

/* -------------------------------------------------------------- compact */

/* How often the waiting command looks at the region's counters. */
#define COMPACT_POLL_MS 50ull
/* A daemon that cannot be (re)started for this long is an error, not a wait. */
#define DAEMON_GIVE_UP_MS 10000ull

void bar_clear(progress_bar *b)
{
  if (b->shown) {
    fputs("\r\033[K", stderr);
    b->shown = 0;
  }
}

/* label [####....]  42.0%  tail */
void bar_draw(progress_bar *b, const char *label, uint64_t done, uint64_t total, const char *tail)
{
  if (!b->enabled)
    return;
  unsigned permille = total ? (unsigned)((double)done * 1000.0 / (double)total) : 0;
  if (permille > 1000)
    permille = 1000;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long ms = (long)(now.tv_sec - b->last_draw.tv_sec) * 1000 + (now.tv_nsec - b->last_draw.tv_nsec) / 1000000;
  int same = b->shown && b->last_label == label;
  if (same && (permille == b->last_permille || ms < 100))
    return;
  enum { WIDTH = 40 };
  char bar[WIDTH + 1];
  unsigned filled = permille * WIDTH / 1000;
  for (unsigned i = 0; i < WIDTH; i++)
    bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = '\0';
  fprintf(stderr, "\r\033[K%s [%s] %3u.%u%%  %s", label, bar, permille / 10, permille % 10, tail);
  b->shown = 1;
  b->last_permille = permille;
  b->last_label = label;
  b->last_draw = now;
}

/* One run of `sochdb compact`: what every round of its waits checks. */
typedef struct compact_wait {
  sochdb *db;
  const args *a;
  struct timespec start;
  sigset_t wait_mask;           /* SIGINT and SIGTERM unblocked, for pselect */
  progress_bar bar;
  int daemon_down;              /* the last probe found no daemon */
  unsigned daemon_restarts;     /* daemons found gone while we waited */
  uint64_t daemon_failing_since_ms;   /* 0: the last start attempt did not fail */
} compact_wait;

static uint64_t ms_since(const struct timespec *t0)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  int64_t ms = (int64_t)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
  return ms > 0 ? (uint64_t)ms : 0;
}

/* Our mapping is no longer the region of DIR (someone removed it and an
** opener rebuilt it from the files): a request made in it is never answered. */
static int region_replaced(const sochdb *db)
{
  struct stat ours, named;
  return fstat(db->region.fd, &ours) != 0 || stat(db->region.path, &named) != 0 || ours.st_ino != named.st_ino ||
         ours.st_dev != named.st_dev;
}

/* 1 when no daemon holds DIR/LOCK (the probe sochdb_stats_get makes too). */
static int daemon_gone(const sochdb *db)
{
  if (flock(db->lock_fd, LOCK_SH | LOCK_NB) != 0)
    return 0;                   /* held: a daemon runs (or the probe failed: assume it runs) */
  flock(db->lock_fd, LOCK_UN);
  return 1;
}

/* Between two looks at the counters: stop on a signal, the timeout, a
** replaced region or a daemon that cannot be restarted (each reported here,
** `waiting` says for what); otherwise make sure a daemon runs, sleep, and
** return EXIT_OK. */
static int compact_pause(compact_wait *w, const char *waiting)
{
  const args *a = w->a;
  uint64_t elapsed = ms_since(&w->start);
  if (stop_requested) {
    bar_clear(&w->bar);
    fprintf(stderr, "sochdb: interrupted while waiting for %s; the daemon still carries out the request\n",
            waiting);
    return EXIT_DB_ERROR;
  }
  if (elapsed >= a->timeout_s * 1000) {
    bar_clear(&w->bar);
    fprintf(stderr,
            "sochdb: gave up after %llu s waiting for %s; the daemon still carries out the request "
            "(see %s/sochdbd.log; --timeout sets the wait)\n",
            a->timeout_s, waiting, a->dir);
    return EXIT_DB_ERROR;
  }
  if (region_replaced(w->db)) {
    bar_clear(&w->bar);
    fprintf(stderr,
            "sochdb: the shared region of %s was removed and rebuilt while waiting for %s; the request was "
            "lost with it: run the command again\n",
            a->dir, waiting);
    return EXIT_DB_ERROR;
  }
  int gone = daemon_gone(w->db);
  if (gone && !w->daemon_down) {
    bar_clear(&w->bar);
    fprintf(stderr, "sochdb: the daemon of %s is gone; a new one is started and carries out the request\n", a->dir);
    w->daemon_restarts++;
  }
  w->daemon_down = gone;
  /* The request lives in the region, so whichever daemon runs next answers it. */
  int rc = sdb_daemon_ensure(w->db);
  if (rc != SOCHDB_OK) {
    if (w->daemon_failing_since_ms == 0)
      w->daemon_failing_since_ms = elapsed ? elapsed : 1;
    else if (elapsed - w->daemon_failing_since_ms >= DAEMON_GIVE_UP_MS) {
      bar_clear(&w->bar);
      char what[64 + PATH_MAX];
      snprintf(what, sizeof what, "no daemon serves %s and none could be started", a->dir);
      return db_error(what, rc);
    }
  } else {
    w->daemon_failing_since_ms = 0;
  }
  sleep_until_stopped(COMPACT_POLL_MS, &w->wait_mask);
  return EXIT_OK;
}

static int compact_stats(sochdb *db, sochdb_stats *out)
{
  int rc = sochdb_stats_get(db, out);
  return rc == SOCHDB_OK ? EXIT_OK : db_error("cannot read the statistics", rc);
}

/* A full compaction merges SSTables only: memtables already rotated out
** (waiting for the flusher) would become level-0 files right after it. Wait
** until those present now are flushed; the current memtable stays. */
static int compact_wait_for_flushes(compact_wait *w, sochdb_stats *st)
{
  int status = compact_stats(w->db, st);
  if (status != EXIT_OK)
    return status;
  uint64_t pending = st->memtables_in_use > 1 ? st->memtables_in_use - 1 : 0;
  uint64_t target = st->flushes + pending;
  while (st->memtables_in_use > 1 && st->flushes < target) {
    char tail[64];
    uint64_t left = target - st->flushes;
    snprintf(tail, sizeof tail, "%llu of %llu memtables", (unsigned long long)(pending - left),
             (unsigned long long)pending);
    bar_draw(&w->bar, "flushing  ", pending - left, pending, tail);
    if ((status = compact_pause(w, "the memtables to be flushed")) != EXIT_OK)
      return status;
    if ((status = compact_stats(w->db, st)) != EXIT_OK)
      return status;
  }
  return EXIT_OK;
}

/* Ask the daemon for a full compaction and wait until it answered this
** request or a later one, drawing its progress. */
static int compact_request_and_wait(compact_wait *w, uint64_t *ticket)
{
  struct shm_global_stats *g = &w->db->region.hdr->stats;
  *ticket = sdb_full_compaction_request(w->db);
  for (;;) {
    if (sdb_full_compaction_done(w->db, *ticket))
      return EXIT_OK;
    uint64_t done = atomic_load_explicit(&g->compact_progress_done, memory_order_relaxed);
    uint64_t total = atomic_load_explicit(&g->compact_progress_total, memory_order_relaxed);
    if (done > total)
      done = total;
    char tail[64];
    snprintf(tail, sizeof tail, "%.1f/%.1f MiB", (double)done / (1024.0 * 1024.0),
             (double)total / (1024.0 * 1024.0));
    bar_draw(&w->bar, "compacting", done, total, tail);
    int status = compact_pause(w, "the full compaction");
    if (status != EXIT_OK)
      return status;
  }
}

static double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static void print_compact_side_json(const char *name, const sochdb_stats *s)
{
  printf("\"%s\":{\"sst_files\":%u,\"l0_files\":%u,\"sst_bytes\":%llu,\"compactions\":%llu,"
         "\"compact_bytes_read\":%llu,\"compact_bytes_written\":%llu}",
         name, s->sst_files, s->l0_files, (unsigned long long)s->sst_bytes, (unsigned long long)s->compactions,
         (unsigned long long)s->compact_bytes_read, (unsigned long long)s->compact_bytes_written);
}

static void print_compact_summary(const compact_wait *w, uint64_t ticket, const sochdb_stats *before,
                                  const sochdb_stats *after, double seconds)
{
  const args *a = w->a;
  uint64_t runs = delta(before->compactions, after->compactions);
  uint64_t read = delta(before->compact_bytes_read, after->compact_bytes_read);
  uint64_t written = delta(before->compact_bytes_written, after->compact_bytes_written);
  if (a->json) {
    fputs("{\"dir\":", stdout);
    put_json_string(a->dir, strlen(a->dir));
    printf(",\"status\":\"done\",\"request\":%llu,\"seconds\":%.3f,\"daemon_restarts\":%u,",
           (unsigned long long)ticket, seconds, w->daemon_restarts);
    print_compact_side_json("before", before);
    putchar(',');
    print_compact_side_json("after", after);
    printf(",\"compactions\":%llu,\"bytes_read\":%llu,\"bytes_written\":%llu}\n", (unsigned long long)runs,
           (unsigned long long)read, (unsigned long long)written);
    return;
  }
  printf("%s: compacted in %.1f s\n", a->dir, seconds);
  printf("  before: %u SSTable%s (%u in level 0), %.1f MiB\n", before->sst_files, before->sst_files == 1 ? "" : "s",
         before->l0_files, mib(before->sst_bytes));
  printf("  after:  %u SSTable%s (%u in level 0), %.1f MiB\n", after->sst_files, after->sst_files == 1 ? "" : "s",
         after->l0_files, mib(after->sst_bytes));
  printf("  %llu compaction%s: %.1f MiB read, %.1f MiB written\n", (unsigned long long)runs, runs == 1 ? "" : "s",
         mib(read), mib(written));
  if (w->daemon_restarts)
    printf("  the daemon was restarted %u time%s meanwhile\n", w->daemon_restarts,
           w->daemon_restarts == 1 ? "" : "s");
}

static int run_compact(sochdb *db, const args *a)
{
  compact_wait w;
  memset(&w, 0, sizeof w);
  w.db = db;
  w.a = a;
  w.bar.enabled = isatty(STDERR_FILENO);
  clock_gettime(CLOCK_MONOTONIC, &w.start);
  int status = catch_stop_signals(&w.wait_mask);
  sochdb_stats before, after;
  uint64_t ticket = 0;
  if (status == EXIT_OK)
    status = compact_wait_for_flushes(&w, &before);
  if (status == EXIT_OK)
    status = compact_request_and_wait(&w, &ticket);
  bar_clear(&w.bar);
  if (status == EXIT_OK)
    status = compact_stats(db, &after);
  if (status == EXIT_OK)
    print_compact_summary(&w, ticket, &before, &after, (double)ms_since(&w.start) / 1000.0);
  return status;
}

/* ------------------------------------------------- commands and options */

static const command commands[] = {
  { "put", CMD_PUT, 2, 1, "DIR KEY VALUE [--escaped]", "store VALUE under KEY (- reads VALUE from stdin)",
    "Stores VALUE under KEY in one transaction and returns once the commit is\n"
    "durable. With - as VALUE the value is read from standard input, byte for\n"
    "byte, up to 16 MiB; a larger input is refused, never truncated. Creates the\n"
    "database when DIR holds none.\n\n"
    "  --escaped, -e KEY and VALUE are given as scan prints them: \\\\, \\t, \\n and \\xNN\n"
    "                stand for a backslash, a tab, a newline and any byte (\\x00 too);\n"
    "                a VALUE read from standard input is taken as it is\n",
    prepare_put, run_put },
  { "get", CMD_GET, 1, -1, "DIR KEY [--raw] [--escaped]", "print the value of KEY",
    "Prints the value of KEY followed by a newline; exit status 1 if KEY is absent.\n\n"
    "  --raw     print exactly the value's bytes, without the newline\n"
    "  --json    print {\"key\":...,\"value\":...}\n"
    "  --escaped, -e KEY is given as scan prints keys: \\\\, \\t, \\n and \\xNN\n"
    "                stand for a backslash, a tab, a newline and any byte (\\x00 too)\n",
    prepare_get, run_get },
  { "del", CMD_DEL, 1, -1, "DIR KEY [--escaped]", "delete KEY",
    "Deletes KEY and returns once the commit is durable; exit status 1 if KEY\n"
    "was absent.\n\n"
    "  --escaped, -e KEY is given as scan prints keys: \\\\, \\t, \\n and \\xNN\n"
    "                stand for a backslash, a tab, a newline and any byte (\\x00 too)\n",
    prepare_key, run_del },
  { "scan", CMD_SCAN, 0, -1, "DIR [--prefix P | --start S --end E] [--limit N] [--keys-only] [--escaped]",
    "list keys and values in key order",
    "Prints one key<TAB>value line per key, in byte order, all from one snapshot.\n"
    "Backslash, tab, newline and non-printable bytes are escaped (\\\\, \\t, \\n, \\xNN)\n"
    "so that every entry is one line.\n\n"
    "  --prefix P    only keys that start with P\n"
    "  --start S     from key S (inclusive)\n"
    "  --end E       to key E (exclusive)\n"
    "  --limit N     at most N entries\n"
    "  --keys-only   print keys without values\n"
    "  --escaped, -e P, S and E are given as scan prints keys: \\\\, \\t, \\n and \\xNN\n"
    "                stand for a backslash, a tab, a newline and any byte (\\x00 too)\n"
    "  --json        print a JSON array of {\"key\":...,\"value\":...}; bytes that\n"
    "                are not printable ASCII become \\u00XX\n",
    prepare_scan, run_scan },
  { "stats", CMD_STATS, 0, -1, "DIR [--watch [--interval MS]]", "show the shared region's counters",
    "Prints the counters of the database's shared region, summed over every\n"
    "attached process (this one included), the region's path, and the size of\n"
    "its pages: 2 MiB on a tmpfs mounted with huge=within_size or huge=always,\n"
    "else 4 KiB (README, \"Huge pages\").\n\n"
    "  --watch         print again every interval until interrupted (Ctrl-C), with\n"
    "                  what happened during the interval: commits_per_sec,\n"
    "                  conflicts_per_sec, fsyncs_per_sec (WAL group commits),\n"
    "                  avg_group_commit (commits per fsync), cache_hit_pct (block\n"
    "                  cache hits per lookup), memtable_fill_pct (used share\n"
    "                  of the live memtables), and stall_ms_per_sec (writers'\n"
    "                  waits for the daemon: write_stall_us); '-' (null) when\n"
    "                  not known yet or\n"
    "                  when nothing happened\n"
    "  --interval MS   milliseconds between samples (default 1000)\n"
    "  --json          one JSON object per sample, named like struct sochdb_stats\n",
    prepare_stats, run_stats },
  { "check", CMD_CHECK, 0, -1, "DIR [--json]", "verify every file of DIR, read-only (exit 1 on damage)",
    "Verifies the database directory DIR without opening the database and without\n"
    "writing anything, so it is safe while other processes use it: CURRENT and\n"
    "the MANIFEST (checksums, replay), every live SSTable (present, of the size\n"
    "the MANIFEST records, footer/filter/index checksums, every data block's\n"
    "checksum, entry count, key order and key range), and every WAL segment\n"
    "(headers, every group and record checksum, no gap between segments,\n"
    "commits in seq order, a log that reaches the newest commit the SSTables\n"
    "hold).\n\n"
    "Each finding is printed on stderr as FILE: what. Damage means data is lost\n"
    "or unreadable; warnings are harmless (an orphan .sst file the MANIFEST does\n"
    "not list, a torn tail of the newest WAL segment or of the MANIFEST left by a\n"
    "crash, a file a compaction removed meanwhile). In a segment written over a\n"
    "reused file (WAL version 2) a torn tail is reported where the interrupted\n"
    "group's header is whole: the other bytes after its groups are the file's\n"
    "earlier use's, and are not reported. A progress bar is drawn on\n"
    "stderr when it is a terminal; a summary line ends the output.\n\n"
    "  --json    print the summary as one JSON object, problems included\n\n"
    "exit status: 0 clean (warnings allowed), 1 damage found, 2 usage error or\n"
    "the check could not run (DIR is not a database, cannot be read)\n",
    NULL, NULL },
  { "compact", CMD_COMPACT, 0, -1, "DIR [--timeout SEC] [--json]",
    "merge every SSTable into the deepest level, and wait for it",
    "Asks the daemon serving DIR (started if none runs) for a full compaction and\n"
    "waits until it is done: the SSTables of every level are merged into the\n"
    "deepest one, keeping only the versions a snapshot can still read and dropping\n"
    "deletes nothing older needs. Memtables already rotated out are flushed first,\n"
    "so only the current memtable's data stays out of it. Other processes may read\n"
    "and write meanwhile. If the daemon dies meanwhile, a new one is started and\n"
    "carries the request out. The merged files are removed as it finishes,\n"
    "save those a reader still holds, which go soon after it lets go of them.\n\n"
    "A progress bar is drawn on stderr when it is a terminal; a summary ends the\n"
    "output: SSTables and bytes before and after, compactions run, bytes read and\n"
    "written, and the time taken.\n\n"
    "  --timeout SEC   stop waiting after SEC seconds (default 600); the daemon\n"
    "                  still carries the request out\n"
    "  --json          print the summary as one JSON object\n\n"
    "exit status: 0 done, 2 usage error, 3 no database at DIR, no daemon could be\n"
    "started, or the timeout passed\n",
    prepare_compact, run_compact },
  { "destroy", CMD_DESTROY, 0, -1, "DIR [--json]", "delete the database: its files, its region, DIR",
    "Deletes the database in DIR for good: stops its daemon if one runs (it first\n"
    "writes what was published; none is started), removes its shared region (the\n"
    "file in /dev/shm, or $SOCHDB_SHM_DIR, that would otherwise keep its pages in\n"
    "memory until the next reboot), then the files sochdb made in DIR: CURRENT\n"
    "and the WAL first, so that an opener meanwhile finds an empty database and\n"
    "never part of this one, sochdb.id last, so that a run cut short is finished\n"
    "by running it again; then DIR itself when nothing else is left in it. Files\n"
    "sochdb did not make are kept, and so is DIR then.\n\n"
    "Refuses, removing nothing, while another process is attached to the\n"
    "database (their pids are named), when DIR holds no database, or when DIR is\n"
    "a symbolic link (give the directory itself; exit 2). Like RocksDB's\n"
    "DestroyDB it cannot stop a program that opens the database while it runs:\n"
    "stop the programs that use it first. One that attaches after the check\n"
    "makes it fail (exit 3) before any file is removed.\n\n"
    "  --json    print the summary as one JSON object\n\n"
    "exit status: 0 destroyed, 2 usage error, 3 no database at DIR, processes\n"
    "attached, the daemon did not stop, or a file could not be removed\n",
    NULL, NULL },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

typedef struct option {
  const char *name;
  unsigned commands;            /* the CMD_* bits of the commands that accept it */
  int takes_value;
  size_t offset;                /* of its int flag or const char * value in struct args */
} option;

#define FLAG(name, cmds, field)  { name, cmds, 0, offsetof(args, field) }
#define VALUE(name, cmds, field) { name, cmds, 1, offsetof(args, field) }
static const option options[] = {
  FLAG("--json", CMD_ALL, json),
  FLAG("--help", CMD_ALL, help),
  FLAG("-h", CMD_ALL, help),
  FLAG("--raw", CMD_GET, raw),
  FLAG("--escaped", CMD_PUT | CMD_GET | CMD_DEL | CMD_SCAN, escaped),
  FLAG("-e", CMD_PUT | CMD_GET | CMD_DEL | CMD_SCAN, escaped),
  VALUE("--prefix", CMD_SCAN, prefix),
  VALUE("--start", CMD_SCAN, start),
  VALUE("--end", CMD_SCAN, end),
  VALUE("--limit", CMD_SCAN, limit_arg),
  FLAG("--keys-only", CMD_SCAN, keys_only),
  FLAG("--watch", CMD_STATS, watch),
  VALUE("--interval", CMD_STATS, interval_arg),
  VALUE("--timeout", CMD_COMPACT, timeout_arg),
};
#define NOPTIONS (sizeof options / sizeof options[0])

static void print_usage(FILE *f)
{
  fputs("usage: sochdb [--json] COMMAND DIR [ARGS]\n\n"
        "Reads and writes the sochdb database in directory DIR. Other processes may\n"
        "use the database at the same time; a command that reads or writes keys is one\n"
        "transaction (load, backup and table load write in batches).\n\n"
        "commands:\n", f);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-7s %s\n", commands[i].name, commands[i].summary);
  fputs("  dump    write every key-value pair to a file (a binary dump)\n"
        "  load    store the pairs of a dump, in batched transactions\n"
        "  backup  copy one consistent snapshot into a new database (logical copy)\n"
        "  table   create, load (CSV) and scan columnar tables: 'sochdb table --help'\n"
        "  bench   a quick benchmark (puts, durable puts, reads, a scan) on a scratch DIR\n", f);
  fputs("\noptions:\n"
        "  --json      machine-readable output (get, scan, stats, check, compact, bench,\n"
        "              destroy, table, and the summaries of dump, load, backup)\n"
        "  --help      this text; 'sochdb COMMAND --help' describes one command\n"
        "  --version   print the library version the tool was built with\n\n"
        "Keys and values are taken from the arguments byte for byte; write -- before\n"
        "a key or value that starts with '-' (after --, a VALUE of - is itself, not\n"
        "standard input). A key holding bytes an argument cannot carry (0x00) is given\n"
        "with --escaped as scan prints it: sochdb get --escaped DIR 'a\\x00b'.\n\n"
        "exit status: 0 success, 1 key not found, 2 usage error, 3 database or I/O error\n"
        "(check: 0 clean, 1 damage found, 2 usage error or could not run)\n", f);
}

static void print_command_help(const command *cmd)
{
  printf("usage: sochdb %s %s\n\n%s", cmd->name, cmd->synopsis, cmd->details);
}

__attribute__((format(printf, 2, 3)))
static int usage_error(const command *cmd, const char *fmt, ...)
{
  va_list ap;
  fputs("sochdb: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (cmd != NULL)
    fprintf(stderr, "\nusage: sochdb %s %s\nTry 'sochdb %s --help'.\n", cmd->name, cmd->synopsis, cmd->name);
  else
    fputs("\nTry 'sochdb --help'.\n", stderr);
  return EXIT_USAGE;
}

/* `sochdb dump|load|backup` (tools/sochdb_xfer.c): argv[0] is the command. */
int xfer_is_command(const char *name);
int xfer_main(int argc, char **argv, int json);
/* `sochdb bench` (tools/sochdb_bench.c): argv[0] is "bench". */
int bench_main(int argc, char **argv, int json);

static const command *find_command(const char *name)
{
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

static const option *find_option(const char *name, size_t len, unsigned cmd)
{
  for (size_t i = 0; i < NOPTIONS; i++)
    if ((options[i].commands & cmd) && strlen(options[i].name) == len &&
        memcmp(options[i].name, name, len) == 0)
      return &options[i];
  return NULL;
}

/* Handles argv[*i], which starts with '-'; takes the next argument as
** well for an option with a value given as "--name value". */
static int parse_option(args *a, int argc, char **argv, int *i)
{
  const char *arg = argv[*i];
  const char *eq = strchr(arg, '=');
  size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
  const option *o = find_option(arg, len, a->cmd->id);
  if (o == NULL)
    return usage_error(a->cmd, "%s has no option '%.*s'", a->cmd->name, (int)len, arg);
  char *field = (char *)a + o->offset;
  if (!o->takes_value) {
    if (eq != NULL)
      return usage_error(a->cmd, "option %s takes no value", o->name);
    *(int *)field = 1;
  } else if (eq != NULL) {
    *(const char **)field = eq + 1;
  } else if (*i + 1 < argc) {
    *(const char **)field = argv[++*i];
  } else {
    return usage_error(a->cmd, "option %s needs a value", o->name);
  }
  return EXIT_OK;
}

/* Options may come anywhere after the command; "-" alone is an argument
** (put's stdin marker) and "--" makes every later word an argument. */
static int parse_command_args(args *a, int argc, char **argv)
{
  int only_arguments = 0;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (!only_arguments && strcmp(arg, "--") == 0) {
      only_arguments = 1;
    } else if (!only_arguments && arg[0] == '-' && arg[1] != '\0') {
      int status = parse_option(a, argc, argv, &i);
      if (status != EXIT_OK)
        return status;
    } else if (a->npos == a->cmd->nargs + 1) {
      return usage_error(a->cmd, "too many arguments");
    } else {
      a->literal[a->npos] = only_arguments;
      a->pos[a->npos++] = arg;
    }
  }
  if (a->help) {
    print_command_help(a->cmd);
    return EXIT_OK;
  }
  if (a->npos < a->cmd->nargs + 1)
    return usage_error(a->cmd, "%s needs %s", a->cmd->name, a->cmd->synopsis);
  a->dir = a->pos[0];
  return -1;
}

/* Returns an exit status when there is nothing more to do (help, or a
** usage error), or -1 when a->cmd should run. */
static int parse_command_line(args *a, int argc, char **argv)
{
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      a->json = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      print_usage(stdout);
      return EXIT_OK;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("sochdb %d.%d.%d\n", SOCHDB_VERSION_MAJOR, SOCHDB_VERSION_MINOR, SOCHDB_VERSION_PATCH);
      return EXIT_OK;
    } else {
      return usage_error(NULL, "unknown option '%s'", argv[i]);
    }
  }
  if (i == argc) {
    print_usage(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[i], "table") == 0)
    return table_main(argc - i, argv + i, a->json);
  if (xfer_is_command(argv[i]))
    return xfer_main(argc - i, argv + i, a->json);
  if (strcmp(argv[i], "bench") == 0)
    return bench_main(argc - i, argv + i, a->json);
  a->cmd = find_command(argv[i]);
  if (a->cmd == NULL)
    return usage_error(NULL, "unknown command '%s'", argv[i]);
  return parse_command_args(a, argc - i - 1, argv + i + 1);
}

int cli_open_db(const char *dir, int create_if_missing, sochdb **db)
{
  sochdb_options opts;
  memset(&opts, 0, sizeof opts);
  opts.create_if_missing = create_if_missing;
  int rc = sochdb_open(dir, &opts, db);
  if (rc == SOCHDB_NOTFOUND) {
    fprintf(stderr, "sochdb: no database at %s\n", dir);
    return EXIT_DB_ERROR;
  }
  if (rc != SOCHDB_OK) {
    char what[64 + PATH_MAX];
    snprintf(what, sizeof what, "cannot open %s", dir);
    return db_error(what, rc);
  }
  return EXIT_OK;
}

double cli_seconds_since(const struct timespec *t0)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int open_database(const args *a, sochdb **db)
{
  return cli_open_db(a->dir, a->cmd->create_if_missing, db);
}

int main(int argc, char **argv)
{
  /* A closed stdout or stderr (`sochdb dump DIR >&-`) must not be the
  ** number the dump file or the database's files get: the dump, or a
  ** message, was written over the shared region's header. */
  if (sdb_reserve_standard_fds() != 0)
    return EXIT_DB_ERROR;   /* nothing safe to write the reason to */
  /* A write past RLIMIT_FSIZE (`ulimit -f`: a dump, a backup's new region)
  ** must fail with EFBIG and be reported (exit 3), not kill the tool with
  ** SIGXFSZ half-way, a partial dump left under its final name. */
  signal(SIGXFSZ, SIG_IGN);
  args a;
  memset(&a, 0, sizeof a);
  int status = parse_command_line(&a, argc, argv);
  if (status >= 0)
    return finish_stdout(status);
  if (a.cmd->prepare != NULL && (status = a.cmd->prepare(&a)) != EXIT_OK) {
    free(a.owned_value);   /* a value decoded before a later argument was refused */
    return status;
  }

  if (a.cmd->id == CMD_CHECK)   /* reads the files; opens no database */
    return run_check(&a);
  if (a.cmd->id == CMD_DESTROY)  /* opens and closes the database itself */
    return finish_stdout(cli_destroy(a.dir, a.json));

  sochdb *db;
  status = open_database(&a, &db);
  if (status == EXIT_OK) {
    status = a.cmd->run(db, &a);
    sochdb_close(db);
  }
  free(a.owned_value);
  return finish_stdout(status);
}
