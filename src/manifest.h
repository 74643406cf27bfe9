/*
** manifest.h — the MANIFEST (the edit log of which SSTable files are live,
** plus last_flushed_seq and next_file_number) and the CURRENT file naming it.
**
** Files in the database directory DIR:
**   DIR/MANIFEST-<number, at least 6 decimal digits>   the edit log
**   DIR/CURRENT   "MANIFEST-000001\n": the name of the live MANIFEST
**
** A MANIFEST is a 40-byte header followed by records. Everything is
** little-endian and 8-byte aligned.
**
**   header:  [ magic "SOCHMAN\0" 8 B | version u32 | 0 u32 | db_id 16 B | xxh3 u64 ]
**            (the checksum covers the 32 bytes before it)
**   record:  [ payload bytes u32 | 0 u32 | xxh3 u64 | payload | zeros to 8 ]
**            (the checksum covers the payload and is seeded with the record's
**            file offset and length, so a copy of a record elsewhere never
**            reads as intact)
**   payload: an encoded edit:
**            [ flags u32 | nadd u32 | ndel u32 | 0 u32 | last_flushed_seq u64 | next_file_number u64 ]
**            flags: bit 0 = last_flushed_seq set, bit 1 = next_file_number set
**            nadd times: [ level u32 | smallest_len u32 | largest_len u32 | 0 u32 |
**                          number u64 | size u64 | min_seq u64 | max_seq u64 |
**                          smallest | largest | zeros to 8 ]
**            ndel times: [ level u32 | 0 u32 | number u64 ]
**
** The first record of every MANIFEST is a snapshot of the whole state: an
** edit adding every live file and setting both numbers.
**
** Durability: a MANIFEST or CURRENT appears under its name only complete
** (NAME.tmp, fdatasync, rename, fsync of DIR); an appended record counts only
** after its fdatasync. A record N+1 is written only after record N's
** fdatasync returned, so, like the WAL: a damaged last record with nothing
** intact after it is a write a crash interrupted (cut off on open); a damaged
** record followed by an intact one is corruption (SOCHDB_CORRUPT).
**
** Not thread-safe: one thread at a time per struct manifest and state.
*/
#ifndef SOCHDB_MANIFEST_H
#define SOCHDB_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define MANIFEST_VERSION       1u
#define MANIFEST_LEVELS        8u
#define MANIFEST_HEADER        40u
#define MANIFEST_RECORD_HEADER 16u
#define MANIFEST_MAX_KEY       4096u
#define MANIFEST_MAX_SEQ       ((1ull << 62) - 1)   /* MV_MAX_SEQ (shm/mvcc.h): no commit is later */

/* One live SSTable file. Keys are malloc'ed copies owned by whatever holds
** the struct (a state or an edit). */
struct manifest_file {
  uint64_t number;
  uint64_t size;
  uint8_t *smallest;      /* smallest user key, 1..MANIFEST_MAX_KEY bytes */
  uint32_t smallest_len;
  uint8_t *largest;       /* largest user key */
  uint32_t largest_len;
  uint64_t min_seq, max_seq;
};

struct manifest_level {
  struct manifest_file *files;   /* in the order they were added */
  size_t n, cap;
};

struct manifest_state {
  struct manifest_level levels[MANIFEST_LEVELS];
  uint64_t last_flushed_seq;     /* every commit at or below it is in SSTables */
  uint64_t next_file_number;
};

struct manifest_edit_add {
  unsigned level;
  struct manifest_file file;     /* keys owned by the edit */
};

struct manifest_edit_del {
  unsigned level;
  uint64_t number;
};

/* An edit: zero-initialise it (or manifest_edit_init), fill it with the
** helpers below, free it with manifest_edit_free. Applied as a whole:
** deletes first, then adds, then the numbers. A file may be deleted and
** added again (another level) in the same edit. */
struct manifest_edit {
  struct manifest_edit_add *adds;
  size_t nadds, cap_adds;
  struct manifest_edit_del *dels;
  size_t ndels, cap_dels;
  int has_flushed;
  uint64_t last_flushed_seq;
  int has_next_file;
  uint64_t next_file_number;
};

struct manifest;   /* an open MANIFEST being appended to */

/* ---- state and edits ------------------------------------------------------ */

/* An empty state (no files, both numbers 0). */
void manifest_state_init(struct manifest_state *s);
/* Free every file's keys and the level arrays; leaves an empty state. NULL ok. */
void manifest_state_free(struct manifest_state *s);

/* File `number` at `level` of s, or NULL if it is not live there (or level
** is out of range). The pointer is valid until s changes. */
const struct manifest_file *manifest_state_file(const struct manifest_state *s, unsigned level, uint64_t number);
/* The live file holding the newest commit of s (its max_seq), NULL if s
** has none; *nfiles: how many live files s has. */
const struct manifest_file *manifest_state_newest(const struct manifest_state *s, size_t *nfiles);
/* The sum of lv's file sizes, saturating at UINT64_MAX: sizes come from the MANIFEST, and a
** forged one must not wrap a level's size to "nearly empty" (it would never be compacted). */
uint64_t manifest_level_bytes(const struct manifest_level *lv);
void manifest_edit_init(struct manifest_edit *e);
/* Free what the edit owns; leaves it empty (reusable). NULL ok. */
void manifest_edit_free(struct manifest_edit *e);

