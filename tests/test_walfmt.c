/*
** test_walfmt.c — the WAL format: records and groups round-trip exactly; a
** segment cut at any byte or damaged anywhere in its last group is read up to
** the last whole group (a torn tail, never an error); damage followed by an
** intact group, a damaged header, another version or another database's
** segment is reported, never skipped; a scan beside a helper verifying
** ahead of it reads the same, and trusts only what the helper verified; a
** scan resumed after a group made durable reads only what follows, and a
** resume point the segment does not bear out is corruption.
*/
#include <criterion/criterion.h>

#include "sochdb.h"
#include "testhooks.h"
#include "walfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t DB_ID[16] = "0123456789abcdef";

struct buf {
  uint8_t *p;
  size_t   n, cap;
};

static void grow(struct buf *b, size_t more)
{
  if (b->n + more <= b->cap)
    return;
  b->cap = (b->n + more) * 2;
  b->p = realloc(b->p, b->cap);
  cr_assert_not_null(b->p);
}

static void append(struct buf *b, const void *p, size_t n)
{
  grow(b, n);
  memcpy(b->p + b->n, p, n);
  b->n += n;
}

/* A commit record with nops ops: key "k<seq>.<i>", value of length i*3 (0 for
** every third op, which is a delete). */
static size_t make_record(uint8_t *out, uint64_t seq, unsigned nops)
{
  char keys[64][32];
  uint8_t val[256];
  memset(val, (int)(seq & 0xff), sizeof val);
  uint64_t payload = 0;
  for (unsigned i = 0; i < nops; i++) {
    snprintf(keys[i], sizeof keys[i], "k%llu.%u", (unsigned long long)seq, i);
    payload += strlen(keys[i]) + (i % 3 == 2 ? 0 : i * 3);
  }
  size_t bytes = wal_record_bytes(nops, payload);
  cr_assert_gt(bytes, 0);
  wal_record_begin(out, bytes, WAL_COMMIT, seq, nops);
  size_t pos = 0;
  for (unsigned i = 0; i < nops; i++) {
    int del = i % 3 == 2;
    pos = wal_record_add_op(out, pos, del ? WAL_DEL : WAL_PUT, keys[i], (uint32_t)strlen(keys[i]), val,
                            del ? 0 : i * 3);
  }
  wal_record_finish(out);
  return bytes;
}

/* Append a group of records seq .. seq+n-1 (each with seq%5+1 ops). */
static void append_group(struct buf *b, uint64_t salt, uint64_t *lsn, uint64_t seq, unsigned n)
{
  struct buf payload = { 0 };
  uint8_t rec[8192];
  for (unsigned i = 0; i < n; i++)
    append(&payload, rec, make_record(rec, seq + i, (unsigned)((seq + i) % 5 + 1)));
  struct wal_group_header g;
  wal_group_header_init(&g, salt, *lsn, payload.p, (uint32_t)payload.n);
  append(b, &g, sizeof g);
  append(b, payload.p, payload.n);
  *lsn += payload.n;
  free(payload.p);
}

struct seg {
  struct buf b;
  size_t group_end[8];     /* file offset after each group */
  uint64_t seq_end[8];     /* records before that offset: seqs < seq_end */
  unsigned groups;
};

/* A segment at LSN 1000 made at `created` (its salt follows from it),
** its records from seq on. */
static void make_segment_made_at(struct seg *s, unsigned groups, uint64_t created, uint64_t seq)
{
  memset(s, 0, sizeof *s);
  struct wal_seg_header h;
  wal_seg_header_init(&h, 1000, DB_ID, created);
  append(&s->b, &h, sizeof h);
  uint64_t lsn = 1000;
  for (unsigned g = 0; g < groups; g++) {
    append_group(&s->b, wal_seg_salt(&h), &lsn, seq, 3 + g);
    seq += 3 + g;
    s->group_end[g] = s->b.n;
    s->seq_end[g] = seq;
  }
  s->groups = groups;
}

static void make_segment(struct seg *s, unsigned groups)
{
  make_segment_made_at(s, groups, 42, 10);
}

struct seen {
  uint64_t next_seq;
  uint64_t next_lsn;
  unsigned records;
  int      bad;
};

/* Check each record is the next one make_record wrote, op by op. */
static int check_record(void *ctx, const struct wal_record *rec)
{
  struct seen *s = ctx;
  uint8_t expect[8192];
  size_t bytes = make_record(expect, s->next_seq, (unsigned)(s->next_seq % 5 + 1));
  if (rec->seq != s->next_seq || rec->type != WAL_COMMIT || rec->lsn != s->next_lsn ||
      rec->nops != s->next_seq % 5 + 1 || memcmp(rec->ops, expect + WAL_RECORD_HEADER, rec->ops_bytes) != 0)
    s->bad++;
  size_t pos = 0;
  struct wal_op op;
  unsigned n = 0;
  while (wal_op_next(rec, &pos, &op)) {
    char key[32];
    snprintf(key, sizeof key, "k%llu.%u", (unsigned long long)rec->seq, n);
    int del = n % 3 == 2;
    if (op.klen != strlen(key) || memcmp(op.key, key, op.klen) || op.kind != (unsigned)(del ? WAL_DEL : WAL_PUT) ||
        op.vlen != (del ? 0 : n * 3))
      s->bad++;
    n++;
  }
  if (n != rec->nops)
    s->bad++;
  s->next_seq++;
  s->next_lsn += bytes;
  s->records++;
  return 0;
}

/* Scan p with check_record, beside a helper verifying ahead when a is not NULL. */
static int scan_ahead(const uint8_t *p, size_t n, struct wal_ahead *a, uint32_t seg, struct wal_scan_result *r,
                      struct seen *seen)
{
  memset(seen, 0, sizeof *seen);
  seen->next_seq = 10;
  seen->next_lsn = 1000;
  return wal_scan_buffer_ahead(p, n, -1, DB_ID, check_record, seen, r, a, seg);
}

