/*
** txlog.c — transactions that write their own history: every read, write and
** scan of a transaction is noted in memory; just before the commit call the
** whole intent (T line, body, I line) goes to the history file in one
** write(2), and the outcome (O line) in another right after the call. A
** process killed by SIGKILL therefore leaves a usable prefix in the page
** cache: an intent without its outcome is a commit of unknown outcome, a
** torn intent is a transaction whose commit was never called. checker.h has
** the format.
*/
#include "stress.h"

#include <stdio.h>
#include <string.h>

const char *st_outcome_word(int rc)
{
  switch (rc) {
  case SOCHDB_OK:       return "ok";
  case SOCHDB_CONFLICT: return "conflict";
  case SOCHDB_BUSY:     return "busy";
  case SOCHDB_DAEMON:   return "daemon";
  case SOCHDB_INVALID:  return "invalid";
  case SOCHDB_NOMEM:    return "nomem";
  case SOCHDB_IO:       return "io";
  case SOCHDB_CORRUPT:  return "corrupt";
  default:              return "error";
  }
}

int st_tx_begin(st_tx *x, sochdb *db, int fd, uint64_t id, const char *kind, int ro, st_buf *scratch)
{
  memset(x, 0, sizeof *x);
  x->id = id;
  x->kind = kind;
  x->ro = ro;
  x->fd = fd;
  x->scratch = scratch;
  x->b0 = st_now_ns();
  int rc = sochdb_txn_begin(db, ro ? SOCHDB_TXN_READONLY : 0, &x->t);
  x->b1 = st_now_ns();
  return rc;
}

static void log_line(st_tx *x, char tag, const char *key, const st_val *v)
{
  st_buf_printf(&x->body, "%c %s ", tag, key);
  st_buf_obs(&x->body, v);
  st_buf_printf(&x->body, "\n");
}

int st_tx_get(st_tx *x, const char *key, st_val *v)
{
  const void *p;
  size_t n;
  int rc = sochdb_get(x->t, key, strlen(key), &p, &n);
  if (rc == SOCHDB_NOTFOUND) {
    v->present = 0;
    v->corrupt = 0;
    v->nids = 0;
  } else if (rc == SOCHDB_OK) {
    st_val_decode(p, n, v);
  } else {
    return rc;
  }
  log_line(x, 'R', key, v);
  return SOCHDB_OK;
}

int st_tx_put(st_tx *x, const char *key, const st_val *v)
{
  size_t n = st_val_encode(v, x->scratch);
  int rc = sochdb_put(x->t, key, strlen(key), x->scratch->p, n);
  if (rc == SOCHDB_OK) log_line(x, 'W', key, v);
  return rc;
}

int st_tx_del(st_tx *x, const char *key)
{
  int rc = sochdb_delete(x->t, key, strlen(key));
  if (rc == SOCHDB_OK) st_buf_printf(&x->body, "W %s -\n", key);
  return rc;
}

int st_tx_scan(st_tx *x, const char *lo, const char *hi, st_scan_fn *fn, void *arg, st_val *v)
{
  sochdb_iter *it = NULL;
  int rc = sochdb_iter_open(x->t, lo, strlen(lo), hi, strlen(hi), &it);
  if (rc != SOCHDB_OK) return rc;
  st_buf_printf(&x->body, "S %s %s\n", lo, hi);
  const void *k, *p;
  size_t kl, n;
  char key[SOCHDB_MAX_KEY + 1];
  while ((rc = sochdb_iter_next(it, &k, &kl, &p, &n)) == SOCHDB_OK) {
    st_val_decode(p, n, v);
    memcpy(key, k, kl);
    key[kl] = 0;
    log_line(x, 'R', key, v);
    if (fn) fn(arg, key, kl, v);
  }
  sochdb_iter_close(it);
  if (rc != SOCHDB_NOTFOUND) return rc;
  st_buf_printf(&x->body, "Z\n");
  return SOCHDB_OK;
}

