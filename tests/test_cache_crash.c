/*
** test_cache_crash.c — the shared block cache under kill -9: a process that
** dies in the middle of copying a block into the cache (the test-only crash
** point "cache.insert", between the two halves of the copy) leaves an entry
** claimed in its name. Readers must never see it as a hit, the reaper must
** free it once the process is found dead, and every read afterwards returns
** exactly what was written, through the cache again.
**
** The values compress, so the SSTable blocks holding them are LZ4 blocks,
** which are the ones that go through the cache.
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
  sochdb *db = tu_open(64u << 20, 1u << 20, 1000);
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
