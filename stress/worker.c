/*
** worker.c — one sochdb-stress worker process: random transactions over the
** key families until its time or operation count is spent (or until the
** crash supervisor kills it), each logged to the worker's own history file.
**
** Transaction kinds (weights in pick_kind):
**   rmw      list-append read-modify-write of 1-4 list chains (plus a few
**            plain reads), sometimes with 64 KiB - 1 MiB of padding or an
**            intermediate value overwritten before the commit;
**   read     read-only reads of several chains, sometimes a register too;
**   scan     read-only range scans: a chain's generations, a run of
**            registers, or every bank account;
**   reg      put or delete of a register, logged in its event chain E;
**   transfer move money between two bank accounts;
**   audit    read every account (gets or a scan);
**   long     a read-only snapshot kept open across many transactions of
**            this worker, re-reading the same keys, then closed;
** and, in --table-pct of the transactions, on the columnar table:
**   trmw     list appends to 1-3 chains of table rows (row gets or a row
**            scan, then row puts), half with a key-value list append too;
**   ttransfer  move money between two row accounts (the row bank);
**   taudit   every row account, by a projected {id, bal} scan or gets;
**   tscan    a filtered projected scan of a run of chains, re-read in the
**            same snapshot by full-row gets; half of them read a row
**            register with its event chain too;
**   treg     put or delete of a row register, logged in the same
**            transaction in its key-value event chain F.
** Write commits use SOCHDB_SYNC or SOCHDB_ASYNC at random.
*/
#include "stress.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct chain {
  char fam;
  unsigned idx;
  unsigned gen;       /* the generation an append goes to */
  int fresh;          /* that generation does not exist yet: the append creates it */
  int ok;             /* read without error and not corrupt: may be appended to */
  st_val cur;         /* its list in our snapshot */
} chain;

typedef struct wk {
  const st_cfg *c;
  st_slot *slot;
  sochdb *db;
  sochdb_table *tb;   /* the columnar table, open for the worker's life */
  unsigned tgen[65536]; /* per table chain: a generation this worker saw exist (rows are never deleted) */
  uint32_t wid;
  uint64_t ctr;
  uint64_t rng;
  int fd;
  st_buf scratch;
  long errors;
  /* the long-lived snapshot */
  st_tx lx;
  int lopen;
  int64_t lend_ns;
  unsigned lkeys[6], nlkeys;
} wk;

static uint64_t next_id(wk *w)
{
  return ST_ID(w->wid, ++w->ctr);
}

static int chance(wk *w, unsigned pct)
{
  return st_below(&w->rng, 100) < pct;
}

/* 1 in 100 times when the run injects this fault. */
static int fault(wk *w, int kind)
{
  return w->c->fault == kind && chance(w, 1);
}

static void note_error(wk *w, const char *what, int rc)
{
  if (w->errors++ < 20)
    fprintf(stderr, "sochdb-stress worker %u: %s: %s (%s)\n", (unsigned)w->wid, what, sochdb_strerror(rc),
            sochdb_last_error());
}

/* ------------------------------------------------------------ picking keys */

static unsigned pick_list(wk *w)
{
  const st_cfg *c = w->c;
  if (c->hot && chance(w, c->hot_pct)) return st_below(&w->rng, c->hot);
  return st_below(&w->rng, c->keys);
}

/* n distinct list keys into out. */
static void pick_lists(wk *w, unsigned *out, unsigned n)
{
  for (unsigned i = 0; i < n; i++) {
    unsigned k, dup;
    do {
      k = pick_list(w);
      dup = 0;
      for (unsigned j = 0; j < i; j++) dup |= out[j] == k;
    } while (dup);
    out[i] = k;
  }
}

/* ------------------------------------------------------------ chains */

