/*
** table.c — columnar tables, the schema and row half: creating, opening and
** widening a table (its schema is a reserved key, written in the caller's
** transaction), and putting, deleting and reading rows, each one reserved key
** (rowfmt.h) written or read through the transaction's ordinary paths
** (sdb_write, sdb_get), so tables inherit snapshot isolation, conflicts, the
** WAL and durability from the key-value engine. Scans are tablescan.c.
**
** Schema blob (the value of FF FF 00 "schema/" NAME), little-endian:
**   [ version u8 = 1 | table id u32 | generation u32 | ncols u8 |
**     per column: type u8 | flags u8 | name length u8 | name ]
** The next table id is FF FF 00 "next_table_id" (u32; absent = 1). Creating
** a table reads and writes it, so two concurrent creations conflict.
*/
#include "internal.h"

#include "bytes.h"
#include "error.h"
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_VERSION 1u
#define SCHEMA_PREFIX  "schema/"
#define NEXT_ID_NAME   "next_table_id"
#define META_KEY_MAX   (3 + sizeof SCHEMA_PREFIX + SOCHDB_MAX_NAME)
#define SCHEMA_MAX     (10 + SOCHDB_MAX_COLUMNS * (3 + SOCHDB_MAX_NAME))

_Static_assert(sizeof(struct shm_header) <= SHM_HEADER_BYTES, "the region header outgrew its page");

/* ---- names and columns ------------------------------------------------------- */

static int check_name(const char *what, const char *name)
{
  if (!name)
    return sdb_fail(SOCHDB_INVALID, "NULL %s name", what);
  size_t n = strlen(name);
  if (n == 0 || n > SOCHDB_MAX_NAME)
    return sdb_fail(SOCHDB_INVALID, "%s name of %zu bytes; names are 1 to %u bytes", what, n, SOCHDB_MAX_NAME);
  return SOCHDB_OK;
}

static int check_column(const sochdb_column *c)
{
  int rc = check_name("column", c->name);
  if (rc)
    return rc;
  if (!rowfmt_type_ok(c->type))
    return sdb_fail(SOCHDB_INVALID, "column '%s' has the unknown type %u", c->name, c->type);
  if (c->flags & ~SOCHDB_NULLABLE)
    return sdb_fail(SOCHDB_INVALID, "column '%s' has unknown flags 0x%x", c->name, c->flags);
  return SOCHDB_OK;
}

static int find_column(const sochdb_column *cols, size_t n, const char *name)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(cols[i].name, name) == 0)
      return (int)i;
  return -1;
}

static int check_schema(const sochdb_column *cols, size_t ncols)
{
  if (!cols || ncols == 0 || ncols > SOCHDB_MAX_COLUMNS)
    return sdb_fail(SOCHDB_INVALID, "a table has 1 to %u columns, not %zu", SOCHDB_MAX_COLUMNS, cols ? ncols : 0);
  for (size_t i = 0; i < ncols; i++) {
    int rc = check_column(&cols[i]);
    if (rc)
      return rc;
    if (find_column(cols, i, cols[i].name) >= 0)
      return sdb_fail(SOCHDB_INVALID, "column name '%s' appears twice", cols[i].name);
  }
  if (cols[0].type == SOCHDB_DOUBLE || (cols[0].flags & SOCHDB_NULLABLE))
    return sdb_fail(SOCHDB_INVALID, "the primary key (the first column, '%s') must be an int64, bytes or string "
                    "column that is not nullable", cols[0].name);
  return SOCHDB_OK;
}

/* Copy column c into tb's slot i. */
static void set_column(sochdb_table *tb, size_t i, const char *name, size_t nlen, unsigned type, unsigned flags)
{
  memcpy(tb->names[i], name, nlen);
  tb->names[i][nlen] = '\0';
  tb->cols[i] = (sochdb_column){ .name = tb->names[i], .type = type, .flags = flags };
  tb->types[i] = (uint8_t)type;
}

/* ---- the schema blob ------------------------------------------------------- */

static size_t schema_key(const char *name, uint8_t *key)
{
  char meta[sizeof SCHEMA_PREFIX + SOCHDB_MAX_NAME];
  size_t n = (size_t)snprintf(meta, sizeof meta, "%s%s", SCHEMA_PREFIX, name);
  return rowfmt_meta_key(key, meta, n);
}

