/*
** test_flush.c — the on-disk half of the tree, through the public API:
** memtables flushed to SSTables by the daemon, reads that merge memtables
** and every level, snapshots that keep their view across flushes and
** compactions, recovery from the MANIFEST plus the WAL tail, and damage in
** an SSTable reported, never returned as data.
*/
#include "testutil.h"

#include "arena.h"
#include "check.h"
#include "internal.h"
#include "pagesize.h"
#include "filelist.h"
#include "filenames.h"
#include "manifest.h"
#include "sstfmt.h"
#include "tables.h"

TestSuite(flush, .init = tu_setup, .fini = tu_teardown, .timeout = 240);

#define MT   (1u << 20)
#define REG  (24u << 20)
#define VLEN 100

static void key_of(int i, char *k) { snprintf(k, 32, "key-%07d", i); }

/* Set by a test whose SSTable blocks must stay uncompressed. */
static int incompressible;

/* A value of VLEN bytes for key i at generation gen: its name ("v0000042-g3|")
** padded with one repeated letter, or (incompressible) bytes drawn from i and
** gen, which LZ4 cannot shrink. */
static void val_of(int i, int gen, char *v)
{
  if (incompressible) {
    uint64_t x = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull + (uint64_t)gen;
    for (int b = 0; b < VLEN; b++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      v[b] = (char)(x >> 24);
    }
    return;
  }
  memset(v, 'a' + (i + gen) % 26, VLEN);
  snprintf(v, VLEN, "v%07d-g%d|", i, gen);
  v[strlen(v)] = '.';   /* keep the padding after the printed part */
}

/* Write keys [from, end) at generation gen, `batch` per ASYNC transaction. */
static void fill_from(sochdb *db, int from, int end, int gen, int batch)
{
  for (int i = from; i < end; i += batch) {
    for (;;) {
      sochdb_txn *t;
      int rc = sochdb_txn_begin(db, 0, &t);   /* BUSY: the write stall outlasted busy_timeout_ms */
      for (int j = i; rc == SOCHDB_OK && j < end && j < i + batch; j++) {
        char k[32], v[VLEN];
        key_of(j, k);
        val_of(j, gen, v);
        cr_assert_eq(sochdb_put(t, k, strlen(k), v, VLEN), SOCHDB_OK, "put");
      }
      if (rc == SOCHDB_OK)
        rc = sochdb_commit(t, SOCHDB_ASYNC);
      if (rc == SOCHDB_OK)
        break;
      cr_assert_eq(rc, SOCHDB_BUSY, "commit of keys from %d: %s (%s)", i, sochdb_strerror(rc), sochdb_last_error());
      tu_sleep_ms(5);   /* the daemon is behind: let it flush */
    }
  }
}

/* Write keys [0, n) at generation gen, `batch` per ASYNC transaction. */
static void fill(sochdb *db, int n, int gen, int batch) { fill_from(db, 0, n, gen, batch); }

/* Every key [0, n) reads as generation gen in t, by get. */
static void expect_gets(sochdb_txn *t, int n, int gen, const char *ctx)
{
  for (int i = 0; i < n; i++) {
    char k[32], v[VLEN];
    key_of(i, k);
    val_of(i, gen, v);
    const void *got;
    size_t glen;
    int rc = sochdb_get(t, k, strlen(k), &got, &glen);
    cr_assert_eq(rc, SOCHDB_OK, "%s: get %s: %s (%s)", ctx, k, sochdb_strerror(rc), sochdb_last_error());
    cr_assert(glen == VLEN && memcmp(got, v, VLEN) == 0, "%s: %s reads %.*s, want generation %d", ctx, k,
              (int)(glen < 20 ? glen : 20), (const char *)got, gen);
  }
}

/* Keys 0..n-1 read as generation gen in t, by get and by a full scan. */
static void expect_all(sochdb_txn *t, int n, int gen, const char *ctx)
{
  expect_gets(t, n, gen, ctx);
  sochdb_iter *it;
  cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter_open");
  const void *key, *val;
  size_t klen, vlen;
  int seen = 0, rc;
  while ((rc = sochdb_iter_next(it, &key, &klen, &val, &vlen)) == SOCHDB_OK) {
    char k[32], v[VLEN];
    key_of(seen, k);
    val_of(seen, gen, v);
    cr_assert(klen == strlen(k) && memcmp(key, k, klen) == 0, "%s: scan position %d holds %.*s, want %s", ctx,
              seen, (int)klen, (const char *)key, k);
    cr_assert(vlen == VLEN && memcmp(val, v, VLEN) == 0, "%s: scan value of %s is not generation %d", ctx, k, gen);
    seen++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: scan ended with %s (%s)", ctx, sochdb_strerror(rc), sochdb_last_error());
  cr_assert_eq(seen, n, "%s: the scan saw %d keys, want %d", ctx, seen, n);
  sochdb_iter_close(it);
}

/* Every key a full scan in t hands out still reads right when the scan is
** over and a second one has run (the API keeps them until t ends): keys of
** SSTables are handed out in place where the mapped block stores them whole
** (src/iter.c), and copied where they share a prefix or were decompressed. */
static void expect_scanned_keys_last(sochdb_txn *t, int n, const char *ctx)
{
  const void **keys = calloc((size_t)n, sizeof *keys);
  size_t *lens = calloc((size_t)n, sizeof *lens);
  cr_assert(keys && lens, "calloc");
  for (int pass = 0; pass < 2; pass++) {
    sochdb_iter *it;
    cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter_open");
    const void *key, *val;
    size_t klen, vlen;
    int seen = 0;
    while (sochdb_iter_next(it, &key, &klen, &val, &vlen) == SOCHDB_OK) {
      cr_assert_lt(seen, n, "%s: the scan saw more than %d keys", ctx, n);
      if (pass == 0) {
        keys[seen] = key;
        lens[seen] = klen;
      }
      seen++;
    }
    sochdb_iter_close(it);
    cr_assert_eq(seen, n, "%s: the scan saw %d keys, want %d", ctx, seen, n);
  }
  for (int i = 0; i < n; i++) {
    char k[32];
    key_of(i, k);
    cr_assert(lens[i] == strlen(k) && memcmp(keys[i], k, lens[i]) == 0,
              "%s: the scan's key %d reads %.*s after the scans, want %s", ctx, i, (int)lens[i],
              (const char *)keys[i], k);
  }
  free(keys);
  free(lens);
}

/* The size of the largest file of dir whose name ends in suffix (0: none). */
static off_t largest_file(const char *dir, const char *suffix)
{
  DIR *d = opendir(dir);
  cr_assert(d != NULL, "opendir %s", dir);
  off_t most = 0;
  struct dirent *e;
  size_t sl = strlen(suffix);
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    struct stat st;
    if (len > sl && strcmp(e->d_name + len - sl, suffix) == 0 && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
        st.st_size > most)
      most = st.st_size;
  }
  closedir(d);
  return most;
}

/* Make a fresh memtable active and wait until the daemon has flushed every
** other: all that was written is then in SSTables. */
static void rotate_and_flush(sochdb *db)
{
  tu_rotate(db);
  TU_WAIT_STATS(db, s->memtables_in_use <= 1, "every memtable but the new active one flushed");
}

/* Write n keys, several memtables of mt_bytes in a REG region: they are
** flushed as they fill, the arenas recycled (the region never runs out
** although the data is several times the memtables it has), and every key
** reads back by get and by scan. Leaves the database open. */
static sochdb *fill_through_recycled_arenas(int n, size_t mt_bytes)
{
  sochdb *db = tu_open(REG, mt_bytes, 5000);
  fill(db, n, 1, 50);
  TU_WAIT_STATS(db, s->flushes >= 3 && s->sst_files >= 1, "flushes");
  /* The log is removed a whole segment at a time once the flushes cover
  ** it. A writer far ahead of the WAL writer puts many commits in one
  ** group, and a segment may then reach into the memtable still active:
  ** flush that one too, so that every closed segment is covered. A flush
  ** is counted when its table is recorded, before the log it covers is
  ** removed: wait. */
  rotate_and_flush(db);
  TU_WAIT_STATS(db, s->wal_segments_removed > 0, "the WAL covered by SSTables is removed");
  sochdb_stats st = tu_stats(db);
  cr_assert_gt(st.flush_bytes, 0, "flush bytes");
  cr_assert_geq(tu_count_files(tu_dir(), ".sst"), 1, "SSTable files in the directory");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 1, "after flushes");
  sochdb_abort(t);
  cr_assert_lt(st.memtables_in_use, st.memtables_total, "memtables are given back");
  return db;
}

/* The daemon's log names the region's page size as shm_page_bytes sees it. */
static void expect_logged_page_size(void)
{
  char region[PATH_MAX], log_path[PATH_MAX + 16], text[65536] = { 0 }, want[64];
  cr_assert_eq(shm_region_path(tu_dir(), region, sizeof region), SOCHDB_OK);
  snprintf(log_path, sizeof log_path, "%s/sochdbd.log", tu_dir());
  FILE *f = fopen(log_path, "re");
  cr_assert_not_null(f, "open %s: %s", log_path, strerror(errno));
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  snprintf(want, sizeof want, " in %s pages (",
           shm_page_bytes(region, NULL, 0) == SHM_HUGE_PAGE_BYTES ? "2 MiB" : "4 KiB");
  cr_assert_not_null(strstr(text, want), "the daemon's log lacks \"%s\":\n%s", want, text);
}

