/*
** test_manifest_crash.c — a MANIFEST record that only the page cache holds
** must be made durable before anyone acts on it.
**
** A daemon killed between a MANIFEST append (manifest_apply's pwrite) and its
** fdatasync leaves the record in the page cache only. The next daemon
** replays it (manifest_open) and, when it is a compaction's edit, dooms the
** compaction's inputs and removes them (doom_orphans, store_reclaim). A
** later directory fsync (the next flush's) makes those unlinks durable; a
** power cut may then drop the MANIFEST's unsynced tail, and the MANIFEST
** names files that are gone: acknowledged keys become unreadable ("open
** SSTable .../000004.sst: No such file or directory"). manifest_open must
** fdatasync what it replayed (and fsync the directory) before it returns.
**
** The test plays that out with every daemon under the power-loss shim
** (stress/powercut.c, preloaded by the daemon script below; it records the
** syncs, unlinks and renames of the database directory) and makes the
** crash state from its records (stress/crashstate.c). The database is made
** (and synced) before the shim's baseline: its sochdb.id is written by the
** opener, which runs without the shim.
**   1. 1 MiB memtables; SYNC commits of keys spread over the key space (so
**      that level-0 files overlap and a compaction merges them) until four
**      memtables are sealed (not one more, which would flush before the
**      compaction); the fourth flush starts a compaction of the four files.
**      The daemon is armed with manifest.appended:5 (the four flushes are
**      the first four edits, nothing is written after them, so the fifth is
**      the compaction's) and is seen to die of SIGKILL. The MANIFEST read
**      as the page cache holds it (manifest_read, read-only) has the four
**      level-0 files deleted and outputs in level 1; read cut to the size
**      its last recorded fdatasync made durable, it still has the four:
**      the compaction's edit is the unsynced tail.
**   2. A forked writer opens the directory again, which starts the next
**      daemon (armed with flush.written:1); no daemon may start after it
**      (the script refuses: the power is "cut" when it dies). The four
**      inputs must vanish from the directory; then the writer writes until
**      the next flush has written its SSTable and fsynced the directory
**      (the crash point, before the flush's MANIFEST edit), and is killed.
**      The shim's records show the directory fsync after the unlinks.
**   3. The power cut: the MANIFEST loses its whole unsynced tail (the case
**      that loses the record; crashstate may also keep it, a cut we do not
**      leave to chance), then pc_materialise does the rest; the region goes
**      too. The inputs are still gone. A fresh daemon rebuilds the region
**      from the files: every acknowledged key reads back with its value.
** Without the fix (5ef6299) the MANIFEST after the cut names the removed
** inputs and most keys fail to read (3880 of about 4900 here); with it the
** replayed record was durable before the inputs were removed.
**
** Every wait is a bounded loop; nothing asserts on timing.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strsignal, nftw, mkdtemp, MAP_ANONYMOUS */
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <dirent.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/prctl.h>

#include "filenames.h"
#include "internal.h"
#include "manifest.h"
#include "powercut.h"   /* stress/: pc_baseline, pc_materialise */
#include "sochdb.h"
#include "testutil.h"
#include "procutil.h"

#define MT       (1u << 20)   /* 1 MiB memtables: a flush every ~900 keys */
#define REG      (32u << 20)
#define VLEN     1000
#define BATCH    8            /* keys per SYNC commit */
#define FLUSHES  4            /* the daemon's default --l0-trigger */
#define MAX_KEYS 40000L

static int mc_subreaper;       /* PR_SET_CHILD_SUBREAPER took effect */
static pid_t mc_parent;        /* the test process */
static char mc_state[4400];    /* the shim's state: its record log, the graveyard */
static char mc_script[64];     /* the daemon script (in /tmp: /dev/shm may be noexec) */
static char mc_nomore[4500];   /* while it exists, the script starts no daemon */

/* ------------------------------------------------------------ keys */

/* Key i: spread over the key space (a bijection of 32-bit numbers). */
static void mc_key(long i, char *k) { snprintf(k, 32, "mc-%08x", (unsigned)((uint32_t)i * 2654435761u)); }

static void mc_val(long i, char *v)
{
  memset(v, 'a' + (int)(i % 26), VLEN);
  int n = snprintf(v, VLEN, "v%ld|", i);
  v[n] = '.';
}

