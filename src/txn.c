/*
** txn.c — transactions: snapshots, buffered writes, reads, and the commit
** protocol that makes a transaction's writes visible to every process at
** once, or not at all.
**
** Commit, in order:
**  1. install: for each key (in key order), push an intent version on the
**     key's chain in the active memtable. A chain whose newest live version
**     committed after our snapshot is a conflict; one with another pending
**     intent on top is a conflict too (no waiting, so no deadlock), unless
**     that intent's process is dead, in which case we reap it and go on.
**  2. check the key in every other live memtable (a rotation may have split
**     the writers of one key across two memtables). Every committer installs
**     (seq_cst) before it checks (seq_cst), so of two committers of one key,
**     at least one sees the other. A version in a newer memtable than ours
**     is a conflict too, which keeps "newer memtable = newer version".
**     If versions newer than our snapshot have left memory since (their
**     memtable flushed and retired), look each key up in the SSTables too:
**     one there newer than our snapshot is a conflict (check_flushed). The
**     lookups are made once before step 1, outside the commit epoch, and
**     made again here only if the file list has changed since.
**  3. write our commit record (seq and version offsets) into the arena,
**     claim a commit sequence number (not while the WAL writer lags a whole
**     record ring behind), point rec_ring[seq] at the record, then decide:
**     CAS the descriptor from PENDING to the seq. This CAS is the commit point.
**  4. stamp our versions with the seq, mark the sequence decided, and wait
**     until publication reaches it, so that the caller's next snapshot sees
**     this commit.
**  5. SOCHDB_SYNC: wait until the daemon's group commit made it durable
**     (shm/durable.h), restarting a dead daemon on the way.
** A process killed anywhere in 1-3 leaves a PENDING descriptor, which the
** reaper aborts: wholly absent. Killed after 3: wholly visible once reaped.
*/
#include "internal.h"

#include "durable.h"
#include "epoch.h"
#include "error.h"
#include "fence.h"
#include "mvcc.h"
#include "rowfmt.h"
#include "seqring.h"
#include "skiplist.h"
#include "tables.h"
#include "testhooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- transaction entries of a handle ---------------------------------- */

static int claim_entry(sochdb *db, uint32_t *out)
{
  for (uint32_t w = 0; w < SHM_TXNS_PER_SLOT / 64; w++) {
    /* relaxed: the bitmap only arbitrates between our own threads; the
    ** entry's shared fields have their own ordering */
    uint64_t bits = atomic_load_explicit(&db->entry_bits[w], memory_order_relaxed);
    while (~bits) {
      unsigned b = (unsigned)__builtin_ctzll(~bits);
      if (atomic_compare_exchange_weak_explicit(&db->entry_bits[w], &bits, bits | (1ull << b),
                                                memory_order_acquire, memory_order_relaxed)) {
        *out = w * 64 + b;
        return SOCHDB_OK;
      }
    }
  }
  return sdb_fail(SOCHDB_BUSY, "this handle already has %u open transactions", SHM_TXNS_PER_SLOT);
}

static void release_entry(sochdb *db, uint32_t entry)
{
  /* release: our last writes to the entry happen-before its next user's */
  atomic_fetch_and_explicit(&db->entry_bits[entry / 64], ~(1ull << (entry % 64)), memory_order_release);
}

#define KEEP_CHUNK (64u * 1024u)

/* Copies go into 64 KiB chunks; one over a quarter of that gets a chunk of
** its own, behind the current one, which goes on taking the small copies (a
** key after its large value): else a large copy would end the current chunk
** early, and the next key would take a new 64 KiB chunk (wbuf.c's stash does
** the same). So a chunk wastes at most a quarter of itself. */
const void *sdb_txn_keep(sochdb_txn *t, const void *p, size_t n)
{
  struct txn_keep *k = t->keep;
  if (!k || k->cap - k->used < n) {
    int own = n > KEEP_CHUNK / 4;
    size_t cap = own ? n : KEEP_CHUNK;
    if (!(k = malloc(sizeof *k + cap)))
      return NULL;
    k->used = 0;
    k->cap = cap;
    if (own && t->keep) {
      k->next = t->keep->next;
      t->keep->next = k;
    } else {
      k->next = t->keep;
      t->keep = k;
    }
  }
  void *at = k->data + k->used;
  memcpy(at, p, n);
  k->used += (n + 7) & ~(size_t)7;
  if (k->used > k->cap)
    k->used = k->cap;
  return at;
}

/* What a transaction holds until it ends: its tables and the copies it
** handed out. */
static void release_txn_memory(sochdb_txn *t)
{
  sdb_tables_release(t->tables);
  t->tables = NULL;
  while (t->keep) {
    struct txn_keep *next = t->keep->next;
    free(t->keep);
    t->keep = next;
  }
}

/* What a transaction owns in this process (also all a fork child may free). */
void sdb_txn_free(sochdb_txn *t)
{
  if (!t)
    return;
  release_txn_memory(t);
  if (t->iters) {          /* an iterator still points at t: it is freed when the last one closes */
    t->db = NULL;
    t->orphan = 1;
    return;
  }
  sst_scratch_free(&t->scratch);
  wbuf_free(&t->writes);
  free(t);
}

#define SPARE_SCRATCH_MAX (256u * 1024u)   /* a larger scratch (a huge value's block) is not kept */

/* A transaction object for begin: the handle's spare if it has one, whose
** write buffer and scratch keep their memory (LMDB's mdb_txn_reset and
** renew, without asking the caller), so that a small transaction allocates
** nothing. acquire: pairs with keep_spare's release, so the object's last
** user's writes to it happen-before ours. */
static sochdb_txn *take_spare(sochdb *db)
{
  sochdb_txn *t = atomic_exchange_explicit(&db->spare, NULL, memory_order_acquire);
  if (t)
    return t;
  if (!(t = malloc(sizeof *t)))
    return NULL;
  wbuf_init(&t->writes);
  t->scratch = (struct sst_scratch){ NULL, 0 };
  t->generation = 0;
  t->iters = 0;
  t->orphan = 0;
  return t;
}

/* Make finished t the handle's spare. acq_rel: release hands t's contents
** to the next take_spare; acquire, those of the spare it displaces, which
** we free. */
static void keep_spare(sochdb_txn *t)
{
  sochdb *db = t->db;
  if (t->iters) {
    /* An iterator still points at t: no spare, which the next begin would
    ** reuse or a later end would free under it. Its next calls find t
    ** ended (SOCHDB_INVALID); the last sochdb_iter_close frees t. */
    sdb_txn_free(t);
    return;
  }
  release_txn_memory(t);
  if (!(t->flags & SOCHDB_TXN_READONLY))
    wbuf_reset(&t->writes);   /* a read-only one buffered nothing (buffer_write) */
  if (t->scratch.cap > SPARE_SCRATCH_MAX)
    sst_scratch_free(&t->scratch);
  t->db = NULL;   /* a call on the ended handle fails (sdb_check_txn) until begin reuses it */
  sdb_txn_free(atomic_exchange_explicit(&db->spare, t, memory_order_acq_rel));
}