Test(flush, full_memtables_become_sstables_that_reads_find)
{
  fill_through_recycled_arenas(30000, MT);   /* ~5 MB of versions */
  expect_logged_page_size();
  tu_close();
}

/* The write stall (src/txn.c), with a backlog of two memtables and no
** daemon to flush them. A transaction larger than the backlog commits: one
** that is installing is never held back (it may hold intents in the
** memtables that wait). Then a write transaction cannot begin (SOCHDB_BUSY
** naming the cause; a reader can), and one that began before the backlog
** grew cannot commit, having changed nothing. Once a daemon may run, the
** stalled writer starts one, its flushes let writers on, and every key
** written is there. */
/* A database with no daemon (until the test allows one) whose writers
** stall once more than two memtables wait for their flush. */
static sochdb *open_with_backlog_of_two(unsigned busy_timeout_ms)
{
  sochdb_test_without_daemon(1);
  sochdb_test_flush_backlog(2 * MT);
  sochdb_options o = tu_options(REG, MT, busy_timeout_ms);
  tu_db = tu_open_with(tu_dir(), &o);
  return tu_db;
}

/* How many memtables are flushed but not yet given back. */
static uint32_t retired_memtables(sochdb *db)
{
  shm_region *r = &db->region;
  uint32_t n = 0;
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++)
    n += mt_state_of(mt_load(arena_memtable(r, i))) == MT_RETIRED;
  return n;
}

static void expect_stall_message(int rc, const char *what)
{
  cr_assert_eq(rc, SOCHDB_BUSY, "%s with memtables waiting and no daemon: %s", what, sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), "waited for their flush"), "%s: %s", what, sochdb_last_error());
}

Test(flush, writers_wait_while_full_memtables_wait_for_their_flush)
{
  enum { BIG = 40000 };   /* about six memtables of versions */
  sochdb *db = open_with_backlog_of_two(300);
  char k[32], v[VLEN];
  key_of(BIG + 1, k);
  val_of(BIG + 1, 1, v);
  sochdb_txn *early = tu_begin(db, 0);   /* before the backlog */
  cr_assert_eq(sochdb_put(early, k, strlen(k), v, VLEN), SOCHDB_OK);

  fill(db, BIG, 1, BIG);
  sochdb_stats st = tu_stats(db);
  cr_assert_geq(st.memtables_in_use, 5, "one transaction of %d keys filled %u memtables", BIG, st.memtables_in_use);
  cr_assert_eq(st.write_stalls, 0, "the transaction that filled them was never held (%llu stalls)",
               (unsigned long long)st.write_stalls);

  sochdb_txn *t = NULL;
  expect_stall_message(sochdb_txn_begin(db, 0, &t), "a write transaction's begin");
  cr_assert_null(t, "a refused begin hands out no transaction");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_abort(t);
  sochdb_stats mid = tu_stats(db);
  cr_assert_eq(mid.write_stalls, 1, "the begin's wait counted once, the reader's begin not at all (%llu)",
               (unsigned long long)mid.write_stalls);
  cr_assert_geq(mid.write_stall_us, 250000, "the begin waited busy_timeout_ms, 300 ms: %llu us counted",
                (unsigned long long)mid.write_stall_us);
  expect_stall_message(sochdb_commit(early, SOCHDB_ASYNC), "the commit of a transaction begun before");
  sochdb_stats after = tu_stats(db);
  cr_assert_eq(after.memtables_in_use, st.memtables_in_use, "the stalled commit rotated to a new memtable");
  cr_assert_eq(after.last_commit_seq, st.last_commit_seq, "the stalled commit took a sequence");
  cr_assert_eq(after.write_stalls, 2, "the commit's wait counted too (%llu)", (unsigned long long)after.write_stalls);
  cr_assert_geq(after.write_stall_us, mid.write_stall_us + 250000, "with its time: %llu us, %llu before",
                (unsigned long long)after.write_stall_us, (unsigned long long)mid.write_stall_us);

  /* counted in this process's slot: another handle's close keeps them (folded into the region's) */
  sochdb_options same = tu_options(REG, MT, 300);
  sochdb *other = tu_open_with(tu_dir(), &same);
  sochdb_close(db);
  tu_db = db = other;
  sochdb_stats kept = tu_stats(db);
  cr_assert(kept.write_stalls == 2 && kept.write_stall_us >= after.write_stall_us,
            "after the stalled handle's close: %llu stalls, %llu us (were 2, %llu)",
            (unsigned long long)kept.write_stalls, (unsigned long long)kept.write_stall_us,
            (unsigned long long)after.write_stall_us);

  sochdb_test_without_daemon(0);
  fill_from(db, BIG, BIG + 1, 1, 1);   /* BUSY while the daemon starts and flushes: retried */
  TU_WAIT_STATS(db, s->flushes >= 4, "the daemon flushed the memtables that waited");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, BIG + 1, 1, "after the stall");   /* key BIG + 1, never committed, is not listed */
  sochdb_abort(t);
  tu_close();
}

/* Commit key i at generation 1, ASYNC; it must go through at once. */
static void put_key_now(sochdb *db, int i)
{
  char k[32], v[VLEN];
  key_of(i, k);
  val_of(i, 1, v);
  sochdb_txn *t = tu_begin(db, 0);
  cr_assert_eq(sochdb_put(t, k, strlen(k), v, VLEN), SOCHDB_OK);
  int rc = sochdb_commit(t, SOCHDB_ASYNC);
  cr_assert_eq(rc, SOCHDB_OK, "commit of key %d: %s (%s)", i, sochdb_strerror(rc), sochdb_last_error());
}

/* The stall's bounds exactly, with a backlog of two memtables and no
** daemon: a write transaction begins with two full memtables waiting, not
** with three; a commit goes through with three (one of slack, for a
** transaction begun before), not with four. */
Test(flush, the_write_stall_holds_writers_past_its_limit_and_not_before)
{
  sochdb *db = open_with_backlog_of_two(200);
  char k[32], v[VLEN];
  memset(v, 'w', VLEN);
  sochdb_txn *first = tu_begin(db, 0);   /* nothing waits yet */
  cr_assert_eq(sochdb_put(first, "first", 5, v, VLEN), SOCHDB_OK);
  for (int i = 0; i < 2; i++) {
    put_key_now(db, i);
    tu_rotate(db);
  }
  sochdb_txn *second = tu_begin(db, 0);   /* two wait: not past the limit */
  cr_assert_eq(sochdb_put(second, "second", 6, v, VLEN), SOCHDB_OK);
  tu_rotate(db);                          /* three */
  sochdb_txn *t = NULL;
  expect_stall_message(sochdb_txn_begin(db, 0, &t), "a begin with three memtables waiting");
  cr_assert_eq(sochdb_commit(second, SOCHDB_ASYNC), SOCHDB_OK, "a commit with three waiting: %s",
               sochdb_last_error());
  tu_rotate(db);                          /* four */
  expect_stall_message(sochdb_commit(first, SOCHDB_ASYNC), "a commit with four memtables waiting");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  const void *got;
  size_t glen;
  cr_assert_eq(sochdb_get(t, "second", 6, &got, &glen), SOCHDB_OK, "the commit let through is there");
  cr_assert_eq(sochdb_get(t, "first", 5, &got, &glen), SOCHDB_NOTFOUND, "the commit held back is not");
  key_of(1, k);
  cr_assert_eq(sochdb_get(t, k, strlen(k), &got, &glen), SOCHDB_OK);
  sochdb_abort(t);
  tu_close();
}

/* A commit that finds every arena in use (no daemon to flush them, and a
** backlog limit too high to stall the begin) waits for a free memtable:
** a write stall too, counted once however many pauses, with its time. */
Test(flush, a_commit_waiting_for_a_free_memtable_counts_one_stall)
{
  sochdb_test_without_daemon(1);
  sochdb_test_flush_backlog(1ull << 40);
  sochdb_options o = tu_options(REG, MT, 200);
  sochdb *db = tu_db = tu_open_with(tu_dir(), &o);
  for (sochdb_stats s = tu_stats(db); s.memtables_in_use < s.memtables_total; s = tu_stats(db))
    tu_rotate(db);
  int rc = SOCHDB_OK, i = 0;
  char k[32], v[VLEN];
  memset(v, 's', VLEN);
  for (; rc == SOCHDB_OK && i < 100000; i++) {   /* until the last arena is full */
    sochdb_txn *t = tu_begin(db, 0);
    key_of(i, k);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, VLEN), SOCHDB_OK);
    rc = sochdb_commit(t, SOCHDB_ASYNC);
  }
  cr_assert_eq(rc, SOCHDB_BUSY, "commit %d with every arena in use: %s", i, sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), "no memtable room"), "%s", sochdb_last_error());
  sochdb_stats st = tu_stats(db);
  cr_assert_eq(st.write_stalls, 1, "the commit's wait counted once (%llu)", (unsigned long long)st.write_stalls);
  cr_assert_geq(st.write_stall_us, 150000, "it waited busy_timeout_ms, 200 ms: %llu us counted",
                (unsigned long long)st.write_stall_us);
  tu_close();
}

