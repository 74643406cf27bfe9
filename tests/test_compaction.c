/*
** test_compaction.c — leveled compaction: the merge keeps every key once and
** in order with its newest value, applies the horizon (versions above it
** kept, one at or below it, older ones dropped), drops tombstones only at the
** bottom, collapses duplicates, cuts outputs between keys near the target
** size with the right metadata, stops when progress says so and on a damaged
** input; the picker scores levels, picks L0 and round-robin Ln jobs with the
** overlapping files below, skips busy files, computes bottommost, and picks
** everything for a full compaction.
*/
#include <criterion/criterion.h>

#include "compaction.h"
#include "manifest.h"
#include "sochdb.h"
#include "sstfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- entries and input tables ------------------------------------------------ */

struct ent {
  char     key[48];
  uint32_t klen;
  uint64_t seq;
  unsigned kind;
  uint8_t *val;
  uint32_t vlen;
};

struct ents {
  struct ent *e;
  size_t      n, cap;
};

static struct ent *ents_push(struct ents *l, const char *key, uint64_t seq, unsigned kind)
{
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 64;
    l->e = realloc(l->e, l->cap * sizeof *l->e);
    cr_assert_not_null(l->e);
  }
  struct ent *e = &l->e[l->n++];
  memset(e, 0, sizeof *e);
  cr_assert_lt(strlen(key), sizeof e->key);
  strcpy(e->key, key);
  e->klen = (uint32_t)strlen(key);
  e->seq = seq;
  e->kind = kind;
  return e;
}

/* A PUT with a string value (NULL = a DEL). */
static void add(struct ents *l, const char *key, uint64_t seq, const char *val)
{
  struct ent *e = ents_push(l, key, seq, val ? SST_PUT : SST_DEL);
  if (val) {
    e->vlen = (uint32_t)strlen(val);
    e->val = (uint8_t *)strdup(val);
  }
}

/* A PUT of vlen pseudo-random (incompressible) bytes. */
static void add_big(struct ents *l, const char *key, uint64_t seq, uint32_t vlen)
{
  static uint64_t x = 0x9e3779b97f4a7c15ull;
  struct ent *e = ents_push(l, key, seq, SST_PUT);
  e->vlen = vlen;
  e->val = malloc(vlen ? vlen : 1);
  cr_assert_not_null(e->val);
  for (uint32_t i = 0; i < vlen; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    e->val[i] = (uint8_t)x;
  }
}

static void ents_free(struct ents *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->e[i].val);
  free(l->e);
  memset(l, 0, sizeof *l);
}

static int ukey_cmp(const char *a, size_t al, const char *b, size_t bl)
{
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : al == bl ? 0 : al < bl ? -1 : 1;
}

static int ent_cmp(const void *pa, const void *pb)
{
  const struct ent *a = pa, *b = pb;
  int c = ukey_cmp(a->key, a->klen, b->key, b->klen);
  if (c)
    return c;
  return a->seq == b->seq ? 0 : a->seq > b->seq ? -1 : 1;
}

struct input {
  uint8_t          *buf;
  size_t            len;
  struct sst_reader r;
};

/* Build a table of l's entries (sorted here) and open it. */
static void input_make(struct input *in, struct ents *l, size_t block_bytes)
{
  qsort(l->e, l->n, sizeof *l->e, ent_cmp);
  struct sst_builder b;
  cr_assert_eq(sst_builder_init(&b, block_bytes), SOCHDB_OK);
  for (size_t i = 0; i < l->n; i++) {
    struct ent *e = &l->e[i];
    cr_assert_eq(sst_builder_add(&b, e->key, e->klen, e->seq, e->kind, e->val, e->vlen), SOCHDB_OK,
                 "adding %s@%llu", e->key, (unsigned long long)e->seq);
  }
  cr_assert_eq(sst_builder_finish(&b, &in->buf, &in->len), SOCHDB_OK);
  sst_builder_free(&b);
  cr_assert_eq(sst_open(in->buf, in->len, &in->r), SOCHDB_OK);
}

static void input_free(struct input *in)
{
  sst_close(&in->r);
  free(in->buf);
}

/* ---- collecting outputs ----------------------------------------------------------- */

struct out {
  uint8_t *buf;
  size_t   len;
  char     smallest[48], largest[48];
  uint32_t smallest_len, largest_len;
  uint64_t min_seq, max_seq, entries;
};

struct sink {
  struct out o[256];
  size_t     n;
  /* progress */
  uint64_t   calls[64];
  size_t     ncalls;
  size_t     abort_at;     /* the call (1-based) that returns abort_code; 0 = never */
  int        abort_code;
};

static int emit_cb(void *ctx, struct compaction_output *co)
{
  struct sink *s = ctx;
  cr_assert_lt(s->n, 256u);
  cr_assert_gt(co->entries, 0u, "an empty output was emitted");
  cr_assert_lt(co->smallest_len, 48u);
  cr_assert_lt(co->largest_len, 48u);
  struct out *o = &s->o[s->n++];
  o->buf = co->buf;
  o->len = co->len;
  memcpy(o->smallest, co->smallest, co->smallest_len);
  o->smallest_len = co->smallest_len;
  memcpy(o->largest, co->largest, co->largest_len);
  o->largest_len = co->largest_len;
  o->min_seq = co->min_seq;
  o->max_seq = co->max_seq;
  o->entries = co->entries;
  return 0;
}