static int scan(const uint8_t *p, size_t n, struct wal_scan_result *r, struct seen *seen)
{
  return scan_ahead(p, n, NULL, 0, r, seen);   /* what wal_scan_buffer is */
}

/* How many whole groups fit in the first n bytes. */
static unsigned whole_groups(const struct seg *s, size_t n)
{
  unsigned g = 0;
  while (g < s->groups && s->group_end[g] <= n)
    g++;
  return g;
}

Test(walfmt, records_and_groups_round_trip)
{
  struct seg s;
  make_segment(&s, 4);
  struct wal_scan_result r;
  struct seen seen;
  cr_assert_eq(scan(s.b.p, s.b.n, &r, &seen), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(seen.bad, 0, "records differ from what was written");
  cr_assert_eq(r.groups, 4);
  cr_assert_eq(r.records, s.seq_end[3] - 10);
  cr_assert_eq(seen.records, r.records);
  cr_assert_eq(r.first_lsn, 1000);
  cr_assert_eq(r.next_lsn, seen.next_lsn, "next LSN %llu, records end at %llu", (unsigned long long)r.next_lsn,
               (unsigned long long)seen.next_lsn);
  cr_assert_eq(r.end_offset, s.b.n);
  cr_assert_eq(r.torn_bytes, 0);
  free(s.b.p);
}

Test(walfmt, cut_at_every_byte_is_a_torn_tail_never_an_error)
{
  struct seg s;
  make_segment(&s, 3);
  for (size_t n = WAL_SEG_HEADER; n <= s.b.n; n++) {
    struct wal_scan_result r;
    struct seen seen;
    int rc = scan(s.b.p, n, &r, &seen);
    cr_assert_eq(rc, SOCHDB_OK, "cut at %zu: %s (%s)", n, sochdb_strerror(rc), sochdb_last_error());
    unsigned g = whole_groups(&s, n);
    size_t end = g ? s.group_end[g - 1] : WAL_SEG_HEADER;
    cr_assert_eq(r.groups, g, "cut at %zu: %llu groups read, %u whole", n, (unsigned long long)r.groups, g);
    cr_assert_eq(r.end_offset, end, "cut at %zu", n);
    cr_assert_eq(r.torn_bytes, n - end, "cut at %zu", n);
    cr_assert_eq(seen.next_seq, g ? s.seq_end[g - 1] : 10, "cut at %zu: wrong records", n);
    cr_assert_eq(seen.bad, 0);
  }
  free(s.b.p);
}

Test(walfmt, damage_in_the_last_group_is_a_torn_tail)
{
  struct seg s;
  make_segment(&s, 3);
  for (size_t i = s.group_end[1]; i < s.b.n; i++) {
    s.b.p[i] ^= 0x40;
    struct wal_scan_result r;
    struct seen seen;
    int rc = scan(s.b.p, s.b.n, &r, &seen);
    cr_assert_eq(rc, SOCHDB_OK, "byte %zu of the last group: %s (%s)", i, sochdb_strerror(rc), sochdb_last_error());
    cr_assert_eq(r.groups, 2, "byte %zu: the damaged last group must not be read", i);
    cr_assert_eq(r.end_offset, s.group_end[1]);
    cr_assert_eq(seen.next_seq, s.seq_end[1]);
    s.b.p[i] ^= 0x40;
  }
  free(s.b.p);
}

Test(walfmt, damage_before_an_intact_group_is_corruption)
{
  struct seg s;
  make_segment(&s, 3);
  for (size_t i = s.group_end[0]; i < s.group_end[1]; i++) {
    s.b.p[i] ^= 0x01;
    struct wal_scan_result r;
    struct seen seen;
    int rc = scan(s.b.p, s.b.n, &r, &seen);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "byte %zu of a middle group: got %s", i, sochdb_strerror(rc));
    cr_assert_not_null(strstr(sochdb_last_error(), "durable"), "message: %s", sochdb_last_error());
    s.b.p[i] ^= 0x01;
  }
  free(s.b.p);
}

static unsigned payloads_hashed;

static void count_hash(void *unused)
{
  (void)unused;
  payloads_hashed++;
  sochdb_test_call_at("wal.later_group_hash", count_hash, NULL);   /* again for the next one */
}

/* After the break, a forged run of group headers that check out, one every
** 64 bytes, each with a later LSN and declaring the rest of the file as its
** payload, which does not match its checksum. Hashing each candidate's
** payload made the search for a later group quadratic in the file's size;
** it now gives up past twice the bytes after the break, and calls it damage
** (an interrupted write leaves one such header, not thousands). */
Test(walfmt, a_run_of_forged_group_headers_after_a_break_is_damage_found_in_bounded_work)
{
  struct seg s;
  make_segment(&s, 2);
  struct wal_seg_header h;
  memcpy(&h, s.b.p, sizeof h);
  uint64_t salt = wal_seg_salt(&h);
  uint64_t next_lsn = 1000 + (s.b.n - WAL_SEG_HEADER) - 2 * WAL_GROUP_HEADER;   /* the LSN after both groups */
  size_t brk = s.b.n;
  uint8_t junk[64];
  memset(junk, 0x5a, sizeof junk);            /* no header: the groups break off here */
  append(&s.b, junk, sizeof junk);
  enum { FORGED = 4096, SLOT = 64 };
  size_t first = s.b.n, end = first + (size_t)FORGED * SLOT;
  uint8_t *other = calloc(1, end);            /* what each header's checksum is computed over */
  cr_assert_not_null(other);
  for (unsigned i = 0; i < FORGED; i++) {
    size_t at = first + (size_t)i * SLOT;
    uint32_t payload = (uint32_t)(end - at - WAL_GROUP_HEADER);
    struct wal_group_header g;
    wal_group_header_init(&g, salt, next_lsn + 8 * (i + 1), other, payload);
    append(&s.b, &g, sizeof g);
    append(&s.b, junk, SLOT - sizeof g);
  }
  cr_assert_eq(s.b.n, end);
  struct wal_scan_result r;
  struct seen seen;
  payloads_hashed = 0;
  sochdb_test_call_at("wal.later_group_hash", count_hash, NULL);
  int rc = scan(s.b.p, s.b.n, &r, &seen);
  sochdb_test_call_at(NULL, NULL, NULL);
  /* each declares nearly the 256 KiB after it: two fit in twice the bytes after the break */
  cr_assert_leq(payloads_hashed, 2, "the search hashed %u of the %d forged payloads", payloads_hashed, FORGED);
  cr_assert_geq(payloads_hashed, 1, "the call point was not reached: the count says nothing");
  cr_assert_eq(rc, SOCHDB_CORRUPT, "a forged run of headers after the break: got %s", sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), "more than an interrupted write leaves"), "message: %s",
                     sochdb_last_error());
  char at[64];
  snprintf(at, sizeof at, "offset %zu (LSN %llu)", brk, (unsigned long long)next_lsn);
  cr_assert_not_null(strstr(sochdb_last_error(), at), "the message names the break (%s): %s", at, sochdb_last_error());
  free(other);
  free(s.b.p);
}

