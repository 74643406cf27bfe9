/*
** test_recovery.c — rebuilding a lost region from the WAL (src/recovery.c),
** run in this process, where ThreadSanitizer can watch it: a log long enough
** for the replay's helper thread (which prepares the first memtable's pages,
** then verifies the log's group checksums ahead of the scan) comes back
** whole, every key with its newest value, in key order, from keys logged out
** of order and over several segments and memtables. The log itself is written
** by other processes (the sochdb tool loading a dump, and its daemon); only
** the replay runs here. The build lays each memtable out in a private window
** and writes it to the region's file: a second test makes every kind of
** write cross the window's edges (links into nodes already written, a
** version chain longer than a window, values bigger than one). A region
** rebuilt from the MANIFEST keeps its tables' file numbers from being handed
** out again, which the shared block cache relies on.
*/
#include <criterion/criterion.h>

#include "testutil.h"

#include "check.h"
#include "manifest.h"
#include "internal.h"
#include "mvcc.h"
#include "skiplist.h"
#include "walfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

TestSuite(recovery, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

#define KEYS       60
#define UPDATED    12            /* the first keys are written twice */
#define VALUE      (80u << 10)   /* 72 pairs of 80 KiB: a 5.6 MiB log */

static void value_of(int key, int version, uint8_t *v)
{
  for (size_t i = 0; i < VALUE; i++)
    v[i] = (uint8_t)(key * 7 + version * 101 + i / 512);
}

static void put_be32(FILE *f, uint32_t x)
{
  uint8_t b[4] = { (uint8_t)(x >> 24), (uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x };
  cr_assert_eq(fwrite(b, 1, 4, f), 4);
}

/* A dump (tools/sochdb_xfer.c) of the keys in a scrambled order, then the
** first UPDATED keys again with version 2. */
static void write_dump(const char *path)
{
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "create %s", path);
  fputs("SOCHDB-DUMP 1\n", f);
  uint8_t *v = malloc(VALUE);
  cr_assert_not_null(v);
  uint64_t pairs = 0;
  for (int n = 0; n < KEYS + UPDATED; n++) {
    int key = n < KEYS ? (n * 37) % KEYS : n - KEYS;
    char k[16];
    int klen = snprintf(k, sizeof k, "rk/%03d", key);
    value_of(key, n < KEYS ? 1 : 2, v);
    fputc('R', f);
    put_be32(f, (uint32_t)klen);
    fwrite(k, 1, (size_t)klen, f);
    put_be32(f, VALUE);
    cr_assert_eq(fwrite(v, 1, VALUE, f), VALUE);
    pairs++;
  }
  fputc('E', f);
  for (int s = 56; s >= 0; s -= 8)
    fputc((int)(pairs >> s) & 0xff, f);
  cr_assert_eq(fclose(f), 0);
  free(v);
}

/* sochdb load --batch 3 DIR FILE, in another process; asserts exit 0. */
static void load(const char *dir, const char *file)
{
  char *argv[] = { "sochdb", "load", "--batch", "3", (char *)dir, (char *)file, NULL };
  pid_t pid;
  int err = posix_spawnp(&pid, "sochdb", NULL, NULL, argv, environ);
  cr_assert_eq(err, 0, "cannot run sochdb: %s", strerror(err));
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sochdb load exited with %d", status);
}

static uint64_t log_bytes(const char *dir, size_t *segments)
{
  uint64_t *lsns;
  cr_assert_eq(wal_list_segments(dir, &lsns, segments), SOCHDB_OK, "%s", sochdb_last_error());
  uint64_t bytes = 0;
  for (size_t i = 0; i < *segments; i++) {
    char path[4300];
    struct stat st;
    wal_segment_path(path, sizeof path, dir, lsns[i]);
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    bytes += (uint64_t)st.st_size;
  }
  free(lsns);
  return bytes;
}

/* Every key with its newest value, and a scan that finds them in order. */
static void expect_every_key(sochdb *db, uint8_t *want)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int key = 0; key < KEYS; key++) {
    char k[16];
    int klen = snprintf(k, sizeof k, "rk/%03d", key);
    const void *got;
    size_t glen;
    cr_assert_eq(sochdb_get(t, k, (size_t)klen, &got, &glen), SOCHDB_OK, "%s: %s", k, sochdb_last_error());
    value_of(key, key < UPDATED ? 2 : 1, want);
    cr_assert(glen == VALUE && !memcmp(got, want, VALUE), "%s came back with another value", k);
  }
  sochdb_iter *it;
  cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "%s", sochdb_last_error());
  int seen = 0, rc;
  const void *k, *v;
  size_t klen, vlen;
  while ((rc = sochdb_iter_next(it, &k, &klen, &v, &vlen)) == SOCHDB_OK) {
    char expect[16];
    snprintf(expect, sizeof expect, "rk/%03d", seen);
    cr_assert(klen == strlen(expect) && !memcmp(k, expect, klen), "key %d of the scan is %.*s", seen, (int)klen,
              (const char *)k);
    cr_assert_eq(vlen, VALUE);
    seen++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s", sochdb_last_error());
  cr_assert_eq(seen, KEYS, "the scan saw %d keys", seen);
  sochdb_iter_close(it);
  sochdb_abort(t);
}

