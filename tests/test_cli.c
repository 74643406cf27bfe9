/*
** test_cli.c — the `sochdb` tool's commands that talk to the daemon:
** `sochdb compact` (a full compaction requested through the region and
** waited for), `sochdb stats --watch` (its derived figures), `dump`, `load`,
** `backup`, `bench`, `sochdb table` (create, load, scan, schema), and
** `sochdb destroy` (the daemon stopped, the region and the files removed,
** refused while another process is attached).
**
** The data is written through the API with 1 MiB memtables, several
** generations of the same keys, so that level 0 (and level 1) hold several
** SSTables full of overwritten versions; then the tool runs as a child
** process, exactly as a person would run it, and the test checks its exit
** status, its output, and what the database holds afterwards through its own
** handle. The tool is found next to this test binary (every program lands in
** the build directory's top).
*/
#include "testutil.h"
#include "pagesize.h"
#include "procutil.h"

#include <math.h>
#include <libgen.h>
#include <sys/resource.h>
#include <limits.h>
#include <sys/resource.h>

static void remove_quiet_daemon(void);

/* The daemon is stopped before the directory is removed: one still
** compacting (a test that failed half-way) would write files into it. */
static void drop_side_db(const char *dir);
/* Databases beside the test's directory (side_db): the teardown drops them
** too, for a test that failed half-way. */
static char side_dbs[4][4300];

static void teardown(void)
{
  for (size_t i = 0; i < sizeof side_dbs / sizeof side_dbs[0]; i++) {
    if (side_dbs[i][0])
      drop_side_db(side_dbs[i]);
    side_dbs[i][0] = 0;
  }
  remove_quiet_daemon();
  if (tu_db_dir)
    tu_stop_daemon(tu_db_dir);
  tu_teardown();
}

TestSuite(cli, .init = tu_setup, .fini = teardown, .timeout = 240);

#define MT    (1u << 20)
#define REG   (32u << 20)
#define NKEYS 10000
#define GENS  5
#define VLEN  100

/* ---- data ----------------------------------------------------------------------- */

static void key_of(int i, char *k) { snprintf(k, 32, "key-%07d", i); }

/* A value naming its key and generation, then bytes that LZ4 cannot shrink,
** so that the SSTables are about as large as the data. */
static void val_of(int i, int gen, uint8_t *v)
{
  uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ (uint64_t)gen << 40 ^ 0x2545f4914f6cdd1dull;
  for (int j = 0; j < VLEN; j++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[j] = (uint8_t)x;
  }
  char head[32];
  int n = snprintf(head, sizeof head, "k%07d-g%d|", i, gen);
  memcpy(v, head, (size_t)n);
}

/* Keys [0, n) at generation gen, 50 per ASYNC transaction (retrying while
** the daemon is behind). */
static void fill(sochdb *db, int n, int gen)
{
  for (int i = 0; i < n; i += 50) {
    for (;;) {
      sochdb_txn *t = tu_begin(db, 0);
      for (int j = i; j < n && j < i + 50; j++) {
        char k[32];
        uint8_t v[VLEN];
        key_of(j, k);
        val_of(j, gen, v);
        cr_assert_eq(sochdb_put(t, k, strlen(k), v, VLEN), SOCHDB_OK, "put %s", k);
      }
      int rc = sochdb_commit(t, SOCHDB_ASYNC);
      if (rc == SOCHDB_OK)
        break;
      cr_assert_eq(rc, SOCHDB_BUSY, "commit of keys from %d: %s (%s)", i, sochdb_strerror(rc), sochdb_last_error());
      tu_sleep_ms(5);
    }
  }
}

/* Every key [0, n) reads as generation gen, by get and by a full scan. */
static void expect_all(sochdb *db, int n, int gen, const char *ctx)
{
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int i = 0; i < n; i++) {
    char k[32];
    uint8_t v[VLEN];
    key_of(i, k);
    val_of(i, gen, v);
    const void *got;
    size_t glen;
    int rc = sochdb_get(t, k, strlen(k), &got, &glen);
    cr_assert_eq(rc, SOCHDB_OK, "%s: get %s: %s (%s)", ctx, k, sochdb_strerror(rc), sochdb_last_error());
    cr_assert(glen == VLEN && memcmp(got, v, VLEN) == 0, "%s: %s reads %.12s, want generation %d", ctx, k,
              (const char *)got, gen);
  }
  sochdb_iter *it;
  cr_assert_eq(sochdb_iter_open(t, NULL, 0, NULL, 0, &it), SOCHDB_OK, "iter_open");
  const void *key, *val;
  size_t klen, vlen;
  int seen = 0, rc;
  while ((rc = sochdb_iter_next(it, &key, &klen, &val, &vlen)) == SOCHDB_OK) {
    char k[32];
    uint8_t v[VLEN];
    key_of(seen, k);
    val_of(seen, gen, v);
    cr_assert(klen == strlen(k) && memcmp(key, k, klen) == 0, "%s: scan position %d holds %.*s, want %s", ctx, seen,
              (int)klen, (const char *)key, k);
    cr_assert(vlen == VLEN && memcmp(val, v, VLEN) == 0, "%s: scan value of %s is not generation %d", ctx, k, gen);
    seen++;
  }
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "%s: scan ended with %s (%s)", ctx, sochdb_strerror(rc), sochdb_last_error());
  cr_assert_eq(seen, n, "%s: the scan saw %d keys, want %d", ctx, seen, n);
  sochdb_iter_close(it);
  sochdb_abort(t);
}

/* Every memtable rotated out is flushed: only the current one holds data
** that is not in an SSTable. */
static void wait_flushed(sochdb *db) { TU_WAIT_STATS(db, s->memtables_in_use <= 1, "the flushes"); }

/* ---- the daemon ------------------------------------------------------------------ */

/* A sochdbd that never compacts by itself (level 0 may hold 1000 files), so
** that the test knows exactly what a full compaction starts from: a script
** beside the database directory (removed by remove_quiet_daemon). */
static char quiet_daemon[4200];

static const char *make_quiet_daemon(void)
{
#ifndef SOCHDB_TEST_SOCHDBD
  cr_skip_test("the build defines no sochdbd");
  return NULL;
#else
  return tu_daemon_script(quiet_daemon, sizeof quiet_daemon, SOCHDB_TEST_SOCHDBD, "--l0-trigger 1000");
#endif
}

static void remove_quiet_daemon(void)
{
  if (quiet_daemon[0])
    unlink(quiet_daemon);
}

/* The pid sochdbd wrote into DIR/LOCK, or 0. */
static pid_t daemon_pid(const char *dir)
{
  char path[4200], buf[32] = { 0 };
  if (snprintf(path, sizeof path, "%s/LOCK", dir) >= (int)sizeof path)
    return 0;   /* no such path: no pid */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  return n > 0 ? (pid_t)strtol(buf, NULL, 10) : 0;
}

/* ---- running the tool ------------------------------------------------------------ */

static void cli_path(char *out, size_t n)
{
  char self[PATH_MAX];
  ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
  cr_assert_gt(l, 0);
  self[l] = '\0';
  snprintf(out, n, "%s/sochdb", dirname(self));
  cr_assert_eq(access(out, X_OK), 0, "%s not found: build the sochdb_cli target too", out);
}

/* Where a child's stdout and stderr go: beside the database directory. */
static void output_paths(char *outp, char *errp, size_t n)
{
  snprintf(outp, n, "%s.out", tu_dir());
  snprintf(errp, n, "%s.err", tu_dir());
}

/* Start sochdb with args (NULL-terminated) as a child with its output in
** files; the child inherits the environment ($SOCHDB_SHM_DIR included). */
static pid_t start_cli(const char *const *argv_tail)
{
  char bin[PATH_MAX], outp[4300], errp[4300];
  cli_path(bin, sizeof bin);
  output_paths(outp, errp, sizeof outp);
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0)
      _exit(99);
    dup2(o, 1);
    dup2(e, 2);
    const char *argv[16] = { bin };
    for (int i = 0; argv_tail[i] && i < 14; i++)
      argv[i + 1] = argv_tail[i];
    execv(bin, (char *const *)argv);
    _exit(98);
  }
  return pid;
}

