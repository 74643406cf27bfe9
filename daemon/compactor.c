/*
** compactor.c — running one compaction job (see compactor.h).
**
** The horizon is computed once, before the merge: every transaction alive
** then or later has a snapshot at or above it (shm/slots.c), so the
** versions the merge drops are ones no snapshot can read. The outputs become
** live in one MANIFEST edit that also deletes the inputs; readers of the old
** file list keep reading the inputs until they end (store.c dooms them).
** Rate limiting sleeps in the merge's progress callback, so that a large
** compaction never takes more than its share of the disk from the WAL;
** while level 0 holds --l0-unthrottle files it does not, since every read
** searches each of them and, past --l0-stop, writers wait for this thread.
*/
#include "compactor.h"

#include "filenames.h"
#include "error.h"
#include "fsutil.h"
#include "slots.h"
#include "testhooks.h"
#include "walwriter.h"

#include <fcntl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct input {
  uint64_t          number;
  unsigned          level;
  const uint8_t    *map;
  size_t            len;
  struct sst_reader r;
  int               open;
};

struct run {
  struct compactor      *c;
  struct sst_file_out    file;        /* the output being streamed (fd -1: none) */
  struct manifest_edit   edit;
  unsigned               output_level;
  struct timespec        start;
  uint64_t               base_read;   /* the progress counter before this job */
};

static int map_input(struct store *s, struct input *in)
{
  char path[4200];
  sst_file_path(path, sizeof path, s->db->dir, in->number);
  int e = sdb_map_file(path, &in->map, &in->len, NULL);
  int rc = SOCHDB_OK;
  if (e) {
    errno = e;
    rc = sdb_fail_errno("map %s", path);
  }
  if (rc == SOCHDB_OK)
    rc = sst_open(in->map, in->len, &in->r);
  if (rc == SOCHDB_OK)
    in->open = 1;
  else if (in->map)
    rc = sdb_fail_prefix(rc, "SSTable %s", path);
  return rc;
}

static void unmap_inputs(struct input *in, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (in[i].open)
      sst_close(&in[i].r);
    if (in[i].map)
      sdb_unmap_file(in[i].map, in[i].len);
  }
  free(in);
}

static int begin_output(void *ctx, struct sst_builder *b)
{
  struct run *run = ctx;
  store_sst_abandon(&run->file);   /* none open: the previous output was completed */
  b->lz4_data = store_compresses(run->c->s, run->output_level);
  int rc = store_sst_create(run->c->s, store_new_file_number(run->c->s), SST_HUGE_PIECES, &run->file);
  if (rc == SOCHDB_OK)
    sst_builder_spill(b, store_sst_append, &run->file);
  return rc;
}

static int emit(void *ctx, struct compaction_output *out)
{
  struct run *run = ctx;
  struct store *s = run->c->s;
  uint64_t number = run->file.number;
  int rc = run->file.fd >= 0
               ? store_sst_complete(s, &run->file, out->buf, out->len)
               : store_write_sst(s, number = store_new_file_number(s), SST_HUGE_PIECES, out->buf, out->len);
  struct manifest_file f = { number, out->bytes, (uint8_t *)out->smallest, out->smallest_len,
                             (uint8_t *)out->largest, out->largest_len, out->min_seq, out->max_seq };
  if (rc == SOCHDB_OK && (rc = manifest_edit_add_file(&run->edit, run->output_level, &f)) != SOCHDB_OK) {
    /* written whole but in no edit (no memory for it): run_job's cleanup,
    ** which removes the edit's outputs, would not see it */
    char path[4200];
    sst_file_path(path, sizeof path, s->db->dir, number);
    if (sdb_dir_is_ours(s->db) == SOCHDB_OK)   /* as run_job's: never another database's file */
      unlink(path);
  }
  free(out->buf);
  if (rc == SOCHDB_OK)
    atomic_fetch_add_explicit(&s->r->hdr->stats.compact_bytes_written, out->bytes, memory_order_relaxed);
  return rc;
}

static double seconds_since(const struct timespec *t0)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Report progress, stop when the daemon stops, and keep to the rate limit. */
static int progress(void *ctx, uint64_t bytes_read)
{
  struct run *run = ctx;
  struct store *s = run->c->s;
  atomic_store_explicit(&s->r->hdr->stats.compact_progress_done, run->base_read + bytes_read, memory_order_relaxed);
  if (run->c->stop && *run->c->stop)
    return SOCHDB_BUSY;
  if (run->c->test_pause_ms) {
    struct timespec pause = { run->c->test_pause_ms / 1000, (long)(run->c->test_pause_ms % 1000) * 1000000L };
    nanosleep(&pause, NULL);
  }
  /* Asked each time, not once per job: flushes that pile up in level 0
  ** while a job sleeps lift the limit for the rest of it. */
  if (s->compact_rate && !store_level0_unthrottles(s)) {
    double ahead = (double)bytes_read / (double)s->compact_rate - seconds_since(&run->start);
    if (ahead > 0) {
      struct timespec ts = { (time_t)ahead, (long)((ahead - (double)(time_t)ahead) * 1e9) };
      uint64_t t0 = sdb_monotonic_ns();
      nanosleep(&ts, NULL);
      /* relaxed: a statistic, ordered with nothing */
      atomic_fetch_add_explicit(&s->r->hdr->stats.compact_throttle_us, (sdb_monotonic_ns() - t0) / 1000,
                                memory_order_relaxed);
    }
  }
  return 0;
}

