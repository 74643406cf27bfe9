/*
** filelist.h — the live-SSTable lists in the region: which files every new
** transaction reads, published by the daemon, read by every process.
**
** The region holds FL_LISTS fixed-size lists. Exactly one is CURRENT
** (hdr->current_files). The daemon publishes a new set of files by filling a
** FREE list, marking it CURRENT, swinging current_files to it, then retiring
** the previous one with an epoch tag (epoch.h); a RETIRED list becomes FREE
** once no view taken before the swing remains. A transaction reads the
** current list once, at begin, under its view epoch: the list it read stays
** unchanged until the transaction ends. Lists carry ids (strictly
** increasing) so that a process can tell whether its own table of mapped
** files (src/tables.c) is still the current one without reading the list.
**
** Files are ordered as readers search them: level 0 newest first (higher
** file number first), then each deeper level by smallest key.
*/
#ifndef SOCHDB_SHM_FILELIST_H
#define SOCHDB_SHM_FILELIST_H

#include "region.h"

#define FL_MAX_FILES 2048u
#define FL_LISTS     8u

enum { FL_FREE = 0, FL_CURRENT = 1, FL_RETIRED = 2, FL_BUILDING = 3 };

struct fl_file {
  uint64_t number;
  uint64_t size;
  uint32_t level;
  uint32_t pad;
};

struct fl_list {
  _Atomic uint64_t state;     /* FL_* */
  _Atomic uint64_t retire_tag;
  uint64_t id;                /* immutable while CURRENT or RETIRED */
  uint32_t nfiles;
  uint32_t pad;
  struct fl_file files[FL_MAX_FILES];
};

size_t fl_section_bytes(void);
void   fl_init(shm_region *r);

static inline struct fl_list *fl_list_at(const shm_region *r, uint32_t i)
{ return (struct fl_list *)shm_at(r, r->hdr->files_off) + i; }

/* The current list (acquire: its contents were written before it was
** published). Call it under a view epoch. */
const struct fl_list *fl_current(const shm_region *r);

/* Daemon only (one thread at a time): publish files[0..n); *tag is the
** epoch tag of the list it replaced (a file only that list named may be
** unlinked once no view holds an epoch at or below it). SOCHDB_BUSY if
** every other list is still retired (long-lived snapshots), SOCHDB_INVALID
** if n > FL_MAX_FILES. */
int    fl_publish(shm_region *r, const struct fl_file *files, uint32_t n, uint64_t *tag);

/* Daemon only: retired lists whose tag is below oldest_view become free.
** Lists left BUILDING by a dead daemon become free too (at_start). */
void   fl_reclaim(shm_region *r, uint64_t oldest_view, int at_start);

#endif
