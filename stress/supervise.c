/*
** supervise.c — the two ways sochdb-stress runs workers:
**
**   normal  set the database up, read its state, run the workers for a time
**           (or a number of transactions each), read the final state, check;
**   crash   in cycles: run the workers, kill -9 random workers (restarting
**           them) and the daemon at random moments, then kill -9 everything,
**           sometimes remove the region file too (the next open rebuilds it
**           from the WAL), open afresh, read the state and check the cycle:
**           snapshot isolation during it, every acknowledged commit present
**           after it, nothing half there, the accounts adding up. Some
**           cycles (--power-loss-pct) end in a power cut instead: their
**           daemons run with libsochdb-powercut.so preloaded, and what they
**           wrote but did not fsync is dropped or torn (crashstate.c) before
**           `sochdb check` and the reopen; in some (--fault-pct) the daemon is
**           sochdbd-testing with a random I/O fault armed.
**
** The supervisor never opens the database itself (a child does, see
** state.c): it forks workers and kills processes freely. It makes itself a
** child subreaper, so the daemons the library starts (which detach) become its
** children: it can reap them and kill every process a cycle started. A hang
** of the engine shows as no transaction finishing for --stall-s seconds (or
** a state read that does not return): the run stops and fails.
**
** On success the run directory is removed (unless --keep); on any failure it
** is kept, with a command that checks it again.
*/
#include "stress.h"
#include "checker.h"
#include "powercut.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct sup {
  const st_cfg *c;
  st_shared *sh;
  char unit[4200];
  pid_t wpid[ST_MAX_WORKERS];
  uint32_t next_wid;
  uint64_t next_state;
  pid_t helper;
  int helper_status, helper_done;
  unsigned worker_kills, daemon_kills, rebuilds, worker_failures;
  int broken;          /* the engine hung, or a database step of the supervisor failed */
  /* power cuts and faults (crash mode) */
  char bin[4096];      /* the directory of sochdb-stress: sochdbd-testing, sochdb, the shim */
  pc_stats pc;
  unsigned pc_damaged; /* crash states the file checker found damaged */
  unsigned fault_cycles, faults_fired[4];
  int daemon_cut;      /* this cycle ended because a daemon cut the power itself (PC_ENV_CUT) */
} sup;

static const char *const fault_points[4] = { "wal.write", "wal.short", "wal.fsync", "sst.write" };

/* ------------------------------------------------------------ processes */

static int ended_by_us(int st)
{
  return (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) || (WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void describe_status(int st, char *out, size_t n)
{
  if (WIFEXITED(st)) snprintf(out, n, "exit %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st)) snprintf(out, n, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
  else snprintf(out, n, "status %d", st);
}

/* A worker ended: anything but exit 0 or our SIGKILL is a failure. */
static void worker_ended(sup *s, int i, int st)
{
  s->wpid[i] = 0;
  if (ended_by_us(st)) return;
  char why[96];
  describe_status(st, why, sizeof why);
  fprintf(stderr, "sochdb-stress: worker %u (pid %d) ended with %s (exit 2 history, 3 open, 4 begin keeps failing)\n",
          (unsigned)s->sh->slot[i].wid, (int)s->sh->slot[i].pid, why);
  s->worker_failures++;
}

/* Reap every child that ended: workers, the helper, daemons. */
static void reap(sup *s)
{
  int st;
  pid_t r;
  while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
    if (r == s->helper) {
      s->helper_done = 1;
      s->helper_status = st;
    }
    for (int i = 0; i < ST_MAX_WORKERS; i++)
      if (s->wpid[i] == r) worker_ended(s, i, st);
  }
}

static int live_workers(const sup *s)
{
  int n = 0;
  for (int i = 0; i < s->c->workers; i++) n += s->wpid[i] != 0;
  return n;
}

static void spawn_worker(sup *s, int slot, int64_t deadline)
{
  uint32_t wid = s->next_wid++;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) st_worker_main(s->c, s->sh, slot, wid, s->unit, deadline);
  if (pid < 0) {
    perror("sochdb-stress: fork");
    s->worker_failures++;
    return;
  }
  s->wpid[slot] = pid;
  s->sh->slot[slot].pid = pid;
  s->sh->slot[slot].wid = wid;
}

static pid_t parent_of(pid_t pid)
{
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *p = strrchr(buf, ')');
  char state;
  int ppid;
  return p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 ? (pid_t)ppid : 0;
}

/* SIGKILL every child (workers, daemons re-parented to us, a half-started
** daemon) until none is left. 0, or -1 if some survived 10 s. */
static int kill_children(sup *s)
{
  pid_t me = getpid();
  for (int round = 0; round < 10000; round++) {
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
      pid_t pid = (pid_t)atoi(e->d_name);
      if (pid > 0 && parent_of(pid) == me) kill(pid, SIGKILL);
    }
    if (d) closedir(d);
    reap(s);
    if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) return 0;
    st_sleep_ms(1);
  }
  return -1;
}

