/*
** fuzzdb.h — the database a libFuzzer target of the API runs every input
** on (fuzz_txn.c, fuzz_table.c): opened once, with 1 MiB memtables, in the
** directory $<ENV> names (scripts/fuzz.sh: one in the build tree, so a
** crashed run leaves nothing elsewhere) or a new one in /tmp, served by
** $SOCHDB_DAEMON; removed at exit, its daemon stopped first (it may still be
** flushing), then the directory and the region. A crash skips the removal:
** a directory fuzz.sh names is taken up again by the next run, which
** removes it at its end.
**
** Also their failure: mismatch() and expect_rc(). Static functions in a
** header: each target is one file of its own.
*/
#ifndef SOCHDB_FUZZDB_H
#define SOCHDB_FUZZDB_H

#include "internal.h"   /* sdb_daemon_stop */
#include "sochdb.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZDB_MEMTABLE_BYTES (1u << 20)

static sochdb     *fuzzdb;
static const char *fuzzdb_who;               /* the target's name, for messages */
static void      (*fuzzdb_on_exit)(void);    /* ends what the target holds open, before the close */
static char        fuzzdb_dir[4096], fuzzdb_region[4096];

/* An answer the model does not give: what, and the call's code, on stderr
** (scripts/fuzz.sh prints the line starting with the target's name), then
** abort, which libFuzzer takes for a crash and saves the input of. */
static void mismatch(const char *what, int rc)
{
  fprintf(stderr, "%s: %s (rc %d: %s; %s)\n", fuzzdb_who, what, rc, sochdb_strerror(rc), sochdb_last_error());
  abort();
}

/* rc must be want; a refusal (SOCHDB_INVALID) must say why. */
static void expect_rc(int rc, int want, const char *what)
{
  if (rc != want)
    mismatch(what, rc);
  if (rc == SOCHDB_INVALID && !sochdb_last_error()[0])
    mismatch("a refusal without a message", rc);
}

static int fuzzdb_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void fuzzdb_remove(void)
{
  if (fuzzdb_on_exit)
    fuzzdb_on_exit();
  sochdb_close(fuzzdb);
  if (sdb_daemon_stop(fuzzdb_dir, SIGTERM, 10000) != SOCHDB_OK)
    fprintf(stderr, "%s: %s's daemon did not stop (%s); left as it is\n", fuzzdb_who, fuzzdb_dir,
            sochdb_last_error());
  else if (nftw(fuzzdb_dir, fuzzdb_remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0)
    unlink(fuzzdb_region);
}

/* Opens the database (exits on failure); on_exit may be NULL. */
static void fuzzdb_open(const char *who, const char *env, void (*on_exit)(void))
{
  fuzzdb_who = who;
  fuzzdb_on_exit = on_exit;
  const char *named = getenv(env);
  if (named && *named) {
    snprintf(fuzzdb_dir, sizeof fuzzdb_dir, "%s", named);
    if (mkdir(fuzzdb_dir, 0700) != 0 && errno != EEXIST) {
      fprintf(stderr, "%s: mkdir %s: %s\n", who, fuzzdb_dir, strerror(errno));
      exit(1);
    }
  } else {
    snprintf(fuzzdb_dir, sizeof fuzzdb_dir, "/tmp/sochdb-%s.XXXXXX", who);
    if (!mkdtemp(fuzzdb_dir)) {
      fprintf(stderr, "%s: mkdtemp: %s\n", who, strerror(errno));
      exit(1);
    }
  }
  /* busy_timeout_ms within libFuzzer's 10 s an input: a stall ends as
  ** SOCHDB_BUSY, or a SYNC commit's wait as SOCHDB_DAEMON (5 s), both taken
  ** for what they are, not as a timeout of the input */
  sochdb_options o = { .region_bytes = 64u << 20, .memtable_bytes = FUZZDB_MEMTABLE_BYTES, .busy_timeout_ms = 2000 };
  int rc = sochdb_open(fuzzdb_dir, &o, &fuzzdb);
  if (rc != SOCHDB_OK) {
    fprintf(stderr, "%s: open %s: %s (%s); set $SOCHDB_DAEMON to a sochdbd\n", who, fuzzdb_dir,
            sochdb_strerror(rc), sochdb_last_error());
    exit(1);
  }
  snprintf(fuzzdb_region, sizeof fuzzdb_region, "%s", sochdb_region_path(fuzzdb));
  atexit(fuzzdb_remove);
}

#endif
