/*
** walfmt.h — the write-ahead log's on-disk format: segment files, commit
** groups and commit records; encoding them and scanning them back.
**
** A segment file is a 64-byte header followed by groups. A group is what the
** daemon writes with one write() and makes durable with one fdatasync(): a
** 32-byte group header (its payload length, first LSN, a checksum of the
** header and one of the payload) followed by whole records. A record is one
** committed transaction: its commit sequence and its operations, with a
** checksum of its own. Everything is little-endian and 8-byte aligned.
** Readers (recovery, the daemon) verify the groups' checksums, which cover
** every byte of their records on disk; only sochdb check also verifies each
** record's own, which can catch what went wrong in the writer's buffer
** before its group was sealed (such a record is replayed as written).
**
**   segment: [ seg header 64 B | group | group | ... | zeros or torn bytes ]
**   group:   [ magic u32 | payload bytes u32 | first_lsn u64 | payload xxh3 u64 | header xxh3 u64 ]
**            [ record | record | ... ]
**   record:  [ bytes u32 | type u16 | nops u16 | seq u64 | xxh3 u64 | op ... | pad to 8 ]
**   op:      [ kind u8 | 0 u8 x3 | klen u32 | vlen u32 | key | value ]
**
** The writer lays zeros ahead of its groups and writes each group over them
** (daemon/walwriter.c: an fdatasync of an overwrite costs about half that of
** an append), so a new segment usually ends in zeros: the log's clean end.
**
** Reused segments (version 2): the writer may take the file of a segment
** the flusher no longer needs, write a new header over it and its groups
** over the old ones (the disk then writes over blocks it holds, with no
** zeros laid first and no file removed). Such a file's tail holds the old
** segment's bytes, groups included. Every group's checksums are seeded
** with its segment's salt (wal_seg_salt: the header's own checksum, which
** names the segment's first LSN and when it was made), so a group of an
** earlier use of the file, or one stored as a value, never reads as a group
** of this segment. A version-1 segment's salt is 0 (how they were written).
**
** LSN is a byte position in the stream of records (group headers and segment
** headers not counted), so a record's LSN does not depend on how records
** were grouped.
**
** Why groups, and how damage is judged: group N+1 is written only after group
** N's fdatasync returned. So a damaged group followed by an intact one of
** its segment with a later LSN was damaged after it was durable: that is
** corruption (SOCHDB_CORRUPT), never skipped. A damaged last group (nothing intact after it) is a write the
** crash interrupted, which no commit was acknowledged for: recovery stops
** before it and reports the torn bytes.
*/
#ifndef SOCHDB_WALFMT_H
#define SOCHDB_WALFMT_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#define WAL_VERSION        2u   /* what the writer writes; 1 (unsalted groups, never reused) is read too */
#define WAL_VERSION_1      1u
#define WAL_SEG_HEADER     64u
#define WAL_GROUP_HEADER   32u
#define WAL_RECORD_HEADER  24u
#define WAL_OP_HEADER      12u

enum wal_record_type { WAL_COMMIT = 1, WAL_PADDING = 2 };
enum wal_op_kind     { WAL_PUT = 1, WAL_DEL = 2 };

struct wal_seg_header {
  char     magic[8];          /* "SOCHWAL" NUL */
  uint32_t version;
  uint32_t header_bytes;
  uint64_t first_lsn;
  uint8_t  db_id[16];
  uint64_t created_unix_ns;
  /* A commit the writer had logged before this segment (the newest it
  ** logged itself; 0: none known, as in segments of writers before this
  ** field). The flusher removes a segment only once every commit in it is
  ** in SSTables, so when the oldest segment's prev_seq is above the
  ** MANIFEST's last_flushed_seq, a segment holding unflushed commits is gone
  ** (or the MANIFEST lost its last edit): recovery and sochdb check say so
  ** instead of serving a database without them. A lower bound, never a
  ** claimed seq that may not be logged, so it cannot cry wolf. */
  uint64_t prev_seq;
  uint64_t checksum;          /* XXH3 of the 56 bytes before it */
};

struct wal_group_header {
  uint32_t magic;
  uint32_t payload_bytes;
  uint64_t first_lsn;
  uint64_t payload_checksum;
  uint64_t header_checksum;   /* XXH3 of the 24 bytes before it */
};

