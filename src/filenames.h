/*
** filenames.h — the names of a database's table files: NNNNNN.sst spelled
** from a file number, and a directory entry's name read back as one (one
** canonical spelling, so that no other file is ever taken for a table).
** Used by the daemon's store, the MANIFEST, the transaction's file mapping,
** `sochdb check` and `sochdb destroy`.
*/
#ifndef SOCHDB_FILENAMES_H
#define SOCHDB_FILENAMES_H

#include <stddef.h>
#include <stdint.h>

/* DIR/<number as %06llu>.sst into out[0..n). SOCHDB_OK, or SOCHDB_INVALID
** when it does not fit (out then holds a truncated, NUL-terminated path). */
int sst_file_path(char *out, size_t n, const char *dir, uint64_t number);

/* 1 and *number if name is a table's file name exactly as sst_file_path
** spells it, followed by suffix (".sst", ".sst.tmp"); else 0. Another
** spelling ("-1.sst", " 7.sst", "0000007.sst", twenty nines) is not a table:
** taken for one it would name another file, or wrap the next file number. */
int sst_file_number(const char *name, const char *suffix, uint64_t *number);

/* The largest file number (tables, MANIFESTs): past it a name is not the
** database's, and a MANIFEST or CURRENT that names one is corrupt, so that
** next_file_number (+1 per file) can never wrap onto live tables' numbers. */
#define SDB_MAX_FILE_NUMBER (UINT64_MAX >> 1)

#endif
