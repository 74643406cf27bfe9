/*
** checker.c — reads one check unit (checker.h) and verifies snapshot
** isolation on it.
**
** The model: every list key has one final list, the longest list anyone saw
** (or, when the region was kept, exactly the list in final.state), and every
** list anyone read or a committed transaction wrote must be a prefix of it.
** From the final lists come each transaction's position in each key and the
** version order, from which the checks below follow:
**
**   - ids seen must belong to transactions that committed (or whose outcome
**     is unknown: those are then taken as committed, and must be wholly so);
**   - no intermediate values, no corrupt values, padding as its writer wrote it;
**   - real time: nothing seen whose commit call began after the reader's
**     begin returned; nothing missed that was acknowledged before the
**     reader's begin was called;
**   - within one snapshot: the same key reads the same twice; a transaction
**     seen in one key is seen in every key of it the snapshot read; a
**     register agrees with the last operation its event list shows; the
**     accounts add up (both banks: the "B/" keys, the table's "U/" rows);
**   - committed appends are where their writer put them (no lost update), and
**     present in the final state, all or none of a transaction's keys
**     (durable ones at least, when the region was removed: an acknowledged
**     ASYNC commit is durable once a SYNC commit began after it returned);
**   - the dependency graph (write-write, write-read, read-write edges of the
**     list keys) has no cycle without anti-dependencies (G1c) and none with
**     exactly one (G-single); cycles with more are write skew, allowed under
**     snapshot isolation, and counted.
*/
#include "checker.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX
#define EXAMPLES 5

enum { OB_ABSENT, OB_VAL, OB_CORRUPT };
enum { RO_WORKER, RO_INIT, RO_FINAL, RO_PRE };
enum { OUT_NONE, OUT_OK, OUT_DAEMON, OUT_CONFLICT, OUT_FAIL };
enum { ST_COMMITTED, ST_ABORTED, ST_UNKNOWN, ST_PRESENT };
enum { K_OTHER, K_LIST, K_REG, K_ACCT, K_RACCT, K_GEN };
enum { E_WW = 1, E_WR = 2, E_RW = 4 };

typedef struct obs {
  uint8_t st, flags;
  uint32_t padlen;
  int64_t num;
  uint32_t nids;
  size_t off;                /* into ck.ids */
} obs;

typedef struct rd {
  uint32_t key;
  uint32_t scan;             /* 1 + the scan of its transaction that returned it; 0 = a get */
  obs o;
} rd;

typedef struct wr {
  uint32_t key;
  int32_t pos;               /* position in the key's final list; -1 = not there */
  obs o;
} wr;

typedef struct scn {
  char *lo, *hi;
  int complete;              /* its Z line was logged */
} scn;

typedef struct txn {
  uint64_t id;
  int64_t b0, b1, c0, c1;
  size_t rd0, wr0, sc0;
  uint32_t nrd, nwr, nsc;
  uint8_t role, out, mode, status;
  uint8_t seen, durable;
  uint32_t mark;
  int64_t seen_b1;           /* the earliest snapshot (a worker's b1) that saw it */
} txn;

typedef struct key {
  char *name;
  uint8_t kind;
  unsigned idx, gen;
  char fam;
  int has_fin;
  size_t fin_off;            /* the final list, in ck.ids */
  uint32_t fin_len;
  uint32_t *fin_tx;          /* the transaction of each final element */
  int64_t *sufmin_c1;        /* earliest acknowledgement among elements i.. */
  uint32_t state_rd;         /* its read in final.state */
  uint32_t stamp, first_rd;  /* per-reader scratch */
} key;

typedef struct hmap {
  uint64_t *h;
  uint32_t *v;
  size_t cap, n;
} hmap;

typedef struct ck {
  FILE *log;
  stress_report *rep;
  int region_removed;
  unsigned accounts;
  int64_t balance;
  unsigned row_accounts;     /* the table's row bank ("U/" rows) */
  int64_t row_balance;
  txn *tx;   size_t ntx, captx;
  rd *rd;    size_t nrd, caprd;
  wr *wr;    size_t nwr, capwr;
  scn *sc;   size_t nsc, capsc;
  uint64_t *ids; size_t nids, capids;
  key *keys; size_t nkeys, capkeys;
  uint32_t *sorted;          /* key indexes by name */
  hmap txmap, keymap;
  uint32_t fin, ini;         /* the final.state and init.state transactions */
  uint32_t stamp;
  int64_t max_sync_c0;
  int64_t max_present_c0;    /* the latest commit call begun among transactions found in the state after it */
  unsigned examples[CK_NKINDS];
} ck;

static const char *const kind_names[CK_NKINDS] = {
  "aborted read", "intermediate read", "lost update", "divergent read", "fractured read",
  "read from the future", "stale read", "non-repeatable read", "bank sum", "register mismatch",
  "corrupt value", "half-present transaction", "acknowledged commit lost", "G1c cycle", "G-single cycle",
};

const char *stress_anomaly_name(int kind)
{
  return kind >= 0 && kind < CK_NKINDS ? kind_names[kind] : "?";
}

/* ------------------------------------------------------------ memory */

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = realloc(p, c * size);
  if (!q) {
    fprintf(stderr, "sochdb-stress check: out of memory\n");
    exit(2);
  }
  *cap = c;
  return q;
}

#define PUSH(arr, n, cap) ((arr) = grow((arr), &(cap), (n) + 1, sizeof *(arr)), &(arr)[(n)++])

static uint64_t mix64(uint64_t x)
{
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  return x | 1;   /* 0 marks an empty slot */
}

static uint64_t hash_str(const char *s)
{
  uint64_t h = UINT64_C(1469598103934665603);
  for (; *s; s++) h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
  return mix64(h);
}

typedef int eq_fn(const ck *c, uint32_t v, const void *arg);

static uint32_t hmap_find(const ck *c, const hmap *m, uint64_t h, eq_fn *eq, const void *arg)
{
  if (!m->cap) return NONE;
  for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (!m->h[i]) return NONE;
    if (m->h[i] == h && eq(c, m->v[i], arg)) return m->v[i];
  }
}

static void hmap_put(hmap *m, uint64_t h, uint32_t v);

static void hmap_rehash(hmap *m)
{
  hmap old = *m;
  m->cap = old.cap ? old.cap * 2 : 1024;
  m->h = calloc(m->cap, sizeof *m->h);
  m->v = calloc(m->cap, sizeof *m->v);
  if (!m->h || !m->v) {
    fprintf(stderr, "sochdb-stress check: out of memory\n");
    exit(2);
  }
  m->n = 0;
  for (size_t i = 0; i < old.cap; i++)
    if (old.h[i]) hmap_put(m, old.h[i], old.v[i]);
  free(old.h);
  free(old.v);
}

static void hmap_put(hmap *m, uint64_t h, uint32_t v)
{
  if ((m->n + 1) * 2 > m->cap) hmap_rehash(m);
  size_t i = h & (m->cap - 1);
  while (m->h[i]) i = (i + 1) & (m->cap - 1);
  m->h[i] = h;
  m->v[i] = v;
  m->n++;
}

static int eq_txn(const ck *c, uint32_t v, const void *arg)
{
  return c->tx[v].id == *(const uint64_t *)arg;
}

static int eq_key(const ck *c, uint32_t v, const void *arg)
{
  return strcmp(c->keys[v].name, arg) == 0;
}

static uint32_t txn_of(const ck *c, uint64_t id)
{
  return hmap_find(c, &c->txmap, mix64(id), eq_txn, &id);
}

static uint32_t key_find(const ck *c, const char *name)
{
  return hmap_find(c, &c->keymap, hash_str(name), eq_key, name);
}

/* ------------------------------------------------------------ reporting */