static size_t schema_encode(const sochdb_table *tb, uint8_t *out)
{
  out[0] = SCHEMA_VERSION;
  st32(out + 1, tb->id);
  st32(out + 5, tb->gen);
  out[9] = (uint8_t)tb->ncols;
  size_t n = 10;
  for (size_t i = 0; i < tb->ncols; i++) {
    size_t len = strlen(tb->names[i]);
    out[n] = tb->types[i];
    out[n + 1] = (uint8_t)tb->cols[i].flags;
    out[n + 2] = (uint8_t)len;
    memcpy(out + n + 3, tb->names[i], len);
    n += 3 + len;
  }
  return n;
}

static int bad_schema(const char *name)
{
  return sdb_fail(SOCHDB_CORRUPT, "the stored schema of table '%s' is malformed", name);
}

static int schema_decode(const uint8_t *p, size_t n, sochdb_table *tb)
{
  if (n < 10 || p[0] != SCHEMA_VERSION || p[9] == 0 || p[9] > SOCHDB_MAX_COLUMNS)
    return bad_schema(tb->name);
  tb->id = ld32(p + 1);
  tb->gen = ld32(p + 5);
  tb->ncols = p[9];
  size_t at = 10;
  for (size_t i = 0; i < tb->ncols; i++) {
    if (n - at < 3 || p[at + 2] == 0 || p[at + 2] > SOCHDB_MAX_NAME || n - at - 3 < p[at + 2])
      return bad_schema(tb->name);
    if (memchr(p + at + 3, 0, p[at + 2]))
      return bad_schema(tb->name);
    set_column(tb, i, (const char *)p + at + 3, p[at + 2], p[at], p[at + 1]);
    at += 3 + p[at + 2];
  }
  if (at != n || check_schema(tb->cols, tb->ncols) != SOCHDB_OK)
    return bad_schema(tb->name);
  return SOCHDB_OK;
}

/* tb's schema as the stored one, in t: SOCHDB_NOTFOUND if there is none. */
static int schema_read(sochdb_txn *t, const char *name, sochdb_table *tb)
{
  uint8_t key[META_KEY_MAX];
  size_t klen = schema_key(name, key);
  const void *v;
  size_t vlen;
  snprintf(tb->name, sizeof tb->name, "%s", name);
  int rc = sdb_get(t, key, klen, &v, &vlen);
  return rc ? rc : schema_decode(v, vlen, tb);   /* NOTFOUND without a message: create succeeds on it */
}

/* rc, with the message of a missing table when it is SOCHDB_NOTFOUND. */
static int no_table(int rc, const char *name)
{
  return rc == SOCHDB_NOTFOUND ? sdb_fail(rc, "no table '%s'", name) : rc;
}

static int schema_write(sochdb_txn *t, const sochdb_table *tb)
{
  uint8_t key[META_KEY_MAX], blob[SCHEMA_MAX];
  size_t klen = schema_key(tb->name, key);
  return sdb_write(t, key, klen, blob, schema_encode(tb, blob), 0);
}

/* Take the next table id in t. */
static int next_table_id(sochdb_txn *t, uint32_t *id)
{
  uint8_t key[META_KEY_MAX], val[4];
  size_t klen = rowfmt_meta_key(key, NEXT_ID_NAME, strlen(NEXT_ID_NAME));
  const void *v;
  size_t vlen;
  int rc = sdb_get(t, key, klen, &v, &vlen);
  if (rc == SOCHDB_NOTFOUND)
    *id = 1;
  else if (rc)
    return rc;
  else if (vlen != 4 || ld32(v) == 0)
    return sdb_fail(SOCHDB_CORRUPT, "the stored next table id is malformed");
  else
    *id = ld32(v);
  if (*id == UINT32_MAX)
    return sdb_fail(SOCHDB_INVALID, "no table id is left");
  st32(val, *id + 1);
  return sdb_write(t, key, klen, val, sizeof val, 0);
}

static const sochdb_table *seen_table(const struct sdb_table_records *seen, uint32_t id)
{
  for (size_t i = 0; i < seen->n; i++)
    if (seen->tables[i]->id == id)
      return seen->tables[i];
  return NULL;
}

