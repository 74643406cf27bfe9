/*
** flusher.c — memtable -> SSTable, WAL truncation, arena recycling (see
** flusher.h).
**
** A rotated-out memtable M is flushed in five steps:
**  1. seal: wait until every commit that may still write into M is over
**     (their commit epochs, shm/epoch.h), so its versions are all decided;
**  2. build the SSTable from M's skiplist (committed versions only, newest
**     first per key), streamed to NNNNNN.sst.tmp as it grows, and wait until
**     the WAL holds all of them (durable_seq >= its newest seq: a file never
**     runs ahead of the log);
**  3. complete it durably under its name, record it in the MANIFEST with the new
**     last_flushed_seq, and publish the new file list;
**  4. retire M from new views at once (a transaction whose snapshot is older
**     than M's newest seq then checks its keys in the SSTables too when it
**     commits: shm/arena.h, src/txn.c), and
**     recycle its arena once no view names it and no commit can still be
**     checking it for conflicts (shm/epoch.h);
**  5. remove WAL segments whose every commit is at or below last_flushed_seq.
**
** last_flushed_seq: every commit below the smallest seq still held by an
** unflushed memtable (min_seq, lowered by each committer before it decides)
** and at or below published_seq (read first) is in SSTables. A commit may
** straddle two memtables (a rotation in the middle of its installs); then it
** is at or above the newer one's min_seq and is replayed whole, its older
** half read twice (same key, same seq: harmless).
**
** A flush waits while level 0 holds --l0-stop files (level0_holds_flush),
** until a compaction has merged them: writers then stall behind the full
** memtables, which is the only way a load faster than the disk can compact
** is slowed to its pace.
*/
#include "flusher.h"

#include "durable.h"
#include "epoch.h"
#include "futex.h"
#include "error.h"
#include "mvcc.h"
#include "seqring.h"
#include "skiplist.h"
#include "sstfmt.h"
#include "walfmt.h"
#include "testhooks.h"
#include "walwriter.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOTHING_TO_WRITE UINT64_MAX   /* flushed_file of a memtable with no committed version */

