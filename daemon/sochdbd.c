/*
** sochdbd.c — the sochdb helper daemon for one database directory.
**
** In this stage the daemon is the region's reaper: every interval it finds
** process slots whose owner died (kill -9, crash) and reclaims them — aborts
** their undecided commits, finishes their decided ones, drops their
** snapshots — and advances the reclamation horizon. Clients reap on demand
** too (whenever something blocks on a dead process), so the daemon only
** bounds how long a dead process's snapshot can hold memory: one interval.
** The WAL writer (group commit), flushing and compaction join it next.
**
** Usage: sochdbd [--foreground] [--interval-ms N] DIR
** It logs to stderr. SIGTERM or SIGINT make it detach and exit cleanly.
*/
#include "internal.h"

#include "slots.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static void usage(FILE *out)
{
  fprintf(out, "usage: sochdbd [--foreground] [--interval-ms N] DIR\n"
               "  Reaps the slots of dead client processes of the database in DIR.\n"
               "  --foreground     stay attached to the terminal (for service managers)\n"
               "  --interval-ms N  how often to look for dead processes (default 100)\n");
}

static void log_line(const char *fmt, const char *dir, unsigned n)
{
  time_t now = time(NULL);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", localtime(&now));
  fprintf(stderr, "%s sochdbd[%ld] %s: ", stamp, (long)getpid(), dir);
  fprintf(stderr, fmt, n);
  fputc('\n', stderr);
}

static int serve(sochdb *db, const char *dir, unsigned interval_ms)
{
  struct timespec pause = { interval_ms / 1000, (long)(interval_ms % 1000) * 1000000L };
  unsigned rounds = 0;
  for (; !stop_requested; rounds++) {
    unsigned reaped = slots_reap_all(&db->region, db->slot);
    if (reaped)
      log_line("reclaimed the slots of %u dead process(es)", dir, reaped);
    slots_compute_horizon(&db->region);
    nanosleep(&pause, NULL);
  }
  log_line("stopping on signal after %u reap rounds", dir, rounds);
  return 0;
}

int main(int argc, char **argv)
{
  unsigned interval_ms = 100;
  int foreground = 0;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--foreground"))
      foreground = 1;
    else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc) {
      char *end;
      unsigned long v = strtoul(argv[++i], &end, 10);
      if (*end || v == 0 || v > 60000) {
        fprintf(stderr, "sochdbd: --interval-ms takes 1..60000\n");
        return 2;
      }
      interval_ms = (unsigned)v;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] == '-' || dir) {
      usage(stderr);
      return 2;
    } else
      dir = argv[i];
  }
  if (!dir) {
    usage(stderr);
    return 2;
  }
  if (!foreground && daemon(1, 1) != 0) {   /* before open: a handle does not survive fork() */
    fprintf(stderr, "sochdbd: cannot detach: %s\n", strerror(errno));
    return 1;
  }
  sochdb_options opts = { .create_if_missing = -1 };
  sochdb *db;
  int rc = sochdb_open(dir, &opts, &db);
  if (rc != SOCHDB_OK) {
    fprintf(stderr, "sochdbd: %s: %s (%s)\n", dir, sochdb_strerror(rc), sochdb_last_error());
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  log_line("serving, reaping every %u ms", dir, interval_ms);
  rc = serve(db, dir, interval_ms);
  sochdb_close(db);
  return rc;
}
