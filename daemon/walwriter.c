/*
** walwriter.c — the daemon's WAL writer (see walwriter.h).
**
** Group commit: every published commit since the last group goes into one
** group, written in pieces of at most WAL_WRITE_PIECE (its header first)
** and made durable with one fdatasync(), however many processes committed
** them. A failed write is cut off again (ftruncate to the group's start)
** and nothing is published, so the next attempt rewrites the same group; a
** committer waiting for durability is never told a lie.
**
** The runway: groups are written over zeros written ahead of them (up to
** RUNWAY_MAX_BYTES at a time), not appended. An fdatasync of an append must
** also commit the file's new size and blocks to the filesystem's journal; one
** of an overwrite writes the data alone, about half the time on ext4 (the
** fdatasync probes of sochdb-bench). A group that ends past the runway lays
** the next stretch of zeros after itself and pays for both in its
** fdatasync; the groups over that stretch do not. A reader sees zeros after
** the last group as the log's clean end (walfmt.h). Without room for the
** zeros, a group is appended.
**
** Reuse: a new segment takes, when there is one, the file of a segment the
** flusher removed (kept as DIR/wal/<lsn>.free, ww_pool_add), and its groups
** are written over the old ones with no runway: the disk writes over blocks
** it holds (it synced 4 KiB writes over written blocks 8.0-9.2 thousand
** times a second here, appends into a new file 5.1-6.6 thousand), nothing
** is written twice, and no file is removed under the flusher's feet (with
** `discard`, removing 64 MiB took 23 ms). The old groups are salted with the
** old header's checksum, so a scan never takes them for this segment's
** (walfmt.h).
*/
#include "walwriter.h"

#include "durable.h"
#include "error.h"
#include "fsutil.h"
#include "mvcc.h"
#include "seqring.h"
#include "skiplist.h"
#include "testhooks.h"
#include "walfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Zeros written ahead of the groups at a time: an eighth of a segment,
** within RUNWAY_MIN_BYTES..RUNWAY_MAX_BYTES. */
#define RUNWAY_MIN_BYTES (64u << 10)
#define RUNWAY_MAX_BYTES (1u << 20)

/* A group's payload stops growing past this: one write of 8 MiB already
** amortises its fdatasync, and the buffer is the daemon's biggest (a backlog
** of ASYNC commits used to grow it to 64 MiB, kept for good). */
#define GROUP_CAP_BYTES (8u << 20)

void ww_log(const char *dir, const char *fmt, ...)
{
  time_t now = time(NULL);
  struct tm tm;
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s sochdbd[%ld] %s: %s\n", stamp, (long)getpid(), dir, msg);
}

/* fsync DIR/wal: a segment's name is durable once this returns. */
static int fsync_wal_dir(const char *dir)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/" WAL_DIR, dir);
  return sdb_fsync_dir(path);
}

