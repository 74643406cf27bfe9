/*
** tables.c — one process's mapped SSTables (see tables.h).
*/
#include "internal.h"

#include "blockcache.h"
#include "filenames.h"
#include "error.h"
#include "filelist.h"
#include "fsutil.h"
#include "skiplist.h"
#include "tables.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <urcu-bp.h>

/* ---- the read side of the process's set ----------------------------------- */

/* liburcu is not built for ThreadSanitizer, which therefore cannot see that
** synchronize_rcu waits for every read-side section begun before it. Under
** TSan, a process-wide rwlock mirrors the grace period in a form it
** understands: sections take it shared, a grace period's end takes it
** exclusively once. Elsewhere these are plain urcu calls. */
#if defined(__SANITIZE_THREAD__)
static pthread_rwlock_t tsan_grace = PTHREAD_RWLOCK_INITIALIZER;
#define GRACE_SECTION_BEGIN() pthread_rwlock_rdlock(&tsan_grace)
#define GRACE_SECTION_END()   pthread_rwlock_unlock(&tsan_grace)
#define GRACE_PERIOD_END()    (pthread_rwlock_wrlock(&tsan_grace), pthread_rwlock_unlock(&tsan_grace))
#else
#define GRACE_SECTION_BEGIN() ((void)0)
#define GRACE_SECTION_END()   ((void)0)
#define GRACE_PERIOD_END()    ((void)0)
#endif

static void read_begin(void)
{
  urcu_bp_read_lock();
  GRACE_SECTION_BEGIN();
}

static void read_end(void)
{
  GRACE_SECTION_END();
  urcu_bp_read_unlock();
}

static void wait_for_readers(void)
{
  urcu_bp_synchronize_rcu();
  GRACE_PERIOD_END();
}

/* ---- one table ------------------------------------------------------------ */

static int cache_lookup(void *ctx, uint64_t off, uint8_t *dst, size_t cap, size_t *len)
{
  struct sdb_table_cache *c = ctx;
  return bc_lookup_counted(c->area, c->number, off, dst, cap, len, c->hits, c->misses);
}

static void cache_insert(void *ctx, uint64_t off, const uint8_t *data, size_t len)
{
  struct sdb_table_cache *c = ctx;
  bc_insert(c->area, c->number, off, data, len, c->owner, &c->backing);
}

struct cache_src {              /* sst_block_src over a block cache read in pieces */
  struct sst_block_src src;     /* first: copy gets it back as this */
  const struct bc_read *rd;
  uint8_t              *dst;
};

static void cache_copy(const struct sst_block_src *src, size_t from, size_t to)
{
  const struct cache_src *cs = (const struct cache_src *)src;
  bc_read_copy(cs->rd, from, to, cs->dst);
}

static int cache_peek(void *ctx, uint64_t off, uint8_t *dst, size_t cap, sst_block_reader read, void *arg,
                      int *read_rc)
{
  struct sdb_table_cache *c = ctx;
  struct bc_read rd;
  if (!bc_read_begin(c->area, c->number, off, cap, &rd, c->hits, c->misses))
    return 0;
  struct cache_src cs = { { cache_copy }, &rd, dst };
  *read_rc = read(arg, &cs.src, rd.len);
  return bc_read_end(&rd);
}

static void cache_prefetch(void *ctx, uint64_t off, size_t bytes)
{
  struct sdb_table_cache *c = ctx;
  bc_prefetch_end(c->area, c->number, off, bytes);
}

static int reserve_in_region(void *ctx, void *addr, size_t len)
{
  const shm_region *r = ctx;
  return shm_reserve(r, shm_off(r, addr), len);
}

static int copy_key(uint8_t **dst, uint32_t *dlen, const uint8_t *key, size_t klen)
{
  if (!(*dst = malloc(klen ? klen : 1)))
    return sdb_fail(SOCHDB_NOMEM, "copying a key bound");
  memcpy(*dst, key, klen);
  *dlen = (uint32_t)klen;
  return SOCHDB_OK;
}

/* The first and the last user key (the index's last key is the last entry's).
** The first is read from the first block; if that block is damaged, the
** empty key stands in for it (below every key: keys are 1 byte or more), so
** that the file is still searched for every key up to its last. A get or a
** scan that needs the damaged block then reports it, as for damage in any
** other block, and the other blocks' keys stay readable; LevelDB's table
** open, which reads no data block, behaves the same. */
static int find_bounds(struct sdb_table *t)
{
  if (!t->r.nblocks)
    return SOCHDB_OK;
  struct sst_iter it;
  sst_iter_init(&it, &t->r);
  struct sst_entry e;
  int rc = sst_iter_next(&it, &e);
  if (rc == SOCHDB_OK)
    rc = copy_key(&t->smallest, &t->slen, e.key, e.klen);
  else if (rc == SOCHDB_CORRUPT)
    rc = copy_key(&t->smallest, &t->slen, (const uint8_t *)"", 0);
  sst_iter_free(&it);
  if (rc != SOCHDB_OK)
    return rc == SOCHDB_NOTFOUND ? sdb_fail(SOCHDB_CORRUPT, "SSTable %llu has an index but no entries",
                                            (unsigned long long)t->number) : rc;
  const struct sst_index_entry *last = &t->r.index[t->r.nblocks - 1];
  return copy_key(&t->largest, &t->llen, t->r.keys + last->key_off, last->klen);
}