/* The whole of a file into buf (NUL-terminated, truncated to n-1 bytes). */
static void slurp(const char *path, char *buf, size_t n)
{
  buf[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  size_t len = 0;
  ssize_t k;
  while (len + 1 < n && (k = read(fd, buf + len, n - 1 - len)) > 0)
    len += (size_t)k;
  buf[len] = '\0';
  close(fd);
}

/* Wait for the child started by start_cli (at most 200 s: every test passes
** the tool a shorter --timeout) and collect its output; its exit status. */
static int finish_cli(pid_t pid, char *out, size_t outn, char *err, size_t errn)
{
  int st = 0;
  int waited = tu_wait_child(pid, 200000, &st);
  char outp[4300], errp[4300];
  output_paths(outp, errp, sizeof outp);
  slurp(outp, out, outn);
  slurp(errp, err, errn);
  unlink(outp);
  unlink(errp);
  char how[64];
  cr_assert_eq(waited, 0, "sochdb did not finish within 200 s\nstdout: %s\nstderr: %s", out, err);
  cr_assert(WIFEXITED(st), "sochdb died: %s\nstderr: %s", tu_status_str(st, how, sizeof how), err);
  return WEXITSTATUS(st);
}

static int run_cli(const char *const *argv_tail, char *out, size_t outn, char *err, size_t errn)
{
  return finish_cli(start_cli(argv_tail), out, outn, err, errn);
}

/* Run a /bin/sh command line with $CLI naming the tool (for redirections
** run_cli does not make); its exit status, asserted to be one. */
static int run_sh(const char *line)
{
  char bin[PATH_MAX];
  cli_path(bin, sizeof bin);
  cr_assert_eq(setenv("CLI", bin, 1), 0);
  int st = system(line);
  cr_assert(st != -1 && WIFEXITED(st), "sh -c '%s' did not exit", line);
  return WEXITSTATUS(st);
}

/* The unsigned number after "name": in the JSON object that starts at "obj":{
** (obj NULL: anywhere in json). */
static unsigned long long json_number(const char *json, const char *obj, const char *name)
{
  const char *from = json;
  char pat[128];
  if (obj) {
    snprintf(pat, sizeof pat, "\"%s\":{", obj);
    from = strstr(json, pat);
    cr_assert_not_null(from, "no object %s in %s", obj, json);
  }
  snprintf(pat, sizeof pat, "\"%s\":", name);
  const char *p = strstr(from, pat);
  cr_assert_not_null(p, "no field %s%s%s in %s", obj ? obj : "", obj ? "." : "", name, json);
  char *end;
  unsigned long long v = strtoull(p + strlen(pat), &end, 10);
  cr_assert(end != p + strlen(pat), "field %s is not a number in %s", name, json);
  return v;
}

/* ---- sochdb compact ---------------------------------------------------------------- */

/* Level 0 only (no compaction ran): every generation is in the SSTables,
** so a full compaction must leave fewer files, none in level 0, and far
** fewer bytes, and say so in its JSON summary. */
Test(cli, compact_merges_level_0_into_one_level_and_keeps_the_newest_values)
{
  sochdb_options o = tu_options(REG, MT, 10000);
  o.daemon_path = make_quiet_daemon();
  tu_db = tu_open_with(tu_dir(), &o);
  sochdb *db = tu_db;
  for (int gen = 1; gen <= GENS; gen++)
    fill(db, NKEYS, gen);
  wait_flushed(db);
  sochdb_stats before = tu_stats(db);
  cr_assert_geq(before.l0_files, 3, "several SSTables in level 0 to start from (%u)", before.l0_files);
  cr_assert_eq(before.sst_files, before.l0_files, "nothing compacted yet (%u files, %u in level 0)", before.sst_files,
               before.l0_files);
  cr_assert_eq(before.compactions, 0);

  char out[8192], err[8192];
  const char *args[] = { "compact", tu_dir(), "--json", "--timeout", "120", NULL };
  int code = run_cli(args, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0, "exit %d\nstdout: %s\nstderr: %s", code, out, err);

  sochdb_stats after = tu_stats(db);
  cr_assert_eq(after.l0_files, 0, "level 0 is empty after a full compaction (%u files)", after.l0_files);
  cr_assert_geq(after.sst_files, 1, "the data is in SSTables");
  cr_assert_lt(after.sst_files, before.sst_files, "fewer SSTables: %u before, %u after", before.sst_files,
               after.sst_files);
  cr_assert_lt(after.sst_bytes, before.sst_bytes, "overwritten versions are gone: %llu bytes before, %llu after",
               (unsigned long long)before.sst_bytes, (unsigned long long)after.sst_bytes);
  cr_assert_geq(after.compactions, 1, "the daemon compacted");

  cr_assert(strstr(out, "\"status\":\"done\""), "json: %s", out);
  cr_assert_eq(json_number(out, "before", "sst_files"), before.sst_files, "json before: %s", out);
  cr_assert_eq(json_number(out, "before", "l0_files"), before.l0_files, "json before: %s", out);
  cr_assert_eq(json_number(out, "before", "sst_bytes"), before.sst_bytes, "json before: %s", out);
  cr_assert_eq(json_number(out, "after", "sst_files"), after.sst_files, "json after: %s", out);
  cr_assert_eq(json_number(out, "after", "l0_files"), 0, "json after: %s", out);
  cr_assert_eq(json_number(out, "after", "sst_bytes"), after.sst_bytes, "json after: %s", out);
  const char *totals = strstr(out, "},\"compactions\":");   /* after the "after" object */
  cr_assert_not_null(totals, "json: %s", out);
  cr_assert_geq(json_number(totals, NULL, "compactions"), 1, "json: %s", out);
  cr_assert_eq(json_number(out, NULL, "bytes_read"), before.sst_bytes, "the full compaction read everything: %s",
               out);
  cr_assert_eq(json_number(out, NULL, "bytes_written"), after.sst_bytes, "json: %s", out);
  cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line of JSON: %s", out);

  expect_all(db, NKEYS, GENS, "after sochdb compact");
  /* and the database goes on as usual */
  fill(db, NKEYS / 10, GENS + 1);
  tu_close();
}

/* A daemon whose threads sleep an hour whenever idle (sochdbd-testing,
** $SOCHDB_TEST_IDLE_MS): the compactor, idle once the flushes are done, must
** be woken by the request itself, or the command waits out its timeout. */
Test(cli, compact_wakes_a_daemon_that_sleeps_whenever_idle)
{
#ifndef SOCHDB_TEST_SOCHDBD_TESTING
  cr_skip_test("the build defines no sochdbd-testing");
#else
  setenv("SOCHDB_TEST_IDLE_MS", "3600000", 1);   /* inherited by the daemon the open starts */
  sochdb_options o = tu_options(REG, MT, 10000);
  o.daemon_path = tu_daemon_script(quiet_daemon, sizeof quiet_daemon, SOCHDB_TEST_SOCHDBD_TESTING, "--l0-trigger 1000");
  tu_db = tu_open_with(tu_dir(), &o);
  sochdb *db = tu_db;
  fill(db, NKEYS, 1);
  fill(db, NKEYS, 2);
  wait_flushed(db);
  cr_assert_geq(tu_stats(db).l0_files, 1, "SSTables in level 0 to compact");
  char out[8192], err[8192];
  const char *args[] = { "compact", tu_dir(), "--timeout", "60", NULL };
  int code = run_cli(args, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0, "exit %d\nstdout: %s\nstderr: %s", code, out, err);
  cr_assert_eq(tu_stats(db).l0_files, 0, "level 0 compacted");
  expect_all(db, NKEYS, 2, "after sochdb compact");
  tu_close();
#endif
}

/* The daemon of every day (it compacts level 0 into level 1 by itself): a
** mix of level 0 and level 1 files; the text summary. */
Test(cli, compact_after_automatic_compactions)
{
  sochdb *db = tu_open(REG, MT, 10000);
  for (int gen = 1; gen <= GENS; gen++)
    fill(db, NKEYS, gen);
  wait_flushed(db);
  /* the daemon caught up: level 0 was compacted into level 1 */
  TU_WAIT_STATS(db, s->l0_files < 4 && s->sst_files > s->l0_files, "automatic compactions");
  /* One more generation until level 0 holds a file: overwritten versions
  ** that only a compaction removes (a generation is about one memtable and
  ** a half, level 0 is compacted at 4 files, so one more is nearly always
  ** enough). */
  int gen = GENS;
  for (int extra = 0; extra < 10 && tu_stats(db).l0_files == 0; extra++) {
    fill(db, NKEYS, ++gen);
    wait_flushed(db);
  }
  sochdb_stats before = tu_stats(db);
  cr_assert_gt(before.l0_files, 0, "level 0 holds a file");
  cr_assert_gt(before.sst_files, before.l0_files, "and level 1 some (%u files, %u in level 0)", before.sst_files,
               before.l0_files);

  char out[8192], err[8192];
  const char *args[] = { "compact", tu_dir(), "--timeout", "120", NULL };
  int code = run_cli(args, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0, "exit %d\nstdout: %s\nstderr: %s", code, out, err);
  cr_assert(strstr(out, "compacted in") && strstr(out, "before:") && strstr(out, "after:"), "summary: %s", out);
  cr_assert_eq(strstr(err, "\033"), NULL, "no progress bar when stderr is not a terminal: %s", err);

  sochdb_stats after = tu_stats(db);
  cr_assert_eq(after.l0_files, 0, "level 0 is empty (%u files)", after.l0_files);
  cr_assert_leq(after.sst_files, before.sst_files, "no more SSTables: %u before, %u after", before.sst_files,
                after.sst_files);
  cr_assert_lt(after.sst_bytes, before.sst_bytes, "overwritten versions are gone: %llu bytes before, %llu after",
               (unsigned long long)before.sst_bytes, (unsigned long long)after.sst_bytes);
  char line[128];
  snprintf(line, sizeof line, "after:  %u SSTable%s (0 in level 0)", after.sst_files, after.sst_files == 1 ? "" : "s");
  cr_assert(strstr(out, line), "summary has '%s': %s", line, out);
  expect_all(db, NKEYS, gen, "after sochdb compact");
  tu_close();
}

/* The daemon is stopped when the request is made and killed while the tool
** waits: the tool starts a new daemon, which carries the request out. */
Test(cli, compact_survives_the_death_of_the_daemon)
{
  sochdb_options o = tu_options(REG, MT, 10000);
  o.daemon_path = make_quiet_daemon();
  tu_db = tu_open_with(tu_dir(), &o);
  sochdb *db = tu_db;
  for (int gen = 1; gen <= 3; gen++)
    fill(db, NKEYS, gen);
  wait_flushed(db);
  sochdb_stats before = tu_stats(db);
  cr_assert_geq(before.l0_files, 2);
  pid_t daemon = daemon_pid(tu_dir());
  cr_assert_gt(daemon, 0, "the daemon's pid is in LOCK");
  cr_assert_eq(kill(daemon, SIGSTOP), 0, "stop the daemon %d: %s", (int)daemon, strerror(errno));

  char out[8192], err[8192];
  const char *args[] = { "compact", tu_dir(), "--json", "--timeout", "120", NULL };
  pid_t cli = start_cli(args);
  tu_sleep_ms(300);   /* most often the tool waits on the request by now; either way it must finish */
  cr_assert_eq(kill(daemon, SIGKILL), 0);
  int code = finish_cli(cli, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0, "exit %d\nstdout: %s\nstderr: %s", code, out, err);
  cr_assert(strstr(out, "\"status\":\"done\""), "json: %s", out);
  cr_assert_neq(daemon_pid(tu_dir()), daemon, "a new daemon serves the database");

  sochdb_stats after = tu_stats(db);
  cr_assert_eq(after.l0_files, 0, "level 0 is empty (%u files)", after.l0_files);
  cr_assert_lt(after.sst_files, before.sst_files);
  cr_assert_lt(after.sst_bytes, before.sst_bytes);
  expect_all(db, NKEYS, 3, "after the daemon's death");
  tu_close();
}

Test(cli, compact_refuses_a_directory_that_is_not_a_database)
{
  char out[8192], err[8192];
  /* an existing, empty directory */
  const char *args[] = { "compact", tu_dir(), NULL };
  int code = run_cli(args, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 3, "exit %d\nstdout: %s\nstderr: %s", code, out, err);
  cr_assert_str_empty(out, "nothing on stdout: %s", out);
  cr_assert(strstr(err, "no database at ") && strstr(err, tu_dir()), "stderr names the problem: %s", err);
  DIR *d = opendir(tu_dir());
  cr_assert_not_null(d);
  struct dirent *e;
  while ((e = readdir(d)))
    cr_assert(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."), "%s was created in the directory", e->d_name);
  closedir(d);

  /* a missing one is not created */
  char missing[4300];
  snprintf(missing, sizeof missing, "%s/none", tu_dir());
  const char *args2[] = { "compact", missing, "--json", NULL };
  code = run_cli(args2, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 3, "exit %d\nstderr: %s", code, err);
  cr_assert(strstr(err, "no database at "), "stderr: %s", err);
  cr_assert_neq(access(missing, F_OK), 0, "%s was created", missing);
}

Test(cli, compact_usage)
{
  char out[8192], err[8192];
  const char *help[] = { "compact", "--help", NULL };
  int code = run_cli(help, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0);
  cr_assert(strstr(out, "usage: sochdb compact DIR") && strstr(out, "--timeout SEC"), "help: %s", out);
  const char *none[] = { "compact", NULL };
  code = run_cli(none, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 2, "no DIR: exit %d", code);
  const char *zero[] = { "compact", tu_dir(), "--timeout", "0", NULL };
  code = run_cli(zero, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 2, "--timeout 0: exit %d", code);
  cr_assert(strstr(err, "--timeout"), "stderr: %s", err);
  const char *junk[] = { "compact", tu_dir(), "--timeout", "5s", NULL };
  code = run_cli(junk, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 2, "--timeout 5s: exit %d", code);
  const char *extra[] = { "compact", tu_dir(), "more", NULL };
  code = run_cli(extra, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 2, "an extra argument: exit %d", code);
  const char *list[] = { "--help", NULL };
  code = run_cli(list, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0);
  cr_assert(strstr(out, "  compact "), "sochdb --help lists compact: %s", out);
}

/* ---- sochdb stats --watch ---------------------------------------------------------- */

static int count_lines(const char *path)
{
  char buf[65536];
  slurp(path, buf, sizeof buf);
  int n = 0;
  for (const char *p = buf; *p; p++)
    n += *p == '\n';
  return n;
}

/* The first sample knows no rates (null), later ones do; every sample has
** the fields the live view promises. */
Test(cli, stats_watch_shows_rates_fill_debt_cache_and_processes)
{
  sochdb *db = tu_open(REG, MT, 10000);
  fill(db, 2000, 1);
  char out[65536], err[8192];
  const char *args[] = { "--json", "stats", tu_dir(), "--watch", "--interval", "100", NULL };
  pid_t cli = start_cli(args);
  char outp[4300], errp[4300];
  output_paths(outp, errp, sizeof outp);
  /* commits while it watches, until it printed 3 samples (at most 60 s) */
  int gen = 2;
  for (int i = 0; i < 600 && count_lines(outp) < 3; i++) {
    fill(db, 200, gen++);
    tu_sleep_ms(100);
  }
  cr_assert_eq(kill(cli, SIGINT), 0);
  int code = finish_cli(cli, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0, "exit %d after SIGINT\nstderr: %s", code, err);

  char *save, *line = strtok_r(out, "\n", &save);
  cr_assert_not_null(line, "no sample printed: %s", err);
  static const char *const always[] = { "\"processes_attached\":", "\"compaction_debt_bytes\":",
                                        "\"memtable_fill_pct\":",  "\"commits_per_sec\":",
                                        "\"fsyncs_per_sec\":",     "\"avg_group_commit\":",
                                        "\"cache_hit_pct\":",      "\"cache_hits\":",
                                        "\"region_pages\":",       "\"stall_ms_per_sec\":",
                                        "\"write_stalls\":" };
  cr_assert(strstr(line, "\"commits_per_sec\":null") && strstr(line, "\"fsyncs_per_sec\":null") &&
              strstr(line, "\"cache_hit_pct\":null"),
            "the first sample has no rates: %s", line);
  cr_assert_null(strstr(line, "\"memtable_fill_pct\":null"), "the fill is known at once: %s", line);
  int samples = 0, with_rates = 0;
  for (; line; line = strtok_r(NULL, "\n", &save)) {
    samples++;
    for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
      cr_assert(strstr(line, always[i]), "sample %d lacks %s: %s", samples, always[i], line);
    cr_assert_geq(json_number(line, NULL, "processes_attached"), 2, "this test and the tool: %s", line);
    cr_assert_eq(json_number(line, NULL, "region_page_bytes"), shm_page_bytes(sochdb_region_path(db), NULL, 0),
                 "the page size of the region's tmpfs: %s", line);
    if (samples > 1) {
      cr_assert_null(strstr(line, "\"commits_per_sec\":null"), "sample %d: %s", samples, line);
      cr_assert_null(strstr(line, "\"fsyncs_per_sec\":null"), "sample %d: %s", samples, line);
      cr_assert_eq(json_number(line, NULL, "stall_ms_per_sec"), 0, "nobody waited: sample %d: %s", samples, line);
      with_rates++;
    }
  }
  cr_assert_geq(samples, 3, "samples: %d", samples);
  cr_assert_geq(with_rates, 2);

  /* the text view names the same figures */
  const char *text[] = { "stats", tu_dir(), "--watch", "--interval", "100", NULL };
  cli = start_cli(text);
  for (int i = 0; i < 600 && count_lines(outp) < 100; i++)
    tu_sleep_ms(100);
  cr_assert_eq(kill(cli, SIGINT), 0);
  code = finish_cli(cli, out, sizeof out, err, sizeof err);
  cr_assert_eq(code, 0, "exit %d after SIGINT\nstderr: %s", code, err);
  static const char *const labels[] = { "processes attached", "compaction debt bytes", "commits per sec",
                                        "fsyncs per sec",     "avg group commit",      "cache hit pct",
                                        "memtable fill pct", "region pages",     "stall ms per sec",
                                        "write stalls" };
  for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
    cr_assert(strstr(out, labels[i]), "the text view lacks '%s': %s", labels[i], out);
  tu_close();
}

/* ---- sochdb dump, load and backup ------------------------------------------------- */

#include <stdatomic.h>

/* A second database directory beside the test's (DIR.SUFFIX), removed by
** drop_side_db: its daemon stopped, its region unlinked, its files gone. */

static void side_db(const char *suffix, char *out, size_t n)
{
  snprintf(out, n, "%s.%s", tu_dir(), suffix);
  for (size_t i = 0; i < sizeof side_dbs / sizeof side_dbs[0]; i++)
    if (!side_dbs[i][0]) {
      snprintf(side_dbs[i], sizeof side_dbs[i], "%s", out);
      break;
    }
}

static void drop_side_db(const char *dir)
{
  if (access(dir, F_OK) != 0)
    return;
  tu_stop_daemon(dir);
  tu_remove_region(dir);
  tu_rmrf(dir);
}

/* Pair i of the round-trip data set: keys with NUL, 0xff (never 0xff 0xff
** first) and every other byte, one of the maximum length; values empty (every
** 7th), binary, and one of 1 MiB. */
static size_t xfer_key(int i, unsigned char *k)
{
  if (i == 0) {
    memset(k, 'M', SOCHDB_MAX_KEY);
    return SOCHDB_MAX_KEY;
  }
  size_t n = 3 + (size_t)(i % 11);
  for (size_t j = 0; j < n; j++)
    k[j] = (unsigned char)((i * 31 + (int)j * 17) & 0xff);
  k[0] = (unsigned char)(i & 0x7f);          /* never 0xff 0xff ... */
  k[n - 2] = 0;
  k[n - 1] = (unsigned char)(i >> 7);
  return n;
}

static size_t xfer_val(int i, unsigned char *v)
{
  size_t n = i == 5 ? (1u << 20) : i % 7 == 0 ? 0 : (size_t)(i % 300) + 1;
  for (size_t j = 0; j < n; j++)
    v[j] = (unsigned char)(i ^ (int)(j * 131));
  return n;
}

#define XFER_PAIRS 3000

static void xfer_fill(sochdb *db)
{
  static unsigned char v[1u << 20];
  unsigned char k[SOCHDB_MAX_KEY];
  sochdb_txn *t = tu_begin(db, 0);
  for (int i = 0; i < XFER_PAIRS; i++) {
    size_t kl = xfer_key(i, k), vl = xfer_val(i, v);
    cr_assert_eq(sochdb_put(t, k, kl, vl ? v : NULL, vl), SOCHDB_OK, "put pair %d", i);
  }
  tu_commit(t, SOCHDB_SYNC, "the round-trip data");
}

/* Both databases hold exactly the same pairs, in the same order. */
static void expect_same_pairs(sochdb *a, sochdb *b, unsigned long long *pairs)
{
  sochdb_txn *ta = tu_begin(a, SOCHDB_TXN_READONLY), *tb = tu_begin(b, SOCHDB_TXN_READONLY);
  sochdb_iter *ia, *ib;
  cr_assert_eq(sochdb_iter_open(ta, NULL, 0, NULL, 0, &ia), SOCHDB_OK);
  cr_assert_eq(sochdb_iter_open(tb, NULL, 0, NULL, 0, &ib), SOCHDB_OK);
  const void *ka, *va, *kb, *vb;
  size_t kla, vla, klb, vlb;
  int ra, rb;
  *pairs = 0;
  while ((ra = sochdb_iter_next(ia, &ka, &kla, &va, &vla)) == SOCHDB_OK) {
    rb = sochdb_iter_next(ib, &kb, &klb, &vb, &vlb);
    cr_assert_eq(rb, SOCHDB_OK, "the copy ends after %llu pairs", *pairs);
    cr_assert(kla == klb && memcmp(ka, kb, kla) == 0, "pair %llu: the keys differ", *pairs);
    cr_assert(vla == vlb && (vla == 0 || memcmp(va, vb, vla) == 0), "pair %llu: the values differ", *pairs);
    (*pairs)++;
  }
  cr_assert_eq(ra, SOCHDB_NOTFOUND);
  cr_assert_eq(sochdb_iter_next(ib, &kb, &klb, &vb, &vlb), SOCHDB_NOTFOUND, "the copy has more pairs");
  sochdb_iter_close(ia);
  sochdb_iter_close(ib);
  sochdb_abort(ta);
  sochdb_abort(tb);
}

static int files_equal(const char *p, const char *q)
{
  FILE *a = fopen(p, "rb"), *b = fopen(q, "rb");
  int same = a && b, ca, cb;
  while (same && ((ca = fgetc(a)) != EOF) | ((cb = fgetc(b)) != EOF))
    same = ca == cb;
  if (a) fclose(a);
  if (b) fclose(b);
  return same;
}

/* A file's first bytes equal want (a dump's header line). */
static int starts_with(const char *path, const char *want)
{
  char buf[64] = "";
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s: %s", path, strerror(errno));
  size_t n = fread(buf, 1, strlen(want), f);
  fclose(f);
  return n == strlen(want) && memcmp(buf, want, n) == 0;
}

Test(cli, dump_then_load_round_trips_binary_keys_and_empty_values)
{
  sochdb *src = tu_open(64u << 20, 8u << 20, 10000);   /* memtables that hold the 1 MiB value */
  xfer_fill(src);
  char dst[4300], d1[4300], d2[4300], out[4096], err[4096];
  side_db("loaded", dst, sizeof dst);
  side_db("dump1", d1, sizeof d1);
  side_db("dump2", d2, sizeof d2);

  const char *dump1[] = { "--json", "dump", tu_dir(), d1, NULL };
  cr_assert_eq(run_cli(dump1, out, sizeof out, err, sizeof err), 0, "dump: %s", err);
  cr_assert_eq(json_number(out, NULL, "pairs"), XFER_PAIRS, "%s", out);
  cr_assert(starts_with(d1, "SOCHDB-DUMP 1\n"), "a dump without tables is not version 1, as older tools read");
  const char *load[] = { "--json", "load", dst, d1, "--batch", "128", NULL };
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 0, "load: %s", err);
  cr_assert_eq(json_number(out, NULL, "pairs"), XFER_PAIRS, "%s", out);
  cr_assert_geq(json_number(out, NULL, "batches"), XFER_PAIRS / 128, "%s", out);

  sochdb *copy = tu_open_with(dst, NULL);
  unsigned long long pairs;
  expect_same_pairs(src, copy, &pairs);
  cr_assert_eq(pairs, XFER_PAIRS);
  sochdb_close(copy);
  const char *dump2[] = { "dump", dst, d2, NULL };
  cr_assert_eq(run_cli(dump2, out, sizeof out, err, sizeof err), 0, "dump of the copy: %s", err);
  cr_assert(files_equal(d1, d2), "the dump of the loaded copy differs from the original dump");
  unlink(d1);
  unlink(d2);
  drop_side_db(dst);
}

Test(cli, load_refuses_reserved_keys_and_truncated_dumps_before_writing)
{
  char dst[4300], bad[4300], out[4096], err[4096];
  side_db("loaded", dst, sizeof dst);
  side_db("bad", bad, sizeof bad);
  static const unsigned char reserved[] = "SOCHDB-DUMP 1\nR\0\0\0\2aa\0\0\0\0R\0\0\0\2\xff\xff\0\0\0\0E\0\0\0\0\0\0\0\2";
  FILE *f = fopen(bad, "wb");
  cr_assert_not_null(f);
  fwrite(reserved, 1, sizeof reserved - 1, f);
  fclose(f);
  const char *load[] = { "load", dst, bad, NULL };
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 2, "load of a reserved key: %s", err);
  cr_assert_not_null(strstr(err, "reserved"), "stderr: %s", err);
  cr_assert_neq(access(dst, F_OK), 0, "a refused dump must write nothing");

  /* a table record in version 1, and one whose key no table has */
  static const struct { const char *bytes; size_t n; const char *says; } forged[] = {
    { "SOCHDB-DUMP 1\nT\0\0\0\4\xff\xff\0x\0\0\0\0E\0\0\0\0\0\0\0\1", 36, "not a record" },
    { "SOCHDB-DUMP 2\nT\0\0\0\4\xff\xff\7x\0\0\0\0E\0\0\0\0\0\0\0\1", 36, "no columnar table" },
    { "SOCHDB-DUMP 2\nR\0\0\0\3\xff\xff\0\0\0\0\0E\0\0\0\0\0\0\0\1", 35, "reserved" },
  };
  for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
    f = fopen(bad, "wb");
    cr_assert_not_null(f);
    fwrite(forged[i].bytes, 1, forged[i].n, f);
    fclose(f);
    cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 2, "load of forged dump %zu: %s", i, err);
    cr_assert(strstr(err, forged[i].says), "forged dump %zu: %s", i, err);
    cr_assert_neq(access(dst, F_OK), 0, "a refused dump must write nothing");
  }

  cr_assert_eq(truncate(bad, 20), 0);
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 2, "load of a truncated dump: %s", err);
  cr_assert_neq(access(dst, F_OK), 0, "a truncated dump must write nothing");
  unlink(bad);
}

