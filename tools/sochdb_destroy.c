/*
** sochdb_destroy.c — `sochdb destroy DIR`: delete a database for good.
**
** A database is more than its directory: its shared region is a file in
** /dev/shm (or $SOCHDB_SHM_DIR) named after the directory's inode, whose
** pages stay in memory until the next reboot if the directory is removed
** while no daemon serves it (a running daemon notices the removal and takes
** the region with it). This command removes both:
**   1. DIR must hold a database (its sochdb.id). If the region exists, it
**      attaches to it without starting a daemon and refuses while any other
**      process is attached: they would go on using a deleted database;
**   2. it stops the daemon, if one runs (SIGTERM: it writes what was
**      published, then exits), and waits until it released DIR/LOCK;
**   3. it removes the region file (under the flock openers take);
**   4. it removes the files sochdb made in DIR: CURRENT and the WAL first
**      (from then on an opener finds an empty database, never part of this
**      one), sochdb.id and the locks last (so a run cut short is finished
**      by running it again), then DIR itself if nothing else is left in it.
**      Files sochdb did not make are kept and named.
** Like RocksDB's DestroyDB it cannot stop a process that opens the database
** while it runs; stop the programs that use it first.
** Steps 1 to 3 also end `sochdb backup` (cli_release_db).
*/
#include "sochdb.h"

#include "filenames.h"
#include "cli.h"

#include "internal.h"   /* struct sochdb: its region and slot, for the attached processes;
                        ** sdb_daemon_stop */
#include "region.h"     /* shm_region_path: a damaged database's region, named by hand */
#include "slots.h"
#include "walfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DAEMON_STOP_MS 10000
#define MAX_NAMED_PIDS 8