/* The intent record: T line, the body, I line; one write(2). */
static int write_intent(st_tx *x, unsigned flags)
{
  st_buf rec = { 0 };
  char f = x->ro ? 'r' : (flags & SOCHDB_ASYNC) ? 'a' : 's';
  st_buf_printf(&rec, "T ");
  st_buf_id(&rec, x->id);
  st_buf_printf(&rec, " %s %c %lld %lld %lld\n", x->kind, f, (long long)x->b0, (long long)x->b1,
                (long long)x->c0);
  st_buf_reserve(&rec, x->body.len);
  memcpy(rec.p + rec.len, x->body.p, x->body.len);
  rec.len += x->body.len;
  st_buf_printf(&rec, "I ");
  st_buf_id(&rec, x->id);
  st_buf_printf(&rec, "\n");
  int rc = st_write_all(x->fd, rec.p, rec.len);
  st_buf_free(&rec);
  return rc;
}

static int write_outcome(st_tx *x, const char *word, int64_t c1)
{
  st_buf rec = { 0 };
  st_buf_printf(&rec, "O ");
  st_buf_id(&rec, x->id);
  st_buf_printf(&rec, " %s %lld\n", word, (long long)c1);
  int rc = st_write_all(x->fd, rec.p, rec.len);
  st_buf_free(&rec);
  return rc;
}

int st_tx_end(st_tx *x, int commit, unsigned flags)
{
  x->c0 = st_now_ns();
  if (write_intent(x, flags) != 0) {
    perror("sochdb-stress: writing the history");
    sochdb_abort(x->t);
    st_buf_free(&x->body);
    return SOCHDB_IO;
  }
  int rc = SOCHDB_OK;
  if (commit)
    rc = sochdb_commit(x->t, flags);
  else
    sochdb_abort(x->t);
  int64_t c1 = st_now_ns();
  x->t = NULL;
  const char *word = !commit ? "abort" : x->lie && rc == SOCHDB_OK ? "conflict" : st_outcome_word(rc);
  if (write_outcome(x, word, c1) != 0)
    perror("sochdb-stress: writing the history");
  st_buf_free(&x->body);
  return rc;
}

void st_tx_drop(st_tx *x)
{
  sochdb_abort(x->t);
  x->t = NULL;
  st_buf_free(&x->body);
}

/* ------------------------------------------------------------ table rows */

/* The observation of a row read with the columns of `mode` (ST_ROW_*). */
static void row_obs(int64_t pk, const sochdb_value *o, int mode, st_val *v)
{
  if (mode == ST_ROW_LIST) {
    if (o[0].is_null || o[0].i64 != pk || o[1].is_null) {
      v->present = 1;
      v->corrupt = 1;
      v->nids = 0;
    } else {
      st_val_decode(o[1].bytes, o[1].len, v);
    }
    return;
  }
  if (mode == ST_ROW_BAL) {
    memset(v, 0, offsetof(st_val, ids));
    v->present = 1;
    v->num = o[1].i64;
    v->corrupt = o[0].is_null || o[0].i64 != pk || o[1].is_null;
    return;
  }
  if (o[ST_C_ID].is_null || o[ST_C_ID].i64 != pk || o[ST_C_LIST].is_null) {
    v->present = 1;
    v->corrupt = 1;
    v->nids = 0;
    return;
  }
  st_val_decode(o[ST_C_LIST].bytes, o[ST_C_LIST].len, v);
  if (v->corrupt) return;
  /* the other columns must agree with the list */
  int bad = o[ST_C_BAL].is_null || o[ST_C_BAL].i64 != v->num || o[ST_C_VAL].is_null ||
            o[ST_C_VAL].f64 != (double)v->nids;
  if (!o[ST_C_NOTE].is_null) {
    char want[40];
    uint64_t last = v->nids ? v->ids[v->nids - 1] : 0;
    int n = snprintf(want, sizeof want, "%x.%llx", (unsigned)ST_ID_W(last), (unsigned long long)ST_ID_C(last));
    bad |= !v->nids || o[ST_C_NOTE].len != (size_t)n || memcmp(o[ST_C_NOTE].bytes, want, (size_t)n) != 0;
  }
  if (bad) v->corrupt = 1;
}