/* ------------------------------------------------------------ the daemon */

static void db_file(const sup *s, const char *name, char *out, size_t n)
{
  snprintf(out, n, "%s/db/%s", s->c->dir, name);
}

static int lock_held(const sup *s)
{
  char path[4300];
  db_file(s, "LOCK", path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd);
  return held;
}

/* The daemon's pid from DIR/db/LOCK, if that process is a sochdbd; else 0. */
static pid_t daemon_pid(const sup *s)
{
  char path[4300], buf[64];
  db_file(s, "LOCK", path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  pid_t pid = (pid_t)atoi(buf);
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  fd = pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) return 0;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *base = strrchr(buf, '/');
  return strncmp(base ? base + 1 : buf, "sochdbd", 7) == 0 ? pid : 0;
}

static void kill_daemon(sup *s)
{
  pid_t pid = daemon_pid(s);
  if (pid > 0 && kill(pid, SIGKILL) == 0) s->daemon_kills++;
}

/* Wait until nobody holds DIR/db/LOCK (limit_ms); 1 if free. */
static int wait_lock_free(sup *s, unsigned limit_ms)
{
  for (unsigned i = 0; i < limit_ms; i++) {
    reap(s);
    if (!lock_held(s)) return 1;
    st_sleep_ms(1);
  }
  return 0;
}

/* The end of a run: SIGTERM the daemon (it syncs and exits), the region goes. */
static void stop_daemon(sup *s)
{
  pid_t pid = daemon_pid(s);
  if (pid > 0) kill(pid, SIGTERM);
  if (!wait_lock_free(s, 10000)) kill_children(s);
  if (s->sh->region_path[0]) unlink(s->sh->region_path);
}

/* ------------------------------------------------------------ the helper child */

typedef struct helper_job {
  int setup;
  const char *file;
  uint64_t id;
  int marker;
} helper_job;

/* Run a database job in a child; 0 if it succeeded within 180 s. */
static int run_helper(sup *s, const helper_job *j)
{
  fflush(stdout);
  fflush(stderr);
  s->helper_done = 0;
  s->helper = fork();
  if (s->helper == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    _exit(j->setup ? -st_setup(s->c, s->sh) : -st_read_state(s->c, s->sh, j->file, j->id, j->marker));
  }
  if (s->helper < 0) return -1;
  for (int ms = 0; ms < 180000 && !s->helper_done; ms += 2) {
    reap(s);
    st_sleep_ms(2);
  }
  const char *what = j->setup ? "setting the database up" : "reading the database state";
  if (!s->helper_done) {
    fprintf(stderr, "sochdb-stress: %s did not finish within 180 s: the engine hangs\n", what);
    kill(s->helper, SIGKILL);
    s->broken = 1;
    return -1;
  }
  if (WIFEXITED(s->helper_status) && WEXITSTATUS(s->helper_status) == 0) return 0;
  char why[96];
  describe_status(s->helper_status, why, sizeof why);
  fprintf(stderr, "sochdb-stress: %s failed (%s)\n", what, why);
  s->broken = 1;
  return -1;
}

static int read_state(sup *s, const char *name, int marker)
{
  char file[4300];
  helper_job j = { 0, st_path(file, sizeof file, s->unit, name), ST_ID(0, s->next_state++), marker };
  return run_helper(s, &j);
}

/* ------------------------------------------------------------ units */

static int start_unit(sup *s, const char *name)
{
  st_path(s->unit, sizeof s->unit, s->c->dir, name);
  if (st_mkdir(s->unit) != 0) {
    perror(s->unit);
    return -1;
  }
  return 0;
}