Test(recovery, a_long_scrambled_log_comes_back_whole_beside_the_helper)
{
  const char *dir = tu_dir();
  /* Made here, then left to the other processes: its 8 MiB memtables make
  ** the daemon close a log segment every 2 MiB. */
  sochdb_options o = tu_options(256u << 20, 8u << 20, 10000);
  sochdb_close(tu_open_with(dir, &o));
  char dump[4200];
  snprintf(dump, sizeof dump, "%s.dump", dir);
  write_dump(dump);
  load(dir, dump);
  unlink(dump);
  tu_stop_daemon(dir);   /* SIGTERM: it logs whatever was published first */
  size_t segments;
  uint64_t bytes = log_bytes(dir, &segments);
  cr_assert_geq(bytes, 4u << 20, "a log of %llu bytes is too short for the replay's helper",
                (unsigned long long)bytes);
  cr_assert_geq(segments, 2, "the log has %zu segment(s)", segments);

  sochdb_test_without_daemon(1);   /* the replays alone, in this process */
  uint8_t *want = malloc(VALUE);
  cr_assert_not_null(want);
  /* 2 MiB memtables: the replay fills several; 64 MiB: one, whose pages
  ** the helper may still be touching when the main thread, done sorting,
  ** comes to share the rest */
  const size_t memtables[] = { 2u << 20, 64u << 20 };
  for (size_t m = 0; m < 2; m++) {
    tu_remove_region(dir);
    o = tu_options(256u << 20, memtables[m], 10000);
    sochdb *db = tu_open_with(dir, &o);
    expect_every_key(db, want);
    sochdb_close(db);
  }
  sochdb_test_without_daemon(0);
  free(want);
}

#define SMALL_KEYS 20000         /* 100-byte values: 2.6 MiB of nodes and versions */
#define CHAIN      6000          /* versions of one key: 0.8 MiB, longer than a window */
#define BIG_KEYS   3
#define BIG_VALUE  (700u << 10)  /* more than a window */

static void fill_value(uint8_t *v, size_t n, uint32_t key, uint32_t version)
{
  for (size_t i = 0; i < n; i++)
    v[i] = (uint8_t)(key * 31 + version * 7 + i * 13 + (i >> 9));
}

static size_t small_key(char *k, size_t n, uint32_t i) { return (size_t)snprintf(k, n, "sk/%06u", i); }

static void put_value(sochdb_txn *t, const char *k, size_t klen, uint8_t *v, size_t vlen, uint32_t key,
                      uint32_t version)
{
  fill_value(v, vlen, key, version);
  cr_assert_eq(sochdb_put(t, k, klen, v, vlen), SOCHDB_OK, "put %s: %s", k, sochdb_last_error());
}