static const unsigned *proj(int mode)
{
  static const unsigned bal[2] = { ST_C_ID, ST_C_BAL }, list[2] = { ST_C_ID, ST_C_LIST };
  return mode == ST_ROW_ALL ? NULL : mode == ST_ROW_BAL ? bal : list;
}

int st_tx_row_get(st_tx *x, sochdb_table *tb, int64_t pk, int mode, st_val *v)
{
  sochdb_value key = { .i64 = pk }, o[ST_TCOLS];
  int rc = sochdb_row_get(x->t, tb, &key, proj(mode), mode == ST_ROW_ALL ? ST_TCOLS : 2, o);
  if (rc == SOCHDB_NOTFOUND) {
    v->present = 0;
    v->corrupt = 0;
    v->nids = 0;
  } else if (rc == SOCHDB_OK) {
    row_obs(pk, o, mode, v);
  } else {
    return rc;
  }
  char name[64];
  st_row_key(name, sizeof name, pk);
  log_line(x, 'R', name, v);
  return SOCHDB_OK;
}

int st_tx_row_put(st_tx *x, sochdb_table *tb, int64_t pk, const st_val *v, int with_note)
{
  size_t n = st_val_encode(v, x->scratch);
  char note[40];
  int nl = 0;
  if (with_note && v->nids) {
    uint64_t last = v->ids[v->nids - 1];
    nl = snprintf(note, sizeof note, "%x.%llx", (unsigned)ST_ID_W(last), (unsigned long long)ST_ID_C(last));
  }
  sochdb_value row[ST_TCOLS] = {
    [ST_C_ID] = { .i64 = pk },
    [ST_C_LIST] = { .bytes = x->scratch->p, .len = n },
    [ST_C_BAL] = { .i64 = v->num },
    [ST_C_NOTE] = { .is_null = nl == 0, .bytes = note, .len = (size_t)nl },
    [ST_C_VAL] = { .f64 = (double)v->nids },
  };
  int rc = sochdb_row_put(x->t, tb, row);
  if (rc == SOCHDB_OK) {
    char name[64];
    st_row_key(name, sizeof name, pk);
    log_line(x, 'W', name, v);
  }
  return rc;
}

int st_tx_row_del(st_tx *x, sochdb_table *tb, int64_t pk)
{
  sochdb_value key = { .i64 = pk };
  int rc = sochdb_row_delete(x->t, tb, &key);
  if (rc == SOCHDB_OK) {
    char name[64];
    st_row_key(name, sizeof name, pk);
    st_buf_printf(&x->body, "W %s -\n", name);
  }
  return rc;
}

int st_tx_row_scan(st_tx *x, sochdb_table *tb, int64_t pklo, int64_t pkhi, const char *klo, const char *khi,
                   int mode, int by_filter, st_scan_fn *fn, void *arg, st_val *v)
{
  sochdb_value lo = { .i64 = pklo }, hi = { .i64 = pkhi }, o[ST_TCOLS];
  sochdb_filter f = { .column = ST_C_ID, .op = SOCHDB_BETWEEN, .value = { .i64 = pklo },
                      .value2 = { .i64 = pkhi - 1 } };
  sochdb_scan *s = NULL;
  int rc = sochdb_table_scan(x->t, tb, by_filter ? NULL : &lo, by_filter ? NULL : &hi, proj(mode),
                             mode == ST_ROW_ALL ? ST_TCOLS : 2, by_filter ? &f : NULL, &s);
  if (rc != SOCHDB_OK) return rc;
  st_buf_printf(&x->body, "S %s %s\n", klo, khi);
  char name[64];
  while ((rc = sochdb_scan_next(s, o)) == SOCHDB_OK) {
    int64_t pk = o[0].i64;
    if (pk < pklo || pk >= pkhi) {   /* outside what was asked for: never a valid row of the range */
      rc = SOCHDB_CORRUPT;
      break;
    }
    row_obs(pk, o, mode, v);
    st_row_key(name, sizeof name, pk);
    log_line(x, 'R', name, v);
    if (fn) fn(arg, name, strlen(name), v);
  }
  sochdb_scan_close(s, NULL);
  if (rc != SOCHDB_NOTFOUND) return rc;
  st_buf_printf(&x->body, "Z\n");
  return SOCHDB_OK;
}
