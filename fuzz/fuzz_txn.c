/*
** fuzz_txn.c — libFuzzer target for the key-value API (include/sochdb.h),
** checked against a model of snapshot isolation.
**
** One database, opened once, with 1 MiB memtables: inputs rotate memtables
** and the daemon (sochdbd: $SOCHDB_DAEMON, which scripts/fuzz.sh sets)
** flushes and compacts behind them, so reads and conflict checks meet
** memtables and SSTables alike. Each input starts from an empty database
** (the keys the last one left are deleted) and is a program for up to three
** transactions at once: begins, puts, deletes, gets (whose values must
** read the same until their transaction ends), scans (kept and transient
** iterators over a range, some with a write of their own transaction, or
** another's commit, between opening and reading), commits (ASYNC, and SYNC through the group
** commit) and aborts, and calls the API
** must refuse with SOCHDB_INVALID (NULL arguments, keys of length 0, past
** SOCHDB_MAX_KEY or in the engine's reserved 0xFF 0xFF range, values past
** SOCHDB_MAX_VALUE or half a memtable, writes to a read-only transaction,
** unknown flags). Keys come from a three-letter alphabet, so transactions
** share them.
**
** The model: every committed version of each key with the commit that made
** it; a transaction sees the versions at or before its snapshot (the commits
** before its begin) with its own writes over them; a commit with writes
** conflicts exactly when a commit after its snapshot wrote one of its keys
** (first committer wins), and otherwise applies every write at once. Any
** answer of the engine that the model does not give aborts the fuzzer.
*/
#include "fuzzdb.h"

#include <stdint.h>
#include <string.h>

#define MEMTABLE_BYTES FUZZDB_MEMTABLE_BYTES
#define SLOTS          3
#define MAX_KEYS       512          /* distinct keys of one input's model */
#define BIG_VALUE      (64u << 10)
#define HELD_MAX       8

static uint8_t scratch[MEMTABLE_BYTES];   /* bytes for values and for over-long keys */

/* ---- the model --------------------------------------------------------------- */

struct version {
  uint64_t       seq;       /* the model's commit number */
  int            deleted;
  const uint8_t *val;       /* into scratch */
  size_t         vlen;
};

struct key {
  uint8_t         bytes[8];
  size_t          len;
  struct version *v;        /* oldest first */
  size_t          nv, cap;
};

struct write {
  size_t         key;       /* index into keys */
  int            deleted;
  const uint8_t *val;
  size_t         vlen;
};

struct slot {
  sochdb_txn   *t;          /* NULL: free */
  int           readonly;
  uint64_t      snapshot;
  struct write *w;          /* one per key, the last write wins */
  size_t        nw, cap;
  struct held {             /* values gets returned: valid until the transaction ends */
    const void    *got;
    const uint8_t *want;
    size_t         len;
  } held[HELD_MAX];
  unsigned      nheld;      /* the newest HELD_MAX of them, a ring */
};

static struct key  keys[MAX_KEYS];
static size_t      nkeys;
static uint64_t    committed;   /* the model's newest commit */
static struct slot slots[SLOTS];

static int byte_order(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
  int c = memcmp(a, b, alen < blen ? alen : blen);
  return c ? c : (alen > blen) - (alen < blen);
}

static size_t key_index(const uint8_t *k, size_t len)
{
  for (size_t i = 0; i < nkeys; i++)
    if (keys[i].len == len && memcmp(keys[i].bytes, k, len) == 0)
      return i;
  if (nkeys == MAX_KEYS)
    abort();   /* cannot happen: the alphabet makes at most 120 keys */
  memcpy(keys[nkeys].bytes, k, len);
  keys[nkeys].len = len;
  return nkeys++;
}

/* What transaction s sees at key i: 1 with the value, 0 if absent. */
static int model_get(const struct slot *s, size_t i, const uint8_t **val, size_t *vlen)
{
  for (size_t j = 0; j < s->nw; j++)
    if (s->w[j].key == i) {
      *val = s->w[j].val;
      *vlen = s->w[j].vlen;
      return !s->w[j].deleted;
    }
  const struct key *k = &keys[i];
  for (size_t j = k->nv; j-- > 0;)
    if (k->v[j].seq <= s->snapshot) {
      *val = k->v[j].val;
      *vlen = k->v[j].vlen;
      return !k->v[j].deleted;
    }
  return 0;
}