/* Flushed memtables that a reader's snapshot still holds are not in the
** backlog: a writer stalled by four waiting memtables starts the daemon,
** and once they are flushed it goes on, although the reader keeps them all
** (RETIRED, not recycled) until it ends. */
Test(flush, flushed_memtables_a_reader_holds_do_not_stall_writers)
{
  sochdb *db = open_with_backlog_of_two(300);
  for (int i = 0; i < 3; i++) {   /* a write begins with two waiting, not three */
    put_key_now(db, i);
    tu_rotate(db);
  }
  tu_rotate(db);
  sochdb_txn *reader = tu_begin(db, SOCHDB_TXN_READONLY);   /* its view holds all five */
  sochdb_test_without_daemon(0);
  sochdb_txn *t = NULL;
  int rc = SOCHDB_BUSY;
  for (int tries = 0; tries < 30 && rc == SOCHDB_BUSY; tries++)   /* 300 ms each */
    rc = sochdb_txn_begin(db, 0, &t);
  cr_assert_eq(rc, SOCHDB_OK, "a write transaction's begin once the four are flushed: %s (%s)", sochdb_strerror(rc),
               sochdb_last_error());
  char v[VLEN];
  memset(v, 'w', VLEN);
  cr_assert_eq(sochdb_put(t, "after", 5, v, VLEN), SOCHDB_OK);
  cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK, "%s", sochdb_last_error());
  TU_WAIT_STATS(db, s->memtables_in_use <= 1, "all four flushed");
  uint32_t retired = retired_memtables(db);
  cr_assert_eq(retired, 4, "the reader holds the four flushed memtables (%u retired)", retired);

  /* With the daemon stopped, the limit counts only what waits beside the
  ** retired ones: two waiting let a write begin, three do not. */
  pid_t daemon = sdb_daemon_pid(tu_dir());
  cr_assert_gt(daemon, 0, "the daemon's pid is in LOCK");
  tu_stop_process(daemon);   /* every thread stopped, not only signalled */
  tu_rotate(db);
  tu_rotate(db);
  t = tu_begin(db, 0);
  sochdb_abort(t);
  tu_rotate(db);
  t = NULL;
  expect_stall_message(sochdb_txn_begin(db, 0, &t), "a begin with three waiting besides the retired ones");
  cr_assert_eq(kill(daemon, SIGCONT), 0);
  sochdb_abort(reader);
  tu_close();
}

/* A child for the test below: begin a write transaction of `key` while
** nothing waits, commit it once the parent has made four memtables wait (it
** stalls), and exit with what the commit returned. */
static void stalled_committer(volatile int *stage, const char *key)
{
  sochdb_options o = tu_options(REG, MT, 10000);
  sochdb *mine;
  sochdb_txn *t;
  char v[VLEN];
  memset(v, 'k', VLEN);
  if (sochdb_open(tu_dir(), &o, &mine) != SOCHDB_OK || sochdb_txn_begin(mine, 0, &t) != SOCHDB_OK ||
      sochdb_put(t, key, strlen(key), v, VLEN) != SOCHDB_OK)
    _exit(2);
  __atomic_add_fetch(stage, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(stage, __ATOMIC_SEQ_CST) < 100)
    tu_sleep_ms(1);
  __atomic_add_fetch(stage, 1, __ATOMIC_SEQ_CST);
  _exit(sochdb_commit(t, SOCHDB_ASYNC));
}

/* Two writers wait in their commits' write stall; one is killed with
** SIGKILL. What a stalled commit holds is a snapshot and a view of every
** memtable, but no commit epoch, intent or sequence: so the daemon let in
** flushes the memtables that waited (a commit epoch held through the wait
** would keep its seal from ever finishing), and the other writer's commit
** returns long before its busy_timeout_ms, applied: nobody else wrote its
** key, though versions newer than its snapshot left memory meanwhile (its
** commit finds that in the SSTables). Once the dead one is reaped nothing of it remains: every flushed
** memtable is given back (its view does not pin them), the horizon moves
** on, and its key was never applied. */
Test(flush, a_writer_killed_in_the_write_stall_holds_nothing_up)
{
  sochdb *db = open_with_backlog_of_two(10000);
  volatile int *stage = tu_shared_alloc(sizeof *stage);
  cr_assert_not_null(stage);
  pid_t killed = tu_fork();
  cr_assert_geq(killed, 0, "fork: %s", strerror(errno));
  if (killed == 0)
    stalled_committer(stage, "killed");
  pid_t patient = tu_fork();
  cr_assert_geq(patient, 0, "fork: %s", strerror(errno));
  if (patient == 0)
    stalled_committer(stage, "patient");
  for (int i = 0; i < 5000 && __atomic_load_n(stage, __ATOMIC_SEQ_CST) != 2; i++)
    tu_sleep_ms(1);
  cr_assert_eq(*stage, 2, "both children began their transactions");
  for (int i = 0; i < 3; i++) {
    put_key_now(db, i);
    tu_rotate(db);
  }
  tu_rotate(db);   /* four wait */
  sochdb_stats made = tu_stats(db);
  __atomic_store_n(stage, 100, __ATOMIC_SEQ_CST);
  for (int i = 0; i < 5000 && __atomic_load_n(stage, __ATOMIC_SEQ_CST) != 102; i++)
    tu_sleep_ms(1);
  tu_sleep_ms(100);   /* both inside their commits' wait by now (1 ms a round, 10 s to go) */
  sochdb_stats before = tu_stats(db);
  cr_assert_eq(before.last_commit_seq, made.last_commit_seq, "neither stalled commit went through without a daemon");
  cr_assert_eq(kill(killed, SIGKILL), 0);
  int st = 0;
  cr_assert_eq(tu_wait_child(killed, 5000, &st), 0);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child was killed in the stall (status %#x)", st);

  sochdb_test_without_daemon(0);
  put_key_now(db, 3);   /* its begin starts the daemon, whose flushes end the stall */
  cr_assert_eq(tu_wait_child(patient, 8000, &st), 0, "the other stalled writer finished within 8 s (its "
               "busy_timeout_ms is 10 s)");
  int patient_rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  cr_assert(patient_rc == SOCHDB_OK, "its commit of a key nobody else wrote returned %s (status %#x)",
            patient_rc >= 0 ? sochdb_strerror(patient_rc) : "nothing", st);
  TU_WAIT_STATS(db, s->memtables_in_use <= 2 && s->processes_reaped >= 1, "flushed, and the dead child reaped");
  for (int i = 0; i < 10000 && retired_memtables(db) > 0; i++)
    tu_sleep_ms(1);
  cr_assert_eq(retired_memtables(db), 0, "the flushed memtables are given back");
  TU_WAIT_STATS(db, s->oldest_snapshot == s->last_commit_seq, "no dead snapshot holds the horizon");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  const void *got;
  size_t glen;
  cr_assert_eq(sochdb_get(t, "killed", 6, &got, &glen), SOCHDB_NOTFOUND, "the killed commit applied nothing");
  cr_assert_eq(sochdb_get(t, "patient", 7, &got, &glen), SOCHDB_OK, "the other stalled commit is there");
  sochdb_abort(t);
  tu_close();
}

/* KiB of file `path`'s mapping in this process that are mapped in 2 MiB
** pages (ShmemPmdMapped of its /proc/self/smaps entry). */
static uint64_t pmd_mapped_kb(const char *path)
{
  FILE *f = fopen("/proc/self/smaps", "re");
  cr_assert_not_null(f, "open /proc/self/smaps");
  char line[4400];
  uint64_t kb = 0;
  int ours = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long long v;
    if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'))   /* "7f12-7f34 rw-s ... path" */
      ours = strstr(line, path) != NULL;
    else if (ours && sscanf(line, "ShmemPmdMapped: %llu kB", &v) == 1)
      kb += v;
  }
  fclose(f);
  return kb;
}

/* The same on a tmpfs that gives the region 2 MiB pages (README, "Huge
** pages"): arenas reserved 1 MiB at a time, recycled, and trimmed by
** punching holes that split those pages. The writer's mapping is in 2 MiB
** pages, so the mount did what it says. Needs root to mount. */
static char huge_mnt[] = "/tmp/sochdb-huge-XXXXXX";

static void unmount_huge_tmpfs(void)
{
  if (!strstr(huge_mnt, "XXXXXX"))   /* mounted: whatever the test's outcome */
    tu_unmount(huge_mnt);
}

Test(flush, a_region_in_2_MiB_pages_flushes_and_recycles_losing_nothing, .fini = unmount_huge_tmpfs)
{
  char why[192], region[PATH_MAX];
  tu_mount_tmpfs_or_skip(huge_mnt, "huge=within_size,size=128m");
  setenv("SOCHDB_SHM_DIR", huge_mnt, 1);
  cr_assert_eq(shm_region_path(tu_dir(), region, sizeof region), SOCHDB_OK);
  if (shm_page_bytes(region, why, sizeof why) != SHM_HUGE_PAGE_BYTES)
    cr_skip_test("this system gives a huge=within_size tmpfs 4 KiB pages (%s)", why);
  fill_through_recycled_arenas(120000, 4u << 20);   /* ~20 MB: 5 memtables of 4 MiB */
  uint64_t huge_kb = pmd_mapped_kb(region);
  cr_log_info("%llu KiB of the region mapped in 2 MiB pages (%s)", (unsigned long long)huge_kb, why);
  cr_assert_gt(huge_kb, 0, "the writer's mapping of a region on %s has no 2 MiB page", why);
  expect_logged_page_size();
  tu_close();
  tu_stop_daemon(tu_dir());
}