/* Read a chain in x's snapshot: its generation pointer, then its newest
** generation (and the next one when that is full). */
static int chain_read(wk *w, st_tx *x, char fam, unsigned idx, chain *ch)
{
  char key[64];
  ch->fam = fam;
  ch->idx = idx;
  ch->ok = 0;
  st_gen_key(key, sizeof key, fam, idx);
  int rc = st_tx_get(x, key, &ch->cur);
  if (rc != SOCHDB_OK) return rc;
  if (ch->cur.corrupt) return SOCHDB_OK;
  ch->gen = ch->cur.present ? (unsigned)ch->cur.num : 0;
  for (int hop = 0; hop < 4; hop++) {
    st_chain_key(key, sizeof key, fam, idx, ch->gen);
    rc = st_tx_get(x, key, &ch->cur);
    if (rc != SOCHDB_OK || ch->cur.corrupt) return rc;
    if (!ch->cur.present || ch->cur.nids < w->c->maxlen) {
      ch->fresh = ch->gen > 0 && !ch->cur.present;
      ch->ok = 1;
      return SOCHDB_OK;
    }
    ch->gen++;
  }
  return SOCHDB_OK;   /* a chain of full generations past its pointer: do not touch it */
}

/* Append x's id to the chain read into ch (creating its next generation if
** need be), optionally with padding or after an intermediate value; `drop`
** overwrites the last id instead (--fault lost-update). */
static int chain_append(st_tx *x, const chain *ch, uint32_t padlen, int intermediate, int drop)
{
  char key[64];
  st_val v = ch->cur;
  if (!v.present) v.nids = 0;
  if (drop && v.nids) v.nids--;
  v.present = 1;
  v.corrupt = 0;
  v.num = 0;
  v.ids[v.nids++] = x->id;
  st_chain_key(key, sizeof key, ch->fam, ch->idx, ch->gen);
  int rc = SOCHDB_OK;
  if (intermediate) {
    v.flags = ST_FLAG_INTERMEDIATE;
    v.padlen = 0;
    rc = st_tx_put(x, key, &v);
  }
  v.flags = 0;
  v.padlen = padlen;
  if (rc == SOCHDB_OK) rc = st_tx_put(x, key, &v);
  if (rc != SOCHDB_OK || !ch->fresh) return rc;
  st_val g = { .present = 1, .num = ch->gen, .nids = 1 };
  g.ids[0] = x->id;
  st_gen_key(key, sizeof key, ch->fam, ch->idx);
  return st_tx_put(x, key, &g);
}

/* A register value: written by x, nothing else in it. */
static st_val *single(st_val *v, uint64_t id, int64_t num)
{
  memset(v, 0, offsetof(st_val, ids));
  v->present = 1;
  v->num = num;
  v->nids = 1;
  v->ids[0] = id;
  return v;
}

/* ------------------------------------------------------------ ending */

static unsigned write_flags(wk *w)
{
  return chance(w, w->c->sync_pct) ? SOCHDB_SYNC : SOCHDB_ASYNC;
}

/* End x: commit if every step went well (rc == OK), else log it as aborted. */
static int finish(wk *w, st_tx *x, int rc, const char *what)
{
  if (rc != SOCHDB_OK) {
    note_error(w, what, rc);
    st_tx_end(x, 0, 0);
    return rc;
  }
  x->lie = !x->ro && fault(w, ST_FAULT_ABORTED_READ);
  rc = st_tx_end(x, 1, x->ro ? 0 : write_flags(w));
  w->slot->txns++;
  if (rc == SOCHDB_OK && !x->ro) w->slot->commits++;
  if (rc == SOCHDB_CONFLICT) w->slot->conflicts++;
  if (rc != SOCHDB_OK && rc != SOCHDB_CONFLICT) note_error(w, "commit", rc);
  return rc;
}

static int begin(wk *w, st_tx *x, const char *kind, int ro)
{
  int rc = st_tx_begin(x, w->db, w->fd, next_id(w), kind, ro, &w->scratch);
  if (rc != SOCHDB_OK) note_error(w, "begin", rc);
  return rc;
}

/* ------------------------------------------------------------ kinds */

/* 64 KiB - 1 MiB of padding, and at most about a quarter of a memtable (a
** value may take half of one). */
static uint32_t large_pad(wk *w)
{
  uint32_t max = 1u << 20, mt = (uint32_t)(w->c->memtable_mb << 20) / 4;
  if (mt && mt < max) max = mt;
  uint32_t min = max / 16 < (64u << 10) ? max / 16 : 64u << 10;
  return min + st_below(&w->rng, max - min);
}