/* A pooled file renamed to tmp and open for writing, or -1 if the pool is
** empty (or its files cannot be had: they are dropped). */
static int take_pooled_file(struct walwriter *w, const char *tmp)
{
  for (;;) {
    pthread_mutex_lock(&w->pool_lock);
    int have = w->npool > 0;
    uint64_t lsn = have ? w->pool[--w->npool] : 0;
    pthread_mutex_unlock(&w->pool_lock);
    if (!have)
      return -1;
    char from[4300];
    wal_free_path(from, sizeof from, w->db->dir, lsn);
    if (rename(from, tmp) == 0) {
      /* only a regular file of its own: a link or a directory planted under
      ** a .free name is never written through */
      int fd = open(tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
      struct stat st;
      if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        return fd;
      if (fd >= 0)
        close(fd);
      unlink(tmp);
    } else {
      unlink(from);
    }
  }
}

/* A new, empty segment starting at first_lsn, durable with its directory
** entry: a pooled file written over (see the file's header), else a new
** one. It appears under its name only complete (written to a temporary
** file, then renamed), so a replay never finds a segment without a header;
** a pooled file's old name is durably gone before it is written (the
** flusher synced the rename to .free), and until the rename to the new
** name it is a .tmp nobody reads. */
static int create_segment(struct walwriter *w, uint64_t first_lsn)
{
  char path[4300], tmp[4320];
  int rc = sdb_dir_is_ours(w->db);
  if (rc != SOCHDB_OK)
    return rc;
  wal_segment_path(path, sizeof path, w->db->dir, first_lsn);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = take_pooled_file(w, tmp), reused = fd >= 0;
  if (!reused)
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return sdb_fail_errno("create WAL segment %s", tmp);
  sdb_apply_db_mode(w->db->dir, fd, tmp);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct wal_seg_header h;
  wal_seg_header_init(&h, first_lsn, w->r->hdr->db_id, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
  h.prev_seq = w->last_logged;
  wal_seg_header_seal(&h);
  struct stat st;
  if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || fdatasync(fd) != 0 || fstat(fd, &st) != 0 ||
      rename(tmp, path) != 0) {
    rc = sdb_fail_errno("write WAL segment %s", path);
    close(fd);
    unlink(tmp);
    return rc;
  }
  /* The segment has its name now: whatever happens next, it is the one we
  ** append to. If its directory entry cannot be made durable yet, no group in
  ** it is published before it is (write_group). */
  w->dir_unsynced = fsync_wal_dir(w->db->dir) != SOCHDB_OK;
  if (w->fd >= 0)
    close(w->fd);
  w->fd = fd;
  w->seg_first_lsn = first_lsn;
  w->salt = wal_seg_salt(&h);
  w->end_offset = WAL_SEG_HEADER;
  w->last_group = 0;
  /* a reused file's old bytes are written over as they are */
  w->zeroed_end = reused && (uint64_t)st.st_size > WAL_SEG_HEADER ? (uint64_t)st.st_size : WAL_SEG_HEADER;
  w->runway_failed = 0;
  w->next_lsn = first_lsn;
  return SOCHDB_OK;
}

/* What the adopting daemon learns from the last segment: where the first
** group holding a commit beyond the region's durable_seq starts, and the
** newest commit in it. */
struct adopt_scan {
  uint64_t durable;            /* the region's durable_seq: the truth */
  uint64_t log_max;            /* newest commit in the segment, kept or not */
  uint64_t kept_max;           /* newest commit read that the region calls durable: it stays logged */
  uint64_t cut_offset;         /* first group with a commit > durable (0 = none) */
  uint64_t cut_lsn;            /* its first LSN */
  uint64_t group_offset;       /* the group being read, and its first LSN */
  uint64_t group_lsn;
  uint64_t noted_seq;          /* the region's note of the log's end covers commits up to it */
  uint64_t noted_logged;       /* and names this commit as logged (or flushed) before its end */
};

static int note_record(void *ctx, const struct wal_record *rec)
{
  struct adopt_scan *a = ctx;
  if (rec->seq > a->log_max)
    a->log_max = rec->seq;
  /* a new group: no group starts at offset 0 (the segment's header is
  ** there), and the log's first group starts at LSN 0 */
  if (rec->group_offset != a->group_offset) {
    a->group_offset = rec->group_offset;
    a->group_lsn = rec->lsn;
  }
  if (rec->seq <= a->durable) {
    if (rec->seq > a->kept_max)
      a->kept_max = rec->seq;
    if (a->cut_offset)   /* a confirmed commit after an unconfirmed one: not a log we wrote */
      return sdb_fail(SOCHDB_CORRUPT, "WAL commit %llu at LSN %llu follows commits never confirmed durable",
                      (unsigned long long)rec->seq, (unsigned long long)rec->lsn);
  } else if (!a->cut_offset) {
    /* Groups end where durable_seq was published, so the first unconfirmed
    ** commit opens its group; anything else would cut confirmed commits. */
    if (rec->lsn != a->group_lsn)
      return sdb_fail(SOCHDB_CORRUPT, "WAL group at offset %llu mixes confirmed and unconfirmed commits",
                      (unsigned long long)rec->group_offset);
    a->cut_offset = rec->group_offset;
    a->cut_lsn = rec->lsn;
  }
  return 0;
}

/* Where the scan of segment first_lsn may resume: after the groups the
** region's note says a daemon made durable in it (durable.h), if the note
** is whole, names this segment and claims no commit beyond what the region
** calls durable (nor a logged commit beyond its own seq). NULL: scan the
** whole segment. wal_scan_buffer_from checks the resume point against the
** file, and a file that does not bear it out is corruption: the note says
** its groups were durable. */
static const struct wal_resume *noted_resume(const struct walwriter *w, uint64_t first_lsn, struct adopt_scan *a,
                                             struct wal_resume *out)
{
  struct durable_log_end e;
  if (!durable_log_end(w->r, &e) || e.segment != first_lsn || e.seq > a->durable || e.logged_seq > e.seq)
    return NULL;
  *out = (struct wal_resume){ e.last_group, e.end_offset, e.next_lsn };
  a->noted_seq = e.seq;
  a->noted_logged = e.logged_seq;
  return out;
}

/* Open the last segment for appending after its last whole group. Whole
** groups holding commits the region never saw confirmed durable are cut off
** too: their bytes may be page-cache ghosts of a write whose fdatasync failed
** (then the predecessor died before truncating them), so they are written
** again from the commit-record ring, which still holds them: durable_seq did
** not move past them, so no committer could overwrite their slots. */
static int adopt_segment(struct walwriter *w, uint64_t first_lsn, struct adopt_scan *a)
{
  char path[4300];
  wal_segment_path(path, sizeof path, w->db->dir, first_lsn);
  struct wal_scan_result res;
  struct wal_resume noted;
  int rc = wal_scan_file_from(path, w->r->hdr->db_id, noted_resume(w, first_lsn, a, &noted), note_record, a, &res);
  if (rc != SOCHDB_OK)
    return rc;
  if (res.resumed && a->noted_seq > a->log_max)   /* the groups not read again hold commits up to it */
    a->log_max = a->noted_seq;
  /* The next segment's prev_seq (walfmt.h) must name a commit logged before
  ** it: one this scan read and keeps, the one the note names for the groups
  ** not read again, or the one this segment names. Not noted_seq, which may
  ** be an abandoned seq that no group holds. Known here, a segment made
  ** before this writer logs anything still names one. */
  uint64_t logged = res.resumed ? a->noted_logged : 0;
  if (a->kept_max > logged)
    logged = a->kept_max;
  w->last_logged = res.prev_seq > logged ? res.prev_seq : logged;
  w->adopted_from = res.resumed ? noted.end_offset : WAL_SEG_HEADER;
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return sdb_fail_errno("open WAL segment %s", path);
  uint64_t end = res.end_offset, next_lsn = res.next_lsn;
  /* In a reused file the bytes after the groups may be its earlier use's:
  ** only a torn group's header says a write was interrupted. */
  if (res.torn_bytes)
    ww_log(w->db->dir, "WAL %s: cut off a torn tail of %llu bytes at offset %llu (an interrupted write, never "
           "acknowledged%s); the log ends at LSN %llu", path, (unsigned long long)res.torn_bytes,
           (unsigned long long)res.end_offset,
           res.torn_write ? "" : ", or what the file held before it was reused",
           (unsigned long long)res.next_lsn);
  if (a->cut_offset) {
    /* the LSN of the cut group: its records' LSNs minus what precedes them in it */
    next_lsn = a->cut_lsn;
    ww_log(w->db->dir, "WAL %s: commits after %llu were never confirmed durable; their groups from offset "
           "%llu are rewritten from memory", path, (unsigned long long)a->durable,
           (unsigned long long)a->cut_offset);
    end = a->cut_offset;
  }
  if ((res.torn_bytes || a->cut_offset) && ftruncate(fd, (off_t)end) != 0) {
    rc = sdb_fail_errno("truncate %s", path);
    close(fd);
    return rc;
  }
  /* What the previous daemon wrote and we keep may not have been synced yet. */
  if (fdatasync(fd) != 0) {
    rc = sdb_fail_errno("fdatasync %s", path);
    close(fd);
    return rc;
  }
  /* A clean end may be followed by the runway our predecessor wrote. */
  struct stat st;
  w->fd = fd;
  w->seg_first_lsn = first_lsn;
  w->salt = res.salt;
  w->end_offset = end;
  w->zeroed_end = fstat(fd, &st) == 0 && (uint64_t)st.st_size > end ? (uint64_t)st.st_size : end;
  w->next_lsn = next_lsn;
  return SOCHDB_OK;
}

static uint64_t segment_bytes(const struct walwriter *w);

/* Whether the log's disk has room to keep pooled files: two memtables'
** tables and the pool's files besides. Pooled files hold space a nearly
** full disk needs for the tables whose flushes free the log. */
static int pool_has_room(struct walwriter *w)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/" WAL_DIR, w->db->dir);
  struct statvfs sv;
  if (statvfs(path, &sv) != 0)
    return 0;
  uint64_t want = 2 * (uint64_t)w->r->hdr->memtable_bytes + (WAL_FREE_MAX + 1) * segment_bytes(w);
  return (uint64_t)sv.f_bavail * sv.f_frsize >= want;
}