/* The small keys in a scrambled order, 500 a transaction; the chain's key
** once a transaction; the big values. */
static void write_window_crossers(sochdb *db, uint8_t *v)
{
  for (uint32_t n = 0; n < SMALL_KEYS; n += 500) {
    sochdb_txn *t = tu_begin(db, 0);
    for (uint32_t j = n; j < n + 500; j++) {
      uint32_t key = (uint32_t)(((uint64_t)j * 7919) % SMALL_KEYS);
      char k[16];
      put_value(t, k, small_key(k, sizeof k, key), v, 100, key, 1);
    }
    tu_commit(t, SOCHDB_ASYNC, "small keys");
  }
  for (uint32_t version = 1; version <= CHAIN; version++) {
    sochdb_txn *t = tu_begin(db, 0);
    put_value(t, "chain", 5, v, 120, 0, version);
    tu_commit(t, SOCHDB_ASYNC, "chain");
  }
  for (uint32_t b = 0; b < BIG_KEYS; b++) {
    sochdb_txn *t = tu_begin(db, 0);
    char k[16];
    put_value(t, k, (size_t)snprintf(k, sizeof k, "big/%u", b), v, BIG_VALUE, b, 1);
    tu_commit(t, b + 1 == BIG_KEYS ? SOCHDB_SYNC : SOCHDB_ASYNC, "big");
  }
}

static void expect_value(sochdb_txn *t, const char *k, size_t klen, uint8_t *want, size_t vlen, uint32_t key,
                         uint32_t version)
{
  const void *got;
  size_t glen;
  cr_assert_eq(sochdb_get(t, k, klen, &got, &glen), SOCHDB_OK, "%.*s: %s", (int)klen, k, sochdb_last_error());
  fill_value(want, vlen, key, version);
  cr_assert(glen == vlen && !memcmp(got, want, vlen), "%.*s came back with another value", (int)klen, k);
}

/* Every version of the chain, newest first, with its own value, in the
** active memtable: the replay laid them out across windows. */
static void expect_chain(sochdb *db, uint8_t *want)
{
  const shm_region *r = &db->region;
  uint32_t mt = arena_active(r);
  uint64_t node = sl_find(r, mt, "chain", 5);
  cr_assert_neq(node, 0, "the chain's key is not in the active memtable");
  uint32_t version = CHAIN;
  for (uint64_t off = sl_versions(r, shm_at(r, node)); off; version--) {
    const struct mv_version *v = shm_at(r, off);
    cr_assert_gt(version, 0, "the chain holds more than %u versions", CHAIN);
    cr_assert_eq(mv_vlen(v), 120);
    cr_assert_eq(shm_ref_off(r, v->node), node, "version %u names another node", version);
    fill_value(want, 120, 0, version);
    cr_assert(!memcmp(v->value, want, 120), "version %u of the chain has another value", version);
    off = shm_ref_off(r, v->older);
  }
  cr_assert_eq(version, 0, "the chain lacks its %u oldest versions", version);
}

Test(recovery, what_crosses_the_build_windows_comes_back)
{
  const char *dir = tu_dir();
  uint8_t *v = malloc(BIG_VALUE), *want = malloc(BIG_VALUE);
  cr_assert(v && want);
  sochdb_options o = tu_options(256u << 20, 64u << 20, 10000);
  sochdb *db = tu_open_with(dir, &o);
  write_window_crossers(db, v);
  sochdb_close(db);
  tu_stop_daemon(dir);

  sochdb_test_without_daemon(1);
  const size_t memtables[] = { 64u << 20, 2u << 20 };   /* one memtable, then many */
  for (size_t m = 0; m < 2; m++) {
    tu_remove_region(dir);
    o = tu_options(256u << 20, memtables[m], 10000);
    db = tu_open_with(dir, &o);
    sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
    for (uint32_t key = 0; key < SMALL_KEYS; key++) {
      char k[16];
      expect_value(t, k, small_key(k, sizeof k, key), want, 100, key, 1);
    }
    expect_value(t, "chain", 5, want, 120, 0, CHAIN);
    for (uint32_t b = 0; b < BIG_KEYS; b++) {
      char k[16];
      expect_value(t, k, (size_t)snprintf(k, sizeof k, "big/%u", b), want, BIG_VALUE, b, 1);
    }
    sochdb_iter *it;
    cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "%s", sochdb_last_error());
    size_t seen = 0, klen, vlen, prev_len = 0;
    const void *k, *val;
    char prev[16];
    int rc;
    while ((rc = sochdb_iter_next(it, &k, &klen, &val, &vlen)) == SOCHDB_OK) {
      cr_assert_lt(klen, sizeof prev);
      int c = memcmp(prev, k, prev_len < klen ? prev_len : klen);
      cr_assert(!seen || c < 0 || (c == 0 && prev_len < klen), "the scan is out of order at key %zu", seen);
      memcpy(prev, k, klen);
      prev_len = klen;
      seen++;
    }
    cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s", sochdb_last_error());
    cr_assert_eq(seen, SMALL_KEYS + 1 + BIG_KEYS, "the scan saw %zu keys", seen);
    sochdb_iter_close(it);
    sochdb_abort(t);
    if (memtables[m] == (64u << 20))
      expect_chain(db, want);
    sochdb_close(db);
  }
  sochdb_test_without_daemon(0);
  free(v);
  free(want);
}

