/*
** daemonctl.c — finding, probing and starting the sochdbd of a database.
**
** A running daemon holds an exclusive flock() on DIR/LOCK (the kernel drops
** it when the daemon dies). A client probes with a non-blocking shared lock:
** refused means a daemon runs. To start one, the client takes DIR/LOCK.spawn
** exclusively (so of several openers exactly one spawns), probes again, then
** posix_spawn()s sochdbd and waits until it holds DIR/LOCK. posix_spawn runs
** no fork handlers and our descriptors are all close-on-exec, so the daemon
** inherits nothing of ours. The daemon detaches itself.
**
** Which sochdbd: sochdb_options.daemon_path, else $SOCHDB_DAEMON, else the
** one next to the library (or executable) this code is in, else the one in
** its installation's BINDIR (SOCHDB_LIB_TO_BINDIR), else $PATH.
**
** Tools and tests also ask the running daemon for a full compaction here.
*/
#include "internal.h"

#include "error.h"
#include "filelist.h" /* fl_wake_compactor */
#include "fsutil.h"
#include "testhooks.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SPAWN_WAIT_MS   5000
#define SPAWN_ATTEMPTS  3
#define DAEMON_RETRY_NS 1000000000ull   /* after a failed start, try again a second later */
/* The longest a start without a caller's deadline waits for what it spawned
** to exit: sochdbd's parent half waits at most 10 s for its daemon's
** verdict (REPORT_WAIT_MS in daemon/sochdbd.c), so only a program that does
** not detach (a wrapper running sochdbd --foreground, a hung binary) is
** still there past this. */
#define SPAWN_REPORT_NS 15000000000ull

static uint64_t clock_ns(clockid_t clock)
{
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* The probe's rate limit, read on every ASYNC commit: the coarse clock
** (a few milliseconds of resolution) reads a variable where the precise one
** reads the TSC, a third of the time (24 ns against 7 here). */
static uint64_t coarse_now_ns(void) { return clock_ns(CLOCK_MONOTONIC_COARSE); }

static void sleep_ms(unsigned ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* 1 if a daemon holds DIR/LOCK, 0 if not, -1 on error. */
static int daemon_running(int lock_fd)
{
  if (flock(lock_fd, LOCK_SH | LOCK_NB) == 0) {
    flock(lock_fd, LOCK_UN);
    return 0;
  }
  return errno == EWOULDBLOCK ? 1 : -1;
}

/* In a set-user-ID (or set-capability) program the environment is the
** unprivileged caller's: $SOCHDB_DAEMON, and $PATH, would name the program
** that we start with the privileges of the application. There (AT_SECURE),
** only the application's daemon_path or the sochdbd next to the library is
** started, like glibc's secure_getenv and the dynamic loader's rules. */
static void default_daemon_path(char *out, size_t n)
{
  int secure = getauxval(AT_SECURE) != 0;
  const char *env = secure ? NULL : getenv("SOCHDB_DAEMON");
  if (env && *env) {
    snprintf(out, n, "%s", env);
    return;
  }
  Dl_info info;
  if (dladdr((void *)default_daemon_path, &info) && info.dli_fname) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", info.dli_fname);
    const char *here = dirname(copy);
    snprintf(out, n, "%s/sochdbd", here);
    if (access(out, X_OK) == 0)
      return;
#ifdef SOCHDB_LIB_TO_BINDIR
    /* an installed library: cmake --install puts sochdbd in BINDIR, not LIBDIR */
    snprintf(out, n, "%s/%s/sochdbd", here, SOCHDB_LIB_TO_BINDIR);
    if (access(out, X_OK) == 0)
      return;
#endif
  }
  snprintf(out, n, secure ? "" : "sochdbd");   /* through $PATH; "": cannot start */
}

int sdb_daemon_lock_held(const sochdb *db) { return daemon_running(db->lock_fd); }

int sdb_daemon_setup(sochdb *db, const char *daemon_path, unsigned mode, int ensure)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/LOCK", db->dir);
  db->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode);
  if (db->lock_fd < 0)
    return sdb_fail_errno("open %s", path);
  sdb_apply_db_mode(db->dir, db->lock_fd, path);
  if (daemon_path)
    snprintf(db->daemon_path, sizeof db->daemon_path, "%s", daemon_path);
  else
    default_daemon_path(db->daemon_path, sizeof db->daemon_path);
  return ensure ? sdb_daemon_ensure(db) : SOCHDB_OK;
}

