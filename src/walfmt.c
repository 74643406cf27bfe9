/*
** walfmt.c — encoding and scanning the WAL format (see walfmt.h for the
** layout and for how a torn tail is told apart from corruption).
*/
#include "walfmt.h"

#include "bytes.h"
#include "error.h"
#include "sochdb.h"
#include "bulkhash.h"
#include "fsutil.h"
#include "mvcc.h"
#include "testhooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG_MAGIC          "SOCHWAL"
#define GROUP_MAGIC        0x50524757u   /* "WGRP" */
#define SEED_SEG_HEADER    0x5345470a11ull
#define SEED_GROUP_HEADER  0x475250a22ull
#define SEED_GROUP_PAYLOAD 0x504159a33ull
#define SEED_RECORD        0x524543a44ull



/* ---- writing ------------------------------------------------------------ */

void wal_seg_header_init(struct wal_seg_header *h, uint64_t first_lsn, const uint8_t db_id[16],
                         uint64_t created_unix_ns)
{
  memset(h, 0, sizeof *h);
  memcpy(h->magic, SEG_MAGIC, sizeof SEG_MAGIC);
  h->version = WAL_VERSION;
  h->header_bytes = WAL_SEG_HEADER;
  h->first_lsn = first_lsn;
  memcpy(h->db_id, db_id, sizeof h->db_id);
  h->created_unix_ns = created_unix_ns;
  wal_seg_header_seal(h);
}

void wal_seg_header_seal(struct wal_seg_header *h)
{
  h->checksum = XXH3_64bits_withSeed(h, offsetof(struct wal_seg_header, checksum), SEED_SEG_HEADER);
}

uint64_t wal_seg_salt(const struct wal_seg_header *h)
{
  return h->version == WAL_VERSION_1 ? 0 : h->checksum;
}

size_t wal_record_bytes(unsigned nops, uint64_t key_and_value_bytes)
{
  uint64_t n = pad8(WAL_RECORD_HEADER + (uint64_t)nops * WAL_OP_HEADER + key_and_value_bytes);
  return nops > UINT16_MAX || n > UINT32_MAX ? 0 : (size_t)n;
}

void wal_record_begin(uint8_t *buf, size_t bytes, unsigned type, uint64_t seq, unsigned nops)
{
  memset(buf, 0, WAL_RECORD_HEADER);
  memset(buf + bytes - 8, 0, 8);          /* the padding, whatever ends up before it */
  st32(buf, (uint32_t)bytes);
  st16(buf + 4, (uint16_t)type);
  st16(buf + 6, (uint16_t)nops);
  st64(buf + 8, seq);
}

size_t wal_record_add_op(uint8_t *buf, size_t pos, unsigned kind, const void *key, uint32_t klen,
                         const void *val, uint32_t vlen)
{
  uint8_t *p = buf + WAL_RECORD_HEADER + pos;
  memset(p, 0, 4);
  p[0] = (uint8_t)kind;
  st32(p + 4, klen);
  st32(p + 8, vlen);
  memcpy(p + WAL_OP_HEADER, key, klen);
  if (vlen)
    memcpy(p + WAL_OP_HEADER + klen, val, vlen);
  return pos + WAL_OP_HEADER + klen + vlen;
}

static uint64_t record_checksum(const uint8_t *rec, uint32_t bytes)
{
  uint64_t seed = XXH3_64bits_withSeed(rec, 16, SEED_RECORD);   /* bytes, type, nops, seq */
  return XXH3_64bits_withSeed(rec + WAL_RECORD_HEADER, bytes - WAL_RECORD_HEADER, seed);
}

void wal_record_finish(uint8_t *buf)
{
  st64(buf + 16, record_checksum(buf, ld32(buf)));
}

static uint64_t group_header_checksum(const struct wal_group_header *g, uint64_t salt)
{
  return XXH3_64bits_withSeed(g, offsetof(struct wal_group_header, header_checksum), SEED_GROUP_HEADER ^ salt);
}

static uint64_t group_payload_checksum(const uint8_t *payload, uint32_t bytes, uint64_t first_lsn, uint64_t salt)
{
  return XXH3_64bits_withSeed(payload, bytes, SEED_GROUP_PAYLOAD ^ first_lsn ^ salt);
}

