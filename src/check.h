/*
** check.h — offline verification of a database directory (`sochdb check`),
** read-only, and the naming of SSTable files.
**
** What is verified: DIR/sochdb.id (16 bytes); CURRENT and the MANIFEST it
** names (header, every record's checksum, replay); every live SSTable (it
** exists, has the size the MANIFEST records, footer/filter/index checksums,
** every data block's checksum by iterating every entry, the entry count the
** footer states, keys within the MANIFEST's smallest..largest, strict
** internal-key order, each block ending on its index key, seqs within the
** footer's range); every WAL segment (header, name, every group and record
** checksum, LSN continuity from one segment to the next).
**
** Findings are sorted in two kinds:
**   damaged  — data is lost or unreadable: a checksum mismatch, a live SSTable
**              missing, truncated or of another size than recorded, damage in
**              the MANIFEST or WAL followed by intact data, a torn tail in a
**              WAL segment that is not the last, a gap between segments;
**   warnings — harmless: an orphan .sst file the MANIFEST does not list, a
**              torn tail of the newest WAL segment or of the MANIFEST (a write
**              a crash interrupted, never acknowledged), a live file that
**              vanished because a compaction removed it meanwhile.
**
** Safe while the database is in use: files are only read (SSTables and the
** closed WAL segments through a read-only mmap: they never change once
** named or closed; the newest segment and the MANIFEST copied with read(),
** since they grow, or are cut back, meanwhile), nothing is locked or
** written. What the daemon removes or moves on meanwhile (segments a flush
** covered, tables a compaction replaced) is judged by the MANIFEST as it
** is when the check looks again, never reported as damage.
*/
#ifndef SOCHDB_CHECK_H
#define SOCHDB_CHECK_H

#include <stddef.h>
#include <stdint.h>


struct check_callbacks {
  /* One damaged or odd thing found: file is a path (or the directory). It
  ** has been counted in the summary (damaged or warnings) when this is called. */
  void (*problem)(void *ctx, const char *file, const char *what);
  /* bytes_done of bytes_total verified so far (bytes_total may grow a little
  ** if files grow while they are checked). */
  void (*progress)(void *ctx, uint64_t bytes_done, uint64_t bytes_total);
  void *ctx;
};

struct check_summary {
  uint64_t files_checked, bytes_checked, sst_files, sst_entries, wal_segments, wal_records;
  uint64_t damaged;      /* problems that mean data is lost or unreadable */
  uint64_t warnings;     /* harmless oddities: orphan .sst files not in the manifest, a torn WAL/MANIFEST tail */
};

/* Verify a database directory read-only (see above). cb may be NULL, and so
** may either callback. Calls problem() for each finding (counted in
** out->damaged or out->warnings) and progress() as bytes are verified.
** Returns SOCHDB_OK when it could run, even if damage was found (see
** out->damaged); SOCHDB_NOTFOUND when DIR or DIR/sochdb.id does not exist,
** SOCHDB_INVALID when DIR is not a directory or an argument is NULL,
** SOCHDB_IO when DIR cannot be read, SOCHDB_NOMEM. */
int sdb_check_dir(const char *dir, const struct check_callbacks *cb, struct check_summary *out);

#endif
