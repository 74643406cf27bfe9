/*
** fsutil.h — small file-system helpers: durable directory entries, whole-file reads.
*/
#ifndef SOCHDB_FSUTIL_H
#define SOCHDB_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* fsync the directory at path, making the names created, renamed or removed
** in it durable. SOCHDB_OK, or SOCHDB_IO (errno kept, detail recorded). */
int sdb_fsync_dir(const char *path);

/* Open path read-only, with its size (*len), if it is a regular file: 0, or
** an errno value (EINVAL for a FIFO, a device or a socket, EISDIR for a
** directory), never waiting: a FIFO named like a database file must not
** hang whoever reads it. The functions below open files with it. */
int sdb_open_regular(const char *path, int *fd, size_t *len);

/* Read the whole file at path into a malloc'ed buffer (*out, *n; the caller
** frees it): 0, or an errno value, with no detail recorded. A file that
** grows meanwhile is read up to the size it had when opened. */
int sdb_read_file(const char *path, uint8_t **out, size_t *n);

/* Map the whole file at path read-only (shared): 0 with *buf and *len (an
** empty file maps nothing: *buf NULL, *len 0), or an errno value, with no
** detail recorded. Undo with sdb_unmap_file. With keep_fd, *keep_fd gets
** the descriptor it opened the file with, for the caller to read through
** and close (-1 on failure); without, it is closed. */
int  sdb_map_file(const char *path, const uint8_t **buf, size_t *len, int *keep_fd);
void sdb_unmap_file(const uint8_t *buf, size_t len);

#endif
