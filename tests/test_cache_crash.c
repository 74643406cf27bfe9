/*
** test_cache_crash.c — the shared block cache under kill -9: a process that
** dies in the middle of copying a block into the cache (the test-only crash
** point "cache.insert", between the two halves of the copy) leaves an entry
** claimed in its name. Readers must never see it as a hit, the reaper must
** free it once the process is found dead, and every read afterwards returns
** exactly what was written, through the cache again.
**
** The values compress, and the daemon compresses every level (by default
** levels 0 and 1 are stored uncompressed: daemon/store.h), so the SSTable
** blocks holding them are LZ4 blocks, which are the ones that go through
** the cache.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <signal.h>
#include <sys/wait.h>

#include "blockcache.h"
#include "internal.h"
#include "testutil.h"

TestSuite(cache_crash, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

#define CC_KEYS 6000

static void cc_key(int i, char *k) { snprintf(k, 32, "cache-%06d", i); }

/* 400 bytes that compress well and differ per key. */
static void cc_val(int i, char *v)
{
  for (int j = 0; j < 400; j++)
    v[j] = (char)('a' + (i + j / 50) % 26);
}

static void cc_fill(sochdb *db)
{
  char k[32], v[400];
  for (int i = 0; i < CC_KEYS; i += 100) {
    sochdb_txn *t;
    cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
    for (int j = i; j < i + 100; j++) {
      cc_key(j, k);
      cc_val(j, v);
      cr_assert_eq(sochdb_put(t, k, strlen(k), v, sizeof v), SOCHDB_OK);
    }
    cr_assert_eq(sochdb_commit(t, SOCHDB_SYNC), SOCHDB_OK, "commit: %s", sochdb_last_error());
  }
}

/* Every key reads back exactly; returns how many there were. */
static int cc_verify(sochdb *db, const char *ctx)
{
  char k[32], v[400];
  sochdb_txn *t;
  cr_assert_eq(sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t), SOCHDB_OK);
  for (int i = 0; i < CC_KEYS; i++) {
    const void *got;
    size_t n;
    cc_key(i, k);
    cc_val(i, v);
    int rc = sochdb_get(t, k, strlen(k), &got, &n);
    cr_assert_eq(rc, SOCHDB_OK, "%s: get %s: %s (%s)", ctx, k, sochdb_strerror(rc), sochdb_last_error());
    cr_assert(n == sizeof v && memcmp(got, v, n) == 0, "%s: %s reads a wrong value", ctx, k);
  }
  sochdb_abort(t);
  return CC_KEYS;
}

/* The child: its own handle, the crash point armed for its third cache
** insert, its slot told to the parent, then reads until the kill. */
static void cc_child(int slot_fd)
{
  sochdb *db;
  sochdb_options o = tu_options(64u << 20, 1u << 20, 1000);
  if (sochdb_open(tu_dir(), &o, &db) != SOCHDB_OK)
    _exit(3);
  uint32_t slot = db->slot;
  if (write(slot_fd, &slot, sizeof slot) != (ssize_t)sizeof slot)
    _exit(4);
  sochdb_test_crash_at("cache.insert", 3);
  char k[32];
  sochdb_txn *t;
  if (sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t) != SOCHDB_OK)
    _exit(5);
  for (int i = 0; i < CC_KEYS; i++) {
    const void *got;
    size_t n;
    cc_key(i, k);
    sochdb_get(t, k, strlen(k), &got, &n);
  }
  _exit(2);   /* never killed: the blocks did not go through the cache */
}

Test(cache_crash, a_reader_killed_mid_insert_leaves_no_stuck_entry)
{
  sochdb *db = tu_open_compressing(64u << 20, 1u << 20, 1000);
  cc_fill(db);
  TU_WAIT_STATS(db, s->flushes >= 2 && s->memtables_in_use == 1, "the keys flushed to SSTables");
  void *area = shm_at(&db->region, db->region.hdr->cache_off);
  cr_assert_not_null(area, "the region has a block cache");
  sochdb_stats before = tu_stats(db);

  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = tu_fork();
  if (pid == 0) {
    close(fds[0]);
    cc_child(fds[1]);
  }
  close(fds[1]);
  uint32_t slot = UINT32_MAX;
  cr_assert_eq(read(fds[0], &slot, sizeof slot), (ssize_t)sizeof slot, "the child's slot");
  close(fds[0]);
  int st;
  cr_assert_eq(tu_wait_child(pid, 60000, &st), 0, "the child ended");
  char why[64];
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child died at the crash point, not with %s",
            tu_status_str(st, why, sizeof why));
  sochdb_stats after_kill = tu_stats(db);
  cr_assert_geq(after_kill.cache_inserts, before.cache_inserts + 2, "two inserts before the third one died");

  /* The dead writer's entry stays claimed until the reaper frees it; a
  ** transaction of ours looks for dead slots on the way. */
  for (int i = 0; i < 6000 && bc_test_owned(area, slot + 1) != 0; i++) {
    sochdb_txn *t;
    cr_assert_eq(sochdb_txn_begin(db, 0, &t), SOCHDB_OK);
    cr_assert_eq(sochdb_put(t, "poke", 4, "x", 1), SOCHDB_OK);
    sochdb_commit(t, SOCHDB_ASYNC);
    tu_sleep_ms(10);
  }
  cr_assert_eq(bc_test_owned(area, slot + 1), 0u, "the reaper freed the entry the dead process was writing");
  TU_WAIT_STATS(db, s->processes_attached == 1, "the dead reader's slot released");

  cc_verify(db, "after the kill");
  sochdb_stats warm = tu_stats(db);
  cc_verify(db, "again, through the cache");
  sochdb_stats end = tu_stats(db);
  cr_assert_gt(end.cache_hits, warm.cache_hits, "the second pass hits the cache");
  cr_log_info("cache: %llu inserts, %llu hits, %llu misses", (unsigned long long)end.cache_inserts,
              (unsigned long long)end.cache_hits, (unsigned long long)end.cache_misses);
  tu_close();
}