void wal_group_header_init(struct wal_group_header *g, uint64_t salt, uint64_t first_lsn, const uint8_t *payload,
                           uint32_t payload_bytes)
{
  g->magic = GROUP_MAGIC;
  g->payload_bytes = payload_bytes;
  g->first_lsn = first_lsn;
  g->payload_checksum = group_payload_checksum(payload, payload_bytes, first_lsn, salt);
  g->header_checksum = group_header_checksum(g, salt);
}

/* Whether g is a group header of the segment salted so (its own checksum). */
static int group_header_ok(const struct wal_group_header *g, uint64_t salt)
{
  return g->magic == GROUP_MAGIC && g->header_checksum == group_header_checksum(g, salt) && g->payload_bytes % 8 == 0;
}

/* ---- reading ------------------------------------------------------------ */

void wal_gap_message(char *out, size_t n, const char *path, uint64_t prev_seq, uint64_t flushed)
{
  snprintf(out, n,
           "the oldest WAL segment, %s, follows commit %llu, but the SSTables hold commits only through %llu: "
           "a segment with commits after %llu is gone, or the MANIFEST lost its last edit",
           path, (unsigned long long)prev_seq, (unsigned long long)flushed, (unsigned long long)flushed);
}

int wal_commit_follows(const struct wal_record *rec, uint64_t after)
{
  if (rec->seq > MV_MAX_SEQ)   /* a version could not hold it (mvcc.h) */
    return sdb_fail(SOCHDB_CORRUPT, "WAL commit at LSN %llu has the impossible sequence %llu",
                    (unsigned long long)rec->lsn, (unsigned long long)rec->seq);
  if (rec->seq <= after)
    return sdb_fail(SOCHDB_CORRUPT, "WAL commit %llu at LSN %llu is not after commit %llu",
                    (unsigned long long)rec->seq, (unsigned long long)rec->lsn, (unsigned long long)after);
  return SOCHDB_OK;
}

int wal_check_reaches(const struct wal_promise *p)
{
  if (!p->nsegments && (p->flushed || p->nfiles))
    return sdb_fail(SOCHDB_CORRUPT, "the WAL has no segment, but the MANIFEST records a flush (%zu live SSTable%s, "
                    "commits through %llu flushed): the log is gone, and with it every commit after the last "
                    "flush", p->nfiles, p->nfiles == 1 ? "" : "s", (unsigned long long)p->flushed);
  uint64_t reaches = p->log_newest > p->flushed ? p->log_newest : p->flushed;
  if (p->sst_max > reaches)
    return sdb_fail(SOCHDB_CORRUPT, "the WAL ends at commit %llu, but SSTable %06llu holds commit %llu, which "
                    "the log held durably before the table was written: a durable group of the log is damaged "
                    "or gone", (unsigned long long)reaches, (unsigned long long)p->sst_file,
                    (unsigned long long)p->sst_max);
  return SOCHDB_OK;
}

int wal_op_next(const struct wal_record *rec, size_t *pos, struct wal_op *op)
{
  if (*pos + WAL_OP_HEADER > rec->ops_bytes)
    return 0;
  const uint8_t *p = rec->ops + *pos;
  op->kind = p[0];
  op->klen = ld32(p + 4);
  op->vlen = ld32(p + 8);
  op->key = p + WAL_OP_HEADER;
  op->val = op->key + op->klen;
  *pos += WAL_OP_HEADER + op->klen + op->vlen;
  return 1;
}

/* Every op well-formed and the ops exactly filling the record (bar padding). */
static int ops_valid(const uint8_t *ops, size_t room, unsigned nops, size_t *used)
{
  size_t pos = 0;
  for (unsigned i = 0; i < nops; i++) {
    if (room - pos < WAL_OP_HEADER)
      return 0;
    const uint8_t *p = ops + pos;
    uint32_t klen = ld32(p + 4), vlen = ld32(p + 8);
    int kind_ok = (p[0] == WAL_PUT && vlen <= SOCHDB_MAX_VALUE) || (p[0] == WAL_DEL && vlen == 0);
    if (!kind_ok || p[1] || p[2] || p[3] || klen == 0 || klen > SOCHDB_MAX_KEY ||
        (uint64_t)klen + vlen > room - pos - WAL_OP_HEADER)
      return 0;
    pos += WAL_OP_HEADER + klen + vlen;
  }
  *used = pos;
  return 1;
}

