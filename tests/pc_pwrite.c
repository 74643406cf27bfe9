/*
** pc_pwrite.c — a helper of test_powercut: `pc_pwrite FILE OFF LEN [sync]
** [alt]` pwrites LEN bytes of test_powercut's pattern (byte i of the file is
** (i*7+3) & 255; with `alt`, that ^ 0xa5, which differs from it at every
** byte: an overwrite with new bytes) at OFF of FILE, then fdatasyncs it if
** asked. Coreutils have no pwrite, which the power-loss shim watches for
** writes over existing bytes.
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
    return fprintf(stderr, "usage: pc_pwrite FILE OFF LEN [sync] [alt]\n"), 2;
  long off = atol(argv[2]), len = atol(argv[3]);
  int sync = 0, alt = 0;
  for (int i = 4; i < argc; i++) {
    sync |= !strcmp(argv[i], "sync");
    alt |= !strcmp(argv[i], "alt");
  }
  int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
  unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
  if (fd < 0 || !buf || off < 0 || len <= 0)
    return perror(argv[1]), 1;
  for (long i = 0; i < len; i++)
    buf[i] = (unsigned char)(((off + i) * 7 + 3) ^ (alt ? 0xa5 : 0));
  if (pwrite(fd, buf, (size_t)len, off) != len || (sync && fdatasync(fd) != 0))
    return perror(argv[1]), 1;
  free(buf);
  return close(fd) == 0 ? 0 : 1;
}
