/*
** fuzz_table.c — libFuzzer target for the columnar table API (include/sochdb.h,
** "Columnar tables"), checked against a model of the table's rows.
**
** One database (fuzzdb.h: 1 MiB memtables, served by the fuzz tree's
** sochdbd): inputs write large key-value "ballast" that
** rotates memtables, so the daemon flushes and compacts the rows into
** columnar SSTable blocks behind the reads, which meet memtables, row blocks
** and column segments alike (the direct path of a compacted table, the
** min/max skipping of a filter). Each input creates a table of its own,
** named by a counter, after deleting the rows the last input's table holds
** and the ballast; its first byte chooses the schema (2..5 columns: a
** primary key of int64, bytes or string, then any type, nullable or not).
** The rest is a program over one transaction at a time: puts of rows (each
** column's value from a set of edge cases: INT64_MIN and _MAX, -0.0, NaN,
** infinities, empty strings and strings holding 0x00 or 0xFF, NULL where
** the column takes it), deletes, gets and scans (a random projection, with
** repeats; primary-key bounds; a filter of any op on any column, with a bound
** from the same edge cases), commits (ASYNC) and aborts, added columns (rows
** written before read NULL there) and ballast.
**
** The model holds every row committed and the open transaction's writes over
** them; a get returns the row it sees, a scan the rows it sees in
** primary-key order within the bounds that pass the filter (NULL and a NaN
** never pass; int64 and double compare as numbers, -0.0 equal to 0.0; bytes
** and strings by memcmp, then the shorter first). Values compare bit for
** bit. Any other answer aborts the fuzzer.
*/
#include "fuzzdb.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_COLS       8
#define PKS            24                /* the primary keys an input may use */
#define BALLAST_BYTES  (300u << 10)
#define BALLAST_KEYS   4

static uint8_t ballast[BALLAST_BYTES];

/* ---- values --------------------------------------------------------------------- */

struct cell {
  int      null;
  int64_t  i64;
  double   f64;
  uint8_t  b[4];
  size_t   len;
};

static const int64_t ints[16] = {
  INT64_MIN, INT64_MIN + 1, -4294967296LL, -65536, -256, -2, -1, 0,
  1, 2, 255, 256, 65535, 4294967296LL, INT64_MAX - 1, INT64_MAX,
};
static const uint8_t alphabet[4] = { 0x00, 'a', 'b', 0xff };

static double double_case(unsigned b)
{
  switch (b % 16) {
  case 0: return 0.0;
  case 1: return -0.0;
  case 2: return 1.0;
  case 3: return -1.0;
  case 4: return 0.5;
  case 5: return 1e300;
  case 6: return -1e300;
  case 7: return INFINITY;
  case 8: return -INFINITY;
  case 9: return NAN;
  case 10: return 2.0;
  case 11: return 3.0;
  case 12: return -2.5;
  case 13: return 1e-300;
  case 14: return 5e-324;   /* the smallest subnormal */
  default: return 42.0;
  }
}

struct input {
  const uint8_t *p;
  size_t         n;
};

static unsigned take(struct input *in)
{
  if (in->n == 0)
    return 0;
  in->n--;
  return *in->p++;
}

/* A non-NULL value of type from the input's next bytes. */
static void value_of(unsigned type, struct input *in, struct cell *c)
{
  unsigned b = take(in);
  memset(c, 0, sizeof *c);
  if (type == SOCHDB_INT64)
    c->i64 = ints[b % 16];
  else if (type == SOCHDB_DOUBLE)
    c->f64 = double_case(b);
  else {
    c->len = b % 5;
    unsigned bits = take(in);
    for (size_t i = 0; i < c->len; i++, bits >>= 2)
      c->b[i] = alphabet[bits & 3];
  }
}