/* Parse record at rec (room bytes left in its group). 0 if it is not valid. */
static int parse_record(const uint8_t *p, size_t room, uint64_t lsn, struct wal_record *out)
{
  if (room < WAL_RECORD_HEADER)
    return 0;
  uint32_t bytes = ld32(p);
  /* Not its own checksum: the group's, verified before, covers every byte of
  ** it, and a replay of a full memtable made 380k short hash calls for
  ** nothing. sochdb check verifies both (wal_record_checksum_ok). */
  if (bytes < WAL_RECORD_HEADER || bytes % 8 || bytes > room)
    return 0;
  out->lsn = lsn;   /* group_offset is the caller's */
  out->type = ld16(p + 4);
  out->nops = ld16(p + 6);
  out->seq = ld64(p + 8);
  out->ops = p + WAL_RECORD_HEADER;
  size_t used;
  if ((out->type != WAL_COMMIT && out->type != WAL_PADDING) ||
      !ops_valid(out->ops, bytes - WAL_RECORD_HEADER, out->nops, &used) ||
      pad8(WAL_RECORD_HEADER + used) != bytes)
    return 0;
  out->ops_bytes = used;
  return 1;
}

int wal_record_checksum_ok(const struct wal_record *rec)
{
  const uint8_t *p = rec->ops - WAL_RECORD_HEADER;
  return ld64(p + 16) == record_checksum(p, ld32(p));
}

/* Whether a group header of this segment (salt) lies at off, its payload
** within the segment: into *g. */
static int group_header_at(const uint8_t *buf, size_t len, size_t off, uint64_t salt, struct wal_group_header *g)
{
  if (len - off < WAL_GROUP_HEADER)
    return 0;
  memcpy(g, buf + off, sizeof *g);
  return group_header_ok(g, salt) && g->payload_bytes <= len - off - WAL_GROUP_HEADER;
}

/* Whether the payload of the group whose header at off is g matches its checksum. */
static int group_payload_ok(const uint8_t *buf, size_t off, const struct wal_group_header *g, uint64_t salt)
{
  return g->payload_checksum ==
         group_payload_checksum(buf + off + WAL_GROUP_HEADER, g->payload_bytes, g->first_lsn, salt);
}

/* An intact group at off (header and payload checksums; the payload's is
** not computed again when `trusted` says a helper verified it): its payload
** size, or -1. */
static long long intact_group(const uint8_t *buf, size_t len, size_t off, uint64_t salt,
                              struct wal_group_header *g, const struct wal_ahead *trusted, uint32_t seg)
{
  if (!group_header_at(buf, len, off, salt, g))
    return -1;
  uint64_t end = off + WAL_GROUP_HEADER + g->payload_bytes;
  /* The claim is about bytes nobody writes during the scan (the caller
  ** holds the log). acquire, with the helper's release: the helper's skips
  ** to where the scan was then happen before its claims, so no claim can
  ** rest on a position the scan reaches only by trusting it (a cycle the
  ** C11 model would allow relaxed loads to form, however unlikely). */
  if (trusted) {
    uint64_t verified = atomic_load_explicit(&trusted->verified[seg % WAL_AHEAD_SLOTS], memory_order_acquire);
    if (verified >> WAL_AHEAD_OFFSET_BITS == seg && wal_ahead_pos(seg, end) <= verified)
      return g->payload_bytes;
  }
  return group_payload_ok(buf, off, g, salt) ? (long long)g->payload_bytes : -1;
}

/* Whether the scan is WAL_AHEAD_SLOTS or more segments behind seg, where the
** helper would take the slot of a segment it has not finished. */
static int too_far_ahead(struct wal_ahead *a, uint32_t seg)
{
  /* relaxed: a stale position only makes the helper wait a little longer */
  uint64_t scanned = atomic_load_explicit(&a->scanned, memory_order_relaxed);
  return (scanned >> WAL_AHEAD_OFFSET_BITS) + WAL_AHEAD_SLOTS <= seg;
}

