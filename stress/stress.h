/*
** stress.h — what the parts of sochdb-stress share: the run configuration,
** the key families, the binary value format, transaction ids, the history
** writer (a growing text buffer written with one write(2) per record) and the
** logged transaction layer over the public sochdb API.
**
** Only include/sochdb.h is used: the stress suite tests the engine the way an
** application sees it. The history text format itself is documented in
** checker.h (the checker is the format's reader).
*/
#ifndef SOCHDB_STRESS_H
#define SOCHDB_STRESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sochdb.h"

#define ST_MAX_WORKERS 64
#define ST_MAX_LIST    256     /* the longest list one key may hold (--maxlen) */
#define ST_VAL_HEADER  24      /* bytes before the ids in an encoded value */
#define ST_VAL_MAGIC   0xA5u
#define ST_FLAG_INTERMEDIATE 0x1u   /* a value its writer overwrites before committing */

/* Transaction ids: (worker incarnation, counter), unique across a whole run,
** crash cycles included. Worker 0 is the supervisor (setup, state reads). */
#define ST_ID(w, c)   (((uint64_t)(w) << 40) | (uint64_t)(c))
#define ST_ID_W(id)   ((uint32_t)((id) >> 40))
#define ST_ID_C(id)   ((id) & ((UINT64_C(1) << 40) - 1))

/* ------------------------------------------------------------ config */

typedef struct st_cfg {
  const char *dir;        /* the run directory: db/ and one unit directory per check */
  int workers;            /* worker processes */
  double seconds;         /* run time (normal mode), cycle time bounds come from cycle_ms */
  long ops;               /* transactions per worker, 0 = until the time is up */
  unsigned keys;          /* logical list keys */
  unsigned hot;           /* ... of which the first `hot` are hot */
  unsigned hot_pct;       /* share of list picks that go to a hot key */
  unsigned maxlen;        /* ids per list key before a new generation starts */
  unsigned accounts;      /* bank accounts */
  int64_t balance;        /* initial balance of each account */
  unsigned registers;     /* D/ registers (put / delete) */
  unsigned sync_pct;      /* share of write commits that use SOCHDB_SYNC */
  unsigned large_pct;     /* share of read-modify-writes that add 64 KiB - 1 MiB of padding */
  unsigned linger_pct;    /* share of read-modify-writes that wait for flushes before they write */
  uint64_t seed;
  int keep;               /* keep the run directory even when everything passed */
  unsigned cycles;        /* crash mode: kill cycles */
  unsigned cycle_ms;      /* crash mode: mean cycle length */
  unsigned remove_pct;    /* crash mode: share of cycles that remove the region file too */
  unsigned power_pct;     /* crash mode: share of cycles that end in a power cut (powercut.h) */
  unsigned fault_pct;     /* crash mode: share of cycles whose daemons are sochdbd-testing with a fault armed */
  size_t region_mb;       /* shared region size, 0 = the library's default */
  size_t memtable_mb;     /* memtable arena size, 0 = the library's default */
  unsigned stall_s;       /* no progress for this long = the engine hangs */
  int fault;              /* ST_FAULT_*: the workload misbehaves on purpose, to test the checker */
  unsigned table_pct;     /* share of transactions that use the columnar table (0 = none) */
  unsigned table_keys;    /* list chains kept in table rows */
} st_cfg;

enum { ST_FAULT_NONE, ST_FAULT_LOST_UPDATE, ST_FAULT_ABORTED_READ, ST_FAULT_BANK };

void st_cfg_defaults(st_cfg *c);
/* Open DIR/db, retrying for about 5 s (a daemon being restarted); NULL after saying why. */
sochdb *st_open_db(const st_cfg *c);

/* ------------------------------------------------------------ helpers */