/* A row of the table with id `id` under key (klen bytes), checked as a read
** of it would decode it, and its primary key (column 0) the key's own. */
static int row_record_check(const struct sdb_table_records *seen, uint32_t id, const uint8_t *key, size_t klen,
                            const uint8_t *val, size_t vlen)
{
  const sochdb_table *tb = seen_table(seen, id);
  if (!tb)
    return sdb_fail(SOCHDB_CORRUPT, "a row of table id %u, which no schema before it names", (unsigned)id);
  unsigned ncols;
  sochdb_value vals[SOCHDB_MAX_COLUMNS];
  int rc = sdb_row_decode(tb, val, vlen, UINT64_MAX, &ncols, vals);
  if (rc == SOCHDB_OK && (ncols == 0 || ncols > tb->ncols))
    rc = sdb_fail(SOCHDB_CORRUPT, "a row of table '%s' has %u columns; the table has %zu", tb->name, ncols,
                  tb->ncols);
  for (unsigned c = 0; rc == SOCHDB_OK && c < ncols; c++)
    rc = sdb_row_check_null(tb, c, &vals[c]);
  if (rc != SOCHDB_OK)
    return rc;
  uint8_t pk[SOCHDB_MAX_KEY];
  if (vals[0].len > SOCHDB_MAX_KEY - ROWFMT_PREFIX_LEN ||
      rowfmt_pk_encode(pk, tb->types[0], &vals[0]) != klen - ROWFMT_PREFIX_LEN ||
      memcmp(pk, key + ROWFMT_PREFIX_LEN, klen - ROWFMT_PREFIX_LEN) != 0)
    return sdb_fail(SOCHDB_CORRUPT, "a row of table '%s' is under another primary key than its first column's",
                    tb->name);
  return SOCHDB_OK;
}

/* A schema record: decoded, and kept for the rows after it. */
static int schema_record_check(struct sdb_table_records *seen, const char *name, size_t nlen, const uint8_t *val,
                               size_t vlen)
{
  if (seen->n == seen->cap) {
    size_t cap = seen->cap ? seen->cap * 2 : 8;
    sochdb_table **more = realloc(seen->tables, cap * sizeof *more);
    if (!more)
      return sdb_fail(SOCHDB_NOMEM, "checking a schema");
    seen->tables = more;
    seen->cap = cap;
  }
  sochdb_table *tb = calloc(1, sizeof *tb);
  if (!tb)
    return sdb_fail(SOCHDB_NOMEM, "checking a schema");
  memcpy(tb->name, name, nlen);
  int rc = schema_decode(val, vlen, tb);
  if (rc == SOCHDB_OK && tb->id == 0)
    rc = bad_schema(tb->name);
  if (rc == SOCHDB_OK && seen_table(seen, tb->id))
    rc = sdb_fail(SOCHDB_CORRUPT, "tables '%s' and '%s' both have id %u", seen_table(seen, tb->id)->name, tb->name,
                  (unsigned)tb->id);
  if (rc != SOCHDB_OK) {
    free(tb);
    return rc;
  }
  seen->tables[seen->n++] = tb;
  return SOCHDB_OK;
}

void sdb_table_records_free(struct sdb_table_records *seen)
{
  for (size_t i = 0; i < seen->n; i++)
    free(seen->tables[i]);
  free(seen->tables);
  memset(seen, 0, sizeof *seen);
}

int sdb_table_record_check(struct sdb_table_records *seen, const uint8_t *key, size_t klen, const uint8_t *val,
                           size_t vlen)
{
  uint32_t id;
  if (rowfmt_key_table(key, klen, &id) && klen > ROWFMT_PREFIX_LEN && id != 0)
    return row_record_check(seen, id, key, klen, val, vlen);
  if (klen < 3 || !rowfmt_reserved(key, klen) || key[2] != ROWFMT_META)
    return sdb_fail(SOCHDB_INVALID, "the key is no columnar table's");
  const char *name = (const char *)key + 3;
  size_t n = klen - 3, pl = strlen(SCHEMA_PREFIX);
  if (n == strlen(NEXT_ID_NAME) && memcmp(name, NEXT_ID_NAME, n) == 0) {
    if (vlen != 4 || ld32(val) == 0)
      return sdb_fail(SOCHDB_CORRUPT, "the next table id is malformed (%zu bytes)", vlen);
    return SOCHDB_OK;
  }
  if (n <= pl || n - pl > SOCHDB_MAX_NAME || memcmp(name, SCHEMA_PREFIX, pl) != 0 || memchr(name + pl, 0, n - pl))
    return sdb_fail(SOCHDB_INVALID, "the key is no columnar table's");
  return schema_record_check(seen, name + pl, n - pl, val, vlen);
}

