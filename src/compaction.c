/*
** compaction.c — leveled compaction (see compaction.h): the picker, which
** reads a MANIFEST state and owns only the round-robin keys of its
** compaction_picker, and the merge, which owns its cursors, its key copies and
** the table being built until emit takes it. Neither does any I/O.
*/
#include "compaction.h"

#include "bytes.h"

#include "error.h"
#include "sochdb.h"

#include <stdlib.h>
#include <string.h>

#define PICK_LEVELS (COMPACTION_LEVELS - 1)   /* the last level is never picked */

void compaction_options_default(struct compaction_options *o)
{
  o->l0_trigger = 4;
  o->l1_target_bytes = 256ull << 20;
  o->level_ratio = 10;
  o->target_file_bytes = 64ull << 20;
  o->block_bytes = 0;
  o->begin_output = NULL;
}

/* Copy key into *dst (malloc'ed, replacing what was there). 0, or -1 on NOMEM. */
static int key_assign(uint8_t **dst, uint32_t *dlen, const uint8_t *key, uint32_t klen)
{
  uint8_t *p = malloc(klen ? klen : 1);
  if (!p)
    return -1;
  memcpy(p, key, klen);
  free(*dst);
  *dst = p;
  *dlen = klen;
  return 0;
}

/* ---- picking ----------------------------------------------------------------- */

/* A closed user-key range [lo, hi]; empty until the first file extends it.
** The keys point into the state's files. */
struct range {
  int            empty;
  const uint8_t *lo, *hi;
  uint32_t       lolen, hilen;
};

static void range_extend(struct range *r, const struct manifest_file *f)
{
  if (r->empty || key_order(f->smallest, f->smallest_len, r->lo, r->lolen) < 0) {
    r->lo = f->smallest;
    r->lolen = f->smallest_len;
  }
  if (r->empty || key_order(f->largest, f->largest_len, r->hi, r->hilen) > 0) {
    r->hi = f->largest;
    r->hilen = f->largest_len;
  }
  r->empty = 0;
}

static int overlaps(const struct manifest_file *f, const struct range *r)
{
  return !r->empty && key_order(f->largest, f->largest_len, r->lo, r->lolen) >= 0 &&
         key_order(f->smallest, f->smallest_len, r->hi, r->hilen) <= 0;
}

static int is_busy(uint64_t number, const uint64_t *busy, size_t nbusy)
{
  for (size_t i = 0; i < nbusy; i++)
    if (busy[i] == number)
      return 1;
  return 0;
}

void compaction_job_free(struct compaction_job *j)
{
  if (!j)
    return;
  free(j->inputs[0]);
  free(j->inputs[1]);
  memset(j, 0, sizeof *j);
}

void compaction_picker_free(struct compaction_picker *p)
{
  if (!p)
    return;
  for (unsigned i = 0; i < COMPACTION_LEVELS; i++)
    free(p->last_key[i]);
  memset(p, 0, sizeof *p);
}

/* Append to side `side` of j the files[0..n) that overlap `only` (every one
** when only is NULL), extending *cover with each. 0, or -SOCHDB_NOMEM. */
static int take_files(struct compaction_job *j, int side, const struct manifest_file *files, size_t n,
                      const struct range *only, struct range *cover)
{
  if (n == 0)
    return 0;
  uint64_t *v = realloc(j->inputs[side], (j->ninputs[side] + n) * sizeof *v);
  if (!v)
    return -sdb_fail(SOCHDB_NOMEM, "out of memory picking a compaction");
  j->inputs[side] = v;
  for (size_t i = 0; i < n; i++) {
    const struct manifest_file *f = &files[i];
    if (only && !overlaps(f, only))
      continue;
    v[j->ninputs[side]++] = f->number;
    range_extend(cover, f);
  }
  return 0;
}

static int job_busy(const struct compaction_job *j, const uint64_t *busy, size_t nbusy)
{
  for (int side = 0; side < 2; side++)
    for (size_t i = 0; i < j->ninputs[side]; i++)
      if (is_busy(j->inputs[side][i], busy, nbusy))
        return 1;
  return 0;
}

/* No file below out_level overlaps r. */
static int is_bottommost(const struct manifest_state *s, unsigned out_level, const struct range *r)
{
  for (unsigned l = out_level + 1; l < COMPACTION_LEVELS; l++)
    for (size_t i = 0; i < s->levels[l].n; i++)
      if (overlaps(&s->levels[l].files[i], r))
        return 0;
  return 1;
}