static void pause_ms(unsigned ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* The SSTable memtable m was flushed to (NOTHING_TO_WRITE if it held no
** committed version), 0 if not flushed yet. Acquire: its max_seq was set
** before (record_table). */
static uint64_t flushed_file_of(const struct shm_memtable *m)
{
  return atomic_load_explicit(&m->flushed_file, memory_order_acquire);
}

/* The oldest LIVE, not active, not yet flushed memtable, or -1. Older ones
** must all be flushed first: "newer memtable = newer version" carries over
** to L0, whose files a get searches newest first, and retire_flushed takes
** memtables out of views oldest first. An arena still claimed by a rotator
** that was never written is skipped: its rotation is in progress or lost,
** and the rotator (or the reaper) frees it without us. One that was written
** is the arena of a rotator that won and died before it dropped its claim
** (arena_rotate, rotate.swung): nothing newer may be flushed before it, so
** the flush waits until the reaper has dropped the claim (-1). Written or
** not is its bump pointer: every allocation, even a failed one, raises it,
** and a rotation away from an arena follows a failed allocation. */
static int oldest_unflushed(shm_region *r)
{
  struct mt_view v;
  arena_view(r, &v);
  uint32_t active = arena_active(r);
  for (int i = (int)v.n - 1; i >= 0; i--) {   /* the view is newest first */
    struct shm_memtable *m = arena_memtable(r, v.idx[i]);
    if (flushed_file_of(m))
      continue;
    if (mt_claimer_of(mt_load(m)) != 0) {
      /* relaxed: we reach it before the active arena, so it was rotated
      ** away from, by a CAS on active_memtable made after a failed
      ** allocation raised `used`; arena_active acquired that CAS or a later
      ** one, which makes the raise visible (as in arena_release_claims_of) */
      if (atomic_load_explicit(&m->used, memory_order_relaxed) == sl_head_bytes(m->capacity))
        continue;
      return -1;
    }
    return v.idx[i] == active ? -1 : (int)v.idx[i];
  }
  return -1;
}

/* Wait until every commit that held an epoch at or below tag is over, for
** at most limit_ms. Dead committers are reaped on the way. */
static int wait_for_commits(struct flusher *f, uint64_t tag, unsigned limit_ms)
{
  shm_region *r = f->s->r;
  for (unsigned round = 0; epoch_oldest_commit(r) <= tag; round++) {
    if (f->stop && atomic_load_explicit(f->stop, memory_order_relaxed))
      return sdb_fail(SOCHDB_BUSY, "stopping while a commit is still in progress");
    if (round >= limit_ms)
      return sdb_fail(SOCHDB_BUSY, "a commit is still in progress after %u ms", limit_ms);
    if (round % 100 == 99)
      slots_reap_all(r, f->s->db->slot);
    pause_ms(1);
  }
  return SOCHDB_OK;
}

/* Step 1: every commit that may still be writing into a rotated-out memtable
** is over. */
static int seal(struct flusher *f) { return wait_for_commits(f, epoch_retire(f->s->r), UINT_MAX); }

static void recycle_retired(shm_region *r, int may_keep);

/* The final state of version v: its seq, or MV_ABORTED. A sealed memtable
** holds no pending version but a dead committer's, which we reap, or that
** of a live one waiting in make_room for a free arena (it left the commit
** epoch the seal waited for, its intents here still undecided). That one
** may be waiting for an arena only we recycle, one that became free since
** this step began (a reader let go of it, or the committer's own older
** epoch ended): we recycle while we wait, or it would time out with
** SOCHDB_BUSY, room there, and hold every flush up meanwhile. */
static uint64_t final_state(shm_region *r, uint32_t my_slot, const struct mv_version *v)
{
  for (unsigned round = 1;; round++) {
    uint64_t st = mv_resolve(r, v);
    if (st)
      return st;
    uint64_t ref = mv_pending_txn(v);   /* 0: stamped meanwhile */
    if (ref)
      slots_reap_if_dead(r, my_slot, txn_ref_slot(ref));
    if (round % 10 == 0)
      recycle_retired(r, 0);
    pause_ms(1);
  }
}

struct built {
  struct sst_file_out file;     /* the SSTable, written as it is built */
  uint8_t *buf;                 /* its end, not yet written */
  size_t   len;
  uint64_t entries, min_seq, max_seq;
  const uint8_t *smallest, *largest;    /* into the region */
  uint32_t slen, llen;
};

/* Step 2: the SSTable of memtable mt. */
static int build_table(struct store *s, uint32_t mt, struct built *out)
{
  shm_region *r = s->r;
  struct sst_builder b;
  int rc = sst_builder_init(&b, s->copts.block_bytes);
  memset(out, 0, sizeof *out);
  out->file.fd = -1;
  out->min_seq = UINT64_MAX;
  /* Streamed to its file as it is built, so the daemon holds about
  ** SST_SPILL_BYTES of it, not a memtable's worth. The file is only renamed
  ** to its name, and recorded, once the log holds everything in it (step 3). */
  b.lz4_data = store_compresses(s, 0);
  if (rc == SOCHDB_OK)
    rc = store_sst_create(s, store_new_file_number(s), SST_SMALL_PIECES, &out->file);
  if (rc == SOCHDB_OK)
    sst_builder_spill(&b, store_sst_append, &out->file);
  for (uint64_t n = sl_seek(r, mt, NULL, 0); n && rc == SOCHDB_OK; n = sl_next(r, n)) {
    const struct sl_node *node = shm_at(r, n);
    int any = 0;
    for (uint64_t off = sl_versions(r, node); off && rc == SOCHDB_OK;) {
      const struct mv_version *v = shm_at(r, off);
      uint64_t st = final_state(r, s->db->slot, v);
      if (st != MV_ABORTED) {
        int del = mv_is_tombstone(v);
        rc = sst_builder_add(&b, sl_key(node), node->klen, st, del ? SST_DEL : SST_PUT, del ? NULL : v->value,
                             del ? 0 : mv_vlen(v));
        out->min_seq = st < out->min_seq ? st : out->min_seq;
        out->max_seq = st > out->max_seq ? st : out->max_seq;
        any = 1;
      }
      off = shm_ref_off(r, v->older);
    }
    if (any) {
      if (!out->smallest) {
        out->smallest = sl_key(node);
        out->slen = node->klen;
      }
      out->largest = sl_key(node);
      out->llen = node->klen;
    }
  }
  out->entries = b.entries;
  if (rc == SOCHDB_OK && b.entries)
    rc = sst_builder_finish(&b, &out->buf, &out->len);
  sst_builder_free(&b);
  if (rc != SOCHDB_OK || !out->entries)
    store_sst_abandon(&out->file);
  return rc;
}

/* Ask the WAL writer to leave room on the disk for the table of sealed
** memtable mt (walwriter.c, leave_room_for_table): the log and the tables
** share the disk, and only this flush gives the log's space back. The bound
** on the table is the arena's bytes and a margin (a table is smaller than
** its skiplist but for its index and filter). The log goes on up to seq
** only: set once the table is built, to what it waits for (0 till then). */
static void ask_room_for_table(struct flusher *f, uint32_t mt, uint64_t seq)
{
  struct walwriter *w = f->w;
  if (!w)
    return;
  const struct shm_memtable *m = arena_memtable(f->s->r, mt);
  /* relaxed: mt is sealed; `used` may exceed the capacity by failed claims */
  uint64_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
  if (used > m->capacity)
    used = m->capacity;
  /* relaxed, both: see leave_room_for_table */
  atomic_store_explicit(&w->room_seq, seq, memory_order_relaxed);
  atomic_store_explicit(&w->room_bytes, used + used / 16 + (64u << 10), memory_order_relaxed);
}

/* No memtable waits for its flush: no room is held. After a flush the room
** stays asked until the next one asks again (at once, if a memtable waits):
** dropped in between, it could go to the log first. */
static void drop_room_for_table(struct flusher *f)
{
  if (f->w)
    atomic_store_explicit(&f->w->room_bytes, 0, memory_order_relaxed);   /* relaxed: see leave_room_for_table */
}

/* Commits at or below the result are all in SSTables once mt is. */
static uint64_t flushed_through(shm_region *r, uint32_t mt)
{
  uint64_t cut = seqring_published(r) + 1;   /* first: see the header */
  struct mt_view v;
  arena_view(r, &v);
  for (uint32_t i = 0; i < v.n; i++) {
    struct shm_memtable *m = arena_memtable(r, v.idx[i]);
    if (v.idx[i] == mt || flushed_file_of(m))
      continue;
    uint64_t min = atomic_load_explicit(&m->min_seq, memory_order_relaxed);
    if (min < cut)
      cut = min;
  }
  return cut - 1;
}

/* Wait until the WAL holds every commit up to seq; not while the daemon
** stops (its main thread joins us before it stops the writer, which may be
** failing: it gives up after about a second only once told to stop). */
static int wait_logged(struct flusher *f, uint64_t seq)
{
  shm_region *r = f->s->r;
  for (unsigned i = 0; i < 3000 && durable_seq(r) < seq; i++) {
    if (f->stop && atomic_load_explicit(f->stop, memory_order_relaxed))   /* relaxed: a flag, nothing to see by it */
      return sdb_fail(SOCHDB_BUSY, "stopping while the WAL has not reached commit %llu", (unsigned long long)seq);
    durable_kick(r);
    durable_wait(r, seq, 10);
  }
  return durable_seq(r) >= seq ? SOCHDB_OK
                               : sdb_fail(SOCHDB_BUSY, "the WAL did not reach commit %llu in 30 s",
                                          (unsigned long long)seq);
}

/* Step 3. */
static int record_table(struct store *s, uint32_t mt, struct built *t)
{
  shm_region *r = s->r;
  struct shm_memtable *m = arena_memtable(r, mt);
  uint64_t number = NOTHING_TO_WRITE;
  struct manifest_edit e;
  manifest_edit_init(&e);
  int rc = SOCHDB_OK;
  if (t->entries) {
    number = t->file.number;
    rc = store_sst_complete(s, &t->file, t->buf, t->len);
    CRASHPOINT("flush.written");
    struct manifest_file f = { number, t->file.written, (uint8_t *)t->smallest, t->slen, (uint8_t *)t->largest,
                               t->llen, t->min_seq, t->max_seq };
    if (rc == SOCHDB_OK)
      rc = manifest_edit_add_file(&e, 0, &f);
  }
  uint64_t through = flushed_through(r, mt);
  pthread_mutex_lock(&s->lock);
  uint64_t prev = s->state.last_flushed_seq;
  pthread_mutex_unlock(&s->lock);
  manifest_edit_set_flushed(&e, through > prev ? through : prev);
  if (rc == SOCHDB_OK)
    rc = store_apply(s, &e);
  manifest_edit_free(&e);
  if (rc != SOCHDB_OK)
    return rc;
  CRASHPOINT("flush.recorded");
  atomic_store_explicit(&m->max_seq, t->max_seq, memory_order_relaxed);
  /* release: max_seq is set before, even for the next daemon if we die here
  ** (flushed_file_of acquires) */
  atomic_store_explicit(&m->flushed_file, number, memory_order_release);
  struct shm_global_stats *g = &r->hdr->stats;
  atomic_fetch_add_explicit(&g->flushes, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&g->flush_bytes, t->file.written, memory_order_relaxed);
  return SOCHDB_OK;
}

/* Step 4: flushed memtables leave new views at once, oldest first (a view
** that sees a newer one retired must see the older ones retired too: its
** file list then names all their files), and an arena is given back once
** no view names it and no commit that could have seen it is left. Runs
** before each flush too, so a dead daemon's flushed memtables leave the
** views before a newer file is published. */
static void retire_flushed(shm_region *r)
{
  struct mt_view v;
  arena_view(r, &v);
  uint32_t active = arena_active(r);
  for (int i = (int)v.n - 1; i >= 0; i--) {   /* the view is newest first */
    struct shm_memtable *m = arena_memtable(r, v.idx[i]);
    if (mt_claimer_of(mt_load(m)) != 0)
      continue;   /* a rotation in progress: never held a version */
    if (v.idx[i] == active || !flushed_file_of(m))
      break;
    arena_retire(r, v.idx[i]);
  }
}

/* A free arena kept its pages (at most one is kept at a time). The first
** chunk of one whose rotation lost does not count. */
static int any_spare(shm_region *r)
{
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++)
    if (arena_spare_bytes(r, i) > arena_first_reserve(arena_memtable(r, i)->capacity))
      return 1;
  return 0;
}