/* Keys written in order make level-0 files that overlap neither one another
** nor level 1: their compactions move them down in a MANIFEST edit and write
** nothing (LevelDB's trivial move). The same keys written again overlap the
** moved files, and are merged. The daemon compresses every level: by
** default a file moving from level 1 to 2 is rewritten to be compressed
** (tables_compress_their_blocks_from_level_2, below). */
Test(flush, sequential_loads_are_compacted_by_moving_files_not_rewriting_them)
{
  char script[4200];
  sochdb_options o = tu_options(REG, MT, 5000);
  o.daemon_path = tu_daemon_script(script, sizeof script, SOCHDB_TEST_SOCHDBD, "--compress-from-level 0");
  sochdb *db = tu_db = tu_open_with(tu_dir(), &o);
  const int n = 40000;    /* ~7 MB: at least 4 level-0 files, the trigger */
  fill(db, n, 1, 50);
  TU_WAIT_STATS(db, s->compactions >= 1 && s->l0_files < 4, "a compaction of the level-0 files");
  sochdb_stats st = tu_stats(db);
  cr_assert_eq(st.compact_bytes_written, 0, "moved files were rewritten (%llu bytes)",
               (unsigned long long)st.compact_bytes_written);
  cr_assert_eq(st.compact_bytes_read, 0, "moved files were read (%llu bytes)",
               (unsigned long long)st.compact_bytes_read);
  cr_assert_gt(st.sst_files, st.l0_files, "files live below level 0");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 1, "after the moves");
  sochdb_abort(t);

  fill(db, n, 2, 50);
  TU_WAIT_STATS(db, s->compact_bytes_written > 0, "a merging compaction of rewritten keys");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 2, "after the merge");
  sochdb_abort(t);
  tu_close();
  unlink(script);
}

/* The data blocks of the SSTables the MANIFEST of dir lists at level, by
** compression byte. No file it lists may be removed meanwhile (a daemon
** may run if it only moves files, or adds them). */
static void count_level_blocks(const char *dir, const uint8_t db_id[16], unsigned level, unsigned *files,
                               unsigned *none, unsigned *lz4)
{
  struct manifest_state st;
  cr_assert_eq(manifest_read(dir, db_id, &st, NULL), SOCHDB_OK, "read the MANIFEST: %s", sochdb_last_error());
  *files = *none = *lz4 = 0;
  for (size_t i = 0; i < st.levels[level].n; i++) {
    char path[4300];
    sst_file_path(path, sizeof path, dir, st.levels[level].files[i].number);
    size_t len;
    uint8_t *buf = tu_read_file(path, &len);
    struct sst_reader r;
    cr_assert_eq(sst_open(buf, len, &r), SOCHDB_OK, "open %s: %s", path, sochdb_last_error());
    for (uint32_t b = 0; b < r.nblocks; b++)
      (buf[r.index[b].offset + r.index[b].size - SST_TRAILER_BYTES] == SST_LZ4 ? lz4 : none)[0]++;
    sst_close(&r);
    free(buf);
    ++*files;
  }
  manifest_state_free(&st);
}

/* The LZ4 blocks and the plain ones of every level above `levels`, once the
** daemon is stopped (files no longer change); the test's database is
** closed. */
static void count_blocks_by_level(sochdb *db, unsigned levels, unsigned *files, unsigned *none, unsigned *lz4)
{
  uint8_t db_id[16];
  memcpy(db_id, db->region.hdr->db_id, sizeof db_id);
  tu_close();
  tu_stop_daemon(tu_dir());
  for (unsigned l = 0; l < levels; l++)
    count_level_blocks(tu_dir(), db_id, l, &files[l], &none[l], &lz4[l]);
}

/* The blocks of the level-0 tables a flush of about two memtables of
** compressible values writes, served by sochdbd with flags. */
static void flushed_blocks(const char *flags, unsigned *none, unsigned *lz4)
{
  char script[4200];
  sochdb_options o = tu_options(REG, MT, 5000);
  o.daemon_path = tu_daemon_script(script, sizeof script, SOCHDB_TEST_SOCHDBD, flags);
  sochdb *db = tu_db = tu_open_with(tu_dir(), &o);
  fill(db, 12000, 1, 50);
  TU_WAIT_STATS(db, s->flushes >= 1 && s->memtables_in_use == 1, "the full memtables flushed");
  unsigned files;
  count_blocks_by_level(db, 1, &files, none, lz4);
  unlink(script);
  cr_assert_gt(files, 0, "tables in level 0");
}

Test(flush, flushed_tables_store_their_blocks_as_they_are)
{
  unsigned none, lz4;
  flushed_blocks("", &none, &lz4);
  cr_assert(lz4 == 0 && none > 0, "%u LZ4 blocks of %u", lz4, lz4 + none);
}

Test(flush, a_daemon_told_to_compress_from_level_0_compresses_flushed_tables)
{
  unsigned none, lz4;
  flushed_blocks("--compress-from-level 0", &none, &lz4);
  cr_assert(lz4 > 0 && none == 0, "%u LZ4 blocks of %u", lz4, lz4 + none);
}

/* Values LZ4 cannot shrink gain nothing from a rewrite: a load of them in
** key order moves from level 1 into level 2 as it is, reading and writing
** nothing (a sample of each file's blocks says so). */
Test(flush, a_load_in_key_order_that_does_not_compress_moves_into_level_2_unchanged)
{
  incompressible = 1;
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 80000;    /* ~16 MB: past level 1's target of 4 MiB */
  fill(db, n, 1, 50);
  uint8_t db_id[16];
  memcpy(db_id, db->region.hdr->db_id, sizeof db_id);
  unsigned files = 0, none = 0, lz4 = 0;
  for (int w = 0; w < 6000 && !files; w++) {   /* moves only: every file listed stays */
    count_level_blocks(tu_dir(), db_id, 2, &files, &none, &lz4);
    if (!files)
      tu_sleep_ms(10);
  }
  cr_assert_gt(files, 0, "no file reached level 2 in 60 s");
  cr_assert(lz4 == 0 && none > 0, "level 2: %u LZ4 blocks of %u", lz4, lz4 + none);
  sochdb_stats st = tu_stats(db);
  cr_assert_eq(st.compact_bytes_written, 0, "the files were rewritten (%llu bytes)",
               (unsigned long long)st.compact_bytes_written);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 1, "after the moves");
  sochdb_abort(t);
  tu_close();
}

/* Deeper levels compress their blocks: a sequential load of values that
** compress, whose files a compaction could move down unchanged, has them
** rewritten on their way from level 1, which does not compress, to level 2. */
Test(flush, tables_compress_their_blocks_from_level_2)
{
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 80000;    /* ~14 MB of compressible values: past level 1's target of 4 MiB */
  fill(db, n, 1, 50);
  TU_WAIT_STATS(db, s->compact_bytes_written > 0 && s->memtables_in_use == 1 && s->compaction_debt_bytes == 0 &&
                s->l0_files < 4, "the load flushed and settled, some of it rewritten into level 2");
  unsigned files[3], none[3], lz4[3];
  count_blocks_by_level(db, 3, files, none, lz4);
  cr_assert_gt(files[1], 0, "files in level 1");
  cr_assert_gt(files[2], 0, "files in level 2");
  for (unsigned l = 0; l < 2; l++)
    cr_assert(lz4[l] == 0 && (files[l] == 0 || none[l] > 0), "level %u: %u LZ4 blocks of %u", l, lz4[l],
              lz4[l] + none[l]);
  cr_assert(lz4[2] > 0 && none[2] == 0, "level 2: %u LZ4 blocks of %u", lz4[2], lz4[2] + none[2]);
  db = tu_open(REG, MT, 5000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 1, "after the compactions");
  sochdb_abort(t);
  tu_close();
}

Test(flush, snapshots_keep_their_view_across_flush_and_compaction)
{
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 8000;
  fill(db, n, 1, 100);
  sochdb_txn *old = tu_begin(db, SOCHDB_TXN_READONLY);
  /* overwrite everything several times: flushes, then compactions, while
  ** `old` holds its snapshot and its view. It reads nothing before they
  ** end, so it takes its files after them (txn.c, sdb_txn_tables): the
  ** horizon its snapshot holds must have kept its versions in them. */
  for (int gen = 2; gen <= 7; gen++)
    fill(db, n, gen, 100);
  TU_WAIT_STATS(db, s->compactions >= 1, "a compaction");
  expect_all(old, n, 1, "the old snapshot");
  sochdb_txn *now = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(now, n, 7, "a new snapshot");
  /* compacted blocks hold the old snapshot's versions after the newer ones of
  ** the same key, which share the whole key with them */
  expect_scanned_keys_last(old, n, "the old snapshot");
  expect_scanned_keys_last(now, n, "a new snapshot");
  sochdb_abort(now);
  sochdb_abort(old);
  /* with the old snapshot gone, a later compaction may drop its versions */
  fill(db, n, 8, 100);
  TU_WAIT_STATS(db, s->l0_files < 4 && s->compaction_debt_bytes == 0, "compaction catching up");
  now = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(now, n, 8, "after compactions");
  sochdb_abort(now);
  sochdb_stats st = tu_stats(db);
  cr_assert_gt(st.compact_bytes_written, 0, "compaction wrote");
  tu_close();
}