/* Keys [from, from + BATCH) into t. */
static int mc_fill(sochdb_txn *t, void *ctx)
{
  long from = *(const long *)ctx;
  int rc = SOCHDB_OK;
  for (long i = from; i < from + BATCH && rc == SOCHDB_OK; i++) {
    char k[32], v[VLEN];
    mc_key(i, k);
    mc_val(i, v);
    rc = sochdb_put(t, k, strlen(k), v, VLEN);
  }
  return rc;
}

/* Those keys in one SYNC commit; CONFLICT and BUSY (nothing applied) are
** retried. The last code. */
static int mc_commit(sochdb *db, long from)
{
  return tu_commit_retry(db, mc_fill, &from, SOCHDB_SYNC, 999, NULL);
}

/* ------------------------------------------------------------ files */

static int mc_exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0;
}

/* DIR/<the MANIFEST CURRENT names> into path, its name into name. */
static void mc_manifest_path(const char *dir, char *path, size_t n, char *name, size_t nn)
{
  char cur[4400], line[128] = "";
  snprintf(cur, sizeof cur, "%s/CURRENT", dir);
  FILE *f = fopen(cur, "r");
  cr_assert_not_null(f, "open %s: %s", cur, strerror(errno));
  cr_assert_not_null(fgets(line, sizeof line, f), "read %s", cur);
  fclose(f);
  line[strcspn(line, "\n")] = 0;
  cr_assert(!strncmp(line, "MANIFEST-", 9), "CURRENT names \"%s\"", line);
  snprintf(name, nn, "%s", line);
  snprintf(path, n, "%s/%s", dir, line);
}

static long long mc_size(const char *path)
{
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
  return (long long)st.st_size;
}