#define LINGER_MAX_MS 500

/* Wait until sochdbd has flushed another memtable, or LINGER_MAX_MS: the
** memtable that was active at our snapshot, with what others committed
** after it, has likely left memory by then, and the commit must find its
** conflicts there in the SSTables (src/txn.c, check_flushed). */
static void linger(wk *w)
{
  sochdb_stats s;
  if (sochdb_stats_get(w->db, &s) != SOCHDB_OK) return;
  uint64_t goal = s.flushes + 1;
  int64_t end = st_now_ns() + LINGER_MAX_MS * 1000000ll;
  while (st_now_ns() < end && sochdb_stats_get(w->db, &s) == SOCHDB_OK && s.flushes < goal)
    st_sleep_ms(5);
}

static int do_rmw(wk *w)
{
  st_tx x;
  if (begin(w, &x, "rmw", 0) != SOCHDB_OK) return -1;
  unsigned keys[6], n = 1 + st_below(&w->rng, 4), extra = st_below(&w->rng, 3);
  pick_lists(w, keys, n + extra);
  static chain ch[6];
  int rc = SOCHDB_OK;
  for (unsigned i = 0; i < n + extra && rc == SOCHDB_OK; i++) rc = chain_read(w, &x, 'L', keys[i], &ch[i]);
  if (rc == SOCHDB_OK && chance(w, w->c->linger_pct)) linger(w);
  uint32_t pad = chance(w, w->c->large_pct) ? large_pad(w) : 0;
  for (unsigned i = 0; i < n && rc == SOCHDB_OK; i++)
    rc = ch[i].ok ? chain_append(&x, &ch[i], i == 0 ? pad : 0, chance(w, 5), fault(w, ST_FAULT_LOST_UPDATE))
                  : SOCHDB_CORRUPT;
  return finish(w, &x, rc, "rmw");
}

/* Read register r with its event chain, into *ch (chain) and v (value). */
static int reg_read(wk *w, st_tx *x, unsigned r, chain *ch, st_val *v)
{
  char key[32];
  int rc = chain_read(w, x, 'E', r, ch);
  st_reg_key(key, sizeof key, r);
  return rc == SOCHDB_OK ? st_tx_get(x, key, v) : rc;
}

static int do_read(wk *w)
{
  st_tx x;
  if (begin(w, &x, "read", 1) != SOCHDB_OK) return -1;
  unsigned keys[6], n = 2 + st_below(&w->rng, 5);
  pick_lists(w, keys, n);
  static chain ch;
  static st_val v;
  int rc = SOCHDB_OK;
  for (unsigned i = 0; i < n && rc == SOCHDB_OK; i++) rc = chain_read(w, &x, 'L', keys[i], &ch);
  if (rc == SOCHDB_OK && chance(w, 30)) rc = reg_read(w, &x, st_below(&w->rng, w->c->registers), &ch, &v);
  return finish(w, &x, rc, "read");
}

/* Scan the generations of list chain idx from the one before its pointer. */
static int scan_chain(wk *w, st_tx *x, unsigned idx)
{
  char lo[64], hi[64];
  static st_val v;
  st_gen_key(lo, sizeof lo, 'L', idx);
  int rc = st_tx_get(x, lo, &v);
  if (rc != SOCHDB_OK) return rc;
  unsigned gen = v.present && !v.corrupt ? (unsigned)v.num : 0;
  st_chain_key(lo, sizeof lo, 'L', idx, gen ? gen - 1 : 0);
  st_chain_end(hi, sizeof hi, 'L', idx);
  return st_tx_scan(x, lo, hi, NULL, NULL, &v);
}

