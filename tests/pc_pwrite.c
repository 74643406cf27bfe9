/*
** pc_pwrite.c — a helper of test_powercut: `pc_pwrite FILE OFF LEN [sync]`
** pwrites LEN bytes of test_powercut's pattern (byte i of the file is
** (i*7+3) & 255) at OFF of FILE, then fdatasyncs it if asked. Coreutils
** have no pwrite, which the power-loss shim watches for writes over zeros.
** Built without sanitizers, like the shim preloaded into it.
*/
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
  if (argc < 4)
    return fprintf(stderr, "usage: pc_pwrite FILE OFF LEN [sync]\n"), 2;
  long off = atol(argv[2]), len = atol(argv[3]);
  int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
  unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
  if (fd < 0 || !buf || off < 0 || len <= 0)
    return perror(argv[1]), 1;
  for (long i = 0; i < len; i++)
    buf[i] = (unsigned char)((off + i) * 7 + 3);
  if (pwrite(fd, buf, (size_t)len, off) != len || (argc > 4 && !strcmp(argv[4], "sync") && fdatasync(fd) != 0))
    return perror(argv[1]), 1;
  free(buf);
  return close(fd) == 0 ? 0 : 1;
}