static void finish_txn(sochdb_txn *t)
{
  sochdb *db = t->db;
  db->open_txns[t->entry] = NULL;   /* before release_entry hands the element on */
  struct shm_txn_entry *e = sdb_txn_entry(t);
  /* release: the snapshot is dropped only after our last read of the region */
  atomic_store_explicit(&e->snapshot, 0, memory_order_release);
  hazard_clear(e);
  release_entry(db, t->entry);
  keep_spare(t);
}

static struct shm_slot_stats *my_stats(const sochdb *db) { return &shm_slot_at(&db->region, db->slot)->stats; }

static void count(_Atomic uint64_t *counter, uint64_t n)
{
  atomic_fetch_add_explicit(counter, n, memory_order_relaxed);   /* statistics only */
}

/* ---- begin / put / delete / get --------------------------------------- */

/* Publish a snapshot in e, then the memtables it reads (the view) as e's
** hazard, with one seq_cst fence for both handshakes: the snapshot's with
** the compaction horizon (shm/slots.c) and the view's with the flusher
** (shm/epoch.h). Snapshot first: a commit after it is in a memtable of the
** view (see the header). The files come at the first read that needs them
** (sdb_txn_tables). */
static uint64_t publish_view(shm_region *r, struct shm_txn_entry *e, struct mt_view *v)
{
  uint64_t ids[SHM_MAX_MEMTABLES];
  for (;;) {
    uint64_t snap = slots_offer_snapshot(r, e);
    arena_view_offer(r, &e->view_memtables, v, ids);
    shm_fence_seq_cst();
    if (slots_snapshot_held(r, snap) && arena_view_held(r, v, ids))
      return snap;
  }
}

static int past(const struct timespec *d)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

/* Milliseconds from now until deadline d, 0 once it passed. */
static unsigned ms_until(const struct timespec *d)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long ms = (d->tv_sec - now.tv_sec) * 1000L + (d->tv_nsec - now.tv_nsec) / 1000000L;
  return ms > 0 ? (unsigned)ms : 0;
}

/* Write stall. Full memtables wait for the daemon to flush them; while they
** wait, their commits are only in the log, which a replay after a lost
** region reads again, and every get looks in each of them. A load faster
** than the daemon would otherwise fill every arena the region has (62 in a
** 4 GiB one) before it had to wait: its ASYNC commits seconds from durable,
** a replay of gigabytes after a power cut. So writers wait while more than
** FLUSH_BACKLOG_BYTES of full memtables (and at least two) wait for their
** flush, as RocksDB's writers stall on max_write_buffer_number.
**
** A write transaction waits at its begin, before it takes its snapshot: a
** snapshot taken before the wait would predate the flushes that end it, and
** the commit would look each of its keys up in the SSTables (check_flushed).
** Its commit waits again only if the backlog grew by another memtable
** meanwhile (a long transaction, or many writers), and before it installs
** anything. A commit already installing rotates freely:
** it may hold intents in the very memtables that wait (the flusher waits for
** those), so it never waits for the backlog. It waits only when no arena
** at all is free (make_room), and then at most busy_timeout_ms. */
#define FLUSH_BACKLOG_BYTES (128ull << 20)

uint32_t sdb_flush_backlog_limit(const shm_region *r)
{
  uint64_t bytes = sdb_test_flush_backlog() ? sdb_test_flush_backlog() : FLUSH_BACKLOG_BYTES;
  uint64_t memtables = bytes / r->hdr->memtable_bytes;
  return memtables < 2 ? 2 : memtables > SHM_MAX_MEMTABLES ? SHM_MAX_MEMTABLES : (uint32_t)memtables;
}

/* A writer's wait for the daemon (a write stall), counted as it goes, so
** that `sochdb stats --watch` sees a writer held for seconds while it is:
** *noted_ns 0 means the wait is not counted yet (it counts as one stall
** now); else it is when the time up to now was last added. */
static void note_stall(sochdb *db, uint64_t *noted_ns)
{
  uint64_t now = sdb_monotonic_ns();
  if (!*noted_ns)
    count(&my_stats(db)->write_stalls, 1);
  else
    count(&my_stats(db)->write_stall_ns, now - *noted_ns);
  *noted_ns = now;
}

/* Wait, polling every millisecond, until the daemon has caught up
** (caught_up(r, arg)): wake the thread concerned (nudge) and make sure a
** daemon runs (restarting a dead one) each round. 0 once caught up, -1
** after busy_timeout_ms. The caller has found it behind already; a wait
** that pauses (or runs out) is a write stall (note_stall). Not cancelled
** while it waits: a daemon start in it holds DIR/LOCK.spawn. */
static int wait_for_daemon(sochdb *db, int (*caught_up)(const shm_region *, uint32_t), uint32_t arg,
                           void (*nudge)(shm_region *))
{
  shm_region *r = &db->region;
  uint64_t noted = 0;
  int cancel_state, rc = 0;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  struct timespec deadline;
  durable_deadline(&deadline, db->busy_timeout_ms);
  while (rc == 0 && !caught_up(r, arg)) {
    nudge(r);
    sdb_daemon_ensure_within(db, ms_until(&deadline));
    if (!noted)
      note_stall(db, &noted);
    if (past(&deadline)) {
      rc = -1;
    } else {
      struct timespec pause = { 0, 1000000 };   /* 1 ms: what we wait for takes far longer */
      nanosleep(&pause, NULL);
    }
    note_stall(db, &noted);
  }
  pthread_setcancelstate(cancel_state, NULL);
  return rc;
}

static int flushes_caught_up(const shm_region *r, uint32_t limit) { return !arena_flush_backlog_over(r, limit); }

/* Why sochdbd is behind, when the region says: its flushes wait for
** compaction at level 0's stop (daemon/flusher.c). Relaxed: a hint, and
** only while a daemon serves (one killed while it held leaves the count). */
static const char *behind_because(sochdb *db, char *buf, size_t n)
{
  uint64_t l0 = atomic_load_explicit(&db->region.hdr->stats.l0_held_files, memory_order_relaxed);
  if (!l0 || !sdb_daemon_serves(db))
    return "";
  snprintf(buf, n, ": level 0 holds %llu files (sochdbd --l0-stop), and flushes wait for compaction to merge "
           "them", (unsigned long long)l0);
  return buf;
}

/* Wait while more than the backlog's limit plus `slack` memtables wait for
** their flush; SOCHDB_BUSY after busy_timeout_ms. */
static int wait_for_flushes(sochdb *db, uint32_t slack)
{
  uint32_t limit = db->flush_backlog + slack;
  if (flushes_caught_up(&db->region, limit))
    return SOCHDB_OK;   /* nearly always: no deadline to read the clock for */
  if (wait_for_daemon(db, flushes_caught_up, limit, arena_wake_flusher) == 0)
    return SOCHDB_OK;
  char why[160];
  return sdb_fail(SOCHDB_BUSY, "more than %u full memtables waited for their flush for %u ms (sochdbd is behind%s; "
                  "see DIR/sochdbd.log)", limit, db->busy_timeout_ms, behind_because(db, why, sizeof why));
}

