/*
** test_slots.c — process slots (shm/slots.c): attaching and detaching,
** exhaustion, snapshot publication, the reclamation horizon and its protocol
** under threads, retiring commit descriptors, and the reaper.
**
** No fork here (the file also runs under TSan). A "dead process" is
** simulated in-process: a slot whose liveness lock (an OFD lock on byte
** <slot> of the region file) nobody holds, but whose owner_pid is non-zero —
** exactly what the kernel leaves behind when the owner is killed. Its
** transaction entries are filled by hand: a published snapshot, a PENDING
** descriptor with intent versions installed on real keys (through
** mv_install, as a committer would), and a claimed entry of the commit
** sequence ring. kill -9 scenarios with real processes live in the
** multi-process suites.
**
** Transaction entries used directly by a test are first reserved in the
** handle's entry bitmap, so the public API's transactions never take them.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include "arena.h"
#include "durable.h"
#include "epoch.h"
#include "error.h"
#include "internal.h"
#include "mvcc.h"
#include "region.h"
#include "seqring.h"
#include "skiplist.h"
#include "slots.h"
#include "sochdb.h"
#include "testhooks.h"
#include "testutil.h"

/* ------------------------------------------------------------ fixture */

/* tu_teardown unlinks the region file of tu_db_dir by its path, whatever
** state the region is in. */
TestSuite(slots, .init = tu_setup_without_daemon, .fini = tu_teardown, .timeout = 60);

static sochdb *open_db(void) { return tu_open(8u << 20, 1u << 20, 0); }

static struct shm_global_stats *gstats(sochdb *db) { return &db->region.hdr->stats; }
static uint64_t reaped_count(sochdb *db) { return atomic_load(&gstats(db)->processes_reaped); }
static uint64_t rolled_back_count(sochdb *db) { return atomic_load(&gstats(db)->dead_txns_rolled_back); }

/* Keep the public API off transaction entry e of db's slot. */
static void reserve_entry(sochdb *db, uint32_t e)
{
  uint64_t old = atomic_fetch_or(&db->entry_bits[e / 64], 1ull << (e % 64));
  cr_assert_eq(old & (1ull << (e % 64)), 0u, "entry %u of slot %u is already in use", e, db->slot);
}

static void release_entry(sochdb *db, uint32_t e)
{
  atomic_fetch_and(&db->entry_bits[e / 64], ~(1ull << (e % 64)));
}

/* The commit record of descriptor e, made with room for `cap` versions on
** first use, as txn.c's new_commit_record does when a commit begins. */
static struct mv_commit *record_of(shm_region *r, struct shm_txn_entry *e, uint32_t cap)
{
  uint64_t off = atomic_load(&e->record);
  if (!off) {
    off = arena_alloc(r, arena_active(r), mv_commit_bytes(cap));
    cr_assert_neq(off, 0u, "arena_alloc of a commit record: the active memtable is full");
    mv_commit_init(shm_at(r, off), cap);
    atomic_store_explicit(&e->record, off, memory_order_release);
  }
  return shm_at(r, off);
}

#define RECORD_CAP 64u   /* versions a test descriptor lists, unless record_of made it bigger first */

/* A version in the active memtable, owned by descriptor (slot, entry) and
** listed in that descriptor's commit record, as txn.c's make_version and
** list_version do. Not in any key's chain. */
static uint64_t new_version(shm_region *r, uint32_t slot, uint32_t entry, const char *val)
{
  struct shm_txn_entry *e = shm_txn_entry_at(r, slot, entry);
  struct mv_commit *rec = record_of(r, e, RECORD_CAP);
  cr_assert_lt(atomic_load(&rec->nops), rec->cap, "the test's commit record is full");
  size_t vlen = strlen(val);
  uint64_t off = arena_alloc(r, arena_active(r), mv_version_bytes(vlen));
  cr_assert_neq(off, 0u, "arena_alloc: the active memtable is full");
  mv_version_fill(r, shm_at(r, off), mv_pending_state(txn_ref(slot, entry, atomic_load(&e->gen))), 0, val,
                  (uint32_t)vlen, 0);
  mv_commit_add(r, rec, off);
  return off;
}

/* An intent of descriptor (slot, entry) on key: installed on top of the key's
** chain, so readers and writers of key meet it. */
static uint64_t install_intent(shm_region *r, uint32_t slot, uint32_t entry, const char *key, const char *val)
{
  uint32_t mt = arena_active(r);
  uint64_t node = sl_find_or_insert(r, mt, key, (uint32_t)strlen(key));
  cr_assert_neq(node, 0u, "sl_find_or_insert(%s) failed", key);
  uint64_t off = new_version(r, slot, entry, val);
  uint64_t other = 0;
  enum mv_install_result res = mv_install(r, node, off, seqring_published(r), &other);
  cr_assert_eq(res, MV_INSTALLED, "mv_install(%s) = %d (other %llu)", key, (int)res, (unsigned long long)other);
  return off;
}

static struct mv_version *ver(sochdb *db, uint64_t off) { return shm_at(&db->region, off); }

/* A slot nobody holds, to play the dead process's. Its owner would have
** attached first, raising slots_high past it (slots_scan_bound). */
static uint32_t free_slot(sochdb *db, uint32_t want)
{
  struct shm_slot *s = shm_slot_at(&db->region, want);
  cr_assert_eq(atomic_load(&s->owner_pid), 0u, "slot %u is not free", want);
  _Atomic uint32_t *high = &db->region.hdr->slots_high;
  uint32_t cur = atomic_load(high);
  while (cur <= want && !atomic_compare_exchange_weak(high, &cur, want + 1)) {
  }
  return want;
}

/* The owner "dies": its lock is not held (nobody took it), its pid stays. */
static void mark_dead_owner(sochdb *db, uint32_t slot)
{
  atomic_store(&shm_slot_at(&db->region, slot)->owner_pid, (uint64_t)getpid());
}

/* Run fn(arg) in a thread and wait for it, bounded: returns 1 if it finished. */
struct bounded { void *(*fn)(void *); void *arg; _Atomic int done; };
static void *bounded_main(void *p)
{
  struct bounded *b = p;
  b->fn(b->arg);
  atomic_store(&b->done, 1);
  return NULL;
}
static int run_bounded(void *(*fn)(void *), void *arg, unsigned limit_ms)
{
  static struct bounded b;   /* must outlive a thread we give up on */
  b.fn = fn;
  b.arg = arg;
  atomic_store(&b.done, 0);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, bounded_main, &b), 0, "pthread_create");
  for (unsigned i = 0; i < limit_ms && !atomic_load(&b.done); i++)
    tu_sleep_ms(1);
  if (!atomic_load(&b.done))
    return 0;                /* leave it: the test fails and its process ends */
  pthread_join(th, NULL);
  return 1;
}

/* ------------------------------------------------------------ attach / detach */

Test(slots, attach_and_detach_update_the_count)
{
  sochdb *a = open_db();
  cr_assert_eq(tu_stats(a).processes_attached, 1u, "one handle");
  struct shm_slot *sa = shm_slot_at(&a->region, a->slot);
  cr_assert_eq(atomic_load(&sa->owner_pid), (uint64_t)getpid(), "owner_pid of our slot");
  sochdb *b = open_db();
  sochdb *c = open_db();
  cr_assert(a->slot != b->slot && b->slot != c->slot && a->slot != c->slot, "slots %u %u %u are not distinct",
            a->slot, b->slot, c->slot);
  cr_assert_eq(tu_stats(a).processes_attached, 3u, "three handles: %u", tu_stats(a).processes_attached);
  uint32_t bslot = b->slot;
  sochdb_close(b);
  cr_assert_eq(tu_stats(a).processes_attached, 2u, "after closing one: %u", tu_stats(a).processes_attached);
  cr_assert_eq(atomic_load(&shm_slot_at(&a->region, bslot)->owner_pid), 0u, "a detached slot is free");
  cr_assert_eq(reaped_count(a), 0u, "a clean detach is not a reap");
  sochdb *d = open_db();
  cr_assert_eq(d->slot, bslot, "the freed slot %u is reused, got %u", bslot, d->slot);
  cr_assert_eq(tu_stats(c).processes_attached, 3u, "every handle sees the same count");
  sochdb_close(d);
  sochdb_close(c);
  cr_assert_eq(tu_stats(a).processes_attached, 1u, "back to one: %u", tu_stats(a).processes_attached);
  sochdb_close(a);
}