static int map_file(struct sdb_table *t, const char *dir)
{
  char path[4200];
  sst_file_path(path, sizeof path, dir, t->number);
  const uint8_t *map;
  size_t len;
  int e = sdb_map_file(path, &map, &len, NULL);
  int rc = SOCHDB_OK;
  if (e) {
    errno = e;
    rc = e == ENOENT ? sdb_fail(SOCHDB_CORRUPT, "open SSTable %s: %s", path, strerror(e))
                     : sdb_fail_errno("map SSTable %s", path);
  } else if (len == 0) {
    rc = sdb_fail(SOCHDB_CORRUPT, "SSTable %s is empty", path);
  } else {
    t->map = map;
    t->len = len;
  }
  if (rc == SOCHDB_OK)
    rc = sst_open(t->map, t->len, &t->r);
  if (rc != SOCHDB_OK && t->map && rc != SOCHDB_NOMEM)
    rc = sdb_fail_prefix(rc, "SSTable %s", path);
  return rc;
}

/* How long a set holding a file that failed to open serves before the next
** transaction builds it again (and retries that file). */
#define TABLE_RETRY_NS 1000000000ull

static struct sdb_table *table_open(sochdb *db, const struct fl_file *f)
{
  struct sdb_table *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->number = f->number;
  t->level = f->level;
  atomic_init(&t->refs, 1);
  t->open_rc = map_file(t, db->dir);
  if (t->open_rc == SOCHDB_OK) {
    struct shm_header *h = db->region.hdr;
    struct shm_slot_stats *own = &shm_slot_at(&db->region, db->slot)->stats;
    t->cache = (struct sdb_table_cache){ h->cache_off ? shm_at(&db->region, h->cache_off) : NULL, t->number,
                                         db->slot + 1, { reserve_in_region, &db->region },
                                         &own->cache_hits, &own->cache_misses };
    if (t->cache.area) {
      struct sst_block_cache hook = { cache_lookup, cache_insert, cache_peek, cache_prefetch, &t->cache };
      sst_set_cache(&t->r, &hook);
    }
    t->open_rc = find_bounds(t);
    if (t->open_rc != SOCHDB_OK && t->open_rc != SOCHDB_NOMEM)
      sdb_fail_prefix(t->open_rc, "SSTable %06llu", (unsigned long long)t->number);   /* kept in open_err: name the file */
  }
  if (t->open_rc != SOCHDB_OK)
    snprintf(t->open_err, sizeof t->open_err, "%s", sochdb_last_error());
  return t;
}

static void table_unref(struct sdb_table *t)
{
  /* acq_rel: the last holder sees every use before it frees */
  if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
    return;
  sst_close(&t->r);   /* a reader that never opened is all zeros: nothing to free */
  if (t->map)
    sdb_unmap_file(t->map, t->len);
  free(t->smallest);
  free(t->largest);
  free(t);
}

/* ---- table sets ---------------------------------------------------------- */

static void set_free(struct sdb_tables *ts)
{
  for (uint32_t i = 0; i < ts->n; i++)
    if (ts->files[i])
      table_unref(ts->files[i]);
  free(ts->files);
  free(ts);
}

void sdb_tables_release(struct sdb_tables *ts)
{
  /* acq_rel: every user's reads of the set happen-before its free */
  if (ts && atomic_fetch_sub_explicit(&ts->refs, 1, memory_order_acq_rel) == 1)
    set_free(ts);
}

/* A file that could not be opened (too many mappings, no memory, a file
** missing that is restored) is opened again by the next set, never reused:
** else one passing failure would fail its reads for as long as it lives. */
static struct sdb_table *reuse(const struct sdb_tables *old, const struct fl_file *f)
{
  for (uint32_t i = 0; old && i < old->n; i++) {
    struct sdb_table *t = old->files[i];
    if (t->number == f->number && t->level == f->level && t->open_rc == SOCHDB_OK) {
      atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);   /* we hold old: it cannot go */
      return t;
    }
  }
  return NULL;
}