Test(walfmt, zeros_after_the_last_group_are_a_clean_end)
{
  struct seg s;
  make_segment(&s, 2);
  size_t len = s.b.n;
  uint8_t zeros[4096] = { 0 };
  append(&s.b, zeros, sizeof zeros);
  struct wal_scan_result r;
  struct seen seen;
  cr_assert_eq(scan(s.b.p, s.b.n, &r, &seen), SOCHDB_OK);
  cr_assert_eq(r.end_offset, len);
  cr_assert_eq(r.torn_bytes, 0, "preallocated zeros are not a torn tail");
  cr_assert_eq(r.groups, 2);
  free(s.b.p);
}

Test(walfmt, bad_headers_are_reported)
{
  struct seg s;
  make_segment(&s, 1);
  struct wal_scan_result r;
  struct seen seen;
  s.b.p[0] ^= 1;
  cr_assert_eq(scan(s.b.p, s.b.n, &r, &seen), SOCHDB_CORRUPT, "bad magic");
  s.b.p[0] ^= 1;
  s.b.p[20] ^= 1;   /* inside first_lsn: checksum mismatch */
  cr_assert_eq(scan(s.b.p, s.b.n, &r, &seen), SOCHDB_CORRUPT, "bad header checksum");
  s.b.p[20] ^= 1;
  cr_assert_eq(scan(s.b.p, 40, &r, &seen), SOCHDB_CORRUPT, "shorter than a header");

  free(s.b.p);

  make_segment(&s, 1);
  uint8_t other[16] = "fedcba9876543210";
  cr_assert_eq(wal_scan_buffer(s.b.p, s.b.n, other, NULL, NULL, &r), SOCHDB_CORRUPT, "another database's segment");
  cr_assert_eq(wal_scan_buffer(s.b.p, s.b.n, NULL, NULL, NULL, &r), SOCHDB_OK, "no identity check asked");
  free(s.b.p);
}

Test(walfmt, version_mismatch_is_a_version_error)
{
  struct seg s;
  make_segment(&s, 1);
  struct wal_seg_header h;
  memcpy(&h, s.b.p, sizeof h);
  h.version = WAL_VERSION + 1;
  wal_seg_header_seal(&h);           /* a well-formed header of another version */
  memcpy(s.b.p, &h, sizeof h);
  struct wal_scan_result r;
  cr_assert_eq(wal_scan_buffer(s.b.p, s.b.n, DB_ID, NULL, NULL, &r), SOCHDB_VERSION, "%s", sochdb_last_error());
  h.version = WAL_VERSION;           /* tampered without resealing: corruption, not a version */
  memcpy(s.b.p, &h, sizeof h);
  s.b.p[8] ^= 2;
  cr_assert_eq(wal_scan_buffer(s.b.p, s.b.n, DB_ID, NULL, NULL, &r), SOCHDB_CORRUPT);
  free(s.b.p);
}

Test(walfmt, malformed_record_in_an_intact_group_is_corruption)
{
  struct buf b = { 0 };
  struct wal_seg_header h;
  wal_seg_header_init(&h, 0, DB_ID, 1);
  append(&b, &h, sizeof h);
  uint8_t rec[256];
  size_t bytes = make_record(rec, 5, 2);
  rec[WAL_RECORD_HEADER] = 9;        /* unknown op kind ... */
  wal_record_finish(rec);            /* ... under a valid record checksum */
  struct wal_group_header g;
  wal_group_header_init(&g, wal_seg_salt(&h), 0, rec, (uint32_t)bytes);
  append(&b, &g, sizeof g);
  append(&b, rec, bytes);
  struct wal_scan_result r;
  cr_assert_eq(wal_scan_buffer(b.p, b.n, DB_ID, NULL, NULL, &r), SOCHDB_CORRUPT, "%s", sochdb_last_error());
  free(b.p);
}

Test(walfmt, group_with_an_unexpected_lsn_is_corruption)
{
  struct buf b = { 0 };
  struct wal_seg_header h;
  wal_seg_header_init(&h, 100, DB_ID, 1);
  append(&b, &h, sizeof h);
  uint64_t lsn = 200;                /* the segment says the stream starts at 100 */
  append_group(&b, wal_seg_salt(&h), &lsn, 10, 2);
  struct wal_scan_result r;
  cr_assert_eq(wal_scan_buffer(b.p, b.n, DB_ID, NULL, NULL, &r), SOCHDB_CORRUPT);
  free(b.p);
}