static int progress_cb(void *ctx, uint64_t bytes)
{
  struct sink *s = ctx;
  if (s->ncalls < 64)
    s->calls[s->ncalls] = bytes;
  s->ncalls++;
  return s->ncalls == s->abort_at ? s->abort_code : 0;
}

static void sink_free(struct sink *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->o[i].buf);
  s->n = 0;
}

/* Read output o back into l (appending). */
static void out_read(const struct out *o, struct ents *l)
{
  struct sst_reader r;
  cr_assert_eq(sst_open(o->buf, o->len, &r), SOCHDB_OK, "an output does not open");
  struct sst_iter it;
  sst_iter_init(&it, &r);
  struct sst_entry e;
  int rc;
  while ((rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    char key[48];
    cr_assert_lt(e.klen, sizeof key);
    memcpy(key, e.key, e.klen);
    key[e.klen] = 0;
    struct ent *x = ents_push(l, key, e.seq, e.kind);
    x->vlen = e.vlen;
    x->val = malloc(e.vlen + 1);
    memcpy(x->val, e.val, e.vlen);
    x->val[e.vlen] = 0;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND);
  sst_iter_free(&it);
  sst_close(&r);
}

/* Run a compaction of ins[0..n) into s, returning its code. */
static int run(struct input *ins, size_t n, uint64_t horizon, int bottommost, const struct compaction_options *o,
               struct sink *s, struct compaction_stats *st)
{
  const struct sst_reader *rs[16];
  cr_assert_leq(n, 16u);
  for (size_t i = 0; i < n; i++)
    rs[i] = &ins[i].r;
  return compaction_run(rs, n, horizon, bottommost, o, emit_cb, progress_cb, s, st);
}

/* Run and read every output back into got (which must be in order). */
static void run_all(struct input *ins, size_t n, uint64_t horizon, int bottommost, struct ents *got,
                    struct compaction_stats *st)
{
  static struct sink s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(run(ins, n, horizon, bottommost, NULL, &s, st), SOCHDB_OK, "%s", sochdb_last_error());
  for (size_t i = 0; i < s.n; i++)
    out_read(&s.o[i], got);
  sink_free(&s);
}

static void expect(const struct ents *got, size_t i, const char *key, uint64_t seq, const char *val)
{
  cr_assert_lt(i, got->n, "only %zu entries, expected %s@%llu", got->n, key, (unsigned long long)seq);
  const struct ent *e = &got->e[i];
  cr_assert_str_eq(e->key, key, "entry %zu is %s@%llu, expected %s@%llu", i, e->key, (unsigned long long)e->seq, key,
                   (unsigned long long)seq);
  cr_assert_eq(e->seq, seq, "entry %zu (%s): seq %llu, expected %llu", i, key, (unsigned long long)e->seq,
               (unsigned long long)seq);
  cr_assert_eq(e->kind, val ? SST_PUT : SST_DEL, "entry %zu (%s@%llu): kind", i, key, (unsigned long long)seq);
  if (val)
    cr_assert_str_eq((const char *)e->val, val, "entry %zu (%s@%llu): value", i, key, (unsigned long long)seq);
}

/* ---- merging ---------------------------------------------------------------------- */

TestSuite(compaction);

Test(compaction, merge_three_overlapping)
{
  struct ents a = { 0 }, b = { 0 }, c = { 0 }, got = { 0 };
  char key[16];
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "k%03d", i);
    if (i % 2 == 0)
      add(&a, key, 10 + (uint64_t)i, "a");
    if (i < 60)
      add(&b, key, 1000 + (uint64_t)i, "b");
    if (i >= 40)
      add(&c, key, 2000 + (uint64_t)i, "c");
  }
  struct input in[3];
  input_make(&in[0], &c, 1024);   /* newest first, oldest last: the order must not matter */
  input_make(&in[1], &a, 1024);
  input_make(&in[2], &b, 1024);
  struct compaction_stats st;
  run_all(in, 3, UINT64_MAX, 0, &got, &st);
  cr_assert_eq(got.n, 100u, "%zu entries out", got.n);
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "k%03d", i);
    expect(&got, (size_t)i, key, i >= 40 ? 2000 + (uint64_t)i : 1000 + (uint64_t)i, i >= 40 ? "c" : "b");
  }
  cr_assert_eq(st.entries_in, a.n + b.n + c.n);
  cr_assert_eq(st.entries_out, 100u);
  cr_assert_eq(st.versions_dropped, a.n + b.n + c.n - 100);
  cr_assert_eq(st.bytes_read, in[0].len + in[1].len + in[2].len);
  for (int i = 0; i < 3; i++)
    input_free(&in[i]);
  ents_free(&a), ents_free(&b), ents_free(&c), ents_free(&got);
}