/* Keys logged in increasing order, each written one to three times in a
** row and every fifth deleted at the end of its run: the replay notices the
** order while it scans and builds without sorting (no order array, the
** arena bytes counted as it went). */
Test(recovery, keys_logged_in_order_need_no_sort)
{
  const char *dir = tu_dir();
  enum { IN_ORDER = 30000 };
  sochdb_options o = tu_options(256u << 20, 64u << 20, 10000);
  sochdb *db = tu_open_with(dir, &o);
  uint8_t v[100];
  for (uint32_t key = 0; key < IN_ORDER; key++) {
    char k[16];
    size_t klen = small_key(k, sizeof k, key);
    for (uint32_t version = 1; version <= key % 3 + 1; version++) {
      sochdb_txn *t = tu_begin(db, 0);
      put_value(t, k, klen, v, sizeof v, key, version);
      tu_commit(t, SOCHDB_ASYNC, "in order");
    }
    if (key % 5 == 0) {
      sochdb_txn *t = tu_begin(db, 0);
      cr_assert_eq(sochdb_delete(t, k, klen), SOCHDB_OK);
      tu_commit(t, key + 1 == IN_ORDER ? SOCHDB_SYNC : SOCHDB_ASYNC, "delete");
    }
  }
  sochdb_close(db);
  tu_stop_daemon(dir);

  sochdb_test_without_daemon(1);
  const size_t memtables[] = { 64u << 20, 1u << 20 };
  for (size_t m = 0; m < 2; m++) {
    tu_remove_region(dir);
    o = tu_options(256u << 20, memtables[m], 10000);
    db = tu_open_with(dir, &o);
    sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
    uint8_t want[100];
    for (uint32_t key = 0; key < IN_ORDER; key++) {
      char k[16];
      size_t klen = small_key(k, sizeof k, key);
      if (key % 5 == 0) {
        const void *got;
        size_t glen;
        cr_assert_eq(sochdb_get(t, k, klen, &got, &glen), SOCHDB_NOTFOUND, "%s was deleted", k);
      } else {
        expect_value(t, k, klen, want, sizeof want, key, key % 3 + 1);
      }
    }
    sochdb_iter *it;
    cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "%s", sochdb_last_error());
    size_t seen = 0, klen, vlen;
    const void *k, *val;
    while (sochdb_iter_next(it, &k, &klen, &val, &vlen) == SOCHDB_OK)
      seen++;
    cr_assert_eq(seen, IN_ORDER - IN_ORDER / 5, "the scan saw %zu keys", seen);
    sochdb_iter_close(it);
    sochdb_abort(t);
    sochdb_close(db);
  }
  sochdb_test_without_daemon(0);
}

/* The region rebuilt from the MANIFEST must keep the file numbers the
** MANIFEST used from being handed out again (its next_file_floor). The
** shared block cache keys blocks by file number: when the directory was then
** put back to an older copy (same inode, same id, so the region stays), the
** next daemon numbered its tables after the older MANIFEST, and readers got
** the cached blocks of the newer copy's tables under those numbers: 1,102 of
** 3,000 keys read an older generation's value, with no error (found by an
** independent review). */
#define RR_KEYS 3000
#define RR_VLEN 200

static void rr_value(int i, int gen, char *v)
{
  memset(v, 'a' + gen, RR_VLEN);   /* compresses: LZ4 blocks go through the cache */
  int n = snprintf(v, RR_VLEN, "%06d-gen%d|", i, gen);
  v[n] = (char)('a' + gen);
}