/* The inputs of job, mapped; *n of them. */
static int open_inputs(struct store *s, const struct compaction_job *job, struct input **out, size_t *n)
{
  *n = job->ninputs[0] + job->ninputs[1];
  struct input *in = calloc(*n ? *n : 1, sizeof *in);
  if (!in)
    return sdb_fail(SOCHDB_NOMEM, "compaction inputs");
  size_t k = 0;
  for (int side = 0; side < 2; side++)
    for (size_t i = 0; i < job->ninputs[side]; i++)
      in[k++].number = job->inputs[side][i];
  int rc = SOCHDB_OK;
  for (size_t i = 0; i < *n && rc == SOCHDB_OK; i++)
    rc = map_input(s, &in[i]);
  *out = in;
  return rc;
}

/* The level each input lives at, for the edit's deletes. */
static unsigned level_of(struct store *s, uint64_t number)
{
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    for (size_t i = 0; i < s->state.levels[l].n; i++)
      if (s->state.levels[l].files[i].number == number)
        return l;
  return 0;
}

static int run_job(struct compactor *c, const struct compaction_job *job)
{
  struct store *s = c->s;
  shm_region *r = s->r;
  struct input *in = NULL;
  size_t n = 0;
  int rc = open_inputs(s, job, &in, &n);
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += in[i].len;
  struct run run = { .c = c, .file = { .fd = -1 }, .output_level = job->output_level };
  manifest_edit_init(&run.edit);
  clock_gettime(CLOCK_MONOTONIC, &run.start);
  atomic_store_explicit(&r->hdr->stats.compact_progress_total, total, memory_order_relaxed);
  atomic_store_explicit(&r->hdr->stats.compact_progress_done, 0, memory_order_relaxed);
  const struct sst_reader **readers = calloc(n ? n : 1, sizeof *readers);
  if (rc == SOCHDB_OK && !readers)
    rc = sdb_fail(SOCHDB_NOMEM, "compaction readers");
  for (size_t i = 0; rc == SOCHDB_OK && i < n; i++)
    readers[i] = &in[i].r;
  uint64_t horizon = slots_compute_horizon(r);
  struct compaction_stats st;
  memset(&st, 0, sizeof st);
  /* Outputs are streamed to their files as they are built: the daemon holds
  ** about SST_SPILL_BYTES of each, not target_file_bytes. */
  struct compaction_options o = s->copts;
  o.begin_output = begin_output;
  if (rc == SOCHDB_OK)
    rc = compaction_run(readers, n, horizon, job->bottommost, &o, emit, progress, &run, &st);
  store_sst_abandon(&run.file);   /* an output not finished (a failed run) */
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; rc == SOCHDB_OK && i < n; i++)
    rc = manifest_edit_delete_file(&run.edit, level_of(s, in[i].number), in[i].number);
  pthread_mutex_unlock(&s->lock);
  CRASHPOINT("compact.written");
  if (rc == SOCHDB_OK) {
    /* once the MANIFEST names the outputs they are never removed here, even
    ** if publishing the list failed afterwards */
    rc = store_apply(s, &run.edit);
    CRASHPOINT("compact.applied");
  } else if (sdb_dir_is_ours(s->db) == SOCHDB_OK) {   /* written outputs are orphans nobody reads: remove them */
    for (size_t i = 0; i < run.edit.nadds; i++) {
      char path[4200];
      sst_file_path(path, sizeof path, s->db->dir, run.edit.adds[i].file.number);
      unlink(path);
    }
  }
  if (rc == SOCHDB_OK) {
    atomic_fetch_add_explicit(&r->hdr->stats.compactions, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->hdr->stats.compact_bytes_read, st.bytes_read, memory_order_relaxed);
  }
  manifest_edit_free(&run.edit);
  free(readers);
  unmap_inputs(in, n);
  return rc;
}