/* Scans of every transaction entry (horizon, epochs, stats) stop at the
** highest slot ever attached, and slots are reserved when first attached:
** slots no process attached hold no memory. The region goes in a tmpfs for
** this (where reading a page allocates it, as on /dev/shm; the suite's
** region directory may be on a disk, where it does not). Memory is the
** file's st_blocks (mincore cannot see reserved, untouched pages), and a
** page read by a scan is also in mincore. */
static uint64_t region_blocks(shm_region *r)
{
  struct stat st;
  cr_assert_eq(fstat(r->fd, &st), 0, "fstat: %s", strerror(errno));
  return (uint64_t)st.st_blocks * 512;
}

static unsigned char page_mapped(shm_region *r, uint64_t off)
{
  unsigned char v = 0;
  cr_assert_eq(mincore(r->base + (off & ~4095ull), 4096, &v), 0, "mincore: %s", strerror(errno));
  return v & 1;
}

/* Slots [0, n) are reserved: reserving them again allocates nothing. */
static void expect_slots_reserved(shm_region *r, uint32_t n, const char *ctx)
{
  uint64_t before = region_blocks(r);
  uint64_t end = (r->hdr->slots_off + (uint64_t)n * sizeof(struct shm_slot) + 4095) & ~4095ull;
  cr_assert_eq(fallocate(r->fd, FALLOC_FL_KEEP_SIZE, 4096, (off_t)(end - 4096)), 0, "fallocate: %s",
               strerror(errno));
  cr_assert_eq(region_blocks(r), before, "%s: slots below %u were not all reserved (%llu more bytes now)", ctx, n,
               (unsigned long long)(region_blocks(r) - before));
}

static char *use_tmpfs_regions(char *dir)
{
  struct statfs fs;
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC)
    return NULL;
  cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
  const char *saved = getenv("SOCHDB_SHM_DIR");
  char *saved_copy = strdup(saved ? saved : "");
  setenv("SOCHDB_SHM_DIR", dir, 1);
  return saved_copy;
}

static void restore_regions(const char *dir, char *saved)
{
  tu_remove_region(tu_dir());
  rmdir(dir);
  if (*saved) setenv("SOCHDB_SHM_DIR", saved, 1);
  else unsetenv("SOCHDB_SHM_DIR");
  free(saved);
}

Test(slots, unattached_slots_hold_no_memory)
{
  char shm_dir[] = "/dev/shm/sochdb-test-XXXXXX";
  char *saved = use_tmpfs_regions(shm_dir);
  if (!saved)
    cr_skip_test("/dev/shm is not a tmpfs here");
  sochdb_test_without_daemon(1);   /* exactly our slots */
  sochdb *a = open_db();
  sochdb *b = open_db();
  shm_region *r = &a->region;
  uint32_t high = atomic_load(&r->hdr->slots_high);
  cr_assert_eq(high, 2u, "slots_high %u with slots %u and %u attached", high, a->slot, b->slot);
  expect_slots_reserved(r, 2, "two handles");
  uint64_t start = region_blocks(r);
  for (int i = 0; i < 20; i++)   /* commits: snapshots, horizon scans */
    tu_commit_kv(a, "k", "v", SOCHDB_ASYNC);
  (void)tu_stats(a);               /* every scan, directly: none reads past slot 1 */
  slots_compute_horizon(r);
  (void)epoch_oldest_commit(r);
  (void)hazard_memtables(r);
  (void)hazard_file_lists(r);
  cr_assert_eq(region_blocks(r), start, "commits and scans took %llu bytes more", 
               (unsigned long long)(region_blocks(r) - start));
  uint64_t from = r->hdr->slots_off + 3 * sizeof(struct shm_slot);   /* past slot 2's first page */
  for (uint64_t off = (from + 4095) & ~4095ull; off + 4096 <= r->hdr->ring_off; off += 4096)
    cr_assert_eq(page_mapped(r, off), 0, "page %#llx of the slots section, past the two attached slots, was read",
                 (unsigned long long)off);
  cr_assert_eq(page_mapped(r, r->hdr->slots_off + sizeof(struct shm_slot)), 1, "an attached slot's page is not "
               "mapped (the check above means nothing)");

  uint32_t gone = b->slot;
  sochdb_close(b);
  cr_assert_eq(atomic_load(&r->hdr->slots_high), high, "a detach never lowers slots_high");
  sochdb *c = open_db();
  cr_assert_eq(c->slot, gone, "the freed slot is reused");
  sochdb_close(c);
  /* the next slot, when no page can be had for it: SOCHDB_BUSY naming the cause */
  sochdb *d = open_db();
  sochdb_test_fault("shm.reserve", ENOSPC, 0, 1);
  sochdb *e = NULL;
  sochdb_options o = tu_options(8u << 20, 1u << 20, 0);
  int rc = sochdb_open(tu_dir(), &o, &e);
  sochdb_test_fault(NULL, 0, 0, 0);
  cr_assert_eq(rc, SOCHDB_BUSY, "attaching a slot without memory for it: %s", sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), "process slot"), "the cause is named: %s", sochdb_last_error());
  cr_assert_eq(atomic_load(&r->hdr->slots_high), 2u, "a slot that got no memory is not scanned");
  uint64_t before = region_blocks(r);
  rc = sochdb_open(tu_dir(), &o, &e);
  cr_assert_eq(rc, SOCHDB_OK, "memory is back: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  uint64_t grown = region_blocks(r) - before;
  cr_assert(grown >= 4096 && grown <= 4 * 4096, "attaching a third slot reserved %llu bytes, not its own pages "
            "(%zu bytes a slot)", (unsigned long long)grown, sizeof(struct shm_slot));
  cr_assert_eq(atomic_load(&r->hdr->slots_high), 3u, "the third slot is scanned once attached");
  expect_slots_reserved(r, 3, "three handles");
  sochdb_close(e);
  sochdb_close(d);
  sochdb_close(a);
  sochdb_test_without_daemon(0);
  restore_regions(shm_dir, saved);
}

/* A slot locked by a process that has not reserved it yet (or died before
** it could) lies below the slot a later process attaches: the later one
** reserves every slot below its own, so the scans, which read every slot
** below slots_high, never touch an unreserved page (a SIGBUS on a full
** tmpfs), and whoever takes the skipped slot later finds it reserved. */
Test(slots, a_slot_skipped_while_locked_is_reserved_by_the_next_attach)
{
  char shm_dir[] = "/dev/shm/sochdb-test-XXXXXX";
  char *saved = use_tmpfs_regions(shm_dir);
  if (!saved)
    cr_skip_test("/dev/shm is not a tmpfs here");
  sochdb_test_without_daemon(1);
  sochdb *a = open_db();
  shm_region *r = &a->region;
  cr_assert_eq(a->slot, 0u, "the first handle takes slot 0");
  /* slot 1's liveness lock, held by another open file description: an attacher between its lock and its reservation */
  int fd = open(r->path, O_RDWR);
  cr_assert_geq(fd, 0, "open %s: %s", r->path, strerror(errno));
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1 };
  cr_assert_eq(fcntl(fd, F_OFD_SETLK, &fl), 0, "lock slot 1: %s", strerror(errno));
  sochdb *b = open_db();
  cr_assert_eq(b->slot, 2u, "slot 1 is locked: the second handle takes slot 2, not %u", b->slot);
  cr_assert_eq(atomic_load(&r->hdr->slots_high), 3u, "slots_high");
  expect_slots_reserved(r, 3, "slot 1 skipped while locked");
  close(fd);                       /* the would-be attacher is gone */
  sochdb *c = open_db();
  cr_assert_eq(c->slot, 1u, "the skipped slot is taken next");
  expect_slots_reserved(r, 3, "slot 1 taken");
  sochdb_close(c);
  sochdb_close(b);
  sochdb_close(a);
  sochdb_test_without_daemon(0);
  restore_regions(shm_dir, saved);
}