static void rr_write_and_flush(sochdb *db, int gen)
{
  char k[32], v[RR_VLEN];
  for (int i = 0; i < RR_KEYS; i += 100) {
    sochdb_txn *t = tu_begin(db, 0);
    for (int j = i; j < i + 100; j++) {
      snprintf(k, sizeof k, "rr-%06d", j);
      rr_value(j, gen, v);
      cr_assert_eq(sochdb_put(t, k, strlen(k), v, RR_VLEN), SOCHDB_OK, "put: %s", sochdb_last_error());
    }
    tu_commit(t, SOCHDB_SYNC, "write");
  }
  sochdb_stats s0 = tu_stats(db);
  tu_rotate(db);
  TU_WAIT_STATS(db, s->flushes > s0.flushes && s->memtables_in_use == 1, "a flush, its memtable retired");
}

/* Every key reads generation gen's value. */
static void rr_expect(sochdb *db, int gen, const char *when)
{
  char k[32], v[RR_VLEN];
  int bad = 0, first = -1;
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < RR_KEYS; i++) {
    snprintf(k, sizeof k, "rr-%06d", i);
    rr_value(i, gen, v);
    const void *got;
    size_t n;
    int rc = sochdb_get(t, k, strlen(k), &got, &n);
    cr_assert_eq(rc, SOCHDB_OK, "%s: get %s: %s (%s)", when, k, sochdb_strerror(rc), sochdb_last_error());
    if ((n != RR_VLEN || memcmp(got, v, n) != 0) && !bad++)
      first = i;
  }
  sochdb_abort(t);
  cr_assert_eq(bad, 0, "%s: %d of %d keys read another generation's value (the first: key %d)", when, bad, RR_KEYS,
               first);
}

static void rr_close(sochdb *db, const char *dir)
{
  sochdb_close(db);
  tu_stop_daemon(dir);
}

Test(recovery, a_region_rebuilt_from_the_manifest_keeps_its_file_numbers_from_reuse)
{
  const char *dir = tu_dir();
  char backup[4200], cmd[9000];
  snprintf(backup, sizeof backup, "%s.bak", dir);
  sochdb_options o = tu_options(64u << 20, 1u << 20, 10000);
  sochdb *db = tu_open_with(dir, &o);
  rr_write_and_flush(db, 1);
  rr_close(db, dir);
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", backup, dir, backup);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
  db = tu_open_with(dir, &o);
  rr_write_and_flush(db, 2);
  rr_close(db, dir);
  tu_remove_region(dir);
  db = tu_open_with(dir, &o);   /* rebuilt from the MANIFEST; its reads cache generation 2's blocks */
  rr_expect(db, 2, "after the rebuild");
  rr_close(db, dir);
  snprintf(cmd, sizeof cmd, "cd '%s' && find . -mindepth 1 -delete && cp -a '%s'/. . && rm -rf '%s'", dir, backup,
           backup);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
  db = tu_open_with(dir, &o);   /* the older copy, the same region */
  rr_write_and_flush(db, 3);
  rr_expect(db, 3, "after the older copy came back");
  rr_close(db, dir);
}

/* ---- what the MANIFEST proves the log holds (found by the recovery review) ---- */

static void rewrite_file(const char *path, const uint8_t *buf, size_t len)
{
  int fd = open(path, O_WRONLY | O_TRUNC);
  cr_assert_geq(fd, 0, "open %s", path);
  cr_assert_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
  close(fd);
}

static void newest_segment(const char *dir, char *out, size_t n)
{
  uint64_t *lsns;
  size_t k;
  cr_assert_eq(wal_list_segments(dir, &lsns, &k), SOCHDB_OK);
  cr_assert_gt(k, 0, "no WAL segment");
  wal_segment_path(out, n, dir, lsns[k - 1]);
  free(lsns);
}

/* The offsets and payload sizes of a segment's whole groups; their count. */
static int groups_in(const uint8_t *buf, size_t len, size_t *offs, uint32_t *payloads, int max)
{
  int n = 0;
  for (size_t off = WAL_SEG_HEADER; n < max && off + WAL_GROUP_HEADER <= len;) {
    struct wal_group_header g;
    memcpy(&g, buf + off, sizeof g);
    if (!g.payload_bytes || off + WAL_GROUP_HEADER + g.payload_bytes > len)
      break;
    offs[n] = off;
    payloads[n++] = g.payload_bytes;
    off += WAL_GROUP_HEADER + g.payload_bytes;
  }
  return n;
}