/* Standard input may be a regular file read from an offset other than 0
** ({ read -r line; sochdb load DIR; } < FILE): the dump starts there (the
** check read from there, then the load rewound to byte 0 and refused). */
Test(cli, load_reads_standard_input_from_where_it_stands)
{
  sochdb *src = tu_open(64u << 20, 8u << 20, 10000);
  xfer_fill(src);
  char dst[4300], dump[4300], withhead[4400], line[14000], out[4096], err[4096];
  side_db("loaded", dst, sizeof dst);
  side_db("dump", dump, sizeof dump);
  const char *d[] = { "dump", tu_dir(), dump, NULL };
  cr_assert_eq(run_cli(d, out, sizeof out, err, sizeof err), 0, "dump: %s", err);
  snprintf(withhead, sizeof withhead, "%s.head", dump);
  snprintf(line, sizeof line, "{ echo 'a line before the dump'; cat '%s'; } > '%s'", dump, withhead);
  cr_assert_eq(run_sh(line), 0, "%s", line);
  snprintf(line, sizeof line, "{ read -r x; \"$CLI\" load '%s' 2>'%s.err'; } < '%s'", dst, dump, withhead);
  int rc = run_sh(line);
  snprintf(line, sizeof line, "%s.err", dump);
  slurp(line, err, sizeof err);
  cr_assert_eq(rc, 0, "load from an offset of stdin: exit %d, stderr: %s", rc, err);
  sochdb *copy = tu_open_with(dst, NULL);
  unsigned long long pairs;
  expect_same_pairs(src, copy, &pairs);
  cr_assert_eq(pairs, XFER_PAIRS);
  sochdb_close(copy);
  unlink(line);
  unlink(withhead);
  unlink(dump);
  drop_side_db(dst);
}

/* A dump to a standard output that cannot take it: exit 3, and no summary
** claiming it was written (it came before stdout's last bytes were). */
Test(cli, a_dump_to_a_full_stdout_says_no_success)
{
  tu_open(REG, MT, 10000);
  tu_commit_kv(tu_db, "a", "1", SOCHDB_SYNC);
  char line[9000], errp[4400], err[4096];
  snprintf(errp, sizeof errp, "%s.err", tu_dir());
  snprintf(line, sizeof line, "\"$CLI\" --json dump '%s' > /dev/full 2>'%s'", tu_dir(), errp);
  int rc = run_sh(line);
  slurp(errp, err, sizeof err);
  unlink(errp);
  cr_assert_eq(rc, 3, "dump > /dev/full: exit %d, stderr: %s", rc, err);
  cr_assert_null(strstr(err, "\"pairs\""), "a success summary on stderr: %s", err);
  tu_close();
}

/* A generation family: every transaction of the writer sets all FAMILY keys
** to its next generation, so one snapshot has all of them at one value. */
#define FAMILY 1000

static int write_generation(sochdb_txn *t, unsigned gen)
{
  char k[32], v[200];
  int rc = SOCHDB_OK;
  for (int i = 0; i < FAMILY && rc == SOCHDB_OK; i++) {
    snprintf(k, sizeof k, "fam-%04d", i);
    memset(v, 'x', sizeof v);
    snprintf(v, sizeof v, "gen=%010u", gen);
    rc = sochdb_put(t, k, strlen(k), v, sizeof v);
  }
  if (rc != SOCHDB_OK)
    sochdb_abort(t);
  return rc;
}

/* The writer, a thread of the test (a thread, not a child, so that the
** suite stays in-process for TSan): generations 1, 2, ... on its own handle
** until stop; done counts them, failed says why it stopped early. */
typedef struct family {
  sochdb *db;
  atomic_int stop;
  atomic_uint done;
  int failed;
} family;

static void *family_writer(void *arg)
{
  family *f = arg;
  for (unsigned gen = 1; !atomic_load(&f->stop); gen++) {
    sochdb_txn *t;
    if (sochdb_txn_begin(f->db, 0, &t) != SOCHDB_OK || write_generation(t, gen) != SOCHDB_OK) {
      f->failed = 1;
      return NULL;
    }
    int rc = sochdb_commit(t, SOCHDB_ASYNC);
    if (rc == SOCHDB_BUSY) {
      gen--;
      tu_sleep_ms(5);
      continue;
    }
    if (rc != SOCHDB_OK) {
      f->failed = 2;
      return NULL;
    }
    atomic_store(&f->done, gen);
    tu_sleep_ms(1);
  }
  return NULL;
}

/* The peak resident memory (KiB) of `sochdb ARGS` run to the end, which
** must exit 0: its own rusage, by wait4, not that of other children. */
static long cli_peak_kib(const char *const *argv_tail)
{
  pid_t pid = start_cli(argv_tail);
  struct rusage ru;
  int st = 0;
  pid_t got = 0;
  for (int ms = 0; ms < 200000 && (got = wait4(pid, &st, WNOHANG, &ru)) == 0; ms += 10)
    tu_sleep_ms(10);
  cr_assert_eq(got, pid, "sochdb %s did not finish within 200 s", argv_tail[0]);
  tu_forget_child(pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sochdb %s failed (status 0x%x)", argv_tail[0], st);
  return ru.ru_maxrss;
}

/* A whole-database scan, dump or backup holds one snapshot, but what it read
** is printed or copied at once: it must not keep every key and value until
** its transaction ends. An iterator hands out copies of the keys and values
** of compressed blocks that live until then (sochdb_iter_next's promise),
** so the tools' memory grew with the data: 220 MiB for a database of
** 9.5 MiB of SSTables. Compressible values, all in SSTables (no memtable
** pages to count), 32 MiB of them: a full scan and dump may take a few MiB
** more than a scan of one key, not the data's size. */
#define PEAK_KEYS 32768
#define PEAK_VLEN 1000
/* Keys [from, from + 256) with compressible values in one ASYNC commit: its code. */
static int commit_peak_batch(sochdb *db, int from)
{
  sochdb_txn *t = tu_begin(db, 0);
  for (int j = from; j < from + 256; j++) {
    char k[32], v[PEAK_VLEN];
    key_of(j, k);
    memset(v, 'a' + j % 26, sizeof v);   /* LZ4 shrinks it twentyfold: the blocks are compressed */
    snprintf(v, 16, "%d", j);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, sizeof v), SOCHDB_OK, "put %s", k);
  }
  return sochdb_commit(t, SOCHDB_ASYNC);
}

Test(cli, scan_and_dump_of_a_whole_database_keep_no_copy_of_what_they_read)
{
  sochdb *db = tu_open(64u << 20, MT, 10000);
  for (int i = 0; i < PEAK_KEYS; i += 256) {
    int rc;
    while ((rc = commit_peak_batch(db, i)) == SOCHDB_BUSY)   /* the daemon is behind: again */
      tu_sleep_ms(5);
    cr_assert_eq(rc, SOCHDB_OK, "commit from key %d: %s (%s)", i, sochdb_strerror(rc), sochdb_last_error());
  }
  tu_full_compaction(db);
  char dump[4300];
  side_db("peakdump", dump, sizeof dump);
  const char *one[] = { "scan", tu_dir(), "--keys-only", "--limit", "1", NULL };
  const char *all[] = { "scan", tu_dir(), "--keys-only", NULL };
  const char *dumpall[] = { "dump", tu_dir(), dump, NULL };
  long base = cli_peak_kib(one), scan = cli_peak_kib(all), dumped = cli_peak_kib(dumpall);
  unlink(dump);
  long data_kib = (long)PEAK_KEYS * PEAK_VLEN / 1024;
  cr_assert_lt(scan - base, data_kib / 4, "a scan of %ld KiB of values took %ld KiB more than a scan of one key",
               data_kib, scan - base);
  cr_assert_lt(dumped - base, data_kib / 4, "a dump of %ld KiB of values took %ld KiB more than a scan of one key",
               data_kib, dumped - base);
}

Test(cli, backup_while_a_writer_commits_copies_one_snapshot)
{
  sochdb *src = tu_open(REG, MT, 10000);
  sochdb_txn *t = tu_begin(src, 0);
  cr_assert_eq(write_generation(t, 0), SOCHDB_OK);
  tu_commit(t, SOCHDB_SYNC, "generation 0");
  static family f;
  f.db = src;
  pthread_t writer;
  cr_assert_eq(pthread_create(&writer, NULL, family_writer, &f), 0);
  for (int w = 0; w < 1000 && atomic_load(&f.done) < 3 && !f.failed; w++)
    tu_sleep_ms(10);
  cr_assert_geq(atomic_load(&f.done), 3, "the writer made no progress (failed %d)", f.failed);

  char dst[4300], out[4096], err[4096];
  side_db("backup", dst, sizeof dst);
  unsigned before = atomic_load(&f.done);
  const char *backup[] = { "--json", "backup", tu_dir(), dst, "--batch", "5", NULL };
  int rc = run_cli(backup, out, sizeof out, err, sizeof err);
  unsigned after = atomic_load(&f.done);
  atomic_store(&f.stop, 1);
  TU_JOIN(writer, "the writer");
  cr_assert_eq(f.failed, 0, "the writer failed (%d)", f.failed);
  cr_assert_eq(rc, 0, "backup: %s", err);
  cr_assert_eq(json_number(out, NULL, "pairs"), FAMILY, "%s", out);
  cr_assert_gt(after, before, "the writer committed nothing while the backup ran");

  sochdb *copy = tu_open_with(dst, NULL);
  sochdb_txn *c = tu_begin(copy, SOCHDB_TXN_READONLY);
  char first[32] = "";
  for (int i = 0; i < FAMILY; i++) {
    char k[32];
    const void *v;
    size_t vl;
    snprintf(k, sizeof k, "fam-%04d", i);
    cr_assert_eq(sochdb_get(c, k, strlen(k), &v, &vl), SOCHDB_OK, "%s is missing from the backup", k);
    cr_assert_eq(vl, 200);
    if (i == 0)
      memcpy(first, v, 14);
    cr_assert(memcmp(v, first, 14) == 0, "%s holds %.14s but fam-0000 %s: not one snapshot", k, (const char *)v,
              first);
  }
  sochdb_abort(c);
  sochdb_close(copy);
  drop_side_db(dst);
}

/* An empty file at path, asserted. */
static void create_empty_file(const char *path)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
  close(fd);
}

/* ---- sochdb bench ------------------------------------------------------------------ */

/* A short run on a fresh directory: every workload reported with a positive
** rate and latencies, every value verified, and nothing left behind. */
Test(cli, bench_runs_every_workload_and_removes_its_database)
{
  char dir[4300], out[8192], err[4096];
  side_db("bench", dir, sizeof dir);
  const char *bench[] = { "--json", "bench", dir, "--seconds", "1", "--procs", "2", NULL };
  int rc = run_cli(bench, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "bench: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert_not_null(strstr(out, "\"verified\":true"), "%s", out);
  const char *names[] = { "async_put", "sync_put", "read", "scan" };
  for (int i = 0; i < 4; i++) {
    cr_assert_gt(json_number(out, names[i], "ops"), 0, "%s: %s", names[i], out);
    cr_assert_gt(json_number(out, names[i], "ops_per_sec"), 0, "%s: %s", names[i], out);
  }
  cr_assert_eq(json_number(out, "sync_put", "procs"), 2, "%s", out);
  cr_assert_eq(json_number(out, "read", "procs"), 2, "%s", out);
  /* The scan saw exactly the keys both writers committed. */
  cr_assert_eq(json_number(out, "scan", "ops"),
               json_number(out, "async_put", "ops") + json_number(out, "sync_put", "ops"), "%s", out);
  cr_assert_neq(access(dir, F_OK), 0, "bench left %s behind", dir);
  drop_side_db(dir);
}

/* A directory holding anything is refused (usage error), and left as it was. */
Test(cli, bench_refuses_a_directory_that_is_not_empty)
{
  char dir[4300], file[4400], out[4096], err[4096];
  side_db("bench-full", dir, sizeof dir);
  cr_assert_eq(mkdir(dir, 0755), 0, "mkdir %s: %s", dir, strerror(errno));
  snprintf(file, sizeof file, "%s/precious", dir);
  create_empty_file(file);
  const char *bench[] = { "bench", dir, "--seconds", "1", "--procs", "2", NULL };
  int rc = run_cli(bench, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 2, "bench into a non-empty directory: exit %d\nstderr: %s", rc, err);
  cr_assert_not_null(strstr(err, "not an empty directory"), "%s", err);
  cr_assert_eq(access(file, F_OK), 0, "bench removed %s", file);
  cr_assert_eq(out[0], '\0', "%s", out);
  tu_rmrf(dir);
}

/* ---- sochdb destroy ---------------------------------------------------------------- */