struct wal_op {
  unsigned       kind;        /* WAL_PUT or WAL_DEL */
  const uint8_t *key;
  uint32_t       klen;
  const uint8_t *val;
  uint32_t       vlen;
};

/* A record being read: points into the scanned buffer. */
struct wal_record {
  uint64_t       group_offset; /* file offset of the group holding it */
  uint64_t       lsn;
  uint64_t       seq;
  unsigned       type;
  unsigned       nops;
  const uint8_t *ops;         /* nops ops, packed */
  size_t         ops_bytes;
};

/* Whether a scanned record's own checksum matches. Scans do not look: the
** checksum of the intact group holding it covers it already; this is for
** sochdb check, which verifies both. */
int wal_record_checksum_ok(const struct wal_record *rec);

/* ---- files ------------------------------------------------------------- */

#define WAL_DIR             "wal"
#define WAL_SEGMENT_BYTES   (64u << 20)    /* a new segment once one passes this */
#define WAL_MAX_FIRST_LSN   (1ull << 62)   /* a segment header past it is corrupt: LSNs never wrap */

/* DIR/wal/<first LSN as 16 hex digits>.wal */
void   wal_segment_path(char *out, size_t n, const char *dir, uint64_t first_lsn);
/* 1 and *lsn if name is a segment's exactly as wal_segment_path spells it
** (16 lower-case hex digits), followed by suffix (".wal", ".wal.tmp"); else
** 0. Another spelling of a number (a sign, "0x", capitals) would list a
** segment that no path reaches. */
int    wal_segment_name(const char *name, const char *suffix, uint64_t *lsn);
/* The first LSNs of the segments in DIR/wal, ascending (malloc'ed, *n of
** them; NULL with *n = 0 if none). SOCHDB_OK, SOCHDB_IO or SOCHDB_NOMEM. */
int    wal_list_segments(const char *dir, uint64_t **lsns, size_t *n);

/* Files of removed segments kept for reuse (see the file's header), named
** as their segment was with this suffix: DIR/wal/<LSN>.free. A replay
** never reads them. */
#define WAL_FREE_SUFFIX ".free"
#define WAL_FREE_MAX    4   /* the most the daemon keeps, and only while the disk has room to spare */
void   wal_free_path(char *out, size_t n, const char *dir, uint64_t lsn);
/* wal_list_segments of the files kept for reuse. */
int    wal_list_free(const char *dir, uint64_t **lsns, size_t *n);
/* wal_list_segments of segments not yet renamed into place (<LSN>.wal.tmp:
** daemon/walwriter.c, create_segment), which a replay never reads. */
int    wal_list_tmp(const char *dir, uint64_t **lsns, size_t *n);

/* ---- writing ---------------------------------------------------------- */

void   wal_seg_header_init(struct wal_seg_header *h, uint64_t first_lsn, const uint8_t db_id[16],
                           uint64_t created_unix_ns);
/* Recompute the header's checksum after changing a field (init does it). */
void   wal_seg_header_seal(struct wal_seg_header *h);
/* The seed of a sealed header's groups' checksums (see the file's header):
** its checksum for version 2, 0 for version 1. */
uint64_t wal_seg_salt(const struct wal_seg_header *h);

/* Bytes a record with these operations takes (8-aligned), or 0 if it would
** exceed the format's 4 GiB record limit. */
size_t wal_record_bytes(unsigned nops, uint64_t key_and_value_bytes);

/* Encode a record into buf (wal_record_bytes() long, zeroed padding):
** call begin, then add each op, then finish. */
void   wal_record_begin(uint8_t *buf, size_t bytes, unsigned type, uint64_t seq, unsigned nops);
size_t wal_record_add_op(uint8_t *buf, size_t pos, unsigned kind, const void *key, uint32_t klen,
                         const void *val, uint32_t vlen);
void   wal_record_finish(uint8_t *buf);

/* The header of a group whose records (payload) are already in place, in
** the segment whose salt (wal_seg_salt) is given. */
void   wal_group_header_init(struct wal_group_header *g, uint64_t salt, uint64_t first_lsn, const uint8_t *payload,
                             uint32_t payload_bytes);

/* ---- reading ---------------------------------------------------------- */