/* Complete a job whose side 0 (files of `level`, covering *r) is filled: add
** the overlapping files of level + 1. 1 if it is ready, 0 if it includes a busy
** file (the job is then freed), -SOCHDB_NOMEM. */
static int finish_job(const struct manifest_state *s, unsigned level, struct range *r, const uint64_t *busy,
                      size_t nbusy, struct compaction_job *j)
{
  struct range own = *r;   /* the overlap test uses side 0's range only */
  int rc = take_files(j, 1, s->levels[level + 1].files, s->levels[level + 1].n, &own, r);
  if (rc < 0 || job_busy(j, busy, nbusy)) {
    compaction_job_free(j);
    return rc < 0 ? rc : 0;
  }
  j->level = level;
  j->output_level = level + 1;
  j->bottommost = is_bottommost(s, level + 1, r);
  return 1;
}

/* All of L0 plus the overlapping L1 files. */
static int pick_l0(const struct manifest_state *s, const uint64_t *busy, size_t nbusy, struct compaction_job *j)
{
  struct range r = { .empty = 1 };
  int rc = take_files(j, 0, s->levels[0].files, s->levels[0].n, NULL, &r);
  if (rc < 0) {
    compaction_job_free(j);
    return rc;
  }
  return finish_job(s, 0, &r, busy, nbusy, j);
}

static int cmp_smallest(const void *a, const void *b)
{
  const struct manifest_file *x = *(const struct manifest_file *const *)a;
  const struct manifest_file *y = *(const struct manifest_file *const *)b;
  return key_order(x->smallest, x->smallest_len, y->smallest, y->smallest_len);
}

/* The level's files sorted by smallest key (malloc'ed), and in *start the
** first one after the picker's last key there (0 when none is, wrapping). */
static const struct manifest_file **sorted_files(const struct manifest_level *lv, const struct compaction_picker *p,
                                                 unsigned level, size_t *start)
{
  const struct manifest_file **v = malloc(lv->n * sizeof *v);
  if (!v)
    return NULL;
  for (size_t i = 0; i < lv->n; i++)
    v[i] = &lv->files[i];
  qsort(v, lv->n, sizeof *v, cmp_smallest);
  *start = 0;
  if (p->last_key[level]) {
    while (*start < lv->n &&
           key_order(v[*start]->smallest, v[*start]->smallest_len, p->last_key[level], p->last_len[level]) <= 0)
      ++*start;
    if (*start == lv->n)
      *start = 0;
  }
  return v;
}

/* One file of Ln (round robin, skipping busy candidates) plus the overlapping
** L(n+1) files. */
static int pick_level(const struct manifest_state *s, struct compaction_picker *p, unsigned level,
                      const uint64_t *busy, size_t nbusy, struct compaction_job *j)
{
  const struct manifest_level *lv = &s->levels[level];
  if (lv->n == 0)
    return 0;
  size_t start;
  const struct manifest_file **v = sorted_files(lv, p, level, &start);
  if (!v)
    return -sdb_fail(SOCHDB_NOMEM, "out of memory picking a compaction");
  int rc = 0;
  for (size_t k = 0; k < lv->n && rc == 0; k++) {
    const struct manifest_file *f = v[(start + k) % lv->n];
    struct range r = { .empty = 1 };
    rc = take_files(j, 0, f, 1, NULL, &r);
    if (rc == 0)
      rc = finish_job(s, level, &r, busy, nbusy, j);
    if (rc == 1 && key_assign(&p->last_key[level], &p->last_len[level], f->largest, f->largest_len)) {
      compaction_job_free(j);
      rc = -sdb_fail(SOCHDB_NOMEM, "out of memory picking a compaction");
    }
  }
  free(v);
  return rc;
}

static double level_score(const struct manifest_state *s, const struct compaction_options *o, unsigned level)
{
  if (level == 0)
    return (double)s->levels[0].n / o->l0_trigger;
  return (double)manifest_level_bytes(&s->levels[level]) / (double)compaction_level_target(o, level);
}

uint64_t compaction_level_target(const struct compaction_options *o, unsigned level)
{
  uint64_t target = o->l1_target_bytes;
  for (unsigned l = 1; l < level; l++)
    if (__builtin_mul_overflow(target, (uint64_t)o->level_ratio, &target))
      return UINT64_MAX;
  return target;
}