static void recycle_retired(shm_region *r, int may_keep)
{
  int any = 0;
  for (uint32_t i = 0; i < r->hdr->n_memtables && !any; i++)
    any = mt_state_of(mt_load(arena_memtable(r, i))) == MT_RETIRED;
  if (!any)
    return;   /* spare the scans of every transaction entry */
  uint64_t viewed = hazard_memtables(r);
  uint64_t oldest_commit = epoch_oldest_commit(r);
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++) {
    struct shm_memtable *m = arena_memtable(r, i);
    if (mt_state_of(mt_load(m)) == MT_RETIRED && !(viewed >> i & 1) &&
        atomic_load_explicit(&m->retire_tag, memory_order_relaxed) < oldest_commit) {
      pthread_rwlock_wrlock(&ww_records_lock);   /* see walwriter.h */
      durable_forget_range(r, m->arena_off, m->arena_off + m->capacity);
      pthread_rwlock_unlock(&ww_records_lock);
      arena_recycle(r, i, may_keep && !any_spare(r));
    }
  }
}

static void retire_and_recycle(struct flusher *f)
{
  retire_flushed(f->s->r);
  recycle_retired(f->s->r, f->spare_keep_ns > 0);
}

/* ---- step 5: the WAL ------------------------------------------------------- */