/* A job compaction_job_moves allows: its files change level in one MANIFEST
** edit, and nothing else is read or written. Readers that hold the old file
** list keep the same files open. */
static int run_move(struct compactor *c, const struct compaction_job *job)
{
  struct store *s = c->s;
  struct manifest_edit edit;
  manifest_edit_init(&edit);
  int rc = SOCHDB_OK;
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; rc == SOCHDB_OK && i < job->ninputs[0]; i++) {
    const struct manifest_file *f = manifest_state_file(&s->state, job->level, job->inputs[0][i]);
    rc = f ? manifest_edit_delete_file(&edit, job->level, f->number)
           : sdb_fail(SOCHDB_CORRUPT, "compaction input %llu left level %u before its move",
                      (unsigned long long)job->inputs[0][i], job->level);
    if (rc == SOCHDB_OK)
      rc = manifest_edit_add_file(&edit, job->output_level, f);
  }
  pthread_mutex_unlock(&s->lock);
  if (rc == SOCHDB_OK)
    rc = store_apply(s, &edit);
  CRASHPOINT("compact.moved");   /* killed here: tests/test_flush_crash.c */
  if (rc == SOCHDB_OK)
    atomic_fetch_add_explicit(&s->r->hdr->stats.compactions, 1, memory_order_relaxed);
  manifest_edit_free(&edit);
  return rc;
}

#define MOVE_SAMPLE_BLOCKS 16u   /* of each input file, spread over it */

/* Whether moving job's files would carry blocks stored as they are into a
** level that compresses, blocks that LZ4 would shrink (judged on a sample
** of each file): they are rewritten then, so that a load in key order ends
** compressed too. Blocks LZ4 cannot shrink (random bytes, data compressed
** already) are moved as they are: rewriting them would cost the whole I/O
** of the load (a 1 GB sequential load of such values settled 14.8 s after
** its last commit instead of 0.3 s) and change no byte. An input that
** cannot be opened makes it a merge, which reports why (and is retried)
** where a move would have gone ahead without reading it. */
static int move_skips_compression(struct store *s, const struct compaction_job *job)
{
  if (store_compresses(s, job->level) || !store_compresses(s, job->output_level))
    return 0;
  struct input *in = NULL;
  size_t n = 0;
  int compress = open_inputs(s, job, &in, &n) != SOCHDB_OK;   /* then the merge reports why */
  for (size_t i = 0; !compress && i < n; i++)
    compress = sst_plain_blocks_compress(&in[i].r, MOVE_SAMPLE_BLOCKS);
  if (in)
    unmap_inputs(in, n);
  return compress;
}

/* Bytes the levels are over their targets (the compaction debt). */
static void update_debt(struct compactor *c)
{
  struct store *s = c->s;
  uint64_t bytes[MANIFEST_LEVELS], debt = 0;
  store_level_bytes(s, bytes);
  for (unsigned l = 1; l + 1 < MANIFEST_LEVELS; l++) {
    uint64_t target = compaction_level_target(&s->copts, l);
    if (bytes[l] > target && __builtin_add_overflow(debt, bytes[l] - target, &debt))
      debt = UINT64_MAX;   /* a forged MANIFEST's sizes: saturate, never wrap */
  }
  pthread_mutex_lock(&s->lock);
  size_t l0 = s->state.levels[0].n;
  pthread_mutex_unlock(&s->lock);
  if (l0 >= s->copts.l0_trigger && __builtin_add_overflow(debt, bytes[0], &debt))
    debt = UINT64_MAX;
  atomic_store_explicit(&s->r->hdr->stats.compact_debt_bytes, debt, memory_order_relaxed);
}

int compactor_step(struct compactor *c)
{
  struct store *s = c->s;
  struct shm_global_stats *g = &s->r->hdr->stats;
  uint64_t asked = atomic_load_explicit(&g->full_compaction_requested, memory_order_acquire);
  int full = asked != atomic_load_explicit(&g->full_compaction_done, memory_order_relaxed);
  struct compaction_job job;
  memset(&job, 0, sizeof job);
  pthread_mutex_lock(&s->lock);
  int picked = full ? compaction_pick_full(&s->state, &job)
                    : compaction_pick(&s->state, &s->copts, &c->picker, NULL, 0, &job);
  int moves = picked == 1 && compaction_job_moves(&s->state, &job);
  pthread_mutex_unlock(&s->lock);
  if (moves && move_skips_compression(s, &job))
    moves = 0;
  int rc = picked < 0 ? -picked : SOCHDB_OK;
  if (picked < 0)
    store_compaction_result(s, 0);
  if (picked == 1) {
    uint64_t saved = s->compact_rate;
    if (full)
      s->compact_rate = 0;          /* asked for by a person waiting on it */
    rc = moves ? run_move(c, &job) : run_job(c, &job);
    s->compact_rate = saved;
    store_compaction_result(s, rc == SOCHDB_OK);
    /* Its inputs go now, where no reader holds them, rather than at the
    ** flusher's next step (up to a second later), so a full compaction ends
    ** with their space given back (or a moment after, when a flusher step
    ** took them out of the list first). A move dooms nothing. */
    if (rc == SOCHDB_OK && !moves)
      store_reclaim(s);
  }
  compaction_job_free(&job);
  if (rc == SOCHDB_OK && full)
    atomic_store_explicit(&g->full_compaction_done, asked, memory_order_release);
  update_debt(c);
  return rc != SOCHDB_OK ? -rc : picked == 1;   /* the caller logs a failure */
}

void compactor_free(struct compactor *c) { compaction_picker_free(&c->picker); }