/* Unlink every pooled file (the disk may be full: they hold its space).
** By path: where DIR is no longer our database's (removed, or replaced by
** another whose segments may have the same names) the files are only
** forgotten. */
static void release_pool(struct walwriter *w)
{
  uint64_t lsns[WAL_FREE_MAX];
  pthread_mutex_lock(&w->pool_lock);
  unsigned n = w->npool;
  memcpy(lsns, w->pool, n * sizeof *lsns);
  w->npool = 0;
  pthread_mutex_unlock(&w->pool_lock);
  if (n && sdb_dir_is_ours(w->db) != SOCHDB_OK)
    return;
  for (unsigned i = 0; i < n; i++) {   /* unlocked: with `discard` an unlink may wait on the disk */
    char path[4300];
    wal_free_path(path, sizeof path, w->db->dir, lsns[i]);
    unlink(path);
  }
}

/* The files a predecessor kept for reuse join the pool, as many as it
** takes while the disk has room; the rest are removed. So are the segments
** a predecessor died making (<lsn>.wal.tmp, never read: no group is
** written into a segment before its name is durable): one made of a
** pooled file holds a whole segment's bytes, and the next segment seldom
** has its name, whose creation would have replaced it. */
static void adopt_pool(struct walwriter *w)
{
  uint64_t *lsns;
  size_t n;
  if (wal_list_tmp(w->db->dir, &lsns, &n) == SOCHDB_OK) {
    for (size_t i = 0; i < n; i++) {
      char path[4300], tmp[4320];
      wal_segment_path(path, sizeof path, w->db->dir, lsns[i]);
      snprintf(tmp, sizeof tmp, "%s.tmp", path);
      unlink(tmp);
    }
    free(lsns);
  }
  if (wal_list_free(w->db->dir, &lsns, &n) != SOCHDB_OK)
    return;   /* they stay until a daemon can list them */
  int room = pool_has_room(w);
  for (size_t i = 0; i < n; i++) {
    char path[4300];
    wal_free_path(path, sizeof path, w->db->dir, lsns[i]);
    if (room && w->npool < WAL_FREE_MAX)
      w->pool[w->npool++] = lsns[i];
    else
      unlink(path);
  }
  free(lsns);
}