/* One group's payload bytes, as append_group writes it. */
static uint64_t group_payload_bytes(void)
{
  struct buf probe = { 0 };
  uint64_t lsn = 0;
  append_group(&probe, 0, &lsn, 10, 2);
  free(probe.p);
  return lsn;
}

Test(walfmt, lsns_never_wrap)
{
  uint64_t payload = group_payload_bytes();
  struct wal_scan_result r;
  struct wal_seg_header h;
  /* A segment may start as late as WAL_MAX_FIRST_LSN... */
  struct buf b = { 0 };
  wal_seg_header_init(&h, WAL_MAX_FIRST_LSN, DB_ID, 1);
  append(&b, &h, sizeof h);
  uint64_t lsn = WAL_MAX_FIRST_LSN;
  append_group(&b, wal_seg_salt(&h), &lsn, 10, 2);
  cr_assert_eq(wal_scan_buffer(b.p, b.n, DB_ID, NULL, NULL, &r), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(r.next_lsn, WAL_MAX_FIRST_LSN + payload);
  free(b.p);
  /* ...and no later: near UINT64_MAX its LSNs could wrap. */
  b = (struct buf){ 0 };
  wal_seg_header_init(&h, WAL_MAX_FIRST_LSN + 1, DB_ID, 1);
  append(&b, &h, sizeof h);
  cr_assert_eq(wal_scan_buffer(b.p, b.n, DB_ID, NULL, NULL, &r), SOCHDB_CORRUPT);
  cr_assert(strstr(sochdb_last_error(), "past any log's length"), "%s", sochdb_last_error());
  free(b.p);

  /* Groups forged to end at UINT64_MAX, then to go past it, behind an honest
  ** header: a resume at the first goes on from UINT64_MAX and refuses the
  ** second; a resume at a group that itself wraps is refused. */
  b = (struct buf){ 0 };
  wal_seg_header_init(&h, 100, DB_ID, 1);
  append(&b, &h, sizeof h);
  uint64_t first = b.n;
  lsn = UINT64_MAX - payload;
  append_group(&b, wal_seg_salt(&h), &lsn, 10, 2);
  uint64_t second = b.n;
  append_group(&b, wal_seg_salt(&h), &lsn, 11, 2);   /* from UINT64_MAX: would wrap to payload - 1 */
  struct wal_resume at = { first, second, UINT64_MAX };
  cr_assert_eq(wal_scan_buffer_from(b.p, b.n, -1, DB_ID, &at, NULL, NULL, &r), SOCHDB_CORRUPT);
  cr_assert(strstr(sochdb_last_error(), "runs past the largest LSN"), "%s", sochdb_last_error());
  at = (struct wal_resume){ second, b.n, payload - 1 };
  cr_assert_eq(wal_scan_buffer_from(b.p, b.n, -1, DB_ID, &at, NULL, NULL, &r), SOCHDB_CORRUPT);
  cr_assert(strstr(sochdb_last_error(), "is damaged or not there"), "%s", sochdb_last_error());
  free(b.p);
}

static int stop_at_second(void *ctx, const struct wal_record *rec)
{
  (void)rec;
  return ++*(int *)ctx == 2 ? 77 : 0;
}

Test(walfmt, callback_can_stop_the_scan)
{
  struct seg s;
  make_segment(&s, 2);
  int calls = 0;
  struct wal_scan_result r;
  cr_assert_eq(wal_scan_buffer(s.b.p, s.b.n, DB_ID, stop_at_second, &calls, &r), 77);
  cr_assert_eq(calls, 2);
  free(s.b.p);
}

Test(walfmt, scan_file_reads_a_segment_and_reports_a_missing_one)
{
  struct seg s;
  make_segment(&s, 2);
  char path[] = "/tmp/sochdb-walfmt-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, s.b.p, s.b.n - 5), (ssize_t)(s.b.n - 5), "write");   /* torn by 5 bytes */
  close(fd);
  struct wal_scan_result r;
  struct seen seen = { .next_seq = 10, .next_lsn = 1000 };
  cr_assert_eq(wal_scan_file(path, DB_ID, check_record, &seen, &r), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(r.groups, 1);
  cr_assert_eq(r.torn_bytes, s.b.n - 5 - s.group_end[0]);
  cr_assert_eq(seen.bad, 0);
  unlink(path);
  cr_assert_eq(wal_scan_file(path, DB_ID, NULL, NULL, &r), SOCHDB_IO, "missing file");
  free(s.b.p);
}

Test(walfmt, only_segment_names_as_written_are_listed)
{
  char dir[] = "/tmp/sochdb-walfmt-XXXXXX", wal[64], path[128];
  cr_assert(mkdtemp(dir));
  snprintf(wal, sizeof wal, "%s/" WAL_DIR, dir);
  cr_assert_eq(mkdir(wal, 0700), 0);
  static const char *const names[] = { "0000000000000010.wal", "000000000000002a.wal",
                                       "00000000000000AB.wal", "-000000000000001.wal", "0x00000000000030.wal",
                                       " 000000000000040.wal", "000000000000005.wal", "0000000000000060.wal.tmp" };
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(path, sizeof path, "%s/%s", wal, names[i]);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    close(fd);
  }
  uint64_t *lsns;
  size_t n;
  cr_assert_eq(wal_list_segments(dir, &lsns, &n), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(n, 2, "%zu segments listed: a name no path reaches was taken for one", n);
  cr_assert_eq(lsns[0], 0x10);
  cr_assert_eq(lsns[1], 0x2a);
  wal_segment_path(path, sizeof path, dir, lsns[1]);
  cr_assert(strstr(path, "000000000000002a.wal"), "%s", path);
  free(lsns);
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(path, sizeof path, "%s/%s", wal, names[i]);
    unlink(path);
  }
  rmdir(wal);
  rmdir(dir);
}

Test(walfmt, record_size_limits)
{
  cr_assert_eq(wal_record_bytes(0, 0), WAL_RECORD_HEADER);
  cr_assert_eq(wal_record_bytes(1, 1) % 8, 0);
  cr_assert_eq(wal_record_bytes(70000, 0), 0, "more ops than a record can count");
  cr_assert_eq(wal_record_bytes(1, 5ull << 30), 0, "over the 4 GiB record limit");
}

/* ---- verifying ahead (a helper thread checksums groups the scan then trusts) ---- */

/* A helper's part for segs[0..n-1], numbered first, first + 1, ... */
struct verifier {
  struct wal_ahead *a;
  const struct seg *segs;
  unsigned          n;
  uint32_t          first;
};

static void *verify_main(void *arg)
{
  struct verifier *v = arg;
  for (unsigned i = 0; i < v->n; i++)
    wal_verify_ahead(v->a, v->first + i, v->segs[i].b.p, v->segs[i].b.n);
  return NULL;
}

Test(walfmt, a_scan_beside_its_verifier_reads_every_record)
{
  enum { SEGS = 3, ROUNDS = 200 };
  struct seg s[SEGS];
  for (unsigned i = 0; i < SEGS; i++)
    make_segment(&s[i], 8);
  for (unsigned round = 0; round < ROUNDS; round++) {   /* the two threads meet at different places */
    struct wal_ahead a = { 0 };
    struct verifier v = { &a, s, SEGS, 0 };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, verify_main, &v), 0);
    for (unsigned i = 0; i < SEGS; i++) {
      struct wal_scan_result r;
      struct seen seen;
      cr_assert_eq(scan_ahead(s[i].b.p, s[i].b.n, &a, i, &r, &seen), SOCHDB_OK, "%s", sochdb_last_error());
      cr_assert_eq(seen.bad, 0, "round %u, segment %u: records differ from what was written", round, i);
      cr_assert_eq(r.groups, 8);
      cr_assert_eq(r.end_offset, s[i].b.n);
    }
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
  }
  for (unsigned i = 0; i < SEGS; i++)
    free(s[i].b.p);
}