/* The oldest segment (path) follows commit prev_seq, and the SSTables hold
** commits through flushed < prev_seq: what recovery and sochdb check say,
** into out. */
void wal_gap_message(char *out, size_t n, const char *path, uint64_t prev_seq, uint64_t flushed);

/* Whether commit record rec may follow commit `after` in the log (the
** newest one before it above the last flushed seq, or that seq): the
** writer logs commits in seq order, each a seq a version can hold.
** SOCHDB_OK, or SOCHDB_CORRUPT with why: the replay refuses such a log,
** and sochdb check reports it. */
int wal_commit_follows(const struct wal_record *rec, uint64_t after);

/* What the MANIFEST says the log holds, and what the log read held. */
struct wal_promise {
  size_t   nsegments;   /* the log's segments */
  uint64_t flushed;     /* the MANIFEST's last_flushed_seq */
  size_t   nfiles;      /* its live files */
  uint64_t sst_max;     /* the newest commit one of them holds (0: none), */
  uint64_t sst_file;    /* in this file */
  uint64_t log_newest;  /* the newest commit the log held */
};

/* What the MANIFEST proves the log still holds, for the replay and sochdb
** check alike. The flusher writes a table only once the log holds its
** commits durably, and never removes the newest segment. So SOCHDB_CORRUPT,
** with why, if there is no segment while the MANIFEST records a flush
** (flushed > 0, or live files), or if the log's newest commit (or flushed,
** if that is more) is below sst_max: a durable group is damaged or gone,
** and taking it for a torn tail would lose it (and hand its seq out again
** beside the SSTable's copy). SOCHDB_OK otherwise. */
int wal_check_reaches(const struct wal_promise *p);

/* The next op of a record: pos starts at 0. Returns 1 with *op filled, 0 at
** the end. The record was verified by the scanner, so ops are in bounds. */
int    wal_op_next(const struct wal_record *rec, size_t *pos, struct wal_op *op);

struct wal_scan_result {
  uint64_t first_lsn;         /* from the segment header */
  uint64_t prev_seq;          /* from the segment header (struct wal_seg_header) */
  unsigned version;           /* from the segment header: 2 may be a reused file */
  uint64_t salt;              /* its groups' (wal_seg_salt) */
  uint64_t next_lsn;          /* LSN after the last whole group */
  uint64_t end_offset;        /* file offset after the last whole group: where to append */
  uint64_t last_group;        /* file offset of the last whole group (0: none) */
  int      resumed;           /* wal_scan_buffer_from began at a resume point */
  uint64_t groups;
  uint64_t records;
  uint64_t torn_bytes;        /* bytes from end_offset to the end, not all zeros: a torn tail, or (version
                              ** 2) what an earlier use of the file left there; never a group of this segment */
  int      torn_write;        /* they are known to be an interrupted write of this segment: any of them in
                              ** version 1; in version 2 (a file perhaps reused) only where they begin with the
                              ** header of the group expected next. Recovery calls it damage in a segment that
                              ** is not the last, sochdb check warns of it in the last */
};

/* Called for each record of each whole group, in order; a non-zero return
** stops the scan and is returned by wal_scan_buffer. */
typedef int (*wal_record_fn)(void *ctx, const struct wal_record *rec);

/* Scan a segment held in memory. db_id NULL = do not check it.
** Returns SOCHDB_OK (a torn tail is OK: see torn_bytes), SOCHDB_CORRUPT
** (damaged header, or a damaged group followed by an intact one, or an
** intact group whose records do not parse), SOCHDB_VERSION, or fn's value. */
int    wal_scan_buffer(const uint8_t *buf, size_t len, const uint8_t *db_id, wal_record_fn fn, void *ctx,
                       struct wal_scan_result *out);

/* Where a scan may begin past a segment's first group: after a group
** already read whole (the daemon's note of where the log ends,
** shm/durable.h), so that only what came after it is read again. */
struct wal_resume {
  uint64_t last_group;        /* file offset of that group */
  uint64_t end_offset;        /* file offset after it */
  uint64_t next_lsn;          /* the LSN after it */
};