int sochdb_txn_begin(sochdb *db, unsigned flags, sochdb_txn **out)
{
  int rc = sdb_check_db(db);
  if (rc != SOCHDB_OK)
    return rc;
  if (!out)
    return sdb_fail(SOCHDB_INVALID, "NULL transaction output");
  *out = NULL;
  if (flags & ~SOCHDB_TXN_READONLY)
    return sdb_fail(SOCHDB_INVALID, "unknown transaction flags 0x%x", flags);
  if (!(flags & SOCHDB_TXN_READONLY) && (rc = wait_for_flushes(db, 0)) != SOCHDB_OK)
    return rc;
  /* Not a zeroed struct: clearing the view's 64 memtable numbers, which
  ** publish_view writes as far as it needs, was 2.5% of a point read
  ** (perf, read_rand). */
  sochdb_txn *t = take_spare(db);
  if (!t)
    return sdb_fail(SOCHDB_NOMEM, "allocating a transaction");
  t->db = db;
  t->generation++;
  t->flags = flags;
  t->view.n = 0;
  t->tables = NULL;
  t->keep = NULL;
  t->ntables_checked = 0;
  rc = claim_entry(db, &t->entry);
  if (rc != SOCHDB_OK) {
    sdb_txn_free(t);
    return rc;
  }
  t->snapshot = publish_view(&db->region, sdb_txn_entry(t), &t->view);
  db->open_txns[t->entry] = t;
  CRASHPOINT("txn.begin.snapshot");
  *out = t;
  return SOCHDB_OK;
}

/* The SSTables t reads, taken at its first read that needs them rather than
** at begin, so that a transaction that only writes never takes them. Any
** list taken after the view serves our snapshot: a memtable that left the
** view has its file in it (daemon/flusher.c), and the files that replace
** those of an earlier list keep every version our snapshot can see, since
** our published snapshot holds the compactions' horizon at or below it
** (daemon/compactor.c). */
int sdb_txn_tables(sochdb_txn *t)
{
  if (t->tables)
    return SOCHDB_OK;
  return sdb_tables_acquire(t->db, &sdb_txn_entry(t)->view_files, &t->tables);
}

static int check_key(const void *key, size_t klen)
{
  if (!key)
    return sdb_fail(SOCHDB_INVALID, "NULL key");
  if (klen == 0 || klen > SOCHDB_MAX_KEY)
    return sdb_fail(SOCHDB_INVALID, "key is %zu bytes; keys are 1 to %u bytes", klen, SOCHDB_MAX_KEY);
  return SOCHDB_OK;
}

/* Keys of the table layer (rowfmt.h) are not the application's to touch. */
static int check_user_key(const void *key, size_t klen)
{
  int rc = check_key(key, klen);
  if (rc == SOCHDB_OK && rowfmt_reserved(key, klen))
    return sdb_fail(SOCHDB_INVALID, "keys starting with the bytes 0xFF 0xFF are reserved for columnar tables");
  return rc;
}

/* The whole transaction must fit one WAL record (walfmt.h). A write that
** would take it past either limit is refused when it is made, leaving the
** transaction usable (the bytes counted as if it added them all: a rewrite
** of a key near the limit may be refused though it would fit); the commit
** checks again before anything is installed. */
#define MAX_TXN_OPS   65535u
#define MAX_TXN_BYTES (1ull << 30)

static int check_room_for_write(const sochdb_txn *t, const void *key, size_t klen, size_t vlen)
{
  if (t->writes.bytes + klen + vlen > MAX_TXN_BYTES)
    return sdb_fail(SOCHDB_INVALID, "a transaction writes at most %llu bytes of keys and values; this write "
                    "would take it past that", (unsigned long long)MAX_TXN_BYTES);
  if (t->writes.n >= MAX_TXN_OPS && !wbuf_get(&t->writes, key, (uint32_t)klen))
    return sdb_fail(SOCHDB_INVALID, "a transaction writes at most %u keys; this would be one more", MAX_TXN_OPS);
  return SOCHDB_OK;
}

#define BUCKET_PREFETCH_AHEAD 8u   /* keys: about the misses a core keeps in flight */

/* The commit of a small transaction installs each key in a random hash
** bucket of the active memtable, a cache miss that install_all's own
** prefetch, issued as it starts, barely hides: in fill_seq (one put per
** commit) the load of that bucket was 13% of the client's time (perf). Its
** first keys' buckets are asked for as they are written, so the misses
** overlap what comes before the install (the rest of the put, begin's and
** commit's bookkeeping); install_all asks for a bigger transaction's
** others a few keys ahead. A rotation meanwhile wastes the prefetch only. */
static void prefetch_first_buckets(const sochdb_txn *t)
{
  const struct wbuf *wb = &t->writes;
  if (wb->n <= BUCKET_PREFETCH_AHEAD)
    sl_prefetch_bucket(&t->db->region, arena_active(&t->db->region), wb->ents[wb->n - 1].hash, 1);
}

static int buffer_write(sochdb_txn *t, const void *key, size_t klen, const void *val, size_t vlen, int tomb,
                        int reserved_ok)
{
  int rc = sdb_check_txn(t);
  if (rc == SOCHDB_OK)
    rc = reserved_ok ? check_key(key, klen) : check_user_key(key, klen);
  if (rc != SOCHDB_OK)
    return rc;
  if (t->flags & SOCHDB_TXN_READONLY)
    return sdb_fail(SOCHDB_INVALID, "write in a read-only transaction");
  if (vlen > SOCHDB_MAX_VALUE)
    return sdb_fail(SOCHDB_INVALID, "value is %zu bytes; the limit is %u", vlen, SOCHDB_MAX_VALUE);
  if (!tomb && !val)
    return sdb_fail(SOCHDB_INVALID, "NULL value with length %zu", vlen);
  if (mv_version_bytes(vlen) + klen + 256 > t->db->max_version_bytes)
    return sdb_fail(SOCHDB_INVALID, "value of %zu bytes does not fit this database's %llu-byte memtables",
                    vlen, (unsigned long long)t->db->region.hdr->memtable_bytes);
  if ((rc = check_room_for_write(t, key, klen, vlen)) != SOCHDB_OK)
    return rc;
  if (wbuf_put(&t->writes, key, (uint32_t)klen, val, (uint32_t)vlen, tomb) != 0)
    return sdb_fail(SOCHDB_NOMEM, "buffering a write of %zu bytes", klen + vlen);
  prefetch_first_buckets(t);
  CRASHPOINT("put.buffered");
  return SOCHDB_OK;
}

int sochdb_put(sochdb_txn *t, const void *key, size_t klen, const void *val, size_t vlen)
{
  if (!val && !vlen)
    val = "";               /* an empty value may come as NULL */
  return buffer_write(t, key, klen, val, vlen, 0, 0);
}

int sochdb_delete(sochdb_txn *t, const void *key, size_t klen)
{
  return buffer_write(t, key, klen, NULL, 0, 1, 0);
}

int sdb_write(sochdb_txn *t, const void *key, size_t klen, const void *val, size_t vlen, int tombstone)
{
  return buffer_write(t, key, klen, tombstone ? NULL : val, tombstone ? 0 : vlen, tombstone, 1);
}