/* A database with SSTables and a WAL at side_db(suffix), closed, its daemon
** still serving: the region's path in region (size 4300), and in region_fd
** a descriptor open on it, which tells whether that very file was unlinked
** (region_unlinked) whatever file takes its name or its inode number later:
** a region is named after its directory's inode, which a directory made by
** a test running in parallel may get once the first is removed. */
static void destroyable_db(const char *suffix, char *dir, size_t n, char *region, int *region_fd)
{
  side_db(suffix, dir, n);
  sochdb_options o = tu_options(REG, MT, 10000);
  sochdb *db;
  cr_assert_eq(sochdb_open(dir, &o, &db), SOCHDB_OK, "open %s: %s", dir, sochdb_last_error());
  fill(db, NKEYS, 1);
  wait_flushed(db);
  snprintf(region, 4300, "%s", sochdb_region_path(db));
  *region_fd = open(region, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(*region_fd, 0, "open %s: %s", region, strerror(errno));
  sochdb_close(db);
  cr_assert_gt(daemon_pid(dir), 0, "no daemon serves %s", dir);
}

/* The region file open as fd was unlinked. */
static int region_unlinked(int fd)
{
  struct stat st;
  return fstat(fd, &st) == 0 && st.st_nlink == 0;
}

/* Open dir, get key i (key_of) in a read-only transaction, close: its status. */
static int get_key_of(const char *dir, const sochdb_options *o, int i)
{
  sochdb *db = tu_open_with(dir, o);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  char k[32];
  key_of(i, k);
  const void *v;
  size_t vl;
  int rc = sochdb_get(t, k, strlen(k), &v, &vl);
  sochdb_abort(t);
  sochdb_close(db);
  return rc;
}

Test(cli, destroy_removes_the_files_the_region_the_daemon_and_the_directory)
{
  char dir[4300], region[4300], out[4096], err[4096];
  int rfd;
  destroyable_db("destroy", dir, sizeof dir, region, &rfd);
  pid_t daemon = daemon_pid(dir);
  cr_assert_gt(tu_count_files(dir, ".sst"), 0, "the data was flushed into SSTables");
  const char *destroy[] = { "--json", "destroy", dir, NULL };
  int rc = run_cli(destroy, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "destroy: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert_not_null(strstr(out, "\"region_removed\":true"), "%s", out);
  cr_assert_not_null(strstr(out, "\"dir_removed\":true"), "%s", out);
  cr_assert_geq(json_number(out, NULL, "files_removed"), 6, "%s", out);
  cr_assert(region_unlinked(rfd), "the region %s is still there", region);
  cr_assert_neq(access(dir, F_OK), 0, "%s is still there", dir);
  for (int i = 0; i < 5000 && tp_alive(daemon); i++)   /* it releases LOCK just before it exits */
    tu_sleep_ms(1);
  cr_assert(!tp_alive(daemon), "the daemon %d still runs", (int)daemon);
  /* The name is free again: a new database there starts empty. */
  sochdb_options o = tu_options(REG, MT, 10000);
  cr_assert_eq(get_key_of(dir, &o, 0), SOCHDB_NOTFOUND, "a destroyed database's key is back");
  drop_side_db(dir);
}