Test(walfmt, verified_groups_are_trusted_and_no_others)
{
  struct seg s[2];
  make_segment(&s[0], 4);
  make_segment(&s[1], 4);
  struct wal_ahead a = { 0 };
  wal_verify_ahead(&a, 0, s[0].b.p, s[0].b.n);
  /* What the helper verified is not checksummed again: a value byte changed
  ** afterwards (which the contract forbids) goes unnoticed by the scan. */
  size_t value_byte = s[0].group_end[1] - 9;
  s[0].b.p[value_byte] ^= 0x01;
  struct wal_scan_result r;
  struct seen seen;
  cr_assert_eq(scan_ahead(s[0].b.p, s[0].b.n, &a, 0, &r, &seen), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(r.groups, 4);
  /* Without the helper's word, or with it for another segment, the damage
  ** before intact groups is corruption. */
  struct wal_ahead other = { 0 };
  atomic_store(&other.scanned, wal_ahead_pos(4, WAL_SEG_HEADER));   /* a scan at segment 4's start... */
  wal_verify_ahead(&other, 4, s[0].b.p, s[0].b.n);   /* ... whose helper used slot 0 */
  cr_assert_eq(scan_ahead(s[0].b.p, s[0].b.n, &other, 0, &r, &seen), SOCHDB_CORRUPT);
  cr_assert_eq(scan(s[0].b.p, s[0].b.n, &r, &seen), SOCHDB_CORRUPT);
  s[0].b.p[value_byte] ^= 0x01;
  free(s[0].b.p);
  free(s[1].b.p);
}

Test(walfmt, a_verifier_stops_at_damage_and_the_scan_still_finds_it)
{
  struct seg s[2];
  make_segment(&s[0], 4);
  make_segment(&s[1], 4);
  for (size_t i = s[0].group_end[1]; i < s[0].group_end[2]; i += 7) {
    s[0].b.p[i] ^= 0x10;
    struct wal_ahead a = { 0 };
    struct verifier v = { &a, s, 2, 0 };
    verify_main(&v);   /* done with both segments before the scan starts */
    struct wal_scan_result r;
    struct seen seen;
    cr_assert_eq(scan_ahead(s[0].b.p, s[0].b.n, &a, 0, &r, &seen), SOCHDB_CORRUPT,
                 "byte %zu of the third group, verified segment 1 after it", i);
    cr_assert_eq(scan_ahead(s[1].b.p, s[1].b.n, &a, 1, &r, &seen), SOCHDB_OK);
    cr_assert_eq(seen.bad, 0);
    s[0].b.p[i] ^= 0x10;
  }
  free(s[0].b.p);
  free(s[1].b.p);
}

Test(walfmt, a_verifier_skips_what_the_scan_passed)
{
  struct seg s;
  make_segment(&s, 4);
  struct wal_ahead a = { 0 };
  s.b.p[s.group_end[0] + 40] ^= 0x01;   /* damage the helper would stop at, were it not skipped */
  atomic_store(&a.scanned, wal_ahead_pos(0, s.group_end[2]));   /* as a scan that passed three groups */
  wal_verify_ahead(&a, 0, s.b.p, s.b.n);
  cr_assert_eq(atomic_load(&a.verified[0]), wal_ahead_pos(0, s.group_end[3]), "verified the fourth group only");
  struct wal_ahead b = { 0 };   /* a scan already in the next segment */
  atomic_store(&b.scanned, wal_ahead_pos(1, WAL_SEG_HEADER));
  wal_verify_ahead(&b, 0, s.b.p, s.b.n);
  cr_assert_eq(atomic_load(&b.verified[0]), 0, "verified a segment the scan had left");
  free(s.b.p);
}

Test(walfmt, a_verifier_waits_rather_than_take_an_unfinished_segments_slot)
{
  struct seg s;
  make_segment(&s, 4);
  struct wal_ahead a = { 0 };
  atomic_store(&a.scanned, wal_ahead_pos(0, s.group_end[0]));   /* the scan is in segment 0 */
  atomic_store(&a.verified[0], wal_ahead_pos(0, s.group_end[2]));
  struct verifier v = { &a, &s, 1, WAL_AHEAD_SLOTS };   /* segment 4 would take segment 0's slot */
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, verify_main, &v), 0);
  usleep(20000);
  cr_assert_eq(atomic_load(&a.verified[0]), wal_ahead_pos(0, s.group_end[2]), "segment 0's progress was replaced");
  atomic_store(&a.scanned, wal_ahead_pos(1, WAL_SEG_HEADER));   /* the scan moves on: the helper may too */
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&a.verified[0]), wal_ahead_pos(WAL_AHEAD_SLOTS, s.group_end[3]));
  /* ... and a helper told to stop while it waits returns */
  struct wal_ahead b = { 0 };
  v.a = &b;
  cr_assert_eq(pthread_create(&th, NULL, verify_main, &v), 0);
  usleep(5000);
  atomic_store(&b.stop, 1);
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&b.verified[0]), 0);
  free(s.b.p);
}