/* A set mirroring list l (protected by our hazard), reusing old's mappings. */
static struct sdb_tables *set_build(sochdb *db, const struct fl_list *l, const struct sdb_tables *old)
{
  struct sdb_tables *ts = calloc(1, sizeof *ts);
  if (!ts || !(ts->files = calloc(l->nfiles ? l->nfiles : 1, sizeof *ts->files))) {
    free(ts);
    return NULL;
  }
  ts->id = atomic_load_explicit(&l->id, memory_order_relaxed);   /* immutable while we hold the hazard */
  atomic_init(&ts->refs, 1);
  for (uint32_t i = 0; i < l->nfiles; i++) {
    const struct fl_file *f = &l->files[i];
    struct sdb_table *t = reuse(old, f);
    if (!t && !(t = table_open(db, f))) {
      set_free(ts);
      return NULL;
    }
    ts->files[ts->n++] = t;
    ts->failed |= t->open_rc != SOCHDB_OK;
  }
  if (ts->failed)
    ts->retry_ns = sdb_monotonic_ns() + TABLE_RETRY_NS;
  uint32_t at = 0;
  for (unsigned lv = 0; lv <= SDB_LEVELS; lv++) {
    while (at < ts->n && ts->files[at]->level < lv)
      at++;
    ts->level_start[lv] = lv == SDB_LEVELS ? ts->n : at;
  }
  /* list order: the deepest level last; clamped like level_start */
  ts->levels = ts->n ? (ts->files[ts->n - 1]->level < SDB_LEVELS ? ts->files[ts->n - 1]->level + 1 : SDB_LEVELS) : 0;
  return ts;
}

/* The process's current set, referenced for the caller, if it mirrors the
** list with this id; else NULL. Under urcu: a builder that replaces the set
** waits for us before it drops its "current" reference. */
static struct sdb_tables *take_current(sochdb *db, uint64_t id)
{
  read_begin();
  /* acquire: the set's contents were written before it was published */
  struct sdb_tables *ts = atomic_load_explicit(&db->tables, memory_order_acquire);
  if (ts && ts->id == id && !ts->failed)
    atomic_fetch_add_explicit(&ts->refs, 1, memory_order_relaxed);   /* its "current" ref pins it */
  else
    ts = NULL;
  read_end();
  return ts;
}

static int acquire_set(sochdb *db, const struct fl_list *l, struct sdb_tables **out)
{
  uint64_t id = atomic_load_explicit(&l->id, memory_order_relaxed);   /* immutable under our hazard */
  struct sdb_tables *ts = take_current(db, id);
  if (ts) {
    *out = ts;
    return SOCHDB_OK;
  }
  pthread_mutex_lock(&db->tables_lock);
  struct sdb_tables *old = atomic_load_explicit(&db->tables, memory_order_relaxed);
  if (old && (old->id > id || (old->id == id && !(old->failed && sdb_monotonic_ns() >= old->retry_ns)))) {
    ts = old;       /* another thread built it, or a newer one, meanwhile; or it failed too recently */
  } else {
    ts = set_build(db, l, old);
    if (!ts) {
      pthread_mutex_unlock(&db->tables_lock);
      return sdb_fail(SOCHDB_NOMEM, "mapping %u SSTables", l->nfiles);
    }
    /* release: readers that load the pointer see the set built */
    atomic_store_explicit(&db->tables, ts, memory_order_release);
    if (old) {
      wait_for_readers();   /* no reader can still be about to take a ref on old */
      sdb_tables_release(old);
    }
  }
  atomic_fetch_add_explicit(&ts->refs, 1, memory_order_relaxed);
  pthread_mutex_unlock(&db->tables_lock);
  *out = ts;
  return SOCHDB_OK;
}

/* Mostly the process's set is current already, and only the list's id is
** read, with no hazard and no fence (filelist.h, fl_current_id). Else the
** list is read, and its files opened, under the hazard; then the hazard
** goes: the set holds its own mappings, which stay valid when the daemon
** unlinks a file, so a long transaction never pins a list. */
int sdb_tables_acquire(sochdb *db, _Atomic uint64_t *hazard, struct sdb_tables **out)
{
  if ((*out = take_current(db, fl_current_id(&db->region))))
    return SOCHDB_OK;
  int rc = acquire_set(db, fl_protect(&db->region, hazard), out);
  /* release: our reads of the list happen-before the daemon reuses it */
  atomic_store_explicit(hazard, 0, memory_order_release);
  return rc;
}

void sdb_tables_close(sochdb *db)
{
  struct sdb_tables *ts = atomic_exchange_explicit(&db->tables, NULL, memory_order_acq_rel);
  if (ts) {
    wait_for_readers();
    sdb_tables_release(ts);
  }
}

/* ---- lookups ------------------------------------------------------------- */

int sdb_table_may_hold(const struct sdb_table *t, const void *key, size_t klen)
{
  if (t->open_rc != SOCHDB_OK)
    return 1;
  if (!t->smallest)
    return 0;   /* an empty table */
  return sl_compare(key, (uint32_t)klen, t->smallest, t->slen) >= 0 &&
         sl_compare(key, (uint32_t)klen, t->largest, t->llen) <= 0;
}

