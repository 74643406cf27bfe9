/*
** recovery.c — rebuilding a lost region from the directory: replay every WAL
** segment, in LSN order, into the fresh region's memtables.
**
** It runs in whichever process creates the region (under the region's
** creation flock, before the magic is published), so no transaction ever
** sees a half-replayed region, and a replayer killed half-way leaves a region
** without magic that the next opener replays again. Replayed versions are
** stamped with their original commit sequence; the sequencer and the
** durable sequence resume after the last one.
**
** Commits at or below the MANIFEST's last_flushed_seq are in SSTables and
** are skipped (the flusher removes the segments that hold only such
** commits), so recovery replays at most about a memtable's worth of log. The
** region's first file list is filled from the MANIFEST here too, so that
** the first transactions see the SSTables before any daemon runs.
**
** Only the last segment may end in a torn tail (an interrupted group that was
** never acknowledged); the daemon cuts it off before appending. A segment
** whose first LSN does not continue the previous one, or damage before an
** intact group, is SOCHDB_CORRUPT: recovery never skips data silently.
*/
#include "internal.h"

#include "arena.h"
#include "bytes.h"
#include "durable.h"
#include "error.h"
#include "mvcc.h"
#include "seqring.h"
#include "skiplist.h"
#include "filelist.h"
#include "manifest.h"
#include "testhooks.h"
#include "walfmt.h"

#include <assert.h>

static_assert(MANIFEST_MAX_SEQ == MV_MAX_SEQ, "a MANIFEST's seqs are bounded as versions' are");
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define REPLAY_SLOT UINT32_MAX   /* arena claims made during replay name no slot */

/*
** The replay is a bulk load. Ops are collected in commit order into a chunk
** until the next one might not fit the active memtable; the chunk is then
** sorted by (key, seq) and the memtable's skiplist is built in key order with
** O(1) appends (sl_build_append), each key's versions laid out oldest first
** with the newest heading the chain, all in
** one arena allocation; then the replay rotates to a fresh memtable, as the
** committers would have. Chunks are contiguous runs of ops in commit order
** (a chunk boundary may fall inside a commit, as a rotation may during a
** live commit: daemon/flusher.c keeps such a commit's log), never ranges of
** keys: the flusher relies on older memtables holding older commits. The
** nodes and versions are the ones op-by-op inserts would have made.
**
** What a chunk may need is counted as if every op were a new key (a node of
** the height drawn for it plus its version), so the build never runs out
** of room; a chunk that updates keys many times leaves its memtable part
** empty.
*/
/* One op to replay, pointing into the mapped WAL (its value follows its key
** there: walfmt.c). Kept to 24 bytes: a replay writes one per op into fresh
** pages, and where a hypervisor makes each fresh page cost about 10 us, the
** 48 bytes these once took made a 41 MiB replay 40 ms slower (bench/). */
struct rop {
  const uint8_t *key;
  uint64_t       seq;
  uint32_t       vlen;
  uint16_t       klen;        /* at most SOCHDB_MAX_KEY */
  uint8_t        height;      /* of its node, if its key is the first of its group */
  uint8_t        tombstone;
};

_Static_assert(sizeof(struct rop) == 24, "an op to replay takes 24 bytes");

/* Radix-sort item: 8 key bytes (big-endian), the op's index. Packed to 12
** bytes for the same reason; a chunk fits a memtable (at most 4 GiB, and
** each op takes at least 48 bytes of it), so its indexes fit 32 bits. */
struct __attribute__((packed, aligned(4))) sort_ent {
  uint64_t prefix;
  uint32_t idx;
};

_Static_assert(sizeof(struct sort_ent) == 12, "a radix-sort item takes 12 bytes");

/*
** The build lays the memtable out in private windows and writes them to the
** region's file with pwrite(), instead of writing through the mapping: under
** a hypervisor that shadows the guest's page tables, the first touch of each
** mapped page costs 6-7 us even after MADV_POPULATE_WRITE, and the kernel's
** copy into the page cache about 1 (a 64 MiB memtable is 16,384 pages:
** bench/, recovery). A window holds consecutive arena bytes; a node or
** version that does not fit in it sends the window to the file and starts
** the next one. A link into a node of an earlier window (a skiplist
** predecessor, sl_builder.link) is kept with the window being laid out and
** written after it, with a pwrite of its own: at most one per level and
** window. Once the helper thread is done verifying the log it writes the
** windows (stage_flush hands each over) while the main thread lays out the
** next; before that, and without a helper, the main thread writes them
** itself. The other processes read these pages through their mappings once
** the magic is published: the same page-cache pages, written before that
** release store by this thread, or by the helper, whose writes the main
** thread waited for under the helper's mutex (stage_drain).
*/
#define STAGE_BYTES (256u << 10)

struct link_patch {
  uint64_t off;               /* a link field in an earlier window */
  shm_ref  ref;
};

struct window {
  uint8_t *buf;
  size_t   cap;
  uint64_t off;               /* the region offset buf[0] stands for */
  size_t   len;               /* bytes laid out in buf */
  struct link_patch *patches; /* links into earlier windows, written after this one */
  size_t   npatches, patch_cap;
};

struct helper;

struct stage {
  int            fd;          /* the region's file */
  struct window  win[2];      /* the main thread lays out win[cur]; the helper may be writing the other */
  int            cur;
  int            err;         /* errno of the first failure: a write's, ENOMEM, EOVERFLOW (stage_fail) */
  uint64_t       limit;       /* the end of the chunk's allocation: nothing is laid out past it */
  struct helper *helper;      /* the helper thread, if there is one */
};

struct replay {
  shm_region *r;
  uint64_t    max_seq;
  uint64_t    flushed;        /* commits at or below it are in SSTables */
  struct rop *ops;            /* the chunk, in commit order */
  size_t      n, cap;
  size_t      ops_mapped;     /* bytes of ops populated (scratch_populate) */
  uint64_t    bytes;          /* what it may take in the arena (see above) */
  uint64_t    room;           /* what the active memtable had left when the chunk began */
  struct stage stage;         /* the memtable being laid out (see above); stage.helper: the helper thread */
  uint8_t    *newkey;         /* per op (cap of them): its key differs from the one before it in key order */
  int         unsorted;       /* a key of the chunk is below the one before it in commit order */
  uint32_t    common;         /* the longest prefix every key of the chunk shares */
  uint64_t    exact;          /* the arena bytes the chunk takes, while it is in order */
  struct recent *recent;      /* RECENT_SLOTS: an op of the chunk per key hash, once it is out of order */
  uint32_t   *order;          /* scratch of the sort: op indexes in key order */
  struct sort_ent *sort_a, *sort_b;
  size_t      sort_cap;
};