/* ---- create / open / close ------------------------------------------------- */

/* tb's columns are still the table's first columns, under its id, in t's
** snapshot. Not so for a handle opened in a transaction that created the
** table or added a column and then rolled back (ids and generations are
** handed out again: its rows would be decoded by another schema), nor for
** one opened on a snapshot newer than t's. A handle older than a committed
** add_column passes: rows without the new column read it as NULL. */
static int schema_match(const sochdb_table *tb, const sochdb_column *cols, size_t ncols);

static int check_handle_current(sochdb_txn *t, const sochdb_table *tb)
{
  sochdb_table *cur = malloc(sizeof *cur);
  if (!cur)
    return sdb_fail(SOCHDB_NOMEM, "checking a table handle");
  int rc = schema_read(t, tb->name, cur);
  int same = rc == SOCHDB_OK && cur->id == tb->id && cur->ncols >= tb->ncols &&
             (cur->gen > tb->gen || (cur->gen == tb->gen && cur->ncols == tb->ncols));
  if (same) {
    cur->ncols = tb->ncols;   /* the stored schema's first columns, compared as table_open compares */
    same = schema_match(cur, tb->cols, tb->ncols) == SOCHDB_OK;
  }
  free(cur);
  if (rc != SOCHDB_OK && rc != SOCHDB_NOTFOUND)
    return rc;
  if (!same)
    return sdb_fail(SOCHDB_INVALID, "table '%s' in this transaction's snapshot is not the one the handle was opened "
                    "on (its creation or an added column was rolled back, or the snapshot is older than the "
                    "handle): open it again", tb->name);
  return SOCHDB_OK;
}

int sdb_table_check(sochdb_txn *t, const sochdb_table *tb)
{
  int rc = sdb_check_txn(t);
  if (rc == SOCHDB_OK && !tb)
    rc = sdb_fail(SOCHDB_INVALID, "NULL table");
  if (rc == SOCHDB_OK && tb->db != t->db)   /* its schema may differ there, or not exist */
    rc = sdb_fail(SOCHDB_INVALID, "table '%s' was opened on another database handle", tb->name);
  if (rc != SOCHDB_OK)
    return rc;
  const unsigned ring = sizeof t->tables_checked / sizeof t->tables_checked[0];
  for (unsigned i = 0; i < t->ntables_checked && i < ring; i++)
    if (t->tables_checked[i] == tb->serial)
      return SOCHDB_OK;   /* a rollback cannot happen inside t: once is enough */
  rc = check_handle_current(t, tb);
  if (rc == SOCHDB_OK)
    t->tables_checked[t->ntables_checked++ % ring] = tb->serial;
  return rc;
}

static int check_writer(const sochdb_txn *t)
{
  int rc = sdb_check_txn(t);
  if (rc == SOCHDB_OK && (t->flags & SOCHDB_TXN_READONLY))
    return sdb_fail(SOCHDB_INVALID, "write in a read-only transaction");
  return rc;
}

int sochdb_table_create(sochdb_txn *t, const char *name, const sochdb_column *cols, size_t ncols)
{
  int rc = check_writer(t);
  if (rc == SOCHDB_OK)
    rc = check_name("table", name);
  if (rc == SOCHDB_OK)
    rc = check_schema(cols, ncols);
  if (rc)
    return rc;
  sochdb_table *tb = calloc(1, sizeof *tb);
  if (!tb)
    return sdb_fail(SOCHDB_NOMEM, "creating a table");
  rc = schema_read(t, name, tb);
  if (rc == SOCHDB_OK)
    rc = sdb_fail(SOCHDB_INVALID, "table '%s' exists", name);
  else if (rc == SOCHDB_NOTFOUND)
    rc = next_table_id(t, &tb->id);
  if (rc == SOCHDB_OK) {
    snprintf(tb->name, sizeof tb->name, "%s", name);
    tb->gen = 1;
    tb->ncols = ncols;
    for (size_t i = 0; i < ncols; i++)
      set_column(tb, i, cols[i].name, strlen(cols[i].name), cols[i].type, cols[i].flags);
    rc = schema_write(t, tb);
  }
  free(tb);
  return rc;
}