Test(slots, a_released_slot_keeps_its_counters_for_its_next_owner)
{
  sochdb *a = open_db();
  sochdb *b = open_db();
  tu_commit_kv(b, "k1", "v", SOCHDB_ASYNC);
  tu_commit_kv(b, "k2", "v", SOCHDB_ASYNC);
  sochdb_stats s = tu_stats(a);
  cr_assert_eq(s.commits, 2u, "commits seen by another handle: %llu", (unsigned long long)s.commits);
  uint32_t slot = b->slot;
  sochdb_close(b);
  s = tu_stats(a);
  cr_assert_eq(s.commits, 2u, "commits survive the committer's detach: %llu", (unsigned long long)s.commits);
  cr_assert_eq(s.keys_written, 2u, "keys_written: %llu", (unsigned long long)s.keys_written);
  sochdb *c = open_db();   /* no daemon in this suite: nothing else takes the free slot meanwhile */
  cr_assert_eq(c->slot, slot, "the next handle takes the free slot %u, not %u", slot, c->slot);
  tu_commit_kv(c, "k3", "v", SOCHDB_ASYNC);
  cr_assert_eq(atomic_load(&shm_slot_at(&a->region, slot)->stats.commits), 3u,
               "the new owner counts on from the slot's 2");
  s = tu_stats(a);
  cr_assert_eq(s.commits, 3u, "each commit counted once: %llu", (unsigned long long)s.commits);
  sochdb_close(c);
  sochdb_close(a);
}

struct come_and_go {
  const char *dir;
  sochdb_options o;
  int rounds;
  char key;         /* its own, so that the threads never conflict */
  int failed;       /* the round that failed, + 1 */
  int rc;
};

/* Attach, commit once, detach: rounds times. */
static void *come_and_go_thread(void *p)
{
  struct come_and_go *w = p;
  for (int i = 0; i < w->rounds && !w->failed; i++) {
    sochdb *db = NULL;
    sochdb_txn *t = NULL;
    w->rc = sochdb_open(w->dir, &w->o, &db);
    if (w->rc == SOCHDB_OK)
      w->rc = sochdb_txn_begin(db, 0, &t);
    if (w->rc == SOCHDB_OK)
      w->rc = sochdb_put(t, &w->key, 1, "v", 1);
    if (w->rc == SOCHDB_OK)
      w->rc = sochdb_commit(t, SOCHDB_ASYNC);
    else if (t)
      sochdb_abort(t);
    if (db)
      sochdb_close(db);
    if (w->rc != SOCHDB_OK)
      w->failed = i + 1;
  }
  return NULL;
}

/* A reading of the totals made while a process released its slot used to
** miss its counts (taken from the slot, not yet added to the header), and
** the reading after it was back up: a monitor saw commits go backwards. */
Test(slots, totals_never_dip_while_handles_come_and_go)
{
  enum { NT = 2, ROUNDS = 1500 };
  sochdb *db = open_db();
  struct come_and_go w[NT];
  pthread_t th[NT];
  for (int i = 0; i < NT; i++) {
    w[i] = (struct come_and_go){ tu_dir(), tu_options(8u << 20, 1u << 20, 0), ROUNDS, (char)('a' + i), 0, SOCHDB_OK };
    cr_assert_eq(pthread_create(&th[i], NULL, come_and_go_thread, &w[i]), 0, "pthread_create");
  }
  uint64_t readings = 0, last = 0;
  int joined[NT] = { 0 };
  for (;;) {
    int running = 0;
    for (int i = 0; i < NT; i++)
      if (!joined[i] && !(joined[i] = pthread_tryjoin_np(th[i], NULL) == 0))
        running = 1;
    sochdb_stats s = tu_stats(db);
    readings++;
    cr_assert_geq(s.commits, last, "reading %llu: commits went from %llu down to %llu", (unsigned long long)readings,
                  (unsigned long long)last, (unsigned long long)s.commits);
    last = s.commits;
    if (!running)
      break;
  }
  for (int i = 0; i < NT; i++)
    cr_assert_eq(w[i].failed, 0, "thread %d, round %d: %s", i, w[i].failed, sochdb_strerror(w[i].rc));
  cr_assert_eq(last, (uint64_t)NT * ROUNDS, "every commit counted once: %llu", (unsigned long long)last);
  cr_log_info("%llu readings", (unsigned long long)readings);
  sochdb_close(db);
}

#define NHANDLES SHM_MAX_SLOTS

Test(slots, all_slots_taken_gives_busy_and_a_detach_frees_one)
{
  static sochdb *h[NHANDLES];
  static unsigned char seen[NHANDLES];
  memset(seen, 0, sizeof seen);
  for (unsigned i = 0; i < NHANDLES; i++) {
    h[i] = open_db();
    cr_assert_lt(h[i]->slot, SHM_MAX_SLOTS, "slot %u out of range", h[i]->slot);
    cr_assert(!seen[h[i]->slot], "slot %u handed out twice", h[i]->slot);
    seen[h[i]->slot] = 1;
  }
  cr_assert_eq(tu_stats(h[0]).processes_attached, NHANDLES, "all %u slots held: %u", NHANDLES,
               tu_stats(h[0]).processes_attached);

  sochdb_options o;
  memset(&o, 0, sizeof o);
  o.region_bytes = 8u << 20;
  o.memtable_bytes = 1u << 20;
  sochdb *extra = (sochdb *)0x1;
  sdb_clear_error();
  int rc = sochdb_open(tu_db_dir, &o, &extra);
  cr_assert_eq(rc, SOCHDB_BUSY, "open #%u: expected SOCHDB_BUSY, got %s", NHANDLES + 1, sochdb_strerror(rc));
  cr_assert_null(extra, "a refused open left *out set");
  cr_assert(sochdb_last_error()[0] != '\0', "SOCHDB_BUSY without a detail");
  cr_assert_eq(tu_stats(h[0]).processes_attached, NHANDLES, "the refused open changed the count");
  cr_assert_eq(reaped_count(h[0]), 0u, "no slot was dead");

  uint32_t freed = h[77]->slot;
  sochdb_close(h[77]);
  rc = sochdb_open(tu_db_dir, &o, &h[77]);
  cr_assert_eq(rc, SOCHDB_OK, "open after a detach: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  cr_assert_eq(h[77]->slot, freed, "the new handle should get the freed slot %u, got %u", freed, h[77]->slot);
  rc = sochdb_open(tu_db_dir, &o, &extra);
  cr_assert_eq(rc, SOCHDB_BUSY, "full again: expected SOCHDB_BUSY, got %s", sochdb_strerror(rc));

  /* the handles all work: one commits, another reads */
  tu_commit_kv(h[5], "full", "house", SOCHDB_ASYNC);
  char buf[16];
  rc = tu_read_str(h[200], "full", buf, sizeof buf);
  cr_assert(rc == SOCHDB_OK && strcmp(buf, "house") == 0, "read through another handle: rc %d", rc);

  for (unsigned i = 0; i < NHANDLES; i++)
    sochdb_close(h[i]);
  sochdb *last = open_db();
  cr_assert_eq(tu_stats(last).processes_attached, 1u, "after closing all: %u", tu_stats(last).processes_attached);
  sochdb_close(last);
}

/* ------------------------------------------------------------ snapshots and horizon */

Test(slots, publish_snapshot_returns_the_published_seq)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  reserve_entry(db, 120);
  struct shm_txn_entry *e = shm_txn_entry_at(r, db->slot, 120);
  uint64_t s = slots_publish_snapshot(r, e);
  cr_assert_eq(s, 1u, "snapshot of a new database: %llu", (unsigned long long)s);
  cr_assert_eq(atomic_load(&e->snapshot), 1u, "the entry holds the snapshot");
  for (int i = 0; i < 3; i++)
    tu_commit_kv(db, "k", "v", SOCHDB_ASYNC);
  s = slots_publish_snapshot(r, e);
  cr_assert_eq(s, seqring_published(r), "snapshot %llu vs published %llu", (unsigned long long)s,
               (unsigned long long)seqring_published(r));
  cr_assert_eq(s, 4u, "three commits after seq 1: %llu", (unsigned long long)s);
  cr_assert_eq(atomic_load(&e->snapshot), s, "the entry holds the new snapshot");
  sochdb_stats st = tu_stats(db);
  cr_assert_eq(st.transactions_open, 1u, "the entry counts as an open transaction: %u", st.transactions_open);
  cr_assert_eq(st.oldest_snapshot, 4u, "oldest_snapshot %llu", (unsigned long long)st.oldest_snapshot);
  atomic_store(&e->snapshot, 0);
  release_entry(db, 120);
  sochdb_close(db);
}