static int check_options(const struct compaction_options *o)
{
  if (o->l0_trigger == 0 || o->l1_target_bytes == 0 || o->level_ratio == 0)
    return sdb_fail(SOCHDB_INVALID, "compaction options: l0_trigger, l1_target_bytes and level_ratio must be > 0");
  return SOCHDB_OK;
}

int compaction_pick(const struct manifest_state *s, const struct compaction_options *o,
                    struct compaction_picker *p, const uint64_t *busy, size_t nbusy, struct compaction_job *job)
{
  struct compaction_options def;
  if (!o) {
    compaction_options_default(&def);
    o = &def;
  }
  if (!s || !p || !job || (nbusy && !busy))
    return -sdb_fail(SOCHDB_INVALID, "compaction_pick: NULL argument");
  memset(job, 0, sizeof *job);
  if (check_options(o))
    return -SOCHDB_INVALID;
  double score[PICK_LEVELS];
  int tried[PICK_LEVELS] = { 0 };
  for (unsigned l = 0; l < PICK_LEVELS; l++)
    score[l] = level_score(s, o, l);
  for (;;) {   /* the most urgent level first; the next one when all its candidates are busy */
    int best = -1;
    for (unsigned l = 0; l < PICK_LEVELS; l++)
      if (!tried[l] && score[l] >= 1.0 && (best < 0 || score[l] > score[best]))
        best = (int)l;
    if (best < 0)
      return 0;
    tried[best] = 1;
    int rc = best == 0 ? pick_l0(s, busy, nbusy, job) : pick_level(s, p, (unsigned)best, busy, nbusy, job);
    if (rc == 1)
      job->score = score[best];
    if (rc != 0)
      return rc;
  }
}

int compaction_job_moves(const struct manifest_state *s, const struct compaction_job *j)
{
  if (!s || !j || j->score <= 0 || j->ninputs[1] || !j->ninputs[0] || j->level >= COMPACTION_LEVELS ||
      j->output_level != j->level + 1 || j->output_level >= COMPACTION_LEVELS)
    return 0;
  for (size_t a = 0; a < j->ninputs[0]; a++) {
    const struct manifest_file *fa = manifest_state_file(s, j->level, j->inputs[0][a]);
    if (!fa)
      return 0;
    struct range ra = { .empty = 1 };
    range_extend(&ra, fa);
    for (size_t b = 0; b < a; b++)   /* pairs: a level-0 job has at most a few dozen files */
      if (overlaps(manifest_state_file(s, j->level, j->inputs[0][b]), &ra))
        return 0;
  }
  return 1;
}

int compaction_pick_full(const struct manifest_state *s, struct compaction_job *job)
{
  if (!s || !job)
    return -sdb_fail(SOCHDB_INVALID, "compaction_pick_full: NULL argument");
  memset(job, 0, sizeof *job);
  int shallowest = -1;
  unsigned deepest = 0;
  for (unsigned l = 0; l < COMPACTION_LEVELS; l++)
    if (s->levels[l].n) {
      if (shallowest < 0)
        shallowest = (int)l;
      deepest = l;
    }
  if (shallowest < 0)
    return 0;
  unsigned out = deepest ? deepest : 1;
  struct range r = { .empty = 1 };
  for (unsigned l = 0; l <= out; l++) {
    int rc = take_files(job, l < out ? 0 : 1, s->levels[l].files, s->levels[l].n, NULL, &r);
    if (rc < 0) {
      compaction_job_free(job);
      return rc;
    }
  }
  job->level = (unsigned)shallowest;
  job->output_level = out;
  job->bottommost = 1;
  job->score = 0;
  return 1;
}

/* ---- merging ----------------------------------------------------------------- */

/* One input's cursor. Its entry stays valid until its iterator's next call,
** which is made only once the entry has been consumed, so the heap can
** compare entries in place. */
struct merge_src {
  struct sst_iter  it;
  struct sst_entry e;
  uint64_t         consumed;   /* bytes of the file read so far: up to the end of the current block */
};

struct merge {
  /* fixed */
  const struct compaction_options *o;
  uint64_t horizon;
  int      bottommost;
  int    (*emit)(void *, struct compaction_output *);
  int    (*progress)(void *, uint64_t);
  void    *ctx;
  struct compaction_stats *st;
  /* the inputs: a binary min-heap of indexes into src */
  struct merge_src *src;
  size_t   *heap, nheap;
  uint64_t  reported;          /* bytes_read at the last progress call */
  /* the user key being merged (a copy: its cursor moves on) */
  uint8_t  *key;
  uint32_t  klen;
  uint64_t  seq;               /* its last version seen */
  int       settled;           /* its newest version <= horizon was seen */
  int       in_output;         /* one of its versions went to the current output */
  /* the output being built */
  struct sst_builder b;
  int       building;
  uint8_t  *smallest, *largest;
  uint32_t  smallest_len, largest_len;
};