static void model_write(struct slot *s, size_t i, int deleted, const uint8_t *val, size_t vlen)
{
  for (size_t j = 0; j < s->nw; j++)
    if (s->w[j].key == i) {
      s->w[j] = (struct write){ i, deleted, val, vlen };
      return;
    }
  if (s->nw == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 16;
    s->w = realloc(s->w, s->cap * sizeof *s->w);
    if (!s->w)
      abort();
  }
  s->w[s->nw++] = (struct write){ i, deleted, val, vlen };
}

/* SOCHDB_OK or SOCHDB_CONFLICT, as the model decides; applies on OK. */
static int model_commit(struct slot *s)
{
  if (s->readonly || !s->nw)
    return SOCHDB_OK;
  for (size_t j = 0; j < s->nw; j++) {
    const struct key *k = &keys[s->w[j].key];
    if (k->nv && k->v[k->nv - 1].seq > s->snapshot)
      return SOCHDB_CONFLICT;
  }
  committed++;
  for (size_t j = 0; j < s->nw; j++) {
    struct key *k = &keys[s->w[j].key];
    if (k->nv == k->cap) {
      k->cap = k->cap ? 2 * k->cap : 4;
      k->v = realloc(k->v, k->cap * sizeof *k->v);
      if (!k->v)
        abort();
    }
    k->v[k->nv++] = (struct version){ committed, s->w[j].deleted, s->w[j].val, s->w[j].vlen };
  }
  return SOCHDB_OK;
}

/* The values gets returned still read as they did, whatever the
** transaction did since (writes of the same key included): checked just
** before it ends. */
static void check_held(const struct slot *s)
{
  unsigned n = s->nheld < HELD_MAX ? s->nheld : HELD_MAX;
  for (unsigned i = 0; i < n; i++)
    if (memcmp(s->held[i].got, s->held[i].want, s->held[i].len) != 0)
      mismatch("a value get returned changed before its transaction ended", SOCHDB_OK);
}

static void slot_end(struct slot *s)
{
  s->t = NULL;
  s->nw = 0;
  s->nheld = 0;
}

static void model_reset(void)
{
  for (size_t i = 0; i < nkeys; i++)
    keys[i].nv = 0;
  nkeys = 0;
  committed = 0;
}

/* ---- the input --------------------------------------------------------------- */

struct input {
  const uint8_t *p;
  size_t         n;
};

static unsigned take(struct input *in)
{
  if (!in->n)
    return 0;
  in->n--;
  return *in->p++;
}

/* A key of 1 to 4 letters of "abc" (120 keys in all). */
static size_t take_key(struct input *in, uint8_t *k)
{
  unsigned b = take(in);
  size_t len = 1 + b % 4;
  unsigned letters = take(in) | take(in) << 8;
  for (size_t i = 0; i < len; i++, letters /= 3)
    k[i] = (uint8_t)('a' + letters % 3);
  return len;
}

/* A value: its length from the input (a big one now and then), its bytes
** from scratch at an offset the input picks, so values differ. */
static const uint8_t *take_value(struct input *in, size_t *vlen)
{
  unsigned b = take(in), off = take(in) * 61u;
  *vlen = b < 240 ? b : b < 250 ? (b - 239) * 1000u : BIG_VALUE;
  return scratch + off;
}

/* ---- operations ------------------------------------------------------------- */

static struct slot *take_slot(struct input *in) { return &slots[take(in) % SLOTS]; }

static void op_begin(struct slot *s, int readonly)
{
  if (s->t)
    return;
  int rc = sochdb_txn_begin(fuzzdb, readonly ? SOCHDB_TXN_READONLY : 0, &s->t);
  if (rc == SOCHDB_BUSY) {   /* the write stall, past busy_timeout_ms: the daemon is slow, not wrong */
    s->t = NULL;
    return;
  }
  expect_rc(rc, SOCHDB_OK, "begin");
  s->readonly = readonly;
  s->snapshot = committed;
  s->nw = 0;
  s->nheld = 0;
}

