/*
** store.c — the MANIFEST, the published file list and file lifetimes (see
** store.h).
**
** Order of a change: the new SSTables are durable under their names first,
** then the MANIFEST edit naming them is durable, then the region's file
** list is switched; a removed file is unlinked only once no file list that
** a snapshot may still read names it (shm/filelist.h). A daemon killed anywhere leaves
** either the old or the new set of live files in the MANIFEST, plus files
** it names nowhere: the next daemon dooms those (not unlinked at once: a
** client may still read one that an older list named).
*/
#include "store.h"

#include "filenames.h"
#include "error.h"
#include "filelist.h"
#include "fsutil.h"
#include "sstfmt.h"
#include "testhooks.h"
#include "walwriter.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int doom(struct store *s, uint64_t number)
{
  if (s->ndoomed == s->capdoomed) {
    size_t cap = s->capdoomed ? s->capdoomed * 2 : 64;
    uint64_t *d = realloc(s->doomed, cap * sizeof *d);
    if (!d)
      return sdb_fail(SOCHDB_NOMEM, "remembering files to remove");
    s->doomed = d;
    s->capdoomed = cap;
  }
  s->doomed[s->ndoomed++] = number;
  return SOCHDB_OK;
}

static int is_live(const struct manifest_state *st, uint64_t number)
{
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    for (size_t i = 0; i < st->levels[l].n; i++)
      if (st->levels[l].files[i].number == number)
        return 1;
  return 0;
}

static size_t live_files(const struct manifest_state *st)
{
  size_t n = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    n += st->levels[l].n;
  return n;
}

/* The region's file lists hold FL_MAX_FILES. An edit that would leave more
** must be refused before the MANIFEST records it: recorded, no daemon could
** publish the list, and no process could open the database again. An edit
** that does not add to the count (a compaction, a move) always passes, so
** compactions can bring a database at the limit back under it. */
static int check_room_locked(const struct store *s, size_t adds, size_t dels)
{
  size_t before = live_files(&s->state);
  size_t after = before + adds > dels ? before + adds - dels : 0;
  if (after <= FL_MAX_FILES || after <= before)
    return SOCHDB_OK;
  return sdb_fail(SOCHDB_BUSY, "%zu live SSTables, and the region lists at most %u: waiting for compaction "
                  "to merge some (a larger memtable_bytes makes larger files)", before, FL_MAX_FILES);
}