/* A snapshot whose versions are all in SSTables when it begins, and that
** reads only after compactions merged those files: it takes its files then
** (txn.c, sdb_txn_tables), and only the compactions' horizon, which its
** published snapshot holds back, keeps its versions in the merged ones.
** (Fails with a horizon that ignores snapshots: checked.) */
Test(flush, a_snapshot_reads_files_merged_after_it_began)
{
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 8000;
  fill(db, n, 1, 100);
  rotate_and_flush(db);
  sochdb_txn *old = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int gen = 2; gen <= 7; gen++)
    fill(db, n, gen, 100);
  TU_WAIT_STATS(db, s->compact_bytes_written > 0 && s->l0_files < 4 && s->compaction_debt_bytes == 0,
                "merging compactions catching up");
  expect_all(old, n, 1, "a snapshot that took its files after the merges");
  sochdb_abort(old);
  tu_close();
}

/* Keys of plain (uncompressed) blocks: a scan hands them out in place, as
** pointers into the mapped file, and they last until the transaction ends. */
Test(flush, a_scan_hands_out_keys_of_plain_blocks_in_place)
{
  incompressible = 1;
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 8000;
  fill(db, n, 1, 100);
  /* and the flushed memtable gone from memory: while a transaction's view
  ** still holds it, a scan reads its keys there (in the arena) */
  TU_WAIT_STATS(db, s->flushes >= 1 && s->sst_files >= 1 && s->memtables_in_use == 1,
                "a flush, and its memtable given back");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 1, "incompressible values");
  expect_scanned_keys_last(t, n, "incompressible values");
  sochdb_iter *it;
  cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter_open");
  const void *key, *val;
  size_t klen, vlen;
  int in_place = 0;
  while (sochdb_iter_next(it, &key, &klen, &val, &vlen) == SOCHDB_OK)
    for (uint32_t f = 0; f < t->tables->n; f++) {
      const struct sdb_table *tb = t->tables->files[f];
      in_place += (const uint8_t *)key >= tb->map && (const uint8_t *)key < tb->map + tb->len;
    }
  sochdb_iter_close(it);
  cr_assert_gt(in_place, n / 2, "only %d of %d keys were handed out from the mapped files", in_place, n);
  sochdb_abort(t);
  tu_close();
}

Test(flush, deletes_hide_keys_in_every_level)
{
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 6000;
  fill(db, n, 1, 100);
  for (int gen = 2; gen <= 4; gen++)
    fill(db, n, gen, 100);
  TU_WAIT_STATS(db, s->sst_files >= 2, "SSTables");
  for (int i = 0; i < n; i += 2) {   /* delete the even keys */
    char k[32];
    key_of(i, k);
    sochdb_txn *t = tu_begin(db, 0);
    cr_assert_eq(sochdb_delete(t, k, strlen(k)), SOCHDB_OK, "delete");
    cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK, "commit delete");
  }
  fill(db, 0, 0, 1);
  for (int gen = 5; gen <= 6; gen++) {   /* push the tombstones down */
    for (int i = 1; i < n; i += 2) {
      char k[32], v[VLEN];
      key_of(i, k);
      val_of(i, gen, v);
      sochdb_txn *t = tu_begin(db, 0);
      cr_assert_eq(sochdb_put(t, k, strlen(k), v, VLEN), SOCHDB_OK, "put");
      cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK, "commit");
    }
  }
  TU_WAIT_STATS(db, s->compactions >= 1, "a compaction");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < n; i++) {
    char k[32];
    key_of(i, k);
    const void *v;
    size_t vl;
    int rc = sochdb_get(t, k, strlen(k), &v, &vl);
    cr_assert_eq(rc, i % 2 ? SOCHDB_OK : SOCHDB_NOTFOUND, "%s: %s", k, sochdb_strerror(rc));
  }
  sochdb_iter *it;
  cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter");
  const void *key, *val;
  size_t klen, vlen;
  int seen = 0;
  while (sochdb_iter_next(it, &key, &klen, &val, &vlen) == SOCHDB_OK) {
    char k[32];
    key_of(2 * seen + 1, k);
    cr_assert(klen == strlen(k) && !memcmp(key, k, klen), "scan: %.*s where %s was due", (int)klen,
              (const char *)key, k);
    seen++;
  }
  cr_assert_eq(seen, n / 2, "the scan saw %d live keys", seen);
  sochdb_iter_close(it);
  sochdb_abort(t);
  tu_close();
}

/* The keys a fresh scan of db sees, joined with spaces into out. */
static void scan_keys(sochdb *db, char *out, size_t cap)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_iter *it;
  cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter");
  const void *key, *val;
  size_t klen, vlen, at = 0;
  out[0] = 0;
  while (sochdb_iter_next(it, &key, &klen, &val, &vlen) == SOCHDB_OK && at + klen + 2 < cap)
    at += (size_t)snprintf(out + at, cap - at, "%s%.*s", at ? " " : "", (int)klen, (const char *)key);
  sochdb_iter_close(it);
  sochdb_abort(t);
}

/* A delete of a key whose value is already in an SSTable: the tombstone,
** first in the memtable, then flushed into a newer SSTable than the value,
** hides the key from get and from scan at every step, while a snapshot
** taken before the delete still reads the value. */
Test(flush, a_delete_hides_a_value_already_flushed_while_in_the_memtable_and_after)
{
  sochdb *db = tu_open(REG, MT, 5000);
  tu_commit_kv(db, "gone", "old", SOCHDB_ASYNC);
  tu_commit_kv(db, "kept", "v", SOCHDB_ASYNC);
  rotate_and_flush(db);                      /* both values in an SSTable */
  sochdb_txn *before = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_txn *t = tu_begin(db, 0);
  tu_del_str(t, "gone");
  tu_commit(t, SOCHDB_ASYNC, "the delete");
  const char *step[2] = { "the tombstone in the memtable", "the tombstone flushed" };
  for (int i = 0; i < 2; i++) {
    if (i)
      rotate_and_flush(db);
    sochdb_txn *r = tu_begin(db, SOCHDB_TXN_READONLY);
    tu_expect_str(r, "gone", NULL, step[i]);
    tu_expect_str(r, "kept", "v", step[i]);
    sochdb_abort(r);
    char keys[64];
    scan_keys(db, keys, sizeof keys);
    cr_assert_str_eq(keys, "kept", "%s: a scan sees \"%s\"", step[i], keys);
    tu_expect_str(before, "gone", "old", "a snapshot taken before the delete");
  }
  sochdb_abort(before);
  tu_close();
}

Test(flush, a_lost_region_is_rebuilt_from_sstables_and_the_wal_tail)
{
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 20000;
  fill(db, n, 1, 50);
  /* A segment goes once all its commits are flushed. When a big group
  ** closed the last full segment with commits of the active memtable in it,
  ** nothing more is removed until that memtable fills too: keys past n
  ** (never checked) fill it, a round at a time. */
  for (int more = n; more < 4 * n; more += 2000) {
    sochdb_stats st = tu_stats(db);
    if (st.flushes >= 2 && st.wal_segments_removed >= 1)
      break;
    tu_sleep_ms(200);
    fill_from(db, more, more + 2000, 1, 50);
  }
  TU_WAIT_STATS(db, s->flushes >= 2 && s->wal_segments_removed >= 1, "flushes and WAL removal");
  fill(db, 500, 2, 50);   /* a tail that only the WAL (and a memtable) holds */
  sochdb_txn *t = tu_begin(db, 0);
  tu_put_str(t, "sync-marker", "durable");
  tu_commit(t, SOCHDB_SYNC, "sync");
  tu_close();
  tu_stop_daemon(tu_dir());
  tu_remove_region(tu_dir());
  db = tu_open(REG, MT, 5000);
  sochdb_stats st = tu_stats(db);
  cr_assert_geq(st.sst_files, 1, "the rebuilt region lists the SSTables at once");
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  char buf[32];
  cr_assert_eq(tu_get_str(t, "sync-marker", buf, sizeof buf), SOCHDB_OK, "the WAL tail is replayed");
  for (int i = 0; i < n; i++) {
    char k[32], v[VLEN];
    key_of(i, k);
    val_of(i, i < 500 ? 2 : 1, v);
    const void *got;
    size_t gl;
    cr_assert_eq(sochdb_get(t, k, strlen(k), &got, &gl), SOCHDB_OK, "get %s after rebuild", k);
    cr_assert(gl == VLEN && !memcmp(got, v, VLEN), "%s has the wrong value after the rebuild", k);
  }
  sochdb_abort(t);
  tu_close();
}

/* The first SSTable of dir, by name, into path. */
static void first_sst(const char *dir, char *path, size_t n)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  path[0] = 0;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".sst") && !strstr(e->d_name, ".tmp")) {
      snprintf(path, n, "%s/%s", dir, e->d_name);
      break;
    }
  closedir(d);
  cr_assert(path[0], "no SSTable in %s", dir);
}

/* Flip a bit of the byte at offset at of path (at < 0: from the end). */
static void flip_byte(const char *path, off_t at)
{
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0, "open %s", path);
  if (at < 0) {
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    at += st.st_size;
  }
  uint8_t b;
  cr_assert_eq(pread(fd, &b, 1, at), 1, "read %s", path);
  b ^= 0x40;
  cr_assert_eq(pwrite(fd, &b, 1, at), 1, "write %s", path);
  close(fd);
}

