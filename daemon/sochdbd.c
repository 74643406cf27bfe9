/*
** sochdbd.c — the sochdb helper daemon of one database directory.
**
** It owns the slow serial work for every process using the database:
**  - the WAL writer thread: group commit of everything published, one
**    fdatasync per group, durable_seq published and SYNC committers woken
**    (walwriter.c); ASYNC commits are durable within --sync-delay-ms;
**  - the reaper: slots of dead client processes reclaimed every interval.
** Flushing and compaction join it with the SSTables.
**
** Idle, it hardly wakes: the writer dozes after IDLE_AFTER_MS without work
** (an ASYNC commit wakes it, durable_nudge), and the flusher and compactor
** sleep longer each idle round, up to IDLE_MAX_MS, on the futex words that
** a rotation and a new file list (or a full compaction asked for) change.
**
** Lifecycle: it holds an exclusive flock on DIR/LOCK (with its pid written
** there) for as long as it serves; a second daemon for the same directory
** exits at once. sochdb_open starts it when none runs. It exits by itself
** --idle-exit-ms after the last client detached (default 30 s, or
** $SOCHDB_DAEMON_IDLE_MS) once what was published is written, when its
** directory disappears, and on SIGTERM or
** SIGINT, after writing and syncing what was published. SIGHUP opens
** DIR/sochdbd.log again (log rotation).
**
** Usage: sochdbd [--foreground] [--interval-ms N] [--idle-exit-ms N] [--sync-delay-ms N] DIR
*/
#include "internal.h"

#include "compactor.h"
#include "durable.h"
#include "flusher.h"
#include "filelist.h"
#include "fsutil.h"
#include "futex.h"
#include "pagesize.h"
#include "arena.h"
#include "slots.h"
#include "store.h"
#include "testhooks.h"
#include "walwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct config {
  const char *dir;
  int         foreground;
  unsigned    interval_ms;     /* reaper period */
  unsigned    idle_exit_ms;
  unsigned    sync_delay_ms;   /* longest an ASYNC commit waits to be written */
  unsigned    compact_rate_mb; /* compaction read rate limit, MiB/s (0 = none) */
  unsigned    l0_trigger;
  unsigned    l0_unthrottle;   /* UINT_MAX: 3 x l0_trigger */
  unsigned    l0_stop;         /* UINT_MAX: 9 x l0_trigger */
  unsigned    level_ratio;
  unsigned    spare_ms;        /* a recycled arena keeps its pages this long (0 = never) */
  unsigned    compress_from;   /* store_compresses */
};

static volatile sig_atomic_t stop_requested;
static _Atomic int writer_stop;

static volatile sig_atomic_t log_reopen_requested;

static void on_signal(int sig) { (void)sig; stop_requested = 1; }
static void on_hangup(int sig) { (void)sig; log_reopen_requested = 1; }

static void usage(FILE *out)
{
  fprintf(out, "usage: sochdbd [--foreground] [--interval-ms N] [--idle-exit-ms N] [--sync-delay-ms N]\n"
               "               [--compaction-rate-mb N] [--l0-trigger N] [--l0-unthrottle N] [--l0-stop N]\n"
               "               [--level-ratio N] [--spare-ms N] [--compress-from-level N] DIR\n"
               "  Serves the sochdb database in DIR: WAL group commit, flushing memtables to\n"
               "  SSTables, leveled compaction, reaping dead clients.\n"
               "  --foreground        do not detach (for service managers); log to stderr\n"
               "  --interval-ms N     how often to reap dead client processes (default 100; 1..60000)\n"
               "  --idle-exit-ms N    exit this long after the last client left (default 30000,\n"
               "                      or $SOCHDB_DAEMON_IDLE_MS; 0 = never; up to 86400000)\n"
               "  --sync-delay-ms N   longest delay before an ASYNC commit is durable (default 5; 1..1000)\n"
               "  --compaction-rate-mb N  compaction reads at most N MiB/s (default 64; 0 = no limit;\n"
               "                      up to 1000000)\n"
               "  --l0-trigger N      level-0 files that start a compaction (default 4; 2..1000)\n"
               "  --l0-unthrottle N   level-0 files at which compactions read at full speed, the\n"
               "                      rate limit aside (default 3 x --l0-trigger; 0 = never;\n"
               "                      otherwise --l0-trigger..2048); also at --l0-stop\n"
               "  --l0-stop N         level-0 files at which flushes wait for compaction, and\n"
               "                      writers stall behind them (default 9 x --l0-trigger;\n"
               "                      0 = never; otherwise --l0-trigger..2048)\n"
               "  --level-ratio N     size ratio between adjacent levels (default 10; 2..1000)\n"
               "  --spare-ms N        a flushed memtable's arena keeps its pages this long for the\n"
               "                      next one (default 1000; 0 = give them back at once; up to 60000)\n"
               "  --compress-from-level N  SSTables of level N and deeper LZ4-compress their\n"
               "                      key-value blocks; levels 0..N-1 store them as they are\n"
               "                      (default 2; 0 = every level; 8 = none; columnar\n"
               "                      segments are compressed at every level)\n"
               "  SIGTERM or SIGINT stops it once what was published is durable; SIGHUP opens\n"
               "  DIR/sochdbd.log again (log rotation).\n");
}