/* wal_scan_buffer from `from` on (NULL: the whole segment; fd as for
** wal_scan_buffer_ahead): fn sees only
** the records after it, and out counts only those groups. The resume point
** is a claim that the bytes before end_offset were made durable, and it is
** checked against the buffer first: at last_group there must be a group
** whose header is intact, that ends at end_offset and whose records end at
** next_lsn. If not, durable data is damaged or missing: SOCHDB_CORRUPT (a
** whole scan would take a damaged last group for a torn tail and drop
** acknowledged commits). The groups before last_group are trusted: a damaged
** byte among them goes unseen here (sochdb check and a replay read them). */
int    wal_scan_buffer_from(const uint8_t *buf, size_t len, int fd, const uint8_t *db_id,
                            const struct wal_resume *from, wal_record_fn fn, void *ctx, struct wal_scan_result *out);

/* Verifying ahead: a helper thread computes the groups' payload checksums
** (most of a scan's reading) while the scan parses the groups behind it.
** Positions are wal_ahead_pos(segment's index among those scanned, file
** offset). Zero-initialise; the helper calls wal_verify_ahead for each
** segment in order, the scan wal_scan_buffer_ahead. A group the helper has
** not reached is verified by the scan itself, and the helper skips what the
** scan has passed, so the scan never waits for the helper. Neither may be
** given a buffer someone writes meanwhile. */
#define WAL_AHEAD_SLOTS 4u
struct wal_ahead {
  /* Segment seg's progress, in slot seg % WAL_AHEAD_SLOTS: a position in
  ** seg before which the groups, from where the helper began or last
  ** skipped to, are intact (a position in another segment says nothing of
  ** seg's: the helper may have stopped at damage in seg and gone on) */
  _Atomic uint64_t verified[WAL_AHEAD_SLOTS];
  _Atomic uint64_t scanned;   /* where the scan is: a group's start */
  _Atomic int      stop;      /* set by the scan's owner: the helper returns */
};

#define WAL_AHEAD_OFFSET_BITS 40   /* segments are far smaller than 1 TiB */
#define WAL_AHEAD_OFFSET_MASK ((1ull << WAL_AHEAD_OFFSET_BITS) - 1)
static inline uint64_t wal_ahead_pos(uint32_t seg, uint64_t off)
{ return (uint64_t)seg << WAL_AHEAD_OFFSET_BITS | off; }

/* The helper's part for segment number seg: verify its groups from the
** start, publishing each intact one in a->verified; returns at the first
** group that is not intact (the scan judges it), at the end, when the scan
** is past the segment, or when a->stop is set. First waits (sleeping)
** while the scan is WAL_AHEAD_SLOTS segments or more behind seg, whose
** slot it would otherwise take. */
void   wal_verify_ahead(struct wal_ahead *a, uint32_t seg, const uint8_t *buf, size_t len);

/* wal_scan_buffer of segment number seg, skipping the payload checksums of
** the groups `ahead` says are verified, and publishing its progress there.
** fd: the segment's file open for reading, or -1. With it, whether what
** follows the last group is zeros (a clean end) is read through the file
** instead of the mapping: a copy costs less there than the first touch of
** each mapped page. */
int    wal_scan_buffer_ahead(const uint8_t *buf, size_t len, int fd, const uint8_t *db_id, wal_record_fn fn,
                             void *ctx, struct wal_scan_result *out, struct wal_ahead *ahead, uint32_t seg);

/* Map a segment read-only (*len 0 and a valid *buf for an empty file); undo
** with wal_unmap_segment, also after a failure. *fd: the segment open for
** reading (the scans' tail check), for the caller to close; -1 after a
** failure. SOCHDB_IO on a failed system call. */
int    wal_map_segment(const char *path, const uint8_t **buf, size_t *len, int *fd);
void   wal_unmap_segment(const uint8_t *buf, size_t len);

/* The same for a file (mapped read-only while scanning). SOCHDB_IO on a failed system call. */
int    wal_scan_file(const char *path, const uint8_t *db_id, wal_record_fn fn, void *ctx,
                     struct wal_scan_result *out);
/* wal_scan_buffer_from of a file; from NULL: the whole file. */
int    wal_scan_file_from(const char *path, const uint8_t *db_id, const struct wal_resume *from, wal_record_fn fn,
                          void *ctx, struct wal_scan_result *out);

#endif
