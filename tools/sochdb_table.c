/*
** sochdb_table.c — `sochdb table ...`, the columnar table commands of the
** sochdb tool (docs/columnar.md):
**
**   sochdb table create DIR NAME COLSPEC      e.g. id:int64,price:double,note:string?
**   sochdb table load   DIR NAME FILE.csv|-   header row of column names; batched transactions
**   sochdb table scan   DIR NAME [--columns a,b] [--where 'col<5'] [--start PK] [--end PK]
**                                 [--limit N] [--stats] [--json]
**   sochdb table schema DIR NAME
**
** Owns the parsing of column specs, CSV records, values and filters from
** text, and the printing of rows. Exit statuses as the rest of the tool
** (cli.h): 0 success, 1 no such table, 2 usage or malformed input, 3
** database or I/O error.
*/
#include "sochdb.h"

#include "cli.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WRITE_ATTEMPTS 10
#define DEFAULT_BATCH  5000ull
#define MAX_FIELDS     256

typedef struct targs {
  const struct subcommand *sub;
  const char *pos[3];           /* DIR NAME [COLSPEC | FILE] */
  int npos;
  int json, help, stats;
  const char *columns, *where, *start, *end, *limit_arg, *batch_arg;
} targs;

struct subcommand {
  const char *name;
  int nargs;                    /* after DIR */
  const char *synopsis;
  const char *details;
  int (*run)(const targs *a);
};

static const char *const TYPE_NAMES[] = { "?", "int64", "double", "bytes", "string" };