/* The number s for `name`, min..max, into *out: 0, or -1 after saying why. */
static int parse_uint(const char *name, const char *s, unsigned min, unsigned max, unsigned *out)
{
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end || s[0] == '-' || v < min || v > max) {
    fprintf(stderr, "sochdbd: %s takes %u..%u\n", name, min, max);
    return -1;
  }
  *out = (unsigned)v;
  return 0;
}

/* --l0-unthrottle and --l0-stop: their defaults follow --l0-trigger, and a
** value below it (but 0, never) would act before a compaction is due; above
** the region's file lists (FL_MAX_FILES, which parse_uint holds them to)
** it would never act, since flushes wait there already (store_check_room). */
static int level0_limits(struct config *c)
{
  struct { const char *name; unsigned *v; unsigned times; } lim[] = {
    { "--l0-unthrottle", &c->l0_unthrottle, 3 }, { "--l0-stop", &c->l0_stop, 9 } };
  for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
    if (*lim[i].v == UINT_MAX)
      *lim[i].v = lim[i].times * c->l0_trigger < FL_MAX_FILES ? lim[i].times * c->l0_trigger : FL_MAX_FILES;
    else if (*lim[i].v && *lim[i].v < c->l0_trigger) {
      fprintf(stderr, "sochdbd: %s takes 0 or --l0-trigger (%u)..%u\n", lim[i].name, c->l0_trigger, FL_MAX_FILES);
      return 2;
    }
  }
  return 0;
}

static int parse_args(int argc, char **argv, struct config *c)
{
  const char *idle = getenv("SOCHDB_DAEMON_IDLE_MS");
  *c = (struct config){ NULL, 0, 100, 30000, 5, 64, 4, UINT_MAX, UINT_MAX, 10, 1000, STORE_COMPRESS_FROM_LEVEL };
  if (idle && parse_uint("$SOCHDB_DAEMON_IDLE_MS", idle, 0, 86400000u, &c->idle_exit_ms) != 0)
    return 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (!strcmp(a, "--foreground"))
      c->foreground = 1;
    else if (!strcmp(a, "--interval-ms") && has_value) {
      if (parse_uint(a, argv[++i], 1, 60000, &c->interval_ms) != 0)
        return 2;
    } else if (!strcmp(a, "--idle-exit-ms") && has_value) {
      if (parse_uint(a, argv[++i], 0, 86400000u, &c->idle_exit_ms) != 0)
        return 2;
    } else if (!strcmp(a, "--sync-delay-ms") && has_value) {
      if (parse_uint(a, argv[++i], 1, 1000, &c->sync_delay_ms) != 0)
        return 2;
    } else if (!strcmp(a, "--compaction-rate-mb") && has_value) {
      if (parse_uint(a, argv[++i], 0, 1000000, &c->compact_rate_mb) != 0)
        return 2;
    } else if (!strcmp(a, "--l0-trigger") && has_value) {
      if (parse_uint(a, argv[++i], 2, 1000, &c->l0_trigger) != 0)
        return 2;
    } else if (!strcmp(a, "--l0-unthrottle") && has_value) {
      if (parse_uint(a, argv[++i], 0, FL_MAX_FILES, &c->l0_unthrottle) != 0)
        return 2;
    } else if (!strcmp(a, "--l0-stop") && has_value) {
      if (parse_uint(a, argv[++i], 0, FL_MAX_FILES, &c->l0_stop) != 0)
        return 2;
    } else if (!strcmp(a, "--level-ratio") && has_value) {
      if (parse_uint(a, argv[++i], 2, 1000, &c->level_ratio) != 0)
        return 2;
    } else if (!strcmp(a, "--spare-ms") && has_value) {
      if (parse_uint(a, argv[++i], 0, 60000, &c->spare_ms) != 0)
        return 2;
    } else if (!strcmp(a, "--compress-from-level") && has_value) {
      if (parse_uint(a, argv[++i], 0, MANIFEST_LEVELS, &c->compress_from) != 0)
        return 2;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    } else if (a[0] == '-' || c->dir) {
      usage(stderr);
      return 2;
    } else
      c->dir = a;
  }
  if (!c->dir) {
    usage(stderr);
    return 2;
  }
  return level0_limits(c);
}

/* Take DIR/LOCK. A prober holds it shared for an instant, so retry a while
** before concluding that another daemon serves the directory. */
static int take_lock(const char *dir, struct stat *st)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/LOCK", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "sochdbd: open %s: %s\n", path, strerror(errno));
    return -1;
  }
  sdb_apply_db_mode(dir, fd, path);
  for (int i = 0; i < 50; i++) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, st) == 0)
      return fd;
    struct timespec ts = { 0, 20000000 };
    nanosleep(&ts, NULL);
  }
  close(fd);
  return -2;
}

static void write_pid(int fd)
{
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) { /* informational only */ }
}

/* Let go of DIR/LOCK, our pid erased first (while we still hold it, so that
** it cannot erase a successor's): `kill -TERM "$(cat DIR/LOCK)"`, which
** docs/daemon.md gives to stop the daemon, must not find a pid of ours that
** the kernel may since have given to any other process. */
static void release_lock(int fd)
{
  if (ftruncate(fd, 0) != 0) { /* informational only */ }
  close(fd);
}

/* The longest an idle daemon thread sleeps between looks, and how long the
** writer finds nothing to write before it dozes. */
#define IDLE_MAX_MS   1000u
#define IDLE_AFTER_MS 100u