/* Registers [r0, r0 + n): their event chains read one by one, their values by a scan. */
static int scan_registers(wk *w, st_tx *x)
{
  unsigned n = w->c->registers < 4 ? w->c->registers : 4;
  unsigned r0 = st_below(&w->rng, w->c->registers - n + 1);
  static chain ch;
  static st_val v;
  int rc = SOCHDB_OK;
  for (unsigned i = 0; i < n && rc == SOCHDB_OK; i++) rc = chain_read(w, x, 'E', r0 + i, &ch);
  char lo[32], hi[32];
  st_reg_key(lo, sizeof lo, r0);
  st_reg_key(hi, sizeof hi, r0 + n);
  return rc == SOCHDB_OK ? st_tx_scan(x, lo, hi, NULL, NULL, &v) : rc;
}

/* Every account: one get each, or one scan of the family. */
static int read_accounts(wk *w, st_tx *x, int by_scan)
{
  static st_val v;
  if (by_scan) return st_tx_scan(x, "B/", "B0", NULL, NULL, &v);
  char key[32];
  int rc = SOCHDB_OK;
  for (unsigned a = 0; a < w->c->accounts && rc == SOCHDB_OK; a++) {
    st_acct_key(key, sizeof key, a);
    rc = st_tx_get(x, key, &v);
  }
  return rc;
}

static int do_scan(wk *w)
{
  st_tx x;
  if (begin(w, &x, "scan", 1) != SOCHDB_OK) return -1;
  int rc = SOCHDB_OK;
  switch (st_below(&w->rng, 3)) {
  case 0: {
    unsigned keys[3], n = 1 + st_below(&w->rng, 3);
    pick_lists(w, keys, n);
    for (unsigned i = 0; i < n && rc == SOCHDB_OK; i++) rc = scan_chain(w, &x, keys[i]);
    break;
  }
  case 1:
    rc = scan_registers(w, &x);
    break;
  default:
    rc = read_accounts(w, &x, 1);
  }
  return finish(w, &x, rc, "scan");
}

static int do_reg(wk *w)
{
  st_tx x;
  if (begin(w, &x, "reg", 0) != SOCHDB_OK) return -1;
  unsigned r = st_below(&w->rng, w->c->registers);
  static chain ch;
  static st_val v;
  char key[32];
  st_reg_key(key, sizeof key, r);
  int rc = reg_read(w, &x, r, &ch, &v);
  if (rc == SOCHDB_OK && !ch.ok) rc = SOCHDB_CORRUPT;
  if (rc == SOCHDB_OK) rc = v.present && chance(w, 50) ? st_tx_del(&x, key) : st_tx_put(&x, key, single(&v, x.id, 0));
  if (rc == SOCHDB_OK) rc = chain_append(&x, &ch, 0, 0, 0);
  return finish(w, &x, rc, "reg");
}

static int do_transfer(wk *w)
{
  st_tx x;
  if (begin(w, &x, "transfer", 0) != SOCHDB_OK) return -1;
  unsigned n = w->c->accounts, a = st_below(&w->rng, n), b = (a + 1 + st_below(&w->rng, n - 1)) % n;
  int64_t amount = 1 + st_below(&w->rng, 50);
  char ka[32], kb[32];
  static st_val va, vb;
  st_acct_key(ka, sizeof ka, a);
  st_acct_key(kb, sizeof kb, b);
  int rc = st_tx_get(&x, ka, &va);
  if (rc == SOCHDB_OK) rc = st_tx_get(&x, kb, &vb);
  if (rc == SOCHDB_OK && (!va.present || va.corrupt || !vb.present || vb.corrupt)) rc = SOCHDB_CORRUPT;
  if (rc == SOCHDB_OK) rc = st_tx_put(&x, ka, single(&va, x.id, va.num - amount));
  if (rc == SOCHDB_OK) rc = st_tx_put(&x, kb, single(&vb, x.id, vb.num + amount + fault(w, ST_FAULT_BANK)));
  return finish(w, &x, rc, "transfer");
}

static int do_audit(wk *w)
{
  st_tx x;
  if (begin(w, &x, "audit", 1) != SOCHDB_OK) return -1;
  return finish(w, &x, read_accounts(w, &x, chance(w, 50)), "audit");
}

/* ------------------------------------------------------------ the table */

/* A list chain in table rows: generation g of chain idx is row st_row_pk(idx, g). */
typedef struct tchain {
  unsigned idx, gen;  /* the generation an append goes to */
  int ok;             /* read without error and not corrupt */
  st_val cur;         /* its list in our snapshot (absent: the append starts it) */
} tchain;

