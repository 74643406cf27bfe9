/*
** state.c — what the supervisor does to the database itself, always in a
** child process (so the supervisor never holds a handle while it forks
** workers and kills processes, and a hang is a timeout, not a stuck run):
**
**   st_setup       create the database and its bank accounts, the columnar
**                  table and its row accounts;
**   st_read_state  one read-only snapshot of everything a check needs — every
**                  account and register, every row of the table (all
**                  columns), every chain's generation pointer (L, E, F),
**                  and each chain's generations from the one before the
**                  pointer seen at the previous state read (the oldest a
**                  worker may read since) — written as a history record (kind
**                  "state") to a file of its own. With `marker`, a SOCHDB_SYNC
**                  commit of its own comes first: once it returns, every
**                  commit before it (a killed writer's decided commit too) is
**                  published and durable, so the state can no longer change
**                  behind the check.
*/
#include "stress.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Open the database and note where its region file is. */
static sochdb *open_db(const st_cfg *c, st_shared *sh)
{
  sochdb *db = st_open_db(c);
  if (db) snprintf(sh->region_path, sizeof sh->region_path, "%s", sochdb_region_path(db));
  return db;
}

/* Commit one put with SOCHDB_SYNC, retrying conflicts; SOCHDB_OK or why not. */
static int put_sync(sochdb *db, const char *key, const void *val, size_t n)
{
  int rc = SOCHDB_CONFLICT;
  for (int attempt = 0; attempt < 100 && rc == SOCHDB_CONFLICT; attempt++) {
    sochdb_txn *t = NULL;
    rc = sochdb_txn_begin(db, 0, &t);
    if (rc == SOCHDB_OK) rc = sochdb_put(t, key, strlen(key), val, n);
    if (rc == SOCHDB_OK) rc = sochdb_commit(t, SOCHDB_SYNC);
    else sochdb_abort(t);
  }
  return rc;
}

int st_setup(const st_cfg *c, st_shared *sh)
{
  sochdb *db = open_db(c, sh);
  if (!db) return -1;
  sochdb_txn *t = NULL;
  int rc = sochdb_txn_begin(db, 0, &t);
  st_buf scratch = { 0 };
  static st_val v;
  v.present = 1;
  v.nids = 1;
  v.ids[0] = ST_ID(0, 1);
  v.num = c->balance;
  char key[32];
  for (unsigned a = 0; a < c->accounts && rc == SOCHDB_OK; a++) {
    st_acct_key(key, sizeof key, a);
    size_t n = st_val_encode(&v, &scratch);
    rc = sochdb_put(t, key, strlen(key), scratch.p, n);
  }
  rc = rc == SOCHDB_OK ? sochdb_commit(t, SOCHDB_SYNC) : (sochdb_abort(t), rc);
  /* the table, then its row bank (the same accounts and balance as B/) */
  sochdb_table *tb = NULL;
  if (rc == SOCHDB_OK) rc = st_table_get(db, 1, &tb);
  if (rc == SOCHDB_OK) rc = st_table_get(db, 0, &tb);
  if (rc == SOCHDB_OK) rc = sochdb_txn_begin(db, 0, &t);
  if (rc == SOCHDB_OK) {
    st_tx x = { .t = t, .id = v.ids[0], .scratch = &scratch };
    for (unsigned a = 0; a < c->accounts && rc == SOCHDB_OK; a++) rc = st_tx_row_put(&x, tb, ST_ROW_BANK + a, &v, 0);
    st_buf_free(&x.body);
    rc = rc == SOCHDB_OK ? sochdb_commit(t, SOCHDB_SYNC) : (sochdb_abort(t), rc);
  }
  sochdb_table_close(tb);
  st_buf_free(&scratch);
  if (rc != SOCHDB_OK) fprintf(stderr, "sochdb-stress: setup: %s (%s)\n", sochdb_strerror(rc), sochdb_last_error());
  sochdb_close(db);
  return rc == SOCHDB_OK ? 0 : -1;
}

/* Scan the generations of chain (fam, idx) from the last pointer seen; note the new pointer. */
static int read_chain(st_tx *x, st_shared *sh, char fam, unsigned idx, st_val *v)
{
  char lo[64], hi[64];
  uint32_t *gen = &sh->gens[fam == 'L' ? 0 : fam == 'E' ? 1 : 2][idx];
  st_gen_key(lo, sizeof lo, fam, idx);
  int rc = st_tx_get(x, lo, v);
  if (rc != SOCHDB_OK) return rc;
  unsigned now = v->present && !v->corrupt ? (unsigned)v->num : 0;
  st_chain_key(lo, sizeof lo, fam, idx, *gen ? *gen - 1 : 0);   /* workers' scans start one before the pointer */
  st_chain_end(hi, sizeof hi, fam, idx);
  rc = st_tx_scan(x, lo, hi, NULL, NULL, v);
  if (rc == SOCHDB_OK && now > *gen) *gen = now;
  return rc;
}