/* sochdbd-testing: $SOCHDB_TEST_IDLE_MS=N makes every idle sleep N ms from
** the first idle round on (the writer dozes at once), so that a test sees
** the wakes it causes and nothing else; $SOCHDB_TEST_IDLE_PAUSE_MS=N makes
** each idle round pause N ms between its look for work and its sleep, where
** a wake or a stop that lands must not be lost (tests/test_sochdbd.c). */
static unsigned idle_test_ms, idle_test_pause_ms;

#ifdef SOCHDB_TESTING
/* sochdbd-testing's timing hooks: $name in milliseconds (at most max), or
** fallback when it is unset or not such a number. */
static unsigned testing_ms(const char *name, unsigned max, unsigned fallback)
{
  unsigned ms;
  const char *env = getenv(name);
  return env && parse_uint(name, env, 0, max, &ms) == 0 ? ms : fallback;
}
#endif

static void sleep_ms(unsigned ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

static void idle_test_pause(void)
{
  if (idle_test_pause_ms)
    sleep_ms(idle_test_pause_ms);
}

struct writer_args {
  struct walwriter *w;
  unsigned          sync_delay_ms;
};

/* Each thread names itself, so that `top -H`, `ps -L` and perf tell the
** log's writer, the flusher and the compactor apart (the serving thread
** keeps the process's name). A name is a convenience: its failure is not
** an error. At most 15 bytes. */
static void name_this_thread(const char *name) { (void)pthread_setname_np(pthread_self(), name); }

static void *writer_loop(void *arg)
{
  struct writer_args *a = arg;
  name_this_thread("sochdbd-wal");
  unsigned failures = 0, idle_rounds = 0;
  int told_leaving = 0;
  for (;;) {
    int stopping = atomic_load(&writer_stop);
    /* Before the last passes: an ASYNC commit published after them finds
    ** us leaving, and sees to a successor itself (src/txn.c). */
    if (stopping && !told_leaving) {
      durable_writer_leaves(a->w->r);
      told_leaving = 1;
    }
    int rc = ww_write_pending(a->w);
    if (rc < 0) {
      if (stopping && failures >= 100) {   /* about 1 s: publish nothing more, let the daemon exit */
        ww_log(a->w->db->dir, "stopping with unwritten commits: the WAL keeps failing (%s)", sochdb_last_error());
        return NULL;
      }
      if (failures++ % 100 == 0)
        ww_log(a->w->db->dir, "WAL write failed (%s: %s); commits wait, retrying", sochdb_strerror(-rc),
               sochdb_last_error());
      struct timespec ts = { 0, 10000000 };
      nanosleep(&ts, NULL);
      continue;
    }
    if (failures && rc > 0) {
      ww_log(a->w->db->dir, "WAL writes work again after %u failures", failures);
      failures = 0;
    }
    if (stopping && rc == 0)
      return NULL;
    if (rc > 0) {
      idle_rounds = 0;
      continue;
    }
    /* Busy, a round every sync_delay_ms writes what ASYNC commits published
    ** meanwhile, one group for all of them; idle, the writer dozes until a
    ** commit (SYNC or ASYNC) wakes it. */
    idle_test_pause();
    int doze = idle_test_ms || idle_rounds * a->sync_delay_ms >= IDLE_AFTER_MS;
    unsigned doze_ms = idle_test_ms ? idle_test_ms : IDLE_MAX_MS;
    int woken = durable_wait_kick(a->w->r, doze ? doze_ms : a->sync_delay_ms, doze);
    idle_rounds = woken ? 0 : idle_rounds + (idle_rounds < IDLE_AFTER_MS);   /* saturates: never wraps */
  }
}

struct background {
  struct store     *s;
  struct flusher    f;
  struct compactor  c;
  _Atomic int       stop;
};

/* A background thread's loop: step while there is work; idle, sleep on the
** futex word that changes when work may come, first min_ms, twice as long
** each idle round after, up to max_ms. A wake, or work done, starts again at
** min_ms. A failed step is retried after fail_ms, and after twice as long
** each time it fails again, up to fail_max_ms: a compaction that meets a
** damaged table fails until the table is replaced, and each try reads its
** inputs again. */
struct bg_task {
  struct background *b;
  int              (*step)(struct bg_task *t);   /* > 0 did work, 0 none, < 0 -error */
  _Atomic uint32_t  *word;
  unsigned           min_ms, max_ms, fail_ms, fail_max_ms;
  unsigned           retry_ms;   /* the wait after a failure now: fail_ms .. fail_max_ms */
};

/* Sleep ms, in slices that look at the stop flag: a stop does not wait out
** a long retry. */
static void bg_pause(struct bg_task *t, unsigned ms)
{
  while (ms && !atomic_load(&t->b->stop)) {
    unsigned slice = ms < 100 ? ms : 100;
    struct timespec ts = { 0, (long)slice * 1000000L };
    nanosleep(&ts, NULL);
    ms -= slice;
  }
}

static void bg_run(struct bg_task *t)
{
  if (idle_test_ms)
    t->min_ms = t->max_ms = idle_test_ms;
  unsigned idle_ms = t->min_ms;
  t->retry_ms = t->fail_ms;
  while (!atomic_load(&t->b->stop)) {
    /* acquire, and before the step looks: work that comes after the look
    ** changes the word first, and the sleep below then fails at once */
    uint32_t seen = atomic_load_explicit(t->word, memory_order_acquire);
    int rc = t->step(t);
    if (rc < 0) {
      bg_pause(t, t->retry_ms);
      t->retry_ms = t->retry_ms >= t->fail_max_ms / 2 ? t->fail_max_ms : t->retry_ms * 2;
      continue;
    }
    t->retry_ms = t->fail_ms;
    if (rc > 0) {
      idle_ms = t->min_ms;
    } else {
      idle_test_pause();
      int woken = shm_futex_wait_ms(t->word, seen, idle_ms);
      idle_ms = woken ? t->min_ms : idle_ms >= t->max_ms / 2 ? t->max_ms : idle_ms * 2;
    }
  }
}

/* A background step's result rc: failures in a row are logged the 1st,
** 2nd, 4th, 8th ... time and every 100th, with the wait before the next
** try (a lasting one would otherwise fill the log); *failures counts them,
** a success resets it. */
static int note_step(struct bg_task *t, unsigned *failures, const char *what, int rc)
{
  if (rc >= 0) {
    *failures = 0;
    return rc;
  }
  unsigned n = ++*failures;
  if ((n & (n - 1)) == 0 || n % 100 == 0)
    ww_log(t->b->s->db->dir, "%s failed (%s: %s); retrying in %u ms (%u time%s so far)", what,
           sochdb_strerror(-rc), sochdb_last_error(), t->retry_ms, n, n == 1 ? "" : "s");
  return rc;
}

static int flush_step(struct bg_task *t)
{
  static unsigned failures;   /* one flusher thread */
  if (store_failed(t->b->s))
    return 0;   /* the daemon is leaving (serve): flushing again would only pile up tables */
  return note_step(t, &failures, "flush", flusher_step(&t->b->f));
}

static int compact_step(struct bg_task *t)
{
  static unsigned failures;   /* one compactor thread */
  return store_failed(t->b->s) ? 0 : note_step(t, &failures, "compaction", compactor_step(&t->b->c));
}

/* Flushing: a rotation (arena_rotate) changes active_memtable and wakes us,
** and so does a writer that waits for room. */
static void *flush_loop(void *arg)
{
  struct background *b = arg;
  name_this_thread("sochdbd-flush");
  /* a failed flush holds writers up: retried every 100 ms, however often */
  struct bg_task t = { b, flush_step, &b->s->r->hdr->active_memtable, 5, IDLE_MAX_MS, 100, 100, 0 };
#ifdef SOCHDB_TESTING
  if (b->f.trim_eager)
    t.max_ms = t.min_ms;   /* tests meet trims at every round */
#endif
  bg_run(&t);
  return NULL;
}

/* Compacting: a new file list, or a full compaction asked for, changes
** files_futex and wakes us (filelist.h). */
static void *compact_loop(void *arg)
{
  struct background *b = arg;
  name_this_thread("sochdbd-compact");
  struct bg_task t = { b, compact_step, &b->s->r->hdr->files_futex, 20, IDLE_MAX_MS, 500, 30000, 0 };
  bg_run(&t);
  return NULL;
}

/* Join thread t, waking it every 10 ms until it has ended: it may have read
** its stop flag just before the flag was set, and then a wake that comes
** before it sleeps changes no word it waits on (futex.h), so one wake is not
** enough. Looked for every millisecond: no deadline to compute. */
static void join_waking(pthread_t t, void (*wake)(void *arg), void *arg)
{
  for (unsigned ms = 0; pthread_tryjoin_np(t, NULL) != 0; ms++) {
    if (ms % 10 == 0)
      wake(arg);
    struct timespec pause = { 0, 1000000 };
    nanosleep(&pause, NULL);
  }
}

static void wake_background(void *arg)
{
  struct background *b = arg;
  shm_futex_wake_all(&b->s->r->hdr->active_memtable);
  shm_futex_wake_all(&b->s->r->hdr->files_futex);
}

static void wake_writer(void *arg) { durable_kick(arg); }

/* Stop the WAL writer thread once it has written what was published. */
static void stop_writer(pthread_t writer, sochdb *db)
{
  atomic_store(&writer_stop, 1);
  join_waking(writer, wake_writer, &db->region);
}

/* The directory we serve is gone or replaced: nobody can use us any more. */
static int directory_gone(const char *dir, const struct stat *lock_st)
{
  char path[4200];
  struct stat st;
  snprintf(path, sizeof path, "%s/LOCK", dir);
  return stat(path, &st) != 0 || st.st_ino != lock_st->st_ino || st.st_dev != lock_st->st_dev;
}

/* Our region file was removed or replaced (someone deleted it; a new opener
** rebuilt it from the WAL): we serve a region nobody will open again, so we
** must make way for a daemon of the new one. */
static int region_replaced(const sochdb *db)
{
  struct stat ours, named;
  return fstat(db->region.fd, &ours) != 0 || stat(db->region.path, &named) != 0 ||
         ours.st_ino != named.st_ino || ours.st_dev != named.st_dev;
}

static uint64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char DIRECTORY_REMOVED[] = "its directory was removed";
static const char IDLE_TIMEOUT[] = "no client for the idle timeout";

/* How the directory left the path we serve, once its LOCK did. */
enum dir_fate { DIR_MOVED, DIR_DELETED, DIR_OTHER };

/* Our LOCK still in our directory (dir_fd) means the directory was renamed;
** another LOCK there, that a new daemon serves it. With none, rm -r is
** deleting it (LOCK may go first): wait up to 2 s for the directory's own
** unlinking or for its sochdb.id to go, after which whatever opens DIR is a
** new database to which this region is stale. */
static enum dir_fate how_the_directory_went(int dir_fd, const struct stat *lock_st)
{
  for (int waited_ms = 0; waited_ms < 2000; waited_ms += 10) {
    struct stat st;
    if (dir_fd < 0 || fstat(dir_fd, &st) != 0)
      return DIR_OTHER;
    if (st.st_nlink == 0)
      return DIR_DELETED;
    if (fstatat(dir_fd, "LOCK", &st, AT_SYMLINK_NOFOLLOW) == 0)
      return st.st_ino == lock_st->st_ino && st.st_dev == lock_st->st_dev ? DIR_MOVED : DIR_OTHER;
    if (fstatat(dir_fd, SDB_ID_FILE, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
      return DIR_DELETED;
    nanosleep(&(struct timespec){ 0, 10 * 1000000L }, NULL);
  }
  return DIR_OTHER;
}

/* The database was deleted: nobody can open it again, and its region would
** hold its pages in memory until the next reboot, so remove it. A directory
** moved elsewhere keeps its region, which the next open there adopts. */
static void remove_region_of_deleted_database(sochdb *db, int dir_fd, const struct stat *lock_st, const char *dir)
{
  enum dir_fate fate = how_the_directory_went(dir_fd, lock_st);
  if (fate != DIR_DELETED) {
    ww_log(dir, "the directory %s: its region %s stays",
           fate == DIR_MOVED ? "was moved" : "was not deleted (only its LOCK was removed or replaced)",
           db->region.path);
    return;
  }
  int rc = shm_region_unlink(&db->region);
  if (rc > 0)
    ww_log(dir, "the database was deleted: removed its region %s", db->region.path);
  else if (rc < 0)
    ww_log(dir, "the database was deleted, but its region %s could not be removed: %s", db->region.path,
           strerror(errno));
}

/* Detached, keep nothing of the starter's standard streams: a shell's
** $(sochdbd DIR), an ssh session or a supervisor that reads our output
** waits for end-of-file on the pipe it gave us, which we would hold for as
** long as we serve (forever with --idle-exit-ms 0). From the moment we
** serve, we log where a client that starts us puts our output anyway:
** DIR/sochdbd.log. Start-up failures before that still reach the starter.
** Again on SIGHUP: logrotate moved the log, and we open a new one. */
static void leave_the_starters_streams(const char *dir)
{
  char log[4200];
  snprintf(log, sizeof log, "%s/sochdbd.log", dir);
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (out >= 0)
    sdb_apply_db_mode(dir, out, log);
  else
    out = null;
  if (null >= 0)
    dup2(null, 0);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  if (out >= 0 && out != null)
    close(out);
  if (null >= 0)
    close(null);
}

static const char *serve(sochdb *db, struct store *s, const struct config *c, const struct stat *lock_st)
{
  struct timespec pause = { c->interval_ms / 1000, (long)(c->interval_ms % 1000) * 1000000L };
  uint64_t idle_since = now_ms();
  for (;;) {
    if (stop_requested)
      return "signal";
    if (log_reopen_requested) {
      log_reopen_requested = 0;
      if (!c->foreground) {   /* a foreground daemon's streams are its service manager's */
        leave_the_starters_streams(c->dir);
        ww_log(c->dir, "opened its log again (SIGHUP)");
      }
    }
    if (directory_gone(c->dir, lock_st))
      return DIRECTORY_REMOVED;
    if (region_replaced(db))
      return "its shared region was removed or replaced";
    if (store_failed(s))
      return "the MANIFEST could not be written, or its file list published (see above): the next daemon "
             "reads it again";
    unsigned reaped = slots_reap_all(&db->region, db->slot);
    if (reaped)
      ww_log(c->dir, "reclaimed the slots of %u dead process(es)", reaped);
    slots_compute_horizon(&db->region);
    /* Not idle while published commits wait for the log (it fails: a full
    ** disk): told to stop, the writer gives them up after about a second,
    ** and ASYNC commits acknowledged before it marked itself leaving would
    ** wait, not durable, for whoever opens the database next. Their
    ** committers may have left: only we can still write them. */
    sochdb_stats st;
    if (sochdb_stats_get(db, &st) == SOCHDB_OK && (st.processes_attached > 0 || st.durable_seq < st.last_commit_seq))
      idle_since = now_ms();
    else if (c->idle_exit_ms && now_ms() - idle_since >= c->idle_exit_ms)
      return IDLE_TIMEOUT;
    nanosleep(&pause, NULL);
  }
}

/* Detach from whoever started us. The parent half waits (at most 10 s) until
** the child reports through a pipe that it serves (holds DIR/LOCK with its pid
** written) or gave up, and exits with that verdict: so a starter that reaped
** the parent knows whether the daemon runs, and finds the right pid. */
#define REPORT_WAIT_MS 10000u   /* how long the parent half waits for the daemon's verdict */

static int detach(int *report_fd)
{
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    return -1;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid > 0) {
    close(p[1]);
    struct pollfd pfd = { p[0], POLLIN, 0 };
    char verdict = 1;
    unsigned wait_ms = REPORT_WAIT_MS;
#ifdef SOCHDB_TESTING
    /* sochdbd-testing: $SOCHDB_TEST_REPORT_WAIT_MS=N gives up after N ms,
    ** so that a test of a start slower than that need not take 10 s */
    wait_ms = testing_ms("SOCHDB_TEST_REPORT_WAIT_MS", REPORT_WAIT_MS, REPORT_WAIT_MS);
#endif
    if (poll(&pfd, 1, (int)wait_ms) == 1 && read(p[0], &verdict, 1) != 1)
      verdict = 1;
    _exit(verdict);
  }
  close(p[0]);
  setsid();
  *report_fd = p[1];
  return 0;
}

/* Detached, hold nothing of the starter's working directory, so that its
** file system can be unmounted while we serve (daemon(3) does the same):
** the paths we take from it, DIR and $SOCHDB_SHM_DIR, made absolute first
** (a client's region path must stay the one we open). */
static int leave_the_starters_directory(struct config *c)
{
  static char abs_dir[4096];   /* lives as long as the process, freed by nothing */
  char *dir = sdb_absolute_path(c->dir);
  if (!dir)
    return -1;
  int fits = strlen(dir) < sizeof abs_dir;
  if (fits)
    memcpy(abs_dir, dir, strlen(dir) + 1);
  free(dir);
  if (!fits)
    return errno = ENAMETOOLONG, -1;
  c->dir = abs_dir;
  const char *shm = getenv("SOCHDB_SHM_DIR");
  if (shm && *shm && shm[0] != '/') {
    char *abs = sdb_absolute_path(shm);
    if (!abs || setenv("SOCHDB_SHM_DIR", abs, 1) != 0)
      return -1;
    free(abs);
  }
  return chdir("/");
}

static void report(int *fd, char verdict)
{
  if (*fd < 0)
    return;
  if (write(*fd, &verdict, 1) != 1) { /* the parent gave up waiting */ }
  close(*fd);
  *fd = -1;
}

/* Give up once DIR/LOCK is ours: let go of it before saying so. The
** starter looks at the lock after our verdict, and a lock still held (we
** have not exited yet) would tell it that a daemon serves. Only while none
** of our threads writes the log: another daemon may adopt it at once. */
static int give_up_locked(int *report_fd, int lock_fd)
{
  release_lock(lock_fd);
  report(report_fd, 1);
#ifdef SOCHDB_TESTING
  /* sochdbd-testing: $SOCHDB_TEST_GIVE_UP_PAUSE_MS=N lives on N ms after the
  ** verdict, so that a test's starter always probes the lock meanwhile */
  sleep_ms(testing_ms("SOCHDB_TEST_GIVE_UP_PAUSE_MS", 60000u, 0));
#endif
  return 1;
}

static void catch_stop_signals(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* SIGHUP, by a daemon's custom, asks for its log to be opened again (after
  ** logrotate moved it): it used to kill us, as the default action. */
  sa.sa_handler = on_hangup;
  sigaction(SIGHUP, &sa, NULL);
  /* A write to a pipe nobody reads must fail with EPIPE, not kill us: the
  ** report to a parent half that gave up waiting (a start slower than 10 s)
  ** killed a daemon that had just begun to serve, and so did every later
  ** one as slow; a --foreground daemon's stderr may be a pipe too. */
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  /* Likewise a write past RLIMIT_FSIZE must fail with EFBIG, which the WAL
  ** writer and the flusher log and retry, not kill us with SIGXFSZ: a daemon
  ** started by a client under `ulimit -f` died at its first WAL segment,
  ** silently, and so did each one started after it, while SYNC commits
  ** timed out pointing at a log that said nothing. */
  sigaction(SIGXFSZ, &sa, NULL);
  /* started by hand from a shell or a service manager that blocked them */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);
  sigprocmask(SIG_UNBLOCK, &stop, NULL);
}