static void write_meta(const sup *s, int crash, int removed, double seconds)
{
  char path[4300];
  FILE *f = fopen(st_path(path, sizeof path, s->unit, "meta"), "w");
  if (!f) {
    perror(path);
    return;
  }
  const st_cfg *c = s->c;
  fprintf(f, "accounts=%u\nbalance=%lld\nregion_removed=%d\ncrash=%d\nworkers=%d\nseconds=%.3f\nseed=%llu\n"
          "keys=%u\nmaxlen=%u\nregisters=%u\nrow_accounts=%u\nrow_balance=%lld\ntable_pct=%u\n", c->accounts,
          (long long)c->balance, removed, crash, c->workers, seconds, (unsigned long long)c->seed, c->keys, c->maxlen,
          c->registers, c->accounts, (long long)c->balance, c->table_pct);
  fclose(f);
}

/* Check the current unit; adds to *total; 0 clean, 1 anomalies, -1 unreadable. */
static int check_unit(sup *s, stress_report *total, int verbose)
{
  stress_report r;
  int64_t t0 = st_now_ns();
  int rc = stress_check_unit(s->unit, stdout, &r);
  stress_report_add(total, &r);
  if (verbose || rc != 0) {
    printf("check of %s (%.1f s):\n", s->unit, (double)(st_now_ns() - t0) / 1e9);
    stress_report_print(stdout, &r);
  }
  return rc;
}

static int64_t progress_ns(const sup *s)
{
  int64_t last = 0;
  for (int i = 0; i < s->c->workers; i++)
    if (s->sh->slot[i].last_ns > last) last = s->sh->slot[i].last_ns;
  return last;
}

static uint64_t total_txns(const sup *s)
{
  uint64_t n = 0;
  for (int i = 0; i < s->c->workers; i++) n += s->sh->slot[i].txns;
  return n;
}

/* ------------------------------------------------------------ normal mode */

static void print_progress(const sup *s, double elapsed)
{
  uint64_t txns = 0, commits = 0, conflicts = 0;
  for (int i = 0; i < s->c->workers; i++) {
    txns += s->sh->slot[i].txns;
    commits += s->sh->slot[i].commits;
    conflicts += s->sh->slot[i].conflicts;
  }
  printf("  %5.0f s: %llu transactions, %llu write commits, %llu conflicts\n", elapsed, (unsigned long long)txns,
         (unsigned long long)commits, (unsigned long long)conflicts);
  fflush(stdout);
}

/* Wait for the workers to finish; a stall of stall_s seconds is a hang. */
static void wait_workers(sup *s, int64_t start)
{
  int64_t next_print = start + 5000000000LL, since = start;
  while (live_workers(s) > 0) {
    reap(s);
    st_sleep_ms(20);
    int64_t now = st_now_ns(), last = progress_ns(s);
    if (last > since) since = last;
    if (now >= next_print) {
      print_progress(s, (double)(now - start) / 1e9);
      next_print += 5000000000LL;
    }
    if (now - since > (int64_t)s->c->stall_s * 1000000000LL) {
      fprintf(stderr, "sochdb-stress: no transaction finished for %u s: the engine hangs (workers left running: "
              "%d)\n", s->c->stall_s, live_workers(s));
      s->broken = 1;
      return;
    }
  }
}

static int finish(sup *s, int ok, const char *unit_hint)
{
  stop_daemon(s);
  if (ok && !s->c->keep) {
    st_rmrf(s->c->dir);
    printf("RESULT: OK\n");
    return 0;
  }
  if (ok) {
    printf("RESULT: OK (kept %s)\n", s->c->dir);
    return 0;
  }
  printf("RESULT: FAILED — histories kept in %s\n  check again: sochdb-stress check %s\n", s->c->dir, unit_hint);
  return s->broken || s->worker_failures ? 3 : 1;
}

static int setup(sup *s, st_shared *sh)
{
  s->sh = sh;
  s->next_wid = 1;
  s->next_state = 2;
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  char db[4300];
  if (st_mkdir(s->c->dir) != 0 || st_mkdir(st_path(db, sizeof db, s->c->dir, "db")) != 0) {
    perror(s->c->dir);
    return -1;
  }
  helper_job j = { 1, NULL, 0, 0 };
  return run_helper(s, &j);
}

