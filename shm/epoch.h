/*
** epoch.h — cross-process reclamation: when may the daemon reuse a memtable
** arena or a live-file list, or unlink an SSTable, that some transaction of
** some process may still be reading?
**
** Two mechanisms, each fitted to how long its readers hold on.
**
** Views: hazards. A transaction reads the memtables that were live when it
** began, for as long as it lives (a snapshot may be kept for hours), and the
** file list current at its first read of SSTables, only while its process
** maps that list's files (src/tables.c). Each transaction entry names
** exactly what it holds: a bitmask of memtables (view_memtables) and one
** file list (view_files). The
** reader publishes the hazard, then checks that the object is still live;
** the daemon unpublishes the object, then scans every hazard. Both sides are
** seq_cst (store-then-check), so either the daemon sees the hazard, or the
** reader sees the object gone and takes a newer one. A long snapshot
** therefore pins only what it really reads, never what was retired after it
** began.
**
** Commits: epochs. A commit writes into the active memtable and checks the
** other live ones for conflicts, for microseconds. It records the global
** epoch it saw in commit_epoch while it does. The daemon unpublishes an
** object, bumps the epoch (epoch_retire) and tags the object with the value
** before the bump; the object is free of commits once epoch_oldest_commit()
** is above the tag.
**
** A process that dies holding either has its entries cleared by the reaper
** (slots.c), so the dead never pin anything for long.
*/
#ifndef SOCHDB_SHM_EPOCH_H
#define SOCHDB_SHM_EPOCH_H

#include "region.h"
#include "slots.h"

/* ---- what ThreadSanitizer cannot see ---- */

/* An arena (or list) is reused only after every reader left it, but the
** reclaimer that decides so is sochdbd, another process: ThreadSanitizer
** sees no order from a thread that read the old contents here to one that
** writes the new ones, and reports a race (test_iter did, once). Under TSan
** every release of a hold (epoch_leave, hazard_clear, hazard_drop_memtables)
** is a release on one process-wide object, and epoch_reuse_begins, called
** by whoever claims reclaimed memory, acquires it: the order the protocol
** gives, said so that TSan sees it. Nothing at all elsewhere. */
#if defined(__SANITIZE_THREAD__)
void     epoch_reuse_begins(void);
#else
static inline void epoch_reuse_begins(void) {}
#endif

/* ---- commit epochs ---- */

/* Hold the current epoch in *slot (one's own commit_epoch). */
void     epoch_enter(shm_region *r, _Atomic uint64_t *slot);
void     epoch_leave(_Atomic uint64_t *slot);

/* Reclaimer: call after unpublishing; returns the tag for what was just
** unpublished. */
uint64_t epoch_retire(shm_region *r);

/* The oldest epoch held by a commit in progress; UINT64_MAX if none. An
** object tagged T is free of commits when T < the result. */
uint64_t epoch_oldest_commit(shm_region *r);

/* ---- view hazards ---- */

/* Reader: publish a hazard word (a store, then a seq_cst fence so that the
** loads of the re-check that follows are ordered after it against the
** reclaimer's seq_cst unpublishing store and scan). */
void     hazard_publish(_Atomic uint64_t *hazard, uint64_t value);

/* The transaction's view is gone (release: every read of what it named
** happens-before the clear). */
void     hazard_clear(struct shm_txn_entry *e);

/* ... its memtables only: a committer that waits for room, whose commit
** ends the transaction, must not keep the arenas it waits for (txn.c). */
void     hazard_drop_memtables(struct shm_txn_entry *e);

/* Reclaimer, after unpublishing: the union of every entry's memtable bits,
** and the set of file lists (bit i = list i) some view still reads. */
uint64_t hazard_memtables(shm_region *r);
uint64_t hazard_file_lists(shm_region *r);

#endif
