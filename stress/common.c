/*
** common.c — sochdb-stress's shared helpers: defaults, the clock, the random
** generator, files, the text buffer, key names and the binary value format
** (header, ids, then padding whose bytes derive from the writer's id so that
** a reader can tell a torn or mixed-up value from the real one).
*/
#include "stress.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ config */

void st_cfg_defaults(st_cfg *c)
{
  memset(c, 0, sizeof *c);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  c->workers = cores > 0 ? (int)(2 * cores) : 4;
  if (c->workers > ST_MAX_WORKERS) c->workers = ST_MAX_WORKERS;
  c->seconds = 10;
  c->keys = 256;
  c->hot = 4;
  c->hot_pct = 40;
  c->maxlen = 32;
  c->accounts = 8;
  c->balance = 1000;
  c->registers = 32;
  c->sync_pct = 50;
  c->large_pct = 1;
  c->seed = (uint64_t)st_now_ns() ^ ((uint64_t)getpid() << 32);
  c->cycles = 10;
  c->cycle_ms = 2000;
  c->remove_pct = 30;
  c->stall_s = 60;
  c->table_pct = 13;
  c->table_keys = 16;
}

sochdb *st_open_db(const st_cfg *c)
{
  char path[4200];
  st_path(path, sizeof path, c->dir, "db");
  sochdb_options o;
  memset(&o, 0, sizeof o);
  o.region_bytes = c->region_mb << 20;
  o.memtable_bytes = c->memtable_mb << 20;
  o.busy_timeout_ms = 20000;
  int rc = SOCHDB_OK;
  for (int attempt = 0; attempt < 50; attempt++) {
    sochdb *db = NULL;
    rc = sochdb_open(path, &o, &db);
    if (rc == SOCHDB_OK) return db;
    st_sleep_ms(100);
  }
  fprintf(stderr, "sochdb-stress: open %s: %s (%s)\n", path, sochdb_strerror(rc), sochdb_last_error());
  return NULL;
}

/* ------------------------------------------------------------ helpers */