static void anomaly(ck *c, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void anomaly(ck *c, int kind, const char *fmt, ...)
{
  c->rep->anomalies[kind]++;
  c->rep->anomalies_total++;
  if (!c->log || c->examples[kind]++ >= EXAMPLES) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(c->log, "  ANOMALY %s: ", kind_names[kind]);
  vfprintf(c->log, fmt, ap);
  fprintf(c->log, "\n");
  va_end(ap);
}

/* "w.c" of an id, in one of a few rotating static buffers (for messages). */
static const char *idstr(uint64_t id)
{
  static char buf[8][32];
  static int n;
  char *b = buf[n++ % 8];
  snprintf(b, 32, "%x.%llx", (unsigned)(id >> 40), (unsigned long long)(id & ((UINT64_C(1) << 40) - 1)));
  return b;
}

/* ------------------------------------------------------------ parsing */

static int parse_id(const char *s, uint64_t *out)
{
  char *end;
  unsigned long long w = strtoull(s, &end, 16);
  if (end == s || *end != '.') return -1;
  const char *p = end + 1;
  unsigned long long n = strtoull(p, &end, 16);
  if (end == p || (*end && *end != ',') || w >= (1u << 24) || n >= (UINT64_C(1) << 40)) return -1;
  *out = ((uint64_t)w << 40) | n;
  return 0;
}

static void key_classify(key *k)
{
  const char *n = k->name;
  k->kind = K_OTHER;
  if (strlen(n) < 3 || n[1] != '/') return;
  k->fam = n[0];
  char *end;
  if ((n[0] == 'L' || n[0] == 'E' || n[0] == 'F' || n[0] == 'T') && strlen(n) == 13 && n[6] == '/') {
    k->idx = (unsigned)strtoul(n + 2, &end, 16);
    k->gen = (unsigned)strtoul(n + 7, &end, 16);
    k->kind = K_LIST;
  } else if (n[0] == 'D' || n[0] == 'V' || n[0] == 'B' || n[0] == 'U') {
    k->idx = (unsigned)strtoul(n + 2, &end, 16);
    k->kind = *end ? K_OTHER : n[0] == 'D' || n[0] == 'V' ? K_REG : n[0] == 'B' ? K_ACCT : K_RACCT;
  } else if (n[0] == 'G') {
    k->kind = K_GEN;
  }
}

static uint32_t key_intern(ck *c, const char *name)
{
  uint32_t k = key_find(c, name);
  if (k != NONE) return k;
  key *nk = PUSH(c->keys, c->nkeys, c->capkeys);
  memset(nk, 0, sizeof *nk);
  nk->name = strdup(name);
  nk->state_rd = NONE;
  nk->stamp = 0;
  key_classify(nk);
  k = (uint32_t)(c->nkeys - 1);
  hmap_put(&c->keymap, hash_str(name), k);
  return k;
}

/* "-", "?" or num:padlen:flags:ids. 0, or -1 if malformed. */
static int parse_obs(ck *c, const char *s, obs *o)
{
  memset(o, 0, sizeof *o);
  o->off = c->nids;
  if (!strcmp(s, "-")) return 0;
  if (!strcmp(s, "?")) {
    o->st = OB_CORRUPT;
    return 0;
  }
  long long num;
  unsigned pad, flags;
  int used = 0;
  if (sscanf(s, "%lld:%u:%u:%n", &num, &pad, &flags, &used) != 3 || !used) return -1;
  o->st = OB_VAL;
  o->num = num;
  o->padlen = pad;
  o->flags = (uint8_t)flags;
  for (const char *p = s + used; *p;) {
    uint64_t id;
    if (parse_id(p, &id) != 0) return -1;
    *PUSH(c->ids, c->nids, c->capids) = id;
    o->nids++;
    const char *comma = strchr(p, ',');
    p = comma ? comma + 1 : p + strlen(p);
  }
  return 0;
}

static int parse_outcome(const char *w)
{
  if (!strcmp(w, "ok")) return OUT_OK;
  if (!strcmp(w, "daemon")) return OUT_DAEMON;
  if (!strcmp(w, "conflict")) return OUT_CONFLICT;
  return OUT_FAIL;
}

/* The record being read: everything pushed since its T line belongs to it. */
typedef struct rec {
  int open;
  txn t;
  size_t nrd, nwr, nsc, nids;
  uint32_t scan;             /* the scan in progress (1-based), 0 = none */
} rec;

static void rec_drop(ck *c, rec *r)
{
  if (!r->open) return;
  for (size_t i = r->nsc; i < c->nsc; i++) {
    free(c->sc[i].lo);
    free(c->sc[i].hi);
  }
  c->nrd = r->nrd;
  c->nwr = r->nwr;
  c->nsc = r->nsc;
  c->nids = r->nids;
  r->open = 0;
}

static int rec_start(ck *c, rec *r, char **tok, int n, int role)
{
  rec_drop(c, r);
  memset(&r->t, 0, sizeof r->t);
  long long b0, b1, c0;
  if (n != 7 || parse_id(tok[1], &r->t.id) != 0 || sscanf(tok[4], "%lld", &b0) != 1 ||
      sscanf(tok[5], "%lld", &b1) != 1 || sscanf(tok[6], "%lld", &c0) != 1)
    return -1;
  r->t.b0 = b0;
  r->t.b1 = b1;
  r->t.c0 = c0;
  r->t.mode = (uint8_t)tok[3][0];
  r->t.role = (uint8_t)role;
  r->t.out = OUT_NONE;
  r->nrd = c->nrd;
  r->nwr = c->nwr;
  r->nsc = c->nsc;
  r->nids = c->nids;
  r->scan = 0;
  r->open = 1;
  return 0;
}

static int rec_finish(ck *c, rec *r, const char *id)
{
  uint64_t v;
  if (!r->open || parse_id(id, &v) != 0 || v != r->t.id) return -1;
  if (txn_of(c, v) != NONE) {
    fprintf(stderr, "sochdb-stress check: transaction %s logged twice\n", id);
    return -1;
  }
  txn *t = PUSH(c->tx, c->ntx, c->captx);
  *t = r->t;
  t->rd0 = r->nrd;
  t->nrd = (uint32_t)(c->nrd - r->nrd);
  t->wr0 = r->nwr;
  t->nwr = (uint32_t)(c->nwr - r->nwr);
  t->sc0 = r->nsc;
  t->nsc = (uint32_t)(c->nsc - r->nsc);
  hmap_put(&c->txmap, mix64(v), (uint32_t)(c->ntx - 1));
  r->open = 0;
  return 0;
}

static int parse_rw(ck *c, rec *r, char **tok, int n)
{
  if (!r->open || n != 3) return -1;
  obs o;
  if (parse_obs(c, tok[2], &o) != 0) return -1;
  uint32_t k = key_intern(c, tok[1]);
  if (tok[0][0] == 'R') {
    rd *x = PUSH(c->rd, c->nrd, c->caprd);
    x->key = k;
    x->scan = r->scan;
    x->o = o;
  } else {
    wr *x = PUSH(c->wr, c->nwr, c->capwr);
    x->key = k;
    x->pos = -1;
    x->o = o;
  }
  return 0;
}

static int parse_scan(ck *c, rec *r, char **tok, int n)
{
  if (!r->open) return -1;
  if (tok[0][0] == 'Z') {
    if (!r->scan) return -1;
    c->sc[r->nsc + r->scan - 1].complete = 1;
    r->scan = 0;
    return 0;
  }
  if (n != 3) return -1;
  scn *s = PUSH(c->sc, c->nsc, c->capsc);
  s->lo = strdup(tok[1]);
  s->hi = strdup(tok[2]);
  s->complete = 0;
  r->scan = (uint32_t)(c->nsc - r->nsc);
  return 0;
}

static int parse_outcome_line(ck *c, char **tok, int n)
{
  uint64_t id;
  long long c1;
  if (n != 4 || parse_id(tok[1], &id) != 0 || sscanf(tok[3], "%lld", &c1) != 1) return -1;
  uint32_t t = txn_of(c, id);
  if (t == NONE) return 0;   /* its intent was torn: the commit was never called */
  c->tx[t].out = (uint8_t)parse_outcome(tok[2]);
  c->tx[t].c1 = c1;
  return 0;
}

static int split(char *line, char **tok, int max)
{
  int n = 0;
  for (char *save = NULL, *p = strtok_r(line, " ", &save); p && n < max; p = strtok_r(NULL, " ", &save))
    tok[n++] = p;
  return n;
}

static int parse_line(ck *c, rec *r, char *line, int role)
{
  char *tok[8];
  int n = split(line, tok, 8);
  if (n == 0) return 0;
  switch (tok[0][0]) {
  case 'H': return 0;
  case 'T': return rec_start(c, r, tok, n, role);
  case 'R':
  case 'W': return parse_rw(c, r, tok, n);
  case 'S':
  case 'Z': return parse_scan(c, r, tok, n);
  case 'I': return n == 2 ? rec_finish(c, r, tok[1]) : -1;
  case 'O': return parse_outcome_line(c, tok, n);
  default:  return -1;
  }
}

/* One history file. A line without its newline (the last one of a killed
** worker) is ignored, and so is a record without its I line. */
static int parse_file(ck *c, const char *path, int role)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    if (role == RO_INIT && errno == ENOENT) return 0;
    fprintf(stderr, "sochdb-stress check: %s: %s\n", path, strerror(errno));
    return -1;
  }
  rec r = { 0 };
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  long lineno = 0;
  int rc = 0;
  while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
    lineno++;
    if (line[len - 1] != '\n') break;
    line[len - 1] = 0;
    rc = parse_line(c, &r, line, role);
    if (rc) fprintf(stderr, "sochdb-stress check: %s:%ld: malformed line\n", path, lineno);
  }
  rec_drop(c, &r);
  free(line);
  fclose(f);
  return rc;
}