void wal_verify_ahead(struct wal_ahead *a, uint32_t seg, const uint8_t *buf, size_t len)
{
  if (len > WAL_AHEAD_OFFSET_MASK)
    return;   /* a position cannot name its offsets (a forged, sparse file): the scan verifies it alone */
  /* relaxed: a request to stop, honoured soon enough */
  while (too_far_ahead(a, seg) && !atomic_load_explicit(&a->stop, memory_order_relaxed)) {
    struct timespec pause = { 0, 200000 };   /* the scan is building a memtable: wait for it to come on */
    nanosleep(&pause, NULL);
  }
  struct wal_seg_header h;
  if (len < WAL_SEG_HEADER)
    return;
  memcpy(&h, buf, sizeof h);   /* the scan checks the header; a damaged one only gives a salt no group has */
  uint64_t salt = wal_seg_salt(&h);
  struct wal_group_header g;
  size_t off = WAL_SEG_HEADER;
  while (off < len && !atomic_load_explicit(&a->stop, memory_order_relaxed)) {
    /* acquire: pairs with the scan's release store. The skip below must
    ** never land ahead of the scan, which a position from its future could
    ** make it do; the scan's acquire of `verified` closes the cycle. */
    uint64_t scanned = atomic_load_explicit(&a->scanned, memory_order_acquire);
    if (scanned >= wal_ahead_pos(seg + 1, 0))
      return;                               /* the scan is past this segment */
    if (scanned > wal_ahead_pos(seg, off))
      off = scanned & WAL_AHEAD_OFFSET_MASK;   /* ...or past us: go on from where it is, a group's start */
    long long payload = intact_group(buf, len, off, salt, &g, NULL, seg);
    if (payload < 0)
      return;                               /* the end, or damage, which the scan judges */
    off += WAL_GROUP_HEADER + (size_t)payload;
    /* release: pairs with the scan's acquire in intact_group (see above) */
    atomic_store_explicit(&a->verified[seg % WAL_AHEAD_SLOTS], wal_ahead_pos(seg, off), memory_order_release);
  }
}

static int scan_group(const uint8_t *payload, uint32_t bytes, uint64_t lsn, size_t file_off, wal_record_fn fn,
                      void *ctx, struct wal_scan_result *out)
{
  for (uint32_t pos = 0; pos < bytes;) {
    struct wal_record rec;
    rec.group_offset = file_off;
    if (!parse_record(payload + pos, bytes - pos, lsn + pos, &rec))
      return sdb_fail(SOCHDB_CORRUPT, "WAL record at file offset %zu (LSN %llu) is malformed inside an intact group",
                      file_off + WAL_GROUP_HEADER + pos, (unsigned long long)(lsn + pos));
    int rc = fn ? fn(ctx, &rec) : 0;
    if (rc)
      return rc;
    out->records++;
    pos += ld32(payload + pos);
  }
  return SOCHDB_OK;
}

static int check_seg_header(const uint8_t *buf, size_t len, const uint8_t *db_id, struct wal_seg_header *h)
{
  if (len < WAL_SEG_HEADER)
    return sdb_fail(SOCHDB_CORRUPT, "WAL segment is %zu bytes, shorter than its header", len);
  memcpy(h, buf, sizeof *h);
  if (memcmp(h->magic, SEG_MAGIC, sizeof SEG_MAGIC) != 0)
    return sdb_fail(SOCHDB_CORRUPT, "not a sochdb WAL segment (bad magic)");
  if (h->checksum != XXH3_64bits_withSeed(h, offsetof(struct wal_seg_header, checksum), SEED_SEG_HEADER))
    return sdb_fail(SOCHDB_CORRUPT, "WAL segment header checksum mismatch");
  if ((h->version != WAL_VERSION && h->version != WAL_VERSION_1) || h->header_bytes != WAL_SEG_HEADER)
    return sdb_fail(SOCHDB_VERSION, "WAL segment version %u; this library reads %u and %u", h->version,
                    WAL_VERSION_1, WAL_VERSION);
  /* No log reaches 2^62 bytes; below it, a segment's LSNs cannot wrap, and
  ** neither can the writer's, which go on from the last segment's. */
  if (h->first_lsn > WAL_MAX_FIRST_LSN)
    return sdb_fail(SOCHDB_CORRUPT, "WAL segment starts at LSN %llu, past any log's length",
                    (unsigned long long)h->first_lsn);
  if (db_id && memcmp(h->db_id, db_id, sizeof h->db_id) != 0)
    return sdb_fail(SOCHDB_CORRUPT, "WAL segment belongs to another database");
  return SOCHDB_OK;
}