int store_check_room(struct store *s, size_t adds, size_t dels)
{
  pthread_mutex_lock(&s->lock);
  int rc = check_room_locked(s, adds, dels);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* The new files of an edit that was refused (rc, its message the last
** error, which stays the caller's to report): nothing will name them. */
static void remove_refused_locked(struct store *s, const struct manifest_edit *e, int rc)
{
  char why[512];
  snprintf(why, sizeof why, "%s", sochdb_last_error());
  if (sdb_dir_is_ours(s->db) != SOCHDB_OK) {
    /* the numbers may name another database's tables now, as in store_reclaim */
    sdb_fail(rc, "%s", why);
    return;
  }
  for (size_t i = 0; i < e->nadds; i++) {
    uint64_t number = e->adds[i].file.number;
    if (is_live(&s->state, number))
      continue;   /* a move: the file stays where it was */
    char path[4200];
    sst_file_path(path, sizeof path, s->db->dir, number);
    unlink(path);
  }
}

/* Files named NNNNNN.sst (or a leftover .tmp) that the MANIFEST does not
** name: left by a daemon killed between writing and recording them, or
** removed by a compaction whose daemon died before unlinking them. */
static int doom_orphans(struct store *s)
{
  DIR *d = opendir(s->db->dir);
  if (!d)
    return sdb_fail_errno("opendir %s", s->db->dir);
  int rc = SOCHDB_OK;
  struct dirent *e;
  while (rc == SOCHDB_OK && (e = readdir(d))) {
    uint64_t n;
    int tmp = sst_file_number(e->d_name, ".sst.tmp", &n);
    if (!tmp && !sst_file_number(e->d_name, ".sst", &n))
      continue;
    if (n >= s->next_file)
      s->next_file = n + 1;   /* never reuse a number a client may have cached blocks of */
    if (tmp) {
      char path[4300];
      snprintf(path, sizeof path, "%s/%s", s->db->dir, e->d_name);
      unlink(path);
    } else if (!is_live(&s->state, n))
      rc = doom(s, n);
  }
  closedir(d);
  return rc;
}

/* A table the region's current list names that the MANIFEST neither lists
** nor ever numbered (at or past its next_file_number): a list is published
** only after its edit is durable (store_apply), so the MANIFEST lost that
** edit, its last record damaged and cut off as a torn tail. The table, if
** still here, holds what its flush took out of the log: removing it as an
** orphan would lose that for good, so SOCHDB_CORRUPT. One that is gone
** (the directory put back to an older copy under a surviving region) has
** nothing left to save. The daemon is the lists' only writer: no hazard. */
static int check_published_list(struct store *s)
{
  /* relaxed: whoever published it last (a daemon before us, or the opener
  ** that rebuilt the region) is ordered before us by DIR/LOCK, which we hold,
  ** or by the region's magic, which we acquired when we attached */
  uint32_t cur = atomic_load_explicit(&s->r->hdr->current_files, memory_order_relaxed);
  const struct fl_list *l = fl_list_at(s->r, cur % FL_LISTS);
  uint32_t n = l->nfiles < FL_MAX_FILES ? l->nfiles : FL_MAX_FILES;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t number = l->files[i].number;
    if (number < s->state.next_file_number || is_live(&s->state, number))
      continue;
    char path[4200];
    sst_file_path(path, sizeof path, s->db->dir, number);
    if (access(path, F_OK) == 0)
      return sdb_fail(SOCHDB_CORRUPT, "%s is in the file list the last daemon published, but not in the "
                      "MANIFEST, which never numbered it: the MANIFEST lost an edit that was durable (its last "
                      "record damaged?), or the directory was put back to a copy taken before that edit while "
                      "the region stayed (then remove the region: sochdb_region_path); the table is kept, and "
                      "the database left as it is", path);
  }
  return SOCHDB_OK;
}

static int open_manifest(struct store *s)
{
  const uint8_t *id = s->r->hdr->db_id;
  int rc = manifest_open(s->db->dir, id, &s->man, &s->state);
  if (rc == SOCHDB_NOTFOUND) {
    manifest_state_free(&s->state);
    manifest_state_init(&s->state);
    rc = manifest_create(s->db->dir, id, &s->man);
  }
  return rc;
}

/* ---- the published list ---------------------------------------------------- */

static int publish_locked(struct store *s)
{
  struct fl_file *files;
  uint32_t n;
  int rc = sdb_state_file_list(&s->state, &files, &n);
  if (rc != SOCHDB_OK)
    return rc;
  for (unsigned waited = 0; (rc = fl_publish(s->r, files, n)) == SOCHDB_BUSY; waited++) {
    /* Every other list is named by a hazard: a transaction mapping its
    ** files (it names one only while its process maps them, src/tables.c).
    ** Reclaim and look again until one is let go. */
    if (waited % 1000 == 0)
      ww_log(s->db->dir, "waiting for a snapshot to end: all %u file lists are in use", FL_LISTS);
    fl_reclaim(s->r, 0);
    struct timespec ts = { 0, 10000000 };
    nanosleep(&ts, NULL);
  }
  free(files);
  return rc;
}

#define MANIFEST_ROLL_BYTES (4ull << 20)   /* roll_manifest */

/* ---- open / close ---------------------------------------------------------- */

int store_open(struct store *s, sochdb *db)
{
  memset(s, 0, sizeof *s);
  s->db = db;
  s->r = &db->region;
  pthread_mutex_init(&s->lock, NULL);
  manifest_state_init(&s->state);
  compaction_options_default(&s->copts);
  /* Sizes follow the memtable: an L0 file is one memtable, L1 holds four. */
  uint64_t mt = s->r->hdr->memtable_bytes;
  s->copts.l1_target_bytes = 4 * mt;
  s->copts.target_file_bytes = mt;
  s->compact_rate = 64ull << 20;
  s->l0_unthrottle = 3 * s->copts.l0_trigger;
  s->l0_stop = 9 * s->copts.l0_trigger;
  s->compress_from_level = STORE_COMPRESS_FROM_LEVEL;
  s->roll_bytes = MANIFEST_ROLL_BYTES;
#ifdef SOCHDB_TESTING
  /* sochdb-stress's power cuts: a MANIFEST rewritten (and CURRENT switched)
  ** every few flushes, not once per 4 MiB of edits, which a run never reaches */
  const char *roll = getenv("SOCHDB_TEST_MANIFEST_ROLL");
  if (roll && *roll)
    s->roll_bytes = strtoull(roll, NULL, 10);
#endif
  int rc = open_manifest(s);
  if (rc == SOCHDB_OK) {
    s->next_file = s->state.next_file_number ? s->state.next_file_number : 1;
    /* relaxed: see store_new_file_number. Above the MANIFEST's after a
    ** daemon died between numbering a table and recording it, or when the
    ** directory was put back to an older copy. */
    uint64_t floor = atomic_load_explicit(&s->r->hdr->next_file_floor, memory_order_relaxed);
    if (floor > s->next_file)
      s->next_file = floor;
    rc = check_published_list(s);
  }
  if (rc == SOCHDB_OK)
    rc = doom_orphans(s);
  if (rc == SOCHDB_OK) {
    fl_reclaim(s->r, 1);   /* and lists a dead daemon was building */
    rc = publish_locked(s);
  }
  if (rc != SOCHDB_OK)
    store_close(s);   /* nothing is left for the caller to close */
  return rc;
}

void store_close(struct store *s)
{
  manifest_close(s->man);
  s->man = NULL;
  manifest_state_free(&s->state);
  free(s->doomed);
  s->doomed = NULL;
  pthread_mutex_destroy(&s->lock);
}

int store_compresses(const struct store *s, unsigned level) { return level >= s->compress_from_level; }

uint64_t store_new_file_number(struct store *s)
{
  pthread_mutex_lock(&s->lock);
  uint64_t n = s->next_file++;
  /* relaxed: only the daemon touches it, and the next daemon starts only
  ** after this one's lock is released (which orders it) */
  atomic_store_explicit(&s->r->hdr->next_file_floor, s->next_file, memory_order_relaxed);
  pthread_mutex_unlock(&s->lock);
  return n;
}

/* ---- files ------------------------------------------------------------------ */

static int write_all(int fd, const uint8_t *buf, size_t len)
{
  size_t done = 0;
  while (done < len) {
    int fault = FAULT("sst.write");
    ssize_t got = fault ? (errno = fault, -1) : write(fd, buf + done, len - done);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return -1;
    done += (size_t)got;
  }
  return 0;
}

/* An SSTable is written in whole, aligned pieces, and the size of the
** pieces decides the size of the page cache's folios: a write that covers
** an aligned 2 MiB gets one 2 MiB folio (ext4, and other filesystems with
** large folios), which every process mapping the table then maps with one
** TLB entry instead of 512 (FilePmdMapped in /proc/PID/smaps), so random
** reads miss the TLB less (283bc41: 0.78 against 0.91 us of CPU a get with
** two readers). A 2 MiB folio costs more to get than 512 small ones, though,
** and on some machines far more: on a virtual machine that reports its free
** memory to its host in 2 MiB blocks (virtio-balloon free page reporting,
** the development machine) one took 8-13 ms, 4.1-6.5 s to write 1 GiB in
** 2 MiB pieces against 0.46-0.48 s in 64 KiB ones (dd, after 6 s idle), and
** a flush spent 73% of its CPU copying into them. So only compaction
** outputs, which live long and hold most of the data, get 2 MiB pieces; a
** flush's level-0 table, written while commits come in and soon compacted,
** gets 256 KiB ones, which no 2 MiB folio covers. */
static size_t piece_bytes(enum sst_pieces pieces)
{
  return pieces == SST_HUGE_PIECES ? (size_t)2 << 20 : (size_t)256 << 10;
}

int store_sst_create(struct store *s, uint64_t number, enum sst_pieces pieces, struct sst_file_out *o)
{
  o->number = number;
  o->written = 0;
  o->piece = piece_bytes(pieces);
  o->stage = NULL;
  o->staged = 0;
  o->in_file = 0;
  o->kicked = 0;
  o->wb_err = 0;
  o->fd = -1;
  int rc = sdb_dir_is_ours(s->db);
  if (rc != SOCHDB_OK)
    return rc;
  sst_file_path(o->path, sizeof o->path, s->db->dir, number);
  snprintf(o->tmp, sizeof o->tmp, "%s.tmp", o->path);
  o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  return o->fd < 0 ? sdb_fail_errno("create %s", o->tmp) : SOCHDB_OK;
}

/* Write-behind: once this much of a new table sits in the page cache, its
** writeback starts (sync_file_range, SYNC_FILE_RANGE_WRITE: it submits the
** pages, which may block briefly on the journal or a full device queue, and
** does not wait for them), so the disk writes the table while the rest is
** built and the fdatasync at its end waits for the last few MiB and the
** metadata, not the whole file. Without it the flusher spent about a
** quarter of each flush cycle in that fdatasync (20-32 ms of ~100, strace
** of fill_batch), building nothing, while the writer waited in the write
** stall with a third of the 2 vCPUs idle or in iowait (/proc/stat through
** the phase).
** Alternating rounds of `compare --engines sochdb fill_batch`, the daemon
** swapped: ahead in 7 of 7. Not a durability step: the fdatasync still
** makes the table durable. A writeback error is reported by that fdatasync
** (the file's error sequence, which this call does not consume), except
** one a filesystem returns from writing the pages without recording it on
** the file (ext4's failed delayed allocation drops the pages): that one this
** call returns, and it fails the table (wb_err, store_sst_complete). */
#define WRITE_BEHIND_BYTES (4u << 20)

/* The errors after which the pages are simply still dirty, for the
** fdatasync to write: the call refused (ENOSYS under a filter, EINVAL), or
** could not start for want of memory. */
static int writeback_not_started(int err)
{
  return err == ENOSYS || err == EINVAL || err == ESPIPE || err == ENOMEM || err == EAGAIN;
}

static void write_behind(struct sst_file_out *o)
{
  if (o->in_file - o->kicked < WRITE_BEHIND_BYTES)
    return;
  int fault = FAULT("sst.writeback");
  int rc = fault ? (errno = fault, -1)
                 : sync_file_range(o->fd, (off64_t)o->kicked, (off64_t)(o->in_file - o->kicked), SYNC_FILE_RANGE_WRITE);
  if (rc != 0 && !writeback_not_started(errno) && !o->wb_err)
    o->wb_err = errno;
  o->kicked = o->in_file;
}

static int write_at_offset(struct sst_file_out *o, const uint8_t *p, size_t n)
{
  if (write_all(o->fd, p, n) == 0) {
    o->in_file += n;
    write_behind(o);
    return SOCHDB_OK;
  }
  return sdb_fail_errno("write %s (%zu bytes at %llu)", o->tmp, n,
                        (unsigned long long)(o->written - o->staged));
}

/* Write what is staged (at the end: a piece shorter than a chunk). */
static int flush_stage(struct sst_file_out *o)
{
  int rc = o->staged ? write_at_offset(o, o->stage, o->staged) : SOCHDB_OK;
  o->staged = 0;
  free(o->stage);
  o->stage = NULL;
  return rc;
}

int store_sst_append(void *ctx, const uint8_t *p, size_t n)
{
  struct sst_file_out *o = ctx;
  while (n) {
    /* A whole piece straight from the caller, one write each: a longer
    ** write could get larger folios than the piece allows. */
    if (o->staged == 0 && n >= o->piece) {
      int rc = write_at_offset(o, p, o->piece);
      if (rc != SOCHDB_OK)
        return rc;
      o->written += o->piece;
      p += o->piece;
      n -= o->piece;
      continue;
    }
    if (!o->stage && !(o->stage = malloc(o->piece)))
      return sdb_fail(SOCHDB_NOMEM, "out of memory writing %s", o->tmp);
    size_t take = o->piece - o->staged < n ? o->piece - o->staged : n;
    memcpy(o->stage + o->staged, p, take);
    o->staged += take;
    o->written += take;
    p += take;
    n -= take;
    if (o->staged == o->piece) {
      int rc = write_at_offset(o, o->stage, o->piece);
      o->staged = 0;
      if (rc != SOCHDB_OK)
        return rc;
    }
  }
  return SOCHDB_OK;
}

void store_sst_abandon(struct sst_file_out *o)
{
  if (o->fd < 0)
    return;
  free(o->stage);
  o->stage = NULL;
  o->staged = 0;
  close(o->fd);
  o->fd = -1;
  unlink(o->tmp);
}

int store_sst_complete(struct store *s, struct sst_file_out *o, const uint8_t *tail, size_t n)
{
  int rc = store_sst_append(o, tail, n);
  if (rc == SOCHDB_OK)
    rc = flush_stage(o);
  if (rc == SOCHDB_OK && fdatasync(o->fd) != 0)
    rc = sdb_fail_errno("fdatasync %s (%llu bytes)", o->tmp, (unsigned long long)o->written);
  if (rc == SOCHDB_OK && o->wb_err) {
    errno = o->wb_err;
    rc = sdb_fail_errno("writeback of %s (%llu bytes)", o->tmp, (unsigned long long)o->written);
  }
  if (rc == SOCHDB_OK)
    sdb_apply_db_mode(s->db->dir, o->fd, o->tmp);
  if (rc != SOCHDB_OK) {
    store_sst_abandon(o);
    return rc;
  }
  close(o->fd);
  o->fd = -1;
  if ((rc = sdb_dir_is_ours(s->db)) != SOCHDB_OK) {   /* a new database's table of this number stays */
    unlink(o->tmp);
    return rc;
  }
  if (rename(o->tmp, o->path) != 0) {
    rc = sdb_fail_errno("rename %s", o->tmp);
    unlink(o->tmp);
    return rc;
  }
  int fault = FAULT("sst.dir_sync");
  rc = fault ? (errno = fault, sdb_fail_errno("fsync %s", s->db->dir)) : sdb_fsync_dir(s->db->dir);
  if (rc != SOCHDB_OK)
    unlink(o->path);   /* in no edit and no list: the caller writes it again under a new number */
  return rc;
}

int store_write_sst(struct store *s, uint64_t number, enum sst_pieces pieces, const uint8_t *buf, size_t len)
{
  struct sst_file_out o;
  int rc = store_sst_create(s, number, pieces, &o);
  return rc == SOCHDB_OK ? store_sst_complete(s, &o, buf, len) : rc;
}

/* The MANIFEST is an edit log: every flush and compaction appends to it, and
** every daemon start (and every rebuild of a lost region) replays all of it.
** Past roll_bytes, and twice its size after the last rewrite (a snapshot
** of thousands of files is itself large), it is rewritten as one snapshot
** (manifest_rewrite: a new file, then CURRENT switched, each durable). A
** failure that leaves CURRENT in doubt fails the store (store_failed); one
** before it keeps the old file, to be tried again after the next edit. */
static void roll_manifest(struct store *s)
{
  uint64_t bytes = manifest_bytes(s->man);
  if (bytes < s->roll_bytes || bytes < 2 * s->rolled_bytes || sdb_dir_is_ours(s->db) != SOCHDB_OK)
    return;   /* not ours: CURRENT may be another database's */
  if (manifest_rewrite(s->man, &s->state) == SOCHDB_OK)
    s->rolled_bytes = manifest_bytes(s->man);
  else if (!manifest_failed(s->man))
    ww_log(s->db->dir, "cannot rewrite the MANIFEST of %llu bytes (%s); it keeps growing for now",
           (unsigned long long)bytes, sochdb_last_error());
}

int store_apply(struct store *s, struct manifest_edit *edit)
{
  pthread_mutex_lock(&s->lock);
  int rc = check_room_locked(s, edit->nadds, edit->ndels);
  if (rc != SOCHDB_OK) {
    remove_refused_locked(s, edit, rc);
    pthread_mutex_unlock(&s->lock);
    return rc;
  }
  manifest_edit_set_next_file(edit, s->next_file);
  int was_failed = manifest_failed(s->man);
  rc = manifest_apply(s->man, &s->state, edit);
  if (rc != SOCHDB_OK && !was_failed && !manifest_failed(s->man))
    remove_refused_locked(s, edit, rc);   /* refused before a byte was written (its checks, memory): nothing names them */
  if (rc == SOCHDB_OK) {
    rc = publish_locked(s);
    s->failed |= rc != SOCHDB_OK;
  }
  if (rc == SOCHDB_OK)
    roll_manifest(s);
  s->failed |= manifest_failed(s->man);
  if (rc == SOCHDB_OK) {
    for (size_t i = 0; i < edit->ndels && rc == SOCHDB_OK; i++)
      if (!is_live(&s->state, edit->dels[i].number))   /* not merely moved to another level */
        rc = doom(s, edit->dels[i].number);
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int store_level0_unthrottles(struct store *s)
{
  /* The published list's count, not the state's under the lock, which the
  ** flusher holds across a MANIFEST fsync. Relaxed: a hint, a list behind
  ** at most; the limits never change after the daemon starts. */
  uint64_t l0 = atomic_load_explicit(&s->r->hdr->stats.live_l0_files, memory_order_relaxed);
  return (s->l0_unthrottle && l0 >= s->l0_unthrottle) || (s->l0_stop && l0 >= s->l0_stop);
}

int store_level0_stops(struct store *s, size_t *l0)
{
  pthread_mutex_lock(&s->lock);
  *l0 = s->state.levels[0].n;
  int stops = s->l0_stop && *l0 >= s->l0_stop && !s->compact_failing;
  pthread_mutex_unlock(&s->lock);
  return stops;
}

void store_compaction_result(struct store *s, int succeeded)
{
  pthread_mutex_lock(&s->lock);
  s->compact_failing = !succeeded;
  pthread_mutex_unlock(&s->lock);
}

int store_failed(struct store *s)
{
  pthread_mutex_lock(&s->lock);
  int failed = s->failed;
  pthread_mutex_unlock(&s->lock);
  return failed;
}

#define RECLAIM_BATCH 64u   /* doomed files taken out of the list per round */

/* Take out of the doomed list up to `max` files that no file list names any
** more, into out. A doomed number names no list to come and is never used
** again, so these may be unlinked once the lock is let go. */
static size_t take_unnamed_locked(struct store *s, uint64_t *out, size_t max)
{
  size_t kept = 0, n = 0;
  for (size_t i = 0; i < s->ndoomed; i++) {
    uint64_t number = s->doomed[i];
    if (n == max || fl_names_file(s->r, number))
      s->doomed[kept++] = number;
    else
      out[n++] = number;
  }
  s->ndoomed = kept;
  return n;
}

void store_reclaim(struct store *s)
{
  uint64_t batch[RECLAIM_BATCH];
  size_t n;
  do {
    pthread_mutex_lock(&s->lock);
    fl_reclaim(s->r, 0);
    /* not ours: the numbers may name another database's tables now */
    n = sdb_dir_is_ours(s->db) == SOCHDB_OK ? take_unnamed_locked(s, batch, RECLAIM_BATCH) : 0;
    pthread_mutex_unlock(&s->lock);
    /* Unlocked: with `discard` the unlink of a 64 MiB table waits about
    ** 23 ms for the disk, and the compactor takes the lock for each output's
    ** number, the flusher for each edit. */
    for (size_t i = 0; i < n; i++) {
      char path[4200];
      sst_file_path(path, sizeof path, s->db->dir, batch[i]);
      CALLPOINT("store.unlink_doomed");   /* tests/test_store.c: the lock is free here */
      if (unlink(path) != 0 && errno != ENOENT)
        ww_log(s->db->dir, "cannot remove %s: %s", path, strerror(errno));
    }
  } while (n == RECLAIM_BATCH);
}

void store_level_bytes(struct store *s, uint64_t out[MANIFEST_LEVELS])
{
  pthread_mutex_lock(&s->lock);
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    out[l] = manifest_level_bytes(&s->state.levels[l]);
  pthread_mutex_unlock(&s->lock);
}