static int parse_meta(ck *c, const char *dir)
{
  char path[4200], line[256];
  snprintf(path, sizeof path, "%s/meta", dir);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "sochdb-stress check: %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    long long v;
    double d;
    if (sscanf(line, "accounts=%lld", &v) == 1) c->accounts = (unsigned)v;
    if (sscanf(line, "balance=%lld", &v) == 1) c->balance = v;
    if (sscanf(line, "row_accounts=%lld", &v) == 1) c->row_accounts = (unsigned)v;
    if (sscanf(line, "row_balance=%lld", &v) == 1) c->row_balance = v;
    if (sscanf(line, "region_removed=%lld", &v) == 1) c->region_removed = v != 0;
    if (sscanf(line, "seconds=%lf", &d) == 1) c->rep->seconds = d;
  }
  fclose(f);
  return 0;
}

static int is_history(const char *name)
{
  size_t n = strlen(name);
  return !strncmp(name, "hist-", 5) && n > 9 && !strcmp(name + n - 4, ".log");
}

static int parse_unit(ck *c, const char *dir)
{
  char path[4200];
  if (parse_meta(c, dir) != 0) return -1;
  snprintf(path, sizeof path, "%s/init.state", dir);
  if (parse_file(c, path, RO_INIT) != 0) return -1;
  c->ini = c->ntx ? (uint32_t)(c->ntx - 1) : NONE;
  DIR *d = opendir(dir);
  if (!d) return -1;
  int rc = 0;
  for (struct dirent *e; rc == 0 && (e = readdir(d));) {
    if (!is_history(e->d_name)) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    rc = parse_file(c, path, RO_WORKER);
    c->rep->histories++;
  }
  closedir(d);
  size_t before = c->ntx;
  snprintf(path, sizeof path, "%s/final.state", dir);
  if (rc == 0) rc = parse_file(c, path, RO_FINAL);
  if (rc == 0 && (c->ntx != before + 1 || c->tx[before].out != OUT_OK)) {
    fprintf(stderr, "sochdb-stress check: %s holds no complete state\n", path);
    rc = -1;
  }
  c->fin = (uint32_t)before;
  return rc;
}

/* ------------------------------------------------------------ preparing */

static const uint64_t *obs_ids(const ck *c, const obs *o)
{
  return c->ids + o->off;
}

static int cmp_keys(const void *a, const void *b, void *arg)
{
  const ck *c = arg;
  return strcmp(c->keys[*(const uint32_t *)a].name, c->keys[*(const uint32_t *)b].name);
}

static void sort_keys(ck *c)
{
  c->sorted = malloc((c->nkeys + 1) * sizeof *c->sorted);
  for (size_t i = 0; i < c->nkeys; i++) c->sorted[i] = (uint32_t)i;
  qsort_r(c->sorted, c->nkeys, sizeof *c->sorted, cmp_keys, c);
}