/* ---- where lookups are counted ----------------------------------------------- */

/* What a counting child tells its parent: its slot and its own lookups. */
struct cc_counts {
  uint32_t slot;
  uint64_t hits, misses;
};

/* The child: reads every key twice (the second pass hits the cache), tells
** the parent its slot's counters, and waits to be killed. */
static void cc_counting_child(int to_parent)
{
  sochdb *db;
  sochdb_options o = tu_options(64u << 20, 1u << 20, 1000);
  if (sochdb_open(tu_dir(), &o, &db) != SOCHDB_OK)
    _exit(3);
  char k[32];
  for (int pass = 0; pass < 2; pass++) {
    sochdb_txn *t;
    if (sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t) != SOCHDB_OK)
      _exit(4);
    for (int i = 0; i < CC_KEYS; i++) {
      const void *got;
      size_t n;
      cc_key(i, k);
      if (sochdb_get(t, k, strlen(k), &got, &n) != SOCHDB_OK)
        _exit(5);
    }
    sochdb_abort(t);
  }
  const struct shm_slot_stats *own = &shm_slot_at(&db->region, db->slot)->stats;
  struct cc_counts c = { db->slot, atomic_load(&own->cache_hits), atomic_load(&own->cache_misses) };
  if (write(to_parent, &c, sizeof c) != (ssize_t)sizeof c)
    _exit(6);
  pause();
  _exit(7);
}

/* Every cached read in every process added to one pair of counters on one
** line of the cache's header, a line bounced between all the CPUs reading.
** Each process now counts in its own slot, which keeps the counts when it
** is released, here by the reaper after a kill -9, and stats adds every
** slot's: the totals never go back. */
Test(cache_crash, lookups_are_counted_per_process_and_outlive_it)
{
  sochdb *db = tu_open_compressing(64u << 20, 1u << 20, 1000);
  cc_fill(db);
  TU_WAIT_STATS(db, s->flushes >= 2 && s->memtables_in_use == 1, "the keys flushed to SSTables");
  void *area = shm_at(&db->region, db->region.hdr->cache_off);
  cr_assert_not_null(area, "the region has a block cache");
  struct bc_stats shared_before;
  bc_get_stats(area, &shared_before);

  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = tu_fork();
  if (pid == 0) {
    close(fds[0]);
    cc_counting_child(fds[1]);
  }
  close(fds[1]);
  struct cc_counts c;
  cr_assert_eq(read(fds[0], &c, sizeof c), (ssize_t)sizeof c, "the child's counts");
  close(fds[0]);
  cr_assert_gt(c.hits, 0u, "the child's second pass hit the cache");
  cr_assert_gt(c.misses, 0u, "the child's first pass missed");

  struct bc_stats shared_during;
  bc_get_stats(area, &shared_during);
  cr_assert_eq(shared_during.hits, shared_before.hits, "the child's hits went to the shared line");
  cr_assert_eq(shared_during.misses, shared_before.misses, "the child's misses went to the shared line");
  sochdb_stats living = tu_stats(db);
  cr_assert_geq(living.cache_hits, shared_before.hits + c.hits, "stats leaves out a living process's hits");

  kill(pid, SIGKILL);
  int st;
  cr_assert_eq(tu_wait_child(pid, 60000, &st), 0, "the child ended");
  TU_WAIT_STATS(db, s->processes_attached == 1, "the dead reader's slot reaped");
  struct bc_stats shared_after;
  bc_get_stats(area, &shared_after);
  cr_assert_eq(shared_after.hits, shared_before.hits, "the reaper moved the dead process's hits to the shared line");
  const struct shm_slot_stats *dead = &shm_slot_at(&db->region, c.slot)->stats;
  cr_assert(atomic_load(&dead->cache_hits) == c.hits && atomic_load(&dead->cache_misses) == c.misses,
            "the reaped slot keeps its counts: %llu hits, %llu misses of %llu, %llu",
            (unsigned long long)atomic_load(&dead->cache_hits), (unsigned long long)atomic_load(&dead->cache_misses),
            (unsigned long long)c.hits, (unsigned long long)c.misses);
  sochdb_stats gone = tu_stats(db);
  cr_assert_geq(gone.cache_hits, living.cache_hits, "the total went back when the process died");
  tu_close();
}