/* ---- resuming after a group read before (the daemon's note of the log's end) */

/* Scan s from `from` with check_record, expecting records from seq on. */
static int scan_from(const struct seg *s, size_t n, const struct wal_resume *from, uint64_t seq, uint64_t lsn,
                     struct wal_scan_result *r, struct seen *seen)
{
  memset(seen, 0, sizeof *seen);
  seen->next_seq = seq;
  seen->next_lsn = lsn;
  return wal_scan_buffer_from(s->b.p, n, -1, DB_ID, from, check_record, seen, r);
}

/* The resume point after group g of s. */
static struct wal_resume after_group(const struct seg *s, unsigned g)
{
  struct wal_scan_result r;
  struct seen seen;
  cr_assert_eq(scan(s->b.p, s->group_end[g], &r, &seen), SOCHDB_OK);
  return (struct wal_resume){ g ? s->group_end[g - 1] : WAL_SEG_HEADER, s->group_end[g], r.next_lsn };
}

Test(walfmt, a_scan_resumes_after_a_group_and_reads_only_what_follows)
{
  struct seg s;
  make_segment(&s, 4);
  struct wal_scan_result full, r;
  struct seen seen;
  cr_assert_eq(scan(s.b.p, s.b.n, &full, &seen), SOCHDB_OK);
  cr_assert_eq(full.last_group, s.group_end[2], "the last group starts where the third ends");
  struct wal_resume from = after_group(&s, 1);
  cr_assert_eq(scan_from(&s, s.b.n, &from, s.seq_end[1], from.next_lsn, &r, &seen), SOCHDB_OK, "%s",
               sochdb_last_error());
  cr_assert(r.resumed, "a resume point that matches the segment was not taken");
  cr_assert_eq(seen.bad, 0, "the records after the resume point differ from what was written");
  cr_assert_eq(r.groups, 2, "only the two groups after the resume point are read");
  cr_assert_eq(seen.next_seq, s.seq_end[3]);
  cr_assert_eq(r.next_lsn, full.next_lsn);
  cr_assert_eq(r.end_offset, full.end_offset);
  cr_assert_eq(r.last_group, full.last_group);
  cr_assert_eq(r.first_lsn, 1000);
  /* resumed at the very end: nothing to read, the end is where it was */
  from = after_group(&s, 3);
  cr_assert_eq(from.next_lsn, full.next_lsn);
  cr_assert_eq(scan_from(&s, s.b.n, &from, s.seq_end[3], full.next_lsn, &r, &seen), SOCHDB_OK);
  cr_assert(r.resumed);
  cr_assert_eq(r.groups, 0);
  cr_assert_eq(r.end_offset, s.b.n);
  cr_assert_eq(r.last_group, s.group_end[2]);
  cr_assert_eq(r.next_lsn, full.next_lsn);
  free(s.b.p);
}

Test(walfmt, a_resume_point_that_does_not_match_the_segment_is_corruption)
{
  struct seg s;
  make_segment(&s, 3);
  struct wal_scan_result r;
  struct seen seen;
  const struct wal_resume good = after_group(&s, 0);
  uint64_t lsn1 = good.next_lsn;
  struct wal_resume bad[] = {
    { good.last_group, good.end_offset, lsn1 + 8 },               /* another LSN */
    { good.last_group, good.end_offset - 8, lsn1 - 8 },           /* the end inside the group */
    { good.last_group + 8, good.end_offset, lsn1 },               /* not a group's start */
    { s.group_end[0], s.group_end[1] + 8, lsn1 },                  /* past the next group's end */
    { good.last_group, s.b.n + 4096, lsn1 },                       /* past the file: durable bytes missing */
    { UINT64_MAX - 7, good.end_offset, lsn1 },                     /* an offset that would wrap */
    { 8, 40, 1000 },                                               /* inside the segment header */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(scan_from(&s, s.b.n, &bad[i], 10, 1000, &r, &seen), SOCHDB_CORRUPT,
                 "resume point %zu does not match the segment, yet no corruption was reported", i);
    cr_assert_not(r.resumed);
    cr_assert_eq(seen.records, 0, "point %zu: records were read from a segment that does not match", i);
  }
  /* The named group's header damaged, the only group: a whole scan would
  ** call it a torn tail and cut it; the note says it was durable. */
  s.b.p[good.last_group + 4] ^= 0x10;
  cr_assert_eq(scan(s.b.p, s.group_end[0], &r, &seen), SOCHDB_OK);
  cr_assert_eq(r.torn_bytes, s.group_end[0] - WAL_SEG_HEADER, "read whole, the damaged only group is a torn tail");
  cr_assert_eq(scan_from(&s, s.group_end[0], &good, 10, 1000, &r, &seen), SOCHDB_CORRUPT,
               "the durable group's header is damaged, yet the scan went on");
  cr_assert_not_null(strstr(sochdb_last_error(), "durable"), "message: %s", sochdb_last_error());
  s.b.p[good.last_group + 4] ^= 0x10;
  /* no resume point: the whole segment */
  cr_assert_eq(scan_from(&s, s.b.n, NULL, 10, 1000, &r, &seen), SOCHDB_OK);
  cr_assert_not(r.resumed);
  cr_assert_eq(r.groups, 3);
  cr_assert_eq(seen.bad, 0);
  free(s.b.p);
}

