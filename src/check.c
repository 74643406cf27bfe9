/*
** check.c — offline, read-only verification of a database directory (see
** check.h for what is verified and how findings are judged).
*/
#include "check.h"

#include "error.h"
#include "filenames.h"
#include "fsutil.h"
#include "internal.h"  /* SDB_ID_FILE */
#include "manifest.h"
#include "sochdb.h"
#include "sstfmt.h"
#include "testhooks.h"
#include "walfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CK_PATH   4400
#define WAL_DBID_OFFSET 24u   /* db_id in a WAL segment header */
#define MAN_DBID_OFFSET 16u   /* db_id in a MANIFEST header */

/* ---- the run ------------------------------------------------------------------ */

struct sst_found {        /* a *.sst file found in the directory */
  uint64_t number;
  uint64_t size;
  int      live;          /* listed in the MANIFEST */
  char     name[32];
};

struct ck {
  const char                   *dir;
  const struct check_callbacks *cb;
  struct check_summary         *s;
  uint64_t                      done, total;
  uint8_t                       db_id[16];
  int                           fatal;   /* an error that stops the run (returned) */
};

__attribute__((format(printf, 4, 5)))
static void problem(struct ck *c, int damage, const char *file, const char *fmt, ...)
{
  char what[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (damage)
    c->s->damaged++;
  else
    c->s->warnings++;
  if (c->cb && c->cb->problem)
    c->cb->problem(c->cb->ctx, file, what);
}

static void progress(struct ck *c, uint64_t done)
{
  if (done > c->done)
    c->done = done;
  if (c->done > c->total)
    c->total = c->done;
  if (c->cb && c->cb->progress)
    c->cb->progress(c->cb->ctx, c->done, c->total);
}

/* sochdb_last_error(), copied before the next library call overwrites it. */
static const char *last_error(char *buf, size_t n)
{
  snprintf(buf, n, "%s", sochdb_last_error());
  return buf;
}

/* An error that is not a property of the data (permissions, descriptors):
** the run cannot go on. EIO is a property of the data: damage. */
static void io_problem(struct ck *c, const char *path, const char *what, int err)
{
  if (err == EIO) {
    problem(c, 1, path, "%s: %s", what, strerror(err));
    return;
  }
  struct stat st;
  if ((err == EINVAL || err == EISDIR) && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    problem(c, 1, path, "not a regular file: a FIFO, a device or a directory stands where sochdb keeps a file");
    return;
  }
  if (!c->fatal)
    c->fatal = sdb_fail(SOCHDB_IO, "%s %s: %s", what, path, strerror(err));
}

static uint64_t file_size(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* ---- identity ------------------------------------------------------------------- */

/* The MANIFEST file CURRENT names, as a path (empty if CURRENT is unreadable). */
static void current_manifest_path(const char *dir, char *out, size_t n)
{
  char path[CK_PATH];
  out[0] = '\0';
  snprintf(path, sizeof path, "%s/CURRENT", dir);
  uint8_t *buf;
  size_t len;
  if (sdb_read_file(path, &buf, &len) != 0)
    return;
  if (len > 9 && len < 40 && memcmp(buf, "MANIFEST-", 9) == 0 && buf[len - 1] == '\n') {
    int ok = 1;
    for (size_t i = 9; i + 1 < len; i++)
      ok &= buf[i] >= '0' && buf[i] <= '9';
    if (ok)
      snprintf(out, n, "%s/%.*s", dir, (int)(len - 1), (const char *)buf);
  }
  free(buf);
}

/* Read the first `need` bytes of path into p: 1 if there were that many. */
static int read_head(const char *path, uint8_t *p, size_t need)
{
  int fd;
  size_t len;
  if (sdb_open_regular(path, &fd, &len) != 0)
    return 0;
  ssize_t r = pread(fd, p, need, 0);
  close(fd);
  return r == (ssize_t)need;
}

/* DIR/sochdb.id. SOCHDB_NOTFOUND if absent (not a database); when damaged,
** it is reported and the id is taken from the MANIFEST or the WAL instead, so
** that the rest can still be checked. */
static int check_identity(struct ck *c)
{
  char path[CK_PATH];
  snprintf(path, sizeof path, "%s/" SDB_ID_FILE, c->dir);
  uint8_t *buf;
  size_t len;
  int e = sdb_read_file(path, &buf, &len);
  if (e == ENOENT)
    return sdb_fail(SOCHDB_NOTFOUND, "%s is not a sochdb database (no %s)", c->dir, SDB_ID_FILE);
  if (e == ENOMEM)
    return sdb_fail(SOCHDB_NOMEM, "reading %s", path);
  if (e) {
    io_problem(c, path, "cannot read", e);
    if (c->fatal)
      return c->fatal;
  } else {
    c->s->files_checked++;
    c->s->bytes_checked += len;
    if (len == 16) {
      memcpy(c->db_id, buf, 16);
      free(buf);
      return SOCHDB_OK;
    }
    free(buf);
    problem(c, 1, path, "the directory's identity is damaged: %zu bytes where exactly 16 are expected", len);
  }
  /* Borrow the id from the MANIFEST's or the first WAL segment's header. */
  uint8_t head[64];
  char other[CK_PATH];
  current_manifest_path(c->dir, other, sizeof other);
  if (other[0] && read_head(other, head, MANIFEST_HEADER) && memcmp(head, "SOCHMAN", 8) == 0) {
    memcpy(c->db_id, head + MAN_DBID_OFFSET, 16);
    return SOCHDB_OK;
  }
  uint64_t *lsns;
  size_t n;
  if (wal_list_segments(c->dir, &lsns, &n) == SOCHDB_OK && n) {
    wal_segment_path(other, sizeof other, c->dir, lsns[0]);
    if (read_head(other, head, WAL_SEG_HEADER) && memcmp(head, "SOCHWAL", 8) == 0)
      memcpy(c->db_id, head + WAL_DBID_OFFSET, 16);
  }
  free(lsns);
  return SOCHDB_OK;
}

/* ---- SSTables ------------------------------------------------------------------- */

/* Check that the last entry read from block b is the block's index key. */
static int block_ends_on_index_key(const struct sst_reader *r, uint32_t b, const uint8_t *key, size_t klen,
                                   uint64_t seq)
{
  const struct sst_index_entry *ie = &r->index[b];
  return ie->klen == klen && ie->seq == seq && memcmp(r->keys + ie->key_off, key, klen) == 0;
}

/* Verify the table in buf[0..len) completely; f (may be NULL) gives the key
** range the MANIFEST records. One problem at most per file: the first found. */
static void verify_sst(struct ck *c, const char *path, const uint8_t *buf, size_t len,
                       const struct manifest_file *f)
{
  char err[1024];
  uint64_t base = c->done;
  struct sst_reader r;
  int rc = sst_open(buf, len, &r);
  if (rc == SOCHDB_NOMEM) {
    c->fatal = rc;
    return;
  }
  if (rc != SOCHDB_OK) {
    problem(c, 1, path, "%s", last_error(err, sizeof err));
    progress(c, base + len);
    return;
  }
  struct sst_iter it;
  sst_iter_init(&it, &r);
  uint8_t *prev = malloc(SOCHDB_MAX_KEY);
  if (!prev) {
    sst_close(&r);
    c->fatal = sdb_fail(SOCHDB_NOMEM, "checking %s", path);
    return;
  }
  size_t prev_klen = 0;
  uint64_t prev_seq = 0, n = 0;
  uint32_t prev_block = 0;
  int bad = 0;
  struct sst_entry e;
  while (!bad && (rc = sst_iter_next(&it, &e)) == SOCHDB_OK) {
    if (n > 0 && it.block != prev_block) {
      if (!block_ends_on_index_key(&r, prev_block, prev, prev_klen, prev_seq)) {
        problem(c, 1, path, "data block at %llu does not end on the key its index entry names",
                (unsigned long long)r.index[prev_block].offset);
        bad = 1;
        break;
      }
      progress(c, base + r.index[prev_block].offset + r.index[prev_block].size);
    }
    if (n > 0 && sst_ikey_order(prev, prev_klen, prev_seq, e.key, e.klen, e.seq) >= 0) {
      problem(c, 1, path, "entry %llu (data block at %llu) is out of internal-key order", (unsigned long long)n,
              (unsigned long long)r.index[it.block].offset);
      bad = 1;
    } else if (e.seq < r.min_seq || e.seq > r.max_seq) {
      problem(c, 1, path, "entry %llu has seq %llu, outside the footer's range %llu..%llu", (unsigned long long)n,
              (unsigned long long)e.seq, (unsigned long long)r.min_seq, (unsigned long long)r.max_seq);
      bad = 1;
    } else if (f && (key_order(e.key, e.klen, f->smallest, f->smallest_len) < 0 ||
                     key_order(e.key, e.klen, f->largest, f->largest_len) > 0)) {
      problem(c, 1, path, "entry %llu has a key outside the MANIFEST's smallest..largest range for this file",
              (unsigned long long)n);
      bad = 1;
    }
    memcpy(prev, e.key, e.klen);
    prev_klen = e.klen;
    prev_seq = e.seq;
    prev_block = it.block;
    n++;
  }
  if (!bad && rc == SOCHDB_NOMEM)
    c->fatal = rc;
  else if (!bad && rc != SOCHDB_NOTFOUND)
    problem(c, 1, path, "%s", last_error(err, sizeof err));
  else if (!bad && n > 0 && !block_ends_on_index_key(&r, prev_block, prev, prev_klen, prev_seq))
    problem(c, 1, path, "data block at %llu does not end on the key its index entry names",
            (unsigned long long)r.index[prev_block].offset);
  else if (!bad && n != r.entries)
    problem(c, 1, path, "%llu entries where the footer counts %llu", (unsigned long long)n,
            (unsigned long long)r.entries);
  c->s->sst_entries += n;
  free(prev);
  sst_iter_free(&it);
  sst_close(&r);
  progress(c, base + len);
}

/* Map path read-only and verify it. The size found is returned in *size;
** 0, or an errno value when the file could not be opened or mapped. */
static int verify_sst_file(struct ck *c, const char *path, const struct manifest_file *f, uint64_t *size)
{
  const uint8_t *buf;
  size_t len;
  int e = sdb_map_file(path, &buf, &len, NULL);
  if (e)
    return e;
  *size = len;
  if (f && len != f->size)
    problem(c, 1, path, "is %zu bytes; the MANIFEST records %llu%s", len, (unsigned long long)f->size,
            len < f->size ? " (truncated)" : "");
  static const uint8_t empty[1];
  verify_sst(c, path, len ? buf : empty, len, f);
  sdb_unmap_file(buf, len);
  c->s->files_checked++;
  c->s->sst_files++;
  c->s->bytes_checked += len;
  return 0;
}

/* Is file `number` live in the MANIFEST as it is now? (1 also when the
** MANIFEST cannot be read any more: then it cannot be shown gone.) */
static int still_live(struct ck *c, uint64_t number)
{
  struct manifest_state st;
  if (manifest_read(c->dir, c->db_id, &st, NULL) != SOCHDB_OK)
    return 1;
  int live = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS && !live; l++)
    for (size_t i = 0; i < st.levels[l].n && !live; i++)
      live = st.levels[l].files[i].number == number;
  manifest_state_free(&st);
  return live;
}

static void check_live_sst(struct ck *c, unsigned level, const struct manifest_file *f)
{
  char path[CK_PATH];
  if (sst_file_path(path, sizeof path, c->dir, f->number) != SOCHDB_OK) {
    c->fatal = SOCHDB_INVALID;
    return;
  }
  uint64_t size = 0;
  int e = verify_sst_file(c, path, f, &size);
  if (e == ENOENT) {
    if (still_live(c, f->number))
      problem(c, 1, path, "is missing: the MANIFEST lists it at level %u (%llu bytes)", level,
              (unsigned long long)f->size);
    else
      problem(c, 0, path, "vanished while checking: a compaction removed it (no longer in the MANIFEST)");
    progress(c, c->done + f->size);
  } else if (e == ENOMEM) {
    c->fatal = sdb_fail(SOCHDB_NOMEM, "mapping %s", path);
  } else if (e) {
    io_problem(c, path, "cannot read", e);
    progress(c, c->done + f->size);
  }
}

static int cmp_found(const void *a, const void *b)
{
  uint64_t x = ((const struct sst_found *)a)->number, y = ((const struct sst_found *)b)->number;
  return x < y ? -1 : x > y;
}

/* The *.sst files of the directory (names: decimal digits then ".sst"). */
static int list_ssts(struct ck *c, struct sst_found **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  DIR *d = opendir(c->dir);
  if (!d)
    return sdb_fail_errno("opendir %s", c->dir);
  size_t cap = 0;
  int rc = SOCHDB_OK;
  for (struct dirent *e; (e = readdir(d));) {
    const char *s = e->d_name;
    uint64_t number;
    if (!sst_file_number(s, ".sst", &number))
      continue;
    size_t digits = strlen(s) - 4;
    if (*n == cap) {
      cap = cap ? cap * 2 : 32;
      struct sst_found *grown = realloc(*out, cap * sizeof *grown);
      if (!grown) {
        rc = sdb_fail(SOCHDB_NOMEM, "listing SSTables");
        break;
      }
      *out = grown;
    }
    char path[CK_PATH];
    snprintf(path, sizeof path, "%s/%s", c->dir, s);
    (*out)[*n] = (struct sst_found){ .number = number, .size = file_size(path), .live = 0 };
    memcpy((*out)[*n].name, s, digits + 5);   /* digits (at most 20), ".sst" and NUL */
    (*n)++;
  }
  closedir(d);
  if (rc == SOCHDB_OK && *n)
    qsort(*out, *n, sizeof **out, cmp_found);
  return rc;
}

/* ---- the WAL ---------------------------------------------------------------------- */

/* Records inside intact groups whose own checksum does not match: the writer
** wrote them wrong, or they were damaged in its buffer before the group was
** sealed. Counted, and the scan goes on (the rest of the segment is checked).
** And the commits' seqs, across segments: above the last flushed seq they
** must grow, as the replay requires (wal_commit_follows); the first that
** does not is kept for the report. */
struct bad_records {
  uint64_t n, first_lsn, first_group;
  uint64_t flushed;     /* the MANIFEST's last_flushed_seq */
  uint64_t after;       /* the newest commit above it so far, or it */
  uint64_t newest;      /* the newest commit read, at any seq */
  int      seq_bad;
  char     seq_why[512];
};

static int check_record(void *ctx, const struct wal_record *rec)
{
  struct bad_records *b = ctx;
  if (!wal_record_checksum_ok(rec) && !b->n++) {
    b->first_lsn = rec->lsn;
    b->first_group = rec->group_offset;
  }
  if (rec->type != WAL_COMMIT)
    return SOCHDB_OK;
  if (rec->seq > b->newest)
    b->newest = rec->seq;
  if (rec->seq <= b->flushed || b->seq_bad)
    return SOCHDB_OK;
  if (wal_commit_follows(rec, b->after) != SOCHDB_OK) {
    b->seq_bad = 1;
    snprintf(b->seq_why, sizeof b->seq_why, "%s", sochdb_last_error());
  } else {
    b->after = rec->seq;
  }
  return SOCHDB_OK;
}

/* The oldest segment read: its path and prev_seq (walfmt.h), for the check
** that the log reaches back to the MANIFEST's last flushed commit. */
struct oldest_segment {
  int      known;
  uint64_t prev_seq;
  char     path[CK_PATH];
};

/* A segment's bytes for the scan, copied: the newest may be written, or cut
** by a starting daemon trimming its torn tail, while we read it, and an
** older one's file may be taken for reuse once the flusher no longer needs
** it (renamed to .free, then written over under a later segment's name and
** cut by a daemon adopting it: daemon/walwriter.c). A copy lets the scan
** judge one state of it and never touch a mapped page the file no longer
** has (SIGBUS); the file's identity, kept, says afterwards whether the name
** still names what was read (seg_renamed). The copy stops at the end of its
** last data extent: a hole after it reads as zeros, however large a damaged
** size makes it. */
struct seg_bytes {
  const uint8_t *buf;
  size_t         len;
  dev_t          dev;
  ino_t          ino;
};

/* Where fd's last data extent ends (size if the filesystem cannot say). */
static size_t data_end(int fd, size_t size)
{
  size_t end = 0;
  for (off_t pos = 0; (size_t)pos < size;) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0)
      return errno == ENXIO ? end : size;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0)
      return size;
    end = (size_t)hole < size ? (size_t)hole : size;
    pos = hole;
  }
  return end;
}