#ifdef SOCHDB_TESTING
/* sochdbd-testing: $SOCHDB_TEST_CRASH_AT=NAME:N kills this daemon the Nth
** time it reaches crash point NAME (src/testhooks.h). */
static void arm_crash_point_from_env(void)
{
  const char *spec = getenv("SOCHDB_TEST_CRASH_AT");
  const char *colon = spec ? strchr(spec, ':') : NULL;
  if (!colon || colon - spec >= 64)
    return;
  char name[64];
  memcpy(name, spec, (size_t)(colon - spec));
  name[colon - spec] = 0;
  sochdb_test_crash_at(name, (unsigned)strtoul(colon + 1, NULL, 10));
}

/* sochdbd-testing: $SOCHDB_TEST_FAULT=NAME:ERRNO:SKIP:COUNT arms fault point
** NAME (src/testhooks.h): after SKIP passes, COUNT calls fail with ERRNO. */
static void arm_fault_from_env(void)
{
  const char *spec = getenv("SOCHDB_TEST_FAULT");
  char name[64];
  int err;
  unsigned skip, count;
  if (spec && sscanf(spec, "%63[^:]:%d:%u:%u", name, &err, &skip, &count) == 4)
    sochdb_test_fault(name, err, skip, count);
}
#endif

/* The daemon inherits the limits of whichever client happened to start it;
** a file size limit meant for that client's own files (`ulimit -f` in its
** shell) would cap the log and the tables of every client. The soft limit
** goes up to the hard one; past that, writes fail with EFBIG (SIGXFSZ is
** ignored: catch_stop_signals), and the log says so. */
static void lift_file_size_limit(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_FSIZE, &rl);   /* may not fail: the soft limit may always rise to the hard one */
  }
}