Test(compaction, horizon_keeps_one_version_at_or_below)
{
  struct ents a = { 0 }, b = { 0 }, got = { 0 };
  add(&a, "all-above", 90, "v90");
  add(&b, "all-above", 80, "v80");
  add(&a, "all-above", 70, "v70");
  add(&a, "all-below", 5, "v5");
  add(&b, "all-below", 3, "v3");
  add(&a, "all-below", 1, "v1");
  add(&a, "at", 40, "v40");
  add(&b, "at", 35, "v35");
  add(&a, "at", 30, "v30");
  add(&b, "mixed", 50, "v50");
  add(&a, "mixed", 40, "v40");
  add(&b, "mixed", 30, "v30");
  add(&a, "mixed", 20, "v20");
  add(&b, "mixed", 10, "v10");
  struct input in[2];
  input_make(&in[0], &a, 0);
  input_make(&in[1], &b, 0);
  struct compaction_stats st;
  run_all(in, 2, 35, 0, &got, &st);
  size_t i = 0;
  expect(&got, i++, "all-above", 90, "v90");
  expect(&got, i++, "all-above", 80, "v80");
  expect(&got, i++, "all-above", 70, "v70");
  expect(&got, i++, "all-below", 5, "v5");
  expect(&got, i++, "at", 40, "v40");
  expect(&got, i++, "at", 35, "v35");
  expect(&got, i++, "mixed", 50, "v50");
  expect(&got, i++, "mixed", 40, "v40");
  expect(&got, i++, "mixed", 30, "v30");
  cr_assert_eq(got.n, i, "%zu entries out, expected %zu", got.n, i);
  cr_assert_eq(st.entries_in, 14u);
  cr_assert_eq(st.entries_out, 9u);
  cr_assert_eq(st.versions_dropped, 5u);
  cr_assert_eq(st.tombstones_dropped, 0u);
  cr_assert_eq(st.duplicates_dropped, 0u);
  input_free(&in[0]), input_free(&in[1]);
  ents_free(&a), ents_free(&b), ents_free(&got);
}

/* The same inputs compacted at and above the bottom. */
static void tombstone_inputs(struct input in[2], struct ents *a, struct ents *b)
{
  add(a, "a", 10, NULL);      /* newest <= horizon and a DEL */
  add(b, "a", 5, "old");
  add(a, "b", 50, NULL);      /* a DEL above the horizon */
  add(b, "b", 5, "b5");
  add(a, "c", 30, "c30");
  add(b, "c", 10, NULL);      /* newest <= horizon under a newer PUT */
  add(a, "c", 5, "c5");
  add(b, "d", 7, "d7");
  input_make(&in[0], a, 0);
  input_make(&in[1], b, 0);
}

Test(compaction, tombstones_kept_above_the_bottom)
{
  struct ents a = { 0 }, b = { 0 }, got = { 0 };
  struct input in[2];
  tombstone_inputs(in, &a, &b);
  struct compaction_stats st;
  run_all(in, 2, 20, 0, &got, &st);
  size_t i = 0;
  expect(&got, i++, "a", 10, NULL);
  expect(&got, i++, "b", 50, NULL);
  expect(&got, i++, "b", 5, "b5");
  expect(&got, i++, "c", 30, "c30");
  expect(&got, i++, "c", 10, NULL);
  expect(&got, i++, "d", 7, "d7");
  cr_assert_eq(got.n, i, "%zu entries out", got.n);
  cr_assert_eq(st.tombstones_dropped, 0u);
  cr_assert_eq(st.versions_dropped, 2u);
  input_free(&in[0]), input_free(&in[1]);
  ents_free(&a), ents_free(&b), ents_free(&got);
}

Test(compaction, tombstones_dropped_at_the_bottom)
{
  struct ents a = { 0 }, b = { 0 }, got = { 0 };
  struct input in[2];
  tombstone_inputs(in, &a, &b);
  struct compaction_stats st;
  run_all(in, 2, 20, 1, &got, &st);
  size_t i = 0;
  expect(&got, i++, "b", 50, NULL);   /* above the horizon: a snapshot may still need it */
  expect(&got, i++, "b", 5, "b5");
  expect(&got, i++, "c", 30, "c30");
  expect(&got, i++, "d", 7, "d7");
  cr_assert_eq(got.n, i, "%zu entries out", got.n);
  cr_assert_eq(st.tombstones_dropped, 2u);
  cr_assert_eq(st.versions_dropped, 2u);
  cr_assert_eq(st.entries_out, 4u);
  input_free(&in[0]), input_free(&in[1]);
  ents_free(&a), ents_free(&b), ents_free(&got);
}

Test(compaction, everything_dropped_emits_nothing)
{
  struct ents a = { 0 };
  add(&a, "x", 3, NULL);
  add(&a, "x", 2, "old");
  struct input in;
  input_make(&in, &a, 0);
  static struct sink s;
  cr_assert_eq(run(&in, 1, 10, 1, NULL, &s, NULL), SOCHDB_OK);
  cr_assert_eq(s.n, 0u, "an output was emitted for nothing");
  cr_assert_eq(run(NULL, 0, 10, 1, NULL, &s, NULL), SOCHDB_OK);
  cr_assert_eq(s.n, 0u);
  input_free(&in);
  ents_free(&a);
}