/* DIR given as a symbolic link to the database: refused before anything is
** removed (it used to remove every file and the region, then fail on
** rmdir(LINK) and say the command had failed). */
Test(cli, destroy_refuses_a_symbolic_link_and_removes_nothing)
{
  char dir[4300], link[4400], out[4096], err[4096];
  side_db("destroy-link", dir, sizeof dir);
  sochdb_options o = tu_options(REG, MT, 10000);
  sochdb *db = tu_open_with(dir, &o);
  fill(db, 10, 1);
  sochdb_close(db);
  snprintf(link, sizeof link, "%s.link", dir);
  unlink(link);
  cr_assert_eq(symlink(dir, link), 0, "symlink: %s", strerror(errno));
  const char *destroy[] = { "destroy", link, NULL };
  int rc = run_cli(destroy, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 2, "destroy LINK: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert(strstr(err, "symbolic link") && strstr(err, "nothing was removed"), "stderr: %s", err);
  char current[4500];
  snprintf(current, sizeof current, "%s/CURRENT", dir);
  cr_assert_eq(access(current, F_OK), 0, "%s was removed", current);
  cr_assert_eq(get_key_of(dir, &o, 9), SOCHDB_OK, "the database's keys after the refusal");
  /* with a trailing slash lstat follows the link: it used to remove everything, then fail */
  snprintf(current, sizeof current, "%s//", link);
  const char *slash[] = { "destroy", current, NULL };
  rc = run_cli(slash, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 2, "destroy LINK/: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert_eq(get_key_of(dir, &o, 9), SOCHDB_OK, "the database's keys after the refusal of LINK/");
  unlink(link);
  /* DIR/. names the database: destroyed, and the command says so (rmdir of "x/." is EINVAL) */
  snprintf(current, sizeof current, "%s/.", dir);
  const char *dot[] = { "destroy", current, NULL };
  rc = run_cli(dot, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "destroy DIR/.: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert_neq(access(dir, F_OK), 0, "%s is still there", dir);
  drop_side_db(dir);
}

/* Another process attached: refused, its pid named, nothing removed; once it
** closed, destroy goes through. */
Test(cli, destroy_refuses_while_another_process_is_attached)
{
  char dir[4300], region[4300], out[4096], err[4096], pid[32];
  int rfd;
  destroyable_db("destroy-busy", dir, sizeof dir, region, &rfd);
  sochdb_options o = tu_options(REG, MT, 10000);
  sochdb *db = tu_open_with(dir, &o);
  const char *destroy[] = { "destroy", dir, NULL };
  int rc = run_cli(destroy, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 3, "destroy with a process attached: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  snprintf(pid, sizeof pid, " %d)", (int)getpid());
  cr_assert(strstr(err, "1 other process is attached") && strstr(err, pid), "the pid is not named: %s", err);
  cr_assert_gt(tu_count_files(dir, ".sst"), 0, "an SSTable was removed");
  cr_assert(!region_unlinked(rfd), "the region was removed");
  expect_all(db, NKEYS, 1, "after a refused destroy");
  sochdb_close(db);
  rc = run_cli(destroy, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "destroy once closed: exit %d\nstderr: %s", rc, err);
  cr_assert(region_unlinked(rfd), "the region %s is still there", region);
  cr_assert_neq(access(dir, F_OK), 0, "%s is still there", dir);
  drop_side_db(dir);
}

/* Files sochdb did not make are kept, and DIR with them. */
Test(cli, destroy_keeps_files_it_did_not_make)
{
  char dir[4300], region[4300], mine[4400], out[4096], err[4096];
  int rfd;
  destroyable_db("destroy-keep", dir, sizeof dir, region, &rfd);
  /* Names spelt otherwise than the library spells its own: sochdb never
  ** made them, whatever number they seem to hold. */
  static const char *const odd[] = { "notes.sst.bak", "0000007.sst", "-1.sst", "99999999999999999999.sst",
                                     "MANIFEST-0000007", "wal/00000000000000001.wal", "wal/0000000000000ABC.wal" };
  enum { NODD = sizeof odd / sizeof *odd, NTOP = 5 };   /* the first NTOP are in DIR itself */
  for (int i = 0; i < NODD; i++) {
    snprintf(mine, sizeof mine, "%s/%s", dir, odd[i]);
    create_empty_file(mine);
  }
  const char *destroy[] = { "--json", "destroy", dir, NULL };
  int rc = run_cli(destroy, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "destroy: exit %d\nstderr: %s", rc, err);
  cr_assert_eq(json_number(out, NULL, "files_kept"), NODD, "%s", out);
  cr_assert_not_null(strstr(out, "\"dir_removed\":false"), "%s", out);
  for (int i = 0; i < NODD; i++) {
    snprintf(mine, sizeof mine, "%s/%s", dir, odd[i]);
    cr_assert(access(mine, F_OK) == 0, "destroy removed %s, which it did not make", odd[i]);
  }
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  struct dirent *e;
  int left = 0;
  while ((e = readdir(d)))
    left += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  cr_assert_eq(left, NTOP + 1, "destroy left %d entries in %s, want the %d it did not make and wal/", left, dir, NTOP);
  cr_assert(region_unlinked(rfd), "the region is still there");
  drop_side_db(dir);
}

/* Not a database: refused, nothing created or removed. */
Test(cli, destroy_refuses_a_directory_that_is_not_a_database)
{
  char dir[4300], file[4400], out[4096], err[4096];
  side_db("destroy-none", dir, sizeof dir);
  cr_assert_eq(mkdir(dir, 0755), 0);
  snprintf(file, sizeof file, "%s/CURRENT", dir);
  create_empty_file(file);
  const char *destroy[] = { "destroy", dir, NULL };
  int rc = run_cli(destroy, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 3, "destroy of a non-database: exit %d\nstderr: %s", rc, err);
  cr_assert_not_null(strstr(err, "no database"), "%s", err);
  cr_assert_eq(access(file, F_OK), 0, "destroy removed %s", file);
  char lock[4400];
  snprintf(lock, sizeof lock, "%s/LOCK", dir);
  cr_assert_neq(access(lock, F_OK), 0, "destroy created %s", lock);
  tu_rmrf(dir);
}

/* Destroy the database at dir with $SOCHDB_DAEMON naming no program, so that
** a daemon it started would fail its open; asserts success. */
static void destroy_without_a_daemon(const char *dir, const char *region, int rfd)
{
  char out[4096], err[4096];
  setenv("SOCHDB_DAEMON", "/nonexistent/sochdbd", 1);
  const char *destroy[] = { "--json", "destroy", dir, NULL };
  int rc = run_cli(destroy, out, sizeof out, err, sizeof err);
  unsetenv("SOCHDB_DAEMON");
  cr_assert_eq(rc, 0, "destroy: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert_not_null(strstr(out, "\"region_removed\":true"), "%s", out);
  cr_assert(region_unlinked(rfd), "the region %s is still there", region);
  cr_assert_neq(access(dir, F_OK), 0, "%s is still there", dir);
}

/* With no daemon running, destroy starts none (one that cannot start is no
** obstacle); and a destroy cut short (CURRENT and the WAL gone, the rest
** there) is finished by running it again, region included. */
Test(cli, destroy_starts_no_daemon_and_finishes_a_destroy_cut_short)
{
  char dir[4300], region[4300], path[4400];
  int rfd;
  destroyable_db("destroy-idle", dir, sizeof dir, region, &rfd);
  tu_stop_daemon(dir);
  destroy_without_a_daemon(dir, region, rfd);

  destroyable_db("destroy-again", dir, sizeof dir, region, &rfd);
  tu_stop_daemon(dir);
  snprintf(path, sizeof path, "%s/CURRENT", dir);
  cr_assert_eq(unlink(path), 0);
  snprintf(path, sizeof path, "%s/wal", dir);
  cr_assert_eq(tu_rmrf(path), 0);
  cr_assert_gt(tu_count_files(dir, ".sst"), 0);
  destroy_without_a_daemon(dir, region, rfd);
}

/* text as a CSV file beside the test's directory, its path into path. */
static void write_csv(char *path, size_t n, const char *text)
{
  snprintf(path, n, "%s.csv", tu_dir());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
  fputs(text, f);
  cr_assert_eq(fclose(f), 0, "write %s", path);
}

/* `sochdb table`: create, load a CSV (quoted fields, an empty field as
** NULL), scan a projection with a filter, show the schema; --json output
** escapes the table's name (load printed it raw). What the tool wrote is
** read back through the API. */
Test(cli, table_create_load_scan_and_schema)
{
  const char *name = "or\"d\\ers";
  char csv[4300], out[8192], err[4096];
  write_csv(csv, sizeof csv, "id,name,price\n1,apple,1.5\n2,\"pear, big\",\n3,fig,0.25\n");
  const char *create[] = { "table", "create", tu_dir(), name, "id:int64,name:string,price:double?", NULL };
  int rc = run_cli(create, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "create: exit %d\nstderr: %s", rc, err);
  const char *load[] = { "--json", "table", "load", tu_dir(), name, csv, NULL };
  rc = run_cli(load, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "load: exit %d\nstderr: %s", rc, err);
  cr_assert(strstr(out, "{\"table\":\"or\\\"d\\\\ers\",\"rows\":3,"), "load's JSON: %s", out);
  const char *scan[] = { "--json", "table", "scan", tu_dir(), name, "--columns", "name,price", "--where", "id >= 2",
                         NULL };
  rc = run_cli(scan, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "scan: exit %d\nstderr: %s", rc, err);
  cr_assert(strstr(out, "{\"name\":\"pear, big\",\"price\":null}") && strstr(out, "{\"name\":\"fig\",\"price\":0.25}")
            && !strstr(out, "apple"), "scan's JSON: %s", out);
  const char *schema[] = { "--json", "table", "schema", tu_dir(), name, NULL };
  rc = run_cli(schema, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "schema: exit %d\nstderr: %s", rc, err);
  cr_assert(strstr(out, "{\"table\":\"or\\\"d\\\\ers\",") && strstr(out, "\"nullable\":true"), "schema: %s", out);
  unlink(csv);

  sochdb *db = tu_open(REG, MT, 10000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *tb = NULL;
  cr_assert_eq(sochdb_table_open(t, name, NULL, 0, &tb), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_value pk = { .i64 = 2 }, row[3];
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, row), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert(row[1].len == 9 && !memcmp(row[1].bytes, "pear, big", 9) && row[2].is_null, "row 2 as loaded");
  sochdb_table_close(tb);
  sochdb_abort(t);
  tu_close();
}

/* Malformed input is a usage error (exit 2), as documented: a column spec
** the engine refuses, a reserved key, a primary key over the limit (with
** its line). A subnormal double, as `table scan` prints one, loads. */
Test(cli, malformed_input_exits_2_and_subnormal_doubles_load)
{
  char out[8192], err[4096], csv[4300];
  const char *bad_spec[] = { "table", "create", tu_dir(), "s", "id:double,v:string", NULL };
  int rc = run_cli(bad_spec, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 2, "a double primary key: exit %d, stderr: %s", rc, err);
  const char *twice[] = { "table", "create", tu_dir(), "s", "id:int64,id:string", NULL };
  rc = run_cli(twice, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 2, "a column named twice: exit %d, stderr: %s", rc, err);
  const char *reserved[] = { "put", tu_dir(), "\xff\xffk", "v", NULL };
  rc = run_cli(reserved, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 2, "a reserved key: exit %d, stderr: %s", rc, err);

  const char *create[] = { "table", "create", tu_dir(), "s", "id:string,x:double", NULL };
  rc = run_cli(create, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "create: exit %d, stderr: %s", rc, err);
  static char text[6000];
  snprintf(text, sizeof text, "id,x\na,4.9406564584124654e-324\nb,1e-310\nc,0.5\n");
  write_csv(csv, sizeof csv, text);
  const char *load[] = { "table", "load", tu_dir(), "s", csv, NULL };
  rc = run_cli(load, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "subnormal doubles: exit %d, stderr: %s", rc, err);
  const char *scan[] = { "table", "scan", tu_dir(), "s", "--where", "x < 1e-300", NULL };
  rc = run_cli(scan, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "a subnormal --where: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(out, "4.9406564584124654e-324") && strstr(out, "e-311") && !strstr(out, "0.5"), "scan: %s", out);

  size_t n = (size_t)snprintf(text, sizeof text, "id,x\nd,1\n");
  memset(text + n, 'k', 5000);
  snprintf(text + n + 5000, sizeof text - n - 5000, ",2\n");
  write_csv(csv, sizeof csv, text);
  rc = run_cli(load, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 2, "a primary key of 5000 bytes: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, ":3:"), "the line is not named: %s", err);
  unlink(csv);
}

/* After --, a VALUE of - is the one-byte value "-" (the help's advice for
** arguments that start with '-'), not standard input; and table create
** --json prints its summary object, as every other command does. */
Test(cli, a_dash_after_double_dash_is_a_value_and_create_speaks_json)
{
  char out[4096], err[4096], line[9000];
  snprintf(line, sizeof line, "echo from-stdin | \"$CLI\" put '%s' -- -k - > /dev/null", tu_dir());
  cr_assert_eq(run_sh(line), 0, "%s", line);
  const char *get[] = { "get", tu_dir(), "--", "-k", NULL };
  int rc = run_cli(get, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "get -- -k: exit %d, stderr: %s", rc, err);
  cr_assert_str_eq(out, "-\n", "the value put after --");
  const char *create[] = { "--json", "table", "create", tu_dir(), "j", "id:int64,v:string", NULL };
  rc = run_cli(create, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "create: exit %d, stderr: %s", rc, err);
  cr_assert_str_eq(out, "{\"table\":\"j\",\"columns\":2}\n", "table create --json");
}

/* Blank lines are no rows (a trailing one made a row of key ""), CRLF ends
** a line, and any other CR is the field's byte (one before a comma was
** dropped). */
Test(cli, table_load_skips_blank_lines_and_keeps_a_cr_inside_a_field)
{
  char out[4096], err[4096], csv[4300];
  const char *create[] = { "table", "create", tu_dir(), "t", "id:string,v:string?", NULL };
  int rc = run_cli(create, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "create: exit %d, stderr: %s", rc, err);
  write_csv(csv, sizeof csv, "id,v\r\n\r\na,1\r\nb\r,2\n\rc,3\n\n\n");
  const char *load[] = { "--json", "table", "load", tu_dir(), "t", csv, NULL };
  rc = run_cli(load, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "load: exit %d, stderr: %s", rc, err);
  cr_assert_eq(json_number(out, NULL, "rows"), 3, "%s", out);
  unlink(csv);
  sochdb *db = tu_open(REG, MT, 10000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *tb = NULL;
  cr_assert_eq(sochdb_table_open(t, "t", NULL, 0, &tb), SOCHDB_OK, "%s", sochdb_last_error());
  const char *keys[] = { "a", "b\r", "\rc" }, *vals[] = { "1", "2", "3" };
  for (int i = 0; i < 3; i++) {
    sochdb_value pk = { .bytes = keys[i], .len = strlen(keys[i]) }, row[2];
    cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, row), SOCHDB_OK, "row %d: %s", i, sochdb_last_error());
    cr_assert(row[1].len == 1 && !memcmp(row[1].bytes, vals[i], 1), "row %d's value", i);
  }
  sochdb_value empty = { .bytes = "", .len = 0 }, row[2];
  cr_assert_eq(sochdb_row_get(t, tb, &empty, NULL, 0, row), SOCHDB_NOTFOUND, "a row made of a blank line");
  sochdb_table_close(tb);
  sochdb_abort(t);
  tu_close();
}

/* ---- tables and pipes for the load tests ------------------------------------------- */

/* Table t (id int64 primary key, v string) in the test's database, by the
** tool; returns 0 (its exit status, asserted). */
static int create_table_t(void)
{
  char out[4096], err[4096];
  const char *create[] = { "table", "create", tu_dir(), "t", "id:int64,v:string", NULL };
  int rc = run_cli(create, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "create: exit %d\nstderr: %s", rc, err);
  return rc;
}

/* A FIFO beside the test's directory, its path into path (n bytes): a
** file that cannot seek back, as a pipe. */
static void make_fifo(char *path, size_t n)
{
  snprintf(path, n, "%s.fifo", tu_dir());
  unlink(path);
  cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo %s: %s", path, strerror(errno));
}

/* A batch whose commit conflicts is read again and committed, also from a
** FILE that cannot seek back (a pipe): none of its rows is lost. The loader
** (batches of 2) holds its first batch open while it waits for the pipe's
** next byte; the test commits pk 1 meanwhile, so that commit conflicts. */
Test(cli, table_load_from_a_pipe_retries_a_conflicting_batch_whole)
{
  char fifo[4300], out[8192], err[4096];
  make_fifo(fifo, sizeof fifo);
  int rc = create_table_t();
  const char *load[] = { "table", "load", tu_dir(), "t", fifo, "--batch", "2", NULL };
  pid_t pid = start_cli(load);
  int fd = open(fifo, O_WRONLY);   /* once the loader opened it */
  cr_assert_geq(fd, 0, "open %s: %s", fifo, strerror(errno));
  const char first[] = "id,v\n1,csv\n2,csv\n";
  cr_assert_eq(write(fd, first, strlen(first)), (ssize_t)strlen(first));
  tu_sleep_ms(2000);               /* the loader reads both rows, then waits for more */

  sochdb *db = tu_open(REG, MT, 10000);
  sochdb_txn *t = tu_begin(db, 0);
  sochdb_table *tb = NULL;
  cr_assert_eq(sochdb_table_open(t, "t", NULL, 0, &tb), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_value row[2] = { { .i64 = 1 }, { .bytes = "test", .len = 4 } };
  cr_assert_eq(sochdb_row_put(t, tb, row), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(sochdb_commit(t, SOCHDB_SYNC), SOCHDB_OK, "%s", sochdb_last_error());

  const char rest[] = "3,csv\n";
  cr_assert_eq(write(fd, rest, strlen(rest)), (ssize_t)strlen(rest));
  close(fd);
  rc = finish_cli(pid, out, sizeof out, err, sizeof err);
  unlink(fifo);
  cr_assert_eq(rc, 0, "load: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert(strstr(out, "loaded 3 rows"), "load: %s", out);

  t = tu_begin(db, SOCHDB_TXN_READONLY);
  for (int64_t id = 1; id <= 3; id++) {
    sochdb_value pk = { .i64 = id }, got[2];
    rc = sochdb_row_get(t, tb, &pk, NULL, 0, got);
    cr_assert_eq(rc, SOCHDB_OK, "row %lld of the CSV is missing: %s", (long long)id, sochdb_strerror(rc));
    cr_assert(got[1].len == 3 && !memcmp(got[1].bytes, "csv", 3), "row %lld holds '%.*s', not the CSV's",
              (long long)id, (int)got[1].len, (const char *)got[1].bytes);
  }
  sochdb_abort(t);
  sochdb_table_close(tb);
  tu_close();
}

/* FILE - is standard input, here a pipe: its rows load, and a bad one is
** named by "standard input" and its line. */
Test(cli, table_load_reads_standard_input_for_a_dash)
{
  char line[9000], errp[4400], outp[4400], out[4096], err[4096];
  create_table_t();
  snprintf(errp, sizeof errp, "%s.err", tu_dir());
  snprintf(outp, sizeof outp, "%s.out", tu_dir());
  snprintf(line, sizeof line, "printf 'id,v\\n1,a\\n2,b\\n' | \"$CLI\" table load '%s' t - >'%s' 2>'%s'", tu_dir(),
           outp, errp);
  int rc = run_sh(line);
  slurp(outp, out, sizeof out);
  slurp(errp, err, sizeof err);
  cr_assert_eq(rc, 0, "load from a pipe on stdin: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert(strstr(out, "loaded 2 rows"), "load: %s", out);
  snprintf(line, sizeof line, "printf 'id,v\\n3,c\\nx,d\\n' | \"$CLI\" table load '%s' t - >'%s' 2>'%s'", tu_dir(),
           outp, errp);
  rc = run_sh(line);
  slurp(errp, err, sizeof err);
  unlink(outp);
  unlink(errp);
  cr_assert_eq(rc, 2, "a bad row on stdin: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "standard input:3: 'x' is not a int64"), "stderr: %s", err);
  sochdb *db = tu_open(REG, MT, 10000);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *tb = NULL;
  cr_assert_eq(sochdb_table_open(t, "t", NULL, 0, &tb), SOCHDB_OK, "%s", sochdb_last_error());
  for (int64_t id = 1; id <= 2; id++) {
    sochdb_value pk = { .i64 = id }, got[2];
    cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, got), SOCHDB_OK, "row %lld", (long long)id);
    cr_assert(got[1].len == 1 && ((const char *)got[1].bytes)[0] == "ab"[id - 1], "row %lld's value", (long long)id);
  }
  sochdb_table_close(tb);
  sochdb_abort(t);
  tu_close();
}

/* RFC 4180: the last record may end without a line break. */
Test(cli, table_load_takes_a_last_record_without_a_line_break)
{
  char csv[4300], out[8192], err[4096];
  write_csv(csv, sizeof csv, "id,v\n1,a\n2,\"b\"");
  int rc = create_table_t();
  const char *load[] = { "table", "load", tu_dir(), "t", csv, NULL };
  rc = run_cli(load, out, sizeof out, err, sizeof err);
  unlink(csv);
  cr_assert_eq(rc, 0, "load: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert(strstr(out, "loaded 2 rows"), "load: %s", out);
}

/* A record is read into memory whole, so it has a bound: a row is one value
** of at most SOCHDB_MAX_VALUE bytes. A file with no line break (/dev/zero,
** here 17 MiB of one field) used to be read until memory ran out, then
** reported as "no header line". Each failure says what it is. */
Test(cli, table_load_bounds_a_record_and_says_what_is_wrong)
{
  char csv[4300], out[8192], err[4096];
  snprintf(csv, sizeof csv, "%s.csv", tu_dir());
  int rc = create_table_t();
  const char *load[] = { "table", "load", tu_dir(), "t", csv, NULL };
  static const struct { const char *head; size_t fill; const char *want; } cases[] = {
    { "id,v\n1,", 17u << 20, ":2: a record of more than 16 MiB" },
    { "", 17u << 20, ":1: a record of more than 16 MiB" },
    { "id,v\n1,\"abc\n", 0, ":2: a quoted field is not closed" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    FILE *f = fopen(csv, "w");
    cr_assert_not_null(f);
    fputs(cases[i].head, f);
    for (size_t n = 0; n < cases[i].fill; n++)
      putc('x', f);
    fclose(f);
    rc = run_cli(load, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 2, "case %zu: exit %d\nstderr: %s", i, rc, err);
    cr_assert(strstr(err, cases[i].want), "case %zu: stderr: %s", i, err);
  }
  unlink(csv);
}

/* The table commands' numbers are read as the key-value commands' are:
** decimal, the whole string, in range. sscanf took --limit -1 as every row,
** --limit 2x as 2 and --batch 1e3 as 1. */
Test(cli, table_options_refuse_numbers_that_are_not_whole_decimals)
{
  char out[8192], err[4096];
  int rc = create_table_t();
  static const char *const bad[][8] = {
    { "table", "scan", NULL, "t", "--limit", "-1", NULL },
    { "table", "scan", NULL, "t", "--limit", "2x", NULL },
    { "table", "load", NULL, "t", "/dev/null", "--batch", "1e3", NULL },
    { "table", "load", NULL, "t", "/dev/null", "--batch", "0", NULL },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *argv[8];
    memcpy(argv, bad[i], sizeof argv);
    argv[2] = tu_dir();
    rc = run_cli(argv, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 2, "%s %s %s: exit %d\nstdout: %s\nstderr: %s", argv[1], argv[4], argv[5], rc, out, err);
    cr_assert(strstr(err, "wants"), "%s %s: stderr: %s", argv[1], argv[4], err);
  }
}

/* load from a stream that is not a dump: refused before the database is
** opened, so a missing DIR is not created (it used to be made, with its
** daemon, and then the input refused). */
Test(cli, load_of_a_stream_that_is_not_a_dump_creates_nothing)
{
  char dir[4300], fifo[4300], out[4096], err[4096];
  side_db("load-garbage", dir, sizeof dir);
  make_fifo(fifo, sizeof fifo);
  const char *load[] = { "load", dir, fifo, NULL };
  pid_t pid = start_cli(load);
  int fd = open(fifo, O_WRONLY);
  cr_assert_geq(fd, 0, "open %s: %s", fifo, strerror(errno));
  const char garbage[] = "this is no dump\n";
  cr_assert_eq(write(fd, garbage, strlen(garbage)), (ssize_t)strlen(garbage));
  close(fd);
  int rc = finish_cli(pid, out, sizeof out, err, sizeof err);
  unlink(fifo);
  cr_assert_eq(rc, 2, "load: exit %d\nstderr: %s", rc, err);
  cr_assert(strstr(err, "is not a sochdb dump"), "stderr: %s", err);
  cr_assert_neq(access(dir, F_OK), 0, "%s was created", dir);
}

/* ---- a file size limit ---------------------------------------------------------- */

/* Under a `ulimit -f` smaller than the dump, the tool was killed by SIGXFSZ
** half-way through writing it: no message, the shell's "File size limit
** exceeded". The write fails with EFBIG instead: exit 3 and a message. */
Test(cli, a_dump_past_the_file_size_limit_fails_with_a_message)
{
  sochdb *db = tu_open(16u << 20, 1u << 20, 0);
  static char v[4096];
  for (int i = 0; i < 64; i++) {   /* 256 KiB of pairs */
    char k[32];
    snprintf(k, sizeof k, "limit-%03d", i);
    memset(v, 'a' + i % 26, sizeof v);
    sochdb_txn *t = tu_begin(db, 0);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, sizeof v), SOCHDB_OK);
    cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK);
  }
  tu_close();
  char path[4300], out[4096], err[4096];
  snprintf(path, sizeof path, "%s.dump", tu_dir());
  struct rlimit old, rl;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
  rl = old;
  rl.rlim_cur = 64u << 10;   /* the soft limit only: the test raises it back */
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0, "setrlimit: %s", strerror(errno));
  pid_t pid = start_cli((const char *const[]){ "dump", tu_dir(), path, NULL });
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0, "setrlimit: %s", strerror(errno));
  int status = finish_cli(pid, out, sizeof out, err, sizeof err);
  unlink(path);
  cr_assert_eq(status, 3, "dump past a 64 KiB file size limit exited %d\nstderr: %s", status, err);
  cr_assert(strstr(err, "File too large"), "no EFBIG in the message: %s", err);
}

/* ---- closed standard descriptors ------------------------------------------------ */

/* With stdout or stderr closed (`>&-`, `2>&-`, a parent that closed them)
** the library's first open took the free number: the shared region became
** fd 1, and the dump, or the "not found" message, was written over the
** region's header. The dump said it succeeded, and every later open failed
** with "not a sochdb region (bad magic)" until the daemon was killed and the
** region removed by hand. Now a closed stdout fails the dump (exit 3) and the
** database stays readable. */
Test(cli, a_closed_stdout_or_stderr_is_not_written_into_the_database)
{
  tu_open(REG, MT, 10000);
  tu_commit_kv(tu_db, "a", "1", SOCHDB_SYNC);
  tu_close();   /* the daemon keeps the region; the tool attaches to it */
  char line[9000], out[4096], err[4096];
  snprintf(line, sizeof line, "\"$CLI\" dump '%s' >&- 2>/dev/null", tu_dir());
  int rc = run_sh(line);
  cr_assert_eq(rc, 3, "dump to a closed stdout: exit %d, want 3 (the dump went somewhere else)", rc);
  snprintf(line, sizeof line, "\"$CLI\" get '%s' absent 2>&-", tu_dir());
  rc = run_sh(line);
  cr_assert_eq(rc, 1, "get of an absent key with stderr closed: exit %d", rc);
  const char *get[] = { "get", tu_dir(), "a", NULL };
  rc = run_cli(get, out, sizeof out, err, sizeof err);
  cr_assert_eq(rc, 0, "the database is broken afterwards: exit %d, stderr: %s", rc, err);
  cr_assert_str_eq(out, "1\n");
}

/* ---- a dump that replaces a dump -------------------------------------------------- */

/* `sochdb dump DIR app.dump` every night over yesterday's: the file was
** truncated first and written in place, so a dump that failed half-way (a
** full disk; here the file size limit) had destroyed the good dump and left
** a truncated one under its name. It is written beside FILE and renamed over
** it once complete and synced: a failure leaves FILE as it was, and no
** temporary file. */
Test(cli, a_dump_that_fails_keeps_the_dump_it_was_to_replace)
{
  sochdb *db = tu_open(16u << 20, 1u << 20, 0);
  tu_commit_kv(db, "a", "1", SOCHDB_SYNC);
  char path[4300], copy[4400], out[4096], err[4096];
  snprintf(path, sizeof path, "%s.dump", tu_dir());
  snprintf(copy, sizeof copy, "%s.good", path);
  const char *good[] = { "dump", tu_dir(), path, NULL };
  cr_assert_eq(run_cli(good, out, sizeof out, err, sizeof err), 0, "the first dump: %s", err);
  char line[14000];
  snprintf(line, sizeof line, "cp '%s' '%s'", path, copy);
  cr_assert_eq(run_sh(line), 0);
  static char v[4096];
  for (int i = 0; i < 64; i++) {   /* 256 KiB of pairs */
    char k[32];
    snprintf(k, sizeof k, "limit-%03d", i);
    memset(v, 'a' + i % 26, sizeof v);
    sochdb_txn *t = tu_begin(db, 0);
    cr_assert_eq(sochdb_put(t, k, strlen(k), v, sizeof v), SOCHDB_OK);
    cr_assert_eq(sochdb_commit(t, SOCHDB_ASYNC), SOCHDB_OK);
  }
  tu_close();
  struct rlimit old, rl;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
  rl = old;
  rl.rlim_cur = 64u << 10;
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0, "setrlimit: %s", strerror(errno));
  pid_t pid = start_cli(good);
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0, "setrlimit: %s", strerror(errno));
  int status = finish_cli(pid, out, sizeof out, err, sizeof err);
  int same = files_equal(path, copy);
  snprintf(line, sizeof line, "ls '%s'.tmp-* >/dev/null 2>&1", path);
  int leftovers = run_sh(line) == 0;
  snprintf(line, sizeof line, "rm -f '%s' '%s' '%s'.tmp-*", path, copy, path);
  run_sh(line);
  cr_assert_eq(status, 3, "dump past the file size limit exited %d\nstderr: %s", status, err);
  cr_assert(same, "the failed dump destroyed the previous dump at its path");
  cr_assert(!leftovers, "the failed dump left its temporary file");
}

/* ---- a backup is a closed set of files ------------------------------------------- */

/* `sochdb backup DIR DEST && tar czf dest.tgz DEST`: DEST's daemon stayed
** for its idle timeout, flushing what the backup had written, and a copy
** made meanwhile missed an SSTable (the MANIFEST named 000003.sst, the copy
** held 000003.sst.tmp or nothing: "data corruption detected"). Leaving
** idle, the daemon kept DEST's region, whose memtable pages stayed in
** /dev/shm until the next reboot, one region per nightly backup. The backup
** now stops DEST's daemon (everything published is written to the WAL
** first) and removes the region before it returns. */
Test(cli, a_finished_backup_has_no_daemon_and_no_region)
{
  sochdb *src = tu_open(REG, MT, 10000);
  fill(src, 2000, 1);
  char dst[4300], region[4300], out[4096], err[4096];
  side_db("backup-closed", dst, sizeof dst);
  const char *backup[] = { "backup", tu_dir(), dst, NULL };
  cr_assert_eq(run_cli(backup, out, sizeof out, err, sizeof err), 0, "backup: %s", err);
  pid_t daemon = daemon_pid(dst);
  for (int i = 0; i < 2000 && daemon > 0 && tp_alive(daemon); i++)   /* LOCK is released just before the exit */
    tu_sleep_ms(1);
  cr_assert(daemon <= 0 || !tp_alive(daemon), "DEST's daemon %d still runs after the backup returned", (int)daemon);
  cr_assert_eq(shm_region_path(dst, region, sizeof region), SOCHDB_OK);
  cr_assert_neq(access(region, F_OK), 0, "DEST's region %s is left in memory", region);
  const char *check[] = { "check", dst, NULL };
  cr_assert_eq(run_cli(check, out, sizeof out, err, sizeof err), 0, "check of the backup: %s%s", out, err);
  sochdb *copy = tu_open_with(dst, NULL);
  expect_all(copy, 2000, 1, "the backup");
  sochdb_close(copy);
  drop_side_db(dst);
}

/* A backup is the whole database: its columnar tables (schemas and rows,
** keys from 0xFF 0xFF on, which iterators leave out) were not copied, so a
** restored database had none. */
Test(cli, a_backup_copies_the_columnar_tables)
{
  char csv[4300], out[8192], err[4096], dst[4300];
  write_csv(csv, sizeof csv, "id,name\n1,apple\n2,pear\n3,fig\n");
  const char *create[] = { "table", "create", tu_dir(), "fruit", "id:int64,name:string", NULL };
  cr_assert_eq(run_cli(create, out, sizeof out, err, sizeof err), 0, "create: %s", err);
  const char *load[] = { "table", "load", tu_dir(), "fruit", csv, NULL };
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 0, "load: %s", err);
  unlink(csv);
  sochdb *src = tu_open(REG, MT, 10000);
  fill(src, 500, 1);
  side_db("backup-tables", dst, sizeof dst);
  const char *backup[] = { "backup", tu_dir(), dst, NULL };
  cr_assert_eq(run_cli(backup, out, sizeof out, err, sizeof err), 0, "backup: %s", err);
  const char *check[] = { "check", dst, NULL };
  cr_assert_eq(run_cli(check, out, sizeof out, err, sizeof err), 0, "check of the backup: %s%s", out, err);
  const char *scan[] = { "--json", "table", "scan", dst, "fruit", NULL };
  cr_assert_eq(run_cli(scan, out, sizeof out, err, sizeof err), 0, "scan of the backup's table: %s", err);
  cr_assert(strstr(out, "\"apple\"") && strstr(out, "\"pear\"") && strstr(out, "\"fig\""), "the backup's rows: %s",
            out);
  sochdb *copy = tu_open_with(dst, NULL);
  expect_all(copy, 500, 1, "the backup's pairs");
  sochdb_close(copy);
  drop_side_db(dst);
}

/* ---- a dump of a newer format ---------------------------------------------------- */

/* A dump made by a newer sochdb ("SOCHDB-DUMP 2") was refused as "not a
** sochdb dump", which sends the operator looking for a damaged file. It is
** refused (exit 2, nothing created) naming the version it has. */
Test(cli, load_names_the_version_of_a_newer_dump)
{
  char dir[4300], path[4300], out[4096], err[4096];
  side_db("load-v3", dir, sizeof dir);
  snprintf(path, sizeof path, "%s.v2dump", tu_dir());
  static const char v3[] = "SOCHDB-DUMP 3\nR\0\0\0\1a\0\0\0\1" "1E\0\0\0\0\0\0\0\1";
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fwrite(v3, 1, sizeof v3 - 1, f);
  fclose(f);
  const char *load[] = { "load", dir, path, NULL };
  int rc = run_cli(load, out, sizeof out, err, sizeof err);
  unlink(path);
  cr_assert_eq(rc, 2, "load of a version 3 dump: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "version 3"), "the message does not name the dump's version: %s", err);
  cr_assert_neq(access(dir, F_OK), 0, "%s was created", dir);
}

/* ---- table names in text output -------------------------------------------------- */

/* Column and table names are bytes the table's creator chose; `table scan`
** and `table schema` printed them raw, so a name holding ESC sent a
** terminal escape sequence to whoever ran them, and one holding a tab split
** the header into more columns than the rows have. They are escaped as keys
** and fields are. */
Test(cli, table_names_are_escaped_in_text_output)
{
  tu_open(REG, MT, 10000);
  tu_close();
  char out[4096], err[4096];
  const char *create[] = { "table", "create", tu_dir(), "t\x1b[31m", "id:int64,a\tb\x1b]0;x\x07:string?", NULL };
  cr_assert_eq(run_cli(create, out, sizeof out, err, sizeof err), 0, "create: %s", err);
  const char *scan[] = { "table", "scan", tu_dir(), "t\x1b[31m", NULL };
  cr_assert_eq(run_cli(scan, out, sizeof out, err, sizeof err), 0, "scan: %s", err);
  cr_assert_null(strchr(out, '\x1b'), "an ESC byte in the scan's output: %s", out);
  cr_assert_str_eq(out, "id\ta\\tb\\x1b]0;x\\x07\n");
  const char *schema[] = { "table", "schema", tu_dir(), "t\x1b[31m", NULL };
  cr_assert_eq(run_cli(schema, out, sizeof out, err, sizeof err), 0, "schema: %s", err);
  cr_assert_null(strchr(out, '\x1b'), "an ESC byte in the schema's output: %s", out);
  cr_assert_null(strchr(out, '\t'), "a tab in the schema's output: %s", out);
}

/* ---- a backup of rows in columnar SSTable blocks ------------------------------ */

/* Row i of table "shapes": id i; name NULL every 3rd, empty every 5th; blob
** of 0..7000 bytes (one of 300 KiB), NULL every 7th; score (added later)
** only for rows written after add_column: NaN, -0.0 or i/3. */
static void shapes_row(int i, int with_score, sochdb_value *v, uint8_t *blob)
{
  memset(v, 0, 4 * sizeof *v);
  v[0].i64 = i;
  static char names[64][32];
  snprintf(names[i % 64], sizeof names[0], "name-%d", i);
  v[1].is_null = i % 3 == 0;
  v[1].bytes = names[i % 64];
  v[1].len = i % 5 == 0 ? 0 : strlen(names[i % 64]);
  size_t bl = i == 77 ? 300u << 10 : (size_t)(i * 37 % 7001);
  for (size_t j = 0; j < bl; j++)
    blob[j] = (uint8_t)(i * 7 + j);
  v[2].is_null = i % 7 == 0;
  v[2].bytes = blob;
  v[2].len = bl;
  v[3].is_null = !with_score || i % 11 == 0;
  v[3].f64 = i % 4 == 0 ? -0.0 : i % 4 == 1 ? (double)NAN : i / 3.0;
}

static void shapes_put(sochdb *db, int from, int to, int with_score)
{
  static uint8_t blob[300u << 10];
  sochdb_txn *t = tu_begin(db, 0);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "shapes", NULL, 0, &tb), SOCHDB_OK, "open: %s", sochdb_last_error());
  for (int i = from; i < to; i++) {
    sochdb_value v[4];
    shapes_row(i, with_score, v, blob);
    cr_assert_eq(sochdb_row_put(t, tb, v), SOCHDB_OK, "row %d: %s", i, sochdb_last_error());
  }
  tu_commit(t, SOCHDB_SYNC, "rows");
  sochdb_table_close(tb);
}