Test(slots, compute_horizon_is_the_oldest_snapshot_or_published)
{
  sochdb *db = open_db();
  sochdb *db2 = open_db();
  shm_region *r = &db->region;
  cr_assert_eq(slots_compute_horizon(r), 1u, "no snapshot, nothing committed");
  tu_commit_kv(db, "a", "1", SOCHDB_ASYNC);
  tu_commit_kv(db, "a", "2", SOCHDB_ASYNC);                /* published 3 */
  cr_assert_eq(slots_compute_horizon(r), 3u, "no snapshot: the published seq");
  cr_assert_eq(atomic_load(&r->hdr->horizon), 3u, "stored in the header");

  sochdb_txn *t1 = NULL, *t2 = NULL;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t1), SOCHDB_OK, "begin t1");   /* snapshot 3 */
  tu_commit_kv(db, "a", "3", SOCHDB_ASYNC);                /* 4 */
  cr_assert_eq(sochdb_txn_begin(db2, SOCHDB_TXN_READONLY, &t2), SOCHDB_OK, "begin t2");  /* snapshot 4 */
  tu_commit_kv(db2, "a", "4", SOCHDB_ASYNC);               /* 5 */
  tu_commit_kv(db2, "a", "5", SOCHDB_ASYNC);               /* 6 */
  uint64_t h = slots_compute_horizon(r);
  cr_assert_eq(h, 3u, "oldest snapshot is t1's 3, horizon %llu", (unsigned long long)h);
  cr_assert_eq(slots_compute_horizon(&db2->region), 3u, "the other handle computes the same horizon");
  sochdb_stats st = tu_stats(db2);
  cr_assert_eq(st.oldest_snapshot, 3u, "stats oldest_snapshot %llu", (unsigned long long)st.oldest_snapshot);
  cr_assert_eq(st.transactions_open, 2u, "stats transactions_open %u", st.transactions_open);

  sochdb_abort(t1);
  h = slots_compute_horizon(r);
  cr_assert_eq(h, 4u, "t1 gone: t2's snapshot 4 is the oldest, horizon %llu", (unsigned long long)h);
  cr_assert_eq(atomic_load(&r->hdr->horizon), 4u, "header horizon %llu", (unsigned long long)atomic_load(&r->hdr->horizon));
  sochdb_abort(t2);
  h = slots_compute_horizon(r);
  cr_assert_eq(h, 6u, "no snapshot: published 6, horizon %llu", (unsigned long long)h);

  /* a new snapshot is never below the stored horizon */
  sochdb_txn *t3 = NULL;
  cr_assert_eq(sochdb_txn_begin(db2, 0, &t3), SOCHDB_OK, "begin t3");
  cr_assert_eq(atomic_load(&sdb_txn_entry(t3)->snapshot), 6u, "t3's snapshot");
  cr_assert_eq(slots_compute_horizon(r), 6u, "horizon with t3 open");
  sochdb_abort(t3);
  sochdb_close(db2);
  sochdb_close(db);
}

/* The protocol under threads. Two horizon threads (concurrent reclaimers)
** number their computations: each takes index i = ++started (seq_cst) before
** computing, stores the result in results[i] and then sets done[i]. A reader
** that published snapshot S then reads `started` = g0: every computation
** numbered > g0 began after S was published, and each of those found done
** while S is still held must have returned <= S. (hdr->horizon itself may
** briefly pass a snapshot that a reader is publishing concurrently; the
** reclaimer uses the return value, which comes from the second scan, so that
** is what is checked.) Everyone also checks that hdr->horizon, as they see
** it, never moves backwards. A committer keeps publishing new sequence
** numbers meanwhile, so snapshots keep moving. */
#define HZ_MAX 200000
#define HZ_MIN_CHECKS 500
static _Atomic uint64_t hz_started;
static _Atomic uint64_t hz_results[HZ_MAX + 1];
static _Atomic int hz_done[HZ_MAX + 1];
static _Atomic int hz_stop;
static _Atomic uint64_t hz_commits, hz_backwards;

struct hz_reader {
  sochdb *db;
  uint32_t entry;
  _Atomic uint64_t checks;
  uint64_t publishes, violations;
  uint64_t bad_snap, bad_h, bad_i;
  uint64_t above_published;
};

static void hz_watch(uint64_t *last, shm_region *r)
{
  uint64_t h = atomic_load(&r->hdr->horizon);
  if (h < *last)
    atomic_fetch_add(&hz_backwards, 1);
  *last = h;
}

static void *hz_horizon_thread(void *p)
{
  sochdb *db = p;
  uint64_t last = 0;
  while (!atomic_load(&hz_stop)) {
    uint64_t i = atomic_fetch_add(&hz_started, 1) + 1;   /* seq_cst */
    if (i > HZ_MAX)
      break;
    uint64_t h = slots_compute_horizon(&db->region);
    atomic_store_explicit(&hz_results[i], h, memory_order_relaxed);
    atomic_store_explicit(&hz_done[i], 1, memory_order_release);
    hz_watch(&last, &db->region);
  }
  return NULL;
}

static void *hz_reader_thread(void *p)
{
  struct hz_reader *a = p;
  shm_region *r = &a->db->region;
  struct shm_txn_entry *e = shm_txn_entry_at(r, a->db->slot, a->entry);
  uint64_t last = 0;
  for (unsigned iter = 0; iter < 2000000 && !atomic_load(&hz_stop); iter++) {
    uint64_t snap = slots_publish_snapshot(r, e);
    a->publishes++;
    if (snap > seqring_published(r))
      a->above_published++;
    hz_watch(&last, r);
    uint64_t g0 = atomic_load(&hz_started);   /* seq_cst, after the publication */
    if (g0 >= HZ_MAX) {
      atomic_store_explicit(&e->snapshot, 0, memory_order_release);
      break;
    }
    uint64_t c = g0;
    for (unsigned k = 0; k < 400; k++) {     /* let a computation or two finish (bounded) */
      c = atomic_load(&hz_started);
      if (c > HZ_MAX)
        c = HZ_MAX;
      if (c > g0 && atomic_load_explicit(&hz_done[g0 + 1], memory_order_acquire))
        break;
      sched_yield();
    }
    for (uint64_t i = g0 + 1; i <= c; i++) {
      if (!atomic_load_explicit(&hz_done[i], memory_order_acquire))
        continue;   /* still running: it may finish after we let go */
      uint64_t h = atomic_load_explicit(&hz_results[i], memory_order_relaxed);
      atomic_fetch_add_explicit(&a->checks, 1, memory_order_relaxed);
      if (h > snap && !a->violations++) {
        a->bad_snap = snap;
        a->bad_h = h;
        a->bad_i = i;
      }
    }
    atomic_store_explicit(&e->snapshot, 0, memory_order_release);
  }
  return NULL;
}

static void *hz_committer_thread(void *p)
{
  sochdb *db = p;
  for (unsigned i = 0; i < 30000 && !atomic_load(&hz_stop); i++) {   /* ~1.5 MB of versions: no arena fills */
    sochdb_txn *t = NULL;
    if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK)
      continue;
    char key[16];
    int kl = snprintf(key, sizeof key, "c%u", i % 64);
    if (sochdb_put(t, key, (size_t)kl, "x", 1) != SOCHDB_OK) {
      sochdb_abort(t);
      continue;
    }
    if (sochdb_commit(t, SOCHDB_ASYNC) == SOCHDB_OK)
      atomic_fetch_add(&hz_commits, 1);
  }
  return NULL;
}