/* Get keys 0..n-1 (generation 1) in t: every one that does not report
** SOCHDB_CORRUPT has its right value. Returns how many did; the message of
** the first into first_error. */
static int get_all_but_damaged(sochdb_txn *t, int n, char *first_error, size_t cap)
{
  int corrupt = 0;
  first_error[0] = 0;
  for (int i = 0; i < n; i++) {
    char k[32], v[VLEN];
    key_of(i, k);
    val_of(i, 1, v);
    const void *got;
    size_t gl;
    int rc = sochdb_get(t, k, strlen(k), &got, &gl);
    if (rc == SOCHDB_CORRUPT) {
      if (!corrupt++)
        snprintf(first_error, cap, "%s", sochdb_last_error());
      continue;
    }
    cr_assert_eq(rc, SOCHDB_OK, "get %s: %s", k, sochdb_strerror(rc));
    cr_assert(gl == VLEN && !memcmp(got, v, VLEN), "%s returned a wrong value from a damaged file", k);
  }
  return corrupt;
}

/* Keys 0..n-1 at generation 1 in an SSTable (path), then a bit flipped
** inside one of its data blocks; the region removed (a fresh block cache:
** nothing read before the damage), no daemon running. */
static void damaged_sst_of(const sochdb_options *o, int n, char *path, size_t cap)
{
  sochdb *db = tu_open_with(tu_dir(), o);
  fill(db, n, 1, 50);
  TU_WAIT_STATS(db, s->sst_files >= 1, "an SSTable");
  sochdb_close(db);
  tu_stop_daemon(tu_dir());
  first_sst(tu_dir(), path, cap);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  flip_byte(path, st.st_size / 3);
  tu_remove_region(tu_dir());
}

Test(flush, a_flipped_byte_in_an_sstable_is_reported_never_returned)
{
  sochdb_options o = tu_options(REG, MT, 5000);
  const int n = 9000;
  char path[4300];
  damaged_sst_of(&o, n, path, sizeof path);
  o.busy_timeout_ms = 1000;
  sochdb *db = tu_open_with(tu_dir(), &o);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  char first_error[512];
  int corrupt = get_all_but_damaged(t, n, first_error, sizeof first_error);
  cr_assert_gt(corrupt, 0, "the damaged block's keys report SOCHDB_CORRUPT");
  cr_assert_lt(corrupt, n / 2, "only the damaged block's keys report it (%d of %d)", corrupt, n);
  sochdb_iter *it;
  int rc = sochdb_iter_open(t, NULL, 0, NULL, 0, &it);
  const void *key, *val;
  size_t klen, vlen;
  int returned = 0;
  while (rc == SOCHDB_OK && (rc = sochdb_iter_next(it, &key, &klen, &val, &vlen)) == SOCHDB_OK)
    returned++;
  cr_assert_eq(rc, SOCHDB_CORRUPT, "a full scan crosses the damage: %s", sochdb_strerror(rc));
  /* the message names the file once, as "SSTable NNNNNN: <what>" (it was
  ** formatted into its own buffer, and came out garbled) */
  const char *name = strrchr(path, '/') + 1;
  char want[64];
  snprintf(want, sizeof want, "SSTable %.6s: ", name);
  const char *msg = sochdb_last_error();
  cr_assert(!strncmp(msg, want, strlen(want)) && !strstr(msg + strlen(want), want), "message: %s", msg);
  /* a caller that goes on after the error keeps getting it: the cursor is
  ** past the damage, and used to end the scan quietly with keys missing */
  for (int again = 0; again < 3; again++) {
    rc = sochdb_iter_next(it, &key, &klen, &val, &vlen);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "next after the error (%d keys before it): %s", returned, sochdb_strerror(rc));
  }
  sochdb_iter_close(it);
  sochdb_abort(t);
  sochdb_close(db);
  struct check_summary sum;
  cr_assert_eq(sdb_check_dir(tu_dir(), NULL, &sum), SOCHDB_OK, "check runs");
  cr_assert_geq(sum.damaged, 1, "check reports the damage");

  /* damage in the first block, which opening the file reads for its first
  ** key: the keys of the file's other blocks stay readable (they were all
  ** refused, the file kept as failed to open), and the damaged block's keys
  ** report it, naming the file */
  tu_stop_daemon(tu_dir());
  flip_byte(path, 40);
  tu_remove_region(tu_dir());
  db = tu_open_with(tu_dir(), &o);
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  int corrupt_first = get_all_but_damaged(t, n, first_error, sizeof first_error);
  cr_assert(corrupt_first > corrupt && corrupt_first < n / 2,
            "the first block's keys report SOCHDB_CORRUPT too, the rest are read (%d of %d)", corrupt_first, n);
  cr_assert(!strncmp(first_error, want, strlen(want)), "message: %s", first_error);
  char k0[32];
  key_of(0, k0);
  const void *got;
  size_t gl;
  cr_assert_eq(sochdb_get(t, k0, strlen(k0), &got, &gl), SOCHDB_CORRUPT, "the first key is in the damaged block");
  sochdb_abort(t);
  sochdb_close(db);
}

/* A compaction whose input is damaged fails, and the daemon retries it
** after half a second, then after twice as long each time (every try reads
** the inputs again, and the damage stays until the file is replaced). The
** log says so at the 1st, 2nd and 4th failure, with the wait before the
** next try, not at the 3rd. Reads go on meanwhile; the full compaction
** asked for is never called done. */
Test(flush, a_failing_compaction_is_retried_less_and_less_often)
{
  sochdb_options o = tu_options(REG, MT, 5000);
  const int n = 9000;
  char path[4300];
  damaged_sst_of(&o, n, path, sizeof path);
  sochdb *db = tu_open_with(tu_dir(), &o);
  fill(db, n, 2, 50);   /* an overlapping file: a compaction must read the damaged one */
  rotate_and_flush(db);
  uint64_t ticket = sdb_full_compaction_request(db);
  /* 0.5 + 1 + 2 s of waits between the four tries; 20 s allowed */
  for (int i = 0; i < 2000 && tu_log_lines(tu_dir(), "(4 times so far)") == 0; i++)
    tu_sleep_ms(10);
  cr_assert_eq(tu_log_lines(tu_dir(), "compaction failed"), 3, "the 1st, 2nd and 4th failures logged, no other");
  cr_assert_eq(tu_log_lines(tu_dir(), "retrying in 500 ms (1 time so far)"), 1, "the first wait");
  cr_assert_eq(tu_log_lines(tu_dir(), "retrying in 1000 ms (2 times so far)"), 1, "the second wait, twice as long");
  cr_assert_eq(tu_log_lines(tu_dir(), "retrying in 4000 ms (4 times so far)"), 1, "the fourth wait");
  cr_assert(!sdb_full_compaction_done(db, ticket), "a failed compaction called done");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_gets(t, n, 2, "the newer file over the damaged one");   /* a scan merges the damaged one in */
  sochdb_abort(t);
  sochdb_close(db);
}

/* A full compaction is called done with its inputs gone from the directory
** (no reader holds them here): the compactor removes them itself, where
** they used to wait for the flusher's next step, up to a second later. */
Test(flush, a_full_compaction_is_done_with_its_inputs_removed)
{
  sochdb *db = tu_open(REG, MT, 5000);
  const int n = 3000;
  fill(db, n, 1, 100);
  rotate_and_flush(db);
  fill(db, n, 2, 100);   /* the same keys again: a second table over the first */
  rotate_and_flush(db);
  int before = tu_count_files(tu_dir(), ".sst");
  cr_assert_geq(before, 2, "two flushed tables to compact (%d)", before);
  /* An idle flusher sleeps longer and longer, up to a second: after this
  ** its next step is unlikely to come between the compaction and the count
  ** (with the flusher as the remover, the count was off in 10 runs of 10). */
  tu_sleep_ms(1200);
  tu_compact_files(db);
  sochdb_stats st = tu_stats(db);
  cr_assert_geq(st.compactions, 1, "no compaction ran");
  cr_assert_eq(tu_count_files(tu_dir(), ".sst"), (int)st.sst_files,
               "%d .sst files for %u live tables right after the full compaction (%d before it)",
               tu_count_files(tu_dir(), ".sst"), st.sst_files, before);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_gets(t, n, 2, "after the compaction");
  sochdb_abort(t);
  sochdb_close(db);
}

/* ------------------------------------------------ pages of recycled arenas */

