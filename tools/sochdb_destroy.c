/*
** sochdb_destroy.c — `sochdb destroy DIR`: delete a database for good.
**
** A database is more than its directory: its shared region is a file in
** /dev/shm (or $SOCHDB_SHM_DIR) named after the directory's inode, whose
** pages stay in memory until the next reboot if the directory is removed
** while no daemon serves it (a running daemon notices the removal and takes
** the region with it). This command removes both:
**   1. it opens the database (which must exist) and refuses while any other
**      process is attached to it: they would go on using a deleted database;
**   2. it stops the daemon (SIGTERM: it writes what was published, then
**      exits) and waits until the daemon released DIR/LOCK;
**   3. it removes the region file;
**   4. it removes the files sochdb made in DIR, CURRENT first (from then on
**      an opener finds no database, never half of one), then DIR itself if
**      nothing else is left in it. Files sochdb did not make are kept and
**      named.
** Like RocksDB's DestroyDB it cannot stop a process that opens the database
** while it runs; stop the programs that use it first.
*/
#include "sochdb.h"

#include "cli.h"

#include "internal.h"   /* struct sochdb: its region and slot, for the attached processes;
                        ** sdb_daemon_stop */
#include "region.h"     /* shm_region_path: a damaged database's region, named by hand */
#include "slots.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DAEMON_STOP_MS 10000
#define MAX_NAMED_PIDS 8

typedef struct destroy_result {
  char region[PATH_MAX];
  int region_removed;           /* 1 removed, 0 there was none */
  unsigned files_removed;
  unsigned kept;                /* entries of DIR (or DIR/wal) sochdb did not make */
  char first_kept[256];
  int dir_removed;
} destroy_result;

/* Refuses (EXIT_DB_ERROR) while a process other than this one is attached,
** naming them; dead processes' slots are reclaimed first, so a crashed
** program does not block the command. */
static int refuse_if_attached(sochdb *db, const char *dir)
{
  slots_reap_all(&db->region, db->slot);
  pid_t pids[MAX_NAMED_PIDS];
  unsigned others = 0;
  uint32_t high = slots_scan_bound(&db->region);
  for (uint32_t i = 0; i < high; i++) {
    struct shm_slot *s = shm_slot_at(&db->region, i);
    /* acquire: pairs with the attach's release, so is_daemon is this owner's */
    uint32_t pid = atomic_load_explicit(&s->owner_pid, memory_order_acquire);
    if (pid == 0 || i == db->slot || atomic_load_explicit(&s->is_daemon, memory_order_relaxed))
      continue;
    if (others < MAX_NAMED_PIDS)
      pids[others] = (pid_t)pid;
    others++;
  }
  if (others == 0)
    return EXIT_OK;
  fprintf(stderr, "sochdb: %u other process%s attached to %s (pid", others, others == 1 ? " is" : "es are", dir);
  for (unsigned i = 0; i < others && i < MAX_NAMED_PIDS; i++)
    fprintf(stderr, "%s %d", i ? "," : "", (int)pids[i]);
  fprintf(stderr, "%s): stop them first; nothing was removed\n", others > MAX_NAMED_PIDS ? ", ..." : "");
  return EXIT_DB_ERROR;
}

static int stop_daemon(const char *dir)
{
  int rc = sdb_daemon_stop(dir, SIGTERM, DAEMON_STOP_MS);
  if (rc == SOCHDB_OK)
    return EXIT_OK;
  fprintf(stderr, "sochdb: %s; nothing was removed\n", sochdb_last_error());
  return EXIT_DB_ERROR;
}

static int all_digits(const char *s, size_t n, int hex)
{
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(hex ? isxdigit((unsigned char)s[i]) : isdigit((unsigned char)s[i])))
      return 0;
  return 1;
}

/* s is DIGITS followed by suffix, or by suffix ".tmp" (a file being written). */
static int numbered(const char *s, const char *suffix, int hex)
{
  size_t n = strlen(s), sl = strlen(suffix);
  if (n > 4 && !strcmp(s + n - 4, ".tmp"))
    n -= 4;
  return n > sl && !strncmp(s + n - sl, suffix, sl) && all_digits(s, n - sl, hex);
}

/* Names sochdb makes in DIR (manifest.c, db.c, daemonctl.c, the daemon). */
static int sochdb_file(const char *name)
{
  static const char *const exact[] = { "sochdb.id", "LOCK", "LOCK.spawn", "sochdbd.log", "CURRENT", "CURRENT.tmp" };
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
    if (!strcmp(name, exact[i]))
      return 1;
  if (!strncmp(name, ".sochdb.id.", 11))
    return 1;
  if (!strncmp(name, "MANIFEST-", 9) && numbered(name + 9, "", 0))
    return 1;
  return numbered(name, ".sst", 0);
}

static int sochdb_wal_file(const char *name) { return numbered(name, ".wal", 1); }

static void note_kept(destroy_result *r, const char *name)
{
  if (r->kept++ == 0)
    snprintf(r->first_kept, sizeof r->first_kept, "%s", name);
}