/* Primary key number k (0..PKS-1) of type: distinct keys in an order of their own. */
static void pk_of(unsigned type, unsigned k, struct cell *c)
{
  memset(c, 0, sizeof *c);
  if (type == SOCHDB_INT64) {
    c->i64 = k < 16 ? ints[k] : (int64_t)k * 1000003 - 9000000;
    return;
  }
  /* 4 keys of 1 byte over the alphabet, 16 of 2, then 3 bytes */
  unsigned v = k < 4 ? k : k < 20 ? k - 4 : k - 20;
  c->len = k < 4 ? 1 : k < 20 ? 2 : 3;
  for (size_t i = 0; i < c->len; i++, v /= 4)
    c->b[i] = alphabet[v % 4];
}

static void to_value(unsigned type, const struct cell *c, sochdb_value *v)
{
  memset(v, 0, sizeof *v);
  v->is_null = c->null;
  v->i64 = c->i64;
  v->f64 = c->f64;
  v->bytes = c->len ? c->b : NULL;
  v->len = c->len;
  (void)type;
}

/* -1, 0, 1 in the order of keys and filters; 2 if unordered (a NaN). */
static int cell_cmp(unsigned type, const struct cell *a, const struct cell *b)
{
  if (type == SOCHDB_INT64)
    return (a->i64 > b->i64) - (a->i64 < b->i64);
  if (type == SOCHDB_DOUBLE) {
    if (a->f64 < b->f64)
      return -1;
    if (a->f64 > b->f64)
      return 1;
    return a->f64 == b->f64 ? 0 : 2;
  }
  size_t m = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->b, b->b, m);
  return c ? (c < 0 ? -1 : 1) : (a->len > b->len) - (a->len < b->len);
}

/* The engine's value v is the model's cell c, bit for bit. */
static int same_value(unsigned type, const sochdb_value *v, const struct cell *c)
{
  if (v->is_null || c->null)
    return v->is_null && c->null;
  if (type == SOCHDB_INT64)
    return v->i64 == c->i64;
  if (type == SOCHDB_DOUBLE)
    return memcmp(&v->f64, &c->f64, sizeof c->f64) == 0;
  return v->len == c->len && (c->len == 0 || memcmp(v->bytes, c->b, c->len) == 0);
}

/* ---- the model ------------------------------------------------------------------- */

struct row {
  int         present;
  unsigned    ncols;         /* the schema's width when it was written: columns after read NULL */
  struct cell c[MAX_COLS];
};

static unsigned      ncols, types[MAX_COLS], nullable[MAX_COLS];
static struct row    committed[PKS], pending[PKS];
static int           written[PKS];   /* the open transaction wrote pending[k] */
static sochdb_table *tb;
static sochdb_txn   *txn;
static unsigned      table_serial;
static int           stalled;   /* the daemon held a begin or a commit up past busy_timeout_ms */

static const struct row *model_row(unsigned k)
{
  return written[k] ? &pending[k] : &committed[k];
}

static const struct cell *model_cell(const struct row *r, unsigned col)
{
  static const struct cell null_cell = { .null = 1 };
  return col < r->ncols ? &r->c[col] : &null_cell;
}

/* ---- transactions ------------------------------------------------------------ */

/* 0, or -1 if the daemon held it up past busy_timeout_ms (a write stall on a
** stalled machine: the input ends there, not failed; nothing was applied). */
static int begin(void)
{
  int rc = sochdb_txn_begin(fuzzdb, 0, &txn);
  if (rc == SOCHDB_BUSY) {
    txn = NULL;
    stalled = 1;
    return -1;
  }
  expect_rc(rc, SOCHDB_OK, "begin");
  memset(written, 0, sizeof written);
  return 0;
}

/* Commits the open transaction and begins the next; 0, or -1 as begin. */
static int commit(void)
{
  int rc = sochdb_commit(txn, SOCHDB_ASYNC);
  txn = NULL;
  if (rc == SOCHDB_BUSY) {
    stalled = 1;
    return -1;
  }
  expect_rc(rc, SOCHDB_OK, "commit");
  for (unsigned k = 0; k < PKS; k++)
    if (written[k])
      committed[k] = pending[k];
  return begin();
}