/* Before a get searches the memtables, ask for the first lines of both of
** its halves: each memtable's hash bucket for the key, and in the first
** SSTable that may hold it the filter line and the block's lines. Their
** misses then overlap each other and the work in between, instead of
** following one another. When a memtable has the key, the SSTable's lines
** were asked for in vain; read_rand, where a quarter of the keys are in the
** memtable, was still ahead in 8 of 8 alternating rounds
** (docs/performance-history.md). */
static void prefetch_get(const sochdb_txn *t, const void *key, size_t klen, uint64_t hash,
                         struct sdb_tables_hint *hint)
{
  for (uint32_t i = 0; i < t->view.n; i++)
    sl_prefetch_bucket(&t->db->region, t->view.idx[i], hash, 0);
  sdb_tables_prefetch(t->tables, key, klen, t->snapshot, hint);
}

static const struct mv_version *snapshot_lookup(const sochdb_txn *t, const void *key, uint32_t klen, uint64_t hash)
{
  const shm_region *r = &t->db->region;
  for (uint32_t i = 0; i < t->view.n; i++) {   /* newest memtable first */
    uint64_t node = sl_lookup(r, t->view.idx[i], key, klen, hash);
    const struct mv_version *v = node ? mv_visible(r, node, t->snapshot) : NULL;
    if (v)
      return v;
  }
  return NULL;
}

/* A value handed out must live until t ends: one in a mapped file does (t
** holds the mapping), one decompressed into the scratch is copied. */
static int hand_out(sochdb_txn *t, const uint8_t *p, size_t n, const void **out)
{
  if (t->scratch.p && p >= t->scratch.p && p < t->scratch.p + t->scratch.cap) {
    if (!(p = sdb_txn_keep(t, p, n)))
      return sdb_fail(SOCHDB_NOMEM, "copying a value of %zu bytes", n);
  }
  *out = p;
  return SOCHDB_OK;
}

static int tables_lookup(sochdb_txn *t, const void *key, size_t klen, const void **val, size_t *vlen,
                         const struct sdb_tables_hint *hint)
{
  struct sst_get_result res;
  int rc = sdb_tables_get(t->tables, key, klen, t->snapshot, &t->scratch, &res, hint);
  if (rc != SOCHDB_OK)
    return rc;
  if (!res.found || res.tombstone)
    return SOCHDB_NOTFOUND;
  *vlen = res.vlen;
  return hand_out(t, res.val, res.vlen, val);
}

static int get_key(sochdb_txn *t, const void *key, size_t klen, const void **val, size_t *vlen, int reserved_ok)
{
  int rc = sdb_check_txn(t);
  if (rc == SOCHDB_OK)
    rc = reserved_ok ? check_key(key, klen) : check_user_key(key, klen);
  if (rc != SOCHDB_OK)
    return rc;
  if (!val || !vlen)
    return sdb_fail(SOCHDB_INVALID, "NULL value output");
  const struct wb_entry *own = wbuf_get(&t->writes, key, (uint32_t)klen);
  if (own) {
    if (own->tombstone)
      return SOCHDB_NOTFOUND;
    *val = own->val;
    *vlen = own->vlen;
    return SOCHDB_OK;
  }
  rc = sdb_txn_tables(t);
  if (rc != SOCHDB_OK)
    return rc;
  uint64_t hash = sl_hash(key, (uint32_t)klen);
  struct sdb_tables_hint hint;
  prefetch_get(t, key, klen, hash, &hint);
  const struct mv_version *v = snapshot_lookup(t, key, (uint32_t)klen, hash);
  if (v) {
    if (mv_is_tombstone(v))
      return SOCHDB_NOTFOUND;
    *val = v->value;          /* zero-copy: the arena outlives our view */
    *vlen = mv_vlen(v);
    return SOCHDB_OK;
  }
  return tables_lookup(t, key, klen, val, vlen, &hint);
}

int sochdb_get(sochdb_txn *t, const void *key, size_t klen, const void **val, size_t *vlen)
{
  return get_key(t, key, klen, val, vlen, 0);
}

int sdb_get(sochdb_txn *t, const void *key, size_t klen, const void **val, size_t *vlen)
{
  return get_key(t, key, klen, val, vlen, 1);
}

/* ---- commit ------------------------------------------------------------- */

struct installed {
  uint32_t mt;     /* where its version went */
};

#define NO_LIST UINT64_MAX   /* commit_ctx.files_checked: none yet */

struct commit_ctx {
  sochdb_txn           *t;
  shm_region           *r;
  struct shm_txn_entry *e;
  uint64_t              ref;        /* what our versions call our descriptor */
  struct mv_commit     *record;     /* our commit record: every version we make is listed there */
  uint64_t              record_off; /* its offset; 0 until our first version exists */
  struct timespec       deadline;   /* for waiting on a free arena */
  int                   deadline_set;
  uint64_t              room_noted; /* that wait as a write stall: note_stall's mark, 0 before it */
  uint64_t              memtables;  /* bit i: a version of ours is in memtable i */
  struct sl_finger     *finger;     /* install_one's last search in the active memtable, during
                                    ** install_all: the handle's (kept->active), or one of its own
                                    ** (a zeroed one here was 1% of a one-put commit) */
  struct commit_fingers *kept;      /* the handle's fingers, ours during install_all; NULL if
                                    ** another thread's commit holds them */
  uint64_t              files_checked; /* the file list check_flushed found no conflict in, or NO_LIST */
};

/* The active memtable `full` had no room: rotate, or wait for a free arena
** until busy_timeout_ms is spent, then report why rotation failed. */
static int make_room(struct commit_ctx *c, uint32_t full)
{
  if (arena_rotate(c->r, c->t->db->slot, full) == SOCHDB_OK)
    return SOCHDB_OK;
  arena_wake_flusher(c->r);   /* it may sleep, idle, while arenas wait to be recycled */
  note_stall(c->t->db, &c->room_noted);   /* counted once a commit, with its time between pauses */
  if (!c->deadline_set) {
    durable_deadline(&c->deadline, c->t->db->busy_timeout_ms);
    c->deadline_set = 1;
  }
  if (past(&c->deadline)) {
    char why[256], l0[160];
    snprintf(why, sizeof why, "%s", sochdb_last_error());
    return sdb_fail(SOCHDB_BUSY, "no memtable room within %u ms: %s%s", c->t->db->busy_timeout_ms, why,
                    behind_because(c->t->db, l0, sizeof l0));
  }
  /* Take a fresh commit epoch before we sleep: the flusher seals the
  ** oldest memtable by waiting for every commit epoch older than its seal,
  ** and only that flush can give us room. We write only into the active
  ** memtable (read afresh after this), and our intents in older ones keep
  ** them from being flushed until we decide (the flusher waits for them),
  ** and from being recycled until we leave the epoch (retire tags are
  ** newer than it). */
  epoch_enter(c->r, &c->e->commit_epoch);
  /* Nor may the memtables of our snapshot's view hold the arenas we wait
  ** for: a transaction that began while every arena was in use would wait
  ** for itself until busy_timeout_ms. The commit ends the transaction (what
  ** its gets handed out is not read again) and takes fresh views of its own;
  ** what we installed is kept by the epoch. */
  hazard_drop_memtables(c->e);
  CRASHPOINT("commit.wait_room");           /* killed waiting: tests/test_crash.c */
  struct timespec pause = { 0, 1000000 };   /* 1 ms */
  nanosleep(&pause, NULL);
  note_stall(c->t->db, &c->room_noted);
  return SOCHDB_OK;
}