Test(compaction, duplicates_collapse)
{
  struct ents a = { 0 }, b = { 0 }, c = { 0 }, got = { 0 };
  add(&a, "k1", 5, "first");
  add(&b, "k1", 5, "first");
  add(&c, "k1", 5, "first");
  add(&a, "k2", 9, "x9");
  add(&b, "k2", 9, "x9");
  add(&b, "k2", 4, "x4");
  add(&c, "k2", 4, "x4");
  add(&c, "k3", 1, NULL);
  add(&a, "k3", 1, NULL);
  struct input in[3];
  input_make(&in[0], &a, 0);
  input_make(&in[1], &b, 0);
  input_make(&in[2], &c, 0);
  struct compaction_stats st;
  run_all(in, 3, 0, 0, &got, &st);   /* everything above the horizon: only duplicates go */
  size_t i = 0;
  expect(&got, i++, "k1", 5, "first");
  expect(&got, i++, "k2", 9, "x9");
  expect(&got, i++, "k2", 4, "x4");
  expect(&got, i++, "k3", 1, NULL);
  cr_assert_eq(got.n, i, "%zu entries out", got.n);
  cr_assert_eq(st.duplicates_dropped, 5u);
  cr_assert_eq(st.versions_dropped, 0u);
  cr_assert_eq(st.entries_in, 9u);
  for (int k = 0; k < 3; k++)
    input_free(&in[k]);
  ents_free(&a), ents_free(&b), ents_free(&c), ents_free(&got);
}

Test(compaction, outputs_split_between_keys)
{
  struct ents a = { 0 }, b = { 0 };
  char key[16];
  for (int i = 0; i < 400; i++) {
    snprintf(key, sizeof key, "k%04d", i);
    add_big(i % 3 ? &a : &b, key, 100 + (uint64_t)i, 100);
  }
  for (uint64_t v = 0; v < 300; v++)   /* one key of ~30 KB of versions, far above the target */
    add_big(v % 2 ? &a : &b, "k0200", 1000 + v, 100);
  struct input in[2];
  input_make(&in[0], &a, 1024);
  input_make(&in[1], &b, 1024);
  struct compaction_options o;
  compaction_options_default(&o);
  o.target_file_bytes = 8192;
  o.block_bytes = 1024;
  static struct sink s;
  struct compaction_stats st;
  cr_assert_eq(run(in, 2, 0, 1, &o, &s, &st), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_geq(s.n, 4u, "only %zu outputs", s.n);
  size_t total = 0, holders = 0;
  uint64_t written = 0;
  for (size_t i = 0; i < s.n; i++) {
    struct out *o1 = &s.o[i];
    struct ents got = { 0 };
    out_read(o1, &got);
    cr_assert_eq(got.n, o1->entries);
    cr_assert_eq(o1->smallest_len, got.e[0].klen);
    cr_assert_eq(memcmp(o1->smallest, got.e[0].key, o1->smallest_len), 0, "output %zu: smallest", i);
    cr_assert_eq(o1->largest_len, got.e[got.n - 1].klen);
    cr_assert_eq(memcmp(o1->largest, got.e[got.n - 1].key, o1->largest_len), 0, "output %zu: largest", i);
    uint64_t mn = UINT64_MAX, mx = 0;
    int has_heavy = 0;
    for (size_t k = 0; k < got.n; k++) {
      mn = got.e[k].seq < mn ? got.e[k].seq : mn;
      mx = got.e[k].seq > mx ? got.e[k].seq : mx;
      has_heavy |= strcmp(got.e[k].key, "k0200") == 0;
    }
    cr_assert_eq(o1->min_seq, mn, "output %zu: min seq", i);
    cr_assert_eq(o1->max_seq, mx, "output %zu: max seq", i);
    holders += (size_t)has_heavy;
    if (!has_heavy)
      cr_assert_lt(o1->len, 2 * o.target_file_bytes, "output %zu is %zu bytes", i, o1->len);
    if (i > 0) {
      const struct out *p = &s.o[i - 1];
      cr_assert_lt(ukey_cmp(p->largest, p->largest_len, o1->smallest, o1->smallest_len), 0,
                   "outputs %zu and %zu overlap or are out of order", i - 1, i);
    }
    total += got.n;
    written += o1->len;
    ents_free(&got);
  }
  cr_assert_eq(holders, 1u, "the versions of k0200 are in %zu outputs", holders);
  cr_assert_eq(total, 700u);
  cr_assert_eq(st.entries_out, 700u);
  cr_assert_eq(st.bytes_written, written);
  sink_free(&s);
  input_free(&in[0]), input_free(&in[1]);
  ents_free(&a), ents_free(&b);
}

/* Three inputs of ~1.2 MB each. */
static void big_inputs(struct input in[3], struct ents l[3])
{
  char key[16];
  for (int i = 0; i < 3600; i++) {
    snprintf(key, sizeof key, "k%05d", i);
    add_big(&l[i % 3], key, 1 + (uint64_t)i, 1000);
  }
  for (int k = 0; k < 3; k++)
    input_make(&in[k], &l[k], 0);
}

Test(compaction, progress_reports_and_aborts)
{
  struct ents l[3] = { { 0 } };
  struct input in[3];
  big_inputs(in, l);
  uint64_t total = in[0].len + in[1].len + in[2].len;
  static struct sink s;
  struct compaction_stats st;
  cr_assert_eq(run(in, 3, UINT64_MAX, 0, NULL, &s, &st), SOCHDB_OK);
  cr_assert_geq(s.ncalls, 3u, "progress called %zu times for %llu bytes", s.ncalls, (unsigned long long)total);
  for (size_t i = 1; i < s.ncalls; i++)
    cr_assert_gt(s.calls[i], s.calls[i - 1]);
  cr_assert_eq(s.calls[s.ncalls - 1], total, "the last call reports %llu of %llu",
               (unsigned long long)s.calls[s.ncalls - 1], (unsigned long long)total);
  cr_assert_eq(st.bytes_read, total);
  sink_free(&s);

  memset(&s, 0, sizeof s);
  s.abort_at = 1;
  s.abort_code = 77;
  cr_assert_eq(run(in, 3, UINT64_MAX, 0, NULL, &s, &st), 77);
  cr_assert_eq(s.ncalls, 1u);
  cr_assert_lt(st.bytes_read, total, "the abort came only at the end");
  sink_free(&s);
  for (int k = 0; k < 3; k++)
    input_free(&in[k]), ents_free(&l[k]);
}

static int fail_emit(void *ctx, struct compaction_output *co)
{
  free(co->buf);
  return SOCHDB_IO;
}

Test(compaction, emit_error_returned)
{
  struct ents a = { 0 };
  add(&a, "x", 1, "v");
  struct input in;
  input_make(&in, &a, 0);
  const struct sst_reader *rs[1] = { &in.r };
  cr_assert_eq(compaction_run(rs, 1, 0, 0, NULL, fail_emit, NULL, NULL, NULL), SOCHDB_IO);
  input_free(&in);
  ents_free(&a);
}

Test(compaction, damaged_input_is_corrupt)
{
  struct ents a = { 0 }, b = { 0 };
  char key[16];
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof key, "k%04d", i);
    add_big(i % 2 ? &a : &b, key, 1 + (uint64_t)i, 100);
  }
  struct input in[2];
  input_make(&in[0], &a, 1024);
  input_make(&in[1], &b, 1024);
  cr_assert_gt(in[1].r.nblocks, 3u);
  /* a byte in the middle of the third data block's payload; sst_open does not read data blocks */
  in[1].buf[in[1].r.index[2].offset + 40] ^= 0x20;
  static struct sink s;
  cr_assert_eq(run(in, 2, UINT64_MAX, 0, NULL, &s, NULL), SOCHDB_CORRUPT);
  sink_free(&s);
  input_free(&in[0]), input_free(&in[1]);
  ents_free(&a), ents_free(&b);
}