static int table_get(const struct sdb_table *t, const void *key, size_t klen, uint64_t snapshot,
                     struct sst_scratch *scratch, struct sst_get_result *res, const struct sst_hint *hint)
{
  if (t->open_rc != SOCHDB_OK)
    return sdb_fail(t->open_rc, "%s", t->open_err);
  int rc = sst_get_hinted(&t->r, key, klen, snapshot, scratch, res, hint);
  if (rc == SOCHDB_CORRUPT)
    return sdb_fail_prefix(rc, "SSTable %06llu", (unsigned long long)t->number);
  return rc;
}

/* Are all keys of file i of a level (which ends before file end) below key?
** A file that could not be opened has no known range, but a level's files
** never share a key (a compaction cuts its outputs between keys), so it
** holds only keys below the next readable file's first: below key if that
** one starts at or before key. So one damaged file fails the gets of its own
** gap alone, not those of every file after it. */
static int file_below(const struct sdb_tables *ts, uint32_t i, uint32_t end, const void *key, size_t klen)
{
  const struct sdb_table *t = ts->files[i];
  if (t->open_rc == SOCHDB_OK)
    return !t->largest || sl_compare(t->largest, t->llen, key, (uint32_t)klen) < 0;
  for (uint32_t j = i + 1; j < end; j++) {
    const struct sdb_table *next = ts->files[j];
    if (next->open_rc == SOCHDB_OK && next->smallest)
      return sl_compare(next->smallest, next->slen, key, (uint32_t)klen) <= 0;
  }
  return 0;
}

uint32_t sdb_tables_seek_level(const struct sdb_tables *ts, unsigned l, const void *key, size_t klen)
{
  uint32_t lo = ts->level_start[l], hi = ts->level_start[l + 1];
  const uint32_t end = hi;
  if (!key)
    return lo;
  while (lo < hi) {    /* the first file whose largest key is >= key (or may be) */
    uint32_t mid = lo + (hi - lo) / 2;
    if (file_below(ts, mid, end, key, klen))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The next table that may hold key, in the order a get searches them: each
** L0 file whose key range holds it, newest first, then at each deeper level
** the one file whose range may (levels >= 1 do not overlap; a file that
** could not be opened may hold anything). NULL after the last. One rule for
** sdb_tables_prefetch and sdb_tables_get, which must agree on the first. */
static const struct sdb_table *next_candidate(const struct sdb_tables *ts, const void *key, size_t klen,
                                              struct sdb_candidate_pos *p)
{
  while (p->level == 0 && p->i < ts->level_start[1]) {
    const struct sdb_table *t = ts->files[p->i++];
    if (sdb_table_may_hold(t, key, klen))
      return t;
  }
  if (p->level == 0)
    p->level = 1;
  while (p->level < ts->levels) {   /* none below the deepest level that holds a file */
    unsigned l = p->level++;
    uint32_t i = sdb_tables_seek_level(ts, l, key, klen);
    if (i < ts->level_start[l + 1] && sdb_table_may_hold(ts->files[i], key, klen))
      return ts->files[i];
  }
  return NULL;
}

void sdb_tables_prefetch(const struct sdb_tables *ts, const void *key, size_t klen, uint64_t snapshot,
                         struct sdb_tables_hint *hint)
{
  struct sdb_candidate_pos p = { 0, ts->level_start[0] };
  const struct sdb_table *t = next_candidate(ts, key, klen, &p);
  *hint = (struct sdb_tables_hint){ .ts = ts, .key = key, .klen = klen, .snapshot = snapshot, .first = t, .after = p };
  if (t && t->open_rc == SOCHDB_OK)
    sst_prefetch_get(&t->r, key, klen, snapshot, &hint->sst);
}

int sdb_tables_get(const struct sdb_tables *ts, const void *key, size_t klen, uint64_t snapshot,
                   struct sst_scratch *scratch, struct sst_get_result *res, const struct sdb_tables_hint *hint)
{
  memset(res, 0, sizeof *res);
  struct sdb_candidate_pos p = { 0, ts->level_start[0] };
  const struct sdb_table *t;
  const struct sst_hint *sh = NULL;
  if (hint && hint->ts == ts && hint->key == key && hint->klen == klen && hint->snapshot == snapshot) {
    t = hint->first;     /* where the prefetch's search stopped: the same rule's first */
    p = hint->after;
    sh = &hint->sst;
  } else {
    t = next_candidate(ts, key, klen, &p);
  }
  for (; t; t = next_candidate(ts, key, klen, &p)) {
    int rc = table_get(t, key, klen, snapshot, scratch, res, sh);
    if (rc != SOCHDB_OK || res->found)
      return rc;
  }
  return SOCHDB_OK;
}