static const char *type_name(unsigned type)
{
  static const char *const names[] = { "?", "int64", "double", "bytes", "string" };
  return type <= SOCHDB_STRING ? names[type] : "?";
}

/* The stored schema tb against the caller's cols: SOCHDB_INVALID naming the
** first difference. */
static int schema_match(const sochdb_table *tb, const sochdb_column *cols, size_t ncols)
{
  for (size_t i = 0; i < ncols && i < tb->ncols; i++) {
    const sochdb_column *a = &tb->cols[i], *b = &cols[i];
    if (!b->name || strcmp(a->name, b->name) || a->type != b->type || a->flags != b->flags)
      return sdb_fail(SOCHDB_INVALID, "table '%s' has a different schema: its column %zu is '%s' %s%s, not '%s' %s%s",
                      tb->name, i, a->name, type_name(a->type), a->flags ? " nullable" : "",
                      b->name ? b->name : "(null)", type_name(b->type), b->flags ? " nullable" : "");
  }
  if (ncols != tb->ncols)
    return sdb_fail(SOCHDB_INVALID, "table '%s' has a different schema: %zu columns, not %zu", tb->name, tb->ncols,
                    ncols);
  return SOCHDB_OK;
}

int sochdb_table_open(sochdb_txn *t, const char *name, const sochdb_column *cols, size_t ncols, sochdb_table **out)
{
  int rc = sdb_check_txn(t);
  if (rc == SOCHDB_OK && !out)
    rc = sdb_fail(SOCHDB_INVALID, "NULL table output");
  if (rc == SOCHDB_OK)
    rc = check_name("table", name);
  if (rc)
    return rc;
  *out = NULL;
  sochdb_table *tb = calloc(1, sizeof *tb);
  if (!tb)
    return sdb_fail(SOCHDB_NOMEM, "opening a table");
  rc = no_table(schema_read(t, name, tb), name);
  if (rc == SOCHDB_OK && cols)
    rc = schema_match(tb, cols, ncols);
  if (rc) {
    free(tb);
    return rc;
  }
  static _Atomic uint64_t serials;
  tb->db = t->db;
  tb->serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;   /* uniqueness only */
  *out = tb;
  return SOCHDB_OK;
}

void sochdb_table_close(sochdb_table *tb) { free(tb); }

int sochdb_table_schema(const sochdb_table *tb, const sochdb_column **cols, size_t *ncols, uint32_t *id)
{
  if (!tb || !cols || !ncols)
    return sdb_fail(SOCHDB_INVALID, "NULL argument to sochdb_table_schema");
  *cols = tb->cols;
  *ncols = tb->ncols;
  if (id)
    *id = tb->id;
  return SOCHDB_OK;
}

int sochdb_table_add_column(sochdb_txn *t, sochdb_table *tb, const sochdb_column *col)
{
  int rc = check_writer(t);
  if (rc == SOCHDB_OK)
    rc = sdb_table_check(t, tb);
  if (rc == SOCHDB_OK && !col)
    rc = sdb_fail(SOCHDB_INVALID, "NULL column");
  if (rc == SOCHDB_OK)
    rc = check_column(col);
  if (rc)
    return rc;
  if (!(col->flags & SOCHDB_NULLABLE))
    return sdb_fail(SOCHDB_INVALID, "an added column must be nullable ('%s' is not)", col->name);
  if (tb->ncols == SOCHDB_MAX_COLUMNS)
    return sdb_fail(SOCHDB_INVALID, "table '%s' has %u columns already", tb->name, SOCHDB_MAX_COLUMNS);
  if (find_column(tb->cols, tb->ncols, col->name) >= 0)
    return sdb_fail(SOCHDB_INVALID, "table '%s' has a column '%s' already", tb->name, col->name);
  sochdb_table *now = calloc(1, sizeof *now);
  if (!now)
    return sdb_fail(SOCHDB_NOMEM, "adding a column");
  rc = no_table(schema_read(t, tb->name, now), tb->name);
  if (rc == SOCHDB_OK && (now->id != tb->id || now->gen != tb->gen))
    rc = sdb_fail(SOCHDB_CONFLICT, "the schema of table '%s' changed since it was opened; open it again",
                  tb->name);
  if (rc == SOCHDB_OK) {
    set_column(now, now->ncols, col->name, strlen(col->name), col->type, col->flags);
    now->ncols++;
    now->gen++;
    rc = schema_write(t, now);
  }
  free(now);
  return rc;
}