static unsigned pick_tkey(wk *w)
{
  unsigned n = w->c->table_keys;
  return n > 2 && chance(w, w->c->hot_pct) ? st_below(&w->rng, 2) : st_below(&w->rng, n);
}

static void pick_tkeys(wk *w, unsigned *out, unsigned n)
{
  if (n > w->c->table_keys) n = w->c->table_keys;
  for (unsigned i = 0; i < n; i++) {
    unsigned k, dup;
    do {
      k = pick_tkey(w);
      dup = 0;
      for (unsigned j = 0; j < i; j++) dup |= out[j] == k;
    } while (dup);
    out[i] = k;
  }
}

static void tchain_range(unsigned idx, char *lo, char *hi, size_t n)
{
  st_chain_key(lo, n, 'T', idx, 0);
  st_chain_end(hi, n, 'T', idx);
}

/* What a scan of a chain's rows saw last: the newest generation. */
typedef struct tlast {
  int64_t pk[64];      /* the first 64 rows */
  unsigned n;
  int64_t last;        /* the last row's */
  st_val v;
} tlast;

static void note_row(void *arg, const char *key, size_t klen, const st_val *v)
{
  (void)klen;
  tlast *l = arg;
  if (key[0] != 'T') return;
  unsigned long idx = strtoul(key + 2, NULL, 16), gen = strtoul(key + 7, NULL, 16);
  l->last = st_row_pk((unsigned)idx, (unsigned)gen);
  if (l->n < 64) l->pk[l->n] = l->last;
  l->n++;
  l->v = *v;
}

/* Read table chain idx in x's snapshot, from the newest generation this
** worker saw before (a later snapshot has it too: rows are never deleted):
** by a scan of its rows from there (all columns or {id, list}, by the key
** range or by a filter), or by gets of the generations from there until one
** is absent or not full. */
static int tchain_read(wk *w, st_tx *x, unsigned idx, tchain *ch)
{
  static tlast l;
  unsigned from = w->tgen[idx];
  ch->idx = idx;
  ch->ok = 0;
  int rc;
  if (chance(w, 50)) {
    char lo[64], hi[64];
    tchain_range(idx, lo, hi, sizeof lo);
    st_chain_key(lo, sizeof lo, 'T', idx, from);
    l.n = 0;
    rc = st_tx_row_scan(x, w->tb, st_row_pk(idx, from), st_row_pk(idx + 1, 0), lo, hi,
                        chance(w, 50) ? ST_ROW_ALL : ST_ROW_LIST, chance(w, 30), note_row, &l, &ch->cur);
    if (rc != SOCHDB_OK) return rc;
    if (!l.n) {
      ch->gen = from;
      ch->cur.present = 0;
      ch->cur.nids = 0;
      ch->ok = 1;
      return SOCHDB_OK;
    }
    ch->cur = l.v;
    ch->gen = (unsigned)(l.last & 0xffffff);
    if (ch->cur.corrupt) return SOCHDB_OK;
    w->tgen[idx] = ch->gen;
    if (ch->cur.nids >= w->c->maxlen) {
      ch->gen++;
      ch->cur.present = 0;
      ch->cur.nids = 0;
    }
    ch->ok = 1;
    return SOCHDB_OK;
  }
  for (ch->gen = from; ch->gen < 0xffffff; ch->gen++) {
    rc = st_tx_row_get(x, w->tb, st_row_pk(idx, ch->gen), ST_ROW_ALL, &ch->cur);
    if (rc != SOCHDB_OK || ch->cur.corrupt) return rc;
    if (ch->cur.present) w->tgen[idx] = ch->gen;
    if (!ch->cur.present || ch->cur.nids < w->c->maxlen) {
      ch->ok = 1;
      return SOCHDB_OK;
    }
  }
  return SOCHDB_OK;
}