static int values_eq(unsigned type, const sochdb_value *a, const sochdb_value *b)
{
  if (a->is_null || b->is_null)
    return a->is_null == b->is_null;
  if (type == SOCHDB_INT64)
    return a->i64 == b->i64;
  if (type == SOCHDB_DOUBLE)
    return memcmp(&a->f64, &b->f64, 8) == 0;
  return a->len == b->len && (a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
}

/* Table "shapes" of 720 rows of every shape, rows 0..649 in columnar SSTable
** blocks (half of them written before its fourth column), 650..719 in the
** memtable. */
static void shapes_fill(sochdb *src)
{
  sochdb_txn *t = tu_begin(src, 0);
  sochdb_column cols[3] = { { "id", SOCHDB_INT64, 0 }, { "name", SOCHDB_STRING, SOCHDB_NULLABLE },
                            { "blob", SOCHDB_BYTES, SOCHDB_NULLABLE } };
  cr_assert_eq(sochdb_table_create(t, "shapes", cols, 3), SOCHDB_OK, "%s", sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "create");
  shapes_put(src, 0, 400, 0);
  t = tu_begin(src, 0);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "shapes", NULL, 0, &tb), SOCHDB_OK);
  sochdb_column score = { "score", SOCHDB_DOUBLE, SOCHDB_NULLABLE };
  cr_assert_eq(sochdb_table_add_column(t, tb, &score), SOCHDB_OK, "%s", sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "add_column");
  sochdb_table_close(tb);
  shapes_put(src, 400, 700, 1);
  tu_full_compaction(src);          /* every row in columnar SSTable blocks */
  cr_assert_gt(tu_stats(src).sst_files, 0u, "rows in SSTables");
  shapes_put(src, 650, 720, 1);     /* and some in the memtable */
}

/* copy has src's table "shapes" (shapes_fill), the same rows read through
** the table API, and every key, reserved or not, with the same value. */
static void expect_same_shapes(sochdb *src, sochdb *copy)
{
  sochdb_txn *ts = tu_begin(src, SOCHDB_TXN_READONLY), *td = tu_begin(copy, SOCHDB_TXN_READONLY);
  sochdb_table *a, *b;
  cr_assert_eq(sochdb_table_open(ts, "shapes", NULL, 0, &a), SOCHDB_OK);
  cr_assert_eq(sochdb_table_open(td, "shapes", NULL, 0, &b), SOCHDB_OK, "%s", sochdb_last_error());
  const sochdb_column *ca, *cb;
  size_t na, nb;
  uint32_t ida, idb;
  sochdb_table_schema(a, &ca, &na, &ida);
  sochdb_table_schema(b, &cb, &nb, &idb);
  cr_assert_eq(na, nb);
  cr_assert_eq(ida, idb);
  for (int i = 0; i < 720; i++) {
    sochdb_value pk = { .i64 = i }, va[4], vb[4];
    cr_assert_eq(sochdb_row_get(ts, a, &pk, NULL, 0, va), SOCHDB_OK, "src row %d", i);
    cr_assert_eq(sochdb_row_get(td, b, &pk, NULL, 0, vb), SOCHDB_OK, "dest row %d: %s", i, sochdb_last_error());
    for (unsigned c = 0; c < 4; c++)
      cr_assert(values_eq(ca[c].type, &va[c], &vb[c]), "row %d column %u differs", i, c);
  }
  /* every reserved key and its value, byte for byte */
  sochdb_iter *ia, *ib;
  cr_assert_eq(sdb_iter_open(ts, NULL, 0, NULL, 0, NULL, &ia), SOCHDB_OK);
  cr_assert_eq(sdb_iter_open(td, NULL, 0, NULL, 0, NULL, &ib), SOCHDB_OK);
  const void *k1, *v1, *k2, *v2;
  size_t kl1, vl1, kl2, vl2;
  int n = 0, rc1, rc2;
  while ((rc1 = sochdb_iter_next(ia, &k1, &kl1, &v1, &vl1)) == SOCHDB_OK) {
    rc2 = sochdb_iter_next(ib, &k2, &kl2, &v2, &vl2);
    cr_assert_eq(rc2, SOCHDB_OK, "dest ends at key %d", n);
    cr_assert(kl1 == kl2 && memcmp(k1, k2, kl1) == 0, "key %d differs", n);
    cr_assert(vl1 == vl2 && memcmp(v1, v2, vl1) == 0, "key %d: value differs (%zu vs %zu bytes)", n, vl1, vl2);
    n++;
  }
  cr_assert_eq(sochdb_iter_next(ib, &k2, &kl2, &v2, &vl2), SOCHDB_NOTFOUND, "dest has more keys");
  sochdb_iter_close(ia);
  sochdb_iter_close(ib);
  sochdb_table_close(a);
  sochdb_table_close(b);
  sochdb_commit(ts, 0);
  sochdb_commit(td, 0);
}

/* dst, a copy of src made by the tool, passes check and has src's table
** and keys (expect_same_shapes). */
static void expect_a_whole_copy(sochdb *src, const char *dst)
{
  char out[8192], err[4096];
  const char *check[] = { "check", dst, NULL };
  cr_assert_eq(run_cli(check, out, sizeof out, err, sizeof err), 0, "check of the copy: %s%s", out, err);
  sochdb *copy = tu_open_with(dst, NULL);
  expect_same_shapes(src, copy);
  sochdb_close(copy);
}

/* The backup reads rows through the plain iterator (no projection), which
** rebuilds each row of a columnar block from its column segments: rows of
** every shape (written before an add_column, NULLs, empty strings, NaN and
** -0.0, a 300 KiB value) come back byte for byte, in SSTables and in the
** memtable, and DEST passes check. */
Test(cli, a_backup_of_rows_in_columnar_blocks_is_byte_for_byte)
{
  sochdb *src = tu_open(REG, MT, 10000);
  shapes_fill(src);
  char out[8192], err[4096], dst[4300];
  side_db("backup-shapes", dst, sizeof dst);
  const char *backup[] = { "backup", tu_dir(), dst, NULL };
  cr_assert_eq(run_cli(backup, out, sizeof out, err, sizeof err), 0, "backup: %s", err);
  expect_a_whole_copy(src, dst);
  drop_side_db(dst);
}

/* dump wrote the key-value pairs only, so a dump and load lost every
** columnar table without a word. A snapshot holding tables is dumped as
** version 2, its tables' keys as 'T' records after the pairs, and load puts
** them back as they are (ids and schemas), only into a database that has no
** table yet or only the dump's own; a dump of the copy is the same file. */
Test(cli, dump_and_load_carry_the_columnar_tables)
{
  sochdb *src = tu_open(REG, MT, 10000);
  shapes_fill(src);
  sochdb_txn *t = tu_begin(src, 0);
  cr_assert_eq(sochdb_put(t, "a", 1, "1", 1), SOCHDB_OK);
  cr_assert_eq(sochdb_put(t, "\xff\xfe", 2, "below the tables", 16), SOCHDB_OK);
  tu_commit(t, SOCHDB_SYNC, "pairs");

  char out[8192], err[4096], dst[4300], d1[4300], d2[4300];
  side_db("load-shapes", dst, sizeof dst);
  side_db("shapes1", d1, sizeof d1);
  side_db("shapes2", d2, sizeof d2);
  const char *dump1[] = { "dump", tu_dir(), d1, NULL };
  cr_assert_eq(run_cli(dump1, out, sizeof out, err, sizeof err), 0, "dump: %s", err);
  cr_assert(starts_with(d1, "SOCHDB-DUMP 2\n"), "a dump with tables is not version 2");
  const char *load[] = { "load", dst, d1, "--batch", "100", NULL };
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 0, "load: %s", err);
  expect_a_whole_copy(src, dst);
  const char *dump2[] = { "dump", dst, d2, NULL };
  cr_assert_eq(run_cli(dump2, out, sizeof out, err, sizeof err), 0, "dump of the copy: %s", err);
  cr_assert(files_equal(d1, d2), "the dump of the loaded copy differs from the original dump");

  /* again into the copy, whose tables are the dump's: loaded, nothing changes */
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 0, "a second load: %s", err);
  cr_assert_eq(run_cli(dump2, out, sizeof out, err, sizeof err), 0, "dump of the copy: %s", err);
  cr_assert(files_equal(d1, d2), "a second load of the dump changed the copy");

  /* a row deleted from the copy: the comparison passes over the dump's row, the load puts it back */
  sochdb *copy = tu_open_with(dst, NULL);
  t = tu_begin(copy, 0);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "shapes", NULL, 0, &tb), SOCHDB_OK);
  sochdb_value pk5 = { .i64 = 5 }, got[4];
  cr_assert_eq(sochdb_row_delete(t, tb, &pk5), SOCHDB_OK);
  tu_commit(t, SOCHDB_SYNC, "a row deleted");
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 0, "a load over a deleted row: %s", err);
  t = tu_begin(copy, SOCHDB_TXN_READONLY);
  cr_assert_eq(sochdb_row_get(t, tb, &pk5, NULL, 0, got), SOCHDB_OK, "the load did not put the row back");
  sochdb_abort(t);

  /* a row the dump holds otherwise: refused, nothing committed */
  t = tu_begin(copy, 0);
  sochdb_value row[4] = { { .i64 = 3 }, { .bytes = "changed", .len = 7 }, { .is_null = 1 }, { .is_null = 1 } };
  cr_assert_eq(sochdb_row_put(t, tb, row), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_table_close(tb);
  tu_commit(t, SOCHDB_SYNC, "a row changed");
  uint64_t last = tu_stats(copy).last_commit_seq;
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 2, "a load over a changed row: %s", err);
  cr_assert(strstr(err, "already has tables") && strstr(err, "a row of table id 1 differs"),
            "the refusal does not say why: %s", err);
  cr_assert_eq(tu_stats(copy).last_commit_seq, last, "the refused load committed something");
  sochdb_close(copy);
  unlink(d1);
  unlink(d2);
  drop_side_db(dst);
}