/* Internal-key order of two cursors; ties (the same key and seq) go to the
** lower input index, whose copy is kept. */
static int src_less(const struct merge *m, size_t a, size_t b)
{
  const struct sst_entry *x = &m->src[a].e, *y = &m->src[b].e;
  int c = key_order(x->key, x->klen, y->key, y->klen);
  if (c)
    return c < 0;
  if (x->seq != y->seq)
    return x->seq > y->seq;
  return a < b;
}

static void heap_swap(struct merge *m, size_t i, size_t j)
{
  size_t t = m->heap[i];
  m->heap[i] = m->heap[j];
  m->heap[j] = t;
}

static void sift_up(struct merge *m, size_t i)
{
  while (i > 0 && src_less(m, m->heap[i], m->heap[(i - 1) / 2])) {
    heap_swap(m, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void sift_down(struct merge *m, size_t i)
{
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, min = i;
    if (l < m->nheap && src_less(m, m->heap[l], m->heap[min]))
      min = l;
    if (r < m->nheap && src_less(m, m->heap[r], m->heap[min]))
      min = r;
    if (min == i)
      return;
    heap_swap(m, i, min);
    i = min;
  }
}

/* Bytes of the file up to the end of the block the iterator is in. */
static uint64_t iter_consumed(const struct sst_iter *it)
{
  const struct sst_reader *r = it->r;
  if (it->block >= r->nblocks)
    return r->len;
  return r->index[it->block].offset + r->index[it->block].size;
}

/* Move input i to its next entry: SOCHDB_OK, SOCHDB_NOTFOUND at its end, or an error. */
static int src_advance(struct merge *m, size_t i)
{
  struct merge_src *s = &m->src[i];
  int rc = sst_iter_next(&s->it, &s->e);
  uint64_t c = iter_consumed(&s->it);
  m->st->bytes_read += c - s->consumed;
  s->consumed = c;
  if (rc == SOCHDB_OK)
    m->st->entries_in++;
  return rc;
}

/* Call progress when COMPACTION_PROGRESS_BYTES more were read (or, at the
** end, when anything was read since the last call). */
static int report_progress(struct merge *m, int at_end)
{
  uint64_t done = m->st->bytes_read;
  if (!m->progress || done == m->reported || (!at_end && done - m->reported < COMPACTION_PROGRESS_BYTES))
    return SOCHDB_OK;
  m->reported = done;
  return m->progress(m->ctx, done);
}

/* Hand the output being built to emit. */
static int finish_output(struct merge *m)
{
  struct compaction_output out = {
    .smallest = m->smallest, .smallest_len = m->smallest_len,
    .largest = m->largest,   .largest_len = m->largest_len,
    .min_seq = m->b.min_seq, .max_seq = m->b.max_seq, .entries = m->b.entries,
  };
  int rc = sst_builder_finish(&m->b, &out.buf, &out.len);
  out.bytes = m->b.spilled + out.len;
  sst_builder_free(&m->b);
  m->building = 0;
  if (rc)
    return rc;
  m->st->bytes_written += out.bytes;
  return m->emit(m->ctx, &out);
}

static int nomem(void) { return sdb_fail(SOCHDB_NOMEM, "out of memory in a compaction"); }

/* Add e to the output, first cutting the output if e's key is new to it and
** the output is already big enough. */
static int output_add(struct merge *m, const struct sst_entry *e)
{
  if (!m->in_output) {
    uint64_t size = m->b.spilled + m->b.out_n + m->b.data.n;
    if (m->building && m->b.entries && size >= m->o->target_file_bytes) {
      int rc = finish_output(m);
      if (rc)
        return rc;
    }
    if (!m->building) {
      int rc = sst_builder_init(&m->b, m->o->block_bytes);
      if (rc)
        return rc;
      m->building = 1;
      if (m->o->begin_output && (rc = m->o->begin_output(m->ctx, &m->b)))
        return rc;
      if (key_assign(&m->smallest, &m->smallest_len, e->key, e->klen))
        return nomem();
    }
    if (key_assign(&m->largest, &m->largest_len, e->key, e->klen))
      return nomem();
    m->in_output = 1;
  }
  int rc = sst_builder_add(&m->b, e->key, e->klen, e->seq, e->kind, e->val, e->vlen);
  if (rc == SOCHDB_OK)
    m->st->entries_out++;
  return rc;
}

/* Apply the horizon rules to the next entry in internal-key order. */
static int merge_entry(struct merge *m, const struct sst_entry *e)
{
  if (m->key && e->klen == m->klen && memcmp(e->key, m->key, e->klen) == 0) {
    if (e->seq == m->seq) {
      m->st->duplicates_dropped++;
      return SOCHDB_OK;
    }
  } else {
    if (key_assign(&m->key, &m->klen, e->key, e->klen))
      return nomem();
    m->settled = 0;
    m->in_output = 0;
  }
  m->seq = e->seq;
  if (e->seq <= m->horizon) {
    if (m->settled) {
      m->st->versions_dropped++;
      return SOCHDB_OK;
    }
    m->settled = 1;
    if (m->bottommost && e->kind == SST_DEL) {
      m->st->tombstones_dropped++;
      return SOCHDB_OK;
    }
  }
  return output_add(m, e);
}

/* Open a cursor on every input and heap those that have an entry. */
static int merge_start(struct merge *m, const struct sst_reader *const *inputs, size_t n)
{
  m->src = calloc(n ? n : 1, sizeof *m->src);
  m->heap = malloc((n ? n : 1) * sizeof *m->heap);
  if (!m->src || !m->heap)
    return nomem();
  for (size_t i = 0; i < n; i++) {
    sst_iter_init(&m->src[i].it, inputs[i]);
    int rc = src_advance(m, i);
    if (rc == SOCHDB_NOTFOUND)
      continue;
    if (rc)
      return rc;
    m->heap[m->nheap++] = i;
    sift_up(m, m->nheap - 1);
  }
  return SOCHDB_OK;
}

static int merge_loop(struct merge *m)
{
  while (m->nheap) {
    size_t top = m->heap[0];
    int rc = merge_entry(m, &m->src[top].e);
    if (rc)
      return rc;
    rc = src_advance(m, top);
    if (rc == SOCHDB_NOTFOUND)
      m->heap[0] = m->heap[--m->nheap];
    else if (rc)
      return rc;
    sift_down(m, 0);
    if ((rc = report_progress(m, 0)))
      return rc;
  }
  int rc = report_progress(m, 1);
  if (rc == SOCHDB_OK && m->building)
    rc = finish_output(m);
  return rc;
}

static void merge_free(struct merge *m, size_t n)
{
  if (m->src)
    for (size_t i = 0; i < n; i++)
      sst_iter_free(&m->src[i].it);
  free(m->src);
  free(m->heap);
  free(m->key);
  free(m->smallest);
  free(m->largest);
  if (m->building)
    sst_builder_free(&m->b);
}

static int run_args_ok(const struct sst_reader *const *inputs, size_t n,
                       int (*emit)(void *, struct compaction_output *), const struct compaction_options *o)
{
  if ((n && !inputs) || !emit)
    return sdb_fail(SOCHDB_INVALID, "compaction_run: NULL argument");
  for (size_t i = 0; i < n; i++)
    if (!inputs[i])
      return sdb_fail(SOCHDB_INVALID, "compaction_run: input %zu is NULL", i);
  struct sst_builder probe;   /* block_bytes is checked before anything is read */
  int rc = sst_builder_init(&probe, o->block_bytes);
  sst_builder_free(&probe);
  return rc;
}

int compaction_run(const struct sst_reader *const *inputs, size_t n, uint64_t horizon, int bottommost,
                   const struct compaction_options *o,
                   int (*emit)(void *ctx, struct compaction_output *out),
                   int (*progress)(void *ctx, uint64_t bytes_read), void *ctx,
                   struct compaction_stats *st)
{
  struct compaction_options def;
  struct compaction_stats local;
  if (!o) {
    compaction_options_default(&def);
    o = &def;
  }
  if (!st)
    st = &local;
  memset(st, 0, sizeof *st);
  int rc = run_args_ok(inputs, n, emit, o);
  if (rc)
    return rc;
  struct merge m = {
    .o = o, .horizon = horizon, .bottommost = bottommost,
    .emit = emit, .progress = progress, .ctx = ctx, .st = st,
  };
  rc = merge_start(&m, inputs, n);
  if (rc == SOCHDB_OK)
    rc = merge_loop(&m);
  merge_free(&m, n);
  return rc;
}