Test(slots, horizon_never_passes_a_held_snapshot_under_threads)
{
  sochdb *db = tu_open(32u << 20, 8u << 20, 0);
  enum { NREADERS = 2, NHORIZON = 2 };
  atomic_store(&hz_started, 0);
  for (uint64_t i = 0; i <= HZ_MAX; i++)
    atomic_store_explicit(&hz_done[i], 0, memory_order_relaxed);
  atomic_store(&hz_stop, 0);
  atomic_store(&hz_commits, 0);
  atomic_store(&hz_backwards, 0);
  static struct hz_reader rd[NREADERS];
  pthread_t th_r[NREADERS], th_h[NHORIZON], th_c;
  for (int i = 0; i < NREADERS; i++) {
    memset(&rd[i], 0, sizeof rd[i]);
    rd[i].db = db;
    rd[i].entry = 100 + (uint32_t)i;
    reserve_entry(db, rd[i].entry);
  }
  for (int i = 0; i < NHORIZON; i++)
    cr_assert_eq(pthread_create(&th_h[i], NULL, hz_horizon_thread, db), 0, "pthread_create");
  for (int i = 0; i < NREADERS; i++)
    cr_assert_eq(pthread_create(&th_r[i], NULL, hz_reader_thread, &rd[i]), 0, "pthread_create");
  cr_assert_eq(pthread_create(&th_c, NULL, hz_committer_thread, db), 0, "pthread_create");
  /* run until every reader made enough checks and some commits happened
  ** (bounded: ~10 s at most; the assertions below say what was missing) */
  for (unsigned ms = 0; ms < 10000; ms++) {
    int enough = atomic_load(&hz_commits) >= 200;
    for (int i = 0; i < NREADERS; i++)
      enough = enough && atomic_load(&rd[i].checks) >= HZ_MIN_CHECKS;
    if (enough)
      break;
    tu_sleep_ms(1);
  }
  atomic_store(&hz_stop, 1);
  TU_JOIN(th_c, "the committer");
  for (int i = 0; i < NHORIZON; i++)
    TU_JOIN(th_h[i], "a horizon thread");
  for (int i = 0; i < NREADERS; i++)
    TU_JOIN(th_r[i], "a reader");

  uint64_t total_checks = 0;
  for (int i = 0; i < NREADERS; i++) {
    cr_assert_eq(rd[i].violations, 0u,
                 "reader %d: %llu horizons above a held snapshot (first: computation %llu returned %llu "
                 "while snapshot %llu was held)", i, (unsigned long long)rd[i].violations,
                 (unsigned long long)rd[i].bad_i, (unsigned long long)rd[i].bad_h,
                 (unsigned long long)rd[i].bad_snap);
    cr_assert_eq(rd[i].above_published, 0u, "reader %d: a snapshot above published_seq", i);
    cr_assert_gt(rd[i].publishes, 0u, "reader %d never published", i);
    total_checks += atomic_load(&rd[i].checks);
  }
  cr_assert_eq(atomic_load(&hz_backwards), 0u, "hdr->horizon was seen moving backwards %llu times",
               (unsigned long long)atomic_load(&hz_backwards));
  uint64_t commits = atomic_load(&hz_commits);
  uint64_t computed = atomic_load(&hz_started);
  cr_log_info("horizon protocol: %llu checks, %llu computations, %llu commits", (unsigned long long)total_checks,
              (unsigned long long)(computed > HZ_MAX ? HZ_MAX : computed), (unsigned long long)commits);
  cr_assert_gt(total_checks, 0u, "no computation ever overlapped a held snapshot: the test checked nothing");
  cr_assert_gt(commits, 0u, "no commit happened while horizons were computed");
  cr_assert_eq(seqring_published(&db->region), 1 + commits, "%llu commits: published %llu",
               (unsigned long long)commits, (unsigned long long)seqring_published(&db->region));
  uint64_t h = slots_compute_horizon(&db->region);
  cr_assert_eq(h, 1 + commits, "everything released: horizon %llu", (unsigned long long)h);
  cr_assert_eq(atomic_load(&db->region.hdr->horizon), 1 + commits, "stored horizon");
  for (int i = 0; i < NREADERS; i++)
    release_entry(db, rd[i].entry);
  sochdb_close(db);
}

/* ------------------------------------------------------------ retire */

Test(slots, retire_stamps_a_committed_descriptors_versions)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  reserve_entry(db, 120);
  struct shm_txn_entry *e = shm_txn_entry_at(r, db->slot, 120);
  uint64_t g0 = atomic_load(&e->gen);
  uint64_t v[3];
  for (int i = 0; i < 3; i++)
    v[i] = new_version(r, db->slot, 120, "val");
  for (int i = 0; i < 3; i++)
    cr_assert_eq(mv_resolve(r, ver(db, v[i])), 0u, "an undecided version resolves to pending");
  atomic_store(&e->seq, 42);
  atomic_store(&e->state, 42);            /* the commit point: decided at seq 42 */
  for (int i = 0; i < 3; i++)
    cr_assert_eq(mv_resolve(r, ver(db, v[i])), 42u, "a decided, unstamped version resolves through its descriptor");
  slots_retire_descriptor(r, e, slots_descriptor_record(e));
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(atomic_load(&ver(db, v[i])->state), 42u, "version %d stamped %llu, expected 42", i,
                 (unsigned long long)atomic_load(&ver(db, v[i])->state));
    cr_assert_eq(mv_resolve(r, ver(db, v[i])), 42u, "version %d resolves to 42 after retire", i);
  }
  cr_assert_eq(atomic_load(&e->gen), g0 + 1, "the generation moves on: %llu -> %llu", (unsigned long long)g0,
               (unsigned long long)atomic_load(&e->gen));
  cr_assert_eq(atomic_load(&e->state), (uint64_t)TXN_PENDING, "the descriptor is reset for reuse");
  cr_assert_eq(atomic_load(&e->record), 0u, "the commit record is let go");
  cr_assert_eq(atomic_load(&e->seq), 0u, "the claimed seq is cleared");

  /* reused: a new transaction on the same entry does not change old stamps */
  uint64_t w = new_version(r, db->slot, 120, "new");
  cr_assert_eq(txn_ref_gen(mv_pending_txn(ver(db, w))), txn_ref_gen(g0 + 1), "the new version names the new "
               "generation");
  cr_assert_eq(mv_resolve(r, ver(db, v[0])), 42u, "an old version does not follow the reused descriptor");
  cr_assert_eq(mv_resolve(r, ver(db, w)), 0u, "the new version is pending");
  slots_retire_descriptor(r, e, slots_descriptor_record(e));   /* never decided: aborted */
  cr_assert_eq(atomic_load(&ver(db, w)->state), MV_ABORTED, "an undecided retire stamps MV_ABORTED");
  cr_assert_eq(atomic_load(&ver(db, v[0])->state), 42u, "the earlier stamps stay");
  release_entry(db, 120);
  sochdb_close(db);
}

Test(slots, retire_stamps_pending_and_aborted_descriptors_aborted)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  reserve_entry(db, 121);
  reserve_entry(db, 122);
  struct shm_txn_entry *p = shm_txn_entry_at(r, db->slot, 121);
  struct shm_txn_entry *a = shm_txn_entry_at(r, db->slot, 122);
  uint64_t pv[2] = { new_version(r, db->slot, 121, "p0"), new_version(r, db->slot, 121, "p1") };
  uint64_t av = new_version(r, db->slot, 122, "a0");
  uint64_t pg = atomic_load(&p->gen), ag = atomic_load(&a->gen);
  atomic_store(&a->state, TXN_ABORTED);
  cr_assert_eq(mv_resolve(r, ver(db, av)), MV_ABORTED, "an aborted descriptor's version resolves aborted");

  slots_retire_descriptor(r, p, slots_descriptor_record(p));
  slots_retire_descriptor(r, a, slots_descriptor_record(a));
  for (int i = 0; i < 2; i++)
    cr_assert_eq(atomic_load(&ver(db, pv[i])->state), MV_ABORTED, "pending version %d stamped %llu", i,
                 (unsigned long long)atomic_load(&ver(db, pv[i])->state));
  cr_assert_eq(atomic_load(&ver(db, av)->state), MV_ABORTED, "aborted version stamped %llu",
               (unsigned long long)atomic_load(&ver(db, av)->state));
  cr_assert_eq(atomic_load(&p->gen), pg + 1, "pending descriptor's generation");
  cr_assert_eq(atomic_load(&a->gen), ag + 1, "aborted descriptor's generation");
  cr_assert_eq(atomic_load(&p->state), (uint64_t)TXN_PENDING, "reset");
  cr_assert_eq(atomic_load(&a->state), (uint64_t)TXN_PENDING, "reset");
  cr_assert_eq(atomic_load(&p->record) | atomic_load(&a->record), 0u, "records let go");

  /* an idle descriptor stays idle */
  slots_retire_descriptor(r, p, slots_descriptor_record(p));
  cr_assert_eq(atomic_load(&p->state), (uint64_t)TXN_PENDING, "an idle retire leaves the state PENDING");
  cr_assert_eq(atomic_load(&p->record), 0u, "and no record");
  release_entry(db, 121);
  release_entry(db, 122);
  sochdb_close(db);
}

