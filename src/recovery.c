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
** O(1) appends (sl_build_append), each key's versions newest first, all in
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

struct replay {
  shm_region *r;
  uint64_t    max_seq;
  uint64_t    flushed;        /* commits at or below it are in SSTables */
  struct rop *ops;            /* the chunk, in commit order */
  size_t      n, cap;
  size_t      ops_mapped;     /* bytes of ops populated (scratch_populate) */
  uint64_t    bytes;          /* what it may take in the arena (see above) */
  uint64_t    room;           /* what the active memtable had left when the chunk began */
  struct helper *helper;      /* the thread preparing the first memtable's pages */
  uint32_t   *order;          /* scratch of the sort: op indexes in key order */
  uint8_t    *newkey;         /* ... and whether each differs from the key before it */
  struct sort_ent *sort_a, *sort_b;
  size_t      sort_cap;
};

static const uint8_t *rop_val(const struct rop *o) { return o->key + o->klen; }

#define SCRATCH_STEP (1u << 20)   /* bytes of the op array mapped at a time */

/* Map bytes [from, to) of a scratch array (or of the region: populate)
** with one call rather than a page fault each: under this machine's hypervisor a fresh page costs about
** 10 us at its first write, and 5 once populated (the write still takes a
** lighter fault there). A hint: whatever fails is faulted in as before. */
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

/* rp->order = the chunk's op indexes sorted by (key, commit order). Already
** sorted input (keys that only grow, the common case) costs one pass; else
** an LSD radix sort on the 8 bytes after the chunk's common key prefix (it is
** stable, so commit order holds among equal prefixes), then the runs of equal
** prefix are sorted by whole key. */
static int sort_chunk(struct replay *rp)
{
  size_t n = rp->n;
  const struct rop *ops = rp->ops;
  if (n > rp->sort_cap) {
    size_t cap = n > 2 * rp->sort_cap ? n : 2 * rp->sort_cap;
    uint32_t *order = realloc(rp->order, cap * sizeof *order);
    if (order)
      rp->order = order;
    uint8_t *newkey = realloc(rp->newkey, cap);
    if (newkey)
      rp->newkey = newkey;
    struct sort_ent *a = realloc(rp->sort_a, cap * sizeof *a);
    if (a)
      rp->sort_a = a;
    struct sort_ent *b = realloc(rp->sort_b, cap * sizeof *b);
    if (b)
      rp->sort_b = b;
    if (!order || !newkey || !a || !b)
      return sdb_fail(SOCHDB_NOMEM, "sorting %zu WAL operations to replay", n);
    rp->sort_cap = cap;
  }
  scratch_populate(rp->order, 0, n * sizeof *rp->order);   /* pages populated before cost little more */
  scratch_populate(rp->newkey, 0, n);
  uint32_t *order = rp->order;
  uint8_t *newkey = rp->newkey;
  size_t i = 1;
  newkey[0] = 1;
  for (int c; i < n && (c = rop_cmp(&ops[i - 1], &ops[i])) <= 0; i++)
    newkey[i] = c < 0;
  if (i >= n) {
    for (i = 0; i < n; i++)
      order[i] = (uint32_t)i;
    return SOCHDB_OK;
  }
  uint32_t common = ops[0].klen;            /* the longest prefix every key shares */
  for (i = 1; i < n && common; i++) {
    uint32_t m = ops[i].klen < common ? ops[i].klen : common, k = 0;
    while (k < m && ops[i].key[k] == ops[0].key[k])
      k++;
    common = k;
  }
  struct sort_ent *a = rp->sort_a, *b = rp->sort_b;
  scratch_populate(a, 0, n * sizeof *a);
  scratch_populate(b, 0, n * sizeof *b);
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
};

/* The replay's helper thread. First it makes the first memtable's pages
** ready while the WAL is read and sorted: on tmpfs, backing (fallocate),
** mapping (MADV_POPULATE_WRITE) and first writing (touch) 64 MiB of fresh
** 4 KiB pages costs about as much as the rest of a replay, and both can run
** at once on two cores. At most as many bytes as the log holds are
** prepared, so a short log does not make a whole arena resident. Failures
** are ignored: arena_alloc reserves, and writes fault in, whatever the
** helper did not. Then it verifies the log's group checksums ahead of the
** scan (wal_verify_ahead), which spares the scan most of its reading where
** the pages were quick to prepare (2 MiB ones take a few milliseconds). */
struct helper {
  shm_region *r;
  uint32_t    mt;             /* the memtable whose start it prepares */
  uint64_t    off, len;       /* the region bytes to prepare */
  const struct mapped *maps;  /* the log's segments, to verify */
  size_t      nmaps;
  struct wal_ahead ahead;
  pthread_mutex_t lock;
  pthread_cond_t  prepared_cond;
  _Atomic int populated;      /* the pages are backed and mapped: anyone may touch them */
  _Atomic uint64_t next_chunk; /* the next TOUCH_CHUNK to touch (touch_chunks) */
  int         touching;       /* the main thread is touching chunks (under lock) */
  int         prepared;       /* done with the pages (under lock) */
  int         ready;          /* they are reserved and mapped (read after helper_wait_pages) */
  pthread_t   th;
  int         running;
};