int wal_scan_buffer(const uint8_t *buf, size_t len, const uint8_t *db_id, wal_record_fn fn, void *ctx,
                    struct wal_scan_result *out)
{
  return wal_scan_buffer_ahead(buf, len, -1, db_id, fn, ctx, out, NULL, 0);
}

/* Whether bytes [off, len) of the segment are all zeros. With its file
** (fd >= 0) they are read into a small buffer: the runway of zeros after a
** segment's last group is up to 1 MiB, and under a hypervisor that shadows
** page tables the first touch of each page of a mapping costs about 2 us,
** a copy far less (a replay checks every segment's tail). A failed read
** leaves the question to the mapping. */
static int zeros_from(const uint8_t *buf, size_t len, size_t off, int fd)
{
  uint8_t chunk[16 << 10];   /* on the stack of whoever scans: an opener's thread may have a small one */
  struct stat st;
  size_t file_end = fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size < len ? (size_t)st.st_size : len;
  while (fd >= 0 && off < file_end) {
    /* holes read as zeros: skip them (a sparse segment of any size costs
    ** nothing); a filesystem without SEEK_DATA gives off itself */
    off_t data = lseek(fd, (off_t)off, SEEK_DATA);
    if (data < 0 && errno == ENXIO)
      data = (off_t)file_end;   /* nothing but a hole from off to the file's end */
    if (data > (off_t)off)
      off = (size_t)data < file_end ? (size_t)data : file_end;
    if (off >= file_end)
      break;
    size_t want = file_end - off < sizeof chunk ? file_end - off : sizeof chunk;
    ssize_t got = pread(fd, chunk, want, (off_t)off);
    if (got <= 0)
      break;
    if (!all_zero(chunk, (size_t)got))
      return 0;
    off += (size_t)got;
  }
  return off == len || all_zero(buf + off, len - off);
}

/* The payload bytes a group header of this segment (salt) with LSN
** next_lsn at off declares, or -1 if there is no such header: where the
** groups break off, the header of the group a crash interrupted (written
** whole, before its payload). */
static long long torn_group(const uint8_t *buf, size_t len, size_t off, uint64_t salt, uint64_t next_lsn)
{
  struct wal_group_header g;
  if (len - off < WAL_GROUP_HEADER)
    return -1;
  memcpy(&g, buf + off, sizeof g);
  return group_header_ok(&g, salt) && g.first_lsn == next_lsn ? (long long)g.payload_bytes : -1;
}