int sdb_daemon_lock_out(const char *dir, int *fd_out)
{
  *fd_out = -1;
  if (sdb_test_without_daemon())
    return SOCHDB_OK;
  char path[4200];
  snprintf(path, sizeof path, "%s/LOCK", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return sdb_fail_errno("open %s", path);
  sdb_apply_db_mode(dir, fd, path);
  unsigned waited = 0;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (waited >= 10000) {
      close(fd);
      return sdb_fail(SOCHDB_BUSY, "the sochdbd of a previous region of %s did not exit within 10 s", dir);
    }
    sleep_ms(2);
    waited += 2;
  }
  *fd_out = fd;
  return SOCHDB_OK;
}

/* 1 if process pid holds the exclusive flock on the file lock_fd is open
** on, by /proc/locks ("N: FLOCK ADVISORY WRITE pid maj:min:inode ..."). */
static int holds_flock(int lock_fd, long pid)
{
  struct stat st;
  FILE *f = fstat(lock_fd, &st) == 0 ? fopen("/proc/locks", "re") : NULL;
  if (!f)
    return 0;
  char line[256];
  int held = 0;
  while (!held && fgets(line, sizeof line, f)) {
    long holder;
    unsigned maj, min;
    unsigned long ino;
    held = sscanf(line, "%*d: FLOCK %*s WRITE %ld %x:%x:%lu", &holder, &maj, &min, &ino) == 4 && holder == pid &&
           maj == major(st.st_dev) && min == minor(st.st_dev) && ino == (unsigned long)st.st_ino;
  }
  fclose(f);
  return held;
}

/* The pid written in LOCK (open as lock_fd) if that process is a sochdbd
** that holds LOCK's flock now: a pid left by a daemon that died, and since
** given to another daemon (of another database), is not ours to signal.
** comm is the executable's name cut to 15 bytes: sochdbd, sochdbd-testing. */
static pid_t lock_holder_pid(int lock_fd)
{
  char buf[32] = "", path[64], comm[32] = "";
  ssize_t n = pread(lock_fd, buf, sizeof buf - 1, 0);
  long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
  if (pid <= 0)
    return 0;
  snprintf(path, sizeof path, "/proc/%ld/comm", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return 0;
  int ok = fgets(comm, sizeof comm, f) && !strncmp(comm, "sochdbd", 7);
  fclose(f);
  return ok && holds_flock(lock_fd, pid) ? (pid_t)pid : 0;
}

static int open_lock_file(const char *dir)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/LOCK", dir);
  return open(path, O_RDONLY | O_CLOEXEC);
}

pid_t sdb_daemon_pid(const char *dir)
{
  int fd = open_lock_file(dir);
  if (fd < 0)
    return 0;
  pid_t pid = daemon_running(fd) == 1 ? lock_holder_pid(fd) : 0;
  close(fd);
  return pid;
}

int sdb_daemon_stop(const char *dir, int sig, unsigned timeout_ms)
{
  int fd = open_lock_file(dir);
  if (fd < 0)
    return errno == ENOENT ? SOCHDB_OK : sdb_fail_errno("open %s/LOCK", dir);
  pid_t signalled = 0;
  uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
  int running;
  /* The pid is read again each time round: a daemon that is starting holds
  ** the lock a moment before it writes its pid. */
  while ((running = daemon_running(fd)) == 1 && now_ns() < deadline) {
    pid_t pid = lock_holder_pid(fd);
    if (pid && pid != signalled && kill(pid, sig) == 0)
      signalled = pid;
    sleep_ms(1);
  }
  close(fd);
  if (running == 1)
    return sdb_fail(SOCHDB_BUSY, "the sochdbd of %s (pid %d) did not stop within %u ms", dir, (int)signalled,
                    timeout_ms);
  return running == 0 ? SOCHDB_OK : sdb_fail_errno("flock %s/LOCK", dir);
}