static void op_write(struct slot *s, struct input *in, int deleted)
{
  uint8_t k[8];
  size_t klen = take_key(in, k), vlen = 0;
  const uint8_t *val = deleted ? NULL : take_value(in, &vlen);
  if (!s->t)
    return;
  int rc = deleted ? sochdb_delete(s->t, k, klen) : sochdb_put(s->t, k, klen, val, vlen);
  if (s->readonly) {
    expect_rc(rc, SOCHDB_INVALID, "a write to a read-only transaction");
    return;
  }
  expect_rc(rc, SOCHDB_OK, deleted ? "delete" : "put");
  model_write(s, key_index(k, klen), deleted, val, vlen);
}

static void op_get(struct slot *s, struct input *in)
{
  uint8_t k[8];
  size_t klen = take_key(in, k);
  if (!s->t)
    return;
  const void *val;
  size_t vlen;
  int rc = sochdb_get(s->t, k, klen, &val, &vlen);
  const uint8_t *want;
  size_t wlen;
  if (!model_get(s, key_index(k, klen), &want, &wlen)) {
    expect_rc(rc, SOCHDB_NOTFOUND, "get of a key the snapshot does not hold");
    return;
  }
  expect_rc(rc, SOCHDB_OK, "get of a key the snapshot holds");
  if (vlen != wlen || (wlen && memcmp(val, want, wlen) != 0))
    mismatch("get returned another value", rc);
  if (wlen)
    s->held[s->nheld++ % HELD_MAX] = (struct held){ val, want, wlen };
}

static int in_range(const uint8_t *k, size_t len, const uint8_t *lo, size_t lolen, const uint8_t *hi, size_t hilen)
{
  return (!lolen || byte_order(k, len, lo, lolen) >= 0) && (!hilen || byte_order(k, len, hi, hilen) < 0);
}

/* The next key the model holds for s in the range, after `after` (NULL:
** from the start); its index, or -1. */
static long model_next(const struct slot *s, const uint8_t *after, size_t alen, const uint8_t *lo, size_t lolen,
                       const uint8_t *hi, size_t hilen)
{
  long best = -1;
  for (size_t i = 0; i < nkeys; i++) {
    const uint8_t *v;
    size_t vl;
    const struct key *k = &keys[i];
    if (!in_range(k->bytes, k->len, lo, lolen, hi, hilen) || (after && byte_order(k->bytes, k->len, after, alen) <= 0))
      continue;
    if (best >= 0 && byte_order(k->bytes, k->len, keys[best].bytes, keys[best].len) >= 0)
      continue;
    if (model_get(s, i, &v, &vl))
      best = (long)i;
  }
  return best;
}

/* Read iterator it to its end, checking each pair against what view holds
** in the range, in key order. Closes it. */
static void check_scan(sochdb_iter *it, const struct slot *view, const uint8_t *lo, size_t lolen, const uint8_t *hi,
                       size_t hilen)
{
  const uint8_t *after = NULL;
  size_t alen = 0;
  for (;;) {
    const void *key, *val;
    size_t klen, vlen;
    int rc = sochdb_iter_next(it, &key, &klen, &val, &vlen);
    long want = model_next(view, after, alen, lo, lolen, hi, hilen);
    if (want < 0) {
      expect_rc(rc, SOCHDB_NOTFOUND, "a scan went past the keys the snapshot holds");
      break;
    }
    expect_rc(rc, SOCHDB_OK, "a scan ended before a key the snapshot holds");
    const uint8_t *wval;
    size_t wlen;
    model_get(view, (size_t)want, &wval, &wlen);
    if (klen != keys[want].len || memcmp(key, keys[want].bytes, klen) != 0)
      mismatch("a scan returned another key", rc);
    if (vlen != wlen || (wlen && memcmp(val, wval, wlen) != 0))
      mismatch("a scan returned another value", rc);
    after = keys[want].bytes;
    alen = keys[want].len;
  }
  sochdb_iter_close(it);
}