/* The chunk's i-th op in key order. */
static inline const struct rop *op_at(const struct replay *rp, size_t i)
{
  return &rp->ops[rp->unsorted ? rp->order[i] : i];
}

static const uint8_t *rop_val(const struct rop *o) { return o->key + o->klen; }

#define SCRATCH_STEP (1u << 20)   /* bytes of the op array mapped at a time */

/* Map bytes [from, to) of a scratch array with one call rather than a page
** fault each: under a hypervisor that shadows page tables a fresh page costs
** about 10 us at its first write, and 5 once populated (the write still
** takes a lighter fault there). A hint: whatever fails is faulted in as
** before. */
static void scratch_populate(void *base, size_t from, size_t to)
{
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t lo = ((uintptr_t)base + from) & ~(page - 1), hi = (uintptr_t)base + to;
  if (hi > lo)
    (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
}

static int rop_cmp(const struct rop *a, const struct rop *b)
{
  return sl_compare(a->key, a->klen, b->key, b->klen);
}

/* qsort_r's comparator for runs of equal radix prefix: key, then commit order. */
static int cmp_idx(const void *x, const void *y, void *ctx)
{
  const struct rop *ops = ctx;
  uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
  int c = rop_cmp(&ops[i], &ops[j]);
  return c ? c : (i > j) - (i < j);
}

static int  helper_touch(struct helper *h, void *p1, size_t len1, void *p2, size_t len2);
static void helper_touch_wait(struct helper *h);

/* rp->order = the chunk's op indexes sorted by (key, commit order), and
** rp->newkey by that order. Input already sorted (keys that only grow, the
** common case, which add_op noted) is left as it is, without an order
** (op_at); else an LSD radix sort on the 8 bytes after the chunk's common
** key prefix (it is stable, so commit order holds among equal prefixes),
** then the runs of equal prefix are sorted by whole key. */
static int sort_chunk(struct replay *rp)
{
  if (!rp->unsorted)                        /* add_op found them in order: nothing to do */
    return SOCHDB_OK;
  size_t n = rp->n;
  const struct rop *ops = rp->ops;
  if (n > rp->sort_cap) {
    size_t cap = n > 2 * rp->sort_cap ? n : 2 * rp->sort_cap;
    uint32_t *order = realloc(rp->order, cap * sizeof *order);
    if (order)
      rp->order = order;
    struct sort_ent *a = realloc(rp->sort_a, cap * sizeof *a);
    if (a)
      rp->sort_a = a;
    struct sort_ent *b = realloc(rp->sort_b, cap * sizeof *b);
    if (b)
      rp->sort_b = b;
    if (!order || !a || !b)
      return sdb_fail(SOCHDB_NOMEM, "sorting %zu WAL operations to replay", n);
    rp->sort_cap = cap;
  }
  uint32_t *order = rp->order;
  uint8_t *newkey = rp->newkey;
  size_t i;
  uint32_t common = rp->common;
  /* The first writes to these fresh pages are most of a sort's time where
  ** pages are dear: an idle helper makes the scatter's ready while we fill
  ** the first array. */
  struct sort_ent *a = rp->sort_a, *b = rp->sort_b;
  struct helper *h = rp->stage.helper;
  if (!helper_touch(h, b, n * sizeof *b, order, n * sizeof *order)) {
    h = NULL;
    scratch_populate(b, 0, n * sizeof *b);
    scratch_populate(order, 0, n * sizeof *order);
  }
  scratch_populate(a, 0, n * sizeof *a);
  size_t count[8][256];
  memset(count, 0, sizeof count);
  for (i = 0; i < n; i++) {
    uint64_t p = 0;
    for (uint32_t k = 0; k < 8; k++)
      p = p << 8 | (common + k < ops[i].klen ? ops[i].key[common + k] : 0);
    a[i] = (struct sort_ent){ p, (uint32_t)i };
    for (unsigned d = 0; d < 8; d++)
      count[d][(p >> (8 * d)) & 0xff]++;
  }
  helper_touch_wait(h);                      /* b and order are ours again */
  for (unsigned d = 0; d < 8; d++) {
    if (count[d][(a[0].prefix >> (8 * d)) & 0xff] == n)
      continue;                              /* every item has this digit */
    size_t pos = 0;
    for (unsigned v = 0; v < 256; v++) {
      size_t c = count[d][v];
      count[d][v] = pos;
      pos += c;
    }
    for (i = 0; i < n; i++)
      b[count[d][(a[i].prefix >> (8 * d)) & 0xff]++] = a[i];
    struct sort_ent *t = a;
    a = b;
    b = t;
  }
  for (i = 0; i < n; i++)
    order[i] = a[i].idx;
  for (size_t lo = 0; lo < n;) {             /* equal prefixes: by whole key */
    size_t hi = lo + 1;
    while (hi < n && a[hi].prefix == a[lo].prefix)
      hi++;
    if (hi - lo > 1)
      qsort_r(order + lo, hi - lo, sizeof *order, cmp_idx, (void *)ops);
    lo = hi;
  }
  for (i = 1; i < n; i++)
    newkey[i] = a[i].prefix != a[i - 1].prefix || rop_cmp(&ops[order[i - 1]], &ops[order[i]]) != 0;
  return SOCHDB_OK;
}

/* The segments stay mapped until the replay ends: chunks point into them. */
struct mapped {
  const uint8_t *buf;
  size_t         len;
  int            fd;          /* open for reading (the tail's check, walfmt.h), or -1 */
};

/* The replay's helper thread. First it backs the first memtable's pages
** (fallocate) while the WAL is read and sorted, so that the build's writes
** find them allocated and zeroed; at most as many bytes as the log holds, so
** a short log does not make a whole arena resident. A failure is ignored:
** build_chunk reserves whatever the helper did not. Then it verifies the
** log's group checksums ahead of the scan (wal_verify_ahead): its first
** reads of the mapped log are what cost, and it spares the scan them. */
struct helper {
  shm_region *r;
  uint32_t    mt;             /* the memtable whose start it backs */
  uint64_t    off, len;       /* the region bytes to back */
  const struct mapped *maps;  /* the log's segments, to verify */
  size_t      nmaps;
  struct wal_ahead ahead;
  pthread_mutex_t lock;
  pthread_cond_t  main_cond;  /* the main thread waits: pages backed, a window written */
  pthread_cond_t  helper_cond; /* the helper waits: a window to write, or stop */
  int         prepared;       /* done with the pages (under lock, as what follows) */
  int         serving;        /* done verifying: it writes the windows handed over */
  const struct window *job;   /* the window it is to write or writing, or NULL */
  uint8_t    *touch[2];       /* scratch it is to make ready, or NULL: touch_pages */
  size_t      touch_len[2];
  int         werr;           /* errno of its first failed write */
  int         stop;
  pthread_t   th;
  int         running;
};

#define HELPER_MIN (4u << 20)   /* log bytes below which a helper thread is not worth starting */

/* pwrite n bytes at off in full. Returns 0 or an errno. */
static int write_fully(int fd, uint64_t off, const void *p, size_t n)
{
  const uint8_t *at = p;
  while (n) {
    ssize_t w = pwrite(fd, at, n, (off_t)off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return w < 0 ? errno : ENOSPC;
    at += w;
    off += (uint64_t)w;
    n -= (size_t)w;
  }
  return 0;
}

/* A window, then its links into earlier windows (written after it, as those were before it). */
static int window_write(int fd, const struct window *w)
{
  int err = write_fully(fd, w->off, w->buf, w->len);
  for (size_t i = 0; !err && i < w->npatches; i++)
    err = write_fully(fd, w->patches[i].off, &w->patches[i].ref, sizeof w->patches[i].ref);
  return err;
}

/* Make fresh private pages ready for writing: populated, then written once
** (under a hypervisor that shadows page tables, the first write still costs
** after the populate; it is the thread that then writes them that we spare).
** What the bytes hold does not matter: their owner writes them all next. */
static void touch_pages(uint8_t *p, size_t len)
{
  if (!p)
    return;
  scratch_populate(p, 0, len);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t first = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
  if (len)
    p[0] = 0;
  for (uintptr_t at = first; at < (uintptr_t)p + len; at += page)
    *(volatile uint8_t *)at = 0;
}

static void *helper_main(void *arg)
{
  struct helper *h = arg;
  (void)arena_back(h->r, h->mt, h->len);   /* a failure is build_chunk's to meet again and report */
  pthread_mutex_lock(&h->lock);
  h->prepared = 1;
  pthread_cond_broadcast(&h->main_cond);
  pthread_mutex_unlock(&h->lock);
  for (size_t i = 0; i < h->nmaps; i++)
    wal_verify_ahead(&h->ahead, (uint32_t)i, h->maps[i].buf, h->maps[i].len);
  /* Only now: while it verifies it may wait for the scan, which must
  ** therefore never wait for it. */
  pthread_mutex_lock(&h->lock);
  h->serving = 1;
  pthread_cond_broadcast(&h->main_cond);   /* helper_serve_now may be waiting */
  for (;;) {
    while (!h->job && !h->touch[0] && !h->stop)
      pthread_cond_wait(&h->helper_cond, &h->lock);
    if (h->touch[0]) {
      pthread_mutex_unlock(&h->lock);
      for (int i = 0; i < 2; i++)
        touch_pages(h->touch[i], h->touch_len[i]);
      pthread_mutex_lock(&h->lock);
      h->touch[0] = NULL;
      pthread_cond_broadcast(&h->main_cond);
      continue;
    }
    if (!h->job)
      break;
    const struct window *w = h->job;
    pthread_mutex_unlock(&h->lock);
    int err = window_write(h->r->fd, w);
    pthread_mutex_lock(&h->lock);
    if (err && !h->werr)
      h->werr = err;
    h->job = NULL;
    pthread_cond_broadcast(&h->main_cond);
  }
  pthread_mutex_unlock(&h->lock);
  return NULL;
}

static void helper_start(struct helper *h, shm_region *r, uint64_t wal_bytes, const struct mapped *maps,
                         size_t nmaps)
{
  h->mt = arena_active(r);
  const struct shm_memtable *m = arena_memtable(r, h->mt);
  h->r = r;
  h->off = m->arena_off;
  h->len = wal_bytes < m->capacity ? wal_bytes : m->capacity;
  h->maps = maps;
  h->nmaps = nmaps;
  pthread_mutex_init(&h->lock, NULL);
  pthread_cond_init(&h->main_cond, NULL);
  pthread_cond_init(&h->helper_cond, NULL);
  h->running = wal_bytes >= HELPER_MIN && pthread_create(&h->th, NULL, helper_main, h) == 0;
}

/* Wait until the helper is done with the pages (at once if there is none: h NULL). */
static void helper_wait_pages(struct helper *h)
{
  if (!h)
    return;
  pthread_mutex_lock(&h->lock);
  while (!h->prepared)
    pthread_cond_wait(&h->main_cond, &h->lock);
  pthread_mutex_unlock(&h->lock);
}

/* After the scan: stop verifying (the scan has judged every group) and
** wait until the helper serves, so that the last build has it. */
static void helper_serve_now(struct helper *h)
{
  if (!h)
    return;
  /* relaxed: a request; the wait below is for its answer */
  atomic_store_explicit(&h->ahead.stop, 1, memory_order_relaxed);
  pthread_mutex_lock(&h->lock);
  while (!h->serving)
    pthread_cond_wait(&h->main_cond, &h->lock);
  pthread_mutex_unlock(&h->lock);
}

/* Hand the helper two scratch ranges to make ready (touch_pages); 0 if it
** does not serve (yet), and the caller does it. The caller must not touch
** them before helper_touch_wait. */
static int helper_touch(struct helper *h, void *p1, size_t len1, void *p2, size_t len2)
{
  if (!h)
    return 0;
  assert(p1);   /* touch[0] NULL means "no request" */
  pthread_mutex_lock(&h->lock);
  int serving = h->serving;
  if (serving) {
    while (h->job || h->touch[0])
      pthread_cond_wait(&h->main_cond, &h->lock);
    h->touch[0] = p1;
    h->touch_len[0] = len1;
    h->touch[1] = p2;
    h->touch_len[1] = len2;
    pthread_cond_signal(&h->helper_cond);
  }
  pthread_mutex_unlock(&h->lock);
  return serving;
}

/* Wait until the ranges of helper_touch are ready, and ours: the mutex
** orders the helper's writes to them before ours. h NULL: at once. */
static void helper_touch_wait(struct helper *h)
{
  if (!h)
    return;
  pthread_mutex_lock(&h->lock);
  while (h->touch[0])
    pthread_cond_wait(&h->main_cond, &h->lock);
  pthread_mutex_unlock(&h->lock);
}

static void helper_stop(struct helper *h)
{
  if (h->running) {
    /* relaxed: a request; the join waits for its answer */
    atomic_store_explicit(&h->ahead.stop, 1, memory_order_relaxed);
    pthread_mutex_lock(&h->lock);
    h->stop = 1;
    pthread_cond_signal(&h->helper_cond);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->th, NULL);
  }
  h->running = 0;
  pthread_mutex_destroy(&h->lock);
  pthread_cond_destroy(&h->main_cond);
  pthread_cond_destroy(&h->helper_cond);
}

/* ---- the windows (see the comment before struct link_patch) ---------- */

static void note_error(struct stage *s, int err)
{
  if (err && !s->err)
    s->err = err;
}

static int window_alloc(struct window *w)
{
  if (!(w->buf = malloc(STAGE_BYTES)))
    return ENOMEM;
  w->cap = STAGE_BYTES;
  scratch_populate(w->buf, 0, w->cap);
  return 0;
}

/* Wait until the helper has no window in hand. */
static void wait_job_done(struct stage *s, struct helper *h)
{
  while (h->job)
    pthread_cond_wait(&h->main_cond, &h->lock);
  note_error(s, h->werr);
}

/* Send the window being laid out to the file (or to the helper, which
** writes it meanwhile) and start the next one where it ends. */
static void stage_flush(struct stage *s)
{
  struct window *w = &s->win[s->cur];
  uint64_t end = w->off + w->len;
  if (!w->len && !w->npatches)
    return;
  struct helper *h = s->helper;
  int handed = 0;
  if (h) {
    pthread_mutex_lock(&h->lock);
    if (h->serving) {
      wait_job_done(s, h);   /* it has the other window: ours is next */
      h->job = w;
      pthread_cond_signal(&h->helper_cond);
      handed = 1;
    }
    pthread_mutex_unlock(&h->lock);
  }
  if (handed) {
    CRASHPOINT("replay.window");   /* killed with a window in the helper's hands: tests/test_crash.c */
    s->cur ^= 1;
    w = &s->win[s->cur];
    if (!w->buf)
      note_error(s, window_alloc(w));
  } else {
    note_error(s, window_write(s->fd, w));
  }
  w->off = end;
  w->len = 0;
  w->npatches = 0;
}

/* Flush, and wait until every window is in the file. */
static int stage_drain(struct stage *s)
{
  stage_flush(s);
  struct helper *h = s->helper;
  if (h) {
    pthread_mutex_lock(&h->lock);
    wait_job_done(s, h);
    pthread_mutex_unlock(&h->lock);
  }
  return s->err;
}

/* Room for the n bytes (a multiple of 8) at region offset off, which
** follow whatever was laid out before in the window, or start a new one.
** NULL after any failure, or if they would pass s->limit (stage_fail says
** which). The last 8 bytes come zeroed: they hold an item's padding, which
** the file must get as zeros too. */
static void *stage_take(struct stage *s, uint64_t off, size_t n)
{
  if (!s->err && off + n > s->limit)
    s->err = EOVERFLOW;
  if (s->err)
    return NULL;
  struct window *w = &s->win[s->cur];
  if (off != w->off + w->len || w->len + n > w->cap) {
    stage_flush(s);
    w = &s->win[s->cur];
    w->off = off;
  }
  if (n > w->cap) {             /* a value bigger than the window */
    uint8_t *buf = realloc(w->buf, n);
    if (!buf) {
      note_error(s, ENOMEM);
      return NULL;
    }
    w->buf = buf;
    w->cap = n;
  }
  if (s->err)                   /* the flush, or the next window's buffer */
    return NULL;
  uint8_t *p = w->buf + w->len;
  w->len += n;
  memset(p + n - 8, 0, 8);
  return p;
}

/* sl_builder.link: a link field in the window is written there; one in an
** earlier window goes to the file after this one (which comes after it). */
static void stage_link(void *ctx, uint64_t off, shm_ref ref)
{
  struct stage *s = ctx;
  struct window *w = &s->win[s->cur];
  if (off >= w->off && off + sizeof ref <= w->off + w->len) {
    memcpy(w->buf + (off - w->off), &ref, sizeof ref);
    return;
  }
  if (w->npatches == w->patch_cap) {
    size_t cap = w->patch_cap ? 2 * w->patch_cap : 64;
    struct link_patch *p = realloc(w->patches, cap * sizeof *p);
    if (!p) {
      note_error(s, ENOMEM);
      return;
    }
    w->patches = p;
    w->patch_cap = cap;
  }
  w->patches[w->npatches++] = (struct link_patch){ off, ref };
}

/* The error for a failed layout or write of a chunk of total bytes. */
static int stage_fail(const struct stage *s, uint64_t total)
{
  if (s->err == ENOMEM)
    return sdb_fail(SOCHDB_NOMEM, "laying out a replayed memtable");
  if (s->err == EOVERFLOW)   /* a bug: the count and the layout disagree */
    return sdb_fail(SOCHDB_CORRUPT, "the replay's layout ran past the %llu bytes it counted",
                    (unsigned long long)total);
  return sdb_fail(SOCHDB_BUSY, "cannot write the replayed memtable into shared memory: %s", strerror(s->err));
}

static void stage_free(struct stage *s)
{
  for (int i = 0; i < 2; i++) {
    free(s->win[i].buf);
    free(s->win[i].patches);
  }
}

/* A log out of the page cache is read by a helper thread, ahead of the
** scan, with 1 MiB read()s: the page cache fills about twice as fast that way
** as from the scan's page faults on its mapping, even after a
** POSIX_FADV_WILLNEED (measured on this project's development disk: 44 ms
** against 70-95 ms for a 58 MiB log). Segments already cached (their first
** page reads without waiting, RWF_NOWAIT) are left alone: the reads would
** only copy them once more. Each segment is probed once: a probe that finds
** it cold starts the kernel's readahead of its first pages, so a second probe
** would soon call it cached and leave the rest of it cold. */
struct warmer {
  const char     *dir;
  const uint64_t *lsns;
  size_t          n;
  unsigned char  *cold;       /* segment i was out of the page cache when warm_start probed it */
  pthread_t       th;
  int             running;
};

/* Segment i's descriptor, or -1. Never a FIFO's: opening one would wait
** for a writer, with the region's creation lock and DIR/LOCK held
** (map_segments then refuses it with why). */
static int open_segment(const struct warmer *w, size_t i)
{
  char path[4300];
  wal_segment_path(path, sizeof path, w->dir, w->lsns[i]);
  int fd;
  size_t len;
  return sdb_open_regular(path, &fd, &len) == 0 ? fd : -1;
}

static void *warm_main(void *arg)
{
  struct warmer *w = arg;
  enum { CHUNK = 1 << 20 };
  char *buf = malloc(CHUNK);
  for (size_t i = 0; buf && i < w->n; i++) {
    int fd = w->cold[i] ? open_segment(w, i) : -1;
    while (fd >= 0 && read(fd, buf, CHUNK) > 0)
      CRASHPOINT("replay.warming");   /* killed on this thread: tests/test_crash.c */
    if (fd >= 0)
      close(fd);
  }
  free(buf);
  return NULL;
}

/* The log's size; starts the helper if a segment is not in the page cache. */
static uint64_t warm_start(struct warmer *w)
{
  uint64_t bytes = 0;
  int any_cold = 0;
  w->cold = calloc(w->n ? w->n : 1, 1);   /* NULL: no helper, the scan reads the log itself */
  for (size_t i = 0; i < w->n; i++) {
    int fd = open_segment(w, i);
    if (fd < 0)
      continue;
    char probe[4096];
    struct iovec iov = { probe, sizeof probe };
    int cold = w->cold && preadv2(fd, &iov, 1, 0, RWF_NOWAIT) < 0 && errno == EAGAIN;
    if (cold)
      w->cold[i] = 1;
    any_cold |= cold;
    struct stat st;
    bytes += fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    close(fd);
  }
  w->running = any_cold && bytes >= HELPER_MIN && pthread_create(&w->th, NULL, warm_main, w) == 0;
  return bytes;
}

static void warm_join(struct warmer *w)
{
  if (w->running)
    pthread_join(w->th, NULL);
  w->running = 0;
  free(w->cold);
  w->cold = NULL;
}

/* arena_alloc of total bytes in memtable mt, their pages backed first
** without mapping them into this process (arena_alloc would: a writer
** through the mapping wants them mapped; the build writes the file). */
static uint64_t reserve_chunk(shm_region *r, uint32_t mt, uint64_t total, int *err)
{
  /* relaxed: only this thread allocates in the region during the replay */
  uint64_t used = atomic_load_explicit(&arena_memtable(r, mt)->used, memory_order_relaxed);
  uint64_t at = (*err = arena_back(r, mt, used + total)) == 0 ? arena_alloc(r, mt, total) : 0;
  if (!at && !*err)
    *err = arena_last_reserve_error();
  return at;
}

#define PREFETCH_AHEAD 16   /* ops: how far build_chunk reads ahead of itself */

/* Build the chunk into the active memtable and start a new, empty chunk. */
static int build_chunk(struct replay *rp)
{
  if (!rp->n)
    return SOCHDB_OK;
  shm_region *r = rp->r;
  int rc = sort_chunk(rp);
  if (rc != SOCHDB_OK)
    return rc;
  const uint8_t *newkey = rp->newkey;
  uint64_t total = rp->unsorted ? 0 : rp->exact;   /* exact: one node per distinct key */
  for (size_t i = 0; rp->unsorted && i < rp->n; i++) {
    if (i + PREFETCH_AHEAD < rp->n)          /* keys in random order: hide the cache misses */
      __builtin_prefetch(op_at(rp, i + PREFETCH_AHEAD));
    const struct rop *o = op_at(rp, i);
    if (newkey[i])
      total += sl_node_bytes(o->height, o->klen);
    total += pad8(mv_version_bytes(o->vlen));
  }
  helper_wait_pages(rp->stage.helper);       /* its pages are ready: no two passes over them */
  uint32_t mt = arena_active(r);
  int err;
  uint64_t at = reserve_chunk(r, mt, total, &err);
  if (!at)    /* the chunk was sized for the room left: only a full tmpfs */
    return sdb_fail(SOCHDB_BUSY, "cannot reserve %llu bytes of shared memory to replay the WAL into: %s",
                    (unsigned long long)total, err ? strerror(err) : "the memtable has no room left");
  const uint64_t end_of_chunk = at + total;
  struct stage *st = &rp->stage;
  st->limit = end_of_chunk;
  struct sl_builder b;
  sl_build_begin(&b, r, mt);
  b.link = stage_link;
  b.link_ctx = st;
  for (size_t i = 0; i < rp->n;) {
    if (i + PREFETCH_AHEAD < rp->n) {        /* the op, then its key and value once the op is in, */
      __builtin_prefetch(op_at(rp, i + PREFETCH_AHEAD));
      const struct rop *soon = op_at(rp, i + PREFETCH_AHEAD / 2);
      __builtin_prefetch(soon->key);
      __builtin_prefetch(soon->key + soon->klen + soon->vlen / 2);
      /* then the hash bucket its node goes on, once the key is in: a
      ** random line of a 1 MiB array (the bucket's load was four fifths
      ** of sl_build_append, perf) */
      size_t next = i + PREFETCH_AHEAD / 4;
      if (newkey[next]) {
        const struct rop *o = op_at(rp, next);
        sl_prefetch_bucket(r, mt, sl_hash(o->key, o->klen), 1);
      }
    }
    const struct rop *first = op_at(rp, i);
    uint64_t node = at, node_bytes = sl_node_bytes(first->height, first->klen);
    size_t end = i + 1;                      /* the key's ops are op_at(i .. end - 1) */
    uint64_t newest = node + node_bytes;     /* versions oldest first: the newest heads the chain */
    for (; end < rp->n && !newkey[end]; end++)
      newest += pad8(mv_version_bytes(op_at(rp, end - 1)->vlen));
    void *bytes = stage_take(st, node, node_bytes);
    if (!bytes)
      return stage_fail(st, total);
    sl_build_append(&b, node, bytes, first->key, first->klen, first->height, newest);
    at += node_bytes;
    uint64_t older = 0;
    for (; i < end; i++) {
      const struct rop *o = op_at(rp, i);
      uint64_t vbytes = pad8(mv_version_bytes(o->vlen));
      struct mv_version *v = stage_take(st, at, vbytes);
      if (!v)
        return stage_fail(st, total);
      mv_version_fill(r, v, o->seq, node, rop_val(o), o->vlen, o->tombstone);
      v->older = shm_off_ref(r, older);
      older = at;
      at += vbytes;
    }
  }
  if (at != end_of_chunk)   /* what was counted must be what was laid out (more cannot be: st->limit) */
    return sdb_fail(SOCHDB_CORRUPT, "the replay laid out %llu bytes where it counted %llu",
                    (unsigned long long)(at - (end_of_chunk - total)), (unsigned long long)total);
  if (stage_drain(st))
    return stage_fail(st, total);
  arena_note_seq(r, mt, rp->ops[0].seq);     /* the chunk's oldest commit: the flusher keeps its log */
  rp->n = 0;
  rp->bytes = 0;
  CRASHPOINT("replay.built");
  return SOCHDB_OK;
}

/* The room left in the active memtable. */
static uint64_t room_left(const struct replay *rp)
{
  const struct shm_memtable *m = arena_memtable(rp->r, arena_active(rp->r));
  /* relaxed: only this process can reach the region during the replay */
  uint64_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
  return used < m->capacity ? m->capacity - used : 0;
}

/* What the sort needs to know of op o, the chunk's newest, learnt while its
** key is in the cache: a second pass over the chunk's keys reads the whole
** log again (15 ms of a 41 MiB replay here, against 2 for this). */
static void note_order(struct replay *rp, const struct rop *o)
{
  size_t i = (size_t)(o - rp->ops);
  uint64_t version = pad8(mv_version_bytes(o->vlen));
  if (i == 0) {
    rp->newkey[0] = 1;
    rp->unsorted = 0;
    rp->common = o->klen;
    rp->exact = sl_node_bytes(o->height, o->klen) + version;
    return;
  }
  int c = rop_cmp(o - 1, o);
  rp->unsorted |= c > 0;
  rp->newkey[i] = c < 0;                   /* meaningful while the keys come in order, as exact */
  rp->exact += (c < 0 ? sl_node_bytes(o->height, o->klen) : 0) + version;
  uint32_t m = o->klen < rp->common ? o->klen : rp->common, k = 0;
  const uint8_t *first = rp->ops[0].key;
  while (k < m && o->key[k] == first[k])
    k++;
  rp->common = k;
}

/* Keys the chunk holds already, remembered while its ops come out of key
** order (in order, note_order counts exactly). A key updated again needs a
** version but no second node: counting a node for every op sized a
** memtable of updates to long keys at 3% of what it holds, and a log the
** region held could not be replayed into it. A direct-mapped cache of one
** op per slot: a miss counts a node it may not need (safe); a hit is a key
** compared equal to an op of the chunk (an index below n is one). */
#define RECENT_SLOTS 65536u
struct recent {
  uint32_t hash;
  uint32_t op;     /* index in rp->ops + 1; 0 = none */
};

/* Whether the chunk holds key already; remembers the op at index i for it. */
static int key_in_chunk(struct replay *rp, const uint8_t *key, uint32_t klen, size_t i)
{
  if (!rp->recent && !(rp->recent = calloc(RECENT_SLOTS, sizeof *rp->recent)))
    return 0;   /* without the cache every op counts a node: larger, never wrong */
  uint64_t h = sl_hash(key, klen);
  struct recent *e = &rp->recent[h % RECENT_SLOTS];
  int seen = e->op && e->op <= rp->n && e->hash == (uint32_t)(h >> 32) && rp->ops[e->op - 1].klen == klen &&
             !memcmp(rp->ops[e->op - 1].key, key, klen);
  if (!seen)
    *e = (struct recent){ (uint32_t)(h >> 32), (uint32_t)(i + 1) };
  return seen;
}

static int add_op(struct replay *rp, uint64_t seq, const struct wal_op *op)
{
  uint8_t height = sl_random_height();
  uint64_t node = sl_node_bytes(height, op->klen), version = pad8(mv_version_bytes(op->vlen));
  int repeat = rp->n && rp->unsorted && rp->n < UINT32_MAX && key_in_chunk(rp, op->key, op->klen, rp->n);
  uint64_t need = (repeat ? 0 : node) + version;
  uint64_t counted = !rp->n ? 0 : rp->unsorted ? rp->bytes : rp->exact;   /* in order, exact is exact */
  if (counted + need > rp->room) {
    need = node + version;   /* the op starts the next chunk: its node is new there */
    /* A memtable is built once: the next chunk goes into a fresh one. */
    int rc = rp->n ? build_chunk(rp) : SOCHDB_OK;
    if (rc != SOCHDB_OK)
      return rc;
    const struct shm_memtable *m = arena_memtable(rp->r, arena_active(rp->r));
    int used = m->capacity - room_left(rp) > sl_head_bytes(m->capacity);
    if ((used && arena_rotate(rp->r, REPLAY_SLOT, arena_active(rp->r)) != SOCHDB_OK) ||
        need > (rp->room = room_left(rp))) {
      int err = arena_last_reserve_error();
      return err ? sdb_fail(SOCHDB_BUSY, "no shared memory to replay the WAL into (commit %llu): %s",
                            (unsigned long long)seq, strerror(err))
                 : sdb_fail(SOCHDB_BUSY, "the region is too small to replay the WAL (commit %llu does not fit); "
                            "open with a larger region_bytes", (unsigned long long)seq);
    }
  }
  if (rp->n == rp->cap) {
    size_t cap = rp->cap ? 2 * rp->cap : 65536;
    struct rop *ops = realloc(rp->ops, cap * sizeof *ops);
    if (ops)
      rp->ops = ops;
    uint8_t *newkey = realloc(rp->newkey, cap);
    if (newkey)
      rp->newkey = newkey;
    if (!ops || !newkey)
      return sdb_fail(SOCHDB_NOMEM, "collecting %zu WAL operations to replay", cap);
    rp->cap = cap;
  }
  if ((rp->n + 1) * sizeof *rp->ops > rp->ops_mapped) {
    size_t to = rp->ops_mapped + SCRATCH_STEP, cap = rp->cap * sizeof *rp->ops;
    to = to < cap ? to : cap;
    scratch_populate(rp->ops, rp->ops_mapped, to);
    scratch_populate(rp->newkey, rp->ops_mapped / sizeof *rp->ops, to / sizeof *rp->ops);
    rp->ops_mapped = to;
  }
  assert(op->val == op->key + op->klen && op->klen <= SOCHDB_MAX_KEY);   /* walfmt.c; the scan checked */
  struct rop *o = &rp->ops[rp->n];
  *o = (struct rop){ op->key, seq, op->vlen, (uint16_t)op->klen, height, op->kind == WAL_DEL };
  note_order(rp, o);
  rp->n++;
  rp->bytes += need;
  return SOCHDB_OK;
}

static int replay_record(void *ctx, const struct wal_record *rec)
{
  struct replay *rp = ctx;
  if (rec->type != WAL_COMMIT)
    return SOCHDB_OK;
  if (rec->seq <= rp->flushed)
    return SOCHDB_OK;     /* in SSTables already */
  int rc = wal_commit_follows(rec, rp->max_seq);
  if (rc != SOCHDB_OK)
    return rc;
  size_t pos = 0;
  struct wal_op op;
  while (wal_op_next(rec, &pos, &op)) {
    rc = add_op(rp, rec->seq, &op);
    if (rc != SOCHDB_OK)
      return rc;
  }
  rp->max_seq = rec->seq;
  return SOCHDB_OK;
}

/* Map every segment (maps[] zeroed, n long), for the helper to verify
** ahead of the scan. */
static int map_segments(const char *dir, const uint64_t *lsns, size_t n, struct mapped *maps)
{
  for (size_t i = 0; i < n; i++) {
    char path[4300];
    wal_segment_path(path, sizeof path, dir, lsns[i]);
    int rc = wal_map_segment(path, &maps[i].buf, &maps[i].len, &maps[i].fd);
    if (rc != SOCHDB_OK)
      return rc;
  }
  return SOCHDB_OK;
}

/* Scan the mapped segments into the replay, checking that they follow
** each other; *end: where the last one's whole groups end (its last_group
** 0 if it has none), for the daemon that adopts the log (durable.h). */
static int scan_segments(const char *dir, const uint64_t *lsns, size_t n, const struct mapped *maps,
                         struct wal_ahead *ahead, struct replay *rp, struct durable_log_end *end)
{
  uint64_t expect_lsn = n ? lsns[0] : 0;
  for (size_t i = 0; i < n; i++) {
    char path[4300];
    wal_segment_path(path, sizeof path, dir, lsns[i]);
    struct wal_scan_result res;
    int rc = wal_scan_buffer_ahead(maps[i].buf, maps[i].len, maps[i].fd, rp->r->hdr->db_id, replay_record, rp,
                                   &res, ahead, (uint32_t)i);
    if (rc != SOCHDB_OK)
      return rc;
    CRASHPOINT("replay.scanned");
    if (res.first_lsn != expect_lsn)
      return sdb_fail(SOCHDB_CORRUPT, "WAL segment %s starts at LSN %llu; the previous one ended at %llu", path,
                      (unsigned long long)res.first_lsn, (unsigned long long)expect_lsn);
    if (i == 0 && res.prev_seq > rp->flushed) {
      char gap[4600];
      wal_gap_message(gap, sizeof gap, path, res.prev_seq, rp->flushed);
      return sdb_fail(SOCHDB_CORRUPT, "%s", gap);
    }
    /* a reused file's tail holds its earlier use's bytes (walfmt.h): only
    ** the header of a torn group says this segment's last write was not
    ** whole, and the next segment was begun after it was */
    if (i + 1 < n && res.torn_write)
      return sdb_fail(SOCHDB_CORRUPT, "WAL segment %s has %llu damaged bytes at offset %llu but is not the last",
                      path, (unsigned long long)res.torn_bytes, (unsigned long long)res.end_offset);
    expect_lsn = res.next_lsn;
    *end = (struct durable_log_end){ lsns[i], res.last_group, res.end_offset, res.next_lsn, 0, 0 };
  }
  return SOCHDB_OK;
}

struct sortable {
  struct fl_file               f;
  const struct manifest_file *m;
};

static int cmp_sortable(const void *a, const void *b)
{
  const struct sortable *x = a, *y = b;
  if (x->f.level != y->f.level)
    return x->f.level < y->f.level ? -1 : 1;
  if (x->f.level == 0)   /* newest first */
    return (x->f.number < y->f.number) - (x->f.number > y->f.number);
  return key_order(x->m->smallest, x->m->smallest_len, y->m->smallest, y->m->smallest_len);
}

int sdb_state_file_list(const struct manifest_state *st, struct fl_file **out, uint32_t *n)
{
  size_t total = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    total += st->levels[l].n;
  if (total > FL_MAX_FILES)
    return sdb_fail(SOCHDB_BUSY, "%zu live SSTables; the region lists at most %u", total, FL_MAX_FILES);
  struct sortable *tmp = calloc(total ? total : 1, sizeof *tmp);
  *out = calloc(total ? total : 1, sizeof **out);
  if (!tmp || !*out) {
    free(tmp);
    free(*out);
    return sdb_fail(SOCHDB_NOMEM, "building the file list");
  }
  size_t k = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    for (size_t i = 0; i < st->levels[l].n; i++, k++) {
      const struct manifest_file *f = &st->levels[l].files[i];
      tmp[k] = (struct sortable){ { f->number, f->size, l, 0 }, f };
    }
  qsort(tmp, total, sizeof *tmp, cmp_sortable);
  for (size_t i = 0; i < total; i++)
    (*out)[i] = tmp[i].f;
  free(tmp);
  *n = (uint32_t)total;
  return SOCHDB_OK;
}

/* The MANIFEST's state into the new region: its file list, and what it
** says the log must reach (lp's flushed, the seq the replay starts after). */
static int load_files(shm_region *r, const char *dir, struct wal_promise *lp)
{
  struct manifest_state st;
  int torn = 0;
  int rc = manifest_read(dir, r->hdr->db_id, &st, &torn);
  *lp = (struct wal_promise){ 0 };
  if (rc == SOCHDB_NOTFOUND) {   /* a new database (no CURRENT, no SSTable: manifest.h) */
    manifest_state_free(&st);
    return SOCHDB_OK;
  }
  struct fl_file *files = NULL;
  uint32_t n = 0;
  if (rc == SOCHDB_OK)
    rc = sdb_state_file_list(&st, &files, &n);
  if (rc == SOCHDB_OK) {
    struct fl_list *l = fl_list_at(r, 0);   /* the current one of a fresh region */
    memcpy(l->files, files, n * sizeof *files);
    l->nfiles = n;
    fl_set_totals(r, files, n);
    lp->flushed = st.last_flushed_seq;
    const struct manifest_file *newest = manifest_state_newest(&st, &lp->nfiles);
    if (newest) {
      lp->sst_max = newest->max_seq;
      lp->sst_file = newest->number;
    }
    /* Every file this region's clients may cache blocks of is numbered below
    ** the MANIFEST's next_file_number: keep a daemon from handing such a
    ** number out again, even if the directory goes back to an older copy
    ** (shm/blockcache.h). Relaxed: the region is not yet visible. */
    atomic_store_explicit(&r->hdr->next_file_floor, st.next_file_number, memory_order_relaxed);
  }
  free(files);
  manifest_state_free(&st);
  return rc;
}

int sdb_replay_wal(shm_region *r, void *dir_arg)
{
  const char *dir = dir_arg;
  /* A daemon takes DIR/LOCK only once attached to a region, and we hold the
  ** new region's creation lock: so a lock holder now serves an older region
  ** (removed or stale) and may still be writing the log. We take the lock
  ** ourselves for the whole replay: the log is final while we read it, and a
  ** daemon of the old region that gets the lock afterwards finds its region
  ** replaced and leaves. */
  int lock_fd;
  int rc = sdb_daemon_lock_out(dir, &lock_fd);
  if (rc != SOCHDB_OK)
    return rc;
  struct wal_promise lp;
  rc = load_files(r, dir, &lp);
  uint64_t flushed = lp.flushed;
  uint64_t *lsns = NULL;
  size_t n = 0;
  if (rc == SOCHDB_OK)
    rc = wal_list_segments(dir, &lsns, &n);
  if (rc != SOCHDB_OK) {
    if (lock_fd >= 0)
      close(lock_fd);
    return rc;
  }
  struct helper hp = { 0 };
  struct durable_log_end log_end = { 0 };
  /* seq 1 is the empty database */
  struct replay rp = { .r = r, .max_seq = flushed > 1 ? flushed : 1, .flushed = flushed };
  rp.room = room_left(&rp);
  rp.stage = (struct stage){ .fd = r->fd };
  if (window_alloc(&rp.stage.win[0]) != 0)
    rc = sdb_fail(SOCHDB_NOMEM, "a buffer to replay the WAL through");
  struct warmer wm = { .dir = dir, .lsns = lsns, .n = n };
  uint64_t wal_bytes = warm_start(&wm);
  struct mapped *maps = n ? calloc(n, sizeof *maps) : NULL;
  if (n && !maps)
    rc = sdb_fail(SOCHDB_NOMEM, "replaying %zu WAL segments", n);
  for (size_t i = 0; maps && i < n; i++)
    maps[i].fd = -1;
  if (rc == SOCHDB_OK)
    rc = map_segments(dir, lsns, n, maps);
  /* after a failure only for its mutex: no thread, no pages for a region about to go */
  helper_start(&hp, r, rc == SOCHDB_OK ? wal_bytes : 0, maps, rc == SOCHDB_OK ? n : 0);
  rp.stage.helper = hp.running ? &hp : NULL;
  if (rc == SOCHDB_OK)
    rc = scan_segments(dir, lsns, n, maps, &hp.ahead, &rp, &log_end);
  if (rc == SOCHDB_OK) {
    lp.nsegments = n;
    lp.log_newest = rp.max_seq;
    rc = wal_check_reaches(&lp);
  }
  if (rc == SOCHDB_OK)
    helper_serve_now(rp.stage.helper);
  if (rc == SOCHDB_OK)
    rc = build_chunk(&rp);
  helper_stop(&hp);
  warm_join(&wm);
  for (size_t i = 0; maps && i < n; i++) {
    if (maps[i].buf)
      wal_unmap_segment(maps[i].buf, maps[i].len);
    if (maps[i].fd >= 0)
      close(maps[i].fd);
  }
  free(maps);
  free(rp.ops);
  free(rp.order);
  free(rp.newkey);
  free(rp.sort_a);
  free(rp.sort_b);
  free(rp.recent);
  stage_free(&rp.stage);
  free(lsns);
  if (lock_fd >= 0)
    close(lock_fd);
  if (rc != SOCHDB_OK)
    return rc;
  seqring_init(r, rp.max_seq);
  durable_init(r, rp.max_seq);
  /* The daemon that adopts the log need not read again what this scan read
  ** whole; it still syncs the segment, which no one may have synced yet. */
  if (log_end.last_group) {
    log_end.seq = rp.max_seq;
    /* a commit the scan read whole, or else the SSTables' newest (not the 1
    ** that max_seq starts from: no commit, so no bound) */
    log_end.logged_seq = rp.max_seq > rp.flushed ? rp.max_seq : rp.flushed;
    durable_note_log_end(r, &log_end);
  }
  return SOCHDB_OK;
}