/* 0, or an errno value (ENOENT: removed meanwhile). */
static int seg_read(const char *path, struct seg_bytes *sb)
{
  *sb = (struct seg_bytes){ NULL, 0, 0, 0 };
  int fd;
  size_t size;
  int e = sdb_open_regular(path, &fd, &size);
  if (e)
    return e;
  struct stat st;
  if (fstat(fd, &st) == 0) {
    sb->dev = st.st_dev;
    sb->ino = st.st_ino;
  }
  CALLPOINT("check.segment_opened");   /* tests/test_check.c: its file is reused now */
  size_t end = data_end(fd, size);
  uint8_t *copy = malloc(end ? end : 1);
  size_t got = 0;
  while (copy && got < end) {
    ssize_t r = pread(fd, copy + got, end - got, (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {   /* cut meanwhile (r == 0): judged as far as it goes */
      e = r < 0 ? errno : 0;
      break;
    }
    got += (size_t)r;
  }
  close(fd);
  if (!copy || e) {
    free(copy);
    return copy ? e : ENOMEM;
  }
  sb->buf = copy;
  sb->len = got;
  return 0;
}

static void seg_release(struct seg_bytes *sb)
{
  free((void *)sb->buf);
  sb->buf = NULL;
}

/* Whether path no longer names the file sb was read from: the segment was
** removed (or its file renamed for reuse) while we read it, and what we
** read may be a later segment's bytes written over it. */
static int seg_renamed(const char *path, const struct seg_bytes *sb)
{
  struct stat st;
  if (stat(path, &st) != 0)
    return errno == ENOENT;
  return st.st_dev != sb->dev || st.st_ino != sb->ino;
}

static int scan_segment(struct ck *c, const struct seg_bytes *sb, struct bad_records *seqs,
                        struct wal_scan_result *res)
{
  static const uint8_t empty[1];
  seqs->n = 0;
  return wal_scan_buffer_from(sb->buf ? sb->buf : empty, sb->len, -1, c->db_id, NULL, check_record, seqs, res);
}

static void check_wal(struct ck *c, const uint64_t *lsns, size_t n, struct oldest_segment *oldest,
                      struct bad_records *seqs)
{
  uint64_t expect = 0;
  int have_expect = 0, read_one = 0;
  char err[1024];
  for (size_t i = 0; i < n && !c->fatal; i++) {
    char path[CK_PATH];
    wal_segment_path(path, sizeof path, c->dir, lsns[i]);
    struct seg_bytes sb;
    struct bad_records before = *seqs;
    int e = seg_read(path, &sb);
    CALLPOINT("check.segment_read");   /* tests/test_check.c: the daemon cuts or writes it now */
    struct wal_scan_result res;
    int rc = e ? SOCHDB_OK : scan_segment(c, &sb, seqs, &res);
    if (!e && rc == SOCHDB_CORRUPT && i + 1 == n) {
      /* damage before an intact group in the newest segment: the writer
      ** may have finished a group while we copied; look once more, and
      ** report what is still there */
      seg_release(&sb);
      struct timespec pause = { 0, 100 * 1000000L };
      nanosleep(&pause, NULL);
      *seqs = before;
      e = seg_read(path, &sb);
      rc = e ? SOCHDB_OK : scan_segment(c, &sb, seqs, &res);
    }
    if (!e && seg_renamed(path, &sb)) {
      /* what was read may be a later segment's bytes over this one's: judged
      ** as a segment removed before it was read */
      seg_release(&sb);
      *seqs = before;
      e = ENOENT;
    }
    size_t len = sb.len;
    if (e == ENOENT) {
      problem(c, 0, path, "vanished while checking (removed once its contents were flushed)");
      have_expect = 0;
      continue;
    }
    if (e == ENOMEM) {
      c->fatal = sdb_fail(SOCHDB_NOMEM, "reading %s", path);
      break;
    }
    if (e) {
      io_problem(c, path, "cannot read", e);
      have_expect = 0;
      continue;
    }
    int was_bad = before.seq_bad;
    const struct bad_records bad = *seqs;
    if (!read_one++) {   /* prev_seq 0 if its header is damaged (reported below): nothing to judge */
      oldest->known = 1;
      oldest->prev_seq = res.prev_seq;
      snprintf(oldest->path, sizeof oldest->path, "%s", path);
    }
    if (bad.n)
      problem(c, 1, path, "%llu records do not match their own checksums inside groups that match theirs (the "
              "first at LSN %llu, in the group at offset %llu): a fault in the writer before the group was "
              "sealed; recovery replays them as written", (unsigned long long)bad.n,
              (unsigned long long)bad.first_lsn, (unsigned long long)bad.first_group);
    if (bad.seq_bad && !was_bad)
      problem(c, 1, path, "%s: the log's commits are out of order, and recovery would refuse it", bad.seq_why);
    seg_release(&sb);
    c->s->files_checked++;
    c->s->wal_segments++;
    c->s->bytes_checked += len;
    c->s->wal_records += res.records;
    if (rc != SOCHDB_OK) {
      problem(c, 1, path, "%s", last_error(err, sizeof err));
      have_expect = 0;
    } else {
      if (res.first_lsn != lsns[i])
        problem(c, 1, path, "its header says it starts at LSN %llu, its name says %llu",
                (unsigned long long)res.first_lsn, (unsigned long long)lsns[i]);
      else if (have_expect && res.first_lsn != expect)
        problem(c, 1, path, "starts at LSN %llu where the previous segment ended at LSN %llu: records are missing",
                (unsigned long long)res.first_lsn, (unsigned long long)expect);
      if (res.torn_write && i + 1 < n)
        problem(c, 1, path, "%llu damaged bytes at offset %llu, and it is not the newest segment",
                (unsigned long long)res.torn_bytes, (unsigned long long)res.end_offset);
      else if (res.torn_write)
        problem(c, 0, path,
                "torn tail of %llu bytes at offset %llu: most likely a write a crash interrupted, never "
                "acknowledged; damage to the last group written looks the same, and its commits would be lost "
                "(cut off when the daemon next opens the log)",
                (unsigned long long)res.torn_bytes, (unsigned long long)res.end_offset);
      expect = res.next_lsn;
      have_expect = 1;
    }
    progress(c, c->done + len);
  }
}

/* The log must hold every commit after the MANIFEST's last_flushed_seq:
** the flusher removes a segment only once every commit in it is flushed.
** On a live database a flush may have moved the MANIFEST on (and removed
** segments) since it was read: judged by the MANIFEST as it is now. */
static void check_log_reaches_back(struct ck *c, const struct oldest_segment *oldest, uint64_t flushed)
{
  if (!oldest->known || oldest->prev_seq <= flushed)
    return;
  struct manifest_state now;
  if (manifest_read(c->dir, c->db_id, &now, NULL) == SOCHDB_OK) {
    if (now.last_flushed_seq > flushed)
      flushed = now.last_flushed_seq;
    manifest_state_free(&now);
  }
  if (oldest->prev_seq > flushed) {
    char gap[CK_PATH + 400];
    wal_gap_message(gap, sizeof gap, oldest->path, oldest->prev_seq, flushed);
    problem(c, 1, oldest->path, "%s", gap);
  }
}

/* The log must reach the newest commit a live table holds. On a live
** database the flusher may have removed the segments we listed, every one
** at or below the last_flushed_seq the MANIFEST says by then, and a new
** segment may have been renamed in while the directory was listed: what
** falls short is judged again by the MANIFEST and the segments as they are
** now. A stopped database's answer does not change. */
static void check_log_reaches_forward(struct ck *c, const struct wal_promise *first, uint64_t newest_lsn)
{
  if (wal_check_reaches(first) == SOCHDB_OK)
    return;
  struct wal_promise now = *first;
  uint64_t *lsns;
  struct manifest_state st;
  if (manifest_read(c->dir, c->db_id, &st, NULL) == SOCHDB_OK) {
    if (st.last_flushed_seq > now.flushed)
      now.flushed = st.last_flushed_seq;
    manifest_state_free(&st);
  }
  if (wal_list_segments(c->dir, &lsns, &now.nsegments) == SOCHDB_OK)
    free(lsns);
  if (!first->nsegments && now.nsegments)
    return;   /* listed while a segment was renamed in: nothing read to judge by */
  if (wal_check_reaches(&now) == SOCHDB_OK)
    return;
  char where[CK_PATH], err[1024];
  if (first->nsegments)
    wal_segment_path(where, sizeof where, c->dir, newest_lsn);
  else
    snprintf(where, sizeof where, "%s/" WAL_DIR, c->dir);
  problem(c, 1, where, "%s", last_error(err, sizeof err));
}

/* ---- the whole directory ------------------------------------------------------------ */

int sdb_check_dir(const char *dir, const struct check_callbacks *cb, struct check_summary *out)
{
  if (!dir || !out)
    return sdb_fail(SOCHDB_INVALID, "sdb_check_dir: NULL argument");
  memset(out, 0, sizeof *out);
  if (strlen(dir) > 4000)
    return sdb_fail(SOCHDB_INVALID, "directory path of %zu bytes is too long", strlen(dir));
  struct stat st;
  if (stat(dir, &st) != 0)
    return errno == ENOENT ? sdb_fail(SOCHDB_NOTFOUND, "%s does not exist", dir) : sdb_fail_errno("stat %s", dir);
  if (!S_ISDIR(st.st_mode))
    return sdb_fail(SOCHDB_INVALID, "%s is not a directory", dir);

  struct ck c = { .dir = dir, .cb = cb, .s = out };
  int rc = check_identity(&c);
  if (rc != SOCHDB_OK)
    return rc;

  /* The MANIFEST. */
  char mpath[CK_PATH], cpath[CK_PATH], err[1024];
  snprintf(cpath, sizeof cpath, "%s/CURRENT", dir);
  struct manifest_state state;
  int torn = 0, mrc = SOCHDB_OK;
  for (int attempt = 0; attempt < 3; attempt++) {
    /* A MANIFEST rewrite between reading CURRENT and reading the file it
    ** named removes that file: read again if CURRENT has moved on. */
    char again[CK_PATH];
    current_manifest_path(dir, mpath, sizeof mpath);
    mrc = manifest_read(dir, c.db_id, &state, &torn);
    if (mrc != SOCHDB_CORRUPT)
      break;
    current_manifest_path(dir, again, sizeof again);
    if (strcmp(again, mpath) == 0)
      break;
  }
  int have_manifest = mrc == SOCHDB_OK;
  if (mrc == SOCHDB_NOMEM || mrc == SOCHDB_IO || mrc == SOCHDB_INVALID)
    return mrc;
  if (mrc == SOCHDB_OK || mrc == SOCHDB_CORRUPT || mrc == SOCHDB_VERSION) {
    out->files_checked++;
    out->bytes_checked += file_size(cpath);
    if (mpath[0] && access(mpath, F_OK) == 0) {
      out->files_checked++;
      out->bytes_checked += file_size(mpath);
    }
  }
  if (mrc == SOCHDB_CORRUPT || mrc == SOCHDB_VERSION)
    problem(&c, 1, mpath[0] ? mpath : cpath, "%s", last_error(err, sizeof err));
  else if (torn)
    problem(&c, 0, mpath, "torn tail after the last whole record: an append a crash interrupted, never "
                          "acknowledged (cut off when the database is next opened)");

  /* What there is to read, for progress. */
  struct sst_found *found = NULL;
  size_t nfound = 0;
  uint64_t *lsns = NULL;
  size_t nlsns = 0;
  rc = list_ssts(&c, &found, &nfound);
  if (rc == SOCHDB_OK)
    rc = wal_list_segments(dir, &lsns, &nlsns);
  if (rc != SOCHDB_OK) {
    manifest_state_free(&state);
    free(found);
    return rc;
  }
  c.total = c.done = out->bytes_checked;
  for (size_t i = 0; i < nfound; i++)
    c.total += found[i].size;
  for (size_t i = 0; i < nlsns; i++) {
    char path[CK_PATH];
    wal_segment_path(path, sizeof path, dir, lsns[i]);
    c.total += file_size(path);
  }
  progress(&c, c.done);

  /* Live SSTables, then the other *.sst files. */
  if (have_manifest) {
    for (unsigned l = 0; l < MANIFEST_LEVELS && !c.fatal; l++)
      for (size_t i = 0; i < state.levels[l].n && !c.fatal; i++) {
        const struct manifest_file *f = &state.levels[l].files[i];
        struct sst_found key = { .number = f->number };
        struct sst_found *hit = nfound ? bsearch(&key, found, nfound, sizeof *found, cmp_found) : NULL;
        if (hit)
          hit->live = 1;
        else
          c.total += f->size;   /* missing (or appeared since the listing) */
        check_live_sst(&c, l, f);
      }
    for (size_t i = 0; i < nfound && !c.fatal; i++) {
      if (found[i].live)
        continue;
      char path[CK_PATH];
      snprintf(path, sizeof path, "%s/%s", dir, found[i].name);
      if (!still_live(&c, found[i].number))   /* else: a flush added it since the MANIFEST was read */
        problem(&c, 0, path, "is not listed in the MANIFEST: an orphan left by an interrupted flush or "
                             "compaction (harmless, not read)");
      progress(&c, c.done + found[i].size);
    }
  } else {
    if (mrc == SOCHDB_NOTFOUND && nfound)
      problem(&c, 1, cpath, "is missing, yet %zu SSTable file%s: which are live is unknown", nfound,
              nfound == 1 ? " exists" : "s exist");
    /* No usable MANIFEST: verify every table on its own. */
    for (size_t i = 0; i < nfound && !c.fatal; i++) {
      char path[CK_PATH];
      snprintf(path, sizeof path, "%s/%s", dir, found[i].name);
      uint64_t size = 0;
      int e = verify_sst_file(&c, path, NULL, &size);
      if (e == ENOMEM)
        c.fatal = sdb_fail(SOCHDB_NOMEM, "mapping %s", path);
      else if (e && e != ENOENT)
        io_problem(&c, path, "cannot read", e);
    }
  }
  uint64_t flushed = mrc == SOCHDB_OK ? state.last_flushed_seq : 0;
  struct wal_promise promise = { .nsegments = nlsns, .flushed = flushed };
  const struct manifest_file *newest = have_manifest ? manifest_state_newest(&state, &promise.nfiles) : NULL;
  if (newest) {
    promise.sst_max = newest->max_seq;
    promise.sst_file = newest->number;
  }
  manifest_state_free(&state);
  free(found);

  struct oldest_segment oldest = { 0 };
  struct bad_records seqs = { .flushed = flushed, .after = flushed };
  if (!c.fatal)
    check_wal(&c, lsns, nlsns, &oldest, &seqs);
  if (!c.fatal && (mrc == SOCHDB_OK || mrc == SOCHDB_NOTFOUND))
    check_log_reaches_back(&c, &oldest, flushed);
  if (!c.fatal && have_manifest) {
    promise.log_newest = seqs.newest;
    check_log_reaches_forward(&c, &promise, nlsns ? lsns[nlsns - 1] : 0);
  }
  free(lsns);
  if (c.fatal)
    return c.fatal;
  progress(&c, c.total);
  return SOCHDB_OK;
}