static void op_commit(struct slot *s, unsigned flags);

/* A scan of a range (either bound may be absent) through a kept or a
** transient iterator. With `write_first`, a key is written between the
** iterator's opening and its reading: by its own transaction, which it
** sees as it was when it was opened, or (how & 16) by the next slot's,
** which then commits, outside the iterator's snapshot. */
static void op_scan(struct slot *s, struct input *in, int write_first)
{
  uint8_t lo[8], hi[8];
  unsigned how = take(in);
  size_t lolen = how & 1 ? take_key(in, lo) : 0, hilen = how & 2 ? take_key(in, hi) : 0;
  struct slot *writer = how & 16 ? &slots[(size_t)(s - slots + 1) % SLOTS] : s;
  if (!s->t) {
    if (write_first)
      op_write(writer, in, how & 8);   /* its bytes are taken all the same */
    return;
  }
  sochdb_iter *it;
  int rc = how & 4 ? sochdb_iter_open_transient(s->t, lolen ? lo : NULL, lolen, hilen ? hi : NULL, hilen, &it)
                   : sochdb_iter_open(s->t, lolen ? lo : NULL, lolen, hilen ? hi : NULL, hilen, &it);
  expect_rc(rc, SOCHDB_OK, "iter_open");
  struct slot opened = *s;
  if (write_first) {
    opened.w = malloc((s->nw ? s->nw : 1) * sizeof *s->w);
    if (!opened.w)
      abort();
    if (s->nw)   /* s->w is NULL until the slot's first write */
      memcpy(opened.w, s->w, s->nw * sizeof *s->w);
    op_write(writer, in, how & 8);
    if (writer != s)
      op_commit(writer, SOCHDB_ASYNC);
  }
  check_scan(it, &opened, lo, lolen, hi, hilen);
  if (write_first)
    free(opened.w);
}

static void op_commit(struct slot *s, unsigned flags)
{
  if (!s->t)
    return;
  check_held(s);
  int rc = sochdb_commit(s->t, flags);
  if (rc == SOCHDB_DAEMON && flags == SOCHDB_SYNC)
    rc = SOCHDB_OK;   /* applied and visible, only not confirmed durable in time: a slow machine */
  if (rc == SOCHDB_BUSY) {   /* nothing applied: as the write stall's begin above */
    slot_end(s);
    return;
  }
  expect_rc(rc, model_commit(s), "commit");
  slot_end(s);
}

static void op_abort(struct slot *s)
{
  if (!s->t)
    return;
  check_held(s);
  sochdb_abort(s->t);
  slot_end(s);
}

/* A call the API must refuse; the transaction stays usable unless said. */
static void op_refused(struct slot *s, struct input *in)
{
  unsigned which = take(in) % 12;
  uint8_t k[8] = "a";
  const void *val;
  size_t vlen;
  sochdb_iter *it;
  sochdb_txn *t;
  if (which == 0) {
    expect_rc(sochdb_txn_begin(fuzzdb, 0x80, &t), SOCHDB_INVALID, "begin with unknown flags");
    return;
  }
  if (!s->t)
    return;
  switch (which) {
  case 1: expect_rc(sochdb_put(s->t, NULL, 1, "v", 1), SOCHDB_INVALID, "a NULL key"); break;
  case 2: expect_rc(sochdb_put(s->t, k, 0, "v", 1), SOCHDB_INVALID, "an empty key"); break;
  case 3: expect_rc(sochdb_put(s->t, scratch, SOCHDB_MAX_KEY + 1, "v", 1), SOCHDB_INVALID, "a key too long"); break;
  case 4: expect_rc(sochdb_put(s->t, "\xff\xff" "a", 3, "v", 1), SOCHDB_INVALID, "a reserved key"); break;
  case 5:   /* must be refused before a byte of the value is read: scratch is far shorter */
    expect_rc(sochdb_put(s->t, k, 1, scratch, (size_t)SOCHDB_MAX_VALUE + 1), SOCHDB_INVALID, "a value too long");
    break;
  case 6: expect_rc(sochdb_put(s->t, k, 1, NULL, 5), SOCHDB_INVALID, "a NULL value of 5 bytes"); break;
  case 7:
    expect_rc(sochdb_put(s->t, k, 1, scratch, MEMTABLE_BYTES / 2 + 1), SOCHDB_INVALID, "a value over half a memtable");
    break;
  case 8: expect_rc(sochdb_get(s->t, k, 1, NULL, &vlen), SOCHDB_INVALID, "get into NULL"); break;
  case 9: expect_rc(sochdb_delete(s->t, "\xff\xff", 2), SOCHDB_INVALID, "a delete of a reserved key"); break;
  case 10:
    expect_rc(sochdb_iter_open(s->t, scratch, SOCHDB_MAX_KEY + 1, NULL, 0, &it), SOCHDB_INVALID, "a bound too long");
    break;
  case 11:   /* frees the transaction all the same, applying nothing */
    expect_rc(sochdb_commit(s->t, 0x80), SOCHDB_INVALID, "commit with unknown flags");
    slot_end(s);
    break;
  }
  (void)val;
}