int ww_open(struct walwriter *w, sochdb *db)
{
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->closed_lock, NULL);
  pthread_mutex_init(&w->pool_lock, NULL);
  w->db = db;
  w->r = &db->region;
  w->fd = -1;
  char path[4200];
  snprintf(path, sizeof path, "%s/" WAL_DIR, db->dir);
  if (mkdir(path, 0700) == 0)
    sdb_apply_db_mode(db->dir, -1, path);
  else if (errno != EEXIST)
    return sdb_fail_errno("mkdir %s", path);
  uint64_t *lsns;
  size_t n;
  int rc = wal_list_segments(db->dir, &lsns, &n);
  if (rc != SOCHDB_OK)
    return rc;
  struct adopt_scan a = { .durable = durable_seq(w->r) };
  rc = n ? adopt_segment(w, lsns[n - 1], &a) : create_segment(w, 0);
  free(lsns);
  /* A predecessor may have died between renaming a segment into place and
  ** syncing the directory: make every name we are about to rely on durable. */
  if (rc == SOCHDB_OK)
    rc = fsync_wal_dir(db->dir);
  if (rc == SOCHDB_OK)
    rc = sdb_fsync_dir(db->dir);
  if (rc != SOCHDB_OK)
    return rc;
  adopt_pool(w);   /* after the sync: a predecessor's .free names are durable now */
  /* The cut groups are rewritten from the region, which must hold them. */
  uint64_t published = seqring_published(w->r);
  if (a.log_max > published)
    return sdb_fail(SOCHDB_CORRUPT, "the WAL holds commit %llu but the region only %llu: the region is not "
                    "this log's (remove it to rebuild it from the WAL)", (unsigned long long)a.log_max,
                    (unsigned long long)published);
  w->next_seq = a.durable + 1;
  /* DIR/wal may be a link to, or a mount of, another filesystem (a log on
  ** its own device): then the tables take none of the log's space, and the
  ** log's room on its own disk is no table's (leave_room_for_table). */
  struct stat wal_st, dir_st;
  w->tables_elsewhere = fstat(w->fd, &wal_st) == 0 && stat(db->dir, &dir_st) == 0 && wal_st.st_dev != dir_st.st_dev;
  return SOCHDB_OK;
}