static int note_max(void *ctx, const struct wal_record *rec)
{
  uint64_t *max = ctx;
  if (rec->seq > *max)
    *max = rec->seq;
  return 0;
}

/* The newest commit segment `lsn` logs, or a bound on it: from the writer
** that closed it, else read from the file once (a segment of a predecessor). */
static int segment_max_seq(struct flusher *f, uint64_t lsn, uint64_t *max)
{
  for (size_t i = 0; i < f->nsegs; i++)
    if (f->segs[i].lsn == lsn) {
      *max = f->segs[i].max_seq;
      return SOCHDB_OK;
    }
  if (f->w && ww_closed_seq_bound(f->w, lsn, max))
    return SOCHDB_OK;
  char path[4300];
  wal_segment_path(path, sizeof path, f->s->db->dir, lsn);
  struct wal_scan_result res;
  *max = 0;
  int rc = wal_scan_file(path, f->s->r->hdr->db_id, note_max, max, &res);
  if (rc != SOCHDB_OK)
    return rc;
  struct wal_seg_info *grown = realloc(f->segs, (f->nsegs + 1) * sizeof *grown);
  if (!grown)
    return SOCHDB_NOMEM;
  f->segs = grown;
  f->segs[f->nsegs++] = (struct wal_seg_info){ lsn, *max };
  return SOCHDB_OK;
}