/* ---- rows ------------------------------------------------------------------- */

size_t sdb_row_key(const sochdb_table *tb, const sochdb_value *pk, uint8_t *key)
{
  unsigned type = tb->types[0];
  if (pk->is_null) {   /* the primary key is never NULL: no row has it */
    sdb_fail(SOCHDB_INVALID, "a NULL primary key (table '%s')", tb->name);
    return 0;
  }
  if (type != SOCHDB_INT64 && pk->len > SOCHDB_MAX_PK) {
    sdb_fail(SOCHDB_INVALID, "a primary key of %zu bytes; the limit is %u", pk->len, SOCHDB_MAX_PK);
    return 0;
  }
  if (type != SOCHDB_INT64 && pk->len && !pk->bytes) {
    sdb_fail(SOCHDB_INVALID, "a primary key of %zu bytes at NULL", pk->len);
    return 0;
  }
  rowfmt_row_prefix(key, tb->id);
  return ROWFMT_PREFIX_LEN + rowfmt_pk_encode(key + ROWFMT_PREFIX_LEN, type, pk);
}

int sdb_row_decode(const sochdb_table *tb, const uint8_t *p, size_t n, uint64_t mask, unsigned *ncols,
                   sochdb_value *vals)
{
  uint8_t types[SOCHDB_MAX_COLUMNS];
  if (rowfmt_decode_some(p, n, SOCHDB_MAX_COLUMNS, mask, ncols, types, vals) != 0)
    return sdb_fail(SOCHDB_CORRUPT, "a row of table '%s' is malformed", tb->name);
  for (unsigned j = 0; j < *ncols && j < tb->ncols; j++)
    if (types[j] != tb->types[j])
      return sdb_fail(SOCHDB_CORRUPT, "a row of table '%s' holds a %s in column '%s' (%s)", tb->name,
                      type_name(types[j]), tb->names[j], type_name(tb->types[j]));
  return SOCHDB_OK;
}

void sdb_row_column(const sochdb_value *vals, unsigned ncols, unsigned c, sochdb_value *out)
{
  if (c < ncols) {
    *out = vals[c];
  } else {
    memset(out, 0, sizeof *out);
    out->is_null = 1;
  }
}

int sdb_row_check_null(const sochdb_table *tb, unsigned c, const sochdb_value *v)
{
  if (v->is_null && !(tb->cols[c].flags & SOCHDB_NULLABLE))
    return sdb_fail(SOCHDB_CORRUPT, "a row of table '%s' holds NULL in column '%s', which is not nullable", tb->name,
                    tb->names[c]);
  return SOCHDB_OK;
}

int sdb_row_columns_out(const sochdb_table *tb, const sochdb_value *vals, unsigned nv, const unsigned *cols, size_t n,
                        sochdb_value *out)
{
  for (size_t i = 0; i < n; i++) {
    unsigned c = cols ? cols[i] : (unsigned)i;
    sdb_row_column(vals, nv, c, &out[i]);
    int rc = sdb_row_check_null(tb, c, &out[i]);
    if (rc != SOCHDB_OK)
      return rc;
  }
  return SOCHDB_OK;
}

static int check_values(const sochdb_table *tb, const sochdb_value *values)
{
  for (size_t j = 0; j < tb->ncols; j++) {
    const sochdb_value *v = &values[j];
    if (v->is_null && !(tb->cols[j].flags & SOCHDB_NULLABLE))
      return sdb_fail(SOCHDB_INVALID, "column '%s' of table '%s' is not nullable", tb->names[j], tb->name);
    if (v->is_null || rowfmt_fixed(tb->types[j]))
      continue;
    if (v->len && !v->bytes)
      return sdb_fail(SOCHDB_INVALID, "column '%s': %zu bytes at NULL", tb->names[j], v->len);
    if (v->len > SOCHDB_MAX_VALUE)   /* checked one by one: a sum of lengths near SIZE_MAX wraps */
      return sdb_fail(SOCHDB_INVALID, "column '%s': a value of %zu bytes; a row is at most %u",
                      tb->names[j], v->len, SOCHDB_MAX_VALUE);
  }
  return SOCHDB_OK;
}