/* The first key (in sorted order) not below s. */
static size_t lower_bound(const ck *c, const char *s)
{
  size_t lo = 0, hi = c->nkeys;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (strcmp(c->keys[c->sorted[mid]].name, s) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Append to rds the implied absent reads of scan s (1-based) of t: every
** known key in its range that it did not return — but only the first missing
** generation of a list chain (the later ones, created after the snapshot,
** would make a long run's check quadratic for nothing). */
static void imply_scan(ck *c, const txn *t, uint32_t s, rd **out, size_t *n, size_t *cap)
{
  const scn *sc = &c->sc[t->sc0 + s - 1];
  if (!sc->complete) return;
  uint32_t stamp = ++c->stamp;
  for (uint32_t i = 0; i < t->nrd; i++)
    if (c->rd[t->rd0 + i].scan == s) c->keys[c->rd[t->rd0 + i].key].stamp = stamp;
  const key *last = NULL;   /* the chain of the last implied read */
  for (size_t i = lower_bound(c, sc->lo); i < c->nkeys; i++) {
    uint32_t k = c->sorted[i];
    const key *kk = &c->keys[k];
    if (strcmp(kk->name, sc->hi) >= 0) break;
    if (kk->stamp == stamp) continue;
    if (kk->kind == K_LIST && last && last->fam == kk->fam && last->idx == kk->idx) continue;
    if (kk->kind == K_LIST) last = kk;
    rd *x = PUSH(*out, *n, *cap);
    memset(x, 0, sizeof *x);
    x->key = k;
    x->scan = s;
    x->o.st = OB_ABSENT;
  }
}

/* Rebuild the read array with the implied reads of every complete scan. */
static void expand_scans(ck *c)
{
  rd *out = NULL;
  size_t n = 0, cap = 0;
  for (size_t ti = 0; ti < c->ntx; ti++) {
    txn *t = &c->tx[ti];
    size_t start = n;
    out = grow(out, &cap, n + t->nrd, sizeof *out);
    if (t->nrd) memcpy(out + n, c->rd + t->rd0, t->nrd * sizeof *out);
    n += t->nrd;
    for (uint32_t s = 1; s <= t->nsc; s++) imply_scan(c, t, s, &out, &n, &cap);
    t->rd0 = start;
    t->nrd = (uint32_t)(n - start);
  }
  free(c->rd);
  c->rd = out;
  c->nrd = n;
  c->caprd = cap;
}

/* A transaction known only from init.state: committed before the unit. */
static uint32_t add_pre(ck *c, uint64_t id)
{
  uint32_t t = txn_of(c, id);
  if (t != NONE) return t;
  txn *x = PUSH(c->tx, c->ntx, c->captx);
  memset(x, 0, sizeof *x);
  x->id = id;
  x->b0 = x->b1 = x->c0 = x->c1 = INT64_MIN;
  x->role = RO_PRE;
  x->out = OUT_OK;
  x->mode = 's';
  x->wr0 = c->nwr;
  x->rd0 = c->nrd;
  x->sc0 = c->nsc;
  hmap_put(&c->txmap, mix64(id), (uint32_t)(c->ntx - 1));
  return (uint32_t)(c->ntx - 1);
}

/* The last write of key k by transaction t, or NULL. */
static wr *write_of(const ck *c, const txn *t, uint32_t k)
{
  for (uint32_t i = t->nwr; i > 0; i--)
    if (c->wr[t->wr0 + i - 1].key == k) return &c->wr[t->wr0 + i - 1];
  return NULL;
}

/* Register r's last operation as seen by t's E reads: its id, 0 when t saw
** the chain empty from generation 0, or 1 (no id has counter 1 in worker 0
** except setup, which writes no register) when it cannot tell. */
#define OP_UNKNOWN 1
/* The event chain family of a register: "D/" registers log in "E/", the
** table's row registers ("V/") in "F/". */
#define EVENTS(k) ((k)->fam == 'V' ? 'F' : 'E')
static uint64_t last_op(const ck *c, const txn *t, char fam, unsigned r)
{
  int64_t best = -1;
  uint64_t op = OP_UNKNOWN;
  for (uint32_t i = 0; i < t->nrd; i++) {
    const rd *x = &c->rd[t->rd0 + i];
    const key *k = &c->keys[x->key];
    if (k->kind != K_LIST || k->fam != fam || k->idx != r) continue;
    if (x->o.st == OB_VAL && x->o.nids && (int64_t)k->gen > best) {
      best = k->gen;
      op = obs_ids(c, &x->o)[x->o.nids - 1];
    } else if (x->o.st == OB_ABSENT && k->gen == 0 && best < 0) {
      op = 0;
    }
  }
  return op;
}

/* Transactions named in init.state: the last operation of each register
** gets the register's value there as its write, for the register check. */
static void add_pre_txns(ck *c)
{
  if (c->ini == NONE) return;
  const txn *ini = &c->tx[c->ini];
  for (uint32_t i = 0; i < ini->nrd; i++) {
    const rd *x = &c->rd[ini->rd0 + i];
    const key *k = &c->keys[x->key];
    if (k->kind != K_REG) continue;
    uint64_t op = last_op(c, &c->tx[c->ini], EVENTS(k), k->idx);
    if (op <= OP_UNKNOWN || txn_of(c, op) != NONE) continue;
    uint32_t t = add_pre(c, op);
    wr *w = PUSH(c->wr, c->nwr, c->capwr);
    w->key = x->key;
    w->pos = -1;
    w->o = x->o;
    c->tx[t].wr0 = c->nwr - 1;
    c->tx[t].nwr = 1;
    ini = &c->tx[c->ini];
  }
  size_t end = ini->rd0 + ini->nrd;
  for (size_t i = ini->rd0; i < end; i++)
    for (uint32_t j = 0; j < c->rd[i].o.nids; j++) add_pre(c, obs_ids(c, &c->rd[i].o)[j]);
}

/* Statuses: committed, aborted, unknown; unknown ones seen anywhere are present. */
static void classify(ck *c)
{
  for (size_t i = 0; i < c->nrd; i++)
    for (uint32_t j = 0; j < c->rd[i].o.nids; j++) {
      uint32_t t = txn_of(c, obs_ids(c, &c->rd[i].o)[j]);
      if (t != NONE) c->tx[t].seen = 1;
    }
  /* A write a worker's snapshot saw was published before that snapshot's
  ** begin returned (b1), so before any commit call that began after b1: a
  ** SYNC commit acknowledged after that makes it durable too, whatever its
  ** own outcome (an unknown one included) and whenever it returned. */
  for (size_t i = 0; i < c->ntx; i++) c->tx[i].seen_b1 = INT64_MAX;
  for (size_t r = 0; r < c->ntx; r++) {
    const txn *rt = &c->tx[r];
    if (rt->role != RO_WORKER) continue;
    for (uint32_t i = 0; i < rt->nrd; i++) {
      const rd *x = &c->rd[rt->rd0 + i];
      for (uint32_t j = 0; j < x->o.nids; j++) {
        uint32_t t = txn_of(c, obs_ids(c, &x->o)[j]);
        if (t != NONE && t != r && rt->b1 < c->tx[t].seen_b1) c->tx[t].seen_b1 = rt->b1;
      }
    }
  }
  c->max_sync_c0 = INT64_MIN;
  for (size_t i = 0; i < c->ntx; i++) {
    txn *t = &c->tx[i];
    if (t->out == OUT_OK || t->out == OUT_DAEMON) t->status = ST_COMMITTED;
    else if (t->out == OUT_NONE) t->status = t->seen ? ST_PRESENT : ST_UNKNOWN;
    else t->status = ST_ABORTED;
    if (t->role == RO_WORKER && t->mode == 's' && t->out == OUT_OK && t->c0 > c->max_sync_c0)
      c->max_sync_c0 = t->c0;
  }
  for (size_t i = 0; i < c->ntx; i++) {
    txn *t = &c->tx[i];
    t->durable = t->role == RO_PRE || (t->mode == 's' && t->out == OUT_OK) ||
                 (t->status == ST_COMMITTED && t->c1 < c->max_sync_c0) ||
                 ((t->status == ST_COMMITTED || t->status == ST_PRESENT) && t->seen_b1 < c->max_sync_c0);
  }
}

static int live(const txn *t)
{
  return t->status == ST_COMMITTED || t->status == ST_PRESENT;
}

/* ------------------------------------------------------------ final lists */

static void set_final(ck *c, uint32_t ki, const obs *o)
{
  key *k = &c->keys[ki];
  k->has_fin = 1;
  k->fin_off = o ? o->off : 0;
  k->fin_len = o && o->st == OB_VAL ? o->nids : 0;
  k->fin_tx = malloc((k->fin_len + 1) * sizeof *k->fin_tx);
  k->sufmin_c1 = malloc((k->fin_len + 1) * sizeof *k->sufmin_c1);
  k->sufmin_c1[k->fin_len] = INT64_MAX;
  for (uint32_t i = k->fin_len; i > 0; i--) {
    uint32_t t = txn_of(c, c->ids[k->fin_off + i - 1]);
    k->fin_tx[i - 1] = t;
    int64_t ack = t != NONE && (c->tx[t].out == OUT_OK || c->tx[t].out == OUT_DAEMON) ? c->tx[t].c1 : INT64_MAX;
    k->sufmin_c1[i - 1] = ack < k->sufmin_c1[i] ? ack : k->sufmin_c1[i];
    wr *w = t != NONE ? write_of(c, &c->tx[t], ki) : NULL;
    if (w && w->pos >= 0)
      anomaly(c, CK_DIVERGENT_READ, "%s appears twice in the final list of %s", idstr(c->tx[t].id), k->name);
    if (w) w->pos = (int32_t)(i - 1);
  }
}

/* Each list key's final list: final.state's when the region was kept, else
** the longest list anyone read or a live transaction wrote. */
static void build_finals(ck *c)
{
  const txn *fin = &c->tx[c->fin];
  for (uint32_t i = 0; i < fin->nrd; i++) c->keys[c->rd[fin->rd0 + i].key].state_rd = (uint32_t)(fin->rd0 + i);
  const obs **best = calloc(c->nkeys + 1, sizeof *best);
  for (size_t i = 0; i < c->nrd; i++) {
    const obs *o = &c->rd[i].o;
    uint32_t k = c->rd[i].key;
    if (o->st == OB_VAL && (!best[k] || o->nids > best[k]->nids)) best[k] = o;
  }
  for (size_t i = 0; i < c->ntx; i++) {
    const txn *t = &c->tx[i];
    if (!live(t) || t->role != RO_WORKER) continue;
    for (uint32_t j = 0; j < t->nwr; j++) {
      const wr *w = &c->wr[t->wr0 + j];
      if (w->o.st == OB_VAL && write_of(c, t, w->key) == w && (!best[w->key] || w->o.nids > best[w->key]->nids))
        best[w->key] = &w->o;
    }
  }
  for (size_t k = 0; k < c->nkeys; k++) {
    if (c->keys[k].kind != K_LIST) continue;
    const key *kk = &c->keys[k];
    int from_state = !c->region_removed && kk->state_rd != NONE;
    set_final(c, (uint32_t)k, from_state ? &c->rd[kk->state_rd].o : best[k]);
  }
  free(best);
}

/* How many leading ids o shares with key k's final list. */
static uint32_t common_prefix(const ck *c, const key *k, const obs *o)
{
  uint32_t n = o->nids < k->fin_len ? o->nids : k->fin_len, i = 0;
  const uint64_t *a = obs_ids(c, o), *f = c->ids + k->fin_off;
  while (i < n && a[i] == f[i]) i++;
  return i;
}

static int is_prefix(const ck *c, const key *k, const obs *o)
{
  return o->st != OB_CORRUPT && (o->st == OB_ABSENT || (o->nids <= k->fin_len && common_prefix(c, k, o) == o->nids));
}

/* ------------------------------------------------------------ per-read checks */

/* Every id in o: logged, not aborted, its commit begun before t's snapshot. */
static void check_ids(ck *c, const txn *t, const rd *x)
{
  const key *k = &c->keys[x->key];
  for (uint32_t j = 0; j < x->o.nids; j++) {
    uint64_t id = obs_ids(c, &x->o)[j];
    uint32_t w = txn_of(c, id);
    if (w == NONE) {
      anomaly(c, CK_ABORTED_READ, "%s read %s and saw %s, which never logged a commit", idstr(t->id), k->name, idstr(id));
    } else if (c->tx[w].status == ST_ABORTED) {
      anomaly(c, CK_ABORTED_READ, "%s read %s and saw %s, whose commit failed", idstr(t->id), k->name, idstr(id));
    } else if (c->tx[w].c0 > t->b1 && w != (uint32_t)(t - c->tx)) {
      anomaly(c, CK_FUTURE_READ, "%s (snapshot taken by %lld) read %s and saw %s, whose commit began at %lld",
              idstr(t->id), (long long)t->b1, k->name, idstr(id), (long long)c->tx[w].c0);
    }
  }
}

/* Padding as the value's writer wrote it. */
static void check_padding(ck *c, const txn *t, const rd *x)
{
  if (x->o.st != OB_VAL || !x->o.nids) return;
  uint64_t id = obs_ids(c, &x->o)[x->o.nids - 1];
  uint32_t w = txn_of(c, id);
  const wr *v = w != NONE ? write_of(c, &c->tx[w], x->key) : NULL;
  if (v && v->o.st == OB_VAL && v->o.padlen != x->o.padlen)
    anomaly(c, CK_CORRUPT_VALUE, "%s read %s written by %s with %u bytes of padding; it wrote %u", idstr(t->id),
            c->keys[x->key].name, idstr(id), x->o.padlen, v->o.padlen);
}

/* A list read: a prefix of the final list, and missing nothing acknowledged before t began. */
static void check_list_read(ck *c, const txn *t, const rd *x)
{
  const key *k = &c->keys[x->key];
  if (!k->has_fin || x->o.st == OB_CORRUPT) return;
  if (!is_prefix(c, k, &x->o)) {
    anomaly(c, CK_DIVERGENT_READ, "%s read %s as %u ids, diverging from its final list (%u ids) at position %u",
            idstr(t->id), k->name, x->o.nids, k->fin_len, common_prefix(c, k, &x->o));
    return;
  }
  uint32_t n = x->o.st == OB_VAL ? x->o.nids : 0;
  if (t->role == RO_WORKER && k->sufmin_c1[n] < t->b0) {
    uint32_t i = n;   /* the element acknowledged first */
    while (i + 1 < k->fin_len && k->sufmin_c1[i + 1] == k->sufmin_c1[n]) i++;
    anomaly(c, CK_STALE_READ, "%s (begun at %lld) read %s without %s, acknowledged at %lld", idstr(t->id),
            (long long)t->b0, k->name, idstr(c->ids[k->fin_off + i]), (long long)k->sufmin_c1[n]);
  }
}

/* A list of init.state (committed and durable before the unit): still a
** prefix of the key's final list, and all there in final.state. */
static void check_carried(ck *c, const rd *x)
{
  const key *k = &c->keys[x->key];
  if (!k->has_fin || x->o.st == OB_CORRUPT) return;
  if (!is_prefix(c, k, &x->o)) {
    anomaly(c, CK_DIVERGENT_READ, "%s in init.state is not a prefix of its final list", k->name);
    return;
  }
  const obs *s = k->state_rd != NONE ? &c->rd[k->state_rd].o : NULL;
  uint32_t before = x->o.st == OB_VAL ? x->o.nids : 0, after = s && s->st == OB_VAL ? s->nids : 0;
  if (s && after < before)
    anomaly(c, CK_LOST_COMMIT, "%s held %u ids before the unit (durable) and %u in final.state", k->name, before,
            after);
}

/* Same key read twice in t: the same observation. */
static int obs_equal(const ck *c, const obs *a, const obs *b)
{
  return a->st == b->st && a->flags == b->flags && a->padlen == b->padlen && a->num == b->num &&
         a->nids == b->nids && !memcmp(obs_ids(c, a), obs_ids(c, b), a->nids * sizeof(uint64_t));
}

static void check_read(ck *c, const txn *t, const rd *x, uint32_t stamp)
{
  key *k = &c->keys[x->key];
  c->rep->reads++;
  if (k->stamp == stamp) {
    c->rep->long_rereads++;
    if (!obs_equal(c, &c->rd[k->first_rd].o, &x->o))
      anomaly(c, CK_NONREPEATABLE, "%s read %s twice and saw two different values", idstr(t->id), k->name);
    return;
  }
  k->stamp = stamp;
  k->first_rd = (uint32_t)(x - c->rd);
  if (x->o.st == OB_CORRUPT) anomaly(c, CK_CORRUPT_VALUE, "%s read %s: not a valid value", idstr(t->id), k->name);
  if (x->o.flags & 1) anomaly(c, CK_INTERMEDIATE_READ, "%s read %s: an intermediate value", idstr(t->id), k->name);
  if (t->role == RO_INIT) {
    if (k->kind == K_LIST) check_carried(c, x);
    return;
  }
  check_ids(c, t, x);
  check_padding(c, t, x);
  if (k->kind == K_LIST) check_list_read(c, t, x);
}

/* ------------------------------------------------------------ per-snapshot checks */

/* Every transaction t saw in a list must be seen in every list of it t read. */
static void check_fractured(ck *c, txn *t, uint32_t stamp)
{
  uint32_t ti = (uint32_t)(t - c->tx);
  for (uint32_t i = 0; i < t->nrd; i++) {
    const rd *x = &c->rd[t->rd0 + i];
    if (c->keys[x->key].kind != K_LIST || x->o.st != OB_VAL) continue;
    for (uint32_t j = 0; j < x->o.nids; j++) {
      uint32_t wi = txn_of(c, obs_ids(c, &x->o)[j]);
      if (wi == NONE || wi == ti || c->tx[wi].mark == stamp) continue;
      c->tx[wi].mark = stamp;
      const txn *w = &c->tx[wi];
      for (uint32_t m = 0; m < w->nwr; m++) {
        const wr *v = &c->wr[w->wr0 + m];
        const key *k = &c->keys[v->key];
        if (k->kind != K_LIST || k->stamp != stamp || v->pos < 0 || write_of(c, w, v->key) != v) continue;
        const obs *seen = &c->rd[k->first_rd].o;
        if (is_prefix(c, k, seen) && (seen->st != OB_VAL || (uint32_t)v->pos >= seen->nids))
          anomaly(c, CK_FRACTURED_READ, "%s saw %s in %s but not in %s, which it also wrote", idstr(t->id),
                  idstr(w->id), c->keys[x->key].name, k->name);
      }
    }
  }
}

/* Every account of one bank family (K_ACCT: "B/" keys, K_RACCT: the
** table's "U/" rows) read (by get or scan) in t: their sum. */
static void check_bank_family(ck *c, const txn *t, uint8_t kind, unsigned accounts, int64_t balance)
{
  unsigned n = 0;
  int64_t sum = 0;
  for (uint32_t i = 0; i < t->nrd; i++) {
    const key *k = &c->keys[c->rd[t->rd0 + i].key];
    if (k->kind != kind || k->idx >= accounts || k->first_rd != t->rd0 + i) continue;
    const obs *o = &c->rd[k->first_rd].o;
    if (o->st == OB_CORRUPT) return;
    n++;
    sum += o->st == OB_VAL ? o->num : 0;
  }
  if (n < accounts || !accounts) return;
  c->rep->bank_snapshots++;
  if (sum != (int64_t)accounts * balance)
    anomaly(c, CK_BANK_SUM, "%s saw all %u %s sum to %lld, not %lld", idstr(t->id), accounts,
            kind == K_ACCT ? "accounts" : "row accounts", (long long)sum, (long long)accounts * balance);
}

static void check_bank(ck *c, const txn *t)
{
  check_bank_family(c, t, K_ACCT, c->accounts, c->balance);
  check_bank_family(c, t, K_RACCT, c->row_accounts, c->row_balance);
}

/* Each register t read along with its event list: value = what the last event did. */
static void check_registers(ck *c, const txn *t, uint32_t stamp)
{
  for (uint32_t i = 0; i < t->nrd; i++) {
    const key *rk = &c->keys[c->rd[t->rd0 + i].key];
    if (rk->kind != K_REG || rk->stamp != stamp || (uint32_t)(t->rd0 + i) != rk->first_rd) continue;
    uint64_t op = last_op(c, t, EVENTS(rk), rk->idx);
    if (op == OP_UNKNOWN) continue;
    const obs *o = &c->rd[rk->first_rd].o;
    uint32_t w = op ? txn_of(c, op) : NONE;
    const wr *v = w != NONE ? write_of(c, &c->tx[w], c->rd[t->rd0 + i].key) : NULL;
    if (op && !v) continue;   /* its last event is unknown to us (flagged as an aborted read if need be) */
    int want_absent = !op || v->o.st == OB_ABSENT;
    int ok = want_absent ? o->st == OB_ABSENT : o->st == OB_VAL && o->nids == 1 && obs_ids(c, o)[0] == op;
    if (!ok)
      anomaly(c, CK_REGISTER, "%s read %s as %s but its event list ends with %s (%s)", idstr(t->id), rk->name,
              o->st == OB_ABSENT ? "absent" : o->nids ? idstr(obs_ids(c, o)[0]) : "?", op ? idstr(op) : "nothing",
              want_absent ? "absent" : "a put");
  }
}

static void check_txn(ck *c, txn *t)
{
  uint32_t stamp = ++c->stamp;
  for (uint32_t i = 0; i < t->nrd; i++) check_read(c, t, &c->rd[t->rd0 + i], stamp);
  if (t->role == RO_INIT) return;
  check_fractured(c, t, stamp);
  check_bank(c, t);
  check_registers(c, t, stamp);
}

/* ------------------------------------------------------------ writers */

/* A live transaction's appends: where it put them in the final lists. */
static void check_lost_updates(ck *c, const txn *t)
{
  for (uint32_t i = 0; i < t->nwr; i++) {
    const wr *w = &c->wr[t->wr0 + i];
    const key *k = &c->keys[w->key];
    if (k->kind != K_LIST || !k->has_fin || w->o.st != OB_VAL || write_of(c, t, w->key) != w) continue;
    uint32_t common = common_prefix(c, k, &w->o);
    if (common < w->o.nids && common < k->fin_len)
      anomaly(c, CK_LOST_UPDATE, "%s appended to %s after %u ids, but the final list differs at position %u (%s %s)",
              idstr(t->id), k->name, w->o.nids - 1, common, idstr(c->ids[k->fin_off + common]),
              t->status == ST_COMMITTED ? "committed" : "outcome unknown");
  }
}

/* A transaction present after the unit committed after everything it read:
** what it saw must be there too (a rebuild from the WAL may lose a suffix of
** the commits, never a commit while keeping a later one). */
static void check_reads_kept(ck *c, const txn *t)
{
  for (uint32_t i = 0; i < t->nrd; i++) {
    const rd *x = &c->rd[t->rd0 + i];
    const key *k = &c->keys[x->key];
    if (k->kind != K_LIST || k->state_rd == NONE || x->o.st != OB_VAL) continue;
    const obs *s = &c->rd[k->state_rd].o;
    uint32_t len = s->st == OB_VAL ? s->nids : 0;
    if (len < x->o.nids && is_prefix(c, k, &x->o))
      anomaly(c, CK_LOST_COMMIT, "%s is there after the unit, but %s, which it read in %s, is not", idstr(t->id),
              idstr(obs_ids(c, &x->o)[x->o.nids - 1]), k->name);
  }
}

/* How many of t's lists hold its append in final.state, and miss it. */
static void presence(const ck *c, const txn *t, unsigned *pin, unsigned *pout)
{
  unsigned in = 0, out = 0;
  for (uint32_t i = 0; i < t->nwr; i++) {
    const wr *w = &c->wr[t->wr0 + i];
    const key *k = &c->keys[w->key];
    if (k->kind != K_LIST || k->state_rd == NONE || write_of(c, t, w->key) != w) continue;
    const obs *s = &c->rd[k->state_rd].o;
    uint32_t len = s->st == OB_VAL ? s->nids : 0;
    if (w->pos >= 0 && (uint32_t)w->pos < len && obs_ids(c, s)[w->pos] == t->id) in++;
    else out++;
  }
  *pin = in;
  *pout = out;
}

/* A transaction found after the unit was committed after every commit that
** had returned (or been seen) before its commit call began: the log keeps
** commits in order, so those are there too, durable or not. */
static void note_present(ck *c)
{
  c->max_present_c0 = INT64_MIN;
  for (size_t i = 0; i < c->ntx; i++) {
    const txn *t = &c->tx[i];
    unsigned in, out;
    if (t->role != RO_WORKER || !live(t)) continue;
    presence(c, t, &in, &out);
    if (in && t->c0 > c->max_present_c0) c->max_present_c0 = t->c0;
  }
}

/* Whether t returned, or was seen, before a transaction found after the unit
** began its commit call: the log keeps commits in order, so t is there too. */
static int older_than_present(const ck *c, const txn *t)
{
  return (t->status == ST_COMMITTED && t->c1 < c->max_present_c0) || t->seen_b1 < c->max_present_c0;
}

/* After the unit, t must be in all its lists in final.state or in none; in
** all when it was acknowledged (and durable, if the region was removed, or
** older than a commit found there). */
static void check_presence(ck *c, const txn *t)
{
  unsigned in, out;
  presence(c, t, &in, &out);
  int kept_after = older_than_present(c, t);
  if (in && out) {
    anomaly(c, CK_HALF_PRESENT, "%s (%s) is in %u of its lists after the unit and missing from %u", idstr(t->id),
            t->status == ST_COMMITTED ? "committed" : "outcome unknown", in, out);
  } else if (out && (t->status == ST_COMMITTED || t->status == ST_PRESENT)) {
    if (!c->region_removed || t->durable || kept_after) {
      if (t->status == ST_COMMITTED)
        anomaly(c, CK_LOST_COMMIT, "%s was acknowledged (%s commit at %lld) but is missing after the unit%s",
                idstr(t->id), t->mode == 's' ? "SYNC" : "ASYNC", (long long)t->c1,
                c->region_removed && !t->durable ? " (a commit begun after it returned is there)" : "");
      else
        anomaly(c, CK_LOST_COMMIT, "%s (outcome unknown) was seen by a snapshot taken at %lld%s but is missing "
                "after the unit", idstr(t->id), (long long)t->seen_b1,
                c->region_removed ? ", before a durable or surviving commit began," : "");

    } else if (t->status == ST_COMMITTED)
      c->rep->nondurable_lost++;
  } else if (in) {
    c->rep->commits_verified++;
    check_reads_kept(c, t);
  }
}

/* The bank accounts hold no list, only their last writer's id: each transfer
** read the account (the writer before it) and wrote its own id. From the
** writer final.state shows, the chain of writers (each one's read naming the
** one before) is the account's committed history; a transfer off every
** chain of its accounts is lost, one on some and off others half present. */
static void check_accounts(ck *c)
{
  uint8_t *on = malloc(c->ntx + 1);
  uint32_t *in = calloc(c->ntx + 1, sizeof *in), *out = calloc(c->ntx + 1, sizeof *out);
  for (size_t ki = 0; ki < c->nkeys; ki++) {
    const key *k = &c->keys[ki];
    if ((k->kind != K_ACCT && k->kind != K_RACCT) || k->state_rd == NONE) continue;
    memset(on, 0, c->ntx + 1);
    const obs *s = &c->rd[k->state_rd].o;
    uint64_t cur = s->st == OB_VAL && s->nids ? obs_ids(c, s)[0] : 0, before = 0;   /* init.state's writer */
    for (uint32_t i = 0; c->ini != NONE && i < c->tx[c->ini].nrd; i++) {
      const rd *x = &c->rd[c->tx[c->ini].rd0 + i];
      if (x->key == ki && x->o.st == OB_VAL && x->o.nids) before = obs_ids(c, &x->o)[0];
    }
    int reached = !before;
    for (size_t steps = 0; cur && steps <= c->ntx; steps++) {
      if (cur == before) {
        reached = 1;
        break;
      }
      uint32_t t = txn_of(c, cur);
      if (t == NONE || on[t] || !write_of(c, &c->tx[t], (uint32_t)ki)) break;
      on[t] = 1;
      cur = 0;   /* the writer before it: what its first read of the account saw */
      for (uint32_t i = 0; i < c->tx[t].nrd; i++) {
        const rd *x = &c->rd[c->tx[t].rd0 + i];
        if (x->key != ki) continue;
        if (x->o.st == OB_VAL && x->o.nids) cur = obs_ids(c, &x->o)[0];
        break;
      }
    }
    if (!reached)
      anomaly(c, CK_LOST_COMMIT, "%s: its value before the unit (written by %s, durable) is not in the history of its "
              "value after it", k->name, idstr(before));
    for (size_t i = 0; i < c->ntx; i++) {
      const txn *t = &c->tx[i];
      if (t->role != RO_WORKER || !live(t) || !write_of(c, t, (uint32_t)ki)) continue;
      if (on[i]) in[i]++;
      else out[i]++;
    }
  }
  for (size_t i = 0; i < c->ntx; i++) {
    const txn *t = &c->tx[i];
    if (in[i] && out[i]) {
      anomaly(c, CK_HALF_PRESENT, "%s (%s) is in the history of %u of its accounts after the unit and missing "
              "from %u", idstr(t->id), t->status == ST_COMMITTED ? "committed" : "outcome unknown", in[i], out[i]);
    } else if (out[i] && live(t)) {
      /* the same rules as check_presence's: an outcome unknown but seen is a
      ** commit, and one older than a commit found after the unit is there */
      if (!c->region_removed || t->durable || older_than_present(c, t))
        anomaly(c, CK_LOST_COMMIT, "%s (%s) but its account writes are not in the history of the accounts' "
                "values after the unit", idstr(t->id), t->status == ST_COMMITTED ? "acknowledged" : "outcome unknown, seen");
      else if (t->status == ST_COMMITTED)
        c->rep->nondurable_lost++;
    }
  }
  free(on);
  free(in);
  free(out);
}

/* ------------------------------------------------------------ dependency cycles */

typedef struct graph {
  uint32_t n;
  size_t m;
  uint32_t *start;   /* CSR: edges of node v are [start[v], start[v+1]) */
  uint32_t *dst;
  uint8_t *type;
} graph;

typedef struct edge {
  uint32_t src, dst;
  uint8_t type;
} edge;

static void add_edge(edge **e, size_t *n, size_t *cap, uint32_t s, uint32_t d, uint8_t type)
{
  if (s == NONE || d == NONE || s == d) return;
  edge *x = PUSH(*e, *n, *cap);
  x->src = s;
  x->dst = d;
  x->type = type;
}

/* Write-write edges along a key's final list. */
static void key_edges(const key *k, edge **e, size_t *n, size_t *cap)
{
  for (uint32_t i = 0; i + 1 < k->fin_len; i++) add_edge(e, n, cap, k->fin_tx[i], k->fin_tx[i + 1], E_WW);
}

/* Write-read and read-write edges of t's list reads (the first of each key). */
static void read_edges(ck *c, const txn *t, edge **e, size_t *n, size_t *cap)
{
  uint32_t ti = (uint32_t)(t - c->tx), stamp = ++c->stamp;
  for (uint32_t i = 0; i < t->nrd; i++) {
    const rd *x = &c->rd[t->rd0 + i];
    key *k = &c->keys[x->key];
    if (k->kind != K_LIST || !k->has_fin || k->stamp == stamp || !is_prefix(c, k, &x->o)) continue;
    k->stamp = stamp;
    uint32_t len = x->o.st == OB_VAL ? x->o.nids : 0;
    if (len) add_edge(e, n, cap, k->fin_tx[len - 1], ti, E_WR);
    if (len < k->fin_len) add_edge(e, n, cap, ti, k->fin_tx[len], E_RW);
  }
}

static int cmp_edge(const void *a, const void *b)
{
  const edge *x = a, *y = b;
  return x->src < y->src ? -1 : x->src > y->src;
}

static void build_graph(ck *c, graph *g)
{
  edge *e = NULL;
  size_t n = 0, cap = 0;
  for (size_t k = 0; k < c->nkeys; k++)
    if (c->keys[k].kind == K_LIST && c->keys[k].has_fin) key_edges(&c->keys[k], &e, &n, &cap);
  for (size_t t = 0; t < c->ntx; t++)
    if (c->tx[t].role == RO_WORKER) read_edges(c, &c->tx[t], &e, &n, &cap);
  if (n) qsort(e, n, sizeof *e, cmp_edge);
  g->n = (uint32_t)c->ntx;
  g->m = n;
  g->start = calloc(g->n + 1, sizeof *g->start);
  g->dst = malloc((n + 1) * sizeof *g->dst);
  g->type = malloc(n + 1);
  for (size_t i = 0; i < n; i++) {
    g->start[e[i].src + 1]++;
    g->dst[i] = e[i].dst;
    g->type[i] = e[i].type;
  }
  for (uint32_t v = 0; v < g->n; v++) g->start[v + 1] += g->start[v];
  free(e);
}

/* Tarjan's strongly connected components over the edges in mask, without
** recursion. comp[v] = its component; returns how many there are. */
static uint32_t tarjan(const graph *g, unsigned mask, uint32_t *comp)
{
  uint32_t *index = malloc(g->n * sizeof *index), *low = malloc(g->n * sizeof *low);
  uint32_t *stack = malloc(g->n * sizeof *stack), *call = malloc(g->n * sizeof *call);
  uint32_t *edge_it = malloc(g->n * sizeof *edge_it);
  uint8_t *on = calloc(g->n, 1);
  uint32_t next = 0, sp = 0, ncomp = 0;
  for (uint32_t v = 0; v < g->n; v++) index[v] = NONE;
  for (uint32_t root = 0; root < g->n; root++) {
    if (index[root] != NONE) continue;
    uint32_t cp = 0;
    call[cp++] = root;
    index[root] = low[root] = next++;
    edge_it[root] = g->start[root];
    stack[sp++] = root;
    on[root] = 1;
    while (cp) {
      uint32_t v = call[cp - 1];
      if (edge_it[v] < g->start[v + 1]) {
        uint32_t i = edge_it[v]++, w = g->dst[i];
        if (!(g->type[i] & mask)) continue;
        if (index[w] == NONE) {
          index[w] = low[w] = next++;
          edge_it[w] = g->start[w];
          stack[sp++] = w;
          on[w] = 1;
          call[cp++] = w;
        } else if (on[w] && index[w] < low[v]) {
          low[v] = index[w];
        }
        continue;
      }
      if (low[v] == index[v]) {
        uint32_t w;
        do {
          w = stack[--sp];
          on[w] = 0;
          comp[w] = ncomp;
        } while (w != v);
        ncomp++;
      }
      cp--;
      if (cp && low[v] < low[call[cp - 1]]) low[call[cp - 1]] = low[v];
    }
  }
  free(index); free(low); free(stack); free(call); free(edge_it); free(on);
  return ncomp;
}

/* Components as member lists: the members of component i are
** nodes[start[i] .. start[i+1]). */
typedef struct comps {
  uint32_t n;
  uint32_t *of;      /* node -> component */
  uint32_t *start;
  uint32_t *nodes;
} comps;

static void comps_build(const graph *g, unsigned mask, comps *cs)
{
  cs->of = malloc((g->n + 1) * sizeof *cs->of);
  cs->n = tarjan(g, mask, cs->of);
  cs->start = calloc(cs->n + 2, sizeof *cs->start);
  cs->nodes = malloc((g->n + 1) * sizeof *cs->nodes);
  for (uint32_t v = 0; v < g->n; v++) cs->start[cs->of[v] + 2]++;
  for (uint32_t i = 0; i < cs->n; i++) cs->start[i + 2] += cs->start[i + 1];
  for (uint32_t v = 0; v < g->n; v++) cs->nodes[cs->start[cs->of[v] + 1]++] = v;
}

static void comps_free(comps *cs)
{
  free(cs->of);
  free(cs->start);
  free(cs->nodes);
}

static uint32_t comp_size(const comps *cs, uint32_t i)
{
  return cs->start[i + 1] - cs->start[i];
}

static void describe_component(ck *c, const comps *cs, uint32_t cid, char *out, size_t n)
{
  size_t len = 0;
  uint32_t size = comp_size(cs, cid);
  for (uint32_t i = 0; i < size && i < 8; i++)
    len += (size_t)snprintf(out + len, n - len, " %s", idstr(c->tx[cs->nodes[cs->start[cid] + i]].id));
  if (size > 8) snprintf(out + len, n - len, " ... (%u transactions)", size);
}

/* Is there a path from `from` to `to` over write-write / write-read edges
** inside component cid? At most *budget steps. */
typedef struct bfs {
  uint32_t *queue, *seen, stamp;
  long budget;
} bfs;

static int reaches(const graph *g, const comps *cs, uint32_t cid, uint32_t from, uint32_t to, bfs *b)
{
  uint32_t head = 0, tail = 0, stamp = ++b->stamp;
  b->queue[tail++] = from;
  b->seen[from] = stamp;
  while (head < tail && b->budget-- > 0) {
    uint32_t v = b->queue[head++];
    if (v == to) return 1;
    for (uint32_t i = g->start[v]; i < g->start[v + 1]; i++) {
      uint32_t w = g->dst[i];
      if ((g->type[i] & (E_WW | E_WR)) && cs->of[w] == cid && b->seen[w] != stamp) {
        b->seen[w] = stamp;
        b->queue[tail++] = w;
      }
    }
  }
  return 0;
}

/* A component with anti-dependencies and no G1c cycle: G-single if one rw
** edge closes a cycle of ww/wr edges, else write skew (two or more). */
static void classify_component(ck *c, const graph *g, const comps *cs, uint32_t cid, bfs *b)
{
  b->budget = 5000000;
  for (uint32_t m = cs->start[cid]; m < cs->start[cid + 1]; m++) {
    uint32_t v = cs->nodes[m];
    for (uint32_t i = g->start[v]; i < g->start[v + 1]; i++) {
      if (g->type[i] != E_RW || cs->of[g->dst[i]] != cid || !reaches(g, cs, cid, g->dst[i], v, b)) continue;
      char who[512];
      describe_component(c, cs, cid, who, sizeof who);
      anomaly(c, CK_CYCLE_GSINGLE, "%s -rw-> %s closes a cycle of write/read dependencies among%s",
              idstr(c->tx[v].id), idstr(c->tx[g->dst[i]].id), who);
      return;
    }
  }
  c->rep->write_skew++;
}

static void check_cycles(ck *c)
{
  graph g;
  build_graph(c, &g);
  comps flow, all;
  comps_build(&g, E_WW | E_WR, &flow);
  uint8_t *in_g1c = calloc(g.n + 1, 1);
  for (uint32_t i = 0; i < flow.n; i++) {
    if (comp_size(&flow, i) < 2) continue;
    char who[512];
    describe_component(c, &flow, i, who, sizeof who);
    anomaly(c, CK_CYCLE_G1C, "a cycle of write/read dependencies among%s", who);
    for (uint32_t m = flow.start[i]; m < flow.start[i + 1]; m++) in_g1c[flow.nodes[m]] = 1;
  }
  comps_build(&g, E_WW | E_WR | E_RW, &all);
  bfs b = { malloc((g.n + 1) * sizeof *b.queue), calloc(g.n + 1, sizeof *b.seen), 0, 0 };
  for (uint32_t i = 0; i < all.n; i++) {
    int reported = 0;   /* it holds a G1c cycle already reported */
    for (uint32_t m = all.start[i]; m < all.start[i + 1] && !reported; m++) reported = in_g1c[all.nodes[m]];
    if (comp_size(&all, i) >= 2 && !reported) classify_component(c, &g, &all, i, &b);
  }
  free(b.queue);
  free(b.seen);
  free(in_g1c);
  comps_free(&flow);
  comps_free(&all);
  free(g.start);
  free(g.dst);
  free(g.type);
}

/* ------------------------------------------------------------ the unit */

static void count_outcomes(ck *c)
{
  stress_report *r = c->rep;
  for (size_t i = 0; i < c->ntx; i++) {
    const txn *t = &c->tx[i];
    if (t->role != RO_WORKER) continue;
    r->txns++;
    if (t->status == ST_COMMITTED && t->mode == 'r') r->readonly++;
    else if (t->status == ST_COMMITTED) r->committed++;
    else if (t->out == OUT_CONFLICT) r->conflicted++;
    else if (t->status == ST_ABORTED) r->failed++;
    else r->unknown++;
    if (t->status == ST_PRESENT) r->unknown_present++;
  }
}

static void run_checks(ck *c)
{
  note_present(c);
  for (size_t i = 0; i < c->ntx; i++)
    if (c->tx[i].role != RO_PRE) check_txn(c, &c->tx[i]);
  for (size_t i = 0; i < c->ntx; i++) {
    const txn *t = &c->tx[i];
    if (t->role != RO_WORKER || !live(t)) continue;
    check_lost_updates(c, t);
    check_presence(c, t);
  }
  check_accounts(c);
  check_cycles(c);
}

static void ck_free(ck *c)
{
  for (size_t i = 0; i < c->nkeys; i++) {
    free(c->keys[i].name);
    free(c->keys[i].fin_tx);
    free(c->keys[i].sufmin_c1);
  }
  for (size_t i = 0; i < c->nsc; i++) {
    free(c->sc[i].lo);
    free(c->sc[i].hi);
  }
  free(c->keys); free(c->tx); free(c->rd); free(c->wr); free(c->sc); free(c->ids); free(c->sorted);
  free(c->txmap.h); free(c->txmap.v); free(c->keymap.h); free(c->keymap.v);
}

int stress_check_unit(const char *dir, FILE *log, stress_report *rep)
{
  memset(rep, 0, sizeof *rep);
  ck c;
  memset(&c, 0, sizeof c);
  c.log = log;
  c.rep = rep;
  c.ini = c.fin = NONE;
  rep->units = 1;
  int rc = parse_unit(&c, dir);
  if (rc == 0) {
    sort_keys(&c);
    expand_scans(&c);
    add_pre_txns(&c);
    classify(&c);
    build_finals(&c);
    count_outcomes(&c);
    run_checks(&c);
  }
  ck_free(&c);
  return rc ? -1 : rep->anomalies_total ? 1 : 0;
}

/* ------------------------------------------------------------ reports */

void stress_report_add(stress_report *d, const stress_report *s)
{
  d->units += s->units;
  d->histories += s->histories;
  d->txns += s->txns;
  d->committed += s->committed;
  d->conflicted += s->conflicted;
  d->failed += s->failed;
  d->unknown += s->unknown;
  d->unknown_present += s->unknown_present;
  d->readonly += s->readonly;
  d->reads += s->reads;
  d->bank_snapshots += s->bank_snapshots;
  d->long_rereads += s->long_rereads;
  d->commits_verified += s->commits_verified;
  d->nondurable_lost += s->nondurable_lost;
  d->write_skew += s->write_skew;
  for (int k = 0; k < CK_NKINDS; k++) d->anomalies[k] += s->anomalies[k];
  d->anomalies_total += s->anomalies_total;
  d->seconds += s->seconds;
}

void stress_report_print(FILE *out, const stress_report *r)
{
  fprintf(out, "  histories      %u worker processes%s\n", r->histories, r->units > 1 ? " (all units)" : "");
  fprintf(out, "  transactions   %llu: %llu committed, %llu read-only, %llu conflicted, %llu failed, "
          "%llu unknown outcome (%llu found committed)\n",
          (unsigned long long)r->txns, (unsigned long long)r->committed, (unsigned long long)r->readonly,
          (unsigned long long)r->conflicted, (unsigned long long)r->failed, (unsigned long long)r->unknown,
          (unsigned long long)r->unknown_present);
  fprintf(out, "  reads checked  %llu (%llu bank snapshots, %llu repeated reads in one snapshot)\n",
          (unsigned long long)r->reads, (unsigned long long)r->bank_snapshots, (unsigned long long)r->long_rereads);
  fprintf(out, "  commits        %llu verified in the final state, %llu not yet durable lost with the region "
          "(allowed)\n", (unsigned long long)r->commits_verified, (unsigned long long)r->nondurable_lost);
  fprintf(out, "  write skew     %llu (allowed under snapshot isolation)\n", (unsigned long long)r->write_skew);
  fprintf(out, "  anomalies      %llu", (unsigned long long)r->anomalies_total);
  const char *sep = " (";
  for (int k = 0; k < CK_NKINDS; k++)
    if (r->anomalies[k]) {
      fprintf(out, "%s%s: %llu", sep, kind_names[k], (unsigned long long)r->anomalies[k]);
      sep = ", ";
    }
  fprintf(out, "%s\n", r->anomalies_total ? ")" : "");
  if (r->seconds > 0) fprintf(out, "  elapsed        %.1f s of workload\n", r->seconds);
}