static int reserve(struct walwriter *w, size_t need)
{
  if (need <= w->cap)
    return SOCHDB_OK;
  size_t cap = w->cap ? w->cap : 1u << 20;
  while (cap < need)
    cap *= 2;
  uint8_t *grown = realloc(w->buf, cap);
  if (!grown)
    return sdb_fail(SOCHDB_NOMEM, "WAL group buffer of %zu bytes", cap);
  w->buf = grown;
  w->cap = cap;
  return SOCHDB_OK;
}

/* Append commit c's record to the group buffer at *len. */
static int encode_commit(struct walwriter *w, const struct mv_commit *c, size_t *len)
{
  /* relaxed: durable_record read it the same way (the decision published it) */
  uint32_t nops = atomic_load_explicit(&c->nops, memory_order_relaxed);
  uint64_t payload = 0;
  for (uint32_t i = 0; i < nops; i++) {
    const struct mv_version *v = shm_ref_at(w->r, c->versions[i]);
    const struct sl_node *node = shm_ref_at(w->r, v->node);
    payload += node->klen + mv_vlen(v);
  }
  size_t bytes = wal_record_bytes(nops, payload);
  if (!bytes)
    return sdb_fail(SOCHDB_INVALID, "commit %llu is too large for one WAL record", (unsigned long long)c->seq);
  int rc = reserve(w, *len + bytes);
  if (rc != SOCHDB_OK)
    return rc;
  uint8_t *rec = w->buf + *len;
  wal_record_begin(rec, bytes, WAL_COMMIT, c->seq, nops);
  size_t pos = 0;
  for (uint32_t i = 0; i < nops; i++) {
    const struct mv_version *v = shm_ref_at(w->r, c->versions[i]);
    const struct sl_node *node = shm_ref_at(w->r, v->node);
    int del = mv_is_tombstone(v);
    pos = wal_record_add_op(rec, pos, del ? WAL_DEL : WAL_PUT, sl_key(node), node->klen, v->value,
                            del ? 0 : mv_vlen(v));
  }
  wal_record_finish(rec);
  *len += bytes;
  return SOCHDB_OK;
}

/* The most one write of the log moves: a write covering an aligned 2 MiB
** would get a 2 MiB folio, which costs more than small ones for nothing
** (the log is read back only when a daemon starts, by recovery and by
** `sochdb check`, never mapped by readers), and on a virtual machine whose
** free memory is reported to its host costs a fresh block from the host
** (daemon/store.c, piece_bytes). */
#define WAL_WRITE_PIECE ((size_t)256 << 10)

/* Write all of buf at off in pieces, continuing after short writes and EINTR. */
static int write_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
  while (len) {
    int fault = FAULT("wal.write");
    size_t n = len < WAL_WRITE_PIECE ? len : WAL_WRITE_PIECE;
    if (FAULT("wal.short") && n > 1)   /* a short write, for tests */
      n /= 2;
    ssize_t got = fault ? (errno = fault, -1) : pwrite(fd, buf, n, (off_t)off);
    if (got < 0 && errno == EINTR && !fault)
      continue;
    if (got <= 0)
      return got < 0 ? sdb_fail_errno("write WAL at offset %llu (%zu bytes)", (unsigned long long)off, n)
                     : sdb_fail(SOCHDB_IO, "WAL write at offset %llu (%zu bytes) wrote nothing",
                                (unsigned long long)off, n);
    buf += got;
    len -= (size_t)got;
    off += (uint64_t)got;
    if (len)
      CRASHPOINT("wal.piece_written");   /* a group part written: tests/test_faults.c */
  }
  return SOCHDB_OK;
}

/* A segment is closed after about a quarter memtable (within 256 KiB..
** WAL_SEGMENT_BYTES): the flusher removes whole segments, so this keeps the
** log that outlives a flush small, and recovery bounded by memtable size. */
static uint64_t segment_bytes(const struct walwriter *w)
{
  uint64_t b = w->r->hdr->memtable_bytes / 4;
  return b < (256u << 10) ? (256u << 10) : b > WAL_SEGMENT_BYTES ? WAL_SEGMENT_BYTES : b;
}

