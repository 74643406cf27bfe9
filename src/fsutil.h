/*
** fsutil.h — small file-system helpers for durable directory entries.
*/
#ifndef SOCHDB_FSUTIL_H
#define SOCHDB_FSUTIL_H

/* fsync the directory at path, making the names created, renamed or removed
** in it durable. SOCHDB_OK, or SOCHDB_IO (errno kept, detail recorded). */
int sdb_fsync_dir(const char *path);

#endif
