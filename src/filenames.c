/*
** filenames.c — table file names from numbers and back (see filenames.h).
*/
#include "filenames.h"

#include "error.h"
#include "sochdb.h"

#include <stdio.h>
#include <string.h>

int sst_file_path(char *out, size_t n, const char *dir, uint64_t number)
{
  if (!out || !dir || n == 0)
    return sdb_fail(SOCHDB_INVALID, "sst_file_path: NULL argument");
  int w = snprintf(out, n, "%s/%06llu.sst", dir, (unsigned long long)number);
  if (w < 0 || (size_t)w >= n)
    return sdb_fail(SOCHDB_INVALID, "SSTable path for %s is too long", dir);
  return SOCHDB_OK;
}

int sst_file_number(const char *name, const char *suffix, uint64_t *number)
{
  size_t digits = strspn(name, "0123456789");
  if (digits < 6 || digits > 20 || (digits > 6 && name[0] == '0') || strcmp(name + digits, suffix) != 0)
    return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < digits; i++) {
    unsigned d = (unsigned)(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return 0;
    v = v * 10 + d;
  }
  *number = v;
  return v <= SDB_MAX_FILE_NUMBER;
}