/* How far ahead of a group the runway is laid at a time. */
static uint64_t runway_step(const struct walwriter *w)
{
  uint64_t step = segment_bytes(w) / 8;
  return step < RUNWAY_MIN_BYTES ? RUNWAY_MIN_BYTES : step > RUNWAY_MAX_BYTES ? RUNWAY_MAX_BYTES : step;
}

/* Zeros over [from, to) of fd: the offset reached, `to` unless a write
** failed (errno says why). Plain pwrites: the runway's own fault point is
** wal.runway, and unwrite_group's cleanup must not consume wal.write's. */
static uint64_t write_zeros(int fd, uint64_t from, uint64_t to)
{
  static const uint8_t zeros[1u << 16];
  while (from < to) {
    size_t n = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
    ssize_t got = pwrite(fd, zeros, n, (off_t)from);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      if (got == 0)
        errno = EIO;
      break;
    }
    from += (uint64_t)got;
  }
  return from;
}

/* Make the segment hold zeros up to `upto` (the end of the group about to
** be written) at least, laying them a runway step at a time (see the file's
** header). They become durable with the group written over them, by its
** fdatasync. Zeros under the group itself would be overwritten before
** anything synced them, which buys nothing: only those after it are
** written, and the group fills the hole before them (a hole reads as zeros,
** so the segment's clean end is the same). For the big groups of a batched
** load that halves what the writer copies into the page cache. */
static int extend_runway(struct walwriter *w, uint64_t upto)
{
  if (upto <= w->zeroed_end)
    return SOCHDB_OK;
  int fault = FAULT("wal.runway");
  if (fault) {
    errno = fault;
    return sdb_fail_errno("write the WAL's runway of zeros");
  }
  uint64_t step = runway_step(w);
  uint64_t target = (upto + step - 1) / step * step;
  if (target == upto)
    target += step;   /* a group that ends on a step still leaves a runway after it */
  if (write_zeros(w->fd, upto, target) < target)
    return sdb_fail_errno("write the WAL's runway of zeros");   /* appended: unwrite_group cuts what it wrote */
  w->zeroed_end = target;
  CRASHPOINT("wal.runway_written");   /* killed here: tests/test_flush_crash.c */
  return SOCHDB_OK;
}

/* After a failed write or fdatasync of the group that was to end at `end`:
** zeros again over what it may have written, not a truncation (the zeros
** under it may be durable already, with the previous group). Plain pwrites,
** outside the fault points, which this cleanup must not consume. If even
** that fails, the file is cut at the group's start and the retry lays the
** runway again; either way the retry overwrites the same bytes. */
static void unwrite_group(struct walwriter *w, uint64_t end)
{
  if (end > w->zeroed_end) {   /* appended past the runway (no room for one): that part goes */
    if (ftruncate(w->fd, (off_t)w->zeroed_end) != 0) { /* zeros below; the retry overwrites the rest */ }
    end = w->zeroed_end;
  }
  if (write_zeros(w->fd, w->end_offset, end) < end) {
    if (ftruncate(w->fd, (off_t)w->end_offset) != 0) { /* the retry overwrites it anyway */ }
    w->zeroed_end = w->end_offset;
  }
}

