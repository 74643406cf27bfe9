/*
** fuzz_wal.c — libFuzzer target for the WAL segment scanner (src/walfmt.c).
**
** The input is a whole segment file, scanned with wal_scan_buffer (every
** record's ops walked with wal_op_next) twice: as it is, then with every
** checksum recomputed (the segment header, each group whose length fits, and
** each record inside it whose length fits: scans trust the group's checksum,
** sochdb check verifies the record's, wal_record_checksum_ok, called on every
** record here) so that the record and op parsers see arbitrary bytes behind
** valid checksums. Nothing may crash, read out of bounds or leak. Each scan
** is also resumed (wal_scan_buffer_from): at the last group the whole scan
** found, which must end where the whole scan ended, and at a point taken
** from the input's last 24 bytes, which may be anything.
*/
#include "bytes.h"
#include "walfmt.h"

#include "sochdb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;


static int on_record(void *ctx, const struct wal_record *rec)
{
  (void)ctx;
  size_t pos = 0;
  struct wal_op op;
  uint64_t h = rec->seq ^ rec->lsn ^ rec->type ^ rec->nops ^ (uint64_t)wal_record_checksum_ok(rec);
  while (wal_op_next(rec, &pos, &op)) {
    for (uint32_t i = 0; i < op.klen; i++)
      h = h * 31 + op.key[i];
    for (uint32_t i = 0; i < op.vlen; i++)
      h = h * 31 + op.val[i];
  }
  sink += h;
  return 0;
}

/* Resume after the whole scan's last group: the same end, or the property is broken. */
static void resume(const uint8_t *buf, size_t len, int whole_rc, const struct wal_scan_result *whole)
{
  struct wal_scan_result res;
  if (whole_rc == SOCHDB_OK && whole->last_group) {
    struct wal_resume at = { whole->last_group, whole->end_offset, whole->next_lsn };
    if (wal_scan_buffer_from(buf, len, -1, NULL, &at, on_record, NULL, &res) != SOCHDB_OK || !res.resumed ||
        res.end_offset != whole->end_offset || res.next_lsn != whole->next_lsn ||
        res.torn_bytes != whole->torn_bytes)
      abort();
  }
  if (len >= WAL_SEG_HEADER + 24) {
    struct wal_resume any = { ld64(buf + len - 24), ld64(buf + len - 16), ld64(buf + len - 8) };
    (void)wal_scan_buffer_from(buf, len, -1, NULL, &any, on_record, NULL, &res);
  }
}

static void scan(const uint8_t *buf, size_t len)
{
  struct wal_scan_result res;
  resume(buf, len, wal_scan_buffer(buf, len, NULL, on_record, NULL, &res), &res);
  if (len >= WAL_SEG_HEADER) {   /* with the id check too: the header's own id */
    uint8_t id[16];
    memcpy(id, buf + 24, 16);
    (void)wal_scan_buffer(buf, len, id, on_record, NULL, &res);
  }
}

static void reseal(uint8_t *buf, size_t len)
{
  if (len < WAL_SEG_HEADER)
    return;
  struct wal_seg_header h;
  memcpy(&h, buf, sizeof h);
  wal_seg_header_seal(&h);
  memcpy(buf, &h, sizeof h);
  uint64_t lsn = h.first_lsn;
  size_t off = WAL_SEG_HEADER;
  while (len - off >= WAL_GROUP_HEADER) {
    struct wal_group_header g;
    memcpy(&g, buf + off, sizeof g);
    uint32_t bytes = g.payload_bytes;
    if (bytes > len - off - WAL_GROUP_HEADER)
      break;
    uint8_t *payload = buf + off + WAL_GROUP_HEADER;
    for (uint32_t pos = 0; bytes - pos >= WAL_RECORD_HEADER;) {
      uint32_t rb = ld32(payload + pos);
      if (rb < WAL_RECORD_HEADER || rb > bytes - pos)
        break;
      wal_record_finish(payload + pos);
      pos += rb;
    }
    wal_group_header_init(&g, wal_seg_salt(&h), lsn, payload, bytes);
    memcpy(buf + off, &g, sizeof g);
    lsn += bytes;
    off += WAL_GROUP_HEADER + bytes;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  scan(buf, size);
  reseal(buf, size);
  scan(buf, size);
  free(buf);
  return 0;
}
