/*
** epoch.h — cross-process epoch-based reclamation: when may the daemon reuse
** a memtable arena, a live-file list or unlink an SSTable that some
** transaction of some process may still be reading?
**
** The region holds one global epoch. A transaction records the epoch it saw
** when it took its view (txn_entry.view_epoch) and clears it when it ends; a
** commit does the same in commit_epoch while it writes into memtables. To
** retire an object, the daemon first unpublishes it (no new view can reach
** it), then bumps the epoch and tags the object with the epoch before the
** bump: the object may be reused once no entry holds an epoch at or below
** the tag. A process that dies holding an epoch has its entries cleared by
** the reaper, so the dead never pin anything for long.
**
** Ordering (store-then-check, both sides seq_cst): the reader stores its
** epoch, then reads the published objects; the reclaimer unpublishes, bumps,
** then reads the entries. Either the reclaimer sees the reader's epoch (and
** waits), or the reader's reads come after the unpublish (and never reach
** the object).
*/
#ifndef SOCHDB_SHM_EPOCH_H
#define SOCHDB_SHM_EPOCH_H

#include "region.h"
#include "slots.h"

/* Reader side: hold the current epoch in *slot (view_epoch or commit_epoch
** of one's own entry). Everything published when this returns is safe to
** read until epoch_leave. */
void     epoch_enter(shm_region *r, _Atomic uint64_t *slot);
void     epoch_leave(_Atomic uint64_t *slot);

/* Reclaimer side: call after unpublishing; returns the tag for the objects
** just unpublished. */
uint64_t epoch_retire(shm_region *r);

/* The oldest epoch held by any transaction view (which_commit = 0) or any
** commit in progress (which_commit = 1); UINT64_MAX if none. An object
** tagged T is free when T < the result. */
uint64_t epoch_oldest(shm_region *r, int which_commit);

#endif