/* Whether an intact group of this segment (salt) with an LSN after next_lsn
** lies in [off, len), where the groups broke off at off: proof that what
** broke them off was durable once (the writer writes a group only after the
** one before it was synced, one after another from the header on), so
** damage, not an interrupted write. Only such a group proves it: the bytes
** after a torn group are zeros, or in a reused file an earlier use's, whose
** groups are salted otherwise; a group stored as a value inside the torn
** group is not ahead of it. Nor is one inside the torn group's payload,
** where its header is intact (torn_group; in a version-1 segment a value's
** group has the same salt): the search begins after the payload that
** header declares. 1 with *at, or 0.
**
** Each header that checks out has its payload hashed, and a forged file
** could hold one every 8 bytes, each declaring the rest of the file: a
** search quadratic in the segment's size. An interrupted write leaves one
** such header (the torn group's, skipped above), and the groups a writer
** wrote after the break never overlap, so their payloads come to less than
** the bytes after off: hashing twice that is more than a real file needs.
** Past that budget the search stops: -1 with *at, damage all the same (a
** torn tail would be cut off, and no acknowledged commit may be). */
static int later_group(const uint8_t *buf, size_t len, size_t off, uint64_t salt, uint64_t next_lsn, size_t *at)
{
  long long torn = torn_group(buf, len, off, salt, next_lsn);
  size_t from = torn < 0 ? off + 8
              : (uint64_t)torn > len - off - WAL_GROUP_HEADER ? len : off + WAL_GROUP_HEADER + (size_t)torn;
  uint64_t budget = 2 * (uint64_t)(len - off);
  struct wal_group_header g;
  for (size_t later = from; later + WAL_GROUP_HEADER <= len; later += 8) {
    if (ld32(buf + later) != GROUP_MAGIC || !group_header_at(buf, len, later, salt, &g) || g.first_lsn <= next_lsn)
      continue;   /* no later group of this segment: nothing to hash */
    *at = later;
    if (g.payload_bytes > budget)
      return -1;
    budget -= g.payload_bytes;
    CALLPOINT("wal.later_group_hash");   /* tests/test_walfmt.c counts the payloads hashed */
    if (group_payload_ok(buf, later, &g, salt))
      return 1;
  }
  return 0;
}

/* The groups of a segment whose header checked out (its salt given), from
** file offset off (a group's start, LSN next_lsn) to the end: records to
** fn, the end and any torn tail into out. */
static int scan_groups(const uint8_t *buf, size_t len, uint64_t salt, size_t off, uint64_t next_lsn, wal_record_fn fn,
                       void *ctx, struct wal_scan_result *out, struct wal_ahead *ahead, uint32_t seg, int fd)
{
  out->next_lsn = next_lsn;
  struct wal_group_header g;
  long long payload;
  while ((payload = intact_group(buf, len, off, salt, &g, ahead, seg)) >= 0 && g.first_lsn == out->next_lsn) {
    /* LSNs never wrap (2^64 bytes of log); one that would is a forged or
    ** damaged header, and a resume point past it could not be checked. */
    if ((uint64_t)payload > UINT64_MAX - out->next_lsn)
      return sdb_fail(SOCHDB_CORRUPT, "WAL group at file offset %zu (LSN %llu) runs past the largest LSN", off,
                      (unsigned long long)g.first_lsn);
    int rc = scan_group(buf + off + WAL_GROUP_HEADER, g.payload_bytes, g.first_lsn, off, fn, ctx, out);
    if (rc != SOCHDB_OK)
      return rc;
    out->groups++;
    out->last_group = off;
    out->next_lsn += (uint64_t)payload;
    off += WAL_GROUP_HEADER + (size_t)payload;
    if (ahead)   /* release: pairs with the helper's acquire (wal_verify_ahead) */
      atomic_store_explicit(&ahead->scanned, wal_ahead_pos(seg, off), memory_order_release);
  }
  out->end_offset = off;
  /* an intact group of this segment where the next was expected, with
  ** another LSN: a reused file's groups are salted otherwise, so this one
  ** was written into this segment, out of order */
  if (payload >= 0)
    return sdb_fail(SOCHDB_CORRUPT, "WAL group at file offset %zu has LSN %llu where %llu was expected", off,
                    (unsigned long long)g.first_lsn, (unsigned long long)out->next_lsn);
  if (zeros_from(buf, len, off, fd))
    return SOCHDB_OK;                       /* clean end (or preallocated zeros) */
  size_t later;
  int found = later_group(buf, len, off, salt, out->next_lsn, &later);
  if (found > 0)
    return sdb_fail(SOCHDB_CORRUPT,
                    "WAL damaged at file offset %zu (LSN %llu) before an intact group at offset %zu: "
                    "data that was durable is damaged",
                    off, (unsigned long long)out->next_lsn, later);
  if (found < 0)
    return sdb_fail(SOCHDB_CORRUPT,
                    "WAL damaged at file offset %zu (LSN %llu): group headers of this segment follow it, up to "
                    "offset %zu and beyond, more than an interrupted write leaves (a damaged or forged file)",
                    off, (unsigned long long)out->next_lsn, later);
  out->torn_bytes = len - off;              /* an interrupted last write, or a reused file's old bytes */
  out->torn_write = out->version == WAL_VERSION_1 || torn_group(buf, len, off, salt, out->next_lsn) >= 0;
  return SOCHDB_OK;
}

