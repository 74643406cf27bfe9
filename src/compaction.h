/*
** compaction.h — leveled compaction as a pure library module: choosing what
** to compact from a MANIFEST state (the picker), and merging SSTables into
** new ones (the merge). No threads and no I/O of its own: the daemon maps the
** input files, hands their readers in, writes and syncs what emit receives,
** and records the result in the MANIFEST.
**
** Levels: L0 holds flushed memtables, whose key ranges may overlap; L1..L7
** hold files with disjoint key ranges, each level about level_ratio times the
** size of the one above. Keys compare like sstfmt's: memcmp, then the shorter
** first.
**
** Horizon: the oldest snapshot any reader may still use. For each user key a
** compaction keeps every version above the horizon and the newest at or
** below it (what a reader at the horizon sees), and drops the older ones; at
** the bottom (nothing deeper overlaps) that newest version is dropped too
** when it is a tombstone, since no deeper file has anything it could hide.
**
** Not thread-safe: one thread at a time per picker; compaction_run keeps all
** its state on its own and may run in several threads at once.
*/
#ifndef SOCHDB_COMPACTION_H
#define SOCHDB_COMPACTION_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "sstfmt.h"

#define COMPACTION_LEVELS     MANIFEST_LEVELS
#define COMPACTION_PROGRESS_BYTES (1u << 20)   /* progress is called about this often */

struct compaction_options {
  unsigned l0_trigger;          /* L0 files that start an L0->L1 compaction (default 4) */
  uint64_t l1_target_bytes;     /* target size of L1 (default 256 MiB) */
  unsigned level_ratio;         /* target(n+1) = target(n) * ratio (default 10) */
  uint64_t target_file_bytes;   /* output files are cut after about this much (default 64 MiB) */
  size_t   block_bytes;         /* data block payload target for sst_builder_init (0 = default) */
  /* Optional (NULL by default): called with each output's builder before
  ** its first entry, with compaction_run's ctx, to stream the output to its
  ** file (sst_builder_spill) instead of holding it; non-zero aborts the run. */
  int    (*begin_output)(void *ctx, struct sst_builder *b);
};
void compaction_options_default(struct compaction_options *o);

/* What to compact: input files of `level` and of `level + 1` (of the output
** level for a full compaction), output to output_level. */
struct compaction_job {
  unsigned level, output_level;
  uint64_t *inputs[2];          /* file numbers, malloc'ed (NULL when none) */
  size_t    ninputs[2];         /* [0] from level, [1] from the output level */
  int       bottommost;         /* no file deeper than output_level overlaps the inputs' key range */
  double    score;              /* the level's score when picked (0 for a full compaction) */
};
/* Free the input arrays; leaves an empty job. NULL ok. */
void compaction_job_free(struct compaction_job *j);

/* Round-robin state kept by the caller between picks: per level, the largest
** key of the file last picked there (malloc'ed). Zero-initialise it; free it
** with compaction_picker_free. */
struct compaction_picker {
  uint8_t *last_key[COMPACTION_LEVELS];
  uint32_t last_len[COMPACTION_LEVELS];
};
void compaction_picker_free(struct compaction_picker *p);

/* Choose the most urgent compaction. Scores: L0 = files / l0_trigger; Ln
** (n >= 1) = bytes / target(n), target(1) = l1_target_bytes, target(n+1) =
** target(n) * level_ratio. The highest score >= 1 wins:
**   L0: all L0 files + every L1 file overlapping their union range -> L1;
**   Ln: the first file (by smallest key) after the picker's last key at that
**       level, wrapping, + the overlapping L(n+1) files -> L(n+1); the picker
**       then remembers that file's largest key.
** The last level is never picked. Files in busy[0..nbusy) are being compacted
** already: a candidate that would include one is skipped (the next file of
** the level, or failing that the next level by score). o NULL = defaults.
** Returns 1 with *job filled (free it with compaction_job_free), 0 when
** nothing is due, or SOCHDB_INVALID (NULL s/p/job, busy NULL with nbusy > 0,
** l0_trigger, l1_target_bytes or level_ratio 0) / SOCHDB_NOMEM as a
** negative number; *job is empty unless 1 is returned. */
int compaction_pick(const struct manifest_state *s, const struct compaction_options *o,
                    struct compaction_picker *p, const uint64_t *busy, size_t nbusy, struct compaction_job *job);