static int abort_txn(void)
{
  sochdb_abort(txn);
  txn = NULL;
  return begin();
}

/* ---- operations ------------------------------------------------------------------ */

static void op_put(struct input *in)
{
  unsigned k = take(in) % PKS;
  struct row r = { .present = 1, .ncols = ncols };
  pk_of(types[0], k, &r.c[0]);
  sochdb_value v[MAX_COLS];
  for (unsigned j = 1; j < ncols; j++) {
    value_of(types[j], in, &r.c[j]);
    r.c[j].null = nullable[j] && take(in) % 4 == 0;
  }
  for (unsigned j = 0; j < ncols; j++)
    to_value(types[j], &r.c[j], &v[j]);
  expect_rc(sochdb_row_put(txn, tb, v), SOCHDB_OK, "row_put");
  pending[k] = r;
  written[k] = 1;
}

static void op_delete(struct input *in)
{
  unsigned k = take(in) % PKS;
  struct cell pk;
  sochdb_value v;
  pk_of(types[0], k, &pk);
  to_value(types[0], &pk, &v);
  expect_rc(sochdb_row_delete(txn, tb, &v), SOCHDB_OK, "row_delete");
  memset(&pending[k], 0, sizeof pending[k]);
  written[k] = 1;
}

/* A projection of 1..ncols columns, repeats allowed; its length. */
static size_t projection(struct input *in, unsigned *cols)
{
  size_t n = 1 + take(in) % ncols;
  for (size_t i = 0; i < n; i++)
    cols[i] = take(in) % ncols;
  return n;
}

static void check_row(const struct row *r, const unsigned *cols, size_t n, const sochdb_value *got, const char *what)
{
  for (size_t i = 0; i < n; i++)
    if (!same_value(types[cols[i]], &got[i], model_cell(r, cols[i]))) {
      fprintf(stderr, "fuzz_table: %s: column %u (type %u) differs\n", what, cols[i], types[cols[i]]);
      mismatch("a value the model does not hold", 0);
    }
}

static void op_get(struct input *in)
{
  unsigned k = take(in) % PKS, cols[MAX_COLS];
  size_t n = projection(in, cols);
  struct cell pk;
  sochdb_value v, got[MAX_COLS];
  pk_of(types[0], k, &pk);
  to_value(types[0], &pk, &v);
  int rc = sochdb_row_get(txn, tb, &v, cols, n, got);
  const struct row *r = model_row(k);
  expect_rc(rc, r->present ? SOCHDB_OK : SOCHDB_NOTFOUND, "row_get");
  if (rc == SOCHDB_OK)
    check_row(r, cols, n, got, "row_get");
}

struct filter_model {
  int         on;
  unsigned    col, op;
  struct cell lo, hi;
};

/* The model's verdict: c passes f (NULL and NaN never do). */
static int passes(const struct filter_model *f, const struct cell *c)
{
  if (!f->on)
    return 1;
  unsigned t = types[f->col];
  if (c->null || (t == SOCHDB_DOUBLE && isnan(c->f64)))
    return 0;
  int a = cell_cmp(t, c, &f->lo);
  if (a == 2)
    return 0;
  switch (f->op) {
  case SOCHDB_EQ: return a == 0;
  case SOCHDB_LT: return a < 0;
  case SOCHDB_LE: return a <= 0;
  case SOCHDB_GT: return a > 0;
  case SOCHDB_GE: return a >= 0;
  default: {
    int b = cell_cmp(t, c, &f->hi);
    return a >= 0 && b != 2 && b <= 0;
  }
  }
}