/* The bytes of path its last recorded fsync/fdatasync made durable (the
** shim's F records name the file by device and inode: the MANIFEST was
** synced as MANIFEST-*.tmp before its rename). -1: never synced. */
static long long mc_durable_size(const char *path)
{
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
  char log[4500];
  snprintf(log, sizeof log, "%s/log", mc_state);
  FILE *f = fopen(log, "r");
  cr_assert_not_null(f, "open the shim's record log %s: %s", log, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  long long durable = -1;
  while (getline(&line, &cap, f) > 0) {
    unsigned long long dev, ino;
    long long size;
    if (sscanf(line, "F %llu %llu %lld", &dev, &ino, &size) == 3 && dev == (unsigned long long)st.st_dev &&
        ino == (unsigned long long)st.st_ino)
      durable = size;
  }
  free(line);
  fclose(f);
  return durable;
}

/* The MANIFEST of dir as its first `durable` bytes hold it (a copy cut to
** that size, read with manifest_read), into *st. */
static void mc_read_prefix(const char *dir, const uint8_t *id, long long durable, struct manifest_state *st)
{
  char man[4400], name[128], sub[4500], path[4700];
  mc_manifest_path(dir, man, sizeof man, name, sizeof name);
  snprintf(sub, sizeof sub, "%s/durable", mc_state);
  cr_assert(mkdir(sub, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", sub, strerror(errno));
  snprintf(path, sizeof path, "%s/CURRENT", sub);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "create %s", path);
  fprintf(f, "%s\n", name);
  cr_assert_eq(fclose(f), 0);
  int in = open(man, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(in, 0, "open %s: %s", man, strerror(errno));
  uint8_t *buf = malloc((size_t)durable + 1);
  cr_assert_not_null(buf);
  cr_assert_eq(pread(in, buf, (size_t)durable, 0), (ssize_t)durable, "read %lld bytes of %s", durable, man);
  close(in);
  snprintf(path, sizeof path, "%s/%s", sub, name);
  int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  cr_assert_geq(out, 0, "create %s: %s", path, strerror(errno));
  cr_assert_eq(write(out, buf, (size_t)durable), (ssize_t)durable, "write %s", path);
  close(out);
  free(buf);
  int rc = manifest_read(sub, id, st, NULL);
  cr_assert_eq(rc, SOCHDB_OK, "read the MANIFEST's durable %lld bytes: %s (%s)", durable, sochdb_strerror(rc),
               sochdb_last_error());
}

/* The level of file number in st, or -1. */
static int mc_level_of(const struct manifest_state *st, uint64_t number)
{
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    for (size_t i = 0; i < st->levels[l].n; i++)
      if (st->levels[l].files[i].number == number) return (int)l;
  return -1;
}

/* The shim's records show every input unlinked from dir, and dir fsynced
** after the last of those unlinks (the unlinks are durable). */
static void mc_check_unlinks_durable(const char *dir, const uint64_t *inputs, size_t n)
{
  char real[PATH_MAX], log[4500];
  cr_assert_not_null(realpath(dir, real), "realpath %s", dir);
  snprintf(log, sizeof log, "%s/log", mc_state);
  FILE *f = fopen(log, "r");
  cr_assert_not_null(f, "open the shim's record log %s: %s", log, strerror(errno));
  char *line = NULL, *d = NULL, *name = NULL;
  size_t cap = 0;
  long at = 0, last_unlink = -1, last_fsync = -1;
  size_t unlinked = 0;
  char want[FLUSHES][32];
  int seen[FLUSHES] = { 0 };
  for (size_t i = 0; i < n; i++) snprintf(want[i], sizeof want[i], "%06llu.sst", (unsigned long long)inputs[i]);
  for (ssize_t len; (len = getline(&line, &cap, f)) > 0; at++) {
    d = realloc(d, (size_t)len + 1);
    name = realloc(name, (size_t)len + 1);
    if (line[0] == 'U' && sscanf(line, "U %s %s", d, name) == 2 && !strcmp(d, real)) {
      for (size_t i = 0; i < n; i++)
        if (!strcmp(name, want[i]) && !seen[i]) {
          seen[i] = 1;
          unlinked++;
          last_unlink = at;
        }
    } else if (line[0] == 'D' && sscanf(line, "D %s", d) == 1 && !strcmp(d, real)) {
      last_fsync = at;
    }
  }
  free(line), free(d), free(name);
  fclose(f);
  cr_assert_eq(unlinked, n, "the shim recorded the unlink of %zu of the %zu compaction inputs", unlinked, n);
  cr_assert_gt(last_fsync, last_unlink, "no fsync of %s after the inputs were unlinked (record %ld): their "
               "removal was not durable before the cut", real, last_unlink);
}

/* ------------------------------------------------------------ processes */

/* Wait up to limit_ms for our child pid (a daemon re-parented to the test)
** to end; 1 and *status when it did. */
static int mc_wait_end(pid_t pid, unsigned limit_ms, int *status)
{
  for (unsigned i = 0; i <= limit_ms; i++) {
    if (waitpid(pid, status, WNOHANG) == pid) return 1;
    tu_sleep_ms(1);
  }
  return 0;
}

static sochdb_options mc_opts(const char *daemon)
{
  sochdb_options o = tu_options(REG, MT, 10000);
  o.daemon_path = daemon;
  return o;
}

struct mc_shared {
  _Atomic int  opened, go;
  _Atomic long acked;   /* keys [0, acked) were acknowledged (SYNC commits returned OK) */
};

/* The writer of step 2: opens dir (which starts the next daemon), waits for
** go, then commits keys from `from` on until killed. Exit 2 open, 3 no go,
** 10 + rc a failed commit, 0 all MAX_KEYS written. */
static void mc_writer(const char *dir, struct mc_shared *sh, long from)
{
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != mc_parent) _exit(98);
  sochdb_options o = mc_opts(mc_script);
  sochdb *db = NULL;
  if (sochdb_open(dir, &o, &db) != SOCHDB_OK) _exit(2);
  atomic_store(&sh->opened, 1);
  for (int i = 0; i < 30000 && !atomic_load(&sh->go); i++) tu_sleep_ms(1);
  if (!atomic_load(&sh->go)) _exit(3);
  for (long i = from; i < MAX_KEYS; i += BATCH) {
    int rc = mc_commit(db, i);
    if (rc != SOCHDB_OK) _exit(10 + rc);
    atomic_store(&sh->acked, i + BATCH);
  }
  _exit(0);
}

/* ------------------------------------------------------------ fixture */

static void mc_init(void)
{
  tu_data_on_tmpfs();   /* the shim records syncs whatever they cost; on a tmpfs they cost nothing */
  tu_setup();
  unsetenv("SOCHDB_TEST_CRASH_AT");
  mc_subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
  mc_parent = getpid();
  mc_state[0] = mc_script[0] = 0;
}

static void mc_fini(void)
{
  tu_kill_all_children();
  tp_kill_descendants(5000);
  if (mc_script[0]) unlink(mc_script);
  if (mc_state[0]) tu_rmrf(mc_state);   /* the graveyard's links, the copy of the MANIFEST */
  tu_teardown();
}

TestSuite(manifest_crash, .init = mc_init, .fini = mc_fini, .timeout = 120);

/* The daemon script: sochdbd-testing under the shim, unless mc_nomore exists. */
static void mc_make_script(const char *dir)
{
  snprintf(mc_script, sizeof mc_script, "/tmp/sochdb-mc-sochdbd.XXXXXX");
  int fd = mkstemp(mc_script);
  cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
  FILE *f = fdopen(fd, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "#!/bin/sh\n"
          "if [ -e '%s' ]; then echo 'sochdbd not started: the power is cut' >&2; exit 1; fi\n"
          "export LD_PRELOAD='%s' " PC_ENV_STATE "='%s/log' " PC_ENV_DIR "='%s'\n"
          "export ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0\"\n"
          "exec '%s' \"$@\"\n",
          mc_nomore, SOCHDB_TEST_POWERCUT_LIB, mc_state, dir, SOCHDB_TEST_SOCHDBD_TESTING);
  cr_assert_eq(fclose(f), 0);
  cr_assert_eq(chmod(mc_script, 0755), 0);
}

Test(manifest_crash, a_replayed_compaction_record_is_durable_before_its_inputs_are_removed)
{
  cr_assert(mc_subreaper, "prctl(PR_SET_CHILD_SUBREAPER) failed: the test cannot collect the daemons");
  const char *dir = tu_dir();
  snprintf(mc_state, sizeof mc_state, "%s.powercut", dir);   /* same file system: the graveyard links */
  snprintf(mc_nomore, sizeof mc_nomore, "%s/no-more-daemons", mc_state);
  cr_assert_eq(mkdir(mc_state, 0700), 0, "mkdir %s: %s", mc_state, strerror(errno));
  mc_make_script(dir);
  /* The database made (sochdb.id is the opener's, not a daemon's: the shim
  ** would not see it synced) and durable before the shim records anything. */
  sochdb_options o = mc_opts(SOCHDB_TEST_SOCHDBD_TESTING);
  sochdb *db = tu_open_with(dir, &o);
  sochdb_close(db);
  tu_stop_daemon(dir);
  cr_assert_eq(pc_baseline(dir, mc_state), 0, "pc_baseline");

  /* 1. Four flushes; the daemon dies at the compaction's MANIFEST append. */
  char spec[64];
  snprintf(spec, sizeof spec, "manifest.appended:%d", FLUSHES + 1);
  setenv("SOCHDB_TEST_CRASH_AT", spec, 1);   /* for the daemon this open starts, only */
  o = mc_opts(mc_script);
  db = NULL;
  int rc = sochdb_open(dir, &o, &db);
  unsetenv("SOCHDB_TEST_CRASH_AT");
  cr_assert_eq(rc, SOCHDB_OK, "open: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  pid_t d1 = tp_wait_daemon(dir, 5000, 0);
  cr_assert_gt(d1, 0, "no daemon after open (probe %d)", (int)d1);
  uint8_t id[16];
  memcpy(id, db->region.hdr->db_id, sizeof id);
  /* Commits until the fourth memtable is sealed (rotated out: a new id
  ** was handed out for its successor), not until it is flushed: writing on
  ** while a slow flush ran (CI under load) filled a fifth memtable, whose
  ** flush record came before the compaction's and took its crash point.
  ** One writer: every id handed out is a rotation that won.
  ** (sochdb_stats cannot tell: a flushed memtable is counted in flushes
  ** and is still live until the flusher retires it.) */
  const uint64_t first_id = atomic_load(&db->region.hdr->next_memtable_id);
  long n1 = 0;
  while (atomic_load(&db->region.hdr->next_memtable_id) - first_id < FLUSHES) {
    cr_assert_lt(n1, MAX_KEYS, "%d memtables not sealed after %ld keys", FLUSHES, n1);
    rc = mc_commit(db, n1);
    cr_assert_eq(rc, SOCHDB_OK, "SYNC commit of keys %ld..: %s (%s)", n1, sochdb_strerror(rc), sochdb_last_error());
    n1 += BATCH;
  }
  int st = 0;
  char b[64];
  cr_assert(mc_wait_end(d1, 30000, &st), "the armed daemon %d did not die at %s within 30 s (compactions %llu)",
            (int)d1, spec, (unsigned long long)tu_stats(db).compactions);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the armed daemon ended with %s, not by its crash point",
            tu_status_str(st, b, sizeof b));
  sochdb_stats s = tu_stats(db);
  cr_assert_eq(s.flushes, FLUSHES, "%llu flushes when the daemon died at %s", (unsigned long long)s.flushes, spec);
  cr_assert_eq(s.compactions, 0, "a compaction finished before the daemon died");
  sochdb_close(db);

  /* The record it appended: the page cache's MANIFEST against its durable prefix. */
  char man[4400], name[128];
  mc_manifest_path(dir, man, sizeof man, name, sizeof name);
  long long size = mc_size(man), durable = mc_durable_size(man);
  cr_assert(durable > 0 && durable < size, "%s: %lld bytes, %lld durable: the killed daemon's record is not an "
            "unsynced tail", name, size, durable);
  struct manifest_state now, before;
  rc = manifest_read(dir, id, &now, NULL);
  cr_assert_eq(rc, SOCHDB_OK, "read the MANIFEST: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  mc_read_prefix(dir, id, durable, &before);
  size_t ninputs = before.levels[0].n;
  cr_assert_eq(ninputs, FLUSHES, "the durable MANIFEST lists %zu level-0 files, want the %d flushed", ninputs, FLUSHES);
  uint64_t inputs[FLUSHES];
  char path[4400];
  for (size_t i = 0; i < ninputs; i++) {
    inputs[i] = before.levels[0].files[i].number;
    cr_assert_eq(mc_level_of(&now, inputs[i]), -1, "file %llu is still live after the unsynced record: it is not "
                 "the compaction's edit", (unsigned long long)inputs[i]);
    sst_file_path(path, sizeof path, dir, inputs[i]);
    cr_assert(mc_exists(path), "input %s is gone before the next daemon started", path);
  }
  cr_assert_eq(now.levels[0].n, 0, "level 0 is not empty after the compaction's record");
  cr_assert_gt(now.levels[1].n, 0, "the compaction's record adds no file to level 1");
  manifest_state_free(&now);
  manifest_state_free(&before);

  /* 2. The next daemon replays the record and removes the inputs; its first
  ** flush fsyncs the directory and it dies before the flush's MANIFEST edit. */
  struct mc_shared *sh = tu_shared_alloc(sizeof *sh);
  cr_assert_not_null(sh);
  atomic_store(&sh->acked, n1);
  setenv("SOCHDB_TEST_CRASH_AT", "flush.written:1", 1);
  pid_t writer = tu_fork();
  cr_assert_geq(writer, 0, "fork: %s", strerror(errno));
  if (writer == 0) mc_writer(dir, sh, n1);
  unsetenv("SOCHDB_TEST_CRASH_AT");
  pid_t d2 = tp_wait_daemon(dir, 10000, d1);
  cr_assert_gt(d2, 0, "no daemon started after the crash (probe %d)", (int)d2);
  FILE *f = fopen(mc_nomore, "w");   /* the power is cut when d2 dies: no daemon after it */
  cr_assert_not_null(f, "create %s", mc_nomore);
  fclose(f);
  int gone = 0;
  for (int w = 0; w < 10000 && !gone; w++) {
    gone = 1;
    for (size_t i = 0; i < ninputs && gone; i++) {
      sst_file_path(path, sizeof path, dir, inputs[i]);
      gone = !mc_exists(path);
    }
    if (!gone) tu_sleep_ms(1);
  }
  cr_assert(gone, "the daemon that replayed the compaction's record did not remove its inputs within 10 s");
  for (int w = 0; w < 10000 && !atomic_load(&sh->opened); w++) tu_sleep_ms(1);
  cr_assert(atomic_load(&sh->opened), "the writer's open did not return within 10 s");
  atomic_store(&sh->go, 1);
  int wst = 0, died = 0, writer_ended = 0;
  for (int w = 0; w < 60000 && !died && !writer_ended; w++) {
    died = waitpid(d2, &st, WNOHANG) == d2;
    if (!died) {
      writer_ended = waitpid(writer, &wst, WNOHANG) == writer;
      tu_sleep_ms(1);
    }
  }
  kill(writer, SIGKILL);   /* the power cut */
  if (!writer_ended) waitpid(writer, &wst, 0);
  tu_forget_child(writer);
  long acked = atomic_load(&sh->acked);
  cr_assert_eq(tp_kill_descendants(10000), 0, "processes survived SIGKILL");
  cr_assert(died, "the next daemon never reached flush.written (the writer ended with %s after %ld keys)",
            tu_status_str(wst, b, sizeof b), acked);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the next daemon ended with %s, not by its crash point",
            tu_status_str(st, b, sizeof b));
  cr_assert(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL, "the writer ended with %s before the cut (exit 2 open, "
            "3 no go, 10+rc commit)", tu_status_str(wst, b, sizeof b));
  cr_assert(!tp_lock_held(dir), "%s/LOCK held after every process was killed", dir);
  mc_check_unlinks_durable(dir, inputs, ninputs);

  /* 3. The power cut: the MANIFEST's unsynced tail is lost whole, the rest
  ** as crashstate makes it; the region goes with the power. */
  long long cut_size = mc_size(man);
  durable = mc_durable_size(man);
  cr_assert_gt(durable, 0, "%s was never synced", name);
  if (cut_size > durable)
    cr_assert_eq(truncate(man, (off_t)durable), 0, "truncate %s: %s", man, strerror(errno));
  char cutlog[4500];
  snprintf(cutlog, sizeof cutlog, "%s/cut.log", mc_state);
  f = fopen(cutlog, "w");
  cr_assert_not_null(f, "create %s", cutlog);
  uint64_t seed = 1;
  pc_stats pcs;
  memset(&pcs, 0, sizeof pcs);
  rc = pc_materialise(dir, mc_state, &seed, f, &pcs);
  fclose(f);
  cr_assert_eq(rc, 0, "pc_materialise");
  for (size_t i = 0; i < ninputs; i++) {
    sst_file_path(path, sizeof path, dir, inputs[i]);
    cr_assert(!mc_exists(path), "the power cut brought input %s back: its unlink was not durable", path);
  }
  tu_remove_region(dir);
  unlink(mc_nomore);

  /* Every acknowledged key reads back, from a region rebuilt from the files. */
  o = mc_opts(SOCHDB_TEST_SOCHDBD_TESTING);
  db = NULL;
  rc = sochdb_open(dir, &o, &db);
  cr_assert_eq(rc, SOCHDB_OK, "open after the power cut: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  long lost = 0;
  char first[512] = "";
  for (long i = 0; i < acked; i++) {
    char k[32], v[VLEN];
    mc_key(i, k);
    mc_val(i, v);
    const void *got = NULL;
    size_t gl = 0;
    rc = sochdb_get(t, k, strlen(k), &got, &gl);
    int ok = rc == SOCHDB_OK && gl == VLEN && memcmp(got, v, VLEN) == 0;
    if (!ok && !lost++)
      snprintf(first, sizeof first, "key %ld (%s): %s (%s)", i, k, sochdb_strerror(rc),
               rc == SOCHDB_OK ? "another value" : sochdb_last_error());
  }
  sochdb_abort(t);
  sochdb_close(db);
  cr_assert_eq(lost, 0, "%ld of %ld acknowledged keys do not read back after the power cut; the first: %s "
               "(%s: %lld bytes, %lld durable when the power was cut)", lost, acked, first, name, cut_size, durable);
  cr_log_info("keys acknowledged: %ld before the crash at %s, %ld in all; %s %lld bytes at the cut, %lld durable; "
              "inputs %llu..%llu removed by daemon %d; cut: %llu files cut, %llu names restored, %llu dropped",
              n1, spec, acked, name, cut_size, durable, (unsigned long long)inputs[0],
              (unsigned long long)inputs[ninputs - 1], (int)d2, (unsigned long long)pcs.files_cut,
              (unsigned long long)pcs.names_restored, (unsigned long long)pcs.names_dropped);
  tu_shared_free(sh, sizeof *sh);
}