/* Encode the row into a stack buffer, or a malloc'ed one (*heap) when big. */
static int encode_row(const sochdb_table *tb, const sochdb_value *values, uint8_t *stack, size_t cap,
                      uint8_t **row, size_t *n, uint8_t **heap)
{
  size_t size = rowfmt_size((unsigned)tb->ncols, tb->types, values);
  if (size > SOCHDB_MAX_VALUE)
    return sdb_fail(SOCHDB_INVALID, "a row of %zu bytes; the limit is %u", size, SOCHDB_MAX_VALUE);
  *heap = NULL;
  *row = stack;
  if (size > cap && !(*row = *heap = malloc(size)))
    return sdb_fail(SOCHDB_NOMEM, "encoding a row of %zu bytes", size);
  *n = rowfmt_encode(*row, (unsigned)tb->ncols, tb->types, values);
  return SOCHDB_OK;
}

static int check_row_call(sochdb_txn *t, const sochdb_table *tb, const void *values)
{
  int rc = sdb_table_check(t, tb);
  if (rc == SOCHDB_OK && !values)
    return sdb_fail(SOCHDB_INVALID, "NULL values");
  return rc;
}

int sochdb_row_put(sochdb_txn *t, sochdb_table *tb, const sochdb_value *values)
{
  int rc = check_row_call(t, tb, values);
  if (rc == SOCHDB_OK)
    rc = check_values(tb, values);
  if (rc)
    return rc;
  uint8_t key[SOCHDB_MAX_KEY], stack[1024];
  size_t klen = sdb_row_key(tb, &values[0], key);
  if (!klen)
    return SOCHDB_INVALID;
  uint8_t *row = NULL, *heap = NULL;
  size_t n = 0;
  rc = encode_row(tb, values, stack, sizeof stack, &row, &n, &heap);
  if (rc == SOCHDB_OK)
    rc = sdb_write(t, key, klen, row, n, 0);
  free(heap);
  return rc;
}

int sochdb_row_delete(sochdb_txn *t, sochdb_table *tb, const sochdb_value *pk)
{
  int rc = check_row_call(t, tb, pk);
  if (rc)
    return rc;
  uint8_t key[SOCHDB_MAX_KEY];
  size_t klen = sdb_row_key(tb, pk, key);
  return klen ? sdb_write(t, key, klen, NULL, 0, 1) : SOCHDB_INVALID;
}

static int check_cols(const sochdb_table *tb, const unsigned *cols, size_t ncols)
{
  for (size_t i = 0; cols && i < ncols; i++)
    if (cols[i] >= tb->ncols)
      return sdb_fail(SOCHDB_INVALID, "column %u of table '%s', which has %zu", cols[i], tb->name, tb->ncols);
  return SOCHDB_OK;
}

int sochdb_row_get(sochdb_txn *t, sochdb_table *tb, const sochdb_value *pk, const unsigned *cols, size_t ncols,
                   sochdb_value *out)
{
  int rc = check_row_call(t, tb, pk);
  if (rc == SOCHDB_OK && !out)
    rc = sdb_fail(SOCHDB_INVALID, "NULL row output");
  if (rc == SOCHDB_OK)
    rc = check_cols(tb, cols, ncols);
  if (rc)
    return rc;
  uint8_t key[SOCHDB_MAX_KEY];
  size_t klen = sdb_row_key(tb, pk, key);
  if (!klen)
    return SOCHDB_INVALID;
  const void *v;
  size_t vlen;
  if ((rc = sdb_get(t, key, klen, &v, &vlen)))
    return rc;
  sochdb_value vals[SOCHDB_MAX_COLUMNS];
  unsigned nv;
  if ((rc = sdb_row_decode(tb, v, vlen, ~0ull, &nv, vals)))
    return rc;
  return sdb_row_columns_out(tb, vals, nv, cols, cols ? ncols : tb->ncols, out);
}