/* A recycled arena keeps its pages for the next rotation (shm/arena.h);
** once the database is idle they go back: the spare no rotation took, and
** the tail that the memtable which reused a spare's pages did not fill. */
Test(flush, an_idle_database_gives_back_the_pages_recycled_arenas_kept)
{
  const uint64_t mt_bytes = 16u << 20;
  sochdb *db = tu_open(96u << 20, mt_bytes, 5000);
  shm_region *r = &db->region;
  uint64_t empty = tu_region_resident(db);
  uint32_t first = arena_active(r);
  int n = 0;
  while (arena_active(r) == first) {   /* the first memtable, full */
    fill_from(db, n, n + 2000, 1, 100);
    n += 2000;
  }
  TU_WAIT_STATS(db, s->flushes >= 1 && s->memtables_in_use == 1, "the first memtable flushed and recycled");
  uint32_t second = arena_active(r);
  while (arena_active(r) == second) {  /* the second: the rotation after it reuses the first's pages */
    fill_from(db, n, n + 2000, 1, 100);
    n += 2000;
  }
  fill_from(db, n, n + 4000, 1, 100);   /* a little of the third */
  n += 4000;
  uint32_t third = arena_active(r);
  cr_assert_eq(third, first, "the rotation took arena %u, not the one that kept its pages (%u)", third, first);
  TU_WAIT_STATS(db, s->flushes >= 2 && s->memtables_in_use == 1, "the second memtable flushed and recycled");

  /* what the idle database may hold: the empty region, and the pages the
  ** third memtable's data is on, a chunk past them */
  struct shm_memtable *m = arena_memtable(r, third);
  uint64_t bound = empty + atomic_load(&m->used) + 2 * ARENA_RESERVE_CHUNK;
  uint64_t now = tu_region_resident(db);
  cr_log_info("loaded: the region holds %.1f MiB (bound when idle: %.1f MiB)", now / 1048576.0, bound / 1048576.0);
  for (int i = 0; i < 3000 && now > bound; i++) {   /* up to 30 s: a second or two when the machine is idle */
    tu_sleep_ms(10);
    now = tu_region_resident(db);
  }
  cr_assert_leq(now, bound, "idle for 30 s, the region holds %.1f MiB, the empty one %.1f MiB and its memtable "
                "%.1f MiB of data (16 MiB memtables)", now / 1048576.0, empty / 1048576.0,
                atomic_load(&m->used) / 1048576.0);
  /* the daemon streams a table to its file in spills of about 1 MiB, then
  ** writes its tail (sst_builder_spill, daemon/store.c): a table of several
  ** spills reads back whole */
  off_t largest = largest_file(tu_dir(), ".sst");
  cr_assert_gt(largest, 2 << 20, "a table of several spills (%lld bytes)", (long long)largest);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 1, "after the idle database gave its pages back");
  sochdb_abort(t);
  tu_close();
}

/* sochdbd --spare-ms 0: a recycled arena keeps no pages, for those who
** would rather every rotation back fresh ones than hold a spare. */
Test(flush, a_daemon_told_to_keep_no_spare_gives_every_recycled_arena_back)
{
  char script[4200];
  sochdb_options o = tu_options(96u << 20, 16u << 20, 5000);
  o.daemon_path = tu_daemon_script(script, sizeof script, SOCHDB_TEST_SOCHDBD, "--spare-ms 0");
  sochdb *db = tu_open_with(tu_dir(), &o);
  shm_region *r = &db->region;
  uint32_t first = arena_active(r);
  int n = 0;
  while (arena_active(r) == first) {
    fill_from(db, n, n + 2000, 1, 100);
    n += 2000;
  }
  TU_WAIT_STATS(db, s->flushes >= 1 && s->memtables_in_use == 1, "the first memtable flushed and recycled");
  for (uint32_t i = 0; i < r->hdr->n_memtables; i++)
    cr_assert_leq(arena_spare_bytes(r, i), arena_first_reserve(16u << 20), "free arena %u kept %llu bytes of pages",
                  i, (unsigned long long)arena_spare_bytes(r, i));
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_all(t, n, 1, "after the flush");
  sochdb_abort(t);
  sochdb_close(db);
  unlink(script);
}

/* ---- a committer waiting for an arena the flusher alone can recycle ------
** A commit that fills the last free arena waits in make_room, its intents in
** an older memtable still undecided; the flusher seals that memtable (the
** committer re-entered a newer commit epoch) and waits in build_table for
** them. An arena that became free meanwhile was recycled only after that
** flush, which waited for the commit: the commit failed with SOCHDB_BUSY
** after busy_timeout_ms, room there (found by the memtable-lifecycle
** review). Three arenas: 7 MiB of region, 1 MiB memtables. */

/* One transaction of 16,000 keys (about 2.4 memtables), committed ASYNC: its rc. */
static int commit_two_memtables_and_more(sochdb *db)
{
  sochdb_txn *t = tu_begin(db, 0);
  for (int i = 0; i < 16000; i++) {
    char k[32], v[VLEN];
    key_of(100000 + i, k);
    val_of(100000 + i, 1, v);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, VLEN), SOCHDB_OK);
  }
  return sochdb_commit(t, SOCHDB_ASYNC);
}

/* Nobody else: the flushed first memtable stays RETIRED through its flush
** step only because of the commit's own older epoch. */
Test(flush, one_large_commit_in_three_arenas_is_not_held_up_by_its_own_intents)
{
  sochdb *db = tu_open(7u << 20, MT, 6000);
  cr_assert_eq(db->region.hdr->n_memtables, 3, "three arenas: %u", db->region.hdr->n_memtables);
  fill(db, 2000, 1, 50);
  tu_rotate(db);   /* the first memtable waits for its flush */
  int rc = commit_two_memtables_and_more(db);
  cr_assert_eq(rc, SOCHDB_OK, "the commit: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  tu_close();
}

static void *abort_after_a_second(void *reader)
{
  tu_sleep_ms(1000);
  sochdb_abort(reader);
  return NULL;
}

/* A reader holds the flushed first memtable and lets go of it a second
** into the commit. */
Test(flush, a_committer_waiting_for_room_gets_the_arena_a_reader_lets_go)
{
  sochdb *db = tu_open(7u << 20, MT, 6000);
  cr_assert_eq(db->region.hdr->n_memtables, 3, "three arenas: %u", db->region.hdr->n_memtables);
  fill(db, 2000, 1, 50);
  sochdb_txn *reader = tu_begin(db, SOCHDB_TXN_READONLY);
  tu_rotate(db);
  TU_WAIT_STATS(db, s->flushes >= 1, "the first memtable flushed");
  for (int w = 0; w < 5000 && retired_memtables(db) != 1; w++)
    tu_sleep_ms(1);
  cr_assert_eq(retired_memtables(db), 1, "the first memtable retired, held by the reader");
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, abort_after_a_second, reader), 0);
  int rc = commit_two_memtables_and_more(db);
  pthread_join(th, NULL);
  cr_assert_eq(rc, SOCHDB_OK, "the commit, an arena free after 1 s of 6: %s (%s)", sochdb_strerror(rc),
               sochdb_last_error());
  tu_close();
}

/* ------------------------------------------------------ level 0's pressure */

/* tu_open, served by the test build's sochdbd with `flags`. */
static sochdb *open_served_with(const char *flags, unsigned busy_timeout_ms)
{
  return tu_open_served(SOCHDB_TEST_SOCHDBD, flags, REG, MT, busy_timeout_ms);
}

/* Keys [0, n) at generation gen, then every memtable flushed: one level-0
** table over the same keys as the one before it, so compactions must merge
** them (tables that overlap nothing would be moved). */
static void flush_generation(sochdb *db, int n, int gen)
{
  fill(db, n, gen, 100);
  rotate_and_flush(db);
}

struct l0_sampler {
  sochdb          *db;
  _Atomic int      stop;
  uint32_t         max_l0;
  uint32_t         samples;
};

static void *sample_level0(void *arg)
{
  struct l0_sampler *sm = arg;
  while (!atomic_load(&sm->stop)) {
    sochdb_stats st = tu_stats(sm->db);
    if (st.l0_files > sm->max_l0)
      sm->max_l0 = st.l0_files;
    sm->samples++;
    tu_sleep_ms(2);
  }
  return NULL;
}

/* Random keys of [0, nkeys) written 100 to an ASYNC transaction, each
** remembered in last[] with the round that wrote it, until the daemon has
** held a flush at level 0's stop (`stop` files) and a compaction has let it
** go again; or `max_puts`. */
static void write_until_a_stop_passes(sochdb *db, uint32_t stop, int nkeys, int *last, int max_puts)
{
  uint64_t rng = 42;
  for (int round = 1, puts = 0; puts < max_puts; round++) {
    sochdb_stats st = tu_stats(db);
    if (st.l0_stops >= 1 && st.l0_files < stop)
      return;   /* held, then a compaction made room: the writer went on */
    sochdb_txn *t = tu_begin(db, 0);
    for (int j = 0; j < 100; j++, puts++) {
      int i = (int)(tu_xorshift(&rng) % (uint64_t)nkeys);
      char k[32], v[VLEN];
      key_of(i, k);
      val_of(i, round, v);
      cr_assert_eq(sochdb_put(t, k, strlen(k), v, VLEN), SOCHDB_OK);
      last[i] = round;
    }
    int rc = sochdb_commit(t, SOCHDB_ASYNC);
    cr_assert_eq(rc, SOCHDB_OK, "commit: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  }
}

/* With compactions slowed to 1 MiB/s (until level 0 is at its stop) and
** writes as fast as they come, level 0 never holds more than --l0-stop (6)
** files: the flush that would add a seventh waits until a compaction has
** merged them, and the writer goes on after. Every key reads back as last
** written. Without the stop, level 0 grew past 6 here within a second, and
** without a bound (699 files in a fuzz run). The writer held behind such a
** flush is the test after this one's. */
Test(flush, level_0_at_its_stop_holds_flushes_until_a_compaction_merges_it)
{
  sochdb_test_flush_backlog(2 * MT);   /* writers stall behind two full memtables, not 128 */
  sochdb *db = open_served_with("--compaction-rate-mb 1 --l0-unthrottle 0 --l0-stop 6", 120000);
  enum { NKEYS = 20000 };
  int *last = calloc(NKEYS, sizeof *last);
  cr_assert_not_null(last);
  struct l0_sampler sm = { .db = db };
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, sample_level0, &sm), 0);
  write_until_a_stop_passes(db, 6, NKEYS, last, 60 * 7000);   /* some 60 memtables */
  atomic_store(&sm.stop, 1);
  pthread_join(th, NULL);
  sochdb_stats st = tu_stats(db);
  cr_assert_leq(sm.max_l0, 6, "level 0 held %u files (--l0-stop 6), in %u samples", sm.max_l0, sm.samples);
  cr_assert_geq(st.l0_stops, 1, "some 60 memtables written and no flush held at level 0's stop");
  cr_assert_geq(st.l0_stop_us, 1, "a flush held for no time");
  cr_assert_gt(st.compact_throttle_us, 0, "a compaction at 1 MiB/s, not unthrottled, never slept");
  cr_assert_geq(tu_log_lines(tu_dir(), "level 0 holds 6 files (--l0-stop 6)"), 1, "the hold is not in the log");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < NKEYS; i++) {
    char k[32], v[VLEN];
    key_of(i, k);
    const void *val;
    size_t vlen;
    int rc = sochdb_get(t, k, strlen(k), &val, &vlen);
    if (!last[i]) {
      cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s was never written", k);
      continue;
    }
    cr_assert_eq(rc, SOCHDB_OK, "%s: %s", k, sochdb_strerror(rc));
    val_of(i, last[i], v);
    cr_assert(vlen == VLEN && memcmp(val, v, VLEN) == 0, "%s is not its value of round %d", k, last[i]);
  }
  sochdb_abort(t);
  free(last);
  tu_close();
}