/* Every scan's start: out cleared, the segment header checked into *h. */
static int begin_scan(const uint8_t *buf, size_t len, const uint8_t *db_id, struct wal_seg_header *h,
                      struct wal_scan_result *out)
{
  memset(out, 0, sizeof *out);
  int rc = check_seg_header(buf, len, db_id, h);
  out->first_lsn = rc == SOCHDB_OK ? h->first_lsn : 0;
  out->prev_seq = rc == SOCHDB_OK ? h->prev_seq : 0;
  out->version = rc == SOCHDB_OK ? h->version : 0;
  out->salt = rc == SOCHDB_OK ? wal_seg_salt(h) : 0;
  return rc;
}

int wal_scan_buffer_ahead(const uint8_t *buf, size_t len, int fd, const uint8_t *db_id, wal_record_fn fn, void *ctx,
                          struct wal_scan_result *out, struct wal_ahead *ahead, uint32_t seg)
{
  struct wal_seg_header h;
  int rc = begin_scan(buf, len, db_id, &h, out);
  if (len > WAL_AHEAD_OFFSET_MASK)
    ahead = NULL;   /* as wal_verify_ahead: its positions could not name ours */
  return rc != SOCHDB_OK ? rc
                         : scan_groups(buf, len, wal_seg_salt(&h), WAL_SEG_HEADER, h.first_lsn, fn, ctx, out, ahead,
                                       seg, fd);
}

/* Whether `from` names a group of buf (header intact: its payload is not
** read) that ends where it says, after the segment's first LSN; if not,
** the error that says how it does not. */
static int check_resume_point(const uint8_t *buf, size_t len, const struct wal_seg_header *h,
                              const struct wal_resume *from)
{
  if (from->end_offset > len)
    return sdb_fail(SOCHDB_CORRUPT, "WAL segment is %zu bytes, but groups up to offset %llu were made durable in it",
                    len, (unsigned long long)from->end_offset);
  if (from->last_group < WAL_SEG_HEADER || from->last_group % 8 || from->end_offset < WAL_GROUP_HEADER ||
      from->last_group > from->end_offset - WAL_GROUP_HEADER)   /* so written: no sum that could wrap */
    return sdb_fail(SOCHDB_CORRUPT, "a durable WAL group noted at offset %llu to %llu cannot be one",
                    (unsigned long long)from->last_group, (unsigned long long)from->end_offset);
  struct wal_group_header g;
  memcpy(&g, buf + from->last_group, sizeof g);
  if (!group_header_ok(&g, wal_seg_salt(h)) || from->last_group + WAL_GROUP_HEADER + g.payload_bytes != from->end_offset ||
      g.first_lsn < h->first_lsn || g.payload_bytes > UINT64_MAX - g.first_lsn ||
      g.first_lsn + g.payload_bytes != from->next_lsn)
    return sdb_fail(SOCHDB_CORRUPT, "WAL group at file offset %llu, made durable up to offset %llu (LSN %llu), is "
                    "damaged or not there: data that was durable is damaged",
                    (unsigned long long)from->last_group, (unsigned long long)from->end_offset,
                    (unsigned long long)from->next_lsn);
  return SOCHDB_OK;
}

int wal_scan_buffer_from(const uint8_t *buf, size_t len, int fd, const uint8_t *db_id, const struct wal_resume *from,
                         wal_record_fn fn, void *ctx, struct wal_scan_result *out)
{
  struct wal_seg_header h;
  int rc = begin_scan(buf, len, db_id, &h, out);
  if (rc != SOCHDB_OK)
    return rc;
  uint64_t salt = wal_seg_salt(&h);
  if (!from)
    return scan_groups(buf, len, salt, WAL_SEG_HEADER, h.first_lsn, fn, ctx, out, NULL, 0, fd);
  rc = check_resume_point(buf, len, &h, from);
  if (rc != SOCHDB_OK)
    return rc;
  out->resumed = 1;
  out->last_group = from->last_group;
  return scan_groups(buf, len, salt, from->end_offset, from->next_lsn, fn, ctx, out, NULL, 0, fd);
}