/* Our version of w, made in memtable mt before the key's node is looked up
** or linked: its room, and our commit record's if we have none yet, its
** state and value written, its node left for list_version. 0 when the
** arena is full. So nothing between linking a new node and hashing it
** (install_one) waits for the arena to back pages or copies a value (of up
** to 16 MiB): a writer of the same key that finds the node meanwhile waits
** for the hash only so long (shm/skiplist.c, adopt) before it marks the
** memtable's index incomplete. Nothing reaches the version before it is
** listed. */
struct version_room {
  uint64_t record;   /* where a first record goes, or the one we have */
  uint64_t version;
};

static int make_version(struct commit_ctx *c, uint32_t mt, const struct wb_entry *w, struct version_room *room)
{
  uint32_t n = (uint32_t)c->t->writes.n;
  room->record = c->record_off;
  if (!room->record) {
    if (!(room->record = arena_alloc(c->r, mt, mv_commit_bytes(n))))
      return 0;
    mv_commit_init(shm_at(c->r, room->record), n);
  }
  if (!(room->version = arena_alloc(c->r, mt, mv_version_bytes(w->vlen))))
    return 0;   /* a first record goes to waste: the next try makes one where its version goes */
  mv_version_fill(c->r, shm_at(c->r, room->version), mv_pending_state(c->ref), 0, w->val, w->vlen, w->tombstone);
  return 1;
}

/* Put our version made in `room` on `node` and list it in our commit
** record. The record is made with the first version, in the same memtable:
** that memtable then holds one of our versions, so it is kept until we have
** decided (the flusher waits for every pending version) and until our
** commit is durable (the flusher retires a memtable only once the log
** holds every commit in it, up to its max_seq), which is as long as the
** record is read. No other memtable is sure to last: while make_room waits
** it leaves our commit epoch, and memtables without a version of ours may
** be recycled meanwhile. The descriptor names the record only once that
** first version is listed in it, before any version is in a chain, so a
** reaper never reads a record in an arena that may have been recycled. */
static void list_version(struct commit_ctx *c, const struct version_room *room, uint64_t node)
{
  struct mv_version *v = shm_at(c->r, room->version);
  v->node = shm_off_ref(c->r, node);   /* plain: published by the listing's release, then the install */
  if (!c->record_off)
    c->record = shm_at(c->r, room->record);
  mv_commit_add(c->r, c->record, room->version);
  if (!c->record_off) {
    c->record_off = room->record;
    /* release: whoever acquires the record sees it and its first version */
    atomic_store_explicit(&c->e->record, room->record, memory_order_release);
  }
  CRASHPOINT("commit.listed");   /* killed between listing and installing: tests/test_crash.c */
  CALLPOINT("commit.listed");    /* tests/test_txn.c: another commit of a new key meanwhile */
}

/* We lost to the commit `seq`. If it is decided but not yet published, help
** publication along without waiting (reaping a dead process that blocks it):
** otherwise, if its committer died, every retry would take a snapshot
** without it and lose to it again, forever. */
static int conflict_with(struct commit_ctx *c, uint64_t seq)
{
  if (seq > seqring_published(c->r))
    seqring_help(c->r, c->t->db->slot);
  return SOCHDB_CONFLICT;
}

/* A new key's node is hashed (sl_index_node) only once our version is in
** its chain: the line of its random hash bucket, asked for when the key was
** written (prefetch_first_buckets), then has the version's work to arrive
** in; loading it right after linking the node was a tenth of fill_seq's
** client time (perf). A writer of the same key that finds the node meanwhile
** waits for the hash (shm/skiplist.c, adopt), which is why the version is
** made before the node is linked. Hashed before our decision, so a
** get through the index finds the node of every commit its snapshot holds;
** a process killed before that leaves an unhashed node with no committed
** version, which gets miss rightly (an adopter marks the index incomplete). */
static int install_one(struct commit_ctx *c, const struct wb_entry *w, struct installed *at)
{
  uint32_t my_slot = c->t->db->slot;
  for (;;) {
    uint32_t mt = arena_active(c->r);
    CALLPOINT("commit.read_active");   /* tests/test_txn.c: paused between reading the active index and installing */
    struct version_room room;
    int unindexed = 0;
    /* keys come in increasing order: each search resumes where the last one ended */
    uint64_t node = make_version(c, mt, w, &room)
                      ? sl_find_or_insert_finger(c->r, mt, w->key, w->klen, w->hash, c->finger, &unindexed)
                      : 0;
    if (!node) {
      /* make_room may leave our commit epoch while it waits, after which
      ** memtables, this one included, may be recycled under the finger */
      sl_finger_reset(c->finger);
      int rc = make_room(c, mt);
      if (rc != SOCHDB_OK)
        return rc;
      continue;
    }
    list_version(c, &room, node);
    for (;;) {
      uint64_t other;
      enum mv_install_result outcome = mv_install(c->r, node, room.version, c->t->snapshot, &other);
      if (unindexed) {
        CRASHPOINT("commit.installed_unhashed");   /* tests/test_crash.c */
        sl_index_node(c->r, mt, node, w->hash);
        unindexed = 0;
      }
      switch (outcome) {
      case MV_INSTALLED:
        c->memtables |= 1ull << mt;
        at->mt = mt;
        return SOCHDB_OK;
      case MV_CONFLICT:
        return conflict_with(c, other);
      case MV_BLOCKED:
        if (other == my_slot || !slots_reap_if_dead(c->r, my_slot, (uint32_t)other))
          return SOCHDB_CONFLICT;    /* a live transaction is committing this key */
        break;                       /* its owner was dead and is reaped: look again */
      }
    }
  }
}

static uint64_t memtable_id(const shm_region *r, uint32_t mt)
{
  return atomic_load_explicit(&arena_memtable(r, mt)->id, memory_order_relaxed);
}

/* The handle's fingers (internal.h), or NULL while another thread's commit
** has them. acquire/release: they hand the fingers' contents from one
** thread's commit to the next's; nothing else in this process reads them. */
static struct commit_fingers *take_fingers(sochdb *db)
{
  return atomic_exchange_explicit(&db->fingers_busy, 1, memory_order_acquire) ? NULL : &db->fingers;
}

static void give_fingers(sochdb *db)
{
  atomic_store_explicit(&db->fingers_busy, 0, memory_order_release);
}