/* ---- keys an argument cannot carry: --escaped ------------------------------------ */

/* A key holding 0x00 could not be typed at all (argv strings end there),
** so get and del could not reach it. With --escaped every argument is read
** in the escapes scan prints, so each line of scan's output names its key
** exactly, and a bad escape is refused rather than taken for another key. */
Test(cli, escaped_arguments_reach_keys_an_argument_cannot_carry)
{
  static const struct { const char *k; size_t kl; const char *shown; } keys[] = {
    { "k\0a", 3, "k\\x00a" }, { "k\0\0", 3, "k\\x00\\x00" }, { "k\t\n\\", 4, "k\\t\\n\\\\" },
    { "k\xff\x01", 3, "k\\xff\\x01" }, { "l", 1, "l" },
  };
  const int nkeys = (int)(sizeof keys / sizeof keys[0]);
  tu_open(REG, MT, 10000);
  sochdb_txn *t = tu_begin(tu_db, 0);
  for (int i = 0; i < nkeys; i++)
    cr_assert_eq(sochdb_put(t, keys[i].k, keys[i].kl, keys[i].k, keys[i].kl), SOCHDB_OK);
  cr_assert_eq(sochdb_commit(t, SOCHDB_SYNC), SOCHDB_OK);
  tu_close();

  char out[4096], err[4096];
  const char *scan[] = { "scan", "--keys-only", tu_dir(), NULL };
  cr_assert_eq(run_cli(scan, out, sizeof out, err, sizeof err), 0, "scan: %s", err);
  cr_assert_str_eq(out, "k\\x00\\x00\nk\\x00a\nk\\t\\n\\\\\nk\\xff\\x01\nl\n");
  for (int i = 0; i < nkeys; i++) {
    const char *get[] = { "get", "--escaped", "--raw", tu_dir(), keys[i].shown, NULL };
    cr_assert_eq(run_cli(get, out, sizeof out, err, sizeof err), 0, "get %s: %s", keys[i].shown, err);
    cr_assert_eq(memcmp(out, keys[i].k, keys[i].kl), 0, "get %s printed another value", keys[i].shown);
  }
  const char *prefix[] = { "scan", "-e", "--keys-only", "--prefix", "k\\x00", tu_dir(), NULL };
  cr_assert_eq(run_cli(prefix, out, sizeof out, err, sizeof err), 0, "scan --prefix: %s", err);
  cr_assert_str_eq(out, "k\\x00\\x00\nk\\x00a\n");
  const char *del[] = { "del", "-e", tu_dir(), "k\\x00a", NULL };
  cr_assert_eq(run_cli(del, out, sizeof out, err, sizeof err), 0, "del: %s", err);
  const char *put[] = { "put", "--escaped", tu_dir(), "k\\x00\\x00", "v\\x00\\x7F\\\\", NULL };
  cr_assert_eq(run_cli(put, out, sizeof out, err, sizeof err), 0, "put: %s", err);
  static const char *const bad[] = { "k\\x0", "k\\x0g", "k\\r", "k\\" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *get[] = { "get", "--escaped", tu_dir(), bad[i], NULL };
    cr_assert_eq(run_cli(get, out, sizeof out, err, sizeof err), 2, "get of '%s': %s", bad[i], err);
    cr_assert(strstr(err, "bad escape"), "get of '%s' did not name the escape: %s", bad[i], err);
  }

  tu_open(REG, MT, 10000);
  t = tu_begin(tu_db, SOCHDB_TXN_READONLY);
  const void *v;
  size_t vl;
  cr_assert_eq(sochdb_get(t, "k\0a", 3, &v, &vl), SOCHDB_NOTFOUND, "del -e did not delete k\\x00a");
  cr_assert_eq(sochdb_get(t, "k\0\0", 3, &v, &vl), SOCHDB_OK);
  cr_assert(vl == 4 && memcmp(v, "v\0\x7f\\", 4) == 0, "put -e stored %zu other bytes", vl);
  cr_assert_eq(sochdb_get(t, "k", 1, &v, &vl), SOCHDB_NOTFOUND, "a key was cut at its 0x00");
  sochdb_abort(t);
}

/* ---- a batch applied but not confirmed durable ------------------------------------ */

/* A SYNC commit that no daemon confirms within its bound returns
** SOCHDB_DAEMON with the commit applied and visible. load counted that
** batch as not loaded ("N pairs before the failure were loaded"), though
** its pairs are in the database; it now says they were applied and that
** their durability is unknown. */
Test(cli, a_load_whose_batch_no_daemon_confirms_says_it_was_applied)
{
  tu_open(REG, MT, 10000);
  pid_t daemon = daemon_pid(tu_dir());
  cr_assert_gt(daemon, 0, "a daemon serves the database");
  char path[4300], out[4096], err[4096];
  snprintf(path, sizeof path, "%s.dump", tu_dir());
  static const char two[] = "SOCHDB-DUMP 1\nR\0\0\0\1a\0\0\0\1" "1R\0\0\0\1b\0\0\0\1" "2E\0\0\0\0\0\0\0\2";
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fwrite(two, 1, sizeof two - 1, f);
  fclose(f);

  tu_stop_process(daemon);   /* alive, holding DIR/LOCK, confirming nothing */
  const char *load[] = { "load", tu_dir(), path, NULL };
  int rc = run_cli(load, out, sizeof out, err, sizeof err);
  kill(daemon, SIGCONT);
  unlink(path);
  cr_assert_eq(rc, 3, "load with a stopped daemon: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "2 pairs were applied too"), "the message leaves out the applied batch: %s", err);

  sochdb_txn *t = tu_begin(tu_db, SOCHDB_TXN_READONLY);
  const void *v;
  size_t vl;
  cr_assert_eq(sochdb_get(t, "b", 1, &v, &vl), SOCHDB_OK, "the batch the message calls applied is not");
  sochdb_abort(t);
}

/* ---- a table created while a dump with tables loads ------------------------------- */

/* Waits (up to 60 s) until key k is visible in db; 1 if it is. */
static int wait_for_key(sochdb *db, const char *k)
{
  for (int i = 0; i < 6000; i++) {
    sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
    const void *v;
    size_t vl;
    int rc = sochdb_get(t, k, strlen(k), &v, &vl);
    sochdb_abort(t);
    if (rc == SOCHDB_OK)
      return 1;
    tu_sleep_ms(10);
  }
  return 0;
}

/* load checked that DIR had no table before its first batch, then wrote the
** dump's tables (ids and names as they are) batches later: a table another
** process created meanwhile got id 1 too, the dump's next id was written
** over the new one's, and both tables read each other's rows (CORRUPT), the
** load reporting success. The batch that writes the first table record now
** checks again, in its own transaction: the load is refused and the table
** created meanwhile is intact. Fails before: load exits 0 and scanning the
** table created meanwhile reports corruption. */
/* A database in side directory src (named by suffix) holding the pair "a"
** = "1", the pairs p00000 .. p<extra - 1> and table "people" (id int64,
** name string) with one row, its id 7; dumped into path. */
static void people_source(const char *suffix, char *src, size_t srcn, int extra, const char *path)
{
  char out[4096], err[4096];
  side_db(suffix, src, srcn);
  sochdb *s = tu_open_with(src, NULL);
  sochdb_txn *t = tu_begin(s, 0);
  for (int i = 0; i < extra; i++) {
    char k[16];
    snprintf(k, sizeof k, "p%05d", i);
    cr_assert_eq(sochdb_put(t, k, strlen(k), k, strlen(k)), SOCHDB_OK);
  }
  sochdb_column cols[2] = { { "id", SOCHDB_INT64, 0 }, { "name", SOCHDB_STRING, SOCHDB_NULLABLE } };
  cr_assert_eq(sochdb_table_create(t, "people", cols, 2), SOCHDB_OK);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "people", NULL, 0, &tb), SOCHDB_OK);
  sochdb_value row[2] = { { .i64 = 7 }, { .bytes = "seven", .len = 5 } };
  cr_assert_eq(sochdb_row_put(t, tb, row), SOCHDB_OK);
  sochdb_table_close(tb);
  cr_assert_eq(sochdb_put(t, "a", 1, "1", 1), SOCHDB_OK);
  tu_commit(t, SOCHDB_SYNC, "the source");
  sochdb_close(s);
  const char *dump[] = { "dump", src, path, NULL };
  cr_assert_eq(run_cli(dump, out, sizeof out, err, sizeof err), 0, "dump: %s", err);
}

/* The dump of people_source's database without extra pairs, into bytes
** (cap bytes); its length. The pair's record ends at byte 25, where the
** tables' start. */
static size_t people_dump(char *src, size_t srcn, char *bytes, size_t cap)
{
  char path[4300];
  snprintf(path, sizeof path, "%s.dump", tu_dir());
  people_source("tables-src", src, srcn, 0, path);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  size_t n = fread(bytes, 1, cap, f);
  fclose(f);
  unlink(path);
  cr_assert(n > 25 && bytes[25] == 'T', "the dump is not the header, one pair, then tables");
  return n;
}

/* `sochdb load DIR FIFO --batch 1` started, reading a new FIFO; returns the
** FIFO's write end, open once the loader opened it. */
static int start_load_from_fifo(char *fifo, size_t n, pid_t *pid)
{
  make_fifo(fifo, n);
  const char *load[] = { "load", tu_dir(), fifo, "--batch", "1", NULL };
  *pid = start_cli(load);
  int fd = open(fifo, O_WRONLY);
  cr_assert_geq(fd, 0, "open %s: %s", fifo, strerror(errno));
  return fd;
}

Test(cli, a_table_created_while_a_dump_with_tables_loads_is_not_overwritten)
{
  char src[4300], fifo[4300], out[4096], err[4096];
  static char bytes[4096];
  size_t n = people_dump(src, sizeof src, bytes, sizeof bytes);
  const size_t pairs_end = 25;   /* the header, and 'R' "a" "1" */
  sochdb_txn *t;
  sochdb_table *tb;
  tu_open(REG, MT, 10000);
  pid_t pid;
  int fd = start_load_from_fifo(fifo, sizeof fifo, &pid);
  cr_assert_eq(write(fd, bytes, pairs_end), (ssize_t)pairs_end);
  /* the pair is committed: the loader has found DIR without tables */
  cr_assert(wait_for_key(tu_db, "a"), "the loader did not commit the pair");
  t = tu_begin(tu_db, 0);
  sochdb_column other[2] = { { "id", SOCHDB_STRING, 0 }, { "v", SOCHDB_INT64, 0 } };
  cr_assert_eq(sochdb_table_create(t, "other", other, 2), SOCHDB_OK);
  cr_assert_eq(sochdb_table_open(t, "other", NULL, 0, &tb), SOCHDB_OK);
  sochdb_value orow[2] = { { .bytes = "k", .len = 1 }, { .i64 = 1 } };
  cr_assert_eq(sochdb_row_put(t, tb, orow), SOCHDB_OK);
  sochdb_table_close(tb);
  tu_commit(t, SOCHDB_SYNC, "the table created meanwhile");
  cr_assert_eq(write(fd, bytes + pairs_end, n - pairs_end), (ssize_t)(n - pairs_end));
  close(fd);
  int rc = finish_cli(pid, out, sizeof out, err, sizeof err);
  unlink(fifo);
  cr_assert_eq(rc, 2, "load into a database that got a table meanwhile: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "has tables"), "the refusal does not say why: %s", err);

  t = tu_begin(tu_db, SOCHDB_TXN_READONLY);
  cr_assert_eq(sochdb_table_open(t, "other", NULL, 0, &tb), SOCHDB_OK);
  sochdb_value got[2];
  sochdb_value pk = { .bytes = "k", .len = 1 };
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, got), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(got[1].i64, 1);
  sochdb_table_close(tb);
  cr_assert_eq(sochdb_table_open(t, "people", NULL, 0, &tb), SOCHDB_NOTFOUND, "a dump's table was loaded");
  sochdb_abort(t);
  drop_side_db(src);
}

/* A load from a pipe that stops inside the tables' records (a bad record,
** a failed commit) leaves the tables it committed: a schema, perhaps some
** rows. A second load into DIR was refused, since DIR had tables, and the
** dump could only go into a new database. The message now says the tables
** are partly loaded, and a load of the same dump from a file, which finds
** DIR's tables all the dump's, finishes them; from a pipe, which cannot be
** compared before it is loaded, it is refused and says so. Fails before:
** the load from the file is refused. */
Test(cli, a_load_that_stops_inside_the_tables_is_finished_by_loading_the_file_again)
{
  char src[4300], fifo[4300], path[4300], out[4096], err[4096];
  static char bytes[4096];
  size_t n = people_dump(src, sizeof src, bytes, sizeof bytes);
  tu_open(REG, MT, 10000);
  pid_t pid;
  int fd = start_load_from_fifo(fifo, sizeof fifo, &pid);
  size_t cut = n - 9 - 1;          /* inside the last record, before the trailer */
  cr_assert_eq(write(fd, bytes, cut), (ssize_t)cut);
  close(fd);
  int rc = finish_cli(pid, out, sizeof out, err, sizeof err);
  unlink(fifo);
  cr_assert_eq(rc, 2, "load of a cut dump: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "partly loaded") && strstr(err, "from a file, to finish them"),
            "the message does not say the tables are partly loaded, nor how to finish them: %s", err);
  sochdb_txn *t = tu_begin(tu_db, SOCHDB_TXN_READONLY);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "people", NULL, 0, &tb), SOCHDB_OK, "the cut load left no table behind");
  sochdb_value pk = { .i64 = 7 }, got[2];
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, got), SOCHDB_NOTFOUND, "the cut load loaded the last row");
  sochdb_table_close(tb);
  sochdb_abort(t);

  /* from a pipe again: refused before anything is written */
  uint64_t last = tu_stats(tu_db).last_commit_seq;
  fd = start_load_from_fifo(fifo, sizeof fifo, &pid);
  cr_assert_eq(write(fd, bytes, n), (ssize_t)n);   /* the loader waits for the header: still reading */
  close(fd);
  rc = finish_cli(pid, out, sizeof out, err, sizeof err);
  unlink(fifo);
  cr_assert_eq(rc, 2, "a second load from a pipe: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "from a pipe cannot be compared"), "the refusal does not say why: %s", err);
  cr_assert_eq(tu_stats(tu_db).last_commit_seq, last, "the refused load committed something");

  /* what the message says: the same dump from a file finishes the tables */
  snprintf(path, sizeof path, "%s.dump", tu_dir());
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fwrite(bytes, 1, n, f);
  fclose(f);
  const char *again[] = { "load", tu_dir(), path, NULL };
  rc = run_cli(again, out, sizeof out, err, sizeof err);
  unlink(path);
  cr_assert_eq(rc, 0, "a second load from the file: exit %d, stderr: %s", rc, err);
  t = tu_begin(tu_db, SOCHDB_TXN_READONLY);
  cr_assert_eq(sochdb_table_open(t, "people", NULL, 0, &tb), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, got), SOCHDB_OK, "the finished load lacks the row: %s",
               sochdb_last_error());
  cr_assert(got[1].len == 5 && memcmp(got[1].bytes, "seven", 5) == 0, "the row reads otherwise");
  sochdb_table_close(tb);
  sochdb_abort(t);
  drop_side_db(src);
}