/* ---- one input ---------------------------------------------------------------- */

/* Delete whatever the last input left, so that each starts from nothing.
** 0, or -1 if the daemon held writers up past busy_timeout_ms (a stalled
** machine: the input is skipped, not failed). */
static int empty_the_database(void)
{
  sochdb_txn *t;
  int rc = sochdb_txn_begin(fuzzdb, 0, &t);
  if (rc == SOCHDB_BUSY)
    return -1;
  expect_rc(rc, SOCHDB_OK, "the reset's begin");
  sochdb_iter *it;
  expect_rc(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "the reset's scan");
  uint8_t left[MAX_KEYS][8];
  size_t len[MAX_KEYS], n = 0;
  const void *key, *val;
  size_t klen, vlen;
  while ((rc = sochdb_iter_next(it, &key, &klen, &val, &vlen)) == SOCHDB_OK) {
    if (n == MAX_KEYS || klen > sizeof left[0])
      mismatch("the database holds a key no input wrote", rc);
    memcpy(left[n], key, klen);
    len[n++] = klen;
  }
  expect_rc(rc, SOCHDB_NOTFOUND, "the reset's scan ended");
  sochdb_iter_close(it);
  for (size_t i = 0; i < n; i++)
    expect_rc(sochdb_delete(t, left[i], len[i]), SOCHDB_OK, "the reset's delete");
  rc = sochdb_commit(t, SOCHDB_ASYNC);
  if (rc == SOCHDB_BUSY)
    return -1;
  expect_rc(rc, SOCHDB_OK, "the reset's commit");
  return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc, (void)argv;
  for (size_t i = 0; i < sizeof scratch; i++)
    scratch[i] = (uint8_t)(i * 131 + (i >> 8));
  fuzzdb_open("fuzz_txn", "SOCHDB_FUZZ_TXN_DIR", NULL);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct input in = { data, size };
  if (empty_the_database() != 0)
    return 0;
  model_reset();
  while (in.n) {
    unsigned b = take(&in), op = b % 11;
    unsigned commit_flags = b & 0x80 ? SOCHDB_SYNC : SOCHDB_ASYNC;   /* SYNC waits for the group commit */
    struct slot *s = take_slot(&in);
    switch (op) {
    case 0: op_begin(s, 0); break;
    case 1: op_begin(s, 1); break;
    case 2: op_write(s, &in, 0); break;
    case 3: op_write(s, &in, 1); break;
    case 4: op_get(s, &in); break;
    case 5: op_commit(s, commit_flags); break;
    case 6: op_abort(s); break;
    case 7: op_scan(s, &in, 0); break;
    case 8: op_refused(s, &in); break;
    case 9: op_write(s, &in, 0); op_commit(s, commit_flags); break;
    case 10: op_scan(s, &in, 1); break;
    }
  }
  for (unsigned i = 0; i < SLOTS; i++)
    op_abort(&slots[i]);
  return 0;
}
