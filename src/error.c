/*
** error.c — error messages: the static text of each SOCHDB_* code
** (sochdb_strerror) and the per-thread detail of the last failure
** (sochdb_last_error).
*/
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_detail[SDB_ERROR_DETAIL_BYTES];

const char *sochdb_strerror(int err)
{
  switch (err) {
  case SOCHDB_OK:       return "success";
  case SOCHDB_NOTFOUND: return "not found";
  case SOCHDB_CONFLICT: return "write-write conflict with a concurrent transaction; nothing was applied, retry";
  case SOCHDB_BUSY:     return "resource temporarily exhausted (region full, too many processes or transactions); retry later";
  case SOCHDB_INVALID:  return "invalid argument";
  case SOCHDB_CORRUPT:  return "data corruption detected (checksum or format failure)";
  case SOCHDB_IO:       return "I/O error";
  case SOCHDB_NOMEM:    return "out of memory";
  case SOCHDB_VERSION:  return "incompatible format or layout version";
  case SOCHDB_DAEMON:   return "the sochdbd daemon could not be started or reached";
  default:              return "unknown sochdb error";
  }
}

const char *sochdb_last_error(void) { return last_detail; }

void sdb_clear_error(void) { last_detail[0] = '\0'; }

void sdb_save_error(char saved[SDB_ERROR_DETAIL_BYTES]) { memcpy(saved, last_detail, sizeof last_detail); }

void sdb_restore_error(const char saved[SDB_ERROR_DETAIL_BYTES]) { memcpy(last_detail, saved, sizeof last_detail); }

int sdb_fail(int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_detail, sizeof last_detail, fmt, ap);
  va_end(ap);
  return code;
}

int sdb_fail_prefix(int code, const char *fmt, ...)
{
  char detail[sizeof last_detail];
  memcpy(detail, last_detail, sizeof detail);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(last_detail, sizeof last_detail, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof last_detail) {
    /* a message too long for the buffer is cut at its end: the result is
    ** looked at only so that the compiler does not warn of that */
    int cut = snprintf(last_detail + n, sizeof last_detail - (size_t)n, ": %s", detail);
    (void)cut;
  }
  return code;
}

int sdb_fail_errno(const char *fmt, ...)
{
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(last_detail, sizeof last_detail, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof last_detail)
    snprintf(last_detail + n, sizeof last_detail - (size_t)n, ": %s", strerror(saved));
  errno = saved;
  return SOCHDB_IO;
}

int sdb_sticky_report(const struct sdb_sticky_error *e)
{
  return sdb_fail(e->code, "%s", e->detail);
}

void sdb_sticky_record(struct sdb_sticky_error *e, int rc)
{
  e->code = rc;
  memcpy(e->detail, last_detail, sizeof e->detail);
}