Test(compaction, bad_arguments)
{
  static struct sink s;
  struct compaction_options o;
  compaction_options_default(&o);
  o.block_bytes = 10;
  cr_assert_eq(compaction_run(NULL, 0, 0, 0, &o, emit_cb, NULL, &s, NULL), SOCHDB_INVALID);
  cr_assert_eq(compaction_run(NULL, 1, 0, 0, NULL, emit_cb, NULL, &s, NULL), SOCHDB_INVALID);
  cr_assert_eq(compaction_run(NULL, 0, 0, 0, NULL, NULL, NULL, &s, NULL), SOCHDB_INVALID);
  struct manifest_state st;
  manifest_state_init(&st);
  struct compaction_picker p = { 0 };
  struct compaction_job j;
  o.l0_trigger = 0;
  cr_assert_eq(compaction_pick(&st, &o, &p, NULL, 0, &j), -SOCHDB_INVALID);
  cr_assert_eq(compaction_pick(NULL, NULL, &p, NULL, 0, &j), -SOCHDB_INVALID);
  cr_assert_eq(compaction_pick_full(&st, NULL), -SOCHDB_INVALID);
}

/* ---- picking ------------------------------------------------------------------------ */

static void put_file(struct manifest_state *s, unsigned level, uint64_t number, const char *lo, const char *hi,
                     uint64_t size)
{
  struct manifest_level *lv = &s->levels[level];
  if (lv->n == lv->cap) {
    lv->cap = lv->cap ? lv->cap * 2 : 8;
    lv->files = realloc(lv->files, lv->cap * sizeof *lv->files);
    cr_assert_not_null(lv->files);
  }
  struct manifest_file *f = &lv->files[lv->n++];
  memset(f, 0, sizeof *f);
  f->number = number;
  f->size = size;
  f->smallest = (uint8_t *)strdup(lo);
  f->smallest_len = (uint32_t)strlen(lo);
  f->largest = (uint8_t *)strdup(hi);
  f->largest_len = (uint32_t)strlen(hi);
  f->min_seq = number;
  f->max_seq = number;
}

static int has(const struct compaction_job *j, int side, uint64_t number)
{
  for (size_t i = 0; i < j->ninputs[side]; i++)
    if (j->inputs[side][i] == number)
      return 1;
  return 0;
}