static void stop_and_lose_region(sochdb *db, const char *dir)
{
  sochdb_close(db);
  tu_stop_daemon(dir);
  tu_remove_region(dir);
}

/* A database in dir with SYNC commits of keys k0 .. k<n-1> ("v"), its
** daemon stopped and its region lost: the next open replays the log. */
static void commit_keys_and_lose_region(const char *dir, int n)
{
  sochdb_options o = tu_options(64u << 20, 1u << 20, 10000);
  sochdb *db = tu_open_with(dir, &o);
  for (int i = 0; i < n; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    tu_commit_kv(db, k, "v", SOCHDB_SYNC);
  }
  stop_and_lose_region(db, dir);
}

static int check_damage(const char *dir)
{
  struct check_summary sum;
  cr_assert_eq(sdb_check_dir(dir, NULL, &sum), SOCHDB_OK, "%s", sochdb_last_error());
  return (int)sum.damaged;
}

/* sochdb check finds damage in dir, and the open of dir (its region lost)
** fails with SOCHDB_CORRUPT, saying `why`. */
static void expect_damage_refused(const char *dir, const char *why, const char *what)
{
  cr_assert_gt(check_damage(dir), 0, "%s: sochdb check calls the directory clean", what);
  sochdb_options o = tu_options(64u << 20, 1u << 20, 10000);
  sochdb *db = NULL;
  int rc = sochdb_open(dir, &o, &db);
  if (rc == SOCHDB_OK) {
    sochdb_close(db);
    tu_stop_daemon(dir);
  }
  cr_assert_eq(rc, SOCHDB_CORRUPT, "%s: the open returned %s", what, sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), why), "%s: %s", what, sochdb_last_error());
}

#define STRADDLER_KEYS  11
#define STRADDLER_VALUE (8u << 10)

/* Commits of STRADDLER_KEYS values of 8 KiB (the first with `pad` more) into a
** 1 MiB memtable until one fills it in the middle of its installs, so that
** the older memtable's SSTable holds part of that commit, seq S, while the
** MANIFEST's last_flushed_seq stays S - 1 (daemon/flusher.c); once that
** memtable is flushed, the open handle. */
static sochdb *commit_until_one_is_half_flushed(const char *dir, int pad)
{
  sochdb_options o = tu_options(64u << 20, 1u << 20, 10000);
  sochdb *db = tu_open_with(dir, &o);
  uint8_t *v = malloc(STRADDLER_VALUE);
  memset(v, 'v', STRADDLER_VALUE);
  sochdb_txn *t = tu_begin(db, 0);
  tu_put_str(t, "pre", "x");
  for (int i = 0; i < pad; i++) {
    char k[32];
    snprintf(k, sizeof k, "pad/%03d", i);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, STRADDLER_VALUE), SOCHDB_OK, "%s", sochdb_last_error());
  }
  tu_commit(t, SOCHDB_SYNC, "the first commit");
  int round;
  for (round = 0; round < 60; round++) {
    uint32_t before = arena_active(&db->region);
    t = tu_begin(db, 0);
    for (int i = 0; i < STRADDLER_KEYS; i++) {
      char k[32];
      snprintf(k, sizeof k, "big/%03d/%03d", round, i);
      cr_assert_eq(sochdb_put(t, k, strlen(k), v, STRADDLER_VALUE), SOCHDB_OK, "%s", sochdb_last_error());
    }
    tu_commit(t, SOCHDB_SYNC, "a commit of 88 KiB");
    if (arena_active(&db->region) != before)
      break;
  }
  free(v);
  cr_assert_lt(round, 60, "no commit filled a memtable");
  TU_WAIT_STATS(db, s->flushes >= 1, "the first memtable flushed");
  return db;
}

/* commit_until_one_is_half_flushed, the daemon stopped, the region lost: 1
** if that commit is the newest segment's last group, whose middle byte is
** then flipped; 0 if not (another pad moves where segments roll over). */
static int damage_a_commit_half_flushed(const char *dir, int pad)
{
  stop_and_lose_region(commit_until_one_is_half_flushed(dir, pad), dir);
  char seg[4300];
  newest_segment(dir, seg, sizeof seg);
  size_t len, offs[4096];
  uint32_t payloads[4096];
  uint8_t *buf = tu_read_file(seg, &len);
  int n = groups_in(buf, len, offs, payloads, 4096);
  if (n > 0) {
    buf[offs[n - 1] + WAL_GROUP_HEADER + payloads[n - 1] / 2] ^= 0x40;
    rewrite_file(seg, buf, len);
  }
  free(buf);
  return n > 0;
}