/* target(level) in bytes for level >= 1, as above, saturating at UINT64_MAX
** (a level ratio of 1000 passes 2^64 by level 5). o must not be NULL. */
uint64_t compaction_level_target(const struct compaction_options *o, unsigned level);

/* A full compaction: every file of every level -> output level = the deepest
** non-empty level (at least 1), bottommost = 1, score 0. inputs[0] = all files
** of levels < output level (by level, then in the state's order), inputs[1] =
** the output level's files; job->level = the shallowest non-empty level.
** Returns 1 with *job, 0 if the database has no files, or -SOCHDB_INVALID /
** -SOCHDB_NOMEM. */
int compaction_pick_full(const struct manifest_state *s, struct compaction_job *job);

/* Whether job can be done by moving its inputs to the output level as they
** are, in a MANIFEST edit, without a merge (LevelDB's "trivial move"): it
** has inputs of its level only (no file of the output level overlaps them),
** and their key ranges are disjoint from one another, so the output level
** stays disjoint and no user key has versions in two of them. Sequential
** loads make such jobs. A move keeps every version and tombstone of the
** files; a later merge, or a full compaction, drops what the horizon allows.
** 0 for a full compaction's job (score 0: asked for to rewrite), a job of no
** inputs, or an input not live at the job's level in s. */
int compaction_job_moves(const struct manifest_state *s, const struct compaction_job *job);

struct compaction_stats {
  uint64_t bytes_read, bytes_written, entries_in, entries_out;
  uint64_t versions_dropped;    /* older than the newest version at or below the horizon */
  uint64_t tombstones_dropped;  /* newest at or below the horizon, a DEL, bottommost */
  uint64_t duplicates_dropped;  /* the same (key, seq) seen again in another input */
};

/* One finished output table, handed to emit. The callee owns buf (free())
** whatever it returns; the keys are valid only during the call. */
struct compaction_output {
  uint8_t       *buf;           /* the file, or its end if it was streamed (begin_output) */
  size_t         len;
  uint64_t       bytes;         /* the whole file: what was streamed, plus len */
  const uint8_t *smallest;
  uint32_t       smallest_len;
  const uint8_t *largest;
  uint32_t       largest_len;
  uint64_t       min_seq, max_seq, entries;
};

/* Merge the readers' entries (any number, any order; their key ranges may
** overlap, and the same (key, seq) may appear in several inputs: one copy is
** kept) into new SSTables, applying the horizon rules above:
**  - per user key: every version with seq > horizon, then the newest with
**    seq <= horizon, unless bottommost and it is a DEL; nothing older;
**  - an output is cut once it reaches about target_file_bytes, only between
**    two user keys (all versions of one key stay in one file), and emit is
**    called for each, in key order (never for an empty one);
**  - progress(ctx, bytes_read_so_far) is called each time about
**    COMPACTION_PROGRESS_BYTES more were read, and once at the end of the
**    input with the total (progress may be NULL); a non-zero return aborts
**    with that code: the caller rate-limits by sleeping inside it, and stops
**    a compaction by failing it.
** bytes_read is counted from the readers' file sizes (r->len), block by
** block, bytes_written from the outputs. o NULL = defaults; st may be NULL
** (it is zeroed first otherwise, and left with the counts so far on error).
** Returns SOCHDB_OK, or the first error: SOCHDB_CORRUPT (a damaged input),
** SOCHDB_NOMEM, SOCHDB_INVALID (NULL inputs with n > 0, a NULL reader, NULL
** emit, bad block_bytes), or emit's / progress's non-zero code. Outputs
** already emitted before an error are the caller's to discard. */
int compaction_run(const struct sst_reader *const *inputs, size_t n, uint64_t horizon, int bottommost,
                   const struct compaction_options *o,
                   int (*emit)(void *ctx, struct compaction_output *out),
                   int (*progress)(void *ctx, uint64_t bytes_read), void *ctx,
                   struct compaction_stats *st);

#endif