#define HELPER_MIN (4u << 20)   /* log bytes below which a helper thread is not worth starting */

static void populate(const shm_region *r, uint64_t off, uint64_t len)
{
  scratch_populate(shm_at(r, off), 0, len);   /* the same call, on region pages */
}

/* Under a hypervisor that shadows the guest's page tables (a PVM guest, say)
** a page mapped by MADV_POPULATE_WRITE still faults at its first write from
** user space, and the builder would take those faults one by one: the
** helper takes them, with a write to each page that changes nothing (the
** start of the arena already holds the skiplist's head), TOUCH_CHUNK bytes
** at a time, and a main thread that finished its scan and sort first takes
** chunks too (touch_chunks). Nobody else writes these pages meanwhile: the
** region is not published yet, and the builder starts after
** helper_wait_pages. */
#define TOUCH_CHUNK (256u << 10)

static void touch(const shm_region *r, uint64_t off, uint64_t len)
{
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint8_t *p = shm_at(r, off);
  for (uint64_t i = 0; i < len; i += page)
    __atomic_fetch_or(p + i, 0, __ATOMIC_RELAXED);   /* relaxed: the mutex orders it */
}

/* Touch chunks of the prepared range until none is left unclaimed. relaxed:
** a claim orders nothing; the pages' order comes from the mutex. */
static void touch_chunks(struct helper *h)
{
  for (;;) {
    uint64_t at = atomic_fetch_add_explicit(&h->next_chunk, 1, memory_order_relaxed) * TOUCH_CHUNK;
    if (at >= h->len)
      return;
    touch(h->r, h->off + at, h->len - at < TOUCH_CHUNK ? h->len - at : TOUCH_CHUNK);
  }
}

static void *helper_main(void *arg)
{
  struct helper *h = arg;
  int ready = shm_reserve(h->r, h->off, h->len) == 0;
  if (ready) {
    populate(h->r, h->off, h->len);
    /* release: a main thread that sees it (acquire) may touch the pages,
    ** which are backed now (touching a hole of a full tmpfs is a SIGBUS) */
    atomic_store_explicit(&h->populated, 1, memory_order_release);
    touch_chunks(h);
  }
  pthread_mutex_lock(&h->lock);
  while (ready && h->touching)   /* the main thread's last chunk */
    pthread_cond_wait(&h->prepared_cond, &h->lock);
  if (ready)
    arena_note_reserved(h->r, h->mt, h->len);   /* arena_alloc need not walk them again */
  h->ready = ready;
  h->prepared = 1;
  pthread_cond_signal(&h->prepared_cond);
  pthread_mutex_unlock(&h->lock);
  for (size_t i = 0; i < h->nmaps; i++)
    wal_verify_ahead(&h->ahead, (uint32_t)i, h->maps[i].buf, h->maps[i].len);
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
  pthread_cond_init(&h->prepared_cond, NULL);
  h->running = wal_bytes >= HELPER_MIN && pthread_create(&h->th, NULL, helper_main, h) == 0;
}

/* Wait until the helper is done with the pages (at once if there is none). */
static void helper_wait_pages(struct helper *h)
{
  if (!h->running)
    return;
  pthread_mutex_lock(&h->lock);
  int help = !h->prepared && atomic_load_explicit(&h->populated, memory_order_acquire);
  h->touching = help;
  pthread_mutex_unlock(&h->lock);
  if (help) {   /* rather than wait idle, share what is left of the touching */
    touch_chunks(h);
    pthread_mutex_lock(&h->lock);
    h->touching = 0;
    pthread_cond_broadcast(&h->prepared_cond);
    pthread_mutex_unlock(&h->lock);
  }
  pthread_mutex_lock(&h->lock);
  while (!h->prepared)
    pthread_cond_wait(&h->prepared_cond, &h->lock);
  pthread_mutex_unlock(&h->lock);
}