/* SOCHDB_OK if a group of len bytes may be written now; an error (nothing
** written) while it would take the room the flusher asked for (room_bytes)
** for the table of the memtable it flushes, unless that table is built and
** waits for this log (room_seq). The log and the tables share the disk and
** only that flush removes log segments: a log that took the last free MiB
** for newer commits left the table no room, and neither ever moved again
** on a disk with a few MiB free (tests/test_faults.c,
** the_log_leaves_a_failing_flush_room_for_its_table). Commits wait
** meanwhile, as for a failed write, and the table is written first. One
** fstatvfs a group, only while a flush is in progress. */
static int leave_room_for_table(struct walwriter *w, size_t len)
{
  /* relaxed, both: a pacing hint between two threads of this daemon. A
  ** stale or mismatched pair lets one group through or holds it back one
  ** retry longer; what is acknowledged stays what was written and synced. */
  uint64_t room = atomic_load_explicit(&w->room_bytes, memory_order_relaxed);
  if (!room || w->tables_elsewhere || w->next_seq <= atomic_load_explicit(&w->room_seq, memory_order_relaxed))
    return SOCHDB_OK;   /* no flush, its table on another disk, or built and waiting for this log: write it */
  struct statvfs sv;
  if (fstatvfs(w->fd, &sv) != 0)
    return SOCHDB_OK;   /* cannot tell: write, as without the hint */
  uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
  uint64_t need = room + len + sizeof(struct wal_group_header) + runway_step(w);
  if (avail >= need)
    return SOCHDB_OK;
  errno = ENOSPC;
  return sdb_fail(SOCHDB_IO, "a group of %zu bytes waits: %llu bytes are free and the memtable sochdbd "
                  "flushes needs %llu for its table, whose flush then frees log segments", len,
                  (unsigned long long)avail, (unsigned long long)room);
}

static int write_group(struct walwriter *w, size_t len)
{
  int held = leave_room_for_table(w, len);
  if (held != SOCHDB_OK)
    return held;
  struct wal_group_header g;
  wal_group_header_init(&g, w->salt, w->next_lsn, w->buf, (uint32_t)len);
  uint64_t end = w->end_offset + sizeof g + len;
  if (extend_runway(w, end) != SOCHDB_OK && !w->runway_failed) {
    /* No room for zeros ahead (a nearly full disk): the group is appended,
    ** as every group was before the runway; its own write says if it fits. */
    ww_log(w->db->dir, "no WAL runway (%s); appending groups to this segment", sochdb_last_error());
    w->runway_failed = 1;
  }
  int rc = write_all(w->fd, (const uint8_t *)&g, sizeof g, w->end_offset);
  if (rc == SOCHDB_OK)
    rc = write_all(w->fd, w->buf, len, w->end_offset + sizeof g);
  int fault = rc == SOCHDB_OK ? FAULT("wal.fsync") : 0;
  if (rc == SOCHDB_OK && (fault ? (errno = fault, -1) : fdatasync(w->fd)) != 0)
    rc = sdb_fail_errno("fdatasync WAL group at LSN %llu", (unsigned long long)w->next_lsn);
  if (rc == SOCHDB_OK && w->dir_unsynced) {   /* the segment's own name must be durable first */
    rc = fsync_wal_dir(w->db->dir);
    if (rc == SOCHDB_OK)
      w->dir_unsynced = 0;
  }
  if (rc != SOCHDB_OK) {
    unwrite_group(w, end);
    return rc;
  }
  w->last_group = w->end_offset;
  w->end_offset = end;
  if (w->zeroed_end < end)   /* appended past the runway: the next one starts after it */
    w->zeroed_end = end;
  w->next_lsn += len;
  return SOCHDB_OK;
}

pthread_rwlock_t ww_records_lock = PTHREAD_RWLOCK_INITIALIZER;   /* see walwriter.h */

static void note_closed(struct walwriter *w, uint64_t lsn, uint64_t seq_bound)
{
  pthread_mutex_lock(&w->closed_lock);
  w->closed[w->nclosed++ % WW_CLOSED_MAX] = (struct ww_closed_segment){ lsn, seq_bound };
  pthread_mutex_unlock(&w->closed_lock);
}