static void forget_segment(struct flusher *f, uint64_t lsn)
{
  for (size_t i = 0; i < f->nsegs; i++)
    if (f->segs[i].lsn == lsn) {
      f->segs[i] = f->segs[--f->nsegs];
      return;
    }
}

/* Segment lsn's file renamed to its .free name for the writer to reuse,
** if the writer wants one more (pending renamed already): 1, else 0 (the
** caller removes it). */
static int keep_for_reuse(struct flusher *f, uint64_t lsn, const char *path, unsigned pending)
{
  if (!f->w || !ww_pool_wants(f->w, pending))
    return 0;
  char free_path[4300];
  wal_free_path(free_path, sizeof free_path, f->s->db->dir, lsn);
  return rename(path, free_path) == 0;
}

/* The renamed files go to the writer once their new names are durable: a
** file reused under an old segment's name that a crash brought back would
** be that segment, damaged. If the directory cannot be synced, they go. */
static void hand_over_for_reuse(struct flusher *f, const uint64_t *lsns, unsigned n)
{
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/" WAL_DIR, f->s->db->dir);
  int synced = n && sdb_fsync_dir(dir) == SOCHDB_OK;
  for (unsigned i = 0; i < n; i++) {
    if (synced) {
      ww_pool_add(f->w, lsns[i]);
    } else {
      char path[4300];
      wal_free_path(path, sizeof path, f->s->db->dir, lsns[i]);
      unlink(path);
    }
  }
}

/* Remove, oldest first, every segment but the newest whose commits are all
** flushed: recovery replays from the first remaining one. The writer may
** keep a few files for its next segments (walwriter.c, reuse). */
static void truncate_wal(struct flusher *f)
{
  struct store *s = f->s;
  pthread_mutex_lock(&s->lock);
  uint64_t flushed = s->state.last_flushed_seq;
  pthread_mutex_unlock(&s->lock);
  uint64_t *lsns;
  size_t n;
  if (sdb_dir_is_ours(s->db) != SOCHDB_OK || wal_list_segments(s->db->dir, &lsns, &n) != SOCHDB_OK)
    return;   /* a segment of another database may bear the same name */
  uint64_t kept[WAL_FREE_MAX];
  unsigned nkept = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    uint64_t max;
    if (segment_max_seq(f, lsns[i], &max) != SOCHDB_OK || max > flushed)
      break;
    char path[4300];
    wal_segment_path(path, sizeof path, s->db->dir, lsns[i]);
    if (nkept < WAL_FREE_MAX && keep_for_reuse(f, lsns[i], path, nkept)) {
      kept[nkept++] = lsns[i];
    } else if (unlink(path) != 0 && errno != ENOENT) {
      ww_log(s->db->dir, "cannot remove WAL segment %s: %s", path, strerror(errno));
      break;
    }
    forget_segment(f, lsns[i]);
    atomic_fetch_add_explicit(&s->r->hdr->stats.wal_segments_removed, 1, memory_order_relaxed);
  }
  hand_over_for_reuse(f, kept, nkept);
  free(lsns);
}

/* ---- pages that recycled arenas kept (shm/arena.h) ------------------------ */

#define TRIM_WINDOW_NS  1000000000ull   /* the active memtable's growth is measured over this */
#define TRIM_WAIT_MS    20u             /* a trim waits this long for commits in progress */

static void release_idle_spares(struct flusher *f, uint64_t now)
{
  shm_region *r = f->s->r;
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++) {
    if (!arena_spare_bytes(r, i))
      f->spare_since[i] = 0;
    else if (!f->spare_since[i])
      f->spare_since[i] = now;
    else if (now - f->spare_since[i] >= f->spare_keep_ns && arena_release_spare(r, i, f->s->db->slot))
      f->spare_since[i] = 0;
  }
}