/* Keep finger f, saved in memtable mt (which the caller's commit epoch
** keeps: it is live in the commit's view, or active) with memtable id
** saved_id, if mt still holds that memtable, else empty it. A relaxed id is
** enough: the epoch keeps mt from being flushed and recycled until it is
** left (or re-entered, by make_room, which resets the installs' finger), so
** its id cannot change under us, and the acquire that showed us mt live or
** active also showed its id. One arena escapes the epoch: one whose
** rotation lost goes back to FREE at once and may be claimed again under a
** new id; but it never held a node in that life, so a finger saved there
** holds the head (at a fixed offset) or nodes of its next life, reached by
** acquire loads that also showed that life's id to keep_fingers. The
** fingers are used where they lie, not copied: copying them was most of
** install_all's samples in fill_seq (perf). */
static struct sl_finger *resume_finger(const shm_region *r, uint32_t mt, struct sl_finger *f, uint64_t saved_id)
{
  if (f->mt != mt || saved_id != memtable_id(r, mt))
    sl_finger_reset(f);
  return f;
}

/* Step 2: the key's versions in the other live memtables. fingers[i]:
** the last search in view->idx[i] (keys come in increasing order). Bit i of
** *passed: a search in view->idx[i] found no node after ours, so none of our
** greater keys is there either: their checks all take effect at that
** instant (after our installs, as each check must), and are not repeated. */
static int check_elsewhere(struct commit_ctx *c, const struct wb_entry *w, const struct installed *at,
                           const struct mt_view *view, struct sl_finger *const *fingers, uint64_t *passed)
{
  uint32_t my_slot = c->t->db->slot;
  for (uint32_t i = 0; i < view->n; i++) {
    uint32_t mt = view->idx[i];
    if (mt == at->mt || (*passed >> i & 1))
      continue;
    uint64_t node = sl_find_finger(c->r, mt, w->key, w->klen, fingers[i]);
    if (!node && sl_finger_at_end(c->r, fingers[i]))
      *passed |= 1ull << i;
    uint64_t state;
    const struct mv_version *live;
    while (node && (live = mv_newest_live(c->r, node, &state)) && state == 0) {
      uint64_t ref = mv_pending_txn(live);   /* 0: stamped meanwhile, look again */
      if (ref && !slots_reap_if_dead(c->r, my_slot, txn_ref_slot(ref)))
        return SOCHDB_CONFLICT;      /* someone else is committing this key */
    }
    if (!node || !live)
      continue;
    if (state > c->t->snapshot)
      return conflict_with(c, state);
    /* A guard, not a check that decides: a version at or below our
    ** snapshot was installed into a memtable made active before our begin,
    ** and we read the active index after it, so ours is never older
    ** (memtable ids follow activation order). Deleting it breaks no test. */
    if (memtable_id(c->r, mt) > memtable_id(c->r, at->mt))
      return SOCHDB_CONFLICT;
  }
  return SOCHDB_OK;
}

/* Versions newer than our snapshot may have left memory with a retired
** memtable (shm/arena.h). Relaxed: arena_retire raises retired_max_seq
** before its seq_cst RETIRED store, and every memtable missing from the
** fresh view we just took was seen (acquire) RETIRED, or in a later state
** whose store carries that one along, or had its viewable bit seen cleared
** (acquire), which arena_recycle releases after all of these; so the raise
** is already visible to us. */
static int versions_left_memory(const struct commit_ctx *c)
{
  return atomic_load_explicit(&c->r->hdr->retired_max_seq, memory_order_relaxed) > c->t->snapshot;
}

/* Step 2b: the versions that left memory are in the SSTables. A memtable
** missing from our fresh view had its file listed before it was retired
** (daemon/flusher.c), so a table set taken now holds it, or the files a
** compaction made of it; and a compaction keeps every version newer than
** its horizon, which our published snapshot holds at or below it
** (daemon/compactor.c). So the newest version of each key we write, in a
** set taken after the view, is newer than our snapshot exactly when
** someone committed the key since. These versions are settled (the flusher
** waited for their commits), so no intent of a live committer is there. A
** long transaction pays a table lookup a key; others never come here.
** commit_writes makes these lookups first before it installs anything, in
** a set taken then: inside the commit epoch, where they would hold up
** flushes and the other committers of our keys, they are made again only
** in a set of another file list (files never change, so the same list
** gives the same answers). */
static int check_flushed(struct commit_ctx *c, const uint32_t *order)
{
  sochdb_txn *t = c->t;
  struct sdb_tables *fresh;
  int rc = sdb_tables_acquire(t->db, &c->e->view_files, &fresh);
  if (rc != SOCHDB_OK)
    return rc;
  if (fresh->id == c->files_checked) {
    sdb_tables_release(fresh);
    return SOCHDB_OK;
  }
  const struct wbuf *wb = &t->writes;
  for (size_t i = 0; i < wb->n && rc == SOCHDB_OK; i++) {
    const struct wb_entry *w = &wb->ents[order[i]];
    struct sst_get_result res;
    CALLPOINT("commit.flushed_lookup");
    rc = sdb_tables_get(fresh, w->key, w->klen, UINT64_MAX, &t->scratch, &res, NULL);
    if (rc == SOCHDB_OK && res.found && res.seq > t->snapshot)
      rc = SOCHDB_CONFLICT;
  }
  if (rc == SOCHDB_OK)
    c->files_checked = fresh->id;
  sdb_tables_release(fresh);
  return rc;
}

/* Record with the handle's fingers, which this commit moved where they
** lie, the ids of the memtables they are now in (read while our epoch
** still keeps those memtables). */
static void keep_fingers(struct commit_ctx *c, const struct mt_view *view)
{
  struct commit_fingers *k = c->kept;
  k->active_id = k->active.mt != UINT32_MAX ? memtable_id(c->r, k->active.mt) : 0;
  for (uint32_t i = 0; i < view->n; i++) {
    uint32_t mt = view->idx[i];
    k->older_id[mt] = k->older[mt].mt != UINT32_MAX ? memtable_id(c->r, mt) : 0;
  }
}

/* The conflict checks' fingers, fingers[i] for memtable view->idx[i]: the
** handle's, where they lie, or (another thread's commit holds those) empty
** ones in own[]. */
static void check_fingers(struct commit_ctx *c, const struct mt_view *view, struct sl_finger **fingers,
                          struct sl_finger *own)
{
  for (uint32_t i = 0; i < view->n; i++) {
    uint32_t mt = view->idx[i];
    if (c->kept) {
      fingers[i] = resume_finger(c->r, mt, &c->kept->older[mt], c->kept->older_id[mt]);
    } else {
      fingers[i] = &own[i];
      sl_finger_reset(fingers[i]);
    }
  }
}