int ww_write_pending(struct walwriter *w)
{
  uint64_t published = seqring_published(w->r);
  if (published < w->next_seq)
    return 0;
  size_t len = 0;
  uint64_t records = 0, last = w->next_seq - 1, newest_logged = 0;
  /* A group is capped (GROUP_CAP_BYTES, or one commit if larger): what is
  ** left goes in the next group, and durable_seq moves only over what was
  ** written. Each commit fits one record: sochdb_commit refuses the rest. */
  size_t cap = w->group_cap ? w->group_cap : GROUP_CAP_BYTES;
  /* Nor past its segment by more than a segment: a segment is removed only
  ** once every memtable it logs is flushed, so one that logs many holds
  ** their log until the last of their tables is written. After a full disk
  ** an 8 MiB group of small (1 MiB) memtables kept that space from the
  ** flush whose table it waited for (tests/test_faults.c,
  ** a_few_free_mib_do_not_deadlock_the_log_against_the_flush). */
  if (cap > segment_bytes(w))
    cap = (size_t)segment_bytes(w);
  pthread_rwlock_rdlock(&ww_records_lock);
  for (uint64_t s = w->next_seq; s <= published && len < cap; s++) {
    const struct mv_commit *c = durable_record(w->r, s);
    if (c) {
      int rc = encode_commit(w, c, &len);
      if (rc != SOCHDB_OK) {
        pthread_rwlock_unlock(&ww_records_lock);
        return -rc;
      }
      records++;
      newest_logged = s;
    }
    last = s;            /* an aborted or abandoned seq has nothing to log */
  }
  pthread_rwlock_unlock(&ww_records_lock);
  published = last;
  if (len) {
    int rc = write_group(w, len);
    if (rc != SOCHDB_OK) {
      /* A group that does not fit may be followed by smaller ones that do:
      ** shrink the next try, down to one commit, so a nearly full disk still
      ** lets commits become durable (and flushes free WAL segments). */
      if (cap > 4096)
        w->group_cap = cap / 2;
      release_pool(w);   /* a full disk, perhaps: give it the pooled files */
      return -rc;
    }
    w->group_cap = cap >= GROUP_CAP_BYTES / 2 ? 0 : cap * 2;   /* grows back a step per group */
    w->last_logged = newest_logged;   /* durable now: a later segment may name it */
    struct shm_global_stats *st = &w->r->hdr->stats;
    atomic_fetch_add_explicit(&st->wal_groups, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->wal_records, records, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->wal_bytes, len, memory_order_relaxed);
  }
  if (w->cap > 2 * (size_t)GROUP_CAP_BYTES) {   /* grown for one huge commit: do not keep it */
    free(w->buf);
    w->buf = NULL;
    w->cap = 0;
  }
  durable_publish(w->r, published);
  if (len)   /* after the publish: a note never covers a commit the region does not call durable */
    durable_note_log_end(w->r, &(struct durable_log_end){ w->seg_first_lsn, w->last_group, w->end_offset,
                                                          w->next_lsn, published, w->last_logged });
  w->next_seq = published + 1;
  if (w->end_offset >= segment_bytes(w)) {
    uint64_t closing = w->seg_first_lsn;
    int rc = create_segment(w, w->next_lsn);
    if (rc == SOCHDB_OK)
      note_closed(w, closing, w->next_seq - 1);   /* every group it holds was below next_seq */
    else
      ww_log(w->db->dir, "cannot start a new WAL segment (%s); continuing in the current one", sochdb_last_error());
  }
  return 1;
}

int ww_closed_seq_bound(struct walwriter *w, uint64_t lsn, uint64_t *seq_bound)
{
  int known = 0;
  pthread_mutex_lock(&w->closed_lock);
  unsigned kept = w->nclosed < WW_CLOSED_MAX ? w->nclosed : WW_CLOSED_MAX;
  for (unsigned i = 0; i < kept && !known; i++) {
    const struct ww_closed_segment *c = &w->closed[(w->nclosed - 1 - i) % WW_CLOSED_MAX];
    if (c->lsn == lsn) {
      *seq_bound = c->seq_bound;
      known = 1;
    }
  }
  pthread_mutex_unlock(&w->closed_lock);
  return known;
}

int ww_pool_wants(struct walwriter *w, unsigned pending)
{
  pthread_mutex_lock(&w->pool_lock);
  unsigned held = w->npool;
  pthread_mutex_unlock(&w->pool_lock);
  return held + pending < WAL_FREE_MAX && pool_has_room(w);
}

void ww_pool_add(struct walwriter *w, uint64_t lsn)
{
  pthread_mutex_lock(&w->pool_lock);
  int kept = w->npool < WAL_FREE_MAX;
  if (kept)
    w->pool[w->npool++] = lsn;
  pthread_mutex_unlock(&w->pool_lock);
  if (!kept) {   /* offered past ww_pool_wants: not kept */
    char path[4300];
    wal_free_path(path, sizeof path, w->db->dir, lsn);
    unlink(path);
  }
}

void ww_release_pool(struct walwriter *w) { release_pool(w); }

void ww_close(struct walwriter *w)
{
  pthread_mutex_destroy(&w->closed_lock);
  pthread_mutex_destroy(&w->pool_lock);
  if (w->fd >= 0)
    close(w->fd);
  w->fd = -1;
  free(w->buf);
  w->buf = NULL;
}