/* ------------------------------------------------------------ reaping */

/* The dead process's state: entry 0 began at snapshot `snap`, installed
** intents on keys[0..n), claimed a commit seq; entry 1 only holds a snapshot. */
struct dead {
  uint32_t slot;
  uint64_t gen0;
  uint64_t seq;
  uint64_t v[2];
};

static void make_dead(sochdb *db, uint32_t slot, struct dead *d, const char *k0, const char *k1, int claim)
{
  shm_region *r = &db->region;
  d->slot = free_slot(db, slot);
  struct shm_txn_entry *e0 = shm_txn_entry_at(r, slot, 0), *e1 = shm_txn_entry_at(r, slot, 1);
  d->gen0 = atomic_load(&e0->gen);
  uint64_t snap = seqring_published(r);
  atomic_store(&e0->snapshot, snap);
  atomic_store(&e1->snapshot, snap > 1 ? snap - 1 : snap);
  d->v[0] = install_intent(r, slot, 0, k0, "dead-value-0");
  d->v[1] = install_intent(r, slot, 0, k1, "dead-value-1");
  d->seq = 0;
  if (claim) {
    d->seq = seqring_claim(r, db->slot, seqring_did(slot, 0));
    atomic_store(&e0->seq, d->seq);
  }
  atomic_store(&shm_slot_at(r, slot)->stats.commits, 5);   /* its counters must survive it */
  atomic_store(&shm_slot_at(r, slot)->stats.keys_written, 7);
  atomic_store(&shm_slot_at(r, slot)->stats.write_stalls, 3);
  atomic_store(&shm_slot_at(r, slot)->stats.write_stall_ns, 4000000);
  mark_dead_owner(db, slot);
}

Test(slots, reaping_a_dead_slot_rolls_back_its_pending_commit)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  tu_commit_kv(db, "base", "1", SOCHDB_ASYNC);
  tu_commit_kv(db, "base", "2", SOCHDB_ASYNC);             /* published 3 */
  struct dead d;
  make_dead(db, 200, &d, "dead-a", "dead-b", 1);
  struct shm_slot *s = shm_slot_at(r, d.slot);
  struct shm_txn_entry *e0 = &s->txn[0], *e1 = &s->txn[1];
  cr_assert_eq(d.seq, 4u, "the dead commit claimed seq %llu", (unsigned long long)d.seq);
  cr_assert_eq(seqring_published(r), 3u, "its claim holds publication back");
  uint64_t h = slots_compute_horizon(r);
  cr_assert_eq(h, 2u, "the dead slot's snapshots (3 and 2) hold the horizon at 2, got %llu", (unsigned long long)h);
  char buf[32];
  cr_assert_eq(tu_read_str(db, "dead-a", buf, sizeof buf), SOCHDB_NOTFOUND, "a pending intent is invisible");
  uint64_t reaped0 = reaped_count(db), rolled0 = rolled_back_count(db);

  int rc = slots_reap_if_dead(r, db->slot, d.slot);
  cr_assert_eq(rc, 1, "a slot whose lock is free but owner_pid is set must be reaped (returned %d)", rc);

  cr_assert_eq(atomic_load(&s->owner_pid), 0u, "the reaped slot is free");
  cr_assert_eq(atomic_load(&e0->snapshot), 0u, "entry 0's snapshot is dropped");
  cr_assert_eq(atomic_load(&e1->snapshot), 0u, "entry 1's snapshot is dropped");
  for (int i = 0; i < 2; i++)
    cr_assert_eq(atomic_load(&ver(db, d.v[i])->state), MV_ABORTED, "intent %d stamped %llu, expected MV_ABORTED",
                 i, (unsigned long long)atomic_load(&ver(db, d.v[i])->state));
  cr_assert_eq(atomic_load(&e0->state), (uint64_t)TXN_PENDING, "descriptor reset");
  cr_assert_eq(atomic_load(&e0->gen), d.gen0 + 1, "descriptor generation bumped");
  cr_assert_eq(atomic_load(&e0->record), 0u, "descriptor's record let go");
  cr_assert_eq(atomic_load(&e0->seq), 0u, "descriptor seq cleared");
  cr_assert_eq(seqring_published(r), d.seq, "the dead claim is decided and published over: %llu",
               (unsigned long long)seqring_published(r));
  cr_assert_eq(reaped_count(db), reaped0 + 1, "processes_reaped %llu", (unsigned long long)reaped_count(db));
  cr_assert_eq(rolled_back_count(db), rolled0 + 1, "dead_txns_rolled_back %llu (one entry had intents)",
               (unsigned long long)rolled_back_count(db));
  cr_assert_eq(atomic_load(&s->stats.commits), 5u, "the slot keeps its counters: shm_slot_stats");
  sochdb_stats st = tu_stats(db);
  cr_assert_eq(st.commits, 2u + 5u, "the dead slot's 5 commits are kept in the totals: %llu",
               (unsigned long long)st.commits);
  cr_assert_eq(st.keys_written, 2u + 7u, "keys_written %llu", (unsigned long long)st.keys_written);
  cr_assert(st.write_stalls == 3 && st.write_stall_us == 4000, "its write stalls kept: %llu, %llu us",
            (unsigned long long)st.write_stalls, (unsigned long long)st.write_stall_us);
  cr_assert_eq(st.processes_attached, 1u, "only we are attached");
  cr_assert_eq(st.processes_reaped, 1u, "stats processes_reaped");
  cr_assert_eq(st.dead_txns_rolled_back, 1u, "stats dead_txns_rolled_back");
  h = slots_compute_horizon(r);
  cr_assert_eq(h, d.seq, "nothing held: horizon = published %llu, got %llu", (unsigned long long)d.seq,
               (unsigned long long)h);

  /* the keys are free again: no conflict, no wait */
  cr_assert_eq(tu_read_str(db, "dead-a", buf, sizeof buf), SOCHDB_NOTFOUND, "the aborted intent stays invisible");
  tu_commit_kv(db, "dead-a", "alive", SOCHDB_ASYNC);
  cr_assert_eq(tu_read_str(db, "dead-a", buf, sizeof buf), SOCHDB_OK, "read back");
  cr_assert_str_eq(buf, "alive", "value after the reap");
  cr_assert_eq(tu_read_str(db, "dead-b", buf, sizeof buf), SOCHDB_NOTFOUND, "the other intent is gone too");

  /* reaping again: the slot is free, nothing is counted twice */
  rc = slots_reap_if_dead(r, db->slot, d.slot);
  cr_assert_eq(rc, 1, "a free slot reports 1");
  cr_assert_eq(reaped_count(db), reaped0 + 1, "a free slot is not reaped twice");
  sochdb_close(db);
}