/* Side `side` of j is exactly want[0..n) (in any order). */
static void expect_side(const struct compaction_job *j, int side, const uint64_t *want, size_t n)
{
  for (size_t i = 0; i < n; i++)
    cr_assert(has(j, side, want[i]), "file %llu is not in inputs[%d]", (unsigned long long)want[i], side);
  cr_assert_eq(j->ninputs[side], n, "inputs[%d] holds %zu files, expected %zu", side, j->ninputs[side], n);
}
#define SIDE(j, side, ...)                                                                                      \
  expect_side(j, side, (const uint64_t[]){ __VA_ARGS__ }, sizeof((const uint64_t[]){ __VA_ARGS__ }) / sizeof(uint64_t))

static struct compaction_options small_opts(void)
{
  struct compaction_options o;
  compaction_options_default(&o);
  o.l1_target_bytes = 1000;
  return o;
}

Test(compaction, pick_nothing_due)
{
  struct manifest_state s;
  manifest_state_init(&s);
  struct compaction_options o = small_opts();
  struct compaction_picker p = { 0 };
  struct compaction_job j;
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 0);
  put_file(&s, 0, 1, "a", "b", 10);
  put_file(&s, 0, 2, "a", "b", 10);
  put_file(&s, 0, 3, "a", "b", 10);
  put_file(&s, 1, 4, "a", "b", 999);
  put_file(&s, 2, 5, "a", "z", 9999);
  put_file(&s, 7, 6, "a", "z", UINT64_MAX / 2);   /* the last level is never picked */
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 0);
  cr_assert_eq(j.ninputs[0] + j.ninputs[1], 0u);
  manifest_state_free(&s);
}

Test(compaction, pick_l0_with_overlapping_l1)
{
  struct manifest_state s;
  manifest_state_init(&s);
  put_file(&s, 0, 10, "d", "e", 10);
  put_file(&s, 0, 11, "c", "f", 10);
  put_file(&s, 0, 12, "e", "g", 10);
  put_file(&s, 0, 13, "cc", "h", 10);   /* union [c, h] */
  put_file(&s, 1, 20, "a", "b", 100);
  put_file(&s, 1, 21, "b", "cb", 100);  /* overlaps: "c" < "cb" */
  put_file(&s, 1, 22, "e", "f", 100);
  put_file(&s, 1, 23, "h", "j", 100);   /* touches h */
  put_file(&s, 1, 24, "k", "m", 100);
  put_file(&s, 2, 30, "x", "z", 100);
  put_file(&s, 2, 31, "a", "a", 100);
  struct compaction_options o = small_opts();
  struct compaction_picker p = { 0 };
  struct compaction_job j;
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 1);
  cr_assert_eq(j.level, 0u);
  cr_assert_eq(j.output_level, 1u);
  cr_assert_float_eq(j.score, 1.0, 1e-9);
  SIDE(&j, 0, 10, 11, 12, 13);
  SIDE(&j, 1, 21, 22, 23);
  cr_assert_eq(j.bottommost, 1, "nothing deeper overlaps [b, j]");
  compaction_job_free(&j);

  /* a deeper file overlapping only the L1 files taken along ([b, cb] and [h, j]) */
  put_file(&s, 3, 40, "i", "i", 100);
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 1);
  cr_assert_eq(j.bottommost, 0, "L3's [i, i] overlaps the L1 input [h, j]");
  compaction_job_free(&j);

  /* a busy L1 file blocks the L0 job */
  uint64_t busy[] = { 22 };
  cr_assert_eq(compaction_pick(&s, &o, &p, busy, 1, &j), 0);
  manifest_state_free(&s);
  compaction_picker_free(&p);
}

/* L1 over its target (4 x 400 of 1000), added out of key order. */
static void l1_state(struct manifest_state *s)
{
  manifest_state_init(s);
  put_file(s, 1, 4, "g", "h", 400);
  put_file(s, 1, 2, "c", "d", 400);
  put_file(s, 1, 1, "a", "b", 400);
  put_file(s, 1, 3, "e", "f", 400);
  put_file(s, 2, 11, "a", "c", 100);
  put_file(s, 2, 12, "d", "e", 100);
  put_file(s, 2, 13, "x", "z", 100);
  put_file(s, 3, 21, "h", "h", 100);
}

Test(compaction, pick_level_round_robin)
{
  struct manifest_state s;
  l1_state(&s);
  struct compaction_options o = small_opts();
  struct compaction_picker p = { 0 };
  struct compaction_job j;
  const uint64_t expect0[] = { 1, 2, 3, 4, 1 };
  for (int round = 0; round < 5; round++) {
    cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 1);
    cr_assert_eq(j.level, 1u);
    cr_assert_eq(j.output_level, 2u);
    cr_assert_float_eq(j.score, 1.6, 1e-9);
    cr_assert_eq(j.ninputs[0], 1u);
    cr_assert_eq(j.inputs[0][0], expect0[round], "round %d picked file %llu", round,
                 (unsigned long long)j.inputs[0][0]);
    switch (expect0[round]) {
    case 1: SIDE(&j, 1, 11); cr_assert_eq(j.bottommost, 1); break;
    case 2: SIDE(&j, 1, 11, 12); cr_assert_eq(j.bottommost, 1); break;
    case 3: SIDE(&j, 1, 12); cr_assert_eq(j.bottommost, 1); break;
    case 4:
      cr_assert_eq(j.ninputs[1], 0u);
      cr_assert_eq(j.bottommost, 0, "L3's [h, h] overlaps [g, h]");
      break;
    }
    compaction_job_free(&j);
  }
  compaction_picker_free(&p);
  manifest_state_free(&s);
}

