/*
** fsutil.c — file-system helpers (see fsutil.h).
*/
#include "fsutil.h"

#include "error.h"

#include <fcntl.h>
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