/* Where the active memtable's writers will not get soon: past twice what
** they wrote in the last window, and a chunk. 0: not measured yet. */
static uint64_t trim_floor(struct flusher *f, uint32_t active, uint64_t now)
{
  struct shm_memtable *m = arena_memtable(f->s->r, active);
  uint64_t id = atomic_load_explicit(&m->id, memory_order_relaxed);
  uint64_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
  uint64_t chunk = ARENA_RESERVE_CHUNK;
  if (f->trim_eager)
    return (used + chunk - 1) / chunk * chunk;
  if (id != f->watch_id || used < f->watch_used) {
    f->watch_id = id;
    f->watch_used = used;
    f->watch_ns = now;
    return 0;
  }
  if (now - f->watch_ns < TRIM_WINDOW_NS)
    return 0;
  uint64_t grown = used - f->watch_used;
  f->watch_used = used;
  f->watch_ns = now;
  return (used + 2 * grown + 2 * chunk - 1) / chunk * chunk;
}

/* The active memtable took a spare's pages: give back those its writers
** will not reach soon (a rarely written database would otherwise hold a
** whole memtable of them for little data). Commits are waited for briefly:
** a long one must not hold flushes up, and a trim put off is harmless. */
static void trim_active(struct flusher *f, uint64_t now)
{
  shm_region *r = f->s->r;
  uint32_t a = arena_active(r);
  uint64_t floor = trim_floor(f, a, now);
  struct arena_trim t;
  if (!floor || floor >= arena_backed(r, a) || !arena_trim_begin(r, a, floor, &t))
    return;
  if (wait_for_commits(f, t.tag, TRIM_WAIT_MS) == SOCHDB_OK)
    arena_trim_end(r, &t);
  else
    arena_trim_cancel(r, &t);
}

/* Steps 1 to 3 for memtable mt: sealed, written and recorded. */
static int flush_memtable(struct flusher *f, uint32_t mt)
{
  int rc = seal(f);
  if (rc != SOCHDB_OK)
    return rc;
  ask_room_for_table(f, mt, 0);   /* kept while the flush fails: its retry needs the room */
  struct built t;
  rc = build_table(f->s, mt, &t);
  if (rc == SOCHDB_OK) {
    ask_room_for_table(f, mt, t.max_seq);   /* built: the log may go on to what it waits for */
    rc = wait_logged(f, t.max_seq);
  }
  if (rc == SOCHDB_OK)
    rc = record_table(f->s, mt, &t);
  store_sst_abandon(&t.file);   /* not written whole (a no-op once it is) */
  free(t.buf);
  return rc;
}

/* Level 0's file count while a flush waits at its stop, else 0, for the
** message of a writer that waits too long (src/txn.c). Relaxed: a hint, read
** on its own; cleared at every step that holds nothing and when the flusher
** stops (a predecessor killed while it held leaves it for its successor's
** first step, and writers heed it only while a daemon serves). */
static void note_held_files(struct flusher *f, uint64_t l0)
{
  _Atomic uint64_t *held = &f->s->r->hdr->stats.l0_held_files;
  if (atomic_load_explicit(held, memory_order_relaxed) != l0)
    atomic_store_explicit(held, l0, memory_order_relaxed);
}

/* Whether the oldest memtable's flush must wait because level 0 is at its
** stop (store_level0_stops); *seen gets the file lists' futex word as it
** was before the look, for wait_for_level0. Memtables then wait, and
** writers stall behind them (src/txn.c), as RocksDB stops writes at
** level0_stop_writes_trigger: without it a load that comes in faster than
** the disk can compact it leaves ever more level-0 files, each of them
** searched by every get. */
static int level0_holds_flush(struct flusher *f, uint32_t *seen)
{
  struct store *s = f->s;
  /* acquire: level 0 is looked at after the word is read, so a list
  ** published after the look has changed it and the wait returns at once */
  *seen = atomic_load_explicit(&s->r->hdr->files_futex, memory_order_acquire);
  size_t l0;
  int was_held = f->held;
  f->held = store_level0_stops(s, &l0);
  note_held_files(f, f->held ? l0 : 0);
  if (f->held && !was_held) {
    /* relaxed: a statistic, ordered with nothing */
    uint64_t n = atomic_fetch_add_explicit(&s->r->hdr->stats.l0_stops, 1, memory_order_relaxed) + 1;
    if ((n & (n - 1)) == 0 || n % 100 == 0)
      ww_log(s->db->dir, "level 0 holds %zu files (--l0-stop %u): flushes wait for compaction to merge them, "
             "and writers for the flushes (%llu time%s so far)", l0, s->l0_stop, (unsigned long long)n,
             n == 1 ? "" : "s");
  }
  return f->held;
}