typedef struct destroy_result {
  char region[PATH_MAX];
  int region_removed;           /* 1 removed, 0 there was none */
  unsigned files_removed;
  unsigned kept;                /* entries of DIR (or DIR/wal) sochdb did not make */
  char first_kept[300];         /* the first of them, as DIR-relative path */
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

/* Attach to the region without starting a daemon (as a daemon attaches,
** so this process counts as none of the others) and refuse while another
** process is attached. A database too damaged to open can still be removed
** by hand: say how. */
static int check_nobody_attached(const char *dir, const char *region)
{
  sochdb_options opts;
  memset(&opts, 0, sizeof opts);
  opts.create_if_missing = -1;
  sochdb *db;
  int rc = sdb_open(dir, &opts, 1, &db);
  if (rc != SOCHDB_OK) {
    char what[64 + PATH_MAX];
    snprintf(what, sizeof what, "cannot open %s", dir);
    db_error(what, rc);
    fprintf(stderr, "sochdb: nothing was removed; to remove it by hand, stop the programs that use it and its "
                    "daemon (kill -TERM \"$(cat %s/LOCK)\"), then: rm %s; rm -r %s\n", dir, region, dir);
    return EXIT_DB_ERROR;
  }
  int status = refuse_if_attached(db, dir);
  sochdb_close(db);
  return status;
}

/* What sochdb makes in DIR, but for CURRENT, the identity and the locks,
** which go in an order of their own (remove_files): MANIFEST-NNNNNN
** (manifest.c), NNNNNN.sst (the daemon), their .tmp files, sochdbd.log,
** and the identity's temporary file (db.c). */
static int sochdb_file(const char *name)
{
  uint64_t number;   /* only the names the library takes for its own (check.h); a MANIFEST's number is spelt as a table's */
  return !strcmp(name, "sochdbd.log") || !strcmp(name, "CURRENT.tmp") || !strncmp(name, ".sochdb.id.", 11) ||
         (!strncmp(name, "MANIFEST-", 9) &&
          (sst_file_number(name + 9, "", &number) || sst_file_number(name + 9, ".tmp", &number))) ||
         sst_file_number(name, ".sst", &number) || sst_file_number(name, ".sst.tmp", &number);
}

static int last_file(const char *name)
{
  return !strcmp(name, "CURRENT") || !strcmp(name, SDB_ID_FILE) || !strcmp(name, "LOCK") ||
         !strcmp(name, "LOCK.spawn") || !strcmp(name, "wal");
}

/* WAL segments: 16 hex digits, .wal (walfmt.c), and files kept for reuse. */
static int sochdb_wal_file(const char *name)
{
  uint64_t lsn;
  return wal_segment_name(name, ".wal", &lsn) || wal_segment_name(name, ".wal.tmp", &lsn) ||
         wal_segment_name(name, WAL_FREE_SUFFIX, &lsn);
}

static void note_kept(destroy_result *r, const char *sub, const char *name)
{
  if (r->kept++ == 0)
    snprintf(r->first_kept, sizeof r->first_kept, "%s%s%s", sub ? sub : "", sub ? "/" : "", name);
}

/* Remove DIR[/SUB]'s entries that is_ours accepts; keep and count the
** others, but for those skip accepts (handled by the caller). EXIT_DB_ERROR
** (said on stderr) when one of ours cannot be removed. */
static int remove_ours(const char *dir, const char *sub, int (*is_ours)(const char *), int (*skip)(const char *),
                       destroy_result *r)
{
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, sub ? "%s/%s" : "%s", dir, sub ? sub : "");
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "sochdb: cannot read %s: %s\n", path, strerror(errno));
    return EXIT_DB_ERROR;
  }
  int status = EXIT_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || (skip && skip(e->d_name)))
      continue;
    if (!is_ours(e->d_name)) {
      note_kept(r, sub, e->d_name);
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

/* Unlink DIR/name if it is there; EXIT_DB_ERROR (said) if it cannot be. */
static int remove_one(const char *dir, const char *name, destroy_result *r)
{
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (unlink(path) == 0) {
    r->files_removed++;
    return EXIT_OK;
  }
  if (errno == ENOENT)
    return EXIT_OK;
  fprintf(stderr, "sochdb: cannot remove %s: %s\n", path, strerror(errno));
  return EXIT_DB_ERROR;
}

/* DIR/wal, when it is a directory (not a link to one elsewhere): its
** segments, then itself unless it holds something else. */
static int remove_wal(const char *dir, destroy_result *r)
{
  char path[PATH_MAX + 8];
  snprintf(path, sizeof path, "%s/wal", dir);
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? EXIT_OK : (fprintf(stderr, "sochdb: %s: %s\n", path, strerror(errno)), EXIT_DB_ERROR);
  if (!S_ISDIR(st.st_mode)) {
    note_kept(r, NULL, "wal");
    return EXIT_OK;
  }
  unsigned kept = r->kept;
  int status = remove_ours(dir, "wal", sochdb_wal_file, NULL, r);
  if (status == EXIT_OK && r->kept == kept && rmdir(path) != 0) {
    fprintf(stderr, "sochdb: cannot remove %s: %s\n", path, strerror(errno));
    status = EXIT_DB_ERROR;
  }
  return status;
}

static int remove_files(const char *dir, destroy_result *r)
{
  int status = remove_one(dir, "CURRENT", r);
  if (status == EXIT_OK)
    status = remove_wal(dir, r);
  if (status == EXIT_OK)
    status = remove_ours(dir, NULL, sochdb_file, last_file, r);
  static const char *const last[] = { SDB_ID_FILE, "LOCK.spawn", "LOCK" };
  for (size_t i = 0; i < sizeof last / sizeof last[0] && status == EXIT_OK; i++)
    status = remove_one(dir, last[i], r);
  if (status == EXIT_OK && r->kept == 0) {
    if (rmdir(dir) == 0)
      r->dir_removed = 1;
    else if (errno != ENOTEMPTY && errno != EEXIST &&    /* a file appeared meanwhile: keep DIR */
             errno != EBUSY) {                             /* a mount point: the database is gone, DIR stays */
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

/* DIR holds a database when it holds its identity, sochdb.id (also after
** a destroy cut short, which removes it last). */
static int holds_database(const char *dir)
{
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/" SDB_ID_FILE, dir);
  struct stat st;
  return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* DIR as destroy uses it: without trailing slashes, through which lstat
** would follow a link ("link/"), and resolved when it ends in "." or ".."
** (rmdir refuses those, after every file was removed). NULL if too long or
** unresolvable (said on stderr). */
static const char *destroy_path(const char *dir, char out[PATH_MAX])
{
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/')
    n--;
  if (n == 0 || n >= PATH_MAX) {
    fprintf(stderr, "sochdb: no database at %s\n", dir);
    return NULL;
  }
  memcpy(out, dir, n);
  out[n] = '\0';
  const char *base = strrchr(out, '/');
  base = base ? base + 1 : out;
  if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
    char resolved[PATH_MAX];
    if (realpath(out, resolved) == NULL) {
      fprintf(stderr, "sochdb: %s: %s\n", dir, strerror(errno));
      return NULL;
    }
    memcpy(out, resolved, strlen(resolved) + 1);
  }
  return out;
}

/* Remove the region unless a process holds a slot of it (one that attached
** after the caller found nobody attached); as shm_region_unlink_path, with
** a failure reported, `tail` ending the message. */
static int remove_unused_region(const char *region, const char *tail)
{
  int rc = shm_region_unlink_path(region, 1);
  if (rc < 0)
    fprintf(stderr, "sochdb: cannot remove the region %s: %s%s%s\n", region, strerror(errno),
            errno == EBUSY ? " (a process attached meanwhile)" : "", tail);
  return rc;
}

/* The end of `sochdb backup`: DEST is new and nobody else's, but its daemon
** would stay for 30 s (--idle-exit-ms), flushing and compacting, so that a
** copy of DEST made meanwhile (`tar`, `cp -r`) could miss an SSTable; and
** leaving idle it keeps the region, whose memtable pages then stay in
** /dev/shm until the next reboot for a backup nobody opens again. After
** SIGTERM the daemon has written everything published to the WAL, so the
** region holds nothing the next open would not replay. */
int cli_release_db(const char *dir)
{
  char region[PATH_MAX];
  int rc = shm_region_path(dir, region, sizeof region);
  if (rc != SOCHDB_OK)
    return db_error("cannot name the region", rc);
  int status = check_nobody_attached(dir, region);
  if (status == EXIT_OK)
    status = stop_daemon(dir);
  if (status == EXIT_OK && remove_unused_region(region, "") < 0)
    status = EXIT_DB_ERROR;
  return status;
}

int cli_destroy(const char *dir_arg, int json)
{
  destroy_result r;
  memset(&r, 0, sizeof r);
  char dir_buf[PATH_MAX];
  const char *dir = destroy_path(dir_arg, dir_buf);
  if (dir == NULL)
    return EXIT_DB_ERROR;
  /* Through a link the last step, removing DIR, would fail after all the
  ** rest was removed, and the command would say it failed: refuse before
  ** anything, naming the directory to give instead. */
  struct stat lst;
  if (lstat(dir, &lst) == 0 && S_ISLNK(lst.st_mode)) {
    char target[PATH_MAX];
    if (!realpath(dir, target))
      snprintf(target, sizeof target, "the directory it names");
    fprintf(stderr, "sochdb: %s is a symbolic link; nothing was removed: give the directory itself (%s)\n", dir,
            target);
    return EXIT_USAGE;
  }
  if (!holds_database(dir)) {
    fprintf(stderr, "sochdb: no database at %s\n", dir);
    return EXIT_DB_ERROR;
  }
  int rc = shm_region_path(dir, r.region, sizeof r.region);
  if (rc != SOCHDB_OK)
    return db_error("cannot name the region", rc);
  /* Without a region nobody is attached; one left by a destroy cut short
  ** (CURRENT gone) is reattached by nobody either. */
  char current[PATH_MAX + 16];
  snprintf(current, sizeof current, "%s/CURRENT", dir);
  int status = EXIT_OK;
  if (access(r.region, F_OK) == 0 && access(current, F_OK) == 0)
    status = check_nobody_attached(dir, r.region);
  if (status == EXIT_OK)
    status = stop_daemon(dir);
  if (status != EXIT_OK)
    return status;
  rc = remove_unused_region(r.region, "; nothing else was removed");
  if (rc < 0)
    return EXIT_DB_ERROR;
  r.region_removed = rc > 0;
  status = remove_files(dir, &r);
  if (status == EXIT_OK)
    print_result(dir, &r, json);
  return status;
}