/* The reaper runs inside every open. A dead slot whose commit record is
** damaged (an offset past the mapping, or a version count past its room)
** crashed it, and so every later open: the record is bounded first, and
** what it cannot reach stays pending (invisible), while the reap goes on. */
Test(slots, reaping_a_dead_slot_with_a_damaged_record_stays_inside_the_region)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  tu_commit_kv(db, "base", "1", SOCHDB_ASYNC);
  for (int damage = 0; damage < 3; damage++) {
    struct dead d;
    char k0[16], k1[16];
    snprintf(k0, sizeof k0, "dmg%d-a", damage);
    snprintf(k1, sizeof k1, "dmg%d-b", damage);
    make_dead(db, 200, &d, k0, k1, 0);
    struct shm_txn_entry *e0 = shm_txn_entry_at(r, d.slot, 0);
    struct mv_commit *rec = shm_at(r, atomic_load(&e0->record));
    if (damage == 0)
      atomic_store(&e0->record, 1ull << 40);              /* far past the mapping */
    else if (damage == 1)
      atomic_store(&rec->nops, 0x3fffffffu);              /* past the record's room */
    else
      rec->versions[0] = (shm_ref)0xfffffff0u;            /* one version past the mapping */
    int rc = slots_reap_if_dead(r, db->slot, d.slot);
    cr_assert_eq(rc, 1, "damage %d: the slot was not reaped (%d)", damage, rc);
    cr_assert_eq(atomic_load(&shm_slot_at(r, d.slot)->owner_pid), 0u, "damage %d: the slot is free", damage);
    if (damage == 2)
      cr_assert_eq(atomic_load(&ver(db, d.v[1])->state), MV_ABORTED, "the version still in reach is stamped");
    char buf[32];
    cr_assert_eq(tu_read_str(db, k1, buf, sizeof buf), SOCHDB_NOTFOUND, "damage %d: a dead intent is visible", damage);
  }
  sochdb_close(db);
}

Test(slots, reaping_a_dead_slot_finishes_its_decided_commit)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  tu_commit_kv(db, "base", "1", SOCHDB_ASYNC);
  struct dead d;
  make_dead(db, 150, &d, "dec-a", "dec-b", 1);
  struct shm_txn_entry *e0 = shm_txn_entry_at(r, d.slot, 0);
  /* it reached the commit point (decided at its seq), then died before stamping */
  uint64_t pending = TXN_PENDING;
  cr_assert(atomic_compare_exchange_strong(&e0->state, &pending, d.seq), "decide");
  cr_assert_eq(seqring_published(r), d.seq - 1, "not published yet");

  cr_assert_eq(slots_reap_if_dead(r, db->slot, d.slot), 1, "reaped");
  for (int i = 0; i < 2; i++)
    cr_assert_eq(atomic_load(&ver(db, d.v[i])->state), d.seq, "version %d stamped %llu, expected the commit seq %llu",
                 i, (unsigned long long)atomic_load(&ver(db, d.v[i])->state), (unsigned long long)d.seq);
  cr_assert_eq(seqring_published(r), d.seq, "published over the dead commit: %llu", (unsigned long long)seqring_published(r));
  cr_assert_eq(rolled_back_count(db), 0u, "a decided commit is not rolled back");
  cr_assert_eq(reaped_count(db), 1u, "processes_reaped");
  char buf[32];
  cr_assert_eq(tu_read_str(db, "dec-a", buf, sizeof buf), SOCHDB_OK, "the decided commit is wholly visible");
  cr_assert_str_eq(buf, "dead-value-0", "dec-a");
  cr_assert_eq(tu_read_str(db, "dec-b", buf, sizeof buf), SOCHDB_OK, "the decided commit is wholly visible");
  cr_assert_str_eq(buf, "dead-value-1", "dec-b");
  sochdb_close(db);
}

struct commit_arg { sochdb *db; const char *key, *val; int rc; char err[256]; };
static void *commit_thread(void *p)
{
  struct commit_arg *a = p;
  sochdb_txn *t = NULL;
  a->rc = sochdb_txn_begin(a->db, 0, &t);
  if (a->rc == SOCHDB_OK)
    a->rc = sochdb_put(t, a->key, strlen(a->key), a->val, strlen(a->val));
  if (a->rc == SOCHDB_OK)
    a->rc = sochdb_commit(t, SOCHDB_ASYNC);
  else if (t)
    sochdb_abort(t);
  snprintf(a->err, sizeof a->err, "%s", sochdb_last_error());   /* the detail is per thread */
  return NULL;
}

Test(slots, a_writer_blocked_by_a_dead_intent_reaps_it)
{
  sochdb *db = open_db();
  struct dead d;
  make_dead(db, 201, &d, "blocked", "other", 0);   /* intents, no claimed seq */
  static struct commit_arg a;
  a = (struct commit_arg){ db, "blocked", "mine", -1, "" };
  cr_assert(run_bounded(commit_thread, &a, 20000), "the commit over a dead intent did not finish within ~20 s");
  cr_assert_eq(a.rc, SOCHDB_OK, "commit over a dead intent: %s (%s)", sochdb_strerror(a.rc), a.err);
  cr_assert_eq(reaped_count(db), 1u, "the blocked writer reaped the dead slot");
  cr_assert_eq(rolled_back_count(db), 1u, "and rolled its commit back");
  char buf[32];
  cr_assert_eq(tu_read_str(db, "blocked", buf, sizeof buf), SOCHDB_OK, "read");
  cr_assert_str_eq(buf, "mine", "the live writer's value");
  cr_assert_eq(tu_read_str(db, "other", buf, sizeof buf), SOCHDB_NOTFOUND, "the dead commit's other key is absent");
  sochdb_close(db);
}

Test(slots, a_committer_waiting_behind_a_dead_claim_reaps_it)
{
  sochdb *db = open_db();
  shm_region *r = &db->region;
  struct dead d;
  make_dead(db, 202, &d, "dc-a", "dc-b", 1);      /* claimed seq 2, never decided */
  cr_assert_eq(d.seq, 2u, "dead claim %llu", (unsigned long long)d.seq);
  static struct commit_arg a;
  a = (struct commit_arg){ db, "after", "ok", -1, "" };
  cr_assert(run_bounded(commit_thread, &a, 20000),
            "a commit stuck behind a dead process's claimed seq did not finish within ~20 s");
  cr_assert_eq(a.rc, SOCHDB_OK, "commit: %s (%s)", sochdb_strerror(a.rc), a.err);
  cr_assert_eq(seqring_published(r), 3u, "published past the dead claim and ours: %llu",
               (unsigned long long)seqring_published(r));
  cr_assert_eq(reaped_count(db), 1u, "the waiter reaped the dead slot");
  cr_assert_eq(rolled_back_count(db), 1u, "rolled back");
  char buf[32];
  cr_assert_eq(tu_read_str(db, "after", buf, sizeof buf), SOCHDB_OK, "our commit is visible");
  cr_assert_eq(tu_read_str(db, "dc-a", buf, sizeof buf), SOCHDB_NOTFOUND, "the dead commit is absent");
  sochdb_close(db);
}

Test(slots, attaching_takes_over_and_reaps_dead_slots)
{
  sochdb *db = open_db();
  cr_assert_eq(db->slot, 0u, "the first handle takes slot 0, got %u", db->slot);
  struct dead d1, d2;
  make_dead(db, 1, &d1, "at-a", "at-b", 0);        /* the next attacher's first pick */
  make_dead(db, 230, &d2, "at-c", "at-d", 0);      /* found by its reap_all */
  sochdb *db2 = open_db();
  cr_assert_eq(db2->slot, 1u, "the attacher takes the dead slot 1, got %u", db2->slot);
  cr_assert_eq(atomic_load(&shm_slot_at(&db->region, 1)->owner_pid), (uint64_t)getpid(), "new owner");
  cr_assert_eq(atomic_load(&shm_slot_at(&db->region, 230)->owner_pid), 0u, "slot 230 reaped on attach");
  cr_assert_eq(reaped_count(db), 2u, "two dead slots reaped: %llu", (unsigned long long)reaped_count(db));
  cr_assert_eq(rolled_back_count(db), 2u, "two pending commits rolled back");
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(atomic_load(&ver(db, d1.v[i])->state), MV_ABORTED, "slot 1 intent %d aborted", i);
    cr_assert_eq(atomic_load(&ver(db, d2.v[i])->state), MV_ABORTED, "slot 230 intent %d aborted", i);
  }
  cr_assert_eq(atomic_load(&shm_txn_entry_at(&db->region, 1, 0)->snapshot), 0u, "old snapshot gone from slot 1");
  cr_assert_eq(tu_stats(db).processes_attached, 2u, "two live handles");
  tu_commit_kv(db2, "at-a", "new", SOCHDB_ASYNC);
  sochdb_close(db2);
  sochdb_close(db);
}