/* Remove DIR/SUB's entries that is_ours accepts; keep and count the others.
** EXIT_DB_ERROR (said on stderr) when one of ours cannot be removed. */
static int remove_ours(const char *dir, const char *sub, int (*is_ours)(const char *), destroy_result *r)
{
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, sub ? "%s/%s" : "%s", dir, sub ? sub : "");
  DIR *d = opendir(path);
  if (!d) {
    if (errno == ENOENT && sub)
      return EXIT_OK;
    fprintf(stderr, "sochdb: cannot read %s: %s\n", path, strerror(errno));
    return EXIT_DB_ERROR;
  }
  int status = EXIT_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (!sub && !strcmp(e->d_name, "wal"))
      continue;                              /* its own pass */
    if (!is_ours(e->d_name)) {
      note_kept(r, e->d_name);
      continue;
    }
    if (unlinkat(dirfd(d), e->d_name, 0) == 0 || errno == ENOENT) {
      r->files_removed++;
      continue;
    }
    fprintf(stderr, "sochdb: cannot remove %s/%s: %s\n", path, e->d_name, strerror(errno));
    status = EXIT_DB_ERROR;
  }
  closedir(d);
  return status;
}

/* CURRENT first: once it is gone, DIR opens as no database at all. */
static int remove_files(const char *dir, destroy_result *r)
{
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/CURRENT", dir);
  if (unlink(path) == 0)
    r->files_removed++;
  else if (errno != ENOENT) {
    fprintf(stderr, "sochdb: cannot remove %s: %s; nothing else was removed\n", path, strerror(errno));
    return EXIT_DB_ERROR;
  }
  int status = remove_ours(dir, "wal", sochdb_wal_file, r);
  snprintf(path, sizeof path, "%s/wal", dir);
  if (status == EXIT_OK && rmdir(path) != 0 && errno != ENOENT) {
    if (errno != ENOTEMPTY && errno != EEXIST) {
      fprintf(stderr, "sochdb: cannot remove %s: %s\n", path, strerror(errno));
      status = EXIT_DB_ERROR;
    }
    note_kept(r, "wal");
  }
  int rest = remove_ours(dir, NULL, sochdb_file, r);
  if (status == EXIT_OK)
    status = rest;
  if (status == EXIT_OK && r->kept == 0) {
    if (rmdir(dir) == 0)
      r->dir_removed = 1;
    else if (errno != ENOTEMPTY && errno != EEXIST) {    /* a file appeared meanwhile: keep DIR */
      fprintf(stderr, "sochdb: cannot remove %s: %s\n", dir, strerror(errno));
      status = EXIT_DB_ERROR;
    }
  }
  return status;
}

static void print_result(const char *dir, const destroy_result *r, int json)
{
  if (json) {
    fputs("{\"dir\":", stdout);
    put_json_string(dir, strlen(dir));
    fputs(",\"region\":", stdout);
    put_json_string(r->region, strlen(r->region));
    printf(",\"region_removed\":%s,\"files_removed\":%u,\"dir_removed\":%s,\"files_kept\":%u}\n",
           r->region_removed ? "true" : "false", r->files_removed, r->dir_removed ? "true" : "false", r->kept);
    return;
  }
  printf("destroyed %s: %u files removed; region %s %s\n", dir, r->files_removed, r->region,
         r->region_removed ? "removed" : "was already gone");
  if (r->kept)
    printf("kept %s: it holds %u entr%s sochdb did not make (%s%s)\n", dir, r->kept, r->kept == 1 ? "y" : "ies",
           r->first_kept, r->kept > 1 ? ", ..." : "");
}

int cli_destroy(const char *dir, int json)
{
  destroy_result r;
  memset(&r, 0, sizeof r);
  sochdb *db;
  int status = cli_open_db(dir, -1, &db);
  if (status != EXIT_OK) {
    /* A database too damaged to open can still be removed by hand. */
    if (shm_region_path(dir, r.region, sizeof r.region) == SOCHDB_OK && access(r.region, F_OK) == 0)
      fprintf(stderr, "sochdb: nothing was removed; to remove it by hand, stop the programs that use it and its "
                      "daemon (kill -TERM \"$(cat %s/LOCK)\"), then: rm %s; rm -r %s\n", dir, r.region, dir);
    return status;
  }
  snprintf(r.region, sizeof r.region, "%s", sochdb_region_path(db));
  status = refuse_if_attached(db, dir);
  sochdb_close(db);
  if (status == EXIT_OK)
    status = stop_daemon(dir);
  if (status != EXIT_OK)
    return status;
  if (unlink(r.region) == 0)
    r.region_removed = 1;
  else if (errno != ENOENT) {
    fprintf(stderr, "sochdb: cannot remove the region %s: %s; nothing else was removed\n", r.region, strerror(errno));
    return EXIT_DB_ERROR;
  }
  status = remove_files(dir, &r);
  if (status == EXIT_OK)
    print_result(dir, &r, json);
  return status;
}