Test(compaction, pick_skips_busy_files)
{
  struct manifest_state s;
  l1_state(&s);
  struct compaction_options o = small_opts();
  struct compaction_picker p = { 0 };
  struct compaction_job j;
  uint64_t busy1[] = { 1 };
  cr_assert_eq(compaction_pick(&s, &o, &p, busy1, 1, &j), 1);
  SIDE(&j, 0, 2);
  compaction_job_free(&j);
  compaction_picker_free(&p);

  uint64_t busy2[] = { 99, 11 };   /* blocks files 1 and 2 through L2's [a, c] */
  cr_assert_eq(compaction_pick(&s, &o, &p, busy2, 2, &j), 1);
  SIDE(&j, 0, 3);
  SIDE(&j, 1, 12);
  compaction_job_free(&j);
  compaction_picker_free(&p);

  /* every L1 candidate busy: the next level by score, L0 (5 / 4), is picked */
  put_file(&s, 0, 50, "p", "q", 1);
  put_file(&s, 0, 51, "p", "q", 1);
  put_file(&s, 0, 52, "p", "q", 1);
  put_file(&s, 0, 53, "p", "q", 1);
  put_file(&s, 0, 54, "p", "q", 1);
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 1);
  cr_assert_eq(j.level, 1u, "L1 (1.6) is more urgent than L0 (1.25)");
  compaction_job_free(&j);
  uint64_t busy3[] = { 1, 2, 3, 4 };
  cr_assert_eq(compaction_pick(&s, &o, &p, busy3, 4, &j), 1);
  cr_assert_eq(j.level, 0u);
  cr_assert_float_eq(j.score, 1.25, 1e-9);
  SIDE(&j, 0, 50, 51, 52, 53, 54);
  cr_assert_eq(j.ninputs[1], 0u);
  cr_assert_eq(j.bottommost, 1);
  compaction_job_free(&j);
  uint64_t busy4[] = { 1, 2, 3, 4, 52 };
  cr_assert_eq(compaction_pick(&s, &o, &p, busy4, 5, &j), 0);
  compaction_picker_free(&p);
  manifest_state_free(&s);
}

Test(compaction, pick_deeper_level_by_score)
{
  struct manifest_state s;
  manifest_state_init(&s);
  struct compaction_options o = small_opts();   /* L2 target 10000, L3 100000 */
  put_file(&s, 1, 1, "a", "b", 1100);           /* 1.1 */
  put_file(&s, 2, 2, "a", "c", 9000);
  put_file(&s, 2, 3, "d", "f", 9000);           /* 1.8 */
  put_file(&s, 3, 4, "e", "e", 50);
  struct compaction_picker p = { 0 };
  struct compaction_job j;
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 1);
  cr_assert_eq(j.level, 2u);
  cr_assert_eq(j.output_level, 3u);
  cr_assert_float_eq(j.score, 1.8, 1e-9);
  SIDE(&j, 0, 2);
  cr_assert_eq(j.ninputs[1], 0u);
  cr_assert_eq(j.bottommost, 1);
  compaction_job_free(&j);
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 1);
  SIDE(&j, 0, 3);
  SIDE(&j, 1, 4);
  compaction_job_free(&j);
  compaction_picker_free(&p);
  manifest_state_free(&s);
}

/* Sizes come from the MANIFEST: two near 2^63 must not wrap level 2's size to 2 bytes, which would
** leave the level uncompacted for good and pick level 1 instead. */
Test(compaction, level_sizes_saturate_rather_than_wrap)
{
  struct manifest_state s;
  manifest_state_init(&s);
  struct compaction_options o = small_opts();
  put_file(&s, 1, 1, "a", "b", 1100);                        /* 1.1 */
  put_file(&s, 2, 2, "a", "c", UINT64_MAX / 2 + 1);
  put_file(&s, 2, 3, "d", "f", UINT64_MAX / 2 + 2);          /* sums to 2^64 + 1 */
  cr_assert_eq(manifest_level_bytes(&s.levels[2]), UINT64_MAX);
  struct compaction_picker p = { 0 };
  struct compaction_job j;
  cr_assert_eq(compaction_pick(&s, &o, &p, NULL, 0, &j), 1);
  cr_assert_eq(j.level, 2u, "level %u was picked: level 2's size wrapped", j.level);
  compaction_job_free(&j);
  compaction_picker_free(&p);
  manifest_state_free(&s);
}

/* The daemon's compaction debt sums bytes over these targets: with a level
** ratio of 1000 (sochdbd --level-ratio allows it) the product passed 2^64 by
** level 5 and wrapped to a small target, reporting a debt that was not there. */
Test(compaction, level_targets_saturate_rather_than_wrap)
{
  struct compaction_options o;
  compaction_options_default(&o);
  o.l1_target_bytes = 256ull << 20;
  o.level_ratio = 1000;
  cr_assert_eq(compaction_level_target(&o, 1), 256ull << 20);
  cr_assert_eq(compaction_level_target(&o, 3), (256ull << 20) * 1000 * 1000);
  for (unsigned l = 5; l < MANIFEST_LEVELS; l++)
    cr_assert_eq(compaction_level_target(&o, l), UINT64_MAX, "level %u's target wrapped", l);
}