static int read_all(const st_cfg *c, st_shared *sh, st_tx *x, sochdb_table *tb)
{
  static st_val v;
  int rc = st_tx_scan(x, "B/", "B0", NULL, NULL, &v);
  /* the table: every row of every chain (chains are few), every row account */
  if (rc == SOCHDB_OK) rc = st_tx_row_scan(x, tb, 0, ST_ROW_BANK, "T/", "T0", ST_ROW_ALL, 0, NULL, NULL, &v);
  if (rc == SOCHDB_OK)
    rc = st_tx_row_scan(x, tb, ST_ROW_BANK, 2 * ST_ROW_BANK, "U/", "U0", ST_ROW_ALL, 0, NULL, NULL, &v);
  if (rc == SOCHDB_OK)
    rc = st_tx_row_scan(x, tb, ST_ROW_REG, 2 * ST_ROW_REG, "V/", "V0", ST_ROW_ALL, 0, NULL, NULL, &v);
  if (rc == SOCHDB_OK) rc = st_tx_scan(x, "D/", "D0", NULL, NULL, &v);
  for (unsigned i = 0; i < c->keys && rc == SOCHDB_OK; i++) rc = read_chain(x, sh, 'L', i, &v);
  for (unsigned i = 0; i < c->registers && rc == SOCHDB_OK; i++) rc = read_chain(x, sh, 'E', i, &v);
  for (unsigned i = 0; i < c->registers && rc == SOCHDB_OK; i++) rc = read_chain(x, sh, 'F', i, &v);
  return rc;
}

/* After a normal run: did the rows go through flushes and compactions into
** columnar SSTable blocks, and did the table scans read them? */
static void print_engine(sochdb *db)
{
  sochdb_stats st;
  sochdb_scan_stats sc;
  if (sochdb_stats_get(db, &st) != SOCHDB_OK || sochdb_scan_stats_get(db, &sc) != SOCHDB_OK) return;
  printf("  engine         %llu flushes, %llu compactions; table scans: %llu, %llu rows, %llu SSTable blocks read"
         " (%llu direct, %llu skipped by the filter)\n", (unsigned long long)st.flushes,
         (unsigned long long)st.compactions, (unsigned long long)sc.scans, (unsigned long long)sc.rows,
         (unsigned long long)sc.blocks_read, (unsigned long long)sc.blocks_direct,
         (unsigned long long)sc.blocks_skipped);
  fflush(stdout);
}

int st_read_state(const st_cfg *c, st_shared *sh, const char *file, uint64_t id, int marker)
{
  sochdb *db = open_db(c, sh);
  if (!db) return -1;
  int rc = SOCHDB_OK;
  if (marker) {
    char val[32];
    snprintf(val, sizeof val, "%llx", (unsigned long long)id);
    rc = put_sync(db, "Z/marker", val, strlen(val));
    if (rc != SOCHDB_OK)
      fprintf(stderr, "sochdb-stress: marker commit: %s (%s)\n", sochdb_strerror(rc), sochdb_last_error());
  }
  int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  st_buf scratch = { 0 };
  st_tx x;
  sochdb_table *tb = NULL;
  if (rc == SOCHDB_OK) {
    rc = st_table_get(db, 0, &tb);
    if (rc != SOCHDB_OK)
      fprintf(stderr, "sochdb-stress: table open: %s (%s)\n", sochdb_strerror(rc), sochdb_last_error());
  }
  if (rc == SOCHDB_OK && fd >= 0) rc = st_tx_begin(&x, db, fd, id, "state", 1, &scratch);
  if (rc == SOCHDB_OK && fd >= 0) {
    rc = read_all(c, sh, &x, tb);
    if (rc != SOCHDB_OK) fprintf(stderr, "sochdb-stress: state read: %s (%s)\n", sochdb_strerror(rc), sochdb_last_error());
    int end = st_tx_end(&x, rc == SOCHDB_OK, 0);
    if (rc == SOCHDB_OK) rc = end;
  }
  if (fd < 0) perror(file);
  if (rc == SOCHDB_OK && !marker && strstr(file, "/run/final.state")) print_engine(db);
  if (fd >= 0 && fsync(fd) != 0) rc = SOCHDB_IO;
  if (fd >= 0) close(fd);
  st_buf_free(&scratch);
  sochdb_table_close(tb);
  sochdb_close(db);
  return rc == SOCHDB_OK && fd >= 0 ? 0 : -1;
}
