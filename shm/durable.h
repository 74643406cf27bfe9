/*
** durable.h — what is durable: the queue of commit records that the daemon's
** WAL writer turns into log groups, the durable sequence number, and the
** shared futexes that wake the writer and the SYNC committers.
**
** The memtable is the log buffer. A committer has already copied its values
** into the shared memtable, so it does not copy them again into a byte ring:
** it writes a small commit record (its seq and the offsets of its versions)
** into the arena and stores a reference to it (shm_ref) in rec_ring[seq % N]
** before it decides. The writer reads published commits in sequence order from
** there, encodes them, writes one group, fdatasyncs once, and publishes
** durable_seq. An aborted or abandoned sequence number (a dead committer the
** reaper rolled back) simply has no valid record: its versions are stamped
** aborted. So a committer killed anywhere leaves no hole in the log.
**
** rec_ring[s % N] must not be overwritten before the writer consumed s. A
** committer may therefore claim a sequence only while next_seq - durable_seq
** <= N - (the most committers that can be between that check and their
** claim, one per transaction entry): see durable_may_claim.
*/
#ifndef SOCHDB_SHM_DURABLE_H
#define SOCHDB_SHM_DURABLE_H

#include "region.h"

#include <assert.h>
#include <time.h>

/* The ring's entries (shm_header.rec_ring_entries): the largest power of
** two at most a 512th of the region (4 bytes an entry: a 128th of a region
** of 32 MiB or more), between these two. The writer falls behind in
** bursts, not on average: an fdatasync that waits behind a flush's
** writeback took 20-80 ms here, while one process commits 2.5M ASYNC puts
** a second. With 65,536 entries a fill_seq load waited for the log 14 to
** 24 times in a 2-s phase, sleeping 180-280 ms in all; with 262,144 (1 MiB,
** from a 128 MiB region up) it ran up to 208,572 commits ahead and went
** 10% and 22% faster in two sets of alternating rounds (README, group
** commit). A small region keeps its room for memtables. */
#define REC_RING_MIN_ENTRIES 65536u
#define REC_RING_MAX_ENTRIES 262144u
#define REC_RING_CLAIMERS    (256u * 128u)   /* slots x transaction entries */

/* The ring's entries (a power of two) in a region of region_bytes. */
uint32_t durable_ring_entries(uint64_t region_bytes);

/* How far next_seq may run ahead of durable_seq: the ring less the claims
** that can be between a check and its claim (durable_may_claim). */
static inline uint64_t durable_max_lag(const shm_region *r) { return r->hdr->rec_ring_entries - REC_RING_CLAIMERS; }

/* A transaction's commit record, in the arena: made with its first version,
** in the same memtable (src/txn.c, list_version, says why that keeps it), and
** named by its descriptor once that version is listed, so that whoever
** finishes the descriptor (the owner, or the reaper of a dead one) finds
** every version it may have installed; then read by the WAL writer. A
** version is listed (and nops raised, release) before it is in any chain. */
struct mv_commit {
  uint64_t seq;             /* 0 until claimed */
  _Atomic uint32_t nops;    /* versions listed so far: all of them, in key order, once claimed */
  uint32_t cap;             /* room for this many */
  shm_ref  versions[];
};

static inline uint64_t mv_commit_bytes(uint32_t cap) { return sizeof(struct mv_commit) + (uint64_t)cap * sizeof(shm_ref); }

static inline void mv_commit_init(struct mv_commit *c, uint32_t cap)
{
  c->seq = 0;
  c->cap = cap;
  atomic_init(&c->nops, 0);
}

/* List version voff in c, before it goes in any chain. Only the record's
** owner writes it. */
static inline void mv_commit_add(const shm_region *r, struct mv_commit *c, uint64_t voff)
{
  uint32_t n = atomic_load_explicit(&c->nops, memory_order_relaxed);
  assert(n < c->cap);   /* one version per write, and the record has room for every write */
  c->versions[n] = shm_off_ref(r, voff);
  /* release: listed before it is in any chain, so whoever finishes the
  ** descriptor (a reaper, once we are dead) finds every version it may
  ** have to stamp (slots_retire_descriptor acquires nops) */
  atomic_store_explicit(&c->nops, n + 1, memory_order_release);
}

size_t   durable_section_bytes(uint32_t entries);
void     durable_init(shm_region *r, uint64_t durable);

