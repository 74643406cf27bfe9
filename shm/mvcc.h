/*
** mvcc.h — version chains: the multi-version history of each key inside a
** memtable, newest first, and the rules that decide what a snapshot sees.
**
** A version is created by a committing transaction as an intent: its seq is 0
** and it names its transaction's commit descriptor (slots.h). Once the
** descriptor is decided, the version is stamped with its commit seq (or
** MV_ABORTED). A reader with snapshot S sees the newest version whose commit
** seq is <= S; an unstamped version is resolved through its descriptor,
** guarded by the descriptor's generation against reuse.
**
** A new version is only ever pushed on top of a chain whose newest live
** (non-aborted) version is decided; so at most one intent is pending per
** chain, committed versions are in decreasing seq order, and
** first-committer-wins is checked against that newest version.
*/
#ifndef SOCHDB_SHM_MVCC_H
#define SOCHDB_SHM_MVCC_H

#include "region.h"

#define MV_ABORTED   UINT64_MAX
#define MV_TOMBSTONE 0x1u

struct mv_version {
  uint64_t older;             /* next older version of this key in this memtable */
  _Atomic uint64_t seq;       /* 0 = not yet stamped; MV_ABORTED; or the commit seq */
  uint64_t txn;               /* txn_ref of the commit descriptor */
  _Atomic uint64_t txn_next;  /* the same transaction's previously installed version */
  uint64_t node;              /* its key's skiplist node (the WAL writer reads the key there) */
  uint32_t vlen;
  uint32_t flags;             /* MV_TOMBSTONE */
  uint8_t  value[];
};

static inline uint64_t mv_version_bytes(uint64_t vlen) { return sizeof(struct mv_version) + vlen; }

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