static int install_all(struct commit_ctx *c, const uint32_t *order, struct installed *at)
{
  const struct wbuf *wb = &c->t->writes;
  struct sl_finger own_active;
  if (c->kept) {
    c->finger = resume_finger(c->r, arena_active(c->r), &c->kept->active, c->kept->active_id);
  } else {
    c->finger = &own_active;
    sl_finger_reset(c->finger);
  }
  /* each new key writes a random hash bucket: ask for the lines a few keys
  ** ahead, so that their misses overlap each other and the skiplist search;
  ** a transaction of BUCKET_PREFETCH_AHEAD keys or fewer asked for all of
  ** them as it wrote them (prefetch_first_buckets) */
  if (wb->n > BUCKET_PREFETCH_AHEAD)
    for (size_t i = 0; i < BUCKET_PREFETCH_AHEAD; i++)
      sl_prefetch_bucket(c->r, arena_active(c->r), wb->ents[order[i]].hash, 1);
  for (size_t i = 0; i < wb->n; i++) {
    if (i + BUCKET_PREFETCH_AHEAD < wb->n)
      sl_prefetch_bucket(c->r, arena_active(c->r), wb->ents[order[i + BUCKET_PREFETCH_AHEAD]].hash, 1);
    int rc = install_one(c, &wb->ents[order[i]], &at[i]);
    if (rc != SOCHDB_OK) {
      sl_finger_reset(c->finger);   /* its id is not recorded: a memtable change may have moved it */
      c->finger = NULL;             /* own_active ends with this call */
      return rc;
    }
    CRASHPOINT("commit.install");
    CALLPOINT("commit.installed_one");   /* tests/test_txn.c: a rotation between two installs of one commit */
  }
  c->finger = NULL;
  /* seq_cst fence: the installs above must be ordered before every load of
  ** the check below, including the acquire-only ones of arena_view and
  ** sl_find (an acquire load may otherwise be satisfied early on POWER or
  ** ARMv8.3 RCpc); this is the store-then-load handshake of step 2. */
  shm_fence_seq_cst();
  struct mt_view view;
  arena_view(c->r, &view);               /* fresh: rotations since begin count */
  /* Fingers are safe here: our commit epoch keeps these memtables from
  ** being recycled until we decide (shm/epoch.h). */
  struct sl_finger *fingers[SHM_MAX_MEMTABLES], own[SHM_MAX_MEMTABLES];   /* own: untouched when kept */
  check_fingers(c, &view, fingers, own);
  uint64_t passed = 0;
  int rc = SOCHDB_OK;
  for (size_t i = 0; view.n >= 2 && i < wb->n && rc == SOCHDB_OK; i++)
    rc = check_elsewhere(c, &wb->ents[order[i]], &at[i], &view, fingers, &passed);
  if (c->kept)
    keep_fingers(c, &view);
  if (rc == SOCHDB_OK && versions_left_memory(c))
    rc = check_flushed(c, order);
  return rc;
}

/* Do not claim a sequence while the WAL writer is a full record ring behind
** (its records would be overwritten before it read them): wake it, make
** sure it runs, and give up after busy_timeout_ms. */
static int writer_caught_up(const shm_region *r, uint32_t unused)
{
  (void)unused;
  return durable_may_claim(r);
}

static int wait_for_writer(struct commit_ctx *c)
{
  if (durable_may_claim(c->r))
    return SOCHDB_OK;   /* nearly always: no deadline to read the clock for */
  if (wait_for_daemon(c->t->db, writer_caught_up, 0, durable_kick) == 0)
    return SOCHDB_OK;
  return sdb_fail(SOCHDB_BUSY, "the WAL writer stayed %llu commits behind for %u ms",
                  (unsigned long long)durable_max_lag(c->r), c->t->db->busy_timeout_ms);
}

/* Steps 3 and 4: claim, decide, stamp, publish. Fails only if our own slot
** was reclaimed under us (our region descriptor was closed behind our back). */
static int decide_and_publish(struct commit_ctx *c, uint32_t did, uint64_t *seq_out)
{
  sochdb *db = c->t->db;
  uint64_t seq = seqring_claim(c->r, db->slot, did);
  atomic_store_explicit(&c->e->seq, seq, memory_order_relaxed);
  c->record->seq = seq;
  durable_set_record(c->r, seq, c->record_off);  /* before the decision: see durable.h */
  for (uint64_t m = c->memtables; m; m &= m - 1)   /* before the decision: see arena.h */
    arena_note_seq(c->r, (uint32_t)__builtin_ctzll(m), seq);
  CRASHPOINT("commit.claim_seq");
  uint64_t pending = TXN_PENDING;
  /* acq_rel: the commit point. Only a reaper can race us, and only if our
  ** slot lock is gone, which for a live process means someone closed our
  ** region descriptor (dup2, closefrom): then we were rolled back. */
  if (!atomic_compare_exchange_strong_explicit(&c->e->state, &pending, seq, memory_order_acq_rel,
                                               memory_order_acquire)) {
    seqring_decide(c->r, seq, did);
    return sdb_fail(SOCHDB_INVALID, "this process's slot was reclaimed during the commit (was the "
                    "database's file descriptor closed?); the transaction was rolled back");
  }
  CRASHPOINT("commit.decided");
  CALLPOINT("commit.decided");   /* tests/test_txn.c: decided, not yet stamped nor published */
  slots_retire_descriptor(c->r, c->e, c->record_off);  /* stamps our versions with seq */
  CRASHPOINT("commit.stamped");
  seqring_decide(c->r, seq, did);
  seqring_wait_published(c->r, db->slot, seq);
  CRASHPOINT("commit.published");
  *seq_out = seq;
  return SOCHDB_OK;
}

#define DURABLE_WAIT_MIN_MS 5000u

/* Why a SYNC commit was not confirmed durable in time, as well as we can
** tell: DIR/LOCK held with no daemon attached to our region is not a
** daemon in trouble but a lock held by something else (`flock DIR/LOCK`, a
** daemon of a replaced region), which no full disk explains. */
static int durable_timeout(sochdb *db, uint64_t seq, unsigned limit_ms)
{
  if (sdb_daemon_lock_held(db) == 1 && !slots_daemon_attached(&db->region))
    return sdb_fail(SOCHDB_DAEMON, "commit %llu is applied and visible, but nothing confirmed it durable within "
                    "%u ms: %s/LOCK is held, yet no daemon serves this database's region (another program holds "
                    "the lock, or a sochdbd serves a region that was replaced; see %s/sochdbd.log)",
                    (unsigned long long)seq, limit_ms, db->dir, db->dir);
  return sdb_fail(SOCHDB_DAEMON, "commit %llu is applied and visible, but the daemon did not confirm it durable "
                  "within %u ms (%s/sochdbd.log says why: a full disk, an I/O error?)", (unsigned long long)seq,
                  limit_ms, db->dir);
}

/* Wait until seq is durable, at most limit_ms, looking every poll_ms: the
** writer is kicked, and a daemon started once none holds DIR/LOCK (a dead
** one, or one that has left). 1 once durable, 0 when the time ran out. */
static int durable_within(sochdb *db, uint64_t seq, unsigned limit_ms, unsigned poll_ms)
{
  shm_region *r = &db->region;
  struct timespec deadline;
  durable_deadline(&deadline, limit_ms);
  durable_kick(r);
  while (!durable_wait(r, seq, poll_ms)) {
    if (past(&deadline))
      return 0;
    sdb_daemon_ensure_within(db, ms_until(&deadline));
    durable_kick(r);
  }
  return 1;
}