/* Each flush and compaction builds its tables in buffers of a few MiB (the
** spill buffer, the bloom's key hashes, the index) and frees them at the
** end. With glibc's defaults the largest came as fresh mmap()ed pages and
** freed heap went back to the kernel, so every table faulted all of them in
** and zeroed them anew: 17,399 page faults in 1.5 s of `sochdb-bench
** compare fill_batch`, on a virtual machine where a page's first touch
** costs about 10 us. Fixed thresholds keep up to 16 MiB at the top of each
** thread's malloc arena for the next table: 3,066 faults in that window,
** 10-15% less daemon CPU per put. The price is memory: after
** `sochdb-bench memory` the daemon's private memory is 37 MiB instead
** of 17 (malloc_trim does not shrink a thread's arena; an idle daemon
** exits after --idle-exit-ms anyway). */
static void keep_heap_for_reuse(void)
{
#if defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
#endif
}

int main(int argc, char **argv)
{
  /* Whoever started us may have leaked descriptors into us (a socket, a
  ** pipe someone waits on for EOF): we keep none of them. */
  close_range(3, ~0u, 0);
  /* A closed stdin, stdout or stderr is taken by /dev/null before anything
  ** is opened (sdb_open does it too, but later): else detach()'s report
  ** pipe gets 0 and 1 (`sochdbd DIR <&- >&-`), leave_the_starters_streams
  ** puts the log over its write end, and the starter hears end-of-file, no
  ** verdict, and exits 1 while we serve. */
  if (sdb_reserve_standard_fds() != 0)
    return 1;   /* nothing safe to write the reason to */
  /* From the first instruction on, SIGTERM only asks us to stop: a daemon
  ** told to stop while starting still writes what was published. */
  catch_stop_signals();
#ifdef SOCHDB_TESTING
  arm_crash_point_from_env();
  arm_fault_from_env();
#endif
  keep_heap_for_reuse();
  lift_file_size_limit();
  struct config c;
  int rc = parse_args(argc, argv, &c);
  if (rc)
    return rc;
  if (!c.foreground && leave_the_starters_directory(&c) != 0) {
    fprintf(stderr, "sochdbd: cannot resolve %s: %s\n", c.dir, strerror(errno));
    return 1;
  }
  int report_fd = -1;
  if (!c.foreground && detach(&report_fd) != 0) {   /* before open: a handle does not survive fork() */
    fprintf(stderr, "sochdbd: cannot detach: %s\n", strerror(errno));
    return 1;
  }
  /* The region first, the lock second: a daemon holds DIR/LOCK only once it
  ** is attached, so a process rebuilding the region knows that a lock
  ** holder serves an older region and must be waited for (recovery.c). */
  sochdb_options opts = { .create_if_missing = -1 };
  sochdb *db;
  rc = sdb_open(c.dir, &opts, 1, &db);
  if (rc != SOCHDB_OK) {
    ww_log(c.dir, "cannot open: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
    report(&report_fd, 1);
    return 1;
  }
  struct stat lock_st;
  int lock_fd = take_lock(c.dir, &lock_st);
  if (lock_fd < 0) {
    if (lock_fd == -2)
      fprintf(stderr, "sochdbd: another sochdbd serves %s\n", c.dir);
    sochdb_close(db);
    report(&report_fd, lock_fd == -2 ? 0 : 1);    /* another one serving is fine */
    return lock_fd == -2 ? 0 : 1;
  }
  if (region_replaced(db)) {      /* rebuilt while we waited for the lock: not ours to serve */
    ww_log(c.dir, "the region was rebuilt while this daemon started; leaving it to a new daemon");
    sochdb_close(db);
    return give_up_locked(&report_fd, lock_fd);
  }
  write_pid(lock_fd);
  /* Held to tell, when LOCK disappears, a deleted database from a moved one. */
  int dir_fd = open(c.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    ww_log(c.dir, "cannot open the directory (%s): if it is deleted, its region will stay", strerror(errno));
  struct walwriter w;
  rc = ww_open(&w, db);
  if (rc != SOCHDB_OK) {
    ww_log(c.dir, "cannot open the WAL: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
    sochdb_close(db);
    return give_up_locked(&report_fd, lock_fd);
  }
  /* Read before the writer starts: from then on w is the writer's alone, but
  ** for its table of closed segments, which the flusher reads under its lock.
  ** Logged once the streams are DIR/sochdbd.log (below): a daemon started by
  ** hand wrote these two lines to its starter's terminal, and its log, where
  ** docs/daemon.md sends whoever needs the "serving" line, lacked them. */
  char serving[160], pages[192], region_line[4500];
  snprintf(serving, sizeof serving,
           "serving (WAL at LSN %llu, durable through commit %llu; last segment read from offset %llu)",
           (unsigned long long)w.next_lsn, (unsigned long long)durable_seq(&db->region),
           (unsigned long long)w.adopted_from);
  snprintf(region_line, sizeof region_line, "region %s in %s pages (%s)", db->region.path,
           shm_page_bytes(db->region.path, pages, sizeof pages) == SHM_HUGE_PAGE_BYTES ? "2 MiB" : "4 KiB", pages);
#ifdef SOCHDB_TESTING
  const char *idle_env = getenv("SOCHDB_TEST_IDLE_MS");   /* before the threads that read it start */
  if (idle_env && parse_uint("$SOCHDB_TEST_IDLE_MS", idle_env, 0, 86400000u, &idle_test_ms) != 0)
    idle_test_ms = 0;
  const char *pause_env = getenv("SOCHDB_TEST_IDLE_PAUSE_MS");
  if (pause_env && parse_uint("$SOCHDB_TEST_IDLE_PAUSE_MS", pause_env, 0, 60000u, &idle_test_pause_ms) != 0)
    idle_test_pause_ms = 0;
#endif
  struct writer_args wa = { &w, c.sync_delay_ms };
  pthread_t writer;
  durable_writer_arrives(&db->region);   /* a stopped or killed predecessor may have left it leaving */
  if (pthread_create(&writer, NULL, writer_loop, &wa) != 0) {
    ww_log(c.dir, "cannot start the WAL writer thread");
    durable_writer_leaves(&db->region);   /* no writer after all: committers see to a successor */
    return give_up_locked(&report_fd, lock_fd);
  }
  struct store store;
  rc = store_open(&store, db);
  if (rc != SOCHDB_OK) {
    ww_log(c.dir, "cannot open the MANIFEST: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
    stop_writer(writer, db);
    return give_up_locked(&report_fd, lock_fd);
  }
  arena_adopt_retired(&db->region);   /* before any flush: see arena.h */
  store.copts.l0_trigger = c.l0_trigger;
  store.copts.level_ratio = c.level_ratio;
  store.compact_rate = (uint64_t)c.compact_rate_mb << 20;
  store.l0_unthrottle = c.l0_unthrottle;
  store.l0_stop = c.l0_stop;
  store.compress_from_level = c.compress_from;
  struct background bg = { .s = &store, .f = { .s = &store }, .c = { .s = &store } };
  bg.c.stop = &bg.stop;
  bg.f.stop = &bg.stop;
  bg.f.w = &w;   /* the segments it closes need not be read back */
  bg.f.spare_keep_ns = (uint64_t)c.spare_ms * 1000000u;
#ifdef SOCHDB_TESTING
  /* sochdbd-testing: $SOCHDB_TEST_TRIM_EAGER=1 trims a reused arena's
  ** tail at its fill point every round, so that tests meet trims often */
  bg.f.trim_eager = getenv("SOCHDB_TEST_TRIM_EAGER") != NULL;
  /* $SOCHDB_TEST_COMPACT_PAUSE_MS=N: each MiB a compaction reads takes N ms
  ** more, as on a slow disk, so that a test holds level 0 at its stop */
  bg.c.test_pause_ms = testing_ms("SOCHDB_TEST_COMPACT_PAUSE_MS", 60000u, 0);
#endif
  pthread_t flusher, compactor;
  int have_flusher = pthread_create(&flusher, NULL, flush_loop, &bg) == 0;
  if (!have_flusher || pthread_create(&compactor, NULL, compact_loop, &bg) != 0) {
    ww_log(c.dir, "cannot start the flush and compaction threads");
    atomic_store(&bg.stop, 1);
    if (have_flusher)
      join_waking(flusher, wake_background, &bg);
    stop_writer(writer, db);
    return give_up_locked(&report_fd, lock_fd);
  }
  if (!c.foreground)
    leave_the_starters_streams(c.dir);
  ww_log(c.dir, "%s", serving);
  ww_log(c.dir, "%s", region_line);
  report(&report_fd, 0);
  const char *why = serve(db, &store, &c, &lock_st);
  atomic_store(&bg.stop, 1);
  join_waking(compactor, wake_background, &bg);
  join_waking(flusher, wake_background, &bg);
  /* relaxed store, seen by the writer: the join and stop_writer's seq_cst
  ** writer_stop order it before the writer's last passes */
  flusher_stopped(&bg.f);
  stop_writer(writer, db);
  /* A database at rest keeps no spare segment files: a successor makes new
  ** ones (a kill -9 leaves them, and the successor adopts them). */
  ww_release_pool(&w);
  flusher_free(&bg.f);
  compactor_free(&bg.c);
  store_close(&store);
  ww_log(c.dir, "exiting (%s); durable through commit %llu", why, (unsigned long long)durable_seq(&db->region));
  ww_close(&w);
  if (why == DIRECTORY_REMOVED)
    remove_region_of_deleted_database(db, dir_fd, &lock_st, c.dir);
#ifdef SOCHDB_TESTING
  /* sochdbd-testing: $SOCHDB_TEST_EXIT_PAUSE_MS=N lives on N ms after its
  ** writer's last pass, still holding DIR/LOCK, as a descheduled daemon would */
  sleep_ms(testing_ms("SOCHDB_TEST_EXIT_PAUSE_MS", 60000u, 0));
#endif
  /* LOCK goes last, whatever the reason we leave: nobody may take the
  ** directory or the region from under us while we still read it (sochdb
  ** destroy, a successor). An ASYNC commit published after the writer's
  ** last pass saw it leaving, and waits for LOCK to start our successor
  ** (src/txn.c, see_to_a_successor). */
  sochdb_close(db);
  if (dir_fd >= 0)
    close(dir_fd);
  release_lock(lock_fd);
  return 0;
}