__attribute__((format(printf, 1, 2)))
static int input_error(const char *fmt, ...)
{
  va_list ap;
  fputs("sochdb: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_USAGE;
}

/* ---- values from text ---------------------------------------------------------- */

/* text[0..n) as a value of type into *v (bytes point into text). 0, or -1. */
static int parse_value(unsigned type, const char *text, size_t n, sochdb_value *v)
{
  memset(v, 0, sizeof *v);
  if (type == SOCHDB_BYTES || type == SOCHDB_STRING) {
    v->bytes = text;
    v->len = n;
    return 0;
  }
  char num[64], *end = NULL;
  if (n == 0 || n >= sizeof num)
    return -1;
  memcpy(num, text, n);
  num[n] = '\0';
  errno = 0;
  if (type == SOCHDB_INT64)
    v->i64 = strtoll(num, &end, 10);
  else {
    v->f64 = strtod(num, &end);
    /* Underflow (ERANGE with a result no larger than DBL_MIN) is a subnormal
    ** double, or the nearest one, 0: a value, as `table scan` prints them. */
    if (errno == ERANGE && fabs(v->f64) <= DBL_MIN)
      errno = 0;
  }
  return errno || end != num + n ? -1 : 0;
}

static int find_column(const sochdb_column *cols, size_t n, const char *name, size_t len)
{
  for (size_t i = 0; i < n; i++)
    if (strlen(cols[i].name) == len && memcmp(cols[i].name, name, len) == 0)
      return (int)i;
  return -1;
}

/* ---- opening ---------------------------------------------------------------------- */

static int open_table(sochdb_txn *t, const char *name, sochdb_table **tb)
{
  int rc = sochdb_table_open(t, name, NULL, 0, tb);
  if (rc == SOCHDB_NOTFOUND) {
    fprintf(stderr, "sochdb: no table '%s'\n", name);
    return EXIT_NOT_FOUND;
  }
  return rc ? db_error("cannot open the table", rc) : EXIT_OK;
}

/* ---- create ------------------------------------------------------------------------ */

/* "name:type[?]" items, comma-separated, into cols (names point into spec,
** which is modified). */
static int parse_colspec(char *spec, sochdb_column *cols, size_t *n)
{
  *n = 0;
  for (char *item = strtok(spec, ","); item; item = strtok(NULL, ",")) {
    if (*n == SOCHDB_MAX_COLUMNS)
      return input_error("column spec: a table has at most %u columns", SOCHDB_MAX_COLUMNS);
    char *colon = strchr(item, ':');
    if (!colon || colon == item)
      return input_error("column spec '%s': expected NAME:TYPE (int64, double, bytes, string; ? = nullable)", item);
    *colon = '\0';
    char *type = colon + 1;
    size_t tl = strlen(type);
    unsigned flags = tl && type[tl - 1] == '?' ? SOCHDB_NULLABLE : 0;
    if (flags)
      type[--tl] = '\0';
    unsigned t = 0;
    for (unsigned k = SOCHDB_INT64; k <= SOCHDB_STRING; k++)
      if (strcmp(type, TYPE_NAMES[k]) == 0)
        t = k;
    if (!t)
      return input_error("column '%s': unknown type '%s' (int64, double, bytes, string)", item, type);
    cols[(*n)++] = (sochdb_column){ .name = item, .type = t, .flags = flags };
  }
  return *n ? EXIT_OK : input_error("an empty column spec");
}

static int run_create(const targs *a)
{
  sochdb_column cols[SOCHDB_MAX_COLUMNS];
  size_t n;
  char *spec = strdup(a->pos[2]);
  if (!spec)
    return db_error("out of memory", SOCHDB_NOMEM);
  int status = parse_colspec(spec, cols, &n);
  sochdb *db = NULL;
  if (status == EXIT_OK)
    status = cli_open_db(a->pos[0], 1, &db);
  int rc = SOCHDB_CONFLICT;
  for (int attempt = 0; status == EXIT_OK && rc == SOCHDB_CONFLICT && attempt < WRITE_ATTEMPTS; attempt++) {
    sochdb_txn *t;
    if ((rc = sochdb_txn_begin(db, 0, &t)) != SOCHDB_OK)
      break;
    rc = sochdb_table_create(t, a->pos[1], cols, n);
    if (rc == SOCHDB_OK)
      rc = sochdb_commit(t, SOCHDB_SYNC);
    else
      sochdb_abort(t);
  }
  if (status == EXIT_OK && rc != SOCHDB_OK) {
    status = db_error("cannot create the table", rc);
    if (rc == SOCHDB_INVALID)           /* the name or COLSPEC: malformed input */
      status = EXIT_USAGE;
  }
  if (status == EXIT_OK && a->json) {
    fputs("{\"table\":", stdout);
    put_json_string(a->pos[1], strlen(a->pos[1]));
    printf(",\"columns\":%zu}\n", n);
  } else if (status == EXIT_OK) {
    printf("created table %s with %zu columns\n", a->pos[1], n);
  }
  sochdb_close(db);
  free(spec);
  return status;
}

/* ---- schema ------------------------------------------------------------------------- */

static void print_schema(const targs *a, const sochdb_column *cols, size_t n, uint32_t id)
{
  if (a->json) {
    printf("{\"table\":");
    put_json_string(a->pos[1], strlen(a->pos[1]));
    printf(",\"id\":%u,\"columns\":[", id);
    for (size_t i = 0; i < n; i++) {
      printf("%s{\"name\":", i ? "," : "");
      put_json_string(cols[i].name, strlen(cols[i].name));
      printf(",\"type\":\"%s\",\"nullable\":%s}", TYPE_NAMES[cols[i].type],
             cols[i].flags & SOCHDB_NULLABLE ? "true" : "false");
    }
    printf("]}\n");
    return;
  }
  /* Names are any bytes the creator chose: escaped as keys are, so that
  ** none is a terminal's escape sequence or breaks the line. */
  fputs("table ", stdout);
  put_escaped(stdout, a->pos[1], strlen(a->pos[1]));
  printf(" (id %u)\n", id);
  for (size_t i = 0; i < n; i++) {
    fputs("  ", stdout);
    put_escaped(stdout, cols[i].name, strlen(cols[i].name));
    size_t len = strlen(cols[i].name);
    printf("%*s %s%s%s\n", len < 24 ? (int)(24 - len) : 0, "", TYPE_NAMES[cols[i].type],
           cols[i].flags & SOCHDB_NULLABLE ? " nullable" : "", i == 0 ? " (primary key)" : "");
  }
}

/* Table a->pos[1] of the database in a->pos[0], in a read-only transaction. */
struct reading {
  sochdb       *db;
  sochdb_txn   *t;
  sochdb_table *tb;
};

/* EXIT_OK, or why not (said on stderr); end_reading either way. */
static int begin_reading(const targs *a, struct reading *r)
{
  memset(r, 0, sizeof *r);
  int status = cli_open_db(a->pos[0], -1, &r->db);
  if (status) {
    r->db = NULL;
    return status;
  }
  int rc = sochdb_txn_begin(r->db, SOCHDB_TXN_READONLY, &r->t);
  return rc ? db_error("cannot begin a transaction", rc) : open_table(r->t, a->pos[1], &r->tb);
}

static void end_reading(struct reading *r)
{
  sochdb_table_close(r->tb);
  sochdb_abort(r->t);
  sochdb_close(r->db);
}

static int run_schema(const targs *a)
{
  struct reading r;
  int status = begin_reading(a, &r);
  if (status == EXIT_OK) {
    const sochdb_column *cols;
    size_t n;
    uint32_t id;
    sochdb_table_schema(r.tb, &cols, &n, &id);
    print_schema(a, cols, n, id);
  }
  end_reading(&r);
  return status;
}

/* ---- CSV ------------------------------------------------------------------------------- */

/* One record of a CSV file (RFC 4180: fields separated by commas, quoted with
** double quotes, "" inside quotes for a quote, CRLF or LF line ends). */
struct csv {
  FILE         *f;
  char         *buf;            /* the record's fields, each NUL-terminated */
  size_t        len, cap;
  size_t        off[MAX_FIELDS], flen[MAX_FIELDS];
  int           quoted[MAX_FIELDS];
  unsigned      n;              /* fields */
  unsigned long line;           /* of the record's start, 1-based */
  unsigned long next_line;
  /* Every byte read since the current batch began, so that a batch whose
  ** commit conflicted is read again from memory: FILE may be a pipe, where
  ** seeking back fails. Bytes [0, spool_pos) are consumed. */
  unsigned char *spool;
  size_t        spool_len, spool_cap, spool_pos;
  int           read_errno;     /* of the read that failed (CSV_IO) */
};

/* What the CSV readers return besides characters and EOF (-1). */
enum { CSV_UNCLOSED = -2, CSV_NOMEM = -3, CSV_BAD = -4, CSV_TOO_BIG = -5, CSV_IO = -6 };

/* A record's fields, unquoted, may not pass this: a row is stored as one
** value of at most SOCHDB_MAX_VALUE bytes, and a number's text is at most
** a few dozen bytes a column. Without a bound a file with no line break
** (/dev/zero) would be read into memory until it ran out. */
#define CSV_MAX_RECORD ((size_t)SOCHDB_MAX_VALUE + 64u * SOCHDB_MAX_COLUMNS)

/* What a CSV_* value says went wrong, for "FILE:LINE: ..." */
static const char *csv_problem(int code)
{
  switch (code) {
  case CSV_UNCLOSED: return "a quoted field is not closed before the end of the file";
  case CSV_NOMEM:    return "out of memory reading the record";
  case CSV_TOO_BIG:  return "a record of more than 16 MiB (a row holds at most SOCHDB_MAX_VALUE bytes)";
  default:           return "malformed CSV record";
  }
}

/* The next byte of the file (replayed from the spool first), EOF, or CSV_NOMEM. */
static int csv_getc(struct csv *c)
{
  if (c->spool_pos < c->spool_len)
    return c->spool[c->spool_pos++];
  int ch = getc(c->f);
  if (ch == EOF && ferror(c->f)) {   /* a read error is not the end of the file */
    c->read_errno = errno ? errno : EIO;
    return CSV_IO;
  }
  if (ch == EOF)
    return EOF;
  if (c->spool_len == c->spool_cap) {
    size_t cap = c->spool_cap ? c->spool_cap * 2 : 1 << 16;
    unsigned char *p = realloc(c->spool, cap);
    if (!p)
      return CSV_NOMEM;
    c->spool = p;
    c->spool_cap = cap;
  }
  c->spool[c->spool_len++] = (unsigned char)ch;
  c->spool_pos++;
  return ch;
}

/* A new batch begins at the read position: forget what was consumed. */
static void csv_spool_start(struct csv *c)
{
  if (!c->spool_pos)
    return;             /* nothing consumed (and no spool yet before the first byte) */
  memmove(c->spool, c->spool + c->spool_pos, c->spool_len - c->spool_pos);
  c->spool_len -= c->spool_pos;
  c->spool_pos = 0;
}

static int csv_put(struct csv *c, char ch)
{
  if (c->len >= CSV_MAX_RECORD)
    return CSV_TOO_BIG;
  if (c->len == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 4096;
    char *p = realloc(c->buf, cap);
    if (!p)
      return CSV_NOMEM;
    c->buf = p;
    c->cap = cap;
  }
  c->buf[c->len++] = ch;
  return 0;
}

/* A quoted field's rest (after its opening quote): the character after the
** closing quote (EOF included), CSV_UNCLOSED if the file ends inside the
** quotes, or CSV_NOMEM. */
static int csv_quoted(struct csv *c)
{
  for (;;) {
    int ch = csv_getc(c);
    if (ch == EOF)
      return CSV_UNCLOSED;
    if (ch < 0)
      return ch;
    if (ch == '"' && (ch = csv_getc(c)) != '"')
      return ch;
    if (ch == '\n')
      c->next_line++;
    int bad = csv_put(c, (char)ch);
    if (bad)
      return bad;
  }
}

/* One field, from its first character ch: the character that ends it
** (',', '\n' or EOF: the last record need not end in a line break), or a
** CSV_* value below EOF if malformed. */
static int csv_field(struct csv *c, int ch)
{
  if (c->n == MAX_FIELDS)
    return CSV_BAD;
  c->off[c->n] = c->len;
  c->quoted[c->n] = ch == '"';
  if (ch == '"')
    ch = csv_quoted(c);
  else
    while (ch >= 0 && ch != ',' && ch != '\n') {
      int bad = csv_put(c, (char)ch);
      if (bad)
        return bad;
      ch = csv_getc(c);
    }
  if (ch < EOF)
    return ch;
  if (ch == '\r' && (ch = csv_getc(c)) != '\n' && ch != EOF)
    return ch < EOF ? ch : CSV_BAD;
  if (ch != ',' && ch != '\n' && ch != EOF)
    return CSV_BAD;             /* text after a closing quote */
  c->flen[c->n] = c->len - c->off[c->n];
  if (c->quoted[c->n] == 0 && ch != ',' && c->flen[c->n] && c->buf[c->len - 1] == '\r')
    c->flen[c->n]--, c->len--;  /* a CRLF line end; a CR inside a field is its byte */
  c->n++;
  int bad = csv_put(c, '\0');
  return bad ? bad : ch;
}

/* The next record, after any blank lines (no field at all, so no row: a
** trailing empty line is common): 1, 0 at the end of the file, or a CSV_*
** value. */
static int csv_read(struct csv *c)
{
  c->n = 0;
  c->len = 0;
  int ch;
  while ((ch = csv_getc(c)) == '\n' || ch == '\r') {
    if (ch == '\r') {
      int next = csv_getc(c);
      if (next != '\n') {     /* a CR that ends no line starts the first field */
        if (next >= 0)
          c->spool_pos--;       /* read again by that field */
        else if (next < EOF)
          return next;
        break;
      }
    }
    c->next_line++;
  }
  c->line = c->next_line;
  if (ch == EOF)
    return 0;
  for (;;) {
    if (ch < EOF)
      return ch;
    ch = csv_field(c, ch);
    if (ch < EOF)
      return ch;
    if (ch != ',') {
      c->next_line++;
      return 1;
    }
    ch = csv_getc(c);
  }
}

static const char *csv_text(const struct csv *c, unsigned i) { return c->buf + c->off[i]; }

/* ---- load ------------------------------------------------------------------------------ */

struct loader {
  const targs     *a;
  const char      *source;            /* FILE, or "standard input" for - */
  sochdb          *db;
  sochdb_table    *tb;
  const sochdb_column *cols;
  size_t           ncols;
  int              map[MAX_FIELDS];   /* CSV field -> column */
  unsigned         nfields;           /* the header's: every record has as many */
  struct csv       csv;
  unsigned long long batch, rows;
  off_t            size;
  progress_bar     bar;
};

/* A record that could not be read: EXIT_USAGE for bad input, EXIT_DB_ERROR
** when memory ran out. */
static int csv_error(const struct loader *l, int code)
{
  if (code == CSV_IO) {
    fprintf(stderr, "sochdb: %s:%lu: reading: %s\n", l->source, l->csv.line, strerror(l->csv.read_errno));
    return EXIT_DB_ERROR;
  }
  int status = input_error("%s:%lu: %s", l->source, l->csv.line, csv_problem(code));
  return code == CSV_NOMEM ? EXIT_DB_ERROR : status;
}

/* The header record names the columns the fields hold. */
static int read_header(struct loader *l)
{
  int r = csv_read(&l->csv);
  if (r < 0)
    return csv_error(l, r);
  if (r == 0)
    return input_error("%s: no header line (the column names)", l->source);
  int seen[SOCHDB_MAX_COLUMNS] = { 0 };
  for (unsigned i = 0; i < l->csv.n; i++) {
    int c = find_column(l->cols, l->ncols, csv_text(&l->csv, i), l->csv.flen[i]);
    if (c < 0 || seen[c]++)
      return input_error("%s: header field %u ('%s') is %s", l->source, i + 1, csv_text(&l->csv, i),
                         c < 0 ? "not a column of the table" : "a column named twice");
    l->map[i] = c;
  }
  l->nfields = l->csv.n;
  for (size_t c = 0; c < l->ncols; c++)
    if (!seen[c] && !(l->cols[c].flags & SOCHDB_NULLABLE))
      return input_error("%s: the header lacks column '%s', which is not nullable", l->source, l->cols[c].name);
  return EXIT_OK;
}

/* The record as a row: unquoted empty fields of nullable columns are NULL.
** EXIT_OK, or EXIT_USAGE (reported). */
static int record_row(const struct loader *l, sochdb_value *v)
{
  const struct csv *c = &l->csv;
  for (size_t j = 0; j < l->ncols; j++)
    v[j] = (sochdb_value){ .is_null = 1 };
  for (unsigned i = 0; i < c->n; i++) {
    const sochdb_column *col = &l->cols[l->map[i]];
    if (!c->flen[i] && !c->quoted[i] && (col->flags & SOCHDB_NULLABLE))
      continue;
    if (parse_value(col->type, csv_text(c, i), c->flen[i], &v[l->map[i]]))
      return input_error("%s:%lu: '%s' is not a %s (column '%s')", l->source, c->line, csv_text(c, i),
                         TYPE_NAMES[col->type], col->name);
  }
  return EXIT_OK;
}

static int at_eof(struct csv *c)
{
  int ch = csv_getc(c);
  if (ch == EOF)
    return 1;
  if (ch >= 0)
    c->spool_pos--;             /* read again by the next record */
  return 0;                     /* CSV_IO and CSV_NOMEM too: the next record reads and reports them */
}

/* Up to l->batch records into t: SOCHDB_OK, or -EXIT_* for bad input. */
static int load_batch(struct loader *l, sochdb_txn *t, unsigned long long *n)
{
  sochdb_value v[SOCHDB_MAX_COLUMNS];
  for (*n = 0; *n < l->batch; (*n)++) {
    int r = csv_read(&l->csv);
    if (r == 0)
      break;
    if (r < 0)
      return -csv_error(l, r);
    if (l->csv.n != l->nfields)
      return -input_error("%s:%lu: malformed CSV record (%u fields for %u columns)", l->source, l->csv.line,
                          l->csv.n, l->nfields);
    if (record_row(l, v))
      return -EXIT_USAGE;
    int rc = sochdb_row_put(t, l->tb, v);
    if (rc == SOCHDB_INVALID) {       /* the row: a primary key too long, a row above 16 MiB */
      const char *detail = sochdb_last_error();
      return -input_error("%s:%lu: the row is refused: %s", l->source, l->csv.line,
                          detail[0] ? detail : sochdb_strerror(rc));
    }
    if (rc)
      return rc;
  }
  return SOCHDB_OK;
}

/* Load and commit one batch, retrying it from its start on a conflict. 1 if
** the file is done, 0 if not, or -EXIT_*. */
static int load_one(struct loader *l)
{
  csv_spool_start(&l->csv);
  unsigned long line = l->csv.next_line;
  int rc = SOCHDB_CONFLICT;
  unsigned long long n = 0;
  int done = 0;
  for (int attempt = 0; attempt < WRITE_ATTEMPTS && (rc == SOCHDB_CONFLICT || rc == SOCHDB_BUSY); attempt++) {
    if (attempt) {
      l->csv.spool_pos = 0;     /* the same records again, from memory */
      l->csv.next_line = line;
      struct timespec pause = { 0, 10000000L * attempt };
      nanosleep(&pause, NULL);
    }
    sochdb_txn *t;
    if ((rc = sochdb_txn_begin(l->db, 0, &t)) != SOCHDB_OK)
      break;
    rc = load_batch(l, t, &n);
    if (rc != SOCHDB_OK) {
      sochdb_abort(t);
      if (rc < 0)
        return rc;
      break;
    }
    done = at_eof(&l->csv);
    rc = sochdb_commit(t, done ? SOCHDB_SYNC : SOCHDB_ASYNC);   /* the last makes them all durable */
  }
  if (rc != SOCHDB_OK)
    return -db_error("cannot load a batch", rc);
  l->rows += n;
  return done;
}

static int load_rows(struct loader *l)
{
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int status = read_header(l);
  for (int done = 0; status == EXIT_OK && !done;) {
    int r = load_one(l);
    if (r < 0)
      status = -r;
    done = r == 1;
    char tail[64];
    snprintf(tail, sizeof tail, "%llu rows", l->rows);
    bar_draw(&l->bar, "loading", (uint64_t)ftello(l->csv.f), (uint64_t)l->size, tail);
  }
  bar_clear(&l->bar);
  double s = cli_seconds_since(&t0);
  if (l->a->json) {
    printf("{\"table\":");
    put_json_string(l->a->pos[1], strlen(l->a->pos[1]));
    printf(",\"rows\":%llu,\"seconds\":%.3f}\n", l->rows, s);
  } else {
    printf("%s %llu rows into %s in %.2f s (%.0f rows/s)\n", status ? "loaded only" : "loaded", l->rows,
           l->a->pos[1], s, s > 0 ? (double)l->rows / s : 0.0);
  }
  return status;
}

static int run_load(const targs *a)
{
  struct loader l;
  memset(&l, 0, sizeof l);
  l.a = a;
  l.batch = DEFAULT_BATCH;
  if (a->batch_arg && cli_parse_number("--batch", a->batch_arg, 1, 60000, "rows per transaction, 1 to 60000",
                                       &l.batch) != EXIT_OK)
    return EXIT_USAGE;
  int from_stdin = strcmp(a->pos[2], "-") == 0;
  l.source = from_stdin ? "standard input" : a->pos[2];
  l.csv.f = from_stdin ? stdin : fopen(a->pos[2], "r");
  if (!l.csv.f) {
    fprintf(stderr, "sochdb: %s: %s\n", a->pos[2], strerror(errno));
    return EXIT_USAGE;
  }
  struct stat st;
  l.size = fstat(fileno(l.csv.f), &st) == 0 ? st.st_size : 0;
  l.csv.next_line = 1;
  l.bar.enabled = isatty(STDERR_FILENO);
  sochdb_txn *t = NULL;
  int status = cli_open_db(a->pos[0], -1, &l.db);
  if (status == EXIT_OK) {
    int rc = sochdb_txn_begin(l.db, SOCHDB_TXN_READONLY, &t);
    status = rc ? db_error("cannot begin a transaction", rc) : open_table(t, a->pos[1], &l.tb);
    sochdb_abort(t);
  }
  if (status == EXIT_OK) {
    sochdb_table_schema(l.tb, &l.cols, &l.ncols, NULL);
    status = load_rows(&l);
  }
  sochdb_table_close(l.tb);
  sochdb_close(l.db);
  if (!from_stdin)
    fclose(l.csv.f);
  free(l.csv.buf);
  free(l.csv.spool);
  return status;
}

/* ---- scan -------------------------------------------------------------------------- */

struct scanner {
  const targs         *a;
  const sochdb_column *cols;
  size_t               ncols;
  unsigned             want[SOCHDB_MAX_COLUMNS];
  size_t               nwant;
  sochdb_filter        filter;
  int                  filtered;
  sochdb_value         lo, hi;
  unsigned long long   limit;
};

static int parse_columns(struct scanner *s)
{
  if (!s->a->columns) {
    for (size_t i = 0; i < s->ncols; i++)
      s->want[i] = (unsigned)i;
    s->nwant = s->ncols;
    return EXIT_OK;
  }
  const char *p = s->a->columns;
  while (*p) {
    size_t len = strcspn(p, ",");
    int c = find_column(s->cols, s->ncols, p, len);
    if (s->nwant == SOCHDB_MAX_COLUMNS)
      return input_error("--columns: at most %u columns", SOCHDB_MAX_COLUMNS);
    if (c < 0)
      return input_error("--columns: no column '%.*s' in table %s", (int)len, p, s->a->pos[1]);
    s->want[s->nwant++] = (unsigned)c;
    p += len + (p[len] == ',');
  }
  return s->nwant ? EXIT_OK : input_error("--columns: no column named");
}

/* --where COL OP VALUE, OP one of = < <= > >=; COL=A..B is a range (both included). */
static int parse_where(struct scanner *s)
{
  const char *w = s->a->where, *op = w + strcspn(w, "<>=");
  if (!*op)
    return input_error("--where '%s': expected COLUMN=V, <V, <=V, >V, >=V or =A..B", w);
  size_t nlen = (size_t)(op - w);
  while (nlen && w[nlen - 1] == ' ')
    nlen--;
  int c = find_column(s->cols, s->ncols, w, nlen);
  if (c < 0)
    return input_error("--where: no column '%.*s' in table %s", (int)nlen, w, s->a->pos[1]);
  int two = op[1] == '=' && op[0] != '=';
  unsigned kind = op[0] == '=' ? SOCHDB_EQ : op[0] == '<' ? (two ? SOCHDB_LE : SOCHDB_LT) : (two ? SOCHDB_GE : SOCHDB_GT);
  const char *v = op + 1 + two, *dots = kind == SOCHDB_EQ ? strstr(v, "..") : NULL;
  unsigned type = s->cols[c].type;
  s->filter = (sochdb_filter){ .column = (unsigned)c, .op = dots ? SOCHDB_BETWEEN : kind };
  if (parse_value(type, v, dots ? (size_t)(dots - v) : strlen(v), &s->filter.value) ||
      (dots && parse_value(type, dots + 2, strlen(dots + 2), &s->filter.value2)))
    return input_error("--where '%s': not a %s", w, TYPE_NAMES[type]);
  s->filtered = 1;
  return EXIT_OK;
}

static int parse_bounds(struct scanner *s)
{
  unsigned type = s->cols[0].type;
  if (s->a->start && parse_value(type, s->a->start, strlen(s->a->start), &s->lo))
    return input_error("--start: not a %s", TYPE_NAMES[type]);
  if (s->a->end && parse_value(type, s->a->end, strlen(s->a->end), &s->hi))
    return input_error("--end: not a %s", TYPE_NAMES[type]);
  s->limit = ~0ull;
  if (s->a->limit_arg && cli_parse_number("--limit", s->a->limit_arg, 0, ~0ull - 1, "a number of rows",
                                          &s->limit) != EXIT_OK)
    return EXIT_USAGE;
  return EXIT_OK;
}

static void print_value(const struct scanner *s, unsigned type, const sochdb_value *v)
{
  if (v->is_null)
    fputs(s->a->json ? "null" : "\\N", stdout);
  else if (type == SOCHDB_INT64)
    printf("%lld", (long long)v->i64);
  else if (type == SOCHDB_DOUBLE && (isfinite(v->f64) || !s->a->json))
    printf("%.17g", v->f64);
  else if (type == SOCHDB_DOUBLE)
    fputs("null", stdout);
  else if (s->a->json)
    put_json_string(v->bytes, v->len);
  else
    put_escaped(stdout, v->bytes, v->len);
}

static void print_row(const struct scanner *s, const sochdb_value *row, unsigned long long i)
{
  if (s->a->json)
    printf("%s{", i ? ",\n" : "");
  for (size_t k = 0; k < s->nwant; k++) {
    const sochdb_column *c = &s->cols[s->want[k]];
    if (s->a->json) {
      printf("%s", k ? "," : "");
      put_json_string(c->name, strlen(c->name));
      putchar(':');
    } else if (k) {
      putchar('\t');
    }
    print_value(s, c->type, &row[k]);
  }
  fputs(s->a->json ? "}" : "\n", stdout);
}

static void print_scan_stats(const sochdb_scan_stats *st, double seconds)
{
  fprintf(stderr,
          "%llu rows in %.3f s; %llu blocks read, %llu skipped by min/max, %llu read column by column; "
          "%llu bytes read, %llu decompressed\n",
          (unsigned long long)st->rows, seconds, (unsigned long long)st->blocks_read,
          (unsigned long long)st->blocks_skipped, (unsigned long long)st->blocks_direct,
          (unsigned long long)st->bytes_read,
          (unsigned long long)st->bytes_decompressed);
}

static int scan_rows(struct scanner *s, sochdb_txn *t, sochdb_table *tb)
{
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  sochdb_scan *sc;
  int rc = sochdb_table_scan(t, tb, s->a->start ? &s->lo : NULL, s->a->end ? &s->hi : NULL, s->want, s->nwant,
                             s->filtered ? &s->filter : NULL, &sc);
  if (rc)
    return db_error("cannot scan", rc);
  if (s->a->json)
    putchar('[');
  else
    for (size_t k = 0; k < s->nwant; k++) {   /* escaped like the fields: one header line, one name per column */
      fputs(k ? "\t" : "", stdout);
      put_escaped(stdout, s->cols[s->want[k]].name, strlen(s->cols[s->want[k]].name));
    }
  if (!s->a->json)
    putchar('\n');
  sochdb_value row[SOCHDB_MAX_COLUMNS];
  unsigned long long n = 0;
  while (n < s->limit && (rc = sochdb_scan_next(sc, row)) == SOCHDB_OK)
    print_row(s, row, n++);
  if (s->a->json)
    fputs("]\n", stdout);
  int status = rc == SOCHDB_OK || rc == SOCHDB_NOTFOUND ? EXIT_OK : db_error("the scan failed", rc);
  sochdb_scan_stats st;
  sochdb_scan_close(sc, &st);
  if (s->a->stats)
    print_scan_stats(&st, cli_seconds_since(&t0));
  return status;
}

static int run_scan(const targs *a)
{
  struct reading r;
  int status = begin_reading(a, &r);
  struct scanner s;
  memset(&s, 0, sizeof s);
  s.a = a;
  if (status == EXIT_OK) {
    sochdb_table_schema(r.tb, &s.cols, &s.ncols, NULL);
    status = parse_columns(&s);
  }
  if (status == EXIT_OK && a->where)
    status = parse_where(&s);
  if (status == EXIT_OK)
    status = parse_bounds(&s);
  if (status == EXIT_OK)
    status = scan_rows(&s, r.t, r.tb);
  end_reading(&r);
  return status;
}

/* ---- the command line ------------------------------------------------------------------ */

static const struct subcommand subs[] = {
  { "create", 2, "DIR NAME COLSPEC",
    "Creates table NAME (creating the database if DIR holds none). COLSPEC lists\n"
    "the columns, comma-separated, as NAME:TYPE, TYPE one of int64, double, bytes,\n"
    "string, followed by ? when the column may be NULL. The first column is the\n"
    "primary key: int64, bytes or string, not nullable. Example:\n\n"
    "  sochdb table create /var/lib/db orders 'id:int64,ts:int64,price:double,note:string?'\n",
    run_create },
  { "load", 2, "DIR NAME FILE.csv [--batch N]",
    "Loads the rows of FILE.csv into table NAME: a header line names the columns\n"
    "(in any order; nullable columns may be left out), then one row per record.\n"
    "Fields follow RFC 4180 (\"quoted\", \"\" for a quote); an unquoted empty field\n"
    "of a nullable column is NULL; the last record may end without a line break;\n"
    "blank lines are skipped; lines end in LF or CRLF (any other CR is data);\n"
    "a record holds at most 16 MiB. A row whose primary key exists replaces it.\n"
    "Rows are committed N at a time (--batch, default 5000); a batch that\n"
    "conflicts with another writer is read again and retried (FILE may be a\n"
    "pipe, or - for standard input). The last commit is durable, and with it every one before. On bad\n"
    "input the rows of the batches committed before it stay. A progress bar is\n"
    "drawn on stderr on a terminal.\n",
    run_load },
  { "scan", 1, "DIR NAME [--columns A,B] [--where EXPR] [--start PK] [--end PK] [--limit N] [--stats]",
    "Prints the rows of table NAME in primary-key order, one snapshot: a header\n"
    "line, then one tab-separated line per row (NULL as \\N; bytes escaped as in\n"
    "sochdb scan).\n\n"
    "  --columns A,B   only these columns, in this order (only they are read)\n"
    "  --where EXPR    only rows whose column passes: COL=V, COL<V, COL<=V, COL>V,\n"
    "                  COL>=V, or COL=A..B (A <= COL <= B); NULL never passes.\n"
    "                  Evaluated in the storage layer, which skips the blocks whose\n"
    "                  min/max (int64 and double columns) exclude it\n"
    "  --start PK      from this primary key (included)\n"
    "  --end PK        to this primary key (excluded)\n"
    "  --limit N       at most N rows\n"
    "  --stats         on stderr: rows, time, blocks read and skipped, bytes read\n"
    "                  and decompressed\n"
    "  --json          a JSON array of objects\n",
    run_scan },
  { "schema", 1, "DIR NAME", "Prints the columns of table NAME (--json: as an object).\n", run_schema },
};
#define NSUBS (sizeof subs / sizeof subs[0])

static void table_usage(FILE *f)
{
  fputs("usage: sochdb [--json] table SUBCOMMAND DIR NAME [ARGS]\n\n"
        "Columnar tables: rows of a fixed schema stored column by column, so that a\n"
        "scan reads only the columns it asks for (docs/columnar.md).\n\n", f);
  for (size_t i = 0; i < NSUBS; i++)
    fprintf(f, "  sochdb table %s %s\n", subs[i].name, subs[i].synopsis);
  fputs("\n'sochdb table SUBCOMMAND --help' describes one.\n", f);
}

static int table_usage_error(const targs *a, const char *what)
{
  fprintf(stderr, "sochdb: %s\n", what);
  if (a->sub)
    fprintf(stderr, "usage: sochdb table %s %s\n", a->sub->name, a->sub->synopsis);
  else
    table_usage(stderr);
  return EXIT_USAGE;
}

struct topt {
  const char *name;
  int         takes_value;
  size_t      offset;
};
static const struct topt topts[] = {
  { "--json", 0, offsetof(targs, json) },           { "--help", 0, offsetof(targs, help) },
  { "-h", 0, offsetof(targs, help) },               { "--stats", 0, offsetof(targs, stats) },
  { "--columns", 1, offsetof(targs, columns) },     { "--where", 1, offsetof(targs, where) },
  { "--start", 1, offsetof(targs, start) },         { "--end", 1, offsetof(targs, end) },
  { "--limit", 1, offsetof(targs, limit_arg) },     { "--batch", 1, offsetof(targs, batch_arg) },
};

static int parse_topt(targs *a, int argc, char **argv, int *i)
{
  const char *arg = argv[*i], *eq = strchr(arg, '=');
  size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
  for (size_t k = 0; k < sizeof topts / sizeof topts[0]; k++) {
    const struct topt *o = &topts[k];
    if (strlen(o->name) != len || memcmp(o->name, arg, len))
      continue;
    char *field = (char *)a + o->offset;
    if (!o->takes_value)
      *(int *)field = 1;
    else if (eq)
      *(const char **)field = eq + 1;
    else if (*i + 1 < argc)
      *(const char **)field = argv[++*i];
    else
      return table_usage_error(a, "an option needs a value");
    return EXIT_OK;
  }
  fprintf(stderr, "sochdb: unknown option '%.*s'\n", (int)len, arg);
  return table_usage_error(a, "try 'sochdb table --help'");
}

int table_main(int argc, char **argv, int json)
{
  targs a;
  memset(&a, 0, sizeof a);
  a.json = json;
  int only_args = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!only_args && !strcmp(arg, "--"))
      only_args = 1;
    else if (!only_args && arg[0] == '-' && arg[1]) {
      int status = parse_topt(&a, argc, argv, &i);
      if (status)
        return status;
    } else if (!a.sub) {
      for (size_t k = 0; k < NSUBS; k++)
        if (!strcmp(subs[k].name, arg))
          a.sub = &subs[k];
      if (!a.sub)
        return table_usage_error(&a, "unknown table subcommand");
    } else if (a.npos == 3 || a.npos == a.sub->nargs + 1) {
      return table_usage_error(&a, "too many arguments");
    } else {
      a.pos[a.npos++] = arg;
    }
  }
  if (a.help && a.sub) {
    printf("usage: sochdb table %s %s\n\n%s", a.sub->name, a.sub->synopsis, a.sub->details);
    return EXIT_OK;
  }
  if (a.help || !a.sub) {
    table_usage(a.help ? stdout : stderr);
    return a.help ? EXIT_OK : EXIT_USAGE;
  }
  if (a.npos != a.sub->nargs + 1)
    return table_usage_error(&a, "missing arguments");
  return a.sub->run(&a);
}