int wal_map_segment(const char *path, const uint8_t **buf, size_t *len, int *fd)
{
  static const uint8_t empty[1];
  int e = sdb_map_file(path, buf, len, fd);
  if (!*buf)
    *buf = empty;   /* wal_scan_buffer wants a buffer, even of 0 bytes */
  if (e) {
    errno = e;
    return sdb_fail_errno("map WAL segment %s", path);
  }
  return SOCHDB_OK;
}

void wal_unmap_segment(const uint8_t *buf, size_t len)
{
  sdb_unmap_file(buf, len);
}

int wal_scan_file_from(const char *path, const uint8_t *db_id, const struct wal_resume *from, wal_record_fn fn,
                       void *ctx, struct wal_scan_result *out)
{
  const uint8_t *buf;
  size_t len;
  int fd;
  int rc = wal_map_segment(path, &buf, &len, &fd);
  if (rc == SOCHDB_OK)
    rc = wal_scan_buffer_from(buf, len, fd, db_id, from, fn, ctx, out);
  if (fd >= 0)
    close(fd);
  wal_unmap_segment(buf, len);
  return rc;
}

int wal_scan_file(const char *path, const uint8_t *db_id, wal_record_fn fn, void *ctx,
                  struct wal_scan_result *out)
{
  return wal_scan_file_from(path, db_id, NULL, fn, ctx, out);
}

/* ---- files -------------------------------------------------------------- */

void wal_segment_path(char *out, size_t n, const char *dir, uint64_t first_lsn)
{
  snprintf(out, n, "%s/" WAL_DIR "/%016llx.wal", dir, (unsigned long long)first_lsn);
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int wal_segment_name(const char *name, const char *suffix, uint64_t *lsn)
{
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = name[i];
    if (c >= '0' && c <= '9')
      v = v << 4 | (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = v << 4 | (uint64_t)(c - 'a' + 10);
    else
      return 0;
  }
  *lsn = v;
  return strcmp(name + 16, suffix) == 0;
}

void wal_free_path(char *out, size_t n, const char *dir, uint64_t lsn)
{
  snprintf(out, n, "%s/" WAL_DIR "/%016llx" WAL_FREE_SUFFIX, dir, (unsigned long long)lsn);
}

/* The LSNs DIR/wal's files named <16 hex digits><suffix> carry, ascending. */
static int list_named(const char *dir, const char *suffix, uint64_t **lsns, size_t *n)
{
  *lsns = NULL;
  *n = 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/" WAL_DIR, dir);
  DIR *d = opendir(path);
  if (!d)
    return errno == ENOENT ? SOCHDB_OK : sdb_fail_errno("opendir %s", path);
  size_t cap = 0;
  int rc = SOCHDB_OK;
  for (struct dirent *e; (e = readdir(d));) {
    uint64_t lsn;
    if (!wal_segment_name(e->d_name, suffix, &lsn))
      continue;   /* not one (temporary files, editors' leftovers) */
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      uint64_t *grown = realloc(*lsns, cap * sizeof *grown);
      if (!grown) {
        rc = sdb_fail(SOCHDB_NOMEM, "listing WAL files");
        break;
      }
      *lsns = grown;
    }
    (*lsns)[(*n)++] = lsn;
  }
  closedir(d);
  if (rc == SOCHDB_OK && *n)
    qsort(*lsns, *n, sizeof **lsns, cmp_u64);
  return rc;
}

int wal_list_segments(const char *dir, uint64_t **lsns, size_t *n)
{
  return list_named(dir, ".wal", lsns, n);
}

int wal_list_free(const char *dir, uint64_t **lsns, size_t *n)
{
  return list_named(dir, WAL_FREE_SUFFIX, lsns, n);
}

int wal_list_tmp(const char *dir, uint64_t **lsns, size_t *n)
{
  return list_named(dir, ".wal.tmp", lsns, n);
}