/* Add a file at level: f's fields are copied, its keys into new malloc'ed
** copies (f stays the caller's). Errors: SOCHDB_INVALID (NULL, level >=
** MANIFEST_LEVELS, a key of length 0 or above MANIFEST_MAX_KEY),
** SOCHDB_NOMEM. On error the edit is unchanged. */
int  manifest_edit_add_file(struct manifest_edit *e, unsigned level, const struct manifest_file *f);
/* Delete file `number` from level. Errors: SOCHDB_INVALID (NULL, bad level), SOCHDB_NOMEM. */
int  manifest_edit_delete_file(struct manifest_edit *e, unsigned level, uint64_t number);
void manifest_edit_set_flushed(struct manifest_edit *e, uint64_t last_flushed_seq);
void manifest_edit_set_next_file(struct manifest_edit *e, uint64_t next_file_number);

/* ---- MANIFEST files ------------------------------------------------------- */

/* Create DIR/MANIFEST-000001 holding an empty state, then DIR/CURRENT naming
** it, and open it for appending (*m, to be closed with manifest_close).
** An existing MANIFEST-000001 or CURRENT is replaced: call it only for a new
** database. Errors: SOCHDB_INVALID (NULL argument, dir path too long),
** SOCHDB_IO (a system call failed, errno kept), SOCHDB_NOMEM. *m is NULL on error. */
int  manifest_create(const char *dir, const uint8_t db_id[16], struct manifest **m);

/* Read DIR/CURRENT, replay the MANIFEST it names into *state (initialised
** here; the caller frees it with manifest_state_free, also on error it is
** left empty), and open that MANIFEST for appending after its last whole
** record. A torn last record (and any zeros after it) is cut off the file,
** and what is kept is made durable (fdatasync, and the directory's fsync)
** before this returns: a predecessor killed before its fdatasync may have
** left records only the page cache holds, and the caller acts on them.
** Errors: SOCHDB_NOTFOUND (no CURRENT and no SSTable: a new database),
** SOCHDB_CORRUPT (SSTables but no CURRENT, CURRENT malformed,
** the MANIFEST it names missing, a damaged header, another db_id, a damaged
** record followed by an intact one, an intact record that does not parse or
** does not apply to the state), SOCHDB_VERSION (another format version),
** SOCHDB_IO, SOCHDB_NOMEM, SOCHDB_INVALID (NULL argument). *m is NULL on error. */
int  manifest_open(const char *dir, const uint8_t db_id[16], struct manifest **m,
                   struct manifest_state *state);

/* The same replay, read-only: nothing is opened for writing, truncated or
** created (safe while another process appends to the MANIFEST). *torn_tail
** (may be NULL) is set to 1 when bytes follow the last whole record (a torn
** last record, or zeros, that manifest_open would cut off), else 0. Errors
** as manifest_open; *state is left empty on error. */
int  manifest_read(const char *dir, const uint8_t db_id[16], struct manifest_state *state, int *torn_tail);

/* Check edit against state, append it as one record, fdatasync, then apply
** it to state. The edit stays the caller's. On any error state is unchanged
** and nothing was appended (a partial append is truncated away).
** Errors: SOCHDB_CORRUPT (the edit is inconsistent with the state: deleting
** a file that is not live, adding one that is, last_flushed_seq or
** next_file_number going backwards), SOCHDB_INVALID (NULL, edit too large),
** SOCHDB_NOMEM, SOCHDB_IO (the write or fdatasync failed: the handle is then
** unusable, every later call returns SOCHDB_IO; reopen to go on). */
int  manifest_apply(struct manifest *m, struct manifest_state *state, const struct manifest_edit *edit);

/* Whether a failed write or fdatasync made m unusable (manifest_apply). */
int  manifest_failed(const struct manifest *m);

/* Write MANIFEST-<number + 1> holding a snapshot of state (via .tmp, fdatasync,
** rename, fsync dir), switch CURRENT to it the same way, then remove the old
** MANIFEST (best effort) and append to the new one from now on. A crash at
** any point leaves CURRENT naming either the old or the new file, each
** complete. Errors: SOCHDB_INVALID, SOCHDB_NOMEM, SOCHDB_IO (before CURRENT
** was switched the handle stays on the old file and usable; after, it is
** unusable, reopen). */
int  manifest_rewrite(struct manifest *m, const struct manifest_state *state);

/* The number of the MANIFEST being appended to (1 after create). */
uint64_t manifest_number(const struct manifest *m);
/* The bytes of the live MANIFEST's whole records (its header included). */
uint64_t manifest_bytes(const struct manifest *m);

/* Close the file and free the handle. NULL ok. */
void manifest_close(struct manifest *m);

#endif
