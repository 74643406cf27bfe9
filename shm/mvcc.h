/*
** mvcc.h — version chains: the multi-version history of each key inside a
** memtable, newest first, and the rules that decide what a snapshot sees.
**
** A version is created by a committing transaction as an intent: its state
** word names its transaction's commit descriptor (slots.h), tagged
** MV_PENDING. Once the descriptor is decided, the version is stamped: the
** same word becomes its commit seq (or MV_ABORTED), in one store, so a
** reader loads one word and knows which it holds. A reader with snapshot S
** sees the newest version whose commit seq is <= S; an unstamped version is
** resolved through its descriptor, guarded by the descriptor's generation
** against reuse.
**
** A new version is only ever pushed on top of a chain whose newest live
** (non-aborted) version is decided; so at most one intent is pending per
** chain, committed versions are in decreasing seq order, and
** first-committer-wins is checked against that newest version.
*/
#ifndef SOCHDB_SHM_MVCC_H
#define SOCHDB_SHM_MVCC_H

#include "region.h"

#include <stddef.h>
#include <string.h>

#define MV_ABORTED   UINT64_MAX
/* Bit 63 with bit 62 clear: a pending version's state word, txn_ref in the
** low bits (txn_ref uses 56). Commit seqs stay below 2^62. */
#define MV_PENDING   (1ull << 63)
#define MV_MAX_SEQ   ((1ull << 62) - 1)   /* the largest commit seq a version can hold */
#define MV_TOMBSTONE (1u << 31)    /* in len_flags: a delete, no value */

/* 20 bytes before the value: for 100-byte values a version is 120 bytes,
** 8-aligned with no padding (layout version 8; it was 48 + 100 -> 152). */
struct mv_version {
  _Atomic uint64_t state;     /* MV_PENDING | txn_ref, then the commit seq or MV_ABORTED */
  shm_ref  older;             /* next older version of this key in this memtable */
  shm_ref  node;              /* its key's skiplist node (the WAL writer reads the key there) */
  uint32_t len_flags;         /* value length (< 2^31), MV_TOMBSTONE */
  uint8_t  value[];
};

/* offsetof, not sizeof: sizeof rounds up to the 8-byte alignment of state */
static inline uint64_t mv_version_bytes(uint64_t vlen) { return offsetof(struct mv_version, value) + vlen; }
_Static_assert(offsetof(struct mv_version, value) == 20, "a version's header is 20 bytes");
static inline uint32_t mv_vlen(const struct mv_version *v) { return v->len_flags & ~MV_TOMBSTONE; }
static inline int      mv_is_tombstone(const struct mv_version *v) { return (v->len_flags & MV_TOMBSTONE) != 0; }
static inline uint64_t mv_pending_state(uint64_t txn_ref) { return MV_PENDING | txn_ref; }
static inline int      mv_state_is_pending(uint64_t w) { return (w >> 62) == 2; }

/* Lay out a version at v: state word, node (offset), value; no older
** version yet (mv_install links it). Relaxed: published by the install. */
static inline void mv_version_fill(const shm_region *r, struct mv_version *v, uint64_t state, uint64_t node,
                                   const void *val, uint32_t vlen, int tombstone)
{
  atomic_init(&v->state, state);
  v->older = 0;
  v->node = shm_off_ref(r, node);
  v->len_flags = vlen | (tombstone ? MV_TOMBSTONE : 0);
  if (vlen)
    memcpy(v->value, val, vlen);
}

/* The txn_ref a pending version names (read from its state word: 0 once stamped). */
static inline uint64_t mv_pending_txn(const struct mv_version *v)
{
  /* relaxed: the caller only uses it to find a slot to reap or wait for */
  uint64_t w = atomic_load_explicit(&v->state, memory_order_relaxed);
  return mv_state_is_pending(w) ? w & ~MV_PENDING : 0;
}

/* What a version's state is right now: MV_ABORTED, 0 (pending), or its commit seq. */
uint64_t mv_resolve(const shm_region *r, const struct mv_version *v);

/* The newest version of node visible at snapshot, or NULL. */
const struct mv_version *mv_visible(const shm_region *r, uint64_t node, uint64_t snapshot);

/* The newest non-aborted version of node (its state in *state), or NULL. */
const struct mv_version *mv_newest_live(const shm_region *r, uint64_t node, uint64_t *state);

enum mv_install_result { MV_INSTALLED, MV_CONFLICT, MV_BLOCKED };

/* Push version v (offset) on node's chain for a transaction with `snapshot`.
** MV_CONFLICT: a newer commit exists (its seq in *other). MV_BLOCKED: another
** transaction's intent is pending on top (its owner slot in *other). */
enum mv_install_result mv_install(shm_region *r, uint64_t node, uint64_t v, uint64_t snapshot,
                                  uint64_t *other);

#endif