/* SOCHDB_SYNC: wait for the group commit that covers seq, restarting a dead
** daemon on the way. The commit is already applied and visible; if it cannot
** be confirmed durable in time, say so (SOCHDB_DAEMON), never hang. */
static int wait_durable(sochdb *db, uint64_t seq)
{
  /* busy_timeout_ms is about memtable room; a durability wait must also
  ** survive a slow fdatasync and a daemon restart, so it is never shorter
  ** than DURABLE_WAIT_MIN_MS. */
  unsigned limit_ms = db->busy_timeout_ms > DURABLE_WAIT_MIN_MS ? db->busy_timeout_ms : DURABLE_WAIT_MIN_MS;
  return durable_within(db, seq, limit_ms, 100) ? SOCHDB_OK : durable_timeout(db, seq, limit_ms);
}

#define SUCCESSOR_WAIT_MS 2000u

/* SOCHDB_ASYNC, when the WAL writer said it is leaving (durable_nudge): its
** daemon stops, and its last pass may have missed our commit, published
** after it; its committer's probe would still find the daemon serving, and
** the commit would wait, acknowledged and not durable, for whoever commits
** or opens next. So wait until the commit is durable (the last pass had it)
** or the daemon let go of DIR/LOCK, and start its successor then (which
** writes the commit), both within SUCCESSOR_WAIT_MS: a daemon leaves
** within milliseconds of its writer's last pass. A handle whose wait ran
** out (the writer of a region nobody serves now: it was replaced) does not
** wait again until it finds a writer that is not leaving. */
static void see_to_a_successor(sochdb *db, uint64_t seq)
{
  /* relaxed, both: a hint of this handle's, ordering nothing */
  if (atomic_load_explicit(&db->successor_lapsed, memory_order_relaxed)) {
    sdb_daemon_ensure(db);
    return;
  }
  if (!durable_within(db, seq, SUCCESSOR_WAIT_MS, 2))   /* starts one once DIR/LOCK is free */
    atomic_store_explicit(&db->successor_lapsed, 1, memory_order_relaxed);
}

static int check_txn_size(const sochdb_txn *t)
{
  if (t->writes.n > MAX_TXN_OPS)
    return sdb_fail(SOCHDB_INVALID, "a transaction writes at most %u keys; this one writes %zu", MAX_TXN_OPS,
                    t->writes.n);
  if (t->writes.bytes > MAX_TXN_BYTES)
    return sdb_fail(SOCHDB_INVALID, "a transaction writes at most %llu bytes of keys and values; this one %zu",
                    (unsigned long long)MAX_TXN_BYTES, t->writes.bytes);
  return SOCHDB_OK;
}

#define INSTALLED_ON_STACK 64u

static int commit_writes(sochdb_txn *t, unsigned flags)
{
  sochdb *db = t->db;
  int size_rc = check_txn_size(t);
  if (size_rc != SOCHDB_OK) {
    count(&my_stats(db)->aborts, 1);
    return size_rc;
  }
  int stall_rc = wait_for_flushes(db, 1);
  if (stall_rc != SOCHDB_OK) {
    count(&my_stats(db)->aborts, 1);
    return stall_rc;
  }
  struct commit_ctx c = { .t = t, .r = &db->region, .e = sdb_txn_entry(t), .files_checked = NO_LIST };
  c.ref = txn_ref(db->slot, t->entry, atomic_load_explicit(&c.e->gen, memory_order_relaxed));
  const uint32_t *order = wbuf_sorted(&t->writes);   /* key order: see header */
  struct installed few[INSTALLED_ON_STACK];
  struct installed *at = !order ? NULL : t->writes.n <= INSTALLED_ON_STACK ? few : malloc(t->writes.n * sizeof *at);
  if (!at)
    return sdb_fail(SOCHDB_NOMEM, "committing %zu writes", t->writes.n);
  /* The SSTable lookups of a transaction that versions newer than its
  ** snapshot have left memory since, made before the commit epoch (see
  ** check_flushed). */
  int rc = versions_left_memory(&c) ? check_flushed(&c, order) : SOCHDB_OK;
  CALLPOINT("commit.checked_flushed");
  /* Held while we may write into memtables: the flusher waits for it before
  ** it writes a rotated-out memtable to a file (daemon/flusher.c). */
  epoch_enter(c.r, &c.e->commit_epoch);
  c.kept = take_fingers(db);
  if (rc == SOCHDB_OK)
    rc = install_all(&c, order, at);
  if (c.kept)
    give_fingers(db);
  if (rc == SOCHDB_OK)
    rc = wait_for_writer(&c);
  if (at != few)
    free(at);
  struct shm_slot_stats *st = my_stats(db);
  if (rc != SOCHDB_OK) {
    slots_retire_descriptor(c.r, c.e, c.record_off);   /* aborts: our intents become invisible */
    epoch_leave(&c.e->commit_epoch);
    count(rc == SOCHDB_CONFLICT ? &st->conflicts : &st->aborts, 1);
    return rc == SOCHDB_CONFLICT ? sdb_fail(rc, "a concurrent transaction wrote the same key") : rc;
  }
  uint64_t seq = 0;
  rc = decide_and_publish(&c, seqring_did(db->slot, t->entry), &seq);
  epoch_leave(&c.e->commit_epoch);
  if (rc != SOCHDB_OK)
    return rc;
  count(&st->commits, 1);
  count(&st->keys_written, t->writes.n);
  count(&st->user_bytes, t->writes.bytes);
  if (flags & SOCHDB_ASYNC) {
    /* wakes the WAL writer only if it dozes; says whether it is leaving */
    if (durable_nudge(&db->region)) {
      see_to_a_successor(db, seq);
    } else {
      if (atomic_load_explicit(&db->successor_lapsed, memory_order_relaxed))   /* relaxed: a hint */
        atomic_store_explicit(&db->successor_lapsed, 0, memory_order_relaxed);
      sdb_daemon_ensure(db);      /* someone must write it: rate-limited probe */
    }
    return SOCHDB_OK;
  }
  return wait_durable(db, seq);
}

int sochdb_commit(sochdb_txn *t, unsigned flags)
{
  int rc = sdb_check_txn(t);
  if (rc != SOCHDB_OK) {
    if (t && t->db && atomic_load_explicit(&t->db->forked, memory_order_relaxed)) {
      sdb_txn_free(t);      /* the child may free its copy, nothing more */
    }
    return rc;
  }
  if (flags & ~SOCHDB_ASYNC) {
    sochdb_abort(t);
    return sdb_fail(SOCHDB_INVALID, "unknown commit flags 0x%x (the transaction was aborted)", flags);
  }
  if (t->writes.n) {
    /* A thread cancelled inside the commit's waits would leave its intents
    ** pending while its process lives on, blocking those keys. */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    rc = commit_writes(t, flags);
    pthread_setcancelstate(cancel_state, NULL);
  }
  finish_txn(t);
  return rc;
}

void sochdb_abort(sochdb_txn *t)
{
  if (!t || !t->db)   /* NULL or already ended: nothing to do */
    return;
  if (atomic_load_explicit(&t->db->forked, memory_order_relaxed)) {
    sdb_txn_free(t);
    return;
  }
  count(&my_stats(t->db)->aborts, 1);
  finish_txn(t);
}

void sdb_txn_abort_all(sochdb *db)
{
  for (uint32_t i = 0; i < SHM_TXNS_PER_SLOT; i++)
    sochdb_abort(db->open_txns[i]);
}