/* The log's last group damaged, where an SSTable holds part of its commit:
** the flusher wrote the table only once that group was durable, so it is
** damage, not a torn tail. Taken for one, the replay lost the commit, left
** the table's half of it visible once the next commit took its seq again,
** and a compaction then dropped that new commit as a duplicate of the old
** (key, seq); sochdb check called the directory clean. */
Test(recovery, a_damaged_last_group_whose_commit_an_sstable_holds_is_damage_not_a_torn_tail)
{
  for (int pad = 0; pad < 12; pad += 3) {
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/try%d", tu_dir(), pad);
    cr_assert_eq(mkdir(dir, 0700), 0);
    if (!damage_a_commit_half_flushed(dir, pad))
      continue;
    expect_damage_refused(dir, "holds commit", "the damaged last group");
    return;
  }
  cr_assert_fail("no try left the commit half flushed in the newest segment's last group");
}

/* The flusher never removes the newest segment: a MANIFEST that records a
** flush beside no segment at all means the log is gone, and with it the
** commits after the flush. The replay rebuilt the region from the SSTables
** alone, and check called it clean. */
Test(recovery, every_segment_gone_after_a_flush_is_damage)
{
  const char *dir = tu_dir();
  sochdb_options o = tu_options(64u << 20, 1u << 20, 10000);
  sochdb *db = tu_open_with(dir, &o);
  tu_commit_kv(db, "flushed", "1", SOCHDB_SYNC);
  tu_rotate(db);
  TU_WAIT_STATS(db, s->flushes >= 1, "a flush");
  tu_commit_kv(db, "acknowledged", "2", SOCHDB_SYNC);
  stop_and_lose_region(db, dir);
  uint64_t *lsns;
  size_t n;
  cr_assert_eq(wal_list_segments(dir, &lsns, &n), SOCHDB_OK);
  for (size_t i = 0; i < n; i++) {
    char p[4300];
    wal_segment_path(p, sizeof p, dir, lsns[i]);
    cr_assert_eq(unlink(p), 0);
  }
  free(lsns);
  expect_damage_refused(dir, "no segment", "every segment gone");
}

/* A record whose seq does not follow the one before it, in an intact group
** (a writer's fault sealed in): the replay refuses the log, and sochdb check
** must say so before a rebuild needs it. */
Test(recovery, check_reports_commits_out_of_order_as_the_replay_refuses_them)
{
  const char *dir = tu_dir();
  commit_keys_and_lose_region(dir, 6);
  char seg[4300];
  newest_segment(dir, seg, sizeof seg);
  size_t len, offs[256];
  uint32_t payloads[256];
  uint8_t *buf = tu_read_file(seg, &len);
  int n = groups_in(buf, len, offs, payloads, 256);
  cr_assert_geq(n, 4, "%d groups", n);
  uint8_t *prev = buf + offs[n - 2] + WAL_GROUP_HEADER, *rec = buf + offs[n - 1] + WAL_GROUP_HEADER;
  memcpy(rec + 8, prev + 8, 8);   /* the last commit takes the seq of the one before, resealed */
  wal_record_finish(rec);
  struct wal_group_header g;
  memcpy(&g, buf + offs[n - 1], sizeof g);
  struct wal_seg_header h;
  memcpy(&h, buf, sizeof h);
  wal_group_header_init(&g, wal_seg_salt(&h), g.first_lsn, rec, g.payload_bytes);
  memcpy(buf + offs[n - 1], &g, sizeof g);
  rewrite_file(seg, buf, len);
  free(buf);
  expect_damage_refused(dir, "is not after commit", "a repeated seq");
}