/* Keys [0, 6000) at generation gen, 100 to an ASYNC transaction, until one
** is refused: its code, and then its message into why and its first key
** into *failed_key. */
static int write_generation(sochdb *db, int gen, char *why, size_t n, int *failed_key)
{
  int rc = SOCHDB_OK;
  for (int i = 0; i < 6000 && rc == SOCHDB_OK; i += 100) {
    sochdb_txn *t;
    rc = sochdb_txn_begin(db, 0, &t);
    for (int j = i; rc == SOCHDB_OK && j < i + 100; j++) {
      char k[32], v[VLEN];
      key_of(j, k);
      val_of(j, gen, v);
      rc = sochdb_put(t, k, strlen(k), v, VLEN);
    }
    if (rc == SOCHDB_OK)
      rc = sochdb_commit(t, SOCHDB_ASYNC);
    if (rc != SOCHDB_OK) {
      snprintf(why, n, "%s", sochdb_last_error());
      *failed_key = i;
    }
  }
  return rc;
}

/* Open with writers stalling behind two full memtables, served by
** sochdbd-testing at --l0-stop 4 whose compactions take pause_ms a MiB (a
** slow disk), so that flushes wait at the stop for seconds. */
static sochdb *open_slow_to_compact(const char *pause_ms, unsigned busy_timeout_ms)
{
  sochdb_test_flush_backlog(2 * MT);
  setenv("SOCHDB_TEST_COMPACT_PAUSE_MS", pause_ms, 1);
  sochdb *db = tu_open_served(SOCHDB_TEST_SOCHDBD_TESTING, "--l0-stop 4", REG, MT, busy_timeout_ms);
  unsetenv("SOCHDB_TEST_COMPACT_PAUSE_MS");
  return db;
}

/* A writer held past busy_timeout_ms behind a flush that waits at level
** 0's stop gets SOCHDB_BUSY saying so, having applied nothing; once the
** compaction has made room, the flusher no longer says it waits. */
Test(flush, a_writer_held_too_long_at_level_0s_stop_is_told_why)
{
  sochdb *db = open_slow_to_compact("500", 300);
  int rc = SOCHDB_OK, gen, failed_key = 0;
  char why[512] = "";
  for (gen = 1; gen <= 60 && rc == SOCHDB_OK; gen++)   /* about a memtable each */
    rc = write_generation(db, gen, why, sizeof why, &failed_key);
  int failed_gen = gen - 1;
  cr_assert_eq(rc, SOCHDB_BUSY, "no writer held 300 ms in 60 memtables: %s", sochdb_strerror(rc));
  cr_assert_not_null(strstr(why, "level 0 holds 4 files (sochdbd --l0-stop), and flushes wait for compaction"),
                     "the refusal says: %s", why);
  _Atomic uint64_t *held = &db->region.hdr->stats.l0_held_files;
  for (int w = 0; w < 6000 && atomic_load(held) != 0; w++)
    tu_sleep_ms(10);
  cr_assert_eq(atomic_load(held), 0, "the flusher still says it waits, 60 s on");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int j = failed_key; j < failed_key + 100; j++) {
    char k[32], v[VLEN], got[VLEN + 1];
    key_of(j, k);
    val_of(j, failed_gen - 1, v);
    cr_assert_eq(tu_get_str(t, k, got, sizeof got), SOCHDB_OK, "%s", k);
    cr_assert(memcmp(got, v, VLEN) == 0, "%s holds a write of the refused transaction (generation %d)", k, failed_gen);
  }
  sochdb_abort(t);
  tu_close();
}

/* A daemon killed (or stopped) while a flush waits at level 0's stop
** leaves its count of level 0 in the region; with no daemon to start, a
** writer's refusal must not blame level 0 (found by an independent review:
** it did, with no daemon running). */
static void refusal_without_a_daemon_after(int sig)
{
  sochdb *db = open_slow_to_compact("3000", 20000);
  _Atomic uint64_t *held = &db->region.hdr->stats.l0_held_files;
  int failed_key;
  char why[512] = "";
  for (int gen = 1; gen <= 60 && !atomic_load(held); gen++)
    cr_assert_eq(write_generation(db, gen, why, sizeof why, &failed_key), SOCHDB_OK, "%s", why);
  cr_assert_neq(atomic_load(held), 0, "no flush held at level 0's stop in 60 memtables");
  sochdb_test_without_daemon(1);   /* nobody starts a successor */
  cr_assert(tu_signal_daemon_and_wait(tu_dir(), sig), "the daemon did not end");
  db->busy_timeout_ms = 300;
  int rc = SOCHDB_OK;
  for (int gen = 100; gen < 110 && rc == SOCHDB_OK; gen++)
    rc = write_generation(db, gen, why, sizeof why, &failed_key);
  cr_assert_eq(rc, SOCHDB_BUSY, "%s", sochdb_strerror(rc));
  cr_assert_null(strstr(why, "level 0"), "no daemon runs, and the refusal says: %s", why);
  tu_close();
}

Test(flush, a_daemon_killed_while_it_holds_a_flush_leaves_writers_no_word_of_level_0)
{
  refusal_without_a_daemon_after(SIGKILL);
}

Test(flush, a_daemon_stopped_while_it_holds_a_flush_leaves_writers_no_word_of_level_0)
{
  refusal_without_a_daemon_after(SIGTERM);
}

/* While level 0 holds --l0-unthrottle files, a compaction reads at full
** speed: four level-0 tables (--l0-unthrottle 4, the trigger) of some
** 2 MiB in all are merged under a 1 MiB/s limit without a sleep, where the
** same limit made the test above sleep. */
Test(flush, a_compaction_reads_at_full_speed_while_level_0_holds_its_unthrottle_count)
{
  sochdb *db = open_served_with("--compaction-rate-mb 1 --l0-unthrottle 4", 60000);
  for (int gen = 1; gen <= 4; gen++)
    flush_generation(db, 4000, gen);
  TU_WAIT_STATS(db, s->compactions >= 1 && s->l0_files == 0, "level 0 compacted");
  sochdb_stats st = tu_stats(db);
  cr_assert_gt(st.compact_bytes_read, 3u << 19, "the compaction read %llu bytes",
               (unsigned long long)st.compact_bytes_read);
  cr_assert_eq(st.compact_throttle_us, 0, "it slept %llu us for the rate limit",
               (unsigned long long)st.compact_throttle_us);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_gets(t, 4000, 4, "after the compaction");
  sochdb_abort(t);
  tu_close();
}

/* A compaction that fails (a damaged input) may not take files out of level
** 0 for a long time: flushes then go on past --l0-stop, rather than every
** writer waiting on the damage. Level 0 grows past 6 tables (the damaged
** one and 6 over it) at a stop of 4, each flush done within the wait
** rotate_and_flush allows. */
Test(flush, a_failing_compaction_does_not_hold_flushes_at_level_0s_stop)
{
  char path[4300];
  sochdb_options o = tu_options(REG, MT, 5000);
  damaged_sst_of(&o, 9000, path, sizeof path);
  sochdb *db = open_served_with("--l0-stop 4", 5000);
  for (int gen = 2; gen <= 7; gen++)
    flush_generation(db, 3000, gen);
  sochdb_stats st = tu_stats(db);
  cr_assert_gt(st.l0_files, 6, "level 0 holds %u tables, not the damaged one and 6 flushed over it", st.l0_files);
  cr_assert_geq(tu_log_lines(tu_dir(), "compaction failed"), 1, "the compaction did not fail");
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  expect_gets(t, 3000, 7, "the newest table over the damaged one");
  sochdb_abort(t);
  tu_close();
}
