/*
** fsutil.h — small file-system helpers: durable directory entries, whole-file
** reads, and the permission bits of a database's files.
*/
#ifndef SOCHDB_FSUTIL_H
#define SOCHDB_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* path made absolute against the working directory (not resolved through
** symbolic links: what the caller named), in a malloc'd string; NULL with
** errno set (ENOMEM, or getcwd's). A handle keeps its DIR so, since it opens
** files there long after sochdb_open and the application may chdir()
** meanwhile (a server that settles in "/"); the daemon, because it leaves
** its starter's working directory. */
char *sdb_absolute_path(const char *path);

/* fsync the directory at path, making the names created, renamed or removed
** in it durable. SOCHDB_OK, or SOCHDB_IO (errno kept, detail recorded). */
int sdb_fsync_dir(const char *path);

/* Open path read-only, with its size (*len), if it is a regular file: 0, or
** an errno value (EINVAL for a FIFO, a device or a socket, EISDIR for a
** directory), never waiting: a FIFO named like a database file must not
** hang whoever reads it. The functions below open files with it. */
int sdb_open_regular(const char *path, int *fd, size_t *len);

/* Each of the descriptors 0, 1 and 2 that is closed is taken by /dev/null,
** opened so that using it fails with EBADF as the closed one did (stdin not
** readable, stdout and stderr not writable). Else the next file opened gets
** that number, and a program's writes to its stdout or stderr land in it:
** in the shared region's header, which breaks the database for every
** process (SQLite keeps its files off 0-2 for the same reason). 0, or -1 if
** a number could not be taken (errno). */
int sdb_reserve_standard_fds(void);

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

/* DIR/sochdb.id: the directory's random 16-byte identity (db.c), which the
** region, the WAL and the MANIFEST carry. A directory without it holds no
** database. */
#define SDB_ID_FILE "sochdb.id"

/* Give a file just made in database directory dir the database's mode: the
** permission bits of DIR/sochdb.id, which its creator made with file_mode
** applied exactly (not reduced by the umask), so that every file and
** directory of it is open to the same users and no more. fd, or with fd < 0
** the directory at path, which also gets x wherever it has r. Best effort:
** a file another user owns keeps its mode, and the open that needs it
** reports the refusal. */
void sdb_apply_db_mode(const char *dir, int fd, const char *path);

/* A directory's mode for files of file_mode: x wherever it has r. */
static inline unsigned sdb_dir_mode(unsigned file_mode) { return file_mode | ((file_mode & 0444) >> 2); }

#endif