static int tchain_append(wk *w, st_tx *x, const tchain *ch)
{
  st_val v = ch->cur;
  if (!v.present) v.nids = 0;
  if (fault(w, ST_FAULT_LOST_UPDATE) && v.nids) v.nids--;
  v.present = 1;
  v.corrupt = 0;
  v.num = 0;
  v.flags = 0;
  v.padlen = 0;
  v.ids[v.nids++] = x->id;
  return st_tx_row_put(x, w->tb, st_row_pk(ch->idx, ch->gen), &v, chance(w, 50));
}

/* Row list appends on 1-3 table chains, half the time with a key-value list
** append in the same transaction (atomic across the two models). */
static int do_trmw(wk *w)
{
  st_tx x;
  if (begin(w, &x, "trmw", 0) != SOCHDB_OK) return -1;
  unsigned keys[3], n = 1 + st_below(&w->rng, 3);
  if (n > w->c->table_keys) n = w->c->table_keys;
  pick_tkeys(w, keys, n);
  static tchain ch[3];
  static chain kv;
  int rc = SOCHDB_OK, with_kv = chance(w, 50);
  for (unsigned i = 0; i < n && rc == SOCHDB_OK; i++) rc = tchain_read(w, &x, keys[i], &ch[i]);
  if (rc == SOCHDB_OK && with_kv) rc = chain_read(w, &x, 'L', pick_list(w), &kv);
  for (unsigned i = 0; i < n && rc == SOCHDB_OK; i++) rc = ch[i].ok ? tchain_append(w, &x, &ch[i]) : SOCHDB_CORRUPT;
  if (rc == SOCHDB_OK && with_kv) rc = kv.ok ? chain_append(&x, &kv, 0, 0, 0) : SOCHDB_CORRUPT;
  return finish(w, &x, rc, "trmw");
}

/* Move 1-50 between two row accounts' bal. */
static int do_ttransfer(wk *w)
{
  st_tx x;
  if (begin(w, &x, "ttransfer", 0) != SOCHDB_OK) return -1;
  unsigned n = w->c->accounts, a = st_below(&w->rng, n), b = (a + 1 + st_below(&w->rng, n - 1)) % n;
  int64_t amount = 1 + st_below(&w->rng, 50);
  static st_val va, vb;
  int rc = st_tx_row_get(&x, w->tb, ST_ROW_BANK + a, ST_ROW_ALL, &va);
  if (rc == SOCHDB_OK) rc = st_tx_row_get(&x, w->tb, ST_ROW_BANK + b, ST_ROW_ALL, &vb);
  if (rc == SOCHDB_OK && (!va.present || va.corrupt || !vb.present || vb.corrupt)) rc = SOCHDB_CORRUPT;
  if (rc == SOCHDB_OK)
    rc = st_tx_row_put(&x, w->tb, ST_ROW_BANK + a, single(&va, x.id, va.num - amount), chance(w, 50));
  if (rc == SOCHDB_OK)
    rc = st_tx_row_put(&x, w->tb, ST_ROW_BANK + b, single(&vb, x.id, vb.num + amount + fault(w, ST_FAULT_BANK)),
                       chance(w, 50));
  return finish(w, &x, rc, "ttransfer");
}

/* Every row account: a projected scan of {id, bal}, or projected gets. */
static int do_taudit(wk *w)
{
  st_tx x;
  if (begin(w, &x, "taudit", 1) != SOCHDB_OK) return -1;
  static st_val v;
  int rc = SOCHDB_OK;
  if (chance(w, 70)) {
    rc = st_tx_row_scan(&x, w->tb, ST_ROW_BANK, 2 * ST_ROW_BANK, "U/", "U0", ST_ROW_BAL, chance(w, 30), NULL, NULL, &v);
  } else {
    for (unsigned a = 0; a < w->c->accounts && rc == SOCHDB_OK; a++)
      rc = st_tx_row_get(&x, w->tb, ST_ROW_BANK + a, ST_ROW_BAL, &v);
  }
  return finish(w, &x, rc, "taudit");
}