static void helper_stop(struct helper *h)
{
  if (h->running) {
    /* relaxed: a request; the join waits for its answer */
    atomic_store_explicit(&h->ahead.stop, 1, memory_order_relaxed);
    pthread_join(h->th, NULL);
  }
  h->running = 0;
  pthread_mutex_destroy(&h->lock);
  pthread_cond_destroy(&h->prepared_cond);
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

static int open_segment(const struct warmer *w, size_t i)
{
  char path[4300];
  wal_segment_path(path, sizeof path, w->dir, w->lsns[i]);
  return open(path, O_RDONLY | O_CLOEXEC);
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
  const struct rop *ops = rp->ops;
  const uint32_t *order = rp->order;
  const uint8_t *newkey = rp->newkey;
  uint64_t total = 0;                        /* exact: one node per distinct key */
  for (size_t i = 0; i < rp->n; i++) {
    if (i + PREFETCH_AHEAD < rp->n)          /* keys in random order: hide the cache misses */
      __builtin_prefetch(&ops[order[i + PREFETCH_AHEAD]]);
    const struct rop *o = &ops[order[i]];
    if (newkey[i])
      total += sl_node_bytes(o->height, o->klen);
    total += pad8(mv_version_bytes(o->vlen));
  }
  helper_wait_pages(rp->helper);             /* its pages are ready: no two passes over them */
  uint32_t mt = arena_active(r);
  uint64_t at = arena_alloc(r, mt, total);
  if (!at)    /* the chunk was sized for the room left: only a full tmpfs */
    return sdb_fail(SOCHDB_BUSY, "cannot reserve %llu bytes of shared memory to replay the WAL into: %s",
                    (unsigned long long)total, strerror(arena_last_reserve_error()));
  /* arena_alloc maps what it reserves, and the helper what it prepared; only
  ** the start of an arena reserved when the region was made may be unmapped
  ** still: map it with one call rather than a page fault each. */
  const struct shm_memtable *m = arena_memtable(r, mt);
  uint64_t first_end = m->arena_off + arena_first_reserve(m->capacity);
  if (!(rp->helper->ready && rp->helper->mt == mt) && at < first_end)
    populate(r, at, (at + total < first_end ? at + total : first_end) - at);
  struct sl_builder b;
  sl_build_begin(&b, r, mt);
  for (size_t i = 0; i < rp->n;) {
    if (i + PREFETCH_AHEAD < rp->n) {        /* the op, then its key and value once the op is in */
      __builtin_prefetch(&ops[order[i + PREFETCH_AHEAD]]);
      const struct rop *soon = &ops[order[i + PREFETCH_AHEAD / 2]];
      __builtin_prefetch(soon->key);
      __builtin_prefetch(soon->key + soon->klen + soon->vlen / 2);
    }
    const struct rop *first = &ops[order[i]];
    uint64_t node = at;
    at += sl_node_bytes(first->height, first->klen);
    uint64_t newest = 0;
    do {                                     /* versions oldest first: the newest heads the chain */
      const struct rop *o = &ops[order[i]];
      struct mv_version *v = shm_at(r, at);
      mv_version_fill(r, v, o->seq, node, rop_val(o), o->vlen, o->tombstone);
      v->older = shm_off_ref(r, newest);
      newest = at;
      at += pad8(mv_version_bytes(o->vlen));
      i++;
    } while (i < rp->n && !newkey[i]);
    sl_build_append(&b, node, first->key, first->klen, first->height, newest);
  }
  arena_note_seq(r, mt, ops[0].seq);         /* the chunk's oldest commit: the flusher keeps its log */
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

static int add_op(struct replay *rp, uint64_t seq, const struct wal_op *op)
{
  uint8_t height = sl_random_height();
  uint64_t need = sl_node_bytes(height, op->klen) + pad8(mv_version_bytes(op->vlen));
  if (rp->bytes + need > rp->room) {
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
    if (!ops)
      return sdb_fail(SOCHDB_NOMEM, "collecting %zu WAL operations to replay", cap);
    rp->ops = ops;
    rp->cap = cap;
  }
  if ((rp->n + 1) * sizeof *rp->ops > rp->ops_mapped) {
    size_t to = rp->ops_mapped + SCRATCH_STEP, cap = rp->cap * sizeof *rp->ops;
    scratch_populate(rp->ops, rp->ops_mapped, to < cap ? to : cap);
    rp->ops_mapped = to < cap ? to : cap;
  }
  assert(op->val == op->key + op->klen && op->klen <= SOCHDB_MAX_KEY);   /* walfmt.c; the scan checked */
  rp->ops[rp->n++] = (struct rop){ op->key, seq, op->vlen, (uint16_t)op->klen, height, op->kind == WAL_DEL };
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
  if (rec->seq > MV_MAX_SEQ)   /* a version could not hold it (mvcc.h) */
    return sdb_fail(SOCHDB_CORRUPT, "WAL commit at LSN %llu has the impossible sequence %llu",
                    (unsigned long long)rec->lsn, (unsigned long long)rec->seq);
  if (rec->seq <= rp->max_seq)
    return sdb_fail(SOCHDB_CORRUPT, "WAL commit %llu at LSN %llu is not after commit %llu",
                    (unsigned long long)rec->seq, (unsigned long long)rec->lsn, (unsigned long long)rp->max_seq);
  size_t pos = 0;
  struct wal_op op;
  while (wal_op_next(rec, &pos, &op)) {
    int rc = add_op(rp, rec->seq, &op);
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
    int rc = wal_map_segment(path, &maps[i].buf, &maps[i].len);
    if (rc != SOCHDB_OK)
      return rc;
  }
  return SOCHDB_OK;
}

/* Scan the mapped segments into the replay, checking that they follow each other. */
static int scan_segments(const char *dir, const uint64_t *lsns, size_t n, const struct mapped *maps,
                         struct replay *rp)
{
  uint64_t expect_lsn = n ? lsns[0] : 0;
  for (size_t i = 0; i < n; i++) {
    char path[4300];
    wal_segment_path(path, sizeof path, dir, lsns[i]);
    struct wal_scan_result res;
    int rc = wal_scan_buffer_ahead(maps[i].buf, maps[i].len, rp->r->hdr->db_id, replay_record, rp, &res,
                                   &rp->helper->ahead, (uint32_t)i);
    if (rc != SOCHDB_OK)
      return rc;
    CRASHPOINT("replay.scanned");
    if (res.first_lsn != expect_lsn)
      return sdb_fail(SOCHDB_CORRUPT, "WAL segment %s starts at LSN %llu; the previous one ended at %llu", path,
                      (unsigned long long)res.first_lsn, (unsigned long long)expect_lsn);
    if (res.torn_bytes && i + 1 < n)
      return sdb_fail(SOCHDB_CORRUPT, "WAL segment %s has %llu damaged bytes at offset %llu but is not the last",
                      path, (unsigned long long)res.torn_bytes, (unsigned long long)res.end_offset);
    expect_lsn = res.next_lsn;
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

/* A directory without CURRENT is a new database only if it holds no SSTable:
** otherwise its MANIFEST was lost, and guessing would lose data silently. */
static int check_no_tables(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d)
    return sdb_fail_errno("opendir %s", dir);
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d))) {
    size_t len = strlen(e->d_name);
    found = (len > 4 && !strcmp(e->d_name + len - 4, ".sst")) || !strncmp(e->d_name, "MANIFEST-", 9);
  }
  closedir(d);
  return found ? sdb_fail(SOCHDB_CORRUPT, "%s holds SSTables or a MANIFEST but no CURRENT file", dir) : SOCHDB_OK;
}