Test(walfmt, after_a_resume_point_a_torn_tail_and_damage_are_judged_as_ever)
{
  struct seg s;
  make_segment(&s, 3);
  struct wal_scan_result r;
  struct seen seen;
  const struct wal_resume from = after_group(&s, 0);
  uint64_t lsn1 = from.next_lsn;
  /* cut inside the last group: read up to the second, the rest torn */
  size_t cut = s.group_end[1] + 40;
  cr_assert_eq(scan_from(&s, cut, &from, s.seq_end[0], lsn1, &r, &seen), SOCHDB_OK);
  cr_assert(r.resumed);
  cr_assert_eq(r.end_offset, s.group_end[1]);
  cr_assert_eq(r.torn_bytes, cut - s.group_end[1]);
  cr_assert_eq(seen.next_seq, s.seq_end[1]);
  /* damage in the second group, before the intact third: corruption */
  s.b.p[s.group_end[0] + 50] ^= 0x01;
  cr_assert_eq(scan_from(&s, s.b.n, &from, s.seq_end[0], lsn1, &r, &seen), SOCHDB_CORRUPT);
  s.b.p[s.group_end[0] + 50] ^= 0x01;
  /* damage before the resume point is not read again: that is the point */
  s.b.p[WAL_SEG_HEADER + 50] ^= 0x01;
  cr_assert_eq(scan_from(&s, s.b.n, &from, s.seq_end[0], lsn1, &r, &seen), SOCHDB_OK);
  cr_assert(r.resumed);
  cr_assert_eq(seen.next_seq, s.seq_end[2]);
  cr_assert_eq(scan(s.b.p, s.b.n, &r, &seen), SOCHDB_CORRUPT, "a whole scan still finds it");
  free(s.b.p);
}

/* ---- the tail after the last group, read through the file */

/* Scan s's n bytes through a buffer and, written to a file, with the file
** given for the tail: both ways must agree. */
static void agree_with_the_file(const struct seg *s, size_t n, const char *what)
{
  char path[] = "/tmp/sochdb-walfmt-tail-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, s->b.p, n), (ssize_t)n, "write");
  struct wal_scan_result mem, file;
  struct seen seen;
  memset(&seen, 0, sizeof seen);
  seen.next_seq = 10;
  seen.next_lsn = 1000;
  int rc_mem = wal_scan_buffer_ahead(s->b.p, n, -1, DB_ID, NULL, NULL, &mem, NULL, 0);
  int rc_file = wal_scan_buffer_ahead(s->b.p, n, fd, DB_ID, check_record, &seen, &file, NULL, 0);
  close(fd);
  unlink(path);
  cr_assert_eq(rc_file, rc_mem, "%s: %s through the file, %s through the mapping", what, sochdb_strerror(rc_file),
               sochdb_strerror(rc_mem));
  cr_assert_eq(file.end_offset, mem.end_offset, "%s", what);
  cr_assert_eq(file.torn_bytes, mem.torn_bytes, "%s", what);
  cr_assert_eq(file.groups, mem.groups, "%s", what);
  cr_assert_eq(seen.bad, 0, "%s", what);
}

Test(walfmt, a_tail_read_through_the_file_is_judged_as_through_the_mapping)
{
  struct seg s;
  make_segment(&s, 2);
  size_t end = s.b.n;
  static uint8_t zeros[200 << 10];   /* longer than the scan's chunk of the file */
  append(&s.b, zeros, sizeof zeros);
  agree_with_the_file(&s, s.b.n, "a long runway of zeros");
  struct wal_scan_result r;
  struct seen seen;
  cr_assert_eq(scan(s.b.p, s.b.n, &r, &seen), SOCHDB_OK);
  cr_assert_eq(r.torn_bytes, 0, "zeros are a clean end");
  /* one byte far into the runway, past the first chunks: a torn tail either way */
  size_t far[] = { end, end + (16 << 10), end + (70 << 10), s.b.n - 1 };
  for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
    s.b.p[far[i]] = 0x5a;
    agree_with_the_file(&s, s.b.n, "a byte in the runway");
    cr_assert_eq(scan(s.b.p, s.b.n, &r, &seen), SOCHDB_OK);
    cr_assert_eq(r.torn_bytes, s.b.n - end, "a byte at %zu of the runway makes the rest a torn tail", far[i] - end);
    s.b.p[far[i]] = 0;
  }
  /* The file is what is read: a byte in the buffer's runway that the file
  ** does not have goes unseen, up to where a shorter file ends and the
  ** buffer takes over. */
  char path[] = "/tmp/sochdb-walfmt-tail-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, s.b.p, s.b.n), (ssize_t)s.b.n, "write");
  s.b.p[end + (70 << 10)] = 0x5a;
  cr_assert_eq(wal_scan_buffer_ahead(s.b.p, s.b.n, fd, DB_ID, NULL, NULL, &r, NULL, 0), SOCHDB_OK);
  cr_assert_eq(r.torn_bytes, 0, "the tail was not read through the file");
  cr_assert_eq(ftruncate(fd, (off_t)(end + (20 << 10))), 0, "truncate");
  cr_assert_eq(wal_scan_buffer_ahead(s.b.p, s.b.n, fd, DB_ID, NULL, NULL, &r, NULL, 0), SOCHDB_OK);
  cr_assert_eq(r.torn_bytes, s.b.n - end, "past the file's end the buffer was not read");
  close(fd);
  unlink(path);
  free(s.b.p);
}