/* posix_spawn the daemon with its output appended to DIR/sochdbd.log, and
** reap the short-lived parent half (the daemon forks itself away). With a
** deadline (deadline_ns not 0), a parent half still waiting for its daemon
** then is killed and reaped: the daemon it forked, if any, starts on by
** itself (its report fails with EPIPE), and the caller keeps its bound. */
static int spawn_daemon(sochdb *db, uint64_t deadline_ns)
{
  char log[4200];
  snprintf(log, sizeof log, "%s/sochdbd.log", db->dir);
  int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);   /* the database's mode */
  if (logfd >= 0) {
    sdb_apply_db_mode(db->dir, logfd, log);
    close(logfd);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  /* The application's descriptors without close-on-exec (a prefork server's
  ** listening socket, a test's pipe) must not live on in the daemon. */
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  /* Nor the application's blocked or ignored signals (a CLI waiting in
  ** sigsuspend blocks SIGTERM, a server may ignore SIGHUP): the daemon must
  ** stop on SIGTERM whoever started it. */
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char *argv[] = { "sochdbd", db->dir, NULL };
  /* A set-user-ID application's daemon runs with its privileges but is no
  ** secure program itself: it must not take its settings ($SOCHDB_SHM_DIR,
  ** the $SOCHDB_DAEMON it starts a successor with) from the caller. */
  char **env = environ, **clean = NULL;
  if (getauxval(AT_SECURE)) {
    size_t n = 0, k = 0;
    while (environ[n])
      n++;
    clean = calloc(n + 1, sizeof *clean);
    for (size_t i = 0; clean && i < n; i++)
      if (strncmp(environ[i], "SOCHDB_", 7) != 0)
        clean[k++] = environ[i];
    env = clean;
  }
  pid_t pid;
  int err = !env ? ENOMEM
        : strchr(db->daemon_path, '/') ? posix_spawn(&pid, db->daemon_path, &fa, &at, argv, env)
                                       : posix_spawnp(&pid, db->daemon_path, &fa, &at, argv, env);
  free(clean);
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  if (err) {
    errno = err;
    return sdb_fail(SOCHDB_DAEMON, "cannot start %s for %s: %s", db->daemon_path, db->dir, strerror(err));
  }
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid, &status, deadline_ns ? WNOHANG : 0);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR) {
      /* ECHILD: the application reaps children itself (SIGCHLD ignored):
      ** no verdict; the caller probes DIR/LOCK. */
      status = 0;
      break;
    }
    if (w == 0 && now_ns() >= deadline_ns) {
      /* A daemon that serves without having detached (or whose parent half
      ** is slow to exit) is left to serve: killing it would take away the
      ** daemon we waited for. Unreaped, it stays a zombie of ours once it
      ** exits, which is better than an open that never returns. */
      if (daemon_running(db->lock_fd) == 1)
        return SOCHDB_OK;
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
      return sdb_fail(SOCHDB_DAEMON, "%s %s had not reported whether it serves by the caller's deadline (see %s)",
                      db->daemon_path, db->dir, log);
    }
    if (w == 0)
      sleep_ms(1);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return sdb_fail(SOCHDB_DAEMON, "%s %s exited with status %d (see %s)", db->daemon_path, db->dir,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1, log);
  return SOCHDB_OK;
}

/* Spawn one daemon. Its parent half exits 0 only once the daemon holds
** DIR/LOCK with its pid written, or found another daemon serving: a lock
** nobody holds now means that daemon died since (killed, or gone idle).
** Report it at once, so that the caller spawns again while it holds the
** spawn lock, instead of waiting for a lock the dead daemon will never
** take while every other opener waits for the spawn lock and gives up. */
static int spawn_one(sochdb *db, uint64_t deadline_ns)
{
  int rc = spawn_daemon(db, deadline_ns);
  if (rc == SOCHDB_OK && daemon_running(db->lock_fd) != 1)
    rc = sdb_fail(SOCHDB_DAEMON, "%s reported that it serves %s, then was gone (see %s/sochdbd.log)",
                  db->daemon_path, db->dir, db->dir);
  return rc;
}