/* A FIFO named like a WAL segment: the replay's read-ahead opened it and
** waited for a writer forever, holding the region's creation lock and
** DIR/LOCK, so every opener hung. */
Test(recovery, a_fifo_named_like_a_segment_is_refused_not_waited_on)
{
  const char *dir = tu_dir();
  commit_keys_and_lose_region(dir, 1);
  char fifo[4300];
  snprintf(fifo, sizeof fifo, "%s/" WAL_DIR "/7fffffffffffff00.wal", dir);
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  pid_t pid = tu_fork();
  if (pid == 0) {
    sochdb *db;
    int rc = sochdb_open(dir, NULL, &db);
    _exit(rc == SOCHDB_CORRUPT || rc == SOCHDB_IO ? 0 : 1);
  }
  int status = 0;
  int ended = tu_wait_child(pid, 15000, &status) == 0;
  unlink(fifo);
  cr_assert(ended, "the open still waited after 15 s");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the open did not refuse the FIFO");
}

/* A segment whose size was damaged into a gigabyte of hole after its
** groups (a sparse file): its zeros are the log's clean end, found without
** reading them. sochdb check read the whole segment into memory (40 GiB:
** "out of memory"), and the replay read every zero through. */
Test(recovery, a_segment_grown_into_a_huge_hole_is_checked_and_replayed_without_reading_it)
{
  const char *dir = tu_dir();
  commit_keys_and_lose_region(dir, 1);
  char seg[4300];
  newest_segment(dir, seg, sizeof seg);
  cr_assert_eq(truncate(seg, 1ll << 30), 0, "truncate %s: %s", seg, strerror(errno));
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  cr_assert_eq(check_damage(dir), 0, "sochdb check finds damage in a clean log with a hole after it");
  getrusage(RUSAGE_SELF, &after);
  cr_assert_lt(after.ru_maxrss - before.ru_maxrss, 256 << 10, "sochdb check grew by %ld KiB for a 1 GiB hole",
               after.ru_maxrss - before.ru_maxrss);
  sochdb_options o = tu_options(64u << 20, 1u << 20, 10000);
  sochdb *db = tu_open_with(dir, &o);
  char v[8];
  cr_assert_eq(tu_read_str(db, "k0", v, sizeof v), SOCHDB_OK, "the commit before the hole");
  sochdb_close(db);
}

/* sochdb check on a live database: after it read the MANIFEST (whose newest
** table holds a commit above last_flushed_seq, as a half-flushed commit
** leaves it) and listed the log, the daemon flushed again and removed every
** segment it listed. The log it then read reached below that table's
** commit, and it reported "a durable group is damaged or gone" on a healthy
** database (found by a review: 54 of 3018 checks of a busy database). */
static sochdb *live_db;
static int moved_on;

static void flush_the_listed_log_away(void *ctx, uint64_t done, uint64_t total)
{
  (void)ctx, (void)done, (void)total;
  if (moved_on++)
    return;
  sochdb_stats before = tu_stats(live_db);
  static char v[64 << 10];
  for (int i = 0; i < 24; i++) {   /* 1.5 MiB: new segments, the active memtable full */
    char k[32];
    snprintf(k, sizeof k, "later/%03d", i);
    sochdb_txn *t = tu_begin(live_db, 0);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, sizeof v), SOCHDB_OK, "%s", sochdb_last_error());
    tu_commit(t, SOCHDB_SYNC, "a later commit");
  }
  tu_rotate(live_db);
  TU_WAIT_STATS(live_db, s->flushes > before.flushes + 1 && s->wal_segments_removed > before.wal_segments_removed,
                "flushed again, listed segments removed");
}

Test(recovery, check_of_a_live_database_is_not_fooled_by_segments_a_flush_removed)
{
  const char *dir = tu_dir();
  live_db = commit_until_one_is_half_flushed(dir, 0);
  struct manifest_state st;
  cr_assert_eq(manifest_read(dir, live_db->region.hdr->db_id, &st, NULL), SOCHDB_OK, "%s", sochdb_last_error());
  size_t nfiles;
  const struct manifest_file *newest = manifest_state_newest(&st, &nfiles);
  cr_assert(newest && newest->max_seq > st.last_flushed_seq, "setup: no table holds a commit above last_flushed_seq");
  manifest_state_free(&st);
  struct check_callbacks cb = { .progress = flush_the_listed_log_away };
  struct check_summary sum;
  cr_assert_eq(sdb_check_dir(dir, &cb, &sum), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert(moved_on, "the check reported no progress");
  cr_assert_eq(sum.damaged, 0, "sochdb check found damage in a healthy live database (%llu warnings)",
               (unsigned long long)sum.warnings);
  sochdb_close(live_db);
}