static st_shared *shared_alloc(void)
{
  void *p = mmap(NULL, sizeof(st_shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

int st_run_normal(const st_cfg *c)
{
  sup s = { .c = c };
  st_shared *sh = shared_alloc();
  printf("sochdb-stress run: %d workers, %.0f s%s, %u list keys (%u hot), %u accounts, %u registers, seed %llu\n"
         "  directory %s\n", c->workers, c->seconds, c->ops ? " (or the operation count)" : "", c->keys, c->hot,
         c->accounts, c->registers, (unsigned long long)c->seed, c->dir);
  if (!sh || setup(&s, sh) != 0 || start_unit(&s, "run") != 0 || read_state(&s, "init.state", 0) != 0)
    return finish(&s, 0, c->dir);
  int64_t start = st_now_ns();
  int64_t deadline = c->ops && !c->seconds ? INT64_MAX : start + (int64_t)(c->seconds * 1e9);
  for (int i = 0; i < c->workers; i++) spawn_worker(&s, i, deadline);
  wait_workers(&s, start);
  double seconds = (double)(st_now_ns() - start) / 1e9;
  if (s.broken || read_state(&s, "final.state", 0) != 0) {
    kill_children(&s);
    return finish(&s, 0, s.unit);
  }
  write_meta(&s, 0, 0, seconds);
  stress_report total = { 0 };
  int rc = check_unit(&s, &total, 1);
  return finish(&s, rc == 0 && !s.worker_failures, s.unit);
}

/* ------------------------------------------------------------ crash mode */

/* One random event of a cycle: kill a worker (and start another in its
** place), two workers, or the daemon. */
static void crash_event(sup *s, uint64_t *rng)
{
  unsigned r = st_below(rng, 100);
  if (r < 30) {
    kill_daemon(s);
    return;
  }
  for (int n = r < 85 ? 1 : 2; n > 0; n--) {
    int i = (int)st_below(rng, (unsigned)s->c->workers);
    if (s->wpid[i] && kill(s->wpid[i], SIGKILL) == 0) s->worker_kills++;
  }
}

/* Whether a daemon of a power-loss cycle has cut the power (powercut.h). */
static int power_went(const sup *s)
{
  char path[4400];
  snprintf(path, sizeof path, "%s/powercut/" PC_CUT_FILE, s->c->dir);
  return access(path, F_OK) == 0;
}

/* Run one cycle's workers for about cycle_ms with random kills in between;
** end with kill -9 of every process. Returns the transactions finished. */
static uint64_t run_cycle(sup *s, uint64_t *rng)
{
  const st_cfg *c = s->c;
  uint64_t before = total_txns(s);
  int64_t end = st_now_ns() + (int64_t)(c->cycle_ms / 2 + st_below(rng, c->cycle_ms)) * 1000000;
  s->daemon_cut = 0;
  for (int i = 0; i < c->workers; i++) spawn_worker(s, i, INT64_MAX);
  while (st_now_ns() < end) {
    for (unsigned ms = 20 + st_below(rng, c->cycle_ms / 4 + 1); ms > 0 && !power_went(s); ms -= ms < 5 ? ms : 5)
      st_sleep_ms(ms < 5 ? ms : 5);
    if ((s->daemon_cut = power_went(s))) break;   /* a daemon cut the power (powercut.h): the cycle ends now */
    reap(s);
    if (st_now_ns() < end) crash_event(s, rng);
    reap(s);
    for (int i = 0; i < c->workers; i++)
      if (!s->wpid[i]) spawn_worker(s, i, INT64_MAX);
  }
  uint64_t done = total_txns(s) - before;
  if (st_below(rng, 2)) kill_daemon(s);   /* sometimes the daemon dies first */
  for (int i = 0; i < c->workers; i++)
    if (s->wpid[i]) kill(s->wpid[i], SIGKILL);
  if (kill_children(s) != 0 || !wait_lock_free(s, 10000)) {
    fprintf(stderr, "sochdb-stress: processes outlived SIGKILL or DIR/db/LOCK stayed held\n");
    s->broken = 1;
  }
  return done;
}

/* Link (or copy) the previous unit's final state as this unit's init.state. */
static int carry_state(const sup *s, const char *prev_unit)
{
  char from[4300], to[4300];
  st_path(from, sizeof from, prev_unit, "final.state");
  st_path(to, sizeof to, s->unit, "init.state");
  if (link(from, to) == 0) return 0;
  perror(to);
  return -1;
}

/* Remove what a passed cycle no longer needs: the unit before it, its histories. */
static void prune(const sup *s, const char *prev_unit)
{
  st_rmrf(prev_unit);
  DIR *d = opendir(s->unit);
  for (struct dirent *e; d && (e = readdir(d));) {
    char path[4400];
    if (!strncmp(e->d_name, "hist-", 5)) unlink(st_path(path, sizeof path, s->unit, e->d_name));
  }
  if (d) closedir(d);
}

typedef struct crash_totals {
  stress_report rep;
  unsigned stalled;     /* cycles in a row without a finished transaction */
} crash_totals;

/* ------------------------------------------------------------ power cuts and faults */

/* Kill the daemon the last state read left running (not counted as a kill):
** a special cycle starts with a daemon of its own. */
static void replace_daemon(sup *s)
{
  pid_t pid = daemon_pid(s);
  if (pid > 0) kill(pid, SIGKILL);
  if (!wait_lock_free(s, 10000)) {
    fprintf(stderr, "sochdb-stress: the daemon did not leave DIR/db/LOCK within 10 s\n");
    s->broken = 1;
  }
}

static char saved_asan[2048];
static int had_asan;

/* The environment the daemons of a special cycle are started with (through
** the workers' library, which passes it to the sochdbd it spawns). */
static void special_env(sup *s, int power, const char *fault_spec)
{
  char path[4400];
  if (power) {
    setenv("LD_PRELOAD", st_path(path, sizeof path, s->bin, PC_LIB), 1);
    setenv(PC_ENV_STATE, st_path(path, sizeof path, s->c->dir, "powercut/log"), 1);
    setenv(PC_ENV_DIR, st_path(path, sizeof path, s->c->dir, "db"), 1);
    /* A lying disk's self-test (smoke.sh) wants much acknowledged and
    ** unsynced at the cut: power goes at the cycle's end there, as before */
    const char *lie = getenv(PC_ENV_LIE);
    if (!lie || !*lie)
      setenv(PC_ENV_CUT, "2000", 1);
    /* a sanitized daemon refuses a preloaded library that is not its runtime */
    const char *asan = getenv("ASAN_OPTIONS");
    had_asan = asan != NULL;
    snprintf(saved_asan, sizeof saved_asan, "%s", asan ? asan : "");
    snprintf(path, sizeof path, "%s%sverify_asan_link_order=0", saved_asan, asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", path, 1);
    /* with the test hooks: rewrite the MANIFEST and switch CURRENT often, so
    ** that power goes during those protocols too */
    if (access(st_path(path, sizeof path, s->bin, "sochdbd-testing"), X_OK) == 0) {
      setenv("SOCHDB_DAEMON", path, 1);
      setenv("SOCHDB_TEST_MANIFEST_ROLL", "4096", 1);
    }
  }
  if (fault_spec) {
    setenv("SOCHDB_DAEMON", st_path(path, sizeof path, s->bin, "sochdbd-testing"), 1);
    setenv("SOCHDB_TEST_FAULT", fault_spec, 1);
  }
}

static void plain_env(int power, int fault)
{
  if (power) {
    unsetenv("LD_PRELOAD");
    unsetenv(PC_ENV_STATE);
    unsetenv(PC_ENV_DIR);
    unsetenv(PC_ENV_CUT);
    if (had_asan) setenv("ASAN_OPTIONS", saved_asan, 1);
    else unsetenv("ASAN_OPTIONS");
    unsetenv("SOCHDB_TEST_MANIFEST_ROLL");
    unsetenv("SOCHDB_DAEMON");
  }
  if (fault) {
    unsetenv("SOCHDB_DAEMON");
    unsetenv("SOCHDB_TEST_FAULT");
  }
}

/* A random fault: point, errno, passes before it, count. Most clear by
** themselves within a fraction of a second (the daemon retries a failed WAL
** group every 10 ms); one in eight outlasts the cycle (SYNC committers wait,
** are killed with an unknown outcome; the next cycle's daemon has none). */
static void pick_fault(uint64_t *rng, char *spec, size_t n)
{
  unsigned p = st_below(rng, 4);
  int err = st_below(rng, 2) ? ENOSPC : EIO;
  unsigned skip = st_below(rng, 30), count = st_below(rng, 8) ? 1 + st_below(rng, 40) : 100000;
  snprintf(spec, n, "%s:%d:%u:%u", fault_points[p], err, skip, count);
}

static long file_size(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Count the "fault point X fired" lines the daemons logged since offset. */
static unsigned count_fired(sup *s, long offset)
{
  char path[4300], line[1024];
  db_file(s, "sochdbd.log", path, sizeof path);
  FILE *f = fopen(path, "r");
  unsigned n = 0;
  if (!f) return 0;
  fseek(f, offset, SEEK_SET);
  while (fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "sochdb test: fault point ");
    if (!p) continue;
    p += strlen("sochdb test: fault point ");
    for (int i = 0; i < 4; i++)
      if (!strncmp(p, fault_points[i], strlen(fault_points[i])) && p[strlen(fault_points[i])] == ' ') {
        s->faults_fired[i]++;
        n++;
      }
  }
  fclose(f);
  return n;
}

/* `sochdb check --json DIR/db` on the crash state: files verified, damage.
** 0 clean (or no sochdb CLI to run), 1 damaged, -1 could not run. */
static int file_check(sup *s, FILE *log)
{
  char cli[4400], db[4300], out[4400];
  st_path(cli, sizeof cli, s->bin, "sochdb");
  if (access(cli, X_OK) != 0) return 0;
  st_path(db, sizeof db, s->c->dir, "db");
  st_path(out, sizeof out, s->unit, "check.json");
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
    execl(cli, "sochdb", "check", "--json", db, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  if (pid < 0) return -1;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  char buf[1 << 16];
  FILE *f = fopen(out, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = 0;
  const char *p = strstr(buf, "\"files_checked\":");
  if (p) s->pc.files_checked += strtoull(p + 16, NULL, 10);
  int damaged = strstr(buf, "\"status\":\"damaged\"") != NULL;
  fprintf(log, "sochdb check: exit %d, %s\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
          damaged ? "DAMAGED" : p ? "clean" : "no result");
  if (damaged) return 1;
  return p ? 0 : -1;
}

/* The end of a power-loss cycle (every process dead): the crash state, the
** region gone with the power, the file checker on what is left. 0, or 1 when
** the checker found damage, -1 on a failure of ours. */
static int power_cut(sup *s, uint64_t *rng)
{
  char db[4300], state[4300], path[4400];
  st_path(db, sizeof db, s->c->dir, "db");
  st_path(state, sizeof state, s->c->dir, "powercut");
  FILE *log = fopen(st_path(path, sizeof path, s->unit, "powercut.log"), "w");
  if (!log) {
    perror(path);
    return -1;
  }
  if (pc_materialise(db, state, rng, log, &s->pc) != 0) {
    fclose(log);
    return -1;
  }
  if (s->sh->region_path[0] && unlink(s->sh->region_path) == 0) s->rebuilds++;
  int rc = file_check(s, log);
  fclose(log);
  if (rc > 0) {
    s->pc_damaged++;
    fprintf(stderr, "sochdb-stress: the file checker finds the crash state of a power cut damaged (see %s/check.json "
            "and %s)\n", s->unit, path);
  }
  if (rc < 0) fprintf(stderr, "sochdb-stress: the file checker did not run on the crash state (see %s/check.json)\n", s->unit);
  return rc;
}

/* One cycle: workers and kills, then (maybe) remove the region or cut the power, read the state, check. */
static int crash_cycle(sup *s, unsigned n, uint64_t *rng, char *prev_unit, crash_totals *t)
{
  char name[32], spec[96] = "";
  snprintf(name, sizeof name, "cycle-%04u", n);
  if (start_unit(s, name) != 0 || carry_state(s, prev_unit) != 0) return -1;
  unsigned kills0 = s->worker_kills, dkills0 = s->daemon_kills;
  int power = s->c->power_pct && st_below(rng, 100) < s->c->power_pct;
  int fault = s->c->fault_pct && st_below(rng, 100) < s->c->fault_pct;
  char logpath[4300];
  db_file(s, "sochdbd.log", logpath, sizeof logpath);
  long log0 = file_size(logpath);
  if (power || fault) replace_daemon(s);
  if (power) {
    char db[4300], state[4300];
    st_path(db, sizeof db, s->c->dir, "db");
    if (pc_baseline(db, st_path(state, sizeof state, s->c->dir, "powercut")) != 0) s->broken = 1;
  }
  if (fault) {
    pick_fault(rng, spec, sizeof spec);
    s->fault_cycles++;
  }
  if (s->broken) return -1;
  special_env(s, power, fault ? spec : NULL);
  int64_t t0 = st_now_ns();
  uint64_t done = run_cycle(s, rng);
  plain_env(power, fault);
  unsigned fired = fault ? count_fired(s, log0) : 0;
  uint64_t cut0 = s->pc.files_cut, names0 = s->pc.names_dropped + s->pc.names_restored,
           undone0 = s->pc.overwrites_undone;
  int removed = power;
  if (!power) {
    removed = st_below(rng, 100) < s->c->remove_pct;
    if (removed && s->sh->region_path[0] && unlink(s->sh->region_path) == 0) s->rebuilds++;
  } else if (!s->broken && power_cut(s, rng) < 0) {
    s->broken = 1;
  }
  if (s->broken) return -1;
  if (read_state(s, "final.state", 1) != 0) {
    if (power)
      fprintf(stderr, "sochdb-stress: the database did not reopen after the power cut of cycle %u (seed %llu): a "
              "crash state must be recovered, never refused as corrupt (see %s/powercut.log)\n", n,
              (unsigned long long)s->c->seed, s->unit);
    return -1;
  }
  write_meta(s, 1, removed, (double)(st_now_ns() - t0) / 1e9);
  stress_report before = t->rep;
  int rc = check_unit(s, &t->rep, 0);
  if (s->pc_damaged) rc = 1;
  char extra[256] = "";
  if (power)
    snprintf(extra, sizeof extra, "; POWER CUT: %llu files cut, %llu unsynced overwrites undone, %llu names dropped "
             "or restored", (unsigned long long)(s->pc.files_cut - cut0),
             (unsigned long long)(s->pc.overwrites_undone - undone0),
             (unsigned long long)(s->pc.names_dropped + s->pc.names_restored - names0));
  if (fault)
    snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "; fault %s %s", spec, fired ? "fired" : "not reached");
  printf("cycle %u/%u: %.1f s, %llu committed, %llu conflicts, %llu unknown (%llu committed); %u workers and the "
         "daemon %u times killed; region %s%s: %s\n", n, s->c->cycles, (double)(st_now_ns() - t0) / 1e9,
         (unsigned long long)(t->rep.committed - before.committed),
         (unsigned long long)(t->rep.conflicted - before.conflicted),
         (unsigned long long)(t->rep.unknown - before.unknown),
         (unsigned long long)(t->rep.unknown_present - before.unknown_present), s->worker_kills - kills0,
         s->daemon_kills - dkills0, removed ? "removed, rebuilt from the WAL" : "kept", extra,
         rc == 0 ? "ok" : "ANOMALIES");
  fflush(stdout);
  if (s->worker_failures) return -1;
  /* A daemon that cuts the power itself does so at its K-th durable step,
  ** K as low as 1: its start (a segment made of a kept file, flushed ones
  ** given back) can take them all before any commit of the cycle finished.
  ** It made progress; such a cycle proves no hang (three in a row of them
  ** failed a smoke run with "the engine hangs"), nor does it clear one. */
  if (done)
    t->stalled = 0;
  else if (!s->daemon_cut)
    t->stalled++;
  if (t->stalled >= 3) {
    fprintf(stderr, "sochdb-stress: 3 cycles in a row without a finished transaction: the engine hangs\n");
    s->broken = 1;
    return -1;
  }
  if (rc == 0 && !s->c->keep) prune(s, prev_unit);
  snprintf(prev_unit, 4200, "%s", s->unit);
  return rc;
}

static void print_crash_summary(const sup *s, const crash_totals *t, unsigned cycles, double seconds)
{
  printf("crash summary: %u cycles in %.0f s (%u with the region removed and rebuilt from the WAL), %u worker "
         "kills, %u daemon kills\n", cycles, seconds, s->rebuilds, s->worker_kills, s->daemon_kills);
  if (s->c->power_pct) {
    const pc_stats *p = &s->pc;
    printf("  power cuts: %u; files cut: %llu (%llu torn, %llu bytes torn), unsynced tails kept whole: %llu, "
           "bytes dropped: %llu; unsynced overwrites (over zeros or old bytes) undone: %llu, kept: %llu; names "
           "dropped: %llu, unlinks/renames undone: %llu; files shorter than durable: %llu\n",
           p->cuts, (unsigned long long)p->files_cut, (unsigned long long)p->files_torn,
           (unsigned long long)p->bytes_torn, (unsigned long long)p->files_kept, (unsigned long long)p->bytes_dropped,
           (unsigned long long)p->overwrites_undone, (unsigned long long)p->overwrites_kept,
           (unsigned long long)p->names_dropped, (unsigned long long)p->names_restored, (unsigned long long)p->shrunk);
    printf("  files checked after the power cuts: %llu, crash states damaged: %u\n",
           (unsigned long long)p->files_checked, s->pc_damaged);
  }
  if (s->c->fault_pct) {
    unsigned total = 0;
    for (int i = 0; i < 4; i++) total += s->faults_fired[i];
    printf("  faults injected: %u in %u fault cycles (wal.write %u, wal.short %u, wal.fsync %u, sst.write %u)\n",
           total, s->fault_cycles, s->faults_fired[0], s->faults_fired[1], s->faults_fired[2], s->faults_fired[3]);
  }
  printf("  acknowledged commits lost: %llu, half-present transactions: %llu\n",
         (unsigned long long)t->rep.anomalies[CK_LOST_COMMIT], (unsigned long long)t->rep.anomalies[CK_HALF_PRESENT]);
  stress_report_print(stdout, &t->rep);
}

int st_run_crash(const st_cfg *c)
{
  sup s = { .c = c };
  st_shared *sh = shared_alloc();
  printf("sochdb-stress crash: %u cycles of ~%u ms, %d workers, %u%% of cycles remove the region, %u%% cut the "
         "power, %u%% inject a fault, seed %llu\n  directory %s\n", c->cycles, c->cycle_ms, c->workers, c->remove_pct,
         c->power_pct, c->fault_pct, (unsigned long long)c->seed, c->dir);
  char prev[4200], path[4400];
  ssize_t len = readlink("/proc/self/exe", s.bin, sizeof s.bin - 1);
  if (len > 0) {
    s.bin[len] = 0;
    char *slash = strrchr(s.bin, '/');
    if (slash) *slash = 0;
  }
  if (c->power_pct && access(st_path(path, sizeof path, s.bin, PC_LIB), R_OK) != 0) {
    fprintf(stderr, "sochdb-stress: --power-loss-pct needs %s (built with sochdb-stress)\n", path);
    return 2;
  }
  if (c->fault_pct && access(st_path(path, sizeof path, s.bin, "sochdbd-testing"), X_OK) != 0) {
    fprintf(stderr, "sochdb-stress: --fault-pct needs %s (built with the tests: SOCHDB_BUILD_TESTS)\n", path);
    return 2;
  }
  if (!sh || setup(&s, sh) != 0 || start_unit(&s, "cycle-0000") != 0 || read_state(&s, "final.state", 0) != 0)
    return finish(&s, 0, c->dir);
  snprintf(prev, sizeof prev, "%s", s.unit);
  uint64_t rng = c->seed ^ UINT64_C(0x5DEECE66D);
  crash_totals t = { 0 };
  int64_t t0 = st_now_ns();
  int rc = 0;
  unsigned n = 0;
  while (rc == 0 && n < c->cycles) rc = crash_cycle(&s, ++n, &rng, prev, &t);
  kill_children(&s);
  print_crash_summary(&s, &t, n, (double)(st_now_ns() - t0) / 1e9);
  return finish(&s, rc == 0 && !s.worker_failures, rc ? s.unit : c->dir);
}