int64_t  st_now_ns(void);                      /* CLOCK_MONOTONIC, comparable across processes */
void     st_sleep_ms(unsigned ms);
uint64_t st_rand(uint64_t *state);             /* splitmix64 */
unsigned st_below(uint64_t *state, unsigned n); /* uniform in [0, n) */
int      st_write_all(int fd, const void *buf, size_t len);
int      st_mkdir(const char *path);           /* mkdir, EEXIST is fine */
int      st_rmrf(const char *path);
char    *st_path(char *out, size_t n, const char *dir, const char *name);

/* ------------------------------------------------------------ text buffer */

typedef struct st_buf {
  char *p;
  size_t len, cap;
} st_buf;

void st_buf_reserve(st_buf *b, size_t extra);
void st_buf_printf(st_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void st_buf_free(st_buf *b);

/* ------------------------------------------------------------ keys */

/* Families: L (list keys) and E (the event log of a register) are chains of
** generations "F/iiii/gggggg", each a list of at most maxlen ids; G holds a
** chain's newest generation ("G/Fiiii"); D are registers (put or delete);
** B are bank accounts. */
void st_chain_key(char *out, size_t n, char fam, unsigned idx, unsigned gen);
void st_chain_end(char *out, size_t n, char fam, unsigned idx);   /* just past every generation */
void st_gen_key(char *out, size_t n, char fam, unsigned idx);
void st_reg_key(char *out, size_t n, unsigned idx);
void st_acct_key(char *out, size_t n, unsigned idx);

/* ------------------------------------------------------------ values */

typedef struct st_val {
  int present;            /* 0: the key was absent */
  int corrupt;            /* the bytes were not a valid value (or the padding was wrong) */
  unsigned flags;         /* ST_FLAG_* */
  uint32_t padlen;
  int64_t num;            /* balance, generation number; 0 for lists */
  uint32_t nids;
  uint64_t ids[ST_MAX_LIST];
} st_val;

void st_val_decode(const void *p, size_t len, st_val *v);
/* Encode v into *scratch (reused, grown as needed); returns the length. */
size_t st_val_encode(const st_val *v, st_buf *scratch);
/* The observation text of v (checker.h: "-", "?" or num:padlen:flags:ids). */
void st_buf_obs(st_buf *b, const st_val *v);
void st_buf_id(st_buf *b, uint64_t id);

/* ------------------------------------------------------------ the table */

/* One columnar table, ST_TABLE, created at setup: id int64 (pk), list bytes
** (an encoded st_val, as a list key's value), bal int64, note string
** (nullable: NULL or the writer's id), val double (the list's id count).
** Rows [0, 2^40) are list chains: row (idx << 24 | gen) is generation gen of
** chain idx, logged as the pseudo-key "T/iiii/gggggg" (a list key for the
** checker); rows 2^40 + a are the row bank, logged as "U/aaaa" (bal = num);
** rows 2^41 + r are row registers, logged as "V/rrrr" (put: list = the
** writer's id; or deleted), each put or delete appended in the same
** transaction to the key-value event chain "F/rrrr/gggggg". */
#define ST_TABLE       "stress"
#define ST_ROW_BANK    (INT64_C(1) << 40)
#define ST_ROW_REG     (INT64_C(1) << 41)
#define ST_TCOLS       5
enum { ST_C_ID, ST_C_LIST, ST_C_BAL, ST_C_NOTE, ST_C_VAL };
extern const sochdb_column st_table_cols[ST_TCOLS];

int64_t st_row_pk(unsigned idx, unsigned gen);   /* a chain generation's primary key */
/* The pseudo-key of primary key pk ("T/..." or "U/..."). */
void st_row_key(char *out, size_t n, int64_t pk);
/* Open (or, with create, create) the table in a transaction of its own, retrying conflicts. */
int st_table_get(sochdb *db, int create, sochdb_table **out);

/* ------------------------------------------------------------ logged transactions */

typedef struct st_tx {
  sochdb_txn *t;
  uint64_t id;
  const char *kind;
  int ro;
  int64_t b0, b1, c0;
  int fd;                 /* the history file */
  st_buf body;            /* R/W/S/Z lines so far */
  st_buf *scratch;        /* encoding buffer, owned by the caller */
  int lie;                /* log a successful commit as a conflict (--fault aborted-read) */
} st_tx;

/* The outcome words of the history ("ok", "conflict", ...). */
const char *st_outcome_word(int rc);

int  st_tx_begin(st_tx *x, sochdb *db, int fd, uint64_t id, const char *kind, int ro, st_buf *scratch);
/* Read key: v->present = 0 if absent. Logs an R line. SOCHDB_OK or an error. */
int  st_tx_get(st_tx *x, const char *key, st_val *v);
int  st_tx_put(st_tx *x, const char *key, const st_val *v);
int  st_tx_del(st_tx *x, const char *key);
/* Scan [lo, hi): logs S, one R line per key, Z. fn (may be NULL) sees each. */
typedef void st_scan_fn(void *arg, const char *key, size_t klen, const st_val *v);
int  st_tx_scan(st_tx *x, const char *lo, const char *hi, st_scan_fn *fn, void *arg, st_val *tmp);
/* Finish: log the intent (T ... I), then commit (commit != 0, with flags) or
** abort, then log the outcome. Returns the commit's code (SOCHDB_OK after an
** abort). Frees the transaction and the body. */
int  st_tx_end(st_tx *x, int commit, unsigned flags);
/* Drop a transaction without logging anything (the begin failed, a read failed). */
void st_tx_drop(st_tx *x);

/* Table rows, logged under their pseudo-keys (st_row_key). What a read gets:
** ST_ROW_ALL every column, checked to agree with each other (else the
** observation is corrupt); ST_ROW_LIST {id, list} (the same observation);
** ST_ROW_BAL {id, bal} (v->num = bal, no ids: for the row bank). */
enum { ST_ROW_ALL, ST_ROW_LIST, ST_ROW_BAL };
int  st_tx_row_get(st_tx *x, sochdb_table *tb, int64_t pk, int mode, st_val *v);
/* Put row pk: list = v encoded, bal = v->num, val = v->nids, note = the
** last id (with_note) or NULL. */
int  st_tx_row_put(st_tx *x, sochdb_table *tb, int64_t pk, const st_val *v, int with_note);
int  st_tx_row_del(st_tx *x, sochdb_table *tb, int64_t pk);
/* Scan rows [pklo, pkhi), logged as the scan of pseudo-keys [klo, khi): by
** the primary key range, or (by_filter) over the whole table with a filter
** id BETWEEN pklo AND pkhi - 1. fn (may be NULL) sees each row. */
int  st_tx_row_scan(st_tx *x, sochdb_table *tb, int64_t pklo, int64_t pkhi, const char *klo, const char *khi,
                    int mode, int by_filter, st_scan_fn *fn, void *arg, st_val *tmp);

/* ------------------------------------------------------------ processes */

/* Per-worker progress, in memory shared by the supervisor and its children. */
typedef struct st_slot {
  volatile int64_t last_ns;   /* the end of the worker's last transaction */
  volatile uint64_t txns, commits, conflicts;
  volatile int pid;
  volatile uint32_t wid;
} st_slot;

typedef struct st_shared {
  st_slot slot[ST_MAX_WORKERS];
  char region_path[4096];     /* the region file, learned by the setup child */
  uint32_t gens[3][65536];    /* the chains' newest generations at the last state read (L, E, F) */
} st_shared;

/* worker.c: one worker process; never returns. */
void st_worker_main(const st_cfg *c, st_shared *sh, int slot, uint32_t wid, const char *unit, int64_t deadline_ns);

/* state.c: run in a child of the supervisor. */
int st_setup(const st_cfg *c, st_shared *sh);
int st_read_state(const st_cfg *c, st_shared *sh, const char *file, uint64_t id, int marker);

/* supervise.c */
int st_run_normal(const st_cfg *c);
int st_run_crash(const st_cfg *c);

#endif /* SOCHDB_STRESS_H */