/* Put or delete (then reinsert, later) a row register, logged in the same
** transaction in its key-value event chain F: the checker requires every
** snapshot that reads both to agree, across the two models. */
static int do_treg(wk *w)
{
  st_tx x;
  if (begin(w, &x, "treg", 0) != SOCHDB_OK) return -1;
  unsigned r = st_below(&w->rng, w->c->registers);
  static chain ch;
  static st_val v;
  int rc = chain_read(w, &x, 'F', r, &ch);
  if (rc == SOCHDB_OK) rc = st_tx_row_get(&x, w->tb, ST_ROW_REG + r, ST_ROW_ALL, &v);
  if (rc == SOCHDB_OK && (!ch.ok || v.corrupt)) rc = SOCHDB_CORRUPT;
  if (rc == SOCHDB_OK)
    rc = v.present && chance(w, 50) ? st_tx_row_del(&x, w->tb, ST_ROW_REG + r)
                                    : st_tx_row_put(&x, w->tb, ST_ROW_REG + r, single(&v, x.id, 0), chance(w, 50));
  if (rc == SOCHDB_OK) rc = chain_append(&x, &ch, 0, 0, 0);
  return finish(w, &x, rc, "treg");
}

/* Read a row register and its event chain (in either order). */
static int treg_read(wk *w, st_tx *x)
{
  unsigned r = st_below(&w->rng, w->c->registers);
  static chain ch;
  static st_val v;
  int first = chance(w, 50);
  int rc = first ? chain_read(w, x, 'F', r, &ch) : SOCHDB_OK;
  if (rc == SOCHDB_OK) rc = st_tx_row_get(x, w->tb, ST_ROW_REG + r, chance(w, 50) ? ST_ROW_ALL : ST_ROW_LIST, &v);
  if (rc == SOCHDB_OK && !first) rc = chain_read(w, x, 'F', r, &ch);
  return rc;
}

/* A filtered projected scan of {id, list} over a run of chains, then every
** row it returned (and the generation after each chain's last) read again
** with full-row gets in the same snapshot: the checker requires the same
** values (a returned row) and absence (a row the scan did not return). */
static int do_tscan(wk *w)
{
  st_tx x;
  if (begin(w, &x, "tscan", 1) != SOCHDB_OK) return -1;
  unsigned nk = w->c->table_keys, span = 1 + st_below(&w->rng, nk < 4 ? nk : 4);
  unsigned i0 = st_below(&w->rng, nk - span + 1);
  char lo[64], hi[64];
  st_chain_key(lo, sizeof lo, 'T', i0, 0);
  st_chain_end(hi, sizeof hi, 'T', i0 + span - 1);
  static tlast l;
  static st_val v;
  l.n = 0;
  int rc = st_tx_row_scan(&x, w->tb, st_row_pk(i0, 0), st_row_pk(i0 + span, 0), lo, hi, ST_ROW_LIST, chance(w, 70),
                          note_row, &l, &v);
  unsigned n = l.n < 64 ? l.n : 64;
  for (unsigned i = 0; i < n && rc == SOCHDB_OK; i++) {
    rc = st_tx_row_get(&x, w->tb, l.pk[i], ST_ROW_ALL, &v);
    if (rc == SOCHDB_OK && (i + 1 == n || l.pk[i + 1] >> 24 != l.pk[i] >> 24))
      rc = st_tx_row_get(&x, w->tb, l.pk[i] + 1, chance(w, 50) ? ST_ROW_ALL : ST_ROW_LIST, &v);
  }
  if (rc == SOCHDB_OK) rc = st_tx_row_get(&x, w->tb, st_row_pk(i0 + st_below(&w->rng, span), 0), ST_ROW_ALL, &v);
  if (rc == SOCHDB_OK && chance(w, 50)) rc = treg_read(w, &x);
  return finish(w, &x, rc, "tscan");
}

/* ------------------------------------------------------------ the long snapshot */

/* (Re-)read everything the long snapshot watches: the same chains, every account. */
static int long_read(wk *w)
{
  static chain ch;
  int rc = SOCHDB_OK;
  for (unsigned i = 0; i < w->nlkeys && rc == SOCHDB_OK; i++) rc = chain_read(w, &w->lx, 'L', w->lkeys[i], &ch);
  return rc == SOCHDB_OK ? read_accounts(w, &w->lx, 0) : rc;
}

