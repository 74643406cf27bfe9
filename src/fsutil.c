/*
** fsutil.c — file-system helpers (see fsutil.h).
*/
#include "fsutil.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int sdb_fsync_dir(const char *path)
{
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return sdb_fail_errno("open %s", path);
  int rc = fsync(fd) == 0 ? SOCHDB_OK : sdb_fail_errno("fsync %s", path);
  close(fd);
  return rc;
}

int sdb_open_regular(const char *path, int *fd, size_t *len)
{
  /* O_NONBLOCK: opening a FIFO for reading would wait for a writer, and a
  ** read of it for data, forever; it has no effect on a regular file. */
  *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (*fd < 0)
    return errno;
  struct stat st;
  int e = fstat(*fd, &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
  if (e) {
    close(*fd);
    *fd = -1;
    return e;
  }
  *len = (size_t)st.st_size;
  return 0;
}

int sdb_read_file(const char *path, uint8_t **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  int fd;
  size_t len;
  int e = sdb_open_regular(path, &fd, &len);
  if (e)
    return e;
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) {
    close(fd);
    return ENOMEM;
  }
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      e = errno;
      free(buf);
      close(fd);
      return e;
    }
    if (r == 0)
      break;   /* shrank meanwhile */
    got += (size_t)r;
  }
  close(fd);
  *out = buf;
  *n = got;
  return 0;
}

int sdb_map_file(const char *path, const uint8_t **buf, size_t *len, int *keep_fd)
{
  *buf = NULL;
  *len = 0;
  if (keep_fd)
    *keep_fd = -1;
  int fd;
  size_t n;
  int e = sdb_open_regular(path, &fd, &n);
  if (e)
    return e;
  void *m = n ? mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0) : NULL;
  e = m == MAP_FAILED ? errno : 0;
  if (e || !keep_fd)
    close(fd);
  else
    *keep_fd = fd;
  if (e)
    return e;
  /* A hint: pages read in from the disk come in 2 MiB folios, which the
  ** mapping then maps with one TLB entry each (what the daemon's aligned
  ** writes give a compaction's output still in the page cache:
  ** daemon/store.c). */
  if (n >= (2u << 20))
    (void)madvise(m, n, MADV_HUGEPAGE);
  *buf = m;
  *len = n;
  return 0;
}

void sdb_unmap_file(const uint8_t *buf, size_t len)
{
  if (buf && len)
    munmap((void *)buf, len);
}

void sdb_apply_db_mode(const char *dir, int fd, const char *path)
{
  char id[4200];
  struct stat st;
  snprintf(id, sizeof id, "%s/" SDB_ID_FILE, dir);
  if (stat(id, &st) != 0)
    return;
  mode_t mode = st.st_mode & 0777;
  if (fd >= 0)
    (void)fchmod(fd, mode);
  else
    (void)chmod(path, sdb_dir_mode(mode));
}

char *sdb_absolute_path(const char *path)
{
  if (path[0] == '/')
    return strdup(path);
  char *cwd = getcwd(NULL, 0);
  if (!cwd)
    return NULL;
  size_t n = strlen(cwd) + 1 + strlen(path) + 1;
  char *abs = malloc(n);
  if (abs)
    snprintf(abs, n, "%s/%s", cwd, path);
  free(cwd);
  return abs;
}

/* Take closed descriptor fd with /dev/null opened as mode: 0, or -1 (errno).
** Another thread may take the number between our look and our open: then
** look again, a few times. */
static int reserve_fd(int fd, int mode)
{
  for (int tries = 0; tries < 4; tries++) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
      return 0;   /* open (now) */
    int got = open("/dev/null", mode);   /* the lowest free number: fd, as the lower ones are open */
    if (got == fd)
      return 0;
    if (got < 0)
      return -1;
    close(got);
  }
  errno = EBUSY;
  return -1;
}

int sdb_reserve_standard_fds(void)
{
  static const int unusable[3] = { O_WRONLY, O_RDONLY, O_RDONLY };
  for (int fd = 0; fd <= 2; fd++)
    if (reserve_fd(fd, unusable[fd]) != 0)
      return -1;
  return 0;
}