/* pk number k is within [lo, hi) (each -1: no bound). */
static int within(unsigned k, int lo, int hi)
{
  struct cell c, b;
  pk_of(types[0], k, &c);
  if (lo >= 0 && (pk_of(types[0], (unsigned)lo, &b), cell_cmp(types[0], &c, &b) < 0))
    return 0;
  if (hi >= 0 && (pk_of(types[0], (unsigned)hi, &b), cell_cmp(types[0], &c, &b) >= 0))
    return 0;
  return 1;
}

/* The keys in primary-key order, into order[0..PKS). */
static void pk_order(unsigned *order)
{
  for (unsigned i = 0; i < PKS; i++)
    order[i] = i;
  for (unsigned i = 1; i < PKS; i++)   /* insertion sort: 24 keys */
    for (unsigned j = i; j > 0; j--) {
      struct cell a, b;
      pk_of(types[0], order[j - 1], &a);
      pk_of(types[0], order[j], &b);
      if (cell_cmp(types[0], &a, &b) <= 0)
        break;
      unsigned t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
}

static void op_scan(struct input *in)
{
  unsigned b = take(in), cols[MAX_COLS];
  int lo = b & 1 ? (int)(take(in) % PKS) : -1, hi = b & 2 ? (int)(take(in) % PKS) : -1;
  size_t n = projection(in, cols);
  struct filter_model f = { .on = (b & 4) != 0 };
  sochdb_filter filter;
  memset(&filter, 0, sizeof filter);
  if (f.on) {
    f.col = take(in) % ncols;
    f.op = SOCHDB_EQ + take(in) % 6;
    value_of(types[f.col], in, &f.lo);
    value_of(types[f.col], in, &f.hi);
    filter.column = f.col;
    filter.op = f.op;
    to_value(types[f.col], &f.lo, &filter.value);
    to_value(types[f.col], &f.hi, &filter.value2);
  }
  struct cell lo_pk, hi_pk;
  sochdb_value lo_v, hi_v;
  if (lo >= 0)
    pk_of(types[0], (unsigned)lo, &lo_pk), to_value(types[0], &lo_pk, &lo_v);
  if (hi >= 0)
    pk_of(types[0], (unsigned)hi, &hi_pk), to_value(types[0], &hi_pk, &hi_v);
  sochdb_scan *s;
  expect_rc(sochdb_table_scan(txn, tb, lo >= 0 ? &lo_v : NULL, hi >= 0 ? &hi_v : NULL, cols, n,
                              f.on ? &filter : NULL, &s), SOCHDB_OK, "table_scan");
  unsigned order[PKS];
  pk_order(order);
  sochdb_value got[MAX_COLS];
  for (unsigned i = 0; i < PKS; i++) {
    const struct row *r = model_row(order[i]);
    if (!r->present || !within(order[i], lo, hi) || !passes(&f, model_cell(r, f.col)))
      continue;
    expect_rc(sochdb_scan_next(s, got), SOCHDB_OK, "a scan ended before a row the model holds");
    check_row(r, cols, n, got, "table_scan");
  }
  expect_rc(sochdb_scan_next(s, got), SOCHDB_NOTFOUND, "a scan returned a row the model does not hold");
  sochdb_scan_close(s, NULL);
}

/* Reopen the table, as the API asks after its schema changed. */
static void reopen(void)
{
  sochdb_table_close(tb);
  char name[32];
  snprintf(name, sizeof name, "t%u", table_serial);
  expect_rc(sochdb_table_open(txn, name, NULL, 0, &tb), SOCHDB_OK, "table_open");
}

static int op_add_column(struct input *in)
{
  unsigned type = SOCHDB_INT64 + take(in) % 4;
  if (ncols == MAX_COLS)
    return 0;
  if (commit() != 0)
    return -1;
  char name[16];
  snprintf(name, sizeof name, "c%u", ncols);
  sochdb_column col = { name, type, SOCHDB_NULLABLE };
  expect_rc(sochdb_table_add_column(txn, tb, &col), SOCHDB_OK, "add_column");
  if (commit() != 0)
    return -1;
  types[ncols] = type;
  nullable[ncols] = 1;
  ncols++;
  reopen();
  return 0;
}

/* A key-value value of 300 KiB in its own transaction: every few of them
** fill a memtable, and its flush takes the rows with it. */
static int op_ballast(struct input *in)
{
  char key[16];
  snprintf(key, sizeof key, "ballast%u", take(in) % BALLAST_KEYS);
  if (commit() != 0)
    return -1;
  expect_rc(sochdb_put(txn, key, strlen(key), ballast, sizeof ballast), SOCHDB_OK, "the ballast's put");
  return commit();
}

/* ---- one input --------------------------------------------------------------------- */

/* Deletes the last input's rows and the ballast; 0, or -1 on a stall. */
static int clear_last_input(void)
{
  stalled = 0;
  if ((txn == NULL ? begin() : abort_txn()) != 0)
    return -1;
  if (tb != NULL) {
    for (unsigned k = 0; k < PKS; k++)
      if (committed[k].present) {
        sochdb_value v;
        to_value(types[0], &committed[k].c[0], &v);
        expect_rc(sochdb_row_delete(txn, tb, &v), SOCHDB_OK, "the reset's row_delete");
      }
    sochdb_table_close(tb);
    tb = NULL;
  }
  for (unsigned i = 0; i < BALLAST_KEYS; i++) {
    char key[16];
    snprintf(key, sizeof key, "ballast%u", i);
    expect_rc(sochdb_delete(txn, key, strlen(key)), SOCHDB_OK, "the reset's delete");
  }
  memset(committed, 0, sizeof committed);
  memset(pending, 0, sizeof pending);
  return commit();
}

/* The schema from the input's first byte, the table created and opened. */
static int create_table(struct input *in)
{
  static const unsigned pk_types[3] = { SOCHDB_INT64, SOCHDB_BYTES, SOCHDB_STRING };
  unsigned b = take(in);
  ncols = 2 + b % 4;
  types[0] = pk_types[(b >> 2) % 3];
  nullable[0] = 0;
  sochdb_column cols[MAX_COLS];
  char names[MAX_COLS][8];
  for (unsigned j = 0; j < ncols; j++) {
    if (j > 0) {
      unsigned c = take(in);
      types[j] = SOCHDB_INT64 + c % 4;
      nullable[j] = (c >> 2) & 1;
    }
    snprintf(names[j], sizeof names[j], "c%u", j);
    cols[j] = (sochdb_column){ names[j], types[j], nullable[j] ? SOCHDB_NULLABLE : 0 };
  }
  char name[32];
  snprintf(name, sizeof name, "t%u", ++table_serial);
  expect_rc(sochdb_table_create(txn, name, cols, ncols), SOCHDB_OK, "table_create");
  if (commit() != 0)
    return -1;
  expect_rc(sochdb_table_open(txn, name, cols, ncols, &tb), SOCHDB_OK, "table_open");
  return 0;
}

/* At exit: what the last input left open, before the database closes. */
static void end_input(void)
{
  if (txn != NULL)
    sochdb_abort(txn);
  sochdb_table_close(tb);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc, (void)argv;
  for (size_t i = 0; i < sizeof ballast; i++)   /* LZ4 cannot shrink it much: the flushes are real */
    ballast[i] = (uint8_t)((i * 2654435761u) >> 13);
  fuzzdb_open("fuzz_table", "SOCHDB_FUZZ_TABLE_DIR", end_input);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct input in = { data, size };
  if (clear_last_input() != 0 || create_table(&in) != 0)
    return 0;
  while (in.n && !stalled) {
    switch (take(&in) % 8) {
    case 0: op_put(&in); break;
    case 1: op_delete(&in); break;
    case 2: op_get(&in); break;
    case 3: op_scan(&in); break;
    case 4: commit(); break;
    case 5: abort_txn(); break;
    case 6: op_add_column(&in); break;
    case 7: op_ballast(&in); break;
    }
  }
  return 0;
}