static void long_close(wk *w, int rc)
{
  finish(w, &w->lx, rc, "long snapshot");
  w->lopen = 0;
}

static int do_long(wk *w)
{
  if (!w->lopen) {
    if (begin(w, &w->lx, "long", 1) != SOCHDB_OK) return -1;
    w->lopen = 1;
    w->lend_ns = st_now_ns() + (int64_t)(200 + st_below(&w->rng, 1800)) * 1000000;
    w->nlkeys = 2 + st_below(&w->rng, 4);
    pick_lists(w, w->lkeys, w->nlkeys);
  }
  int rc = long_read(w);
  if (rc != SOCHDB_OK || st_now_ns() >= w->lend_ns) long_close(w, rc);
  return rc;
}

/* ------------------------------------------------------------ the loop */

typedef int kind_fn(wk *w);

static kind_fn *pick_kind(wk *w)
{
  static const struct { kind_fn *fn; unsigned weight; } tkinds[] = {
    { do_trmw, 45 }, { do_ttransfer, 20 }, { do_taudit, 10 }, { do_tscan, 13 }, { do_treg, 12 },
  };
  if (w->tb && chance(w, w->c->table_pct)) {
    unsigned r = st_below(&w->rng, 100);
    for (size_t i = 0; i < sizeof tkinds / sizeof tkinds[0]; i++) {
      if (r < tkinds[i].weight) return tkinds[i].fn;
      r -= tkinds[i].weight;
    }
  }
  static const struct { kind_fn *fn; unsigned weight; } kinds[] = {
    { do_rmw, 40 }, { do_read, 14 }, { do_scan, 8 }, { do_reg, 10 },
    { do_transfer, 15 }, { do_audit, 5 }, { do_long, 8 },
  };
  unsigned total = 0;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) total += kinds[i].weight;
  unsigned r = st_below(&w->rng, total);
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (r < kinds[i].weight) return kinds[i].fn;
    r -= kinds[i].weight;
  }
  return do_rmw;
}

static int open_history(const char *unit, uint32_t wid)
{
  char name[64], path[4200];
  snprintf(name, sizeof name, "hist-%x.log", (unsigned)wid);   /* hex, like the ids */
  int fd = open(st_path(path, sizeof path, unit, name), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) perror(path);
  return fd;
}

void st_worker_main(const st_cfg *c, st_shared *sh, int slot, uint32_t wid, const char *unit, int64_t deadline_ns)
{
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  static wk w;
  w.c = c;
  w.slot = &sh->slot[slot];
  w.wid = wid;
  w.rng = c->seed ^ ((uint64_t)wid * UINT64_C(0x2545F4914F6CDD1D));
  w.fd = open_history(unit, wid);
  if (w.fd < 0) _exit(2);
  char head[128];
  int n = snprintf(head, sizeof head, "H %x pid=%d\n", (unsigned)wid, (int)getpid());
  if (st_write_all(w.fd, head, (size_t)n) != 0) _exit(2);
  w.db = st_open_db(c);
  if (!w.db) _exit(3);
  if (c->table_pct) {
    int rc;
    while ((rc = st_table_get(w.db, 0, &w.tb)) != SOCHDB_OK) {
      if (st_now_ns() >= deadline_ns) _exit(0);
      note_error(&w, "table open", rc);
      st_sleep_ms(50);
    }
  }
  long fails = 0;
  for (long done = 0; st_now_ns() < deadline_ns && (c->ops == 0 || done < c->ops); done++) {
    int rc = pick_kind(&w)(&w);
    fails = rc < 0 ? fails + 1 : 0;
    if (fails > 1000) _exit(4);   /* cannot even begin a transaction any more */
    if (rc < 0) st_sleep_ms(1);
    w.slot->last_ns = st_now_ns();
    /* a long snapshot pins memtable arenas: never keep it past its time,
    ** even when this worker's other transactions are slow */
    if (w.lopen && w.slot->last_ns >= w.lend_ns) long_close(&w, long_read(&w));
  }
  if (w.lopen) long_close(&w, SOCHDB_OK);
  sochdb_table_close(w.tb);
  sochdb_close(w.db);
  _exit(0);
}