static inline uint64_t durable_seq(const shm_region *r)
{
  /* acquire: whoever sees seq s durable may rely on everything before it */
  return atomic_load_explicit(&r->hdr->durable_seq, memory_order_acquire);
}

/* May a committer claim a sequence now, without outrunning the writer? */
int      durable_may_claim(const shm_region *r);

/* Where the log's whole groups end (shm_log_end): what the WAL writer
** notes after each group it made durable, and the opener that rebuilt the
** region from the log notes where its scan ended; the next daemon reads it
** to scan only the groups after it (daemon/walwriter.c). Only one process
** writes it at a time: the daemon holding DIR/LOCK, or the opener
** rebuilding the region before anyone can see it. */
struct durable_log_end {
  uint64_t segment;           /* first LSN of the segment */
  uint64_t last_group;        /* file offset of its last group written whole */
  uint64_t end_offset;        /* file offset after that group */
  uint64_t next_lsn;          /* the LSN after it */
  uint64_t seq;               /* every commit in the segment up to end_offset is <= it */
  /* A lower bound for the next segment's prev_seq (walfmt.h): a commit that
  ** was logged whole before end_offset, or one the SSTables hold, 0 if none
  ** is known. Never an abandoned seq, which seq may be. */
  uint64_t logged_seq;
};

/* Writer: note e, after the groups it covers are durable and durable_seq
** is at least e->seq. */
void     durable_note_log_end(shm_region *r, const struct durable_log_end *e);
/* The note, if there is a whole one (1; 0: none, or torn by a writer killed
** while it wrote it). */
int      durable_log_end(const shm_region *r, struct durable_log_end *out);

/* Committer: record `commit` (an arena offset) for seq, before deciding. */
void     durable_set_record(shm_region *r, uint64_t seq, uint64_t commit);

/* Writer: the commit record of published seq s, or NULL if s carries no
** data (aborted, abandoned, or the slot was never written this lap). */
const struct mv_commit *durable_record(const shm_region *r, uint64_t seq);

/* Flusher: forget every record that points into [lo, hi) (a memtable arena
** about to be reused), so that a stale ring entry can never be read as a
** record again. */
void     durable_forget_range(shm_region *r, uint64_t lo, uint64_t hi);

/* Writer: seqs up to `seq` are on disk. Wakes the SYNC waiters of the seqs
** it moved over (and of any seq 32 apart from one of them). */
void     durable_publish(shm_region *r, uint64_t seq);

/* Committer: wake the writer (a SYNC commit wants to be written now),
** after publishing the commit. No system call while the writer is awake. */
void     durable_kick(shm_region *r);

/* ASYNC committer, once its commit is published: wake the writer only if it
** dozes. Otherwise the writer's next round (sync_delay_ms) writes the commit
** with the others of its group. A fence and a read, no system call, unless
** the writer dozes. Returns 1 if the writer is leaving (its daemon stops):
** then its last pass may have missed the commit, and the committer must see
** it durable or a successor started (src/txn.c). 0: the writer will write
** it, or has. */
int      durable_nudge(shm_region *r);

/* The kick word's bit that says the writer is leaving (bits 0 and 1 say it
** sleeps or dozes; kicks count in steps of 8 above them). */
#define DURABLE_WRITER_LEAVING 4u

/* Writer, once its daemon stops, before its last passes over the published
** commits: every commit published before a committer's durable_nudge that
** returns 0 is one those passes find. */
void     durable_writer_leaves(shm_region *r);

/* A new daemon's writer, before it serves: clears a bit a stopped (or
** killed) daemon left set. */
void     durable_writer_arrives(shm_region *r);

/* Writer: sleep until kicked or timeout_ms passed; not at all while
** published commits wait to be written. doze: the writer has been idle and
** sleeps long, so ASYNC commits wake it too (durable_nudge). Returns 1 if
** there is work or a kick came, 0 if the time ran out (or a signal came). */
int      durable_wait_kick(shm_region *r, unsigned timeout_ms, int doze);

/* Whether the writer dozes (or is about to): for tests. */
int      durable_writer_dozes(const shm_region *r);

/* *at = ms from now on CLOCK_MONOTONIC: the clock of durable_wait's
** deadline and of the commit path's waits (src/txn.c). */
void     durable_deadline(struct timespec *at, unsigned ms);

/* Committer: wait until durable_seq >= seq or timeout_ms passed. Returns 1
** when durable, 0 on timeout. */
int      durable_wait(shm_region *r, uint64_t seq, unsigned timeout_ms);

#endif