int64_t st_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void st_sleep_ms(unsigned ms)
{
  struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint64_t st_rand(uint64_t *s)
{
  uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

unsigned st_below(uint64_t *s, unsigned n)
{
  return n ? (unsigned)(st_rand(s) % n) : 0;
}

int st_write_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

int st_mkdir(const char *path)
{
  return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int rmrf_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)sb; (void)flag; (void)ftw;
  return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int st_rmrf(const char *path)
{
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  return nftw(path, rmrf_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

char *st_path(char *out, size_t n, const char *dir, const char *name)
{
  snprintf(out, n, "%s/%s", dir, name);
  return out;
}

/* ------------------------------------------------------------ text buffer */

void st_buf_reserve(st_buf *b, size_t extra)
{
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    fprintf(stderr, "sochdb-stress: out of memory\n");
    abort();
  }
  b->p = p;
  b->cap = cap;
}

void st_buf_printf(st_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  st_buf_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void st_buf_free(st_buf *b)
{
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------ keys */

void st_chain_key(char *out, size_t n, char fam, unsigned idx, unsigned gen)
{
  snprintf(out, n, "%c/%04x/%06x", fam, idx, gen);
}

void st_chain_end(char *out, size_t n, char fam, unsigned idx)
{
  snprintf(out, n, "%c/%04x/~", fam, idx);
}

void st_gen_key(char *out, size_t n, char fam, unsigned idx)
{
  snprintf(out, n, "G/%c%04x", fam, idx);
}

void st_reg_key(char *out, size_t n, unsigned idx)
{
  snprintf(out, n, "D/%04x", idx);
}

void st_acct_key(char *out, size_t n, unsigned idx)
{
  snprintf(out, n, "B/%04x", idx);
}

/* ------------------------------------------------------------ values */

static void put64(unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void put32(unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The padding's first byte and stride come from the id of the value's writer
** (its last id), so that padding copied from another value is noticed. */
static unsigned char pad_byte(uint64_t writer, uint32_t i)
{
  uint64_t h = writer * UINT64_C(0x9E3779B97F4A7C15);
  return (unsigned char)((h >> 56) + i * (((h >> 48) & 0xfe) | 1));
}

static uint64_t val_writer(const st_val *v)
{
  return v->nids ? v->ids[v->nids - 1] : 0;
}

size_t st_val_encode(const st_val *v, st_buf *s)
{
  size_t len = ST_VAL_HEADER + 8u * v->nids + v->padlen;
  s->len = 0;
  st_buf_reserve(s, len);
  unsigned char *p = (unsigned char *)s->p;
  memset(p, 0, ST_VAL_HEADER);
  p[0] = ST_VAL_MAGIC;
  p[1] = (unsigned char)v->flags;
  put32(p + 4, v->nids);
  put32(p + 8, v->padlen);
  put64(p + 16, (uint64_t)v->num);
  for (uint32_t i = 0; i < v->nids; i++) put64(p + ST_VAL_HEADER + 8u * i, v->ids[i]);
  unsigned char *pad = p + ST_VAL_HEADER + 8u * v->nids;
  uint64_t w = val_writer(v);
  for (uint32_t i = 0; i < v->padlen; i++) pad[i] = pad_byte(w, i);
  s->len = len;
  return len;
}

static int pad_ok(const unsigned char *pad, uint32_t n, uint64_t writer)
{
  for (uint32_t i = 0; i < n; i++)
    if (pad[i] != pad_byte(writer, i)) return 0;
  return 1;
}

void st_val_decode(const void *buf, size_t len, st_val *v)
{
  const unsigned char *p = buf;
  memset(v, 0, offsetof(st_val, ids));
  v->present = 1;
  if (len < ST_VAL_HEADER || p[0] != ST_VAL_MAGIC) goto corrupt;
  v->flags = p[1];
  v->nids = get32(p + 4);
  v->padlen = get32(p + 8);
  v->num = (int64_t)get64(p + 16);
  if (v->nids > ST_MAX_LIST || len != ST_VAL_HEADER + 8u * v->nids + (size_t)v->padlen) goto corrupt;
  for (uint32_t i = 0; i < v->nids; i++) v->ids[i] = get64(p + ST_VAL_HEADER + 8u * i);
  if (!pad_ok(p + ST_VAL_HEADER + 8u * v->nids, v->padlen, val_writer(v))) goto corrupt;
  return;
corrupt:
  v->corrupt = 1;
  v->nids = 0;
}

void st_buf_id(st_buf *b, uint64_t id)
{
  st_buf_printf(b, "%x.%llx", (unsigned)ST_ID_W(id), (unsigned long long)ST_ID_C(id));
}

void st_buf_obs(st_buf *b, const st_val *v)
{
  if (!v->present) {
    st_buf_printf(b, "-");
    return;
  }
  if (v->corrupt) {
    st_buf_printf(b, "?");
    return;
  }
  st_buf_printf(b, "%lld:%u:%u:", (long long)v->num, (unsigned)v->padlen, v->flags);
  for (uint32_t i = 0; i < v->nids; i++) {
    if (i) st_buf_printf(b, ",");
    st_buf_id(b, v->ids[i]);
  }
}

/* ------------------------------------------------------------ the table */

const sochdb_column st_table_cols[ST_TCOLS] = {
  { "id", SOCHDB_INT64, 0 },
  { "list", SOCHDB_BYTES, 0 },
  { "bal", SOCHDB_INT64, 0 },
  { "note", SOCHDB_STRING, SOCHDB_NULLABLE },
  { "val", SOCHDB_DOUBLE, 0 },
};

int64_t st_row_pk(unsigned idx, unsigned gen)
{
  return ((int64_t)idx << 24) | (int64_t)gen;
}

void st_row_key(char *out, size_t n, int64_t pk)
{
  if (pk >= ST_ROW_REG)
    snprintf(out, n, "V/%04llx", (unsigned long long)(pk - ST_ROW_REG));
  else if (pk >= ST_ROW_BANK)
    snprintf(out, n, "U/%04llx", (unsigned long long)(pk - ST_ROW_BANK));
  else
    st_chain_key(out, n, 'T', (unsigned)(pk >> 24), (unsigned)(pk & 0xffffff));
}

int st_table_get(sochdb *db, int create, sochdb_table **out)
{
  int rc = SOCHDB_CONFLICT;
  *out = NULL;
  for (int attempt = 0; attempt < 100; attempt++) {
    sochdb_txn *t = NULL;
    rc = sochdb_txn_begin(db, create ? 0 : SOCHDB_TXN_READONLY, &t);
    if (rc != SOCHDB_OK) {
      st_sleep_ms(20);
      continue;
    }
    if (create) {
      rc = sochdb_table_create(t, ST_TABLE, st_table_cols, ST_TCOLS);
      rc = rc == SOCHDB_OK ? sochdb_commit(t, SOCHDB_SYNC) : (sochdb_abort(t), rc);
      if (rc == SOCHDB_OK) return SOCHDB_OK;
    } else {
      rc = sochdb_table_open(t, ST_TABLE, st_table_cols, ST_TCOLS, out);
      sochdb_abort(t);
      if (rc == SOCHDB_OK) return SOCHDB_OK;
    }
    if (rc != SOCHDB_CONFLICT && rc != SOCHDB_BUSY && rc != SOCHDB_DAEMON) return rc;
    st_sleep_ms(20);
  }
  return rc;
}