/* ---- reused files (walfmt.h) ------------------------------------------- */

/* A file reused for a new segment: the new segment's first n bytes written
** over an older segment of 6 groups (made earlier, so salted otherwise),
** whose groups name the same LSNs and more, with other records: in *out. */
static void reuse_file(struct buf *out, const struct seg *fresh, size_t n)
{
  struct seg old;
  make_segment_made_at(&old, 6, 41, 500);
  cr_assert_gt(old.b.n, fresh->b.n);
  memcpy(old.b.p, fresh->b.p, n);
  *out = old.b;
}

Test(walfmt, a_reused_files_old_groups_are_neither_read_nor_taken_for_damage)
{
  struct seg fresh;
  make_segment(&fresh, 2);
  struct buf file;
  reuse_file(&file, &fresh, fresh.b.n);
  struct wal_scan_result r;
  struct seen seen;
  cr_assert_eq(scan(file.p, file.n, &r, &seen), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(seen.bad, 0);
  cr_assert_eq(r.version, WAL_VERSION);
  cr_assert_eq(r.groups, 2, "%llu groups read: the old ones after the new are not this segment's",
               (unsigned long long)r.groups);
  cr_assert_eq(r.end_offset, fresh.b.n);
  cr_assert_eq(seen.next_seq, fresh.seq_end[1]);
  cr_assert_eq(r.torn_bytes, file.n - fresh.b.n, "the old bytes are after the groups");
  cr_assert(!r.torn_write, "the old bytes do not begin a torn group of this segment");
  free(file.p);
  free(fresh.b.p);
}

/* The second group written over the old bytes cut at every byte, as a kill
** or a power cut may leave it: a torn tail, never damage, though the old
** groups after it are intact and name later LSNs. */
Test(walfmt, a_group_torn_over_a_reused_files_old_bytes_is_a_torn_tail)
{
  struct seg fresh;
  make_segment(&fresh, 2);
  for (size_t n = fresh.group_end[0]; n < fresh.group_end[1]; n++) {
    struct buf file;
    reuse_file(&file, &fresh, n);
    struct wal_scan_result r;
    struct seen seen;
    int rc = scan(file.p, file.n, &r, &seen);
    cr_assert_eq(rc, SOCHDB_OK, "cut at %zu: %s (%s)", n, sochdb_strerror(rc), sochdb_last_error());
    cr_assert_eq(r.groups, 1, "cut at %zu: %llu groups", n, (unsigned long long)r.groups);
    cr_assert_eq(r.end_offset, fresh.group_end[0], "cut at %zu", n);
    cr_assert_eq(r.torn_write, n >= fresh.group_end[0] + WAL_GROUP_HEADER, "cut at %zu: its header is %s", n,
                 n >= fresh.group_end[0] + WAL_GROUP_HEADER ? "whole" : "not whole");
    free(file.p);
  }
  free(fresh.b.p);
}

Test(walfmt, damage_in_a_reused_file_before_one_of_its_groups_is_corruption)
{
  struct seg fresh;
  make_segment(&fresh, 3);
  struct buf file;
  reuse_file(&file, &fresh, fresh.b.n);
  for (size_t i = fresh.group_end[0]; i < fresh.group_end[1]; i += 7) {
    file.p[i] ^= 0x01;
    struct wal_scan_result r;
    struct seen seen;
    int rc = scan(file.p, file.n, &r, &seen);
    cr_assert_eq(rc, SOCHDB_CORRUPT, "byte %zu of a middle group: got %s", i, sochdb_strerror(rc));
    cr_assert_not_null(strstr(sochdb_last_error(), "durable"), "message: %s", sochdb_last_error());
    file.p[i] ^= 0x01;
  }
  free(file.p);
  free(fresh.b.p);
}

/* A version-1 segment (written before segments were reused): its groups are
** unsalted and read as ever; a version-2 header over the same groups does
** not make them its own. */
Test(walfmt, a_version_1_segment_is_read_and_its_groups_are_no_other_versions)
{
  struct buf b = { 0 };
  struct wal_seg_header h;
  wal_seg_header_init(&h, 1000, DB_ID, 42);
  h.version = WAL_VERSION_1;
  wal_seg_header_seal(&h);
  cr_assert_eq(wal_seg_salt(&h), 0);
  append(&b, &h, sizeof h);
  uint64_t lsn = 1000;
  append_group(&b, 0, &lsn, 10, 3);
  size_t first_end = b.n;
  append_group(&b, 0, &lsn, 13, 4);
  struct wal_scan_result r;
  struct seen seen;
  cr_assert_eq(scan(b.p, b.n, &r, &seen), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert(r.version == WAL_VERSION_1 && r.groups == 2 && seen.bad == 0 && r.torn_bytes == 0);
  b.p[first_end - 1] ^= 0x01;   /* damage before an intact group: judged as ever */
  cr_assert_eq(scan(b.p, b.n, &r, &seen), SOCHDB_CORRUPT);
  b.p[first_end - 1] ^= 0x01;
  h.version = WAL_VERSION;
  wal_seg_header_seal(&h);
  memcpy(b.p, &h, sizeof h);
  cr_assert_eq(scan(b.p, b.n, &r, &seen), SOCHDB_OK, "%s", sochdb_last_error());
  cr_assert_eq(r.groups, 0, "a version-2 segment read unsalted groups");
  free(b.p);
}