/* Wait up to 100 ms for a new file list (a compaction that took files out
** of level 0 publishes one), counting the time in l0_stop_us. */
static void wait_for_level0(struct flusher *f, uint32_t seen)
{
  struct shm_header *h = f->s->r->hdr;
  uint64_t t0 = sdb_monotonic_ns();
  shm_futex_wait_ms(&h->files_futex, seen, 100);
  /* relaxed: a statistic */
  atomic_fetch_add_explicit(&h->stats.l0_stop_us, (sdb_monotonic_ns() - t0) / 1000, memory_order_relaxed);
}

int flusher_step(struct flusher *f)
{
  struct store *s = f->s;
  shm_region *r = s->r;
  int flushed = 0;
  retire_flushed(r);
  int mt = oldest_unflushed(r);
  /* sochdbd-testing's eager trims also come right after a rotation, while
  ** the new active arena is nearly empty: after a flush (below) it may be
  ** past its last trimmable chunk already, which under AddressSanitizer,
  ** where building a table is slow, was the rule */
  if (mt >= 0 && f->trim_eager)
    trim_active(f, sdb_monotonic_ns());
  uint32_t files_seen = 0;
  int held = mt >= 0 && level0_holds_flush(f, &files_seen);
  if (!held) {
    f->held = 0;   /* a hold after a round with nothing to flush is a new one */
    note_held_files(f, 0);
  }
  /* At the region's file limit the table would be built only to be
  ** refused; the rest of the step (reclaiming compacted files) still runs. */
  int no_room = mt >= 0 && !held ? store_check_room(s, 1, 0) : SOCHDB_OK;
  if (mt < 0)
    drop_room_for_table(f);   /* no table to make room for */
  else if (held || no_room != SOCHDB_OK)
    /* The table waits all the same: dropped, its room would go to the log
    ** on a nearly full disk, the compaction then fail for space, and the
    ** flush after it too, with no flush left to trim the log (found by an
    ** independent review; tests/test_faults.c). */
    ask_room_for_table(f, (uint32_t)mt, 0);
  if (mt >= 0 && no_room == SOCHDB_OK && !held) {
    int rc = flush_memtable(f, (uint32_t)mt);
    if (rc != SOCHDB_OK) {
      /* The files compactions doomed go all the same: a flush that fails
      ** for a full disk needs the space of the inputs they merged. */
      store_reclaim(s);
      return -rc;
    }
    flushed = 1;
    if (!sl_index_complete(r, (uint32_t)mt))   /* gets in it searched its skiplist: slower, not wrong */
      ww_log(s->db->dir, "memtable %d's hash index was incomplete (a writer died, or was descheduled, between "
             "linking a new key and hashing it)", mt);
    truncate_wal(f);
    CRASHPOINT("flush.wal_truncated");
  }
  retire_and_recycle(f);
  uint64_t now = sdb_monotonic_ns();
  release_idle_spares(f, now);
  trim_active(f, now);
  store_reclaim(s);
  if (no_room != SOCHDB_OK && (no_room = store_check_room(s, 1, 0)) != SOCHDB_OK)
    return -no_room;   /* asked again, for a message the step did not overwrite */
  if (held) {
    wait_for_level0(f, files_seen);
    return 1;   /* look again at once: the wait was this round's idle time */
  }
  return flushed;
}

/* A room still asked when the flusher stops (a flush that failed, or was
** given up while it waited for the log, or the hint a finished flush
** leaves) would hold the WAL writer's last passes back for a table nobody
** will write: they would give up commits that fit on the disk, acknowledged
** ASYNC ones among them (tests/test_faults.c,
** a_daemon_stopped_while_its_log_leaves_room_for_a_table_writes_what_fits). */
void flusher_stopped(struct flusher *f)
{
  drop_room_for_table(f);
  note_held_files(f, 0);
}

void flusher_free(struct flusher *f)
{
  free(f->segs);
  f->segs = NULL;
  f->nsegs = 0;
}
