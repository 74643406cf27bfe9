/*
** filelist.h — the live-SSTable lists in the region: which files every new
** transaction reads, published by the daemon, read by every process.
**
** The region holds FL_LISTS fixed-size lists. Exactly one is CURRENT
** (hdr->current_files). The daemon publishes a new set of files by filling a
** FREE list, marking it CURRENT, swinging current_files to it, then retiring
** the previous one with an epoch tag (epoch.h); a RETIRED list becomes FREE
** once no hazard names it. At its first read that needs SSTables (src/txn.c,
** sdb_txn_tables) a transaction takes its process's table of mapped files
** (src/tables.c), which keeps them until the transaction ends, whatever
** becomes of the list. When that table mirrors the current list's id
** (fl_current_id) no list is read at all; otherwise the current list is
** read under a hazard (view_files, epoch.h) held only while the process
** maps its files. Lists carry ids (increasing with each publication) for
** that comparison.
**
** Files are ordered as readers search them: level 0 newest first (higher
** file number first), then each deeper level by smallest key.
*/
#ifndef SOCHDB_SHM_FILELIST_H
#define SOCHDB_SHM_FILELIST_H

#include "region.h"

#define FL_MAX_FILES 2048u
#define FL_LISTS     16u   /* <= 64: hazards are a bitmask (epoch.h) */

enum { FL_FREE = 0, FL_CURRENT = 1, FL_RETIRED = 2, FL_BUILDING = 3 };

struct fl_file {
  uint64_t number;
  uint64_t size;
  uint32_t level;
  uint32_t pad;
};

struct fl_list {
  _Atomic uint64_t state;     /* FL_* */
  _Atomic uint64_t id;        /* immutable while CURRENT or RETIRED; read unprotected by fl_current_id */
  uint32_t nfiles;
  uint32_t pad;
  struct fl_file files[FL_MAX_FILES];
};

size_t fl_section_bytes(void);
void   fl_init(shm_region *r);

static inline struct fl_list *fl_list_at(const shm_region *r, uint32_t i)
{ return (struct fl_list *)shm_at(r, r->hdr->files_off) + i; }

/* The current list, protected by *hazard (a transaction entry's
** view_files) until the hazard is cleared. */
const struct fl_list *fl_protect(const shm_region *r, _Atomic uint64_t *hazard);

/* The id of the current list, or of one made current after it, read
** without a hazard (the list's contents may be rewritten meanwhile): for a
** process whose table of mapped files mirrors that id, which then needs no
** list at all. Ids of published lists only grow (a list that a killed
** daemon left BUILDING may hold one that is published later, elsewhere),
** and the id read is at least the one current_files held when loaded. */
uint64_t fl_current_id(const shm_region *r);

/* Daemon only (one thread at a time): publish files[0..n). SOCHDB_BUSY if
** no list is free (every other one is still read by an old snapshot),
** SOCHDB_INVALID if n > FL_MAX_FILES. */
int    fl_publish(shm_region *r, const struct fl_file *files, uint32_t n);

/* Wake the daemon's compactor, which sleeps on files_futex while it has
** nothing to do: fl_publish calls it, and so does whoever asks for a full
** compaction, after asking. */
void   fl_wake_compactor(shm_region *r);

/* Daemon only: retired lists no hazard names become free. At a daemon's
** start (at_start), lists a dead one left BUILDING become free, and a list
** left CURRENT that is not current_files (killed inside fl_publish) is
** retired, then freed the same way. */
void   fl_reclaim(shm_region *r, int at_start);

/* The live-file totals of sochdb_stats, for the list files[0..n). */
void   fl_set_totals(shm_region *r, const struct fl_file *files, uint32_t n);

/* Daemon only, after fl_reclaim: does any list but a FREE one name file
** `number`? Until none does, a reader may still open it. */
int    fl_names_file(const shm_region *r, uint64_t number);

#endif