/* Waits (up to 60 s) until db's last commit is past seq; 1 if it is. */
static int wait_for_commit_after(sochdb *db, uint64_t seq)
{
  for (int i = 0; i < 6000 && tu_stats(db).last_commit_seq <= seq; i++)
    tu_sleep_ms(10);
  return tu_stats(db).last_commit_seq > seq;
}

/* Creates table "other" with a row (k -> 1) in db, ASYNC. */
static void create_other(sochdb *db)
{
  sochdb_txn *t = tu_begin(db, 0);
  sochdb_column other[2] = { { "id", SOCHDB_STRING, 0 }, { "v", SOCHDB_INT64, 0 } };
  cr_assert_eq(sochdb_table_create(t, "other", other, 2), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "other", NULL, 0, &tb), SOCHDB_OK);
  sochdb_value orow[2] = { { .bytes = "k", .len = 1 }, { .i64 = 1 } };
  cr_assert_eq(sochdb_row_put(t, tb, orow), SOCHDB_OK);
  sochdb_table_close(tb);
  tu_commit(t, SOCHDB_ASYNC, "the table created meanwhile");
}

/* Writes row 8 into the dump's table "people" in db, ASYNC. */
static void add_people_row(sochdb *db)
{
  sochdb_txn *t = tu_begin(db, 0);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "people", NULL, 0, &tb), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_value row[2] = { { .i64 = 8 }, { .bytes = "eight", .len = 5 } };
  cr_assert_eq(sochdb_row_put(t, tb, row), SOCHDB_OK);
  sochdb_table_close(tb);
  tu_commit(t, SOCHDB_ASYNC, "the row written meanwhile");
}

/* DIR (tu_db) gets the people dump's tables whole (a load of it: what a
** finished load leaves), then a load of a dump of the same tables and 10
** more pairs, from a file, --batch 1, runs while change(tu_db) happens
** between its check and its first table batch: with the daemon stopped,
** the loader's first commit is applied and waits to be made durable, so
** change runs (ASYNC) while the loader is held there. The loader's exit
** status; its stderr in err. */
static int load_while_tables_change(void (*change)(sochdb *db), char *err, size_t errn)
{
  char src[4300], big[4300], small[4300], path[4300], out[4096];
  snprintf(small, sizeof small, "%s.small-dump", tu_dir());
  snprintf(path, sizeof path, "%s.big-dump", tu_dir());
  people_source("tables-src", src, sizeof src, 0, small);
  people_source("tables-big", big, sizeof big, 10, path);
  tu_open(REG, MT, 10000);
  const char *first[] = { "load", tu_dir(), small, NULL };
  cr_assert_eq(run_cli(first, out, sizeof out, err, errn), 0, "the first load: %s", err);

  pid_t daemon = daemon_pid(tu_dir());
  cr_assert_gt(daemon, 0, "a daemon serves the database");
  uint64_t before = tu_stats(tu_db).last_commit_seq;
  tu_stop_process(daemon);
  const char *load[] = { "load", tu_dir(), path, "--batch", "1", NULL };
  pid_t pid = start_cli(load);
  int committed = wait_for_commit_after(tu_db, before);
  if (committed)
    change(tu_db);
  kill(daemon, SIGCONT);
  int rc = finish_cli(pid, out, sizeof out, err, errn);
  unlink(small);
  unlink(path);
  drop_side_db(src);
  drop_side_db(big);
  cr_assert(committed, "the loader did not commit its first batch");
  return rc;
}

/* A load that finds DIR's tables all the dump's sums them up, and its
** first batch of the tables' records must find them as they were: a table
** another process creates while the pairs load is found there, and the load
** stops before it writes any table key, leaving that table intact (its next
** table id not overwritten by the dump's). Fails with the first table
** batch's checks taken out: the load exits 0. */
Test(cli, a_table_created_while_a_load_finishes_the_tables_is_not_overwritten)
{
  char err[4096];
  int rc = load_while_tables_change(create_other, err, sizeof err);
  cr_assert_eq(rc, 2, "load into a database that got a table meanwhile: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "has tables of its own now"), "the refusal does not say why: %s", err);

  /* the table created meanwhile is intact, and the next one gets the id after it */
  sochdb_txn *t = tu_begin(tu_db, 0);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "other", NULL, 0, &tb), SOCHDB_OK);
  sochdb_value got[2], pk = { .bytes = "k", .len = 1 };
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, got), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(got[1].i64, 1);
  sochdb_table_close(tb);
  sochdb_column one[1] = { { "id", SOCHDB_INT64, 0 } };
  cr_assert_eq(sochdb_table_create(t, "third", one, 1), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(sochdb_table_open(t, "third", NULL, 0, &tb), SOCHDB_OK);
  const sochdb_column *cols;
  size_t ncols;
  uint32_t id;
  sochdb_table_schema(tb, &cols, &ncols, &id);
  cr_assert_eq(id, 3u, "the next table id went back: table 'third' got id %u", id);
  sochdb_table_close(tb);
  tu_commit(t, SOCHDB_SYNC, "a third table");
}

/* The same with a row written into one of DIR's tables (one the dump holds
** too) meanwhile: no key a batch writes holds another value, but DIR's
** tables are no longer the ones compared with the dump, and the load says
** so. Fails with the first table batch's sum taken out: the load exits 0. */
Test(cli, a_row_written_while_a_load_finishes_the_tables_stops_it)
{
  char err[4096];
  int rc = load_while_tables_change(add_people_row, err, sizeof err);
  cr_assert_eq(rc, 2, "load into a database whose table changed meanwhile: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "created or changed while the load ran"), "the refusal does not say why: %s", err);
}

/* A table created after the load's first batch of tables, under a name
** the dump's tables hold, before the batch that writes that schema: the
** batch finds the schema holding another value and stops, so the new
** table keeps its schema and id (the dump's would have been written over
** it, its rows read under another table's schema). The pipe holds the
** loader between the two batches. Fails with the later batches' check of
** their schemas and next table id taken out: the load exits 0. */
Test(cli, a_dump_table_created_between_two_table_batches_is_not_overwritten)
{
  char src[4300], fifo[4300], out[4096], err[4096];
  static char bytes[4096];
  size_t n = people_dump(src, sizeof src, bytes, sizeof bytes);
  const size_t next_id_end = 25 + 1 + 4 + 16 + 4 + 4;   /* the pair, then 'T' "next_table_id" (u32) */
  cr_assert(n > next_id_end && bytes[next_id_end] == 'T', "the next table id is not the first table record");
  tu_open(REG, MT, 10000);
  uint64_t before = tu_stats(tu_db).last_commit_seq;
  pid_t pid;
  int fd = start_load_from_fifo(fifo, sizeof fifo, &pid);
  cr_assert_eq(write(fd, bytes, next_id_end), (ssize_t)next_id_end);
  cr_assert(wait_for_commit_after(tu_db, before + 1), "the loader did not commit the next table id");

  sochdb_txn *t = tu_begin(tu_db, 0);
  sochdb_column mine[2] = { { "code", SOCHDB_STRING, 0 }, { "n", SOCHDB_INT64, 0 } };
  cr_assert_eq(sochdb_table_create(t, "people", mine, 2), SOCHDB_OK, "%s", sochdb_last_error());
  tu_commit(t, SOCHDB_SYNC, "a table named as the dump's");
  cr_assert_eq(write(fd, bytes + next_id_end, n - next_id_end), (ssize_t)(n - next_id_end));
  close(fd);
  int rc = finish_cli(pid, out, sizeof out, err, sizeof err);
  unlink(fifo);
  drop_side_db(src);
  cr_assert_eq(rc, 2, "load over a table created meanwhile: exit %d, stderr: %s", rc, err);
  cr_assert(strstr(err, "has tables of its own now") && strstr(err, "a load of the dump into it again is refused"),
            "the messages do not say why, nor that a second load is refused: %s", err);

  t = tu_begin(tu_db, SOCHDB_TXN_READONLY);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "people", NULL, 0, &tb), SOCHDB_OK);
  const sochdb_column *cols;
  size_t ncols;
  uint32_t id;
  sochdb_table_schema(tb, &cols, &ncols, &id);
  cr_assert(id == 2 && ncols == 2 && cols[0].type == SOCHDB_STRING, "the table created meanwhile lost its "
            "schema: id %u, %zu columns", id, ncols);
  sochdb_table_close(tb);
  sochdb_abort(t);
}

/* ---- a damaged or forged version-2 dump ---------------------------------------- */

/* One 'T' record of a hand-made version 2 dump. */
struct t_record {
  const char *key;
  size_t kl;
  const unsigned char *v;
  size_t vl;
};

/* A version 2 dump of the records recs[0..n) at path. */
static void write_t_dump(const char *path, const struct t_record *recs, size_t n)
{
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "%s: %s", path, strerror(errno));
  fputs("SOCHDB-DUMP 2\n", f);
  for (size_t i = 0; i < n; i++) {
    unsigned char len[4] = { 0, 0, (unsigned char)(recs[i].kl >> 8), (unsigned char)recs[i].kl };
    fputc('T', f);
    fwrite(len, 1, 4, f);
    fwrite(recs[i].key, 1, recs[i].kl, f);
    len[2] = (unsigned char)(recs[i].vl >> 8), len[3] = (unsigned char)recs[i].vl;
    fwrite(len, 1, 4, f);
    fwrite(recs[i].v, 1, recs[i].vl, f);
  }
  unsigned char trailer[9] = { 'E' };
  trailer[8] = (unsigned char)n;
  fwrite(trailer, 1, 9, f);
  cr_assert_eq(fclose(f), 0);
}

/* Table "t" (id 1) of one int64 column, "id": its schema blob, and its row
** with id 7 under that row's key. */
static const unsigned char schema_t_id1[] = { 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, SOCHDB_INT64, 0, 2, 'i', 'd' };
static const unsigned char row_id7[] = { 0xC5, 1, SOCHDB_INT64, 0, 7, 0, 0, 0, 0, 0, 0, 0 };
static const char row_key_t_7[] = "\xff\xff\1\0\0\0\1\x80\0\0\0\0\0\0\7";   /* 15 bytes */

/* load checked only the shape of a 'T' record's key (FF FF 00 and anything,
** FF FF 01 and 5 bytes or more), never its value, and the format has no
** checksum: a next table id of 0 or of 2 bytes, a schema that does not
** decode, a row that is not a row, or a meta key no table reads went in,
** load exited 0 and check said clean, and afterwards no table could be
** created (the stored next table id is malformed) nor the table read. Each
** record is now decoded as what its key says it is, before anything is
** written. Fails before: each of these dumps loads (exit 0). */
Test(cli, load_refuses_table_records_whose_values_no_table_reads)
{
  char path[4300], dst[4300], out[4096], err[4096];
  snprintf(path, sizeof path, "%s.forged", tu_dir());
  side_db("forged-values", dst, sizeof dst);
  const struct t_record schema_t = { "\xff\xff\0schema/t", 11, schema_t_id1, sizeof schema_t_id1 };
  const struct {
    struct t_record rec[2];
    size_t n;
    const char *says;
  } forged[] = {
    { { { "\xff\xff\0next_table_id", 16, (const unsigned char *)"\0\0\0\0", 4 } }, 1, "next table id" },
    { { { "\xff\xff\0next_table_id", 16, (const unsigned char *)"\2\0", 2 } }, 1, "next table id" },
    { { { "\xff\xff\0schema/t", 11, schema_t_id1, sizeof schema_t_id1 - 1 } }, 1, "schema" },
    { { { "\xff\xff\0schema/", 10, schema_t_id1, sizeof schema_t_id1 } }, 1, "no columnar table" },
    { { { "\xff\xff\0other", 8, (const unsigned char *)"x", 1 } }, 1, "no columnar table" },
    { { schema_t, { row_key_t_7, 15, (const unsigned char *)"garbage", 7 } }, 2, "row" },
    { { schema_t, { row_key_t_7, 15, row_id7, sizeof row_id7 - 1 } }, 2, "row" },
  };
  for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
    write_t_dump(path, forged[i].rec, forged[i].n);
    const char *load[] = { "load", dst, path, NULL };
    int rc = run_cli(load, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 2, "load of forged dump %zu: exit %d, stderr: %s", i, rc, err);
    cr_assert(strstr(err, forged[i].says), "forged dump %zu: %s", i, err);
    cr_assert_neq(access(dst, F_OK), 0, "a refused dump must write nothing");
  }
  /* the intact records themselves load */
  const struct t_record intact[] = {
    { "\xff\xff\0next_table_id", 16, (const unsigned char *)"\2\0\0\0", 4 }, schema_t,
    { row_key_t_7, 15, row_id7, sizeof row_id7 },
  };
  write_t_dump(path, intact, 3);
  const char *load[] = { "load", dst, path, NULL };
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 0, "load of intact records: %s", err);
  unlink(path);
  sochdb *db = tu_open_with(dst, NULL);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  sochdb_table *tb;
  cr_assert_eq(sochdb_table_open(t, "t", NULL, 0, &tb), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_value pk = { .i64 = 7 }, got;
  cr_assert_eq(sochdb_row_get(t, tb, &pk, NULL, 0, &got), SOCHDB_OK, "%s", sochdb_last_error());
  sochdb_table_close(tb);
  sochdb_abort(t);
  sochdb_close(db);
  drop_side_db(dst);
}

/* Each record well-formed by itself, but not with the others: a row of a
** table no schema names, a row whose column is not its table's type, a
** NULL in a column that takes none, more columns than the table has, two
** schemas of one id, and a row under a key whose primary key is not its
** first column's. Loaded as they are, each table would read as
** damage for good; load refuses each dump before it writes anything. */
Test(cli, load_refuses_table_records_that_do_not_fit_their_table)
{
  char path[4300], dst[4300], out[4096], err[4096];
  snprintf(path, sizeof path, "%s.unfit-dump", tu_dir());
  side_db("unfit", dst, sizeof dst);
  static const unsigned char row_double[] = { 0xC5, 1, SOCHDB_DOUBLE, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f };
  static const unsigned char row_null[] = { 0xC5, 1, SOCHDB_INT64, 1 };
  static const unsigned char row_two[] = { 0xC5, 2, SOCHDB_INT64, SOCHDB_INT64, 0, 7, 0, 0, 0, 0, 0, 0, 0,
                                           8, 0, 0, 0, 0, 0, 0, 0 };
  static const unsigned char row_pk8[] = { 0xC5, 1, SOCHDB_INT64, 0, 8, 0, 0, 0, 0, 0, 0, 0 };
  static const char *const row1 = row_key_t_7, row2[] = "\xff\xff\1\0\0\0\2\x80\0\0\0\0\0\0\7";
  const struct t_record schema_t = { "\xff\xff\0schema/t", 11, schema_t_id1, sizeof schema_t_id1 };
  const struct t_record schema_u = { "\xff\xff\0schema/u", 11, schema_t_id1, sizeof schema_t_id1 };
  const struct {
    struct t_record rec[2];
    const char *says;
  } unfit[] = {
    { { schema_t, { row2, 15, row_id7, sizeof row_id7 } }, "which no schema before it names" },
    { { schema_t, { row1, 15, row_double, sizeof row_double } }, "holds a double" },
    { { schema_t, { row1, 15, row_null, sizeof row_null } }, "holds NULL" },
    { { schema_t, { row1, 15, row_two, sizeof row_two } }, "has 2 columns" },
    { { schema_t, schema_u }, "both have id 1" },
    { { schema_t, { row1, 15, row_pk8, sizeof row_pk8 } }, "another primary key" },
  };
  for (size_t i = 0; i < sizeof unfit / sizeof unfit[0]; i++) {
    write_t_dump(path, unfit[i].rec, 2);
    const char *load[] = { "load", dst, path, NULL };
    int rc = run_cli(load, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 2, "load of unfit dump %zu: exit %d, stderr: %s", i, rc, err);
    cr_assert(strstr(err, unfit[i].says), "unfit dump %zu: %s", i, err);
    cr_assert_neq(access(dst, F_OK), 0, "unfit dump %zu: a refused dump must write nothing (%s)", i, err);
  }
  /* the same schema with a row that fits loads */
  const struct t_record fit[] = { schema_t, { row1, 15, row_id7, sizeof row_id7 } };
  write_t_dump(path, fit, 2);
  const char *load[] = { "load", dst, path, NULL };
  cr_assert_eq(run_cli(load, out, sizeof out, err, sizeof err), 0, "load of a fitting row: %s", err);
  unlink(path);
  drop_side_db(dst);
}