/* The MANIFEST's state into the new region: its file list, and the seq the
** log replay starts after. */
static int load_files(shm_region *r, const char *dir, uint64_t *flushed)
{
  struct manifest_state st;
  int torn = 0;
  int rc = manifest_read(dir, r->hdr->db_id, &st, &torn);
  *flushed = 0;
  if (rc == SOCHDB_NOTFOUND) {
    manifest_state_free(&st);
    return check_no_tables(dir);
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
    *flushed = st.last_flushed_seq;
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
  uint64_t flushed = 0;
  rc = load_files(r, dir, &flushed);
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
  /* seq 1 is the empty database */
  struct replay rp = { .r = r, .max_seq = flushed > 1 ? flushed : 1, .flushed = flushed, .helper = &hp };
  rp.room = room_left(&rp);
  struct warmer wm = { .dir = dir, .lsns = lsns, .n = n };
  uint64_t wal_bytes = warm_start(&wm);
  struct mapped *maps = n ? calloc(n, sizeof *maps) : NULL;
  if (n && !maps)
    rc = sdb_fail(SOCHDB_NOMEM, "replaying %zu WAL segments", n);
  if (rc == SOCHDB_OK)
    rc = map_segments(dir, lsns, n, maps);
  /* after a failure only for its mutex: no thread, no pages for a region about to go */
  helper_start(&hp, r, rc == SOCHDB_OK ? wal_bytes : 0, maps, rc == SOCHDB_OK ? n : 0);
  if (rc == SOCHDB_OK)
    rc = scan_segments(dir, lsns, n, maps, &rp);
  if (rc == SOCHDB_OK)
    rc = build_chunk(&rp);
  helper_stop(&hp);
  warm_join(&wm);
  for (size_t i = 0; maps && i < n; i++)
    if (maps[i].buf)
      wal_unmap_segment(maps[i].buf, maps[i].len);
  free(maps);
  free(rp.ops);
  free(rp.order);
  free(rp.newkey);
  free(rp.sort_a);
  free(rp.sort_b);
  free(lsns);
  if (lock_fd >= 0)
    close(lock_fd);
  if (rc != SOCHDB_OK)
    return rc;
  seqring_init(r, rp.max_seq);
  durable_init(r, rp.max_seq);
  return SOCHDB_OK;
}