Test(slots, a_live_slot_is_never_reaped)
{
  sochdb *db1 = open_db();
  sochdb *db2 = open_db();
  shm_region *r1 = &db1->region;
  sochdb_txn *t2 = NULL;
  cr_assert_eq(sochdb_txn_begin(db2, 0, &t2), SOCHDB_OK, "begin");
  cr_assert_eq(sochdb_put(t2, "live", 4, "yes", 3), SOCHDB_OK, "put");
  uint64_t snap2 = atomic_load(&sdb_txn_entry(t2)->snapshot);
  cr_assert_neq(snap2, 0u, "t2 holds a snapshot");
  /* db2 is also half-way through a commit on entry 120: a pending intent */
  reserve_entry(db2, 120);
  uint64_t iv = install_intent(&db2->region, db2->slot, 120, "mid-commit", "x");

  for (int i = 0; i < 10; i++)
    cr_assert_eq(slots_reap_if_dead(r1, db1->slot, db2->slot), 0, "a live slot must not be reaped (try %d)", i);
  cr_assert_eq(slots_reap_all(r1, db1->slot), 0u, "reap_all found a dead slot among live ones");
  cr_assert_eq(slots_reap_if_dead(r1, db1->slot, db1->slot), 0, "one's own slot is never reaped");
  cr_assert_eq(slots_reap_if_dead(r1, db1->slot, SHM_MAX_SLOTS), 0, "out-of-range slot");
  cr_assert_eq(slots_reap_if_dead(r1, db1->slot, UINT32_MAX), 0, "out-of-range slot");
  /* the other handle can't reap us either */
  cr_assert_eq(slots_reap_if_dead(&db2->region, db2->slot, db1->slot), 0, "db1 is live too");

  struct shm_slot *s2 = shm_slot_at(r1, db2->slot);
  cr_assert_eq(atomic_load(&s2->owner_pid), (uint64_t)getpid(), "owner_pid untouched");
  cr_assert_eq(atomic_load(&sdb_txn_entry(t2)->snapshot), snap2, "snapshot untouched");
  cr_assert_eq(mv_resolve(r1, ver(db1, iv)), 0u, "the live commit's intent is still pending");
  cr_assert_eq(reaped_count(db1), 0u, "nothing reaped");
  cr_assert_eq(tu_stats(db1).processes_attached, 2u, "both attached");

  /* finish the hand-made commit as its owner would (abort), then t2 commits */
  struct shm_txn_entry *e2 = shm_txn_entry_at(&db2->region, db2->slot, 120);
  slots_retire_descriptor(&db2->region, e2, slots_descriptor_record(e2));
  release_entry(db2, 120);
  int rc = sochdb_commit(t2, SOCHDB_ASYNC);
  cr_assert_eq(rc, SOCHDB_OK, "the live transaction commits: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  char buf[8];
  cr_assert_eq(tu_read_str(db1, "live", buf, sizeof buf), SOCHDB_OK, "visible");
  sochdb_close(db2);
  sochdb_close(db1);
}

/* The reaper's exclusivity: slots.h says whoever takes a dead slot's lock is
** "the one and only reaper of that slot". The lock is an OFD lock, so it is
** owned by the handle's open file description, which every thread of the
** handle shares (a handle "may be shared by all threads of its process").
** Several threads of one handle blocked by the same dead process (two
** committers behind its claim, say) all try to reap it at once. */
struct xr_arg {
  sochdb *db;
  uint32_t dead;
  pthread_barrier_t *bar;
  int rc;
};

static void *xr_thread(void *p)
{
  struct xr_arg *a = p;
  pthread_barrier_wait(a->bar);
  a->rc = slots_reap_if_dead(&a->db->region, a->db->slot, a->dead);
  return NULL;
}

Test(slots, reaping_is_exclusive_among_threads_of_one_handle)
{
  sochdb *db = tu_open(16u << 20, 4u << 20, 0);
  shm_region *r = &db->region;
  const uint32_t dead = free_slot(db, 240);
  struct shm_txn_entry *e = shm_txn_entry_at(r, dead, 3);
  /* a long list of intents makes one reap take a while (tens of microseconds) */
  enum { NV = 20000, NT = 4, ROUNDS = 40 };
  record_of(r, e, NV);
  uint64_t head = atomic_load(&e->record);
  for (int i = 0; i < NV; i++)
    new_version(r, dead, 3, "");
  unsigned doubled = 0, first_bad_round = 0;
  uint64_t worst = 1;
  for (unsigned round = 0; round < ROUNDS; round++) {
    atomic_store(&e->record, head);   /* the reap let it go */
    atomic_store(&e->state, TXN_PENDING);
    atomic_store(&e->snapshot, seqring_published(r));
    mark_dead_owner(db, dead);
    uint64_t before = reaped_count(db);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NT);
    struct xr_arg a[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
      a[i] = (struct xr_arg){ db, dead, &bar, -1 };
      cr_assert_eq(pthread_create(&th[i], NULL, xr_thread, &a[i]), 0, "pthread_create");
    }
    for (int i = 0; i < NT; i++)
      TU_JOIN(th[i], "a reaping thread");
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < NT; i++)
      cr_assert_eq(a[i].rc, 1, "round %u: a dead slot reports 1 to every caller (thread %d: %d)", round, i, a[i].rc);
    cr_assert_eq(atomic_load(&shm_slot_at(r, dead)->owner_pid), 0u, "round %u: slot freed", round);
    uint64_t n = reaped_count(db) - before;
    if (n != 1) {
      if (!doubled++)
        first_bad_round = round;
      if (n > worst)
        worst = n;
    }
  }
  cr_assert_eq(doubled, 0u,
               "one dead slot was reaped more than once in %u of %u rounds (first in round %u, up to %llu "
               "times): threads of one handle share its OFD, so the slot lock does not exclude them",
               doubled, (unsigned)ROUNDS, first_bad_round, (unsigned long long)worst);
  sochdb_close(db);
}

/* The same through the public API: sochdb_stats_get reaps dead slots before
** counting ("report the living, not the dead"); threads sharing one handle
** call it at once while one slot is dead. */
struct xs_arg {
  sochdb *db;
  pthread_barrier_t *bar;
  int rc;
};

static void *xs_thread(void *p)
{
  struct xs_arg *a = p;
  sochdb_stats s;
  pthread_barrier_wait(a->bar);
  a->rc = sochdb_stats_get(a->db, &s);
  return NULL;
}

Test(slots, concurrent_stats_on_one_handle_reap_a_dead_slot_once)
{
  sochdb *db = tu_open(16u << 20, 4u << 20, 0);
  shm_region *r = &db->region;
  const uint32_t dead = free_slot(db, 241);
  struct shm_txn_entry *e = shm_txn_entry_at(r, dead, 9);
  enum { NV = 20000, NT = 4, ROUNDS = 40 };
  record_of(r, e, NV);
  uint64_t head = atomic_load(&e->record);
  for (int i = 0; i < NV; i++)
    new_version(r, dead, 9, "");
  uint64_t start = reaped_count(db);
  for (unsigned round = 0; round < ROUNDS; round++) {
    atomic_store(&e->record, head);   /* the reap let it go */
    atomic_store(&e->state, TXN_PENDING);
    mark_dead_owner(db, dead);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NT);
    struct xs_arg a[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
      a[i] = (struct xs_arg){ db, &bar, -1 };
      cr_assert_eq(pthread_create(&th[i], NULL, xs_thread, &a[i]), 0, "pthread_create");
    }
    for (int i = 0; i < NT; i++)
      TU_JOIN(th[i], "a reaping thread");
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < NT; i++)
      cr_assert_eq(a[i].rc, SOCHDB_OK, "round %u: stats_get: %s", round, sochdb_strerror(a[i].rc));
    cr_assert_eq(atomic_load(&shm_slot_at(r, dead)->owner_pid), 0u, "round %u: the dead slot was reaped", round);
  }
  sochdb_stats s = tu_stats(db);
  cr_assert_eq(s.processes_reaped - start, (uint64_t)ROUNDS,
               "%u dead processes were reaped, but processes_reaped counts %llu",
               (unsigned)ROUNDS, (unsigned long long)(s.processes_reaped - start));
  cr_assert_eq(s.dead_txns_rolled_back, (uint64_t)ROUNDS, "%u unfinished commits rolled back, counted %llu",
               (unsigned)ROUNDS, (unsigned long long)s.dead_txns_rolled_back);
  sochdb_close(db);
}
