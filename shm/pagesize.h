/*
** pagesize.h — how big the pages of the region's file are: whether the
** tmpfs that holds it gives 2 MiB pages or 4 KiB ones.
**
** Every process maps the region's pages itself, and the first touch of each
** page in each process is a page fault. With 4 KiB pages a writer faults
** once per 4 KiB it writes, the daemon again when it reads the memtable to
** log and flush it, and each reader again for every memtable page it
** visits. A tmpfs mounted with huge=within_size (or huge=always) gives the
** region 2 MiB pages, each mapped with one fault per process (README,
** "Huge pages"). Linux's /dev/shm is mounted without it by default, so the
** administrator chooses: a dedicated mount named by $SOCHDB_SHM_DIR, or
** /dev/shm remounted. huge=advise does not serve: the region's pages are
** reserved with fallocate, which no madvise reaches.
**
** This module only tells which case holds (for `sochdb stats` and the
** benchmark's header); nothing in the engine depends on it. Arenas start on
** 2 MiB boundaries and are 2 MiB multiples either way (region.c).
*/
#ifndef SOCHDB_SHM_PAGESIZE_H
#define SOCHDB_SHM_PAGESIZE_H

#include <stddef.h>
#include <stdint.h>

#define SHM_HUGE_PAGE_BYTES (2u << 20)

/* The page size the file at `path` (which need not exist yet: its directory
** decides) gets: SHM_HUGE_PAGE_BYTES or 4096. `why`, if not NULL, receives
** the reason in words, e.g. "tmpfs /dev/shm, huge=within_size". Where the
** mount table cannot be read, 4096 and a `why` that says so. */
uint64_t shm_page_bytes(const char *path, char *why, size_t n);

#endif