/* deadline_ns: 0, or when the caller gives up (SYNC commits: their
** documented bound); then no attempt starts, nor is waited for, past it. */
static int start_daemon(sochdb *db, unsigned max_wait_ms, uint64_t deadline_ns)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/LOCK.spawn", db->dir);
  /* Not inherited by a child that another thread forks meanwhile: it would
  ** hold the spawn lock for as long as it lives, and nobody could start a
  ** daemon for this directory again until it exits. */
  struct sdb_fork_fd spawn;
  int spawn_fd = sdb_fork_fd_open(&spawn, path, O_RDWR | O_CREAT, 0600);
  if (spawn_fd < 0)
    return sdb_fail_errno("open %s", path);
  sdb_apply_db_mode(db->dir, spawn_fd, path);
  int rc = SOCHDB_OK, locked;
  unsigned waited = 0;
  /* Bounded: a starter stopped in a debugger must not hang everyone. */
  while (!(locked = flock(spawn_fd, LOCK_EX | LOCK_NB) == 0) && waited < max_wait_ms) {
    sleep_ms(2);
    waited += 2;
  }
  if (!locked) {
    if (daemon_running(db->lock_fd) != 1)   /* a slow start may have come to serve by now */
      rc = sdb_fail(SOCHDB_DAEMON, "another process has been starting the daemon of %s for %u ms", db->dir,
                    waited);
  } else {
    CALLPOINT("daemon.spawn_locked");   /* tests/test_wal_crash.c: a worker forked now */
    /* A daemon killed while it starts (a kill -9 aimed at the daemon of
    ** this directory, say) reports failure like one that cannot start: try
    ** a few times before telling the caller, so that one kill never makes
    ** an open or a commit fail. */
    for (unsigned attempt = 0; attempt < SPAWN_ATTEMPTS && daemon_running(db->lock_fd) == 0 &&
                               (!deadline_ns || now_ns() < deadline_ns); attempt++)
      rc = spawn_one(db, deadline_ns ? deadline_ns : now_ns() + SPAWN_REPORT_NS);
    if (rc != SOCHDB_OK && daemon_running(db->lock_fd) == 1)
      rc = SOCHDB_OK;   /* a daemon serves the directory after all */
  }
  sdb_fork_fd_close(&spawn);   /* drops the spawn lock */
  return rc;
}

static int ensure(sochdb *db, unsigned max_wait_ms, int bounded);

int sdb_daemon_ensure(sochdb *db) { return ensure(db, SPAWN_WAIT_MS, 0); }

int sdb_daemon_ensure_within(sochdb *db, unsigned max_wait_ms) { return ensure(db, max_wait_ms, 1); }

static int ensure(sochdb *db, unsigned max_wait_ms, int bounded)
{
  if (sdb_test_without_daemon())
    return SOCHDB_OK;
  /* Called from wait loops: probe at most every 20 ms. relaxed: a hint. */
  uint64_t now = coarse_now_ns(), last = atomic_load_explicit(&db->daemon_probe_ns, memory_order_relaxed);
  if (last && now - last < 20000000ull)
    return SOCHDB_OK;
  atomic_store_explicit(&db->daemon_probe_ns, now, memory_order_relaxed);
  int running = daemon_running(db->lock_fd);
  if (running < 0)
    return sdb_fail_errno("probe %s/LOCK", db->dir);
  if (running)
    return SOCHDB_OK;
  /* A daemon that cannot start (a damaged log, a missing binary) must not
  ** be respawned by every waiting client every few milliseconds. relaxed: a hint. */
  if (now < atomic_load_explicit(&db->daemon_retry_ns, memory_order_relaxed))
    return sdb_fail(SOCHDB_DAEMON, "the daemon of %s failed to start less than a second ago (see %s/sochdbd.log)",
                    db->dir, db->dir);
  unsigned wait_ms = max_wait_ms ? max_wait_ms : 1;
  int rc = start_daemon(db, wait_ms, bounded ? now_ns() + (uint64_t)wait_ms * 1000000u : 0);
  if (rc != SOCHDB_OK)
    atomic_store_explicit(&db->daemon_retry_ns, coarse_now_ns() + DAEMON_RETRY_NS, memory_order_relaxed);
  return rc;
}

uint64_t sdb_full_compaction_request(sochdb *db)
{
  struct shm_global_stats *g = &db->region.hdr->stats;
  /* release: the compactor reads the request with acquire, so whatever the
  ** asker did first (a memtable rotated for the flusher) is visible to the
  ** pick that answers it. */
  uint64_t ticket = atomic_fetch_add_explicit(&g->full_compaction_requested, 1, memory_order_release) + 1;
  fl_wake_compactor(&db->region);
  return ticket;
}

int sdb_full_compaction_done(const sochdb *db, uint64_t ticket)
{
  /* acquire: pairs with the compactor's release store of the ticket, so that
  ** the asker's reads after this see the file list the compaction installed. */
  return atomic_load_explicit(&db->region.hdr->stats.full_compaction_done, memory_order_acquire) >= ticket;
}