/* A job compaction_pick made from s, asserted; whether it moves. */
static int picked_moves(const struct manifest_state *s, struct compaction_picker *p)
{
  struct compaction_options o = small_opts();
  struct compaction_job j;
  cr_assert_eq(compaction_pick(s, &o, p, NULL, 0, &j), 1, "a compaction is due");
  int moves = compaction_job_moves(s, &j);
  compaction_job_free(&j);
  return moves;
}

Test(compaction, only_disjoint_inputs_with_nothing_under_them_move)
{
  struct manifest_state s;
  manifest_state_init(&s);
  struct compaction_picker p = { 0 };
  put_file(&s, 0, 1, "a", "b", 10);   /* a sequential load's flushes */
  put_file(&s, 0, 2, "c", "d", 10);
  put_file(&s, 0, 3, "g", "h", 10);
  put_file(&s, 0, 4, "e", "f", 10);
  cr_assert_eq(picked_moves(&s, &p), 1, "disjoint level-0 files over an empty level 1");
  put_file(&s, 1, 5, "x", "z", 10);
  cr_assert_eq(picked_moves(&s, &p), 1, "a level-1 file outside their range");
  put_file(&s, 1, 6, "cc", "cd", 10);
  cr_assert_eq(picked_moves(&s, &p), 0, "a level-1 file under one of them");
  manifest_state_free(&s);

  manifest_state_init(&s);
  put_file(&s, 0, 1, "a", "b", 10);
  put_file(&s, 0, 2, "b", "c", 10);   /* key b in two files */
  put_file(&s, 0, 3, "d", "e", 10);
  put_file(&s, 0, 4, "f", "g", 10);
  cr_assert_eq(picked_moves(&s, &p), 0, "level-0 files sharing a key");
  manifest_state_free(&s);

  manifest_state_init(&s);
  put_file(&s, 1, 1, "a", "b", 600);  /* level 1 over its target of 1000 */
  put_file(&s, 1, 2, "c", "d", 600);
  put_file(&s, 2, 3, "cc", "z", 10);
  cr_assert_eq(picked_moves(&s, &p), 1, "the first level-1 file, nothing under it at level 2");
  cr_assert_eq(picked_moves(&s, &p), 0, "the next one has a level-2 file under it");
  manifest_state_free(&s);
  compaction_picker_free(&p);

  manifest_state_init(&s);
  put_file(&s, 0, 1, "a", "b", 10);
  struct compaction_job j;
  cr_assert_eq(compaction_pick_full(&s, &j), 1);
  cr_assert_eq(compaction_job_moves(&s, &j), 0, "a full compaction rewrites, whatever its inputs");
  compaction_job_free(&j);
  uint64_t gone = 9;
  j = (struct compaction_job){ .level = 0, .output_level = 1, .inputs = { &gone, NULL }, .ninputs = { 1, 0 },
                               .score = 1.0 };
  cr_assert_eq(compaction_job_moves(&s, &j), 0, "an input that is not live at the job's level");
  cr_assert_eq(compaction_job_moves(NULL, &j), 0);
  cr_assert_eq(compaction_job_moves(&s, NULL), 0);
  manifest_state_free(&s);
}

Test(compaction, pick_full)
{
  struct manifest_state s;
  manifest_state_init(&s);
  struct compaction_job j;
  cr_assert_eq(compaction_pick_full(&s, &j), 0);
  put_file(&s, 0, 1, "a", "b", 10);
  put_file(&s, 0, 2, "c", "d", 10);
  cr_assert_eq(compaction_pick_full(&s, &j), 1);
  cr_assert_eq(j.level, 0u);
  cr_assert_eq(j.output_level, 1u, "L0 alone goes to L1");
  SIDE(&j, 0, 1, 2);
  cr_assert_eq(j.ninputs[1], 0u);
  cr_assert_eq(j.bottommost, 1);
  compaction_job_free(&j);

  put_file(&s, 2, 3, "a", "z", 10);
  put_file(&s, 4, 4, "a", "k", 10);
  put_file(&s, 4, 5, "l", "z", 10);
  cr_assert_eq(compaction_pick_full(&s, &j), 1);
  cr_assert_eq(j.level, 0u);
  cr_assert_eq(j.output_level, 4u);
  SIDE(&j, 0, 1, 2, 3);
  SIDE(&j, 1, 4, 5);
  cr_assert_eq(j.bottommost, 1);
  compaction_job_free(&j);
  manifest_state_free(&s);

  manifest_state_init(&s);
  put_file(&s, 3, 7, "a", "b", 10);
  cr_assert_eq(compaction_pick_full(&s, &j), 1);
  cr_assert_eq(j.level, 3u);
  cr_assert_eq(j.output_level, 3u);
  cr_assert_eq(j.ninputs[0], 0u);
  SIDE(&j, 1, 7);
  compaction_job_free(&j);
  manifest_state_free(&s);
}
